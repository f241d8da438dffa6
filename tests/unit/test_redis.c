/* The Redis client (redis.h): its URLs, and the client against scripted
 * RESP servers on 127.0.0.1 and on a unix socket, in one real loop
 * (redis_harness.h): pipelining, units, AUTH and SELECT on every
 * connection, failures with their exact reasons, reconnection, the bound
 * on queued calls, timeouts, cancel, callbacks that make calls, the client
 * freed with calls in flight. Every test ends with the memory counters
 * where they started and the loop closing cleanly. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <cmocka.h>

#include "log.h"
#include "mem.h"
#include "redis.h"
#include "redis_harness.h"

#define WAIT 5000 /* ms: generous, for valgrind */

/* r ended once, outside ws_redis_call, with error (or "" and the reply text). */
#define assert_result(r, err, txt)                                                                 \
    do {                                                                                           \
        assert_int_equal((r)->done, 1);                                                            \
        assert_false((r)->in_call);                                                                \
        assert_string_equal((r)->error, (err));                                                    \
        assert_string_equal((r)->text, (txt));                                                     \
    } while (0)

static ws_redis_stats_t stats(const ws_redis_t *r)
{
    ws_redis_stats_t s;
    memset(&s, 0xff, sizeof s);
    ws_redis_stats(r, &s);
    return s;
}

/* Wait for r and check it. */
static void wait_result(fx_t *fx, result_t *r)
{
    assert_true(fx_run_until(fx, result_done, r, WAIT));
}

static int held_n(rsrv_t *s, int n) { return s->nheld >= n; }
static int held2(void *s) { return held_n(s, 2); }
static int held3(void *s) { return held_n(s, 3); }
static int held6(void *s) { return held_n(s, 6); }
static int accepted2(void *s) { return ((rsrv_t *)s)->accepted >= 2; }
static int first_eof(void *s) { return ((rsrv_t *)s)->accepted >= 1 && ((rsrv_t *)s)->conns[0]->eof; }

/* A port nothing listens on (one a server had a moment ago). */
static int down_port(fx_t *fx)
{
    rsrv_t tmp;
    memset(&tmp, 0, sizeof tmp);
    rsrv_start(fx, &tmp, 0, NULL);
    int port = tmp.port;
    rsrv_unlisten(&tmp);
    while (tmp.lclosing)
        uv_run(&fx->lh.loop, UV_RUN_ONCE);
    rsrv_free(&tmp);
    return port;
}

/* Stop fx->srv listening (no connection was made) and wait for the close. */
static void srv_down(fx_t *fx)
{
    rsrv_unlisten(&fx->srv);
    while (fx->srv.lclosing)
        uv_run(&fx->lh.loop, UV_RUN_ONCE);
}

/* ====================================================================== */
/* URLs                                                                   */
/* ====================================================================== */

typedef struct {
    const char *in;
    const char *host;     /* NULL: none */
    int port;
    const char *path;
    const char *user;
    const char *password;
    long db;
    const char *display;
} good_url_t;

static const good_url_t GOOD[] = {
    {"redis://h", "h", 6379, NULL, NULL, NULL, 0, "redis://h"},
    {"redis://h:6380/3", "h", 6380, NULL, NULL, NULL, 3, "redis://h:6380/3"},
    {"redis://h/", "h", 6379, NULL, NULL, NULL, 0, "redis://h/"},
    {"redis://:pw@h", "h", 6379, NULL, NULL, "pw", 0, "redis://:***@h"},
    {"redis://user:pw@h/1", "h", 6379, NULL, "user", "pw", 1, "redis://user:***@h/1"},
    {"redis://:p%40s%3As%2F@h:7000/12", "h", 7000, NULL, NULL, "p@s:s/", 12, "redis://:***@h:7000/12"},
    {"redis://u%20x:a%25b@redis.example.com", "redis.example.com", 6379, NULL, "u x", "a%b", 0,
     "redis://u%20x:***@redis.example.com"},
    {"redis://[::1]", "::1", 6379, NULL, NULL, NULL, 0, "redis://[::1]"},
    {"redis://:pw@[::1]:6390/2", "::1", 6390, NULL, NULL, "pw", 2, "redis://:***@[::1]:6390/2"},
    {"redis://10.0.0.1:1/999999999", "10.0.0.1", 1, NULL, NULL, NULL, 999999999, "redis://10.0.0.1:1/999999999"},
    {"unix:///tmp/r.sock", NULL, 0, "/tmp/r.sock", NULL, NULL, 0, "unix:///tmp/r.sock"},
    {"unix:///tmp/r.sock?db=2&password=x&user=u", NULL, 0, "/tmp/r.sock", "u", "x", 2,
     "unix:///tmp/r.sock?db=2&password=***&user=u"},
    {"unix:///tmp/r.sock?password=sekret", NULL, 0, "/tmp/r.sock", NULL, "sekret", 0,
     "unix:///tmp/r.sock?password=***"},
    {"unix:///tmp/r.sock?user=u&password=sekret&db=0", NULL, 0, "/tmp/r.sock", "u", "sekret", 0,
     "unix:///tmp/r.sock?user=u&password=***&db=0"},
};

static void check_str(const char *what, const char *in, const char *want, const char *got)
{
    if (!want && !got)
        return;
    if (!want || !got || strcmp(want, got) != 0)
        fail_msg("%s: %s: want %s, got %s", in, what, want ? want : "NULL", got ? got : "NULL");
}

static void test_url_good(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof GOOD / sizeof GOOD[0]; i++) {
        const good_url_t *g = &GOOD[i];
        ws_redis_url_t u;
        char err[256] = "";
        if (ws_redis_url_parse(&u, g->in, strlen(g->in), err, sizeof err) != 0)
            fail_msg("%s: refused: %s", g->in, err);
        check_str("host", g->in, g->host, u.host);
        check_str("path", g->in, g->path, u.path);
        check_str("user", g->in, g->user, u.user);
        check_str("password", g->in, g->password, u.password);
        check_str("display", g->in, g->display, u.display);
        if (u.port != g->port)
            fail_msg("%s: port %d, want %d", g->in, u.port, g->port);
        if (u.db != g->db)
            fail_msg("%s: db %ld, want %ld", g->in, u.db, g->db);
        ws_redis_url_free(&u);
        assert_null(u.host);
        assert_null(u.password);
    }
    /* Only s[0..len) is read. */
    const char *s = "redis://h:6380/3XXXX";
    ws_redis_url_t u;
    char err[256];
    assert_int_equal(ws_redis_url_parse(&u, s, strlen(s) - 4, err, sizeof err), 0);
    assert_int_equal(u.db, 3);
    assert_string_equal(u.display, "redis://h:6380/3");
    ws_redis_url_free(&u);
    /* The longest unix path that fits sun_path (107 bytes and its NUL). */
    char longp[200];
    snprintf(longp, sizeof longp, "unix:///%0106d", 0);
    assert_int_equal(ws_redis_url_parse(&u, longp, strlen(longp), err, sizeof err), 0);
    assert_int_equal(strlen(u.path), 107);
    ws_redis_url_free(&u);
}

typedef struct {
    const char *in;
    const char *want; /* a piece of the reason */
} bad_url_t;

static const bad_url_t BAD[] = {
    {"", NULL},
    {"h:6379", NULL},
    {":sekret@h", NULL},
    {"//:sekret@h", NULL},
    {"http://:sekret@h", NULL},
    {"https://u:sekret@h/", NULL},
    {"rediss://:sekret@h", "TLS"},
    {"rediss://h:6380", "TLS"},
    {"redis://", NULL},
    {"redis://:sekret@", NULL},
    {"redis://:sekret@:6379/1", NULL},
    {"redis://:sekret@h:99999", NULL},
    {"redis://:sekret@h:0", NULL},
    {"redis://:sekret@h:x1", NULL},
    {"redis://:sekret@h/x", "db"},
    {"redis://:sekret@h/-1", "db"},
    {"redis://:sekret@h/1234567890", "db"},
    {"redis://:sekret@h/1/2", "db"},
    {"redis://user@h", "password"},
    {"redis://user:@h", "password"},
    {"redis://:sekret@h?db=1", "query"},
    {"redis://:sekret@h/1?password=sekret", "query"},
    {"redis://:sek ret@h", NULL},
    {"redis://:sek%zzret@h", NULL},
    {"unix://tmp/r.sock?password=sekret", "absolute"},
    {"unix://", "absolute"},
    {"unix://?password=sekret", "absolute"},
    {"unix:///tmp/r.sock?password=sekret&foo=1", "unknown"},
    {"unix:///tmp/r.sock?db=1&password=sekret&timeout=2", "unknown"},
    {"unix:///tmp/r.sock?password=sekret&db", "'='"},
    {"unix:///tmp/r.sock?password=sekret&db=x", "db"},
    {"unix:///tmp/r.sock?db=&password=sekret", "db"},
};

