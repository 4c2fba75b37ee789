#!/usr/bin/env bash
# toykv's server against redis-server on the same machine, in the same run, with
# redis-benchmark: SET and GET of 256-byte values, 50 clients, with and without -P 16.
#
#   bash benches/redis_compare.sh [REQUESTS]      (default 500000 per test)
#
# redis-server runs with appendonly yes, appendfsync everysec (data on disk within a second);
# toykv with its defaults (every acknowledged write survives a process crash; sync on
# shutdown). Both start empty in fresh directories under target/. Needs redis-server and
# redis-benchmark (Debian: apt-get install redis-server redis-tools).
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-500000}
work=$(mktemp -d -p "$PWD/target" redis-compare.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 100); do redis-cli -p "$1" ping >/dev/null 2>&1 && return 0; sleep 0.1; done; echo "no server on $1" >&2; return 1; }

cargo build --release --example server -q
tport=$(free_port)
./target/release/examples/server --port "$tport" --dir "$work/toykv" --key-mode numeric 2>"$work/toykv.log" &
pids+=($!)
rport=$(free_port)
mkdir -p "$work/redis"
redis-server --port "$rport" --dir "$work/redis" --appendonly yes --appendfsync everysec \
  --save '' --daemonize no --logfile "$work/redis.log" &
pids+=($!)
wait_port "$tport"; wait_port "$rport"

echo "machine: $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p'), $(uname -r)"
echo "redis-benchmark -t set,get -d 256 -c 50 -r 1000000 -n $n [-P 16]"
printf '%-8s %-6s %-5s %14s %12s\n' store pipe test "requests/s" "p50 ms"
for pipe in 1 16; do
  for name in toykv redis; do
    port=$tport; [ "$name" = redis ] && port=$rport
    redis-benchmark -p "$port" -t set,get -d 256 -c 50 -r 1000000 -n "$n" -P "$pipe" --csv 2>/dev/null \
      | tail -n +2 | tr -d '"' | while IFS=, read -r test rps _avg _min p50 _rest; do
        printf '%-8s %-6s %-5s %14s %12s\n' "$name" "$pipe" "$test" "$rps" "$p50"
      done
  done
done
