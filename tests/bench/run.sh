#!/usr/bin/env bash
# The wspush benchmark: the same scenarios against wspush, node `ws` 8 and Tornado's demo, each
# server pinned to core 0 and the wsbench load generator to core 1, every scenario R times on a
# fresh server process, then a table of medians and the ratios wspush / peer.
#
#   tests/bench/run.sh [--quick] [--runs R] [--duration S] [--hold N] [--servers LIST]
#                      [--scenarios LIST] [--build-dir DIR] [--wspush BIN] [--no-build]
#                      [--reload-samples K] [--deflate-conns N] [--busy-poll USEC] [--out FILE]
#
# It is a benchmark, never a pass/fail test: it exits 0 whenever it could print its table, even
# with peers missing or slow. See tests/bench/README.md for what each figure means.
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)

RUNS=3
DURATION=5
WARMUP=1
HOLD_CONNS=10000
RELOAD_SAMPLES=5
DEFLATE_CONNS=1000
SERVERS="wspush node tornado"
SCENARIOS="echo1 rtt echo16 fanout fanout64 hold reload rss_deflate"
BUILD_DIR="$ROOT/build-bench"
WSPUSH_BIN=""
DO_BUILD=1
OUT=""
BUSY_POLL=100
SERVER_CPU=0
GEN_CPU=1

usage() {
    sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'
    cat <<EOF

  --quick          1 run of 1 s per scenario, 2000 held connections, 3 reload samples,
                   300 compressed connections (about two minutes in all)
  --runs R         repetitions per scenario (default $RUNS); the table shows medians
  --duration S     measured seconds per run (default $DURATION; warm-up ${WARMUP} s before)
  --hold N         idle connections for the RSS and reload scenarios (default $HOLD_CONNS)
  --reload-samples K  reloads per variant and run in the reload scenario (default $RELOAD_SAMPLES)
  --deflate-conns N   connections per mode in the rss_deflate scenario (default $DEFLATE_CONNS)
  --servers LIST   any of: wspush wspush-busy node tornado floor (default: wspush node tornado;
                   wspush-busy is wspush --busy-poll, for the message rows only; floor is
                   tests/bench/wsfloor.c, a blocking one-connection echo, for the rtt row only)
  --busy-poll USEC the window of wspush-busy (default $BUSY_POLL)
  --scenarios LIST any of: $SCENARIOS
  --build-dir DIR  where wspush and wsbench are built (default build-bench/)
  --wspush BIN     benchmark this wspush binary instead of the one built
  --no-build       use the binaries already in the build directory
  --out FILE       also write the table (Markdown) to FILE
EOF
}

while [ $# -gt 0 ]; do
    case "$1" in
    --quick) RUNS=1; DURATION=1; WARMUP=0.3; HOLD_CONNS=2000; RELOAD_SAMPLES=3; DEFLATE_CONNS=300 ;;
    --runs) RUNS=$2; shift ;;
    --duration) DURATION=$2; shift ;;
    --hold) HOLD_CONNS=$2; shift ;;
    --reload-samples) RELOAD_SAMPLES=$2; shift ;;
    --deflate-conns) DEFLATE_CONNS=$2; shift ;;
    --busy-poll) BUSY_POLL=$2; shift ;;
    --servers) SERVERS=$2; shift ;;
    --scenarios) SCENARIOS=$2; shift ;;
    --build-dir) BUILD_DIR=$2; shift ;;
    --wspush) WSPUSH_BIN=$2; shift ;;
    --no-build) DO_BUILD=0 ;;
    --out) OUT=$2; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "run.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done

log() { echo "[bench] $*" >&2; }

# --- dependencies ---------------------------------------------------------------------------

# Installs the Debian packages the peers need when they are missing (as root only).
ensure_packages() {
    local missing=()
    for p in "$@"; do
        dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$(id -u)" != 0 ]; then
        log "missing packages: ${missing[*]} (not root: peers that need them are skipped)"
        return 1
    fi
    log "installing ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null 2>&1 ||
        { apt-get update -qq >/dev/null 2>&1 &&
          DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null 2>&1; }
}

