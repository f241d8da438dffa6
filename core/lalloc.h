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

/* The heap cap (--lua-max-memory; 0 = none). It holds only while user code
 * runs (between ws__lalloc_enforce(1) and (0), around each protected call):
 * there a growth past the cap fails and Lua raises "not enough memory" in
 * that callback. Elsewhere (C building a callback's arguments) allocations
 * never fail, so that no error is raised outside a protected call. */
void ws__lalloc_set_cap(size_t bytes);
void ws__lalloc_enforce(int on);
/* Bytes of live Lua blocks (as Lua asked for them). */
size_t ws__lalloc_in_use(void);

#endif
