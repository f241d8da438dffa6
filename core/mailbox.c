#include "mailbox.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "buf.h"
#include "log.h"
#include "mem.h"

/* Datagrams stay at 64 KiB: the largest the kernel's default buffer sizes
 * take whole everywhere. */
#define DGRAM_MAX 65536
#define HDR 12
#define FRAG (DGRAM_MAX - HDR)
#define VERSION 1
#define F_FIRST 1
#define F_LAST 2
/* Larger than any message a connection may carry (--max-message is at most
 * a few GiB of address space anyway): anything above is not ours. */
#define TOTAL_MAX ((size_t)1 << 31)

typedef struct pend_s {
    struct pend_s *next;
    size_t len;
    uint8_t data[];
} pend_t;

typedef struct {
    ws_mailbox_t *m;
    int fd;
    uv_poll_t poll;
    int polling;
    pend_t *head, **tail;
    size_t bytes;      /* queued in pend */
    int behind;        /* dropping since the queue filled */
    uint64_t dropped_episode;
} dest_t;

typedef struct {
    uint8_t *buf;      /* topic then data */
    size_t total, got, tlen;
    unsigned op;
} part_t;

struct ws_mailbox_s {
    uv_loop_t *loop;
    unsigned self, n;
    int rx;
    uv_poll_t rx_poll;
    dest_t *dest;      /* n entries; dest[self-1] unused */
    part_t *parts;     /* n entries: a message being joined, per sender */
    size_t max_pending;
    ws_mailbox_deliver_cb cb;
    void *ud;
    uint64_t sent, received, dropped;
    int closing;       /* handles still to close before m is freed */
    uint8_t *rbuf;
};

static void on_rx(uv_poll_t *p, int status, int events);
static void on_tx(uv_poll_t *p, int status, int events);

ws_mailbox_t *ws_mailbox_new(uv_loop_t *loop, unsigned self, unsigned n, int rx, const int *tx,
                             size_t max_pending, ws_mailbox_deliver_cb cb, void *ud)
{
    ws_mailbox_t *m = ws_calloc(1, sizeof *m);
    m->loop = loop;
    m->self = self;
    m->n = n;
    m->rx = rx;
    m->max_pending = max_pending;
    m->cb = cb;
    m->ud = ud;
    m->rbuf = ws_malloc(DGRAM_MAX);
    m->dest = ws_calloc(n, sizeof *m->dest);
    m->parts = ws_calloc(n, sizeof *m->parts);
    for (unsigned i = 0; i < n; i++) {
        dest_t *d = &m->dest[i];
        d->m = m;
        d->fd = -1;
        d->tail = &d->head;
        if (i + 1 == self) {
            if (tx[i] >= 0)
                close(tx[i]);
            continue;
        }
        d->fd = tx[i];
        uv_poll_init(loop, &d->poll, d->fd);
        d->poll.data = d;
    }
    uv_poll_init(loop, &m->rx_poll, rx);
    m->rx_poll.data = m;
    uv_poll_start(&m->rx_poll, UV_READABLE, on_rx);
    return m;
}

/* ---- receiving ---- */

static void take(ws_mailbox_t *m, const uint8_t *d, size_t len)
{
    if (len < HDR || d[0] != VERSION)
        return;
    unsigned flags = d[1], op = d[2];
    unsigned origin = (unsigned)d[4] | (unsigned)d[5] << 8;
    size_t tlen = (size_t)d[6] | (size_t)d[7] << 8;
    size_t total = (size_t)d[8] | (size_t)d[9] << 8 | (size_t)d[10] << 16 | (size_t)d[11] << 24;
    if (origin < 1 || origin > m->n || origin == m->self)
        return;
    part_t *p = &m->parts[origin - 1];
    d += HDR;
    len -= HDR;
    if (flags & F_FIRST) {
        /* A message its sender began before (a predecessor of this worker
         * read the rest) is abandoned. */
        free(p->buf);
        memset(p, 0, sizeof *p);
        if (total > TOTAL_MAX || tlen > total)
            return;
        p->buf = ws_malloc(total ? total : 1);
        p->total = total;
        p->tlen = tlen;
        p->op = op;
    }
    if (!p->buf || len > p->total - p->got) {
        free(p->buf);
        memset(p, 0, sizeof *p);
        return;
    }
    memcpy(p->buf + p->got, d, len);
    p->got += len;
    if (!(flags & F_LAST))
        return;
    if (p->got == p->total) {
        m->received++;
        m->cb(m->ud, (const char *)p->buf, p->tlen, p->op, p->buf + p->tlen, p->total - p->tlen);
    }
    free(p->buf);
    memset(p, 0, sizeof *p);
}

static void receive(ws_mailbox_t *m, int max)
{
    for (int i = 0; i < max; i++) {
        ssize_t r = recv(m->rx, m->rbuf, DGRAM_MAX, MSG_DONTWAIT);
        if (r < 0)
            return; /* EAGAIN, or nothing we can do about it */
        take(m, m->rbuf, (size_t)r);
    }
}

static void on_rx(uv_poll_t *h, int status, int events)
{
    (void)events;
    /* A bounded batch per wakeup: the loop's other work goes on meanwhile. */
    if (status == 0)
        receive(h->data, 256);
}

void ws_mailbox_receive(ws_mailbox_t *m)
{
    if (!m->closing)
        receive(m, 4096);
}

/* ---- sending ---- */

static void header(uint8_t *h, unsigned flags, unsigned op, unsigned origin, size_t tlen,
                   size_t total)
{
    h[0] = VERSION;
    h[1] = (uint8_t)flags;
    h[2] = (uint8_t)op;
    h[3] = 0;
    h[4] = (uint8_t)origin;
    h[5] = (uint8_t)(origin >> 8);
    h[6] = (uint8_t)tlen;
    h[7] = (uint8_t)(tlen >> 8);
    for (int i = 0; i < 4; i++)
        h[8 + i] = (uint8_t)(total >> (8 * i));
}

