/* http(s) URLs: parsing, Host values, RFC 3986 reference resolution; and
 * address ranges for the outbound address policy. */
#include "url.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static int fail(char *err, size_t errlen, const char *why)
{
    snprintf(err, errlen, "%s", why);
    return -1;
}

static int is_alpha(int c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
static int is_digit(int c) { return c >= '0' && c <= '9'; }

static int hexval(int c)
{
    if (is_digit(c))
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Length of a scheme followed by ':' at the start of s (RFC 3986 section
 * 3.1), or 0: tells an absolute reference from a relative one. */
static size_t scheme_len(const char *s, size_t len)
{
    if (len == 0 || !is_alpha((unsigned char)s[0]))
        return 0;
    for (size_t i = 1; i < len; i++) {
        int c = (unsigned char)s[i];
        if (c == ':')
            return i;
        if (!is_alpha(c) && !is_digit(c) && c != '+' && c != '-' && c != '.')
            return 0;
    }
    return 0;
}

/* Decode s[0..n) into out (room for n + 1); NUL-terminates. -1 on a bad
 * escape or an encoded NUL, which would cut the credentials short. */
static int pct_decode(const char *s, size_t n, char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '%') {
            out[o++] = s[i];
            continue;
        }
        if (i + 2 >= n)
            return -1;
        int hi = hexval((unsigned char)s[i + 1]), lo = hexval((unsigned char)s[i + 2]);
        if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
            return -1;
        out[o++] = (char)(hi * 16 + lo);
        i += 2;
    }
    out[o] = '\0';
    return 0;
}

static int parse_port(const char *s, size_t n, uint16_t *port)
{
    unsigned long v = 0;
    if (n > 5)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (!is_digit((unsigned char)s[i]))
            return -1;
        v = v * 10 + (unsigned long)(s[i] - '0');
    }
    if (v == 0 || v > 65535)
        return -1;
    *port = (uint16_t)v;
    return 0;
}

static int host_char(int c)
{
    return is_alpha(c) || is_digit(c) || c == '-' || c == '.' || c == '_' || c == '~';
}

int ws_url_parse(ws_url_t *u, const char *s, size_t len, char *err, size_t errlen)
{
    return ws_url_parse_as(u, s, len, WS_URL_HTTP, err, errlen);
}

