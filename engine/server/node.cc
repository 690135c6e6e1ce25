#include "engine/server/node.h"

#include <algorithm>
#include <cstdint>
#include <limits>
#include <map>
#include <memory>
#include <utility>

#include "absl/container/btree_set.h"
#include "absl/strings/str_cat.h"
#include "engine/raft/codec.h"
#include "engine/util/check.h"
#include "engine/util/coding.h"
#include "engine/util/deadlines.h"
#include "engine/util/probes.h"
#include "engine/wal/file_names.h"

namespace detcd::server {
namespace {

wal::WalOptions WalOptionsOf(const NodeOptions& o) {
  wal::WalOptions w;
  w.bugs = o.bugs;
  return w;
}

std::string ReadContext(uint64_t request_id) {
  std::string out;
  coding::PutVarint64(&out, request_id);
  return out;
}

}  // namespace

namespace {
// The envelope's two varints, appended to *out.
void PutEnvelopeHead(uint64_t proposer, uint64_t request_id, std::string* out) {
  coding::PutVarint64(out, proposer);
  coding::PutVarint64(out, request_id);
}
}  // namespace

std::string Envelope(uint64_t proposer, uint64_t request_id,
                     std::string_view payload) {
  std::string out;
  out.reserve(payload.size() + kEnvelopeMaxBytes);
  PutEnvelopeHead(proposer, request_id, &out);
  out.append(payload.data(), payload.size());
  return out;
}

void PrependEnvelope(uint64_t proposer, uint64_t request_id,
                     std::string* payload) {
  std::string head;
  PutEnvelopeHead(proposer, request_id, &head);
  payload->insert(0, head);
}

bool OpenEnvelope(std::string_view data, uint64_t* proposer,
                  uint64_t* request_id, std::string_view* payload) {
  coding::Reader r(data);
  if (!r.GetVarint64(proposer) || !r.GetVarint64(request_id)) return false;
  *payload = data.substr(data.size() - r.remaining());
  return true;
}

absl::Status ErrNoLeader() {
  return absl::UnavailableError("etcdserver: no leader");
}
absl::Status ErrTimeout() {
  return absl::UnavailableError("etcdserver: request timed out");
}
absl::Status ErrStopped() {
  return absl::UnavailableError("etcdserver: server stopped");
}
absl::Status ErrTooManyRequests() {
  return absl::ResourceExhaustedError("etcdserver: too many requests");
}

absl::Status NodeOptions::Validate() const {
  if (id == 0) return absl::InvalidArgumentError("node id must not be 0");
  if (data_dir.empty()) return absl::InvalidArgumentError("data dir is empty");
  if (snapshot_step_bytes == 0) {
    return absl::InvalidArgumentError("snapshot step bytes must be > 0");
  }
  if (snapshot_count == 0) {
    return absl::InvalidArgumentError("snapshot count must be > 0");
  }
  if (request_timeout_ticks <= 0) {
    return absl::InvalidArgumentError("request timeout must be > 0 ticks");
  }
  if (max_request_bytes == 0 || max_request_bytes > (64u << 20)) {
    return absl::InvalidArgumentError(
        "max request bytes must be in (0, 64 MiB]");
  }
  if (max_pending_requests <= 0) {
    return absl::InvalidArgumentError("max pending requests must be > 0");
  }
  for (uint64_t v : initial_voters) {
    if (v == 0) return absl::InvalidArgumentError("voter id must not be 0");
  }
  for (const auto& [id, ctx] : founding_contexts) {
    // Only founders use them (a joiner's are ignored, like its voters).
    if (!initial_voters.empty() &&
        std::find(initial_voters.begin(), initial_voters.end(), id) ==
            initial_voters.end()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "founding context for ", id, ", which is not an initial voter"));
    }
  }
  raft::Config rc = raft;
  rc.id = id;
  rc.election_tick = election_ticks;
  rc.heartbeat_tick = heartbeat_ticks;
  // Storage and rng are the Node's own, filled in when it builds raft.
  return rc.ValidateLimits();
}

absl::StatusOr<raft::Snapshot> NodeStorage::GetSnapshot() const {
  if (busy_) {
    return absl::UnavailableError("snapshot: a conf change is being applied");
  }
  if (fresh_) {
    auto s = fresh_();
    if (!s.ok()) return s.status();
    if (s->has_value()) return **std::move(s);
  }
  return MemoryStorage::GetSnapshot();
}

// The image for a follower is the state machine's at the applied index
// when raft first asks for one, built a step at a time as an automatic
// snapshot's is (into memory, to its exact size), between the Node's
// other work: raft's requests meanwhile are answered Unavailable and it
// asks again (on the follower's next heartbeat answer). The finished image
// goes to the next request if it still serves: the membership is the same
// (a follower ignores an image that leaves it out) and raft's log holds
// the entries after it (the log is not compacted past the index of an
// image being built or waiting, so it does unless the member restored).
// Otherwise, or when a step fails (a compaction or restore under it), the
// image is dropped and another begins; after two such in a row one is
// built at once. A finished image raft does not take within an election
// timeout, and any image once this member is no longer leader, is dropped
// too: an image is most of a store's size in memory. Nor is the log
// compacted past an image sent, until its follower has acknowledged it
// or kImageCatchUpElections election timeouts passed: the follower
// restores it (seconds for a large store) and then needs the entries
// written since, or it would need another image.
struct Node::ImageJob {
  raft::SnapshotMetadata meta;
  std::unique_ptr<ImageWriter> writer;  // null once the image is whole
  std::string data;
  bool at_once = false;
  int steps = 0;
  int done_tick = 0;
};

Node::Node(const env::Env& env, NodeOptions opts, StateMachine* sm)
    : env_(env), opts_(std::move(opts)), sm_(sm) {
  DETCD_CHECK(env_.disk != nullptr && env_.transport != nullptr &&
              env_.rng != nullptr && sm_ != nullptr);
  // A follower that needs a snapshot gets a fresh image (set_fresh), so
  // the storage keeps none: a restored member would otherwise hold the
  // image it restored from (hundreds of MiB at 1M keys) next to the store.
  storage_.set_keep_snapshot_data(false);
  storage_.set_fresh([this] { return FreshImage(); });
}

Node::~Node() {
  // The disk worker may be writing the WAL for us, the file worker our
  // snapshot file: let them finish first.
  if (log_busy()) env_.disk->worker()->Drain();
  if (committing_ != nullptr) env_.disk->file_worker()->Drain();
}

raft::ConfState Node::RaftConfState() const {
  return raft_->tracker().GetConfState();
}

absl::Status Node::Start() {
  DETCD_CHECK_MSG(!started_, "Start called twice");
  if (auto s = opts_.Validate(); !s.ok()) return s;
  started_ = true;
  // Request ids start at a random point so that ids from before a restart
  // (still in the log) cannot complete new requests.
  next_request_id_ = (env_.rng->Next() >> 16) << 16;
  raft_rng_ = std::make_unique<env::SeededRng>(env_.rng->Next());
  snapshotter_ =
      std::make_unique<wal::Snapshotter>(env_.disk, opts_.data_dir + "/snap");
  absl::Status s = HasBootstrapped() ? Recover() : Bootstrap();
  if (!s.ok()) {
    Fail(s);
    return s;
  }
  // Recovery's Ready is drained now even inside a hold: Start reports a
  // failure to persist or apply it.
  const int holds = std::exchange(ready_holds_, 0);
  ProcessReady();
  ready_holds_ = holds;
  return failure_;
}

bool Node::HasBootstrapped() {
  const std::string dir = opts_.data_dir + "/wal";
  if (!wal::Wal::Exists(env_.disk, dir)) return false;
  // A crash between creating the WAL and writing its bootstrap marker
  // leaves a WAL without any marker: nothing was promised to anyone yet,
  // so the half-made WAL is removed and the bootstrap starts over.
  auto markers = wal::Wal::ReadMarkers(env_.disk, dir);
  if (!markers.ok() || !markers->empty()) return true;  // Recover reports
  auto names = env_.disk->List(dir);
  if (!names.ok()) return true;
  for (const std::string& name : *names) {
    if (!env_.disk->Remove(dir + "/" + name).ok()) return true;
  }
  return !env_.disk->SyncDir(dir).ok();
}

