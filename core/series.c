/* The script's metrics, in a table the workers share. */
#include "series.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shmutex.h"
#include "stats.h"

#define MAGIC 0x77736d31u /* "wsm1" */

typedef struct {
    char name[WS_SERIES_NAME];
    char help[WS_SERIES_HELP];
    char labels[WS_SERIES_LABELS][WS_SERIES_NAME];
    double buckets[WS_SERIES_BUCKETS];
    uint8_t kind, nlabels, nbuckets;
} family_t;

typedef struct {
    uint16_t fam;
    uint16_t ncells;
    uint32_t cell;
    char key[WS_SERIES_KEY];
} entry_t;

typedef struct {
    uint32_t magic, nworkers;
    pthread_mutex_t lock;
    uint32_t nfam, nseries, ncells;
    family_t fam[WS_SERIES_FAMILIES];
    entry_t ser[WS_SERIES_MAX];
    /* Then rows 0 (retired) .. nworkers of WS_SERIES_CELLS doubles. */
    double cells[];
} table_t;

struct ws_series_s {
    table_t *t;
    double *row; /* this worker's */
    int own;     /* a private table: free it with the handle */
};

size_t ws_series_size(unsigned nworkers)
{
    return sizeof(table_t) + (size_t)(nworkers + 1) * WS_SERIES_CELLS * sizeof(double);
}

static double *row_of(table_t *t, unsigned w) { return t->cells + (size_t)w * WS_SERIES_CELLS; }

void ws_series_format(void *mem, unsigned nworkers)
{
    table_t *t = mem;
    t->magic = MAGIC;
    t->nworkers = nworkers;
    ws_shmutex_init(&t->lock);
}

ws_series_t *ws_series_attach(void *mem, unsigned worker)
{
    table_t *t = mem;
    if (t->magic != MAGIC || worker > t->nworkers)
        return NULL;
    ws_series_t *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->t = t;
    s->row = row_of(t, worker);
    return s;
}

ws_series_t *ws_series_new_private(void)
{
    void *mem = calloc(1, ws_series_size(1));
    if (!mem)
        return NULL;
    ws_series_format(mem, 1);
    ws_series_t *s = ws_series_attach(mem, 1);
    if (!s) {
        free(mem);
        return NULL;
    }
    s->own = 1;
    return s;
}

void ws_series_free(ws_series_t *s)
{
    if (!s)
        return;
    if (s->own) {
        pthread_mutex_destroy(&s->t->lock);
        free(s->t);
    }
    free(s);
}

static void lock(table_t *t) { ws_shmutex_lock(&t->lock); }

static void unlock(table_t *t) { pthread_mutex_unlock(&t->lock); }

static int is_alpha(int c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
static int is_digit(int c) { return c >= '0' && c <= '9'; }

int ws_series_valid_name(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n >= WS_SERIES_NAME || !(is_alpha(name[0]) || name[0] == ':'))
        return 0;
    for (size_t i = 1; i < n; i++)
        if (!is_alpha(name[i]) && !is_digit(name[i]) && name[i] != ':')
            return 0;
    return 1;
}

int ws_series_valid_label(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n >= WS_SERIES_NAME || !is_alpha(name[0]) || strncmp(name, "__", 2) == 0)
        return 0;
    for (size_t i = 1; i < n; i++)
        if (!is_alpha(name[i]) && !is_digit(name[i]))
            return 0;
    return 1;
}

static const char *kind_name(unsigned k)
{
    return k == WS_SERIES_COUNTER ? "counter" : k == WS_SERIES_GAUGE ? "gauge" : "histogram";
}

/* The HELP text: one line, backslashes and newlines escaped as the format
 * wants, cut to its room. */
static void set_help(family_t *f, const char *help)
{
    size_t o = 0;
    for (const char *p = help; *p && o + 3 < sizeof f->help; p++) {
        if (*p == '\\' || *p == '\n') {
            f->help[o++] = '\\';
            f->help[o++] = *p == '\n' ? 'n' : '\\';
        } else {
            f->help[o++] = *p;
        }
    }
    f->help[o] = 0;
}

