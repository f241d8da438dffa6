/* Latency histogram for the load generator: log-linear buckets (32 per power of two, so any
 * reported percentile is within about 3 % of the true value), fixed size, no allocation. */
#ifndef WB_HIST_H
#define WB_HIST_H

#include <stdint.h>

#define WB_HIST_SUB 32
#define WB_HIST_BUCKETS (64 * WB_HIST_SUB)

typedef struct {
    uint64_t counts[WB_HIST_BUCKETS];
    uint64_t total;
    uint64_t max;
} wb_hist_t;

/* Clears every counter. */
void wb_hist_init(wb_hist_t *h);

/* Records one sample of `ns` nanoseconds. */
void wb_hist_add(wb_hist_t *h, uint64_t ns);

/* Returns the value (ns, bucket midpoint) at fraction `p` (0.5 for the median) of the samples,
 * or 0 when the histogram is empty. p >= 1 returns the exact maximum. */
uint64_t wb_hist_pct(const wb_hist_t *h, double p);

#endif
