#!/usr/bin/env bash
# Base images for a Docker engine with no registry to pull from: made here, under the names the
# project's Dockerfile and docs/compose.yaml use, when the engine does not have them yet.
#   debian:bookworm-slim  a Debian bookworm root from debootstrap (minbase), trimmed as Debian's
#                         slim image is (no docs, man pages, locales, apt lists or caches)
#   rust:1-slim-bookworm  that root plus gcc, libc6-dev and ca-certificates, and this machine's
#                         Rust toolchain (cargo, rustc, the std library) in /usr/local/rust
#   redis:7.0-bookworm    that root plus Debian's redis-server, redis-sentinel and redis-tools
#                         (7.0), for the compose file's Sentinels
# An engine that can pull uses the registry's images instead: nothing here is toykv-specific.
# Needs: root, docker, debootstrap (installed when missing), Debian's mirror. The roots are made
# under target/images (a real file system) and removed afterwards.
# FORCE=1 makes the images again even when they exist.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
WORK=$ROOT/target/images
started=$SECONDS

say() { printf '  %s\n' "$*"; }
fail() {
    printf '  FAIL %s\n' "$*" >&2
    exit 1
}
have() { docker image inspect "$1" >/dev/null 2>&1; }

want=()
for img in debian:bookworm-slim rust:1-slim-bookworm redis:7.0-bookworm; do
    if [[ "${FORCE:-0}" == 1 ]] || ! have "$img"; then want+=("$img"); fi
done
if ((${#want[@]} == 0)); then
    say "the engine has debian:bookworm-slim, rust:1-slim-bookworm and redis:7.0-bookworm"
    exit 0
fi
say "to make: ${want[*]}"
[[ $(id -u) == 0 ]] || fail "debootstrap and chroot need root"
if ! command -v debootstrap >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    timeout 300 apt-get update -qq
    timeout 300 apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
fi

cleanup() {
    local d
    for d in "$WORK"/*/proc; do
        mountpoint -q "$d" 2>/dev/null && umount "$d"
    done
    rm -rf "$WORK"
}
trap cleanup EXIT
cleanup
mkdir -p "$WORK"

base=$WORK/base
say "debootstrap --variant=minbase bookworm ($MIRROR)"
timeout 600 debootstrap --variant=minbase bookworm "$base" "$MIRROR" >"$WORK.debootstrap.log" 2>&1 ||
    {
        tail -20 "$WORK.debootstrap.log" >&2
        fail "debootstrap failed"
    }
rm -f "$WORK.debootstrap.log"
cat >"$base/etc/apt/sources.list" <<EOF
deb $MIRROR bookworm main
deb $MIRROR bookworm-updates main
deb http://deb.debian.org/debian-security bookworm-security main
EOF
# As Debian's slim images: packages installed later leave out docs, man pages and locales, and
# apt keeps no downloaded packages.
cat >"$base/etc/dpkg/dpkg.cfg.d/docker-slim" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
EOF
echo 'APT::Keep-Downloaded-Packages "false";' >"$base/etc/apt/apt.conf.d/docker-clean"
echo 'APT::Install-Recommends "false";' >"$base/etc/apt/apt.conf.d/docker-no-recommends"

# trim ROOT: what the slim image leaves out.
trim() {
    local r=$1
    find "$r/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
    find "$r/usr/share/doc" -mindepth 1 -type d -empty -delete
    rm -rf "$r"/usr/share/man/* "$r"/usr/share/info/* "$r"/var/lib/apt/lists/* \
        "$r"/var/cache/apt/*.bin "$r"/var/cache/apt/archives/*.deb "$r"/var/log/*.log \
        "$r"/var/log/apt/*
    find "$r/usr/share/locale" -mindepth 1 -maxdepth 1 -not -name locale.alias -exec rm -rf {} +
}
# add ROOT PACKAGES...: apt-get install in a chroot of ROOT (the host's network).
add() {
    local r=$1
    shift
    cp /etc/resolv.conf "$r/etc/resolv.conf"
    # As in Debian's images: packages do not start services in a chroot or container.
    printf '#!/bin/sh\nexit 101\n' >"$r/usr/sbin/policy-rc.d"
    chmod 755 "$r/usr/sbin/policy-rc.d"
    mount -t proc proc "$r/proc"
    if ! { DEBIAN_FRONTEND=noninteractive timeout 600 chroot "$r" apt-get update -qq &&
        DEBIAN_FRONTEND=noninteractive timeout 900 chroot "$r" apt-get install -y -qq "$@"; } \
        >"$WORK/apt.log" 2>&1; then
        tail -20 "$WORK/apt.log" >&2
        umount "$r/proc"
        fail "apt-get install $* in a chroot failed"
    fi
    umount "$r/proc"
    : >"$r/etc/resolv.conf"
}
# import ROOT NAME [--change ...]: ROOT as image NAME.
import() {
    local r=$1 name=$2
    shift 2
    tar --numeric-owner -C "$r" -c . | docker import "$@" - "$name" >/dev/null
    say "$name: $(docker image inspect -f '{{.Size}}' "$name" | awk '{ printf "%.1f MB", $1 / 1e6 }')"
}

trim "$base"
: >"$base/etc/resolv.conf"
base_env=(--change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin')
for img in "${want[@]}"; do
    case $img in
    debian:bookworm-slim)
        import "$base" "$img" "${base_env[@]}" --change 'CMD ["bash"]'
        ;;
    rust:1-slim-bookworm)
        r=$WORK/rust
        cp -a "$base" "$r"
        add "$r" gcc libc6-dev ca-certificates
        trim "$r"
        sysroot=$(rustc --print sysroot)
        mkdir -p "$r/usr/local/rust" "$r/usr/local/cargo"
        # The toolchain without its docs (share/): bin (cargo, rustc), lib (the compiler's
        # libraries and the std library).
        cp -a "$sysroot/bin" "$sysroot/lib" "$r/usr/local/rust/"
        rm -f "$r"/usr/local/rust/bin/{cargo-clippy,clippy-driver,rustfmt,cargo-fmt,rust-gdb,rust-gdbgui,rust-lldb}
        say "rust toolchain: $(rustc --version) from $sysroot"
        import "$r" "$img" --change 'CMD ["bash"]' \
            --change 'ENV PATH=/usr/local/rust/bin:/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
            --change 'ENV CARGO_HOME=/usr/local/cargo'
        rm -rf "$r"
        ;;
    redis:7.0-bookworm)
        r=$WORK/redis
        cp -a "$base" "$r"
        add "$r" redis-server redis-sentinel redis-tools
        trim "$r"
        # The packages' services are not started in a container; their dirs belong to redis.
        import "$r" "$img" "${base_env[@]}" --change 'CMD ["redis-server"]'
        rm -rf "$r"
        ;;
    esac
done
say "base images made in $((SECONDS - started))s"
