# toykv server image: a Rust build stage, then a slim Debian runtime with two binaries,
#   /usr/local/bin/toykv-server  (examples/server.rs: the Redis-protocol server)
#   /usr/local/bin/toykv-client  (examples/client.rs: used by the HEALTHCHECK: `client HOST:PORT ping`)
#
#   docker build -t toykv .
#   docker run -d --name toykv -p 8888:8888 -v toykv-data:/data -e REQUIREPASS=change-me toykv
#
# REQUIREPASS must be given: the server listens on 0.0.0.0 in the container, and without a
# password it refuses to start (protected mode; PROTECTED_MODE=no turns that off). Every flag has
# an environment variable (SERVER_PORT, BIND, DB_DIR, CONFIG_FILE, REQUIREPASS, PROTECTED_MODE, KEY_MODE,
# MAX_CLIENTS, MAX_REQUEST, IDLE_TIMEOUT, DIRECT_IO, RUST_LOG); extra arguments after the image
# name are passed to the server (e.g. --key-mode numeric). docs/SCALE-OUT.md has more.
# CI (.ci/container.sh) builds this file with `docker build` and runs the image; with no
# registry, .ci/images.sh makes the two base images below locally first.

FROM rust:1-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --example server --example client

FROM debian:bookworm-slim
RUN groupadd --system --gid 10001 toykv \
    && useradd --system --no-log-init --uid 10001 --gid 10001 \
        --home-dir /nonexistent --no-create-home --shell /usr/sbin/nologin toykv \
    && mkdir /data \
    && chown 10001:10001 /data
COPY --from=build /src/target/release/examples/server /usr/local/bin/toykv-server
COPY --from=build /src/target/release/examples/client /usr/local/bin/toykv-client
# The store is a directory inside the volume, not the volume itself: a replica's full sync
# writes the new copy beside it (/data/db.sync) and swaps the two with one rename, which needs
# a writable parent on the same file system. The config file (roles set by Sentinel) is kept there too.
ENV DB_DIR=/data/db CONFIG_FILE=/data/toykv.conf SERVER_PORT=8888 BIND=0.0.0.0
USER 10001:10001
VOLUME /data
EXPOSE 8888
# The client reads the password from REQUIREPASS, which the container has from `docker run -e`;
# sh expands SERVER_PORT, so the check follows `-e SERVER_PORT=...`. Any failure is status 1.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["/bin/sh", "-c", "toykv-client \"127.0.0.1:${SERVER_PORT}\" ping >/dev/null || exit 1"]
# Exec form: the server is PID 1 and gets docker stop's SIGTERM (graceful: sync, exit 0).
ENTRYPOINT ["/usr/local/bin/toykv-server"]