std::unique_ptr<raft::Raft> Node::MakeRaft(uint64_t applied) {
  raft::Config c = opts_.raft;
  c.id = opts_.id;
  c.election_tick = opts_.election_ticks;
  c.heartbeat_tick = opts_.heartbeat_ticks;
  c.storage = &storage_;
  c.rng = raft_rng_.get();
  c.applied = applied;
  c.buggify = opts_.buggify;
  if (buggify::Fires(opts_.buggify, buggify::Point::kTinyInflightWindow, 1)) {
    // BUGGIFY: flow control at its smallest (one to three appends in flight,
    // a few entries each): probing, pausing and resuming happen all the
    // time instead of only after a partition.
    c.max_inflight_msgs = static_cast<int>(opts_.buggify->Range(1, 3));
    c.max_size_per_msg = static_cast<uint64_t>(opts_.buggify->Range(64, 1024));
  }
  return std::make_unique<raft::Raft>(c);
}

absl::Status Node::Bootstrap() {
  if (auto s = env_.disk->CreateDir(opts_.data_dir); !s.ok()) return s;
  // A directory's own entry lives in its parent (env.h): the member dir,
  // the data dir holding it and the directory holding that (either may
  // have just been created, as by mkdir -p) are synced before anything in
  // them is promised to anyone.
  std::string dir = opts_.data_dir;
  for (int level = 0; level < 3; ++level) {
    if (auto s = env_.disk->SyncDir(dir); !s.ok()) return s;
    std::string up = wal::Parent(dir);
    if (up == dir) break;
    dir = std::move(up);
  }
  raft::ConfState cs;
  cs.voters = opts_.initial_voters;
  std::sort(cs.voters.begin(), cs.voters.end());
  cs.voters.erase(std::unique(cs.voters.begin(), cs.voters.end()),
                  cs.voters.end());
  auto w = wal::Wal::Create(env_.disk, opts_.data_dir + "/wal",
                            WalOptionsOf(opts_));
  if (!w.ok()) return w.status();
  wal_ = *std::move(w);
  // The founding membership is the conf state of the empty snapshot at
  // index 0; record it so a restart sees the same membership.
  raft::SnapshotMetadata meta;
  meta.conf_state = cs;
  if (auto s = wal_->SaveSnapshotMarker(meta); !s.ok()) return s;
  // The founding membership is also written into the log, as committed
  // AddNode entries at indexes 1..n in term 1 (every founder writes the
  // same ones). A member that joins later and is caught up from index 1,
  // not from a snapshot, learns the founders from these entries; without
  // them it would see only its own AddNode and think it was alone.
  std::vector<raft::Entry> founding;
  for (uint64_t voter : cs.voters) {
    auto ctx = opts_.founding_contexts.find(voter);
    raft::ConfChange cc{raft::ConfChangeType::kAddNode, voter,
                        ctx == opts_.founding_contexts.end()
                            ? std::string()
                            : Envelope(0, 0, ctx->second)};
    founding.push_back(raft::Entry{1, founding.size() + 1,
                                   raft::EntryType::kConfChange,
                                   raft::EncodeConfChange(cc)});
  }
  raft::HardState hs{founding.empty() ? 0u : 1u, raft::kNone,
                     founding.size()};
  if (!founding.empty()) {
    if (auto s = wal_->Save(&hs, founding, /*sync=*/true); !s.ok()) return s;
    if (auto s = storage_.Append(founding); !s.ok()) return s;
    storage_.SetHardState(hs);
  }
  storage_.SetInitialConfState(cs);
  conf_state_ = cs;
  raft_ = MakeRaft(0);
  return absl::OkStatus();
}

absl::StatusOr<raft::SnapshotMetadata> Node::RestoreNewestChain() {
  // The newest snapshot file the WAL has a marker for: a crash between
  // writing a snapshot file and its marker leaves a file the log cannot
  // continue from. Its chain: the whole image, then the deltas on it.
  auto markers = wal::Wal::ReadMarkers(env_.disk, opts_.data_dir + "/wal");
  if (!markers.ok()) return markers.status();
  auto chains = snapshotter_->Chains(*markers);
  if (!chains.ok()) return chains.status();
  absl::Status first_error;
  for (const std::vector<wal::SnapFileRef>& chain : *chains) {
    raft::SnapshotMetadata head;
    bool corrupt = false;
    for (size_t i = 0; i < chain.size(); ++i) {
      auto snap = snapshotter_->Load(chain[i]);
      if (!snap.ok()) {
        if (!absl::IsDataLoss(snap.status())) return snap.status();
        // A corrupt file: an older chain may still serve (its first image
        // replaces the state whole).
        if (first_error.ok()) first_error = snap.status();
        corrupt = true;
        break;
      }
      if (i == 0) {
        // The image's memory goes back as the restore reads through it,
        // so the image and the store built from it are not both held
        // whole.
        if (auto s = sm_->RestoreReading(
                snap->data, env::ReleaseBehind(env_.memory, snap->data.data()));
            !s.ok()) {
          return s;
        }
        snap_image_bytes_ = snap->data.size();
      } else {
        if (sm_->DeltaBase(snap->data) != chain[i - 1].index) {
          return absl::DataLossError(
              absl::StrCat("snap: delta snapshot ", chain[i].name,
                           " does not continue ", chain[i - 1].name));
        }
        if (auto s = sm_->ApplyDelta(
                snap->data,
                env::ReleaseBehind(env_.memory, snap->data.data()));
            !s.ok()) {
          return s;
        }
      }
      head = snap->metadata;
    }
    if (corrupt) continue;
    if (chain.size() > 1) DETCD_PROBE(kNodeRestartThroughDeltas);
    chain_.clear();
    for (const wal::SnapFileRef& f : chain) chain_.push_back(f.index);
    chain_point_ = sm_->image_point();
    if (chain_point_) chain_point_->index = head.index;
    // Files above it have no marker (a crash came before it was written):
    // a later chain must not take them for its own.
    if (auto s = snapshotter_->RemoveAbove(head.index); !s.ok()) return s;
    return head;
  }
  if (!first_error.ok()) return first_error;
  // None: every file here lacks a marker (the log holds every entry), and
  // a chain begun later must not take one for its own.
  if (auto s = snapshotter_->RemoveAbove(0); !s.ok()) return s;
  return absl::NotFoundError("snap: no snapshot file");
}

absl::Status Node::Recover() {
  auto snap = RestoreNewestChain();
  if (!snap.ok() && !absl::IsNotFound(snap.status())) return snap.status();
  auto rec = wal::Wal::Open(env_.disk, opts_.data_dir + "/wal",
                            snap.ok() ? snap->index : 0, WalOptionsOf(opts_));
  if (!rec.ok()) return rec.status();
  wal_ = std::move(rec->wal);
  raft::ConfState cs = rec->snapshot.conf_state;
  if (snap.ok() && snap->index > 0) {
    raft::Snapshot meta_only;
    meta_only.metadata = *snap;
    if (auto s = storage_.ApplySnapshot(meta_only); !s.ok()) return s;
    applied_ = snapshot_index_ = snap->index;
    cs = snap->conf_state;
    if (observer_) observer_->OnRestore(opts_.id, *snap);
  } else {
    storage_.SetInitialConfState(cs);
  }
  conf_state_ = cs;
  raft::HardState hs = rec->hard_state;
  if (opts_.force_new_cluster) {
    if (auto s = ForceNewCluster(cs, applied_, &rec->entries, &hs); !s.ok()) {
      return s;
    }
  }
  if (auto s = storage_.Append(rec->entries); !s.ok()) return s;
  if (opts_.bugs.on(planted::Bug::kForgetVote)) hs.vote = raft::kNone;  // PLANTED
  // A commit index beyond the recovered log can only come from a WAL that
  // lost synced entries: refuse rather than run on without them.
  if (hs.commit > storage_.LastIndex()) {
    return absl::DataLossError(absl::StrCat(
        "wal: hard state commit ", hs.commit, " beyond last entry ",
        storage_.LastIndex()));
  }
  if (hs.commit < applied_) hs.commit = applied_;
  storage_.SetHardState(hs);
  raft_ = MakeRaft(applied_);
  return absl::OkStatus();
}

