// The faults of a detcd-chaos run, taken from the simulator: a catalog
// scenario is run in memory (the same scenario code, the same seed) with the
// schedule recorder on (sim/schedule.h), or a schedule file is read; each of
// its fault events becomes a real-time step with the world state the event
// left behind (chaos/faults.h says how each state maps to real faults).
//
// The event's WHAT text (docs/schedule-format.md) is "BEFORE => AFTER" plus
// fault counters; AFTER is what is taken. What does not map (clock skew,
// disk EIO / stalls / torn writes, membership changes, leader transfers,
// clogged links, duplication and reordering) is counted in `not_applied`.
// Roles do not carry over: the simulator crashes ITS leader, m<id-1> here,
// which may be a follower of the real cluster.
#ifndef DETCD_CHAOS_PLAN_H_
#define DETCD_CHAOS_PLAN_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "chaos/faults.h"
#include "sim/schedule.h"

namespace detcd::chaos {

struct PlannedEvent {
  int64_t at_ns = 0;     // from the start of the fault phase, real time
  std::string source;    // "partition-heal e0#3"
  std::string sim_what;  // the simulator's description
  WorldTarget target;    // the union over the merged scenarios
};

struct Plan {
  std::vector<PlannedEvent> events;  // by time
  double loss = 0;                   // for the whole fault phase
  int64_t delay_ms = 0;
  std::vector<std::string> params;  // the simulator's parameters
  // Fault kinds seen in the simulator's run that have no real counterpart
  // here, with how many events had them.
  std::map<std::string, int> not_applied;
  int64_t sim_fault_phase_ns = 0;
  double time_scale = 1;
};

// Parses one event's WHAT into the state after it; nullopt-like false when
// the event changed no state (settings, counters only). Node ids above
// `members` (added by membership changes) are dropped and counted.
bool ParseWorldState(const std::string& what, int members, WorldTarget* out,
                     std::map<std::string, int>* not_applied);

// `scenarios`: one catalog name or several joined by '+' (their fault
// states are merged: a member is down if any scenario has it down). The
// simulator's fault phase is real_fault_ns / time_scale; its event times
// are multiplied by time_scale.
absl::StatusOr<Plan> PlanFromScenarios(const std::string& scenarios,
                                       uint64_t seed, int members,
                                       int64_t real_fault_ns,
                                       double time_scale);
absl::StatusOr<Plan> PlanFromSchedule(const sim::Schedule& s, int members,
                                      double time_scale);

}  // namespace detcd::chaos

#endif  // DETCD_CHAOS_PLAN_H_
