// The segmented write-ahead log. The record format is documented in wal.h.
#include "engine/wal/wal.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <map>
#include <optional>
#include <string_view>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "engine/raft/codec.h"
#include "engine/util/check.h"
#include "engine/util/coding.h"
#include "engine/util/probes.h"
#include "engine/wal/crc32c.h"
#include "engine/wal/file_names.h"

namespace detcd::wal {
namespace {

constexpr char kMagic[8] = {'d', 'e', 't', 'c', 'd', 'w', 'a', 'l'};
// Version 2 added sync marks; version 1 segments (none) are still read.
constexpr uint8_t kVersion = 2;
constexpr uint8_t kOldestVersion = 1;
constexpr size_t kRecordHeadBytes = 9;
// No record is larger than this; a length beyond it is corruption.
constexpr uint64_t kMaxRecordBytes = 256ull << 20;
// Entries are grouped into records of about this size.
constexpr size_t kTargetBatchBytes = 1 << 20;
constexpr uint8_t kMarkerRestated = 1;

enum RecordType : uint8_t {
  kSegmentHeader = 1,
  kHardState = 2,
  kEntries = 3,
  kSnapshotMarker = 4,
  kSyncMark = 5,
};

bool ValidType(uint8_t t) { return t >= kSegmentHeader && t <= kSyncMark; }

void PutFixed64(std::string* out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out->push_back(static_cast<char>(v >> (8 * i)));
}

uint64_t DecodeFixed64(const char* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) {
    v |= static_cast<uint64_t>(static_cast<unsigned char>(p[i])) << (8 * i);
  }
  return v;
}

// ---- names ----

std::string SegmentName(uint64_t seq, uint64_t first_index) {
  return PairName(seq, first_index, ".wal");
}

bool ParseSegmentName(std::string_view name, uint64_t* seq, uint64_t* first) {
  return ParsePairName(name, ".wal", seq, first);
}

bool IsTempName(std::string_view name) {
  return name.size() > 8 && name.substr(name.size() - 8) == ".wal.tmp";
}

// ---- encoding ----

void AppendRecord(std::string* out, RecordType type, std::string_view payload) {
  DETCD_CHECK(payload.size() <= kMaxRecordBytes);
  const char t = static_cast<char>(type);
  uint32_t crc =
      crc32c::Extend(crc32c::Value(&t, 1), payload.data(), payload.size());
  coding::PutFixed32(out, static_cast<uint32_t>(payload.size()));
  coding::PutFixed32(out, crc32c::Mask(crc));
  out->push_back(t);
  out->append(payload.data(), payload.size());
}

// The bytes raft::EncodeEntry writes for e.
size_t EncodedEntrySize(const raft::Entry& e) {
  return coding::VarintLength(e.term) + coding::VarintLength(e.index) + 1 +
         coding::VarintLength(e.data.size()) + e.data.size();
}

void AppendHeader(std::string* out, uint64_t seq, uint64_t first_index) {
  std::string p(kMagic, sizeof(kMagic));
  p.push_back(static_cast<char>(kVersion));
  PutFixed64(&p, seq);
  PutFixed64(&p, first_index);
  AppendRecord(out, kSegmentHeader, p);
}

void AppendHardState(std::string* out, const raft::HardState& hs) {
  std::string p;
  coding::PutVarint64(&p, hs.term);
  coding::PutVarint64(&p, hs.vote);
  coding::PutVarint64(&p, hs.commit);
  AppendRecord(out, kHardState, p);
}

void AppendMarker(std::string* out, const raft::SnapshotMetadata& m,
                  bool restated) {
  std::string p;
  p.push_back(static_cast<char>(restated ? kMarkerRestated : 0));
  coding::PutVarint64(&p, m.index);
  coding::PutVarint64(&p, m.term);
  raft::EncodeConfStateTo(&p, m.conf_state);
  AppendRecord(out, kSnapshotMarker, p);
}

// A sync mark written at offset `at` of its segment: [0, synced) of the
// segment was durable before it was written.
void AppendSyncMark(std::string* out, uint64_t synced, uint64_t at) {
  std::string p;
  coding::PutVarint64(&p, synced);
  coding::PutVarint64(&p, at);
  AppendRecord(out, kSyncMark, p);
}

// ---- decoding ----

struct Record {
  RecordType type = kHardState;
  uint64_t seq = 0;          // header
  uint64_t first_index = 0;  // header
  raft::HardState hs;
  std::vector<raft::Entry> entries;
  raft::SnapshotMetadata marker;
  bool restated = false;
  uint64_t synced = 0;   // sync mark
  uint64_t mark_at = 0;  // sync mark
};

bool DecodePayload(uint8_t type, std::string_view payload, Record* rec) {
  rec->type = static_cast<RecordType>(type);
  coding::Reader r(payload);
  switch (type) {
    case kSegmentHeader: {
      if (payload.size() != sizeof(kMagic) + 1 + 16 ||
          std::memcmp(payload.data(), kMagic, sizeof(kMagic)) != 0) {
        return false;
      }
      const uint8_t version = static_cast<uint8_t>(payload[sizeof(kMagic)]);
      if (version < kOldestVersion || version > kVersion) return false;
      rec->seq = DecodeFixed64(payload.data() + sizeof(kMagic) + 1);
      rec->first_index = DecodeFixed64(payload.data() + sizeof(kMagic) + 9);
      return true;
    }
    case kHardState:
      return r.GetVarint64(&rec->hs.term) && r.GetVarint64(&rec->hs.vote) &&
             r.GetVarint64(&rec->hs.commit) && r.empty();
    case kEntries: {
      uint64_t n = 0;
      if (!r.GetVarint64(&n) || n == 0 || n > r.remaining()) return false;
      rec->entries.resize(n);
      for (uint64_t i = 0; i < n; ++i) {
        if (!raft::DecodeEntry(&r, &rec->entries[i])) return false;
        if (i > 0 && rec->entries[i].index != rec->entries[i - 1].index + 1) {
          return false;
        }
      }
      return r.empty() && rec->entries[0].index > 0;
    }
    case kSnapshotMarker: {
      uint8_t flags = 0;
      if (!r.GetByte(&flags) || (flags & ~kMarkerRestated) != 0) return false;
      rec->restated = (flags & kMarkerRestated) != 0;
      return r.GetVarint64(&rec->marker.index) &&
             r.GetVarint64(&rec->marker.term) &&
             raft::DecodeConfStateFrom(&r, &rec->marker.conf_state) &&
             r.empty();
    }
    case kSyncMark:
      return r.GetVarint64(&rec->synced) && r.GetVarint64(&rec->mark_at) &&
             r.empty() && rec->synced <= rec->mark_at;
    default:
      return false;
  }
}

// If a well-formed record (length fits, checksum matches) starts at `off`,
// returns its total size; otherwise 0.
size_t FramedRecordAt(std::string_view data, size_t off) {
  if (data.size() - off < kRecordHeadBytes) return 0;
  const char* p = data.data() + off;
  uint8_t type = static_cast<uint8_t>(p[8]);
  if (!ValidType(type)) return 0;
  uint64_t len = coding::DecodeFixed32(p);
  if (len > kMaxRecordBytes || len > data.size() - off - kRecordHeadBytes) {
    return 0;
  }
  uint32_t crc =
      crc32c::Extend(crc32c::Value(p + 8, 1), p + kRecordHeadBytes, len);
  if (crc32c::Mask(crc) != coding::DecodeFixed32(p + 4)) return 0;
  return kRecordHeadBytes + len;
}

struct SegmentFile {
  uint64_t seq = 0;
  uint64_t first_index = 0;
  std::string name;
};

absl::Status ListDir(env::Disk* disk, const std::string& dir,
                     std::vector<SegmentFile>* segments,
                     std::vector<std::string>* temps) {
  auto names = disk->List(dir);
  if (!names.ok()) return names.status();
  for (const std::string& n : *names) {
    SegmentFile s;
    if (ParseSegmentName(n, &s.seq, &s.first_index)) {
      s.name = n;
      segments->push_back(std::move(s));
    } else if (temps != nullptr && IsTempName(n)) {
      temps->push_back(n);
    }
  }
  // Fixed-width hex names sort by sequence number already; make it explicit.
  std::sort(
      segments->begin(), segments->end(),
      [](const SegmentFile& a, const SegmentFile& b) { return a.seq < b.seq; });
  for (size_t i = 1; i < segments->size(); ++i) {
    if ((*segments)[i].seq == (*segments)[i - 1].seq) {
      return absl::DataLossError(
          absl::StrCat("wal: duplicate segment ", (*segments)[i].name));
    }
    if ((*segments)[i].seq != (*segments)[i - 1].seq + 1) {
      return absl::DataLossError(absl::StrCat("wal: missing segment between ",
                                              (*segments)[i - 1].name, " and ",
                                              (*segments)[i].name));
    }
  }
  return absl::OkStatus();
}

absl::Status Corrupt(const std::string& name, size_t off,
                     const std::string& why) {
  return absl::DataLossError(absl::StrCat("wal: corrupt record in segment ",
                                          name, " at offset ", off, ": ", why));
}

bool AllZero(std::string_view bytes) {
  return std::all_of(bytes.begin(), bytes.end(),
                     [](char c) { return c == '\0'; });
}

// Decodes the well-formed record of n bytes at off.
bool DecodeAt(std::string_view data, size_t off, size_t n, Record* rec) {
  const uint8_t type = static_cast<uint8_t>(data[off + 8]);
  return DecodePayload(
      type, data.substr(off + kRecordHeadBytes, n - kRecordHeadBytes), rec);
}

// Parses one segment, calling on_record for every record after the header
// (sync marks are consumed here). Returns the end of the last valid record.
// A bad record is tolerated only in the last segment and only past the
// synced prefix that the segment's sync marks prove (a torn or lost write;
// records after it, even well-formed ones, were never synced either); the
// caller may then truncate the file to the returned size.
template <typename F>
absl::StatusOr<size_t> ParseSegment(std::string_view data,
                                    const SegmentFile& seg, bool is_last,
                                    const planted::Bugs& bugs,
                                    F&& on_record) {
  size_t off = 0;
  bool first = true;
  uint64_t synced = 0;  // the largest sync mark read so far
  while (off < data.size()) {
    size_t n = FramedRecordAt(data, off);
    if (n == 0) {
      if (first) return Corrupt(seg.name, off, "bad segment header");
      // The disk filled the file ahead of the writes (env::Disk::OpenAppend):
      // the segment's records end here.
      if (AllZero(data.substr(off))) return off;
      if (!is_last) return Corrupt(seg.name, off, "bad checksum or length");
      // Sync marks in the well-formed records after the bad one count too:
      // we wrote them, and what each claims was durable when it was
      // written. A mark must also name the offset it sits at, so a frame
      // embedded in an entry's data cannot pass for one.
      std::optional<size_t> next;
      for (size_t p = off + 1; p + kRecordHeadBytes <= data.size(); ++p) {
        const size_t m = FramedRecordAt(data, p);
        if (m == 0) continue;
        if (!next) next = p;
        Record mark;
        if (static_cast<uint8_t>(data[p + 8]) == kSyncMark &&
            DecodeAt(data, p, m, &mark) && mark.mark_at == p) {
          synced = std::max(synced, mark.synced);
        }
      }
      if (off < synced) {
        return Corrupt(seg.name, off,
                       absl::StrCat("bad record inside the synced prefix "
                                    "(synced through offset ",
                                    synced, ")"));
      }
      if (next && bugs.on(planted::Bug::kWalTrustAfterTorn)) {  // PLANTED
        off = *next;
        continue;
      }
      return off;  // a torn or lost write in the unsynced tail
    }
    Record rec;
    if (!DecodeAt(data, off, n, &rec)) {
      return Corrupt(seg.name, off, "undecodable payload");
    }
    if (first != (rec.type == kSegmentHeader)) {
      return Corrupt(seg.name, off,
                     first ? "segment does not start with a header"
                           : "header in the middle of a segment");
    }
    if (first) {
      if (rec.seq != seg.seq || rec.first_index != seg.first_index) {
        return Corrupt(seg.name, off, "header does not match the file name");
      }
      first = false;
    } else if (rec.type == kSyncMark) {
      if (rec.mark_at != off) {
        return Corrupt(seg.name, off, "sync mark out of place");
      }
      synced = std::max(synced, rec.synced);
    } else if (absl::Status s = on_record(rec, off); !s.ok()) {
      return s;
    }
    off += n;
  }
  if (first) return Corrupt(seg.name, 0, "empty segment");
  return off;
}

// What one segment holds, for deciding which segments can be released.
struct SegmentInfo {
  SegmentFile file;
  uint64_t max_entry_index = 0;
  std::vector<uint64_t> markers;  // indices of the markers it holds
};

// Replays records in order.
class Replay {
 public:
  explicit Replay(uint64_t snap_index) : snap_index_(snap_index) {}

