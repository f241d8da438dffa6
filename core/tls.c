/* TLS as a transport: see tls.h. */
#include "tls_int.h"

#include <arpa/inet.h>
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "buf.h"
#include "log.h"
#include "stats.h"

/* The plaintext of one record (at most 16 KiB) on its way to the owner, who
 * takes it or copies it out before the next: one for the loop thread. */
static uint8_t plain[16384];

typedef struct {
    ws_transport_t base; /* first: the owner's view */
    ws_transport_t *inner;
    ws_io_t *io;
    ws_tls_ctx_t *ctx;
    SSL *ssl;
    const uint8_t *in; /* ciphertext the inner transport read, being fed */
    size_t in_len;
    ws_buf_t out;      /* ciphertext made, not yet handed to the inner transport */
    ws_buf_t flight;   /* ciphertext the inner write is sending */
    ws_write_t iw;     /* that write */
    uv_buf_t iov;
    uint64_t made, sent; /* ciphertext bytes, ever */
    ws_write_t *w;       /* the owner's write */
    uint64_t w_mark;     /* it is sent once `sent` reaches this */
    char *error;
    /* ended: the owner has heard, or will hear (eof_due), the end of what the
     * peer sends; broken: TLS failed, nothing more can be written. */
    unsigned client : 1, started : 1, hs_done : 1, w_sealed : 1, w_waited : 1, in_flight : 1,
        shut_wanted : 1, ended : 1, eof_due : 1, broken : 1, inner_closed : 1;
} ws_tls_t;

static const ws_transport_vt_t tls_vt;

/* --- the BIO: OpenSSL reads t->in and writes to t->out --- */

static int bio_read(BIO *b, char *buf, int len)
{
    ws_tls_t *t = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    if (!t->in_len) {
        BIO_set_retry_read(b);
        return -1;
    }
    size_t n = t->in_len < (size_t)len ? t->in_len : (size_t)len;
    memcpy(buf, t->in, n);
    t->in += n;
    t->in_len -= n;
    return (int)n;
}

static int bio_write(BIO *b, const char *buf, int len)
{
    ws_tls_t *t = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    ws_buf_append(&t->out, buf, (size_t)len);
    t->made += (uint64_t)len;
    return len;
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    (void)b;
    (void)num;
    (void)ptr;
    return cmd == BIO_CTRL_FLUSH ? 1 : 0;
}

static int bio_create(BIO *b)
{
    BIO_set_init(b, 1);
    return 1;
}

static BIO_METHOD *bio_method(void)
{
    static BIO_METHOD *m;
    if (!m) {
        m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "wspush");
        BIO_meth_set_read(m, bio_read);
        BIO_meth_set_write(m, bio_write);
        BIO_meth_set_ctrl(m, bio_ctrl);
        BIO_meth_set_create(m, bio_create);
    }
    return m;
}

/* --- failing --- */

static void set_error(ws_tls_t *t, int e)
{
    char buf[256];
    const char *why;
    long vr = t->client ? SSL_get_verify_result(t->ssl) : X509_V_OK;
    unsigned long code = ERR_peek_last_error();
    if (vr != X509_V_OK) {
        snprintf(buf, sizeof buf, "certificate verify failed: %s", X509_verify_cert_error_string(vr));
        why = buf;
    } else if (code) {
        ERR_error_string_n(code, buf, sizeof buf);
        char *p = strstr(buf, "::");
        why = p ? p + 2 : buf;
    } else if (e == SSL_ERROR_SYSCALL) {
        why = "unexpected end of stream";
    } else {
        why = "protocol error";
    }
    ERR_clear_error();
    if (!t->error) {
        size_t n = strlen(why) + 1;
        t->error = ws_malloc(n);
        memcpy(t->error, why, n);
    }
}

static void flush(ws_tls_t *t);

/* TLS failed: the alert OpenSSL made goes out if it can; the owner hears an
 * end of stream with UV_EPROTO. */
static void fail(ws_tls_t *t, int e)
{
    set_error(t, e);
    if (ws_log_get_level() >= WS_LOG_DEBUG) {
        char peer[WS_REMOTE_MAX];
        ws_transport_peer(&t->base, peer, sizeof peer);
        ws_log_debug("TLS with %s: %s", peer, t->error);
    }
    flush(t); /* the alert OpenSSL made */
    t->ended = t->broken = 1;
    if (!t->base.closing)
        t->base.cb->on_end(t->base.ud, UV_EPROTO);
}

/* --- writing --- */

