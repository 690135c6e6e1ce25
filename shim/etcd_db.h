// Moving an etcd cluster to detcd: an etcd 3.4 / 3.5 backend database (the
// bbolt file `etcdctl snapshot save` writes, without its SHA-256 trailer,
// or a member's member/snap/db) read as the data a restored detcd member
// starts from (shim/restore.h).
//
// What is read (etcd's mvcc/backend layout):
//   "key"   revision (8 bytes big-endian main, '_', 8 bytes big-endian sub,
//           then 't' for a tombstone) -> mvccpb.KeyValue;
//   "lease" lease id (8 bytes big-endian) -> leasepb.Lease {ID 1, TTL 2,
//           RemainingTTL 3};
//   "meta"  "finishedCompactRev" / "scheduledCompactRev" -> a revision as
//           above (main only);
//   "auth"  "authEnabled" -> one byte (1 enabled, 0 disabled),
//           "authRevision" -> the auth revision (8 bytes big-endian);
//   "authUsers" user name -> authpb.User (bcrypt password hash, roles);
//   "authRoles" role name -> authpb.Role (key permissions).
// The compact revision is the later of the two (etcd resumes a scheduled
// compaction when it starts). Every revision above it is kept as is; at or
// below it a key keeps only its latest revision, and none if that is a
// tombstone (what etcd's compaction keeps, also when the file was saved
// with the compaction half done). The current revision is the last one in
// "key", or the compact revision if that is later (as etcd's restore).
// Leases keep their ids, TTLs and checkpointed remaining TTLs; keys attach
// to the lease their latest revision names. A live key whose lease is not
// in "lease" (etcd warns "failed to attach a lease" and keeps it) keeps
// its data but loses the lease, with a warning. The auth store is taken as
// etcd 3.4's restore keeps it (its buckets stay in the copied file): the
// enabled flag, the revision (none or 0: 1, as etcd starts such a store),
// the users with their password hashes and roles, the roles with their
// permissions; missing buckets are a fresh store (auth off). A flag other
// than 0 or 1, a revision not of 8 bytes, a user or role that does not
// decode or is stored under another name is an "etcd db: ..." error.
// Members and alarms are not read (a restore founds a new membership).
#ifndef DETCD_SHIM_ETCD_DB_H_
#define DETCD_SHIM_ETCD_DB_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "shim/restore.h"

namespace detcd::shim {

struct EtcdDbImport {
  shim::RestoredData data;
  int64_t revision = 0;
  int64_t compact_revision = 0;  // 0: never compacted
  int64_t revisions = 0;         // records kept, tombstones included
  int64_t leases = 0;
  std::vector<std::string> warnings;
};

// `db` is the whole bolt file. Errors: DataLoss "bolt: ..." for a file the
// reader cannot walk, "etcd db: ..." for contents that are not etcd's.
absl::StatusOr<EtcdDbImport> ImportEtcdDb(std::string db);

}  // namespace detcd::shim

#endif  // DETCD_SHIM_ETCD_DB_H_