static void check_bad(const char *in, size_t len, const char *want)
{
    ws_redis_url_t u;
    char err[256];
    memset(err, 0, sizeof err);
    memset(&u, 0x5a, sizeof u);
    if (ws_redis_url_parse(&u, in, len, err, sizeof err) == 0) {
        ws_redis_url_free(&u);
        fail_msg("%s: accepted", in);
    }
    if (!err[0])
        fail_msg("%s: refused without a reason", in);
    if (strstr(err, "sekret") || strstr(err, "sek"))
        fail_msg("%s: the reason shows the password: %s", in, err);
    if (want && !strstr(err, want))
        fail_msg("%s: reason \"%s\" does not mention %s", in, err, want);
    /* nothing to free: u holds no pointers */
    assert_null(u.host);
    assert_null(u.path);
    assert_null(u.user);
    assert_null(u.password);
    assert_null(u.display);
}

static void test_url_bad(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof BAD / sizeof BAD[0]; i++)
        check_bad(BAD[i].in, strlen(BAD[i].in), BAD[i].want);
    /* A unix path one byte too long for sun_path. */
    char longp[300];
    snprintf(longp, sizeof longp, "unix:///%0107d?password=sekret", 0);
    check_bad(longp, strlen(longp), "too long");
    snprintf(longp, sizeof longp, "unix:///%0250d", 0);
    check_bad(longp, strlen(longp), "too long");
    /* A NUL inside the path. */
    static const char nul[] = "unix:///tmp/a\0b?password=sekret";
    check_bad(nul, sizeof nul - 1, NULL);
    /* A small err buffer is not overrun and stays terminated. */
    ws_redis_url_t u;
    char small[8];
    memset(small, 'z', sizeof small);
    assert_int_equal(ws_redis_url_parse(&u, "rediss://h", 10, small, 5), -1);
    assert_int_equal(strlen(small), 4);
    assert_int_equal(small[5], 'z');
}

static void test_client_display(void **state)
{
    (void)state;
    fx_t fx;
    fx_setup(&fx);
    fx_client(&fx, "redis://user:sekret@127.0.0.1:1/4", 0, 0);
    assert_string_equal(ws_redis_display(fx.r), "redis://user:***@127.0.0.1:1/4");
    /* Nothing connects until the first call. */
    fx_wait(&fx, 20);
    ws_redis_stats_t st = stats(fx.r);
    assert_int_equal(st.connected, 0);
    assert_int_equal(st.connects, 0);
    assert_int_equal(st.in_flight, 0);
    assert_int_equal(st.queued, 0);
    fx_teardown(&fx);
}

/* ====================================================================== */
/* Replies in order                                                       */
/* ====================================================================== */

#define NPIPE 1000

static void test_pipelining_replies_reach_their_callers(void **state)
{
    (void)state;
    fx_t fx;
    fx_setup(&fx);
    char u[256];
    fx_client(&fx, fx_url(&fx.srv, NULL, NULL, u, sizeof u), 0, 0);
    result_t *r = calloc(2 * NPIPE, sizeof *r);
    char cmd[64];
    /* 1000 calls before the connection is up (the default max_queued)... */
    for (int i = 0; i < NPIPE; i++) {
        result_init(&r[i], &fx);
        snprintf(cmd, sizeof cmd, "GET k%d", i);
        assert_non_null(fx_call(&fx, fx.r, &r[i], cmd, NULL));
    }
    ws_redis_stats_t st = stats(fx.r);
    assert_int_equal(st.queued, NPIPE);
    assert_int_equal(st.in_flight, 0);
    assert_int_equal(st.connected, 0);
    assert_true(fx_run_until(&fx, result_done, &r[NPIPE - 1], WAIT));
    /* ... and 1000 more on the connection, before any reply. */
    assert_true(fx_connected(&fx));
    for (int i = NPIPE; i < 2 * NPIPE; i++) {
        result_init(&r[i], &fx);
        snprintf(cmd, sizeof cmd, "GET k%d", i);
        assert_non_null(fx_call(&fx, fx.r, &r[i], cmd, NULL));
    }
    st = stats(fx.r);
    assert_int_equal(st.in_flight, NPIPE);
    assert_int_equal(st.queued, 0);
    assert_true(fx_run_until(&fx, result_done, &r[2 * NPIPE - 1], WAIT));
    for (int i = 0; i < 2 * NPIPE; i++) {
        char want[64];
        snprintf(want, sizeof want, "v:k%d", i);
        if (r[i].done != 1 || r[i].in_call || strcmp(r[i].text, want) != 0 || r[i].error[0] ||
            r[i].type != REDIS_REPLY_STRING)
            fail_msg("call %d: done %d, in_call %d, reply \"%s\", error \"%s\"", i, r[i].done,
                     r[i].in_call, r[i].text, r[i].error);
        if (i > 0 && r[i].seq != r[i - 1].seq + 1)
            fail_msg("call %d answered out of order", i);
    }
    /* The server read them in order, on one connection. */
    assert_int_equal(fx.srv.accepted, 1);
    assert_int_equal(fx.srv.ncmds, 2 * NPIPE);
    for (int i = 0; i < 2 * NPIPE; i++) {
        snprintf(cmd, sizeof cmd, "GET k%d", i);
        assert_string_equal(rsrv_cmd(&fx.srv, i), cmd);
    }
    st = stats(fx.r);
    assert_int_equal(st.connected, 1);
    assert_int_equal(st.connects, 1);
    assert_int_equal(st.in_flight, 0);
    assert_int_equal(st.queued, 0);
    free(r);
    fx_teardown(&fx);
}

/* Replies cut anywhere, and several in one read: hold every command, then
 * send all the replies at once in pieces of 1, 2, 3... bytes. */
static void test_replies_split_and_joined(void **state)
{
    (void)state;
    fx_t fx;
    fx_setup(&fx);
    fx.srv.answer = rsrv_answer_hold;
    char u[256];
    fx_client(&fx, fx_url(&fx.srv, NULL, NULL, u, sizeof u), 0, 0);
    result_t r[6];
    const char *cmds[6] = {"GET a", "INCR n", "HGETALL h", "GET nil", "ERRCMD", "ECHO x"};
    for (int i = 0; i < 6; i++) {
        result_init(&r[i], &fx);
        fx_call(&fx, fx.r, &r[i], cmds[i], NULL);
    }
    assert_true(fx_run_until(&fx, held6, &fx.srv, WAIT));
    const char *all = "$5\r\nhello\r\n:42\r\n*4\r\n$1\r\nf\r\n$0\r\n\r\n$-1\r\n:-7\r\n$-1\r\n"
                      "-ERR wrong kind\r\n$11\r\nline\r\nbreak\r\n";
    rconn_t *c = fx.srv.conns[0];
    size_t n = strlen(all), step = 1;
    for (size_t at = 0; at < n; at += step, step++) {
        rsrv_sendn(c, all + at, at + step <= n ? step : n - at);
        fx_wait(&fx, 2);
    }
    assert_true(fx_run_until(&fx, result_done, &r[5], WAIT));
    assert_result(&r[0], "", "hello");
    assert_int_equal(r[0].type, REDIS_REPLY_STRING);
    assert_result(&r[1], "", ":42");
    assert_result(&r[2], "", "[f,,nil,:-7]");
    assert_int_equal(r[2].type, REDIS_REPLY_ARRAY);
    assert_result(&r[3], "", "nil");
    assert_int_equal(r[3].type, REDIS_REPLY_NIL);
    /* Redis's error answer to a command is a reply, not an error of the call. */
    assert_result(&r[4], "", "-ERR wrong kind");
    assert_int_equal(r[4].type, REDIS_REPLY_ERROR);
    assert_result(&r[5], "", "line\r\nbreak");
    for (int i = 1; i < 6; i++)
        assert_true(r[i].seq > r[i - 1].seq);
    /* The connection stays. */
    assert_int_equal(fx.srv.accepted, 1);
    assert_true(fx_connected(&fx));
    fx_teardown(&fx);
}

