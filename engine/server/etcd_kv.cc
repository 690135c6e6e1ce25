#include "engine/server/etcd_kv.h"

#include <algorithm>
#include <cstdint>
#include <functional>
#include <iterator>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "engine/util/check.h"

namespace detcd::server {

namespace pb = ::etcdserverpb;
using mvcc::KvStore;

// ---------------------------------------------------------------- errors

absl::Status ErrEmptyKey() {
  return absl::InvalidArgumentError("etcdserver: key is not provided");
}
absl::Status ErrKeyNotFound() {
  return absl::InvalidArgumentError("etcdserver: key not found");
}
absl::Status ErrValueProvided() {
  return absl::InvalidArgumentError("etcdserver: value is provided");
}
absl::Status ErrLeaseProvided() {
  return absl::InvalidArgumentError("etcdserver: lease is provided");
}
absl::Status ErrTooManyOps() {
  return absl::InvalidArgumentError(
      "etcdserver: too many operations in txn request");
}
absl::Status ErrDuplicateKey() {
  return absl::InvalidArgumentError(
      "etcdserver: duplicate key given in txn request");
}
absl::Status ErrInvalidSortOption() {
  return absl::InvalidArgumentError("etcdserver: invalid sort option");
}
absl::Status ErrLeaseNotFound() {
  return absl::NotFoundError("etcdserver: requested lease not found");
}
absl::Status ErrRequestTooLarge() {
  return absl::InvalidArgumentError("etcdserver: request is too large");
}

absl::Status KvLimits::Validate() const {
  if (max_txn_ops < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_txn_ops must be >= 1, got ", max_txn_ops));
  }
  if (max_request_bytes < 1 || max_request_bytes > kMaxRequestBytesCeiling) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_request_bytes must be in [1, ",
                     kMaxRequestBytesCeiling, "], got ", max_request_bytes));
  }
  return absl::OkStatus();
}

// ------------------------------------------------------------ conversions

void ToProto(const mvcc::KeyValue& kv, mvccpb::KeyValue* out) {
  out->set_key(kv.key);
  out->set_create_revision(kv.create_revision);
  out->set_mod_revision(kv.mod_revision);
  out->set_version(kv.version);
  out->set_value(kv.value);
  out->set_lease(kv.lease);
}

void ToProto(mvcc::KeyValue&& kv, mvccpb::KeyValue* out) {
  out->set_key(std::move(kv.key));
  out->set_create_revision(kv.create_revision);
  out->set_mod_revision(kv.mod_revision);
  out->set_version(kv.version);
  out->set_value(std::move(kv.value));
  out->set_lease(kv.lease);
}

void ToProto(const mvcc::Event& e, mvccpb::Event* out) {
  out->set_type(e.type == mvcc::Event::kDelete ? mvccpb::Event::DELETE
                                               : mvccpb::Event::PUT);
  ToProto(e.kv, out->mutable_kv());
  if (e.has_prev_kv) ToProto(e.prev_kv, out->mutable_prev_kv());
}

// ------------------------------------------------------------- validation

namespace {

// A set of keys covered by delete ranges, kept as disjoint half-open
// intervals [begin, end) in a map so that membership is one lookup. An
// absent end is +infinity. A single key k is [k, k + "\0"): the next
// string after k in byte order.
class KeyIntervalSet {
 public:
  // [key, range_end) as etcd 3.4's duplicate check sees it: an empty
  // range_end is the single key, and an end <= key is empty. So is a
  // from-key range (range_end "\0"): etcd 3.4 compares "\0" as a plain
  // string, below every key, so such a delete never conflicts with a put
  // (etcdctl 3.4 accepts `del a --from-key` then `put a 2` in one txn; the
  // put lands after the delete, at the same revision).
  void AddRange(const std::string& key, const std::string& range_end) {
    if (range_end.empty()) {
      Add(key, std::string(key) + '\0');
    } else if (range_end == std::string_view("\0", 1)) {
      return;
    } else if (key < range_end) {
      Add(key, range_end);
    }
  }

  bool Contains(const std::string& k) const {
    auto it = spans_.upper_bound(k);
    if (it == spans_.begin()) return false;
    --it;
    return !it->second.has_value() || k < *it->second;
  }

  void Merge(const KeyIntervalSet& other) {
    for (const auto& [b, e] : other.spans_) Add(b, e);
  }

 private:
  using End = std::optional<std::string>;  // nullopt: +infinity

