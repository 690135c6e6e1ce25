#include "scenarios/run.h"

#include <algorithm>
#include <functional>
#include <map>
#include <memory>
#include <optional>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "engine/util/buggify.h"
#include "engine/util/check.h"
#include "engine/util/planted.h"
#include "engine/util/probes.h"
#include "harness/cluster.h"
#include "harness/linearizability.h"
#include "scenarios/scenario.h"

namespace detcd::harness {

std::string ResolveScenario(const RunOptions& o) {
  if (o.scenario != "all") return o.scenario;
  const auto& cat = scenarios::Catalog();
  return cat[o.seed % cat.size()].name;
}

void ApplySchedule(const sim::Schedule& s, RunOptions* o) {
  o->seed = s.seed;
  o->scenario = s.scenario;
  o->nodes = s.nodes;
  o->ops = s.ops;
  o->clients = s.clients;
  o->watchers = s.watchers;
  o->lease_clients = s.lease_clients;
  if (s.fault_phase_ns > 0) o->fault_phase_ns = s.fault_phase_ns;
  // A replay runs with the recorded BUGGIFY setting unless told otherwise.
  if (s.buggify == "all" && o->buggify_point.empty()) {
    o->buggify = true;
  } else if (!s.buggify.empty() && s.buggify != "all" && !o->buggify &&
             o->buggify_point.empty()) {
    o->buggify_point = s.buggify;
  }
}

std::vector<std::string> ReplayArgs(const RunOptions& o) {
  std::vector<std::string> args = {
      "--seed",  absl::StrCat(o.seed), "--scenario", ResolveScenario(o),
      "--nodes", absl::StrCat(o.nodes), "--ops",     absl::StrCat(o.ops)};
  if (o.clients != RunOptions().clients) {
    args.push_back("--clients");
    args.push_back(absl::StrCat(o.clients));
  }
  if (!o.bug.empty()) {
    args.push_back("--bug");
    args.push_back(o.bug);
  }
  if (o.check_determinism) args.push_back("--check-determinism");
  if (o.accept_inconclusive) args.push_back("--accept-inconclusive");
  if (!o.buggify_point.empty()) {
    args.push_back("--buggify-point");
    args.push_back(o.buggify_point);
  } else if (o.buggify) {
    args.push_back("--buggify");
  }
  return args;
}

std::string ReplayCommand(const RunOptions& o) {
  return absl::StrCat("detcd-sim ", absl::StrJoin(ReplayArgs(o), " "));
}

// Why the cluster did not converge: the leader, every member's applied /
// committed index, and for a member that is down why it is (a restart that
// failed names its error).
static std::string LivenessFailure(Cluster& cluster, bool ops_done,
                                   const RunOptions& o) {
  std::string why = absl::StrCat(
      "liveness: no convergence within ", o.liveness_bound_ns / sim::kSecond,
      " s after faults stopped (leader ", cluster.Leader(), ", ops done ",
      ops_done ? "yes" : "no", "; applied:");
  std::vector<std::string> down;
  for (uint64_t id : cluster.ids()) {
    server::Node* n = cluster.node(id);
    if (n != nullptr) {
      absl::StrAppend(&why, " ", id, "=", n->applied_index(), "/",
                      n->raft().log().committed());
    } else if (cluster.IsRemoved(id)) {
      absl::StrAppend(&why, " ", id, "=removed");
    } else {
      absl::StrAppend(&why, " ", id, "=down");
      const std::string err = cluster.StartError(id);
      down.push_back(absl::StrCat(
          "member ", id, " down: ",
          err.empty() ? "not restarted" : "restart failed: " + err));
    }
  }
  absl::StrAppend(&why, ")");
  for (const std::string& d : down) absl::StrAppend(&why, "; ", d);
  return why;
}

// The checks of what clients saw: linearizability of the KV history, the
// watch guarantees and lease safety, plus equal MVCC state on all members.
static void CheckClientView(Cluster& cluster, Workload& workload,
                            bool converged, bool external_writes,
                            const RunOptions& o, RunResult* res) {
  const int64_t t0 = o.wall_ns ? o.wall_ns() : 0;
  // No external writes: every revision comes from a recorded request (the
  // lease clients' puts and revokes, and each lease's expiry as a revoke
  // that may happen any time after its grant, are in the history too).
  CheckOptions copts;
  // Except in scenarios whose own clients write keys the workload never
  // reads (ScenarioContext::set_external_writes).
  copts.external_writes = external_writes;
  CheckResult lin = CheckLinearizable(workload.history(), copts);
  res->lin_states = lin.states_explored;
  if (!lin.ok) {
    res->failures.push_back("linearizability: " + lin.explanation);
    res->caught_by.insert("linearizability");
  }
  if (lin.inconclusive) {
    res->params.push_back("lincheck=inconclusive");
    res->lin_inconclusive = true;
    if (!o.accept_inconclusive) {
      res->failures.push_back(absl::StrCat(
          "linearizability: inconclusive: the search hit its state limit "
          "after ", lin.states_explored, " states (nothing proven; "
          "--accept-inconclusive accepts this knowingly)"));
      res->caught_by.insert("linearizability");
    }
  }
  // Every up member's revision: a watcher still connected to it must have
  // received everything up to it (converged run or not).
  std::map<uint64_t, int64_t> applied_rev;
  for (uint64_t id : cluster.UpNodes()) {
    applied_rev[id] = cluster.server(id)->state().kv().Rev();
  }
  // Members that applied everything the leader committed.
  const raft::ConfState cs = cluster.Members();
  std::vector<uint64_t> members;
  for (uint64_t id : cluster.UpNodes()) {
    if (cs.Contains(id)) {
      members.push_back(id);
    }
  }
  std::vector<std::string> v;
  workload.watch_checker().Check(applied_rev, &v);
  if (!v.empty()) res->caught_by.insert("watch");
  const size_t watch_failures = v.size();
  for (const std::string& s : workload.lease_checker().violations()) {
    v.push_back(s);
  }
  const int64_t now = cluster.world().now();
  std::vector<int64_t> gone = workload.lease_checker().MustBeGone(now);
  uint64_t ref_node = 0, ref_hash = 0, ref_index = 0;
  // Current members only: a removed member that is still running keeps
  // whatever state it had when it left.
  for (uint64_t id : members) {
    const server::EtcdServer* s = cluster.server(id);
    if (std::string e = s->state().CheckLeaseInvariant(); !e.empty()) {
      v.push_back(absl::StrCat("lease safety on member ", id, ": ", e));
      res->caught_by.insert("lease");
    }
    for (int64_t lease : gone) {
      if (s->state().lessor().Get(lease).ok()) {
        v.push_back(absl::StrCat(
            "lease safety on member ", id, ": lease ", lease,
            " outlived its deadline by ",
            (now - workload.lease_checker().Deadline(lease)) /
                sim::kMillisecond,
            " ms"));
        res->caught_by.insert("lease");
        break;
      }
    }
    if (converged) {
      const uint64_t h = s->state().kv().Hash();
      if (ref_node == 0) {
        ref_node = id;
        ref_hash = h;
        ref_index = s->node().applied_index();
      } else if (h != ref_hash && s->node().applied_index() == ref_index) {
        res->caught_by.insert("safety");
        v.push_back(absl::StrCat("mvcc state of member ", id,
                                 " differs from member ", ref_node,
                                 " at applied index ", ref_index));
      }
    }
  }
  if (v.size() > watch_failures &&
      !workload.lease_checker().violations().empty()) {
    res->caught_by.insert("lease");
  }
  for (std::string& s : v) res->failures.push_back(std::move(s));
  res->watch_events = workload.watch_checker().events_received();
  if (o.wall_ns) res->checker_wall_ns = o.wall_ns() - t0;
  res->history_ops = workload.history().ops.size();
}

// Coverage floors (as the raft property test has): a seed in which almost
// nothing succeeded, or in which no fault fired although its scenario
// injects faults, passes without having tested much. It says so; the sweep
// counts such seeds and fails when they are common.
static void NoteCoverageFloors(const RunOptions& o, RunResult* res) {
  // Fewer than 10% of the client operations succeeded.
  if (o.ops > 0 && res->ops.ok * 10 < static_cast<uint64_t>(o.ops)) {
    res->notes.push_back(absl::StrCat(
        "idle: only ", res->ops.ok, " of ", o.ops,
        " client operations succeeded (floor: 10%)"));
  }
  // "steady" is the one scenario without faults, by design.
  if (res->faults == 0 && res->scenario != "steady") {
    res->notes.push_back(absl::StrCat("idle: no fault fired (scenario ",
                                      res->scenario, " injects faults)"));
  }
  res->idle = !res->notes.empty();
}

RunResult RunOne(const RunOptions& o, Trace* trace) {
  RunResult res;
  // Probes count for one run at a time (engine/util/probes.h).
  probes::ResetAll();
  res.scenario = ResolveScenario(o);
  const scenarios::Scenario* scenario = scenarios::Find(res.scenario);
  if (scenario == nullptr) {
    res.failures.push_back("unknown scenario " + res.scenario);
    return res;
  }
  env::SeededRng root(o.seed);
  // The world's decisions: plain SeededRng streams, unless the run records
  // or replays them (o.decisions).
  sim::ScheduledRng scenario_rng(root.Derive("scenario"), o.decisions,
                                 "scenario");

  ClusterOptions copts;
  copts.nodes = o.nodes;
  copts.node.election_ticks = 10;
  copts.node.heartbeat_ticks = 1;
  copts.node.request_timeout_ticks = 100;
  copts.node.snapshot_count = 1000;
  copts.node.snapshot_catchup_entries = 100;
  copts.node.raft.max_inflight_msgs = 64;
  // Compactions removed a few records per step, so that their removal
  // interleaves with writes, reads, hashes, snapshots and restores (the
  // real server's steps are 8192 records: these stores are small).
  copts.server.compact_step_records = 4;
  // Planted bugs: the same set in every options struct with a site.
  planted::Bugs bugs;
  if (!o.bug.empty()) {
    std::optional<planted::Bug> b = planted::Find(o.bug);
    DETCD_CHECK_MSG(b.has_value(), "unknown planted bug");
    bugs.Plant(*b);
  }
  copts.node.bugs = bugs;
  copts.node.raft.bugs = bugs;
  copts.server.bugs = bugs;
  // BUGGIFY: one object for the whole cluster (the world is
  // single-threaded), on a stream of its own so the engine's draws stay
  // where they were; it outlives the cluster (declared before it).
  std::optional<buggify::Buggify> bz;
  if (o.buggify || !o.buggify_point.empty()) {
    std::optional<buggify::Point> only;
    if (!o.buggify_point.empty()) {
      only = buggify::Find(o.buggify_point);
      DETCD_CHECK_MSG(only.has_value(), "unknown buggify point");
    }
    bz.emplace(root.Derive("buggify").seed(), only);
    copts.node.buggify = &*bz;
  }
  // Leases: checkpoint remaining TTLs every second (etcd: 5 min) so that
  // leader changes inside a short run exercise them.
  copts.server.lease.checkpoint_interval_ns = sim::kSecond;
  // Watch limits per seed: etcd's (1.5 MiB per response, 1,000 events per
  // catch-up read), middling, or tiny (a few hundred bytes, a few events),
  // so that fragmenting and slow-watcher catch-up run under all of them.
  {
    sim::ScheduledRng wr(root.Derive("watch-limits"), o.decisions,
                         "watch-limits");
    mvcc::WatchLimits& wl = copts.server.watch;
    const uint64_t bytes_kind = wr.Uniform(3), events_kind = wr.Uniform(3);
    wl.max_response_bytes = bytes_kind == 0   ? 1536 * 1024
                            : bytes_kind == 1 ? wr.Range(2048, 16384)
                                              : wr.Range(200, 800);
    wl.max_events_per_sync = events_kind == 0   ? 1000
                             : events_kind == 1 ? wr.Range(20, 200)
                                                : wr.Range(2, 8);
  }
  // A watcher created behind the store is caught up by Create from a read
  // of the default 256 events, of a few (partly caught up, the rest at
  // the syncs), or of none (etcd's way: all at the syncs). A stream of
  // its own, so the draws above stay as they were.
  {
    sim::ScheduledRng cr(root.Derive("watch-create"), o.decisions,
                         "watch-create");
    mvcc::WatchLimits& wl = copts.server.watch;
    const uint64_t kind = cr.Uniform(3);
    wl.max_events_per_create = kind == 0   ? 256
                               : kind == 1 ? 0
                                           : cr.Range(1, 8);
  }
  // Background maintenance per seed: about half the runs have etcd's auto
  // compactor (periodic or revision mode, short retentions so that it
  // fires several times in a run) and the periodic corruption check (HashKV
  // of every member at the leader's revision), so their proposals and peer
  // requests mix with the faults and the workload. Their own stream: the
  // other choices of a seed stay as they were.
  std::string maintenance = "off";
  int64_t defrag_every_ns = 0;
  {
    sim::ScheduledRng mr(root.Derive("maintenance"), o.decisions,
                         "maintenance");
    if (mr.Chance(0.5)) {
      server::CompactorOptions& ac = copts.server.auto_compaction;
      if (mr.Chance(0.5)) {
        ac.mode = server::CompactorOptions::Mode::kPeriodic;
        ac.retention = mr.Range(500, 4000) * sim::kMillisecond;
        maintenance = absl::StrCat("periodic:", ac.retention / sim::kMillisecond,
                                   "ms");
      } else {
        ac.mode = server::CompactorOptions::Mode::kRevision;
        ac.retention = mr.Range(1, 50);
        ac.revision_interval_ns = mr.Range(300, 2000) * sim::kMillisecond;
        maintenance = absl::StrCat(
            "revision:", ac.retention, "/",
            ac.revision_interval_ns / sim::kMillisecond, "ms");
      }
      copts.server.corrupt_check.interval_ns =
          mr.Range(500, 3000) * sim::kMillisecond;
      absl::StrAppend(&maintenance, ",corrupt-check:",
                      copts.server.corrupt_check.interval_ns /
                          sim::kMillisecond,
                      "ms");
    }
    // Defragmentation of a random member now and then (a snapshot written
    // in steps, answered once written): a crash, a compaction or a
    // leader's snapshot lands in the middle of some. Drawn last, so the
    // choices above stay what they were.
    if (mr.Chance(0.5)) {
      defrag_every_ns = mr.Range(200, 2000) * sim::kMillisecond;
      const std::string d =
          absl::StrCat("defrag:", defrag_every_ns / sim::kMillisecond, "ms");
      maintenance = maintenance == "off" ? d : maintenance + "," + d;
    }
  }
  copts.trace_log = o.trace_log;
  copts.decisions = o.decisions;
  res.params.push_back(absl::StrCat("seed=", o.seed));
  res.params.push_back(absl::StrCat("scenario=", res.scenario));
  res.params.push_back(absl::StrCat("nodes=", o.nodes));
  res.params.push_back(absl::StrCat("ops=", o.ops));
  res.params.push_back(absl::StrCat("clients=", o.clients));
  res.params.push_back(absl::StrCat(
      "watch_limits=", copts.server.watch.max_response_bytes, "B/",
      copts.server.watch.max_events_per_sync, "ev/",
      copts.server.watch.max_events_per_create, "ev"));
  res.params.push_back("maintenance=" + maintenance);
  if (!o.bug.empty()) res.params.push_back("bug=" + o.bug);
  if (bz) res.params.push_back("buggify=" + bz->Describe());
  if (scenario->configure) {
    scenario->configure(copts, scenario_rng, &res.params);
  }

  Cluster cluster(o.seed, copts, trace);
  const int64_t fault_end = o.fault_phase_ns;
  scenarios::ScenarioContext ctx(&cluster, scenario_rng, fault_end,
                                 &res.params);
  scenario->setup(ctx);

  WorkloadOptions wopts;
  wopts.clients = o.clients;
  wopts.ops = o.ops;
  wopts.watchers = o.watchers;
  wopts.lease_clients = o.lease_clients;
  // Spread the operations over the fault phase.
  wopts.max_think_ns = std::max<int64_t>(
      sim::kMillisecond,
      2 * o.fault_phase_ns / std::max(1, o.ops / std::max(1, o.clients)));
  res.params.push_back(absl::StrCat("think_max_ms=",
                                    wopts.max_think_ns / sim::kMillisecond));
  Workload workload(&cluster, cluster.DeriveRng("workload"), wopts,
                    o.decisions);
  workload.Start();
  uint64_t defrags = 0;  // answered OK
  env::SeededRng defrag_rng = cluster.DeriveRng("defrag");
  auto defrag = std::make_shared<std::function<void()>>();
  if (defrag_every_ns > 0) {
    *defrag = [&, weak = std::weak_ptr<std::function<void()>>(defrag)] {
      if (cluster.world().now() >= fault_end) return;
      const std::vector<uint64_t> up = cluster.UpNodes();
      if (!up.empty()) {
        cluster.Call(
            up[defrag_rng.Uniform(up.size())], [&](server::EtcdServer& s) {
              s.Defragment(
                  etcdserverpb::DefragmentRequest(),
                  [&](absl::StatusOr<etcdserverpb::DefragmentResponse> r) {
                    defrags += r.ok();
                  });
            });
      }
      if (auto again = weak.lock()) {
        cluster.world().After(defrag_every_ns, [again] { (*again)(); });
      }
    };
    cluster.world().After(defrag_every_ns, [defrag] { (*defrag)(); });
  }

  sim::World& world = cluster.world();
  bool livelocked = false;
  // Runs up to `limit` in short steps, stopping at the event budget.
  // A safety violation ends the run at once: what follows it is noise, and
  // the replay stops right where things went wrong.
  auto stop = [&] { return livelocked || !cluster.checker().ok(); };
  auto run_until = [&](int64_t limit) {
    while (world.now() < limit && !stop()) {
      world.RunUntil(std::min(limit, world.now() + 50 * sim::kMillisecond));
      livelocked = world.events_run() > o.max_events;
    }
  };
  // Fault phase.
  run_until(fault_end);
  if (trace) trace->Event(world.now(), 0, "faults stop");
  for (const auto& [name, n] : cluster.FaultsInjected()) {
    res.coverage[name] += n;
    res.faults += n;
  }

  // Liveness phase: no more faults; everything must converge.
  cluster.network().HealAll();
  cluster.StopInjectedCrashes();
  cluster.network().set_options(sim::NetworkOptions());
  for (uint64_t id : cluster.ids()) {
    cluster.disk(id).set_faults(sim::DiskFaults());
    cluster.disk(id).set_capacity_bytes(0);
  }
  const int64_t deadline = world.now() + o.liveness_bound_ns;
  int64_t next_reconcile = world.now();
  bool converged = false;
  while (world.now() < deadline && !stop()) {
    if (world.now() >= next_reconcile) {
      cluster.Reconcile();
      next_reconcile = world.now() + sim::kSecond;
    }
    run_until(world.now() + 50 * sim::kMillisecond);
    if (workload.done() && cluster.Converged() &&
        world.now() >= workload.lease_checker().SettleTime()) {
      converged = true;
      break;
    }
  }
  if (converged) {
    // Let expired leases be revoked and watchers catch up, then converge
    // again on that.
    run_until(world.now() + sim::kSecond);
    while (world.now() < deadline && !stop() && !cluster.Converged()) {
      run_until(world.now() + 50 * sim::kMillisecond);
    }
    run_until(world.now() + 200 * sim::kMillisecond);
    // Background proposals (lease checkpoints, auto compactions) may be in
    // flight at any instant: what counts is that the cluster settles again
    // before the deadline, not that it is idle at one chosen moment.
    while (world.now() < deadline && !stop() && !cluster.Converged()) {
      run_until(world.now() + 50 * sim::kMillisecond);
    }
    converged = cluster.Converged();
  }
  if (livelocked) {
    res.caught_by.insert("liveness");
    res.failures.push_back(absl::StrCat(
        "liveness: livelock, more than ", o.max_events, " events by ",
        static_cast<double>(world.now()) / sim::kSecond,
        " s simulated (a message storm that never converges)"));
  } else if (!converged && cluster.checker().ok()) {
    res.caught_by.insert("liveness");
    res.failures.push_back(LivenessFailure(cluster, workload.done(), o));
  }
  // Watchers catch up with their members before the watch checker asks
  // each connected one for everything its member applied (tiny watch
  // limits make catch-up slow; the hubs say when nobody is behind).
  if (!livelocked) {
    auto watchers_synced = [&] {
      for (uint64_t id : cluster.UpNodes()) {
        if (cluster.server(id)->watch_hub().unsynced() > 0) return false;
      }
      return true;
    };
    const int64_t until =
        world.now() + (converged ? 10 : 2) * sim::kSecond;
    while (world.now() < until && !stop() && !watchers_synced()) {
      run_until(world.now() + 50 * sim::kMillisecond);
    }
  }
  cluster.FinalChecks();
  for (const std::string& v : cluster.checker().violations()) {
    res.failures.push_back(v);
    res.caught_by.insert("safety");
  }
  // The simulator corrupts nothing silently (every disk fault is one that
  // checksums or failed syncs expose), so a CORRUPT alarm means members'
  // stores really differ at one revision, or the check raised a false
  // alarm: a failure either way.
  for (uint64_t id : cluster.UpNodes()) {
    if (!cluster.server(id)
             ->state()
             .alarms()
             .Get(etcdserverpb::CORRUPT)
             .empty()) {
      res.failures.push_back(absl::StrCat(
          "corruption check: CORRUPT alarm active on member ", id,
          " (members' stores differ at one revision, or a false alarm)"));
      res.caught_by.insert("safety");
      break;
    }
  }
  if (cluster.checker().ok() && !livelocked) {
    CheckClientView(cluster, workload, converged, ctx.external_writes(), o,
                    &res);
  }
  // The scenario's own checkers (auth): they judge every answer they saw
  // against their own model of the committed log, so they run even after
  // a safety failure cut the run short.
  for (const scenarios::ScenarioContext::FinalCheck& f : ctx.final_checks()) {
    f(&res.failures, &res.caught_by, &res.coverage);
  }
  // Fold the final state into the hash.
  for (uint64_t id : cluster.ids()) {
    if (server::Node* n = cluster.node(id)) {
      world.Mix(id);
      world.Mix(n->applied_index());
      world.Mix(n->raft().term());
    }
  }
  res.trace_hash = world.trace_hash();
  if (o.trace_log != nullptr) o.trace_log->final_hash = res.trace_hash;
  res.sim_seconds = static_cast<double>(world.now()) / sim::kSecond;
  res.events = world.events_run();
  res.ops = workload.stats();
  res.applied = cluster.checker().applied_entries();
  res.leaders = cluster.checker().leaders_elected();
  // How often Raft's subtle rules had something to decide (raft::Coverage);
  // a sweep where these stay at zero never tested them.
  const raft::Coverage& rc = cluster.checker().coverage();
  res.coverage["raft.old-term-quorum"] += rc.old_term_quorum;
  res.coverage["raft.follower-tail-beyond-append"] +=
      rc.follower_tail_beyond_append;
  res.coverage["raft.vote-for-older-last-term"] += rc.vote_for_older_last_term;
  // Background maintenance: compactions committed (the workload's and the
  // auto compactor's) and periodic corruption checks completed by the
  // members up at the end.
  res.coverage["mvcc.compactions"] += cluster.model().compactions().size();
  for (uint64_t id : cluster.UpNodes()) {
    res.coverage["maintenance.corrupt-checks"] +=
        cluster.server(id)->corruption_checker().checks();
  }
  res.coverage["maintenance.defrags"] += defrags;
  // Coverage probes reached in this run (reset at its start) and the fault
  // points that fired, as "probe.*" / "buggify.*" counters.
  for (const probes::ProbeInfo& p : probes::kProbes) {
    if (const uint64_t n = probes::Count(p.probe)) {
      res.coverage["probe." + std::string(p.name)] += n;
    }
  }
  if (bz) {
    for (const buggify::PointInfo& p : buggify::kPoints) {
      if (const uint64_t n = bz->fired(p.point)) {
        res.coverage["buggify." + std::string(p.name)] += n;
      }
    }
  }
  NoteCoverageFloors(o, &res);
  res.ok = res.failures.empty();
  if (o.decisions != nullptr) {
    sim::Schedule& out = o.decisions->mutable_output();
    out.seed = o.seed;
    out.scenario = res.scenario;
    out.nodes = o.nodes;
    out.ops = o.ops;
    out.clients = o.clients;
    out.watchers = o.watchers;
    out.lease_clients = o.lease_clients;
    out.fault_phase_ns = o.fault_phase_ns;
    out.buggify = !o.buggify_point.empty() ? o.buggify_point
                  : o.buggify             ? "all"
                                          : "";
    out.recorded_bug = o.bug;
    out.failure = res.failures.empty() ? "" : res.failures.front();
  }
  return res;
}

}  // namespace detcd::harness
