#!/usr/bin/env bash
# Failover under three real redis-sentinel processes, all on loopback: a master M and two
# replicas R1, R2; the sentinels monitor M (quorum 2). A redis-py writer (.ci/sentinel.py) goes
# through the sentinels and counts a write as acknowledged only after SET OK and WAIT 1 >= 1.
# M is killed with SIGKILL mid-stream; all three sentinels must name the promoted replica within
# 30 s; the writer goes on through the new master; every acknowledged key must be there byte for
# byte, and on the other replica. M then restarts on its own dir, config file and port, without
# --replicaof: the sentinels must turn it into a replica of the new master, and it must converge.
#   SERVER_KIND=toykv (default): the release server ($SERVER_BIN, see lib.sh).
#   SERVER_KIND=redis: redis-server, the reference (same scenario, same checks).
#   AUTH_PASS=secret: servers with --requirepass/--masterauth, sentinels with auth-pass.
# Needs: redis-sentinel, redis-tools, netcat-openbsd, python3 with redis-py >= 5 (a venv is made
# as in interop.sh when neither target/ci-venv nor python3 has it). Bounded: about 1 minute
# when it passes, at most about 3 when a wait runs out.
set -euo pipefail
SERVER_KIND=${SERVER_KIND:-toykv}
case $SERVER_KIND in
toykv) ;;
redis)
    # lib.sh checks $TOYKV_SERVER and names it SERVER_BIN: here that is redis-server.
    # shellcheck disable=SC2034 # read by lib.sh
    TOYKV_SERVER=$(command -v redis-server) || {
        echo "SERVER_KIND=redis: redis-server is not installed (.ci/run installs it)" >&2
        exit 1
    }
    ;;
*)
    echo "SERVER_KIND must be toykv or redis, not '$SERVER_KIND'" >&2
    exit 2
    ;;
