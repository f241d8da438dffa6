/* The plain TCP transport, its listener and outbound connects. */
#define _DEFAULT_SOURCE /* SO_REUSEPORT */
#include "tcp.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "buf.h"
#include "log.h"
#include "ring.h"

typedef struct {
    ws_transport_t base;  /* first: a ws_tcp_t is its transport */
    ws_write_t *w;        /* the write in flight */
    /* Its data is the ws_io_t. Last, and allocated to the size of the kind
     * it is: a unix socket (outbound clients only) does not make every TCP
     * connection larger. */
    union {
        uv_tcp_t tcp;
        uv_pipe_t pipe;
    } h;
} ws_tcp_t;

/* How a write in flight is being sent (ws_write_t._kind). */
enum { SEND_RING = 1, SEND_UV = 2, SEND_DONE = 3 };

#define TCP_OF(hd) ((ws_tcp_t *)((char *)(hd) - offsetof(ws_tcp_t, h)))
#define IO_OF(t) ((ws_io_t *)(t)->h.tcp.data)

/* --- writing --- */

static void complete(ws_tcp_t *t, ws_write_t *w, int status)
{
    t->w = NULL;
    w->cb(w, status, w->_waited);
}

static void on_uv_write(uv_write_t *req, int status)
{
    ws_write_t *w = req->data;
    ws_tcp_t *t = (ws_tcp_t *)w->_t;
    if (!t) {
        w->cb(w, UV_ECANCELED, 1);
        return;
    }
    complete(t, w, status);
}

/* The socket is full: libuv waits for room and writes the rest. */
static void wait_write(ws_tcp_t *t, ws_write_t *w)
{
    w->_kind = SEND_UV;
    w->_waited = 1;
    if (!w->_uv)
        w->_uv = ws_malloc(sizeof *w->_uv);
    w->_uv->data = w;
    int r = uv_write(w->_uv, (uv_stream_t *)&t->h.tcp, w->iov, w->n, on_uv_write);
    if (r < 0) {
        /* The completion is due but must not run inside the caller. */
        w->_kind = SEND_DONE;
        w->_status = r;
        ws_transport_defer(&t->base);
    }
}

/* Drop the first done bytes of w's iovec. */
static void advance(ws_write_t *w, size_t done)
{
    size_t i = 0;
    w->unsent -= done;
    while (i < w->n && done >= w->iov[i].len)
        done -= w->iov[i++].len;
    w->iov += i;
    w->n -= (uint32_t)i;
    if (w->n) {
        w->iov[0].base += done;
        w->iov[0].len -= done;
    }
}

/* The ring finished a send (its ws_ring_cb). */
static void ring_done(void *req, int res)
{
    ws_write_t *w = req;
    ws_tcp_t *t = (ws_tcp_t *)w->_t;
    if (!t) {
        w->cb(w, UV_ECANCELED, w->_waited);
        return;
    }
    if (res == -EAGAIN)
        res = 0;
    if (res < 0 || t->base.closing) {
        complete(t, w, res < 0 ? res : UV_ECANCELED);
        return;
    }
    if ((size_t)res == w->unsent) { /* the usual case: all of it left at once */
        w->unsent = 0;
        complete(t, w, 0);
        return;
    }
    advance(w, (size_t)res);
    if (w->n == 0)
        complete(t, w, 0);
    else
        wait_write(t, w);
}

int ws_tcp_use_ring(ws_io_t *io, char *err, size_t errlen)
{
    if (!io->ring)
        io->ring = ws_ring_new(io->loop, ring_done, err, errlen);
    return io->ring ? 0 : -1;
}

