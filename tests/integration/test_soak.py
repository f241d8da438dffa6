"""Short soak/churn run (issue 8): tests/bench/soak.py for 20 s with 300 clients.

The server binary is WSPUSH_BIN (default build/wspush); soak.py starts it
itself, so no fixture server is used. Takes ~30 s.
"""
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SOAK = REPO / "tests" / "bench" / "soak.py"
BIN = Path(os.environ.get("WSPUSH_BIN") or REPO / "build" / "wspush")
PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable


@pytest.mark.slow
def test_soak_short():
    if not BIN.exists():
        pytest.skip("server binary %s does not exist (build it, or set WSPUSH_BIN)" % BIN)
    fd, figures = tempfile.mkstemp(prefix="soak-", suffix=".json")
    os.close(fd)
    env = dict(os.environ, WSPUSH_BIN=str(BIN))
    try:
        proc = subprocess.run(
            [PYTHON, str(SOAK), "--duration", "20", "--clients", "300", "--bin", str(BIN),
             "--json", figures],
            cwd=str(REPO), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            timeout=120)
        out = proc.stdout.decode("utf-8", "replace")
        try:
            with open(figures) as f:
                fig = json.load(f)
        except (OSError, ValueError):
            fig = None
    finally:
        os.unlink(figures)
    if fig:
        print("soak: %d connections served, %d/%d push deliveries (lost %d), "
              "fds %s->%s->%s, RSS baseline %.1f MB -> %.1f MB"
              % (fig["connections"], fig["delivered"], fig["expected"], fig["lost"],
                 fig["fd_initial"], fig["fd_warm"], fig["fd_final"],
                 (fig["rss_base_kb"] or 0) / 1024, (fig["rss_final_kb"] or 0) / 1024))
    summary = out[out.find("=" * 72):] if "=" * 72 in out else out[-6000:]
    assert proc.returncode == 0, "soak.py exited %d:\n%s" % (proc.returncode, summary)
    assert re.search(r"RESULT: PASS", out), summary
    assert fig and fig["expected"] > 0 and fig["connections"] > 300, summary
