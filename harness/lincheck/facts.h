// Facts from observations, and the prechecks built on them.
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
// PER OP, NOT PER REVISION. A fact is the state a key had after a whole
// op (its revision step), never a state inside one: one step may change a
// key twice (etcd 3.4 accepts a txn that deletes over a from-key range and
// then puts a key inside it, or puts and then deletes over it). So what a
// write op leaves is computed op by op (PutKeys: the last put of a key not
// deleted again later in the op), and a key may be deleted and created
// again by one step: an incarnation created at c does not imply the key
// was missing at c - 1 when the step to c may delete it first
// (Index::MayDeleteThenPut, an over-approximation, which only relaxes).
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
#ifndef DETCD_HARNESS_LINCHECK_FACTS_H_
#define DETCD_HARNESS_LINCHECK_FACTS_H_

#include <algorithm>
#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "harness/history.h"
#include "harness/lincheck/compiled.h"
#include "harness/lincheck/model.h"

namespace detcd::harness::lincheck {

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
  int hop = -1;         // an op that saw it at hmax
  int op = -1;          // an op that saw it (the one returning first)
  int64_t min_ret = 0;  // that op's return (its time bound)
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
  absl::flat_hash_map<int64_t, std::vector<int>> reads_at;  // by invoke
  absl::flat_hash_map<int64_t, std::vector<int>> serial_at;
  // kOk revokes by revision (also in reads_at): candidates for the gap to
  // that revision.
  absl::flat_hash_map<int64_t, std::vector<int>> revokes_at;
  std::vector<int64_t> write_revs;             // sorted
  std::vector<std::vector<int64_t>> put_revs;  // per key, kOk puts
  std::vector<std::vector<int>> unknown_puts;  // per key, by invoke
  std::vector<std::vector<int>> unknown_dels;  // per key, by invoke
  // Per unknown op: keys it puts / may delete in either branch (sorted); a
  // revoke (kUnknown or kOk) may delete every key put with its lease.
  std::vector<std::vector<int32_t>> op_puts, op_dels;
  // Per key: kOk writes with a delete over the key that deleted something,
  // and kOk revokes of a lease the key may carry.
  std::vector<std::vector<int64_t>> del_revs;
  // Per key: (revision, op) where a read saw the key missing; sorted.
  std::vector<std::vector<std::pair<int64_t, int>>> absent;
  // Per key: kOk writes whose taken branch deletes over the key and then
  // puts it (one op, one revision: the key ends in a new incarnation).
  std::vector<std::vector<int64_t>> delput_revs;
  // Per key: some kUnknown op has a branch that deletes over it and then
  // puts it.
  std::vector<uint8_t> delput_unknown;
  std::vector<int32_t> watch_keys;  // keys with facts or absences
  // Pruning rules for big histories (see the soundness arguments in
  // facts.cc, BuildClasses and BuildPins).
  // Symmetry classes of kUnknown ops: per op its class (-1 for others),
  // per class its ops in invoke order. The search uses only the first op
  // of a class not linearized yet (its head).
  std::vector<int> class_of;
  std::vector<std::vector<int>> class_ops;
  // Per value id: the token the symmetry classes compare it by (the value
  // itself if some op observes it, else its place among the constants of
  // ordered value compares, as a negative number).
  std::vector<int64_t> value_token;
  // Classes that are not pinned-only, and per key those whose ops put /
  // may delete the key.
  std::vector<int> free_classes;
  std::vector<std::vector<int>> put_classes, del_classes;
  // Per kUnknown op: it has a pin. Such ops are tried only at their pins:
  // pinned_at maps a revision to them, by invoke.
  std::vector<uint8_t> pinned_only;
  absl::flat_hash_map<int64_t, std::vector<int>> pinned_at;
  // Per kUnknown op and branch (0: failure, 1: success): a revision whose
  // step only this op, taking this branch, can make, or 0. An op with a
  // pin may only be that step, with that branch.
  std::vector<std::array<int64_t, 2>> pin;
  // Per kUnknown op (not a revoke) and branch: keys the branch puts or
  // deletes over (sorted).
  std::vector<std::array<std::vector<int32_t>, 2>> branch_writes;

  // Gaps whose step is restricted by the facts (they must put given keys,
  // with given values), sorted; and per key, those of them whose step may
  // put / delete the key (some op that could make the step does).
  std::vector<int64_t> restricted_gaps;
  std::vector<std::vector<int64_t>> restricted_put_gaps, restricted_del_gaps;