static int tcp_write(ws_transport_t *bt, ws_write_t *w)
{
    ws_tcp_t *t = (ws_tcp_t *)bt;
    assert(!t->w); /* one write at a time */
    if (bt->closing)
        return UV_ECANCELED;
    w->_t = bt;
    w->_waited = 0;
    w->_status = 0;
    t->w = w;
    if (IO_OF(t)->ring) {
        w->_kind = SEND_RING;
        memset(&w->_msg, 0, sizeof w->_msg);
        w->_msg.msg_iov = (struct iovec *)w->iov; /* libuv lays uv_buf_t out as iovec on Unix */
        w->_msg.msg_iovlen = w->n;
        uv_os_fd_t fd;
        uv_fileno((uv_handle_t *)&t->h.tcp, &fd);
        ws_ring_send(IO_OF(t)->ring, fd, &w->_msg, w);
        return 0;
    }
    /* Most writes fit in the socket buffer: try first, wait only for the rest. */
    int r = uv_try_write((uv_stream_t *)&t->h.tcp, w->iov, w->n);
    if (r == UV_EAGAIN || r == UV_ENOSYS)
        r = 0;
    if (r >= 0) {
        advance(w, (size_t)r);
        if (w->n) {
            wait_write(t, w);
            return 0;
        }
    }
    w->_kind = SEND_DONE;
    w->_status = r < 0 ? r : 0;
    ws_transport_defer(bt);
    return 0;
}

/* --- reading --- */

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    ws_io_t *io = IO_OF(TCP_OF(h));
    (void)suggested;
    /* One read buffer serves every connection: reads are processed to the end
     * before the next one starts, and what the owner keeps it copies out. */
    *buf = uv_buf_init((char *)io->rbuf, (unsigned)io->rbuf_len);
}

/* Watching: no buffer, so libuv calls on_read with UV_ENOBUFS, reading nothing. */
static void on_alloc_none(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)h;
    (void)suggested;
    *buf = uv_buf_init(NULL, 0);
}

/* Watching: the socket is readable; look without taking. The end of the
 * stream or an error is told; bytes are left for the owner, and since epoll
 * would wake us for them on every turn, the watch ends until it reads. */
static void watch(ws_tcp_t *t)
{
    uv_os_fd_t fd;
    char b;
    if (uv_fileno((uv_handle_t *)&t->h.tcp, &fd) != 0)
        return;
    ssize_t n = recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return;
    uv_read_stop((uv_stream_t *)&t->h.tcp);
    if (n <= 0)
        t->base.cb->on_end(t->base.ud, n == 0 ? UV_EOF : uv_translate_sys_error(errno));
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    ws_tcp_t *t = TCP_OF(st);
    if (nread < 0) {
        if (nread == UV_ENOBUFS && t->base.read_mode == WS_READ_WATCH) {
            watch(t);
            return;
        }
        uv_read_stop(st);
        t->base.cb->on_end(t->base.ud, (int)nread);
        return;
    }
    if (nread == 0)
        return;
    ws_transport_deliver(&t->base, (uint8_t *)buf->base, (size_t)nread);
}

static void tcp_read(ws_transport_t *bt, int mode)
{
    ws_tcp_t *t = (ws_tcp_t *)bt;
    /* Stopped first: a watch may have stopped itself, and the allocator
     * tells the modes apart. */
    uv_read_stop((uv_stream_t *)&t->h.tcp);
    if (mode != WS_READ_OFF)
        uv_read_start((uv_stream_t *)&t->h.tcp, mode == WS_READ_WATCH ? on_alloc_none : on_alloc, on_read);
}

static void tcp_run(ws_transport_t *bt)
{
    ws_tcp_t *t = (ws_tcp_t *)bt;
    if (bt->closing)
        return; /* the handle's close callback finishes it */
    if (t->w && t->w->_kind == SEND_DONE)
        complete(t, t->w, t->w->_status);
    if (bt->stash && !bt->paused && !bt->closing)
        ws_transport_deliver(bt, NULL, 0);
}

/* --- ending --- */

static void on_shutdown(uv_shutdown_t *req, int status)
{
    ws_tcp_t *t = req->data;
    free(req);
    if (!t->base.closing)
        t->base.cb->on_shutdown(t->base.ud, status);
}

static void tcp_shutdown(ws_transport_t *bt)
{
    ws_tcp_t *t = (ws_tcp_t *)bt;
    uv_shutdown_t *req = ws_malloc(sizeof *req);
    req->data = t;
    int r = uv_shutdown(req, (uv_stream_t *)&t->h.tcp, on_shutdown);
    if (r < 0) {
        free(req);
        bt->cb->on_shutdown(bt->ud, r);
    }
}