  void Apply(const Record& rec, SegmentInfo* seg) {
    switch (rec.type) {
      case kHardState:
        hs_ = rec.hs;
        break;
      case kEntries:
        for (const raft::Entry& e : rec.entries) {
          entries_.erase(entries_.lower_bound(e.index), entries_.end());
          if (e.index > snap_index_) entries_.emplace(e.index, e);
          seg->max_entry_index = std::max(seg->max_entry_index, e.index);
        }
        last_index_ = rec.entries.back().index;
        break;
      case kSnapshotMarker:
        seg->markers.push_back(rec.marker.index);
        last_marker_ = rec.marker;
        last_index_ = std::max(last_index_, rec.marker.index);
        if (rec.marker.index == snap_index_) snapshot_ = rec.marker;
        // A restated marker repeats one seen before, unless the segment
        // that held the original was released.
        if (std::find(markers_.begin(), markers_.end(), rec.marker) ==
            markers_.end()) {
          markers_.push_back(rec.marker);
        }
        break;
      case kSegmentHeader:
      case kSyncMark:
        break;
    }
  }

  uint64_t snap_index_;
  raft::HardState hs_;
  std::map<uint64_t, raft::Entry> entries_;  // only those > snap_index_
  uint64_t last_index_ = 0;
  std::optional<raft::SnapshotMetadata> snapshot_;
  std::optional<raft::SnapshotMetadata> last_marker_;
  std::vector<raft::SnapshotMetadata> markers_;  // distinct, oldest first
};

struct ReadResult {
  std::vector<SegmentInfo> segments;
  std::vector<std::string> temps;
  size_t last_size = 0;   // bytes of the last segment that are valid
  size_t last_total = 0;  // bytes of the last segment on disk
  bool last_torn = false;  // what follows last_size is not all zeros
};

absl::StatusOr<ReadResult> ReadWal(env::Disk* disk, const std::string& dir,
                                   const planted::Bugs& bugs, Replay* replay) {
  ReadResult out;
  std::vector<SegmentFile> files;
  if (absl::Status s = ListDir(disk, dir, &files, &out.temps); !s.ok()) {
    return s;
  }
  if (files.empty()) {
    return absl::NotFoundError(absl::StrCat("wal: no segments in ", dir));
  }
  for (size_t i = 0; i < files.size(); ++i) {
    const bool is_last = i + 1 == files.size();
    auto data = disk->ReadAll(Join(dir, files[i].name));
    if (!data.ok()) return data.status();
    SegmentInfo info;
    info.file = files[i];
    auto end = ParseSegment(*data, files[i], is_last, bugs,
                            [&](const Record& rec, size_t) {
                              replay->Apply(rec, &info);
                              return absl::OkStatus();
                            });
    if (!end.ok()) return end.status();
    if (is_last) {
      out.last_size = *end;
      out.last_total = data->size();
      out.last_torn = !AllZero(std::string_view(*data).substr(*end));
    }
    out.segments.push_back(std::move(info));
  }
  return out;
}

absl::Status ValidateOptions(const WalOptions& opts) {
  if (opts.segment_bytes == 0) {
    return absl::InvalidArgumentError("wal: segment_bytes must be > 0");
  }
  return absl::OkStatus();
}

// Writes a complete segment under a temporary name and moves it into place
// durably.
absl::Status WriteSegment(env::Disk* disk, const std::string& dir,
                          const std::string& name, std::string_view contents) {
  const std::string tmp = Join(dir, name + ".tmp");
  auto f = disk->Create(tmp);
  if (!f.ok()) return f.status();
  if (absl::Status s = (*f)->Append(contents); !s.ok()) return s;
  if (absl::Status s = (*f)->Sync(); !s.ok()) return s;
  if (absl::Status s = (*f)->Close(); !s.ok()) return s;
  if (absl::Status s = disk->Rename(tmp, Join(dir, name)); !s.ok()) return s;
  return disk->SyncDir(dir);
}

class SegmentedWal final : public Wal {
 public:
  // The last segment's first file_bytes bytes are durable.
  SegmentedWal(env::Disk* disk, std::string dir, WalOptions opts,
               std::vector<SegmentInfo> segments,
               std::unique_ptr<env::WritableFile> file, uint64_t file_bytes)
      : disk_(disk),
        dir_(std::move(dir)),
        opts_(opts),
        segments_(std::move(segments)),
        file_(std::move(file)),
        file_bytes_(file_bytes),
        synced_bytes_(file_bytes) {
    DETCD_CHECK(!segments_.empty());
  }

