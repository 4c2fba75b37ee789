"""redis-py side of .ci/sentinel.sh: a writer that goes through Sentinel, and a checker.

  sentinel.py write  --sentinels P1,P2,P3 --old-port PM --out FILE --ready FILE --failover FILE
  sentinel.py verify --port P --acked FILE --label NAME [--wait SECS]

write: finds the master of "mymaster" through the three sentinels (redis.sentinel.Sentinel,
master_for) and writes unique keys k0000000, k0000001, ... (8 bytes: toykv's bytes key mode)
with binary values of 0..256 bytes, in small batches: BATCH SETs then WAIT 1 1000, sent on one
connection. A key counts as acknowledged only if its SET replied OK and the WAIT after it
replied >= 1 on the same connection. Any connection error, timeout or READONLY drops the
connection; the next batch asks the sentinels for the master again. It creates the --ready file
once READY_ACKS writes are acknowledged, and stops AFTER_SECS seconds after the --failover file
appears (created by sentinel.sh once all sentinels name a new master), provided at least
MIN_AFTER writes were acknowledged by the new master by then. It writes every acknowledged
key -> (hex value, port it was written to) and every key sent without acknowledgement to --out.

verify: every acknowledged key is on the server at --port, byte for byte (polled until true or
--wait seconds), and every key the server holds is one the writer sent, with the value it sent.
Only the standard library and redis-py.
"""

import argparse
import hashlib
import json
import os
import sys
import time

import redis
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError, ResponseError, TimeoutError
from redis.retry import Retry
from redis.sentinel import Sentinel

BATCH = 5  # SETs per WAIT
RATE = 1500  # at most this many keys a second (keeps the record small)
READY_ACKS = 300
MIN_AFTER = 50


def ok(msg):
    print(f"  ok  {msg}", flush=True)


def die(msg):
    print(f"  FAIL {msg}", flush=True)
    sys.exit(1)


def key(i):
    return b"k%07d" % i  # 8 bytes


def value(salt, i):
    """0..256 bytes (every length in each run of 257 keys), any byte value (CR, LF, NUL...)."""
    n = (i * 101) % 257
    return hashlib.shake_256(salt + i.to_bytes(8, "big")).digest(n)


def write(a):
    ports = [int(p) for p in a.sentinels.split(",")]
    salt = os.urandom(8)
    # No retries inside redis-py: this loop is the retry, so what was acknowledged is explicit.
    sentinel = Sentinel(
        [("127.0.0.1", p) for p in ports],
        sentinel_kwargs={"socket_timeout": 1, "socket_connect_timeout": 1},
    )
    master = sentinel.master_for(
        "mymaster",
        socket_timeout=3,  # > WAIT's 1000 ms
        socket_connect_timeout=1,
        password=a.password or None,
        retry=Retry(NoBackoff(), 0),
    )
    pool = master.connection_pool

    acked = {}  # key -> (hex value, port)
    unacked = {}  # key -> hex value: sent, not acknowledged (may or may not be stored)
    errors = {"connect": 0, "io": 0, "readonly": 0, "wait0": 0, "set_err": 0}
    last_err = ""
    per_port = {}
    t_start = time.monotonic()
    t_fo = None  # when the failover file appeared
    t_last_old = t_first_new = None  # wall clock: last ack on the old master, first on another
    after = 0
    i = 0
    batch = None
    ready = False

    while True:
        now = time.monotonic()
        if now - t_start > a.max_secs:
            dump(a.out, salt, acked, unacked)
            die(f"writer: still running after {a.max_secs}s (failover file seen: {t_fo is not None}, "
                f"acknowledged on the new master: {after}; last error: {last_err or 'none'})")
        if t_fo is None and os.path.exists(a.failover):
            t_fo = now
        if t_fo is not None and now - t_fo >= a.after_secs:
            if after >= MIN_AFTER:
                break
            if now - t_fo >= a.after_secs + 30:
                dump(a.out, salt, acked, unacked)
                die(f"writer: only {after} writes acknowledged by a new master within "
                    f"{a.after_secs + 30}s of the failover (want >= {MIN_AFTER}: WAIT 1 needs a "
                    f"replica of the new master; last error: {last_err or 'none'})")
        if not ready and len(acked) >= READY_ACKS:
            open(a.ready, "w").close()
            ready = True

        if batch is None:
            batch = [(key(j), value(salt, j)) for j in range(i, i + BATCH)]
            i += BATCH
        t_batch = time.monotonic()
        try:
            conn = pool.get_connection()  # asks the sentinels for the master when it connects
        except (ConnectionError, TimeoutError) as e:
            errors["connect"] += 1
            last_err = f"connect: {e}"
            time.sleep(0.05)
            continue  # nothing sent: the same batch next time
        port = int(conn.port)
        replies = None
        try:
            conn.send_packed_command(
                conn.pack_commands([("SET", k, v) for k, v in batch] + [("WAIT", 1, 1000)])
            )
            got = []
            for _ in range(len(batch) + 1):
                try:
                    got.append(conn.read_response())
                except ResponseError as e:
                    got.append(e)
            replies = got  # only when every reply was read
        except (ConnectionError, TimeoutError) as e:
            # A READONLY reply arrives here too: redis-py's Sentinel connection turns it into
            # "The previous master is now a slave" and disconnects.
            if "now a slave" in str(e):
                errors["readonly"] += 1
            else:
                errors["io"] += 1
            last_err = f"port {port}: {e}"
            conn.disconnect()
        finally:
            pool.release(conn)

        if replies is None:
            for k, v in batch:
                unacked[k] = v
            time.sleep(0.05)
        else:
            waited = replies[-1]
            good = isinstance(waited, int) and waited >= 1
            if not good:
                errors["wait0"] += 1
                last_err = f"port {port}: WAIT 1 1000 replied {waited!r}"
            for (k, v), r in zip(batch, replies):
                if r in (b"OK", "OK") and good:
                    acked[k] = (v, port)
                    per_port[port] = per_port.get(port, 0) + 1
                else:
                    unacked[k] = v
                    if isinstance(r, Exception):
                        errors["set_err"] += 1
                        last_err = f"port {port}: SET: {r}"
            if good:
                if port == a.old_port:
                    t_last_old = time.time()
                else:
                    if t_first_new is None:
                        t_first_new = time.time()
                    if t_fo is not None:
                        after += 1
        batch = None
        pause = BATCH / RATE - (time.monotonic() - t_batch)
        if pause > 0:
            time.sleep(pause)

    pool.disconnect()
    dump(a.out, salt, acked, unacked)
    old = per_port.get(a.old_port, 0)
    new = {p: n for p, n in per_port.items() if p != a.old_port}
    ok(f"writer: {len(acked)} writes acknowledged (SET OK + WAIT >= 1): {old} by the old master "
       f"(port {a.old_port}), {sum(new.values())} by the new one "
       f"({', '.join(f'port {p}: {n}' for p, n in sorted(new.items())) or 'none'}); "
       f"{len(unacked)} sent without acknowledgement")
    print(f"      writer errors: {errors['connect']} connects refused or no master, "
          f"{errors['io']} connections lost or timed out, {errors['readonly']} READONLY, "
          f"{errors['wait0']} WAITs reaching no replica, {errors['set_err']} SET errors", flush=True)
    if t_last_old is not None and t_first_new is not None:
        print(f"      writes unavailable for {t_first_new - t_last_old:.1f}s "
              f"(last acknowledged write on the old master -> first on the new)", flush=True)
    if len(new) != 1:
        die(f"writer: acknowledged writes on {len(new)} servers besides the old master (want 1)")
    if old == 0:
        die("writer: nothing acknowledged by the old master")