static void on_closed(uv_handle_t *h)
{
    ws_tcp_t *t = TCP_OF(h);
    /* A write that completed but was not reported yet is reported now; a
     * ring send outlives the socket: its completion only tells the writer. */
    if (t->w && t->w->_kind == SEND_DONE)
        complete(t, t->w, t->w->_status);
    if (t->w)
        t->w->_t = NULL;
    if (t->base.cb)
        t->base.cb->on_close(t->base.ud);
    free(t);
}

static void tcp_close(ws_transport_t *bt)
{
    ws_tcp_t *t = (ws_tcp_t *)bt;
    uv_read_stop((uv_stream_t *)&t->h.tcp);
    if (t->w && t->w->_kind == SEND_RING)
        ws_ring_cancel(IO_OF(t)->ring, t->w);
    uv_close((uv_handle_t *)&t->h.tcp, on_closed);
}

static ws_io_t *tcp_io(ws_transport_t *bt) { return IO_OF((ws_tcp_t *)bt); }

static size_t tcp_unsent(ws_transport_t *bt)
{
    ws_tcp_t *t = (ws_tcp_t *)bt;
    if (!t->w)
        return 0;
    /* libuv counts what its queued write still has to send. */
    if (t->w->_kind == SEND_UV)
        return uv_stream_get_write_queue_size((uv_stream_t *)&t->h.tcp);
    return t->w->unsent;
}

static const ws_transport_vt_t tcp_vt = {
    .name = "tcp",
    .read = tcp_read,
    .write = tcp_write,
    .shutdown = tcp_shutdown,
    .close = tcp_close,
    .run = tcp_run,
    .io = tcp_io,
    .unsent = tcp_unsent,
};

static ws_tcp_t *tcp_new(ws_io_t *io)
{
    ws_tcp_t *t = ws_calloc(1, offsetof(ws_tcp_t, h) + sizeof(uv_tcp_t));
    ws_transport_init(&t->base, &tcp_vt);
    uv_tcp_init(io->loop, &t->h.tcp);
    t->h.tcp.data = io;
    return t;
}

static ws_tcp_t *pipe_new(ws_io_t *io)
{
    ws_tcp_t *t = ws_calloc(1, sizeof *t);
    ws_transport_init(&t->base, &tcp_vt);
    uv_pipe_init(io->loop, &t->h.pipe, 0);
    t->h.pipe.data = io;
    return t;
}

static void peer_of(ws_tcp_t *t)
{
    struct sockaddr_storage ss;
    int len = sizeof ss;
    if (uv_tcp_getpeername(&t->h.tcp, (struct sockaddr *)&ss, &len) == 0)
        ws_transport_set_peer(&t->base, (struct sockaddr *)&ss);
}

/* --- listening --- */

static void free_unaccepted(uv_handle_t *h) { free(TCP_OF(h)); }

/* At most once a second: a full descriptor table lasts, and every accept
 * would say so. */
static void warn_no_descriptors(ws_tcp_listener_t *l, int status)
{
    uint64_t now = uv_now(l->io->loop);
    if (l->t_warn == 0 || now - l->t_warn >= 1000) {
        l->t_warn = now ? now : 1;
        ws_log_warn("accept: %s: new connections are dropped until descriptors free up",
                    uv_strerror(status));
    }
}

/* Whether this accept took the last descriptor. libuv answers EMFILE on
 * accept itself (it closes a reserve descriptor, accepts and drops the
 * pending connections, reopens it) and does not call us when that drained
 * the queue: without this probe a full table would be silent. Two cheap
 * system calls per accepted connection, none per message. */
static void probe_descriptors(ws_tcp_listener_t *l, int fd)
{
    int d = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (d >= 0)
        close(d);
    else if (errno == EMFILE || errno == ENFILE)
        warn_no_descriptors(l, uv_translate_sys_error(errno));
}

