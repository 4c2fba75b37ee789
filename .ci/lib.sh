# shellcheck shell=bash
# Helpers for the CI scripts that run real servers (interop.sh, twemproxy.sh, sentinel.sh).
# Sourced, not run. Every server started here listens on loopback (or 0.0.0.0 where a script
# says so), lives in a temp dir under target/, and is stopped by the EXIT trap, pass or fail.
# Every wait is bounded.

set -euo pipefail
# shellcheck source=.ci/checks.sh
source "$(dirname "${BASH_SOURCE[0]}")/checks.sh"

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SERVER_BIN=${TOYKV_SERVER:-$ROOT/target/release/examples/server}
# Seconds a server gets to start listening, and to exit after SIGTERM.
START_SECS=${START_SECS:-20}
STOP_SECS=${STOP_SECS:-10}
# Seconds any one client command may take.
CMD_SECS=${CMD_SECS:-20}

# A real file system under target/ (not /tmp, which may be tmpfs: see README on O_DIRECT).
mkdir -p "$ROOT/target"
CI_TMP=$(mktemp -d "$ROOT/target/ci-tmp.$(basename "$0" .sh).XXXXXX")
chmod 755 "$CI_TMP"

PIDS=() # every background process this script started
declare -A SPID SPORT # server name -> pid, port
EXIT_RC=

# A TCP port nothing listens on, outside the usual ephemeral range (32768-60999) so that no
# client socket takes it meanwhile. start_server retries if it is taken anyway.
free_port() {
    local p _
    for _ in $(seq 1 100); do
        p=$((20000 + RANDOM % 12000))
        if ! nc -z -w 1 127.0.0.1 "$p" 2>/dev/null; then
            echo "$p"
            return 0
        fi
    done
    fail "no free port found"
}

# wait_listening PORT PID: until PORT accepts connections (0), PID exits or time runs out (1).
wait_listening() {
    local port=$1 pid=$2 _
    for _ in $(seq 1 $((START_SECS * 10))); do
        kill -0 "$pid" 2>/dev/null || return 1
        nc -z -w 1 127.0.0.1 "$port" 2>/dev/null && return 0
        sleep 0.1
    done
    return 1
}

# forget_pid PID: PID was reaped; cleanup must not signal that number again.
forget_pid() {
    local keep=() p
    for p in "${PIDS[@]}"; do
        [[ "$p" == "$1" ]] || keep+=("$p")
    done
    PIDS=("${keep[@]}")
}

# wait_exit PID SECS: waits up to SECS for PID (a child of this shell: not to be called in a
# subshell) to exit; sets EXIT_RC to its exit status, or to "timeout" (still running).
wait_exit() {
    local pid=$1 secs=$2 _
    for _ in $(seq 1 $((secs * 10))); do
        if ! kill -0 "$pid" 2>/dev/null; then
            EXIT_RC=0
            wait "$pid" || EXIT_RC=$?
            forget_pid "$pid"
            return 0
        fi
        sleep 0.1
    done
    EXIT_RC=timeout
}

# start_server NAME DATA-DIR [server flags...]: starts the release server on a free loopback
# port; sets SPID[NAME], SPORT[NAME]; its stderr goes to $CI_TMP/NAME.log.
start_server() {
    local name=$1 dir=$2 try port pid log
    shift 2
    log=$CI_TMP/$name.log
    for try in 1 2 3 4 5; do
        port=$(free_port)
        "$SERVER_BIN" --port "$port" --dir "$dir" "$@" >>"$log" 2>&1 &
        pid=$!
        PIDS+=("$pid")
        if wait_listening "$port" "$pid"; then
            SPID[$name]=$pid
            # shellcheck disable=SC2034 # read by the scripts that source this file
            SPORT[$name]=$port
            say "server $name: port $port, pid $pid, dir ${dir#"$ROOT"/} ${*:+(flags: $*)}"
            return 0
        fi
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
        forget_pid "$pid"
        grep -q 'in use' "$log" && continue
        tail -n 20 "$log" >&2
        fail "server $name did not start listening within ${START_SECS}s"
    done
    fail "server $name: no free port after $try tries"
}

# stop_server NAME: SIGTERM, then the exit status must be 0 within STOP_SECS.
stop_server() {
    local name=$1
    kill -TERM "${SPID[$name]}"
    wait_exit "${SPID[$name]}" "$STOP_SECS"
    [[ "$EXIT_RC" == 0 ]] ||
        fail "server $name after SIGTERM: exit status $EXIT_RC (want 0 within ${STOP_SECS}s)"
    unset "SPID[$name]"
}

# rcli PORT ARGS...: redis-cli, bounded in time.
rcli() {
    local port=$1
    shift
    timeout "$CMD_SECS" redis-cli -p "$port" "$@"
}

# Stops whatever is still running (TERM, then KILL), shows the server logs when the script
# failed, and removes the temp dir (kept with KEEP_TMP=1).
cleanup() {
    local rc=$? pid f
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        wait_exit "$pid" 5
        if [[ "$EXIT_RC" == timeout ]]; then
            kill -KILL "$pid" 2>/dev/null || true
            wait "$pid" 2>/dev/null || true
        fi
    done
    PIDS=()
    if [[ $rc != 0 ]]; then
        for f in "$CI_TMP"/*.log; do
            [[ -f "$f" ]] || continue
            printf '\n--- last lines of %s\n' "${f#"$ROOT"/}" >&2
            tail -n 15 "$f" >&2
        done
        printf '\n%s FAILED (exit %s)\n' "$(basename "$0")" "$rc" >&2
    fi
    if [[ "${KEEP_TMP:-0}" == 1 ]]; then
        echo "kept $CI_TMP" >&2
    else
        rm -rf "$CI_TMP"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

[[ -x "$SERVER_BIN" ]] || fail "$SERVER_BIN is missing: cargo build --release --examples"
