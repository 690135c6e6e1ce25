// SimDisk: the crash model (unsynced data and directory entries are lost,
// kept out of order or torn, synced ones survive), Linux's failed fsync,
// power cuts, stalls, the durable view for checkers and injected faults.
#include <gtest/gtest.h>

#include <functional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "sim/sim_disk.h"

namespace detcd::sim {
namespace {

std::string Read(SimDisk& d, const std::string& path) {
  auto r = d.ReadAll(path);
  return r.ok() ? *r : absl::StrCat("<", r.status().ToString(), ">");
}

// A dir "d" that is durable, with file "d/f" holding `synced` (durable) and
// `extra` (appended, not synced).
void MakeFile(SimDisk& d, const std::string& synced, const std::string& extra) {
  ASSERT_TRUE(d.CreateDir("d").ok());
  ASSERT_TRUE(d.SyncDir("").ok());  // d's own entry lives in the root
  auto f = d.Create("d/f");
  ASSERT_TRUE(f.ok());
  ASSERT_TRUE((*f)->Append(synced).ok());
  ASSERT_TRUE((*f)->Sync().ok());
  ASSERT_TRUE(d.SyncDir("d").ok());
  ASSERT_TRUE((*f)->Append(extra).ok());
}

// `n` bytes in which every 8-byte group names its offset: a byte that moved
// or came from elsewhere shows.
std::string Pattern(size_t n) {
  std::string s;
  for (size_t i = 0; s.size() < n; i += 8) {
    s += absl::StrFormat("%07x|", i);
  }
  s.resize(n);
  return s;
}

TEST(SimDisk, ReadsSeeUnsyncedWrites) {
  SimDisk d(env::SeededRng(1));
  MakeFile(d, "abc", "def");
  EXPECT_EQ(Read(d, "d/f"), "abcdef");
  EXPECT_EQ(d.used_bytes(), 6u);
}

TEST(SimDisk, CrashDropsUnsyncedData) {
  SimDisk d(env::SeededRng(1));
  MakeFile(d, "abc", "def");
  d.Crash();
  EXPECT_EQ(Read(d, "d/f"), "abc");
}

TEST(SimDisk, CrashCanKeepUnsyncedData) {
  SimDisk d(env::SeededRng(1));
  DiskFaults f;
  f.crash_keep_unsynced_probability = 1;
  d.set_faults(f);
  MakeFile(d, "abc", "def");
  d.Crash();
  EXPECT_EQ(Read(d, "d/f"), "abcdef");
}

TEST(SimDisk, TornWritesKeepSyncedPrefix) {
  for (uint64_t seed = 1; seed <= 50; ++seed) {
    SimDisk d{env::SeededRng(seed)};
    DiskFaults f;
    f.crash_tear_probability = 1;
    d.set_faults(f);
    MakeFile(d, "synced", "0123456789");
    d.Crash();
    std::string got = Read(d, "d/f");
    ASSERT_GE(got.size(), 6u);
    EXPECT_EQ(got.substr(0, 6), "synced") << "seed " << seed;
    EXPECT_LE(got.size(), 16u);
  }
}

TEST(SimDisk, FileNotInDurableDirectoryVanishes) {
  SimDisk d(env::SeededRng(1));
  ASSERT_TRUE(d.CreateDir("d").ok());
  ASSERT_TRUE(d.SyncDir("d").ok());
  ASSERT_TRUE(d.SyncDir("").ok());
  auto f = d.Create("d/new");
  ASSERT_TRUE(f.ok());
  ASSERT_TRUE((*f)->Append("x").ok());
  ASSERT_TRUE((*f)->Sync().ok());  // the data, but not the entry
  d.Crash();
  EXPECT_FALSE(d.Exists("d/new"));
  EXPECT_TRUE(d.Exists("d"));
}

TEST(SimDisk, UnsyncedDirectoryVanishes) {
  SimDisk d(env::SeededRng(1));
  ASSERT_TRUE(d.CreateDir("d").ok());
  d.Crash();
  EXPECT_FALSE(d.Exists("d"));
}

// A directory's entry lives in its parent: syncing the directory itself
// makes its contents durable, not its existence.
TEST(SimDisk, NewDirectoryIsDurableOnlyOnceItsParentIsSynced) {
  SimDisk d(env::SeededRng(1));
  ASSERT_TRUE(d.CreateDir("a").ok());
  ASSERT_TRUE(d.CreateDir("a/b").ok());
  auto f = d.Create("a/b/f");
  ASSERT_TRUE(f.ok());
  ASSERT_TRUE((*f)->Append("x").ok());
  ASSERT_TRUE((*f)->Sync().ok());
  ASSERT_TRUE(d.SyncDir("a/b").ok());
  ASSERT_TRUE(d.SyncDir("a").ok());  // b's entry, but a's is not durable
  d.Crash();
  EXPECT_FALSE(d.Exists("a"));
  EXPECT_FALSE(d.Exists("a/b/f"));

  ASSERT_TRUE(d.CreateDir("a").ok());
  ASSERT_TRUE(d.CreateDir("a/b").ok());
  ASSERT_TRUE(d.Create("a/b/f").ok());
  ASSERT_TRUE(d.SyncDir("a/b").ok());
  ASSERT_TRUE(d.SyncDir("").ok());  // a, but not a's entry for b
  d.Crash();
  EXPECT_TRUE(d.Exists("a"));
  EXPECT_FALSE(d.Exists("a/b"));

  ASSERT_TRUE(d.CreateDir("a/b").ok());
  ASSERT_TRUE(d.Create("a/b/f").ok());
  ASSERT_TRUE(d.SyncDir("a/b").ok());
  ASSERT_TRUE(d.SyncDir("a").ok());
  d.Crash();
  EXPECT_TRUE(d.Exists("a/b/f"));
}

// Disks write back dirty pages in any order: across seeds, some crash keeps
// a later unsynced page and loses an earlier one. Whatever survives is the
// synced prefix, then bytes that are either what was written at that offset
// or zeros; synced bytes are never touched.
TEST(SimDisk, CrashKeepsUnsyncedPagesOutOfOrder) {
  const std::string synced = Pattern(100);
  const std::string all = Pattern(5 * SimDisk::kPageBytes);
  const std::string extra = all.substr(synced.size());
  bool out_of_order = false;
  for (uint64_t seed = 1; seed <= 200; ++seed) {
    SimDisk d{env::SeededRng(seed)};
    DiskFaults f;
    f.crash_keep_unsynced_probability = 0.5;
    d.set_faults(f);
    MakeFile(d, synced, extra);
    d.Crash();
    const std::string got = Read(d, "d/f");
    ASSERT_GE(got.size(), synced.size()) << "seed " << seed;
    ASSERT_LE(got.size(), all.size()) << "seed " << seed;
    EXPECT_EQ(got.substr(0, synced.size()), synced) << "seed " << seed;
    bool hole = false;
    for (size_t p = 0; p < got.size(); p += SimDisk::kPageBytes) {
      const size_t n = std::min(SimDisk::kPageBytes, got.size() - p);
      const std::string page = got.substr(p, n);
      if (page == all.substr(p, n)) {
        if (hole) out_of_order = true;
      } else {
        // A lost page: zeros after the synced bytes it shares a page with.
        const size_t from = p == 0 ? synced.size() : 0;
        EXPECT_EQ(page.substr(from), std::string(n - from, '\0'))
            << "seed " << seed << " page at " << p;
        hole = true;
      }
    }
  }
  EXPECT_TRUE(out_of_order);
}

// A torn page: some of its 512-byte sectors made it, some did not, and a
// half-written one may end in garbage; never before the synced size.
TEST(SimDisk, TornPagesTearAtSectors) {
  const std::string synced = Pattern(1000);
  const std::string all = Pattern(SimDisk::kPageBytes * 2);
  bool sector_hole = false;
  for (uint64_t seed = 1; seed <= 100; ++seed) {
    SimDisk d{env::SeededRng(seed)};
    DiskFaults f;
    f.crash_tear_probability = 1;
    d.set_faults(f);
    MakeFile(d, synced, all.substr(synced.size()));
    d.Crash();
    const std::string got = Read(d, "d/f");
    ASSERT_GE(got.size(), synced.size());
    EXPECT_EQ(got.substr(0, synced.size()), synced) << "seed " << seed;
    bool lost = false;
    for (size_t s = 0; s < got.size(); s += SimDisk::kSectorBytes) {
      const size_t n = std::min(SimDisk::kSectorBytes, got.size() - s);
      if (got.compare(s, n, all, s, n) == 0) {
        if (lost) sector_hole = true;
      } else {
        lost = true;
      }
    }
  }
  EXPECT_TRUE(sector_hole);
}

TEST(SimDisk, CrashCanZeroFillLostData) {
  SimDisk d(env::SeededRng(1));
  DiskFaults f;
  f.crash_zero_fill_probability = 1;
  d.set_faults(f);
  MakeFile(d, "abc", "defgh");
  d.Crash();
  EXPECT_EQ(Read(d, "d/f"), std::string("abc") + std::string(5, '\0'));
}

// Linux: after a failed fsync the pages it could not write are marked clean
// and dropped; the error is reported once, and a later fsync that succeeds
// does not write them. Reads see them until the crash.
TEST(SimDisk, FailedSyncLosesDirtyPagesForGood) {
  SimDisk d(env::SeededRng(1));
  MakeFile(d, "synced", "lost");
  auto h = d.OpenAppend("d/f");
  ASSERT_TRUE(h.ok());
  DiskFaults f;
  f.eio_probability = 1;
  f.failed_sync_write_probability = 0;
  d.set_faults(f);
  EXPECT_FALSE((*h)->Sync().ok());
  d.set_faults(DiskFaults());
  EXPECT_TRUE((*h)->Sync().ok());  // reported once
  EXPECT_EQ(Read(d, "d/f"), "syncedlost");
  d.Crash();
  // The size reached the disk with the second sync, the data never did.
  EXPECT_EQ(Read(d, "d/f"), std::string("synced") + std::string(4, '\0'));
}

TEST(SimDisk, FailedSyncMayHaveWrittenSomePages) {
  SimDisk d(env::SeededRng(1));
  MakeFile(d, "s", std::string(3 * SimDisk::kPageBytes, 'x'));
  auto h = d.OpenAppend("d/f");
  ASSERT_TRUE(h.ok());
  DiskFaults f;
  f.eio_probability = 1;
  f.failed_sync_write_probability = 1;
  d.set_faults(f);
  EXPECT_FALSE((*h)->Sync().ok());
  d.set_faults(DiskFaults());
  d.Crash();
  EXPECT_EQ(Read(d, "d/f").size(), 1 + 3 * SimDisk::kPageBytes);
}

TEST(SimDisk, LostPagesReadAsZerosOnceALaterSyncMovesTheSize) {
  SimDisk d(env::SeededRng(1));
  MakeFile(d, "s", "");
  auto h = d.OpenAppend("d/f");
  ASSERT_TRUE(h.ok());
  ASSERT_TRUE((*h)->Append(std::string(2 * SimDisk::kPageBytes, 'x')).ok());
  DiskFaults f;
  f.eio_probability = 1;
  f.failed_sync_write_probability = 0;
  d.set_faults(f);
  EXPECT_FALSE((*h)->Sync().ok());
  d.set_faults(DiskFaults());
  ASSERT_TRUE((*h)->Append("tail").ok());
  ASSERT_TRUE((*h)->Sync().ok());
  d.Crash();
  const std::string got = Read(d, "d/f");
  ASSERT_EQ(got.size(), 1 + 2 * SimDisk::kPageBytes + 4);
  EXPECT_EQ(got[0], 's');
  // The first page (with the synced byte) and the third (re-dirtied by the
  // last append) were written whole; the middle one is a hole.
  EXPECT_EQ(got.substr(1, SimDisk::kPageBytes - 1),
            std::string(SimDisk::kPageBytes - 1, '\0'));
  EXPECT_EQ(got.substr(SimDisk::kPageBytes, SimDisk::kPageBytes),
            std::string(SimDisk::kPageBytes, '\0'));
  EXPECT_EQ(got.substr(2 * SimDisk::kPageBytes),
            std::string(1, 'x') + "tail");
}

TEST(SimDisk, PowerCutFailsTheSyncAndEverythingAfterIt) {
  SimDisk d(env::SeededRng(1));
  MakeFile(d, "abc", "def");
  auto h = d.OpenAppend("d/f");
  ASSERT_TRUE(h.ok());
  DiskFaults f;
  f.power_cut_at_next_sync = true;
  f.crash_keep_unsynced_probability = 1;
  d.set_faults(f);
  EXPECT_FALSE((*h)->Sync().ok());
  EXPECT_FALSE(d.faults().power_cut_at_next_sync);  // one-shot
  EXPECT_FALSE((*h)->Append("x").ok());
  EXPECT_FALSE(d.Create("d/g").ok());
  EXPECT_EQ(d.injected_errors(), 1u);
  d.Crash();
  // The write in flight stayed dirty: this crash model keeps it.
  EXPECT_EQ(Read(d, "d/f"), "abcdef");
  auto h2 = d.OpenAppend("d/f");
  ASSERT_TRUE(h2.ok());
  EXPECT_TRUE((*h2)->Append("g").ok());
}

TEST(SimDisk, StallHoldsBackWhatTheNodeSends) {
  SimDisk d(env::SeededRng(1));
  int64_t now = 1000;
  d.set_time_source([&now] { return now; });
  EXPECT_EQ(d.pending_latency(), 0);
  d.StallUntil(5000);
  EXPECT_EQ(d.pending_latency(), 4000);
  now = 4500;
  EXPECT_EQ(d.pending_latency(), 500);
  now = 6000;
  EXPECT_EQ(d.pending_latency(), 0);
  EXPECT_EQ(d.injected_errors(), 1u);
}

// Fill-ahead: after each successful sync an OpenAppend file gets zeros up
// to set_fill_ahead_bytes after its appends, durable at once; appends write
// over them (not a rewrite of the stable image); Create files and files
// from before a crash are not filled; a crash keeps the zeros.
TEST(SimDisk, FillAheadPutsDurableZerosAfterTheAppends) {
  SimDisk d(env::SeededRng(1));
  d.set_fill_ahead_bytes(10);
  MakeFile(d, "abc", "");
  EXPECT_EQ(Read(d, "d/f"), "abc");  // from Create: never filled
  auto h = d.OpenAppend("d/f");
  ASSERT_TRUE(h.ok());
  ASSERT_TRUE((*h)->Append("de").ok());
  EXPECT_EQ(Read(d, "d/f"), "abcde");
  ASSERT_TRUE((*h)->Sync().ok());
  const std::string zeros(10, '\0');
  EXPECT_EQ(Read(d, "d/f"), "abcde" + zeros);
  auto files = d.SyncedFiles("d");
  EXPECT_EQ(files[0].bytes, "abcde" + zeros);
  const uint64_t rewrites = files[0].rewrites;
  ASSERT_TRUE((*h)->Append("fgh").ok());
  EXPECT_EQ(Read(d, "d/f"), "abcdefgh" + std::string(7, '\0'));
  ASSERT_TRUE((*h)->Sync().ok());
  files = d.SyncedFiles("d");
  EXPECT_EQ(files[0].bytes, "abcdefgh" + zeros);
  EXPECT_EQ(files[0].rewrites, rewrites);
  ASSERT_TRUE((*h)->Append("ij").ok());
  ASSERT_TRUE((*h)->Sync().ok());
  files = d.SyncedFiles("d");
  EXPECT_EQ(files[0].bytes, "abcdefghij" + zeros);
  EXPECT_EQ(files[0].rewrites, rewrites);
  // An append longer than the zeros grows the file.
  ASSERT_TRUE((*h)->Append(std::string(12, 'x')).ok());
  EXPECT_EQ(Read(d, "d/f"), "abcdefghij" + std::string(12, 'x'));
  // Unsynced appends over the zeros may be lost: the zeros stay.
  d.Crash();
  EXPECT_EQ(Read(d, "d/f"), "abcdefghij" + zeros);
  // Truncating removes the zeros; a handle from after the crash fills.
  ASSERT_TRUE(d.Truncate("d/f", 10).ok());
  auto g = d.OpenAppend("d/f");
  ASSERT_TRUE(g.ok());
  ASSERT_TRUE((*g)->Append("k").ok());
  ASSERT_TRUE((*g)->Sync().ok());
  EXPECT_EQ(Read(d, "d/f"), "abcdefghijk" + zeros);
}

TEST(SimDisk, SyncedFilesShowTheStableImage) {
  SimDisk d(env::SeededRng(1));
  EXPECT_TRUE(d.SyncedFiles("d").empty());
  ASSERT_TRUE(d.CreateDir("d").ok());
  ASSERT_TRUE(d.SyncDir("d").ok());
  EXPECT_TRUE(d.SyncedFiles("d").empty());  // d itself would not survive
  const uint64_t v0 = d.durable_version();
  MakeFile(d, "abc", "def");
  EXPECT_NE(d.durable_version(), v0);
  auto files = d.SyncedFiles("d");
  ASSERT_EQ(files.size(), 1u);
  EXPECT_EQ(files[0].name, "f");
  EXPECT_EQ(files[0].bytes, "abc");
  const uint64_t inode = files[0].inode;
  const uint64_t rewrites = files[0].rewrites;
  auto h = d.OpenAppend("d/f");
  ASSERT_TRUE(h.ok());
  ASSERT_TRUE((*h)->Sync().ok());
  files = d.SyncedFiles("d");
  EXPECT_EQ(files[0].bytes, "abcdef");
  EXPECT_EQ(files[0].rewrites, rewrites);  // it only grew
  ASSERT_TRUE(d.Truncate("d/f", 2).ok());
  EXPECT_EQ(d.SyncedFiles("d")[0].bytes, "abcdef");  // until synced
  ASSERT_TRUE((*h)->Sync().ok());
  files = d.SyncedFiles("d");
  EXPECT_EQ(files[0].bytes, "ab");
  EXPECT_NE(files[0].rewrites, rewrites);
  d.Crash();
  files = d.SyncedFiles("d");
  ASSERT_EQ(files.size(), 1u);
  EXPECT_NE(files[0].inode, inode);
  // A file created but not dir-synced is not in the durable view.
  ASSERT_TRUE(d.Create("d/g").ok());
  EXPECT_EQ(d.SyncedFiles("d").size(), 1u);
}

TEST(SimDisk, CrashRandomlyNeverDamagesSyncedData) {
  for (uint64_t seed = 1; seed <= 100; ++seed) {
    SimDisk d{env::SeededRng(seed)};
    MakeFile(d, "synced-part", Pattern(3 * SimDisk::kPageBytes));
    d.CrashRandomly();
    const std::string got = Read(d, "d/f");
    ASSERT_GE(got.size(), 11u);
    EXPECT_EQ(got.substr(0, 11), "synced-part") << "seed " << seed;
  }
}

TEST(SimDisk, RenameIsDurableOnlyAfterSyncDir) {
  SimDisk d(env::SeededRng(1));
  MakeFile(d, "abc", "");
  ASSERT_TRUE(d.Rename("d/f", "d/g").ok());
  EXPECT_FALSE(d.Exists("d/f"));
  EXPECT_EQ(Read(d, "d/g"), "abc");
  d.Crash();
  EXPECT_TRUE(d.Exists("d/f"));
  EXPECT_FALSE(d.Exists("d/g"));
  ASSERT_TRUE(d.Rename("d/f", "d/g").ok());
  ASSERT_TRUE(d.SyncDir("d").ok());
  d.Crash();
  EXPECT_FALSE(d.Exists("d/f"));
  EXPECT_EQ(Read(d, "d/g"), "abc");
}

// A submitted work's fsyncs wait for its completion, except one the work
// did more I/O after: a real fsync had returned before that I/O began.
// (A snapshot file synced, renamed and then pointed at by a WAL marker in
// one work must not be lost under a marker that survived.)
TEST(SimDisk, AWorksFsyncBeforeMoreIoIsDurableAtOnce) {
  // Appends "def" to d/f (holding "abc", durable) and syncs it, in a work
  // submitted to a disk whose completions never run; with `more`, the work
  // then creates d/g and appends and syncs it too. Crashes, and returns d/f.
  auto run = [](bool more) {
    SimDisk d(env::SeededRng(1));
    int completions = 0;
    d.set_scheduler(
        [&completions](int64_t, std::function<void()>) { ++completions; });
    MakeFile(d, "abc", "");
    auto append_sync = [&d](const std::string& path, bool create) {
      auto f = create ? d.Create(path) : d.OpenAppend(path);
      if (!f.ok()) return f.status();
      if (auto s = (*f)->Append(create ? "xyz" : "def"); !s.ok()) return s;
      return (*f)->Sync();
    };
    d.worker()->Submit(
        [&] {
          absl::Status s = append_sync("d/f", false);
          if (!s.ok() || !more) return s;
          return append_sync("d/g", true);  // the work's last sync: held
        },
        [](absl::Status) {});
    EXPECT_EQ(completions, 1);
    d.Crash();                      // before the completion
    EXPECT_FALSE(d.Exists("d/g"));  // never in a synced directory
    return Read(d, "d/f");
  };
  EXPECT_EQ(run(true), "abcdef");
  EXPECT_EQ(run(false), "abc");  // the work's last fsync: held back
}

// Drain returns once the submitted work's fsyncs are done, as the real
// worker's does: the caller may then write after them (a snapshot's WAL
// marker after the log write in flight) and a crash keeps what they
// synced, completion or not. A crash's ForgetOutstanding (the dying
// Node's destructor drains too) leaves them held, for the crash to
// decide.
// Submits a work that appends "def" to d/f and syncs it (held: the
// work's last I/O).
void SubmitAppendSync(SimDisk& d, std::function<void(absl::Status)> done) {
  d.worker()->Submit(
      [&d] {
        auto f = d.OpenAppend("d/f");
        if (!f.ok()) return f.status();
        if (auto s = (*f)->Append("def"); !s.ok()) return s;
        return (*f)->Sync();
      },
      std::move(done));
}

TEST(SimDisk, DrainFinishesTheFsyncsInFlight) {
  SimDisk d(env::SeededRng(1));
  std::vector<std::function<void()>> completions;
  d.set_scheduler([&completions](int64_t, std::function<void()> ev) {
    completions.push_back(std::move(ev));
  });
  MakeFile(d, "abc", "");
  bool done = false;
  SubmitAppendSync(d, [&done](absl::Status s) { done = s.ok(); });
  d.worker()->Drain();
  EXPECT_FALSE(done) << "the completion still comes as an event";
  for (auto& ev : completions) ev();  // it writes nothing twice
  EXPECT_TRUE(done);
  d.Crash();
  EXPECT_EQ(Read(d, "d/f"), "abcdef");
}

TEST(SimDisk, DrainedFsyncsSurviveACrashBeforeTheCompletion) {
  for (bool forget : {false, true}) {
    SimDisk d(env::SeededRng(1));
    d.set_scheduler([](int64_t, std::function<void()>) {});  // never run
    MakeFile(d, "abc", "");
    SubmitAppendSync(d, [](absl::Status) {});
    if (forget) d.ForgetOutstanding();
    d.worker()->Drain();
    d.Crash();
    EXPECT_EQ(Read(d, "d/f"), forget ? "abc" : "abcdef") << forget;
  }
}

TEST(SimDisk, HandlesDieWithTheCrash) {
  SimDisk d(env::SeededRng(1));
  ASSERT_TRUE(d.CreateDir("d").ok());
  auto f = d.Create("d/f");
  ASSERT_TRUE(f.ok());
  d.Crash();
  EXPECT_FALSE((*f)->Append("x").ok());
}

TEST(SimDisk, ListIsSortedAndIncludesSubdirectories) {
  SimDisk d(env::SeededRng(1));
  ASSERT_TRUE(d.CreateDir("d").ok());
  ASSERT_TRUE(d.CreateDir("d/sub").ok());
  ASSERT_TRUE(d.Create("d/b").ok());
  ASSERT_TRUE(d.Create("d/a").ok());
  auto l = d.List("d");
  ASSERT_TRUE(l.ok());
  EXPECT_EQ(*l, (std::vector<std::string>{"a", "b", "sub"}));
}

TEST(SimDisk, FullDiskRejectsWholeAppend) {
  SimDisk d(env::SeededRng(1));
  MakeFile(d, "abc", "");
  d.set_capacity_bytes(5);
  auto f = d.OpenAppend("d/f");
  ASSERT_TRUE(f.ok());
  absl::Status s = (*f)->Append("xyz");
  EXPECT_TRUE(absl::IsResourceExhausted(s)) << s;
  EXPECT_EQ(Read(d, "d/f"), "abc");
  d.set_capacity_bytes(0);
  EXPECT_TRUE((*f)->Append("xyz").ok());
}

TEST(SimDisk, InjectsEioAndKeepsUnsyncedDataUnsynced) {
  SimDisk d(env::SeededRng(3));
  MakeFile(d, "abc", "def");
  DiskFaults f;
  f.eio_probability = 1;
  d.set_faults(f);
  auto h = d.OpenAppend("d/f");
  EXPECT_FALSE(h.ok());
  EXPECT_GT(d.injected_errors(), 0u);
  d.set_faults(DiskFaults());
  d.Crash();
  EXPECT_EQ(Read(d, "d/f"), "abc");
}

TEST(SimDisk, ChargesLatency) {
  SimDisk d(env::SeededRng(1));
  DiskFaults f;
  f.sync_latency_ns = 100;
  f.write_latency_ns = 10;
  d.set_faults(f);
  MakeFile(d, "a", "b");  // 2 appends, 1 sync, 2 dir syncs
  EXPECT_EQ(d.TakePendingLatency(), 320);
  EXPECT_EQ(d.TakePendingLatency(), 0);
}

TEST(SimDisk, SameSeedSameCrashImage) {
  auto run = [](uint64_t seed) {
    SimDisk d{env::SeededRng(seed)};
    DiskFaults f;
    f.crash_tear_probability = 0.5;
    f.crash_keep_unsynced_probability = 0.3;
    d.set_faults(f);
    MakeFile(d, "s", std::string(100, 'x'));
    d.Crash();
    return Read(d, "d/f");
  };
  EXPECT_EQ(run(9), run(9));
}

TEST(SimDisk, WipeLosesEverything) {
  SimDisk d(env::SeededRng(1));
  MakeFile(d, "abc", "");
  d.Wipe();
  EXPECT_FALSE(d.Exists("d"));
  EXPECT_EQ(d.used_bytes(), 0u);
}

}  // namespace
}  // namespace detcd::sim
