/*
 * log.h: leveled logging to stderr, one line per record, as text (multi-line
 * messages, such as Lua tracebacks, are indented under their first line) or
 * as one JSON object per line (--log-format json).
 *
 * Logging never blocks the loop. Records go out with non-blocking writes;
 * when stderr cannot take one (a stalled journald, a full pipe), it waits
 * whole in a bounded queue (WS_LOG_QUEUE_MAX bytes) written as stderr drains
 * (ws_log_start gives the loop that watches it). A record that does not fit
 * is dropped and counted; once the queue is empty again, one record says how
 * many were dropped. Records are never cut or interleaved.
 *
 * How stderr is made non-blocking without touching other processes: a
 * socket (a worker's line to its supervisor, journald's stream) is written
 * with MSG_DONTWAIT; a pipe or terminal is opened again through
 * /proc/self/fd/2, which gives this process its own open file description
 * to set O_NONBLOCK on (O_NONBLOCK on the shared one would surprise the
 * shell or the other processes writing there); a regular file is written as
 * it is (a file never says "not now").
 */
#ifndef WS_LOG_H
#define WS_LOG_H

#include <stddef.h>
#include <stdint.h>

#include "cli.h"

#define WS_LOG_QUEUE_MAX (1u << 20)

void ws_log_set_level(ws_log_level_t level);
ws_log_level_t ws_log_get_level(void);
/* Parse "error" | "warn" | "info" | "debug"; returns the level or -1. */
int ws_log_level_parse(const char *name);

/* Text lines (0) or one JSON object per line (1). */
void ws_log_set_json(int json);

/* This process is worker id: "[worker 2]" before every text record, and
 * "worker":2 in every JSON one. */
void ws_log_set_worker(unsigned id);

void ws_log(ws_log_level_t level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* A named value of a structured record (an access record). Text: msg
 * key=value..., strings quoted and escaped as in JSON; JSON: the fields are
 * members of the record's object. */
typedef struct {
    const char *key;
    const char *str; /* a string of len bytes, or NULL for the number */
    size_t len;
    double num;
    int frac;        /* digits after the point of num (0: an integer) */
} ws_log_field_t;

#define WS_LOG_STR(k, s, n) ((ws_log_field_t){.key = (k), .str = (s), .len = (n)})
#define WS_LOG_INT(k, v) ((ws_log_field_t){.key = (k), .num = (double)(v)})
#define WS_LOG_NUM(k, v, f) ((ws_log_field_t){.key = (k), .num = (v), .frac = (f)})

/* --access-log: path "-" sends access records to the log; any other path is
 * a file they are appended to (created 0640), refused when it is a pipe or a
 * socket (a reader that stalls would stall the loop; use "-" and the log's
 * own queue for those). 0, or -1 with a one-line message in err. SIGUSR1
 * (watched from ws_log_start on) opens the file again, for log rotation;
 * until then SIGUSR1 is ignored. */
int ws_log_access_open(const char *path, char *err, size_t errlen);
/* What SIGUSR1 also does once the file is open again (the supervisor passes
 * it on to its workers). */
void ws_log_on_reopen(void (*fn)(void *ud), void *ud);
/* An access record: "access" and fields, at info whatever the level. */
void ws_log_access(const ws_log_field_t *f, size_t n);

/* A record formatted by another process (a worker's, relayed by its
 * supervisor): out as it is, whole, through the same queue. */
void ws_log_relay(const char *rec, size_t len);

/* Watch stderr in loop when it cannot take a record; ws_log_stop before the
 * loop closes (what is still queued then gets up to a second at exit). */
struct uv_loop_s;
void ws_log_start(struct uv_loop_s *loop);
void ws_log_stop(void);

/* Records dropped since the process started (the queue was full). */
uint64_t ws_log_dropped(void);

/* Send records to sink instead of stderr (NULL: back to stderr); msg is the
 * record without time stamp or level. Returns the sink it replaces. Tests
 * (wspush.testing) capture the log this way. */
typedef void (*ws_log_sink_t)(void *ud, ws_log_level_t level, const char *msg);
ws_log_sink_t ws_log_set_sink(ws_log_sink_t sink, void *ud, void **old_ud);

/* "s" unless n is 1: "1 connection kept", "2 connections kept". */
#define WS_PLURAL(n) ((n) == 1 ? "" : "s")

#define ws_log_error(...) ws_log(WS_LOG_ERROR, __VA_ARGS__)
#define ws_log_warn(...) ws_log(WS_LOG_WARN, __VA_ARGS__)
#define ws_log_info(...) ws_log(WS_LOG_INFO, __VA_ARGS__)
#define ws_log_debug(...)                                                                          \
    do {                                                                                           \
        if (ws_log_get_level() >= WS_LOG_DEBUG)                                                    \
            ws_log(WS_LOG_DEBUG, __VA_ARGS__);                                                     \
    } while (0)

#endif