has_server() { [[ " $SERVERS " == *" $1 "* ]]; }

if has_server node; then
    ensure_packages nodejs node-ws || true
    if ! NODE_PATH=/usr/share/nodejs node -e 'require("ws")' >/dev/null 2>&1; then
        log "node ws is not available: skipping node"
        SERVERS=${SERVERS//node/}
    fi
fi
if has_server tornado; then
    ensure_packages python3-tornado || true
    if ! /usr/bin/python3 -c 'import tornado' >/dev/null 2>&1; then
        log "python3-tornado is not available: skipping tornado"
        SERVERS=${SERVERS//tornado/}
    fi
fi

# wsbench's io_uring backend needs liburing-dev at build time; without it wsbench builds with
# epoll only (more generator CPU per message: see README.md).
ensure_packages liburing-dev || log "liburing-dev missing: wsbench uses epoll"

# --- build ----------------------------------------------------------------------------------

if [ "$DO_BUILD" = 1 ]; then
    log "building wspush and wsbench in $BUILD_DIR"
    # Unit tests are not needed here, and leaving them out keeps the build independent of
    # test sources that are being edited.
    cmake -S "$ROOT" -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DWSPUSH_TESTS=OFF \
        -DWSPUSH_BENCH=ON >"$BUILD_DIR.cmake.log" 2>&1 &&
        cmake --build "$BUILD_DIR" -j2 --target wsbench wsfloor wspush >>"$BUILD_DIR.cmake.log" 2>&1 ||
        { log "build failed, see $BUILD_DIR.cmake.log"; tail -20 "$BUILD_DIR.cmake.log" >&2; exit 1; }
fi
WSBENCH="$BUILD_DIR/tests/bench/wsbench"
[ -n "$WSPUSH_BIN" ] || WSPUSH_BIN="$BUILD_DIR/wspush"
for b in "$WSBENCH" "$WSPUSH_BIN"; do
    [ -x "$b" ] || { log "missing $b (build it, or drop --no-build)"; exit 1; }
done

# Held connections need a descriptor each, on both sides: raise the soft limit to the hard one.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
NOFILE=$(ulimit -n)
if [ "$HOLD_CONNS" -gt $((NOFILE - 100)) ]; then
    log "descriptor limit $NOFILE: holding $((NOFILE - 100)) connections instead of $HOLD_CONNS"
    HOLD_CONNS=$((NOFILE - 100))
fi
# A pinned process on a 2-core machine: taskset when there is more than one core.
# The prefixes are arrays, not a function, so that `$!` is the server itself (taskset execs it)
# and stop_server signals the server rather than a subshell.
PIN=1
[ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null || PIN=0
PIN_SERVER=() PIN_GEN=() PIN_PY=()
[ $PIN = 1 ] && PIN_SERVER=(taskset -c "$SERVER_CPU") PIN_GEN=(taskset -c "$GEN_CPU") \
    PIN_PY=(--server-cpu "$SERVER_CPU" --client-cpu "$GEN_CPU")

TMP=$(mktemp -d "${TMPDIR:-/tmp}/wsbench.XXXXXX")
SERVER_PID=""
cleanup() {
    [ -n "$SERVER_PID" ] && stop_server
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- servers --------------------------------------------------------------------------------

# start_server NAME KIND: KIND is echo (the demo) or fanout (a /pub publisher). Sets SERVER_PID
# and SERVER_PORT, or returns 1.
start_server() {
    local name=$1 kind=$2 logf="$TMP/$1.log"
    : >"$logf"
    case "$name" in
    wspush | wspush-busy)
        local script="$ROOT/handlers/echo.lua" extra=()
        [ "$kind" = fanout ] && script="$HERE/scripts/fanout.lua"
        [ "$name" = wspush-busy ] && extra=(--busy-poll "$BUSY_POLL")
        "${PIN_SERVER[@]}" "$WSPUSH_BIN" --host 127.0.0.1 --port 0 "${extra[@]}" "$script" 2>"$logf" &
        ;;
    node)
        NODE_PATH=/usr/share/nodejs "${PIN_SERVER[@]}" node "$HERE/peers/node_echo.js" 0 2>"$logf" &
        ;;
    tornado)
        "${PIN_SERVER[@]}" /usr/bin/python3 "$HERE/peers/tornado_demo.py" 0 2>"$logf" &
        ;;
    floor)
        # One connection at a time: the round-trip row's floor only (see run_one).
        "${PIN_SERVER[@]}" "$BUILD_DIR/tests/bench/wsfloor" 0 2>"$logf" &
        ;;
    esac
    SERVER_PID=$!
    SERVER_PORT=""
    for _ in $(seq 1 100); do
        SERVER_PORT=$(grep -o 'listening on http://127.0.0.1:[0-9]*' "$logf" | head -1 | sed 's/.*://')
        [ -n "$SERVER_PORT" ] && return 0
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.1
    done
    log "$name did not start:"; tail -5 "$logf" >&2
    stop_server
    return 1
}

