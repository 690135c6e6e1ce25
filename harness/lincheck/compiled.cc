#include "harness/lincheck/compiled.h"

#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "engine/util/check.h"

namespace detcd::harness::lincheck {
namespace {

class Compiler {
 public:
  Compiled Run(const History& h) {
    std::vector<std::string> keys;
    for (const Operation& op : h.ops) {
      for (const auto* br : {&op.req.success, &op.req.failure}) {
        for (const RequestOp& r : *br) keys.push_back(r.key);
      }
      for (const Compare& c : op.req.compares) keys.push_back(c.key);
      for (const OpResult& r : op.resp.results) {
        for (const auto& kv : r.kvs) keys.push_back(kv.key);
        for (const auto& kv : r.prev_kvs) keys.push_back(kv.key);
        if (r.has_prev) keys.push_back(r.prev.key);
      }
    }
    std::sort(keys.begin(), keys.end());
    keys.erase(std::unique(keys.begin(), keys.end()), keys.end());
    out_.keys = std::move(keys);
    out_.ops.resize(h.ops.size());
    for (size_t i = 0; i < h.ops.size(); ++i) Op(h.ops[i], i, &out_.ops[i]);
    return std::move(out_);
  }

 private:
  int32_t KeyId(const std::string& k) const {
    auto it = std::lower_bound(out_.keys.begin(), out_.keys.end(), k);
    DETCD_CHECK(it != out_.keys.end() && *it == k);
    return static_cast<int32_t>(it - out_.keys.begin());
  }
  int32_t Bound(const std::string& k) const {
    return static_cast<int32_t>(
        std::lower_bound(out_.keys.begin(), out_.keys.end(), k) -
        out_.keys.begin());
  }
  CRange Range(const std::string& key, const std::string& end) const {
    CRange r;
    if (end.empty()) {
      r.lo = KeyId(key);
      r.hi = r.lo + 1;
      return r;
    }
    r.lo = Bound(key);
    r.hi = end == std::string(1, '\0') ? static_cast<int32_t>(out_.keys.size())
                                       : Bound(end);
    if (r.hi < r.lo) r.hi = r.lo;
    return r;
  }
  int32_t ValueId(const std::string& v) {
    auto [it, inserted] =
        value_ids_.try_emplace(v, static_cast<int32_t>(out_.values.size()));
    if (inserted) out_.values.push_back(v);
    return it->second;
  }
  Kv ToKv(const mvcc::KeyValue& kv) {
    Kv k;
    k.key = KeyId(kv.key);
    k.value = ValueId(kv.value);
    k.create = kv.create_revision;
    k.mod = kv.mod_revision;
    k.version = kv.version;
    k.lease = kv.lease;
    return k;
  }
  std::vector<CReqOp> Ops(const std::vector<RequestOp>& ops) {
    std::vector<CReqOp> out;
    for (const RequestOp& r : ops) {
      CReqOp c;
      c.kind = r.kind;
      c.prev_kv = r.prev_kv;
      if (r.kind == RequestOp::kPut) {
        c.key = KeyId(r.key);
        c.value = ValueId(r.value);
        c.lease = r.lease;
      } else {
        c.r = Range(r.key, r.range_end);
      }
      out.push_back(c);
    }
    return out;
  }
  void Op(const Operation& op, size_t index, COp* c) {
    c->z1 = Mix64(index * 2 + 0x51ed27);
    c->z2 = Mix64(index * 2 + 1 + 0x7a3b91ULL * 0x100000001ULL);
    if (op.outcome == Operation::kFail ||
        (op.outcome == Operation::kUnknown && IsReadOnly(op.req))) {
      c->role = Role::kDropped;
      return;
    }
    c->invoke = op.invoke_ns;
    for (const Compare& cmp : op.req.compares) {
      CCompare cc;
      cc.r = Range(cmp.key, cmp.range_end);
      cc.target = cmp.target;
      cc.result = cmp.result;
      cc.number = cmp.number;
      if (cmp.target == Compare::kValue) cc.value = ValueId(cmp.value);
      c->cmps.push_back(cc);
    }
    c->revoke = op.req.revoke_lease;
    c->success = Ops(op.req.success);
    c->failure = Ops(op.req.failure);
    if (op.outcome == Operation::kUnknown) {
      c->role = Role::kUnknown;
      return;
    }
    c->ret = op.return_ns;
    c->rev = op.resp.revision;
    c->succeeded = op.resp.succeeded;
    for (const OpResult& r : op.resp.results) {
      CResult cr;
      for (const auto& kv : r.kvs) cr.kvs.push_back(ToKv(kv));
      cr.count = r.count;
      cr.deleted = r.deleted;
      cr.has_prev = r.has_prev;
      if (r.has_prev) cr.prev = ToKv(r.prev);
      for (const auto& kv : r.prev_kvs) cr.prev_kvs.push_back(ToKv(kv));
      c->results.push_back(std::move(cr));
    }
    if (op.req.serializable && IsReadOnly(op.req)) {
      c->role = Role::kSerial;
      return;
    }
    // Whether it wrote follows from the response: a put always changes the
    // store; a delete only if it deleted something.
    bool wrote = false;
    const std::vector<CReqOp>& taken = c->taken();
    for (size_t i = 0; i < taken.size(); ++i) {
      if (taken[i].kind == RequestOp::kPut) wrote = true;
      if (taken[i].kind == RequestOp::kDelete && i < c->results.size() &&
          c->results[i].deleted > 0) {
        wrote = true;
      }
    }
    c->role = wrote ? Role::kWrite : Role::kRead;
  }

  Compiled out_;
  absl::flat_hash_map<std::string, int32_t> value_ids_;
};

}  // namespace

Compiled Compile(const History& h) { return Compiler().Run(h); }

}  // namespace detcd::harness::lincheck
