#include "chaos/cluster.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace detcd::chaos {
namespace {

constexpr int kClientPort = 2379;
constexpr int kPeerPort = 2380;
constexpr char kOwnerDir[] = "/tmp/detcd-chaos-owners";

// Child side of a fork: only async-signal-safe calls until exec.
[[noreturn]] void ExecChild(char* const* argv, int out_fd,
                            bool die_with_parent) {
  if (die_with_parent) prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
  // detcd-chaos blocks SIGINT/SIGTERM for its signal thread; the mask is
  // inherited through exec, and a member must take its signals.
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);
  signal(SIGPIPE, SIG_DFL);
  int devnull = open("/dev/null", O_RDONLY);
  if (devnull >= 0) dup2(devnull, 0);
  if (out_fd >= 0) {
    dup2(out_fd, 1);
    dup2(out_fd, 2);
  }
  execvp(argv[0], argv);
  _exit(127);
}

std::vector<char*> CArgv(std::vector<std::string>& argv) {
  std::vector<char*> out;
  for (std::string& s : argv) out.push_back(s.data());
  out.push_back(nullptr);
  return out;
}

bool ProcessAlive(pid_t pid) {
  return pid > 0 && (kill(pid, 0) == 0 || errno == EPERM);
}

// Network namespaces whose name is <prefix>m<digits>, by prefix.
std::vector<std::string> ListNamespaces() {
  std::vector<std::string> out;
  CommandResult r = RunCommand({"ip", "netns", "list"});
  if (r.exit_code != 0) return out;
  for (absl::string_view line : absl::StrSplit(r.output, '\n')) {
    line = absl::StripAsciiWhitespace(line);
    if (line.empty()) continue;
    out.emplace_back(line.substr(0, line.find(' ')));
  }
  return out;
}

std::vector<std::string> ListLinks() {
  std::vector<std::string> out;
  CommandResult r = RunCommand({"ip", "-o", "link", "show"});
  if (r.exit_code != 0) return out;
  for (absl::string_view line : absl::StrSplit(r.output, '\n')) {
    // "12: dc12v0@if11: <BROADCAST,...": the name sits between ": " and ":"
    // or "@".
    std::vector<absl::string_view> f = absl::StrSplit(line, ": ");
    if (f.size() < 2) continue;
    absl::string_view name = f[1];
    name = name.substr(0, name.find('@'));
    out.emplace_back(name);
  }
  return out;
}

// "dc1234" from "dc1234m0", "dc1234br", "dc1234v2"; "" if not ours.
std::string PrefixOf(absl::string_view name) {
  if (!absl::StartsWith(name, "dc")) return "";
  size_t i = 2;
  while (i < name.size() && absl::ascii_isdigit(name[i])) ++i;
  if (i == 2 || i >= name.size()) return "";
  absl::string_view rest = name.substr(i);
  if (rest != "br" && !((rest[0] == 'm' || rest[0] == 'v') && rest.size() > 1 &&
                        absl::ascii_isdigit(rest[1]))) {
    return "";
  }
  return std::string(name.substr(0, i));
}

// An owner file holds the pid of the run that made the prefix's resources.
bool OwnerAlive(const std::string& prefix) {
  std::ifstream f(absl::StrCat(kOwnerDir, "/", prefix));
  pid_t pid = 0;
  if (!(f >> pid)) return false;
  return pid != getpid() && ProcessAlive(pid);
}

bool HasOwnerFile(const std::string& prefix) {
  return std::filesystem::exists(absl::StrCat(kOwnerDir, "/", prefix));
}

void KillNamespacePids(const std::string& ns) {
  CommandResult r = RunCommand({"ip", "netns", "pids", ns});
  for (absl::string_view w :
       absl::StrSplit(r.output, absl::ByAnyChar(" \n"), absl::SkipEmpty())) {
    int pid = 0;
    if (absl::SimpleAtoi(w, &pid) && pid > 1 && pid != getpid()) {
      kill(pid, SIGKILL);
    }
  }
}

}  // namespace

