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
  // Scenarios that are one or two fault building blocks (faults.cc) and keep
  // the default cluster options are listed here; the ones that also tune
  // the cluster have a file of their own.
  static const std::vector<Scenario>* catalog = new std::vector<Scenario>{
      {"steady", "no faults: the baseline every other scenario is compared with",
       nullptr, [](ScenarioContext&) {}},
      {"leader-crash",
       "the leader crashes every few seconds and restarts after a while",
       nullptr, AddLeaderCrashes},
      {"partition-heal",
       "random symmetric partitions (minority | majority) that heal", nullptr,
       [](ScenarioContext& c) { AddPartitions(c, /*asymmetric=*/false); }},
      {"asymmetric-partition",
       "one-way link cuts: a node hears but is not heard (or the reverse)",
       nullptr,
       [](ScenarioContext& c) { AddPartitions(c, /*asymmetric=*/true); }},
      {"flaky-network",
       "message loss, duplication, reordering, latency spikes and clogged "
       "links",
       nullptr, AddFlakyNetwork},
      {"crash-restart-loop",
       "random nodes crash (losing unsynced data) and restart, over and over",
       nullptr, AddCrashRestarts},
      {"disk-faults",
       "EIO on writes and syncs, torn and lost unsynced writes at crashes",
       nullptr, AddDiskFaults},
      {"disk-full",
       "a node's disk fills up (ENOSPC) in the middle of writes, then frees",
       nullptr, AddDiskFull},
      {"clock-skew",
       "per-node clock skew, drift (tick rates differ) and forward jumps",
       nullptr, AddClockSkew},
      SnapshotCatchUpScenario(),
      {"membership-change",
       "learners added and promoted, voters removed, wiped members replaced, "
       "leadership transferred, members restarting (from their snapshots) "
       "meanwhile",
       nullptr,
       [](ScenarioContext& c) {
         AddMembershipChanges(c);
         AddLeaderTransfers(c);
         // Now and then a member restarts: it comes back from its newest
         // snapshot, which must carry the membership at its index.
         c.Every(1 * sim::kSecond, 4 * sim::kSecond, [&c] {
           const uint64_t id = c.RandomUpNode();
           if (id == 0) return;
           c.cluster().Crash(id);
           c.After(c.rng().Range(10 * sim::kMillisecond, 500 * sim::kMillisecond),
                   [&c, id] { c.cluster().Restart(id); }, /*always=*/true);
         });
       }},
      ElectionChurnScenario(),
      SwarmScenario(),
      Figure8Scenario(),
      ProcessPauseScenario(),
      StaleLeaderScenario(),
      AuthScenario(),
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
