"""redis-py against a running toykv server: run by .ci/interop.sh.

Usage: interop.py PORT AUTH_PORT PASSWORD
  PORT: a bytes-mode server without a password (empty at start);
  AUTH_PORT: a bytes-mode server started with --requirepass PASSWORD.
Prints one line per check; exits non-zero at the first mismatch.
"""

import os
import sys

import redis
from redis.backoff import NoBackoff
from redis.connection import DEFAULT_RESP_VERSION
from redis.retry import Retry

# Refused logins: fail at once (redis-py retries failed connections with backoff by default).
NO_RETRY = Retry(NoBackoff(), 0)

checks = 0


def ok(what):
    global checks
    checks += 1
    print(f"  ok  redis-py: {what}", flush=True)


def expect(what, want, got):
    if want != got:
        print(f"  FAIL redis-py: {what}: expected {want!r}, got {got!r}", file=sys.stderr)
        sys.exit(1)
    ok(what)


def expect_error(what, needle, fn, kind=redis.ResponseError):
    try:
        fn()
    except kind as e:
        expect(f"{what} ({kind.__name__})", True, needle in str(e))
        return
    print(f"  FAIL redis-py: {what}: no {kind.__name__} raised", file=sys.stderr)
    sys.exit(1)


def proto_of(r):
    """The protocol a client's connections really speak (HELLO's reply says it)."""
    conn = r.connection_pool.get_connection()
    try:
        meta = conn.handshake_metadata or {}
        return meta.get(b"proto", meta.get("proto", 2))
    finally:
        r.connection_pool.release(conn)