static void complete(ws_tls_t *t, int status)
{
    ws_write_t *w = t->w;
    t->w = NULL;
    t->w_sealed = 0;
    w->unsent = 0;
    w->cb(w, status, t->w_waited);
}

static void maybe_free(ws_tls_t *t)
{
    if (!t->inner_closed || t->in_flight)
        return;
    ws_buf_free(&t->out);
    ws_buf_free(&t->flight);
    SSL_free(t->ssl);
    ws_tls_ctx_free(t->ctx);
    free(t->error);
    free(t);
}

static void flight_done(ws_write_t *iw, int status, int waited)
{
    ws_tls_t *t = iw->data;
    ws_write_release(iw);
    t->in_flight = 0;
    t->sent += t->flight.len;
    t->flight.len = 0;
    /* Idle connections keep no ciphertext buffer. */
    ws_buf_free(&t->flight);
    if (waited)
        t->w_waited = 1;
    if (t->inner_closed || t->base.closing || status < 0) {
        if (t->w && (t->inner_closed || status < 0))
            complete(t, status < 0 ? status : UV_ECANCELED);
        maybe_free(t);
        return;
    }
    if (t->w && t->w_sealed && t->sent >= t->w_mark)
        complete(t, 0);
    flush(t);
    if (t->eof_due)
        ws_transport_defer(&t->base); /* the end may be told now */
}

/* Hand what OpenSSL made to the inner transport, one write at a time; then
 * the orderly end of the inner stream if it was asked for. */
static void flush(ws_tls_t *t)
{
    if (t->in_flight || t->inner_closed || !t->started || t->broken)
        return;
    if (t->out.len == 0) {
        if (t->shut_wanted && !t->base.closing) {
            t->shut_wanted = 0;
            ws_transport_shutdown(t->inner);
        }
        return;
    }
    ws_buf_t b = t->flight;
    t->flight = t->out;
    t->out = b;
    t->iov = uv_buf_init((char *)t->flight.data, (unsigned)t->flight.len);
    memset(&t->iw, 0, sizeof t->iw);
    t->iw.iov = &t->iov;
    t->iw.n = 1;
    t->iw.unsent = t->flight.len;
    t->iw.cb = flight_done;
    t->iw.data = t;
    t->in_flight = 1;
    if (ws_transport_write(t->inner, &t->iw) < 0) {
        t->in_flight = 0;
        t->flight.len = 0;
        t->broken = 1;
        if (!t->ended) {
            t->ended = 1;
            if (!t->base.closing)
                t->base.cb->on_end(t->base.ud, UV_EPIPE);
        }
    }
}

/* Encrypt some bytes of the owner's write: 0, or an SSL error. */
static int seal_bytes(ws_tls_t *t, const uint8_t *p, size_t left)
{
    while (left) {
        size_t n = 0;
        int r = SSL_write_ex(t->ssl, p, left, &n);
        if (r != 1)
            return SSL_get_error(t->ssl, r);
        p += n;
        left -= n;
    }
    return 0;
}

/* Encrypt the owner's write whole. Its pieces (a fan-out write has one per
 * message) are gathered into records of up to 16 KiB: one SSL_write per
 * piece would make a record each, and a record costs ~8,000 instructions of
 * OpenSSL's before any encryption. The gathering buffer is the loop's. */
static int seal(ws_tls_t *t)
{
    static uint8_t gather[16384];
    ws_write_t *w = t->w;
    size_t g = 0;
    int e = 0;
    ERR_clear_error();
    for (uint32_t i = 0; i < w->n && !e; i++) {
        const uint8_t *p = (const uint8_t *)w->iov[i].base;
        size_t left = w->iov[i].len;
        if (g == 0 && left >= sizeof gather) {
            e = seal_bytes(t, p, left); /* large: as it is */
            continue;
        }
        while (left && !e) {
            size_t n = sizeof gather - g < left ? sizeof gather - g : left;
            memcpy(gather + g, p, n);
            g += n;
            p += n;
            left -= n;
            if (g == sizeof gather) {
                e = seal_bytes(t, gather, g);
                g = 0;
            }
        }
    }
    if (!e && g)
        e = seal_bytes(t, gather, g);
    if (e)
        return e;
    t->w_sealed = 1;
    t->w_mark = t->made;
    /* Nothing to send (an empty write): complete from the loop. */
    if (!t->in_flight && !t->out.len && t->sent >= t->w_mark)
        ws_transport_defer(&t->base);
    return 0;
}

