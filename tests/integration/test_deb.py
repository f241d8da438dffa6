"""The Debian package (cpack -G DEB, cmake/package.cmake): what it declares,
what it holds, and that its files serve an echo from where dpkg puts them,
without the source tree. tests/deb-check.sh installs it for real, with apt,
in a fresh Debian 12 root (tests/README: run with the fresh-check tool)."""
import re
import shutil
import subprocess

import pytest

import rawws
from conftest import BIN, Server, scaled

BUILD = BIN.parent


@pytest.fixture(scope="module")
def deb(tmp_path_factory):
    if not (BUILD / "CPackConfig.cmake").exists():
        pytest.skip("%s is not a CMake build directory with CPack" % BUILD)
    if not shutil.which("dpkg-deb") or not shutil.which("dpkg-shlibdeps"):
        pytest.skip("no dpkg-dev here (tests/deps.sh --test installs it)")
    out = tmp_path_factory.mktemp("deb")
    p = subprocess.run(["cpack", "-G", "DEB", "--config", str(BUILD / "CPackConfig.cmake"),
                        "-B", str(out)], capture_output=True, text=True, timeout=scaled(120),
                       cwd=str(BUILD))
    assert p.returncode == 0, p.stdout + p.stderr
    debs = list(out.glob("wspush_*.deb"))
    assert len(debs) == 1, (list(out.iterdir()), p.stdout)
    assert re.fullmatch(r"wspush_\d+\.\d+\.\d+_amd64\.deb", debs[0].name), debs[0].name
    return debs[0]


def dpkg_deb(*args):
    p = subprocess.run(["dpkg-deb", *map(str, args)], capture_output=True, text=True,
                       timeout=scaled(60))
    assert p.returncode == 0, p.stderr
    return p.stdout


def test_the_package_declares_what_it_needs(deb):
    assert dpkg_deb("-f", deb, "Package").strip() == "wspush"
    depends = [d.strip().split()[0] for d in dpkg_deb("-f", deb, "Depends").split(",")]
    # the shared libraries (dpkg-shlibdeps), the Lua module the handlers use
    # (cjson) and what postinst runs (adduser)
    for want in ["libc6", "liblua5.4-0", "libuv1", "libssl3", "zlib1g", "liburing2",
                 "lua-cjson", "adduser"]:
        assert want in depends, depends
    assert any(d.startswith("libhiredis") for d in depends), depends


def test_the_package_holds_the_binary_modules_unit_and_a_default_script(deb):
    listing = dpkg_deb("-c", deb)
    paths = {line.split()[-1].lstrip(".") for line in listing.splitlines()}
    for want in ["/usr/bin/wspush", "/usr/share/lua/5.4/wspush/init.lua",
                 "/usr/share/lua/5.4/wspush/server.lua", "/usr/share/lua/5.4/wspush/json.lua",
                 "/usr/share/wspush/handlers/echo.lua", "/usr/share/man/man1/wspush.1",
                 "/usr/share/doc/wspush/README.md", "/lib/systemd/system/wspush.service",
                 "/etc/wspush/app.lua"]:
        assert want in paths, (want, listing)
    assert not [p for p in paths if p.startswith("/usr/local")], listing
    # /etc is the admin's: listed as a conffile, so an upgrade keeps an edit
    assert dpkg_deb("--info", deb, "conffiles").split() == ["/etc/wspush/app.lua"]
    # postinst makes the user and neither enables nor starts the service
    postinst = dpkg_deb("--info", deb, "postinst")
    assert "adduser --system --group --no-create-home" in postinst, postinst
    assert not re.search(r"systemctl (--system )?(enable|start|restart)", postinst), postinst
    assert subprocess.run(["sh", "-n"], input=postinst, text=True).returncode == 0


@pytest.fixture(scope="module")
def root(deb, tmp_path_factory):
    r = tmp_path_factory.mktemp("root")
    dpkg_deb("-x", deb, r)
    return r


def test_the_packaged_unit_runs_the_default_script_as_wspush_on_localhost(root, tmp_path):
    unit = (root / "lib/systemd/system/wspush.service").read_text()
    assert "\nUser=wspush\n" in unit and "\nType=notify\n" in unit
    start = re.search(r"^ExecStart=(.*?[^\\])$", unit, re.M | re.S).group(1).replace("\\\n", " ")
    assert start.split() == ["/usr/bin/wspush", "--host", "127.0.0.1", "--port", "8000",
                             "--control-socket", "/run/wspush/control", "/etc/wspush/app.lua"]
    assert "\nExecReload=/usr/bin/wspush --reload /run/wspush/control\n" in unit
    if shutil.which("systemd-analyze"):
        # the unit as it stands, pointed at the extracted files
        local = unit.replace("/usr/bin/wspush", str(root / "usr/bin/wspush")).replace(
            "/etc/wspush", str(root / "etc/wspush"))
        path = tmp_path / "wspush.service"
        path.write_text(local)
        p = subprocess.run(["systemd-analyze", "verify", str(path)], capture_output=True,
                           text=True, timeout=scaled(60))
        assert p.returncode == 0 and p.stderr.strip() == "", p.stderr


def test_the_extracted_binary_serves_the_default_script_with_its_own_modules(root):
    # Mark the packaged modules: the log line shows they, not the source
    # tree's, were loaded.
    server_lua = root / "usr/share/lua/5.4/wspush/server.lua"
    server_lua.write_text('io.stderr:write("packaged modules loaded\\n")\n'
                          + server_lua.read_text())
    check = subprocess.run([str(root / "usr/bin/wspush"), "--check", str(root / "etc/wspush/app.lua")],
                           capture_output=True, text=True, timeout=scaled(30), cwd=str(root))
    assert check.returncode == 0 and check.stdout.strip().endswith("app.lua: ok"), check
    s = Server(root / "etc/wspush/app.lua", bin=root / "usr/bin/wspush")
    try:
        assert "packaged modules loaded" in s.log
        with rawws.upgrade(s.port, "/ws") as c:
            assert c.recv_text() == "Welcome"
            c.send_text("hi")
            assert c.recv_text() == "new message :hi"
    finally:
        problems = s.stop()
    assert problems == [], problems
