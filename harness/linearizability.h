// Linearizability checker for client histories of an etcd cluster
// (harness/history.h), over etcd's revisioned KV model.
//
// WHAT IS CHECKED. There must be a sequence L of the kOk ops, plus any subset
// of the kUnknown ops, such that: L respects real time (if A returned before B
// was invoked, A is before B; a kUnknown op is placed anywhere after its
// invoke); running L from a fresh store gives every kOk op exactly its
// recorded response (branch, results, header revision). Failed ops are
// dropped. kUnknown read-only ops are dropped (they cannot matter).
// Two ops are concurrent when their intervals overlap; "A returned before B"
// means A.return_ns < B.invoke_ns.
//
// Serializable reads (req.serializable, read-only) are not placed in L.
// One with header revision R must return exactly the state of L right after
// the op that made revision R (revision 1: the empty store), and that state
// must have existed no later than the read returned: with L's earliest
// real-time assignment (each op at the latest invoke among it and the ops
// before it), the op that made revision R is placed at or before the read's
// return. Equivalently: every op of L up to and including the one that made
// revision R was invoked no later than the read returned. There is no lower
// bound (a lagging member may serve an old state). They are checked inside
// the search, at the moment it reaches revision R, so a history is accepted
// only if one L satisfies the linearizable ops and the serializable reads
// together.
//
// HOW. The implementation is under harness/lincheck/, one file per job:
//   compiled.h  the history with strings interned and each op's role;
//   model.h     etcd's KV store as the checker models it (the MODEL);
//   facts.h     facts from observations, prechecks, pruning rules;
//   search.h    the revision-guided search (no partitioning by key);
//   shrink.h    shrinking a violation to a small window of ops;
//   format.h    FormatOp and the explanation of a violation.
// Every pruning rule is sound (each has its argument next to it): a
// verdict is never a wrong ok or a wrong violation (up to the search memo's
// 128-bit fingerprints, see search.h); only the state limit can leave a
// history undecided ("inconclusive").
#ifndef DETCD_HARNESS_LINEARIZABILITY_H_
#define DETCD_HARNESS_LINEARIZABILITY_H_

#include <cstdint>
#include <string>
#include <vector>

#include "harness/history.h"

namespace detcd::harness {

struct CheckOptions {
  // Bound on search steps (model transitions tried). Past it the result is
  // inconclusive.
  int64_t max_states = 50'000'000;
  // Shrink a violation to a small window of ops.
  bool minimize = true;
  // Allow revisions to be consumed by writes that are not in the history
  // (e.g. ops on lease-attached keys, excluded by the caller, or lease
  // expiry). Such a write changes no key that the history observes. Without
  // it every revision step must be explained by an op of the history.
  bool external_writes = false;
};

struct CheckResult {
  bool ok = true;
  // The search ran out of max_states: ok stays true (nothing was proven
  // wrong) and explanation says "inconclusive: state limit".
  bool inconclusive = false;
  std::string explanation;
  std::vector<int> window;  // ids of a small failing set of ops
  uint64_t states_explored = 0;
};

CheckResult CheckLinearizable(const History& h, const CheckOptions& o = {});

}  // namespace detcd::harness

#endif  // DETCD_HARNESS_LINEARIZABILITY_H_
