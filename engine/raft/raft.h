// Raft consensus as a pure state machine (etcd-io/raft's raft.go + rawnode.go
// in one value type, our own code).
//
// Inputs:  Step(msg)     a message from a peer (or a local message)
//          Tick()        one logical tick; the owner converts clock time
//          Propose(data) / ProposeConfChange(cc) / ReadIndex(ctx) /
//          TransferLeader(id) / Campaign()
// Outputs: Ready, a batch of work for the owner. Nothing here does I/O:
//          "sending" a message appends it to an outbox that Ready hands out.
//
// THE READY CONTRACT. The owner loops:
//
//   if (raft.HasReady()) {
//     Ready rd = raft.GetReady();
//     0. Send rd.early_messages: they may leave at once, before step 2
//        (sending them after it is correct too, only slower).
//     1. If rd.snapshot is set, persist it (and install it in Storage).
//     2. Persist rd.entries (appending, truncating any conflicting suffix)
//        and rd.hard_state if set. If rd.must_sync, fsync before step 3.
//     3. Send rd.messages. Every one of them may depend on step 2 (a vote
//        granted, an append acknowledged), so none may leave before the
//        state it reflects is durable.
//     4. Apply rd.committed_entries in order. For a kConfChange entry, call
//        ApplyConfChange(cc) (whether or not the owner accepts it, every
//        committed conf change must be applied). Serve rd.read_states once
//        the applied index reaches their index. Committed entries that were
//        in stable storage before this Ready (not in rd.entries) need
//        nothing from step 2: they may be applied while it runs.
//     5. raft.Advance(rd): tells raft that rd was persisted (see
//        OnPersisted) and applied.
//   }
//
// GetReady() may be called again only after Advance(). Between the two the
// owner may go on stepping raft (Step, Tick, Propose, ...) while the write
// of step 2 is under way, and may take the early messages those inputs
// produce at any time (TakeEarlyMessages); everything else they produce
// waits for the next Ready. Committed entries are always already in stable
// storage or in rd.entries of the same Ready (the owner persists before it
// applies), so a crash never applies an entry that is not durable locally.
//
// THE LEADER WRITES IN PARALLEL WITH REPLICATING (Raft thesis §10.2.1). A
// leader's appends and heartbeats claim nothing about its own disk, so they
// are early messages: the leader's fsync and its followers' run at once,
// and a commit costs one fsync of latency, not two in series. What makes
// that safe is that the leader counts ITSELF toward a quorum only through
// OnPersisted (as etcd raft's MsgStorageAppendResp), never when it appends.
// If it counted its unsynced entries at once (as it may when nothing leaves
// before the sync), one follower's ack would make a quorum of 3 out of a
// single durable copy: the commit index would leak to the followers on the
// next append or heartbeat, they would apply the entry, the leader's
// client would be answered, and a crash of the leader before its fsync
// would lose the entry from its disk; the follower that acked it could
// then fail too or be outvoted by the leader and the third member, whose
// logs lack it, and a new leader would overwrite a committed, applied
// entry. Counting only what is durable keeps the quorum rule of §5.4 on
// durable copies. Early messages also leave only while the sender's term is
// durable (a kApp of a term the sender could forget in a crash would let it
// lead that term twice with different entries); votes, vote and append
// responses, snapshots and everything else wait for the sync as before.
//
// Membership changes take effect when applied (ApplyConfChange), one at a
// time: a leader accepts a new conf change only after the previous one is
// applied, and only after it has committed an entry of its own term (which
// closes the single-server-change hazard described on raft-dev in 2015).
#ifndef DETCD_ENGINE_RAFT_RAFT_H_
#define DETCD_ENGINE_RAFT_RAFT_H_

#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "engine/env/env.h"
#include "engine/raft/log.h"
#include "engine/raft/progress.h"
#include "engine/raft/storage.h"
#include "engine/raft/types.h"
#include "engine/util/buggify.h"
#include "engine/util/planted.h"

