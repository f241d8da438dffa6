#include "refusals.h"

#include <stdio.h>
#include <string.h>

#include "fnv.h"

#include "log.h"

static void end(ws_refusals_t *r, int i)
{
    if (r->kind[i].count > 1)
        ws_log_warn("refused %llu requests with %d %s over %.1f s (the episode is over)",
                    (unsigned long long)r->kind[i].count, r->kind[i].status, r->kind[i].reason,
                    (double)(r->kind[i].last - r->kind[i].first) / 1000);
    r->kind[i].status = 0;
}

void ws_refusals_note(ws_refusals_t *r, uint64_t now, int status, const char *reason,
                      const char *remote)
{
    uint64_t h = ws_fnv(reason, strlen(reason));
    int free_slot = -1, oldest = 0;
    for (int i = 0; i < WS_REFUSALS_KINDS; i++) {
        if (r->kind[i].status == status && r->kind[i].hash == h) {
            r->kind[i].count++;
            r->kind[i].last = now;
            return;
        }
        if (!r->kind[i].status && free_slot < 0)
            free_slot = i;
        if (r->kind[i].status && r->kind[i].last < r->kind[oldest].last)
            oldest = i;
    }
    /* More kinds at once than slots: the quietest one ends early. */
    if (free_slot < 0) {
        end(r, oldest);
        free_slot = oldest;
    }
    r->kind[free_slot].status = status;
    r->kind[free_slot].hash = h;
    snprintf(r->kind[free_slot].reason, sizeof r->kind[free_slot].reason, "%s", reason);
    r->kind[free_slot].first = r->kind[free_slot].last = now;
    r->kind[free_slot].count = 1;
    ws_log_warn("refusing: %d %s (first: %s); more of these are counted until they stop", status,
                reason, remote && *remote ? remote : "?");
}

void ws_refusals_tick(ws_refusals_t *r, uint64_t now)
{
    for (int i = 0; i < WS_REFUSALS_KINDS; i++)
        if (r->kind[i].status && now - r->kind[i].last >= WS_REFUSALS_QUIET_MS)
            end(r, i);
}
