// A simulated cluster: N Nodes, each with its own SimDisk, SimClock, Rng
// stream and network inbox, in one World. The cluster drives ticks, carries
// client requests to nodes, injects faults (crash, restart, wipe, partition,
// clock skew, disk faults) and wires every node to the SafetyChecker.
//
// Everything random is drawn from streams derived from the run's seed, so
// (seed, options) determines the whole run.
#ifndef DETCD_HARNESS_CLUSTER_H_
#define DETCD_HARNESS_CLUSTER_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "engine/env/env.h"
#include "engine/server/etcd_server.h"
#include "engine/server/node.h"
#include "harness/checker.h"
#include "harness/kv_model.h"
#include "harness/trace.h"
#include "sim/sim_clock.h"
#include "sim/sim_disk.h"
#include "sim/sim_memory.h"
#include "sim/sim_network.h"
#include "sim/world.h"

namespace detcd::harness {

// What a scenario promises about time. The lease checker derives its
// bounds from it (harness/lease_checker.h), so a scenario whose faults go
// beyond it must declare so (Cluster::set_timing) before the workload
// starts; the workload checks every clock against it.
struct TimingModel {
  // Every member's clock runs at 1 +- max_drift_ppm / 1e6 of the world's
  // rate. Skew (a constant offset) is bounded too but never matters to
  // leases: only durations pass from one member to another.
  int64_t max_drift_ppm = 0;
  int64_t max_skew_ns = 0;
  // Clocks jump forward, beyond any drift bound. Each jump is reported to
  // the lease checker with its size (set_on_clock_jump); a jump on a
  // cluster that did not declare them is a harness error.
  bool clock_jumps = false;
};

struct ClusterOptions {
  int nodes = 3;
  int64_t tick_ns = 10 * sim::kMillisecond;  // heartbeat interval
  server::NodeOptions node;  // template; id and voters are set per node
  server::EtcdServerOptions server;  // template; its node is `node` above
  TimingModel timing;  // see above; scenarios may widen it in setup
  // Power cut right after a node fsynced something (a vote, entries): the
  // node crashes at the end of that event with this probability and
  // restarts 1..restart_max_ns later. Exercises exactly the window between
  // persisting and acting on it.
  double crash_after_sync_probability = 0;
  int64_t crash_after_sync_restart_max_ns = 50 * sim::kMillisecond;
  // A node that has just won an election crashes at the end of that event
  // with this probability (its new term's first entry reaches nobody).
  double crash_after_election_probability = 0;
  // The determinism check: every observation folded into the trace hash is
  // also recorded here, from the first event on (sim::World::set_log).
  sim::TraceLog* trace_log = nullptr;
  // If set, the world's draws (network, disks, injected crashes) are
  // recorded and replayed through it (sim/schedule.h).
  sim::Decisions* decisions = nullptr;
  // As real members: founders get a name ("m<id>") and a peer URL unless
  // server.initial_members names them, and every member publishes its name
  // and client URL after each start (EtcdServer::Publish), which is what
  // the strict reconfiguration checks count as started. Off: members stay
  // nameless (none counts as started).
  bool named_members = true;
  // The credentials every Call carries (a scenario with auth on): its
  // clients' connections present a client certificate with this common
  // name (etcd's --client-cert-auth), so the workload, the operator's
  // member changes and compactions run as that user. Unset: calls are the
  // member's own (no credentials, no API-layer checks).
  std::optional<server::Caller> client_caller;
};

class Cluster {
 public:
  Cluster(uint64_t seed, const ClusterOptions& opts, Trace* trace);
  ~Cluster();

  sim::World& world() { return world_; }
  sim::SimNetwork& network() { return network_; }
  SafetyChecker& checker() { return checker_; }
  // The independent replay of the committed log (fed by the checker's
  // first applications; checks every snapshot restore).
  const KvModel& model() const { return model_; }
  Trace* trace() { return trace_; }
  const ClusterOptions& options() const { return opts_; }
  // The liveness phase turns these faults off.
  void StopInjectedCrashes() {
    opts_.crash_after_sync_probability = 0;
    opts_.crash_after_election_probability = 0;
  }
  // The stream for a named purpose (scenario faults, workload, ...).
  env::SeededRng DeriveRng(std::string_view stream) const {
    return root_rng_.Derive(stream);
  }

