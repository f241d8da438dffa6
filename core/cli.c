#include "cli.h"

#include "error.h"

#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

typedef enum {
    OPT_FLAG,   /* ends parsing with an action (--help) */
    OPT_SWITCH, /* sets an int field to (int)min, takes no value */
    OPT_STRING,
    OPT_INT,
    OPT_SIZE,
    OPT_SECONDS,
    OPT_LOG_LEVEL,
    OPT_CHOICE, /* one of the words in metavar, separated by '|'; stores its index */
    OPT_LIST,   /* repeatable: each value is appended to a ws_cli_list_t */
    OPT_WORKERS /* an int in min..max, or "auto" for 0 */
} opt_kind;

typedef struct {
    const char *name; /* long name without the leading "--" */
    char short_name;  /* 0 when there is none */
    opt_kind kind;
    size_t offset; /* field in ws_config_t; for OPT_FLAG, the ws_cli_action to return */
    /* Range for numbers: inclusive, except that OPT_SECONDS excludes min. */
    double min, max;
    const char *def; /* default, in command-line syntax; also shown by --help */
    const char *metavar;
    const char *help;
} opt_t;

#define FIELD(f) offsetof(ws_config_t, f)

/* Defaults live only here, as text run through the same parser as argv, so the
 * help text cannot disagree with what ws_cli_defaults() sets. Adding an option
 * is one row plus its field in ws_config_t. */
