/* url.h: URL parsing (good and bad input), Host values, origins, RFC 3986
 * reference resolution (the RFC's own examples), and address ranges. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cmocka.h>

#include "url.h"

typedef struct {
    const char *in;
    int https;
    const char *host;
    int port;
    int default_port;
    const char *target;
    const char *user; /* NULL: no userinfo */
    const char *pass;
} good_t;

static const good_t GOOD[] = {
    {"http://example.com", 0, "example.com", 80, 1, "/", NULL, NULL},
    {"HTTP://Example.COM:8080/a/b?x=1#frag", 0, "example.com", 8080, 0, "/a/b?x=1", NULL, NULL},
    {"https://h", 1, "h", 443, 1, "/", NULL, NULL},
    {"https://h:80/", 1, "h", 80, 0, "/", NULL, NULL},
    {"http://h:443/", 0, "h", 443, 0, "/", NULL, NULL},
    {"http://[::1]:8080/p", 0, "::1", 8080, 0, "/p", NULL, NULL},
    {"http://[FE80::1]/", 0, "fe80::1", 80, 1, "/", NULL, NULL},
    {"http://user:p%40ss@h/", 0, "h", 80, 1, "/", "user", "p@ss"},
    {"http://user@h", 0, "h", 80, 1, "/", "user", ""},
    {"http://:secret@h", 0, "h", 80, 1, "/", "", "secret"},
    {"http://a@b:c@h/", 0, "h", 80, 1, "/", "a@b", "c"},
    {"http://u%3Ax:p%3a@h/", 0, "h", 80, 1, "/", "u:x", "p:"},
    {"http://h?q", 0, "h", 80, 1, "/?q", NULL, NULL},
    {"http://h#f", 0, "h", 80, 1, "/", NULL, NULL},
    {"http://h:/x", 0, "h", 80, 1, "/x", NULL, NULL},
    {"http://h:080/", 0, "h", 80, 1, "/", NULL, NULL},
    {"http://127.0.0.1:65535/a%20b", 0, "127.0.0.1", 65535, 0, "/a%20b", NULL, NULL},
    {"http://x.invalid./", 0, "x.invalid.", 80, 1, "/", NULL, NULL},
    {"http://my_host-1.example~/", 0, "my_host-1.example~", 80, 1, "/", NULL, NULL},
};

static void test_url_parses_good_urls(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof GOOD / sizeof *GOOD; i++) {
        const good_t *g = &GOOD[i];
        ws_url_t u;
        char err[128] = "";
        int r = ws_url_parse(&u, g->in, strlen(g->in), err, sizeof err);
        if (r != 0)
            fail_msg("%s: %s", g->in, err);
        assert_int_equal(u.https, g->https);
        assert_string_equal(u.host, g->host);
        assert_int_equal(u.port, g->port);
        assert_int_equal(u.default_port, g->default_port);
        assert_string_equal(u.target, g->target);
        if (g->user) {
            assert_non_null(u.user);
            assert_string_equal(u.user, g->user);
            assert_string_equal(u.pass, g->pass);
        } else {
            assert_null(u.user);
            assert_null(u.pass);
        }
        ws_url_free(&u);
    }
}

typedef struct {
    const char *in;
    size_t len; /* 0: strlen */
    const char *why;
} bad_t;

