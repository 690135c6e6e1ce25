#include "scenarios/scenario.h"

#include "absl/strings/strip.h"

namespace detcd::scenarios {

void ScenarioContext::Every(int64_t min_ns, int64_t max_ns,
                            std::function<void()> fn) {
  if (rng_.scheduled()) {
    return ScheduledEvery(NewEventId(), 0, min_ns, max_ns, std::move(fn));
  }
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
  if (rng_.scheduled()) {
    cluster_->world().After(delay_ns, [this, id = NewEventId(), fn] {
      Fire(id, fn);
    });
    return;
  }
  cluster_->world().After(delay_ns, std::move(fn));
}

// Scheduled runs: the same events at the same times as the plain path (one
// world event per firing), plus the names, streams and skips of the
// schedule.
std::string ScenarioContext::NewEventId() {
  const int n = registered_[current_event_]++;
  return current_event_.empty() ? absl::StrCat("e", n)
                                : absl::StrCat(current_event_, ".", n);
}

void ScenarioContext::ScheduledEvery(std::string id, int firing,
                                     int64_t min_ns, int64_t max_ns,
                                     std::function<void()> fn) {
  // The chain's delays come from its own stream.
  rng_.Use(absl::StrCat("scenario/", id));
  const int64_t delay = rng_.Range(min_ns, max_ns);
  if (now() + delay >= fault_end_ns_) return;
  cluster_->world().After(delay, [this, id, firing, min_ns, max_ns, fn] {
    Fire(absl::StrCat(id, "#", firing), fn);
    ScheduledEvery(id, firing + 1, min_ns, max_ns, fn);
  });
}

// The world as a fault event sees it, in a few words: members down or
// paused, cut links, skewed clocks.
std::string ScenarioContext::WorldState() {
  std::string down, paused, cuts, skew;
  const std::vector<uint64_t> ids = cluster_->ids();
  for (uint64_t a : ids) {
    if (!cluster_->IsUp(a)) absl::StrAppend(&down, down.empty() ? "" : ",", a);
    if (cluster_->IsPaused(a)) {
      absl::StrAppend(&paused, paused.empty() ? "" : ",", a);
    }
    const sim::SimClock& c = cluster_->clock(a);
    if (c.skew_ns() != 0 || c.drift_ppm() != 0) {
      absl::StrAppend(&skew, skew.empty() ? "" : ",", a);
    }
    for (uint64_t b : ids) {
      if (a != b && cluster_->network().IsCut(a, b)) {
        absl::StrAppend(&cuts, cuts.empty() ? "" : ",", a, ">", b);
      }
    }
  }
  std::string s;
  auto add = [&s](const char* name, const std::string& v) {
    if (!v.empty()) absl::StrAppend(&s, s.empty() ? "" : " ", name, v);
  };
  add("down:", down);
  add("paused:", paused);
  add("cut:", cuts);
  add("skewed:", skew);
  return s.empty() ? "all well" : s;
}

void ScenarioContext::Fire(const std::string& id,
                           const std::function<void()>& fn) {
  sim::Decisions* d = rng_.decisions();
  if (d->replaying() && !d->Listed(sim::Schedule::UnitKind::kEvent, id)) {
    return;  // dropped from the schedule
  }
  const std::string saved = current_event_;
  const int saved_stream = rng_.stream();
  current_event_ = id;
  rng_.Use(absl::StrCat("scenario/", id));
  // What the event did, for the story: what changed in the world.
  const std::string before = WorldState();
  const auto counters = cluster_->FaultsInjected();
  const size_t unit =
      d->Note(sim::Schedule::UnitKind::kEvent, id, now(), "");
  fn();
  std::string what;
  const std::string after = WorldState();
  if (after != before) what = absl::StrCat(before, " => ", after);
  for (const auto& [name, n] : cluster_->FaultsInjected()) {
    auto it = counters.find(name);
    const uint64_t was = it == counters.end() ? 0 : it->second;
    if (n != was && name != "faults.network") {
      absl::StrAppend(&what, what.empty() ? "" : "; ",
                      absl::StripPrefix(name, "faults."), " +", n - was);
    }
  }
  d->SetWhat(unit, what.empty() ? "no visible change (settings, or nothing "
                                  "to do)"
                                : what);
  current_event_ = saved;
  rng_.UseHandle(saved_stream);
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
      RecipesScenario(),
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
