// An in-memory env::Disk with a crash model and injected faults.
//
// FILES. Every file keeps two images: what reads see (`data`, the page
// cache) and what is on stable storage (`synced`). Writes are appends; they
// dirty the 4 KiB pages they touch. With set_fill_ahead_bytes a
// file opened by OpenAppend gets zeros after its appends (durable), which
// the appends then write over, as the real server's disk fills ahead.
//   - Sync writes every dirty page back, and the file size: synced = data.
//   - A failed Sync (EIO) behaves as Linux does: each dirty page was written
//     back or not, at random (DiskFaults::failed_sync_write_probability), and
//     all of them are marked clean anyway. The error is reported once: a
//     later successful Sync does not write the lost pages again (unless a
//     new write dirties them), so what the failed Sync lost stays lost,
//     while reads keep seeing it until a crash. A lost page below the
//     synced size reads back as zeros after a crash.
//   - Crash() keeps `synced` and writes back each dirty page or not,
//     independently, so a later page may survive an earlier lost one (disks
//     write back out of order); a page may also be torn at 512-byte sector
//     granularity (some sectors written, some not, the last one maybe half
//     written and garbled); a file may come back longer, zero-filled (its
//     size reached the disk, its data did not). Synced bytes are never
//     damaged. DiskFaults' crash_* fields choose how much survives;
//     CrashRandomly() draws them anew for each crash.
// DIRECTORY ENTRIES. Creates, renames and removes in a directory are
// durable only after SyncDir of that directory. A directory's own entry
// lives in its parent: a new directory survives a crash only once its
// parent has been synced after it was created (mkdir; fsync(parent)). A
// crash undoes directory changes that were not durable: a file created but
// not dir-synced vanishes, a rename reverts, a directory whose entry never
// reached its parent vanishes with everything in it.
// Wipe() loses everything, as a replaced disk would.
//
// FAULTS. Each operation fails with EIO (absl::Internal "EIO: ...") with
// probability eio_probability; an Append that would exceed the capacity
// fails with ENOSPC (absl::ResourceExhausted "ENOSPC: ...") after writing
// nothing. With power_cut_at_next_sync the next Sync or SyncDir is cut by a
// power failure: it fails, every later operation fails too, and the node's
// owner is expected to Crash() the disk (what reached the platters is then
// up to the crash model: the in-flight pages stay dirty).
//
// LATENCY. Every operation adds simulated latency to pending_latency(); the
// owner (the cluster) charges it to the messages the node sends in that
// event. StallUntil(t) makes the disk hang until virtual time t (a slow or
// failing disk that blocks its process for seconds): until then
// pending_latency() includes the rest of the stall, so nothing the node
// sends leaves before the stall ends.
//
// LOG WRITES AS EVENTS. With a scheduler (set_scheduler), the disk is also
// the node's env::DiskWorker: Submit runs the work at once (its appends
// reach the page cache, reads see them) but holds back the fsyncs it asks
// for (until the work does more I/O: a real fsync returned before that
// began), and schedules the completion after the write's latency (appends
// and syncs, plus the rest of a stall). The completion performs the held
// fsyncs' write-back and then calls `done`. Whether an fsync fails (EIO,
// a power cut) is decided when the work asks for it, so the work sees the
// error as from a real fsync. A crash before it finds the write unsynced,
// as a power cut during a real fsync would, and the completion never
// runs. Drain writes back the held fsyncs of every submission not yet
// completed (a real Drain returns once they are done); a crash calls
// ForgetOutstanding first. The write's latency delays the completion, not
// the messages the node sends meanwhile.
//
// CHECKERS. SyncedFiles(dir) shows what a crash that lost every unsynced
// byte would leave of a directory, independently of what the engine thinks
// it made durable; durable_version() changes whenever that may have changed.
//
// Deterministic: all choices come from the Rng given at construction, and
// directory listings are sorted.
#ifndef DETCD_SIM_SIM_DISK_H_
#define DETCD_SIM_SIM_DISK_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "engine/env/env.h"
#include "sim/schedule.h"
#include "sim/world.h"

namespace detcd::sim {

struct DiskFaults {
  double eio_probability = 0;  // per Append / Sync / Create / Rename ...
  // What a crash does with each dirty page: written back whole with
  // crash_keep_unsynced_probability; otherwise torn (some of its sectors
  // written) with crash_tear_probability; otherwise lost.
  double crash_keep_unsynced_probability = 0;
  double crash_tear_probability = 0;
  // With this probability a crash that lost some data still leaves the
  // file at its full length, the lost parts zero-filled.
  double crash_zero_fill_probability = 0;
  // A failed Sync wrote back each dirty page with this probability; the
  // others are dropped (marked clean, never written).
  double failed_sync_write_probability = 0.5;
  // One-shot: the next Sync / SyncDir is cut by a power failure (see the
  // header comment). Cleared when it fires.
  bool power_cut_at_next_sync = false;
  int64_t sync_latency_ns = 0;    // added per Sync / SyncDir
  int64_t write_latency_ns = 0;   // added per Append
};

class SimDisk final : public env::Disk, public env::DiskWorker {
 public:
  static constexpr size_t kPageBytes = 4096;
  static constexpr size_t kSectorBytes = 512;

