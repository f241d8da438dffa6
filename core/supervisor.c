#define _GNU_SOURCE /* environ */
#include "supervisor.h"

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "buf.h"
#include "control.h"
#include "log.h"
#include "notify.h"
#include "reload.h"
#include "tally.h"
#include "tcp.h"
#include "worker.h"

extern char **environ;

/* A worker that dies is started again after BACKOFF_MIN ms, doubling while
 * it keeps dying within STABLE ms of its start, up to BACKOFF_MAX. */
#define BACKOFF_MIN 100
#define BACKOFF_MAX 10000
#define STABLE 10000
/* Each mailbox socket's buffer (the kernel caps it at net.core.wmem_max). */
#define MAILBOX_BUF (4 << 20)

typedef struct sup_s sup_t;
typedef struct wk_s wk_t;

/* One end of a worker's control or log socket, for one run of the worker. */
typedef struct {
    uv_poll_t poll;
    int fd;
    wk_t *w;
    int is_log;
} chan_t;

struct wk_s {
    sup_t *s;
    unsigned id;
    uv_process_t proc;
    int running;      /* started, its exit not seen yet */
    int ready;        /* said "ready" in this run */
    int pid;
    chan_t *ctl, *log;
    uv_timer_t restart;
    uint64_t started; /* loop time of the latest start */
    unsigned backoff; /* ms before the next restart */
    uint64_t asked;   /* the digest of the reload it has not answered, or 0 */
};

typedef struct {
    sup_t *s;
    uv_process_t proc;
    uv_pipe_t out, err;
    ws_buf_t obuf, ebuf;
    int open;         /* handles not closed yet */
    int64_t status;
    int signal;
    char why[512];
} check_t;

struct sup_s {
    uv_loop_t *loop;
    const ws_config_t *cfg;
    unsigned n;
    char **argv;
    char exe[4096];
    int reuseport;
    int listen[WS_TALLY_MAX_WORKERS];
    int nlisten;
    int port;
    ws_tally_t *tally;
    int tally_fd;
    int mb_rx[WS_TALLY_MAX_WORKERS], mb_tx[WS_TALLY_MAX_WORKERS];
    wk_t w[WS_TALLY_MAX_WORKERS];
    ws_reload_t reload;
    int watching;
    uint64_t digest;  /* the version the workers serve (or are told to) */
    char **files;
    size_t nfiles;
    check_t *check;   /* running, or NULL */
    char again[512];  /* reasons to check again once it ends */
    ws_control_t ctl; /* --control-socket */
    uint64_t attempt; /* the reload attempt of the check under way (control.h) */
    /* the reload round under way */
    uint64_t round_digest, round_t0, round_attempt;
    unsigned round_wait, round_refused;
    char round_why[512];
    char round_err[512]; /* the first refusal */
    char reload_failed[1536]; /* the latest reload's error, until one succeeds */
    uv_signal_t sigint, sigterm;
    int stopping;
    int rc;
    int announced;
    unsigned open_chans;
};

static void spawn_worker(wk_t *w);

/* ---- children ---- */

/* The environment of a child: ours, with role (and worker) set. */
static char **child_env(const char *role, const char *worker)
{
    size_t n = 0;
    while (environ[n])
        n++;
    char **env = ws_calloc(n + 3, sizeof *env);
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (strncmp(environ[i], "WSPUSH_ROLE=", 12) != 0 &&
            strncmp(environ[i], "WSPUSH_WORKER=", 14) != 0)
            env[k++] = environ[i];
    env[k++] = (char *)role;
    if (worker)
        env[k++] = (char *)worker;
    env[k] = NULL;
    return env;
}

/* ---- checking a version ---- */

static void check_finished(sup_t *s, check_t *c);

static void on_check_closed(uv_handle_t *h)
{
    check_t *c = h->data;
    if (--c->open == 0)
        check_finished(c->s, c);
}

static void on_alloc(uv_handle_t *h, size_t size, uv_buf_t *buf)
{
    (void)h;
    buf->base = ws_malloc(size);
    buf->len = size;
}

static void on_check_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
    check_t *c = st->data;
    if (n > 0)
        ws_buf_append(st == (uv_stream_t *)&c->out ? &c->obuf : &c->ebuf, buf->base, (size_t)n);
    free(buf->base);
    if (n < 0)
        uv_close((uv_handle_t *)st, on_check_closed);
}

