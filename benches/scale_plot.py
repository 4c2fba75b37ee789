#!/usr/bin/env python3
"""Plots the load of the scale run (`cargo bench --bench scale -- huge`).

Reads target/bench-data/huge-load.csv (seconds, keys, rate_per_s, rss_anon_bytes,
index_bytes; one row every two seconds) and writes imgs/scale-huge-load.png: the put rate
against keys loaded, with the index's bytes per key and the resident anonymous memory on a
second axis.

    python3 benches/scale_plot.py [CSV] [PNG]
"""
import csv
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

src = sys.argv[1] if len(sys.argv) > 1 else "target/bench-data/huge-load.csv"
out = sys.argv[2] if len(sys.argv) > 2 else "imgs/scale-huge-load.png"
rows = list(csv.DictReader(open(src)))
keys = [int(r["keys"]) / 1e6 for r in rows]
rate = [float(r["rate_per_s"]) / 1e6 for r in rows]
index = [int(r["index_bytes"]) / max(int(r["keys"]), 1) for r in rows]
anon = [int(r["rss_anon_bytes"]) / (1 << 30) for r in rows]

fig, ax = plt.subplots(figsize=(9, 4.8))
ax.plot(keys, rate, color="tab:blue", label="puts/s (M), 2 s intervals")
ax.set_xlabel("keys loaded (millions)")
ax.set_ylabel("million puts per second", color="tab:blue")
ax.set_ylim(bottom=0)
ax.grid(alpha=0.3)
right = ax.twinx()
right.plot(keys, index, color="tab:red", label="index bytes per key")
right.plot(keys, anon, color="tab:green", linestyle="--", label="resident anonymous memory (GiB)")
right.set_ylabel("index B/key; anonymous memory GiB")
right.set_ylim(bottom=0)
lines = ax.get_legend_handles_labels()
more = right.get_legend_handles_labels()
ax.legend(lines[0] + more[0], lines[1] + more[1], loc="lower left")
ax.set_title("toykv: loading random keys with 256-byte values (durability none, 2 threads)")
fig.tight_layout()
fig.savefig(out, dpi=110)
print(f"wrote {out}")