static const opt_t opts[] = {
    {"host", 0, OPT_STRING, FIELD(host), 0, 0, "0.0.0.0", "ADDR", "address to listen on"},
    {"port", 0, OPT_INT, FIELD(port), 0, 65535, "8000", "N", "TCP port; 0 picks a free one"},
    {"workers", 0, OPT_WORKERS, FIELD(workers), 1, 128, "1", "N|auto",
     "worker processes, each with its own loop and Lua state; auto = one per core"},
    {"check", 0, OPT_SWITCH, FIELD(check), 1, 0, NULL, NULL,
     "load the script and check its routes, then exit: 0 when it would serve, 1 with "
     "file:line and the reason"},
    {"broker", 0, OPT_STRING, FIELD(broker), 0, 0, NULL, "URL[,URL]",
     "publish across nodes through Redis (redis://[user:password@]host[:port][/db]); several "
     "URLs spread the topics over them; also from $WSPUSH_BROKER"},
    {"broker-file", 0, OPT_STRING, FIELD(broker_file), 0, 0, NULL, "FILE",
     "read --broker's URLs from FILE (so that no password is on the command line)"},
    {"broker-prefix", 0, OPT_STRING, FIELD(broker_prefix), 0, 0, "wspush:", "PREFIX",
     "Redis channel of a topic: PREFIX followed by the topic"},
    {"log-level", 0, OPT_LOG_LEVEL, FIELD(log_level), 0, 0, "info", "LEVEL",
     "error, warn, info or debug"},
    {"log-format", 0, OPT_CHOICE, FIELD(log_format), 0, 0, "text", "text|json",
     "log lines as text, or as one JSON object per line"},
    {"access-log", 0, OPT_STRING, FIELD(access_log), 0, 0, NULL, "FILE|-",
     "a line for every HTTP request, refused upgrade and closed WebSocket, appended to FILE "
     "(reopened on SIGUSR1, for log rotation) or, with -, in the log"},
    {"max-message", 0, OPT_SIZE, FIELD(max_message), 1, 0, "16m", "BYTES",
     "largest WebSocket message (1009 above)"},
    {"max-header", 0, OPT_SIZE, FIELD(max_header), 1, 0, "16k", "BYTES",
     "largest HTTP header block (431 above)"},
    {"max-body", 0, OPT_SIZE, FIELD(max_body), 0, 0, "1m", "BYTES",
     "largest HTTP request body (413 above)"},
    {"close-timeout", 0, OPT_SECONDS, FIELD(close_timeout), 0, 3600, "5", "SECONDS",
     "wait this long for the peer's close reply"},
    {"no-watch", 0, OPT_SWITCH, FIELD(no_watch), 1, 0, NULL, NULL,
     "do not reload when the script changes (SIGHUP still reloads)"},
    {"control-socket", 0, OPT_STRING, FIELD(control_socket), 0, 0, NULL, "PATH",
     "listen on this unix socket (mode 0600) for wspush --reload"},
    {"reload", 0, OPT_STRING, FIELD(reload), 0, 0, NULL, "PATH",
     "ask the server whose --control-socket is PATH to reload, and wait: exit 0 when the new "
     "version serves, 1 with file:line and the reason when the previous one keeps serving "
     "(no SCRIPT.lua)"},
    {"ping-interval", 0, OPT_SECONDS, FIELD(ping_interval), -1, 86400, "25", "SECONDS",
     "ping every connection this often; 0 = never"},
    {"ping-timeout", 0, OPT_SECONDS, FIELD(ping_timeout), 0, 86400, "10", "SECONDS",
     "close a connection whose pong is this late"},
    {"idle-timeout", 0, OPT_SECONDS, FIELD(idle_timeout), -1, 864000, "0", "SECONDS",
     "close after this long without messages either way; 0 = never"},
    {"handshake-timeout", 0, OPT_SECONDS, FIELD(handshake_timeout), 0, 3600, "10", "SECONDS",
     "an HTTP request must arrive whole within this time"},
    {"keepalive-timeout", 0, OPT_SECONDS, FIELD(keepalive_timeout), 0, 3600, "30", "SECONDS",
     "close an idle HTTP keep-alive connection after this long"},
    {"max-connections", 0, OPT_INT, FIELD(max_connections), 1, 10000000, "100000", "N",
     "WebSocket connections at once (503 above)"},
    {"max-per-ip", 0, OPT_INT, FIELD(max_per_ip), 0, 10000000, "0", "N",
     "WebSocket connections per client address (503 above); 0 = no limit"},
    {"max-tcp-per-ip", 0, OPT_INT, FIELD(max_tcp_per_ip), 0, 10000000, "0", "N",
     "TCP connections per client address, HTTP and handshakes included (503 above); 0 = no limit"},
    {"accept-rate", 0, OPT_INT, FIELD(accept_rate), 0, 10000000, "0", "N",
     "new connections per client address per second (429 above); 0 = no limit"},
    {"max-requests-per-conn", 0, OPT_INT, FIELD(max_requests_per_conn), 0, 100000000, "1000", "N",
     "HTTP requests on one keep-alive connection; the last is answered with Connection: close; "
     "0 = no limit"},
    {"max-buffered", 0, OPT_SIZE, FIELD(max_buffered), 1, 0, "256k", "BYTES",
     "outbound bytes queued per connection before the backpressure policy applies "
     "(reading pauses at half of it)"},
    {"max-memory", 0, OPT_SIZE, FIELD(max_memory), 0, 0, "2g", "BYTES",
     "memory budget: queues, buffers, compression, Lua heap; near it upgrades get 503, "
     "over it the worst queues are shed (1013); 0 = none"},
    {"send-timeout", 0, OPT_SECONDS, FIELD(send_timeout), 0, 86400, "30", "SECONDS",
     "close a connection whose peer takes no bytes for this long"},
    {"backpressure", 0, OPT_CHOICE, FIELD(backpressure), 0, 0, "close", "close|drop|drop-oldest",
     "over --max-buffered: close 1008, drop the new message, or drop the oldest"},
    {"rate-limit", 0, OPT_SECONDS, FIELD(rate_limit), -1, 1e9, "0", "MSGS",
     "inbound messages per second per connection (1008 above); 0 = no limit"},
    {"rate-burst", 0, OPT_SECONDS, FIELD(rate_burst), 0, 1e9, "50", "MSGS",
     "messages a connection may send at once before the rate limit applies"},
    {"compression", 0, OPT_SWITCH, FIELD(compression), 1, 0, "on", NULL,
     "accept permessage-deflate offers"},
    {"no-compression", 0, OPT_SWITCH, FIELD(compression), 0, 0, NULL, NULL,
     "decline permessage-deflate"},
    {"compression-level", 0, OPT_INT, FIELD(compression_level), 0, 9, "6", "N",
     "zlib level for outgoing messages (0-9)"},
    {"compression-threshold", 0, OPT_SIZE, FIELD(compression_threshold), 0, 0, "1k", "BYTES",
     "send shorter messages uncompressed"},
    {"compression-window", 0, OPT_INT, FIELD(compression_window), 9, 15, "15", "BITS",
     "largest deflate window (9-15) for outgoing messages"},
    {"compression-memlevel", 0, OPT_INT, FIELD(compression_memlevel), 1, 9, "8", "N",
     "zlib memLevel (1-9) of the compressor"},
    {"compression-context", 0, OPT_SWITCH, FIELD(compression_context), 1, 0, NULL, NULL,
     "keep deflate context between messages (better ratio; zlib reserves ~310 KB per "
     "connection, counted in --compression-max-memory)"},
    {"compression-max-memory", 0, OPT_SIZE, FIELD(compression_max_memory), 0, 0, "256m", "BYTES",
     "cap on all zlib memory; above it messages go uncompressed; 0 = no cap"},
    {"io-uring", 0, OPT_SWITCH, FIELD(io_uring), 1, 0, "on", NULL,
     "send through io_uring, one system call per loop turn (plain writev when unavailable)"},
    {"no-io-uring", 0, OPT_SWITCH, FIELD(io_uring), 0, 0, NULL, NULL,
     "send with one writev per connection and turn"},
    {"busy-poll", 0, OPT_INT, FIELD(busy_poll), 0, 1000000, "0", "USEC",
     "after a message, request or new connection, poll without sleeping for up to USEC "
     "microseconds: a shorter round trip for up to a core of CPU while messages flow; "
     "0 = sleep at once"},
    {"lua-timeout", 0, OPT_SECONDS, FIELD(lua_timeout), 0, 3600, "5", "SECONDS",
     "a Lua callback running longer than this is stopped with an error"},
    {"lua-max-memory", 0, OPT_SIZE, FIELD(lua_max_memory), 0, 0, "512m", "BYTES",
     "cap on the Lua heap: a callback that needs more fails with an error; 0 = no cap"},
    {"shutdown-timeout", 0, OPT_SECONDS, FIELD(shutdown_timeout), 0, 3600, "10", "SECONDS",
     "on SIGTERM/SIGINT, wait this long for close handshakes"},
    {"upgrade-timeout", 0, OPT_SECONDS, FIELD(upgrade_timeout), 0, 3600, "5", "SECONDS",
     "a route's upgrade(req) that has not decided by then answers 503"},
    {"max-outbound", 0, OPT_INT, FIELD(max_outbound), 1, 1000000, "256", "N",
     "wspush.fetch's outbound connections, idle ones included; more requests wait"},
    {"fetch-allow", 0, OPT_LIST, FIELD(fetch_allow), 0, 0, NULL, "CIDR",
     "let wspush.fetch reach this range though it is link-local (repeatable)"},
    {"fetch-deny", 0, OPT_LIST, FIELD(fetch_deny), 0, 0, NULL, "CIDR",
     "refuse wspush.fetch this range too (repeatable; link-local is refused already)"},
    {"trusted-proxy", 0, OPT_LIST, FIELD(trusted_proxy), 0, 0, NULL, "CIDR",
     "a reverse proxy's address or range: from there the client's address is read from "
     "X-Forwarded-For (repeatable; a bare address is /32 or /128)"},
    {"tls-cert", 0, OPT_STRING, FIELD(tls_cert), 0, 0, NULL, "FILE",
     "serve wss:// and https:// with this PEM certificate (its chain may follow it); "
     "reloaded on change and on SIGHUP"},
    {"tls-key", 0, OPT_STRING, FIELD(tls_key), 0, 0, NULL, "FILE", "the PEM private key of --tls-cert"},
    {"tls-min-version", 0, OPT_CHOICE, FIELD(tls_min_version), 0, 0, "1.2", "1.2|1.3",
     "oldest TLS version accepted"},
    {"tls-ciphers", 0, OPT_STRING, FIELD(tls_ciphers), 0, 0, NULL, "LIST",
     "TLS 1.2 ciphers, OpenSSL syntax (default: ECDHE and DHE with AES-GCM or ChaCha20)"},
    {"tls-ciphersuites", 0, OPT_STRING, FIELD(tls_ciphersuites), 0, 0, NULL, "LIST",
     "TLS 1.3 suites (default: OpenSSL's)"},
    {"help", 'h', OPT_FLAG, WS_CLI_HELP, 0, 0, NULL, NULL, "show this help and exit"},
    {"version", 'V', OPT_FLAG, WS_CLI_VERSION, 0, 0, NULL, NULL, "show the version and exit"},
};

