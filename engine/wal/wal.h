// The write-ahead log: Raft's durable state (HardState, entries, snapshot
// markers) in CRC32C-framed records over env::Disk.
//
// FORMAT
//
// A WAL is a directory of segment files named "%016x-%016x.wal" (lowercase
// hex: segment sequence number, then the index the segment's first entry was
// expected to have when it was cut). Sequence numbers of the segments present
// are consecutive; older segments may have been released (deleted), so the
// first one need not be 0. Only the last segment is ever appended to. A
// segment is created under "<name>.tmp", filled with its opening records,
// synced, renamed and the directory synced, so a real name never refers to a
// half-initialised segment; leftover "*.tmp" files are garbage.
//
// A segment is a sequence of records. Integers in the frame are little
// endian; "varint" is LEB128 unsigned (engine/util/coding.h).
//
//   record := length  u32   bytes of payload (not counting this 9-byte head)
//             crc     u32   Mask(crc32c(type byte ++ payload))  (crc32c.h)
//             type    u8    1 segment header, 2 hard state, 3 entries,
//                           4 snapshot marker, 5 sync mark
//                           (0 and others: invalid)
//             payload [length]
//
//   1 segment header (always the first record of a segment, and only there):
//             magic   8     "detcdwal"
//             version u8    2 (1: before sync marks; still read)
//             seq     u64   little endian, equals the file name's
//             first   u64   little endian, equals the file name's
//   2 hard state:      varint(term) varint(vote) varint(commit)
//   3 entries:         varint(n) then n x Entry as in raft/codec.h:
//                      varint(term) varint(index) u8(type) varint(len) data
//                      (indices consecutive within the record; one Save
//                      writes one or more such records of at most ~1 MiB)
//   4 snapshot marker: u8(flags: bit0 = restated at a segment start)
//                      varint(index) varint(term) ConfState as in
//                      raft/codec.h: varint(#voters) varint*
//                      varint(#learners) varint*
//   5 sync mark:       varint(synced) varint(at): the first `synced` bytes
//                      of this segment were durable (a sync returned) when
//                      this record was written, at offset `at` of the
//                      segment (synced <= at). Every write that follows a
//                      successful sync opens with one.
//
// A segment may end with zero bytes after its last record (a disk may fill
// a file it appends to ahead of the writes: env::Disk::OpenAppend). A
// remainder of nothing but zeros where a record would start ends any
// segment; Open truncates it from the last segment before appending
// (type 0 is invalid, so zeros never read as a record).
//
// A payload must be consumed exactly; a record with a valid checksum that
// does not decode is corruption, not a torn write. Save writes the entry
// records before the hard state record, so a torn tail never leaves a
// commit index without the entries it covers. A segment after the first
// opens with: header, the newest snapshot marker (restated), the newest hard
// state, so every earlier segment can be released once the log it holds is
// covered by a snapshot.
//
// Reading: records are replayed in order across segments. A hard state
// record replaces the previous one. An entry at index i discards every
// earlier-read entry >= i. Snapshot markers are collected; they do not
// discard entries (a stale suffix after a restored snapshot is replaced by
// Raft's consistency check, as in etcd).
//
// Durability: Save(.., sync=true) returns only after every record it wrote,
// and every record before it, is durable (WritableFile::Sync). A record that
// was not synced may be lost or torn by a crash. Open() repairs a torn or
// partially written tail of the last segment (truncating it to the last
// valid record) and refuses, with DataLoss, a corrupt record anywhere before
// that tail: it never silently accepts or skips a bad record.
//   A disk writes back unsynced data in any order, so a crash may lose an
// earlier unsynced page and keep a later one: a bad record (short, bad
// length, bad checksum) followed by well-formed ones is normal in the
// unsynced tail. The WAL tells that tail from the synced prefix by its sync
// marks: the synced prefix ends at the largest claim of any well-formed sync
// mark in the segment, including ones after the bad record (each was written
// by us after the sync it reports; a mark names its own offset, so a frame
// hidden in an entry's data does not pass for one). A bad record in the last
// segment at or past that point is a torn write: the segment is truncated
// there and every record after it dropped, well-formed or not (none of them
// was synced, and keeping a later one without the lost earlier one would
// make up a state that never existed). A bad record inside the synced prefix
// is data loss: "wal: corrupt record in segment <name> at offset <n>: bad
// record inside the synced prefix (synced through offset <m>)". Any bad
// record in an older segment is data loss too: a segment is synced before
// the next one is cut. (A sync that returned before a crash but was not
// followed by any surviving mark is not known; corruption there is taken for
// a torn write, the best a log without a second copy can do.)
//   ReleaseBefore(index) deletes, oldest first and each durably, a prefix of
// the segments (never the last) in which every entry is <= M, where M is the
// newest marker <= index, as long as a remaining segment still holds M.
#ifndef DETCD_ENGINE_WAL_WAL_H_
#define DETCD_ENGINE_WAL_WAL_H_

