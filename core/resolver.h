/*
 * resolver.h: from a host name to the addresses an outbound request may
 * connect to. IP literals answer at once; names under .invalid (RFC 6761)
 * fail at once, with no query; localhost and the names under it are
 * 127.0.0.1 and ::1, with no query either; other names go to uv_getaddrinfo, which
 * runs off the loop thread. Every address then passes the address policy:
 * refused when a built-in range (169.254.0.0/16 and fe80::/10, link-local,
 * where cloud metadata services answer; 64:ff9b::a9fe:0/112, the first
 * through NAT64; fd00:ec2::254, AWS's IPv6 metadata address) or a deny range
 * covers it, unless an allow range covers it too.
 *
 * Loop thread only. Used by fetch.c; no Lua.
 */
#ifndef WS_RESOLVER_H
#define WS_RESOLVER_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <uv.h>

#include "url.h"

typedef struct {
    uv_loop_t *loop;
    ws_cidr_t *allow, *deny;
    size_t nallow, ndeny;
} ws_resolver_t;

void ws_resolver_init(ws_resolver_t *r, uv_loop_t *loop);
/* Lookups still in flight must have been cancelled. */
void ws_resolver_free(ws_resolver_t *r);

/* Add a range (as ws_cidr_parse takes it). 0, or -1 with the reason in err. */
int ws_resolver_allow(ws_resolver_t *r, const char *cidr, char *err, size_t errlen);
int ws_resolver_deny(ws_resolver_t *r, const char *cidr, char *err, size_t errlen);

/* 1 when the policy lets a connection go to sa (AF_INET or AF_INET6). */
int ws_resolver_permits(const ws_resolver_t *r, const struct sockaddr *sa);

typedef struct ws_lookup_s ws_lookup_t;

/* The answer: addrs[0..n) are the permitted addresses in the resolver's
 * order, with the port set (valid during the call only); or n == 0 and
 * error is "cannot resolve host" or "address not allowed" (every address
 * was refused). */
typedef void (*ws_lookup_cb)(void *ud, const struct sockaddr_storage *addrs, size_t n,
                             const char *error);

/* Look host up (a ws_url_t host: lowercase, IPv6 without brackets) for
 * port. When the answer is known at once (an IP literal, a name under
 * .invalid or localhost, a lookup that could not start), cb runs inside this call and
 * NULL is returned. Otherwise the lookup in flight is returned and cb runs
 * on a later loop turn, unless ws_lookup_cancel runs first. */
ws_lookup_t *ws_lookup_start(ws_resolver_t *r, const char *host, uint16_t port, ws_lookup_cb cb,
                             void *ud);

/* cb never runs. The lookup's memory is freed when uv_getaddrinfo reports,
 * on a later loop turn: the loop must keep running until it has. */
void ws_lookup_cancel(ws_lookup_t *l);

#endif
