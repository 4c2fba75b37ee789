#!/usr/bin/env bash
# Scale-out: three toykv servers (bytes key mode) behind twemproxy (Debian's nutcracker), all on
# loopback ports, plus a pool with redis_auth in front of a fourth server with a password. Drives
# SET/GET/MGET/MSET/EXISTS/DEL through the proxy with redis-cli, checks every value through the
# proxy and that the keys are spread over all three servers (DBSIZE of each > 0, sum = total,
# each key on exactly one server), and records what the proxy does not forward.
# docs/SCALE-OUT.md describes what this checks. Needs: nutcracker, redis-tools, netcat-openbsd,
# a release build. Exits non-zero at the first mismatch.
set -euo pipefail
# shellcheck source=.ci/lib.sh
source "$(dirname "$0")/lib.sh"
need nutcracker redis-cli nc timeout
started=$SECONDS
N=500 # keys written through the proxy

printf '\n-- three toykv servers and nutcracker\n'
start_server s1 "$CI_TMP/s1"
start_server s2 "$CI_TMP/s2"
start_server s3 "$CI_TMP/s3"
start_server sauth "$CI_TMP/sauth" --requirepass 'proxy-secret'
PROXY=$(free_port)
PROXY_AUTH=$(free_port)
PROXY_MURMUR=$(free_port)
STATS=$(free_port)
conf=$CI_TMP/nutcracker.yml
# One sharded pool over s1..s3 (weights 1:1:2); the example in docs/SCALE-OUT.md is the first
# pool with the ports filled in.
pool() { # name, listen port, hash
    cat <<EOF
$1:
  listen: 127.0.0.1:$2
  redis: true
  hash: $3
  distribution: ketama
  auto_eject_hosts: false
  timeout: 2000
  server_connections: 1
  servers:
   - 127.0.0.1:${SPORT[s1]}:1 s1
   - 127.0.0.1:${SPORT[s2]}:1 s2
   - 127.0.0.1:${SPORT[s3]}:2 s3
EOF
}
{
    pool toykv "$PROXY" fnv1a_64
    pool toykv_murmur "$PROXY_MURMUR" murmur
    cat <<EOF
toykv_auth:
  listen: 127.0.0.1:$PROXY_AUTH
  redis: true
  redis_auth: proxy-secret
  hash: fnv1a_64
  distribution: ketama
  timeout: 2000
  servers:
   - 127.0.0.1:${SPORT[sauth]}:1 sauth
EOF
} >"$conf"
expect_match "nutcracker -t: config syntax ok" "syntax is ok" "$(nutcracker -t -c "$conf" 2>&1)"
nutcracker -c "$conf" -s "$STATS" -a 127.0.0.1 -o "$CI_TMP/nutcracker.log" &
NC_PID=$!
PIDS+=("$NC_PID")
wait_listening "$PROXY" "$NC_PID" || fail "nutcracker did not listen on $PROXY"
wait_listening "$PROXY_AUTH" "$NC_PID" || fail "nutcracker did not listen on $PROXY_AUTH"
wait_listening "$PROXY_MURMUR" "$NC_PID" || fail "nutcracker did not listen on $PROXY_MURMUR"
say "nutcracker: pools on $PROXY (fnv1a_64), $PROXY_MURMUR (murmur), $PROXY_AUTH (auth); stats on $STATS; pid $NC_PID"
P=$PROXY

