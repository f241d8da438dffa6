/*
 * fuzz_tls.c: the TLS transport (core/tls.c) under hostile peers, over an
 * in-memory transport. The first input byte picks the peer:
 *   even: the rest is what the peer sends from the first byte on (a
 *         ClientHello, or anything), in chunks the input sizes;
 *   odd:  a real client (OpenSSL, in memory) completes the handshake, then
 *         sends the rest as application data, in records of sizes the input
 *         picks, while the owner pauses and resumes reading; then it sends
 *         close_notify (and more data after it), or cuts a record short.
 * Invariants: nothing crashes or leaks (ASan/LSan); with a real client the
 * owner receives exactly the plaintext sent, in order, and hears the end of
 * the stream once; after a close the owner hears on_close exactly once.
 */
#include "fuzz_util.h"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <unistd.h>

#include "buf.h"
#include "memio.h"
#include "tls.h"

/* A test certificate (P-256, valid until 2126) and its key: never secret. */
static const char CERT[] =
    "-----BEGIN CERTIFICATE-----\n"
    "MIIBfjCCASWgAwIBAgIUKASp8Yn+95p0Ndhm2x+LDyBW6SUwCgYIKoZIzj0EAwIw\n"
    "FDESMBAGA1UEAwwJZnV6ei50ZXN0MCAXDTI2MTIwNjA3MTE0NVoYDzIxMjYxMTEy\n"
    "MDcxMTQ1WjAUMRIwEAYDVQQDDAlmdXp6LnRlc3QwWTATBgcqhkjOPQIBBggqhkjO\n"
    "PQMBBwNCAAS0XD/bPeT4RCNwqjcDej0l0Ar0lhK+ERm/bb6zWJXKWTRvohzp0scg\n"
    "+mcUlx2hkCfXC64NYWLDZ5MQxWJTO8IJo1MwUTAdBgNVHQ4EFgQUm61+sZUhNWil\n"
    "uchuqUroAUQ3FhkwHwYDVR0jBBgwFoAUm61+sZUhNWiluchuqUroAUQ3FhkwDwYD\n"
    "VR0TAQH/BAUwAwEB/zAKBggqhkjOPQQDAgNHADBEAiAk815YsiXyo2HeHVCryrtZ\n"
    "0H3mCiImbTXRSAbi4zPP/wIgd+LGJAvmwVkUnBpTBWQG3N9lmZ6Rcx5O2LA3g1BF\n"
    "eFI=\n"
    "-----END CERTIFICATE-----\n";
static const char KEY[] =
    "-----BEGIN PRIVATE KEY-----\n"
    "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg6NtpwOLQW3+2hq45\n"
    "haDt0j31+947CpIvoT6glrycDwqhRANCAAS0XD/bPeT4RCNwqjcDej0l0Ar0lhK+\n"
    "ERm/bb6zWJXKWTRvohzp0scg+mcUlx2hkCfXC64NYWLDZ5MQxWJTO8IJ\n"
    "-----END PRIVATE KEY-----\n";

static uv_loop_t loop;
static ws_io_t io;
static ws_tls_ctx_t *server;
static SSL_CTX *client;

typedef struct {
    ws_transport_t *t;
    ws_buf_t got;
    int ends, closes;
} owner_t;

static void o_read(void *ud, uint8_t *data, size_t len)
{
    owner_t *o = ud;
    ws_buf_append(&o->got, data, len);
}
static void o_end(void *ud, int err)
{
    (void)err;
    owner_t *o = ud;
    o->ends++;
    ws_transport_close(o->t);
}
static void o_shutdown(void *ud, int status)
{
    (void)ud;
    (void)status;
}
static void o_close(void *ud) { ((owner_t *)ud)->closes++; }
static const ws_transport_cb_t owner_cb = {o_read, o_end, o_shutdown, o_close};

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    FUZZ_CHECK(f != NULL);
    fputs(text, f);
    fclose(f);
}

static void init(void)
{
    uv_loop_init(&loop);
    ws_io_init(&io, &loop);
    char cert[64], key[64], err[256];
    snprintf(cert, sizeof cert, "/tmp/fuzz_tls.%d.crt", (int)getpid());
    snprintf(key, sizeof key, "/tmp/fuzz_tls.%d.key", (int)getpid());
    write_file(cert, CERT);
    write_file(key, KEY);
    ws_tls_server_opts_t o = {.cert_file = cert, .key_file = key, .min_version = 12};
    server = ws_tls_server_ctx(&o, err, sizeof err, NULL, 0);
    if (!server)
        fprintf(stderr, "fuzz_tls: %s\n", err);
    FUZZ_CHECK(server != NULL);
    unlink(cert);
    unlink(key);
    client = SSL_CTX_new(TLS_client_method());
}