  // State recovered by Open (everything read is on disk and was synced).
  void Restore(const Replay& r) {
    hs_ = r.hs_;
    last_marker_ = r.last_marker_;
    last_index_ = r.last_index_;
    MarkSynced();
  }

  absl::Status Save(const raft::HardState* hs,
                    const std::vector<raft::Entry>& entries,
                    bool sync) override {
    if (!failed_.ok()) return failed_;
    for (size_t i = 1; i < entries.size(); ++i) {
      if (entries[i].index != entries[i - 1].index + 1) {
        return absl::InvalidArgumentError(
            "wal: entries in one Save must have consecutive indices");
      }
    }
    if (!entries.empty() && entries[0].index == 0) {
      return absl::InvalidArgumentError("wal: entry index 0");
    }
    std::string& buf = StartBuffer();
    const size_t head = buf.size();
    // Records of up to kTargetBatchBytes of entries (one entry may pass
    // it), each entry encoded straight into buf: its data is copied once
    // (a 1 MiB value was copied four times on its way into the record).
    size_t total = 0;
    for (const raft::Entry& e : entries) {
      const size_t n = EncodedEntrySize(e);
      if (n + 16 > kMaxRecordBytes) {
        return absl::InvalidArgumentError("wal: entry too large");
      }
      total += n;
    }
    buf.reserve(buf.size() + total + 64 + entries.size() / 8);
    for (size_t i = 0; i < entries.size();) {
      size_t j = i;
      size_t bytes = 0;
      while (j < entries.size()) {
        const size_t n = EncodedEntrySize(entries[j]);
        if (j > i && bytes + n > kTargetBatchBytes) break;
        bytes += n;
        ++j;
      }
      const size_t payload = coding::VarintLength(j - i) + bytes;
      DETCD_CHECK(payload <= kMaxRecordBytes);
      const size_t rec = buf.size();
      coding::PutFixed32(&buf, static_cast<uint32_t>(payload));
      coding::PutFixed32(&buf, 0);  // the crc, below
      buf.push_back(static_cast<char>(kEntries));
      coding::PutVarint64(&buf, j - i);
      for (; i < j; ++i) raft::EncodeEntry(&buf, entries[i]);
      DETCD_CHECK(buf.size() == rec + kRecordHeadBytes + payload);
      // The type byte and the payload, as AppendRecord checksums them.
      const uint32_t crc =
          crc32c::Value(buf.data() + rec + 8, 1 + payload);
      std::string masked;
      coding::PutFixed32(&masked, crc32c::Mask(crc));
      buf.replace(rec + 4, 4, masked);
    }
    // Entries before the hard state: a torn tail never keeps a commit index
    // without the entries it covers.
    if (hs != nullptr) AppendHardState(&buf, *hs);
    if (buf.size() > head) {
      if (absl::Status s = Write(buf); !s.ok()) return s;
    }
    if (hs != nullptr) hs_ = *hs;
    if (!entries.empty()) {
      last_index_ = entries.back().index;
      SegmentInfo& cur = segments_.back();
      cur.max_entry_index = std::max(cur.max_entry_index, last_index_);
    }
    if (sync) {
      if (absl::Status s = SyncCurrent(); !s.ok()) return s;
    }
    return MaybeCut();
  }