absl::Status Node::ForceNewCluster(const raft::ConfState& snap_cs,
                                   uint64_t snap_index,
                                   std::vector<raft::Entry>* entries,
                                   raft::HardState* hs) {
  forced_ = ForcedRestart{};
  forced_.done = true;
  forced_.wal_commit = hs->commit;
  hs->commit = std::max(hs->commit, snap_index);
  hs->term = std::max<uint64_t>(hs->term, 1);  // a member that never voted
  // The uncommitted tail: nobody may have it, and the new entries take its
  // indexes (the WAL's later records replace it on every later recovery).
  auto tail = std::find_if(entries->begin(), entries->end(),
                           [&](const raft::Entry& e) {
                             return e.index > hs->commit;
                           });
  if (tail != entries->end()) {
    forced_.first_discarded = tail->index;
    forced_.discarded = static_cast<uint64_t>(entries->end() - tail);
    entries->erase(tail, entries->end());
  }
  // Every member the snapshot and the log know of (etcd's getIDs).
  absl::btree_set<uint64_t> ids(snap_cs.voters.begin(), snap_cs.voters.end());
  ids.insert(snap_cs.learners.begin(), snap_cs.learners.end());
  for (const raft::Entry& e : *entries) {
    raft::ConfChange cc;
    if (e.type != raft::EntryType::kConfChange ||
        !raft::DecodeConfChange(e.data, &cc) || cc.node_id == raft::kNone) {
      continue;
    }
    if (cc.type == raft::ConfChangeType::kAddNode ||
        cc.type == raft::ConfChangeType::kAddLearnerNode) {
      ids.insert(cc.node_id);
    } else if (cc.type == raft::ConfChangeType::kRemoveNode) {
      ids.erase(cc.node_id);
    }
  }
  // This member first (raft must never be left without a voter), then the
  // removals; raw changes (empty contexts): the state machine applies them
  // without checks, as etcd's have no member context.
  std::vector<raft::ConfChange> changes;
  if (!ids.contains(opts_.id)) {
    changes.push_back({raft::ConfChangeType::kAddNode, opts_.id, ""});
  }
  for (uint64_t id : ids) {
    if (id == opts_.id) continue;
    changes.push_back({raft::ConfChangeType::kRemoveNode, id, ""});
    forced_.removed.push_back(id);
  }
  uint64_t next =
      (entries->empty() ? snap_index : entries->back().index) + 1;
  std::vector<raft::Entry> added;
  for (const raft::ConfChange& cc : changes) {
    added.push_back(raft::Entry{hs->term, next++,
                                raft::EntryType::kConfChange,
                                raft::EncodeConfChange(cc)});
  }
  if (!added.empty()) hs->commit = added.back().index;
  forced_.commit = hs->commit;
  if (added.empty()) return absl::OkStatus();
  // Committed by fiat: the hard state that says so goes with them.
  if (auto s = wal_->Save(hs, added, /*sync=*/true); !s.ok()) return s;
  entries->insert(entries->end(), added.begin(), added.end());
  return absl::OkStatus();
}

void Node::Fail(absl::Status s) {
  if (!failure_.ok()) return;
  failure_ = std::move(s);
  FailAllRequests(ErrStopped());
  AnswerSnapshotWaiters(ErrStopped());
}

void Node::FailAllRequests(const absl::Status& s) {
  auto waiting = std::move(awaiting_leader_);
  awaiting_leader_.clear();
  for (auto& w : waiting) w.done(s);
  auto proposals = std::move(proposals_);
  auto reads = std::move(reads_);
  auto ready = std::move(ready_reads_);
  auto held = std::move(held_reads_);
  proposals_.clear();
  reads_.clear();
  ready_reads_.clear();
  held_reads_.clear();
  read_round_ctx_.clear();
  for (auto& [id, w] : proposals) w.done(s);
  for (auto& [ctx, w] : reads) w.done(s);
  for (auto& [idx, w] : ready) w.done(s);
  for (auto& w : held) w.done(s);
}

// ---- inputs ----

void Node::Tick() {
  if (failed()) return;
  ++ticks_;
  raft_->Tick();
  ExpireRequests();
  // A round past its patience no longer holds the waiting reads back.
  if (ready_holds_ == 0) IssueHeldReads();
  ProcessReady();
  ProposeAwaitingLeader();
  if (image_job_ != nullptr &&
      (raft_->state() != raft::StateType::kLeader ||
       (image_job_->writer == nullptr &&
        ticks_ - image_job_->done_tick > opts_.election_ticks))) {
    DropImage();
  }
  std::erase_if(images_sent_, [this](const auto& kv) {
    return !ImageSentHolds(kv.first, kv.second);
  });
  ContinueSnapshot();  // an idle member's snapshot moves on too
}

void Node::AdvanceTicks(int n) {
  if (failed()) return;
  for (int i = 0; i < n; ++i) raft_->Tick();
  ProcessReady();
  ProposeAwaitingLeader();
}

void Node::CampaignIfOnlyVoter() {
  if (failed() || is_leader()) return;
  const raft::ConfState cs = RaftConfState();
  if (cs.voters.size() != 1 || cs.voters[0] != opts_.id) return;
  (void)raft_->Campaign();
  ProcessReady();
  ProposeAwaitingLeader();
}

void Node::OnMessage(std::string_view payload, std::string* own) {
  if (failed()) return;
  auto m = raft::DecodeMessage(payload, own);
  if (!m.ok() || m->to != opts_.id) return;  // garbage or misdirected: drop
  if (snapshot_being_written()) DETCD_PROBE(kNodeInstallUnderInput);
  (void)raft_->Step(*std::move(m));
  ProcessReady();
  ProposeAwaitingLeader();
}

// As etcd's raft node, a proposal made while there is no leader waits for
// one (up to the request timeout) instead of failing at once: an election
// then costs clients latency, not errors.
void Node::ProposeAwaitingLeader() {
  if (awaiting_leader_.empty() || failed() || raft_->lead() == raft::kNone) {
    return;
  }
  std::deque<AwaitingLeader> waiting = std::move(awaiting_leader_);
  awaiting_leader_.clear();
  for (AwaitingLeader& w : waiting) {
    if (w.conf_change) {
      ProposeConfChangeNow(*w.conf_change, std::move(w.done), w.deadline_tick);
      continue;
    }
    ProposeNow(std::move(w.command), std::move(w.done), w.deadline_tick);
  }
}

void Node::Propose(std::string command, ProposeDone done) {
  if (failed()) return done(ErrStopped());
  if (command.size() > opts_.max_request_bytes) {
    return done(ErrRequestTooLarge());
  }
  if (pending_requests() >= static_cast<size_t>(opts_.max_pending_requests)) {
    return done(ErrTooManyRequests());
  }
  const int deadline = ticks_ + opts_.request_timeout_ticks;
  if (raft_->lead() == raft::kNone) {
    DETCD_PROBE(kNodeAwaitingLeader);
    awaiting_leader_.push_back(
        AwaitingLeader{std::move(command), std::move(done), deadline,
                       std::nullopt});
    return;
  }
  ProposeNow(std::move(command), std::move(done), deadline);
}

