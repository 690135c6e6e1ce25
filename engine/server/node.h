// A Node is one cluster member: Raft + WAL + snapshots + a state machine,
// driven only through env (Clock for nothing yet, Disk, Transport, Rng).
//
// Inputs are events: Tick(), OnMessage(payload), Propose(), ReadIndex(),
// ProposeConfChange(). After each input the Node drains Raft's Ready in
// order (see raft.h): send the early messages (a leader's appends and
// heartbeats), persist snapshot, entries and hard state to the WAL (fsync
// when Raft says so), then send the other messages, then apply committed
// entries, then Advance. Completions are callbacks, run inside the input
// call that caused them.
//
// With a disk worker (env::Disk::worker(): a disk thread in the real
// server, completion events in the simulator) the WAL write + fsync of a
// Ready runs off the engine's thread: the Node submits it and goes on
// stepping raft and serving; its inputs meanwhile only step raft and send
// the early messages they cause. The write's completion is an input of
// its own: only then are the messages that wait for it sent (append acks,
// votes), the leader's own progress advanced (raft's OnPersisted, through
// Advance) and the Ready's committed entries applied; then the next Ready
// (everything that queued up meanwhile, one write) is taken. One write is
// in flight at a time, so writes complete in order; a snapshot is
// persisted inline before the entries of its Ready, as before.
//
// A failed disk write makes the Node fail-stop (as etcd does on a WAL
// error): it stops answering until restarted, and never runs on with state
// it could not persist.
#ifndef DETCD_ENGINE_SERVER_NODE_H_
#define DETCD_ENGINE_SERVER_NODE_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "engine/env/env.h"
#include "engine/raft/raft.h"
#include "engine/raft/storage.h"
#include "engine/server/etcd_kv.h"
#include "engine/server/state_machine.h"
#include "engine/util/buggify.h"
#include "engine/util/planted.h"
#include "engine/wal/wal.h"

