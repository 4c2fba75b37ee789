#!/usr/bin/env bash
# Replication benchmarks (issue 15's targets), on loopback:
#   1. full sync of N keys (default 10 M) against the disk's sequential read rate (fio);
#   2. SET at -P 16 (redis-benchmark) on a master without a replica and with one attached,
#      both over the same 1 M keys filled by a first run, ROUNDS times (default 3), medians;
#   3. the replica's lag under that load (in a run of its own): a marker key written to the
#      master every 100 ms, read back from the replica (redis-py), and the byte lag from INFO.
#   redis-server master and replica get the same SET load in each round, for comparison.
# Usage: bash benches/replication.sh [N]   (BENCH_DIR=... puts the data elsewhere; needs fio,
# redis-benchmark, python3 with redis). Prints a Markdown summary at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-10000000}
ROUNDS=${ROUNDS:-3}
SETS=${SETS:-2000000}
DIR=${BENCH_DIR:-$PWD/target/bench-repl}
S=target/release/examples/server
T=target/release/toykv
cargo build -q --release --examples --bin toykv
rm -rf "$DIR"
mkdir -p "$DIR"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 1 600); do redis-cli -p "$1" ping >/dev/null 2>&1 && return 0; sleep 0.1; done; echo "port $1 never answered" >&2; exit 1; }
field() { redis-cli -p "$1" info replication | tr -d '\r' | sed -n "s/^$2://p"; }
linked() { [ "$(field "$1" master_link_status)" = up ]; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

echo "== machine: $(nproc) cores, $(free -g | awk '/Mem/{print $2}') GiB; disk $(df -h "$DIR" | awk 'NR==2{print $1}')"

echo "== 1. disk sequential read (fio, O_DIRECT, 16 MiB blocks, 4 GiB file)"
fio --name=seq --filename="$DIR/fio.dat" --size=4G --rw=write --bs=16M --direct=1 --ioengine=psync >/dev/null 2>&1
DISK=$(fio --name=seq --filename="$DIR/fio.dat" --size=4G --rw=read --bs=16M --direct=1 --ioengine=psync \
    --runtime=15 --time_based --output-format=terse 2>/dev/null | awk -F';' '{printf "%.0f", $7/1000}')
rm -f "$DIR/fio.dat"
echo "disk sequential read: $DISK MB/s"

echo "== 2. load $N keys (toykv bench, the library, 2 threads) and a full sync of them"
$T bench --target "lib:$DIR/m" --records "$N" --operations 0 --threads 2 -q >/dev/null
MP=$(free_port); RP=$(free_port)
$S --port "$MP" --dir "$DIR/m" --key-mode numeric >"$DIR/m.log" 2>&1 &
PIDS+=($!)
wait_port "$MP"
KEYS=$(redis-cli -p "$MP" dbsize)
$S --port "$RP" --dir "$DIR/r" --key-mode numeric --replicaof "127.0.0.1 $MP" >"$DIR/r.log" 2>&1 &
RPID=$!
PIDS+=($RPID)
start=$(date +%s.%N)
for _ in $(seq 1 6000); do linked "$RP" 2>/dev/null && break; sleep 0.1; done
end=$(date +%s.%N)
linked "$RP" || { echo "the replica never linked"; tail "$DIR/r.log"; exit 1; }
SENT=$(grep -o 'bytes=[0-9]*' "$DIR/m.log" | tail -1 | cut -d= -f2)
SECS=$(echo "$end - $start" | bc -l)
RATE=$(echo "$SENT / $SECS / 1000000" | bc -l)
printf 'full sync: %s keys, %s bytes of snapshot, %.2f s from the replica'"'"'s start to its link up: %.0f MB/s = %.0f %% of the disk'"'"'s sequential read\n' \
    "$KEYS" "$SENT" "$SECS" "$RATE" "$(echo "100 * $RATE / $DISK" | bc -l)"
grep -h "full sync" "$DIR/m.log" "$DIR/r.log" | sed 's/^/  /'
RKEYS=$(redis-cli -p "$RP" dbsize)
[ "$RKEYS" = "$KEYS" ] || { echo "replica holds $RKEYS keys, master $KEYS"; exit 1; }
kill -9 "$RPID"; kill -9 "${PIDS[0]}"; PIDS=()
rm -rf "$DIR/m" "$DIR/r" "$DIR/r.sync"

echo "== 3. SET -P 16 without and with a replica ($SETS SETs over 1 M keys, 100-byte values, $ROUNDS rounds)"
bench_set() { redis-benchmark -p "$1" -t set -n "$SETS" -r 1000000 -P 16 -d 100 -q 2>/dev/null | tr '\r' '\n' | grep -o 'SET: [0-9.]*' | tail -1 | awk '{print $2}'; }
ALONE=(); WITH=(); LAGS=(); BYTELAGS=(); RALONE=(); RWITH=()
# redis-server, the same load on the same machine: how much a replica costs Redis here.
redis_round() {
    rm -rf "$DIR/rm" "$DIR/rr"; mkdir -p "$DIR/rm" "$DIR/rr"
    local mp rp mpid rpid a w
    mp=$(free_port); rp=$(free_port)
    redis-server --port "$mp" --dir "$DIR/rm" --save '' --appendonly no >"$DIR/rm.log" 2>&1 &
    mpid=$!
    wait_port "$mp"
    bench_set "$mp" >/dev/null
    a=$(bench_set "$mp")
    redis-server --port "$rp" --dir "$DIR/rr" --save '' --appendonly no --replicaof 127.0.0.1 "$mp" >"$DIR/rr.log" 2>&1 &
    rpid=$!
    for _ in $(seq 1 600); do linked "$rp" 2>/dev/null && break; sleep 0.1; done
    w=$(bench_set "$mp")
    kill -9 "$rpid" "$mpid" 2>/dev/null || true
    RALONE+=("$a"); RWITH+=("$w")
    echo "round $round (redis-server): alone $a SET/s, with a replica $w SET/s"
}
for round in $(seq 1 "$ROUNDS"); do
    rm -rf "$DIR/m" "$DIR/r" "$DIR/r.sync"
    MP=$(free_port); RP=$(free_port)
    $S --port "$MP" --dir "$DIR/m" --key-mode numeric >"$DIR/m.log" 2>&1 &
    MPID=$!; PIDS=($MPID)
    wait_port "$MP"
    # A first run fills the 1 M keys, so that both measured runs overwrite them.
    bench_set "$MP" >/dev/null
    a=$(bench_set "$MP")
    ALONE+=("$a")
    $S --port "$RP" --dir "$DIR/r" --key-mode numeric --replicaof "127.0.0.1 $MP" >"$DIR/r.log" 2>&1 &
    RPID=$!; PIDS+=($RPID)
    for _ in $(seq 1 600); do linked "$RP" 2>/dev/null && break; sleep 0.1; done
    w=$(bench_set "$MP")
    WITH+=("$w")
    # The lag, in a run of its own: the sampler is a client too, and takes CPU from the rest.
    python3 benches/replication_lag.py "$MP" "$RP" >"$DIR/lag.txt" &
    LAGPID=$!
    bench_set "$MP" >/dev/null
    kill -INT "$LAGPID" 2>/dev/null || true
    wait "$LAGPID" || true
    lag=$(sed -n 's/^max_lag_ms://p' "$DIR/lag.txt"); LAGS+=("$lag")
    bl=$(sed -n 's/^max_lag_bytes://p' "$DIR/lag.txt"); BYTELAGS+=("$bl")
    echo "round $round: alone $a SET/s, with a replica $w SET/s; replica lag max $lag ms ($bl bytes); $(sed -n 's/^samples://p' "$DIR/lag.txt") samples"
    kill -9 "$RPID" "$MPID" 2>/dev/null || true; PIDS=()
    sleep 0.5
    if command -v redis-server >/dev/null; then redis_round; sleep 0.5; fi
done
MA=$(printf '%s\n' "${ALONE[@]}" | median)
MW=$(printf '%s\n' "${WITH[@]}" | median)
ML=$(printf '%s\n' "${LAGS[@]}" | sort -n | tail -1)
echo
echo "| measure | figure |"
echo "|---|---|"
echo "| disk sequential read (fio) | $DISK MB/s |"
printf '| full sync of %s keys | %.0f MB/s (%.0f %% of the disk), %.1f s |\n' "$KEYS" "$RATE" "$(echo "100 * $RATE / $DISK" | bc -l)" "$SECS"
echo "| SET -P 16, no replica (median of $ROUNDS) | $MA /s |"
printf '| SET -P 16, one replica (median of %s) | %s /s (%.1f %%) |\n' "$ROUNDS" "$MW" "$(echo "100 * ($MW - $MA) / $MA" | bc -l)"
echo "| replica lag under that load (max over rounds, marker every 100 ms) | $ML ms |"
if ((${#RALONE[@]})); then
    RA=$(printf '%s\n' "${RALONE[@]}" | median)
    RW=$(printf '%s\n' "${RWITH[@]}" | median)
    echo "| redis-server SET -P 16, no replica (median) | $RA /s |"
    printf '| redis-server SET -P 16, one replica (median) | %s /s (%.1f %%) |\n' "$RW" "$(echo "100 * ($RW - $RA) / $RA" | bc -l)"
fi
