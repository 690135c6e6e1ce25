// env::Disk over POSIX files, for the real server.
//
// Paths: a path that starts with '/' is used as is; any other path is taken
// relative to the root given at construction ("" or "." = the process's
// working directory); the empty path names the root itself. The server
// hands the Node data_dir = "<data-dir>/member" (absolute or relative to the
// working directory) and a PosixDisk rooted at "", so paths in logs are the
// ones the operator typed.
//
// Durability follows the env::Disk contract and the simulator's model
// (sim/sim_disk.h):
//   - WritableFile::Append writes (pwrite) at the end of what was appended,
//     which is the file's end but for the zeros the disk fills OpenAppend
//     files ahead with (FillAheadStep); Sync is fdatasync(2);
//   - Create truncates (O_TRUNC) an existing file;
//   - directory entries (create, rename, remove) are durable after SyncDir,
//     which fsyncs the directory (only: a directory created by CreateDir
//     survives a crash once its parent has been synced too, as in the
//     simulator);
//   - Truncate shrinks the file and fsyncs it (it never grows a file, as in
//     the simulator).
// CreateDir has mkdir -p semantics (0700 directories, as etcd's
// PrivateDirMode); files are created 0600.
//
// Errors carry the simulator's codes so engine code sees the same statuses
// in both worlds:
//   ENOENT, ENOTDIR      -> NotFound
//   ENOSPC, EDQUOT       -> ResourceExhausted "ENOSPC: <op> <path>: ..."
//   EIO and anything else-> Internal "EIO: <op> <path>: ..." (other errnos
//                           keep their own name, e.g. "EACCES: ...")
//   EEXIST               -> AlreadyExists
//   EACCES, EPERM, EROFS -> PermissionDenied
//   a closed file        -> FailedPrecondition "file is closed"
#ifndef DETCD_SHIM_POSIX_DISK_H_
#define DETCD_SHIM_POSIX_DISK_H_

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/env/env.h"

namespace detcd::shim {

class PosixFile;

class PosixDisk final : public env::Disk {
 public:
  explicit PosixDisk(std::string root = "");

  // The thread that runs the engine's log writes (shim/disk_worker.h), or
  // null (the default): the engine then writes inline. The server sets it
  // before the engine starts; the worker must outlive every Node using
  // this disk.
  void set_worker(env::DiskWorker* w) { worker_ = w; }
  env::DiskWorker* worker() override { return worker_; }
  void set_file_worker(env::DiskWorker* w) { file_worker_ = w; }
  env::DiskWorker* file_worker() override { return file_worker_; }

  absl::StatusOr<std::unique_ptr<env::WritableFile>> OpenAppend(
      const std::string& path) override;
  absl::StatusOr<std::unique_ptr<env::WritableFile>> Create(
      const std::string& path) override;
  absl::StatusOr<std::string> ReadAll(const std::string& path) override;
  absl::StatusOr<std::unique_ptr<env::ReadableFile>> OpenRead(
      const std::string& path) override;
  absl::StatusOr<std::vector<std::string>> List(
      const std::string& dir) override;
  absl::Status CreateDir(const std::string& dir) override;
  absl::Status Remove(const std::string& path) override;
  absl::Status Rename(const std::string& from, const std::string& to) override;
  absl::Status Truncate(const std::string& path, uint64_t size) override;
  absl::Status SyncDir(const std::string& dir) override;
  bool Exists(const std::string& path) override;
  // On a thread of its own (started at the first call): unlinking a 64 MiB
  // WAL segment took 40-60 ms on ext4, and the engine thread released four
  // at once after a snapshot. A failure is logged and ends that batch (the
  // rest stay for the next start); the destructor waits for what is queued.
  absl::Status RemoveInOrder(const std::vector<std::string>& paths,
                             const std::string& dir) override;
  // Returns once every removal queued so far is done (tests, tools).
  void WaitForRemovals();

  // Fills a file opened by OpenAppend ahead of its writes (env.h): one
  // step of 256 KiB of zeros, then fdatasync, for a file with less than
  // 4 MiB of zeros ahead of its end. A write then lands in allocated
  // blocks inside the file's size, and its fdatasync writes the data
  // alone: on ext4 (this machine's virtual disk, no journal) a 4 KiB
  // write + fdatasync took 120 us there against 180 us when it grew the
  // file, and 36 against 55 us of CPU. The disk thread runs the steps
  // while it has nothing else to do (DiskThread::SetIdleWork); true if a
  // step was taken. A step that fails (ENOSPC) ends that file's filling:
  // it grows as it is written. Thread-safe: a file's writes and its fill
  // steps take turns (the file's mutex).
  bool FillAheadStep();
  // A step would write (cheap: no I/O).
  bool FillAheadDue();
  // The OpenAppend files (for FillAheadStep).
  struct Fills {
    void Add(PosixFile* f);
    void Remove(PosixFile* f);
    std::mutex mu;  // held through a step: Remove waits for it
    std::vector<PosixFile*> files;
  };
  ~PosixDisk() override;

  // The OS path a disk path maps to.
  std::string Resolve(const std::string& path) const;
  const std::string& root() const { return root_; }

 private:
  struct Remover;
  void RunRemovals();  // the remover thread
  std::string root_;
  env::DiskWorker* worker_ = nullptr;
  env::DiskWorker* file_worker_ = nullptr;
  std::unique_ptr<Remover> remover_;
  std::unique_ptr<Fills> fills_;
};

// Converts an errno from operation `op` on `path` into a status, as the table
// above says.
absl::Status ErrnoStatus(int err, const char* op, const std::string& path);

// An exclusive advisory lock (flock(2)) on <dir>/detcd.lock, so that two
// detcd processes (or two servers in one process) never share a data dir.
// Pass the top data dir (--data-dir), not <data-dir>/member: the directory is
// created if missing, and the Node decides "new or restarted member" by the
// existence of member/. Released when the object is destroyed (or the
// process exits).
class DataDirLock {
 public:
  // FailedPrecondition "... fileutil: file already locked ..." (etcd's
  // wording) when another holder has it.
  static absl::StatusOr<std::unique_ptr<DataDirLock>> Acquire(
      const std::string& dir);
  ~DataDirLock();
  DataDirLock(const DataDirLock&) = delete;
  DataDirLock& operator=(const DataDirLock&) = delete;
  const std::string& path() const { return path_; }

 private:
  DataDirLock(int fd, std::string path) : fd_(fd), path_(std::move(path)) {}
  int fd_;
  std::string path_;
};

// Takes the DataDirLock of dir and holds it until the process exits.
absl::Status LockDataDir(const std::string& dir);

}  // namespace detcd::shim

#endif  // DETCD_SHIM_POSIX_DISK_H_