stop_server() {
    [ -n "$SERVER_PID" ] || return 0
    kill -TERM "$SERVER_PID" 2>/dev/null
    for _ in $(seq 1 30); do
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$SERVER_PID" 2>/dev/null
    wait "$SERVER_PID" 2>/dev/null
    SERVER_PID=""
}

# --- scenarios ------------------------------------------------------------------------------
# Each scenario: a label, the server kind, the wsbench arguments, the RESULT field reported,
# and whether more is better. reload and rss_deflate are not wsbench runs: they call
# reload_latency.py and deflate_rss.py --row (which start their own servers) and fill several
# rows each (ROWS).

declare -A LABEL KIND ARGS FIELD UNIT
LABEL[echo1]="echo, 100 conns, 1 in flight, 32 B";  KIND[echo1]="echo"
ARGS[echo1]="echo -c 100 -k 1 -s 32";               FIELD[echo1]=rate; UNIT[echo1]="replies/s"
LABEL[rtt]="echo, 1 conn, round trip p50";          KIND[rtt]="echo"
ARGS[rtt]="rtt -s 32";                              FIELD[rtt]=p50_us; UNIT[rtt]="us (lower is better)"
LABEL[echo16]="echo, 100 conns, 16 in flight, 32 B"; KIND[echo16]="echo"
ARGS[echo16]="echo -c 100 -k 16 -s 32";             FIELD[echo16]=rate; UNIT[echo16]="replies/s"
LABEL[fanout]="fan-out, 1000 subscribers, 64 B, 8 publishes in flight"; KIND[fanout]=fanout
ARGS[fanout]="fanout -c 1000 -k 8 -s 64";           FIELD[fanout]=rate; UNIT[fanout]="deliveries/s"
# The same with a publisher that keeps 64 publishes in flight: a server that
# writes each subscriber once per loop turn sends several messages per write.
LABEL[fanout64]="fan-out, 1000 subscribers, 64 B, 64 publishes in flight"; KIND[fanout64]=fanout
ARGS[fanout64]="fanout -c 1000 -k 64 -s 64";        FIELD[fanout64]=rate; UNIT[fanout64]="deliveries/s"
LABEL[hold]="RSS per idle connection (N held)";     KIND[hold]="echo"
ARGS[hold]="hold";                                  FIELD[hold]=rss_per_conn_b; UNIT[hold]="bytes (lower is better)"
ARGS[reload]="reload_latency.py";                   ARGS[rss_deflate]="deflate_rss.py --row"
declare -A ROWS NA
# The server's CPU time per reply or delivery (wsbench --pid) in the same runs: the figure
# that does not depend on how fast the generator is.
for sc in echo16 fanout; do
    ROWS[$sc]="$sc ${sc}_cpu"; LABEL[${sc}_cpu]="same, server CPU per message"
    UNIT[${sc}_cpu]="us (lower is better)"
