// Simulated clients: each sends one request at a time to a random node
// (writes with unique values, and linearizable reads), waits for the answer
// or gives up after a timeout (outcome unknown), thinks, and goes again.
// Acknowledged writes are reported to the SafetyChecker for the durability
// check.
#ifndef DETCD_HARNESS_WORKLOAD_H_
#define DETCD_HARNESS_WORKLOAD_H_

#include <cstdint>
#include <string>
#include <vector>

#include "engine/env/env.h"
#include "harness/cluster.h"

namespace detcd::harness {

struct WorkloadOptions {
  int clients = 5;
  int ops = 500;          // total operations across clients
  double read_fraction = 0.2;
  int keys = 16;
  int64_t timeout_ns = 2 * sim::kSecond;
  int64_t max_think_ns = 20 * sim::kMillisecond;
};

class Workload {
 public:
  Workload(Cluster* cluster, env::SeededRng rng, WorkloadOptions opts);
  void Start();
  bool done() const { return completed_ >= opts_.ops; }

  struct Stats {
    uint64_t ok = 0, failed = 0, unknown = 0;
  };
  const Stats& stats() const { return stats_; }

 private:
  struct Client {
    int id = 0;
    uint64_t op_seq = 0;  // identifies the in-flight op for late callbacks
    bool busy = false;
    int64_t started_ns = 0;
  };
  void Next(int client);
  void Finish(int client, uint64_t seq, const char* outcome,
              const std::string& what);

  Cluster* cluster_;
  env::SeededRng rng_;
  WorkloadOptions opts_;
  std::vector<Client> clients_;
  int issued_ = 0;
  int completed_ = 0;
  Stats stats_;
};

}  // namespace detcd::harness

#endif  // DETCD_HARNESS_WORKLOAD_H_
