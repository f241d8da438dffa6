"""Start-up: the listening line, and every way to fail at start."""
import os
import re
import socket
import subprocess

import pytest

import rawws
from conftest import BIN, EXTRA_ARGS, REPO, SCRIPTS, scaled, script_line


def run_server(*args, timeout=10):
    """Run wspush expecting it to exit by itself; return (rc, stderr)."""
    if not BIN.exists():
        pytest.fail("server binary %s does not exist" % BIN)
    cmd = [str(BIN), *map(str, args)]
    try:
        p = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=scaled(timeout), cwd=str(REPO))
    except subprocess.TimeoutExpired as e:
        pytest.fail("wspush %s did not exit within %ss (stderr: %r)" % (args, timeout, e.stderr))
    return p.returncode, p.stderr.decode("utf-8", "replace")


def assert_start_error(rc, err, *needles):
    assert rc > 0, "expected a non-zero exit, got rc=%r (negative = killed by a signal); stderr=%r" % (rc, err)
    assert rc in (1, 2), "exit code should be 1 or 2, got %d; stderr=%r" % (rc, err)
    assert "listening on" not in err, err
    lines = [l for l in err.splitlines() if l.strip()]
    assert lines, "no error message on stderr"
    assert len(lines) == 1, "the start error should be one line, got:\n%s" % err
    for n in needles:
        if isinstance(n, re.Pattern):
            assert n.search(err), "%r not in stderr %r" % (n.pattern, err)
        else:
            assert n in err, "%r not in stderr %r" % (n, err)


@pytest.mark.valgrind
def test_listening_line_names_the_picked_port(echo_server):
    assert 0 < echo_server.port < 65536
    # the port it printed is the one it serves
    r = rawws.http_get(echo_server.port, "/index")
    assert r.status == 200


def test_missing_script_is_a_start_error():
    rc, err = run_server("--host", "127.0.0.1", "--port", "0", SCRIPTS / "does_not_exist.lua")
    assert_start_error(rc, err, "does_not_exist.lua")


def test_no_script_argument_is_a_start_error():
    rc, err = run_server("--host", "127.0.0.1", "--port", "0")
    assert_start_error(rc, err)


def test_script_syntax_error_names_file_and_line():
    rc, err = run_server("--host", "127.0.0.1", "--port", "0", SCRIPTS / "bad_syntax.lua")
    assert_start_error(rc, err, "bad_syntax.lua:3")


def test_script_runtime_error_at_load_names_file_and_line():
    path = SCRIPTS / "bad_runtime.lua"
    rc, err = run_server("--host", "127.0.0.1", "--port", "0", path)
    assert_start_error(rc, err, "bad_runtime.lua:%d" % script_line(path, "LOAD_ERROR_LINE"))


def test_script_returning_nothing_is_a_start_error():
    rc, err = run_server("--host", "127.0.0.1", "--port", "0", SCRIPTS / "no_routes.lua")
    assert_start_error(rc, err, "no_routes.lua")


def test_a_missing_module_is_a_one_line_start_error():
    path = SCRIPTS / "missing_module.lua"
    rc, err = run_server("--host", "127.0.0.1", "--port", "0", path)
    assert_start_error(rc, err, "missing_module.lua:%d" % script_line(path, "MISSING_REQUIRE_LINE"),
                       "module 'no_such_helper_module' not found", "package.path")
    assert "no file" not in err, err


def test_script_returning_an_empty_table_is_a_start_error():
    rc, err = run_server("--host", "127.0.0.1", "--port", "0", SCRIPTS / "empty_routes.lua")
    assert_start_error(rc, err, "empty_routes.lua", "empty table")


def test_script_returning_a_number_is_a_start_error():
    rc, err = run_server("--host", "127.0.0.1", "--port", "0", SCRIPTS / "non_table.lua")
    assert_start_error(rc, err, "non_table.lua")


def test_port_in_use_is_a_start_error():
    blocker = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen(1)
        port = blocker.getsockname()[1]
        rc, err = run_server("--host", "127.0.0.1", "--port", port, REPO / "handlers" / "echo.lua")
        assert_start_error(rc, err, re.compile(r"(?i)in use|EADDRINUSE"))
    finally:
        blocker.close()


def test_unknown_option_is_a_start_error():
    rc, err = run_server("--host", "127.0.0.1", "--port", "0", "--bogus-option", REPO / "handlers" / "echo.lua")
    assert_start_error(rc, err, "--bogus-option")


def test_bad_port_value_is_a_start_error():
    rc, err = run_server("--host", "127.0.0.1", "--port", "70000", REPO / "handlers" / "echo.lua")
    assert_start_error(rc, err)


def io_uring_fds(pid):
    """Descriptors of process pid that are io_uring instances."""
    found = []
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            if os.readlink("/proc/%d/fd/%s" % (pid, fd)) == "anon_inode:[io_uring]":
                found.append(fd)
        except OSError:
            pass
    return found


@pytest.mark.parametrize("option, rings", [(None, 1), ("--io-uring", 1), ("--no-io-uring", 0)])
def test_sends_go_through_one_io_uring_unless_turned_off(spawn, option, rings):
    """The default send path is one io_uring per server; --no-io-uring writes with writev.
    Either way the echo demo answers (the reply travelled the path named)."""
    if "io-uring" in " ".join(EXTRA_ARGS):
        pytest.skip("WSPUSH_ARGS chooses the send path for this run")
    s = spawn(REPO / "handlers" / "echo.lua", *([option] if option else []))
    c = rawws.upgrade(s.port, "/ws")
    assert c.recv_text() == "Welcome"
    c.send_text("x" * 100)
    assert c.recv_text() == "new message :" + "x" * 100
    try:
        assert len(io_uring_fds(s.proc.pid)) == rings
    finally:
        c.close()


def test_check_loads_a_script_without_listening():
    rc = subprocess.run([str(BIN), "--check", "--port", "1", str(REPO / "handlers" / "echo.lua")],
                        capture_output=True, text=True, timeout=scaled(30))
    assert rc.returncode == 0, rc.stderr
    assert "echo.lua: ok" in rc.stdout
    assert "listening" not in rc.stderr


def test_check_of_a_broken_script_is_one_line_with_file_and_line():
    path = SCRIPTS / "bad_syntax.lua"
    rc, err = run_server("--check", path)
    assert_start_error(rc, err, "bad_syntax.lua:3")


def _first_line(host):
    """Start on host, port 0: the listening line, and the server (running)."""
    p = subprocess.Popen([str(BIN), "--host", host, "--port", "0", str(REPO / "handlers" / "echo.lua")],
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                         text=True)
    return p, p.stderr.readline()


@pytest.mark.parametrize("host, shown, connect", [
    ("localhost", "http://localhost:", ("127.0.0.1", socket.AF_INET)),  # a name, looked up at start
    ("::1", "http://[::1]:", ("::1", socket.AF_INET6)),                # IPv6 in brackets, as in a URL
])
def test_host_may_be_a_name_and_ipv6_is_logged_as_in_a_url(host, shown, connect):
    p, line = _first_line(host)
    try:
        assert shown in line, line
        port = int(re.search(r":(\d+) \(script", line).group(1))
        with socket.socket(connect[1]) as s:
            s.settimeout(scaled(5))
            s.connect((connect[0], port))
            s.sendall(b"GET /index HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert s.recv(64).startswith(b"HTTP/1.1 200"), "no answer on %s" % host
    finally:
        p.terminate()
        p.wait(timeout=scaled(15))
