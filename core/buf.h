/*
 * buf.h: a growable byte buffer, and ws_malloc which never returns NULL.
 *
 * Ownership: a ws_buf_t owns data; ws_buf_free releases it. Pointers into
 * data are invalidated by any call that may grow the buffer.
 */
#ifndef WS_BUF_H
#define WS_BUF_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint8_t *data;
    size_t len;
    size_t cap;
} ws_buf_t;

/* Allocate or die: on failure prints a message and aborts, so callers never check for NULL. */
void *ws_malloc(size_t n);
void *ws_calloc(size_t n, size_t size);
void *ws_realloc(void *p, size_t n);
char *ws_strndup(const char *s, size_t n);

void ws_buf_init(ws_buf_t *b);
/* Ensure room for extra more bytes past len; grows geometrically. */
void ws_buf_reserve(ws_buf_t *b, size_t extra);
/* Make the capacity exactly cap (>= len). Buffers are counted in mem.h's
 * budget: change their storage only through these functions. */
void ws_buf_resize(ws_buf_t *b, size_t cap);
void ws_buf_append(ws_buf_t *b, const void *p, size_t n);
void ws_buf_append_str(ws_buf_t *b, const char *s);
/* Empty the buffer; its storage is released when larger than keep bytes (bounds idle memory). */
void ws_buf_reset(ws_buf_t *b, size_t keep);
void ws_buf_free(ws_buf_t *b);

/*
 * A refcounted block of bytes queued for writing. One block may sit in many
 * connections' queues at once (a published frame is built once and shared);
 * it is freed when the last reference is released. Blocks of the standard
 * size are recycled through a small free list, so steady traffic does not
 * allocate.
 */
typedef struct {
    uint32_t refs;
    size_t len;
    size_t cap;
    uint8_t data[];
} ws_chunk_t;

#define WS_CHUNK_STD 16384

/* A chunk with room for at least cap bytes (a standard one when cap fits:
 * small frames are appended to it), refs = 1, len = 0. */
ws_chunk_t *ws_chunk_new(size_t cap);
/* A chunk of exactly cap bytes, for a frame that is never appended to (a
 * published one): a backlog of small frames then costs their size, not
 * WS_CHUNK_STD each. */
ws_chunk_t *ws_chunk_new_exact(size_t cap);
/* Give back the unused room of a chunk only its caller holds, once nothing
 * more will be appended to it. Returns the chunk, which may have moved. */
ws_chunk_t *ws_chunk_shrink(ws_chunk_t *c);
static inline ws_chunk_t *ws_chunk_ref(ws_chunk_t *c)
{
    c->refs++;
    return c;
}
void ws_chunk_unref(ws_chunk_t *c);

#endif
