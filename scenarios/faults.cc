// Fault building blocks shared by the scenarios.
#include <algorithm>

#include "scenarios/scenario.h"

namespace detcd::scenarios {

using sim::kMillisecond;
using sim::kSecond;
using harness::Trace;

void AddLeaderCrashes(ScenarioContext& ctx) {
  ctx.Every(1 * kSecond, 3 * kSecond, [&ctx] {
    uint64_t leader = ctx.cluster().Leader();
    if (leader == 0) return;
    ctx.cluster().Crash(leader);
    ctx.After(ctx.rng().Range(100 * kMillisecond, 2 * kSecond),
              [&ctx, leader] { ctx.cluster().Restart(leader); },
              /*always=*/true);
  });
}

void AddPartitions(ScenarioContext& ctx, bool asymmetric) {
  ctx.Every(1 * kSecond, 4 * kSecond, [&ctx, asymmetric] {
    std::vector<uint64_t> ids = ctx.cluster().ids();
    // Shuffle deterministically, then split off 1..n/2 nodes.
    for (size_t i = ids.size(); i > 1; --i) {
      std::swap(ids[i - 1], ids[ctx.rng().Uniform(i)]);
    }
    size_t k = 1 + ctx.rng().Uniform(std::max<size_t>(1, ids.size() / 2));
    std::vector<uint64_t> a(ids.begin(), ids.begin() + k);
    std::vector<uint64_t> b(ids.begin() + k, ids.end());
    auto& net = ctx.cluster().network();
    if (asymmetric) {
      // One direction only: a hears b, but b does not hear a (or the
      // reverse), the classic half-open link.
      bool a_to_b = ctx.rng().Chance(0.5);
      for (uint64_t x : a) {
        for (uint64_t y : b) {
          if (a_to_b) {
            net.Cut(x, y);
          } else {
            net.Cut(y, x);
          }
        }
      }
    } else {
      net.Partition(a, b);
    }
    if (Trace* t = ctx.cluster().trace()) {
      t->Event(ctx.now(), 0, asymmetric ? "one-way partition" : "partition",
               absl::StrCat(a.size(), " | ", b.size()));
    }
    ctx.After(ctx.rng().Range(300 * kMillisecond, 3 * kSecond),
              [&ctx] {
                ctx.cluster().network().HealAll();
                if (Trace* t = ctx.cluster().trace()) {
                  t->Event(ctx.now(), 0, "heal");
                }
              },
              /*always=*/true);
  });
}

void AddFlakyNetwork(ScenarioContext& ctx) {
  sim::NetworkOptions o = ctx.cluster().network().options();
  o.loss = ctx.rng().UniformDouble() * 0.15;
  o.duplicate = ctx.rng().UniformDouble() * 0.05;
  o.reorder = ctx.rng().UniformDouble() * 0.3;
  o.max_latency_ns = ctx.rng().Range(1, 30) * kMillisecond;
  ctx.Param("net.loss", o.loss);
  ctx.Param("net.duplicate", o.duplicate);
  ctx.Param("net.reorder", o.reorder);
  ctx.Param("net.max_latency_ms", o.max_latency_ns / kMillisecond);
  ctx.cluster().network().set_options(o);
  // Clogged links come and go.
  ctx.Every(500 * kMillisecond, 2 * kSecond, [&ctx] {
    uint64_t a = ctx.RandomNode(), b = ctx.RandomNode();
    if (a == b) return;
    ctx.cluster().network().Clog(
        a, b, ctx.now() + ctx.rng().Range(50 * kMillisecond, kSecond));
  });
}

void AddCrashRestarts(ScenarioContext& ctx) {
  ctx.Every(300 * kMillisecond, 2 * kSecond, [&ctx] {
    uint64_t id = ctx.RandomUpNode();
    if (id == 0) return;
    ctx.cluster().Crash(id);
    ctx.After(ctx.rng().Range(10 * kMillisecond, kSecond),
              [&ctx, id] { ctx.cluster().Restart(id); }, /*always=*/true);
  });
}

void AddDiskFaults(ScenarioContext& ctx) {
  const double eio = ctx.rng().UniformDouble() * 0.01;
  const int64_t sync_latency = ctx.rng().Range(50 * sim::kMicrosecond,
                                               5 * kMillisecond);
  // One member's disk is slow: its fsyncs take up to 20x longer and now and
  // then it hangs for seconds (a dying disk, a saturated volume), long
  // enough for elections and lease expiry to go on without it.
  const uint64_t slow = ctx.RandomNode();
  const int64_t stall_max = ctx.rng().Range(1, 5) * kSecond;
  const int64_t power_cut_every =
      ctx.rng().Range(300 * kMillisecond, 3 * kSecond);
  ctx.Param("disk.eio", eio);
  ctx.Param("disk.sync_latency_us", sync_latency / sim::kMicrosecond);
  ctx.Param("disk.slow_member", slow);
  ctx.Param("disk.stall_max_ms", stall_max / kMillisecond);
  ctx.Param("disk.power_cut_every_ms", power_cut_every / kMillisecond);
  for (uint64_t id : ctx.cluster().ids()) {
    sim::DiskFaults f;
    f.eio_probability = eio;
    f.sync_latency_ns = id == slow ? 20 * sync_latency : sync_latency;
    f.write_latency_ns = sync_latency / 50;
    ctx.cluster().disk(id).set_faults(f);
  }
  ctx.Every(1 * kSecond, 4 * kSecond, [&ctx, slow, stall_max] {
    const int64_t until =
        ctx.now() + ctx.rng().Range(200 * kMillisecond, stall_max);
    ctx.cluster().disk(slow).StallUntil(until);
    if (Trace* t = ctx.cluster().trace()) {
      t->Event(ctx.now(), slow, "disk stall",
               absl::StrCat((until - ctx.now()) / kMillisecond, " ms"));
    }
  });
  // The power fails in the middle of an fsync: the member dies with its
  // last write in flight, and the crash decides what reached the disk.
  ctx.Every(power_cut_every / 2, power_cut_every, [&ctx] {
    const uint64_t id = ctx.RandomUpNode();
    if (id == 0) return;
    sim::SimDisk& d = ctx.cluster().disk(id);
    sim::DiskFaults f = d.faults();
    f.power_cut_at_next_sync = true;
    d.set_faults(f);
  });
  // Crashes make torn and lost unsynced writes matter (every crash tears
  // and loses unsynced data: harness/cluster.cc).
  AddCrashRestarts(ctx);
}

void AddDiskFull(ScenarioContext& ctx) {
  ctx.Every(1 * kSecond, 3 * kSecond, [&ctx] {
    uint64_t id = ctx.RandomNode();
    sim::SimDisk& d = ctx.cluster().disk(id);
    // No room, or a little (a few writes' worth), so the disk fills in the
    // middle of a write.
    const uint64_t room =
        ctx.rng().Chance(0.5) ? 0 : ctx.rng().Range(0, 8 * 1024);
    d.set_capacity_bytes(d.used_bytes() + room);
    if (Trace* t = ctx.cluster().trace()) t->Event(ctx.now(), id, "disk full");
    ctx.After(ctx.rng().Range(200 * kMillisecond, 2 * kSecond),
              [&ctx, id] {
                ctx.cluster().disk(id).set_capacity_bytes(0);  // unlimited
                ctx.cluster().Restart(id);  // if it fail-stopped
              },
              /*always=*/true);
  });
}

void AddClockSkew(ScenarioContext& ctx) {
  // Declared first: the lease checker's bounds come from it. Skew and drift
  // stay within it; the jumps go beyond any bound, so they are declared
  // as such and each one is reported to the checker with its size.
  harness::TimingModel tm = ctx.cluster().timing();
  tm.max_skew_ns = std::max<int64_t>(tm.max_skew_ns, 500 * kMillisecond);
  tm.max_drift_ppm = std::max<int64_t>(tm.max_drift_ppm, 5000);
  tm.clock_jumps = true;
  ctx.cluster().set_timing(tm);
  ctx.Param("lease.waived",
            "early-revoke bound lowered by each clock jump (jumps beyond "
            "the declared drift bound)");
  for (uint64_t id : ctx.cluster().ids()) {
    sim::SimClock& c = ctx.cluster().clock(id);
    c.set_skew_ns(ctx.rng().Range(-500, 500) * kMillisecond);
    c.set_drift_ppm(ctx.rng().Range(-5000, 5000));
    ctx.Param(absl::StrCat("clock", id, ".skew_ms"), c.skew_ns() / kMillisecond);
    ctx.Param(absl::StrCat("clock", id, ".drift_ppm"), c.drift_ppm());
  }
  ctx.Every(1 * kSecond, 4 * kSecond, [&ctx] {
    uint64_t id = ctx.RandomNode();
    ctx.cluster().clock(id).Jump(ctx.rng().Range(0, 2000) * kMillisecond);
  });
}

void AddIsolation(ScenarioContext& ctx) {
  ctx.Every(2 * kSecond, 4 * kSecond, [&ctx] {
    uint64_t id = ctx.RandomUpNode();
    if (id == 0) return;
    std::vector<uint64_t> rest;
    for (uint64_t x : ctx.cluster().ids()) {
      if (x != id) rest.push_back(x);
    }
    ctx.cluster().network().Partition({id}, rest);
    if (Trace* t = ctx.cluster().trace()) t->Event(ctx.now(), id, "isolated");
    ctx.After(ctx.rng().Range(1 * kSecond, 3 * kSecond),
              [&ctx] { ctx.cluster().network().HealAll(); }, /*always=*/true);
  });
}

// Every change goes through the Cluster service's requests (MemberAdd,
// MemberPromote, MemberRemove, MemberUpdate) to some member, as an
// operator's etcdctl would: the engine's rules may refuse it (one learner,
// a learner not in sync, strict reconfiguration, unknown ids), and later
// steps try again.
void AddMembershipChanges(ScenarioContext& ctx) {
  ctx.Every(1 * kSecond, 3 * kSecond, [&ctx] {
    harness::Cluster& c = ctx.cluster();
    raft::ConfState cs = c.Members();
    if (cs.voters.empty()) return;  // no leader right now
    // A learner waiting is promoted first, most of the time (it may not
    // be in sync yet: then the leader refuses and a later step retries).
    if (!cs.learners.empty() && ctx.rng().Chance(0.6)) {
      c.PromoteLearner(cs.learners[ctx.rng().Uniform(cs.learners.size())]);
      return;
    }
    switch (ctx.rng().Uniform(5)) {
      case 0:  // add a learner (promoted by a later step)
      case 1:
        if (cs.voters.size() + cs.learners.size() < 7) c.AddMember(true);
        break;
      case 2:  // remove a voter, keeping at least three; often the leader
        if (cs.voters.size() > 3) {
          const uint64_t leader = c.Leader();
          c.RemoveMember(ctx.rng().Chance(0.5) && leader != 0
                             ? leader
                             : cs.voters[ctx.rng().Uniform(cs.voters.size())]);
        }
        break;
      case 3: {  // a member loses its disk and is replaced
        uint64_t id = cs.voters[ctx.rng().Uniform(cs.voters.size())];
        if (cs.voters.size() >= 3) c.ReplaceWiped(id);
        break;
      }
      case 4: {  // a member moves: new peer URLs
        std::vector<uint64_t> all = cs.voters;
        all.insert(all.end(), cs.learners.begin(), cs.learners.end());
        c.UpdatePeerUrls(all[ctx.rng().Uniform(all.size())]);
        break;
      }
    }
  });
}

void AddLeaderTransfers(ScenarioContext& ctx) {
  ctx.Every(1 * kSecond, 3 * kSecond, [&ctx] {
    raft::ConfState cs = ctx.cluster().Members();
    if (cs.voters.empty()) return;
    ctx.cluster().TransferLeader(cs.voters[ctx.rng().Uniform(cs.voters.size())]);
  });
}

void AddElectionChurn(ScenarioContext& ctx) {
  ctx.Every(100 * kMillisecond, 500 * kMillisecond, [&ctx] {
    harness::Cluster& c = ctx.cluster();
    uint64_t leader = c.Leader();
    if (leader == 0) return;
    auto restart_later = [&ctx](uint64_t id) {
      ctx.After(ctx.rng().Range(1 * kMillisecond, 200 * kMillisecond),
                [&ctx, id] { ctx.cluster().Restart(id); }, /*always=*/true);
    };
    const uint64_t dice = ctx.rng().Uniform(10);
    if (dice < 4) {
      c.Crash(leader);
      restart_later(leader);
    } else if (dice < 7) {
      // The leader keeps a minority of followers (maybe none): it can
      // append but not commit, and its entries reach only that minority.
      std::vector<uint64_t> with = {leader}, rest;
      std::vector<uint64_t> ids = c.ids();
      const size_t minority = (ids.size() - 1) / 2;
      for (uint64_t x : ids) {
        if (x == leader) continue;
        if (with.size() < minority && ctx.rng().Chance(0.5)) {
          with.push_back(x);
        } else {
          rest.push_back(x);
        }
      }
      c.network().Partition(with, rest);
      if (Trace* t = c.trace()) {
        t->Event(ctx.now(), leader, "leader in minority",
                 absl::StrCat(with.size(), " | ", rest.size()));
      }
      ctx.After(ctx.rng().Range(50 * kMillisecond, 500 * kMillisecond),
                [&ctx] { ctx.cluster().network().HealAll(); },
                /*always=*/true);
    } else {
      uint64_t id = ctx.RandomUpNode();
      if (id == 0) return;
      c.Crash(id);
      restart_later(id);
    }
  });
}

}  // namespace detcd::scenarios
