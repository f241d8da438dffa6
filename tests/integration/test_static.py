"""wspush.static end to end: files, index.html, content types, and every way
out of the root refused (tests/integration/scripts/push_static.lua)."""
import os

import pytest

from conftest import REPO
from pushlib import http, push_script, raw_request

SCRIPT = push_script("push_static.lua")
SECRET = "TOP-SECRET-4f1c9e-do-not-serve"
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256))


@pytest.fixture
def tree(tmp_path):
    """tmp/secret.txt (outside), tmp/www (the root)."""
    (tmp_path / "secret.txt").write_text(SECRET + "\n")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "index.html").write_text("<p>%s</p>" % SECRET)
    (tmp_path / "outside" / "secret.txt").write_text(SECRET)
    www = tmp_path / "www"
    www.mkdir()
    (www / "index.html").write_text("<!doctype html><title>root index</title>")
    (www / "app.js").write_text("console.log('app');\n")
    (www / "style.css").write_text("body { color: red }\n")
    (www / "data.json").write_text('{"ok": true}')
    (www / "notes.txt").write_text("just notes\n")
    (www / "logo.svg").write_text("<svg xmlns='http://www.w3.org/2000/svg'/>")
    (www / "img.png").write_bytes(PNG)
    (www / "blob.bin").write_bytes(b"\x00\x01\x02")
    (www / "sub").mkdir()
    (www / "sub" / "index.html").write_text("<p>sub index</p>")
    (www / "sub" / "page.html").write_text("<p>sub page</p>")
    (www / "sub" / "with space.txt").write_text("spaced")
    # symlinks inside the root that point outside it
    os.symlink(tmp_path / "secret.txt", www / "leak.txt")
    os.symlink("../secret.txt", www / "leak-rel.txt")
    os.symlink(tmp_path / "outside", www / "outdir")
    os.symlink("..", www / "up")
    # and one that stays inside (allowed)
    os.symlink("notes.txt", www / "alias.txt")
    return tmp_path


@pytest.fixture
def static(spawn, tree, monkeypatch):
    monkeypatch.setenv("PUSH_STATIC_ROOT", str(tree / "www"))
    return spawn(SCRIPT)


@pytest.mark.parametrize("path, ctype, body", [
    ("/static/app.js", "text/javascript", b"console.log('app');\n"),
    ("/static/style.css", "text/css", b"body { color: red }\n"),
    ("/static/data.json", "application/json", b'{"ok": true}'),
    ("/static/notes.txt", "text/plain", b"just notes\n"),
    ("/static/logo.svg", "image/svg+xml", None),
    ("/static/img.png", "image/png", PNG),
    ("/static/blob.bin", "application/octet-stream", b"\x00\x01\x02"),
    ("/static/sub/page.html", "text/html", b"<p>sub page</p>"),
    ("/static/sub/with%20space.txt", "text/plain", b"spaced"),
    ("/static/alias.txt", "text/plain", b"just notes\n"),
])
def test_serves_files_with_content_types(static, path, ctype, body):
    r = http(static, "GET", path)
    assert r.status == 200, r
    assert (r.header("Content-Type") or "").startswith(ctype), r
    if body is not None:
        assert r.body == body
    assert r.header("Content-Length") == str(len(r.body))


def test_index_html(static):
    for path in ("/", "/static/"):
        r = http(static, "GET", path)
        assert r.status == 200, (path, r)
        assert b"root index" in r.body
        assert (r.header("Content-Type") or "").startswith("text/html"), r
    r = http(static, "GET", "/static/sub/")
    assert r.status == 200 and r.body == b"<p>sub index</p>", r
    r = http(static, "GET", "/static/sub")
    assert r.status == 301 and r.header("Location") == "/static/sub/", r


def test_query_string_is_not_part_of_the_file_name(static):
    r = http(static, "GET", "/static/app.js?v=1&x=../../secret.txt")
    assert r.status == 200 and r.body == b"console.log('app');\n", r


def test_missing_file_is_404(static):
    for path in ("/static/nope.txt", "/static/sub/nope/deeper.js", "/static/app.js/x"):
        r = http(static, "GET", path)
        assert r.status == 404, (path, r)


