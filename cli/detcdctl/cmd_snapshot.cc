// snapshot save / status / restore.
//
// The file `snapshot save` writes is what the server streams. From etcd it
// is a bolt database; from detcd it is detcd's snapshot image
// (EtcdServer::SnapshotImage), zero padding, the image length (8 bytes,
// big-endian) and SHA-256 of everything before (docs/DESIGN.md).
// `snapshot status` reads detcd's files: the hash is the KV hash of the
// image's store at its revision (what `endpoint hashkv` reported for that
// revision), total keys counts the revisions kept (as etcd's "key" bucket
// entries), total size is the file's size.
// `snapshot restore` takes either kind of file (snapshot_file.h for the
// checks, etcd_db.h for etcd's files) and writes a new cluster's member
// data dir (shim/restore.h), logging etcd's two lines around it.
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "cli/detcdctl/commands.h"
#include "cli/detcdctl/ctl.h"
#include "cli/detcdctl/gofmt.h"
#include "cli/detcdctl/snapshot_file.h"
#include "detcd/errors.h"
#include "shim/go_format.h"
#include "shim/restore.h"

namespace detcd::ctl {

using shim::GoErrno;
namespace {

namespace pb = etcdserverpb;

double EpochSeconds() {
  return std::chrono::duration<double>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// zap's production logger line (snapshot package): epoch ts.
void ZapInfo(const std::string& caller, const std::string& msg,
             const std::string& fields) {
  Err(absl::StrCat("{\"level\":\"info\",\"ts\":",
                   shim::GoFormatFloatF(EpochSeconds()), ",\"caller\":\"",
                   caller, "\",\"msg\":\"", msg, "\"", fields, "}\n"));
}

// clientv3's logger line: ISO 8601 ts.
void ZapInfoIso(const std::string& caller, const std::string& msg) {
  auto now = std::chrono::system_clock::now();
  std::time_t t = std::chrono::system_clock::to_time_t(now);
  int ms = static_cast<int>(
      std::chrono::duration_cast<std::chrono::milliseconds>(
          now.time_since_epoch())
          .count() %
      1000);
  struct tm tm;
  localtime_r(&t, &tm);
  char buf[64];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  char tz[16];
  std::strftime(tz, sizeof tz, "%z", &tm);
  std::string zone = std::string(tz) == "+0000" ? "Z" : tz;
  Err(absl::StrFormat(
      "{\"level\":\"info\",\"ts\":\"%s.%03d%s\",\"caller\":\"%s\",\"msg\":"
      "\"%s\"}\n",
      buf, ms, zone, caller, msg));
}

absl::Status Save(Command& cmd, const ClientSetup& setup,
                  const std::string& path) {
  if (setup.config.endpoints.size() != 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("snapshot must be requested to one selected node, not "
                     "multiple ",
                     GoStringSlice(setup.config.endpoints)));
  }
  auto cli = client::Client::New(setup.config);
  if (!cli.ok()) return absl::UnknownError(client::ErrorText(cli.status()));
  std::string part = path + ".part";
  FILE* f = std::fopen(part.c_str(), "wb");
  if (f == nullptr) {
    return absl::UnknownError(absl::StrCat("could not open ", part, " (open ",
                                           part, ": ", GoErrno(errno), ")"));
  }
  ::chmod(part.c_str(), 0600);
  auto cleanup = [&] { std::remove(part.c_str()); };
  ZapInfo("snapshot/v3_snapshot.go:119", "created temporary db file",
          absl::StrCat(",\"path\":", GoJsonString(part)));
  auto start = std::chrono::steady_clock::now();
  client::CallOptions o;
  if (CommandTimeoutSet(cmd)) o = CommandCtx(cmd);
  auto stream = (*cli)->OpenSnapshot(o);
  if (!stream.ok()) {
    std::fclose(f);
    cleanup();
    return absl::UnknownError(client::ErrorText(stream.status()));
  }
  ZapInfoIso("clientv3/maintenance.go:200", "opened snapshot stream; downloading");
  ZapInfo("snapshot/v3_snapshot.go:127", "fetching snapshot",
          absl::StrCat(",\"endpoint\":", GoJsonString(setup.config.endpoints[0])));
  pb::SnapshotResponse chunk;
  uint64_t size = 0;
  while ((*stream)->Read(&chunk)) {
    const std::string& b = chunk.blob();
    if (std::fwrite(b.data(), 1, b.size(), f) != b.size()) {
      std::fclose(f);
      cleanup();
      return absl::UnknownError(absl::StrCat("write ", part, ": ",
                                             GoErrno(errno)));
    }
    size += b.size();
  }
  absl::Status st = (*stream)->Finish();
  if (!st.ok()) {
    std::fclose(f);
    cleanup();
    return absl::UnknownError(client::ErrorText(st));
  }
  ZapInfoIso("clientv3/maintenance.go:208", "completed snapshot read; closing");
  std::fflush(f);
  ::fsync(::fileno(f));
  std::fclose(f);
  double took = std::chrono::duration<double>(std::chrono::steady_clock::now() -
                                              start)
                    .count();
  ZapInfo("snapshot/v3_snapshot.go:142", "fetched snapshot",
          absl::StrCat(",\"endpoint\":", GoJsonString(setup.config.endpoints[0]),
                       ",\"size\":", GoJsonString(HumanizeBytes(size)),
                       ",\"took\":", shim::GoFormatFloatF(took)));
  if (std::rename(part.c_str(), path.c_str()) != 0) {
    int e = errno;
    cleanup();
    return absl::UnknownError(absl::StrCat("could not rename ", part, " to ",
                                           path, " (rename ", part, " ", path,
                                           ": ", GoErrno(e), ")"));
  }
  ZapInfo("snapshot/v3_snapshot.go:152", "saved",
          absl::StrCat(",\"path\":", GoJsonString(path)));
  return absl::OkStatus();
}

// etcd's Restore: the flags' checks, then the file's, then the data dir
// (detcd writes it whole or not at all, where etcd may leave a partial one
// behind after a bad hash).
absl::Status Restore(const std::string& path, const shim::RestoreSpec& spec,
                     bool skip_hash_check) {
  absl::StatusOr<shim::RestorePlan> plan = shim::PlanRestore(spec);
  if (!plan.ok()) return plan.status();
  const std::string fields = absl::StrCat(
      ",\"path\":", GoJsonString(path), ",\"wal-dir\":",
      GoJsonString(plan->wal_dir), ",\"data-dir\":",
      GoJsonString(plan->data_dir), ",\"snap-dir\":",
      GoJsonString(plan->snap_dir));
  ZapInfo("snapshot/v3_snapshot.go:296", "restoring snapshot", fields);
  absl::StatusOr<SnapshotForRestore> snap =
      ReadSnapshotForRestore(path, skip_hash_check);
  if (!snap.ok()) return snap.status();
  for (const std::string& w : snap->warnings) {
    Err(absl::StrCat("{\"level\":\"warn\",\"ts\":",
                     shim::GoFormatFloatF(EpochSeconds()),
                     ",\"caller\":\"detcdctl/snapshot\",\"msg\":",
                     GoJsonString(w), "}\n"));
  }
  if (absl::Status s = shim::WriteRestoredMember(*plan, snap->data); !s.ok()) {
    return s;
  }
  ZapInfo("snapshot/v3_snapshot.go:309", "restored snapshot", fields);
  return absl::OkStatus();
}

}  // namespace

std::unique_ptr<Command> NewSnapshotCommand() {
  auto sc = std::make_unique<Command>("snapshot <subcommand>",
                                      "Manages etcd node snapshots");
  sc->Add("save <filename>",
          "Stores an etcd node backend snapshot to a given file", "",
          [](Command& cmd, const std::vector<std::string>& args) {
            if (args.size() != 1) {
              ExitWithError(kExitBadArgs, "snapshot save expects one argument");
            }
            ClientSetup setup = ClientConfigFromCmd(cmd);
            absl::Status s = Save(cmd, setup, args[0]);
            if (!s.ok()) ExitWithError(kExitInterrupted, s.message());
            Out(absl::StrCat("Snapshot saved at ", args[0], "\n"));
          });
  Command* restore = sc->Add(
      "restore <filename> [options]",
      "Restores an etcd member snapshot to an etcd directory", "",
      [](Command& cmd, const std::vector<std::string>& args) {
        if (args.size() != 1) {
          ExitWithError(kExitBadArgs,
                        "snapshot restore requires exactly one argument");
        }
        shim::RestoreSpec spec;
        spec.name = cmd.Lookup("name")->s();
        spec.data_dir = cmd.Lookup("data-dir")->s();
        spec.wal_dir = cmd.Lookup("wal-dir")->s();
        spec.initial_cluster = cmd.Lookup("initial-cluster")->s();
        spec.initial_cluster_token =
            cmd.Lookup("initial-cluster-token")->s();
        spec.peer_urls = absl::StrSplit(
            cmd.Lookup("initial-advertise-peer-urls")->s(), ',');
        absl::Status s =
            Restore(args[0], spec, cmd.Lookup("skip-hash-check")->b());
        if (!s.ok()) ExitWithError(kExitError, s.message());
      });
  restore->String("data-dir", 0, "", "Path to the data directory");
  restore->String("wal-dir", 0, "",
                  "Path to the WAL directory (use --data-dir if none given)");
  restore->String("initial-cluster", 0, "default=http://localhost:2380",
                  "Initial cluster configuration for restore bootstrap");
  restore->String("initial-cluster-token", 0, "etcd-cluster",
                  "Initial cluster token for the etcd cluster during restore "
                  "bootstrap");
  restore->String("initial-advertise-peer-urls", 0, "http://localhost:2380",
                  "List of this member's peer URLs to advertise to the rest of "
                  "the cluster");
  restore->String("name", 0, "default", "Human-readable name for this member");
  restore->Bool("skip-hash-check", 0, false,
                "Ignore snapshot integrity hash value (required if copied "
                "from data directory)");
  sc->Add("status <filename>", "Gets backend snapshot status of a given file",
          "When --write-out is set to simple, this command prints out "
          "comma-separated status lists for each endpoint.\nThe items in the "
          "lists are hash, revision, total keys, total size.\n",
          [](Command& cmd, const std::vector<std::string>& args) {
            if (args.size() != 1) {
              ExitWithError(kExitBadArgs,
                            "snapshot status requires exactly one argument");
            }
            InitDisplay(cmd);
            auto st = SnapshotFileStatus(args[0]);
            if (!st.ok()) ExitWithError(kExitError, st.status().message());
            display().DBStatus(*st);
          });
  return sc;
}

}  // namespace detcd::ctl
