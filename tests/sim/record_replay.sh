#!/usr/bin/env bash
# Recording is passive and replay is exact: for a spread of seeds and
# scenarios, the plain run, the recorded run and the replay of the recording
# end with the same trace hash and the same result.
# Usage: record_replay.sh DETCD_SIM
set -u
sim="$1"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
for run in "1 swarm" "2 partition-heal" "3 flaky-network" "4 crash-restart-loop" \
           "5 disk-faults" "6 clock-skew" "7 membership-change" "8 figure8" \
           "9 stale-leader" "10 snapshot-catch-up" "12 auth" "13 recipes"; do
  set -- $run
  seed=$1; sc=$2
  plain=$("$sim" --seed "$seed" --scenario "$sc" --ops 200 2>&1 | grep -E '^(result|trace-hash)' | tr '\n' ' ')
  rec=$("$sim" --seed "$seed" --scenario "$sc" --ops 200 --record "$tmp/s" 2>&1 | grep -E '^(result|trace-hash)' | tr '\n' ' ')
  rep=$("$sim" --replay "$tmp/s" 2>&1 | grep -E '^(result|trace-hash)' | tr '\n' ' ')
  # The auth and recipes scenarios' clients draw from streams of their own.
  case $sc in
    auth) grep -q '^stream auth/u0\.' "$tmp/s" || { echo "no auth/uC.N streams"; fail=1; } ;;
    recipes) grep -q '^stream recipes/c0 ' "$tmp/s" || { echo "no recipes/cN streams"; fail=1; } ;;
  esac
  if [ -z "$plain" ] || [ "$plain" != "$rec" ] || [ "$plain" != "$rep" ]; then
    echo "MISMATCH seed $seed $sc: plain [$plain] record [$rec] replay [$rep]"
    fail=1
  else
    echo "seed $seed $sc: $plain($(wc -c < "$tmp/s") bytes recorded)"
  fi
done
# A run with BUGGIFY on: the schedule carries the setting, so the replay
# (without the flag) runs the same fault points.
plain=$("$sim" --seed 11 --scenario leader-crash --ops 200 --buggify 2>&1 | grep -E '^(result|trace-hash)' | tr '\n' ' ')
rec=$("$sim" --seed 11 --scenario leader-crash --ops 200 --buggify --record "$tmp/b" 2>&1 | grep -E '^(result|trace-hash)' | tr '\n' ' ')
rep=$("$sim" --replay "$tmp/b" 2>&1 | grep -E '^(result|trace-hash)' | tr '\n' ' ')
if ! grep -q '^buggify all$' "$tmp/b" || [ -z "$plain" ] || [ "$plain" != "$rec" ] || [ "$plain" != "$rep" ]; then
  echo "MISMATCH --buggify: plain [$plain] record [$rec] replay [$rep]"
  fail=1
else
  echo "seed 11 leader-crash --buggify: $plain"
fi
exit $fail
