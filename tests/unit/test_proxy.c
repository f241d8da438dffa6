/* The client behind trusted proxies: ranges, and the X-Forwarded-For walk. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <cmocka.h>
#include <string.h>

#include "proxy.h"

static ws_proxy_t trusting(const char *const *cidrs)
{
    ws_proxy_t p;
    ws_proxy_init(&p);
    char err[128];
    for (; *cidrs; cidrs++)
        assert_int_equal(ws_proxy_add(&p, *cidrs, err, sizeof err), 0);
    return p;
}

/* The client that headers name[i]: value[i] give behind p, as text, or "peer"
 * when the walk gives no answer. */
static const char *walk(const ws_proxy_t *p, const char *const *hv, char *out, size_t len)
{
    ws_header_t h[8];
    size_t n = 0;
    for (; hv[0]; hv += 2, n++)
        h[n] = (ws_header_t){hv[0], strlen(hv[0]), hv[1], strlen(hv[1])};
    ws_ipaddr_t a;
    if (!ws_proxy_client(p, h, n, &a))
        return "peer";
    return ws_ipaddr_format(&a, out, len);
}

#define XFF "X-Forwarded-For"

/* Headers (name, value pairs) and the client they name ("peer": none). */
typedef struct {
    const char *hv[7];
    const char *want;
} walk_case_t;

/* Every case, behind the ranges trust. */
static void expect_walks(const char *const *trust, const walk_case_t *cases, size_t n)
{
    ws_proxy_t p = trusting(trust);
    char buf[WS_IPADDR_MAX];
    for (size_t i = 0; i < n; i++) {
        const char *got = walk(&p, cases[i].hv, buf, sizeof buf);
        if (strcmp(got, cases[i].want) != 0)
            fail_msg("case %zu (%s: %s): got %s, want %s", i, cases[i].hv[0], cases[i].hv[1], got,
                     cases[i].want);
    }
    ws_proxy_free(&p);
}

#define EXPECT_WALKS(trust, cases) expect_walks(trust, cases, sizeof cases / sizeof *cases)

static const char *const TEN[] = {"10.0.0.0/8", NULL};

static void test_proxy_takes_the_rightmost_untrusted_address(void **state)
{
    (void)state;
    static const walk_case_t cases[] = {
        {{XFF, "1.2.3.4"}, "1.2.3.4"},
        {{XFF, "1.2.3.4, 10.0.0.2"}, "1.2.3.4"},
        /* the leftmost is whatever the client sent: never believed past an untrusted hop */
        {{"x-forwarded-for", "6.6.6.6, 1.2.3.4, 10.0.0.2"}, "1.2.3.4"},
        {{"X-FORWARDED-FOR", "6.6.6.6,1.2.3.4"}, "1.2.3.4"},
        {{XFF, "6.6.6.6, 1.2.3.4, 127.0.0.1"}, "1.2.3.4"},
    };
    EXPECT_WALKS(((const char *const[]){"127.0.0.1", "10.0.0.0/8", NULL}), cases);
}

static void test_proxy_combines_every_header_in_order(void **state)
{
    (void)state;
    static const walk_case_t cases[] = {
        /* the second header continues the list: 10.0.0.3 is its last element */
        {{XFF, "9.9.9.9, 1.2.3.4", "Host", "x", XFF, "10.0.0.3"}, "1.2.3.4"},
        {{XFF, "10.0.0.1", XFF, "5.6.7.8"}, "5.6.7.8"},
    };
    EXPECT_WALKS(TEN, cases);
}

static void test_proxy_takes_the_leftmost_when_every_hop_is_trusted(void **state)
{
    (void)state;
    static const walk_case_t cases[] = {
        {{XFF, "10.0.0.7, 10.0.0.2"}, "10.0.0.7"},
        {{XFF, "10.1.1.1"}, "10.1.1.1"},
    };
    EXPECT_WALKS(TEN, cases);
}

static void test_proxy_without_a_header_or_element_keeps_the_peer(void **state)
{
    (void)state;
    static const walk_case_t cases[] = {
        {{"Host", "example.com"}, "peer"},
        {{XFF, ""}, "peer"},
        {{XFF, " , ,\t"}, "peer"},
        /* a header of another name that starts the same way */
        {{"X-Forwarded-Fort", "1.2.3.4"}, "peer"},
        /* empty elements are ignored (RFC 9110 5.6.1), not taken for garbage */
        {{XFF, ",1.2.3.4,, 10.0.0.2,"}, "1.2.3.4"},
    };
    EXPECT_WALKS(TEN, cases);
}

