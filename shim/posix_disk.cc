#include "shim/posix_disk.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "shim/log.h"
#include "shim/thread_name.h"

namespace detcd::shim {
namespace {

constexpr mode_t kFileMode = 0600;  // etcd's PrivateFileMode
constexpr mode_t kDirMode = 0700;   // etcd's PrivateDirMode

std::string ErrName(int err) {
  const char* n = strerrorname_np(err);
  return n != nullptr ? n : absl::StrCat("errno ", err);
}

// Retries a syscall interrupted by a signal.
template <typename F>
auto NoIntr(F f) {
  decltype(f()) r;
  do {
    r = f();
  } while (r < 0 && errno == EINTR);
  return r;
}

absl::Status FsyncPath(const std::string& os_path, const std::string& path) {
  int fd = NoIntr([&] {
    return ::open(os_path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  });
  if (fd < 0) return ErrnoStatus(errno, "open", path);
  int r = ::fsync(fd);
  int err = errno;
  ::close(fd);
  if (r != 0) return ErrnoStatus(err, "fsync", path);
  return absl::OkStatus();
}

}  // namespace

// Zeros a file opened by OpenAppend is kept ahead of its writes with
// (PosixDisk::FillAheadStep), written kFillStepBytes at a time.
constexpr uint64_t kFillAheadBytes = 4 << 20;
constexpr uint64_t kFillStepBytes = 256 << 10;
constexpr uint64_t kPageBytes = 4096;

class PosixFile final : public env::WritableFile {
 public:
  // Writes go at end_, the file's size when opened, then after each other.
  // fills: an OpenAppend file, which the disk fills ahead of end_.
  PosixFile(int fd, std::string path, PosixDisk::Fills* fills, uint64_t end)
      : fd_(fd), path_(std::move(path)), fills_(fills), end_(end),
        filled_(end) {
    if (fills_ != nullptr) fills_->Add(this);
  }
  ~PosixFile() override {
    if (fills_ != nullptr) fills_->Remove(this);
    if (fd_ >= 0) ::close(fd_);
  }

  absl::Status Append(std::string_view data) override {
    std::lock_guard<std::mutex> l(mu_);
    if (fd_ < 0) return absl::FailedPreconditionError("file is closed");
    while (!data.empty()) {
      ssize_t n = NoIntr([&] {
        return ::pwrite(fd_, data.data(), data.size(),
                        static_cast<off_t>(end_));
      });
      if (n < 0) return ErrnoStatus(errno, "write", path_);
      // write(2) may write less than asked (e.g. the disk filled up halfway);
      // the next call reports the reason.
      data.remove_prefix(static_cast<size_t>(n));
      unsynced_ += static_cast<size_t>(n);
      end_ += static_cast<uint64_t>(n);
    }
    filled_ = std::max(filled_, end_);
    // A long file written before one sync at its end (a snapshot: hundreds
    // of MB) has its writeback started every kWritebackBytes, so that the
    // final fdatasync waits for the tail only, not for the whole file on
    // the thread that calls it. SYNC_FILE_RANGE_WRITE only starts the
    // writes; durability is still Sync's. A failure here changes nothing.
    if (unsynced_ >= kWritebackBytes) {
      (void)::sync_file_range(fd_, 0, 0, SYNC_FILE_RANGE_WRITE);
      unsynced_ = 0;
    }
    return absl::OkStatus();
  }

  absl::Status Sync() override {
    std::lock_guard<std::mutex> l(mu_);
    if (fd_ < 0) return absl::FailedPreconditionError("file is closed");
    if (NoIntr([&] { return ::fdatasync(fd_); }) != 0) {
      return ErrnoStatus(errno, "fsync", path_);
    }
    unsynced_ = 0;
    return absl::OkStatus();
  }

