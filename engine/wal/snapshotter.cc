// Snapshot files; the format is documented in wal.h.
#include <zstd.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <string_view>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "engine/raft/codec.h"
#include "engine/util/check.h"
#include "engine/util/coding.h"
#include "engine/wal/crc32c.h"
#include "engine/wal/file_names.h"
#include "engine/wal/wal.h"

namespace detcd::wal {
namespace {

// Version 1: magic, crc, body. Version 2 (written now): magic, body, crc.
constexpr char kSnapMagic[8] = {'d', 'e', 't', 'c', 'd', 's', 'n', '1'};
constexpr char kSnapMagic2[8] = {'d', 'e', 't', 'c', 'd', 's', 'n', '2'};
constexpr size_t kSnapHeadBytes = sizeof(kSnapMagic) + 4;
// zstd's fast level -1: an automatic snapshot's steps run on the engine
// thread, and compressing was two thirds of their CPU. On the image of
// 1M keys with 256-byte random values (bench/compare's restart load, 275
// MB) `zstd -b1` compresses 179 MB/s to x1.33 and decompresses 640 MB/s;
// `zstd --fast=1 -b` compresses 373 MB/s to x1.04 and decompresses 4.2
// GB/s (a restart reads the image faster too). Text and protobuf values
// still shrink (it is LZ77 without the entropy stage's cost).
constexpr int kZstdLevel = -1;
// For data the last snapshot could not shrink by 5% (Snapshotter::
// next_zstd_level): on the same 1M-key image `zstd --fast=50 -b` runs 3.3
// GB/s (x1.000) where --fast=1 ran 0.95 GB/s (x1.044), on this repository's
// sources 1.4 GB/s at x1.19 (x2.6 at --fast=1).
constexpr int kZstdLevelIncompressible = -50;
// A decompressed snapshot larger than this is refused (as corrupt).
constexpr uint64_t kMaxSnapshotBytes = 8ull << 30;

constexpr std::string_view kSnapSuffix = ".snap";
constexpr std::string_view kDeltaSuffix = ".delta";

std::string SnapName(uint64_t term, uint64_t index, bool delta) {
  return PairName(term, index, delta ? kDeltaSuffix : kSnapSuffix);
}

using SnapFile = SnapFileRef;

bool ParseSnapName(std::string_view name, SnapFile* f) {
  if (ParsePairName(name, kSnapSuffix, &f->term, &f->index)) {
    f->delta = false;
  } else if (ParsePairName(name, kDeltaSuffix, &f->term, &f->index)) {
    f->delta = true;
  } else {
    return false;
  }
  f->name = std::string(name);
  return true;
}

bool IsSnapTemp(std::string_view name) {
  return name.ends_with(".snap.tmp") || name.ends_with(".delta.tmp");
}

// Snapshot files in the directory, oldest (lowest index, then term) first.
absl::Status ListSnaps(env::Disk* disk, const std::string& dir,
                       std::vector<SnapFile>* snaps,
                       std::vector<std::string>* temps) {
  if (!disk->Exists(dir)) return absl::OkStatus();
  auto names = disk->List(dir);
  if (!names.ok()) return names.status();
  for (const std::string& n : *names) {
    SnapFile f;
    if (ParseSnapName(n, &f)) {
      snaps->push_back(std::move(f));
    } else if (temps != nullptr && IsSnapTemp(n)) {
      temps->push_back(n);
    }
  }
  // At one index a whole snapshot counts as newer than a delta (the Node
  // writes one over a delta at its index: Node::TakeSnapshot).
  std::sort(snaps->begin(), snaps->end(),
            [](const SnapFile& a, const SnapFile& b) {
              if (a.index != b.index) return a.index < b.index;
              if (a.term != b.term) return a.term < b.term;
              return a.delta && !b.delta;
            });
  return absl::OkStatus();
}

// Whether a WAL marker names the file.
bool Named(const std::vector<raft::SnapshotMetadata>& valid,
           const SnapFile& f) {
  return std::any_of(valid.begin(), valid.end(), [&](const auto& m) {
    return m.index == f.index && m.term == f.term;
  });
}

absl::Status Corrupt(const std::string& name, const std::string& why) {
  return absl::DataLossError(
      absl::StrCat("snap: corrupt snapshot file ", name, ": ", why));
}

// The file is read this much at a time into one buffer, and the image
// grows this much at a time as zstd writes it.
constexpr size_t kReadChunk = 4 << 20;
constexpr size_t kDecompressChunk = 8 << 20;

// Reads n bytes, fewer only at the file's end.
absl::StatusOr<size_t> ReadFull(env::ReadableFile& file, char* buf, size_t n) {
  size_t got = 0;
  while (got < n) {
    auto r = file.Read(buf + got, n - got);
    if (!r.ok()) return r.status();
    if (*r == 0) break;
    got += *r;
  }
  return got;
}

// Reads the file a chunk at a time, checksumming and decompressing each
// as it comes, so that a restart never holds the file (only one chunk of
// it) beside the image: the image is the only copy. The checksum is known
// only at the end: a corrupt file's image is then dropped, and a zstd
// error before that end waits for it, so that a damaged file says
// "checksum mismatch" however zstd took it.
absl::StatusOr<raft::Snapshot> Decode(const SnapFile& f,
                                      env::ReadableFile& file) {
  const uint64_t file_size = file.size();
  char head[kSnapHeadBytes];
  auto n = ReadFull(file, head, sizeof(head));
  if (!n.ok()) return n.status();  // an I/O error is not corruption
  if (*n < sizeof(head)) return Corrupt(f.name, "bad magic");
  // The body (the zstd frame) is [body_begin, body_end) of the file.
  uint64_t body_begin = 0;
  uint64_t body_end = 0;
  uint32_t want = 0;
  const bool v1 = std::memcmp(head, kSnapMagic, sizeof(kSnapMagic)) == 0;
  if (v1) {
    body_begin = kSnapHeadBytes;
    body_end = file_size;
    want = coding::DecodeFixed32(head + sizeof(kSnapMagic));
  } else if (std::memcmp(head, kSnapMagic2, sizeof(kSnapMagic2)) == 0) {
    body_begin = sizeof(kSnapMagic2);
    body_end = file_size - 4;  // then the checksum
  } else {
    return Corrupt(f.name, "bad magic");
  }
  const size_t cap = static_cast<size_t>(
      std::min<uint64_t>(kReadChunk, std::max<uint64_t>(file_size, 64)));
  std::unique_ptr<char[]> buf(new char[cap]);
  // The body's bytes read with the head come first.
  size_t carried = kSnapHeadBytes - body_begin;
  std::memcpy(buf.get(), head + body_begin, carried);
  uint64_t at = kSnapHeadBytes;  // the file's bytes read
  std::string trailer;
  uint32_t crc = 0;
  std::unique_ptr<ZSTD_DCtx, size_t (*)(ZSTD_DCtx*)> dctx(ZSTD_createDCtx(),
                                                          ZSTD_freeDCtx);
  DETCD_CHECK(dctx != nullptr);
  std::string raw;
  unsigned long long size = 0;
  size_t produced = 0;
  size_t left = 1;  // zstd's hint: 0 once the frame is whole
  const char* zstd_error = nullptr;
  for (bool first = true;; first = false) {
    auto got = ReadFull(file, buf.get() + carried, cap - carried);
    if (!got.ok()) return got.status();
    const size_t filled = carried + *got;
    carried = 0;
    at += *got;
    if (filled == 0) break;
    // What lies beyond the body is the checksum.
    const uint64_t start = at - filled;
    const size_t body =
        static_cast<size_t>(std::max(start, std::min(at, body_end)) - start);
    trailer.append(buf.get() + body, filled - body);
    crc = crc32c::Extend(crc, buf.get(), body);
    if (first && zstd_error == nullptr) {
      size = ZSTD_getFrameContentSize(buf.get(), body);
      if (size == ZSTD_CONTENTSIZE_UNKNOWN || size == ZSTD_CONTENTSIZE_ERROR ||
          size > kMaxSnapshotBytes) {
        zstd_error = "bad zstd frame";
      } else {
        raw.reserve(size);
      }
    }
    const bool last = at >= file_size;
    ZSTD_inBuffer in{buf.get(), body, 0};
    while (zstd_error == nullptr && (in.pos < in.size || (last && left != 0))) {
      // The image grows a chunk at a time (each zero-filled only just
      // before zstd writes it).
      if (produced == raw.size() && raw.size() < size) {
        raw.resize(std::min<size_t>(size, raw.size() + kDecompressChunk));
      }
      ZSTD_outBuffer out{raw.data(), raw.size(), produced};
      const size_t in_before = in.pos;
      left = ZSTD_decompressStream(dctx.get(), &out, &in);
      if (ZSTD_isError(left) || (in.pos == in_before && out.pos == produced)) {
        zstd_error = "zstd decompression failed";
      }
      produced = out.pos;
    }
    if (last) break;
  }
  if (!v1 && trailer.size() == 4) want = coding::DecodeFixed32(trailer.data());
  if (at != file_size || (!v1 && trailer.size() != 4) ||
      crc32c::Mask(crc) != want) {
    return Corrupt(f.name, "checksum mismatch");
  }
  if (zstd_error != nullptr) return Corrupt(f.name, zstd_error);
  if (left != 0 || produced != size) {
    return Corrupt(f.name, "zstd decompression failed");
  }
  buf.reset();
  raft::Snapshot snap;
  if (!raft::DecodeWholeSnapshot(&raw, &snap)) {
    return Corrupt(f.name, "undecodable snapshot");
  }
  if (snap.metadata.index != f.index || snap.metadata.term != f.term) {
    return Corrupt(f.name, "metadata does not match the file name");
  }
  return snap;
}

}  // namespace

Snapshotter::Snapshotter(env::Disk* disk, std::string dir)
    : disk_(disk), dir_(std::move(dir)) {}

absl::Status Snapshotter::Save(const raft::Snapshot& snap) {
  auto w = Begin(snap.metadata, snap.data.size());
  if (!w.ok()) return w.status();
  if (absl::Status s = (*w)->Append(snap.data); !s.ok()) return s;
  return (*w)->Finish();
}

absl::StatusOr<std::unique_ptr<SnapshotFileWriter>> Snapshotter::Begin(
    const raft::SnapshotMetadata& meta, uint64_t data_size, bool delta) {
  if (!disk_->Exists(dir_)) {
    if (absl::Status s = disk_->CreateDir(dir_); !s.ok()) return s;
    if (absl::Status s = disk_->SyncDir(Parent(dir_)); !s.ok()) return s;
  }
  // raft::EncodeSnapshot's bytes up to the data: the metadata, then the
  // data's length prefix.
  std::string head;
  coding::PutVarint64(&head, meta.index);
  coding::PutVarint64(&head, meta.term);
  raft::EncodeConfStateTo(&head, meta.conf_state);
  coding::PutVarint64(&head, data_size);

  const std::string name = SnapName(meta.term, meta.index, delta);
  auto f = disk_->Create(Join(dir_, name + ".tmp"));
  if (!f.ok()) return f.status();
  ZSTD_CCtx* cctx = ZSTD_createCCtx();
  DETCD_CHECK(cctx != nullptr);
  // The pledged size puts the content size in the frame header (the
  // reader sizes its buffer from it) and makes zstd check we kept to it.
  if (ZSTD_isError(ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel,
                                          next_zstd_level())) ||
      ZSTD_isError(ZSTD_CCtx_setPledgedSrcSize(cctx, head.size() + data_size))) {
    ZSTD_freeCCtx(cctx);
    return absl::InternalError("snap: zstd setup failed");
  }
  std::unique_ptr<SnapshotFileWriter> w(new SnapshotFileWriter(
      disk_, dir_, name, *std::move(f), cctx, data_size));
  if (absl::Status s = w->file_->Append(
          std::string_view(kSnapMagic2, sizeof(kSnapMagic2)));
      !s.ok()) {
    return s;
  }
  w->file_bytes_ = sizeof(kSnapMagic2);
  w->raw_bytes_ = head.size() + data_size;
  w->incompressible_ = incompressible_;
  if (absl::Status s = w->Compress(head, false); !s.ok()) return s;
  return w;
}

