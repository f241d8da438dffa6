#!/usr/bin/env python3
"""The layering rules of docs/architecture.md, checked on the built objects.

Reads `nm` of every object compiled from core/ (so it holds whatever the
files are called) and fails when:
  1. two or more core objects depend on each other in a circle (A uses a
     symbol B defines, and B, through any chain, uses one of A's);
  2. an object that does socket I/O reaches, through any chain of calls, an
     object that uses the Lua C API;
  3. the protocol library (wspush_proto) has an undefined Lua symbol.

Usage: check_layers.py BUILD_DIR
"""
import os
import subprocess
import sys

# Calls that read or write sockets (libuv streams, io_uring, plain syscalls).
SOCKET_IO = {
    "uv_read_start", "uv_write", "uv_try_write", "uv_accept", "uv_tcp_connect",
    "uv_shutdown", "uv_listen", "io_uring_submit", "io_uring_queue_init_params",
    "send", "sendmsg", "recv", "recvmsg", "read", "write", "writev", "readv",
}
LIBS = ("wspush_codec", "wspush_proto", "wspush_host", "wspush")


def objects(build):
    out = {}
    for lib in LIBS:
        d = os.path.join(build, "CMakeFiles", lib + ".dir", "core")
        if not os.path.isdir(d):
            sys.exit("check_layers: no objects in %s (build the project first)" % d)
        for f in sorted(os.listdir(d)):
            if f.endswith(".o"):
                out[f[:-len(".c.o")]] = (lib, os.path.join(d, f))
    return out


def symbols(path):
    defined, undefined = set(), set()
    text = subprocess.run(["nm", "-P", path], check=True, capture_output=True, text=True).stdout
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 2:
            continue
        name, kind = parts[0], parts[1]
        if kind == "U":
            undefined.add(name)
        elif kind in "TDBRCGSVW":  # global definitions only: statics are not linked to
            defined.add(name)
    return defined, undefined


def reach(graph, start):
    seen, todo = set(), [start]
    while todo:
        n = todo.pop()
        for m in graph[n]:
            if m not in seen:
                seen.add(m)
                todo.append(m)
    return seen


def path_between(graph, a, b):
    """One chain of dependencies from a to b, for the message."""
    prev, todo = {a: None}, [a]
    while todo:
        n = todo.pop(0)
        for m in sorted(graph[n]):
            if m not in prev:
                prev[m] = n
                if m == b:
                    chain = [m]
                    while prev[chain[-1]] is not None:
                        chain.append(prev[chain[-1]])
                    return " -> ".join(reversed(chain))
                todo.append(m)
    return "?"


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    objs = objects(sys.argv[1])
    syms = {name: symbols(path) for name, (_, path) in objs.items()}
    owner = {}
    for name, (defined, _) in syms.items():
        for s in defined:
            owner.setdefault(s, name)
    graph = {name: set() for name in objs}
    for name, (_, undefined) in syms.items():
        for s in undefined:
            o = owner.get(s)
            if o and o != name:
                graph[name].add(o)

    errors = []
    # 1. circles
    for a in sorted(objs):
        for b in sorted(reach(graph, a)):
            if b > a and a in reach(graph, b):
                errors.append("circle: %s and %s (%s; %s)" % (
                    a, b, path_between(graph, a, b), path_between(graph, b, a)))
    # 2. sockets never reach Lua
    lua_users = {n for n, (_, u) in syms.items() if any(s.startswith(("lua_", "luaL_")) for s in u)}
    socket_users = {n for n, (_, u) in syms.items() if u & SOCKET_IO}
    for s in sorted(socket_users):
        for l in sorted(reach(graph, s) & lua_users):
            errors.append("%s does socket I/O and reaches the Lua API: %s" % (s, path_between(graph, s, l)))
    # 3. the protocol library links without Lua
    for n, (lib, _) in sorted(objs.items()):
        if lib == "wspush_proto":
            bad = sorted(s for s in syms[n][1] if s.startswith(("lua_", "luaL_", "luaopen_")))
            if bad:
                errors.append("%s (protocol library) uses Lua: %s" % (n, ", ".join(bad[:5])))

    print("check_layers: %d objects, %d do socket I/O (%s), %d use Lua (%s)" % (
        len(objs), len(socket_users), " ".join(sorted(socket_users)),
        len(lua_users), " ".join(sorted(lua_users))))
    for e in errors:
        print("check_layers: " + e)
    if not socket_users or not lua_users:
        # the check itself went wrong (renamed libraries, nm output changed)
        print("check_layers: found no socket or no Lua users: nothing was checked")
        return 1
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