static void on_check_exit(uv_process_t *p, int64_t status, int sig)
{
    check_t *c = p->data;
    c->status = status;
    c->signal = sig;
    uv_close((uv_handle_t *)p, on_check_closed);
}

static void start_check(sup_t *s, const char *why)
{
    check_t *c = ws_calloc(1, sizeof *c);
    c->s = s;
    snprintf(c->why, sizeof c->why, "%s", why);
    uv_pipe_init(s->loop, &c->out, 0);
    uv_pipe_init(s->loop, &c->err, 0);
    c->out.data = c->err.data = c->proc.data = c;
    uv_stdio_container_t io[3] = {
        {.flags = UV_IGNORE},
        {.flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE, .data.stream = (uv_stream_t *)&c->out},
        {.flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE, .data.stream = (uv_stream_t *)&c->err},
    };
    if (s->digest) {
        s->attempt = ws_control_begin(&s->ctl);
        ws_notify_reloading(why);
    }
    char **env = child_env("WSPUSH_ROLE=check", NULL);
    uv_process_options_t o = {.exit_cb = on_check_exit, .file = s->exe, .args = s->argv,
                              .env = env, .stdio_count = 3, .stdio = io};
    int r = uv_spawn(s->loop, &c->proc, &o);
    free(env);
    s->check = c;
    c->open = 2;
    if (r != 0) {
        c->status = -1;
        ws_buf_append_str(&c->ebuf, "cannot start the check: ");
        ws_buf_append_str(&c->ebuf, uv_strerror(r));
        uv_close((uv_handle_t *)&c->out, on_check_closed);
        uv_close((uv_handle_t *)&c->err, on_check_closed);
        return;
    }
    c->open = 3;
    uv_read_start((uv_stream_t *)&c->out, on_alloc, on_check_read);
    uv_read_start((uv_stream_t *)&c->err, on_alloc, on_check_read);
}

static void free_files(sup_t *s)
{
    for (size_t i = 0; i < s->nfiles; i++)
        free(s->files[i]);
    free(s->files);
    s->files = NULL;
    s->nfiles = 0;
}

/* "digest HEX" then "file PATH" lines; returns the digest, 0 when absent. */
static uint64_t parse_report(sup_t *s, ws_buf_t *out)
{
    ws_buf_append(out, "", 1);
    uint64_t d = 0;
    free_files(s);
    for (char *line = (char *)out->data, *next; line && *line; line = next) {
        next = strchr(line, '\n');
        if (next)
            *next++ = '\0';
        if (strncmp(line, "digest ", 7) == 0) {
            d = strtoull(line + 7, NULL, 16);
        } else if (strncmp(line, "file ", 5) == 0) {
            s->files = ws_realloc(s->files, (s->nfiles + 1) * sizeof *s->files);
            s->files[s->nfiles++] = ws_strndup(line + 5, strlen(line + 5));
        }
    }
    return d;
}

/* The check's error: its stderr without the program name and the newline. */
static const char *check_error(check_t *c)
{
    ws_buf_append(&c->ebuf, "", 1);
    char *e = (char *)c->ebuf.data;
    if (strncmp(e, "wspush: ", 8) == 0)
        e += 8;
    size_t n = strlen(e);
    while (n && (e[n - 1] == '\n' || e[n - 1] == '\r'))
        e[--n] = '\0';
    if (!*e)
        snprintf(e, 1, "%s", "");
    return *e ? e : "the check ended without a word";
}

static void start_workers(sup_t *s);
static void begin_round(sup_t *s, const char *why);

static void check_finished(sup_t *s, check_t *c)
{
    s->check = NULL;
    uint64_t d = c->status == 0 && !c->signal ? parse_report(s, &c->obuf) : 0;
    if (!s->digest && !s->stopping) {
        /* The first check: nothing serves yet. */
        if (!d) {
            fprintf(stderr, "wspush: %s\n", check_error(c));
            s->rc = 1;
        } else {
            s->digest = d;
            start_workers(s);
        }
    } else if (!s->stopping) {
        if (!d) {
            const char *e = check_error(c);
            ws_log_error("reload failed (%s), the previous version keeps serving: %s", c->why, e);
            snprintf(s->reload_failed, sizeof s->reload_failed,
                     "reload failed, the previous version serves: %s", e);
            ws_notify_ready();
            ws_control_end(&s->ctl, s->attempt, 0, e);
        } else {
            s->digest = d;
            ws_reload_rewatch(&s->reload);
            begin_round(s, c->why);
        }
    }
    ws_buf_free(&c->obuf);
    ws_buf_free(&c->ebuf);
    free(c);
    if (s->again[0] && !s->stopping) {
        char why[sizeof s->again];
        snprintf(why, sizeof why, "%s", s->again);
        s->again[0] = '\0';
        start_check(s, why);
    }
}

