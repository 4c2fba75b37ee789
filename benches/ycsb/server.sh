#!/usr/bin/env bash
# The server side by side with redis-server, in the same run: YCSB workloads A-F over RESP
# (`toykv bench --target resp:...` / `redis:...`), then redis-benchmark SET and GET.
#
#   bash benches/ycsb/server.sh [--quick]
#
# Environment: RECORDS (default 200000), OPERATIONS (200000), THREADS (4 client connections),
# REQUESTS (redis-benchmark requests per test, 200000).
# redis-server runs with appendonly yes, appendfsync everysec; toykv with its defaults (a write
# survives a process crash, no fsync per write). Both start empty in fresh directories.
# Needs redis-server, redis-cli and redis-benchmark.
set -euo pipefail
cd "$(dirname "$0")/../.."
target=${CARGO_TARGET_DIR:-target}
if [ "${1:-}" = "--quick" ]; then
    records=${RECORDS:-2000} ops=${OPERATIONS:-2000} threads=${THREADS:-2} requests=${REQUESTS:-5000}
else
    records=${RECORDS:-200000} ops=${OPERATIONS:-200000} threads=${THREADS:-4} requests=${REQUESTS:-200000}
fi
mkdir -p "$target"
work=$(mktemp -d -p "$(cd "$target" && pwd)" ycsb-server.XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() {
    for _ in $(seq 100); do redis-cli -p "$1" ping >/dev/null 2>&1 && return 0; sleep 0.1; done
    echo "no server on port $1" >&2
    return 1
}

cargo build --release -q --example server --bin toykv
server=$target/release/examples/server
toykv=$target/release/toykv

# toykv for YCSB (bytes key mode: 8-byte binary keys), toykv for redis-benchmark (numeric key
# mode: its keys are key:NNNNNNNNNNNN), and redis-server.
tport=$(free_port)
"$server" --port "$tport" --dir "$work/toykv" 2>"$work/toykv.log" &
pids+=($!)
nport=$(free_port)
"$server" --port "$nport" --dir "$work/toykv-numeric" --key-mode numeric 2>"$work/toykv-n.log" &
pids+=($!)
rport=$(free_port)
mkdir -p "$work/redis"
redis-server --port "$rport" --dir "$work/redis" --appendonly yes --appendfsync everysec \
    --save '' --daemonize no --logfile "$work/redis.log" &
pids+=($!)
for p in "$tport" "$nport" "$rport"; do wait_port "$p"; done

common=(bench -q --workload a,b,c,f,d,e --records "$records" --operations "$ops" --threads "$threads")
echo "== YCSB over RESP: $records records, $ops operations per workload, $threads connections"
"$toykv" "${common[@]}" --target "resp:127.0.0.1:$tport" --json "$work/toykv.json" >"$work/toykv.txt"
"$toykv" "${common[@]}" --target "redis:127.0.0.1:$rport" --json "$work/redis.json" >"$work/redis.txt"

python3 - "$work/toykv.json" "$work/redis.json" <<'PY'
import json, sys
t, r = (json.load(open(p)) for p in sys.argv[1:3])
def worst(rep):
    return max(o["p99_us"] for o in rep["ops"])
print("| workload | toykv ops/s | redis ops/s | toykv ÷ redis | toykv p99 (µs) | redis p99 (µs) |")
print("|---|---:|---:|---:|---:|---:|")
for a, b in zip(t, r):
    ratio = a["throughput"] / b["throughput"] if b["throughput"] else 0
    print("| %s | %.0f | %.0f | %.2f× | %.1f | %.1f |" % (
        a["workload"], a["throughput"], b["throughput"], ratio, worst(a), worst(b)))
errors = sum(x["errors"] for x in t + r)
if errors:
    sys.exit("errors in YCSB runs: %d" % errors)
PY

echo
echo "== redis-benchmark: SET and GET, 256-byte values, 50 clients, $requests requests"
echo "| test | toykv req/s | redis req/s |"
echo "|---|---:|---:|"
rb() { redis-benchmark -p "$1" -t set,get -d 256 -n "$requests" -c 50 -r 100000 $2 --csv 2>/dev/null; }
for pipe in "" "-P 16"; do
    paste -d, <(rb "$nport" "$pipe") <(rb "$rport" "$pipe") | tr -d '"' \
        | awk -F, -v p="${pipe:-no pipeline}" 'NR>1 {printf "| %s (%s) | %.0f | %.0f |\n", $1, p, $2, $(NF/2+2)}'
done
