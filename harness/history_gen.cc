// The history generator of history_gen.h: a correct store driven by
// simulated clients, so every history it makes is linearizable.
#include "harness/history_gen.h"

#include <algorithm>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace detcd::harness {
namespace {

class SplitMix {
 public:
  explicit SplitMix(uint64_t seed) : s_(seed) {}
  uint64_t Next() {
    s_ += 0x9e3779b97f4a7c15ULL;
    uint64_t z = s_;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  // Uniform in [0, n).
  int64_t Below(int64_t n) {
    return n <= 1 ? 0 : static_cast<int64_t>(Next() % static_cast<uint64_t>(n));
  }
  double Unit() { return static_cast<double>(Next() >> 11) * 0x1.0p-53; }
  bool Chance(double p) { return Unit() < p; }

 private:
  uint64_t s_;
};

// A plain correct store with per-key history, so serializable reads can
// be answered from any past revision.
class RefStore {
 public:
  int64_t rev() const { return rev_; }

  // Would etcd refuse req for a lease that is gone (ErrLeaseNotFound)? A
  // revoke of a revoked lease, or a plain put with one (the generator puts
  // leases on plain puts only).
  bool Refuses(const Request& req) const {
    if (req.revoke_lease != 0) return revoked_.contains(req.revoke_lease);
    return req.compares.empty() && req.success.size() == 1 &&
           req.success[0].kind == RequestOp::kPut &&
           req.success[0].lease != 0 && revoked_.contains(req.success[0].lease);
  }

  // Applies req at the current revision; returns the response. A
  // serializable read is answered from revision `read_rev` instead.
  Response Apply(const Request& req, int64_t read_rev = 0) {
    if (req.revoke_lease != 0) return Revoke(req.revoke_lease);
    const int64_t at = read_rev > 0 ? read_rev : rev_;
    Response resp;
    bool succ = true;
    for (const Compare& c : req.compares) {
      if (!CompareHolds(c, at)) {
        succ = false;
        break;
      }
    }
    resp.succeeded = succ;
    const int64_t stamp = rev_ + 1;
    bool changed = false;
    for (const RequestOp& op : succ ? req.success : req.failure) {
      OpResult r;
      switch (op.kind) {
        case RequestOp::kRange:
          r.kvs = RangeAt(op.key, op.range_end, at);
          r.count = static_cast<int64_t>(r.kvs.size());
          break;
        case RequestOp::kPut: {
          std::optional<mvcc::KeyValue> old = Get(op.key, rev_);
          if (op.prev_kv && old) {
            r.has_prev = true;
            r.prev = *old;
          }
          mvcc::KeyValue kv;
          kv.key = op.key;
          kv.create_revision = old ? old->create_revision : stamp;
          kv.mod_revision = stamp;
          kv.version = old ? old->version + 1 : 1;
          kv.value = op.value;
          kv.lease = op.lease;
          Set(op.key, stamp, kv);
          changed = true;
          break;
        }
        case RequestOp::kDelete:
          for (const mvcc::KeyValue& kv : RangeAt(op.key, op.range_end, rev_)) {
            if (op.prev_kv) r.prev_kvs.push_back(kv);
            ++r.deleted;
            Set(kv.key, stamp, std::nullopt);
            changed = true;
          }
          break;
      }
      resp.results.push_back(std::move(r));
    }
    if (changed) ++rev_;
    resp.revision = read_rev > 0 ? read_rev : rev_;
    return resp;
  }

 private:
  using Entry = std::pair<int64_t, std::optional<mvcc::KeyValue>>;

  // Deletes every key attached to the lease, in one revision (none if no
  // key is attached).
  Response Revoke(int64_t lease) {
    revoked_.insert(lease);
    const int64_t stamp = rev_ + 1;
    bool changed = false;
    for (const auto& [key, entries] : keys_) {
      std::optional<mvcc::KeyValue> kv = Get(key, rev_);
      if (kv && kv->lease == lease) {
        Set(key, stamp, std::nullopt);
        changed = true;
      }
    }
    if (changed) ++rev_;
    Response resp;
    resp.revision = rev_;
    return resp;
  }

  // Writes within one txn at the same stamp replace each other.
  void Set(const std::string& key, int64_t stamp,
           std::optional<mvcc::KeyValue> kv) {
    auto& h = keys_[key];
    if (!h.empty() && h.back().first == stamp) {
      h.back().second = std::move(kv);
    } else {
      h.push_back({stamp, std::move(kv)});
    }
  }

