/* wspush: the composition root. Parses the command line, puts the layers
 * together (transports, hub, Lua host, server, reload watcher, signals),
 * runs the loop and maps failures to exit codes. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

#include "broker.h"
#include "busypoll.h"
#include "certs.h"
#include "cli.h"
#include "control.h"
#include "fetch.h"
#include "hub.h"
#include "lhost.h"
#include "publish.h"
#include "log.h"
#include "notify.h"
#include "reload.h"
#include "server.h"
#include "supervisor.h"
#include "tcp.h"
#include "transport.h"
#include "worker.h"

typedef struct {
    ws_config_t cfg;
    ws_io_t io;
    ws_hub_t hub;
    ws_server_t srv;
    ws_lhost_t *lh;
    ws_fetcher_t *fetcher;
    ws_reload_t reload;
    ws_control_t ctl;    /* --control-socket */
    char reload_failed[512]; /* the latest reload's error, until one succeeds */
    ws_certs_t certs;
    ws_tls_ctx_t *tls0; /* the first TLS context, until the server exists */
    int serving;
    uv_signal_t sigint, sigterm;
    ws_worker_t worker;  /* with --workers: this process is worker.id of worker.count */
    int is_worker;
    ws_broker_t *broker; /* --broker, or NULL */
    ws_proxy_t proxies;  /* --trusted-proxy */
} app_t;

static void apply_tls(void *ud, ws_tls_ctx_t *ctx)
{
    app_t *a = ud;
    if (a->serving)
        ws_server_set_tls(&a->srv, ctx);
    else
        a->tls0 = ctx;
}

static void reload_files(void *ud, void (*cb)(void *cb_ud, const char *path), void *cb_ud)
{
    app_t *a = ud;
    ws_lhost_files(a->lh, cb, cb_ud);
}

/* The outcome goes to msg: the error, or the line logged on success. */
static int reload_version(app_t *a, const char *why, char *msg, size_t msglen)
{
    /* SIGHUP also reloads the certificate; a failure there keeps the old one
     * and does not stop the script's reload. */
    if (a->cfg.tls_cert && strcmp(why, "SIGHUP") == 0)
        ws_certs_reload(&a->certs, why);
    uint64_t t0 = uv_hrtime();
    if (ws_lhost_reload(a->lh, why, msg, msglen) != 0) {
        ws_log_error("reload failed (%s), the previous version keeps serving: %s", why, msg);
        return -1;
    }
    double ms = (double)(uv_hrtime() - t0) / 1e6;
    snprintf(msg, msglen, "reloaded %s (%s) in %.2f ms; %zu connection%s kept", a->cfg.script,
             why, ms, a->hub.nopen, WS_PLURAL(a->hub.nopen));
    ws_log_info("%s", msg);
    return 0;
}

/* What systemctl status shows (notify.h). */
static void status_line(void *ud, char *buf, size_t len)
{
    app_t *a = ud;
    char hb[64];
    int n = snprintf(buf, len, "serving %s on %s:%d; %zu connection%s", a->cfg.script,
                     ws_tcp_url_host(a->cfg.host, hb, sizeof hb), ws_server_port(&a->srv),
                     a->hub.nopen, WS_PLURAL(a->hub.nopen));
    if (a->reload_failed[0] && n > 0 && (size_t)n < len)
        snprintf(buf + n, len - (size_t)n, "; %s", a->reload_failed);
}

/* A reload of this (single) process, from the watcher, SIGHUP or --reload. */
static int reload_now(void *ud, const char *why)
{
    app_t *a = ud;
    char msg[2048];
    uint64_t attempt = ws_control_begin(&a->ctl);
    ws_notify_reloading(why);
    int rc = reload_version(a, why, msg, sizeof msg);
    if (rc == 0)
        a->reload_failed[0] = '\0';
    else
        snprintf(a->reload_failed, sizeof a->reload_failed,
                 "reload failed, the previous version serves: %.400s", msg);
    ws_notify_ready();
    ws_control_end(&a->ctl, attempt, rc == 0, msg);
    return rc;
}

static void control_reload(void *ud)
{
    app_t *a = ud;
    ws_reload_now(&a->reload, "reload command");
}

static const ws_control_ops_t control_ops = {control_reload};

static const ws_reload_ops_t reload_ops = {reload_files, reload_now};

static int quiet(void *ud) { return ws_lhost_collect_step(((app_t *)ud)->lh); }

/* Handlers still waiting (on_shutdown, an on_close's webhook call): the stop waits for them. */
static size_t busy(void *ud) { return ws_lhost_busy(((app_t *)ud)->lh); }

