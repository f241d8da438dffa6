#include "log.h"

#include <stdarg.h>
#include <stdio.h>
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

void ws_log(ws_log_level_t level, const char *fmt, ...)
{
    if (level > current)
        return;
    char msg[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (sink) {
        sink(sink_ud, level, msg);
        return;
    }

    char stamp[32];
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &tm);

    /* Continuation lines are indented so a traceback reads as part of its
     * record. */
    char out[9000];
    size_t o = (size_t)snprintf(out, sizeof out, "%s.%03ldZ [%s] %s%s", stamp,
                                ts.tv_nsec / 1000000, names[level], prefix, *prefix ? " " : "");
    for (const char *p = msg; *p && o < sizeof out - 8; p++) {
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
}