void Node::ProposeNow(std::string command, ProposeDone done,
                      int deadline_tick) {
  uint64_t rid = next_request_id_++;
  PrependEnvelope(opts_.id, rid, &command);
  absl::Status s = raft_->Propose(std::move(command));
  if (!s.ok()) {
    return done(raft_->lead() == raft::kNone ? ErrNoLeader() : s);
  }
  proposals_.emplace(rid, Waiter{std::move(done), deadline_tick});
  ProcessReady();
}

void Node::ProposeConfChange(const raft::ConfChange& cc, ProposeDone done) {
  if (failed()) return done(ErrStopped());
  if (pending_requests() >= static_cast<size_t>(opts_.max_pending_requests)) {
    return done(ErrTooManyRequests());
  }
  const int deadline = ticks_ + opts_.request_timeout_ticks;
  if (raft_->lead() == raft::kNone) {
    awaiting_leader_.push_back(AwaitingLeader{"", std::move(done), deadline, cc});
    return;
  }
  ProposeConfChangeNow(cc, std::move(done), deadline);
}

void Node::ProposeConfChangeNow(const raft::ConfChange& cc, ProposeDone done,
                                int deadline_tick) {
  uint64_t rid = next_request_id_++;
  raft::ConfChange wrapped = cc;
  wrapped.context = Envelope(opts_.id, rid, cc.context);
  absl::Status s = raft_->ProposeConfChange(wrapped);
  if (!s.ok()) {
    return done(raft_->lead() == raft::kNone ? ErrNoLeader() : s);
  }
  proposals_.emplace(rid, Waiter{std::move(done), deadline_tick});
  ProcessReady();
}

void Node::ReadIndex(ReadDone done) {
  if (failed()) return done(ErrStopped());
  if (pending_requests() >= static_cast<size_t>(opts_.max_pending_requests)) {
    return done(ErrTooManyRequests());
  }
  held_reads_.push_back(
      ReadWaiter{std::move(done), ticks_ + opts_.request_timeout_ticks, 0});
  // ReleaseReady sends held reads; the round's answer (or the tick after
  // its patience) sends those that wait for a round out.
  if (ready_holds_ > 0 && started_ && raft_ != nullptr) return;
  if (ReadRoundOut()) return;
  IssueHeldReads();
  ProcessReady();
}

void Node::IssueHeldReads() {
  if (held_reads_.empty() || ReadRoundOut()) return;
  std::vector<ReadWaiter> held = std::move(held_reads_);
  held_reads_.clear();
  std::string ctx = ReadContext(next_request_id_++);
  absl::Status s = raft_->ReadIndex(ctx);
  if (!s.ok()) {
    read_index_counters_.failed += held.size();
    const absl::Status err = raft_->lead() == raft::kNone ? ErrNoLeader() : s;
    for (ReadWaiter& w : held) w.done(err);
    return;
  }
  read_round_ctx_ = ctx;
  read_round_tick_ = ticks_;
  ++read_index_counters_.rounds;
  for (ReadWaiter& w : held) reads_.emplace(ctx, std::move(w));
}

void Node::TransferLeadership(uint64_t transferee) {
  if (failed()) return;
  raft_->TransferLeader(transferee);
  ProcessReady();
}

void Node::OnSnapshotSent(uint64_t to, bool delivered) {
  if (failed() || raft_ == nullptr) return;
  raft_->ReportSnapshot(to, /*failed=*/!delivered);
  ProcessReady();
}

void Node::ReportUnreachable(uint64_t to) {
  if (failed() || raft_ == nullptr) return;
  raft_->ReportUnreachable(to);
  ProcessReady();
}

void Node::ExpireRequests() {
  // Deadlines are in ticks, so expiry is deterministic and cheap; the maps
  // are small and bounded by max_pending_requests.
  std::vector<ProposeDone> expired;
  util::TakeExpired(awaiting_leader_, ticks_, &expired);
  util::TakeExpired(proposals_, ticks_, &expired);
  std::vector<ReadDone> expired_reads;
  util::TakeExpired(reads_, ticks_, &expired_reads);
  read_index_counters_.slow += expired_reads.size();  // no read index came
  util::TakeExpired(ready_reads_, ticks_, &expired_reads);
  if (!expired.empty() || !expired_reads.empty()) {
    DETCD_PROBE(kNodeRequestTimeout);
  }
  for (auto& d : expired) d(ErrTimeout());
  for (auto& d : expired_reads) d(ErrTimeout());
}

// ---- the Ready loop ----

void Node::ReleaseReady() {
  DETCD_CHECK_MSG(ready_holds_ > 0, "ReleaseReady without HoldReady");
  if (--ready_holds_ > 0 || !started_ || raft_ == nullptr || failed()) return;
  IssueHeldReads();
  ProcessReady();
  ProposeAwaitingLeader();
}

void Node::ProcessReady() {
  if (ready_holds_ > 0) return;  // the last ReleaseReady drains it
  // A completion callback that calls back into the Node (e.g. proposes the
  // next request) must not start a nested Ready: the outer loop below picks
  // up whatever it produced.
  if (in_ready_) return;
  // A snapshot's marker goes before the next Ready's write: under load the
  // worker is seldom free at any other time.
  if (marker_due_ && !log_busy()) SubmitMarker();
  if (log_busy()) {
    // A write is in flight; its completion takes the next Ready. Only what
    // may leave before a write goes now (a leader's appends, heartbeats).
    SendEarlyMessages();
    return;
  }
  // (The null test first: HasReady is not free, and this is a hot path.)
  if (opts_.buggify != nullptr && raft_->HasReady() &&
      buggify::Fires(opts_.buggify, buggify::Point::kDeferReady, 0.1)) {
    // BUGGIFY: leave the Ready for the next input (a tick at the latest), as
    // a slow fsync would: raft goes on stepping messages meanwhile and the
    // next Ready carries both.
    return;
  }
  in_ready_ = true;
  env::DiskWorker* worker = env_.disk->worker();
  // Bounded: each round consumes Raft's output; a Ready that produces
  // another Ready (e.g. apply of a conf change) is handled in the next
  // round, and anything left is picked up by the next event.
  for (int round = 0;
       round < 64 && !failed() && !log_busy() && raft_->HasReady(); ++round) {
    raft::Ready rd = raft_->GetReady();
    // A leader's appends and heartbeats leave before its own write, so its
    // fsync runs in parallel with its followers' (raft.h).
    SendMessages(rd.early_messages);
    if (opts_.bugs.on(planted::Bug::kAckBeforeSync)) SendMessages(rd.messages);  // PLANTED
    // The leader's snapshot replaces the state ours would have captured.
    if (rd.snapshot && snap_job_ != nullptr) AbandonSnapshot();
    if (rd.snapshot) {
      DropCommitting();
      chain_.clear();  // ApplySnapshot starts the received one's
    }
    const bool write = rd.snapshot != nullptr || rd.hard_state.has_value() ||
                       !rd.entries.empty();
    // (No write is in flight here: the loop stops at a submitted one.)
    const bool inline_write = opts_.inline_unsynced_writes && !rd.must_sync &&
                              rd.entries.empty() && !rd.snapshot;
    if (write && worker != nullptr && !inline_write) {
      SubmitWrite(std::move(rd));  // the completion goes on from here
      ApplyDurable(*persisting_);
      break;
    }
    if (write) {
      if (absl::Status s = Persist(rd); !s.ok()) {
        Fail(s);
        break;
      }
    }
    FinishReady(rd);
  }
  in_ready_ = false;
}

void Node::SendEarlyMessages() {
  std::vector<raft::Message> early = raft_->TakeEarlyMessages();
  if (!early.empty()) SendMessages(early);
}

