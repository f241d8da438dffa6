/* wbtls: TLS for wsbench's connections through OpenSSL memory BIOs, so that wbconn's loops
 * (epoll and io_uring) keep doing the socket I/O: ciphertext read from a socket goes in with
 * wb_tls_put(), plaintext comes out of wb_tls_read(); plaintext frames go in with wb_tls_write()
 * (held until the handshake is done, then encrypted) and the ciphertext to send comes out of
 * wb_tls_take(). Built only into wsbench (WB_HAVE_TLS), a benchmark client: certificates are not
 * verified (the server uses a throw-away self-signed one), and every connection does a full
 * handshake (no session is ever resumed). */
#ifndef WB_TLS_H
#define WB_TLS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct wb_tls wb_tls_t;

/* Makes the client context. `version` is 0 (any), 12 (TLS 1.2 only) or 13 (TLS 1.3 only).
 * Returns 0, or -1 with a message on stderr. */
int wb_tls_global_init(int version);

/* A client session for one connection (SNI "localhost"); NULL when out of memory. */
wb_tls_t *wb_tls_new(void);
void wb_tls_free(wb_tls_t *t);

/* Ciphertext from the socket. */
void wb_tls_put(wb_tls_t *t, const uint8_t *p, size_t n);

/* Decrypted bytes into buf: > 0 bytes, 0 when nothing more can be decrypted now, -1 on a fatal
 * error or a close_notify. Drives the handshake too. */
ssize_t wb_tls_read(wb_tls_t *t, uint8_t *buf, size_t cap);

/* Plaintext to send: encrypted now if the handshake is done, else held until it is. Returns 0,
 * or -1 on a fatal error. */
int wb_tls_write(wb_tls_t *t, const uint8_t *p, size_t n);

/* Ciphertext waiting to be sent, and taking up to `cap` of it. */
size_t wb_tls_pending(wb_tls_t *t);
size_t wb_tls_take(wb_tls_t *t, uint8_t *buf, size_t cap);

/* 1 once the handshake completed; the negotiated version and cipher for the report. */
int wb_tls_done(wb_tls_t *t);
const char *wb_tls_describe(wb_tls_t *t);

/* The last OpenSSL error, for a close reason. */
const char *wb_tls_error(void);

#endif
