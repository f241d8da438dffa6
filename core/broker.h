/*
 * broker.h: publish across nodes through Redis (--broker). A node is one
 * wspush server (a supervisor and its workers, or one process); each worker
 * of it runs its own broker client. Per Redis (a shard; topics are spread
 * over the shards by a stable hash of their name) the client keeps two
 * connections made by redis.h: one that PUBLISHes, one that SUBSCRIBEs to
 * the channel of each topic this worker has local subscribers for, and only
 * while it has them. A channel is prefix .. topic.
 *
 * The envelope on the wire (the PUBLISH payload), little-endian:
 *   u8 version (1) | u8 opcode (1 text, 2 binary) | u64 node | u16 worker |
 *   u64 seq | the message
 * node is random per node and shared by its workers: a worker skips what its
 * own node published (the workers' mailboxes delivered it already). seq
 * counts each (node, worker)'s publishes per topic from 1, so a receiver
 * that sees a jump knows how many it missed (the event "gap").
 *
 * Trouble: a lost connection is made again with redis.h's backoff and
 * jitter; the subscriber then subscribes again to every topic it needs and
 * reports "up"; a PING every ping_ms on the subscriber catches a link that
 * is up but silent (its reply must come within timeout_ms). While a shard's
 * publishing connection is not up, a publish to its topics fails at once
 * (ws_broker_publish returns -1): the local subscribers still get it, the
 * other nodes do not. No Lua; loop thread only.
 */
#ifndef WS_BROKER_H
#define WS_BROKER_H

#include <stddef.h>
#include <stdint.h>

#include "transport.h"

#define WS_BROKER_MAX_SHARDS 16

typedef struct ws_broker_s ws_broker_t;

typedef struct {
    const char *what;    /* "up" (a shard connected), "down" (it was lost), "gap" */
    const char *shard;   /* the shard's URL as logs show it */
    const char *topic;   /* gap: the topic, and how many messages of one
                          * publisher were missed */
    size_t tlen;
    uint64_t missed;
} ws_broker_event_t;

typedef struct {
    /* A message published on another node, for this worker's subscribers. */
    void (*deliver)(void *ud, const char *topic, size_t tlen, unsigned op, const void *data,
                    size_t dlen);
    void (*event)(void *ud, const ws_broker_event_t *e);
    void *ud;
} ws_broker_cb_t;

typedef struct {
    const char *urls;    /* one or more redis:// (or unix://) URLs, comma-separated */
    const char *prefix;  /* of every channel; "" allowed */
    uint64_t node;       /* this node's id: the same in each of its workers */
    unsigned worker;     /* 1.. */
    uint32_t ping_ms;    /* 0: 5000 */
    uint32_t timeout_ms; /* 0: 3000 */
} ws_broker_config_t;

/* Parse the URLs and make the clients (nothing connects before
 * ws_broker_start). Returns it, or NULL with the reason in err (never a
 * password). */
ws_broker_t *ws_broker_new(ws_io_t *io, const ws_broker_config_t *c, const ws_broker_cb_t *cb,
                           char *err, size_t errlen);
/* Connect every shard. */
void ws_broker_start(ws_broker_t *b);

/* To the other nodes. 0, or -1 when the topic's shard is not connected. */
int ws_broker_publish(ws_broker_t *b, const char *topic, size_t tlen, unsigned op,
                      const void *data, size_t dlen);
/* This worker needs topic's messages (want 1) or no longer (0). */
void ws_broker_want(ws_broker_t *b, const char *topic, size_t tlen, int want);

typedef struct {
    unsigned shards, up;            /* shards, and those whose subscriber is connected */
    uint64_t reconnects;            /* connections made again after one was lost */
    uint64_t published, publish_failed, received, gaps, missed;
    size_t topics;                  /* topics subscribed to */
} ws_broker_stats_t;
void ws_broker_stats(const ws_broker_t *b, ws_broker_stats_t *s);

/* Close the connections; the loop must run on until their handles closed. */
void ws_broker_free(ws_broker_t *b);

#endif
