#!/usr/bin/env bash
# The compose cluster of docs/compose.yaml (a master, two replicas, three Redis Sentinels, each a
# container with its own address on 10.89.7.0/24), cut apart while a redis-py writer goes through
# the sentinels and counts a write as acknowledged only after SET OK and WAIT 1 >= 1
# (.ci/sentinel.py). Three cases, one after the other, on one cluster:
# A. Partition: the master is cut off from every other container (iptables DROP in its network
#    namespace, entered from the host with nsenter; the host, as the client, still reaches it).
#    The sentinels promote a replica; the writes the cut-off master still takes fail WAIT 1; the
#    partition heals and the old master becomes a replica of the new one; every acknowledged
#    write is on the new master and on both replicas, byte for byte.
# B. A replica's container stopped (docker stop) for 30 s while the writer goes on, then
#    started: it resyncs partially (its master's sync_partial_ok goes up, sync_full does not)
#    and converges.
# C. The three data containers restarted at once (docker restart): the cluster comes back, and
#    the writes acknowledged before, during and after are all there, on the master and both
#    replicas.
# Needs: the image $IMAGE (default toykv:ci, made by .ci/container.sh), redis:7.0-bookworm
# (.ci/images.sh), docker-compose, nsenter and iptables (root), redis-tools, python3 with
# redis-py (target/ci-venv, made by container.sh or interop.sh). Bounded: about 3 minutes when it
# passes; every wait has a limit.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
IMAGE=${IMAGE:-toykv:ci}
PROJECT=toykvci
PASS=ci-cluster-secret
NET=10.89.7
GW=$NET.1
SENTINELS=("$NET.21:26379" "$NET.22:26379" "$NET.23:26379")
STOP_FOR=${STOP_FOR:-30} # seconds the replica's container stays stopped in case B
started=$SECONDS
TMP=$(mktemp -d "$ROOT/target/ci-tmp.cluster.XXXXXX")
export REQUIREPASS=$PASS TOYKV_IMAGE=$IMAGE
DC=(docker-compose -p "$PROJECT" -f "$ROOT/docs/compose.yaml")

# shellcheck source=.ci/checks.sh
source "$ROOT/.ci/checks.sh"
WPID=
cleanup() {
    local rc=$?
    [[ -z "$WPID" ]] || kill "$WPID" 2>/dev/null || true
    if [[ $rc != 0 ]]; then
        printf '\n--- the writer\n' >&2
        cat "$TMP"/writer-*.log >&2 2>/dev/null || true
        printf '\n--- docker-compose logs (last lines of each)\n' >&2
        "${DC[@]}" logs --no-color --tail 25 >&2 2>&1 || true
        printf '\ncluster.sh FAILED (exit %s)\n' "$rc" >&2
    fi
    "${DC[@]}" down -v --remove-orphans >/dev/null 2>&1 || true
    rm -rf "$TMP"
    exit "$rc"
}
trap cleanup EXIT
need docker docker-compose nsenter iptables redis-cli timeout
docker image inspect "$IMAGE" >/dev/null 2>&1 || fail "no image $IMAGE: .ci/container.sh builds it"
bash "$ROOT/.ci/images.sh" >/dev/null # redis:7.0-bookworm, for the sentinels
PY=$ROOT/target/ci-venv/bin/python
"$PY" -c 'import redis' 2>/dev/null || fail "no redis-py in target/ci-venv (.ci/container.sh makes it)"

