#!/usr/bin/env python3
"""Prints Markdown tables (bench/README.md) from Google Benchmark JSON files.

Usage: microbench_table.py NAME.json ...   (one table per file)
CPU / iter is the figure to compare (on a shared machine wall time mostly
measures the other processes); for benchmarks with MeasureProcessCPUTime it
is the whole process's CPU. items/s is per CPU second, or per wall second
for UseRealTime benchmarks (the WAL on PosixDisk, the gRPC round trips).
"""
import json
import os
import re
import sys

UNIT_NS = {"ns": 1, "us": 1e3, "ms": 1e6, "s": 1e9}
NOTES = ("deliveries_per_put", "heap_per_key", "failures", "states",
         "image_bytes")


def fmt_time(ns):
    if ns >= 1e6:
        return f"{ns / 1e6:.2f} ms"
    if ns >= 1e3:
        return f"{ns / 1e3:.2f} us"
    return f"{ns:.0f} ns"


def fmt_rate(r):
    if r >= 1e6:
        return f"{r / 1e6:.2f}M/s"
    if r >= 1e3:
        return f"{r / 1e3:.1f}k/s"
    return f"{r:.0f}/s"


def table(path):
    with open(path, encoding="utf-8") as f:
        report = json.load(f)
    name = os.path.basename(path).rsplit(".", 1)[0]
    lines = [f"{name}:", "",
             "| Benchmark | CPU / iter | wall / iter | items/s | notes |",
             "|---|---|---|---|---|"]
    for b in report.get("benchmarks", []):
        if b.get("run_type") != "iteration":
            continue
        short = re.sub(r"/(iterations:\d+|process_time|real_time)", "",
                       b["name"])
        if b.get("error_occurred"):
            lines.append(f"| {short} | error: {b.get('error_message')} "
                         "| | | |")
            continue
        mult = UNIT_NS[b.get("time_unit", "ns")]
        notes = [f"{k}={b[k]:.4g}" for k in NOTES if k in b]
        if b.get("label"):
            notes.append(b["label"])
        ips = b.get("items_per_second")
        lines.append(f"| {short} | {fmt_time(b['cpu_time'] * mult)} "
                     f"| {fmt_time(b['real_time'] * mult)} "
                     f"| {fmt_rate(ips) if ips else ''} "
                     f"| {' '.join(notes)} |")
    return "\n".join(lines) + "\n"


def main():
    print("\n".join(table(p) for p in sys.argv[1:]))


if __name__ == "__main__":
    main()
