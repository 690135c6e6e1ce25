// Reading etcd 3.4's WAL files (for detcdctl's `migrate`, which replays an
// etcd member's log, and for starting detcd on a data dir that etcdctl's
// `snapshot restore` made: shim/etcd_data_dir.h).
//
// A segment "%016x-%016x.wal" (seq, first index) is a run of frames: an
// int64 length (little endian; low 56 bits the record's bytes; if
// negative, bits 56-58 the padding after it), then a walpb.Record {1 type
// int64, 2 crc uint32, 3 data}; a zero length ends a file (preallocated
// space), and so does a torn frame. Each record's crc is CRC-32C of the
// data of every record so far, chained across files; a type 4 record
// restates the chain's value at a file's start. Types: 1 metadata
// (etcdserverpb.Metadata {1 NodeID, 2 ClusterID}), 2 raftpb.Entry {1 type,
// 2 term, 3 index, 4 data}, 3 raftpb.HardState {1 term, 2 vote,
// 3 commit}, 4 crc, 5 walpb.Snapshot {1 index, 2 term}.
#ifndef DETCD_SHIM_ETCD_WAL_H_
#define DETCD_SHIM_ETCD_WAL_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace detcd::shim {

// One field of a protobuf message, as it is on the wire.
struct PbField {
  uint32_t num = 0;
  int wire = 0;
  uint64_t v = 0;           // varint / fixed
  absl::string_view bytes;  // length-delimited
};
// The fields of a message in order; false if it is not well-formed.
bool PbFields(absl::string_view in, std::vector<PbField>* out);

// Parses "<16 hex>-<16 hex><suffix>" (etcd's WAL and snap file names).
bool ParseHexPair(absl::string_view name, absl::string_view suffix, uint64_t* a,
                  uint64_t* b);

// Calls fn(type, data) for every record of the segment files `paths`
// (in that order, their chain checked; crc records are not passed on),
// stopping at fn's first error. Errors: "open <path>: <errno text>",
// DataLoss "wal: bad record" / "wal: crc mismatch" / "walpb: crc
// mismatch" (etcd's texts).
absl::Status ReadEtcdWalRecords(
    const std::vector<std::string>& paths,
    const std::function<absl::Status(int64_t type, absl::string_view data)>&
        fn);

}  // namespace detcd::shim

#endif  // DETCD_SHIM_ETCD_WAL_H_
