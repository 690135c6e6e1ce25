#include "engine/raft/log.h"

#include <algorithm>

#include "engine/util/check.h"

namespace detcd::raft {

// ---- Unstable ----

std::optional<uint64_t> Unstable::MaybeFirstIndex() const {
  if (snapshot_) return snapshot_->metadata.index + 1;
  return std::nullopt;
}

std::optional<uint64_t> Unstable::MaybeLastIndex() const {
  if (!entries_.empty()) return offset_ + entries_.size() - 1;
  if (snapshot_) return snapshot_->metadata.index;
  return std::nullopt;
}

std::optional<uint64_t> Unstable::MaybeTerm(uint64_t i) const {
  if (i < offset_) {
    if (snapshot_ && snapshot_->metadata.index == i) {
      return snapshot_->metadata.term;
    }
    return std::nullopt;
  }
  auto last = MaybeLastIndex();
  if (!last || i > *last) return std::nullopt;
  return entries_[i - offset_].term;
}

void Unstable::StableTo(uint64_t i, uint64_t t) {
  auto gt = MaybeTerm(i);
  // Only if (i, t) is still in the unstable entries: if it was replaced by
  // a newer append in the meantime, the newer entries stay unstable.
  if (!gt || *gt != t || i < offset_) return;
  entries_.erase(entries_.begin(), entries_.begin() + (i + 1 - offset_));
  offset_ = i + 1;
}

void Unstable::StableSnapTo(uint64_t i) {
  if (snapshot_ && snapshot_->metadata.index == i) snapshot_.reset();
}

void Unstable::Restore(const Snapshot& s) {
  Restore(std::make_shared<const Snapshot>(s));
}

void Unstable::Restore(std::shared_ptr<const Snapshot> s) {
  offset_ = s->metadata.index + 1;
  entries_.clear();
  snapshot_ = std::move(s);
}

void Unstable::TruncateAndAppend(const std::vector<Entry>& ents) {
  TruncateAndAppend(std::vector<Entry>(ents));  // payloads are shared
}

void Unstable::TruncateAndAppend(std::vector<Entry>&& ents) {
  if (ents.empty()) return;
  uint64_t after = ents[0].index;
  if (after == offset_ + entries_.size()) {
    entries_.insert(entries_.end(), std::make_move_iterator(ents.begin()),
                    std::make_move_iterator(ents.end()));
  } else if (after <= offset_) {
    // Replaces everything unstable; the owner truncates storage too when it
    // persists these entries.
    offset_ = after;
    entries_ = std::move(ents);
  } else {
    entries_.resize(after - offset_);
    entries_.insert(entries_.end(), std::make_move_iterator(ents.begin()),
                    std::make_move_iterator(ents.end()));
  }
}

std::vector<Entry> Unstable::Slice(uint64_t lo, uint64_t hi) const {
  DETCD_CHECK(lo <= hi);
  DETCD_CHECK_MSG(offset_ <= lo && hi <= offset_ + entries_.size(),
                  "unstable slice out of bounds");
  return std::vector<Entry>(entries_.begin() + (lo - offset_),
                            entries_.begin() + (hi - offset_));
}

// ---- RaftLog ----

RaftLog::RaftLog(Storage* storage, uint64_t max_next_ents_size)
    : storage_(storage), max_next_ents_size_(max_next_ents_size) {
  DETCD_CHECK(storage != nullptr);
  uint64_t first = storage->FirstIndex();
  uint64_t last = storage->LastIndex();
  unstable_.set_offset(last + 1);
  committed_ = first - 1;
  applying_ = first - 1;
  applied_ = first - 1;
}

uint64_t RaftLog::FirstIndex() const {
  if (auto i = unstable_.MaybeFirstIndex()) return *i;
  return storage_->FirstIndex();
}

uint64_t RaftLog::LastIndex() const {
  if (auto i = unstable_.MaybeLastIndex()) return *i;
  return storage_->LastIndex();
}

uint64_t RaftLog::StableLastIndex() const {
  // A pending snapshot replaces the stored log, of which only the part its
  // previous snapshot covers is sure to stay (conservative: no leader has a
  // pending snapshot).
  if (unstable_.snapshot()) return storage_->FirstIndex() - 1;
  if (!unstable_.entries().empty()) return unstable_.offset() - 1;
  return storage_->LastIndex();
}

uint64_t RaftLog::LastTerm() const {
  auto t = Term(LastIndex());
  DETCD_CHECK_MSG(t.ok(), "term of the last entry must be known");
  return *t;
}

absl::StatusOr<uint64_t> RaftLog::Term(uint64_t i) const {
  // The valid range is [FirstIndex()-1, LastIndex()].
  uint64_t dummy = FirstIndex() - 1;
  if (i < dummy) return ErrCompacted();
  if (i > LastIndex()) return ErrUnavailable();
  if (auto t = unstable_.MaybeTerm(i)) return *t;
  auto t = storage_->Term(i);
  if (t.ok() || IsErrCompacted(t.status()) || IsErrUnavailable(t.status())) {
    return t;
  }
  DETCD_CHECK_MSG(false, "unexpected storage error");
  return t;
}

uint64_t RaftLog::ZeroTermOnError(uint64_t i) const {
  auto t = Term(i);
  return t.ok() ? *t : 0;
}

bool RaftLog::MatchTerm(uint64_t i, uint64_t t) const {
  auto lt = Term(i);
  return lt.ok() && *lt == t;
}

bool RaftLog::IsUpToDate(uint64_t lasti, uint64_t term) const {
  uint64_t lt = LastTerm();
  return term > lt || (term == lt && lasti >= LastIndex());
}

std::optional<uint64_t> RaftLog::MaybeAppend(uint64_t index, uint64_t log_term,
                                             uint64_t committed,
                                             const std::vector<Entry>& ents) {
  if (!MatchTerm(index, log_term)) return std::nullopt;
  uint64_t lastnewi = index + ents.size();
  uint64_t ci = FindConflict(ents);
  if (ci != 0) {
    DETCD_CHECK_MSG(ci > committed_, "entry conflicts with a committed entry");
    uint64_t offset = index + 1;
    DETCD_CHECK(ci - offset <= ents.size());
    Append(std::vector<Entry>(ents.begin() + (ci - offset), ents.end()));
  }
  CommitTo(std::min(committed, lastnewi));
  return lastnewi;
}

uint64_t RaftLog::Append(const std::vector<Entry>& ents) {
  return Append(std::vector<Entry>(ents));
}

uint64_t RaftLog::Append(std::vector<Entry>&& ents) {
  if (ents.empty()) return LastIndex();
  DETCD_CHECK_MSG(ents[0].index - 1 >= committed_,
                  "cannot overwrite committed entries");
  unstable_.TruncateAndAppend(std::move(ents));
  return LastIndex();
}

uint64_t RaftLog::FindConflict(const std::vector<Entry>& ents) const {
  for (const auto& e : ents) {
    if (!MatchTerm(e.index, e.term)) return e.index;
  }
  return 0;
}

std::pair<uint64_t, uint64_t> RaftLog::FindConflictByTerm(uint64_t index,
                                                          uint64_t term) const {
  for (; index > 0; --index) {
    auto t = Term(index);
    if (!t.ok()) return {index, 0};  // compacted or unknown: cannot do better
    if (*t <= term) return {index, *t};
  }
  return {0, 0};
}

bool RaftLog::MaybeCommit(uint64_t max_index, uint64_t term) {
  if (max_index > committed_ && ZeroTermOnError(max_index) == term) {
    CommitTo(max_index);
    return true;
  }
  return false;
}

void RaftLog::CommitTo(uint64_t tocommit) {
  if (committed_ < tocommit) {
    DETCD_CHECK_MSG(tocommit <= LastIndex(),
                    "commit index beyond the last index: log corrupt or "
                    "truncated?");
    committed_ = tocommit;
  }
}

void RaftLog::AppliedTo(uint64_t i) {
  if (i == 0) return;
  DETCD_CHECK_MSG(committed_ >= i && i >= applied_, "applied out of range");
  applied_ = i;
  applying_ = std::max(applying_, i);
}

void RaftLog::AcceptApplying(uint64_t i) {
  DETCD_CHECK(i <= committed_);
  applying_ = std::max(applying_, i);
}

void RaftLog::Restore(const Snapshot& s) {
  Restore(std::make_shared<const Snapshot>(s));
}

void RaftLog::Restore(std::shared_ptr<const Snapshot> s) {
  committed_ = s->metadata.index;
  unstable_.Restore(std::move(s));
}

bool RaftLog::HasNextCommittedEnts() const {
  if (HasPendingSnapshot()) return false;  // apply the snapshot first
  uint64_t lo = std::max(applying_ + 1, FirstIndex());
  return committed_ + 1 > lo;
}

std::vector<Entry> RaftLog::NextCommittedEnts() const {
  if (!HasNextCommittedEnts()) return {};
  uint64_t lo = std::max(applying_ + 1, FirstIndex());
  auto ents = Slice(lo, committed_ + 1, max_next_ents_size_);
  DETCD_CHECK_MSG(ents.ok(), "committed entries must be readable");
  return *std::move(ents);
}

bool RaftLog::HasPendingSnapshot() const {
  return unstable_.snapshot() != nullptr;
}

absl::StatusOr<Snapshot> RaftLog::GetSnapshot() const {
  if (unstable_.snapshot()) return *unstable_.snapshot();
  return storage_->GetSnapshot();
}

absl::StatusOr<std::vector<Entry>> RaftLog::EntriesFrom(
    uint64_t i, uint64_t max_bytes) const {
  if (i > LastIndex()) return std::vector<Entry>{};
  return Slice(i, LastIndex() + 1, max_bytes);
}

std::vector<Entry> RaftLog::AllEntries() const {
  auto ents = EntriesFrom(FirstIndex(), UINT64_MAX);
  if (ents.ok()) return *std::move(ents);
  // A concurrent compaction cannot happen here (single-threaded); retrying
  // is only meaningful with a racing storage.
  DETCD_CHECK_MSG(false, "reading the whole log failed");
  return {};
}

absl::Status RaftLog::CheckOutOfBounds(uint64_t lo, uint64_t hi) const {
  DETCD_CHECK_MSG(lo <= hi, "invalid slice");
  uint64_t fi = FirstIndex();
  if (lo < fi) return ErrCompacted();
  DETCD_CHECK_MSG(hi <= LastIndex() + 1, "slice out of bound");
  return absl::OkStatus();
}

absl::StatusOr<std::vector<Entry>> RaftLog::Slice(uint64_t lo, uint64_t hi,
                                                  uint64_t max_bytes) const {
  if (auto s = CheckOutOfBounds(lo, hi); !s.ok()) return s;
  if (lo == hi) return std::vector<Entry>{};
  std::vector<Entry> ents;
  uint64_t uoff = unstable_.offset();
  if (lo < uoff) {
    auto stored = storage_->Entries(lo, std::min(hi, uoff), max_bytes);
    if (!stored.ok()) {
      if (IsErrCompacted(stored.status())) return stored.status();
      DETCD_CHECK_MSG(false, "entries unavailable from storage");
    }
    ents = *std::move(stored);
    // Storage stopped early because of the byte limit.
    if (ents.size() < std::min(hi, uoff) - lo) return ents;
  }
  if (hi > uoff) {
    auto u = unstable_.Slice(std::max(lo, uoff), hi);
    ents.insert(ents.end(), std::make_move_iterator(u.begin()),
                std::make_move_iterator(u.end()));
  }
  // Apply the byte limit, keeping at least one entry.
  uint64_t size = 0;
  size_t n = 0;
  for (; n < ents.size(); ++n) {
    size += EntrySize(ents[n]);
    if (n > 0 && size > max_bytes) break;
  }
  ents.resize(n);
  return ents;
}

}  // namespace detcd::raft
