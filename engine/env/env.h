// The engine's only window on the world.
//
// Everything in engine/ that would otherwise touch the OS (time, files,
// sockets, randomness) goes through these interfaces. The real server (shim/)
// implements them with POSIX calls; the simulator (sim/) implements them with
// virtual time, an in-memory fault-injecting disk and a lossy network. Because
// engine code can only see these interfaces, a run in the simulator exercises
// exactly the code that ships.
//
// Fault injectors derive from EnvWrapper and override only what they change
// (as in LevelDB's EnvWrapper).
#ifndef DETCD_ENGINE_ENV_ENV_H_
#define DETCD_ENGINE_ENV_ENV_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace detcd::env {

// Monotonic time in nanoseconds since an arbitrary origin. The simulator's
// clock may be skewed, drift or jump per node; code that compares times taken
// on different nodes must allow for that.
class Clock {
 public:
  virtual ~Clock() = default;
  virtual int64_t NowNanos() = 0;
};

// A file opened for appending. Data is durable only once Sync() returns OK;
// a crash may drop or tear anything appended after the last successful Sync,
// in any order (a later page may survive an earlier lost one). A failed
// Sync may have dropped unsynced data for good, as Linux does: the error is
// reported once and a later successful Sync does not bring it back, so a
// caller must treat a failed Sync as fatal, never retry it.
class WritableFile {
 public:
  virtual ~WritableFile() = default;
  [[nodiscard]] virtual absl::Status Append(std::string_view data) = 0;
  [[nodiscard]] virtual absl::Status Sync() = 0;
  [[nodiscard]] virtual absl::Status Close() = 0;
};

// A file read front to back, a piece at a time (Disk::OpenRead).
class ReadableFile {
 public:
  virtual ~ReadableFile() = default;
  // The file's size when it was opened.
  virtual uint64_t size() const = 0;
  // Reads up to n bytes, those after the last read, into buf; returns how
  // many (0 at the end).
  [[nodiscard]] virtual absl::StatusOr<size_t> Read(char* buf, size_t n) = 0;
};

// Runs the engine's log writes (WAL append + fsync) off its thread, so the
// engine goes on stepping raft and serving while the disk works (the
// leader's fsync in parallel with replication, Raft thesis §10.2.1). The
// engine decides what to write and what waits for it; the env only
// provides "write, then call me back".
class DiskWorker {
 public:
  virtual ~DiskWorker() = default;
  // Runs `work` (I/O on files the caller owns and leaves alone until `done`
  // runs), then `done` with its status on the engine's thread as an event
  // of its own, never within Submit. Submissions complete in the order
  // they were made.
  virtual void Submit(std::function<absl::Status()> work,
                      std::function<void(absl::Status)> done) = 0;
  // Returns once no submitted work is running (its `done` may still be
  // pending), so the caller may use those files again at once (to take a
  // snapshot, or before it is destroyed).
  virtual void Drain() = 0;
  // Frees `garbage` (state the engine replaced: a whole store after a
  // snapshot's restore) where the freeing does not hold the engine up,
  // after the work submitted before it. The default frees it at once.
  virtual void Free(std::shared_ptr<void> garbage) { garbage.reset(); }
};