SnapshotFileWriter::SnapshotFileWriter(env::Disk* disk, std::string dir,
                                       std::string name,
                                       std::unique_ptr<env::WritableFile> file,
                                       void* cctx, uint64_t data_left)
    : disk_(disk),
      dir_(std::move(dir)),
      name_(std::move(name)),
      file_(std::move(file)),
      cctx_(cctx),
      data_left_(data_left) {}

SnapshotFileWriter::~SnapshotFileWriter() {
  ZSTD_freeCCtx(static_cast<ZSTD_CCtx*>(cctx_));
  // An abandoned file stays a temporary (Prune removes it); a close error
  // changes nothing about that.
  if (!closed_) (void)file_->Close();
}

absl::Status SnapshotFileWriter::Compress(std::string_view data, bool end) {
  ZSTD_CCtx* cctx = static_cast<ZSTD_CCtx*>(cctx_);
  ZSTD_inBuffer in{data.data(), data.size(), 0};
  const size_t chunk = ZSTD_CStreamOutSize();
  for (;;) {
    // buf_ only grows (resizing it down and up again zero-filled every
    // chunk); used_ is how much of it holds output.
    if (buf_.size() < used_ + chunk) buf_.resize(used_ + chunk);
    ZSTD_outBuffer out{buf_.data() + used_, chunk, 0};
    const size_t left = ZSTD_compressStream2(
        cctx, &out, &in, end ? ZSTD_e_end : ZSTD_e_continue);
    if (ZSTD_isError(left)) {
      return absl::InternalError(absl::StrCat(
          "snap: zstd compression failed: ", ZSTD_getErrorName(left)));
    }
    // The checksum reads the output while it is still in the cache.
    crc_ = crc32c::Extend(crc_, buf_.data() + used_, out.pos);
    used_ += out.pos;
    // Done once the input is consumed and (at the end) the frame flushed.
    const bool done = end ? left == 0 : in.pos == in.size;
    // Written in pieces of about a megabyte, however much comes in at
    // once (a whole image, from Save): few syscalls, little memory.
    if (used_ >= (1u << 20) || (end && done)) {
      if (absl::Status s = file_->Append(std::string_view(buf_.data(), used_));
          !s.ok()) {
        return s;
      }
      file_bytes_ += used_;
      used_ = 0;
    }
    if (done) break;
  }
  return absl::OkStatus();
}