/* A unit of three commands: one write, the server reads them in one go and
 * in order, the callback hears the last reply only. */
static void test_unit_delivers_the_last_reply(void **state)
{
    (void)state;
    fx_t fx;
    fx_setup(&fx);
    char u[256];
    fx_client(&fx, fx_url(&fx.srv, NULL, NULL, u, sizeof u), 0, 0);
    result_t before, unit, after, unit2;
    result_init(&before, &fx);
    result_init(&unit, &fx);
    result_init(&after, &fx);
    result_init(&unit2, &fx);
    fx_call(&fx, fx.r, &before, "PING", NULL);
    wait_result(&fx, &before);
    assert_result(&before, "", "+PONG");
    const char *cmds[3] = {"MULTI", "INCR x", "GET x"};
    assert_non_null(fx_unit(&fx, fx.r, &unit, 3, cmds, NULL));
    fx_call(&fx, fx.r, &after, "ECHO after", NULL);
    wait_result(&fx, &after);
    assert_result(&unit, "", "v:x");
    assert_result(&after, "", "after");
    assert_true(unit.seq < after.seq);
    assert_int_equal(fx.srv.ncmds, 5);
    assert_string_equal(rsrv_cmd(&fx.srv, 1), "MULTI");
    assert_string_equal(rsrv_cmd(&fx.srv, 2), "INCR x");
    assert_string_equal(rsrv_cmd(&fx.srv, 3), "GET x");
    assert_string_equal(rsrv_cmd(&fx.srv, 4), "ECHO after");
    /* in one go: the read that completed the first completed the others */
    assert_int_equal(fx.srv.cmds[1].read, fx.srv.cmds[2].read);
    assert_int_equal(fx.srv.cmds[1].read, fx.srv.cmds[3].read);
    assert_true(fx.srv.cmds[1].read > fx.srv.cmds[0].read);
    /* Errors among the replies before the last are not the caller's: it
     * hears the last one (EXEC's answer). */
    const char *cmds2[3] = {"ERRCMD", "ERRCMD", "ECHO last"};
    fx_unit(&fx, fx.r, &unit2, 3, cmds2, NULL);
    wait_result(&fx, &unit2);
    assert_result(&unit2, "", "last");
    assert_int_equal(stats(fx.r).in_flight, 0);
    fx_teardown(&fx);
}

/* ====================================================================== */
/* AUTH and SELECT                                                        */
/* ====================================================================== */

static void test_auth_and_select_come_first_on_every_connection(void **state)
{
    (void)state;
    fx_t fx;
    fx_setup(&fx);
    fx.srv.answer = rsrv_answer_hold_auth;
    char u[256], log[1024];
    fx_client(&fx, fx_url(&fx.srv, ":pw", "/3", u, sizeof u), 0, 0);
    result_t a, b;
    result_init(&a, &fx);
    result_init(&b, &fx);
    fx_call(&fx, fx.r, &a, "GET a", NULL);
    /* AUTH and SELECT leave together; the call waits for both answers. */
    assert_true(fx_run_until(&fx, held2, &fx.srv, WAIT));
    fx_wait(&fx, 50);
    assert_string_equal(rsrv_conn_log(&fx.srv, 1, log, sizeof log), "AUTH pw | SELECT 3");
    ws_redis_stats_t st = stats(fx.r);
    assert_int_equal(st.connected, 0);
    assert_int_equal(st.connects, 1);
    assert_int_equal(st.queued, 1);
    /* AUTH answered: SELECT still is not. */
    assert_string_equal(rsrv_release(&fx.srv, "+OK\r\n"), "AUTH pw");
    fx_wait(&fx, 50);
    assert_int_equal(fx.srv.ncmds, 2);
    assert_int_equal(a.done, 0);
    assert_false(fx_connected(&fx));
    assert_string_equal(rsrv_release(&fx.srv, "+OK\r\n"), "SELECT 3");
    wait_result(&fx, &a);
    assert_result(&a, "", "v:a");
    assert_true(fx_connected(&fx));
    assert_string_equal(rsrv_conn_log(&fx.srv, 1, log, sizeof log), "AUTH pw | SELECT 3 | GET a");

    /* The server drops the connection: the next one logs in again before
     * anything else. */
    rsrv_close(fx.srv.conns[0]);
    assert_true(fx_run_until(&fx, accepted2, &fx.srv, WAIT));
    assert_true(fx_run_until(&fx, held2, &fx.srv, WAIT));
    fx_call(&fx, fx.r, &b, "GET b", NULL);
    fx_wait(&fx, 30);
    assert_int_equal(b.done, 0);
    assert_string_equal(rsrv_conn_log(&fx.srv, 2, log, sizeof log), "AUTH pw | SELECT 3");
    rsrv_release(&fx.srv, "+OK\r\n");
    rsrv_release(&fx.srv, "+OK\r\n");
    wait_result(&fx, &b);
    assert_result(&b, "", "v:b");
    assert_string_equal(rsrv_conn_log(&fx.srv, 2, log, sizeof log), "AUTH pw | SELECT 3 | GET b");
    st = stats(fx.r);
    assert_int_equal(st.connected, 1);
    assert_int_equal(st.connects, 2);
    fx_teardown(&fx);
}

static void test_auth_with_user_and_no_select_for_db_0(void **state)
{
    (void)state;
    fx_t fx;
    fx_setup(&fx);
    char u[256], log[1024];
    fx_client(&fx, fx_url(&fx.srv, "alice:s3cret", "/0", u, sizeof u), 0, 0);
    result_t a;
    result_init(&a, &fx);
    fx_call(&fx, fx.r, &a, "GET a", NULL);
    wait_result(&fx, &a);
    assert_result(&a, "", "v:a");
    assert_string_equal(rsrv_conn_log(&fx.srv, 1, log, sizeof log), "AUTH alice s3cret | GET a");
    fx_teardown(&fx);
}

static void test_no_password_no_auth(void **state)
{
    (void)state;
    fx_t fx;
    fx_setup(&fx);
    char u[256], log[1024];
    fx_client(&fx, fx_url(&fx.srv, NULL, "/5", u, sizeof u), 0, 0);
    result_t a;
    result_init(&a, &fx);
    fx_call(&fx, fx.r, &a, "GET a", NULL);
    wait_result(&fx, &a);
    assert_result(&a, "", "v:a");
    assert_string_equal(rsrv_conn_log(&fx.srv, 1, log, sizeof log), "SELECT 5 | GET a");
    fx_teardown(&fx);
}

/* Refuses AUTH (or SELECT) on the first connection only. */
static void answer_refuse_login_once(rsrv_t *s, rconn_t *c, int argc, char **argv, size_t *lens)
{
    const char *what = s->user;
    if (c->id == 1 && !strcasecmp(argv[0], what)) {
        if (!strcasecmp(what, "AUTH"))
            rsrv_send(c, "-WRONGPASS invalid username-password pair\r\n");
        else
            rsrv_send(c, "-ERR DB index is out of range\r\n");
        return;
    }
    rsrv_answer_default(s, c, argc, argv, lens);
}

