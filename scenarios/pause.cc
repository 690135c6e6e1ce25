// Process pauses (SIGSTOP ... SIGCONT, a long GC or VM stall; see
// harness::Cluster::Pause): the "pause" building block, the "process-pause"
// scenario, and "stale-leader", where a leader is cut off into a minority
// while its timers are stopped or slowed and clients keep reading from it.
#include <algorithm>

#include "scenarios/scenario.h"

namespace detcd::scenarios {
namespace {

using sim::kMillisecond;
using sim::kSecond;

// Members paused right now (never a majority at once: a cluster with most
// members stopped has nothing to show but unavailability).
int PausedCount(harness::Cluster& c) {
  int n = 0;
  for (uint64_t id : c.ids()) n += c.IsPaused(id) ? 1 : 0;
  return n;
}

void ProcessPauseSetup(ScenarioContext& ctx) { AddPauses(ctx); }

// One stale-leader round: the leader (with a minority of followers, maybe
// none) is cut off from the rest; it is paused for a while and then runs
// with slowed timers, or only runs slowed, so it goes on believing it leads
// long after the majority has elected someone else.
void StaleLeaderRound(ScenarioContext& ctx) {
  harness::Cluster& c = ctx.cluster();
  const uint64_t leader = c.Leader();
  if (leader == 0 || c.IsPaused(leader)) return;
  std::vector<uint64_t> ids = c.ids();
  std::vector<uint64_t> minority = {leader}, rest;
  const size_t max_minority = (ids.size() - 1) / 2;
  for (uint64_t x : ids) {
    if (x == leader) continue;
    if (minority.size() < max_minority && ctx.rng().Chance(0.5)) {
      minority.push_back(x);
    } else {
      rest.push_back(x);
    }
  }
  c.network().Partition(minority, rest);
  const bool pause = ctx.rng().Chance(0.6);
  const int slow = static_cast<int>(ctx.rng().Range(5, 40));
  const int64_t paused_for =
      pause ? ctx.rng().Range(200, 1500) * kMillisecond : 0;
  const int64_t slow_for = ctx.rng().Range(300, 2000) * kMillisecond;
  if (harness::Trace* t = c.trace()) {
    t->Event(ctx.now(), leader, "stale leader",
             absl::StrCat(minority.size(), " | ", rest.size(), ", paused ",
                          paused_for / kMillisecond, " ms, ticks x", slow));
  }
  if (pause) {
    c.Pause(leader);
  } else {
    c.SlowTicks(leader, slow);
  }
  ctx.After(
      paused_for,
      [&ctx, leader, slow, slow_for] {
        harness::Cluster& c = ctx.cluster();
        c.Resume(leader);
        c.SlowTicks(leader, slow);
        ctx.After(
            slow_for,
            [&ctx, leader] {
              ctx.cluster().SlowTicks(leader, 1);
              ctx.cluster().network().HealAll();
              if (harness::Trace* t = ctx.cluster().trace()) {
                t->Event(ctx.now(), leader, "stale leader: heal");
              }
            },
            /*always=*/true);
      },
      /*always=*/true);
}

void StaleLeaderSetup(ScenarioContext& ctx) {
  ctx.Every(1500 * kMillisecond, 3500 * kMillisecond,
            [&ctx] { StaleLeaderRound(ctx); });
}

}  // namespace

void AddPauses(ScenarioContext& ctx) {
  ctx.Every(1 * kSecond, 3 * kSecond, [&ctx] {
    harness::Cluster& c = ctx.cluster();
    const int max_paused = static_cast<int>(c.ids().size() - 1) / 2;
    if (PausedCount(c) >= max_paused) return;
    // The leader half of the time: its pause is the one that matters most.
    uint64_t id = ctx.rng().Chance(0.5) ? c.Leader() : ctx.RandomUpNode();
    if (id == 0 || c.IsPaused(id)) return;
    // Longer than an election timeout, sometimes longer than every lease
    // TTL the workload grants (1-3 s).
    const int64_t for_ns = ctx.rng().Range(150, 4000) * kMillisecond;
    c.Pause(id);
    ctx.After(for_ns, [&ctx, id] { ctx.cluster().Resume(id); },
              /*always=*/true);
  });
}

Scenario ProcessPauseScenario() {
  return {"process-pause",
          "members (often the leader) stop for longer than the election "
          "timeout and lease TTLs, then resume with messages queued",
          nullptr, ProcessPauseSetup};
}

Scenario StaleLeaderScenario() {
  return {"stale-leader",
          "the leader is cut off into a minority while paused or with slowed "
          "timers; clients keep reading from it",
          nullptr, StaleLeaderSetup};
}

}  // namespace detcd::scenarios
