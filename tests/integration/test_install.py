"""cmake --install: an installed wspush runs without the source tree, its
man page lists every option, and wspush.testing is where Lua 5.4 looks."""
import os
import re
import shutil
import subprocess

import pytest

from conftest import BIN, Server, scaled

BUILD = BIN.parent


@pytest.fixture(scope="module")
def prefix(tmp_path_factory):
    if not (BUILD / "cmake_install.cmake").exists():
        pytest.skip("%s is not a CMake build directory" % BUILD)
    root = tmp_path_factory.mktemp("prefix")
    p = subprocess.run(["cmake", "--install", str(BUILD), "--prefix", str(root)],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    return root


def test_the_install_has_the_binary_modules_handlers_page_docs_and_man_page(prefix):
    for rel in ["bin/wspush", "share/lua/5.4/wspush/init.lua", "share/lua/5.4/wspush/testing.lua",
                "share/wspush/handlers/broadcast.lua", "share/wspush/examples/index.html",
                "share/wspush/types/wspush.lua",
                "share/doc/wspush/README.md", "share/doc/wspush/LICENSE",
                "share/doc/wspush/api.md", "share/man/man1/wspush.1"]:
        assert (prefix / rel).is_file(), rel


def test_the_installed_binary_loads_the_installed_modules(prefix, tmp_path):
    # Mark the installed copy: only a binary that found its modules next to
    # itself (not in the source tree it was built from) sees the mark.
    init = prefix / "share/lua/5.4/wspush/init.lua"
    text = init.read_text()
    init.write_text(text.replace("\nreturn M\n", "\nM.installed_copy = true\nreturn M\n"))
    try:
        script = tmp_path / "where.lua"
        script.write_text('local wspush = require "wspush"\n'
                          'return { ["/where"] = function() return tostring(wspush.installed_copy) end }\n')
        s = Server(script, bin=prefix / "bin/wspush")
        try:
            r = s.http("/where")
            assert (r.status, r.body) == (200, b"true"), r
        finally:
            s.stop()
    finally:
        init.write_text(text)


def test_the_installed_demo_serves_its_page(prefix):
    s = Server(prefix / "share/wspush/handlers/broadcast.lua", bin=prefix / "bin/wspush")
    try:
        r = s.http("/")
        assert r.status == 200 and b"<title>wspush</title>" in r.body, r
    finally:
        s.stop()


def test_the_man_page_lists_every_option_of_help(prefix):
    page = (prefix / "share/man/man1/wspush.1").read_text()
    help_text = subprocess.run([str(prefix / "bin/wspush"), "--help"], capture_output=True,
                               text=True, timeout=30).stdout
    options = re.findall(r"^\s+(?:-\w, )?(--[\w-]+)", help_text, re.M)
    assert len(options) > 40, help_text
    for opt in options:
        assert "\\fB" + opt.replace("-", "\\-") + "\\fR" in page, opt
    if shutil.which("groff"):
        p = subprocess.run(["groff", "-man", "-Tutf8", "-ww", "-z"], input=page,
                           capture_output=True, text=True, timeout=30)
        assert p.returncode == 0 and p.stderr == "", p.stderr


def test_wspush_testing_loads_from_the_install(prefix, tmp_path):
    """A user's spec finds wspush.testing and its native part under the
    prefix (the paths Lua 5.4 searches there)."""
    native = list(prefix.glob("lib*/**/lua/5.4/wspush/native.so"))
    if not native:
        pytest.skip("no native module in this build (a sanitizer build has none)")
    lua_path = "%s/share/lua/5.4/?.lua;%s/share/lua/5.4/?/init.lua;;" % (prefix, prefix)
    cpath = "%s/?.so;;" % native[0].parent.parent
    code = ('local t = require "wspush.testing"\n'
            'local app = t.load("%s")\n'
            'local c = app:connect("/ws")\n'
            'c:receive("hi")\n'
            'print(table.concat(c:texts(), "|"))\n' % (prefix / "share/wspush/handlers/echo.lua"))
    env = dict(os.environ, LUA_PATH_5_4=lua_path, LUA_CPATH_5_4=cpath)  # ";;": and Lua's own
    p = subprocess.run(["lua5.4", "-e", code], capture_output=True, text=True,
                       timeout=scaled(30), cwd=str(tmp_path), env=env)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "Welcome|new message :hi", p.stdout
