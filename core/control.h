/*
 * control.h: the control socket (--control-socket PATH), so that a reload
 * can be asked for and its outcome waited for: `wspush --reload PATH`, the
 * ExecReload= of the systemd unit. A client connects, writes "reload\n" and
 * reads one line back, "ok MESSAGE" when the new version serves or
 * "error MESSAGE" when the previous one keeps serving; then the server
 * closes. The socket is mode 0600: only the server's user (and root) may ask.
 *
 * The application numbers its reload attempts through this module: it calls
 * ws_control_begin() when one starts and ws_control_end() when its outcome is
 * known (in the same call stack or later, e.g. after a check child and a
 * round of workers). A request waits for the first attempt that begins after
 * it arrived, so it always sees the files as they were when it asked. Loop
 * thread only; every function is a no-op on a zeroed, never opened value.
 */
#ifndef WS_CONTROL_H
#define WS_CONTROL_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct ws_control_req_s ws_control_req_t;

typedef struct {
    /* A client asked for a reload: start one (ws_control_begin() inside, or
     * at the start of the next attempt when one is under way). */
    void (*reload)(void *ud);
} ws_control_ops_t;

typedef struct {
    uv_loop_t *loop;
    uv_pipe_t listener;
    char *path;               /* unlinked on close */
    const ws_control_ops_t *ops;
    void *ud;
    uint64_t seq;             /* the latest attempt begun */
    ws_control_req_t *reqs;   /* connected clients */
} ws_control_t;

/* Listen on path (a stale socket there is replaced). 0, or -1 with a
 * one-line message in err. */
int ws_control_open(ws_control_t *c, uv_loop_t *loop, const char *path,
                    const ws_control_ops_t *ops, void *ud, char *err, size_t errlen);

/* A reload attempt starts; returns its number for ws_control_end(). */
uint64_t ws_control_begin(ws_control_t *c);

/* Attempt seq ended: answer the clients waiting for it. */
void ws_control_end(ws_control_t *c, uint64_t seq, int ok, const char *msg);

/* The clients waiting for attempt from wait for attempt to instead (a newer
 * version superseded the one being rolled out). */
void ws_control_retag(ws_control_t *c, uint64_t from, uint64_t to);

/* Stop listening, remove the socket file, answer waiting clients with an error. */
void ws_control_close(ws_control_t *c);

/* The client side: send cmd to the server at path and wait (at most
 * timeout_ms) for its line. Returns 0 for "ok", 1 for "error" or no answer,
 * with the message (or what went wrong) in msg. Blocking; no loop. */
int ws_control_ask(const char *path, const char *cmd, int timeout_ms, char *msg, size_t msglen);

#endif
