#include "buf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mem.h"

static void oom(size_t n)
{
    fprintf(stderr, "wspush: out of memory allocating %zu bytes\n", n);
    abort();
}

void *ws_malloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        oom(n);
    return p;
}

void *ws_calloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p)
        oom(n * size);
    return p;
}

void *ws_realloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q)
        oom(n);
    return q;
}

char *ws_strndup(const char *s, size_t n)
{
    char *d = ws_malloc(n + 1);
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

void ws_buf_init(ws_buf_t *b)
{
    b->data = NULL;
    b->len = b->cap = 0;
}

void ws_buf_reserve(ws_buf_t *b, size_t extra)
{
    if (b->cap - b->len >= extra)
        return;
    size_t cap = b->cap ? b->cap : 256;
    while (cap - b->len < extra)
        cap *= 2;
    ws_buf_resize(b, cap);
}

void ws_buf_resize(ws_buf_t *b, size_t cap)
{
    ws_mem_sub(WS_MEM_BUFFERS, b->cap);
    b->data = ws_realloc(b->data, cap);
    b->cap = cap;
    ws_mem_add(WS_MEM_BUFFERS, cap);
}

void ws_buf_append(ws_buf_t *b, const void *p, size_t n)
{
    if (n == 0)
        return;
    ws_buf_reserve(b, n);
    memcpy(b->data + b->len, p, n);
    b->len += n;
}

void ws_buf_append_str(ws_buf_t *b, const char *s)
{
    ws_buf_append(b, s, strlen(s));
}

void ws_buf_reset(ws_buf_t *b, size_t keep)
{
    b->len = 0;
    if (b->cap > keep)
        ws_buf_free(b);
}

void ws_buf_free(ws_buf_t *b)
{
    ws_mem_sub(WS_MEM_BUFFERS, b->cap);
    free(b->data);
    ws_buf_init(b);
}

/* Recycled standard chunks: enough to absorb bursts without holding memory
 * for long when traffic stops (16 x 16 KiB = 256 KiB at most). */
#define FREE_MAX 16
static ws_chunk_t *free_list[FREE_MAX];
static size_t free_n;

ws_chunk_t *ws_chunk_new_exact(size_t cap)
{
    ws_chunk_t *c;
    if (cap == WS_CHUNK_STD && free_n > 0) {
        c = free_list[--free_n];
    } else {
        c = ws_malloc(sizeof *c + cap);
        c->cap = cap;
        ws_mem_add(WS_MEM_QUEUE, sizeof *c + cap);
    }
    c->refs = 1;
    c->len = 0;
    return c;
}

ws_chunk_t *ws_chunk_new(size_t cap)
{
    return ws_chunk_new_exact(cap < WS_CHUNK_STD ? WS_CHUNK_STD : cap);
}

/* Room below this is not worth a realloc. */
#define SHRINK_MIN 1024

ws_chunk_t *ws_chunk_shrink(ws_chunk_t *c)
{
    if (c->refs != 1 || c->cap - c->len < SHRINK_MIN)
        return c;
    ws_mem_sub(WS_MEM_QUEUE, c->cap - c->len);
    c = ws_realloc(c, sizeof *c + c->len);
    c->cap = c->len;
    return c;
}

void ws_chunk_unref(ws_chunk_t *c)
{
    if (--c->refs > 0)
        return;
    if (c->cap == WS_CHUNK_STD && free_n < FREE_MAX) {
        free_list[free_n++] = c;
    } else {
        ws_mem_sub(WS_MEM_QUEUE, sizeof *c + c->cap);
        free(c);
    }
}
