#!/usr/bin/env python3
"""Plots of the YCSB comparison: reads the JSON reports written by the `peers` binary.

    python3 benches/ycsb/plot.py RESULTS_DIR [IMGS_DIR [PREFIX]]

writes IMGS_DIR/PREFIX-throughput.png (operations per second, per workload per store) and
IMGS_DIR/PREFIX-latency.png (latency by percentile, per workload per store); PREFIX is
"ycsb" by default, "ycsb-ltm" for the larger-than-memory runs (run.sh --ltm), so both
regimes' plots sit side by side. A store without a report for a workload (it did not finish
under --ltm's time limit: RESULTS_DIR/children.tsv) gets no bar there but "no result" in its
place, and its outcome in the legend. Needs matplotlib.
"""

import glob
import math
import json
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

ORDER = ["toykv", "redb", "heed", "fjall", "sled", "rocksdb"]


def load(results):
    reports = []
    for path in sorted(glob.glob(os.path.join(results, "*.json"))):
        if os.path.basename(path).startswith("hot-"):
            continue
        with open(path) as f:
            reports.append(json.load(f))
    return reports


def unfinished(results):
    """Stores whose process did not finish (children.tsv, written by peers): {store: status}."""
    path = os.path.join(results, "children.tsv")
    if not os.path.exists(path):
        return {}
    out = {}
    with open(path) as f:
        for line in f.read().splitlines()[1:]:
            fields = line.split("\t")
            if len(fields) > 1 and fields[1] != "ok":
                out[fields[0]] = fields[1]
    return out


def stores_of(reports, extra=()):
    present = {r["store"] for r in reports} | set(extra)
    return [s for s in ORDER if s in present] + sorted(present - set(ORDER))


def workloads_of(reports, dnf):
    """Workloads with a report; all six when a store did not finish (it may lack any)."""
    return [w for w in "abcdef" if dnf or any(r["workload"] == w for r in reports)]


def regime(reports):
    """Title suffix naming the memory limit the reports were made under, if any."""
    limits = {r.get("cgroup_limit_bytes") for r in reports} - {None}
    if not limits:
        return ""
    return ", memory limit %s MiB" % "/".join("%.0f" % (n / 2**20) for n in sorted(limits))


def throughput(reports, out, dnf):
    workloads = workloads_of(reports, dnf)
    stores = stores_of(reports, dnf)
    fig, ax = plt.subplots(figsize=(12, 5))
    width = 0.8 / max(len(stores), 1)
    missing = []
    handles = []
    for i, store in enumerate(stores):
        xs, ys = [], []
        for j, w in enumerate(workloads):
            match = [r for r in reports if r["store"] == store and r["workload"] == w]
            x = j + i * width
            if match and match[0].get("throughput", 0) > 0:
                xs.append(x)
                ys.append(match[0]["throughput"])
            else:
                missing.append(x)
        label = store if store not in dnf else "%s (%s)" % (store, dnf[store])
        ax.bar(xs, ys, width, color="C%d" % i)
        # A store without a single bar still gets its own colour in the legend.
        handles.append(Patch(color="C%d" % i, label=label))
    if missing:
        ax.set_yscale("log")
        bottom = ax.get_ylim()[0]
        for x in missing:
            ax.text(x, bottom, " no result", ha="center", va="bottom", fontsize=7, rotation=90)
    ax.set_xticks([j + width * (len(stores) - 1) / 2 for j in range(len(workloads))])
    ax.set_xticklabels([w.upper() for w in workloads])
    ax.set_yscale("log")
    ax.set_ylabel("operations per second (log scale)")
    ax.set_xlabel("YCSB workload")
    first = reports[0] if reports else {}
    ax.set_title(
        "YCSB throughput: %s records, %s ops, %s threads%s"
        % (first.get("records"), first.get("operations"), first.get("threads"), regime(reports))
    )
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    ax.grid(axis="y", which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def latency(reports, out, dnf):
    workloads = workloads_of(reports, dnf)
    stores = stores_of(reports)
    fig, axes = plt.subplots(2, 3, figsize=(14, 8), squeeze=False)
    for k, w in enumerate(workloads[:6]):
        ax = axes[k // 3][k % 3]
        for store in stores:
            match = [r for r in reports if r["store"] == store and r["workload"] == w]
            if not match:
                continue
            for op in match[0].get("ops", []):
                qs = op.get("quantiles") or []
                if not qs:
                    continue
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
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=6)
        else:
            ax.text(0.5, 0.5, "no result", ha="center", va="center", transform=ax.transAxes)
    for k in range(len(workloads), 6):
        axes[k // 3][k % 3].set_visible(False)
    fig.suptitle("YCSB latency by percentile%s" % regime(reports))
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    results = sys.argv[1]
    imgs = sys.argv[2] if len(sys.argv) > 2 else "imgs"
    prefix = sys.argv[3] if len(sys.argv) > 3 else "ycsb"
    os.makedirs(imgs, exist_ok=True)
    reports = load(results)
    if not reports:
        sys.exit("no reports in %s" % results)
    paths = [os.path.join(imgs, "%s-%s.png" % (prefix, kind)) for kind in ("throughput", "latency")]
    dnf = unfinished(results)
    throughput(reports, paths[0], dnf)
    latency(reports, paths[1], dnf)
    print("wrote %s and %s" % tuple(paths))


if __name__ == "__main__":
    main()