namespace detcd::server {

struct NodeOptions {
  uint64_t id = 0;
  std::string data_dir = "data";
  // On an empty data dir: found a new cluster with these voters, or (if
  // empty) join an existing cluster as a member already added through a
  // membership change. Ignored once the data dir holds a WAL.
  std::vector<uint64_t> initial_voters;
  // Founding only (ignored otherwise): the conf change context written
  // into each founder's founding AddNode entry (the etcd layer's member
  // attributes, see membership.h); founders without one get an empty
  // context. Every founder must be given the same map (as etcd's
  // --initial-cluster must match): the founding entries must be identical
  // everywhere.
  std::map<uint64_t, std::string> founding_contexts;
  // etcd's --force-new-cluster (disaster recovery), used only when the
  // data dir holds a WAL: the member restarts as the only voter of its
  // cluster, keeping its data. As etcd's restartAsStandaloneNode: the
  // uncommitted tail of the log is discarded; after the committed entries
  // come conf changes that add this member (if the log and snapshot do not
  // list it) and remove every other member (voters and learners), written
  // to the WAL as committed entries in the last term (so the commit index
  // moves past them) before raft starts. See forced_restart().
  bool force_new_cluster = false;
  int election_ticks = 10;
  int heartbeat_ticks = 1;
  // Raft's in-memory log keeps at most about this many bytes of applied
  // entries (raft::MemoryStorage::ReleaseApplied); older ones are read
  // from the WAL on restart only, and a follower that needs one gets a
  // snapshot. Between snapshots a loaded member's log would otherwise
  // hold every write since the last one (1M keys in txns of 100 puts:
  // 280 MiB next to the store).
  uint64_t log_cache_bytes = 64 << 20;
  // The budget while this member is alone in its applied configuration
  // (the only voter, no learners): nobody can need an applied entry from
  // its log (a member added later gets a snapshot), so the real server
  // keeps only a small batch, released together (1 MiB). The default keeps
  // the simulator's runs as they were.
  uint64_t log_cache_bytes_alone = 64 << 20;
  // Take a snapshot after this many applied entries, keeping this many
  // entries behind it for followers that lag a little.
  uint64_t snapshot_count = 10000;
  uint64_t snapshot_catchup_entries = 5000;
  // With a positive ratio an automatic snapshot also waits until the
  // entries applied since the last snapshot (their bytes) reach this
  // fraction of that snapshot's image. A large store whose writes are small
  // next to it (a compacted key space being overwritten) is then not
  // imaged again every snapshot_count entries, which costs the whole
  // image's CPU and disk bytes each time: the snapshots' cost stays within
  // 1/ratio of the log's. The WAL keeps the entries meanwhile, so recovery
  // replays up to about ratio x image bytes of them. 0: every
  // snapshot_count entries, as etcd (the simulator runs so).
  double snapshot_log_ratio = 0;
  // Those automatic snapshots are written incrementally, about this many
  // bytes of image per engine step (compressed into the file), between
  // the Node's other work: the member never stops serving for a whole
  // image (a 1M-key store's is hundreds of MiB).
  size_t snapshot_step_bytes = 512 << 10;
  // An automatic snapshot is a delta (StateMachine::BeginDeltaSnapshot: what
  // changed since the newest snapshot file) when the state machine can make
  // one, until this many deltas follow a whole image; then a whole image
  // starts a new chain (and snapshot_log_ratio applies to it, counted from
  // the chain's whole image). A restart restores the whole image and
  // applies the deltas (wal.h, "Delta files"). 0: whole images only.
  size_t snapshot_max_deltas = 16;
  // Requests not completed within this many ticks fail with a timeout; the
  // outcome of such a write is unknown to the client.
  int request_timeout_ticks = 50;
  // One read index round at a time, as etcd's linearizableReadLoop: reads
  // that come while a round is out wait and share the next one, so under
  // load a round (a heartbeat to every follower and their answers) serves
  // every read that came during the last. A round not answered within
  // this many ticks (a lost message, a new leader) no longer holds the
  // next one back; its own reads wait for their answer or time out.
  int read_round_patience_ticks = 1;
  uint64_t max_request_bytes = 1536 * 1024;  // etcd's default 1.5 MiB
  int max_pending_requests = 10000;
  raft::Config raft = DefaultRaftConfig();  // limits; id, storage, rng and
                                           // ticks are filled in
  // etcd's raft defaults, and small appends held while one is in flight
  // (raft::Config::hold_small_appends; the simulator runs so too).
  static raft::Config DefaultRaftConfig() {
    raft::Config c;
    c.hold_small_appends = 256;
    return c;
  }
  // With a disk worker: a Ready that needs no fsync (a commit index or
  // other hard state change alone, no entries) is written inline when no
  // write is in flight, instead of on the worker: a write(2) to the page
  // cache costs less than the two thread hops to the worker and back, and
  // on an idle leader this Ready (the commit after the followers' acks)
  // is what stands between the quorum and the client's answer. The real
  // server sets it; the simulator leaves it off (its schedules, recorded
  // with every write on the worker, stay as they were).
  bool inline_unsynced_writes = false;
  // Planted bugs for the simulator's checker tests; all off in production.
  planted::Bugs bugs;  // engine/util/planted.h
  // BUGGIFY fault points (engine/util/buggify.h), shared by the Node, its
  // raft and its EtcdServer; null (off) in production.
  buggify::Buggify* buggify = nullptr;

