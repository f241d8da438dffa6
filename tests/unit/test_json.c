/* JSON strings for the log: any bytes in, one valid JSON string out. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "json.h"

static char got[256];

static const char *quote(const char *s, size_t n)
{
    ws_buf_t b;
    ws_buf_init(&b);
    ws_json_quote(&b, s, n);
    assert_true(b.len < sizeof got);
    memcpy(got, b.data, b.len);
    got[b.len] = '\0';
    ws_buf_free(&b);
    return got;
}

#define Q(lit) quote(lit, sizeof lit - 1)

static void test_json_plain_text_as_is(void **state)
{
    (void)state;
    assert_string_equal(Q(""), "\"\"");
    assert_string_equal(Q("/index?a=1&b=2"), "\"/index?a=1&b=2\"");
}

static void test_json_quotes_backslashes_and_controls_escaped(void **state)
{
    (void)state;
    assert_string_equal(Q("say \"hi\" \\o/"), "\"say \\\"hi\\\" \\\\o/\"");
    /* a client cannot end the line and forge another record */
    assert_string_equal(Q("a\r\n2026 [info] forged"), "\"a\\r\\n2026 [info] forged\"");
    assert_string_equal(Q("\t\x01\x1f\x7f"), "\"\\t\\u0001\\u001f\\u007f\"");
    assert_string_equal(quote("a\0b", 3), "\"a\\u0000b\"");
}

static void test_json_valid_utf8_kept(void **state)
{
    (void)state;
    assert_string_equal(Q("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"),
                        "\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"");
}

static void test_json_invalid_utf8_replaced_byte_by_byte(void **state)
{
    (void)state;
    /* a lone continuation byte, a cut sequence at the end, an overlong
     * encoding of '/', a surrogate: U+FFFD for every bad byte */
    assert_string_equal(Q("a\x80z"), "\"a\xef\xbf\xbdz\"");
    assert_string_equal(Q("x\xe2\x82"), "\"x\xef\xbf\xbd\xef\xbf\xbd\"");
    assert_string_equal(Q("\xc0\xaf"), "\"\xef\xbf\xbd\xef\xbf\xbd\"");
    assert_string_equal(Q("\xed\xa0\x80"), "\"\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\"");
    assert_string_equal(Q("\xff"), "\"\xef\xbf\xbd\"");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_json_plain_text_as_is),
        cmocka_unit_test(test_json_quotes_backslashes_and_controls_escaped),
        cmocka_unit_test(test_json_valid_utf8_kept),
        cmocka_unit_test(test_json_invalid_utf8_replaced_byte_by_byte),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
