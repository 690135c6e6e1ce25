#include "harness/lincheck/model.h"

#include <string>
#include <vector>

namespace detcd::harness::lincheck {

void Model::SetKey(int32_t k, const KState& ns) {
  const KState& old = st_[k];
  trail_.push_back({false, k, 0, old});
  zh1_ ^= KeyHash(k, old, 0) ^ KeyHash(k, ns, 0);
  zh2_ ^= KeyHash(k, old, 1) ^ KeyHash(k, ns, 1);
  st_[k] = ns;
}

uint64_t Model::KeyHash(int32_t k, const KState& s, uint64_t salt) {
  if (!s.present()) return 0;
  uint64_t h = Mix64(static_cast<uint64_t>(k) * 4 + salt);
  h = Mix64(h ^ static_cast<uint64_t>(s.create));
  h = Mix64(h ^ static_cast<uint64_t>(s.mod));
  h = Mix64(h ^ static_cast<uint64_t>(s.version));
  h = Mix64(h ^ static_cast<uint64_t>(s.lease));
  return Mix64(h ^ static_cast<uint64_t>(s.value));
}

void Model::SetRev(int64_t r) {
  trail_.push_back({true, 0, rev_, {}});
  rev_ = r;
}

void Model::UndoTo(size_t mark) {
  while (trail_.size() > mark) {
    const Undo u = trail_.back();
    trail_.pop_back();
    if (u.is_rev) {
      rev_ = u.old_rev;
      continue;
    }
    const KState& cur = st_[u.key];
    zh1_ ^= KeyHash(u.key, cur, 0) ^ KeyHash(u.key, u.old, 0);
    zh2_ ^= KeyHash(u.key, cur, 1) ^ KeyHash(u.key, u.old, 1);
    st_[u.key] = u.old;
  }
}

int Model::Cmp(const CCompare& c, const KState& s) const {
  auto three = [](auto a, auto b) { return a < b ? -1 : (a > b ? 1 : 0); };
  switch (c.target) {
    case Compare::kValue: {
      const std::string& a = s.value < 0 ? empty_ : c_.values[s.value];
      const std::string& b = c.value < 0 ? empty_ : c_.values[c.value];
      const int r = a.compare(b);
      return r < 0 ? -1 : (r > 0 ? 1 : 0);
    }
    case Compare::kVersion:
      return three(s.version, c.number);
    case Compare::kCreate:
      return three(s.create, c.number);
    case Compare::kMod:
      return three(s.mod, c.number);
    case Compare::kLease:
      return three(s.lease, c.number);
  }
  return 0;
}

bool Model::CmpHolds(const CCompare& c, const KState& s) const {
  const int r = Cmp(c, s);
  switch (c.result) {
    case Compare::kEqual:
      return r == 0;
    case Compare::kGreater:
      return r > 0;
    case Compare::kLess:
      return r < 0;
    case Compare::kNotEqual:
      return r != 0;
  }
  return false;
}

// etcd's rule: every existing key in the range must satisfy the compare;
// with none, a value compare fails and others see a zero KeyValue.
bool Model::CompareOne(const CCompare& c) const {
  bool any = false;
  for (int32_t k = c.r.lo; k < c.r.hi; ++k) {
    if (!st_[k].present()) continue;
    any = true;
    if (!CmpHolds(c, st_[k])) return false;
  }
  if (any) return true;
  if (c.target == Compare::kValue) return false;
  return CmpHolds(c, KState{});
}

bool Model::Apply(const COp& op, bool check, int64_t stamp, bool* changed) {
  const size_t mark = trail_.size();
  changed_.clear();
  if (op.revoke != 0) {
    last_succeeded_ = true;
    // Deletes every key attached to the lease, in one step.
    for (int32_t k = 0; k < static_cast<int32_t>(st_.size()); ++k) {
      if (st_[k].present() && st_[k].lease == op.revoke) {
        SetKey(k, KState{});
        changed_.push_back(k);
      }
    }
    *changed = !changed_.empty();
    if (check && op.rev != (*changed ? stamp : rev_)) {
      UndoTo(mark);
      return false;
    }
    return true;
  }
  bool succ = true;
  for (const CCompare& c : op.cmps) {
    if (!CompareOne(c)) {
      succ = false;
      break;
    }
  }
  last_succeeded_ = succ;
  if (check && succ != op.succeeded) return false;
  const std::vector<CReqOp>& br = succ ? op.success : op.failure;
  if (check && op.results.size() != br.size()) return false;
  for (size_t i = 0; i < br.size(); ++i) {
    const CReqOp& r = br[i];
    const CResult* res = check ? &op.results[i] : nullptr;
    bool ok = true;
    switch (r.kind) {
      case RequestOp::kRange: {
        if (res == nullptr) break;
        size_t j = 0;
        for (int32_t k = r.r.lo; k < r.r.hi && ok; ++k) {
          if (!st_[k].present()) continue;
          ok = j < res->kvs.size() && SameKv(res->kvs[j], k, st_[k]);
          ++j;
        }
        ok =
            ok && j == res->kvs.size() && res->count == static_cast<int64_t>(j);
        break;
      }
      case RequestOp::kPut: {
        const KState old = st_[r.key];
        if (res != nullptr && r.prev_kv) {
          ok = res->has_prev == old.present() &&
               (!old.present() || SameKv(res->prev, r.key, old));
        }
        KState ns;
        ns.create = old.present() ? old.create : stamp;
        ns.mod = stamp;
        ns.version = old.version + 1;
        ns.lease = r.lease;
        ns.value = r.value;
        SetKey(r.key, ns);
        changed_.push_back(r.key);
        break;
      }
      case RequestOp::kDelete: {
        int64_t n = 0;
        for (int32_t k = r.r.lo; k < r.r.hi && ok; ++k) {
          if (!st_[k].present()) continue;
          if (res != nullptr && r.prev_kv) {
            ok = static_cast<size_t>(n) < res->prev_kvs.size() &&
                 SameKv(res->prev_kvs[n], k, st_[k]);
          }
          SetKey(k, KState{});
          changed_.push_back(k);
          ++n;
        }
        if (res != nullptr) {
          ok = ok && res->deleted == n &&
               (!r.prev_kv || res->prev_kvs.size() == static_cast<size_t>(n));
        }
        break;
      }
    }
    if (!ok) {
      UndoTo(mark);
      return false;
    }
  }
  *changed = !changed_.empty();
  if (check && op.rev != (*changed ? stamp : rev_)) {
    UndoTo(mark);
    return false;
  }
  return true;
}

}  // namespace detcd::harness::lincheck
