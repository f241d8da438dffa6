#include "logq.h"

#include <stdlib.h>
#include <string.h>

#include "buf.h"

#define HDR 4

void ws_logq_init(ws_logq_t *q, size_t cap)
{
    memset(q, 0, sizeof *q);
    q->cap = cap;
}

void ws_logq_free(ws_logq_t *q)
{
    free(q->data);
    q->data = NULL;
    q->head = q->tail = q->off = 0;
}

static uint32_t rec_len(const ws_logq_t *q)
{
    uint32_t n;
    memcpy(&n, q->data + q->head, HDR);
    return n;
}

int ws_logq_push(ws_logq_t *q, const void *rec, size_t len)
{
    size_t need = HDR + len;
    if (len > UINT32_MAX || need > q->cap - (q->tail - q->head)) {
        q->dropped++;
        q->dropped_total++;
        return -1;
    }
    /* Storage only while something waits: a log that keeps up costs nothing. */
    if (!q->data)
        q->data = ws_malloc(q->cap);
    if (q->cap - q->tail < need) {
        memmove(q->data, q->data + q->head, q->tail - q->head);
        q->tail -= q->head;
        q->head = 0;
    }
    uint32_t n = (uint32_t)len;
    memcpy(q->data + q->tail, &n, HDR);
    memcpy(q->data + q->tail + HDR, rec, len);
    q->tail += need;
    return 0;
}

size_t ws_logq_peek(const ws_logq_t *q, const uint8_t **p)
{
    if (ws_logq_empty(q)) {
        *p = NULL;
        return 0;
    }
    *p = q->data + q->head + HDR + q->off;
    return rec_len(q) - q->off;
}

void ws_logq_advance(ws_logq_t *q, size_t n)
{
    if (ws_logq_empty(q))
        return;
    uint32_t len = rec_len(q);
    q->off += n;
    if (q->off < len)
        return;
    q->head += HDR + len;
    q->off = 0;
    if (ws_logq_empty(q)) {
        /* Drained: give the memory back until the next stall. */
        ws_logq_free(q);
    }
}

uint64_t ws_logq_take_dropped(ws_logq_t *q)
{
    uint64_t n = q->dropped;
    q->dropped = 0;
    return n;
}
