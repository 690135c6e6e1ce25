#!/usr/bin/env bash
# Same seed, same trace hash: runs each (seed, scenario) twice and compares
# the final `trace-hash:` lines; a different seed must give a different hash
# (otherwise the hash would not be looking at the run at all).
# Usage: determinism.sh DETCD_SIM
set -u
sim="$1"
fail=0
hash_of() { "$sim" "$@" | grep '^trace-hash: ' | tail -1; }
for args in "--seed 7 --scenario swarm" "--seed 11 --scenario disk-faults --nodes 5" \
            "--seed 3 --scenario membership-change" "--seed 5 --scenario clock-skew"; do
  a=$(hash_of $args)
  b=$(hash_of $args)
  if [ -z "$a" ] || [ "$a" != "$b" ]; then
    echo "NOT DETERMINISTIC: detcd-sim $args: '$a' vs '$b'"
    fail=1
  else
    echo "ok: detcd-sim $args -> $a (twice)"
  fi
done
x=$(hash_of --seed 1 --scenario steady)
y=$(hash_of --seed 2 --scenario steady)
if [ "$x" = "$y" ]; then
  echo "seeds 1 and 2 gave the same hash ($x): the hash ignores the run"
  fail=1
fi
exit $fail