CommandResult RunCommand(const std::vector<std::string>& argv_in,
                         absl::Duration timeout) {
  CommandResult res;
  std::vector<std::string> argv = argv_in;
  std::vector<char*> cargv = CArgv(argv);
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) {
    res.output = absl::StrCat("pipe: ", strerror(errno));
    return res;
  }
  const pid_t pid = fork();
  if (pid < 0) {
    close(fds[0]);
    close(fds[1]);
    res.output = absl::StrCat("fork: ", strerror(errno));
    return res;
  }
  if (pid == 0) ExecChild(cargv.data(), fds[1], /*die_with_parent=*/true);
  close(fds[1]);
  const absl::Time deadline = absl::Now() + timeout;
  bool killed = false;
  char buf[4096];
  for (;;) {
    const int64_t left_ms = absl::ToInt64Milliseconds(deadline - absl::Now());
    if (left_ms <= 0) {
      kill(pid, SIGKILL);
      killed = true;
      break;
    }
    pollfd p{fds[0], POLLIN, 0};
    const int n =
        poll(&p, 1, static_cast<int>(std::min<int64_t>(left_ms, 200)));
    if (n < 0 && errno != EINTR) break;
    if (n <= 0) continue;
    const ssize_t got = read(fds[0], buf, sizeof buf);
    if (got > 0) {
      res.output.append(buf, static_cast<size_t>(got));
    } else if (got == 0 || errno != EINTR) {
      break;  // EOF: the child closed its end (exited, normally)
    }
  }
  close(fds[0]);
  int status = 0;
  // After EOF the child is exiting; bound the reap all the same.
  for (int i = 0; i < 200; ++i) {
    const pid_t w = waitpid(pid, &status, WNOHANG);
    if (w == pid) break;
    if (w < 0) break;
    if (i == 100 || absl::Now() > deadline) {
      kill(pid, SIGKILL);
      killed = true;
    }
    usleep(10'000);
  }
  if (!killed && WIFEXITED(status)) res.exit_code = WEXITSTATUS(status);
  if (killed) absl::StrAppend(&res.output, "\n(killed at its deadline)");
  return res;
}

NetnsCluster::NetnsCluster(ClusterOptions o) : o_(std::move(o)) {
  if (o_.prefix.empty()) o_.prefix = absl::StrCat("dc", getpid() % 10000);
  int n = 0;
  (void)absl::SimpleAtoi(o_.prefix.substr(2), &n);
  n %= 10000;
  net_a_ = 100 + n / 100;  // 10.100.0.0 - 10.199.99.0
  net_b_ = n % 100;
  for (int i = 0; i < o_.members; ++i) members_.emplace_back();
}

std::string NetnsCluster::ns(int i) const {
  return absl::StrCat(o_.prefix, "m", i);
}
std::string NetnsCluster::ip(int i) const {
  return absl::StrCat("10.", net_a_, ".", net_b_, ".", i + 1);
}
std::string NetnsCluster::client_ip() const {
  return absl::StrCat("10.", net_a_, ".", net_b_, ".254");
}
std::string NetnsCluster::endpoint(int i) const {
  return absl::StrCat(ip(i), ":", kClientPort);
}
std::vector<std::string> NetnsCluster::endpoints() const {
  std::vector<std::string> out;
  for (int i = 0; i < size(); ++i) out.push_back(endpoint(i));
  return out;
}
std::string NetnsCluster::log_path(int i) const {
  return absl::StrCat(dir_, "/m", i, ".log");
}
std::string NetnsCluster::data_dir(int i) const {
  return absl::StrCat(dir_, "/m", i, ".etcd");
}