/* Bytes the server wrote, to the client (or dropped). */
static void to_client(ws_memio_t *m, BIO *rb)
{
    size_t len;
    const uint8_t *out = ws_memio_output(m, &len);
    if (len && rb)
        BIO_write(rb, out, (int)len);
    ws_memio_consume(m, len);
}

static void from_client(ws_memio_t *m, BIO *wb)
{
    char buf[4096];
    int n;
    while ((n = BIO_read(wb, buf, sizeof buf)) > 0)
        ws_memio_feed(m, buf, (size_t)n);
}

static void run(void)
{
    for (int i = 0; i < 8 && ws_io_run(&io); i++)
        ;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int ready;
    if (!ready) {
        init();
        ready = 1;
    }
    if (size < 1)
        return 0;
    owner_t o = {0};
    ws_memio_t *m = ws_memio_new(&io, "127.0.0.1", 40000);
    o.t = ws_tls_server(server, ws_memio_transport(m));
    ws_transport_start(o.t, &owner_cb, &o);
    int real = data[0] & 1;
    data++;
    size--;

    if (!real) {
        size_t pos = 0;
        while (pos < size && !o.closes) {
            size_t n = 1 + data[pos] % 64;
            pos++;
            if (n > size - pos)
                n = size - pos;
            ws_memio_feed(m, data + pos, n);
            pos += n;
            run();
            to_client(m, NULL);
        }
        ws_memio_end(m);
        run();
    } else {
        SSL *c = SSL_new(client);
        BIO *rb = BIO_new(BIO_s_mem()), *wb = BIO_new(BIO_s_mem());
        SSL_set_bio(c, rb, wb);
        SSL_set_connect_state(c);
        for (int i = 0; i < 10 && !SSL_is_init_finished(c); i++) {
            SSL_do_handshake(c);
            from_client(m, wb);
            run();
            to_client(m, rb);
        }
        FUZZ_CHECK(SSL_is_init_finished(c));
        ws_buf_t sent;
        ws_buf_init(&sent);
        size_t pos = 0;
        int paused = 0;
        while (pos + 1 < size && !o.ends) {
            uint8_t ctl = data[pos++];
            size_t n = 1 + ctl % 32;
            if (n > size - pos)
                n = size - pos;
            if (ctl & 0x80) {
                paused = !paused;
                if (paused)
                    ws_transport_pause(o.t, WS_PAUSE_BACKPRESSURE);
                else
                    ws_transport_resume(o.t, WS_PAUSE_BACKPRESSURE);
            }
            SSL_write(c, data + pos, (int)n);
            ws_buf_append(&sent, data + pos, n);
            pos += n;
            from_client(m, wb);
            run();
            to_client(m, rb);
        }
        if (paused)
            ws_transport_resume(o.t, WS_PAUSE_BACKPRESSURE);
        run();
        FUZZ_CHECK(o.got.len == sent.len);
        FUZZ_CHECK(sent.len == 0 || memcmp(o.got.data, sent.data, sent.len) == 0);
        if (size && (data[0] & 2)) {
            SSL_shutdown(c); /* close_notify, then data the server must ignore */
            SSL_write(c, "late", 4);
            from_client(m, wb);
            run();
            FUZZ_CHECK(o.ends == 1);
            FUZZ_CHECK(o.got.len == sent.len);
        } else {
            /* a record cut short, then the end of the stream */
            SSL_write(c, "truncated", 9);
            char buf[64];
            int n = BIO_read(wb, buf, sizeof buf);
            if (n > 3)
                ws_memio_feed(m, buf, (size_t)n - 3);
            ws_memio_end(m);
            run();
            FUZZ_CHECK(o.ends == 1);
        }
        ws_buf_free(&sent);
        SSL_free(c);
    }
    if (!o.closes) /* else it is gone already */
        ws_transport_close(o.t);
    run();
    FUZZ_CHECK(o.closes == 1);
    FUZZ_CHECK(o.ends <= 1);
    ws_memio_free(m);
    run();
    ws_buf_free(&o.got);
    ERR_clear_error();
    return 0;
}
