#include "shim/etcd_data_dir.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "shim/etcd_db.h"
#include "shim/etcd_wal.h"
#include "shim/join.h"
#include "shim/log.h"
#include "shim/posix_disk.h"
#include "shim/restore.h"

namespace detcd::shim {
namespace {

namespace fs = std::filesystem;

bool Exists(const std::string& p) {
  struct stat sb;
  return ::stat(p.c_str(), &sb) == 0;
}

absl::Status SyncDir(const std::string& dir) {
  return PosixDisk("").SyncDir(dir);
}

absl::Status Rename(const std::string& from, const std::string& to) {
  if (::renameat2(AT_FDCWD, from.c_str(), AT_FDCWD, to.c_str(),
                  RENAME_NOREPLACE) != 0) {
    return ErrnoStatus(errno, "rename", from);
  }
  return absl::OkStatus();
}

// What the restored etcd member's WAL says: ids and founders.
absl::StatusOr<Identity> ReadRestoredWal(const std::string& wal_dir) {
  auto refuse = [&](const std::string& why) {
    return absl::FailedPreconditionError(absl::StrCat(
        "detcd: ", wal_dir, " is an etcd member's WAL that ", why,
        "; detcd starts on a data dir that `etcdctl snapshot restore` made "
        "(or restore the snapshot with detcdctl)"));
  };
  std::vector<std::string> paths;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(wal_dir, ec)) {
    uint64_t seq, index;
    const std::string name = e.path().filename().string();
    if (ParseHexPair(name, ".wal", &seq, &index)) {
      paths.push_back(e.path().string());
    }
  }
  if (ec) return ErrnoStatus(ec.value(), "open", wal_dir);
  std::sort(paths.begin(), paths.end());
  Identity id;
  uint64_t next_index = 1;
  std::string why;
  absl::Status s = ReadEtcdWalRecords(
      paths, [&](int64_t type, absl::string_view data) -> absl::Status {
        std::vector<PbField> fs;
        if (!PbFields(data, &fs)) {
          return absl::DataLossError("wal: bad record");
        }
        if (type == 1) {  // etcdserverpb.Metadata
          for (const PbField& f : fs) {
            if (f.num == 1) id.member_id = f.v;
            if (f.num == 2) id.cluster_id = f.v;
          }
          return absl::OkStatus();
        }
        if (type != 2) return absl::OkStatus();
        uint64_t etype = 0, term = 0, index = 0;
        absl::string_view edata;
        for (const PbField& f : fs) {
          if (f.num == 1) etype = f.v;
          if (f.num == 2) term = f.v;
          if (f.num == 3) index = f.v;
          if (f.num == 4) edata = f.bytes;
        }
        // raftpb.ConfChange {1 ID, 2 Type (0 AddNode), 3 NodeID, 4 Context}
        std::vector<PbField> cc;
        uint64_t cc_type = 0, node = 0;
        absl::string_view context;
        if (etype != 1 || term != 1 || index != next_index ||
            !PbFields(edata, &cc)) {
          why = "holds entries of its own";
          return absl::CancelledError();
        }
        for (const PbField& f : cc) {
          if (f.num == 2) cc_type = f.v;
          if (f.num == 3) node = f.v;
          if (f.num == 4) context = f.bytes;
        }
        auto members = ParsePeerMembersJson(absl::StrCat("[", context, "]"));
        if (cc_type != 0 || !members.ok() || members->size() != 1 ||
            (*members)[0].id != node) {
          why = "holds entries of its own";
          return absl::CancelledError();
        }
        const server::MemberInfo& m = (*members)[0];
        id.founders.push_back({m.id, m.name, m.peer_urls});
        ++next_index;
        return absl::OkStatus();
      });
  if (absl::IsCancelled(s)) return refuse(why);
  if (!s.ok()) return s;
  if (paths.empty() || id.member_id == 0 || id.founders.empty()) {
    return refuse("names no member");
  }
  bool self = false;
  for (const Identity::Founder& f : id.founders) {
    self = self || f.id == id.member_id;
  }
  if (!self) return refuse("does not name its own member among the founders");
  return id;
}

}  // namespace

absl::StatusOr<bool> ConvertEtcdRestoredDataDir(const std::string& data_dir) {
  const std::string dd = data_dir.empty() ? "." : data_dir;
  const std::string member = dd + "/member";
  const std::string kept = dd + "/member.etcd";
  if (Exists(dd + "/" + kIdentityFile)) return false;
  std::string src;
  if (Exists(member + "/snap/db") && Exists(member + "/wal")) {
    src = member;
  } else if (!Exists(member) && Exists(kept + "/snap/db")) {
    src = kept;  // a conversion that stopped between its renames
  } else {
    return false;
  }
  absl::StatusOr<Identity> id = ReadRestoredWal(src + "/wal");
  if (!id.ok()) return id.status();
  std::string db;
  {
    std::ifstream f(src + "/snap/db", std::ios::binary);
    if (!f) return ErrnoStatus(errno, "open", src + "/snap/db");
    std::ostringstream ss;
    ss << f.rdbuf();
    db = ss.str();
  }
  absl::StatusOr<EtcdDbImport> data = ImportEtcdDb(std::move(db));
  if (!data.ok()) return data.status();
  for (const std::string& w : data->warnings) DLOG_WARN(w);

  RestorePlan plan;
  plan.data_dir = absl::StrCat(dd, ".detcd-", static_cast<int64_t>(getpid()));
  plan.wal_dir = plan.data_dir + "/member/wal";
  plan.snap_dir = plan.data_dir + "/member/snap";
  plan.identity = *id;
  fs::remove_all(plan.data_dir);  // ours, from a run that died
  if (absl::Status s = WriteRestoredMember(plan, data->data); !s.ok()) {
    return s;
  }
  if (src == member) {
    if (absl::Status s = Rename(member, kept); !s.ok()) return s;
    if (absl::Status s = SyncDir(dd); !s.ok()) return s;
  }
  if (absl::Status s = Rename(plan.data_dir + "/member", member); !s.ok()) {
    return s;
  }
  if (absl::Status s = SyncDir(dd); !s.ok()) return s;
  fs::remove_all(plan.data_dir);
  DLOG_INFO("converted a data dir made by etcdctl snapshot restore",
            {{"data-dir", dd},
             {"etcd-files", kept},
             {"local-member-id", absl::StrCat(absl::Hex(id->member_id))},
             {"cluster-id", absl::StrCat(absl::Hex(id->cluster_id))},
             {"revision", data->revision},
             {"leases", data->leases}});
  return true;
}

}  // namespace detcd::shim
