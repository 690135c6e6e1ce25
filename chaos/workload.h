// The client side of detcd-chaos: a seeded workload that talks real gRPC
// to a real cluster (detcd or etcd 3.4) through the client library, records
// what it saw as the simulator's harness records it, and checks it with the
// simulator's own checkers (chaos/checks.h has how).
//
// Threads (all started by Start, all joined by Stop):
//  - `clients` KV clients. Client i talks to member i % n (its "home"), so
//    linearizable reads also go to followers; when a call fails for lack of
//    a member (unavailable, deadline) it moves to the next member. Each
//    issues one request at a time, the simulator's mix: put, delete (single
//    key or a range), txn (a compare on one key, a put, reads in either
//    branch), linearizable and serializable ranges, on keys k0..k<keys-1>.
//  - `lease_clients` lease clients: grant a lease (TTL 1-3 s; the server
//    may raise it to its minimum), put two keys lease/<id>/<n> under it,
//    keep it alive a few times (sometimes late on purpose, sometimes asking
//    its time-to-live instead), then revoke it or let it expire.
//  - `watch_clients` watch clients: one gRPC Watch stream each on a
//    member, with one to three watchers (all keys, the k prefix, or one
//    key; from now or from a past revision; prev_kv now and then), and
//    progress requests. When the stream breaks they reopen on the next
//    member from the revision after the last event each watcher saw, as
//    the simulator's watch clients (and clientv3) do.
//
// Every operation is recorded with invoke / return times from one steady
// clock (nanoseconds since Start, the history's unit) and its outcome: ok
// with the answer, failed for sure (a definite error: lease not found,
// invalid argument; any error of a read), or unknown (timeout,
// unavailable, lost connection: a write may have happened).
//
// Check (after Stop, with the cluster healed) waits (bounded) until the
// leases settle and the members agree on a revision, then runs the
// linearizability, watch and lease checkers (checks.h) and reports.
#ifndef DETCD_CHAOS_WORKLOAD_H_
#define DETCD_CHAOS_WORKLOAD_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace detcd::chaos {

struct WorkloadOptions {
  // The members' client URLs ("host:port" or "http://host:port"), one per
  // member, in member order.
  std::vector<std::string> endpoints;
  uint64_t seed = 1;
  int clients = 6;  // KV clients
  int keys = 5;
  bool watches = true;
  bool leases = true;
  // A call's deadline; past it a write's outcome is unknown.
  int op_timeout_ms = 2000;
  // Additions of hR2 (defaults keep the interface above).
  int watch_clients = 2;
  int lease_clients = 2;
  // Each KV client waits uniformly 0..think_max_ms between its requests
  // (bounds the history the linearizability checker has to search).
  int think_max_ms = 40;
  // The members' election timeout: a new leader extends every lease by it.
  int64_t election_timeout_ms = 1000;
  // Watch clients ask for progress notifications now and then.
  bool progress_requests = true;
  // Check: how long to wait for leases to settle and members to converge.
  int settle_timeout_s = 40;
  // Check: the linearizability checker's state bound (the simulator's).
  int64_t max_states = 50'000'000;
};

struct CheckReport {
  bool ok = true;
  // "linearizability: ...", "watch: ...", "lease: ...", "setup: ...".
  std::vector<std::string> failures;
  std::vector<std::string> caught_by;  // e.g. {"linearizability"}
  // Several lines: ops, outcomes, per-kind counts, checker verdicts.
  std::string summary;
};

class Workload {
 public:
  explicit Workload(WorkloadOptions o);
  ~Workload();  // stops the threads if Stop was not called
  Workload(const Workload&) = delete;
  Workload& operator=(const Workload&) = delete;

  void Start();
  // No new operations; waits (bounded: op_timeout_ms plus a margin) for
  // the ones in flight, and joins every thread.
  void Stop();
  // After Stop, with the cluster healed and every member reachable.
  CheckReport Check();

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace detcd::chaos

#endif  // DETCD_CHAOS_WORKLOAD_H_