void Node::SubmitWrite(raft::Ready rd) {
  persisting_ = std::make_unique<raft::Ready>(std::move(rd));
  const raft::Ready* r = persisting_.get();
  std::weak_ptr<bool> alive = alive_;
  // The work runs on the disk worker: it touches only the WAL, the
  // snapshot files, the Ready and prepared_ (a received snapshot's
  // PrepareRestore reads nothing but the image), which the engine leaves
  // alone until the completion (TakeSnapshot and the destructor drain the
  // worker first; no snapshot of ours starts during an install).
  env_.disk->worker()->Submit([this, r] { return Persist(*r); },
                              [this, alive](absl::Status s) {
                                if (alive.expired()) return;
                                OnWriteDone(std::move(s));
                              });
}

void Node::OnWriteDone(absl::Status s) {
  if (persisting_ == nullptr) return;
  std::unique_ptr<raft::Ready> rd = std::move(persisting_);
  if (failed()) return;
  if (!s.ok()) return Fail(s);
  in_ready_ = true;
  FinishReady(*rd);
  in_ready_ = false;
  ProcessReady();
  ProposeAwaitingLeader();
}

// Under load each Ready carries both the entries committed since the last
// one and new entries to write. The committed ones that were already in
// stable storage before this Ready (all of them, on a leader: it counts
// only its durable entries toward a quorum) need nothing from its write,
// so they are applied and answered while the disk syncs instead of after:
// a proposal then waits for one fsync, not two in series. What stops
// short: a snapshot in the Ready (it is installed first), an entry that
// is only in this Ready (a follower's), and a conf change (raft's
// configuration moves only in FinishReady). FinishReady applies the rest
// and skips what is applied; Advance is unchanged.
void Node::ApplyDurable(const raft::Ready& rd) {
  if (rd.snapshot || failed()) return;
  const uint64_t stable = storage_.LastIndex();
  size_t n = 0;
  for (const raft::Entry& e : rd.committed_entries) {
    if (e.index > stable || e.type == raft::EntryType::kConfChange) break;
    // The storage may still hold an older entry of another term there,
    // which this Ready's write replaces (a follower's log repaired by a
    // new leader): that one waits for the write, or the applied index
    // would run ahead of what is durable (a snapshot taken meanwhile
    // would name the old entry's term).
    absl::StatusOr<uint64_t> t = storage_.Term(e.index);
    if (!t.ok() || *t != e.term) break;
    ++n;
  }
  if (n == 0) return;
  ApplyEntries(absl::MakeConstSpan(rd.committed_entries.data(), n));
  ServeReads();
}

void Node::FinishReady(raft::Ready& rd) {
  // Persisted: the snapshot's metadata (the image is in its file and, once
  // ApplySnapshot below ran, in the state machine) and the entries' data
  // move into the storage (Advance needs only their indexes and terms).
  if (rd.snapshot) {
    if (absl::Status s = storage_.ApplySnapshot(*rd.snapshot); !s.ok()) {
      return Fail(s);
    }
  }
  if (absl::Status s = storage_.AppendMoving(&rd.entries); !s.ok()) {
    return Fail(s);
  }
  if (rd.hard_state) storage_.SetHardState(*rd.hard_state);
  SendMessages(rd.messages);
  if (rd.snapshot) ApplySnapshot(*rd.snapshot);
  ApplyEntries(rd.committed_entries);
  for (raft::ReadState& rs : rd.read_states) {
    if (rs.context == read_round_ctx_) read_round_ctx_.clear();
    // Those that timed out already are gone.
    auto [first, last] = reads_.equal_range(rs.context);
    for (auto it = first; it != last; ++it) {
      ReadWaiter w = std::move(it->second);
      w.index = rs.index;
      ready_reads_.emplace(rs.index, std::move(w));
    }
    reads_.erase(first, last);
  }
  raft_->Advance(rd);
  const bool alone = conf_state_.learners.empty() &&
                     conf_state_.voters.size() == 1 &&
                     conf_state_.voters[0] == opts_.id;
  storage_.ReleaseApplied(
      std::min(applied_, LogKeptFrom()),
      alone ? opts_.log_cache_bytes_alone : opts_.log_cache_bytes);
  ServeReads();
  // The reads that waited for the round just answered go out together
  // (during HoldReady, ReleaseReady sends them).
  if (ready_holds_ == 0) IssueHeldReads();
  MaybeSnapshot();
}

absl::Status Node::Persist(const raft::Ready& rd) {
  if (rd.snapshot) {
    // The snapshot file first, then the WAL marker that points at it: a
    // crash in between leaves an unreferenced file, never a dangling marker.
    if (auto s = snapshotter_->Save(*rd.snapshot); !s.ok()) return s;
    if (auto s = wal_->SaveSnapshotMarker(rd.snapshot->metadata); !s.ok()) {
      return s;
    }
    // The costly part of the restore (a 1M-key image: about half a
    // second) is done here too, on the worker when there is one, into
    // state of its own; ApplySnapshot swaps it in. Nothing reads the
    // image after it (the file is written, raft and the storage keep only
    // its metadata), so its memory goes back as the restore reads it.
    auto p = sm_->PrepareRestore(
        rd.snapshot->data,
        env::ReleaseBehind(env_.memory, rd.snapshot->data.data()));
    if (!p.ok()) return RestoreFailed(rd.snapshot->metadata, p.status());
    prepared_ = std::move(*p);
  }
  if (!rd.hard_state && rd.entries.empty()) return absl::OkStatus();
  return WriteLog(rd);
}

absl::Status Node::RestoreFailed(const raft::SnapshotMetadata& m,
                                 const absl::Status& s) {
  // A snapshot we persisted but cannot load: stop rather than diverge.
  return absl::DataLossError(
      absl::StrCat("restoring snapshot ", m.index, ": ", s.message()));
}

absl::Status Node::WriteLog(const raft::Ready& rd) {
  const raft::HardState* hs = rd.hard_state ? &*rd.hard_state : nullptr;
  bool sync = rd.must_sync && !opts_.bugs.on(planted::Bug::kAckBeforeSync);
  return wal_->Save(hs, rd.entries, sync);
}

void Node::SendMessages(std::vector<raft::Message>& msgs) {
  if (opts_.bugs.on(planted::Bug::kNondeterministicIteration)) {  // PLANTED
    // The messages leave in the order of a hash set of their addresses
    // that iterates in hash order (as open-addressing tables do): the
    // network draws their latencies in that order, so the run depends on
    // where the heap, and ASLR, put them.
    std::map<uint64_t, raft::Message*> set;
    for (raft::Message& m : msgs) {
      uint64_t h = reinterpret_cast<uintptr_t>(&m);  // MurmurHash3's fmix64
      h = (h ^ (h >> 33)) * 0xff51afd7ed558ccdULL;
      h = (h ^ (h >> 33)) * 0xc4ceb9fe1a85ec53ULL;
      set.emplace(h ^ (h >> 33), &m);
    }
    std::vector<raft::Message> order;
    order.reserve(msgs.size());
    for (auto& [h, m] : set) order.push_back(std::move(*m));
    msgs.swap(order);
  }
  for (raft::Message& m : msgs) {
    if (observer_) observer_->OnSend(opts_.id, m, wal_->durable());
    const uint64_t to = m.to;
    if (m.type != raft::MessageType::kSnap) {
      env_.transport->Send(to, raft::EncodeMessage(m));
      continue;
    }
    // Raft holds the follower in the snapshot state until the transport
    // says the transfer is over (as etcd's snapshot stream reports when it
    // ends): a large snapshot takes a while to write, and entries sent
    // behind it would only be refused. Without the report a snapshot lost
    // on the way (the follower was down) would hold the follower there
    // forever; with it the leader probes again and resends if needed. The
    // report may come within this call (OnSnapshotSent then finds us inside
    // the Ready loop, which picks up what it caused).
    std::weak_ptr<bool> alive = alive_;
    images_sent_[to] = {m.snapshot->metadata.index, ticks_};
    // The image goes out from where it lies (a whole store's), kept alive
    // by the transport until it is written.
    std::shared_ptr<const std::string> image(m.snapshot, &m.snapshot->data);
    env_.transport->SendSnapshotParts(to, raft::EncodeMessageHead(m),
                                      std::move(image),
                                      [this, alive, to](bool delivered) {
                                        if (alive.expired()) return;
                                        OnSnapshotSent(to, delivered);
                                      });
  }
  msgs.clear();
}

