#include "harness/lincheck/search.h"

#include <algorithm>
#include <array>
#include <cstdint>
#include <iterator>
#include <limits>
#include <optional>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "engine/util/check.h"
#include "harness/lincheck/compiled.h"
#include "harness/lincheck/facts.h"
#include "harness/lincheck/model.h"

namespace detcd::harness::lincheck {
namespace {

// Gap candidates that serve a key needing a put or delete within this many
// other gaps are tried before the rest.
constexpr int64_t kMaxStagedSlack = 1000;
// At most this many keys of a failing op steer the retry order.
constexpr size_t kMaxFocusKeys = 16;
// Preferred gap candidates per key (the rest are still tried, later).
constexpr size_t kMaxStagedPerKey = 32;
// Nogoods kept per frame, and the most keys one may name.
constexpr size_t kMaxNogoods = 8;
constexpr size_t kMaxChainKeys = 4096;
// Learned nogoods kept per revision, and the most classes an explanation
// may name (past it, the failure is left unexplained).
constexpr size_t kMaxLearnedPerRev = 32;
constexpr size_t kMaxExplClasses = 4096;
// Servable gap counts at most this big are refined by the ops left.
constexpr int64_t kMaxRefinedGaps = 16;
// Outer frames whose ops a frame's explanation looks at one by one.
constexpr int32_t kExplWindow = 64;

// The revision-guided search (see search.h).
class Search {
 public:
  enum class Verdict { kOk, kFail, kLimit };

  // Gap candidates of equal preference are tried newest invoke first, or
  // oldest first.
  enum class Order { kNewestFirst, kOldestFirst };

  struct Shared;
  Search(const Compiled& c, const Index& ix, const CheckOptions& o,
         int64_t max_states, Order order, Shared* shared)
      : c_(c),
        ix_(ix),
        o_(o),
        max_states_(max_states),
        order_(order),
        sh_(*shared),
        m_(c) {
    lin_.assign(c.ops.size(), 0);
    class_next_.assign(ix.class_ops.size(), 0);
    tried_by_.assign(c.ops.size(), 0);
    if (small_keys_) {
      write_mask_.assign(c.ops.size(), 0);
      branch_mask_.assign(c.ops.size(), {0, 0});
      for (size_t u = 0; u < c.ops.size(); ++u) {
        for (int b = 0; b < 2; ++b) {
          for (int32_t k : ix.branch_writes[u][b]) {
            branch_mask_[u][b] |= uint64_t{1} << k;
          }
        }
        write_mask_[u] = branch_mask_[u][0] | branch_mask_[u][1];
      }
      // Every key an op's outcome depends on or changes: its compares'
      // and ops' ranges in both branches (but not the reads of a kUnknown
      // op: its results are not checked). A revoke deletes the keys that
      // carry its lease, and only a key that some op puts with that lease
      // can (ix.op_dels: no other write sets a lease).
      key_mask_.assign(c.ops.size(), 0);
      for (size_t u = 0; u < c.ops.size(); ++u) {
        const COp& op = c.ops[u];
        if (op.revoke != 0) {
          for (int32_t k : ix.op_dels[u]) key_mask_[u] |= uint64_t{1} << k;
          write_mask_[u] = key_mask_[u];
          continue;
        }
        uint64_t m = 0;
        auto add = [&](CRange r) {
          for (int32_t k = r.lo; k < r.hi; ++k) m |= uint64_t{1} << k;
        };
        for (const CCompare& cmp : op.cmps) add(cmp.r);
        for (const auto* br : {&op.success, &op.failure}) {
          for (const CReqOp& q : *br) {
            if (q.kind == RequestOp::kPut) {
              m |= uint64_t{1} << q.key;
            } else if (q.kind == RequestOp::kDelete ||
                       op.role != Role::kUnknown) {
              add(q.r);
            }
          }
        }
        key_mask_[u] = m;
      }
    }
    for (const COp& op : c.ops) pending_ok_ += IsLinearOk(op.role) ? 1 : 0;
    if (small_keys_) {
      for (auto& v : pinned_writers_) v.assign(c.keys.size(), {});
      for (int u : ix.unknown) {
        if (!ix.pinned_only[u]) continue;
        for (int32_t k : ix.op_puts[u]) pinned_writers_[0][k].push_back(u);
        for (int32_t k : ix.op_dels[u]) pinned_writers_[1][k].push_back(u);
      }
      const size_t revs = static_cast<size_t>(std::min<int64_t>(
          ix.max_rev + 2, int64_t{1} << 24));
      frozen_at_.assign(revs, 0);
      frozen_known_.assign(revs, 0);
      // ret_bound_[g]: the earliest return among kOk ops (not revokes)
      // that come after step g: writes at revisions > g, reads at >= g.
      std::vector<int64_t> w(revs + 1, kInfinity), rd(revs + 1, kInfinity);
      for (const COp& op : c.ops) {
        if (!IsLinearOk(op.role) || op.revoke != 0 || op.rev < 0 ||
            static_cast<size_t>(op.rev) >= revs) {
          continue;
        }
        auto& v = op.role == Role::kWrite ? w : rd;
        v[static_cast<size_t>(op.rev)] =
            std::min(v[static_cast<size_t>(op.rev)], op.ret);
      }
      ret_bound_.assign(revs, kInfinity);
      int64_t wmin = kInfinity, rmin = kInfinity;
      for (size_t g = revs; g-- > 0;) {
        ret_bound_[g] = std::min(wmin, std::min(rmin, rd[g]));
        wmin = std::min(wmin, w[g]);
        rmin = std::min(rmin, rd[g]);
      }
    }
    free_index_.assign(ix.class_ops.size(), -1);
    for (int c : ix.free_classes) {
      free_index_[c] = static_cast<int>(free_head_.size());
      free_head_.push_back(kNone);
      free_head_invoke_.push_back(kInfinity);
      free_mask_.push_back(small_keys_ ? branch_mask_[ix.class_ops[c][0]]
                                       : std::array<uint64_t, 2>{0, 0});
      UpdateHead(c);
    }
  }

