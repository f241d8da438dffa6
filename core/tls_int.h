/* What tls.c and tlsctx.c share; nothing else includes OpenSSL. */
#ifndef WS_TLS_INT_H
#define WS_TLS_INT_H

#include <openssl/ssl.h>

#include "tls.h"

struct ws_tls_ctx_s {
    SSL_CTX *ssl;
    int refs; /* the owner's, and one per connection made from it */
    ws_tls_ticket_key_t key;
};

void ws_tls_ctx_ref(ws_tls_ctx_t *c);

#endif
