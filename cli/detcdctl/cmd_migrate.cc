// migrate: etcdctl 3.4's v2 -> v3 key migration of a stopped etcd
// member (its own data dir layout and formats; etcd_v2.h).
//
// As etcdctl: the transformer is started (or "using default transformer"
// printed), the v2 store rebuilt from member/snap and member/wal (printing
// the lines etcd's membership code logs), the member's bolt database
// member/snap/db opened (waiting for etcd to release its lock), then every
// v2 key under /1 goes through the transformer (by default: key without
// the /1 prefix, value, create and mod revision = the v2 created and
// modified index, version 1; directories skipped; --no-ttl skips keys with
// a TTL) into the "key" bucket at its mod revision, and the "meta"
// bucket's consistent_index is raised to the last raft index, so etcd
// serves the keys over v3 when it starts again.
//
// The database is rewritten whole (a compact copy with the new keys, as
// `defrag` would leave it) rather than updated in place, under etcd's own
// lock. A detcd data dir (its WAL opens with detcd's magic) has no v2
// store: "no v2 keys to migrate", as etcdctl says for an etcd member
// without v2 keys.
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/wait.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

extern char** environ;

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "cli/detcdctl/commands.h"
#include "cli/detcdctl/ctl.h"
#include "cli/detcdctl/etcd_v2.h"
#include "cli/detcdctl/gofmt.h"
#include "cli/detcdctl/json.h"
#include "mvccpb/kv.pb.h"
#include "shim/bolt.h"
#include "shim/go_format.h"

