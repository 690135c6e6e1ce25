// etcd's KV request layer on top of the MVCC store: validation of Range /
// Put / DeleteRange / Txn / Compaction requests before they are proposed
// (etcd's v3rpc key.go), and their application (etcd v3.5's
// etcdserver/apply.go), with etcd's errors, response contents and header
// revisions.
//
// Who does what:
//  - Check*() run on the member that receives the request, before
//    proposing; they need no state.
//  - Apply*() run when the request is applied (or, for reads, served). A
//    write runs inside one KvStore::WriteTxn that the caller opened and
//    ends afterwards (collecting its events for the watch hub). A failing
//    write changes nothing: every error is found before the first change.
//  - Only header.revision is filled in; cluster_id, member_id and
//    raft_term are the caller's, and only in the top-level header (as
//    etcd's gRPC layer does). Responses inside a Txn carry their own
//    header.revision; a nested Txn's header stays empty, as in etcd.
//  - Errors from the store (mvcc::ErrCompacted / ErrFutureRev, texts
//    "mvcc: ...") are passed through unchanged; etcd's gRPC layer reports
//    them as "etcdserver: mvcc: ..." with code OutOfRange, which is the
//    gRPC layer's mapping to do.
//
// Where this deliberately differs from etcd v3.5 (only for requests etcd
// would reject or crash on, or for etcd's unspecified orders):
//  - Sorting is stable (ties stay in ascending key order, for DESCEND too);
//    etcd's sort.Sort leaves ties in an unspecified order.
//  - Invalid sort_order / sort_target values are rejected with
//    ErrInvalidSortOption (as newer etcd does) instead of panicking.
//  - The duplicate-key check treats a delete with range_end "\0" as
//    reaching every key >= key (etcd's interval tree misses that case and
//    then panics applying an ignore_* put of a key the delete removed).
//    ApplyTxn runs this check itself too, so no request, validated or not,
//    can fail halfway through its writes.
//  - A range inside a Txn with a negative revision reads the latest
//    revision, as a plain Range does (etcd reports ErrCompacted for
//    revisions below its initial compact revision of -1).
#ifndef DETCD_ENGINE_SERVER_ETCD_KV_H_
#define DETCD_ENGINE_SERVER_ETCD_KV_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/mvcc/kv_store.h"
#include "engine/mvcc/types.h"
#include "etcdserverpb/rpc.pb.h"
#include "mvccpb/kv.pb.h"

namespace detcd::server {

// etcd's defaults (--max-txn-ops, --max-request-bytes).
inline constexpr int kDefaultMaxTxnOps = 128;
inline constexpr uint64_t kDefaultMaxRequestBytes = 1536 * 1024;
// Protobuf cannot encode a message of 2 GiB or more.
inline constexpr uint64_t kMaxRequestBytesCeiling = (uint64_t{1} << 31) - 1;

struct KvLimits {
  // Per list of a Txn: compares, success ops, failure ops each; nested
  // txns get what their parents leave (etcd's rule).
  int max_txn_ops = kDefaultMaxTxnOps;
  // The encoded proposal's size limit.
  uint64_t max_request_bytes = kDefaultMaxRequestBytes;

