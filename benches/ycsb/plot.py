#!/usr/bin/env python3
"""Plots of the YCSB comparison: reads the JSON reports written by the `peers` binary.

    python3 benches/ycsb/plot.py RESULTS_DIR [IMGS_DIR]

writes IMGS_DIR/ycsb-throughput.png (operations per second, per workload per store) and
IMGS_DIR/ycsb-latency.png (latency by percentile, per workload per store). Needs matplotlib.
"""

import glob
import math
import json
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

ORDER = ["toykv", "redb", "heed", "fjall", "sled", "rocksdb"]


def load(results):
    reports = []
    for path in sorted(glob.glob(os.path.join(results, "*.json"))):
        if os.path.basename(path).startswith("hot-"):
            continue
        with open(path) as f:
            reports.append(json.load(f))
    return reports


def stores_of(reports):
    present = {r["store"] for r in reports}
    return [s for s in ORDER if s in present] + sorted(present - set(ORDER))


def throughput(reports, out):
    workloads = [w for w in "abcdef" if any(r["workload"] == w for r in reports)]
    stores = stores_of(reports)
    fig, ax = plt.subplots(figsize=(10, 5))
    width = 0.8 / max(len(stores), 1)
    for i, store in enumerate(stores):
        ys = []
        for w in workloads:
            match = [r for r in reports if r["store"] == store and r["workload"] == w]
            ys.append(match[0]["throughput"] if match else 0)
        xs = [j + i * width for j in range(len(workloads))]
        ax.bar(xs, ys, width, label=store)
    ax.set_xticks([j + width * (len(stores) - 1) / 2 for j in range(len(workloads))])
    ax.set_xticklabels([w.upper() for w in workloads])
    ax.set_yscale("log")
    ax.set_ylabel("operations per second (log scale)")
    ax.set_xlabel("YCSB workload")
    first = reports[0] if reports else {}
    ax.set_title(
        "YCSB throughput: %s records, %s ops, %s threads"
        % (first.get("records"), first.get("operations"), first.get("threads"))
    )
    ax.legend()
    ax.grid(axis="y", which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def latency(reports, out):
    workloads = [w for w in "abcdef" if any(r["workload"] == w for r in reports)]
    stores = stores_of(reports)
    fig, axes = plt.subplots(2, 3, figsize=(14, 8), squeeze=False)
    for k, w in enumerate(workloads[:6]):
        ax = axes[k // 3][k % 3]
        for store in stores:
            match = [r for r in reports if r["store"] == store and r["workload"] == w]
            if not match:
                continue
            for op in match[0]["ops"]:
                qs = op["quantiles"]
                # x: "nines" (0.9 -> 1, 0.99 -> 2, ...), so the tail is spread out.
                xs = [min(-math.log10(max(1 - q, 1e-5)), 5) for q, _ in qs]
                ys = [max(v, 0.01) for _, v in qs]
                ax.plot(xs, ys, marker=".", label="%s %s" % (store, op["op"].lower()))
        ax.set_yscale("log")
        ax.set_title("workload %s" % w.upper())
        ax.set_xticks([0.301, 1, 2, 3, 4, 5])
        ax.set_xticklabels(["p50", "p90", "p99", "p99.9", "p99.99", "max"])
        ax.set_ylabel("latency (µs, log)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
    fig.suptitle("YCSB latency by percentile")
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    results = sys.argv[1]
    imgs = sys.argv[2] if len(sys.argv) > 2 else "imgs"
    os.makedirs(imgs, exist_ok=True)
    reports = load(results)
    if not reports:
        sys.exit("no reports in %s" % results)
    throughput(reports, os.path.join(imgs, "ycsb-throughput.png"))
    latency(reports, os.path.join(imgs, "ycsb-latency.png"))
    print("wrote %s/ycsb-throughput.png and %s/ycsb-latency.png" % (imgs, imgs))


if __name__ == "__main__":
    main()
