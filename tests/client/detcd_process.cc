#include "tests/client/detcd_process.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "detcd/client.h"

namespace detcd::testing {

int FreePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  int port = 0;
  if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0) {
    socklen_t len = sizeof(a);
    getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
    port = ntohs(a.sin_port);
  }
  close(fd);
  return port;
}

DetcdCluster::DetcdCluster(int members, std::vector<std::string> extra_flags,
                           std::optional<client::TlsConfig> client_tls)
    : extra_flags_(std::move(extra_flags)), client_tls_(std::move(client_tls)) {
  const char* env = std::getenv("DETCD_SERVER");
#ifdef DETCD_TEST_SERVER_PATH
  binary_ = env != nullptr ? env : DETCD_TEST_SERVER_PATH;
#else
  binary_ = env != nullptr ? env : "detcd";
#endif
  std::string tmpl =
      (std::filesystem::temp_directory_path() / "detcd-client-test-XXXXXX")
          .string();
  if (mkdtemp(tmpl.data()) != nullptr) dir_ = tmpl;
  for (int i = 0; i < members; ++i) {
    Member m;
    m.name = absl::StrCat("m", i);
    m.client_port = FreePort();
    m.peer_port = FreePort();
    members_.push_back(m);
  }
}

DetcdCluster::~DetcdCluster() {
  for (int i = 0; i < size(); ++i) Kill(i);
  if (!dir_.empty() && std::getenv("DETCD_TEST_KEEP") == nullptr) {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
}

std::string DetcdCluster::endpoint(int i) const {
  return absl::StrCat(client_tls_ ? "https://" : "",
                      "127.0.0.1:", members_[i].client_port);
}

std::vector<std::string> DetcdCluster::endpoints() const {
  std::vector<std::string> out;
  for (int i = 0; i < size(); ++i) out.push_back(endpoint(i));
  return out;
}

int DetcdCluster::IndexOf(const std::string& ep) const {
  for (int i = 0; i < size(); ++i) {
    if (endpoint(i) == ep) return i;
  }
  return -1;
}

std::string DetcdCluster::LogTail(int i) const {
  std::ifstream f(absl::StrCat(dir_, "/", members_[i].name, ".log"));
  std::stringstream ss;
  ss << f.rdbuf();
  std::string s = ss.str();
  if (s.size() > 4000) s = s.substr(s.size() - 4000);
  return s;
}

absl::Status DetcdCluster::Spawn(int i) {
  if (dir_.empty()) return absl::InternalError("no temp dir");
  std::vector<std::string> peers;
  for (const Member& m : members_) {
    peers.push_back(absl::StrCat(m.name, "=http://127.0.0.1:", m.peer_port));
  }
  const Member& m = members_[i];
  std::string client_url = absl::StrCat(client_tls_ ? "https://" : "http://",
                                        "127.0.0.1:", m.client_port);
  std::string peer_url = absl::StrCat("http://127.0.0.1:", m.peer_port);
  std::vector<std::string> args = {
      binary_,
      "--name",
      m.name,
      "--data-dir",
      absl::StrCat(dir_, "/", m.name, ".etcd"),
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
      "--initial-cluster-state",
      "new",
      "--heartbeat-interval",
      "50",
      "--election-timeout",
      "500",
  };
  args.insert(args.end(), extra_flags_.begin(), extra_flags_.end());
  std::string log = absl::StrCat(dir_, "/", m.name, ".log");
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid < 0) return absl::InternalError("fork failed");
  if (pid == 0) {
    // Child: die with the test; log to the member's file.
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(1);
    int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) {
      dup2(fd, 1);
      dup2(fd, 2);
      close(fd);
    }
    execv(argv[0], argv.data());
    _exit(127);
  }
  members_[i].pid = pid;
  return absl::OkStatus();
}

absl::Status DetcdCluster::WaitReady(int i, absl::Time deadline) {
  client::Config cfg;
  cfg.endpoints = {endpoint(i)};
  cfg.tls = client_tls_;
  auto c = client::Client::New(cfg);
  if (!c.ok()) return c.status();
  absl::Status last;
  while (absl::Now() < deadline) {
    int status = 0;
    if (waitpid(members_[i].pid, &status, WNOHANG) == members_[i].pid) {
      members_[i].pid = -1;
      return absl::InternalError(
          absl::StrCat(members_[i].name, " exited:\n", LogTail(i)));
    }
    auto r =
        (*c)->Get("health", {}, client::CallOptions::Timeout(absl::Seconds(1)));
    if (r.ok()) return absl::OkStatus();
    last = r.status();
    absl::SleepFor(absl::Milliseconds(50));
  }
  return absl::DeadlineExceededError(absl::StrCat(
      members_[i].name, " not ready: ", last.ToString(), "\n", LogTail(i)));
}

absl::Status DetcdCluster::Start(absl::Duration timeout) {
  for (int i = 0; i < size(); ++i) {
    if (auto s = Spawn(i); !s.ok()) return s;
  }
  absl::Time deadline = absl::Now() + timeout;
  for (int i = 0; i < size(); ++i) {
    if (auto s = WaitReady(i, deadline); !s.ok()) return s;
  }
  return absl::OkStatus();
}

void DetcdCluster::Kill(int i) {
  if (members_[i].pid <= 0) return;
  kill(members_[i].pid, SIGKILL);
  int status = 0;
  waitpid(members_[i].pid, &status, 0);
  members_[i].pid = -1;
}

absl::Status DetcdCluster::Restart(int i, absl::Duration timeout) {
  Kill(i);
  if (auto s = Spawn(i); !s.ok()) return s;
  return WaitReady(i, absl::Now() + timeout);
}

}  // namespace detcd::testing