/* f's definition is kind, labels, buckets. */
static int same(const family_t *f, ws_series_kind_t kind, const char *const *labels, size_t n,
                const double *buckets, size_t nb)
{
    if (f->kind != kind || f->nlabels != n || f->nbuckets != nb)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (strcmp(f->labels[i], labels[i]) != 0)
            return 0;
    for (size_t i = 0; i < nb; i++)
        if (f->buckets[i] != buckets[i])
            return 0;
    return 1;
}

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* The definition's own rules, before any table is looked at. */
static int check(const char *name, ws_series_kind_t kind, const char *const *labels, size_t n,
                 const double *buckets, size_t nb, char *err, size_t errlen)
{
    if (!ws_series_valid_name(name)) {
        snprintf(err, errlen,
                 "invalid metric name '%.80s' (letters, digits, _ and :, not starting with a "
                 "digit, at most %d bytes)",
                 name, WS_SERIES_NAME - 1);
        return -1;
    }
    if (kind == WS_SERIES_COUNTER && !ends_with(name, "_total")) {
        snprintf(err, errlen, "a counter's name ends in _total (%s)", name);
        return -1;
    }
    if (kind == WS_SERIES_HISTOGRAM &&
        (ends_with(name, "_bucket") || ends_with(name, "_sum") || ends_with(name, "_count"))) {
        snprintf(err, errlen, "%s ends like the series a histogram makes (_bucket, _sum, _count)",
                 name);
        return -1;
    }
    if (n > WS_SERIES_LABELS) {
        snprintf(err, errlen, "at most %d labels", WS_SERIES_LABELS);
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        if (!ws_series_valid_label(labels[i])) {
            snprintf(err, errlen,
                     "invalid label name '%.80s' (letters, digits and _, not starting with a "
                     "digit or __)",
                     labels[i]);
            return -1;
        }
        if (kind == WS_SERIES_HISTOGRAM && strcmp(labels[i], "le") == 0) {
            snprintf(err, errlen, "the label name le is a histogram's own");
            return -1;
        }
        for (size_t j = 0; j < i; j++) {
            if (strcmp(labels[i], labels[j]) == 0) {
                snprintf(err, errlen, "label %s given twice", labels[i]);
                return -1;
            }
        }
    }
    if (kind == WS_SERIES_HISTOGRAM && (nb < 1 || nb > WS_SERIES_BUCKETS)) {
        snprintf(err, errlen, "a histogram has 1 to %d buckets", WS_SERIES_BUCKETS);
        return -1;
    }
    for (size_t i = 0; i < nb; i++) {
        if (!isfinite(buckets[i]) || (i > 0 && !(buckets[i] > buckets[i - 1]))) {
            snprintf(err, errlen,
                     "buckets must be finite and increasing (+Inf is always there): bucket %zu",
                     i + 1);
            return -1;
        }
    }
    return 0;
}

int ws_series_family(ws_series_t *s, const char *name, const char *help, ws_series_kind_t kind,
                     const char *const *labels, size_t n, const double *buckets, size_t nb,
                     char *err, size_t errlen)
{
    table_t *t = s->t;
    if (check(name, kind, labels, n, buckets, nb, err, errlen) != 0)
        return -1;
    lock(t);
    int r = -1;
    for (uint32_t i = 0; i < t->nfam; i++) {
        family_t *f = &t->fam[i];
        if (strcmp(f->name, name) != 0)
            continue;
        if (same(f, kind, labels, n, buckets, nb)) {
            set_help(f, help); /* a reload may reword it */
            r = (int)i;
        }
        else
            snprintf(err, errlen,
                     "metric %s is defined already as a %s with other labels or buckets (a "
                     "metric keeps its definition until the server restarts)",
                     name, kind_name(f->kind));
        unlock(t);
        return r;
    }
    if (t->nfam == WS_SERIES_FAMILIES) {
        snprintf(err, errlen, "too many metrics (at most %d)", WS_SERIES_FAMILIES);
    } else {
        family_t *f = &t->fam[t->nfam];
        snprintf(f->name, sizeof f->name, "%s", name);
        set_help(f, help);
        for (size_t i = 0; i < n; i++)
            snprintf(f->labels[i], sizeof f->labels[i], "%s", labels[i]);
        for (size_t i = 0; i < nb; i++)
            f->buckets[i] = buckets[i];
        f->kind = (uint8_t)kind;
        f->nlabels = (uint8_t)n;
        f->nbuckets = (uint8_t)nb;
        r = (int)t->nfam++;
    }
    unlock(t);
    return r;
}

