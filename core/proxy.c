#include "proxy.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "buf.h"

void ws_proxy_init(ws_proxy_t *p) { memset(p, 0, sizeof *p); }

void ws_proxy_free(ws_proxy_t *p)
{
    free(p->v);
    ws_proxy_init(p);
}

int ws_proxy_add(ws_proxy_t *p, const char *cidr, char *err, size_t errlen)
{
    ws_cidr_t c;
    if (ws_cidr_parse(&c, cidr, err, errlen) != 0)
        return -1;
    p->v = ws_realloc(p->v, (p->n + 1) * sizeof *p->v);
    p->v[p->n++] = c;
    return 0;
}

int ws_proxy_trusts(const ws_proxy_t *p, const ws_ipaddr_t *a)
{
    if (p->n == 0)
        return 0;
    /* ws_cidr_match knows the mapped forms; it takes a socket address. */
    struct sockaddr_in6 s6 = {.sin6_family = AF_INET6};
    struct sockaddr_in s4 = {.sin_family = AF_INET};
    if (a->v6) {
        memcpy(&s6.sin6_addr, a->addr, 16);
        return ws_cidr_match(p->v, p->n, (const struct sockaddr *)&s6);
    }
    memcpy(&s4.sin_addr, a->addr, 4);
    return ws_cidr_match(p->v, p->n, (const struct sockaddr *)&s4);
}

static const uint8_t MAPPED[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

int ws_ipaddr_parse(ws_ipaddr_t *a, const char *s, size_t len)
{
    char tmp[WS_IPADDR_MAX];
    memset(a, 0, sizeof *a);
    /* Brackets may only hold an IPv6 address. */
    int bracketed = len >= 2 && s[0] == '[' && s[len - 1] == ']';
    if (bracketed) {
        s++;
        len -= 2;
    }
    if (len == 0 || len >= sizeof tmp || memchr(s, '\0', len))
        return -1;
    memcpy(tmp, s, len);
    tmp[len] = '\0';
    if (!bracketed && inet_pton(AF_INET, tmp, a->addr) == 1)
        return 0;
    if (inet_pton(AF_INET6, tmp, a->addr) != 1)
        return -1;
    a->v6 = 1;
    /* One client, one key in the per-address tables, however it was written. */
    if (memcmp(a->addr, MAPPED, 12) == 0) {
        memmove(a->addr, a->addr + 12, 4);
        memset(a->addr + 4, 0, 12);
        a->v6 = 0;
    }
    return 0;
}

char *ws_ipaddr_format(const ws_ipaddr_t *a, char *out, size_t len)
{
    if (!inet_ntop(a->v6 ? AF_INET6 : AF_INET, a->addr, out, (socklen_t)len) && len)
        out[0] = '\0';
    return out;
}

static int is_ows(char c) { return c == ' ' || c == '\t'; }

int ws_proxy_client(const ws_proxy_t *p, const ws_header_t *headers, size_t n, ws_ipaddr_t *out)
{
    static const char name[] = "x-forwarded-for";
    int found = 0;
    for (size_t i = n; i-- > 0;) {
        const ws_header_t *h = &headers[i];
        if (h->name_len != sizeof name - 1 || strncasecmp(h->name, name, sizeof name - 1) != 0)
            continue;
        /* Each element from the right: [b, e) between two commas. */
        size_t e = h->value_len;
        for (;;) {
            size_t b = e;
            while (b > 0 && h->value[b - 1] != ',')
                b--;
            size_t s = b, t = e;
            while (s < t && is_ows(h->value[s]))
                s++;
            while (t > s && is_ows(h->value[t - 1]))
                t--;
            if (t > s) {
                ws_ipaddr_t a;
                if (ws_ipaddr_parse(&a, h->value + s, t - s) != 0)
                    return 0;
                *out = a;
                found = 1;
                if (!ws_proxy_trusts(p, &a))
                    return 1;
            }
            if (b == 0)
                break;
            e = b - 1;
        }
    }
    /* Every element was a trusted hop: the leftmost began the chain. */
    return found;
}
