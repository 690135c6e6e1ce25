#include "cli/detcdctl/snapshot_file.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "cli/detcdctl/bolt.h"
#include "engine/server/etcd_server.h"
#include "engine/server/etcd_state_machine.h"
#include "engine/wal/crc32c.h"

namespace detcd::ctl {
namespace {

std::string GoErrno(int e) {
  std::string s = std::strerror(e);
  if (!s.empty()) s[0] = absl::ascii_tolower(s[0]);
  return s;
}

// The image inside a snapshot file (before the zero padding, the length
// and the SHA-256 trailer).
absl::StatusOr<std::string> ReadImage(const std::string& path) {
  struct stat sb;
  if (::stat(path.c_str(), &sb) != 0) {
    return absl::NotFoundError(
        absl::StrCat("stat ", path, ": ", GoErrno(errno)));
  }
  std::ifstream f(path, std::ios::binary);
  if (!f) {
    return absl::NotFoundError(
        absl::StrCat("open ", path, ": ", GoErrno(errno)));
  }
  std::ostringstream ss;
  ss << f.rdbuf();
  std::string data = ss.str();
  if (data.size() < 40) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": not a detcd snapshot file (too short)"));
  }
  size_t lpos = data.size() - 32 - 8;
  uint64_t len = 0;
  for (int i = 0; i < 8; ++i) {
    len = (len << 8) | static_cast<unsigned char>(data[lpos + i]);
  }
  if (len > lpos) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": not a detcd snapshot file"));
  }
  return data.substr(0, len);
}


// etcd's snapshot.Status over a bolt file: CRC-32C of every bucket name
// and key-value in order, the revision of the last key of the "key"
// bucket, the number of key-values, the database size.
absl::StatusOr<DbStatus> BoltStatus(std::string data) {
  auto db = BoltReader::Open(std::move(data));
  if (!db.ok()) return db.status();
  DbStatus st;
  st.total_size = db->Size();
  uint32_t crc = 0;
  auto on_bucket = [&](absl::string_view bucket) {
    crc = crc32c::Extend(crc, bucket.data(), bucket.size());
  };
  absl::Status s = db->ForEach(on_bucket, [&](absl::string_view bucket,
                                              absl::string_view k,
                                              absl::string_view v) {
    crc = crc32c::Extend(crc, k.data(), k.size());
    crc = crc32c::Extend(crc, v.data(), v.size());
    if (bucket == "key" && k.size() >= 8) {
      uint64_t main = 0;
      for (int i = 0; i < 8; ++i) {
        main = (main << 8) | static_cast<unsigned char>(k[i]);
      }
      st.revision = static_cast<int64_t>(main);
    }
    ++st.total_key;
  });
  if (!s.ok()) return s;
  st.hash = crc;
  return st;
}

}  // namespace

absl::StatusOr<DbStatus> SnapshotFileStatus(const std::string& path) {
  {
    struct stat sb;
    if (::stat(path.c_str(), &sb) != 0) {
      return absl::NotFoundError(
          absl::StrCat("stat ", path, ": ", GoErrno(errno)));
    }
    std::ifstream f(path, std::ios::binary);
    std::ostringstream ss;
    ss << f.rdbuf();
    std::string data = ss.str();
    if (LooksLikeBolt(data)) return BoltStatus(std::move(data));
  }
  auto image = ReadImage(path);
  if (!image.ok()) return image.status();
  auto snap = server::DecodeSnapshotImage(*image);
  if (!snap.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": ", snap.status().message()));
  }
  server::EtcdStateMachine sm(server::EtcdStateMachine::Options{});
  if (absl::Status s = sm.Restore(snap->data); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", s.message()));
  }
  DbStatus st;
  auto h = sm.kv().HashByRev(0);
  if (h.ok()) st.hash = h->hash;
  st.revision = sm.kv().Rev();
  st.total_key = static_cast<int64_t>(sm.kv().revision_count());
  struct stat sb;
  if (::stat(path.c_str(), &sb) == 0) st.total_size = sb.st_size;
  return st;
}

absl::Status RestoreSnapshot(const RestoreOptions& o) {
  return absl::UnimplementedError(
      "snapshot restore into a detcd data directory is not supported yet");
}

}  // namespace detcd::ctl
