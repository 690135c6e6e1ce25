// Client histories of an etcd cluster, as the simulated clients record them
// and the linearizability checker (harness/linearizability.h) reads them.
//
// One Operation is one client request: when it was sent (invoke_ns), when
// its answer came back (return_ns), what became of it (outcome), the
// request, and the answer. Requests follow etcd's KV API: a plain Put,
// Range or DeleteRange is a Request with no compares and one op in
// `success`; a Txn has compares and both branches.
//
// Key ranges use etcd's conventions: an empty range_end names the single
// key `key`; range_end "\0" (one zero byte) means every key >= key;
// otherwise the range is [key, range_end).
#ifndef DETCD_HARNESS_HISTORY_H_
#define DETCD_HARNESS_HISTORY_H_

#include <cstdint>
#include <string>
#include <vector>

#include "engine/mvcc/types.h"

namespace detcd::harness {

// etcd's Compare (etcdserverpb.Compare): `target` of every key in
// [key, range_end) compared with `number` (kVersion, kCreate, kMod, kLease)
// or `value` (kValue).
struct Compare {
  enum Target { kVersion, kCreate, kMod, kValue, kLease };
  enum Result { kEqual, kGreater, kLess, kNotEqual };
  std::string key, range_end;
  Target target = kVersion;
  Result result = kEqual;
  int64_t number = 0;
  std::string value;
};

struct RequestOp {
  enum Kind { kRange, kPut, kDelete };
  Kind kind = kRange;
  std::string key, range_end;  // kPut uses key only
  std::string value;           // kPut
  int64_t lease = 0;           // kPut
  bool prev_kv = false;        // kPut, kDelete
};

struct Request {
  std::vector<Compare> compares;
  std::vector<RequestOp> success, failure;
  // When nonzero, the request is a LeaseRevoke of this lease id (compares,
  // success and failure are empty): it deletes every key whose current
  // lease is this id, all in one revision as etcd does; if no key is
  // attached, it consumes no revision (like a write that changed nothing).
  // The response has no results; its header revision is the store's
  // revision after it. A lease's expiry (the leader revokes it when its TTL
  // ran out) is recorded as a kUnknown revoke invoked when the grant was
  // answered: it may take effect any time after. A put with `lease` set
  // attaches the key to that lease; a later put with lease 0 detaches it.
  int64_t revoke_lease = 0;
  // Only for read-only requests: may be served by any member from its local
  // (possibly lagging) state.
  bool serializable = false;
};

// The answer to one RequestOp of the branch that ran.
struct OpResult {
  std::vector<mvcc::KeyValue> kvs;  // range: every key in the range, in order
  int64_t count = 0;                // range
  int64_t deleted = 0;              // delete
  bool has_prev = false;            // put with prev_kv: the key existed
  mvcc::KeyValue prev;              // put with prev_kv
  std::vector<mvcc::KeyValue> prev_kvs;  // delete with prev_kv, in key order
};

struct Response {
  bool succeeded = true;  // which branch ran (true for plain requests)
  int64_t revision = 0;   // header revision: the store's revision after it
  std::vector<OpResult> results;  // one per op of the branch that ran
};

struct Operation {
  int id = 0;
  int client = 0;
  int64_t invoke_ns = 0;
  int64_t return_ns = 0;
  // kOk: took effect between invoke and return, with this response.
  // kFail: definitely did not take effect.
  // kUnknown (timeout, lost connection): may or may not have taken effect,
  //   at any time after invoke; return_ns and resp are ignored.
  enum Outcome { kOk, kFail, kUnknown };
  Outcome outcome = kOk;
  Request req;
  Response resp;
};

struct History {
  std::vector<Operation> ops;
};

// Convenience builders for plain requests.
Request PutRequest(std::string key, std::string value, bool prev_kv = false);
Request RevokeRequest(int64_t lease);
Request RangeRequest(std::string key, std::string range_end = "",
                     bool serializable = false);
Request DeleteRequest(std::string key, std::string range_end = "",
                      bool prev_kv = false);

// True if no op of either branch writes (the request can never change the
// store).
bool IsReadOnly(const Request& r);

// One readable line, e.g.
//   #12 c3 [100,250] ok rev=7: put(k1="v9") -> ok
//   #13 c4 [120,300] unknown: revoke(lease=7)
std::string FormatOp(const Operation& op);

}  // namespace detcd::harness

#endif  // DETCD_HARNESS_HISTORY_H_
