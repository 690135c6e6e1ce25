// Simulated etcd clients. Each sends one request at a time to a random
// member through the cluster (so through that member's EtcdServer: writes
// via raft, reads via ReadIndex or locally), waits for the answer or gives
// up after a timeout, thinks, and goes again.
//
//  - KV clients: puts, deletes, txns with compares, linearizable and
//    serializable ranges on the keys k0..kN-1, plus the odd compaction.
//    Every attempt is recorded in a History (invoke / ok / fail / unknown)
//    for the linearizability checker. A request refused before it could
//    take effect (no leader, member down, too many requests) is a failure
//    and is retried on another member; a timeout is unknown.
//  - Watch clients: open a stream on a random member with one to three
//    watchers, each on a range (all keys, the k prefix, or one key) from
//    now or from a past revision, with random prev_kv / filters / progress
//    requests / fragmenting, and a send buffer that sometimes refuses (a
//    slow reader). When the member goes down they resume on another member
//    from the revision after the last event they saw, as clientv3 does.
//    Everything they receive goes to the WatchChecker.
//  - Lease clients: grant a lease, attach keys lease/<id>/<n> to it, keep
//    it alive for a while, then revoke it or let it expire. Everything goes
//    to the LeaseChecker; their puts and revokes, and each lease's expiry
//    (a revoke that may happen any time after the grant), also go into the
//    History, so every revision of the run comes from a recorded request.
#ifndef DETCD_HARNESS_WORKLOAD_H_
#define DETCD_HARNESS_WORKLOAD_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "engine/env/env.h"
#include "harness/cluster.h"
#include "harness/history.h"
#include "harness/lease_checker.h"
#include "harness/watch_checker.h"
#include "sim/schedule.h"

namespace detcd::harness {

struct WorkloadOptions {
  int clients = 5;
  int ops = 500;  // KV operations across KV clients
  int keys = 8;
  int watchers = 3;
  int lease_clients = 2;
  int64_t timeout_ns = 2 * sim::kSecond;
  int64_t max_think_ns = 20 * sim::kMillisecond;
  double compact_probability = 0.01;
  int max_retries = 3;
};

class Workload {
 public:
  // With `decisions` (sim/schedule.h) every client decision is recorded
  // and replayable: a KV client's n-th operation ("c<client>.<n>") is a
  // unit of the schedule with a stream of its own ("kv/c<client>.<n>": the
  // request, the member it goes to, retries, the think time after it);
  // watch and lease clients draw from "watch/<i>" and "lease/<i>". On
  // replay, a client runs exactly its listed operations, each not before
  // its recorded time.
  Workload(Cluster* cluster, env::SeededRng rng, WorkloadOptions opts,
           sim::Decisions* decisions = nullptr);
  ~Workload();
  void Start();
  // All KV operations have completed (lease and watch clients then stop
  // starting new work).
  bool done() const { return completed_ >= target_ops_; }

  struct Stats {
    uint64_t ok = 0, failed = 0, unknown = 0;
    uint64_t watch_events = 0, watch_resumes = 0;
    uint64_t lease_grants = 0, keepalives = 0;
  };
  const Stats& stats() const { return stats_; }
  const History& history() const { return history_; }
  WatchChecker& watch_checker() { return watch_checker_; }
  LeaseChecker& lease_checker() { return lease_checker_; }

 private:
  struct KvClient;
  struct Watcher;
  struct WatchClient;
  struct LeaseClient;

  // KV.
  void NextKv(int c);
  void SendKv(int c, int op_index, int attempt);
  Request RandomRequest(int c);
  void FinishKv(int c, uint64_t seq, int op_index, Operation::Outcome o,
                const absl::Status& s, Response resp, int attempt);
  // Watch.
  void ConnectWatch(int w);
  void CreateWatcher(int w, int j, server::EtcdServer& s);
  bool OnWatchResponse(int w, uint64_t conn, const mvcc::WatchResponse& r);
  void OnWatchDown(uint64_t node);
  void AskProgress(int w, uint64_t conn);
  // Lease.
  void NextLease(int l);
  void LeaseStep(int l);
  int StartLeaseOp(int l, Request req);
  void FinishLeaseOp(int op_index, const absl::Status& s, bool sync,
                     absl::FunctionRef<Response()> ok_response);
  uint64_t RandomUpNode();
  void Later(int64_t delay_ns, std::function<void()> fn);
  // Scheduled runs: the KV operation client c issues next (-1: none left),
  // or a wait until its recorded time.
  int NextOpNumber(int c);
  class StreamScope;

  Cluster* cluster_;
  sim::ScheduledRng rng_;
  WorkloadOptions opts_;
  int target_ops_ = 0;  // done() when this many KV operations completed
  std::vector<std::unique_ptr<KvClient>> kv_;
  std::vector<std::unique_ptr<WatchClient>> watch_;
  std::vector<std::unique_ptr<LeaseClient>> lease_;
  History history_;
  WatchChecker watch_checker_;
  LeaseChecker lease_checker_;
  int issued_ = 0;
  int completed_ = 0;
  int64_t last_revision_ = 1;  // highest header revision seen
  Stats stats_;
};

}  // namespace detcd::harness

#endif  // DETCD_HARNESS_WORKLOAD_H_
