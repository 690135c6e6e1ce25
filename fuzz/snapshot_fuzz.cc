// Snapshot decoders: what a member reads back from its snap dir, from a
// peer's snapshot message or from `snapshot restore`.
//
// Input: byte(mode) then bytes:
//   mode 0: a snapshot file (engine/wal/wal.h Snapshotter's format), read
//           by Snapshotter::LoadNewest; the first two varints of the bytes
//           are the (term, index) in its name and in the WAL's marker list;
//   mode 1: a snapshot image (EtcdServer::SnapshotImage's format);
//   mode 2: an EtcdStateMachine snapshot (etcd_state_machine.h's image);
//   mode 3..7: the images of its parts: KvStore, Lessor, Membership,
//           AlarmSet, AuthStore.
// Oracles: no crash; an image that loads writes an image that loads again
// to the same image (a restored member snapshots what it restored); a file
// that loads has the metadata its name says.
#include <cstdlib>
#include <string>
#include <vector>

#include "engine/auth/auth_store.h"
#include "engine/lease/lessor.h"
#include "engine/mvcc/kv_store.h"
#include "engine/server/etcd_server.h"
#include "engine/server/etcd_state_machine.h"
#include "engine/server/membership.h"
#include "engine/server/quota.h"
#include "engine/util/coding.h"
#include "engine/wal/file_names.h"
#include "engine/wal/wal.h"
#include "fuzz/fuzz_target.h"
#include "fuzz/quiet_protobuf.h"
#include "sim/sim_disk.h"

namespace detcd::fuzz {
namespace {

// Restores `image` into a fresh T; if that works, the restored state's own
// image must restore into another fresh T and give itself back.
// DETCD_FUZZ_VERBOSE=1: whether each input loaded (seeds should).
void Report(const char* what, const absl::Status& s) {
  static const bool verbose = std::getenv("DETCD_FUZZ_VERBOSE") != nullptr;
  if (verbose) std::fprintf(stderr, "  %s: %s\n", what, s.ToString().c_str());
}

template <typename T, typename Make>
void RoundTrip(std::string_view image, Make make) {
  T a = make();
  const absl::Status loaded = a.Restore(image);
  Report("restore", loaded);
  if (!loaded.ok()) return;
  const std::string again = a.Snapshot();
  T b = make();
  if (absl::Status s = b.Restore(again); !s.ok()) {
    std::fprintf(stderr, "restore: %s\n", s.ToString().c_str());
    Fail("a restored state's own image does not restore");
  }
  if (b.Snapshot() != again) Fail("restoring an image changed it");
}

void SnapshotFile(std::string_view in) {
  coding::Reader r(in);
  uint64_t term = 0, index = 0;
  if (!r.GetVarint64(&term) || !r.GetVarint64(&index)) return;
  sim::SimDisk disk(env::SeededRng(1));
  const std::string dir = "snap";
  if (!disk.CreateDir(dir).ok()) Fail("sim disk: mkdir");
  auto f = disk.Create(wal::Join(dir, wal::PairName(term, index, ".snap")));
  if (!f.ok() || !(*f)->Append(r.rest()).ok() || !(*f)->Close().ok()) {
    Fail("sim disk: write");
  }
  raft::SnapshotMetadata want;
  want.term = term;
  want.index = index;
  wal::Snapshotter snap(&disk, dir);
  auto got = snap.LoadNewest({want});
  Report("snapshot file", got.status());
  if (got.ok() && (got->metadata.term != term || got->metadata.index != index)) {
    Fail("a snapshot file loaded with metadata its name does not say");
  }
}

}  // namespace
}  // namespace detcd::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace detcd;
  using namespace detcd::fuzz;
  std::string_view in = AsView(data, size);
  switch (TakeByte(&in) % 8) {
    case 0:
      SnapshotFile(in);
      break;
    case 1:
      Report("image", server::DecodeSnapshotImage(in).status());
      break;
    case 2:
      RoundTrip<server::EtcdStateMachine>(in, [] {
        server::EtcdStateMachine::Options o;
        o.now_ns = [] { return int64_t{0}; };
        return server::EtcdStateMachine(o);
      });
      break;
    case 3: {
      // KvStore is neither copyable nor movable: round trip by hand.
      mvcc::KvStore a;
      const absl::Status loaded = a.Restore(in);
      Report("kv restore", loaded);
      if (!loaded.ok()) break;
      const std::string again = a.Snapshot();
      mvcc::KvStore b;
      if (!b.Restore(again).ok()) Fail("kv store image does not restore");
      if (b.Snapshot() != again) Fail("kv store image changed on restore");
      break;
    }
    case 4:
      RoundTrip<lease::Lessor>(in, [] {
        return lease::Lessor(lease::LessorOptions{});
      });
      break;
    case 5:
      RoundTrip<server::Membership>(in, [] { return server::Membership(); });
      break;
    case 6:
      RoundTrip<server::AlarmSet>(in, [] { return server::AlarmSet(); });
      break;
    case 7:
      RoundTrip<auth::AuthStore>(in, [] { return auth::AuthStore(); });
      break;
  }
  return 0;
}