  absl::Status Validate() const;
};

// Hooks for the simulator's checkers. Every call happens synchronously at
// the point the Node does the thing.
class NodeObserver {
 public:
  virtual ~NodeObserver() = default;
  // A committed entry was applied (normal and conf change entries, and the
  // empty entries leaders append); called after it took effect.
  virtual void OnApply(uint64_t node, const raft::Entry& e) {}
  // A snapshot replaced the state machine.
  virtual void OnRestore(uint64_t node, const raft::SnapshotMetadata& m) {}
  // A message is about to leave; `durable` is what the WAL has fsynced.
  virtual void OnSend(uint64_t node, const raft::Message& m,
                      const wal::DurableState& durable) {}
};

// Entry payload of a proposal: varint(proposer) varint(request id) command.
// The proposer completes its waiter when it applies the entry; every other
// node just applies the command. Conf changes carry it in their context;
// a founding AddNode entry's context is Envelope(0, 0, founding context),
// or empty when it has none (proposer 0 is no node).
std::string Envelope(uint64_t proposer, uint64_t request_id,
                     std::string_view payload);
// The same envelope put in front of *payload in place: a payload with
// kEnvelopeMaxBytes of spare capacity is moved within its own memory
// instead of copied into a new string (EtcdServer reserves it when it
// serializes a request).
void PrependEnvelope(uint64_t proposer, uint64_t request_id,
                     std::string* payload);
inline constexpr size_t kEnvelopeMaxBytes = 20;  // two varint64s
bool OpenEnvelope(std::string_view data, uint64_t* proposer,
                  uint64_t* request_id, std::string_view* payload);

// Errors, with etcd's texts where etcd has one.
absl::Status ErrNoLeader();       // "etcdserver: no leader"
absl::Status ErrTimeout();        // "etcdserver: request timed out"
// ErrRequestTooLarge() lives with the KV request checks (etcd_kv.h).
absl::Status ErrStopped();        // "etcdserver: server stopped"
absl::Status ErrTooManyRequests();  // "etcdserver: too many requests"

// The Node's Raft storage. When Raft needs a snapshot to send to a
// follower, it gets a fresh one at the applied index (the state machine's
// image with the current membership), as etcd's merged snapshot message
// does: the last snapshot taken for compaction may predate the follower's
// own addition, and a follower ignores a snapshot whose membership does not
// include it.
//
// While the owner is between two states (a conf change half applied: raft
// has it, the state machine not yet), no snapshot can be made: GetSnapshot
// answers Unavailable and raft tries again later. So it does while the
// fresh image is being built (the Node builds it in steps).
class NodeStorage final : public raft::MemoryStorage {
 public:
  // The fresh snapshot; nullopt: the stored one serves; an error: none
  // now, raft asks again later.
  using Fresh = std::function<absl::StatusOr<std::optional<raft::Snapshot>>()>;
  void set_fresh(Fresh f) { fresh_ = std::move(f); }
  void set_busy(bool busy) { busy_ = busy; }
  absl::StatusOr<raft::Snapshot> GetSnapshot() const override;

 private:
  Fresh fresh_;
  bool busy_ = false;
};

class Node {
 public:
  using ProposeDone = std::function<void(absl::StatusOr<std::string>)>;
  using ReadDone = std::function<void(absl::Status)>;

  Node(const env::Env& env, NodeOptions opts, StateMachine* sm);
  ~Node();
  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;

  // Opens or creates the data dir and recovers state. Must succeed before
  // any other call.
  absl::Status Start();

