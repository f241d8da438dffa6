/* The loop, the scripted RESP servers and the results test_redis.c uses. */
#include "redis_harness.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <errno.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "mem.h"

/* --- checks that work in a child too --- */

int fx_in_child;

void fx_check_failed(const char *file, int line, const char *what, const char *detail)
{
    if (fx_in_child) {
        fprintf(stderr, "%s:%d: check failed: %s%s%s\n", file, line, what, detail ? ": " : "",
                detail ? detail : "");
        fflush(stderr);
        _exit(1);
    }
    fail_msg("%s:%d: check failed: %s%s%s", file, line, what, detail ? ": " : "", detail ? detail : "");
}

void fx_isolated(const char *name, void (*fn)(void))
{
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0)
        fail_msg("%s: fork: %s", name, strerror(errno));
    if (pid == 0) {
        fx_in_child = 1;
        /* cmocka's handlers would take a crash back into its runner, in the
         * child: a crash must end the child */
        int sigs[] = {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGSYS, SIGABRT, SIGALRM};
        for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
            signal(sigs[i], SIG_DFL);
        alarm(60); /* a child that hangs dies rather than hold the run */
        fn();
        fflush(stdout);
        fflush(stderr);
        _exit(0);
    }
    int st;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    if (WIFSIGNALED(st))
        fail_msg("%s: the test crashed (signal %d, %s)", name, WTERMSIG(st), strsignal(WTERMSIG(st)));
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
        fail_msg("%s: the test failed (exit status %d; under valgrind, 1 may be valgrind's errors)", name,
                 WIFEXITED(st) ? WEXITSTATUS(st) : -1);
}

/* --- the scripted server --- */

static void rconn_closed(uv_handle_t *h)
{
    rconn_t *c = h->data;
    c->closed = 1;
    c->s->open--;
}

void rsrv_close(rconn_t *c)
{
    c->closing = 1;
    if (!uv_is_closing((uv_handle_t *)&c->h))
        uv_close((uv_handle_t *)&c->h, rconn_closed);
}

void rsrv_sendn(rconn_t *c, const void *data, size_t len)
{
    if (!c->closing)
        lh_write_copy(&c->h.stream, data, len);
}

void rsrv_send(rconn_t *c, const char *bytes) { rsrv_sendn(c, bytes, strlen(bytes)); }

static void bulk(rconn_t *c, const char *s, size_t n)
{
    char head[32];
    int h = snprintf(head, sizeof head, "$%zu\r\n", n);
    char *b = malloc((size_t)h + n + 2);
    memcpy(b, head, (size_t)h);
    memcpy(b + h, s, n);
    memcpy(b + h + n, "\r\n", 2);
    rsrv_sendn(c, b, (size_t)h + n + 2);
    free(b);
}

void rsrv_answer_default(rsrv_t *s, rconn_t *c, int argc, char **argv, size_t *lens)
{
    if (argc < 1)
        return;
    const char *cmd = argv[0];
    if (!strcasecmp(cmd, "PING")) {
        rsrv_send(c, "+PONG\r\n");
    } else if (!strcasecmp(cmd, "GET") && argc == 2) {
        char v[512];
        int n = snprintf(v, sizeof v, "v:%.*s", (int)lens[1], argv[1]);
        bulk(c, v, (size_t)n);
    } else if (!strcasecmp(cmd, "ECHO") && argc == 2) {
        bulk(c, argv[1], lens[1]);
    } else if (!strcasecmp(cmd, "INCR")) {
        char v[32];
        snprintf(v, sizeof v, ":%ld\r\n", ++s->counter);
        rsrv_send(c, v);
    } else if (!strcasecmp(cmd, "ERRCMD")) {
        rsrv_send(c, "-ERR boom\r\n");
    } else {
        rsrv_send(c, "+OK\r\n");
    }
}

static void hold(rsrv_t *s, rconn_t *c)
{
    if (s->nheld < RSRV_MAX_HELD) {
        s->held[s->nheld].c = c;
        s->held[s->nheld].cmd = s->ncmds - 1;
        s->nheld++;
    }
}