static void stopped(void *ud)
{
    app_t *a = ud;
    ws_worker_close(&a->worker);
    a->hub.pubsub.watch = NULL;
    a->hub.broker = NULL;
    ws_broker_free(a->broker);
    a->broker = NULL;
    /* Its pooled connections would keep the loop running. */
    ws_lhost_release(a->lh);
    ws_fetcher_free(a->fetcher);
    a->fetcher = NULL;
    uv_close((uv_handle_t *)&a->sigint, NULL);
    uv_close((uv_handle_t *)&a->sigterm, NULL);
}

/* First signal: stop accepting, let the script know, close every connection
 * with 1001 and wait (bounded) for the close handshakes. Second: stop now. */
static void begin_stop(app_t *a, const char *name)
{
    if (a->srv.stopping) {
        ws_log_warn("%s again: closing %zu connection%s now", name, a->hub.nconns,
                    WS_PLURAL(a->hub.nconns));
        ws_server_abort(&a->srv);
        return;
    }
    ws_log_info("%s: shutting down, closing %zu WebSocket connection%s", name, a->hub.nopen,
                WS_PLURAL(a->hub.nopen));
    if (!a->is_worker) {
        char st[128];
        snprintf(st, sizeof st, "%s: stopping, closing %zu connection%s", name, a->hub.nopen,
                 WS_PLURAL(a->hub.nopen));
        ws_notify_stopping(st);
        ws_reload_close(&a->reload);
        ws_control_close(&a->ctl);
    }
    ws_certs_close(&a->certs);
    ws_lhost_shutdown(a->lh);
    ws_lhost_stop(a->lh);
    ws_server_stop(&a->srv, a->cfg.shutdown_timeout);
}

static void on_signal(uv_signal_t *h, int signum)
{
    begin_stop(h->data, signum == SIGINT ? "SIGINT" : "SIGTERM");
}

static int worker_reload(void *ud, const char *why, uint64_t digest, char *err, size_t errlen)
{
    app_t *a = ud;
    ws_lhost_expect(a->lh, digest);
    return reload_version(a, why, err, errlen);
}

static void worker_stop(void *ud)
{
    app_t *a = ud;
    if (!a->srv.stopping)
        begin_stop(a, "supervisor gone");
}

static const ws_worker_ops_t worker_ops = {worker_reload, worker_stop};

static void listen_signal(app_t *a, uv_signal_t *h, int signum)
{
    uv_signal_init(a->io.loop, h);
    h->data = a;
    uv_signal_start(h, on_signal, signum);
}

/* ---- publishing beyond this process ---- */

/* A publish of this process: to the other workers, then to the other nodes. */
static int relay(void *ud, const char *topic, size_t tlen, unsigned op, const void *data,
                 size_t dlen)
{
    app_t *a = ud;
    if (a->worker.started)
        ws_worker_send(&a->worker, topic, tlen, op, data, dlen);
    return a->broker ? ws_broker_publish(a->broker, topic, tlen, op, data, dlen) : 0;
}

static void broker_deliver(void *ud, const char *topic, size_t tlen, unsigned op,
                           const void *data, size_t dlen)
{
    ws_publish_remote(&((app_t *)ud)->hub, topic, tlen, op, data, dlen);
}

static void broker_event(void *ud, const ws_broker_event_t *e)
{
    app_t *a = ud;
    if (a->hub.host->broker)
        a->hub.host->broker(a->hub.host_ud, e->what, e->shard, e->topic, e->tlen, e->missed);
}

/* The node subscribes to a topic's channel while it has subscribers here. */
static void watch_topic(void *ud, const char *name, size_t len, int present)
{
    ws_broker_want(((app_t *)ud)->broker, name, len, present);
}

/* The URLs: --broker, --broker-file, or $WSPUSH_BROKER (in that order). */
static char *broker_urls(const ws_config_t *cfg, char *err, size_t errlen)
{
    if (cfg->broker)
        return ws_strndup(cfg->broker, strlen(cfg->broker));
    if (cfg->broker_file) {
        FILE *f = fopen(cfg->broker_file, "r");
        char buf[4096];
        size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
        if (!f || ferror(f)) {
            snprintf(err, errlen, "--broker-file %s: %s", cfg->broker_file, strerror(errno));
            if (f)
                fclose(f);
            return NULL;
        }
        fclose(f);
        /* One or more URLs, separated by commas or white space. */
        size_t o = 0;
        for (size_t i = 0; i < n; i++) {
            int space = buf[i] == ' ' || buf[i] == '\t' || buf[i] == '\n' || buf[i] == '\r';
            if (space && o && buf[o - 1] != ',')
                buf[o++] = ',';
            else if (!space)
                buf[o++] = buf[i];
        }
        while (o && buf[o - 1] == ',')
            o--;
        if (!o) {
            snprintf(err, errlen, "--broker-file %s: no URL in it", cfg->broker_file);
            return NULL;
        }
        return ws_strndup(buf, o);
    }
    const char *env = getenv("WSPUSH_BROKER");
    return env && *env ? ws_strndup(env, strlen(env)) : ws_strndup("", 0);
}

