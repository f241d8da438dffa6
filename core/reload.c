#include "reload.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "log.h"

/* Editors write a file in several steps (truncate + write, write a temporary
 * and rename it, several quick saves): reload this long after the last event. */
#define DEBOUNCE_MS 30

static void on_dir_closed(uv_handle_t *h)
{
    ws_watch_dir_t *d = h->data;
    free(d->dir);
    free(d);
}

static void forget_files(ws_reload_t *r)
{
    for (size_t i = 0; i < r->nfiles; i++)
        free(r->files[i]);
    free(r->files);
    r->files = NULL;
    r->nfiles = 0;
}

/* Stop the watches whose directory is no longer needed (all of them when all is set). */
static void unwatch(ws_reload_t *r, int all)
{
    size_t kept = 0;
    for (size_t i = 0; i < r->ndirs; i++) {
        if (all || !r->dirs[i]->used)
            uv_close((uv_handle_t *)&r->dirs[i]->ev, on_dir_closed);
        else
            r->dirs[kept++] = r->dirs[i];
    }
    r->ndirs = kept;
    if (all) {
        free(r->dirs);
        r->dirs = NULL;
    }
}

static void add_file(void *ud, const char *path)
{
    ws_reload_t *r = ud;
    for (size_t i = 0; i < r->nfiles; i++)
        if (strcmp(r->files[i], path) == 0)
            return;
    r->files = ws_realloc(r->files, (r->nfiles + 1) * sizeof *r->files);
    r->files[r->nfiles++] = ws_strndup(path, strlen(path));
}

static int watched(ws_reload_t *r, const char *dir, const char *name)
{
    size_t dl = strlen(dir);
    for (size_t i = 0; i < r->nfiles; i++) {
        const char *f = r->files[i];
        if (strncmp(f, dir, dl) == 0 && f[dl] == '/' && strcmp(f + dl + 1, name) == 0)
            return 1;
    }
    return 0;
}

static void on_debounce(uv_timer_t *t)
{
    ws_reload_t *r = t->data;
    /* An empty script is a save caught between truncate and write: its
     * write will bring another event. */
    uv_fs_t req;
    if (uv_fs_stat(NULL, &req, r->script, NULL) == 0 && req.statbuf.st_size == 0) {
        uv_fs_req_cleanup(&req);
        ws_log_debug("%s is empty, waiting for the rest of the save", r->script);
        return;
    }
    uv_fs_req_cleanup(&req);
    char why[sizeof r->changed];
    snprintf(why, sizeof why, "%s", r->changed);
    r->changed[0] = '\0';
    ws_reload_now(r, why);
}

static void on_fs_event(uv_fs_event_t *ev, const char *name, int events, int status)
{
    ws_watch_dir_t *d = ev->data;
    ws_reload_t *r = d->r;
    (void)events;
    if (status < 0 || !name || !watched(r, d->dir, name))
        return;
    if (!strstr(r->changed, name)) {
        size_t n = strlen(r->changed);
        snprintf(r->changed + n, sizeof r->changed - n, "%s%s", n ? ", " : "", name);
    }
    uv_timer_start(&r->debounce, on_debounce, DEBOUNCE_MS, 0);
}

static void watch_dir(ws_reload_t *r, const char *dir, size_t len)
{
    for (size_t i = 0; i < r->ndirs; i++) {
        if (strlen(r->dirs[i]->dir) == len && strncmp(r->dirs[i]->dir, dir, len) == 0) {
            r->dirs[i]->used = 1;
            return;
        }
    }
    ws_watch_dir_t *d = ws_calloc(1, sizeof *d);
    d->used = 1;
    d->r = r;
    d->dir = ws_strndup(dir, len);
    uv_fs_event_init(r->loop, &d->ev);
    d->ev.data = d;
    int e = uv_fs_event_start(&d->ev, on_fs_event, d->dir, 0);
    if (e != 0) {
        ws_log_warn("cannot watch %s: %s (reload with SIGHUP)", d->dir, uv_strerror(e));
        uv_close((uv_handle_t *)&d->ev, on_dir_closed);
        return;
    }
    r->dirs = ws_realloc(r->dirs, (r->ndirs + 1) * sizeof *r->dirs);
    r->dirs[r->ndirs++] = d;
}

/* Watch the directories of the script and of its project modules. Watches that are still needed stay as they are: removing and
 * adding an inotify watch on the same directory in quick succession can
 * lose the events in between. */
static void rewatch(ws_reload_t *r)
{
    /* Files watched before stay watched: a module missing for a moment (an
     * editor's rename dance) must not drop out of the set. */
    r->ops->files(r->ud, add_file, r);
    for (size_t i = 0; i < r->ndirs; i++)
        r->dirs[i]->used = 0;
    for (size_t i = 0; i < r->nfiles; i++) {
        const char *slash = strrchr(r->files[i], '/');
        if (slash)
            watch_dir(r, r->files[i], slash == r->files[i] ? 1 : (size_t)(slash - r->files[i]));
    }
    unwatch(r, 0);
    ws_log_debug("watching %zu files in %zu directories", r->nfiles, r->ndirs);
}

static void on_sighup(uv_signal_t *h, int signum)
{
    (void)signum;
    ws_reload_now(h->data, "SIGHUP");
}

void ws_reload_init(ws_reload_t *r, uv_loop_t *loop, const char *script, int watch,
                    const ws_reload_ops_t *ops, void *ud)
{
    memset(r, 0, sizeof *r);
    r->loop = loop;
    r->script = script;
    r->ops = ops;
    r->ud = ud;
    r->watch = watch;
    uv_timer_init(loop, &r->debounce);
    r->debounce.data = r;
    uv_signal_init(loop, &r->sighup);
    r->sighup.data = r;
    uv_signal_start(&r->sighup, on_sighup, SIGHUP);
    if (watch)
        rewatch(r);
}

int ws_reload_now(ws_reload_t *r, const char *why)
{
    if (r->ops->reload(r->ud, why) != 0)
        return -1;
    /* The new version may require other modules: follow them. */
    if (r->watch)
        rewatch(r);
    return 0;
}

void ws_reload_rewatch(ws_reload_t *r)
{
    if (r->watch)
        rewatch(r);
}

void ws_reload_close(ws_reload_t *r)
{
    unwatch(r, 1);
    forget_files(r);
    uv_close((uv_handle_t *)&r->debounce, NULL);
    uv_close((uv_handle_t *)&r->sighup, NULL);
}
