#include "harness/lincheck/facts.h"

#include <algorithm>
#include <cstdint>
#include <limits>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "engine/util/check.h"
#include "harness/lincheck/format.h"

namespace detcd::harness::lincheck {

std::vector<PutKey> PutKeys(const COp& op) { return PutKeys(op.taken()); }

std::vector<PutKey> PutKeys(const std::vector<CReqOp>& branch) {
  // Per op, not per revision: a later delete over a key this op put removes
  // it again (etcd 3.4 accepts a put and then a delete over a from-key
  // range in one txn), and a later put replaces an earlier one.
  std::vector<PutKey> out;
  for (const CReqOp& r : branch) {
    if (r.kind == RequestOp::kDelete) {
      std::erase_if(out, [&](const PutKey& p) {
        return p.key >= r.r.lo && p.key < r.r.hi;
      });
      continue;
    }
    if (r.kind != RequestOp::kPut) continue;
    bool found = false;
    for (PutKey& p : out) {
      if (p.key == r.key) {
        p.value = r.value;
        p.lease = r.lease;
        found = true;
      }
    }
    if (!found) out.push_back({r.key, r.value, r.lease});
  }
  return out;
}

std::vector<int32_t> DeleteThenPutKeys(const std::vector<CReqOp>& branch) {
  std::vector<int32_t> out;
  std::vector<CRange> dels;
  for (const CReqOp& r : branch) {
    if (r.kind == RequestOp::kDelete) dels.push_back(r.r);
    if (r.kind != RequestOp::kPut) continue;
    for (const CRange& d : dels) {
      if (r.key >= d.lo && r.key < d.hi) {
        out.push_back(r.key);
        break;
      }
    }
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

namespace {

// A compare over version, create or mod revision whose outcome no existing
// key could give (they are 0 only for a missing key): every key of the
// range was missing.
bool ImpliesMissing(const CCompare& c, bool held) {
  if (c.target != Compare::kVersion && c.target != Compare::kCreate &&
      c.target != Compare::kMod) {
    return false;
  }
  // Is there a value f >= 1 for which the compare gives `held`?
  switch (c.result) {
    case Compare::kEqual:
      return held && c.number < 1;
    case Compare::kNotEqual:
      return !held && c.number < 1;
    case Compare::kGreater:
      return !held && c.number < 1;
    case Compare::kLess:
      return held && c.number < 2;
  }
  return false;
}

// Position of an op in the order of revision steps: a write at R sits
// between states R-1 and R, a read at R on state R.
int64_t StepKey(const COp& op) {
  return op.role == Role::kWrite ? 2 * op.rev - 1 : 2 * op.rev;
}

class Prechecker {
 public:
  Prechecker(const Compiled& c, const History& h, Index* ix)
      : c_(c), h_(h), ix_(*ix) {}

  // Builds the index; returns the first violation of a necessary condition.
  std::optional<Violation> Run() {
    BuildOrders();
    if (auto v = CheckRevisions()) return v;
    if (auto v = CheckRealTime()) return v;
    if (auto v = BuildFacts()) return v;
    if (auto v = CheckFactsVsWrites()) return v;
    if (auto v = CheckRequiredWrites()) return v;
    if (auto v = CheckRequiredDeletes()) return v;
    BuildPins();
    BuildClasses();
    BuildServable();
    return std::nullopt;
  }

 private:
  std::string Op(int i) const { return absl::StrCat("#", h_.ops[i].id); }

  void BuildOrders() {
    const size_t n = c_.ops.size();
    ix_.put_revs.assign(c_.keys.size(), {});
    ix_.unknown_puts.assign(c_.keys.size(), {});
    ix_.unknown_dels.assign(c_.keys.size(), {});
    ix_.del_revs.assign(c_.keys.size(), {});
    ix_.absent.assign(c_.keys.size(), {});
    ix_.delput_revs.assign(c_.keys.size(), {});
    ix_.delput_unknown.assign(c_.keys.size(), 0);
    ix_.op_puts.assign(n, {});
    ix_.op_dels.assign(n, {});
    ix_.ret_pos.assign(n, -1);
    ix_.unknown_pos.assign(n, -1);
    // Keys that may be attached to each lease: every key some op (in either
    // branch) puts with it. A revoke may delete any of them and no other.
    std::map<int64_t, std::vector<int32_t>> lease_keys;
    for (const COp& op : c_.ops) {
      if (op.role == Role::kDropped) continue;
      for (const auto* br : {&op.success, &op.failure}) {
        for (const CReqOp& r : *br) {
          if (r.kind == RequestOp::kPut && r.lease != 0) {
            lease_keys[r.lease].push_back(r.key);
          }
        }
      }
    }
    for (auto& [lease, keys] : lease_keys) {
      std::sort(keys.begin(), keys.end());
      keys.erase(std::unique(keys.begin(), keys.end()), keys.end());
    }
    auto revoked_keys = [&](int64_t lease) {
      auto it = lease_keys.find(lease);
      return it == lease_keys.end() ? std::vector<int32_t>{} : it->second;
    };
    std::vector<int> order(n);
    for (size_t i = 0; i < n; ++i) order[i] = static_cast<int>(i);
    std::stable_sort(order.begin(), order.end(), [&](int a, int b) {
      return c_.ops[a].invoke < c_.ops[b].invoke;
    });
    for (int i : order) {
      const COp& op = c_.ops[i];
      switch (op.role) {
        case Role::kWrite:
        case Role::kRead:
          ix_.ret_order.push_back(i);
          if (op.role == Role::kRead) ix_.reads_at[op.rev].push_back(i);
          ix_.max_rev = std::max(ix_.max_rev, op.rev);
          if (op.revoke != 0) {
            // Either the step to op.rev or a no-op at op.rev: as a writer
            // it may have deleted any key of its lease at op.rev.
            ix_.revokes_at[op.rev].push_back(i);
            ix_.op_dels[i] = revoked_keys(op.revoke);
            for (int32_t k : ix_.op_dels[i]) ix_.del_revs[k].push_back(op.rev);
          }
          break;
        case Role::kSerial:
          ix_.serial_at[op.rev].push_back(i);
          ix_.max_serial_rev = std::max(ix_.max_serial_rev, op.rev);
          ix_.max_rev = std::max(ix_.max_rev, op.rev);
          break;
        case Role::kUnknown: {
          ix_.unknown_pos[i] = static_cast<int>(ix_.unknown.size());
          ix_.unknown.push_back(i);
          std::vector<int32_t> put, del;
          if (op.revoke != 0) del = revoked_keys(op.revoke);
          for (const auto* br : {&op.success, &op.failure}) {
            for (const CReqOp& r : *br) {
              if (r.kind == RequestOp::kPut) put.push_back(r.key);
              if (r.kind == RequestOp::kDelete) {
                for (int32_t k = r.r.lo; k < r.r.hi; ++k) del.push_back(k);
              }
            }
          }
          for (auto* v : {&put, &del}) {
            std::sort(v->begin(), v->end());
            v->erase(std::unique(v->begin(), v->end()), v->end());
          }
          for (int32_t k : put) ix_.unknown_puts[k].push_back(i);
          for (int32_t k : del) ix_.unknown_dels[k].push_back(i);
          for (const auto* br : {&op.success, &op.failure}) {
            for (int32_t k : DeleteThenPutKeys(*br)) ix_.delput_unknown[k] = 1;
          }
          ix_.op_puts[i] = std::move(put);
          ix_.op_dels[i] = std::move(del);
          break;
        }
        case Role::kDropped:
          break;
      }
    }
    std::stable_sort(
        ix_.ret_order.begin(), ix_.ret_order.end(),
        [&](int a, int b) { return c_.ops[a].ret < c_.ops[b].ret; });
    for (size_t p = 0; p < ix_.ret_order.size(); ++p) {
      ix_.ret_pos[ix_.ret_order[p]] = static_cast<int>(p);
    }
  }

  std::optional<Violation> CheckRevisions() {
    for (size_t i = 0; i < c_.ops.size(); ++i) {
      const COp& op = c_.ops[i];
      const int oi = static_cast<int>(i);
      if (!IsOk(op.role)) continue;
      if (op.rev < 1 || op.rev > kMaxRevision ||
          (op.role == Role::kWrite && op.rev < 2)) {
        return Violation{
            absl::StrCat(Op(oi), " has impossible revision ", op.rev), {oi}};
      }
      if (op.role != Role::kWrite) continue;
      auto [it, inserted] = ix_.write_at.try_emplace(op.rev, oi);
      if (!inserted) {
        return Violation{absl::StrCat(Op(it->second), " and ", Op(oi),
                                      " both wrote revision ", op.rev),
                         {it->second, oi}};
      }
      ix_.write_revs.push_back(op.rev);
      for (const PutKey& p : PutKeys(op)) ix_.put_revs[p.key].push_back(op.rev);
      for (int32_t k : DeleteThenPutKeys(op.taken())) {
        ix_.delput_revs[k].push_back(op.rev);
      }
      const std::vector<CReqOp>& taken = op.taken();
      for (size_t j = 0; j < taken.size() && j < op.results.size(); ++j) {
        if (taken[j].kind != RequestOp::kDelete || op.results[j].deleted <= 0) {
          continue;
        }
        for (int32_t k = taken[j].r.lo; k < taken[j].r.hi; ++k) {
          ix_.del_revs[k].push_back(op.rev);
        }
      }
    }
    std::sort(ix_.write_revs.begin(), ix_.write_revs.end());
    for (auto* all : {&ix_.put_revs, &ix_.del_revs, &ix_.delput_revs}) {
      for (auto& v : *all) {
        std::sort(v.begin(), v.end());
        v.erase(std::unique(v.begin(), v.end()), v.end());
      }
    }
    return std::nullopt;
  }

  // If A returned before B was invoked, A's step is not after B's. And a
  // serializable read at R needs every op up to revision R to have been
  // invoked before it returned.
  std::optional<Violation> CheckRealTime() {
    std::vector<int> by_invoke;
    for (size_t i = 0; i < c_.ops.size(); ++i) {
      if (IsLinearOk(c_.ops[i].role)) by_invoke.push_back(static_cast<int>(i));
    }
    std::stable_sort(by_invoke.begin(), by_invoke.end(), [&](int a, int b) {
      return c_.ops[a].invoke < c_.ops[b].invoke;
    });
    size_t p = 0;
    int64_t max_key = std::numeric_limits<int64_t>::min();
    int max_op = -1;
    for (int b : by_invoke) {
      while (p < ix_.ret_order.size() &&
             c_.ops[ix_.ret_order[p]].ret < c_.ops[b].invoke) {
        const int a = ix_.ret_order[p++];
        if (StepKey(c_.ops[a]) > max_key) {
          max_key = StepKey(c_.ops[a]);
          max_op = a;
        }
      }
      if (max_op >= 0 && max_key > StepKey(c_.ops[b])) {
        return Violation{
            absl::StrCat(Op(max_op), " (revision ", c_.ops[max_op].rev,
                         ") returned before ", Op(b), " (revision ",
                         c_.ops[b].rev, ") was invoked"),
            {max_op, b}};
      }
    }
    // Serializable reads: the op with the smallest step key among those
    // invoked after the read returned must come after revision R.
    std::vector<int> desc = by_invoke;
    std::reverse(desc.begin(), desc.end());
    std::vector<std::pair<int64_t, int>> suffix_min;  // along desc
    int64_t best = std::numeric_limits<int64_t>::max();
    int best_op = -1;
    for (int a : desc) {
      if (StepKey(c_.ops[a]) < best) {
        best = StepKey(c_.ops[a]);
        best_op = a;
      }
      suffix_min.push_back({best, best_op});
    }
    for (size_t i = 0; i < c_.ops.size(); ++i) {
      const COp& y = c_.ops[i];
      if (y.role != Role::kSerial) continue;
      // Ops invoked after y returned: a prefix of desc.
      auto it = std::partition_point(desc.begin(), desc.end(), [&](int a) {
        return c_.ops[a].invoke > y.ret;
      });
      if (it == desc.begin()) continue;
      const auto& [key, op] = suffix_min[it - desc.begin() - 1];
      if (key <= 2 * y.rev - 1) {
        return Violation{
            absl::StrCat("serializable read ", Op(static_cast<int>(i)),
                         " returned state at revision ", y.rev, " before ",
                         Op(op), " (revision ", c_.ops[op].rev,
                         ") was invoked"),
            {op, static_cast<int>(i)}};
      }
    }
    return std::nullopt;
  }

  void AddFact(const Kv& kv, int64_t h, int op) {
    Fact f;
    f.key = kv.key;
    f.c = kv.create;
    f.m = kv.mod;
    f.x = kv.version;
    f.value = kv.value;
    f.lease = kv.lease;
    f.hmax = h;
    f.hop = op;
    f.op = op;
    f.min_ret = c_.ops[op].ret;
    raw_.push_back(f);
  }

  std::optional<Violation> BuildFacts() {
    for (size_t i = 0; i < c_.ops.size(); ++i) {
      const COp& op = c_.ops[i];
      const int oi = static_cast<int>(i);
      if (!IsOk(op.role)) continue;
      const std::vector<CReqOp>& taken = op.taken();
      const size_t n = std::min(taken.size(), op.results.size());
      // A write's own changes carry its revision; what it saw of other
      // keys is the state at rev - 1.
      const bool write = op.role == Role::kWrite;
      const int64_t h = write ? op.rev - 1 : op.rev;
      auto add = [&](const Kv& kv) {
        if (write && kv.mod >= op.rev) return;
        AddFact(kv, h, oi);
      };
      // Keys written by earlier ops of this txn: later ops see them
      // changed, so they say nothing about the state at h.
      std::vector<uint8_t> touched(write ? c_.keys.size() : 0, 0);
      auto absent = [&](int32_t k) {
        if (write && touched[k]) return;
        ix_.absent[k].push_back({h, oi});
      };
      // Compares that held (or, alone, failed) in a way no existing key
      // can satisfy mean every key of their range was missing.
      for (const CCompare& cmp : op.cmps) {
        if (op.cmps.size() > 1 && !op.succeeded) break;
        if (ImpliesMissing(cmp, op.succeeded)) {
          for (int32_t k = cmp.r.lo; k < cmp.r.hi; ++k) absent(k);
        }
      }
      for (size_t j = 0; j < n; ++j) {
        const CResult& r = op.results[j];
        const CReqOp& q = taken[j];
        switch (q.kind) {
          case RequestOp::kRange: {
            for (const Kv& kv : r.kvs) add(kv);
            // Keys of the range it did not return were missing.
            size_t next = 0;
            for (int32_t k = q.r.lo; k < q.r.hi; ++k) {
              while (next < r.kvs.size() && r.kvs[next].key < k) ++next;
              if (next < r.kvs.size() && r.kvs[next].key == k) continue;
              absent(k);
            }
            break;
          }
          case RequestOp::kPut:
            if (q.prev_kv && r.has_prev) add(r.prev);
            if (q.prev_kv && !r.has_prev) absent(q.key);
            if (write) touched[q.key] = 1;
            break;
          case RequestOp::kDelete:
            if (q.prev_kv) {
              for (const Kv& kv : r.prev_kvs) add(kv);
            }
            if (r.deleted == 0 || q.prev_kv) {
              size_t next = 0;
              for (int32_t k = q.r.lo; k < q.r.hi; ++k) {
                while (next < r.prev_kvs.size() && r.prev_kvs[next].key < k) {
                  ++next;
                }
                if (r.deleted > 0 && next < r.prev_kvs.size() &&
                    r.prev_kvs[next].key == k) {
                  continue;
                }
                absent(k);
              }
            }
            if (write) {
              for (int32_t k = q.r.lo; k < q.r.hi; ++k) touched[k] = 1;
            }
            break;
        }
      }
    }
    std::stable_sort(raw_.begin(), raw_.end(),
                     [](const Fact& a, const Fact& b) {
                       if (a.key != b.key) return a.key < b.key;
                       return a.m < b.m;
                     });
    ix_.facts.assign(c_.keys.size(), {});
    for (const Fact& f : raw_) {
      if (f.x < 1 || f.m < 2 || f.c < 2 || f.c > f.m || f.m > f.hmax ||
          f.x > f.m - f.c + 1 || (f.x == 1) != (f.c == f.m)) {
        return Violation{absl::StrCat(Op(f.op), " saw impossible ", KvText(f),
                                      " at revision ", f.hmax),
                         {f.op}};
      }
      auto& v = ix_.facts[f.key];
      if (!v.empty() && v.back().m == f.m) {
        Fact& g = v.back();
        if (g.c != f.c || g.x != f.x || g.value != f.value ||
            g.lease != f.lease) {
          return Violation{
              absl::StrCat(Op(g.op), " and ", Op(f.op),
                           " saw different values for ", c_.keys[f.key],
                           " written at revision ", f.m),
              {g.op, f.op}};
        }
        if (f.hmax > g.hmax) {
          g.hmax = f.hmax;
          g.hop = f.hop;
        }
        if (f.min_ret < g.min_ret) {
          g.min_ret = f.min_ret;
          g.op = f.op;
        }
        continue;
      }
      v.push_back(f);
    }
    for (size_t k = 0; k < ix_.facts.size(); ++k) {
      const auto& v = ix_.facts[k];
      if (v.empty()) continue;
      ix_.fact_keys.push_back(static_cast<int32_t>(k));
      for (size_t j = 0; j < v.size(); ++j) {
        const Fact& f = v[j];
        ix_.required_at[f.m].push_back(f.key);
        if (f.c != f.m) ix_.required_at[f.c].push_back(f.key);
        if (j == 0) continue;
        const Fact& e = v[j - 1];
        if (e.hmax >= f.m) {
          return Violation{absl::StrCat(Op(e.hop), " saw ", KvText(e),
                                        " at revision ", e.hmax, " but ",
                                        Op(f.op), " saw it written at ", f.m),
                           {e.hop, f.op}};
        }
        if (f.c <= e.m) {
          if (f.c != e.c || f.x <= e.x || f.x - e.x > f.m - e.m) {
            return Violation{absl::StrCat(Op(e.op), " saw ", KvText(e), " and ",
                                          Op(f.op), " saw ", KvText(f),
                                          ": inconsistent history of the key"),
                             {e.op, f.op}};
          }
        } else if (f.c <= e.hmax ||
                   (f.c == e.hmax + 1 && !ix_.MayDeleteThenPut(f.key, f.c))) {
          return Violation{absl::StrCat(Op(e.hop), " saw ", KvText(e),
                                        " at revision ", e.hmax, " but ",
                                        Op(f.op), " saw it recreated at ", f.c),
                           {e.hop, f.op}};
        }
      }
    }
    for (auto& [rev, keys] : ix_.required_at) {
      std::sort(keys.begin(), keys.end());
      keys.erase(std::unique(keys.begin(), keys.end()), keys.end());
    }
    // A key seen missing at h must not be inside an incarnation that other
    // ops saw spanning h.
    for (size_t k = 0; k < ix_.absent.size(); ++k) {
      auto& v = ix_.absent[k];
      std::stable_sort(v.begin(), v.end(), [](const auto& a, const auto& b) {
        return a.first < b.first;
      });
      v.erase(std::unique(v.begin(), v.end(),
                          [](const auto& a, const auto& b) {
                            return a.first == b.first;
                          }),
              v.end());
      if (!v.empty() || !ix_.facts[k].empty()) {
        ix_.watch_keys.push_back(static_cast<int32_t>(k));
      }
      for (const auto& [h, op] : v) {
        auto [next, prev] = Around(static_cast<int32_t>(k), h + 1);
        const Fact* bad = nullptr;
        if (prev != nullptr && prev->hmax >= h) bad = prev;
        if (next != nullptr && next->c <= h) bad = next;
        if (bad != nullptr) {
          return Violation{
              absl::StrCat(Op(op), " saw ", c_.keys[k], " missing at revision ",
                           h, " but ", Op(bad->op), " saw ", KvText(*bad)),
              {op, bad->op}};
        }
      }
    }
    return std::nullopt;
  }

  std::string KvText(const Fact& f) const {
    return absl::StrFormat("%s=%s@c%d/m%d/v%d",
                           absl::CHexEscape(c_.keys[f.key]),
                           Quote(c_.values[f.value]), f.c, f.m, f.x);
  }

  // Facts around revision r for key k: the first with m >= r and the last
  // with m < r.
  std::pair<const Fact*, const Fact*> Around(int32_t k, int64_t r) const {
    const auto& v = ix_.facts[k];
    auto it =
        std::lower_bound(v.begin(), v.end(), r,
                         [](const Fact& f, int64_t x) { return f.m < x; });
    const Fact* next = it == v.end() ? nullptr : &*it;
    const Fact* prev = it == v.begin() ? nullptr : &*(it - 1);
    return {next, prev};
  }

  std::optional<Violation> CheckFactsVsWrites() {
    for (size_t i = 0; i < c_.ops.size(); ++i) {
      const COp& op = c_.ops[i];
      const int oi = static_cast<int>(i);
      if (op.role != Role::kWrite) continue;
      const int64_t r = op.rev;
      const std::vector<PutKey> puts = PutKeys(op);
      for (const PutKey& p : puts) {
        auto [next, prev] = Around(p.key, r);
        if (prev != nullptr && prev->hmax >= r) {
          return Violation{absl::StrCat(Op(prev->hop), " saw ", KvText(*prev),
                                        " at revision ", prev->hmax, " but ",
                                        Op(oi), " put it at revision ", r),
                           {prev->hop, oi}};
        }
        if (next != nullptr && next->m == r &&
            (next->value != p.value || next->lease != p.lease)) {
          return Violation{
              absl::StrCat(Op(next->op), " saw ", KvText(*next), " but ",
                           Op(oi), " put ", Quote(c_.values[p.value]),
                           " at revision ", r),
              {next->op, oi}};
        }
      }
      // Keys it reported deleting. One it puts again later in the same op
      // starts a new incarnation at r.
      const std::vector<CReqOp>& taken = op.taken();
      for (size_t j = 0; j < taken.size() && j < op.results.size(); ++j) {
        if (taken[j].kind != RequestOp::kDelete || !taken[j].prev_kv) continue;
        for (const Kv& kv : op.results[j].prev_kvs) {
          bool recreated = false;
          for (const PutKey& p : puts) recreated |= p.key == kv.key;
          auto [next, prev] = Around(kv.key, r);
          const Fact* bad = nullptr;
          if (prev != nullptr && prev->hmax >= r) bad = prev;
          if (next != nullptr &&
              (next->c < r || (next->c == r && !recreated))) {
            bad = next;
          }
          if (bad != nullptr) {
            return Violation{
                absl::StrCat(Op(bad->hop), " saw ", KvText(*bad),
                             " at revision ", bad->hmax, " but ", Op(oi),
                             " deleted it at revision ", r),
                {bad->hop, oi}};
          }
        }
      }
      // Keys that facts say were put at r.
      auto it = ix_.required_at.find(r);
      if (it == ix_.required_at.end()) continue;
      for (int32_t k : it->second) {
        bool put = false;
        for (const PutKey& p : puts) put |= p.key == k;
        if (put) continue;
        auto [next, prev] = Around(k, r);
        DETCD_CHECK(next != nullptr);
        return Violation{absl::StrCat(Op(next->op), " saw ", KvText(*next),
                                      " but the write at revision ", r, " (",
                                      Op(oi), ") did not put it"),
                         {next->op, oi}};
      }
    }
    return std::nullopt;
  }

  // A key seen missing at h after it last existed at p < h (a kOk put at
  // p, or a fact up to p) needs a delete in (p, h]: by a kOk write, or by
  // a kUnknown op invoked before the observer returned.
  std::optional<Violation> CheckRequiredDeletes() {
    for (size_t kk = 0; kk < ix_.absent.size(); ++kk) {
      const int32_t k = static_cast<int32_t>(kk);
      const auto& puts = ix_.put_revs[k];
      for (const auto& [h, obs] : ix_.absent[k]) {
        int64_t p = 0;
        int by = -1;
        auto it = std::upper_bound(puts.begin(), puts.end(), h);
        if (it != puts.begin()) {
          p = *(it - 1);
          by = ix_.write_at.at(p);
        }
        // The last fact with m <= h: it existed up to its hmax (< h, or
        // the absence precheck would have failed).
        auto [next, prev] = Around(k, h + 1);
        if (prev != nullptr && prev->hmax > p) {
          p = prev->hmax;
          by = prev->hop;
        }
        if (by < 0 || ix_.DelsIn(k, p, h) > 0) continue;
        bool possible = false;
        for (int u : ix_.unknown_dels[k]) {
          if (ix_.GapsIn(p, h) == 0) break;  // no revision left for it
          if (c_.ops[u].invoke <= c_.ops[obs].ret) {
            possible = true;
            break;
          }
        }
        if (possible) continue;
        return Violation{
            absl::StrCat(Op(obs), " saw ", c_.keys[k], " missing at revision ",
                         h, " but ", Op(by), " shows it existed at ", p,
                         " and no op could have deleted it"),
            {by, obs}};
      }
    }
    return std::nullopt;
  }

  // A revision that no kOk write claims but a fact says put key k (with a
  // given value, at m) needs a kUnknown op that can do it.
  std::optional<Violation> CheckRequiredWrites() {
    for (int32_t k : ix_.fact_keys) {
      for (const Fact& f : ix_.facts[k]) {
        for (int64_t r : {f.c, f.m}) {
          if (ix_.write_at.contains(r)) continue;
          bool possible = false;
          for (int u : ix_.unknown_puts[k]) {
            const COp& op = c_.ops[u];
            if (op.invoke > f.min_ret) continue;
            if (r != f.m) {
              possible = true;
              break;
            }
            for (const auto* br : {&op.success, &op.failure}) {
              for (const CReqOp& q : *br) {
                possible |= q.kind == RequestOp::kPut && q.key == k &&
                            q.value == f.value && q.lease == f.lease;
              }
            }
            if (possible) break;
          }
          if (possible) continue;
          // Prove it with the observer and every kOk op that put the value
          // (they are pinned to other revisions).
          std::vector<int> ops = {f.op};
          for (size_t i = 0; i < c_.ops.size(); ++i) {
            const COp& op = c_.ops[i];
            if (op.role != Role::kWrite) continue;
            for (const PutKey& p : PutKeys(op)) {
              if (p.key == k && (r != f.m || p.value == f.value)) {
                ops.push_back(static_cast<int>(i));
              }
            }
          }
          std::string what = r == f.m ? absl::StrCat("wrote ", KvText(f))
                                      : absl::StrCat("created ", c_.keys[k]);
          return Violation{
              absl::StrCat(Op(f.op), " saw ", KvText(f),
                           ", but no op could have ", what, " at revision ", r),
              std::move(ops)};
        }
      }
    }
    return std::nullopt;
  }

  // SYMMETRY CLASSES (sound). Two kUnknown ops are interchangeable when
  // they have the same compares, the same lease (for a revoke) and the
  // same ops in both branches, except for put values that no op ever
  // observes (no result or prev_kv shows them, no compare names them) and
  // that sit at the same place among the constants of ordered value
  // compares (<, >), so that every value compare gives the same outcome
  // for both. Let A be invoked no later than B in one class. If a valid
  // linearization L uses B but not A, put A in B's place: A is enabled
  // wherever B is (unknown ops have no return bound), it takes the same
  // branch and makes the same changes except for an unobserved value,
  // which no later op can tell apart (facts, results and compares treat
  // both alike); so L stays valid. If L uses both, B before A, swap them,
  // by the same argument. So if any valid L exists, one uses the ops of
  // each class in invoke order, and the search may use only the first op
  // of a class that is not linearized yet. (Pins, below, never differ
  // within a class: a pinned value is observed, so its op is alone.)
  void BuildClasses() {
    const size_t n = c_.ops.size();
    ix_.class_of.assign(n, -1);
    ix_.branch_writes.assign(n, {});
    ix_.pinned_only.assign(n, 0);
    ix_.put_classes.assign(c_.keys.size(), {});
    ix_.del_classes.assign(c_.keys.size(), {});
    std::vector<uint8_t> observed(c_.values.size(), 0);
    std::vector<std::string> ordered;  // constants of <, > value compares
    for (const COp& op : c_.ops) {
      if (op.role == Role::kDropped) continue;
      for (const CCompare& c : op.cmps) {
        if (c.target != Compare::kValue) continue;
        if (c.value >= 0) observed[c.value] = 1;
        if (c.result == Compare::kLess || c.result == Compare::kGreater) {
          ordered.push_back(c.value < 0 ? std::string() : c_.values[c.value]);
        }
      }
      for (const CResult& r : op.results) {
        for (const Kv& kv : r.kvs) observed[kv.value] = 1;
        for (const Kv& kv : r.prev_kvs) observed[kv.value] = 1;
        if (r.has_prev) observed[r.prev.value] = 1;
      }
    }
    std::sort(ordered.begin(), ordered.end());
    ordered.erase(std::unique(ordered.begin(), ordered.end()), ordered.end());
    // An observed value stands for itself (>= 0); an unobserved one for its
    // place among the ordered compare constants (< 0).
    auto token = [&](int32_t v) -> int64_t {
      if (v < 0 || observed[v]) return v;
      auto it = std::lower_bound(ordered.begin(), ordered.end(), c_.values[v]);
      return -1 - (it - ordered.begin());
    };
    // The same tokens stand for values in the search's learned nogoods
    // (search.cc: two states that differ only in unobserved values with
    // equal tokens behave alike for every op).
    ix_.value_token.resize(c_.values.size());
    for (size_t v = 0; v < c_.values.size(); ++v) {
      ix_.value_token[v] = token(static_cast<int32_t>(v));
    }
    // Only looked up (ids follow invoke order), so hash order cannot leak.
    absl::flat_hash_map<std::vector<int64_t>, int> class_ids;
    for (int u : ix_.unknown) {  // invoke order
      const COp& op = c_.ops[u];
      std::vector<int64_t> sig = {op.revoke};
      for (const CCompare& c : op.cmps) {
        sig.insert(sig.end(),
                   {1, c.r.lo, c.r.hi, c.target, c.result, c.number, c.value});
      }
      // With a pin, the op is the step to that revision (see BuildPins).
      const bool pinned_only = ix_.pin[u][0] != 0 || ix_.pin[u][1] != 0;
      for (int b = 0; b < 2; ++b) {
        const std::vector<CReqOp>& br = b == 1 ? op.success : op.failure;
        std::vector<int32_t>& w = ix_.branch_writes[u][b];
        sig.push_back(2);
        for (const CReqOp& q : br) {
          switch (q.kind) {
            case RequestOp::kPut:
              sig.insert(sig.end(), {3, q.key, token(q.value), q.lease});
              w.push_back(q.key);
              break;
            case RequestOp::kDelete:
              sig.insert(sig.end(), {4, q.r.lo, q.r.hi});
              for (int32_t k = q.r.lo; k < q.r.hi; ++k) w.push_back(k);
              break;
            case RequestOp::kRange:
              sig.push_back(5);  // results of unknown ops are not checked
              break;
          }
        }
        std::sort(w.begin(), w.end());
        w.erase(std::unique(w.begin(), w.end()), w.end());
      }
      auto [it, inserted] = class_ids.try_emplace(
          std::move(sig), static_cast<int>(ix_.class_ops.size()));
      if (inserted) ix_.class_ops.emplace_back();
      ix_.class_of[u] = it->second;
      ix_.class_ops[it->second].push_back(u);
      if (pinned_only) {
        ix_.pinned_only[u] = 1;
        for (int b = 0; b < 2; ++b) {
          if (ix_.pin[u][b] == 0) continue;
          auto& at = ix_.pinned_at[ix_.pin[u][b]];
          if (at.empty() || at.back() != u) at.push_back(u);
        }
      }
    }
    for (size_t cid = 0; cid < ix_.class_ops.size(); ++cid) {
      const int u = ix_.class_ops[cid].front();
      if (ix_.pinned_only[u]) continue;
      ix_.free_classes.push_back(static_cast<int>(cid));
      for (int32_t k : ix_.op_puts[u]) ix_.put_classes[k].push_back(cid);
      for (int32_t k : ix_.op_dels[u]) ix_.del_classes[k].push_back(cid);
    }
  }

  // PINS (sound). A fact says the step to revision m left key k with value
  // v put at m: the op that made step m put (k, v) as its last write of k.
  // If exactly one op in the history (any role, either branch) has (k, v)
  // as the last write of k in a branch, that op made step m with that
  // branch, in every valid linearization. So that kUnknown op may only be
  // the step to m, taking that branch: running it anywhere else (with
  // either branch) leaves no op for step m.
  void BuildPins() {
    ix_.pin.assign(c_.ops.size(), {0, 0});
    // (key, value) -> (op, branch) of every branch whose last write of the
    // key is a put of the value; -1 for more than one.
    // Only looked up, so hash order cannot leak.
    absl::flat_hash_map<std::pair<int32_t, int32_t>, std::pair<int, int>>
        writer;
    for (size_t i = 0; i < c_.ops.size(); ++i) {
      const COp& op = c_.ops[i];
      if (op.role == Role::kDropped) continue;
      for (int b = 0; b < 2; ++b) {
        for (const PutKey& p : PutKeys(b == 1 ? op.success : op.failure)) {
          auto [it, inserted] =
              writer.try_emplace(std::make_pair(p.key, p.value),
                                 std::make_pair(static_cast<int>(i), b));
          if (!inserted &&
              it->second != std::make_pair(static_cast<int>(i), b)) {
            it->second = {-1, 0};
          }
        }
      }
    }
    for (int32_t k : ix_.fact_keys) {
      for (const Fact& f : ix_.facts[k]) {
        auto it = writer.find({k, f.value});
        if (it == writer.end() || it->second.first < 0) continue;
        const auto [u, b] = it->second;
        if (c_.ops[u].role == Role::kUnknown) ix_.pin[u][b] = f.m;
      }
    }
  }

  // SERVABLE GAPS (sound). A gap g (a revision no kOk write claims) that
  // the facts say put keys K (required_at) must be made by an op that puts
  // every key of K, with the seen value where a fact has m == g, and that
  // was invoked before the first observer of those facts returned (it is
  // before the observer in L). Only kUnknown ops can make a gap's step and
  // change keys (an external write changes no seen key; a kOk revoke puts
  // nothing). If none of those candidates puts (deletes) key k in any
  // branch, the step to g cannot put (delete) k, and g is left out of k's
  // count. Counts of servable gaps are only used as upper bounds on the
  // steps that can change k, so leaving out a gap that cannot change k
  // keeps every check sound.
  void BuildServable() {
    ix_.restricted_put_gaps.assign(c_.keys.size(), {});
    ix_.restricted_del_gaps.assign(c_.keys.size(), {});
    auto puts_value = [&](int u, int32_t k, int32_t v) {
      for (const auto* br : {&c_.ops[u].success, &c_.ops[u].failure}) {
        for (const CReqOp& q : *br) {
          if (q.kind == RequestOp::kPut && q.key == k && q.value == v) {
            return true;
          }
        }
      }
      return false;
    };
    std::vector<int64_t> revs;
    for (const auto& [g, keys] : ix_.required_at) revs.push_back(g);
    std::sort(revs.begin(), revs.end());  // hash order must not matter
    std::vector<uint8_t> pk(c_.keys.size()), dk(c_.keys.size());
    for (int64_t g : revs) {
      if (ix_.write_at.contains(g)) continue;
      const std::vector<int32_t>& keys = ix_.required_at.at(g);
      int64_t t = kInfinity;
      std::vector<std::pair<int32_t, int32_t>> vals;
      for (int32_t k : keys) {
        for (const Fact& f : ix_.facts[k]) {
          if (f.m == g) vals.push_back({k, f.value});
          if (f.m == g || f.c == g) t = std::min(t, f.min_ret);
        }
      }
      std::vector<int32_t> touched;
      for (int u : ix_.unknown_puts[keys[0]]) {
        if (c_.ops[u].invoke > t) break;  // by invoke
        bool ok = true;
        for (int32_t k : keys) {
          ok = ok && std::binary_search(ix_.op_puts[u].begin(),
                                        ix_.op_puts[u].end(), k);
        }
        for (const auto& [k, v] : vals) ok = ok && puts_value(u, k, v);
        if (!ok) continue;
        for (int32_t k : ix_.op_puts[u]) {
          if (!pk[k]) touched.push_back(k);
          pk[k] = 1;
        }
        for (int32_t k : ix_.op_dels[u]) {
          if (!pk[k] && !dk[k]) touched.push_back(k);
          dk[k] = 1;
        }
      }
      ix_.restricted_gaps.push_back(g);
      std::sort(touched.begin(), touched.end());
      touched.erase(std::unique(touched.begin(), touched.end()), touched.end());
      for (int32_t k : touched) {
        if (pk[k]) ix_.restricted_put_gaps[k].push_back(g);
        if (dk[k]) ix_.restricted_del_gaps[k].push_back(g);
        pk[k] = dk[k] = 0;
      }
    }
  }

  const Compiled& c_;
  const History& h_;
  Index& ix_;
  std::vector<Fact> raw_;
};

}  // namespace

std::optional<Violation> Precheck(const Compiled& c, const History& h,
                                  Index* ix) {
  return Prechecker(c, h, ix).Run();
}

bool KeyOk(const Index& ix, const Model& m, int32_t k, int64_t r) {
  const KState& s = m.key(k);
  const auto& v = ix.facts[k];
  auto it = std::lower_bound(v.begin(), v.end(), r,
                             [](const Fact& f, int64_t x) { return f.m < x; });
  if (it != v.begin() && (it - 1)->hmax >= r) return false;
  if (it == v.end() || it->c > r) {
    // Outside any seen incarnation. If k now exists, it must be gone
    // again by the next revision at which it was seen missing or
    // recreated: some step in between must be able to delete it.
    if (!s.present()) return true;
    const int64_t d = ix.GoneBy(k, r, it == v.end() ? nullptr : &*it);
    return d == kInfinity || ix.DelsIn(k, r, d) > 0 ||
           ix.ServableIn(k, /*del=*/true, r, d) > 0;
  }
  const Fact& f = *it;
  if (!s.present() || s.create != f.c) return false;
  if (r == f.m) {
    return s.version == f.x && s.value == f.value && s.lease == f.lease;
  }
  const int64_t need = f.x - s.version;
  const int64_t known = ix.PutsIn(k, r, f.m);
  const int64_t gap_at_m = ix.write_at.contains(f.m) ? 0 : 1;
  return need >= known + gap_at_m &&
         need <= known + ix.ServableIn(k, /*del=*/false, r, f.m);
}

bool FactsAllow(const Index& ix, const Model& m, int64_t r) {
  for (int32_t k : m.changed()) {
    if (!KeyOk(ix, m, k, r)) return false;
  }
  auto it = ix.required_at.find(r);
  if (it == ix.required_at.end()) return true;
  for (int32_t k : it->second) {
    if (m.key(k).mod != r) return false;
  }
  return true;
}

}  // namespace detcd::harness::lincheck