done
ROWS[reload]="reload reload_hup reload_swap"
LABEL[reload]="reload latency, file write to first new reply (N live conns)"
LABEL[reload_hup]="reload latency, SIGHUP to first new reply (N live conns)"
LABEL[reload_swap]="reload: the swap itself (server log)"
for r in reload reload_hup reload_swap; do
    UNIT[$r]="ms (lower is better)"; NA[$r]="n/a (restart drops all connections)"
done
ROWS[rss_deflate]="rss_plain rss_deflate rss_ctx"
LABEL[rss_plain]="RSS per connection, compression off, 16 KB msg each way (N held)"
LABEL[rss_deflate]="RSS per compressed connection, server defaults (N held)"
LABEL[rss_ctx]="RSS per compressed connection, wspush --compression-context (N held)"
for r in rss_plain rss_deflate rss_ctx; do UNIT[$r]="bytes (lower is better)"; done

declare -A VALUES GENCPU EXTRA

# field NAME LINE: the value of NAME=... in a RESULT line.
field() { grep -o " $1=[-0-9.]*" <<<" $2" | head -1 | cut -d= -f2; }

# run_reload SERVER: reload_latency.py holds N connections to its own wspush and reloads it.
run_reload() {
    local name=$1 out result v
    [ "$name" = wspush ] || return 0 # peers cannot reload live: their cells say n/a
    out=$(/usr/bin/python3 "$HERE/reload_latency.py" --bin "$WSPUSH_BIN" --conns "$HOLD_CONNS" \
        --samples "$RELOAD_SAMPLES" "${PIN_PY[@]}" 2>&1)
    printf '== reload on %s\n%s\n' "$name" "$out" >>"$RAW"
    result=$(grep '^RESULT' <<<"$out" | tail -1)
    if [ -z "$result" ]; then
        log "reload on $name: no result"; tail -3 <<<"$out" >&2
        return 0
    fi
    local n
    n=$(field conns "$result")
    for r in reload reload_hup reload_swap; do LABEL[$r]=${LABEL[$r]/(N live conns)/($n live conns)}; done
    v=$(field write_p50_ms "$result"); [ -n "$v" ] && VALUES[reload,$name]+="$v "
    v=$(field hup_p50_ms "$result"); [ -n "$v" ] && VALUES[reload_hup,$name]+="$v "
    v=$(field swap_p50_ms "$result"); [ -n "$v" ] && VALUES[reload_swap,$name]+="$v "
    EXTRA[reload_p90,$name]+="$(field write_p90_ms "$result") "
    EXTRA[reload_hup_p90,$name]+="$(field hup_p90_ms "$result") "
    [ "$(field kept_ok "$result")" = 1 ] && [ "$(field closed "$result")" = 0 ] ||
        EXTRA[reload_lost,$name]=1
    log "reload on $name: write p50 $(field write_p50_ms "$result") ms, SIGHUP p50 $(field hup_p50_ms "$result") ms, swap $(field swap_p50_ms "$result") ms"
}

# run_rss_deflate SERVER: deflate_rss.py --row measures RSS per connection without and with
# permessage-deflate on the echo demo of SERVER (its own server processes).
run_rss_deflate() {
    local name=$1 out result v
    out=$(/usr/bin/python3 "$HERE/deflate_rss.py" --row "$name" --bin "$WSPUSH_BIN" \
        --conns "$DEFLATE_CONNS" "${PIN_PY[@]}" 2>&1)
    printf '== rss_deflate on %s\n%s\n' "$name" "$out" >>"$RAW"
    result=$(grep '^RESULT' <<<"$out" | tail -1)
    if [ -z "$result" ]; then
        log "rss_deflate on $name: no result"; tail -3 <<<"$out" >&2
        return 0
    fi
    for r in rss_plain rss_deflate rss_ctx; do LABEL[$r]=${LABEL[$r]/(N held)/($DEFLATE_CONNS held)}; done
    v=$(field plain_b "$result"); [ -n "$v" ] && VALUES[rss_plain,$name]+="$v "
    v=$(field deflate_b "$result"); [ -n "$v" ] && VALUES[rss_deflate,$name]+="$v "
    # The peers keep their deflate context (their default once enabled): their one compressed
    # figure also stands against wspush --compression-context.
    v=$(field context_b "$result"); [ -n "$v" ] || v=$(field deflate_b "$result")
    [ -n "$v" ] && VALUES[rss_ctx,$name]+="$v "
    log "rss_deflate on $name: ${result#RESULT }"
}