static void login_refused(const char *what, const char *want)
{
    fx_t fx;
    fx_setup(&fx);
    fx.srv.answer = answer_refuse_login_once;
    fx.srv.user = (void *)what;
    char u[256], log[1024];
    fx_client(&fx, fx_url(&fx.srv, ":pw", "/7", u, sizeof u), 0, 0);
    result_t a, b, c;
    result_init(&a, &fx);
    result_init(&b, &fx);
    result_init(&c, &fx);
    fx_call(&fx, fx.r, &a, "GET a", NULL);
    fx_call(&fx, fx.r, &b, "GET b", NULL);
    wait_result(&fx, &b);
    /* The waiting calls fail with Redis's text, in order, and were never sent. */
    assert_result(&a, want, "");
    assert_result(&b, want, "");
    assert_true(a.seq < b.seq);
    assert_int_equal(rsrv_count(&fx.srv, 1, "GET a") + rsrv_count(&fx.srv, 1, "GET b"), 0);
    ws_redis_stats_t st = stats(fx.r);
    assert_int_equal(st.connected, 0);
    assert_int_equal(st.queued, 0);
    assert_int_equal(st.in_flight, 0);
    /* The client tries again (backoff from 50 ms): a call made meanwhile
     * goes through once the login is accepted. */
    uint64_t t0 = uv_now(&fx.lh.loop);
    fx_call(&fx, fx.r, &c, "GET c", NULL);
    wait_result(&fx, &c);
    assert_result(&c, "", "v:c");
    assert_true(uv_now(&fx.lh.loop) - t0 < 1000);
    assert_int_equal(fx.srv.accepted, 2);
    assert_string_equal(rsrv_conn_log(&fx.srv, 2, log, sizeof log), "AUTH pw | SELECT 7 | GET c");
    st = stats(fx.r);
    assert_int_equal(st.connected, 1);
    assert_int_equal(st.connects, 2);
    fx_teardown(&fx);
}

static void test_auth_refused_fails_waiting_calls_and_retries(void **state)
{
    (void)state;
    login_refused("AUTH", "WRONGPASS invalid username-password pair");
}

static void test_select_refused_fails_waiting_calls_and_retries(void **state)
{
    (void)state;
    login_refused("SELECT", "ERR DB index is out of range");
}

/* ====================================================================== */
/* Connections lost, servers down                                         */
/* ====================================================================== */

typedef struct {
    result_t *next;
    const char *cmd;
    ws_redis_call_t *call; /* what the call made from the callback returned */
    ws_redis_call_t *cancel; /* or: a call to cancel */
} then_t;

/* From inside a callback: start another call (then_ud is a then_t). */
static void then_call(result_t *self)
{
    then_t *t = self->then_ud;
    if (t->next)
        t->call = fx_call(self->fx, self->fx->r, t->next, t->cmd, NULL);
    if (t->cancel)
        ws_redis_cancel(t->cancel);
}

static void test_connection_lost_fails_calls_in_flight_once(void **state)
{
    (void)state;
    fx_t fx;
    fx_setup(&fx);
    fx.srv.answer = rsrv_answer_hold;
    char u[256], log[1024];
    fx_client(&fx, fx_url(&fx.srv, NULL, NULL, u, sizeof u), 0, 0);
    result_t a, b, c, d;
    result_init(&a, &fx);
    result_init(&b, &fx);
    result_init(&c, &fx);
    result_init(&d, &fx);
    then_t t = {&d, "INCR d", NULL, NULL};
    a.then = then_call; /* a call made from the "connection lost" callback */
    a.then_ud = &t;
    fx_call(&fx, fx.r, &a, "INCR a", NULL);
    fx_call(&fx, fx.r, &b, "INCR b", NULL);
    assert_true(fx_run_until(&fx, held2, &fx.srv, WAIT));
    assert_int_equal(stats(fx.r).in_flight, 2);
    fx.srv.answer = rsrv_answer_default;
    fx.srv.nheld = 0;
    rsrv_close(fx.srv.conns[0]);
    wait_result(&fx, &b);
    assert_result(&a, "connection lost", "");
    assert_result(&b, "connection lost", "");
    assert_true(a.seq < b.seq);
    assert_non_null(t.call);
    ws_redis_stats_t st = stats(fx.r);
    assert_int_equal(st.connected, 0);
    assert_int_equal(st.in_flight, 0);
    assert_int_equal(st.queued, 1); /* d waits for the next connection */
    /* A call made after: the new connection. */
    fx_call(&fx, fx.r, &c, "GET c", NULL);
    wait_result(&fx, &c);
    wait_result(&fx, &d);
    assert_result(&d, "", ":1");
    assert_result(&c, "", "v:c");
    assert_true(d.seq < c.seq);
    /* What was in flight was never sent again. */
    assert_int_equal(fx.srv.accepted, 2);
    assert_string_equal(rsrv_conn_log(&fx.srv, 1, log, sizeof log), "INCR a | INCR b");
    assert_string_equal(rsrv_conn_log(&fx.srv, 2, log, sizeof log), "INCR d | GET c");
    fx_wait(&fx, 100);
    assert_int_equal(fx.srv.ncmds, 4);
    st = stats(fx.r);
    assert_int_equal(st.connected, 1);
    assert_int_equal(st.connects, 2);
    fx_teardown(&fx);
}

/* Calls that waited for the login were never sent: a drop during the login
 * leaves them waiting for the next connection. */
static void test_calls_waiting_for_login_survive_a_drop(void **state)
{
    (void)state;
    fx_t fx;
    fx_setup(&fx);
    fx.srv.answer = rsrv_answer_hold_auth;
    char u[256], log[1024];
    fx_client(&fx, fx_url(&fx.srv, ":pw", NULL, u, sizeof u), 0, 0);
    result_t a;
    result_init(&a, &fx);
    fx_call(&fx, fx.r, &a, "GET a", NULL);
    assert_true(fx_run_until(&fx, srv_has_held, &fx.srv, WAIT));
    fx.srv.nheld = 0;
    rsrv_close(fx.srv.conns[0]);
    assert_true(fx_run_until(&fx, accepted2, &fx.srv, WAIT));
    assert_true(fx_run_until(&fx, srv_has_held, &fx.srv, WAIT));
    assert_int_equal(a.done, 0);
    assert_int_equal(stats(fx.r).queued, 1);
    rsrv_release(&fx.srv, "+OK\r\n");
    wait_result(&fx, &a);
    assert_result(&a, "", "v:a");
    assert_string_equal(rsrv_conn_log(&fx.srv, 1, log, sizeof log), "AUTH pw");
    assert_string_equal(rsrv_conn_log(&fx.srv, 2, log, sizeof log), "AUTH pw | GET a");
    fx_teardown(&fx);
}

static void test_calls_wait_while_the_server_is_down(void **state)
{
    (void)state;
    fx_t fx;
    fx_setup(&fx);
    char u[256], log[1024];
    int port = fx.srv.port;
    srv_down(&fx);
    fx_client(&fx, fx_url(&fx.srv, NULL, NULL, u, sizeof u), 0, 0);
    result_t a, b;
    result_init(&a, &fx);
    result_init(&b, &fx);
    fx_call(&fx, fx.r, &a, "GET a", NULL);
    fx_call(&fx, fx.r, &b, "GET b", NULL);
    /* Refused at least once, retried with backoff: the calls wait. */
    fx_wait(&fx, 80);
    assert_int_equal(a.done + b.done, 0);
    ws_redis_stats_t st = stats(fx.r);
    assert_int_equal(st.connected, 0);
    assert_int_equal(st.connects, 0);
    assert_int_equal(st.queued, 2);
    rsrv_start(&fx, &fx.srv, port, rsrv_answer_default);
    uint64_t t0 = uv_now(&fx.lh.loop);
    wait_result(&fx, &b);
    /* backoff doubles from 50 ms: at most a few hundred ms here */
    assert_true(uv_now(&fx.lh.loop) - t0 < 1500);
    assert_result(&a, "", "v:a");
    assert_result(&b, "", "v:b");
    assert_true(a.seq < b.seq);
    assert_int_equal(fx.srv.accepted, 1);
    assert_string_equal(rsrv_conn_log(&fx.srv, 1, log, sizeof log), "GET a | GET b");
    st = stats(fx.r);
    assert_int_equal(st.connected, 1);
    assert_int_equal(st.connects, 1);
    assert_int_equal(st.queued, 0);
    fx_teardown(&fx);
}

