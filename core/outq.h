/*
 * outq.h: a connection's outbound queue, the write side of conn.c (not a
 * public interface: conn.c and pubsub go through conn.h).
 */
#ifndef WS_OUTQ_H
#define WS_OUTQ_H

#include <stddef.h>

#include "buf.h"

typedef struct ws_conn_s ws_conn_t;

/* Queue a chunk (a reference is taken over: the caller's is the queue's now). */
void ws__outq_push(ws_conn_t *c, ws_chunk_t *k);
/* Queue raw bytes (HTTP responses). */
void ws__outq_raw(ws_conn_t *c, const void *data, size_t len);
/* Queue one whole frame; op may carry WS_FRAME_RSV1. */
void ws__outq_frame(ws_conn_t *c, unsigned op, const void *data, size_t len);
/* Apply the backpressure policy before queueing a data frame of n bytes:
 * 0 when it may be queued, WS_EFULL when the policy refused it. */
int ws__outq_make_room(ws_conn_t *c, size_t n);
/* The server's ring finished a send of ours (its ws_ring_cb). */
void ws__outq_sent(void *req, int res);
/* The connection is closing: end a ring send still in flight. */
void ws__outq_cancel(ws_conn_t *c);
/* Free the pool of write requests (the server is quiet). */
void ws__outq_release_pool(void);
/* Release everything queued (the connection is being freed). */
void ws__outq_free(ws_conn_t *c);
/* Release the queue's array when nothing is queued or being written.
 * Returns 1 if there was one to release. */
int ws__outq_trim(ws_conn_t *c);

#endif
