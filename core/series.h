/*
 * series.h: the metrics a script defines (wspush.metrics.counter, gauge,
 * histogram), in a fixed-size table that every worker of a server maps (a
 * part of the tally's shared memory; a lone process keeps a private one), so
 * that any worker renders the whole server's figures.
 *
 * Families and series (a family's label values) are made under a
 * process-shared lock, rarely: the script keeps the cell a series got. A
 * value is a cell per worker, each worker writing only its own row with a
 * plain store; a scrape sums the rows. Bounded: WS_SERIES_FAMILIES
 * families, WS_SERIES_MAX series, WS_SERIES_CELLS cells (a counter or a gauge
 * takes one, a histogram its buckets + 2). A series past a bound is refused
 * (ws_series_get returns -1), never an error.
 *
 * A worker that dies is forgotten (ws_series_forget): its counters and
 * histograms go to a retired row, so that the sums never go back; its
 * gauges go.
 */
#ifndef WS_SERIES_H
#define WS_SERIES_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"

#define WS_SERIES_FAMILIES 128
#define WS_SERIES_MAX 1024
#define WS_SERIES_CELLS 16384
#define WS_SERIES_LABELS 8
#define WS_SERIES_BUCKETS 32
#define WS_SERIES_NAME 64   /* a name's room, its NUL included */
#define WS_SERIES_HELP 256
#define WS_SERIES_KEY 256   /* a series' label text: a="x",b="y" */

typedef enum { WS_SERIES_COUNTER, WS_SERIES_GAUGE, WS_SERIES_HISTOGRAM } ws_series_kind_t;

typedef struct ws_series_s ws_series_t;

/* Bytes of a shared table for nworkers. */
size_t ws_series_size(unsigned nworkers);
/* Lay out an empty table for nworkers in mem (ws_series_size bytes, zeroed). */
void ws_series_format(void *mem, unsigned nworkers);
/* The table in mem, as worker (1..nworkers; 0 for the supervisor). NULL
 * when mem holds no table. */
ws_series_t *ws_series_attach(void *mem, unsigned worker);
/* A table of this process only (one worker), for a lone server and tests. */
ws_series_t *ws_series_new_private(void);
/* Let go of the handle (and of a private table's memory). */
void ws_series_free(ws_series_t *s);

/* Grammar of a metric name ([a-zA-Z_:][a-zA-Z0-9_:]*) and of a label name
 * ([a-zA-Z_][a-zA-Z0-9_]*, not starting with "__"). */
int ws_series_valid_name(const char *name);
int ws_series_valid_label(const char *name);

/* The family name: its index, made if new. labels: n label names; buckets:
 * nb finite upper bounds, increasing (histograms only). -1 with a message
 * in err for a definition against the format's rules (the grammars above; a
 * counter's name ends in _total; a histogram's name does not end like its
 * series, nor has it a label le), for a family of that name defined before
 * with another kind, labels or buckets, and when the table is full. */
int ws_series_family(ws_series_t *s, const char *name, const char *help, ws_series_kind_t kind,
                     const char *const *labels, size_t n, const double *buckets, size_t nb,
                     char *err, size_t errlen);
/* The first cell of family fam's series with label values values[0..n)
 * (n: the family's label count), made if new; -1 when a bound is reached
 * (the series is refused; nothing is made). */
long ws_series_get(ws_series_t *s, int fam, const char *const *values, const size_t *lens,
                   size_t n);

/* 1 when cell is one that ws_series_get gave for family fam (or one of its
 * family's kind): a caller that cannot trust its numbers checks first. */
int ws_series_valid_cell(ws_series_t *s, int fam, long cell);

/* This worker's value of a counter or gauge cell. */
void ws_series_add(ws_series_t *s, long cell, double v);
void ws_series_set(ws_series_t *s, long cell, double v);
/* One observation for family fam's histogram series at cell. */
void ws_series_observe(ws_series_t *s, int fam, long cell, double v);

/* Append every family and series, the workers summed, in the Prometheus
 * text format 0.0.4. */
void ws_series_render(ws_series_t *s, ws_buf_t *out);

/* Worker w is gone: move its counters to the retired row, drop its gauges. */
void ws_series_forget(ws_series_t *s, unsigned w);

#endif