void Node::ApplySnapshot(const raft::Snapshot& snap) {
  std::unique_ptr<StateMachine::Prepared> p = std::move(prepared_);
  if (absl::Status s = sm_->RestorePrepared(snap.data, &p); !s.ok()) {
    return Fail(RestoreFailed(snap.metadata, s));
  }
  // What the restore replaced (a whole store) is freed by the worker.
  if (p != nullptr && env_.disk->worker() != nullptr) {
    env_.disk->worker()->Free(std::shared_ptr<void>(std::move(p)));
  }
  applied_ = snapshot_index_ = snap.metadata.index;
  applied_bytes_at_snap_ = applied_bytes_;
  snap_image_bytes_ = snap.data.size();
  StartChain(snap.metadata.index, sm_->image_point());
  conf_state_ = snap.metadata.conf_state;
  if (observer_) observer_->OnRestore(opts_.id, snap.metadata);
}

void Node::ApplyEntries(absl::Span<const raft::Entry> entries) {
  for (const raft::Entry& e : entries) {
    if (failed()) return;
    if (e.index <= applied_) continue;  // covered by a snapshot
    DETCD_CHECK_MSG(e.index == applied_ + 1, "applied entries must be dense");
    applied_ = e.index;
    applied_bytes_ += e.data.size();
    uint64_t proposer = 0, rid = 0;
    std::string_view payload;
    std::string result;
    absl::Status refused;  // a conf change the state machine refused
    bool ours = false;
    if (e.type == raft::EntryType::kConfChange) {
      raft::ConfChange cc;
      if (!raft::DecodeConfChange(e.data, &cc)) {
        Fail(absl::DataLossError("undecodable conf change entry"));
        return;
      }
      ours = OpenEnvelope(cc.context, &proposer, &rid, &payload);
      const std::string_view context = ours ? payload : std::string_view();
      // The state machine may refuse the change (etcd's
      // ValidateConfigurationChange): then raft applies a change that
      // changes nothing, as etcd applies one with no node id.
      absl::Status check = sm_->CheckConfChange(cc, context);
      // Raft may want a snapshot for a follower while it applies the
      // change (a smaller quorum commits more, and the leader sends at
      // once); the state machine has not applied the change yet, so none
      // can be made until it has.
      const bool stale_bug =
          opts_.bugs.on(planted::Bug::kStaleMembershipSnapshot);
      storage_.set_busy(!stale_bug);
      if (check.ok()) {
        raft::ConfState after = raft_->ApplyConfChange(cc);
        if (stale_bug) {
          // PLANTED BUG: a snapshot taken right here, while the change is
          // half applied, with the Node's membership copy (not updated
          // yet) instead of raft's.
          if (absl::Status s = TakeSnapshotWith(conf_state_); !s.ok()) {
            Fail(s);
            return;
          }
        }
        conf_state_ = std::move(after);
        result = sm_->ApplyConfChange(e.index, cc, context, conf_state_);
      } else {
        conf_state_ = raft_->ApplyConfChange(raft::ConfChange{
            raft::ConfChangeType::kUpdateNode, raft::kNone, ""});
        refused = std::move(check);
      }
      storage_.set_busy(false);
    } else if (!e.data.empty()) {  // empty: a new leader's first entry
      ours = OpenEnvelope(e.data, &proposer, &rid, &payload);
      if (ours) result = sm_->ApplyFrom(e.index, proposer, payload);
    }
    if (observer_) observer_->OnApply(opts_.id, e);
    if (!ours || proposer != opts_.id) continue;
    auto it = proposals_.find(rid);
    if (it == proposals_.end()) continue;
    ProposeDone done = std::move(it->second.done);
    proposals_.erase(it);
    if (!refused.ok()) {
      done(std::move(refused));
    } else {
      done(std::move(result));
    }
  }
}

bool Node::is_learner() const {
  return std::binary_search(conf_state_.learners.begin(),
                            conf_state_.learners.end(), opts_.id);
}

void Node::ServeReads() {
  while (!ready_reads_.empty() && ready_reads_.begin()->first <= applied_) {
    ReadDone done = std::move(ready_reads_.begin()->second.done);
    ready_reads_.erase(ready_reads_.begin());
    done(absl::OkStatus());
  }
}

void Node::MaybeSnapshot() {
  StepImage();
  StepBackground();
  if (snap_job_ != nullptr) return StepSnapshot();
  if (committing_ != nullptr) return;  // its completion calls again
  // An image begun now would first finish that work in one stall; the
  // snapshot waits for it (ContinueSnapshot starts it once it is done).
  if (sm_->background_pending()) return;
  // A received snapshot being installed replaces the state: one of ours
  // waits until it is in.
  if (snapshot_being_written()) return;
  if (!snap_waiters_.empty()) {  // SnapshotInSteps
    // (Over a delta at the applied index too: a defragment's is whole.)
    if (applied_ <= snapshot_index_ && chain_.size() <= 1) {
      return AnswerSnapshotWaiters(absl::OkStatus());
    }
    return StartSnapshot(false);
  }
  const bool early =
      applied_ - snapshot_index_ < opts_.snapshot_count &&
      applied_ > snapshot_index_ &&
      buggify::Fires(opts_.buggify, buggify::Point::kEarlySnapshot, 0.005);
  if (applied_ - snapshot_index_ < opts_.snapshot_count && !early) return;
  // A delta costs what changed since the newest file, like the log: the
  // ratio holds back whole images only.
  std::unique_ptr<ImageWriter> delta = BeginDelta();
  if (!early && delta == nullptr && opts_.snapshot_log_ratio > 0 &&
      static_cast<double>(applied_bytes_ - applied_bytes_at_snap_) <
          opts_.snapshot_log_ratio * static_cast<double>(snap_image_bytes_)) {
    if (!snap_deferred_) {  // counted once per snapshot held back
      snap_deferred_ = true;
      ++snap_stats_.deferred;
    }
    return;
  }
  StartSnapshot(early, std::move(delta));
}

std::unique_ptr<ImageWriter> Node::BeginDelta() const {
  if (!chain_point_ || chain_.empty() ||
      chain_.size() > opts_.snapshot_max_deltas ||
      chain_point_->index != chain_.back()) {
    return nullptr;
  }
  return sm_->BeginDeltaSnapshot(*chain_point_);
}

void Node::StartChain(uint64_t index,
                      std::optional<StateMachine::ImagePoint> point) {
  chain_.assign(1, index);
  chain_point_ = point;
  if (chain_point_) chain_point_->index = index;
}

// An automatic snapshot is written a step at a time between the Node's
// other work. The state machine's writer captures the image at the
// applied index now (the MVCC store keeps every revision up to it readable
// until a compaction, which makes the writer fail) and streams it through
// zstd into a temporary file. Only once that file is synced and renamed
// (by env::Disk::file_worker, beside the log's writes and the Node's other
// work) does the WAL get its marker, written by the log's worker in the
// log's order (MarkSnapshot), and only once that is durable are raft's log
// and the WAL compacted: a crash before that leaves the previous snapshot
// (and the log since) as they were.
struct Node::SnapshotJob {
  raft::SnapshotMetadata meta;
  std::unique_ptr<ImageWriter> image;
  bool delta = false;  // image is a delta on the newest file (chain_)
  // Where the image leaves the state machine (StateMachine::image_point).
  std::optional<StateMachine::ImagePoint> point;
  std::unique_ptr<wal::SnapshotFileWriter> file;
  std::string buf;  // one step's bytes
  bool early = false;
  // After two snapshots in a row were dropped (compactions came during
  // them), one is written whole in its first step, so one is always made.
  bool at_once = false;
  int64_t start_ns = 0;
  uint64_t applied_bytes = 0;  // Node::applied_bytes_ at the image's index
  uint64_t image_bytes = 0;    // the image's size, once it is all written
  uint64_t seq = 0;            // Node::snap_seq_ when it began
};