/* The broker's client, connected unless this is a check (connect 0). */
static int start_broker(app_t *a, int connect, char *err, size_t errlen)
{
    char *urls = broker_urls(&a->cfg, err, errlen);
    if (!urls)
        return -1;
    if (!*urls) {
        free(urls);
        return 0;
    }
    /* One id per node: a supervisor gives its workers its own. */
    uint64_t node = 0;
    const char *env = getenv("WSPUSH_NODE");
    if (env)
        node = strtoull(env, NULL, 16);
    if (!node && uv_random(NULL, NULL, &node, sizeof node, 0, NULL) != 0)
        node = uv_hrtime() ^ ((uint64_t)getpid() << 32);
    ws_broker_config_t bc = {.urls = urls, .prefix = a->cfg.broker_prefix, .node = node,
                             .worker = a->is_worker ? a->worker.id : 1};
    ws_broker_cb_t cb = {broker_deliver, broker_event, a};
    a->broker = ws_broker_new(&a->io, &bc, &cb, err, errlen);
    free(urls);
    if (!a->broker)
        return -1;
    a->hub.pubsub.watch = watch_topic;
    a->hub.pubsub.watch_ud = a;
    a->hub.broker = a->broker;
    if (connect)
        ws_broker_start(a->broker);
    return 0;
}

/* wspush.fetch's client, with the address policy of the command line. */
static int start_fetcher(app_t *a, char *err, size_t errlen)
{
    ws_fetch_config_t fc;
    ws_fetch_config_init(&fc);
    fc.max_outbound = (unsigned)a->cfg.max_outbound;
    a->fetcher = ws_fetcher_new(&a->io, &fc);
    char why[256];
    for (unsigned i = 0; i < a->cfg.fetch_allow.n; i++) {
        if (ws_fetcher_allow(a->fetcher, a->cfg.fetch_allow.v[i], why, sizeof why) != 0) {
            snprintf(err, errlen, "--fetch-allow %s: %s", a->cfg.fetch_allow.v[i], why);
            return -1;
        }
    }
    for (unsigned i = 0; i < a->cfg.fetch_deny.n; i++) {
        if (ws_fetcher_deny(a->fetcher, a->cfg.fetch_deny.v[i], why, sizeof why) != 0) {
            snprintf(err, errlen, "--fetch-deny %s: %s", a->cfg.fetch_deny.v[i], why);
            return -1;
        }
    }
    ws_lhost_set_fetcher(a->lh, a->fetcher);
    return 0;
}

/* --trusted-proxy's ranges, read before anything starts (the supervisor's
 * workers read them again from the same command line). 0, or -1 with a
 * one-line message in err. */
static int trusted_proxies(app_t *a, char *err, size_t errlen)
{
    char why[256];
    for (unsigned i = 0; i < a->cfg.trusted_proxy.n; i++) {
        if (ws_proxy_add(&a->proxies, a->cfg.trusted_proxy.v[i], why, sizeof why) != 0) {
            snprintf(err, errlen, "--trusted-proxy %s: %s", a->cfg.trusted_proxy.v[i], why);
            return -1;
        }
    }
    return 0;
}

