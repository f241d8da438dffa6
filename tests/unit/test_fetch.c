/* The HTTP client against scripted servers on 127.0.0.1, in one real loop
 * (fetch_harness.h): bodies of every framing, keep-alive and the pool, the
 * cap and its queue, failures with their exact reasons, the address
 * policy, redirects, cancel at every stage, and the fetcher freed with
 * requests in flight. Every test ends with the memory counters where they
 * started and the loop closing cleanly. */
#include <arpa/inet.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "fetch_harness.h"
#include "log.h"
#include "tcp.h"
#include "mem.h"

#define WAIT 5000 /* ms: generous, for valgrind */

static char *url(const fx_t *fx, const srv_t *s, const char *path, char *buf, size_t len)
{
    (void)fx;
    snprintf(buf, len, "http://127.0.0.1:%d%s", s->port, path);
    return buf;
}

/* Fetch and wait for the callback. */
static void fetch_wait(fx_t *fx, result_t *r, const char *method, const char *u, const char *headers,
                       const char *body, size_t blen, uint32_t timeout, size_t max_body, int follow)
{
    result_init(r, fx);
    fx_fetch(fx, r, method, u, headers, body, blen, timeout, max_body, follow);
    assert_int_equal(r->done, 0); /* never inside ws_fetch_start */
    assert_true(fx_run_until(fx, result_done, r, WAIT));
    assert_int_equal(r->done, 1);
    assert_false(r->in_start);
}

static void get(fx_t *fx, result_t *r, const char *u) { fetch_wait(fx, r, NULL, u, NULL, NULL, 0, 0, 0, 0); }

static int held(void *ud) { return ((srv_t *)ud)->nheld > 0; }
static int srv_open_none(void *ud) { return ((srv_t *)ud)->open == 0; }

/* --- bodies --- */

static void answer_content_length(srv_t *s, sconn_t *c, const char *req, size_t len)
{
    (void)s, (void)req, (void)len;
    srv_send(c, "HTTP/1.1 100 Continue\r\n\r\n");
    srv_send(c, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Thing:  a b \r\nset-cookie: 1\r\n\r\nhe");
    srv_send(c, "llo");
}

static void test_fetch_content_length(void **state)
{
    (void)state;
    fx_t fx;
    fx_setup(&fx, NULL);
    fx.srv.answer = answer_content_length;
    char u[256], want[512];
    result_t r;
    fetch_wait(&fx, &r, NULL, url(&fx, &fx.srv, "/path?q=1#frag", u, sizeof u), "X-Req: 1\r\n", NULL, 0, 0,
               0, 0);
    assert_string_equal(r.error, "");
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "hello");
    assert_true(result_has_header(&r, "X-Thing: a b"));
    assert_true(result_has_header(&r, "set-cookie: 1")); /* names as the server spelled them */
    assert_string_equal(r.url, u);
    /* The request as it left. */
    snprintf(want, sizeof want, "GET /path?q=1 HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUser-Agent: wspush/%s\r\n"
             "X-Req: 1\r\n\r\n", fx.srv.port, WSPUSH_VERSION);
    assert_string_equal(fx.srv.last, want);
    /* Kept for the next request. */
    assert_int_equal(ws_fetcher_connections(fx.f), 1);
    assert_int_equal(ws_fetcher_idle(fx.f), 1);
    result_free(&r);
    fx_teardown(&fx);
}

static void answer_chunked(srv_t *s, sconn_t *c, const char *req, size_t len)
{
    (void)s, (void)req, (void)len;
    srv_send(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n");
    srv_send(c, "6\r\n world\r\n0\r\n\r\n");
}

static void answer_with_junk(srv_t *s, sconn_t *c, const char *req, size_t len)
{
    (void)s, (void)req, (void)len;
    srv_send(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokJUNK");
}

static void test_fetch_bytes_after_the_response_are_not_pooled(void **state)
{
    (void)state;
    fx_t fx;
    fx_setup(&fx, NULL);
    fx.srv.answer = answer_with_junk;
    char u[256];
    result_t r;
    get(&fx, &r, url(&fx, &fx.srv, "/", u, sizeof u));
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "ok");
    /* what followed belongs to no request: the connection is not reused */
    assert_int_equal(ws_fetcher_connections(fx.f), 0);
    result_free(&r);
    fx_teardown(&fx);
}

static void test_fetch_chunked(void **state)
{
    (void)state;
    fx_t fx;
    fx_setup(&fx, NULL);
    fx.srv.answer = answer_chunked;
    char u[256];
    result_t r;
    get(&fx, &r, url(&fx, &fx.srv, "/", u, sizeof u));
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "hello world");
    assert_int_equal(ws_fetcher_idle(fx.f), 1);
    result_free(&r);
    fx_teardown(&fx);
}

static void answer_close_delimited(srv_t *s, sconn_t *c, const char *req, size_t len)
{
    (void)s, (void)req, (void)len;
    srv_send(c, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil ");
    srv_send(c, "the end");
    srv_end(c);
}

static void test_fetch_close_delimited(void **state)
{
    (void)state;
    fx_t fx;
    fx_setup(&fx, NULL);
    fx.srv.answer = answer_close_delimited;
    char u[256];
    result_t r;
    get(&fx, &r, url(&fx, &fx.srv, "/", u, sizeof u));
    assert_string_equal(r.error, "");
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "until the end");
    assert_true(fx_run_until(&fx, fx_no_connections, &fx, WAIT)); /* not pooled */
    result_free(&r);
    fx_teardown(&fx);
}

static void answer_head_204(srv_t *s, sconn_t *c, const char *req, size_t len)
{
    (void)s, (void)len;
    if (!strncmp(req, "HEAD ", 5))
        srv_send(c, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"); /* no body follows */
    else
        srv_send(c, "HTTP/1.1 204 No Content\r\nX-A: b\r\n\r\n");
}

static void test_fetch_head_and_204_have_no_body(void **state)
{
    (void)state;
    fx_t fx;
    fx_setup(&fx, NULL);
    fx.srv.answer = answer_head_204;
    char u[256];
    result_t r;
    fetch_wait(&fx, &r, "HEAD", url(&fx, &fx.srv, "/", u, sizeof u), NULL, NULL, 0, 0, 0, 0);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.body_len, 0);
    assert_true(result_has_header(&r, "Content-Length: 5"));
    result_free(&r);
    fetch_wait(&fx, &r, "DELETE", u, NULL, NULL, 0, 0, 0, 0);
    assert_int_equal(r.status, 204);
    assert_int_equal(r.body_len, 0);
    assert_true(result_has_header(&r, "X-A: b"));
    /* Both on one connection: neither response left bytes behind. */
    assert_int_equal(fx.srv.accepted, 1);
    assert_int_equal(fx.srv.requests, 2);
    assert_int_equal(ws_fetcher_idle(fx.f), 1);
    result_free(&r);
    fx_teardown(&fx);
}

