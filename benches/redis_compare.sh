#!/usr/bin/env bash
# toykv's server against redis-server on the same machine, in the same run, with
# redis-benchmark (256-byte values, 50 clients, keys drawn from 1 M), one row per durability
# class and pipeline depth:
#
#   SET, durability always  (-P 1, -P 16)  toykv --durability always    redis --appendfsync always
#   SET, periodic 1 s       (-P 1, -P 16)  toykv --durability periodic  redis --appendfsync everysec
#   GET after a fill        (-P 1, -P 16)  the periodic / everysec pair after
#                                          redis-benchmark -t set -n 3000000 -r 1000000 -P 16
#
#   bash benches/redis_compare.sh [--write] [REQUESTS]
#
# REQUESTS (argument or environment, default 500000) is -n of every SET and GET row.
# QUICK=1 shrinks the fill to 100 K SETs over 50 K keys (the GET rows then draw from those
#   50 K keys), for a smoke run: QUICK=1 bash benches/redis_compare.sh 20000
# --write (or WRITE=1) also puts the table, commands and machine into BENCHMARKS.md (BENCH_MD=path
#   for another file) as the section "## Server against redis-server (issue 14), DATE",
#   replacing an earlier one of that title, else right before the first section after
#   "## Machine".
# BENCH_TIMEOUT (default 600) bounds each redis-benchmark run, in seconds.
# ROUNDS (default 3) runs each row that many times, toykv and redis-server in turn; the table
#   shows each server's median (loopback figures on a small machine vary by 10-30 % run to run).
#
# Each class starts both servers afresh, each in a new directory under target/ (a real file
# system: toykv uses O_DIRECT, which tmpfs would accept misaligned); toykv and redis-server take
# turns, row by row. Every server and directory is removed on exit, also on failure or Ctrl-C.
# Needs redis-server, redis-benchmark and redis-cli (Debian: apt-get install redis-server
# redis-tools), python3 and timeout.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; }
die() { echo "redis_compare: $*" >&2; exit 1; }

write=${WRITE:-0}
n=${REQUESTS:-500000}
for arg in "$@"; do
  case $arg in
    --write) write=1 ;;
    -h|--help) usage; exit 0 ;;
    *[!0-9]*|'') usage >&2; die "unknown argument: $arg" ;;
    *) n=$arg ;;
  esac
done
[ "$n" -gt 0 ] || die "REQUESTS must be positive"
quick=${QUICK:-0}
if [ "$quick" = 1 ]; then fill_n=100000 fill_r=50000; else fill_n=3000000 fill_r=1000000; fi
bench_md=${BENCH_MD:-BENCHMARKS.md}
bench_timeout=${BENCH_TIMEOUT:-600}
rounds=${ROUNDS:-3}
[ "$rounds" -gt 0 ] 2>/dev/null || die "ROUNDS must be a positive number"
if [ "$write" = 1 ] && [ ! -f "$bench_md" ]; then die "$bench_md: no such file to write into"; fi

for c in redis-server redis-benchmark redis-cli python3 timeout cargo; do
  command -v "$c" >/dev/null \
    || die "$c not found (Debian: apt-get update && apt-get install -y redis-server redis-tools)"
done
table_py=benches/redis_compare_table.py

mkdir -p target
fs=$(df --output=fstype target 2>/dev/null | tail -n 1) || fs=$(stat -f -c %T target)
[ "$fs" = tmpfs ] && echo "warning: target/ is on tmpfs, which accepts misaligned O_DIRECT" >&2
work=$(mktemp -d -p "$PWD/target" redis-compare.XXXXXX)
mkdir "$work/runs"
: >"$work/rows.tsv"