/* ---- reloads ---- */

static void files(void *ud, void (*cb)(void *cb_ud, const char *path), void *cb_ud)
{
    sup_t *s = ud;
    for (size_t i = 0; i < s->nfiles; i++)
        cb(cb_ud, s->files[i]);
}

/* The watcher (or SIGHUP) asks: check the new version first. Its answer
 * comes later; the watch list follows once it is in. */
static int reload(void *ud, const char *why)
{
    sup_t *s = ud;
    if (s->check) {
        size_t n = strlen(s->again);
        snprintf(s->again + n, sizeof s->again - n, "%s%s", n ? ", " : "", why);
    } else {
        start_check(s, why);
    }
    return -1;
}

static const ws_reload_ops_t reload_ops = {files, reload};

static void control_reload(void *ud) { reload(ud, "reload command"); }

static const ws_control_ops_t control_ops = {control_reload};

static void tell(wk_t *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void tell(wk_t *w, const char *fmt, ...)
{
    if (!w->ctl)
        return;
    va_list ap;
    va_start(ap, fmt);
    if (ws_worker_vsend(w->ctl->fd, fmt, ap) != 0)
        ws_log_warn("worker %u: control socket: %s", w->id, strerror(errno));
    va_end(ap);
}

static void ask_reload(wk_t *w, const char *why)
{
    w->asked = w->s->digest;
    tell(w, "reload %016" PRIx64 " %s", w->s->digest, why);
}

/* What systemctl status shows (notify.h). */
static void status_line(void *ud, char *buf, size_t len)
{
    sup_t *s = ud;
    char hb[64];
    uint64_t open = ws_tally_open(s->tally);
    int n = snprintf(buf, len, "serving %s on %s:%d with %u workers; %" PRIu64 " connection%s",
                     s->cfg->script, ws_tcp_url_host(s->cfg->host, hb, sizeof hb), s->port, s->n,
                     open, WS_PLURAL(open));
    if (s->reload_failed[0] && n > 0 && (size_t)n < len)
        snprintf(buf + n, len - (size_t)n, "; %s", s->reload_failed);
}

static void round_done(sup_t *s)
{
    double ms = (double)(uv_hrtime() - s->round_t0) / 1e6;
    unsigned ok = s->n - s->round_refused;
    uint64_t kept = ws_tally_open(s->tally);
    char msg[sizeof s->reload_failed]; /* room for round_why and round_err whole */
    if (s->round_refused) {
        snprintf(msg, sizeof msg, "reload (%s): %u of %u workers kept the previous version (%s)",
                 s->round_why, s->round_refused, s->n, s->round_err);
        ws_log_error("%s", msg);
    } else {
        snprintf(msg, sizeof msg, "reloaded %s (%s) on %u worker%s in %.2f ms; %" PRIu64
                 " connection%s kept", s->cfg->script, s->round_why, ok, WS_PLURAL(ok), ms, kept,
                 WS_PLURAL(kept));
        ws_log_info("%s", msg);
    }
    snprintf(s->reload_failed, sizeof s->reload_failed, "%s", s->round_refused ? msg : "");
    ws_notify_ready();
    ws_control_end(&s->ctl, s->round_attempt, !s->round_refused, msg);
}

static void begin_round(sup_t *s, const char *why)
{
    /* A round still under way is superseded: who waits for it learns how this one ends. */
    if (s->round_wait)
        ws_control_retag(&s->ctl, s->round_attempt, s->attempt);
    s->round_attempt = s->attempt;
    s->round_err[0] = '\0';
    s->round_digest = s->digest;
    s->round_t0 = uv_hrtime();
    s->round_wait = s->round_refused = 0;
    snprintf(s->round_why, sizeof s->round_why, "%s", why);
    for (unsigned i = 0; i < s->n; i++) {
        wk_t *w = &s->w[i];
        if (w->running && w->ready) {
            ask_reload(w, why);
            s->round_wait++;
        }
    }
    if (!s->round_wait)
        round_done(s);
}

/* A worker answered (or died before it could): the round may be over. */
static void answered(wk_t *w, uint64_t digest, const char *refused)
{
    sup_t *s = w->s;
    if (!w->asked || w->asked != digest)
        return;
    w->asked = 0;
    if (digest != s->round_digest || !s->round_wait)
        return;
    if (refused && !s->round_refused++)
        snprintf(s->round_err, sizeof s->round_err, "worker %u: %s", w->id, refused);
    if (--s->round_wait == 0)
        round_done(s);
}

/* ---- the workers' sockets ---- */

static void on_chan_closed(uv_handle_t *h)
{
    chan_t *c = h->data;
    sup_t *s = c->w->s;
    close(c->fd);
    free(c);
    s->open_chans--;
}

static void chan_close(chan_t **cp)
{
    chan_t *c = *cp;
    if (!c)
        return;
    *cp = NULL;
    uv_close((uv_handle_t *)&c->poll, on_chan_closed);
}

static void all_ready(sup_t *s)
{
    for (unsigned i = 0; i < s->n; i++)
        if (!s->w[i].ready)
            return;
    s->announced = 1;
    char hb[64];
    ws_log_info("wspush %s listening on %s://%s:%d (script %s, %u workers, %s)", WSPUSH_VERSION,
                s->cfg->tls_cert ? "https" : "http", ws_tcp_url_host(s->cfg->host, hb, sizeof hb),
                s->port, s->cfg->script, s->n,
                s->reuseport ? "a listening socket each" : "one shared listening socket");
    ws_notify_serving(s->loop, status_line, s);
}

static void on_message(wk_t *w, char *msg)
{
    sup_t *s = w->s;
    uint64_t d;
    int off = 0;
    if (sscanf(msg, "ready %" SCNx64, &d) == 1) {
        w->ready = 1;
        if (s->announced)
            ws_log_info("worker %u (pid %d) serves again", w->id, w->pid);
        /* It read the files by itself: if they changed since the check,
         * it must load the checked version. */
        if (d != s->digest)
            ask_reload(w, "catching up with the other workers");
        if (!s->announced)
            all_ready(s);
    } else if (sscanf(msg, "reloaded %" SCNx64, &d) == 1) {
        answered(w, d, NULL);
    } else if (sscanf(msg, "refused %" SCNx64 " %n", &d, &off) == 1) {
        ws_log_error("worker %u kept the previous version: %s", w->id, off ? msg + off : "");
        answered(w, d, off ? msg + off : "refused");
    } else {
        ws_log_warn("worker %u: unknown message '%.40s'", w->id, msg);
    }
}

static void on_chan(uv_poll_t *h, int status, int events)
{
    chan_t *c = h->data;
    wk_t *w = c->w;
    (void)events;
    static char buf[65536 + 1];
    for (int i = 0; i < 64; i++) {
        ssize_t n = status < 0 ? 0 : recv(c->fd, buf, sizeof buf - 1, MSG_DONTWAIT);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        if (n <= 0) {
            chan_close(c->is_log ? &w->log : &w->ctl);
            return;
        }
        if (c->is_log) {
            /* One record per datagram: written whole, never mixed with
             * another worker's lines, and never waited for (a stalled
             * stderr must not stall the workers' logs nor this loop). */
            ws_log_relay(buf, (size_t)n);
        } else {
            buf[n] = '\0';
            on_message(w, buf);
        }
    }
}

static chan_t *chan_open(wk_t *w, int fd, int is_log)
{
    chan_t *c = ws_calloc(1, sizeof *c);
    c->fd = fd;
    c->w = w;
    c->is_log = is_log;
    uv_poll_init(w->s->loop, &c->poll, fd);
    c->poll.data = c;
    uv_poll_start(&c->poll, UV_READABLE, on_chan);
    w->s->open_chans++;
    return c;
}

/* ---- workers ---- */

static void maybe_done(sup_t *s);

static void describe_exit(char *out, size_t len, int64_t status, int sig)
{
    if (sig)
        snprintf(out, len, "was killed by signal %d (%s)", sig, strsignal(sig));
    else
        snprintf(out, len, "exited with status %" PRId64, status);
}

static void on_restart(uv_timer_t *t) { spawn_worker(t->data); }

static void on_proc_closed(uv_handle_t *h)
{
    wk_t *w = h->data;
    maybe_done(w->s);
}

static void on_worker_exit(uv_process_t *p, int64_t status, int sig)
{
    wk_t *w = p->data;
    sup_t *s = w->s;
    w->running = 0;
    w->ready = 0;
    char how[128];
    describe_exit(how, sizeof how, status, sig);
    /* What it was counted for is gone with it. */
    ws_tally_forget(s->tally, w->id);
    if (w->asked)
        answered(w, w->asked, "it exited during the reload");
    chan_close(&w->ctl);
    if (s->stopping) {
        if (status != 0 || sig) {
            ws_log_error("worker %u (pid %d) %s while stopping", w->id, w->pid, how);
            s->rc = 1;
        }
    } else {
        uint64_t now = uv_now(s->loop);
        if (now - w->started >= STABLE)
            w->backoff = BACKOFF_MIN;
        ws_log_error("worker %u (pid %d) %s; starting it again in %u ms", w->id, w->pid, how,
                     w->backoff);
        uv_timer_start(&w->restart, on_restart, w->backoff, 0);
        w->backoff = w->backoff * 2 > BACKOFF_MAX ? BACKOFF_MAX : w->backoff * 2;
    }
    uv_close((uv_handle_t *)p, on_proc_closed);
}

/* Starting failed before the worker ran: try again after its backoff. */
static void retry_start(wk_t *w, const char *what, const char *why)
{
    ws_log_error("worker %u: %s: %s; trying again in %u ms", w->id, what, why, w->backoff);
    uv_timer_start(&w->restart, on_restart, w->backoff, 0);
}

static void inherit(uv_stdio_container_t *io, int fd)
{
    io->flags = UV_INHERIT_FD;
    io->data.fd = fd;
}

static void spawn_worker(wk_t *w)
{
    sup_t *s = w->s;
    int ctl[2], log[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, ctl) != 0) {
        retry_start(w, "socketpair", strerror(errno));
        return;
    }
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, log) != 0) {
        int e = errno;
        close(ctl[0]);
        close(ctl[1]);
        retry_start(w, "socketpair", strerror(e));
        return;
    }
    /* The descriptors at the numbers worker.h gives them. */
    uv_stdio_container_t io[WS_WORKER_FD_PEERS + WS_TALLY_MAX_WORKERS];
    memset(io, 0, sizeof io);
    io[0].flags = UV_IGNORE;
    inherit(&io[1], 1);
    inherit(&io[2], log[1]);
    inherit(&io[WS_WORKER_FD_LISTEN], s->listen[s->reuseport ? w->id - 1 : 0]);
    inherit(&io[WS_WORKER_FD_CONTROL], ctl[1]);
    inherit(&io[WS_WORKER_FD_TALLY], s->tally_fd);
    inherit(&io[WS_WORKER_FD_MAILBOX], s->mb_rx[w->id - 1]);
    for (unsigned i = 0; i < s->n; i++)
        inherit(&io[WS_WORKER_FD_PEERS + i], s->mb_tx[i]);
    char spec[64];
    snprintf(spec, sizeof spec, "WSPUSH_WORKER=%u/%u", w->id, s->n);
    char **env = child_env("WSPUSH_ROLE=worker", spec);
    /* Its own session: a terminal's ^C reaches the supervisor, which stops
     * the workers in order, not every process at once. */
    uv_process_options_t o = {.exit_cb = on_worker_exit, .file = s->exe, .args = s->argv,
                              .env = env, .flags = UV_PROCESS_DETACHED,
                              .stdio_count = (int)(WS_WORKER_FD_PEERS + s->n), .stdio = io};
    w->proc.data = w;
    int r = uv_spawn(s->loop, &w->proc, &o);
    free(env);
    close(ctl[1]);
    close(log[1]);
    if (r != 0) {
        close(ctl[0]);
        close(log[0]);
        char what[sizeof s->exe + 16];
        snprintf(what, sizeof what, "cannot start %s", s->exe);
        retry_start(w, what, uv_strerror(r));
        return;
    }
    w->running = 1;
    w->ready = 0;
    w->pid = w->proc.pid;
    w->started = uv_now(s->loop);
    w->ctl = chan_open(w, ctl[0], 0);
    w->log = chan_open(w, log[0], 1);
    ws_log_debug("worker %u started (pid %d)", w->id, w->pid);
}

