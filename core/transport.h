/*
 * transport.h: the byte stream under a connection. A connection reads and
 * writes through a ws_transport_t and does not know which kind it has: plain
 * TCP (tcp.h), in memory for tests (memio.h), later TLS. The transport calls
 * its owner back through a ws_transport_cb_t; the owner never names a
 * transport's functions, and a transport never names the owner's.
 *
 * Everything here runs on the loop thread. A transport is created by its kind
 * (ws_tcp_accept, ws_memio_new, ...), owned by whoever it was given to, and
 * freed by the kind after ws_transport_close, once cb->on_close has returned.
 *
 * The interface carries what the layers above need:
 *   - reading can be paused for a set of reasons (backpressure, a handler
 *     that waits, an upgrade decision still pending) and resumes when none is
 *     left; bytes the owner did not take before it paused are given back with
 *     ws_transport_unread and delivered again, first, when it resumes;
 *   - a handshake phase before the first application byte (TLS): the owner
 *     just sees its first on_read later;
 *   - an orderly end of our side (TCP FIN, TLS close_notify) after the last
 *     write, reported by on_shutdown;
 *   - writes of iovecs that point into shared, refcounted frames (buf.h's
 *     ws_chunk_t): the transport sends them as they are (TCP) or encrypts
 *     them per connection (TLS), and never frees them;
 *   - outbound connections (ws_tcp_connect), for clients of other services.
 */
#ifndef WS_TRANSPORT_H
#define WS_TRANSPORT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <uv.h>

typedef struct ws_transport_s ws_transport_t;
typedef struct ws_write_s ws_write_t;
typedef struct ws_ring_s ws_ring_t;

/* Why reading is paused; any set of them. */
enum {
    WS_PAUSE_BACKPRESSURE = 1, /* our replies to this peer are not draining */
    WS_PAUSE_HOST = 2,         /* the host has not finished with what was read */
    WS_PAUSE_UPGRADE = 4,      /* an upgrade decision is pending */
    WS_PAUSE_HANDLER = 8,      /* the host's handler waits and its queue is full */
};
/* Paused only for these, a transport watches the peer without reading from
 * it: a client that closes or resets while its request or upgrade waits for
 * the host is told (on_end) at once. Bytes it sends meanwhile are left in the
 * socket, and a kind may stop watching once some wait there. A WebSocket
 * peer's bytes are frames that may hold its close: those pauses do not watch. */
#define WS_PAUSE_WATCHED (WS_PAUSE_HOST | WS_PAUSE_UPGRADE)

/* What a kind's read does (vt->read). */
enum { WS_READ_OFF, WS_READ_ON, WS_READ_WATCH };

/* A write finished: status 0 when every byte left, else a negative libuv
 * error (the transport failed or was closed: UV_ECANCELED). waited is 1 when
 * the bytes did not all fit at once and the write had to wait for the peer. */
typedef void (*ws_write_cb)(ws_write_t *w, int status, int waited);

/* One write. The writer allocates it, sets iov, n, cb and data, and owns it
 * again once cb has run; cb runs exactly once, never inside
 * ws_transport_write, and may run after the transport itself is gone (the
 * writer must then only free the request: data is the writer's to clear). */
struct ws_write_s {
    uv_buf_t *iov;   /* [n]: the bytes, valid until cb; the transport advances
                        iov/n in place as a partial write goes on */
    uint32_t n;
    size_t unsent;   /* bytes not sent yet: the writer sets the total, the
                        transport lowers it as bytes leave */
    ws_write_cb cb;
    void *data;      /* the writer's */
    /* The transport's while the write is in flight. */
    struct msghdr _msg;
    uv_write_t *_uv;      /* made on first need, freed by ws_write_release */
    ws_transport_t *_t;   /* NULL once the transport is gone */
    int _status;
    unsigned _kind : 2;   /* how it is being sent (the transport's business) */
    unsigned _waited : 1;
};

/* Free what a transport attached to w (the writer frees w itself). */
void ws_write_release(ws_write_t *w);

/* Upcalls to the owner (the connection), with its ud. */
typedef struct {
    /* Bytes arrived: data[0..len) is valid during the call only and may be
     * changed in place. Not called while paused. */
    void (*on_read)(void *ud, uint8_t *data, size_t len);
    /* The peer ended the stream (UV_EOF) or the transport failed (other
     * negative errors). No more on_read. May come while paused for
     * WS_PAUSE_WATCHED reasons only, with bytes left in the stash. */
    void (*on_end)(void *ud, int err);
    /* ws_transport_shutdown finished: status 0, or an error. */
    void (*on_shutdown)(void *ud, int status);
    /* The transport is closed; it is freed when this returns. */
    void (*on_close)(void *ud);
} ws_transport_cb_t;