def dump(path, salt, acked, unacked):
    with open(path, "w") as f:
        json.dump(
            {
                "salt": salt.hex(),
                "acked": {k.decode(): [v.hex(), p] for k, (v, p) in acked.items()},
                "unacked": {k.decode(): v.hex() for k, v in unacked.items()},
            },
            f,
        )


def verify(a):
    with open(a.acked) as f:
        rec = json.load(f)
    acked = {k.encode(): bytes.fromhex(v) for k, (v, _) in rec["acked"].items()}
    unacked = {k.encode(): bytes.fromhex(v) for k, v in rec["unacked"].items()}
    r = redis.Redis(host="127.0.0.1", port=a.port, password=a.password or None, socket_timeout=10)
    keys = sorted(acked)
    t0 = time.monotonic()
    while True:
        missing, differ = [], []
        for s in range(0, len(keys), 500):
            chunk = keys[s : s + 500]
            for k, got in zip(chunk, r.mget(chunk)):
                if got is None:
                    missing.append(k)
                elif got != acked[k]:
                    differ.append((k, got))
        if not missing and not differ:
            break
        if time.monotonic() - t0 > a.wait:
            for k in missing[:5]:
                print(f"      missing: {k.decode()} (acknowledged by port {rec['acked'][k.decode()][1]})")
            for k, got in differ[:5]:
                print(f"      differs: {k.decode()}: want {acked[k].hex() or '(empty)'}, got {got.hex() or '(empty)'}")
            die(f"{a.label} (port {a.port}): of {len(keys)} acknowledged keys, {len(missing)} missing "
                f"and {len(differ)} with other bytes after {a.wait}s (lost writes)")
        time.sleep(0.5)
    ok(f"{a.label} (port {a.port}): all {len(keys)} acknowledged keys, byte-exact, lost 0 "
       f"(after {time.monotonic() - t0:.1f}s)")

    # Nothing else: every key there was sent by the writer, with the value it sent.
    held = list(r.scan_iter(count=1000))
    extra = [k for k in held if k not in acked and k not in unacked]
    if extra:
        die(f"{a.label}: {len(extra)} keys the writer never sent, e.g. {extra[:5]}")
    maybe = [k for k in held if k in unacked]
    bad = [k for k, got in zip(maybe, r.mget(maybe) if maybe else []) if got != unacked[k]]
    if bad:
        die(f"{a.label}: {len(bad)} unacknowledged keys hold a value that was never sent, e.g. {bad[:5]}")
    dbsize = r.dbsize()
    if dbsize != len(held):
        die(f"{a.label}: DBSIZE {dbsize}, but SCAN listed {len(held)} keys")
    ok(f"{a.label}: holds {len(held)} keys (SCAN = DBSIZE), all sent by the writer with the bytes it "
       f"sent ({len(maybe)} of the {len(unacked)} unacknowledged ones)")


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("write")
    w.add_argument("--sentinels", required=True)
    w.add_argument("--old-port", type=int, required=True)
    w.add_argument("--out", required=True)
    w.add_argument("--ready", required=True)
    w.add_argument("--failover", required=True)
    w.add_argument("--after-secs", type=float, default=5)
    w.add_argument("--max-secs", type=float, default=120)
    w.add_argument("--password", default="")
    v = sub.add_parser("verify")
    v.add_argument("--port", type=int, required=True)
    v.add_argument("--acked", required=True)
    v.add_argument("--label", required=True)
    v.add_argument("--wait", type=float, default=0)
    v.add_argument("--password", default="")
    a = ap.parse_args()
    write(a) if a.cmd == "write" else verify(a)


if __name__ == "__main__":
    main()