static void test_max_queued_refuses_at_once(void **state)
{
    (void)state;
    fx_t fx;
    fx_setup(&fx);
    char u[256];
    int port = fx.srv.port;
    srv_down(&fx);
    fx_client(&fx, fx_url(&fx.srv, NULL, NULL, u, sizeof u), 0, 3);
    result_t r[5];
    for (int i = 0; i < 5; i++)
        result_init(&r[i], &fx);
    const char *err = NULL;
    for (int i = 0; i < 3; i++) {
        err = NULL;
        assert_non_null(fx_call(&fx, fx.r, &r[i], "PING", &err));
        assert_null(err);
    }
    size_t mem = ws_mem_used(WS_MEM_BUFFERS);
    err = NULL;
    assert_null(fx_call(&fx, fx.r, &r[3], "PING", &err));
    assert_non_null(err);
    assert_string_equal(err, "redis unavailable");
    assert_int_equal(ws_mem_used(WS_MEM_BUFFERS), mem); /* nothing kept */
    assert_int_equal(stats(fx.r).queued, 3);
    /* Still refused while the server is down. */
    fx_wait(&fx, 60);
    err = NULL;
    assert_null(fx_call(&fx, fx.r, &r[4], "PING", &err));
    assert_string_equal(err, "redis unavailable");
    rsrv_start(&fx, &fx.srv, port, rsrv_answer_default);
    wait_result(&fx, &r[2]);
    for (int i = 0; i < 3; i++)
        assert_result(&r[i], "", "+PONG");
    fx_wait(&fx, 20);
    assert_int_equal(r[3].done, 0); /* the refused calls' callbacks never run */
    assert_int_equal(r[4].done, 0);
    /* Connected, the bound is on calls waiting for a connection only. */
    result_t many[10];
    for (int i = 0; i < 10; i++) {
        result_init(&many[i], &fx);
        assert_non_null(fx_call(&fx, fx.r, &many[i], "PING", NULL));
    }
    wait_result(&fx, &many[9]);
    for (int i = 0; i < 10; i++)
        assert_result(&many[i], "", "+PONG");
    fx_teardown(&fx);
}

/* Reconnects start at 50 ms (each delay from the upper half), double while
 * the server stays down, and start again from 50 ms once a connection was
 * made. */
static void backoff(const char *userinfo)
{
    fx_t fx;
    fx_setup(&fx);
    char u[256];
    int port = fx.srv.port;
    fx_client(&fx, fx_url(&fx.srv, userinfo, NULL, u, sizeof u), 0, 0);
    /* A first drop: the next connection comes within 25..50 ms. */
    result_t a, b;
    result_init(&a, &fx);
    result_init(&b, &fx);
    fx_call(&fx, fx.r, &a, "PING", NULL);
    wait_result(&fx, &a);
    uint64_t t0 = uv_now(&fx.lh.loop);
    rsrv_close(fx.srv.conns[0]);
    assert_true(fx_run_until(&fx, accepted2, &fx.srv, WAIT));
    uint64_t dt = uv_now(&fx.lh.loop) - t0;
    assert_true(dt >= 20);
    assert_true(dt < 200);
    /* Down for a while: attempts at about 0, +25..50, +50..100, +100..200,
     * +200..400 ms: the delay has grown to 400 ms or more. */
    rsrv_stop(&fx.srv);
    fx_wait(&fx, 470);
    assert_false(fx_connected(&fx));
    rsrv_start(&fx, &fx.srv, port, rsrv_answer_default);
    fx_call(&fx, fx.r, &b, "PING", NULL);
    wait_result(&fx, &b);
    assert_result(&b, "", "+PONG");
    /* Connected: the next drop is answered from 50 ms again, not 800. */
    t0 = uv_now(&fx.lh.loop);
    rsrv_close(fx.srv.conns[0]);
    assert_true(fx_run_until(&fx, accepted2, &fx.srv, WAIT));
    dt = uv_now(&fx.lh.loop) - t0;
    assert_true(dt < 200);
    fx_teardown(&fx);
}

/* Connected when the socket is (no login), or when AUTH is answered. */
static void test_backoff_grows_and_resets_once_connected(void **state)
{
    (void)state;
    backoff(NULL);
    backoff(":pw");
}

/* ====================================================================== */
/* Timeouts                                                               */
/* ====================================================================== */

static void test_timeout_of_a_silent_connection_reconnects(void **state)
{
    (void)state;
    fx_t fx;
    fx_setup(&fx);
    fx.srv.answer = rsrv_answer_hold;
    char u[256], log[1024];
    fx_client(&fx, fx_url(&fx.srv, NULL, NULL, u, sizeof u), 150, 0);
    result_t a, b, c;
    result_init(&a, &fx);
    result_init(&b, &fx);
    result_init(&c, &fx);
    fx_call(&fx, fx.r, &a, "GET a", NULL);
    uint64_t t0 = uv_now(&fx.lh.loop);
    fx_call(&fx, fx.r, &b, "GET b", NULL);
    assert_true(fx_run_until(&fx, held2, &fx.srv, WAIT));
    wait_result(&fx, &b);
    assert_result(&a, "timeout", "");
    assert_result(&b, "timeout", "");
    assert_true(a.seq < b.seq);
    assert_true(a.at - t0 >= 140);
    /* Nothing was read since they were sent: the client dropped the
     * connection and made another. */
    assert_true(fx_run_until(&fx, first_eof, &fx.srv, WAIT));
    assert_true(fx_run_until(&fx, accepted2, &fx.srv, WAIT));
    fx.srv.answer = rsrv_answer_default;
    fx_call(&fx, fx.r, &c, "GET c", NULL);
    wait_result(&fx, &c);
    assert_result(&c, "", "v:c");
    assert_string_equal(rsrv_conn_log(&fx.srv, 2, log, sizeof log), "GET c");
    assert_int_equal(stats(fx.r).connects, 2);
    fx_teardown(&fx);
}

/* GET part1 answered, everything else held. */
static void answer_first_part(rsrv_t *s, rconn_t *c, int argc, char **argv, size_t *lens)
{
    if (argc == 2 && !strcmp(argv[1], "part1"))
        rsrv_answer_default(s, c, argc, argv, lens);
    else
        rsrv_answer_hold(s, c, argc, argv, lens);
}

/* Something was read since the call was sent (a unit half answered): the
 * call times out but the connection stays, and the late reply is dropped in
 * its place. */
static void test_timeout_of_a_slow_reply_keeps_the_connection(void **state)
{
    (void)state;
    fx_t fx;
    fx_setup(&fx);
    fx.srv.answer = answer_first_part;
    char u[256];
    fx_client(&fx, fx_url(&fx.srv, NULL, NULL, u, sizeof u), 200, 0);
    result_t a, b;
    result_init(&a, &fx);
    result_init(&b, &fx);
    const char *cmds[2] = {"GET part1", "GET part2"};
    fx_unit(&fx, fx.r, &a, 2, cmds, NULL);
    wait_result(&fx, &a);
    assert_result(&a, "timeout", "");
    fx_wait(&fx, 100);
    assert_int_equal(fx.srv.accepted, 1);
    assert_false(fx.srv.conns[0]->eof);
    assert_true(fx_connected(&fx));
    assert_int_equal(stats(fx.r).in_flight, 1); /* its reply is still to be read */
    fx.srv.answer = rsrv_answer_hold;
    fx_call(&fx, fx.r, &b, "GET b", NULL);
    assert_true(fx_run_until(&fx, held2, &fx.srv, WAIT));
    fx_wait(&fx, 20);
    assert_int_equal(b.done, 0);
    assert_string_equal(rsrv_release(&fx.srv, "$9\r\nlate part\r\n"), "GET part2");
    fx_wait(&fx, 20);
    assert_int_equal(b.done, 0); /* the late reply was not b's */
    assert_string_equal(rsrv_release(&fx.srv, "$3\r\nv:b\r\n"), "GET b");
    wait_result(&fx, &b);
    assert_result(&b, "", "v:b");
    assert_int_equal(a.done, 1);
    assert_int_equal(stats(fx.r).in_flight, 0);
    assert_int_equal(fx.srv.accepted, 1);
    fx_teardown(&fx);
}

