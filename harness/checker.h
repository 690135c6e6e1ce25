// Safety checkers that watch a simulated cluster as it runs (LogCabin's
// RaftConsensusInvariants, TigerBeetle's state_checker): they see every
// apply, restore and send through NodeObserver, and the cluster calls
// AfterEvent() for the node that just handled an event.
//
// Checked:
//  - election safety: at most one leader per term, ever, and at most one
//    vote granted per (node, term), across restarts;
//  - leader completeness: a new leader's log holds every entry any node has
//    applied;
//  - state-machine safety: all nodes apply the same entry at each index and
//    reach the same state hash there (also after restoring a snapshot);
//  - Ready ordering: no message leaves before the state it depends on
//    (term, vote, acknowledged entries: index and term) is durable, as read
//    off the node's disk (what a crash that lost every unsynced byte would
//    leave, under the WAL's recovery rules), not as the WAL reports it;
//  - log matching (at the end): two logs that agree on (index, term) agree
//    on everything before it;
//  - durability (at the end): every acknowledged write is applied, at the
//    same index, on every live node.
#ifndef DETCD_HARNESS_CHECKER_H_
#define DETCD_HARNESS_CHECKER_H_

#include <cstdint>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "engine/raft/raft.h"
#include "engine/server/node.h"
#include "sim/sim_disk.h"

namespace detcd::harness {

class SafetyChecker : public server::NodeObserver {
 public:
  // Returns the state-machine hash of a node (after its latest apply).
  using HashFn = std::function<uint64_t(uint64_t node)>;
  explicit SafetyChecker(HashFn hash) : hash_(std::move(hash)) {}

  void OnApply(uint64_t node, const raft::Entry& e) override;
  void OnRestore(uint64_t node, const raft::SnapshotMetadata& m) override;
  // `reported` (the WAL's own account) is used only when no durable source
  // is set.
  void OnSend(uint64_t node, const raft::Message& m,
              const wal::DurableState& reported) override;

  // Where the Ready-ordering check learns what is durable: each node's
  // simulated disk (its stable image), the WAL's directory on it, and the
  // node itself (its log, for the term of an acknowledged entry).
  using DiskFn = std::function<const sim::SimDisk*(uint64_t node)>;
  using NodeFn = std::function<const server::Node*(uint64_t node)>;
  void set_durable_source(DiskFn disk, NodeFn node, std::string wal_dir) {
    disk_fn_ = std::move(disk);
    node_fn_ = std::move(node);
    wal_dir_ = std::move(wal_dir);
  }

  // The first application of each index anywhere (all nodes must apply
  // the same entry there, which OnApply checks): the feed of the
  // independent KV model (kv_model.h), in index order.
  using EntryFn = std::function<void(const raft::Entry&)>;
  void set_on_first_apply(EntryFn f) { on_first_apply_ = std::move(f); }
  // Checks a node's state right after it restored a snapshot (installed
  // from the leader or loaded at restart) against an independent replay of
  // the committed log; returns "" if it matches, else what differs (a
  // safety violation).
  using RestoreCheckFn =
      std::function<std::string(uint64_t node, const raft::SnapshotMetadata&)>;
  void set_restore_check(RestoreCheckFn f) { restore_check_ = std::move(f); }

  // After node handled an event (tick, message, request, start).
  void AfterEvent(const server::Node& node);
  // A client's write was acknowledged; `command` is unique per write.
  void OnAcknowledged(const std::string& command) { acked_.push_back(command); }

  void CheckLogMatching(const std::vector<const server::Node*>& nodes);
  void CheckDurability(const std::vector<const server::Node*>& live);

  // Raft's coverage counters (raft::Coverage) summed over every node and
  // every incarnation of it, as seen after each event.
  const raft::Coverage& coverage() const { return coverage_; }

  bool ok() const { return violations_.empty(); }
  const std::vector<std::string>& violations() const { return violations_; }
  uint64_t applied_entries() const { return global_.size() - 1; }
  uint64_t leaders_elected() const { return leaders_.size(); }

