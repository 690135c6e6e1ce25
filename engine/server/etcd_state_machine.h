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
// deduplicate) takes effect once: the state machine remembers the last
// kRecentRequestIds requests it applied and skips repeats. A request is
// known by its proposer and its header id together (RequestKey): the id
// alone carries only the low 16 bits of its member's id (etcd's scheme), so
// two members whose ids share those bits would otherwise drop each other's
// requests as repeats.
//
// The auth store (engine/auth/auth_store.h) is replicated here too: the
// Auth requests (auth_enable ... auth_role_revoke_permission, authenticate)
// change or read it, and every request is authorized at apply time as
// etcd's authApplierV3 does, against the user and auth revision in its
// header: admin requests need the root role (UserGet of oneself and
// RoleGet of one's own role excepted); put, delete_range and txn (every
// compare and op) need their key permissions; a put with a lease and a
// lease revoke need write permission on the lease's keys. With auth off
// every check passes. A user add or password change arrives with its
// bcrypt hash (hashed by the proposer, as etcd 3.5 does), never the
// password; an authenticate entry gets its token from the member-local
// token provider (Options::tokens), which is why the result hash leaves
// an authenticate's token out (JWT tokens differ between members).
//
// Snapshot image (all integers varints, strings length-prefixed):
//   "detcd-sm3" varint(last_index) varint(result_hash)
//   lp(kv store image) lp(lessor image)
//   lp(membership image) lp(alarm image)
//   varint(n) varint(request key)*n  (recent RequestKeys, oldest first)
// or, once the auth store left its initial state, the same under the magic
// "detcd-sm4" followed by lp(auth store image). A "detcd-sm3" image loads
// with a fresh auth store, and a state machine whose auth store is still
// fresh writes "detcd-sm3", so images (and traces) without auth stay as
// they were. (Images of older formats, "detcd-sm2", are refused.)
#ifndef DETCD_ENGINE_SERVER_ETCD_STATE_MACHINE_H_
#define DETCD_ENGINE_SERVER_ETCD_STATE_MACHINE_H_

#include <algorithm>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/btree_set.h"
#include "absl/status/status.h"
#include "engine/auth/auth_store.h"
#include "engine/auth/token.h"
#include "engine/lease/lessor.h"
#include "engine/mvcc/kv_store.h"
#include "engine/server/etcd_kv.h"
#include "engine/server/membership.h"
#include "engine/server/quota.h"
#include "engine/server/state_machine.h"
#include "engine/util/planted.h"
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
// The same without parsing: on ok *response views the response's bytes.
absl::Status DecodeResultBytes(std::string_view result,
                               std::string_view* response);

// etcd's checkTxnAuth: read permission for every compare and range, write
// for every put and delete (and read for a delete's prev_kv).
absl::Status CheckTxnAuth(const auth::AuthStore& as, const auth::AuthInfo& ai,
                          const etcdserverpb::TxnRequest& t);

class EtcdStateMachine final : public StateMachine {
 public:
  static constexpr size_t kRecentRequestIds = 4096;
  struct Options {
    KvLimits kv;
    lease::LessorOptions lease;
    // Member-local clock (ns) for a primary lessor's expiries.
    std::function<int64_t()> now_ns;
    // Member-local auth tokens (token.h); null: an authenticate entry's
    // token is made but remembered nowhere (tests without tokens).
    auth::TokenProvider* tokens = nullptr;
    // Planted bugs (engine/util/planted.h); the server's set.
    planted::Bugs bugs;
    // Records a compaction's removal visits per BackgroundStep (a
    // compaction is applied logically at once, its revisions removed in
    // steps: KvStore::StartCompaction). About 1 ms of work.
    size_t compact_step_records = 8192;
  };
  using EventsFn = std::function<void(const std::vector<mvcc::Event>&)>;

  explicit EtcdStateMachine(Options o);

