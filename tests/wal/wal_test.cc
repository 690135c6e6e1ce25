// The WAL and snapshot files over the simulated disk: round trips, the
// durability boundary, torn-tail repair, corruption detection, segments and
// their release.
#include "engine/wal/wal.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <zstd.h>

#include <algorithm>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "engine/raft/codec.h"
#include "engine/util/coding.h"
#include "engine/util/planted.h"
#include "engine/wal/crc32c.h"
#include "sim/sim_disk.h"

namespace detcd::wal {
namespace {

using ::testing::HasSubstr;

constexpr char kDir[] = "data/wal";

raft::Entry E(uint64_t index, uint64_t term, std::string data = "") {
  raft::Entry e;
  e.index = index;
  e.term = term;
  e.data = data.empty() ? absl::StrCat("v", index, "t", term) : data;
  return e;
}

std::vector<raft::Entry> Range(uint64_t from, uint64_t to, uint64_t term) {
  std::vector<raft::Entry> out;
  for (uint64_t i = from; i <= to; ++i) out.push_back(E(i, term));
  return out;
}

raft::HardState HS(uint64_t term, uint64_t vote, uint64_t commit) {
  raft::HardState hs;
  hs.term = term;
  hs.vote = vote;
  hs.commit = commit;
  return hs;
}

raft::SnapshotMetadata Meta(uint64_t index, uint64_t term,
                            std::vector<raft::NodeId> voters = {1, 2, 3}) {
  raft::SnapshotMetadata m;
  m.index = index;
  m.term = term;
  m.conf_state.voters = std::move(voters);
  return m;
}

std::vector<std::string> Segments(sim::SimDisk& d) {
  std::vector<std::string> out;
  auto names = d.List(kDir);
  if (!names.ok()) return out;
  for (const std::string& n : *names) {
    if (n.size() > 4 && n.substr(n.size() - 4) == ".wal") out.push_back(n);
  }
  return out;
}

std::string Path(const std::string& name) {
  return absl::StrCat(kDir, "/", name);
}

// Replaces a file's contents durably (the disk has no "write at offset").
void Overwrite(sim::SimDisk& d, const std::string& path,
               const std::string& contents) {
  auto f = d.Create(path);
  ASSERT_TRUE(f.ok());
  ASSERT_TRUE((*f)->Append(contents).ok());
  ASSERT_TRUE((*f)->Sync().ok());
  ASSERT_TRUE((*f)->Close().ok());
  ASSERT_TRUE(d.SyncDir(kDir).ok());
}

std::string Read(sim::SimDisk& d, const std::string& path) {
  auto r = d.ReadAll(path);
  EXPECT_TRUE(r.ok()) << r.status();
  return r.ok() ? *r : "";
}

class WalTest : public ::testing::Test {
 protected:
  WalTest() : disk_(env::SeededRng(42)) {
    EXPECT_TRUE(disk_.CreateDir("data").ok());
    EXPECT_TRUE(disk_.SyncDir("").ok());
  }

  // A WAL with the bootstrap marker, as a node creates it.
  std::unique_ptr<Wal> MakeWal(WalOptions opts = WalOptions()) {
    auto w = Wal::Create(&disk_, kDir, opts);
    EXPECT_TRUE(w.ok()) << w.status();
    EXPECT_TRUE((*w)->SaveSnapshotMarker(Meta(0, 0)).ok());
    return *std::move(w);
  }

  Recovered MustOpen(uint64_t snap_index, WalOptions opts = WalOptions()) {
    auto r = Wal::Open(&disk_, kDir, snap_index, opts);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *std::move(r) : Recovered();
  }

  // A closed WAL of 30 synced entries in segments of 200 bytes; returns
  // the segments' names.
  std::vector<std::string> SmallSegments(WalOptions* opts) {
    opts->segment_bytes = 200;
    auto w = MakeWal(*opts);
    for (uint64_t i = 1; i <= 30; ++i) {
      EXPECT_TRUE(w->Save(nullptr, {E(i, 1)}, true).ok());
    }
    return Segments(disk_);
  }

