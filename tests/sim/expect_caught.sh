#!/usr/bin/env bash
# A planted bug must be caught by the checker it targets: the sweep with
# --bug must report a seed that checker failed (a safety bug seen only as a
# liveness timeout does not count) and print the command that replays it;
# that command must fail again on its own with the same checker (replay is
# bit for bit); and the control run, the same seeds without the bug, must
# pass (the failures are the bug's, not the seeds').
# Usage: expect_caught.sh DETCD_SIM SWEEP_ARGS... --bug NAME
set -u
sim="$1"; shift
args=("$@")
control=()
bug=""
for ((i = 0; i < ${#args[@]}; i++)); do
  if [ "${args[$i]}" = "--bug" ]; then
    bug="${args[$((i + 1))]}"
    i=$((i + 1))
  else
    control+=("${args[$i]}")
  fi
done
if [ -z "$bug" ]; then
  echo "usage: expect_caught.sh DETCD_SIM SWEEP_ARGS... --bug NAME"
  exit 2
fi
echo "control: detcd-sim ${control[*]}"
if ! cout=$("$sim" "${control[@]}" 2>&1); then
  echo "$cout" | tail -25
  echo "the control run (no planted bug) failed: the seeds fail without the bug"
  exit 1
fi
echo "$cout" | grep -E '^(throughput|[0-9]+ passed)'
out=$("$sim" "$@" --expect-failure 2>&1)
rc=$?
echo "$out" | tail -25
if [ $rc -ne 0 ]; then
  echo "the planted bug was NOT caught by its checker: detcd-sim $*"
  exit 1
fi
replay=$(echo "$out" | grep -m1 '^caught-replay: detcd-sim' | sed 's/^caught-replay: detcd-sim //')
catcher=$("$sim" --list | grep -E "^  $bug " | sed 's/.*(caught by the \([a-z]*\) checker).*/\1/')
if [ -z "$replay" ] || [ -z "$catcher" ]; then
  echo "no caught-replay line printed, or the bug is not listed"
  exit 1
fi
echo "replaying: detcd-sim $replay"
rout=$("$sim" $replay)
if [ $? -eq 0 ]; then
  echo "the replay command passed: the failure did not reproduce"
  exit 1
fi
if ! echo "$rout" | grep -q "^result: FAILED (caught by: .*$catcher"; then
  echo "$rout" | grep -A3 '^result:'
  echo "the replay failed, but not in the $catcher checker"
  exit 1
fi
echo "caught by the $catcher checker and reproduced"
