/*
 * fuzz_host.c: the Lua host under hostile scripts. Each input becomes a
 * routes table (tests/fuzz/fuzz_host.lua builds it from the bytes: handler
 * tables with raising or looping metatables, odd keys and settings, handlers
 * that raise tables, loop, allocate, leave raising __gc garbage). The real
 * host loads it in a state of its own, with a short time budget and a small
 * heap cap, and the real protocol drives it over in-memory connections:
 * upgrades, text and binary messages, pings, the clock moved on (timers,
 * heartbeats), client closes, HTTP GET and POST on every route, a reload.
 *
 * Invariants: nothing aborts (a Lua error outside a protected call is a
 * panic, which aborts); every request gets an HTTP answer (a status line) or
 * the connection ends; the host frees everything (ASan/LSan).
 *
 * Compile-time: WSPUSH_LUA_DIR (the repo's lua/) and FUZZ_HOST_LUA.
 */
#include "fuzz_util.h"

#include <unistd.h>

#include "conn.h"
#include "hub.h"
#include "lhost.h"
#include "log.h"
#include "memio.h"

static uv_loop_t loop;
static ws_io_t io;
static char input_path[64];
static uint64_t clock_ms = 1000000;

static uint64_t fake_clock(void *ud)
{
    (void)ud;
    return clock_ms;
}

static void quiet(void *ud, ws_log_level_t level, const char *msg)
{
    (void)ud;
    /* FUZZ_HOST_DEBUG=1 shows what the host logged, to see what an input does. */
    if (getenv("FUZZ_HOST_DEBUG"))
        fprintf(stderr, "  [%d] %.200s\n", (int)level, msg);
}

static void init(void)
{
    uv_loop_init(&loop);
    ws_io_init(&io, &loop);
    snprintf(input_path, sizeof input_path, "/tmp/fuzz_host.%d", (int)getpid());
    setenv("FUZZ_HOST_INPUT", input_path, 1);
    /* Handler errors are the point: keep them off stderr. */
    ws_log_set_sink(quiet, NULL, NULL);
}

static void pump(ws_hub_t *hub)
{
    for (int i = 0; i < 64 && ws_hub_flush(hub); i++)
        ;
}

/* A masked client frame with a zero key (the payload stays as it is). */
static void frame(ws_memio_t *m, unsigned op, const char *data, size_t len)
{
    uint8_t hdr[14];
    size_t n = 0;
    hdr[n++] = (uint8_t)(0x80 | op);
    if (len < 126) {
        hdr[n++] = (uint8_t)(0x80 | len);
    } else {
        hdr[n++] = 0x80 | 126;
        hdr[n++] = (uint8_t)(len >> 8);
        hdr[n++] = (uint8_t)len;
    }
    memset(hdr + n, 0, 4);
    n += 4;
    ws_memio_feed(m, hdr, n);
    if (len)
        ws_memio_feed(m, data, len);
}

static int answered(ws_memio_t *m)
{
    size_t len;
    const uint8_t *out = ws_memio_output(m, &len);
    return len >= 9 && memcmp(out, "HTTP/1.1 ", 9) == 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int ready;
    if (!ready) {
        init();
        ready = 1;
    }
    FILE *f = fopen(input_path, "wb");
    FUZZ_CHECK(f != NULL);
    fwrite(data, 1, size, f);
    fclose(f);

    ws_config_t cfg;
    ws_cli_defaults(&cfg);
    cfg.max_message = 1 << 20;
    cfg.max_buffered = 64 << 10;
    ws_hub_t hub;
    ws_hub_init(&hub, &io, &cfg);
    hub.clock = fake_clock;
    char err[2048];
    ws_lhost_t *lh = ws_lhost_new(&hub, FUZZ_HOST_LUA, 0.02, 16 << 20, err, sizeof err);
    if (!lh) {
        /* A script that fails to load is answered by a message, never a crash. */
        FUZZ_CHECK(err[0] != '\0');
        if (getenv("FUZZ_HOST_DEBUG"))
            fprintf(stderr, "fuzz_host: load failed: %s\n", err);
        ws_hub_free(&hub);
        return 0;
    }
    ws_hub_set_host(&hub, &ws_lhost_ops, lh);

    static const char *const paths[] = {"/a", "/b", "/c", "/d", "/other"};
    ws_memio_t *ws[5], *get[5], *post[5];
    char req[512];
    for (int i = 0; i < 5; i++) {
        ws[i] = ws_memio_new(&io, "127.0.0.1", 40000 + i);
        ws_conn_new(&hub, ws_memio_transport(ws[i]));
        int n = snprintf(req, sizeof req,
                         "GET %s HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                         "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                         "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: a, b\r\n"
                         "Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n",
                         paths[i]);
        ws_memio_feed(ws[i], req, (size_t)n);
        pump(&hub);
        if (getenv("FUZZ_HOST_DEBUG")) {
            size_t len;
            const uint8_t *o = ws_memio_output(ws[i], &len);
            fprintf(stderr, "  upgrade %s: %zu bytes out: %.40s\n", paths[i], len, (const char *)o);
        }
        FUZZ_CHECK(answered(ws[i]) || ws_memio_closed(ws[i]));
        frame(ws[i], 1, "hello", 5);
        frame(ws[i], 2, "\0\1\2", 3);
        frame(ws[i], 9, "p", 1);
        pump(&hub);
    }
    /* Timers, heartbeats and idle buffers: a minute on the clock, in ticks. */
    for (int t = 0; t < 600; t += 10) {
        clock_ms += 100;
        ws_hub_run_timers(&hub);
        ws_hub_tick(&hub);
        pump(&hub);
    }
    for (int i = 0; i < 5; i++) {
        frame(ws[i], 8, "\x03\xe8", 2);
        pump(&hub);
    }
    for (int i = 0; i < 5; i++) {
        get[i] = ws_memio_new(&io, "127.0.0.1", 41000 + i);
        ws_conn_new(&hub, ws_memio_transport(get[i]));
        int n = snprintf(req, sizeof req, "GET %s?x=%%zz&y=1 HTTP/1.1\r\nHost: h\r\n\r\n", paths[i]);
        ws_memio_feed(get[i], req, (size_t)n);
        post[i] = ws_memio_new(&io, "127.0.0.1", 42000 + i);
        ws_conn_new(&hub, ws_memio_transport(post[i]));
        n = snprintf(req, sizeof req,
                     "POST %s HTTP/1.1\r\nHost: h\r\nContent-Type: application/json\r\n"
                     "Content-Length: 9\r\n\r\n{\"a\":[1]}",
                     paths[i]);
        ws_memio_feed(post[i], req, (size_t)n);
        pump(&hub);
        FUZZ_CHECK(answered(get[i]));
        FUZZ_CHECK(answered(post[i]));
    }
    ws_lhost_reload(lh, "fuzz", err, sizeof err);
    pump(&hub);

    ws_hub_abort_all(&hub);
    pump(&hub);
    for (int i = 0; i < 5; i++) {
        ws_memio_free(ws[i]);
        ws_memio_free(get[i]);
        ws_memio_free(post[i]);
    }
    pump(&hub);
    FUZZ_CHECK(hub.nconns == 0);
    ws_lhost_free(lh);
    ws_hub_free(&hub);
    return 0;
}
