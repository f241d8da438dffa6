/* Unit tests for cli.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "cli.h"
#include "error.h"

#define MAXARGS 16

/* Runs ws_cli_parse on a NULL-terminated argument list (program name implied). */
static int parse_args(ws_config_t *cfg, char *err, size_t errlen, const char *const *args)
{
    char *argv[MAXARGS + 1];
    int argc = 0;
    argv[argc++] = "wspush";
    for (; args[argc - 1]; argc++) {
        assert_true(argc < MAXARGS);
        argv[argc] = (char *)args[argc - 1];
    }
    argv[argc] = NULL;
    return ws_cli_parse(argc, argv, cfg, err, errlen);
}

#define PARSE(cfg, err, ...)                                                                       \
    parse_args((cfg), (err), sizeof(err), (const char *const[]){__VA_ARGS__, NULL})

static void test_cli_defaults_match_contract(void **state)
{
    ws_config_t c;
    memset(&c, 0xAB, sizeof c);
    ws_cli_defaults(&c);
    assert_string_equal(c.host, "0.0.0.0");
    assert_int_equal(c.port, 8000);
    assert_null(c.script);
    assert_int_equal(c.log_level, WS_LOG_INFO);
    assert_int_equal(c.max_message, 16u << 20);
    assert_int_equal(c.max_header, 16u << 10);
    assert_int_equal(c.max_body, 1u << 20);
    assert_true(c.close_timeout == 5.0);
}

static void test_cli_parses_script_alone_with_defaults(void **state)
{
    ws_config_t c;
    char err[128];
    assert_int_equal(PARSE(&c, err, "app.lua"), WS_CLI_RUN);
    assert_string_equal(c.script, "app.lua");
    assert_string_equal(c.host, "0.0.0.0");
    assert_int_equal(c.port, 8000);
    assert_int_equal(c.log_level, WS_LOG_INFO);
    assert_int_equal(c.max_message, 16u << 20);
    assert_string_equal(err, "");
}

static void test_cli_accepts_every_option_as_separate_value(void **state)
{
    ws_config_t c;
    char err[128];
    int r = PARSE(&c, err, "--host", "127.0.0.1", "--port", "9001", "--log-level", "debug",
                  "--max-message", "2m", "--max-header", "8k", "--max-body", "123",
                  "--close-timeout", "2.5", "app.lua");
    assert_int_equal(r, WS_CLI_RUN);
    assert_string_equal(c.host, "127.0.0.1");
    assert_int_equal(c.port, 9001);
    assert_int_equal(c.log_level, WS_LOG_DEBUG);
    assert_int_equal(c.max_message, 2u << 20);
    assert_int_equal(c.max_header, 8u << 10);
    assert_int_equal(c.max_body, 123);
    assert_true(c.close_timeout == 2.5);
    assert_string_equal(c.script, "app.lua");
}

static void test_cli_accepts_every_option_with_equals(void **state)
{
    ws_config_t c;
    char err[128];
    int r = PARSE(&c, err, "app.lua", "--host=::1", "--port=0", "--log-level=error",
                  "--max-message=1G", "--max-header=1K", "--max-body=0", "--close-timeout=3600");
    assert_int_equal(r, WS_CLI_RUN);
    assert_string_equal(c.host, "::1");
    assert_int_equal(c.port, 0);
    assert_int_equal(c.log_level, WS_LOG_ERROR);
    assert_int_equal(c.max_message, (size_t)1 << 30);
    assert_int_equal(c.max_header, 1024);
    assert_int_equal(c.max_body, 0);
    assert_true(c.close_timeout == 3600.0);
    assert_string_equal(c.script, "app.lua");
}

static void test_cli_value_may_contain_equals_and_start_with_dash(void **state)
{
    ws_config_t c;
    char err[128];
    assert_int_equal(PARSE(&c, err, "--host=a=b", "app.lua"), WS_CLI_RUN);
    assert_string_equal(c.host, "a=b");
    assert_int_equal(PARSE(&c, err, "--host", "-weird", "app.lua"), WS_CLI_RUN);
    assert_string_equal(c.host, "-weird");
}