  std::vector<uint64_t> ids() const;
  bool IsUp(uint64_t id) const;
  server::Node* node(uint64_t id);  // nullptr if down
  server::EtcdServer* server(uint64_t id);  // nullptr if down
  sim::SimDisk& disk(uint64_t id);
  sim::SimClock& clock(uint64_t id);
  std::vector<uint64_t> UpNodes() const;
  // The node that believes it leads in the highest term, or 0.
  uint64_t Leader() const;

  // Faults.
  void Crash(uint64_t id);   // lose memory and unsynced disk data
  void Restart(uint64_t id);  // start again from the disk
  // Process pause (SIGSTOP ... SIGCONT): the member stops running: no
  // ticks, no message handling, no disk I/O, and client requests to it are
  // refused (Call returns false, as a client whose connection hangs gives
  // up and fails over; the request never ran). Messages sent to it wait in
  // its socket buffers, up to kPausedInboxBytes (then they are dropped, as
  // TCP backs up and the sender's queue drops), and are handled in order
  // on Resume. Its clock keeps running, so after Resume it finds that time
  // has passed at once. A crash ends a pause. Reconcile resumes everyone.
  void Pause(uint64_t id);
  void Resume(uint64_t id);
  bool IsPaused(uint64_t id) const;
  // Which start of the member this is (1 for the first; 0 for an unknown
  // id): a client holding a handle on a member's state (a watch stream id)
  // knows by it that the member restarted meanwhile and the handle is gone.
  uint64_t Incarnation(uint64_t id) const {
    auto it = nodes_.find(id);
    return it == nodes_.end() ? 0 : it->second.incarnation;
  }
  // A member whose timers fire late (a starved or throttled process): its
  // ticks come `factor` times further apart (1 = normal) while it handles
  // messages and requests at full speed. Reconcile restores 1.
  void SlowTicks(uint64_t id, int factor);
  static constexpr size_t kPausedInboxBytes = 4 << 20;
  // Lose the whole data dir: the member is removed from the cluster and a
  // fresh member with a new id and the same peer URLs takes its place (the
  // operator's procedure: MemberRemove, MemberAdd, start on an empty disk
  // to join; a member never rejoins under its old id without its log).
  // Returns false if there is no leader to make the change.
  bool ReplaceWiped(uint64_t id);

  // Membership changes as an operator makes them: the Cluster service's
  // requests (EtcdServer::MemberAdd / MemberPromote / MemberRemove /
  // MemberUpdate) sent to a random member that is up, with every rule and
  // check of the engine. Each completes asynchronously; `then` (optional)
  // runs in a fresh event with the outcome.
  using Then = std::function<void(bool ok)>;
  // Adds a new member (learner or voter) with fresh peer URLs; once the
  // request succeeds, the member (the id the engine chose) starts on an
  // empty disk and joins (no initial voters: it waits for the leader).
  void AddMember(bool learner, Then then = nullptr);
  void PromoteLearner(uint64_t id, Then then = nullptr);
  // Removes a member. A removed member learns it on its own (it applies
  // its removal, or the others refuse its messages) and stops itself
  // shortly after, as etcd's does; it is never restarted.
  void RemoveMember(uint64_t id, Then then = nullptr);
  // Gives a member fresh peer URLs (MemberUpdate). Sim links do not use
  // URLs; the membership and the URL rules do.
  void UpdatePeerUrls(uint64_t id, Then then = nullptr);
  void TransferLeader(uint64_t to);
  // Current members as the leader sees them (empty if no leader).
  raft::ConfState Members() const;
  bool IsRemoved(uint64_t id) const;
  // Why the member's last start failed ("" if it is up, or never failed):
  // a liveness failure names it.
  std::string StartError(uint64_t id) const;
  // Faults injected so far, by kind ("faults.crash", "faults.network",
  // "faults.disk", "faults.clock", "faults.membership", ...): a run in
  // which none fired tested only the happy path.
  std::map<std::string, uint64_t> FaultsInjected() const;