  absl::Status SaveSnapshotMarker(const raft::SnapshotMetadata& meta) override {
    if (!failed_.ok()) return failed_;
    std::string& buf = StartBuffer();
    AppendMarker(&buf, meta, /*restated=*/false);
    if (absl::Status s = Write(buf); !s.ok()) return s;
    last_marker_ = meta;
    last_index_ = std::max(last_index_, meta.index);
    segments_.back().markers.push_back(meta.index);
    if (absl::Status s = SyncCurrent(); !s.ok()) return s;
    return MaybeCut();
  }

  absl::Status ReleaseBefore(uint64_t index) override {
    if (!failed_.ok()) return failed_;
    // The newest marker at or below index, and the last segment holding it.
    std::optional<uint64_t> keep_marker;
    size_t holder = 0;
    for (size_t i = 0; i < segments_.size(); ++i) {
      for (uint64_t m : segments_[i].markers) {
        if (m <= index && (!keep_marker || m >= *keep_marker)) {
          keep_marker = m;
          holder = i;
        }
      }
    }
    if (!keep_marker) return absl::OkStatus();
    // Remove a prefix of segments: each holds only entries the marker
    // covers, and a later segment (at least the holder) stays. Later
    // segments restate a hard state at least as new as any removed one.
    size_t remove = 0;
    while (remove < holder && remove + 1 < segments_.size() &&
           segments_[remove].max_entry_index <= *keep_marker) {
      ++remove;
    }
    // Oldest first, each removal durable before the next, so a crash
    // never leaves a gap in the sequence numbers (the real disk does it on
    // a thread of its own: see env::Disk::RemoveInOrder).
    std::vector<std::string> paths;
    paths.reserve(remove);
    for (size_t i = 0; i < remove; ++i) {
      paths.push_back(Join(dir_, segments_[i].file.name));
    }
    segments_.erase(segments_.begin(), segments_.begin() + remove);
    if (absl::Status s = disk_->RemoveInOrder(paths, dir_); !s.ok()) {
      return Fail(s);
    }
    return absl::OkStatus();
  }