  // State of key at revision `at`, seeing this txn's own writes when `at`
  // is the current revision.
  std::optional<mvcc::KeyValue> Get(const std::string& key, int64_t at) const {
    auto it = keys_.find(key);
    if (it == keys_.end()) return std::nullopt;
    const int64_t limit = at == rev_ ? rev_ + 1 : at;
    for (auto e = it->second.rbegin(); e != it->second.rend(); ++e) {
      if (e->first <= limit) return e->second;
    }
    return std::nullopt;
  }

  std::vector<mvcc::KeyValue> RangeAt(const std::string& key,
                                      const std::string& end,
                                      int64_t at) const {
    std::vector<mvcc::KeyValue> out;
    auto lo = keys_.lower_bound(key);
    for (auto it = lo; it != keys_.end(); ++it) {
      if (end.empty()) {
        if (it->first != key) break;
      } else if (end != std::string(1, '\0') && it->first >= end) {
        break;
      }
      if (auto kv = Get(it->first, at)) out.push_back(*kv);
    }
    return out;
  }

  bool CompareHolds(const Compare& c, int64_t at) const {
    std::vector<mvcc::KeyValue> kvs = RangeAt(c.key, c.range_end, at);
    if (kvs.empty()) {
      if (c.target == Compare::kValue) return false;
      kvs.push_back(mvcc::KeyValue{});
    }
    for (const auto& kv : kvs) {
      int r = 0;
      auto three = [](int64_t a, int64_t b) { return a < b ? -1 : (a > b); };
      switch (c.target) {
        case Compare::kValue:
          r = kv.value.compare(c.value);
          r = r < 0 ? -1 : (r > 0);
          break;
        case Compare::kVersion:
          r = three(kv.version, c.number);
          break;
        case Compare::kCreate:
          r = three(kv.create_revision, c.number);
          break;
        case Compare::kMod:
          r = three(kv.mod_revision, c.number);
          break;
        case Compare::kLease:
          r = three(kv.lease, c.number);
          break;
      }
      bool ok = false;
      switch (c.result) {
        case Compare::kEqual:
          ok = r == 0;
          break;
        case Compare::kGreater:
          ok = r > 0;
          break;
        case Compare::kLess:
          ok = r < 0;
          break;
        case Compare::kNotEqual:
          ok = r != 0;
          break;
      }
      if (!ok) return false;
    }
    return true;
  }

  int64_t rev_ = 1;
  std::map<std::string, std::vector<Entry>> keys_;
  std::set<int64_t> revoked_;
};

class Generator {
 public:
  explicit Generator(const GenOptions& o)
      : o_(o), rng_(o.seed), keys_(std::max(o.keys, 2)) {}

  std::string Key(int64_t i) const { return absl::StrFormat("k%02d", i); }
  std::string RandKey() { return Key(rng_.Below(keys_)); }
  // [a, b) with a < b, over the key space.
  std::pair<std::string, std::string> RandRange() {
    if (rng_.Chance(0.15))
      return {Key(rng_.Below(keys_)), std::string(1, '\0')};
    const int64_t a = rng_.Below(keys_ - 1);
    const int64_t b = a + 1 + rng_.Below(std::min<int64_t>(4, keys_ - a));
    return {Key(a), b >= keys_ ? std::string("l") : Key(b)};
  }
  std::string NewValue(int id) { return absl::StrCat("v", id); }

  Compare Cmp(Compare::Target t, Compare::Result r, std::string key,
              int64_t number, std::string value = "") {
    Compare c;
    c.target = t;
    c.result = r;
    c.key = std::move(key);
    c.number = number;
    c.value = std::move(value);
    return c;
  }
  RequestOp PutOp(std::string key, int id) {
    RequestOp op;
    op.kind = RequestOp::kPut;
    op.key = std::move(key);
    op.value = NewValue(id);
    op.prev_kv = rng_.Chance(0.3);
    last_value_[op.key] = op.value;
    return op;
  }
  RequestOp GetOp(std::string key, std::string end = "") {
    RequestOp op;
    op.kind = RequestOp::kRange;
    op.key = std::move(key);
    op.range_end = std::move(end);
    return op;
  }
  RequestOp DelOp(std::string key, std::string end = "") {
    RequestOp op;
    op.kind = RequestOp::kDelete;
    op.key = std::move(key);
    op.range_end = std::move(end);
    op.prev_kv = rng_.Chance(0.5);
    return op;
  }