int ws_url_parse_as(ws_url_t *u, const char *s, size_t len, int kind, char *err, size_t errlen)
{
    memset(u, 0, sizeof *u);
    if (len > WS_URL_MAX)
        return fail(err, errlen, "too long (over 8192 bytes)");
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= 0x20 || c == 0x7f)
            return fail(err, errlen, "space or control character");
        if (c >= 0x80)
            return fail(err, errlen, "non-ASCII character (percent-encode it)");
    }
    size_t sl = scheme_len(s, len);
    /* "localhost:8080/x" looks like a scheme followed by a port */
    if (sl == 0 || (sl + 1 < len && is_digit((unsigned char)s[sl + 1])))
        return fail(err, errlen, kind == WS_URL_REDIS ? "missing scheme (redis://)"
                                                      : "missing scheme (http:// or https://)");
    uint16_t dport;
    if (kind == WS_URL_REDIS) {
        if (sl == 6 && strncasecmp(s, "rediss", 6) == 0)
            return fail(err, errlen, "unsupported scheme: rediss:// is not supported (hiredis 0.14 "
                                     "has no TLS; reach Redis over a private network or a tunnel)");
        if (sl != 5 || strncasecmp(s, "redis", 5) != 0)
            return fail(err, errlen, "unsupported scheme (only redis:// and unix://)");
        dport = 6379;
    } else if (sl == 4 && strncasecmp(s, "http", 4) == 0) {
        dport = 80;
    } else if (sl == 5 && strncasecmp(s, "https", 5) == 0) {
        u->https = 1;
        dport = 443;
    } else {
        return fail(err, errlen, "unsupported scheme (only http and https)");
    }
    if (len - sl < 3 || s[sl + 1] != '/' || s[sl + 2] != '/')
        return fail(err, errlen, "missing // after the scheme");

    /* authority [a, e), then the target up to the fragment [e, t) */
    size_t a = sl + 3, e = a;
    while (e < len && s[e] != '/' && s[e] != '?' && s[e] != '#')
        e++;
    size_t t = e;
    while (t < len && s[t] != '#')
        t++;

    /* The last '@' ends the userinfo: that is how browsers split
     * "user@x@host", and a host cannot contain '@'. */
    size_t at = e, h = a;
    for (size_t i = a; i < e; i++)
        if (s[i] == '@')
            at = i;
    if (at < e)
        h = at + 1;

    size_t hs = h, he, pe = e; /* host [hs, he); port after he+1 up to pe */
    if (h < e && s[h] == '[') {
        size_t close = h;
        while (close < e && s[close] != ']')
            close++;
        if (close == e)
            return fail(err, errlen, "unterminated IPv6 address");
        hs = h + 1;
        he = close;
        if (close + 1 < e && s[close + 1] != ':')
            return fail(err, errlen, "bad characters after the IPv6 address");
        u->host_v6 = 1;
    } else {
        he = h;
        while (he < e && s[he] != ':')
            he++;
    }
    if (he == hs)
        return fail(err, errlen, "empty host");
    if (he - hs > WS_URL_HOST_MAX)
        return fail(err, errlen, "host too long");
    if (u->host_v6) {
        char tmp[64];
        struct in6_addr a6;
        if (he - hs >= sizeof tmp)
            return fail(err, errlen, "bad IPv6 address");
        memcpy(tmp, s + hs, he - hs);
        tmp[he - hs] = '\0';
        if (inet_pton(AF_INET6, tmp, &a6) != 1)
            return fail(err, errlen, "bad IPv6 address");
    } else {
        for (size_t i = hs; i < he; i++)
            if (!host_char((unsigned char)s[i]))
                return fail(err, errlen, "invalid character in host");
    }
    size_t colon = u->host_v6 ? he + 1 : he; /* where ':' would be */
    u->port = dport;
    if (colon < pe && s[colon] == ':' && colon + 1 < pe) {
        if (parse_port(s + colon + 1, pe - colon - 1, &u->port) != 0)
            return fail(err, errlen, "bad port (1-65535)");
    }
    u->default_port = u->port == dport;

    /* One block: host, target, user, pass, each NUL-terminated. */
    size_t tlen = t - e;
    int slash = tlen == 0 || s[e] != '/';
    size_t ulen = at < e ? at - a : 0;
    char *m = ws_malloc((he - hs) + 1 + tlen + slash + 1 + ulen + 2);
    u->_mem = m;
    for (size_t i = hs; i < he; i++) {
        char c = s[i];
        *m++ = (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
    }
    *m++ = '\0';
    u->host = u->_mem;
    u->target = m;
    if (slash)
        *m++ = '/';
    memcpy(m, s + e, tlen);
    m += tlen;
    *m++ = '\0';
    if (at < e) {
        size_t c = a;
        while (c < at && s[c] != ':')
            c++;
        u->user = m;
        if (pct_decode(s + a, c - a, m) != 0) {
            ws_url_free(u);
            return fail(err, errlen, "bad percent-encoding in userinfo");
        }
        m += strlen(m) + 1;
        u->pass = m;
        size_t ps = c < at ? c + 1 : at;
        if (pct_decode(s + ps, at - ps, m) != 0) {
            ws_url_free(u);
            return fail(err, errlen, "bad percent-encoding in userinfo");
        }
    }
    return 0;
}

void ws_url_free(ws_url_t *u)
{
    free(u->_mem);
    memset(u, 0, sizeof *u);
}

void ws_url_authority(const ws_url_t *u, ws_buf_t *out)
{
    if (u->host_v6)
        ws_buf_append(out, "[", 1);
    ws_buf_append_str(out, u->host);
    if (u->host_v6)
        ws_buf_append(out, "]", 1);
    if (!u->default_port) {
        char p[8];
        int n = snprintf(p, sizeof p, ":%u", (unsigned)u->port);
        ws_buf_append(out, p, (size_t)n);
    }
}

int ws_url_same_origin(const ws_url_t *a, const ws_url_t *b)
{
    return a->https == b->https && a->port == b->port && strcmp(a->host, b->host) == 0;
}

/* --- resolution (RFC 3986 section 5.2) --- */

