/* The budgeted memory's counters. */
#include "mem.h"

size_t ws_mem_counter[WS_MEM_KINDS];

size_t ws_mem_total(void)
{
    size_t t = 0;
    for (int k = 0; k < WS_MEM_KINDS; k++)
        t += ws_mem_counter[k];
    return t;
}

const char *ws_mem_kind_name(ws_mem_kind_t k)
{
    static const char *const names[WS_MEM_KINDS] = {"queue", "buffers", "compression", "lua"};
    return k < WS_MEM_KINDS ? names[k] : "?";
}
