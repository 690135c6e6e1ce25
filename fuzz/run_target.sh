#!/usr/bin/env bash
# ctest's fuzz label (DETCD_FUZZ=ON builds): fuzzes one target for a bounded
# time on a scratch corpus seeded from the repository's, so the repository's
# corpus never changes behind anyone's back. New crashes are written under
# WORK/artifacts and fail the test.
# Usage: run_target.sh FUZZER SEED_CORPUS WORK SECONDS [libFuzzer flags...]
set -euo pipefail
fuzzer=$1 seeds=$2 work=$3 seconds=$4
shift 4
mkdir -p "$work/corpus" "$work/artifacts"
exec "$fuzzer" -max_total_time="$seconds" -print_final_stats=1 \
  -artifact_prefix="$work/artifacts/" -timeout=25 -rss_limit_mb=2048 \
  "$@" "$work/corpus" "$seeds"
