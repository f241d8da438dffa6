/*
 * pubsub.h: topics and their subscribers, indexed both ways (topic ->
 * connections and connection -> topics) so that a connection leaves all its
 * topics in time proportional to its own memberships. A published message is
 * framed once into a shared chunk and that same chunk is queued on every
 * subscriber.
 */
#ifndef WS_PUBSUB_H
#define WS_PUBSUB_H

#include <stddef.h>
#include <stdint.h>

typedef struct ws_conn_s ws_conn_t;
typedef struct ws_topic_s ws_topic_t;

/* One membership: conn is in topic at topic->subs[idx]. */
typedef struct {
    ws_topic_t *topic;
    ws_conn_t *conn;
    size_t idx;
} ws_sub_t;

typedef struct {
    ws_topic_t **buckets;
    size_t nbuckets;
    size_t ntopics;
} ws_pubsub_t;

void ws_pubsub_init(ws_pubsub_t *ps);
/* Free all topics; memberships must have been removed first. */
void ws_pubsub_free(ws_pubsub_t *ps);

/* Returns 1 if c joined, 0 if it already was a member. */
int ws_pubsub_subscribe(ws_pubsub_t *ps, ws_conn_t *c, const char *name, size_t len);
/* Returns 1 if c left, 0 if it was not a member. */
int ws_pubsub_unsubscribe(ws_pubsub_t *ps, ws_conn_t *c, const char *name, size_t len);
void ws_pubsub_unsubscribe_all(ws_pubsub_t *ps, ws_conn_t *c);
/* Name of a membership's topic. */
const char *ws_pubsub_topic_name(const ws_sub_t *sub, size_t *len);

/* Frame data once as op (ws_opcode_t) and queue it on every open subscriber.
 * Returns the number of connections it was queued on. */
size_t ws_pubsub_publish(ws_pubsub_t *ps, const char *name, size_t len, unsigned op,
                         const void *data, size_t dlen);

#endif
