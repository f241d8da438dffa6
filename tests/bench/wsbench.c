/* wsbench: a WebSocket load generator for wspush and its peers. Longer than our
 * ~600-line guide on purpose: the modes share one set of options, phases and report.
 *
 *   wsbench echo   --port P [-c conns] [-k inflight] [-s size] [-d secs | -n count]
 *   wsbench rtt    --port P [-d secs]                    (echo with 1 connection, 1 in flight)
 *   wsbench fanout --port P [-c subscribers] [-k publishes in flight] [-s size] [-d secs]
 *                  [--interval MS]   (open loop: one publish every MS ms; every subscriber's
 *                                     sequence is checked: missed=, dup= in RESULT)
 *   wsbench hold   --port P [-c conns] [--sources S] [--pid SERVER_PID] [--hold secs]
 *                  [--exchange]      (then one message each way and a ping, and held again)
 *   any mode: --tls / --tls-version 1.2|1.3 (wss:// through wbtls.c); --pid also gives the
 *             server's CPU (utime + stime from /proc/PID/stat) per reply, delivery or upgrade
 *
 * Every payload starts with the send time (16 hex digits of CLOCK_MONOTONIC ns) followed by a
 * sequence number (8 hex digits) and ASCII padding, so that a reply ("new message :" + payload)
 * or a delivery carries its own latency. A text message shorter than the payload is the
 * server's greeting ("Welcome") and marks the connection ready. Results are printed for people
 * and as one "RESULT key=value ..." line for scripts. Only 127.0.0.0/8 is accepted as a target,
 * and every phase is bounded in time. */
#define _GNU_SOURCE
#include "hist.h"
#include "wbconn.h"
#include "wbtls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#define TS_DIGITS 16
#define SEQ_DIGITS 8
#define MIN_SIZE (TS_DIGITS + SEQ_DIGITS)
#define MAX_WINDOW 1024

typedef enum { M_ECHO, M_RTT, M_FANOUT, M_HOLD } mode_t_;
typedef enum { P_CONNECT, P_WARMUP, P_MEASURE, P_DRAIN, P_HOLD, P_EXCHANGE, P_HOLD2, P_DONE } phase_t;

typedef struct {
    uint64_t seq;
    uint32_t got;
    uint8_t active;
    uint64_t sent_at;
} slot_t;

static struct {
    /* options */
    mode_t_ mode;
    char host[64];
    int port;
    const char *path, *pub_path;
    int pub_port;     /* fanout: the publisher's server, when not port (another node) */
    long conns, inflight, size, sources, pid, concurrency;
    double duration, warmup, hold, timeout;
    long long count;
    int no_welcome;
    int use_uring;
    long batch, batch_us;
    double interval;  /* fanout: ms between publishes (open loop); 0 = k in flight */
    int tls;          /* 0 cleartext; 1 TLS, any version; 12 or 13 that version only */
    int exchange;     /* hold: one message each way and a ping, then held again */
    /* state */
    wb_loop_t loop;
    wb_conn_t *c;  /* conns entries; for fanout the publisher is c[conns] */
    long nall;     /* entries in c */
    long started, opened, ready, failed, lost;
    long inflight_total;
    phase_t phase;
    uint64_t t_start, t_connected, t_phase_end, t_measure_start, t_measure_end, last_progress;
    uint64_t measured, sent;
    struct rusage ru0, ru1;
    uint64_t sys_r0, sys_w0, wake0, sys_r1, sys_w1, wake1;
    wb_hist_t hist;
    uint8_t *payload;
    /* fanout */
    slot_t slots[MAX_WINDOW];
    uint64_t next_seq, published;
    uint64_t next_pub, missed, dup; /* --interval: next publish time; sequence checks */
    long subs_ready;
    const char *first_error;
    /* server CPU (clock ticks of /proc/PID/stat) at the start, connected, measure start/end */
    long long srv_t0, srv_tc, srv_m0, srv_m1;
    long rss_mid;           /* hold --exchange: VmRSS (kB) after the first hold */
    uint64_t t_exchange;    /* hold --exchange: when the exchange started */
    char tls_desc[96];
} B;

/* --- payload --- */

static const char HEX[] = "0123456789abcdef";

static void make_payload(uint64_t ts, uint64_t seq)
{
    uint8_t *p = B.payload;
    for (int i = TS_DIGITS - 1; i >= 0; i--, ts >>= 4)
        p[i] = (uint8_t)HEX[ts & 15];
    for (int i = SEQ_DIGITS - 1; i >= 0; i--, seq >>= 4)
        p[TS_DIGITS + i] = (uint8_t)HEX[seq & 15];
}

static uint64_t parse_hex(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++) {
        uint8_t ch = p[i];
        v = (v << 4) | (uint64_t)(ch <= '9' ? ch - '0' : ch - 'a' + 10);
    }
    return v;
}