  // A random request; `approx_rev` guides mod-revision compares.
  Request Make(int id, int64_t approx_rev) {
    Request r;
    if (o_.leases > 0) {
      // Leases granted by now (grant answered before this op's invoke).
      std::vector<int64_t> live;
      for (size_t l = 0; l < grants_.size(); ++l) {
        if (grants_[l] <= now_) live.push_back(static_cast<int64_t>(l) + 1);
      }
      if (!live.empty()) {
        const int64_t lease = live[rng_.Below(std::ssize(live))];
        const int64_t lroll = rng_.Below(100);
        if (lroll < 4) return RevokeRequest(lease);
        if (lroll < 20) {
          r.success.push_back(PutOp(RandKey(), id));
          r.success[0].lease = lease;
          return r;
        }
      }
    }
    const int64_t roll = rng_.Below(100);
    if (roll < 30) {
      r.success.push_back(PutOp(RandKey(), id));
    } else if (roll < 38) {
      r.success.push_back(DelOp(RandKey()));
    } else if (roll < 40) {
      auto [a, b] = RandRange();
      r.success.push_back(DelOp(a, b));
    } else if (roll < 58) {
      r.success.push_back(GetOp(RandKey()));
    } else if (roll < 66) {
      auto [a, b] = RandRange();
      r.success.push_back(GetOp(a, b));
    } else if (roll < 76) {
      if (rng_.Chance(0.5)) {
        r.success.push_back(GetOp(RandKey()));
      } else {
        auto [a, b] = RandRange();
        r.success.push_back(GetOp(a, b));
      }
      r.serializable = true;
    } else {
      MakeTxn(id, approx_rev, &r);
    }
    return r;
  }

  void MakeTxn(int id, int64_t approx_rev, Request* r) {
    const std::string k = RandKey();
    std::string j = RandKey();
    if (j == k) j = Key((std::stoi(k.substr(1)) + 1) % keys_);
    switch (rng_.Below(o_.same_key_txns ? 8 : 6)) {
      case 0: {  // compare-and-swap on the value
        auto it = last_value_.find(k);
        std::string expect = it != last_value_.end() && rng_.Chance(0.7)
                                 ? it->second
                                 : NewValue(id) + "x";
        r->compares.push_back(
            Cmp(Compare::kValue, Compare::kEqual, k, 0, std::move(expect)));
        r->success.push_back(PutOp(k, id));
        r->failure.push_back(GetOp(k));
        break;
      }
      case 1:  // create if missing
        r->compares.push_back(Cmp(Compare::kVersion, Compare::kEqual, k, 0));
        r->success.push_back(PutOp(k, id));
        r->failure.push_back(GetOp(k));
        break;
      case 2: {  // mod-revision guard, two keys
        const Compare::Result res =
            rng_.Chance(0.5) ? Compare::kLess : Compare::kGreater;
        r->compares.push_back(
            Cmp(Compare::kMod, res, k,
                std::max<int64_t>(1, approx_rev - rng_.Below(20))));
        r->success.push_back(PutOp(k, id));
        r->success.push_back(PutOp(j, id));
        r->failure.push_back(GetOp(k));
        r->failure.push_back(GetOp(j));
        break;
      }
      case 3: {  // ranged compare
        auto [a, b] = RandRange();
        Compare c = Cmp(Compare::kVersion, Compare::kGreater, a, 0);
        c.range_end = b;
        r->compares.push_back(c);
        r->success.push_back(DelOp(k));
        r->failure.push_back(PutOp(k, id));
        break;
      }
      case 4: {  // create-revision compare, ranged read otherwise
        r->compares.push_back(Cmp(Compare::kCreate, Compare::kNotEqual, k, 0));
        auto [a, b] = RandRange();
        r->success.push_back(GetOp(a, b));
        r->failure.push_back(PutOp(k, id));
        break;
      }
      case 6: {  // delete from a key (range end "\0"), then put inside
        r->success.push_back(DelOp(j < k ? j : k, std::string(1, '\0')));
        r->success.push_back(PutOp(k, id));
        break;
      }
      case 7: {  // put, then delete from a key at or before it
        r->success.push_back(PutOp(k, id));
        r->success.push_back(DelOp(j < k ? j : k, std::string(1, '\0')));
        break;
      }
      default:  // read-only txn
        r->compares.push_back(
            Cmp(Compare::kVersion, Compare::kGreater, k, rng_.Below(3)));
        r->success.push_back(GetOp(k));
        r->failure.push_back(GetOp(j));
        break;
    }
  }