namespace detcd::raft {

// Limits and timing. Validate() rejects a configuration that cannot work.
struct Config {
  NodeId id = kNone;
  // Ticks without hearing from a leader before a follower campaigns. The
  // actual timeout is drawn uniformly from [election_tick, 2*election_tick)
  // by the Rng each time the node resets its timer.
  int election_tick = 10;
  int heartbeat_tick = 1;  // must be < election_tick
  Storage* storage = nullptr;
  env::Rng* rng = nullptr;
  // Index of the last applied entry (on restart, what the state machine
  // already holds).
  uint64_t applied = 0;
  // Flow control.
  uint64_t max_size_per_msg = 1 << 20;           // bytes of entries per kApp
  uint64_t max_committed_size_per_ready = 8 << 20;  // bytes per Ready
  uint64_t max_uncommitted_entries_size = 64 << 20;  // leader: bytes not yet
                                                     // committed (0 = off)
  int max_inflight_msgs = 256;  // kApp messages in flight per follower
  uint64_t max_inflight_bytes = 0;  // 0 = no byte limit on inflight kApp
  // Nagle's rule for appends. While an append to a replicating follower is
  // unacknowledged, fewer than this many new entries wait for its answer
  // instead of leaving in an append of their own; the answer (it comes
  // after the follower's fsync) sends them together, with the commit
  // index. Under load a follower then gets one append per round trip
  // rather than one per leader batch, and every member does less per
  // entry (fewer messages, fewer wake-ups, fewer and larger fsyncs). A
  // follower that is idle, a backlog of at least this many entries, probes
  // and snapshots are not held; a heartbeat's answer sends what is held,
  // so a lost append delays the rest by a heartbeat at most. 0: never held
  // (etcd's raft).
  uint64_t hold_small_appends = 0;
  // Ask a quorum before campaigning, so a partitioned node rejoining does
  // not depose a healthy leader (thesis §9.6).
  bool pre_vote = true;
  // A leader steps down when it has not heard from a quorum within an
  // election timeout; followers ignore vote requests while they believe a
  // leader is alive.
  bool check_quorum = true;
  // A learner may be promoted only when its match index is within this many
  // entries of the leader's last index.
  uint64_t max_learner_lag = 1000;
  // Planted bugs for the simulator's checker tests; all false in production.
  planted::Bugs bugs;  // engine/util/planted.h
  // BUGGIFY fault points (engine/util/buggify.h); null (off) in production.
  buggify::Buggify* buggify = nullptr;