  absl::Status Close() override {
    std::lock_guard<std::mutex> l(mu_);
    if (fd_ < 0) return absl::OkStatus();
    int r = ::close(fd_);
    fd_ = -1;
    // close(2) may report a deferred write error (NFS); EINTR still closed.
    if (r != 0 && errno != EINTR) return ErrnoStatus(errno, "close", path_);
    return absl::OkStatus();
  }

  // One step of filling ahead: zeros after what is written, then
  // fdatasync, so that the blocks are allocated and the size is durable
  // before writes reach them. False when nothing was to be done (or the
  // step failed: the file then just grows as it is written, as before).
  // FillStep would write.
  bool FillDue() {
    std::lock_guard<std::mutex> l(mu_);
    return fd_ >= 0 && !fill_failed_ && filled_ - end_ < kFillAheadBytes;
  }

  bool FillStep() {
    std::lock_guard<std::mutex> l(mu_);
    if (fd_ < 0 || fill_failed_ || filled_ - end_ >= kFillAheadBytes) {
      return false;
    }
    // One page per write: the page cache then holds the zeros in 4 KiB
    // folios, and a commit's fdatasync writes back the pages it dirtied.
    // Written in one call, they came in large folios (kernel 6.18 here),
    // each written back whole once any byte of it changed: 1 MiB per
    // fdatasync of a 300-byte write in a C loop, against 4 KiB.
    static const char kZeros[kPageBytes] = {};
    const uint64_t stop = filled_ + kFillStepBytes;
    bool ok = true;
    for (uint64_t at = filled_; ok && at < stop;) {
      const size_t n = static_cast<size_t>(
          std::min<uint64_t>(kPageBytes - at % kPageBytes, stop - at));
      ok = NoIntr([&] {
             return ::pwrite(fd_, kZeros, n, static_cast<off_t>(at));
           }) == static_cast<ssize_t>(n);
      at += n;
    }
    if (!ok || NoIntr([&] { return ::fdatasync(fd_); }) != 0) {
      fill_failed_ = true;  // e.g. ENOSPC: the zeros written stay zeros
      return false;
    }
    filled_ += kFillStepBytes;
    unsynced_ = 0;
    return true;
  }