// A directory tree of files. Paths are '/'-separated and relative to the
// node's data dir root as the implementation defines it.
class Disk {
 public:
  virtual ~Disk() = default;
  // The worker that runs log writes off the engine's thread, or null: the
  // engine then writes inline (a blocking fsync per Ready).
  virtual DiskWorker* worker() { return nullptr; }
  // A second worker, for files outside the log (a finished snapshot
  // file's fsync, rename and directory sync): its work runs beside the
  // log writes, so neither waits for the other's fsync, and its
  // completions come to the engine's thread as the log writer's do.
  // Null: the engine does such work inline.
  virtual DiskWorker* file_worker() { return nullptr; }
  // Opens (or creates) a file to append to. A disk may fill such a file
  // ahead of its writes: zero bytes after the last one appended, made
  // durable by the disk on its own (so that later appends land in
  // allocated blocks and their fdatasync has no size or block map to
  // write). Appends still follow the last appended byte; a reader, and a
  // later OpenAppend, see the zeros as part of the file (its owner
  // truncates them away before appending to it again).
  [[nodiscard]] virtual absl::StatusOr<std::unique_ptr<WritableFile>>
  OpenAppend(const std::string& path) = 0;
  // Creates (or truncates) a file for writing.
  [[nodiscard]] virtual absl::StatusOr<std::unique_ptr<WritableFile>>
  Create(const std::string& path) = 0;
  [[nodiscard]] virtual absl::StatusOr<std::string> ReadAll(
      const std::string& path) = 0;
  // Opens a file to read front to back, so that a large one (a snapshot
  // file: hundreds of MB) need never be held whole. This one reads it
  // whole (ReadAll) and hands it out in pieces.
  [[nodiscard]] virtual absl::StatusOr<std::unique_ptr<ReadableFile>> OpenRead(
      const std::string& path);
  [[nodiscard]] virtual absl::StatusOr<std::vector<std::string>> List(
      const std::string& dir) = 0;  // sorted names, not paths
  [[nodiscard]] virtual absl::Status CreateDir(const std::string& dir) = 0;
  [[nodiscard]] virtual absl::Status Remove(const std::string& path) = 0;
  [[nodiscard]] virtual absl::Status Rename(const std::string& from,
                                            const std::string& to) = 0;
  [[nodiscard]] virtual absl::Status Truncate(const std::string& path,
                                              uint64_t size) = 0;
  // Makes the entries of dir (files created, renamed or removed in it, and
  // its subdirectories) durable: fsync of the directory. A directory's own
  // entry lives in its parent, so a newly created directory is durable only
  // once its parent has been synced too.
  [[nodiscard]] virtual absl::Status SyncDir(const std::string& dir) = 0;
  virtual bool Exists(const std::string& path) = 0;
  // Removes the files `paths` of directory `dir` in order, each removal
  // durable (dir synced) before the next, so a crash leaves a prefix of
  // them removed, never a gap. The caller never opens or creates these
  // paths again. A disk may do it after returning, on a thread of its own
  // (unlinking a large preallocated file takes tens of ms): an error is
  // then its own to report, and a file it did not remove is still there
  // for the next start to find. This one removes them now and returns the
  // first error.
  [[nodiscard]] virtual absl::Status RemoveInOrder(
      const std::vector<std::string>& paths, const std::string& dir) {
    for (const std::string& p : paths) {
      if (absl::Status s = Remove(p); !s.ok()) return s;
      if (absl::Status s = SyncDir(dir); !s.ok()) return s;
    }
    return absl::OkStatus();
  }
};

// Delivers opaque payloads to peers, best effort: a payload may be lost,
// duplicated, delayed or reordered. Receiving is pushed into the engine by
// its owner (Node::OnMessage), so it is not part of this interface.
class Transport {
 public:
  virtual ~Transport() = default;
  virtual void Send(uint64_t to, std::string payload) = 0;
  // Called once per SendSnapshot: true when the whole payload was written
  // to the network, false when it was dropped or the write failed.
  using SnapshotDone = std::function<void(bool delivered)>;
  // Sends a payload that carries a raft snapshot (large, and the leader
  // holds the follower's replication until it is over) and reports when
  // the transfer is over. `done` runs on the engine's thread: within this
  // call, or later as an event of its own. The default sends as Send() and
  // reports at once, for transports that hand a payload over whole.
  virtual void SendSnapshot(uint64_t to, std::string payload,
                            SnapshotDone done) {
    Send(to, std::move(payload));
    done(true);
  }
  // The same payload in two parts, `head` then `*tail` (a snapshot's
  // image, which a transport that streams it sends from where it lies
  // rather than copied behind the head: hundreds of MiB at 1M keys). The
  // default joins them for SendSnapshot.
  virtual void SendSnapshotParts(uint64_t to, std::string head,
                                 std::shared_ptr<const std::string> tail,
                                 SnapshotDone done) {
    head.append(*tail);
    SendSnapshot(to, std::move(head), std::move(done));
  }
};

// Source of randomness. Every component gets its own stream, derived from the
// run's seed, so that adding a random draw in one component does not shift
// the draws of another.
class Rng {
 public:
  virtual ~Rng() = default;
  virtual uint64_t Next() = 0;
  // Uniform in [0, n). n must be > 0.
  uint64_t Uniform(uint64_t n);
  // Uniform in [lo, hi]. lo <= hi.
  int64_t Range(int64_t lo, int64_t hi);
  // True with probability p (p in [0, 1]).
  bool Chance(double p);
  // Uniform double in [0, 1).
  double UniformDouble();
};

// Deterministic xoshiro256** generator seeded through splitmix64. Pure
// computation, so it is allowed in the engine.
class SeededRng final : public Rng {
 public:
  explicit SeededRng(uint64_t seed);
  uint64_t Next() override;
  // A new independent stream named by `stream`; the same (seed, stream) pair
  // always gives the same sequence.
  SeededRng Derive(std::string_view stream) const;
  uint64_t seed() const { return seed_; }

 private:
  uint64_t seed_;
  uint64_t s_[4];
};

