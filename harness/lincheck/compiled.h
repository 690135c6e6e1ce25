// The checker's view of a history: key and value strings interned to ids,
// requests and responses in that form, and each op's role in the search.
//
// Keys are interned into ids ordered like the strings, so a key range
// [key, range_end) is an id range [lo, hi); values into arbitrary ids.
// Everything under harness/lincheck/ is internal to the checker
// (harness/linearizability.h is its public interface).
#ifndef DETCD_HARNESS_LINCHECK_COMPILED_H_
#define DETCD_HARNESS_LINCHECK_COMPILED_H_

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "harness/history.h"

namespace detcd::harness::lincheck {

inline constexpr int64_t kInfinity = std::numeric_limits<int64_t>::max();
// Larger revisions are rejected as impossible (and keep the arithmetic on
// revisions far from overflow).
inline constexpr int64_t kMaxRevision = int64_t{1} << 60;

// splitmix64's finalizer: the hash behind every fingerprint of the search.
inline uint64_t Mix64(uint64_t x) {
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

inline bool IsLinearOk(Role r) { return r == Role::kWrite || r == Role::kRead; }
inline bool IsOk(Role r) { return IsLinearOk(r) || r == Role::kSerial; }

struct Kv {
  int32_t key = -1;
  int32_t value = -1;
  int64_t create = 0, mod = 0, version = 0, lease = 0;
};

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
  // A LeaseRevoke of this lease (no compares or ops). Its response does
  // not say whether it deleted anything, so a kOk revoke has role kRead
  // with revoke set: at revision rev it is either the step to rev (it
  // deleted keys) or a no-op while the store is at rev.
  int64_t revoke = 0;
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

Compiled Compile(const History& h);

}  // namespace detcd::harness::lincheck

#endif  // DETCD_HARNESS_LINCHECK_COMPILED_H_
