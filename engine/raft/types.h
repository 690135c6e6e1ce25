// Raft's data types: log entries, persistent state, snapshots, membership and
// messages. Plain value types with no I/O; the WAL and the peer transport
// encode them (see codec.h).
#ifndef DETCD_ENGINE_RAFT_TYPES_H_
#define DETCD_ENGINE_RAFT_TYPES_H_

#include <algorithm>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace detcd::raft {

using NodeId = uint64_t;
inline constexpr NodeId kNone = 0;  // no node (no leader, no vote)

enum class EntryType : uint8_t {
  kNormal = 0,
  kConfChange = 1,  // data holds an encoded ConfChange
};

// An entry's payload: immutable and shared, so the copies of an entry that
// raft's log, its Readys, the storage and the WAL writer hold cost a
// reference count instead of a copy of the bytes (a 1 MiB value was copied
// about five times on its way through raft). Reads as a string_view.
class EntryData {
 public:
  EntryData() = default;
  EntryData(std::string s)  // NOLINT: implicit, as the std::string it was
      : p_(s.empty() ? nullptr
                     : std::make_shared<const std::string>(std::move(s))) {}
  EntryData(std::string_view s) : EntryData(std::string(s)) {}  // NOLINT
  EntryData(const char* s) : EntryData(std::string(s)) {}       // NOLINT

  std::string_view view() const {
    return p_ ? std::string_view(*p_) : std::string_view();
  }
  operator std::string_view() const { return view(); }  // NOLINT
  const char* data() const { return view().data(); }
  size_t size() const { return p_ ? p_->size() : 0; }
  bool empty() const { return size() == 0; }
  std::string str() const { return std::string(view()); }

  friend bool operator==(const EntryData& a, const EntryData& b) {
    return a.view() == b.view();
  }
  friend bool operator==(const EntryData& a, std::string_view b) {
    return a.view() == b;
  }
  friend bool operator==(const EntryData& a, const std::string& b) {
    return a.view() == b;
  }
  friend bool operator==(const EntryData& a, const char* b) {
    return a.view() == std::string_view(b);
  }

 private:
  std::shared_ptr<const std::string> p_;
};

struct Entry {
  uint64_t term = 0;
  uint64_t index = 0;
  EntryType type = EntryType::kNormal;
  EntryData data;

  bool operator==(const Entry&) const = default;
};

// The state Raft must persist before it answers anything (Figure 2): the
// current term, the vote in it, and the commit index (persisted so a restart
// does not re-apply; losing it is safe, it only slows recovery).
struct HardState {
  uint64_t term = 0;
  NodeId vote = kNone;
  uint64_t commit = 0;

  bool operator==(const HardState&) const = default;
  bool IsEmpty() const { return term == 0 && vote == kNone && commit == 0; }
};

// The membership. Both lists are sorted and disjoint.
struct ConfState {
  std::vector<NodeId> voters;
  std::vector<NodeId> learners;

  // Whether id is a member (voter or learner). The lists are short, and
  // not every producer keeps them sorted, so this scans.
  bool Contains(NodeId id) const {
    return std::find(voters.begin(), voters.end(), id) != voters.end() ||
           std::find(learners.begin(), learners.end(), id) != learners.end();
  }

  bool operator==(const ConfState&) const = default;
};

struct SnapshotMetadata {
  ConfState conf_state;
  uint64_t index = 0;
  uint64_t term = 0;

  bool operator==(const SnapshotMetadata&) const = default;
};

struct Snapshot {
  std::string data;  // the state machine's image, opaque to Raft
  SnapshotMetadata metadata;

  bool IsEmpty() const { return metadata.index == 0; }
  bool operator==(const Snapshot&) const = default;
};

// One membership change at a time (Raft thesis §4.1, single-server changes).
enum class ConfChangeType : uint8_t {
  kAddNode = 0,         // add a voter, or promote a learner to voter
  kRemoveNode = 1,      // remove a voter or a learner
  kAddLearnerNode = 2,  // add a learner (a voter cannot be demoted)
  // Raft's membership stays as it is; only the context changes something
  // (etcd's ConfChangeUpdateNode: a member's new peer URLs).
  kUpdateNode = 3,
};

struct ConfChange {
  ConfChangeType type = ConfChangeType::kAddNode;
  NodeId node_id = kNone;
  std::string context;  // opaque to Raft (e.g. the member's peer URLs)

  bool operator==(const ConfChange&) const = default;
};

std::string EncodeConfChange(const ConfChange& cc);
// Returns false if data is not a valid encoding.
bool DecodeConfChange(std::string_view data, ConfChange* cc);

enum class MessageType : uint8_t {
  // Local messages: never sent over the network.
  kHup = 0,   // start an election
  kBeat = 1,  // leader: send heartbeats
  kProp = 2,  // propose entries (forwarded to the leader by followers)
  // Network messages.
  kApp = 3,
  kAppResp = 4,
  kVote = 5,
  kVoteResp = 6,
  kSnap = 7,
  kHeartbeat = 8,
  kHeartbeatResp = 9,
  kUnreachable = 10,   // local: the transport could not reach `from`
  kSnapStatus = 11,    // local: outcome of sending a snapshot to `from`
  kCheckQuorum = 12,   // local
  kTransferLeader = 13,
  kTimeoutNow = 14,
  kReadIndex = 15,
  kReadIndexResp = 16,
  kPreVote = 17,
  kPreVoteResp = 18,
};

const char* MessageTypeName(MessageType t);
bool IsLocalMessage(MessageType t);
bool IsResponseMessage(MessageType t);

struct Message {
  MessageType type = MessageType::kHup;
  NodeId to = kNone;
  NodeId from = kNone;
  uint64_t term = 0;
  // kApp: term and index of the entry preceding `entries`.
  // kVote/kPreVote: term and index of the candidate's last entry.
  // kAppResp (reject): term of the follower's entry at reject_hint.
  uint64_t log_term = 0;
  uint64_t index = 0;
  std::vector<Entry> entries;
  uint64_t commit = 0;
  // kSnap carries a snapshot; shared because snapshots can be large and a
  // message is copied on its way through the outbox.
  std::shared_ptr<const Snapshot> snapshot;
  bool reject = false;
  uint64_t reject_hint = 0;
  // kReadIndex / kHeartbeat: the request context of a ReadIndex;
  // kVote / kPreVote: "transfer" when the campaign is a leader transfer.
  std::string context;
};

// Size of an entry as counted against byte limits.
inline uint64_t EntrySize(const Entry& e) { return e.data.size() + 16; }
uint64_t EntriesSize(const std::vector<Entry>& entries);

}  // namespace detcd::raft

#endif  // DETCD_ENGINE_RAFT_TYPES_H_
