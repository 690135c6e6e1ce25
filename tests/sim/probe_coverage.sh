#!/usr/bin/env bash
# Every coverage probe (engine/util/probes.h) must be reached by a short
# sweep: two sweeps (swarm with BUGGIFY on, which reaches nearly all of
# them, and snapshot-catch-up, whose lagging followers make a leader send
# snapshots, some of which arrive too late to be needed) write --json
# summaries, and their merge must reach every probe (--require-probes). A
# change to the fault model or the scenarios that stops reaching a rare path
# fails here; add seeds or a scenario that reaches it again rather than
# dropping the probe.
# Usage: probe_coverage.sh DETCD_SIM
set -u
sim="$1"
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
fail=0
run() {  # name, args...
  local name="$1"
  shift
  if ! "$sim" "$@" --jobs 2 --json "$d/$name.json" > "$d/$name.out" 2>&1; then
    tail -20 "$d/$name.out"
    echo "FAILED: the sweep detcd-sim $* failed"
    fail=1
  fi
}
# (600 seeds: node.follower-image-dropped, a follower's image dropped
# unsent because leadership, membership or a compaction moved under it,
# comes about once in 30 of them; node.committing-snapshot-dropped, a
# snapshot from the leader or a defragment while the file worker commits
# a member's own, about once in 150.)
run swarm --seeds 1..600 --scenario swarm --buggify --ops 300
run snapshots --seeds 1..40 --scenario snapshot-catch-up
[ $fail -eq 0 ] || exit 1
"$sim" --merge "$d/swarm.json" "$d/snapshots.json" --require-probes \
  > "$d/merge.out" 2>&1
rc=$?
sed -n '/^probes/,$p' "$d/merge.out"
if [ $rc -ne 0 ]; then
  echo "FAILED: some probe was never reached (see above)"
  exit 1
fi
exit 0