static void test_cli_parses_each_log_level(void **state)
{
    static const struct {
        const char *name;
        ws_log_level_t level;
    } v[] = {{"error", WS_LOG_ERROR},
             {"warn", WS_LOG_WARN},
             {"info", WS_LOG_INFO},
             {"debug", WS_LOG_DEBUG}};
    ws_config_t c;
    char err[128];
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        assert_int_equal(PARSE(&c, err, "--log-level", v[i].name, "x.lua"), WS_CLI_RUN);
        assert_int_equal(c.log_level, v[i].level);
    }
}

static void test_cli_parses_size_suffixes(void **state)
{
    static const struct {
        const char *in;
        size_t want;
    } v[] = {
        {"0", 0},         {"1", 1},         {"1024", 1024},          {"1k", 1024}, {"1K", 1024},
        {"3m", 3u << 20}, {"3M", 3u << 20}, {"2g", (size_t)2 << 30}, {"0k", 0},    {"007", 7},
    };
    ws_config_t c;
    char err[128];
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        assert_int_equal(PARSE(&c, err, "--max-body", v[i].in, "x.lua"), WS_CLI_RUN);
        assert_int_equal(c.max_body, v[i].want);
    }
}

static void test_cli_accepts_port_bounds(void **state)
{
    ws_config_t c;
    char err[128];
    assert_int_equal(PARSE(&c, err, "--port", "0", "x.lua"), WS_CLI_RUN);
    assert_int_equal(c.port, 0);
    assert_int_equal(PARSE(&c, err, "--port", "65535", "x.lua"), WS_CLI_RUN);
    assert_int_equal(c.port, 65535);
}

static void test_cli_later_option_wins(void **state)
{
    ws_config_t c;
    char err[128];
    assert_int_equal(PARSE(&c, err, "--port", "1", "--port=2", "x.lua"), WS_CLI_RUN);
    assert_int_equal(c.port, 2);
}

static void test_cli_returns_help_and_version(void **state)
{
    ws_config_t c;
    char err[128];
    assert_int_equal(PARSE(&c, err, "-h"), WS_CLI_HELP);
    assert_int_equal(PARSE(&c, err, "--help"), WS_CLI_HELP);
    assert_int_equal(PARSE(&c, err, "-V"), WS_CLI_VERSION);
    assert_int_equal(PARSE(&c, err, "--version"), WS_CLI_VERSION);
    /* No script is needed, and later arguments are not looked at. */
    assert_int_equal(PARSE(&c, err, "app.lua", "--help", "--bogus"), WS_CLI_HELP);
}

static void test_cli_double_dash_ends_options(void **state)
{
    ws_config_t c;
    char err[128];
    assert_int_equal(PARSE(&c, err, "--port", "1", "--", "--odd-name.lua"), WS_CLI_RUN);
    assert_string_equal(c.script, "--odd-name.lua");
    assert_int_equal(c.port, 1);
    assert_int_equal(PARSE(&c, err, "--", "-h"), WS_CLI_RUN);
    assert_string_equal(c.script, "-h");
    /* A lone dash is an argument (by convention, stdin), not an option. */
    assert_int_equal(PARSE(&c, err, "-"), WS_CLI_RUN);
    assert_string_equal(c.script, "-");
}