/* The label text of values for f: a="x",b="y", escaped as the format wants.
 * -1 when it does not fit. */
static int make_key(const family_t *f, const char *const *values, const size_t *lens,
                    char key[WS_SERIES_KEY])
{
    size_t o = 0;
    for (size_t i = 0; i < f->nlabels; i++) {
        int w = snprintf(key + o, WS_SERIES_KEY - o, "%s%s=\"", i ? "," : "", f->labels[i]);
        if (w < 0 || (size_t)w >= WS_SERIES_KEY - o)
            return -1;
        o += (size_t)w;
        for (size_t j = 0; j < lens[i]; j++) {
            char c = values[i][j];
            if (o + 4 >= WS_SERIES_KEY)
                return -1;
            if (c == '\\' || c == '"' || c == '\n') {
                key[o++] = '\\';
                key[o++] = c == '\n' ? 'n' : c;
            } else {
                key[o++] = c;
            }
        }
        key[o++] = '"';
    }
    key[o] = 0;
    return 0;
}

long ws_series_get(ws_series_t *s, int fam, const char *const *values, const size_t *lens,
                   size_t n)
{
    table_t *t = s->t;
    if (fam < 0 || (uint32_t)fam >= t->nfam || n != t->fam[fam].nlabels)
        return -2;
    const family_t *f = &t->fam[fam];
    char key[WS_SERIES_KEY];
    if (make_key(f, values, lens, key) != 0)
        return -2;
    uint32_t need = f->kind == WS_SERIES_HISTOGRAM ? f->nbuckets + 2u : 1u;
    lock(t);
    long r = -1;
    for (uint32_t i = 0; i < t->nseries; i++) {
        if (t->ser[i].fam == fam && strcmp(t->ser[i].key, key) == 0) {
            r = (long)t->ser[i].cell;
            break;
        }
    }
    if (r < 0 && t->nseries < WS_SERIES_MAX && t->ncells + need <= WS_SERIES_CELLS) {
        entry_t *e = &t->ser[t->nseries];
        e->fam = (uint16_t)fam;
        e->ncells = (uint16_t)need;
        e->cell = t->ncells;
        memcpy(e->key, key, sizeof key);
        t->ncells += need;
        t->nseries++;
        r = (long)e->cell;
    }
    unlock(t);
    if (r < 0)
        ws_stats_inc(WS_STAT_SERIES_REFUSED);
    return r;
}

int ws_series_valid_cell(ws_series_t *s, int fam, long cell)
{
    const table_t *t = s->t;
    if (fam < 0 || (uint32_t)fam >= t->nfam || cell < 0)
        return 0;
    const family_t *f = &t->fam[fam];
    long n = f->kind == WS_SERIES_HISTOGRAM ? f->nbuckets + 2 : 1;
    return cell + n <= (long)t->ncells;
}

void ws_series_add(ws_series_t *s, long cell, double v) { s->row[cell] += v; }
void ws_series_set(ws_series_t *s, long cell, double v) { s->row[cell] = v; }