static int make_mailboxes(sup_t *s, char *err, size_t errlen)
{
    for (unsigned i = 0; i < s->n; i++) {
        int sv[2];
        if (socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, sv) != 0) {
            snprintf(err, errlen, "mailbox socket: %s", strerror(errno));
            return -1;
        }
        int size = MAILBOX_BUF;
        setsockopt(sv[0], SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
        setsockopt(sv[1], SOL_SOCKET, SO_SNDBUF, &size, sizeof size);
        s->mb_rx[i] = sv[0];
        s->mb_tx[i] = sv[1];
    }
    return 0;
}

static void on_signal(uv_signal_t *h, int signum);

/* SIGUSR1 reopened our access log: each worker reopens its own. */
static void reopen_workers(void *ud)
{
    sup_t *s = ud;
    for (unsigned i = 0; i < s->n; i++)
        if (s->w[i].running)
            uv_process_kill(&s->w[i].proc, SIGUSR1);
}

static void start_workers(sup_t *s)
{
    const ws_config_t *cfg = s->cfg;
    char err[512];
    /* One socket per worker with SO_REUSEPORT spread 10,000 connections
     * closer to evenly than one shared socket (tests/bench/workers.py);
     * WSPUSH_SHARED_LISTENER=1 gives the shared one, for that comparison. */
    if (cfg->control_socket && ws_control_open(&s->ctl, s->loop, cfg->control_socket,
                                               &control_ops, s, err, sizeof err) != 0) {
        fprintf(stderr, "wspush: %s\n", err);
        s->rc = 1;
        return;
    }
    const char *shared = getenv("WSPUSH_SHARED_LISTENER");
    s->reuseport = !(shared && strcmp(shared, "1") == 0);
    s->nlisten = s->reuseport ? (int)s->n : 1;
    s->port = cfg->port;
    for (int i = 0; i < s->nlisten; i++) {
        int fd = ws_tcp_bind_socket(cfg->host, s->port, s->reuseport, &s->port, err, sizeof err);
        if (fd < 0) {
            fprintf(stderr, "wspush: %s\n", err);
            s->rc = 1;
            return;
        }
        s->listen[i] = fd;
    }
    /* Room for every address of every connection the limits allow, when
     * a per-address limit is on; the table's file is sparse. */
    size_t ipcap = cfg->max_per_ip || cfg->max_tcp_per_ip
                       ? 2 * ((size_t)cfg->max_connections + 65536)
                       : 0;
    s->tally = ws_tally_create(s->n, ipcap, &s->tally_fd);
    if (!s->tally) {
        fprintf(stderr, "wspush: cannot make the workers' shared memory: %s\n", strerror(errno));
        s->rc = 1;
        return;
    }
    if (make_mailboxes(s, err, sizeof err) != 0) {
        fprintf(stderr, "wspush: %s\n", err);
        s->rc = 1;
        return;
    }
    for (unsigned i = 0; i < s->n; i++)
        spawn_worker(&s->w[i]);
    ws_reload_init(&s->reload, s->loop, cfg->script, !cfg->no_watch, &reload_ops, s);
    s->watching = 1;
}