static void send_payload(wb_conn_t *c, uint64_t seq)
{
    make_payload(B.loop.now, seq);
    wb_conn_send(&B.loop, c, WB_OP_TEXT, B.payload, (size_t)B.size);
    B.sent++;
}

/* --- connect phase --- */

static struct sockaddr_in addr_of(const char *ip, int port)
{
    struct sockaddr_in a;
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    inet_pton(AF_INET, ip, &a.sin_addr);
    return a;
}

/* Starts connects until `concurrency` handshakes are pending or all have started. */
static void start_more(void)
{
    struct sockaddr_in dst = addr_of(B.host, B.port);
    struct sockaddr_in pub = addr_of(B.host, B.pub_port > 0 ? B.pub_port : B.port);
    while (B.started < B.nall && B.started - B.ready - B.failed < B.concurrency) {
        long i = B.started++;
        wb_conn_t *c = &B.c[i];
        c->id = (uint32_t)i;
        c->role = (B.mode == M_FANOUT && i == B.conns) ? 1 : 0;
        struct sockaddr_in src, *srcp = NULL;
        if (B.mode == M_HOLD) {
            /* Each source address has its own ephemeral ports: 127.0.0.1, .2, ... */
            src = addr_of("127.0.0.1", 0);
            src.sin_addr.s_addr = htonl(ntohl(src.sin_addr.s_addr) + (uint32_t)(i % B.sources));
            srcp = &src;
        }
        int r = wb_conn_start(&B.loop, c, c->role ? &pub : &dst, srcp,
                              c->role ? B.pub_path : B.path);
        if (r < 0) {
            c->state = WB_CLOSED;
            B.failed++;
            if (!B.first_error)
                B.first_error = strerror(-r);
        }
    }
}

static void set_ready(wb_conn_t *c)
{
    if (c->ready)
        return;
    c->ready = 1;
    B.ready++;
    if (c->role == 0)
        B.subs_ready++;
    if (B.phase == P_CONNECT)
        start_more();
}

static void on_pong(wb_loop_t *loop, wb_conn_t *c)
{
    (void)loop;
    if (B.phase == P_EXCHANGE && c->inflight > 0) {
        c->inflight--;
        B.inflight_total--;
    }
}

static void on_open(wb_loop_t *loop, wb_conn_t *c)
{
    (void)loop;
    if (c->tls && !B.tls_desc[0])
        snprintf(B.tls_desc, sizeof(B.tls_desc), "%s", wb_tls_describe(c->tls));
    B.opened++;
    if (B.no_welcome || c->role == 1)
        set_ready(c);
}

static void on_close(wb_loop_t *loop, wb_conn_t *c, const char *why)
{
    (void)loop;
    if (!B.first_error)
        B.first_error = why;
    if (c->ready) {
        B.lost++;
        B.inflight_total -= c->inflight;
        if (c->role == 0)
            B.subs_ready--;
    } else {
        B.failed++;
        if (B.phase == P_CONNECT)
            start_more();
    }
}

/* --- echo --- */

static int sending(void)
{
    if (B.phase != P_WARMUP && B.phase != P_MEASURE)
        return 0;
    return B.count <= 0 || B.measured + (uint64_t)B.inflight_total < (uint64_t)B.count ||
           B.phase == P_WARMUP;
}

static void echo_message(wb_loop_t *loop, wb_conn_t *c, const uint8_t *p, size_t n, int op)
{
    (void)op;
    if (n < (size_t)B.size) { /* the greeting */
        set_ready(c);
        return;
    }
    uint64_t ts = parse_hex(p + n - B.size, TS_DIGITS);
    c->inflight--;
    B.inflight_total--;
    B.last_progress = loop->now;
    if (B.phase == P_MEASURE) {
        wb_hist_add(&B.hist, loop->now - ts);
        B.measured++;
    }
    if (sending()) {
        send_payload(c, 0);
        c->inflight++;
        B.inflight_total++;
    }
}

static void echo_kick(void)
{
    for (long i = 0; i < B.nall; i++) {
        wb_conn_t *c = &B.c[i];
        if (!c->ready || c->state != WB_OPEN)
            continue;
        for (long k = 0; k < B.inflight; k++)
            send_payload(c, 0);
        c->inflight = (uint32_t)B.inflight;
        B.inflight_total += B.inflight;
    }
}

/* --- fanout --- */

static void publish_next(void)
{
    wb_conn_t *pub = &B.c[B.conns];
    if (pub->state != WB_OPEN)
        return;
    uint64_t seq = B.next_seq++;
    slot_t *s = &B.slots[seq % (uint64_t)B.inflight];
    s->seq = seq;
    s->got = 0;
    s->active = 1;
    s->sent_at = B.loop.now;
    send_payload(pub, seq & 0xffffffffu);
    B.published++;
}