  sim::SimDisk disk_;
};

TEST_F(WalTest, CreateSaveReopen) {
  EXPECT_FALSE(Wal::Exists(&disk_, kDir));
  auto w = MakeWal();
  EXPECT_TRUE(Wal::Exists(&disk_, kDir));
  raft::HardState hs = HS(3, 2, 5);
  ASSERT_TRUE(w->Save(&hs, Range(1, 10, 3), /*sync=*/true).ok());
  EXPECT_EQ(w->durable().hard_state, hs);
  EXPECT_EQ(w->durable().last_index, 10u);
  w.reset();

  Recovered r = MustOpen(0);
  EXPECT_EQ(r.hard_state, hs);
  EXPECT_EQ(r.snapshot, Meta(0, 0));
  EXPECT_EQ(r.entries, Range(1, 10, 3));
  ASSERT_NE(r.wal, nullptr);
  EXPECT_EQ(r.wal->durable().hard_state, hs);
  EXPECT_EQ(r.wal->durable().last_index, 10u);

  // The reopened WAL appends after what it read.
  raft::HardState hs2 = HS(4, 1, 10);
  ASSERT_TRUE(r.wal->Save(&hs2, Range(11, 12, 4), true).ok());
  r.wal.reset();
  Recovered r2 = MustOpen(0);
  EXPECT_EQ(r2.hard_state, hs2);
  ASSERT_EQ(r2.entries.size(), 12u);
  EXPECT_EQ(r2.entries.back(), E(12, 4));
}

TEST_F(WalTest, CreateRefusesAnExistingWal) {
  auto w = MakeWal();
  auto again = Wal::Create(&disk_, kDir);
  EXPECT_EQ(again.status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST_F(WalTest, OpenWithoutSegmentsIsNotFound) {
  ASSERT_TRUE(disk_.CreateDir(kDir).ok());
  EXPECT_TRUE(absl::IsNotFound(Wal::Open(&disk_, kDir, 0).status()));
}

TEST_F(WalTest, CreateSurvivesACrash) {
  auto w = Wal::Create(&disk_, kDir);
  ASSERT_TRUE(w.ok());
  disk_.Crash();
  EXPECT_TRUE(Wal::Exists(&disk_, kDir));
  // No bootstrap marker was written.
  EXPECT_TRUE(absl::IsNotFound(Wal::Open(&disk_, kDir, 0).status()));
}

TEST_F(WalTest, HardStateOnlyAndEmptySave) {
  auto w = MakeWal();
  raft::HardState hs = HS(1, 1, 0);
  ASSERT_TRUE(w->Save(&hs, {}, true).ok());
  ASSERT_TRUE(w->Save(nullptr, {}, true).ok());
  w.reset();
  Recovered r = MustOpen(0);
  EXPECT_EQ(r.hard_state, hs);
  EXPECT_TRUE(r.entries.empty());
}

TEST_F(WalTest, UnsyncedWritesAreLostInACrashSyncedOnesAreNot) {
  auto w = MakeWal();
  raft::HardState hs1 = HS(1, 1, 2);
  ASSERT_TRUE(w->Save(&hs1, Range(1, 3, 1), true).ok());
  raft::HardState hs2 = HS(2, 2, 3);
  ASSERT_TRUE(w->Save(&hs2, Range(4, 6, 2), /*sync=*/false).ok());
  // Not synced: durable() still reports the first save.
  EXPECT_EQ(w->durable().hard_state, hs1);
  EXPECT_EQ(w->durable().last_index, 3u);

  disk_.Crash();  // default faults: all unsynced data is dropped
  Recovered r = MustOpen(0);
  EXPECT_EQ(r.hard_state, hs1);
  EXPECT_EQ(r.entries, Range(1, 3, 1));

  // Now a synced save survives.
  ASSERT_TRUE(r.wal->Save(&hs2, Range(4, 6, 2), true).ok());
  EXPECT_EQ(r.wal->durable().hard_state, hs2);
  EXPECT_EQ(r.wal->durable().last_index, 6u);
  disk_.Crash();
  Recovered r2 = MustOpen(0);
  EXPECT_EQ(r2.hard_state, hs2);
  EXPECT_EQ(r2.entries.size(), 6u);
}

TEST_F(WalTest, ASyncCoversEarlierUnsyncedSaves) {
  auto w = MakeWal();
  ASSERT_TRUE(w->Save(nullptr, Range(1, 3, 1), false).ok());
  raft::HardState hs = HS(1, 0, 3);
  ASSERT_TRUE(w->Save(&hs, {}, true).ok());
  EXPECT_EQ(w->durable().last_index, 3u);
  disk_.Crash();
  Recovered r = MustOpen(0);
  EXPECT_EQ(r.entries, Range(1, 3, 1));
  EXPECT_EQ(r.hard_state, hs);
}

TEST_F(WalTest, ConflictingSuffixIsReplaced) {
  auto w = MakeWal();
  ASSERT_TRUE(w->Save(nullptr, Range(1, 10, 1), true).ok());
  ASSERT_TRUE(w->Save(nullptr, Range(6, 7, 2), true).ok());
  EXPECT_EQ(w->durable().last_index, 7u);
  w.reset();
  Recovered r = MustOpen(0);
  std::vector<raft::Entry> want = Range(1, 5, 1);
  for (const raft::Entry& e : Range(6, 7, 2)) want.push_back(e);
  EXPECT_EQ(r.entries, want);
  EXPECT_EQ(r.wal->durable().last_index, 7u);
}

TEST_F(WalTest, SnapshotMarkerSelectsLaterEntries) {
  auto w = MakeWal();
  ASSERT_TRUE(w->Save(nullptr, Range(1, 10, 1), true).ok());
  ASSERT_TRUE(w->SaveSnapshotMarker(Meta(5, 1, {1, 2})).ok());
  ASSERT_TRUE(w->Save(nullptr, Range(11, 12, 2), true).ok());
  w.reset();

  Recovered r = MustOpen(5);
  EXPECT_EQ(r.snapshot, Meta(5, 1, {1, 2}));
  std::vector<raft::Entry> want = Range(6, 10, 1);
  for (const raft::Entry& e : Range(11, 12, 2)) want.push_back(e);
  EXPECT_EQ(r.entries, want);

  r.wal.reset();
  Recovered r0 = MustOpen(0);
  EXPECT_EQ(r0.entries.size(), 12u);
  EXPECT_TRUE(absl::IsNotFound(Wal::Open(&disk_, kDir, 3).status()));

  auto markers = Wal::ReadMarkers(&disk_, kDir);
  ASSERT_TRUE(markers.ok());
  EXPECT_EQ(*markers, (std::vector<raft::SnapshotMetadata>{
                          Meta(0, 0), Meta(5, 1, {1, 2})}));
}

TEST_F(WalTest, MarkerNewerThanTheLog) {
  auto w = MakeWal();
  ASSERT_TRUE(w->Save(nullptr, Range(1, 3, 1), true).ok());
  ASSERT_TRUE(w->SaveSnapshotMarker(Meta(20, 4)).ok());
  EXPECT_EQ(w->durable().last_index, 20u);
  ASSERT_TRUE(w->Save(nullptr, Range(21, 22, 4), true).ok());
  w.reset();
  Recovered r = MustOpen(20);
  EXPECT_EQ(r.entries, Range(21, 22, 4));
  EXPECT_EQ(r.wal->durable().last_index, 22u);
  r.wal.reset();
  // From the bootstrap marker the log has a hole: 4..20 are only in the
  // snapshot.
  auto r0 = Wal::Open(&disk_, kDir, 0);
  EXPECT_EQ(r0.status().code(), absl::StatusCode::kDataLoss);
}

// Truncating the last record at every byte offset gives a WAL that opens
// with the prefix, repairs the file, and accepts new records.
TEST_F(WalTest, TornTailAtEveryOffsetIsRepaired) {
  auto w = MakeWal();
  raft::HardState hs = HS(1, 1, 1);
  ASSERT_TRUE(w->Save(&hs, Range(1, 3, 1), true).ok());
  const std::string seg = Segments(disk_).at(0);
  const size_t good = Read(disk_, Path(seg)).size();
  ASSERT_TRUE(w->Save(nullptr, {E(4, 1, std::string(40, 'x'))}, true).ok());
  w.reset();
  const std::string full = Read(disk_, Path(seg));
  ASSERT_GT(full.size(), good);
  // The second save opens with a sync mark; once whole it is kept (it
  // changes no state).
  WalRecord rec;
  const size_t mark = DecodeRecordAt(full, good, &rec);
  ASSERT_EQ(rec.type, WalRecord::Type::kSyncMark);

  for (size_t cut = good; cut < full.size(); ++cut) {
    SCOPED_TRACE(absl::StrCat("cut at ", cut));
    Overwrite(disk_, Path(seg), full.substr(0, cut));
    Recovered r = MustOpen(0);
    EXPECT_EQ(r.entries, Range(1, 3, 1));
    EXPECT_EQ(r.hard_state, hs);
    EXPECT_EQ(Read(disk_, Path(seg)).size(),
              cut < good + mark ? good : good + mark);
    ASSERT_TRUE(r.wal->Save(nullptr, {E(4, 2)}, true).ok());
    r.wal.reset();
    Recovered r2 = MustOpen(0);
    ASSERT_EQ(r2.entries.size(), 4u);
    EXPECT_EQ(r2.entries[3], E(4, 2));
  }
}

TEST_F(WalTest, ZeroFilledAndGarbledTailsAreRepaired) {
  auto w = MakeWal();
  ASSERT_TRUE(w->Save(nullptr, Range(1, 3, 1), true).ok());
  w.reset();
  const std::string seg = Segments(disk_).at(0);
  const std::string good = Read(disk_, Path(seg));

  for (const std::string& tail :
       {std::string(1, '\0'), std::string(9, '\0'), std::string(4096, '\0'),
        std::string("\x05\x00\x00\x00garbage", 11)}) {
    Overwrite(disk_, Path(seg), good + tail);
    Recovered r = MustOpen(0);
    EXPECT_EQ(r.entries, Range(1, 3, 1));
    EXPECT_EQ(Read(disk_, Path(seg)), good);
  }

  // A complete final record with a bad checksum.
  auto w2 = MustOpen(0).wal;
  ASSERT_TRUE(w2->Save(nullptr, Range(4, 4, 1), true).ok());
  w2.reset();
  std::string bad = Read(disk_, Path(seg));
  bad.back() ^= 0x01;
  Overwrite(disk_, Path(seg), bad);
  Recovered r = MustOpen(0);
  EXPECT_EQ(r.entries, Range(1, 3, 1));
}

TEST_F(WalTest, CorruptionBeforeTheTailIsDataLoss) {
  auto w = MakeWal();
  ASSERT_TRUE(w->Save(nullptr, Range(1, 3, 1), true).ok());
  const std::string seg = Segments(disk_).at(0);
  const size_t second_start = Read(disk_, Path(seg)).size();
  ASSERT_TRUE(w->Save(nullptr, Range(4, 6, 1), true).ok());
  const size_t third_start = Read(disk_, Path(seg)).size();
  ASSERT_TRUE(w->Save(nullptr, Range(7, 9, 1), true).ok());
  w.reset();
  const std::string full = Read(disk_, Path(seg));
  // The second save: a sync mark (the first save was synced), then 4..6.
  WalRecord rec;
  const size_t mark = DecodeRecordAt(full, second_start, &rec);
  ASSERT_GT(mark, 0u);
  ASSERT_EQ(rec.type, WalRecord::Type::kSyncMark);

  // Flip one byte in each position of the second save (the third save's
  // sync mark proves it was synced): never accepted, never skipped.
  for (size_t pos = second_start; pos < third_start; ++pos) {
    SCOPED_TRACE(absl::StrCat("flip at ", pos));
    std::string bad = full;
    bad[pos] ^= 0x40;
    Overwrite(disk_, Path(seg), bad);
    auto r = Wal::Open(&disk_, kDir, 0);
    ASSERT_EQ(r.status().code(), absl::StatusCode::kDataLoss);
    const size_t at = pos < second_start + mark ? second_start
                                                : second_start + mark;
    EXPECT_THAT(r.status().message(),
                HasSubstr(absl::StrCat("wal: corrupt record in segment ", seg,
                                       " at offset ", at,
                                       ": bad record inside the synced "
                                       "prefix (synced through offset ",
                                       third_start, ")")));
    EXPECT_EQ(Read(disk_, Path(seg)), bad);  // nothing was repaired
  }
}

// Out-of-order write-back: the crash lost an earlier unsynced write and
// kept a later one. Past the synced prefix that is a torn write, not data
// loss: the segment is cut at the hole, the later records go too.
TEST_F(WalTest, LostWriteFollowedByValidOnesInTheUnsyncedTailIsTorn) {
  auto w = MakeWal();
  raft::HardState hs = HS(1, 1, 3);
  ASSERT_TRUE(w->Save(&hs, Range(1, 3, 1), true).ok());
  const std::string seg = Segments(disk_).at(0);
  const size_t synced = Read(disk_, Path(seg)).size();
  ASSERT_TRUE(w->Save(nullptr, Range(4, 6, 2), false).ok());
  const size_t second = Read(disk_, Path(seg)).size();
  raft::HardState hs2 = HS(2, 2, 6);
  ASSERT_TRUE(w->Save(&hs2, Range(7, 8, 2), false).ok());
  w.reset();
  const std::string full = Read(disk_, Path(seg));
  // The second save opens with a sync mark (claiming `synced`).
  WalRecord rec;
  const size_t mark = DecodeRecordAt(full, synced, &rec);
  ASSERT_EQ(rec.type, WalRecord::Type::kSyncMark);
  for (size_t lost_from : {synced, synced + 3, second - 1}) {
    SCOPED_TRACE(absl::StrCat("lost from ", lost_from));
    std::string image = full;
    for (size_t i = lost_from; i < second; ++i) image[i] = '\0';
    Overwrite(disk_, Path(seg), image);
    Recovered r = MustOpen(0);
    EXPECT_EQ(r.entries, Range(1, 3, 1));
    EXPECT_EQ(r.hard_state, hs);
    EXPECT_EQ(Read(disk_, Path(seg)).size(),
              lost_from < synced + mark ? synced : synced + mark);
    // It goes on from there.
    ASSERT_TRUE(r.wal->Save(nullptr, Range(4, 4, 3), true).ok());
    r.wal.reset();
    EXPECT_EQ(MustOpen(0).entries.size(), 4u);
  }
}

// Data loss is inside what a sync mark proves was synced, even when the
// only proof is past the bad record.
TEST_F(WalTest, HoleInTheSyncedPrefixIsDataLoss) {
  auto w = MakeWal();
  ASSERT_TRUE(w->Save(nullptr, Range(1, 3, 1), true).ok());
  const std::string seg = Segments(disk_).at(0);
  const size_t first = Read(disk_, Path(seg)).size();
  ASSERT_TRUE(w->Save(nullptr, Range(4, 6, 1), true).ok());
  const size_t second = Read(disk_, Path(seg)).size();
  ASSERT_TRUE(w->Save(nullptr, Range(7, 7, 1), false).ok());
  w.reset();
  std::string image = Read(disk_, Path(seg));
  for (size_t i = first; i < second; ++i) image[i] = '\0';
  Overwrite(disk_, Path(seg), image);
  auto r = Wal::Open(&disk_, kDir, 0);
  ASSERT_EQ(r.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(r.status().message(), HasSubstr("inside the synced prefix"));
}

// A well-formed sync-mark frame inside an entry's data (a client can put
// any bytes there) is not a sync mark: it does not sit at the offset it
// names.
TEST_F(WalTest, SyncMarkHiddenInEntryDataDoesNotCount) {
  // A sync mark frame claiming the first 10^6 bytes were synced, "at"
  // offset 2*10^6.
  std::string payload;
  coding::PutVarint64(&payload, 1000000);
  coding::PutVarint64(&payload, 2000000);
  const char type = 5;
  std::string frame;
  coding::PutFixed32(&frame, static_cast<uint32_t>(payload.size()));
  coding::PutFixed32(&frame, crc32c::Mask(crc32c::Extend(
                                 crc32c::Value(&type, 1), payload.data(),
                                 payload.size())));
  frame.push_back(type);
  frame += payload;

  auto w = MakeWal();
  ASSERT_TRUE(w->Save(nullptr, Range(1, 3, 1), true).ok());
  const std::string seg = Segments(disk_).at(0);
  const size_t synced = Read(disk_, Path(seg)).size();
  ASSERT_TRUE(w->Save(nullptr, {E(4, 1, "x" + frame)}, false).ok());
  w.reset();
  std::string image = Read(disk_, Path(seg));
  // The unsynced record's head is lost.
  for (size_t i = synced; i < synced + 9; ++i) image[i] = '\0';
  Overwrite(disk_, Path(seg), image);
  Recovered r = MustOpen(0);
  EXPECT_EQ(r.entries, Range(1, 3, 1));
}

TEST_F(WalTest, FailedSyncEndsTheWalAndItsDataMayBeGone) {
  auto w = MakeWal();
  ASSERT_TRUE(w->Save(nullptr, Range(1, 3, 1), true).ok());
  ASSERT_TRUE(w->Save(nullptr, Range(4, 6, 1), false).ok());
  disk_.set_faults(sim::DiskFaults{.eio_probability = 1,
                                   .failed_sync_write_probability = 0});
  EXPECT_FALSE(w->Save(nullptr, {}, true).ok());
  disk_.set_faults(sim::DiskFaults{});
  EXPECT_EQ(w->durable().last_index, 3u);
  // Not retried: the failed sync may have dropped 4..6 for good.
  EXPECT_FALSE(w->Save(nullptr, {}, true).ok());
  w.reset();
  disk_.Crash();
  EXPECT_EQ(MustOpen(0).entries, Range(1, 3, 1));
}

// The planted bug: a WAL that takes a failed fsync for done reports the
// lost entries durable; the next sync's mark then proves a synced prefix
// with a hole, which recovery refuses.
TEST_F(WalTest, PlantedIgnoreFsyncErrorLies) {
  WalOptions opts;
  opts.bugs = planted::Bugs::Of(planted::Bug::kIgnoreFsyncError);
  auto w = MakeWal(opts);
  ASSERT_TRUE(w->Save(nullptr, Range(1, 3, 1), true).ok());
  // Several pages: the ones the next write does not touch stay lost.
  std::vector<raft::Entry> big;
  for (uint64_t i = 4; i <= 6; ++i) {
    big.push_back(E(i, 1, std::string(3000, 'b')));
  }
  ASSERT_TRUE(w->Save(nullptr, big, false).ok());
  disk_.set_faults(sim::DiskFaults{.eio_probability = 1,
                                   .failed_sync_write_probability = 0});
  EXPECT_TRUE(w->Save(nullptr, {}, true).ok());
  disk_.set_faults(sim::DiskFaults{});
  EXPECT_EQ(w->durable().last_index, 6u);
  ASSERT_TRUE(w->Save(nullptr, Range(7, 7, 1), true).ok());
  w.reset();
  disk_.Crash();
  EXPECT_EQ(Wal::Open(&disk_, kDir, 0).status().code(),
            absl::StatusCode::kDataLoss);
}

// The planted bug: recovery that skips a torn record and keeps what
// follows makes up a state that never existed.
TEST_F(WalTest, PlantedTrustAfterTornKeepsLaterRecords) {
  auto w = MakeWal();
  ASSERT_TRUE(w->Save(nullptr, Range(1, 3, 1), true).ok());
  const std::string seg = Segments(disk_).at(0);
  const size_t synced = Read(disk_, Path(seg)).size();
  ASSERT_TRUE(w->Save(nullptr, Range(4, 5, 2), false).ok());
  raft::HardState hs = HS(2, 1, 3);
  ASSERT_TRUE(w->Save(&hs, {}, false).ok());
  w.reset();
  std::string image = Read(disk_, Path(seg));
  for (size_t i = synced; i < synced + 9; ++i) image[i] = '\0';
  Overwrite(disk_, Path(seg), image);
  WalOptions opts;
  opts.bugs = planted::Bugs::Of(planted::Bug::kWalTrustAfterTorn);
  Recovered bad = MustOpen(0, opts);
  EXPECT_EQ(bad.hard_state, hs);  // from past the hole
  bad.wal.reset();
  Overwrite(disk_, Path(seg), image);
  Recovered good = MustOpen(0);
  EXPECT_EQ(good.hard_state, raft::HardState());
  EXPECT_EQ(good.entries, Range(1, 3, 1));
}

// DecodeRecordAt walks a segment record by record, as a checker reading the
// disk's stable image does.
TEST_F(WalTest, DecodeRecordAtWalksASegment) {
  auto w = MakeWal();
  raft::HardState hs = HS(2, 1, 2);
  ASSERT_TRUE(w->Save(&hs, Range(1, 2, 2), true).ok());
  w.reset();
  const std::string data = Read(disk_, Path(Segments(disk_).at(0)));
  std::vector<WalRecord::Type> types;
  size_t off = 0;
  WalRecord rec;
  while (size_t n = DecodeRecordAt(data, off, &rec)) {
    types.push_back(rec.type);
    if (rec.type == WalRecord::Type::kEntries) {
      EXPECT_EQ(rec.entries, Range(1, 2, 2));
    }
    if (rec.type == WalRecord::Type::kHardState) {
      EXPECT_EQ(rec.hard_state, hs);
    }
    off += n;
  }
  EXPECT_EQ(off, data.size());
  // Every write after a sync opens with a sync mark.
  EXPECT_EQ(types, (std::vector<WalRecord::Type>{
                       WalRecord::Type::kSegmentHeader,
                       WalRecord::Type::kSyncMark,
                       WalRecord::Type::kSnapshotMarker,
                       WalRecord::Type::kSyncMark, WalRecord::Type::kEntries,
                       WalRecord::Type::kHardState}));
  EXPECT_EQ(DecodeRecordAt(data, 1, &rec), 0u);
  EXPECT_EQ(DecodeRecordAt(data, data.size() + 5, &rec), 0u);
}

TEST_F(WalTest, CorruptionInAnOlderSegmentIsDataLoss) {
  WalOptions opts;
  std::vector<std::string> segs = SmallSegments(&opts);
  ASSERT_GE(segs.size(), 3u);
  // Truncating the last record of a non-last segment is not a torn tail.
  std::string first = Read(disk_, Path(segs[0]));
  Overwrite(disk_, Path(segs[0]), first.substr(0, first.size() - 3));
  auto r = Wal::Open(&disk_, kDir, 0, opts);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(r.status().message(), HasSubstr(segs[0]));
  Overwrite(disk_, Path(segs[0]), first);
  EXPECT_TRUE(Wal::Open(&disk_, kDir, 0, opts).ok());
}

// A disk may fill a file it appends to ahead of the writes (env.h): zeros
// after a segment's records end it, in any segment; Open truncates them
// from the last one and appends after its records. Anything but zeros
// there is still corruption.
TEST_F(WalTest, ZeroTailsEndSegments) {
  WalOptions opts;
  std::vector<std::string> segs = SmallSegments(&opts);
  ASSERT_GE(segs.size(), 3u);
  std::vector<std::string> contents;
  for (const std::string& n : segs) {
    contents.push_back(Read(disk_, Path(n)));
    Overwrite(disk_, Path(n), contents.back() + std::string(5000, '\0'));
  }
  {
    Recovered r = MustOpen(0, opts);
    EXPECT_EQ(r.entries, Range(1, 30, 1));
    EXPECT_EQ(Read(disk_, Path(segs.back())), contents.back());
    ASSERT_TRUE(r.wal->Save(nullptr, {E(31, 2)}, true).ok());
  }
  Recovered r = MustOpen(0, opts);
  ASSERT_EQ(r.entries.size(), 31u);
  EXPECT_EQ(r.entries.back(), E(31, 2));

  // A byte that is not zero after them: the older segment is corrupt.
  Overwrite(disk_, Path(segs[0]),
            contents[0] + std::string(100, '\0') + "x" +
                std::string(100, '\0'));
  auto bad = Wal::Open(&disk_, kDir, 0, opts);
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(bad.status().message(), HasSubstr(segs[0]));
}

TEST_F(WalTest, MissingMiddleSegmentIsDataLoss) {
  WalOptions opts;
  std::vector<std::string> segs = SmallSegments(&opts);
  ASSERT_GE(segs.size(), 3u);
  ASSERT_TRUE(disk_.Remove(Path(segs[1])).ok());
  auto r = Wal::Open(&disk_, kDir, 0, opts);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(r.status().message(), HasSubstr("missing segment"));
}

TEST_F(WalTest, SegmentsAreCutAndReleased) {
  WalOptions opts;
  opts.segment_bytes = 300;
  auto w = MakeWal(opts);
  for (uint64_t i = 1; i <= 40; ++i) {
    raft::HardState hs = HS(1, 1, i - 1);
    ASSERT_TRUE(w->Save(&hs, {E(i, 1)}, i % 3 == 0).ok());
  }
  std::vector<std::string> before = Segments(disk_);
  ASSERT_GE(before.size(), 4u);
  EXPECT_EQ(before[0], "0000000000000000-0000000000000001.wal");
  // Segment names carry consecutive sequence numbers.
  for (size_t i = 0; i < before.size(); ++i) {
    EXPECT_EQ(before[i].substr(0, 16), absl::StrFormat("%016x", i));
  }

  ASSERT_TRUE(w->SaveSnapshotMarker(Meta(30, 1)).ok());
  ASSERT_TRUE(w->ReleaseBefore(30).ok());
  std::vector<std::string> after = Segments(disk_);
  EXPECT_LT(after.size(), before.size());
  EXPECT_NE(after[0], before[0]);
  raft::HardState last = HS(1, 1, 39);
  ASSERT_TRUE(w->Save(&last, Range(41, 45, 2), true).ok());
  w.reset();
  disk_.Crash();

  Recovered r = MustOpen(30, opts);
  EXPECT_EQ(r.snapshot, Meta(30, 1));
  EXPECT_EQ(r.hard_state, last);
  ASSERT_EQ(r.entries.size(), 15u);
  EXPECT_EQ(r.entries.front(), E(31, 1));
  EXPECT_EQ(r.entries.back(), E(45, 2));
  // The log before the snapshot is gone: a marker restated by a later
  // segment may survive, but the state after it cannot be rebuilt.
  EXPECT_FALSE(Wal::Open(&disk_, kDir, 0, opts).ok());
  auto markers = Wal::ReadMarkers(&disk_, kDir);
  ASSERT_TRUE(markers.ok());
  ASSERT_FALSE(markers->empty());
  EXPECT_EQ(markers->back(), Meta(30, 1));
}

TEST_F(WalTest, ReleaseKeepsTheHardStateOfRemovedSegments) {
  WalOptions opts;
  opts.segment_bytes = 150;
  auto w = MakeWal(opts);
  raft::HardState hs = HS(7, 3, 5);
  ASSERT_TRUE(w->Save(&hs, Range(1, 5, 7), true).ok());
  // Many entries without a hard state; the segments that follow restate it.
  for (uint64_t i = 6; i <= 30; ++i) {
    ASSERT_TRUE(w->Save(nullptr, {E(i, 7)}, true).ok());
  }
  ASSERT_TRUE(w->SaveSnapshotMarker(Meta(30, 7)).ok());
  ASSERT_TRUE(w->ReleaseBefore(30).ok());
  // Everything before the last segment went.
  EXPECT_EQ(Segments(disk_).size(), 1u);
  w.reset();
  Recovered r = MustOpen(30, opts);
  EXPECT_EQ(r.hard_state, hs);
  EXPECT_TRUE(r.entries.empty());
}

TEST_F(WalTest, ReleaseKeepsEntriesAfterTheMarker) {
  WalOptions opts;
  opts.segment_bytes = 200;
  auto w = MakeWal(opts);
  for (uint64_t i = 1; i <= 30; ++i) {
    ASSERT_TRUE(w->Save(nullptr, {E(i, 1)}, true).ok());
  }
  // An old snapshot: segments holding entries after 5 must stay.
  ASSERT_TRUE(w->SaveSnapshotMarker(Meta(5, 1)).ok());
  ASSERT_TRUE(w->ReleaseBefore(100).ok());
  w.reset();
  Recovered r = MustOpen(5, opts);
  EXPECT_EQ(r.entries, Range(6, 30, 1));
}

TEST_F(WalTest, LeftoverTemporarySegmentIsIgnored) {
  auto w = MakeWal();
  ASSERT_TRUE(w->Save(nullptr, Range(1, 3, 1), true).ok());
  w.reset();
  Overwrite(disk_, Path("0000000000000001-0000000000000004.wal.tmp"),
            "half a segment");
  Recovered r = MustOpen(0);
  EXPECT_EQ(r.entries, Range(1, 3, 1));
  EXPECT_FALSE(disk_.Exists(Path("0000000000000001-0000000000000004.wal.tmp")));
}

TEST_F(WalTest, CrashDuringSegmentCutIsRecoverable) {
  WalOptions opts;
  opts.segment_bytes = 200;
  auto w = MakeWal(opts);
  for (uint64_t i = 1; i <= 20; ++i) {
    ASSERT_TRUE(w->Save(nullptr, {E(i, 1)}, false).ok());
    disk_.set_faults(sim::DiskFaults{.crash_keep_unsynced_probability = 0.3,
                                     .crash_tear_probability = 0.5});
  }
  disk_.Crash();
  auto r = Wal::Open(&disk_, kDir, 0, opts);
  ASSERT_TRUE(r.ok()) << r.status();
  // Cuts sync: everything up to the last cut survived.
  EXPECT_GE(r->entries.size(), 1u);
  for (size_t i = 0; i < r->entries.size(); ++i) {
    EXPECT_EQ(r->entries[i], E(i + 1, 1));
  }
}

TEST_F(WalTest, FailStopAfterAWriteError) {
  auto w = MakeWal();
  disk_.set_faults(sim::DiskFaults{.eio_probability = 1.0});
  EXPECT_FALSE(w->Save(nullptr, Range(1, 2, 1), true).ok());
  disk_.set_faults(sim::DiskFaults{});
  EXPECT_FALSE(w->Save(nullptr, Range(1, 2, 1), true).ok());
  EXPECT_FALSE(w->SaveSnapshotMarker(Meta(1, 1)).ok());
  EXPECT_EQ(w->durable().last_index, 0u);
}

TEST_F(WalTest, RejectsNonConsecutiveEntries) {
  auto w = MakeWal();
  EXPECT_EQ(w->Save(nullptr, {E(1, 1), E(3, 1)}, true).code(),
            absl::StatusCode::kInvalidArgument);
  // Nothing was written; the WAL is still usable.
  EXPECT_TRUE(w->Save(nullptr, {E(1, 1)}, true).ok());
}

TEST_F(WalTest, LargeBatchesSpanSeveralRecords) {
  auto w = MakeWal();
  std::vector<raft::Entry> big;
  for (uint64_t i = 1; i <= 40; ++i)
    big.push_back(E(i, 1, std::string(100000, 'a' + i % 26)));
  ASSERT_TRUE(w->Save(nullptr, big, true).ok());
  w.reset();
  Recovered r = MustOpen(0);
  EXPECT_EQ(r.entries, big);
}

// ---- snapshot files ----

raft::Snapshot Snap(uint64_t index, uint64_t term, std::string data) {
  raft::Snapshot s;
  s.metadata = Meta(index, term);
  s.data = std::move(data);
  return s;
}

class SnapshotterTest : public ::testing::Test {
 protected:
  SnapshotterTest() : disk_(env::SeededRng(7)), snap_(&disk_, "data/snap") {
    EXPECT_TRUE(disk_.CreateDir("data").ok());
    EXPECT_TRUE(disk_.SyncDir("").ok());
  }
  std::vector<std::string> Files() {
    auto names = disk_.List("data/snap");
    return names.ok() ? *names : std::vector<std::string>();
  }
  sim::SimDisk disk_;
  Snapshotter snap_;
};

TEST_F(SnapshotterTest, SaveLoadRoundTrip) {
  raft::Snapshot s = Snap(10, 2, std::string(10000, 'z') + "tail");
  ASSERT_TRUE(snap_.Save(s).ok());
  EXPECT_THAT(Files(),
              ::testing::ElementsAre("0000000000000002-000000000000000a.snap"));
  // Compressed.
  EXPECT_LT(
      Read(disk_, "data/snap/0000000000000002-000000000000000a.snap").size(),
      1000u);
  disk_.Crash();  // durable once Save returned
  auto got = snap_.LoadNewest({Meta(10, 2)});
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got, s);
}

// Data the last file could not shrink by 5% gets a much faster zstd level
// next time, until a file shrinks again; every file loads either way.
TEST_F(SnapshotterTest, IncompressibleDataGetsTheFasterLevelNextTime) {
  env::SeededRng rng(11);
  std::string random(200000, '\0');
  for (char& c : random) c = static_cast<char>(rng.Next());
  const std::string text = [] {
    std::string t;
    for (int i = 0; i < 5000; ++i) t += "key-" + std::to_string(i) + "=v;";
    return t;
  }();
  const int fast = snap_.next_zstd_level();
  ASSERT_TRUE(snap_.Save(Snap(10, 2, random)).ok());
  const int faster = snap_.next_zstd_level();
  EXPECT_LT(faster, fast);
  ASSERT_TRUE(snap_.Save(Snap(20, 2, random)).ok());
  EXPECT_EQ(snap_.next_zstd_level(), faster);
  ASSERT_TRUE(snap_.Save(Snap(30, 2, text)).ok());  // at the faster level
  EXPECT_EQ(snap_.next_zstd_level(), fast) << "text shrinks even so";
  EXPECT_LT(
      Read(disk_, "data/snap/0000000000000002-000000000000001e.snap").size(),
      text.size() * 19 / 20);
  for (auto [index, data] : {std::pair<uint64_t, std::string>{20, random},
                             {30, text}}) {
    auto got = snap_.LoadNewest({Meta(index, 2)});
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_EQ(got->data, data);
  }
}

// A disk whose files note the largest read asked of them and how much
// they gave, and which counts the files read whole.
class ReadSizeDisk final : public env::DiskWrapper {
 public:
  explicit ReadSizeDisk(env::Disk* target) : env::DiskWrapper(target) {}
  absl::StatusOr<std::string> ReadAll(const std::string& path) override {
    ++whole;
    return env::DiskWrapper::ReadAll(path);
  }
  absl::StatusOr<std::unique_ptr<env::ReadableFile>> OpenRead(
      const std::string& path) override {
    auto f = env::DiskWrapper::OpenRead(path);
    if (!f.ok()) return f;
    return std::unique_ptr<env::ReadableFile>(new File(*std::move(f), this));
  }
  size_t largest = 0;
  size_t total = 0;
  int whole = 0;

 private:
  class File final : public env::ReadableFile {
   public:
    File(std::unique_ptr<env::ReadableFile> f, ReadSizeDisk* disk)
        : f_(std::move(f)), disk_(disk) {}
    uint64_t size() const override { return f_->size(); }
    absl::StatusOr<size_t> Read(char* buf, size_t n) override {
      disk_->largest = std::max(disk_->largest, n);
      auto got = f_->Read(buf, n);
      if (got.ok()) disk_->total += *got;
      return got;
    }

   private:
    std::unique_ptr<env::ReadableFile> f_;
    ReadSizeDisk* disk_;
  };
};

// LoadNewest reads the file a piece at a time, once, decompressing each
// as it comes: a restart never holds the whole file beside the image. A
// byte changed past the first piece is still found (the checksum is
// checked at the end, whatever zstd made of it).
TEST_F(SnapshotterTest, LoadReadsTheFileInPieces) {
  env::SeededRng rng(5);
  std::string random(20 << 20, '\0');  // incompressible: a 20 MiB file
  for (char& c : random) c = static_cast<char>(rng.Next());
  const raft::Snapshot s = Snap(10, 2, random);
  ASSERT_TRUE(snap_.Save(s).ok());
  ReadSizeDisk disk(&disk_);
  Snapshotter loader(&disk, "data/snap");
  auto got = loader.LoadNewest({Meta(10, 2)});
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got, s);
  const std::string path = "data/snap/0000000000000002-000000000000000a.snap";
  std::string file = Read(disk_, path);
  EXPECT_EQ(disk.whole, 0);
  EXPECT_LE(disk.largest, size_t{4} << 20);
  EXPECT_EQ(disk.total, file.size());
  for (size_t at : {file.size() / 2, file.size() - 5, file.size() - 1}) {
    std::string bad = file;
    bad[at] ^= 0x10;
    auto f = disk_.Create(path);
    ASSERT_TRUE(f.ok());
    ASSERT_TRUE((*f)->Append(bad).ok());
    got = loader.LoadNewest({Meta(10, 2)});
    EXPECT_EQ(got.status().code(), absl::StatusCode::kDataLoss) << at;
    EXPECT_THAT(std::string(got.status().message()),
                ::testing::HasSubstr("checksum mismatch"))
        << at;
  }
}

// A disk whose files note the largest piece appended to them.
class AppendSizeDisk final : public env::DiskWrapper {
 public:
  explicit AppendSizeDisk(env::Disk* target) : env::DiskWrapper(target) {}
  absl::StatusOr<std::unique_ptr<env::WritableFile>> Create(
      const std::string& path) override {
    auto f = env::DiskWrapper::Create(path);
    if (!f.ok()) return f;
    return std::unique_ptr<env::WritableFile>(
        new File(*std::move(f), &largest));
  }
  size_t largest = 0;

 private:
  class File final : public env::WritableFile {
   public:
    File(std::unique_ptr<env::WritableFile> f, size_t* largest)
        : f_(std::move(f)), largest_(largest) {}
    absl::Status Append(std::string_view data) override {
      *largest_ = std::max(*largest_, data.size());
      return f_->Append(data);
    }
    absl::Status Sync() override { return f_->Sync(); }
    absl::Status Close() override { return f_->Close(); }

   private:
    std::unique_ptr<env::WritableFile> f_;
    size_t* largest_;
  };
};

// A whole image saved at once (a received snapshot, TakeSnapshot) reaches
// the file in pieces of about a megabyte, not as one compressed copy of
// it held in memory first.
TEST_F(SnapshotterTest, SaveWritesALargeImageInPieces) {
  env::SeededRng rng(9);
  std::string random(12 << 20, '\0');  // incompressible
  for (char& c : random) c = static_cast<char>(rng.Next());
  AppendSizeDisk disk(&disk_);
  Snapshotter saver(&disk, "data/snap");
  const raft::Snapshot s = Snap(10, 2, random);
  ASSERT_TRUE(saver.Save(s).ok());
  EXPECT_GT(disk.largest, 0u);
  EXPECT_LE(disk.largest, (1u << 20) + ZSTD_CStreamOutSize());
  auto got = snap_.LoadNewest({Meta(10, 2)});
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got, s);
}

TEST_F(SnapshotterTest, LoadNewestOnlyConsidersValidMarkers) {
  ASSERT_TRUE(snap_.Save(Snap(10, 2, "a")).ok());
  ASSERT_TRUE(snap_.Save(Snap(20, 3, "b")).ok());
  // 20 has no marker (a crash before the WAL recorded it).
  auto got = snap_.LoadNewest({Meta(0, 0), Meta(10, 2)});
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->data, "a");
  got = snap_.LoadNewest({Meta(0, 0), Meta(10, 2), Meta(20, 3)});
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->data, "b");
  // Same index, different term: not a match.
  EXPECT_TRUE(absl::IsNotFound(snap_.LoadNewest({Meta(20, 4)}).status()));
  EXPECT_TRUE(absl::IsNotFound(snap_.LoadNewest({Meta(0, 0)}).status()));
}

