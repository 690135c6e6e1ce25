#!/usr/bin/env bash
# A planted bug must be caught: the sweep must report at least one failing
# seed and print the command that replays it, and that command must fail
# again on its own (replay is bit for bit).
# Usage: expect_caught.sh DETCD_SIM SWEEP_ARGS...
set -u
sim="$1"; shift
out=$("$sim" "$@" --expect-failure 2>&1)
rc=$?
echo "$out" | tail -25
if [ $rc -ne 0 ]; then
  echo "the planted bug was NOT caught by: detcd-sim $*"
  exit 1
fi
replay=$(echo "$out" | grep -m1 'replay: detcd-sim' | sed 's/.*replay: detcd-sim //')
if [ -z "$replay" ]; then
  echo "no replay line printed"
  exit 1
fi
echo "replaying: detcd-sim $replay"
if "$sim" $replay > /dev/null; then
  echo "the replay command passed: the failure did not reproduce"
  exit 1
fi
echo "caught and reproduced"