static const bad_t BAD[] = {
    {"ftp://h/", 0, "unsupported scheme (only http and https)"},
    {"ws://h/", 0, "unsupported scheme (only http and https)"},
    {"h/path", 0, "missing scheme (http:// or https://)"},
    {"localhost:8080/x", 0, "missing scheme (http:// or https://)"},
    {"", 0, "missing scheme (http:// or https://)"},
    {"http:/h", 0, "missing // after the scheme"},
    {"http:", 0, "missing // after the scheme"},
    {"http://", 0, "empty host"},
    {"http:///p", 0, "empty host"},
    {"http://:80/", 0, "empty host"},
    {"http://u@/", 0, "empty host"},
    {"http://[]/", 0, "empty host"},
    {"http://h:0/", 0, "bad port (1-65535)"},
    {"http://h:65536/", 0, "bad port (1-65535)"},
    {"http://h:8x/", 0, "bad port (1-65535)"},
    {"http://h:123456/", 0, "bad port (1-65535)"},
    {"http://h:-1/", 0, "bad port (1-65535)"},
    {"http://h:80:81/", 0, "bad port (1-65535)"},
    {"http://h /", 0, "space or control character"},
    {"http://h/a b", 0, "space or control character"},
    {"http://h/\r\nX-Injected: 1", 0, "space or control character"},
    {"http://h/\n", 0, "space or control character"},
    {"http://h/\t", 0, "space or control character"},
    {"http://h/\x7f", 0, "space or control character"},
    {"http://h/#a b", 0, "space or control character"},
    {"http://h/\0x", 11, "space or control character"},
    {"http://h/caf\xc3\xa9", 0, "non-ASCII character (percent-encode it)"},
    {"http://[::1/", 0, "unterminated IPv6 address"},
    {"http://[zz]/", 0, "bad IPv6 address"},
    {"http://[1.2.3.4]/", 0, "bad IPv6 address"},
    {"http://[fe80::1%25eth0]/", 0, "bad IPv6 address"},
    {"http://[::1]x/", 0, "bad characters after the IPv6 address"},
    {"http://h%41/", 0, "invalid character in host"},
    {"http://h!/", 0, "invalid character in host"},
    {"http://u:%zz@h/", 0, "bad percent-encoding in userinfo"},
    {"http://u:%4@h/", 0, "bad percent-encoding in userinfo"},
    {"http://u%00:p@h/", 0, "bad percent-encoding in userinfo"},
};

static void test_url_refuses_bad_urls_with_a_reason(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof BAD / sizeof *BAD; i++) {
        const bad_t *b = &BAD[i];
        ws_url_t u;
        char err[128] = "";
        size_t len = b->len ? b->len : strlen(b->in);
        if (ws_url_parse(&u, b->in, len, err, sizeof err) == 0)
            fail_msg("accepted: %s", b->in);
        if (strcmp(err, b->why) != 0)
            fail_msg("%s: '%s', expected '%s'", b->in, err, b->why);
        assert_null(u._mem); /* nothing to free */
    }
}

static void test_url_refuses_over_long_urls_and_hosts(void **state)
{
    (void)state;
    char s[WS_URL_MAX + 2];
    ws_url_t u;
    char err[128];
    memset(s, 'a', sizeof s);
    memcpy(s, "http://h/", 9);
    assert_int_equal(ws_url_parse(&u, s, WS_URL_MAX, err, sizeof err), 0); /* the limit itself */
    ws_url_free(&u);
    assert_int_equal(ws_url_parse(&u, s, WS_URL_MAX + 1, err, sizeof err), -1);
    assert_string_equal(err, "too long (over 8192 bytes)");

    memcpy(s, "http://", 7);
    memset(s + 7, 'h', WS_URL_HOST_MAX);
    assert_int_equal(ws_url_parse(&u, s, 7 + WS_URL_HOST_MAX, err, sizeof err), 0);
    assert_int_equal(strlen(u.host), WS_URL_HOST_MAX);
    ws_url_free(&u);
    s[7 + WS_URL_HOST_MAX] = 'h';
    assert_int_equal(ws_url_parse(&u, s, 8 + WS_URL_HOST_MAX, err, sizeof err), -1);
    assert_string_equal(err, "host too long");
}

static void check_authority(const char *url, const char *want)
{
    ws_url_t u;
    char err[128];
    ws_buf_t b;
    ws_buf_init(&b);
    assert_int_equal(ws_url_parse(&u, url, strlen(url), err, sizeof err), 0);
    ws_url_authority(&u, &b);
    ws_buf_append(&b, "", 1);
    assert_string_equal((char *)b.data, want);
    ws_buf_free(&b);
    ws_url_free(&u);
}

static void test_url_authority_is_the_host_header(void **state)
{
    (void)state;
    check_authority("http://Example.com/x", "example.com");
    check_authority("http://h:80/", "h");
    check_authority("http://h:8080/", "h:8080");
    check_authority("https://h:443/", "h");
    check_authority("https://h:80/", "h:80");
    check_authority("http://u:p@h:81/", "h:81"); /* never the credentials */
    check_authority("http://[::1]/", "[::1]");
    check_authority("http://[::1]:8080/", "[::1]:8080");
}

