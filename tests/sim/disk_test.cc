// SimDisk: the crash model (unsynced data and directory entries are lost or
// torn, synced ones survive) and injected faults.
#include "sim/sim_disk.h"

#include <gtest/gtest.h>

#include <string>

#include "absl/strings/str_cat.h"

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
  auto f = d.Create("d/f");
  ASSERT_TRUE(f.ok());
  ASSERT_TRUE((*f)->Append(synced).ok());
  ASSERT_TRUE((*f)->Sync().ok());
  ASSERT_TRUE(d.SyncDir("d").ok());
  ASSERT_TRUE((*f)->Append(extra).ok());
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
  MakeFile(d, "a", "b");  // 2 appends, 1 sync, 1 dir sync
  EXPECT_EQ(d.TakePendingLatency(), 220);
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