static void test_timeout_of_a_queued_call(void **state)
{
    (void)state;
    fx_t fx;
    fx_setup(&fx);
    char u[256];
    srv_down(&fx);
    fx_client(&fx, fx_url(&fx.srv, NULL, NULL, u, sizeof u), 100, 0);
    result_t a, b;
    result_init(&a, &fx);
    result_init(&b, &fx);
    uint64_t t0 = uv_now(&fx.lh.loop);
    fx_call(&fx, fx.r, &a, "GET a", NULL);
    wait_result(&fx, &a);
    assert_result(&a, "timeout", "");
    assert_true(a.at - t0 >= 90);
    assert_int_equal(stats(fx.r).queued, 0);
    /* A name that cannot resolve fails inside ws_redis_call's connect: the
     * call still only ends by its deadline, outside the call. */
    ws_redis_free(fx.r);
    fx_client(&fx, "redis://nowhere.invalid", 100, 0);
    fx_call(&fx, fx.r, &b, "GET b", NULL);
    assert_int_equal(b.done, 0);
    wait_result(&fx, &b);
    assert_result(&b, "timeout", "");
    fx_teardown(&fx);
}

/* A lower timeout applies to calls made from then on. */
static void test_set_opts(void **state)
{
    (void)state;
    fx_t fx;
    fx_setup(&fx);
    fx.srv.answer = rsrv_answer_hold;
    char u[256];
    fx_client(&fx, fx_url(&fx.srv, NULL, NULL, u, sizeof u), 3000, 0);
    result_t a, b;
    result_init(&a, &fx);
    result_init(&b, &fx);
    fx_call(&fx, fx.r, &a, "GET a", NULL);
    assert_true(fx_run_until(&fx, srv_has_held, &fx.srv, WAIT));
    ws_redis_opts_t o = {.timeout_ms = 100};
    ws_redis_set_opts(fx.r, &o);
    uint64_t t0 = uv_now(&fx.lh.loop);
    fx_call(&fx, fx.r, &b, "GET b", NULL);
    wait_result(&fx, &b);
    assert_result(&b, "timeout", "");
    assert_true(b.at - t0 < 1000);
    /* a was sent before b and nothing came since: the connection was dropped
     * (a fails with it, before its own deadline) */
    wait_result(&fx, &a);
    assert_result(&a, "connection lost", "");
    assert_true(a.at - t0 < 1000);
    fx_teardown(&fx);
}

/* ====================================================================== */
/* Cancel                                                                 */
/* ====================================================================== */

static void test_cancel_a_sent_call(void **state)
{
    (void)state;
    fx_t fx;
    fx_setup(&fx);
    fx.srv.answer = rsrv_answer_hold;
    char u[256];
    fx_client(&fx, fx_url(&fx.srv, NULL, NULL, u, sizeof u), 0, 0);
    result_t a, b, c, d, e;
    result_init(&a, &fx);
    result_init(&b, &fx);
    result_init(&c, &fx);
    result_init(&d, &fx);
    result_init(&e, &fx);
    ws_redis_call_t *ca = fx_call(&fx, fx.r, &a, "GET a", NULL);
    fx_call(&fx, fx.r, &b, "GET b", NULL);
    assert_true(fx_run_until(&fx, held2, &fx.srv, WAIT));
    ws_redis_cancel(ca);
    assert_int_equal(stats(fx.r).in_flight, 2); /* a's reply is still to be read */
    rsrv_release(&fx.srv, "$3\r\nv:a\r\n");
    rsrv_release(&fx.srv, "$3\r\nv:b\r\n");
    wait_result(&fx, &b);
    assert_result(&b, "", "v:b");
    fx.srv.answer = rsrv_answer_default;
    fx_call(&fx, fx.r, &c, "GET c", NULL);
    wait_result(&fx, &c);
    assert_result(&c, "", "v:c");
    assert_int_equal(a.done, 0);
    assert_int_equal(stats(fx.r).in_flight, 0);

    /* Cancelled, then the connection goes: still no callback. */
    fx.srv.answer = rsrv_answer_hold;
    ws_redis_call_t *cd = fx_call(&fx, fx.r, &d, "GET d", NULL);
    fx_call(&fx, fx.r, &e, "GET e", NULL);
    assert_true(fx_run_until(&fx, held2, &fx.srv, WAIT));
    ws_redis_cancel(cd);
    fx.srv.nheld = 0;
    rsrv_close(fx.srv.conns[0]);
    wait_result(&fx, &e);
    assert_result(&e, "connection lost", "");
    fx_wait(&fx, 20);
    assert_int_equal(d.done, 0);
    ws_redis_cancel(NULL); /* does nothing */
    fx_teardown(&fx);
}

static void test_cancel_an_unsent_call(void **state)
{
    (void)state;
    fx_t fx;
    fx_setup(&fx);
    fx.srv.answer = rsrv_answer_hold_auth;
    char u[256], log[1024];
    fx_client(&fx, fx_url(&fx.srv, ":pw", NULL, u, sizeof u), 0, 0);
    result_t a, b, c;
    result_init(&a, &fx);
    result_init(&b, &fx);
    result_init(&c, &fx);
    fx_call(&fx, fx.r, &a, "GET a", NULL);
    ws_redis_call_t *cb = fx_call(&fx, fx.r, &b, "GET b", NULL);
    fx_call(&fx, fx.r, &c, "GET c", NULL);
    size_t mem = ws_mem_used(WS_MEM_BUFFERS);
    ws_redis_cancel(cb);
    assert_true(ws_mem_used(WS_MEM_BUFFERS) < mem); /* its bytes are released */
    assert_int_equal(stats(fx.r).queued, 2);
    assert_true(fx_run_until(&fx, srv_has_held, &fx.srv, WAIT));
    rsrv_release(&fx.srv, "+OK\r\n");
    wait_result(&fx, &c);
    assert_result(&a, "", "v:a");
    assert_result(&c, "", "v:c");
    assert_int_equal(b.done, 0);
    assert_string_equal(rsrv_conn_log(&fx.srv, 1, log, sizeof log), "AUTH pw | GET a | GET c");
    fx_teardown(&fx);
}

/* ====================================================================== */
/* Callbacks                                                              */
/* ====================================================================== */

static void test_callbacks_start_calls(void **state)
{
    (void)state;
    fx_t fx;
    fx_setup(&fx);
    char u[256], log[1024];
    fx_client(&fx, fx_url(&fx.srv, NULL, NULL, u, sizeof u), 150, 0);
    /* A chain of five: each callback makes the next call. */
    result_t r[5];
    then_t t[5];
    char cmds[5][16];
    for (int i = 0; i < 5; i++)
        result_init(&r[i], &fx);
    for (int i = 0; i < 5; i++) {
        snprintf(cmds[i], sizeof cmds[i], "GET c%d", i);
        t[i] = (then_t){i < 4 ? &r[i + 1] : NULL, i < 4 ? cmds[i + 1] : NULL, NULL, NULL};
        r[i].then = then_call;
        r[i].then_ud = &t[i];
    }
    fx_call(&fx, fx.r, &r[0], cmds[0], NULL);
    wait_result(&fx, &r[4]);
    for (int i = 0; i < 5; i++) {
        char want[16];
        snprintf(want, sizeof want, "v:c%d", i);
        assert_result(&r[i], "", want);
        if (i)
            assert_true(r[i].turn > r[i - 1].turn);
    }
    assert_string_equal(rsrv_conn_log(&fx.srv, 1, log, sizeof log),
                        "GET c0 | GET c1 | GET c2 | GET c3 | GET c4");

    /* From a "timeout" callback: the call goes on the next connection. */
    result_t a, b;
    result_init(&a, &fx);
    result_init(&b, &fx);
    then_t ta = {&b, "GET after-timeout", NULL, NULL};
    a.then = then_call;
    a.then_ud = &ta;
    fx.srv.answer = rsrv_answer_hold;
    fx_call(&fx, fx.r, &a, "GET held", NULL);
    assert_true(fx_run_until(&fx, srv_has_held, &fx.srv, WAIT));
    fx.srv.answer = rsrv_answer_default;
    wait_result(&fx, &a);
    assert_result(&a, "timeout", "");
    wait_result(&fx, &b);
    assert_result(&b, "", "v:after-timeout");
    assert_string_equal(rsrv_conn_log(&fx.srv, 2, log, sizeof log), "GET after-timeout");
    fx_teardown(&fx);
}

