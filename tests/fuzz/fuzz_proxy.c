/*
 * fuzz_proxy: the X-Forwarded-For walk (core/proxy.h) over arbitrary header
 * values, against a reference written the other way round: all the values
 * joined into one list, split into elements left to right, then judged from
 * the right.
 *
 * Input: lines (split at '\n'); a line starting with '#' is a header of
 * another name, every other line is one X-Forwarded-For value. The trusted
 * ranges are fixed: 10.0.0.0/8, 127.0.0.1, fd00::/8, ::ffff:192.168.0.0/112.
 *
 * Invariants (besides ASan/UBSan):
 *  - ws_proxy_client answers exactly when the reference does, with the same
 *    address: the rightmost untrusted element, else the leftmost, and no
 *    answer when there is no element or one from the right up to the answer
 *    is not an address;
 *  - an answer is never an IPv4-mapped IPv6 address, and formatted, it
 *    parses back to itself.
 */
#include "fuzz_util.h"

#include <arpa/inet.h>
#include <strings.h>

#include "proxy.h"

static const char *const TRUSTED[] = {"10.0.0.0/8", "127.0.0.1", "fd00::/8", "::ffff:192.168.0.0/112"};

/* The reference's idea of trusted, on the address as written. */
static int ref_trusted(const uint8_t *a, int v6)
{
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (!v6)
        return a[0] == 10 || (a[0] == 127 && a[1] == 0 && a[2] == 0 && a[3] == 1) ||
               (a[0] == 192 && a[1] == 168);
    if (a[0] == 0xfd)
        return 1;
    return memcmp(a, mapped, 12) == 0 && ref_trusted(a + 12, 0);
}

/* An element as the reference reads it: 1 with a[16], *v6 set, or 0. */
static int ref_parse(const char *s, size_t n, uint8_t *a, int *v6)
{
    char tmp[64];
    int br = n >= 2 && s[0] == '[' && s[n - 1] == ']';
    if (br)
        s++, n -= 2;
    if (n == 0 || n >= sizeof tmp || memchr(s, 0, n))
        return 0;
    memcpy(tmp, s, n);
    tmp[n] = 0;
    memset(a, 0, 16);
    if (!br && inet_pton(AF_INET, tmp, a) == 1) {
        *v6 = 0;
        return 1;
    }
    *v6 = 1;
    return inet_pton(AF_INET6, tmp, a) == 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ws_proxy_t p;
    ws_proxy_init(&p);
    char err[128];
    for (size_t i = 0; i < sizeof TRUSTED / sizeof *TRUSTED; i++)
        FUZZ_CHECK(ws_proxy_add(&p, TRUSTED[i], err, sizeof err) == 0);

    /* exact-size copy, so that reading past it is caught */
    char *buf = malloc(size ? size : 1);
    memcpy(buf, data, size);
    ws_header_t h[64];
    size_t nh = 0, start = 0;
    char *joined = malloc(size + 64);
    size_t jl = 0;
    for (size_t i = 0; i <= size && nh < 64; i++) {
        if (i < size && buf[i] != '\n')
            continue;
        const char *v = buf + start;
        size_t vl = i - start;
        if (vl > 0 && v[0] == '#') {
            h[nh++] = (ws_header_t){"Other", 5, v + 1, vl - 1};
        } else {
            h[nh++] = (ws_header_t){"X-Forwarded-For", 15, v, vl};
            if (jl)
                joined[jl++] = ',';
            memcpy(joined + jl, v, vl);
            jl += vl;
        }
        start = i + 1;
    }

    /* the reference: elements left to right */
    enum { MAXE = 4096 };
    static uint8_t addr[MAXE][16];
    static int v6[MAXE], ok[MAXE];
    size_t ne = 0;
    for (size_t b = 0; b <= jl && ne < MAXE;) {
        size_t e = b;
        while (e < jl && joined[e] != ',')
            e++;
        size_t s = b, t = e;
        while (s < t && (joined[s] == ' ' || joined[s] == '\t'))
            s++;
        while (t > s && (joined[t - 1] == ' ' || joined[t - 1] == '\t'))
            t--;
        if (t > s) {
            ok[ne] = ref_parse(joined + s, t - s, addr[ne], &v6[ne]);
            ne++;
        }
        b = e + 1;
    }
    int want = 0;
    size_t at = 0;
    if (ne < MAXE) {
        for (size_t k = ne; k-- > 0;) {
            if (!ok[k])
                break;
            if (!ref_trusted(addr[k], v6[k]) || k == 0) {
                want = 1;
                at = k;
                break;
            }
        }
    }

    ws_ipaddr_t got;
    int r = ws_proxy_client(&p, h, nh, &got);
    if (ne < MAXE && nh < 64) {
        FUZZ_CHECK(r == want);
        if (want) {
            static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
            const uint8_t *w = addr[at];
            int wv6 = v6[at];
            if (wv6 && memcmp(w, mapped, 12) == 0)
                w += 12, wv6 = 0;
            FUZZ_CHECK(got.v6 == wv6 && memcmp(got.addr, w, wv6 ? 16 : 4) == 0);
        }
    }
    if (r) {
        FUZZ_CHECK(!(got.v6 && got.addr[10] == 0xff && got.addr[11] == 0xff &&
                     !memcmp(got.addr, "\0\0\0\0\0\0\0\0\0\0", 10)));
        char txt[WS_IPADDR_MAX];
        ws_ipaddr_format(&got, txt, sizeof txt);
        ws_ipaddr_t back;
        FUZZ_CHECK(ws_ipaddr_parse(&back, txt, strlen(txt)) == 0);
        FUZZ_CHECK(back.v6 == got.v6 && !memcmp(back.addr, got.addr, 16));
    }
    free(joined);
    free(buf);
    ws_proxy_free(&p);
    return 0;
}