/* Remove "." and ".." segments of p[0..n) (section 5.2.4), appending the
 * result to out. p is changed in place. */
static void remove_dots(char *p, size_t n, ws_buf_t *out)
{
    size_t i = 0, base = out->len;
    while (i < n) {
        size_t rest = n - i;
        char *q = p + i;
        if (rest >= 3 && memcmp(q, "../", 3) == 0) {
            i += 3;
        } else if (rest >= 2 && memcmp(q, "./", 2) == 0) {
            i += 2;
        } else if (rest >= 3 && memcmp(q, "/./", 3) == 0) {
            i += 2; /* leaves "/" */
        } else if (rest == 2 && memcmp(q, "/.", 2) == 0) {
            i += 1;
            p[i] = '/';
        } else if ((rest >= 4 && memcmp(q, "/../", 4) == 0) || (rest == 3 && memcmp(q, "/..", 3) == 0)) {
            /* leaves "/" and what followed */
            if (rest == 3) {
                i += 2;
                p[i] = '/';
            } else {
                i += 3;
            }
            /* drop the last segment written, with its leading '/' */
            while (out->len > base && out->data[out->len - 1] != '/')
                out->len--;
            if (out->len > base)
                out->len--;
        } else if ((rest == 1 && q[0] == '.') || (rest == 2 && memcmp(q, "..", 2) == 0)) {
            i = n;
        } else {
            size_t j = i + 1;
            while (j < n && p[j] != '/')
                j++;
            ws_buf_append(out, p + i, j - i);
            i = j;
        }
    }
}

static void append_path(ws_buf_t *out, const char *a, size_t alen, const char *b, size_t blen)
{
    char *tmp = ws_malloc(alen + blen + 1);
    memcpy(tmp, a, alen);
    memcpy(tmp + alen, b, blen);
    remove_dots(tmp, alen + blen, out);
    free(tmp);
}

int ws_url_resolve(const char *base, size_t blen, const char *ref, size_t rlen, ws_buf_t *out,
                   char *err, size_t errlen)
{
    if (rlen > WS_URL_MAX)
        return fail(err, errlen, "too long (over 8192 bytes)");
    for (size_t i = 0; i < rlen; i++) {
        unsigned char c = (unsigned char)ref[i];
        if (c < 0x20 || c == 0x7f)
            return fail(err, errlen, "space or control character");
    }
    if (scheme_len(ref, rlen) > 0) {
        ws_buf_append(out, ref, rlen);
        goto done;
    }
    size_t sl = scheme_len(base, blen); /* base is valid: "http" or "https" */
    if (rlen >= 2 && ref[0] == '/' && ref[1] == '/') {
        ws_buf_append(out, base, sl + 1);
        ws_buf_append(out, ref, rlen);
        goto done;
    }
    size_t ae = sl + 3; /* end of base's authority */
    while (ae < blen && base[ae] != '/' && base[ae] != '?' && base[ae] != '#')
        ae++;
    size_t bpe = ae; /* end of base's path */
    while (bpe < blen && base[bpe] != '?' && base[bpe] != '#')
        bpe++;
    size_t bqe = bpe; /* end of base's query */
    while (bqe < blen && base[bqe] != '#')
        bqe++;
    size_t rpe = 0; /* end of ref's path, then of its query */
    while (rpe < rlen && ref[rpe] != '?' && ref[rpe] != '#')
        rpe++;
    size_t rqe = rpe;
    while (rqe < rlen && ref[rqe] != '#')
        rqe++;

    ws_buf_append(out, base, ae);
    if (rpe == 0) {
        ws_buf_append(out, base + ae, bpe - ae);
        if (rqe > rpe)
            ws_buf_append(out, ref + rpe, rqe - rpe);
        else
            ws_buf_append(out, base + bpe, bqe - bpe);
        goto done;
    }
    if (ref[0] == '/') {
        append_path(out, ref, rpe, "", 0);
    } else if (bpe == ae) {
        append_path(out, "/", 1, ref, rpe);
    } else {
        size_t dir = bpe; /* base's path up to and with its last '/' */
        while (dir > ae && base[dir - 1] != '/')
            dir--;
        append_path(out, base + ae, dir - ae, ref, rpe);
    }
    ws_buf_append(out, ref + rpe, rqe - rpe);
done:
    ws_buf_reserve(out, 1);
    out->data[out->len] = '\0';
    return 0;
}

