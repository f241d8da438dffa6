/*
 * memio.h: an in-memory transport, for tests and wspush.testing. The test
 * plays the peer: it feeds bytes (they arrive as reads), reads what the
 * owner wrote, holds writes to act as a peer that does not read, and ends
 * the stream. Completions and the close arrive from ws_io_run, as they
 * would from a socket on a later loop turn. Loop thread only.
 *
 * The ws_memio_t outlives its transport: after the owner closed it, the
 * test can still read the output. ws_memio_free releases it; if the owner
 * has not closed it yet, the peer ends the stream and the memory goes once
 * the owner has closed it.
 */
#ifndef WS_MEMIO_H
#define WS_MEMIO_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "transport.h"

typedef struct ws_memio_s ws_memio_t;

/* A transport whose peer is ip:port (an IPv4 or IPv6 literal). */
ws_memio_t *ws_memio_new(ws_io_t *io, const char *ip, int port);
ws_transport_t *ws_memio_transport(ws_memio_t *m);
void ws_memio_free(ws_memio_t *m);

/* The peer sends data: delivered now, or kept while the owner is paused. */
void ws_memio_feed(ws_memio_t *m, const void *data, size_t len);
/* The peer ends its side (the owner sees on_end(UV_EOF) from ws_io_run). */
void ws_memio_end(ws_memio_t *m);

/* What the owner wrote and the peer has not taken yet. */
const uint8_t *ws_memio_output(const ws_memio_t *m, size_t *len);
/* The peer takes the first n bytes of the output. */
void ws_memio_consume(ws_memio_t *m, size_t n);

/* hold != 0: writes stay in flight (the peer does not read); 0: they
 * complete again, those held first. */
void ws_memio_hold(ws_memio_t *m, int hold);

/* The owner shut its side after its last write. */
int ws_memio_shut(const ws_memio_t *m);
/* The owner closed the transport (its on_close has run). */
int ws_memio_closed(const ws_memio_t *m);
/* The owner is reading (not paused). */
int ws_memio_reading(const ws_memio_t *m);
/* It only watches for the peer's end (WS_READ_WATCH): fed bytes are stashed. */
int ws_memio_watching(const ws_memio_t *m);

#endif