# q HOST PORT ARGS...: redis-cli for polling (short timeout, errors quiet).
q() {
    local h=$1 p=$2
    shift 2
    timeout 3 redis-cli -h "$h" -p "$p" "$@" 2>/dev/null
}
# field HOST SECTION FIELD: FIELD of the server's INFO SECTION ("" when it does not answer).
field() {
    { q "$1" 8888 -a "$PASS" --no-auth-warning info "$2" || true; } | tr -d '\r' | sed -n "s/^$3://p"
}
# master_of SENTINEL-ADDR: the master's address according to that sentinel.
master_of() {
    { q "${1%:*}" "${1#*:}" sentinel get-master-addr-by-name mymaster || true; } | paste -sd: -
}
declare -A IPOF=([master]=$NET.11 [replica1]=$NET.12 [replica2]=$NET.13)
declare -A NAMEOF=([$NET.11]=master [$NET.12]=replica1 [$NET.13]=replica2)
# agreed: all three sentinels name one master; sets MASTER (its IP).
MASTER=
agreed() {
    local s m first=
    STATE=
    for s in "${SENTINELS[@]}"; do
        m=$(master_of "$s")
        STATE+="$s says ${m:-?}; "
        [[ -n "$m" && (-z "$first" || "$m" == "$first") ]] || return 1
        first=$m
    done
    [[ "$first" == *:8888 ]] || return 1
    MASTER=${first%:*}
}
# healthy: MASTER is master with 2 replicas whose links are up, every sentinel sees 2 replicas
# and 2 other sentinels.
healthy() {
    agreed || return 1
    local ip n s o r
    n=$(field "$MASTER" replication connected_slaves)
    STATE="master ${NAMEOF[$MASTER]} ($MASTER): role $(field "$MASTER" replication role), connected_slaves=${n:-?}"
    [[ "$(field "$MASTER" replication role)" == master && "$n" == 2 ]] || return 1
    for ip in "${IPOF[@]}"; do
        [[ "$ip" == "$MASTER" ]] && continue
        r="$(field "$ip" replication master_host)/$(field "$ip" replication master_link_status)"
        STATE+="; ${NAMEOF[$ip]}: master_host/link $r"
        [[ "$r" == "$MASTER/up" ]] || return 1
    done
    for s in "${SENTINELS[@]}"; do
        o=$({ q "${s%:*}" 26379 sentinel master mymaster || true; } | paste - - |
            awk '$1 == "num-slaves" { s = $2 } $1 == "num-other-sentinels" { o = $2 } END { print s "/" o }')
        STATE+="; $s slaves/other sentinels $o"
        [[ "$o" == 2/2 ]] || return 1
    done
}
# writer LABEL PREFIX [ARGS...]: starts a writer through the sentinels; waits until it is ready.
writer() {
    local label=$1 prefix=$2
    shift 2
    rm -f "$TMP/ready" "$TMP/done"
    timeout 200 "$PY" "$ROOT/.ci/sentinel.py" write --sentinels "$(
        IFS=,
        echo "${SENTINELS[*]}"
    )" \
        --password "$PASS" --prefix "$prefix" --out "$TMP/acked-$label.json" --ready "$TMP/ready" \
        --done "$TMP/done" --after-secs 5 --max-secs 180 "$@" >"$TMP/writer-$label.log" 2>&1 &
    WPID=$!
    local t=$SECONDS
    until [[ -f "$TMP/ready" ]]; do
        kill -0 "$WPID" 2>/dev/null || fail "writer $label exited early: $(cat "$TMP/writer-$label.log")"
        ((SECONDS - t < 30)) || fail "writer $label: not 300 acknowledged writes within 30s"
        sleep 0.2
    done
    say "writer $label: writing (keys ${prefix}0000000...)"
}
# writer_end LABEL: touches the done file and waits for the writer's verdict.
writer_end() {
    touch "$TMP/done"
    local rc=0
    wait "$WPID" || rc=$?
    WPID=
    sed 's/^/  /' "$TMP/writer-$1.log"
    [[ $rc == 0 ]] || fail "writer $1 failed (exit status $rc)"
    CHECKS=$((CHECKS + 1))
}
verify() { # IP LABEL WAIT-SECS ACKED-FILES...
    local ip=$1 label=$2 secs=$3 f args=()
    shift 3
    for f in "$@"; do args+=(--acked "$TMP/acked-$f.json"); done
    timeout $((secs + 60)) "$PY" "$ROOT/.ci/sentinel.py" verify --addr "$ip:8888" --label "$label" \
        --wait "$secs" --password "$PASS" "${args[@]}" | sed 's/^/  /' ||
        fail "$label: verification failed (see above)"
    CHECKS=$((CHECKS + 2))
}
container() { "${DC[@]}" ps -q "$1"; }

printf '\n-- the cluster: docker-compose -f docs/compose.yaml up (image %s)\n' "$IMAGE"
"${DC[@]}" down -v --remove-orphans >/dev/null 2>&1 || true
timeout 120 "${DC[@]}" up -d --no-build >"$TMP/up.log" 2>&1 || {
    cat "$TMP/up.log" >&2
    fail "docker-compose up failed"
}
wait_for 60 "master with both replicas linked, sentinels agreeing" healthy
ok "up: $STATE"
expect_master() {
    [[ "$MASTER" == "$1" ]] || fail "$2: the sentinels name $MASTER, expected $1"
    ok "$2: the sentinels name ${NAMEOF[$MASTER]} ($MASTER)"
}
expect_master "$NET.11" "at start"

