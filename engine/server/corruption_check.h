// etcd 3.4's corruption checks among members (etcdserver/corrupt.go), as a
// state machine driven by the member's clock and ticks:
//
//  - the initial check (--experimental-initial-corrupt-check), once, before
//    the member serves clients: the store's hash at its current revision is
//    compared with every peer's hash at that revision; a peer with the same
//    compact revision and another hash is a mismatch, and any mismatch fails
//    the start ("<id> found data inconsistency with peers"). Peers that do
//    not answer, are behind (future revision) or compacted past it are
//    logged and skipped, as in etcd;
//  - the periodic check (--experimental-corrupt-check-time), on the leader
//    only, every interval: its hash and revisions, then every peer's hash at
//    that revision, then a linearizable read, then its own hash again. A
//    mismatch (its own hash changed at the same revisions; a follower ahead
//    of it in revision or compact revision; a follower with the first
//    compact revision and another hash) raises the CORRUPT alarm for member
//    0 through raft, as etcd 3.4.23 does (it cannot tell which member is
//    wrong). The alarm stops every write cluster-wide (quota.h) until an
//    operator disarms it.
//
// How peers are asked is the owner's business (Hooks::ask_peers). etcd
// 3.4 asks each peer's /members/hashkv over its peer URLs; detcd's
// EtcdServer asks over its own peer channel (a forwarded HashKV request,
// etcd_server.h), so the same check runs in the simulator. Log lines are
// etcd's, in both of its logger shapes (log_record.h).
#ifndef DETCD_ENGINE_SERVER_CORRUPTION_CHECK_H_
#define DETCD_ENGINE_SERVER_CORRUPTION_CHECK_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/server/log_record.h"

namespace detcd::server {

struct CorruptCheckOptions {
  bool initial = false;     // etcd's --experimental-initial-corrupt-check
  int64_t interval_ns = 0;  // --experimental-corrupt-check-time; 0: off
};

// A store's hash as etcd's HashByRev reports it: the hash of the revisions
// in (compact_revision, hashed revision], with the store's current revision
// (for a peer, its response header's revision).
struct KvHash {
  uint32_t hash = 0;
  int64_t revision = 0;
  int64_t compact_revision = 0;
};

// One peer's answer to "your hash at revision R".
struct PeerHash {
  uint64_t id = 0;
  std::vector<std::string> endpoints;  // its peer URLs (for the logs)
  absl::Status status;  // the request's error, else ok and `hash` is set
  KvHash hash;
};

class CorruptionChecker {
 public:
  struct Hooks {
    uint64_t self = 0;
    std::function<int64_t()> now;  // the member's clock, ns
    // The local store's hash at its current revision, to `done` (at once
    // or later: a large store's is computed in steps).
    std::function<void(std::function<void(absl::StatusOr<KvHash>)> done)>
        local;
    // Asks every other member for its hash at `revision`; `done` gets one
    // answer per member, ordered by id.
    std::function<void(int64_t revision,
                       std::function<void(std::vector<PeerHash>)> done)>
        ask_peers;
    // Completes once a local read would be linearizable (or fails).
    std::function<void(std::function<void(absl::Status)>)> linearizable_read;
    // Proposes etcd's AlarmRequest{ACTIVATE, CORRUPT, member 0}.
    std::function<void()> raise_corrupt;
    LogFn log;
  };

  CorruptionChecker(CorruptCheckOptions opts, Hooks hooks);
  ~CorruptionChecker();
  CorruptionChecker(const CorruptionChecker&) = delete;
  CorruptionChecker& operator=(const CorruptionChecker&) = delete;

  // etcd's CheckInitialHashKV: `done` gets ok (also when the initial check
  // is off), or FailedPrecondition "<id> found data inconsistency with
  // peers", or Internal "<id> failed to fetch hash (<err>)". `timeout_ns`
  // is only logged (each peer's request times out on its own).
  void CheckInitial(int64_t timeout_ns, std::function<void(absl::Status)> done);

  // Called on every tick of the member: runs the periodic check when due
  // and `leader`. The first call starts the schedule (and logs it).
  void Tick(bool leader);

  bool busy() const { return busy_; }
  // Periodic checks completed, and how many found a mismatch (tests).
  int checks() const { return checks_; }
  int mismatches() const { return mismatches_; }

 private:
  void RunPeriodic();
  void EndPeriodic();  // not busy; the next check is an interval from now
  void FinishPeriodic(const KvHash& first, const std::vector<PeerHash>& peers,
                      const absl::StatusOr<KvHash>& second);
  void AskPeersInitially(const std::string& self, const KvHash& h,
                         std::function<void(absl::Status)> done);
  void Emit(LogRecord r) const;

  CorruptCheckOptions opts_;
  Hooks hooks_;
  bool started_ = false;
  bool busy_ = false;
  int64_t next_check_ns_ = 0;
  int checks_ = 0;
  int mismatches_ = 0;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace detcd::server

#endif  // DETCD_ENGINE_SERVER_CORRUPTION_CHECK_H_