absl::StatusOr<std::unique_ptr<NetnsCluster>> NetnsCluster::Create(
    ClusterOptions o) {
  if (o.members < 1 || o.members > 9) {
    return absl::InvalidArgumentError("members must be 1..9");
  }
  if (access(o.server.c_str(), X_OK) != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("server binary ", o.server, " is not executable"));
  }
  std::unique_ptr<NetnsCluster> c(new NetnsCluster(std::move(o)));
  std::string tmpl =
      absl::StrCat(std::filesystem::temp_directory_path().string(),
                   "/detcd-chaos-", c->o_.prefix, "-XXXXXX");
  if (mkdtemp(tmpl.data()) == nullptr) {
    return absl::InternalError(absl::StrCat("mkdtemp: ", strerror(errno)));
  }
  c->dir_ = tmpl;
  std::filesystem::create_directories(kOwnerDir);
  {
    std::ofstream f(absl::StrCat(kOwnerDir, "/", c->o_.prefix));
    f << getpid() << "\n";
  }
  if (absl::Status s = c->SetUpNetwork(); !s.ok()) {
    c->Destroy(/*keep_dir=*/false);
    return s;
  }
  for (int i = 0; i < c->size(); ++i) {
    const std::string d = c->data_dir(i);
    std::filesystem::create_directories(d);
    if (c->o_.tmpfs_bytes > 0) {
      const std::string opts =
          absl::StrCat("size=", c->o_.tmpfs_bytes, ",mode=0700");
      if (mount("tmpfs", d.c_str(), "tmpfs", 0, opts.c_str()) != 0) {
        const std::string err = strerror(errno);
        c->Destroy(false);
        return absl::InternalError(
            absl::StrCat("mount tmpfs on ", d, ": ", err));
      }
      c->mounts_.push_back(d);
    }
  }
  return c;
}

absl::Status NetnsCluster::SetUpNetwork() {
  const std::string br = absl::StrCat(o_.prefix, "br");
  // The first namespace tells whether we may make any: no privilege is a
  // skip, not an error.
  CommandResult r = RunCommand({"ip", "netns", "add", ns(0)});
  if (r.exit_code != 0) {
    return absl::PermissionDeniedError(absl::StrCat(
        "cannot create a network namespace (root or CAP_NET_ADMIN needed): ",
        absl::StripAsciiWhitespace(r.output)));
  }
  std::vector<std::vector<std::string>> cmds = {
      {"ip", "link", "add", br, "type", "bridge"},
      {"ip", "addr", "add", client_ip() + "/24", "dev", br},
      {"ip", "link", "set", br, "up"},
  };
  for (int i = 0; i < size(); ++i) {
    const std::string v = absl::StrCat(o_.prefix, "v", i);
    const std::string p = absl::StrCat(o_.prefix, "p", i);
    if (i > 0) cmds.push_back({"ip", "netns", "add", ns(i)});
    cmds.push_back({"ip", "link", "add", v, "type", "veth", "peer", "name", p});
    cmds.push_back({"ip", "link", "set", v, "master", br});
    cmds.push_back({"ip", "link", "set", v, "up"});
    cmds.push_back({"ip", "link", "set", p, "netns", ns(i)});
    cmds.push_back({"ip", "-n", ns(i), "link", "set", p, "name", "eth0"});
    cmds.push_back(
        {"ip", "-n", ns(i), "addr", "add", ip(i) + "/24", "dev", "eth0"});
    cmds.push_back({"ip", "-n", ns(i), "link", "set", "eth0", "up"});
    cmds.push_back({"ip", "-n", ns(i), "link", "set", "lo", "up"});
  }
  for (const auto& cmd : cmds) {
    r = RunCommand(cmd);
    if (r.exit_code != 0) {
      return absl::InternalError(
          absl::StrCat("`", absl::StrJoin(cmd, " "), "` failed: ", r.output));
    }
  }
  return absl::OkStatus();
}