void ws_series_observe(ws_series_t *s, int fam, long cell, double v)
{
    const family_t *f = &s->t->fam[fam];
    size_t b = 0;
    while (b < f->nbuckets && !(v <= f->buckets[b]))
        b++;
    /* NaN lands in +Inf. */
    s->row[cell + (long)b]++;
    s->row[cell + f->nbuckets + 1] += v;
}

/* Cell i summed over every row (the retired one included). */
static double sum(const table_t *t, uint32_t i)
{
    double v = 0;
    for (unsigned w = 0; w <= t->nworkers; w++) {
        double x;
        __atomic_load(&row_of((table_t *)t, w)[i], &x, __ATOMIC_RELAXED);
        v += x;
    }
    return v;
}

static void sample(ws_buf_t *out, const char *name, const char *suffix, const char *key,
                   const char *extra, double v)
{
    ws_buf_append_str(out, name);
    ws_buf_append_str(out, suffix);
    if (*key || *extra) {
        ws_buf_append(out, "{", 1);
        ws_buf_append_str(out, key);
        if (*key && *extra)
            ws_buf_append(out, ",", 1);
        ws_buf_append_str(out, extra);
        ws_buf_append(out, "}", 1);
    }
    ws_buf_append(out, " ", 1);
    ws_stats_value(out, v);
    ws_buf_append(out, "\n", 1);
}

static void render_histogram(ws_buf_t *out, const table_t *t, const family_t *f,
                             const entry_t *e)
{
    double acc = 0;
    char le[64];
    for (uint32_t b = 0; b <= f->nbuckets; b++) {
        acc += sum(t, e->cell + b);
        if (b < f->nbuckets) {
            ws_buf_t num;
            ws_buf_init(&num);
            ws_stats_value(&num, f->buckets[b]);
            snprintf(le, sizeof le, "le=\"%.*s\"", (int)num.len, (char *)num.data);
            ws_buf_free(&num);
        } else {
            snprintf(le, sizeof le, "le=\"+Inf\"");
        }
        sample(out, f->name, "_bucket", e->key, le, acc);
    }
    sample(out, f->name, "_sum", e->key, "", sum(t, e->cell + f->nbuckets + 1));
    sample(out, f->name, "_count", e->key, "", acc);
}

void ws_series_render(ws_series_t *s, ws_buf_t *out)
{
    table_t *t = s->t;
    lock(t);
    for (uint32_t fi = 0; fi < t->nfam; fi++) {
        const family_t *f = &t->fam[fi];
        ws_buf_append_str(out, "# HELP ");
        ws_buf_append_str(out, f->name);
        ws_buf_append(out, " ", 1);
        ws_buf_append_str(out, f->help);
        ws_buf_append_str(out, "\n# TYPE ");
        ws_buf_append_str(out, f->name);
        ws_buf_append(out, " ", 1);
        ws_buf_append_str(out, kind_name(f->kind));
        ws_buf_append(out, "\n", 1);
        for (uint32_t i = 0; i < t->nseries; i++) {
            const entry_t *e = &t->ser[i];
            if (e->fam != fi)
                continue;
            if (f->kind == WS_SERIES_HISTOGRAM)
                render_histogram(out, t, f, e);
            else
                sample(out, f->name, "", e->key, "", sum(t, e->cell));
        }
    }
    unlock(t);
}

void ws_series_forget(ws_series_t *s, unsigned w)
{
    table_t *t = s->t;
    if (w < 1 || w > t->nworkers)
        return;
    double *dead = row_of(t, w), *retired = row_of(t, 0);
    lock(t);
    for (uint32_t i = 0; i < t->nseries; i++) {
        const entry_t *e = &t->ser[i];
        int keep = t->fam[e->fam].kind != WS_SERIES_GAUGE;
        for (uint32_t c = e->cell; c < e->cell + e->ncells; c++) {
            if (keep)
                retired[c] += dead[c];
            dead[c] = 0;
        }
    }
    unlock(t);
}
