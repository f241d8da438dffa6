#include "deflate.h"

#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "error.h"
#include "mem.h"

/* --- memory accounting --- */

/* Every block handed to zlib carries its size in a header, so that zfree can
 * subtract it; the header is max_align_t-sized to keep zlib's data aligned. */
typedef union {
    max_align_t align;
    size_t n;
} hdr_t;

static _Atomic size_t g_mem, g_peak, g_limit;
static _Atomic uint64_t g_fallbacks, g_refused;

static void *mem_alloc(size_t *counter, size_t n)
{
    size_t now = atomic_fetch_add(&g_mem, n) + n;
    size_t lim = atomic_load(&g_limit);
    if (lim && now > lim) {
        atomic_fetch_sub(&g_mem, n);
        return NULL;
    }
    size_t peak = atomic_load(&g_peak);
    while (now > peak && !atomic_compare_exchange_weak(&g_peak, &peak, now))
        ;
    hdr_t *h = ws_malloc(sizeof(hdr_t) + n);
    h->n = n;
    *counter += n;
    ws_mem_add(WS_MEM_DEFLATE, n);
    return h + 1;
}

static void mem_free(size_t *counter, void *p)
{
    if (!p)
        return;
    hdr_t *h = (hdr_t *)p - 1;
    atomic_fetch_sub(&g_mem, h->n);
    *counter -= h->n;
    ws_mem_sub(WS_MEM_DEFLATE, h->n);
    free(h);
}

static voidpf zalloc_cb(voidpf opaque, uInt items, uInt size)
{
    if (size && items > SIZE_MAX / size)
        return Z_NULL;
    return mem_alloc(opaque, (size_t)items * size);
}

static void zfree_cb(voidpf opaque, voidpf p)
{
    mem_free(opaque, p);
}

void ws_deflate_set_mem_limit(size_t bytes)
{
    atomic_store(&g_limit, bytes);
}

size_t ws_deflate_mem(const ws_deflate_t *d)
{
    return d->_mem;
}

size_t ws_deflate_mem_total(void)
{
    return atomic_load(&g_mem);
}

void ws_deflate_stats(ws_deflate_stats_t *out)
{
    out->mem = atomic_load(&g_mem);
    out->mem_peak = atomic_load(&g_peak);
    out->mem_limit = atomic_load(&g_limit);
    out->deflate_fallbacks = atomic_load(&g_fallbacks);
    out->inflate_refused = atomic_load(&g_refused);
}

void ws_deflate_stats_reset_peak(void)
{
    atomic_store(&g_peak, atomic_load(&g_mem));
}

/* --- negotiation --- */

void ws_deflate_config_default(ws_deflate_config_t *cfg)
{
    cfg->enabled = 0;
    cfg->server_max_window_bits = 15;
    cfg->client_max_window_bits = 15;
    cfg->server_no_context_takeover = 1;
    cfg->client_no_context_takeover = 0;
    cfg->mem_level = 8;
    cfg->level = 6;
    cfg->threshold = 1024;
    cfg->release_idle = 1;
}

static int config_valid(const ws_deflate_config_t *cfg)
{
    return cfg->server_max_window_bits >= 8 && cfg->server_max_window_bits <= 15 &&
           cfg->client_max_window_bits >= 8 && cfg->client_max_window_bits <= 15 &&
           cfg->mem_level >= 1 && cfg->mem_level <= 9 && cfg->level >= -1 && cfg->level <= 9;
}

static int is_ws(char c)
{
    return c == ' ' || c == '\t';
}

