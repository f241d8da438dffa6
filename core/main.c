/* wspush: parse the command line, start the server, map failures to exit codes. */
#include <signal.h>
#include <stdio.h>
#include <uv.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

#include "cli.h"
#include "log.h"
#include "server.h"

int main(int argc, char **argv)
{
    ws_config_t cfg;
    char err[1024];
    int act = ws_cli_parse(argc, argv, &cfg, err, sizeof err);
    if (act == WS_CLI_HELP) {
        fputs(ws_cli_usage(), stdout);
        return 0;
    }
    if (act == WS_CLI_VERSION) {
        printf("wspush %s\n", WSPUSH_VERSION);
        return 0;
    }
    if (act < 0) {
        fprintf(stderr, "wspush: %s (try --help)\n", err);
        return 2;
    }
    ws_log_set_level(cfg.log_level);
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

    static ws_server_t srv; /* large (read buffer): keep it off the stack */
    uv_loop_t *loop = uv_default_loop();
    if (ws_server_init(&srv, loop, &cfg, err, sizeof err) != 0) {
        fprintf(stderr, "wspush: %s\n", err);
        uv_loop_close(loop);
        return 1;
    }
    ws_log_info("wspush %s listening on http://%s:%d (script %s)", WSPUSH_VERSION, cfg.host,
                ws_server_port(&srv), cfg.script);
    ws_server_run(&srv);
    ws_server_free(&srv);
    /* Timers closed by ws_server_free need one more turn for their close callbacks. */
    uv_run(loop, UV_RUN_NOWAIT);
    if (uv_loop_close(loop) != 0)
        ws_log_warn("event loop closed with live handles");
    return 0;
}
