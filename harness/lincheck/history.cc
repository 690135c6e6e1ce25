// The builders and predicates of harness/history.h (FormatOp is in
// format.cc).
#include "harness/history.h"

#include <string>
#include <utility>

namespace detcd::harness {

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

Request RevokeRequest(int64_t lease) {
  Request r;
  r.revoke_lease = lease;
  return r;
}

bool IsReadOnly(const Request& r) {
  if (r.revoke_lease != 0) return false;
  for (const auto* branch : {&r.success, &r.failure}) {
    for (const RequestOp& op : *branch) {
      if (op.kind != RequestOp::kRange) return false;
    }
  }
  return true;
}

}  // namespace detcd::harness
