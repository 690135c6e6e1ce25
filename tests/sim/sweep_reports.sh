#!/usr/bin/env bash
# Sweeps at scale (docs/sweeps.md): the --json summaries of a sweep's shards
# merge into the summary of the whole sweep (same seeds, same counts: the
# runs are deterministic), JUnit XML names each failing seed with its replay
# line, and a --duration sweep stops by itself.
# Usage: sweep_reports.sh DETCD_SIM
set -u
sim="$1"
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
fail=0
bad() { echo "FAILED: $*"; fail=1; }
# Seed 5 fails a CHECK on purpose (--crash-seed): a failure to report.
common=(--scenario steady --ops 100 --crash-seed 5)

"$sim" --seeds 1..12 "${common[@]}" --jobs 2 --json "$d/all.json" \
  --junit "$d/all.xml" > "$d/all.out" 2>&1
[ $? -eq 1 ] || bad "the whole sweep should fail (seed 5): $(tail -5 "$d/all.out")"
for i in 0 1 2; do
  "$sim" --seeds 1..12 "${common[@]}" --shard "$i/3" --jobs 2 \
    --json "$d/s$i.json" > "$d/s$i.out" 2>&1
done
"$sim" --merge "$d/s0.json" "$d/s1.json" "$d/s2.json" --json "$d/merged.json" \
  --junit "$d/merged.xml" > "$d/merge.out" 2>&1
rc=$?
[ $rc -eq 1 ] || bad "--merge should exit 1 (a failed seed), got $rc"
grep -q '^11 passed, 1 failed$' "$d/merge.out" ||
  bad "merge output: $(tail -5 "$d/merge.out")"

python3 - "$d" <<'EOF' || fail=1
import json, sys, xml.etree.ElementTree as ET
d = sys.argv[1]
load = lambda n: json.load(open(f"{d}/{n}.json"))
whole, merged = load("all"), load("merged")
shards = [load(f"s{i}") for i in range(3)]
ok = True
def check(cond, what):
    global ok
    if not cond:
        print("FAILED:", what)
        ok = False
seeds = [sum(r["seeds"] for r in s["scenarios"].values()) for s in shards]
check(seeds == [4, 4, 4], f"shards of 1..12 in 3 should run 4 seeds each: {seeds}")
check(sum(1 for s in shards if s["failures"]) == 1,
      "seed 5 should fail in exactly one shard")
for key in ("seeds", "failed", "idle", "events", "inconclusive"):
    a = {k: v[key] for k, v in whole["scenarios"].items()}
    b = {k: v[key] for k, v in merged["scenarios"].items()}
    check(a == b, f"merged {key} {b} != whole sweep's {a}")
check(whole["coverage"] == merged["coverage"],
      "merged coverage differs from the whole sweep's")
check(whole["probes"] == merged["probes"], "merged probes differ")
check([f["seed"] for f in merged["failures"]] == [5],
      f"failures: {merged['failures']}")
check(merged["failures"][0]["replay"].startswith("detcd-sim --seed 5 "),
      "the failure's replay line")
for name in ("all", "merged"):
    root = ET.parse(f"{d}/{name}.xml").getroot()
    cases = root.iter("testcase")
    seed5 = [c for c in cases if c.get("name") == "seed 5"]
    check(len(seed5) == 1 and "replay: detcd-sim --seed 5" in
          (seed5[0].find("failure").text or ""),
          f"{name}.xml: a test case for seed 5 with its replay line")
print("ok: shards merge into the whole sweep; JUnit names seed 5" if ok else "")
sys.exit(0 if ok else 1)
EOF

# A timed sweep: no seed range, ends by itself once the time is up.
"$sim" --duration 2s --scenario steady --ops 100 --jobs 2 \
  --json "$d/dur.json" > "$d/dur.out" 2>&1
rc=$?
if [ $rc -ne 0 ] || ! grep -qE '^[1-9][0-9]* passed, 0 failed$' "$d/dur.out"; then
  bad "--duration 2s: rc=$rc: $(tail -5 "$d/dur.out")"
else
  echo "ok: --duration 2s: $(grep -E 'passed' "$d/dur.out")"
fi
# Sweep-only flags on a single run are refused.
"$sim" --seed 1 --json "$d/x.json" > /dev/null 2>&1
[ $? -eq 2 ] || bad "--json with --seed should be refused"
exit $fail
