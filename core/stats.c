/* The built-in figures and their text format. */
#include "stats.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static ws_stats_t own;
ws_stats_t *ws_stats = &own;

void ws_stats_bind(ws_stats_t *b) { ws_stats = b ? b : &own; }

/* One row per figure; consecutive rows of one name are one family (its
 * label tells them apart). scale: the value is in 1/scale of the unit. */
typedef struct {
    ws_stat_t i;
    const char *name, *help;
    const char *label; /* label="value", or NULL */
    double scale;
} row_t;

#define C(i, n, h) {i, n, h, NULL, 0}
#define L(i, n, h, l) {i, n, h, l, 0}
#define REF(i, r) L(i, "wspush_upgrades_refused_total", "WebSocket upgrades refused, by reason.", "reason=\"" r "\"")
#define CLOSE(c) L(WS_STAT_CLOSE_FIRST + c - 1000, "wspush_connections_closed_total", \
                   "WebSocket connections closed, by close code (standard codes, then other).", \
                   "code=\"" #c "\"")
static const row_t rows[] = {
    C(WS_STAT_ACCEPTED, "wspush_connections_accepted_total", "Connections accepted (TCP or TLS)."),
    C(WS_STAT_CONN_REFUSED, "wspush_connections_refused_total",
      "Connections refused before any request (--max-tcp-per-ip, --accept-rate)."),
    C(WS_STAT_HTTP_REQUESTS, "wspush_http_requests_total", "HTTP requests read, upgrades included."),
    C(WS_STAT_OPENED, "wspush_connections_opened_total", "WebSocket connections opened."),
    REF(WS_STAT_REFUSED_HANDSHAKE, "handshake"),
    REF(WS_STAT_REFUSED_LIMIT, "limit"),
    REF(WS_STAT_REFUSED_ORIGIN, "origin"),
    REF(WS_STAT_REFUSED_ROUTE, "route"),
    REF(WS_STAT_REFUSED_HOOK, "upgrade_hook"),
    REF(WS_STAT_REFUSED_ERROR, "error"),
    REF(WS_STAT_REFUSED_TIMEOUT, "timeout"),
    CLOSE(1000), CLOSE(1001), CLOSE(1002), CLOSE(1003), CLOSE(1005), CLOSE(1006), CLOSE(1007),
    CLOSE(1008), CLOSE(1009), CLOSE(1010), CLOSE(1011), CLOSE(1012), CLOSE(1013), CLOSE(1014),
    CLOSE(1015),
    L(WS_STAT_CLOSE_OTHER, "wspush_connections_closed_total", NULL, "code=\"other\""),
    C(WS_STAT_MSGS_IN, "wspush_messages_received_total", "WebSocket data messages received."),
    C(WS_STAT_BYTES_IN, "wspush_messages_received_bytes_total",
      "Payload bytes of the messages received (after inflating)."),
    C(WS_STAT_MSGS_OUT, "wspush_messages_sent_total",
      "WebSocket data messages queued to a connection (sends and deliveries)."),
    C(WS_STAT_BYTES_OUT, "wspush_messages_sent_bytes_total",
      "Payload bytes of the messages sent (before compressing)."),
    C(WS_STAT_PUBLISHES, "wspush_publishes_total", "Publishes made by the script."),
    C(WS_STAT_DELIVERIES, "wspush_deliveries_total",
      "Messages queued to a subscriber by a publish (this server's or another's)."),
    C(WS_STAT_BP_DROPS, "wspush_backpressure_drops_total",
      "Sends that met a full queue under backpressure drop or drop_oldest."),
    C(WS_STAT_SLOW_CLOSES, "wspush_slow_consumer_closes_total",
      "Connections closed (1008) because their queue was full."),
    C(WS_STAT_LUA_ERRORS, "wspush_lua_errors_total", "Errors raised by the script's callbacks."),
    C(WS_STAT_LUA_TIMEOUTS, "wspush_lua_timeouts_total",
      "Callbacks stopped by the time budget (--lua-timeout)."),
    L(WS_STAT_TLS_DONE, "wspush_tls_handshakes_total", "TLS handshakes, by result.",
      "result=\"done\""),
    L(WS_STAT_TLS_FAILED, "wspush_tls_handshakes_total", NULL, "result=\"failed\""),
    C(WS_STAT_SERIES_REFUSED, "wspush_metrics_series_refused_total",
      "Script metric series not made: the series table was full."),
    {WS_STAT_IDLE_NS, "wspush_event_loop_idle_seconds_total",
     "Time the event loops waited for events (summed over workers).", NULL, 1e9},
    C(WS_STAT_BROKER_PUBLISHED, "wspush_broker_published_total", "Messages published to the broker."),
    C(WS_STAT_BROKER_PUBLISH_FAILED, "wspush_broker_publish_failed_total",
      "Publishes the broker did not take (its shard was down)."),
    C(WS_STAT_BROKER_RECEIVED, "wspush_broker_received_total", "Messages received from the broker."),
    C(WS_STAT_BROKER_GAPS, "wspush_broker_gaps_total", "Gaps seen in the broker's sequence."),
    C(WS_STAT_BROKER_RECONNECTS, "wspush_broker_reconnects_total",
      "Broker connections made again after one was lost."),
    C(WS_STAT_LOG_DROPPED, "wspush_log_records_dropped_total",
      "Log records dropped because the log (stderr) could not keep up."),
    C(WS_STAT_RELAYED, "wspush_worker_relayed_total", "Publishes sent to the other workers."),
    C(WS_STAT_RELAY_DROPPED, "wspush_worker_relay_dropped_total",
      "Publishes to another worker dropped because it fell behind."),
    C(WS_STAT_OPEN, "wspush_connections_open", "WebSocket connections open."),
    C(WS_STAT_CONNS, "wspush_connections", "Connections: HTTP, WebSocket and closing."),
    C(WS_STAT_LUA_BYTES, "wspush_lua_heap_bytes", "Bytes the Lua heaps hold."),
    C(WS_STAT_MEM_BYTES, "wspush_memory_counted_bytes", "Memory that --max-memory counts."),
    C(WS_STAT_RSS_BYTES, "wspush_resident_memory_bytes",
      "Resident memory of the serving processes (summed over workers)."),
    C(WS_STAT_BROKER_SHARDS, "wspush_broker_shards", "Broker shards configured (per worker, summed)."),
    C(WS_STAT_BROKER_UP, "wspush_broker_shards_connected",
      "Broker shard connections up (per worker, summed)."),
    C(WS_STAT_WORKERS, "wspush_workers", "Processes serving (1 without --workers)."),
};