// The bundle handed to engine components.
// Runs CPU-heavy pure work (a bcrypt hash or check: tens of ms) away from
// the engine's thread, then `done` on the engine's thread as an event of
// its own. The work touches only what it owns.
class Offload {
 public:
  virtual ~Offload() = default;
  virtual void Run(std::function<void()> work, std::function<void()> done) = 0;
};

// Memory the engine read once and will not read again, given back to the
// system while the buffer holding it is still in use: a snapshot's image
// as a member restores from it, so a restart does not hold the image and
// the store built from it at once (the snapshot file itself is read a
// piece at a time: Disk::OpenRead).
class Memory {
 public:
  virtual ~Memory() = default;
  // The caller owns the buffer around [begin, end), has read those bytes
  // and never reads them again; the buffer stays valid to free. The real
  // server gives back the whole pages inside the range (their contents are
  // then lost); the simulator overwrites the range. Returns where the
  // range given back ends (begin if nothing was): the next call for the
  // same buffer starts there.
  virtual const char* ReleaseRead(const char* begin, const char* end) = 0;
  // How many bytes a reader gathers before it calls ReleaseRead (each
  // call may cost a system call): ReleaseBehind waits for that many.
  virtual size_t release_step() const { return 1; }
};

// Told, by a reader going once through a buffer front to back, that it
// reads nothing before `upto` any more (it may be told several times, with
// points that only grow).
using ReadBehind = std::function<void(const char* upto)>;

// A ReadBehind that gives back through `memory` what lies behind the points
// it is told (null when memory is null), starting at `begin`, the buffer's
// start, once at least memory->release_step() bytes wait.
ReadBehind ReleaseBehind(Memory* memory, const char* begin);

struct Env {
  Clock* clock = nullptr;
  Disk* disk = nullptr;
  Transport* transport = nullptr;
  Rng* rng = nullptr;
  Offload* offload = nullptr;  // null: the engine runs such work inline
  Memory* memory = nullptr;    // null: read buffers are freed whole
};

// Forwards every call to a target; fault injectors override only what they
// change.
class DiskWrapper : public Disk {
 public:
  explicit DiskWrapper(Disk* target) : target_(target) {}
  DiskWorker* worker() override { return target_->worker(); }
  DiskWorker* file_worker() override { return target_->file_worker(); }
  absl::StatusOr<std::unique_ptr<WritableFile>> OpenAppend(
      const std::string& path) override {
    return target_->OpenAppend(path);
  }
  absl::StatusOr<std::unique_ptr<WritableFile>> Create(
      const std::string& path) override {
    return target_->Create(path);
  }
  absl::StatusOr<std::string> ReadAll(const std::string& path) override {
    return target_->ReadAll(path);
  }
  absl::StatusOr<std::unique_ptr<ReadableFile>> OpenRead(
      const std::string& path) override {
    return target_->OpenRead(path);
  }
  absl::StatusOr<std::vector<std::string>> List(
      const std::string& dir) override {
    return target_->List(dir);
  }
  absl::Status CreateDir(const std::string& dir) override {
    return target_->CreateDir(dir);
  }
  absl::Status Remove(const std::string& path) override {
    return target_->Remove(path);
  }
  absl::Status Rename(const std::string& from, const std::string& to) override {
    return target_->Rename(from, to);
  }
  absl::Status Truncate(const std::string& path, uint64_t size) override {
    return target_->Truncate(path, size);
  }
  absl::Status SyncDir(const std::string& dir) override {
    return target_->SyncDir(dir);
  }
  bool Exists(const std::string& path) override {
    return target_->Exists(path);
  }
  absl::Status RemoveInOrder(const std::vector<std::string>& paths,
                             const std::string& dir) override {
    return target_->RemoveInOrder(paths, dir);
  }

 protected:
  Disk* target() const { return target_; }

 private:
  Disk* target_;
};

class ClockWrapper : public Clock {
 public:
  explicit ClockWrapper(Clock* target) : target_(target) {}
  int64_t NowNanos() override { return target_->NowNanos(); }

 protected:
  Clock* target() const { return target_; }

 private:
  Clock* target_;
};

// (SendSnapshotParts is not forwarded: its default joins the parts for
// SendSnapshot, so a wrapper sees every snapshot there.)
class TransportWrapper : public Transport {
 public:
  explicit TransportWrapper(Transport* target) : target_(target) {}
  void Send(uint64_t to, std::string payload) override {
    target_->Send(to, std::move(payload));
  }
  void SendSnapshot(uint64_t to, std::string payload,
                    SnapshotDone done) override {
    target_->SendSnapshot(to, std::move(payload), std::move(done));
  }

 protected:
  Transport* target() const { return target_; }

 private:
  Transport* target_;
};

}  // namespace detcd::env

#endif  // DETCD_ENGINE_ENV_ENV_H_
