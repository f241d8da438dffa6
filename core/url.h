/*
 * url.h: the URLs of outbound HTTP requests (fetch.h) and the address ranges
 * that decide where those requests may go. Pure: strings and addresses in,
 * values out; no I/O, no DNS, no loop.
 *
 * http:// and https:// URLs are understood (redis:// ones too, for the Redis
 * client, when asked for with ws_url_parse_as); everything else is refused
 * with a reason the caller can show as "invalid url: <reason>". The reasons
 * are static strings or short messages written into the caller's err buffer;
 * they never contain the URL's userinfo (credentials must not reach logs).
 */
#ifndef WS_URL_H
#define WS_URL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "buf.h"

/* Longest URL accepted (bytes, fragment included). */
#define WS_URL_MAX 8192
/* Longest host name accepted (RFC 1035: 253 plus a trailing dot). */
#define WS_URL_HOST_MAX 254

typedef struct {
    int https;         /* 1 for https://, 0 for http:// */
    const char *host;  /* lowercased; an IPv6 literal without its brackets */
    int host_v6;       /* host is an IPv6 literal ("[::1]" in the URL) */
    uint16_t port;     /* as given, else 80 or 443 */
    int default_port;  /* port is the scheme's default (Host then omits it) */
    const char *target;/* path and query, "/" when the URL has no path; no fragment */
    const char *user;  /* percent-decoded userinfo, NULL when the URL has none */
    const char *pass;  /* percent-decoded password ("" when user has no ':'), or NULL */
    char *_mem;        /* one block holding the strings above */
} ws_url_t;

/* Parse s[0..len). Returns 0 with u filled (release it with ws_url_free), or
 * -1 with the reason in err and nothing to free. Refused: schemes other than
 * http/https, an empty or malformed host, a port that is 0, over 65535 or
 * not decimal (an empty one, "http://h:/", is the default), spaces, control
 * characters (CR and LF included) or non-ASCII bytes anywhere (a URL must be
 * percent-encoded), bad percent-encoding in the userinfo, and URLs over
 * WS_URL_MAX bytes. The userinfo ends at the last '@' of the authority. */
int ws_url_parse(ws_url_t *u, const char *s, size_t len, char *err, size_t errlen);
/* The same for a kind of URL: WS_URL_HTTP is ws_url_parse; WS_URL_REDIS
 * takes redis:// only (port 6379 by default; target is the "/db" part) and
 * says that rediss:// is not supported. */
enum { WS_URL_HTTP, WS_URL_REDIS };
int ws_url_parse_as(ws_url_t *u, const char *s, size_t len, int kind, char *err, size_t errlen);
void ws_url_free(ws_url_t *u);

/* Append the Host header value of u to out: "host", "host:port" when the
 * port is not the default, "[v6]" / "[v6]:port" for IPv6 literals. */
void ws_url_authority(const ws_url_t *u, ws_buf_t *out);

/* 1 when a and b reach the same origin (scheme, host and port). */
int ws_url_same_origin(const ws_url_t *a, const ws_url_t *b);

/* Resolve the reference ref[0..rlen) (a redirect's Location) against base,
 * an absolute http(s) URL that ws_url_parse accepted, as RFC 3986 section
 * 5.2 does: an absolute URL stays as it is, "//host/p" takes base's scheme,
 * "/p" base's scheme and authority, "?q" base's path, and a relative path is
 * merged with base's directory; dot segments are removed. Appends the
 * result (NUL-terminated; the NUL is not counted in out->len) to out, which
 * the caller parses next: this only builds the string. Returns 0, or -1 with
 * the reason in err (a reference too long, or holding a control character). */
int ws_url_resolve(const char *base, size_t blen, const char *ref, size_t rlen, ws_buf_t *out,
                   char *err, size_t errlen);

/* An address range: IPv4 or IPv6, with a prefix length. */
typedef struct {
    uint8_t addr[16]; /* network address, host bits cleared (4 bytes used for IPv4) */
    uint8_t bits;     /* prefix length: 0..32 or 0..128 */
    uint8_t v6;
} ws_cidr_t;

/* Parse "169.254.0.0/16", "fe80::/10", or a bare address (/32, /128) from
 * the NUL-terminated s. Host bits below the prefix are ignored
 * ("10.1.2.3/8" is 10.0.0.0/8). Returns 0, or -1 with the reason in err. */
int ws_cidr_parse(ws_cidr_t *c, const char *s, char *err, size_t errlen);

/* 1 when one of list[0..n) covers sa (AF_INET or AF_INET6; anything else
 * never matches). An IPv4-mapped IPv6 address (::ffff:a.b.c.d) is also
 * matched as the IPv4 address it carries, so an IPv4 range is not escaped by
 * writing the address the other way; and an IPv4 address is matched by the
 * IPv6 ranges that lie inside ::ffff:0:0/96 (not by "::/0", which means
 * every IPv6 address). */
int ws_cidr_match(const ws_cidr_t *list, size_t n, const struct sockaddr *sa);

#endif
