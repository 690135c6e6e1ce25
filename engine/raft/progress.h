// The leader's view of each follower's log (etcd raft's tracker package):
// replication state, flow control, votes and pending ReadIndex requests.
#ifndef DETCD_ENGINE_RAFT_PROGRESS_H_
#define DETCD_ENGINE_RAFT_PROGRESS_H_

#include <cstdint>
#include <deque>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "engine/raft/types.h"

namespace detcd::raft {

// A bounded window of in-flight kApp messages to one follower, each
// remembered by the last index it carried and its payload bytes. Full()
// stops sending until acknowledgements free slots.
class Inflights {
 public:
  Inflights(int max_count, uint64_t max_bytes)
      : max_count_(max_count), max_bytes_(max_bytes) {}
  void Add(uint64_t index, uint64_t bytes);
  // Frees every message whose last index is <= to.
  void FreeLE(uint64_t to);
  bool Full() const;
  int Count() const { return static_cast<int>(q_.size()); }
  uint64_t bytes() const { return bytes_; }
  void Reset() {
    q_.clear();
    bytes_ = 0;
  }

 private:
  struct Item {
    uint64_t index;
    uint64_t bytes;
  };
  int max_count_;
  uint64_t max_bytes_;  // 0 = unlimited
  std::deque<Item> q_;
  uint64_t bytes_ = 0;
};

enum class ProgressState : uint8_t {
  // Send one kApp per heartbeat interval until the follower's position is
  // known (after election, rejection or unreachability).
  kProbe,
  // Stream entries optimistically, bounded by Inflights.
  kReplicate,
  // A snapshot is on its way; send nothing until it is reported.
  kSnapshot,
};
const char* ProgressStateName(ProgressState s);

struct Progress {
  Progress(int max_inflight, uint64_t max_inflight_bytes)
      : inflights(max_inflight, max_inflight_bytes) {}

  uint64_t match = 0;  // highest index known replicated on the follower
  uint64_t next = 1;   // next index to send
  ProgressState state = ProgressState::kProbe;
  // kSnapshot: the index of the snapshot being sent.
  uint64_t pending_snapshot = 0;
  // Heard from since the last check-quorum round.
  bool recent_active = false;
  // kProbe: a kApp was sent and not answered within a heartbeat interval.
  bool msg_app_flow_paused = false;
  // kReplicate: an append (entries or a commit index) was held back under
  // Config::hold_small_appends; the next acknowledgement sends it.
  bool append_held = false;
  Inflights inflights;
  bool is_learner = false;

  void ResetState(ProgressState s);
  void BecomeProbe();
  void BecomeReplicate();
  void BecomeSnapshot(uint64_t snapshot_index);
  // Accounts for a kApp carrying `entries` entries (`bytes` payload) just
  // sent; in replicate state the send is optimistic.
  void SentEntries(int entries, uint64_t bytes);
  // Called on a successful kAppResp for index n. Returns false if stale.
  bool MaybeUpdate(uint64_t n);
  // Called on a rejection of the kApp at `rejected`; `match_hint` is the
  // follower's best guess of a matching index. Returns false if stale.
  bool MaybeDecrTo(uint64_t rejected, uint64_t match_hint);
  bool IsPaused() const;
};

// Vote tallies, membership and replication progress of every member.
class ProgressTracker {
 public:
  ProgressTracker(int max_inflight, uint64_t max_inflight_bytes)
      : max_inflight_(max_inflight), max_inflight_bytes_(max_inflight_bytes) {}

  // Membership.
  const std::set<NodeId>& voters() const { return voters_; }
  const std::set<NodeId>& learners() const { return learners_; }
  ConfState GetConfState() const;
  bool IsVoter(NodeId id) const { return voters_.count(id) > 0; }
  bool IsMember(NodeId id) const { return progress_.count(id) > 0; }
  bool IsSingleton() const { return voters_.size() == 1; }
  int Quorum() const { return static_cast<int>(voters_.size()) / 2 + 1; }
  void AddVoter(NodeId id, uint64_t next);
  void AddLearner(NodeId id, uint64_t next);
  void Remove(NodeId id);

  Progress* Get(NodeId id);
  const Progress* Get(NodeId id) const;
  std::map<NodeId, Progress>& progress() { return progress_; }
  const std::map<NodeId, Progress>& progress() const { return progress_; }
  void ResetProgress(uint64_t last_index, NodeId self);

  // The largest index replicated on a quorum of voters.
  uint64_t Committed() const;
  // True if a quorum of voters was recently active (then clears the flags,
  // leaving only `self` active).
  bool QuorumActive() const;
  void ResetRecentActive(NodeId self);

  // Votes.
  void ResetVotes() { votes_.clear(); }
  void RecordVote(NodeId id, bool granted);
  // Granted, rejected, and whether the election is won, lost or pending.
  enum class VoteOutcome { kPending, kWon, kLost };
  VoteOutcome TallyVotes(int* granted, int* rejected) const;

 private:
  int max_inflight_;
  uint64_t max_inflight_bytes_;
  std::set<NodeId> voters_;
  std::set<NodeId> learners_;
  std::map<NodeId, Progress> progress_;
  std::map<NodeId, bool> votes_;
};

// Pending ReadIndex requests on the leader (Raft thesis §6.4): each is
// released once a quorum acknowledges a heartbeat carrying its context,
// which proves the leader was still the leader when the read index was
// taken.
class ReadOnly {
 public:
  struct Status {
    Message req;
    uint64_t index = 0;
    std::set<NodeId> acks;
  };
  void AddRequest(uint64_t index, Message m);
  // Records an ack; returns the acks so far for ctx, or nullptr if unknown.
  const std::set<NodeId>* RecvAck(NodeId id, const std::string& ctx);
  // Releases every request up to and including ctx, in order.
  std::vector<Status> Advance(const std::string& ctx);
  std::string LastPendingRequestCtx() const;
  bool empty() const { return queue_.empty(); }
  void Clear() {
    pending_.clear();
    queue_.clear();
  }

 private:
  std::map<std::string, Status> pending_;
  std::deque<std::string> queue_;
};

}  // namespace detcd::raft

#endif  // DETCD_ENGINE_RAFT_PROGRESS_H_