static int tls_write(ws_transport_t *bt, ws_write_t *w)
{
    ws_tls_t *t = (ws_tls_t *)bt;
    assert(!t->w);
    if (bt->closing || t->broken)
        return UV_ECANCELED;
    w->_t = bt;
    t->w = w;
    t->w_waited = 0;
    t->w_sealed = 0;
    if (t->hs_done) {
        int e = seal(t);
        if (e) {
            t->w = NULL;
            set_error(t, e);
            return UV_EPROTO;
        }
        flush(t);
    }
    return 0;
}

/* --- reading --- */

/* Feed what arrived: finish the handshake, then give the owner every whole
 * record's plaintext (stashed by the generic layer while it is paused). */
static void pump(ws_tls_t *t)
{
    if (!t->hs_done) {
        ERR_clear_error();
        int r = SSL_do_handshake(t->ssl);
        if (r != 1) {
            int e = SSL_get_error(t->ssl, r);
            if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
                if (!t->client)
                    ws_stats_inc(WS_STAT_TLS_FAILED);
                fail(t, e);
            }
            return;
        }
        t->hs_done = 1;
        if (!t->client)
            ws_stats_inc(WS_STAT_TLS_DONE);
        t->base.hs_pending = 0;
        if (t->w) {
            int e = seal(t);
            if (e) {
                fail(t, e);
                return;
            }
        }
    }
    while (!t->base.closing && !t->ended) {
        size_t n = 0;
        ERR_clear_error();
        int r = SSL_read_ex(t->ssl, plain, sizeof plain, &n);
        if (r == 1) {
            ws_transport_deliver(&t->base, plain, n);
            continue;
        }
        int e = SSL_get_error(t->ssl, r);
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
            break;
        if (e == SSL_ERROR_ZERO_RETURN) {
            /* close_notify: what follows it is ignored. The peer may still
             * read (TLS 1.3 closes one direction): as a TCP end would, the
             * end reaches the owner after this turn's answers have gone. */
            t->ended = t->eof_due = 1;
            ws_transport_defer(&t->base);
            break;
        }
        fail(t, e);
        break;
    }
}

static void in_read(void *ud, uint8_t *data, size_t len)
{
    ws_tls_t *t = ud;
    if (t->ended || t->base.closing)
        return;
    t->in = data;
    t->in_len = len;
    pump(t);
    t->in = NULL;
    t->in_len = 0;
    flush(t);
}

static void in_end(void *ud, int err)
{
    ws_tls_t *t = ud;
    if (t->ended || t->base.closing)
        return;
    t->ended = 1;
    /* An end without close_notify may be a truncation attack; to the
     * connection above it is the end of the stream either way. */
    t->base.cb->on_end(t->base.ud, err);
}

static void in_shutdown(void *ud, int status)
{
    ws_tls_t *t = ud;
    if (!t->base.closing)
        t->base.cb->on_shutdown(t->base.ud, status);
}

static void in_close(void *ud)
{
    ws_tls_t *t = ud;
    t->inner_closed = 1;
    t->inner = NULL;
    if (t->w && !t->in_flight)
        complete(t, UV_ECANCELED);
    if (t->base.cb)
        t->base.cb->on_close(t->base.ud);
    maybe_free(t);
}

static const ws_transport_cb_t inner_cb = {
    .on_read = in_read,
    .on_end = in_end,
    .on_shutdown = in_shutdown,
    .on_close = in_close,
};

/* --- the transport's operations --- */

static void tls_read(ws_transport_t *bt, int mode)
{
    ws_tls_t *t = (ws_tls_t *)bt;
    if (!t->started && mode != WS_READ_OFF) {
        t->started = 1;
        ws_transport_start(t->inner, &inner_cb, t);
        if (t->client) {
            ERR_clear_error();
            int r = SSL_do_handshake(t->ssl); /* the ClientHello */
            int e = SSL_get_error(t->ssl, r);
            if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
                fail(t, e);
                return;
            }
            flush(t);
        }
    }
    if (t->started)
        ws_transport_follow(t->inner, bt->paused);
}

static void tls_shutdown(ws_transport_t *bt)
{
    ws_tls_t *t = (ws_tls_t *)bt;
    if (t->hs_done && !t->broken) {
        ERR_clear_error();
        SSL_shutdown(t->ssl); /* close_notify, into out */
        ERR_clear_error();
    }
    t->shut_wanted = 1;
    if (!t->started) {
        t->started = 1;
        ws_transport_start(t->inner, &inner_cb, t);
        ws_transport_follow(t->inner, WS_PAUSE_BACKPRESSURE);
    }
    flush(t);
}