static void test_fetch_big_body_grows_as_it_arrives(void **state)
{
    (void)state;
    fx_t fx;
    fx_setup(&fx, NULL);
    fx.srv.answer = srv_answer_hold;
    char u[256];
    result_t r;
    result_init(&r, &fx);
    fx_fetch(&fx, &r, NULL, url(&fx, &fx.srv, "/", u, sizeof u), NULL, NULL, 0, 0, 4 << 20, 0);
    assert_true(fx_run_until(&fx, held, &fx.srv, WAIT));
    assert_int_equal(fx.srv.nheld, 1);
    /* 3 MiB announced, 10 bytes sent: the buffer holds what came, not what was promised. */
    size_t before = ws_mem_used(WS_MEM_BUFFERS);
    srv_send(fx.srv.held[0], "HTTP/1.1 200 OK\r\nContent-Length: 3145728\r\n\r\n0123456789");
    fx_wait(&fx, 100);
    assert_int_equal(r.done, 0);
    assert_true(ws_mem_used(WS_MEM_BUFFERS) - before < 64 * 1024);
    char *big = malloc(3145728 - 10);
    memset(big, 'x', 3145728 - 10);
    srv_sendn(fx.srv.held[0], big, 3145728 - 10);
    free(big);
    assert_true(fx_run_until(&fx, result_done, &r, WAIT));
    assert_int_equal(r.status, 200);
    assert_int_equal(r.body_len, 3145728);
    assert_memory_equal(r.body, "0123456789xxx", 13);
    result_free(&r);
    fx_teardown(&fx);
}

/* --- keep-alive and the pool --- */

static void test_fetch_keep_alive_reuses_the_connection(void **state)
{
    (void)state;
    fx_t fx;
    fx_setup(&fx, NULL);
    char u[256];
    result_t r;
    for (int i = 0; i < 3; i++) {
        get(&fx, &r, url(&fx, &fx.srv, "/", u, sizeof u));
        assert_int_equal(r.status, 200);
        assert_string_equal(r.body, "hello");
        result_free(&r);
    }
    assert_int_equal(fx.srv.accepted, 1);
    assert_int_equal(fx.srv.requests, 3);
    assert_int_equal(fx.srv.conns[0]->nreq, 3);
    assert_int_equal(ws_fetcher_connections(fx.f), 1);
    fx_teardown(&fx);
}

static void test_fetch_keep_alive_with_io_uring(void **state)
{
    (void)state;
    fx_t fx;
    fx_setup(&fx, NULL);
    char why[128];
    if (ws_tcp_use_ring(&fx.lh.io, why, sizeof why) != 0)
        print_message("no io_uring here (%s): writev again\n", why);
    char u[256];
    result_t r;
    for (int i = 0; i < 2; i++) {
        get(&fx, &r, url(&fx, &fx.srv, "/", u, sizeof u));
        assert_string_equal(r.body, "hello");
        result_free(&r);
    }
    assert_int_equal(fx.srv.accepted, 1);
    fx_teardown(&fx);
}

static int two_held(void *ud) { return ((srv_t *)ud)->nheld == 2; }

static int both_done(void *ud)
{
    result_t *r = ud;
    return r[0].done && r[1].done;
}

static void answer_ok_then_close(srv_t *s, sconn_t *c, const char *req, size_t len)
{
    srv_answer_ok(s, c, req, len);
    srv_end(c);
}

static void test_fetch_pool_is_bounded_expires_and_notices_closes(void **state)
{
    (void)state;
    ws_fetch_config_t cfg;
    ws_fetch_config_init(&cfg);
    cfg.pool_per_host = 1;
    cfg.idle_ms = 300;
    fx_t fx;
    fx_setup(&fx, &cfg);
    fx.srv.answer = srv_answer_hold;
    char u[256];
    result_t r[2];
    result_init(&r[0], &fx);
    result_init(&r[1], &fx);
    /* Two at once: two connections. */
    fx_fetch(&fx, &r[0], NULL, url(&fx, &fx.srv, "/", u, sizeof u), NULL, NULL, 0, 0, 0, 0);
    fx_fetch(&fx, &r[1], NULL, u, NULL, NULL, 0, 0, 0, 0);
    assert_true(fx_run_until(&fx, two_held, &fx.srv, WAIT));
    assert_int_equal(ws_fetcher_connections(fx.f), 2);
    for (int i = 0; i < 2; i++)
        srv_answer_ok(&fx.srv, fx.srv.held[i], NULL, 0);
    assert_true(fx_run_until(&fx, both_done, r, WAIT));
    assert_int_equal(fx.srv.accepted, 2);
    /* Only one is kept for the host. */
    assert_int_equal(ws_fetcher_connections(fx.f), 1);
    assert_int_equal(ws_fetcher_idle(fx.f), 1);
    /* ... until idle_ms. */
    uint64_t t0 = uv_now(&fx.lh.loop);
    assert_true(fx_run_until(&fx, fx_no_connections, &fx, WAIT));
    assert_true(uv_now(&fx.lh.loop) - t0 >= 250);
    result_free(&r[0]);
    result_free(&r[1]);

    /* A server that closes an idle connection: it leaves the pool. */
    fx.srv.answer = answer_ok_then_close;
    result_t r2;
    get(&fx, &r2, u);
    assert_int_equal(r2.status, 200);
    assert_true(fx_run_until(&fx, fx_no_connections, &fx, 250));
    assert_int_equal(ws_fetcher_idle(fx.f), 0);
    result_free(&r2);
    fx_teardown(&fx);
}

static void test_fetch_no_pool_when_pool_per_host_is_zero(void **state)
{
    (void)state;
    ws_fetch_config_t cfg;
    ws_fetch_config_init(&cfg);
    cfg.pool_per_host = 0;
    fx_t fx;
    fx_setup(&fx, &cfg);
    char u[256];
    result_t r;
    get(&fx, &r, url(&fx, &fx.srv, "/", u, sizeof u));
    result_free(&r);
    get(&fx, &r, u);
    result_free(&r);
    assert_int_equal(fx.srv.accepted, 2);
    assert_true(fx_run_until(&fx, fx_no_connections, &fx, WAIT));
    fx_teardown(&fx);
}

