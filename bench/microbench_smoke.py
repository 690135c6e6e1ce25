#!/usr/bin/env python3
"""Smoke test of the Google Benchmark binaries (bench/README.md).

Runs each binary once with a tiny --benchmark_min_time and JSON output,
and fails if a binary exits non-zero, times out, runs no benchmark, or
reports a benchmark that stopped with an error (SkipWithError: a failed
setup, a wrong result). Timings never decide pass or fail.

Usage: microbench_smoke.py [--min-time S] [--timeout S] BIN[=FILTER] ...
FILTER is a --benchmark_filter regex (a leading '-' excludes), used to
leave out the cases whose setup is too slow for the default test run.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time


def run_one(spec, min_time, timeout):
    binary, _, flt = spec.partition("=")
    name = os.path.basename(binary)
    with tempfile.TemporaryDirectory(prefix="microbench-smoke-") as tmp:
        out = os.path.join(tmp, "out.json")
        cmd = [binary, f"--benchmark_min_time={min_time}",
               f"--benchmark_out={out}", "--benchmark_out_format=json"]
        if flt:
            cmd.append(f"--benchmark_filter={flt}")
        env = dict(os.environ, TMPDIR=tmp)
        t0 = time.monotonic()
        try:
            p = subprocess.run(cmd, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True,
                               timeout=timeout, env=env)
        except subprocess.TimeoutExpired:
            return [f"{name}: timed out after {timeout} s"]
        took = time.monotonic() - t0
        if p.returncode != 0:
            return [f"{name}: exit {p.returncode}: {p.stderr[-2000:]}"]
        try:
            with open(out, encoding="utf-8") as f:
                report = json.load(f)
        except (OSError, ValueError) as e:
            return [f"{name}: no JSON report: {e}"]
    runs = report.get("benchmarks", [])
    errors = [f"{name}: {b.get('name')}: {b.get('error_message', '?')}"
              for b in runs if b.get("error_occurred")]
    if not runs:
        errors.append(f"{name}: no benchmark ran (filter {flt!r})")
    print(f"{name}: {len(runs)} benchmarks, {took:.1f} s"
          + (f", filter {flt}" if flt else ""), flush=True)
    return errors


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--min-time", default="0.001")
    ap.add_argument("--timeout", type=float, default=300)
    ap.add_argument("specs", nargs="+")
    a = ap.parse_args()
    errors = []
    for spec in a.specs:
        errors += run_one(spec, a.min_time, a.timeout)
    for e in errors:
        print("FAIL", e, file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
