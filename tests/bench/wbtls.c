/* TLS for wsbench through memory BIOs: see wbtls.h. */
#include "wbtls.h"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct wb_tls {
    SSL *ssl;
    BIO *in, *out; /* memory BIOs: ciphertext from the socket, ciphertext to send */
    uint8_t *held; /* plaintext queued before the handshake finished */
    size_t held_len, held_cap;
};

static SSL_CTX *ctx;

int wb_tls_global_init(int version)
{
    ctx = SSL_CTX_new(TLS_client_method());
    if (ctx == NULL)
        goto err;
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    /* 10k connections: the generator too gives its record buffers back when idle. */
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
    if (version == 12) {
        SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
        SSL_CTX_set_max_proto_version(ctx, TLS1_2_VERSION);
    } else if (version == 13) {
        SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
        SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION);
    }
    return 0;
err:
    fprintf(stderr, "wsbench: TLS context: %s\n", wb_tls_error());
    return -1;
}

wb_tls_t *wb_tls_new(void)
{
    wb_tls_t *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return NULL;
    t->ssl = SSL_new(ctx);
    t->in = BIO_new(BIO_s_mem());
    t->out = BIO_new(BIO_s_mem());
    if (t->ssl == NULL || t->in == NULL || t->out == NULL) {
        BIO_free(t->in);
        BIO_free(t->out);
        SSL_free(t->ssl);
        free(t);
        return NULL;
    }
    /* An empty memory BIO reads as "retry", not end of file. */
    BIO_set_mem_eof_return(t->in, -1);
    SSL_set_bio(t->ssl, t->in, t->out);
    SSL_set_connect_state(t->ssl);
    SSL_set_tlsext_host_name(t->ssl, "localhost");
    SSL_do_handshake(t->ssl); /* the ClientHello, into `out` */
    return t;
}

void wb_tls_free(wb_tls_t *t)
{
    if (t == NULL)
        return;
    SSL_free(t->ssl); /* frees both BIOs */
    free(t->held);
    free(t);
}

void wb_tls_put(wb_tls_t *t, const uint8_t *p, size_t n)
{
    BIO_write(t->in, p, (int)n);
}

static int flush_held(wb_tls_t *t)
{
    if (t->held_len == 0 || !SSL_is_init_finished(t->ssl))
        return 0;
    size_t done;
    int r = SSL_write_ex(t->ssl, t->held, t->held_len, &done);
    t->held_len = 0;
    return r == 1 ? 0 : -1;
}

ssize_t wb_tls_read(wb_tls_t *t, uint8_t *buf, size_t cap)
{
    size_t n = 0;
    if (SSL_read_ex(t->ssl, buf, cap, &n) == 1) {
        if (flush_held(t) < 0)
            return -1;
        return (ssize_t)n;
    }
    int e = SSL_get_error(t->ssl, 0);
    if (flush_held(t) < 0) /* the handshake may just have finished */
        return -1;
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
        return 0;
    return -1;
}

int wb_tls_write(wb_tls_t *t, const uint8_t *p, size_t n)
{
    if (!SSL_is_init_finished(t->ssl) || t->held_len) {
        if (t->held_len + n > t->held_cap) {
            size_t cap = t->held_cap ? t->held_cap * 2 : 512;
            while (cap < t->held_len + n)
                cap *= 2;
            uint8_t *q = realloc(t->held, cap);
            if (q == NULL)
                return -1;
            t->held = q;
            t->held_cap = cap;
        }
        memcpy(t->held + t->held_len, p, n);
        t->held_len += n;
        return flush_held(t);
    }
    size_t done;
    return SSL_write_ex(t->ssl, p, n, &done) == 1 ? 0 : -1;
}

size_t wb_tls_pending(wb_tls_t *t)
{
    return BIO_ctrl_pending(t->out);
}

size_t wb_tls_take(wb_tls_t *t, uint8_t *buf, size_t cap)
{
    int r = BIO_read(t->out, buf, (int)cap);
    return r > 0 ? (size_t)r : 0;
}

int wb_tls_done(wb_tls_t *t)
{
    return SSL_is_init_finished(t->ssl);
}

const char *wb_tls_describe(wb_tls_t *t)
{
    static char s[96];
    snprintf(s, sizeof(s), "%s %s", SSL_get_version(t->ssl), SSL_get_cipher_name(t->ssl));
    return s;
}

const char *wb_tls_error(void)
{
    static char s[160];
    unsigned long e = ERR_get_error();
    if (e == 0)
        return "TLS error";
    ERR_error_string_n(e, s, sizeof(s));
    return s;
}
