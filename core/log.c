#define _GNU_SOURCE /* O_CLOEXEC, MSG_NOSIGNAL */
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "buf.h"
#include "json.h"
#include "logq.h"

static ws_log_level_t current = WS_LOG_INFO;
static const char *names[] = {"error", "warn", "info", "debug"};
static ws_log_sink_t sink;
static void *sink_ud;
static char prefix[32];
static unsigned worker;
static int json;

/* Where records go, and what waits for it. */
enum { OUT_UNSET, OUT_SOCKET, OUT_OWN, OUT_PLAIN };
static struct {
    int kind;
    int fd;
    ws_logq_t q;
    uv_poll_t poll;
    int have_poll, polling, flushing;
} out;

/* --access-log FILE: its descriptor (-1: access records go to the log). */
static struct {
    int fd;
    char *path;
    uv_signal_t sigusr1;
    int have_signal;
    void (*on_reopen)(void *ud);
    void *ud;
} acc = {.fd = -1};

/* How long an exiting process waits for a stalled stderr to take what is queued. */
#define EXIT_WAIT_MS 1000

void ws_log_set_json(int on) { json = on; }

void ws_log_set_worker(unsigned id)
{
    worker = id;
    snprintf(prefix, sizeof prefix, "[worker %u]", id);
}

ws_log_sink_t ws_log_set_sink(ws_log_sink_t s, void *ud, void **old_ud)
{
    ws_log_sink_t old = sink;
    if (old_ud)
        *old_ud = sink_ud;
    sink = s;
    sink_ud = ud;
    return old;
}

void ws_log_set_level(ws_log_level_t level) { current = level; }
ws_log_level_t ws_log_get_level(void) { return current; }

int ws_log_level_parse(const char *name)
{
    for (int i = 0; i < 4; i++)
        if (strcmp(name, names[i]) == 0)
            return i;
    return -1;
}

uint64_t ws_log_dropped(void) { return out.q.dropped_total; }

/* ---- the output ---- */

static void flush(void);

static void exit_flush(void)
{
    uint64_t end = uv_hrtime() / 1000000 + EXIT_WAIT_MS;
    for (;;) {
        flush();
        uint64_t now = uv_hrtime() / 1000000;
        if (ws_logq_empty(&out.q) || now >= end)
            return;
        struct pollfd p = {.fd = out.fd, .events = POLLOUT};
        poll(&p, 1, (int)(end - now));
    }
}

static void open_output(void)
{
    struct stat st;
    out.kind = OUT_PLAIN;
    out.fd = 2;
    ws_logq_init(&out.q, WS_LOG_QUEUE_MAX);
    if (fstat(2, &st) != 0)
        return;
    if (S_ISSOCK(st.st_mode)) {
        out.kind = OUT_SOCKET;
    } else if (S_ISFIFO(st.st_mode) || S_ISCHR(st.st_mode)) {
        /* Our own open file description of the same pipe or terminal: its
         * O_NONBLOCK is ours alone. Without /proc, writes stay blocking. */
        int fd = open("/proc/self/fd/2", O_WRONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
        if (fd >= 0) {
            out.kind = OUT_OWN;
            out.fd = fd;
        }
    }
    if (out.kind != OUT_PLAIN)
        atexit(exit_flush);
}

static ssize_t raw_write(const void *p, size_t n)
{
    ssize_t r;
    do
        r = out.kind == OUT_SOCKET ? send(out.fd, p, n, MSG_DONTWAIT | MSG_NOSIGNAL)
                                   : write(out.fd, p, n);
    while (r < 0 && errno == EINTR);
    return r;
}

static int would_block(void) { return errno == EAGAIN || errno == EWOULDBLOCK; }

static void on_writable(uv_poll_t *h, int status, int events)
{
    (void)h, (void)status, (void)events;
    flush();
}

static void watch(int on)
{
    if (!out.have_poll || out.polling == on)
        return;
    out.polling = on;
    if (on)
        uv_poll_start(&out.poll, UV_WRITABLE, on_writable);
    else
        uv_poll_stop(&out.poll);
}

/* Write what waits, as far as stderr takes it. Once all is out, say how
 * many records could not wait. */
static void flush(void)
{
    if (out.flushing)
        return;
    out.flushing = 1;
    const uint8_t *p;
    size_t n;
    while ((n = ws_logq_peek(&out.q, &p)) > 0) {
        ssize_t r = raw_write(p, n);
        if (r < 0 && would_block())
            break;
        /* A broken stderr (EPIPE): nobody will read this record. */
        ws_logq_advance(&out.q, r < 0 ? n : (size_t)r);
    }
    out.flushing = 0;
    if (!ws_logq_empty(&out.q)) {
        watch(1);
        return;
    }
    watch(0);
    uint64_t dropped = ws_logq_take_dropped(&out.q);
    if (dropped)
        ws_log_warn("%llu log record%s dropped: the log could not keep up",
                    (unsigned long long)dropped, dropped == 1 ? " was" : "s were");
}

static void emit(const char *rec, size_t len)
{
    if (out.kind == OUT_UNSET)
        open_output();
    if (!ws_logq_empty(&out.q))
        flush();
    if (!ws_logq_empty(&out.q)) {
        ws_logq_push(&out.q, rec, len);
        return;
    }
    ssize_t r = raw_write(rec, len);
    if (r == (ssize_t)len || (r < 0 && !would_block()))
        return;
    /* The rest waits, and goes before any other record. */
    ws_logq_push(&out.q, rec, len);
    if (r > 0)
        ws_logq_advance(&out.q, (size_t)r);
    watch(1);
}

void ws_log_relay(const char *rec, size_t len) { emit(rec, len); }

/* ---- the access log's file ---- */

static int open_access(const char *path, char *err, size_t errlen)
{
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY, 0640);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        snprintf(err, errlen, "--access-log %s: %s", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    if (S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode)) {
        snprintf(err, errlen, "--access-log %s: a pipe or a socket could stall the server; "
                 "use --access-log - (the log, which never waits)", path);
        close(fd);
        return -1;
    }
    return fd;
}

