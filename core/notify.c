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

void ws_notify_reloading(const char *why)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ws_notify("RELOADING=1\nMONOTONIC_USEC=%llu\nSTATUS=reloading (%s)",
              (unsigned long long)ts.tv_sec * 1000000ull + (unsigned long long)ts.tv_nsec / 1000,
              why);
}

void ws_notify_close(void)
{
    if (fd >= 0)
        close(fd);
    fd = -1;
}
