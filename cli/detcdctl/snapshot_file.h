// Reading the snapshot files `snapshot save` writes (detcd's image format,
// see cmd_snapshot.cc) and etcd's bolt files for `snapshot status` and
// `snapshot restore`.
#ifndef DETCD_CLI_DETCDCTL_SNAPSHOT_FILE_H_
#define DETCD_CLI_DETCDCTL_SNAPSHOT_FILE_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "cli/detcdctl/printer.h"
#include "shim/restore.h"

namespace detcd::ctl {

// Errors read as etcdctl's ("stat f: no such file or directory").
absl::StatusOr<DbStatus> SnapshotFileStatus(const std::string& path);

// What `snapshot restore` takes from a snapshot file, checked as etcd 3.4
// checks one (clientv3/snapshot saveDB):
//  - a file whose size is 32 more than a multiple of 512 ends with the
//    SHA-256 of everything before those 32 bytes; it must match unless
//    skip_hash_check. Any other size has no trailer, which is refused
//    unless skip_hash_check (etcd's "required if copied from data
//    directory": a member's bolt file has none).
//  - what is before the trailer is an etcd bolt database (imported, see
//    etcd_db.h) or detcd's image with its zero padding and 8-byte
//    big-endian length (cmd_snapshot.cc); the image must decode whole
//    (DecodeSnapshotImage, then the state machine's own checksummed parts).
// For a bolt file the errors are etcd's texts ("snapshot missing hash but
// --skip-hash-check=false", "expected sha256 [..], got [..]"); for detcd's
// files they say what is wrong ("... is truncated", "... is corrupt: ...").
// Go's texts for files that cannot be read ("open f: no such file or
// directory", "seek f: invalid argument" below 32 bytes).
struct SnapshotForRestore {
  shim::RestoredData data;
  bool from_etcd = false;  // a bolt database
  std::vector<std::string> warnings;
};
absl::StatusOr<SnapshotForRestore> ReadSnapshotForRestore(
    const std::string& path, bool skip_hash_check);

}  // namespace detcd::ctl

#endif  // DETCD_CLI_DETCDCTL_SNAPSHOT_FILE_H_
