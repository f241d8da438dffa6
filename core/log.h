/*
 * log.h: leveled logging to stderr, one line per record (multi-line messages,
 * such as Lua tracebacks, are indented under their first line).
 */
#ifndef WS_LOG_H
#define WS_LOG_H

#include "cli.h"

void ws_log_set_level(ws_log_level_t level);
ws_log_level_t ws_log_get_level(void);
/* Parse "error" | "warn" | "info" | "debug"; returns the level or -1. */
int ws_log_level_parse(const char *name);

/* A name put before every record ("[worker 2]"); "" for none. */
void ws_log_set_name(const char *name);

void ws_log(ws_log_level_t level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

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