def main():
    port, auth_port, password = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    print(f"  redis-py {redis.__version__}, default protocol {DEFAULT_RESP_VERSION}")

    default = redis.Redis(port=port, socket_timeout=10)
    r3 = redis.Redis(port=port, protocol=3, socket_timeout=10)
    r2 = redis.Redis(port=port, protocol=2, socket_timeout=10)
    text = redis.Redis(port=port, protocol=3, decode_responses=True, socket_timeout=10)

    for name, r in [("default", default), ("protocol=3", r3), ("protocol=2", r2)]:
        expect(f"{name}: ping", True, r.ping())
    expect("protocol=3 negotiated with HELLO 3", 3, proto_of(r3))
    expect("default client negotiates its default protocol", DEFAULT_RESP_VERSION, proto_of(default))
    expect("protocol=2 sends no HELLO", 2, proto_of(r2))

    # HELLO by hand: a map in RESP3.
    hello = r3.execute_command("HELLO", 3)
    expect("HELLO 3 reply is a map with proto 3", 3, hello.get(b"proto", hello.get("proto")))
    expect("HELLO 3 names the server", b"toykv", hello.get(b"server"))

    # Every byte value, byte-exact, through each protocol.
    all_bytes = bytes(range(256))
    for name, r in [("default", default), ("protocol=3", r3), ("protocol=2", r2)]:
        expect(f"{name}: set a 256-byte value holding every byte", True, r.set("all", all_bytes))
        expect(f"{name}: get it back byte-exact", all_bytes, r.get("all"))
    singles = {f"b{b:03d}".encode(): bytes([b]) for b in range(256)}
    for k, v in singles.items():
        r3.set(k, v)
    expect("256 one-byte values, each byte value, via mget", list(singles.values()), r3.mget(list(singles)))

    # Binary keys (bytes mode: up to 8 arbitrary bytes; a trailing zero is padding).
    bkeys = [b"\x00\x01\xfe\xff", b"\r\n\t ", bytes([0x80] * 8), b"\xff"]
    for i, k in enumerate(bkeys):
        r2.set(k, f"bk{i}")
    expect("binary keys read back", [f"bk{i}".encode() for i in range(len(bkeys))], r3.mget(bkeys))

    # Values of every length 0..256 with random bytes; read through the other protocol.
    lengths = {f"len{n:03d}".encode(): os.urandom(n) for n in range(257)}
    pipe = r3.pipeline(transaction=False)
    for k, v in lengths.items():
        pipe.set(k, v)
    expect("pipeline of 257 sets (lengths 0..256)", [True] * 257, pipe.execute())
    expect("mget of lengths 0..256 via RESP2", list(lengths.values()), r2.mget(list(lengths)))
    pipe = r2.pipeline(transaction=False)
    for k in lengths:
        pipe.get(k)
    expect("pipeline of 257 gets via RESP2", list(lengths.values()), pipe.execute())
    expect("empty value is b'' (not None)", b"", r3.get(b"len000"))

    # exists / delete / missing keys.
    expect("get of a missing key is None", None, r3.get("nokey"))
    expect("exists counts", 2, r3.exists("all", "b000", "nokey"))
    expect("mget with a missing key", [all_bytes, None], r3.mget("all", "nokey"))
    expect("delete counts only existing keys", 2, r3.delete("b000", "b001", "nokey"))
    expect("deleted keys are gone", 0, r3.exists("b000", "b001"))

    # decode_responses with RESP3.
    text.set("txt", "héllo wörld")
    expect("decode_responses round trip (UTF-8)", "héllo wörld", text.get("txt"))
    expect("echo", "hi there", text.echo("hi there"))

    # Keys that toykv refuses: server errors surface as ResponseError.
    expect_error("9-byte key refused", "at most 8 bytes", lambda: r3.set("123456789", "x"))
    expect_error("257-byte value refused", "at most 256 bytes", lambda: r3.set("big", b"x" * 257))
    expect_error("SET options refused", "not supported", lambda: r3.set("k", "v", ex=10))

    # scan_iter sees exactly the keys written.
    want = set(singles) - {b"b000", b"b001"}
    want |= set(lengths) | {b"all", b"txt"} | {k.rstrip(b"\x00") for k in bkeys}
    expect("dbsize", len(want), r3.dbsize())
    for name, r in [("protocol=3", r3), ("protocol=2", r2)]:
        expect(f"{name}: scan_iter lists every key once", sorted(want), sorted(r.scan_iter(count=50)))
        got = sorted(r.scan_iter(match="len1*"))
        expect(f"{name}: scan_iter(match='len1*')", sorted(k for k in want if k.startswith(b"len1")), got)

    # RANGE (toykv's ordered range scan): key, value, key, value… in key order.
    got = r3.execute_command("RANGE", "len010", "len013")
    expect("RANGE len010 len013", [x for n in range(10, 14) for x in (b"len%03d" % n, lengths[b"len%03d" % n])], got)

    # INFO parsed by redis-py.
    info = r3.info()
    expect("info has redis_version", True, "redis_version" in info)
    expect("info keyspace db0 keys", len(want), r2.info("keyspace")["db0"]["keys"])
    expect("info commandstats lists set", True, "cmdstat_set" in r3.info("commandstats"))
    expect("config get port", {"port": str(port)}, text.config_get("port"))
    expect("client id is an int", True, isinstance(r3.client_id(), int))
    expect("client setname/getname", "ci-py", (text.client_setname("ci-py"), text.client_getname())[1])

    # A server with a password: AUTH (RESP2) or HELLO 3 AUTH (RESP3). redis-py maps WRONGPASS
    # and NOAUTH to AuthenticationError and drops the error code from the message.
    for proto in (2, 3):
        good = redis.Redis(port=auth_port, password=password, protocol=proto, socket_timeout=10)
        expect(f"password, protocol={proto}: set", True, good.set("p", "v"))
        expect(f"password, protocol={proto}: get", b"v", good.get("p"))
        bad = redis.Redis(
            port=auth_port, password=password + "x", protocol=proto, socket_timeout=10, retry=NO_RETRY
        )
        expect_error(f"wrong password, protocol={proto}", "invalid username-password pair", bad.ping, redis.AuthenticationError)
    none2 = redis.Redis(port=auth_port, protocol=2, socket_timeout=10, retry=NO_RETRY)
    expect_error("no password, protocol=2: NOAUTH", "Authentication required", none2.ping, redis.AuthenticationError)
    none3 = redis.Redis(port=auth_port, protocol=3, socket_timeout=10, retry=NO_RETRY)
    expect_error("no password, protocol=3: HELLO refused", "HELLO must be called", none3.ping, redis.AuthenticationError)

    print(f"  redis-py: {checks} checks passed")


if __name__ == "__main__":
    main()