#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/env/env.h"
#include "engine/raft/types.h"
#include "engine/util/planted.h"

namespace detcd::wal {

// What the WAL believes is on stable storage: the last synced HardState and
// the index of the last synced entry (after a snapshot marker, its index, if
// the snapshot is newer than every synced entry). The WAL's own account: the
// simulator's Ready-ordering check does not trust it, it reads the disk's
// stable image (DecodeRecordAt).
struct DurableState {
  raft::HardState hard_state;
  uint64_t last_index = 0;
};

class Wal;

struct WalOptions {
  // A new segment is cut once the current one reaches this size. Must be
  // > 0; tests use small values to exercise cutting and releasing.
  uint64_t segment_bytes = 64 << 20;
  planted::Bugs bugs;  // engine/util/planted.h; none in production
};

// A node's Raft state as recovered from its WAL.
struct Recovered {
  std::unique_ptr<Wal> wal;  // open for appending after the recovered state
  raft::HardState hard_state;  // the last HardState record (empty if none)
  // The snapshot marker the caller asked for (index snap_index); for index 0
  // the bootstrap marker that holds the founding membership.
  raft::SnapshotMetadata snapshot;
  // Every entry after snapshot.index, in order and contiguous, with later
  // records overriding earlier ones at the same index (a record for index i
  // discards every earlier-written entry >= i).
  std::vector<raft::Entry> entries;
};

class Wal {
 public:
  virtual ~Wal() = default;

  // True if dir holds a WAL (at least one segment).
  static bool Exists(env::Disk* disk, const std::string& dir);

  // Creates a new, empty WAL in dir (which must not hold one). The directory
  // entry is durable on return.
  static absl::StatusOr<std::unique_ptr<Wal>> Create(env::Disk* disk,
                                                     const std::string& dir);
  static absl::StatusOr<std::unique_ptr<Wal>> Create(env::Disk* disk,
                                                     const std::string& dir,
                                                     const WalOptions& opts);

  // Opens an existing WAL and reads the state after the snapshot marker at
  // snap_index (0 = the bootstrap marker). NotFound if no such marker exists;
  // DataLoss if a record before the tail is corrupt or the segments are not
  // contiguous.
  static absl::StatusOr<Recovered> Open(env::Disk* disk,
                                        const std::string& dir,
                                        uint64_t snap_index);
  static absl::StatusOr<Recovered> Open(env::Disk* disk,
                                        const std::string& dir,
                                        uint64_t snap_index,
                                        const WalOptions& opts);

  // Every snapshot marker in the WAL, oldest first. Lets a node pick the
  // newest snapshot file that the WAL knows of (a crash between writing a
  // snapshot file and its marker leaves a file without a marker).
  static absl::StatusOr<std::vector<raft::SnapshotMetadata>> ReadMarkers(
      env::Disk* disk, const std::string& dir);

