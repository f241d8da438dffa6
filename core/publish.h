/*
 * publish.h: deliver one message to every subscriber of a topic. The
 * message is framed once into a shared chunk (and compressed once per
 * distinct compression setting among the subscribers), and that same chunk
 * is queued on each of them. Loop thread only.
 */
#ifndef WS_PUBLISH_H
#define WS_PUBLISH_H

#include <stddef.h>

#include "hub.h"

/* Queue data as one op (ws_opcode_t) message on every open subscriber of the
 * topic name[0..len) in h, and hand it to the hub's relay (the other
 * workers) when there is one. Returns the number of connections of h it was
 * queued on (a subscriber whose backpressure policy refused it is not
 * counted). */
size_t ws_publish(ws_hub_t *h, const char *name, size_t len, unsigned op, const void *data,
                  size_t dlen);
/* The same in h only. */
size_t ws_publish_local(ws_hub_t *h, const char *name, size_t len, unsigned op, const void *data,
                        size_t dlen);
/* A message published elsewhere (another worker, another node): to h's
 * subscribers, then to the host's published upcall (wspush.on_publish). */
size_t ws_publish_remote(ws_hub_t *h, const char *name, size_t len, unsigned op,
                         const void *data, size_t dlen);

#endif
