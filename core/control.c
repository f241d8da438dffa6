#define _GNU_SOURCE /* SOCK_CLOEXEC */
#include "control.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "buf.h"
#include "log.h"

struct ws_control_req_s {
    uv_pipe_t pipe;
    ws_control_t *c;
    ws_control_req_t *next, **pprev;
    char line[64];
    size_t len;
    uint64_t want;  /* the attempt it waits for */
    int waiting;
    int answered;   /* its answer is written or it is closing */
    uv_write_t wr;
    char out[1024];
};

static void on_req_closed(uv_handle_t *h)
{
    ws_control_req_t *r = h->data;
    if (r->next)
        r->next->pprev = r->pprev;
    *r->pprev = r->next;
    free(r);
}

static void req_close(ws_control_req_t *r)
{
    r->answered = 1;
    r->waiting = 0;
    uv_close((uv_handle_t *)&r->pipe, on_req_closed);
}

static void on_written(uv_write_t *wr, int status)
{
    (void)status; /* a client gone before its answer has nothing to learn */
    ws_control_req_t *r = wr->data;
    uv_close((uv_handle_t *)&r->pipe, on_req_closed);
}

static void answer(ws_control_req_t *r, int ok, const char *msg)
{
    if (r->answered)
        return;
    r->answered = 1;
    r->waiting = 0;
    int n = snprintf(r->out, sizeof r->out, "%s %s", ok ? "ok" : "error", msg);
    size_t len = n < 0 ? 0 : (size_t)n < sizeof r->out - 1 ? (size_t)n : sizeof r->out - 2;
    /* One line: a multi-line error (a traceback) keeps its first line's place. */
    for (size_t i = 0; i < len; i++)
        if (r->out[i] == '\n' || r->out[i] == '\r')
            r->out[i] = ' ';
    r->out[len++] = '\n';
    uv_buf_t b = uv_buf_init(r->out, (unsigned)len);
    r->wr.data = r;
    if (uv_write(&r->wr, (uv_stream_t *)&r->pipe, &b, 1, on_written) != 0)
        uv_close((uv_handle_t *)&r->pipe, on_req_closed);
}

static void on_alloc(uv_handle_t *h, size_t size, uv_buf_t *buf)
{
    ws_control_req_t *r = h->data;
    (void)size;
    buf->base = r->line + r->len;
    buf->len = sizeof r->line - 1 - r->len;
}

static void on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
    ws_control_req_t *r = st->data;
    (void)buf;
    if (n < 0) {
        if (!r->answered)
            req_close(r);
        return;
    }
    r->len += (size_t)n;
    r->line[r->len] = '\0';
    char *nl = strchr(r->line, '\n');
    if (!nl) {
        if (r->len == sizeof r->line - 1) {
            uv_read_stop(st);
            answer(r, 0, "command too long");
        }
        return;
    }
    uv_read_stop(st);
    *nl = '\0';
    if (nl > r->line && nl[-1] == '\r')
        nl[-1] = '\0';
    if (strcmp(r->line, "reload") != 0) {
        answer(r, 0, "unknown command (the commands: reload)");
        return;
    }
    ws_control_t *c = r->c;
    r->want = c->seq + 1;
    r->waiting = 1;
    c->ops->reload(c->ud);
}

static void on_connection(uv_stream_t *server, int status)
{
    ws_control_t *c = server->data;
    if (status < 0)
        return;
    ws_control_req_t *r = ws_calloc(1, sizeof *r);
    r->c = c;
    uv_pipe_init(c->loop, &r->pipe, 0);
    r->pipe.data = r;
    r->next = c->reqs;
    if (c->reqs)
        c->reqs->pprev = &r->next;
    r->pprev = &c->reqs;
    c->reqs = r;
    if (uv_accept(server, (uv_stream_t *)&r->pipe) != 0 ||
        uv_read_start((uv_stream_t *)&r->pipe, on_alloc, on_read) != 0)
        req_close(r);
}

/* A connection to whoever listens at path (its length checked by the
 * caller), or -1 with errno set. */
static int dial(const char *path)
{
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    snprintf(a.sun_path, sizeof a.sun_path, "%s", path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        int e = errno;
        close(fd);
        errno = e;
        fd = -1;
    }
    return fd;
}