void ws_stats_value(ws_buf_t *out, double v)
{
    char s[40];
    int n;
    if (isnan(v))
        n = snprintf(s, sizeof s, "NaN");
    else if (isinf(v))
        n = snprintf(s, sizeof s, v > 0 ? "+Inf" : "-Inf");
    else if (v == floor(v) && fabs(v) < 9007199254740992.0)
        n = snprintf(s, sizeof s, "%.0f", v);
    else if ((n = snprintf(s, sizeof s, "%.15g", v)) > 0 && strtod(s, NULL) != v)
        n = snprintf(s, sizeof s, "%.17g", v); /* the shortest that reads back the same */
    ws_buf_append(out, s, (size_t)n);
}

void ws_stats_render(const ws_stats_t *v, ws_buf_t *out)
{
    const char *prev = NULL;
    char line[320];
    for (size_t r = 0; r < sizeof rows / sizeof *rows; r++) {
        const row_t *w = &rows[r];
        if (!prev || strcmp(prev, w->name) != 0) {
            int n = snprintf(line, sizeof line, "# HELP %s %s\n# TYPE %s %s\n", w->name, w->help,
                             w->name, w->i < WS_STAT_COUNTERS ? "counter" : "gauge");
            ws_buf_append(out, line, (size_t)n);
            prev = w->name;
        }
        ws_buf_append_str(out, w->name);
        if (w->label) {
            ws_buf_append(out, "{", 1);
            ws_buf_append_str(out, w->label);
            ws_buf_append(out, "}", 1);
        }
        ws_buf_append(out, " ", 1);
        uint64_t x = v->v[w->i];
        if (w->scale) {
            ws_stats_value(out, (double)x / w->scale);
        } else {
            int n = snprintf(line, sizeof line, "%llu", (unsigned long long)x);
            ws_buf_append(out, line, (size_t)n);
        }
        ws_buf_append(out, "\n", 1);
    }
}
