"""Replica lag while a load runs (benches/replication.sh): every 100 ms, write a marker key
to the master holding the time, then poll the replica until it holds that marker; the lag of
a sample is the time from the master's OK to the replica showing it. Also samples the byte
lag (master_repl_offset - slave_repl_offset). Runs until SIGINT, then prints
max_lag_ms, median_lag_ms, max_lag_bytes and samples."""

import signal
import sys
import time

import redis

master = redis.Redis(port=int(sys.argv[1]), protocol=2)
replica = redis.Redis(port=int(sys.argv[2]), protocol=2)
stop = False


def on_int(*_):
    global stop
    stop = True


signal.signal(signal.SIGINT, on_int)
lags, byte_lags = [], []
i = 0
while not stop:
    i += 1
    marker = str(i).encode()
    # Numeric key mode: key 999999999 is past the benchmark's keys.
    master.set("key:999999999", marker)
    sent = time.monotonic()
    while not stop and replica.get("key:999999999") != marker:
        if time.monotonic() - sent > 30:
            break
        time.sleep(0.001)
    if stop:
        break
    lags.append((time.monotonic() - sent) * 1000)
    m = master.info("replication")["master_repl_offset"]
    r = replica.info("replication")["slave_repl_offset"]
    byte_lags.append(max(0, m - r))
    time.sleep(0.1)
lags.sort()
print(f"max_lag_ms:{max(lags) if lags else -1:.1f}")
print(f"median_lag_ms:{lags[len(lags) // 2] if lags else -1:.1f}")
print(f"max_lag_bytes:{max(byte_lags) if byte_lags else -1}")
print(f"samples:{len(lags)}")
