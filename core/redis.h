/*
 * redis.h: a Redis client on the loop, for wspush.redis (and the broker).
 * No Lua. Commands are formatted by hiredis's formatter and replies parsed
 * by its reader (Debian's libhiredis, 0.14); the bytes go through our own
 * transports (tcp.h), so no hiredis context, thread or blocking call is
 * involved.
 *
 * One client is one connection: every call is pipelined on it, in order,
 * and each reply goes to its own call's callback. The client connects on
 * its first call, then keeps a connection up: when it drops, the calls in
 * flight fail with "connection lost" (they are never sent twice: an INCR
 * must not run twice), and it reconnects with backoff (50 ms doubling to
 * 2 s, each delay drawn from its upper half) and jitter, replaying AUTH and
 * SELECT before anything else is sent. Calls made while it is not connected
 * wait, at most max_queued of them, each until its deadline.
 *
 * Deadlines: every call has the client's timeout. A call sent whose
 * deadline passes with nothing read from Redis since it was sent means a
 * link that is up but silent (or a Redis stuck longer than the timeout): the
 * connection is dropped and made again.
 *
 * Memory: bytes of replies not yet complete are counted as WS_MEM_BUFFERS
 * (mem.h); a reply over WS_REDIS_MAX_REPLY fails its call and the
 * connection.
 *
 * Loop thread only. Callbacks run from the loop (reads, timers), never
 * inside a ws_redis_* call; they may start and cancel calls, but not free
 * the client.
 */
#ifndef WS_REDIS_H
#define WS_REDIS_H

#include <hiredis/hiredis.h>
#include <stddef.h>
#include <stdint.h>

#include "transport.h"

#define WS_REDIS_TIMEOUT_MS 5000
#define WS_REDIS_MAX_QUEUED 1000
#define WS_REDIS_MAX_REPLY (64u << 20)

/* Where a client connects and how it logs in. */
typedef struct {
    char *host;       /* TCP: a name or an IP literal (IPv6 without brackets); NULL for unix */
    uint16_t port;
    char *path;       /* a unix socket's path, or NULL */
    char *user;       /* AUTH user, or NULL (password alone) */
    char *password;   /* or NULL: no AUTH */
    long db;          /* SELECTed when not 0 */
    char *display;    /* the URL as logs may show it: the password as "***" */
} ws_redis_url_t;

/* Parse redis://[[user]:password@]host[:port][/db] or
 * unix:///path[?db=N][&user=U][&password=P] (s[0..len)). Returns 0 with u
 * filled (ws_redis_url_free), or -1 with the reason in err (never holding
 * the password). rediss:// is refused: hiredis 0.14 has no TLS. */
int ws_redis_url_parse(ws_redis_url_t *u, const char *s, size_t len, char *err, size_t errlen);
void ws_redis_url_free(ws_redis_url_t *u);

typedef struct ws_redis_s ws_redis_t;
typedef struct ws_redis_call_s ws_redis_call_t;

typedef struct {
    uint32_t timeout_ms; /* 0: WS_REDIS_TIMEOUT_MS */
    unsigned max_queued; /* 0: WS_REDIS_MAX_QUEUED */
    int verify;          /* a connection is ready only once Redis answered a PING on it (a
                          * Redis that is stopped still completes TCP connects) */
} ws_redis_opts_t;

/* A client for u (copied) on io's loop; nothing connects until the first
 * call. */
ws_redis_t *ws_redis_new(ws_io_t *io, const ws_redis_url_t *u, const ws_redis_opts_t *o);
/* New settings for calls made from now on. */
void ws_redis_set_opts(ws_redis_t *r, const ws_redis_opts_t *o);
/* The URL as logs may show it. */
const char *ws_redis_display(const ws_redis_t *r);
/* Drop every call without its callback, close the connection, free the
 * client; the loop must keep running until its handles have closed. */
void ws_redis_free(ws_redis_t *r);

/* A call's end: reply (hiredis's, valid during the call only) or, when it
 * is NULL, error: "connection lost", "timeout", "reply too large", or the
 * text Redis answered AUTH or SELECT with when they failed. A reply of type
 * REDIS_REPLY_ERROR is Redis's answer to the command itself. */
typedef void (*ws_redis_cb)(void *ud, const redisReply *reply, const char *error);

/* Send argv[0..argc) (argv[i] of lens[i] bytes). ncmds > 1 makes a unit of
 * several commands: argc[i], argv and lens then hold ncmds commands one
 * after the other, their replies are read, and cb hears the last one (the
 * EXEC of a MULTI ... EXEC). Returns the call, or NULL with *error set
 * ("redis unavailable": max_queued calls already wait for a connection);
 * then cb never runs. */
ws_redis_call_t *ws_redis_call(ws_redis_t *r, unsigned ncmds, const int *argc, const char **argv,
                               const size_t *lens, ws_redis_cb cb, void *ud, const char **error);
/* cb never runs; a call already sent still has its reply read (and dropped),
 * so that the replies after it reach their own calls. */
void ws_redis_cancel(ws_redis_call_t *c);

/* A subscriber (the broker's): Redis sends messages of the channels it
 * SUBSCRIBEd to without a call asking. Replies of the form
 * ["message", channel, payload] go to push; SUBSCRIBE, UNSUBSCRIBE and PING
 * are calls like any other (one channel per SUBSCRIBE call: one reply
 * each). state hears each login (up = 1: subscribe again, the session is
 * new) and each lost connection (0). */
typedef struct {
    void (*push)(void *ud, const redisReply *message);
    void (*state)(void *ud, int up);
    void *ud;
} ws_redis_sub_t;
void ws_redis_set_subscriber(ws_redis_t *r, const ws_redis_sub_t *s);
/* Connect now rather than at the first call (a subscriber must be connected
 * to hear anything). */
void ws_redis_connect(ws_redis_t *r);
/* 1 while connected and logged in. */
int ws_redis_ready(const ws_redis_t *r);

/* Figures: 1 while connected (AUTH and SELECT done); connections made;
 * calls waiting for a reply or for a connection. */
typedef struct {
    int connected;
    uint64_t connects;
    size_t in_flight, queued;
} ws_redis_stats_t;
void ws_redis_stats(const ws_redis_t *r, ws_redis_stats_t *s);

#endif
