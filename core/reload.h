/*
 * reload.h: hot reload. Watches the script and the project modules it loaded
 * (inotify on their directories, so editors that save by rename are seen),
 * debounces bursts of events into one reload, and reloads on SIGHUP. What a
 * reload does, and which files it depends on, is the application's: it is
 * asked through the callbacks below. Loop thread only.
 */
#ifndef WS_RELOAD_H
#define WS_RELOAD_H

#include <stddef.h>
#include <uv.h>

typedef struct ws_reload_s ws_reload_t;

typedef struct {
    /* Call cb(cb_ud, path) with the real path of every file to watch. */
    void (*files)(void *ud, void (*cb)(void *cb_ud, const char *path), void *cb_ud);
    /* Reload now; why says what triggered it. Returns 0 when the new version
     * serves, -1 when the old one keeps serving. */
    int (*reload)(void *ud, const char *why);
} ws_reload_ops_t;

typedef struct {
    uv_fs_event_t ev;
    ws_reload_t *r;
    char *dir;
    int used;               /* still needed after the latest reload */
} ws_watch_dir_t;

struct ws_reload_s {
    uv_loop_t *loop;
    const ws_reload_ops_t *ops;
    void *ud;
    const char *script;     /* an empty script is a save in progress: wait for the rest */
    int watch;              /* 0 with --no-watch */
    uv_timer_t debounce;
    uv_signal_t sighup;
    ws_watch_dir_t **dirs;  /* each freed in its close callback */
    size_t ndirs;
    char **files;           /* real paths being watched */
    size_t nfiles;
    char changed[512];      /* base names seen changing since the last reload */
};

/* Start watching (unless watch is 0) and listening for SIGHUP. script must
 * stay valid while r is in use. */
void ws_reload_init(ws_reload_t *r, uv_loop_t *loop, const char *script, int watch,
                    const ws_reload_ops_t *ops, void *ud);

/* Reload now; why says what triggered it ("SIGHUP", file names). Returns 0 on success. */
int ws_reload_now(ws_reload_t *r, const char *why);

/* Ask for the file list again and watch what it names (after a reload
 * that the application finished later than its reload callback returned). */
void ws_reload_rewatch(ws_reload_t *r);

/* Stop watching; handles close on the next loop turn. */
void ws_reload_close(ws_reload_t *r);

#endif
