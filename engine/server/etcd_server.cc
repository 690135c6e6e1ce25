#include "engine/server/etcd_server.h"

#include <algorithm>
#include <utility>
#include <vector>

#include "absl/container/btree_set.h"
#include "absl/strings/str_cat.h"
#include "engine/raft/codec.h"
#include "engine/server/errors.h"
#include "engine/server/quota.h"
#include "engine/util/check.h"
#include "engine/util/coding.h"
#include "engine/util/deadlines.h"
#include "engine/util/hash.h"
#include "engine/util/probes.h"

namespace detcd::server {
namespace {

constexpr char kRaftTag = 'r';
constexpr char kForwardTag = 'q';
constexpr char kAnswerTag = 'a';
constexpr char kGoneTag = 'g';
constexpr int64_t kSecondNs = 1'000'000'000;
constexpr std::string_view kSnapshotImageMagic = "detcd-snapshot1";
// How often expired simple tokens are dropped (their expiry is also
// checked on every use).
constexpr int kTokenSweepTicks = 10;

// A request's bytes with room for the Node's envelope in front
// (PrependEnvelope), so a large value is not copied once more for it.
std::string SerializeForProposal(const etcdserverpb::InternalRaftRequest& r) {
  std::string out;
  out.reserve(r.ByteSizeLong() + kEnvelopeMaxBytes);
  r.AppendToString(&out);
  return out;
}

}  // namespace

// Tags the Node's raft messages so they share the peer link with
// forwarded lease requests.
class EtcdServer::PeerTransport final : public env::Transport {
 public:
  explicit PeerTransport(env::Transport* base) : base_(base) {}
  void Send(uint64_t to, std::string payload) override {
    payload.insert(payload.begin(), kRaftTag);
    base_->Send(to, std::move(payload));
  }
  // A snapshot goes through the base's own SendSnapshot (the real peer
  // transport streams it and reports when it is written, and counts it in
  // etcd_network_snapshot_send_*), never as a plain Send.
  void SendSnapshot(uint64_t to, std::string payload,
                    SnapshotDone done) override {
    payload.insert(payload.begin(), kRaftTag);
    base_->SendSnapshot(to, std::move(payload), std::move(done));
  }
  void SendSnapshotParts(uint64_t to, std::string head,
                         std::shared_ptr<const std::string> tail,
                         SnapshotDone done) override {
    head.insert(head.begin(), kRaftTag);
    base_->SendSnapshotParts(to, std::move(head), std::move(tail),
                             std::move(done));
  }

