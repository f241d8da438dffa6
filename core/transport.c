/* The part of a transport that every kind shares: pausing with reasons, the
 * stash of bytes given back, deferred work, the peer's address. */
#include "transport.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "mem.h"
#include "ring.h"

void ws_io_init(ws_io_t *io, uv_loop_t *loop)
{
    memset(io, 0, sizeof *io);
    io->loop = loop;
    io->rbuf_len = WS_IO_READ_BUF;
    io->rbuf = ws_malloc(io->rbuf_len);
}

void ws_io_free(ws_io_t *io)
{
    ws_ring_free(io->ring);
    io->ring = NULL;
    free(io->ready);
    io->ready = NULL;
    io->nready = io->ready_cap = 0;
    free(io->rbuf);
    io->rbuf = NULL;
}

int ws_io_run(ws_io_t *io)
{
    int n = 0;
    if (io->ring) {
        ws_ring_submit(io->ring);
        n += ws_ring_reap(io->ring);
    }
    /* Work deferred while walking may defer more: take the list first. */
    ws_transport_t **list = io->ready;
    uint32_t count = io->nready;
    io->ready = NULL;
    io->nready = io->ready_cap = 0;
    for (uint32_t i = 0; i < count; i++) {
        ws_transport_t *t = list[i];
        if (!t)
            continue; /* closed since it was deferred */
        t->ready_idx = 0;
        t->vt->run(t);
        n++;
    }
    free(list);
    return n;
}

void ws_write_release(ws_write_t *w)
{
    free(w->_uv);
    w->_uv = NULL;
}

void ws_transport_init(ws_transport_t *t, const ws_transport_vt_t *vt)
{
    memset(t, 0, sizeof *t);
    t->vt = vt;
}

void ws_transport_defer(ws_transport_t *t)
{
    ws_io_t *io = t->vt->io(t);
    if (t->ready_idx)
        return;
    if (io->nready == io->ready_cap) {
        io->ready_cap = io->ready_cap ? io->ready_cap * 2 : 16;
        io->ready = ws_realloc(io->ready, io->ready_cap * sizeof *io->ready);
    }
    io->ready[io->nready++] = t;
    t->ready_idx = io->nready;
}

/* Read while the owner wants bytes; watch while it is paused for the host
 * only (WS_PAUSE_WATCHED). */
static void sync_read(ws_transport_t *t)
{
    int mode = !t->reading || t->closing ? WS_READ_OFF
               : !t->paused             ? WS_READ_ON
               : !(t->paused & ~WS_PAUSE_WATCHED) ? WS_READ_WATCH
                                                  : WS_READ_OFF;
    if (mode != t->read_mode) {
        t->read_mode = (uint8_t)mode;
        t->vt->read(t, mode);
    }
}

void ws_transport_start(ws_transport_t *t, const ws_transport_cb_t *cb, void *ud)
{
    t->cb = cb;
    t->ud = ud;
    t->reading = 1;
    sync_read(t);
}

void ws_transport_pause(ws_transport_t *t, unsigned reason)
{
    t->paused |= (uint8_t)reason;
    sync_read(t);
}

void ws_transport_resume(ws_transport_t *t, unsigned reason)
{
    if (!(t->paused & reason))
        return;
    t->paused &= (uint8_t)~reason;
    sync_read(t);
    /* Stashed bytes go out from ws_io_run, not from inside the caller,
     * which may be in the middle of its own work on the connection. */
    if (t->read_mode == WS_READ_ON && t->stash)
        ws_transport_defer(t);
}

void ws_transport_follow(ws_transport_t *inner, unsigned paused)
{
    inner->paused = (uint8_t)paused;
    sync_read(inner);
    if (inner->read_mode == WS_READ_ON && inner->stash)
        ws_transport_defer(inner);
}

void ws_transport_unread(ws_transport_t *t, const uint8_t *data, size_t len)
{
    if (!len)
        return;
    /* New bytes go after older ones the owner still has not taken. */
    size_t old = t->stash ? t->stash->len : 0;
    ws_stash_t *s = ws_malloc(sizeof *s + old + len);
    if (old)
        memcpy(s->data, t->stash->data, old);
    memcpy(s->data + old, data, len);
    s->len = old + len;
    ws_mem_add(WS_MEM_BUFFERS, len);
    free(t->stash);
    t->stash = s;
}

/* Hand the owner the stash, then data, as long as it does not pause again. */
void ws_transport_deliver(ws_transport_t *t, uint8_t *data, size_t len)
{
    if (t->stash) {
        ws_stash_t *s = t->stash;
        t->stash = NULL;
        ws_mem_sub(WS_MEM_BUFFERS, s->len);
        if (t->paused || t->closing) {
            ws_transport_unread(t, s->data, s->len);
        } else {
            /* The owner may stash part of it again (and pause): that lands in
             * a fresh stash, and data goes after it. */
            t->cb->on_read(t->ud, s->data, s->len);
        }
        free(s);
    }
    if (!len || t->closing)
        return;
    if (t->paused || t->stash) {
        ws_transport_unread(t, data, len);
    } else {
        t->cb->on_read(t->ud, data, len);
    }
}

void ws_transport_close(ws_transport_t *t)
{
    if (t->closing)
        return;
    t->closing = 1;
    /* Work deferred before the close is void; a kind's close may defer its
     * own last step again (vt->run sees closing set). */
    if (t->ready_idx) {
        t->vt->io(t)->ready[t->ready_idx - 1] = NULL;
        t->ready_idx = 0;
    }
    if (t->stash)
        ws_mem_sub(WS_MEM_BUFFERS, t->stash->len);
    free(t->stash);
    t->stash = NULL;
    t->vt->close(t);
}

void ws_transport_set_peer(ws_transport_t *t, const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)sa;
        memcpy(t->peer_addr, &a->sin6_addr, 16);
        t->peer_port = ntohs(a->sin6_port);
        t->peer_v6 = 1;
        t->peer_known = 1;
    } else if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)sa;
        memcpy(t->peer_addr, &a->sin_addr, 4);
        t->peer_port = ntohs(a->sin_port);
        t->peer_v6 = 0;
        t->peer_known = 1;
    }
}

void ws_transport_ip(const ws_transport_t *t, char *out, size_t len)
{
    char ip[INET6_ADDRSTRLEN] = "?";
    if (t->peer_known)
        uv_inet_ntop(t->peer_v6 ? AF_INET6 : AF_INET, t->peer_addr, ip, sizeof ip);
    snprintf(out, len, "%s", ip);
}

void ws_transport_peer(const ws_transport_t *t, char *out, size_t len)
{
    char ip[INET6_ADDRSTRLEN];
    ws_transport_ip(t, ip, sizeof ip);
    snprintf(out, len, t->peer_v6 ? "[%s]:%u" : "%s:%u", ip, t->peer_port);
}
