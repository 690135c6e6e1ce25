// The stable log as Raft reads it (LogCabin Storage/Log.h, etcd raft
// Storage). Raft only reads through this interface; the application writes
// to it when it handles a Ready (append entries, set hard state, apply
// snapshots) and compacts it after taking a snapshot.
#ifndef DETCD_ENGINE_RAFT_STORAGE_H_
#define DETCD_ENGINE_RAFT_STORAGE_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/raft/types.h"

namespace detcd::raft {

// Error conditions, as canonical status codes with fixed messages.
//   Entries/Term below FirstIndex():        kOutOfRange  "requested index is unavailable due to compaction"
//   Entries/Term above LastIndex():         kNotFound    "requested entry at index is unavailable"
//   Snapshot() not ready yet:               kUnavailable "snapshot is temporarily unavailable"
absl::Status ErrCompacted();
absl::Status ErrUnavailable();
absl::Status ErrSnapshotTemporarilyUnavailable();
bool IsErrCompacted(const absl::Status& s);
bool IsErrUnavailable(const absl::Status& s);

class Storage {
 public:
  virtual ~Storage() = default;
  // The persisted HardState and the ConfState of the latest snapshot plus
  // applied conf changes, as of the last restart.
  virtual HardState InitialHardState() const = 0;
  virtual ConfState InitialConfState() const = 0;
  // Entries in [lo, hi), at most max_bytes in total but always at least one
  // entry if any is in range.
  virtual absl::StatusOr<std::vector<Entry>> Entries(uint64_t lo, uint64_t hi,
                                                     uint64_t max_bytes) const = 0;
  // Term of entry i, for i in [FirstIndex()-1, LastIndex()].
  virtual absl::StatusOr<uint64_t> Term(uint64_t i) const = 0;
  virtual uint64_t FirstIndex() const = 0;
  virtual uint64_t LastIndex() const = 0;
  virtual absl::StatusOr<Snapshot> GetSnapshot() const = 0;
};

// An in-memory Storage: the unit tests' storage, and the Node's read cache
// over the WAL. ents_[0] is a dummy entry holding the index and term of the
// snapshot (or 0/0).
class MemoryStorage : public Storage {
 public:
  MemoryStorage();

  HardState InitialHardState() const override { return hard_state_; }
  ConfState InitialConfState() const override {
    return snapshot_.metadata.conf_state;
  }
  absl::StatusOr<std::vector<Entry>> Entries(uint64_t lo, uint64_t hi,
                                             uint64_t max_bytes) const override;
  absl::StatusOr<uint64_t> Term(uint64_t i) const override;
  uint64_t FirstIndex() const override { return ents_[0].index + 1; }
  uint64_t LastIndex() const override {
    return ents_[0].index + ents_.size() - 1;
  }
  absl::StatusOr<Snapshot> GetSnapshot() const override { return snapshot_; }

  void SetHardState(const HardState& hs) { hard_state_ = hs; }
  // Bootstrap of a new cluster: the membership every founding member starts
  // with, recorded as the conf state of the empty snapshot at index 0.
  void SetInitialConfState(const ConfState& cs) {
    snapshot_.metadata.conf_state = cs;
  }
  // Replaces the contents with a snapshot. Fails with ErrSnapshotOutOfDate if
  // the snapshot is older than the current one.
  absl::Status ApplySnapshot(const Snapshot& snap);
  // Whether ApplySnapshot and CreateSnapshot keep the state image in
  // memory (default yes; GetSnapshot returns it). A storage whose owner
  // makes a fresh image on demand (the Node's) turns it off: with a million
  // keys the image is a few hundred MiB that would otherwise stay alive
  // next to the state it was restored into. The metadata is always kept.
  void set_keep_snapshot_data(bool keep) {
    keep_snapshot_data_ = keep;
    if (!keep) snapshot_.data = std::string();
  }
  // Makes a snapshot at index i (<= LastIndex) with the given state image.
  // Fails with ErrSnapshotOutOfDate if i is not beyond the current snapshot,
  // and with ErrCompacted if the log was compacted past i.
  absl::StatusOr<Snapshot> CreateSnapshot(uint64_t i, const ConfState* cs,
                                          std::string data);
  // Discards entries before compact_index. It is the application's job not
  // to compact beyond its applied index.
  absl::Status Compact(uint64_t compact_index);
  // Appends entries, truncating any conflicting suffix. The entries must be
  // contiguous and must not leave a gap after LastIndex().
  absl::Status Append(const std::vector<Entry>& entries);
  // The same, moving each entry's data out of *entries (their terms and
  // indexes stay): a Ready's entries once they are persisted.
  absl::Status AppendMoving(std::vector<Entry>* entries);

  // Bytes of the entries held (EntrySize each; the dummy entry is free).
  uint64_t entries_bytes() const { return bytes_; }
  // Bounds the memory of a log whose entries are also on disk (the Node's,
  // over the WAL): once the entries held pass keep_bytes by a quarter,
  // compacts the oldest of them until at most keep_bytes remain, but never
  // beyond `applied` (nor LastIndex()), so what is not applied yet always
  // stays. Why: between snapshots the log of a loaded member (1M keys in
  // txns of 100 puts is 280 MiB of entries) otherwise stays in memory next
  // to the state it was applied to; a follower that needs a released entry
  // gets a snapshot instead, as after any compaction. The quarter of slack
  // makes the compaction's copy of the remaining entries amortized.
  void ReleaseApplied(uint64_t applied, uint64_t keep_bytes);

  // For tests: the conf state attached to the next snapshot by default.
  const Snapshot& snapshot() const { return snapshot_; }

 private:
  absl::Status AppendImpl(const std::vector<Entry>& entries,
                          std::vector<Entry>* take);
  HardState hard_state_;
  bool keep_snapshot_data_ = true;
  Snapshot snapshot_;
  std::vector<Entry> ents_;
  uint64_t bytes_ = 0;  // EntrySize of ents_[1..]
};

}  // namespace detcd::raft

#endif  // DETCD_ENGINE_RAFT_STORAGE_H_
