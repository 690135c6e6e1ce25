// Starting detcd on a data dir that etcdctl 3.4's `snapshot restore` made:
// the disaster-recovery runbook written for etcd (save a snapshot, restore
// it with etcdctl into a new data dir per member, start the server on it)
// works with detcd as the server, as etcd's e2e TestIssue6361 checks.
//
// Such a dir holds etcd's formats: member/snap/db (the backend database
// from the snapshot), member/snap/<term>-<index>.snap (the v2 store with
// the membership) and member/wal (metadata {NodeID, ClusterID}, then the
// founders' AddNode conf changes at indexes 1..n in term 1, each naming
// its member as JSON). detcd reads the identity and the founders from the
// WAL and the data from the db (shim/etcd_db.h), and writes what
// `detcdctl snapshot restore` would have written for the same member
// (shim/restore.h): etcd's member id and cluster id stay. The etcd files
// are kept beside it as member.etcd (renamed whole, so etcd can be put
// back by renaming it again); the new member/ is built in a sibling dir
// first and renamed into place, and a start that finds member.etcd with
// no member/ (a crash between the two renames) converts again.
//
// A data dir of an etcd member that has run (its WAL holds other entries)
// is refused: its state is spread over the db and the log, which detcd
// does not replay. Restore a snapshot of it instead.
#ifndef DETCD_SHIM_ETCD_DATA_DIR_H_
#define DETCD_SHIM_ETCD_DATA_DIR_H_

#include <string>

#include "absl/status/statusor.h"

namespace detcd::shim {

// True if data_dir was such an etcd data dir and is now detcd's; false if
// it is not one (nothing changed). The caller holds the data dir's lock.
absl::StatusOr<bool> ConvertEtcdRestoredDataDir(const std::string& data_dir);

}  // namespace detcd::shim

#endif  // DETCD_SHIM_ETCD_DATA_DIR_H_
