/*
 * reload.h: hot reload. Watches the script and the project modules it loaded
 * (inotify on their directories, so editors that save by rename are seen),
 * debounces bursts of events into one reload, and reloads on SIGHUP.
 */
#ifndef WS_RELOAD_H
#define WS_RELOAD_H

#include <stddef.h>
#include <uv.h>

typedef struct ws_server_s ws_server_t;

typedef struct ws_reload_s ws_reload_t;

typedef struct {
    uv_fs_event_t ev;
    ws_reload_t *r;
    char *dir;
    int used;               /* still needed after the latest reload */
} ws_watch_dir_t;

struct ws_reload_s {
    ws_server_t *srv;
    int watch;              /* 0 with --no-watch */
    uv_timer_t debounce;
    uv_signal_t sighup;
    ws_watch_dir_t **dirs;  /* each freed in its close callback */
    size_t ndirs;
    char **files;           /* real paths being watched */
    size_t nfiles;
    char changed[512];      /* base names seen changing since the last reload */
};

/* Start watching (unless watch is 0) and listening for SIGHUP. */
void ws_reload_init(ws_reload_t *r, ws_server_t *srv, int watch);

/* Reload now; why is logged ("SIGHUP", file names). Returns 0 on success. */
int ws_reload_now(ws_reload_t *r, const char *why);

/* Stop watching; handles close on the next loop turn. */
void ws_reload_close(ws_reload_t *r);

#endif