TEST_F(SnapshotterTest, NoDirectoryIsNotFound) {
  EXPECT_TRUE(absl::IsNotFound(snap_.LoadNewest({Meta(0, 0)}).status()));
  EXPECT_TRUE(snap_.Prune(2).ok());
}

TEST_F(SnapshotterTest, CorruptNewestFallsBackToAnOlderValidOne) {
  ASSERT_TRUE(snap_.Save(Snap(10, 2, "old")).ok());
  ASSERT_TRUE(snap_.Save(Snap(20, 3, "new")).ok());
  const std::string path = "data/snap/0000000000000003-0000000000000014.snap";
  std::string data = Read(disk_, path);
  data[data.size() / 2] ^= 1;
  auto f = disk_.Create(path);
  ASSERT_TRUE(f.ok());
  ASSERT_TRUE((*f)->Append(data).ok());
  std::vector<raft::SnapshotMetadata> valid = {Meta(10, 2), Meta(20, 3)};
  auto got = snap_.LoadNewest(valid);
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->data, "old");
  // Without the older one the corrupt file is DataLoss, not NotFound.
  auto only_new = snap_.LoadNewest({Meta(20, 3)});
  EXPECT_EQ(only_new.status().code(), absl::StatusCode::kDataLoss);
}

TEST_F(SnapshotterTest, TruncatedOrMisnamedFilesAreCorrupt) {
  ASSERT_TRUE(snap_.Save(Snap(10, 2, "x")).ok());
  const std::string path = "data/snap/0000000000000002-000000000000000a.snap";
  const std::string good = Read(disk_, path);
  for (size_t cut : {size_t{0}, size_t{5}, size_t{12}, good.size() - 1}) {
    auto f = disk_.Create(path);
    ASSERT_TRUE(f.ok());
    ASSERT_TRUE((*f)->Append(good.substr(0, cut)).ok());
    EXPECT_EQ(snap_.LoadNewest({Meta(10, 2)}).status().code(),
              absl::StatusCode::kDataLoss);
  }
  // Right contents under another snapshot's name.
  auto f = disk_.Create("data/snap/0000000000000002-000000000000000b.snap");
  ASSERT_TRUE(f.ok());
  ASSERT_TRUE((*f)->Append(good).ok());
  EXPECT_EQ(snap_.LoadNewest({Meta(11, 2)}).status().code(),
            absl::StatusCode::kDataLoss);
}