  DurableState durable() const override { return durable_; }

 private:
  absl::Status Fail(absl::Status s) {
    if (failed_.ok()) failed_ = s;
    return s;
  }

  // The write buffer, opened with a sync mark if a sync has made more of
  // the segment durable since the last mark: recovery learns from the marks
  // where the synced prefix ends, which decides between a torn write (past
  // it) and data loss (inside it). One buffer serves every write, so a
  // large entry is encoded into memory already mapped rather than into
  // fresh pages each time (a 1 MiB value's record faulted in 256 pages per
  // put); Write gives back a capacity beyond kKeepBufferBytes.
  std::string& StartBuffer() {
    buf_.clear();
    if (synced_bytes_ > marked_bytes_) {
      AppendSyncMark(&buf_, synced_bytes_, file_bytes_);
    }
    return buf_;
  }

  absl::Status Write(std::string_view buf) {
    const size_t n = buf.size();
    absl::Status s = file_->Append(buf);
    if (buf.data() == buf_.data() && buf_.capacity() > kKeepBufferBytes) {
      std::string().swap(buf_);
    }
    if (!s.ok()) return Fail(s);
    file_bytes_ += n;
    marked_bytes_ = synced_bytes_;
    return absl::OkStatus();
  }

  // A failed fsync is the end of this WAL: the data it was to make durable
  // may be gone for good (env.h), so nothing may build on it.
  absl::Status SyncCurrent() {
    if (absl::Status s = file_->Sync(); !s.ok()) {
      if (!opts_.bugs.on(planted::Bug::kIgnoreFsyncError)) {  // PLANTED
        return Fail(s);
      }
    }
    synced_bytes_ = file_bytes_;
    MarkSynced();
    return absl::OkStatus();
  }