std::vector<std::string> NetnsCluster::MemberArgv(int i) const {
  std::vector<std::string> peers;
  for (int k = 0; k < size(); ++k) {
    peers.push_back(absl::StrCat("m", k, "=http://", ip(k), ":", kPeerPort));
  }
  const std::string client_url =
      absl::StrCat("http://", ip(i), ":", kClientPort);
  const std::string peer_url = absl::StrCat("http://", ip(i), ":", kPeerPort);
  std::vector<std::string> argv = {"ip",
                                   "netns",
                                   "exec",
                                   ns(i),
                                   o_.server,
                                   "--name",
                                   absl::StrCat("m", i),
                                   "--data-dir",
                                   data_dir(i),
                                   "--listen-client-urls",
                                   client_url,
                                   "--advertise-client-urls",
                                   client_url,
                                   "--listen-peer-urls",
                                   peer_url,
                                   "--initial-advertise-peer-urls",
                                   peer_url,
                                   "--initial-cluster",
                                   absl::StrJoin(peers, ","),
                                   "--initial-cluster-token",
                                   o_.prefix,
                                   "--initial-cluster-state",
                                   "new",
                                   "--heartbeat-interval",
                                   absl::StrCat(o_.heartbeat_ms),
                                   "--election-timeout",
                                   absl::StrCat(o_.election_ms)};
  argv.insert(argv.end(), o_.extra_flags.begin(), o_.extra_flags.end());
  return argv;
}

