# shellcheck shell=bash
# What every CI script reports with: say, ok (counts CHECKS), fail, expect_eq, expect_match,
# need, and wait_for. Sourced (by lib.sh, container.sh, cluster.sh), not run.

CHECKS=0

say() { printf '  %s\n' "$*"; }
ok() {
    CHECKS=$((CHECKS + 1))
    printf '  ok  %s\n' "$*"
}
fail() {
    printf '  FAIL %s\n' "$*" >&2
    exit 1
}

# expect_eq WHAT EXPECTED ACTUAL
expect_eq() {
    if [[ "$2" == "$3" ]]; then
        ok "$1"
    else
        fail "$1: expected $(printf '%q' "$2"), got $(printf '%q' "$3")"
    fi
}

# expect_match WHAT EXTENDED-REGEX ACTUAL
expect_match() {
    if grep -Eq -- "$2" <<<"$3"; then
        ok "$1"
    else
        fail "$1: expected to match /$2/, got $(printf '%q' "$3")"
    fi
}

# need COMMAND...: each must be installed.
need() {
    local c
    for c in "$@"; do
        command -v "$c" >/dev/null || fail "'$c' is not installed (.ci/run installs it)"
    done
}

# wait_for SECS WHAT CHECK [ARGS...]: CHECK every 0.2 s until it succeeds; after SECS fails with
# WHAT and the state CHECK last described in $STATE.
STATE=
wait_for() {
    local secs=$1 what=$2 t0=$SECONDS
    shift 2
    STATE=
    until "$@"; do
        ((SECONDS - t0 < secs)) || fail "$what: not within ${secs}s (last seen: ${STATE:-nothing})"
        sleep 0.2
    done
}
