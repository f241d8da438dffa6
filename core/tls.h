/*
 * tls.h: TLS (OpenSSL 3) as a transport. A TLS transport wraps another one
 * (tcp), owns it, and is a transport itself: the connection above reads and
 * writes plaintext and never knows. OpenSSL does no I/O of its own: a BIO of
 * ours hands it the ciphertext the inner transport read (from the loop's
 * shared read buffer, no copy) and collects what it writes, which goes out
 * through the inner transport (so through io_uring when the loop has one).
 *
 * Contexts (tlsctx.c) hold the certificate, the protocol settings and the
 * session ticket keys; a context is reference counted, so a reload makes a
 * new one for new handshakes while live connections keep theirs.
 *
 * Queue bounds above count plaintext: a write is encrypted whole when it is
 * handed over, and its ciphertext lives here until the inner transport has
 * sent it. Loop thread only.
 */
#ifndef WS_TLS_H
#define WS_TLS_H

#include <stddef.h>

#include "transport.h"

typedef struct ws_tls_ctx_s ws_tls_ctx_t;

/* Session ticket keys: the same ones across reloads (and, given to each,
 * across processes), so that a resumed session survives both. */
typedef struct {
    unsigned char name[16], hmac[32], aes[32];
} ws_tls_ticket_key_t;

typedef struct {
    const char *cert_file;    /* PEM: the certificate, then its chain */
    const char *key_file;     /* PEM private key */
    int min_version;          /* 12 or 13 */
    const char *ciphers;      /* TLS 1.2 (OpenSSL syntax); NULL: ours */
    const char *ciphersuites; /* TLS 1.3; NULL: OpenSSL's */
    const ws_tls_ticket_key_t *ticket_key; /* NULL: a random one */
} ws_tls_server_opts_t;

/* A server context. NULL with a one-line reason in err (which file, what is
 * wrong). A certificate out of its validity period is not refused: *warn
 * (if warn is not NULL) gets the line to log. */
ws_tls_ctx_t *ws_tls_server_ctx(const ws_tls_server_opts_t *o, char *err, size_t errlen,
                                char *warn, size_t warnlen);
/* A client context verifying peers against the system's store (or the file
 * named by SSL_CERT_FILE, as OpenSSL reads it). */
ws_tls_ctx_t *ws_tls_client_ctx(char *err, size_t errlen);
/* Drop a reference; connections made from ctx keep theirs. */
void ws_tls_ctx_free(ws_tls_ctx_t *ctx);
/* A fresh random ticket key. */
void ws_tls_ticket_key_random(ws_tls_ticket_key_t *k);

/* Wrap inner (a transport nobody has started) as the server side of a TLS
 * connection; the result owns inner. */
ws_transport_t *ws_tls_server(ws_tls_ctx_t *ctx, ws_transport_t *inner);
/* The client side: host goes out as SNI and, when verify is set, must be
 * what the certificate names (a name or an IP literal). */
ws_transport_t *ws_tls_client(ws_tls_ctx_t *ctx, ws_transport_t *inner, const char *host, int verify);
/* Is t a TLS transport? */
int ws_tls_is(const ws_transport_t *t);
/* Why the TLS layer failed ("certificate verify failed: ..."), or NULL. */
const char *ws_tls_error(const ws_transport_t *t);
/* The handshake resumed a session. */
int ws_tls_resumed(const ws_transport_t *t);

#endif