  // Appends a HardState (if hs is not null) and entries; entries may start
  // below the last index (a conflicting suffix is replaced). With sync, the
  // call returns after everything written so far is durable.
  virtual absl::Status Save(const raft::HardState* hs,
                            const std::vector<raft::Entry>& entries,
                            bool sync) = 0;

  // Appends and syncs a snapshot marker. Entries at or below meta.index are
  // covered by the snapshot from now on.
  virtual absl::Status SaveSnapshotMarker(const raft::SnapshotMetadata& meta) = 0;

  // Allows segments holding only records needed for states before index to
  // be removed (the newest marker at or below index stays readable).
  virtual absl::Status ReleaseBefore(uint64_t index) = 0;

  virtual DurableState durable() const = 0;
};

// One record, for checkers that read a segment's bytes themselves (the
// simulator computes what is durable from its disk's stable image instead of
// asking the WAL). The recovery rules stay with Wal::Open.
struct WalRecord {
  enum class Type {
    kSegmentHeader,
    kHardState,
    kEntries,
    kSnapshotMarker,
    kSyncMark,
  };
  Type type = Type::kHardState;
  raft::HardState hard_state;        // kHardState
  std::vector<raft::Entry> entries;  // kEntries
  raft::SnapshotMetadata marker;     // kSnapshotMarker
};
// If a well-formed, decodable record starts at `offset` of a segment's bytes,
// fills *rec and returns its size; otherwise (torn, corrupt, cut short)
// returns 0.
size_t DecodeRecordAt(std::string_view segment, size_t offset,
                      WalRecord* rec);

// Snapshot files: one per snapshot, named by term and index, zstd-compressed
// and CRC32C-checked. Written to a temporary name, synced, renamed, and the
// directory synced, so a crash never leaves a half-written snapshot under a
// real name.
//
// File name: "%016x-%016x.snap" (lowercase hex term, then index). Contents
// (version 2, written since incremental snapshots: the file is streamed,
// so the checksum comes last):
//   magic   8     "detcdsn2"
//   body          one zstd frame (with its content size) whose content is
//                 raft::EncodeSnapshot(snapshot) (raft/codec.h)
//   crc     u32   little endian, Mask(crc32c(body))
// Version 1 files (still read): magic "detcdsn1", crc u32 of the body, body.
// A file whose name and decoded metadata disagree counts as corrupt.
//
// Delta files: "%016x-%016x.delta", the same contents, whose data is a
// delta image (StateMachine::BeginDeltaSnapshot): what changed since the
// file before it. A restart reads the newest file's chain: the newest
// whole snapshot (".snap") at or below it, then every delta after that
// one up to it, in index order (a delta is only ever begun on the newest
// file, and any whole snapshot written starts a new chain).
class SnapshotFileWriter;

// One file of a chain (Snapshotter::Chains).
struct SnapFileRef {
  uint64_t term = 0;
  uint64_t index = 0;
  bool delta = false;
  std::string name;
};

class Snapshotter {
 public:
  Snapshotter(env::Disk* disk, std::string dir);

  // Writes a whole snapshot (Begin, one Append, Finish).
  absl::Status Save(const raft::Snapshot& snap);

  // Starts the file of a snapshot whose data (the state machine's image)
  // is `data_size` bytes, to come in pieces through Append. The file
  // counts only once Finish (or Commit) returns; until then it is a
  // temporary that LoadNewest never reads and Prune removes (so no Prune
  // may run while a writer is open).
  absl::StatusOr<std::unique_ptr<SnapshotFileWriter>> Begin(
      const raft::SnapshotMetadata& meta, uint64_t data_size,
      bool delta = false);