/* --interval: one publish, whoever has received the last. */
static void publish_open_loop(void)
{
    wb_conn_t *pub = &B.c[B.conns];
    if (pub->state != WB_OPEN)
        return;
    send_payload(pub, B.next_seq++ & 0xffffffffu);
    B.published++;
}

/* --interval: every subscriber must see 0, 1, 2, ... (its next expected
 * sequence number is kept in c->inflight). */
static void check_sequence(wb_conn_t *c, uint64_t seq)
{
    uint32_t want = c->inflight, got = (uint32_t)seq;
    if (got == want) {
        c->inflight++;
    } else if (got > want) {
        B.missed += got - want;
        c->inflight = got + 1;
    } else {
        B.dup++;
    }
}

/* --interval: subscribers that have not seen every publish yet. */
static long subscribers_behind(void)
{
    long n = 0;
    for (long i = 0; i < B.conns; i++)
        if (B.c[i].ready && B.c[i].state == WB_OPEN && B.c[i].inflight < (uint32_t)B.next_seq)
            n++;
    return n;
}

static void fanout_message(wb_loop_t *loop, wb_conn_t *c, const uint8_t *p, size_t n, int op)
{
    (void)op;
    if (c->role == 1)
        return; /* anything the server says to the publisher */
    if (n < (size_t)B.size) {
        set_ready(c);
        return;
    }
    const uint8_t *q = p + n - B.size;
    uint64_t ts = parse_hex(q, TS_DIGITS);
    uint64_t seq = parse_hex(q + TS_DIGITS, SEQ_DIGITS);
    B.last_progress = loop->now;
    if (B.phase == P_MEASURE) {
        wb_hist_add(&B.hist, loop->now - ts);
        B.measured++;
    }
    if (B.interval > 0) {
        check_sequence(c, seq);
        return;
    }
    slot_t *s = &B.slots[seq % (uint64_t)B.inflight];
    if (!s->active || (s->seq & 0xffffffffu) != seq)
        return;
    if (++s->got >= (uint32_t)B.subs_ready) {
        s->active = 0;
        if (sending())
            publish_next();
    }
}

static long active_slots(void)
{
    long n = 0;
    for (long i = 0; i < B.inflight; i++)
        n += B.slots[i].active;
    return n;
}

/* --- hold --- */

static long read_rss_kb(long pid)
{
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%ld/status", pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    long kb = -1;
    while (fgets(line, sizeof(line), f))
        if (strncmp(line, "VmRSS:", 6) == 0) {
            kb = strtol(line + 6, NULL, 10);
            break;
        }
    fclose(f);
    return kb;
}

/* utime + stime of process `pid` in clock ticks, or -1. */
static long long read_cpu_ticks(long pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')'); /* the command may hold spaces */
    if (p == NULL)
        return -1;
    unsigned long long ut = 0, st = 0;
    /* after ")": state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime */
    if (sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return -1;
    return (long long)(ut + st);
}

static double server_secs(long long a, long long b)
{
    return a >= 0 && b >= 0 ? (double)(b - a) / (double)sysconf(_SC_CLK_TCK) : -1;
}

/* --- phases --- */

static void snap(struct rusage *ru, uint64_t *r, uint64_t *w, uint64_t *wk)
{
    getrusage(RUSAGE_SELF, ru);
    if (B.pid > 0)
        *(ru == &B.ru0 ? &B.srv_m0 : &B.srv_m1) = read_cpu_ticks(B.pid);
    *r = B.loop.syscalls_read;
    *w = B.loop.syscalls_write;
    *wk = B.loop.wakeups;
}