TEST_F(SnapshotterTest, PruneKeepsTheNewestAndRemovesTemporaries) {
  for (uint64_t i = 1; i <= 5; ++i) {
    ASSERT_TRUE(snap_.Save(Snap(i * 10, i, absl::StrCat("s", i))).ok());
  }
  auto tmp =
      disk_.Create("data/snap/0000000000000009-0000000000000063.snap.tmp");
  ASSERT_TRUE(tmp.ok());
  ASSERT_TRUE((*tmp)->Append("partial").ok());
  // A temporary is never loaded.
  EXPECT_TRUE(absl::IsNotFound(snap_.LoadNewest({Meta(99, 9)}).status()));

  ASSERT_TRUE(snap_.Prune(2).ok());
  EXPECT_THAT(Files(),
              ::testing::ElementsAre("0000000000000004-0000000000000028.snap",
                                     "0000000000000005-0000000000000032.snap"));
  disk_.Crash();  // the removals were made durable
  EXPECT_EQ(Files().size(), 2u);
}

// Delta files: a chain is the newest whole snapshot at or below a valid
// file, then the deltas after it; pruning keeps a chain's files.
TEST_F(SnapshotterTest, ChainsPruningAndFilesAboveTheNewest) {
  auto save = [&](uint64_t index, bool delta) {
    raft::Snapshot s = Snap(index, 2, absl::StrCat(delta ? "d" : "w", index));
    auto w = snap_.Begin(s.metadata, s.data.size(), delta);
    ASSERT_TRUE(w.ok());
    ASSERT_TRUE((*w)->Append(s.data).ok());
    ASSERT_TRUE((*w)->Finish().ok());
  };
  save(10, false);
  save(20, true);
  save(30, false);
  save(40, true);
  save(50, true);
  auto names = [](const std::vector<SnapFileRef>& chain) {
    std::vector<uint64_t> out;
    for (const SnapFileRef& f : chain) out.push_back(f.index);
    return out;
  };
  auto chains =
      snap_.Chains({Meta(10, 2), Meta(20, 2), Meta(40, 2), Meta(50, 2)});
  ASSERT_TRUE(chains.ok());
  ASSERT_EQ(chains->size(), 4u);
  EXPECT_THAT(names((*chains)[0]), ::testing::ElementsAre(30, 40, 50));
  EXPECT_THAT(names((*chains)[1]), ::testing::ElementsAre(30, 40));
  EXPECT_THAT(names((*chains)[2]), ::testing::ElementsAre(10, 20));
  EXPECT_THAT(names((*chains)[3]), ::testing::ElementsAre(10));
  auto d = snap_.Load((*chains)[0][2]);
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->data, "d50");
  // LoadNewest reads whole snapshots only.
  auto whole = snap_.LoadNewest({Meta(30, 2), Meta(50, 2)});
  ASSERT_TRUE(whole.ok());
  EXPECT_EQ(whole->data, "w30");
  // A whole snapshot at a delta's index counts as the newer of the two.
  save(50, false);
  chains = snap_.Chains({Meta(50, 2)});
  ASSERT_TRUE(chains.ok());
  ASSERT_EQ(chains->size(), 2u);
  EXPECT_THAT(names((*chains)[0]), ::testing::ElementsAre(50));
  EXPECT_FALSE((*chains)[0][0].delta);
  // Keep one file, and the chain from 30.
  ASSERT_TRUE(snap_.Prune(1, 30).ok());
  EXPECT_THAT(Files(),
              ::testing::ElementsAre("0000000000000002-000000000000001e.snap",
                                     "0000000000000002-0000000000000028.delta",
                                     "0000000000000002-0000000000000032.delta",
                                     "0000000000000002-0000000000000032.snap"));
  // A delta whose whole snapshot was removed has no chain.
  ASSERT_TRUE(snap_.Prune(1, 40).ok());
  chains = snap_.Chains({Meta(40, 2)});
  ASSERT_TRUE(chains.ok());
  EXPECT_TRUE(chains->empty());
  // A restart removes the files above the one it restored from.
  ASSERT_TRUE(snap_.RemoveAbove(40).ok());
  disk_.Crash();
  EXPECT_THAT(Files(), ::testing::ElementsAre(
                           "0000000000000002-0000000000000028.delta"));
}