 private:
  static constexpr size_t kWritebackBytes = 8 << 20;
  std::mutex mu_;  // a fill step (the disk thread) and the writes take turns
  int fd_;
  std::string path_;
  PosixDisk::Fills* const fills_;
  uint64_t end_;     // the offset the next Append writes at
  uint64_t filled_;  // the file's size: zeros in [end_, filled_)
  bool fill_failed_ = false;
  size_t unsynced_ = 0;  // bytes appended since the last Sync or writeback
};

absl::Status ErrnoStatus(int err, const char* op, const std::string& path) {
  std::string msg =
      absl::StrCat(ErrName(err), ": ", op, " ", path, ": ", strerror(err));
  switch (err) {
    case ENOENT:
    case ENOTDIR:
      return absl::NotFoundError(msg);
    case ENOSPC:
    case EDQUOT:
      return absl::ResourceExhaustedError(msg);
    case EEXIST:
    case ENOTEMPTY:
      return absl::AlreadyExistsError(msg);
    case EACCES:
    case EPERM:
    case EROFS:
      return absl::PermissionDeniedError(msg);
    default:
      return absl::InternalError(msg);
  }
}

struct PosixDisk::Remover {
  struct Job {
    std::vector<std::string> paths;
    std::string dir;
  };
  std::once_flag started;
  std::mutex mu;
  std::condition_variable cv;
  std::deque<Job> jobs;  // guarded by mu
  bool busy = false;     // guarded by mu: a job is being done
  bool stop = false;     // guarded by mu
  std::thread thread;  // started by the first RemoveInOrder
};

PosixDisk::PosixDisk(std::string root)
    : root_(std::move(root)),
      remover_(std::make_unique<Remover>()),
      fills_(std::make_unique<Fills>()) {
  while (root_.size() > 1 && root_.back() == '/') root_.pop_back();
}

PosixDisk::~PosixDisk() {
  if (!remover_->thread.joinable()) return;
  {
    std::lock_guard<std::mutex> l(remover_->mu);
    remover_->stop = true;
  }
  remover_->cv.notify_all();
  remover_->thread.join();  // after the queue is done
}

absl::Status PosixDisk::RemoveInOrder(const std::vector<std::string>& paths,
                                      const std::string& dir) {
  if (paths.empty()) return absl::OkStatus();
  // A PosixDisk that never removes in the background (most of them: tools,
  // tests) starts no thread.
  Remover& r = *remover_;
  std::call_once(r.started, [this, &r] {
    r.thread = std::thread([this] { RunRemovals(); });
  });
  {
    std::lock_guard<std::mutex> l(r.mu);
    r.jobs.push_back({paths, dir});
  }
  r.cv.notify_all();
  return absl::OkStatus();
}

void PosixDisk::RunRemovals() {
  NameThisThread("disk-remove", ThreadKind::kBackground);
  Remover& r = *remover_;
  for (;;) {
    Remover::Job job;
    {
      std::unique_lock<std::mutex> l(r.mu);
      r.cv.wait(l, [&r] { return r.stop || !r.jobs.empty(); });
      if (r.jobs.empty()) return;
      job = std::move(r.jobs.front());
      r.jobs.pop_front();
      r.busy = true;
    }
    for (const std::string& p : job.paths) {
      absl::Status s = Remove(p);
      if (absl::IsNotFound(s)) s = absl::OkStatus();
      if (s.ok()) s = SyncDir(job.dir);
      if (!s.ok()) {
        // The rest stay, in order, for the next start to release.
        DLOG_WARN("failed to remove file",
                  {{"path", p}, {"error", std::string(s.message())}});
        break;
      }
    }
    {
      std::lock_guard<std::mutex> l(r.mu);
      r.busy = false;
    }
    r.cv.notify_all();
  }
}

void PosixDisk::WaitForRemovals() {
  std::unique_lock<std::mutex> l(remover_->mu);
  remover_->cv.wait(
      l, [this] { return remover_->jobs.empty() && !remover_->busy; });
}

std::string PosixDisk::Resolve(const std::string& path) const {
  if (!path.empty() && path[0] == '/') return path;
  if (path.empty()) return root_.empty() ? "." : root_;
  if (root_.empty() || root_ == ".") return path;
  if (root_ == "/") return "/" + path;
  return absl::StrCat(root_, "/", path);
}

absl::StatusOr<std::unique_ptr<env::WritableFile>> PosixDisk::OpenAppend(
    const std::string& path) {
  const std::string p = Resolve(path);
  // Not O_APPEND: writes go at the file's own end offset (PosixFile), in
  // front of the zeros the disk fills ahead.
  int fd = NoIntr([&] {
    return ::open(p.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, kFileMode);
  });
  if (fd < 0) return ErrnoStatus(errno, "open", path);
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    return ErrnoStatus(err, "stat", path);
  }
  return std::unique_ptr<env::WritableFile>(new PosixFile(
      fd, path, fills_.get(), static_cast<uint64_t>(st.st_size)));
}

void PosixDisk::Fills::Add(PosixFile* f) {
  std::lock_guard<std::mutex> l(mu);
  files.push_back(f);
}

void PosixDisk::Fills::Remove(PosixFile* f) {
  std::lock_guard<std::mutex> l(mu);  // waits for a step on f to end
  files.erase(std::find(files.begin(), files.end(), f));
}

bool PosixDisk::FillAheadDue() {
  std::lock_guard<std::mutex> l(fills_->mu);
  for (PosixFile* f : fills_->files) {
    if (f->FillDue()) return true;
  }
  return false;
}

bool PosixDisk::FillAheadStep() {
  std::lock_guard<std::mutex> l(fills_->mu);
  for (PosixFile* f : fills_->files) {
    if (f->FillStep()) return true;
  }
  return false;
}

absl::StatusOr<std::unique_ptr<env::WritableFile>> PosixDisk::Create(
    const std::string& path) {
  const std::string p = Resolve(path);
  int fd = NoIntr([&] {
    return ::open(p.c_str(),
                  O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
                  kFileMode);
  });
  if (fd < 0) return ErrnoStatus(errno, "create", path);
  return std::unique_ptr<env::WritableFile>(
      new PosixFile(fd, path, nullptr, 0));
}

namespace {

// PosixDisk::OpenRead's file: read(2) straight into the caller's buffer.
class PosixReadFile final : public env::ReadableFile {
 public:
  PosixReadFile(int fd, std::string path, uint64_t size)
      : fd_(fd), path_(std::move(path)), size_(size) {}
  ~PosixReadFile() override { ::close(fd_); }
  uint64_t size() const override { return size_; }
  absl::StatusOr<size_t> Read(char* buf, size_t n) override {
    const ssize_t got = NoIntr([&] { return ::read(fd_, buf, n); });
    if (got < 0) return ErrnoStatus(errno, "read", path_);
    return static_cast<size_t>(got);
  }

