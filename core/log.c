#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static ws_log_level_t current = WS_LOG_INFO;
static const char *names[] = {"error", "warn", "info", "debug"};
static ws_log_sink_t sink;
static void *sink_ud;
static char prefix[32];

void ws_log_set_name(const char *n) { snprintf(prefix, sizeof prefix, "%s", n ? n : ""); }

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

/* A record's longest message: a Lua traceback fits; one datagram to the
 * supervisor holds it with room for the indentation. */
#define MSG_MAX (24 * 1024)

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
    if (sink) {
        sink(sink_ud, level, msg);
        if (msg != small)
            free(msg);
        return;
    }

    char stamp[32];
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &tm);

    /* Continuation lines are indented so a traceback reads as part of its
     * record: at most 2 more bytes per byte. */
    size_t mlen = strlen(msg), cap = 2 * mlen + 128;
    char stack[9000], *out = cap <= sizeof stack ? stack : malloc(cap);
    if (!out) {
        out = stack;
        cap = sizeof stack;
    }
    size_t o = (size_t)snprintf(out, cap, "%s.%03ldZ [%s] %s%s", stamp, ts.tv_nsec / 1000000,
                                names[level], prefix, *prefix ? " " : "");
    for (const char *p = msg; *p && o < cap - 8; p++) {
        out[o++] = *p;
        if (*p == '\n' && p[1]) {
            out[o++] = ' ';
            out[o++] = ' ';
        }
    }
    out[o++] = '\n';
    /* One write per record: a worker's stderr is a datagram socket to its
     * supervisor, which passes each record on whole. */
    for (size_t w = 0; w < o;) {
        ssize_t r = write(2, out + w, o - w);
        if (r <= 0)
            break;
        w += (size_t)r;
    }
    if (out != stack)
        free(out);
    if (msg != small)
        free(msg);
}
