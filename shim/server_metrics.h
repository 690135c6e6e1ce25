// etcd 3.4's metric families that a member fills from its gRPC traffic,
// with etcd's names, types, labels, help texts and buckets (the table of
// every etcd family and what detcd reports is docs/metrics.md).
//
// Most come from each call's CallFigures, fed by a gRPC server interceptor
// (grpc::experimental) for gRPC C++'s calls and by the native transport's
// calls themselves (shim/services.cc), so the figures follow the traffic
// exactly on either:
//   grpc_server_msg_received_total / msg_sent_total {grpc_method,
//     grpc_service, grpc_type}, and with --metrics extensive
//     grpc_server_handling_seconds (DefBuckets), as go-grpc-prometheus;
//   etcd_server_client_requests_total{client_api_version, type}
//     (the "client-api-version" metadata clientv3 sends; "unary"/"stream");
//   etcd_network_client_grpc_{received,sent}_bytes_total (message sizes);
//   etcd_mvcc_{range,put,delete,txn}_total and etcd_debugging_mvcc_*'s
//     twins, counted per request served (etcd counts them in its store);
//   etcd_debugging_mvcc_{watch_stream,watcher}_total, _events_total;
//   etcd_debugging_lease_ttl_total (granted TTLs; the lease counters come
//     from the engine's lessor, shim/server.cc);
//   etcd_server_slow_apply_total and etcd's "apply request took too long"
//     warning for unary KV calls slower than 100 ms;
//   the Maintenance calls etcd times in its backend and store, timed here
//     as whole calls: etcd_disk_backend_defrag_duration_seconds and
//     etcd_disk_defrag_inflight (Defragment), _backend_snapshot_duration_
//     seconds (Snapshot), etcd_mvcc_hash_duration_seconds (Hash) and
//     _hash_rev_duration_seconds (HashKV);
//   etcd_server_learner_promote_successes / _failures{Reason}
//     (MemberPromote answers; "not leader" is not a failure, as in etcd);
//   etcd_mvcc_db_open_read_transactions (always 0: no read holds one).
#ifndef DETCD_SHIM_SERVER_METRICS_H_
#define DETCD_SHIM_SERVER_METRICS_H_

#include <google/protobuf/message.h>
#include <grpcpp/support/byte_buffer.h>
#include <grpcpp/support/server_interceptor.h>
#include <grpcpp/support/slice.h>
#include <grpcpp/support/status.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "etcdserverpb/raft_internal.pb.h"
#include "shim/metrics.h"
#include "shim/trace_file.h"

namespace detcd::shim {

class CallFigures;
struct GrpcMethodFigures;
struct WatchWireSummary;  // shim/watch_wire.h

class GrpcTrafficMetrics {
 public:
  // extensive: --metrics extensive (adds grpc_server_handling_seconds).
  GrpcTrafficMetrics(metrics::Registry& r, bool extensive);
  ~GrpcTrafficMetrics();
  GrpcTrafficMetrics(const GrpcTrafficMetrics&) = delete;
  GrpcTrafficMetrics& operator=(const GrpcTrafficMetrics&) = delete;

  // For grpc::ServerBuilder::experimental().SetInterceptorCreators. The
  // factory refers to this object, which must outlive the server.
  std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>
  InterceptorFactory();

  // One call's figures for a transport other than gRPC C++'s
  // (shim/grpc_h2); the interceptor records its calls the same way.
  // full_method: "/etcdserverpb.KV/Range"; type: "unary", ...
  std::unique_ptr<CallFigures> NewCall(std::string_view full_method,
                                       const char* type);

  // Every method of etcd's client services (the ones etcd hands to
  // go-grpc-prometheus's Register), with its grpc_type label.
  struct Method {
    std::string service, method, type;
  };
  static std::vector<Method> EtcdMethods();
  // As Register does: the method's children exist from the start, at zero.
  void PreRegister(const Method& m);

  // --trace-file: each call becomes a span on a request track. Set before
  // the server starts; `t` must outlive it.
  void set_trace(TraceFile* t) { trace_ = t; }
  TraceFile* trace() const { return trace_; }

  struct Families;
  // Shared with the interceptors.
  Families& families() { return *f_; }

  // etcd's "apply request took too long" for a write whose apply (not the
  // wait for its commit) took took_ns: the warning and
  // etcd_server_slow_apply_total. `result` is the engine's encoded result
  // (EtcdStateMachine::SlowApplyFn). Reads are timed by the interceptor,
  // from arrival to answer, as etcd times them.
  void WarnSlowApply(const etcdserverpb::InternalRaftRequest& request,
                     std::string_view result, int64_t took_ns);

 private:
  std::unique_ptr<Families> f_;
  TraceFile* trace_ = nullptr;
};

// What one call adds to GrpcTrafficMetrics' figures, in the order its
// transport sees the call: Started (with the client-api-version metadata,
// null when absent), each message received and sent, Finished with the
// status. Any thread, one at a time.
class CallFigures {
 public:
  CallFigures(GrpcTrafficMetrics::Families* f, TraceFile* trace,
              std::string_view full_method, const char* type);
  ~CallFigures();
  CallFigures(const CallFigures&) = delete;
  CallFigures& operator=(const CallFigures&) = delete;

  void Started(const std::string_view* client_api_version);
  // A unary KV request must stay valid until Finished (its summary for
  // the slow-call warning and the trace is made only if needed), unless
  // SummarizeRequestNow is called after Received.
  void Received(const google::protobuf::Message& msg);
  void SummarizeRequestNow();
  void ReceivedRaw(size_t bytes);  // Watch's requests, as bytes
  void Sent(const google::protobuf::Message& msg);
  void SentWatch(const grpc::ByteBuffer& bb);
  void SentWatch(const std::vector<grpc::Slice>& slices, size_t bytes);
  void Finished(const grpc::Status& status);
  bool is_watch() const;

 private:
  void OnRequest(const google::protobuf::Message& msg);
  void OnWatchResponse(const WatchWireSummary& w);
  void OnResponse(const google::protobuf::Message& msg);
  // etcd's warnOfExpensiveReadOnlyRangeRequest (and its txn twin).
  void WarnIfSlow(double secs, const grpc::Status& status);

  GrpcTrafficMetrics::Families* f_;
  TraceFile* trace_;
  const GrpcMethodFigures* m_;
  int lane_ = -1;
  double trace_start_us_ = 0;
  bool defrag_running_ = false;
  int64_t open_watchers_ = 0;
  int64_t grant_ttl_ = 0;
  bool is_kv_unary_ = false;
  bool warn_slow_call_ = false;
  // A unary KV request, or its summary once SummarizeRequestNow ran.
  const google::protobuf::Message* request_ = nullptr;
  std::string summary_;
  // The request's summary, made once (when first needed).
  const std::string& RequestSummaryText();
  size_t response_size_ = 0;
  int range_count_ = 0;
  std::chrono::steady_clock::time_point start_ =
      std::chrono::steady_clock::now();
};

// Go's Duration.String() of a unary call's "took" is what the slow-request
// warning prints; the threshold is etcd's warnApplyDuration.
inline constexpr int64_t kWarnApplyDurationMs = 100;

}  // namespace detcd::shim

#endif  // DETCD_SHIM_SERVER_METRICS_H_