  void Tick();
  // etcd's raft advanceTicks: n raft ticks at once (election and heartbeat
  // clocks only; request deadlines keep their own count), for the initial
  // election tick advance.
  void AdvanceTicks(int n);
  // Campaigns now (raft's MsgHup) when this member is the only voter of
  // its configuration: nobody can be disrupted and nobody else can win,
  // so the randomized election timeout would only delay the one possible
  // outcome. Otherwise does nothing.
  void CampaignIfOnlyVoter();
  // own: the string payload views, if the caller gives it up (a
  // snapshot's data is then moved out of it; raft::DecodeMessage).
  void OnMessage(std::string_view payload, std::string* own = nullptr);
  // Without a known leader the proposal waits for one (as etcd's raft
  // node does) and fails with ErrTimeout at the request deadline.
  void Propose(std::string command, ProposeDone done);
  // Completes once a read served from the local state machine right after
  // the callback is linearizable. Between HoldReady() and the last
  // ReleaseReady() reads are gathered and share one raft ReadIndex, issued
  // at the release (after each of them arrived, so its index covers every
  // write any of them could have seen complete), as etcd's read loop does.
  void ReadIndex(ReadDone done);
  void ProposeConfChange(const raft::ConfChange& cc, ProposeDone done);
  void TransferLeadership(uint64_t transferee);
  // The transport finished (or gave up) sending a snapshot to `to`
  // (env::Transport::SendSnapshot); raft then resumes replicating to it.
  void OnSnapshotSent(uint64_t to, bool delivered);
  // The transport could not reach `to` (etcd's ReportUnreachable): a leader
  // replicating to it optimistically falls back to probing it.
  void ReportUnreachable(uint64_t to);
  // Compacts now (tests, defragmentation); normally automatic every
  // snapshot_count entries. Keeps the newest `keep_snapshots` snapshot
  // files (>= 1): the automatic ones keep 2, so a damaged newest file can
  // fall back to the one before; a defragmentation keeps only the new one,
  // since the older ones still hold the history it gives back.
  // (It drops an automatic snapshot still being written.)
  absl::Status TakeSnapshot(size_t keep_snapshots = 2);
  // The same, written in steps as an automatic snapshot is (the Node goes
  // on serving meanwhile; TakeSnapshot stops it for the whole image: a
  // 1M-key store's took two seconds): `done` runs once the snapshot file,
  // its WAL marker and the compaction behind it are done, or with
  // ErrStopped once the Node failed. Any automatic snapshot begun before
  // the request gives way to it; requests while one is under way share it
  // (the smallest keep_snapshots counts). A compaction under it starts it
  // again. With nothing applied since the last snapshot, `done` runs at
  // once (or once a compaction's steps are done).
  void SnapshotInSteps(size_t keep_snapshots,
                       std::function<void(absl::Status)> done);

  // An automatic snapshot is being written (NodeOptions::
  // snapshot_step_bytes), or the state machine has work left in steps
  // (StateMachine::background_pending: a compaction's removal). Every
  // input steps both once; an idle real server also calls
  // ContinueSnapshot until neither is left.
  bool snapshot_in_progress() const { return snap_job_ != nullptr; }
  // A snapshot is under way: being written, or its file being synced and
  // renamed by the file worker, or its WAL marker being written by the
  // log's (the Node finishes it in that completion).
  bool snapshot_pending() const {
    return snap_job_ != nullptr || committing_ != nullptr;
  }
  // Entries of the WAL write handed to the disk worker, not completed yet
  // (0: none); a worker may ask during Submit.
  size_t entries_being_written() const {
    return persisting_ != nullptr ? persisting_->entries.size() : 0;
  }
  // The write under way installs a received snapshot (its file and the
  // state machine's restore: long work for a large one).
  bool snapshot_being_written() const {
    return persisting_ != nullptr && persisting_->snapshot != nullptr;
  }
  // The log's worker is given (or writing) a snapshot's WAL marker; a
  // worker may ask during Submit.
  bool marker_being_written() const { return marking_; }
  // The image for a follower that needs a snapshot is being built (a step
  // at a time too, with the snapshot's; raft sends it once it is whole).
  bool image_in_progress() const;
  bool background_pending() const { return sm_->background_pending(); }
  void ContinueSnapshot();
  struct SnapshotStats {
    uint64_t completed = 0;  // automatic snapshots made durable
    uint64_t abandoned = 0;  // dropped: compaction or restore under them
    int64_t last_ns = 0;     // the last one's time, first step to durable
    uint64_t last_file_bytes = 0;
    uint64_t deferred = 0;  // times snapshot_log_ratio held one back
    uint64_t deltas = 0;    // completed ones that were deltas
    // Images built for followers that needed a snapshot (handed to raft),
    // and those dropped unfinished (compaction or restore under them) or
    // unused (raft no longer asked for one).
    uint64_t follower_images = 0;
    uint64_t follower_images_dropped = 0;
  };
  const SnapshotStats& snapshot_stats() const { return snap_stats_; }

  // Group commit. Between HoldReady() and the matching ReleaseReady(),
  // inputs only step raft and leave its Ready for later; the last release
  // drains it once, so every proposal made meanwhile shares one WAL write
  // and one sync, and their completions run together. Holds nest. The real
  // server holds around each batch of queued requests; the simulator, which
  // delivers one input at a time, does not (raft tolerates a deferred Ready
  // either way: a slow fsync defers it just the same).
  void HoldReady() { ++ready_holds_; }
  void ReleaseReady();

