// Raft's view of its log: the stable part in Storage plus an unstable tail
// (entries and possibly a snapshot) that the owner has not persisted yet.
//
//   storage:   [first ......... last]
//   unstable:                 [offset ......... ]   (overrides storage)
//   committed <= last index; applied <= committed.
#ifndef DETCD_ENGINE_RAFT_LOG_H_
#define DETCD_ENGINE_RAFT_LOG_H_

#include <cstdint>
#include <optional>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/raft/storage.h"
#include "engine/raft/types.h"

namespace detcd::raft {

// Entries (and a snapshot) not yet handed to stable storage.
class Unstable {
 public:
  std::optional<uint64_t> MaybeFirstIndex() const;
  std::optional<uint64_t> MaybeLastIndex() const;
  std::optional<uint64_t> MaybeTerm(uint64_t i) const;
  void StableTo(uint64_t i, uint64_t t);
  void StableSnapTo(uint64_t i);
  void Restore(const Snapshot& s);
  // The same, sharing the snapshot (a whole store's image is not copied).
  void Restore(std::shared_ptr<const Snapshot> s);
  void TruncateAndAppend(const std::vector<Entry>& ents);
  // The same, moving the entries in (their data is not copied).
  void TruncateAndAppend(std::vector<Entry>&& ents);
  // Entries in [lo, hi); both must lie within the unstable range.
  std::vector<Entry> Slice(uint64_t lo, uint64_t hi) const;

  const std::vector<Entry>& entries() const { return entries_; }
  const std::shared_ptr<const Snapshot>& snapshot() const { return snapshot_; }
  uint64_t offset() const { return offset_; }
  void set_offset(uint64_t o) { offset_ = o; }

 private:
  std::shared_ptr<const Snapshot> snapshot_;
  std::vector<Entry> entries_;
  uint64_t offset_ = 0;  // index of entries_[0]
};

class RaftLog {
 public:
  RaftLog(Storage* storage, uint64_t max_next_ents_size);

  uint64_t FirstIndex() const;
  uint64_t LastIndex() const;
  uint64_t LastTerm() const;
  absl::StatusOr<uint64_t> Term(uint64_t i) const;
  // Term(i), or 0 if i is compacted or beyond the log.
  uint64_t ZeroTermOnError(uint64_t i) const;
  bool MatchTerm(uint64_t i, uint64_t t) const;
  // §5.4.1: is (lasti, term) at least as up-to-date as this log?
  bool IsUpToDate(uint64_t lasti, uint64_t term) const;

  // Follower side of AppendEntries: if entry (index, log_term) matches,
  // appends ents (dropping a conflicting suffix) and advances commit to
  // min(committed, last new index). Returns the last new index, or nullopt
  // on mismatch.
  std::optional<uint64_t> MaybeAppend(uint64_t index, uint64_t log_term,
                                      uint64_t committed,
                                      const std::vector<Entry>& ents);
  uint64_t Append(const std::vector<Entry>& ents);
  uint64_t Append(std::vector<Entry>&& ents);
  // Index of the first entry in ents whose term differs from ours (or that
  // we do not have), or 0 if all match.
  uint64_t FindConflict(const std::vector<Entry>& ents) const;
  // The largest index <= index whose term is <= term, with that term: where
  // a leader's log (with `term` at `index`) and ours can possibly agree.
  std::pair<uint64_t, uint64_t> FindConflictByTerm(uint64_t index,
                                                   uint64_t term) const;

  bool MaybeCommit(uint64_t max_index, uint64_t term);
  void CommitTo(uint64_t tocommit);
  void AppliedTo(uint64_t i);
  void AcceptApplying(uint64_t i);
  void StableTo(uint64_t i, uint64_t t) { unstable_.StableTo(i, t); }
  void StableSnapTo(uint64_t i) { unstable_.StableSnapTo(i); }
  void Restore(const Snapshot& s);
  void Restore(std::shared_ptr<const Snapshot> s);

  const std::vector<Entry>& UnstableEntries() const {
    return unstable_.entries();
  }
  const std::shared_ptr<const Snapshot>& UnstableSnapshot() const {
    return unstable_.snapshot();
  }
  bool HasNextCommittedEnts() const;
  // Committed entries not yet applied or being applied, up to the byte limit.
  std::vector<Entry> NextCommittedEnts() const;
  bool HasPendingSnapshot() const;
  absl::StatusOr<Snapshot> GetSnapshot() const;

  // Entries from i to the end, at most max_bytes (but at least one).
  absl::StatusOr<std::vector<Entry>> EntriesFrom(uint64_t i,
                                                 uint64_t max_bytes) const;
  // Entries in [lo, hi), at most max_bytes (but at least one).
  absl::StatusOr<std::vector<Entry>> Slice(uint64_t lo, uint64_t hi,
                                           uint64_t max_bytes) const;
  std::vector<Entry> AllEntries() const;

  // The last index of the stable prefix: everything before the unstable
  // tail (entries the owner has not reported persisted yet).
  uint64_t StableLastIndex() const;

  uint64_t committed() const { return committed_; }
  uint64_t applied() const { return applied_; }
  uint64_t applying() const { return applying_; }
  Storage* storage() const { return storage_; }

 private:
  absl::Status CheckOutOfBounds(uint64_t lo, uint64_t hi) const;

  Storage* storage_;
  Unstable unstable_;
  uint64_t committed_ = 0;
  uint64_t applying_ = 0;  // highest index handed out in a Ready
  uint64_t applied_ = 0;
  uint64_t max_next_ents_size_;
};

}  // namespace detcd::raft

#endif  // DETCD_ENGINE_RAFT_LOG_H_
