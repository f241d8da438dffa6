/* The client side of RFC 6455 for wsbench. Longer than our ~600-line guide on purpose: one
 * connection type on two backends (io_uring, epoll) that share its frame code. */
#define _GNU_SOURCE /* memmem, IP_BIND_ADDRESS_NO_PORT */
#include "wbconn.h"
#include "wbtls.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#ifdef WB_HAVE_URING
#include <liburing.h>
#include <poll.h>
#include <sys/mman.h>
#endif

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

#define RBUF_SIZE (256 * 1024)
#define MAX_EVENTS 1024

static void handle_event(wb_loop_t *loop, wb_conn_t *c, uint32_t events);
static void consume(wb_loop_t *loop, wb_conn_t *c, uint8_t *buf, size_t len);
static void fail(wb_loop_t *loop, wb_conn_t *c, const char *why);
static void mark_dirty(wb_loop_t *loop, wb_conn_t *c);
static void *xrealloc(void *p, size_t n);
static int tls_pump(wb_loop_t *loop, wb_conn_t *c);
static void tls_input(wb_loop_t *loop, wb_conn_t *c, const uint8_t *p, size_t n);

uint64_t wb_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void *xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n);
    if (q == NULL) {
        fprintf(stderr, "wsbench: out of memory\n");
        abort();
    }
    return q;
}

/* --- io_uring backend --- */

#ifdef WB_HAVE_URING
/* Provided-buffer ring: multishot recvs pick a buffer per completion; each is given back as soon
 * as its bytes are parsed, so the ring only runs dry (ENOBUFS, the recv is re-armed) when one
 * wakeup brings more than BR_COUNT completions. */
#define BR_COUNT 2048u
#define BR_SIZE (16u * 1024u)
#define BR_GROUP 1
#define UR_SQ 1024u
#define UR_CQ 16384u
#define CQE_BATCH 256u

/* user_data: a connection pointer (8-aligned) with the operation in its low bits. */
enum { UD_RECV = 1, UD_SEND = 2, UD_EPOLL = 3, UD_MASK = 7 };

struct wb_uring {
    struct io_uring ring;
    struct io_uring_buf_ring *br;
    size_t br_bytes;
    uint8_t *bufs;
    int epoll_armed;
};

int wb_uring_compiled(void)
{
    return 1;
}

static struct io_uring_sqe *get_sqe(wb_loop_t *loop)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&loop->uring->ring);
    if (sqe == NULL) { /* the SQ is full: submit what is there (no wait) and retry */
        io_uring_submit(&loop->uring->ring);
        sqe = io_uring_get_sqe(&loop->uring->ring);
        if (sqe == NULL) {
            fprintf(stderr, "wsbench: io_uring submission queue stuck\n");
            abort();
        }
    }
    return sqe;
}