  // What a forced restart (force_new_cluster) did, for etcd's log lines.
  struct ForcedRestart {
    bool done = false;
    uint64_t wal_commit = 0;        // the commit index the WAL held
    uint64_t first_discarded = 0;   // first uncommitted entry dropped (0: none)
    uint64_t discarded = 0;         // how many were dropped
    uint64_t commit = 0;            // the commit index after the new entries
    std::vector<uint64_t> removed;  // members the new entries remove
  };
  const ForcedRestart& forced_restart() const { return forced_; }

  void set_observer(NodeObserver* o) { observer_ = o; }
  uint64_t id() const { return opts_.id; }
  bool failed() const { return !failure_.ok(); }
  const absl::Status& failure() const { return failure_; }
  const raft::Raft& raft() const { return *raft_; }
  uint64_t applied_index() const { return applied_; }
  // The index of the last snapshot written (or restored).
  uint64_t snapshot_index() const { return snapshot_index_; }
  // Bytes of entries raft's in-memory log holds (NodeOptions::
  // log_cache_bytes).
  uint64_t log_bytes() const { return storage_.entries_bytes(); }
  const raft::ConfState& conf_state() const { return conf_state_; }
  bool is_leader() const {
    return raft_ && raft_->state() == raft::StateType::kLeader;
  }
  uint64_t leader() const { return raft_ ? raft_->lead() : 0; }
  // Raft's commit index (etcd's Status raftIndex).
  uint64_t committed_index() const {
    return raft_ ? raft_->log().committed() : 0;
  }
  bool is_learner() const;
  size_t pending_requests() const {
    return awaiting_leader_.size() + proposals_.size() + reads_.size() +
           ready_reads_.size() + held_reads_.size();
  }
  // Plain counts for the real server's etcd_server_read_indexes_failed_total
  // (raft refused the ReadIndex) and etcd_server_slow_read_indexes_total (no
  // read index came back before the request deadline), where etcd counts.
  struct ReadIndexCounters {
    uint64_t failed = 0;
    uint64_t slow = 0;
    uint64_t rounds = 0;  // read index requests made to raft
  };
  const ReadIndexCounters& read_index_counters() const {
    return read_index_counters_;
  }

 private:
  struct Waiter {
    ProposeDone done;
    int deadline_tick;
  };
  // A proposal made while no leader was known (see Propose).
  struct AwaitingLeader {
    std::string command;
    ProposeDone done;
    int deadline_tick;
    // A conf change waits the same way (etcd's raft node blocks those too).
    std::optional<raft::ConfChange> conf_change;
  };
  struct ReadWaiter {
    ReadDone done;
    int deadline_tick;
    uint64_t index = 0;  // set once the ReadState arrived
  };