static void test_cli_reports_each_error(void **state)
{
    static const struct {
        const char *args[6];
        const char *msg;
    } v[] = {
        {{"--frobnicate", "x.lua"}, "unknown option '--frobnicate'"},
        {{"--frobnicate=1", "x.lua"}, "unknown option '--frobnicate'"},
        {{"-x", "x.lua"}, "unknown option '-x'"},
        {{"-hV"}, "unknown option '-hV'"},
        {{"--Port", "1", "x.lua"}, "unknown option '--Port'"},
        {{"--por", "1", "x.lua"}, "unknown option '--por'"},
        {{"x.lua", "--port"}, "option '--port' needs a value"},
        {{"x.lua", "--host"}, "option '--host' needs a value"},
        {{"x.lua", "--max-message"}, "option '--max-message' needs a value"},
        {{"--help=1"}, "option '--help' takes no value"},
        {{"--port", "abc", "x.lua"}, "invalid value for --port: 'abc'"},
        {{"--port", "", "x.lua"}, "invalid value for --port: ''"},
        {{"--port=", "x.lua"}, "invalid value for --port: ''"},
        {{"--port", "-1", "x.lua"}, "invalid value for --port: '-1'"},
        {{"--port", "+80", "x.lua"}, "invalid value for --port: '+80'"},
        {{"--port", "65536", "x.lua"}, "invalid value for --port: '65536'"},
        {{"--port", "99999999999999999999", "x.lua"},
         "invalid value for --port: '99999999999999999999'"},
        {{"--port", " 80", "x.lua"}, "invalid value for --port: ' 80'"},
        {{"--port", "80x", "x.lua"}, "invalid value for --port: '80x'"},
        {{"--host=", "x.lua"}, "invalid value for --host: ''"},
        {{"--log-level", "loud", "x.lua"}, "invalid value for --log-level: 'loud'"},
        {{"--log-level", "DEBUGX", "x.lua"}, "invalid value for --log-level: 'DEBUGX'"},
        {{"--max-message", "0", "x.lua"}, "invalid value for --max-message: '0'"},
        {{"--max-message", "-1", "x.lua"}, "invalid value for --max-message: '-1'"},
        {{"--max-message", "1t", "x.lua"}, "invalid value for --max-message: '1t'"},
        {{"--max-message", "1kb", "x.lua"}, "invalid value for --max-message: '1kb'"},
        {{"--max-message", "k", "x.lua"}, "invalid value for --max-message: 'k'"},
        {{"--max-message", "1.5m", "x.lua"}, "invalid value for --max-message: '1.5m'"},
        {{"--max-message", "0x10", "x.lua"}, "invalid value for --max-message: '0x10'"},
        {{"--max-header", "18446744073709551616", "x.lua"},
         "invalid value for --max-header: '18446744073709551616'"},
        {{"--max-body", "17179869184g", "x.lua"}, "invalid value for --max-body: '17179869184g'"},
        {{"--max-body", "", "x.lua"}, "invalid value for --max-body: ''"},
        {{"--close-timeout", "0", "x.lua"}, "invalid value for --close-timeout: '0'"},
        {{"--close-timeout", "0.0", "x.lua"}, "invalid value for --close-timeout: '0.0'"},
        {{"--close-timeout", "-1", "x.lua"}, "invalid value for --close-timeout: '-1'"},
        {{"--close-timeout", "3600.5", "x.lua"}, "invalid value for --close-timeout: '3600.5'"},
        {{"--close-timeout", "1e3", "x.lua"}, "invalid value for --close-timeout: '1e3'"},
        {{"--close-timeout", "inf", "x.lua"}, "invalid value for --close-timeout: 'inf'"},
        {{"--close-timeout", "nan", "x.lua"}, "invalid value for --close-timeout: 'nan'"},
        {{"--close-timeout", ".", "x.lua"}, "invalid value for --close-timeout: '.'"},
        {{"--close-timeout", "0x1", "x.lua"}, "invalid value for --close-timeout: '0x1'"},
        {{"--port", "1"}, "missing SCRIPT.lua argument"},
        {{"--"}, "missing SCRIPT.lua argument"},
        {{"a.lua", "b.lua"}, "unexpected extra argument 'b.lua'"},
        {{"a.lua", "--", "b.lua"}, "unexpected extra argument 'b.lua'"},
    };
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        ws_config_t c;
        char err[128];
        int r = parse_args(&c, err, sizeof err, v[i].args);
        if (r != WS_EINVAL)
            fail_msg("case %zu (%s): returned %d", i, v[i].msg, r);
        assert_string_equal(err, v[i].msg);
        assert_null(strchr(err, '\n'));
    }
    /* Zero args at all. */
    ws_config_t c;
    char err[128];
    char *argv[] = {"wspush", NULL};
    assert_int_equal(ws_cli_parse(1, argv, &c, err, sizeof err), WS_EINVAL);
    assert_string_equal(err, "missing SCRIPT.lua argument");
}

