/* The Lua state's allocator: small blocks are recycled through free lists
 * per size class.
 *
 * Why: a handler allocates a few short strings per message (the message, a
 * reply built with ..) and the collector frees them in batches. A batch of
 * frees overflows glibc's per-size cache and sends the next allocations
 * through its bins (_int_malloc, unlink_chunk, malloc_consolidate: ~5 % of a
 * pipelined echo). Lua passes the block's size on free, so a class list needs
 * no header. The lists are bounded (POOL_MAX), and emptied when the server goes quiet
 * (ws__lalloc_trim), so idle memory is not held. Under a sanitizer every
 * block goes to malloc, so that use-after-free stays visible. */
#include <stdlib.h>
#include <string.h>

#include "lalloc.h"
#include "mem.h"

/* Class k holds blocks of up to 16k + 24 bytes: what glibc gives a request
 * of that size anyway (16-byte chunks with an 8-byte header), so rounding up
 * to the class costs no memory. */
#define CLASSES 16
#define CLASS_MAX (16 * (CLASSES - 1) + 24)
/* The collector frees a cycle's garbage at once: tens of thousands of
 * strings at a high message rate. Keep up to this many bytes for reuse. */
#define POOL_MAX (4u << 20)

#if defined(__SANITIZE_ADDRESS__)
#define POOLING 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define POOLING 0
#endif
#endif
#ifndef POOLING
#define POOLING 1
#endif

typedef struct block_s {
    struct block_s *next;
} block_t;

static block_t *lists[CLASSES];
static size_t pooled; /* bytes on the lists */
static size_t in_use; /* bytes Lua holds */
static size_t cap;    /* --lua-max-memory; 0 = none */
static int enforcing; /* nesting of ws__lalloc_enforce(1) */

void ws__lalloc_set_cap(size_t bytes) { cap = bytes; }
void ws__lalloc_enforce(int on) { enforcing += on ? 1 : -1; }
size_t ws__lalloc_in_use(void) { return in_use; }

/* Class of a block of n bytes (1..CLASS_MAX), and its capacity. */
static unsigned class_of(size_t n) { return n <= 24 ? 0 : (unsigned)((n - 9) / 16); }
static size_t class_cap(unsigned k) { return 16 * (size_t)k + 24; }

static void *take(size_t n)
{
    if (!POOLING || n > CLASS_MAX)
        return malloc(n);
    unsigned k = class_of(n);
    block_t *b = lists[k];
    if (!b)
        return malloc(class_cap(k));
    lists[k] = b->next;
    pooled -= class_cap(k);
    return b;
}

static void give(void *p, size_t n)
{
    if (!POOLING || n > CLASS_MAX || n == 0) {
        free(p);
        return;
    }
    unsigned k = class_of(n);
    if (pooled >= POOL_MAX) {
        free(p);
        return;
    }
    block_t *b = p;
    b->next = lists[k];
    lists[k] = b;
    pooled += class_cap(k);
}

static void *resize(void *ptr, size_t osize, size_t nsize);

void *ws__lalloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    (void)ud;
    /* Without a block, osize is the kind of object being made, not a size. */
    if (!ptr)
        osize = 0;
    /* Lua requires that shrinking never fails; growth may, under the cap. */
    if (nsize > osize && enforcing > 0 && cap && in_use + (nsize - osize) > cap)
        return NULL;
    void *q = resize(ptr, osize, nsize);
    if (q || nsize == 0) {
        in_use = in_use - osize + nsize;
        ws_mem_sub(WS_MEM_LUA, osize);
        ws_mem_add(WS_MEM_LUA, nsize);
    }
    return q;
}

static void *resize(void *ptr, size_t osize, size_t nsize)
{
    if (nsize == 0) {
        if (ptr)
            give(ptr, osize);
        return NULL;
    }
    if (!ptr)
        return take(nsize);
    if (!POOLING)
        return realloc(ptr, nsize);
    /* Same class: the block has the class's capacity. */
    if (osize <= CLASS_MAX && nsize <= CLASS_MAX && class_of(osize) == class_of(nsize))
        return ptr;
    if (osize > CLASS_MAX && nsize > CLASS_MAX)
        return realloc(ptr, nsize);
    void *q = take(nsize);
    if (!q)
        return NULL; /* Lua keeps ptr and raises a memory error */
    memcpy(q, ptr, osize < nsize ? osize : nsize);
    give(ptr, osize);
    return q;
}

void ws__lalloc_trim(void)
{
    for (unsigned k = 0; k < CLASSES; k++) {
        while (lists[k]) {
            block_t *b = lists[k];
            lists[k] = b->next;
            free(b);
        }
    }
    pooled = 0;
}
