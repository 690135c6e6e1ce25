// Linearizability checker (see linearizability.h for the model, the rules
// and the soundness argument) and the history generator of history_gen.h,
// which lives here because detcd_lincheck is built from this one file.
#include "harness/linearizability.h"

#include <algorithm>
#include <cstdint>
#include <limits>
#include <map>
#include <optional>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "engine/util/check.h"
#include "harness/history_gen.h"

namespace detcd::harness {

// ---------------------------------------------------------------------------
// history.h helpers

Request PutRequest(std::string key, std::string value, bool prev_kv) {
  Request r;
  RequestOp op;
  op.kind = RequestOp::kPut;
  op.key = std::move(key);
  op.value = std::move(value);
  op.prev_kv = prev_kv;
  r.success.push_back(std::move(op));
  return r;
}

Request RangeRequest(std::string key, std::string range_end,
                     bool serializable) {
  Request r;
  RequestOp op;
  op.kind = RequestOp::kRange;
  op.key = std::move(key);
  op.range_end = std::move(range_end);
  r.success.push_back(std::move(op));
  r.serializable = serializable;
  return r;
}

Request DeleteRequest(std::string key, std::string range_end, bool prev_kv) {
  Request r;
  RequestOp op;
  op.kind = RequestOp::kDelete;
  op.key = std::move(key);
  op.range_end = std::move(range_end);
  op.prev_kv = prev_kv;
  r.success.push_back(std::move(op));
  return r;
}

bool IsReadOnly(const Request& r) {
  for (const auto* branch : {&r.success, &r.failure}) {
    for (const RequestOp& op : *branch) {
      if (op.kind != RequestOp::kRange) return false;
    }
  }
  return true;
}

namespace {

std::string Quote(const std::string& s) {
  return absl::StrCat("\"", absl::CHexEscape(s), "\"");
}

std::string FormatRange(const std::string& key, const std::string& end) {
  if (end.empty()) return absl::CHexEscape(key);
  if (end == std::string(1, '\0')) {
    return absl::StrCat("[", absl::CHexEscape(key), ",+inf)");
  }
  return absl::StrCat("[", absl::CHexEscape(key), ",", absl::CHexEscape(end),
                      ")");
}

std::string FormatKv(const mvcc::KeyValue& kv) {
  std::string s = absl::StrFormat("%s=%s@c%d/m%d/v%d", absl::CHexEscape(kv.key),
                                  Quote(kv.value), kv.create_revision,
                                  kv.mod_revision, kv.version);
  if (kv.lease != 0) absl::StrAppend(&s, "/l", kv.lease);
  return s;
}

std::string FormatKvs(const std::vector<mvcc::KeyValue>& kvs) {
  std::string s = "{";
  for (size_t i = 0; i < kvs.size(); ++i) {
    if (i > 0) s += ",";
    s += FormatKv(kvs[i]);
  }
  return s + "}";
}

std::string FormatRequestOp(const RequestOp& op) {
  switch (op.kind) {
    case RequestOp::kRange:
      return absl::StrCat("range(", FormatRange(op.key, op.range_end), ")");
    case RequestOp::kPut: {
      std::string s = absl::StrCat("put(", absl::CHexEscape(op.key), "=",
                                   Quote(op.value));
      if (op.lease != 0) absl::StrAppend(&s, ",lease=", op.lease);
      if (op.prev_kv) s += ",prev_kv";
      return s + ")";
    }
    case RequestOp::kDelete: {
      std::string s =
          absl::StrCat("delete(", FormatRange(op.key, op.range_end));
      if (op.prev_kv) s += ",prev_kv";
      return s + ")";
    }
  }
  return "?";
}

std::string FormatCompare(const Compare& c) {
  static constexpr const char* kTargets[] = {"version", "create", "mod",
                                             "value", "lease"};
  static constexpr const char* kResults[] = {"==", ">", "<", "!="};
  std::string s = absl::StrCat(kTargets[c.target], "(",
                               FormatRange(c.key, c.range_end), ")",
                               kResults[c.result]);
  if (c.target == Compare::kValue) return s + Quote(c.value);
  return absl::StrCat(s, c.number);
}

std::string FormatOps(const std::vector<RequestOp>& ops) {
  std::string s;
  for (size_t i = 0; i < ops.size(); ++i) {
    if (i > 0) s += "; ";
    s += FormatRequestOp(ops[i]);
  }
  return s;
}

std::string FormatResult(const RequestOp& op, const OpResult& r) {
  switch (op.kind) {
    case RequestOp::kRange:
      return absl::StrCat(FormatKvs(r.kvs), " count=", r.count);
    case RequestOp::kPut:
      if (!op.prev_kv) return "ok";
      return r.has_prev ? absl::StrCat("prev=", FormatKv(r.prev))
                        : "prev=none";
    case RequestOp::kDelete: {
      std::string s = absl::StrCat("deleted=", r.deleted);
      if (op.prev_kv) absl::StrAppend(&s, " prev=", FormatKvs(r.prev_kvs));
      return s;
    }
  }
  return "?";
}

}  // namespace

std::string FormatOp(const Operation& op) {
  static constexpr const char* kOutcomes[] = {"ok", "fail", "unknown"};
  const Request& req = op.req;
  std::string s = absl::StrFormat("#%d c%d [%d,%d] %s", op.id, op.client,
                                  op.invoke_ns, op.return_ns,
                                  kOutcomes[op.outcome]);
  if (op.outcome == Operation::kOk) {
    absl::StrAppend(&s, " rev=", op.resp.revision);
  }
  s += ": ";
  if (req.serializable) s += "serializable ";
  const bool plain = req.compares.empty() && req.failure.empty() &&
                     req.success.size() == 1;
  if (plain) {
    s += FormatRequestOp(req.success[0]);
  } else {
    s += "txn if(";
    for (size_t i = 0; i < req.compares.size(); ++i) {
      if (i > 0) s += " && ";
      s += FormatCompare(req.compares[i]);
    }
    absl::StrAppend(&s, ") then(", FormatOps(req.success), ") else(",
                    FormatOps(req.failure), ")");
  }
  if (op.outcome != Operation::kOk) return s;
  s += " -> ";
  const std::vector<RequestOp>& branch =
      op.resp.succeeded ? req.success : req.failure;
  if (!plain) s += op.resp.succeeded ? "then " : "else ";
  if (op.resp.results.size() != branch.size()) {
    return absl::StrCat(s, "<", op.resp.results.size(), " results for ",
                        branch.size(), " ops>");
  }
  for (size_t i = 0; i < branch.size(); ++i) {
    if (i > 0) s += "; ";
    s += FormatResult(branch[i], op.resp.results[i]);
  }
  return s;
}

// ---------------------------------------------------------------------------
// The checker.

namespace {

constexpr int64_t kInfinity = std::numeric_limits<int64_t>::max();
// Larger revisions are rejected as impossible (and keep the arithmetic on
// revisions far from overflow).
constexpr int64_t kMaxRevision = int64_t{1} << 60;
// Bounds on the work spent shrinking a violation to a small window: per
// sub-history check, in total, and in number of checks.
constexpr int64_t kShrinkCheckStates = 50'000;
constexpr int64_t kShrinkTotalStates = 20'000'000;
constexpr int kShrinkMaxChecks = 400;
// Gap candidates that serve a key needing a put or delete within this many
// other gaps are tried before the rest.
constexpr int64_t kMaxStagedSlack = 1000;
// At most this many keys of a failing op steer the retry order.
constexpr size_t kMaxFocusKeys = 16;
// Preferred gap candidates per key (the rest are still tried, later).
constexpr size_t kMaxStagedPerKey = 32;
// At most this many ops are listed in an explanation.
constexpr size_t kMaxExplainedOps = 40;
// At most this many related writes are listed as context.
constexpr size_t kMaxRelatedOps = 6;

uint64_t Mix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

// What a compiled op is to the search.
enum class Role : uint8_t {
  kDropped,  // failed, or unknown and read-only
  kWrite,    // kOk and changed the store (per its response)
  kRead,     // kOk, linearizable, changed nothing
  kSerial,   // kOk serializable read
  kUnknown,  // may have taken effect
};

// Key and value strings are interned: keys into ids ordered like the
// strings (so a key range is an id range), values into arbitrary ids.
struct Kv {
  int32_t key = -1;
  int32_t value = -1;
  int64_t create = 0, mod = 0, version = 0, lease = 0;
};

struct KState {
  int64_t create = 0, mod = 0, version = 0, lease = 0;
  int32_t value = -1;
  bool present() const { return version > 0; }
};

bool SameKv(const Kv& kv, int32_t key, const KState& s) {
  return kv.key == key && kv.value == s.value && kv.create == s.create &&
         kv.mod == s.mod && kv.version == s.version && kv.lease == s.lease;
}

struct CRange {
  int32_t lo = 0, hi = 0;  // key ids [lo, hi)
};

struct CCompare {
  CRange r;
  Compare::Target target = Compare::kVersion;
  Compare::Result result = Compare::kEqual;
  int64_t number = 0;
  int32_t value = -1;
};

struct CReqOp {
  RequestOp::Kind kind = RequestOp::kRange;
  CRange r;
  int32_t key = -1;  // put
  int32_t value = -1;
  int64_t lease = 0;
  bool prev_kv = false;
};

struct CResult {
  std::vector<Kv> kvs;
  int64_t count = 0, deleted = 0;
  bool has_prev = false;
  Kv prev;
  std::vector<Kv> prev_kvs;
};

struct COp {
  Role role = Role::kDropped;
  int64_t invoke = 0, ret = kInfinity;
  int64_t rev = 0;
  bool succeeded = true;
  std::vector<CCompare> cmps;
  std::vector<CReqOp> success, failure;
  std::vector<CResult> results;
  uint64_t z1 = 0, z2 = 0;  // Zobrist keys for the linearized-set hash
  const std::vector<CReqOp>& taken() const {
    return succeeded ? success : failure;
  }
};

// The history with strings interned and roles decided.
struct Compiled {
  std::vector<std::string> keys;  // sorted, unique
  std::vector<std::string> values;
  std::vector<COp> ops;  // same indices as History::ops
};

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

bool IsLinearOk(Role r) { return r == Role::kWrite || r == Role::kRead; }
bool IsOk(Role r) { return IsLinearOk(r) || r == Role::kSerial; }

// A violation found by a necessary-condition check: why, and which ops
// (history indices) together prove it.
struct Violation {
  std::string reason;
  std::vector<int> ops;
};

// One observation, merged over every op that saw the same (key,
// mod_revision): "key existed with create c, version x, value, lease, last
// written at m, and was unchanged up to hmax".
struct Fact {
  int32_t key = -1;
  int64_t c = 0, m = 0, x = 0, lease = 0;
  int32_t value = -1;
  int64_t hmax = 0;
  int hop = -1;          // an op that saw it at hmax
  int op = -1;           // an op that saw it (the one returning first)
  int64_t min_ret = 0;   // that op's return (its time bound)
};

// Everything the search and the prechecks need besides the ops.
// The hash containers below are only looked up, never iterated, so the
// verdict and its explanation do not depend on their (per-process) order.
struct Index {
  std::vector<std::vector<Fact>> facts;  // per key, sorted by m
  std::vector<int32_t> fact_keys;        // keys with facts
  // Keys a step to revision R must put (a fact says m == R or c == R).
  absl::flat_hash_map<int64_t, std::vector<int32_t>> required_at;
  absl::flat_hash_map<int64_t, int> write_at;  // kOk write by revision
  absl::flat_hash_map<int64_t, std::vector<int>> reads_at;   // by invoke
  absl::flat_hash_map<int64_t, std::vector<int>> serial_at;
  std::vector<int64_t> write_revs;                // sorted
  std::vector<std::vector<int64_t>> put_revs;     // per key, kOk puts
  std::vector<std::vector<int>> unknown_puts;     // per key, by invoke
  std::vector<std::vector<int>> unknown_dels;     // per key, by invoke
  // Per unknown op: keys it puts / may delete in either branch (sorted).
  std::vector<std::vector<int32_t>> op_puts, op_dels;
  // Per key: kOk writes with a delete over the key that deleted something.
  std::vector<std::vector<int64_t>> del_revs;
  // Per key: (revision, op) where a read saw the key missing; sorted.
  std::vector<std::vector<std::pair<int64_t, int>>> absent;
  std::vector<int32_t> watch_keys;  // keys with facts or absences
  std::vector<int> unknown;                       // by invoke
  std::vector<int> ret_order;                     // kOk linear ops by return
  std::vector<int> ret_pos;                       // op -> position
  std::vector<int> unknown_pos;                   // op -> position
  int64_t max_serial_rev = 1;
  int64_t max_rev = 1;

