/*
 * logq.h: a bounded queue of whole log records waiting for a descriptor that
 * is not writable yet. Pure: no I/O; the caller writes what ws_logq_peek
 * shows and says with ws_logq_advance how much went out.
 *
 * A record is queued whole or not at all: when it does not fit in the room
 * left, it is dropped and counted. The head record may be written in pieces
 * (a pipe or a stream socket takes what it has room for); the rest of it is
 * always written before the next record begins, so nothing is interleaved
 * or cut.
 */
#ifndef WS_LOGQ_H
#define WS_LOGQ_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint8_t *data;    /* cap bytes: each record is a 4-byte length, then its bytes */
    size_t cap;
    size_t head, tail;/* the records are data[head..tail) */
    size_t off;       /* bytes of the head record written already */
    uint64_t dropped; /* records dropped since the last ws_logq_take_dropped */
    uint64_t dropped_total;
} ws_logq_t;

/* An empty queue holding at most cap bytes of records (and their lengths). */
void ws_logq_init(ws_logq_t *q, size_t cap);
void ws_logq_free(ws_logq_t *q);

/* Queue a record of len bytes: 0, or -1 when it does not fit (counted as dropped). */
int ws_logq_push(ws_logq_t *q, const void *rec, size_t len);

/* The unwritten bytes of the head record in *p; returns their count, 0 when empty. */
size_t ws_logq_peek(const ws_logq_t *q, const uint8_t **p);

/* n bytes of the head record (n <= what ws_logq_peek returned) were written. */
void ws_logq_advance(ws_logq_t *q, size_t n);

static inline int ws_logq_empty(const ws_logq_t *q) { return q->head == q->tail; }

/* The records dropped since the last call (the episode's count); resets it. */
uint64_t ws_logq_take_dropped(ws_logq_t *q);

#endif
