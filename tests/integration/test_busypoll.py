"""--busy-poll USEC (core/busypoll.c): after I/O the server polls instead of
sleeping until USEC microseconds pass with nothing to do, then sleeps as usual.

What a user sees: the server serves as it does without the option (messages,
timers, the close handshake, SIGTERM, workers); it spends CPU while a window
is open and none once it has passed. The round trip it buys is a benchmark
figure (tests/bench/run.sh, server "wspush-busy"), never asserted here.

The only sleeps are the CPU measurement windows.
"""
import time

import pytest

import rawws
from conftest import REPO, SCRIPTS, cpu_seconds, scaled

SCRIPT = SCRIPTS / "busypoll.lua"
ECHO = REPO / "handlers" / "echo.lua"


def echo_round(c, text):
    c.send_text(text)
    assert c.recv_text() == "echo:" + text


def cpu_over(pid, seconds):
    """The CPU time process pid spends in the next `seconds` of wall time."""
    cpu0 = cpu_seconds(pid)
    time.sleep(seconds)                        # the measurement window
    return cpu_seconds(pid) - cpu0


@pytest.mark.parametrize("workers", ["1", "2"])
def test_messages_and_the_close_handshake_as_without_it(spawn, workers):
    s = spawn(SCRIPT, "--busy-poll", "200", "--workers", workers)
    for _ in range(3):                          # connections land on any worker
        with rawws.upgrade(s.port, "/ws", timeout=scaled(5)) as c:
            for i in range(50):
                echo_round(c, "m%d" % i)
            c.send_close(1000, b"bye")
            f, _ = c.recv_close()
            assert f.close_code == 1000


def test_it_polls_while_the_window_is_open_and_sleeps_after(spawn):
    # A window of 0.6 s: right after a message the server polls (a core's
    # worth of CPU); once the window has passed with nothing to do, it sleeps.
    s = spawn(SCRIPT, "--busy-poll", "600000")
    with rawws.upgrade(s.port, "/ws", timeout=scaled(5)) as c:
        echo_round(c, "start")
        busy = cpu_over(s.proc.pid, 0.3)
        time.sleep(0.5)                         # the rest of the window, and a margin
        quiet = cpu_over(s.proc.pid, 0.5)
        echo_round(c, "still served")
    assert busy >= 0.1, "no polling after a message: %.3f s of CPU in 0.3 s" % busy
    assert quiet <= 0.05, "still polling after the window: %.3f s of CPU in 0.5 s" % quiet


def test_without_it_the_server_sleeps_right_after_io(spawn):
    s = spawn(SCRIPT)
    with rawws.upgrade(s.port, "/ws", timeout=scaled(5)) as c:
        echo_round(c, "start")
        cpu = cpu_over(s.proc.pid, 0.3)
    assert cpu <= 0.05, "%.3f s of CPU in 0.3 s after one message" % cpu


def test_a_timer_fires_on_time_while_it_polls(spawn):
    # Armed at the start of a 1 s window with nothing else to do: the timer
    # is due after 0.1 s, and must not wait for the window to end.
    s = spawn(SCRIPT, "--busy-poll", "1000000")
    with rawws.upgrade(s.port, "/ws", timeout=scaled(5)) as c:
        t0 = time.monotonic()
        c.send_text("arm")
        assert c.recv_text() == "echo:arm"
        assert c.recv_text() == "fired"
        late = time.monotonic() - t0
    assert late < 0.7, "a timer due after 0.1 s fired after %.2f s (the window is 1 s)" % late


def test_sigterm_closes_connections_while_it_polls(spawn):
    s = spawn(ECHO, "--busy-poll", "1000000")
    with rawws.upgrade(s.port, "/ws", timeout=scaled(5)) as c:
        assert c.recv_text() == "Welcome"
        c.send_text("x")
        assert c.recv_text() == "new message :x"
        s.terminate()                           # inside the 1 s window: polling
        f, _ = c.recv_close()
        assert f.close_code == 1001
        c.send_close(1001)
    assert s.wait_exit() == 0
