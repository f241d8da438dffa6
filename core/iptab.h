/*
 * iptab.h: connections per client address, for --max-per-ip. An open-addressing
 * hash of address strings to counts; entries disappear when their count drops
 * to zero. Pure: no I/O.
 */
#ifndef WS_IPTAB_H
#define WS_IPTAB_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    char ip[48];
    uint32_t count; /* 0 = free slot */
    uint32_t tomb;  /* 1 = deleted (keeps probe chains intact) */
} ws_ipent_t;

typedef struct {
    ws_ipent_t *slots;
    size_t cap;   /* power of two */
    size_t used;  /* live + tombstones */
} ws_iptab_t;

void ws_iptab_init(ws_iptab_t *t);
void ws_iptab_free(ws_iptab_t *t);
/* Current count for ip. */
uint32_t ws_iptab_count(const ws_iptab_t *t, const char *ip);
/* Add one for ip; returns the new count. */
uint32_t ws_iptab_inc(ws_iptab_t *t, const char *ip);
/* Remove one for ip (no-op when absent). */
void ws_iptab_dec(ws_iptab_t *t, const char *ip);

#endif
