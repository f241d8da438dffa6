/* Frame once, queue everywhere. */
#include "publish.h"

#include <string.h>

#include "conn.h"
#include "deflate.h"
#include "frame.h"
#include "stats.h"

static ws_chunk_t *make_frame(unsigned first, const void *data, size_t dlen)
{
    uint8_t hdr[WS_FRAME_HDR_MAX];
    size_t hl = ws_frame_write_header(hdr, WS_FRAME_FIN | first, dlen, NULL);
    ws_chunk_t *frame = ws_chunk_new_exact(hl + dlen);
    memcpy(frame->data, hdr, hl);
    memcpy(frame->data + hl, data, dlen);
    frame->len = hl + dlen;
    return frame;
}

/* One compressed frame per distinct setting among the subscribers (window,
 * level, memLevel: routes may set their own), made on first use: one
 * compression per setting in use, not one per subscriber. */
#define ZFRAMES 8
typedef struct {
    int wb, level, mem_level;
    ws_chunk_t *frame; /* NULL when the zlib memory cap refused */
} zframe_t;

/* The frame for d's setting at window wb; NULL means the plain frame (the cap
 * refused, or more distinct settings than ZFRAMES, which is no error: an
 * uncompressed message is always allowed). */
static ws_chunk_t *compressed(zframe_t *zf, size_t *nzf, int wb, const ws_deflate_t *d,
                              unsigned op, const void *data, size_t dlen)
{
    for (size_t i = 0; i < *nzf; i++)
        if (zf[i].wb == wb && zf[i].level == d->level && zf[i].mem_level == d->mem_level)
            return zf[i].frame;
    if (*nzf == ZFRAMES)
        return NULL;
    zframe_t *z = &zf[(*nzf)++];
    z->wb = wb;
    z->level = d->level;
    z->mem_level = d->mem_level;
    z->frame = NULL;
    ws_buf_t out;
    ws_buf_init(&out);
    if (ws_deflate_compress_once(wb, d->level, d->mem_level, data, dlen, &out) == 0)
        z->frame = make_frame(op | WS_FRAME_RSV1, out.data, out.len);
    ws_buf_free(&out);
    return z->frame;
}

size_t ws_publish(ws_hub_t *h, const char *name, size_t len, unsigned op, const void *data,
                  size_t dlen)
{
    ws_stats_inc(WS_STAT_PUBLISHES);
    h->relay_failed = h->relay && h->relay(h->relay_ud, name, len, op, data, dlen) != 0;
    return ws_publish_local(h, name, len, op, data, dlen);
}

size_t ws_publish_remote(ws_hub_t *h, const char *name, size_t len, unsigned op,
                         const void *data, size_t dlen)
{
    size_t n = ws_publish_local(h, name, len, op, data, dlen);
    if (h->host && h->host->published)
        h->host->published(h->host_ud, name, len, data, dlen);
    return n;
}

size_t ws_publish_local(ws_hub_t *h, const char *name, size_t len, unsigned op, const void *data,
                        size_t dlen)
{
    ws_topic_t *t = ws_pubsub_find(&h->pubsub, name, len);
    if (!t)
        return 0;
    ws_chunk_t *plain = make_frame(op, data, dlen);
    zframe_t zf[ZFRAMES];
    size_t nzf = 0, n = 0;
    /* A send never leaves a topic (conn.h), so the array stays as it is. */
    ws_pubsub_walk_begin(&h->pubsub);
    size_t count;
    ws_sub_t *const *subs = ws_pubsub_subscribers(t, &count);
    for (size_t i = 0; i < count; i++) {
        ws_conn_t *c = subs[i]->owner;
        ws_chunk_t *f = plain;
        ws_deflate_t *d = ws_conn_deflate(c);
        if (d && ws_deflate_should_compress(d, dlen)) {
            int wb = d->params.server_max_window_bits;
            ws_chunk_t *z = compressed(zf, &nzf, wb, d, op, data, dlen);
            if (z && ws_deflate_use_shared(d, wb))
                f = z;
        }
        if (ws_conn_send_chunk(c, f) == 0)
            n++;
    }
    ws_pubsub_walk_end(&h->pubsub);
    ws_stats_add(WS_STAT_DELIVERIES, n);
    ws_stats_add(WS_STAT_MSGS_OUT, n);
    ws_stats_add(WS_STAT_BYTES_OUT, n * dlen);
    ws_chunk_unref(plain);
    for (size_t i = 0; i < nzf; i++)
        if (zf[i].frame)
            ws_chunk_unref(zf[i].frame);
    return n;
}