  void MarkSynced() {
    durable_.hard_state = hs_;
    durable_.last_index = last_index_;
  }

  absl::Status MaybeCut() {
    if (file_bytes_ < opts_.segment_bytes) return absl::OkStatus();
    // The old segment must be complete on disk before a newer one exists:
    // only the last segment may have a torn tail.
    if (absl::Status s = SyncCurrent(); !s.ok()) return s;
    SegmentInfo next;
    next.file.seq = segments_.back().file.seq + 1;
    next.file.first_index = last_index_ + 1;
    next.file.name = SegmentName(next.file.seq, next.file.first_index);
    std::string buf;
    AppendHeader(&buf, next.file.seq, next.file.first_index);
    if (last_marker_) {
      AppendMarker(&buf, *last_marker_, /*restated=*/true);
      next.markers.push_back(last_marker_->index);
    }
    if (!hs_.IsEmpty()) AppendHardState(&buf, hs_);
    if (absl::Status s = WriteSegment(disk_, dir_, next.file.name, buf);
        !s.ok()) {
      return Fail(s);
    }
    auto f = disk_->OpenAppend(Join(dir_, next.file.name));
    if (!f.ok()) return Fail(f.status());
    // The old segment is synced; a close error cannot lose anything.
    (void)file_->Close();
    file_ = *std::move(f);
    file_bytes_ = synced_bytes_ = buf.size();
    marked_bytes_ = 0;
    segments_.push_back(std::move(next));
    return absl::OkStatus();
  }