absl::Status SnapshotFileWriter::Append(std::string_view data) {
  DETCD_CHECK_MSG(data.size() <= data_left_, "snapshot data beyond its size");
  data_left_ -= data.size();
  return Compress(data, false);
}

absl::Status SnapshotFileWriter::Finish() {
  if (absl::Status s = Seal(); !s.ok()) return s;
  return Commit();
}

absl::Status SnapshotFileWriter::Seal() {
  DETCD_CHECK_MSG(data_left_ == 0 && !closed_ && !sealed_,
                  "snapshot data incomplete");
  if (absl::Status s = Compress({}, true); !s.ok()) return s;
  std::string trailer;
  coding::PutFixed32(&trailer, crc32c::Mask(crc_));
  if (absl::Status s = file_->Append(trailer); !s.ok()) return s;
  file_bytes_ += trailer.size();
  sealed_ = true;
  // Told here, on the engine's side: Commit may run on another thread.
  *incompressible_ = file_bytes_ * 20 >= raw_bytes_ * 19;
  return absl::OkStatus();
}

absl::Status SnapshotFileWriter::Commit() {
  DETCD_CHECK_MSG(sealed_ && !closed_, "snapshot file not sealed");
  if (absl::Status s = file_->Sync(); !s.ok()) return s;
  closed_ = true;
  if (absl::Status s = file_->Close(); !s.ok()) return s;
  const std::string path = Join(dir_, name_);
  if (absl::Status s = disk_->Rename(path + ".tmp", path); !s.ok()) return s;
  return disk_->SyncDir(dir_);
}

