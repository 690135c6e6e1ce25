// detcd-bench's workloads: connects as Options says (the shared client
// library, client/), runs one workload and returns its Result.
#ifndef DETCD_BENCH_DETCD_BENCH_BENCH_H_
#define DETCD_BENCH_DETCD_BENCH_BENCH_H_

#include "absl/status/statusor.h"
#include "options.h"
#include "report.h"

namespace detcd::bench {

// Fails (before measuring) when the endpoints cannot be reached within
// --dial-timeout or the leader cannot be found for --target-leader. Errors
// of single requests are counted in the result, not returned.
absl::StatusOr<Result> Run(const Options& options);

}  // namespace detcd::bench

#endif  // DETCD_BENCH_DETCD_BENCH_BENCH_H_
