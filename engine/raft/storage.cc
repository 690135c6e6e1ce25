#include "engine/raft/storage.h"

#include <algorithm>

#include "engine/util/check.h"

namespace detcd::raft {

absl::Status ErrCompacted() {
  return absl::OutOfRangeError(
      "requested index is unavailable due to compaction");
}
absl::Status ErrUnavailable() {
  return absl::NotFoundError("requested entry at index is unavailable");
}
absl::Status ErrSnapshotTemporarilyUnavailable() {
  return absl::UnavailableError("snapshot is temporarily unavailable");
}
bool IsErrCompacted(const absl::Status& s) {
  return s.code() == absl::StatusCode::kOutOfRange;
}
bool IsErrUnavailable(const absl::Status& s) {
  return s.code() == absl::StatusCode::kNotFound;
}

namespace {
absl::Status ErrSnapOutOfDate() {
  return absl::FailedPreconditionError(
      "requested index is older than the existing snapshot");
}

// Trims ents to at most max_bytes, keeping at least one entry.
void LimitSize(std::vector<Entry>* ents, uint64_t max_bytes) {
  if (ents->empty()) return;
  uint64_t size = EntrySize((*ents)[0]);
  size_t n = 1;
  for (; n < ents->size(); ++n) {
    size += EntrySize((*ents)[n]);
    if (size > max_bytes) break;
  }
  ents->resize(n);
}
}  // namespace

MemoryStorage::MemoryStorage() { ents_.push_back(Entry{}); }

absl::StatusOr<std::vector<Entry>> MemoryStorage::Entries(
    uint64_t lo, uint64_t hi, uint64_t max_bytes) const {
  uint64_t offset = ents_[0].index;
  if (lo <= offset) return ErrCompacted();
  DETCD_CHECK_MSG(hi <= LastIndex() + 1, "entries' hi is out of bound");
  if (ents_.size() == 1) return ErrUnavailable();  // only the dummy entry
  std::vector<Entry> out(ents_.begin() + (lo - offset),
                         ents_.begin() + (hi - offset));
  LimitSize(&out, max_bytes);
  return out;
}

absl::StatusOr<uint64_t> MemoryStorage::Term(uint64_t i) const {
  uint64_t offset = ents_[0].index;
  if (i < offset) return ErrCompacted();
  if (i - offset >= ents_.size()) return ErrUnavailable();
  return ents_[i - offset].term;
}

absl::Status MemoryStorage::ApplySnapshot(const Snapshot& snap) {
  if (snapshot_.metadata.index >= snap.metadata.index) {
    return ErrSnapOutOfDate();
  }
  snapshot_.metadata = snap.metadata;
  snapshot_.data = keep_snapshot_data_ ? snap.data : std::string();
  ents_.assign(1, Entry{snap.metadata.term, snap.metadata.index,
                        EntryType::kNormal, {}});
  bytes_ = 0;
  return absl::OkStatus();
}

absl::StatusOr<Snapshot> MemoryStorage::CreateSnapshot(uint64_t i,
                                                       const ConfState* cs,
                                                       std::string data) {
  if (i <= snapshot_.metadata.index) return ErrSnapOutOfDate();
  DETCD_CHECK_MSG(i <= LastIndex(), "snapshot index is out of bound");
  uint64_t offset = ents_[0].index;
  // Compacted without a snapshot at or beyond i: the term of i is gone (and
  // ents_[i - offset] would read out of bounds).
  if (i < offset) return ErrCompacted();
  snapshot_.metadata.index = i;
  snapshot_.metadata.term = ents_[i - offset].term;
  if (cs != nullptr) snapshot_.metadata.conf_state = *cs;
  if (keep_snapshot_data_) {
    snapshot_.data = std::move(data);
    return snapshot_;
  }
  // The caller gets the image (to save it); the storage keeps none.
  snapshot_.data = std::string();
  Snapshot out;
  out.metadata = snapshot_.metadata;
  out.data = std::move(data);
  return out;
}

absl::Status MemoryStorage::Compact(uint64_t compact_index) {
  uint64_t offset = ents_[0].index;
  if (compact_index <= offset) return ErrCompacted();
  DETCD_CHECK_MSG(compact_index <= LastIndex(), "compact is out of bound");
  uint64_t i = compact_index - offset;
  std::vector<Entry> ents;
  ents.reserve(ents_.size() - i);
  for (size_t k = 1; k <= i; ++k) bytes_ -= EntrySize(ents_[k]);
  ents.push_back(Entry{ents_[i].term, ents_[i].index, EntryType::kNormal, {}});
  for (size_t k = i + 1; k < ents_.size(); ++k) {
    ents.push_back(std::move(ents_[k]));
  }
  ents_ = std::move(ents);
  return absl::OkStatus();
}

absl::Status MemoryStorage::Append(const std::vector<Entry>& entries) {
  return AppendImpl(entries, nullptr);
}

absl::Status MemoryStorage::AppendMoving(std::vector<Entry>* entries) {
  return AppendImpl(*entries, entries);
}

absl::Status MemoryStorage::AppendImpl(const std::vector<Entry>& entries,
                                       std::vector<Entry>* take) {
  if (entries.empty()) return absl::OkStatus();
  uint64_t first = FirstIndex();
  uint64_t last = entries.back().index;
  if (last < first) return absl::OkStatus();  // all already compacted
  size_t skip = 0;
  if (first > entries[0].index) skip = first - entries[0].index;
  uint64_t start = entries[skip].index;
  DETCD_CHECK_MSG(start <= LastIndex() + 1, "missing log entries");
  const size_t keep = start - ents_[0].index;
  for (size_t k = keep; k < ents_.size(); ++k) bytes_ -= EntrySize(ents_[k]);
  ents_.resize(keep);  // truncate conflicting suffix
  for (size_t k = skip; k < entries.size(); ++k) {
    bytes_ += EntrySize(entries[k]);
    if (take == nullptr) {
      ents_.push_back(entries[k]);
    } else {
      Entry& e = (*take)[k];
      ents_.push_back(Entry{e.term, e.index, e.type, std::move(e.data)});
    }
  }
  return absl::OkStatus();
}

void MemoryStorage::ReleaseApplied(uint64_t applied, uint64_t keep_bytes) {
  if (bytes_ - bytes_ / 5 <= keep_bytes) return;  // within keep_bytes * 5/4
  const uint64_t offset = ents_[0].index;
  const uint64_t last = std::min(applied, LastIndex());
  uint64_t c = offset;
  uint64_t left = bytes_;
  while (c < last && left > keep_bytes) {
    ++c;
    left -= EntrySize(ents_[c - offset]);
  }
  // Each compaction copies the entries left: worth it only for a good
  // share of keep_bytes (not when most of the log waits to be applied).
  if (c == offset || bytes_ - left < keep_bytes / 8) return;
  DETCD_CHECK(Compact(c).ok());
}

}  // namespace detcd::raft