  History Run(int n_ops, int clients, double unknown_fraction) {
    clients = std::max(clients, 1);
    struct Planned {
      int index;
      int64_t lin;
      bool apply;
    };
    History h;
    h.ops.resize(std::max(n_ops, 0));
    std::vector<int64_t> free_at(clients);
    for (auto& t : free_at) t = rng_.Below(100);
    std::vector<Planned> plan;
    int64_t writes = 0;
    for (int i = 0; i < n_ops; ++i) {
      int c = 0;
      for (int k = 1; k < clients; ++k) {
        if (free_at[k] < free_at[c]) c = k;
      }
      Operation& op = h.ops[i];
      op.id = i;
      op.client = c;
      op.invoke_ns = free_at[c] + rng_.Below(50);
      if (o_.leases > 0 && std::ssize(grants_) < o_.leases &&
          rng_.Chance(2.0 * o_.leases / std::max(n_ops, 1))) {
        // A lease granted (not a KV op), answered now. It may expire: the
        // leader's revoke is recorded as a kUnknown revoke invoked at the
        // grant's answer, taking effect a TTL later (or never).
        grants_.push_back(op.invoke_ns);
        if (rng_.Chance(0.6)) {
          expiries_.push_back(
              {static_cast<int64_t>(grants_.size()), op.invoke_ns,
               op.invoke_ns + 200 + rng_.Below(20'000), rng_.Chance(0.7)});
        }
      }
      now_ = op.invoke_ns;
      int64_t dur = 20 + rng_.Below(400);
      if (rng_.Chance(0.03)) dur *= 10;
      op.return_ns = op.invoke_ns + dur;
      op.req = Make(i, writes / 2 + 1);
      if (!IsReadOnly(op.req)) ++writes;
      const double roll = rng_.Unit();
      int64_t lin = op.invoke_ns + 1 + rng_.Below(dur - 1);
      bool apply = true;
      if (roll < unknown_fraction) {
        op.outcome = Operation::kUnknown;
        apply = rng_.Chance(0.5);
        // Possibly well after the client gave up.
        lin = op.invoke_ns + 1 + rng_.Below(3 * dur);
      } else if (roll < unknown_fraction + 0.01) {
        op.outcome = Operation::kFail;
        apply = false;
      }
      if (op.req.serializable && op.outcome == Operation::kUnknown) {
        apply = false;
      }
      if (apply) plan.push_back({i, lin, true});
      free_at[c] = op.return_ns;
    }
    for (const Expiry& e : expiries_) {
      Operation op;
      op.id = static_cast<int>(h.ops.size());
      op.client = clients + static_cast<int>(e.lease);  // the lessor
      op.invoke_ns = e.granted;
      op.return_ns = e.granted;
      op.outcome = Operation::kUnknown;
      op.req = RevokeRequest(e.lease);
      if (e.apply) plan.push_back({op.id, e.at, true});
      h.ops.push_back(std::move(op));
    }
    std::stable_sort(
        plan.begin(), plan.end(),
        [](const Planned& a, const Planned& b) { return a.lin < b.lin; });
    RefStore store;
    for (const Planned& p : plan) {
      Operation& op = h.ops[p.index];
      int64_t read_rev = 0;
      if (op.req.serializable) {
        const int64_t lag = rng_.Below(6);
        read_rev = std::max<int64_t>(1, store.rev() - lag);
      }
      if (store.Refuses(op.req)) {
        // etcd answers "lease not found": nothing happened.
        if (op.outcome == Operation::kOk) op.outcome = Operation::kFail;
        continue;
      }
      Response resp = store.Apply(op.req, read_rev);
      if (op.outcome == Operation::kOk) op.resp = std::move(resp);
    }
    return h;
  }

 private:
  struct Expiry {
    int64_t lease;
    int64_t granted;  // the grant's answer: the revoke's invoke
    int64_t at;       // when the leader revokes it
    bool apply;
  };

  const GenOptions o_;
  std::vector<int64_t> grants_;  // lease id - 1 -> when its grant answered
  std::vector<Expiry> expiries_;
  int64_t now_ = 0;  // invoke of the op being made
  SplitMix rng_;
  int64_t keys_;
  std::map<std::string, std::string> last_value_;
};

}  // namespace

History GenerateHistory(const GenOptions& o) {
  return Generator(o).Run(o.ops, o.clients, o.unknown_fraction);
}

History GenerateHistory(uint64_t seed, int ops, int clients, int keys,
                        double unknown_fraction) {
  GenOptions o;
  o.seed = seed;
  o.ops = ops;
  o.clients = clients;
  o.keys = keys;
  o.unknown_fraction = unknown_fraction;
  return GenerateHistory(o);
}

}  // namespace detcd::harness