void rsrv_answer_hold(rsrv_t *s, rconn_t *c, int argc, char **argv, size_t *lens)
{
    (void)argc, (void)argv, (void)lens;
    hold(s, c);
}

static int is_handshake(const char *cmd) { return !strcasecmp(cmd, "AUTH") || !strcasecmp(cmd, "SELECT"); }

void rsrv_answer_hold_user(rsrv_t *s, rconn_t *c, int argc, char **argv, size_t *lens)
{
    if (argc >= 1 && is_handshake(argv[0]))
        rsrv_answer_default(s, c, argc, argv, lens);
    else
        hold(s, c);
}

void rsrv_answer_hold_auth(rsrv_t *s, rconn_t *c, int argc, char **argv, size_t *lens)
{
    if (argc >= 1 && is_handshake(argv[0]))
        hold(s, c);
    else
        rsrv_answer_default(s, c, argc, argv, lens);
}

const char *rsrv_release(rsrv_t *s, const char *bytes)
{
    if (s->nheld == 0)
        return "";
    rconn_t *c = s->held[0].c;
    int i = s->held[0].cmd;
    memmove(&s->held[0], &s->held[1], (size_t)(s->nheld - 1) * sizeof s->held[0]);
    s->nheld--;
    rsrv_send(c, bytes);
    return s->cmds[i].text;
}

static void srv_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
    static char buf[65536];
    (void)h, (void)suggested;
    *b = uv_buf_init(buf, sizeof buf);
}

/* A decimal after a type byte, up to CRLF, at in[*at..n). 1 done, 0 more
 * bytes needed, -1 bad. */
static int resp_num(const char *in, size_t n, size_t *at, char type, long *v)
{
    if (*at >= n)
        return 0;
    if (in[*at] != type)
        return -1;
    size_t i = *at + 1;
    long x = 0;
    int digits = 0;
    for (; i < n && in[i] >= '0' && in[i] <= '9'; i++, digits++)
        x = x * 10 + (in[i] - '0');
    if (i + 1 >= n)
        return 0;
    if (!digits || in[i] != '\r' || in[i + 1] != '\n' || x > 100000000)
        return -1;
    *v = x;
    *at = i + 2;
    return 1;
}

/* One command at the start of c->in: 1 with it in argv/lens (pointing into
 * c->in, NUL-terminated in place of the CR) and *used set; 0 while
 * incomplete; -1 when it is not an array of bulk strings. */
#define MAX_ARGS 64
static int resp_command(char *s, size_t n, int *argc, char **argv, size_t *lens, size_t *used)
{
    size_t at = 0;
    long count;
    int r = resp_num(s, n, &at, '*', &count);
    if (r <= 0)
        return r;
    if (count < 1 || count > MAX_ARGS)
        return -1;
    for (long i = 0; i < count; i++) {
        long len;
        if ((r = resp_num(s, n, &at, '$', &len)) <= 0)
            return r;
        if (n - at < (size_t)len + 2)
            return 0;
        if (s[at + len] != '\r' || s[at + len + 1] != '\n')
            return -1;
        argv[i] = s + at;
        lens[i] = (size_t)len;
        at += (size_t)len + 2;
    }
    for (long i = 0; i < count; i++)
        argv[i][lens[i]] = '\0';
    *argc = (int)count;
    *used = at;
    return 1;
}

static void record(rsrv_t *s, rconn_t *c, int argc, char **argv, size_t *lens)
{
    if (s->ncmds == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 64;
        s->cmds = realloc(s->cmds, (size_t)s->cap * sizeof *s->cmds);
    }
    size_t n = 1;
    for (int i = 0; i < argc; i++)
        n += lens[i] + 1;
    char *t = malloc(n), *p = t;
    for (int i = 0; i < argc; i++) {
        if (i)
            *p++ = ' ';
        memcpy(p, argv[i], lens[i]);
        p += lens[i];
    }
    *p = '\0';
    s->cmds[s->ncmds].text = t;
    s->cmds[s->ncmds].conn = c->id;
    s->cmds[s->ncmds].read = c->reads;
    s->ncmds++;
    c->ncmds++;
}

