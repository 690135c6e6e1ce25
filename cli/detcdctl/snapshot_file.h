// Reading the snapshot files `snapshot save` writes (detcd's image format,
// see cmd_snapshot.cc) for `snapshot status` and `snapshot restore`.
#ifndef DETCD_CLI_DETCDCTL_SNAPSHOT_FILE_H_
#define DETCD_CLI_DETCDCTL_SNAPSHOT_FILE_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "cli/detcdctl/printer.h"

namespace detcd::ctl {

// Errors read as etcdctl's ("stat f: no such file or directory").
absl::StatusOr<DbStatus> SnapshotFileStatus(const std::string& path);

struct RestoreOptions {
  std::string snapshot_path;
  std::string name;
  std::string data_dir;
  std::string wal_dir;
  std::vector<std::string> peer_urls;
  std::string initial_cluster;
  std::string initial_cluster_token;
  bool skip_hash_check = false;
};

// Writes a data directory a member can start from with the snapshot's
// data (etcd's `snapshot restore`).
absl::Status RestoreSnapshot(const RestoreOptions& o);

}  // namespace detcd::ctl

#endif  // DETCD_CLI_DETCDCTL_SNAPSHOT_FILE_H_