static int uring_init(wb_loop_t *loop)
{
    struct wb_uring *u = calloc(1, sizeof(*u));
    if (u == NULL)
        return -ENOMEM;
    struct io_uring_params p;
    /* DEFER_TASKRUN: the kernel completes recvs and sends only when we wait, so one
     * io_uring_enter() does a whole batch (kernel 6.1+); without it, plain flags. */
    memset(&p, 0, sizeof(p));
    p.flags = IORING_SETUP_CQSIZE | IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
    p.cq_entries = UR_CQ;
    int r = io_uring_queue_init_params(UR_SQ, &u->ring, &p);
    if (r < 0) {
        memset(&p, 0, sizeof(p));
        p.flags = IORING_SETUP_CQSIZE;
        p.cq_entries = UR_CQ;
        r = io_uring_queue_init_params(UR_SQ, &u->ring, &p);
    }
    if (r < 0) {
        free(u);
        return r;
    }
    u->br_bytes = BR_COUNT * sizeof(struct io_uring_buf);
    void *br = mmap(NULL, u->br_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    u->bufs = br == MAP_FAILED ? NULL : malloc((size_t)BR_COUNT * BR_SIZE);
    if (br == MAP_FAILED || u->bufs == NULL) {
        r = -ENOMEM;
        goto err;
    }
    u->br = br;
    io_uring_buf_ring_init(u->br);
    struct io_uring_buf_reg reg;
    memset(&reg, 0, sizeof(reg));
    reg.ring_addr = (uint64_t)(uintptr_t)u->br;
    reg.ring_entries = BR_COUNT;
    reg.bgid = BR_GROUP;
    r = io_uring_register_buf_ring(&u->ring, &reg, 0);
    if (r < 0)
        goto err;
    for (unsigned i = 0; i < BR_COUNT; i++)
        io_uring_buf_ring_add(u->br, u->bufs + (size_t)i * BR_SIZE, BR_SIZE, (unsigned short)i,
                              io_uring_buf_ring_mask(BR_COUNT), (int)i);
    io_uring_buf_ring_advance(u->br, BR_COUNT);
    loop->uring = u;
    return 0;
err:
    io_uring_queue_exit(&u->ring);
    if (br != MAP_FAILED)
        munmap(br, u->br_bytes);
    free(u->bufs);
    free(u);
    return r;
}

static void uring_exit(wb_loop_t *loop)
{
    struct wb_uring *u = loop->uring;
    if (u == NULL)
        return;
    io_uring_queue_exit(&u->ring); /* cancels what is still in flight */
    munmap(u->br, u->br_bytes);
    free(u->bufs);
    free(u);
    loop->uring = NULL;
}

static void arm_recv(wb_loop_t *loop, wb_conn_t *c)
{
    struct io_uring_sqe *sqe = get_sqe(loop);
    io_uring_prep_recv_multishot(sqe, c->fd, NULL, 0, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = BR_GROUP;
    io_uring_sqe_set_data64(sqe, (uint64_t)(uintptr_t)c | UD_RECV);
}

static void arm_epoll(wb_loop_t *loop)
{
    struct io_uring_sqe *sqe = get_sqe(loop);
    io_uring_prep_poll_multishot(sqe, loop->epfd, POLLIN);
    io_uring_sqe_set_data64(sqe, UD_EPOLL);
    loop->uring->epoll_armed = 1;
}

static void submit_send(wb_loop_t *loop, wb_conn_t *c)
{
    struct io_uring_sqe *sqe = get_sqe(loop);
    io_uring_prep_send(sqe, c->fd, c->sbuf + c->s_off, c->s_len - c->s_off, MSG_NOSIGNAL);
    io_uring_sqe_set_data64(sqe, (uint64_t)(uintptr_t)c | UD_SEND);
    c->sending = 1;
    loop->syscalls_write++;
}

/* Hands the queued bytes to the kernel: `out` becomes the send buffer, the idle send buffer
 * becomes `out` (the kernel reads sbuf until the send completes, so it is never reallocated
 * while a send is in flight). */
static void flush_uring(wb_loop_t *loop, wb_conn_t *c)
{
    if (c->sending)
        return;
    if (c->tls && tls_pump(loop, c) < 0)
        return;
    if (c->out_off == c->out_len)
        return;
    uint8_t *b = c->sbuf;
    uint32_t cap = c->s_cap;
    c->sbuf = c->out;
    c->s_cap = c->out_cap;
    c->s_off = c->out_off;
    c->s_len = c->out_len;
    c->out = b;
    c->out_cap = cap;
    c->out_off = c->out_len = c->out_enc = 0;
    submit_send(loop, c);
}

/* After the handshake: off epoll, blocking (io_uring then waits by poll instead of failing with
 * EAGAIN), one multishot recv from now on. */
static void to_uring(wb_loop_t *loop, wb_conn_t *c)
{
    epoll_ctl(loop->epfd, EPOLL_CTL_DEL, c->fd, NULL);
    int fl = fcntl(c->fd, F_GETFL);
    if (fl >= 0)
        fcntl(c->fd, F_SETFL, fl & ~O_NONBLOCK);
    c->uring = 1;
    c->want_out = 0;
    arm_recv(loop, c);
    if (c->out_off < c->out_len)
        mark_dirty(loop, c);
}

static void give_back(wb_loop_t *loop, unsigned bid)
{
    struct wb_uring *u = loop->uring;
    io_uring_buf_ring_add(u->br, u->bufs + (size_t)bid * BR_SIZE, BR_SIZE, (unsigned short)bid,
                          io_uring_buf_ring_mask(BR_COUNT), 0);
    io_uring_buf_ring_advance(u->br, 1);
}

static void on_recv(wb_loop_t *loop, wb_conn_t *c, int res, unsigned flags)
{
    if (res > 0 && (flags & IORING_CQE_F_BUFFER)) {
        unsigned bid = flags >> IORING_CQE_BUFFER_SHIFT;
        loop->syscalls_read++;
        if (c->state == WB_OPEN && c->tls) {
            tls_input(loop, c, loop->uring->bufs + (size_t)bid * BR_SIZE, (size_t)res);
        } else if (c->state == WB_OPEN) {
            uint8_t *data = loop->uring->bufs + (size_t)bid * BR_SIZE;
            if (c->pend_len == 0) {
                consume(loop, c, data, (size_t)res);
            } else { /* complete the partial frame in `pend` */
                size_t len = (size_t)c->pend_len + (size_t)res;
                if (len > c->pend_cap) {
                    c->pend = xrealloc(c->pend, len);
                    c->pend_cap = (uint32_t)len;
                }
                memcpy(c->pend + c->pend_len, data, (size_t)res);
                c->pend_len = 0;
                consume(loop, c, c->pend, len);
            }
        }
        give_back(loop, bid);
    }
    if (flags & IORING_CQE_F_MORE)
        return;
    /* The multishot recv ended: out of buffers (re-arm), end of stream, or an error. */
    if (c->state != WB_OPEN)
        return;
    if (res > 0 || res == -ENOBUFS || res == -EINTR)
        arm_recv(loop, c);
    else
        fail(loop, c, res == 0 ? "server closed the connection" : strerror(-res));
}

static void on_send(wb_loop_t *loop, wb_conn_t *c, int res)
{
    c->sending = 0;
    if (c->state == WB_CLOSED) {
        free(c->sbuf); /* left by wb_conn_close while the kernel still had it */
        c->sbuf = NULL;
        c->s_cap = 0;
        return;
    }
    if (res < 0) {
        fail(loop, c, strerror(-res));
        return;
    }
    c->s_off += (uint32_t)res;
    if (c->s_off < c->s_len) {
        submit_send(loop, c); /* short send: the rest first, in order */
        return;
    }
    c->s_off = c->s_len = 0;
    if (c->out_off < c->out_len)
        mark_dirty(loop, c);
}

static void on_epoll(wb_loop_t *loop, unsigned flags)
{
    if (!(flags & IORING_CQE_F_MORE))
        loop->uring->epoll_armed = 0;
    struct epoll_event evs[MAX_EVENTS];
    int n = epoll_wait(loop->epfd, evs, MAX_EVENTS, 0);
    for (int i = 0; i < n; i++)
        handle_event(loop, evs[i].data.ptr, evs[i].events);
}

static int uring_run_once(wb_loop_t *loop, int timeout_ms)
{
    struct wb_uring *u = loop->uring;
    if (!u->epoll_armed)
        arm_epoll(loop);
    struct __kernel_timespec ts = {.tv_sec = timeout_ms / 1000,
                                   .tv_nsec = (long long)(timeout_ms % 1000) * 1000000};
    struct io_uring_cqe *cqe = NULL;
    int r;
    if (loop->batch > 1) {
        /* Sleep until `batch` completions are due or batch_us passed: fewer wakeups, and
         * more bytes per recv; then, if nothing at all came, the plain wait. */
        struct __kernel_timespec bts = {.tv_sec = 0, .tv_nsec = (long long)loop->batch_us * 1000};
        r = io_uring_submit_and_wait_timeout(&u->ring, &cqe, loop->batch, &bts, NULL);
        if (r == -ETIME && io_uring_cq_ready(&u->ring) == 0)
            r = io_uring_submit_and_wait_timeout(&u->ring, &cqe, 1, &ts, NULL);
    } else {
        /* Submits the sends prepared since the last call and waits, in one io_uring_enter(). */
        r = io_uring_submit_and_wait_timeout(&u->ring, &cqe, 1, &ts, NULL);
    }
    if (r < 0 && r != -ETIME && r != -EINTR && r != -EAGAIN && r != -EBUSY)
        return r;
    loop->now = wb_now();
    int total = 0;
    for (;;) {
        struct io_uring_cqe *cqes[CQE_BATCH];
        unsigned n = io_uring_peek_batch_cqe(&u->ring, cqes, CQE_BATCH);
        if (n == 0)
            break;
        /* Copy out first: handling a completion may submit, which may post more. */
        struct {
            uint64_t ud;
            int res;
            unsigned flags;
        } ev[CQE_BATCH];
        for (unsigned i = 0; i < n; i++) {
            ev[i].ud = cqes[i]->user_data;
            ev[i].res = cqes[i]->res;
            ev[i].flags = cqes[i]->flags;
        }
        io_uring_cq_advance(&u->ring, n);
        for (unsigned i = 0; i < n; i++) {
            unsigned kind = (unsigned)(ev[i].ud & UD_MASK);
            wb_conn_t *c = (wb_conn_t *)(uintptr_t)(ev[i].ud & ~(uint64_t)UD_MASK);
            if (kind == UD_RECV)
                on_recv(loop, c, ev[i].res, ev[i].flags);
            else if (kind == UD_SEND)
                on_send(loop, c, ev[i].res);
            else if (kind == UD_EPOLL)
                on_epoll(loop, ev[i].flags);
        }
        total += (int)n;
    }
    if (total > 0)
        loop->wakeups++;
    wb_loop_flush(loop);
    return total;
}
#else
struct wb_uring {
    int unused;
};

int wb_uring_compiled(void)
{
    return 0;
}
#endif

const char *wb_loop_backend(const wb_loop_t *loop)
{
    return loop->uring ? "io_uring" : "epoll";
}

int wb_loop_init(wb_loop_t *loop, const char *host_header, int use_uring)
{
    memset(loop, 0, sizeof(*loop));
    loop->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (loop->epfd < 0)
        return -errno;
    loop->rcap = RBUF_SIZE;
    loop->rbuf = xrealloc(NULL, loop->rcap);
    loop->rng = (uint32_t)wb_now() | 1u;
    loop->host_header = host_header;
    loop->now = wb_now();
#ifdef WB_HAVE_URING
    if (use_uring && uring_init(loop) < 0)
        loop->uring = NULL; /* the kernel refused (io_uring_disabled, seccomp...): epoll */
#else
    (void)use_uring;
#endif
    return 0;
}

void wb_loop_close(wb_loop_t *loop)
{
#ifdef WB_HAVE_URING
    uring_exit(loop);
#endif
    if (loop->epfd >= 0)
        close(loop->epfd);
    free(loop->rbuf);
    free(loop->dirty);
    loop->epfd = -1;
    loop->rbuf = NULL;
    loop->dirty = NULL;
}

/* --- output --- */

static void out_reserve(wb_conn_t *c, size_t extra)
{
    if (c->out_off == c->out_len)
        c->out_off = c->out_len = c->out_enc = 0;
    size_t need = (size_t)c->out_len + extra;
    if (need <= c->out_cap)
        return;
    size_t cap = c->out_cap ? c->out_cap : 256;
    while (cap < need)
        cap *= 2;
    c->out = xrealloc(c->out, cap);
    c->out_cap = (uint32_t)cap;
}

static void set_events(wb_loop_t *loop, wb_conn_t *c, int want_out)
{
    struct epoll_event ev = {.events = EPOLLIN | (want_out ? EPOLLOUT : 0), .data.ptr = c};
    epoll_ctl(loop->epfd, EPOLL_CTL_MOD, c->fd, &ev);
    c->want_out = (uint8_t)want_out;
}

static void mark_dirty(wb_loop_t *loop, wb_conn_t *c)
{
    if (c->dirty || c->want_out)
        return;
    if (loop->ndirty == loop->dirty_cap) {
        loop->dirty_cap = loop->dirty_cap ? loop->dirty_cap * 2 : 256;
        loop->dirty = xrealloc(loop->dirty, loop->dirty_cap * sizeof(*loop->dirty));
    }
    loop->dirty[loop->ndirty++] = c;
    c->dirty = 1;
}

static void fail(wb_loop_t *loop, wb_conn_t *c, const char *why)
{
    if (c->state == WB_CLOSED)
        return;
    wb_conn_close(loop, c);
    if (loop->on_close)
        loop->on_close(loop, c, why);
}

static void flush_conn(wb_loop_t *loop, wb_conn_t *c)
{
    if (c->tls && tls_pump(loop, c) < 0)
        return;
    while (c->out_off < c->out_len) {
        ssize_t n = write(c->fd, c->out + c->out_off, c->out_len - c->out_off);
        loop->syscalls_write++;
        if (n > 0) {
            c->out_off += (uint32_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (!c->want_out)
                set_events(loop, c, 1);
            return;
        }
        fail(loop, c, n < 0 ? strerror(errno) : "short write");
        return;
    }
    c->out_off = c->out_len = c->out_enc = 0;
    if (c->want_out)
        set_events(loop, c, 0);
}

void wb_loop_flush(wb_loop_t *loop)
{
    /* A flush can fail a connection, whose close callback may queue more; walk by index. */
    for (size_t i = 0; i < loop->ndirty; i++) {
        wb_conn_t *c = loop->dirty[i];
        c->dirty = 0;
#ifdef WB_HAVE_URING
        if (c->uring) {
            if (c->state == WB_OPEN)
                flush_uring(loop, c);
            continue;
        }
#endif
        if (c->state == WB_HANDSHAKE || c->state == WB_OPEN)
            flush_conn(loop, c);
    }
    loop->ndirty = 0;
}

void wb_conn_send(wb_loop_t *loop, wb_conn_t *c, int opcode, const uint8_t *p, size_t n)
{
    if (c->state == WB_CLOSED)
        return;
    out_reserve(c, n + 14);
    uint8_t *h = c->out + c->out_len;
    size_t hl;
    h[0] = (uint8_t)(0x80 | opcode);
    if (n < 126) {
        h[1] = (uint8_t)(0x80 | n);
        hl = 2;
    } else if (n < 65536) {
        h[1] = 0x80 | 126;
        h[2] = (uint8_t)(n >> 8);
        h[3] = (uint8_t)n;
        hl = 4;
    } else {
        h[1] = 0x80 | 127;
        for (int i = 0; i < 8; i++)
            h[2 + i] = (uint8_t)((uint64_t)n >> (56 - 8 * i));
        hl = 10;
    }
    /* xorshift32: cheap, and different for every frame as RFC 6455 5.3 asks. */
    uint32_t x = loop->rng;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    loop->rng = x;
    uint8_t key[4];
    memcpy(key, &x, 4);
    memcpy(h + hl, key, 4);
    hl += 4;
    uint8_t *dst = h + hl;
    uint64_t m64;
    uint8_t m8[8] = {key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3]};
    memcpy(&m64, m8, 8);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        w ^= m64;
        memcpy(dst + i, &w, 8);
    }
    for (; i < n; i++)
        dst[i] = p[i] ^ key[i & 3];
    c->out_len += (uint32_t)(hl + n);
    mark_dirty(loop, c);
}

/* --- connect --- */

int wb_conn_start(wb_loop_t *loop, wb_conn_t *c, const struct sockaddr_in *dst,
                  const struct sockaddr_in *src, const char *path)
{
    int one = 1;
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0)
        return -errno;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (src != NULL) {
        setsockopt(c->fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
        if (bind(c->fd, (const struct sockaddr *)src, sizeof(*src)) < 0)
            goto err;
    }
    if (connect(c->fd, (const struct sockaddr *)dst, sizeof(*dst)) < 0 && errno != EINPROGRESS)
        goto err;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
    if (epoll_ctl(loop->epfd, EPOLL_CTL_ADD, c->fd, &ev) < 0)
        goto err;
    c->want_out = 1;
    c->state = WB_CONNECTING;
    if (loop->tls) {
        c->tls = wb_tls_new(); /* its ClientHello goes first, on the first flush */
        if (c->tls == NULL) {
            epoll_ctl(loop->epfd, EPOLL_CTL_DEL, c->fd, NULL);
            errno = ENOMEM;
            goto err;
        }
    }
    char req[512];
    int n = snprintf(req, sizeof(req),
                     "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                     "Sec-WebSocket-Version: 13\r\n\r\n",
                     path, loop->host_header);
    out_reserve(c, (size_t)n);
    memcpy(c->out + c->out_len, req, (size_t)n);
    c->out_len += (uint32_t)n;
    return 0;
err:;
    int e = errno;
    close(c->fd);
    c->fd = -1;
    return -e;
}

void wb_conn_close(wb_loop_t *loop, wb_conn_t *c)
{
    (void)loop;
    if (c->fd >= 0) {
        /* io_uring holds its own reference to the socket: shutdown ends the multishot recv
         * and any send now; their completions find the connection closed and are ignored. */
        if (c->uring)
            shutdown(c->fd, SHUT_RDWR);
        close(c->fd);
    }
    c->fd = -1;
    wb_tls_free(c->tls);
    c->tls = NULL;
    free(c->pend);
    free(c->out);
    c->pend = c->out = NULL;
    c->pend_len = c->pend_cap = c->out_off = c->out_len = c->out_cap = c->out_enc = 0;
    if (!c->sending) { /* otherwise the send's completion frees it */
        free(c->sbuf);
        c->sbuf = NULL;
        c->s_cap = 0;
    }
    c->s_off = c->s_len = 0;
    c->state = WB_CLOSED;
}

/* --- input --- */

/* Handles complete frames in buf[0, len); returns the bytes consumed. */
static size_t parse_frames(wb_loop_t *loop, wb_conn_t *c, uint8_t *buf, size_t len)
{
    size_t off = 0;
    while (c->state == WB_OPEN && len - off >= 2) {
        const uint8_t *p = buf + off;
        size_t avail = len - off, hl = 2;
        uint64_t plen = p[1] & 0x7f;
        if (plen == 126) {
            if (avail < 4)
                break;
            plen = ((uint64_t)p[2] << 8) | p[3];
            hl = 4;
        } else if (plen == 127) {
            if (avail < 10)
                break;
            plen = 0;
            for (int i = 0; i < 8; i++)
                plen = (plen << 8) | p[2 + i];
            hl = 10;
        }
        if (p[1] & 0x80) {
            fail(loop, c, "masked frame from server");
            break;
        }
        if (plen > loop->rcap / 2) {
            fail(loop, c, "frame too large for wsbench");
            break;
        }
        if (avail < hl + plen)
            break;
        int op = p[0] & 0x0f;
        const uint8_t *payload = p + hl;
        off += hl + (size_t)plen;
        switch (op) {
        case 0:
        case WB_OP_TEXT:
        case WB_OP_BINARY:
            loop->on_message(loop, c, payload, (size_t)plen, op ? op : WB_OP_TEXT);
            break;
        case WB_OP_PING:
            wb_conn_send(loop, c, WB_OP_PONG, payload, (size_t)plen);
            break;
        case WB_OP_PONG:
            if (loop->on_pong)
                loop->on_pong(loop, c);
            break;
        case WB_OP_CLOSE:
            fail(loop, c, "server sent close");
            break;
        default:
            fail(loop, c, "bad opcode");
            break;
        }
    }
    return off;
}

static size_t parse_handshake(wb_loop_t *loop, wb_conn_t *c, uint8_t *buf, size_t len)
{
    uint8_t *end = memmem(buf, len, "\r\n\r\n", 4);
    if (end == NULL) {
        if (len > 8192)
            fail(loop, c, "response header too large");
        return 0;
    }
    if (len < 12 || memcmp(buf, "HTTP/1.1 101", 12) != 0) {
        fail(loop, c, "upgrade refused");
        return 0;
    }
    c->state = WB_OPEN;
    if (loop->on_open)
        loop->on_open(loop, c);
    return (size_t)(end + 4 - buf);
}

/* Parses buf[0, len) (the handshake response, then frames) and keeps the unparsed tail (a
 * partial frame) in `pend`; `buf` may be `pend` itself. */
static void consume(wb_loop_t *loop, wb_conn_t *c, uint8_t *buf, size_t len)
{
    size_t off = 0;
    if (c->state == WB_HANDSHAKE)
        off = parse_handshake(loop, c, buf, len);
    if (c->state == WB_OPEN)
        off += parse_frames(loop, c, buf + off, len - off);
    if (c->state == WB_CLOSED)
        return;
    /* Keep only the partial frame; most wakeups end on a frame boundary and copy nothing. */
    size_t rest = len - off;
    if (rest > c->pend_cap) { /* never when buf is pend: then len <= pend_cap */
        c->pend = xrealloc(c->pend, rest);
        c->pend_cap = (uint32_t)rest;
    }
    if (rest)
        memmove(c->pend, buf + off, rest);
    c->pend_len = (uint32_t)rest;
}

static void handle_read(wb_loop_t *loop, wb_conn_t *c)
{
    for (int round = 0; round < 4 && c->state != WB_CLOSED; round++) {
        size_t have = c->tls ? 0 : c->pend_len; /* TLS: rbuf gets ciphertext */
        if (have)
            memcpy(loop->rbuf, c->pend, have);
        ssize_t n = read(c->fd, loop->rbuf + have, loop->rcap - have);
        loop->syscalls_read++;
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
                return;
            fail(loop, c, strerror(errno));
            return;
        }
        if (n == 0) {
            fail(loop, c, "server closed the connection");
            return;
        }
        if (c->tls)
            tls_input(loop, c, loop->rbuf, (size_t)n);
        else
            consume(loop, c, loop->rbuf, have + (size_t)n);
        if (c->state == WB_CLOSED)
            return;
#ifdef WB_HAVE_URING
        if (loop->uring && c->state == WB_OPEN) {
            to_uring(loop, c); /* the socket's later bytes come from its multishot recv */
            return;
        }
#endif
        if ((size_t)n < loop->rcap - have)
            return; /* drained the socket */
    }
}