  absl::Status Validate() const;
  // The checks of Validate() that do not need storage and rng (timing and
  // limits), for an owner validating its options before it has either.
  absl::Status ValidateLimits() const;
};

enum class StateType : uint8_t {
  kFollower,
  kCandidate,
  kLeader,
  kPreCandidate,
};
const char* StateTypeName(StateType s);

struct SoftState {
  NodeId lead = kNone;
  StateType state = StateType::kFollower;
  bool operator==(const SoftState&) const = default;
};

// The result of a ReadIndex: once the applied index reaches `index`, a read
// issued with `context` may be served from local state linearizably.
struct ReadState {
  uint64_t index = 0;
  std::string context;
  bool operator==(const ReadState&) const = default;
};

struct Ready {
  std::optional<SoftState> soft_state;  // set when changed
  std::optional<HardState> hard_state;  // set when changed; persist it
  std::vector<ReadState> read_states;
  std::vector<Entry> entries;  // persist before sending messages
  // Persist before entries. Shared with raft's log until it is stable (a
  // whole store's image is not copied).
  std::shared_ptr<const Snapshot> snapshot;
  std::vector<Entry> committed_entries;  // apply after persisting
  std::vector<Message> messages;  // send after persisting
  // May be sent before persisting: a leader's kApp and kHeartbeat of a
  // term that is already durable (see the header comment).
  std::vector<Message> early_messages;
  bool must_sync = false;  // fsync required before sending messages
};

// A read-only view of the replication state, for status and for the owner's
// decisions (e.g. whether a learner is caught up).
struct Status {
  NodeId id = kNone;
  HardState hard_state;
  SoftState soft_state;
  uint64_t applied = 0;
  NodeId lead_transferee = kNone;
  ConfState conf_state;
  std::map<NodeId, Progress> progress;  // leader only
};

// How often the subtle rules of Raft had something to decide, so a
// simulation sweep can tell whether it exercised them at all (a sweep in
// which they never fire proves nothing about them). Counting only; no
// behaviour depends on these.
struct Coverage {
  // Leader: the index a quorum has stored held an entry of an earlier term
  // beyond the commit index, which the leader must not commit by counting
  // replicas (Raft §5.4.2, Figure 8).
  uint64_t old_term_quorum = 0;
  // Follower: after an accepted append, the log goes on beyond the last
  // entry the append carried (a stale append, or a tail of an old term
  // that must not be cut off unless it conflicts, and must not be
  // acknowledged).
  uint64_t follower_tail_beyond_append = 0;
  // A vote granted to a candidate whose last log term is older than the
  // term the voter was in: the log comparison of §5.4.1 decided it.
  uint64_t vote_for_older_last_term = 0;
};

// Returned when a proposal cannot be accepted now (no leader, leadership
// transfer in progress, too many uncommitted bytes, a conf change already
// pending, ...). The caller may retry.
absl::Status ErrProposalDropped(std::string_view why = "");

class Raft {
 public:
  // CHECK-fails on an invalid config; validate with Config::Validate first.
  explicit Raft(const Config& c);

  // Inputs.
  absl::Status Step(Message m);
  void Tick();
  absl::Status Campaign();
  absl::Status Propose(std::string data);
  absl::Status ProposeConfChange(const ConfChange& cc);
  // Requests a read index; the result arrives as a ReadState carrying ctx.
  // ctx must be non-empty and unique among pending requests.
  absl::Status ReadIndex(std::string ctx);
  void TransferLeader(NodeId transferee);
  void ReportUnreachable(NodeId id);
  void ReportSnapshot(NodeId id, bool failed);
  // Applies a committed conf change; returns the new membership.
  ConfState ApplyConfChange(const ConfChange& cc);

  // Outputs.
  bool HasReady() const;
  Ready GetReady();
  // rd was persisted and applied: OnPersisted for its last entry (and its
  // hard state), then the applied index.
  void Advance(const Ready& rd);
  // The owner's log is durable up to (index, term): every entry up to
  // index that raft handed out in a Ready, the one at index having term
  // `term`. Ignored if raft's log no longer has that entry (it was
  // replaced meanwhile). The only way a leader's own progress (its vote
  // in the commit quorum) moves.
  void OnPersisted(uint64_t index, uint64_t term);
  // The early messages produced since the last GetReady (see the header
  // comment); the owner may send them before the pending write ends.
  std::vector<Message> TakeEarlyMessages();

  // Introspection.
  Status GetStatus() const;
  const Config& config() const { return cfg_; }
  NodeId id() const { return id_; }
  uint64_t term() const { return term_; }
  NodeId vote() const { return vote_; }
  NodeId lead() const { return lead_; }
  StateType state() const { return state_; }
  bool is_learner() const { return is_learner_; }
  const RaftLog& log() const { return log_; }
  const ProgressTracker& tracker() const { return tracker_; }
  HardState hard_state() const { return {term_, vote_, log_.committed()}; }
  SoftState soft_state() const { return {lead_, state_}; }
  NodeId lead_transferee() const { return lead_transferee_; }
  const Coverage& coverage() const { return coverage_; }
  int randomized_election_timeout() const {
    return randomized_election_timeout_;
  }
  // Test hooks.
  void set_randomized_election_timeout(int t) {
    randomized_election_timeout_ = t;
  }
  // Messages produced since the last GetReady (early ones first), without
  // consuming them.
  std::vector<Message> pending_messages() const;
  std::vector<Message> TakeMessages();
  // The end of the log prefix the owner has reported durable (everything
  // before the unstable tail).
  uint64_t persisted_index() const { return log_.StableLastIndex(); }