def test_head_sends_no_body(static):
    r = http(static, "HEAD", "/static/app.js")
    assert r.status == 200 and r.body == b"", r
    assert (r.header("Content-Type") or "").startswith("text/javascript"), r


def test_directory_relative_to_the_script(static):
    r = http(static, "GET", "/ex/index.html")
    assert r.status == 200, r
    assert r.body == (REPO / "examples" / "index.html").read_bytes()
    assert (r.header("Content-Type") or "").startswith("text/html")


TRAVERSALS = [
    "/static/../secret.txt",
    "/static/../../secret.txt",
    "/static/sub/../../secret.txt",
    "/static/./../secret.txt",
    "/static/%2e%2e/secret.txt",
    "/static/%2E%2E/secret.txt",
    "/static/.%2e/secret.txt",
    "/static/%2e./secret.txt",
    "/static/%2e%2e%2fsecret.txt",
    "/static/%2E%2E%2Fsecret.txt",
    "/static/..%2fsecret.txt",
    "/static/..%2Fsecret.txt",
    "/static/sub/..%2F..%2Fsecret.txt",
    "/static/sub%2F..%2F..%2Fsecret.txt",
    "/static/%252e%252e/secret.txt",
    "/static/%252E%252E%252Fsecret.txt",
    "/static/..%252fsecret.txt",
    "/static/..\\secret.txt",
    "/static/..%5csecret.txt",
    "/static/..%5Csecret.txt",
    "/static/%255c..%255csecret.txt",
    "/static/..%00/secret.txt",
    "/static/secret.txt%00.txt",
    "/static/leak.txt",
    "/static/leak-rel.txt",
    "/static/outdir/secret.txt",
    "/static/outdir/",
    "/static/outdir",
    "/static/up/secret.txt",
    "/static/up/outside/secret.txt",
    "/static/%2e%2e",
    "/static/..",
    "/static/../",
    "/..%2fsecret.txt",
    "/static/.../secret.txt",
]


def _check_refused(r, path):
    assert SECRET.encode() not in r.body, "leaked the outside file via %r: %r" % (path, r)
    assert r.status in (403, 404), (path, r)


@pytest.mark.parametrize("path", TRAVERSALS)
def test_traversal_is_refused(static, path):
    _check_refused(raw_request(static, path), path)


def test_absolute_paths_are_refused(static, tree):
    secret = str(tree / "secret.txt")          # /tmp/.../secret.txt
    enc = secret.replace("/", "%2F")
    for path in ("/static/" + secret,           # /static//tmp/...  (empty segment)
                 "/static/" + enc,              # /static/%2Ftmp%2F...
                 "/static/" + enc.replace("%2F", "%252F"),
                 "/static/%2F" + secret.lstrip("/"),
                 "/static//" + secret,
                 "/static/" + "/etc/passwd",
                 "/static/%2Fetc%2Fpasswd"):
        r = raw_request(static, path)
        _check_refused(r, path)
        assert b"root:" not in r.body, (path, r)


def test_traversal_on_the_root_route_and_absolute_form(static, tree):
    for target in ("/../secret.txt", "/%2e%2e/secret.txt", "/%2e%2e%2fsecret.txt",
                   "http://127.0.0.1/static/../secret.txt",
                   "http://127.0.0.1/static/%2e%2e/secret.txt"):
        try:
            r = raw_request(static, target)
        except EOFError:
            continue  # the server may drop a request it refuses to parse
        assert SECRET.encode() not in r.body, (target, r)
        assert r.status in (400, 403, 404), (target, r)


def test_refusals_are_403_for_traversal(static):
    """'..' in any spelling, a backslash, NUL: 403 (the documented answer)."""
    for path in ("/static/../secret.txt", "/static/%2e%2e/secret.txt", "/static/%2E%2E%2Fsecret.txt",
                 "/static/%252e%252e/secret.txt", "/static/..%5csecret.txt", "/static/leak.txt",
                 "/static/outdir/secret.txt", "/static/%2Fetc%2Fpasswd"):
        r = raw_request(static, path)
        assert r.status == 403, (path, r)


def test_server_still_serves_after_the_attacks(static):
    for path in TRAVERSALS[:10]:
        raw_request(static, path)
    r = http(static, "GET", "/hello")
    assert r.status == 200 and r.body == b"hello", r
    assert static.alive()
