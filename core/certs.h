/*
 * certs.h: the server's TLS certificate, live. Loads --tls-cert and
 * --tls-key into a context, and loads them again on SIGHUP (the application
 * calls ws_certs_reload) and when either file changes: they are polled with
 * stat, which follows symbolic links, so certbot's swap of the link in
 * live/ to a new file in archive/ is seen as well as an edit in place. A new
 * pair that does not load (or whose key does not match) is refused with a
 * log line and the old one keeps serving; live connections keep theirs.
 * The session ticket key stays the same across reloads. Loop thread only.
 */
#ifndef WS_CERTS_H
#define WS_CERTS_H

#include <uv.h>

#include "tls.h"

typedef struct {
    ws_tls_server_opts_t opts;
    ws_tls_ticket_key_t key;
    void (*apply)(void *ud, ws_tls_ctx_t *ctx); /* takes the reference */
    void *ud;
    uv_fs_poll_t poll[2];
    uv_timer_t settle;  /* a renewal writes two files: reload once both are there */
    int watching;
} ws_certs_t;

/* Load the pair (apply gets the first context) and, if watch, follow the
 * files. -1 with a one-line reason in err. */
int ws_certs_init(ws_certs_t *c, uv_loop_t *loop, const ws_tls_server_opts_t *o, int watch,
                  void (*apply)(void *ud, ws_tls_ctx_t *ctx), void *ud, char *err, size_t errlen);
/* Load the pair again now; why names the cause in the log. 0 if the new one serves. */
int ws_certs_reload(ws_certs_t *c, const char *why);
/* Stop following the files (handles close on a later loop turn). */
void ws_certs_close(ws_certs_t *c);

#endif
