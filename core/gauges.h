/*
 * gauges.h: the built-in figures that are read rather than counted (stats.h):
 * connections, the Lua heap and the counted memory, the resident set, the
 * event loop's idle time, the broker's figures. The server samples them on
 * its sweep, so that another worker's scrape sees them a sweep behind at
 * most; a scrape samples its own worker first.
 */
#ifndef WS_GAUGES_H
#define WS_GAUGES_H

#include "hub.h"

/* Ask the loop to measure its idle time (before it runs). */
void ws_gauges_init(uv_loop_t *loop);
/* Write h's figures into this process's block (ws_stats). */
void ws_gauges_sample(ws_hub_t *h);

#endif
