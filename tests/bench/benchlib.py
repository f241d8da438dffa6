"""What the benchmarks share: starting wspush and waiting for its listening
line, pinning to a core, stopping it."""
import os
import re
import shutil
import subprocess
import tempfile
import time

LISTEN_RE = re.compile(rb"listening on https?://127\.0\.0\.1:(\d+)")


def pinned(cpu, argv):
    """argv run on core cpu (taskset), when there is more than one core."""
    if cpu is None or not shutil.which("taskset") or (os.cpu_count() or 1) < 2:
        return argv
    return ["taskset", "-c", str(cpu)] + argv


class Wspush:
    """A wspush process. Its stderr goes to a file (a pipe nobody drains could
    stall it), read for the "listening on" line; port is the port it names.

    ready(log bytes) may ask for more than the listening line before the server
    counts as started; error is the exception raised when it does not start in
    timeout seconds (the log's end in its message)."""

    def __init__(self, argv, env=None, log=None, timeout=10.0, ready=None, error=RuntimeError,
                 what="wspush"):
        self.what = what
        self.log = log if log is not None else tempfile.TemporaryFile()
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=self.log, env=env)
        self.port = None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.proc.poll() is None:
            self.log.seek(0)
            text = self.log.read()
            m = LISTEN_RE.search(text)
            if m and (ready is None or ready(text)):
                self.port = int(m.group(1))
                break
            time.sleep(0.02)
        if self.port is None:
            text = self.text()
            self.stop(quiet=True)
            raise error("%s did not start: %s" % (what, text[-800:]))

    def text(self):
        """The log so far ("" once it is closed)."""
        try:
            self.log.seek(0)
            return self.log.read().decode(errors="replace")
        except ValueError:
            return ""

    def stop(self, timeout=30, quiet=False):
        crashed = self.proc.poll()
        if crashed is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        elif crashed != 0 and not quiet:
            print("!! %s exited with %s before it was stopped: %s" % (
                self.what, crashed, self.text()[-600:]), flush=True)
        self.log.close()