  // With `decisions`, its draws are recorded and replayable as the stream
  // `name` (the base sequence it derives from, e.g. "disk-3").
  explicit SimDisk(env::SeededRng rng, Decisions* decisions = nullptr,
                   std::string_view name = "");
  ~SimDisk() override;

  absl::StatusOr<std::unique_ptr<env::WritableFile>> OpenAppend(
      const std::string& path) override;
  absl::StatusOr<std::unique_ptr<env::WritableFile>> Create(
      const std::string& path) override;
  absl::StatusOr<std::string> ReadAll(const std::string& path) override;
  absl::StatusOr<std::vector<std::string>> List(
      const std::string& dir) override;
  absl::Status CreateDir(const std::string& dir) override;
  absl::Status Remove(const std::string& path) override;
  absl::Status Rename(const std::string& from, const std::string& to) override;
  absl::Status Truncate(const std::string& path, uint64_t size) override;
  absl::Status SyncDir(const std::string& dir) override;
  bool Exists(const std::string& path) override;

  // env::DiskWorker, once a scheduler is set (see the header comment).
  env::DiskWorker* worker() override {
    return scheduler_ ? static_cast<env::DiskWorker*>(this) : nullptr;
  }
  // The same (each submission's completion comes after its own latency,
  // so a snapshot file's commit and the log's writes complete in either
  // order, as the real server's two disk threads do).
  env::DiskWorker* file_worker() override { return worker(); }
  void Submit(std::function<absl::Status()> work,
              std::function<void(absl::Status)> done) override;
  // The work has run already; the fsyncs it asked for whose completions
  // have not come are written back now (a real Drain waits for them).
  void Drain() override;
  // The process is about to die (a crash): the submitted work's
  // completions will never come, and what its held fsyncs wrote is the
  // crash's to decide, so a Drain from the dying Node's destructor writes
  // nothing back. Called before the Node is destroyed.
  void ForgetOutstanding() { outstanding_.clear(); }
  // Runs `event` after `delay_ns` of virtual time, as an event of the
  // node's own (its owner skips it if the node crashed meanwhile).
  using Scheduler =
      std::function<void(int64_t delay_ns, std::function<void()> event)>;
  void set_scheduler(Scheduler s) { scheduler_ = std::move(s); }

  void set_faults(const DiskFaults& f) { faults_ = f; }
  // Fill-ahead (env::Disk::OpenAppend), as the real server's disk does:
  // after each successful sync of a file opened by OpenAppend, the disk
  // tops it up to this many zero bytes after what was appended, durable at
  // once, and later appends write over them. 0 (the default): never. No
  // draws, no latency (the real disk fills while idle), not in the trace.
  void set_fill_ahead_bytes(uint64_t n) { fill_ahead_bytes_ = n; }
  const DiskFaults& faults() const { return faults_; }
  // 0 = unlimited.
  void set_capacity_bytes(uint64_t c) { capacity_ = c; }
  uint64_t used_bytes() const;

  // Loses everything not durable, as a power cut would, with the crash_*
  // probabilities of faults(). Open WritableFiles become dead: further
  // calls on them fail.
  void Crash();
  // Crash() with crash_* probabilities drawn for this crash alone: all
  // unsynced data lost, all kept, or each page kept, torn or lost at
  // random rates.
  void CrashRandomly();
  // Loses everything.
  void Wipe();
  // A power cut happened and no Crash() followed yet: every operation fails.
  bool powered_off() const { return dead_; }

  // Determinism: every write and sync is folded into the world's trace
  // hash, under this disk's node id.
  void set_trace(World* world, uint64_t node) {
    trace_world_ = world;
    trace_node_ = node;
  }

  // Virtual time, for stalls. Without it StallUntil has no effect.
  void set_time_source(std::function<int64_t()> now) { now_ = std::move(now); }
  // The disk hangs until virtual time `until_ns` (see the header comment).
  void StallUntil(int64_t until_ns);

  int64_t pending_latency() const;
  int64_t TakePendingLatency() {
    int64_t l = pending_latency_;
    pending_latency_ = 0;
    return l;
  }

  // The durable view, for checkers (see the header comment).
  struct SyncedFile {
    std::string name;
    // Valid until the next call that changes the disk.
    std::string_view bytes;
    uint64_t inode = 0;     // differs for a replaced file and after a crash
    uint64_t rewrites = 0;  // changes when bytes change other than by growing
  };
  // Sorted by name; empty if the directory would not survive a crash.
  std::vector<SyncedFile> SyncedFiles(const std::string& dir) const;
  uint64_t durable_version() const { return durable_version_; }

