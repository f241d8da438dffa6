/* Host names to permitted addresses: literals, .invalid, localhost,
 * uv_getaddrinfo, and the address policy. */
#include "resolver.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "buf.h"

struct ws_lookup_s {
    uv_getaddrinfo_t req;
    ws_resolver_t *r;
    uint16_t port;
    ws_lookup_cb cb; /* NULL once cancelled */
    void *ud;
};

void ws_resolver_init(ws_resolver_t *r, uv_loop_t *loop)
{
    memset(r, 0, sizeof *r);
    r->loop = loop;
}

void ws_resolver_free(ws_resolver_t *r)
{
    free(r->allow);
    free(r->deny);
    r->allow = r->deny = NULL;
    r->nallow = r->ndeny = 0;
}

static int add(ws_cidr_t **list, size_t *n, const char *cidr, char *err, size_t errlen)
{
    ws_cidr_t c;
    if (ws_cidr_parse(&c, cidr, err, errlen) != 0)
        return -1;
    *list = ws_realloc(*list, (*n + 1) * sizeof **list);
    (*list)[(*n)++] = c;
    return 0;
}

int ws_resolver_allow(ws_resolver_t *r, const char *cidr, char *err, size_t errlen)
{
    return add(&r->allow, &r->nallow, cidr, err, errlen);
}

int ws_resolver_deny(ws_resolver_t *r, const char *cidr, char *err, size_t errlen)
{
    return add(&r->deny, &r->ndeny, cidr, err, errlen);
}

/* Where cloud metadata services answer: link-local in both families, the
 * same range through the NAT64 well-known prefix (RFC 6052), and AWS's IPv6
 * metadata address. */
static const ws_cidr_t BUILTIN_DENY[] = {
    {{169, 254}, 16, 0},
    {{0xfe, 0x80}, 10, 1},
    {{0x00, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0, 169, 254}, 112, 1},
    {{0xfd, 0x00, 0x0e, 0xc2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x02, 0x54}, 128, 1},
};

int ws_resolver_permits(const ws_resolver_t *r, const struct sockaddr *sa)
{
    if (ws_cidr_match(r->allow, r->nallow, sa))
        return 1;
    return !ws_cidr_match(BUILTIN_DENY, sizeof BUILTIN_DENY / sizeof *BUILTIN_DENY, sa) &&
           !ws_cidr_match(r->deny, r->ndeny, sa);
}

static void set_port(struct sockaddr_storage *ss, uint16_t port)
{
    if (ss->ss_family == AF_INET)
        ((struct sockaddr_in *)ss)->sin_port = htons(port);
    else
        ((struct sockaddr_in6 *)ss)->sin6_port = htons(port);
}

/* host is the special-use name (RFC 6761) or a name under it, any case,
 * with or without the root's dot. */
static int under(const char *host, const char *name)
{
    size_t n = strlen(host), k = strlen(name);
    if (n && host[n - 1] == '.')
        n--;
    if (n == k)
        return strncasecmp(host, name, k) == 0;
    return n > k + 1 && host[n - k - 1] == '.' && strncasecmp(host + n - k, name, k) == 0;
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    ws_lookup_t *l = (ws_lookup_t *)req;
    if (!l->cb) {
        uv_freeaddrinfo(res);
        free(l);
        return;
    }
    size_t n = 0, refused = 0;
    for (struct addrinfo *ai = status == 0 ? res : NULL; ai; ai = ai->ai_next)
        n++;
    struct sockaddr_storage *addrs = ws_calloc(n ? n : 1, sizeof *addrs);
    n = 0;
    for (struct addrinfo *ai = status == 0 ? res : NULL; ai; ai = ai->ai_next) {
        if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6)
            continue;
        if (!ws_resolver_permits(l->r, ai->ai_addr)) {
            refused++;
            continue;
        }
        memcpy(&addrs[n], ai->ai_addr, ai->ai_addrlen);
        set_port(&addrs[n++], l->port);
    }
    uv_freeaddrinfo(res);
    l->cb(l->ud, addrs, n, n ? NULL : refused ? "address not allowed" : "cannot resolve host");
    free(addrs);
    free(l);
}

ws_lookup_t *ws_lookup_start(ws_resolver_t *r, const char *host, uint16_t port, ws_lookup_cb cb,
                             void *ud)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    if (inet_pton(AF_INET, host, &((struct sockaddr_in *)&ss)->sin_addr) == 1)
        ss.ss_family = AF_INET;
    else if (inet_pton(AF_INET6, host, &((struct sockaddr_in6 *)&ss)->sin6_addr) == 1)
        ss.ss_family = AF_INET6;
    if (ss.ss_family) {
        set_port(&ss, port);
        if (ws_resolver_permits(r, (struct sockaddr *)&ss))
            cb(ud, &ss, 1, NULL);
        else
            cb(ud, NULL, 0, "address not allowed");
        return NULL;
    }
    if (under(host, "invalid")) {
        cb(ud, NULL, 0, "cannot resolve host");
        return NULL;
    }
    if (under(host, "localhost")) {
        /* The loopback, never a DNS answer (RFC 6761 6.3): a machine without
         * an /etc/hosts entry gets it too, and no resolver can point it
         * elsewhere. IPv4 first, as most local services listen there. */
        struct sockaddr_storage lo[2];
        size_t n = 0;
        memset(lo, 0, sizeof lo);
        struct sockaddr_in *v4 = (struct sockaddr_in *)&lo[0];
        v4->sin_family = AF_INET;
        v4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&lo[1];
        v6->sin6_family = AF_INET6;
        v6->sin6_addr = in6addr_loopback;
        struct sockaddr_storage ok[2];
        for (size_t i = 0; i < 2; i++) {
            set_port(&lo[i], port);
            if (ws_resolver_permits(r, (struct sockaddr *)&lo[i]))
                ok[n++] = lo[i];
        }
        cb(ud, n ? ok : NULL, n, n ? NULL : "address not allowed");
        return NULL;
    }
    ws_lookup_t *l = ws_calloc(1, sizeof *l);
    l->r = r;
    l->port = port;
    l->cb = cb;
    l->ud = ud;
    struct addrinfo hints;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_protocol = IPPROTO_TCP;
    if (uv_getaddrinfo(r->loop, &l->req, on_resolved, host, NULL, &hints) != 0) {
        free(l);
        cb(ud, NULL, 0, "cannot resolve host");
        return NULL;
    }
    return l;
}

void ws_lookup_cancel(ws_lookup_t *l)
{
    l->cb = NULL;
    uv_cancel((uv_req_t *)&l->req);
}