int Snapshotter::next_zstd_level() const {
  return *incompressible_ ? kZstdLevelIncompressible : kZstdLevel;
}

absl::StatusOr<raft::Snapshot> Snapshotter::LoadNewest(
    const std::vector<raft::SnapshotMetadata>& valid) {
  std::vector<SnapFile> snaps;
  if (absl::Status s = ListSnaps(disk_, dir_, &snaps, nullptr); !s.ok()) {
    return s;
  }
  absl::Status first_error;
  for (auto it = snaps.rbegin(); it != snaps.rend(); ++it) {
    if (it->delta) continue;  // not a whole image
    if (!Named(valid, *it)) continue;
    auto file = disk_->OpenRead(Join(dir_, it->name));
    if (!file.ok()) return file.status();  // an I/O error is not corruption
    auto snap = Decode(*it, **file);
    if (snap.ok()) return snap;
    if (first_error.ok()) first_error = snap.status();
  }
  if (!first_error.ok()) return first_error;
  return absl::NotFoundError(
      absl::StrCat("snap: no usable snapshot file in ", dir_));
}

absl::StatusOr<std::vector<std::vector<SnapFileRef>>> Snapshotter::Chains(
    const std::vector<raft::SnapshotMetadata>& valid) {
  std::vector<SnapFile> snaps;
  if (absl::Status s = ListSnaps(disk_, dir_, &snaps, nullptr); !s.ok()) {
    return s;
  }
  std::vector<std::vector<SnapFileRef>> out;
  for (size_t i = snaps.size(); i-- > 0;) {
    if (!Named(valid, snaps[i])) continue;
    size_t first = i;
    while (snaps[first].delta && first > 0) --first;
    if (snaps[first].delta) continue;  // no whole snapshot under it
    out.emplace_back(snaps.begin() + static_cast<ptrdiff_t>(first),
                     snaps.begin() + static_cast<ptrdiff_t>(i) + 1);
  }
  return out;
}

