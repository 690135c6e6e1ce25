#include "shim/defrag.h"

#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <memory>
#include <string>
#include <system_error>
#include <utility>

#include "absl/strings/str_cat.h"
#include "engine/env/env.h"
#include "engine/server/etcd_server.h"
#include "engine/wal/wal.h"
#include "shim/config.h"
#include "shim/posix_disk.h"
#include "shim/real_clock.h"
#include "shim/server.h"

namespace detcd::shim {
namespace {

constexpr char kMemberDir[] = "member";
constexpr char kWalDir[] = "member/wal";
constexpr char kSnapDir[] = "member/snap";
constexpr char kNewWalDir[] = "member/wal.defrag";

// The member is opened offline: it is never ticked, so it sends nothing.
class NoTransport final : public env::Transport {
 public:
  void Send(uint64_t, std::string) override {}
};

int64_t TreeBytes(const std::string& dir) {
  std::error_code ec;
  int64_t n = 0;
  for (auto it = std::filesystem::recursive_directory_iterator(dir, ec);
       !ec && it != std::filesystem::recursive_directory_iterator();
       it.increment(ec)) {
    std::error_code fe;
    if (it->is_regular_file(fe)) {
      n += static_cast<int64_t>(it->file_size(fe));
    }
  }
  return n;
}

absl::Status RemoveTree(const std::string& dir) {
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  if (ec) return ErrnoStatus(ec.value(), "remove", dir);
  return absl::OkStatus();
}

// Steps 1 and 2 (defrag.h): the member's own recovery, then a snapshot at
// the applied index that replaces the older ones.
absl::Status SnapshotMember(PosixDisk& disk, const Identity& id) {
  server::EtcdServerOptions so;
  so.node.id = id.member_id;
  so.node.data_dir = kMemberDir;
  so.cluster_id = id.cluster_id;
  so.version = kServerVersion;
  // Leases keep the TTLs they have; the server applies its own minimum
  // when it loads the snapshot.
  so.lease.min_ttl_s = 1;
  if (absl::Status s = so.Validate(); !s.ok()) return s;
  RealClock clock;
  NoTransport transport;
  // Nothing this member draws reaches its files.
  env::SeededRng rng(id.member_id);
  env::Env env{&clock, &disk, &transport, &rng};
  server::EtcdServer member(env, so);
  if (absl::Status s = member.Start(); !s.ok()) return s;
  return member.node().TakeSnapshot(/*keep_snapshots=*/1);
}

// Step 3: a WAL that starts at the snapshot, swapped in for the old one.
absl::Status RewriteWal(PosixDisk& disk, uint64_t* snapshot_index) {
  auto markers = wal::Wal::ReadMarkers(&disk, kWalDir);
  if (!markers.ok()) return markers.status();
  wal::Snapshotter snapshotter(&disk, kSnapDir);
  auto snap = snapshotter.LoadNewest(*markers);
  if (!snap.ok()) {
    // No snapshot (a member that applied nothing): its WAL holds only what
    // it must keep.
    if (absl::IsNotFound(snap.status())) return absl::OkStatus();
    return snap.status();
  }
  *snapshot_index = snap->metadata.index;
  raft::HardState hs;
  std::vector<raft::Entry> tail;
  {
    auto rec = wal::Wal::Open(&disk, kWalDir, snap->metadata.index);
    if (!rec.ok()) return rec.status();
    hs = rec->hard_state;
    tail = std::move(rec->entries);
  }  // closes the old WAL
  if (absl::Status s = RemoveTree(disk.Resolve(kNewWalDir)); !s.ok()) {
    return s;
  }
  {
    auto w = wal::Wal::Create(&disk, kNewWalDir);
    if (!w.ok()) return w.status();
    if (absl::Status s = (*w)->SaveSnapshotMarker(snap->metadata); !s.ok()) {
      return s;
    }
    if (!hs.IsEmpty() || !tail.empty()) {
      if (absl::Status s = (*w)->Save(hs.IsEmpty() ? nullptr : &hs, tail,
                                      /*sync=*/true);
          !s.ok()) {
        return s;
      }
    }
  }
  // The new WAL must recover to the same state before it replaces the old.
  {
    auto check = wal::Wal::Open(&disk, kNewWalDir, snap->metadata.index);
    if (!check.ok()) return check.status();
    if (!(check->entries == tail) || !(check->hard_state == hs)) {
      return absl::InternalError(
          "defrag: the rewritten WAL does not read back as written");
    }
  }
  const std::string old_path = disk.Resolve(kWalDir);
  const std::string new_path = disk.Resolve(kNewWalDir);
  if (::renameat2(AT_FDCWD, new_path.c_str(), AT_FDCWD, old_path.c_str(),
                  RENAME_EXCHANGE) != 0) {
    return ErrnoStatus(errno, "rename", new_path);
  }
  if (absl::Status s = disk.SyncDir(kMemberDir); !s.ok()) return s;
  // The old WAL now sits under the temporary name.
  if (absl::Status s = RemoveTree(new_path); !s.ok()) return s;
  return disk.SyncDir(kMemberDir);
}

}  // namespace

absl::StatusOr<DefragResult> DefragDataDir(const std::string& data_dir) {
  PosixDisk disk(data_dir);
  if (!disk.Exists(kIdentityFile) || !disk.Exists(kWalDir)) {
    return absl::NotFoundError(absl::StrCat(
        "no detcd member data in ", data_dir, ": ", disk.Resolve(kIdentityFile),
        " or ", disk.Resolve(kWalDir), " does not exist"));
  }
  auto lock = DataDirLock::Acquire(data_dir);
  if (!lock.ok()) {
    return absl::FailedPreconditionError(
        absl::StrCat(lock.status().message(),
                     "; to defragment a running member, omit --data-dir"));
  }
  auto id = ReadIdentity(disk);
  if (!id.ok()) return id.status();
  DefragResult out;
  out.bytes_before =
      TreeBytes(disk.Resolve(kWalDir)) + TreeBytes(disk.Resolve(kSnapDir));
  if (absl::Status s = SnapshotMember(disk, *id); !s.ok()) return s;
  // The segments the snapshot released go before the WAL is rewritten,
  // measured, and the data dir's lock let go.
  disk.WaitForRemovals();
  if (absl::Status s = RewriteWal(disk, &out.snapshot_index); !s.ok()) {
    return s;
  }
  out.bytes_after =
      TreeBytes(disk.Resolve(kWalDir)) + TreeBytes(disk.Resolve(kSnapDir));
  return out;
}

}  // namespace detcd::shim