/* ---- stopping ---- */

static void maybe_done(sup_t *s)
{
    if (!s->stopping)
        return;
    for (unsigned i = 0; i < s->n; i++)
        if (s->w[i].running || uv_is_active((uv_handle_t *)&s->w[i].proc))
            return;
    /* Every worker is gone; its log socket reaches its end by itself. */
    if (!uv_is_closing((uv_handle_t *)&s->sigint)) {
        uv_close((uv_handle_t *)&s->sigint, NULL);
        uv_close((uv_handle_t *)&s->sigterm, NULL);
        for (unsigned i = 0; i < s->n; i++)
            uv_close((uv_handle_t *)&s->w[i].restart, NULL);
    }
}

static void on_signal(uv_signal_t *h, int signum)
{
    sup_t *s = h->data;
    const char *name = signum == SIGINT ? "SIGINT" : "SIGTERM";
    if (s->stopping) {
        ws_log_warn("%s again: the workers close their connections now", name);
    } else {
        ws_log_info("%s: stopping %u workers", name, s->n);
        char st[64];
        snprintf(st, sizeof st, "%s: stopping %u workers", name, s->n);
        ws_notify_stopping(st);
        ws_control_close(&s->ctl);
        s->stopping = 1;
        if (s->watching)
            ws_reload_close(&s->reload);
        s->watching = 0;
    }
    for (unsigned i = 0; i < s->n; i++) {
        wk_t *w = &s->w[i];
        uv_timer_stop(&w->restart);
        if (w->running)
            uv_process_kill(&w->proc, SIGTERM);
    }
    maybe_done(s);
}

