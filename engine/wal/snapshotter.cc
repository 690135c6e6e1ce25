// Snapshot files; the format is documented in wal.h.
#include <zstd.h>

#include <algorithm>
#include <cstring>
#include <string_view>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "engine/raft/codec.h"
#include "engine/util/coding.h"
#include "engine/wal/crc32c.h"
#include "engine/wal/file_names.h"
#include "engine/wal/wal.h"

namespace detcd::wal {
namespace {

constexpr char kSnapMagic[8] = {'d', 'e', 't', 'c', 'd', 's', 'n', '1'};
constexpr size_t kSnapHeadBytes = sizeof(kSnapMagic) + 4;
constexpr int kZstdLevel = 3;
// A decompressed snapshot larger than this is refused (as corrupt).
constexpr uint64_t kMaxSnapshotBytes = 8ull << 30;

std::string SnapName(uint64_t term, uint64_t index) {
  return PairName(term, index, ".snap");
}

struct SnapFile {
  uint64_t term = 0;
  uint64_t index = 0;
  std::string name;
};

bool ParseSnapName(std::string_view name, SnapFile* f) {
  if (!ParsePairName(name, ".snap", &f->term, &f->index)) return false;
  f->name = std::string(name);
  return true;
}

bool IsSnapTemp(std::string_view name) {
  return name.size() > 9 && name.substr(name.size() - 9) == ".snap.tmp";
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
  std::sort(snaps->begin(), snaps->end(),
            [](const SnapFile& a, const SnapFile& b) {
              return a.index != b.index ? a.index < b.index : a.term < b.term;
            });
  return absl::OkStatus();
}

absl::Status Corrupt(const std::string& name, const std::string& why) {
  return absl::DataLossError(
      absl::StrCat("snap: corrupt snapshot file ", name, ": ", why));
}

absl::StatusOr<raft::Snapshot> Decode(const SnapFile& f,
                                      std::string_view data) {
  if (data.size() < kSnapHeadBytes ||
      std::memcmp(data.data(), kSnapMagic, sizeof(kSnapMagic)) != 0) {
    return Corrupt(f.name, "bad magic");
  }
  std::string_view body = data.substr(kSnapHeadBytes);
  uint32_t want = coding::DecodeFixed32(data.data() + sizeof(kSnapMagic));
  if (crc32c::Mask(crc32c::Value(body)) != want) {
    return Corrupt(f.name, "checksum mismatch");
  }
  unsigned long long size = ZSTD_getFrameContentSize(body.data(), body.size());
  if (size == ZSTD_CONTENTSIZE_UNKNOWN || size == ZSTD_CONTENTSIZE_ERROR ||
      size > kMaxSnapshotBytes) {
    return Corrupt(f.name, "bad zstd frame");
  }
  std::string raw(size, '\0');
  size_t got =
      ZSTD_decompress(raw.data(), raw.size(), body.data(), body.size());
  if (ZSTD_isError(got) || got != size) {
    return Corrupt(f.name, "zstd decompression failed");
  }
  raft::Snapshot snap;
  coding::Reader r(raw);
  if (!raft::DecodeSnapshot(&r, &snap) || !r.empty()) {
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
  if (!disk_->Exists(dir_)) {
    if (absl::Status s = disk_->CreateDir(dir_); !s.ok()) return s;
    if (absl::Status s = disk_->SyncDir(Parent(dir_)); !s.ok()) return s;
  }
  std::string raw;
  raft::EncodeSnapshot(&raw, snap);
  std::string body(ZSTD_compressBound(raw.size()), '\0');
  size_t n = ZSTD_compress(body.data(), body.size(), raw.data(), raw.size(),
                           kZstdLevel);
  if (ZSTD_isError(n)) {
    return absl::InternalError(
        absl::StrCat("snap: zstd compression failed: ", ZSTD_getErrorName(n)));
  }
  body.resize(n);
  std::string out(kSnapMagic, sizeof(kSnapMagic));
  coding::PutFixed32(&out, crc32c::Mask(crc32c::Value(body)));
  out.append(body);

  const std::string name = SnapName(snap.metadata.term, snap.metadata.index);
  const std::string tmp = Join(dir_, name + ".tmp");
  auto f = disk_->Create(tmp);
  if (!f.ok()) return f.status();
  if (absl::Status s = (*f)->Append(out); !s.ok()) return s;
  if (absl::Status s = (*f)->Sync(); !s.ok()) return s;
  if (absl::Status s = (*f)->Close(); !s.ok()) return s;
  if (absl::Status s = disk_->Rename(tmp, Join(dir_, name)); !s.ok()) return s;
  return disk_->SyncDir(dir_);
}

absl::StatusOr<raft::Snapshot> Snapshotter::LoadNewest(
    const std::vector<raft::SnapshotMetadata>& valid) {
  std::vector<SnapFile> snaps;
  if (absl::Status s = ListSnaps(disk_, dir_, &snaps, nullptr); !s.ok()) {
    return s;
  }
  absl::Status first_error;
  for (auto it = snaps.rbegin(); it != snaps.rend(); ++it) {
    const bool wanted =
        std::any_of(valid.begin(), valid.end(), [&](const auto& m) {
          return m.index == it->index && m.term == it->term;
        });
    if (!wanted) continue;
    auto data = disk_->ReadAll(Join(dir_, it->name));
    if (!data.ok()) return data.status();  // an I/O error is not corruption
    auto snap = Decode(*it, *data);
    if (snap.ok()) return snap;
    if (first_error.ok()) first_error = snap.status();
  }
  if (!first_error.ok()) return first_error;
  return absl::NotFoundError(
      absl::StrCat("snap: no usable snapshot file in ", dir_));
}

absl::Status Snapshotter::Prune(size_t keep) {
  std::vector<SnapFile> snaps;
  std::vector<std::string> temps;
  if (absl::Status s = ListSnaps(disk_, dir_, &snaps, &temps); !s.ok()) {
    return s;
  }
  bool removed = false;
  for (const std::string& t : temps) {
    if (absl::Status s = disk_->Remove(Join(dir_, t)); !s.ok()) return s;
    removed = true;
  }
  for (size_t i = 0; i + keep < snaps.size(); ++i) {
    if (absl::Status s = disk_->Remove(Join(dir_, snaps[i].name)); !s.ok()) {
      return s;
    }
    removed = true;
  }
  return removed ? disk_->SyncDir(dir_) : absl::OkStatus();
}

}  // namespace detcd::wal