/* Operations of one kind of transport. */
typedef struct {
    const char *name;
    /* Read from the peer (WS_READ_ON), only watch for its end
     * (WS_READ_WATCH), or neither (WS_READ_OFF). */
    void (*read)(ws_transport_t *t, int mode);
    /* Start sending w (at most one write at a time). 0, or a negative error
     * (then w->cb never runs). */
    int (*write)(ws_transport_t *t, ws_write_t *w);
    /* End our side once the write in flight is done; on_shutdown follows. */
    void (*shutdown)(ws_transport_t *t);
    /* Close now; a write in flight ends (its cb runs, maybe later, with an
     * error or its result), then on_close on a later loop turn. */
    void (*close)(ws_transport_t *t);
    /* Deliver work deferred to ws_io_run (stashed bytes, completions). */
    void (*run)(ws_transport_t *t);
    /* The io t belongs to (kept by the kind: idle transports stay small). */
    struct ws_io_s *(*io)(ws_transport_t *t);
    /* Bytes of the write in flight not sent yet, as of now (a write that
     * waits for the peer makes progress without completing). */
    size_t (*unsent)(ws_transport_t *t);
} ws_transport_vt_t;

/* What the transports of one loop share. */
typedef struct ws_io_s {
    uv_loop_t *loop;
    ws_ring_t *ring;        /* TCP sends through io_uring, or NULL (writev) */
    ws_transport_t **ready; /* transports with deferred work for ws_io_run (NULL: closed since) */
    uint32_t nready, ready_cap;
    uint8_t *rbuf;          /* one read buffer for every connection of the loop */
    size_t rbuf_len;
} ws_io_t;

#define WS_IO_READ_BUF 65536

/* Bytes given back by the owner (ws_transport_unread). */
typedef struct ws_stash_s {
    size_t len;
    uint8_t data[];
} ws_stash_t;

/* The state every transport starts with; kinds embed it first. Every
 * connection has one, so it is packed (56 bytes). */
struct ws_transport_s {
    const ws_transport_vt_t *vt;
    const ws_transport_cb_t *cb;
    void *ud;
    ws_stash_t *stash;       /* or NULL */
    uint32_t ready_idx;      /* 1 + its place in io->ready, or 0 */
    uint8_t paused;          /* WS_PAUSE_* reasons */
    uint8_t closing : 1;
    uint8_t reading : 1;     /* the owner wants to read (ws_transport_start) */
    uint8_t read_mode : 2;   /* WS_READ_*: what vt->read was last told */
    uint8_t hs_pending : 1;  /* a handshake below (TLS) must finish before the owner's
                                bytes can reach the peer */
    uint8_t peer_v6 : 1;     /* peer_addr holds an IPv6 address (else IPv4) */
    uint8_t peer_known : 1;
    uint16_t peer_port;
    uint8_t peer_addr[16];   /* binary, formatted when asked (ws_transport_peer) */
};

void ws_io_init(ws_io_t *io, uv_loop_t *loop);
void ws_io_free(ws_io_t *io);
/* Submit the ring's prepared sends, run completed ones and the deferred work
 * of transports. Returns how many callbacks ran (0: nothing was pending). */
int ws_io_run(ws_io_t *io);

/* For kinds: set up the common part. */
void ws_transport_init(ws_transport_t *t, const ws_transport_vt_t *vt);
/* For kinds: t has deferred work; ws_io_run will call vt->run. */
void ws_transport_defer(ws_transport_t *t);
/* For kinds: deliver bytes to the owner (stashed ones first). */
void ws_transport_deliver(ws_transport_t *t, uint8_t *data, size_t len);

/* Give t its owner and start reading. */
void ws_transport_start(ws_transport_t *t, const ws_transport_cb_t *cb, void *ud);
void ws_transport_pause(ws_transport_t *t, unsigned reason);
void ws_transport_resume(ws_transport_t *t, unsigned reason);
static inline int ws_transport_paused(const ws_transport_t *t) { return t->paused != 0; }
static inline int ws_transport_stashed(const ws_transport_t *t) { return t->stash != NULL; }
/* Paused, but only for reasons under which the peer is still watched. */
static inline int ws_transport_watching(const ws_transport_t *t)
{
    return t->read_mode == WS_READ_WATCH;
}
/* For a kind that wraps another (TLS): pause the inner transport for the
 * outer one's reasons, so that it reads, watches or stops as the outer does. */
void ws_transport_follow(ws_transport_t *inner, unsigned paused);
/* Keep data[0..len), which the owner did not take before pausing: it is
 * delivered again, before anything newer, once reading resumes. */
void ws_transport_unread(ws_transport_t *t, const uint8_t *data, size_t len);

static inline int ws_transport_write(ws_transport_t *t, ws_write_t *w) { return t->vt->write(t, w); }
static inline void ws_transport_shutdown(ws_transport_t *t) { t->vt->shutdown(t); }
static inline size_t ws_transport_unsent(ws_transport_t *t) { return t->vt->unsent(t); }
/* Close t (idempotent). */
void ws_transport_close(ws_transport_t *t);

/* The peer's address without the port ("127.0.0.1", "::1"). */
void ws_transport_ip(const ws_transport_t *t, char *out, size_t len);
/* With the port ("127.0.0.1:50412", "[::1]:50412"). */
#define WS_REMOTE_MAX 64
void ws_transport_peer(const ws_transport_t *t, char *out, size_t len);
/* For kinds: record the peer's address. */
void ws_transport_set_peer(ws_transport_t *t, const struct sockaddr *sa);

#endif