static void test_proxy_stops_at_an_element_that_is_not_an_address(void **state)
{
    (void)state;
    ws_proxy_t p = trusting(TEN);
    char buf[WS_IPADDR_MAX];
    static const char *const bad[] = {
        "unknown", "1.2.3.4:5678", "[::1]:80", "1.2.3", "01.2.3.4", "1.2.3.256", "::1%eth0",
        "[1.2.3.4]", "[]", "1.2.3.4 5.6.7.8", "_hidden", "example.com", "1.2.3.4;x",
        "fe80::1::2", "0x7f.0.0.1",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char v[64];
        snprintf(v, sizeof v, "%s, 10.0.0.2", bad[i]);
        assert_string_equal(walk(&p, (const char *const[]){XFF, v, NULL}, buf, sizeof buf), "peer");
        assert_string_equal(walk(&p, (const char *const[]){XFF, bad[i], NULL}, buf, sizeof buf),
                            "peer");
    }
    /* garbage left of the client is never reached: the client is found first */
    static const walk_case_t left[] = {{{XFF, "unknown, 1.2.3.4, 10.0.0.2"}, "1.2.3.4"}};
    EXPECT_WALKS(TEN, left);
    /* a NUL inside an element is not an address either */
    ws_header_t h = {XFF, 15, "1.2.3.4\0", 8};
    ws_ipaddr_t a;
    assert_int_equal(ws_proxy_client(&p, &h, 1, &a), 0);
    ws_proxy_free(&p);
}

static void test_proxy_reads_ipv6_elements(void **state)
{
    (void)state;
    static const walk_case_t cases[] = {
        {{XFF, "2001:db8::7, fd00::2"}, "2001:db8::7"},
        {{XFF, "[2001:DB8::8]"}, "2001:db8::8"},
        {{XFF, "1.2.3.4, ::1"}, "1.2.3.4"},
        /* an IPv4-mapped address is the IPv4 client it names */
        {{XFF, "::ffff:1.2.3.4"}, "1.2.3.4"},
    };
    EXPECT_WALKS(((const char *const[]){"::1", "fd00::/8", NULL}), cases);
}

static void test_proxy_trusts_its_ranges_only(void **state)
{
    (void)state;
    ws_proxy_t p = trusting((const char *const[]){"127.0.0.1/32", "10.0.0.0/8", "fd00::/8", NULL});
    ws_ipaddr_t a;
    assert_int_equal(ws_ipaddr_parse(&a, "127.0.0.1", 9), 0);
    assert_true(ws_proxy_trusts(&p, &a));
    assert_int_equal(ws_ipaddr_parse(&a, "127.0.0.2", 9), 0);
    assert_false(ws_proxy_trusts(&p, &a));
    assert_int_equal(ws_ipaddr_parse(&a, "10.255.0.1", 10), 0);
    assert_true(ws_proxy_trusts(&p, &a));
    assert_int_equal(ws_ipaddr_parse(&a, "fd12::1", 7), 0);
    assert_true(ws_proxy_trusts(&p, &a));
    assert_int_equal(ws_ipaddr_parse(&a, "fe00::1", 7), 0);
    assert_false(ws_proxy_trusts(&p, &a));
    /* the mapped form of a trusted IPv4 address, as a dual-stack socket reports it */
    memset(&a, 0, sizeof a);
    a.v6 = 1;
    memcpy(a.addr, (const uint8_t[]){0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 1, 2, 3}, 16);
    assert_true(ws_proxy_trusts(&p, &a));
    ws_proxy_free(&p);
    /* an empty list trusts nobody */
    assert_int_equal(ws_ipaddr_parse(&a, "127.0.0.1", 9), 0);
    assert_false(ws_proxy_trusts(&p, &a));
}

static void test_proxy_refuses_bad_ranges_with_a_reason(void **state)
{
    (void)state;
    ws_proxy_t p;
    ws_proxy_init(&p);
    char err[128];
    static const char *const bad[] = {"", "10.0.0.0/33", "::/129", "localhost", "10.0.0.0/", "1.2.3.4/x"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        err[0] = '\0';
        assert_int_equal(ws_proxy_add(&p, bad[i], err, sizeof err), -1);
        assert_true(strlen(err) > 0);
    }
    assert_int_equal(p.n, 0);
    assert_int_equal(ws_proxy_add(&p, "10.0.0.0/33", err, sizeof err), -1);
    assert_string_equal(err, "prefix length over 32 in '10.0.0.0/33'");
    ws_proxy_free(&p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_proxy_takes_the_rightmost_untrusted_address),
        cmocka_unit_test(test_proxy_combines_every_header_in_order),
        cmocka_unit_test(test_proxy_takes_the_leftmost_when_every_hop_is_trusted),
        cmocka_unit_test(test_proxy_without_a_header_or_element_keeps_the_peer),
        cmocka_unit_test(test_proxy_stops_at_an_element_that_is_not_an_address),
        cmocka_unit_test(test_proxy_reads_ipv6_elements),
        cmocka_unit_test(test_proxy_trusts_its_ranges_only),
        cmocka_unit_test(test_proxy_refuses_bad_ranges_with_a_reason),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
