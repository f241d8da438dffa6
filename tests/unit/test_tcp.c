/* The TCP transport over real loopback sockets: a listener accepts what
 * ws_tcp_connect opens, bytes go both ways (writev and, where the kernel
 * allows, io_uring), the shutdown reaches the peer as the end of its stream,
 * and everything is freed with the loop. */
#include <arpa/inet.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "buf.h"
#include "tcp.h"

typedef struct {
    ws_transport_t *t;
    ws_buf_t in;        /* what arrived */
    int ended;          /* on_end ran (with end_err) */
    int end_err;
    int shut;           /* on_shutdown ran */
    int closed;         /* on_close ran */
    int written;        /* write completions, and the last status */
    int write_status;
} side_t;

typedef struct {
    uv_loop_t loop;
    ws_io_t io;
    ws_tcp_listener_t l;
    side_t server, client;
    int connected;
    int connect_status;
} fixture_t;

static void on_read(void *ud, uint8_t *data, size_t len) { ws_buf_append(&((side_t *)ud)->in, data, len); }

static void on_end(void *ud, int err)
{
    side_t *s = ud;
    s->ended = 1;
    s->end_err = err;
}

static void on_shutdown(void *ud, int status)
{
    (void)status;
    ((side_t *)ud)->shut = 1;
}

static void on_close(void *ud) { ((side_t *)ud)->closed = 1; }

static const ws_transport_cb_t side_cb = {on_read, on_end, on_shutdown, on_close};

static void on_accept(void *ud, ws_transport_t *t)
{
    fixture_t *f = ud;
    f->server.t = t;
    ws_transport_start(t, &side_cb, &f->server);
}

static void on_connect(void *ud, ws_transport_t *t, int status)
{
    fixture_t *f = ud;
    f->connected = 1;
    f->connect_status = status;
    f->client.t = t;
    if (t)
        ws_transport_start(t, &side_cb, &f->client);
}

static void on_written(ws_write_t *w, int status, int waited)
{
    (void)waited;
    side_t *s = w->data;
    s->written++;
    s->write_status = status;
}

/* Turn the loop, with the deferred work a server's flush would run, until
 * done(f) or a bounded number of turns (each blocks only for I/O that is due). */
static int run_until(fixture_t *f, int (*done)(fixture_t *))
{
    for (int i = 0; i < 2000 && !done(f); i++) {
        while (ws_io_run(&f->io))
            ;
        if (done(f))
            break;
        uv_run(&f->loop, UV_RUN_ONCE);
    }
    return done(f);
}

static int both_connected(fixture_t *f) { return f->connected && f->server.t != NULL; }

static void setup(fixture_t *f, int ring)
{
    memset(f, 0, sizeof *f);
    assert_int_equal(uv_loop_init(&f->loop), 0);
    ws_io_init(&f->io, &f->loop);
    if (ring) {
        char why[128];
        if (ws_tcp_use_ring(&f->io, why, sizeof why) != 0)
            print_message("no io_uring here (%s): the writev path runs twice\n", why);
    }
    char err[256];
    assert_int_equal(ws_tcp_listen(&f->l, &f->io, "127.0.0.1", 0, on_accept, f, err, sizeof err), 0);
    int port = ws_tcp_listener_port(&f->l);
    assert_true(port > 0);
    struct sockaddr_in addr;
    assert_int_equal(uv_ip4_addr("127.0.0.1", port, &addr), 0);
    ws_tcp_connect_t *attempt;
    assert_int_equal(ws_tcp_connect(&f->io, (struct sockaddr *)&addr, on_connect, f, &attempt), 0);
    assert_true(run_until(f, both_connected));
    assert_int_equal(f->connect_status, 0);
}

static int both_closed(fixture_t *f) { return f->server.closed && f->client.closed; }

static void teardown(fixture_t *f)
{
    ws_transport_close(f->server.t);
    ws_transport_close(f->client.t);
    assert_true(run_until(f, both_closed));
    ws_tcp_listener_close(&f->l);
    ws_io_free(&f->io);
    uv_run(&f->loop, UV_RUN_NOWAIT);
    ws_buf_free(&f->server.in);
    ws_buf_free(&f->client.in);
    assert_int_equal(uv_loop_close(&f->loop), 0);
}

static int client_got_all(fixture_t *f) { return f->client.in.len == 256 * 1024 && f->server.written; }

static int server_ended(fixture_t *f) { return f->server.ended; }

static void send_both_ways(int ring)
{
    fixture_t f;
    setup(&f, ring);
    /* The peer addresses are loopback ones, with the port formatted in. */
    char peer[WS_REMOTE_MAX];
    ws_transport_peer(f.server.t, peer, sizeof peer);
    assert_non_null(strstr(peer, "127.0.0.1:"));

    /* 256 KiB from the server: more than one write fits, so part of it waits. */
    static uint8_t big[256 * 1024];
    for (size_t i = 0; i < sizeof big; i++)
        big[i] = (uint8_t)(i * 31 + 7);
    uv_buf_t iov[2] = {uv_buf_init((char *)big, 100), uv_buf_init((char *)big + 100, sizeof big - 100)};
    ws_write_t w;
    memset(&w, 0, sizeof w);
    w.iov = iov;
    w.n = 2;
    w.unsent = sizeof big;
    w.cb = on_written;
    w.data = &f.server;
    assert_int_equal(ws_transport_write(f.server.t, &w), 0);
    assert_int_equal(f.server.written, 0); /* never inside the write call */
    assert_true(run_until(&f, client_got_all));
    assert_int_equal(f.server.written, 1);
    assert_int_equal(f.server.write_status, 0);
    assert_int_equal(w.unsent, 0);
    assert_memory_equal(f.client.in.data, big, sizeof big);
    ws_write_release(&w);

    /* The client ends its side: the server hears the end of the stream. */
    ws_transport_shutdown(f.client.t);
    assert_true(run_until(&f, server_ended));
    assert_int_equal(f.server.end_err, UV_EOF);
    assert_true(f.client.shut);
    teardown(&f);
}

