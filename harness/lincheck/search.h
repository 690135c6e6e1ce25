// The revision-guided search for a linearization, and one whole check
// (compile, prechecks, search) without window shrinking.
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
// choices are forced and undone through a trail on backtracking. Every step
// is checked against the facts (facts.h).
//
// SEARCH ORDER (affects speed only; every candidate is eventually tried).
// At a gap: kUnknown ops that serve pending needs (most needs first), then
// an external write (if allowed), then the other enabled kUnknown ops,
// newest invoke first (an op invoked long ago that has not taken effect yet
// most likely never did). After a candidate leads to a failed op, the
// remaining candidates that touch that op's keys are tried first. The
// search restarts with the opposite tie order (oldest first) when a slice
// of max_states runs out (1, 1, 2, 4, 16, 16 128ths of it, orders
// alternating, then the rest with newest first): a history that is hard in
// one order is usually easy in the other. Each attempt is complete, so any
// exhausted one proves a violation; states_explored sums all attempts.
// Learned nogoods that pin no frame carry over to the next attempt.
//
// PRUNING (facts.cc has the soundness arguments). Only the first
// unlinearized op of a symmetry class of interchangeable unknown ops is
// tried; an unknown op that alone can make a step a fact shows (a pin) is
// tried only there; ops that would change a frozen key are skipped; the
// facts' bounds count only gaps that can change the key (servable gaps);
// needs with the least slack are served first; and a gap step that leaves
// alone the keys of a failed chain of forced steps is skipped (nogoods).
// Servable gap counts, when small, are refined by the writers still
// available (not linearized, invoked early enough, not blocked by frozen
// keys). LEARNED NOGOODS (search.cc, Absorb): every failure gets an
// explanation (keys whose state decided it, and symmetry classes whose
// availability did); a step to a revision whose state agrees with a
// failed one on those keys, with no more of those classes available, is
// cut; a frame's step that changes none of the keys of a failure below it
// makes every other such step fail too (frame nogoods). This replaces the
// exhaustive retries of earlier gaps when a wrong choice shows dozens of
// revisions later. With external writes allowed, a gap step may be such a
// write (a phantom step): it changes no key and takes no op, so a failure
// below it is explained by the same keys and classes before it, and a
// facts rejection of it by the required keys. (Until 2026-12-07 learning
// was off whenever external writes were allowed, and a recipes history,
// seed 4022117, ran out of states: tests/schedules/fixed/.) A key whose
// presence alone decided a failure (it had to be deleted and nothing
// could) is compared by presence, not by its whole state: unknown puts
// placed at different revisions leave it there with different mod
// revisions, and nogoods on the whole state never matched (a recipes
// history, seed 11014307 with buggify, ran out of states at revision 320).
//
// COST AND LIMITS. On histories like the lead's (unique values, ~5% unknown
// outcomes, tens of keys) the search is near-linear, and generated
// histories of 100,000 ops from 50 or 200 clients with 15-20% unknown
// outcomes are decided in about 1 s (seeds 1..5, bench/lincheck_bench.cc;
// the slowest, 200 clients 20% seed 2, in about 3 s). Learning needs at
// most 64 keys (bit sets); with more, only the other rules apply. A
// violation that the prechecks do not catch
// must be refuted by exhausting the gap choices before it; with many kUnknown
// ops that can exceed max_states, giving an inconclusive result (never a wrong
// verdict), and its window may stay large when sub-histories are as hard.
#ifndef DETCD_HARNESS_LINCHECK_SEARCH_H_
#define DETCD_HARNESS_LINCHECK_SEARCH_H_

#include <cstdint>
#include <string>
#include <vector>

#include "harness/history.h"
#include "harness/linearizability.h"

namespace detcd::harness::lincheck {

// One check without shrinking.
struct CoreResult {
  enum Verdict { kOk, kFail, kLimit } verdict = kOk;
  std::string reason;
  std::vector<int> culprits;  // history indices, from a precheck
  int64_t deepest_rev = 0;
  uint64_t states = 0;
};

CoreResult RunCore(const History& h, const CheckOptions& o);

}  // namespace detcd::harness::lincheck

#endif  // DETCD_HARNESS_LINCHECK_SEARCH_H_