TEST_F(SnapshotterTest, UnfinishedSaveLeavesNoSnapshot) {
  raft::Snapshot s = Snap(10, 2, "x");
  // Every Sync fails: Save fails and a crash leaves no file under a real name.
  disk_.set_faults(sim::DiskFaults{.eio_probability = 1.0});
  EXPECT_FALSE(snap_.Save(s).ok());
  disk_.set_faults(sim::DiskFaults{});
  disk_.Crash();
  EXPECT_TRUE(absl::IsNotFound(snap_.LoadNewest({Meta(10, 2)}).status()));
}

// Incremental snapshots stream their image into the file a piece at a time.
TEST_F(SnapshotterTest, StreamedInPiecesLoadsAsOne) {
  std::string data;
  for (int i = 0; data.size() < (3u << 20); ++i) {
    absl::StrAppend(&data, "key", i * 7919 % 100003, "=value", i, ";");
  }
  raft::Snapshot s = Snap(30, 4, data);
  auto w = snap_.Begin(s.metadata, s.data.size());
  ASSERT_TRUE(w.ok()) << w.status();
  for (size_t at = 0; at < data.size(); at += 100000) {
    ASSERT_TRUE((*w)->Append(std::string_view(data).substr(at, 100000)).ok());
  }
  const std::string name = "0000000000000004-000000000000001e.snap";
  // Not a snapshot until it is finished.
  EXPECT_THAT(Files(), ::testing::ElementsAre(name + ".tmp"));
  EXPECT_FALSE(snap_.LoadNewest({Meta(30, 4)}).ok());
  ASSERT_TRUE((*w)->Finish().ok());
  EXPECT_THAT(Files(), ::testing::ElementsAre(name));
  EXPECT_EQ((*w)->file_bytes(), Read(disk_, "data/snap/" + name).size());
  disk_.Crash();  // durable once Finish returned
  auto got = snap_.LoadNewest({Meta(30, 4)});
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got, s);
}

