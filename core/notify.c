#define _GNU_SOURCE /* SOCK_CLOEXEC */
#include "notify.h"

#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

static int fd = -1;
static struct sockaddr_un addr;
static socklen_t addrlen;

void ws_notify_init(void)
{
    const char *p = getenv("NOTIFY_SOCKET");
    if (!p || !*p)
        return;
    size_t n = strlen(p);
    if ((p[0] != '/' && p[0] != '@') || n >= sizeof addr.sun_path) {
        ws_log_warn("NOTIFY_SOCKET=%s: not a unix socket path, not telling systemd", p);
        unsetenv("NOTIFY_SOCKET");
        return;
    }
    memset(&addr, 0, sizeof addr);
    addr.sun_family = AF_UNIX;
    memcpy(addr.sun_path, p, n);
    if (p[0] == '@')
        addr.sun_path[0] = '\0'; /* abstract: the name is the bytes after the NUL */
    addrlen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
    unsetenv("NOTIFY_SOCKET");
    fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        ws_log_warn("NOTIFY_SOCKET: cannot make a socket: %s", strerror(errno));
}

int ws_notify(const char *fmt, ...)
{
    if (fd < 0)
        return 0;
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    /* A long STATUS is cut; what comes before it still arrives. */
    size_t len = n < 0 ? 0 : (size_t)n < sizeof msg ? (size_t)n : sizeof msg - 1;
    if (sendto(fd, msg, len, MSG_NOSIGNAL, (struct sockaddr *)&addr, addrlen) < 0) {
        ws_log_debug("NOTIFY_SOCKET: %s", strerror(errno));
        return -1;
    }
    return 0;
}

/* The STATUS= updates: the status text last sent, compared once a second. */
#define STATUS_MS 1000
static uv_timer_t timer;
static int timing;
static ws_notify_status_fn status_fn;
static void *status_ud;
static char last[512];

static void send_status(const char *head, const char *now)
{
    if (ws_notify("%sSTATUS=%s", head, now) == 0)
        memcpy(last, now, sizeof last);
}

/* The status as it is now, after head (READY=1...). */
static void send_current(const char *head)
{
    char now[sizeof last];
    status_fn(status_ud, now, sizeof now);
    send_status(head, now);
}

static void on_timer(uv_timer_t *t)
{
    (void)t;
    char now[sizeof last];
    status_fn(status_ud, now, sizeof now);
    if (strcmp(now, last) != 0)
        send_status("", now);
}

void ws_notify_serving(uv_loop_t *loop, ws_notify_status_fn status, void *ud)
{
    if (fd < 0)
        return;
    status_fn = status;
    status_ud = ud;
    send_current("READY=1\n");
    uv_timer_init(loop, &timer);
    uv_timer_start(&timer, on_timer, STATUS_MS, STATUS_MS);
    uv_unref((uv_handle_t *)&timer);
    timing = 1;
}

void ws_notify_ready(void)
{
    if (fd >= 0 && status_fn)
        send_current("READY=1\n");
}

void ws_notify_stopping(const char *status)
{
    if (timing)
        uv_close((uv_handle_t *)&timer, NULL);
    timing = 0;
    ws_notify("STOPPING=1\nSTATUS=%s", status);
}

void ws_notify_reloading(const char *why)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ws_notify("RELOADING=1\nMONOTONIC_USEC=%llu\nSTATUS=reloading (%s)",
              (unsigned long long)ts.tv_sec * 1000000ull + (unsigned long long)ts.tv_nsec / 1000,
              why);
}