int ws_log_access_open(const char *path, char *err, size_t errlen)
{
    if (strcmp(path, "-") == 0)
        return 0;
    int fd = open_access(path, err, errlen);
    if (fd < 0)
        return -1;
    acc.fd = fd;
    acc.path = ws_strndup(path, strlen(path));
    /* Rotation's signal must not kill a process that has not watched it yet. */
    signal(SIGUSR1, SIG_IGN);
    return 0;
}

void ws_log_on_reopen(void (*fn)(void *ud), void *ud)
{
    acc.on_reopen = fn;
    acc.ud = ud;
}

/* logrotate renamed the file (or removed it): append to a new one at the
 * path. The descriptor keeps its number; on failure the old file stays. */
static void on_sigusr1(uv_signal_t *h, int signum)
{
    (void)h, (void)signum;
    char err[512];
    int fd = open_access(acc.path, err, sizeof err);
    if (fd < 0) {
        ws_log_error("cannot reopen the access log (the old file is kept): %s", err);
    } else {
        dup2(fd, acc.fd);
        close(fd);
        ws_log_info("SIGUSR1: reopened the access log %s", acc.path);
    }
    if (acc.on_reopen)
        acc.on_reopen(acc.ud);
}

/* A line to the access file: plain write(2) (a regular file does not make
 * a writer wait for a reader); O_APPEND keeps the workers' lines whole. */
static void write_access(const uint8_t *p, size_t n)
{
    while (n) {
        ssize_t r = write(acc.fd, p, n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return;
        p += r;
        n -= (size_t)r;
    }
}

void ws_log_start(struct uv_loop_s *loop)
{
    if (out.kind == OUT_UNSET)
        open_output();
    if (acc.fd >= 0 && !acc.have_signal && uv_signal_init(loop, &acc.sigusr1) == 0) {
        acc.have_signal = 1;
        uv_signal_start(&acc.sigusr1, on_sigusr1, SIGUSR1);
        uv_unref((uv_handle_t *)&acc.sigusr1);
    }
    if (out.have_poll || out.kind == OUT_PLAIN)
        return;
    if (uv_poll_init(loop, &out.poll, out.fd) != 0)
        return;
    /* Waiting for stderr must not keep a stopping server alive. */
    uv_unref((uv_handle_t *)&out.poll);
    out.have_poll = 1;
    out.polling = 0;
    if (!ws_logq_empty(&out.q))
        watch(1);
}

void ws_log_stop(void)
{
    if (acc.have_signal) {
        acc.have_signal = 0;
        uv_close((uv_handle_t *)&acc.sigusr1, NULL);
    }
    if (!out.have_poll)
        return;
    out.have_poll = out.polling = 0;
    uv_close((uv_handle_t *)&out.poll, NULL);
}

/* ---- records ---- */

/* A record's longest message: a Lua traceback fits; one datagram to the
 * supervisor holds it with room for the indentation. */
#define MSG_MAX (24 * 1024)

static void put_fields(ws_buf_t *b, int as_json, const ws_log_field_t *f, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char num[64];
        if (as_json) {
            ws_buf_append(b, ",", 1);
            ws_json_quote(b, f[i].key, strlen(f[i].key));
            ws_buf_append(b, ":", 1);
        } else {
            ws_buf_append(b, " ", 1);
            ws_buf_append_str(b, f[i].key);
            ws_buf_append(b, "=", 1);
        }
        if (f[i].str) {
            ws_json_quote(b, f[i].str, f[i].len);
        } else {
            snprintf(num, sizeof num, "%.*f", f[i].frac, f[i].num);
            ws_buf_append_str(b, num);
        }
    }
}