  bool HasBootstrapped();
  absl::Status Recover();
  // force_new_cluster: rewrites the recovered log tail (see NodeOptions).
  absl::Status ForceNewCluster(const raft::ConfState& snap_cs,
                               uint64_t snap_index,
                               std::vector<raft::Entry>* entries,
                               raft::HardState* hs);
  absl::Status Bootstrap();
  void ProcessReady();
  // What a Ready writes, on the disk worker when there is one: a received
  // snapshot (its file, its WAL marker, and the state machine's
  // PrepareRestore into prepared_), then the WAL write (WriteLog).
  absl::Status Persist(const raft::Ready& rd);
  static absl::Status RestoreFailed(const raft::SnapshotMetadata& m,
                                    const absl::Status& s);
  // The WAL write of a Ready (entries, hard state, fsync).
  absl::Status WriteLog(const raft::Ready& rd);
  void SubmitWrite(raft::Ready rd);
  void OnWriteDone(absl::Status s);
  // After the Ready's write: send, apply, Advance.
  void FinishReady(raft::Ready& rd);
  // Early messages produced while a write is in flight.
  void SendEarlyMessages();
  void SendMessages(std::vector<raft::Message>& msgs);
  void ApplyEntries(absl::Span<const raft::Entry> entries);
  // While rd's write is under way: applies its committed entries that
  // were durable before it (why and what waits: at its definition).
  void ApplyDurable(const raft::Ready& rd);
  void ApplySnapshot(const raft::Snapshot& snap);
  void ServeReads();
  void ProposeNow(std::string command, ProposeDone done, int deadline_tick);
  void ProposeAwaitingLeader();
  void ProposeConfChangeNow(const raft::ConfChange& cc, ProposeDone done,
                            int deadline_tick);
  void MaybeSnapshot();
  void StepBackground();  // one StateMachine::BackgroundStep, if pending
  // The incremental snapshot (see NodeOptions::snapshot_step_bytes).
  struct SnapshotJob;
  void StartSnapshot(bool early, std::unique_ptr<ImageWriter> delta = nullptr);
  // A delta on the newest snapshot file, if one can be made now (null: the
  // next is whole).
  std::unique_ptr<ImageWriter> BeginDelta() const;
  void StepSnapshot();
  // The job's image is all in its file: seals the file and has the file
  // worker (env::Disk::file_worker) sync and rename it, or does it inline
  // without one; then MarkSnapshot.
  void CommitSnapshot();
  // The committing job's file is durable: its WAL marker is written and
  // the WAL's segments behind it released (MarkWal) by the log's worker
  // once no write of the log is in flight (marker_due_ until then), or
  // inline without a worker; then FinishSnapshot.
  void MarkSnapshot();
  void SubmitMarker();
  absl::Status MarkWal(const raft::SnapshotMetadata& meta);
  // The snapshot is durable and the WAL marks it: raft's storage learns
  // it, its log is compacted, older snapshot files pruned, waiters
  // answered.
  absl::Status FinishSnapshot(std::unique_ptr<SnapshotJob> job);
  // A write of the log is in flight on the disk worker (a Ready's, or a
  // snapshot's marker): the WAL is the worker's until its completion.
  bool log_busy() const { return persisting_ != nullptr || marking_; }
  void AbandonSnapshot();
  // Drops the job whose file the file worker is committing, once the
  // worker is done with it (its completion then finds nothing to finish):
  // the state it captured is being replaced or is not new enough.
  void DropCommitting();
  // The fresh image for NodeStorage (its Fresh; see ImageJob).
  absl::StatusOr<std::optional<raft::Snapshot>> FreshImage();
  struct ImageJob;
  void StepImage();
  void DropImage();
  raft::ConfState ImageConfState() const;
  // Raft's log is compacted no further than this: the index of the image
  // being built and of those sent to followers not yet acknowledged.
  uint64_t LogKeptFrom() const;
  struct ImageSent {
    uint64_t index = 0;
    int tick = 0;  // ticks_ when it was sent
  };
  static constexpr int kImageCatchUpElections = 30;
  bool ImageSentHolds(uint64_t id, const ImageSent& sent) const;
  // After a snapshot at `index` is durable and marked (MarkWal): compacts
  // raft's log behind it and prunes old snapshot files.
  absl::Status CompactBehind(uint64_t index, size_t keep_snapshots);
  void ExpireRequests();
  void Fail(absl::Status s);
  void FailAllRequests(const absl::Status& s);
  std::unique_ptr<raft::Raft> MakeRaft(uint64_t applied);
  // Compacts at the applied index with membership `cs`.
  absl::Status TakeSnapshotWith(const raft::ConfState& cs,
                                size_t keep_snapshots = 2);
  // The membership at the applied index, as raft has it (raft's view is
  // right even in the middle of applying a conf change).
  raft::ConfState RaftConfState() const;

  env::Env env_;
  NodeOptions opts_;
  StateMachine* sm_;
  NodeObserver* observer_ = nullptr;