static void test_callback_starts_a_call_after_a_refused_login(void **state)
{
    (void)state;
    fx_t fx;
    fx_setup(&fx);
    fx.srv.answer = answer_refuse_login_once;
    fx.srv.user = (void *)"AUTH";
    char u[256], log[1024];
    fx_client(&fx, fx_url(&fx.srv, ":pw", NULL, u, sizeof u), 0, 0);
    result_t a, b;
    result_init(&a, &fx);
    result_init(&b, &fx);
    then_t ta = {&b, "GET again", NULL, NULL};
    a.then = then_call;
    a.then_ud = &ta;
    fx_call(&fx, fx.r, &a, "GET a", NULL);
    wait_result(&fx, &b);
    assert_result(&a, "WRONGPASS invalid username-password pair", "");
    assert_result(&b, "", "v:again");
    assert_string_equal(rsrv_conn_log(&fx.srv, 2, log, sizeof log), "AUTH pw | GET again");
    fx_teardown(&fx);
}

/* A "connection lost" callback cancels the next lost call: it never hears. */
static void test_callback_cancels_a_call_lost_with_it(void **state)
{
    (void)state;
    fx_t fx;
    fx_setup(&fx);
    fx.srv.answer = rsrv_answer_hold;
    char u[256];
    fx_client(&fx, fx_url(&fx.srv, NULL, NULL, u, sizeof u), 0, 0);
    result_t a, b, c;
    result_init(&a, &fx);
    result_init(&b, &fx);
    result_init(&c, &fx);
    then_t ta = {NULL, NULL, NULL, NULL};
    a.then = then_call;
    a.then_ud = &ta;
    fx_call(&fx, fx.r, &a, "GET a", NULL);
    ta.cancel = fx_call(&fx, fx.r, &b, "GET b", NULL);
    fx_call(&fx, fx.r, &c, "GET c", NULL);
    assert_true(fx_run_until(&fx, held3, &fx.srv, WAIT));
    fx.srv.nheld = 0;
    rsrv_close(fx.srv.conns[0]);
    wait_result(&fx, &c);
    assert_result(&a, "connection lost", "");
    assert_result(&c, "connection lost", "");
    assert_int_equal(b.done, 0);
    fx_teardown(&fx);
}

/* ====================================================================== */
/* Free                                                                   */
/* ====================================================================== */

static void test_free_with_calls_in_flight_and_queued(void **state)
{
    (void)state;
    fx_t fx;
    fx_setup(&fx);
    size_t mem0 = ws_mem_used(WS_MEM_BUFFERS);
    char u[256];
    result_t r[8];
    for (int i = 0; i < 8; i++)
        result_init(&r[i], &fx);
    /* Client 1: connected, two calls in flight, a reply half read. */
    fx.srv.answer = rsrv_answer_hold;
    fx_client(&fx, fx_url(&fx.srv, NULL, NULL, u, sizeof u), 0, 0);
    ws_redis_t *c1 = fx.r;
    fx_call(&fx, c1, &r[0], "GET a", NULL);
    fx_call(&fx, c1, &r[1], "GET b", NULL);
    assert_true(fx_run_until(&fx, held2, &fx.srv, WAIT));
    rsrv_send(fx.srv.conns[0], "$100\r\nonly part of it");
    fx_wait(&fx, 30);
    /* Client 2: logging in, two calls waiting. */
    rsrv_start(&fx, &fx.srv2, 0, rsrv_answer_hold_auth);
    fx_client(&fx, fx_url(&fx.srv2, ":pw", "/1", u, sizeof u), 0, 0);
    ws_redis_t *c2 = fx.r;
    fx_call(&fx, c2, &r[2], "GET c", NULL);
    fx_call(&fx, c2, &r[3], "GET d", NULL);
    assert_true(fx_run_until(&fx, held2, &fx.srv2, WAIT));
    /* Client 3: its server is down, two calls waiting between attempts. */
    snprintf(u, sizeof u, "redis://127.0.0.1:%d", down_port(&fx));
    fx_client(&fx, u, 0, 0);
    ws_redis_t *c3 = fx.r;
    fx_call(&fx, c3, &r[4], "GET e", NULL);
    fx_call(&fx, c3, &r[5], "GET f", NULL);
    fx_wait(&fx, 30);
    /* Client 4: connecting, its first call just made. */
    fx_client(&fx, fx_url(&fx.srv, NULL, NULL, u, sizeof u), 0, 0);
    ws_redis_t *c4 = fx.r;
    fx_call(&fx, c4, &r[6], "GET g", NULL);
    assert_true(ws_mem_used(WS_MEM_BUFFERS) > mem0);

    ws_redis_free(c1);
    ws_redis_free(c2);
    ws_redis_free(c3);
    ws_redis_free(c4);
    fx.r = NULL;
    ws_redis_free(NULL);
    /* Every byte counted is released at once. */
    assert_int_equal(ws_mem_used(WS_MEM_BUFFERS), mem0);
    fx_wait(&fx, 100);
    for (int i = 0; i < 8; i++)
        assert_int_equal(r[i].done, 0);
    /* The servers saw the connections close. */
    assert_true(fx.srv.conns[0]->eof);
    assert_true(fx.srv2.conns[0]->eof);
    fx_teardown(&fx); /* the loop ends: nothing of the clients is left on it */
}

/* ====================================================================== */
/* Unix sockets                                                           */
/* ====================================================================== */

static void test_unix_socket(void **state)
{
    (void)state;
    fx_t fx;
    fx_setup(&fx);
    char path[108], u[256], log[1024];
    snprintf(path, sizeof path, "/tmp/wspush-test-redis-%d.sock", (int)getpid());
    rsrv_start_unix(&fx, &fx.srv2, path, rsrv_answer_default);
    snprintf(u, sizeof u, "unix://%s?db=2&password=x&user=u", path);
    fx_client(&fx, u, 0, 0);
    char want[256];
    snprintf(want, sizeof want, "unix://%s?db=2&password=***&user=u", path);
    assert_string_equal(ws_redis_display(fx.r), want);
    result_t a, b;
    result_init(&a, &fx);
    result_init(&b, &fx);
    fx_call(&fx, fx.r, &a, "GET a", NULL);
    wait_result(&fx, &a);
    assert_result(&a, "", "v:a");
    assert_string_equal(rsrv_conn_log(&fx.srv2, 1, log, sizeof log), "AUTH u x | SELECT 2 | GET a");
    /* dropped: made again, with the login */
    rsrv_close(fx.srv2.conns[0]);
    assert_true(fx_run_until(&fx, accepted2, &fx.srv2, WAIT));
    fx_call(&fx, fx.r, &b, "GET b", NULL);
    wait_result(&fx, &b);
    assert_result(&b, "", "v:b");
    assert_string_equal(rsrv_conn_log(&fx.srv2, 2, log, sizeof log), "AUTH u x | SELECT 2 | GET b");
    fx_teardown(&fx);
    unlink(path);
}

/* ====================================================================== */
/* Callbacks that cancel calls failing with them                          */
/* ====================================================================== */
/*
 * redis.h: callbacks "may start and cancel calls", and ws_redis_cancel's
 * "cb never runs". When several calls end together (timeouts, a refused
 * login, a lost connection), a callback may cancel a later call of the same
 * group. These found a double free, a callback run after its cancel, and a
 * write to freed memory in the first version (fixed by the failure batches
 * of redis.c). Each runs in a child process (fx_isolated): a crash fails it
 * alone.
 */