TEST_F(SnapshotterTest, AbandonedStreamLeavesOnlyATemporary) {
  ASSERT_TRUE(snap_.Save(Snap(10, 2, "old")).ok());
  {
    auto w = snap_.Begin(Meta(20, 3), 100);
    ASSERT_TRUE(w.ok());
    ASSERT_TRUE((*w)->Append(std::string(50, 'n')).ok());
  }  // dropped (a compaction came under the image, or the node stopped)
  disk_.Crash();
  auto got = snap_.LoadNewest({Meta(10, 2), Meta(20, 3)});
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->data, "old");
  ASSERT_TRUE(snap_.Prune(2).ok());
  EXPECT_THAT(Files(), ::testing::ElementsAre(
                           "0000000000000002-000000000000000a.snap"));
}

TEST_F(SnapshotterTest, ReadsVersionOneFiles) {
  // A file as written before snapshots were streamed: "detcdsn1", the
  // checksum of the body, then the body.
  raft::Snapshot s = Snap(10, 2, std::string(5000, 'q') + "end");
  std::string raw;
  raft::EncodeSnapshot(&raw, s);
  std::string body(ZSTD_compressBound(raw.size()), '\0');
  body.resize(ZSTD_compress(body.data(), body.size(), raw.data(), raw.size(),
                            3));
  std::string file = "detcdsn1";
  coding::PutFixed32(&file, crc32c::Mask(crc32c::Value(body)));
  file += body;
  ASSERT_TRUE(disk_.CreateDir("data/snap").ok());
  auto f = disk_.Create("data/snap/0000000000000002-000000000000000a.snap");
  ASSERT_TRUE(f.ok());
  ASSERT_TRUE((*f)->Append(file).ok());
  ASSERT_TRUE((*f)->Sync().ok());
  auto got = snap_.LoadNewest({Meta(10, 2)});
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got, s);
  // A flipped byte is still caught.
  file[20] ^= 1;
  auto g = disk_.Create("data/snap/0000000000000002-000000000000000a.snap");
  ASSERT_TRUE(g.ok());
  ASSERT_TRUE((*g)->Append(file).ok());
  EXPECT_TRUE(absl::IsDataLoss(snap_.LoadNewest({Meta(10, 2)}).status()));
}

}  // namespace
}  // namespace detcd::wal