static int same_origin(const char *a, const char *b)
{
    ws_url_t ua, ub;
    char err[128];
    assert_int_equal(ws_url_parse(&ua, a, strlen(a), err, sizeof err), 0);
    assert_int_equal(ws_url_parse(&ub, b, strlen(b), err, sizeof err), 0);
    int r = ws_url_same_origin(&ua, &ub);
    ws_url_free(&ua);
    ws_url_free(&ub);
    return r;
}

static void test_url_same_origin_is_scheme_host_and_port(void **state)
{
    (void)state;
    assert_true(same_origin("http://a/x", "http://A:80/y?z"));
    assert_true(same_origin("http://u:p@a/", "http://a/"));
    assert_false(same_origin("http://a/", "https://a/"));
    assert_false(same_origin("http://a/", "http://b/"));
    assert_false(same_origin("http://a/", "http://a:8080/"));
}

typedef struct {
    const char *base, *ref, *want;
} res_t;

/* RFC 3986 section 5.4 (fragments are dropped: requests never carry them). */
#define B "http://a/b/c/d;p?q"
static const res_t RESOLVE[] = {
    {B, "g:h", "g:h"},
    {B, "g", "http://a/b/c/g"},
    {B, "./g", "http://a/b/c/g"},
    {B, "g/", "http://a/b/c/g/"},
    {B, "/g", "http://a/g"},
    {B, "//g", "http://g"},
    {B, "?y", "http://a/b/c/d;p?y"},
    {B, "g?y", "http://a/b/c/g?y"},
    {B, "#s", "http://a/b/c/d;p?q"},
    {B, "g#s", "http://a/b/c/g"},
    {B, "g?y#s", "http://a/b/c/g?y"},
    {B, ";x", "http://a/b/c/;x"},
    {B, "g;x", "http://a/b/c/g;x"},
    {B, "", "http://a/b/c/d;p?q"},
    {B, ".", "http://a/b/c/"},
    {B, "./", "http://a/b/c/"},
    {B, "..", "http://a/b/"},
    {B, "../", "http://a/b/"},
    {B, "../g", "http://a/b/g"},
    {B, "../..", "http://a/"},
    {B, "../../", "http://a/"},
    {B, "../../g", "http://a/g"},
    {B, "../../../g", "http://a/g"},
    {B, "../../../../g", "http://a/g"},
    {B, "/./g", "http://a/g"},
    {B, "/../g", "http://a/g"},
    {B, "g.", "http://a/b/c/g."},
    {B, ".g", "http://a/b/c/.g"},
    {B, "g..", "http://a/b/c/g.."},
    {B, "..g", "http://a/b/c/..g"},
    {B, "./../g", "http://a/b/g"},
    {B, "./g/.", "http://a/b/c/g/"},
    {B, "g/./h", "http://a/b/c/g/h"},
    {B, "g/../h", "http://a/b/c/h"},
    {B, "g;x=1/./y", "http://a/b/c/g;x=1/y"},
    {B, "g;x=1/../y", "http://a/b/c/y"},
    {B, "g?y/./x", "http://a/b/c/g?y/./x"},
    {B, "g?y/../x", "http://a/b/c/g?y/../x"},
    {B, "http:g", "http:g"}, /* strict: a scheme makes it absolute (then refused by parse) */
    {"http://a", "g", "http://a/g"},
    {"http://a?q", "g", "http://a/g"},
    {"http://a?q", "", "http://a?q"},
    {"http://u:p@a:81/x/y", "/z", "http://u:p@a:81/z"},
    {"https://a/x", "//h:8080/p", "https://h:8080/p"},
    {"http://a/x", "https://b/y", "https://b/y"},
    {"http://a/x", "HTTP://B/Y", "HTTP://B/Y"},
};

