// An independent model of the replicated KV state, for the checkers.
//
// It replays the committed raft log (each index's entry as first applied
// anywhere: SafetyChecker::set_on_first_apply) and keeps, in the plainest
// form that is obviously right, what those entries must have done: for
// every key the list of all its versions (puts and tombstones), the
// revision and compact revision after every raft index, the events of
// every revision, and the leases. It shares no code with engine/mvcc or
// the apply layer (etcd_kv.cc, etcd_state_machine.cc); it only decodes
// the entries the way the state machine receives them (the Node's
// envelope, then an etcdserverpb.InternalRaftRequest) and implements
// etcd's semantics itself:
//
//  - put / delete_range / txn (compares evaluated on the state before the
//    txn, nested txns, ignore_value / ignore_lease, leases attached and
//    detached), compaction (ErrCompacted / ErrFutureRev leave it
//    unchanged), lease grant / revoke (the lease's keys deleted in one
//    revision, in key order); a request that fails changes nothing;
//  - a request id applied once (the state machine skips repeats among the
//    last kRecentRequestIds ids), active alarms refusing writes;
//  - events as etcd's watch reports them: PUT with the full new KeyValue,
//    DELETE with key and mod_revision only; prev_kv is the key's value at
//    revision - 1 (before the transaction), absent for a PUT that creates
//    the key (version 1), as etcd's watch server fills it in.
//
// Validation that happens before proposing (CheckTxn's duplicate keys,
// sizes, op counts) is not repeated: the model applies what the log holds.
//
// Cost: one parse and a few map operations per committed entry; memory is
// every version and event of the run (the model never compacts physically:
// it answers for any past index).
#ifndef DETCD_HARNESS_KV_MODEL_H_
#define DETCD_HARNESS_KV_MODEL_H_

#include <cstdint>
#include <deque>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "engine/lease/lessor.h"
#include "engine/mvcc/kv_store.h"
#include "engine/mvcc/types.h"
#include "engine/raft/types.h"

namespace etcdserverpb {
class InternalRaftRequest;
class TxnRequest;
class Compare;
class PutRequest;
class RequestOp;
}  // namespace etcdserverpb

namespace detcd::harness {

class KvModel {
 public:
  // As the state machine (EtcdStateMachine::kRecentRequestIds).
  static constexpr size_t kRecentRequestIds = 4096;
  struct Options {
    // Grants above this fail (LessorOptions::max_ttl_s of the members).
    int64_t max_lease_ttl_s = lease::kMaxLeaseTtlS;
  };

  KvModel() : KvModel(Options()) {}
  explicit KvModel(Options o);

  // Applies the committed entry at e.index, which must be applied_index()
  // + 1 (else the model stops and problem() says why). Conf change and
  // empty entries only move the index.
  void Apply(const raft::Entry& e);

  uint64_t applied_index() const { return by_index_.size() - 1; }
  // The latest revision (1 before any write, as etcd) and compaction (-1
  // if none).
  int64_t rev() const { return rev_; }
  int64_t compact_rev() const { return compact_; }
  // The events of revision r in sub-revision order (empty if r <= 1 or
  // beyond rev()).
  const std::vector<mvcc::Event>& EventsAt(int64_t r) const;
  // Every compaction that took effect, in log order (revisions).
  const std::vector<int64_t>& compactions() const { return compactions_; }
  // Revision and compact revision right after raft index i (i <=
  // applied_index()).
  int64_t RevAt(uint64_t i) const { return by_index_[i].rev; }
  int64_t CompactRevAt(uint64_t i) const { return by_index_[i].compact; }
  // The live key-values at revision r (<= rev()), in key order.
  std::vector<mvcc::KeyValue> LiveAt(int64_t r) const;
  // Lease ids alive right after raft index i, ascending.
  std::vector<int64_t> LeasesAt(uint64_t i) const;

  // Compares a member's state with the model's right after raft index i:
  // revision, compact revision, every live key-value, the history it
  // still holds (every event after its compaction, prev_kv included), and
  // the leases with their keys. Returns "" if equal, else the first
  // difference. "" as well if the model has not reached i (nothing to
  // compare with) or has stopped.
  std::string CompareAt(uint64_t i, const mvcc::KvStore& kv,
                        const lease::Lessor& lessor) const;

  // Why the model stopped (an index gap), or "".
  const std::string& problem() const { return problem_; }

 private:
  struct Version {
    int64_t main = 0;
    int64_t sub = 0;
    bool tombstone = false;
    int64_t create = 0;
    int64_t version = 0;
    int64_t lease = 0;
    std::string value;
  };
  struct IndexState {
    int64_t rev = 1;
    int64_t compact = -1;
  };
  struct LeaseLife {
    uint64_t granted = 0;
    uint64_t revoked = 0;  // 0: still alive
  };
  class Txn;

  void ApplyRequest(const etcdserverpb::InternalRaftRequest& r,
                    uint64_t index);
  bool Refused(const etcdserverpb::InternalRaftRequest& r) const;
  // Latest version of key at or below revision r, or nullptr (also for a
  // tombstone).
  const Version* LiveVersion(const std::string& key, int64_t r) const;

  Options opts_;
  std::map<std::string, std::vector<Version>> keys_;
  int64_t rev_ = 1;
  int64_t compact_ = -1;
  std::vector<std::vector<mvcc::Event>> events_;  // index: revision
  const std::vector<mvcc::Event> no_events_;
  std::vector<int64_t> compactions_;
  std::vector<IndexState> by_index_{IndexState{}};
  std::map<int64_t, std::set<std::string>> leases_;  // alive: id -> keys
  std::map<int64_t, std::vector<LeaseLife>> lease_lives_;
  std::deque<uint64_t> recent_order_;
  std::set<uint64_t> recent_ids_;
  std::set<std::pair<int, uint64_t>> alarms_;  // (type, member)
  std::string problem_;
};

}  // namespace detcd::harness

#endif  // DETCD_HARNESS_KV_MODEL_H_
