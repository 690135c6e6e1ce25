#include "harness/cluster.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "engine/util/check.h"

namespace detcd::harness {
namespace {
// The zeros a member's disk keeps after its WAL's appends (sim_disk.h).
constexpr uint64_t kFillAheadBytes = 16 << 10;
}  // namespace

Cluster::Cluster(uint64_t seed, const ClusterOptions& opts, Trace* trace)
    : seed_(seed),
      opts_(opts),
      trace_(trace),
      root_rng_(seed),
      fault_rng_(root_rng_.Derive("cluster-faults"), opts.decisions,
                 "cluster-faults"),
      network_(&world_, root_rng_.Derive("network"), opts.decisions),
      model_(KvModel::Options{opts.server.lease.max_ttl_s}),
      checker_([this](uint64_t id) {
        return nodes_.at(id).server->state().result_hash();
      }) {
  checker_.set_on_first_apply([this](const raft::Entry& e) {
    if (commit_filter_ && commit_filter_(e)) {
      // Refused by auth: the same request id, nothing else (the state
      // machine remembers the id of a refused request too).
      uint64_t proposer = 0, request = 0;
      std::string_view payload;
      etcdserverpb::InternalRaftRequest req, refused;
      if (server::OpenEnvelope(e.data, &proposer, &request, &payload) &&
          req.ParseFromArray(payload.data(),
                             static_cast<int>(payload.size()))) {
        *refused.mutable_header() = req.header();
        raft::Entry empty = e;
        empty.data =
            server::Envelope(proposer, request, refused.SerializeAsString());
        model_.Apply(empty);
        return;
      }
    }
    model_.Apply(e);
  });
  checker_.set_restore_check(
      [this](uint64_t id, const raft::SnapshotMetadata& m) {
        const server::EtcdStateMachine& sm = nodes_.at(id).server->state();
        return model_.CompareAt(m.index, sm.kv(), sm.lessor());
      });
  world_.set_log(opts_.trace_log);
  cluster_id_ = root_rng_.Derive("cluster-id").Next();
  // The Ready-ordering check reads what is durable off each node's disk.
  checker_.set_durable_source(
      [this](uint64_t id) -> const sim::SimDisk* {
        auto it = nodes_.find(id);
        return it == nodes_.end() ? nullptr : it->second.disk.get();
      },
      [this](uint64_t id) -> const server::Node* { return node(id); },
      opts_.node.data_dir + "/wal");
  // etcd's health interval is five election timeouts of its defaults; the
  // same ratio for the simulator's faster clock, unless a test set one.
  if (opts_.server.health_interval_ns ==
      server::EtcdServerOptions().health_interval_ns) {
    opts_.server.health_interval_ns =
        5 * static_cast<int64_t>(opts_.node.election_ticks) * opts_.tick_ns;
  }
  std::vector<uint64_t> voters;
  for (int i = 0; i < opts_.nodes; ++i) voters.push_back(next_id_ + i);
  if (opts_.named_members && opts_.server.initial_members.empty()) {
    for (uint64_t id : voters) {
      server::MemberInfo m;
      m.id = id;
      m.name = absl::StrCat("m", id);
      m.peer_urls = {absl::StrCat("http://m", id, ":2380")};
      opts_.server.initial_members.push_back(std::move(m));
    }
  }
  for (uint64_t id : voters) AddNode(id, voters);
  for (const server::MemberInfo& m : opts_.server.initial_members) {
    auto it = nodes_.find(m.id);
    if (it != nodes_.end()) it->second.peer_urls = m.peer_urls;
  }
  for (uint64_t id : voters) StartNode(nodes_.at(id));
}

Cluster::~Cluster() = default;

void Cluster::AddNode(uint64_t id, std::vector<uint64_t> voters) {
  next_id_ = std::max(next_id_, id + 1);
  SimNode& n = nodes_[id];
  n.id = id;
  const std::string disk_stream = absl::StrCat("disk-", id);
  n.disk = std::make_unique<sim::SimDisk>(root_rng_.Derive(disk_stream),
                                          opts_.decisions, disk_stream);
  n.disk->set_trace(&world_, id);
  // As the real server's disk, which fills WAL segments ahead while idle.
  n.disk->set_fill_ahead_bytes(kFillAheadBytes);
  n.disk->set_time_source([this] { return world_.now(); });
  // The node's WAL writes complete as events of their own after the disk's
  // latency (sim_disk.h): the node goes on meanwhile, a crash before the
  // completion finds the write unsynced, and a paused node takes the
  // completion when it runs again.
  n.disk->set_scheduler([this, id](int64_t delay, std::function<void()> ev) {
    NodeEventAfter(id, delay, std::move(ev));
  });
  n.offload =
      std::make_unique<SimOffload>([this, id](std::function<void()> ev) {
        NodeEventAfter(id, kOffloadNs, std::move(ev));
      });
  n.memory = std::make_unique<sim::SimMemory>();
  n.clock = std::make_unique<sim::SimClock>(&world_);
  n.clock->set_on_jump([this, id](int64_t forward_ns) {
    DETCD_CHECK_MSG(opts_.timing.clock_jumps,
                    "a clock jumped in a cluster that did not declare jumps "
                    "(TimingModel::clock_jumps)");
    if (trace_) {
      trace_->Event(world_.now(), id, "clock jump",
                    absl::StrCat("+", forward_ns / sim::kMillisecond, " ms"));
    }
    if (on_clock_jump_) on_clock_jump_(id, forward_ns);
  });
  sim::SimDisk* disk = n.disk.get();
  n.transport = std::make_unique<sim::SimTransport>(
      &network_, id, [disk] { return disk->pending_latency(); });
  n.bootstrap_new = !voters.empty();
  n.initial_voters = std::move(voters);
}

void Cluster::StartNode(SimNode& n) {
  DETCD_CHECK(n.server == nullptr);
  // A member whose power failed (during a start that then failed, say)
  // comes back with what reached its disk.
  if (n.disk->powered_off()) n.disk->CrashRandomly();
  ++n.incarnation;
  n.rng = std::make_unique<env::SeededRng>(
      root_rng_.Derive(absl::StrCat("node-", n.id, "-", n.incarnation)));
  server::EtcdServerOptions o = opts_.server;
  o.node = opts_.node;
  o.node.id = n.id;
  o.node.initial_voters = n.bootstrap_new ? n.initial_voters
                                          : std::vector<uint64_t>{};
  o.cluster_id = cluster_id_;
  o.tick_ns = opts_.tick_ns;
  // Small ids, in order: the checkers index by them.
  o.new_member_id = [this] { return next_id_++; };
  env::Env env;
  env.clock = n.clock.get();
  env.disk = n.disk.get();
  env.transport = n.transport.get();
  env.rng = n.rng.get();
  env.offload = n.offload.get();
  env.memory = n.memory.get();
  n.server = std::make_unique<server::EtcdServer>(env, o);
  n.server->node().set_observer(&checker_);
  n.server->set_on_ack(
      [this](std::string_view cmd) { checker_.OnAcknowledged(std::string(cmd)); });
  const uint64_t node_id = n.id;
  n.server->set_on_events([this, node_id](const std::vector<mvcc::Event>& ev) {
    if (on_events_) on_events_(node_id, ev);
  });
  n.server->set_on_lease_revoked([this, node_id](int64_t lease) {
    if (on_lease_revoked_) on_lease_revoked_(node_id, lease);
  });
  n.server->set_on_lease_granted([this, node_id](int64_t lease) {
    if (on_lease_granted_) on_lease_granted_(node_id, lease);
  });
  world_.Mix(0x5354415254ULL ^ n.id);
  if (trace_) trace_->Event(world_.now(), n.id, "start");
  absl::Status s = n.server->Start();
  if (!s.ok()) {
    if (trace_) {
      trace_->Event(world_.now(), n.id, "start failed", s.ToString());
    }
    n.start_error = s.ToString();
    n.server.reset();
    return;
  }
  n.start_error.clear();
  n.up_since = world_.now();
  n.published = false;
  n.publishing = false;
  n.publish_wait_ticks = 0;
  n.stopping = false;
  const uint64_t id = n.id;
  n.server->set_peer_link_age(
      [this, id](uint64_t peer) { return LinkAge(id, peer); });
  network_.Attach(id, [this, id](uint64_t from, std::string payload) {
    SimNode& t = nodes_.at(id);
    if (!t.server) return;
    if (t.paused) {
      // In the stopped process's socket buffers until it runs again.
      if (t.paused_inbox_bytes + payload.size() <= kPausedInboxBytes) {
        t.paused_inbox_bytes += payload.size();
        t.paused_inbox.emplace_back(from, std::move(payload));
      }
      return;
    }
    t.server->OnMessage(payload);
    After(t);
  });
  After(n);
  ScheduleTick(id, n.incarnation);
}

void Cluster::ScheduleTick(uint64_t id, uint64_t incarnation) {
  SimNode& n = nodes_.at(id);
  // A node's ticks follow its own clock: a fast clock ticks more often.
  const int64_t drift = n.clock->drift_ppm();
  const int64_t period =
      std::max<int64_t>(1, opts_.tick_ns - opts_.tick_ns / 1000 * drift / 1000) *
      n.tick_slowdown;
  world_.After(period, [this, id, incarnation] {
    SimNode& t = nodes_.at(id);
    if (!t.server || t.incarnation != incarnation) return;
    if (t.paused) {  // a stopped process's timers do not fire
      ScheduleTick(id, incarnation);
      return;
    }
    t.server->Tick();
    After(t);
    if (t.server && t.incarnation == incarnation) MaybePublish(t);
    ScheduleTick(id, incarnation);
  });
}

// As the real server: once a leader is known, a member added at run time
// publishes its name and client URL through raft, and retries until that
// applies. (Founders are named by the founding entries already; the real
// server publishes them too, for their client URLs, which nothing in the
// simulator reads.)
void Cluster::MaybePublish(SimNode& n) {
  if (!opts_.named_members || n.bootstrap_new || n.published ||
      n.publishing || n.stopping) {
    return;
  }
  if (n.publish_wait_ticks > 0) {
    --n.publish_wait_ticks;
    return;
  }
  if (n.server->node().leader() == raft::kNone) return;
  n.publishing = true;
  const uint64_t id = n.id, incarnation = n.incarnation;
  n.server->Publish(absl::StrCat("m", id),
                    {absl::StrCat("http://m", id, ":2379")},
                    [this, id, incarnation](absl::Status s) {
                      SimNode& t = nodes_.at(id);
                      if (t.incarnation != incarnation) return;
                      t.publishing = false;
                      if (s.ok()) {
                        t.published = true;
                      } else {
                        t.publish_wait_ticks = 10;
                      }
                    });
  After(n);
}

int64_t Cluster::LinkAge(uint64_t self, uint64_t peer) const {
  auto me = nodes_.find(self);
  auto it = nodes_.find(peer);
  if (me == nodes_.end() || it == nodes_.end() || !it->second.server ||
      it->second.paused || network_.IsCut(self, peer) ||
      network_.IsCut(peer, self)) {
    return 0;
  }
  return world_.now() - std::max(me->second.up_since, it->second.up_since);
}

void Cluster::NodeEventAfter(uint64_t id, int64_t delay,
                             std::function<void()> ev) {
  auto done = std::make_shared<std::function<void()>>();
  *done = [this, id, incarnation = nodes_.at(id).incarnation, ev,
           weak = std::weak_ptr<std::function<void()>>(done)] {
    SimNode& t = nodes_.at(id);
    if (!t.server || t.incarnation != incarnation) return;
    if (t.paused) {
      if (auto again = weak.lock()) {
        world_.After(sim::kMillisecond, [again] { (*again)(); });
      }
      return;
    }
    ev();
    After(t);
  };
  world_.After(delay, [done] { (*done)(); });
}

void Cluster::After(SimNode& n) {
  // The disk latency of this event has been charged to the messages it sent.
  n.disk->TakePendingLatency();
  server::Node& node = n.server->node();
  if (node.failed()) {
    ++fail_stops_;
    // Fail-stop: the process exits, as etcd does on a WAL write error.
    if (trace_) {
      trace_->Event(world_.now(), n.id, "fail-stop",
                    node.failure().ToString());
    }
    Crash(n.id);
    // A supervisor starts it again (as systemd's Restart= would).
    const uint64_t id = n.id;
    world_.After(fault_rng_.Range(10 * sim::kMillisecond, sim::kSecond),
                 [this, id] { Restart(id); });
    return;
  }
  checker_.AfterEvent(node);
  if (!n.stopping && n.server->removed()) {
    // As etcd: a member that learns it was removed stops itself a moment
    // later (etcd waits a second, ten heartbeats), and is never restarted.
    n.stopping = true;
    n.removed = true;
    if (trace_) {
      trace_->Event(world_.now(), n.id, "learned it was removed",
                    n.server->state().membership().IsRemoved(n.id)
                        ? "applied its removal"
                        : "a member refused its messages");
    }
    const uint64_t id = n.id, incarnation = n.incarnation;
    world_.After(10 * opts_.tick_ns, [this, id, incarnation] {
      SimNode& t = nodes_.at(id);
      if (!t.server || t.incarnation != incarnation) return;
      if (trace_) trace_->Event(world_.now(), id, "stopped: removed");
      Crash(id);
    });
  }
  const uint64_t syncs = n.disk->syncs();
  const bool synced = syncs != n.syncs_seen;
  n.syncs_seen = syncs;
  const bool elected = node.is_leader() && !n.was_leader;
  n.was_leader = node.is_leader();
  if (elected && on_elected_) on_elected_(n.id);
  const bool primary = n.server->state().lessor().is_primary();
  if (primary && !n.was_lease_primary && on_lease_primary_) {
    on_lease_primary_(n.id);
  }
  n.was_lease_primary = primary;
  if (synced && opts_.crash_after_sync_probability > 0 &&
      fault_rng_.Chance(opts_.crash_after_sync_probability)) {
    CrashSoon(n.id, "power cut after fsync");
  } else if (elected && opts_.crash_after_election_probability > 0 &&
             fault_rng_.Chance(opts_.crash_after_election_probability)) {
    CrashSoon(n.id, "crash right after election");
  }
}

void Cluster::CrashSoon(uint64_t id, const char* why) {
  const int64_t restart = fault_rng_.Range(
      sim::kMillisecond, std::max<int64_t>(sim::kMillisecond,
                                           opts_.crash_after_sync_restart_max_ns));
  // From a fresh event: the node's call stack is still unwinding.
  world_.After(0, [this, id, restart, why] {
    if (!IsUp(id)) return;
    if (trace_) trace_->Event(world_.now(), id, why);
    Crash(id);
    world_.After(restart, [this, id] { Restart(id); });
  });
}

std::vector<uint64_t> Cluster::ids() const {
  std::vector<uint64_t> out;
  for (const auto& [id, n] : nodes_) out.push_back(id);
  return out;
}

bool Cluster::IsUp(uint64_t id) const {
  auto it = nodes_.find(id);
  return it != nodes_.end() && it->second.server != nullptr;
}

server::Node* Cluster::node(uint64_t id) {
  auto it = nodes_.find(id);
  return it == nodes_.end() ? nullptr : (it->second.server ? &it->second.server->node() : nullptr);
}

sim::SimDisk& Cluster::disk(uint64_t id) { return *nodes_.at(id).disk; }
sim::SimClock& Cluster::clock(uint64_t id) { return *nodes_.at(id).clock; }

std::vector<uint64_t> Cluster::UpNodes() const {
  std::vector<uint64_t> out;
  for (const auto& [id, n] : nodes_) {
    if (n.server) out.push_back(id);
  }
  return out;
}

uint64_t Cluster::Leader() const {
  uint64_t best = 0, best_term = 0;
  for (const auto& [id, n] : nodes_) {
    if (n.server && n.server->node().is_leader() && n.server->node().raft().term() >= best_term) {
      best = id;
      best_term = n.server->node().raft().term();
    }
  }
  return best;
}

void Cluster::Crash(uint64_t id) {
  SimNode& n = nodes_.at(id);
  if (!n.server) return;
  ++crashes_;
  world_.Mix(0x4352415348ULL ^ id);
  if (trace_) trace_->Event(world_.now(), id, "crash");
  // Destroying the Node drops its memory and its pending callbacks; clients
  // see their requests time out (outcome unknown). Its destructor's drain
  // of the disk worker must not finish the fsyncs in flight: the process
  // dies with them.
  n.disk->ForgetOutstanding();
  n.server.reset();
  n.was_leader = false;  // a restarted member that wins again is elected anew
  n.was_lease_primary = false;
  n.paused = false;  // the process is gone; so is what its sockets held
  n.paused_inbox.clear();
  n.paused_inbox_bytes = 0;
  n.tick_slowdown = 1;
  network_.Detach(id);
  if (on_down_) on_down_(id);
  // Every crash is a power cut: unsynced pages are lost or kept, out of
  // order, and torn, in a pattern drawn anew each time (sim_disk.h).
  n.disk->CrashRandomly();
  ++n.incarnation;
}

void Cluster::Pause(uint64_t id) {
  SimNode& n = nodes_.at(id);
  if (!n.server || n.paused) return;
  n.paused = true;
  ++pauses_;
  world_.Mix(0x5041555345ULL ^ id);
  if (trace_) trace_->Event(world_.now(), id, "pause");
}

void Cluster::Resume(uint64_t id) {
  SimNode& n = nodes_.at(id);
  if (!n.server || !n.paused) return;
  n.paused = false;
  world_.Mix(0x524553554dULL ^ id);
  if (trace_) {
    trace_->Event(world_.now(), id, "resume",
                  absl::StrCat(n.paused_inbox.size(), " messages waiting"));
  }
  // What waited in the socket buffers is read first, one message per
  // event, in arrival order (later arrivals queue behind them).
  std::deque<std::pair<uint64_t, std::string>> inbox =
      std::move(n.paused_inbox);
  n.paused_inbox.clear();
  n.paused_inbox_bytes = 0;
  const uint64_t incarnation = n.incarnation;
  for (auto& [from, payload] : inbox) {
    world_.After(0, [this, id, incarnation, from = from,
                     p = std::move(payload)] {
      SimNode& t = nodes_.at(id);
      if (!t.server || t.incarnation != incarnation) return;
      if (t.paused) {  // paused again before this was read
        t.paused_inbox_bytes += p.size();
        t.paused_inbox.emplace_back(from, p);
        return;
      }
      world_.Note(sim::TraceKind::kDeliver, id, from, p);
      t.server->OnMessage(p);
      After(t);
    });
  }
}

bool Cluster::IsPaused(uint64_t id) const {
  auto it = nodes_.find(id);
  return it != nodes_.end() && it->second.paused;
}

void Cluster::SlowTicks(uint64_t id, int factor) {
  SimNode& n = nodes_.at(id);
  if (factor > 1 && n.tick_slowdown == 1) ++pauses_;
  n.tick_slowdown = std::max(1, factor);
  if (trace_ && n.server) {
    trace_->Event(world_.now(), id, "slow ticks", absl::StrCat("x", factor));
  }
}

void Cluster::Restart(uint64_t id) {
  SimNode& n = nodes_.at(id);
  if (n.server || n.removed) return;
  StartNode(n);
}

uint64_t Cluster::RequestTarget() {
  std::vector<uint64_t> up;
  for (const auto& [id, n] : nodes_) {
    if (n.server && !n.paused && !n.stopping) up.push_back(id);
  }
  return up.empty() ? 0 : up[fault_rng_.Uniform(up.size())];
}

std::string Cluster::NewPeerUrl() {
  return absl::StrCat("http://peer", next_url_++, ":2380");
}

namespace {
// A Cluster request's answer runs inside the member's call stack: the
// harness acts on it from a fresh event.
template <typename Resp>
using Answer = std::function<void(absl::StatusOr<Resp>)>;

void TraceAnswer(Trace* trace, int64_t now, const char* what,
                 const absl::Status& s) {
  if (trace) {
    trace->Event(now, 0, what,
                 s.ok() ? std::string("ok") : std::string(s.message()));
  }
}
}  // namespace

uint64_t Cluster::BeginConfRequest(const char* what, const std::string& detail,
                                   const Then& then) {
  const uint64_t target = RequestTarget();
  if (target == 0) {
    if (then) world_.After(0, [then] { then(false); });
    return 0;
  }
  ++conf_changes_;
  if (trace_) trace_->Event(world_.now(), target, what, detail);
  return target;
}

void Cluster::AddMember(bool learner, Then then) {
  AddMemberWithUrls(learner, {NewPeerUrl()}, std::move(then));
}

void Cluster::AddMemberWithUrls(bool learner, std::vector<std::string> urls,
                                Then then) {
  const uint64_t target = BeginConfRequest(
      "member add", absl::StrCat(learner ? "learner " : "voter ", urls[0]),
      then);
  if (target == 0) return;
  etcdserverpb::MemberAddRequest r;
  for (const std::string& u : urls) r.add_peerurls(u);
  r.set_islearner(learner);
  Answer<etcdserverpb::MemberAddResponse> done =
      [this, urls, then](absl::StatusOr<etcdserverpb::MemberAddResponse> a) {
        TraceAnswer(trace_, world_.now(), "member add answer", a.status());
        const uint64_t id = a.ok() ? a->member().id() : 0;
        world_.After(0, [this, id, urls, then] {
          if (id != 0) StartJoiner(id, urls);
          if (then) then(id != 0);
        });
      };
  Call(target, [&](server::EtcdServer& s) { s.MemberAdd(r, done); });
}

void Cluster::StartJoiner(uint64_t id, std::vector<std::string> urls) {
  if (nodes_.contains(id)) return;  // Reconcile found it first
  AddNode(id, {});
  nodes_.at(id).peer_urls = std::move(urls);
  StartNode(nodes_.at(id));
}

void Cluster::PromoteLearner(uint64_t id, Then then) {
  const uint64_t target =
      BeginConfRequest("member promote", absl::StrCat(id), then);
  if (target == 0) return;
  etcdserverpb::MemberPromoteRequest r;
  r.set_id(id);
  Answer<etcdserverpb::MemberPromoteResponse> done =
      [this, then](absl::StatusOr<etcdserverpb::MemberPromoteResponse> a) {
        TraceAnswer(trace_, world_.now(), "member promote answer", a.status());
        const bool ok = a.ok();
        world_.After(0, [ok, then] {
          if (then) then(ok);
        });
      };
  Call(target, [&](server::EtcdServer& s) { s.MemberPromote(r, done); });
}

void Cluster::RemoveMember(uint64_t id, Then then) {
  const uint64_t target =
      BeginConfRequest("member remove", absl::StrCat(id), then);
  if (target == 0) return;
  etcdserverpb::MemberRemoveRequest r;
  r.set_id(id);
  Answer<etcdserverpb::MemberRemoveResponse> done =
      [this, then](absl::StatusOr<etcdserverpb::MemberRemoveResponse> a) {
        TraceAnswer(trace_, world_.now(), "member remove answer", a.status());
        const bool ok = a.ok();
        world_.After(0, [ok, then] {
          if (then) then(ok);
        });
      };
  Call(target, [&](server::EtcdServer& s) { s.MemberRemove(r, done); });
}

void Cluster::UpdatePeerUrls(uint64_t id, Then then) {
  const uint64_t target = RequestTarget();
  if (target == 0) {
    if (then) world_.After(0, [then] { then(false); });
    return;
  }
  ++conf_changes_;
  const std::string url = NewPeerUrl();
  if (trace_) {
    trace_->Event(world_.now(), target, "member update",
                  absl::StrCat(id, " ", url));
  }
  etcdserverpb::MemberUpdateRequest r;
  r.set_id(id);
  r.add_peerurls(url);
  Answer<etcdserverpb::MemberUpdateResponse> done =
      [this, id, url,
       then](absl::StatusOr<etcdserverpb::MemberUpdateResponse> a) {
        TraceAnswer(trace_, world_.now(), "member update answer", a.status());
        const bool ok = a.ok();
        world_.After(0, [this, ok, id, url, then] {
          auto it = nodes_.find(id);
          if (ok && it != nodes_.end()) it->second.peer_urls = {url};
          if (then) then(ok);
        });
      };
  Call(target, [&](server::EtcdServer& s) { s.MemberUpdate(r, done); });
}

bool Cluster::ReplaceWiped(uint64_t id) {
  uint64_t leader = Leader();
  if (replacing_ && world_.now() - replacing_since_ > 10 * sim::kSecond) {
    replacing_ = false;  // its requests died with a crashed member
  }
  if (leader == 0 || leader == id || replacing_) return false;
  // Losing a second disk while a wiped voter is still in the membership
  // could destroy a quorum's data for good: no scenario may do that, as no
  // operator would. One replacement at a time.
  raft::ConfState cs = Members();
  for (uint64_t v : cs.voters) {
    if (IsRemoved(v)) return false;
  }
  replacing_ = true;
  replacing_since_ = world_.now();
  Crash(id);
  nodes_.at(id).disk->Wipe();
  nodes_.at(id).removed = true;  // its old identity is gone for good
  if (trace_) trace_->Event(world_.now(), id, "wipe");
  // The new member comes up where the old one was: same peer URLs.
  std::vector<std::string> urls = nodes_.at(id).peer_urls;
  if (urls.empty()) urls = {NewPeerUrl()};
  RemoveMember(id, [this, urls](bool ok) {
    if (!ok) {
      replacing_ = false;  // still a voter: the check above holds off
      return;
    }
    AddMemberWithUrls(/*learner=*/false, urls,
                      [this](bool) { replacing_ = false; });
  });
  return true;
}

void Cluster::TransferLeader(uint64_t to) {
  uint64_t leader = Leader();
  if (leader == 0 || leader == to) return;
  SimNode& n = nodes_.at(leader);
  if (n.paused) return;
  ++transfers_;
  if (trace_) {
    trace_->Event(world_.now(), leader, "transfer leader",
                  absl::StrCat("to ", to));
  }
  n.server->node().TransferLeadership(to);
  if (n.server) After(n);
}

raft::ConfState Cluster::Members() const {
  uint64_t leader = Leader();
  if (leader == 0) return {};
  return nodes_.at(leader).server->node().conf_state();
}

bool Cluster::IsRemoved(uint64_t id) const {
  auto it = nodes_.find(id);
  return it == nodes_.end() || it->second.removed;
}

std::string Cluster::StartError(uint64_t id) const {
  auto it = nodes_.find(id);
  return it == nodes_.end() || it->second.server ? "" : it->second.start_error;
}

std::map<std::string, uint64_t> Cluster::FaultsInjected() const {
  uint64_t disk = 0, clock = 0;
  for (const auto& [id, n] : nodes_) {
    disk += n.disk->injected_errors();
    if (n.clock->skew_ns() != 0 || n.clock->drift_ppm() != 0) ++clock;
  }
  return {{"faults.crash", crashes_},
          {"faults.fail-stop", fail_stops_},
          {"faults.network", network_.stats().faults()},
          {"faults.disk", disk},
          {"faults.clock", clock},
          {"faults.membership", conf_changes_},
          {"faults.leader-transfer", transfers_},
          {"faults.pause", pauses_}};
}

bool Cluster::Call(uint64_t id,
                   const std::function<void(server::EtcdServer&)>& fn) {
  auto it = nodes_.find(id);
  if (it == nodes_.end() || !it->second.server) return false;
  if (it->second.paused) return false;  // see Pause()
  SimNode& n = it->second;
  if (opts_.client_caller.has_value()) {
    server::EtcdServer::CallerScope scope(n.server.get(),
                                          &*opts_.client_caller);
    fn(*n.server);
  } else {
    fn(*n.server);
  }
  if (n.server) After(n);
  return true;
}

bool Cluster::CallAs(uint64_t id, const server::Caller& caller,
                     std::function<void(server::EtcdServer&)> fn) {
  auto it = nodes_.find(id);
  if (it == nodes_.end() || !it->second.server) return false;
  if (it->second.paused) return false;  // see Pause()
  SimNode& n = it->second;
  server::EtcdServer* s = n.server.get();
  auto c = std::make_shared<const server::Caller>(caller);
  // The member owns the waiting call: if it crashes first, the call is
  // gone with it (as a connection to a dead process).
  s->AwaitCaller(*c, [s, c, fn = std::move(fn)] {
    server::EtcdServer::CallerScope scope(s, c.get());
    fn(*s);
  });
  if (n.server) After(n);
  return true;
}

server::EtcdServer* Cluster::server(uint64_t id) {
  auto it = nodes_.find(id);
  return it == nodes_.end() ? nullptr : it->second.server.get();
}

bool Cluster::Converged() const {
  uint64_t leader = Leader();
  if (leader == 0) return false;
  const server::Node& l = nodes_.at(leader).server->node();
  const raft::RaftLog& log = l.raft().log();
  if (log.committed() != log.LastIndex()) return false;
  const raft::ConfState& cs = l.conf_state();
  for (const auto& [id, n] : nodes_) {
    if (!cs.Contains(id)) continue;
    if (!n.server) return false;  // a member still down
    if (n.server->node().applied_index() != log.committed()) return false;
    if (n.server->node().leader() != leader) return false;
  }
  return true;
}

void Cluster::Reconcile() {
  for (auto& [id, n] : nodes_) {
    if (n.paused) Resume(id);
    n.tick_slowdown = 1;
  }
  raft::ConfState cs = Members();
  std::vector<uint64_t> members = cs.voters;
  members.insert(members.end(), cs.learners.begin(), cs.learners.end());
  for (uint64_t id : members) {
    auto it = nodes_.find(id);
    if (it == nodes_.end()) {
      // Added, but the answer never reached the harness.
      std::vector<std::string> urls;
      const server::EtcdServer* l = server(Leader());
      if (const server::MemberInfo* m =
              l ? l->state().membership().Find(id) : nullptr) {
        urls = m->peer_urls;
      }
      StartJoiner(id, std::move(urls));
    } else if (it->second.removed) {
      if (!it->second.server) RemoveMember(id);
    } else if (!it->second.server) {
      StartNode(it->second);
    }
  }
  // Nodes that are down and not members (e.g. crashed before they learned
  // of their own addition) are restarted too: they may still be needed.
  for (auto& [id, n] : nodes_) {
    if (!n.server && !n.removed) StartNode(n);
  }
}

void Cluster::FinalChecks() {
  std::vector<const server::Node*> live;
  for (const auto& [id, n] : nodes_) {
    if (n.server) live.push_back(&n.server->node());
  }
  checker_.CheckLogMatching(live);
  // Only current members must hold every acknowledged write.
  uint64_t leader = Leader();
  std::vector<const server::Node*> members;
  if (leader != 0) {
    const raft::ConfState& cs = nodes_.at(leader).server->node().conf_state();
    for (const server::Node* n : live) {
      if (cs.Contains(n->id())) {
        members.push_back(n);
      }
    }
  }
  checker_.CheckDurability(members);
}

}  // namespace detcd::harness