  std::string Apply(uint64_t index, std::string_view command) override {
    return ApplyFrom(index, 0, command);
  }
  std::string ApplyFrom(uint64_t index, uint64_t proposer,
                        std::string_view command) override;
  // The duplicate filter's key of request `id` proposed by `proposer`: the id
  // mixed with a bijective 64-bit mix of the proposer, so different
  // proposers' ids (for them to collide, the xor of two recent ids would have
  // to equal the xor of the mixes) stay apart. 0 stays "no id".
  static uint64_t RequestKey(uint64_t proposer, uint64_t id);
  absl::Status CheckConfChange(const raft::ConfChange& cc,
                               std::string_view context) const override {
    return membership_.Check(cc, context);
  }
  std::string ApplyConfChange(uint64_t index, const raft::ConfChange& cc,
                              std::string_view context,
                              const raft::ConfState& after) override;
  std::string Snapshot() const override;
  // Snapshot()'s bytes in bounded steps: the small sections are copied
  // when the writer is made, the MVCC store is written by its own
  // incremental writer (KvStore::ImageWriter). A compaction or a Restore
  // before the last step makes the writer fail.
  std::unique_ptr<ImageWriter> BeginSnapshot() const override;
  // An image's sections as views into it, checked for framing only (the
  // first step of PrepareRestore; the real server's Snapshot stream reads
  // them to write etcd's backend file, shim/etcd_backend.h). `auth` is
  // empty for an image without the auth section (a fresh auth store).
  struct ImageSections {
    uint64_t delta_base = 0;  // a delta image's (SplitDelta): its base's index
    uint64_t last_index = 0;
    uint64_t result_hash = 0;
    std::string_view kv, lessor, membership, alarms, auth;
    std::deque<uint64_t> recent;  // recent request ids, oldest first
  };
  static absl::StatusOr<ImageSections> SplitImage(std::string_view image);
  // Delta images (the Node's incremental snapshot files): the format of a
  // whole image under the magic "detcd-sd3" ("detcd-sd4" with the auth
  // section), the base image's index (the Node's) as a varint after it,
  // and the MVCC store's delta image (KvStore::BeginDelta) in place of
  // its image; the other sections are whole (they are small). A delta
  // can be made while the store was only written since the base.
  static absl::StatusOr<ImageSections> SplitDelta(std::string_view image);
  std::optional<ImagePoint> image_point() const override;
  std::unique_ptr<ImageWriter> BeginDeltaSnapshot(
      const ImagePoint& since) const override;
  std::optional<uint64_t> DeltaBase(std::string_view image) const override;
  absl::Status ApplyDelta(std::string_view image,
                          const env::ReadBehind& behind) override;
  absl::Status Restore(std::string_view image) override;
  absl::Status RestoreReading(std::string_view image,
                              const env::ReadBehind& behind) override;
  // The image decoded into a store, leases, auth store, membership and
  // alarms of their own, every section checked; RestorePrepared swaps
  // them in.
  absl::StatusOr<std::unique_ptr<Prepared>> PrepareRestore(
      std::string_view image, const env::ReadBehind& behind) const override;
  absl::Status RestorePrepared(std::string_view image,
                               std::unique_ptr<Prepared>* prepared) override;
  // A compaction's revisions still to be removed.
  bool background_pending() const override {
    return kv_.compaction_pending();
  }
  void BackgroundStep() override;
  // Disaster recovery (etcd's `snapshot restore`, shim/restore.h): takes
  // another cluster's store, leases and auth store (a KvStore image, a
  // Lessor image and an AuthStore image, "" for a fresh auth store) and
  // drops the alarms (they name that cluster's members), keeping this
  // state machine's membership (the new cluster's founders), last index,
  // result hash and recent request ids. The token provider follows the
  // adopted enabled flag. Every image is decoded before anything changes:
  // nothing changes on error.
  absl::Status AdoptData(std::string_view kv_image,
                         std::string_view lessor_image,
                         std::string_view auth_image);

