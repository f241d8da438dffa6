#include "hist.h"

#include <string.h>

void wb_hist_init(wb_hist_t *h)
{
    memset(h, 0, sizeof(*h));
}

static unsigned bucket_of(uint64_t v)
{
    if (v < WB_HIST_SUB)
        return (unsigned)v;
    unsigned e = 63u - (unsigned)__builtin_clzll(v); /* e >= 5 */
    unsigned mant = (unsigned)(v >> (e - 5)) & (WB_HIST_SUB - 1);
    return (e - 4) * WB_HIST_SUB + mant;
}

static uint64_t bucket_mid(unsigned b)
{
    if (b < WB_HIST_SUB)
        return b;
    unsigned e = b / WB_HIST_SUB + 4, mant = b % WB_HIST_SUB;
    uint64_t lo = ((uint64_t)(WB_HIST_SUB + mant)) << (e - 5);
    uint64_t width = (uint64_t)1 << (e - 5);
    return lo + width / 2;
}

void wb_hist_add(wb_hist_t *h, uint64_t ns)
{
    h->counts[bucket_of(ns)]++;
    h->total++;
    if (ns > h->max)
        h->max = ns;
}

uint64_t wb_hist_pct(const wb_hist_t *h, double p)
{
    if (h->total == 0)
        return 0;
    if (p >= 1.0)
        return h->max;
    /* The rank is 1-based: the median of 3 samples is the 2nd one. */
    uint64_t rank = (uint64_t)(p * (double)h->total) + 1;
    if (rank > h->total)
        rank = h->total;
    uint64_t seen = 0;
    for (unsigned b = 0; b < WB_HIST_BUCKETS; b++) {
        seen += h->counts[b];
        if (seen >= rank) {
            uint64_t mid = bucket_mid(b);
            return mid > h->max ? h->max : mid;
        }
    }
    return h->max;
}
