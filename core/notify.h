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

/* Take $NOTIFY_SOCKET (and unset it). Call once, in the main process only. */
void ws_notify_init(void);

/* Send one message, e.g. ws_notify("READY=1\nSTATUS=%s", status). Returns 0
 * when sent (or nobody listens), -1 on a send error (nothing else to do). */
int ws_notify(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* RELOADING=1 with the monotonic time systemd >= 253 wants alongside it. */
void ws_notify_reloading(const char *why);

/* Close the socket (the end of the process). */
void ws_notify_close(void);

#endif