absl::Status NetnsCluster::Start(int i) {
  Member& m = members_[i];
  if (m.pid != 0) {
    return absl::FailedPreconditionError(absl::StrCat("m", i, " is running"));
  }
  std::vector<std::string> argv = MemberArgv(i);
  const int log = open(log_path(i).c_str(),
                       O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (log < 0) {
    return absl::InternalError(absl::StrCat("open log: ", strerror(errno)));
  }
  ++m.starts;
  const std::string banner =
      absl::StrCat("\n===== detcd-chaos: start #", m.starts, ": ",
                   absl::StrJoin(argv, " "), "\n");
  (void)!write(log, banner.data(), banner.size());
  std::vector<char*> cargv = CArgv(argv);
  const pid_t pid = fork();
  if (pid < 0) {
    close(log);
    return absl::InternalError(absl::StrCat("fork: ", strerror(errno)));
  }
  // `ip netns exec` switches namespaces and execs the server in the same
  // process, so pid is the member's own.
  if (pid == 0) ExecChild(cargv.data(), log, /*die_with_parent=*/true);
  close(log);
  m.pid = pid;
  m.paused = false;
  m.emergency_pid.store(pid);
  return absl::OkStatus();
}

absl::Status NetnsCluster::StartAll() {
  for (int i = 0; i < size(); ++i) {
    if (members_[i].pid == 0) {
      if (absl::Status s = Start(i); !s.ok()) return s;
    }
  }
  return absl::OkStatus();
}

void NetnsCluster::Kill(int i) {
  Member& m = members_[i];
  if (m.pid == 0) return;
  kill(m.pid, SIGKILL);
  int status = 0;
  // SIGKILL of a stopped process works too; the reap is bounded all the
  // same (a process in uninterruptible sleep takes a moment).
  for (int k = 0; k < 500; ++k) {
    const pid_t w = waitpid(m.pid, &status, WNOHANG);
    if (w == m.pid || w < 0) break;
    usleep(10'000);
  }
  m.emergency_pid.store(0);
  m.pid = 0;
  m.paused = false;
}

void NetnsCluster::Pause(int i) {
  Member& m = members_[i];
  if (m.pid == 0 || m.paused) return;
  kill(m.pid, SIGSTOP);
  m.paused = true;
}

void NetnsCluster::Resume(int i) {
  Member& m = members_[i];
  if (m.pid == 0 || !m.paused) return;
  kill(m.pid, SIGCONT);
  m.paused = false;
}

bool NetnsCluster::running(int i) const { return members_[i].pid != 0; }

std::vector<std::string> NetnsCluster::ReapExited() {
  std::vector<std::string> out;
  for (int i = 0; i < size(); ++i) {
    Member& m = members_[i];
    if (m.pid == 0) continue;
    int status = 0;
    if (waitpid(m.pid, &status, WNOHANG) != m.pid) continue;
    out.push_back(
        WIFSIGNALED(status)
            ? absl::StrCat("m", i, " died of signal ", WTERMSIG(status))
            : absl::StrCat("m", i, " exited with status ",
                           WEXITSTATUS(status)));
    m.emergency_pid.store(0);
    m.pid = 0;
    m.paused = false;
  }
  return out;
}

bool NetnsCluster::Healthy(int i, absl::Duration timeout) const {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(kClientPort);
  inet_pton(AF_INET, ip(i).c_str(), &a.sin_addr);
  const absl::Time deadline = absl::Now() + timeout;
  auto wait_for = [&](short ev) {
    const int64_t ms = absl::ToInt64Milliseconds(deadline - absl::Now());
    if (ms <= 0) return false;
    pollfd p{fd, ev, 0};
    return poll(&p, 1, static_cast<int>(ms)) == 1 && (p.revents & ev) != 0;
  };
  bool ok = false;
  std::string resp;
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 ||
      errno == EINPROGRESS) {
    int err = 0;
    socklen_t len = sizeof err;
    if (wait_for(POLLOUT) &&
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err == 0) {
      const std::string req =
          absl::StrCat("GET /health HTTP/1.1\r\nHost: ", ip(i),
                       "\r\nConnection: close\r\n\r\n");
      if (send(fd, req.data(), req.size(), MSG_NOSIGNAL) ==
          static_cast<ssize_t>(req.size())) {
        char buf[2048];
        while (wait_for(POLLIN)) {
          const ssize_t n = recv(fd, buf, sizeof buf, 0);
          if (n <= 0) break;
          resp.append(buf, static_cast<size_t>(n));
          if (resp.size() > 65536) break;
        }
        // {"health":"true"} from both (detcd adds 3.5's "reason" only when
        // asked with a 3.5 parameter).
        ok = absl::StrContains(resp, "\"health\":\"true\"") ||
             absl::StrContains(resp, "\"health\": \"true\"");
      }
    }
  }
  close(fd);
  return ok;
}

absl::Status NetnsCluster::WaitHealthy(const std::vector<int>& which,
                                       absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  std::set<int> pending(which.begin(), which.end());
  while (!pending.empty()) {
    for (auto it = pending.begin(); it != pending.end();) {
      if (!running(*it)) {
        return absl::UnavailableError(
            absl::StrCat("m", *it, " is not running (log ", log_path(*it),
                         "):\n", LogTail(*it)));
      }
      it = Healthy(*it) ? pending.erase(it) : std::next(it);
    }
    if (pending.empty()) break;
    for (const std::string& e : ReapExited()) {
      return absl::UnavailableError(
          absl::StrCat(e, " while waiting for health"));
    }
    if (absl::Now() > deadline) {
      std::vector<std::string> names;
      for (int i : pending) names.push_back(absl::StrCat("m", i));
      return absl::DeadlineExceededError(
          absl::StrCat("not healthy after ", absl::FormatDuration(timeout),
                       ": ", absl::StrJoin(names, ",")));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  return absl::OkStatus();
}

CommandResult NetnsCluster::InNamespace(int i,
                                        const std::vector<std::string>& argv,
                                        absl::Duration timeout) const {
  std::vector<std::string> full = {"ip", "netns", "exec", ns(i)};
  full.insert(full.end(), argv.begin(), argv.end());
  return RunCommand(full, timeout);
}

std::string NetnsCluster::LogTail(int i, int n) const {
  std::ifstream f(log_path(i));
  std::vector<std::string> lines;
  std::string line;
  while (std::getline(f, line)) {
    lines.push_back(line);
    if (lines.size() > static_cast<size_t>(4 * n)) {
      lines.erase(lines.begin(), lines.end() - n);
    }
  }
  if (lines.size() > static_cast<size_t>(n)) {
    lines.erase(lines.begin(), lines.end() - n);
  }
  return absl::StrJoin(lines, "\n");
}

void NetnsCluster::EmergencyKill() {
  for (Member& m : members_) {
    const pid_t pid = m.emergency_pid.load();
    if (pid > 0) kill(pid, SIGKILL);
  }
}

void NetnsCluster::Destroy(bool keep_dir) {
  if (destroyed_) return;
  destroyed_ = true;
  for (int i = 0; i < size(); ++i) Kill(i);
  for (int i = 0; i < size(); ++i) {
    KillNamespacePids(ns(i));  // anything else started inside (none, normally)
    RunCommand({"ip", "netns", "del", ns(i)});
  }
  for (int i = 0; i < size(); ++i) {
    RunCommand({"ip", "link", "del", absl::StrCat(o_.prefix, "v", i)});
  }
  RunCommand({"ip", "link", "del", absl::StrCat(o_.prefix, "br")});
  // The logs are outside the tmpfs data dirs; a kept run loses only the
  // data with the mount.
  for (const std::string& m : mounts_) umount2(m.c_str(), MNT_DETACH);
  mounts_.clear();
  if (!keep_dir && !dir_.empty()) {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  std::error_code ec;
  std::filesystem::remove(absl::StrCat(kOwnerDir, "/", o_.prefix), ec);
}

NetnsCluster::~NetnsCluster() { Destroy(/*keep_dir=*/false); }

std::vector<std::string> NetnsCluster::CleanupLeftovers(
    const std::string& own_prefix) {
  std::vector<std::string> removed;
  auto stale = [&](const std::string& prefix) {
    if (prefix.empty()) return false;
    if (prefix == own_prefix) return true;
    // Only runs of this tool (an owner file) whose owner is gone.
    return HasOwnerFile(prefix) && !OwnerAlive(prefix);
  };
  std::set<std::string> prefixes;
  // Runs that died after their network was gone still have an owner file
  // (and a temp dir).
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(kOwnerDir, ec)) {
    const std::string p = e.path().filename().string();
    if (PrefixOf(p + "br") == p && stale(p)) prefixes.insert(p);
  }
  for (const std::string& n : ListNamespaces()) {
    const std::string p = PrefixOf(n);
    if (!stale(p)) continue;
    prefixes.insert(p);
    KillNamespacePids(n);
    RunCommand({"ip", "netns", "del", n});
    removed.push_back(absl::StrCat("namespace ", n));
  }
  for (const std::string& l : ListLinks()) {
    const std::string p = PrefixOf(l);
    if (!stale(p)) continue;
    prefixes.insert(p);
    RunCommand({"ip", "link", "del", l});
    removed.push_back(absl::StrCat("link ", l));
  }
  // tmpfs data dirs of those runs.
  std::ifstream mounts("/proc/mounts");
  std::string line;
  std::vector<std::string> to_unmount;
  while (std::getline(mounts, line)) {
    std::vector<std::string> f = absl::StrSplit(line, ' ');
    if (f.size() < 3 || f[2] != "tmpfs") continue;
    for (const std::string& p : prefixes) {
      if (absl::StrContains(f[1], absl::StrCat("/detcd-chaos-", p, "-"))) {
        to_unmount.push_back(f[1]);
      }
    }
  }
  for (const std::string& m : to_unmount) {
    umount2(m.c_str(), MNT_DETACH);
    removed.push_back(absl::StrCat("mount ", m));
  }
  // Their data dirs and logs: a run that ends normally removes its owner
  // file, so a dir kept on purpose (a failed run's logs) is not touched.
  const std::filesystem::path tmp = std::filesystem::temp_directory_path();
  for (const auto& e : std::filesystem::directory_iterator(tmp, ec)) {
    const std::string name = e.path().filename().string();
    for (const std::string& p : prefixes) {
      if (absl::StartsWith(name, absl::StrCat("detcd-chaos-", p, "-"))) {
        std::error_code rm;
        std::filesystem::remove_all(e.path(), rm);
        removed.push_back(absl::StrCat("dir ", e.path().string()));
      }
    }
  }
  for (const std::string& p : prefixes) {
    std::filesystem::remove(absl::StrCat(kOwnerDir, "/", p), ec);
  }
  return removed;
}

}  // namespace detcd::chaos