  NodeStorage storage_;
  std::unique_ptr<wal::Wal> wal_;
  std::unique_ptr<wal::Snapshotter> snapshotter_;
  std::unique_ptr<raft::Raft> raft_;
  // Raft's own stream, seeded from the Node's at Start: the Node's draws
  // (request ids) and raft's (election timeouts) never shift each other.
  std::unique_ptr<env::SeededRng> raft_rng_;
  // Expires when the Node is destroyed: a transport's late snapshot report
  // must not reach a Node that is gone.
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
  absl::Status failure_ = absl::OkStatus();
  bool started_ = false;
  bool in_ready_ = false;
  int ready_holds_ = 0;  // HoldReady() calls not yet released
  // The Ready whose WAL write the disk worker is doing (null: none). The
  // worker reads it; nothing else touches it until the completion.
  std::unique_ptr<raft::Ready> persisting_;
  // The received snapshot's restore, prepared by Persist (on the worker)
  // for ApplySnapshot.
  std::unique_ptr<StateMachine::Prepared> prepared_;

  uint64_t applied_ = 0;
  uint64_t snapshot_index_ = 0;
  // Bytes of applied entries ever, at the last snapshot, and that
  // snapshot's image size (NodeOptions::snapshot_log_ratio).
  uint64_t applied_bytes_ = 0;
  uint64_t applied_bytes_at_snap_ = 0;
  uint64_t snap_image_bytes_ = 0;
  bool snap_deferred_ = false;
  // The snapshot files a restart reads, oldest first (a whole image, then
  // the deltas on it: their indexes), and where the newest left the state
  // machine, for the next delta (none: the next is whole).
  std::vector<uint64_t> chain_;
  std::optional<StateMachine::ImagePoint> chain_point_;
  // A whole snapshot file at index was written: a chain of its own.
  void StartChain(uint64_t index,
                  std::optional<StateMachine::ImagePoint> point);
  // Recover's: the newest snapshot chain the WAL has a marker for, restored
  // (NotFound: none).
  absl::StatusOr<raft::SnapshotMetadata> RestoreNewestChain();
  std::unique_ptr<SnapshotJob> snap_job_;
  // The job whose file the file worker syncs and renames (null: none);
  // no other job begins meanwhile.
  std::unique_ptr<SnapshotJob> committing_;
  // committing_'s file is durable and its marker waits for the log's
  // worker to be free (marker_due_), or is being written there (marking_:
  // the worker's one write in flight, as persisting_ otherwise).
  bool marker_due_ = false;
  bool marking_ = false;
  uint64_t snap_seq_ = 0;      // jobs begun; names their completions
  int snapshot_abandons_ = 0;  // in a row; then one is written at once
  // SnapshotInSteps requests not yet answered, and the snapshots they keep.
  // The job under way (if any) began at or after every one of them.
  std::vector<std::function<void(absl::Status)>> snap_waiters_;
  size_t snap_waiters_keep_ = 2;
  void AnswerSnapshotWaiters(const absl::Status& s);
  std::unique_ptr<ImageJob> image_job_;
  int image_abandons_ = 0;  // in a row; then one is built at once
  std::map<uint64_t, ImageSent> images_sent_;  // by follower
  SnapshotStats snap_stats_;
  raft::ConfState conf_state_;
  ForcedRestart forced_;
  int ticks_ = 0;
  uint64_t next_request_id_ = 1;
  std::deque<AwaitingLeader> awaiting_leader_;  // oldest first
  std::map<uint64_t, Waiter> proposals_;   // by request id
  // By ReadIndex context: the reads of one held batch share one.
  std::multimap<std::string, ReadWaiter> reads_;
  // Arrived during HoldReady or while a round was out.
  std::vector<ReadWaiter> held_reads_;
  // The read index round out (see read_round_patience_ticks): its context
  // ("" when none) and the tick it left on.
  std::string read_round_ctx_;
  int read_round_tick_ = 0;
  bool ReadRoundOut() const {
    return !read_round_ctx_.empty() &&
           ticks_ - read_round_tick_ <= opts_.read_round_patience_ticks;
  }
  // Sends the held reads in one round unless a round is out.
  void IssueHeldReads();
  ReadIndexCounters read_index_counters_;
  std::multimap<uint64_t, ReadWaiter> ready_reads_;  // by read index
};

}  // namespace detcd::server

#endif  // DETCD_ENGINE_SERVER_NODE_H_
