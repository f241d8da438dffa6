/*
 * mailbox.h: publishes between the workers of one server. Every worker has
 * a mailbox, a unix datagram socket pair made by the supervisor: the worker
 * reads the receiving end; every other worker holds the sending end. The
 * kernel keeps each sender's datagrams whole and in order, so one message
 * from one worker arrives once and in its publish order; a message larger
 * than one datagram goes as fragments that the receiver joins per sender.
 *
 * The channel is bounded twice: the socket's buffer, then a queue per
 * destination of at most max_pending bytes, written out when the socket
 * takes more. A message that would pass that bound is dropped whole for
 * that destination, counted, and logged once per episode. Loop thread only.
 */
#ifndef WS_MAILBOX_H
#define WS_MAILBOX_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct ws_mailbox_s ws_mailbox_t;

/* A whole message from another worker. */
typedef void (*ws_mailbox_deliver_cb)(void *ud, const char *topic, size_t tlen, unsigned op,
                                      const void *data, size_t dlen);

/* Worker self (1..n) of n: rx is its mailbox's receiving end, tx[i] the
 * sending end of worker i+1's (tx[self-1] is not used). The mailbox owns
 * the descriptors. */
ws_mailbox_t *ws_mailbox_new(uv_loop_t *loop, unsigned self, unsigned n, int rx, const int *tx,
                             size_t max_pending, ws_mailbox_deliver_cb cb, void *ud);

/* Deliver what has arrived now (at most a few thousand messages), without
 * waiting for the loop: a worker does this before it publishes, so that a
 * message another worker published before this one (and, say, answered an
 * HTTP request about) reaches this worker's subscribers first. */
void ws_mailbox_receive(ws_mailbox_t *m);

/* Send one message to every other worker. */
void ws_mailbox_send(ws_mailbox_t *m, const char *topic, size_t tlen, unsigned op,
                     const void *data, size_t dlen);

/* Messages sent (per destination), received, and dropped (per destination). */
void ws_mailbox_counts(const ws_mailbox_t *m, uint64_t *sent, uint64_t *received,
                       uint64_t *dropped);

/* Stop; handles close on the next loop turn, then m is freed. */
void ws_mailbox_close(ws_mailbox_t *m);

#endif