static void queue(dest_t *d, const struct iovec *iov, int niov, size_t len)
{
    pend_t *p = ws_malloc(sizeof *p + len);
    p->next = NULL;
    p->len = 0;
    for (int i = 0; i < niov; i++) {
        memcpy(p->data + p->len, iov[i].iov_base, iov[i].iov_len);
        p->len += iov[i].iov_len;
    }
    *d->tail = p;
    d->tail = &p->next;
    d->bytes += len;
    ws_mem_add(WS_MEM_QUEUE, len);
    if (!d->polling) {
        d->polling = 1;
        uv_poll_start(&d->poll, UV_WRITABLE, on_tx);
    }
}

/* 1 when the socket took it, 0 when it is full, -1 on another error. */
static int put(dest_t *d, const struct iovec *iov, int niov)
{
    struct msghdr mh = {.msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)niov};
    if (sendmsg(d->fd, &mh, MSG_DONTWAIT | MSG_NOSIGNAL) >= 0)
        return 1;
    return errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS ? 0 : -1;
}

static void caught_up(dest_t *d, unsigned w)
{
    if (d->behind) {
        ws_log_warn("worker %u caught up with publishes; %llu were dropped for it", w,
                    (unsigned long long)d->dropped_episode);
        d->behind = 0;
        d->dropped_episode = 0;
    }
}

static void on_tx(uv_poll_t *h, int status, int events)
{
    dest_t *d = h->data;
    (void)events;
    while (d->head) {
        struct iovec iov = {d->head->data, d->head->len};
        int r = status < 0 ? -1 : put(d, &iov, 1);
        if (r == 0)
            return;
        pend_t *p = d->head;
        d->head = p->next;
        d->bytes -= p->len;
        ws_mem_sub(WS_MEM_QUEUE, p->len);
        free(p);
    }
    d->tail = &d->head;
    d->polling = 0;
    uv_poll_stop(&d->poll);
    caught_up(d, (unsigned)(d - d->m->dest) + 1);
}

static void send_to(ws_mailbox_t *m, dest_t *d, const char *topic, size_t tlen, unsigned op,
                    const void *data, size_t dlen)
{
    size_t total = tlen + dlen, frags = total / FRAG + 1;
    unsigned w = (unsigned)(d - m->dest) + 1;
    if (d->bytes + total + frags * HDR > m->max_pending) {
        m->dropped++;
        d->dropped_episode++;
        if (!d->behind) {
            d->behind = 1;
            ws_log_warn("worker %u falls behind: %zu bytes of publishes wait for it; "
                        "dropping the next ones for it until it catches up",
                        w, d->bytes);
        }
        return;
    }
    m->sent++;
    size_t off = 0;
    do {
        size_t take = total - off < FRAG ? total - off : FRAG;
        unsigned flags = (off == 0 ? F_FIRST : 0) | (off + take == total ? F_LAST : 0);
        uint8_t h[HDR];
        header(h, flags, op, m->self, tlen, total);
        /* The fragment's bytes: a slice of topic then data. */
        struct iovec iov[3] = {{h, HDR}};
        int n = 1;
        if (off < tlen) {
            size_t t = tlen - off < take ? tlen - off : take;
            iov[n++] = (struct iovec){(char *)topic + off, t};
            if (take > t)
                iov[n++] = (struct iovec){(void *)data, take - t};
        } else {
            iov[n++] = (struct iovec){(char *)data + (off - tlen), take};
        }
        int r = d->head ? 0 : put(d, iov, n);
        if (r == 0)
            queue(d, iov, n, HDR + take);
        else if (r < 0)
            return; /* the mailbox is gone: nothing will read it */
        off += take;
    } while (off < total);
}

void ws_mailbox_send(ws_mailbox_t *m, const char *topic, size_t tlen, unsigned op,
                     const void *data, size_t dlen)
{
    if (m->closing || tlen > 0xffff)
        return;
    for (unsigned i = 0; i < m->n; i++)
        if (i + 1 != m->self)
            send_to(m, &m->dest[i], topic, tlen, op, data, dlen);
}

void ws_mailbox_counts(const ws_mailbox_t *m, uint64_t *sent, uint64_t *received,
                       uint64_t *dropped)
{
    *sent = m->sent;
    *received = m->received;
    *dropped = m->dropped;
}

/* ---- closing ---- */

static void closed(ws_mailbox_t *m)
{
    if (--m->closing)
        return;
    for (unsigned i = 0; i < m->n; i++) {
        dest_t *d = &m->dest[i];
        while (d->head) {
            pend_t *p = d->head;
            d->head = p->next;
            ws_mem_sub(WS_MEM_QUEUE, p->len);
            free(p);
        }
        if (d->fd >= 0)
            close(d->fd);
        free(m->parts[i].buf);
    }
    close(m->rx);
    free(m->dest);
    free(m->parts);
    free(m->rbuf);
    free(m);
}

static void on_rx_closed(uv_handle_t *h) { closed(h->data); }
static void on_tx_closed(uv_handle_t *h) { closed(((dest_t *)h->data)->m); }

void ws_mailbox_close(ws_mailbox_t *m)
{
    if (!m || m->closing)
        return;
    m->closing = 1;
    uv_close((uv_handle_t *)&m->rx_poll, on_rx_closed);
    for (unsigned i = 0; i < m->n; i++) {
        if (m->dest[i].fd >= 0) {
            m->closing++;
            uv_close((uv_handle_t *)&m->dest[i].poll, on_tx_closed);
        }
    }
}