  // Counters, for tests and the run summary.
  uint64_t syncs() const { return syncs_; }
  // Faults that fired: injected errors (EIO, ENOSPC), power cuts, stalls.
  uint64_t injected_errors() const { return injected_errors_; }

 private:
  friend class SimFile;
  static constexpr uint64_t kClean = ~uint64_t{0};
  struct File {
    uint64_t inode = 0;
    std::string data;    // what reads see
    std::string synced;  // what survives a crash
    // data[dirty_from, end) is not written back yet (writes are appends, so
    // the dirty pages are always a suffix).
    uint64_t dirty_from = kClean;
    uint64_t rewrites = 0;
    // Fill-ahead (set_fill_ahead_bytes): the last `fill` bytes of
    // data are zeros the disk put after what was appended (appends write
    // over them); synced[zero_from, end) holds only such zeros, so writing
    // there is not a rewrite. `fills`: opened by OpenAppend.
    uint64_t fill = 0;
    uint64_t zero_from = kClean;
    bool fills = false;
  };
  // A directory's entries: name -> file. `durable` is the view a crash
  // returns to; it is updated for a directory by SyncDir.
  struct Dir {
    std::map<std::string, std::shared_ptr<File>> live;
    std::map<std::string, std::shared_ptr<File>> durable;
    bool durable_entry = false;  // its entry in the parent is durable
  };
  struct CrashModel {
    double keep = 0, tear = 0, zero_fill = 0;
  };
  enum class Io { kWrite, kSync, kSyncDir };

  // The one place every write and sync passes through (the determinism
  // trace hooks in here).
  void OnIo(Io io, const std::string& path, std::string_view bytes);
  bool Fail(const char* op, const std::string& path, absl::Status* out);
  bool PowerCut(const std::string& path, absl::Status* out);
  std::shared_ptr<File> NewFile();
  Dir* FindDir(const std::string& dir);
  std::shared_ptr<File> FindFile(const std::string& path);
  bool DirSurvives(const std::string& dir) const;
  static void Split(const std::string& path, std::string* dir,
                    std::string* name);
  absl::Status AppendTo(File& f, std::string_view data,
                        const std::string& path);
  absl::Status SyncFile(File& f, const std::string& path);
  // The faults an fsync may meet (power cut, EIO: then the Linux-like
  // loss of dirty pages); true with *out set if one fired.
  bool SyncFaults(File& f, const std::string& path, absl::Status* out);
  // A successful fsync's write-back: every dirty page, and the size; then
  // the fill-ahead top-up.
  void WriteBackAll(File& f);
  void FillAhead(File& f);
  // SimFile::Sync: at once, or held for the completion of a Submit.
  absl::Status SyncOrHold(const std::shared_ptr<File>& f,
                          const std::string& path);
  // Copies data[from, to) onto the stable image.
  void WriteBack(File& f, uint64_t from, uint64_t to);
  std::string CrashImage(const File& f, const CrashModel& m);
  void CrashWith(const CrashModel& m);

  ScheduledRng rng_;
  DiskFaults faults_;
  uint64_t fill_ahead_bytes_ = 0;
  uint64_t capacity_ = 0;
  std::map<std::string, Dir> dirs_;  // by full path; "" is the root
  uint64_t epoch_ = 0;               // bumped by Crash/Wipe; kills old files
  uint64_t next_inode_ = 1;
  uint64_t durable_version_ = 0;
  bool dead_ = false;                // a power cut happened; Crash() revives
  int64_t pending_latency_ = 0;
  int64_t stall_until_ = 0;
  std::function<int64_t()> now_;
  uint64_t syncs_ = 0;
  uint64_t injected_errors_ = 0;
  Scheduler scheduler_;
  // Inside Submit: the fsyncs the work asked for, done at its completion,
  // unless the work does more I/O after one: a real fsync returned before
  // that I/O began, so the held ones are written back first
  // (CompleteHeldSyncs; a snapshot file synced, then renamed and pointed
  // at by a WAL marker in the same work, must not be found lost under a
  // surviving marker). held_sync_count_ counts them all, for the latency.
  bool holding_syncs_ = false;
  std::vector<std::pair<std::shared_ptr<File>, std::string>> held_syncs_;
  size_t held_sync_count_ = 0;
  void CompleteHeldSyncs();
  // Submitted work whose completion has not come, with the fsyncs held
  // for it (in submission order): Drain writes them back, as the real
  // worker's Drain returns only once they are done.
  struct Outstanding {
    uint64_t id = 0;
    std::vector<std::pair<std::shared_ptr<File>, std::string>> syncs;
  };
  std::vector<Outstanding> outstanding_;
  uint64_t next_outstanding_ = 0;
  void WriteBackHeld(
      const std::vector<std::pair<std::shared_ptr<File>, std::string>>& s);
  World* trace_world_ = nullptr;  // see set_trace
  uint64_t trace_node_ = 0;
};

}  // namespace detcd::sim

#endif  // DETCD_SIM_SIM_DISK_H_
