/*
 * worker.h: a worker process's side of --workers. The supervisor starts it
 * by fork + exec with WSPUSH_ROLE=worker and WSPUSH_WORKER="ID/COUNT" in the
 * environment and these descriptors:
 *
 *   2        its stderr: a datagram socket to the supervisor, one log record each
 *   3        the listening socket (its own with SO_REUSEPORT, or the shared one)
 *   4        the control socket: "reload DIGEST WHY" in, "ready DIGEST",
 *            "reloaded DIGEST MS" and "refused REASON" out; its end means stop
 *   5        the tally (tally.h): ids, counts and limits shared by the workers
 *   6        its mailbox (mailbox.h), to read
 *   7 + i    worker i+1's mailbox, to send to (i = 0..COUNT-1)
 *
 * Loop thread only.
 */
#ifndef WS_WORKER_H
#define WS_WORKER_H

#include <stdarg.h>
#include <stdint.h>
#include <uv.h>

#include "hub.h"
#include "mailbox.h"
#include "tally.h"

#define WS_WORKER_FD_LISTEN 3
#define WS_WORKER_FD_CONTROL 4
#define WS_WORKER_FD_TALLY 5
#define WS_WORKER_FD_MAILBOX 6
#define WS_WORKER_FD_PEERS 7

typedef struct {
    /* Load the version digest now (the supervisor checked it); 0 or -1
     * with the reason in err. */
    int (*reload)(void *ud, const char *why, uint64_t digest, char *err, size_t errlen);
    /* The supervisor is gone or asked to stop: stop as on SIGTERM. */
    void (*stop)(void *ud);
} ws_worker_ops_t;

typedef struct {
    unsigned id, count;
    ws_tally_t *tally;
    ws_mailbox_t *mailbox;
    ws_hub_t *hub;
    uv_poll_t ctl;
    uv_timer_t figures;
    const ws_worker_ops_t *ops;
    void *ud;
    int started;
} ws_worker_t;

/* 1 when this process was started as a worker (its id and count are then
 * in w), 0 when not, -1 with the reason in err when its environment is
 * broken. */
int ws_worker_from_env(ws_worker_t *w, char *err, size_t errlen);

/* Map the tally and tell the hub (before the Lua host is made: the script
 * reads wspush.worker as it loads). 0, or -1 with the reason in err. */
int ws_worker_attach(ws_worker_t *w, ws_hub_t *hub, char *err, size_t errlen);

/* Open the mailboxes and the control socket on loop (the application then
 * relays the hub's publishes with ws_worker_send). */
void ws_worker_start(ws_worker_t *w, uv_loop_t *loop, const ws_worker_ops_t *ops, void *ud);

/* A publish of this worker, to the other workers (after delivering what
 * they published before it). */
void ws_worker_send(ws_worker_t *w, const char *topic, size_t tlen, unsigned op,
                    const void *data, size_t dlen);

/* A control message (printf-style) on the control socket fd, either side's:
 * 0, or -1 with errno set. */
int ws_worker_vsend(int fd, const char *fmt, va_list ap);

/* Tell the supervisor this worker serves version digest. */
void ws_worker_ready(ws_worker_t *w, uint64_t digest);

/* Stop reading the control socket and the mailbox (a graceful stop). */
void ws_worker_close(ws_worker_t *w);
/* After the loop ended. */
void ws_worker_free(ws_worker_t *w);

#endif