namespace detcd::ctl {

using shim::BoltReader;
using shim::GoErrno;
using shim::WriteBolt;

namespace {

// exec.Command's checks before it starts a program: a name with a slash is
// used as is, another one is looked up in $PATH.
std::string TransformerError(const std::string& name) {
  if (name.find('/') != std::string::npos) {
    struct stat st;
    if (::stat(name.c_str(), &st) != 0) {
      return absl::StrCat("fork/exec ", name, ": ", GoErrno(errno));
    }
    if (S_ISDIR(st.st_mode) || ::access(name.c_str(), X_OK) != 0) {
      return absl::StrCat("fork/exec ", name, ": ", GoErrno(EACCES));
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
    *error = absl::StrCat("open ", dir, ": ", GoErrno(errno));
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

using etcdv2::GoJoin;
using etcdv2::Node;

// NodeExtern's ttl: whole seconds left, rounded up (negative once expired).
int64_t Ttl(const Node& n, int64_t now_ns) {
  if (n.expire_ns == 0) return 0;
  int64_t left = n.expire_ns - now_ns;
  int64_t ttl = left / 1000000000;
  if (left % 1000000000 > 0) ++ttl;
  return ttl;
}

// writeKeys' walk: /1 and everything under it in key order, each node's
// key without the "/1" prefix ("/" for /1 itself).
void Walk(const Node& n, bool no_ttl, int64_t now_ns,
          const std::function<void(const Node&, const std::string&,
                                   int64_t)>& fn) {
  std::string key = n.path.size() > 2 ? n.path.substr(2) : "/";
  int64_t ttl = Ttl(n, now_ns);
  if (!no_ttl || ttl == 0) fn(n, key, ttl);
  for (const auto& [_, c] : n.children) Walk(*c, no_ttl, now_ns, fn);
}

// The node as json.Marshal shows etcd's v2store.NodeExtern.
std::string NodeJson(const Node& n, const std::string& key, int64_t ttl) {
  Json j = Json::object();
  j["key"] = key;
  if (!n.dir) j["value"] = n.value;
  if (n.dir) j["dir"] = true;
  if (n.expire_ns != 0) {
    j["expiration"] = absl::FormatTime("%Y-%m-%dT%H:%M:%E*SZ",
                                       absl::FromUnixNanos(n.expire_ns),
                                       absl::UTCTimeZone());
  }
  if (ttl != 0) j["ttl"] = ttl;
  // Both omitempty: the /1 directory etcd's store starts with has 0.
  if (n.modified != 0) j["modifiedIndex"] = n.modified;
  if (n.created != 0) j["createdIndex"] = n.created;
  return DumpGoJson(j);
}

std::string RevisionKey(int64_t main) {
  std::string k(17, '\0');
  for (int i = 0; i < 8; ++i) {
    k[i] = static_cast<char>(static_cast<uint64_t>(main) >> (56 - 8 * i));
  }
  k[8] = '_';
  return k;
}

// Runs the user's transformer: the nodes' JSON on its stdin, length
// (8 bytes, little endian) + mvccpb.KeyValue records from its stdout.
// Returns Go's error text for a failure ("exit status 1").
std::string RunTransformer(const std::string& program,
                           const std::string& input,
                           std::vector<mvccpb::KeyValue>* kvs) {
  int in[2], out[2];
  if (::pipe2(in, O_CLOEXEC) != 0 || ::pipe2(out, O_CLOEXEC) != 0) {
    return GoErrno(errno);
  }
  std::fflush(stdout);
  // A transformer that exits early must not kill us through SIGPIPE.
  ::signal(SIGPIPE, SIG_IGN);
  pid_t pid = ::fork();
  if (pid < 0) return GoErrno(errno);
  if (pid == 0) {
    ::dup2(in[0], 0);
    ::dup2(out[1], 1);
    char* argv[] = {const_cast<char*>(program.c_str()), nullptr};
    ::execvp(program.c_str(), argv);
    ::_exit(127);
  }
  ::close(in[0]);
  ::close(out[1]);
  std::thread writer([&] {
    size_t off = 0;
    while (off < input.size()) {
      ssize_t n = ::write(in[1], input.data() + off, input.size() - off);
      if (n <= 0) break;
      off += static_cast<size_t>(n);
    }
    ::close(in[1]);
  });
  std::string got;
  char buf[65536];
  ssize_t n;
  while ((n = ::read(out[0], buf, sizeof buf)) > 0) got.append(buf, n);
  ::close(out[0]);
  writer.join();
  int status = 0;
  ::waitpid(pid, &status, 0);
  // readKeys: records until the stream ends or stops making sense.
  absl::string_view rest(got);
  while (rest.size() >= 8) {
    uint64_t len;
    std::memcpy(&len, rest.data(), 8);
    if (len > rest.size() - 8) break;
    mvccpb::KeyValue kv;
    if (!kv.ParseFromArray(rest.data() + 8, static_cast<int>(len))) break;
    kvs->push_back(kv);
    rest.remove_prefix(8 + len);
  }
  if (WIFEXITED(status) && WEXITSTATUS(status) != 0) {
    return absl::StrCat("exit status ", WEXITSTATUS(status));
  }
  if (WIFSIGNALED(status)) {
    std::string sig = strsignal(WTERMSIG(status));
    if (!sig.empty()) sig[0] = absl::ascii_tolower(sig[0]);
    return absl::StrCat("signal: ", sig);
  }
  return "";
}

void Migrate(Command& cmd, const std::vector<std::string>&) {
  const std::string data_dir = cmd.Lookup("data-dir")->s();
  const std::string transformer = cmd.Lookup("transformer")->s();
  const bool no_ttl = cmd.Lookup("no-ttl")->b();
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
  if (!wals.empty() && IsDetcdWal(GoJoin({wal_dir, wals.front()}))) {
    // detcd never had a v2 store.
    Out("no v2 keys to migrate\n");
    Exit(kExitSuccess);
  }

  std::vector<std::string> log;
  auto rebuilt = etcdv2::RebuildStore(snap_dir, wal_dir, &log);
  for (const std::string& l : log) Out(l + "\n");
  if (!rebuilt.ok()) ExitWithError(kExitError, rebuilt.status().message());

  // prepareBackend: etcd's database, under bbolt's lock.
  const std::string db_path = GoJoin({data_dir, "member", "snap", "db"});
  int fd = ::open(db_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) {
    ExitWithError(kExitError,
                  absl::StrCat("open ", db_path, ": ", GoErrno(errno)));
  }
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    absl::SleepFor(absl::Seconds(1));
    if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
      Err(absl::StrCat("waiting for etcd to close and release its lock on ",
                       GoQuote(db_path), "\n"));
      ::flock(fd, LOCK_EX);
    }
  }
  std::string db;
  {
    char buf[65536];
    ssize_t n;
    while ((n = ::read(fd, buf, sizeof buf)) > 0) db.append(buf, n);
  }
  std::map<std::string, std::map<std::string, std::string>> buckets;
  if (!db.empty()) {
    auto reader = BoltReader::Open(db);
    absl::Status st = reader.ok() ? reader->ForEach(
        [&](absl::string_view b) { buckets[std::string(b)]; },
        [&](absl::string_view b, absl::string_view k, absl::string_view v) {
          buckets[std::string(b)][std::string(k)] = std::string(v);
        }) : reader.status();
    if (!st.ok()) {
      ExitWithError(kExitError, absl::StrCat(db_path, ": ", st.message()));
    }
  }
  buckets["key"];
  buckets["meta"];

  Node* keys = nullptr;
  auto it = rebuilt->root->children.find("1");
  if (it != rebuilt->root->children.end()) keys = it->second.get();
  if (keys == nullptr) {
    // bbolt initialises a new file when it opens it; nothing else is
    // written then.
    if (db.empty()) {
      std::string image = WriteBolt({}, 1);
      if (::pwrite(fd, image.data(), image.size(), 0) !=
          static_cast<ssize_t>(image.size())) {
        ExitWithError(kExitError,
                      absl::StrCat("write ", db_path, ": ", GoErrno(errno)));
      }
    }
    Out("no v2 keys to migrate\n");
    Exit(kExitSuccess);
  }
  const int64_t now_ns = absl::ToUnixNanos(absl::Now());
  std::vector<mvccpb::KeyValue> kvs;
  if (transformer.empty()) {
    Walk(*keys, no_ttl, now_ns, [&](const Node& n, const std::string& key,
                                    int64_t) {
      if (n.dir) return;
      mvccpb::KeyValue kv;
      kv.set_key(key);
      kv.set_value(n.value);
      kv.set_create_revision(static_cast<int64_t>(n.created));
      kv.set_mod_revision(static_cast<int64_t>(n.modified));
      kv.set_version(1);
      kvs.push_back(kv);
    });
  } else {
    std::string input;
    Walk(*keys, no_ttl, now_ns,
         [&](const Node& n, const std::string& key, int64_t ttl) {
           input += NodeJson(n, key, ttl);
         });
    std::string err = RunTransformer(transformer, input, &kvs);
    if (!err.empty()) {
      Out("failed to transform keys\n");
      ExitWithError(kExitError, err);
    }
  }
  for (const mvccpb::KeyValue& kv : kvs) {
    buckets["key"][RevisionKey(kv.mod_revision())] = kv.SerializeAsString();
  }
  // UpdateConsistentIndex: only ever raised.
  std::string& ci = buckets["meta"]["consistent_index"];
  uint64_t old = 0;
  if (ci.size() == 8) {
    for (char c : ci) old = (old << 8) | static_cast<unsigned char>(c);
  }
  if (rebuilt->raft_index > old) {
    ci.assign(8, '\0');
    for (int i = 0; i < 8; ++i) {
      ci[i] = static_cast<char>(rebuilt->raft_index >> (56 - 8 * i));
    }
  }
  std::string image = WriteBolt(buckets, 2);
  // Rewritten in place under the lock (bbolt's file, bbolt's mode).
  if (::ftruncate(fd, 0) != 0 ||
      ::pwrite(fd, image.data(), image.size(), 0) !=
          static_cast<ssize_t>(image.size()) ||
      ::fsync(fd) != 0) {
    ExitWithError(kExitError,
                  absl::StrCat("write ", db_path, ": ", GoErrno(errno)));
  }
  ::close(fd);
  Out("finished transforming keys\n");
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