#define ISOLATED(name, body)                                                                       \
    static void name(void **state)                                                                 \
    {                                                                                              \
        (void)state;                                                                               \
        fx_isolated(#name, body);                                                                  \
    }

#define check_result(r, err, txt)                                                                  \
    do {                                                                                           \
        fx_check((r)->done == 1);                                                                  \
        fx_check(!(r)->in_call);                                                                   \
        fx_check(strcmp((r)->error, (err)) == 0);                                                  \
        fx_check(strcmp((r)->text, (txt)) == 0);                                                   \
    } while (0)

/* The scenario of the cancel-in-a-batch tests: call a (cmds[0], or a unit
 * of n commands) with b behind it, whose callback cancels b; a ends with
 * a_err, and b's callback never runs. */
static void a_cancels_b(fx_t *fx, unsigned n, const char **cmds, const char *a_err)
{
    result_t a, b;
    result_init(&a, fx);
    result_init(&b, fx);
    then_t ta = {NULL, NULL, NULL, NULL};
    a.then = then_call;
    a.then_ud = &ta;
    if (n > 1)
        fx_unit(fx, fx->r, &a, n, cmds, NULL);
    else
        fx_call(fx, fx->r, &a, cmds[0], NULL);
    ta.cancel = fx_call(fx, fx->r, &b, "GET b", NULL);
    fx_check(fx_run_until(fx, result_done, &a, WAIT));
    check_result(&a, a_err, "");
    fx_wait(fx, 20);
    fx_check(b.done == 0); /* cancelled: its callback must not run */
}

/* ... and the client goes on: the next call ends with c_err / c_value. */
static void then_a_call_ends(fx_t *fx, const char *c_err, const char *c_value)
{
    result_t c;
    result_init(&c, fx);
    const char *err = NULL;
    fx_check(fx_call(fx, fx->r, &c, "GET c", &err) != NULL);
    fx_check(fx_run_until(fx, result_done, &c, WAIT));
    check_result(&c, c_err, c_value);
}

/* BUG: two queued calls time out together (the server is down); the first
 * one's callback cancels the second. on_deadline has unlinked both into its
 * expired list; ws_redis_cancel (redis.c:849-859) unlinks the second again
 * (list_del, redis.c:283-299: nunsent 0 -> SIZE_MAX) and frees it, then
 * fail_list (redis.c:402-411) reads and frees it once more. */
static void bug_timeout_cb_cancels_queued_body(void)
{
    fx_t fx;
    fx_setup(&fx);
    char u[256];
    srv_down(&fx);
    fx_client(&fx, fx_url(&fx.srv, NULL, NULL, u, sizeof u), 100, 5);
    const char *cmd[1] = {"GET a"};
    a_cancels_b(&fx, 1, cmd, "timeout");
    fx_check(stats(fx.r).queued == 0);
    /* the client still takes calls while the server is down */
    then_a_call_ends(&fx, "timeout", "");
    fx_teardown(&fx);
}
ISOLATED(test_timeout_callback_cancels_a_queued_call_timing_out_with_it,
          bug_timeout_cb_cancels_queued_body)

/* BUG: two calls sent together time out together; something was read since
 * (the first is a unit, half answered), so the connection stays. The first
 * one's "timeout" callback cancels the second: on_deadline (redis.c:431-438)
 * already moved the second's callback to a copy in its expired list, so the
 * cancel (which clears the original's cb) does not stop it and the second
 * callback runs with "timeout" after its call was cancelled. */
static void bug_timeout_cb_cancels_sent_body(void)
{
    fx_t fx;
    fx_setup(&fx);
    fx.srv.answer = answer_first_part;
    char u[256];
    fx_client(&fx, fx_url(&fx.srv, NULL, NULL, u, sizeof u), 150, 0);
    const char *cmds[2] = {"GET part1", "GET part2"};
    a_cancels_b(&fx, 2, cmds, "timeout");
    fx_check(fx.srv.accepted == 1 && !fx.srv.conns[0]->eof); /* the connection stayed */
    fx_teardown(&fx);
}
ISOLATED(test_timeout_callback_cancels_a_sent_call_timing_out_with_it,
          bug_timeout_cb_cancels_sent_body)

/* BUG: the same with a silent connection: nothing was read since the two
 * calls were sent, so on_deadline drops the connection (redis.c:446-447)
 * and drop() frees both calls (redis.c:629-641) before the "timeout"
 * callbacks run from their copies (redis.c:450). The first callback's
 * ws_redis_cancel of the second then writes freed memory (valgrind: invalid
 * write in ws_redis_cancel), and the second callback still runs. */
static void bug_timeout_cb_cancels_sent_silent_body(void)
{
    fx_t fx;
    fx_setup(&fx);
    fx.srv.answer = rsrv_answer_hold;
    char u[256];
    fx_client(&fx, fx_url(&fx.srv, NULL, NULL, u, sizeof u), 150, 0);
    const char *cmd[1] = {"GET a"};
    a_cancels_b(&fx, 1, cmd, "timeout");
    fx_teardown(&fx);
}
ISOLATED(test_timeout_callback_cancels_a_sent_call_on_a_silent_connection,
          bug_timeout_cb_cancels_sent_silent_body)

/* BUG: AUTH is refused with two calls waiting; the first one's callback
 * cancels the second. handshake_reply (redis.c:475-484) has unlinked both
 * into its list; ws_redis_cancel unlinks the second again and frees it, and
 * fail_list frees it once more (a double free). */
static void bug_login_refused_cb_cancels_waiting_body(void)
{
    fx_t fx;
    fx_setup(&fx);
    fx.srv.answer = answer_refuse_login_once;
    fx.srv.user = (void *)"AUTH";
    char u[256];
    fx_client(&fx, fx_url(&fx.srv, ":pw", NULL, u, sizeof u), 0, 5);
    const char *cmd[1] = {"GET a"};
    a_cancels_b(&fx, 1, cmd, "WRONGPASS invalid username-password pair");
    fx_check(stats(fx.r).queued == 0);
    /* the client goes on: the next login is accepted */
    then_a_call_ends(&fx, "", "v:c");
    fx_teardown(&fx);
}
ISOLATED(test_refused_login_callback_cancels_another_waiting_call,
          bug_login_refused_cb_cancels_waiting_body)

int main(void)
{
    /* REDIS_TEST_LOG=debug shows the client's log; REDIS_TEST_FILTER=test_x*
     * runs some tests only. */
    const char *lv = getenv("REDIS_TEST_LOG");
    ws_log_set_level(lv && ws_log_level_parse(lv) >= 0 ? (ws_log_level_t)ws_log_level_parse(lv) : WS_LOG_ERROR);
    if (getenv("REDIS_TEST_FILTER"))
        cmocka_set_test_filter(getenv("REDIS_TEST_FILTER"));
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_url_good),
        cmocka_unit_test(test_url_bad),
        cmocka_unit_test(test_client_display),
        cmocka_unit_test(test_pipelining_replies_reach_their_callers),
        cmocka_unit_test(test_replies_split_and_joined),
        cmocka_unit_test(test_unit_delivers_the_last_reply),
        cmocka_unit_test(test_auth_and_select_come_first_on_every_connection),
        cmocka_unit_test(test_auth_with_user_and_no_select_for_db_0),
        cmocka_unit_test(test_no_password_no_auth),
        cmocka_unit_test(test_auth_refused_fails_waiting_calls_and_retries),
        cmocka_unit_test(test_select_refused_fails_waiting_calls_and_retries),
        cmocka_unit_test(test_connection_lost_fails_calls_in_flight_once),
        cmocka_unit_test(test_calls_waiting_for_login_survive_a_drop),
        cmocka_unit_test(test_calls_wait_while_the_server_is_down),
        cmocka_unit_test(test_max_queued_refuses_at_once),
        cmocka_unit_test(test_backoff_grows_and_resets_once_connected),
        cmocka_unit_test(test_timeout_of_a_silent_connection_reconnects),
        cmocka_unit_test(test_timeout_of_a_slow_reply_keeps_the_connection),
        cmocka_unit_test(test_timeout_of_a_queued_call),
        cmocka_unit_test(test_set_opts),
        cmocka_unit_test(test_cancel_a_sent_call),
        cmocka_unit_test(test_cancel_an_unsent_call),
        cmocka_unit_test(test_callbacks_start_calls),
        cmocka_unit_test(test_callback_starts_a_call_after_a_refused_login),
        cmocka_unit_test(test_callback_cancels_a_call_lost_with_it),
        cmocka_unit_test(test_free_with_calls_in_flight_and_queued),
        cmocka_unit_test(test_unix_socket),
        /* callbacks that cancel calls failing with them */
        cmocka_unit_test(test_timeout_callback_cancels_a_queued_call_timing_out_with_it),
        cmocka_unit_test(test_timeout_callback_cancels_a_sent_call_timing_out_with_it),
        cmocka_unit_test(test_timeout_callback_cancels_a_sent_call_on_a_silent_connection),
        cmocka_unit_test(test_refused_login_callback_cancels_another_waiting_call),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