  // A client request: runs fn on the member's server (if it is up; returns
  // false if not) and then the post-event checks.
  bool Call(uint64_t id, const std::function<void(server::EtcdServer&)>& fn);
  // A client request with a token of its own (harness/auth_workload.h): as
  // Call, but `fn` runs with `caller` as the member's current caller, once
  // the member knows the token (EtcdServer::AwaitCaller: a simple token
  // names the raft index of its Authenticate entry, which the member may
  // not have applied yet), so possibly after Call returned.
  bool CallAs(uint64_t id, const server::Caller& caller,
              std::function<void(server::EtcdServer&)> fn);
  // Auth: sees every committed entry (in index order, when first applied
  // anywhere) before the KV model replays it, and says whether auth
  // refused its request there; the model then replays it as a request
  // that changed nothing. The auth checker's model decides (it knows the
  // auth store's state at every index); without a filter nothing is
  // refused.
  using CommitFilter = std::function<bool(const raft::Entry&)>;
  void set_commit_filter(CommitFilter f) { commit_filter_ = std::move(f); }
  // Every applied write's events, per member (the watch checker's feed).
  using EventsFn =
      std::function<void(uint64_t node, const std::vector<mvcc::Event>&)>;
  void set_on_events(EventsFn f) { on_events_ = std::move(f); }
  // Called when a member goes down (crash, removal): its watch streams
  // are gone.
  void set_on_down(std::function<void(uint64_t node)> f) {
    on_down_ = std::move(f);
  }
  void set_on_lease_revoked(std::function<void(uint64_t, int64_t)> f) {
    on_lease_revoked_ = std::move(f);
  }
  // A member whose lessor is primary applied a lease's grant: the lease's
  // expiry runs from now there (a follower may have answered the client
  // before, while the leader's apply lagged).
  void set_on_lease_granted(std::function<void(uint64_t, int64_t)> f) {
    on_lease_granted_ = std::move(f);
  }
  // A member just became leader.
  void set_on_elected(std::function<void(uint64_t)> f) {
    on_elected_ = std::move(f);
  }
  // A member's lessor just became primary (EtcdServer promotes it once it
  // leads and applied an entry of its own term): every lease's expiry
  // restarts there.
  void set_on_lease_primary(std::function<void(uint64_t)> f) {
    on_lease_primary_ = std::move(f);
  }
  // A member's clock jumped forward by forward_ns (sim::SimClock::Jump).
  void set_on_clock_jump(std::function<void(uint64_t, int64_t)> f) {
    on_clock_jump_ = std::move(f);
  }
  const TimingModel& timing() const { return opts_.timing; }
  void set_timing(const TimingModel& t) { opts_.timing = t; }
  uint64_t cluster_id() const { return cluster_id_; }

  // Liveness: true once a leader exists, every up node is started and has
  // applied everything the leader committed, and nothing is pending.
  bool Converged() const;

  // Liveness phase: restart members that are down, start members whose
  // addition committed without their process being started, and finish
  // removing members whose data is gone.
  void Reconcile();

  // End-of-run checks.
  void FinalChecks();

 private:
  // env::Offload for a simulated member: the work (pure CPU: bcrypt) runs
  // at once, its completion as an event of the member's own a little
  // later, as the real server's offload thread hands it back.
  class SimOffload final : public env::Offload {
   public:
    explicit SimOffload(std::function<void(std::function<void()>)> later)
        : later_(std::move(later)) {}
    void Run(std::function<void()> work, std::function<void()> done) override {
      work();
      later_(std::move(done));
    }

   private:
    std::function<void(std::function<void()>)> later_;
  };
  static constexpr int64_t kOffloadNs = 2 * sim::kMillisecond;