# The data: keys k00000.. (6 bytes), printable values without spaces of lengths 0..256.
chars=ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.:
base=''
for i in $(seq 0 400); do base+=${chars:$(((i * i * 7 + i * 3) % ${#chars})):1}; done
keys=() vals=()
for i in $(seq 0 $((N - 1))); do
    keys+=("$(printf 'k%05d' "$i")")
    len=$(((i * 37) % 257))
    vals+=("${base:$((i % 97)):$len}")
done
[[ ${#vals[1]} == 37 && ${#vals[7]} == 2 && -z "${vals[0]}" ]] || fail "test data generator"
printf '%s\n' "${vals[@]}" >"$CI_TMP/want"

printf '\n-- writes and reads through the proxy (%d keys)\n' "$N"
expect_eq "PING (answered by the proxy)" PONG "$(rcli "$P" ping)"
# The first half with SET, one command per line on stdin (one connection, values quoted so the
# empty one survives); the second half with MSET in batches of 25 pairs, which the proxy splits.
half=$((N / 2))
for i in $(seq 0 $((half - 1))); do printf 'SET %s "%s"\n' "${keys[$i]}" "${vals[$i]}"; done >"$CI_TMP/set.txt"
expect_eq "$half SETs through the proxy" "$half" "$(rcli "$P" <"$CI_TMP/set.txt" | grep -c '^OK$')"
for ((i = half; i < N; i += 25)); do
    printf 'MSET'
    for ((j = i; j < i + 25 && j < N; j++)); do printf ' %s "%s"' "${keys[$j]}" "${vals[$j]}"; done
    printf '\n'
done >"$CI_TMP/mset.txt"
expect_eq "$(wc -l <"$CI_TMP/mset.txt") MSETs of 25 pairs through the proxy" \
    "$(wc -l <"$CI_TMP/mset.txt")" "$(rcli "$P" <"$CI_TMP/mset.txt" | grep -c '^OK$')"
printf 'GET %s\n' "${keys[@]}" | rcli "$P" >"$CI_TMP/got"
diff -q "$CI_TMP/want" "$CI_TMP/got" >/dev/null || fail "GET through the proxy: values differ"
ok "GET of all $N keys through the proxy: every value as written (lengths 0..256)"
for ((i = 0; i < N; i += 100)); do printf 'MGET'; printf ' %s' "${keys[@]:i:100}"; printf '\n'; done |
    rcli "$P" >"$CI_TMP/got"
diff -q "$CI_TMP/want" "$CI_TMP/got" >/dev/null || fail "MGET through the proxy: values differ"
ok "MGET of 100 keys at a time through the proxy (split over the servers): every value"
expect_eq "MGET with missing keys: nil in place" $'1) "'"${vals[3]}"$'"\n2) (nil)\n3) "'"${vals[4]}"'"' \
    "$(rcli "$P" --no-raw mget "${keys[3]}" nokey "${keys[4]}")"
expect_eq "EXISTS over several servers" 3 "$(rcli "$P" exists "${keys[@]:10:3}" nokey)"
expect_eq "GET of a missing key" "(nil)" "$(rcli "$P" --no-raw get nokey)"
expect_eq "empty value stays empty" '""' "$(rcli "$P" --no-raw get "${keys[0]}")"

# A binary value (every byte value) through the proxy, and the limits, reported by the server.
# shellcheck disable=SC2059 # the format is the escape \NNN of byte i
for i in $(seq 0 255); do printf "\\$(printf '%03o' "$i")"; done >"$CI_TMP/bin"
expect_eq "test file holds the 256 byte values" "$(seq 0 255 | xargs)" "$(od -An -v -tu1 "$CI_TMP/bin" | xargs)"
expect_eq "SET -x of the 256 byte values through the proxy" OK "$(rcli "$P" -x set binval <"$CI_TMP/bin")"
rcli "$P" get binval | head -c 256 | cmp -s - "$CI_TMP/bin" || fail "binary value differs through the proxy"
ok "binary value byte-exact through the proxy"
expect_eq "DEL binval" 1 "$(rcli "$P" del binval)"
expect_match "9-byte key: the server's error comes back" "^ERR key is 9 bytes" "$(rcli "$P" set 123456789 x)"
head -c 257 /dev/zero | tr '\0' v >"$CI_TMP/v257"
expect_match "257-byte value: the server's error comes back" "^ERR value is 257 bytes" \
    "$(rcli "$P" -x set big <"$CI_TMP/v257")"

printf '\n-- spread over the servers\n'
total=0
for s in s1 s2 s3; do
    n=$(rcli "${SPORT[$s]}" dbsize)
    ((n > 0)) || fail "server $s holds no keys"
    say "$s: $n keys"
    total=$((total + n))
    rcli "${SPORT[$s]}" --scan | sort >"$CI_TMP/placed.$s"
done
cat "$CI_TMP"/placed.s? >"$CI_TMP/placed"
expect_eq "DBSIZE of the three servers adds up to $N" "$N" "$total"
expect_eq "every key on exactly one server (--scan on each)" "$(printf '%s\n' "${keys[@]}")" "$(sort "$CI_TMP/placed")"
k=${keys[42]}
for s in s1 s2 s3; do
    if [[ "$(rcli "${SPORT[$s]}" exists "$k")" == 1 ]]; then
        expect_eq "$k read directly from its server ($s)" "${vals[42]}" "$(rcli "${SPORT[$s]}" get "$k")"
    fi
done

printf '\n-- deletes and partial failures through the proxy\n'
expect_eq "DEL of 100 keys (split by the proxy)" 100 "$(rcli "$P" del "${keys[@]:0:100}")"
expect_eq "deleted keys are gone" 0 "$(rcli "$P" exists "${keys[@]:0:100}")"
total=0
for s in s1 s2 s3; do total=$((total + $(rcli "${SPORT[$s]}" dbsize))); done
expect_eq "DBSIZE sum after DEL" $((N - 100)) "$total"
# A multi-key command with one bad key: the proxy splits it into one command per server; the
# server that gets the bad key refuses its part whole, the others carry theirs out, and the
# client gets one error. Two live keys from each server show it.
pick=()
for s in s1 s2 s3; do
    mapfile -t two < <(awk '$0 >= "k00100"' "$CI_TMP/placed.$s" | head -n 2)
    ((${#two[@]} == 2)) || fail "server $s: fewer than 2 live keys"
    pick+=("${two[@]}")
done
args=()
for k in "${pick[@]}"; do args+=("$k" NEW); done
expect_eq "MSET of 6 keys (2 per server) and a 9-byte key: one error" "ERR Invalid argument" \
    "$(rcli "$P" mset "${args[@]}" 123456789 x | head -n 1)"
servers_new=0 servers_old=0
for i in 0 2 4; do
    got="$(rcli "$P" get "${pick[$i]}") $(rcli "$P" get "${pick[$((i + 1))]}")"
    if [[ "$got" == "NEW NEW" ]]; then servers_new=$((servers_new + 1)); fi
    if [[ "$got" != *NEW* ]]; then servers_old=$((servers_old + 1)); fi
done
expect_eq "... the parts for 2 servers were written, the part with the bad key was not" "2 1" \
    "$servers_new $servers_old"
expect_eq "DEL of the same 6 keys and a 9-byte key: one error" "ERR Invalid argument" \
    "$(rcli "$P" del "${pick[@]}" 123456789 | head -n 1)"
left=()
for k in "${pick[@]}"; do [[ "$(rcli "$P" exists "$k")" == 1 ]] && left+=("$k"); done
expect_eq "... 4 keys deleted, the 2 on the bad key's server left" 2 "${#left[@]}"
[[ "$(grep -lx -e "${left[0]}" "$CI_TMP"/placed.s?)" == "$(grep -lx -e "${left[1]}" "$CI_TMP"/placed.s?)" ]] ||
    fail "the 2 keys left are not on the same server"
ok "... and those 2 are on the same server"

printf '\n-- the same servers through a pool with hash: murmur (keys m00000..)\n'
PM=$PROXY_MURMUR
for i in $(seq 0 $((N - 1))); do printf 'SET m%05d "%s"\n' "$i" "${vals[$i]}"; done >"$CI_TMP/set.txt"
expect_eq "$N SETs through the murmur pool" "$N" "$(rcli "$PM" <"$CI_TMP/set.txt" | grep -c '^OK$')"
for ((i = 0; i < N; i += 100)); do printf 'MGET'; printf ' m%05d' $(seq "$i" $((i + 99))); printf '\n'; done |
    rcli "$PM" >"$CI_TMP/got"
diff -q "$CI_TMP/want" "$CI_TMP/got" >/dev/null || fail "MGET through the murmur pool: values differ"
ok "MGET through the murmur pool: every value"
declare -A km kk
for s in s1 s2 s3; do
    km[$s]=$(rcli "${SPORT[$s]}" --scan --pattern 'm*' | wc -l)
    kk[$s]=$(rcli "${SPORT[$s]}" --scan --pattern 'k*' | wc -l)
done
say "keys per server (weights 1:1:2): fnv1a_64 pool ${kk[s1]}/${kk[s2]}/${kk[s3]} (k00100..k00499), murmur pool ${km[s1]}/${km[s2]}/${km[s3]} (m00000..m00499)"
expect_eq "murmur pool: $N keys over the servers" "$N" $((km[s1] + km[s2] + km[s3]))
((km[s1] > 0 && km[s2] > 0 && km[s3] > km[s1] && km[s3] > km[s2])) ||
    fail "murmur pool: s3 (weight 2) should hold the most keys"
ok "murmur pool: s3 (weight 2) holds more keys than s1 and s2 (weight 1)"

printf '\n-- redis-py through the proxy\n'
VENV=$ROOT/target/ci-venv # made by interop.sh, which .ci/run runs first
if "$VENV/bin/python" -c 'import redis' 2>/dev/null; then
    timeout 60 "$VENV/bin/python" - "$P" <<'PY' || fail "redis-py through the proxy"
import sys
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

port = int(sys.argv[1])
# RESP2, and no CLIENT SETINFO at connect (driver_info=None): twemproxy forwards neither HELLO
# nor CLIENT and closes the connection on them.
r = redis.Redis(port=port, protocol=2, driver_info=None, socket_timeout=10)
vals = {f"py{i:03d}": bytes(range(i % 256, 256)) for i in range(60)}
assert r.ping()
assert r.mset(vals)
assert r.mget(list(vals)) == list(vals.values()), "mget"
assert r.get("py001") == bytes(range(1, 256)), "get"
pipe = r.pipeline(transaction=False)
for k in vals:
    pipe.get(k)
assert pipe.execute() == list(vals.values()), "pipeline"
assert r.exists(*vals) == 60, "exists"
assert r.delete(*vals) == 60, "delete"
print("  ok  redis-py protocol=2, driver_info=None: ping, mset, mget, get, pipeline, exists, delete (60 keys, binary)")
for what, kw in [
    ("default (RESP3: HELLO 3)", {}),
    ("protocol=2 (sends CLIENT SETINFO by default)", {"protocol": 2}),
]:
    try:
        redis.Redis(port=port, socket_timeout=5, retry=Retry(NoBackoff(), 0), **kw).ping()
    except redis.ConnectionError as e:
        print(f"  ok  redis-py {what} cannot connect through the proxy: {e}")
    else:
        sys.exit(f"redis-py {what} through the proxy: expected a ConnectionError")
PY
    CHECKS=$((CHECKS + 3))
else
    say "skipped: no redis-py in $VENV (interop.sh installs it)"
fi

printf '\n-- commands the proxy does not forward (it closes the connection)\n'
for cmd in "dbsize" "scan 0" "info" "range - +" "echo hi" "hello 3" "client id" "select 0" "config get port"; do
    # shellcheck disable=SC2086 # the words of $cmd are the arguments
    out=$(rcli "$P" $cmd 2>&1) && rc=0 || rc=$?
    [[ "$out" == *"Server closed the connection"* ]] ||
        fail "'$cmd' through the proxy: expected the connection closed, got rc=$rc: $out"
    ok "'$cmd': not forwarded (connection closed)"
done
out=$(rcli "$P" -3 ping 2>&1) && rc=0 || rc=$?
[[ $rc != 0 ]] || fail "redis-cli -3 (HELLO 3) through the proxy should fail, got: $out"
ok "RESP3 (redis-cli -3 sends HELLO 3) fails through the proxy: use RESP2"
out=$(rcli "$P" -n 1 get k00200 2>&1) && rc=0 || rc=$?
[[ $rc != 0 && "$out" == *"Server closed the connection"* ]] ||
    fail "redis-cli -n 1 through the proxy: expected the connection closed at SELECT, got rc=$rc: $out"
ok "redis-cli -n 1 (sends SELECT 1) fails through the proxy"
expect_eq "the proxy still serves after all that" PONG "$(rcli "$P" ping)"

printf '\n-- AUTH: redis_auth pool in front of a server with a password\n'
PA=$PROXY_AUTH
expect_match "no AUTH: NOAUTH from the proxy" "^NOAUTH" "$(rcli "$PA" get x)"
expect_match "wrong password: refused by the proxy" "AUTH failed: ERR invalid password" \
    "$(rcli "$PA" --no-auth-warning -a wrong ping 2>&1)"
expect_eq "right password: SET" OK "$(rcli "$PA" --no-auth-warning -a proxy-secret set x secret-value)"
expect_eq "right password: GET" secret-value "$(rcli "$PA" --no-auth-warning -a proxy-secret get x)"
expect_eq "the proxy authenticated to the server: value there" secret-value \
    "$(rcli "${SPORT[sauth]}" --no-auth-warning -a proxy-secret get x)"
expect_match "AUTH to a pool without redis_auth is an error" "no password is set" \
    "$(rcli "$P" --no-auth-warning -a proxy-secret ping 2>&1)"

printf '\n-- stop\n'
kill -TERM "$NC_PID"
wait_exit "$NC_PID" "$STOP_SECS"
[[ "$EXIT_RC" != timeout ]] || fail "nutcracker did not exit after SIGTERM"
ok "nutcracker stopped"
for s in s1 s2 s3 sauth; do stop_server "$s"; done
ok "SIGTERM: the four servers exit 0"

printf '\ntwemproxy.sh: %d checks passed in %ds\n' "$CHECKS" $((SECONDS - started))
