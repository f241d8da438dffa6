#include "busypoll.h"

int ws_busypoll_run(uv_loop_t *loop, unsigned usec, const uint64_t *work)
{
    if (usec == 0)
        return uv_run(loop, UV_RUN_DEFAULT);
    uint64_t window = (uint64_t)usec * 1000, seen = *work, last = uv_hrtime();
    /* Whole libuv turns, never a shortcut around them: a turn is also where watchers started
     * by the previous one reach epoll, and where due timers run. */
    for (;;) {
        uint64_t now = uv_hrtime();
        if (!uv_run(loop, now - last < window ? UV_RUN_NOWAIT : UV_RUN_ONCE))
            return 0;
        if (*work != seen) {
            seen = *work;
            last = uv_hrtime();
        }
    }
}
