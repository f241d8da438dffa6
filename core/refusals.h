/*
 * refusals.h: requests turned away (403, 413, 429, 503...), logged once per
 * episode of one kind (status and reason): a warning when it starts, a count
 * when it ends (REFUSALS_QUIET_MS without one). A flood of refusals costs
 * two log lines, not one per client. Pure: the caller gives the time.
 */
#ifndef WS_REFUSALS_H
#define WS_REFUSALS_H

#include <stdint.h>

#define WS_REFUSALS_KINDS 8
#define WS_REFUSALS_QUIET_MS 5000

typedef struct {
    struct {
        int status;        /* 0: a free slot */
        uint64_t hash;     /* of the reason */
        char reason[64];
        uint64_t first, last, count;
    } kind[WS_REFUSALS_KINDS];
} ws_refusals_t;

/* One refusal at now (ms) of status for reason, to remote (for the log). */
void ws_refusals_note(ws_refusals_t *r, uint64_t now, int status, const char *reason,
                      const char *remote);
/* End the episodes quiet since WS_REFUSALS_QUIET_MS before now. */
void ws_refusals_tick(ws_refusals_t *r, uint64_t now);

#endif
