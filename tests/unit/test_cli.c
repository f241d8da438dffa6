/* Unit tests for cli.c. Longer than our ~600-line guide on purpose: one table row
 * per option (39), each checked in both forms, against --help and the defaults. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
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

static void test_cli_accepts_several_options_as_separate_values(void **state)
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

static void test_cli_accepts_several_options_with_equals(void **state)
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

static void test_cli_workers_auto_is_zero_and_the_range_is_1_to_128(void **state)
{
    (void)state;
    ws_config_t c;
    char err[128];
    assert_int_equal(PARSE(&c, err, "--workers", "auto", "x.lua"), WS_CLI_RUN);
    assert_int_equal(c.workers, 0);
    assert_int_equal(PARSE(&c, err, "--workers=128", "x.lua"), WS_CLI_RUN);
    assert_int_equal(c.workers, 128);
    assert_int_equal(PARSE(&c, err, "--workers=1", "x.lua"), WS_CLI_RUN);
    assert_int_equal(c.workers, 1);
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
        {{"--workers", "0", "x.lua"}, "invalid value for --workers: '0'"},
        {{"--workers", "129", "x.lua"}, "invalid value for --workers: '129'"},
        {{"--workers", "Auto", "x.lua"}, "invalid value for --workers: 'Auto'"},
        {{"--port", "", "x.lua"}, "invalid value for --port: ''"},
        {{"--busy-poll", "-1", "x.lua"}, "invalid value for --busy-poll: '-1'"},
        {{"--busy-poll", "1000001", "x.lua"}, "invalid value for --busy-poll: '1000001'"},
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

/* --reload asks a running server: it needs no script, and refuses one. */
static void test_cli_reload_needs_no_script_and_refuses_one(void **state)
{
    ws_config_t c;
    char err[128];
    assert_int_equal(PARSE(&c, err, "--reload", "/run/w/c"), WS_CLI_RUN);
    assert_null(c.script);
    assert_string_equal(c.reload, "/run/w/c");
    assert_int_equal(ws_cli_check(&c, err, sizeof err), 0);
    assert_int_equal(PARSE(&c, err, "--reload", "/run/w/c", "x.lua"), WS_CLI_RUN);
    assert_int_equal(ws_cli_check(&c, err, sizeof err), WS_EINVAL);
    assert_string_equal(err, "--reload PATH asks a running server: give no SCRIPT.lua");
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

/* --- every option -------------------------------------------------------------
 *
 * One row per option of `wspush --help`: the field it sets, a valid value that
 * is not the default and what it parses to, and the default (cli.h's contract).
 * The options are enumerated from ws_cli_usage() and must be exactly the rows
 * here: an option added to cli.c without a row fails
 * test_cli_help_lists_exactly_the_options_tested_here. */

typedef enum { K_STR, K_INT, K_SIZE, K_SEC, K_LEVEL, K_CHOICE, K_SWITCH, K_FLAG, K_LIST } opt_kind_t;

typedef struct {
    const char *name;   /* without "--" */
    opt_kind_t kind;
    size_t off, size;   /* the field in ws_config_t (K_FLAG: unused) */
    const char *value;  /* a valid value (K_SWITCH, K_FLAG: none) */
    double want;        /* what value parses to (K_SWITCH: what the switch sets; K_FLAG: the action) */
    double def;         /* the field's default (K_STR: unused) */
    const char *want_s, *def_s; /* K_STR: value and default; K_LIST: value */
    const char *pre;    /* K_SWITCH: an option given first, so the switch changes something */
} opt_case_t;

#define F(f) offsetof(ws_config_t, f), sizeof(((ws_config_t *)0)->f)
#define KIB 1024.0
#define MIB (1024.0 * 1024.0)
#define GIB (1024.0 * 1024.0 * 1024.0)

static const opt_case_t cases[] = {
    {"host", K_STR, F(host), "127.0.0.1", 0, 0, "127.0.0.1", "0.0.0.0", NULL},
    {"port", K_INT, F(port), "9001", 9001, 8000, NULL, NULL, NULL},
    {"log-level", K_LEVEL, F(log_level), "debug", WS_LOG_DEBUG, WS_LOG_INFO, NULL, NULL, NULL},
    {"log-format", K_CHOICE, F(log_format), "json", 1, 0, NULL, NULL, NULL},
    {"access-log", K_STR, F(access_log), "/var/log/wspush/access.log", 0, 0,
     "/var/log/wspush/access.log", NULL, NULL},
    {"max-message", K_SIZE, F(max_message), "2m", 2 * MIB, 16 * MIB, NULL, NULL, NULL},
    {"max-header", K_SIZE, F(max_header), "8k", 8 * KIB, 16 * KIB, NULL, NULL, NULL},
    {"max-body", K_SIZE, F(max_body), "123", 123, 1 * MIB, NULL, NULL, NULL},
    {"close-timeout", K_SEC, F(close_timeout), "2.5", 2.5, 5, NULL, NULL, NULL},
    {"no-watch", K_SWITCH, F(no_watch), NULL, 1, 0, NULL, NULL, NULL},
    {"workers", K_INT, F(workers), "4", 4, 1, NULL, NULL, NULL},
    {"check", K_SWITCH, F(check), NULL, 1, 0, NULL, NULL, NULL},
    {"control-socket", K_STR, F(control_socket), "/run/w/c", 0, 0, "/run/w/c", NULL, NULL},
    {"reload", K_STR, F(reload), "/run/w/c", 0, 0, "/run/w/c", NULL, NULL},
    {"ping-interval", K_SEC, F(ping_interval), "7.5", 7.5, 25, NULL, NULL, NULL},
    {"ping-timeout", K_SEC, F(ping_timeout), "3", 3, 10, NULL, NULL, NULL},
    {"idle-timeout", K_SEC, F(idle_timeout), "60", 60, 0, NULL, NULL, NULL},
    {"handshake-timeout", K_SEC, F(handshake_timeout), "1.5", 1.5, 10, NULL, NULL, NULL},
    {"keepalive-timeout", K_SEC, F(keepalive_timeout), "45", 45, 30, NULL, NULL, NULL},
    {"max-connections", K_INT, F(max_connections), "500", 500, 100000, NULL, NULL, NULL},
    {"max-per-ip", K_INT, F(max_per_ip), "7", 7, 0, NULL, NULL, NULL},
    {"max-tcp-per-ip", K_INT, F(max_tcp_per_ip), "9", 9, 0, NULL, NULL, NULL},
    {"accept-rate", K_INT, F(accept_rate), "11", 11, 0, NULL, NULL, NULL},
    {"max-requests-per-conn", K_INT, F(max_requests_per_conn), "12", 12, 1000, NULL, NULL, NULL},
    {"max-buffered", K_SIZE, F(max_buffered), "64k", 64 * KIB, 256 * KIB, NULL, NULL, NULL},
    {"max-memory", K_SIZE, F(max_memory), "3g", 3 * GIB, 2 * GIB, NULL, NULL, NULL},
    {"send-timeout", K_SEC, F(send_timeout), "12.5", 12.5, 30, NULL, NULL, NULL},
    {"backpressure", K_CHOICE, F(backpressure), "drop-oldest", WS_BP_DROP_OLDEST, WS_BP_CLOSE,
     NULL, NULL, NULL},
    {"rate-limit", K_SEC, F(rate_limit), "100", 100, 0, NULL, NULL, NULL},
    {"rate-burst", K_SEC, F(rate_burst), "20", 20, 50, NULL, NULL, NULL},
    {"compression", K_SWITCH, F(compression), NULL, 1, 1, NULL, NULL, "--no-compression"},
    {"no-compression", K_SWITCH, F(compression), NULL, 0, 1, NULL, NULL, NULL},
    {"compression-level", K_INT, F(compression_level), "9", 9, 6, NULL, NULL, NULL},
    {"compression-threshold", K_SIZE, F(compression_threshold), "4k", 4 * KIB, 1 * KIB, NULL, NULL,
     NULL},
    {"compression-window", K_INT, F(compression_window), "10", 10, 15, NULL, NULL, NULL},
    {"compression-memlevel", K_INT, F(compression_memlevel), "5", 5, 8, NULL, NULL, NULL},
    {"compression-context", K_SWITCH, F(compression_context), NULL, 1, 0, NULL, NULL, NULL},
    {"compression-max-memory", K_SIZE, F(compression_max_memory), "64m", 64 * MIB, 256 * MIB,
     NULL, NULL, NULL},
    {"io-uring", K_SWITCH, F(io_uring), NULL, 1, 1, NULL, NULL, "--no-io-uring"},
    {"no-io-uring", K_SWITCH, F(io_uring), NULL, 0, 1, NULL, NULL, NULL},
    {"busy-poll", K_INT, F(busy_poll), "50", 50, 0, NULL, NULL, NULL},
    {"lua-timeout", K_SEC, F(lua_timeout), "0.25", 0.25, 5, NULL, NULL, NULL},
    {"lua-max-memory", K_SIZE, F(lua_max_memory), "128m", 128 * MIB, 512 * MIB, NULL, NULL, NULL},
    {"shutdown-timeout", K_SEC, F(shutdown_timeout), "20", 20, 10, NULL, NULL, NULL},
    {"upgrade-timeout", K_SEC, F(upgrade_timeout), "2.5", 2.5, 5, NULL, NULL, NULL},
    {"max-outbound", K_INT, F(max_outbound), "64", 64, 256, NULL, NULL, NULL},
    {"fetch-allow", K_LIST, F(fetch_allow), "169.254.169.254/32", 0, 0, "169.254.169.254/32", NULL,
     NULL},
    {"fetch-deny", K_LIST, F(fetch_deny), "10.0.0.0/8", 0, 0, "10.0.0.0/8", NULL, NULL},
    {"trusted-proxy", K_LIST, F(trusted_proxy), "::1", 0, 0, "::1", NULL, NULL},
    {"tls-cert", K_STR, F(tls_cert), "c.pem", 0, 0, "c.pem", NULL, NULL},
    {"broker", K_STR, F(broker), "redis://r:6379", 0, 0, "redis://r:6379", NULL, NULL},
    {"broker-file", K_STR, F(broker_file), "/etc/b", 0, 0, "/etc/b", NULL, NULL},
    {"broker-prefix", K_STR, F(broker_prefix), "app1:", 0, 0, "app1:", "wspush:", NULL},
    {"tls-key", K_STR, F(tls_key), "k.pem", 0, 0, "k.pem", NULL, NULL},
    {"tls-min-version", K_CHOICE, F(tls_min_version), "1.3", 1, 0, NULL, NULL, NULL},
    {"tls-ciphers", K_STR, F(tls_ciphers), "ECDHE+AESGCM", 0, 0, "ECDHE+AESGCM", NULL, NULL},
    {"tls-ciphersuites", K_STR, F(tls_ciphersuites), "TLS_AES_128_GCM_SHA256", 0, 0,
     "TLS_AES_128_GCM_SHA256", NULL, NULL},
    {"help", K_FLAG, 0, 0, NULL, WS_CLI_HELP, 0, NULL, NULL, NULL},
    {"version", K_FLAG, 0, 0, NULL, WS_CLI_VERSION, 0, NULL, NULL, NULL},
};
#define NCASES (sizeof cases / sizeof cases[0])

static size_t kind_size(opt_kind_t k)
{
    switch (k) {
    case K_STR: return sizeof(const char *);
    case K_LIST: return sizeof(ws_cli_list_t);
    case K_SIZE: return sizeof(size_t);
    case K_SEC: return sizeof(double);
    case K_LEVEL: return sizeof(ws_log_level_t);
    default: return sizeof(int);
    }
}

/* A numeric field's value, read as the row's kind says. */
static double field_num(const ws_config_t *c, const opt_case_t *o)
{
    const char *p = (const char *)c + o->off;
    assert_int_equal(o->size, kind_size(o->kind)); /* the row names a field of its kind */
    switch (o->kind) {
    case K_SIZE: return (double)*(const size_t *)p;
    case K_SEC: return *(const double *)p;
    case K_LEVEL: return (double)*(const ws_log_level_t *)p;
    case K_INT:
    case K_CHOICE:
    case K_SWITCH: return (double)*(const int *)p;
    default: fail_msg("--%s: not a numeric option", o->name);
    }
    return 0;
}

/* Everything but the row's field is as ws_cli_defaults() leaves it: an option
 * sets its own field and no other. */
static void assert_only_field_changed(const ws_config_t *c, const opt_case_t *o)
{
    ws_config_t want;
    ws_cli_defaults(&want);
    want.script = c->script;
    memcpy((char *)&want + o->off, (const char *)c + o->off, o->size);
    if (memcmp(&want, c, sizeof want) != 0)
        fail_msg("--%s changed a field other than its own", o->name);
}

static const opt_case_t *find_case(const char *name, size_t len)
{
    for (size_t i = 0; i < NCASES; i++)
        if (strlen(cases[i].name) == len && memcmp(cases[i].name, name, len) == 0)
            return &cases[i];
    return NULL;
}

/* The options of ws_cli_usage(): each "--name" with the text of its entry
 * (up to the next option line, where a long option's help continues). */
typedef struct {
    char name[64];
    const char *entry, *end; /* the entry's text in the usage */
} usage_opt_t;

static size_t usage_options(usage_opt_t *out, size_t max)
{
    const char *u = ws_cli_usage();
    const char *p = strstr(u, "\noptions:\n");
    assert_non_null(p);
    p += strlen("\noptions:\n");
    size_t n = 0;
    while (*p) {
        const char *eol = strchr(p, '\n');
        if (!eol)
            eol = p + strlen(p);
        /* An option line is indented by 2 ("-h, --help") or 6 ("    --host");
         * a continued help text by the width of the option column. */
        size_t ind = strspn(p, " ");
        if ((ind == 2 || ind == 6) && p[ind] == '-') {
            const char *dd = strstr(p, "--");
            assert_true(dd && dd < eol);
            size_t len = strspn(dd + 2, "abcdefghijklmnopqrstuvwxyz0123456789-");
            assert_true(n < max && len > 0 && len < sizeof out[n].name);
            memcpy(out[n].name, dd + 2, len);
            out[n].name[len] = '\0';
            out[n].entry = p;
            if (n > 0)
                out[n - 1].end = p;
            n++;
        } else {
            assert_true(n > 0 && ind > 6); /* nothing else in the list */
        }
        p = *eol ? eol + 1 : eol;
    }
    if (n > 0)
        out[n - 1].end = p;
    return n;
}

/* The "(default X)" of an entry into buf; 0 when it has none. */
static int usage_default(const usage_opt_t *e, char *buf, size_t len)
{
    const char *d = strstr(e->entry, "(default ");
    if (!d || d >= e->end)
        return 0;
    d += strlen("(default ");
    const char *close = strchr(d, ')');
    assert_true(close && close < e->end && (size_t)(close - d) < len);
    memcpy(buf, d, (size_t)(close - d));
    buf[close - d] = '\0';
    return 1;
}

static void test_cli_help_lists_exactly_the_options_tested_here(void **state)
{
    (void)state;
    usage_opt_t u[128];
    size_t n = usage_options(u, 128);
    for (size_t i = 0; i < n; i++) {
        if (!find_case(u[i].name, strlen(u[i].name)))
            fail_msg("--help lists --%s, which has no row in this test's cases[]", u[i].name);
        for (size_t j = 0; j < i; j++)
            if (strcmp(u[i].name, u[j].name) == 0)
                fail_msg("--help lists --%s twice", u[i].name);
    }
    for (size_t i = 0; i < NCASES; i++) {
        size_t j = 0;
        while (j < n && strcmp(u[j].name, cases[i].name) != 0)
            j++;
        if (j == n)
            fail_msg("--%s has a row here but is not in --help", cases[i].name);
        /* a valued option shows its value's metavar, a switch none */
        const char *after = u[j].entry + strspn(u[j].entry, " ");
        after = strstr(after, cases[i].name) + strlen(cases[i].name);
        int has_metavar = after[0] == ' ' && after[1] != ' ' && after[1] != '\n';
        if (has_metavar != (cases[i].value != NULL))
            fail_msg("--%s: metavar in --help %s, but the option %s a value", cases[i].name,
                     has_metavar ? "shown" : "missing", cases[i].value ? "takes" : "takes no");
    }
    assert_int_equal(n, NCASES);
}

static void test_cli_accepts_every_option_in_both_forms(void **state)
{
    (void)state;
    for (size_t i = 0; i < NCASES; i++) {
        const opt_case_t *o = &cases[i];
        char opt[80], eq[160], err[128];
        ws_config_t c;
        snprintf(opt, sizeof opt, "--%s", o->name);
        if (o->kind == K_FLAG) {
            if (PARSE(&c, err, opt) != (int)o->want)
                fail_msg("%s did not return its action", opt);
            snprintf(eq, sizeof eq, "--%s=1", o->name);
            assert_int_equal(PARSE(&c, err, eq), WS_EINVAL);
            continue;
        }
        if (o->kind == K_SWITCH) {
            int r = o->pre ? PARSE(&c, err, o->pre, opt, "x.lua") : PARSE(&c, err, opt, "x.lua");
            if (r != WS_CLI_RUN)
                fail_msg("%s: %s", opt, err);
            if (field_num(&c, o) != o->want)
                fail_msg("%s set %g, want %g", opt, field_num(&c, o), o->want);
            /* without the switch (after its pre), the field differs: the test means something */
            assert_int_equal(o->pre ? PARSE(&c, err, o->pre, "x.lua") : PARSE(&c, err, "x.lua"),
                             WS_CLI_RUN);
            if (field_num(&c, o) == o->want)
                fail_msg("%s: the field is %g without it already", opt, o->want);
            if (!o->pre) {
                assert_int_equal(PARSE(&c, err, opt, "x.lua"), WS_CLI_RUN);
                assert_only_field_changed(&c, o);
            }
            snprintf(eq, sizeof eq, "--%s=1", o->name);
            assert_int_equal(PARSE(&c, err, eq, "x.lua"), WS_EINVAL);
            char want_err[128];
            snprintf(want_err, sizeof want_err, "option '--%s' takes no value", o->name);
            assert_string_equal(err, want_err);
            continue;
        }
        /* "--opt VALUE" and "--opt=VALUE", before and after the script */
        snprintf(eq, sizeof eq, "--%s=%s", o->name, o->value);
        for (int form = 0; form < 2; form++) {
            int r = form == 0 ? PARSE(&c, err, opt, o->value, "x.lua") : PARSE(&c, err, "x.lua", eq);
            if (r != WS_CLI_RUN)
                fail_msg("%s %s: %s", opt, o->value, err);
            assert_string_equal(c.script, "x.lua");
            if (o->kind == K_STR) {
                assert_string_equal(*(const char *const *)((const char *)&c + o->off), o->want_s);
                if (o->def_s) /* an optional string has none */
                    assert_string_not_equal(o->want_s, o->def_s);
            } else if (o->kind == K_LIST) {
                const ws_cli_list_t *l = (const ws_cli_list_t *)((const char *)&c + o->off);
                assert_int_equal(l->n, 1);
                assert_string_equal(l->v[0], o->want_s);
            } else {
                if (field_num(&c, o) != o->want)
                    fail_msg("%s %s (form %d) set %.17g, want %.17g", opt, o->value, form,
                             field_num(&c, o), o->want);
                if (o->want == o->def)
                    fail_msg("%s: the test value is the default", opt);
            }
            assert_only_field_changed(&c, o);
        }
        if (o->kind == K_LIST) {
            /* given again, it adds to the list instead of replacing it */
            assert_int_equal(PARSE(&c, err, opt, o->value, eq, "x.lua"), WS_CLI_RUN);
            const ws_cli_list_t *l = (const ws_cli_list_t *)((const char *)&c + o->off);
            assert_int_equal(l->n, 2);
            assert_string_equal(l->v[1], o->want_s);
        }
        /* and the option without its value */
        assert_int_equal(PARSE(&c, err, "x.lua", opt), WS_EINVAL);
    }
}

static void test_cli_every_default_is_the_contract_and_what_help_prints(void **state)
{
    (void)state;
    usage_opt_t u[128];
    size_t n = usage_options(u, 128);
    ws_config_t d;
    memset(&d, 0xAB, sizeof d);
    ws_cli_defaults(&d);
    for (size_t i = 0; i < n; i++) {
        const opt_case_t *o = find_case(u[i].name, strlen(u[i].name));
        assert_non_null(o);
        char shown[64], opt[80], err[128];
        int has = usage_default(&u[i], shown, sizeof shown);
        snprintf(opt, sizeof opt, "--%s", o->name);
        if (o->kind == K_FLAG) {
            if (has)
                fail_msg("%s shows a default", opt);
            continue;
        }
        if (o->kind == K_LIST) {
            /* empty unless given: nothing to show */
            if (has)
                fail_msg("%s shows a default", opt);
            assert_int_equal(((const ws_cli_list_t *)((const char *)&d + o->off))->n, 0);
            continue;
        }
        if (o->kind == K_SWITCH) {
            /* "(default on)" exactly when the switch's setting is the default */
            if (has)
                assert_string_equal(shown, "on");
            if (has != (field_num(&d, o) == o->want))
                fail_msg("%s: default %g, help %s", opt, field_num(&d, o),
                         has ? "says it is on" : "shows no default");
            if (field_num(&d, o) != o->def)
                fail_msg("%s: default %g, want %g", opt, field_num(&d, o), o->def);
            continue;
        }
        if (o->kind == K_STR && !o->def_s) {
            /* optional (a file to use, a list to replace ours): unset unless given */
            if (has)
                fail_msg("%s shows a default", opt);
            assert_null(*(const char *const *)((const char *)&d + o->off));
            continue;
        }
        if (!has)
            fail_msg("%s takes a value but --help shows no default", opt);
        /* the default the parser gives the text --help shows is ws_cli_defaults()'s */
        ws_config_t c;
        if (PARSE(&c, err, opt, shown, "x.lua") != WS_CLI_RUN)
            fail_msg("%s %s (its shown default): %s", opt, shown, err);
        if (o->kind == K_STR) {
            const char *got = *(const char *const *)((const char *)&d + o->off);
            assert_string_equal(got, shown);
            assert_string_equal(got, o->def_s);
            continue;
        }
        if (field_num(&c, o) != field_num(&d, o))
            fail_msg("%s: --help shows %s = %.17g, ws_cli_defaults() sets %.17g", opt, shown,
                     field_num(&c, o), field_num(&d, o));
        if (field_num(&d, o) != o->def)
            fail_msg("%s: default %.17g, the contract (cli.h) says %.17g", opt, field_num(&d, o),
                     o->def);
    }
    assert_null(d.script);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cli_defaults_match_contract),
        cmocka_unit_test(test_cli_parses_script_alone_with_defaults),
        cmocka_unit_test(test_cli_accepts_several_options_as_separate_values),
        cmocka_unit_test(test_cli_accepts_several_options_with_equals),
        cmocka_unit_test(test_cli_workers_auto_is_zero_and_the_range_is_1_to_128),
        cmocka_unit_test(test_cli_reload_needs_no_script_and_refuses_one),
        cmocka_unit_test(test_cli_help_lists_exactly_the_options_tested_here),
        cmocka_unit_test(test_cli_accepts_every_option_in_both_forms),
        cmocka_unit_test(test_cli_every_default_is_the_contract_and_what_help_prints),
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