  // Write buffers up to this size stay allocated for the next write.
  static constexpr size_t kKeepBufferBytes = 4 << 20;

  env::Disk* disk_;
  std::string dir_;
  WalOptions opts_;
  std::string buf_;  // StartBuffer
  std::vector<SegmentInfo> segments_;  // oldest first; the last is open
  std::unique_ptr<env::WritableFile> file_;
  uint64_t file_bytes_;    // of the last segment
  uint64_t synced_bytes_;  // of the last segment, made durable by a sync
  uint64_t marked_bytes_ = 0;  // the claim of the newest sync mark written
  raft::HardState hs_;                                 // newest written
  std::optional<raft::SnapshotMetadata> last_marker_;  // newest written
  uint64_t last_index_ = 0;
  DurableState durable_;
  absl::Status failed_;  // the first write error; every later call fails
};

}  // namespace

size_t DecodeRecordAt(std::string_view segment, size_t offset,
                      WalRecord* out) {
  if (offset > segment.size()) return 0;
  const size_t n = FramedRecordAt(segment, offset);
  Record rec;
  if (n == 0 || !DecodeAt(segment, offset, n, &rec)) return 0;
  switch (rec.type) {
    case kSegmentHeader:
      out->type = WalRecord::Type::kSegmentHeader;
      break;
    case kHardState:
      out->type = WalRecord::Type::kHardState;
      out->hard_state = rec.hs;
      break;
    case kEntries:
      out->type = WalRecord::Type::kEntries;
      out->entries = std::move(rec.entries);
      break;
    case kSnapshotMarker:
      out->type = WalRecord::Type::kSnapshotMarker;
      out->marker = rec.marker;
      break;
    case kSyncMark:
      out->type = WalRecord::Type::kSyncMark;
      break;
  }
  return n;
}

bool Wal::Exists(env::Disk* disk, const std::string& dir) {
  auto names = disk->List(dir);
  if (!names.ok()) return false;
  uint64_t seq, first;
  return std::any_of(names->begin(), names->end(), [&](const std::string& n) {
    return ParseSegmentName(n, &seq, &first);
  });
}

absl::StatusOr<std::unique_ptr<Wal>> Wal::Create(env::Disk* disk,
                                                 const std::string& dir) {
  return Create(disk, dir, WalOptions());
}

