#!/usr/bin/env bash
# A seed that fails a DETCD_CHECK (here on purpose, --crash-seed) is that
# seed's failure: the sweep reports it with the CHECK message and its
# replay line, and runs every other seed (it used to stop with "a worker
# died").
# Usage: sweep_crash.sh DETCD_SIM
set -u
sim="$1"
fail=0
check() {  # args: description, jobs, crash seed
  out=$("$sim" --seeds 1..8 --scenario steady --ops 100 --jobs "$2" \
        --crash-seed "$3" 2>&1)
  rc=$?
  if [ $rc -ne 1 ] ||
     ! echo "$out" | grep -qE "^  seed $3 \(steady, crash\): crash: killed by signal 6 .*CHECK failed: .*--crash-seed" ||
     ! echo "$out" | grep -q "^    replay: detcd-sim --seed $3 --scenario steady" ||
     ! echo "$out" | grep -q '^7 passed, 1 failed (1 crashed)'; then
    echo "$out" | tail -15
    echo "FAILED ($1): rc=$rc; the crashed seed $3 was not reported, or the others did not run"
    fail=1
  else
    echo "ok ($1): seed $3 reported as a crash, the 7 others ran"
  fi
}
check "2 workers, a middle seed" 2 5
check "1 worker, the first seed" 1 1
check "2 workers, the last seed" 2 8
exit $fail
