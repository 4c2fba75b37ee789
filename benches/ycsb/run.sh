#!/usr/bin/env bash
# YCSB workloads A-F on toykv and its peers (redb, heed/LMDB, fjall, sled; RocksDB with
# ROCKSDB=1), then the hot-get comparison (toykv vs LMDB), then the plots.
#
#   bash benches/ycsb/run.sh              full: 1M records, 1M operations, 2 threads
#   bash benches/ycsb/run.sh --quick      tiny sizes: checks that the harness runs and writes
#                                         its tables (what .ci/run does); timings mean nothing
#   bash benches/ycsb/run.sh --ltm        larger than memory (root): 8M records (2 GiB of
#                                         values), 200K operations per workload, each store's
#                                         process in a memory cgroup of 1 GiB
#   bash benches/ycsb/run.sh --ltm --quick  the same path at 20K records under 64 MiB; checks
#                                         that the limit was applied (for CI, well under 1 min)
#
# Environment: RECORDS, OPERATIONS, THREADS, STORES, OUT (default target/ycsb-results),
# ROCKSDB=1 (builds rust-rocksdb: slow, needs libclang), PLOT=0 (skip the plots).
# Results: OUT/summary.md, OUT/hot.md, OUT/*.json; plots in imgs/ (full mode) or OUT/imgs.
#
# Larger-than-memory mode (--ltm; the in-memory mode above is the default): on a machine with
# far more RAM than data every store that reads through the page cache (LMDB, redb, sled,
# fjall, RocksDB) serves reads from memory, so peers runs each store's process in its own
# memory cgroup (v1 memory.limit_in_bytes or v2 memory.max, detected; root needed, and the
# run fails if no group can be made rather than running unlimited) whose limit counts the
# page cache too. Before each store it syncs and drops the kernel's caches. Settings:
#   MEM_LIMIT=1G        the group's limit (--quick: 64M)
#   CACHE_BYTES=256M    every store's own cache (toykv's read cache, redb's cache, fjall's
#                       cache, sled's cache_capacity, RocksDB's block cache; LMDB has no knob
#                       and uses the page cache): a quarter of the limit, the share toykv
#                       takes by default, leaving the rest for indexes, memtables and write
#                       buffers, and the page cache (--quick: 16M)
#   STORE_TIMEOUT=900   seconds a store may take for load + 6 workloads; a store still running
#                       is killed and reported "did not finish (limit N s)" (LMDB's load of
#                       random keys under a limit did not finish 4M records in 10 minutes)
#   OPERATIONS=200000   per workload (--quick: 2000); RECORDS=8000000 (--quick: 20000)
#   DROP_CACHES=1       (--quick: 0, the data is a few MiB and the machine's cache is others'
#                       too) set 0 to skip the drop
# Results in target/ycsb-ltm (--quick: target/ycsb-ltm-quick): summary.md has a "Memory
# limit" table (outcome, limit, peak charge incl. page cache, limit hits, OOM kills per
# store), children.tsv the same raw; plots imgs/ycsb-ltm-*.png (--quick: OUT/imgs). No
# hot-get run in this mode.
set -euo pipefail
cd "$(dirname "$0")/../.."
target=${CARGO_TARGET_DIR:-target}
quick=0 ltm=0
for arg in "$@"; do
    case "$arg" in
    --quick) quick=1 ;;
    --ltm) ltm=1 ;;
    *) echo "run.sh: unknown argument '$arg' (--quick, --ltm)" >&2; exit 2 ;;
    esac
done

stores=${STORES:-toykv,redb,heed,fjall,sled}
features=()
if [ "${ROCKSDB:-0}" = 1 ]; then
    features=(--features rocksdb)
    case ",$stores," in *,rocksdb,*) ;; *) stores="$stores,rocksdb" ;; esac