  // Revisions in (a, b] that no kOk write claims.
  int64_t GapsIn(int64_t a, int64_t b) const {
    if (b <= a) return 0;
    auto lo = std::upper_bound(write_revs.begin(), write_revs.end(), a);
    auto hi = std::upper_bound(write_revs.begin(), write_revs.end(), b);
    return (b - a) - (hi - lo);
  }
  // kOk writes in (a, b] that put key k.
  // kOk writes in (a, b] that may have deleted key k.
  int64_t DelsIn(int32_t k, int64_t a, int64_t b) const {
    if (b <= a) return 0;
    const auto& v = del_revs[k];
    return std::upper_bound(v.begin(), v.end(), b) -
           std::upper_bound(v.begin(), v.end(), a);
  }
  // The first revision >= r at which a read saw k missing.
  int64_t NextAbsent(int32_t k, int64_t r) const {
    const auto& v = absent[k];
    auto it = std::lower_bound(
        v.begin(), v.end(), r,
        [](const std::pair<int64_t, int>& a, int64_t x) { return a.first < x; });
    return it == v.end() ? kInfinity : it->first;
  }
  int64_t PutsIn(int32_t k, int64_t a, int64_t b) const {
    if (b <= a) return 0;
    const auto& v = put_revs[k];
    return std::upper_bound(v.begin(), v.end(), b) -
           std::upper_bound(v.begin(), v.end(), a);
  }
};

// Keys put by the taken branch of a kOk write, with the last put's value
// and lease.
struct PutKey {
  int32_t key;
  int32_t value;
  int64_t lease;
};
std::vector<PutKey> PutKeys(const COp& op) {
  std::vector<PutKey> out;
  for (const CReqOp& r : op.taken()) {
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
    ix_.op_puts.assign(n, {});
    ix_.op_dels.assign(n, {});
    ix_.ret_pos.assign(n, -1);
    ix_.unknown_pos.assign(n, -1);
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
          ix_.op_puts[i] = std::move(put);
          ix_.op_dels[i] = std::move(del);
          break;
        }
        case Role::kDropped:
          break;
      }
    }
    std::stable_sort(ix_.ret_order.begin(), ix_.ret_order.end(),
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
        return Violation{absl::StrCat(Op(oi), " has impossible revision ",
                                      op.rev),
                         {oi}};
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
    for (auto* all : {&ix_.put_revs, &ix_.del_revs}) {
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
                         " returned state at revision ", y.rev,
                         " before ", Op(op), " (revision ", c_.ops[op].rev,
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
    std::stable_sort(raw_.begin(), raw_.end(), [](const Fact& a, const Fact& b) {
      if (a.key != b.key) return a.key < b.key;
      return a.m < b.m;
    });
    ix_.facts.assign(c_.keys.size(), {});
    for (const Fact& f : raw_) {
      if (f.x < 1 || f.m < 2 || f.c < 2 || f.c > f.m || f.m > f.hmax ||
          f.x > f.m - f.c + 1 || (f.x == 1) != (f.c == f.m)) {
        return Violation{
            absl::StrCat(Op(f.op), " saw impossible ", KvText(f), " at revision ",
                         f.hmax),
            {f.op}};
      }
      auto& v = ix_.facts[f.key];
      if (!v.empty() && v.back().m == f.m) {
        Fact& g = v.back();
        if (g.c != f.c || g.x != f.x || g.value != f.value ||
            g.lease != f.lease) {
          return Violation{absl::StrCat(Op(g.op), " and ", Op(f.op),
                                        " saw different values for ",
                                        c_.keys[f.key], " written at revision ",
                                        f.m),
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
          return Violation{
              absl::StrCat(Op(e.hop), " saw ", KvText(e), " at revision ",
                           e.hmax, " but ", Op(f.op), " saw it written at ",
                           f.m),
              {e.hop, f.op}};
        }
        if (f.c <= e.m) {
          if (f.c != e.c || f.x <= e.x || f.x - e.x > f.m - e.m) {
            return Violation{absl::StrCat(Op(e.op), " saw ", KvText(e),
                                          " and ", Op(f.op), " saw ", KvText(f),
                                          ": inconsistent history of the key"),
                             {e.op, f.op}};
          }
        } else if (f.c <= e.hmax + 1) {
          return Violation{
              absl::StrCat(Op(e.hop), " saw ", KvText(e), " at revision ",
                           e.hmax, " but ", Op(f.op), " saw it recreated at ",
                           f.c),
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
          return Violation{absl::StrCat(Op(op), " saw ", c_.keys[k],
                                        " missing at revision ", h, " but ",
                                        Op(bad->op), " saw ", KvText(*bad)),
                           {op, bad->op}};
        }
      }
    }
    return std::nullopt;
  }

  std::string KvText(const Fact& f) const {
    return absl::StrFormat("%s=%s@c%d/m%d/v%d", absl::CHexEscape(c_.keys[f.key]),
                           Quote(c_.values[f.value]), f.c, f.m, f.x);
  }

  // Facts around revision r for key k: the first with m >= r and the last
  // with m < r.
  std::pair<const Fact*, const Fact*> Around(int32_t k, int64_t r) const {
    const auto& v = ix_.facts[k];
    auto it = std::lower_bound(v.begin(), v.end(), r,
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
          return Violation{absl::StrCat(Op(next->op), " saw ", KvText(*next),
                                        " but ", Op(oi), " put ",
                                        Quote(c_.values[p.value]),
                                        " at revision ", r),
                           {next->op, oi}};
        }
      }
      // Keys it reported deleting.
      const std::vector<CReqOp>& taken = op.taken();
      for (size_t j = 0; j < taken.size() && j < op.results.size(); ++j) {
        if (taken[j].kind != RequestOp::kDelete || !taken[j].prev_kv) continue;
        for (const Kv& kv : op.results[j].prev_kvs) {
          auto [next, prev] = Around(kv.key, r);
          const Fact* bad = nullptr;
          if (prev != nullptr && prev->hmax >= r) bad = prev;
          if (next != nullptr && next->c <= r) bad = next;
          if (bad != nullptr) {
            return Violation{absl::StrCat(Op(bad->hop), " saw ", KvText(*bad),
                                          " at revision ", bad->hmax, " but ",
                                          Op(oi), " deleted it at revision ", r),
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
        return Violation{absl::StrCat(Op(obs), " saw ", c_.keys[k],
                                      " missing at revision ", h, " but ",
                                      Op(by), " shows it existed at ", p,
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
          std::string what =
              r == f.m ? absl::StrCat("wrote ", KvText(f))
                       : absl::StrCat("created ", c_.keys[k]);
          return Violation{absl::StrCat(Op(f.op), " saw ", KvText(f),
                                        ", but no op could have ", what,
                                        " at revision ", r),
                           std::move(ops)};
        }
      }
    }
    return std::nullopt;
  }

  const Compiled& c_;
  const History& h_;
  Index& ix_;
  std::vector<Fact> raw_;
};

// The revision-guided search (see the header comment).
class Search {
 public:
  enum class Verdict { kOk, kFail, kLimit };

  // Gap candidates of equal preference are tried newest invoke first, or
  // oldest first.
  enum class Order { kNewestFirst, kOldestFirst };

  Search(const Compiled& c, const Index& ix, const CheckOptions& o,
         int64_t max_states, Order order)
      : c_(c), ix_(ix), o_(o), max_states_(max_states), order_(order) {
    st_.resize(c.keys.size());
    lin_.assign(c.ops.size(), 0);
    for (const COp& op : c.ops) pending_ok_ += IsLinearOk(op.role) ? 1 : 0;
  }

  Verdict Run() {
    bool alive = Settle();
    while (true) {
      if (!alive && !Backtrack()) {
        return limit_hit_ ? Verdict::kLimit : Verdict::kFail;
      }
      if (states_ > max_states_) return Verdict::kLimit;
      if (pending_ok_ == 0 && rev_ >= ix_.max_serial_rev) return Verdict::kOk;
      auto w = ix_.write_at.find(rev_ + 1);
      alive = w != ix_.write_at.end() ? ForcedWrite(w->second) : OpenGap();
      if (alive) alive = Settle();
    }
  }

  uint64_t states() const { return static_cast<uint64_t>(states_); }

  // Where the search got furthest, for explanations.
  int64_t deepest_rev() const { return deepest_rev_; }
  int deepest_op() const { return deepest_op_; }
  const char* deepest_why() const { return deepest_why_; }

 private:
  struct Undo {
    enum Kind : uint8_t { kKey, kLin, kRev } kind;
    int32_t idx;
    int64_t old;  // kLin: maxinv; kRev: revision
    KState st;
  };

  // A key that some step in [r, ...] must put or delete, with how many
  // other gaps could do it instead (slack); with slack 0 this step must.
  struct Need {
    int64_t slack;
    int32_t key;
    bool del;
    bool operator<(const Need& o) const {
      return std::tie(slack, key, del) < std::tie(o.slack, o.key, o.del);
    }
  };

  // Up to kMaxStagedPerKey unlinearized unknown ops that put (or may
  // delete) key k and were invoked by min_ret, newest first.
  std::vector<int> NewestEnabled(int32_t k, bool del, int64_t min_ret) const {
    const std::vector<int>& us =
        del ? ix_.unknown_dels[k] : ix_.unknown_puts[k];
    auto end = std::upper_bound(
        us.begin(), us.end(), min_ret,
        [&](int64_t t, int u) { return t < c_.ops[u].invoke; });
    std::vector<int> out;
    for (auto it = end; it != us.begin() && out.size() < kMaxStagedPerKey;) {
      const int u = *--it;
      if (!lin_[u]) out.push_back(u);
    }
    return out;
  }

  bool Serves(int u, const Need& n) const {
    const auto& keys = n.del ? ix_.op_dels[u] : ix_.op_puts[u];
    return std::binary_search(keys.begin(), keys.end(), n.key);
  }

  struct Frame {
    size_t mark;
    std::vector<Need> must;  // needs this step has to serve
    int64_t rev;
    int64_t min_ret;
    std::vector<int> staged;  // preferred candidates, in order
    bool forced = false;      // only ops serving every must-need can work
    size_t next_staged = 0;
    bool phantom_done = false;
    // Enabled unknown ops not yet scanned: ix_.unknown[scan_lo, scan_hi).
    size_t scan_lo = 0, scan_hi = 0;
    // Candidates that touch the keys of the op that failed after the last
    // candidate, tried next (see Refocus).
    std::vector<int> focus;
    size_t next_focus = 0;
    absl::flat_hash_set<int> tried;
  };

  static constexpr int kPhantom = -2;
  static constexpr int kNone = -1;

  int64_t MinRet() const {
    return ret_cursor_ < ix_.ret_order.size()
               ? c_.ops[ix_.ret_order[ret_cursor_]].ret
               : kInfinity;
  }

  void Note(int op, const char* why) {
    if (!noted_ || rev_ > deepest_rev_) {
      noted_ = true;
      deepest_rev_ = rev_;
      deepest_op_ = op;
      deepest_why_ = why;
    }
  }

  void SetKey(int32_t k, const KState& ns) {
    const KState& old = st_[k];
    trail_.push_back({Undo::kKey, k, 0, old});
    zh1_ ^= KeyHash(k, old, 0) ^ KeyHash(k, ns, 0);
    zh2_ ^= KeyHash(k, old, 1) ^ KeyHash(k, ns, 1);
    st_[k] = ns;
  }

  static uint64_t KeyHash(int32_t k, const KState& s, uint64_t salt) {
    if (!s.present()) return 0;
    uint64_t h = Mix64(static_cast<uint64_t>(k) * 4 + salt);
    h = Mix64(h ^ static_cast<uint64_t>(s.create));
    h = Mix64(h ^ static_cast<uint64_t>(s.mod));
    h = Mix64(h ^ static_cast<uint64_t>(s.version));
    h = Mix64(h ^ static_cast<uint64_t>(s.lease));
    return Mix64(h ^ static_cast<uint64_t>(s.value));
  }

  void SetRev(int64_t r) {
    trail_.push_back({Undo::kRev, 0, rev_, {}});
    rev_ = r;
  }

  void Linearize(int i) {
    const COp& op = c_.ops[i];
    trail_.push_back({Undo::kLin, i, maxinv_, {}});
    lin_[i] = 1;
    sh1_ ^= op.z1;
    sh2_ ^= op.z2;
    maxinv_ = std::max(maxinv_, op.invoke);
    if (IsLinearOk(op.role)) {
      --pending_ok_;
      while (ret_cursor_ < ix_.ret_order.size() &&
             lin_[ix_.ret_order[ret_cursor_]]) {
        ++ret_cursor_;
      }
    } else {
      while (unk_cursor_ < ix_.unknown.size() &&
             lin_[ix_.unknown[unk_cursor_]]) {
        ++unk_cursor_;
      }
    }
  }

  void UndoTo(size_t mark) {
    while (trail_.size() > mark) {
      const Undo u = trail_.back();
      trail_.pop_back();
      switch (u.kind) {
        case Undo::kKey: {
          const KState& cur = st_[u.idx];
          zh1_ ^= KeyHash(u.idx, cur, 0) ^ KeyHash(u.idx, u.st, 0);
          zh2_ ^= KeyHash(u.idx, cur, 1) ^ KeyHash(u.idx, u.st, 1);
          st_[u.idx] = u.st;
          break;
        }
        case Undo::kRev:
          rev_ = u.old;
          break;
        case Undo::kLin: {
          const COp& op = c_.ops[u.idx];
          lin_[u.idx] = 0;
          sh1_ ^= op.z1;
          sh2_ ^= op.z2;
          maxinv_ = u.old;
          if (IsLinearOk(op.role)) {
            ++pending_ok_;
            ret_cursor_ = std::min(ret_cursor_,
                                   static_cast<size_t>(ix_.ret_pos[u.idx]));
          } else {
            unk_cursor_ = std::min(
                unk_cursor_, static_cast<size_t>(ix_.unknown_pos[u.idx]));
          }
          break;
        }
      }
    }
  }

  // --- The KV model.

  int Cmp(const CCompare& c, const KState& s) const {
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

  bool CmpHolds(const CCompare& c, const KState& s) const {
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
  bool CompareOne(const CCompare& c) const {
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

  // Runs op on the model, stamping changes with `stamp`. With `check`,
  // compares with op's response; on a mismatch undoes its changes and
  // returns false. Changed keys go to changed_.
  bool Eval(const COp& op, bool check, int64_t stamp, bool* changed) {
    ++states_;
    const size_t mark = trail_.size();
    changed_.clear();
    bool succ = true;
    for (const CCompare& c : op.cmps) {
      if (!CompareOne(c)) {
        succ = false;
        break;
      }
    }
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
          ok = ok && j == res->kvs.size() &&
               res->count == static_cast<int64_t>(j);
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
                 (!r.prev_kv ||
                  res->prev_kvs.size() == static_cast<size_t>(n));
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

  // Does op (a read) match the current state without changing it?
  bool Matches(int i) {
    bool changed = false;
    return Eval(c_.ops[i], /*check=*/true, rev_ + 1, &changed) && !changed;
  }

  // --- Facts.

  // The post-state of key k after a step to revision r agrees with the
  // facts about k (k changed at r).
  bool KeyOk(int32_t k, int64_t r) const {
    const KState& s = st_[k];
    const auto& v = ix_.facts[k];
    auto it = std::lower_bound(v.begin(), v.end(), r,
                               [](const Fact& f, int64_t x) { return f.m < x; });
    if (it != v.begin() && (it - 1)->hmax >= r) return false;
    if (it == v.end() || it->c > r) {
      // Outside any seen incarnation. If k now exists, it must be gone
      // again by the next revision at which it was seen missing or
      // recreated: some step in between must be able to delete it.
      if (!s.present()) return true;
      int64_t d = ix_.NextAbsent(k, r);
      if (it != v.end()) d = std::min(d, it->c - 1);
      return d == kInfinity || ix_.DelsIn(k, r, d) > 0 ||
             ix_.GapsIn(r, d) > 0;
    }
    const Fact& f = *it;
    if (!s.present() || s.create != f.c) return false;
    if (r == f.m) {
      return s.version == f.x && s.value == f.value && s.lease == f.lease;
    }
    const int64_t need = f.x - s.version;
    const int64_t known = ix_.PutsIn(k, r, f.m);
    const int64_t gap_at_m = ix_.write_at.contains(f.m) ? 0 : 1;
    return need >= known + gap_at_m && need <= known + ix_.GapsIn(r, f.m);
  }

  bool FactsAllow(int64_t r) const {
    for (int32_t k : changed_) {
      if (!KeyOk(k, r)) return false;
    }
    auto it = ix_.required_at.find(r);
    if (it == ix_.required_at.end()) return true;
    for (int32_t k : it->second) {
      if (st_[k].mod != r) return false;
    }
    return true;
  }

  // --- Search steps.

  // Arrived at revision rev_: check serializable reads of this state, then
  // linearize the reads at rev_ (all of them, or this branch is dead).
  bool Settle() {
    if (auto it = ix_.serial_at.find(rev_); it != ix_.serial_at.end()) {
      for (int s : it->second) {
        if (maxinv_ > c_.ops[s].ret) {
          Note(s, "serializable read returned before its state existed");
          return false;
        }
        if (!Matches(s)) {
          FailedOn(c_.ops[s]);
          Note(s, "serializable read does not match the state");
          return false;
        }
      }
    }
    auto it = ix_.reads_at.find(rev_);
    if (it == ix_.reads_at.end()) return true;
    const std::vector<int>& reads = it->second;
    for (int r : reads) {
      if (!lin_[r] && !Matches(r)) {
        FailedOn(c_.ops[r]);
        Note(r, "response does not match the state at its revision");
        return false;
      }
    }
    // In invoke order: once one is not enabled, the op blocking it is not
    // a read at this revision, so the branch is dead.
    for (int r : reads) {
      if (lin_[r]) continue;
      if (c_.ops[r].invoke > MinRet()) {
        Note(r, "an op that returned before it was invoked needs a later "
                "revision");
        return false;
      }
      Linearize(r);
    }
    return true;
  }

  bool ForcedWrite(int w) {
    const COp& op = c_.ops[w];
    if (lin_[w] || op.invoke > MinRet()) {
      Note(w, "an op that returned before it was invoked needs a later "
              "revision");
      return false;
    }
    const size_t mark = trail_.size();
    bool changed = false;
    if (!Eval(op, /*check=*/true, rev_ + 1, &changed)) {
      FailedOn(op);
      Note(w, "response does not match the state before its revision");
      return false;
    }
    if (!FactsAllow(rev_ + 1)) {
      UndoTo(mark);
      FailedOn(op);
      Note(w, "its write contradicts what other ops saw");
      return false;
    }
    Linearize(w);
    SetRev(rev_ + 1);
    return true;
  }

  // Revision rev_ + 1 is claimed by no kOk write: open a choice point over
  // the kUnknown ops (and external writes) that could make it.
  bool OpenGap() {
    const int64_t r = rev_ + 1;
    Frame f;
    f.mark = trail_.size();
    f.rev = rev_;
    f.min_ret = MinRet();
    f.scan_lo = unk_cursor_;
    f.scan_hi = static_cast<size_t>(
        std::upper_bound(ix_.unknown.begin(), ix_.unknown.end(), f.min_ret,
                         [&](int64_t t, int u) { return t < c_.ops[u].invoke; }) -
        ix_.unknown.begin());
    std::vector<Need> needs;
    if (auto it = ix_.required_at.find(r); it != ix_.required_at.end()) {
      for (int32_t k : it->second) needs.push_back({0, k, false});
    }
    for (int32_t k : ix_.watch_keys) {
      const KState& s = st_[k];
      const auto& v = ix_.facts[k];
      auto it = std::lower_bound(
          v.begin(), v.end(), r,
          [](const Fact& f, int64_t x) { return f.m < x; });
      if (it != v.end() && it->c < r) {
        // Inside an incarnation: its next fact needs more puts than the
        // known writes give?
        if (!s.present() || s.create != it->c) {
          Note(kNone, "a key's incarnation does not match what ops saw");
          return false;
        }
        const int64_t need = it->x - s.version - ix_.PutsIn(k, r, it->m);
        const int64_t gaps = ix_.GapsIn(r - 1, it->m);
        if (need < 0 || need > gaps) {
          Note(kNone, "a key's version count cannot match what ops saw");
          return false;
        }
        if (need > 0) needs.push_back({gaps - need, k, false});
        continue;
      }
      if (!s.present()) continue;
      // It exists but must be gone by a revision where it was seen missing
      // or recreated.
      int64_t d = ix_.NextAbsent(k, r);
      if (it != v.end()) d = std::min(d, it->c - 1);
      if (d == kInfinity || ix_.DelsIn(k, r - 1, d) > 0) continue;
      const int64_t gaps = ix_.GapsIn(r - 1, d);
      if (gaps == 0) {
        Note(kNone, "a key cannot be deleted before it was seen missing");
        return false;
      }
      needs.push_back({gaps - 1, k, true});
    }
    std::sort(needs.begin(), needs.end());
    for (const Need& n : needs) {
      if (n.slack == 0) f.must.push_back(n);
    }
    f.forced = !f.must.empty();
    // Preferred candidates: unknown ops that can serve some need (all the
    // must-needs, if any), most needs served first, then in order_.
    const int sign = order_ == Order::kNewestFirst ? -1 : 1;
    std::vector<std::pair<int, int>> scored;  // (-served, sign * position)
    for (const Need& n : needs) {
      if (n.slack > kMaxStagedSlack) break;
      for (int u : NewestEnabled(n.key, n.del, f.min_ret)) {
        scored.push_back({0, sign * ix_.unknown_pos[u]});
      }
    }
    std::sort(scored.begin(), scored.end());
    scored.erase(std::unique(scored.begin(), scored.end()), scored.end());
    for (auto& [served, pos] : scored) {
      const int u = ix_.unknown[sign * pos];
      bool all_must = true;
      for (const Need& n : f.must) all_must &= Serves(u, n);
      if (!all_must) {
        served = 1;  // dropped below
        continue;
      }
      int count = 0;
      for (const Need& n : needs) count += Serves(u, n) ? 1 : 0;
      served = -count;
    }
    std::sort(scored.begin(), scored.end());
    for (const auto& [served, pos] : scored) {
      if (served > 0) break;
      f.staged.push_back(ix_.unknown[sign * pos]);
    }
    frames_.push_back(std::move(f));
    return TryNext(frames_.back());
  }

  int NextCandidate(Frame& f) {
    while (f.next_focus < f.focus.size()) {
      const int u = f.focus[f.next_focus++];
      if (f.tried.insert(u).second) return u;
    }
    while (f.next_staged < f.staged.size()) {
      const int u = f.staged[f.next_staged++];
      if (f.tried.insert(u).second) return u;
    }
    if (o_.external_writes && !f.forced && !f.phantom_done) {
      f.phantom_done = true;
      return kPhantom;
    }
    // Newest first by default: an unknown op invoked long ago that has not
    // taken effect yet most likely never did.
    while (f.scan_lo < f.scan_hi) {
      const int u = order_ == Order::kNewestFirst
                        ? ix_.unknown[--f.scan_hi]
                        : ix_.unknown[f.scan_lo++];
      if (lin_[u] || f.tried.contains(u)) continue;
      // A forced step must serve every must-need.
      bool all_must = true;
      for (const Need& n : f.must) all_must &= Serves(u, n);
      if (!all_must) continue;
      f.tried.insert(u);
      return u;
    }
    return kNone;
  }

  // Tries the frame's remaining candidates until one makes a step that the
  // facts allow and that was not explored before.
  bool TryNext(Frame& f) {
    const int64_t r = f.rev + 1;
    while (true) {
      if (states_ > max_states_) {
        limit_hit_ = true;
        return false;
      }
      const int cand = NextCandidate(f);
      if (cand == kNone) {
        Note(kNone, "no op can make the next revision");
        return false;
      }
      if (cand == kPhantom) {
        ++states_;
        changed_.clear();
        if (!FactsAllow(r)) continue;
        SetRev(r);
      } else {
        bool changed = false;
        Eval(c_.ops[cand], /*check=*/false, r, &changed);
        if (!changed) continue;
        bool served = true;
        for (const Need& n : f.must) {
          served &= n.del ? !st_[n.key].present() : st_[n.key].mod == r;
        }
        if (!served || !FactsAllow(r)) {
          UndoTo(f.mark);
          continue;
        }
        Linearize(cand);
        SetRev(r);
      }
      const uint64_t r1 = Mix64(static_cast<uint64_t>(rev_) ^ 0x2545f491ULL);
      const uint64_t r2 = Mix64(static_cast<uint64_t>(rev_) ^ 0x9e3779b9ULL);
      const std::pair<uint64_t, uint64_t> key = {
          sh1_ ^ Mix64(zh1_ ^ r1), sh2_ ^ Mix64(zh2_ ^ r2)};
      if (!seen_.insert(key).second) {
        UndoTo(f.mark);
        continue;
      }
      return true;
    }
  }

  bool Backtrack() {
    while (!frames_.empty()) {
      Frame& f = frames_.back();
      UndoTo(f.mark);
      if (limit_hit_) return false;
      Refocus(f);
      if (TryNext(f)) {
        if (Settle()) return true;
        continue;  // dead right away: next candidate of the same frame
      }
      if (limit_hit_) return false;
      frames_.pop_back();
    }
    return false;
  }

  // The last candidate of the innermost frame led to the failure of an op
  // that looks at fail_keys_: try the candidates that touch those keys
  // first. Only the order changes, so the search stays complete.
  void Refocus(Frame& f) {
    if (fail_keys_.empty()) return;
    std::vector<int> focus;
    for (int32_t k : fail_keys_) {
      for (bool del : {false, true}) {
        for (int u : NewestEnabled(k, del, f.min_ret)) {
          if (f.tried.contains(u)) continue;
          bool all_must = true;
          for (const Need& n : f.must) all_must &= Serves(u, n);
          if (all_must) focus.push_back(u);
        }
      }
    }
    fail_keys_.clear();
    std::sort(focus.begin(), focus.end(), [&](int a, int b) {
      return order_ == Order::kNewestFirst
                 ? ix_.unknown_pos[a] > ix_.unknown_pos[b]
                 : ix_.unknown_pos[a] < ix_.unknown_pos[b];
    });
    focus.erase(std::unique(focus.begin(), focus.end()), focus.end());
    f.focus = std::move(focus);
    f.next_focus = 0;
  }

  // Records the keys that op looks at, for Refocus.
  void FailedOn(const COp& op) {
    fail_keys_.clear();
    auto add = [&](CRange r) {
      for (int32_t k = r.lo; k < r.hi && fail_keys_.size() < kMaxFocusKeys;
           ++k) {
        fail_keys_.push_back(k);
      }
    };
    for (const CCompare& c : op.cmps) add(c.r);
    for (const auto* br : {&op.success, &op.failure}) {
      for (const CReqOp& q : *br) {
        if (q.kind == RequestOp::kPut) {
          add({q.key, q.key + 1});
        } else {
          add(q.r);
        }
      }
    }
    std::sort(fail_keys_.begin(), fail_keys_.end());
    fail_keys_.erase(std::unique(fail_keys_.begin(), fail_keys_.end()),
                     fail_keys_.end());
  }

  const Compiled& c_;
  const Index& ix_;
  const CheckOptions& o_;
  const int64_t max_states_;
  const Order order_;
  const std::string empty_;
  std::vector<int32_t> fail_keys_;

  std::vector<KState> st_;
  int64_t rev_ = 1;
  uint64_t zh1_ = 0, zh2_ = 0;  // xor of per-key hashes
  std::vector<uint8_t> lin_;
  uint64_t sh1_ = 0, sh2_ = 0;  // xor of linearized ops' Zobrist keys
  int64_t maxinv_ = std::numeric_limits<int64_t>::min();
  int64_t pending_ok_ = 0;
  size_t ret_cursor_ = 0;  // first pending op in ix_.ret_order
  size_t unk_cursor_ = 0;  // first unlinearized op in ix_.unknown
  std::vector<Undo> trail_;
  std::vector<Frame> frames_;
  std::vector<int32_t> changed_;
  absl::flat_hash_set<std::pair<uint64_t, uint64_t>> seen_;
  int64_t states_ = 0;
  bool limit_hit_ = false;

  bool noted_ = false;
  int64_t deepest_rev_ = 0;
  int deepest_op_ = kNone;
  const char* deepest_why_ = "";
};

// One check without shrinking.
struct CoreResult {
  enum Verdict { kOk, kFail, kLimit } verdict = kOk;
  std::string reason;
  std::vector<int> culprits;  // history indices, from a precheck
  int64_t deepest_rev = 0;
  uint64_t states = 0;
};

CoreResult RunCore(const History& h, const CheckOptions& o) {
  CoreResult res;
  Compiled c = Compiler().Run(h);
  Index ix;
  if (auto v = Prechecker(c, h, &ix).Run()) {
    res.verdict = CoreResult::kFail;
    res.reason = std::move(v->reason);
    res.culprits = std::move(v->ops);
    return res;
  }
  // A portfolio of restarts: the search order only matters for speed, and
  // a history that one order finds hard is often easy in the other. Each
  // attempt is complete, so an exhausted attempt is a proof of violation.
  struct Attempt {
    Search::Order order;
    int64_t share;  // of max_states, in 1/32s; the last takes what is left
  };
  static constexpr Attempt kAttempts[] = {
      {Search::Order::kNewestFirst, 1}, {Search::Order::kOldestFirst, 1},
      {Search::Order::kNewestFirst, 4}, {Search::Order::kOldestFirst, 4},
      {Search::Order::kNewestFirst, 0},
  };
  Search::Verdict v = Search::Verdict::kLimit;
  int64_t used = 0;
  std::optional<Search> s;
  for (size_t i = 0; i < std::size(kAttempts); ++i) {
    const bool last = i + 1 == std::size(kAttempts);
    const int64_t budget =
        last ? o.max_states - used : o.max_states / 32 * kAttempts[i].share;
    if (budget <= 0) continue;
    s.emplace(c, ix, o, budget, kAttempts[i].order);
    v = s->Run();
    used += static_cast<int64_t>(s->states());
    if (v != Search::Verdict::kLimit) break;
  }
  res.states = static_cast<uint64_t>(used);
  if (!s) {  // max_states <= 0: nothing explored
    res.verdict = CoreResult::kLimit;
    return res;
  }
  res.deepest_rev = s->deepest_rev();
  switch (v) {
    case Search::Verdict::kOk:
      res.verdict = CoreResult::kOk;
      break;
    case Search::Verdict::kLimit:
      res.verdict = CoreResult::kLimit;
      break;
    case Search::Verdict::kFail:
      res.verdict = CoreResult::kFail;
      res.reason = absl::StrCat("no linearization; the search got as far as "
                                "revision ",
                                s->deepest_rev(), ": ", s->deepest_why());
      if (s->deepest_op() >= 0) {
        absl::StrAppend(&res.reason, " (#", h.ops[s->deepest_op()].id, ")");
      }
      break;
  }
  return res;
}

bool OpBefore(const History& h, int a, int b) {
  const Operation& x = h.ops[a];
  const Operation& y = h.ops[b];
  if (x.invoke_ns != y.invoke_ns) return x.invoke_ns < y.invoke_ns;
  return a < b;
}

// Delta debugging over the ops of a failing history: finds a small set W of
// ops such that the history with every other op made kUnknown still fails.
class Shrinker {
 public:
  // With `relaxed`, revisions of ops outside the window may also be taken
  // by invisible writes (external_writes): the window must then hold the
  // ops that pin revisions, which makes it a better explanation, and gaps
  // cost no search. Without it, the caller's rule applies.
  Shrinker(const History& h, const CheckOptions& o, bool relaxed)
      : h_(h), o_(o) {
    sub_opts_ = o;
    sub_opts_.max_states = std::min(o.max_states, kShrinkCheckStates);
    if (relaxed) sub_opts_.external_writes = true;
  }

  // Does the history restricted to `w` (history indices) fail?
  bool Fails(const std::vector<int>& w, CoreResult* out = nullptr) {
    if (checks_ >= kShrinkMaxChecks || states_ >= kShrinkTotalStates) {
      return false;
    }
    ++checks_;
    std::vector<uint8_t> in(h_.ops.size(), 0);
    int64_t last_return = std::numeric_limits<int64_t>::min();
    for (int i : w) {
      in[i] = 1;
      last_return = std::max(last_return, h_.ops[i].return_ns);
    }
    // Ops outside the window become unknown. Those invoked after every
    // window op returned are left out: they could only come after all of
    // them, so they cannot change the verdict.
    History sub;
    for (size_t i = 0; i < h_.ops.size(); ++i) {
      if (!in[i] && h_.ops[i].invoke_ns > last_return) continue;
      sub.ops.push_back(h_.ops[i]);
      Operation& op = sub.ops.back();
      if (!in[i] && op.outcome == Operation::kOk) {
        op.outcome = Operation::kUnknown;
      }
    }
    CoreResult r = RunCore(sub, sub_opts_);
    states_ += static_cast<int64_t>(r.states) + 1;
    const bool fails = r.verdict == CoreResult::kFail;
    if (out != nullptr) *out = std::move(r);
    return fails;
  }

  std::vector<int> DeltaDebug(std::vector<int> w) {
    size_t n = 2;
    while (w.size() >= 2) {
      n = std::min(n, w.size());
      std::vector<std::vector<int>> chunks(n);
      for (size_t i = 0; i < w.size(); ++i) {
        chunks[i * n / w.size()].push_back(w[i]);
      }
      bool reduced = false;
      for (const auto& chunk : chunks) {
        if (Fails(chunk)) {
          w = chunk;
          n = 2;
          reduced = true;
          break;
        }
      }
      if (!reduced && n > 2) {
        for (size_t j = 0; j < n && !reduced; ++j) {
          std::vector<int> rest;
          for (size_t i = 0; i < n; ++i) {
            if (i != j) rest.insert(rest.end(), chunks[i].begin(), chunks[i].end());
          }
          std::sort(rest.begin(), rest.end(),
                    [&](int a, int b) { return Before(a, b); });
          if (Fails(rest)) {
            w = std::move(rest);
            n = std::max<size_t>(n - 1, 2);
            reduced = true;
          }
        }
      }
      if (!reduced) {
        if (n >= w.size()) break;
        n = std::min(2 * n, w.size());
      }
    }
    return w;
  }

  bool Before(int a, int b) const { return OpBefore(h_, a, b); }

  // A failing window to start shrinking from: the precheck's ops, or the
  // ops around the revision where the search got stuck, widening until the
  // window fails alone, or finally every kOk op.
  std::optional<std::vector<int>> Start(const std::vector<int>& culprits,
                                        const std::vector<int>& all,
                                        int64_t deepest_rev) {
    if (!culprits.empty() && Fails(culprits)) return culprits;
    for (int64_t width = 4; width < (int64_t{1} << 60); width *= 4) {
      std::vector<int> w;
      for (int i : all) {
        const int64_t r = h_.ops[i].resp.revision;
        if (r >= deepest_rev - width && r <= deepest_rev + 1) w.push_back(i);
      }
      if (w.size() == all.size()) break;
      if (!w.empty() && Fails(w)) return w;
    }
    if (Fails(all)) return all;
    return std::nullopt;
  }

 private:
  const History& h_;
  CheckOptions o_;
  CheckOptions sub_opts_;
  int checks_ = 0;
  int64_t states_ = 0;
};

// Writes outside the window to keys that window ops name, closest in time:
// not needed for the proof, but usually what a reader looks for next.
std::vector<int> RelatedWrites(const History& h, const std::vector<int>& w) {
  if (w.empty()) return {};
  std::vector<std::string> keys;
  int64_t t = std::numeric_limits<int64_t>::max();
  for (int i : w) {
    const Operation& op = h.ops[i];
    t = std::min(t, op.invoke_ns);
    for (const auto* br : {&op.req.success, &op.req.failure}) {
      for (const RequestOp& r : *br) keys.push_back(r.key);
    }
    for (const Compare& c : op.req.compares) keys.push_back(c.key);
    for (const OpResult& r : op.resp.results) {
      for (const auto& kv : r.kvs) keys.push_back(kv.key);
    }
  }
  std::sort(keys.begin(), keys.end());
  keys.erase(std::unique(keys.begin(), keys.end()), keys.end());
  std::vector<std::pair<uint64_t, int>> found;  // (distance, op)
  for (size_t i = 0; i < h.ops.size(); ++i) {
    const Operation& op = h.ops[i];
    if (op.outcome == Operation::kFail ||
        std::find(w.begin(), w.end(), static_cast<int>(i)) != w.end()) {
      continue;
    }
    bool related = false;
    for (const auto* br : {&op.req.success, &op.req.failure}) {
      for (const RequestOp& r : *br) {
        related |= r.kind != RequestOp::kRange &&
                   std::binary_search(keys.begin(), keys.end(), r.key);
      }
    }
    if (!related) continue;
    const uint64_t d = op.invoke_ns >= t
                           ? static_cast<uint64_t>(op.invoke_ns) - t
                           : static_cast<uint64_t>(t) - op.invoke_ns;
    found.push_back({d, static_cast<int>(i)});
  }
  std::sort(found.begin(), found.end());
  if (found.size() > kMaxRelatedOps) found.resize(kMaxRelatedOps);
  std::vector<int> out;
  for (const auto& [d, i] : found) out.push_back(i);
  return out;
}

std::string Explain(const History& h, const std::string& reason,
                    const std::vector<int>& ops,
                    const std::vector<int>& related) {
  std::string s = absl::StrCat("not linearizable: ", reason, "\n");
  for (size_t i = 0; i < ops.size() && i < kMaxExplainedOps; ++i) {
    absl::StrAppend(&s, "  ", FormatOp(h.ops[ops[i]]), "\n");
  }
  if (ops.size() > kMaxExplainedOps) {
    absl::StrAppend(&s, "  ... and ", ops.size() - kMaxExplainedOps,
                    " more ops\n");
  }
  if (!related.empty()) {
    s += "related writes (context, not part of the proof):\n";
    for (int i : related) absl::StrAppend(&s, "    ", FormatOp(h.ops[i]), "\n");
  }
  return s;
}

}  // namespace

CheckResult CheckLinearizable(const History& h, const CheckOptions& o) {
  CheckResult out;
  CoreResult core = RunCore(h, o);
  out.states_explored = core.states;
  if (core.verdict == CoreResult::kOk) return out;
  if (core.verdict == CoreResult::kLimit) {
    out.inconclusive = true;
    out.explanation = "inconclusive: state limit";
    return out;
  }
  out.ok = false;
  auto by_invoke = [&](std::vector<int>* w) {
    std::sort(w->begin(), w->end(),
              [&](int a, int b) { return OpBefore(h, a, b); });
    w->erase(std::unique(w->begin(), w->end()), w->end());
  };
  std::vector<int> all;
  for (size_t i = 0; i < h.ops.size(); ++i) {
    if (h.ops[i].outcome == Operation::kOk) all.push_back(static_cast<int>(i));
  }
  by_invoke(&all);
  std::vector<int> window = core.culprits;
  by_invoke(&window);
  std::string reason = core.reason;
  if (o.minimize) {
    // Prefer the relaxed rule; a violation that is only about accounting
    // for revisions needs the caller's rule.
    bool found = false;
    for (bool relaxed : {true, false}) {
      Shrinker shrink(h, o, relaxed);
      std::optional<std::vector<int>> start =
          shrink.Start(window, all, core.deepest_rev);
      if (!start) continue;
      window = shrink.DeltaDebug(std::move(*start));
      CoreResult final_core;
      if (shrink.Fails(window, &final_core)) reason = final_core.reason;
      found = true;
      break;
    }
    if (!found) window = all;
  } else if (window.empty()) {
    window = all;
  }
  by_invoke(&window);
  for (int i : window) out.window.push_back(h.ops[i].id);
  std::vector<int> related = RelatedWrites(h, window);
  by_invoke(&related);
  out.explanation = Explain(h, reason, window, related);
  return out;
}

// ---------------------------------------------------------------------------
// The history generator (history_gen.h).

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

  // Applies req at the current revision; returns the response. A
  // serializable read is answered from revision `read_rev` instead.
  Response Apply(const Request& req, int64_t read_rev = 0) {
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
};

class Generator {
 public:
  Generator(uint64_t seed, int keys) : rng_(seed), keys_(std::max(keys, 2)) {}

  std::string Key(int64_t i) const { return absl::StrFormat("k%02d", i); }
  std::string RandKey() { return Key(rng_.Below(keys_)); }
  // [a, b) with a < b, over the key space.
  std::pair<std::string, std::string> RandRange() {
    if (rng_.Chance(0.15)) return {Key(rng_.Below(keys_)), std::string(1, '\0')};
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
    switch (rng_.Below(6)) {
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
        r->compares.push_back(Cmp(Compare::kMod, res, k,
                                  std::max<int64_t>(1, approx_rev -
                                                           rng_.Below(20))));
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
        r->compares.push_back(
            Cmp(Compare::kCreate, Compare::kNotEqual, k, 0));
        auto [a, b] = RandRange();
        r->success.push_back(GetOp(a, b));
        r->failure.push_back(PutOp(k, id));
        break;
      }
      default:  // read-only txn
        r->compares.push_back(Cmp(Compare::kVersion, Compare::kGreater, k,
                                  rng_.Below(3)));
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
    std::stable_sort(plan.begin(), plan.end(),
                     [](const Planned& a, const Planned& b) {
                       return a.lin < b.lin;
                     });
    RefStore store;
    for (const Planned& p : plan) {
      Operation& op = h.ops[p.index];
      int64_t read_rev = 0;
      if (op.req.serializable) {
        const int64_t lag = rng_.Below(6);
        read_rev = std::max<int64_t>(1, store.rev() - lag);
      }
      Response resp = store.Apply(op.req, read_rev);
      if (op.outcome == Operation::kOk) op.resp = std::move(resp);
    }
    return h;
  }

 private:
  SplitMix rng_;
  int64_t keys_;
  std::map<std::string, std::string> last_value_;
};

}  // namespace

History GenerateHistory(uint64_t seed, int ops, int clients, int keys,
                        double unknown_fraction) {
  return Generator(seed, keys).Run(ops, clients, unknown_fraction);
}

}  // namespace detcd::harness
