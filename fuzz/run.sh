#!/usr/bin/env bash
# Fuzzes toykv's parsers and decoders with cargo-fuzz (libFuzzer), on the stable toolchain.
#
#   fuzz/run.sh [EXECS] [TARGET ...]
#
# EXECS: executions per target (default 10,000,000; CI uses a short run, e.g. 20000).
# TARGETs: command reply header mark record (default: all). Each target starts from the
# committed seeds in fuzz/seeds/<target> (made by fuzz/seeds/make.py) plus the corpus it grew
# in earlier runs, kept under the target directory (not in the source tree). A failing input
# is saved as <target dir>/artifacts/<target>/crash-* and the script exits 1.
#
# `-s none` builds without a sanitizer: sanitizers need nightly, and these targets check
# safe Rust (the crate denies unsafe code outside src/io/os.rs), where a sanitizer adds little.
# cargo-fuzz only passes `-Z` flags to rustc for a sanitizer, so no RUSTC_BOOTSTRAP is needed.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here"

execs="${1:-10000000}"
shift || true
targets=("$@")
if ((${#targets[@]} == 0)); then
    targets=(command reply header mark record)
fi
case "$execs" in '' | *[!0-9]*)
    echo "usage: fuzz/run.sh [EXECS] [TARGET ...]" >&2
    exit 2
    ;;
esac

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi

# Where builds, corpora and crash artifacts go.
out="${CARGO_TARGET_DIR:-$here/../target}/fuzz"
mkdir -p "$out"

# Longest input each target gets: commands and replies are streams; the decoders take a
# selector, a header/mark/record and a few bytes of fields.
max_len() {
    case "$1" in
    command | reply) echo 4096 ;;
    *) echo 128 ;;
    esac
}

echo "== cargo fuzz build -s none"
cargo fuzz build -s none --target-dir "$out"

summary=()
for t in "${targets[@]}"; do
    corpus="$out/corpus/$t"
    artifacts="$out/artifacts/$t"
    mkdir -p "$corpus" "$artifacts"
    log="$out/$t.log"
    echo "== fuzz $t: $execs executions (log: $log)"
    start=$(date +%s.%N)
    status=0
    cargo fuzz run -s none --target-dir "$out" "$t" "$corpus" "seeds/$t" -- \
        -runs="$execs" -max_len="$(max_len "$t")" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 -artifact_prefix="$artifacts/" >"$log" 2>&1 || status=$?
    end=$(date +%s.%N)
    secs=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", b - a }')
    done_runs=$(awk '/stat::number_of_executed_units:/ { print $2 }' "$log" | tail -n 1)
    per_sec=$(awk '/stat::average_exec_per_sec:/ { print $2 }' "$log" | tail -n 1)
    units=$(find "$corpus" -type f | wc -l)
    line="$t: ${done_runs:-?} executions in ${secs}s (${per_sec:-?}/s), corpus $units inputs"
    if ((status != 0)); then
        tail -n 40 "$log"
        echo "FAILED $line; artifacts in $artifacts" >&2
        exit 1
    fi
    echo "$line"
    summary+=("$line")
done
echo "== fuzzing passed"
printf '%s\n' "${summary[@]}"
