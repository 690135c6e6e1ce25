// KV helpers in the shape of clientv3's: comparisons, operations and a
// transaction builder.
//
//   Txn txn(client);
//   txn.If(Compare(cmp::ModRevision("cfg"), CmpOp::kEqual, seen_rev))
//       .Then(OpPut("cfg", "v2"), OpGet("cfg"))
//       .Else(OpGet("cfg"));
//   absl::StatusOr<etcdserverpb::TxnResponse> r = txn.Commit();
//
// As in clientv3, If / Then / Else are called at most once each and in
// that order; a builder used otherwise fails on Commit with clientv3's
// panic text ("cannot call If after Then!") instead of crashing. A
// comparison whose value type does not fit its target (a string for a
// revision, a number for a value) fails the same way.
//
// Txn is not retried on Unavailable once sent (a transaction may write);
// see client.h for the retry rules.
#ifndef DETCD_CLIENT_KV_H_
#define DETCD_CLIENT_KV_H_

#include <cstdint>
#include <future>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "detcd/client.h"
#include "etcdserverpb/rpc.pb.h"

namespace detcd::client {

// The end of the range holding every key that starts with prefix
// (clientv3's GetPrefixRangeEnd): "\0" (every key) for an empty prefix or
// one of 0xff bytes only.
std::string PrefixEnd(absl::string_view prefix);

// ---------------------------------------------------------------- compare

enum class CmpOp { kEqual, kNotEqual, kGreater, kLess };  // = != > <

// What a comparison looks at: one key, or with WithPrefix / WithRange
// every key of a range (each must satisfy it).
struct CmpTarget {
  etcdserverpb::Compare::CompareTarget target;
  std::string key;
  std::string range_end;

  CmpTarget WithPrefix() && {
    range_end = PrefixEnd(key);
    return std::move(*this);
  }
  CmpTarget WithRange(std::string end) && {
    range_end = std::move(end);
    return std::move(*this);
  }
};

namespace cmp {
inline CmpTarget Value(std::string key) {
  return {etcdserverpb::Compare::VALUE, std::move(key), ""};
}
inline CmpTarget Version(std::string key) {
  return {etcdserverpb::Compare::VERSION, std::move(key), ""};
}
inline CmpTarget CreateRevision(std::string key) {
  return {etcdserverpb::Compare::CREATE, std::move(key), ""};
}
inline CmpTarget ModRevision(std::string key) {
  return {etcdserverpb::Compare::MOD, std::move(key), ""};
}
inline CmpTarget Lease(std::string key) {
  return {etcdserverpb::Compare::LEASE, std::move(key), ""};
}
}  // namespace cmp

// Version / CreateRevision / ModRevision / Lease against a number.
etcdserverpb::Compare Compare(const CmpTarget& t, CmpOp op, int64_t v);
// Value against bytes.
etcdserverpb::Compare Compare(const CmpTarget& t, CmpOp op,
                              absl::string_view v);

// ---------------------------------------------------------------- ops

etcdserverpb::RequestOp OpGet(absl::string_view key, const GetOptions& g = {});
etcdserverpb::RequestOp OpPut(absl::string_view key, absl::string_view value,
                              const PutOptions& p = {});
etcdserverpb::RequestOp OpDelete(absl::string_view key,
                                 const DeleteOptions& d = {});
// A nested transaction (etcd 3.3+).
etcdserverpb::RequestOp OpTxn(etcdserverpb::TxnRequest t);

// ---------------------------------------------------------------- Txn

class Txn {
 public:
  explicit Txn(Client* client) : client_(client) {}

  template <typename... C>
  Txn& If(C&&... cmps) {
    Step(kIf);
    (AddCompare(std::forward<C>(cmps)), ...);
    return *this;
  }
  template <typename... O>
  Txn& Then(O&&... ops) {
    Step(kThen);
    (AddOp(req_.mutable_success(), std::forward<O>(ops)), ...);
    return *this;
  }
  template <typename... O>
  Txn& Else(O&&... ops) {
    Step(kElse);
    (AddOp(req_.mutable_failure(), std::forward<O>(ops)), ...);
    return *this;
  }

  absl::StatusOr<etcdserverpb::TxnResponse> Commit(
      const CallOptions& o = {}) const;
  // Commits on the client's async threads; the builder may be dropped.
  std::future<absl::StatusOr<etcdserverpb::TxnResponse>> CommitAsync(
      const CallOptions& o = {}) const;

  const etcdserverpb::TxnRequest& request() const { return req_; }

 private:
  enum Stage { kNone, kIf, kThen, kElse };
  void Step(Stage s);
  void AddCompare(const etcdserverpb::Compare& c);
  void AddCompare(const std::vector<etcdserverpb::Compare>& cs) {
    for (const auto& c : cs) AddCompare(c);
  }
  static void AddOp(
      google::protobuf::RepeatedPtrField<etcdserverpb::RequestOp>* to,
      const etcdserverpb::RequestOp& op) {
    *to->Add() = op;
  }
  static void AddOp(
      google::protobuf::RepeatedPtrField<etcdserverpb::RequestOp>* to,
      const std::vector<etcdserverpb::RequestOp>& ops) {
    for (const auto& op : ops) *to->Add() = op;
  }

  Client* client_;
  etcdserverpb::TxnRequest req_;
  Stage stage_ = kNone;
  absl::Status error_;  // the first misuse, reported by Commit
};

}  // namespace detcd::client

#endif  // DETCD_CLIENT_KV_H_
