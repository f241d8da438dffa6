/*
 * notify.h: the sd_notify protocol, spoken by hand (no libsystemd): one
 * datagram of "KEY=value" lines to the unix socket systemd names in
 * $NOTIFY_SOCKET (a path, or an abstract name written with a leading '@').
 * Only the process systemd started speaks: ws_notify_init() takes the
 * variable out of the environment, so workers and check children never see
 * it. Without it every call is a no-op.
 */
#ifndef WS_NOTIFY_H
#define WS_NOTIFY_H

#include <stddef.h>
#include <uv.h>

/* Take $NOTIFY_SOCKET (and unset it). Call once, in the main process only. */
void ws_notify_init(void);

/* Send one message, e.g. ws_notify("READY=1\nSTATUS=%s", status). Returns 0
 * when sent (or nobody listens), -1 on a send error (nothing else to do). */
int ws_notify(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* The server's one-line state for STATUS= ("serving x.lua on 127.0.0.1:8000;
 * 3 connections"), written into buf. */
typedef void (*ws_notify_status_fn)(void *ud, char *buf, size_t len);

/* The server serves: READY=1 with its status now, and from then on the
 * status again whenever it changes (looked at once a second, on loop; the
 * timer does not keep the loop alive). */
void ws_notify_serving(uv_loop_t *loop, ws_notify_status_fn status, void *ud);

/* RELOADING=1 with the monotonic time systemd >= 253 wants alongside it. */
void ws_notify_reloading(const char *why);

/* A reload is over, whatever its outcome: READY=1 with the status. */
void ws_notify_ready(void);

/* STOPPING=1 with status; no more status updates (the timer closes). */
void ws_notify_stopping(const char *status);

#endif