# Processes this script started and has not reaped yet; the running redis-benchmark's timeout.
live=()
bench_pid=
alive() { local s; s=$(ps -o stat= -p "$1" 2>/dev/null) || return 1; [[ $s != Z* ]]; }
# stop PID SECONDS: SIGTERM (both servers then sync and exit), SIGKILL after SECONDS.
stop() {
  local pid=$1 i
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < $2 * 10; i++)); do alive "$pid" || break; sleep 0.1; done
  if alive "$pid"; then echo "pid $pid still running after $2 s: SIGKILL" >&2; kill -KILL "$pid" 2>/dev/null || true; fi
  wait "$pid" 2>/dev/null || true
  local keep=() p
  for p in "${live[@]}"; do [ "$p" = "$pid" ] || keep+=("$p"); done
  live=("${keep[@]}")
}
cleanup() {
  local status=$? p f
  trap - EXIT INT TERM
  if [ -n "$bench_pid" ]; then stop "$bench_pid" 10; fi
  for p in "${live[@]}"; do stop "$p" 30; done
  if [ "$status" != 0 ]; then
    echo >&2; echo "redis_compare: stopping (exit status $status); servers and $work removed" >&2
    for f in "$work"/*.log; do
      [ -s "$f" ] && { echo "--- last lines of $(basename "$f")" >&2; tail -n 5 "$f" >&2; }
    done
  fi
  rm -rf "$work"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# wait_port PORT PID NAME: until the server answers PING; fails if it exited.
wait_port() {
  local i
  for ((i = 0; i < 300; i++)); do
    redis-cli -p "$1" ping 2>/dev/null | grep -q PONG && return 0
    alive "$2" || die "$3 exited before answering on port $1"
    sleep 0.1
  done
  die "$3 did not answer on port $1 within 30 s"
}

# start_servers CLASS TOYKV_DURABILITY REDIS_APPENDFSYNC: fresh directories, fresh servers;
# sets tport, tpid, rport, rpid.
start_servers() {
  local class=$1
  mkdir -p "$work/$class/toykv" "$work/$class/redis"
  tport=$(free_port)
  ./target/release/examples/server --port "$tport" --dir "$work/$class/toykv" --key-mode numeric \
    --durability "$2" 2>"$work/$class-toykv.log" &
  tpid=$!; live+=("$tpid")
  rport=$(free_port)
  redis-server --port "$rport" --dir "$work/$class/redis" --appendonly yes --appendfsync "$3" \
    --save '' --daemonize no --logfile "$work/$class-redis.log" &
  rpid=$!; live+=("$rpid")
  wait_port "$tport" "$tpid" toykv; wait_port "$rport" "$rpid" redis-server
  # numeric key mode must take redis-benchmark's keys (key:000000123456) as numbers
  local key=key:000000123456 got
  got=$(redis-cli -p "$tport" set "$key" check)
  [ "$got" = OK ] || die "toykv refused SET $key: $got"
  got=$(redis-cli -p "$tport" get "$key")
  [ "$got" = check ] || die "toykv gave back '$got' for $key"
  redis-cli -p "$tport" del "$key" >/dev/null
}
stop_servers() { stop "$tpid" 120; stop "$rpid" 120; }

# bench KIND ROW STORE PORT ARGS...: one redis-benchmark run, recorded in rows.tsv.
runs=0
bench() {
  local kind=$1 row=$2 store=$3 port=$4 rc=0; shift 4
  runs=$((runs + 1))
  local out="$work/runs/$runs-$store.csv"
  printf '  %-6s %-46s ' "$store" "$row"
  timeout "$bench_timeout" redis-benchmark -p "$port" "$@" --csv >"$out" 2>"$out.err" &
  bench_pid=$!
  wait "$bench_pid" || rc=$?
  bench_pid=
  if [ "$rc" != 0 ]; then
    echo
    [ "$rc" = 124 ] && echo "timed out after $bench_timeout s" >&2
    cat "$out" "$out.err" >&2
    die "redis-benchmark -p $port $* against $store failed (exit $rc)"
  fi
  local rps p50
  read -r rps p50 < <(python3 "$table_py" one "$out") || die "no result from redis-benchmark: $(cat "$out" "$out.err")"
  printf '%10s req/s  p50 %s ms\n' "$rps" "$p50"
  printf '%s\t%s\t%s\t%s\n' "$kind" "$row" "$store" "$out" >>"$work/rows.tsv"
}
# pair KIND ROW ARGS...: toykv, then redis-server, same arguments; ROUNDS times for a row
# (the table shows each store's median), once for the fill.
pair() {
  local kind=$1 row=$2 i times=$rounds; shift 2
  [ "$kind" = fill ] && times=1
  for ((i = 0; i < times; i++)); do
    bench "$kind" "$row" toykv "$tport" "$@"
    bench "$kind" "$row" redis "$rport" "$@"
  done
}
dbsize() { redis-cli -p "$1" dbsize; }
count() { # 3000000 -> 3 M, 50000 -> 50 K
  local x=$1
  if ((x % 1000000 == 0)); then echo "$((x / 1000000)) M"; elif ((x % 1000 == 0)); then echo "$((x / 1000)) K"; else echo "$x"; fi
}

cargo build --release --example server -q

common=(-d 256 -c 50)
set_args=(-t set -n "$n" -r 1000000 "${common[@]}")
fill_args=(-t set -n "$fill_n" -r "$fill_r" "${common[@]}" -P 16)
get_args=(-t get -n "$n" -r "$fill_r" "${common[@]}")
invocation="bash benches/redis_compare.sh $n"
[ "$rounds" != 3 ] && invocation="ROUNDS=$rounds $invocation"
[ "$write" = 1 ] && invocation="bash benches/redis_compare.sh --write $n"
[ "$quick" = 1 ] && invocation="QUICK=1 $invocation"
mem=$(awk '/^MemTotal/ {printf "%.0f GiB RAM", $2 / 1048576}' /proc/meminfo)
machine="Machine: $(nproc) cores ($(lscpu | sed -n 's/^Model name: *//p')), $mem, Linux $(uname -r), \
$(redis-server --version | sed -n 's/^Redis server v=\([^ ]*\).*/redis-server \1/p'), \
$(redis-benchmark --version | head -n 1), target/ on $fs; toykv $(git describe --always --dirty 2>/dev/null || echo '?'); \
load average $(cut -d ' ' -f 1-3 /proc/loadavg) at the start."
commands="# servers, started afresh for each class: toykv
target/release/examples/server --port PORT --dir DIR --key-mode numeric --durability always|periodic
# and redis-server
redis-server --port PORT --dir DIR --appendonly yes --appendfsync always|everysec --save ''
# SET rows, each class: toykv, redis-server, toykv, redis-server
redis-benchmark -p PORT ${set_args[*]} -P 1 --csv
redis-benchmark -p PORT ${set_args[*]} -P 16 --csv
# GET rows, on a fresh periodic/everysec pair: the fill, then the GETs
redis-benchmark -p PORT ${fill_args[*]} --csv
redis-benchmark -p PORT ${get_args[*]} -P 1 --csv
redis-benchmark -p PORT ${get_args[*]} -P 16 --csv"
fill_words="$(count "$fill_n") SETs over $(count "$fill_r") keys"
about="Both servers on loopback; toykv's release build with its defaults otherwise (one shard per \
core, cache a quarter of memory), redis-server without RDB snapshots. Each durability class \
starts both servers afresh in new directories under \`target/\`; the GET rows use a third fresh \
pair (periodic, everysec) filled with $fill_words first. toykv and redis-server take turns: \
each row runs against toykv, then against redis-server, $rounds times in turn, and the table \
shows each server's median (throughput and p50 separately). p50 is redis-benchmark's."

echo "$machine"
echo "$commands"
echo

echo "SET, durability always (toykv --durability always; redis-server --appendfsync always)"
start_servers always always always
for p in 1 16; do pair row "SET, durability always, \`-P $p\`" "${set_args[@]}" -P "$p"; done
echo "  keys: toykv $(dbsize "$tport"), redis-server $(dbsize "$rport")"
stop_servers

echo "SET, periodic 1 s (toykv --durability periodic; redis-server --appendfsync everysec)"
start_servers periodic periodic everysec
for p in 1 16; do pair row "SET, periodic 1 s, \`-P $p\`" "${set_args[@]}" -P "$p"; done
echo "  keys: toykv $(dbsize "$tport"), redis-server $(dbsize "$rport")"
stop_servers

echo "GET after $fill_words (toykv --durability periodic; redis-server --appendfsync everysec)"
start_servers get periodic everysec
pair fill "fill, $fill_words, \`-P 16\`" "${fill_args[@]}"
tkeys=$(dbsize "$tport"); rkeys=$(dbsize "$rport")
echo "  keys after the fill: toykv $tkeys, redis-server $rkeys"
# the two fills draw different random keys, but the number of distinct ones is near 95 %
((tkeys * 100 >= rkeys * 98 && rkeys * 100 >= tkeys * 98)) \
  || die "the fills left different stores: toykv $tkeys keys, redis-server $rkeys"
for p in 1 16; do pair row "GET after $fill_words, \`-P $p\`" "${get_args[@]}" -P "$p"; done
stop_servers

# the title is dated when the run ends
echo "## Server against redis-server (issue 14), $(date +%Y-%m-%d)" >"$work/title.txt"
echo "$machine" >"$work/machine.txt"
echo "$commands" >"$work/commands.txt"
echo "$about" >"$work/about.txt"
echo "$invocation" >"$work/invocation.txt"
echo
python3 "$table_py" table "$work"
if [ "$write" = 1 ]; then python3 "$table_py" write "$work" "$bench_md"; fi
