#include "cli/detcdctl/snapshot_file.h"

#include <openssl/sha.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "cli/detcdctl/gofmt.h"
#include "engine/server/etcd_server.h"
#include "engine/server/etcd_state_machine.h"
#include "engine/wal/crc32c.h"
#include "shim/bolt.h"
#include "shim/etcd_db.h"
#include "shim/go_format.h"

namespace detcd::ctl {

using shim::BoltReader;
using shim::EtcdDbImport;
using shim::GoErrno;
using shim::ImportEtcdDb;
using shim::LooksLikeBolt;

namespace {

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

namespace {

// fmt's %v of a []byte: "[1 2 3]".
std::string GoBytes(absl::string_view b) {
  std::string out = "[";
  for (size_t i = 0; i < b.size(); ++i) {
    if (i > 0) out.push_back(' ');
    absl::StrAppend(&out, static_cast<unsigned char>(b[i]));
  }
  out.push_back(']');
  return out;
}

std::string Sha256(absl::string_view b) {
  unsigned char d[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(b.data()), b.size(), d);
  return std::string(reinterpret_cast<const char*>(d), sizeof d);
}

constexpr size_t kShaBytes = 32;
constexpr size_t kLenBytes = 8;

// detcd's image inside what precedes the trailer: image, zero padding,
// the image's length (8 bytes, big-endian).
absl::StatusOr<std::string> DetcdImage(const std::string& path,
                                       absl::string_view body) {
  auto corrupt = [&](absl::string_view why) {
    return absl::DataLossError(absl::StrCat("snapshot file ", GoQuote(path),
                                            " is corrupt: ", why));
  };
  if (body.size() < kLenBytes) return corrupt("too short");
  uint64_t len = 0;
  for (size_t i = body.size() - kLenBytes; i < body.size(); ++i) {
    len = (len << 8) | static_cast<unsigned char>(body[i]);
  }
  if (len > body.size() - kLenBytes) return corrupt("bad image length");
  absl::string_view pad = body.substr(len, body.size() - kLenBytes - len);
  if (pad.find_first_not_of('\0') != absl::string_view::npos) {
    return corrupt("bad padding");
  }
  return std::string(body.substr(0, len));
}

}  // namespace

absl::StatusOr<SnapshotForRestore> ReadSnapshotForRestore(
    const std::string& path, bool skip_hash_check) {
  std::ifstream f(path, std::ios::binary);
  if (!f) {
    return absl::NotFoundError(
        absl::StrCat("open ", path, ": ", GoErrno(errno)));
  }
  std::ostringstream ss;
  ss << f.rdbuf();
  std::string data = ss.str();
  // etcd seeks to the trailer first.
  if (data.size() < kShaBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("seek ", path, ": invalid argument"));
  }
  const bool has_hash = data.size() % 512 == kShaBytes;
  absl::string_view body(data);
  if (has_hash) body.remove_suffix(kShaBytes);
  const bool bolt = LooksLikeBolt(body);
  if (!has_hash && !skip_hash_check) {
    if (bolt) {
      return absl::FailedPreconditionError(
          "snapshot missing hash but --skip-hash-check=false");
    }
    return absl::DataLossError(absl::StrCat(
        "snapshot file ", GoQuote(path), " is truncated or not a snapshot: ",
        "its size (", data.size(),
        " bytes) does not leave room for its SHA-256 trailer (size - 32 must "
        "be a multiple of 512); --skip-hash-check reads it without one"));
  }
  if (has_hash && !skip_hash_check) {
    const std::string want(data.data() + body.size(), kShaBytes);
    const std::string got = Sha256(body);
    if (want != got) {
      if (bolt) {
        return absl::DataLossError(absl::StrCat(
            "expected sha256 ", GoBytes(want), ", got ", GoBytes(got)));
      }
      return absl::DataLossError(absl::StrCat(
          "snapshot file ", GoQuote(path),
          " is corrupt: its SHA-256 trailer does not match its contents"));
    }
  }
  SnapshotForRestore out;
  if (bolt) {
    out.from_etcd = true;
    absl::StatusOr<EtcdDbImport> db = ImportEtcdDb(std::string(body));
    if (!db.ok()) {
      return absl::DataLossError(absl::StrCat(
          "snapshot file ", GoQuote(path), " is corrupt: ",
          db.status().message()));
    }
    out.data = std::move(db->data);
    out.warnings = std::move(db->warnings);
    return out;
  }
  absl::StatusOr<std::string> image = DetcdImage(path, body);
  if (!image.ok()) return image.status();
  auto bad = [&](const absl::Status& s) {
    return absl::DataLossError(absl::StrCat(
        "snapshot file ", GoQuote(path), " is corrupt: ", s.message()));
  };
  absl::StatusOr<raft::Snapshot> snap = server::DecodeSnapshotImage(*image);
  if (!snap.ok()) return bad(snap.status());
  server::EtcdStateMachine sm(server::EtcdStateMachine::Options{});
  if (absl::Status s = sm.Restore(snap->data); !s.ok()) return bad(s);
  out.data.kv_image = sm.kv().Snapshot();
  out.data.lessor_image = sm.lessor().Snapshot();
  out.data.auth_image = sm.auth().Snapshot();
  return out;
}

}  // namespace detcd::ctl
