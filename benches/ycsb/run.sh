#!/usr/bin/env bash
# YCSB workloads A-F on toykv and its peers (redb, heed/LMDB, fjall, sled; RocksDB with
# ROCKSDB=1), then the hot-get comparison (toykv vs LMDB), then the plots.
#
#   bash benches/ycsb/run.sh            full: 1M records, 1M operations, 2 threads
#   bash benches/ycsb/run.sh --quick    tiny sizes: checks that the harness runs and writes
#                                       its tables (what .ci/run does); timings mean nothing
#
# Environment: RECORDS, OPERATIONS, THREADS, STORES, OUT (default target/ycsb-results),
# ROCKSDB=1 (builds rust-rocksdb: slow, needs libclang), PLOT=0 (skip the plots).
# Results: OUT/summary.md, OUT/hot.md, OUT/*.json; plots in imgs/ (full mode) or OUT/imgs.
set -euo pipefail
cd "$(dirname "$0")/../.."
target=${CARGO_TARGET_DIR:-target}
quick=0
[ "${1:-}" = "--quick" ] && quick=1

stores=${STORES:-toykv,redb,heed,fjall,sled}
features=()
if [ "${ROCKSDB:-0}" = 1 ]; then
    features=(--features rocksdb)
    case ",$stores," in *,rocksdb,*) ;; *) stores="$stores,rocksdb" ;; esac
fi
if ((quick)); then
    records=${RECORDS:-2000} ops=${OPERATIONS:-2000} threads=${THREADS:-2}
    hot=(--hot-keys 2000 --hot-ops 5000)
    out=${OUT:-$target/ycsb-quick}
    imgs=$out/imgs
else
    records=${RECORDS:-1000000} ops=${OPERATIONS:-1000000} threads=${THREADS:-2}
    hot=(--hot-keys 200000 --hot-ops 2000000)
    out=${OUT:-$target/ycsb-results}
    imgs=imgs
fi

cargo build --release -q -p peers "${features[@]}"
peers=$target/release/peers
rm -rf "$out"
mkdir -p "$out"
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo)," \
    "$(uname -sr), $(df -T "$out" | awk 'NR==2 {print $2 " on " $1}')" | tee "$out/machine.txt"
echo "command: $peers --stores $stores --records $records --operations $ops --threads $threads --out $out" \
    | tee -a "$out/machine.txt"
"$peers" -q --stores "$stores" --workloads a,b,c,f,d,e --records "$records" \
    --operations "$ops" --threads "$threads" --out "$out"
hot_stores=toykv,heed
"$peers" -q --hot --stores "$hot_stores" "${hot[@]}" --out "$out"

# The tables must exist and have their rows (timings are not checked).
check() { grep -q -- "$2" "$1" || { echo "run.sh: $1 lacks '$2'" >&2; exit 1; }; }
for w in A B C D E F; do check "$out/summary.md" "### Workload $w"; done
check "$out/summary.md" "### Load"
IFS=, read -ra list <<<"$stores"
for s in "${list[@]}"; do
    [ "$(grep -c "^| $s |" "$out/summary.md")" = 7 ] \
        || { echo "run.sh: $s should have 7 rows (load + 6 workloads) in summary.md" >&2; exit 1; }
done
for s in toykv heed; do
    [ "$(grep -c "^| $s | [12] |" "$out/hot.md")" = 2 ] \
        || { echo "run.sh: $s should have 2 rows in hot.md" >&2; exit 1; }
done
json=$(find "$out" -maxdepth 1 -name '*.json' ! -name 'hot-*' | wc -l)
[ "$json" = $((${#list[@]} * 7)) ] || { echo "run.sh: expected $((${#list[@]} * 7)) reports, found $json" >&2; exit 1; }
echo "tables: $out/summary.md, $out/hot.md ($json reports)"

# Plots: matplotlib from the system, else a venv under target/; skipped (with the reason)
# when neither works, e.g. without network.
if [ "${PLOT:-1}" = 0 ]; then
    echo "plots skipped: PLOT=0"
    exit 0
fi
py=python3
if ! python3 -c 'import matplotlib' 2>/dev/null; then
    venv=$target/ycsb-venv
    if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c 'import matplotlib' 2>/dev/null; then
        py=$venv/bin/python
    elif python3 -m venv "$venv" >/dev/null 2>&1 \
        && timeout 300 "$venv/bin/pip" install -q matplotlib >/dev/null 2>&1; then
        py=$venv/bin/python
    else
        echo "plots skipped: matplotlib is not installed and pip could not install it"
        exit 0
    fi
fi
"$py" benches/ycsb/plot.py "$out" "$imgs"
