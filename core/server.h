/*
 * server.h: a hub served on a libuv loop over TCP: the listener, the loop
 * hooks that flush each turn's output and run the hub's timers, the periodic
 * sweep, and the graceful stop. Links without Lua: what the application
 * wants to hear comes through the callbacks below. Loop thread only.
 */
#ifndef WS_SERVER_H
#define WS_SERVER_H

#include <stdint.h>
#include <uv.h>

#include "hub.h"
#include "tcp.h"
#include "tls.h"

typedef struct ws_server_s {
    ws_hub_t *hub;
    ws_tcp_listener_t listener;
    ws_tls_ctx_t *tls;    /* TLS for new connections, or NULL: cleartext */
    uv_timer_t sweep;
    unsigned sweeps; /* sweeps run, for the gauges' slower pace */
    uv_timer_t tick;      /* armed for the next of the hub's timers */
    uint64_t tick_due;    /* when tick fires; UINT64_MAX = not armed */
    uv_prepare_t prepare;
    uv_check_t check;
    uv_idle_t idle;       /* keeps the loop from blocking while work is pending */
    uv_timer_t stop_timer;
    int stopping;         /* 1 during a graceful stop, 2 once every handle is closed */
    /* The server has been quiet for a while: give memory back. Return 1 when
     * done until the next burst, 0 to be called again next time. */
    int (*quiet)(void *ud);
    void *quiet_ud;
    /* The stop has finished: every connection is gone and the server's
     * handles are closing. The application closes its own then. */
    void (*stopped)(void *ud);
    void *stopped_ud;
    /* Work of the application that a graceful stop waits for too (handlers
     * still waiting on a timer or another service): how much is left. */
    size_t (*busy)(void *ud);
    void *busy_ud;
    int forced;           /* the stop timed out: nothing more is waited for */
    uint64_t work_seen;   /* hub->work at the last slow sweep */
    uint64_t pings_seen;  /* hub->pings at the last slow sweep */
    int pinged;           /* that sweep sent pings in a quiet period: trim at the next tick */
    int mem_dirty;        /* there was traffic since memory was last given back */
} ws_server_t;

/* Listen on host:port for hub's connections and hook the loop. On failure
 * returns a negative error with a one-line message in err; nothing is left
 * running. */
int ws_server_init(ws_server_t *s, ws_hub_t *hub, const char *host, int port, char *err,
                   size_t errlen);

/* The same on fd, a listening socket made by the supervisor (a worker). */
int ws_server_init_fd(ws_server_t *s, ws_hub_t *hub, int fd, char *err, size_t errlen);

/* Serve TLS with ctx from the next connection on (the server takes the
 * reference; connections made before keep theirs). NULL: cleartext. */
void ws_server_set_tls(ws_server_t *s, ws_tls_ctx_t *ctx);

/* The bound port (useful with --port 0). */
int ws_server_port(ws_server_t *s);

/* Graceful stop: stop accepting, close every connection (1001) and wait for
 * them, at most timeout seconds, then close the rest. The loop ends once
 * the last one is gone and every other handle of the application is closed. */
void ws_server_stop(ws_server_t *s, double timeout);
/* Close every connection now (a second signal). */
void ws_server_abort(ws_server_t *s);

/* Release what is left (after the loop ended). */
void ws_server_free(ws_server_t *s);

#endif