absl::Status Snapshotter::RemoveAbove(uint64_t index) {
  std::vector<SnapFile> snaps;
  if (absl::Status s = ListSnaps(disk_, dir_, &snaps, nullptr); !s.ok()) {
    return s;
  }
  bool removed = false;
  for (const SnapFile& f : snaps) {
    if (f.index <= index) continue;
    if (absl::Status s = disk_->Remove(Join(dir_, f.name)); !s.ok()) return s;
    removed = true;
  }
  return removed ? disk_->SyncDir(dir_) : absl::OkStatus();
}

absl::StatusOr<raft::Snapshot> Snapshotter::Load(const SnapFileRef& f) {
  auto file = disk_->OpenRead(Join(dir_, f.name));
  if (!file.ok()) return file.status();
  return Decode(f, **file);
}

absl::Status Snapshotter::Prune(size_t keep, uint64_t keep_from) {
  std::vector<SnapFile> snaps;
  std::vector<std::string> temps;
  if (absl::Status s = ListSnaps(disk_, dir_, &snaps, &temps); !s.ok()) {
    return s;
  }
  for (const std::string& t : temps) {
    if (absl::Status s = disk_->Remove(Join(dir_, t)); !s.ok()) return s;
  }
  if (!temps.empty()) {
    if (absl::Status s = disk_->SyncDir(dir_); !s.ok()) return s;
  }
  // Older files' names never come back (a snapshot's index only grows), so
  // the disk may unlink them off the engine's thread (tens of MB each).
  std::vector<std::string> old;
  for (size_t i = 0; i + keep < snaps.size(); ++i) {
    if (snaps[i].index >= keep_from) break;
    old.push_back(Join(dir_, snaps[i].name));
  }
  return disk_->RemoveInOrder(old, dir_);
}

}  // namespace detcd::wal