static double tv_s(struct timeval tv)
{
    return (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
}

static void begin_traffic(uint64_t now)
{
    B.phase = P_WARMUP;
    B.t_phase_end = now + (uint64_t)(B.warmup * 1e9);
    B.last_progress = now;
    if (B.mode == M_FANOUT && B.interval > 0) {
        B.next_pub = now;
    } else if (B.mode == M_FANOUT) {
        for (long i = 0; i < B.inflight; i++)
            publish_next();
    } else {
        echo_kick();
    }
    wb_loop_flush(&B.loop);
}

static void step(uint64_t now)
{
    switch (B.phase) {
    case P_CONNECT:
        if (B.ready + B.failed < B.nall)
            return;
        B.t_connected = now;
        if (B.pid > 0)
            B.srv_tc = read_cpu_ticks(B.pid);
        if (B.mode == M_HOLD) {
            B.phase = P_HOLD;
            B.t_phase_end = now + (uint64_t)(B.hold * 1e9);
        } else if (B.ready == 0 || (B.mode == M_FANOUT && B.c[B.conns].state != WB_OPEN)) {
            B.phase = P_DONE;
        } else {
            begin_traffic(now);
        }
        return;
    case P_WARMUP:
        if (now < B.t_phase_end)
            return;
        B.phase = P_MEASURE;
        B.t_measure_start = now;
        B.t_phase_end = now + (uint64_t)(B.duration * 1e9);
        snap(&B.ru0, &B.sys_r0, &B.sys_w0, &B.wake0);
        return;
    case P_MEASURE:
        if (now < B.t_phase_end && (B.count <= 0 || B.measured < (uint64_t)B.count))
            return;
        B.phase = P_DRAIN;
        B.t_measure_end = now;
        B.t_phase_end = now + (B.interval > 0 ? 5000000000u : 1000000000u);
        snap(&B.ru1, &B.sys_r1, &B.sys_w1, &B.wake1);
        return;
    case P_DRAIN: {
        long left = B.mode != M_FANOUT ? B.inflight_total
                    : B.interval > 0   ? subscribers_behind()
                                       : active_slots();
        if (left <= 0 || now >= B.t_phase_end)
            B.phase = P_DONE;
        return;
    }
    case P_HOLD:
        if (now < B.t_phase_end)
            return;
        if (!B.exchange) {
            B.phase = P_DONE;
            return;
        }
        /* One message each way (the echo's reply) and a ping (its pong) per connection. */
        B.rss_mid = B.pid > 0 ? read_rss_kb(B.pid) : -1;
        B.phase = P_EXCHANGE;
        B.t_exchange = now;
        B.t_phase_end = now + (uint64_t)(B.timeout * 1e9);
        for (long i = 0; i < B.nall; i++) {
            wb_conn_t *c = &B.c[i];
            if (!c->ready || c->state != WB_OPEN)
                continue;
            send_payload(c, 0);
            wb_conn_send(&B.loop, c, WB_OP_PING, (const uint8_t *)"p", 1);
            c->inflight = 2;
            B.inflight_total += 2;
        }
        wb_loop_flush(&B.loop);
        return;
    case P_EXCHANGE:
        if (B.inflight_total > 0 && now < B.t_phase_end)
            return;
        if (B.inflight_total > 0)
            fprintf(stderr, "wsbench: exchange timeout: %ld replies or pongs missing\n",
                    B.inflight_total);
        B.phase = P_HOLD2;
        B.t_phase_end = now + (uint64_t)(B.hold * 1e9);
        return;
    case P_HOLD2:
        if (now >= B.t_phase_end)
            B.phase = P_DONE;
        return;
    case P_DONE:
        return;
    }
}

/* --- report --- */

static void report_traffic(void)
{
    double secs = (double)(B.t_measure_end - B.t_measure_start) / 1e9;
    double cpu = tv_s(B.ru1.ru_utime) - tv_s(B.ru0.ru_utime) + tv_s(B.ru1.ru_stime) -
                 tv_s(B.ru0.ru_stime);
    double rate = secs > 0 ? (double)B.measured / secs : 0;
    double wakeups = (double)(B.wake1 - B.wake0);
    double writes = (double)(B.sys_w1 - B.sys_w0), reads = (double)(B.sys_r1 - B.sys_r0);
    double us[4] = {wb_hist_pct(&B.hist, 0.5) / 1e3, wb_hist_pct(&B.hist, 0.99) / 1e3,
                    wb_hist_pct(&B.hist, 0.999) / 1e3, wb_hist_pct(&B.hist, 1.0) / 1e3};
    const char *what = B.mode == M_FANOUT ? "deliveries" : "replies";
    printf("%s: %.0f %s/s over %.2f s (%llu measured)\n", B.mode == M_FANOUT ? "fanout" : "echo",
           rate, what, secs, (unsigned long long)B.measured);
    printf("latency us: p50 %.1f  p99 %.1f  p99.9 %.1f  max %.1f\n", us[0], us[1], us[2], us[3]);
    int ur = B.loop.uring != NULL;
    printf("generator: cpu %.0f%% of one core (user %.2f s, sys %.2f s), %s, %.0f %s/s, "
           "%.2f %s and %.2f %s per %s\n",
           secs > 0 ? 100 * cpu / secs : 0, tv_s(B.ru1.ru_utime) - tv_s(B.ru0.ru_utime),
           tv_s(B.ru1.ru_stime) - tv_s(B.ru0.ru_stime), wb_loop_backend(&B.loop),
           secs > 0 ? wakeups / secs : 0, ur ? "io_uring_enter" : "epoll_wait",
           B.measured ? reads / (double)B.measured : 0, ur ? "recv completions" : "reads",
           B.measured ? writes / (double)B.measured : 0, ur ? "sends" : "writes",
           B.mode == M_FANOUT ? "delivery" : "reply");
    if (B.mode == M_FANOUT)
        printf("publishes: %llu (%.0f/s), subscribers ready %ld\n",
               (unsigned long long)B.published, secs > 0 ? (double)B.published / secs : 0,
               B.subs_ready);
    if (B.failed || B.lost)
        printf("connections: %ld failed, %ld lost (%s)\n", B.failed, B.lost,
               B.first_error ? B.first_error : "?");
    double scpu = B.pid > 0 ? server_secs(B.srv_m0, B.srv_m1) : -1;
    double sper = scpu >= 0 && B.measured ? scpu * 1e6 / (double)B.measured : -1;
    if (B.pid > 0)
        printf("server pid %ld: cpu %.2f s over the measured window (%.0f%% of a core), %.3f us "
               "per %s\n", B.pid, scpu, secs > 0 ? 100 * scpu / secs : 0, sper,
               B.mode == M_FANOUT ? "delivery" : "reply");
    if (B.tls_desc[0])
        printf("tls: %s\n", B.tls_desc);
    for (char *q = B.tls_desc; *q; q++)
        if (*q == ' ')
            *q = '/';
    printf("RESULT server_cpu_s=%.2f server_us_per_msg=%.4f tls=%s\n", scpu, sper,
           B.tls_desc[0] ? B.tls_desc : "off");
    printf("RESULT mode=%s conns=%ld inflight=%ld size=%ld secs=%.2f rate=%.0f p50_us=%.1f "
           "p99_us=%.1f p999_us=%.1f max_us=%.1f cpu_pct=%.0f failed=%ld lost=%ld backend=%s\n",
           B.mode == M_FANOUT ? "fanout" : B.mode == M_RTT ? "rtt" : "echo", B.conns, B.inflight,
           B.size, secs, rate, us[0], us[1], us[2], us[3], secs > 0 ? 100 * cpu / secs : 0,
           B.failed, B.lost, wb_loop_backend(&B.loop));
    if (B.interval > 0) {
        /* What never arrived by the end of the drain is missed too. */
        uint64_t missing = 0;
        for (long i = 0; i < B.conns; i++)
            if (B.c[i].ready && B.c[i].state == WB_OPEN)
                missing += (uint32_t)B.next_seq - B.c[i].inflight;
        printf("RESULT mode=fanout-interval published=%llu subscribers=%ld missed=%llu dup=%llu "
               "failed=%ld lost=%ld\n",
               (unsigned long long)B.published, B.subs_ready,
               (unsigned long long)(B.missed + missing), (unsigned long long)B.dup, B.failed,
               B.lost);
    }
}

/* --- main --- */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: wsbench MODE --port N [options]\n"
            "modes: echo, rtt, fanout, hold\n"
            "  --host ADDR          server address in 127.0.0.0/8 (default 127.0.0.1)\n"
            "  --port N             server port (required)\n"
            "  --path P             WebSocket path (default /ws)\n"
            "  --pub-path P         fanout: the publisher's path (default /pub)\n"
            "  --pub-port N         fanout: the publisher's port (another node; default --port)\n"
            "  -c, --conns N        connections, or fanout subscribers (default 100; rtt 1)\n"
            "  -k, --inflight K     messages in flight per connection, or publishes in flight\n"
            "                       for fanout (default 1)\n"
            "  -s, --size B         payload bytes, at least %d (default 32)\n"
            "  -d, --duration S     measured seconds (default 5)\n"
            "  -w, --warmup S       unmeasured seconds first (default 1)\n"
            "  -n, --count N        stop after N measured replies or deliveries\n"
            "  --no-welcome         do not wait for a greeting message before sending\n"
            "  --concurrency N      handshakes in progress at once (default 256)\n"
            "  --timeout S          give up connecting after S seconds (default 30)\n"
            "  --backend B          io_uring (default when built with liburing; falls back to\n"
            "                       epoll when the kernel refuses it) or epoll\n"
            "  --batch N, --batch-us U  io_uring: handle a wakeup once N completions are due or\n"
            "                       U us passed (default: fanout 64 and 100, others 1: at once)\n"
            "  --interval MS        fanout: publish every MS ms instead of k in flight, and check\n"
            "                       that every subscriber gets every message once, in order\n"
            "  hold: --sources S (source addresses 127.0.0.1..S, default 4), --pid PID (server\n"
            "        whose VmRSS is read before and after), --hold S (seconds held, default 1),\n"
            "        --exchange (after the hold: one message each way and a ping per connection,\n"
            "        VmRSS read before it and after a second hold)\n"
            "  --tls                wss://: TLS through OpenSSL memory BIOs, no certificate check,\n"
            "                       a full handshake per connection\n"
            "  --tls-version V      1.2 or 1.3 only (implies --tls)\n"
            "  --pid PID            (echo, rtt, fanout too) server CPU per reply or delivery\n",
            MIN_SIZE);
}

