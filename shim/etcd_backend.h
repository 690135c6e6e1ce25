// A member's state as etcd 3.4's backend database (a bbolt file): what the
// Maintenance Snapshot stream sends, as etcd's sends its own db, so
// etcdctl's `snapshot status` reads a snapshot of detcd, `etcdctl snapshot
// restore` turns it into a data dir real etcd starts from, and detcdctl's
// restore imports it like any etcd snapshot (cli/detcdctl/etcd_db.h).
//
// Buckets, as etcd 3.4's mvcc/backend holds them:
//   "alarm"            marshaled etcdserverpb.AlarmMember -> ""
//   "auth"             "authRevision" -> 8-byte big-endian revision;
//                      "authEnabled" -> "\x01" (only while enabled)
//   "authRoles"        role name -> marshaled authpb.Role
//   "authUsers"        user name -> marshaled authpb.User (bcrypt hash)
//   "cluster"          "clusterVersion" -> "3.4.0"
//   "key"              revision (8-byte big-endian main, '_', 8-byte
//                      big-endian sub, then 't' for a tombstone) ->
//                      marshaled mvccpb.KeyValue (a tombstone's holds only
//                      the key), every revision the store keeps
//   "lease"            8-byte big-endian id -> leasepb.Lease {ID 1, TTL 2,
//                      RemainingTTL 3}
//   "members"          id in lowercase hex -> membership.Member's JSON
//   "members_removed"  id in lowercase hex -> "removed"
//   "meta"             "consistent_index" -> 8-byte big-endian applied
//                      index; "scheduledCompactRev" and
//                      "finishedCompactRev" -> the compact revision as a
//                      revision (sub 0), when the store was compacted
// The key bucket is read straight out of the image (KvStore::ImageReader)
// as the file is written, twice (BoltWriter lays the pages out first), so
// the file costs little memory beyond the image it is made from.
#ifndef DETCD_SHIM_ETCD_BACKEND_H_
#define DETCD_SHIM_ETCD_BACKEND_H_

#include <string_view>

#include "absl/status/statusor.h"
#include "shim/bolt.h"

namespace detcd::shim {

// `image` is EtcdServer::SnapshotImage's (it must outlive the writer).
// DataLoss for an image that does not decode.
absl::StatusOr<BoltWriter> EtcdBackendFile(std::string_view image);

}  // namespace detcd::shim

#endif  // DETCD_SHIM_ETCD_BACKEND_H_