/* Build the layers bottom up; on failure a one-line message in err. */
static int start(app_t *a, uv_loop_t *loop, char *err, size_t errlen)
{
    ws_io_init(&a->io, loop);
    ws_hub_init(&a->hub, &a->io, &a->cfg);
    a->hub.proxies = a->proxies.n ? &a->proxies : NULL;
    ws_deflate_set_mem_limit(a->cfg.compression_max_memory);
    if (a->is_worker && ws_worker_attach(&a->worker, &a->hub, err, errlen) != 0)
        goto fail;
    a->lh = ws_lhost_new(&a->hub, a->cfg.script, a->cfg.lua_timeout, a->cfg.lua_max_memory, err,
                         errlen);
    if (!a->lh)
        goto fail;
    ws_hub_set_host(&a->hub, &ws_lhost_ops, a->lh);
    if (start_fetcher(a, err, errlen) != 0 || start_broker(a, 1, err, errlen) != 0)
        goto fail;
    if (a->is_worker || a->broker) {
        a->hub.relay = relay;
        a->hub.relay_ud = a;
    }
    if (!a->is_worker && a->cfg.control_socket &&
        ws_control_open(&a->ctl, loop, a->cfg.control_socket, &control_ops, a, err, errlen) != 0)
        goto fail;
    if (a->cfg.tls_cert) {
        ws_tls_server_opts_t o = {
            .cert_file = a->cfg.tls_cert,
            .key_file = a->cfg.tls_key,
            .min_version = a->cfg.tls_min_version ? 13 : 12,
            .ciphers = a->cfg.tls_ciphers,
            .ciphersuites = a->cfg.tls_ciphersuites,
        };
        if (ws_certs_init(&a->certs, loop, &o, !a->cfg.no_watch, apply_tls, a, err, errlen) != 0)
            goto fail;
    }
    if (a->is_worker ? ws_server_init_fd(&a->srv, &a->hub, WS_WORKER_FD_LISTEN, err, errlen)
                     : ws_server_init(&a->srv, &a->hub, a->cfg.host, a->cfg.port, err, errlen))
        goto fail;
    a->serving = 1;
    ws_server_set_tls(&a->srv, a->tls0);
    a->tls0 = NULL;
    a->srv.quiet = quiet;
    a->srv.quiet_ud = a;
    a->srv.stopped = stopped;
    a->srv.stopped_ud = a;
    a->srv.busy = busy;
    a->srv.busy_ud = a;
    if (a->is_worker) {
        /* The supervisor watches the files and says when to reload. */
        signal(SIGHUP, SIG_IGN);
        ws_worker_start(&a->worker, loop, &worker_ops, a);
    } else {
        ws_reload_init(&a->reload, loop, a->cfg.script, !a->cfg.no_watch, &reload_ops, a);
    }
    listen_signal(a, &a->sigint, SIGINT);
    listen_signal(a, &a->sigterm, SIGTERM);
    if (a->cfg.io_uring) {
        char why[128];
        if (ws_tcp_use_ring(&a->io, why, sizeof why) != 0)
            ws_log_info("%s: sending with writev", why);
    }
    return 0;

fail:
    ws_control_close(&a->ctl);
    ws_certs_close(&a->certs);
    ws_tls_ctx_free(a->tls0);
    a->tls0 = NULL;
    ws_lhost_free(a->lh);
    a->lh = NULL;
    ws_fetcher_free(a->fetcher);
    a->fetcher = NULL;
    a->hub.broker = NULL;
    ws_broker_free(a->broker);
    a->broker = NULL;
    ws_hub_free(&a->hub);
    ws_io_free(&a->io);
    ws_worker_free(&a->worker);
    return -1;
}

static void finish(app_t *a)
{
    ws_server_free(&a->srv);
    ws_lhost_free(a->lh);
    ws_hub_free(&a->hub);
    ws_io_free(&a->io);
    ws_worker_free(&a->worker);
}

static void print_file(void *ud, const char *path) { fprintf(ud, "file %s\n", path); }

/* --check, and the supervisor's check of a version before its workers load
 * it (WSPUSH_ROLE=check: the digest and the files go to stdout for it). */
static int check(app_t *a)
{
    char err[2048];
    uv_loop_t *loop = uv_default_loop();
    ws_io_init(&a->io, loop);
    ws_hub_init(&a->hub, &a->io, &a->cfg);
    a->lh = ws_lhost_new(&a->hub, a->cfg.script, a->cfg.lua_timeout, a->cfg.lua_max_memory, err,
                         sizeof err);
    int rc = 0;
    /* The broker's URLs too: with workers, a bad one must stop the start
     * here, not in every worker again and again. */
    if (a->lh && start_broker(a, 0, err, sizeof err) != 0) {
        ws_lhost_free(a->lh);
        a->lh = NULL;
    }
    a->hub.pubsub.watch = NULL;
    a->hub.broker = NULL;
    ws_broker_free(a->broker);
    a->broker = NULL;
    if (!a->lh) {
        fprintf(stderr, "wspush: %s\n", err);
        rc = 1;
    } else {
        const char *role = getenv("WSPUSH_ROLE");
        if (role && strcmp(role, "check") == 0) {
            printf("digest %016llx\n", (unsigned long long)ws_lhost_digest(a->lh));
            ws_lhost_files(a->lh, print_file, stdout);
        } else {
            printf("%s: ok\n", a->cfg.script);
        }
        fflush(stdout);
        ws_lhost_stop(a->lh);
        ws_lhost_release(a->lh);
        ws_lhost_free(a->lh);
    }
    ws_hub_free(&a->hub);
    ws_io_free(&a->io);
    uv_run(loop, UV_RUN_NOWAIT);
    uv_loop_close(loop);
    return rc;
}

