// detcd-bench: a load generator for any etcd v3 endpoint. See options.cc's
// Usage() and README.md's "Performance" section.
#include <cstdio>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "bench.h"
#include "options.h"
#include "report.h"

int main(int argc, char** argv) {
  // Debian's Abseil checks every Mutex acquisition for lock-order cycles
  // (a graph update per lock): a third of the bench's own CPU per request
  // under 100 clients. The bench's locking is simple; skip the check.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  std::vector<std::string> args(argv + 1, argv + argc);
  for (const auto& a : args) {
    if (a == "-h" || a == "--help" || a == "help") {
      std::fputs(detcd::bench::Usage().c_str(), stdout);
      return 0;
    }
  }
  auto opts = detcd::bench::ParseArgs(args);
  if (!opts.ok()) {
    std::fprintf(stderr, "detcd-bench: %s\n(detcd-bench --help for usage)\n",
                 std::string(opts.status().message()).c_str());
    return 2;
  }
  auto result = detcd::bench::Run(*opts);
  if (!result.ok()) {
    std::fprintf(stderr, "detcd-bench: %s\n",
                 std::string(result.status().message()).c_str());
    return 1;
  }
  const std::string out = opts->json ? detcd::bench::FormatJson(*result)
                                     : detcd::bench::FormatText(*result);
  std::fputs(out.c_str(), stdout);
  // Exit 1 when nothing succeeded or the run could not finish (missing
  // watch events); single errors are only reported, as etcd's benchmark.
  if (!result->failure.empty() || result->operations() == 0) return 1;
  return 0;
}