  Verdict Run() {
    bool alive = Settle();
    while (true) {
      if (!alive && !Backtrack()) {
        return limit_hit_ ? Verdict::kLimit : Verdict::kFail;
      }
      if (states_ > max_states_) return Verdict::kLimit;
      if (pending_ok_ == 0 && m_.rev() >= ix_.max_serial_rev)
        return Verdict::kOk;
      auto w = ix_.write_at.find(m_.rev() + 1);
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
    int32_t op;
    int64_t old_maxinv;
  };
  // A point to undo back to: the model's trail and the linearized ops'.
  struct Mark {
    size_t model = 0, lin = 0;
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

  // Why a subtree of the search failed (LEARNED NOGOODS, see Absorb): it
  // fails from every state that agrees on the keys of k (bit set, compared
  // with value tokens) in which, for each class in d, no more of the class
  // is available than in the state explained (as many of its ops are
  // linearized, or more). Not valid: no explanation (the failure may
  // depend on anything).
  struct Expl {
    bool valid = true;
    uint64_t k = 0;
    // Keys whose presence alone decided (present or not; the rest of
    // their state did not matter). A key in both sets counts as in k.
    uint64_t p = 0;
    std::vector<int32_t> d;  // classes, sorted, unique
    // And the ops linearized by the outer frames at depth < j: the
    // explanation holds while those frames keep their choices.
    int32_t j = 0;
    void Invalidate() {
      valid = false;
      k = 0;
      p = 0;
      d.clear();
      j = 0;
    }
    void AddClasses(const int32_t* p, size_t n) {
      if (n == 0) return;
      const size_t old = d.size();
      d.insert(d.end(), p, p + n);
      std::inplace_merge(d.begin(), d.begin() + static_cast<ptrdiff_t>(old),
                         d.end());
      d.erase(std::unique(d.begin(), d.end()), d.end());
    }
  };
  // A learned nogood at a revision: the step to that revision fails if it
  // leaves the keys of mask as hashed in proj, with the same kOk ops
  // linearized (ok_fp), and no class of d with fewer ops linearized than
  // recorded.
  struct Learned {
    uint64_t mask;
    uint64_t pmask;  // keys compared by presence only (Expl::p)
    std::pair<uint64_t, uint64_t> proj;
    uint64_t ok_fp;
    int32_t j;       // frames at depth < j keep their choices: the one at
    uint64_t stamp;  // depth j - 1 still has this stamp
    
    std::vector<std::pair<int32_t, int32_t>> d;  // (class, linearized)
  };

 public:
  // What outlives one attempt (RunCore): learned nogoods hold for any
  // search of the history (those that pin outer frames name them by
  // stamps, unique across attempts, so they never match in another).
  struct Shared {
    absl::flat_hash_map<int64_t, std::vector<Learned>> learned;
    uint64_t stamps = 0;
  };

 private:

  void UpdateHead(int c) {
    const int i = free_index_[c];
    if (i < 0) return;
    const int u = Head(c);
    free_head_[i] = u;
    free_head_invoke_[i] = u == kNone ? kInfinity : c_.ops[u].invoke;
  }

  // The first op of class c not linearized yet, or kNone.
  int Head(int c) const {
    const std::vector<int>& ops = ix_.class_ops[c];
    const size_t next = static_cast<size_t>(class_next_[c]);
    return next < ops.size() ? ops[next] : kNone;
  }

  // Up to kMaxStagedPerKey class heads (see Usable) that put (or may
  // delete) key k and were invoked by min_ret, newest first.
  std::vector<int> NewestEnabled(int32_t k, bool del, int64_t min_ret) const {
    std::vector<int> out;
    for (int c : del ? ix_.del_classes[k] : ix_.put_classes[k]) {
      const int u = Head(c);
      if (u != kNone && c_.ops[u].invoke <= min_ret) out.push_back(u);
    }
    std::sort(out.begin(), out.end(), [&](int a, int b) {
      return ix_.unknown_pos[a] > ix_.unknown_pos[b];
    });
    if (out.size() > kMaxStagedPerKey) out.resize(kMaxStagedPerKey);
    return out;
  }

  bool Serves(int u, const Need& n) const {
    const auto& keys = n.del ? ix_.op_dels[u] : ix_.op_puts[u];
    return std::binary_search(keys.begin(), keys.end(), n.key);
  }

  struct Frame {
    Mark mark;
    std::vector<Need> must;  // needs this step has to serve
    int64_t rev;
    int64_t min_ret;
    std::vector<int> staged;  // preferred candidates, in order
    bool forced = false;      // only ops serving every must-need can work
    size_t next_staged = 0;
    bool phantom_done = false;
    // The other candidates: enabled heads of free classes in order_,
    // listed when first needed.
    bool scan_listed = false;
    std::vector<int> scan;
    size_t next_scan = 0;
    // Candidates that touch the keys of the op that failed after the last
    // candidate, tried next (see Refocus).
    std::vector<int> focus;
    size_t next_focus = 0;
    // Ops tried at this frame are marked tried_by_[op] == serial. An inner
    // frame may overwrite the mark; a candidate tried twice is then cut by
    // the memo of visited states, so only time is lost.
    uint64_t serial = 0;
    // Key sets K (sorted) such that any step to rev + 1 that changes no key
    // of K fails in the forced steps that follow it (see ChainFailed).
    std::vector<std::vector<int32_t>> nogoods;
    std::vector<uint64_t> nogood_masks;  // the same, as bit sets (small_keys_)
    // Learning (see Absorb): the candidate being explored, the state right
    // after its step, and its memo entry; and why every candidate tried so
    // far failed, as an explanation over the state before the step.
    int cur = kNone;
    uint64_t cur_changed = 0;  // keys its step changed
    uint64_t stamp = 0;  // unique per choice (0: none)
    Mark post;
    std::pair<uint64_t, uint64_t> cur_key;
    Expl why;
  };

  static constexpr int kPhantom = -2;
  static constexpr int kNone = -1;

  int64_t MinRet() const {
    return ret_cursor_ < ix_.ret_order.size()
               ? c_.ops[ix_.ret_order[ret_cursor_]].ret
               : kInfinity;
  }

  void Note(int op, const char* why) {
    if (!noted_ || m_.rev() > deepest_rev_) {
      noted_ = true;
      deepest_rev_ = m_.rev();
      deepest_op_ = op;
      deepest_why_ = why;
    }
  }

  void Linearize(int i) {
    const COp& op = c_.ops[i];
    trail_.push_back({i, maxinv_});
    lin_[i] = 1;
    sh1_ ^= op.z1;
    sh2_ ^= op.z2;
    maxinv_ = std::max(maxinv_, op.invoke);
    if (IsLinearOk(op.role)) {
      ok_fp_ ^= op.z1;
      --pending_ok_;
      while (ret_cursor_ < ix_.ret_order.size() &&
             lin_[ix_.ret_order[ret_cursor_]]) {
        ++ret_cursor_;
      }
    } else if (op.role == Role::kUnknown) {
      DETCD_CHECK(Head(ix_.class_of[i]) == i);
      ++class_next_[ix_.class_of[i]];
      UpdateHead(ix_.class_of[i]);
    }
  }

  Mark Here() const { return {m_.mark(), trail_.size()}; }

  void UndoTo(const Mark& mark) {
    m_.UndoTo(mark.model);
    while (trail_.size() > mark.lin) {
      const Undo u = trail_.back();
      trail_.pop_back();
      const COp& op = c_.ops[u.op];
      lin_[u.op] = 0;
      sh1_ ^= op.z1;
      sh2_ ^= op.z2;
      maxinv_ = u.old_maxinv;
      if (IsLinearOk(op.role)) {
        ok_fp_ ^= op.z1;
        ++pending_ok_;
        ret_cursor_ =
            std::min(ret_cursor_, static_cast<size_t>(ix_.ret_pos[u.op]));
      } else if (op.role == Role::kUnknown) {
        --class_next_[ix_.class_of[u.op]];
        UpdateHead(ix_.class_of[u.op]);
      }
    }
  }

  // One model transition (counted against max_states).
  bool Eval(const COp& op, bool check, int64_t stamp, bool* changed) {
    ++states_;
    return m_.Apply(op, check, stamp, changed);
  }

  bool FactsAllowStep(int64_t r) const { return FactsAllow(ix_, m_, r); }

  // Does op (a read) match the current state without changing it?
  bool Matches(int i) {
    bool changed = false;
    return Eval(c_.ops[i], /*check=*/true, m_.rev() + 1, &changed) && !changed;
  }

  // --- Search steps.

  // Arrived at revision m_.rev(): check serializable reads of this state, then
  // linearize the reads at m_.rev() (all of them, or this branch is dead).
  bool Settle() {
    if (auto it = ix_.serial_at.find(m_.rev()); it != ix_.serial_at.end()) {
      for (int s : it->second) {
        if (maxinv_ > c_.ops[s].ret) {
          chain_valid_ = false;  // depends on the ops linearized
          fail_.Invalidate();
          Note(s, "serializable read returned before its state existed");
          return false;
        }
        ChainKeys(c_.ops[s]);
        if (!Matches(s)) {
          FailedOn(c_.ops[s]);
          ChainFailed();
          Note(s, "serializable read does not match the state");
          return false;
        }
      }
    }
    auto it = ix_.reads_at.find(m_.rev());
    if (it == ix_.reads_at.end()) return true;
    const std::vector<int>& reads = it->second;
    for (int r : reads) {
      if (lin_[r]) continue;
      ChainKeys(c_.ops[r]);
      if (!Matches(r)) {
        FailedOn(c_.ops[r]);
        ChainFailed();
        Note(r, "response does not match the state at its revision");
        return false;
      }
    }
    // In invoke order: once one is not enabled, the op blocking it is not
    // a read at this revision, so the branch is dead.
    for (int r : reads) {
      if (lin_[r]) continue;
      if (c_.ops[r].invoke > MinRet()) {
        ChainFailed();
        Note(r,
             "an op that returned before it was invoked needs a later "
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
      ChainFailed();
      Note(w,
           "an op that returned before it was invoked needs a later "
           "revision");
      return false;
    }
    const Mark mark = Here();
    bool changed = false;
    ChainKeys(op);
    if (auto it = ix_.required_at.find(m_.rev() + 1);
        it != ix_.required_at.end()) {
      chain_keys_.insert(chain_keys_.end(), it->second.begin(),
                         it->second.end());
      if (small_keys_) {
        for (int32_t k : it->second) chain_mask_ |= uint64_t{1} << k;
      }
    }
    if (!Eval(op, /*check=*/true, m_.rev() + 1, &changed)) {
      FailedOn(op);
      ChainFailed();
      Note(w, "response does not match the state before its revision");
      return false;
    }
    if (!FactsAllowStep(m_.rev() + 1)) {
      UndoTo(mark);
      FailedOn(op);
      ChainFailed();
      Note(w, "its write contradicts what other ops saw");
      return false;
    }
    Linearize(w);
    m_.SetRev(m_.rev() + 1);
    return true;
  }

  // Revision m_.rev() + 1 is claimed by no kOk write: open a choice point over
  // the kUnknown ops (and external writes) that could make it.
  bool OpenGap() {
    chain_valid_ = false;  // a choice comes before any failure from here
    const int64_t r = m_.rev() + 1;
    Frame f;
    f.mark = Here();
    f.rev = m_.rev();
    f.min_ret = MinRet();
    std::vector<Need> needs;
    if (auto it = ix_.required_at.find(r); it != ix_.required_at.end()) {
      for (int32_t k : it->second) needs.push_back({0, k, false});
    }
    for (int32_t k : ix_.watch_keys) {
      const KState& s = m_.key(k);
      const auto& v = ix_.facts[k];
      auto it =
          std::lower_bound(v.begin(), v.end(), r,
                           [](const Fact& f, int64_t x) { return f.m < x; });
      if (it != v.end() && it->c < r) {
        // Inside an incarnation: its next fact needs more puts than the
        // known writes give?
        if (!s.present() || s.create != it->c) {
          FailKey(k);
          Note(kNone, "a key's incarnation does not match what ops saw");
          return false;
        }
        const int64_t need = it->x - s.version - ix_.PutsIn(k, r, it->m);
        bool refined = false;
        const int64_t gaps =
            Servable(k, /*del=*/false, r, it->m, f.min_ret, &refined);
        if (need < 0 || need > gaps) {
          FailKey(k);
          if (refined) AddWriterClasses(k, /*del=*/false, &fail_);
          Note(kNone, "a key's version count cannot match what ops saw");
          return false;
        }
        if (refined && need == gaps && need > 0 && learn_) {
          AddWriterClasses(k, /*del=*/false, &f.why);
        }
        // Only a gap that can put k serves the need.
        if (need > 0 && ix_.ServableIn(k, /*del=*/false, r - 1, r) > 0 &&
            (!small_keys_ || CanWriteAt(k, /*del=*/false, r))) {
          needs.push_back({gaps - need, k, false});
        }
        continue;
      }
      if (!s.present()) continue;
      // It exists but must be gone by a revision where it was seen missing
      // or recreated.
      const Fact* next = it == v.end() ? nullptr : &*it;
      const int64_t d = ix_.GoneBy(k, r, next);
      if (d == kInfinity || ix_.DelsIn(k, r - 1, d) > 0) continue;
      bool refined = false;
      const int64_t gaps =
          Servable(k, /*del=*/true, r, d, f.min_ret, &refined);
      if (gaps == 0) {
        // Only whether k is there decided this (not inside an incarnation,
        // so no fact reads its other fields here).
        FailPresence(k);
        if (refined) AddWriterClasses(k, /*del=*/true, &fail_);
        Note(kNone, "a key cannot be deleted before it was seen missing");
        return false;
      }
      if (refined && gaps == 1 && learn_) {
        AddWriterClasses(k, /*del=*/true, &f.why);
      }
      // When the step that recreates k may delete it first, the need is
      // not "k missing after some step": leave the order alone.
      if (next != nullptr && d == next->c) continue;
      if (ix_.ServableIn(k, /*del=*/true, r - 1, r) > 0 &&
          (!small_keys_ || CanWriteAt(k, /*del=*/true, r))) {
        needs.push_back({gaps - 1, k, true});
      }
    }
    std::sort(needs.begin(), needs.end());
    for (const Need& n : needs) {
      if (n.slack == 0) f.must.push_back(n);
    }
    f.forced = !f.must.empty();
    // Which needs are musts depends on the state of their keys.
    // (A deletion need, only by whether its key is there.)
    if (learn_) {
      for (const Need& n : f.must) {
        (n.del ? f.why.p : f.why.k) |= uint64_t{1} << n.key;
      }
    }
    // Preferred candidates: unknown ops that can serve some need (all the
    // must-needs, if any): the most urgent need (least slack) first, then
    // most needs served, then in order_.
    const int sign = order_ == Order::kNewestFirst ? -1 : 1;
    std::vector<int> cands;
    for (const Need& n : needs) {
      if (n.slack > kMaxStagedSlack) break;
      for (int u : NewestEnabled(n.key, n.del, f.min_ret)) cands.push_back(u);
    }
    std::sort(cands.begin(), cands.end());
    cands.erase(std::unique(cands.begin(), cands.end()), cands.end());
    // (least slack served, -needs served, sign * position)
    std::vector<std::tuple<int64_t, int, int>> scored;
    for (int u : cands) {
      bool all_must = true;
      for (const Need& n : f.must) all_must &= Serves(u, n);
      if (!all_must) continue;
      int64_t least = kInfinity;
      int count = 0;
      for (const Need& n : needs) {
        if (!Serves(u, n)) continue;
        least = std::min(least, n.slack);
        ++count;
      }
      scored.push_back({least, -count, sign * ix_.unknown_pos[u]});
    }
    std::sort(scored.begin(), scored.end());
    // Pinned-only ops whose pin is r come first: the facts name them.
    if (auto it = ix_.pinned_at.find(r); it != ix_.pinned_at.end()) {
      for (int u : it->second) {
        if (lin_[u] || c_.ops[u].invoke > f.min_ret) continue;
        bool all_must = true;
        for (const Need& n : f.must) all_must &= Serves(u, n);
        if (all_must) f.staged.push_back(u);
      }
    }
    // kOk revokes with header revision r come next: if one of them
    // deleted keys, it made r (otherwise it is a no-op at r, see Settle).
    if (auto it = ix_.revokes_at.find(r); it != ix_.revokes_at.end()) {
      for (int u : it->second) {
        if (lin_[u] || c_.ops[u].invoke > f.min_ret) continue;
        bool all_must = true;
        for (const Need& n : f.must) all_must &= Serves(u, n);
        if (all_must) f.staged.push_back(u);
      }
    }
    for (const auto& [least, served, pos] : scored) {
      f.staged.push_back(ix_.unknown[sign * pos]);
    }
    f.serial = ++frame_serial_;
    frames_.push_back(std::move(f));
    return TryNext(frames_.back());
  }

  // SERVABLE GAPS, REFINED BY WHAT IS LEFT (sound). Index::ServableIn
  // counts the gaps in [a, b] whose step may put (or delete) key k, from
  // the history alone. When there are few, count only those where some op
  // not linearized yet could do it: a kUnknown op with a branch that
  // writes k and changes no key frozen at that gap (a revoke: one whose
  // lease k may carry), a pinned one only at its pin. Ops linearized now
  // stay linearized on every path from here, so this is still an upper
  // bound on the steps in [a, b] that can put (delete) k. It depends on
  // which ops are linearized: *refined tells when it is below the static
  // count, and then explanations name the classes of k's writers.
  int64_t Servable(int32_t k, bool del, int64_t a, int64_t b, int64_t min_ret,
                   bool* refined) {
    *refined = false;
    const int64_t all = ix_.ServableIn(k, del, a - 1, b);
    if (!small_keys_ || all > kMaxRefinedGaps) return all;
    int64_t n = 0;
    for (int64_t g = a; g <= b; ++g) {
      if (ix_.write_at.contains(g) || ix_.ServableIn(k, del, g - 1, g) == 0) {
        continue;
      }
      if (CanWriteAt(k, del, g)) ++n;
    }
    (void)min_ret;
    *refined = n < all;
    return n;
  }

  bool CanWriteAt(int32_t k, bool del, int64_t g) {
    const uint64_t bit = uint64_t{1} << k;
    const uint64_t frozen = FrozenAt(g);
    // The op making step g is invoked before every kOk op after it (but
    // kOk revokes, which may be gap steps themselves) returned.
    const int64_t latest = static_cast<size_t>(g) < ret_bound_.size()
                               ? ret_bound_[static_cast<size_t>(g)]
                               : kInfinity;
    auto branch_ok = [&](int u) {
      if (c_.ops[u].revoke != 0) return (write_mask_[u] & bit) != 0;
      for (int b = 0; b < 2; ++b) {
        const uint64_t m = branch_mask_[u][b];
        if ((m & bit) != 0 && (m & frozen) == 0) return true;
      }
      return false;
    };
    for (int c : del ? ix_.del_classes[k] : ix_.put_classes[k]) {
      const int u = Head(c);
      if (u != kNone && c_.ops[u].invoke <= latest && branch_ok(u)) {
        return true;
      }
    }
    for (int u : pinned_writers_[del ? 1 : 0][k]) {
      if (!lin_[u] && (ix_.pin[u][0] == g || ix_.pin[u][1] == g) &&
          c_.ops[u].invoke <= latest && branch_ok(u)) {
        return true;
      }
    }
    return false;
  }

  // The classes of k's writers (those CanWriteAt looks at) into e.d.
  void AddWriterClasses(int32_t k, bool del, Expl* e) {
    if (!learn_ || !e->valid) return;
    scratch_.clear();
    for (int c : del ? ix_.del_classes[k] : ix_.put_classes[k]) {
      scratch_.push_back(c);
    }
    for (int u : pinned_writers_[del ? 1 : 0][k]) {
      scratch_.push_back(ix_.class_of[u]);
    }
    std::sort(scratch_.begin(), scratch_.end());
    scratch_.erase(std::unique(scratch_.begin(), scratch_.end()),
                   scratch_.end());
    e->AddClasses(scratch_.data(), scratch_.size());
  }

  uint64_t FrozenAt(int64_t g) {
    if (g < 0 || static_cast<size_t>(g) >= frozen_at_.size()) {
      return FrozenMask(g);
    }
    if (!frozen_known_[static_cast<size_t>(g)]) {
      frozen_known_[static_cast<size_t>(g)] = 1;
      frozen_at_[static_cast<size_t>(g)] = FrozenMask(g);
    }
    return frozen_at_[static_cast<size_t>(g)];
  }

  // Index::Blocked with the frozen keys as a bit set.
  bool BlockedByMask(int u, uint64_t frozen) const {
    const auto& m = branch_mask_[u];
    if (m[0] == 0 && m[1] == 0) return false;  // a revoke
    return (m[0] == 0 || (m[0] & frozen) != 0) &&
           (m[1] == 0 || (m[1] & frozen) != 0);
  }

  bool Tried(const Frame& f, int u) const { return tried_by_[u] == f.serial; }
  // Marks u tried at f; false if it already was.
  bool TryMark(const Frame& f, int u) {
    if (tried_by_[u] == f.serial) return false;
    tried_by_[u] = f.serial;
    return true;
  }

  // May kUnknown op u make the step to revision r? Only the head of its
  // symmetry class, a pinned-only op only at a pin, and not when every
  // writing branch changes a frozen key (facts.cc: the rules are sound).
  bool Usable(int u, int64_t r) const {
    if (c_.ops[u].role != Role::kUnknown) return true;
    if (Head(ix_.class_of[u]) != u) return false;
    if (ix_.pinned_only[u] && ix_.pin[u][0] != r && ix_.pin[u][1] != r) {
      return false;
    }
    return !ix_.Blocked(u, r);
  }

  int NextCandidate(Frame& f) {
    const int64_t r = f.rev + 1;
    while (f.next_focus < f.focus.size()) {
      const int u = f.focus[f.next_focus++];
      if (Usable(u, r) && TryMark(f, u)) return u;
    }
    while (f.next_staged < f.staged.size()) {
      const int u = f.staged[f.next_staged++];
      if (Usable(u, r) && TryMark(f, u)) return u;
    }
    if (o_.external_writes && !f.forced && !f.phantom_done) {
      f.phantom_done = true;
      return kPhantom;
    }
    // Newest first by default: an unknown op invoked long ago that has not
    // taken effect yet most likely never did.
    if (!f.scan_listed) {
      // While f is the innermost frame, the linearized set is the one it
      // started with, so class heads, frozen keys and needs stay as listed.
      f.scan_listed = true;
      uint64_t frozen = 0;  // small_keys_: the keys frozen at r
      if (small_keys_) {
        for (int32_t k : ix_.fact_keys) {
          if (ix_.Frozen(k, r)) frozen |= uint64_t{1} << k;
        }
      }
      for (size_t i = 0; i < free_head_.size(); ++i) {
        // The head and its invoke are kept in flat arrays: this loop runs
        // over every free class at every frame that gets this far.
        if (free_head_invoke_[i] > f.min_ret) continue;
        if (small_keys_) {
          // BlockedByMask on the class's masks (the same for all its ops).
          const uint64_t m0 = free_mask_[i][0], m1 = free_mask_[i][1];
          if ((m0 != 0 || m1 != 0) && (m0 == 0 || (m0 & frozen) != 0) &&
              (m1 == 0 || (m1 & frozen) != 0)) {
            continue;
          }
        }
        const int u = free_head_[i];
        if (u == kNone || Tried(f, u)) continue;
        if (!small_keys_ && ix_.Blocked(u, r)) continue;
        bool all_must = true;
        for (const Need& n : f.must) all_must &= Serves(u, n);
        if (all_must) f.scan.push_back(u);
      }
      std::sort(f.scan.begin(), f.scan.end(), [&](int a, int b) {
        return order_ == Order::kNewestFirst
                   ? ix_.unknown_pos[a] > ix_.unknown_pos[b]
                   : ix_.unknown_pos[a] < ix_.unknown_pos[b];
      });
    }
    while (f.next_scan < f.scan.size()) {
      const int u = f.scan[f.next_scan++];
      if (MissesNogood(f, u) || !TryMark(f, u)) continue;
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
        if (learn_) FrameFailed(f);
        Note(kNone, "no op can make the next revision");
        return false;
      }
      if (cand == kPhantom) {
        // A write outside the history changes no key the history sees:
        // its rejections depend on no key of its own (a frame nogood
        // already explained itself), the facts' on the required keys.
        ++states_;
        m_.ClearChanged();
        if (HitsNogood(f)) continue;
        if (!FactsAllowStep(r)) {
          f.why.k |= RequiredMask(r);
          continue;
        }
        m_.SetRev(r);
        if (learn_) {
          if (const Learned* g = MatchLearned(r)) {
            ++learned_hits_;
            Explained(f, cand, g->mask, g->pmask, g->d);
            f.why.j = std::max(f.why.j, std::min(g->j, Depth(f)));
            UndoTo(f.mark);
            continue;
          }
        }
      } else {
        // Each rejection below depends on the state of the candidate's
        // keys (and the must-needs' and required keys, already in f.why).
        const uint64_t keys = small_keys_ ? key_mask_[cand] : 0;
        bool changed = false;
        Eval(c_.ops[cand], /*check=*/false, r, &changed);
        if (!changed) {
          f.why.k |= keys;
          continue;
        }
        if (c_.ops[cand].revoke == 0 && HitsNogood(f)) {
          f.why.k |= keys;
          UndoTo(f.mark);
          continue;
        }
        if (c_.ops[cand].role == Role::kUnknown && ix_.pinned_only[cand] &&
            ix_.pin[cand][m_.last_succeeded() ? 1 : 0] != r) {
          f.why.k |= keys;
          UndoTo(f.mark);  // a pinned op is its pin's step, nothing else
          continue;
        }
        bool served = true;
        for (const Need& n : f.must) {
          served &= n.del ? !m_.key(n.key).present() : m_.key(n.key).mod == r;
        }
        if (!served || !FactsAllowStep(r)) {
          f.why.k |= keys | RequiredMask(r);
          UndoTo(f.mark);
          continue;
        }
        Linearize(cand);
        m_.SetRev(r);
        if (learn_) {
          if (const Learned* g = MatchLearned(r)) {
            ++learned_hits_;
            Explained(f, cand, g->mask, g->pmask, g->d);
            Untouched(f, cand, ChangedMask(), g->mask | g->pmask,
                      scratch_.data(),
                      scratch_.size());
            f.why.j = std::max(f.why.j, std::min(g->j, Depth(f)));
            UndoTo(f.mark);
            continue;
          }
        }
      }
      const uint64_t r1 =
          Mix64(static_cast<uint64_t>(m_.rev()) ^ 0x2545f491ULL);
      const uint64_t r2 =
          Mix64(static_cast<uint64_t>(m_.rev()) ^ 0x9e3779b9ULL);
      const std::pair<uint64_t, uint64_t> key = {
          sh1_ ^ Mix64(m_.hash().first ^ r1),
          sh2_ ^ Mix64(m_.hash().second ^ r2)};
      auto [it, inserted] = seen_.try_emplace(key, kNoMemo);
      if (!inserted) {
        // Explored before, from this very state, and failed.
        if (learn_) {
          if (it->second == kNoMemo) {
            f.why.Invalidate();
          } else {
            // The same state, so the same ops linearized; which outer
            // frame linearized what may differ, so pin them all.
            const Memo& e = memo_[it->second];
            Explained(f, cand, e.k, e.p, memo_pool_.data() + e.d_off,
                      e.d_len);
            Untouched(f, cand, ChangedMask(), e.k | e.p,
                      memo_pool_.data() + e.d_off, e.d_len);
            if (e.pinned) f.why.j = std::max(f.why.j, Depth(f));
          }
        }
        UndoTo(f.mark);
        continue;
      }
      // The forced steps from here on form a chain (see ChainFailed).
      chain_valid_ = cand == kPhantom || c_.ops[cand].revoke == 0;
      chain_keys_.clear();
      chain_mask_ = 0;
      step_changed_ = m_.changed();
      f.cur_changed = 0;
      if (small_keys_) {
        for (int32_t k : step_changed_) f.cur_changed |= uint64_t{1} << k;
      }
      f.cur = cand;
      f.stamp = ++sh_.stamps;
      f.post = Here();
      f.cur_key = key;
      return true;
    }
  }

  bool Backtrack() {
    while (!frames_.empty()) {
      Frame& f = frames_.back();
      if (learn_ && f.cur != kNone && !limit_hit_) {
        UndoTo(f.post);
        Absorb(f);
      }
      f.cur = kNone;
      f.stamp = 0;
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

  // LEARNED NOGOODS (sound). Every failure of the search gets an
  // explanation E = (K, D) (Expl): the subtree fails from any state that
  // agrees on the keys K and in which no class of D has more ops
  // available (fewer linearized). At a given revision the kOk ops
  // linearized are the same on every path (all those up to it), except kOk
  // revokes used as gap steps, so nogoods also require the same kOk set.
  // Unobserved values are compared by token: ops of a symmetry class put
  // values that no op can tell apart (see BuildClasses), so states that
  // differ only in them behave alike.
  //  - A forced op that fails, after forced steps since the gap step: the
  //    keys of the chain (ChainFailed). Forced steps that passed change
  //    their keys as a function of those keys' earlier state, so K holds
  //    for the state right after the gap step. Passing checks need no
  //    explanation: from a state where they fail the subtree fails anyway.
  //  - A failure at OpenGap about key k: K = {k}; when only whether k is
  //    there decided it (it must be deleted and nothing can), k counts by
  //    its presence alone (Expl::p), as a deletion need's key does in a
  //    frame's must-needs. A step that may write such a key makes it
  //    count whole before the step.
  //  - A candidate rejected at a frame (no change, facts, needs, pins,
  //    nogoods): its keys, the must-needs' keys and the required keys.
  //  - A candidate whose subtree failed with E': E' is about the state
  //    after its step; before it, the keys of E' (plus the candidate's own
  //    keys if it may write one of them) decide the same.
  //  - A frame with no candidate left: the union over its candidates, plus
  //    the keys of its must-needs (whether a need is a must depends on the
  //    key), plus in D every class that a path with fewer of its ops
  //    linearized could offer here: an op linearized at an outer frame
  //    whose class has no enabled head here, unless it fails the frame's
  //    static filters (must-needs, frozen keys, pin, frame nogoods). A
  //    class whose head is enabled here was tried (or filtered) here, and
  //    an earlier op of it would behave the same.
  // On backtracking out of a candidate's subtree, its explanation is kept
  // as a nogood at the revision of the step (any later step there, from any
  // path, that matches it is cut) and with its memo entry.
  void Absorb(Frame& f) {
    if (!fail_.valid) {
      f.why.Invalidate();
      return;
    }
    const int64_t r = f.rev + 1;
    Learned g;
    fail_.p &= ~fail_.k;
    g.mask = fail_.k;
    g.pmask = fail_.p;
    ++proj_gen_;
    g.proj = Proj(fail_.k, fail_.p);
    g.ok_fp = ok_fp_;
    g.j = fail_.j;
    g.stamp = g.j > 0 ? frames_[static_cast<size_t>(g.j) - 1].stamp : 0;
    g.d.reserve(fail_.d.size());
    for (int32_t c : fail_.d) g.d.push_back({c, class_next_[c]});
    std::vector<Learned>& at = sh_.learned[r];
    if (at.size() >= kMaxLearnedPerRev) at.erase(at.begin());
    at.push_back(std::move(g));
    if (auto it = seen_.find(f.cur_key); it != seen_.end()) {
      Memo e;
      e.k = fail_.k;
      e.p = fail_.p;
      e.d_off = static_cast<uint32_t>(memo_pool_.size());
      e.d_len = static_cast<uint32_t>(fail_.d.size());
      e.pinned = fail_.j > 0;
      memo_pool_.insert(memo_pool_.end(), fail_.d.begin(), fail_.d.end());
      it->second = static_cast<uint32_t>(memo_.size());
      memo_.push_back(e);
    }
    Explained(f, f.cur, fail_.k, fail_.p, fail_.d.data(), fail_.d.size());
    // A step that left the keys of the explanation alone: any other step
    // that leaves them alone reaches a state that agrees on them, so it
    // fails the same (if the class of this one is not in d: the other step
    // makes this op available again). A frame nogood, as in ChainFailed.
    Untouched(f, f.cur, f.cur_changed, fail_.k | fail_.p, fail_.d.data(),
              fail_.d.size());
    f.why.j = std::max(f.why.j, std::min(fail_.j, Depth(f)));
  }

  // Candidate u of frame f, changing the keys `changed`, failed for a
  // reason about keys k and classes d (sorted): if it changed none of k,
  // every step that changes none of k fails the same.
  void Untouched(Frame& f, int u, uint64_t changed, uint64_t k,
                 const int32_t* d, size_t n) {
    if ((changed & k) != 0 || u < 0 || c_.ops[u].role != Role::kUnknown ||
        c_.ops[u].revoke != 0 || std::binary_search(d, d + n, ix_.class_of[u])) {
      return;
    }
    AddFrameNogood(f, {}, k);
  }

  uint64_t ChangedMask() const {
    uint64_t m = 0;
    for (int32_t k : m_.changed()) m |= uint64_t{1} << k;
    return m;
  }

  // Candidate u of frame f failed for a reason about keys k (after its
  // step) and classes d: add it to f's explanation (before the step).
  // Keys of p decided by their presence alone: so they do before a step
  // that does not write them; a step's own keys count whole.
  void Explained(Frame& f, int u, uint64_t k, uint64_t p, const int32_t* d,
                 size_t n) {
    if (!f.why.valid) return;
    f.why.k |= k;
    f.why.p |= p;
    if (u >= 0 && (write_mask_[u] & (k | p)) != 0) f.why.k |= key_mask_[u];
    if (u >= 0 && c_.ops[u].role != Role::kUnknown) {
      f.why.Invalidate();  // a kOk revoke as a gap step: see above
      return;
    }
    f.why.AddClasses(d, n);
  }
  void Explained(Frame& f, int u, uint64_t k, uint64_t p,
                 const std::vector<std::pair<int32_t, int32_t>>& d) {
    scratch_.clear();
    for (const auto& [c, n] : d) scratch_.push_back(c);
    Explained(f, u, k, p, scratch_.data(), scratch_.size());
  }

  // Frame f has no candidate left: its explanation becomes the failure.
  void FrameFailed(Frame& f) {
    fail_ = f.why;
    if (!fail_.valid) return;
    const int64_t r = f.rev + 1;
    scratch_.clear();
    // Outer frames beyond the window are pinned as a whole (cheaper than
    // looking at each; they are the last to be backtracked to).
    const int32_t depth = Depth(f);
    const int32_t from = std::max<int32_t>(0, depth - kExplWindow);
    fail_.j = std::max(fail_.j, from);
    const uint64_t frozen = FrozenMask(r);
    for (int32_t i = from; i < depth; ++i) {
      const int u = frames_[static_cast<size_t>(i)].cur;
      if (u < 0 || c_.ops[u].role != Role::kUnknown) continue;
      const int c = ix_.class_of[u];
      const int h = Head(c);
      if (h != kNone && c_.ops[h].invoke <= f.min_ret) continue;
      if (ix_.pinned_only[u] && ix_.pin[u][0] != r && ix_.pin[u][1] != r) {
        continue;
      }
      if (BlockedByMask(u, frozen) || MissesNogood(f, u)) continue;
      bool all_must = true;
      for (const Need& n : f.must) all_must &= Serves(u, n);
      if (all_must) scratch_.push_back(c);
    }
    std::sort(scratch_.begin(), scratch_.end());
    fail_.AddClasses(scratch_.data(), scratch_.size());
    if (fail_.d.size() > kMaxExplClasses) fail_.Invalidate();
  }

  int32_t Depth(const Frame& f) const {
    return static_cast<int32_t>(&f - frames_.data());
  }

  uint64_t FrozenMask(int64_t r) const {
    uint64_t frozen = 0;
    for (int32_t k : ix_.fact_keys) {
      if (ix_.Frozen(k, r)) frozen |= uint64_t{1} << k;
    }
    return frozen;
  }

  void FailKey(int32_t k) {
    fail_.j = 0;
    fail_.valid = true;
    fail_.k = small_keys_ ? uint64_t{1} << k : 0;
    fail_.p = 0;
    fail_.d.clear();
  }
  // A failure that k's presence alone decided.
  void FailPresence(int32_t k) {
    FailKey(k);
    std::swap(fail_.k, fail_.p);
  }

  uint64_t AllKeys() const {
    return c_.keys.size() >= 64 ? ~uint64_t{0}
                                : (uint64_t{1} << c_.keys.size()) - 1;
  }

  uint64_t RequiredMask(int64_t r) const {
    uint64_t m = 0;
    if (!small_keys_) return m;
    if (auto it = ix_.required_at.find(r); it != ix_.required_at.end()) {
      for (int32_t k : it->second) m |= uint64_t{1} << k;
    }
    return m;
  }

  // 128-bit fingerprint of the state of the keys in mask, values by token.
  // Per-key parts are cached for the current state (proj_gen_ changes
  // with every state MatchLearned or Absorb looks at).
  // Keys of pmask (not in mask) count by their presence only.
  std::pair<uint64_t, uint64_t> Proj(uint64_t mask, uint64_t pmask) {
    uint64_t h1 = 0, h2 = 0;
    for (uint64_t m = pmask & ~mask; m != 0; m &= m - 1) {
      const int k = __builtin_ctzll(m);
      const uint64_t x = Mix64((static_cast<uint64_t>(k) + 1) ^
                               (m_.key(k).present() ? 0x9b05688c2b3e6c1fULL
                                                    : 0x1f83d9abfb41bd6bULL));
      h1 ^= x;
      h2 ^= Mix64(x ^ 0x6a09e667f3bcc909ULL);
    }
    for (uint64_t m = mask; m != 0; m &= m - 1) {
      const int k = __builtin_ctzll(m);
      if (proj_seen_[k] != proj_gen_) {
        proj_seen_[k] = proj_gen_;
        const KState& s = m_.key(k);
        uint64_t x = Mix64(static_cast<uint64_t>(k) + 1);
        if (s.present()) {
          x = Mix64(x ^ static_cast<uint64_t>(s.create));
          x = Mix64(x ^ static_cast<uint64_t>(s.mod));
          x = Mix64(x ^ static_cast<uint64_t>(s.version));
          x = Mix64(x ^ static_cast<uint64_t>(s.lease));
          x = Mix64(x ^ static_cast<uint64_t>(ix_.value_token[s.value]));
        }
        proj_h_[k] = {x, Mix64(x ^ 0x6a09e667f3bcc909ULL)};
      }
      h1 ^= proj_h_[k].first;
      h2 ^= proj_h_[k].second;
    }
    return {h1, h2};
  }

  // A nogood learned at revision r that the state just reached matches.
  const Learned* MatchLearned(int64_t r) {
    auto it = sh_.learned.find(r);
    if (it == sh_.learned.end()) return nullptr;
    ++proj_gen_;
    for (const Learned& g : it->second) {
      if (g.ok_fp != ok_fp_) continue;
      if (g.j > 0 && (frames_.size() < static_cast<size_t>(g.j) ||
                      frames_[static_cast<size_t>(g.j) - 1].stamp != g.stamp)) {
        continue;
      }
      bool fewer = false;
      for (const auto& [c, n] : g.d) {
        if (class_next_[c] < n) {
          fewer = true;
          break;
        }
      }
      if (fewer || Proj(g.mask, g.pmask) != g.proj) continue;
      return &g;
    }
    return nullptr;
  }

  // CONFLICT NOGOODS (sound). After a gap step, the search runs forced
  // steps (reads at the new revision, kOk writes at the next ones) until
  // the next gap. Each of them depends only on the state of the keys it
  // reads or writes (its compares' and ops' ranges, the keys the facts
  // require it to put), on the revision, and on which kOk ops are
  // linearized; that last part does not depend on which kUnknown op (or
  // external write) made the gap step. Let K be the union of those keys
  // for the chain up to a failing op. If the gap step A changed no key of
  // K and the chain failed, then from the frame's state any other gap step
  // B that changes no key of K leaves every key of K as before and runs
  // the same chain to the same failure (by induction along the chain), so
  // B need not be tried. Failures that depend on the linearized set
  // (serializable reads returning too early, gaps) and kOk revokes (they
  // are in the chain's op set and read every key) record no nogood.
  void ChainKeys(const COp& op) {
    if (small_keys_) chain_mask_ |= key_mask_[&op - c_.ops.data()];
    if (op.revoke != 0) chain_valid_ = false;
    if (!chain_valid_) return;
    auto add = [&](CRange r) {
      for (int32_t k = r.lo; k < r.hi; ++k) chain_keys_.push_back(k);
    };
    for (const CCompare& c : op.cmps) add(c.r);
    for (const auto* br : {&op.success, &op.failure}) {
      for (const CReqOp& q : *br) {
        if (q.kind == RequestOp::kPut) {
          chain_keys_.push_back(q.key);
        } else {
          add(q.r);
        }
      }
    }
    if (chain_keys_.size() > kMaxChainKeys) chain_valid_ = false;
  }

  void ChainFailed() {
    // The failing op and the forced steps before it depend only on the
    // keys of the chain (see above), whatever the gap step was.
    fail_.valid = true;
    fail_.k = chain_mask_;
    fail_.p = 0;
    fail_.d.clear();
    fail_.j = 0;
    if (!chain_valid_ || frames_.empty()) return;
    chain_valid_ = false;
    std::sort(chain_keys_.begin(), chain_keys_.end());
    chain_keys_.erase(std::unique(chain_keys_.begin(), chain_keys_.end()),
                      chain_keys_.end());
    for (int32_t k : step_changed_) {
      if (std::binary_search(chain_keys_.begin(), chain_keys_.end(), k)) {
        return;  // the failure may be the step's own doing
      }
    }
    uint64_t mask = 0;
    if (small_keys_) {
      for (int32_t k : chain_keys_) mask |= uint64_t{1} << k;
    }
    AddFrameNogood(frames_.back(), chain_keys_, mask);
  }

  void AddFrameNogood(Frame& f, std::vector<int32_t> keys, uint64_t mask) {
    if (small_keys_) {
      // A nogood on a subset of another's keys cuts every step the other
      // cuts: keep the smaller key sets.
      for (uint64_t m : f.nogood_masks) {
        if ((m & ~mask) == 0) return;
      }
      for (size_t i = f.nogood_masks.size(); i-- > 0;) {
        if ((mask & ~f.nogood_masks[i]) == 0) {
          f.nogoods.erase(f.nogoods.begin() + static_cast<ptrdiff_t>(i));
          f.nogood_masks.erase(f.nogood_masks.begin() +
                               static_cast<ptrdiff_t>(i));
        }
      }
    }
    if (f.nogoods.size() >= kMaxNogoods) {
      // Drop the one with the most keys (the oldest without bit sets).
      size_t drop = 0;
      for (size_t i = 1; small_keys_ && i < f.nogood_masks.size(); ++i) {
        if (__builtin_popcountll(f.nogood_masks[i]) >
            __builtin_popcountll(f.nogood_masks[drop])) {
          drop = i;
        }
      }
      f.nogoods.erase(f.nogoods.begin() + static_cast<ptrdiff_t>(drop));
      f.nogood_masks.erase(f.nogood_masks.begin() +
                           static_cast<ptrdiff_t>(drop));
    }
    f.nogoods.push_back(std::move(keys));
    f.nogood_masks.push_back(mask);
  }

  // Can kUnknown op u change no key of some nogood of f, whatever branch it
  // takes? Then it fails like the step that made the nogood.
  bool MissesNogood(const Frame& f, int u) const {
    if (c_.ops[u].revoke != 0) return false;  // what it deletes varies
    if (small_keys_) {
      for (uint64_t k : f.nogood_masks) {
        if ((write_mask_[u] & k) == 0) return true;
      }
      return false;
    }
    for (const std::vector<int32_t>& k : f.nogoods) {
      bool touches = false;
      for (const auto& w : ix_.branch_writes[u]) {
        for (int32_t c : w) {
          if (std::binary_search(k.begin(), k.end(), c)) {
            touches = true;
            break;
          }
        }
        if (touches) break;
      }
      if (!touches) return true;
    }
    return false;
  }

  // Does the step just evaluated at frame f change no key of some nogood?
  bool HitsNogood(const Frame& f) const {
    if (small_keys_) {
      uint64_t changed = 0;
      for (int32_t c : m_.changed()) changed |= uint64_t{1} << c;
      for (uint64_t k : f.nogood_masks) {
        if ((changed & k) == 0) return true;
      }
      return false;
    }
    for (const std::vector<int32_t>& k : f.nogoods) {
      bool touches = false;
      for (int32_t c : m_.changed()) {
        if (std::binary_search(k.begin(), k.end(), c)) {
          touches = true;
          break;
        }
      }
      if (!touches) return true;
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
          if (Tried(f, u)) continue;
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
  Shared& sh_;
  std::vector<int32_t> fail_keys_;
  // The chain of forced steps since the last gap step (see ChainFailed).
  bool chain_valid_ = false;
  std::vector<int32_t> chain_keys_;
  uint64_t chain_mask_ = 0;  // the same as a bit set (small_keys_)
  std::vector<int32_t> step_changed_;

  Model m_;
  std::vector<uint8_t> lin_;
  uint64_t sh1_ = 0, sh2_ = 0;  // xor of linearized ops' Zobrist keys
  int64_t maxinv_ = std::numeric_limits<int64_t>::min();
  int64_t pending_ok_ = 0;
  size_t ret_cursor_ = 0;  // first pending op in ix_.ret_order
  // Per symmetry class: how many of its ops are linearized (they are
  // linearized in class order, see Usable).
  std::vector<int> class_next_;
  // Per free class (ix_.free_classes order): its head and the head's
  // invoke (kInfinity: none); per class its index there, or -1.
  std::vector<int> free_head_;
  std::vector<int64_t> free_head_invoke_;
  std::vector<int> free_index_;
  std::vector<std::array<uint64_t, 2>> free_mask_;  // branch_mask_, per class
  // Per key: pinned-only kUnknown ops that may put it ([0]) or delete it
  // ([1]); and the keys frozen at each revision, computed when needed.
  std::array<std::vector<std::vector<int>>, 2> pinned_writers_;
  std::vector<uint64_t> frozen_at_;
  std::vector<uint8_t> frozen_known_;
  std::vector<int64_t> ret_bound_;  // see the constructor
  std::vector<uint64_t> tried_by_;  // see Frame::serial
  // With at most 64 keys, key sets are bit sets: per op, the keys either
  // branch may write.
  const bool small_keys_ = c_.keys.size() <= 64;
  // Learned nogoods need key sets as bit sets.
  const bool learn_ = small_keys_;
  std::vector<uint64_t> key_mask_;  // per op, see the constructor
  std::vector<uint64_t> write_mask_;
  std::vector<std::array<uint64_t, 2>> branch_mask_;
  uint64_t frame_serial_ = 0;
  std::vector<Undo> trail_;
  std::vector<Frame> frames_;
  // Visited states (see search.h), each with its failure's explanation
  // once known (an index into memo_, or kNoMemo).
  static constexpr uint32_t kNoMemo = ~uint32_t{0};
  struct Memo {
    uint64_t k;
    uint64_t p;
    uint32_t d_off, d_len;  // classes, in memo_pool_
    bool pinned;            // it relied on outer frames' choices
  };
  absl::flat_hash_map<std::pair<uint64_t, uint64_t>, uint32_t> seen_;
  std::vector<Memo> memo_;
  std::vector<int32_t> memo_pool_;
  // Learning (see Absorb): the explanation of the last failure, and the
  // nogoods by revision (only looked up, so hash order cannot leak).
  Expl fail_;

  uint64_t ok_fp_ = 0;  // xor of the linearized kOk ops' z1
  uint64_t learned_hits_ = 0;

  uint64_t proj_gen_ = 0;
  std::array<uint64_t, 64> proj_seen_{};
  std::array<std::pair<uint64_t, uint64_t>, 64> proj_h_{};
  // see Frame::stamp
  std::vector<int32_t> scratch_;
  int64_t states_ = 0;
  bool limit_hit_ = false;

  bool noted_ = false;
  int64_t deepest_rev_ = 0;
  int deepest_op_ = kNone;
  const char* deepest_why_ = "";
};

}  // namespace

CoreResult RunCore(const History& h, const CheckOptions& o) {
  CoreResult res;
  Compiled c = Compile(h);
  Index ix;
  if (auto v = Precheck(c, h, &ix)) {
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
    int64_t share;  // of max_states, in 1/128s; the last takes what is left
  };
  // Short first slices: with the learned nogoods an order that suits a
  // history usually decides it in a few hundred thousand states.
  static constexpr Attempt kAttempts[] = {
      {Search::Order::kNewestFirst, 1},  {Search::Order::kOldestFirst, 1},
      {Search::Order::kNewestFirst, 2},  {Search::Order::kOldestFirst, 4},
      {Search::Order::kNewestFirst, 16}, {Search::Order::kOldestFirst, 16},
      {Search::Order::kNewestFirst, 0},
  };
  Search::Verdict v = Search::Verdict::kLimit;
  int64_t used = 0;
  std::optional<Search> s;
  Search::Shared shared;
  for (size_t i = 0; i < std::size(kAttempts); ++i) {
    const bool last = i + 1 == std::size(kAttempts);
    const int64_t budget =
        last ? o.max_states - used : o.max_states / 128 * kAttempts[i].share;
    if (budget <= 0) continue;
    s.emplace(c, ix, o, budget, kAttempts[i].order, &shared);
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
      res.reason = absl::StrCat(
          "no linearization; the search got as far as "
          "revision ",
          s->deepest_rev(), ": ", s->deepest_why());
      if (s->deepest_op() >= 0) {
        absl::StrAppend(&res.reason, " (#", h.ops[s->deepest_op()].id, ")");
      }
      break;
  }
  return res;
}

}  // namespace detcd::harness::lincheck