void Node::StartSnapshot(bool early, std::unique_ptr<ImageWriter> delta) {
  auto term = storage_.Term(applied_);
  if (!term.ok()) return Fail(term.status());
  auto job = std::make_unique<SnapshotJob>();
  job->meta.index = applied_;
  job->meta.term = *term;
  job->meta.conf_state = RaftConfState();
  job->delta = delta != nullptr;
  job->image = job->delta ? std::move(delta) : sm_->BeginSnapshot();
  job->point = sm_->image_point();
  if (job->point) job->point->index = applied_;
  job->early = early;
  job->at_once = snapshot_abandons_ >= 2;
  job->start_ns = env_.clock != nullptr ? env_.clock->NowNanos() : 0;
  job->applied_bytes = applied_bytes_;
  job->seq = ++snap_seq_;
  snap_deferred_ = false;
  snap_job_ = std::move(job);
  StepSnapshot();
}

void Node::ContinueSnapshot() {
  if (failed() || in_ready_) return;
  StepImage();
  const bool deferred = sm_->background_pending();
  StepBackground();
  if (snap_job_ != nullptr) return StepSnapshot();
  if ((deferred || !snap_waiters_.empty()) && !sm_->background_pending()) {
    MaybeSnapshot();
  }
}

void Node::SnapshotInSteps(size_t keep_snapshots,
                           std::function<void(absl::Status)> done) {
  if (failed()) return done(ErrStopped());
  if (snap_waiters_.empty()) snap_waiters_keep_ = 2;
  snap_waiters_keep_ = std::min(snap_waiters_keep_, keep_snapshots);
  snap_waiters_.push_back(std::move(done));
  // One begun before this request does not have everything applied now;
  // a delta keeps the history a defragment drops.
  if (snap_job_ != nullptr &&
      (snap_job_->meta.index != applied_ || snap_job_->delta)) {
    snap_job_.reset();  // its temporary file goes with the next Prune
  }
  if (committing_ != nullptr &&
      (committing_->meta.index != applied_ || committing_->delta)) {
    DropCommitting();
  }
  if (snap_job_ == nullptr && !in_ready_) MaybeSnapshot();
}

void Node::AnswerSnapshotWaiters(const absl::Status& s) {
  std::vector<std::function<void(absl::Status)>> w = std::move(snap_waiters_);
  snap_waiters_.clear();
  for (auto& done : w) done(s);
}

void Node::StepBackground() {
  if (!failed() && sm_->background_pending()) sm_->BackgroundStep();
}

void Node::StepSnapshot() {
  if (snap_job_ == nullptr || failed()) return;
  SnapshotJob& job = *snap_job_;
  const size_t budget = job.at_once ? std::numeric_limits<size_t>::max()
                                    : opts_.snapshot_step_bytes;
  for (;;) {
    if (job.file == nullptr) {
      auto f = snapshotter_->Begin(job.meta, job.image->size(), job.delta);
      if (!f.ok()) return Fail(f.status());
      job.file = *std::move(f);
    }
    job.buf.clear();
    absl::StatusOr<bool> done = job.image->Step(budget, &job.buf);
    if (!done.ok()) return AbandonSnapshot();
    if (!job.buf.empty()) {
      DETCD_CHECK(job.file != nullptr);
      if (absl::Status s = job.file->Append(job.buf); !s.ok()) return Fail(s);
    }
    if (*done) return CommitSnapshot();
    if (!job.at_once) return;
  }
}

void Node::CommitSnapshot() {
  snap_job_->image_bytes = snap_job_->image->size();
  snap_job_->image.reset();  // written: the store need not keep its state
  env::DiskWorker* worker = env_.disk->file_worker();
  if (worker == nullptr) {
    if (absl::Status s = snap_job_->file->Finish(); !s.ok()) return Fail(s);
    committing_ = std::move(snap_job_);
    return MarkSnapshot();
  }
  // The fsync of the file (tens of MB) and of the directory, and their
  // rename, would stop the engine for milliseconds, on every member at
  // about the same index: the file worker does them.
  if (absl::Status s = snap_job_->file->Seal(); !s.ok()) return Fail(s);
  committing_ = std::move(snap_job_);
  std::weak_ptr<bool> alive = alive_;
  worker->Submit([file = committing_->file.get()] { return file->Commit(); },
                 [this, alive, seq = committing_->seq](absl::Status s) {
                   if (alive.expired()) return;
                   if (committing_ == nullptr || committing_->seq != seq) {
                     return;  // dropped meanwhile (DropCommitting)
                   }
                   if (failed()) return committing_.reset();
                   if (!s.ok()) {
                     committing_.reset();
                     return Fail(s);
                   }
                   MarkSnapshot();
                 });
}

void Node::MarkSnapshot() {
  if (env_.disk->worker() == nullptr) {
    std::unique_ptr<SnapshotJob> job = std::move(committing_);
    absl::Status s = MarkWal(job->meta);
    if (s.ok()) s = FinishSnapshot(std::move(job));
    if (!s.ok()) Fail(s);
    return;
  }
  // The marker and its fsync (milliseconds under load) are the log's
  // worker's, in the WAL's order after the write in flight: the engine
  // neither waits for that write nor does the fsync (ProcessReady submits
  // a due marker once the write completes).
  marker_due_ = true;
  if (!log_busy()) SubmitMarker();
}

void Node::SubmitMarker() {
  DETCD_CHECK(committing_ != nullptr && marker_due_ && !log_busy());
  marker_due_ = false;
  marking_ = true;
  std::weak_ptr<bool> alive = alive_;
  env_.disk->worker()->Submit(
      [this, meta = committing_->meta] { return MarkWal(meta); },
      [this, alive, seq = committing_->seq](absl::Status s) {
        if (alive.expired()) return;
        marking_ = false;
        if (failed()) return;
        if (!s.ok()) return Fail(s);
        if (committing_ != nullptr && committing_->seq == seq) {
          // (Else dropped meanwhile: its marker names a durable file, and
          // whoever dropped it made a newer snapshot or will.)
          s = FinishSnapshot(std::move(committing_));
          if (!s.ok()) return Fail(s);
        }
        // The Ready that waited for the worker; requests that came
        // meanwhile, or a log long enough for the next snapshot.
        ProcessReady();
        ProposeAwaitingLeader();
        if (!in_ready_) MaybeSnapshot();
      });
}

absl::Status Node::MarkWal(const raft::SnapshotMetadata& meta) {
  if (auto s = wal_->SaveSnapshotMarker(meta); !s.ok()) return s;
  // Segments wholly before the snapshot are no longer needed for recovery.
  return wal_->ReleaseBefore(meta.index);
}

void Node::DropCommitting() {
  if (committing_ == nullptr) return;
  DETCD_PROBE(kNodeCommittingSnapshotDropped);
  if (env::DiskWorker* w = env_.disk->file_worker()) w->Drain();
  // A marker being written (marking_) names a durable file: it may finish.
  marker_due_ = false;
  committing_.reset();
  // Its file may be durable without a marker: no delta may follow the
  // chain (the next file is whole), else a restart would take that file
  // for the delta's base.
  chain_point_.reset();
}

