/*
 * ring.h: socket sends batched through io_uring. A loop turn that writes to
 * many connections prepares one send per connection and submits them all in
 * one system call; on a loopback the sends usually complete during that call.
 * Reads stay with libuv. When the kernel refuses io_uring (old kernel,
 * seccomp, io_uring_disabled) ws_ring_new returns NULL and the caller writes
 * with plain writev.
 */
#ifndef WS_RING_H
#define WS_RING_H

#include <stddef.h>
#include <sys/socket.h>
#include <uv.h>

typedef struct ws_ring_s ws_ring_t;

/* Called once per send: res is the bytes sent (possibly fewer than asked,
 * never 0 for a non-empty send) or a negative errno (-ECANCELED after
 * ws_ring_cancel). */
typedef void (*ws_ring_cb)(void *req, int res);

/* NULL when io_uring is not available; the reason goes to err. */
ws_ring_t *ws_ring_new(uv_loop_t *loop, ws_ring_cb cb, char *err, size_t errlen);

/* Prepare a send of m's iovec to fd; req identifies it in the callback. m
 * and its iovec must stay valid until ws_ring_submit, the bytes until the
 * callback. A send never waits for the socket: what it cannot take at once
 * comes back as a short count or -EAGAIN. */
void ws_ring_send(ws_ring_t *r, int fd, const struct msghdr *m, void *req);

/* Submit what was prepared (no callback runs here). */
void ws_ring_submit(ws_ring_t *r);

/* Run the callbacks of what completed; they may prepare more sends. Returns
 * how many ran. */
int ws_ring_reap(ws_ring_t *r);

/* Ask the kernel to end req's send (its fd is about to close). Its callback
 * still runs, later, with the result or -ECANCELED. */
void ws_ring_cancel(ws_ring_t *r, void *req);

/* Wait for the sends still in flight (bounded), then release the ring (its
 * poll handle closes with the loop's next turn). */
void ws_ring_free(ws_ring_t *r);

#endif