/* On the first connection: answer the first request, then close on the
 * next one without a byte (a pooled connection the server dropped). */
static void answer_stale(srv_t *s, sconn_t *c, const char *req, size_t len)
{
    if (c->id == 1 && c->nreq == 2)
        srv_close(c);
    else
        srv_answer_ok(s, c, req, len);
}

static void test_fetch_stale_pooled_connection_is_retried_for_get(void **state)
{
    (void)state;
    fx_t fx;
    fx_setup(&fx, NULL);
    fx.srv.answer = answer_stale;
    char u[256];
    result_t r;
    get(&fx, &r, url(&fx, &fx.srv, "/", u, sizeof u));
    result_free(&r);
    get(&fx, &r, u);
    assert_string_equal(r.error, "");
    assert_int_equal(r.status, 200);
    assert_int_equal(fx.srv.accepted, 2); /* once more, on a new connection */
    assert_int_equal(fx.srv.requests, 3);
    result_free(&r);
    fx_teardown(&fx);
}

static void test_fetch_stale_pooled_connection_is_not_retried_for_post(void **state)
{
    (void)state;
    fx_t fx;
    fx_setup(&fx, NULL);
    fx.srv.answer = answer_stale;
    char u[256];
    result_t r;
    get(&fx, &r, url(&fx, &fx.srv, "/", u, sizeof u));
    result_free(&r);
    fetch_wait(&fx, &r, "POST", u, NULL, "x=1", 3, 0, 0, 0);
    assert_string_equal(r.error, "connection closed");
    assert_int_equal(r.status, 0);
    fx_wait(&fx, 50);
    assert_int_equal(fx.srv.accepted, 1);
    assert_int_equal(fx.srv.requests, 2);
    result_free(&r);
    fx_teardown(&fx);
}

/* --- failures --- */

