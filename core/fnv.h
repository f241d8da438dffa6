/*
 * fnv.h: FNV-1a, 64 bits: the hash of the topic tables, the address tables,
 * the broker's shard choice (other implementations compute it too: it is
 * part of the wire contract) and the script digest. Not for anything an
 * attacker may choose to collide with beyond a slower lookup.
 */
#ifndef WS_FNV_H
#define WS_FNV_H

#include <stddef.h>
#include <stdint.h>

#define WS_FNV_OFFSET 1469598103934665603ULL

/* h extended by p[0..n): start from WS_FNV_OFFSET, feed it piece by piece. */
static inline uint64_t ws_fnv_add(uint64_t h, const void *p, size_t n)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 1099511628211ULL;
    return h;
}

static inline uint64_t ws_fnv(const void *p, size_t n) { return ws_fnv_add(WS_FNV_OFFSET, p, n); }

#endif
