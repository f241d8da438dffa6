/*
 * lalloc.h: the Lua state's allocator (a lua_Alloc), which recycles small
 * blocks through per-size free lists; see lalloc.c.
 */
#ifndef WS_LALLOC_H
#define WS_LALLOC_H

#include <stddef.h>

void *ws__lalloc(void *ud, void *ptr, size_t osize, size_t nsize);

/* Free what the lists keep for reuse (the server is quiet). */
void ws__lalloc_trim(void);

#endif
