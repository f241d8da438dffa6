/*
 * tcp.h: the plain TCP transport. Reads with libuv into the loop's shared
 * read buffer; sends through the loop's io_uring (ring.h) when it has one,
 * so that one loop turn's sends leave in one system call, else with a
 * try-write; what the socket does not take at once waits in a uv_write.
 * Also the listener that accepts such transports, and outbound connects.
 * Loop thread only.
 */
#ifndef WS_TCP_H
#define WS_TCP_H

#include "transport.h"

/* Send through one io_uring per loop from now on. Returns 0, or -1 with the
 * reason in err (no io_uring here: sends stay on writev). */
int ws_tcp_use_ring(ws_io_t *io, char *err, size_t errlen);

/* A new connection was accepted: the callee owns t and must start it
 * (ws_transport_start) or close it. */
typedef void (*ws_tcp_accept_cb)(void *ud, ws_transport_t *t);

typedef struct {
    uv_tcp_t tcp;
    ws_io_t *io;
    ws_tcp_accept_cb cb;
    void *ud;
    uint64_t t_warn;   /* last "out of descriptors" warning */
} ws_tcp_listener_t;

/* Bind host:port (IPv4 or IPv6 literal; port 0 = any free port) and listen.
 * Returns 0, or a negative error with a one-line message in err (nothing is
 * left open then). */
int ws_tcp_listen(ws_tcp_listener_t *l, ws_io_t *io, const char *host, int port,
                  ws_tcp_accept_cb cb, void *ud, char *err, size_t errlen);
/* Listen on fd, a bound listening socket made elsewhere (a worker's,
 * passed by its supervisor); the listener owns it from now on. */
int ws_tcp_listen_fd(ws_tcp_listener_t *l, ws_io_t *io, int fd, ws_tcp_accept_cb cb, void *ud,
                     char *err, size_t errlen);
/* A listening socket on host:port outside any loop (the supervisor's, for
 * its workers), with SO_REUSEPORT when reuseport is set. Returns the
 * descriptor with the port in *bound, or a negative error with a one-line
 * message in err. */
int ws_tcp_bind_socket(const char *host, int port, int reuseport, int *bound, char *err,
                       size_t errlen);
/* host as a URL shows it: an IPv6 address in brackets (buf holds it). */
const char *ws_tcp_url_host(const char *host, char *buf, size_t len);
/* The bound port, or -1. */
int ws_tcp_listener_port(ws_tcp_listener_t *l);
/* Stop accepting; the handle closes on a later loop turn. */
void ws_tcp_listener_close(ws_tcp_listener_t *l);

/* An outbound connection finished connecting: t is the caller's (start it or
 * close it), or NULL with status < 0. */
typedef void (*ws_tcp_connect_cb)(void *ud, ws_transport_t *t, int status);
typedef struct ws_tcp_connect_s ws_tcp_connect_t;

/* Connect to addr; cb runs once, on a later loop turn, unless cancelled.
 * Returns 0 with the attempt in *out (until cb runs), or a negative libuv
 * error (cb never runs). */
int ws_tcp_connect(ws_io_t *io, const struct sockaddr *addr, ws_tcp_connect_cb cb, void *ud,
                   ws_tcp_connect_t **out);
/* The same to a unix socket's path (the transport is of the same kind:
 * the loop's io_uring sends on it too). */
int ws_tcp_connect_unix(ws_io_t *io, const char *path, ws_tcp_connect_cb cb, void *ud,
                        ws_tcp_connect_t **out);
/* Give up an attempt whose cb has not run: the socket closes now (a SYN
 * nobody answers would otherwise hold it for minutes) and cb never runs. */
void ws_tcp_connect_cancel(ws_tcp_connect_t *c);

#endif
