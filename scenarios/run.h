// One simulated run: (seed, scenario, nodes, ops, planted bug) -> result.
// A fault phase with the scenario's faults and the client workload, then a
// liveness phase without faults in which the cluster must converge within a
// bound, then the end-of-run checks.
#ifndef DETCD_SCENARIOS_RUN_H_
#define DETCD_SCENARIOS_RUN_H_

#include <cstdint>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "harness/trace.h"
#include "harness/workload.h"
#include "sim/schedule.h"

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
  // The run is part of a determinism check (the CLI runs it several times
  // and compares): only so that ReplayCommand says so.
  bool check_determinism = false;
  // A linearizability check that hits its state limit proves nothing: it
  // fails the run unless this is set (exploratory sweeps, knowingly).
  bool accept_inconclusive = false;
  // BUGGIFY fault points in the engine (engine/util/buggify.h): each run
  // enables about half of them, drawn from its seed; with buggify_point
  // set, only that one. Off: nothing is drawn (seeds and hashes as before).
  bool buggify = false;
  std::string buggify_point;
  // If set, every observation folded into the trace hash is recorded here
  // (the determinism check's event log; see sim::TraceLog).
  sim::TraceLog* trace_log = nullptr;
  // Record / replay (sim/schedule.h): every decision of the world goes
  // through it; its output() is the run's schedule afterwards (parameters,
  // units, streams, and the failure). Replaying, the parameters above must
  // be the schedule's (ApplySchedule).
  sim::Decisions* decisions = nullptr;
};

// Sets the run parameters a schedule fixes (seed, scenario, sizes, fault
// phase); the planted bug stays the caller's.
void ApplySchedule(const sim::Schedule& s, RunOptions* o);

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
  // Faults injected during the fault phase (the sum of the "faults.*"
  // coverage counters).
  uint64_t faults = 0;
  // Coverage floors: the run tested little (almost no client operation
  // succeeded, or no fault fired in a scenario that injects faults); the
  // reasons are in `notes`. Not a failure of the run; a sweep fails when
  // too many of its seeds are idle.
  bool idle = false;
  std::vector<std::string> notes;
  // Named counters of what the run exercised ("faults.crash", ...), summed
  // over the seeds of a sweep and printed with its summary. Names are
  // dotted, lower case; any part of the run driver may add its own.
  std::map<std::string, uint64_t> coverage;
};

std::string ResolveScenario(const RunOptions& o);
RunResult RunOne(const RunOptions& o, Trace* trace);
// The command line that replays this run bit for bit, and its arguments
// (without the program name).
std::string ReplayCommand(const RunOptions& o);
std::vector<std::string> ReplayArgs(const RunOptions& o);

}  // namespace detcd::harness

#endif  // DETCD_SCENARIOS_RUN_H_
