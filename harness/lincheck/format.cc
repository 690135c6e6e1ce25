// FormatOp (history.h) and the checker's explanations.
#include "harness/lincheck/format.h"

#include <algorithm>
#include <cstdint>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace detcd::harness {
namespace lincheck {
namespace {

// At most this many ops are listed in an explanation.
constexpr size_t kMaxExplainedOps = 40;
// At most this many related writes are listed as context.
constexpr size_t kMaxRelatedOps = 6;

std::string FormatRange(const std::string& key, const std::string& end) {
  if (end.empty()) return absl::CHexEscape(key);
  if (end == std::string(1, '\0')) {
    return absl::StrCat("[", absl::CHexEscape(key), ",+inf)");
  }
  return absl::StrCat("[", absl::CHexEscape(key), ",", absl::CHexEscape(end),
                      ")");
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
      std::string s =
          absl::StrCat("put(", absl::CHexEscape(op.key), "=", Quote(op.value));
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
  std::string s =
      absl::StrCat(kTargets[c.target], "(", FormatRange(c.key, c.range_end),
                   ")", kResults[c.result]);
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
      return r.has_prev ? absl::StrCat("prev=", FormatKv(r.prev)) : "prev=none";
    case RequestOp::kDelete: {
      std::string s = absl::StrCat("deleted=", r.deleted);
      if (op.prev_kv) absl::StrAppend(&s, " prev=", FormatKvs(r.prev_kvs));
      return s;
    }
  }
  return "?";
}

}  // namespace

std::string Quote(const std::string& s) {
  return absl::StrCat("\"", absl::CHexEscape(s), "\"");
}

std::string FormatKv(const mvcc::KeyValue& kv) {
  std::string s = absl::StrFormat("%s=%s@c%d/m%d/v%d", absl::CHexEscape(kv.key),
                                  Quote(kv.value), kv.create_revision,
                                  kv.mod_revision, kv.version);
  if (kv.lease != 0) absl::StrAppend(&s, "/l", kv.lease);
  return s;
}

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

}  // namespace lincheck

using lincheck::FormatCompare;
using lincheck::FormatOps;
using lincheck::FormatRequestOp;
using lincheck::FormatResult;

std::string FormatOp(const Operation& op) {
  static constexpr const char* kOutcomes[] = {"ok", "fail", "unknown"};
  const Request& req = op.req;
  std::string s =
      absl::StrFormat("#%d c%d [%d,%d] %s", op.id, op.client, op.invoke_ns,
                      op.return_ns, kOutcomes[op.outcome]);
  if (op.outcome == Operation::kOk) {
    absl::StrAppend(&s, " rev=", op.resp.revision);
  }
  s += ": ";
  if (req.revoke_lease != 0) {
    absl::StrAppend(&s, "revoke(lease=", req.revoke_lease, ")");
    return op.outcome == Operation::kOk ? s + " -> ok" : s;
  }
  if (req.serializable) s += "serializable ";
  const bool plain =
      req.compares.empty() && req.failure.empty() && req.success.size() == 1;
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

}  // namespace detcd::harness