absl::Status Node::FinishSnapshot(std::unique_ptr<SnapshotJob> job) {
  // Raft's storage gets the metadata only: the image stays in the file,
  // and a follower that needs one gets a fresh image (NodeStorage). (If
  // the in-memory log was released past the index meanwhile, raft's
  // storage is already beyond this snapshot and needs nothing from it.)
  // (A whole image over a delta at its index: the storage has it.)
  if (job->meta.index > snapshot_index_) {
    auto snap =
        storage_.CreateSnapshot(job->meta.index, &job->meta.conf_state, "");
    if (!snap.ok() && !raft::IsErrCompacted(snap.status())) {
      return snap.status();
    }
  }
  snapshot_abandons_ = 0;
  ++snap_stats_.completed;
  snap_stats_.last_file_bytes = job->file->file_bytes();
  if (job->delta) {
    DETCD_PROBE(kNodeDeltaSnapshot);
    ++snap_stats_.deltas;
    chain_.push_back(job->meta.index);
    chain_point_ = job->point;
  } else {
    // (snapshot_log_ratio counts from the chain's whole image.)
    applied_bytes_at_snap_ = job->applied_bytes;
    snap_image_bytes_ = job->image_bytes;
    StartChain(job->meta.index, job->point);
  }
  if (env_.clock != nullptr) {
    snap_stats_.last_ns = env_.clock->NowNanos() - job->start_ns;
  }
  const size_t kept = snap_waiters_.empty() ? 2 : snap_waiters_keep_;
  if (absl::Status s = CompactBehind(job->meta.index, kept); !s.ok()) {
    return s;
  }
  AnswerSnapshotWaiters(absl::OkStatus());
  if (!job->early) return absl::OkStatus();
  // BUGGIFY early-snapshot: a snapshot long before snapshot_count, and the
  // in-memory log compacted to within a few entries of it (legal: the
  // snapshot covers everything compacted), so a follower lagging even a
  // little needs a snapshot instead of appends.
  const uint64_t keep = static_cast<uint64_t>(opts_.buggify->Range(0, 20));
  const uint64_t at = job->meta.index;
  if (at > keep && at - keep > storage_.FirstIndex() &&
      at - keep <= LogKeptFrom()) {
    return storage_.Compact(at - keep);
  }
  return absl::OkStatus();
}

uint64_t Node::LogKeptFrom() const {
  uint64_t from = image_job_ != nullptr ? image_job_->meta.index
                                        : std::numeric_limits<uint64_t>::max();
  for (const auto& [id, sent] : images_sent_) {
    if (ImageSentHolds(id, sent)) from = std::min(from, sent.index);
  }
  return from;
}

bool Node::ImageSentHolds(uint64_t id, const ImageSent& sent) const {
  if (raft_ == nullptr || raft_->state() != raft::StateType::kLeader ||
      ticks_ - sent.tick > kImageCatchUpElections * opts_.election_ticks) {
    return false;
  }
  const raft::Progress* pr = raft_->tracker().Get(id);
  return pr != nullptr && pr->match < sent.index;
}

bool Node::image_in_progress() const {
  return image_job_ != nullptr && image_job_->writer != nullptr;
}

raft::ConfState Node::ImageConfState() const {
  return opts_.bugs.on(planted::Bug::kStaleMembershipSnapshot)
             ? conf_state_  // PLANTED: the copy, stale during a conf change
             : RaftConfState();
}

absl::StatusOr<std::optional<raft::Snapshot>> Node::FreshImage() {
  // The stored snapshot serves only if it holds its image: an incremental
  // one leaves its image in the file alone.
  const raft::Snapshot& stored = storage_.snapshot();
  if (applied_ < stored.metadata.index ||
      (applied_ == stored.metadata.index && !stored.data.empty())) {
    return std::nullopt;
  }
  if (image_job_ != nullptr &&
      (image_job_->meta.conf_state != ImageConfState() ||
       image_job_->meta.index + 1 < storage_.FirstIndex())) {
    DropImage();
    ++image_abandons_;
  }
  if (image_job_ == nullptr) {
    auto term = storage_.Term(applied_);
    if (!term.ok()) return std::nullopt;
    auto job = std::make_unique<ImageJob>();
    job->meta.index = applied_;
    job->meta.term = *term;
    job->meta.conf_state = ImageConfState();
    job->writer = sm_->BeginSnapshot();
    job->data.reserve(job->writer->size());
    job->at_once = image_abandons_ >= 2;
    image_job_ = std::move(job);
  }
  StepImage();
  if (image_job_ == nullptr || image_job_->writer != nullptr) {
    return absl::UnavailableError("snapshot: the image is being built");
  }
  if (image_job_->steps > 1) DETCD_PROBE(kNodeImageInSteps);
  raft::Snapshot s;
  s.metadata = std::move(image_job_->meta);
  s.data = std::move(image_job_->data);
  image_job_.reset();
  ++snap_stats_.follower_images;
  return s;
}

void Node::StepImage() {
  if (!image_in_progress() || failed()) return;
  ImageJob& job = *image_job_;
  const size_t budget = job.at_once ? std::numeric_limits<size_t>::max()
                                    : opts_.snapshot_step_bytes;
  absl::StatusOr<bool> done;
  do {
    done = job.writer->Step(budget, &job.data);
  } while (done.ok() && !*done && job.at_once);
  ++job.steps;
  if (!done.ok()) {
    DropImage();
    ++image_abandons_;
    return;
  }
  if (!*done) return;
  job.writer.reset();
  job.done_tick = ticks_;
  image_abandons_ = 0;
}

void Node::DropImage() {
  DETCD_PROBE(kNodeImageDropped);
  image_job_.reset();
  ++snap_stats_.follower_images_dropped;
}

void Node::AbandonSnapshot() {
  if (!snap_waiters_.empty()) DETCD_PROBE(kNodeRequestedSnapshotRestarted);
  snap_job_.reset();  // its temporary file goes with the next Prune
  ++snapshot_abandons_;
  ++snap_stats_.abandoned;
}

absl::Status Node::TakeSnapshot(size_t keep_snapshots) {
  if (failed()) return failure_;
  return TakeSnapshotWith(RaftConfState(), keep_snapshots);
}

absl::Status Node::TakeSnapshotWith(const raft::ConfState& cs,
                                    size_t keep_snapshots) {
  // A snapshot written whole now supersedes one being written in steps
  // (whose temporary file the Prune below removes), or one whose file is
  // being committed.
  snap_job_.reset();
  DropCommitting();
  // The newest file is then a whole image at the applied index (offline
  // defragmentation reads it so): over a delta at that index too.
  if (applied_ <= snapshot_index_ && chain_.size() <= 1) {
    return absl::OkStatus();
  }
  // The WAL is ours again once the worker is idle (the write's completion
  // may still be queued: what is applied never depends on it).
  if (log_busy()) env_.disk->worker()->Drain();
  absl::StatusOr<raft::Snapshot> snap;
  if (applied_ > snapshot_index_) {
    snap = storage_.CreateSnapshot(applied_, &cs, sm_->Snapshot());
  } else {
    auto term = storage_.Term(applied_);
    if (!term.ok()) return term.status();
    snap.emplace();
    snap->metadata.index = applied_;
    snap->metadata.term = *term;
    snap->metadata.conf_state = cs;
    snap->data = sm_->Snapshot();
  }
  if (!snap.ok()) return snap.status();
  if (auto s = snapshotter_->Save(*snap); !s.ok()) return s;
  applied_bytes_at_snap_ = applied_bytes_;
  snap_image_bytes_ = snap->data.size();
  StartChain(applied_, sm_->image_point());
  if (auto s = MarkWal(snap->metadata); !s.ok()) return s;
  if (auto s = CompactBehind(applied_, keep_snapshots); !s.ok()) return s;
  AnswerSnapshotWaiters(absl::OkStatus());  // this one has all they wanted
  return absl::OkStatus();
}

absl::Status Node::CompactBehind(uint64_t index, size_t keep_snapshots) {
  snapshot_index_ = index;
  if (index > opts_.snapshot_catchup_entries) {
    uint64_t compact =
        std::min(index - opts_.snapshot_catchup_entries, LogKeptFrom());
    if (compact > storage_.FirstIndex()) {
      if (auto s = storage_.Compact(compact); !s.ok()) return s;
    }
  }
  // The files the newest's chain needs stay too.
  return snapshotter_->Prune(std::max<size_t>(1, keep_snapshots),
                             chain_.empty() ? index : chain_.front());
}

}  // namespace detcd::server