 private:
  const int fd_;
  const std::string path_;
  const uint64_t size_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<env::ReadableFile>> PosixDisk::OpenRead(
    const std::string& path) {
  const std::string p = Resolve(path);
  int fd = NoIntr([&] { return ::open(p.c_str(), O_RDONLY | O_CLOEXEC); });
  if (fd < 0) return ErrnoStatus(errno, "open", path);
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    return ErrnoStatus(err, "stat", path);
  }
  if (S_ISDIR(st.st_mode)) {
    ::close(fd);
    return ErrnoStatus(EISDIR, "read", path);
  }
  return std::unique_ptr<env::ReadableFile>(
      new PosixReadFile(fd, path, static_cast<uint64_t>(st.st_size)));
}

absl::StatusOr<std::string> PosixDisk::ReadAll(const std::string& path) {
  auto f = OpenRead(path);
  if (!f.ok()) return f.status();
  std::string out;
  out.reserve(static_cast<size_t>((*f)->size()));
  char buf[1 << 16];
  for (;;) {
    auto n = (*f)->Read(buf, sizeof(buf));
    if (!n.ok()) return n.status();
    if (*n == 0) break;
    out.append(buf, *n);
  }
  return out;
}

absl::StatusOr<std::vector<std::string>> PosixDisk::List(
    const std::string& dir) {
  const std::string p = Resolve(dir);
  DIR* d = ::opendir(p.c_str());
  if (d == nullptr) return ErrnoStatus(errno, "opendir", dir);
  std::vector<std::string> names;
  for (;;) {
    errno = 0;
    dirent* e = ::readdir(d);
    if (e == nullptr) {
      if (errno != 0) {
        int err = errno;
        ::closedir(d);
        return ErrnoStatus(err, "readdir", dir);
      }
      break;
    }
    std::string_view n = e->d_name;
    if (n == "." || n == "..") continue;
    names.emplace_back(n);
  }
  ::closedir(d);
  std::sort(names.begin(), names.end());
  return names;
}

absl::Status PosixDisk::CreateDir(const std::string& dir) {
  const std::string p = Resolve(dir);
  // mkdir -p: create each missing component from the top down.
  for (size_t pos = 1; pos <= p.size(); ++pos) {
    if (pos != p.size() && p[pos] != '/') continue;
    const std::string prefix = p.substr(0, pos);
    if (::mkdir(prefix.c_str(), kDirMode) == 0) continue;
    int err = errno;
    if (err != EEXIST) return ErrnoStatus(err, "mkdir", dir);
    struct stat st;
    if (::stat(prefix.c_str(), &st) != 0) return ErrnoStatus(errno, "stat", dir);
    if (!S_ISDIR(st.st_mode)) return ErrnoStatus(ENOTDIR, "mkdir", dir);
  }
  return absl::OkStatus();
}

absl::Status PosixDisk::Remove(const std::string& path) {
  const std::string p = Resolve(path);
  if (::unlink(p.c_str()) == 0) return absl::OkStatus();
  int err = errno;
  // An empty directory may be removed too (the simulator has no use for it,
  // but tooling cleaning up a member dir does).
  if (err == EISDIR && ::rmdir(p.c_str()) == 0) return absl::OkStatus();
  return ErrnoStatus(err == EISDIR ? errno : err, "remove", path);
}

absl::Status PosixDisk::Rename(const std::string& from, const std::string& to) {
  if (::rename(Resolve(from).c_str(), Resolve(to).c_str()) != 0) {
    return ErrnoStatus(errno, "rename", absl::StrCat(from, " -> ", to));
  }
  return absl::OkStatus();
}

absl::Status PosixDisk::Truncate(const std::string& path, uint64_t size) {
  const std::string p = Resolve(path);
  int fd = NoIntr([&] { return ::open(p.c_str(), O_WRONLY | O_CLOEXEC); });
  if (fd < 0) return ErrnoStatus(errno, "open", path);
  struct stat st;
  absl::Status s;
  if (::fstat(fd, &st) != 0) {
    s = ErrnoStatus(errno, "stat", path);
  } else if (static_cast<uint64_t>(st.st_size) > size) {
    // The WAL cuts a torn tail off before appending again; the cut must be
    // durable before new records land after it, so sync here.
    if (::ftruncate(fd, static_cast<off_t>(size)) != 0) {
      s = ErrnoStatus(errno, "truncate", path);
    } else if (NoIntr([&] { return ::fsync(fd); }) != 0) {
      s = ErrnoStatus(errno, "fsync", path);
    }
  }
  ::close(fd);
  return s;
}

absl::Status PosixDisk::SyncDir(const std::string& dir) {
  // Only the directory: its own entry lives in its parent, which a caller
  // that created the directory syncs too (the engine does, as the
  // simulator's disk demands).
  return FsyncPath(Resolve(dir), dir);
}

bool PosixDisk::Exists(const std::string& path) {
  struct stat st;
  return ::stat(Resolve(path).c_str(), &st) == 0;
}

absl::StatusOr<std::unique_ptr<DataDirLock>> DataDirLock::Acquire(
    const std::string& dir) {
  PosixDisk disk;
  if (absl::Status s = disk.CreateDir(dir); !s.ok()) return s;
  std::string path = dir.empty() ? "detcd.lock" : dir + "/detcd.lock";
  int fd = NoIntr([&] {
    return ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, kFileMode);
  });
  if (fd < 0) return ErrnoStatus(errno, "open", path);
  if (NoIntr([&] { return ::flock(fd, LOCK_EX | LOCK_NB); }) != 0) {
    int err = errno;
    ::close(fd);
    if (err == EWOULDBLOCK) {
      return absl::FailedPreconditionError(absl::StrCat(
          "cannot lock data dir ", dir, " (", path,
          "): fileutil: file already locked; is another detcd or etcd "
          "using this --data-dir?"));
    }
    return ErrnoStatus(err, "flock", path);
  }
  return std::unique_ptr<DataDirLock>(new DataDirLock(fd, std::move(path)));
}

DataDirLock::~DataDirLock() { ::close(fd_); }

absl::Status LockDataDir(const std::string& dir) {
  auto lock = DataDirLock::Acquire(dir);
  if (!lock.ok()) return lock.status();
  // Held for the life of the process: kept reachable so leak checkers stay
  // quiet, never released.
  static std::mutex mu;
  static auto* held = new std::vector<std::unique_ptr<DataDirLock>>();
  std::lock_guard<std::mutex> l(mu);
  held->push_back(*std::move(lock));
  return absl::OkStatus();
}

}  // namespace detcd::shim
