/* The server's certificate, loaded again when it changes: see certs.h. */
#include "certs.h"

#include <string.h>

#include "log.h"

/* Files are stat()ed this often; a change is acted on once they have been
 * still for SETTLE_MS (certbot writes the key and the chain one by one). */
#define POLL_MS 1000
#define SETTLE_MS 300

static ws_tls_ctx_t *load(ws_certs_t *c, char *err, size_t errlen)
{
    char warn[512];
    ws_tls_ctx_t *ctx = ws_tls_server_ctx(&c->opts, err, errlen, warn, sizeof warn);
    if (ctx && warn[0])
        ws_log_warn("%s", warn);
    return ctx;
}

int ws_certs_reload(ws_certs_t *c, const char *why)
{
    char err[512];
    ws_tls_ctx_t *ctx = load(c, err, sizeof err);
    if (!ctx) {
        ws_log_error("TLS certificate reload failed (%s), the previous one keeps serving: %s", why, err);
        return -1;
    }
    c->apply(c->ud, ctx);
    ws_log_info("TLS certificate reloaded (%s): %s", why, c->opts.cert_file);
    return 0;
}

static void on_settled(uv_timer_t *h)
{
    ws_certs_reload(h->data, "certificate files changed");
}

static void on_change(uv_fs_poll_t *h, int status, const uv_stat_t *prev, const uv_stat_t *curr)
{
    (void)status;
    (void)prev;
    (void)curr;
    ws_certs_t *c = h->data;
    /* A file that is gone for a moment (replaced by rename) is a change too;
     * the reload, once things are still, tells whether it is there. */
    uv_timer_start(&c->settle, on_settled, SETTLE_MS, 0);
}

int ws_certs_init(ws_certs_t *c, uv_loop_t *loop, const ws_tls_server_opts_t *o, int watch,
                  void (*apply)(void *ud, ws_tls_ctx_t *ctx), void *ud, char *err, size_t errlen)
{
    memset(c, 0, sizeof *c);
    c->opts = *o;
    ws_tls_ticket_key_random(&c->key);
    c->opts.ticket_key = &c->key;
    c->apply = apply;
    c->ud = ud;
    ws_tls_ctx_t *ctx = load(c, err, errlen);
    if (!ctx)
        return -1;
    apply(ud, ctx);
    if (!watch)
        return 0;
    uv_timer_init(loop, &c->settle);
    c->settle.data = c;
    const char *files[2] = {o->cert_file, o->key_file};
    for (int i = 0; i < 2; i++) {
        uv_fs_poll_init(loop, &c->poll[i]);
        c->poll[i].data = c;
        uv_fs_poll_start(&c->poll[i], on_change, files[i], POLL_MS);
    }
    c->watching = 1;
    return 0;
}

void ws_certs_close(ws_certs_t *c)
{
    if (!c->watching)
        return;
    c->watching = 0;
    uv_close((uv_handle_t *)&c->settle, NULL);
    for (int i = 0; i < 2; i++)
        uv_close((uv_handle_t *)&c->poll[i], NULL);
}
