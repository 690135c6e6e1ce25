#include "shim/posix_disk.h"

#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>

#include "engine/wal/wal.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "shim/page_memory.h"
#include "shim/real_clock.h"

namespace detcd::shim {
namespace {

using ::testing::ElementsAre;

class PosixDiskTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (std::filesystem::temp_directory_path() /
                        "posix_disk_test.XXXXXX")
                           .string();
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    root_ = tmpl;
    disk_ = std::make_unique<PosixDisk>(root_);
  }
  void TearDown() override { std::filesystem::remove_all(root_); }

  std::string OsRead(const std::string& rel) {
    std::ifstream in(root_ + "/" + rel, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
  }

  std::string root_;
  std::unique_ptr<PosixDisk> disk_;
};

TEST_F(PosixDiskTest, ResolvesRelativeAndAbsolutePaths) {
  EXPECT_EQ(disk_->Resolve("a/b"), root_ + "/a/b");
  EXPECT_EQ(disk_->Resolve(""), root_);
  EXPECT_EQ(disk_->Resolve("/x/y"), "/x/y");
  EXPECT_EQ(PosixDisk("").Resolve("a"), "a");
  EXPECT_EQ(PosixDisk("").Resolve(""), ".");
  EXPECT_EQ(PosixDisk("/").Resolve("a"), "/a");
  EXPECT_EQ(PosixDisk("/r/").Resolve("a"), "/r/a");
}

TEST_F(PosixDiskTest, AppendSyncReadAll) {
  auto f = disk_->OpenAppend("log");
  ASSERT_TRUE(f.ok()) << f.status();
  ASSERT_TRUE((*f)->Append("hello ").ok());
  ASSERT_TRUE((*f)->Append("").ok());
  ASSERT_TRUE((*f)->Append("world").ok());
  ASSERT_TRUE((*f)->Sync().ok());
  ASSERT_TRUE((*f)->Close().ok());
  EXPECT_EQ(*disk_->ReadAll("log"), "hello world");
  EXPECT_EQ(OsRead("log"), "hello world");
  // A closed file refuses further use.
  EXPECT_EQ((*f)->Append("x").code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ((*f)->Sync().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE((*f)->Close().ok());

  // Reopening appends at the end.
  auto g = disk_->OpenAppend("log");
  ASSERT_TRUE(g.ok());
  ASSERT_TRUE((*g)->Append("!").ok());
  ASSERT_TRUE((*g)->Sync().ok());
  EXPECT_EQ(*disk_->ReadAll("log"), "hello world!");

  struct stat st;
  ASSERT_EQ(stat((root_ + "/log").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
}

// FillAheadStep: zeros after what an OpenAppend file holds, 256 KiB a
// step up to 4 MiB ahead; writes land at the end of what was appended
// (overwriting zeros, the file's size unchanged); Create files are never
// filled; closing or destroying a file ends its filling.
TEST_F(PosixDiskTest, FillAheadKeepsZerosAfterTheWrites) {
  constexpr uint64_t kStep = 256 << 10, kAhead = 4 << 20;
  auto created = disk_->Create("snap");
  ASSERT_TRUE(created.ok());
  ASSERT_TRUE((*created)->Append("s").ok());
  auto f = disk_->OpenAppend("log");
  ASSERT_TRUE(f.ok()) << f.status();
  ASSERT_TRUE((*f)->Append("head").ok());
  int steps = 0;
  while (disk_->FillAheadStep()) ++steps;
  EXPECT_EQ(steps, static_cast<int>(kAhead / kStep));
  EXPECT_EQ(OsRead("snap"), "s");
  std::string want = "head" + std::string(kAhead, '\0');
  EXPECT_EQ(*disk_->ReadAll("log"), want);

  ASSERT_TRUE((*f)->Append("tail").ok());
  ASSERT_TRUE((*f)->Sync().ok());
  want.replace(4, 4, "tail");
  EXPECT_EQ(*disk_->ReadAll("log"), want);
  // Less than 4 MiB ahead now: one more step.
  EXPECT_TRUE(disk_->FillAheadStep());
  EXPECT_FALSE(disk_->FillAheadStep());
  EXPECT_EQ(disk_->ReadAll("log")->size(), 4 + kAhead + kStep);

  // A write past the zeros grows the file as before.
  std::string big(kAhead + kStep, 'b');
  ASSERT_TRUE((*f)->Append(big).ok());
  EXPECT_EQ(*disk_->ReadAll("log"), "headtail" + big);

  ASSERT_TRUE((*f)->Close().ok());
  EXPECT_FALSE(disk_->FillAheadStep());
  f->reset();
  EXPECT_FALSE(disk_->FillAheadStep());
}

// The WAL on a disk that fills ahead between its writes: segments cut
// with zeros after their records, the last one's zeros truncated when it
// is opened again, every entry recovered.
TEST_F(PosixDiskTest, WalRecoversFromFilledSegments) {
  wal::WalOptions opts;
  opts.segment_bytes = 1000;
  ASSERT_TRUE(disk_->CreateDir("w").ok());
  {
    auto w = wal::Wal::Create(disk_.get(), "w/wal", opts);
    ASSERT_TRUE(w.ok()) << w.status();
    raft::SnapshotMetadata boot;
    boot.conf_state.voters = {1};
    ASSERT_TRUE((*w)->SaveSnapshotMarker(boot).ok());
    for (uint64_t i = 1; i <= 40; ++i) {
      raft::Entry e;
      e.index = i;
      e.term = 1;
      e.data = std::string(50, static_cast<char>('a' + i % 26));
      ASSERT_TRUE((*w)->Save(nullptr, {e}, true).ok());
      if (i % 3 == 0) {
        EXPECT_TRUE(disk_->FillAheadStep());
      }
    }
  }
  auto r = wal::Wal::Open(disk_.get(), "w/wal", 0, opts);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->entries.size(), 40u);
  EXPECT_EQ(r->entries.back().data, std::string(50, 'a' + 40 % 26));
  raft::Entry e;
  e.index = 41;
  e.term = 2;
  ASSERT_TRUE(r->wal->Save(nullptr, {e}, true).ok());
  r->wal.reset();
  auto again = wal::Wal::Open(disk_.get(), "w/wal", 0, opts);
  ASSERT_TRUE(again.ok()) << again.status();
  ASSERT_EQ(again->entries.size(), 41u);
  EXPECT_EQ(again->entries.back().term, 2u);
}

TEST_F(PosixDiskTest, LargeFileRoundTrips) {
  std::string big(3 << 20, '\0');
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>(i * 131);
  auto f = disk_->Create("big");
  ASSERT_TRUE(f.ok());
  ASSERT_TRUE((*f)->Append(big).ok());
  ASSERT_TRUE((*f)->Sync().ok());
  EXPECT_EQ(*disk_->ReadAll("big"), big);
  // Read front to back in pieces of any size: the same bytes, then 0.
  auto r = disk_->OpenRead("big");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ((*r)->size(), big.size());
  std::string got;
  std::string piece(1000003, '\0');
  for (;;) {
    auto n = (*r)->Read(piece.data(), piece.size());
    ASSERT_TRUE(n.ok()) << n.status();
    if (*n == 0) break;
    got.append(piece.data(), *n);
  }
  EXPECT_EQ(got, big);
}

TEST_F(PosixDiskTest, CreateTruncates) {
  {
    auto f = disk_->Create("f");
    ASSERT_TRUE(f.ok());
    ASSERT_TRUE((*f)->Append("old contents").ok());
  }
  auto f = disk_->Create("f");
  ASSERT_TRUE(f.ok());
  EXPECT_EQ(*disk_->ReadAll("f"), "");
  ASSERT_TRUE((*f)->Append("new").ok());
  EXPECT_EQ(*disk_->ReadAll("f"), "new");
}

TEST_F(PosixDiskTest, ListIsSortedNamesWithSubdirs) {
  ASSERT_TRUE(disk_->CreateDir("d").ok());
  for (const char* n : {"c", "a", "b.tmp"}) {
    ASSERT_TRUE(disk_->Create(std::string("d/") + n).ok());
  }
  ASSERT_TRUE(disk_->CreateDir("d/sub").ok());
  auto names = disk_->List("d");
  ASSERT_TRUE(names.ok());
  EXPECT_THAT(*names, ElementsAre("a", "b.tmp", "c", "sub"));
  auto empty = disk_->List("d/sub");
  ASSERT_TRUE(empty.ok());
  EXPECT_TRUE(empty->empty());
  EXPECT_EQ(disk_->List("nope").status().code(), absl::StatusCode::kNotFound);
}

TEST_F(PosixDiskTest, CreateDirIsMkdirP) {
  ASSERT_TRUE(disk_->CreateDir("x/member/wal").ok());
  EXPECT_TRUE(disk_->Exists("x/member/wal"));
  EXPECT_TRUE(disk_->CreateDir("x/member/wal").ok());  // exists: fine
  ASSERT_TRUE(disk_->SyncDir("x/member/wal").ok());
  ASSERT_TRUE(disk_->SyncDir("x/member").ok());
  ASSERT_TRUE(disk_->SyncDir("").ok());
  struct stat st;
  ASSERT_EQ(stat((root_ + "/x/member").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  // A file in the way.
  ASSERT_TRUE(disk_->Create("file").ok());
  EXPECT_EQ(disk_->CreateDir("file/sub").code(), absl::StatusCode::kNotFound);
  EXPECT_FALSE(disk_->CreateDir("file").ok());
}

TEST_F(PosixDiskTest, AbsolutePathsBypassTheRoot) {
  PosixDisk cwd_disk("");
  const std::string abs = root_ + "/abs/member";
  ASSERT_TRUE(cwd_disk.CreateDir(abs).ok());
  ASSERT_TRUE(cwd_disk.Create(abs + "/f").ok());
  EXPECT_TRUE(disk_->Exists("abs/member/f"));
  EXPECT_TRUE(cwd_disk.SyncDir(abs).ok());
}

TEST_F(PosixDiskTest, RemoveRenameExists) {
  ASSERT_TRUE(disk_->Create("a.tmp").ok());
  EXPECT_TRUE(disk_->Exists("a.tmp"));
  ASSERT_TRUE(disk_->Rename("a.tmp", "a").ok());
  EXPECT_FALSE(disk_->Exists("a.tmp"));
  EXPECT_TRUE(disk_->Exists("a"));
  // Rename replaces an existing target atomically.
  {
    auto f = disk_->Create("b");
    ASSERT_TRUE((*f)->Append("bee").ok());
  }
  ASSERT_TRUE(disk_->Rename("b", "a").ok());
  EXPECT_EQ(*disk_->ReadAll("a"), "bee");
  ASSERT_TRUE(disk_->SyncDir("").ok());
  ASSERT_TRUE(disk_->Remove("a").ok());
  EXPECT_FALSE(disk_->Exists("a"));
  EXPECT_EQ(disk_->Remove("a").code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(disk_->Rename("a", "c").code(), absl::StatusCode::kNotFound);
  // An empty directory can be removed.
  ASSERT_TRUE(disk_->CreateDir("emptydir").ok());
  EXPECT_TRUE(disk_->Remove("emptydir").ok());
  EXPECT_FALSE(disk_->Exists("emptydir"));
}

TEST_F(PosixDiskTest, RemoveInOrderOnItsOwnThread) {
  ASSERT_TRUE(disk_->CreateDir("w/full").ok());
  for (const char* n : {"w/0", "w/1", "w/2", "w/3", "w/4", "w/full/f"}) {
    ASSERT_TRUE(disk_->Create(n).ok());
  }
  // A path already gone counts as removed.
  ASSERT_TRUE(disk_->RemoveInOrder({"w/0", "w/gone", "w/1"}, "w").ok());
  disk_->WaitForRemovals();
  EXPECT_FALSE(disk_->Exists("w/0"));
  EXPECT_FALSE(disk_->Exists("w/1"));
  EXPECT_TRUE(disk_->Exists("w/2"));
  // A failure (a directory that is not empty) ends the batch there: what
  // follows stays, so no gap opens in a sequence of files.
  ASSERT_TRUE(disk_->RemoveInOrder({"w/2", "w/full", "w/3"}, "w").ok());
  disk_->WaitForRemovals();
  EXPECT_FALSE(disk_->Exists("w/2"));
  EXPECT_TRUE(disk_->Exists("w/full"));
  EXPECT_TRUE(disk_->Exists("w/3"));
  // The destructor finishes what is queued.
  ASSERT_TRUE(disk_->RemoveInOrder({"w/3", "w/4"}, "w").ok());
  disk_.reset();
  EXPECT_FALSE(std::filesystem::exists(root_ + "/w/3"));
  EXPECT_FALSE(std::filesystem::exists(root_ + "/w/4"));
  EXPECT_TRUE(std::filesystem::exists(root_ + "/w/full/f"));
}

TEST_F(PosixDiskTest, TruncateShrinksOnly) {
  {
    auto f = disk_->Create("t");
    ASSERT_TRUE((*f)->Append("0123456789").ok());
  }
  ASSERT_TRUE(disk_->Truncate("t", 4).ok());
  EXPECT_EQ(*disk_->ReadAll("t"), "0123");
  ASSERT_TRUE(disk_->Truncate("t", 100).ok());  // no growth
  EXPECT_EQ(*disk_->ReadAll("t"), "0123");
  // Appending after a truncate continues at the new end.
  auto f = disk_->OpenAppend("t");
  ASSERT_TRUE((*f)->Append("ab").ok());
  EXPECT_EQ(*disk_->ReadAll("t"), "0123ab");
  EXPECT_EQ(disk_->Truncate("missing", 0).code(), absl::StatusCode::kNotFound);
}

TEST_F(PosixDiskTest, NotFoundErrors) {
  EXPECT_EQ(disk_->ReadAll("missing").status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(disk_->OpenAppend("nodir/f").status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(disk_->Create("nodir/f").status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(disk_->SyncDir("nodir").code(), absl::StatusCode::kNotFound);
  EXPECT_FALSE(disk_->Exists("missing"));
  EXPECT_EQ(disk_->OpenRead("missing").status().code(),
            absl::StatusCode::kNotFound);
  ASSERT_TRUE(disk_->CreateDir("dir").ok());
  EXPECT_FALSE(disk_->ReadAll("dir").ok());
  EXPECT_FALSE(disk_->OpenRead("dir").ok());
}

TEST(ErrnoStatusTest, MapsLikeTheSimulator) {
  EXPECT_EQ(ErrnoStatus(ENOENT, "open", "p").code(),
            absl::StatusCode::kNotFound);
  absl::Status nospc = ErrnoStatus(ENOSPC, "write", "wal/x");
  EXPECT_EQ(nospc.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(nospc.message()),
              ::testing::StartsWith("ENOSPC: write wal/x"));
  absl::Status eio = ErrnoStatus(EIO, "fsync", "wal/x");
  EXPECT_EQ(eio.code(), absl::StatusCode::kInternal);
  EXPECT_THAT(std::string(eio.message()),
              ::testing::StartsWith("EIO: fsync wal/x"));
  EXPECT_EQ(ErrnoStatus(EACCES, "open", "p").code(),
            absl::StatusCode::kPermissionDenied);
}

TEST_F(PosixDiskTest, FullDiskIsResourceExhausted) {
  // /dev/full fails every write with ENOSPC.
  if (access("/dev/full", W_OK) != 0) GTEST_SKIP() << "no /dev/full";
  PosixDisk dev("/dev");
  auto f = dev.OpenAppend("full");
  ASSERT_TRUE(f.ok()) << f.status();
  absl::Status s = (*f)->Append("data");
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted) << s;
}

TEST_F(PosixDiskTest, ReadOnlyDirIsPermissionDenied) {
  if (geteuid() == 0) GTEST_SKIP() << "root ignores permissions";
  ASSERT_TRUE(disk_->CreateDir("ro").ok());
  ASSERT_EQ(chmod((root_ + "/ro").c_str(), 0500), 0);
  EXPECT_EQ(disk_->Create("ro/f").status().code(),
            absl::StatusCode::kPermissionDenied);
  chmod((root_ + "/ro").c_str(), 0700);
}

TEST_F(PosixDiskTest, DataDirLockIsExclusive) {
  const std::string dir = root_ + "/data";
  auto first = DataDirLock::Acquire(dir);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_TRUE(std::filesystem::exists(dir + "/detcd.lock"));
  // flock locks belong to the open file description, so a second open in
  // the same process conflicts as another process would.
  auto second = DataDirLock::Acquire(dir);
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(second.status().message()),
              ::testing::HasSubstr("file already locked"));
  EXPECT_FALSE(LockDataDir(dir).ok());

  // Another process is refused too.
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) _exit(DataDirLock::Acquire(dir).ok() ? 1 : 0);
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);

  first->reset();
  auto third = DataDirLock::Acquire(dir);
  EXPECT_TRUE(third.ok()) << third.status();
}

TEST(RealClockTest, Monotonic) {
  RealClock c;
  int64_t a = c.NowNanos();
  int64_t b = c.NowNanos();
  EXPECT_GT(a, 0);
  EXPECT_GE(b, a);
}

// Resident bytes of this process (/proc/self/statm's second field).
uint64_t ResidentBytes() {
  std::ifstream f("/proc/self/statm");
  uint64_t size = 0, resident = 0;
  f >> size >> resident;
  return resident * static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
}

// PageMemory gives back the whole pages inside a range, and only those:
// the process's resident memory drops by them, they read as zeros after,
// and the bytes around them (in pages partly outside) stay as they were.
TEST(PageMemoryTest, GivesBackTheWholePagesInsideARange) {
  constexpr size_t kBytes = 64 << 20;
  std::unique_ptr<char[]> buf(new char[kBytes]);
  std::memset(buf.get(), 'x', kBytes);
  const uint64_t before = ResidentBytes();
  PageMemory m;
  const char* begin = buf.get() + 100;  // mid-page
  const char* end = buf.get() + kBytes - 100;
  const char* next = m.ReleaseRead(begin, end);
  const auto page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  EXPECT_EQ(reinterpret_cast<uintptr_t>(next) % page, 0u);
  EXPECT_GT(next, end - page);
  EXPECT_LE(next, end);
  EXPECT_GE(m.released(), kBytes - 2 * page);
  EXPECT_GE(before - ResidentBytes(), kBytes - (1 << 20));
  // The partial pages at either end are kept.
  EXPECT_EQ(buf[0], 'x');
  EXPECT_EQ(buf[99], 'x');
  EXPECT_EQ(buf[kBytes - 1], 'x');
  const char* first_whole = reinterpret_cast<const char*>(
      (reinterpret_cast<uintptr_t>(begin) + page - 1) & ~(page - 1));
  EXPECT_EQ(first_whole[-1], 'x');
  EXPECT_EQ(first_whole[0], '\0');
  EXPECT_EQ(next[-1], '\0');
  // A range with no whole page in it gives nothing back.
  EXPECT_EQ(m.ReleaseRead(next, next + page - 1), next);
  // The buffer is freed as usual (unique_ptr).
}

}  // namespace
}  // namespace detcd::shim