static void test_cli_accepts_fractional_and_whole_close_timeouts(void **state)
{
    ws_config_t c;
    char err[128];
    assert_int_equal(PARSE(&c, err, "--close-timeout", "0.001", "x.lua"), WS_CLI_RUN);
    assert_true(c.close_timeout > 0.0009 && c.close_timeout < 0.0011);
    assert_int_equal(PARSE(&c, err, "--close-timeout", ".5", "x.lua"), WS_CLI_RUN);
    assert_true(c.close_timeout == 0.5);
    assert_int_equal(PARSE(&c, err, "--close-timeout", "10.", "x.lua"), WS_CLI_RUN);
    assert_true(c.close_timeout == 10.0);
}

static void test_cli_truncates_error_into_small_buffer(void **state)
{
    ws_config_t c;
    char err[8];
    assert_int_equal(PARSE(&c, err, "--frobnicate"), WS_EINVAL);
    assert_string_equal(err, "unknown");
    /* A NULL buffer is allowed when the caller only wants the status. */
    char *argv[] = {"wspush", "--frobnicate", NULL};
    assert_int_equal(ws_cli_parse(2, argv, &c, NULL, 0), WS_EINVAL);
}

static void test_cli_usage_lists_every_option_with_default(void **state)
{
    const char *u = ws_cli_usage();
    assert_non_null(u);
    assert_int_equal(strncmp(u, "usage: wspush [options] SCRIPT.lua\n", 35), 0);
    static const char *want[] = {
        "--host ADDR",
        "(default 0.0.0.0)",
        "--port N",
        "(default 8000)",
        "--log-level",
        "(default info)",
        "--max-message BYTES",
        "(default 16m)",
        "--max-header BYTES",
        "(default 16k)",
        "--max-body BYTES",
        "(default 1m)",
        "--close-timeout SECONDS",
        "(default 5)",
        "-h, --help",
        "-V, --version",
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        if (!strstr(u, want[i]))
            fail_msg("usage lacks \"%s\":\n%s", want[i], u);
    assert_int_equal(u[strlen(u) - 1], '\n');
    assert_ptr_equal(ws_cli_usage(), u);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cli_defaults_match_contract),
        cmocka_unit_test(test_cli_parses_script_alone_with_defaults),
        cmocka_unit_test(test_cli_accepts_every_option_as_separate_value),
        cmocka_unit_test(test_cli_accepts_every_option_with_equals),
        cmocka_unit_test(test_cli_value_may_contain_equals_and_start_with_dash),
        cmocka_unit_test(test_cli_parses_each_log_level),
        cmocka_unit_test(test_cli_parses_size_suffixes),
        cmocka_unit_test(test_cli_accepts_port_bounds),
        cmocka_unit_test(test_cli_later_option_wins),
        cmocka_unit_test(test_cli_returns_help_and_version),
        cmocka_unit_test(test_cli_double_dash_ends_options),
        cmocka_unit_test(test_cli_reports_each_error),
        cmocka_unit_test(test_cli_accepts_fractional_and_whole_close_timeouts),
        cmocka_unit_test(test_cli_truncates_error_into_small_buffer),
        cmocka_unit_test(test_cli_usage_lists_every_option_with_default),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
