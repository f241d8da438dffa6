/* sha1.h: SHA-1 (FIPS 180-4), only for Sec-WebSocket-Accept. Pure. */
#ifndef WS_SHA1_H
#define WS_SHA1_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint32_t h[5];
    uint64_t total;   /* bytes hashed so far */
    uint8_t block[64];
    size_t used;      /* bytes in block */
} ws_sha1_t;

void ws_sha1_init(ws_sha1_t *s);
void ws_sha1_update(ws_sha1_t *s, const void *p, size_t n);
void ws_sha1_final(ws_sha1_t *s, uint8_t digest[20]);

#endif