static void on_connection(uv_stream_t *ls, int status)
{
    ws_tcp_listener_t *l = ls->data;
    if (status < 0) {
        /* libuv has already dropped the pending connections (its EMFILE
         * trick), so this does not spin. */
        warn_no_descriptors(l, status);
        return;
    }
    ws_tcp_t *t = tcp_new(l->io);
    if (uv_accept(ls, (uv_stream_t *)&t->h.tcp) != 0) {
        uv_close((uv_handle_t *)&t->h.tcp, free_unaccepted);
        return;
    }
    uv_os_fd_t fd;
    if (uv_fileno((uv_handle_t *)&t->h.tcp, &fd) == 0)
        probe_descriptors(l, fd);
    uv_tcp_nodelay(&t->h.tcp, 1);
    peer_of(t);
    l->cb(l->ud, &t->base);
}

/* An IP literal, localhost, or a name looked up once, at start (an IPv4
 * address first). */
static int parse_addr(const char *host, int port, struct sockaddr_storage *addr, char *err,
                      size_t errlen)
{
    int r = uv_ip4_addr(host, port, (struct sockaddr_in *)addr);
    if (r != 0)
        r = uv_ip6_addr(host, port, (struct sockaddr_in6 *)addr);
    if (r == 0)
        return 0;
    /* localhost is the loopback (RFC 6761) whatever /etc/hosts says, or
     * when a minimal system has none. */
    if (strcasecmp(host, "localhost") == 0)
        return uv_ip4_addr("127.0.0.1", port, (struct sockaddr_in *)addr);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res = NULL;
    int g = getaddrinfo(host, NULL, &hints, &res);
    if (g != 0 || !res) {
        snprintf(err, errlen, "invalid --host address '%s': %s (give an IP address such as "
                 "127.0.0.1, ::1, 0.0.0.0 or ::)", host, g ? gai_strerror(g) : "no address");
        return UV_EINVAL;
    }
    struct addrinfo *pick = res;
    for (struct addrinfo *a = res; a; a = a->ai_next)
        if (a->ai_family == AF_INET) {
            pick = a;
            break;
        }
    memcpy(addr, pick->ai_addr, pick->ai_addrlen);
    if (pick->ai_family == AF_INET)
        ((struct sockaddr_in *)addr)->sin_port = htons((uint16_t)port);
    else
        ((struct sockaddr_in6 *)addr)->sin6_port = htons((uint16_t)port);
    freeaddrinfo(res);
    return 0;
}

const char *ws_tcp_url_host(const char *host, char *buf, size_t len)
{
    if (!strchr(host, ':'))
        return host;
    snprintf(buf, len, "[%s]", host);
    return buf;
}

static void listener_init(ws_tcp_listener_t *l, ws_io_t *io, ws_tcp_accept_cb cb, void *ud)
{
    memset(l, 0, sizeof *l);
    l->io = io;
    l->cb = cb;
    l->ud = ud;
    uv_tcp_init(io->loop, &l->tcp);
    l->tcp.data = l;
}

static int listener_fail(ws_tcp_listener_t *l, int r, const char *what, char *err, size_t errlen)
{
    snprintf(err, errlen, "%s: %s", what, uv_strerror(r));
    uv_close((uv_handle_t *)&l->tcp, NULL);
    uv_run(l->io->loop, UV_RUN_NOWAIT);
    return r;
}

int ws_tcp_listen(ws_tcp_listener_t *l, ws_io_t *io, const char *host, int port,
                  ws_tcp_accept_cb cb, void *ud, char *err, size_t errlen)
{
    struct sockaddr_storage addr;
    int r = parse_addr(host, port, &addr, err, errlen);
    if (r != 0)
        return r;
    listener_init(l, io, cb, ud);
    r = uv_tcp_bind(&l->tcp, (struct sockaddr *)&addr, 0);
    if (r == 0)
        r = uv_listen((uv_stream_t *)&l->tcp, 1024, on_connection);
    if (r != 0) {
        char what[300];
        snprintf(what, sizeof what, "cannot listen on %s:%d", host, port);
        return listener_fail(l, r, what, err, errlen);
    }
    return 0;
}

int ws_tcp_listen_fd(ws_tcp_listener_t *l, ws_io_t *io, int fd, ws_tcp_accept_cb cb, void *ud,
                     char *err, size_t errlen)
{
    listener_init(l, io, cb, ud);
    int r = uv_tcp_open(&l->tcp, fd);
    if (r == 0)
        r = uv_listen((uv_stream_t *)&l->tcp, 1024, on_connection);
    if (r != 0)
        return listener_fail(l, r, "cannot listen on the inherited socket", err, errlen);
    return 0;
}

