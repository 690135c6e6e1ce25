// Scenario "figure8": directed schedules for Raft's Figure 8 (§5.4.2), the
// situation in which a leader holds entries of an earlier term that a
// quorum has not stored yet, and must not commit them by counting replicas.
//
// Each round, with L the leader, B one follower (the carrier) and R the
// other voters:
//  1. L's appends reach only B (L->R cut) and B's answers never reach L
//     (B->L cut): the writes clients send L meanwhile become entries of
//     L's term on L and B only, never committed. R cannot elect anyone
//     among themselves (R<->R cut) and L ignores them (it still leads).
//  2. L is cut off entirely. Once its heartbeats stop, B campaigns and R
//     elect it: B leads a new term with a tail of L's term that R lack, and
//     replicates it to R in small messages (max_size_per_msg is tiny), so
//     the index a quorum has stored passes through old-term entries before
//     B's own first entry arrives. Sometimes B crashes right after its
//     election, before that entry replicates (Figure 8 (c)-(d)).
//  3. Everything heals; the next round starts a second or two later.
// A leader that commits by counting replicas commits L's entries in step
// 2; the safety checker's commit-rule oracle reports it at once.
#include <algorithm>

#include "scenarios/scenario.h"

namespace detcd::scenarios {
namespace {

using sim::kMillisecond;
using sim::kSecond;

void Configure(harness::ClusterOptions& opts, env::Rng& rng,
               std::vector<std::string>* params) {
  opts.node.raft.max_size_per_msg = 24 + rng.Uniform(200);
  opts.node.raft.max_inflight_msgs = 1 + static_cast<int>(rng.Uniform(3));
  params->push_back(
      absl::StrCat("raft.max_size_per_msg=", opts.node.raft.max_size_per_msg));
  params->push_back(absl::StrCat("raft.max_inflight_msgs=",
                                 opts.node.raft.max_inflight_msgs));
}

// Calls fn(id) once `id` leads, polling every few milliseconds until
// `deadline`.
void WhenLeads(ScenarioContext& ctx, uint64_t id, int64_t deadline,
               std::function<void()> fn) {
  if (ctx.now() >= deadline) return;
  if (ctx.cluster().Leader() == id && ctx.cluster().IsUp(id)) {
    fn();
    return;
  }
  ctx.After(
      2 * kMillisecond,
      [&ctx, id, deadline, fn] { WhenLeads(ctx, id, deadline, fn); },
      /*always=*/true);
}

void Round(ScenarioContext& ctx) {
  harness::Cluster& c = ctx.cluster();
  const uint64_t leader = c.Leader();
  if (leader == 0 || c.IsPaused(leader)) return;
  std::vector<uint64_t> others;
  for (uint64_t v : c.Members().voters) {
    if (v != leader && c.IsUp(v)) others.push_back(v);
  }
  if (others.size() < 2) return;
  const uint64_t carrier = others[ctx.rng().Uniform(others.size())];
  std::vector<uint64_t> rest;
  for (uint64_t v : others) {
    if (v != carrier) rest.push_back(v);
  }
  auto& net = c.network();
  // Step 1: the old leader's entries reach the carrier only.
  net.Cut(carrier, leader);
  for (uint64_t r : rest) {
    net.Cut(leader, r);
    for (uint64_t s : rest) {
      if (r != s) net.Cut(r, s);
    }
  }
  if (harness::Trace* t = c.trace()) {
    t->Event(ctx.now(), leader, "figure8: entries to the carrier only",
             absl::StrCat("carrier ", carrier));
  }
  const int64_t spread = ctx.rng().Range(100, 500) * kMillisecond;
  const bool crash_new_leader = ctx.rng().Chance(0.5);
  ctx.After(
      spread,
      [&ctx, leader, carrier, rest, crash_new_leader] {
        harness::Cluster& c = ctx.cluster();
        // Step 2: the old leader is gone; the carrier must win with R.
        for (uint64_t id : c.ids()) {
          if (id != leader) c.network().CutBoth(leader, id);
        }
        const int64_t hold = ctx.rng().Range(400, 1200) * kMillisecond;
        if (crash_new_leader) {
          const int64_t delay = ctx.rng().Range(0, 15) * kMillisecond;
          const int64_t down = ctx.rng().Range(20, 300) * kMillisecond;
          WhenLeads(ctx, carrier, ctx.now() + hold,
                    [&ctx, carrier, delay, down] {
                      ctx.After(
                          delay,
                          [&ctx, carrier, down] {
                            ctx.cluster().Crash(carrier);
                            ctx.After(down,
                                      [&ctx, carrier] {
                                        ctx.cluster().Restart(carrier);
                                      },
                                      /*always=*/true);
                          },
                          /*always=*/true);
                    });
        }
        // Step 3: heal.
        ctx.After(
            hold,
            [&ctx] {
              ctx.cluster().network().HealAll();
              if (harness::Trace* t = ctx.cluster().trace()) {
                t->Event(ctx.now(), 0, "figure8: heal");
              }
            },
            /*always=*/true);
      },
      /*always=*/true);
}

void Setup(ScenarioContext& ctx) {
  ctx.Every(1200 * kMillisecond, 2500 * kMillisecond,
            [&ctx] { Round(ctx); });
}

}  // namespace

Scenario Figure8Scenario() {
  return {"figure8",
          "a new leader inherits old-term entries a quorum lacks and "
          "replicates them in small pieces (Raft Figure 8), sometimes "
          "crashing before its own entry replicates",
          Configure, Setup};
}

}  // namespace detcd::scenarios