absl::StatusOr<std::unique_ptr<Wal>> Wal::Create(env::Disk* disk,
                                                 const std::string& dir,
                                                 const WalOptions& opts) {
  if (absl::Status s = ValidateOptions(opts); !s.ok()) return s;
  if (Exists(disk, dir)) {
    return absl::FailedPreconditionError(
        absl::StrCat("wal: ", dir, " already holds a WAL"));
  }
  if (absl::Status s = disk->CreateDir(dir);
      !s.ok() && !absl::IsAlreadyExists(s)) {
    return s;
  }
  // Leftovers of an earlier Create that crashed before its rename.
  std::vector<SegmentFile> none;
  std::vector<std::string> temps;
  if (absl::Status s = ListDir(disk, dir, &none, &temps); !s.ok()) return s;
  for (const std::string& t : temps) {
    if (absl::Status s = disk->Remove(Join(dir, t)); !s.ok()) return s;
  }
  SegmentInfo seg;
  seg.file.seq = 0;
  seg.file.first_index = 1;
  seg.file.name = SegmentName(0, 1);
  std::string buf;
  AppendHeader(&buf, 0, 1);
  if (absl::Status s = WriteSegment(disk, dir, seg.file.name, buf); !s.ok()) {
    return s;
  }
  // The directory's own entry in its parent.
  if (absl::Status s = disk->SyncDir(Parent(dir)); !s.ok()) return s;
  auto f = disk->OpenAppend(Join(dir, seg.file.name));
  if (!f.ok()) return f.status();
  std::vector<SegmentInfo> segs;
  segs.push_back(std::move(seg));
  return std::unique_ptr<Wal>(new SegmentedWal(disk, dir, opts, std::move(segs),
                                               *std::move(f), buf.size()));
}

absl::StatusOr<Recovered> Wal::Open(env::Disk* disk, const std::string& dir,
                                    uint64_t snap_index) {
  return Open(disk, dir, snap_index, WalOptions());
}

absl::StatusOr<Recovered> Wal::Open(env::Disk* disk, const std::string& dir,
                                    uint64_t snap_index,
                                    const WalOptions& opts) {
  if (absl::Status s = ValidateOptions(opts); !s.ok()) return s;
  Replay replay(snap_index);
  auto read = ReadWal(disk, dir, opts.bugs, &replay);
  if (!read.ok()) return read.status();
  if (!replay.snapshot_) {
    return absl::NotFoundError(absl::StrCat("wal: no snapshot marker at index ",
                                            snap_index, " in ", dir));
  }
  Recovered out;
  out.hard_state = replay.hs_;
  out.snapshot = *replay.snapshot_;
  out.entries.reserve(replay.entries_.size());
  uint64_t expect = snap_index + 1;
  for (auto& [index, e] : replay.entries_) {
    if (index != expect) {
      return absl::DataLossError(absl::StrCat(
          "wal: entries after snapshot ", snap_index,
          " are not contiguous: expected index ", expect, ", found ", index));
    }
    ++expect;
    out.entries.push_back(std::move(e));
  }

  // Everything checks out: repair the torn tail (if any) and reopen the last
  // segment for appending. The sync makes the repair, and anything a
  // previous process wrote without syncing, durable before we build on it.
  const SegmentFile& last = read->segments.back().file;
  const std::string last_path = Join(dir, last.name);
  if (read->last_size < read->last_total) {
    if (read->last_torn) DETCD_PROBE(kWalTornTailRepaired);
    if (absl::Status s = disk->Truncate(last_path, read->last_size); !s.ok()) {
      return s;
    }
  }
  for (const std::string& t : read->temps) {
    if (absl::Status s = disk->Remove(Join(dir, t)); !s.ok()) return s;
  }
  auto f = disk->OpenAppend(last_path);
  if (!f.ok()) return f.status();
  if (absl::Status s = (*f)->Sync(); !s.ok()) return s;
  auto wal =
      std::make_unique<SegmentedWal>(disk, dir, opts, std::move(read->segments),
                                     *std::move(f), read->last_size);
  wal->Restore(replay);
  out.wal = std::move(wal);
  return out;
}

absl::StatusOr<std::vector<raft::SnapshotMetadata>> Wal::ReadMarkers(
    env::Disk* disk, const std::string& dir) {
  // No snapshot index: keep no entries in memory.
  Replay replay(std::numeric_limits<uint64_t>::max());
  auto read = ReadWal(disk, dir, planted::Bugs(), &replay);
  if (!read.ok()) return read.status();
  return std::move(replay.markers_);
}

}  // namespace detcd::wal