  // max_txn_ops >= 1, 1 <= max_request_bytes <= kMaxRequestBytesCeiling.
  absl::Status Validate() const;
};

// etcd's client-visible errors (api/v3rpc/rpctypes): gRPC code, text.
//   ErrEmptyKey          InvalidArgument "etcdserver: key is not provided"
//   ErrKeyNotFound       InvalidArgument "etcdserver: key not found"
//   ErrValueProvided     InvalidArgument "etcdserver: value is provided"
//   ErrLeaseProvided     InvalidArgument "etcdserver: lease is provided"
//   ErrTooManyOps        InvalidArgument
//                        "etcdserver: too many operations in txn request"
//   ErrDuplicateKey      InvalidArgument
//                        "etcdserver: duplicate key given in txn request"
//   ErrInvalidSortOption InvalidArgument "etcdserver: invalid sort option"
//   ErrLeaseNotFound     NotFound "etcdserver: requested lease not found"
//   ErrRequestTooLarge   InvalidArgument "etcdserver: request is too large"
absl::Status ErrEmptyKey();
absl::Status ErrKeyNotFound();
absl::Status ErrValueProvided();
absl::Status ErrLeaseProvided();
absl::Status ErrTooManyOps();
absl::Status ErrDuplicateKey();
absl::Status ErrInvalidSortOption();
absl::Status ErrLeaseNotFound();
absl::Status ErrRequestTooLarge();

// Validation before proposing, in etcd's order of checks. None of them
// reads state.
absl::Status CheckRange(const etcdserverpb::RangeRequest& r);
absl::Status CheckPut(const etcdserverpb::PutRequest& r);
absl::Status CheckDeleteRange(const etcdserverpb::DeleteRangeRequest& r);
// Op counts (nested txns included), compare keys, every op (an op with no
// request set is ErrKeyNotFound, as in etcd), then duplicate keys: a key
// put twice, or put and deleted, on any path through the txn (a put in a
// nested txn's success and failure branches is fine).
absl::Status CheckTxn(const etcdserverpb::TxnRequest& r,
                      const KvLimits& limits);
// etcd checks nothing before proposing a compaction; errors come from the
// store when it is applied. Kept for symmetry; always OK.
absl::Status CheckCompaction(const etcdserverpb::CompactionRequest& r);
// The encoded InternalRaftRequest's size against max_request_bytes.
absl::Status CheckRequestSize(size_t encoded_bytes, const KvLimits& limits);

// True if every op of both branches is a Range (etcd serves such a txn as
// a read, without proposing it).
bool IsTxnReadOnly(const etcdserverpb::TxnRequest& r);

// What the apply layer needs from the lessor (the lead's adapter).
class LeaseHooks {
 public:
  virtual ~LeaseHooks() = default;
  virtual bool Exists(int64_t id) const = 0;
  virtual void Attach(int64_t id, std::string_view key) = 0;
  virtual void Detach(int64_t id, std::string_view key) = 0;
};
// Every Apply* taking LeaseHooks* accepts nullptr for "no lessor": then no
// lease exists (a put naming one fails with ErrLeaseNotFound) and nothing
// is attached or detached.

// Reads. header.revision is the store's current revision (the txn's, for
// the WriteTxn overload), also for reads of a past revision, as in etcd.
absl::StatusOr<etcdserverpb::RangeResponse> ApplyRange(
    const mvcc::KvStore& kv, const etcdserverpb::RangeRequest& r);
absl::StatusOr<etcdserverpb::RangeResponse> ApplyRange(
    const mvcc::KvStore::WriteTxn& txn, const etcdserverpb::RangeRequest& r);

// ApplyRange in pieces, for a reader that must not stop for the whole of a
// large range (the engine thread: a million keys take most of a second):
// each Step reads at most max_keys more keys of the range, at the revision
// the first step read (header.revision is the store's current revision
// then), and the store may take writes between the steps. A compaction
// past that revision makes the next step fail with ErrCompacted. An
// unsorted, unfiltered range puts each piece's key-values into the
// response as it goes; a sorted or filtered one sorts and filters them
// all in Finish. ApplyRange is Begin, one unbounded step and Finish.
class RangeReader {
 public:
  // ErrInvalidSortOption for a bad sort. r must outlive the reader.
  static absl::StatusOr<RangeReader> Begin(const etcdserverpb::RangeRequest& r);
  // True once the whole range is read (max_keys 0: no bound) and, for a
  // sorted or filtered range, its key-values put in order into the
  // response (up to max_keys of them a step after the last piece).
  absl::StatusOr<bool> Step(const mvcc::KvStore& kv, size_t max_keys);
  // The response, once a step returned true.
  etcdserverpb::RangeResponse Finish() &&;
  // Step over any reader with KvStore's Range (a WriteTxn's reads).
  template <typename Reader>
  absl::StatusOr<bool> StepOn(const Reader& rd, size_t max_keys);

