#include "scenarios/scenario.h"

namespace detcd::scenarios {

void ScenarioContext::Every(int64_t min_ns, int64_t max_ns,
                            std::function<void()> fn) {
  int64_t delay = rng_.Range(min_ns, max_ns);
  if (now() + delay >= fault_end_ns_) return;
  cluster_->world().After(delay, [this, min_ns, max_ns, fn] {
    fn();
    Every(min_ns, max_ns, fn);
  });
}

void ScenarioContext::After(int64_t delay_ns, std::function<void()> fn,
                            bool always) {
  if (!always && now() + delay_ns >= fault_end_ns_) return;
  cluster_->world().After(delay_ns, std::move(fn));
}

uint64_t ScenarioContext::RandomUpNode() {
  std::vector<uint64_t> up = cluster_->UpNodes();
  return up.empty() ? 0 : up[rng_.Uniform(up.size())];
}

uint64_t ScenarioContext::RandomNode() {
  std::vector<uint64_t> ids = cluster_->ids();
  return ids[rng_.Uniform(ids.size())];
}

const std::vector<Scenario>& Catalog() {
  static const std::vector<Scenario>* catalog = new std::vector<Scenario>{
      SteadyScenario(),          LeaderCrashScenario(),
      PartitionHealScenario(),   AsymmetricPartitionScenario(),
      FlakyNetworkScenario(),    CrashRestartLoopScenario(),
      DiskFaultsScenario(),      DiskFullScenario(),
      ClockSkewScenario(),       SnapshotCatchUpScenario(),
      MembershipChangeScenario(), ElectionChurnScenario(),
      SwarmScenario(),
  };
  return *catalog;
}

const Scenario* Find(std::string_view name) {
  for (const Scenario& s : Catalog()) {
    if (name == s.name) return &s;
  }
  return nullptr;
}

}  // namespace detcd::scenarios
