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


def test_the_units_start_check_passes_on_the_shipped_script():
    p = subprocess.run([str(BIN), "--check", str(REPO / "handlers" / "broadcast.lua")],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip().endswith("broadcast.lua: ok"), p.stdout
    assert p.stderr == "", p.stderr
