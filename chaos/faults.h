// Real faults on a NetnsCluster (chaos/cluster.h), driven as a world STATE
// to reach rather than as single actions: a simulator schedule says after
// each fault event which members are down, which are paused and which
// links are cut ("down:2 paused:1 cut:1>3,3>1"), and Apply() makes the real
// cluster match, whatever happened in between. So a member that the
// simulator crashed and restarted 10 ms later within one event just stays
// up, and a replay can start anywhere.
//
//   down     kill -9 of the member process (its data dir stays); leaving
//            the down set restarts it with the same flags
//   paused   SIGSTOP; leaving the set SIGCONT
//   cut a>b  nftables in b's namespace drops every packet from a's address
//            (input hook), so a is not heard by b. TCP needs its ACKs, so a
//            one-way cut also stalls the TCP connections b opened to a; what
//            stays one-way is who can start new connections. Client traffic
//            (from the bridge's address) is never cut.
//   loss     nftables drops that fraction of packets between members
//            (numgen random), both directions, when `tc netem` is missing
//            (this machine's kernel has no sch_netem); with netem: loss and
//            delay on each member's eth0
//   disk     fill a member's tmpfs data dir (ENOSPC) and free it again
#ifndef DETCD_CHAOS_FAULTS_H_
#define DETCD_CHAOS_FAULTS_H_

#include <cstdint>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "chaos/cluster.h"

namespace detcd::chaos {

// Member indexes are 0-based (the simulator's node ids are 1-based).
struct WorldTarget {
  std::set<int> down;
  std::set<int> paused;
  std::set<std::pair<int, int>> cuts;  // (from, to): from is not heard by to
  std::set<int> disk_full;  // data dir filled (needs tmpfs data dirs)
  bool operator==(const WorldTarget&) const = default;
  // "down:m1 paused:m0 cut:m0>m2" or "all well".
  std::string Describe() const;
};

class Faults {
 public:
  explicit Faults(NetnsCluster* c);

  // Makes the cluster match `t`. Errors (a restart that failed, an nft
  // command that failed) are returned after trying everything else.
  absl::Status Apply(const WorldTarget& t);
  const WorldTarget& current() const { return current_; }
  // Everything healed: no cuts, no loss, nothing paused, every member
  // running.
  absl::Status HealAll();

  // Packet loss (0..1) between members and extra latency. Latency needs
  // netem; without it only the loss is applied and the return says so.
  absl::Status SetNetwork(double loss, int64_t delay_ms);
  bool has_netem() const { return has_netem_; }

  // Fills member i's tmpfs data dir to the last byte (a file "chaos.fill"),
  // or frees it. kFailedPrecondition without --tmpfs.
  absl::Status FillDisk(int i);
  absl::Status FreeDisk(int i);

  // Counts of what was done, for the report: "kill", "restart", "pause",
  // "resume", "cut-change", "loss", "disk-fill".
  const std::vector<std::pair<std::string, int>>& counts() const {
    return counts_;
  }

 private:
  absl::Status WriteRules();
  void Count(const std::string& what);

  NetnsCluster* c_;
  WorldTarget current_;
  double loss_ = 0;
  int64_t delay_ms_ = 0;
  bool has_netem_ = false;
  std::vector<std::pair<std::string, int>> counts_;
};

}  // namespace detcd::chaos

#endif  // DETCD_CHAOS_FAULTS_H_
