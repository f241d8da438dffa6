#!/usr/bin/env bash
# Set up, build and run every test: unit (cmocka), Lua specs (busted),
# end-to-end (real server, real clients), then the same again with the
# server and tests built under ASan + UBSan, then a valgrind subset.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tests/deps.sh --test

export NODE_PATH=/usr/share/nodejs
PYTEST_BASE=(/usr/bin/python3 -m pytest -q -p no:cacheprovider)
PYTEST=("${PYTEST_BASE[@]}" tests/integration)
JOBS=$(nproc 2>/dev/null || echo 2)
step() { printf '\n=== %s ===\n' "$*"; }

step "build (release)"
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DWSPUSH_TESTS=ON -DWSPUSH_BENCH=ON >/dev/null
cmake --build build -j"$JOBS"

step "unit tests (cmocka)"
(cd build && ctest --output-on-failure)

step "Lua specs (busted)"
lua5.4 /usr/bin/busted --lpath='lua/?.lua;lua/?/init.lua' --cpath='build/lua/?.so' tests/lua

step "end-to-end tests"
WSPUSH_BIN="$PWD/build/wspush" "${PYTEST[@]}"

step "end-to-end subset with the writev send path (--no-io-uring)"
WSPUSH_BIN="$PWD/build/wspush" WSPUSH_ARGS=--no-io-uring "${PYTEST_BASE[@]}" \
  tests/integration/test_{liveness,limits,close,broadcast,startup,fanout_stuck}.py

step "build (ASan + UBSan)"
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DWSPUSH_SANITIZE=ON -DWSPUSH_TESTS=ON -DWSPUSH_BENCH=OFF >/dev/null
cmake --build build-asan -j"$JOBS"

step "unit tests under ASan + UBSan"
(cd build-asan && ctest --output-on-failure)

step "end-to-end tests against the ASan + UBSan server (the load tests marked slow ran above)"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1 \
  WSPUSH_BIN="$PWD/build-asan/wspush" WSPUSH_SANITIZE_LOG=1 "${PYTEST[@]}" -m "not slow"

step "fuzzing (libFuzzer + ASan/UBSan, 20 s per target)"
# A fixed seed: this is a regression run, repeatable; long random runs are
# tests/fuzz/run.sh's job (see tests/fuzz/README.md).
SEED=1 JOBS=2 sh tests/fuzz/run.sh 20

step "end-to-end subset under valgrind (memcheck)"
WSPUSH_BIN="$PWD/build/wspush" WSPUSH_VALGRIND=1 "${PYTEST[@]}" -m valgrind
# The Lua allocator pools blocks only outside ASan builds: memcheck watches that mode.
valgrind --error-exitcode=99 -q build/test_lalloc
# The workers' shared counts and mailboxes (their own processes are not traced).
for t in tally mailbox; do
  valgrind --error-exitcode=99 -q --leak-check=full --errors-for-leak-kinds=definite build/test_$t >/dev/null
done