#define NOPTS (sizeof opts / sizeof opts[0])

static const char *const level_names[] = {"error", "warn", "info", "debug"};

/* --- value parsers --- */

static int parse_size(const char *s, size_t *out)
{
    unsigned long long v = 0;
    const char *p = s;
    if (*p < '0' || *p > '9')
        return -1;
    for (; *p >= '0' && *p <= '9'; p++) {
        unsigned d = (unsigned)(*p - '0');
        if (v > (ULLONG_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    unsigned shift = 0;
    switch (*p) {
    case '\0':
        break;
    case 'k':
    case 'K':
        shift = 10;
        p++;
        break;
    case 'm':
    case 'M':
        shift = 20;
        p++;
        break;
    case 'g':
    case 'G':
        shift = 30;
        p++;
        break;
    default:
        return -1;
    }
    if (*p != '\0')
        return -1;
    if (shift && v > (ULLONG_MAX >> shift))
        return -1;
    v <<= shift;
    if (v > SIZE_MAX)
        return -1;
    *out = (size_t)v;
    return 0;
}

static int parse_long(const char *s, long max, long *out)
{
    long v = 0;
    if (*s == '\0')
        return -1;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return -1;
        v = v * 10 + (*s - '0');
        if (v > max)
            return -1;
    }
    *out = v;
    return 0;
}

/* Hand-rolled rather than strtod(): that one follows the locale's decimal point
 * and accepts hex, "inf" and "nan", none of which belong in a timeout. */
static int parse_seconds(const char *s, double *out)
{
    double v = 0, scale = 1;
    int digits = 0;
    for (; *s >= '0' && *s <= '9'; s++, digits++) {
        v = v * 10 + (*s - '0');
        if (v > 1e9)
            return -1;
    }
    if (*s == '.') {
        for (s++; *s >= '0' && *s <= '9'; s++, digits++) {
            scale /= 10;
            v += (*s - '0') * scale;
        }
    }
    if (*s != '\0' || digits == 0)
        return -1;
    *out = v;
    return 0;
}

static int set_value(const opt_t *o, const char *val, ws_config_t *cfg)
{
    void *field = (char *)cfg + o->offset;
    switch (o->kind) {
    case OPT_STRING:
        if (*val == '\0')
            return -1;
        *(const char **)field = val;
        return 0;
    case OPT_WORKERS:
        if (strcmp(val, "auto") == 0) {
            *(int *)field = 0;
            return 0;
        }
        /* fall through */
    case OPT_INT: {
        long v;
        if (parse_long(val, (long)o->max, &v) != 0 || v < (long)o->min)
            return -1;
        *(int *)field = (int)v;
        return 0;
    }
    case OPT_SIZE: {
        size_t v;
        if (parse_size(val, &v) != 0 || (double)v < o->min)
            return -1;
        *(size_t *)field = v;
        return 0;
    }
    case OPT_SECONDS: {
        double v;
        /* min is exclusive here: a zero timeout would close without waiting at all. */
        if (parse_seconds(val, &v) != 0 || v <= o->min || v > o->max)
            return -1;
        *(double *)field = v;
        return 0;
    }
    case OPT_LOG_LEVEL:
        for (size_t i = 0; i < sizeof level_names / sizeof level_names[0]; i++) {
            if (strcmp(val, level_names[i]) == 0) {
                *(ws_log_level_t *)field = (ws_log_level_t)i;
                return 0;
            }
        }
        return -1;
    case OPT_CHOICE: {
        size_t vl = strlen(val);
        int idx = 0;
        for (const char *w = o->metavar; *w; idx++) {
            const char *bar = strchr(w, '|');
            size_t wl = bar ? (size_t)(bar - w) : strlen(w);
            if (wl == vl && memcmp(w, val, vl) == 0) {
                *(int *)field = idx;
                return 0;
            }
            w += wl + (bar ? 1 : 0);
        }
        return -1;
    }
    case OPT_SWITCH:
        *(int *)field = (int)o->min;
        return 0;
    case OPT_LIST: {
        ws_cli_list_t *l = field;
        if (*val == '\0' || l->n >= WS_CLI_LIST_MAX)
            return -1;
        l->v[l->n++] = val;
        return 0;
    }
    case OPT_FLAG:
        break;
    }
    return -1;
}

/* --- parsing --- */

void ws_cli_defaults(ws_config_t *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    for (size_t i = 0; i < NOPTS; i++)
        if (opts[i].def)
            (void)set_value(&opts[i], opts[i].def, cfg);
    cfg->script = NULL;
}

#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
static int fail(char *err, size_t errlen, const char *fmt, ...)
{
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return WS_EINVAL;
}

static const opt_t *find_long(const char *name, size_t len)
{
    for (size_t i = 0; i < NOPTS; i++)
        if (strlen(opts[i].name) == len && memcmp(opts[i].name, name, len) == 0)
            return &opts[i];
    return NULL;
}

static const opt_t *find_short(char c)
{
    for (size_t i = 0; i < NOPTS; i++)
        if (opts[i].short_name && opts[i].short_name == c)
            return &opts[i];
    return NULL;
}

int ws_cli_parse(int argc, char **argv, ws_config_t *cfg, char *err, size_t errlen)
{
    int only_args = 0;

    ws_cli_defaults(cfg);
    if (err && errlen)
        err[0] = '\0';
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (only_args || arg[0] != '-' || arg[1] == '\0') {
            if (cfg->script)
                return fail(err, errlen, "unexpected extra argument '%s'", arg);
            cfg->script = arg;
            continue;
        }
        if (strcmp(arg, "--") == 0) {
            only_args = 1;
            continue;
        }

        const opt_t *o;
        const char *val = NULL;
        size_t namelen;
        if (arg[1] == '-') {
            const char *eq = strchr(arg + 2, '=');
            namelen = eq ? (size_t)(eq - arg) : strlen(arg);
            o = find_long(arg + 2, namelen - 2);
            if (eq)
                val = eq + 1;
        } else {
            namelen = strlen(arg);
            o = namelen == 2 ? find_short(arg[1]) : NULL;
        }
        if (!o)
            return fail(err, errlen, "unknown option '%.*s'", (int)namelen, arg);

        if (o->kind == OPT_FLAG || o->kind == OPT_SWITCH) {
            if (val)
                return fail(err, errlen, "option '--%s' takes no value", o->name);
            if (o->kind == OPT_FLAG)
                return (int)o->offset;
            set_value(o, "", cfg);
            continue;
        }
        if (!val) {
            if (i + 1 >= argc)
                return fail(err, errlen, "option '--%s' needs a value", o->name);
            val = argv[++i];
        }
        if (set_value(o, val, cfg) != 0)
            return fail(err, errlen, "invalid value for --%s: '%s'", o->name, val);
    }
    if (!cfg->script && !cfg->reload)
        return fail(err, errlen, "missing SCRIPT.lua argument");
    return WS_CLI_RUN;
}

int ws_cli_check(const ws_config_t *cfg, char *err, size_t errlen)
{
    if (cfg->reload && cfg->script)
        return fail(err, errlen, "--reload PATH asks a running server: give no SCRIPT.lua");
    if (cfg->broker && cfg->broker_file)
        return fail(err, errlen, "--broker and --broker-file: give one of them");
    if (!cfg->tls_cert != !cfg->tls_key)
        return fail(err, errlen, "--tls-cert and --tls-key go together");
    if (!cfg->tls_cert && (cfg->tls_ciphers || cfg->tls_ciphersuites || cfg->tls_min_version))
        return fail(err, errlen, "--tls-min-version, --tls-ciphers and --tls-ciphersuites need --tls-cert");
    return 0;
}

/* --- usage --- */

const char *ws_cli_usage(void)
{
    /* Built from the table on first use so a new option shows up without
     * editing a second copy; the text never changes afterwards. */
    static char text[12288];
    if (text[0])
        return text;

    size_t n = 0;
    n += (size_t)snprintf(text + n, sizeof text - n,
                          "usage: wspush [options] SCRIPT.lua\n\n"
                          "Serve WebSocket connections, handled by the Lua script SCRIPT.lua.\n"
                          "Sizes take a k, m or g suffix (1k = 1024 bytes).\n\n"
                          "options:\n");
    for (size_t i = 0; i < NOPTS && n < sizeof text; i++) {
        const opt_t *o = &opts[i];
        char left[64];
        if (o->short_name)
            snprintf(left, sizeof left, "-%c, --%s", o->short_name, o->name);
        else if (!o->metavar)
            snprintf(left, sizeof left, "    --%s", o->name);
        else
            snprintf(left, sizeof left, "    --%s %s", o->name, o->metavar);
        /* A long option pushes its help to the next line rather than out of the column. */
        const char *sep = strlen(left) > 28 ? "\n                               " : " ";
        n += (size_t)snprintf(text + n, sizeof text - n, "  %-28s%s%s", left, sep, o->help);
        if (o->def && n < sizeof text)
            n += (size_t)snprintf(text + n, sizeof text - n, " (default %s)", o->def);
        if (n < sizeof text)
            n += (size_t)snprintf(text + n, sizeof text - n, "\n");
    }
    return text;
}
