#!/usr/bin/env bash
# Server instructions per message, counted by callgrind: repeatable whatever
# else the machine is doing, so two builds can be compared where the rate
# figures of run.sh drift. Each scenario runs twice, with N1 and N2 messages,
# against a fresh server under callgrind; the difference of the two totals
# divided by N2 - N1 is the cost of one message (start-up and handshakes
# cancel out).
#
#   tests/bench/insns.sh [--wsbench BIN] [--n1 N] [--n2 N] WSPUSH_BIN [WSPUSH_BIN ...]
#
# Prints one line per binary and scenario: echo (100 conns x 16 in flight,
# 32 B, handlers/echo.lua) and fanout (1000 subscribers, 8 publishes in
# flight, 64 B, per delivery; ten times the counts, so that enough publishes
# are made). A benchmark: it asserts nothing.
set -uo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
WSBENCH="$ROOT/build/tests/bench/wsbench"
N1=2000
N2=22000
while [ $# -gt 0 ]; do
    case "$1" in
    --wsbench) WSBENCH=$2; shift 2 ;;
    --n1) N1=$2; shift 2 ;;
    --n2) N2=$2; shift 2 ;;
    -h | --help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) break ;;
    esac
done
[ $# -ge 1 ] || { echo "usage: insns.sh [--wsbench BIN] [--n1 N] [--n2 N] WSPUSH_BIN..." >&2; exit 2; }
command -v valgrind >/dev/null || { echo "insns.sh: needs valgrind" >&2; exit 2; }
TMP=$(mktemp -d "${TMPDIR:-/tmp}/insns.XXXXXX")
trap 'rm -rf "$TMP"' EXIT

free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# total_ir BIN SCRIPT N WSBENCH-ARGS...: Ir of a server that served N messages.
total_ir() {
    local bin=$1 script=$2 n=$3; shift 3
    local port out log pid
    port=$(free_port)
    out="$TMP/cg.out"
    log="$TMP/server.log"
    rm -f "$out"
    valgrind --tool=callgrind --callgrind-out-file="$out" "$bin" --host 127.0.0.1 --port "$port" \
        --no-watch --log-level warn "$script" >"$log" 2>&1 &
    pid=$!
    for _ in $(seq 200); do
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
        sleep 0.1
    done
    "$WSBENCH" "$@" --port "$port" -n "$n" -w 0 -d 600 >"$TMP/bench.log" 2>&1 ||
        { echo "wsbench failed:" >&2; tail -3 "$TMP/bench.log" >&2; }
    kill -TERM "$pid"; wait "$pid"
    grep -m1 '^summary:' "$out" | awk '{print $2}'
}

for bin in "$@"; do
    for scenario in echo fanout; do
        local_n1=$N1 local_n2=$N2
        if [ "$scenario" = echo ]; then
            script="$ROOT/handlers/echo.lua"; args=(echo -c 100 -k 16 -s 32)
        else
            script="$HERE/scripts/fanout.lua"; args=(fanout -c 1000 -k 8 -s 64)
            local_n1=$((N1 * 10)) local_n2=$((N2 * 10))
        fi
        a=$(total_ir "$bin" "$script" "$local_n1" "${args[@]}")
        b=$(total_ir "$bin" "$script" "$local_n2" "${args[@]}")
        if [ -n "$a" ] && [ -n "$b" ]; then
            echo "$bin $scenario: $(( (b - a) / (local_n2 - local_n1) )) instructions per message ($a, $b Ir for $local_n1, $local_n2)"
        else
            echo "$bin $scenario: no figure"
        fi
    done
done
