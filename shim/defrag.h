// Offline defragmentation of a stopped member's data dir: what `detcdctl
// defrag --data-dir DIR` does (etcdctl 3.4 rewrites member/snap/db, bolt's
// file, without its free pages).
//
// detcd keeps no bolt file: a member's persistent state is its snapshot
// files (member/snap: the replicated state at some index) and its WAL
// (member/wal: the raft log since, and its hard state). Both keep what a
// compaction later dropped: the snapshot holds the history as it was when
// taken, and the WAL every entry since the segment it starts with. So
// defragmenting means rewriting both compactly:
//   1. the member is opened offline (the server's own recovery: newest
//      snapshot, then the WAL's committed entries applied), under its data
//      dir lock, so a running member's dir is refused;
//   2. a snapshot of the state at the applied index is written (it holds
//      only what the compactions kept) and the older snapshot files go
//      (Node::TakeSnapshot, keeping one);
//   3. a new WAL is written beside the old one (member/wal.defrag): the
//      new snapshot's marker, then the hard state and the entries after it
//      (the uncommitted tail, which the member must not lose: it may have
//      acknowledged them to a leader), synced; then the two directories are
//      swapped atomically (renameat2 RENAME_EXCHANGE) and the old WAL is
//      deleted. A crash before the swap leaves the old WAL (still valid: the
//      new snapshot has its marker there); after it, the new one; a
//      leftover member/wal.defrag is ignored by the server and removed by
//      the next defragmentation.
// The member restarts from the result with all its data: same keys,
// revisions, compact revision, leases, membership and raft state (term,
// vote, commit); only the log before the snapshot is gone, as after any
// snapshot.
#ifndef DETCD_SHIM_DEFRAG_H_
#define DETCD_SHIM_DEFRAG_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"

namespace detcd::shim {

struct DefragResult {
  int64_t bytes_before = 0;  // member/wal + member/snap, before
  int64_t bytes_after = 0;
  uint64_t snapshot_index = 0;  // the index the new snapshot is at
};

// Errors: NotFound when DIR holds no detcd member ("no detcd member data
// in DIR: ..."); FailedPrecondition when a running detcd holds the data
// dir's lock; the disk's and the recovery's errors (DataLoss for a damaged
// WAL or snapshot, which is then left as it was).
absl::StatusOr<DefragResult> DefragDataDir(const std::string& data_dir);

}  // namespace detcd::shim

#endif  // DETCD_SHIM_DEFRAG_H_