static void test_url_resolves_references_as_rfc3986_does(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof RESOLVE / sizeof *RESOLVE; i++) {
        const res_t *r = &RESOLVE[i];
        ws_buf_t out;
        char err[128];
        ws_buf_init(&out);
        assert_int_equal(ws_url_resolve(r->base, strlen(r->base), r->ref, strlen(r->ref), &out, err, sizeof err), 0);
        if (strcmp((char *)out.data, r->want) != 0)
            fail_msg("%s + '%s' = '%s', expected '%s'", r->base, r->ref, (char *)out.data, r->want);
        assert_int_equal(out.len, strlen(r->want));
        ws_buf_free(&out);
    }
}

static void test_url_resolve_refuses_control_characters_and_length(void **state)
{
    (void)state;
    ws_buf_t out;
    char err[128];
    ws_buf_init(&out);
    assert_int_equal(ws_url_resolve(B, strlen(B), "/a\r\nb", 5, &out, err, sizeof err), -1);
    assert_string_equal(err, "space or control character");
    static char big[WS_URL_MAX + 1];
    memset(big, 'a', sizeof big);
    assert_int_equal(ws_url_resolve(B, strlen(B), big, sizeof big, &out, err, sizeof err), -1);
    assert_string_equal(err, "too long (over 8192 bytes)");
    ws_buf_free(&out);
}

typedef struct {
    const char *in;
    const char *net; /* the network address, as inet_ntop writes it */
    int bits, v6;
} cidr_good_t;

static const cidr_good_t CIDR_GOOD[] = {
    {"169.254.0.0/16", "169.254.0.0", 16, 0},
    {"10.1.2.3/8", "10.0.0.0", 8, 0},
    {"192.168.1.255/23", "192.168.0.0", 23, 0},
    {"1.2.3.4", "1.2.3.4", 32, 0},
    {"0.0.0.0/0", "0.0.0.0", 0, 0},
    {"::1", "::1", 128, 1},
    {"fe80::/10", "fe80::", 10, 1},
    {"febf:1::/10", "fe80::", 10, 1},
    {"::ffff:0:0/96", "::ffff:0.0.0.0", 96, 1},
    {"::/0", "::", 0, 1},
};

static const char *const CIDR_BAD[] = {
    "", "/8", "1.2.3.4/", "1.2.3.4/33", "::/129", "1.2.3/8", "abc", "1.2.3.4/8x", "1.2.3.4/-1",
    "1.2.3.4/0008", "1.2.3.4 /8", "[::1]/128",
};

static void test_cidr_parses_ranges_and_refuses_bad_ones(void **state)
{
    (void)state;
    char err[128];
    for (size_t i = 0; i < sizeof CIDR_GOOD / sizeof *CIDR_GOOD; i++) {
        const cidr_good_t *g = &CIDR_GOOD[i];
        ws_cidr_t c;
        if (ws_cidr_parse(&c, g->in, err, sizeof err) != 0)
            fail_msg("%s: %s", g->in, err);
        char net[64];
        inet_ntop(c.v6 ? AF_INET6 : AF_INET, c.addr, net, sizeof net);
        assert_string_equal(net, g->net);
        assert_int_equal(c.bits, g->bits);
        assert_int_equal(c.v6, g->v6);
    }
    for (size_t i = 0; i < sizeof CIDR_BAD / sizeof *CIDR_BAD; i++) {
        ws_cidr_t c;
        err[0] = '\0';
        if (ws_cidr_parse(&c, CIDR_BAD[i], err, sizeof err) == 0)
            fail_msg("accepted: '%s'", CIDR_BAD[i]);
        assert_true(strlen(err) > 0);
    }
}

static int match(const char *cidr, const char *addr)
{
    ws_cidr_t c;
    char err[128];
    assert_int_equal(ws_cidr_parse(&c, cidr, err, sizeof err), 0);
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    if (inet_pton(AF_INET, addr, &((struct sockaddr_in *)&ss)->sin_addr) == 1)
        ss.ss_family = AF_INET;
    else if (inet_pton(AF_INET6, addr, &((struct sockaddr_in6 *)&ss)->sin6_addr) == 1)
        ss.ss_family = AF_INET6;
    else
        fail_msg("bad test address %s", addr);
    return ws_cidr_match(&c, 1, (struct sockaddr *)&ss);
}