int ws_supervisor_run(const ws_config_t *cfg, unsigned n, int argc, char **argv)
{
    static sup_t sup;
    sup_t *s = &sup;
    (void)argc;
    s->loop = uv_default_loop();
    s->cfg = cfg;
    s->n = n;
    s->argv = argv;
    s->tally_fd = -1;
    size_t len = sizeof s->exe;
    if (uv_exepath(s->exe, &len) != 0) {
        fprintf(stderr, "wspush: cannot find my own executable to start the workers\n");
        return 1;
    }
    for (unsigned i = 0; i < n; i++) {
        wk_t *w = &s->w[i];
        w->s = s;
        w->id = i + 1;
        w->backoff = BACKOFF_MIN;
        uv_timer_init(s->loop, &w->restart);
        w->restart.data = w;
        s->mb_rx[i] = s->mb_tx[i] = -1;
    }
    signal(SIGPIPE, SIG_IGN);
    ws_log_start(s->loop);
    ws_log_on_reopen(reopen_workers, s);
    /* The node's id for the broker, the same in every worker (they skip
     * what their own node published). */
    uint64_t node;
    if (uv_random(NULL, NULL, &node, sizeof node, 0, NULL) != 0)
        node = uv_hrtime() ^ ((uint64_t)getpid() << 32);
    char hex[32];
    snprintf(hex, sizeof hex, "%016" PRIx64, node);
    setenv("WSPUSH_NODE", hex, 1);
    uv_signal_init(s->loop, &s->sigint);
    uv_signal_init(s->loop, &s->sigterm);
    s->sigint.data = s->sigterm.data = s;
    uv_signal_start(&s->sigint, on_signal, SIGINT);
    uv_signal_start(&s->sigterm, on_signal, SIGTERM);
    /* Validate the script once, in a child of its own, before anything
     * listens: a broken script is one error line and exit 1, not a restart
     * loop. */
    start_check(s, "start");
    while (!s->rc && !s->digest && !s->stopping && uv_run(s->loop, UV_RUN_ONCE))
        ;
    if (s->rc || !s->digest) {
        /* Nothing was started but the check, which has ended. */
        s->stopping = 1;
        for (unsigned i = 0; i < n; i++)
            uv_close((uv_handle_t *)&s->w[i].restart, NULL);
        if (!uv_is_closing((uv_handle_t *)&s->sigint)) {
            uv_close((uv_handle_t *)&s->sigint, NULL);
            uv_close((uv_handle_t *)&s->sigterm, NULL);
        }
        if (s->watching)
            ws_reload_close(&s->reload);
        ws_control_close(&s->ctl);
        ws_log_stop();
        uv_run(s->loop, UV_RUN_DEFAULT);
        uv_loop_close(s->loop);
        return s->rc ? s->rc : 0;
    }
    uv_run(s->loop, UV_RUN_DEFAULT);
    for (int i = 0; i < s->nlisten; i++)
        close(s->listen[i]);
    for (unsigned i = 0; i < n; i++) {
        if (s->mb_rx[i] >= 0)
            close(s->mb_rx[i]);
        if (s->mb_tx[i] >= 0)
            close(s->mb_tx[i]);
    }
    ws_tally_unmap(s->tally);
    if (s->tally_fd >= 0)
        close(s->tally_fd);
    free_files(s);
    ws_log_stop();
    uv_run(s->loop, UV_RUN_NOWAIT);
    if (uv_loop_close(s->loop) != 0)
        ws_log_warn("supervisor: event loop closed with live handles");
    if (!s->rc)
        ws_log_info("all %u workers stopped", n);
    return s->rc;
}