# run_one SCENARIO SERVER: one sample on a fresh server; appends to VALUES[scenario,server].
run_one() {
    local sc=$1 name=$2 out field val
    [ "$name" = floor ] && [ "$sc" != rtt ] && return 0 # it serves one connection at a time
    # The window is about messages; memory and reload rows would only repeat wspush's.
    [ "$name" = wspush-busy ] && [[ " rtt echo1 echo16 fanout fanout64 " != *" $sc "* ]] && return 0
    case "$sc" in
    reload) run_reload "$name"; return 0 ;;
    rss_deflate) run_rss_deflate "$name"; return 0 ;;
    esac
    start_server "$name" "${KIND[$sc]}" || return 0
    local args=${ARGS[$sc]} timing="-d $DURATION -w $WARMUP"
    if [ "$sc" = hold ]; then
        # Held 5 s: a server may give memory back once its connections are quiet
        # (wspush does after a quiet second), and idle is what this row measures.
        args="hold -c $HOLD_CONNS --sources 4 --pid $SERVER_PID --hold 5 --timeout 60"
        LABEL[hold]="RSS per idle connection ($HOLD_CONNS held)"
        timing=""
    fi
    [ -n "${ROWS[$sc]:-}" ] && args+=" --pid $SERVER_PID"
    # shellcheck disable=SC2086
    out=$("${PIN_GEN[@]}" "$WSBENCH" $args --port "$SERVER_PORT" $timing 2>&1)
    stop_server
    printf '== %s on %s\n%s\n' "$sc" "$name" "$out" >>"$RAW"
    local result
    result=$(grep '^RESULT' <<<"$out" | tail -1)
    field=${FIELD[$sc]}
    val=$(grep -o " $field=[-0-9.]*" <<<" $result" | cut -d= -f2)
    if [ -z "$val" ] || grep -q 'rate=0$' <<<"$result"; then
        log "$sc on $name: no result"; grep -v '^RESULT' <<<"$out" | tail -3 >&2
        return 0
    fi
    VALUES[$sc,$name]+="$val "
    local cpu
    cpu=$(field server_us_per_msg "$(grep '^RESULT server_cpu' <<<"$out" | tail -1)")
    [ -n "${ROWS[$sc]:-}" ] && [ -n "$cpu" ] && [ "${cpu#-}" = "$cpu" ] && VALUES[${sc}_cpu,$name]+="$cpu "
    GENCPU[$sc,$name]+="$(grep -o ' cpu_pct=[0-9]*' <<<" $result" | cut -d= -f2) "
    [ "$sc" = hold ] && EXTRA[$sc,$name]+="$(grep -o ' connect_rate=[0-9]*' <<<" $result" | cut -d= -f2) "
    log "$sc on $name: $field=$val"
}

median() {
    [ -n "${1// /}" ] || { echo ""; return; }
    tr ' ' '\n' <<<"$1" | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {
        if (NR % 2) print a[(NR+1)/2]; else print (a[NR/2] + a[NR/2+1]) / 2 }'
}

fmt() { # human form of a number: 1234567 -> 1.23 M, 12345 -> 12.3 k
    [ -n "$1" ] || { echo "-"; return; }
    awk -v v="$1" 'BEGIN {
        a = v < 0 ? -v : v
        if (a >= 1e6) printf "%.2f M", v / 1e6; else if (a >= 1e4) printf "%.1f k", v / 1e3;
        else if (a >= 100) printf "%.0f", v; else if (a >= 10) printf "%.1f", v;
        else printf "%.2f", v }'
}