int main(int argc, char **argv)
{
    static app_t app; /* the hub is large: keep it off the stack */
    char err[1024];
    int act = ws_cli_parse(argc, argv, &app.cfg, err, sizeof err);
    if (act == WS_CLI_HELP) {
        fputs(ws_cli_usage(), stdout);
        return 0;
    }
    if (act == WS_CLI_VERSION) {
        printf("wspush %s\n", WSPUSH_VERSION);
        return 0;
    }
    if (act == WS_CLI_RUN)
        act = ws_cli_check(&app.cfg, err, sizeof err);
    if (act < 0) {
        fprintf(stderr, "wspush: %s (try --help)\n", err);
        return 2;
    }
    ws_log_set_level(app.cfg.log_level);
    ws_log_set_json(app.cfg.log_format == 1);
    if (app.cfg.reload) {
        char msg[1024];
        int rc = ws_control_ask(app.cfg.reload, "reload", 60000, msg, sizeof msg);
        fprintf(rc ? stderr : stdout, "%s%s\n", rc ? "wspush: " : "", msg);
        return rc;
    }
    if (trusted_proxies(&app, err, sizeof err) != 0) {
        fprintf(stderr, "wspush: %s\n", err);
        return 1;
    }
    const char *role = getenv("WSPUSH_ROLE");
    if (app.cfg.check || (role && strcmp(role, "check") == 0))
        return check(&app);
    if (app.cfg.access_log && ws_log_access_open(app.cfg.access_log, err, sizeof err) != 0) {
        fprintf(stderr, "wspush: %s\n", err);
        return 1;
    }
    app.is_worker = ws_worker_from_env(&app.worker, err, sizeof err);
    if (app.is_worker < 0) {
        fprintf(stderr, "wspush: %s\n", err);
        return 2;
    }
    if (!app.is_worker) {
        /* Only this process speaks to systemd; its children do not inherit the socket. */
        ws_notify_init();
        unsigned n = app.cfg.workers ? (unsigned)app.cfg.workers : uv_available_parallelism();
        if (n > WS_TALLY_MAX_WORKERS)
            n = WS_TALLY_MAX_WORKERS;
        if (n > 1)
            return ws_supervisor_run(&app.cfg, n, argc, argv);
    } else {
        ws_log_set_worker(app.worker.id);
    }
    /* A peer that resets while we write must cost one connection (EPIPE),
     * not the process: libuv writes with plain write(2). */
    signal(SIGPIPE, SIG_IGN);
#ifdef __GLIBC__
    /* zlib state (~300 KB) is created and freed around compressed messages.
     * With glibc's defaults each cycle is an mmap/munmap or a heap trim and
     * regrow, which cost more than the compression itself; keep freed memory
     * for reuse instead. */
    mallopt(M_MMAP_THRESHOLD, 4 << 20);
    mallopt(M_TRIM_THRESHOLD, 64 << 20);
#endif

    uv_loop_t *loop = uv_default_loop();
    ws_log_start(loop);
    if (start(&app, loop, err, sizeof err) != 0) {
        ws_log_stop();
        fprintf(stderr, "wspush: %s\n", err);
        uv_run(loop, UV_RUN_NOWAIT);
        uv_loop_close(loop);
        return 1;
    }
    char hb[64];
    if (app.is_worker)
        ws_worker_ready(&app.worker, ws_lhost_digest(app.lh));
    else
        ws_log_info("wspush %s listening on %s://%s:%d (script %s)", WSPUSH_VERSION,
                    app.cfg.tls_cert ? "https" : "http",
                    ws_tcp_url_host(app.cfg.host, hb, sizeof hb), ws_server_port(&app.srv),
                    app.cfg.script);
    if (!app.is_worker)
        ws_notify_serving(loop, status_line, &app);
    ws_busypoll_run(loop, (unsigned)app.cfg.busy_poll, &app.hub.work);
    finish(&app);
    ws_log_stop();
    /* Handles closed by finish need one more turn for their close callbacks. */
    uv_run(loop, UV_RUN_NOWAIT);
    if (uv_loop_close(loop) != 0)
        ws_log_warn("event loop closed with live handles");
    return 0;
}
