/* wbconn: the load generator's client side of RFC 6455 on one loop, io_uring or epoll.
 *
 * One thread. Connects and upgrade handshakes always run on level-triggered epoll with one shared
 * read buffer. With the io_uring backend (built when liburing is found, used unless
 * wb_loop_init() is told otherwise or the kernel refuses), a connection moves to io_uring as soon
 * as its 101 arrived: one multishot recv per connection fills buffers from a provided-buffer ring,
 * and the sends queued during a wakeup are submitted together with the next wait, so a wakeup of
 * any size costs one io_uring_enter() instead of one read() per ready socket, one write() per
 * connection and one epoll_wait(). The epoll instance is itself polled through the ring.
 *
 * Either way, complete frames are parsed in place (in the shared buffer or the ring's buffer);
 * only a partial frame is copied into the connection's own `pend` buffer. Frames queued while
 * handling a wakeup are appended to the connection's output buffer and sent with one write (or
 * one io_uring send) per connection at the end of the wakeup (a cork), so K messages in flight
 * cost one send, not K. */
#ifndef WB_CONN_H
#define WB_CONN_H

#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>

typedef enum { WB_CONNECTING, WB_HANDSHAKE, WB_OPEN, WB_CLOSED } wb_state;

enum { WB_OP_TEXT = 1, WB_OP_BINARY = 2, WB_OP_CLOSE = 8, WB_OP_PING = 9, WB_OP_PONG = 10 };

typedef struct wb_conn {
    int fd;
    uint32_t id;
    uint8_t state;     /* wb_state */
    uint8_t dirty;     /* on the loop's flush list */
    uint8_t want_out;  /* EPOLLOUT registered (a write was short) */
    uint8_t role;      /* free for the mode: subscriber, publisher, ... */
    uint8_t ready;     /* free for the mode: Welcome seen */
    uint32_t inflight; /* free for the mode */
    uint8_t *pend;     /* partial inbound frame (owned; NULL when none) */
    uint32_t pend_len, pend_cap;
    uint8_t *out;      /* queued outbound bytes (owned); [out_off, out_len) unsent */
    uint32_t out_off, out_len, out_cap;
    /* io_uring backend: bytes of the send in flight (owned; swapped with `out`). */
    uint8_t uring;     /* served by io_uring (after the handshake) */
    uint8_t sending;   /* a send of sbuf[s_off, s_len) is in flight */
    uint8_t *sbuf;
    uint32_t s_off, s_len, s_cap;
    /* TLS (wbtls.c; NULL: cleartext): out[out_off, out_enc) is ciphertext, [out_enc, out_len)
     * plaintext frames not yet encrypted (they are, just before the connection is written). */
    struct wb_tls *tls;
    uint32_t out_enc;
} wb_conn_t;

typedef struct wb_loop wb_loop_t;

/* Called once the 101 response arrived. */
typedef void (*wb_loop_open_cb)(wb_loop_t *loop, wb_conn_t *c);
/* Called for each complete text or binary frame; `p` points into a buffer that is reused as
 * soon as the callback returns. */
typedef void (*wb_loop_message_cb)(wb_loop_t *loop, wb_conn_t *c, const uint8_t *p, size_t n,
                                   int opcode);
/* Called once when a connection fails or the server closes it (`why` is a short string). */
typedef void (*wb_loop_close_cb)(wb_loop_t *loop, wb_conn_t *c, const char *why);
/* Called for each pong (optional). */
typedef void (*wb_loop_pong_cb)(wb_loop_t *loop, wb_conn_t *c);

struct wb_loop {
    int epfd;
    uint8_t *rbuf; /* shared read buffer */
    size_t rcap;
    wb_conn_t **dirty;
    size_t ndirty, dirty_cap;
    uint64_t now; /* CLOCK_MONOTONIC ns, taken once per wakeup */
    uint32_t rng;
    char request[512]; /* handshake request template, without the path */
    const char *host_header;
    wb_loop_open_cb on_open;
    wb_loop_message_cb on_message;
    wb_loop_close_cb on_close;
    wb_loop_pong_cb on_pong;
    void *data;
    /* Connections started from now on speak TLS (wb_tls_global_init() done by the caller). */
    int tls;
    struct wb_uring *uring; /* NULL: epoll backend */
    /* io_uring: wait for `batch` completions or `batch_us` before handling a wakeup (0 or 1:
     * handle each wakeup at once). */
    unsigned batch, batch_us;
    /* reads / writes: read() and write() syscalls, or io_uring recv completions and sends;
     * wakeups: epoll_wait() or io_uring_enter() calls that returned events. */
    uint64_t syscalls_read, syscalls_write, wakeups;
};

/* Monotonic clock in nanoseconds. */
uint64_t wb_now(void);

/* Prepares `loop` (epoll instance, 256 KiB read buffer and, when `use_uring` and available, an
 * io_uring with a provided-buffer ring). Returns 0 or -errno. */
int wb_loop_init(wb_loop_t *loop, const char *host_header, int use_uring);

/* "io_uring" or "epoll": the backend wb_loop_init() chose. */
const char *wb_loop_backend(const wb_loop_t *loop);

/* 1 when wsbench was built with liburing. */
int wb_uring_compiled(void);

/* Releases the epoll instance and the read buffer; connections are the caller's to close. */
void wb_loop_close(wb_loop_t *loop);

/* Starts a non-blocking connect of `c` to `dst` (from `src` when not NULL, bound with
 * IP_BIND_ADDRESS_NO_PORT so that each source address has its own 64k ports) and queues the
 * upgrade request for `path`. `c` must stay valid until it is closed. Returns 0 or -errno. */
int wb_conn_start(wb_loop_t *loop, wb_conn_t *c, const struct sockaddr_in *dst,
                  const struct sockaddr_in *src, const char *path);

/* Queues one masked frame (FIN set) on `c`; it is written at the end of this wakeup, or by
 * wb_loop_flush(). */
void wb_conn_send(wb_loop_t *loop, wb_conn_t *c, int opcode, const uint8_t *p, size_t n);

/* Closes the socket and frees the buffers; `c` itself stays the caller's. No callback. */
void wb_conn_close(wb_loop_t *loop, wb_conn_t *c);

/* Waits up to `timeout_ms` for events, handles them, and writes (or, with io_uring, prepares
 * the sends of) every connection that has queued bytes. Returns the number of events, or -errno
 * from epoll_wait / io_uring_enter (EINTR and a timeout are 0). */
int wb_loop_run_once(wb_loop_t *loop, int timeout_ms);

/* Writes every connection with queued bytes now. */
void wb_loop_flush(wb_loop_t *loop);

#endif
