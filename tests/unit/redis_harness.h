/*
 * redis_harness.h: what test_redis.c drives the Redis client with. A real
 * libuv loop on which the client runs, with prepare and check handles that
 * run ws_io_run as the server's flush does; scripted RESP servers on
 * 127.0.0.1 (or a unix socket) in the same loop, written in raw libuv with
 * nothing of the code under test: each parses the arrays of bulk strings it
 * reads, records every command (with the connection it came on and the read
 * that completed it), and answers through a function the test sets, or
 * holds the command for the test to answer later; results recorded by the
 * call's callback; every wait bounded by a deadline.
 *
 * Callbacks record and never assert (a failed assertion would longjmp
 * through libuv); the tests assert afterwards.
 */
#ifndef REDIS_HARNESS_H
#define REDIS_HARNESS_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "redis.h"
#include "loop_harness.h"

typedef struct rsrv_s rsrv_t;

/* One accepted connection. Kept (closed) until the server is freed, so a
 * test may hold on to it. */
typedef struct {
    union {
        uv_stream_t stream;
        uv_tcp_t tcp;
        uv_pipe_t pipe;
    } h;
    rsrv_t *s;
    struct {
        char *data; /* malloc'd: not ws_buf_t, so that the memory counters
                       hold the client's bytes alone */
        size_t len, cap;
    } in;           /* bytes not yet parsed */
    int id;         /* 1 + accept order */
    int ncmds;      /* commands read on it */
    int reads;      /* reads done on it */
    int closing, closed;
    int eof;        /* the client closed it (or it failed) */
} rconn_t;

/* One command read: its words joined by single spaces ("SET k v"). */
typedef struct {
    char *text;
    int conn;       /* the rconn_t's id */
    int read;       /* which read on that connection completed it (1-based) */
} rcmd_t;

/* Called for each command read on c (argv[i] of lens[i] bytes, each also
 * NUL-terminated). */
typedef void (*rsrv_answer_fn)(rsrv_t *s, rconn_t *c, int argc, char **argv, size_t *lens);

#define RSRV_MAX_CONNS 64
#define RSRV_MAX_HELD 4096

struct rsrv_s {
    union {
        uv_handle_t handle;
        uv_tcp_t tcp;
        uv_pipe_t pipe;
    } l;
    int port;
    char path[108];        /* a unix socket's path, or "" for TCP */
    int listening;
    int lclosing;          /* the listener's close is pending */
    rsrv_answer_fn answer; /* NULL: never answer (commands are still recorded) */
    void *user;
    int accepted, open;
    int bad;               /* bytes that were not a RESP array of bulk strings */
    rcmd_t *cmds;          /* every command read, in order */
    int ncmds, cap;
    struct {
        rconn_t *c;
        int cmd;           /* index in cmds */
    } held[RSRV_MAX_HELD]; /* commands a test answers later, in order */
    int nheld;
    long counter;          /* INCR's */
    rconn_t *conns[RSRV_MAX_CONNS];
};

typedef struct {
    lh_t lh;           /* the loop */
    ws_redis_t *r;     /* the client under test (fx_client) */
    rsrv_t srv, srv2;
    size_t mem_buffers, mem_queue; /* the counters at setup */
} fx_t;

/* A call's end as its callback saw it. */
typedef struct result_s result_t;
struct result_s {
    fx_t *fx;
    int done;          /* how many times the callback ran (1 at most, or a bug) */
    int in_call;       /* it ran inside ws_redis_call (a bug) */
    int seq;           /* 1 + the order in which callbacks ran (process-wide) */
    char error[256];   /* "" for none */
    int type;          /* the reply's REDIS_REPLY_*, or 0 with an error */
    char text[256];    /* the reply, written out (rep_text) */
    uint64_t at;       /* loop time when it ran */
    uint64_t turn;     /* and the loop iteration */
    /* run from inside the callback, after recording */
    void (*then)(result_t *self);
    void *then_ud;
};

/* A check that fails through cmocka, or, in a child (fx_isolated), prints
 * and ends the child with status 1. */
extern int fx_in_child;
void fx_check_failed(const char *file, int line, const char *what, const char *detail);
#define fx_check(cond) ((cond) ? (void)0 : fx_check_failed(__FILE__, __LINE__, #cond, NULL))
/* Run fn in a child process and fail (through cmocka) when the child does
 * not end with status 0: for tests that may crash the process (a double
 * free in the code under test), so that the tests after them still run. The
 * child dies after 60 s. */
void fx_isolated(const char *name, void (*fn)(void));

