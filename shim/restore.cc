#include "shim/restore.h"

#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "engine/env/env.h"
#include "engine/server/etcd_server.h"
#include "shim/config.h"
#include "shim/posix_disk.h"
#include "shim/real_clock.h"

namespace detcd::shim {
namespace {

// fmt's %q of a path (strconv.Quote), as etcd's messages quote them:
// quotes and backslashes escaped, control bytes as \xNN (printable UTF-8
// stays as it is).
std::string GoQuotePath(std::string_view s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      out.push_back('\\');
      out.push_back(static_cast<char>(c));
    } else if (c < 0x20 || c == 0x7f) {
      absl::StrAppendFormat(&out, "\\x%02x", c);
    } else {
      out.push_back(static_cast<char>(c));
    }
  }
  out.push_back('"');
  return out;
}

// Go's os.Stat(path) == nil (fileutil.Exist).
bool PathExists(const std::string& path) {
  struct stat sb;
  return ::stat(path.c_str(), &sb) == 0;
}

// Go's filepath.Join: joined, then cleaned ("./a//b/" -> "a/b").
std::string JoinClean(const std::string& dir, const std::string& rest) {
  std::string p = std::filesystem::path(dir + "/" + rest)
                      .lexically_normal()
                      .string();
  while (p.size() > 1 && p.back() == '/') p.pop_back();
  return p;
}

// The restored member is never ticked, so it sends nothing; a restore runs
// no cluster.
class NoTransport final : public env::Transport {
 public:
  void Send(uint64_t, std::string) override {}
};

absl::Status SyncPath(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return ErrnoStatus(errno, "open", dir);
  int rc = ::fsync(fd);
  int err = errno;
  ::close(fd);
  if (rc != 0) return ErrnoStatus(err, "fsync", dir);
  return absl::OkStatus();
}

void RemoveTree(const std::string& dir) {
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
}

// The founding member's data dir, built where `disk` is rooted: what
// DetcdServer::Start writes for a new member (identity, then the engine's
// bootstrap), then the adopted data, snapshotted.
absl::Status BuildMember(PosixDisk& disk, const RestorePlan& plan,
                         const RestoredData& data) {
  if (absl::Status s = WriteIdentity(disk, plan.identity); !s.ok()) return s;
  server::EtcdServerOptions so;
  so.node.id = plan.identity.member_id;
  so.node.data_dir = "member";
  for (const Identity::Founder& f : plan.identity.founders) {
    so.node.initial_voters.push_back(f.id);
    server::MemberInfo mi;
    mi.id = f.id;
    mi.name = f.name;
    mi.peer_urls = f.peer_urls;
    so.initial_members.push_back(std::move(mi));
  }
  so.cluster_id = plan.identity.cluster_id;
  so.version = kServerVersion;
  // Keep the TTLs as they were: the server applies its own minimum when it
  // loads the snapshot.
  so.lease.min_ttl_s = 1;
  if (absl::Status s = so.Validate(); !s.ok()) return s;
  RealClock clock;
  NoTransport transport;
  // Nothing this member draws reaches its files: any seed gives the same.
  env::SeededRng rng(plan.identity.member_id);
  env::Env env{&clock, &disk, &transport, &rng};
  server::EtcdServer member(env, so);
  if (absl::Status s = member.Start(); !s.ok()) return s;
  if (absl::Status s =
          member.AdoptData(data.kv_image, data.lessor_image, data.auth_image);
      !s.ok()) {
    return s;
  }
  // etcd's data dir shape, as the server makes it.
  return disk.CreateDir("member/snap");
}

}  // namespace

absl::StatusOr<RestorePlan> PlanRestore(const RestoreSpec& spec) {
  ServerConfig c;
  c.name = spec.name;
  c.initial_cluster_token = spec.initial_cluster_token;
  c.initial_advertise_peer_urls.clear();
  for (const std::string& u : spec.peer_urls) {
    absl::StatusOr<Url> url = ParseUrl(u);
    if (!url.ok()) return url.status();
    c.initial_advertise_peer_urls.push_back(*std::move(url));
  }
  // --initial-cluster through the server's own parser. The name stays
  // "default" there: the server rewrites the default cluster for a renamed
  // member (as etcd's etcdmain does), etcdctl's restore does not.
  ParseOutcome parsed =
      ParseServerConfig({"--initial-cluster=" + spec.initial_cluster}, {});
  if (parsed.action != ParseOutcome::Action::kRun) {
    return absl::InvalidArgumentError(parsed.error.empty() ? parsed.output
                                                           : parsed.error);
  }
  c.initial_cluster = parsed.config.initial_cluster;
  c.initial_cluster_error = parsed.config.initial_cluster_error;
  absl::StatusOr<Identity> id = IdentityFromConfig(c);
  if (!id.ok()) return id.status();

  RestorePlan plan;
  plan.data_dir = spec.data_dir.empty() ? spec.name + ".etcd" : spec.data_dir;
  plan.wal_dir = JoinClean(plan.data_dir, "member/wal");
  plan.snap_dir = JoinClean(plan.data_dir, "member/snap");
  plan.identity = *std::move(id);
  if (PathExists(plan.data_dir)) {
    return absl::AlreadyExistsError(
        absl::StrCat("data-dir ", GoQuotePath(plan.data_dir), " exists"));
  }
  if (!spec.wal_dir.empty() && JoinClean(spec.wal_dir, ".") != plan.wal_dir) {
    if (PathExists(spec.wal_dir)) {
      return absl::AlreadyExistsError(
          absl::StrCat("wal-dir ", GoQuotePath(spec.wal_dir), " exists"));
    }
    return absl::InvalidArgumentError(absl::StrCat(
        "detcd keeps the WAL in the data dir (", plan.wal_dir,
        "): --wal-dir ", spec.wal_dir, " is not supported"));
  }
  return plan;
}

absl::Status WriteRestoredMember(const RestorePlan& plan,
                                 const RestoredData& data) {
  std::string target = JoinClean(plan.data_dir, ".");
  std::string parent = std::filesystem::path(target).parent_path().string();
  if (parent.empty()) parent = ".";
  {
    PosixDisk root("");
    if (absl::Status s = root.CreateDir(parent); !s.ok()) return s;
  }
  if (PathExists(target)) {
    return absl::AlreadyExistsError(
        absl::StrCat("data-dir ", GoQuotePath(plan.data_dir), " exists"));
  }
  const std::string tmp =
      absl::StrCat(target, ".restore-", static_cast<int64_t>(::getpid()));
  RemoveTree(tmp);  // ours, from a run that died (same pid, reused)
  absl::Status s;
  {
    PosixDisk disk(tmp);
    s = BuildMember(disk, plan, data);
  }
  // The member's directories were synced by the engine's bootstrap; the
  // temporary dir's entry and then the rename are made durable here.
  if (s.ok()) s = SyncPath(tmp);
  if (s.ok()) s = SyncPath(parent);
  if (s.ok()) {
    // Never over an existing dir (rename(2) would replace an empty one).
    if (::renameat2(AT_FDCWD, tmp.c_str(), AT_FDCWD, target.c_str(),
                    RENAME_NOREPLACE) != 0) {
      const int err = errno;
      s = err == EEXIST ? absl::AlreadyExistsError(absl::StrCat(
                              "data-dir ", GoQuotePath(plan.data_dir),
                              " exists"))
                        : ErrnoStatus(err, "rename", tmp);
    }
  }
  if (!s.ok()) {
    RemoveTree(tmp);
    return s;
  }
  return SyncPath(parent);
}

}  // namespace detcd::shim