printf '\n-- A. the master cut off from every other container\n'
OLD=$MASTER
writer A a --old "$OLD:8888" --cut "$TMP/cut"
pid=$(docker inspect -f '{{.State.Pid}}' "$(container master)")
in_master() { nsenter -t "$pid" -n iptables "$@"; }
in_master -N TOYKV_CUT
in_master -A TOYKV_CUT -s "$GW" -j ACCEPT # the host: the test's client
in_master -A TOYKV_CUT -d "$GW" -j ACCEPT
in_master -A TOYKV_CUT -s "$NET.0/24" -j DROP
in_master -A TOYKV_CUT -d "$NET.0/24" -j DROP
in_master -I INPUT -j TOYKV_CUT
in_master -I OUTPUT -j TOYKV_CUT
touch "$TMP/cut"
t0=$SECONDS
say "cut: iptables DROP of $NET.0/24 (but $GW) in the master's network namespace"
new_master() { agreed && [[ "$MASTER" != "$OLD" ]]; }
wait_for 60 "the sentinels promote a replica" new_master
NEW=$MASTER
ok "the sentinels promoted ${NAMEOF[$NEW]} ($NEW) $((SECONDS - t0))s after the cut"
expect_eq "the cut-off old master still says it is master" master "$(field "$OLD" replication role)"
writer_end A
in_master -D INPUT -j TOYKV_CUT
in_master -D OUTPUT -j TOYKV_CUT
in_master -F TOYKV_CUT
in_master -X TOYKV_CUT
t0=$SECONDS
say "healed"
demoted() {
    STATE="old master: role $(field "$OLD" replication role), master_host $(field "$OLD" replication master_host), link $(field "$OLD" replication master_link_status)"
    [[ "$STATE" == "old master: role slave, master_host $NEW, link up" ]]
}
wait_for 90 "the old master becomes a replica of the new one" demoted
ok "$((SECONDS - t0))s after the heal: $STATE"
wait_for 60 "the cluster settles" healthy
expect_master "$NEW" "after the heal"
verify "$NEW" "new master ${NAMEOF[$NEW]}" 0 A
for ip in "${IPOF[@]}"; do
    [[ "$ip" == "$NEW" ]] || verify "$ip" "replica ${NAMEOF[$ip]}" 30 A
done

printf '\n-- B. a replica container stopped for %ss under load\n' "$STOP_FOR"
R=${NAMEOF[$OLD]}
writer B b
full0=$(field "$NEW" stats sync_full)
part0=$(field "$NEW" stats sync_partial_ok)
t0=$(date +%s%N)
timeout 30 docker stop -t 10 "$(container "$R")" >/dev/null
ms=$((($(date +%s%N) - t0) / 1000000))
expect_eq "docker stop $R: exit status 0 (in $ms ms; the grace period is 10 s)" 0 \
    "$(docker inspect -f '{{.State.ExitCode}}' "$(container "$R")")"
sleep "$STOP_FOR"
docker start "$(container "$R")" >/dev/null
t0=$SECONDS
linked() {
    STATE="$R: master_host $(field "${IPOF[$R]}" replication master_host), link $(field "${IPOF[$R]}" replication master_link_status)"
    [[ "$STATE" == "$R: master_host $NEW, link up" ]]
}
wait_for 60 "$R links to the master again" linked
ok "$R linked again $((SECONDS - t0))s after docker start"
full1=$(field "$NEW" stats sync_full)
part1=$(field "$NEW" stats sync_partial_ok)
say "master ${NAMEOF[$NEW]}: sync_full $full0 -> $full1, sync_partial_ok $part0 -> $part1"
[[ "$full1" == "$full0" && "$part1" -gt "$part0" ]] ||
    fail "$R did not resync partially (its offset is well inside the master's 64 MiB backlog)"
ok "$R resynced partially"
writer_end B
wait_for 60 "the cluster settles" healthy
verify "$NEW" "master ${NAMEOF[$NEW]}" 0 A B
verify "${IPOF[$R]}" "replica $R" 30 A B

printf '\n-- C. the three data containers restarted at once\n'
writer C c
pids=()
for n in master replica1 replica2; do
    timeout 60 docker restart -t 10 "$(container "$n")" >/dev/null &
    pids+=($!)
done
for p in "${pids[@]}"; do wait "$p" || fail "docker restart failed"; done
t0=$SECONDS
for n in master replica1 replica2; do
    expect_eq "$n restarted (running)" true "$(docker inspect -f '{{.State.Running}}' "$(container "$n")")"
done
wait_for 90 "the cluster comes back" healthy
ok "back $((SECONDS - t0))s after the restarts: $STATE"
say "master ${NAMEOF[$MASTER]} since its restart: sync_full $(field "$MASTER" stats sync_full), sync_partial_ok $(field "$MASTER" stats sync_partial_ok)"
writer_end C
wait_for 60 "the cluster settles" healthy
verify "$MASTER" "master ${NAMEOF[$MASTER]}" 0 A B C
for ip in "${IPOF[@]}"; do
    [[ "$ip" == "$MASTER" ]] || verify "$ip" "replica ${NAMEOF[$ip]}" 30 A B C
done

printf '\ncluster.sh: %d checks passed in %ds\n' "$CHECKS" $((SECONDS - started))
