// etcd's replicated state: the MVCC store and the lessor, changed only by
// committed raft entries. Every entry's command is an
// etcdserverpb.InternalRaftRequest (put, delete_range, txn, compaction,
// lease_grant, lease_revoke, lease_checkpoint); the result handed back to
// the proposer is EncodeResult(status, response).
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
//   "detcd-sm2" varint(last_index) varint(result_hash)
//   lp(kv store image) lp(lessor image)
//   varint(n) varint(request id)*n   (recent request ids, oldest first)
#ifndef DETCD_ENGINE_SERVER_ETCD_STATE_MACHINE_H_
#define DETCD_ENGINE_SERVER_ETCD_STATE_MACHINE_H_

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
  std::string Snapshot() const override;
  absl::Status Restore(std::string_view image) override;

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
  void Emit(std::vector<mvcc::Event> events);

  Options opts_;
  mvcc::KvStore kv_;
  lease::Lessor lessor_;
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
