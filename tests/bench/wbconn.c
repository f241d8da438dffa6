#define _GNU_SOURCE /* memmem, IP_BIND_ADDRESS_NO_PORT */
#include "wbconn.h"

#include <errno.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

#define RBUF_SIZE (256 * 1024)
#define MAX_EVENTS 1024

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

int wb_loop_init(wb_loop_t *loop, const char *host_header)
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
    return 0;
}

void wb_loop_close(wb_loop_t *loop)
{
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
        c->out_off = c->out_len = 0;
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
    c->out_off = c->out_len = 0;
    if (c->want_out)
        set_events(loop, c, 0);
}

void wb_loop_flush(wb_loop_t *loop)
{
    /* A flush can fail a connection, whose close callback may queue more; walk by index. */
    for (size_t i = 0; i < loop->ndirty; i++) {
        wb_conn_t *c = loop->dirty[i];
        c->dirty = 0;
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
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    free(c->pend);
    free(c->out);
    c->pend = c->out = NULL;
    c->pend_len = c->pend_cap = c->out_off = c->out_len = c->out_cap = 0;
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

static void handle_read(wb_loop_t *loop, wb_conn_t *c)
{
    for (int round = 0; round < 4 && c->state != WB_CLOSED; round++) {
        size_t have = c->pend_len;
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
        size_t len = have + (size_t)n, off = 0;
        if (c->state == WB_HANDSHAKE)
            off = parse_handshake(loop, c, loop->rbuf, len);
        if (c->state == WB_OPEN)
            off += parse_frames(loop, c, loop->rbuf + off, len - off);
        if (c->state == WB_CLOSED)
            return;
        /* Keep only the partial frame; most wakeups end on a frame boundary and copy nothing. */
        size_t rest = len - off;
        if (rest > c->pend_cap) {
            c->pend = xrealloc(c->pend, rest);
            c->pend_cap = (uint32_t)rest;
        }
        if (rest)
            memmove(c->pend, loop->rbuf + off, rest);
        c->pend_len = (uint32_t)rest;
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