/* Loop, io, driver handles; the first server listening on 127.0.0.1; no
 * client yet. Records the memory counters. */
void fx_setup(fx_t *fx);
/* Free the client (unless the test did: set fx->r = NULL), stop the
 * servers, run the loop until nothing is left, close it; asserts the memory
 * counters are back where they started and the loop closes cleanly. */
void fx_teardown(fx_t *fx);
/* Parse url (asserting it is good) and make fx->r with timeout_ms and
 * max_queued (0: defaults). */
void fx_client(fx_t *fx, const char *url, uint32_t timeout_ms, unsigned max_queued);
/* "redis://127.0.0.1:<port>" + rest (e.g. "/3", or userinfo put before
 * the host with fx_url_auth). */
char *fx_url(const rsrv_t *s, const char *userinfo, const char *rest, char *buf, size_t len);

/* Start a server on 127.0.0.1 (port 0: any free port) or on a unix socket
 * that answers with fn. */
void rsrv_start(fx_t *fx, rsrv_t *s, int port, rsrv_answer_fn fn);
void rsrv_start_unix(fx_t *fx, rsrv_t *s, const char *path, rsrv_answer_fn fn);
/* Stop listening and close every connection (the records stay). */
void rsrv_stop(rsrv_t *s);
/* Stop listening only (connections stay). */
void rsrv_unlisten(rsrv_t *s);
/* Free the records of a server whose listener and connections have closed. */
void rsrv_free(rsrv_t *s);
void rsrv_send(rconn_t *c, const char *bytes);
void rsrv_sendn(rconn_t *c, const void *data, size_t len);
/* Close at once (the client sees the end of the stream). */
void rsrv_close(rconn_t *c);
/* The i-th command read (0-based; negative: from the end) or "" */
const char *rsrv_cmd(const rsrv_t *s, int i);
int rsrv_cmd_conn(const rsrv_t *s, int i);
/* How many of the commands read on connection id equal text. */
int rsrv_count(const rsrv_t *s, int conn, const char *text);
/* The commands read on connection id joined with " | ", into out. */
char *rsrv_conn_log(const rsrv_t *s, int conn, char *out, size_t len);
/* Answer the oldest held command with bytes (a whole RESP reply); returns
 * its text. */
const char *rsrv_release(rsrv_t *s, const char *bytes);

/* Answers. default: AUTH, SELECT -> +OK; PING -> +PONG; GET k -> $"v:k";
 * ECHO x -> $x; INCR -> :n (one counter per server); ERRCMD -> -ERR boom;
 * anything else -> +OK. hold: hold everything. hold_user: AUTH and SELECT
 * as default, hold the rest. hold_auth: hold AUTH and SELECT, default for
 * the rest. */
void rsrv_answer_default(rsrv_t *s, rconn_t *c, int argc, char **argv, size_t *lens);
void rsrv_answer_hold(rsrv_t *s, rconn_t *c, int argc, char **argv, size_t *lens);
void rsrv_answer_hold_user(rsrv_t *s, rconn_t *c, int argc, char **argv, size_t *lens);
void rsrv_answer_hold_auth(rsrv_t *s, rconn_t *c, int argc, char **argv, size_t *lens);

/* Make a call of one command, words separated by single spaces ("GET k"),
 * recording in r (which is initialised). Returns the call, or NULL with
 * *error set (error may be NULL when the test does not expect it). */
ws_redis_call_t *fx_call(fx_t *fx, ws_redis_t *cl, result_t *r, const char *cmd, const char **error);
/* A unit: ncmds commands, each as for fx_call. */
ws_redis_call_t *fx_unit(fx_t *fx, ws_redis_t *cl, result_t *r, unsigned ncmds, const char **cmds,
                         const char **error);
void result_init(result_t *r, fx_t *fx);
/* Write a reply out: "s" for strings, "+OK", "-ERR x", ":5", "nil", "[a,b]". */
void rep_text(const redisReply *rep, char *out, size_t len);

/* Run the loop until done(ud) or ms pass; returns done(ud). */
static inline int fx_run_until(fx_t *fx, int (*done)(void *ud), void *ud, uint64_t ms)
{
    return lh_run_until(&fx->lh, done, ud, ms);
}
/* Run the loop for ms. */
static inline void fx_wait(fx_t *fx, uint64_t ms) { lh_wait(&fx->lh, ms); }
/* Predicates for fx_run_until. */
int result_done(void *r);     /* a result_t */
int srv_has_held(void *s);    /* an rsrv_t with a command held */
int fx_connected(void *fx);   /* fx->r's stats say connected */

#endif
