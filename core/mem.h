/*
 * mem.h: the memory that --max-memory budgets, counted where it is
 * allocated: outbound queues (chunks, a shared frame once however many
 * queues hold it), buffers (inbound messages being reassembled, HTTP
 * requests, bytes kept while reading is paused, scratch), compression state,
 * and the Lua heap. What a connection costs by itself (~1 KB) and what the
 * libraries keep are not counted: they are bounded by the connection limits.
 *
 * Process-wide counters; loop thread only.
 */
#ifndef WS_MEM_H
#define WS_MEM_H

#include <stddef.h>

typedef enum { WS_MEM_QUEUE, WS_MEM_BUFFERS, WS_MEM_DEFLATE, WS_MEM_LUA, WS_MEM_KINDS } ws_mem_kind_t;

extern size_t ws_mem_counter[WS_MEM_KINDS];

static inline void ws_mem_add(ws_mem_kind_t k, size_t n) { ws_mem_counter[k] += n; }
static inline void ws_mem_sub(ws_mem_kind_t k, size_t n) { ws_mem_counter[k] -= n; }
static inline size_t ws_mem_used(ws_mem_kind_t k) { return ws_mem_counter[k]; }

/* Everything counted. */
size_t ws_mem_total(void);
/* "queue", "buffers", "compression", "lua". */
const char *ws_mem_kind_name(ws_mem_kind_t k);

#endif
