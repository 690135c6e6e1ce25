// Test-only tool: makes a STOPPED detcd member's data differ from its
// peers' the way silent disk corruption would, so the corruption checks
// have something real to find (test_maintenance.py). etcd's own tests do
// the same to a stopped member's bolt file.
//
//   detcd-it-tamper DATA_DIR KEY VALUE
//
// In the newest snapshot the member's WAL knows of, the latest revision of
// KEY gets VALUE instead of its value; revisions, versions and everything
// else stay, and every checksum (the MVCC image's, the snapshot file's) is
// recomputed, so the member loads it without complaint. KEY must be in the
// snapshot and not written after it (run `detcdctl defrag --data-dir`
// first: it snapshots at the last applied entry). Exit 0 on success, 1 with
// a message otherwise.
#include <cstdio>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "engine/mvcc/kv_store.h"
#include "engine/server/etcd_state_machine.h"
#include "engine/util/coding.h"
#include "engine/util/hash.h"
#include "engine/wal/wal.h"
#include "shim/posix_disk.h"

namespace {

using detcd::coding::Reader;

// Rewrites one put record's value in a KvStore image (its format is
// documented in engine/mvcc/kv_store.cc): the put of `key` with the
// highest revision gets `value`.
absl::StatusOr<std::string> RewriteKvImage(std::string_view image,
                                           const std::string& key,
                                           const std::string& value) {
  constexpr size_t kHeader = 5, kTrailer = 4;
  if (image.size() < kHeader + kTrailer) {
    return absl::DataLossError("kv image too short");
  }
  Reader in(image.substr(kHeader, image.size() - kHeader - kTrailer));
  std::string out(image.substr(0, kHeader));
  uint64_t cur = 0, compact = 0, n = 0;
  if (!in.GetVarint64(&cur) || !in.GetVarint64(&compact) ||
      !in.GetVarint64(&n)) {
    return absl::DataLossError("kv image header");
  }
  detcd::coding::PutVarint64(&out, cur);
  detcd::coding::PutVarint64(&out, compact);
  detcd::coding::PutVarint64(&out, n);
  struct Rec {
    uint64_t main, sub;
    uint8_t kind;
    std::string key, value;
    uint64_t create, version, lease;
  };
  std::vector<Rec> recs;
  for (uint64_t i = 0; i < n; ++i) {
    Rec r{};
    if (!in.GetVarint64(&r.main) || !in.GetVarint64(&r.sub) ||
        !in.GetByte(&r.kind) || !in.GetLengthPrefixed(&r.key)) {
      return absl::DataLossError("kv image record");
    }
    if (r.kind == 0 &&
        (!in.GetLengthPrefixed(&r.value) || !in.GetVarint64(&r.create) ||
         !in.GetVarint64(&r.version) || !in.GetVarint64(&r.lease))) {
      return absl::DataLossError("kv image record");
    }
    recs.push_back(std::move(r));
  }
  int last = -1;
  for (size_t i = 0; i < recs.size(); ++i) {
    if (recs[i].key == key) last = static_cast<int>(i);
  }
  if (last < 0 || recs[last].kind != 0) {
    return absl::NotFoundError(
        absl::StrCat("key ", key, " is not live in the snapshot"));
  }
  recs[last].value = value;
  for (const Rec& r : recs) {
    detcd::coding::PutVarint64(&out, r.main);
    detcd::coding::PutVarint64(&out, r.sub);
    out.push_back(static_cast<char>(r.kind));
    detcd::coding::PutLengthPrefixed(&out, r.key);
    if (r.kind == 0) {
      detcd::coding::PutLengthPrefixed(&out, r.value);
      detcd::coding::PutVarint64(&out, r.create);
      detcd::coding::PutVarint64(&out, r.version);
      detcd::coding::PutVarint64(&out, r.lease);
    }
  }
  // The checksum of the image's own format version (kv_store.cc).
  if (out[4] == 1) {
    const uint64_t h = detcd::util::Fnv1a(out);
    detcd::coding::PutFixed32(&out, static_cast<uint32_t>(h ^ (h >> 32)));
  } else {
    detcd::coding::PutFixed32(&out, detcd::mvcc::KvStore::ImageChecksum(out));
  }
  return out;
}

absl::Status Tamper(const std::string& data_dir, const std::string& key,
                    const std::string& value) {
  detcd::shim::PosixDisk disk(data_dir);
  auto markers = detcd::wal::Wal::ReadMarkers(&disk, "member/wal");
  if (!markers.ok()) return markers.status();
  detcd::wal::Snapshotter snapshotter(&disk, "member/snap");
  auto snap = snapshotter.LoadNewest(*markers);
  if (!snap.ok()) return snap.status();
  detcd::server::EtcdStateMachine::Options o;
  o.lease.min_ttl_s = 1;  // keep every TTL as it is
  o.now_ns = [] { return int64_t{0}; };
  detcd::server::EtcdStateMachine sm(o);
  if (absl::Status s = sm.Restore(snap->data); !s.ok()) return s;
  auto kv = RewriteKvImage(sm.kv().Snapshot(), key, value);
  if (!kv.ok()) return kv.status();
  // AdoptData swaps the store, leases and auth store in and keeps the
  // rest, except the alarms (none in these tests).
  if (absl::Status s =
          sm.AdoptData(*kv, sm.lessor().Snapshot(), sm.auth().Snapshot());
      !s.ok()) {
    return s;
  }
  snap->data = sm.Snapshot();
  return snapshotter.Save(*snap);  // same name: replaces the file
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: %s DATA_DIR KEY VALUE\n", argv[0]);
    return 1;
  }
  absl::Status s = Tamper(argv[1], argv[2], argv[3]);
  if (!s.ok()) {
    std::fprintf(stderr, "tamper: %s\n", s.ToString().c_str());
    return 1;
  }
  return 0;
}
