/*
 * busypoll.h: the server's loop, optionally polling instead of sleeping for a while after work
 * (--busy-poll USEC).
 *
 * Why: a sleeping process that a message wakes adds the wake-up itself to the round trip (on
 * these virtual machines an idle core halts, and waking it is an exit to the hypervisor and an
 * interrupt: ~6 us of a ~32 us loopback round trip). A server that keeps polling for a short
 * while after each message finds the next message of a conversation already there. The price
 * is CPU: up to USEC of polling after every burst, so up to a core while messages come more
 * often than that, and nothing once the server is quiet.
 */
#ifndef WS_BUSYPOLL_H
#define WS_BUSYPOLL_H

#include <stdint.h>
#include <uv.h>

/* Runs the loop until it has no live handles, as uv_run(loop, UV_RUN_DEFAULT) does (and is,
 * when usec is 0). With usec > 0, the loop turns without sleeping (UV_RUN_NOWAIT) until usec
 * microseconds pass without *work changing, then sleeps as usual (UV_RUN_ONCE) until the next
 * event or timer. work is a counter the server bumps for each message, request and new
 * connection (the hub's): timers, pings and pongs alone leave a quiet server asleep. */
int ws_busypoll_run(uv_loop_t *loop, unsigned usec, const uint64_t *work);

#endif