static void record(ws_log_level_t level, const char *msg, const ws_log_field_t *f, size_t n,
                   int access)
{
    ws_buf_t b;
    ws_buf_init(&b);
    if (sink) {
        /* The text form without stamp or level, as tests read it. */
        ws_buf_append_str(&b, msg);
        put_fields(&b, 0, f, n);
        ws_buf_append(&b, "", 1);
        sink(sink_ud, level, (const char *)b.data);
        ws_buf_free(&b);
        return;
    }
    char stamp[48];
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t sl = strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(stamp + sl, sizeof stamp - sl, ".%03ldZ", ts.tv_nsec / 1000000);
    size_t mlen = strlen(msg);
    if (json) {
        char head[128];
        int hl = snprintf(head, sizeof head, "{\"ts\":\"%s\",\"level\":\"%s\"", stamp, names[level]);
        ws_buf_reserve(&b, mlen + 256);
        ws_buf_append(&b, head, (size_t)hl);
        if (worker) {
            hl = snprintf(head, sizeof head, ",\"worker\":%u", worker);
            ws_buf_append(&b, head, (size_t)hl);
        }
        ws_buf_append_str(&b, ",\"msg\":");
        ws_json_quote(&b, msg, mlen);
        put_fields(&b, json, f, n);
        ws_buf_append(&b, "}\n", 2);
    } else {
        ws_buf_reserve(&b, mlen + 128);
        ws_buf_append_str(&b, stamp);
        ws_buf_append_str(&b, " [");
        ws_buf_append_str(&b, names[level]);
        ws_buf_append_str(&b, "] ");
        if (*prefix) {
            ws_buf_append_str(&b, prefix);
            ws_buf_append(&b, " ", 1);
        }
        /* Continuation lines are indented so a traceback reads as part of
         * its record. */
        for (const char *p = msg, *nl; *p; p = nl + 1) {
            nl = strchr(p, '\n');
            if (!nl) {
                ws_buf_append_str(&b, p);
                break;
            }
            ws_buf_append(&b, p, (size_t)(nl - p) + 1);
            if (nl[1])
                ws_buf_append(&b, "  ", 2);
        }
        put_fields(&b, json, f, n);
        ws_buf_append(&b, "\n", 1);
    }
    /* One write per record: a worker's stderr is a datagram socket to its
     * supervisor, which passes each record on whole. */
    if (access && acc.fd >= 0)
        write_access(b.data, b.len);
    else
        emit((const char *)b.data, b.len);
    ws_buf_free(&b);
}

void ws_log_access(const ws_log_field_t *f, size_t n) { record(WS_LOG_INFO, "access", f, n, 1); }

void ws_log(ws_log_level_t level, const char *fmt, ...)
{
    if (level > current)
        return;
    char small[8192], *msg = small;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n >= (int)sizeof small) {
        size_t len = n < MSG_MAX ? (size_t)n + 1 : MSG_MAX + 64;
        msg = malloc(len);
        if (!msg) {
            msg = small;
        } else {
            va_start(ap, fmt);
            vsnprintf(msg, n < MSG_MAX ? len : MSG_MAX + 1, fmt, ap);
            va_end(ap);
            if (n >= MSG_MAX) /* say so rather than cut silently */
                snprintf(msg + MSG_MAX, 64, " [cut: %d bytes in all]", n);
        }
    }
    record(level, msg, NULL, 0, 0);
    if (msg != small)
        free(msg);
}
