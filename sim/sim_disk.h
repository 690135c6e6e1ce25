// An in-memory env::Disk with a crash model and injected faults.
//
// Every file keeps two images: what the OS has accepted (`data`) and what is
// known to be on stable storage (`synced`, a prefix-or-older image of data,
// updated by WritableFile::Sync). Directory entries behave the same way:
// creates, renames and removes are durable only after SyncDir of their
// directory. Crash() throws away the volatile images:
//   - each file's unsynced suffix is dropped, kept, or torn (a random prefix
//     of it kept, possibly with its last bytes garbled), per DiskFaults;
//   - directory changes not made durable by SyncDir are undone (a file
//     created but not dir-synced may vanish; a rename may revert).
// Wipe() loses everything, as a replaced disk would.
//
// Faults: each operation fails with EIO (absl::Internal "EIO: ...") with
// probability eio_probability; an Append that would exceed the capacity
// fails with ENOSPC (absl::ResourceExhausted "ENOSPC: ...") after writing
// nothing. A failed Sync leaves the unsynced bytes unsynced.
//
// Every operation adds simulated latency to `pending_latency()`; the owner
// (the cluster) charges it to the node as time it was busy.
//
// Deterministic: all choices come from the Rng given at construction, and
// directory listings are sorted.
#ifndef DETCD_SIM_SIM_DISK_H_
#define DETCD_SIM_SIM_DISK_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "engine/env/env.h"
#include "sim/world.h"

namespace detcd::sim {

struct DiskFaults {
  double eio_probability = 0;  // per Append / Sync / Create / Rename ...
  // On crash, for a file with unsynced data: keep all of it with this
  // probability; otherwise drop it, or with crash_tear_probability keep a
  // random prefix and garble up to 8 of its last bytes.
  double crash_keep_unsynced_probability = 0;
  double crash_tear_probability = 0;
  int64_t sync_latency_ns = 0;    // added per Sync / SyncDir
  int64_t write_latency_ns = 0;   // added per Append
};

class SimDisk final : public env::Disk {
 public:
  explicit SimDisk(env::SeededRng rng);
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

  void set_faults(const DiskFaults& f) { faults_ = f; }
  const DiskFaults& faults() const { return faults_; }
  // 0 = unlimited.
  void set_capacity_bytes(uint64_t c) { capacity_ = c; }
  uint64_t used_bytes() const;

  // Loses everything not durable, as a power cut would. Open WritableFiles
  // become dead: further calls on them fail.
  void Crash();
  // Loses everything.
  void Wipe();

  // Determinism: every write and sync is folded into the world's trace
  // hash, under this disk's node id.
  void set_trace(World* world, uint64_t node) {
    trace_world_ = world;
    trace_node_ = node;
  }

  int64_t pending_latency() const { return pending_latency_; }
  int64_t TakePendingLatency() {
    int64_t l = pending_latency_;
    pending_latency_ = 0;
    return l;
  }

  // Counters, for tests and the run summary.
  uint64_t syncs() const { return syncs_; }
  uint64_t injected_errors() const { return injected_errors_; }

 private:
  friend class SimFile;
  struct File {
    std::string data;    // what reads see
    std::string synced;  // what survives a crash
  };
  // A directory's entries: name -> file. `durable` is the view a crash
  // returns to; it is updated for a directory by SyncDir.
  struct Dir {
    std::map<std::string, std::shared_ptr<File>> live;
    std::map<std::string, std::shared_ptr<File>> durable;
    bool durable_exists = false;  // the directory itself survives a crash
  };

  bool Fail(const char* op, const std::string& path, absl::Status* out);
  Dir* FindDir(const std::string& dir);
  std::shared_ptr<File> FindFile(const std::string& path);
  static void Split(const std::string& path, std::string* dir,
                    std::string* name);
  absl::Status AppendTo(File& f, std::string_view data,
                        const std::string& path);
  absl::Status SyncFile(File& f, const std::string& path);

  env::SeededRng rng_;
  DiskFaults faults_;
  uint64_t capacity_ = 0;
  std::map<std::string, Dir> dirs_;  // by full path; "" is the root
  uint64_t epoch_ = 0;               // bumped by Crash/Wipe; kills old files
  int64_t pending_latency_ = 0;
  uint64_t syncs_ = 0;
  uint64_t injected_errors_ = 0;
  World* trace_world_ = nullptr;  // see set_trace
  uint64_t trace_node_ = 0;
};

}  // namespace detcd::sim

#endif  // DETCD_SIM_SIM_DISK_H_
