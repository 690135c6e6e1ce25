// migrate: etcdctl 3.4's v2 -> v3 key migration, as far as detcd has
// anything to migrate.
//
// etcdctl 3.4 rebuilds a stopped etcd member's v2 store from its data dir
// (the snapshot in member/snap, the raft log in member/wal, both in etcd's
// formats), passes every v2 key through a transformer (its own, or a
// program reading the keys as JSON on stdin and writing length-prefixed
// mvccpb.KeyValue on stdout) and writes the results into the member's
// bolt database, member/snap/db.
//
// detcdctl follows etcdctl up to reading the data dir: the same
// "using default transformer" line, the same errors for a transformer
// that cannot run, a missing snap or WAL directory or an empty WAL. Then:
//   - a detcd data dir (its WAL segments open with detcd's magic): detcd
//     has no v2 store, so there are no v2 keys, and detcdctl says so as
//     etcdctl does for an etcd member without v2 keys ("no v2 keys to
//     migrate", exit 0);
//   - an etcd data dir: detcdctl does not read etcd's WAL and v2 store
//     formats nor write bolt databases; it refuses with a clear error
//     (exit 1) and leaves the directory untouched. etcdctl 3.4's migrate
//     does this job.
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "cli/detcdctl/commands.h"
#include "cli/detcdctl/ctl.h"

namespace detcd::ctl {
namespace {

// Go's error text for an errno ("no such file or directory").
std::string ErrnoText(int err) {
  std::string e = std::strerror(err);
  if (!e.empty()) e[0] = absl::ascii_tolower(e[0]);
  return e;
}

// Go's filepath.Join: the non-empty parts joined by '/', then Clean
// (repeated slashes, "." and resolvable ".." removed).
std::string GoJoin(const std::vector<std::string>& parts) {
  std::vector<std::string> nonempty;
  for (const std::string& p : parts) {
    if (!p.empty()) nonempty.push_back(p);
  }
  std::string path = absl::StrJoin(nonempty, "/");
  if (path.empty()) return "";
  bool rooted = path[0] == '/';
  std::vector<std::string> out;
  for (absl::string_view e : absl::StrSplit(path, '/')) {
    if (e.empty() || e == ".") continue;
    if (e == "..") {
      if (!out.empty() && out.back() != "..") {
        out.pop_back();
      } else if (!rooted) {
        out.push_back("..");
      }
      continue;
    }
    out.emplace_back(e);
  }
  std::string clean = absl::StrCat(rooted ? "/" : "", absl::StrJoin(out, "/"));
  return clean.empty() ? "." : clean;
}

// exec.Command's checks before it starts a program: a name with a slash is
// used as is, another one is looked up in $PATH.
std::string TransformerError(const std::string& name) {
  if (name.find('/') != std::string::npos) {
    struct stat st;
    if (::stat(name.c_str(), &st) != 0) {
      return absl::StrCat("fork/exec ", name, ": ", ErrnoText(errno));
    }
    if (S_ISDIR(st.st_mode) || ::access(name.c_str(), X_OK) != 0) {
      return absl::StrCat("fork/exec ", name, ": ", ErrnoText(EACCES));
    }
    return "";
  }
  const char* path = std::getenv("PATH");
  for (absl::string_view dir : absl::StrSplit(path ? path : "", ':')) {
    std::string p = absl::StrCat(dir.empty() ? "." : dir, "/", name);
    struct stat st;
    if (::stat(p.c_str(), &st) == 0 && !S_ISDIR(st.st_mode) &&
        ::access(p.c_str(), X_OK) == 0) {
      return "";
    }
  }
  return absl::StrCat("exec: \"", name, "\": executable file not found in $PATH");
}

// The entries of dir, or Go's "open <dir>: ..." error.
bool ListDir(const std::string& dir, std::vector<std::string>* names,
             std::string* error) {
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) {
    *error = absl::StrCat("open ", dir, ": ", ErrnoText(errno));
    return false;
  }
  while (dirent* e = ::readdir(d)) {
    std::string n = e->d_name;
    if (n != "." && n != "..") names->push_back(n);
  }
  ::closedir(d);
  std::sort(names->begin(), names->end());
  return true;
}

// Whether the WAL segment at path is detcd's (engine/wal/wal.h: a 9-byte
// record head, then the segment header's magic).
bool IsDetcdWal(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  char buf[17];
  ssize_t n = ::read(fd, buf, sizeof buf);
  ::close(fd);
  return n == static_cast<ssize_t>(sizeof buf) &&
         std::memcmp(buf + 9, "detcdwal", 8) == 0;
}

void Migrate(Command& cmd, const std::vector<std::string>&) {
  const std::string data_dir = cmd.Lookup("data-dir")->s();
  const std::string transformer = cmd.Lookup("transformer")->s();
  if (!transformer.empty()) {
    std::string err = TransformerError(transformer);
    if (!err.empty()) ExitWithError(kExitError, err);
  } else {
    Out("using default transformer\n");
  }
  std::string wal_dir = cmd.Lookup("wal-dir")->s();
  if (wal_dir.empty()) wal_dir = GoJoin({data_dir, "member", "wal"});
  const std::string snap_dir = GoJoin({data_dir, "member", "snap"});
  std::vector<std::string> names;
  std::string error;
  if (!ListDir(snap_dir, &names, &error)) ExitWithError(kExitError, error);
  names.clear();
  if (!ListDir(wal_dir, &names, &error)) ExitWithError(kExitError, error);
  std::vector<std::string> wals;
  for (const std::string& n : names) {
    if (absl::EndsWith(n, ".wal")) wals.push_back(n);
  }
  if (wals.empty()) ExitWithError(kExitError, "wal: file not found");
  if (IsDetcdWal(GoJoin({wal_dir, wals.front()}))) {
    // detcd never had a v2 store.
    Out("no v2 keys to migrate\n");
    Exit(kExitSuccess);
  }
  ExitWithError(
      kExitError,
      absl::StrCat("migrate: ", wal_dir,
                   " holds an etcd WAL; detcdctl does not read etcd's v2 "
                   "store (use etcdctl 3.4's migrate on a stopped etcd "
                   "member)"));
}

}  // namespace

std::unique_ptr<Command> NewMigrateCommand() {
  auto c = std::make_unique<Command>(
      "migrate", "Migrates keys in a v2 store to a mvcc store", "", Migrate);
  c->Bool("no-ttl", 0, false, "Do not convert TTL keys");
  c->String("data-dir", 0, "", "Path to the data directory");
  c->String("wal-dir", 0, "", "Path to the WAL directory");
  c->String("transformer", 0, "",
            "Path to the user-provided transformer program");
  return c;
}

}  // namespace detcd::ctl
