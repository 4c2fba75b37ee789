#!/usr/bin/env python3
"""Tables for benches/redis_compare.sh (not meant to be run by hand).

    redis_compare_table.py one CSV_FILE         prints "RPS P50" of one redis-benchmark --csv run
    redis_compare_table.py table RUN_DIR        prints the markdown table of a run
    redis_compare_table.py write RUN_DIR MD     also puts the run's section into MD

RUN_DIR holds what the script recorded: rows.tsv (kind, row, store, csv file per line, kind
"row" or "fill"), and the texts machine.txt, commands.txt, invocation.txt, title.txt, about.txt.

redis-benchmark --csv (7.x) prints a header line, then one line per test, every field quoted:
  "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms",...
Columns are found by name; an older version without p50_latency_ms gives "n/a".
"""
import csv
import os
import re
import sys
import textwrap

SECTION_PREFIX = "## Server against redis-server (issue 14)"


def parse(path):
    """(rps, p50) of the first data line of a redis-benchmark --csv output; p50 may be None."""
    with open(path, newline="") as f:
        lines = [line for line in f if line.strip()]
    header = None
    for fields in csv.reader(lines):
        fields = [x.strip() for x in fields]
        if header is None:
            if fields and fields[0] == "test" and "rps" in fields:
                header = fields
            continue
        if len(fields) < len(header):
            continue
        row = dict(zip(header, fields))
        try:
            rps = float(row["rps"])
        except ValueError:
            continue
        p50 = row.get("p50_latency_ms")
        try:
            p50 = float(p50) if p50 is not None else None
        except ValueError:
            p50 = None
        return rps, p50
    raise SystemExit(f"{path}: no redis-benchmark --csv result in it")


def read(run_dir, name):
    with open(os.path.join(run_dir, name)) as f:
        return f.read().strip("\n")


def median(xs):
    xs = sorted(x for x in xs if x is not None)
    return xs[len(xs) // 2] if xs else None


def results(run_dir):
    """[(kind, row, {store: (rps, p50)})] in the order the rows were first run; a row run
    several times (ROUNDS) gives each store's median throughput and median p50."""
    out = []
    index = {}
    runs = {}
    with open(os.path.join(run_dir, "rows.tsv")) as f:
        for line in f:
            if not line.strip():
                continue
            kind, row, store, path = line.rstrip("\n").split("\t")
            if (kind, row) not in index:
                index[(kind, row)] = len(out)
                out.append((kind, row, {}))
            runs.setdefault((kind, row, store), []).append(parse(path))
    for kind, row, by_store in out:
        for (k, r, store), got in runs.items():
            if (k, r) == (kind, row):
                by_store[store] = (median(g[0] for g in got), median(g[1] for g in got))
    return out


def rps_text(x):
    return f"{x:,.0f}" if x is not None else "n/a"


def ms_text(x):
    return f"{x:.3f}" if x is not None else "n/a"


def table(run_dir):
    lines = [
        "| row | toykv req/s | redis-server req/s | toykv / redis | toykv p50 ms | redis p50 ms |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    fills = []
    for kind, row, by_store in results(run_dir):
        t_rps, t_p50 = by_store.get("toykv", (None, None))
        r_rps, r_p50 = by_store.get("redis", (None, None))
        ratio = f"{t_rps / r_rps:.2f}" if t_rps and r_rps else "n/a"
        if kind == "fill":
            fills.append(f"{row}: toykv {rps_text(t_rps)} req/s, redis-server {rps_text(r_rps)} req/s ({ratio})")
            continue
        lines.append(
            f"| {row} | {rps_text(t_rps)} | {rps_text(r_rps)} | {ratio} | {ms_text(t_p50)} | {ms_text(r_p50)} |"
        )
    text = "\n".join(lines)
    if fills:
        text += "\n\n" + "\n".join(f"{x}." for x in fills)
    return text


def section(run_dir):
    return "\n".join(
        [
            f"{read(run_dir, 'title.txt')}",
            "",
            "```sh",
            read(run_dir, "invocation.txt"),
            "```",
            "",
            textwrap.fill(read(run_dir, "machine.txt"), 95, break_on_hyphens=False),
            "",
            textwrap.fill(read(run_dir, "about.txt"), 95, break_on_hyphens=False),
            "",
            "```sh",
            read(run_dir, "commands.txt"),
            "```",
            "",
            table(run_dir),
            "",
        ]
    )


def headers(lines):
    """Indexes of the '## ' lines outside fenced code blocks."""
    fence = False
    found = []
    for i, line in enumerate(lines):
        if line.startswith("```"):
            fence = not fence
        elif not fence and line.startswith("## "):
            found.append(i)
    return found


def write(run_dir, md_path):
    with open(md_path) as f:
        lines = f.read().split("\n")
    new = section(run_dir).split("\n")
    heads = headers(lines)
    old = [i for i in heads if lines[i].startswith(SECTION_PREFIX)]
    if old:
        start = old[0]
        later = [i for i in heads if i > start]
        end = later[0] if later else len(lines)
        lines[start:end] = new
        what = f"replaced the section at line {start + 1}"
    else:
        machine = [i for i in heads if re.match(r"## Machine\s*$", lines[i])]
        if not machine:
            raise SystemExit(f"{md_path}: no '## Machine' section to put the new one after")
        later = [i for i in heads if i > machine[0]]
        at = later[0] if later else len(lines)
        if not later:
            if lines and lines[-1] == "":
                lines.pop()
            new = [""] + new
            at = len(lines)
        lines[at:at] = new
        what = f"inserted a section at line {at + 1}"
    with open(md_path, "w") as f:
        f.write("\n".join(lines))
    print(f"{md_path}: {what}")


def main(argv):
    if len(argv) == 3 and argv[1] == "one":
        rps, p50 = parse(argv[2])
        print(f"{rps:.0f} {ms_text(p50)}")
    elif len(argv) == 3 and argv[1] == "table":
        print(table(argv[2]))
    elif len(argv) == 4 and argv[1] == "write":
        write(argv[2], argv[3])
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