typedef struct {
    const char *cidr, *addr;
    int want;
} match_t;

static const match_t MATCH[] = {
    {"169.254.0.0/16", "169.254.1.1", 1},
    {"169.254.0.0/16", "169.254.169.254", 1},
    {"169.254.0.0/16", "169.255.0.1", 0},
    {"169.254.0.0/16", "::ffff:169.254.1.1", 1}, /* IPv4-mapped */
    {"169.254.0.0/16", "::ffff:169.255.1.1", 0},
    {"169.254.0.0/16", "::169.254.1.1", 0},      /* IPv4-compatible is not mapped */
    {"169.254.0.0/16", "::1", 0},
    {"fe80::/10", "fe80::1", 1},
    {"fe80::/10", "febf::1", 1},
    {"fe80::/10", "fec0::1", 0},
    {"fe80::/10", "169.254.1.1", 0},
    {"127.0.0.2/32", "127.0.0.2", 1},
    {"127.0.0.2", "127.0.0.1", 0},
    {"::ffff:0:0/96", "1.2.3.4", 1},             /* and the other way round */
    {"0.0.0.0/0", "8.8.8.8", 1},
    {"0.0.0.0/0", "::ffff:8.8.8.8", 1},
    {"0.0.0.0/0", "::1", 0},
    {"::/0", "::1", 1},
    {"::/0", "::ffff:1.2.3.4", 1},
    {"::/0", "1.2.3.4", 0},                      /* every IPv6 address, not every address */
    {"::ffff:169.254.0.0/112", "169.254.3.4", 1},
    {"::ffff:169.254.0.0/112", "169.253.3.4", 0},
    {"::ffff:0:0/95", "1.2.3.4", 0},
    {"10.1.2.3/8", "10.200.0.1", 1},
    {"192.168.0.0/23", "192.168.1.5", 1},
    {"192.168.0.0/23", "192.168.2.1", 0},
    {"::1", "::1", 1},
    {"::1", "::2", 0},
};

static void test_cidr_matches_addresses(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof MATCH / sizeof *MATCH; i++)
        if (match(MATCH[i].cidr, MATCH[i].addr) != MATCH[i].want)
            fail_msg("%s in %s: expected %d", MATCH[i].addr, MATCH[i].cidr, MATCH[i].want);
}

static void test_cidr_match_of_a_list_and_other_families(void **state)
{
    (void)state;
    ws_cidr_t list[2];
    char err[128];
    assert_int_equal(ws_cidr_parse(&list[0], "10.0.0.0/8", err, sizeof err), 0);
    assert_int_equal(ws_cidr_parse(&list[1], "fd00::/8", err, sizeof err), 0);
    struct sockaddr_in6 a6;
    memset(&a6, 0, sizeof a6);
    a6.sin6_family = AF_INET6;
    inet_pton(AF_INET6, "fd00::5", &a6.sin6_addr);
    assert_true(ws_cidr_match(list, 2, (struct sockaddr *)&a6));
    assert_false(ws_cidr_match(list, 1, (struct sockaddr *)&a6));
    assert_false(ws_cidr_match(NULL, 0, (struct sockaddr *)&a6));
    struct sockaddr other;
    memset(&other, 0, sizeof other);
    other.sa_family = AF_UNIX;
    assert_false(ws_cidr_match(list, 2, &other));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_url_parses_good_urls),
        cmocka_unit_test(test_url_refuses_bad_urls_with_a_reason),
        cmocka_unit_test(test_url_refuses_over_long_urls_and_hosts),
        cmocka_unit_test(test_url_authority_is_the_host_header),
        cmocka_unit_test(test_url_same_origin_is_scheme_host_and_port),
        cmocka_unit_test(test_url_resolves_references_as_rfc3986_does),
        cmocka_unit_test(test_url_resolve_refuses_control_characters_and_length),
        cmocka_unit_test(test_cidr_parses_ranges_and_refuses_bad_ones),
        cmocka_unit_test(test_cidr_matches_addresses),
        cmocka_unit_test(test_cidr_match_of_a_list_and_other_families),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
