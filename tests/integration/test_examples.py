"""The files in examples/ that a user copies: they must work as they are."""
import shutil
import subprocess

import pytest

from conftest import BIN, REPO


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="no systemd-analyze here")
def test_the_systemd_unit_verifies_without_a_warning(tmp_path):
    unit = (REPO / "examples" / "wspush.service").read_text()
    # The unit names /opt/wspush; point it at this checkout as a user would.
    unit = unit.replace("/opt/wspush/build/wspush", str(BIN)).replace(
        "/opt/wspush/handlers", str(REPO / "handlers"))
    path = tmp_path / "wspush.service"
    path.write_text(unit)
    p = subprocess.run(["systemd-analyze", "verify", str(path)], capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 0, p.stderr
    # Unknown keys and missing users are only warnings to systemd.
    assert p.stderr.strip() == "", p.stderr
    assert "User=wspush" not in unit  # nothing creates such a user


def unit_settings(text):
    """KEY -> [values] of a unit file, continuation lines joined."""
    out = {}
    for line in text.replace("\\\n", " ").splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            k, v = line.split("=", 1)
            out.setdefault(k.strip(), []).append(" ".join(v.split()))
    return out


def test_the_unit_is_type_notify_and_reloads_through_its_control_socket():
    u = unit_settings((REPO / "examples" / "wspush.service").read_text())
    assert u["Type"] == ["notify"] and u["NotifyAccess"] == ["main"], u
    start = u["ExecStart"][0].split()
    ctl = start[start.index("--control-socket") + 1]
    assert ctl.startswith("/run/%s/" % u["RuntimeDirectory"][0]), (ctl, u)
    assert u["ExecReload"] == ["/opt/wspush/build/wspush --reload " + ctl], u


def test_the_units_start_check_passes_on_the_shipped_script():
    p = subprocess.run([str(BIN), "--check", str(REPO / "handlers" / "broadcast.lua")],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip().endswith("broadcast.lua: ok"), p.stdout
    assert p.stderr == "", p.stderr