static void handle_event(wb_loop_t *loop, wb_conn_t *c, uint32_t events)
{
    if (c->state == WB_CLOSED)
        return;
    if (c->state == WB_CONNECTING) {
        if (events & (EPOLLERR | EPOLLHUP)) {
            int err = 0;
            socklen_t sl = sizeof(err);
            getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &sl);
            fail(loop, c, err ? strerror(err) : "connect failed");
            return;
        }
        if (!(events & EPOLLOUT))
            return;
        c->state = WB_HANDSHAKE;
    }
    if (events & EPOLLOUT)
        flush_conn(loop, c);
    if (c->state != WB_CLOSED && (events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
        handle_read(loop, c);
}

int wb_loop_run_once(wb_loop_t *loop, int timeout_ms)
{
#ifdef WB_HAVE_URING
    if (loop->uring)
        return uring_run_once(loop, timeout_ms);
#endif
    struct epoll_event evs[MAX_EVENTS];
    int n = epoll_wait(loop->epfd, evs, MAX_EVENTS, timeout_ms);
    if (n < 0)
        return errno == EINTR ? 0 : -errno;
    loop->now = wb_now();
    loop->wakeups++;
    for (int i = 0; i < n; i++)
        handle_event(loop, evs[i].data.ptr, evs[i].events);
    wb_loop_flush(loop);
    return n;
}

/* --- TLS (wbtls.c) --- */

/* Encrypts the plaintext frames queued since the last write and appends every ciphertext byte
 * OpenSSL has for the socket (handshake records included). */
static int tls_pump(wb_loop_t *loop, wb_conn_t *c)
{
    if (c->out_enc < c->out_len) {
        if (wb_tls_write(c->tls, c->out + c->out_enc, c->out_len - c->out_enc) < 0) {
            fail(loop, c, wb_tls_error());
            return -1;
        }
        c->out_len = c->out_enc;
    }
    size_t n = wb_tls_pending(c->tls);
    if (n) {
        out_reserve(c, n);
        c->out_len += (uint32_t)wb_tls_take(c->tls, c->out + c->out_len, n);
    }
    c->out_enc = c->out_len;
    return 0;
}

/* Ciphertext from the socket: decrypted into the shared read buffer (free again once its
 * ciphertext is in the BIO) and handled like cleartext, partial frames kept in `pend`. */
static void tls_input(wb_loop_t *loop, wb_conn_t *c, const uint8_t *p, size_t n)
{
    wb_tls_put(c->tls, p, n);
    while (c->state != WB_CLOSED) {
        ssize_t r = wb_tls_read(c->tls, loop->rbuf, loop->rcap);
        if (r < 0) {
            fail(loop, c, wb_tls_error());
            return;
        }
        if (r == 0)
            break;
        if (c->pend_len == 0) {
            consume(loop, c, loop->rbuf, (size_t)r);
        } else {
            size_t len = (size_t)c->pend_len + (size_t)r;
            if (len > c->pend_cap) {
                c->pend = xrealloc(c->pend, len);
                c->pend_cap = (uint32_t)len;
            }
            memcpy(c->pend + c->pend_len, loop->rbuf, (size_t)r);
            c->pend_len = 0;
            consume(loop, c, c->pend, len);
        }
    }
    if (c->state != WB_CLOSED && wb_tls_pending(c->tls))
        mark_dirty(loop, c); /* handshake records, or replies to the server's */
}
