/* The sampled figures. */
#include "gauges.h"

#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

#include "broker.h"
#include "log.h"
#include "mem.h"
#include "stats.h"

void ws_gauges_init(uv_loop_t *loop) { uv_loop_configure(loop, UV_METRICS_IDLE_TIME); }

/* Resident bytes from /proc/self/statm (0 where there is none). */
static uint64_t rss(void)
{
    static long page;
    if (!page)
        page = sysconf(_SC_PAGESIZE);
    int fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    char b[128];
    ssize_t n = read(fd, b, sizeof b - 1);
    close(fd);
    if (n <= 0)
        return 0;
    b[n] = 0;
    unsigned long size, res;
    if (sscanf(b, "%lu %lu", &size, &res) != 2)
        return 0;
    return (uint64_t)res * (uint64_t)page;
}

void ws_gauges_sample(ws_hub_t *h)
{
    uint64_t *v = ws_stats->v;
    v[WS_STAT_CONNS] = h->nconns;
    v[WS_STAT_LUA_BYTES] = ws_mem_used(WS_MEM_LUA);
    v[WS_STAT_MEM_BYTES] = ws_mem_total();
    v[WS_STAT_RSS_BYTES] = rss();
    v[WS_STAT_IDLE_NS] = h->loop ? uv_metrics_idle_time(h->loop) : 0;
    v[WS_STAT_LOG_DROPPED] = ws_log_dropped();
    v[WS_STAT_WORKERS] = 1;
    if (h->tally) {
        ws_tally_figures_t f;
        ws_tally_figures(h->tally, ws_tally_worker(h->tally), &f);
        v[WS_STAT_RELAYED] = f.relayed;
        v[WS_STAT_RELAY_DROPPED] = f.dropped;
    }
    if (h->broker) {
        ws_broker_stats_t b;
        ws_broker_stats(h->broker, &b);
        v[WS_STAT_BROKER_PUBLISHED] = b.published;
        v[WS_STAT_BROKER_PUBLISH_FAILED] = b.publish_failed;
        v[WS_STAT_BROKER_RECEIVED] = b.received;
        v[WS_STAT_BROKER_GAPS] = b.gaps;
        v[WS_STAT_BROKER_RECONNECTS] = b.reconnects;
        v[WS_STAT_BROKER_SHARDS] = b.shards;
        v[WS_STAT_BROKER_UP] = b.up;
    }
}