 private:
  absl::Status StepLeader(Message& m);
  absl::Status StepCandidate(Message& m);
  absl::Status StepFollower(Message& m);

  void BecomeFollower(uint64_t term, NodeId lead);
  void BecomeCandidate();
  void BecomePreCandidate();
  void BecomeLeader();
  void Reset(uint64_t term);
  void ResetRandomizedElectionTimeout();

  void TickElection();
  void TickHeartbeat();
  bool PastElectionTimeout() const;
  bool Promotable() const;

  void Hup(bool transfer);
  void StartCampaign(bool pre_vote, bool transfer);
  // Records a vote and returns where the election stands.
  enum class VoteResult { kPending, kWon, kLost };
  VoteResult Poll(NodeId id, MessageType t, bool granted);

  void Send(Message m);
  // may_hold: Config::hold_small_appends applies.
  bool MaybeSendAppend(NodeId to, bool send_if_empty, bool may_hold = true);
  void SendAppend(NodeId to) { MaybeSendAppend(to, true); }
  void SendHeartbeat(NodeId to, const std::string& ctx);
  void BroadcastAppend();
  void BroadcastHeartbeat();
  void BroadcastHeartbeatWithContext(const std::string& ctx);
  void SendTimeoutNow(NodeId to);

  bool AppendEntries(std::vector<Entry> es);
  bool MaybeCommit();
  void HandleAppendEntries(const Message& m);
  void HandleHeartbeat(const Message& m);
  void HandleSnapshot(const Message& m);
  bool Restore(const std::shared_ptr<const Snapshot>& s);
  void HandleAppendResponse(Message& m, Progress& pr);
  void HandleHeartbeatResponse(Message& m, Progress& pr);
  void HandleReadIndexRequest(Message& m);
  void HandleTransferLeader(Message& m, Progress& pr);
  bool CommittedEntryInCurrentTerm() const;
  // Hands a released read index to its requester (local or remote).
  void RespondToReadIndex(const Message& req, uint64_t read_index);
  void ReleasePendingReadIndexMessages();
  void AbortLeaderTransfer() { lead_transferee_ = kNone; }
  bool IncreaseUncommittedSize(const std::vector<Entry>& es);
  void ReduceUncommittedSize(uint64_t size);
  void LoadState(const HardState& hs);
  void ApplyConfState(const ConfState& cs);

  NodeId id_;
  Config cfg_;
  env::Rng* rng_;

  uint64_t term_ = 0;
  NodeId vote_ = kNone;
  RaftLog log_;
  ProgressTracker tracker_;
  StateType state_ = StateType::kFollower;
  bool is_learner_ = false;
  NodeId lead_ = kNone;
  NodeId lead_transferee_ = kNone;
  // Index of the latest conf change the leader appended; a new one is
  // refused until applied >= this.
  uint64_t pending_conf_index_ = 0;
  uint64_t uncommitted_size_ = 0;

  ReadOnly read_only_;
  // ReadIndex requests held until the leader commits an entry of its term.
  std::vector<Message> pending_read_index_messages_;

  std::vector<Message> msgs_;        // wait for the persist of their Ready
  std::vector<Message> early_msgs_;  // may leave before it
  std::vector<ReadState> read_states_;
  // The term of the hard state the owner reported durable: early messages
  // leave only while term_ == persisted_term_.
  uint64_t persisted_term_ = 0;

  int election_elapsed_ = 0;
  int heartbeat_elapsed_ = 0;
  int randomized_election_timeout_ = 0;

  // Ready bookkeeping.
  SoftState prev_soft_state_;
  HardState prev_hard_state_;
  uint64_t applying_bytes_ = 0;

  Coverage coverage_;
};

}  // namespace detcd::raft

#endif  // DETCD_ENGINE_RAFT_RAFT_H_
