// RaftLog and Unstable: the log as Raft sees it, stable storage plus an
// unpersisted tail (cases in the spirit of etcd raft's log_test.go and
// log_unstable_test.go; our own code).
#include "engine/raft/log.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <optional>
#include <utility>
#include <vector>

#include "engine/raft/storage.h"

namespace detcd::raft {
namespace {

using IndexTerms = std::vector<std::pair<uint64_t, uint64_t>>;

Entry E(uint64_t index, uint64_t term, std::string data = "") {
  return Entry{term, index, EntryType::kNormal, std::move(data)};
}

IndexTerms IT(const std::vector<Entry>& es) {
  IndexTerms out;
  for (const Entry& e : es) out.emplace_back(e.index, e.term);
  return out;
}

Snapshot Snap(uint64_t index, uint64_t term) {
  Snapshot s;
  s.metadata.index = index;
  s.metadata.term = term;
  s.metadata.conf_state.voters = {1, 2, 3};
  return s;
}

// ---- Unstable ----

Unstable MakeUnstable(std::optional<Snapshot> snap, uint64_t offset,
                      const std::vector<Entry>& ents) {
  Unstable u;
  if (snap) u.Restore(*snap);
  u.set_offset(offset);
  u.TruncateAndAppend(ents);
  return u;
}

TEST(UnstableTest, MaybeFirstIndex) {
  // Without a snapshot the unstable part says nothing about the first index.
  EXPECT_EQ(MakeUnstable(std::nullopt, 5, {E(5, 1)}).MaybeFirstIndex(),
            std::nullopt);
  EXPECT_EQ(Unstable().MaybeFirstIndex(), std::nullopt);
  EXPECT_EQ(MakeUnstable(Snap(4, 1), 5, {E(5, 1)}).MaybeFirstIndex(), 5u);
  EXPECT_EQ(MakeUnstable(Snap(4, 1), 5, {}).MaybeFirstIndex(), 5u);
}

TEST(UnstableTest, MaybeLastIndex) {
  EXPECT_EQ(MakeUnstable(std::nullopt, 5, {E(5, 1)}).MaybeLastIndex(), 5u);
  EXPECT_EQ(MakeUnstable(Snap(4, 1), 5, {E(5, 1)}).MaybeLastIndex(), 5u);
  EXPECT_EQ(MakeUnstable(Snap(4, 1), 5, {}).MaybeLastIndex(), 4u);
  EXPECT_EQ(Unstable().MaybeLastIndex(), std::nullopt);
}

TEST(UnstableTest, MaybeTerm) {
  struct Case {
    std::optional<Snapshot> snap;
    uint64_t offset;
    std::vector<Entry> ents;
    uint64_t index;
    std::optional<uint64_t> want;
  };
  std::vector<Case> cases = {
      // Entries only.
      {std::nullopt, 5, {E(5, 1)}, 5, 1},
      {std::nullopt, 5, {E(5, 1)}, 6, std::nullopt},
      {std::nullopt, 5, {E(5, 1)}, 4, std::nullopt},
      // Snapshot and entries.
      {Snap(4, 1), 5, {E(5, 1)}, 5, 1},
      {Snap(4, 1), 5, {E(5, 1)}, 6, std::nullopt},
      {Snap(4, 1), 5, {E(5, 1)}, 4, 1},
      {Snap(4, 1), 5, {E(5, 1)}, 3, std::nullopt},
      // Snapshot only.
      {Snap(4, 1), 5, {}, 5, std::nullopt},
      {Snap(4, 1), 5, {}, 4, 1},
      {std::nullopt, 0, {}, 5, std::nullopt},
  };
  for (size_t k = 0; k < cases.size(); ++k) {
    const Case& c = cases[k];
    Unstable u = MakeUnstable(c.snap, c.offset, c.ents);
    EXPECT_EQ(u.MaybeTerm(c.index), c.want) << "case " << k;
  }
}

TEST(UnstableTest, Restore) {
  Unstable u = MakeUnstable(Snap(4, 1), 5, {E(5, 1)});
  u.Restore(Snap(6, 2));
  EXPECT_EQ(u.offset(), 7u);
  EXPECT_TRUE(u.entries().empty());
  ASSERT_TRUE(u.snapshot() != nullptr);
  EXPECT_EQ(u.snapshot()->metadata.index, 6u);
  EXPECT_EQ(u.MaybeTerm(6), 2u);
}

TEST(UnstableTest, StableTo) {
  struct Case {
    std::optional<Snapshot> snap;
    uint64_t offset;
    std::vector<Entry> ents;
    uint64_t index, term;
    uint64_t woffset;
    size_t wlen;
  };
  std::vector<Case> cases = {
      {std::nullopt, 0, {}, 5, 1, 0, 0},
      {std::nullopt, 5, {E(5, 1)}, 5, 1, 6, 0},  // stable to the first
      {std::nullopt, 5, {E(5, 1), E(6, 1)}, 5, 1, 6, 1},
      {std::nullopt, 6, {E(6, 2)}, 6, 1, 6, 1},  // term mismatch
      {std::nullopt, 5, {E(5, 1)}, 4, 1, 5, 1},  // old index
      {std::nullopt, 5, {E(5, 1)}, 4, 2, 5, 1},
      // With a snapshot.
      {Snap(4, 1), 5, {E(5, 1)}, 5, 1, 6, 0},
      {Snap(4, 1), 5, {E(5, 1), E(6, 1)}, 5, 1, 6, 1},
      {Snap(5, 1), 6, {E(6, 2)}, 6, 1, 6, 1},  // term mismatch
      {Snap(4, 1), 5, {E(5, 1)}, 4, 1, 5, 1},  // the snapshot's index
      {Snap(4, 2), 5, {E(5, 2)}, 4, 1, 5, 1},
  };
  for (size_t k = 0; k < cases.size(); ++k) {
    const Case& c = cases[k];
    Unstable u = MakeUnstable(c.snap, c.offset, c.ents);
    u.StableTo(c.index, c.term);
    EXPECT_EQ(u.offset(), c.woffset) << "case " << k;
    EXPECT_EQ(u.entries().size(), c.wlen) << "case " << k;
  }
}

TEST(UnstableTest, StableSnapTo) {
  Unstable u = MakeUnstable(Snap(4, 1), 5, {E(5, 1)});
  u.StableSnapTo(3);  // not the pending snapshot
  EXPECT_TRUE(u.snapshot() != nullptr);
  u.StableSnapTo(4);
  EXPECT_FALSE(u.snapshot() != nullptr);
  EXPECT_EQ(IT(u.entries()), (IndexTerms{{5, 1}}));
}

TEST(UnstableTest, TruncateAndAppend) {
  struct Case {
    uint64_t offset;
    std::vector<Entry> ents;
    std::vector<Entry> toappend;
    uint64_t woffset;
    IndexTerms want;
  };
  std::vector<Case> cases = {
      // Append to the end.
      {5, {E(5, 1)}, {E(6, 1), E(7, 1)}, 5, {{5, 1}, {6, 1}, {7, 1}}},
      // Replace everything unstable.
      {5, {E(5, 1)}, {E(5, 2), E(6, 2)}, 5, {{5, 2}, {6, 2}}},
      {5, {E(5, 1)}, {E(4, 2), E(5, 2), E(6, 2)}, 4, {{4, 2}, {5, 2}, {6, 2}}},
      // Truncate in the middle, then append.
      {5, {E(5, 1), E(6, 1), E(7, 1)}, {E(6, 2)}, 5, {{5, 1}, {6, 2}}},
      {5,
       {E(5, 1), E(6, 1), E(7, 1)},
       {E(7, 2), E(8, 2)},
       5,
       {{5, 1}, {6, 1}, {7, 2}, {8, 2}}},
      // Nothing to append.
      {5, {E(5, 1)}, {}, 5, {{5, 1}}},
  };
  for (size_t k = 0; k < cases.size(); ++k) {
    const Case& c = cases[k];
    Unstable u = MakeUnstable(std::nullopt, c.offset, c.ents);
    u.TruncateAndAppend(c.toappend);
    EXPECT_EQ(u.offset(), c.woffset) << "case " << k;
    EXPECT_EQ(IT(u.entries()), c.want) << "case " << k;
  }
}

TEST(UnstableTest, Slice) {
  Unstable u = MakeUnstable(std::nullopt, 5, {E(5, 1), E(6, 1), E(7, 2)});
  EXPECT_EQ(IT(u.Slice(5, 8)), (IndexTerms{{5, 1}, {6, 1}, {7, 2}}));
  EXPECT_EQ(IT(u.Slice(6, 7)), (IndexTerms{{6, 1}}));
  EXPECT_TRUE(u.Slice(8, 8).empty());
  EXPECT_DEATH((void)u.Slice(4, 6), "unstable slice out of bounds");
  EXPECT_DEATH((void)u.Slice(6, 9), "unstable slice out of bounds");
}

// ---- RaftLog ----

TEST(RaftLogTest, NewLogFromStorage) {
  MemoryStorage ms;
  ASSERT_TRUE(ms.ApplySnapshot(Snap(1000, 1000)).ok());
  ASSERT_TRUE(ms.Append({E(1001, 1000), E(1002, 1001)}).ok());
  RaftLog log(&ms, UINT64_MAX);
  EXPECT_EQ(log.FirstIndex(), 1001u);
  EXPECT_EQ(log.LastIndex(), 1002u);
  EXPECT_EQ(log.LastTerm(), 1001u);
  // Everything up to the snapshot is committed and applied.
  EXPECT_EQ(log.committed(), 1000u);
  EXPECT_EQ(log.applied(), 1000u);
  EXPECT_EQ(log.applying(), 1000u);
  EXPECT_EQ(*log.Term(1000), 1000u);
  EXPECT_TRUE(log.UnstableEntries().empty());
  EXPECT_FALSE(log.HasPendingSnapshot());
  EXPECT_EQ(log.GetSnapshot()->metadata.index, 1000u);
}

TEST(RaftLogTest, FindConflict) {
  std::vector<Entry> prev = {E(1, 1), E(2, 2), E(3, 3)};
  struct Case {
    std::vector<Entry> ents;
    uint64_t want;
  };
  std::vector<Case> cases = {
      // No conflict, empty.
      {{}, 0},
      // No conflict.
      {{E(1, 1), E(2, 2), E(3, 3)}, 0},
      {{E(2, 2), E(3, 3)}, 0},
      {{E(3, 3)}, 0},
      // No conflict, but new entries.
      {{E(1, 1), E(2, 2), E(3, 3), E(4, 4), E(5, 4)}, 4},
      {{E(2, 2), E(3, 3), E(4, 4), E(5, 4)}, 4},
      {{E(3, 3), E(4, 4), E(5, 4)}, 4},
      {{E(4, 4), E(5, 4)}, 4},
      // Conflicts with existing entries.
      {{E(1, 4), E(2, 4)}, 1},
      {{E(2, 1), E(3, 4), E(4, 4)}, 2},
      {{E(3, 1), E(4, 2), E(5, 4), E(6, 4)}, 3},
  };
  for (size_t k = 0; k < cases.size(); ++k) {
    MemoryStorage ms;
    RaftLog log(&ms, UINT64_MAX);
    log.Append(prev);
    EXPECT_EQ(log.FindConflict(cases[k].ents), cases[k].want) << "case " << k;
  }
}

TEST(RaftLogTest, FindConflictByTerm) {
  MemoryStorage ms;
  ASSERT_TRUE(
      ms.Append({E(1, 1), E(2, 1), E(3, 2), E(4, 2), E(5, 5), E(6, 5)}).ok());
  RaftLog log(&ms, UINT64_MAX);
  using P = std::pair<uint64_t, uint64_t>;
  EXPECT_EQ(log.FindConflictByTerm(6, 5), (P{6, 5}));
  EXPECT_EQ(log.FindConflictByTerm(6, 6), (P{6, 5}));
  EXPECT_EQ(log.FindConflictByTerm(6, 4), (P{4, 2}));
  EXPECT_EQ(log.FindConflictByTerm(5, 3), (P{4, 2}));
  EXPECT_EQ(log.FindConflictByTerm(6, 1), (P{2, 1}));
  EXPECT_EQ(log.FindConflictByTerm(3, 2), (P{3, 2}));
  EXPECT_EQ(log.FindConflictByTerm(6, 0), (P{0, 0}));
  EXPECT_EQ(log.FindConflictByTerm(0, 0), (P{0, 0}));

  // Below the first index the search stops: the compacted terms are
  // unknown. The snapshot's own index still has a known term.
  MemoryStorage cs;
  ASSERT_TRUE(
      cs.Append({E(1, 1), E(2, 1), E(3, 2), E(4, 2), E(5, 5), E(6, 5)}).ok());
  ASSERT_TRUE(cs.Compact(3).ok());
  RaftLog clog(&cs, UINT64_MAX);
  EXPECT_EQ(clog.FindConflictByTerm(6, 3), (P{4, 2}));
  EXPECT_EQ(clog.FindConflictByTerm(6, 2), (P{4, 2}));
  EXPECT_EQ(clog.FindConflictByTerm(6, 1), (P{2, 0}));
  EXPECT_EQ(clog.FindConflictByTerm(3, 2), (P{3, 2}));
}

TEST(RaftLogTest, IsUpToDate) {
  MemoryStorage ms;
  RaftLog log(&ms, UINT64_MAX);
  log.Append({E(1, 1), E(2, 2), E(3, 3)});
  const uint64_t last = log.LastIndex();
  struct Case {
    uint64_t lasti, term;
    bool want;
  };
  for (const Case& c : std::vector<Case>{
           // Greater term wins regardless of index.
           {last - 1, 4, true},
           {last, 4, true},
           {last + 1, 4, true},
           // Smaller term loses regardless of index.
           {last - 1, 2, false},
           {last, 2, false},
           {last + 1, 2, false},
           // Equal term: the longer (or equal) log wins.
           {last - 1, 3, false},
           {last, 3, true},
           {last + 1, 3, true},
       }) {
    EXPECT_EQ(log.IsUpToDate(c.lasti, c.term), c.want)
        << c.lasti << "/" << c.term;
  }
}

TEST(RaftLogTest, Append) {
  struct Case {
    std::vector<Entry> ents;
    uint64_t windex;
    IndexTerms wents;
    uint64_t wunstable;
  };
  std::vector<Case> cases = {
      {{}, 2, {{1, 1}, {2, 2}}, 3},
      {{E(3, 2)}, 3, {{1, 1}, {2, 2}, {3, 2}}, 3},
      // Conflicts with index 1: replaces the stable entries too.
      {{E(1, 2)}, 1, {{1, 2}}, 1},
      // Conflicts with index 2.
      {{E(2, 3), E(3, 3)}, 3, {{1, 1}, {2, 3}, {3, 3}}, 2},
  };
  for (size_t k = 0; k < cases.size(); ++k) {
    MemoryStorage ms;
    ASSERT_TRUE(ms.Append({E(1, 1), E(2, 2)}).ok());
    RaftLog log(&ms, UINT64_MAX);
    EXPECT_EQ(log.Append(cases[k].ents), cases[k].windex) << "case " << k;
    EXPECT_EQ(IT(log.AllEntries()), cases[k].wents) << "case " << k;
    const auto& u = log.UnstableEntries();
    uint64_t first_unstable = u.empty() ? log.LastIndex() + 1 : u[0].index;
    EXPECT_EQ(first_unstable, cases[k].wunstable) << "case " << k;
  }
}

TEST(RaftLogTest, AppendBelowCommitDies) {
  MemoryStorage ms;
  ASSERT_TRUE(ms.Append({E(1, 1), E(2, 1), E(3, 1)}).ok());
  RaftLog log(&ms, UINT64_MAX);
  log.CommitTo(2);
  EXPECT_DEATH(log.Append({E(2, 2)}), "cannot overwrite committed entries");
  // Right after the commit index is fine.
  EXPECT_EQ(log.Append({E(3, 2)}), 3u);
}

// MaybeAppend is the follower's AppendEntries: match, truncate conflicts,
// append, advance commit (etcd's TestLogMaybeAppend).
TEST(RaftLogTest, MaybeAppend) {
  const std::vector<Entry> prev = {E(1, 1), E(2, 2), E(3, 3)};
  const uint64_t li = 3, lt = 3, commit = 1;
  struct Case {
    uint64_t log_term, index, committed;
    std::vector<Entry> ents;
    std::optional<uint64_t> wlast;
    uint64_t wcommit;
  };
  std::vector<Case> cases = {
      // Not a match: term mismatch, and index beyond the log.
      {lt - 1, li, li, {E(li + 1, 4)}, std::nullopt, commit},
      {lt, li + 1, li, {E(li + 2, 4)}, std::nullopt, commit},
      // Match with the last entry.
      {lt, li, li, {}, li, li},
      {lt, li, li + 1, {}, li, li},  // never commit beyond the new last
      {lt, li, li - 1, {}, li, li - 1},
      {lt, li, 0, {}, li, commit},  // commit never goes back
      {0, 0, li, {}, 0, commit},
      {lt, li, li, {E(li + 1, 4)}, li + 1, li},
      {lt, li, li + 1, {E(li + 1, 4)}, li + 1, li + 1},
      {lt, li, li + 2, {E(li + 1, 4)}, li + 1, li + 1},
      {lt, li, li + 2, {E(li + 1, 4), E(li + 2, 4)}, li + 2, li + 2},
      // Match with an entry in the middle: the conflicting suffix goes.
      {lt - 1, li - 1, li, {E(li, 4)}, li, li},
      {lt - 2, li - 2, li, {E(li - 1, 4)}, li - 1, li - 1},
      {lt - 2, li - 2, li, {E(li - 1, 4), E(li, 4)}, li, li},
      // Entries we already hold are not truncated (a stale, reordered
      // append must not cut the log short).
      {lt - 2, li - 2, li, {E(li - 1, 2)}, li - 1, li - 1},
  };
  for (size_t k = 0; k < cases.size(); ++k) {
    const Case& c = cases[k];
    MemoryStorage ms;
    RaftLog log(&ms, UINT64_MAX);
    log.Append(prev);
    log.CommitTo(commit);
    auto got = log.MaybeAppend(c.index, c.log_term, c.committed, c.ents);
    EXPECT_EQ(got, c.wlast) << "case " << k;
    EXPECT_EQ(log.committed(), c.wcommit) << "case " << k;
    if (got && !c.ents.empty()) {
      // Every sent entry is now in the log.
      auto s = log.Slice(log.LastIndex() - c.ents.size() + 1,
                         log.LastIndex() + 1, UINT64_MAX);
      if (c.ents.back().index == log.LastIndex()) {
        ASSERT_TRUE(s.ok()) << "case " << k;
        EXPECT_EQ(*s, c.ents) << "case " << k;
      }
    }
  }
  // The stale append above kept the whole log.
  MemoryStorage ms;
  RaftLog log(&ms, UINT64_MAX);
  log.Append(prev);
  ASSERT_TRUE(log.MaybeAppend(1, 1, 1, {E(2, 2)}).has_value());
  EXPECT_EQ(log.LastIndex(), 3u);
}

TEST(RaftLogTest, MaybeAppendConflictWithCommittedDies) {
  MemoryStorage ms;
  RaftLog log(&ms, UINT64_MAX);
  log.Append({E(1, 1), E(2, 2), E(3, 3)});
  log.CommitTo(1);
  EXPECT_DEATH((void)log.MaybeAppend(0, 0, 3, {E(1, 4)}),
               "entry conflicts with a committed entry");
}

TEST(RaftLogTest, CommitTo) {
  MemoryStorage ms;
  RaftLog log(&ms, UINT64_MAX);
  log.Append({E(1, 1), E(2, 2), E(3, 3)});
  log.CommitTo(3);
  EXPECT_EQ(log.committed(), 3u);
  log.CommitTo(1);  // never decreases
  EXPECT_EQ(log.committed(), 3u);
  EXPECT_DEATH(log.CommitTo(4), "commit index beyond the last index");
}

TEST(RaftLogTest, MaybeCommitNeedsMatchingTerm) {
  MemoryStorage ms;
  RaftLog log(&ms, UINT64_MAX);
  log.Append({E(1, 1), E(2, 2), E(3, 3)});
  // Only an entry of the given term commits (§5.4.2).
  EXPECT_FALSE(log.MaybeCommit(2, 3));
  EXPECT_EQ(log.committed(), 0u);
  EXPECT_TRUE(log.MaybeCommit(2, 2));
  EXPECT_EQ(log.committed(), 2u);
  EXPECT_FALSE(log.MaybeCommit(2, 2));  // not an advance
  EXPECT_FALSE(log.MaybeCommit(1, 1));
  EXPECT_FALSE(log.MaybeCommit(4, 3));  // beyond the log: term unknown
  EXPECT_TRUE(log.MaybeCommit(3, 3));
  EXPECT_EQ(log.committed(), 3u);
}

TEST(RaftLogTest, AppliedTo) {
  MemoryStorage ms;
  RaftLog log(&ms, UINT64_MAX);
  log.Append({E(1, 1), E(2, 1), E(3, 1)});
  log.CommitTo(2);
  log.AppliedTo(1);
  EXPECT_EQ(log.applied(), 1u);
  EXPECT_EQ(log.applying(), 1u);
  log.AppliedTo(0);  // ignored
  EXPECT_EQ(log.applied(), 1u);
  EXPECT_DEATH(log.AppliedTo(3), "applied out of range");
  log.AppliedTo(2);
  EXPECT_DEATH(log.AppliedTo(1), "applied out of range");
  EXPECT_DEATH(log.AcceptApplying(3), "");
}

TEST(RaftLogTest, Term) {
  const uint64_t offset = 100, num = 100;
  MemoryStorage ms;
  ASSERT_TRUE(ms.ApplySnapshot(Snap(offset, 1)).ok());
  RaftLog log(&ms, UINT64_MAX);
  for (uint64_t i = 1; i < num; ++i) log.Append({E(offset + i, i)});
  EXPECT_TRUE(IsErrCompacted(log.Term(offset - 1).status()));
  EXPECT_EQ(*log.Term(offset), 1u);
  EXPECT_EQ(*log.Term(offset + num / 2), num / 2);
  EXPECT_EQ(*log.Term(offset + num - 1), num - 1);
  EXPECT_TRUE(IsErrUnavailable(log.Term(offset + num).status()));
  EXPECT_EQ(log.ZeroTermOnError(offset - 1), 0u);
  EXPECT_EQ(log.ZeroTermOnError(offset + num), 0u);
  EXPECT_EQ(log.ZeroTermOnError(offset + 1), 1u);
  EXPECT_TRUE(log.MatchTerm(offset, 1));
  EXPECT_FALSE(log.MatchTerm(offset, 2));
  EXPECT_FALSE(log.MatchTerm(offset - 1, 0));
}

TEST(RaftLogTest, TermWithUnstableSnapshot) {
  const uint64_t storage_snap = 100, unstable_snap = 105;
  MemoryStorage ms;
  ASSERT_TRUE(ms.ApplySnapshot(Snap(storage_snap, 1)).ok());
  RaftLog log(&ms, UINT64_MAX);
  log.Restore(Snap(unstable_snap, 5));
  EXPECT_TRUE(IsErrCompacted(log.Term(storage_snap).status()));
  EXPECT_TRUE(IsErrCompacted(log.Term(unstable_snap - 1).status()));
  EXPECT_EQ(*log.Term(unstable_snap), 5u);
  EXPECT_TRUE(IsErrUnavailable(log.Term(unstable_snap + 1).status()));
}

TEST(RaftLogTest, StableTo) {
  struct Case {
    uint64_t index, term;
    size_t wlen;  // unstable entries left
  };
  for (const Case& c : std::vector<Case>{
           {1, 1, 1},
           {2, 2, 0},
           {2, 1, 2},  // term mismatch: nothing becomes stable
           {3, 1, 2},  // beyond the log
       }) {
    MemoryStorage ms;
    RaftLog log(&ms, UINT64_MAX);
    log.Append({E(1, 1), E(2, 2)});
    log.StableTo(c.index, c.term);
    EXPECT_EQ(log.UnstableEntries().size(), c.wlen) << c.index << "/" << c.term;
  }
}

TEST(RaftLogTest, StableToWithSnapshot) {
  const uint64_t si = 5, st = 2;
  struct Case {
    uint64_t stablei, stablet;
    std::vector<Entry> newents;
    size_t wlen;  // unstable entries left
  };
  std::vector<Case> cases = {
      {si + 1, st, {}, 0},
      {si, st, {}, 0},
      {si - 1, st, {}, 0},
      {si + 1, st + 1, {}, 0},
      {si, st + 1, {}, 0},
      {si - 1, st + 1, {}, 0},
      {si + 1, st, {E(si + 1, st)}, 0},
      {si, st, {E(si + 1, st)}, 1},
      {si - 1, st, {E(si + 1, st)}, 1},
      {si + 1, st + 1, {E(si + 1, st)}, 1},
      {si, st + 1, {E(si + 1, st)}, 1},
      {si - 1, st + 1, {E(si + 1, st)}, 1},
  };
  for (size_t k = 0; k < cases.size(); ++k) {
    const Case& c = cases[k];
    MemoryStorage ms;
    ASSERT_TRUE(ms.ApplySnapshot(Snap(si, st)).ok());
    RaftLog log(&ms, UINT64_MAX);
    log.Append(c.newents);
    log.StableTo(c.stablei, c.stablet);
    EXPECT_EQ(log.UnstableEntries().size(), c.wlen) << "case " << k;
  }
}

// The owner persists what Ready handed out and marks it stable; unstable
// entries always begin right after the stable ones.
TEST(RaftLogTest, UnstableEntriesAfterPersisting) {
  const std::vector<Entry> prev = {E(1, 1), E(2, 2)};
  for (uint64_t unstable : {1, 2, 3}) {
    MemoryStorage ms;
    ASSERT_TRUE(ms.Append(std::vector<Entry>(prev.begin(),
                                             prev.begin() + (unstable - 1)))
                    .ok());
    RaftLog log(&ms, UINT64_MAX);
    log.Append(std::vector<Entry>(prev.begin() + (unstable - 1), prev.end()));
    std::vector<Entry> ents = log.UnstableEntries();
    EXPECT_EQ(ents.size(), 3 - unstable) << unstable;
    if (!ents.empty()) {
      EXPECT_EQ(ents[0].index, unstable);
      ASSERT_TRUE(ms.Append(ents).ok());
      log.StableTo(ents.back().index, ents.back().term);
    }
    EXPECT_TRUE(log.UnstableEntries().empty());
    EXPECT_EQ(IT(log.AllEntries()), (IndexTerms{{1, 1}, {2, 2}}));
  }
}

TEST(RaftLogTest, CompactionSideEffects) {
  const uint64_t last = 1000, unstable_index = 750;
  MemoryStorage ms;
  for (uint64_t i = 1; i <= unstable_index; ++i) {
    ASSERT_TRUE(ms.Append({E(i, i)}).ok());
  }
  RaftLog log(&ms, UINT64_MAX);
  for (uint64_t i = unstable_index + 1; i <= last; ++i) log.Append({E(i, i)});
  ASSERT_TRUE(log.MaybeCommit(last, last));
  log.AppliedTo(log.committed());

  const uint64_t offset = 500;
  ASSERT_TRUE(ms.Compact(offset).ok());
  EXPECT_EQ(log.LastIndex(), last);
  EXPECT_EQ(log.FirstIndex(), offset + 1);
  for (uint64_t j = offset; j <= last; ++j) {
    EXPECT_EQ(*log.Term(j), j);
    EXPECT_TRUE(log.MatchTerm(j, j));
  }
  EXPECT_TRUE(IsErrCompacted(log.Term(offset - 1).status()));
  const auto& u = log.UnstableEntries();
  ASSERT_EQ(u.size(), 250u);
  EXPECT_EQ(u[0].index, 751u);
  uint64_t prev = log.LastIndex();
  log.Append({E(log.LastIndex() + 1, log.LastIndex() + 1)});
  EXPECT_EQ(log.LastIndex(), prev + 1);
  auto ents = log.EntriesFrom(log.LastIndex(), UINT64_MAX);
  ASSERT_TRUE(ents.ok());
  EXPECT_EQ(ents->size(), 1u);
  EXPECT_TRUE(IsErrCompacted(log.EntriesFrom(offset, UINT64_MAX).status()));
  EXPECT_TRUE(log.EntriesFrom(log.LastIndex() + 1, UINT64_MAX)->empty());
}

TEST(RaftLogTest, CompactedStorageIsHiddenBehindFirstIndex) {
  MemoryStorage ms;
  for (uint64_t i = 1; i <= 10; ++i) ASSERT_TRUE(ms.Append({E(i, 1)}).ok());
  RaftLog log(&ms, UINT64_MAX);
  log.CommitTo(10);
  log.AppliedTo(10);
  ASSERT_TRUE(ms.CreateSnapshot(6, nullptr, "s").ok());
  ASSERT_TRUE(ms.Compact(6).ok());
  EXPECT_EQ(log.FirstIndex(), 7u);
  EXPECT_EQ(*log.Term(6), 1u);
  EXPECT_TRUE(IsErrCompacted(log.Slice(6, 8, UINT64_MAX).status()));
  EXPECT_EQ(IT(*log.Slice(7, 11, UINT64_MAX)),
            (IndexTerms{{7, 1}, {8, 1}, {9, 1}, {10, 1}}));
  EXPECT_EQ(log.GetSnapshot()->metadata.index, 6u);
}

// Slices across the storage/unstable boundary, with byte limits (etcd's
// TestSlice).
TEST(RaftLogTest, Slice) {
  const uint64_t offset = 100, num = 100, last = offset + num,
                 half = offset + num / 2;
  const uint64_t halfe = EntrySize(E(half, half));
  MemoryStorage ms;
  ASSERT_TRUE(ms.ApplySnapshot(Snap(offset, 0)).ok());
  for (uint64_t i = 1; i < num / 2; ++i) {
    ASSERT_TRUE(ms.Append({E(offset + i, offset + i)}).ok());
  }
  RaftLog log(&ms, UINT64_MAX);
  for (uint64_t i = num / 2; i < num; ++i) {
    log.Append({E(offset + i, offset + i)});
  }
  ASSERT_EQ(log.UnstableEntries().front().index, half);

  struct Case {
    uint64_t lo, hi, limit;
    std::vector<uint64_t> want;  // indexes (term == index)
    bool compacted;
  };
  std::vector<Case> cases = {
      // Below the first index.
      {offset - 1, offset + 1, UINT64_MAX, {}, true},
      {offset, offset + 1, UINT64_MAX, {}, true},
      // Within range.
      {half - 1, half + 1, UINT64_MAX, {half - 1, half}, false},
      {half, half + 1, UINT64_MAX, {half}, false},
      {last - 1, last, UINT64_MAX, {last - 1}, false},
      {offset + 1, offset + 1, UINT64_MAX, {}, false},
      // Limited by bytes: always at least one entry.
      {half - 1, half + 1, 0, {half - 1}, false},
      {half - 1, half + 1, halfe + 1, {half - 1}, false},
      {half - 2, half + 1, halfe + 1, {half - 2}, false},
      {half - 1, half + 1, halfe * 2, {half - 1, half}, false},
      {half - 1, half + 2, halfe * 3, {half - 1, half, half + 1}, false},
      {half, half + 2, halfe, {half}, false},
      {half, half + 2, halfe * 2, {half, half + 1}, false},
      // The storage part is cut short by the limit: no unstable entries
      // after the gap.
      {half - 3, half + 3, halfe * 2, {half - 3, half - 2}, false},
  };
  for (size_t k = 0; k < cases.size(); ++k) {
    const Case& c = cases[k];
    auto got = log.Slice(c.lo, c.hi, c.limit);
    if (c.compacted) {
      EXPECT_TRUE(IsErrCompacted(got.status())) << "case " << k;
      continue;
    }
    ASSERT_TRUE(got.ok()) << "case " << k << ": " << got.status();
    std::vector<uint64_t> idx;
    for (const Entry& e : *got) {
      EXPECT_EQ(e.term, e.index);
      idx.push_back(e.index);
    }
    EXPECT_EQ(idx, c.want) << "case " << k;
  }
  EXPECT_DEATH((void)log.Slice(last, last + 2, UINT64_MAX),
               "slice out of bound");
  EXPECT_DEATH((void)log.Slice(half + 1, half, UINT64_MAX), "invalid slice");
}

TEST(RaftLogTest, NextCommittedEnts) {
  struct Case {
    uint64_t applied;
    uint64_t applying;  // 0: none beyond applied
    uint64_t max_bytes;
    std::vector<uint64_t> want;
  };
  const uint64_t one = EntrySize(E(4, 1));
  std::vector<Case> cases = {
      {0, 0, UINT64_MAX, {4, 5}},  // applied below the first index
      {3, 0, UINT64_MAX, {4, 5}},
      {4, 0, UINT64_MAX, {5}},
      {5, 0, UINT64_MAX, {}},
      {3, 4, UINT64_MAX, {5}},  // 4 is being applied already
      {3, 5, UINT64_MAX, {}},
      {3, 0, one, {4}},  // the byte limit still lets one through
      {3, 0, 0, {4}},
      {3, 0, 2 * one, {4, 5}},
  };
  for (size_t k = 0; k < cases.size(); ++k) {
    const Case& c = cases[k];
    // Entry 4 is stable, 5 and 6 are not yet.
    MemoryStorage ms;
    ASSERT_TRUE(ms.ApplySnapshot(Snap(3, 1)).ok());
    ASSERT_TRUE(ms.Append({E(4, 1)}).ok());
    RaftLog log(&ms, c.max_bytes);
    log.Append({E(5, 1), E(6, 1)});
    log.CommitTo(5);
    log.AppliedTo(c.applied);
    if (c.applying != 0) log.AcceptApplying(c.applying);
    std::vector<uint64_t> got;
    for (const Entry& e : log.NextCommittedEnts()) got.push_back(e.index);
    EXPECT_EQ(got, c.want) << "case " << k;
    EXPECT_EQ(log.HasNextCommittedEnts(), !c.want.empty()) << "case " << k;
  }
}

TEST(RaftLogTest, NoCommittedEntsWhileSnapshotPending) {
  MemoryStorage ms;
  RaftLog log(&ms, UINT64_MAX);
  log.Append({E(1, 1), E(2, 1)});
  log.CommitTo(2);
  EXPECT_TRUE(log.HasNextCommittedEnts());
  log.Restore(Snap(10, 3));
  EXPECT_TRUE(log.HasPendingSnapshot());
  EXPECT_FALSE(log.HasNextCommittedEnts());
  EXPECT_TRUE(log.NextCommittedEnts().empty());
}

TEST(RaftLogTest, Restore) {
  MemoryStorage ms;
  RaftLog log(&ms, UINT64_MAX);
  log.Append({E(1, 1), E(2, 1), E(3, 2)});
  log.CommitTo(1);
  log.Restore(Snap(200, 10));
  EXPECT_EQ(log.committed(), 200u);
  EXPECT_EQ(log.FirstIndex(), 201u);
  EXPECT_EQ(log.LastIndex(), 200u);
  EXPECT_EQ(log.LastTerm(), 10u);
  EXPECT_TRUE(log.UnstableEntries().empty());
  ASSERT_TRUE(log.UnstableSnapshot() != nullptr);
  EXPECT_EQ(log.GetSnapshot()->metadata.index, 200u);
  // New entries go after the snapshot.
  log.Append({E(201, 11)});
  EXPECT_EQ(log.LastIndex(), 201u);
  EXPECT_EQ(*log.Term(200), 10u);
  // The owner installs the snapshot and persists the entries.
  ASSERT_TRUE(ms.ApplySnapshot(*log.UnstableSnapshot()).ok());
  ASSERT_TRUE(ms.Append(log.UnstableEntries()).ok());
  log.StableSnapTo(200);
  log.StableTo(201, 11);
  EXPECT_FALSE(log.HasPendingSnapshot());
  EXPECT_TRUE(log.UnstableEntries().empty());
  EXPECT_EQ(log.FirstIndex(), 201u);
  EXPECT_EQ(log.LastIndex(), 201u);
  EXPECT_EQ(*log.Term(200), 10u);
}

TEST(RaftLogTest, AllEntriesSpansStorageAndUnstable) {
  MemoryStorage ms;
  ASSERT_TRUE(ms.Append({E(1, 1, "a"), E(2, 1, "b")}).ok());
  RaftLog log(&ms, UINT64_MAX);
  log.Append({E(3, 2, "c"), E(4, 2, "d")});
  std::vector<Entry> all = log.AllEntries();
  ASSERT_EQ(all.size(), 4u);
  EXPECT_EQ(all[0].data, "a");
  EXPECT_EQ(all[3].data, "d");
  // A conflicting append into the storage range is served from unstable.
  log.Append({E(2, 3, "B")});
  all = log.AllEntries();
  EXPECT_EQ(IT(all), (IndexTerms{{1, 1}, {2, 3}}));
  EXPECT_EQ(all[1].data, "B");
}

}  // namespace
}  // namespace detcd::raft