 private:
  RangeReader() = default;
  // One piece (StepOn before the whole range is read).
  template <typename Reader>
  absl::StatusOr<bool> Read(const Reader& rd, size_t max_keys);
  // The response's order (the sort, ties by key).
  bool Before(const mvcc::KeyValue& a, const mvcc::KeyValue& b) const;
  bool BeforeView(const mvcc::KeyValueView& a,
                  const mvcc::KeyValueView& b) const;
  // Whether kv passes the request's revision filters.
  static bool Kept(const etcdserverpb::RangeRequest& r,
                   const mvcc::KeyValueView& kv);
  // Moves up to `budget` (0: all) more collected key-values, in order,
  // into resp_; true once all that answer has are there.
  bool Merge(size_t budget);
  const etcdserverpb::RangeRequest* r_ = nullptr;
  bool (*less_)(const mvcc::KeyValue&, const mvcc::KeyValue&) = nullptr;
  bool (*less_view_)(const mvcc::KeyValueView&,
                     const mvcc::KeyValueView&) = nullptr;
  bool filtered_ = false;  // by revisions (min/max mod/create)
  etcdserverpb::RangeRequest::SortOrder order_ =
      etcdserverpb::RangeRequest::NONE;
  int64_t limit_ = 0;  // keys to collect (the request's limit + 1), 0: all
  bool direct_ = false;
  std::string next_key_;
  int64_t read_rev_ = 0;  // 0 before the first step
  int64_t header_rev_ = 0;
  int64_t count_ = 0;
  // Not direct_: each piece is filtered (by the store) and sorted as it
  // comes and kept in kvs_ as a run (its end in run_ends_; a limited sort
  // keeps only each piece's first `limit`, which the store picks); once
  // all is read the runs are merged into resp_ in steps.
  std::vector<mvcc::KeyValue> kvs_;
  std::vector<size_t> run_ends_;
  size_t kept_ = 0;    // key-values that passed the filters
  bool read_ = false;  // the whole range is read
  size_t merged_ = 0;  // key-values moved into resp_
  std::vector<std::pair<size_t, size_t>> heads_;  // runs' (next, end)
  etcdserverpb::RangeResponse resp_;
};

// Writes, inside the caller's WriteTxn. header.revision is the revision
// after the write (unchanged if nothing changed, e.g. deleting no key).
// ApplyPut: ErrLeaseNotFound, then ErrKeyNotFound (ignore_value /
// ignore_lease on a missing key). The key moves from its old lease to the
// new one through `leases` when the lease changes.
absl::StatusOr<etcdserverpb::PutResponse> ApplyPut(
    mvcc::KvStore::WriteTxn& txn, LeaseHooks* leases,
    const etcdserverpb::PutRequest& r);
// Deleted keys are detached from their leases.
absl::StatusOr<etcdserverpb::DeleteRangeResponse> ApplyDeleteRange(
    mvcc::KvStore::WriteTxn& txn, LeaseHooks* leases,
    const etcdserverpb::DeleteRangeRequest& r);
// Compares (and nested txns' compares) are evaluated first, against the
// state before the txn; then the chosen branches' puts are checked
// (ignore_* keys exist, then leases exist) and their ranges' revisions;
// then the ops run in order, each seeing the earlier ones' writes. Errors:
// ErrDuplicateKey, ErrKeyNotFound, ErrLeaseNotFound, mvcc::ErrFutureRev,
// mvcc::ErrCompacted; all before any change.
absl::StatusOr<etcdserverpb::TxnResponse> ApplyTxn(
    mvcc::KvStore::WriteTxn& txn, LeaseHooks* leases,
    const etcdserverpb::TxnRequest& r);
// A read-only txn (IsTxnReadOnly) served without a WriteTxn, as etcd
// serves them; header.revision is the current revision. InvalidArgument
// if r is not read-only.
absl::StatusOr<etcdserverpb::TxnResponse> ApplyReadOnlyTxn(
    const mvcc::KvStore& kv, const etcdserverpb::TxnRequest& r);

// KvStore::Compact's errors; header.revision is the current revision.
// Only starts the compaction (KvStore::StartCompaction): the caller
// removes its revisions in steps (EtcdStateMachine::BackgroundStep).
absl::StatusOr<etcdserverpb::CompactionResponse> ApplyCompaction(
    mvcc::KvStore& kv, const etcdserverpb::CompactionRequest& r);

// Conversions to the wire types (for the watch hub and the gRPC layer).
void ToProto(const mvcc::KeyValue& kv, mvccpb::KeyValue* out);
void ToProto(mvcc::KeyValue&& kv, mvccpb::KeyValue* out);  // moves strings
// prev_kv is set only if e.has_prev_kv.
void ToProto(const mvcc::Event& e, mvccpb::Event* out);

}  // namespace detcd::server

#endif  // DETCD_ENGINE_SERVER_ETCD_KV_H_
