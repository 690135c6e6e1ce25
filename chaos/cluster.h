// A real 3- or 5-member cluster on this machine for detcd-chaos: each
// member is a process of the server binary (detcd, or etcd 3.4: the same
// flags) in its own network namespace, joined to the others by veth pairs
// on one bridge in the root namespace. The client workload runs in the root
// namespace and reaches every member through the bridge; faults
// (chaos/faults.h) act on the member processes and inside the members'
// namespaces, so client traffic is never what a partition cuts.
//
// Names are short and unique per run: a prefix "dc<pid % 10000>" and
//   <prefix>br       the bridge (address 10.A.B.254/24)
//   <prefix>m<i>     member i's namespace (its eth0 is 10.A.B.<i+1>)
//   <prefix>v<i>     the root side of member i's veth pair
// with A.B derived from the prefix's number. Everything is removed by
// Destroy() (also run by the destructor) and, for a run that died without
// it, by CleanupLeftovers() at the next start: a run writes its pid to
// /tmp/detcd-chaos-owners/<prefix>, and leftovers whose owner is gone are
// removed. Every member is started with PR_SET_PDEATHSIG, so members die
// with detcd-chaos even when it is killed with SIGKILL.
//
// Not thread-safe: one thread drives a cluster (the signal thread of
// detcd-chaos may call EmergencyKill()).
#ifndef DETCD_CHAOS_CLUSTER_H_
#define DETCD_CHAOS_CLUSTER_H_

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace detcd::chaos {

// The result of an external command (ip, nft, tc, mount).
struct CommandResult {
  int exit_code = -1;  // -1: did not run or was killed at its deadline
  std::string output;  // stdout and stderr together
};
// Runs argv[0] (looked up in PATH) with a deadline; never throws, never
// leaves the child behind.
CommandResult RunCommand(const std::vector<std::string>& argv,
                         absl::Duration timeout = absl::Seconds(10));

struct ClusterOptions {
  std::string server;  // the binary: build/detcd or /usr/bin/etcd
  int members = 3;
  // "" -> "dc<getpid() % 10000>".
  std::string prefix;
  int64_t heartbeat_ms = 100;
  int64_t election_ms = 1000;
  // Appended to every member's command line (e.g. detcd's hidden
  // --experimental-planted-bug NAME).
  std::vector<std::string> extra_flags;
  // > 0: each member's data dir is a tmpfs of this size, so a fault can
  // fill it (ENOSPC) without touching the machine's disk.
  int64_t tmpfs_bytes = 0;
};

class NetnsCluster {
 public:
  // Creates the network and the data dirs (members are not started).
  // kPermissionDenied: network namespaces cannot be created here (not root,
  // no CAP_NET_ADMIN, or no `ip`): callers skip rather than fail.
  static absl::StatusOr<std::unique_ptr<NetnsCluster>> Create(ClusterOptions o);
  ~NetnsCluster();
  NetnsCluster(const NetnsCluster&) = delete;
  NetnsCluster& operator=(const NetnsCluster&) = delete;

  // Removes namespaces, links and mounts of runs of this tool whose owner
  // process is gone (and of `own_prefix`, whatever its owner file says).
  // Returns what it removed, one line each.
  static std::vector<std::string> CleanupLeftovers(
      const std::string& own_prefix);

  int size() const { return static_cast<int>(members_.size()); }
  const std::string& prefix() const { return o_.prefix; }
  const std::string& dir() const { return dir_; }
  const ClusterOptions& options() const { return o_; }
  std::string ns(int i) const;        // member i's namespace
  std::string ip(int i) const;        // member i's address
  std::string client_ip() const;      // the root namespace's (bridge) address
  std::string endpoint(int i) const;  // "ip:2379"
  std::vector<std::string> endpoints() const;
  std::string log_path(int i) const;
  std::string data_dir(int i) const;

  // Member processes. Start launches member i (it must not be running);
  // Kill sends SIGKILL and reaps it; Pause/Resume send SIGSTOP/SIGCONT.
  absl::Status Start(int i);
  absl::Status StartAll();
  void Kill(int i);
  void Pause(int i);
  void Resume(int i);
  bool running(int i) const;  // started, not exited (paused counts)
  bool paused(int i) const { return members_[i].paused; }
  pid_t pid(int i) const { return members_[i].pid; }
  // Reaps members that exited by themselves; returns their descriptions
  // ("m1 exited with status 1"), once each.
  std::vector<std::string> ReapExited();

  // Bounded wait until GET /health on each listed running member answers
  // {"health":"true"}. The error names the members that are not healthy.
  absl::Status WaitHealthy(const std::vector<int>& members,
                           absl::Duration timeout);
  bool Healthy(int i, absl::Duration timeout = absl::Seconds(1)) const;

  // Runs a command inside member i's namespace.
  CommandResult InNamespace(int i, const std::vector<std::string>& argv,
                            absl::Duration timeout = absl::Seconds(10)) const;

  // The last `n` lines of member i's log.
  std::string LogTail(int i, int n = 20) const;

  // Kills the members, removes the network and, unless keep_dir, the data
  // dirs and logs. Idempotent.
  void Destroy(bool keep_dir);
  // For a signal thread: SIGKILL to every member pid (no reaping, no
  // allocation beyond what kill needs).
  void EmergencyKill();

 private:
  struct Member {
    pid_t pid = 0;
    bool paused = false;
    int starts = 0;
    std::atomic<pid_t> emergency_pid{0};
  };
  explicit NetnsCluster(ClusterOptions o);
  absl::Status SetUpNetwork();
  std::vector<std::string> MemberArgv(int i) const;

  ClusterOptions o_;
  std::string dir_;
  int net_a_ = 0, net_b_ = 0;   // 10.A.B.0/24
  std::deque<Member> members_;  // deque: Member holds an atomic
  std::vector<std::string> mounts_;
  bool destroyed_ = false;
};

}  // namespace detcd::chaos

#endif  // DETCD_CHAOS_CLUSTER_H_
