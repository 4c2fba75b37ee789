#!/usr/bin/env bash
# CI: the reliability checks that `cargo test` does not already run (see RELIABILITY.md).
#
#   .ci/reliability.sh
#
# - fuzzing, short mode: every cargo-fuzz target for FUZZ_EXECS executions (default 20000;
#   the full run is `fuzz/run.sh`, 10,000,000 per target). Installs cargo-fuzz when missing.
# - the hostile-client and media-fault tests, in release mode as well (cargo test runs them in
#   debug): tests/hostile.rs, tests/media.rs.
# - the latency of well-behaved clients under attack (`cargo bench --bench hostile`), only
#   with HOSTILE_BENCH=1: it measures speed, which a shared CI machine cannot promise.
#
# Needs no stdin; runs as root or not. Every step is bounded by `timeout`.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never

step() { printf '\n== %s\n' "$*"; }

step "fuzz: short run of every target (${FUZZ_EXECS:-20000} executions each)"
# cargo-fuzz builds with a C++ compiler (libFuzzer); install one on a fresh machine.
if ! command -v c++ >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    timeout 300 apt-get update -qq
    timeout 600 apt-get install -y -qq --no-install-recommends g++ >/dev/null
fi
timeout 1800 fuzz/run.sh "${FUZZ_EXECS:-20000}"

step "hostile clients and media faults, release build"
timeout 900 cargo test --release --test hostile --test media

if [ "${HOSTILE_BENCH:-0}" = 1 ]; then
    step "p99 latency of well-behaved clients under attack (bench)"
    timeout 600 cargo bench --bench hostile
fi

step "reliability checks passed"
