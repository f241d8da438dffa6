/*
 * cli.h: command line -> ws_config_t. Pure: no I/O (usage text is returned, not printed).
 */
#ifndef WS_CLI_H
#define WS_CLI_H

#include <stddef.h>

typedef enum { WS_LOG_ERROR = 0, WS_LOG_WARN, WS_LOG_INFO, WS_LOG_DEBUG } ws_log_level_t;

/* An option given any number of times (up to WS_CLI_LIST_MAX): its values
 * in order, pointing into argv. */
#define WS_CLI_LIST_MAX 32
typedef struct {
    const char *v[WS_CLI_LIST_MAX];
    unsigned n;
} ws_cli_list_t;

typedef struct {
    const char *host;        /* --host ADDR, default "0.0.0.0" */
    int port;                /* --port N (0..65535; 0 = any free port), default 8000 */
    const char *script;      /* the positional SCRIPT.lua (required) */
    ws_log_level_t log_level;/* --log-level error|warn|info|debug, default info */
    int log_format;          /* --log-format text|json: 0 = text, 1 = json */
    const char *access_log;  /* --access-log FILE|-: access records to FILE, or the log; NULL: none */
    size_t max_message;      /* --max-message BYTES (suffixes k, m, g), default 16 MiB */
    size_t max_header;       /* --max-header BYTES, default 16 KiB (431 above) */
    size_t max_body;         /* --max-body BYTES, default 1 MiB (413 above) */
    double close_timeout;    /* --close-timeout SECONDS, default 5: wait for the peer's close reply */
    int no_watch;            /* --no-watch: no reload on file change (SIGHUP still reloads) */
    const char *control_socket; /* --control-socket PATH: where --reload asks (control.h) */
    const char *reload;      /* --reload PATH: ask the server at PATH to reload, wait, exit */
    double ping_interval;    /* --ping-interval SECONDS, default 25; 0 = off */
    double ping_timeout;     /* --ping-timeout SECONDS, default 10 */
    double idle_timeout;     /* --idle-timeout SECONDS, default 0 = off */
    double handshake_timeout;/* --handshake-timeout SECONDS, default 10 (slowloris) */
    double keepalive_timeout;/* --keepalive-timeout SECONDS, default 30 */
    int max_connections;     /* --max-connections N, default 100000 (503 above) */
    int max_per_ip;          /* --max-per-ip N, default 0 = off */
    int max_tcp_per_ip;      /* --max-tcp-per-ip N: TCP connections per address, default 0 = off */
    int accept_rate;         /* --accept-rate N: new connections per address per second, 0 = off */
    int max_requests_per_conn; /* --max-requests-per-conn N, default 1000; 0 = no limit */
    size_t max_buffered;     /* --max-buffered BYTES, default 256 KiB */
    double send_timeout;     /* --send-timeout SECONDS, default 30: a peer that drains nothing */
    size_t max_memory;       /* --max-memory BYTES, default 2 GiB: the process's memory budget */
    int backpressure;        /* --backpressure close|drop|drop-oldest: a ws_backpressure_t */
    double rate_limit;       /* --rate-limit MSGS per second, default 0 = off */
    double rate_burst;       /* --rate-burst MSGS, default 50 */
    double shutdown_timeout; /* --shutdown-timeout SECONDS, default 10 */
    double upgrade_timeout;  /* --upgrade-timeout SECONDS, default 5: a route's upgrade() decides in time or 503 */
    int max_outbound;        /* --max-outbound N, default 256: wspush.fetch's connections */
    ws_cli_list_t fetch_allow; /* --fetch-allow CIDR (repeatable): allowed though link-local */
    ws_cli_list_t fetch_deny;  /* --fetch-deny CIDR (repeatable): refused to wspush.fetch */
    ws_cli_list_t trusted_proxy; /* --trusted-proxy CIDR (repeatable): X-Forwarded-For is believed from there */
    double lua_timeout;      /* --lua-timeout SECONDS, default 5: budget of one Lua callback */
    size_t lua_max_memory;   /* --lua-max-memory BYTES, default 512 MiB: cap on the Lua heap */
    int compression;         /* --compression / --no-compression, default on */
    int compression_level;   /* --compression-level N, default 6 */
    size_t compression_threshold; /* --compression-threshold BYTES, default 1 KiB */
    int compression_window;  /* --compression-window BITS, default 15 */
    int compression_memlevel;/* --compression-memlevel N, default 8 */
    int compression_context; /* --compression-context: keep context between messages */
    size_t compression_max_memory; /* --compression-max-memory BYTES, default 256 MiB */
    int io_uring;            /* --io-uring / --no-io-uring, default on */
    int busy_poll;           /* --busy-poll USEC, default 0: poll this long after work before sleeping */
    const char *tls_cert;    /* --tls-cert FILE (PEM, chain after the certificate): serve TLS */
    const char *tls_key;     /* --tls-key FILE (PEM) */
    int tls_min_version;     /* --tls-min-version 1.2|1.3: 0 = 1.2, 1 = 1.3 */
    const char *tls_ciphers; /* --tls-ciphers LIST (TLS 1.2, OpenSSL syntax), NULL: ours */
    const char *tls_ciphersuites; /* --tls-ciphersuites LIST (TLS 1.3), NULL: OpenSSL's */
    int workers;             /* --workers N|auto, default 1; 0 = auto (one per core) */
    int check;               /* --check: load the script and exit, 0 when it loads */
    const char *broker;      /* --broker URL[,URL...]: publish across nodes through Redis */
    const char *broker_file; /* --broker-file FILE: the same, read from FILE (keeps passwords off argv) */
    const char *broker_prefix; /* --broker-prefix P, default "wspush:" */
} ws_config_t;

/* What happens when a connection's outbound queue is over its limit. */
typedef enum { WS_BP_CLOSE = 0, WS_BP_DROP = 1, WS_BP_DROP_OLDEST = 2 } ws_backpressure_t;

typedef enum {
    WS_CLI_RUN = 0,     /* cfg is filled; start the server */
    WS_CLI_HELP = 1,    /* --help / -h: print ws_cli_usage() to stdout, exit 0 */
    WS_CLI_VERSION = 2  /* --version / -V: print WSPUSH_VERSION, exit 0 */
} ws_cli_action;

/* Set every field to its default (script NULL). */
void ws_cli_defaults(ws_config_t *cfg);

/* Parse argv (argv[0] is the program). Options accept "--opt VALUE" and
 * "--opt=VALUE". Returns a ws_cli_action, or WS_EINVAL with a one-line message
 * in err (unknown option, missing value, bad number, out of range, missing
 * script, more than one script). Strings in cfg point into argv. */
int ws_cli_parse(int argc, char **argv, ws_config_t *cfg, char *err, size_t errlen);

/* Options that only make sense together: 0, or WS_EINVAL with a one-line
 * message in err. */
int ws_cli_check(const ws_config_t *cfg, char *err, size_t errlen);

/* The usage text (static). */
const char *ws_cli_usage(void);

#endif
