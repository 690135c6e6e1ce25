// MemoryStorage: the stable log as Raft reads it (etcd raft storage_test.go
// covers the same ground; our own cases).
#include "engine/raft/storage.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace detcd::raft {
namespace {

Entry E(uint64_t index, uint64_t term, std::string data = "") {
  return Entry{term, index, EntryType::kNormal, std::move(data)};
}

std::vector<std::pair<uint64_t, uint64_t>> IT(const std::vector<Entry>& es) {
  std::vector<std::pair<uint64_t, uint64_t>> out;
  for (const Entry& e : es) out.emplace_back(e.index, e.term);
  return out;
}

using IndexTerms = std::vector<std::pair<uint64_t, uint64_t>>;

// A storage compacted at index 3 (term 3) holding entries 4 and 5:
// ents_ = [dummy 3/3, 4/4, 5/5] as in etcd's tests.
MemoryStorage Compacted345() {
  MemoryStorage ms;
  EXPECT_TRUE(ms.Append({E(1, 1), E(2, 2), E(3, 3), E(4, 4), E(5, 5)}).ok());
  EXPECT_TRUE(ms.Compact(3).ok());
  return ms;
}

TEST(MemoryStorageTest, EmptyStorage) {
  MemoryStorage ms;
  EXPECT_EQ(ms.FirstIndex(), 1u);
  EXPECT_EQ(ms.LastIndex(), 0u);
  auto t = ms.Term(0);
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(*t, 0u);
  EXPECT_TRUE(IsErrUnavailable(ms.Term(1).status()));
  EXPECT_TRUE(ms.InitialHardState().IsEmpty());
  EXPECT_TRUE(ms.GetSnapshot()->IsEmpty());
  EXPECT_TRUE(ms.InitialConfState().voters.empty());
}

TEST(MemoryStorageTest, ErrorCodesAndMessages) {
  EXPECT_TRUE(IsErrCompacted(ErrCompacted()));
  EXPECT_FALSE(IsErrCompacted(ErrUnavailable()));
  EXPECT_TRUE(IsErrUnavailable(ErrUnavailable()));
  EXPECT_FALSE(IsErrUnavailable(ErrCompacted()));
  EXPECT_EQ(ErrCompacted().message(),
            "requested index is unavailable due to compaction");
  EXPECT_EQ(ErrUnavailable().message(),
            "requested entry at index is unavailable");
  EXPECT_EQ(ErrSnapshotTemporarilyUnavailable().code(),
            absl::StatusCode::kUnavailable);
}

TEST(MemoryStorageTest, Term) {
  MemoryStorage ms = Compacted345();
  EXPECT_TRUE(IsErrCompacted(ms.Term(2).status()));
  EXPECT_EQ(*ms.Term(3), 3u);  // the snapshot's (dummy) entry
  EXPECT_EQ(*ms.Term(4), 4u);
  EXPECT_EQ(*ms.Term(5), 5u);
  EXPECT_TRUE(IsErrUnavailable(ms.Term(6).status()));
}

TEST(MemoryStorageTest, Entries) {
  MemoryStorage ms;
  ASSERT_TRUE(
      ms.Append({E(1, 1), E(2, 2), E(3, 3), E(4, 4), E(5, 5), E(6, 6)}).ok());
  ASSERT_TRUE(ms.Compact(3).ok());  // [3/3 dummy, 4, 5, 6]
  const uint64_t sz = EntrySize(E(4, 4));

  EXPECT_TRUE(IsErrCompacted(ms.Entries(2, 6, UINT64_MAX).status()));
  EXPECT_TRUE(IsErrCompacted(ms.Entries(3, 4, UINT64_MAX).status()));
  EXPECT_EQ(IT(*ms.Entries(4, 5, UINT64_MAX)), (IndexTerms{{4, 4}}));
  EXPECT_EQ(IT(*ms.Entries(4, 7, UINT64_MAX)),
            (IndexTerms{{4, 4}, {5, 5}, {6, 6}}));
  EXPECT_TRUE(ms.Entries(5, 5, UINT64_MAX)->empty());
  EXPECT_TRUE(ms.Entries(7, 7, UINT64_MAX)->empty());
  // Size limits: at least one entry, otherwise as many as fit.
  EXPECT_EQ(IT(*ms.Entries(4, 7, 0)), (IndexTerms{{4, 4}}));
  EXPECT_EQ(IT(*ms.Entries(4, 7, sz)), (IndexTerms{{4, 4}}));
  EXPECT_EQ(IT(*ms.Entries(4, 7, sz + 1)), (IndexTerms{{4, 4}}));
  EXPECT_EQ(IT(*ms.Entries(4, 7, 2 * sz)), (IndexTerms{{4, 4}, {5, 5}}));
  EXPECT_EQ(IT(*ms.Entries(4, 7, 3 * sz - 1)), (IndexTerms{{4, 4}, {5, 5}}));
  EXPECT_EQ(IT(*ms.Entries(4, 7, 3 * sz)),
            (IndexTerms{{4, 4}, {5, 5}, {6, 6}}));
}

TEST(MemoryStorageTest, EntriesSizeCountsData) {
  MemoryStorage ms;
  ASSERT_TRUE(
      ms.Append({E(1, 1, std::string(100, 'a')), E(2, 1, "b"), E(3, 1, "c")})
          .ok());
  // The first entry alone is over the limit: still returned.
  EXPECT_EQ(ms.Entries(1, 4, 50)->size(), 1u);
  EXPECT_EQ(ms.Entries(1, 4, 116 + 17)->size(), 2u);
  EXPECT_EQ(ms.Entries(2, 4, 34)->size(), 2u);
  EXPECT_EQ(ms.Entries(2, 4, 33)->size(), 1u);
  auto es = ms.Entries(1, 2, UINT64_MAX);
  EXPECT_EQ((*es)[0].data, std::string(100, 'a'));
}

TEST(MemoryStorageTest, EntriesUnavailableWhenOnlySnapshot) {
  MemoryStorage ms;
  Snapshot s;
  s.metadata.index = 10;
  s.metadata.term = 2;
  ASSERT_TRUE(ms.ApplySnapshot(s).ok());
  EXPECT_TRUE(IsErrCompacted(ms.Entries(10, 11, UINT64_MAX).status()));
  EXPECT_TRUE(IsErrUnavailable(ms.Entries(11, 11, UINT64_MAX).status()));
}

TEST(MemoryStorageTest, FirstAndLastIndex) {
  MemoryStorage ms = Compacted345();
  EXPECT_EQ(ms.FirstIndex(), 4u);
  EXPECT_EQ(ms.LastIndex(), 5u);
  ASSERT_TRUE(ms.Append({E(6, 5)}).ok());
  EXPECT_EQ(ms.LastIndex(), 6u);
  ASSERT_TRUE(ms.Compact(4).ok());
  EXPECT_EQ(ms.FirstIndex(), 5u);
  EXPECT_EQ(ms.LastIndex(), 6u);
}

TEST(MemoryStorageTest, Compact) {
  struct Case {
    uint64_t i;
    bool compacted;
    uint64_t first_index;
    uint64_t first_term;  // term of the new dummy entry
    size_t left;          // entries left, dummy included
  };
  for (const Case& c : std::vector<Case>{{2, true, 4, 3, 3},
                                         {3, true, 4, 3, 3},
                                         {4, false, 5, 4, 2},
                                         {5, false, 6, 5, 1}}) {
    MemoryStorage ms = Compacted345();
    absl::Status s = ms.Compact(c.i);
    EXPECT_EQ(IsErrCompacted(s), c.compacted) << c.i << " " << s;
    EXPECT_EQ(s.ok(), !c.compacted) << c.i;
    EXPECT_EQ(ms.FirstIndex(), c.first_index) << c.i;
    EXPECT_EQ(*ms.Term(c.first_index - 1), c.first_term) << c.i;
    EXPECT_EQ(ms.LastIndex() - ms.FirstIndex() + 2, c.left) << c.i;
  }
}

TEST(MemoryStorageTest, CompactKeepsLaterEntriesIntact) {
  MemoryStorage ms;
  ASSERT_TRUE(ms.Append({E(1, 1, "a"), E(2, 1, "b"), E(3, 2, "c")}).ok());
  ASSERT_TRUE(ms.Compact(2).ok());
  auto es = ms.Entries(3, 4, UINT64_MAX);
  ASSERT_TRUE(es.ok());
  EXPECT_EQ((*es)[0], E(3, 2, "c"));
  EXPECT_TRUE(IsErrCompacted(ms.Entries(2, 4, UINT64_MAX).status()));
}

TEST(MemoryStorageTest, CreateSnapshot) {
  ConfState cs{{1, 2, 3}, {}};
  struct Case {
    uint64_t i;
    bool ok;
    uint64_t term;
  };
  // Compacted345 compacted without taking a snapshot: index 3 (the dummy)
  // still has a known term, index 2 does not.
  for (const Case& c : std::vector<Case>{
           {2, false, 0}, {3, true, 3}, {4, true, 4}, {5, true, 5}}) {
    MemoryStorage ms = Compacted345();
    auto snap = ms.CreateSnapshot(c.i, &cs, "data");
    ASSERT_EQ(snap.ok(), c.ok) << c.i;
    if (!c.ok) {
      EXPECT_TRUE(IsErrCompacted(snap.status())) << snap.status();
      EXPECT_TRUE(ms.GetSnapshot()->IsEmpty());
      continue;
    }
    EXPECT_EQ(snap->metadata.index, c.i);
    EXPECT_EQ(snap->metadata.term, c.term);
    EXPECT_EQ(snap->metadata.conf_state, cs);
    EXPECT_EQ(snap->data, "data");
    EXPECT_EQ(*ms.GetSnapshot(), *snap);
    EXPECT_EQ(ms.InitialConfState(), cs);
    // Creating a snapshot does not compact by itself.
    EXPECT_EQ(ms.FirstIndex(), 4u);
  }
}

TEST(MemoryStorageTest, CreateSnapshotOlderThanCurrentFails) {
  MemoryStorage ms;
  ASSERT_TRUE(ms.Append({E(1, 1), E(2, 1), E(3, 2)}).ok());
  ASSERT_TRUE(ms.CreateSnapshot(2, nullptr, "a").ok());
  for (uint64_t i : {1, 2}) {
    auto snap = ms.CreateSnapshot(i, nullptr, "b");
    EXPECT_EQ(snap.status().code(), absl::StatusCode::kFailedPrecondition);
  }
  EXPECT_EQ(ms.GetSnapshot()->data, "a");
  EXPECT_DEATH((void)ms.CreateSnapshot(4, nullptr, "c"),
               "snapshot index is out of bound");
}

TEST(MemoryStorageTest, CreateSnapshotKeepsConfStateWhenNull) {
  MemoryStorage ms;
  ms.SetInitialConfState(ConfState{{1, 2}, {3}});
  ASSERT_TRUE(ms.Append({E(1, 1), E(2, 1)}).ok());
  auto snap = ms.CreateSnapshot(2, nullptr, "x");
  ASSERT_TRUE(snap.ok());
  EXPECT_EQ(snap->metadata.conf_state, (ConfState{{1, 2}, {3}}));
  EXPECT_EQ(snap->metadata.term, 1u);
}

TEST(MemoryStorageTest, ApplySnapshot) {
  ConfState cs{{1, 2, 3}, {}};
  MemoryStorage ms;
  Snapshot s4{"d4", {cs, 4, 4}};
  ASSERT_TRUE(ms.ApplySnapshot(s4).ok());
  EXPECT_EQ(ms.FirstIndex(), 5u);
  EXPECT_EQ(ms.LastIndex(), 4u);
  EXPECT_EQ(*ms.Term(4), 4u);
  EXPECT_EQ(*ms.GetSnapshot(), s4);
  EXPECT_EQ(ms.InitialConfState(), cs);
  // An older (or equal) snapshot is refused and changes nothing.
  Snapshot s3{"d3", {cs, 3, 3}};
  absl::Status st = ms.ApplySnapshot(s3);
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(ms.ApplySnapshot(s4).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(*ms.GetSnapshot(), s4);
  EXPECT_EQ(ms.FirstIndex(), 5u);
}

TEST(MemoryStorageTest, WithoutSnapshotDataKeepsMetadataOnly) {
  ConfState cs{{1, 2}, {}};
  MemoryStorage ms;
  ms.set_keep_snapshot_data(false);
  ASSERT_TRUE(ms.ApplySnapshot(Snapshot{"image4", {cs, 4, 2}}).ok());
  EXPECT_EQ(*ms.GetSnapshot(), (Snapshot{"", {cs, 4, 2}}));
  EXPECT_EQ(ms.FirstIndex(), 5u);
  EXPECT_EQ(*ms.Term(4), 2u);
  ASSERT_TRUE(ms.Append({E(5, 2), E(6, 3)}).ok());
  // The caller still gets the image it passed (it saves it); the storage
  // keeps the metadata.
  auto snap = ms.CreateSnapshot(6, nullptr, "image6");
  ASSERT_TRUE(snap.ok());
  EXPECT_EQ(*snap, (Snapshot{"image6", {cs, 6, 3}}));
  EXPECT_EQ(*ms.GetSnapshot(), (Snapshot{"", {cs, 6, 3}}));
  // Turning it off drops an image kept before.
  MemoryStorage kept;
  ASSERT_TRUE(kept.ApplySnapshot(Snapshot{"image", {cs, 2, 1}}).ok());
  EXPECT_EQ(kept.GetSnapshot()->data, "image");
  kept.set_keep_snapshot_data(false);
  EXPECT_EQ(*kept.GetSnapshot(), (Snapshot{"", {cs, 2, 1}}));
}

TEST(MemoryStorageTest, EntriesBytesFollowsAppendTruncateCompact) {
  MemoryStorage ms;
  EXPECT_EQ(ms.entries_bytes(), 0u);
  ASSERT_TRUE(ms.Append({E(1, 1, "aaaa"), E(2, 1, "bb"), E(3, 1)}).ok());
  EXPECT_EQ(ms.entries_bytes(), 4u + 2 + 0 + 3 * 16);
  // A conflicting suffix is replaced.
  ASSERT_TRUE(ms.Append({E(2, 2, "cccccc")}).ok());
  EXPECT_EQ(ms.entries_bytes(), 4u + 6 + 2 * 16);
  ASSERT_TRUE(ms.Compact(1).ok());
  EXPECT_EQ(ms.entries_bytes(), 6u + 16);
  ASSERT_TRUE(ms.ApplySnapshot(Snapshot{"", {ConfState{{1}, {}}, 5, 2}}).ok());
  EXPECT_EQ(ms.entries_bytes(), 0u);
}

TEST(MemoryStorageTest, ReleaseAppliedKeepsTheNewestAndNeverPassesApplied) {
  MemoryStorage ms;
  std::vector<Entry> es;
  for (uint64_t i = 1; i <= 100; ++i) {
    es.push_back(E(i, 1, std::string(84, 'x')));
  }
  ASSERT_TRUE(ms.Append(es).ok());  // 100 bytes each
  EXPECT_EQ(ms.entries_bytes(), 10000u);
  // Within a quarter over the budget: nothing happens.
  ms.ReleaseApplied(100, 8000);
  EXPECT_EQ(ms.FirstIndex(), 1u);
  // Over it: the oldest go until 3000 bytes remain.
  ms.ReleaseApplied(100, 3000);
  EXPECT_EQ(ms.FirstIndex(), 71u);
  EXPECT_EQ(ms.entries_bytes(), 3000u);
  EXPECT_EQ(*ms.Term(70), 1u);  // the dummy keeps the last released term
  EXPECT_TRUE(IsErrCompacted(ms.Entries(70, 71, UINT64_MAX).status()));
  // Never beyond applied: entries not applied yet stay whatever the budget.
  ms.ReleaseApplied(80, 0);
  EXPECT_EQ(ms.FirstIndex(), 81u);
  EXPECT_EQ(ms.LastIndex(), 100u);
  ms.ReleaseApplied(100, 0);
  EXPECT_EQ(ms.FirstIndex(), 101u);
  EXPECT_EQ(ms.LastIndex(), 100u);
  EXPECT_EQ(ms.entries_bytes(), 0u);
  ms.ReleaseApplied(100, 0);  // nothing left to release
  EXPECT_EQ(ms.FirstIndex(), 101u);
}

TEST(MemoryStorageTest, ApplySnapshotDiscardsExistingEntries) {
  MemoryStorage ms;
  ASSERT_TRUE(ms.Append({E(1, 1), E(2, 1), E(3, 2), E(4, 2), E(5, 2)}).ok());
  Snapshot s{"", {ConfState{{1}, {}}, 3, 3}};  // conflicts with 3/2
  ASSERT_TRUE(ms.ApplySnapshot(s).ok());
  EXPECT_EQ(ms.FirstIndex(), 4u);
  EXPECT_EQ(ms.LastIndex(), 3u);
  EXPECT_EQ(*ms.Term(3), 3u);
  EXPECT_TRUE(IsErrCompacted(ms.Term(2).status()));
  EXPECT_TRUE(IsErrUnavailable(ms.Term(4).status()));
  // Appending continues after the snapshot.
  ASSERT_TRUE(ms.Append({E(4, 3)}).ok());
  EXPECT_EQ(IT(*ms.Entries(4, 5, UINT64_MAX)), (IndexTerms{{4, 3}}));
}

TEST(MemoryStorageTest, Append) {
  struct Case {
    std::vector<Entry> in;
    IndexTerms want;  // entries after the dummy
  };
  std::vector<Case> cases = {
      // Identical entries: no change.
      {{E(3, 3), E(4, 4), E(5, 5)}, {{4, 4}, {5, 5}}},
      // A conflict truncates the suffix.
      {{E(3, 3), E(4, 6), E(5, 6)}, {{4, 6}, {5, 6}}},
      {{E(3, 3), E(4, 4), E(5, 5), E(6, 5)}, {{4, 4}, {5, 5}, {6, 5}}},
      // Entries entirely before the first index are ignored.
      {{E(2, 3), E(3, 3), E(4, 5)}, {{4, 5}}},
      {{E(1, 1), E(2, 2)}, {{4, 4}, {5, 5}}},
      // Truncate a suffix starting in the middle.
      {{E(4, 5)}, {{4, 5}}},
      {{E(5, 5)}, {{4, 4}, {5, 5}}},
      {{E(5, 6), E(6, 6)}, {{4, 4}, {5, 6}, {6, 6}}},
      // Plain append right after the last index.
      {{E(6, 5)}, {{4, 4}, {5, 5}, {6, 5}}},
      // Empty input.
      {{}, {{4, 4}, {5, 5}}},
  };
  for (size_t k = 0; k < cases.size(); ++k) {
    MemoryStorage ms = Compacted345();
    ASSERT_TRUE(ms.Append(cases[k].in).ok()) << k;
    EXPECT_EQ(*ms.Term(3), 3u) << k;  // the dummy is never overwritten
    if (ms.LastIndex() < ms.FirstIndex()) {
      EXPECT_TRUE(cases[k].want.empty()) << k;
      continue;
    }
    EXPECT_EQ(IT(*ms.Entries(ms.FirstIndex(), ms.LastIndex() + 1, UINT64_MAX)),
              cases[k].want)
        << "case " << k;
  }
}

TEST(MemoryStorageTest, AppendTruncatesEvenWithMatchingPrefix) {
  // Storage applies what Raft hands it (Raft already dropped the matching
  // prefix): a batch starting at i replaces everything from i on.
  MemoryStorage ms;
  ASSERT_TRUE(ms.Append({E(1, 1), E(2, 1), E(3, 1), E(4, 1)}).ok());
  ASSERT_TRUE(ms.Append({E(2, 1)}).ok());
  EXPECT_EQ(ms.LastIndex(), 2u);
}

TEST(MemoryStorageTest, AppendWithGapDies) {
  MemoryStorage ms = Compacted345();
  EXPECT_DEATH((void)ms.Append({E(7, 5)}), "missing log entries");
}

TEST(MemoryStorageTest, HardState) {
  MemoryStorage ms;
  HardState hs{5, 2, 3};
  ms.SetHardState(hs);
  EXPECT_EQ(ms.InitialHardState(), hs);
  EXPECT_FALSE(ms.InitialHardState().IsEmpty());
}

}  // namespace
}  // namespace detcd::raft
