/*
 * wsfloor: the least a WebSocket echo server can do, as the floor of the round-trip row.
 *
 *   wsfloor [PORT]      (0 or none: a free port; prints "listening on http://127.0.0.1:PORT")
 *
 * One connection at a time, blocking system calls only: read the upgrade, answer 101 (and the
 * demo's "Welcome", as handlers/echo.lua and the peers greet), then per
 * frame read its header and payload, unmask, write it back in one write(2). No event loop, no
 * allocation, no checks beyond what it needs to stay in bounds: not a server, a measure of what
 * this machine's loopback, scheduler and system calls cost a round trip before any server adds
 * its share (tests/bench/run.sh --servers "... floor"). Two system calls per message (read,
 * write) where a server that waits on many connections needs a third (epoll_wait).
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "handshake.h"

/* Payloads up to this size are echoed; a bigger frame ends the connection. */
#define MAX_PAYLOAD (1 << 16)

static int read_exact(int fd, uint8_t *p, size_t n)
{
    while (n) {
        ssize_t r = read(fd, p, n);
        if (r <= 0)
            return -1;
        p += r;
        n -= (size_t)r;
    }
    return 0;
}

/* Read the request head, answer 101 with the key's accept value. */
static int upgrade(int fd)
{
    char req[8192];
    size_t len = 0;
    while (len < sizeof req - 1) {
        ssize_t r = read(fd, req + len, sizeof req - 1 - len);
        if (r <= 0)
            return -1;
        len += (size_t)r;
        req[len] = '\0';
        if (strstr(req, "\r\n\r\n"))
            break;
    }
    const char *k = NULL;
    for (char *line = strstr(req, "\r\n"); line && !k; line = strstr(line + 2, "\r\n"))
        if (strncasecmp(line + 2, "Sec-WebSocket-Key:", 18) == 0)
            k = line + 20;
    if (!k)
        return -1;
    while (*k == ' ')
        k++;
    size_t klen = strcspn(k, "\r\n ");
    char accept[29], resp[256];
    ws_handshake_accept(k, klen, accept);
    /* With the demo's greeting, which wsbench waits for before it counts a connection ready. */
    int n = snprintf(resp, sizeof resp,
                     "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n"
                     "\x81\x07Welcome",
                     accept);
    return write(fd, resp, (size_t)n) == n ? 0 : -1;
}

static void serve(int fd)
{
    static uint8_t buf[MAX_PAYLOAD + 14];
    if (upgrade(fd) != 0)
        return;
    for (;;) {
        uint8_t h[2], mask[4];
        if (read_exact(fd, h, 2) != 0)
            return;
        uint64_t n = h[1] & 0x7f;
        if (n >= 126) {
            uint8_t ext[8];
            size_t el = n == 126 ? 2 : 8;
            if (read_exact(fd, ext, el) != 0)
                return;
            n = 0;
            for (size_t i = 0; i < el; i++)
                n = n << 8 | ext[i];
        }
        if (n > MAX_PAYLOAD || !(h[1] & 0x80) || read_exact(fd, mask, 4) != 0)
            return;
        size_t hl = n < 126 ? 2 : 4;
        if (read_exact(fd, buf + hl, (size_t)n) != 0)
            return;
        for (uint64_t i = 0; i < n; i++)
            buf[hl + i] ^= mask[i & 3];
        buf[0] = h[0];
        if (n < 126) {
            buf[1] = (uint8_t)n;
        } else {
            buf[1] = 126;
            buf[2] = (uint8_t)(n >> 8);
            buf[3] = (uint8_t)n;
        }
        if (write(fd, buf, hl + (size_t)n) != (ssize_t)(hl + n) || (h[0] & 0x0f) == 0x8)
            return; /* a close frame goes back as it came, then the connection ends */
    }
}

int main(int argc, char **argv)
{
    int port = argc > 1 ? atoi(argv[1]) : 0, one = 1;
    int l = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof a;
    setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (l < 0 || bind(l, (struct sockaddr *)&a, sizeof a) != 0 || listen(l, 16) != 0 ||
        getsockname(l, (struct sockaddr *)&a, &al) != 0) {
        perror("wsfloor");
        return 1;
    }
    fprintf(stderr, "wsfloor listening on http://127.0.0.1:%d\n", ntohs(a.sin_port));
    for (;;) {
        int fd = accept(l, NULL, NULL);
        if (fd < 0)
            continue;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        serve(fd);
        close(fd);
    }
}
