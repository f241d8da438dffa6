/* The in-memory transport. */
#include "memio.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

struct ws_memio_s {
    ws_transport_t base;  /* first: a ws_memio_t is its transport */
    ws_io_t *io;
    ws_buf_t out;
    ws_write_t *w;        /* a write in flight */
    int hold;
    int read_mode;        /* WS_READ_* */
    int shut, shut_due;   /* shut: our side ended; shut_due: on_shutdown not yet told */
    int end_due;          /* the peer ended: on_end not yet told */
    int closed;           /* on_close has run */
    int freed;            /* the test let go; free on close */
};

static void complete(ws_memio_t *m, int status)
{
    ws_write_t *w = m->w;
    m->w = NULL;
    w->cb(w, status, w->_waited);
}

static void mem_run(ws_transport_t *t)
{
    ws_memio_t *m = (ws_memio_t *)t;
    if (m->closed)
        return;
    if (t->closing) {
        if (m->w)
            complete(m, UV_ECANCELED);
        m->closed = 1;
        if (t->cb)
            t->cb->on_close(t->ud);
        if (m->freed) {
            ws_buf_free(&m->out);
            free(m);
        }
        return;
    }
    if (m->w && !m->hold) {
        for (uint32_t i = 0; i < m->w->n; i++)
            ws_buf_append(&m->out, m->w->iov[i].base, m->w->iov[i].len);
        complete(m, 0);
    }
    if (t->closing)
        return;
    if (m->shut_due) {
        m->shut_due = 0;
        t->cb->on_shutdown(t->ud, 0);
    }
    if (t->closing)
        return;
    if (t->stash && !t->paused)
        ws_transport_deliver(t, NULL, 0);
    if (m->end_due && !t->closing && ((!t->paused && !t->stash) || ws_transport_watching(t))) {
        m->end_due = 0;
        t->cb->on_end(t->ud, UV_EOF);
    }
}

static void mem_read(ws_transport_t *t, int mode)
{
    ws_memio_t *m = (ws_memio_t *)t;
    m->read_mode = mode;
    if (mode != WS_READ_OFF && m->end_due)
        ws_transport_defer(t);
}

static int mem_write(ws_transport_t *t, ws_write_t *w)
{
    ws_memio_t *m = (ws_memio_t *)t;
    if (t->closing || m->w)
        return UV_EINVAL;
    m->w = w;
    w->_t = t;
    w->_waited = (unsigned)(m->hold != 0);
    ws_transport_defer(t);
    return 0;
}

static void mem_shutdown(ws_transport_t *t)
{
    ws_memio_t *m = (ws_memio_t *)t;
    m->shut = m->shut_due = 1;
    ws_transport_defer(t);
}

static void mem_close(ws_transport_t *t) { ws_transport_defer(t); }

static ws_io_t *mem_io(ws_transport_t *t) { return ((ws_memio_t *)t)->io; }

static size_t mem_unsent(ws_transport_t *t)
{
    ws_memio_t *m = (ws_memio_t *)t;
    return m->w ? m->w->unsent : 0;
}

static const ws_transport_vt_t mem_vt = {
    .name = "memory",
    .read = mem_read,
    .write = mem_write,
    .shutdown = mem_shutdown,
    .close = mem_close,
    .run = mem_run,
    .io = mem_io,
    .unsent = mem_unsent,
};

ws_memio_t *ws_memio_new(ws_io_t *io, const char *ip, int port)
{
    ws_memio_t *m = ws_calloc(1, sizeof *m);
    ws_transport_init(&m->base, &mem_vt);
    m->io = io;
    ws_buf_init(&m->out);
    struct sockaddr_storage ss;
    if (uv_ip4_addr(ip, port, (struct sockaddr_in *)&ss) == 0 ||
        uv_ip6_addr(ip, port, (struct sockaddr_in6 *)&ss) == 0)
        ws_transport_set_peer(&m->base, (struct sockaddr *)&ss);
    return m;
}

ws_transport_t *ws_memio_transport(ws_memio_t *m) { return &m->base; }

void ws_memio_free(ws_memio_t *m)
{
    if (m->closed || !m->base.cb) {
        /* Never started: nothing but the io may still know of it. */
        if (!m->closed && m->base.ready_idx)
            m->io->ready[m->base.ready_idx - 1] = NULL;
        assert(!m->base.stash); /* only a started transport keeps bytes */
        ws_buf_free(&m->out);
        free(m);
        return;
    }
    /* The owner still has it: the peer leaves, and the memory goes once the
     * owner has closed its side too. */
    m->freed = 1;
    ws_memio_end(m);
}

void ws_memio_feed(ws_memio_t *m, const void *data, size_t len)
{
    if (m->base.closing || !m->base.cb || !len)
        return;
    /* A copy: the owner may change what it reads in place. */
    uint8_t *copy = ws_malloc(len);
    memcpy(copy, data, len);
    ws_transport_deliver(&m->base, copy, len);
    free(copy);
}

void ws_memio_end(ws_memio_t *m)
{
    if (m->base.closing)
        return;
    m->end_due = 1;
    ws_transport_defer(&m->base);
}

const uint8_t *ws_memio_output(const ws_memio_t *m, size_t *len)
{
    *len = m->out.len;
    return m->out.data;
}

void ws_memio_consume(ws_memio_t *m, size_t n)
{
    if (n > m->out.len)
        n = m->out.len;
    if (n == 0)
        return;
    memmove(m->out.data, m->out.data + n, m->out.len - n);
    m->out.len -= n;
}

void ws_memio_hold(ws_memio_t *m, int hold)
{
    m->hold = hold;
    if (!hold && m->w && !m->base.closing)
        ws_transport_defer(&m->base);
}

int ws_memio_shut(const ws_memio_t *m) { return m->shut; }
int ws_memio_closed(const ws_memio_t *m) { return m->closed; }
int ws_memio_reading(const ws_memio_t *m) { return m->read_mode == WS_READ_ON && !m->base.closing; }
int ws_memio_watching(const ws_memio_t *m) { return m->read_mode == WS_READ_WATCH && !m->base.closing; }
