// etcd's revisioned KV store as the checker models it, with undo.
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
// range, in key order, with all fields, and count. A put records its lease
// on the key (0 detaches it); a LeaseRevoke deletes every key whose lease
// is the revoked one, in one step (no step if there is none). Whether a
// lease is alive is not modelled (the lease checker's job): a put with a
// revoked lease is not refused here.
// A txn that writes one key twice (etcd 3.4 accepts a delete over a from-key
// range followed by a put inside it) is run op by op.
//
// Every change goes to a trail, so the search can undo back to a mark. The
// state also keeps a 128-bit Zobrist fingerprint (xor of per-key hashes),
// updated in O(1) per change, for the search's memo of visited states.
#ifndef DETCD_HARNESS_LINCHECK_MODEL_H_
#define DETCD_HARNESS_LINCHECK_MODEL_H_

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "harness/lincheck/compiled.h"

namespace detcd::harness::lincheck {

// One key's state; version 0 means missing.
struct KState {
  int64_t create = 0, mod = 0, version = 0, lease = 0;
  int32_t value = -1;
  bool present() const { return version > 0; }
};

inline bool SameKv(const Kv& kv, int32_t key, const KState& s) {
  return kv.key == key && kv.value == s.value && kv.create == s.create &&
         kv.mod == s.mod && kv.version == s.version && kv.lease == s.lease;
}

class Model {
 public:
  explicit Model(const Compiled& c) : c_(c), st_(c.keys.size()) {}

  const KState& key(int32_t k) const { return st_[k]; }
  int64_t rev() const { return rev_; }
  // The state's fingerprint (keys only; the revision is mixed in by the
  // caller).
  std::pair<uint64_t, uint64_t> hash() const { return {zh1_, zh2_}; }

  size_t mark() const { return trail_.size(); }
  void UndoTo(size_t mark);
  void SetRev(int64_t r);

  // Runs op on the state, stamping changes with `stamp`. With `check`,
  // compares with op's response (branch, results, header revision); on a
  // mismatch undoes its changes and returns false. The keys it changed are
  // in changed() afterwards (cleared first).
  bool Apply(const COp& op, bool check, int64_t stamp, bool* changed);
  const std::vector<int32_t>& changed() const { return changed_; }
  // The branch the last Apply took (true: success).
  bool last_succeeded() const { return last_succeeded_; }
  void ClearChanged() { changed_.clear(); }

 private:
  struct Undo {
    bool is_rev;
    int32_t key;
    int64_t old_rev;
    KState old;
  };

  void SetKey(int32_t k, const KState& ns);
  static uint64_t KeyHash(int32_t k, const KState& s, uint64_t salt);
  int Cmp(const CCompare& c, const KState& s) const;
  bool CmpHolds(const CCompare& c, const KState& s) const;
  bool CompareOne(const CCompare& c) const;

  const Compiled& c_;
  const std::string empty_;
  std::vector<KState> st_;
  int64_t rev_ = 1;
  uint64_t zh1_ = 0, zh2_ = 0;  // xor of per-key hashes
  std::vector<Undo> trail_;
  std::vector<int32_t> changed_;
  bool last_succeeded_ = true;
};

}  // namespace detcd::harness::lincheck

#endif  // DETCD_HARNESS_LINCHECK_MODEL_H_
