// WAL append + sync batching: Wal::Save of a batch of N entries (128-byte
// payloads) and the hard state, with one sync per Save, as a server saves
// one Ready. Per-entry cost falls with the batch as the sync (and the
// record framing) is shared; that is group commit.
//
//   BM_WalSaveMem/N/sync     on sim::SimDisk (in memory, no faults): the
//                            WAL's own CPU cost (framing, CRC32C, buffer
//                            copies; Sync copies dirty pages to the synced
//                            image, which is cheap)
//   BM_WalSavePosix/N/sync/fill
//                            on shim::PosixDisk in a temporary directory
//                            ($TMPDIR or /tmp): real write(2) and
//                            fdatasync(2). Wall time is the figure that
//                            matters here (UseRealTime); CPU time shows
//                            what the process itself spent. fill = 1:
//                            between saves (timer paused) the disk fills
//                            the segment ahead with zeros as the server's
//                            idle disk thread does (PosixDisk::
//                            FillAheadStep), so each save writes into
//                            allocated blocks; fill = 0: the file grows.
// sync = 0 saves without syncing (the follower-side "write now, sync
// with the next Ready" shape and the raw append cost).
//
// The log is kept short: every 4096 entries a snapshot marker is saved and
// older segments released (as the server does after a snapshot), with the
// timer paused, so a long run measures the same segment shape throughout.
#include <benchmark/benchmark.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "engine/env/env.h"
#include "engine/raft/types.h"
#include "engine/wal/wal.h"
#include "shim/posix_disk.h"
#include "sim/sim_disk.h"

namespace detcd::wal {
namespace {

// A temporary directory removed at scope exit.
class TempDir {
 public:
  TempDir() {
    const char* base = std::getenv("TMPDIR");
    std::string tmpl =
        std::string(base != nullptr && *base != '\0' ? base : "/tmp") +
        "/detcd-wal-bench.XXXXXX";
    if (::mkdtemp(tmpl.data()) != nullptr) path_ = tmpl;
  }
  ~TempDir() {
    if (path_.empty()) return;
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// fill: run between saves, timer paused (null: nothing).
void RunSave(benchmark::State& state, env::Disk* disk,
             shim::PosixDisk* fill = nullptr) {
  const int n = static_cast<int>(state.range(0));
  const bool sync = state.range(1) != 0;
  WalOptions o;
  o.segment_bytes = 4 << 20;
  auto w = Wal::Create(disk, "wal", o);
  if (!w.ok()) {
    state.SkipWithError(std::string(w.status().message()).c_str());
    return;
  }
  std::unique_ptr<Wal> wal = *std::move(w);
  const raft::ConfState cs{{1, 2, 3}, {}};
  std::vector<raft::Entry> batch(static_cast<size_t>(n));
  for (raft::Entry& e : batch) {
    e.term = 1;
    e.data = std::string(128, 'x');
  }
  raft::HardState hs{1, 1, 0};
  uint64_t last = 0;
  uint64_t since_marker = 0;
  for (auto _ : state) {
    for (raft::Entry& e : batch) e.index = ++last;
    hs.commit = last;
    if (absl::Status s = wal->Save(&hs, batch, sync); !s.ok()) {
      state.SkipWithError(std::string(s.message()).c_str());
      break;
    }
    if (fill != nullptr) {
      state.PauseTiming();
      while (fill->FillAheadStep()) {
      }
      state.ResumeTiming();
    }
    since_marker += static_cast<uint64_t>(n);
    if (since_marker >= 4096) {
      state.PauseTiming();
      since_marker = 0;
      raft::SnapshotMetadata m;
      m.conf_state = cs;
      m.index = last;
      m.term = 1;
      if (!wal->SaveSnapshotMarker(m).ok() || !wal->ReleaseBefore(last).ok()) {
        state.SkipWithError("marker / release failed");
      }
      state.ResumeTiming();
    }
  }
  state.SetItemsProcessed(state.iterations() * n);
  state.SetBytesProcessed(state.iterations() * n * 128);
  state.counters["saves"] = static_cast<double>(state.iterations());
}

void BM_WalSaveMem(benchmark::State& state) {
  sim::SimDisk disk(env::SeededRng(1));
  RunSave(state, &disk);
}
BENCHMARK(BM_WalSaveMem)
    ->ArgsProduct({{1, 16, 256}, {0, 1}})
    ->ArgNames({"entries", "sync"});

void BM_WalSavePosix(benchmark::State& state) {
  TempDir dir;
  if (dir.path().empty()) {
    state.SkipWithError("mkdtemp failed");
    return;
  }
  shim::PosixDisk disk(dir.path());
  RunSave(state, &disk, state.range(2) != 0 ? &disk : nullptr);
}
BENCHMARK(BM_WalSavePosix)
    ->ArgsProduct({{1, 16, 256}, {0, 1}, {0, 1}})
    ->ArgNames({"entries", "sync", "fill"})
    ->UseRealTime();

}  // namespace
}  // namespace detcd::wal