 private:
  env::Transport* base_;
};

absl::Status EtcdServerOptions::Validate() const {
  if (absl::Status s = node.Validate(); !s.ok()) return s;
  if (tick_ns <= 0) return absl::InvalidArgumentError("tick_ns must be > 0");
  if (watch_sync_ticks < 1 || lease_check_ticks < 1) {
    return absl::InvalidArgumentError(
        "watch_sync_ticks and lease_check_ticks must be >= 1");
  }
  if (absl::Status s = kv.Validate(); !s.ok()) return s;
  if (compact_step_records < 1 || range_step_keys < 1) {
    return absl::InvalidArgumentError(
        "compact_step_records and range_step_keys must be >= 1");
  }
  if (absl::Status s = auto_compaction.Validate(); !s.ok()) return s;
  if (corrupt_check.interval_ns < 0) {
    return absl::InvalidArgumentError("corrupt check interval must be >= 0");
  }
  // min_ttl_s 0 asks for etcd's rule (WithDefaults), so check the result.
  lease::LessorOptions l = lease;
  if (l.min_ttl_s == 0) l.min_ttl_s = 1;
  if (absl::Status s = l.Validate(); !s.ok()) return s;
  if (!node.initial_voters.empty()) {
    absl::btree_set<uint64_t> seen;
    for (const MemberInfo& m : initial_members) {
      if (std::find(node.initial_voters.begin(), node.initial_voters.end(),
                    m.id) == node.initial_voters.end()) {
        return absl::InvalidArgumentError(absl::StrCat(
            "initial member ", m.id, " is not an initial voter"));
      }
      if (!seen.insert(m.id).second) {
        return absl::InvalidArgumentError(
            absl::StrCat("initial member ", m.id, " given twice"));
      }
      if (m.is_learner) {
        return absl::InvalidArgumentError(absl::StrCat(
            "initial member ", m.id, " cannot found a cluster as a learner"));
      }
    }
  }
  return watch.Validate();
}

namespace {
EtcdServerOptions WithDefaults(EtcdServerOptions o) {
  o.watch.bugs = o.bugs;  // the watch hub's planted-bug sites
  o.lease.bugs = o.bugs;  // the lessor's planted-bug sites
  if (o.lease.min_ttl_s == 0) {
    // etcd: minimum TTL = ceil(3/2 * election timeout), in seconds.
    int64_t election_ns = o.node.election_ticks * o.tick_ns;
    o.lease.min_ttl_s = (3 * election_ns / 2 + kSecondNs - 1) / kSecondNs;
  }
  if (!o.node.initial_voters.empty()) {
    for (const MemberInfo& m : o.initial_members) {
      MemberInfo founder = m;
      founder.client_urls.clear();  // published once the member runs
      o.node.founding_contexts[m.id] =
          EncodeMemberContext(founder, MemberChange::kFounding);
    }
  }
  return o;
}
}  // namespace

EtcdServer::EtcdServer(const env::Env& env, EtcdServerOptions opts)
    : env_(env),
      opts_(WithDefaults(std::move(opts))),
      peer_(std::make_unique<PeerTransport>(env.transport)),
      tokens_(opts_.token_provider
                  ? opts_.token_provider
                  : std::make_shared<auth::SimpleTokenProvider>(
                        [clock = env.clock] { return clock->NowNanos(); },
                        [rng = env.rng] { return rng->Next(); },
                        opts_.auth_token_ttl_ns)),
      sm_(EtcdStateMachine::Options{
          opts_.kv, opts_.lease,
          [clock = env.clock] { return clock->NowNanos(); }, tokens_.get(),
          opts_.bugs, opts_.compact_step_records}) {
  DETCD_CHECK(opts_.Validate().ok());
  env::Env node_env = env_;
  node_env.transport = peer_.get();
  node_ = std::make_unique<Node>(node_env, opts_.node, &sm_);
  hub_ = std::make_unique<mvcc::WatchHub>(&sm_.kv(), opts_.watch);
  sm_.set_on_events([this](const std::vector<mvcc::Event>& events) {
    if (opts_.bugs.on(planted::Bug::kWrongWatchEvent)) {
      // PLANTED: every member's watch hub (and the simulator's feed) gets
      // some puts with their new value as prev_kv.
      std::vector<mvcc::Event> wrong = events;
      for (mvcc::Event& e : wrong) {
        if (e.type == mvcc::Event::kPut && e.has_prev_kv &&
            e.kv.mod_revision % 3 == 0) {
          e.prev_kv.value = e.kv.value;
        }
      }
      hub_->Notify(wrong);
      if (on_events_) on_events_(wrong);
      return;
    }
    hub_->Notify(events);
    if (on_events_) on_events_(events);
  });
  sm_.set_on_restore([this] { hub_->OnRestore(); });
  quota_bytes_ = EffectiveQuotaBytes(opts_.quota_backend_bytes);
  // Forwarded-request ids start at a random point: the leader may answer a
  // request of this member's previous life after it restarted, and that
  // answer must not match a new request (a counter from 1 would hand a
  // restarted follower the answer to another lease's keep-alive).
  next_forward_ = env_.rng->Next();
  InitMaintenance();
}

EtcdServer::~EtcdServer() = default;

absl::Status EtcdServer::Start() {
  restarted_ = env_.disk->Exists(opts_.node.data_dir);
  absl::Status s = node_->Start();
  AfterInput();
  return s;
}

void EtcdServer::Tick() {
  if (node_->failed()) return;
  ++ticks_;
  node_->Tick();
  ContinueImages();
  ContinueRanges();
  ContinueHashes();
  // Forwarded requests whose answer never came.
  std::vector<std::function<void(absl::Status, std::string_view)>> expired;
  util::TakeExpired(forwarded_, ticks_, &expired);
  for (auto& d : expired) d(ErrTimeout(), "");
  std::vector<Done<etcdserverpb::MoveLeaderResponse>> moves_expired;
  util::TakeExpired(leader_moves_, ticks_, &moves_expired);
  for (auto& d : moves_expired) d(ErrTimeoutLeaderTransfer());
  if (ticks_ % opts_.watch_sync_ticks == 0) hub_->SyncUnsynced();
  hub_->ProgressNotify(now());
  AfterInput();
  if (ticks_ % opts_.lease_check_ticks == 0) LeaderDuties();
  if (ticks_ % kTokenSweepTicks == 0) tokens_->Sweep();
  MaintenanceTick();
}

void EtcdServer::AdvanceRaftTicks(int n) {
  if (node_->failed()) return;
  node_->AdvanceTicks(n);
  AfterInput();
}

void EtcdServer::CampaignIfOnlyVoter() {
  node_->CampaignIfOnlyVoter();
  AfterInput();
}

void EtcdServer::ReportUnreachable(uint64_t peer) {
  node_->ReportUnreachable(peer);
  AfterInput();
}

void EtcdServer::CoalescePeerPayloads(std::vector<std::string>* payloads) {
  std::vector<std::string> out;
  std::vector<raft::AppendFrame> run;  // views into *payloads
  size_t run_first = 0;                // index in *payloads of run[0]
  auto flush = [&](size_t end) {
    if (run.size() == 1) {
      out.push_back(std::move((*payloads)[run_first]));
    } else if (run.size() > 1) {
      std::string joined(1, kRaftTag);
      joined += raft::JoinAppends(run);
      out.push_back(std::move(joined));
    }
    run.clear();
    run_first = end;
  };
  for (size_t i = 0; i < payloads->size(); ++i) {
    const std::string& p = (*payloads)[i];
    std::optional<raft::AppendFrame> f;
    if (!p.empty() && p[0] == kRaftTag) {
      f = raft::ParseAppendFrame(std::string_view(p).substr(1));
    }
    if (f && !run.empty() && raft::ContinuesAppend(run.back(), *f)) {
      run.push_back(*f);
      continue;
    }
    flush(i);
    if (f) {
      run.push_back(*f);
    } else {
      out.push_back(std::move((*payloads)[i]));
      run_first = i + 1;
    }
  }
  flush(payloads->size());
  *payloads = std::move(out);
}

void EtcdServer::OnMessage(std::string_view payload, std::string* own) {
  if (node_->failed() || payload.empty()) return;
  const char tag = payload[0];
  payload.remove_prefix(1);
  if (tag == kRaftTag) {
    if (RefuseRemovedSender(payload)) return;
    node_->OnMessage(payload, own);
    AfterInput();
    return;
  }
  coding::Reader r(payload);
  if (tag == kGoneTag) {
    // A member that applied our removal refused our messages (only a
    // removal it applied makes it answer so, and removals are final).
    // Only a member can say so (etcd hears 410 Gone only from the members
    // it dials): a stranger's payload on the peer port must not stop us.
    uint64_t from = 0;
    if (r.GetVarint64(&from) && from != opts_.node.id &&
        sm_.membership().Find(from) != nullptr) {
      told_removed_ = true;
    }
    return;
  }
  if (tag == kForwardTag) {
    uint64_t from = 0, rid = 0;
    uint8_t kind = 0;
    if (!r.GetVarint64(&from) || !r.GetVarint64(&rid) || !r.GetByte(&kind) ||
        (kind != kKeepAlive && kind != kTimeToLive &&
         kind != kMemberPromote && kind != kHashKV)) {
      return;  // garbage: drop
    }
    ServeForwarded(from, rid, static_cast<ForwardKind>(kind),
                   std::string(r.rest()));
  } else if (tag == kAnswerTag) {
    uint64_t rid = 0;
    if (!r.GetVarint64(&rid)) return;
    auto it = forwarded_.find(rid);
    if (it == forwarded_.end()) return;  // timed out already
    auto done = std::move(it->second.done);
    forwarded_.erase(it);
    done(absl::OkStatus(), r.rest());
  }
  AfterInput();
}

namespace {

// The sender of an encoded raft message, read without decoding the rest:
// raft/codec.cc's layout begins byte(version) byte(type) varint(to)
// varint(from) (etcd_server_test RemovedMemberIsRefusedAndLearnsIt
// fails if it does not).
bool PeekRaftSender(std::string_view payload, uint64_t* from) {
  coding::Reader r(payload);
  uint8_t version = 0, type = 0;
  uint64_t to = 0;
  return r.GetByte(&version) && r.GetByte(&type) && r.GetVarint64(&to) &&
         r.GetVarint64(from);
}

}  // namespace

absl::Status EtcdServer::CheckLearnerRpc(bool supported) const {
  if (supported || !node_->is_learner() ||
      sm_.membership().Find(opts_.node.id) == nullptr) {
    return absl::OkStatus();
  }
  return ErrNotSupportedForLearner();
}

bool EtcdServer::RefuseRemovedSender(std::string_view raft_payload) {
  uint64_t from = 0;
  if (!PeekRaftSender(raft_payload, &from) ||
      !sm_.membership().IsRemoved(from)) {
    return false;
  }
  // Bounded: one answer per removed sender per tick, and the map holds
  // only removed ids that still talk to us.
  auto [it, fresh] = gone_told_tick_.try_emplace(from, ticks_);
  if (fresh || it->second != ticks_) {
    it->second = ticks_;
    std::string msg(1, kGoneTag);
    coding::PutVarint64(&msg, opts_.node.id);
    env_.transport->Send(from, std::move(msg));
  }
  return true;
}

uint64_t EtcdServer::NextRequestId() {
  // etcd's request ids: member id in the top bits, a counter below; the
  // counter starts from the clock so a restarted member does not reuse ids.
  if (!ids_seeded_) {
    next_request_ = ((static_cast<uint64_t>(now()) / 1'000'000) << 8) + 1;
    ids_seeded_ = true;
  }
  return ((opts_.node.id & 0xffff) << 48) |
         (next_request_++ & ((uint64_t{1} << 48) - 1));
}

template <typename Resp>
void EtcdServer::FillHeader(Resp* r) const {
  // Responses without a header (a publish's EmptyResponse) get none.
  if constexpr (requires { r->mutable_header(); }) {
    etcdserverpb::ResponseHeader* h = r->mutable_header();
    h->set_cluster_id(opts_.cluster_id);
    h->set_member_id(opts_.node.id);
    h->set_raft_term(node_->raft().term());
    if (h->revision() == 0) h->set_revision(sm_.kv().Rev());
  }
}

template <typename Resp>
void EtcdServer::ProposeRequest(etcdserverpb::InternalRaftRequest req,
                                Done<Resp> done) {
  const uint64_t rid = NextRequestId();
  req.mutable_header()->set_id(rid);
  ProposeEncoded(rid, SerializeForProposal(req), std::move(done));
}

template <typename Resp, typename Req>
void EtcdServer::ProposeLent(
    etcdserverpb::InternalRaftRequest req,
    void (etcdserverpb::InternalRaftRequest::*lend)(Req*),
    Req* (etcdserverpb::InternalRaftRequest::*take_back)(), const Req& r,
    Done<Resp> done) {
  const uint64_t rid = NextRequestId();
  req.mutable_header()->set_id(rid);
  // Serializing reads the field and never writes it, so the caller's
  // message can stand in for a copy; it is taken back before req goes (req
  // must not delete what it does not own).
  (req.*lend)(const_cast<Req*>(&r));
  std::string cmd = SerializeForProposal(req);
  (req.*take_back)();
  ProposeEncoded(rid, std::move(cmd), std::move(done));
}

template <typename Resp>
void EtcdServer::ProposeEncoded(uint64_t rid, std::string cmd,
                                Done<Resp> done) {
  if (opts_.bugs.on(planted::Bug::kDuplicateApply)) inflight_[rid] = cmd;
  // The command is kept for the answer only when someone listens for it
  // (the simulator's on_ack); the real server proposes it without a copy.
  std::string acked = on_ack_ ? cmd : std::string();
  auto answer = [this, rid, acked = std::move(acked),
                 done = std::move(done)](absl::StatusOr<std::string> result) {
    if (!inflight_.empty()) inflight_.erase(rid);
    if (!result.ok()) return done(result.status());
    Resp resp;
    if (absl::Status s = DecodeResult(*result, &resp); !s.ok()) {
      return done(s);
    }
    if (on_ack_) on_ack_(acked);
    FillHeader(&resp);
    done(std::move(resp));
  };
  node_->Propose(std::move(cmd), std::move(answer));
  AfterInput();
}

void EtcdServer::LinearizableRead(std::function<void(absl::Status)> serve) {
  if (opts_.bugs.on(planted::Bug::kFollowerLocalRead) && !node_->is_leader() &&
      node_->leader() != 0) {
    return serve(absl::OkStatus());  // PLANTED: no ReadIndex
  }
  node_->ReadIndex(std::move(serve));
  AfterInput();
}

void EtcdServer::Range(const etcdserverpb::RangeRequest& r,
                       Done<etcdserverpb::RangeResponse> done) {
  if (absl::Status s = CheckRange(r); !s.ok()) return done(s);
  auto serve = [this, r, who = KeepCaller(),
                done = std::move(done)](absl::Status s) mutable {
    if (!s.ok()) return done(s);
    if (s = CheckRead(who, r.key(), r.range_end()); !s.ok()) return done(s);
    auto job = std::make_unique<RangeJob>();
    job->request = std::move(r);
    job->done = std::move(done);
    if (StepRange(*job)) return;
    range_jobs_.push_back(std::move(job));
  };
  if (r.serializable()) return serve(absl::OkStatus());
  LinearizableRead(std::move(serve));
}

void EtcdServer::Put(const etcdserverpb::PutRequest& r,
                     Done<etcdserverpb::PutResponse> done) {
  // etcd checks the quota before anything else.
  if (absl::Status s = CheckQuota(QuotaCost(r)); !s.ok()) return done(s);
  if (absl::Status s = CheckPut(r); !s.ok()) return done(s);
  etcdserverpb::InternalRaftRequest req;
  if (absl::Status s = StampCaller(&req); !s.ok()) return done(s);
  using R = etcdserverpb::InternalRaftRequest;
  ProposeLent(std::move(req), &R::unsafe_arena_set_allocated_put,
              &R::unsafe_arena_release_put, r, std::move(done));
}

void EtcdServer::DeleteRange(const etcdserverpb::DeleteRangeRequest& r,
                             Done<etcdserverpb::DeleteRangeResponse> done) {
  if (absl::Status s = CheckDeleteRange(r); !s.ok()) return done(s);
  etcdserverpb::InternalRaftRequest req;
  if (absl::Status s = StampCaller(&req); !s.ok()) return done(s);
  using R = etcdserverpb::InternalRaftRequest;
  ProposeLent(std::move(req), &R::unsafe_arena_set_allocated_delete_range,
              &R::unsafe_arena_release_delete_range, r, std::move(done));
}

void EtcdServer::Txn(const etcdserverpb::TxnRequest& r,
                     Done<etcdserverpb::TxnResponse> done) {
  if (absl::Status s = CheckQuota(QuotaCost(r)); !s.ok()) return done(s);
  if (absl::Status s = CheckTxn(r, opts_.kv); !s.ok()) return done(s);
  if (IsTxnReadOnly(r)) {
    // Read-only: served like a linearizable range, as etcd does.
    LinearizableRead([this, r, who = KeepCaller(),
                      done = std::move(done)](absl::Status s) {
      if (!s.ok()) return done(s);
      if (s = CheckReadTxn(who, r); !s.ok()) return done(s);
      absl::StatusOr<etcdserverpb::TxnResponse> resp =
          ApplyReadOnlyTxn(sm_.kv(), r);
      if (resp.ok()) FillHeader(&*resp);
      done(std::move(resp));
    });
    return;
  }
  etcdserverpb::InternalRaftRequest req;
  if (absl::Status s = StampCaller(&req); !s.ok()) return done(s);
  using R = etcdserverpb::InternalRaftRequest;
  ProposeLent(std::move(req), &R::unsafe_arena_set_allocated_txn,
              &R::unsafe_arena_release_txn, r, std::move(done));
}

void EtcdServer::Compact(const etcdserverpb::CompactionRequest& r,
                         Done<etcdserverpb::CompactionResponse> done) {
  if (absl::Status s = CheckCompaction(r); !s.ok()) return done(s);
  etcdserverpb::InternalRaftRequest req;
  if (absl::Status s = StampCaller(&req); !s.ok()) return done(s);
  *req.mutable_compaction() = r;
  if (!r.physical()) return ProposeRequest(std::move(req), std::move(done));
  using Resp = etcdserverpb::CompactionResponse;
  ProposeRequest<Resp>(
      std::move(req),
      [this, done = std::move(done)](absl::StatusOr<Resp> resp) mutable {
        // Applied here already (a member answers its own proposals when it
        // applies them): wait if its revisions are still being removed.
        if (!resp.ok() || !node_->background_pending()) {
          return done(std::move(resp));
        }
        physical_compactions_.push_back(
            PhysicalCompaction{*std::move(resp), std::move(done)});
      });
}

void EtcdServer::AnswerPhysicalCompactions() {
  if (physical_compactions_.empty()) return;
  const bool stopped = node_->failed();
  if (!stopped && node_->background_pending()) return;
  std::vector<PhysicalCompaction> done = std::move(physical_compactions_);
  physical_compactions_.clear();
  for (PhysicalCompaction& p : done) {
    if (stopped) {
      p.done(ErrStopped());
    } else {
      p.done(std::move(p.resp));
    }
  }
}

void EtcdServer::ContinueBackground() {
  node_->ContinueSnapshot();
  ContinueImages();
  AnswerPhysicalCompactions();
  ContinueRanges();
  ContinueHashes();
}

bool EtcdServer::StepRange(RangeJob& job) {
  if (!job.reader.has_value()) {
    absl::StatusOr<RangeReader> rd = RangeReader::Begin(job.request);
    if (!rd.ok()) {
      job.done(rd.status());
      return true;
    }
    job.reader.emplace(*std::move(rd));
  }
  absl::StatusOr<bool> done =
      job.reader->Step(sm_.kv(), opts_.range_step_keys);
  if (!done.ok() && mvcc::IsErrCompacted(done.status()) &&
      job.request.revision() <= 0 && job.steps > 0) {
    // Compacted past the revision the first pieces were read at: the
    // latest revision is asked for, so read it all again at the new one.
    job.reader.reset();
    ++job.steps;
    return StepRange(job);
  }
  ++job.steps;
  if (!done.ok()) {
    job.done(done.status());
    return true;
  }
  if (!*done) {
    if (job.steps == 1) DETCD_PROBE(kServerRangeInPieces);
    return false;
  }
  etcdserverpb::RangeResponse resp = std::move(*job.reader).Finish();
  FillHeader(&resp);
  job.done(std::move(resp));
  return true;
}

namespace {

// One step of each job, oldest first (a job's answer may start another,
// which waits for the next round); `step` is true once it answered. A
// stopped member answers them all with ErrStopped.
template <typename Job, typename Stopped, typename Step>
void StepEach(std::vector<std::unique_ptr<Job>>* jobs, Stopped stopped,
              Step step) {
  std::vector<std::unique_ptr<Job>> now = std::move(*jobs);
  jobs->clear();
  for (auto& job : now) {
    if (stopped()) {
      job->done(ErrStopped());
    } else if (!step(*job)) {
      jobs->push_back(std::move(job));
    }
  }
}

}  // namespace

void EtcdServer::ContinueRanges() {
  StepEach(
      &range_jobs_, [this] { return node_->failed(); },
      [this](RangeJob& j) { return StepRange(j); });
}

void EtcdServer::LeaseGrant(const etcdserverpb::LeaseGrantRequest& r,
                            Done<etcdserverpb::LeaseGrantResponse> done) {
  if (absl::Status s = CheckQuota(QuotaCost(r)); !s.ok()) return done(s);
  etcdserverpb::InternalRaftRequest req;
  if (absl::Status s = StampCaller(&req); !s.ok()) return done(s);
  *req.mutable_lease_grant() = r;
  if (r.id() == 0) {
    // Server-chosen: a request id is unique cluster-wide; keep it positive.
    req.mutable_lease_grant()->set_id(
        static_cast<int64_t>(NextRequestId() & 0x7fffffffffffffffULL));
  }
  ProposeRequest(std::move(req), std::move(done));
}

void EtcdServer::LeaseRevoke(const etcdserverpb::LeaseRevokeRequest& r,
                             Done<etcdserverpb::LeaseRevokeResponse> done) {
  etcdserverpb::InternalRaftRequest req;
  if (absl::Status s = StampCaller(&req); !s.ok()) return done(s);
  *req.mutable_lease_revoke() = r;
  ProposeRequest(std::move(req), std::move(done));
}

absl::StatusOr<etcdserverpb::LeaseKeepAliveResponse> EtcdServer::RenewHere(
    const etcdserverpb::LeaseKeepAliveRequest& r) {
  if (!node_->is_leader() || !sm_.lessor().is_primary()) {
    return ErrNoLeader();  // lost leadership meanwhile; the client retries
  }
  absl::StatusOr<int64_t> ttl = sm_.lessor().Renew(r.id(), now());
  if (!ttl.ok()) return ttl.status();
  etcdserverpb::LeaseKeepAliveResponse resp;
  resp.set_id(r.id());
  resp.set_ttl(*ttl);
  FillHeader(&resp);
  return resp;
}

absl::StatusOr<etcdserverpb::LeaseTimeToLiveResponse>
EtcdServer::TimeToLiveHere(const etcdserverpb::LeaseTimeToLiveRequest& r) {
  if (!node_->is_leader() || !sm_.lessor().is_primary()) return ErrNoLeader();
  etcdserverpb::LeaseTimeToLiveResponse resp;
  resp.set_id(r.id());
  absl::StatusOr<lease::Lessor::LeaseInfo> info = sm_.lessor().Get(r.id());
  absl::StatusOr<int64_t> remaining =
      sm_.lessor().RemainingTtlSeconds(r.id(), now());
  if (!info.ok() || !remaining.ok() || *remaining < 0) {
    // etcd answers an unknown or expired lease with TTL -1, not an error.
    resp.set_ttl(-1);
  } else {
    resp.set_ttl(*remaining);
    resp.set_grantedttl(info->ttl_s);
    if (r.keys()) {
      for (const std::string& k : info->keys) resp.add_keys(k);
    }
  }
  FillHeader(&resp);
  return resp;
}

void EtcdServer::Forward(
    ForwardKind kind, std::string request,
    std::function<void(absl::Status, std::string_view)> done) {
  const uint64_t leader = node_->leader();
  if (leader == 0) return done(ErrNoLeader(), "");
  ForwardTo(leader, kind, std::move(request), std::move(done));
}

void EtcdServer::ForwardTo(
    uint64_t to, ForwardKind kind, std::string request,
    std::function<void(absl::Status, std::string_view)> done) {
  const uint64_t rid = next_forward_++;
  std::string msg(1, kForwardTag);
  coding::PutVarint64(&msg, opts_.node.id);
  coding::PutVarint64(&msg, rid);
  msg.push_back(static_cast<char>(kind));
  msg += request;
  forwarded_[rid] = Forwarded{std::move(done),
                              ticks_ + opts_.node.request_timeout_ticks};
  env_.transport->Send(to, std::move(msg));
}

template <typename Req, typename Resp>
void EtcdServer::Relay(ForwardKind kind, const Req& r, Done<Resp> done) {
  Forward(kind, r.SerializeAsString(),
          [this, done = std::move(done)](absl::Status s,
                                         std::string_view result) {
            if (!s.ok()) return done(s);
            Resp resp;
            if (s = DecodeResult(result, &resp); !s.ok()) return done(s);
            FillHeader(&resp);
            done(std::move(resp));
          });
}

void EtcdServer::ServeForwarded(uint64_t from, uint64_t rid, ForwardKind kind,
                                std::string request) {
  auto answer = [this, from, rid](std::string result) {
    std::string msg(1, kAnswerTag);
    coding::PutVarint64(&msg, rid);
    msg += result;
    env_.transport->Send(from, std::move(msg));
  };
  if (kind == kHashKV) return ServeHashKV(request, answer);
  if (!node_->is_leader()) {
    // Leadership moved on: no second hop, the sender's client retries.
    return answer(EncodeResult(ErrNoLeader(), nullptr));
  }
  if (kind == kKeepAlive) {
    etcdserverpb::LeaseKeepAliveRequest r;
    if (!r.ParseFromString(request)) return;
    LeaseKeepAlive(r, [answer](auto resp) {
      answer(EncodeResult(resp.status(), resp.ok() ? &*resp : nullptr));
    });
  } else if (kind == kTimeToLive) {
    etcdserverpb::LeaseTimeToLiveRequest r;
    if (!r.ParseFromString(request)) return;
    LeaseTimeToLive(r, [answer](auto resp) {
      answer(EncodeResult(resp.status(), resp.ok() ? &*resp : nullptr));
    });
  } else {
    etcdserverpb::MemberPromoteRequest r;
    if (!r.ParseFromString(request)) return;
    MemberPromote(r, [answer](auto resp) {
      answer(EncodeResult(resp.status(), resp.ok() ? &*resp : nullptr));
    });
  }
}

// Keep-alive and time-to-live are answered by the leader only, after a
// ReadIndex confirmed it still leads (so a deposed leader cannot renew a
// lease the new leader already revoked); a follower forwards them.
void EtcdServer::LeaseKeepAlive(
    const etcdserverpb::LeaseKeepAliveRequest& r,
    Done<etcdserverpb::LeaseKeepAliveResponse> done) {
  if (node_->is_leader()) {
    if (buggify::Fires(opts_.node.buggify, buggify::Point::kDropKeepAlive,
                       0.05)) {
      // BUGGIFY: the keep-alive fails without renewing (as one lost on a
      // busy leader would); the client must keep its lease alive anyway
      // and never count this one as a renewal.
      return done(ErrTimeout());
    }
    node_->ReadIndex([this, r, done = std::move(done)](absl::Status s) {
      if (!s.ok()) return done(s);
      absl::StatusOr<etcdserverpb::LeaseKeepAliveResponse> resp = RenewHere(r);
      if (resp.ok() && sm_.lessor().AwaitingClear(r.id())) {
        // Answer once the clear of its stale remaining TTL is applied, so
        // a leader change cannot bring the old remaining TTL back.
        held_.push_back(HeldKeepAlive{r.id(), *std::move(resp), done});
        ProposeCheckpoints();
        return;
      }
      done(std::move(resp));
    });
    AfterInput();
    return;
  }
  Relay(kKeepAlive, r, std::move(done));
}

void EtcdServer::LeaseTimeToLive(
    const etcdserverpb::LeaseTimeToLiveRequest& r,
    Done<etcdserverpb::LeaseTimeToLiveResponse> done) {
  if (node_->is_leader()) {
    node_->ReadIndex([this, r, done = std::move(done)](absl::Status s) {
      if (!s.ok()) return done(s);
      done(TimeToLiveHere(r));
    });
    AfterInput();
    return;
  }
  Relay(kTimeToLive, r, std::move(done));
}

void EtcdServer::LeaseLeases(const etcdserverpb::LeaseLeasesRequest& r,
                             Done<etcdserverpb::LeaseLeasesResponse> done) {
  LinearizableRead([this, done = std::move(done)](absl::Status s) {
    if (!s.ok()) return done(s);
    etcdserverpb::LeaseLeasesResponse resp;
    for (int64_t id : sm_.lessor().Ids()) resp.add_leases()->set_id(id);
    FillHeader(&resp);
    done(std::move(resp));
  });
}

void EtcdServer::WatchCreate(mvcc::WatchHub::StreamId s,
                             mvcc::WatchCreate req) {
  if (opts_.bugs.on(planted::Bug::kWatchSkipAfterRestart) && restarted_ &&
      req.start_revision > 0) {
    ++req.start_revision;  // PLANTED: one event lost on resume
  }
  hub_->Create(s, req);
}

void EtcdServer::AfterInput() {
  AnswerPhysicalCompactions();
  if (node_->failed()) return;
  if (!leader_moves_.empty()) CheckLeaderMoves();
  RunTokenWaits();
  const bool leader = node_->is_leader();
  if (leader && !promoted_) {
    // Promote once this leader applied an entry of its own term (the empty
    // entry raft appends on election): by then every checkpoint applied
    // while it is primary is one it handed out itself. A new primary
    // extends every lease by an election timeout: the old leader may have
    // renewed them just before it lost its quorum.
    const raft::Raft& r = node_->raft();
    if (r.log().ZeroTermOnError(node_->applied_index()) == r.term()) {
      sm_.lessor().Promote(now(), opts_.node.election_ticks * opts_.tick_ns);
      promoted_ = true;
    }
  } else if (!leader && promoted_) {
    sm_.lessor().Demote();
    promoted_ = false;
  }
  if (!held_.empty()) {
    std::vector<HeldKeepAlive> ready;
    for (auto it = held_.begin(); it != held_.end();) {
      if (!sm_.lessor().is_primary() || !sm_.lessor().AwaitingClear(it->id)) {
        ready.push_back(std::move(*it));
        it = held_.erase(it);
      } else {
        ++it;
      }
    }
    for (HeldKeepAlive& h : ready) {
      if (!sm_.lessor().is_primary()) {
        h.done(ErrNoLeader());  // demoted before the clear applied
      } else {
        h.done(std::move(h.resp));
      }
    }
  }
  const uint64_t lead = node_->leader();
  if (lead != 0 && lead != last_leader_) {
    const bool changed = last_leader_ != 0;
    last_leader_ = lead;
    if (changed && opts_.bugs.on(planted::Bug::kDuplicateApply)) {
      // PLANTED: a retry inside the server under a fresh request id, so
      // the state machine's duplicate filter cannot catch it.
      std::map<uint64_t, std::string> again = inflight_;
      for (auto& [rid, cmd] : again) {
        etcdserverpb::InternalRaftRequest req;
        if (!req.ParseFromString(cmd)) continue;
        req.mutable_header()->set_id(NextRequestId());
        node_->Propose(req.SerializeAsString(),
                       [](absl::StatusOr<std::string>) {});
      }
    }
  }
}

void EtcdServer::LeaderDuties() {
  if (node_->failed() || !node_->is_leader() || !sm_.lessor().is_primary()) {
    return;
  }
  for (int64_t id : sm_.lessor().Expired(now())) {
    etcdserverpb::InternalRaftRequest req;
    req.mutable_lease_revoke()->set_id(id);
    req.mutable_header()->set_id(NextRequestId());
    if (sm_.auth().enabled()) {
      // etcd revokes expired leases as root (AuthStore.WithRoot), so the
      // apply-time check of the lease's keys passes.
      req.mutable_header()->set_username(std::string(auth::kRootUser));
      req.mutable_header()->set_auth_revision(sm_.auth().revision());
    }
    node_->Propose(req.SerializeAsString(), [](absl::StatusOr<std::string>) {
      // Lost or failed: Expired() reports the lease again later.
    });
  }
  ProposeCheckpoints();
}

void EtcdServer::ProposeCheckpoints() {
  if (node_->failed() || !sm_.lessor().is_primary()) return;
  // In the order handed out (clears of renewed leases first).
  std::vector<lease::Lessor::CheckpointItem> cps =
      sm_.lessor().DueCheckpoints(now());
  if (!cps.empty()) {
    etcdserverpb::InternalRaftRequest req;
    for (const auto& cp : cps) {
      etcdserverpb::LeaseCheckpoint* c =
          req.mutable_lease_checkpoint()->add_checkpoints();
      c->set_id(cp.id);
      c->set_remaining_ttl(cp.remaining_ttl_s);
    }
    req.mutable_header()->set_id(NextRequestId());
    node_->Propose(req.SerializeAsString(), [](absl::StatusOr<std::string>) {});
  }
}

// ---- Cluster ----

void EtcdServer::MemberList(const etcdserverpb::MemberListRequest& r,
                            Done<etcdserverpb::MemberListResponse> done) {
  auto serve = [this, done = std::move(done)](absl::Status s) {
    if (!s.ok()) return done(s);
    etcdserverpb::MemberListResponse resp;
    AddMembers(resp.mutable_members());
    FillClusterHeader(resp.mutable_header());
    done(std::move(resp));
  };
  if (!r.linearizable()) return serve(absl::OkStatus());
  LinearizableRead(std::move(serve));
}

void EtcdServer::FillClusterHeader(etcdserverpb::ResponseHeader* h) const {
  h->set_cluster_id(opts_.cluster_id);
  h->set_member_id(opts_.node.id);
  h->set_raft_term(node_->raft().term());
  h->set_revision(0);
}

void EtcdServer::AddMembers(
    google::protobuf::RepeatedPtrField<etcdserverpb::Member>* out) const {
  for (const MemberInfo& m : sm_.membership().List()) ToProto(m, out->Add());
}

uint64_t EtcdServer::NewMemberId() {
  // etcd hashes the peer URLs, cluster name and time; any id that was
  // never a member does, and this member's Rng keeps it deterministic.
  for (;;) {
    const uint64_t id =
        opts_.new_member_id ? opts_.new_member_id() : env_.rng->Next();
    if (id != 0 && sm_.membership().Find(id) == nullptr &&
        !sm_.membership().IsRemoved(id)) {
      return id;
    }
  }
}

std::pair<int, int> EtcdServer::ConnectedVoters() const {
  int connected = 0, voters = 0;
  for (const MemberInfo& m : sm_.membership().List()) {
    if (m.is_learner) continue;
    ++voters;
    if (m.id == opts_.node.id ||
        (peer_link_age_ ? peer_link_age_(m.id) > opts_.health_interval_ns
                        : true)) {
      ++connected;
    }
  }
  return {connected, voters};
}

absl::Status EtcdServer::MayAddMember(bool learner) const {
  if (!opts_.strict_reconfig_check) return absl::OkStatus();
  // Protect the quorum when a voter joins: it does not count as started.
  if (!learner && !sm_.membership().IsReadyToAddVotingMember()) {
    return ErrNotEnoughStartedMembers();
  }
  // etcd's isConnectedFullySince, for learners too: every voter's link has
  // been up for a health interval.
  const auto [connected, voters] = ConnectedVoters();
  if (connected != voters) return ErrUnhealthy();
  return absl::OkStatus();
}

absl::Status EtcdServer::MayRemoveMember(uint64_t id) const {
  if (!opts_.strict_reconfig_check) return absl::OkStatus();
  const MemberInfo* m = sm_.membership().Find(id);
  if (m != nullptr && m->is_learner) return absl::OkStatus();  // no quorum
  if (!sm_.membership().IsReadyToRemoveVotingMember(id)) {
    return ErrNotEnoughStartedMembers();
  }
  // A member that is down now is safe to remove: it is not part of the
  // active quorum.
  if (id != opts_.node.id && peer_link_age_ && peer_link_age_(id) == 0) {
    return absl::OkStatus();
  }
  // Otherwise the voters connected now, less the one removed, must still
  // be a quorum of the voters that remain.
  const auto [connected, voters] = ConnectedVoters();
  if (connected - 1 < 1 + (voters - 1) / 2) return ErrUnhealthy();
  return absl::OkStatus();
}

void EtcdServer::ProposeMemberChange(const raft::ConfChange& cc,
                                     std::function<void(absl::Status)> then) {
  node_->ProposeConfChange(
      cc, [then = std::move(then)](absl::StatusOr<std::string> r) {
        then(r.status());
      });
  AfterInput();
}

void EtcdServer::MemberAdd(const etcdserverpb::MemberAddRequest& r,
                           Done<etcdserverpb::MemberAddResponse> done) {
  absl::StatusOr<std::vector<std::string>> urls = ParseMemberUrls(
      std::vector<std::string>(r.peerurls().begin(), r.peerurls().end()));
  if (!urls.ok()) return done(urls.status());
  // etcd's gRPC layer parses the URLs before the server checks the user.
  if (absl::Status s = CheckAdmin(); !s.ok()) return done(s);
  if (absl::Status s = MayAddMember(r.islearner()); !s.ok()) return done(s);
  MemberInfo m;
  m.id = NewMemberId();
  m.peer_urls = *std::move(urls);
  m.is_learner = r.islearner();
  raft::ConfChange cc{r.islearner() ? raft::ConfChangeType::kAddLearnerNode
                                    : raft::ConfChangeType::kAddNode,
                      m.id, EncodeMemberContext(m, MemberChange::kAdd)};
  ProposeMemberChange(cc, [this, m, done = std::move(done)](absl::Status s) {
    if (!s.ok()) return done(s);
    etcdserverpb::MemberAddResponse resp;
    FillClusterHeader(resp.mutable_header());
    ToProto(m, resp.mutable_member());
    AddMembers(resp.mutable_members());
    done(std::move(resp));
  });
}

void EtcdServer::MemberRemove(const etcdserverpb::MemberRemoveRequest& r,
                              Done<etcdserverpb::MemberRemoveResponse> done) {
  if (absl::Status s = CheckAdmin(); !s.ok()) return done(s);
  if (absl::Status s = MayRemoveMember(r.id()); !s.ok()) return done(s);
  MemberInfo gone;
  gone.id = r.id();
  raft::ConfChange cc{raft::ConfChangeType::kRemoveNode, r.id(),
                      EncodeMemberContext(gone, MemberChange::kRemove)};
  ProposeMemberChange(cc, [this, done = std::move(done)](absl::Status s) {
    if (!s.ok()) return done(s);
    etcdserverpb::MemberRemoveResponse resp;
    FillClusterHeader(resp.mutable_header());
    AddMembers(resp.mutable_members());
    done(std::move(resp));
  });
}

void EtcdServer::MemberUpdate(const etcdserverpb::MemberUpdateRequest& r,
                              Done<etcdserverpb::MemberUpdateResponse> done) {
  if (absl::Status s = CheckAdmin(); !s.ok()) return done(s);
  MemberInfo m;
  m.id = r.id();
  m.peer_urls.assign(r.peerurls().begin(), r.peerurls().end());
  raft::ConfChange cc{raft::ConfChangeType::kUpdateNode, r.id(),
                      EncodeMemberContext(m, MemberChange::kUpdate)};
  ProposeMemberChange(cc, [this, done = std::move(done)](absl::Status s) {
    if (!s.ok()) return done(s);
    etcdserverpb::MemberUpdateResponse resp;
    FillClusterHeader(resp.mutable_header());
    AddMembers(resp.mutable_members());
    done(std::move(resp));
  });
}

void EtcdServer::MemberPromote(
    const etcdserverpb::MemberPromoteRequest& r,
    Done<etcdserverpb::MemberPromoteResponse> done) {
  if (absl::Status s = CheckAdmin(); !s.ok()) return done(s);
  if (!node_->is_leader()) {
    Forward(kMemberPromote, r.SerializeAsString(),
            [this, done = std::move(done)](absl::Status s,
                                           std::string_view result) {
              if (!s.ok()) return done(s);
              etcdserverpb::MemberPromoteResponse resp;
              if (s = DecodeResult(result, &resp); !s.ok()) return done(s);
              FillClusterHeader(resp.mutable_header());
              done(std::move(resp));
            });
    return;
  }
  // etcd's isLearnerReady: the learner's log reaches 90% of the leader's.
  const raft::ProgressTracker& tracker = node_->raft().tracker();
  const raft::Progress* learner = tracker.Get(r.id());
  const raft::Progress* self = tracker.Get(opts_.node.id);
  if (learner != nullptr && self != nullptr &&
      learner->match * 10 < self->match * 9) {
    return done(ErrLearnerNotReady());
  }
  if (opts_.strict_reconfig_check &&
      !sm_.membership().IsReadyToPromoteMember()) {
    return done(ErrNotEnoughStartedMembers());
  }
  MemberInfo m;
  m.id = r.id();
  raft::ConfChange cc{raft::ConfChangeType::kAddNode, r.id(),
                      EncodeMemberContext(m, MemberChange::kPromote)};
  ProposeMemberChange(cc, [this, done = std::move(done)](absl::Status s) {
    if (!s.ok()) return done(s);
    etcdserverpb::MemberPromoteResponse resp;
    FillClusterHeader(resp.mutable_header());
    AddMembers(resp.mutable_members());
    done(std::move(resp));
  });
}

void EtcdServer::Publish(std::string name,
                         std::vector<std::string> client_urls,
                         std::function<void(absl::Status)> done) {
  etcdserverpb::InternalRaftRequest req;
  auto* set = req.mutable_cluster_member_attr_set();
  set->set_member_id(opts_.node.id);
  set->mutable_member_attributes()->set_name(std::move(name));
  for (std::string& u : client_urls) {
    set->mutable_member_attributes()->add_client_urls(std::move(u));
  }
  ProposeRequest<etcdserverpb::EmptyResponse>(
      std::move(req),
      [done = std::move(done)](absl::StatusOr<etcdserverpb::EmptyResponse> r) {
        done(r.status());
      });
}

// ---- Maintenance ----

absl::Status EtcdServer::CheckQuota(int64_t cost) {
  if (QuotaAvailable(quota_bytes_, sm_.db_size(), cost)) {
    return absl::OkStatus();
  }
  RaiseNoSpace();
  return ErrNoSpace();
}

void EtcdServer::RaiseNoSpace() {
  // etcd proposes the alarm on every refused write; once it is raised (or
  // on its way) more proposals would change nothing.
  if (nospace_pending_ ||
      sm_.alarms().Has(opts_.node.id, etcdserverpb::NOSPACE)) {
    return;
  }
  nospace_pending_ = true;
  etcdserverpb::InternalRaftRequest req;
  req.mutable_alarm()->set_action(etcdserverpb::AlarmRequest::ACTIVATE);
  req.mutable_alarm()->set_memberid(opts_.node.id);
  req.mutable_alarm()->set_alarm(etcdserverpb::NOSPACE);
  ProposeRequest<etcdserverpb::AlarmResponse>(
      std::move(req), [this](absl::StatusOr<etcdserverpb::AlarmResponse>) {
        nospace_pending_ = false;  // raised, or the next refusal retries
      });
}

void EtcdServer::Alarm(const etcdserverpb::AlarmRequest& r,
                       Done<etcdserverpb::AlarmResponse> done) {
  etcdserverpb::InternalRaftRequest req;
  if (absl::Status s = StampCaller(&req); !s.ok()) return done(s);
  *req.mutable_alarm() = r;
  // etcd answers Alarm with the applied response as is: no header.
  ProposeRequest<etcdserverpb::AlarmResponse>(
      std::move(req),
      [done = std::move(done)](absl::StatusOr<etcdserverpb::AlarmResponse> a) {
        if (a.ok()) a->clear_header();
        done(std::move(a));
      });
}

void EtcdServer::Status(const etcdserverpb::StatusRequest&,
                        Done<etcdserverpb::StatusResponse> done) {
  etcdserverpb::StatusResponse resp;
  FillHeader(&resp);
  resp.set_version(opts_.version);
  resp.set_dbsize(sm_.db_size());
  resp.set_dbsizeinuse(sm_.db_size_in_use());
  resp.set_leader(node_->leader());
  resp.set_raftindex(node_->committed_index());
  resp.set_raftterm(node_->raft().term());
  resp.set_raftappliedindex(node_->applied_index());
  resp.set_islearner(node_->is_learner());
  if (node_->leader() == raft::kNone) {
    resp.add_errors(std::string(ErrNoLeader().message()));
  }
  for (const etcdserverpb::AlarmMember& a :
       sm_.alarms().Get(etcdserverpb::NONE)) {
    resp.add_errors(AlarmText(a));
  }
  done(std::move(resp));
}

void EtcdServer::Hash(const etcdserverpb::HashRequest&,
                      Done<etcdserverpb::HashResponse> done) {
  // etcd's authMaintenanceServer: the auth error as is.
  if (absl::Status s = CheckAdmin(); !s.ok()) return done(Untranslated(s));
  std::string buf;
  coding::PutVarint64(&buf, sm_.kv().Hash());
  buf += sm_.membership().Snapshot();
  buf += sm_.alarms().Snapshot();
  const uint64_t h = util::Fnv1a(buf);
  etcdserverpb::HashResponse resp;
  resp.set_hash(static_cast<uint32_t>(h ^ (h >> 32)));
  FillHeader(&resp);
  done(std::move(resp));
}

void EtcdServer::HashKV(const etcdserverpb::HashKVRequest& r,
                        Done<etcdserverpb::HashKVResponse> done) {
  // etcd's authMaintenanceServer: the auth error as is.
  if (absl::Status s = CheckAdmin(); !s.ok()) return done(Untranslated(s));
  auto job = std::make_unique<HashJob>();
  job->revision = r.revision();
  job->done = std::move(done);
  if (StepHash(*job)) return;
  hash_jobs_.push_back(std::move(job));
}

bool EtcdServer::StepHash(HashJob& job) {
  const mvcc::KvStore& kv = sm_.kv();
  if (!job.writer.has_value()) {
    // Its steps first (a hash begun now would finish them at once).
    if (kv.compaction_pending()) return false;
    absl::StatusOr<mvcc::KvStore::HashWriter> w = kv.BeginHash(job.revision);
    if (!w.ok()) {
      job.done(w.status());
      return true;
    }
    job.writer.emplace(*std::move(w));
  }
  absl::StatusOr<bool> done = job.writer->Step(kHashStepBytes);
  if (!done.ok()) {
    job.writer.reset();  // compacted or restored under it: again
    return false;
  }
  if (!*done) return false;
  const mvcc::KeyValueHash& h = job.writer->result();
  etcdserverpb::HashKVResponse resp;
  resp.set_hash(h.hash);
  resp.set_compact_revision(h.compact_revision);
  resp.set_hash_revision(h.revision);
  FillHeader(&resp);
  job.done(std::move(resp));
  return true;
}

void EtcdServer::ContinueHashes() {
  StepEach(
      &hash_jobs_, [this] { return node_->failed(); },
      [this](HashJob& j) { return StepHash(j); });
}

void EtcdServer::Defragment(const etcdserverpb::DefragmentRequest&,
                            Done<etcdserverpb::DefragmentResponse> done) {
  // etcd's authMaintenanceServer: the auth error as is.
  if (absl::Status s = CheckAdmin(); !s.ok()) return done(Untranslated(s));
  if (node_->failed()) return done(ErrStopped());
  // The persisted image: a fresh snapshot without the compacted history
  // replaces the older ones, and the WAL segments it covers go. It is
  // written in steps (a whole one stopped a 1M-key member for two
  // seconds, past an election timeout); the answer comes when it is done.
  node_->SnapshotInSteps(
      /*keep_snapshots=*/1, [this, done = std::move(done)](absl::Status s) {
        if (!s.ok()) return done(s);
        sm_.Defragment();  // the size in use is the size now
        etcdserverpb::DefragmentResponse resp;
        FillHeader(&resp);
        done(std::move(resp));
      });
}

void EtcdServer::MoveLeader(const etcdserverpb::MoveLeaderRequest& r,
                            Done<etcdserverpb::MoveLeaderResponse> done) {
  // etcd's authMaintenanceServer: the auth error as is.
  if (absl::Status s = CheckAdmin(); !s.ok()) return done(Untranslated(s));
  if (node_->failed()) return done(ErrStopped());
  if (!node_->is_leader()) return done(ErrNotLeader());
  const std::vector<uint64_t>& voters = node_->conf_state().voters;
  if (!std::binary_search(voters.begin(), voters.end(), r.targetid())) {
    return done(ErrBadLeaderTransferee());  // not a member, or a learner
  }
  leader_moves_.push_back(LeaderMove{
      r.targetid(), ticks_ + opts_.node.request_timeout_ticks,
      std::move(done)});
  node_->TransferLeadership(r.targetid());  // to itself: nothing to do
  AfterInput();
}

void EtcdServer::CheckLeaderMoves() {
  const uint64_t lead = node_->leader();
  std::vector<Done<etcdserverpb::MoveLeaderResponse>> moved;
  for (auto it = leader_moves_.begin(); it != leader_moves_.end();) {
    if (it->target == lead) {
      moved.push_back(std::move(it->done));
      it = leader_moves_.erase(it);
    } else {
      ++it;
    }
  }
  for (auto& d : moved) {
    etcdserverpb::MoveLeaderResponse resp;
    FillHeader(&resp);
    d(std::move(resp));
  }
}

absl::Status DecodeSnapshotImageView(std::string_view image,
                                     raft::SnapshotMetadata* meta,
                                     std::string_view* data) {
  if (image.substr(0, kSnapshotImageMagic.size()) != kSnapshotImageMagic) {
    return absl::InvalidArgumentError("not a detcd snapshot image");
  }
  coding::Reader r(image.substr(kSnapshotImageMagic.size()));
  if (!raft::DecodeSnapshotView(&r, meta, data) || !r.empty()) {
    return absl::DataLossError("detcd snapshot image: corrupt");
  }
  return absl::OkStatus();
}

absl::StatusOr<raft::Snapshot> DecodeSnapshotImage(std::string_view image) {
  raft::Snapshot snap;
  std::string_view data;
  if (absl::Status s = DecodeSnapshotImageView(image, &snap.metadata, &data);
      !s.ok()) {
    return s;
  }
  snap.data.assign(data);
  return snap;
}

void EtcdServer::SnapshotImage(Done<std::string> done) {
  // etcd's authMaintenanceServer: the auth error as is.
  if (absl::Status s = CheckAdmin(); !s.ok()) return done(Untranslated(s));
  if (node_->failed()) return done(ErrStopped());
  auto job = std::make_unique<ImageJob>();
  job->done = std::move(done);
  BeginImage(job.get());
  const ImageJob* mine = job.get();
  image_jobs_.push_back(std::move(job));
  if (image_jobs_.size() > 1) return;  // behind another: its turn comes
  // A small state is out within these steps.
  for (int i = 0; i < 4; ++i) {
    if (image_jobs_.empty() || image_jobs_.front().get() != mine) break;
    if (mine->data.size() >= kImageStepBytes) break;
    ContinueImages();
  }
}

void EtcdServer::BeginImage(ImageJob* job) {
  job->writer.reset();
  job->data.clear();
  if (node_->background_pending()) return;
  job->meta.index = node_->applied_index();
  job->meta.term = node_->raft().log().ZeroTermOnError(job->meta.index);
  job->meta.conf_state = node_->conf_state();
  // The third try (compactions came under two) is written whole.
  job->writer = job->tries >= 2
                    ? std::make_unique<StringImageWriter>(sm_.Snapshot())
                    : sm_.BeginSnapshot();
  ++job->tries;
}

void EtcdServer::ContinueImages() {
  if (image_jobs_.empty()) return;
  ImageJob& job = *image_jobs_.front();
  if (node_->failed()) {
    auto done = std::move(job.done);
    image_jobs_.erase(image_jobs_.begin());
    done(ErrStopped());
    return;
  }
  if (job.writer == nullptr) {
    if (node_->background_pending()) return;  // its steps go first
    BeginImage(&job);
  }
  if (job.data.empty()) {
    // The image's frame first (magic, metadata, the data's length), so its
    // bytes go straight after it and the result is never copied whole:
    // EncodeSnapshot of empty data, less the empty data's length (one 0).
    raft::Snapshot head;
    head.metadata = job.meta;
    job.data.assign(kSnapshotImageMagic);
    raft::EncodeSnapshot(&job.data, head);
    job.data.pop_back();
    coding::PutVarint64(&job.data, job.writer->size());
    job.data.reserve(job.data.size() + job.writer->size());
  }
  absl::StatusOr<bool> r = job.writer->Step(kImageStepBytes, &job.data);
  if (!r.ok()) {
    BeginImage(&job);  // compacted or restored under it: start over
    return;
  }
  if (!*r) return;
  auto done = std::move(job.done);
  std::string out = std::move(job.data);
  image_jobs_.erase(image_jobs_.begin());
  done(std::move(out));
}

absl::Status EtcdServer::AdoptData(std::string_view kv_image,
                                   std::string_view lessor_image,
                                   std::string_view auth_image) {
  // Only the state Start leaves on an empty data dir: the founding entries
  // applied, nothing else (no tick, so no election and no other entry).
  const bool just_founded =
      !opts_.node.initial_voters.empty() && ticks_ == 0 && !node_->failed() &&
      node_->leader() == raft::kNone &&
      node_->applied_index() == node_->conf_state().voters.size() &&
      node_->committed_index() == node_->applied_index();
  if (!just_founded) {
    return absl::FailedPreconditionError(
        "etcdserver: data can only be adopted right after founding a cluster");
  }
  if (absl::Status s = sm_.AdoptData(kv_image, lessor_image, auth_image);
      !s.ok()) {
    return s;
  }
  if (std::string bad = sm_.CheckLeaseInvariant(); !bad.empty()) {
    return absl::DataLossError(absl::StrCat("lease snapshot: ", bad));
  }
  return node_->TakeSnapshot();
}

// The Auth service (etcd_server_auth.cc) proposes and answers with these.
#define DETCD_AUTH_RESPONSE(T)                                          \
  template void EtcdServer::ProposeRequest<etcdserverpb::T>(            \
      etcdserverpb::InternalRaftRequest, Done<etcdserverpb::T>);        \
  template void EtcdServer::FillHeader<etcdserverpb::T>(etcdserverpb::T*) \
      const;
DETCD_AUTH_RESPONSE(AuthEnableResponse)
DETCD_AUTH_RESPONSE(AuthDisableResponse)
DETCD_AUTH_RESPONSE(AuthStatusResponse)
DETCD_AUTH_RESPONSE(AuthenticateResponse)
DETCD_AUTH_RESPONSE(AuthUserAddResponse)
DETCD_AUTH_RESPONSE(AuthUserGetResponse)
DETCD_AUTH_RESPONSE(AuthUserListResponse)
DETCD_AUTH_RESPONSE(AuthUserDeleteResponse)
DETCD_AUTH_RESPONSE(AuthUserChangePasswordResponse)
DETCD_AUTH_RESPONSE(AuthUserGrantRoleResponse)
DETCD_AUTH_RESPONSE(AuthUserRevokeRoleResponse)
DETCD_AUTH_RESPONSE(AuthRoleAddResponse)
DETCD_AUTH_RESPONSE(AuthRoleGetResponse)
DETCD_AUTH_RESPONSE(AuthRoleListResponse)
DETCD_AUTH_RESPONSE(AuthRoleDeleteResponse)
DETCD_AUTH_RESPONSE(AuthRoleGrantPermissionResponse)
DETCD_AUTH_RESPONSE(AuthRoleRevokePermissionResponse)
#undef DETCD_AUTH_RESPONSE

}  // namespace detcd::server