fi
limit=()
prefix=ycsb
if ((ltm)); then
    if [ "$(id -u)" != 0 ]; then
        echo "run.sh: --ltm needs root (memory cgroups, drop_caches)" >&2
        exit 1
    fi
    prefix=ycsb-ltm
    if ((quick)); then
        records=${RECORDS:-20000} ops=${OPERATIONS:-2000} threads=${THREADS:-2}
        mem=${MEM_LIMIT:-64M} cache=${CACHE_BYTES:-16M} timeout=${STORE_TIMEOUT:-120}
        drop=${DROP_CACHES:-0}
        out=${OUT:-$target/ycsb-ltm-quick}
        imgs=$out/imgs
    else
        records=${RECORDS:-8000000} ops=${OPERATIONS:-200000} threads=${THREADS:-2}
        mem=${MEM_LIMIT:-1G} cache=${CACHE_BYTES:-256M} timeout=${STORE_TIMEOUT:-900}
        drop=${DROP_CACHES:-1}
        out=${OUT:-$target/ycsb-ltm}
        imgs=imgs
    fi
    limit=(--mem-limit "$mem" --cache-bytes "$cache" --timeout "$timeout")
    if [ "$drop" = 1 ]; then limit+=(--drop-caches); fi
elif ((quick)); then
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
echo "command: $peers --stores $stores --records $records --operations $ops --threads $threads ${limit[*]} --out $out" \
    | tee -a "$out/machine.txt"
"$peers" -q --stores "$stores" --workloads a,b,c,f,d,e --records "$records" \
    --operations "$ops" --threads "$threads" "${limit[@]}" --out "$out"
if ((!ltm)); then
    hot_stores=toykv,heed
    "$peers" -q --hot --stores "$hot_stores" "${hot[@]}" --out "$out"
fi

# The tables must exist and have their rows (timings are not checked).
check() { grep -q -- "$2" "$1" || { echo "run.sh: $1 lacks '$2'" >&2; exit 1; }; }
for w in A B C D E F; do check "$out/summary.md" "### Workload $w"; done
check "$out/summary.md" "### Load"
IFS=, read -ra list <<<"$stores"
# Rows per store: load + 6 workloads (a store that did not finish has rows saying so), and
# under --ltm one in the memory-limit table.
rows=$((7 + ltm))
for s in "${list[@]}"; do
    [ "$(grep -c "^| $s |" "$out/summary.md")" = $rows ] \
        || { echo "run.sh: $s should have $rows rows in summary.md" >&2; exit 1; }
done
if ((ltm)); then
    check "$out/summary.md" "### Memory limit"
    # The limit as peers wrote it and as the kernel holds it (v1 rounds to pages).
    want=$(awk -v s="$mem" 'BEGIN { n = s + 0; u = toupper(substr(s, length(n "") + 1, 1));
        m = u == "K" ? 1024 : u == "M" ? 1048576 : u == "G" ? 1073741824 : u == "T" ? 1099511627776 : 1;
        printf "%.0f", int(n * m / 4096) * 4096 }')
    for s in "${list[@]}"; do
        line=$(awk -F'\t' -v s="$s" '$1 == s' "$out/children.tsv")
        [ -n "$line" ] || { echo "run.sh: $s missing from children.tsv" >&2; exit 1; }
        IFS=$'\t' read -r _ status _ _ held peak _ _ <<<"$line"
        [ "$held" = "$want" ] \
            || { echo "run.sh: $s's cgroup held limit $held, expected $want" >&2; exit 1; }
        if ((quick)); then
            # Tiny data: every store must finish, inside its group, and show a peak under the limit.
            [ "$status" = ok ] || { echo "run.sh: $s: $status" >&2; exit 1; }
            [ "$peak" = - ] || { ((peak > 0 && peak <= held)); } \
                || { echo "run.sh: $s's peak $peak is not within (0, $held]" >&2; exit 1; }
            # The child read its own group's limit from inside (/proc/self/cgroup).
            grep -q "\"cgroup_limit_bytes\":$want[,}]" "$out/$s-load.json" \
                || { echo "run.sh: $s-load.json does not show the child under the $want-byte limit" >&2; exit 1; }
        fi
    done
    echo "tables: $out/summary.md, $out/children.tsv (limit $want bytes applied to every store)"
else
    for s in toykv heed; do
        [ "$(grep -c "^| $s | [12] |" "$out/hot.md")" = 2 ] \
            || { echo "run.sh: $s should have 2 rows in hot.md" >&2; exit 1; }
    done
    json=$(find "$out" -maxdepth 1 -name '*.json' ! -name 'hot-*' | wc -l)
    [ "$json" = $((${#list[@]} * 7)) ] || { echo "run.sh: expected $((${#list[@]} * 7)) reports, found $json" >&2; exit 1; }
    echo "tables: $out/summary.md, $out/hot.md ($json reports)"
fi

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
"$py" benches/ycsb/plot.py "$out" "$imgs" "$prefix"
