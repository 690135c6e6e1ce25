// The WAL's record decoder and recovery (engine/wal/wal.h): what a member
// reads from member/wal at start-up, whatever a crash, a bad disk or a
// hostile hand left there.
//
// Input: byte(mode), then one segment (mode bit 0 clear) or two (set):
//   varint(seq) varint(first index) [varint(n) if not the last] bytes
// where (seq, first index) name the file (%016x-%016x.wal) and the last
// segment's bytes are the rest of the input. mode bit 1: open at the newest
// snapshot marker ReadMarkers finds instead of index 0.
// Oracles: no crash; DecodeRecordAt walks each segment; a WAL that opens
// opens again (after its own tail repair) to the same state, and accepts a
// hard state write that the next open returns.
#include <cstdlib>
#include <string>
#include <vector>

#include "engine/util/coding.h"
#include "engine/wal/file_names.h"
#include "engine/wal/wal.h"
#include "fuzz/fuzz_target.h"
#include "sim/sim_disk.h"

namespace detcd::fuzz {
namespace {

const char kDir[] = "wal";

void WriteFile(sim::SimDisk& disk, const std::string& name,
               std::string_view bytes) {
  auto f = disk.Create(wal::Join(kDir, name));
  if (!f.ok() || !(*f)->Append(bytes).ok() || !(*f)->Sync().ok() ||
      !(*f)->Close().ok()) {
    Fail("sim disk: write");
  }
}

void WalkRecords(std::string_view segment) {
  size_t off = 0;
  wal::WalRecord rec;
  while (off < segment.size()) {
    const size_t n = wal::DecodeRecordAt(segment, off, &rec);
    if (n == 0) break;
    if (n > segment.size() - off) Fail("DecodeRecordAt ran past the end");
    off += n;
  }
}

bool Same(const wal::Recovered& a, const wal::Recovered& b) {
  return a.hard_state == b.hard_state && a.snapshot == b.snapshot &&
         a.entries == b.entries;
}

}  // namespace
}  // namespace detcd::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace detcd;
  using namespace detcd::fuzz;
  std::string_view in = AsView(data, size);
  const uint8_t mode = TakeByte(&in);
  sim::SimDisk disk(env::SeededRng(1));
  if (!disk.CreateDir(kDir).ok()) {
    Fail("sim disk: mkdir");
  }
  std::vector<std::string_view> segments;
  coding::Reader r(in);
  const int count = (mode & 1) ? 2 : 1;
  for (int i = 0; i < count; ++i) {
    uint64_t seq = 0, first = 0, n = 0;
    if (!r.GetVarint64(&seq) || !r.GetVarint64(&first)) return 0;
    std::string_view rest = r.rest();
    if (i + 1 < count) {
      if (!r.GetVarint64(&n)) return 0;
      rest = r.rest();
      if (n > rest.size()) return 0;
    } else {
      n = rest.size();
    }
    segments.push_back(rest.substr(0, n));
    WriteFile(disk, wal::PairName(seq, first, ".wal"), segments.back());
    r = coding::Reader(rest.substr(n));
  }
  if (!disk.SyncDir(kDir).ok()) Fail("sim disk: sync dir");
  for (std::string_view s : segments) WalkRecords(s);

  uint64_t snap_index = 0;
  auto markers = wal::Wal::ReadMarkers(&disk, kDir);
  if ((mode & 2) && markers.ok() && !markers->empty()) {
    snap_index = markers->back().index;
  }
  auto first = wal::Wal::Open(&disk, kDir, snap_index);
  static const bool verbose = std::getenv("DETCD_FUZZ_VERBOSE") != nullptr;
  if (verbose) {
    std::fprintf(stderr, "  open at %llu: %s\n",
                 static_cast<unsigned long long>(snap_index),
                 first.ok() ? ("ok, " + std::to_string(first->entries.size()) +
                               " entries").c_str()
                            : first.status().ToString().c_str());
  }
  if (!first.ok()) return 0;
  first->wal.reset();
  auto second = wal::Wal::Open(&disk, kDir, snap_index);
  if (!second.ok()) {
    std::fprintf(stderr, "reopen: %s\n", second.status().ToString().c_str());
    Fail("a WAL that opened does not open again");
  }
  if (!Same(*first, *second)) Fail("a WAL reopened to another state");
  // It takes a write, and the write is what the next open reads.
  raft::HardState hs = second->hard_state;
  hs.term += 1;
  hs.vote = 0;
  if (!second->wal->Save(&hs, {}, /*sync=*/true).ok()) {
    Fail("a recovered WAL refused a hard state");
  }
  second->wal.reset();
  auto third = wal::Wal::Open(&disk, kDir, snap_index);
  if (!third.ok()) Fail("a WAL does not open after a write");
  if (third->hard_state != hs || third->entries != second->entries) {
    Fail("a WAL lost a synced write");
  }
  return 0;
}
