/*
 * proto_harness.h: what the protocol-layer unit tests share. A hub over a
 * real (but never blocking) uv loop, a fake host that records every call and
 * answers as the test told it, a fake clock, the peer's side of the
 * in-memory transport (masked client frames in, server frames and HTTP
 * responses out), and a teardown that frees everything so the ASan build can
 * call any leak a failure.
 *
 * Host callbacks never assert: a failed assertion longjmps, and unwinding
 * through the protocol's own code would leave it half-done for the teardown.
 * They record; the test asserts afterwards.
 */
#ifndef PROTO_HARNESS_H
#define PROTO_HARNESS_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "buf.h"
#include "cli.h"
#include "conn.h"
#include "frame.h"
#include "host.h"
#include "hub.h"
#include "memio.h"

/* The RFC 6455 section 1.3 sample key and its accept value. */
#define HS_KEY "dGhlIHNhbXBsZSBub25jZQ=="
#define HS_ACCEPT "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="

typedef struct fake_host_s fake_host_t;

typedef struct {
    ws_conn_t *c;
    uint8_t *data;
    size_t len;
    int binary;
} fh_msg_t;

struct fake_host_s {
    /* How many times each op ran. */
    int n_http, n_upgrade, n_cancel, n_open, n_message, n_control, n_drain, n_closed;
    /* Every call in order, one short token each ("open;", "msg:hi;", "closed:1000;"):
     * lets a test assert order without a bespoke recorder. NUL-terminated. */
    ws_buf_t log;

    /* What the last calls saw. */
    char url[256];
    int keep_alive;
    int has_protocols;
    char protocols[128];
    unsigned control_op;
    uint8_t control_data[125];
    size_t control_len;
    unsigned closed_code;
    char closed_reason[128];
    ws_conn_t *closed_conn;
    fh_msg_t *msgs;
    size_t nmsgs, msgs_cap;

    /* How to answer. Defaults (hs_setup): HTTP 200 "ok", upgrades accepted. */
    int http_pending;         /* return WS_HOST_PENDING from http */
    int http_status;
    const char *http_body;
    int upgrade_pending;      /* return WS_HOST_PENDING from upgrade */
    int upgrade_status;       /* 0: accept */
    const char *upgrade_reason;
    const char *subprotocol;
    /* Route overrides for accepted upgrades (-1 / 0: keep the server's). */
    int backpressure;
    size_t max_buffered;
    /* Optional: fill the answer yourself (after the defaults above). */
    void (*fill_http)(fake_host_t *fh, const ws_request_t *req, ws_response_t *res);
    void (*fill_upgrade)(fake_host_t *fh, ws_upgrade_t *up);
    /* Optional: act from inside a call. */
    void (*on_open)(fake_host_t *fh, ws_conn_t *c);
    void (*on_message)(fake_host_t *fh, ws_conn_t *c, const uint8_t *data, size_t len);
    void (*on_drain)(fake_host_t *fh, ws_conn_t *c);
    void *user;

    /* A pending question, kept for ws_conn_http_done / ws_conn_upgrade_done. */
    ws_conn_t *pending_conn;
    ws_response_t *pending_res;
    ws_upgrade_t *pending_up;
};

extern const ws_host_ops_t fake_host_ops;
/* fake_host_ops with a flush that logs "flush;". */
const ws_host_ops_t *fake_host_ops_flush(void);

#define HS_MAX_MEMIO 128

typedef struct {
    uv_loop_t loop;
    ws_io_t io;
    ws_config_t cfg;  /* adjust before hs_start: the hub copies it */
    ws_hub_t hub;
    uint64_t now;     /* the fake clock, in ms */
    fake_host_t host;
    ws_memio_t *memio[HS_MAX_MEMIO];
    size_t nmemio;
    int started;
    /* Scratch for what the peer reads back (valid until the next read). */
    struct hs_frame_s {
        unsigned fin, rsv, opcode, masked;
        ws_buf_t payload; /* NUL-terminated for convenience */
    } frame;
    struct hs_response_s {
        int status;
        ws_buf_t head;    /* status line and headers, NUL-terminated */
        ws_buf_t body;    /* NUL-terminated */
    } resp;
} harness_t;

typedef struct hs_frame_s hs_frame_t;
typedef struct hs_response_s hs_response_t;

/* cmocka setup/teardown: *state is a harness_t with cfg at the defaults. */
int hs_setup(void **state);
int hs_teardown(void **state);

/* Make the hub from h->cfg, with the fake host and the fake clock. */
void hs_start(harness_t *h);
/* Close everything and free it; asserts the loop closes cleanly. */
void hs_finish(harness_t *h);

/* Run ws_hub_flush until no work is left. */
void hs_pump(harness_t *h);
/* Move the fake clock. */
static inline void hs_advance(harness_t *h, uint64_t ms) { h->now += ms; }
/* ws_hub_tick at the current fake time, then pump: what the server's timer does. */
void hs_tick(harness_t *h);

/* A memio transport (freed by the teardown, whether or not an owner ever
 * started it), and a connection over it. */
ws_memio_t *hs_memio(harness_t *h);
ws_conn_t *hs_conn(harness_t *h, ws_memio_t **mp);
/* A connection that completed the upgrade (101 read and consumed). NULL if
 * it did not open. */
ws_conn_t *hs_open(harness_t *h, ws_memio_t **mp);

/* The peer sends bytes, then the loop turns. */
void hs_feed(harness_t *h, ws_memio_t *m, const void *data, size_t len);
void hs_feed_str(harness_t *h, ws_memio_t *m, const char *s);

/* An upgrade request for path with extra header lines ("Name: v\r\n") added.
 * key NULL: the sample key; version NULL: "13"; "" leaves either out. */
void hs_upgrade_request(ws_buf_t *out, const char *path, const char *key, const char *version,
                        const char *extra);

/* Append one masked client frame (first_byte: FIN/RSV bits | opcode). */
void hs_client_frame(ws_buf_t *out, unsigned first_byte, const void *payload, size_t len);
/* Append a masked client close frame with code and reason. */
void hs_client_close(ws_buf_t *out, unsigned code, const char *reason);
/* Build one client frame, feed it, pump. */
void hs_send_frame(harness_t *h, ws_memio_t *m, unsigned first_byte, const void *payload,
                   size_t len);
/* Build one client close frame (reason may be NULL), feed it, pump. */
void hs_send_close(harness_t *h, ws_memio_t *m, unsigned code, const char *reason);

/* Take one whole server frame off m's output, or NULL when none is whole.
 * Fails the test on a masked server frame. */
const hs_frame_t *hs_next_frame(harness_t *h, ws_memio_t *m);
/* The close code of a close frame (1005 when it has none), and its reason. */
unsigned hs_close_code(const hs_frame_t *f);
const char *hs_close_reason(const hs_frame_t *f);

/* Take one whole HTTP response off m's output, or NULL. no_body: the
 * response to a HEAD (Content-Length says nothing of what follows). */
const hs_response_t *hs_take_response(harness_t *h, ws_memio_t *m, int no_body);
/* 1 if the head holds the exact header line "line\r\n". */
int hs_has_header(const hs_response_t *r, const char *line);

/* Bytes waiting on m's output. */
size_t hs_pending_output(const ws_memio_t *m);

/* The fake host's call log as a string. */
const char *hs_log(harness_t *h);
void hs_log_clear(harness_t *h);

#endif