static void srv_read(uv_stream_t *st, ssize_t n, const uv_buf_t *b)
{
    rconn_t *c = st->data;
    rsrv_t *s = c->s;
    if (n == 0)
        return;
    if (n < 0) {
        c->eof = 1;
        rsrv_close(c);
        return;
    }
    c->reads++;
    if (c->in.cap - c->in.len < (size_t)n) {
        c->in.cap = c->in.len + (size_t)n + 4096;
        c->in.data = realloc(c->in.data, c->in.cap);
    }
    memcpy(c->in.data + c->in.len, b->base, (size_t)n);
    c->in.len += (size_t)n;
    for (;;) {
        if (c->closing)
            return;
        int argc;
        char *argv[MAX_ARGS];
        size_t lens[MAX_ARGS], used;
        int r = resp_command(c->in.data, c->in.len, &argc, argv, lens, &used);
        if (r == 0)
            return;
        if (r < 0) {
            s->bad++;
            rsrv_close(c);
            return;
        }
        record(s, c, argc, argv, lens);
        if (s->answer)
            s->answer(s, c, argc, argv, lens);
        memmove(c->in.data, c->in.data + used, c->in.len - used);
        c->in.len -= used;
    }
}

static void srv_accept(uv_stream_t *ls, int status)
{
    rsrv_t *s = ls->data;
    if (status < 0 || s->accepted >= RSRV_MAX_CONNS)
        return;
    rconn_t *c = calloc(1, sizeof *c);
    c->s = s;
    c->id = s->accepted + 1;
    if (s->path[0])
        uv_pipe_init(ls->loop, &c->h.pipe, 0);
    else
        uv_tcp_init(ls->loop, &c->h.tcp);
    c->h.stream.data = c;
    s->conns[s->accepted++] = c;
    s->open++;
    if (uv_accept(ls, &c->h.stream) != 0) {
        rsrv_close(c);
        return;
    }
    uv_read_start(&c->h.stream, srv_alloc, srv_read);
}

static void srv_init(rsrv_t *s, rsrv_answer_fn fn)
{
    /* a server started again: its listener and connections are closed */
    fx_check(!s->lclosing);
    fx_check(s->open == 0);
    rcmd_t *cmds = s->cmds;
    int n = s->ncmds;
    /* a server started again keeps nothing of its last run but the record */
    for (int i = 0; i < n; i++)
        free(cmds[i].text);
    free(cmds);
    for (int i = 0; i < s->accepted; i++) {
        free(s->conns[i]->in.data);
        free(s->conns[i]);
    }
    memset(s, 0, sizeof *s);
    s->answer = fn;
}

void rsrv_start(fx_t *fx, rsrv_t *s, int port, rsrv_answer_fn fn)
{
    srv_init(s, fn);
    struct sockaddr_in a;
    fx_check(uv_ip4_addr("127.0.0.1", port, &a) == 0);
    fx_check(uv_tcp_init(&fx->lh.loop, &s->l.tcp) == 0);
    s->l.handle.data = s;
    fx_check(uv_tcp_bind(&s->l.tcp, (struct sockaddr *)&a, 0) == 0);
    fx_check(uv_listen((uv_stream_t *)&s->l.tcp, 128, srv_accept) == 0);
    struct sockaddr_storage ss;
    int len = sizeof ss;
    fx_check(uv_tcp_getsockname(&s->l.tcp, (struct sockaddr *)&ss, &len) == 0);
    s->port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
    s->listening = 1;
}

void rsrv_start_unix(fx_t *fx, rsrv_t *s, const char *path, rsrv_answer_fn fn)
{
    srv_init(s, fn);
    snprintf(s->path, sizeof s->path, "%s", path);
    unlink(path);
    fx_check(uv_pipe_init(&fx->lh.loop, &s->l.pipe, 0) == 0);
    s->l.handle.data = s;
    fx_check(uv_pipe_bind(&s->l.pipe, path) == 0);
    fx_check(uv_listen((uv_stream_t *)&s->l.pipe, 128, srv_accept) == 0);
    s->listening = 1;
}