esac
# shellcheck source=.ci/lib.sh
source "$(dirname "$0")/lib.sh"
need redis-cli redis-sentinel nc timeout python3
started=$SECONDS
AUTH_PASS=${AUTH_PASS:-}
[[ "$AUTH_PASS" != *[\"\\]* ]] || fail "AUTH_PASS must not hold \" or \\ (it is quoted in the sentinels' config files)"
AUTH_ARGS=() PY_AUTH=() # redis-cli's and sentinel.py's password arguments
[[ -z "$AUTH_PASS" ]] || AUTH_ARGS=(-a "$AUTH_PASS" --no-auth-warning) PY_AUTH=(--password "$AUTH_PASS")
FAILOVER_MAX=30 # seconds from SIGKILL until all three sentinels name the new master
REJOIN_MAX=40   # seconds from the old master's restart until it is a linked replica
printf '\n-- sentinel.sh: SERVER_KIND=%s (%s)%s\n' "$SERVER_KIND" "$SERVER_BIN" "${AUTH_PASS:+, with a password}"

# redis-py >= 5: the CI venv (interop.sh makes it), else the system python3, else a new venv.
VENV=$ROOT/target/ci-venv
has_redis_py() { "$1" -c 'import sys, redis; sys.exit(int(redis.__version__.split(".")[0]) < 5)' 2>/dev/null; }
if has_redis_py "$VENV/bin/python"; then
    PY=$VENV/bin/python
elif has_redis_py python3; then
    PY=python3
else
    [[ -x "$VENV/bin/python" ]] || timeout 120 python3 -m venv "$VENV" ||
        fail "python3 -m venv failed (install python3-venv)"
    timeout 300 "$VENV/bin/pip" install --quiet --disable-pip-version-check 'redis>=8,<9' ||
        fail "pip install redis failed"
    PY=$VENV/bin/python
fi
say "redis-py $("$PY" -c 'import redis; print(redis.__version__)') ($PY)"

# q PORT ARGS...: redis-cli for polling (short timeout, errors quiet); scli adds the password.
q() {
    local port=$1
    shift
    timeout 3 redis-cli -p "$port" "$@" 2>/dev/null
}
scli() {
    local port=$1
    shift
    timeout "$CMD_SECS" redis-cli -p "$port" "${AUTH_ARGS[@]}" "$@"
}
# info_field PORT FIELD: FIELD of the server's INFO replication ("" when it does not answer).
info_field() {
    { q "$1" "${AUTH_ARGS[@]}" info replication || true; } | tr -d '\r' | sed -n "s/^$2://p"
}
# sentinel_field SENTINEL-PORT FIELD: FIELD of SENTINEL MASTER mymaster.
sentinel_field() {
    { q "$1" sentinel master mymaster || true; } | awk -v f="$2" 'take { print; exit } $0 == f { take = 1 }'
}
# sentinel_master_port SENTINEL-PORT: the port of SENTINEL GET-MASTER-ADDR-BY-NAME mymaster.
sentinel_master_port() {
    { q "$1" sentinel get-master-addr-by-name mymaster || true; } | sed -n 2p
}

USED_PORTS=" "
new_port() {
    local p _
    for _ in 1 2 3 4 5 6 7 8 9 10; do
        p=$(free_port)
        [[ "$USED_PORTS" == *" $p "* ]] || break
    done
    USED_PORTS+="$p "
    echo "$p"
}

# node_start NAME PORT [MASTER-PORT]: starts server NAME on PORT with its data in $CI_TMP/NAME
# and its config file $CI_TMP/NAME.conf (made empty the first time, kept across restarts: CONFIG
# REWRITE writes there), a replica of MASTER-PORT when given. Log: $CI_TMP/NAME.log.
node_start() {
    local name=$1 port=$2 master=${3:-} dir=$CI_TMP/$1 conf=$CI_TMP/$1.conf pid args
    mkdir -p "$dir"
    [[ -f "$conf" ]] || : >"$conf"
    if [[ $SERVER_KIND == redis ]]; then
        args=("$conf" --port "$port" --bind 127.0.0.1 --dir "$dir" --save '' --appendonly yes)
        [[ -z "$master" ]] || args+=(--replicaof 127.0.0.1 "$master")
    else
        args=(--port "$port" --dir "$dir" --durability always)
        [[ -z "$master" ]] || args+=(--replicaof "127.0.0.1 $master")
    fi
    [[ -z "$AUTH_PASS" ]] || args+=(--requirepass "$AUTH_PASS" --masterauth "$AUTH_PASS")
    [[ $SERVER_KIND == redis ]] || args+=(--config "$conf")
    "$SERVER_BIN" "${args[@]}" >>"$CI_TMP/$name.log" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    if ! wait_listening "$port" "$pid"; then
        tail -n 20 "$CI_TMP/$name.log" >&2
        fail "server $name did not start listening on port $port within ${START_SECS}s"
    fi
    SPID[$name]=$pid
    SPORT[$name]=$port
    say "server $name: port $port, pid $pid${master:+, replica of $master}"
}

# sentinel_start NAME PORT MASTER-PORT: a sentinel with its own config file and dir.
sentinel_start() {
    local name=$1 port=$2 master=$3 dir=$CI_TMP/$1 conf=$CI_TMP/$1.conf pid
    mkdir -p "$dir"
    {
        echo "port $port"
        echo "bind 127.0.0.1"
        echo "dir \"$dir\""
        echo "sentinel resolve-hostnames no"
        echo "sentinel monitor mymaster 127.0.0.1 $master 2"
        echo "sentinel down-after-milliseconds mymaster 1000"
        echo "sentinel failover-timeout mymaster 10000"
        echo "sentinel parallel-syncs mymaster 1"
        [[ -z "$AUTH_PASS" ]] || echo "sentinel auth-pass mymaster \"$AUTH_PASS\""
    } >"$conf"
    redis-sentinel "$conf" >>"$CI_TMP/$name.log" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    wait_listening "$port" "$pid" || fail "sentinel $name did not start listening on port $port"
    SPID[$name]=$pid
    SPORT[$name]=$port
    say "sentinel $name: port $port, pid $pid"
}

printf '\n-- 1. master m, replicas r1 and r2\n'
PM=$(new_port)
node_start m "$PM"
node_start r1 "$(new_port)" "$PM"
node_start r2 "$(new_port)" "$PM"
replication_up() {
    local n a b
    n=$(info_field "$PM" connected_slaves)
    a=$(info_field "${SPORT[r1]}" master_link_status)
    b=$(info_field "${SPORT[r2]}" master_link_status)
    STATE="m connected_slaves=${n:-?}, r1 master_link_status=${a:-?}, r2 master_link_status=${b:-?}"
    [[ "$n" == 2 && "$a" == up && "$b" == up ]]
}
wait_for 30 "m with 2 connected replicas, both links up" replication_up
ok "replication up: $STATE"
expect_eq "m: role" master "$(info_field "$PM" role)"
expect_eq "r1: role" slave "$(info_field "${SPORT[r1]}" role)"
expect_eq "r1: master_port" "$PM" "$(info_field "${SPORT[r1]}" master_port)"

printf '\n-- 2. three sentinels (monitor mymaster 127.0.0.1 %s, quorum 2)\n' "$PM"
SENTINELS=(s1 s2 s3)
for s in "${SENTINELS[@]}"; do sentinel_start "$s" "$(new_port)" "$PM"; done
sentinels_agree() {
    local s o n
    STATE=
    for s in "${SENTINELS[@]}"; do
        o=$(sentinel_field "${SPORT[$s]}" num-other-sentinels)
        n=$(sentinel_field "${SPORT[$s]}" num-slaves)
        STATE+="$s: num-other-sentinels=${o:-?} num-slaves=${n:-?}; "
        [[ "$o" == 2 && "$n" == 2 ]] || return 1
    done
}
wait_for 30 "each sentinel knows the 2 others and the 2 replicas" sentinels_agree
ok "sentinels: $STATE"
for s in "${SENTINELS[@]}"; do
    expect_match "$s: SENTINEL CKQUORUM mymaster" "^OK 3 usable Sentinels" \
        "$(rcli "${SPORT[$s]}" sentinel ckquorum mymaster)"
done

printf '\n-- 3. the writer (redis-py through the sentinels: 5 SETs, then WAIT 1 1000)\n'
READY=$CI_TMP/writer.ready
FAILOVER=$CI_TMP/failover.done
ACKED=$CI_TMP/acked.json
timeout 150 "$PY" "$ROOT/.ci/sentinel.py" write \
    --sentinels "${SPORT[s1]},${SPORT[s2]},${SPORT[s3]}" --old "$PM" \
    --out "$ACKED" --ready "$READY" --done "$FAILOVER" --after-secs 5 --max-secs 120 \
    "${PY_AUTH[@]}" >"$CI_TMP/writer.log" 2>&1 &
WPID=$!
PIDS+=("$WPID")
writer_ready() {
    kill -0 "$WPID" 2>/dev/null || fail "the writer exited early: $(cat "$CI_TMP/writer.log")"
    [[ -f "$READY" ]]
}
wait_for 30 "the writer's first 300 acknowledged writes" writer_ready
sleep 1
ok "the writer is writing: m holds $(scli "$PM" dbsize) keys"

printf '\n-- 4. SIGKILL the master (pid %s, port %s)\n' "${SPID[m]}" "$PM"
t0=$(date +%s%N)
kill -KILL "${SPID[m]}"
wait "${SPID[m]}" 2>/dev/null || true
forget_pid "${SPID[m]}"
unset "SPID[m]"
NEW=
failover_done() {
    local s p first=
    STATE=
    for s in "${SENTINELS[@]}"; do
        p=$(sentinel_master_port "${SPORT[$s]}")
        STATE+="$s says ${p:-?}; "
        [[ -n "$p" && "$p" != "$PM" ]] || return 1
        [[ -z "$first" || "$p" == "$first" ]] || return 1
        first=$p
    done
    NEW=$first
}
t_limit=$((t0 + FAILOVER_MAX * 1000000000))
until failover_done; do
    (($(date +%s%N) < t_limit)) ||
        fail "failover: the sentinels did not all name one new master within ${FAILOVER_MAX}s ($STATE)"
    sleep 0.1
done
ms=$((($(date +%s%N) - t0) / 1000000))
touch "$FAILOVER"
FAILOVER_SECS=$(printf '%d.%03d' $((ms / 1000)) $((ms % 1000)))
ok "failover in ${FAILOVER_SECS}s: all three sentinels name port $NEW (limit ${FAILOVER_MAX}s)"
if [[ "$NEW" == "${SPORT[r1]}" ]]; then
    PROMOTED=r1 OTHER=r2
elif [[ "$NEW" == "${SPORT[r2]}" ]]; then
    PROMOTED=r2 OTHER=r1
else
    fail "the new master's port $NEW is neither r1's (${SPORT[r1]}) nor r2's (${SPORT[r2]})"
fi
say "promoted: $PROMOTED; the other replica: $OTHER"
promoted_master() {
    STATE="role=$(info_field "$NEW" role)"
    [[ "$STATE" == role=master ]]
}
wait_for 10 "$PROMOTED reports role:master" promoted_master
ok "$PROMOTED: INFO says role:master"

printf '\n-- 5. the writer goes on through the new master, then stops\n'
wait_exit "$WPID" 100
[[ "$EXIT_RC" == 0 ]] || fail "the writer failed (exit status $EXIT_RC): $(cat "$CI_TMP/writer.log")"
sed 's/^/  /' "$CI_TMP/writer.log"
CHECKS=$((CHECKS + 1))

printf '\n-- 6. every acknowledged write on the new master, and on the other replica\n'
verify() { # PORT LABEL WAIT-SECS
    timeout $(($3 + 60)) "$PY" "$ROOT/.ci/sentinel.py" verify --addr "$1" --label "$2" --wait "$3" \
        --acked "$ACKED" "${PY_AUTH[@]}" | sed 's/^/  /' ||
        fail "$2: verification failed (see above)"
    CHECKS=$((CHECKS + 2))
}
verify "$NEW" "new master $PROMOTED" 0
other_follows() {
    local p l
    p=$(info_field "${SPORT[$OTHER]}" master_port)
    l=$(info_field "${SPORT[$OTHER]}" master_link_status)
    STATE="master_port=${p:-?} master_link_status=${l:-?}"
    [[ "$p" == "$NEW" && "$l" == up ]]
}
wait_for 30 "$OTHER replicates from the new master" other_follows
ok "$OTHER: $STATE"
verify "${SPORT[$OTHER]}" "replica $OTHER" 20

printf '\n-- 7. the old master restarts (same dir, config file and port, no --replicaof)\n'
t1=$SECONDS
node_start m "$PM"
rejoined() {
    local r p l
    r=$(info_field "$PM" role)
    p=$(info_field "$PM" master_port)
    l=$(info_field "$PM" master_link_status)
    STATE="role=${r:-?} master_port=${p:-?} master_link_status=${l:-?}"
    [[ "$r" == slave && "$p" == "$NEW" && "$l" == up ]]
}
wait_for "$REJOIN_MAX" "the old master becomes a replica of port $NEW with its link up" rejoined
ok "old master m is a replica of $NEW after $((SECONDS - t1))s: $STATE"
verify "$PM" "old master m" 30
same_size() {
    local a b c
    a=$(scli "$NEW" dbsize)
    b=$(scli "$PM" dbsize)
    c=$(scli "${SPORT[$OTHER]}" dbsize)
    STATE="new master $a, old master $b, $OTHER $c"
    [[ "$a" == "$b" && "$a" == "$c" ]]
}
wait_for 10 "the same DBSIZE on the three servers" same_size
ok "DBSIZE: $STATE"
sentinels_see_replica() {
    local s f
    STATE=
    for s in "${SENTINELS[@]}"; do
        f=$({ q "${SPORT[$s]}" sentinel replicas mymaster || true; } | awk -v p="$PM" '
            NR % 2 == 1 { k = $0; next }
            k == "name" { port = ""; flags = "" }
            k == "port" { port = $0 }
            k == "flags" { flags = $0 }
            port == p && flags != "" && !done { print flags; done = 1 }')
        STATE+="$s: flags of $PM = ${f:-?}; "
        [[ "$f" == slave ]] || return 1
    done
}
wait_for 20 "every sentinel lists the old master as a healthy replica" sentinels_see_replica
ok "sentinels: $STATE"
for s in "${SENTINELS[@]}"; do
    expect_eq "$s: master still port $NEW" "$NEW" "$(sentinel_master_port "${SPORT[$s]}")"
    expect_eq "$s: num-slaves" 2 "$(sentinel_field "${SPORT[$s]}" num-slaves)"
done

printf '\n-- what each server was asked (INFO commandstats: command=calls; m since its restart)\n'
for n in m r1 r2; do
    say "$n: $({ q "${SPORT[$n]}" "${AUTH_ARGS[@]}" info commandstats || true; } | tr -d '\r' |
        sed -n 's/^cmdstat_\([^:]*\):calls=\([0-9]*\).*/\1=\2/p' | xargs)"
done

printf '\n-- 8. stop\n'
for s in "${SENTINELS[@]}"; do
    kill -TERM "${SPID[$s]}"
    wait_exit "${SPID[$s]}" "$STOP_SECS"
    [[ "$EXIT_RC" != timeout ]] || fail "sentinel $s did not exit after SIGTERM"
    unset "SPID[$s]"
done
ok "sentinels stopped"
for n in m r1 r2; do stop_server "$n"; done
ok "SIGTERM: the three servers exit 0"

printf '\nsentinel.sh (%s): %d checks passed in %ds; failover %ss\n' \
    "$SERVER_KIND" "$CHECKS" $((SECONDS - started)) "$FAILOVER_SECS"
