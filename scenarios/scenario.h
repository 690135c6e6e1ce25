// Named fault schedules (the catalog, catalog.cc; scenarios that tune the
// cluster have a file of their own). A scenario
// may adjust the cluster's options before it is built (Configure) and
// schedules its faults during the fault phase (Setup). Every random choice
// comes from the scenario's own stream, and every derived parameter is
// recorded with Param() so the run can print it at the start.
#ifndef DETCD_SCENARIOS_SCENARIO_H_
#define DETCD_SCENARIOS_SCENARIO_H_

#include <cstdint>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/env/env.h"
#include "harness/cluster.h"
#include "harness/trace.h"
#include "sim/schedule.h"

namespace detcd::scenarios {

class ScenarioContext {
 public:
  // A scheduled `rng` (sim/schedule.h) makes every fault event a unit of
  // the run's schedule: named by where it was registered ("e2": the setup's
  // third Every/After; "e2#4": its fifth firing; "e2#4.0": registered by
  // that firing), drawing from a stream of its own, skipped on replay if
  // the schedule does not list it.
  ScenarioContext(harness::Cluster* cluster, sim::ScheduledRng rng,
                  int64_t fault_end_ns, std::vector<std::string>* params)
      : cluster_(cluster), rng_(std::move(rng)), fault_end_ns_(fault_end_ns),
        params_(params) {}

  harness::Cluster& cluster() { return *cluster_; }
  env::Rng& rng() { return rng_; }
  int64_t fault_end_ns() const { return fault_end_ns_; }
  int64_t now() const { return cluster_->world().now(); }

  template <typename T>
  void Param(std::string_view name, const T& value) {
    params_->push_back(absl::StrCat(std::string(name), "=", value));
  }
  // Runs fn at random intervals in [min_ns, max_ns] until the fault phase
  // ends.
  void Every(int64_t min_ns, int64_t max_ns, std::function<void()> fn);
  // Runs fn once after delay (if still within the fault phase, unless
  // `always`).
  void After(int64_t delay_ns, std::function<void()> fn, bool always = false);
  // A random node id that is up (0 if none).
  uint64_t RandomUpNode();
  uint64_t RandomNode();
  // End-of-run checks of a scenario's own clients and checkers (auth.cc):
  // the run driver calls each once, after its own client-view checks, with
  // the run's failures, the checker kinds that failed (RunResult::caught_by)
  // and its coverage counters. The function keeps what it checks alive.
  using FinalCheck = std::function<void(
      std::vector<std::string>* failures, std::set<std::string>* caught_by,
      std::map<std::string, uint64_t>* coverage)>;
  void AddFinalCheck(FinalCheck f) { final_checks_.push_back(std::move(f)); }
  const std::vector<FinalCheck>& final_checks() const { return final_checks_; }
  // The scenario's own clients write keys the KV workload never reads
  // (auth.cc): the KV history's check lets revisions come from writes it
  // does not hold (CheckOptions::external_writes).
  void set_external_writes() { external_writes_ = true; }
  bool external_writes() const { return external_writes_; }

 private:
  // Scheduled runs only (see the constructor).
  std::string NewEventId();
  void ScheduledEvery(std::string id, int firing, int64_t min_ns,
                      int64_t max_ns, std::function<void()> fn);
  void Fire(const std::string& id, const std::function<void()>& fn);
  std::string WorldState();

  harness::Cluster* cluster_;
  sim::ScheduledRng rng_;
  int64_t fault_end_ns_;
  std::vector<std::string>* params_;
  std::string current_event_;              // "" during setup
  std::map<std::string, int> registered_;  // per parent event
  std::vector<FinalCheck> final_checks_;
  bool external_writes_ = false;
};

struct Scenario {
  const char* name;
  const char* description;
  // Called with the scenario's rng before the cluster exists (optional).
  void (*configure)(harness::ClusterOptions& opts, env::Rng& rng,
                    std::vector<std::string>* params);
  void (*setup)(ScenarioContext& ctx);
};

const std::vector<Scenario>& Catalog();
const Scenario* Find(std::string_view name);

// Scenarios that tune the cluster too, one per file.
Scenario SnapshotCatchUpScenario();
Scenario ElectionChurnScenario();
Scenario SwarmScenario();
Scenario Figure8Scenario();       // figure8.cc
Scenario ProcessPauseScenario();  // pause.cc
Scenario StaleLeaderScenario();   // pause.cc
Scenario AuthScenario();          // auth.cc
Scenario RecipesScenario();       // recipes.cc

// Building blocks shared by scenarios (and the swarm).
void AddLeaderCrashes(ScenarioContext& ctx);
void AddPartitions(ScenarioContext& ctx, bool asymmetric);
void AddFlakyNetwork(ScenarioContext& ctx);
void AddCrashRestarts(ScenarioContext& ctx);
void AddDiskFaults(ScenarioContext& ctx);
void AddDiskFull(ScenarioContext& ctx);
void AddClockSkew(ScenarioContext& ctx);
void AddIsolation(ScenarioContext& ctx);
void AddMembershipChanges(ScenarioContext& ctx);
void AddLeaderTransfers(ScenarioContext& ctx);
void AddElectionChurn(ScenarioContext& ctx);
void AddPauses(ScenarioContext& ctx);  // pause.cc

}  // namespace detcd::scenarios

#endif  // DETCD_SCENARIOS_SCENARIO_H_