static void test_tcp_connect_accept_and_send_both_ways_with_writev(void **state)
{
    (void)state;
    send_both_ways(0);
}

static void test_tcp_connect_accept_and_send_both_ways_with_io_uring(void **state)
{
    (void)state;
    send_both_ways(1);
}

static void test_tcp_connect_to_a_closed_port_reports_the_error(void **state)
{
    (void)state;
    fixture_t f;
    memset(&f, 0, sizeof f);
    assert_int_equal(uv_loop_init(&f.loop), 0);
    ws_io_init(&f.io, &f.loop);
    /* Bind a port and close it again: nothing listens there now. */
    char err[256];
    assert_int_equal(ws_tcp_listen(&f.l, &f.io, "127.0.0.1", 0, on_accept, &f, err, sizeof err), 0);
    int port = ws_tcp_listener_port(&f.l);
    ws_tcp_listener_close(&f.l);
    uv_run(&f.loop, UV_RUN_NOWAIT);
    struct sockaddr_in addr;
    assert_int_equal(uv_ip4_addr("127.0.0.1", port, &addr), 0);
    ws_tcp_connect_t *attempt;
    assert_int_equal(ws_tcp_connect(&f.io, (struct sockaddr *)&addr, on_connect, &f, &attempt), 0);
    for (int i = 0; i < 100 && !f.connected; i++)
        uv_run(&f.loop, UV_RUN_ONCE);
    assert_true(f.connected);
    assert_int_equal(f.connect_status, UV_ECONNREFUSED);
    assert_null(f.client.t);
    ws_io_free(&f.io);
    uv_run(&f.loop, UV_RUN_NOWAIT);
    assert_int_equal(uv_loop_close(&f.loop), 0);
}

/* Sockets in SYN_SENT towards 127.0.0.1:port (/proc/net/tcp, state 02). */
static int syn_sent_to(int port)
{
    FILE *fp = fopen("/proc/net/tcp", "r");
    assert_non_null(fp);
    char line[512];
    int n = 0;
    while (fgets(line, sizeof line, fp)) {
        unsigned rport, st;
        if (sscanf(line, " %*d: %*x:%*x %*x:%x %x", &rport, &st) == 2 && (int)rport == port &&
            st == 2)
            n++;
    }
    fclose(fp);
    return n;
}

static void test_tcp_a_cancelled_connect_closes_its_socket_at_once(void **state)
{
    (void)state;
    fixture_t f;
    memset(&f, 0, sizeof f);
    assert_int_equal(uv_loop_init(&f.loop), 0);
    ws_io_init(&f.io, &f.loop);
    /* A listener that never accepts, its queue full: the kernel drops
     * further SYNs, so a connect to it stays in SYN_SENT (as to a host
     * that does not answer), on loopback. */
    int ls = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in addr;
    assert_int_equal(uv_ip4_addr("127.0.0.1", 0, &addr), 0);
    assert_int_equal(bind(ls, (struct sockaddr *)&addr, sizeof addr), 0);
    assert_int_equal(listen(ls, 0), 0);
    socklen_t alen = sizeof addr;
    assert_int_equal(getsockname(ls, (struct sockaddr *)&addr, &alen), 0);
    int port = ntohs(addr.sin_port);
    int fillers[4];
    for (int i = 0; i < 4; i++) {
        fillers[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        connect(fillers[i], (struct sockaddr *)&addr, sizeof addr);
    }
    int before = 0;
    for (int i = 0; i < 1000 && before < 2; i++) {
        before = syn_sent_to(port);
        if (before < 2)
            uv_sleep(1);
    }
    assert_true(before >= 2); /* the queue is full: later SYNs are dropped */
    ws_tcp_connect_t *attempt;
    assert_int_equal(ws_tcp_connect(&f.io, (struct sockaddr *)&addr, on_connect, &f, &attempt), 0);
    for (int i = 0; i < 10; i++)
        uv_run(&f.loop, UV_RUN_NOWAIT);
    assert_int_equal(syn_sent_to(port), before + 1);
    ws_tcp_connect_cancel(attempt);
    uv_run(&f.loop, UV_RUN_NOWAIT);
    assert_int_equal(syn_sent_to(port), before);
    for (int i = 0; i < 10; i++)
        uv_run(&f.loop, UV_RUN_NOWAIT);
    assert_false(f.connected); /* its callback never runs */
    for (int i = 0; i < 4; i++)
        close(fillers[i]);
    close(ls);
    ws_io_free(&f.io);
    uv_run(&f.loop, UV_RUN_NOWAIT);
    assert_int_equal(uv_loop_close(&f.loop), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tcp_connect_accept_and_send_both_ways_with_writev),
        cmocka_unit_test(test_tcp_connect_accept_and_send_both_ways_with_io_uring),
        cmocka_unit_test(test_tcp_connect_to_a_closed_port_reports_the_error),
        cmocka_unit_test(test_tcp_a_cancelled_connect_closes_its_socket_at_once),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
