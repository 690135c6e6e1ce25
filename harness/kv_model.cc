#include "harness/kv_model.h"

#include <algorithm>
#include <functional>
#include <limits>
#include <string_view>
#include <utility>

#include "absl/strings/str_cat.h"
#include "engine/server/node.h"
#include "etcdserverpb/raft_internal.pb.h"
#include "etcdserverpb/rpc.pb.h"

namespace detcd::harness {
namespace {

namespace pb = ::etcdserverpb;

// etcd's ranges: empty end is the key alone, "\0" every key >= key, else
// [key, end).
bool IsFromKey(const std::string& end) { return end == std::string(1, '\0'); }

bool InRange(const std::string& k, const std::string& key,
             const std::string& end) {
  if (end.empty()) return k == key;
  if (k < key) return false;
  return IsFromKey(end) || k < end;
}

std::string Show(const mvcc::KeyValue& kv) {
  return absl::StrCat(kv.key, "=", kv.value, "@c", kv.create_revision, "/m",
                      kv.mod_revision, "/v", kv.version,
                      kv.lease != 0 ? absl::StrCat("/l", kv.lease) : "");
}

std::string Show(const mvcc::Event& e) {
  std::string s = e.type == mvcc::Event::kPut
                      ? "PUT " + Show(e.kv)
                      : absl::StrCat("DELETE ", e.kv.key, "@", e.kv.mod_revision);
  if (e.has_prev_kv) absl::StrAppend(&s, " prev ", Show(e.prev_kv));
  return s;
}

}  // namespace

// One write transaction of the model: every change gets main revision
// rev_ + 1 and the next sub revision; reads see the changes made so far.
class KvModel::Txn {
 public:
  explicit Txn(KvModel* m) : m_(m), rev_(m->rev_ + 1) {}

  // The latest version of key, this transaction's changes included.
  const Version* Latest(const std::string& key) const {
    auto it = m_->keys_.find(key);
    if (it == m_->keys_.end() || it->second.empty()) return nullptr;
    const Version& v = it->second.back();
    return v.tombstone ? nullptr : &v;
  }

  void Put(const pb::PutRequest& p) {
    const Version* cur = Latest(p.key());
    Version v;
    v.main = rev_;
    v.sub = static_cast<int64_t>(events_.size());
    v.value = p.ignore_value() && cur ? cur->value : p.value();
    v.lease = p.ignore_lease() ? (cur ? cur->lease : 0) : p.lease();
    v.create = cur ? cur->create : rev_;
    v.version = cur ? cur->version + 1 : 1;
    const int64_t old_lease = cur ? cur->lease : 0;
    if (old_lease != v.lease) {
      if (old_lease != 0) Detach(old_lease, p.key());
      if (v.lease != 0) m_->leases_[v.lease].insert(p.key());
    }
    mvcc::Event e;
    e.type = mvcc::Event::kPut;
    e.kv = mvcc::KeyValue{p.key(), v.create, v.main, v.version, v.value,
                          v.lease};
    SetPrev(&e);
    m_->keys_[p.key()].push_back(std::move(v));
    events_.push_back(std::move(e));
  }

  void Delete(const std::string& key, const std::string& end) {
    std::vector<std::string> doomed;
    if (end.empty()) {
      if (Latest(key) != nullptr) doomed.push_back(key);
    } else {
      for (auto it = m_->keys_.lower_bound(key);
           it != m_->keys_.end() && InRange(it->first, key, end); ++it) {
        if (Latest(it->first) != nullptr) doomed.push_back(it->first);
      }
    }
    for (const std::string& k : doomed) {
      const Version* cur = Latest(k);
      if (cur->lease != 0) Detach(cur->lease, k);
      Version v;
      v.main = rev_;
      v.sub = static_cast<int64_t>(events_.size());
      v.tombstone = true;
      mvcc::Event e;
      e.type = mvcc::Event::kDelete;
      e.kv.key = k;
      e.kv.mod_revision = rev_;
      SetPrev(&e);
      m_->keys_[k].push_back(std::move(v));
      events_.push_back(std::move(e));
    }
  }

  // Commits: the revision moves only if something changed.
  void End() {
    if (events_.empty()) return;
    m_->rev_ = rev_;
    if (m_->events_.size() <= static_cast<size_t>(rev_)) {
      m_->events_.resize(static_cast<size_t>(rev_) + 1);
    }
    m_->events_[static_cast<size_t>(rev_)] = std::move(events_);
  }