  // The newest snapshot whose (index, term) appears in `valid` (usually
  // Wal::ReadMarkers). NotFound if there is none. A corrupt file is skipped
  // for an older one only if it is not the one the caller needs: a corrupt
  // newest file among `valid` gives DataLoss if no older valid one exists.
  absl::StatusOr<raft::Snapshot> LoadNewest(
      const std::vector<raft::SnapshotMetadata>& valid);
  // The chains of the files whose (index, term) appear in `valid`, newest
  // first: each the whole snapshot, then the deltas on it, oldest first.
  // A delta with no whole snapshot before it has no chain (a caller finds
  // none, or only older ones). Reads only the directory.
  absl::StatusOr<std::vector<std::vector<SnapFileRef>>> Chains(
      const std::vector<raft::SnapshotMetadata>& valid);
  // One file of a chain (errors as LoadNewest's for that file).
  absl::StatusOr<raft::Snapshot> Load(const SnapFileRef& f);
  // Removes the files above `index` (a restart's: files no marker names,
  // left by a crash before their marker, which a later chain must not
  // take for its own).
  absl::Status RemoveAbove(uint64_t index);

  // Removes stale temporaries, and all but the newest `keep` snapshot
  // files (deltas count as files) through Disk::RemoveInOrder (so perhaps
  // after returning); files at or above `keep_from` stay too (a chain the
  // newest file needs).
  absl::Status Prune(size_t keep,
                     uint64_t keep_from = std::numeric_limits<uint64_t>::max());

  // The zstd level of the next snapshot file: the fast level, unless the
  // last file written shrank its data by less than 5%; then a much faster
  // one (random values: zstd -1 spent its CPU for 4%), until a file shrinks
  // again (text still shrinks by a sixth at that level, which switches
  // back).
  int next_zstd_level() const;

 private:
  env::Disk* disk_;
  std::string dir_;
  // Set by the last finished writer: its data barely compressed.
  std::shared_ptr<bool> incompressible_ = std::make_shared<bool>(false);
};

// One snapshot file being written (Snapshotter::Begin). Not thread-safe;
// the engine writes it a piece per step.
class SnapshotFileWriter {
 public:
  ~SnapshotFileWriter();  // unfinished: closed, left as a temporary
  SnapshotFileWriter(const SnapshotFileWriter&) = delete;
  SnapshotFileWriter& operator=(const SnapshotFileWriter&) = delete;

  // The next bytes of the snapshot's data, compressed into the file.
  absl::Status Append(std::string_view data);
  // After exactly data_size bytes: ends the frame, appends the checksum,
  // syncs, renames to the real name and syncs the directory. The same as
  // Seal, then Commit.
  absl::Status Finish();
  // Ends the frame and appends the checksum (the engine's part: the
  // compressor's last bytes).
  absl::Status Seal();
  // After Seal: syncs, renames to the real name and syncs the directory
  // (the disk's part, which may run on env::Disk::file_worker: it touches
  // nothing but this writer's file and the directory).
  absl::Status Commit();
  uint64_t file_bytes() const { return file_bytes_; }

 private:
  friend class Snapshotter;
  SnapshotFileWriter(env::Disk* disk, std::string dir, std::string name,
                     std::unique_ptr<env::WritableFile> file, void* cctx,
                     uint64_t data_left);
  absl::Status Compress(std::string_view in, bool end);

  env::Disk* disk_;
  std::string dir_;
  std::string name_;
  std::unique_ptr<env::WritableFile> file_;
  void* cctx_;  // ZSTD_CCtx (zstd.h stays out of this header)
  uint64_t data_left_;
  uint32_t crc_ = 0;
  uint64_t file_bytes_ = 0;
  uint64_t raw_bytes_ = 0;  // compressed: the frame's content size
  std::shared_ptr<bool> incompressible_;  // the Snapshotter's
  bool closed_ = false;
  bool sealed_ = false;
  std::string buf_;  // compressed bytes not yet written: the first used_
  size_t used_ = 0;
};

}  // namespace detcd::wal

#endif  // DETCD_ENGINE_WAL_WAL_H_
