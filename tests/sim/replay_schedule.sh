#!/usr/bin/env bash
# A recorded failing schedule of a planted bug (tests/schedules/) is a
# regression case: replayed against today's code it must pass, and with the
# bug planted it must fail in the bug's own checker.
# Usage: replay_schedule.sh DETCD_SIM SCHEDULE BUG
set -u
if [ $# -ne 3 ]; then
  echo "usage: replay_schedule.sh DETCD_SIM SCHEDULE BUG"
  exit 2
fi
sim="$1"; file="$2"; bug="$3"
catcher=$("$sim" --list | grep -E "^  $bug " | sed 's/.*(caught by the \([a-z]*\) checker).*/\1/')
if [ -z "$catcher" ]; then
  echo "unknown planted bug $bug"
  exit 2
fi
echo "fixed code: detcd-sim --replay $file"
out=$("$sim" --replay "$file" 2>&1)
rc=$?
echo "$out" | grep -E '^(replaying|result|  )' | head -8
if [ $rc -ne 0 ]; then
  echo "the schedule fails on the fixed code"
  exit 1
fi
echo "with the bug: detcd-sim --replay $file --bug $bug"
out=$("$sim" --replay "$file" --bug "$bug" 2>&1)
rc=$?
echo "$out" | grep -E '^(result|  )' | head -5
if [ $rc -eq 0 ]; then
  echo "the schedule passes with $bug planted: it no longer catches the bug"
  exit 1
fi
if ! echo "$out" | grep -q "^result: FAILED (caught by: .*$catcher"; then
  echo "it failed, but not in the $catcher checker"
  exit 1
fi
echo "passes on the fixed code, caught by the $catcher checker with the bug"
