"""Interop: node's `ws` client (the one browsers' test suites are checked against)."""
import json
import os
import shutil
import subprocess

import pytest

from conftest import HERE, SCRIPTS, scaled, wait_for

NODE_PATH = "/usr/share/nodejs"


def test_node_ws_client_welcome_echo_binary_close(spawn):
    node = shutil.which("node")
    assert node, "node is not installed"
    s = spawn(SCRIPTS / "app.lua")
    env = dict(os.environ, NODE_PATH=NODE_PATH)
    p = subprocess.run([node, str(HERE / "node" / "interop_client.js"), s.url + "/node"],
                       env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=scaled(30))
    out = p.stdout.decode().strip().splitlines()
    assert out, "node printed nothing; stderr: %s" % p.stderr.decode()
    res = json.loads(out[-1])
    assert p.returncode == 0 and res["ok"], res
    assert res["steps"] == ["welcome", "echo", "binary"]
    assert res["close"]["code"] == 4001
    # the server saw the same close
    st = wait_for(lambda: (lambda j: j if j["seen"] else None)(s.json("/last_close")),
                  desc="on_close of the node client")
    assert st["path"] == "/node", st
    assert st["code"] == 4001 and st["reason"] == "node says bye", st
