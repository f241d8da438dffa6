#!/bin/sh
# Run every libFuzzer target for a bounded time each (CI-style).
#   tests/fuzz/run.sh [seconds]       default 60 s per target
# Environment: BUILD (default build-fuzz), JOBS (parallel targets, default 1),
# SEED (libFuzzer -seed: the same mutations each run, as CI wants; unset = random),
# TARGETS (space-separated subset). Builds with clang if BUILD is missing.
# New corpus entries go to $BUILD/fuzz-corpus/<target> (the checked-in seeds
# are read, never written). A crash stops that target; its input is left as
# $BUILD/fuzz-artifacts/<target>/crash-* and the script exits non-zero.
set -eu
SECS=${1:-60}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${BUILD:-$ROOT/build-fuzz}
TARGETS=${TARGETS:-"frame message utf8 http tokens deflate route host httpc url tls proxy"}
JOBS=${JOBS:-1}

# Configured every time (cheap when nothing changed): a build directory made
# before a target was added knows no rule for it until cmake runs again.
cmake -S "$ROOT" -B "$BUILD" -DCMAKE_C_COMPILER=clang -DWSPUSH_FUZZ=ON -DWSPUSH_TESTS=OFF \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
set --
for t in $TARGETS; do set -- "$@" "fuzz_$t"; done
cmake --build "$BUILD" -j "$(nproc)" --target "$@"

dict_for() {
    case $1 in
    http | tokens | deflate) echo "-dict=$ROOT/tests/fuzz/http.dict" ;;
    httpc) echo "-dict=$ROOT/tests/fuzz/httpc.dict" ;;
    url) echo "-dict=$ROOT/tests/fuzz/url.dict" ;;
    frame | message) echo "-dict=$ROOT/tests/fuzz/frame.dict" ;;
    route) echo "-dict=$ROOT/tests/fuzz/route.dict" ;;
    *) echo "" ;;
    esac
}

run_one() {
    t=$1
    work="$BUILD/fuzz-corpus/$t"
    art="$BUILD/fuzz-artifacts/$t"
    mkdir -p "$work" "$art"
    log="$BUILD/fuzz-$t.log"
    # shellcheck disable=SC2046
    if "$BUILD/fuzz_$t" $(dict_for "$t") ${SEED:+-seed=$SEED} -max_total_time="$SECS" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 -artifact_prefix="$art/" \
        "$work" "$ROOT/tests/fuzz/corpus/$t" >"$log" 2>&1; then
        st=ok
    else
        st=FAIL
    fi
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1)
    echo "fuzz_$t: $st  execs=${execs:-?} $cov  (log $log)"
    [ "$st" = ok ]
}

stamp="$BUILD/fuzz-run.stamp"
mkdir -p "$BUILD"
: >"$stamp"
rc=0
if [ "$JOBS" -gt 1 ]; then
    pids=""
    for t in $TARGETS; do
        run_one "$t" &
        pids="$pids $!"
    done
    for p in $pids; do wait "$p" || rc=1; done
else
    for t in $TARGETS; do run_one "$t" || rc=1; done
fi
# inputs that crashed, leaked or hung during this run
find "$BUILD/fuzz-artifacts" -type f -newer "$stamp" 2>/dev/null | sed 's/^/new artifact: /'
rm -f "$stamp"
exit $rc
