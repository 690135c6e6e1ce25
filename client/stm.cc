#include "detcd/stm.h"

#include <algorithm>
#include <limits>
#include <optional>
#include <utility>

#include "detcd/kv.h"

namespace detcd::client {
namespace {

namespace pb = etcdserverpb;

// The key is as it was read: same mod revision, or still absent.
pb::Compare IsCurrent(const std::string& key, const pb::RangeResponse& r) {
  return Compare(cmp::ModRevision(key), CmpOp::kEqual,
                 r.kvs_size() > 0 ? r.kvs(0).mod_revision() : 0);
}

}  // namespace

void Stm::Reset() {
  rset_.clear();
  wset_.clear();
  error_ = absl::OkStatus();
  if (opts_.isolation != Isolation::kSerializableSnapshot &&
      opts_.isolation != Isolation::kSerializable) {
    prefetched_.clear();
  }
  read_rev_ = 0;
}

const pb::RangeResponse* Stm::Fetch(const std::vector<std::string>& keys) {
  if (keys.empty() || !error_.ok()) return nullptr;
  if (SnapshotReads()) {
    // Values a conflicting commit fetched serve this attempt's reads.
    for (const std::string& k : keys) {
      auto it = prefetched_.find(k);
      if (it == prefetched_.end()) continue;
      rset_[k] = std::move(it->second);
      prefetched_.erase(it);
    }
  }
  if (auto it = rset_.find(keys[0]); it != rset_.end()) {
    if (SnapshotReads() && read_rev_ == 0) {
      read_rev_ = it->second.header().revision();
    }
    return &it->second;
  }
  GetOptions g;
  // Repeatable and read-committed reads may come from any member; the
  // snapshot levels read at the first read's revision (any member too).
  g.serializable = !SnapshotReads() || read_rev_ != 0;
  g.revision = SnapshotReads() ? read_rev_ : 0;
  pb::TxnRequest t;
  for (const std::string& k : keys) *t.add_success() = OpGet(k, g);
  auto r = c_->Txn(t, opts_.call);
  if (!r.ok()) {
    error_ = r.status();
    return nullptr;
  }
  for (size_t i = 0; i < keys.size(); ++i) {
    pb::RangeResponse rr = r->responses(static_cast<int>(i)).response_range();
    // Read at the transaction's revision, whether or not the server fills
    // the inner header.
    if (rr.header().revision() == 0) {
      *rr.mutable_header() = r->header();
    }
    rset_.emplace(keys[i], std::move(rr));
  }
  if (SnapshotReads() && read_rev_ == 0) {
    // The transaction's base revision is its first read's.
    read_rev_ = r->header().revision();
  }
  return &rset_.at(keys[0]);
}

std::string Stm::Get(const std::vector<std::string>& keys) {
  for (const std::string& k : keys) {
    if (auto it = wset_.find(k); it != wset_.end()) return it->second.value;
  }
  const pb::RangeResponse* r = Fetch(keys);
  if (r == nullptr || r->kvs_size() == 0) return "";
  return r->kvs(0).value();
}

int64_t Stm::Rev(const std::string& key) {
  const pb::RangeResponse* r = Fetch({key});
  if (r == nullptr || r->kvs_size() == 0) return 0;
  return r->kvs(0).mod_revision();
}

void Stm::Put(const std::string& key, const std::string& value, int64_t lease) {
  PutOptions p;
  p.lease = lease;
  wset_[key] = Write{value, OpPut(key, value, p)};
}

void Stm::Del(const std::string& key) { wset_[key] = Write{"", OpDelete(key)}; }

absl::StatusOr<std::optional<pb::TxnResponse>> Stm::Commit() {
  pb::TxnRequest t;
  if (opts_.isolation != Isolation::kReadCommitted) {
    for (const auto& [k, r] : rset_) *t.add_compare() = IsCurrent(k, r);
  }
  if (opts_.isolation == Isolation::kSerializableSnapshot) {
    // Written keys must not have changed since the first read either.
    int64_t first = std::numeric_limits<int64_t>::max() - 1;
    for (const auto& [k, r] : rset_) {
      first = std::min(first, r.header().revision());
    }
    for (const auto& [k, w] : wset_) {
      *t.add_compare() = Compare(cmp::ModRevision(k), CmpOp::kLess, first + 1);
    }
  }
  for (const auto& [k, w] : wset_) *t.add_success() = w.op;
  std::vector<std::string> read_keys;
  if (SnapshotReads()) {
    // On a conflict, the failure branch brings the keys back for the next
    // attempt (one round trip saved, as clientv3).
    for (const auto& [k, r] : rset_) {
      read_keys.push_back(k);
      *t.add_failure() = OpGet(k);
    }
  }
  auto r = c_->Txn(t, opts_.call);
  if (!r.ok()) return r.status();
  if (r->succeeded()) return std::optional<pb::TxnResponse>(*std::move(r));
  if (SnapshotReads()) {
    prefetched_.clear();
    for (size_t i = 0; i < read_keys.size(); ++i) {
      pb::RangeResponse rr = r->responses(static_cast<int>(i)).response_range();
      if (rr.header().revision() == 0) *rr.mutable_header() = r->header();
      prefetched_[read_keys[i]] = std::move(rr);
    }
  }
  return std::optional<pb::TxnResponse>();
}

absl::StatusOr<pb::TxnResponse> RunStm(
    Client* c, const std::function<absl::Status(Stm&)>& apply,
    const StmOptions& opts) {
  Stm s(c, opts);
  for (int attempt = 1;; ++attempt) {
    s.Reset();
    if (!opts.prefetch.empty()) s.Get(opts.prefetch);
    absl::Status as = s.ok() ? apply(s) : absl::OkStatus();
    if (!s.error_.ok()) return s.error_;
    if (!as.ok()) return as;
    auto r = s.Commit();
    if (!r.ok()) return r.status();
    if (r->has_value()) return **r;
    if (opts.max_attempts > 0 && attempt >= opts.max_attempts) {
      return absl::AbortedError("stm: too many conflicts");
    }
  }
}

}  // namespace detcd::client