 private:
  void Detach(int64_t lease, const std::string& key) {
    auto it = m_->leases_.find(lease);
    if (it != m_->leases_.end()) it->second.erase(key);
  }
  // etcd's watch: prev_kv is the key at revision - 1, none for a create.
  void SetPrev(mvcc::Event* e) const {
    if (e->type == mvcc::Event::kPut && e->kv.version == 1) return;
    const Version* p = m_->LiveVersion(e->kv.key, rev_ - 1);
    if (p == nullptr) return;
    e->has_prev_kv = true;
    e->prev_kv = mvcc::KeyValue{e->kv.key, p->create, p->main, p->version,
                                p->value, p->lease};
  }

  KvModel* m_;
  int64_t rev_;
  std::vector<mvcc::Event> events_;
};

KvModel::KvModel(Options o) : opts_(o) {}

const std::vector<mvcc::Event>& KvModel::EventsAt(int64_t r) const {
  if (r < 0 || static_cast<size_t>(r) >= events_.size()) return no_events_;
  return events_[static_cast<size_t>(r)];
}

const KvModel::Version* KvModel::LiveVersion(const std::string& key,
                                             int64_t r) const {
  auto it = keys_.find(key);
  if (it == keys_.end()) return nullptr;
  const std::vector<Version>& vs = it->second;
  for (auto v = vs.rbegin(); v != vs.rend(); ++v) {
    if (v->main <= r) return v->tombstone ? nullptr : &*v;
  }
  return nullptr;
}

std::vector<mvcc::KeyValue> KvModel::LiveAt(int64_t r) const {
  std::vector<mvcc::KeyValue> out;
  for (const auto& [key, vs] : keys_) {
    if (const Version* v = LiveVersion(key, r)) {
      out.push_back(
          mvcc::KeyValue{key, v->create, v->main, v->version, v->value,
                         v->lease});
    }
  }
  return out;
}

std::vector<int64_t> KvModel::LeasesAt(uint64_t i) const {
  std::vector<int64_t> out;
  for (const auto& [id, lives] : lease_lives_) {
    for (const LeaseLife& l : lives) {
      if (l.granted <= i && (l.revoked == 0 || l.revoked > i)) {
        out.push_back(id);
        break;
      }
    }
  }
  return out;
}

void KvModel::Apply(const raft::Entry& e) {
  if (!problem_.empty() || e.index <= applied_index()) return;
  if (e.index != applied_index() + 1) {
    problem_ = absl::StrCat("kv model: index ", e.index,
                            " applied first while ", applied_index() + 1,
                            " never was");
    return;
  }
  uint64_t proposer = 0, request = 0;
  std::string_view payload;
  pb::InternalRaftRequest req;
  // As the Node and the state machine: only enveloped normal entries
  // carry requests, and bytes that do not parse change nothing.
  if (e.type == raft::EntryType::kNormal && !e.data.empty() &&
      server::OpenEnvelope(e.data, &proposer, &request, &payload) &&
      req.ParseFromArray(payload.data(), static_cast<int>(payload.size()))) {
    const uint64_t id = req.header().id();
    if (id == 0 || !recent_ids_.contains(id)) {
      if (id != 0) {
        recent_ids_.insert(id);
        recent_order_.push_back(id);
        if (recent_order_.size() > kRecentRequestIds) {
          recent_ids_.erase(recent_order_.front());
          recent_order_.pop_front();
        }
      }
      ApplyRequest(req, e.index);
    }
  }
  by_index_.push_back(IndexState{rev_, compact_});
}

bool KvModel::Refused(const pb::InternalRaftRequest& r) const {
  auto active = [&](int type) {
    auto it = alarms_.lower_bound({type, 0});
    return it != alarms_.end() && it->first == type;
  };
  if (active(pb::CORRUPT)) {
    return r.has_put() || r.has_delete_range() || r.has_txn() ||
           r.has_compaction() || r.has_lease_grant() || r.has_lease_revoke() ||
           r.has_range();
  }
  if (active(pb::NOSPACE)) {
    // Writes that need space: puts, grants, txns with a put in a branch.
    bool txn_puts = false;
    if (r.has_txn()) {
      for (const auto* ops : {&r.txn().success(), &r.txn().failure()}) {
        for (const pb::RequestOp& op : *ops) {
          txn_puts |= op.request_case() == pb::RequestOp::kRequestPut;
        }
      }
    }
    return r.has_put() || r.has_lease_grant() || txn_puts;
  }
  return false;
}

namespace {

// etcd's compare of one key-value (a missing key is a zero KeyValue).
bool CompareOne(const pb::Compare& c, const mvcc::KeyValue& kv) {
  int cmp = 0;
  auto three_way = [](auto a, auto b) { return a < b ? -1 : (a > b ? 1 : 0); };
  switch (c.target()) {
    case pb::Compare::VALUE:
      cmp = three_way(kv.value, c.target_union_case() == pb::Compare::kValue
                                    ? c.value()
                                    : std::string());
      break;
    case pb::Compare::CREATE:
      cmp = three_way(kv.create_revision, c.create_revision());
      break;
    case pb::Compare::MOD:
      cmp = three_way(kv.mod_revision, c.mod_revision());
      break;
    case pb::Compare::VERSION:
      cmp = three_way(kv.version, c.version());
      break;
    case pb::Compare::LEASE:
      cmp = three_way(kv.lease, c.lease());
      break;
    default:
      break;
  }
  switch (c.result()) {
    case pb::Compare::EQUAL: return cmp == 0;
    case pb::Compare::NOT_EQUAL: return cmp != 0;
    case pb::Compare::GREATER: return cmp > 0;
    case pb::Compare::LESS: return cmp < 0;
    default: return true;
  }
}

}  // namespace

void KvModel::ApplyRequest(const pb::InternalRaftRequest& r, uint64_t index) {
  if (Refused(r)) return;
  auto alive = [&](int64_t lease) { return leases_.contains(lease); };
  // A put's checks against the state before the request.
  auto put_ok = [&](const pb::PutRequest& p) {
    if (p.lease() != 0 && !alive(p.lease())) return false;
    if ((p.ignore_value() || p.ignore_lease()) &&
        LiveVersion(p.key(), rev_) == nullptr) {
      return false;
    }
    return true;
  };
  if (r.has_put()) {
    if (!put_ok(r.put())) return;
    Txn t(this);
    t.Put(r.put());
    t.End();
    return;
  }
  if (r.has_delete_range()) {
    Txn t(this);
    t.Delete(r.delete_range().key(), r.delete_range().range_end());
    t.End();
    return;
  }
  if (r.has_txn()) {
    // Every compare on the way is evaluated first, on the state before the
    // txn: (txn, chosen branch) in pre-order, then the ops on that path.
    std::vector<const pb::RequestOp*> ops;
    auto compare = [&](const pb::Compare& c) {
      bool any = false;
      for (auto it = keys_.lower_bound(c.key());
           it != keys_.end() && InRange(it->first, c.key(), c.range_end());
           ++it) {
        const Version* v = LiveVersion(it->first, rev_);
        if (v == nullptr) continue;
        any = true;
        if (!CompareOne(c, mvcc::KeyValue{it->first, v->create, v->main,
                                          v->version, v->value, v->lease})) {
          return false;
        }
      }
      if (any) return true;
      return c.target() != pb::Compare::VALUE &&
             CompareOne(c, mvcc::KeyValue{});
    };
    std::function<void(const pb::TxnRequest&)> walk =
        [&](const pb::TxnRequest& t) {
          bool ok = true;
          for (const pb::Compare& c : t.compare()) ok = ok && compare(c);
          for (const pb::RequestOp& op : ok ? t.success() : t.failure()) {
            if (op.request_case() == pb::RequestOp::kRequestTxn) {
              walk(op.request_txn());
            } else {
              ops.push_back(&op);
            }
          }
        };
    walk(r.txn());
    for (const pb::RequestOp* op : ops) {
      if (op->request_case() == pb::RequestOp::kRequestPut &&
          !put_ok(op->request_put())) {
        return;
      }
      if (op->request_case() == pb::RequestOp::kRequestRange) {
        const int64_t at = op->request_range().revision();
        if (at > 0 && (at > rev_ || at < compact_)) return;
      }
    }
    Txn t(this);
    for (const pb::RequestOp* op : ops) {
      if (op->request_case() == pb::RequestOp::kRequestPut) {
        t.Put(op->request_put());
      } else if (op->request_case() == pb::RequestOp::kRequestDeleteRange) {
        t.Delete(op->request_delete_range().key(),
                 op->request_delete_range().range_end());
      }
    }
    t.End();
    return;
  }
  if (r.has_range()) return;
  if (r.has_compaction()) {
    const int64_t at = r.compaction().revision();
    if (at <= compact_ || at > rev_) return;
    compact_ = at;
    compactions_.push_back(at);
    return;
  }
  if (r.has_lease_grant()) {
    const int64_t id = r.lease_grant().id();
    if (id == 0 || r.lease_grant().ttl() > opts_.max_lease_ttl_s ||
        alive(id)) {
      return;
    }
    leases_[id];
    lease_lives_[id].push_back(LeaseLife{index, 0});
    return;
  }
  if (r.has_lease_revoke()) {
    const int64_t id = r.lease_revoke().id();
    auto it = leases_.find(id);
    if (it == leases_.end()) return;
    const std::set<std::string> keys = std::move(it->second);
    leases_.erase(it);
    lease_lives_[id].back().revoked = index;
    // All of the lease's keys in one revision, in key order.
    Txn t(this);
    for (const std::string& k : keys) t.Delete(k, "");
    t.End();
    return;
  }
  if (r.has_lease_checkpoint()) return;  // remaining TTLs: not KV state
  if (r.has_alarm()) {
    const std::pair<int, uint64_t> a{static_cast<int>(r.alarm().alarm()),
                                     r.alarm().memberid()};
    if (r.alarm().action() == pb::AlarmRequest::ACTIVATE) alarms_.insert(a);
    if (r.alarm().action() == pb::AlarmRequest::DEACTIVATE) alarms_.erase(a);
  }
}

std::string KvModel::CompareAt(uint64_t i, const mvcc::KvStore& kv,
                               const lease::Lessor& lessor) const {
  if (!problem_.empty() || i > applied_index()) return "";
  const IndexState& st = by_index_[i];
  if (kv.Rev() != st.rev || kv.CompactRev() != st.compact) {
    return absl::StrCat("revision ", kv.Rev(), " compacted at ",
                        kv.CompactRev(), ", the committed log gives ", st.rev,
                        " compacted at ", st.compact);
  }
  // Every live key-value.
  absl::StatusOr<mvcc::RangeResult> all =
      kv.Range(std::string_view("\0", 1), std::string_view("\0", 1), {});
  if (!all.ok()) return "range of all keys: " + all.status().ToString();
  const std::vector<mvcc::KeyValue> want = LiveAt(st.rev);
  for (size_t k = 0; k < std::max(want.size(), all->kvs.size()); ++k) {
    if (k < want.size() && k < all->kvs.size() && want[k] == all->kvs[k]) {
      continue;
    }
    return absl::StrCat(
        "key-value #", k, " is ",
        k < all->kvs.size() ? Show(all->kvs[k]) : "missing",
        ", the committed log gives ", k < want.size() ? Show(want[k]) : "none");
  }
  // The history the member still holds (what its watchers catch up from).
  std::vector<mvcc::Event> got;
  int64_t next = 0;
  const int64_t from = st.compact + 1;
  if (absl::Status s = kv.Changes(from, st.rev,
                                  std::numeric_limits<size_t>::max(), &got,
                                  &next);
      !s.ok()) {
    return absl::StrCat("history from revision ", from, ": ", s.ToString());
  }
  size_t k = 0;
  for (int64_t r = std::max<int64_t>(from, 2); r <= st.rev; ++r) {
    for (const mvcc::Event& e : EventsAt(r)) {
      if (k >= got.size() || !(got[k] == e)) {
        return absl::StrCat("history event #", k, " is ",
                            k < got.size() ? Show(got[k]) : "missing",
                            ", the committed log gives ", Show(e));
      }
      ++k;
    }
  }
  if (k < got.size()) {
    return absl::StrCat("history holds an event never committed: ",
                        Show(got[k]));
  }
  // Leases and the keys attached to them.
  const std::vector<int64_t> ids = LeasesAt(i);
  if (lessor.Ids() != ids) {
    return absl::StrCat("lessor holds ", lessor.Ids().size(),
                        " leases, the committed log gives ", ids.size());
  }
  for (int64_t id : ids) {
    std::vector<std::string> keys;
    for (const mvcc::KeyValue& kv2 : want) {
      if (kv2.lease == id) keys.push_back(kv2.key);
    }
    absl::StatusOr<lease::Lessor::LeaseInfo> info = lessor.Get(id);
    if (!info.ok() || info->keys != keys) {
      return absl::StrCat("lease ", id, " has other keys than the committed ",
                          "log gives (", keys.size(), ")");
    }
  }
  return "";
}

}  // namespace detcd::harness
