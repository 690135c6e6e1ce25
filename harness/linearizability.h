// Linearizability checker for client histories of an etcd cluster
// (harness/history.h), over etcd's revisioned KV model.
//
// MODEL. State = (revision, key -> KeyValue). A fresh store is at revision 1
// and empty. A request evaluates its compares on the state before it (etcd's
// rules: a compare over [key, range_end) holds if every existing key in the
// range satisfies it; if no key exists, a kValue compare is false and any
// other target is compared against a zero KeyValue, so "version == 0" means
// "missing"), then runs the ops of the chosen branch in order, each seeing the
// earlier ones. If anything changed, the revision grows by exactly one and
// every change carries the new revision (put: version + 1, create_revision on
// first put; delete: the key is gone and its version restarts). The response
// revision is the revision after the request. Ranges return every key of the
// range, in key order, with all fields, and count. Leases are just recorded.
// A txn that writes one key twice (etcd rejects it) is run op by op.
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
// NO PARTITIONING. Partitioning by key is unsound here: every write's revision
// and every read's header revision depend on all keys. Instead the search is
// guided by revisions, which makes it nearly linear on correct histories:
//  - A kOk op's response tells whether it wrote (the branch that ran has a
//    put, or a delete with deleted > 0) and its revision R. A kOk write can
//    only be linearized as the step from revision R-1 to R; any other kOk op
//    only while the model is at revision R. So kOk writes are totally ordered
//    and there is no choice about which kOk write comes next.
//  - Ops that do not change the state (kOk reads, no-op txns) are linearized
//    greedily as soon as they are enabled (invoked no later than the earliest
//    return among the pending kOk ops) and match. This is complete: if L is
//    valid from here and read X is enabled and matches now, moving X to the
//    front of L keeps it valid (X changes nothing, and no op in L returned
//    before X was invoked, or X would not be enabled).
//  - The only choices are at gaps: revisions that no kOk write claims must be
//    made by a kUnknown op (or, with CheckOptions::external_writes, by a write
//    outside the history). The search branches over those candidates, with
//    backtracking.
// This is the Wing-Gong / Lowe just-in-time search specialised by revisions.
// Each choice leads to a (linearized set, model state) that is explored at
// most once (memoized by a 128-bit fingerprint: Zobrist hashes of the
// linearized set, kept as one byte per op, and of the state, both updated in
// O(1) per step; a collision could only make the checker miss a
// linearization, with probability below 2^-64 per run). Steps between
// choices are forced and undone through a trail on backtracking.
//
// PRUNING FROM OBSERVATIONS (sound). Each key-value a kOk op saw (range
// results, put prev_kv, delete prev_kvs, also serializable reads) is a fact:
// "at revision H, key k had create c, mod m, version x, value v, lease l". If
// L is valid, the state of k at every revision in [m, H] is that kv, k exists
// with create c throughout [c, H], exactly x puts to k happened in [c, m],
// and none after m up to H. Likewise "k was missing at H" from ranges that
// did not return k, put prev_kv with no previous value, deletes that deleted
// nothing, and compares on version / create / mod that only a missing key
// can satisfy (e.g. version == 0 held). Only the state before a write txn's
// own changes is used. Every step of the search (kOk write or gap filler) is
// checked against these facts for the keys it changes and the keys it must
// change; at a gap, the keys that must be put or deleted by then (and how
// many other gaps could do it) decide which kUnknown ops are tried first,
// and a step with no other gap left must serve them all.
//
// PRECHECKS. Before the search, cheap necessary conditions give small
// explanations directly: kOk revisions are possible (>= 1; >= 2 for a
// write) and kOk writes have distinct revisions; real-time order agrees
// with revisions (A returned before B was invoked => A's step is not after
// B's), also for serializable reads; facts agree with each other, with the
// missing-key observations and with the kOk writes; a revision that a fact
// says put a key but no kOk write claims has a kUnknown op that could have
// put it; a key seen missing after it last existed has a kOk or kUnknown
// op that could have deleted it in between.
//
// SEARCH ORDER (affects speed only; every candidate is eventually tried).
// At a gap: kUnknown ops that serve pending needs (most needs first), then
// an external write (if allowed), then the other enabled kUnknown ops,
// newest invoke first (an op invoked long ago that has not taken effect yet
// most likely never did). After a candidate leads to a failed op, the
// remaining candidates that touch that op's keys are tried first. The
// search restarts with the opposite tie order (oldest first) when a slice
// of max_states runs out (1/32, 1/32, 4/32, 4/32 of it, then the rest with
// newest first): a history that is hard in one order is usually easy in
// the other. Each attempt is complete, so any exhausted one proves a
// violation; states_explored sums all attempts.
//
// COST AND LIMITS. On histories like the lead's (unique values, ~5% unknown
// outcomes, tens of keys) the search is near-linear: see
// bench/lincheck_bench.cc. A violation that the prechecks do not catch must
// be refuted by exhausting the gap choices before it; with many kUnknown ops
// that can exceed max_states, giving an inconclusive result (never a wrong
// verdict), and its window may stay large when sub-histories are as hard.
//
// MINIMAL WINDOW. For a violation the checker shrinks (delta debugging, with
// bounded work) a set W of kOk ops such that the history in which every op
// outside W is made kUnknown (it may or may not have happened, at any time
// after its invoke) and revisions may also be taken by writes outside the
// history (external_writes) is still not linearizable. That relaxation can
// only add linearizations, so W alone proves the violation; ops whose
// revisions matter (e.g. the write a stale read missed) must be in W. The
// explanation gives a one-line reason, lists W with FormatOp in invoke order,
// then, as context only, a few writes by other ops to the keys W names.
// When the shrinking budget runs out, W may be larger than minimal; it is
// always a failing set.
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
