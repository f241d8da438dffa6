/*
 * pubsub.h: the topic registry: topics and their subscribers, indexed both
 * ways (topic -> members and member -> topics) so that a member leaves all
 * its topics in time proportional to its own memberships. A member is any
 * owner (a connection) with a ws_pubsub_member_t of its own; the registry
 * knows nothing else of it. Publishing is publish.h's. Loop thread only.
 */
#ifndef WS_PUBSUB_H
#define WS_PUBSUB_H

#include <stddef.h>
#include <stdint.h>

typedef struct ws_topic_s ws_topic_t;

/* One membership: owner is in topic at topic->subs[idx]. */
typedef struct {
    ws_topic_t *topic;
    void *owner;
    size_t idx;
} ws_sub_t;

/* The memberships of one owner (embedded in it; zeroed = none). */
typedef struct {
    ws_sub_t **subs;
    uint32_t n, cap;
} ws_pubsub_member_t;

typedef struct {
    ws_topic_t **buckets;
    size_t nbuckets;
    size_t ntopics;
    unsigned walking;  /* a topic's subscribers are being walked: no one may leave */
    /* Optional: a topic got its first subscriber (present 1) or lost its
     * last (0). The broker subscribes to a topic only while it has some. */
    void (*watch)(void *ud, const char *name, size_t len, int present);
    void *watch_ud;
} ws_pubsub_t;

void ws_pubsub_init(ws_pubsub_t *ps);
/* Free all topics; memberships must have been removed first. */
void ws_pubsub_free(ws_pubsub_t *ps);

/* Returns 1 if owner (whose memberships are m) joined, 0 if it already was
 * a member. The name is copied. */
int ws_pubsub_subscribe(ws_pubsub_t *ps, ws_pubsub_member_t *m, void *owner, const char *name,
                        size_t len);
/* Returns 1 if m left the topic, 0 if it was not a member. */
int ws_pubsub_unsubscribe(ws_pubsub_t *ps, ws_pubsub_member_t *m, const char *name, size_t len);
/* Leave every topic and release m's array. */
void ws_pubsub_leave_all(ws_pubsub_t *ps, ws_pubsub_member_t *m);
/* Name of a membership's topic (valid while the membership lasts). */
const char *ws_pubsub_topic_name(const ws_sub_t *sub, size_t *len);

/* The topic named so, or NULL when it has no subscribers. */
ws_topic_t *ws_pubsub_find(ws_pubsub_t *ps, const char *name, size_t len);
/* The subscribers of t: *n memberships, each with its owner. Between
 * ws_pubsub_walk_begin and _end nobody may leave a topic (asserted): the
 * array being walked must not change under the walker. */
ws_sub_t *const *ws_pubsub_subscribers(const ws_topic_t *t, size_t *n);
static inline void ws_pubsub_walk_begin(ws_pubsub_t *ps) { ps->walking++; }
static inline void ws_pubsub_walk_end(ws_pubsub_t *ps) { ps->walking--; }

#endif
