// etcd's replicated state: the MVCC store, the lessor, the membership
// (membership.h) and the alarms (quota.h), changed only by committed raft
// entries. Every normal entry's command is an
// etcdserverpb.InternalRaftRequest (put, delete_range, txn, compaction,
// lease_grant, lease_revoke, lease_checkpoint, alarm,
// cluster_member_attr_set); the result handed back to the proposer is
// EncodeResult(status, response). Conf change entries reach the
// membership through ApplyConfChange.
//
// Active alarms gate the writes as etcd's capped and corrupt appliers do
// (quota.h). A publish (cluster_member_attr_set) answers with an
// EmptyResponse, or ErrMemberNotFound for a member that is not one.
//
// Database size (the Status fields dbSizeInUse / dbSize, and what the
// quota is checked against) is an estimate of what etcd's bolt file would
// hold, in bytes:
//   db_size_in_use = 20 KiB (an empty etcd member's file)
//                  + the MVCC store's size_bytes() (every kept revision's
//                    value + 112, every key's bytes + 176)
//                  + 64 per lease + the membership's bytes
//                  + 64 per alarm;
//   db_size        = the largest db_size_in_use since this state machine
//                    started, restored a snapshot or was defragmented:
//                    like bolt's file, it grows with the data and shrinks
//                    only on Defragment (after a compaction freed space).
// Both are member-local observations (never part of results or images).
//
// Apply is deterministic: the same entries give the same results and the
// same state on every member. The one input that is not replicated is the
// clock, and it only touches member-local state (a primary lessor's lease
// expiries), never results.
//
// A request applied twice (a proposal duplicated on its way to the leader:
// the network may deliver a forwarded proposal twice, and raft does not
// deduplicate) takes effect once: the state machine remembers the ids of
// the last kRecentRequestIds requests it applied and skips repeats.
//
// Snapshot image (all integers varints, strings length-prefixed):
//   "detcd-sm3" varint(last_index) varint(result_hash)
//   lp(kv store image) lp(lessor image)
//   lp(membership image) lp(alarm image)
//   varint(n) varint(request id)*n   (recent request ids, oldest first)
// (Images of older formats, "detcd-sm2", are refused.)
#ifndef DETCD_ENGINE_SERVER_ETCD_STATE_MACHINE_H_
#define DETCD_ENGINE_SERVER_ETCD_STATE_MACHINE_H_

#include <algorithm>
#include <cstdint>
#include <deque>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/btree_set.h"
#include "absl/status/status.h"
#include "engine/lease/lessor.h"
#include "engine/mvcc/kv_store.h"
#include "engine/server/etcd_kv.h"
#include "engine/server/membership.h"
#include "engine/server/quota.h"
#include "engine/server/state_machine.h"
#include "etcdserverpb/raft_internal.pb.h"
#include "etcdserverpb/rpc.pb.h"

namespace detcd::server {

// Result of applying one command: the status and, when ok, the serialized
// response message. Encoded as varint(code) lp(message) response-bytes.
std::string EncodeResult(const absl::Status& s,
                         const google::protobuf::MessageLite* response);
// Parses a result; on ok fills *response.
absl::Status DecodeResult(std::string_view result,
                          google::protobuf::MessageLite* response);

class EtcdStateMachine final : public StateMachine {
 public:
  static constexpr size_t kRecentRequestIds = 4096;
  struct Options {
    KvLimits kv;
    lease::LessorOptions lease;
    // Member-local clock (ns) for a primary lessor's expiries.
    std::function<int64_t()> now_ns;
  };
  using EventsFn = std::function<void(const std::vector<mvcc::Event>&)>;

  explicit EtcdStateMachine(Options o);

  std::string Apply(uint64_t index, std::string_view command) override;
  absl::Status CheckConfChange(const raft::ConfChange& cc,
                               std::string_view context) const override {
    return membership_.Check(cc, context);
  }
  std::string ApplyConfChange(uint64_t index, const raft::ConfChange& cc,
                              std::string_view context,
                              const raft::ConfState& after) override;
  std::string Snapshot() const override;
  absl::Status Restore(std::string_view image) override;
  // Disaster recovery (etcd's `snapshot restore`, shim/restore.h): takes
  // another cluster's store and leases (a KvStore image and a Lessor image)
  // and drops the alarms (they name that cluster's members), keeping this
  // state machine's membership (the new cluster's founders), last index,
  // result hash and recent request ids. Nothing changes on error.
  absl::Status AdoptData(std::string_view kv_image,
                         std::string_view lessor_image);

  // Called with each write transaction's events right after it commits
  // (the watch hub's feed), and after a Restore replaced the state.
  void set_on_events(EventsFn f) { on_events_ = std::move(f); }
  void set_on_restore(std::function<void()> f) { on_restore_ = std::move(f); }
  // Called after a lease's revoke (explicit or expiry) was applied.
  void set_on_lease_revoked(std::function<void(int64_t)> f) {
    on_lease_revoked_ = std::move(f);
  }

  const mvcc::KvStore& kv() const { return kv_; }
  lease::Lessor& lessor() { return lessor_; }
  const lease::Lessor& lessor() const { return lessor_; }
  const Membership& membership() const { return membership_; }
  const AlarmSet& alarms() const { return alarms_; }
  // The database size estimates (see the top of this file).
  int64_t db_size_in_use() const;
  int64_t db_size() const { return db_size_; }
  // etcd's defragment: the file shrinks to what is in use.
  void Defragment() { db_size_ = db_size_in_use(); }
  uint64_t last_index() const { return last_index_; }
  // A running hash over every applied (index, result): two members that
  // applied the same entries and reached the same results agree on it.
  uint64_t result_hash() const { return result_hash_; }
  // Lease safety in the applied state: every key with a lease belongs to a
  // live lease that lists it, and every listed key carries that lease.
  // Returns an empty string when it holds, else what is wrong.
  std::string CheckLeaseInvariant() const;

 private:
  std::string ApplyRequest(const etcdserverpb::InternalRaftRequest& r);
  std::string ApplyLeaseRevoke(int64_t id);
  // ErrCorrupt / ErrNoSpace if an active alarm refuses `r`, else OK.
  absl::Status AlarmGate(const etcdserverpb::InternalRaftRequest& r) const;
  void Emit(std::vector<mvcc::Event> events);
  void NoteSize() { db_size_ = std::max(db_size_, db_size_in_use()); }

  Options opts_;
  mvcc::KvStore kv_;
  lease::Lessor lessor_;
  Membership membership_;
  AlarmSet alarms_;
  int64_t db_size_ = 0;
  uint64_t last_index_ = 0;
  uint64_t result_hash_ = 0;
  std::deque<uint64_t> recent_order_;  // oldest first
  absl::btree_set<uint64_t> recent_ids_;
  EventsFn on_events_;
  std::function<void()> on_restore_;
  std::function<void(int64_t)> on_lease_revoked_;
};

}  // namespace detcd::server

#endif  // DETCD_ENGINE_SERVER_ETCD_STATE_MACHINE_H_