static void listener_closed(uv_handle_t *h)
{
    rsrv_t *s = h->data;
    s->lclosing = 0;
}

void rsrv_unlisten(rsrv_t *s)
{
    if (s->listening) {
        s->lclosing = 1;
        uv_close(&s->l.handle, listener_closed);
        s->listening = 0;
        if (s->path[0])
            unlink(s->path);
    }
}

void rsrv_stop(rsrv_t *s)
{
    rsrv_unlisten(s);
    for (int i = 0; i < s->accepted; i++)
        rsrv_close(s->conns[i]);
}

void rsrv_free(rsrv_t *s) { srv_init(s, NULL); }

const char *rsrv_cmd(const rsrv_t *s, int i)
{
    if (i < 0)
        i += s->ncmds;
    return i >= 0 && i < s->ncmds ? s->cmds[i].text : "";
}

int rsrv_cmd_conn(const rsrv_t *s, int i)
{
    if (i < 0)
        i += s->ncmds;
    return i >= 0 && i < s->ncmds ? s->cmds[i].conn : 0;
}

int rsrv_count(const rsrv_t *s, int conn, const char *text)
{
    int n = 0;
    for (int i = 0; i < s->ncmds; i++)
        if (s->cmds[i].conn == conn && !strcmp(s->cmds[i].text, text))
            n++;
    return n;
}

char *rsrv_conn_log(const rsrv_t *s, int conn, char *out, size_t len)
{
    size_t at = 0;
    out[0] = '\0';
    for (int i = 0; i < s->ncmds && at < len; i++)
        if (s->cmds[i].conn == conn)
            at += (size_t)snprintf(out + at, len - at, "%s%s", at ? " | " : "", s->cmds[i].text);
    return out;
}

/* --- the loop --- */

void fx_setup(fx_t *fx)
{
    memset(fx, 0, sizeof *fx);
    fx->mem_buffers = ws_mem_used(WS_MEM_BUFFERS);
    fx->mem_queue = ws_mem_used(WS_MEM_QUEUE);
    fx_check(lh_init(&fx->lh) == 0);
    rsrv_start(fx, &fx->srv, 0, rsrv_answer_default);
}

void fx_client(fx_t *fx, const char *url, uint32_t timeout_ms, unsigned max_queued)
{
    ws_redis_url_t u;
    char err[256];
    if (ws_redis_url_parse(&u, url, strlen(url), err, sizeof err) != 0)
        fx_check_failed(__FILE__, __LINE__, "the URL is good", err);
    ws_redis_opts_t o = {.timeout_ms = timeout_ms, .max_queued = max_queued};
    fx->r = ws_redis_new(&fx->lh.io, &u, &o);
    ws_redis_url_free(&u);
}

char *fx_url(const rsrv_t *s, const char *userinfo, const char *rest, char *buf, size_t len)
{
    snprintf(buf, len, "redis://%s%s127.0.0.1:%d%s", userinfo ? userinfo : "", userinfo ? "@" : "",
             s->port, rest ? rest : "");
    return buf;
}

void fx_teardown(fx_t *fx)
{
    ws_redis_free(fx->r);
    fx->r = NULL;
    rsrv_stop(&fx->srv);
    rsrv_stop(&fx->srv2);
    fx_check(lh_close(&fx->lh) == 0);
    rsrv_free(&fx->srv);
    rsrv_free(&fx->srv2);
    /* Everything the client held for commands and replies is released. */
    if (ws_mem_used(WS_MEM_BUFFERS) != fx->mem_buffers || ws_mem_used(WS_MEM_QUEUE) != fx->mem_queue) {
        char d[128];
        snprintf(d, sizeof d, "buffers %zu (at setup %zu), queue %zu (at setup %zu)",
                 ws_mem_used(WS_MEM_BUFFERS), fx->mem_buffers, ws_mem_used(WS_MEM_QUEUE), fx->mem_queue);
        fx_check_failed(__FILE__, __LINE__, "the memory counters are back where they started", d);
    }
}