static int parse_args(int argc, char **argv)
{
    B.port = -1;
    snprintf(B.host, sizeof(B.host), "127.0.0.1");
    B.path = "/ws";
    B.pub_path = "/pub";
    B.conns = -1;
    B.inflight = 1;
    B.size = 32;
    B.duration = 5;
    B.warmup = 1;
    B.sources = 4;
    B.hold = 1;
    B.timeout = 30;
    B.concurrency = 256;
    B.use_uring = 1;
    if (argc < 2) {
        usage(stderr);
        return -1;
    }
    const char *m = argv[1];
    if (strcmp(m, "echo") == 0)
        B.mode = M_ECHO;
    else if (strcmp(m, "rtt") == 0)
        B.mode = M_RTT;
    else if (strcmp(m, "fanout") == 0)
        B.mode = M_FANOUT;
    else if (strcmp(m, "hold") == 0)
        B.mode = M_HOLD;
    else if (strcmp(m, "-h") == 0 || strcmp(m, "--help") == 0) {
        usage(stdout);
        exit(0);
    } else {
        fprintf(stderr, "wsbench: unknown mode '%s'\n", m);
        return -1;
    }
    static const struct option opts[] = {
        {"host", required_argument, 0, 'H'},   {"port", required_argument, 0, 'p'},
        {"path", required_argument, 0, 'P'},   {"pub-path", required_argument, 0, 'Q'},
        {"pub-port", required_argument, 0, 'R'},
        {"conns", required_argument, 0, 'c'},  {"inflight", required_argument, 0, 'k'},
        {"size", required_argument, 0, 's'},   {"duration", required_argument, 0, 'd'},
        {"warmup", required_argument, 0, 'w'}, {"count", required_argument, 0, 'n'},
        {"sources", required_argument, 0, 'S'}, {"pid", required_argument, 0, 'i'},
        {"hold", required_argument, 0, 'o'},   {"timeout", required_argument, 0, 't'},
        {"concurrency", required_argument, 0, 'C'}, {"no-welcome", no_argument, 0, 'W'},
        {"backend", required_argument, 0, 'B'},
        {"batch", required_argument, 0, 'b'}, {"batch-us", required_argument, 0, 'u'},
        {"interval", required_argument, 0, 'I'},
        {"tls", no_argument, 0, 'T'}, {"tls-version", required_argument, 0, 'V'},
        {"exchange", no_argument, 0, 'X'},
        {"help", no_argument, 0, 'h'},         {0, 0, 0, 0}};
    int o;
    optind = 2;
    while ((o = getopt_long(argc, argv, "c:k:s:d:w:n:h", opts, NULL)) != -1) {
        switch (o) {
        case 'H': snprintf(B.host, sizeof(B.host), "%s", optarg); break;
        case 'p': B.port = atoi(optarg); break;
        case 'P': B.path = optarg; break;
        case 'Q': B.pub_path = optarg; break;
        case 'R': B.pub_port = atoi(optarg); break;
        case 'c': B.conns = atol(optarg); break;
        case 'k': B.inflight = atol(optarg); break;
        case 's': B.size = atol(optarg); break;
        case 'd': B.duration = atof(optarg); break;
        case 'w': B.warmup = atof(optarg); break;
        case 'n': B.count = atoll(optarg); break;
        case 'S': B.sources = atol(optarg); break;
        case 'i': B.pid = atol(optarg); break;
        case 'o': B.hold = atof(optarg); break;
        case 't': B.timeout = atof(optarg); break;
        case 'C': B.concurrency = atol(optarg); break;
        case 'W': B.no_welcome = 1; break;
        case 'b': B.batch = atol(optarg); break;
        case 'u': B.batch_us = atol(optarg); break;
        case 'I': B.interval = atof(optarg); break;
        case 'T': if (!B.tls) B.tls = 1; break;
        case 'X': B.exchange = 1; break;
        case 'V':
            if (strcmp(optarg, "1.2") == 0)
                B.tls = 12;
            else if (strcmp(optarg, "1.3") == 0)
                B.tls = 13;
            else {
                fprintf(stderr, "wsbench: --tls-version is 1.2 or 1.3\n");
                return -1;
            }
            break;
        case 'B':
            if (strcmp(optarg, "epoll") == 0)
                B.use_uring = 0;
            else if (strcmp(optarg, "io_uring") == 0 || strcmp(optarg, "uring") == 0)
                B.use_uring = 1;
            else {
                fprintf(stderr, "wsbench: --backend is io_uring or epoll\n");
                return -1;
            }
            break;
        case 'h': usage(stdout); exit(0);
        default: usage(stderr); return -1;
        }
    }
    struct in_addr a;
    if (inet_pton(AF_INET, B.host, &a) != 1 || (ntohl(a.s_addr) >> 24) != 127) {
        fprintf(stderr, "wsbench: --host must be an address in 127.0.0.0/8\n");
        return -1;
    }
    if (B.port <= 0 || B.port > 65535) {
        fprintf(stderr, "wsbench: --port is required\n");
        return -1;
    }
    if (B.mode == M_RTT) {
        B.conns = 1;
        B.inflight = 1;
    }
    if (B.conns < 0)
        B.conns = 100;
    if (B.conns < 1 || B.conns > 1000000 || B.inflight < 1 || B.size < MIN_SIZE ||
        B.size > 65536 || B.sources < 1 || B.sources > 250 || B.concurrency < 1 ||
        B.duration <= 0 || B.duration > 3600 || B.warmup < 0 || B.warmup > 600 || B.hold < 0 ||
        B.hold > 3600 || B.timeout <= 0 || B.timeout > 600) {
        fprintf(stderr, "wsbench: an option is out of range (see --help)\n");
        return -1;
    }
    if (B.interval < 0 || B.interval > 60000 || (B.interval > 0 && B.mode != M_FANOUT)) {
        fprintf(stderr, "wsbench: --interval is 0..60000 ms, for fanout\n");
        return -1;
    }
    if (B.batch < 0 || B.batch > 4096 || B.batch_us < 0 || B.batch_us > 100000) {
        fprintf(stderr, "wsbench: --batch is 0..4096 and --batch-us 0..100000\n");
        return -1;
    }
    if (B.mode == M_FANOUT && B.inflight > MAX_WINDOW) {
        fprintf(stderr, "wsbench: fanout allows at most %d publishes in flight\n", MAX_WINDOW);
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (parse_args(argc, argv) < 0)
        return 2;
    char host_header[96];
    snprintf(host_header, sizeof(host_header), "%s:%d", B.host, B.port);
    if (wb_loop_init(&B.loop, host_header, B.use_uring) < 0) {
        perror("wsbench: epoll");
        return 1;
    }
    /* Fan-out: 1000 sockets become readable in a burst per server loop turn; handling them 64 at
     * a time (or after 100 us) halves the generator's wakeups. Echo waits for nothing: its
     * latency is the figure. */
    if (B.batch <= 0 && B.mode == M_FANOUT) {
        B.batch = 64;
        if (B.batch_us <= 0)
            B.batch_us = 100;
    }
    B.loop.batch = (unsigned)B.batch;
    B.loop.batch_us = (unsigned)B.batch_us;
    B.loop.on_open = on_open;
    B.loop.on_close = on_close;
    B.loop.on_pong = on_pong;
    if (B.tls) {
        if (wb_tls_global_init(B.tls == 1 ? 0 : B.tls) < 0)
            return 1;
        B.loop.tls = 1;
    }
    B.loop.on_message = B.mode == M_FANOUT ? fanout_message : echo_message;
    B.nall = B.conns + (B.mode == M_FANOUT ? 1 : 0);
    B.c = calloc((size_t)B.nall, sizeof(*B.c));
    B.payload = malloc((size_t)B.size);
    if (B.c == NULL || B.payload == NULL) {
        fprintf(stderr, "wsbench: out of memory\n");
        return 1;
    }
    for (long i = 0; i < B.nall; i++)
        B.c[i].fd = -1;
    for (long i = MIN_SIZE; i < B.size; i++)
        B.payload[i] = (uint8_t)('a' + i % 26);
    wb_hist_init(&B.hist);

    long rss_before = B.pid > 0 ? read_rss_kb(B.pid) : -1;
    B.srv_t0 = B.pid > 0 ? read_cpu_ticks(B.pid) : -1;
    B.rss_mid = -1;
    B.t_start = wb_now();
    B.loop.now = B.t_start;
    B.phase = P_CONNECT;
    start_more();
    uint64_t connect_deadline = B.t_start + (uint64_t)(B.timeout * 1e9);
    /* A hard stop, whatever happens: connect timeout + every phase + slack. */
    uint64_t hard_deadline = connect_deadline +
                             (uint64_t)((B.warmup + B.duration + 2 * B.hold + (B.exchange ? B.timeout : 0) + 5.0) * 1e9);
    int timed_out = 0;
    while (B.phase != P_DONE) {
        int r = wb_loop_run_once(&B.loop, 5);
        if (r < 0) {
            fprintf(stderr, "wsbench: epoll_wait: %s\n", strerror(-r));
            break;
        }
        uint64_t now = wb_now();
        if (B.phase == P_CONNECT && now > connect_deadline) {
            fprintf(stderr, "wsbench: connect timeout: %ld of %ld ready\n", B.ready, B.nall);
            B.failed += B.nall - B.ready - B.failed;
            timed_out = 1;
        }
        if ((B.phase == P_WARMUP || B.phase == P_MEASURE) &&
            now - B.last_progress > 3000000000u) {
            fprintf(stderr, "wsbench: no progress for 3 s, stopping\n");
            if (B.phase == P_WARMUP)
                B.t_measure_start = B.t_measure_end = now;
            else {
                B.t_measure_end = now;
                snap(&B.ru1, &B.sys_r1, &B.sys_w1, &B.wake1);
            }
            B.phase = P_DONE;
            break;
        }
        if (now > hard_deadline) {
            fprintf(stderr, "wsbench: hard deadline reached\n");
            break;
        }
        step(now);
        if (B.interval > 0 && (B.phase == P_WARMUP || B.phase == P_MEASURE)) {
            /* The main loop wakes at least every 5 ms: a publish is late by that at most. */
            uint64_t every = (uint64_t)(B.interval * 1e6);
            for (int k = 0; now >= B.next_pub && k < 1000; k++) {
                publish_open_loop();
                B.next_pub += every;
                B.last_progress = now;
            }
            wb_loop_flush(&B.loop);
        }
    }

    int rc = 0;
    if (B.mode == M_HOLD) {
        long rss_after = B.pid > 0 ? read_rss_kb(B.pid) : -1;
        double secs = (double)(B.t_connected - B.t_start) / 1e9;
        double per = (rss_before >= 0 && rss_after >= 0 && B.ready > 0)
                         ? (double)(rss_after - rss_before) * 1024.0 / (double)B.ready
                         : -1;
        printf("hold: %ld of %ld connections open in %.2f s (%.0f/s) from %ld source "
               "addresses\n",
               B.ready, B.conns, secs, secs > 0 ? (double)B.ready / secs : 0, B.sources);
        if (B.pid > 0)
            printf("server pid %ld VmRSS: %ld kB before, %ld kB after: %.0f bytes per "
                   "connection\n",
                   B.pid, rss_before, rss_after, per);
        printf("generator VmRSS %ld kB\n", read_rss_kb((long)getpid()));
        if (B.failed)
            printf("connections: %ld failed (%s)\n", B.failed,
                   B.first_error ? B.first_error : "?");
        double ccpu = B.pid > 0 ? server_secs(B.srv_t0, B.srv_tc) : -1;
        double cper = ccpu >= 0 && B.ready ? ccpu * 1e6 / (double)B.ready : -1;
        if (B.pid > 0)
            printf("server cpu while connecting: %.2f s, %.1f us per upgrade\n", ccpu, cper);
        if (B.tls_desc[0])
            printf("tls: %s\n", B.tls_desc);
        double per_mid = per, per_x = -1;
        if (B.exchange) {
            per_mid = (rss_before >= 0 && B.rss_mid >= 0 && B.ready > 0)
                          ? (double)(B.rss_mid - rss_before) * 1024.0 / (double)B.ready
                          : -1;
            per_x = per;
            printf("after the handshake: VmRSS %ld kB, %.0f bytes per connection; after one "
                   "message each way and a ping: %ld kB, %.0f bytes per connection\n",
                   B.rss_mid, per_mid, rss_after, per_x);
        }
        for (char *q = B.tls_desc; *q; q++)
            if (*q == ' ')
                *q = '/';
        printf("RESULT mode=hold conns=%ld ok=%ld failed=%ld connect_secs=%.3f "
               "connect_rate=%.0f rss_before_kb=%ld rss_after_kb=%ld rss_per_conn_b=%.0f "
               "rss_mid_kb=%ld rss_handshake_b=%.0f rss_exchange_b=%.0f server_connect_cpu_s=%.2f "
               "server_us_per_upgrade=%.1f tls=%s\n",
               B.conns, B.ready, B.failed, secs, secs > 0 ? (double)B.ready / secs : 0,
               rss_before, rss_after, per, B.rss_mid, per_mid, per_x, ccpu, cper,
               B.tls_desc[0] ? B.tls_desc : "off");
        rc = B.ready == B.conns ? 0 : 1;
    } else if (B.t_measure_end > 0 || B.measured > 0) {
        report_traffic();
        rc = B.measured > 0 ? 0 : 1;
    } else {
        fprintf(stderr, "wsbench: no traffic measured (%ld of %ld ready; %s)\n", B.ready,
                B.nall, B.first_error ? B.first_error : timed_out ? "timeout" : "?");
        printf("RESULT mode=%s failed=%ld rate=0\n", argv[1], B.failed);
        rc = 1;
    }
    for (long i = 0; i < B.nall; i++)
        if (B.c[i].state != WB_CLOSED && B.c[i].fd >= 0)
            wb_conn_close(&B.loop, &B.c[i]);
    wb_loop_close(&B.loop);
    free(B.c);
    free(B.payload);
    return rc;
}
