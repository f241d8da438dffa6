/* Socket sends through io_uring, batched per loop turn (see ring.h).
 *
 * Why: on these machines a system call costs more than the loopback TCP work
 * of a small send (page-table isolation, paravirtual interrupts), and a
 * pipelined server makes one send per connection per turn. Submitting a
 * turn's sends together pays the entry once. Completions that come later (a
 * send the socket could not take at once) wake the loop through a uv_poll on
 * the ring's descriptor. */
#include "ring.h"

#include <errno.h>
#include <liburing.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "buf.h"
#include "log.h"

#define RING_SQ 256
#define RING_CQ 4096
/* user_data of cancel requests: sends carry pointers, never this value. */
#define CANCEL_TAG ((uint64_t)1)

struct ws_ring_s {
    uv_poll_t poll;     /* first: the close callback gets the ring's address */
    struct io_uring ring;
    ws_ring_cb cb;
    size_t inflight;    /* sends whose callback has not run */
    int reaping;        /* ws_ring_reap is running: a nested call would reorder callbacks */
};

static void submit(ws_ring_t *r)
{
    int rc = io_uring_submit(&r->ring);
    /* -EBUSY/-EAGAIN leave the entries in the queue: the next submit retries. */
    if (rc < 0 && rc != -EBUSY && rc != -EAGAIN && rc != -EINTR)
        ws_log_error("io_uring submit: %s", strerror(-rc));
}

static struct io_uring_sqe *sqe_get(ws_ring_t *r)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&r->ring);
    if (!sqe) {
        /* The queue is full: hand it to the kernel, which frees every entry. */
        submit(r);
        sqe = io_uring_get_sqe(&r->ring);
        if (!sqe) {
            ws_log_error("io_uring: the submission queue stays full");
            abort();
        }
    }
    return sqe;
}

int ws_ring_reap(ws_ring_t *r)
{
    struct io_uring_cqe *cqe;
    int n = 0;
    if (r->reaping)
        return 0;
    r->reaping = 1;
    while (io_uring_peek_cqe(&r->ring, &cqe) == 0) {
        uint64_t tag = io_uring_cqe_get_data64(cqe);
        int res = cqe->res;
        io_uring_cqe_seen(&r->ring, cqe);
        if (tag == CANCEL_TAG)
            continue;
        r->inflight--;
        n++;
        r->cb((void *)(uintptr_t)tag, res);
    }
    r->reaping = 0;
    return n;
}

static void on_poll(uv_poll_t *h, int status, int events)
{
    ws_ring_reap((ws_ring_t *)h);
}

ws_ring_t *ws_ring_new(uv_loop_t *loop, ws_ring_cb cb, char *err, size_t errlen)
{
    ws_ring_t *r = ws_calloc(1, sizeof *r);
    struct io_uring_params p;
    memset(&p, 0, sizeof p);
    p.flags = IORING_SETUP_CQSIZE;
    p.cq_entries = RING_CQ;
    int rc = io_uring_queue_init_params(RING_SQ, &r->ring, &p);
    if (rc < 0) {
        snprintf(err, errlen, "io_uring unavailable: %s", strerror(-rc));
        free(r);
        return NULL;
    }
    /* Without NODROP a burst of completions over RING_CQ would be lost. */
    if (!(p.features & IORING_FEAT_NODROP)) {
        snprintf(err, errlen, "io_uring too old (no IORING_FEAT_NODROP)");
        io_uring_queue_exit(&r->ring);
        free(r);
        return NULL;
    }
    r->cb = cb;
    uv_poll_init(loop, &r->poll, r->ring.ring_fd);
    uv_poll_start(&r->poll, UV_READABLE, on_poll);
    /* Sends in flight belong to connections, which keep the loop alive. */
    uv_unref((uv_handle_t *)&r->poll);
    return r;
}

void ws_ring_send(ws_ring_t *r, int fd, const struct msghdr *m, void *req)
{
    struct io_uring_sqe *sqe = sqe_get(r);
    /* MSG_DONTWAIT: what the socket cannot take now comes back as a short
     * count or -EAGAIN instead of waiting in the kernel, so a send never
     * outlives its turn and the caller's slow path (uv_write) does the waiting. */
    const int flags = MSG_DONTWAIT | MSG_NOSIGNAL;
    if (m->msg_iovlen == 1)
        io_uring_prep_send(sqe, fd, m->msg_iov[0].iov_base, m->msg_iov[0].iov_len, flags);
    else
        io_uring_prep_sendmsg(sqe, fd, m, flags);
    io_uring_sqe_set_data64(sqe, (uint64_t)(uintptr_t)req);
    r->inflight++;
}

void ws_ring_submit(ws_ring_t *r)
{
    if (io_uring_sq_ready(&r->ring))
        submit(r);
}

void ws_ring_cancel(ws_ring_t *r, void *req)
{
    struct io_uring_sqe *sqe = sqe_get(r);
    io_uring_prep_cancel64(sqe, (uint64_t)(uintptr_t)req, 0);
    io_uring_sqe_set_data64(sqe, CANCEL_TAG);
    /* Now, with req's own send if it was only prepared: its descriptor is
     * about to close, and the kernel looks the descriptor up at submission. */
    submit(r);
}

static void on_closed(uv_handle_t *h) { free(h); }

void ws_ring_free(ws_ring_t *r)
{
    if (!r)
        return;
    uv_poll_stop(&r->poll);
    submit(r);
    /* Cancelled sends complete at once; one stuck for a second is abandoned. */
    struct __kernel_timespec ts = {.tv_sec = 1, .tv_nsec = 0};
    while (r->inflight) {
        struct io_uring_cqe *cqe;
        if (io_uring_wait_cqe_timeout(&r->ring, &cqe, &ts) != 0)
            break;
        ws_ring_reap(r);
    }
    io_uring_queue_exit(&r->ring);
    uv_close((uv_handle_t *)&r->poll, on_closed);
}
