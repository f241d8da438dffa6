/*
 * proxy.h: the client behind a trusted reverse proxy (--trusted-proxy). A
 * list of trusted ranges, and the walk over X-Forwarded-For that finds the
 * client's address. Pure: no I/O, no Lua.
 *
 * The walk, for a request whose TCP peer is trusted: every X-Forwarded-For
 * header, in order, is one comma-separated list (RFC 9110 5.3; empty
 * elements are ignored, as 5.6.1 asks). From the right, each element was
 * appended by the hop after it, so trusted hops vouch for the element
 * before them; the first element from the right that is not itself trusted
 * is the client (anything left of it is whatever that client chose to send).
 * If every element is trusted, the leftmost one is the client. An element
 * that is not a bare IPv4 or IPv6 address (or "[IPv6]"; no ports, no
 * "unknown", no obfuscated names) ends the walk with no answer: the caller
 * then keeps the peer's own address. That is the safe side: a trusted hop
 * wrote something we cannot read, and guessing past it would let a client
 * choose its address.
 */
#ifndef WS_PROXY_H
#define WS_PROXY_H

#include <stddef.h>
#include <stdint.h>

#include "handshake.h"
#include "url.h"

/* One address, binary. */
typedef struct {
    uint8_t addr[16]; /* 4 bytes used for IPv4 */
    uint8_t v6;
} ws_ipaddr_t;

/* Longest address text ws_ipaddr_format writes, NUL included. */
#define WS_IPADDR_MAX 46

/* The trusted ranges. Zero-initialised (or ws_proxy_init) is an empty list,
 * which trusts nobody. */
typedef struct {
    ws_cidr_t *v;
    size_t n;
} ws_proxy_t;

void ws_proxy_init(ws_proxy_t *p);
void ws_proxy_free(ws_proxy_t *p);

/* Trust the range cidr ("10.0.0.0/8", "::1", "fd00::/8"; a bare address is
 * /32 or /128), as ws_cidr_parse reads it. 0, or -1 with the reason in err
 * (the list is unchanged). */
int ws_proxy_add(ws_proxy_t *p, const char *cidr, char *err, size_t errlen);

/* 1 when a lies in one of p's ranges (an IPv4-mapped IPv6 address counts as
 * the IPv4 address it carries), else 0. */
int ws_proxy_trusts(const ws_proxy_t *p, const ws_ipaddr_t *a);

/* The client's address, from the X-Forwarded-For headers among
 * headers[0..n) (names compared case-insensitively), for a request whose TCP
 * peer is trusted (the caller checks that first: an untrusted peer's header
 * means nothing). Returns 1 with *out set to the client (an IPv4-mapped
 * IPv6 element is given as IPv4), or 0 when there is no header, no element,
 * or the walk met an element that is not an address (see above): keep the
 * peer's address. */
int ws_proxy_client(const ws_proxy_t *p, const ws_header_t *headers, size_t n, ws_ipaddr_t *out);

/* Parse one element: a bare IPv4 or IPv6 address, or an IPv6 one in
 * brackets, s[0..len) exactly (no spaces). 0, or -1. */
int ws_ipaddr_parse(ws_ipaddr_t *a, const char *s, size_t len);

/* a as text ("1.2.3.4", "2001:db8::1") into out[0..len); returns out. */
char *ws_ipaddr_format(const ws_ipaddr_t *a, char *out, size_t len);

#endif