  struct SimNode {
    uint64_t id = 0;
    std::unique_ptr<sim::SimDisk> disk;
    std::unique_ptr<SimOffload> offload;
    std::unique_ptr<sim::SimMemory> memory;
    std::unique_ptr<sim::SimClock> clock;
    std::unique_ptr<sim::SimTransport> transport;
    std::unique_ptr<env::SeededRng> rng;
    std::unique_ptr<server::EtcdServer> server;
    uint64_t incarnation = 0;
    uint64_t syncs_seen = 0;
    bool was_leader = false;
    bool was_lease_primary = false;
    bool bootstrap_new = true;
    bool removed = false;  // removed from the cluster: never restarted
    std::string start_error;  // why the last start failed
    // Pause (see Pause()): what arrived meanwhile, oldest first.
    bool paused = false;
    std::deque<std::pair<uint64_t, std::string>> paused_inbox;
    size_t paused_inbox_bytes = 0;
    int tick_slowdown = 1;
    std::vector<uint64_t> initial_voters;
    std::vector<std::string> peer_urls;  // as the membership has them
    int64_t up_since = 0;  // world time of the current incarnation's start
    // Publishing this incarnation's name (see ClusterOptions::named_members).
    bool published = false;
    bool publishing = false;
    int publish_wait_ticks = 0;
    bool stopping = false;  // learned it was removed; stops shortly
  };

  void AddNode(uint64_t id, std::vector<uint64_t> voters);
  void StartNode(SimNode& n);
  void ScheduleTick(uint64_t id, uint64_t incarnation);
  void After(SimNode& n);  // post-event checks and injected crashes
  // Runs `ev` after `delay` as an event of member `id`'s current
  // incarnation: dropped if it crashed or restarted meanwhile, held while
  // it is paused.
  void NodeEventAfter(uint64_t id, int64_t delay, std::function<void()> ev);
  void CrashSoon(uint64_t id, const char* why);  // crash, restart later
  void MaybePublish(SimNode& n);
  // A random member that is up and running, to send a Cluster request to
  // (0 if none).
  uint64_t RequestTarget();
  // A Cluster request's start: picks the member to send it to, counts and
  // traces it; 0 (and `then(false)` from a fresh event) when none is up.
  uint64_t BeginConfRequest(const char* what, const std::string& detail,
                            const Then& then);
  std::string NewPeerUrl();
  void AddMemberWithUrls(bool learner, std::vector<std::string> urls,
                         Then then);
  // Starts a member the cluster just added (unless it runs already).
  void StartJoiner(uint64_t id, std::vector<std::string> urls);
  // etcd's ActiveSince for the strict reconfiguration checks: how long
  // `self` has been linked to `peer` (both up and running, no cut either
  // way), 0 if not now.
  int64_t LinkAge(uint64_t self, uint64_t peer) const;

  uint64_t seed_;
  ClusterOptions opts_;
  Trace* trace_;
  env::SeededRng root_rng_;
  sim::ScheduledRng fault_rng_;
  sim::World world_;
  sim::SimNetwork network_;
  KvModel model_;
  SafetyChecker checker_;
  std::map<uint64_t, SimNode> nodes_;
  uint64_t next_id_ = 1;
  uint64_t next_url_ = 1;
  // A wiped member is being replaced (since this world time; a request
  // lost with a crashed member gives up after a while).
  bool replacing_ = false;
  int64_t replacing_since_ = 0;
  // Fault counters (FaultsInjected); network, disk and clock faults are
  // counted where they happen.
  uint64_t crashes_ = 0, fail_stops_ = 0, conf_changes_ = 0, transfers_ = 0;
  uint64_t pauses_ = 0;  // Pause() and SlowTicks() (faults.pause)
  uint64_t cluster_id_ = 0;
  EventsFn on_events_;
  CommitFilter commit_filter_;
  std::function<void(uint64_t)> on_down_;
  std::function<void(uint64_t, int64_t)> on_lease_revoked_;
  std::function<void(uint64_t, int64_t)> on_lease_granted_;
  std::function<void(uint64_t)> on_elected_;
  std::function<void(uint64_t)> on_lease_primary_;
  std::function<void(uint64_t, int64_t)> on_clock_jump_;
};

}  // namespace detcd::harness

#endif  // DETCD_HARNESS_CLUSTER_H_