  // Called with each write transaction's events right after it commits
  // (the watch hub's feed), and after a Restore replaced the state.
  void set_on_events(EventsFn f) { on_events_ = std::move(f); }
  void set_on_restore(std::function<void()> f) { on_restore_ = std::move(f); }
  // Called after a lease's revoke (explicit or expiry) was applied.
  void set_on_lease_revoked(std::function<void(int64_t)> f) {
    on_lease_revoked_ = std::move(f);
  }
  // Called after a grant was applied while this member's lessor is
  // primary: the lease's expiry runs from this member's clock now.
  void set_on_lease_granted(std::function<void(int64_t)> f) {
    on_lease_granted_ = std::move(f);
  }
  // Called with kStart right before a compaction request is applied and,
  // if it compacted (not when refused), with kApplied right after, then
  // with kRemoved once the last BackgroundStep removed its revisions (at
  // once if none were left): the real server times etcd's compaction
  // histograms with it (the engine keeps no clock of its own). A
  // compaction applied while one is being removed takes over its work,
  // and the two get one kRemoved.
  enum class CompactionPhase { kStart, kApplied, kRemoved };
  void set_on_compaction(std::function<void(CompactionPhase)> f) {
    on_compaction_ = std::move(f);
  }
  // etcd's "apply request took too long": called after a request whose
  // apply took longer than threshold_ns on the member's clock (Options::
  // now_ns), with the request, its encoded result (DecodeResult reads it)
  // and the time it took. Only the apply is timed, not the wait for the
  // commit. (The simulator's clock does not move during an apply.)
  using SlowApplyFn =
      std::function<void(const etcdserverpb::InternalRaftRequest& request,
                         std::string_view result, int64_t took_ns)>;
  void set_on_slow_apply(SlowApplyFn f, int64_t threshold_ns) {
    on_slow_apply_ = std::move(f);
    slow_apply_ns_ = threshold_ns;
  }

  const mvcc::KvStore& kv() const { return kv_; }
  lease::Lessor& lessor() { return lessor_; }
  const lease::Lessor& lessor() const { return lessor_; }
  const Membership& membership() const { return membership_; }
  const AlarmSet& alarms() const { return alarms_; }
  const auth::AuthStore& auth() const { return auth_; }
  // The database size estimates (see the top of this file).
  int64_t db_size_in_use() const;
  int64_t db_size() const { return db_size_; }
  // etcd's defragment: the file shrinks to what is in use, once the
  // compaction being removed is done.
  void Defragment();
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
  // etcd's authApplierV3 checks for `r` by the user in its header.
  absl::Status AuthGate(const etcdserverpb::InternalRaftRequest& r) const;
  absl::Status CheckLeasePuts(const auth::AuthInfo& ai, int64_t lease) const;
  // The Auth requests; nullopt if `r` is none of them.
  std::optional<std::string> ApplyAuth(
      const etcdserverpb::InternalRaftRequest& r);
  void SyncTokens();  // the token provider follows the enabled flag
  void Emit(std::vector<mvcc::Event> events);
  // The image around the MVCC store's section (see Snapshot()).
  std::string ImageHead(const ImagePoint* since = nullptr) const;
  // RestorePrepared's and ApplyDelta's: a checked image's sections but the
  // store's (a PreparedImage, etcd_state_machine.cc) take the place of
  // ours.
  void InstallSections(Prepared* prepared);
  static absl::StatusOr<ImageSections> Split(std::string_view image,
                                             bool delta);
  std::string ImageTail() const;
  // The rest of a compaction being removed, at once (before an image,
  // which needs it done, and a defragmentation).
  void FinishCompaction() const;
  void NoteSize() { db_size_ = std::max(db_size_, db_size_in_use()); }

  Options opts_;
  mvcc::KvStore kv_;
  lease::Lessor lessor_;
  Membership membership_;
  AlarmSet alarms_;
  auth::AuthStore auth_;
  int64_t db_size_ = 0;
  uint64_t last_index_ = 0;
  uint64_t result_hash_ = 0;
  std::deque<uint64_t> recent_order_;  // RequestKeys, oldest first
  absl::btree_set<uint64_t> recent_ids_;
  EventsFn on_events_;
  std::function<void()> on_restore_;
  std::function<void(int64_t)> on_lease_revoked_;
  std::function<void(int64_t)> on_lease_granted_;
  std::function<void(CompactionPhase)> on_compaction_;
  SlowApplyFn on_slow_apply_;
  int64_t slow_apply_ns_ = 0;
};

}  // namespace detcd::server

#endif  // DETCD_ENGINE_SERVER_ETCD_STATE_MACHINE_H_
