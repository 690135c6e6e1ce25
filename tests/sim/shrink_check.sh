#!/usr/bin/env bash
# Shrinking a failing run of a planted bug must give a schedule that still
# fails in the bug's checker and is at least 5 times smaller (fault events
# plus client operations) than the recorded run.
# Usage: shrink_check.sh DETCD_SIM --seed S --scenario X --bug NAME [ARGS...]
set -u
sim="$1"; shift
bug=""
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
  [ "${args[$i]}" = "--bug" ] && bug="${args[$((i + 1))]}"
done
catcher=$("$sim" --list | grep -E "^  $bug " | sed 's/.*(caught by the \([a-z]*\) checker).*/\1/')
if [ -z "$bug" ] || [ -z "$catcher" ]; then
  echo "usage: shrink_check.sh DETCD_SIM --seed S --scenario X --bug NAME [ARGS...]"
  exit 2
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "detcd-sim $* --shrink"
out=$("$sim" "$@" --shrink --shrink-out "$tmp/shrunk.schedule" 2>&1)
rc=$?
echo "$out" | grep -vE '^shrink: (fault events|operations): ' | head -40
if [ $rc -ne 0 ] || [ ! -s "$tmp/shrunk.schedule" ]; then
  echo "shrinking failed (exit $rc)"
  exit 1
fi
units=$(echo "$out" | sed -n 's/.* units \([0-9]*\) -> \([0-9]*\) .*/\1 \2/p' | head -1)
before=${units% *}; after=${units#* }
if [ -z "$units" ] || [ $((after * 5)) -gt "$before" ]; then
  echo "not 5x smaller: $before -> $after units"
  exit 1
fi
rout=$("$sim" --replay "$tmp/shrunk.schedule" --bug "$bug" 2>&1)
if [ $? -eq 0 ] || ! echo "$rout" | grep -q "^result: FAILED (caught by: .*$catcher"; then
  echo "$rout" | grep -A3 '^result:'
  echo "the shrunk schedule does not fail in the $catcher checker"
  exit 1
fi
echo "shrunk $before -> $after units; the shrunk schedule fails in the $catcher checker"