int ws_tcp_bind_socket(const char *host, int port, int reuseport, int *bound, char *err,
                       size_t errlen)
{
    struct sockaddr_storage addr;
    int r = parse_addr(host, port, &addr, err, errlen);
    if (r != 0)
        return r;
    int fd = socket(addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, errlen, "socket: %s", strerror(errno));
        return uv_translate_sys_error(errno);
    }
    int one = 1;
    socklen_t len = addr.ss_family == AF_INET ? sizeof(struct sockaddr_in)
                                               : sizeof(struct sockaddr_in6);
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
        (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0) ||
        bind(fd, (struct sockaddr *)&addr, len) != 0 || listen(fd, 1024) != 0 ||
        getsockname(fd, (struct sockaddr *)&addr, &len) != 0) {
        r = uv_translate_sys_error(errno);
        snprintf(err, errlen, "cannot listen on %s:%d: %s", host, port, strerror(errno));
        close(fd);
        return r;
    }
    *bound = ntohs(addr.ss_family == AF_INET ? ((struct sockaddr_in *)&addr)->sin_port
                                              : ((struct sockaddr_in6 *)&addr)->sin6_port);
    return fd;
}

int ws_tcp_listener_port(ws_tcp_listener_t *l)
{
    struct sockaddr_storage ss;
    int len = sizeof ss;
    if (uv_tcp_getsockname(&l->tcp, (struct sockaddr *)&ss, &len) != 0)
        return -1;
    if (ss.ss_family == AF_INET6)
        return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

void ws_tcp_listener_close(ws_tcp_listener_t *l)
{
    if (!uv_is_closing((uv_handle_t *)&l->tcp))
        uv_close((uv_handle_t *)&l->tcp, NULL);
}

/* --- connecting --- */

struct ws_tcp_connect_s {
    uv_connect_t req;
    ws_tcp_t *t;
    ws_tcp_connect_cb cb;
    void *ud;
    int cancelled;
};
typedef ws_tcp_connect_t connect_t;

static void on_connect(uv_connect_t *req, int status)
{
    connect_t *c = (connect_t *)req;
    ws_tcp_t *t = c->t;
    if (c->cancelled) {
        /* libuv reports UV_ECANCELED as it closes the handle: its close
         * callback frees t afterwards. */
        free(c);
        return;
    }
    if (status < 0) {
        uv_close((uv_handle_t *)&t->h.tcp, free_unaccepted);
        c->cb(c->ud, NULL, status);
    } else {
        if (t->h.tcp.type == UV_TCP) {
            uv_tcp_nodelay(&t->h.tcp, 1);
            peer_of(t);
        }
        c->cb(c->ud, &t->base, 0);
    }
    free(c);
}

int ws_tcp_connect(ws_io_t *io, const struct sockaddr *addr, ws_tcp_connect_cb cb, void *ud,
                   ws_tcp_connect_t **out)
{
    connect_t *c = ws_calloc(1, sizeof *c);
    c->t = tcp_new(io);
    c->cb = cb;
    c->ud = ud;
    int r = uv_tcp_connect(&c->req, &c->t->h.tcp, addr, on_connect);
    if (r < 0) {
        uv_close((uv_handle_t *)&c->t->h.tcp, free_unaccepted);
        free(c);
        return r;
    }
    *out = c;
    return 0;
}

int ws_tcp_connect_unix(ws_io_t *io, const char *path, ws_tcp_connect_cb cb, void *ud,
                        ws_tcp_connect_t **out)
{
    connect_t *c = ws_calloc(1, sizeof *c);
    c->t = pipe_new(io);
    c->cb = cb;
    c->ud = ud;
    /* libuv reports every failure (a path too long included) through on_connect */
    uv_pipe_connect(&c->req, &c->t->h.pipe, path, on_connect);
    *out = c;
    return 0;
}

void ws_tcp_connect_cancel(ws_tcp_connect_t *c)
{
    c->cancelled = 1;
    uv_close((uv_handle_t *)&c->t->h.tcp, free_unaccepted);
}
