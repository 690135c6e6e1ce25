// One simulated run: (seed, scenario, nodes, ops, planted bug) -> result.
// A fault phase with the scenario's faults and the client workload, then a
// liveness phase without faults in which the cluster must converge within a
// bound, then the end-of-run checks.
#ifndef DETCD_SCENARIOS_RUN_H_
#define DETCD_SCENARIOS_RUN_H_

#include <cstdint>
#include <functional>
#include <set>
#include <string>
#include <vector>

#include "harness/trace.h"
#include "harness/workload.h"

namespace detcd::harness {

struct RunOptions {
  uint64_t seed = 1;
  std::string scenario = "swarm";  // "all": chosen from the catalog by seed
  int nodes = 3;
  int ops = 500;
  int clients = 5;
  int watchers = 3;
  int lease_clients = 2;
  std::string bug;  // planted bug, see PlantedBugs()
  int64_t fault_phase_ns = 10 * sim::kSecond;
  int64_t liveness_bound_ns = 60 * sim::kSecond;
  // A run that needs more events than this is livelocked (e.g. a message
  // storm between two nodes that never converge): a liveness failure, not a
  // hang. Normal runs use a few thousand events per simulated second.
  uint64_t max_events = 5'000'000;
  // Optional wall clock, injected by the CLI to report how long the
  // client-view checkers took (the harness itself never reads a clock).
  std::function<int64_t()> wall_ns;
};

struct RunResult {
  bool ok = false;
  std::string scenario;  // resolved name
  std::vector<std::string> params;  // every derived parameter
  std::vector<std::string> failures;
  // The kinds of checker that reported the failures: "safety",
  // "linearizability", "watch", "lease", "liveness" (planted::CatcherName).
  std::set<std::string> caught_by;
  uint64_t trace_hash = 0;
  double sim_seconds = 0;
  uint64_t events = 0;
  Workload::Stats ops;
  uint64_t applied = 0;
  uint64_t leaders = 0;
  uint64_t history_ops = 0;
  uint64_t lin_states = 0;
  uint64_t watch_events = 0;
  int64_t checker_wall_ns = 0;  // 0 unless RunOptions::wall_ns was set
  // The linearizability search hit its state limit: nothing was proven
  // wrong, but the history was not fully checked either.
  bool lin_inconclusive = false;
};

std::string ResolveScenario(const RunOptions& o);
RunResult RunOne(const RunOptions& o, Trace* trace);
// The command line that replays this run bit for bit.
std::string ReplayCommand(const RunOptions& o);

}  // namespace detcd::harness

#endif  // DETCD_SCENARIOS_RUN_H_