ratio() {
    [ -n "$1" ] && [ -n "$2" ] || { echo "-"; return; }
    awk -v a="$1" -v b="$2" 'BEGIN { if (b == 0) print "-"; else if (a / b < 0.1) printf "%.3fx", a / b; else printf "%.2fx", a / b }'
}

# --- run ------------------------------------------------------------------------------------

START=$(date +%s)
RAW="$BUILD_DIR/bench-raw.log"
: >"$RAW"
log "servers: $SERVERS; scenarios: $SCENARIOS; $RUNS run(s) of ${DURATION} s; pinning: $([ $PIN = 1 ] && echo "server core $SERVER_CPU, generator core $GEN_CPU" || echo off)"
# Runs are interleaved (each repetition goes through every server) so that a burst of
# background load on this shared machine spreads over all servers instead of hitting one.
for _ in $(seq 1 "$RUNS"); do
    for sc in $SCENARIOS; do
        [ -n "${ARGS[$sc]:-}" ] || continue
        for name in $SERVERS; do
            run_one "$sc" "$name"
        done
    done
done

# --- table ----------------------------------------------------------------------------------

ours=(wspush) peers=()
has_server wspush-busy && ours+=(wspush-busy)
for p in node tornado floor; do has_server "$p" && peers+=("$p"); done
header="| scenario | unit"
sep="|---|---"
for p in "${ours[@]}" "${peers[@]}"; do header+=" | $p"; sep+="|---"; done
for o in "${ours[@]}"; do
    for p in "${peers[@]}"; do header+=" | $o/$p"; sep+="|---"; done
done
header+=" | generator CPU (wspush run) |"
sep+="|---|"

table() {
    echo "wspush benchmark, $(date -u +%Y-%m-%d), $(nproc) cores ($(uname -r)), load average $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "medians of $RUNS run(s) of ${DURATION} s; server on core $SERVER_CPU, wsbench on core $GEN_CPU"
    echo
    echo "$header"
    echo "$sep"
    for sc in $SCENARIOS; do
      for r in ${ROWS[$sc]:-$sc}; do
        local row med pv
        row="| ${LABEL[$r]} | ${UNIT[$r]}"
        for p in "${ours[@]}" "${peers[@]}"; do
            pv=$(median "${VALUES[$r,$p]:-}")
            if [ -z "$pv" ] && [ -n "${NA[$r]:-}" ]; then row+=" | ${NA[$r]}"; else row+=" | $(fmt "$pv")"; fi
        done
        for o in "${ours[@]}"; do
            for p in "${peers[@]}"; do
                row+=" | $(ratio "$(median "${VALUES[$r,$o]:-}")" "$(median "${VALUES[$r,$p]:-}")")"
            done
        done
        med=$(median "${GENCPU[$r,wspush]:-}")
        if [ -n "$med" ]; then row+=" | $med % |"; else row+=" | - |"; fi
        echo "$row"
      done
    done
    if [[ " $SCENARIOS " == *" hold "* ]]; then
        local line="connect rate while holding (connections/s):"
        for name in $SERVERS; do line+=" $name $(fmt "$(median "${EXTRA[hold,$name]:-}")");"; done
        echo
        echo "$line"
    fi
    if [[ " $SCENARIOS " == *" reload "* ]] && [ -n "${VALUES[reload_swap,wspush]:-}" ]; then
        echo
        echo "reload p90 (median over runs): file write $(fmt "$(median "${EXTRA[reload_p90,wspush]:-}")") ms," \
            "SIGHUP $(fmt "$(median "${EXTRA[reload_hup_p90,wspush]:-}")") ms; $RELOAD_SAMPLES samples per run;" \
            "the file-write figure includes the server's 30 ms debounce;" \
            "every reload kept every connection: $([ -n "${EXTRA[reload_lost,wspush]:-}" ] && echo NO || echo yes)"
    fi
}

echo
table | tee ${OUT:+"$OUT"}
log "done in $(($(date +%s) - START)) s; every wsbench report is in $RAW"
exit 0
