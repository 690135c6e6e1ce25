// detcd-bench's command line, modelled on etcd 3.4's tools/benchmark:
//   detcd-bench [global flags] <workload> [args] [workload flags]
// Flags take "--name value" or "--name=value"; boolean flags also stand
// alone. ParseArgs validates everything before anything is dialed.
#ifndef DETCD_BENCH_DETCD_BENCH_OPTIONS_H_
#define DETCD_BENCH_DETCD_BENCH_OPTIONS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace detcd::bench {

enum class Workload {
  kPut,
  kRange,
  kTxnPut,
  kTxnMixed,
  kWatch,
  kWatchGet,
  kLeaseKeepalive,
  kStm,
  kLock,
  kWatchResume,
};

const char* WorkloadName(Workload w);

struct Options {
  Workload workload = Workload::kPut;

  // Global (etcd benchmark's root flags).
  std::vector<std::string> endpoints = {"127.0.0.1:2379"};
  int conns = 1;
  int clients = 1;
  int64_t total = 10000;
  absl::Duration duration = absl::ZeroDuration();  // set: replaces total
  double rate = 0;  // requests/s over all clients; 0: as fast as possible
  bool target_leader = false;
  absl::Duration dial_timeout = absl::Seconds(2);
  // Per request; 0 (the default): none, as etcd's benchmark sends its
  // requests without a deadline (a timer per call costs the bench CPU).
  absl::Duration command_timeout = absl::ZeroDuration();
  // Threads driving the put/range/txn workloads' calls (completion
  // queues); the other workloads use a thread per client.
  int threads = 2;
  // Put/range/txn over gRPC C++ instead of the built-in HTTP/2 client
  // (which TLS and auth always use).
  bool grpc_client = false;
  bool json = false;
  // Progress bar: auto (on when stderr is a terminal), forced off.
  bool no_progress = false;

  // TLS and auth, as detcdctl's flags.
  std::string cacert, cert, key_file;
  bool insecure_skip_tls_verify = false;
  std::string user, password;

  // Keys and values (put, txn-put, txn-mixed, watch, stm).
  int key_size = 8;
  int val_size = 8;
  int64_t key_space_size = 1;
  bool sequential_keys = false;

  // range, txn-mixed, watch-get: the key (and optional range end).
  std::string key;
  std::string range_end;
  bool prefix = false;
  bool serializable = false;  // --consistency s

  int txn_ops = 1;      // txn-put: puts per txn
  double rw_ratio = 1;  // txn-mixed: reads per write

  // watch: watchers spread over streams, watching watched_keys keys,
  // put_total puts (at put_rate/s) whose delivery latency is measured.
  int watchers = 100;
  int streams = 10;
  int64_t watched_keys = 10;
  int64_t put_total = 1000;
  double put_rate = 0;
  // watch-get: unsynced watchers catch up over watch_events events while
  // --total serializable-or-not gets are measured.
  int64_t watch_events = 1000;

  // stm.
  // stm: each transaction reads keys_per_txn of stm_keys keys and writes
  // them back incremented, retrying on conflict. Isolation as etcd's
  // benchmark: c read committed, r repeatable reads, s serializable, ss
  // serializable snapshot.
  int64_t stm_keys = 1;
  int keys_per_txn = 1;
  std::string isolation = "r";

  // lock: Lock + Unlock (the v3lock service) of one of lock_names names,
  // each client under a lease of its own.
  int lock_names = 1;
};

absl::StatusOr<Options> ParseArgs(const std::vector<std::string>& args);
std::string Usage();

}  // namespace detcd::bench

#endif  // DETCD_BENCH_DETCD_BENCH_OPTIONS_H_