  static bool EndLess(const End& a, const End& b) {
    if (!a.has_value()) return false;
    if (!b.has_value()) return true;
    return *a < *b;
  }

  void Add(std::string b, End e) {
    // Absorb every span that overlaps or touches [b, e).
    auto it = spans_.upper_bound(b);
    if (it != spans_.begin()) {
      auto prev = std::prev(it);
      if (!prev->second.has_value() || !(*prev->second < b)) {
        b = prev->first;
        if (EndLess(e, prev->second)) e = prev->second;
        it = spans_.erase(prev);
      }
    }
    while (it != spans_.end() && (!e.has_value() || !(*e < it->first))) {
      if (EndLess(e, it->second)) e = it->second;
      it = spans_.erase(it);
    }
    spans_.emplace(std::move(b), std::move(e));
  }

  std::map<std::string, End> spans_;
};

// etcd's checkIntervals: the keys a list of ops (and its nested txns) may
// put, and the ranges it may delete, failing on a key that two of them
// would both change.
absl::Status CheckIntervals(
    const google::protobuf::RepeatedPtrField<pb::RequestOp>& ops,
    std::set<std::string>* puts, KeyIntervalSet* dels) {
  // This level's deletes first: nested puts are checked against them.
  for (const pb::RequestOp& op : ops) {
    if (op.request_case() != pb::RequestOp::kRequestDeleteRange) continue;
    dels->AddRange(op.request_delete_range().key(),
                   op.request_delete_range().range_end());
  }
  for (const pb::RequestOp& op : ops) {
    if (op.request_case() != pb::RequestOp::kRequestTxn) continue;
    std::set<std::string> puts_then, puts_else;
    KeyIntervalSet dels_then, dels_else;
    if (absl::Status s =
            CheckIntervals(op.request_txn().success(), &puts_then, &dels_then);
        !s.ok()) {
      return s;
    }
    if (absl::Status s =
            CheckIntervals(op.request_txn().failure(), &puts_else, &dels_else);
        !s.ok()) {
      return s;
    }
    for (const std::string& k : puts_then) {
      if (puts->contains(k) || dels->Contains(k)) return ErrDuplicateKey();
      puts->insert(k);
    }
    for (const std::string& k : puts_else) {
      // The two branches exclude each other, so a key both put is fine.
      if (puts->contains(k) && !puts_then.contains(k)) {
        return ErrDuplicateKey();
      }
      if (dels->Contains(k)) return ErrDuplicateKey();
      puts->insert(k);
    }
    dels->Merge(dels_then);
    dels->Merge(dels_else);
  }
  for (const pb::RequestOp& op : ops) {
    if (op.request_case() != pb::RequestOp::kRequestPut) continue;
    const std::string& k = op.request_put().key();
    if (puts->contains(k) || dels->Contains(k)) return ErrDuplicateKey();
    puts->insert(k);
  }
  return absl::OkStatus();
}

absl::Status CheckDuplicates(const pb::TxnRequest& r) {
  for (const auto* ops : {&r.success(), &r.failure()}) {
    std::set<std::string> puts;
    KeyIntervalSet dels;
    if (absl::Status s = CheckIntervals(*ops, &puts, &dels); !s.ok()) {
      return s;
    }
  }
  return absl::OkStatus();
}

absl::Status CheckTxnOps(const pb::TxnRequest& r, int64_t max_ops);

absl::Status CheckRequestOp(const pb::RequestOp& op, int64_t max_ops) {
  switch (op.request_case()) {
    case pb::RequestOp::kRequestRange:
      return CheckRange(op.request_range());
    case pb::RequestOp::kRequestPut:
      return CheckPut(op.request_put());
    case pb::RequestOp::kRequestDeleteRange:
      return CheckDeleteRange(op.request_delete_range());
    case pb::RequestOp::kRequestTxn:
      return CheckTxnOps(op.request_txn(), max_ops);
    case pb::RequestOp::REQUEST_NOT_SET:
      break;
  }
  return ErrKeyNotFound();  // etcd's answer to an empty op
}

// etcd's checkTxnRequest: each list may hold max_ops entries; a nested
// txn may hold what the largest list of its parent leaves.
absl::Status CheckTxnOps(const pb::TxnRequest& r, int64_t max_ops) {
  const int64_t opc =
      std::max({r.compare_size(), r.success_size(), r.failure_size()});
  if (opc > max_ops) return ErrTooManyOps();
  for (const pb::Compare& c : r.compare()) {
    if (c.key().empty()) return ErrEmptyKey();
  }
  for (const auto* ops : {&r.success(), &r.failure()}) {
    for (const pb::RequestOp& op : *ops) {
      if (absl::Status s = CheckRequestOp(op, max_ops - opc); !s.ok()) {
        return s;
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status CheckRange(const pb::RangeRequest& r) {
  if (r.key().empty()) return ErrEmptyKey();
  if (!pb::RangeRequest::SortOrder_IsValid(r.sort_order()) ||
      !pb::RangeRequest::SortTarget_IsValid(r.sort_target())) {
    return ErrInvalidSortOption();
  }
  return absl::OkStatus();
}

absl::Status CheckPut(const pb::PutRequest& r) {
  if (r.key().empty()) return ErrEmptyKey();
  if (r.ignore_value() && !r.value().empty()) return ErrValueProvided();
  if (r.ignore_lease() && r.lease() != 0) return ErrLeaseProvided();
  return absl::OkStatus();
}

absl::Status CheckDeleteRange(const pb::DeleteRangeRequest& r) {
  if (r.key().empty()) return ErrEmptyKey();
  return absl::OkStatus();
}

absl::Status CheckTxn(const pb::TxnRequest& r, const KvLimits& limits) {
  if (absl::Status s = CheckTxnOps(r, limits.max_txn_ops); !s.ok()) return s;
  // After the per-op checks, which bound the request's size, as etcd does.
  return CheckDuplicates(r);
}

absl::Status CheckCompaction(const pb::CompactionRequest&) {
  return absl::OkStatus();
}

absl::Status CheckRequestSize(size_t encoded_bytes, const KvLimits& limits) {
  if (encoded_bytes > limits.max_request_bytes) return ErrRequestTooLarge();
  return absl::OkStatus();
}

bool IsTxnReadOnly(const pb::TxnRequest& r) {
  for (const auto* ops : {&r.success(), &r.failure()}) {
    for (const pb::RequestOp& op : *ops) {
      if (op.request_case() != pb::RequestOp::kRequestRange) return false;
    }
  }
  return true;
}

// ------------------------------------------------------------------ apply

namespace {

// The sort target's order over key-values or views of them (the same
// field names).
template <typename T>
using Less = bool (*)(const T&, const T&);

template <typename T>
Less<T> SortLess(pb::RangeRequest::SortTarget target) {
  switch (target) {
    case pb::RangeRequest::KEY:
      return [](const T& a, const T& b) { return a.key < b.key; };
    case pb::RangeRequest::VERSION:
      return [](const T& a, const T& b) { return a.version < b.version; };
    case pb::RangeRequest::CREATE:
      return [](const T& a, const T& b) {
        return a.create_revision < b.create_revision;
      };
    case pb::RangeRequest::MOD:
      return [](const T& a, const T& b) {
        return a.mod_revision < b.mod_revision;
      };
    case pb::RangeRequest::VALUE:
      return [](const T& a, const T& b) { return a.value < b.value; };
    default:
      break;
  }
  return nullptr;
}

}  // namespace

absl::StatusOr<RangeReader> RangeReader::Begin(const pb::RangeRequest& r) {
  RangeReader rd;
  rd.r_ = &r;
  rd.less_ = SortLess<mvcc::KeyValue>(r.sort_target());
  rd.less_view_ = SortLess<mvcc::KeyValueView>(r.sort_target());
  if (!pb::RangeRequest::SortOrder_IsValid(r.sort_order()) ||
      rd.less_ == nullptr) {
    return ErrInvalidSortOption();
  }
  // A non-key target with no order means ascending (the store's order is
  // by key). etcd decides whether to read everything from the order as
  // given, so such a request still reads limit + 1 keys in key order and
  // sorts only those: kept as etcd does it.
  rd.order_ = r.sort_order();
  if (r.sort_target() != pb::RangeRequest::KEY &&
      rd.order_ == pb::RangeRequest::NONE) {
    rd.order_ = pb::RangeRequest::ASCEND;
  }
  const bool filtered =
      r.min_mod_revision() != 0 || r.max_mod_revision() != 0 ||
      r.min_create_revision() != 0 || r.max_create_revision() != 0;
  int64_t limit = r.limit();
  if (r.sort_order() != pb::RangeRequest::NONE || filtered) {
    limit = 0;  // sort and filter everything, truncate afterwards
  }
  if (limit > 0 && limit < std::numeric_limits<int64_t>::max()) {
    ++limit;  // one extra tells whether there is more
  } else {
    limit = 0;  // no limit (negative limits mean none in etcd too)
  }
  rd.limit_ = limit;
  rd.filtered_ = filtered;
  // Neither sorted nor filtered: each piece's key-values go straight into
  // the response.
  rd.direct_ = rd.order_ == pb::RangeRequest::NONE && !filtered;
  rd.next_key_ = r.key();
  return rd;
}

template <typename Reader>
absl::StatusOr<bool> RangeReader::Read(const Reader& rd, size_t max_keys) {
  const pb::RangeRequest& r = *r_;
  const bool first = read_rev_ == 0;
  const size_t have =
      direct_ ? static_cast<size_t>(resp_.kvs_size()) : kvs_.size();
  mvcc::RangeOptions ro;
  ro.rev = first ? r.revision() : read_rev_;
  ro.count_only = r.count_only();
  if (limit_ > 0) {
    if (have >= static_cast<size_t>(limit_)) {
      ro.count_only = true;  // the rest is only counted
    } else {
      ro.limit = limit_ - static_cast<int64_t>(have);
    }
  }
  // Values are needed to sort by value; keys_only drops them afterwards.
  ro.keys_only = r.keys_only() && !(order_ != pb::RangeRequest::NONE &&
                                    r.sort_target() == pb::RangeRequest::VALUE);
  ro.max_keys = max_keys;
  if (!direct_) {
    // The store filters, and with a sort and a limit keeps only each
    // piece's first `limit` (a top-10 of a million keys is not a sort of
    // a million, nor a copy of them).
    if (filtered_) {
      ro.keep = [&r](const mvcc::KeyValueView& kv) { return Kept(r, kv); };
    }
    // (Not for a target without an order: that reads limit + 1 keys in
    // key order, as etcd, and sorts those.)
    if (order_ != pb::RangeRequest::NONE && r.limit() > 0 && limit_ == 0) {
      ro.limit = r.limit();
      ro.before = [this](const mvcc::KeyValueView& a,
                         const mvcc::KeyValueView& b) {
        return BeforeView(a, b);
      };
    }
  }
  absl::StatusOr<mvcc::RangeResult> rr = rd.Range(next_key_, r.range_end(), ro);
  if (!rr.ok()) return rr.status();
  if (first) {
    header_rev_ = rr->rev;
    read_rev_ = r.revision() > 0 ? r.revision() : rr->rev;
  }
  count_ += rr->count;
  if (direct_) {
    // (No Reserve of the new size: the field must grow geometrically.)
    for (mvcc::KeyValue& kv : rr->kvs) ToProto(std::move(kv), resp_.add_kvs());
  } else {
    std::vector<mvcc::KeyValue>& piece = rr->kvs;
    kept_ +=
        ro.keep || ro.before ? static_cast<size_t>(rr->kept) : piece.size();
    if (order_ != pb::RangeRequest::NONE && !ro.before) {
      std::sort(piece.begin(), piece.end(),
                [this](const mvcc::KeyValue& a, const mvcc::KeyValue& b) {
                  return Before(a, b);
                });
    }
    if (kvs_.empty()) {
      kvs_ = std::move(piece);
    } else {
      kvs_.insert(kvs_.end(), std::make_move_iterator(piece.begin()),
                  std::make_move_iterator(piece.end()));
    }
    // Unsorted, the pieces (in key order) make one run.
    if (order_ == pb::RangeRequest::NONE && !run_ends_.empty()) {
      run_ends_.back() = kvs_.size();
    } else if (run_ends_.empty() || run_ends_.back() < kvs_.size()) {
      run_ends_.push_back(kvs_.size());
    }
  }
  if (rr->resume.has_value()) {
    next_key_ = *std::move(rr->resume);
    return false;
  }
  read_ = true;
  return direct_ || Merge(max_keys);
}

namespace {
// The sort's order, ties by key.
template <typename T>
bool SortedBefore(bool asc, Less<T> less, const T& a, const T& b) {
  if (asc ? less(a, b) : less(b, a)) return true;
  if (asc ? less(b, a) : less(a, b)) return false;
  return a.key < b.key;
}
}  // namespace

bool RangeReader::Before(const mvcc::KeyValue& a,
                         const mvcc::KeyValue& b) const {
  return SortedBefore(order_ == pb::RangeRequest::ASCEND, less_, a, b);
}

bool RangeReader::BeforeView(const mvcc::KeyValueView& a,
                             const mvcc::KeyValueView& b) const {
  return SortedBefore(order_ == pb::RangeRequest::ASCEND, less_view_, a, b);
}

bool RangeReader::Kept(const pb::RangeRequest& r,
                       const mvcc::KeyValueView& kv) {
  return !(
      (r.max_mod_revision() != 0 && kv.mod_revision > r.max_mod_revision()) ||
      (r.min_mod_revision() != 0 && kv.mod_revision < r.min_mod_revision()) ||
      (r.max_create_revision() != 0 &&
       kv.create_revision > r.max_create_revision()) ||
      (r.min_create_revision() != 0 &&
       kv.create_revision < r.min_create_revision()));
}

bool RangeReader::Merge(size_t budget) {
  const pb::RangeRequest& r = *r_;
  const size_t want =
      r.limit() > 0 ? std::min(kept_, static_cast<size_t>(r.limit())) : kept_;
  // A min-heap of the runs by their next key-value.
  auto later = [this](const std::pair<size_t, size_t>& a,
                      const std::pair<size_t, size_t>& b) {
    return Before(kvs_[b.first], kvs_[a.first]);
  };
  if (merged_ == 0 && heads_.empty()) {
    size_t begin = 0;
    for (size_t end : run_ends_) {
      if (end > begin) heads_.emplace_back(begin, end);
      begin = end;
    }
    std::make_heap(heads_.begin(), heads_.end(), later);
    resp_.mutable_kvs()->Reserve(static_cast<int>(want));
  }
  for (size_t n = 0; merged_ < want && (budget == 0 || n < budget);
       ++n, ++merged_) {
    std::pop_heap(heads_.begin(), heads_.end(), later);
    std::pair<size_t, size_t>& head = heads_.back();
    mvcc::KeyValue& kv = kvs_[head.first];
    if (r.keys_only()) kv.value.clear();  // read to sort by value
    ToProto(std::move(kv), resp_.add_kvs());
    if (++head.first == head.second) {
      heads_.pop_back();
    } else {
      std::push_heap(heads_.begin(), heads_.end(), later);
    }
  }
  if (merged_ < want) return false;
  std::vector<mvcc::KeyValue>().swap(kvs_);
  heads_.clear();
  return true;
}

template <typename Reader>
absl::StatusOr<bool> RangeReader::StepOn(const Reader& rd, size_t max_keys) {
  if (read_) return direct_ || Merge(max_keys);
  return Read(rd, max_keys);
}

absl::StatusOr<bool> RangeReader::Step(const KvStore& kv, size_t max_keys) {
  return StepOn(kv, max_keys);
}

pb::RangeResponse RangeReader::Finish() && {
  const pb::RangeRequest& r = *r_;
  pb::RangeResponse resp = std::move(resp_);
  const size_t max = r.limit() > 0 ? static_cast<size_t>(r.limit()) : 0;
  if (direct_) {
    if (max > 0 && static_cast<size_t>(resp.kvs_size()) > max) {
      resp.mutable_kvs()->DeleteSubrange(
          static_cast<int>(max), resp.kvs_size() - static_cast<int>(max));
      resp.set_more(true);
    }
  } else if (max > 0 && kept_ > max) {
    resp.set_more(true);
  }
  if (r.count_only()) resp.clear_kvs();
  resp.mutable_header()->set_revision(header_rev_);
  resp.set_count(count_);
  return resp;
}

namespace {

// etcd's applierV3backend.Range over any reader with KvStore's Range
// signature, in one piece. `current_rev` is the reader's revision, which
// etcd reports whatever revision was read.
template <typename Reader>
absl::StatusOr<pb::RangeResponse> RangeImpl(const Reader& rd,
                                            int64_t current_rev,
                                            const pb::RangeRequest& r) {
  absl::StatusOr<RangeReader> reader = RangeReader::Begin(r);
  if (!reader.ok()) return reader.status();
  absl::StatusOr<bool> done = reader->StepOn(rd, 0);
  if (!done.ok()) return done.status();
  DETCD_CHECK(*done);
  pb::RangeResponse resp = std::move(*reader).Finish();
  resp.mutable_header()->set_revision(current_rev);
  return resp;
}

int CompareInt(int64_t a, int64_t b) { return a < b ? -1 : (a > b ? 1 : 0); }

// etcd's compareKV. A target_union of another kind than the target reads
// as 0 / empty; unknown targets compare equal, unknown results hold.
bool CompareKv(const pb::Compare& c, const mvcc::KeyValue& kv) {
  int result = 0;
  switch (c.target()) {
    case pb::Compare::VALUE: {
      const std::string& v = c.target_union_case() == pb::Compare::kValue
                                 ? c.value()
                                 : std::string();
      const int cmp = kv.value.compare(v);
      result = cmp < 0 ? -1 : (cmp > 0 ? 1 : 0);
      break;
    }
    case pb::Compare::CREATE:
      result = CompareInt(kv.create_revision, c.create_revision());
      break;
    case pb::Compare::MOD:
      result = CompareInt(kv.mod_revision, c.mod_revision());
      break;
    case pb::Compare::VERSION:
      result = CompareInt(kv.version, c.version());
      break;
    case pb::Compare::LEASE:
      result = CompareInt(kv.lease, c.lease());
      break;
    default:
      break;
  }
  switch (c.result()) {
    case pb::Compare::EQUAL:
      return result == 0;
    case pb::Compare::NOT_EQUAL:
      return result != 0;
    case pb::Compare::GREATER:
      return result > 0;
    case pb::Compare::LESS:
      return result < 0;
    default:
      return true;
  }
}

// etcd's applyCompare: every key in the range must satisfy the compare; a
// missing key compares as a zero KeyValue, except that a value compare on
// no key always fails (a missing value cannot be told from an empty one).
template <typename Reader>
bool ApplyCompare(const Reader& rd, const pb::Compare& c) {
  mvcc::RangeOptions ro;
  ro.keys_only = c.target() != pb::Compare::VALUE;
  absl::StatusOr<mvcc::RangeResult> rr = rd.Range(c.key(), c.range_end(), ro);
  if (!rr.ok()) return false;
  if (rr->kvs.empty()) {
    if (c.target() == pb::Compare::VALUE) return false;
    return CompareKv(c, mvcc::KeyValue{});
  }
  for (const mvcc::KeyValue& kv : rr->kvs) {
    if (!CompareKv(c, kv)) return false;
  }
  return true;
}

const google::protobuf::RepeatedPtrField<pb::RequestOp>& Branch(
    const pb::TxnRequest& r, bool succeeded) {
  return succeeded ? r.success() : r.failure();
}

// The outcome of every compare list the txn will meet, in pre-order (the
// txn's own, then its chosen branch's nested txns in order), all evaluated
// before anything changes, as etcd's compareToPath.
template <typename Reader>
void ComputePath(const Reader& rd, const pb::TxnRequest& r,
                 std::vector<bool>* path) {
  bool ok = true;
  for (const pb::Compare& c : r.compare()) {
    if (!ApplyCompare(rd, c)) {
      ok = false;
      break;
    }
  }
  path->push_back(ok);
  for (const pb::RequestOp& op : Branch(r, ok)) {
    if (op.request_case() == pb::RequestOp::kRequestTxn) {
      ComputePath(rd, op.request_txn(), path);
    }
  }
}

// Visits the ops on the chosen path (not descending into nested txns'
// ops itself: `f` gets every non-txn op), stopping at the first error.
absl::Status ForEachOpOnPath(
    const pb::TxnRequest& r, const std::vector<bool>& path, size_t* pos,
    const std::function<absl::Status(const pb::RequestOp&)>& f) {
  DETCD_CHECK(*pos < path.size());
  const bool ok = path[(*pos)++];
  for (const pb::RequestOp& op : Branch(r, ok)) {
    absl::Status s = op.request_case() == pb::RequestOp::kRequestTxn
                         ? ForEachOpOnPath(op.request_txn(), path, pos, f)
                         : f(op);
    if (!s.ok()) return s;
  }
  return absl::OkStatus();
}

// etcd's checkRequestPut, against the state before the txn.
template <typename Reader>
absl::Status CheckPutOp(const Reader& rd, const LeaseHooks* leases,
                        const pb::RequestOp& op) {
  if (op.request_case() != pb::RequestOp::kRequestPut) return absl::OkStatus();
  const pb::PutRequest& p = op.request_put();
  if (p.ignore_value() || p.ignore_lease()) {
    mvcc::RangeOptions ro;
    ro.keys_only = true;
    absl::StatusOr<mvcc::RangeResult> rr = rd.Range(p.key(), "", ro);
    if (!rr.ok()) return rr.status();
    if (rr->kvs.empty()) return ErrKeyNotFound();
  }
  if (p.lease() != 0 && (leases == nullptr || !leases->Exists(p.lease()))) {
    return ErrLeaseNotFound();
  }
  return absl::OkStatus();
}

// etcd's checkRequestRange: a range of a past or future revision must be
// readable. The store applies the same rules to any read of that
// revision, so one single-key read tells.
template <typename Reader>
absl::Status CheckRangeOp(const Reader& rd, const pb::RequestOp& op) {
  if (op.request_case() != pb::RequestOp::kRequestRange) {
    return absl::OkStatus();
  }
  const pb::RangeRequest& rq = op.request_range();
  if (rq.revision() <= 0) return absl::OkStatus();
  mvcc::RangeOptions ro;
  ro.rev = rq.revision();
  ro.keys_only = true;
  ro.limit = 1;
  absl::StatusOr<mvcc::RangeResult> rr = rd.Range(rq.key(), "", ro);
  return rr.status();
}

void AttachMoved(LeaseHooks* leases, std::string_view key, int64_t old_lease,
                 int64_t new_lease) {
  if (leases == nullptr || old_lease == new_lease) return;
  if (old_lease != 0) leases->Detach(old_lease, key);
  if (new_lease != 0) leases->Attach(new_lease, key);
}

// The put itself; the lease's existence is the caller's to check.
absl::StatusOr<pb::PutResponse> PutImpl(KvStore::WriteTxn& txn,
                                        LeaseHooks* leases,
                                        const pb::PutRequest& p) {
  std::string_view value = p.value();
  int64_t lease = p.lease();
  std::optional<mvcc::KeyValue> existing;
  if (p.ignore_value() || p.ignore_lease()) {
    absl::StatusOr<mvcc::RangeResult> rr = txn.Range(p.key(), "", {});
    if (!rr.ok()) return rr.status();
    if (rr->kvs.empty()) return ErrKeyNotFound();
    existing = std::move(rr->kvs.front());
    if (p.ignore_value()) value = existing->value;
    if (p.ignore_lease()) lease = existing->lease;
  }
  const mvcc::KeyValue* prev = txn.PutRef(p.key(), value, lease);
  AttachMoved(leases, p.key(), prev != nullptr ? prev->lease : 0, lease);
  pb::PutResponse resp;
  if (p.prev_kv() && prev != nullptr) ToProto(*prev, resp.mutable_prev_kv());
  resp.mutable_header()->set_revision(txn.Rev());
  return resp;
}

pb::DeleteRangeResponse DeleteImpl(KvStore::WriteTxn& txn, LeaseHooks* leases,
                                   const pb::DeleteRangeRequest& d) {
  std::vector<mvcc::KeyValue> deleted = txn.DeleteRange(d.key(), d.range_end());
  pb::DeleteRangeResponse resp;
  for (const mvcc::KeyValue& kv : deleted) {
    if (leases != nullptr && kv.lease != 0) leases->Detach(kv.lease, kv.key);
    if (d.prev_kv()) ToProto(kv, resp.add_prev_kvs());
  }
  resp.set_deleted(static_cast<int64_t>(deleted.size()));
  resp.mutable_header()->set_revision(txn.Rev());
  return resp;
}

template <typename Reader>
int64_t ReaderRev(const Reader& rd) {
  return rd.Rev();
}

// Runs the chosen branch's ops in order (etcd's applyTxn). Every error an
// op could meet was ruled out beforehand, so one here is a broken
// invariant. `Reader` is KvStore (read-only txns) or KvStore::WriteTxn.
template <typename Reader>
void ExecTxn(Reader& rd, LeaseHooks* leases, const pb::TxnRequest& r,
             const std::vector<bool>& path, size_t* pos,
             pb::TxnResponse* resp) {
  DETCD_CHECK(*pos < path.size());
  const bool ok = path[(*pos)++];
  resp->set_succeeded(ok);
  const auto& ops = Branch(r, ok);
  resp->mutable_responses()->Reserve(ops.size());
  for (const pb::RequestOp& op : ops) {
    pb::ResponseOp* out = resp->add_responses();
    switch (op.request_case()) {
      case pb::RequestOp::kRequestRange: {
        absl::StatusOr<pb::RangeResponse> rr =
            RangeImpl(rd, ReaderRev(rd), op.request_range());
        DETCD_CHECK_MSG(rr.ok(), rr.status().ToString().c_str());
        *out->mutable_response_range() = std::move(*rr);
        break;
      }
      case pb::RequestOp::kRequestPut: {
        if constexpr (std::is_same_v<Reader, KvStore::WriteTxn>) {
          absl::StatusOr<pb::PutResponse> pr =
              PutImpl(rd, leases, op.request_put());
          DETCD_CHECK_MSG(pr.ok(), pr.status().ToString().c_str());
          *out->mutable_response_put() = std::move(*pr);
        } else {
          DETCD_CHECK_MSG(false, "put in a read-only txn");
        }
        break;
      }
      case pb::RequestOp::kRequestDeleteRange: {
        if constexpr (std::is_same_v<Reader, KvStore::WriteTxn>) {
          *out->mutable_response_delete_range() =
              DeleteImpl(rd, leases, op.request_delete_range());
        } else {
          DETCD_CHECK_MSG(false, "delete in a read-only txn");
        }
        break;
      }
      case pb::RequestOp::kRequestTxn: {
        // A nested txn's header stays empty, as etcd leaves it.
        pb::TxnResponse* nested = out->mutable_response_txn();
        nested->mutable_header();
        ExecTxn(rd, leases, op.request_txn(), path, pos, nested);
        break;
      }
      case pb::RequestOp::REQUEST_NOT_SET:
        break;  // an empty op gets an empty response
    }
  }
}

template <typename Reader>
absl::StatusOr<pb::TxnResponse> TxnImpl(Reader& rd, LeaseHooks* leases,
                                        const pb::TxnRequest& r) {
  // Requests that skipped CheckTxn must not be able to fail halfway.
  if (absl::Status s = CheckDuplicates(r); !s.ok()) return s;

  std::vector<bool> path;
  ComputePath(rd, r, &path);

  size_t pos = 0;
  if (absl::Status s = ForEachOpOnPath(r, path, &pos,
                                       [&rd, leases](const pb::RequestOp& op) {
                                         return CheckPutOp(rd, leases, op);
                                       });
      !s.ok()) {
    return s;
  }
  pos = 0;
  if (absl::Status s = ForEachOpOnPath(
          r, path, &pos,
          [&rd](const pb::RequestOp& op) { return CheckRangeOp(rd, op); });
      !s.ok()) {
    return s;
  }

  pb::TxnResponse resp;
  pos = 0;
  ExecTxn(rd, leases, r, path, &pos, &resp);
  DETCD_CHECK(pos == path.size());
  resp.mutable_header()->set_revision(rd.Rev());
  return resp;
}

}  // namespace

absl::StatusOr<pb::RangeResponse> ApplyRange(const KvStore& kv,
                                             const pb::RangeRequest& r) {
  return RangeImpl(kv, kv.Rev(), r);
}

absl::StatusOr<pb::RangeResponse> ApplyRange(const KvStore::WriteTxn& txn,
                                             const pb::RangeRequest& r) {
  return RangeImpl(txn, txn.Rev(), r);
}

absl::StatusOr<pb::PutResponse> ApplyPut(KvStore::WriteTxn& txn,
                                         LeaseHooks* leases,
                                         const pb::PutRequest& r) {
  if (r.lease() != 0 && (leases == nullptr || !leases->Exists(r.lease()))) {
    return ErrLeaseNotFound();
  }
  return PutImpl(txn, leases, r);
}

absl::StatusOr<pb::DeleteRangeResponse> ApplyDeleteRange(
    KvStore::WriteTxn& txn, LeaseHooks* leases,
    const pb::DeleteRangeRequest& r) {
  return DeleteImpl(txn, leases, r);
}

absl::StatusOr<pb::TxnResponse> ApplyTxn(KvStore::WriteTxn& txn,
                                         LeaseHooks* leases,
                                         const pb::TxnRequest& r) {
  return TxnImpl(txn, leases, r);
}

absl::StatusOr<pb::TxnResponse> ApplyReadOnlyTxn(const KvStore& kv,
                                                 const pb::TxnRequest& r) {
  if (!IsTxnReadOnly(r)) {
    return absl::InvalidArgumentError(
        "ApplyReadOnlyTxn: the txn has ops other than ranges");
  }
  return TxnImpl(kv, nullptr, r);
}

absl::StatusOr<pb::CompactionResponse> ApplyCompaction(
    KvStore& kv, const pb::CompactionRequest& r) {
  if (absl::Status s = kv.StartCompaction(r.revision()); !s.ok()) return s;
  pb::CompactionResponse resp;
  resp.mutable_header()->set_revision(kv.Rev());
  return resp;
}

}  // namespace detcd::server
