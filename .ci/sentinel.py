"""redis-py side of .ci/sentinel.sh and .ci/cluster.sh: a writer through Sentinel, a checker.

  sentinel.py write  --sentinels ADDR,ADDR,ADDR --out FILE --ready FILE --done FILE
                     [--old ADDR] [--cut FILE] [--prefix C]
  sentinel.py verify --addr ADDR --acked FILE [--acked FILE...] --label NAME [--wait SECS]

An ADDR is HOST:PORT, or a PORT on 127.0.0.1.

write: finds the master of "mymaster" through the three sentinels (redis.sentinel.Sentinel,
master_for) and writes unique keys C0000000, C0000001, ... (8 bytes: toykv's bytes key mode;
C is --prefix, default k) with binary values of 0..256 bytes, in small batches: BATCH SETs then
WAIT 1 1000, sent on one connection. A key counts as acknowledged only if its SET replied OK and
the WAIT after it replied >= 1 on the same connection. Any connection error, timeout, READONLY
or WAIT reaching no replica drops the connection; the next batch asks the sentinels for the
master again. It creates the --ready file once READY_ACKS writes are acknowledged, and stops
AFTER_SECS seconds after the --done file appears (created by the script once the event it
tests is over), provided at least MIN_AFTER writes were acknowledged since (by a server other
than --old, when given). With --old (the master before a failover): it must have acknowledged
writes, and exactly one other server after it. With --cut FILE (the old master is cut off from
the others once FILE exists): a batch sent to the old master after that must not be
acknowledged (its WAIT 1 must say 0), and at least one such batch must have been accepted by
it (SET OK) and refused by WAIT, so the case was exercised. It writes every acknowledged key ->
(hex value, address it was written to) and every key sent without acknowledgement to --out.

verify: every key acknowledged in the --acked files is on the server at --addr, byte for byte
(polled until true or --wait seconds), and every key the server holds is one a writer sent,
with the value it sent. Only the standard library and redis-py.
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


PREFIX = b"k"


def key(i):
    return PREFIX + b"%07d" % i  # 8 bytes


def value(salt, i):
    """0..256 bytes (every length in each run of 257 keys), any byte value (CR, LF, NUL...)."""
    n = (i * 101) % 257
    return hashlib.shake_256(salt + i.to_bytes(8, "big")).digest(n)


def addr(s):
    """HOST:PORT, or PORT on 127.0.0.1."""
    host, _, port = s.rpartition(":")
    return (host or "127.0.0.1", int(port))


def name(host, port):
    return f"{host}:{port}"


def write(a):
    sentinels = [addr(s) for s in a.sentinels.split(",")]
    old = name(*addr(a.old)) if a.old else None
    salt = os.urandom(8)
    # No retries inside redis-py: this loop is the retry, so what was acknowledged is explicit.
    sentinel = Sentinel(
        sentinels,
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
    stale = 0  # batches the old master took (SET OK) after the cut, refused by WAIT
    last_err = ""
    per_addr = {}
    t_start = time.monotonic()
    t_fo = None  # when the --done file appeared
    t_last_old = t_first_new = None  # wall clock: last ack on the old master, first on another
    after = 0
    i = 0
    batch = None
    ready = False

    while True:
        now = time.monotonic()
        if now - t_start > a.max_secs:
            dump(a.out, salt, acked, unacked)
            die(f"writer: still running after {a.max_secs}s (done file seen: {t_fo is not None}, "
                f"acknowledged since: {after}; last error: {last_err or 'none'})")
        if t_fo is None and os.path.exists(a.done):
            t_fo = now
        if t_fo is not None and now - t_fo >= a.after_secs:
            if after >= MIN_AFTER:
                break
            if now - t_fo >= a.after_secs + 30:
                dump(a.out, salt, acked, unacked)
                die(f"writer: only {after} writes acknowledged within {a.after_secs + 30}s of "
                    f"the done file{' by a new master' if old else ''} (want >= {MIN_AFTER}: "
                    f"WAIT 1 needs a replica; last error: {last_err or 'none'})")
        if not ready and len(acked) >= READY_ACKS:
            open(a.ready, "w").close()
            ready = True

        if batch is None:
            batch = [(key(j), value(salt, j)) for j in range(i, i + BATCH)]
            i += BATCH
        t_batch = time.monotonic()
        after_cut = a.cut is not None and os.path.exists(a.cut)
        try:
            conn = pool.get_connection()  # asks the sentinels for the master when it connects
        except (ConnectionError, TimeoutError) as e:
            errors["connect"] += 1
            last_err = f"connect: {e}"
            time.sleep(0.05)
            continue  # nothing sent: the same batch next time
        at = name(conn.host, int(conn.port))
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
            last_err = f"{at}: {e}"
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
            if after_cut and at == old:
                if good:
                    dump(a.out, salt, acked, unacked)
                    die(f"writer: the old master {at}, cut off from its replicas, answered WAIT 1 "
                        f"with {waited!r} for a batch sent after the cut")
                if all(r in (b"OK", "OK") for r in replies[:-1]):
                    stale += 1
            if not good:
                errors["wait0"] += 1
                last_err = f"{at}: WAIT 1 1000 replied {waited!r}"
                # Maybe a master no replica reaches any more: ask the sentinels again.
                conn.disconnect()
            for (k, v), r in zip(batch, replies):
                if r in (b"OK", "OK") and good:
                    acked[k] = (v, at)
                    per_addr[at] = per_addr.get(at, 0) + 1
                else:
                    unacked[k] = v
                    if isinstance(r, Exception):
                        errors["set_err"] += 1
                        last_err = f"{at}: SET: {r}"
            if good:
                if at == old:
                    t_last_old = time.time()
                else:
                    if t_first_new is None:
                        t_first_new = time.time()
                if t_fo is not None and at != old:
                    after += 1
        batch = None
        pause = BATCH / RATE - (time.monotonic() - t_batch)
        if pause > 0:
            time.sleep(pause)

    pool.disconnect()
    dump(a.out, salt, acked, unacked)
    by = ", ".join(f"{p}: {n}" for p, n in sorted(per_addr.items())) or "none"
    ok(f"writer: {len(acked)} writes acknowledged (SET OK + WAIT >= 1) ({by}); "
       f"{len(unacked)} sent without acknowledgement")
    print(f"      writer errors: {errors['connect']} connects refused or no master, "
          f"{errors['io']} connections lost or timed out, {errors['readonly']} READONLY, "
          f"{errors['wait0']} WAITs reaching no replica, {errors['set_err']} SET errors", flush=True)
    if old is None:
        return
    if t_last_old is not None and t_first_new is not None:
        print(f"      writes unavailable for {t_first_new - t_last_old:.1f}s "
              f"(last acknowledged write on the old master -> first on the new)", flush=True)
    new = [p for p in per_addr if p != old]
    if len(new) != 1:
        die(f"writer: acknowledged writes on {len(new)} servers besides the old master (want 1)")
    if per_addr.get(old, 0) == 0:
        die(f"writer: nothing acknowledged by the old master {old}")
    if a.cut is not None:
        if stale == 0:
            die(f"writer: no batch reached the old master {old} after the cut (the case of a "
                f"cut-off master taking writes was not exercised)")
        ok(f"writer: {stale} batches taken by the cut-off old master {old} (SET OK), each refused "
           f"by WAIT 1 (0 replicas), none acknowledged")


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
    acked, unacked, where = {}, {}, {}
    for path in a.acked:
        with open(path) as f:
            rec = json.load(f)
        for k, (v, at) in rec["acked"].items():
            acked[k.encode()] = bytes.fromhex(v)
            where[k.encode()] = at
        unacked.update({k.encode(): bytes.fromhex(v) for k, v in rec["unacked"].items()})
    host, port = addr(a.addr)
    at = name(host, port)
    r = redis.Redis(host=host, port=port, password=a.password or None, socket_timeout=10)
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
                print(f"      missing: {k.decode()} (acknowledged by {where[k]})")
            for k, got in differ[:5]:
                print(f"      differs: {k.decode()}: want {acked[k].hex() or '(empty)'}, got {got.hex() or '(empty)'}")
            die(f"{a.label} ({at}): of {len(keys)} acknowledged keys, {len(missing)} missing "
                f"and {len(differ)} with other bytes after {a.wait}s (lost writes)")
        time.sleep(0.5)
    ok(f"{a.label} ({at}): all {len(keys)} acknowledged keys, byte-exact, lost 0 "
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
    w.add_argument("--old")
    w.add_argument("--cut")
    w.add_argument("--prefix", default="k")
    w.add_argument("--out", required=True)
    w.add_argument("--ready", required=True)
    w.add_argument("--done", required=True)
    w.add_argument("--after-secs", type=float, default=5)
    w.add_argument("--max-secs", type=float, default=120)
    w.add_argument("--password", default="")
    v = sub.add_parser("verify")
    v.add_argument("--addr", required=True)
    v.add_argument("--acked", required=True, action="append")
    v.add_argument("--label", required=True)
    v.add_argument("--wait", type=float, default=0)
    v.add_argument("--password", default="")
    a = ap.parse_args()
    if a.cmd == "write":
        global PREFIX
        PREFIX = a.prefix.encode()
        if len(PREFIX) != 1:
            sys.exit("--prefix must be one byte")
    write(a) if a.cmd == "write" else verify(a)


if __name__ == "__main__":
    main()
