/*
 * fetch_harness.h: what test_fetch.c drives the HTTP client with. A real
 * libuv loop on which the client runs, with prepare and check handles that
 * run ws_io_run as the server's flush does; scripted HTTP servers on
 * 127.0.0.1 in the same loop (raw libuv, nothing of the code under test),
 * each answering the requests it reads through a function the test sets;
 * results recorded by the fetch callback; every wait bounded by a deadline.
 *
 * Only 127.0.0.0/8 is ever connected to. Callbacks record and never
 * assert (a failed assertion would longjmp through libuv); the tests assert
 * afterwards.
 */
#ifndef FETCH_HARNESS_H
#define FETCH_HARNESS_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "buf.h"
#include "fetch.h"
#include "loop_harness.h"

typedef struct srv_s srv_t;

/* One accepted connection. Kept (closed) until the server is freed, so a
 * test may hold on to it. */
typedef struct {
    uv_tcp_t h;
    srv_t *s;
    ws_buf_t in;    /* bytes not yet taken as a request */
    int id;         /* 1 + accept order */
    int nreq;       /* requests read on it */
    int closing, closed;
} sconn_t;

/* Called for each whole request (head and Content-Length body) read on c. */
typedef void (*srv_answer_fn)(srv_t *s, sconn_t *c, const char *req, size_t len);

#define SRV_MAX_CONNS 64
#define SRV_MAX_HELD 16

struct srv_s {
    uv_tcp_t l;
    int port;
    int listening;
    int no_read;           /* accept, never read */
    srv_answer_fn answer;  /* NULL: never answer */
    void *user;
    int accepted, open, requests;
    ws_buf_t log;          /* every request read, in order, NUL-terminated */
    char last[8192];       /* the last request, NUL-terminated (truncated) */
    sconn_t *conns[SRV_MAX_CONNS];
    sconn_t *held[SRV_MAX_HELD]; /* requests a test answers later */
    int nheld;
};

typedef struct {
    lh_t lh;           /* the loop */
    ws_fetcher_t *f;
    srv_t srv, srv2;
    size_t mem_buffers, mem_queue; /* the counters at setup */
} fx_t;

typedef struct {
    fx_t *fx;
    int done;          /* how many times the callback ran (1 at most, or a bug) */
    int in_start;      /* it ran inside ws_fetch_start (a bug) */
    int status;
    char error[256];   /* "" for none */
    char *body;        /* NUL-terminated copy */
    size_t body_len;
    char *headers;     /* "name: value\n" per header, as received */
    char url[1024];
    uint64_t at;       /* loop time when it ran */
    uint64_t turn;     /* and the loop iteration */
    int free_fetcher;  /* free the fetcher from inside the callback */
    void (*then)(void *ud, const ws_fetch_res_t *res); /* run from inside it */
    void *then_ud;
} result_t;

/* Loop, io, driver handles, a fetcher with cfg (NULL: defaults) and the
 * first server listening on 127.0.0.1. Records the memory counters. */
void fx_setup(fx_t *fx, const ws_fetch_config_t *cfg);
/* Free the fetcher (unless the test did: set fx->f = NULL), stop the
 * servers, run the loop until nothing is left, close it; asserts the memory
 * counters are back where they started and the loop closes cleanly. */
void fx_teardown(fx_t *fx);

/* Start a server on 127.0.0.1 (any port) that answers with fn. */
void srv_start(fx_t *fx, srv_t *s, srv_answer_fn fn);
void srv_stop(srv_t *s);
void srv_send(sconn_t *c, const char *bytes);
void srv_sendn(sconn_t *c, const void *data, size_t len);
/* Send what was queued, then FIN and close. */
void srv_end(sconn_t *c);
/* Close at once. */
void srv_close(sconn_t *c);
/* Answers: "200 hello" with keep-alive; hold the request for later. */
void srv_answer_ok(srv_t *s, sconn_t *c, const char *req, size_t len);
void srv_answer_hold(srv_t *s, sconn_t *c, const char *req, size_t len);
/* The path of a request ("/a?b"), into out. */
void srv_path(const char *req, char *out, size_t outlen);

/* Start a request. headers/body may be NULL. */
ws_fetch_t *fx_fetch(fx_t *fx, result_t *r, const char *method, const char *url, const char *headers,
                     const char *body, size_t body_len, uint32_t timeout_ms, size_t max_body, int follow);
void result_init(result_t *r, fx_t *fx);
void result_free(result_t *r);
/* 1 when the recorded headers have the line "name: value" exactly. */
int result_has_header(const result_t *r, const char *line);

/* Run the loop until done(ud) or ms pass; returns done(ud). */
static inline int fx_run_until(fx_t *fx, int (*done)(void *ud), void *ud, uint64_t ms)
{
    return lh_run_until(&fx->lh, done, ud, ms);
}
/* Run the loop for ms. */
static inline void fx_wait(fx_t *fx, uint64_t ms) { lh_wait(&fx->lh, ms); }
/* Predicates for fx_run_until. */
int result_done(void *r);
int fx_no_connections(void *fx);

#endif