  static int64_t CountIn(const std::vector<int64_t>& v, int64_t a, int64_t b) {
    if (b <= a) return 0;
    return std::upper_bound(v.begin(), v.end(), b) -
           std::upper_bound(v.begin(), v.end(), a);
  }
  // Gaps in (a, b] whose step may put (or, with del, delete) key k: every
  // gap but the restricted ones that no candidate op for them could use
  // to change k. An upper bound on the steps in (a, b] that change k
  // besides kOk writes (see BuildServable).
  int64_t ServableIn(int32_t k, bool del, int64_t a, int64_t b) const {
    if (b <= a) return 0;
    const auto& mine = del ? restricted_del_gaps[k] : restricted_put_gaps[k];
    return GapsIn(a, b) - CountIn(restricted_gaps, a, b) + CountIn(mine, a, b);
  }

  // Is key k frozen at revision r: seen existing with one value from m to
  // hmax, m < r <= hmax, so that no step to r may change it?
  bool Frozen(int32_t k, int64_t r) const {
    const auto& v = facts[k];
    auto it =
        std::lower_bound(v.begin(), v.end(), r,
                         [](const Fact& f, int64_t x) { return f.m < x; });
    return it != v.begin() && (it - 1)->hmax >= r;
  }
  // Can kUnknown op u not make the step to revision r? Every branch that
  // writes puts or deletes a frozen key (the fact check would refuse the
  // step; a branch that writes nothing cannot make a step).
  bool Blocked(int u, int64_t r) const {
    if (branch_writes[u][0].empty() && branch_writes[u][1].empty()) {
      return false;  // a revoke: what it deletes depends on the state
    }
    for (const auto& w : branch_writes[u]) {
      if (w.empty()) continue;
      bool free = true;
      for (int32_t k : w) {
        if (Frozen(k, r)) {
          free = false;
          break;
        }
      }
      if (free) return false;
    }
    return true;
  }
  std::vector<int> unknown;      // by invoke
  std::vector<int> ret_order;    // kOk linear ops by return
  std::vector<int> ret_pos;      // op -> position
  std::vector<int> unknown_pos;  // op -> position
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
    auto it = std::lower_bound(v.begin(), v.end(), r,
                               [](const std::pair<int64_t, int>& a, int64_t x) {
                                 return a.first < x;
                               });
    return it == v.end() ? kInfinity : it->first;
  }
  // May the step to revision r delete key k and then put it again (so k
  // can exist just before r and be created at r)? Either the kOk write at
  // r does that, or r is a gap and some kUnknown op could. Over-approximate
  // (a delete over k only deletes k if k exists): it only relaxes pruning.
  bool MayDeleteThenPut(int32_t k, int64_t r) const {
    if (write_at.contains(r)) {
      return std::binary_search(delput_revs[k].begin(), delput_revs[k].end(),
                                r);
    }
    return delput_unknown[k] != 0;
  }
  // The revision by which key k, existing after revision r outside any
  // incarnation the facts show, must be gone again: the next revision at
  // which it was seen missing, or the last one before the next seen
  // incarnation was created at c (c itself if the step to c may delete
  // and recreate k). kInfinity: no deadline.
  int64_t GoneBy(int32_t k, int64_t r, const Fact* next) const {
    int64_t d = NextAbsent(k, r);
    if (next != nullptr) {
      d = std::min(d, MayDeleteThenPut(k, next->c) ? next->c : next->c - 1);
    }
    return d;
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

// Keys put by the taken branch of a kOk write, with the last put's value
// and lease.
struct PutKey {
  int32_t key;
  int32_t value;
  int64_t lease;
};
std::vector<PutKey> PutKeys(const COp& op);
std::vector<PutKey> PutKeys(const std::vector<CReqOp>& branch);

// Keys that a branch deletes (a delete range covers them) and puts later.
std::vector<int32_t> DeleteThenPutKeys(const std::vector<CReqOp>& branch);

// Builds the index of c (the history h, compiled); returns the first
// violation of a necessary condition.
std::optional<Violation> Precheck(const Compiled& c, const History& h,
                                  Index* ix);

// The post-state of key k after a step to revision r agrees with the facts
// about k (k changed at r).
bool KeyOk(const Index& ix, const Model& m, int32_t k, int64_t r);

// The step to revision r that changed m.changed() agrees with the facts:
// every changed key, and every key the facts say was put at r.
bool FactsAllow(const Index& ix, const Model& m, int64_t r);

}  // namespace detcd::harness::lincheck

#endif  // DETCD_HARNESS_LINCHECK_FACTS_H_