static void tls_close(ws_transport_t *bt)
{
    ws_tls_t *t = (ws_tls_t *)bt;
    if (!t->started) {
        /* Never started: the inner transport has no owner to tell. */
        t->started = 1;
        ws_transport_start(t->inner, &inner_cb, t);
        ws_transport_follow(t->inner, WS_PAUSE_BACKPRESSURE);
    }
    ws_transport_close(t->inner);
}

static void tls_run(ws_transport_t *bt)
{
    ws_tls_t *t = (ws_tls_t *)bt;
    if (bt->closing)
        return;
    if (t->w && t->w_sealed && !t->in_flight && t->sent >= t->w_mark)
        complete(t, 0);
    if (bt->stash && bt->read_mode == WS_READ_ON && !bt->closing)
        ws_transport_deliver(bt, NULL, 0);
    if (t->eof_due && !bt->closing && !bt->stash && !t->w && !t->in_flight && !t->out.len) {
        t->eof_due = 0;
        bt->cb->on_end(bt->ud, UV_EOF);
    }
}

static ws_io_t *tls_io(ws_transport_t *bt) { return ((ws_tls_t *)bt)->io; }

static size_t tls_unsent(ws_transport_t *bt)
{
    ws_tls_t *t = (ws_tls_t *)bt;
    if (!t->w)
        return 0;
    if (!t->w_sealed)
        return t->w->unsent;
    /* Ciphertext of it still here or in the inner write, as a measure of
     * progress (the owner compares it with what it saw before). */
    uint64_t done = t->sent;
    if (t->in_flight && t->inner)
        done += t->flight.len - ws_transport_unsent(t->inner);
    uint64_t left = t->w_mark > done ? t->w_mark - done : 0;
    return left < t->w->unsent ? (size_t)left : t->w->unsent;
}

static const ws_transport_vt_t tls_vt = {
    .name = "tls",
    .read = tls_read,
    .write = tls_write,
    .shutdown = tls_shutdown,
    .close = tls_close,
    .run = tls_run,
    .io = tls_io,
    .unsent = tls_unsent,
};

/* --- making one --- */

static ws_tls_t *tls_new(ws_tls_ctx_t *ctx, ws_transport_t *inner)
{
    ws_tls_t *t = ws_calloc(1, sizeof *t);
    ws_transport_init(&t->base, &tls_vt);
    t->inner = inner;
    t->io = inner->vt->io(inner);
    t->ctx = ctx;
    ws_tls_ctx_ref(ctx);
    t->ssl = SSL_new(ctx->ssl);
    if (!t->ssl)
        abort(); /* out of memory inside OpenSSL */
    BIO *b = BIO_new(bio_method());
    BIO_set_data(b, t);
    SSL_set_bio(t->ssl, b, b);
    t->base.hs_pending = 1;
    /* The peer is the inner transport's. */
    t->base.peer_v6 = inner->peer_v6;
    t->base.peer_known = inner->peer_known;
    t->base.peer_port = inner->peer_port;
    memcpy(t->base.peer_addr, inner->peer_addr, sizeof t->base.peer_addr);
    return t;
}

ws_transport_t *ws_tls_server(ws_tls_ctx_t *ctx, ws_transport_t *inner)
{
    ws_tls_t *t = tls_new(ctx, inner);
    SSL_set_accept_state(t->ssl);
    return &t->base;
}

ws_transport_t *ws_tls_client(ws_tls_ctx_t *ctx, ws_transport_t *inner, const char *host, int verify)
{
    ws_tls_t *t = tls_new(ctx, inner);
    t->client = 1;
    SSL_set_connect_state(t->ssl);
    unsigned char ip[16];
    int is_ip = inet_pton(AF_INET, host, ip) == 1 || inet_pton(AF_INET6, host, ip) == 1;
    if (!is_ip)
        SSL_set_tlsext_host_name(t->ssl, host);
    if (verify) {
        SSL_set_verify(t->ssl, SSL_VERIFY_PEER, NULL);
        X509_VERIFY_PARAM *p = SSL_get0_param(t->ssl);
        if (is_ip)
            X509_VERIFY_PARAM_set1_ip_asc(p, host);
        else
            X509_VERIFY_PARAM_set1_host(p, host, 0);
    }
    return &t->base;
}

int ws_tls_is(const ws_transport_t *t) { return t->vt == &tls_vt; }

const char *ws_tls_error(const ws_transport_t *t)
{
    return ws_tls_is(t) ? ((const ws_tls_t *)t)->error : NULL;
}

int ws_tls_resumed(const ws_transport_t *t)
{
    return ws_tls_is(t) && SSL_session_reused(((const ws_tls_t *)t)->ssl);
}
