#!/usr/bin/env bash
# tests/deb-check.sh: build the Debian package and install it for real, the
# way an admin would, then check what the install did. Run as root on a
# fresh Debian 12 (it installs and removes packages), e.g. in a throwaway
# root: ../shared/tools/fresh-check.sh "bash tests/deb-check.sh"
#
# 1. build deps (tests/deps.sh + dpkg-dev, file), cmake, cpack -G DEB
# 2. purge the build deps again, so that what the server needs at run time
#    must come from the package's declared Depends
# 3. apt-get install ./wspush_*.deb; the wspush user, the unit (neither
#    enabled nor started), /etc/wspush/app.lua; --check as wspush; the server
#    run as the unit runs it (user wspush, /run/wspush, NOTIFY_SOCKET) serves
#    an echo on 127.0.0.1:8000, `wspush --reload` (ExecReload) answers 0,
#    SIGTERM stops it with STOPPING=1
# 4. dpkg -r, then dpkg -P: nothing of it is left
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
step() { echo "== $*"; }
die() { echo "deb-check: FAILED: $*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || die "run me as root (in a throwaway root: see the header)"

step "build dependencies"
bash tests/deps.sh
build_only=(dpkg-dev file)
apt-get install -y -q --no-install-recommends "${build_only[@]}" >/dev/null

step "build and package"
build=$(mktemp -d)
cmake -S . -B "$build" -DWSPUSH_TESTS=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j"$(nproc)" >/dev/null
(cd "$build" && cpack -G DEB) | tail -1
deb=$(ls "$build"/wspush_*_amd64.deb)
dpkg-deb -f "$deb" Package Version Depends
cp "$deb" /root/
deb=/root/$(basename "$deb")
rm -rf "$build"

step "remove the build dependencies again"
# What tests/deps.sh installs for the build (apt's certificates stay);
# autoremove takes what they pulled in, the run-time libraries among them.
mapfile -t builddeps < <(bash tests/deps.sh --list | grep -vx ca-certificates)
apt-get purge -y -q --auto-remove "${builddeps[@]}" "${build_only[@]}" >/dev/null
runtime=(liblua5.4-0 libuv1 liburing2 libhiredis0.14 lua-cjson adduser)
missing=()
for p in "${runtime[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
echo "not installed before the package: ${missing[*]:-none}"
[ ${#missing[@]} -ge 3 ] || die "the purge left the run-time libraries; the Depends check would prove nothing"

step "apt-get install $deb"
apt-get install -y -q --no-install-recommends "$deb" 2>&1 | grep -E "^(Setting up|The following NEW)|wspush" || true
dpkg-query -W -f='${Status}\n' wspush | grep -q "install ok installed" || die "wspush is not installed"
for p in "${missing[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" \
    || die "$p, a declared dependency, was not installed"
done
echo "apt installed with it: ${missing[*]:-none}"

step "what the install made"
getent passwd wspush || die "no wspush user"
getent group wspush >/dev/null || die "no wspush group"
[ "$(getent passwd wspush | cut -d: -f7)" = /usr/sbin/nologin ] || die "wspush has a login shell"
[ ! -e /nonexistent ] || die "a home directory was made"
[ -f /lib/systemd/system/wspush.service ] || die "no unit in /lib/systemd/system"
grep -qx "User=wspush" /lib/systemd/system/wspush.service || die "the unit does not run as wspush"
if ls /etc/systemd/system/*.wants/wspush.service 2>/dev/null; then die "the unit was enabled"; fi
for p in /proc/[0-9]*; do
  [ "$(readlink "$p/exe" 2>/dev/null)" != /usr/bin/wspush ] || die "a wspush runs (pid ${p#/proc/})"
done
echo "unit in place, not enabled, nothing running"
[ -f /etc/wspush/app.lua ] || die "no /etc/wspush/app.lua"
dpkg-query -W -f='${Conffiles}\n' wspush | grep -q "/etc/wspush/app.lua" || die "app.lua is not a conffile"
runuser -u wspush -- wspush --check /etc/wspush/app.lua

step "run it as the unit would, and talk to it"
apt-get install -y -q --no-install-recommends python3 python3-websockets >/dev/null
install -d -o wspush -g wspush -m 755 /run/wspush   # RuntimeDirectory=wspush
python3 - <<'PY'
import asyncio, os, socket, subprocess, sys, tempfile, time
import websockets

def fail(msg):
    sys.exit("deb-check: FAILED: " + msg)

probe = socket.socket()
try:
    probe.bind(("127.0.0.1", 8000))
except OSError as e:
    fail("127.0.0.1:8000 is taken here (%s): cannot run the unit's command line" % e)
probe.close()
d = tempfile.mkdtemp()
os.chmod(d, 0o755)
name = os.path.join(d, "notify")
ns = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
ns.bind(name)
os.chmod(name, 0o666)
ns.settimeout(30)
unit = open("/lib/systemd/system/wspush.service").read().replace("\\\n", " ")
start = [l.split("=", 1)[1].split() for l in unit.splitlines() if l.startswith("ExecStart=")][0]
reload = [l.split("=", 1)[1].split() for l in unit.splitlines() if l.startswith("ExecReload=")][0]
print("ExecStart:", " ".join(start))
t0 = time.monotonic()
# setpriv and env exec: the pid is the server's, as MAINPID would be
srv = subprocess.Popen(["setpriv", "--reuid=wspush", "--regid=wspush", "--init-groups", "--",
                        "env", "NOTIFY_SOCKET=" + name, *start])

def expect(key):
    for _ in range(20):
        msg = dict(l.split("=", 1) for l in ns.recv(4096).decode().split("\n") if l)
        if key in msg:
            return msg
    fail("no %s" % key)

try:
    ready = expect("READY")
    print("READY=1 after %.2f s; STATUS=%s" % (time.monotonic() - t0, ready.get("STATUS")))

    async def echo():
        async with websockets.connect("ws://127.0.0.1:8000/ws") as ws:
            hello = await asyncio.wait_for(ws.recv(), 10)
            await ws.send("hi")
            return hello, await asyncio.wait_for(ws.recv(), 10)
    got = asyncio.run(echo())
    print("echo:", got)
    if got != ("Welcome", "new message :hi"):
        fail("echo answered %r" % (got,))
    p = subprocess.run(["runuser", "-u", "wspush", "--", *reload], capture_output=True, text=True,
                       timeout=60)
    print("ExecReload: rc=%d %s" % (p.returncode, (p.stdout + p.stderr).strip()))
    if p.returncode != 0:
        fail("the reload command failed")
    srv.terminate()
    print("STOPPING: STATUS=%s" % expect("STOPPING").get("STATUS"))
    rc = srv.wait(timeout=30)
    if rc != 0:
        fail("the server exited with %d after SIGTERM" % rc)
finally:
    if srv.poll() is None:
        srv.kill()
PY

step "dpkg -r, dpkg -P"
dpkg -r wspush
[ ! -e /usr/bin/wspush ] && [ ! -e /lib/systemd/system/wspush.service ] \
  && [ ! -e /usr/share/lua/5.4/wspush ] || die "dpkg -r left files"
[ -f /etc/wspush/app.lua ] || die "dpkg -r removed the conffile (only a purge should)"
dpkg -P wspush
[ ! -e /etc/wspush ] || die "dpkg -P left /etc/wspush"
if dpkg-query -W wspush 2>/dev/null; then die "dpkg still knows wspush"; fi
echo "deb-check: all good"