/* RFC 7230 tchar. */
static int is_tchar(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return 1;
    if ((c | 0x20) >= 'a' && (c | 0x20) <= 'z')
        return 1;
    return c && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static int tok_eq(const char *t, size_t n, const char *lit)
{
    size_t i = 0;
    for (; i < n && lit[i]; i++)
        if ((t[i] | 0x20) != (lit[i] | 0x20))
            return 0;
    return i == n && lit[i] == '\0';
}

/* A window-bits value: decimal 8..15 without leading zeros, else -1. */
static int parse_bits(const char *v, size_t n)
{
    if (n == 1 && v[0] >= '8' && v[0] <= '9')
        return v[0] - '0';
    if (n == 2 && v[0] == '1' && v[1] >= '0' && v[1] <= '5')
        return 10 + v[1] - '0';
    return -1;
}

typedef struct {
    int snct, cnct; /* server/client_no_context_takeover seen */
    int smwb;       /* 0 absent, else 8..15 */
    int cmwb;       /* 0 absent, -1 present without value, else 8..15 */
} offer_t;

/* Parse one list element s[0..n) (no top-level comma inside). Returns 1 if it
 * is a well-formed permessage-deflate offer with known, valid, unrepeated
 * parameters, filling *o; 0 otherwise. */
static int parse_offer(const char *s, size_t n, offer_t *o)
{
    size_t i = 0, t;
    memset(o, 0, sizeof *o);
    while (i < n && is_ws(s[i]))
        i++;
    for (t = i; i < n && is_tchar((unsigned char)s[i]); i++)
        ;
    if (!tok_eq(s + t, i - t, "permessage-deflate"))
        return 0;
    for (;;) {
        while (i < n && is_ws(s[i]))
            i++;
        if (i == n)
            return 1;
        if (s[i++] != ';')
            return 0;
        while (i < n && is_ws(s[i]))
            i++;
        const char *name = s + i;
        for (t = i; i < n && is_tchar((unsigned char)s[i]); i++)
            ;
        size_t name_len = i - t;
        if (name_len == 0)
            return 0;
        while (i < n && is_ws(s[i]))
            i++;

        /* The value, unquoted and unescaped; 16 bytes is plenty for 8..15. */
        char val[16];
        size_t vlen = 0;
        int has_val = 0;
        if (i < n && s[i] == '=') {
            has_val = 1;
            i++;
            while (i < n && is_ws(s[i]))
                i++;
            if (i < n && s[i] == '"') {
                for (i++; i < n && s[i] != '"'; i++) {
                    if (s[i] == '\\' && ++i == n)
                        return 0;
                    if (vlen == sizeof val)
                        return 0;
                    val[vlen++] = s[i];
                }
                if (i == n)
                    return 0;
                i++;
            } else {
                for (; i < n && is_tchar((unsigned char)s[i]); i++) {
                    if (vlen == sizeof val)
                        return 0;
                    val[vlen++] = s[i];
                }
            }
            if (vlen == 0)
                return 0;
        }

        if (tok_eq(name, name_len, "server_no_context_takeover")) {
            if (o->snct || has_val)
                return 0;
            o->snct = 1;
        } else if (tok_eq(name, name_len, "client_no_context_takeover")) {
            if (o->cnct || has_val)
                return 0;
            o->cnct = 1;
        } else if (tok_eq(name, name_len, "server_max_window_bits")) {
            if (o->smwb || !has_val || (o->smwb = parse_bits(val, vlen)) < 0)
                return 0;
        } else if (tok_eq(name, name_len, "client_max_window_bits")) {
            if (o->cmwb)
                return 0;
            o->cmwb = has_val ? parse_bits(val, vlen) : -1;
            if (has_val && o->cmwb < 0)
                return 0;
        } else {
            return 0;
        }
    }
}

/* End of the list element starting at pos: the next comma outside a quoted string, or len. */
static size_t element_end(const char *s, size_t len, size_t pos)
{
    int quoted = 0;
    for (; pos < len; pos++) {
        if (quoted && s[pos] == '\\')
            pos++;
        else if (s[pos] == '"')
            quoted = !quoted;
        else if (!quoted && s[pos] == ',')
            return pos;
    }
    return len;
}

int ws_deflate_negotiate(const ws_deflate_config_t *cfg, const char *offers, size_t len,
                         ws_deflate_params_t *params, char *resp, size_t resp_cap)
{
    if (!config_valid(cfg) || resp_cap < WS_DEFLATE_RESPONSE_MAX)
        return WS_EINVAL;
    if (!cfg->enabled || !offers)
        return 0;

    for (size_t pos = 0; pos < len;) {
        size_t end = element_end(offers, len, pos);
        offer_t o;
        int ok = parse_offer(offers + pos, end - pos, &o);
        pos = end + 1;
        /* zlib cannot keep its raw deflate output within a 256-byte window. */
        if (!ok || o.smwb == 8)
            continue;

        ws_deflate_params_t p;
        int sbits = cfg->server_max_window_bits < 9 ? 9 : cfg->server_max_window_bits;
        if (o.smwb && o.smwb < sbits)
            sbits = o.smwb;
        p.server_max_window_bits = sbits;
        p.server_no_context_takeover = o.snct || cfg->server_no_context_takeover;
        p.client_no_context_takeover = o.cnct || cfg->client_no_context_takeover;

        /* client_max_window_bits may appear in the response only if offered. */
        int cbits_resp = 0;
        p.client_max_window_bits = o.cmwb > 0 ? o.cmwb : 15;
        if (o.cmwb != 0 && cfg->client_max_window_bits < p.client_max_window_bits)
            cbits_resp = p.client_max_window_bits = cfg->client_max_window_bits;

        int n = snprintf(resp, resp_cap, "permessage-deflate%s%s",
                         p.server_no_context_takeover ? "; server_no_context_takeover" : "",
                         p.client_no_context_takeover ? "; client_no_context_takeover" : "");
        if (o.smwb || sbits < 15)
            n += snprintf(resp + n, resp_cap - (size_t)n, "; server_max_window_bits=%d", sbits);
        if (cbits_resp)
            snprintf(resp + n, resp_cap - (size_t)n, "; client_max_window_bits=%d", cbits_resp);
        *params = p;
        return 1;
    }
    return 0;
}

/* --- per-connection codec --- */

void ws_deflate_init(ws_deflate_t *d, const ws_deflate_config_t *cfg,
                     const ws_deflate_params_t *params)
{
    memset(d, 0, sizeof *d);
    d->params = *params;
    d->level = cfg->level;
    d->mem_level = cfg->mem_level;
    d->threshold = cfg->threshold;
    d->release_idle = cfg->release_idle;
}

static void def_free(ws_deflate_t *d)
{
    if (d->_def) {
        deflateEnd(d->_def);
        mem_free(&d->_mem, d->_def);
        d->_def = NULL;
    }
}

static void inf_free(ws_deflate_t *d)
{
    if (d->_inf) {
        inflateEnd(d->_inf);
        mem_free(&d->_mem, d->_inf);
        d->_inf = NULL;
    }
}

void ws_deflate_close(ws_deflate_t *d)
{
    def_free(d);
    inf_free(d);
}

int ws_deflate_should_compress(const ws_deflate_t *d, size_t len)
{
    return len >= d->threshold;
}

/* Make a compressor or inflater whose allocations are counted in *counter.
 * z is caller storage. Returns 0, WS_ENOMEM at the cap, WS_EINVAL otherwise. */
static int z_open(z_stream *z, size_t *counter, int deflating, int wbits, int level, int mem_level)
{
    memset(z, 0, sizeof *z);
    z->zalloc = zalloc_cb;
    z->zfree = zfree_cb;
    z->opaque = counter;
    int rc = deflating ? deflateInit2(z, level, Z_DEFLATED, -wbits, mem_level, Z_DEFAULT_STRATEGY)
                       : inflateInit2(z, -wbits);
    if (rc == Z_OK)
        return 0;
    return rc == Z_MEM_ERROR ? WS_ENOMEM : WS_EINVAL;
}

/* Run a compressor over in[0..len) with Z_SYNC_FLUSH and append the output to
 * out without the 00 00 ff ff marker. */
static int z_compress(z_stream *z, const uint8_t *in, size_t len, ws_buf_t *out)
{
    size_t start = out->len;
    for (;;) {
        uInt chunk = len > UINT_MAX ? UINT_MAX : (uInt)len;
        int flush = chunk == len ? Z_SYNC_FLUSH : Z_NO_FLUSH;
        z->next_in = (Bytef *)in;
        z->avail_in = chunk;
        do {
            ws_buf_reserve(out, (chunk >> 3) + 64);
            size_t room = out->cap - out->len;
            z->next_out = out->data + out->len;
            z->avail_out = room > UINT_MAX ? UINT_MAX : (uInt)room;
            int rc = deflate(z, flush);
            out->len = (size_t)(z->next_out - out->data);
            if (rc != Z_OK && rc != Z_BUF_ERROR)
                return WS_EINVAL;
        } while (z->avail_out == 0);
        in += chunk;
        len -= chunk;
        if (flush == Z_SYNC_FLUSH)
            break;
    }
    static const uint8_t tail[4] = {0x00, 0x00, 0xff, 0xff};
    if (out->len - start < 4 || memcmp(out->data + out->len - 4, tail, 4) != 0)
        return WS_EINVAL;
    out->len -= 4;
    return 0;
}

int ws_deflate_compress(ws_deflate_t *d, const uint8_t *in, size_t len, ws_buf_t *out)
{
    if (len == 0) {
        /* zlib emits nothing for a second flush without new input; an empty
         * stored block (RFC 7692 7.2.3.6) is valid with or without context. */
        ws_buf_append(out, "", 1);
        return 0;
    }
    if (!d->_def) {
        z_stream *z = mem_alloc(&d->_mem, sizeof *z);
        int rc =
            z ? z_open(z, &d->_mem, 1, d->params.server_max_window_bits, d->level, d->mem_level)
              : WS_ENOMEM;
        if (rc < 0) {
            mem_free(&d->_mem, z);
            if (rc == WS_ENOMEM)
                atomic_fetch_add(&g_fallbacks, 1);
            return rc;
        }
        d->_def = z;
    } else if (d->_def_reset) {
        deflateReset(d->_def);
    }
    d->_def_reset = 0;

    size_t start = out->len;
    int rc = z_compress(d->_def, in, len, out);
    if (rc < 0) {
        out->len = start;
        def_free(d);
        return rc;
    }
    if (d->params.server_no_context_takeover) {
        if (d->release_idle)
            def_free(d);
        else
            deflateReset(d->_def);
    }
    return 0;
}

static int inf_fail(ws_deflate_t *d, int err)
{
    if (err == WS_ENOMEM)
        atomic_fetch_add(&g_refused, 1);
    d->_inf_err = err;
    return err;
}

/* Inflate in[0..len) into out, never letting the message exceed max_out + 1 bytes. */
static int inf_run(ws_deflate_t *d, const uint8_t *in, size_t len, size_t max_out, ws_buf_t *out)
{
    z_stream *z = d->_inf;
    while (len > 0) {
        uInt chunk = len > UINT_MAX ? UINT_MAX : (uInt)len;
        z->next_in = (Bytef *)in;
        z->avail_in = chunk;
        do {
            if (d->_inf_ended)
                return WS_EINFLATE; /* bytes after the final block */
            /* Grow out geometrically but never past what the bound allows, so
             * a bomb cannot make us allocate more than max_out + 1 bytes. */
            size_t allowed = max_out + 1 - d->_inf_total;
            if (out->cap == out->len) {
                size_t want = out->cap * 2 > out->len + 4096 ? out->cap * 2 : out->len + 4096;
                if (want - out->len > allowed)
                    want = out->len + allowed;
                ws_buf_resize(out, want);
            }
            size_t room = out->cap - out->len;
            if (room > allowed)
                room = allowed;
            if (room > UINT_MAX)
                room = UINT_MAX;
            z->next_out = out->data + out->len;
            z->avail_out = (uInt)room;
            uInt before = z->avail_in;
            int rc = inflate(z, Z_SYNC_FLUSH);
            size_t produced = room - z->avail_out;
            out->len += produced;
            d->_inf_total += produced;
            if (d->_inf_total > max_out)
                return WS_ETOOBIG;
            if (rc == Z_STREAM_END) {
                d->_inf_ended = 1;
                if (z->avail_in)
                    return WS_EINFLATE;
                break;
            }
            if (rc == Z_MEM_ERROR)
                return WS_ENOMEM;
            if (rc != Z_OK && rc != Z_BUF_ERROR)
                return WS_EINFLATE;
            if (rc == Z_BUF_ERROR && produced == 0 && z->avail_in == before)
                break; /* zlib cannot progress: it needs more input */
        } while (z->avail_in > 0 || z->avail_out == 0);
        in += chunk;
        len -= chunk;
    }
    return 0;
}

int ws_deflate_inflate_chunk(ws_deflate_t *d, const uint8_t *in, size_t len, size_t max_out,
                             ws_buf_t *out)
{
    if (d->_inf_err)
        return d->_inf_err;
    if (len == 0)
        return 0;
    if (!d->_inf) {
        z_stream *z = mem_alloc(&d->_mem, sizeof *z);
        int rc = z ? z_open(z, &d->_mem, 0, 15, 0, 0) : WS_ENOMEM;
        if (rc < 0) {
            mem_free(&d->_mem, z);
            return inf_fail(d, rc);
        }
        d->_inf = z;
    }
    int rc = inf_run(d, in, len, max_out, out);
    return rc < 0 ? inf_fail(d, rc) : 0;
}

int ws_deflate_inflate_end(ws_deflate_t *d, size_t max_out, ws_buf_t *out)
{
    static const uint8_t tail[4] = {0x00, 0x00, 0xff, 0xff};
    if (d->_inf_err)
        return d->_inf_err;
    if (d->_inf && !d->_inf_ended) {
        int rc = inf_run(d, tail, sizeof tail, max_out, out);
        if (rc < 0)
            return inf_fail(d, rc);
        /* A sync-flushed message leaves the inflater between blocks; if it is
         * not, the message was truncated inside a block. */
        if (!d->_inf_ended && !(d->_inf->data_type & 128))
            return inf_fail(d, WS_EINFLATE);
    }
    /* After a final block the sender starts a fresh stream, so drop the window too. */
    if (d->_inf && (d->params.client_no_context_takeover || d->_inf_ended)) {
        if (d->release_idle)
            inf_free(d);
        else
            inflateReset(d->_inf);
    }
    d->_inf_total = 0;
    d->_inf_ended = 0;
    return 0;
}

int ws_deflate_inflate(ws_deflate_t *d, const uint8_t *in, size_t len, size_t max_out,
                       ws_buf_t *out)
{
    int rc = ws_deflate_inflate_chunk(d, in, len, max_out, out);
    return rc < 0 ? rc : ws_deflate_inflate_end(d, max_out, out);
}

/* --- shared frames for publish --- */

int ws_deflate_compress_once(int window_bits, int level, int mem_level, const uint8_t *in,
                             size_t len, ws_buf_t *out)
{
    if (window_bits < 9 || window_bits > 15 || mem_level < 1 || mem_level > 9 || level < -1 ||
        level > 9)
        return WS_EINVAL;
    if (len == 0) {
        ws_buf_append(out, "", 1);
        return 0;
    }
    size_t counter = 0;
    z_stream z;
    int rc = z_open(&z, &counter, 1, window_bits, level, mem_level);
    if (rc < 0) {
        if (rc == WS_ENOMEM)
            atomic_fetch_add(&g_fallbacks, 1);
        return rc;
    }
    size_t start = out->len;
    rc = z_compress(&z, in, len, out);
    if (rc < 0)
        out->len = start;
    deflateEnd(&z);
    return rc;
}

void ws_deflate_forget(ws_deflate_t *d)
{
    if (!d->params.server_no_context_takeover)
        d->_def_reset = 1;
}

int ws_deflate_use_shared(ws_deflate_t *d, int window_bits)
{
    if (window_bits > d->params.server_max_window_bits)
        return 0;
    if (!d->params.server_no_context_takeover)
        d->_def_reset = 1;
    return 1;
}