static void answer_half(srv_t *s, sconn_t *c, const char *req, size_t len)
{
    (void)s, (void)req, (void)len;
    srv_send(c, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789");
    srv_end(c);
}

static void test_fetch_server_closes_mid_response(void **state)
{
    (void)state;
    fx_t fx;
    fx_setup(&fx, NULL);
    fx.srv.answer = answer_half;
    char u[256];
    result_t r;
    get(&fx, &r, url(&fx, &fx.srv, "/", u, sizeof u));
    assert_string_equal(r.error, "connection closed");
    assert_int_equal(r.status, 0);
    assert_int_equal(r.body_len, 0);
    assert_int_equal(ws_fetcher_connections(fx.f), 0);
    result_free(&r);
    fx_teardown(&fx);
}

static void answer_big(srv_t *s, sconn_t *c, const char *req, size_t len)
{
    (void)s, (void)len;
    if (strstr(req, "/length"))
        srv_send(c, "HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n");
    else if (strstr(req, "/chunked"))
        srv_send(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nhello \r\n5\r\nworld\r\n0\r\n\r\n");
    else
        srv_send(c, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789");
}

static void test_fetch_response_too_large(void **state)
{
    (void)state;
    fx_t fx;
    fx_setup(&fx, NULL);
    fx.srv.answer = answer_big;
    char u[256];
    result_t r;
    static const char *const paths[] = {"/length", "/chunked"};
    for (int i = 0; i < 2; i++) {
        fetch_wait(&fx, &r, NULL, url(&fx, &fx.srv, paths[i], u, sizeof u), NULL, NULL, 0, 0, 10, 0);
        assert_string_equal(r.error, "response too large");
        assert_int_equal(r.status, 0);
        assert_int_equal(ws_fetcher_connections(fx.f), 0); /* the rest of it is not read */
        result_free(&r);
    }
    fetch_wait(&fx, &r, NULL, url(&fx, &fx.srv, "/exact", u, sizeof u), NULL, NULL, 0, 0, 10, 0);
    assert_string_equal(r.body, "0123456789");
    result_free(&r);
    fx_teardown(&fx);
}

static void answer_garbage(srv_t *s, sconn_t *c, const char *req, size_t len)
{
    (void)s, (void)req, (void)len;
    srv_send(c, "SSH-2.0-OpenSSH\r\n\r\n");
}

static void test_fetch_invalid_response(void **state)
{
    (void)state;
    fx_t fx;
    fx_setup(&fx, NULL);
    fx.srv.answer = answer_garbage;
    char u[256];
    result_t r;
    get(&fx, &r, url(&fx, &fx.srv, "/", u, sizeof u));
    assert_string_equal(r.error, "invalid response");
    assert_int_equal(ws_fetcher_connections(fx.f), 0);
    result_free(&r);
    fx_teardown(&fx);
}

/* A connect nobody answers (a listener whose queue is full drops SYNs, as a
 * host that does not answer would) times out, and its slot of max_outbound
 * is free at once: the next request does not wait for the kernel to give up
 * on the SYN (minutes). */
static void test_fetch_a_connect_that_times_out_frees_its_slot(void **state)
{
    (void)state;
    fx_t fx;
    ws_fetch_config_t cfg;
    ws_fetch_config_init(&cfg);
    cfg.max_outbound = 1;
    fx_setup(&fx, &cfg);
    int ls = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in addr;
    assert_int_equal(uv_ip4_addr("127.0.0.1", 0, &addr), 0);
    assert_int_equal(bind(ls, (struct sockaddr *)&addr, sizeof addr), 0);
    assert_int_equal(listen(ls, 0), 0);
    socklen_t alen = sizeof addr;
    assert_int_equal(getsockname(ls, (struct sockaddr *)&addr, &alen), 0);
    int fillers[4];
    for (int i = 0; i < 4; i++) {
        fillers[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        connect(fillers[i], (struct sockaddr *)&addr, sizeof addr);
    }
    char u[256], u2[256];
    snprintf(u, sizeof u, "http://127.0.0.1:%d/", ntohs(addr.sin_port));
    result_t r;
    fetch_wait(&fx, &r, NULL, u, NULL, NULL, 0, 200, 0, 0);
    assert_string_equal(r.error, "timeout");
    assert_int_equal(ws_fetcher_connections(fx.f), 0);
    result_free(&r);
    get(&fx, &r, url(&fx, &fx.srv, "/", u2, sizeof u2));
    assert_string_equal(r.error, "");
    assert_int_equal(r.status, 200);
    result_free(&r);
    for (int i = 0; i < 4; i++)
        close(fillers[i]);
    close(ls);
    fx_teardown(&fx);
}

static void test_fetch_timeout(void **state)
{
    (void)state;
    fx_t fx;
    fx_setup(&fx, NULL);
    fx.srv.answer = NULL; /* accepts, reads, never answers */
    char u[256];
    result_t r;
    uint64_t t0 = uv_now(&fx.lh.loop);
    fetch_wait(&fx, &r, NULL, url(&fx, &fx.srv, "/", u, sizeof u), NULL, NULL, 0, 200, 0, 0);
    assert_string_equal(r.error, "timeout");
    assert_int_equal(r.status, 0);
    assert_true(r.at - t0 >= 200);
    assert_true(r.at - t0 < 2000);
    assert_int_equal(fx.srv.requests, 1);
    assert_int_equal(ws_fetcher_connections(fx.f), 0);
    result_free(&r);
    fx_teardown(&fx);
}

static void test_fetch_connection_refused(void **state)
{
    (void)state;
    fx_t fx;
    fx_setup(&fx, NULL);
    /* A port that was bound and closed again: nothing listens there. */
    srv_start(&fx, &fx.srv2, NULL);
    srv_stop(&fx.srv2);
    fx_wait(&fx, 10);
    char u[256];
    result_t r;
    get(&fx, &r, url(&fx, &fx.srv2, "/", u, sizeof u));
    assert_string_equal(r.error, "connection refused");
    assert_int_equal(ws_fetcher_connections(fx.f), 0);
    result_free(&r);
    fx_teardown(&fx);
}

/* Fails at once (no connection, no query), through the callback later. */
static void expect_immediate(fx_t *fx, const char *method, const char *u, const char *headers,
                             const char *error)
{
    result_t r;
    result_init(&r, fx);
    fx_fetch(fx, &r, method, u, headers, NULL, 0, 0, 0, 0);
    assert_int_equal(r.done, 0);
    assert_int_equal(ws_fetcher_connections(fx->f), 0);
    assert_true(fx_run_until(fx, result_done, &r, WAIT));
    assert_false(r.in_start);
    if (strcmp(r.error, error) != 0)
        fail_msg("%s: '%s', expected '%s'", u, r.error, error);
    assert_int_equal(r.status, 0);
    assert_int_equal(fx->srv.accepted, 0);
    result_free(&r);
}

static void test_fetch_fails_at_once_without_traffic(void **state)
{
    (void)state;
    fx_t fx;
    fx_setup(&fx, NULL);
    expect_immediate(&fx, NULL, "http://x.invalid/", NULL, "cannot resolve host");
    expect_immediate(&fx, NULL, "http://A.B.INVALID./p", NULL, "cannot resolve host");
    expect_immediate(&fx, NULL, "http://invalid/", NULL, "cannot resolve host");
    expect_immediate(&fx, NULL, "ftp://127.0.0.1/", NULL, "invalid url: unsupported scheme (only http and https)");
    expect_immediate(&fx, NULL, "http://127.0.0.1:99999/", NULL, "invalid url: bad port (1-65535)");
    expect_immediate(&fx, NULL, "http://127.0.0.1/\r\nX: y", NULL, "invalid url: space or control character");
    expect_immediate(&fx, "GE T", "http://127.0.0.1/", NULL, "invalid method");
    expect_immediate(&fx, NULL, "http://127.0.0.1/", "Content-Length: 5\r\n", "invalid headers");
    expect_immediate(&fx, NULL, "http://127.0.0.1/", "X: a\r\nY: b", "invalid headers");
    fx_teardown(&fx);
}

/* --- the address policy --- */

static int addr_permitted(fx_t *fx, const char *ip)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    if (uv_ip4_addr(ip, 80, (struct sockaddr_in *)&ss) != 0)
        assert_int_equal(uv_ip6_addr(ip, 80, (struct sockaddr_in6 *)&ss), 0);
    return ws_fetcher_permits(fx->f, (struct sockaddr *)&ss);
}

static void test_fetch_address_policy(void **state)
{
    (void)state;
    fx_t fx;
    fx_setup(&fx, NULL);
    char u[256], err[128];
    /* Link-local is refused before any connect, however it is written. */
    expect_immediate(&fx, NULL, "http://169.254.1.1/", NULL, "address not allowed");
    expect_immediate(&fx, NULL, "http://169.254.169.254:8080/latest/meta-data/", NULL, "address not allowed");
    expect_immediate(&fx, NULL, "http://[fe80::1]/", NULL, "address not allowed");
    expect_immediate(&fx, NULL, "http://[::ffff:169.254.169.254]/", NULL, "address not allowed");
    assert_false(addr_permitted(&fx, "169.254.1.1"));
    assert_false(addr_permitted(&fx, "fe80::1"));
    assert_false(addr_permitted(&fx, "64:ff9b::a9fe:a9fe")); /* 169.254.169.254 through NAT64 */
    assert_true(addr_permitted(&fx, "64:ff9b::a9ff:1"));
    assert_false(addr_permitted(&fx, "fd00:ec2::254"));
    assert_true(addr_permitted(&fx, "fd00:ec2::253"));
    assert_true(addr_permitted(&fx, "127.0.0.1"));
    /* An allow range lets them through (asserted on the policy alone: no
     * traffic may leave 127.0.0.0/8 here). */
    assert_int_equal(ws_fetcher_allow(fx.f, "169.254.0.0/16", err, sizeof err), 0);
    assert_true(addr_permitted(&fx, "169.254.1.1"));
    assert_true(addr_permitted(&fx, "::ffff:169.254.1.1"));
    assert_false(addr_permitted(&fx, "fe80::1"));
    /* Deny ranges refuse more. */
    assert_int_equal(ws_fetcher_deny(fx.f, "127.0.0.2/32", err, sizeof err), 0);
    snprintf(u, sizeof u, "http://127.0.0.2:%d/", fx.srv.port);
    expect_immediate(&fx, NULL, u, NULL, "address not allowed");
    result_t r;
    get(&fx, &r, url(&fx, &fx.srv, "/", u, sizeof u)); /* 127.0.0.1 still goes */
    assert_int_equal(r.status, 200);
    result_free(&r);
    /* Bad ranges are refused with a reason. */
    assert_int_equal(ws_fetcher_deny(fx.f, "10.0.0.0/33", err, sizeof err), -1);
    assert_true(strlen(err) > 0);
    assert_int_equal(ws_fetcher_allow(fx.f, "nonsense", err, sizeof err), -1);
    fx_teardown(&fx);

    /* Allow wins over deny. */
    fx_setup(&fx, NULL);
    assert_int_equal(ws_fetcher_deny(fx.f, "127.0.0.0/8", err, sizeof err), 0);
    assert_int_equal(ws_fetcher_allow(fx.f, "127.0.0.1", err, sizeof err), 0);
    snprintf(u, sizeof u, "http://127.0.0.3:%d/", fx.srv.port);
    expect_immediate(&fx, NULL, u, NULL, "address not allowed");
    get(&fx, &r, url(&fx, &fx.srv, "/", u, sizeof u));
    assert_int_equal(r.status, 200);
    result_free(&r);
    fx_teardown(&fx);
}

/* localhost and the names under it are the loopback without a query (RFC
 * 6761), so this runs on a machine without /etc/hosts too. */
static void test_fetch_resolves_names_and_checks_every_address(void **state)
{
    (void)state;
    fx_t fx;
    fx_setup(&fx, NULL);
    char u[256], err[128], want[128];
    /* Only 127.0.0.0/8 may be tried: not ::1. */
    assert_int_equal(ws_fetcher_deny(fx.f, "::/0", err, sizeof err), 0);
    snprintf(u, sizeof u, "http://localhost:%d/x", fx.srv.port);
    result_t r;
    get(&fx, &r, u);
    assert_string_equal(r.error, "");
    assert_int_equal(r.status, 200);
    snprintf(want, sizeof want, "Host: localhost:%d\r\n", fx.srv.port);
    assert_non_null(strstr(fx.srv.last, want));
    result_free(&r);
    snprintf(u, sizeof u, "http://api.LocalHost.:%d/x", fx.srv.port);
    get(&fx, &r, u);
    assert_string_equal(r.error, "");
    assert_int_equal(r.status, 200);
    result_free(&r);
    /* Every address the name has is refused: refused, without a connect. */
    assert_int_equal(ws_fetcher_deny(fx.f, "127.0.0.0/8", err, sizeof err), 0);
    fetch_wait(&fx, &r, NULL, u, NULL, NULL, 0, 0, 0, 0);
    assert_string_equal(r.error, "address not allowed");
    assert_int_equal(fx.srv.accepted, 2); /* the two requests above */
    result_free(&r);
    fx_teardown(&fx);
}

/* --- what is sent --- */

/* Not a ws_buf: the memory counters must not see the test's own buffers. */
static char logbuf[1 << 16];
static size_t loglen;

static void capture(void *ud, ws_log_level_t level, const char *msg)
{
    (void)ud, (void)level;
    loglen += (size_t)snprintf(logbuf + loglen, sizeof logbuf - loglen, "%s\n", msg);
    if (loglen >= sizeof logbuf)
        loglen = sizeof logbuf - 1;
}

static void test_fetch_request_headers_and_credentials(void **state)
{
    (void)state;
    loglen = 0;
    logbuf[0] = '\0';
    ws_log_level_t level = ws_log_get_level();
    ws_log_set_level(WS_LOG_DEBUG);
    void *old_ud;
    ws_log_sink_t old = ws_log_set_sink(capture, NULL, &old_ud);
    fx_t fx;
    fx_setup(&fx, NULL);
    char u[256];
    result_t r;
    /* "user:p@ss" is dXNlcjpwQHNz in base64. */
    snprintf(u, sizeof u, "http://user:p%%40ss@127.0.0.1:%d/a", fx.srv.port);
    fetch_wait(&fx, &r, "POST", u, "Content-Type: text/plain\r\n", NULL, 0, 0, 0, 0);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(fx.srv.last, "\r\nAuthorization: Basic dXNlcjpwQHNz\r\n"));
    assert_non_null(strstr(fx.srv.last, "\r\nContent-Length: 0\r\n")); /* POST, even empty */
    assert_non_null(strstr(fx.srv.last, "\r\nContent-Type: text/plain\r\n"));
    result_free(&r);
    /* The caller's Host, User-Agent and Authorization replace ours; a body is framed. */
    fetch_wait(&fx, &r, "PUT", u, "Host: example.test\r\nuser-agent: me\r\nAuthorization: Bearer t\r\n",
               "abc", 3, 0, 0, 0);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(fx.srv.last, "PUT /a HTTP/1.1\r\nHost: example.test\r\nuser-agent: me\r\n"
                                        "Authorization: Bearer t\r\nContent-Length: 3\r\n\r\nabc"));
    assert_null(strstr(fx.srv.last, "Basic"));
    result_free(&r);
    fx_teardown(&fx);
    ws_log_set_sink(old, old_ud, NULL);
    ws_log_set_level(level);
    assert_null(strstr(logbuf, "p@ss"));
    assert_null(strstr(logbuf, "p%40ss"));
    assert_null(strstr(logbuf, "dXNlcjpwQHNz"));
}

/* --- redirects --- */

static void answer_redirects(srv_t *s, sconn_t *c, const char *req, size_t len)
{
    (void)len;
    char path[256], buf[1024];
    srv_path(req, path, sizeof path);
    const char *body = strstr(req, "\r\n\r\n") + 4;
    int port2 = *(int *)s->user;
    if (!strcmp(path, "/r1")) {
        srv_send(c, "HTTP/1.1 302 Found\r\nLocation: /final\r\nContent-Length: 9\r\n\r\nmoved...!");
    } else if (!strcmp(path, "/rel/a")) {
        srv_send(c, "HTTP/1.1 301 Moved\r\nLocation: b?x=1\r\nContent-Length: 0\r\n\r\n");
    } else if (!strcmp(path, "/303") || !strcmp(path, "/307") || !strcmp(path, "/302") || !strcmp(path, "/301")) {
        snprintf(buf, sizeof buf, "HTTP/1.1 %s See\r\nLocation: /echo\r\nContent-Length: 0\r\n\r\n", path + 1);
        srv_send(c, buf);
    } else if (!strcmp(path, "/loop")) {
        srv_send(c, "HTTP/1.1 302 Found\r\nLocation: /loop\r\nContent-Length: 0\r\n\r\n");
    } else if (!strcmp(path, "/cross")) {
        snprintf(buf, sizeof buf, "HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:%d/echo\r\n"
                 "Content-Length: 0\r\n\r\n", port2);
        srv_send(c, buf);
    } else if (!strcmp(path, "/ftp")) {
        srv_send(c, "HTTP/1.1 302 Found\r\nLocation: ftp://x/\r\nContent-Length: 0\r\n\r\n");
    } else if (!strcmp(path, "/https")) {
        srv_send(c, "HTTP/1.1 307 Found\r\nLocation: https://127.0.0.1/\r\nContent-Length: 0\r\n\r\n");
    } else if (!strcmp(path, "/meta")) {
        srv_send(c, "HTTP/1.1 302 Found\r\nLocation: http://169.254.169.254/latest\r\nContent-Length: 0\r\n\r\n");
    } else {
        /* /echo and the rest: the method, the path and what framed the body */
        const char *cl = strstr(req, "Content-Length: ");
        const char *ct = strstr(req, "Content-Type: ");
        char text[512];
        int n = snprintf(text, sizeof text, "%.*s %s cl=%s ct=%s body=%s", (int)strcspn(req, " "), req, path,
                         cl ? "yes" : "no", ct ? "yes" : "no", body);
        snprintf(buf, sizeof buf, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", n, text);
        srv_send(c, buf);
    }
}

static void test_fetch_redirects(void **state)
{
    (void)state;
    fx_t fx;
    fx_setup(&fx, NULL);
    srv_start(&fx, &fx.srv2, answer_redirects);
    fx.srv.answer = answer_redirects;
    fx.srv.user = fx.srv2.user = &fx.srv2.port;
    char u[256], want[256];
    result_t r;

    /* Not followed: the redirect itself, its body kept. */
    fetch_wait(&fx, &r, NULL, url(&fx, &fx.srv, "/r1", u, sizeof u), NULL, NULL, 0, 0, 0, 0);
    assert_int_equal(r.status, 302);
    assert_string_equal(r.body, "moved...!");
    assert_true(result_has_header(&r, "Location: /final"));
    assert_string_equal(r.url, u);
    result_free(&r);

    /* Followed: the final response and URL, on the same connection. */
    fetch_wait(&fx, &r, NULL, u, NULL, NULL, 0, 0, 0, 1);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "GET /final cl=no ct=no body=");
    assert_string_equal(r.url, url(&fx, &fx.srv, "/final", want, sizeof want));
    assert_int_equal(fx.srv.accepted, 1);
    result_free(&r);

    /* A relative Location, merged with the directory. */
    fetch_wait(&fx, &r, NULL, url(&fx, &fx.srv, "/rel/a", u, sizeof u), NULL, NULL, 0, 0, 0, 1);
    assert_string_equal(r.body, "GET /rel/b?x=1 cl=no ct=no body=");
    result_free(&r);

    /* 303 turns a POST into a GET without its body; 307 keeps both; 302
     * and 301 turn a POST into a GET; 301 keeps a PUT. */
    static const struct {
        const char *path, *method, *want;
    } cases[] = {
        {"/303", "POST", "GET /echo cl=no ct=no body="},
        {"/307", "POST", "POST /echo cl=yes ct=yes body=abc"},
        {"/302", "POST", "GET /echo cl=no ct=no body="},
        {"/301", "POST", "GET /echo cl=no ct=no body="},
        {"/301", "PUT", "PUT /echo cl=yes ct=yes body=abc"},
        {"/303", "HEAD", ""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        fetch_wait(&fx, &r, cases[i].method, url(&fx, &fx.srv, cases[i].path, u, sizeof u),
                   "Content-Type: text/plain\r\n", "abc", 3, 0, 0, 1);
        assert_int_equal(r.status, 200);
        if (strcmp(r.body, cases[i].want) != 0)
            fail_msg("%s %s: '%s'", cases[i].method, cases[i].path, r.body);
        result_free(&r);
    }

    /* Too many: the sixth redirect fails. */
    int before = fx.srv.requests;
    fetch_wait(&fx, &r, NULL, url(&fx, &fx.srv, "/loop", u, sizeof u), NULL, NULL, 0, 0, 0, 1);
    assert_string_equal(r.error, "too many redirects");
    assert_int_equal(r.status, 0);
    assert_int_equal(fx.srv.requests - before, 1 + WS_FETCH_MAX_REDIRECTS);
    result_free(&r);

    /* To another origin: the caller's credentials and cookies stay behind. */
    snprintf(u, sizeof u, "http://u:p@127.0.0.1:%d/cross", fx.srv.port);
    fetch_wait(&fx, &r, NULL, u, "Authorization: Bearer t\r\nCookie: c=1\r\nX-Keep: 1\r\n", NULL, 0, 0, 0, 1);
    assert_int_equal(r.status, 200);
    assert_int_equal(fx.srv2.requests, 1);
    assert_non_null(strstr(fx.srv2.last, "\r\nX-Keep: 1\r\n"));
    assert_null(strstr(fx.srv2.last, "Authorization"));
    assert_null(strstr(fx.srv2.last, "Cookie"));
    snprintf(want, sizeof want, "\r\nHost: 127.0.0.1:%d\r\n", fx.srv2.port);
    assert_non_null(strstr(fx.srv2.last, want));
    assert_non_null(strstr(fx.srv.last, "Authorization: Bearer t")); /* the first hop had them */
    result_free(&r);

    /* Where a Location may not lead. */
    static const struct {
        const char *path, *error;
    } bad[] = {
        {"/ftp", "invalid url: unsupported scheme (only http and https)"},
        {"/https", "connection refused"}, /* followed: nothing listens on 443 here */
        {"/meta", "address not allowed"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        fetch_wait(&fx, &r, NULL, url(&fx, &fx.srv, bad[i].path, u, sizeof u), NULL, NULL, 0, 0, 0, 1);
        assert_string_equal(r.error, bad[i].error);
        result_free(&r);
    }
    fx_teardown(&fx);
}

/* --- the cap on connections --- */

static void test_fetch_max_outbound_queues_requests(void **state)
{
    (void)state;
    ws_fetch_config_t cfg;
    ws_fetch_config_init(&cfg);
    cfg.max_outbound = 1;
    fx_t fx;
    fx_setup(&fx, &cfg);
    srv_start(&fx, &fx.srv2, srv_answer_ok);
    fx.srv.answer = srv_answer_hold;
    char u[256], u2[256];
    url(&fx, &fx.srv, "/", u, sizeof u);
    url(&fx, &fx.srv2, "/", u2, sizeof u2);
    result_t a, b, c;
    result_init(&a, &fx);
    result_init(&b, &fx);
    result_init(&c, &fx);

    /* Same host: B waits for A's connection, then reuses it. */
    fx_fetch(&fx, &a, NULL, u, NULL, NULL, 0, 0, 0, 0);
    fx_fetch(&fx, &b, NULL, u, NULL, NULL, 0, 0, 0, 0);
    assert_true(fx_run_until(&fx, held, &fx.srv, WAIT));
    fx_wait(&fx, 50);
    assert_int_equal(ws_fetcher_connections(fx.f), 1);
    assert_int_equal(fx.srv.accepted, 1);
    assert_int_equal(fx.srv.requests, 1);
    assert_int_equal(b.done, 0);
    srv_answer_ok(&fx.srv, fx.srv.held[0], NULL, 0);
    fx.srv.nheld = 0;
    assert_true(fx_run_until(&fx, result_done, &a, WAIT));
    assert_true(fx_run_until(&fx, held, &fx.srv, WAIT));
    assert_int_equal(fx.srv.accepted, 1);
    assert_int_equal(fx.srv.conns[0]->nreq, 2);

    /* Another host while at the cap: C waits; its timeout runs meanwhile. */
    fx_fetch(&fx, &c, NULL, u2, NULL, NULL, 0, 200, 0, 0);
    assert_true(fx_run_until(&fx, result_done, &c, WAIT));
    assert_string_equal(c.error, "timeout");
    assert_int_equal(fx.srv2.accepted, 0);
    result_free(&c);

    /* Another host, with the only connection idle: it is closed for it. */
    result_init(&c, &fx);
    fx_fetch(&fx, &c, NULL, u2, NULL, NULL, 0, 0, 0, 0);
    fx_wait(&fx, 50);
    assert_int_equal(c.done, 0);
    srv_answer_ok(&fx.srv, fx.srv.held[0], NULL, 0);
    assert_true(fx_run_until(&fx, result_done, &b, WAIT));
    assert_true(fx_run_until(&fx, result_done, &c, WAIT));
    assert_int_equal(c.status, 200);
    assert_int_equal(fx.srv2.accepted, 1);
    assert_int_equal(ws_fetcher_connections(fx.f), 1);
    assert_true(fx_run_until(&fx, srv_open_none, &fx.srv, WAIT));
    result_free(&a);
    result_free(&b);
    result_free(&c);
    fx_teardown(&fx);
}

typedef struct {
    fx_t *fx;
    result_t *r;
    int n;
    size_t most; /* the most connections seen open at once */
} many_t;

static int all_done_counting(void *ud)
{
    many_t *m = ud;
    size_t open = ws_fetcher_connections(m->fx->f);
    if (open > m->most)
        m->most = open;
    for (int i = 0; i < m->n; i++)
        if (!m->r[i].done)
            return 0;
    return 1;
}

static void test_fetch_max_outbound_is_never_exceeded(void **state)
{
    (void)state;
    ws_fetch_config_t cfg;
    ws_fetch_config_init(&cfg);
    cfg.max_outbound = 2;
    fx_t fx;
    fx_setup(&fx, &cfg);
    char u[256];
    url(&fx, &fx.srv, "/", u, sizeof u);
    result_t r[6];
    many_t m = {&fx, r, 6, 0};
    for (int i = 0; i < 6; i++) {
        result_init(&r[i], &fx);
        fx_fetch(&fx, &r[i], NULL, u, NULL, NULL, 0, 0, 0, 0);
    }
    m.most = ws_fetcher_connections(fx.f);
    assert_true(fx_run_until(&fx, all_done_counting, &m, WAIT));
    assert_int_equal(m.most, 2);
    for (int i = 0; i < 6; i++) {
        assert_int_equal(r[i].status, 200);
        result_free(&r[i]);
    }
    /* the waiting ones went out on the connections the first ones freed */
    assert_int_equal(fx.srv.accepted, 2);
    assert_int_equal(fx.srv.requests, 6);
    fx_teardown(&fx);
}

/* --- cancel and free --- */

static void answer_partial(srv_t *s, sconn_t *c, const char *req, size_t len)
{
    srv_answer_hold(s, c, req, len);
    srv_send(c, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nab");
}

static int accepted_one(void *ud) { return ((srv_t *)ud)->accepted > 0; }

static void test_fetch_cancel_at_every_stage(void **state)
{
    (void)state;
    ws_fetch_config_t cfg;
    ws_fetch_config_init(&cfg);
    cfg.max_outbound = 1;
    fx_t fx;
    fx_setup(&fx, &cfg);
    char u[256];
    url(&fx, &fx.srv, "/", u, sizeof u);
    result_t r[8];
    for (int i = 0; i < 8; i++)
        result_init(&r[i], &fx);

    /* Finished, not delivered yet. */
    ws_fetch_cancel(fx_fetch(&fx, &r[0], NULL, "http://x.invalid/", NULL, NULL, 0, 0, 0, 0));
    /* Resolving (a name; its lookup finishes later, to nobody). */
    ws_fetch_cancel(fx_fetch(&fx, &r[1], NULL, "http://localhost:1/", NULL, NULL, 0, 0, 0, 0));
    /* Connecting. */
    ws_fetch_cancel(fx_fetch(&fx, &r[2], NULL, u, NULL, NULL, 0, 0, 0, 0));
    fx_wait(&fx, 50);
    assert_true(fx_run_until(&fx, fx_no_connections, &fx, WAIT));

    /* Receiving: part of the response came. */
    fx.srv.answer = answer_partial;
    ws_fetch_t *x = fx_fetch(&fx, &r[3], NULL, u, NULL, NULL, 0, 0, 0, 0);
    /* Queued behind it (the cap is 1). */
    ws_fetch_t *q = fx_fetch(&fx, &r[4], NULL, u, NULL, NULL, 0, 0, 0, 0);
    assert_true(fx_run_until(&fx, held, &fx.srv, WAIT));
    fx_wait(&fx, 50);
    ws_fetch_cancel(q);
    ws_fetch_cancel(x);
    assert_int_equal(ws_fetcher_connections(fx.f), 0); /* closed, not pooled */
    assert_true(fx_run_until(&fx, srv_open_none, &fx.srv, WAIT));
    assert_int_equal(fx.srv.requests, 1); /* the queued one never left */

    /* Sending: a body the server never reads. */
    srv_start(&fx, &fx.srv2, NULL);
    fx.srv2.no_read = 1;
    url(&fx, &fx.srv2, "/", u, sizeof u);
    size_t big = 32 << 20;
    char *body = malloc(big);
    memset(body, 'b', big);
    x = fx_fetch(&fx, &r[5], "POST", u, NULL, body, big, 0, 0, 0);
    free(body); /* copied */
    assert_true(fx_run_until(&fx, accepted_one, &fx.srv2, WAIT));
    fx_wait(&fx, 100);
    ws_fetch_cancel(x);
    assert_int_equal(ws_fetcher_connections(fx.f), 0);
    fx_wait(&fx, 100);

    for (int i = 0; i < 8; i++) {
        assert_int_equal(r[i].done, 0);
        result_free(&r[i]);
    }
    /* Cancelling NULL does nothing. */
    ws_fetch_cancel(NULL);
    fx_teardown(&fx);
}

static int one_done(void *ud) { return ((result_t *)ud)->done > 0; }

static void test_fetch_free_with_requests_in_flight(void **state)
{
    (void)state;
    ws_fetch_config_t cfg;
    ws_fetch_config_init(&cfg);
    cfg.max_outbound = 2;
    fx_t fx;
    fx_setup(&fx, &cfg);
    srv_start(&fx, &fx.srv2, srv_answer_hold);
    char u[256], u2[256];
    url(&fx, &fx.srv, "/", u, sizeof u);
    url(&fx, &fx.srv2, "/", u2, sizeof u2);
    result_t r[8];
    for (int i = 0; i < 8; i++)
        result_init(&r[i], &fx);
    /* An idle pooled connection. */
    fx_fetch(&fx, &r[0], NULL, u, NULL, NULL, 0, 0, 0, 0);
    assert_true(fx_run_until(&fx, one_done, &r[0], WAIT));
    assert_int_equal(ws_fetcher_idle(fx.f), 1);
    /* Receiving (held by the server), then at the cap: queued. */
    fx_fetch(&fx, &r[1], NULL, u2, NULL, NULL, 0, 0, 0, 0);
    assert_true(fx_run_until(&fx, held, &fx.srv2, WAIT));
    fx_fetch(&fx, &r[2], NULL, u2, NULL, NULL, 0, 0, 0, 0); /* takes the idle one's place: connecting */
    fx_fetch(&fx, &r[3], NULL, u2, NULL, NULL, 0, 0, 0, 0); /* queued */
    fx_fetch(&fx, &r[4], NULL, "http://localhost:1/", NULL, NULL, 0, 0, 0, 0); /* resolving */
    fx_fetch(&fx, &r[5], NULL, "http://x.invalid/", NULL, NULL, 0, 0, 0, 0);  /* done, undelivered */
    ws_fetcher_free(fx.f);
    fx.f = NULL;
    fx_wait(&fx, 100);
    for (int i = 1; i < 8; i++)
        assert_int_equal(r[i].done, 0);
    for (int i = 0; i < 8; i++)
        result_free(&r[i]);
    fx_teardown(&fx); /* runs the loop until the last handle and lookup are done */
}

static void start_another(void *ud, const ws_fetch_res_t *res)
{
    (void)res;
    result_t *next = ud;
    fx_fetch(next->fx, next, NULL, "http://x.invalid/again", NULL, NULL, 0, 0, 0, 0);
}

static void test_fetch_callbacks_may_start_requests_and_free_the_fetcher(void **state)
{
    (void)state;
    fx_t fx;
    fx_setup(&fx, NULL);
    result_t a, b, c, d;
    result_init(&a, &fx);
    result_init(&b, &fx);
    result_init(&c, &fx);
    result_init(&d, &fx);
    /* A callback that starts another request: it is delivered on a later turn. */
    a.then = start_another;
    a.then_ud = &b;
    fx_fetch(&fx, &a, NULL, "http://x.invalid/", NULL, NULL, 0, 0, 0, 0);
    assert_true(fx_run_until(&fx, result_done, &b, WAIT));
    assert_string_equal(b.error, "cannot resolve host");
    assert_string_equal(b.url, "http://x.invalid/again");
    assert_true(b.turn > a.turn); /* not in the same turn as the callback that started it */
    /* A callback that frees the fetcher: the other finished request is never delivered. */
    c.free_fetcher = 1;
    fx_fetch(&fx, &c, NULL, "http://x.invalid/1", NULL, NULL, 0, 0, 0, 0);
    fx_fetch(&fx, &d, NULL, "http://x.invalid/2", NULL, NULL, 0, 0, 0, 0);
    assert_true(fx_run_until(&fx, result_done, &c, WAIT));
    assert_null(fx.f);
    fx_wait(&fx, 50);
    assert_int_equal(d.done, 0);
    result_free(&a);
    result_free(&b);
    result_free(&c);
    result_free(&d);
    fx_teardown(&fx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fetch_content_length),
        cmocka_unit_test(test_fetch_bytes_after_the_response_are_not_pooled),
        cmocka_unit_test(test_fetch_chunked),
        cmocka_unit_test(test_fetch_close_delimited),
        cmocka_unit_test(test_fetch_head_and_204_have_no_body),
        cmocka_unit_test(test_fetch_big_body_grows_as_it_arrives),
        cmocka_unit_test(test_fetch_keep_alive_reuses_the_connection),
        cmocka_unit_test(test_fetch_keep_alive_with_io_uring),
        cmocka_unit_test(test_fetch_pool_is_bounded_expires_and_notices_closes),
        cmocka_unit_test(test_fetch_no_pool_when_pool_per_host_is_zero),
        cmocka_unit_test(test_fetch_stale_pooled_connection_is_retried_for_get),
        cmocka_unit_test(test_fetch_stale_pooled_connection_is_not_retried_for_post),
        cmocka_unit_test(test_fetch_server_closes_mid_response),
        cmocka_unit_test(test_fetch_response_too_large),
        cmocka_unit_test(test_fetch_invalid_response),
        cmocka_unit_test(test_fetch_timeout),
        cmocka_unit_test(test_fetch_a_connect_that_times_out_frees_its_slot),
        cmocka_unit_test(test_fetch_connection_refused),
        cmocka_unit_test(test_fetch_fails_at_once_without_traffic),
        cmocka_unit_test(test_fetch_address_policy),
        cmocka_unit_test(test_fetch_resolves_names_and_checks_every_address),
        cmocka_unit_test(test_fetch_request_headers_and_credentials),
        cmocka_unit_test(test_fetch_redirects),
        cmocka_unit_test(test_fetch_max_outbound_queues_requests),
        cmocka_unit_test(test_fetch_max_outbound_is_never_exceeded),
        cmocka_unit_test(test_fetch_cancel_at_every_stage),
        cmocka_unit_test(test_fetch_free_with_requests_in_flight),
        cmocka_unit_test(test_fetch_callbacks_may_start_requests_and_free_the_fetcher),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