 private:
  struct Applied {
    bool known = false;
    uint64_t term = 0;
    uint64_t data_hash = 0;
    uint64_t state_hash = 0;
  };
  // What a node's WAL would recover after a crash that lost everything
  // unsynced, read from its disk's stable image; brought up to date
  // incrementally (only bytes synced since the last look are parsed).
  struct DurableWal {
    struct Segment {
      std::string name;
      uint64_t inode = 0;
      uint64_t rewrites = 0;
      size_t parsed = 0;  // bytes read; a bad record stops the log there
      size_t size = 0;    // the segment's size when it was read
    };
    uint64_t version = ~uint64_t{0};  // SimDisk::durable_version() read
    std::vector<Segment> segments;
    raft::HardState hard_state;
    std::vector<uint64_t> terms;  // [i]: term of durable entry i, 0 if none
    uint64_t snapshot_index = 0;  // the newest snapshot marker
    uint64_t snapshot_term = 0;
    uint64_t TermAt(uint64_t i) const {
      return i < terms.size() ? terms[i] : 0;
    }
    uint64_t LastIndex() const {
      return std::max<uint64_t>(terms.empty() ? 0 : terms.size() - 1,
                                snapshot_index);
    }
  };
  const DurableWal* Durable(uint64_t node);
  static void UpdateDurable(const sim::SimDisk& disk, const std::string& dir,
                            DurableWal* w);
  void Violation(std::string what);
  void CheckLeaderCompleteness(const server::Node& node);

  // The commit rule (Raft §5.4.2), checked whenever a leader's commit
  // index moves: the entry it moves to has the leader's term, and a quorum
  // of the configuration (as before or after this event: a conf change may
  // apply in the event that commits it) holds it durably, read off their
  // disks (Durable()).
  void CheckCommitRule(const server::Node& node);
  bool QuorumStores(const std::vector<uint64_t>& voters, uint64_t index,
                    uint64_t term);
  // Adds what a node's raft counted since the last look to coverage_.
  void NoteCoverage(const server::Node& node);
  // Membership, replayed by the checker from the conf changes as they are
  // first applied (raft's rules for each change type). Changes made
  // through the Cluster API carry etcd's member context and the state
  // machine refuses some when they apply; the checker decides that on its
  // own, from etcd's ValidateConfigurationChange rules (EtcdRefuses) over
  // its own replay of ids, peer URLs and removed ids, so a member that
  // refuses differently shows as a difference here. The founding AddNode
  // entries (term 1, indexes 1..n) make the founders voters from index 0,
  // as raft's initial membership does.
  void TrackMembership(const raft::Entry& e);
  struct MemberFacts {
    std::vector<std::string> peer_urls;
    bool learner = false;
  };
  // Whether etcd refuses `cc` (an etcd-layer change: its context decodes
  // as one) given the members so far; applies it to members_ otherwise.
  bool EtcdRefuses(const raft::ConfChange& cc);
  const raft::ConfState& MembershipAt(uint64_t index) const;
  // A node's membership at `index` (restored, or after an event) must be
  // the replayed one.
  void CheckMembership(uint64_t node, uint64_t index,
                       const raft::ConfState& cs, const char* what);

  HashFn hash_;
  EntryFn on_first_apply_;
  RestoreCheckFn restore_check_;
  std::vector<Applied> global_{Applied{true, 0, 0, 0}};  // by raft index
  // [i]: the lowest term whose leader counted index i committed (0: no
  // leader was seen committing it). Leader completeness (Raft 5.4.3) binds
  // the leaders of LATER terms only: a candidate that won term T while
  // paused, and took leadership after a leader of term T' > T committed
  // more, rightly lacks what term T' committed.
  std::vector<uint64_t> commit_term_;
  std::map<std::string, uint64_t> index_of_command_;
  std::vector<std::string> acked_;
  std::map<uint64_t, uint64_t> leaders_;  // term -> leader
  std::map<std::pair<uint64_t, uint64_t>, uint64_t> votes_;  // (node, term)
  std::map<uint64_t, uint64_t> last_leader_term_;  // node -> term it led
  std::vector<std::string> violations_;
  DiskFn disk_fn_;
  NodeFn node_fn_;
  std::string wal_dir_;
  std::map<uint64_t, DurableWal> durable_;  // by node

  struct LeaderView {
    uint64_t term = 0;
    uint64_t commit = 0;
    std::vector<uint64_t> voters;
  };
  std::map<uint64_t, LeaderView> leader_view_;  // by node, while it leads
  std::vector<raft::Coverage> coverage_seen_;  // by node id (small)
  std::vector<uint64_t> membership_checked_;  // by node id: applied index
  raft::Coverage coverage_;
  // Index of each applied conf change -> the membership after it.
  std::map<uint64_t, raft::ConfState> membership_{{0, raft::ConfState{}}};
  // The first index past the founding entries (0 until one was applied):
  // memberships below it are not checked.
  uint64_t founding_end_ = 0;
  // The etcd layer's view (EtcdRefuses): members by id, and removed ids.
  std::map<uint64_t, MemberFacts> members_;
  std::set<uint64_t> removed_;
};

}  // namespace detcd::harness

#endif  // DETCD_HARNESS_CHECKER_H_
