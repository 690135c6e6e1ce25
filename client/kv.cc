#include "detcd/kv.h"

#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "detcd/recipe_core.h"

namespace detcd::client {
namespace {

namespace pb = etcdserverpb;

pb::Compare::CompareResult ToResult(CmpOp op) {
  switch (op) {
    case CmpOp::kEqual:
      return pb::Compare::EQUAL;
    case CmpOp::kNotEqual:
      return pb::Compare::NOT_EQUAL;
    case CmpOp::kGreater:
      return pb::Compare::GREATER;
    case CmpOp::kLess:
      return pb::Compare::LESS;
  }
  return pb::Compare::EQUAL;
}

// The range end for key with the range_end / prefix / from_key options
// (clientv3's op.go: from_key is "\0", a prefix its PrefixEnd).
std::string RangeEnd(absl::string_view key, const std::string& range_end,
                     bool prefix, bool from_key) {
  if (!range_end.empty()) return range_end;
  if (prefix) return PrefixEnd(key);
  if (from_key) return std::string(1, '\0');
  return "";
}

}  // namespace

// One rule for both layers: the recipe machines keep it (they need nothing
// but the messages).
std::string PrefixEnd(absl::string_view prefix) {
  return RecipePrefixEnd(prefix);
}

pb::RangeRequest MakeRangeRequest(absl::string_view key, const GetOptions& g) {
  pb::RangeRequest r;
  r.set_key(std::string(key));
  r.set_range_end(RangeEnd(key, g.range_end, g.prefix, g.from_key));
  r.set_revision(g.revision);
  r.set_limit(g.limit);
  r.set_serializable(g.serializable);
  r.set_keys_only(g.keys_only);
  r.set_count_only(g.count_only);
  r.set_sort_target(g.sort_target);
  r.set_sort_order(g.sort_order);
  r.set_min_mod_revision(g.min_mod_revision);
  r.set_max_mod_revision(g.max_mod_revision);
  r.set_min_create_revision(g.min_create_revision);
  r.set_max_create_revision(g.max_create_revision);
  return r;
}

pb::PutRequest MakePutRequest(absl::string_view key, absl::string_view value,
                              const PutOptions& p) {
  pb::PutRequest r;
  r.set_key(std::string(key));
  r.set_value(std::string(value));
  r.set_lease(p.lease);
  r.set_prev_kv(p.prev_kv);
  r.set_ignore_value(p.ignore_value);
  r.set_ignore_lease(p.ignore_lease);
  return r;
}

pb::DeleteRangeRequest MakeDeleteRequest(absl::string_view key,
                                         const DeleteOptions& d) {
  pb::DeleteRangeRequest r;
  r.set_key(std::string(key));
  r.set_range_end(RangeEnd(key, d.range_end, d.prefix, d.from_key));
  r.set_prev_kv(d.prev_kv);
  return r;
}

pb::Compare Compare(const CmpTarget& t, CmpOp op, int64_t v) {
  pb::Compare c;
  c.set_key(t.key);
  c.set_range_end(t.range_end);
  c.set_target(t.target);
  c.set_result(ToResult(op));
  switch (t.target) {
    case pb::Compare::VERSION:
      c.set_version(v);
      break;
    case pb::Compare::CREATE:
      c.set_create_revision(v);
      break;
    case pb::Compare::MOD:
      c.set_mod_revision(v);
      break;
    case pb::Compare::LEASE:
      c.set_lease(v);
      break;
    default:
      break;  // left without a value: Txn::If reports it
  }
  return c;
}

pb::Compare Compare(const CmpTarget& t, CmpOp op, absl::string_view v) {
  pb::Compare c;
  c.set_key(t.key);
  c.set_range_end(t.range_end);
  c.set_target(t.target);
  c.set_result(ToResult(op));
  if (t.target == pb::Compare::VALUE) c.set_value(std::string(v));
  return c;
}

pb::RequestOp OpGet(absl::string_view key, const GetOptions& g) {
  pb::RequestOp op;
  *op.mutable_request_range() = MakeRangeRequest(key, g);
  return op;
}

pb::RequestOp OpPut(absl::string_view key, absl::string_view value,
                    const PutOptions& p) {
  pb::RequestOp op;
  *op.mutable_request_put() = MakePutRequest(key, value, p);
  return op;
}

pb::RequestOp OpDelete(absl::string_view key, const DeleteOptions& d) {
  pb::RequestOp op;
  *op.mutable_request_delete_range() = MakeDeleteRequest(key, d);
  return op;
}

pb::RequestOp OpTxn(pb::TxnRequest t) {
  pb::RequestOp op;
  *op.mutable_request_txn() = std::move(t);
  return op;
}

// ---------------------------------------------------------------- Txn

void Txn::Step(Stage s) {
  static constexpr const char* kNames[] = {"", "If", "Then", "Else"};
  if (error_.ok() && stage_ >= s) {
    // clientv3 panics with these texts; we report them on Commit.
    error_ = absl::InvalidArgumentError(
        stage_ == s ? absl::StrCat("cannot call ", kNames[s], " twice!")
                    : absl::StrCat("cannot call ", kNames[s], " after ",
                                   kNames[stage_], "!"));
  }
  stage_ = s;
}

void Txn::AddCompare(const pb::Compare& c) {
  if (error_.ok() &&
      c.target_union_case() == pb::Compare::TARGET_UNION_NOT_SET) {
    error_ = absl::InvalidArgumentError(absl::StrCat(
        "bad compare value type for target ",
        pb::Compare::CompareTarget_Name(c.target()), " of key ", c.key()));
  }
  *req_.add_compare() = c;
}

absl::StatusOr<pb::TxnResponse> Txn::Commit(const CallOptions& o) const {
  if (!error_.ok()) return error_;
  return client_->Txn(req_, o);
}

std::future<absl::StatusOr<pb::TxnResponse>> Txn::CommitAsync(
    const CallOptions& o) const {
  if (!error_.ok()) {
    std::promise<absl::StatusOr<pb::TxnResponse>> p;
    p.set_value(error_);
    return p.get_future();
  }
  return client_->Async([req = req_, o](Client& c) { return c.Txn(req, o); });
}

// ---------------------------------------------------------------- Client

absl::StatusOr<pb::RangeResponse> Client::Get(absl::string_view key,
                                              const GetOptions& g,
                                              const CallOptions& o) {
  return Range(MakeRangeRequest(key, g), o);
}

absl::StatusOr<pb::PutResponse> Client::Put(absl::string_view key,
                                            absl::string_view value,
                                            const PutOptions& p,
                                            const CallOptions& o) {
  return Put(MakePutRequest(key, value, p), o);
}

absl::StatusOr<pb::DeleteRangeResponse> Client::Delete(absl::string_view key,
                                                       const DeleteOptions& d,
                                                       const CallOptions& o) {
  return DeleteRange(MakeDeleteRequest(key, d), o);
}

std::future<absl::StatusOr<pb::RangeResponse>> Client::GetAsync(std::string key,
                                                                GetOptions g,
                                                                CallOptions o) {
  return Async(
      [r = MakeRangeRequest(key, g), o](Client& c) { return c.Range(r, o); });
}

std::future<absl::StatusOr<pb::PutResponse>> Client::PutAsync(std::string key,
                                                              std::string value,
                                                              PutOptions p,
                                                              CallOptions o) {
  return Async([r = MakePutRequest(key, value, p), o](Client& c) {
    return c.Put(r, o);
  });
}

std::future<absl::StatusOr<pb::DeleteRangeResponse>> Client::DeleteAsync(
    std::string key, DeleteOptions d, CallOptions o) {
  return Async([r = MakeDeleteRequest(key, d), o](Client& c) {
    return c.DeleteRange(r, o);
  });
}

}  // namespace detcd::client