/* --- address ranges --- */

int ws_cidr_parse(ws_cidr_t *c, const char *s, char *err, size_t errlen)
{
    memset(c, 0, sizeof *c);
    const char *slash = strchr(s, '/');
    size_t alen = slash ? (size_t)(slash - s) : strlen(s);
    char tmp[64];
    if (alen == 0 || alen >= sizeof tmp) {
        snprintf(err, errlen, "invalid address range '%.64s'", s);
        return -1;
    }
    memcpy(tmp, s, alen);
    tmp[alen] = '\0';
    unsigned max;
    if (inet_pton(AF_INET, tmp, c->addr) == 1) {
        max = 32;
    } else if (inet_pton(AF_INET6, tmp, c->addr) == 1) {
        max = 128;
        c->v6 = 1;
    } else {
        snprintf(err, errlen, "invalid address in range '%.64s'", s);
        return -1;
    }
    unsigned bits = max;
    if (slash) {
        const char *b = slash + 1;
        size_t n = strlen(b);
        bits = 0;
        if (n == 0 || n > 3) {
            snprintf(err, errlen, "invalid prefix length in '%.64s'", s);
            return -1;
        }
        for (size_t i = 0; i < n; i++) {
            if (!is_digit((unsigned char)b[i])) {
                snprintf(err, errlen, "invalid prefix length in '%.64s'", s);
                return -1;
            }
            bits = bits * 10 + (unsigned)(b[i] - '0');
        }
        if (bits > max) {
            snprintf(err, errlen, "prefix length over %u in '%.64s'", max, s);
            return -1;
        }
    }
    c->bits = (uint8_t)bits;
    for (unsigned i = 0; i < max / 8; i++) {
        if (bits >= (i + 1) * 8)
            continue;
        unsigned keep = bits > i * 8 ? bits - i * 8 : 0;
        c->addr[i] &= (uint8_t)(0xff00u >> keep);
    }
    return 0;
}

static int prefix_eq(const uint8_t *a, const uint8_t *net, unsigned bits)
{
    unsigned whole = bits / 8, rest = bits % 8;
    if (memcmp(a, net, whole) != 0)
        return 0;
    if (rest == 0)
        return 1;
    uint8_t mask = (uint8_t)(0xff00u >> rest);
    return (a[whole] & mask) == net[whole];
}

static const uint8_t MAPPED[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

int ws_cidr_match(const ws_cidr_t *list, size_t n, const struct sockaddr *sa)
{
    uint8_t a4[4], a6[16];
    int have4 = 0, have6 = 0, only4 = 0;
    /* The family read as bytes: callers fill a sockaddr_storage or a
     * sockaddr_in under its own type, and strict aliasing lets the compiler
     * read sa->sa_family from before that store. GCC -O3 with LTO did:
     * 169.254.1.1 did not match 169.254.0.0/16 (test_url). */
    sa_family_t family;
    memcpy(&family, (const char *)sa + offsetof(struct sockaddr, sa_family), sizeof family);
    if (family == AF_INET) {
        memcpy(a4, &((const struct sockaddr_in *)sa)->sin_addr, 4);
        memcpy(a6, MAPPED, 12);
        memcpy(a6 + 12, a4, 4);
        have4 = have6 = only4 = 1;
    } else if (family == AF_INET6) {
        memcpy(a6, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
        have6 = 1;
        if (memcmp(a6, MAPPED, 12) == 0) {
            memcpy(a4, a6 + 12, 4);
            have4 = 1;
        }
    }
    for (size_t i = 0; i < n; i++) {
        const ws_cidr_t *c = &list[i];
        /* An IPv6 range says something of IPv4 addresses only when it lies
         * inside ::ffff:0:0/96: "::/0" means every IPv6 address, not every
         * address. */
        if (c->v6 && only4 && (c->bits < 96 || memcmp(c->addr, MAPPED, 12) != 0))
            continue;
        if (c->v6 ? (have6 && prefix_eq(a6, c->addr, c->bits)) : (have4 && prefix_eq(a4, c->addr, c->bits)))
            return 1;
    }
    return 0;
}