/* --- calls and results --- */

static int g_in_call, g_seq;

void rep_text(const redisReply *rep, char *out, size_t len)
{
    switch (rep->type) {
    case REDIS_REPLY_STRING:
        snprintf(out, len, "%.*s", (int)rep->len, rep->str);
        break;
    case REDIS_REPLY_STATUS:
        snprintf(out, len, "+%.*s", (int)rep->len, rep->str);
        break;
    case REDIS_REPLY_ERROR:
        snprintf(out, len, "-%.*s", (int)rep->len, rep->str);
        break;
    case REDIS_REPLY_INTEGER:
        snprintf(out, len, ":%lld", (long long)rep->integer);
        break;
    case REDIS_REPLY_NIL:
        snprintf(out, len, "nil");
        break;
    case REDIS_REPLY_ARRAY: {
        size_t at = (size_t)snprintf(out, len, "[");
        for (size_t i = 0; i < rep->elements && at < len; i++) {
            if (i && at < len)
                at += (size_t)snprintf(out + at, len - at, ",");
            if (at < len)
                rep_text(rep->element[i], out + at, len - at);
            at += strlen(out + at);
        }
        if (at < len)
            snprintf(out + at, len - at, "]");
        break;
    }
    default:
        snprintf(out, len, "?%d", rep->type);
    }
}

static void on_result(void *ud, const redisReply *reply, const char *error)
{
    result_t *r = ud;
    r->done++;
    r->in_call |= g_in_call;
    r->seq = ++g_seq;
    r->at = uv_now(&r->fx->lh.loop);
    r->turn = r->fx->lh.turns;
    snprintf(r->error, sizeof r->error, "%s", error ? error : "");
    r->type = reply ? reply->type : 0;
    if (reply)
        rep_text(reply, r->text, sizeof r->text);
    else
        r->text[0] = '\0';
    if (r->then)
        r->then(r);
    uv_stop(&r->fx->lh.loop); /* see on_deadline */
}

void result_init(result_t *r, fx_t *fx)
{
    memset(r, 0, sizeof *r);
    r->fx = fx;
}

int result_done(void *r) { return ((result_t *)r)->done > 0; }
int srv_has_held(void *s) { return ((rsrv_t *)s)->nheld > 0; }

int fx_connected(void *ud)
{
    fx_t *fx = ud;
    ws_redis_stats_t st;
    ws_redis_stats(fx->r, &st);
    return st.connected;
}

#define MAX_WORDS 64

/* Split the words of cmds[0..ncmds) into argc/argv/lens (pointing into
 * copies in store). */
ws_redis_call_t *fx_unit(fx_t *fx, ws_redis_t *cl, result_t *r, unsigned ncmds, const char **cmds,
                         const char **error)
{
    (void)fx;
    int argc[16];
    const char *argv[MAX_WORDS];
    size_t lens[MAX_WORDS];
    int at = 0;
    fx_check(ncmds >= 1 && ncmds <= 16);
    for (unsigned i = 0; i < ncmds; i++) {
        const char *p = cmds[i];
        argc[i] = 0;
        while (*p) {
            const char *sp = strchr(p, ' ');
            size_t n = sp ? (size_t)(sp - p) : strlen(p);
            fx_check(at < MAX_WORDS);
            argv[at] = p;
            lens[at] = n;
            at++;
            argc[i]++;
            p += n;
            if (*p == ' ')
                p++;
        }
    }
    const char *dummy = NULL;
    g_in_call++;
    ws_redis_call_t *c = ws_redis_call(cl, ncmds, argc, argv, lens, on_result, r, error ? error : &dummy);
    g_in_call--;
    return c;
}

ws_redis_call_t *fx_call(fx_t *fx, ws_redis_t *cl, result_t *r, const char *cmd, const char **error)
{
    return fx_unit(fx, cl, r, 1, &cmd, error);
}
