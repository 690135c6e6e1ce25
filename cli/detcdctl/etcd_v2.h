// An etcd 3.4 member's v2 store, rebuilt from its data dir as etcdctl
// 3.4's `migrate` rebuilds it (rebuildStoreV2): the newest snapshot in
// member/snap, then the raft log in member/wal replayed through etcd's v2
// applier and membership rules. Read only: the data dir is not changed.
//
// Formats read (etcd 3.4, little endian framing, gogo protobuf payloads):
//   WAL segment "%016x-%016x.wal" (seq, first index): frames of
//     int64 length (low 56 bits: record bytes; if negative, bits 56-58:
//     padding bytes after it), then walpb.Record {1 type int64, 2 crc
//     uint32 (CRC-32C of the data of every entry-like record so far,
//     chained across files), 3 data}; a zero length ends a file. Types:
//     1 metadata, 2 raftpb.Entry {1 type, 2 term, 3 index, 4 data},
//     3 raftpb.HardState, 4 crc (the chain's value at a file start),
//     5 walpb.Snapshot {1 index, 2 term}.
//   Snapshot "%016x-%016x.snap": snappb.Snapshot {1 crc (CRC-32C of
//     data), 2 data = raftpb.Snapshot {1 data (the v2 store as JSON),
//     2 metadata {2 index, 3 term}}}.
//   Entries: a normal entry is an InternalRaftRequest whose field 2 is a
//     v2 Request {2 Method, 3 Path, 4 Val, 5 Dir, 6 PrevValue,
//     7 PrevIndex, 8 PrevExist (optional), 9 Expiration (unix ns),
//     12 Recursive, 15 Time (unix ns), 17 Refresh (optional)}, or (etcd
//     2.x logs) a bare Request; a conf change entry is a raftpb.ConfChange
//     {2 type, 3 node id, 4 context (the member as JSON)}.
//
// The store follows etcd's v2store: every successful write takes the next
// store index (which becomes the node's modifiedIndex, and createdIndex of
// what it creates); failed requests change nothing. Membership writes live
// under /0 and take indexes too, which is why v2 keys (under /1) have the
// indexes they have.
#ifndef DETCD_CLI_DETCDCTL_ETCD_V2_H_
#define DETCD_CLI_DETCDCTL_ETCD_V2_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace detcd::ctl::etcdv2 {

struct Node {
  std::string path;
  bool dir = false;
  std::string value;
  uint64_t created = 0;
  uint64_t modified = 0;
  int64_t expire_ns = 0;  // unix ns; 0: permanent
  Node* parent = nullptr;
  std::map<std::string, std::unique_ptr<Node>> children;  // name order
};

struct Rebuilt {
  std::unique_ptr<Node> root;  // "/"
  uint64_t store_index = 0;
  // The highest raft index seen (snapshot or entry): etcd's consistent
  // index for the migrated backend.
  uint64_t raft_index = 0;
};

// Rebuilds the v2 store; *log receives the lines etcd's code logs on the
// way (zap's example logger, which etcdctl prints on stdout), also when it
// fails. Errors carry Go's texts where etcdctl prints them ("open <dir>:
// no such file or directory", "wal: file not found").
absl::StatusOr<Rebuilt> RebuildStore(const std::string& snap_dir,
                                     const std::string& wal_dir,
                                     std::vector<std::string>* log);

// Go's filepath.Join (non-empty parts, cleaned).
std::string GoJoin(const std::vector<std::string>& parts);

}  // namespace detcd::ctl::etcdv2

#endif  // DETCD_CLI_DETCDCTL_ETCD_V2_H_
