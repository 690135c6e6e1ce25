// etcd's `snapshot restore` for detcd: the data dir of one member of a NEW
// cluster, made offline from another cluster's data (detcdctl's `snapshot
// restore`, cli/detcdctl/snapshot_file.h, reads detcd snapshot files and
// etcd's bolt databases into RestoredData).
//
// As in etcd, every member of the new cluster is restored from the same
// snapshot with the same --initial-cluster and --initial-cluster-token, one
// call per member; then each starts with `detcd` on its data dir (its
// --initial-* flags are ignored then, as for any existing data dir). Member
// ids and the cluster id are the ones `detcd --initial-cluster ...` derives
// (IdentityFromConfig, server.h), so they are etcd's for the same flags.
//
// What is written is exactly what a member founding that cluster writes
// (EtcdServer::Start on an empty data dir: the identity file, the WAL with
// the founders' membership and their founding AddNode entries at indexes
// 1..n in term 1), plus a snapshot at index n holding the founders'
// membership with the restored store, leases and auth store
// (EtcdServer::AdoptData):
//   <data-dir>/member/detcd-identity.json
//   <data-dir>/member/wal/0000000000000000-0000000000000000.wal
//   <data-dir>/member/snap/0000000000000001-<n as %016x>.snap
// Only the identity file depends on the member: the same images give
// byte-identical WAL and snapshot files on every member, so they agree from
// the start; the first election happens in term 2. Carried over: every key
// with its history as the source kept it (create / mod revisions, versions,
// tombstones above the compaction), the current and compact revisions, the
// leases (ids, TTLs, checkpointed remaining TTLs, attached keys; they get
// their TTL afresh from the new leader, as after any leader change), and
// the auth store as etcd's restore keeps it (the enabled flag, the auth
// revision, users with their password hashes and roles, roles with their
// permissions; simple tokens are member-local state, as in etcd, so their
// holders authenticate again). Not carried over: the old membership (as
// etcd) and the alarms (they name old members).
#ifndef DETCD_SHIM_RESTORE_H_
#define DETCD_SHIM_RESTORE_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "shim/server.h"

namespace detcd::shim {

// etcdctl 3.4's `snapshot restore` flags, with its defaults.
struct RestoreSpec {
  std::string name = "default";
  std::string data_dir;  // "": <name>.etcd
  // "" or <data-dir>/member/wal: the server keeps the WAL in the data dir,
  // so another WAL dir is refused.
  std::string wal_dir;
  std::vector<std::string> peer_urls = {"http://localhost:2380"};
  std::string initial_cluster = "default=http://localhost:2380";
  std::string initial_cluster_token = "etcd-cluster";
};

struct RestorePlan {
  std::string data_dir;
  std::string wal_dir;   // <data-dir>/member/wal
  std::string snap_dir;  // <data-dir>/member/snap
  Identity identity;     // with the founders
};

// etcd's checks and messages, in etcd's order; nothing is written:
// the peer URLs (ParseUrl's texts), --initial-cluster (IdentityFromConfig's
// texts: the local name must be in it with exactly the advertised URLs),
// `data-dir "<dir>" exists`, `wal-dir "<dir>" exists`.
absl::StatusOr<RestorePlan> PlanRestore(const RestoreSpec& spec);

// The replicated data a restored member starts from: a KvStore image
// (engine/mvcc/kv_store.cc documents it), a Lessor image (lessor.h) and
// an AuthStore image (engine/auth/auth_store.h; "" for a fresh auth store:
// auth off, no users or roles).
struct RestoredData {
  std::string kv_image;
  std::string lessor_image;
  std::string auth_image;
};

// Writes the member's data dir, all or nothing: it is built in a
// temporary sibling directory ("<data-dir>.restore-<pid>"), synced, and
// renamed into place (then the parent is synced); on any error nothing is
// left behind. Parent directories are created as by mkdir -p. Errors:
// AlreadyExists if the data dir appeared meanwhile; DataLoss for images
// that do not decode; the disk's errors.
absl::Status WriteRestoredMember(const RestorePlan& plan,
                                 const RestoredData& data);

}  // namespace detcd::shim

#endif  // DETCD_SHIM_RESTORE_H_