/* A socket file left by a server that died: replace it; one in use: refuse. */
static int clear_path(const char *path, char *err, size_t errlen)
{
    struct stat st;
    if (lstat(path, &st) != 0)
        return 0;
    if (!S_ISSOCK(st.st_mode)) {
        snprintf(err, errlen, "--control-socket %s: exists and is not a socket", path);
        return -1;
    }
    int fd = dial(path);
    if (fd >= 0) {
        close(fd);
        snprintf(err, errlen, "--control-socket %s: another server listens there", path);
        return -1;
    }
    unlink(path);
    return 0;
}

int ws_control_open(ws_control_t *c, uv_loop_t *loop, const char *path,
                    const ws_control_ops_t *ops, void *ud, char *err, size_t errlen)
{
    memset(c, 0, sizeof *c);
    if (strlen(path) >= sizeof((struct sockaddr_un *)0)->sun_path) {
        snprintf(err, errlen, "--control-socket %s: path too long for a unix socket", path);
        return -1;
    }
    if (clear_path(path, err, errlen) != 0)
        return -1;
    uv_pipe_init(loop, &c->listener, 0);
    c->listener.data = c;
    /* Created 0600 rather than chmod-ed after: nobody else connects in between. */
    mode_t old = umask(0177);
    int e = uv_pipe_bind(&c->listener, path);
    umask(old);
    if (e == 0)
        e = uv_listen((uv_stream_t *)&c->listener, 16, on_connection);
    if (e != 0) {
        snprintf(err, errlen, "--control-socket %s: %s", path, uv_strerror(e));
        uv_close((uv_handle_t *)&c->listener, NULL);
        return -1;
    }
    c->loop = loop;
    c->path = ws_strndup(path, strlen(path));
    c->ops = ops;
    c->ud = ud;
    return 0;
}

uint64_t ws_control_begin(ws_control_t *c) { return ++c->seq; }

void ws_control_end(ws_control_t *c, uint64_t seq, int ok, const char *msg)
{
    for (ws_control_req_t *r = c->reqs; r; r = r->next)
        if (r->waiting && r->want == seq)
            answer(r, ok, msg);
}

void ws_control_retag(ws_control_t *c, uint64_t from, uint64_t to)
{
    for (ws_control_req_t *r = c->reqs; r; r = r->next)
        if (r->waiting && r->want == from)
            r->want = to;
}

void ws_control_close(ws_control_t *c)
{
    if (!c->path)
        return;
    uv_close((uv_handle_t *)&c->listener, NULL);
    unlink(c->path);
    free(c->path);
    c->path = NULL;
    for (ws_control_req_t *r = c->reqs; r; r = r->next) {
        if (r->waiting)
            answer(r, 0, "the server is stopping");
        else if (!r->answered)
            req_close(r);
    }
}

/* ---- the client ---- */

int ws_control_ask(const char *path, const char *cmd, int timeout_ms, char *msg, size_t msglen)
{
    if (strlen(path) >= sizeof((struct sockaddr_un *)0)->sun_path) {
        snprintf(msg, msglen, "%s: path too long for a unix socket", path);
        return 1;
    }
    int fd = dial(path);
    if (fd < 0) {
        snprintf(msg, msglen, "cannot connect to %s: %s (is wspush running with "
                 "--control-socket %s?)", path, strerror(errno), path);
        return 1;
    }
    char line[1024];
    int n = snprintf(line, sizeof line, "%s\n", cmd);
    if (send(fd, line, (size_t)n, MSG_NOSIGNAL) != n) {
        snprintf(msg, msglen, "%s: %s", path, strerror(errno));
        close(fd);
        return 1;
    }
    size_t len = 0;
    uint64_t deadline = uv_hrtime() + (uint64_t)timeout_ms * 1000000u;
    for (;;) {
        uint64_t now = uv_hrtime();
        if (now >= deadline) {
            snprintf(msg, msglen, "no answer from %s within %d s", path, timeout_ms / 1000);
            close(fd);
            return 1;
        }
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int r = poll(&p, 1, (int)((deadline - now) / 1000000u) + 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            continue;
        ssize_t got = recv(fd, line + len, sizeof line - 1 - len, 0);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0 || (len += (size_t)got) == sizeof line - 1 || memchr(line, '\n', len))
            break;
    }
    close(fd);
    line[len] = '\0';
    char *nl = strchr(line, '\n');
    if (nl)
        *nl = '\0';
    if (strncmp(line, "ok ", 3) == 0) {
        snprintf(msg, msglen, "%s", line + 3);
        return 0;
    }
    if (strncmp(line, "error ", 6) == 0)
        snprintf(msg, msglen, "%s", line + 6);
    else
        snprintf(msg, msglen, "%s closed without an answer", path);
    return 1;
}
