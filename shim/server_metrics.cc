#include "shim/server_metrics.h"

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <memory>
#include <string_view>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "etcdserverpb/rpc.pb.h"
#include "google/protobuf/descriptor.h"
#include "engine/server/etcd_state_machine.h"
#include "shim/log.h"
#include "shim/watch_wire.h"

namespace detcd::shim {

namespace pb = etcdserverpb;
namespace gx = grpc::experimental;

// What a call's interceptor needs of its method, made once per method:
// Family::WithLabels builds label vectors and takes the family's mutex,
// and a unary call looked up five children (about 6% of a put's server
// CPU in perf).
struct GrpcMethodFigures {
  std::string service, method;  // "etcdserverpb.KV", "Range"
  const char* type;             // grpc_type
  metrics::Counter* received;
  metrics::Counter* sent;
  metrics::Histogram* handling;  // null unless --metrics extensive
  metrics::Counter* client_requests_unknown;  // no client-api-version
  // Maintenance calls etcd times (defrag, snapshot, hash): their histogram.
  metrics::Histogram* timed = nullptr;
  bool is_watch = false;
  bool is_promote = false;
};

struct GrpcTrafficMetrics::Families {
  Families(metrics::Registry& r, bool extensive)
      : msg_received(r.NewCounterFamily(
            "grpc_server_msg_received_total",
            "Total number of RPC stream messages received on the server.",
            {"grpc_method", "grpc_service", "grpc_type"})),
        msg_sent(r.NewCounterFamily(
            "grpc_server_msg_sent_total",
            "Total number of gRPC stream messages sent by the server.",
            {"grpc_method", "grpc_service", "grpc_type"})),
        handling(extensive ? &r.NewHistogramFamily(
                                 "grpc_server_handling_seconds",
                                 "Histogram of response latency (seconds) of "
                                 "gRPC that had been application-level "
                                 "handled by the server.",
                                 {"grpc_method", "grpc_service", "grpc_type"},
                                 metrics::DefaultBuckets())
                           : nullptr),
        client_requests(r.NewCounterFamily(
            "etcd_server_client_requests_total",
            "The total number of client requests per client version.",
            {"type", "client_api_version"})),
        grpc_received_bytes(
            r.NewCounter("etcd_network_client_grpc_received_bytes_total",
                         "The total number of bytes received from grpc "
                         "clients.")),
        grpc_sent_bytes(
            r.NewCounter("etcd_network_client_grpc_sent_bytes_total",
                         "The total number of bytes sent to grpc clients.")),
        range(r.NewCounter("etcd_mvcc_range_total",
                           "Total number of ranges seen by this member.")),
        put(r.NewCounter("etcd_mvcc_put_total",
                         "Total number of puts seen by this member.")),
        del(r.NewCounter("etcd_mvcc_delete_total",
                         "Total number of deletes seen by this member.")),
        txn(r.NewCounter("etcd_mvcc_txn_total",
                         "Total number of txns seen by this member.")),
        dbg_range(r.NewCounter("etcd_debugging_mvcc_range_total",
                               "Total number of ranges seen by this member.")),
        dbg_put(r.NewCounter("etcd_debugging_mvcc_put_total",
                             "Total number of puts seen by this member.")),
        dbg_del(r.NewCounter("etcd_debugging_mvcc_delete_total",
                             "Total number of deletes seen by this member.")),
        dbg_txn(r.NewCounter("etcd_debugging_mvcc_txn_total",
                             "Total number of txns seen by this member.")),
        put_size(r.NewGauge("etcd_debugging_mvcc_total_put_size_in_bytes",
                            "The total size of put kv pairs seen by this "
                            "member.")),
        watch_streams(r.NewGauge("etcd_debugging_mvcc_watch_stream_total",
                                 "Total number of watch streams.")),
        watchers(r.NewGauge("etcd_debugging_mvcc_watcher_total",
                            "Total number of watchers.")),
        events(r.NewCounter("etcd_debugging_mvcc_events_total",
                            "Total number of events sent by this member.")),
        lease_ttl(r.NewHistogram("etcd_debugging_lease_ttl_total",
                                 "Bucketed histogram of lease TTLs.",
                                 metrics::ExponentialBuckets(1, 2, 24))),
        slow_apply(r.NewCounter("etcd_server_slow_apply_total",
                                "The total number of slow apply requests "
                                "(likely overloaded from slow disk).")),
        defrag_secs(r.NewHistogram(
            "etcd_disk_backend_defrag_duration_seconds",
            "The latency distribution of backend defragmentation.",
            metrics::ExponentialBuckets(.1, 2, 13))),
        defrag_inflight(r.NewGauge("etcd_disk_defrag_inflight",
                                   "Whether or not defrag is active on the "
                                   "member. 1 means active, 0 means not.")),
        snapshot_secs(
            r.NewHistogram("etcd_disk_backend_snapshot_duration_seconds",
                           "The latency distribution of backend snapshots.",
                           metrics::ExponentialBuckets(.01, 2, 17))),
        hash_secs(r.NewHistogram(
            "etcd_mvcc_hash_duration_seconds",
            "The latency distribution of storage hash operation.",
            metrics::ExponentialBuckets(.01, 2, 15))),
        hash_rev_secs(r.NewHistogram(
            "etcd_mvcc_hash_rev_duration_seconds",
            "The latency distribution of storage hash by revision operation.",
            metrics::ExponentialBuckets(.01, 2, 15))),
        promote_successes(r.NewCounter(
            "etcd_server_learner_promote_successes",
            "The total number of successful learner promotions while this "
            "member is leader.")),
        promote_failures(r.NewCounterFamily(
            "etcd_server_learner_promote_failures",
            "The total number of failed learner promotions (likely learner "
            "not ready) while this member is leader.",
            {"Reason"})) {
    // Reads take no long-lived transaction: there is never one open.
    r.NewGaugeFunc("etcd_mvcc_db_open_read_transactions",
                   "The number of currently open read transactions",
                   [] { return 0.0; });
  }

  metrics::Family<metrics::Counter>& msg_received;
  metrics::Family<metrics::Counter>& msg_sent;
  metrics::Family<metrics::Histogram>* handling;  // --metrics extensive
  metrics::Family<metrics::Counter>& client_requests;
  metrics::Counter& grpc_received_bytes;
  metrics::Counter& grpc_sent_bytes;
  metrics::Counter &range, &put, &del, &txn;
  metrics::Counter &dbg_range, &dbg_put, &dbg_del, &dbg_txn;
  metrics::Gauge& put_size;
  metrics::Gauge& watch_streams;
  metrics::Gauge& watchers;
  metrics::Counter& events;
  metrics::Histogram& lease_ttl;
  metrics::Counter& slow_apply;
  metrics::Histogram& defrag_secs;
  metrics::Gauge& defrag_inflight;
  metrics::Histogram& snapshot_secs;
  metrics::Histogram& hash_secs;
  metrics::Histogram& hash_rev_secs;
  metrics::Counter& promote_successes;
  metrics::Family<metrics::Counter>& promote_failures;

  using MethodInfo = GrpcMethodFigures;
  // full: "/etcdserverpb.KV/Range" as gRPC names it. The answer lives as
  // long as this object.
  const MethodInfo& Method(std::string_view full, const char* type) {
    {
      absl::ReaderMutexLock l(&methods_mu);
      auto it = methods.find(absl::string_view(full.data(), full.size()));
      if (it != methods.end()) return *it->second;
    }
    auto m = std::make_unique<MethodInfo>();
    std::string_view name = full;
    if (!name.empty() && name[0] == '/') name.remove_prefix(1);
    const size_t slash = name.find('/');
    m->service = std::string(name.substr(0, slash));
    m->method = slash == std::string_view::npos
                    ? std::string(name)
                    : std::string(name.substr(slash + 1));
    m->type = type;
    m->received = &msg_received.WithLabels({m->method, m->service, type});
    m->sent = &msg_sent.WithLabels({m->method, m->service, type});
    m->handling = handling != nullptr
                      ? &handling->WithLabels({m->method, m->service, type})
                      : nullptr;
    m->client_requests_unknown = &ClientRequests(type, "unknown");
    m->is_watch = m->service == "etcdserverpb.Watch" && m->method == "Watch";
    if (m->service == "etcdserverpb.Maintenance") {
      if (m->method == "Defragment") m->timed = &defrag_secs;
      if (m->method == "Snapshot") m->timed = &snapshot_secs;
      if (m->method == "Hash") m->timed = &hash_secs;
      if (m->method == "HashKV") m->timed = &hash_rev_secs;
    }
    m->is_promote =
        m->service == "etcdserverpb.Cluster" && m->method == "MemberPromote";
    absl::MutexLock l(&methods_mu);
    auto [it, added] = methods.emplace(std::string(full), std::move(m));
    return *it->second;
  }
  // etcd_server_client_requests_total's child for a call of grpc_type
  // `type` from a client that sent client-api-version `version`.
  metrics::Counter& ClientRequests(const char* type, std::string_view version) {
    const bool unary = type == std::string_view("unary");
    {
      absl::ReaderMutexLock l(&methods_mu);
      auto& by_version = unary ? unary_requests : stream_requests;
      auto it =
          by_version.find(absl::string_view(version.data(), version.size()));
      if (it != by_version.end()) return *it->second;
    }
    metrics::Counter& c = client_requests.WithLabels(
        {unary ? "unary" : "stream", std::string(version)});
    absl::MutexLock l(&methods_mu);
    (unary ? unary_requests : stream_requests)
        .emplace(std::string(version), &c);
    return c;
  }

  absl::Mutex methods_mu;
  absl::flat_hash_map<std::string, std::unique_ptr<MethodInfo>> methods
      ABSL_GUARDED_BY(methods_mu);
  absl::flat_hash_map<std::string, metrics::Counter*> unary_requests
      ABSL_GUARDED_BY(methods_mu);
  absl::flat_hash_map<std::string, metrics::Counter*> stream_requests
      ABSL_GUARDED_BY(methods_mu);
};

namespace {

using Hook = gx::InterceptionHookPoints;

const char* TypeName(gx::ServerRpcInfo::Type t) {
  switch (t) {
    case gx::ServerRpcInfo::Type::UNARY:
      return "unary";
    case gx::ServerRpcInfo::Type::CLIENT_STREAMING:
      return "client_stream";
    case gx::ServerRpcInfo::Type::SERVER_STREAMING:
      return "server_stream";
    case gx::ServerRpcInfo::Type::BIDI_STREAMING:
      return "bidi_stream";
  }
  return "unary";
}

// etcd's summaries of a slow request (etcdserver/util.go): a range is
// printed whole, a write as the raft request's stringer does, with values
// replaced by their sizes.
std::string Quote(const std::string& s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      out.push_back('\\');
      out.push_back(static_cast<char>(c));
    } else if (c < 0x20 || c >= 0x7f) {
      absl::StrAppendFormat(&out, "\\%03o", c);
    } else {
      out.push_back(static_cast<char>(c));
    }
  }
  out.push_back('"');
  return out;
}

std::string RequestSummary(std::string_view method,
                           const google::protobuf::Message* m) {
  if (m == nullptr) return "";
  if (method == "Put") {
    const auto& p = static_cast<const pb::PutRequest&>(*m);
    std::string s = absl::StrCat("put:<key:", Quote(p.key()),
                                 " value_size:", p.value().size());
    if (p.lease() != 0) absl::StrAppend(&s, " lease:", p.lease());
    return s + " >";
  }
  if (method == "Range") {
    // gogoproto's compact text, as etcd prints the request: set fields
    // only, each followed by a space.
    const auto& r = static_cast<const pb::RangeRequest&>(*m);
    std::string s;
    if (!r.key().empty()) absl::StrAppend(&s, "key:", Quote(r.key()), " ");
    if (!r.range_end().empty()) {
      absl::StrAppend(&s, "range_end:", Quote(r.range_end()), " ");
    }
    if (r.limit() != 0) absl::StrAppend(&s, "limit:", r.limit(), " ");
    if (r.revision() != 0) absl::StrAppend(&s, "revision:", r.revision(), " ");
    if (r.sort_order() != 0) {
      absl::StrAppend(&s, "sort_order:",
                      pb::RangeRequest_SortOrder_Name(r.sort_order()), " ");
    }
    if (r.sort_target() != 0) {
      absl::StrAppend(&s, "sort_target:",
                      pb::RangeRequest_SortTarget_Name(r.sort_target()), " ");
    }
    if (r.serializable()) s += "serializable:true ";
    if (r.keys_only()) s += "keys_only:true ";
    if (r.count_only()) s += "count_only:true ";
    if (r.min_mod_revision() != 0) {
      absl::StrAppend(&s, "min_mod_revision:", r.min_mod_revision(), " ");
    }
    if (r.max_mod_revision() != 0) {
      absl::StrAppend(&s, "max_mod_revision:", r.max_mod_revision(), " ");
    }
    if (r.min_create_revision() != 0) {
      absl::StrAppend(&s, "min_create_revision:", r.min_create_revision(), " ");
    }
    if (r.max_create_revision() != 0) {
      absl::StrAppend(&s, "max_create_revision:", r.max_create_revision(), " ");
    }
    return s;
  }
  if (method == "DeleteRange") {
    const auto& d = static_cast<const pb::DeleteRangeRequest&>(*m);
    std::string s = "delete_range:<";
    if (!d.key().empty()) absl::StrAppend(&s, "key:", Quote(d.key()), " ");
    if (!d.range_end().empty()) {
      absl::StrAppend(&s, "range_end:", Quote(d.range_end()), " ");
    }
    if (d.prev_kv()) s += "prev_kv:true ";
    return s + ">";
  }
  if (method == "Txn") {
    const auto& t = static_cast<const pb::TxnRequest&>(*m);
    return absl::StrCat("txn:<compare_size:", t.compare_size(),
                        " success_size:", t.success_size(),
                        " failure_size:", t.failure_size(), " >");
  }
  return m->ShortDebugString();
}

// etcd's isTxnReadonly: every op of both branches is a range.
bool IsReadOnlyTxn(const pb::TxnRequest& t) {
  for (const auto* ops : {&t.success(), &t.failure()}) {
    for (const pb::RequestOp& op : *ops) {
      if (!op.has_request_range()) return false;
    }
  }
  return true;
}

// The request of a slow apply as etcd's InternalRaftStringer prints it:
// the header in compact text, then the request (values as sizes).
std::string ApplySummary(const pb::InternalRaftRequest& r) {
  const pb::RequestHeader& h = r.header();
  std::string s = absl::StrCat("header:<ID:", h.id(), " ");
  if (!h.username().empty()) {
    absl::StrAppend(&s, "username:", Quote(h.username()), " ");
  }
  if (h.auth_revision() != 0) {
    absl::StrAppend(&s, "auth_revision:", h.auth_revision(), " ");
  }
  s += "> ";
  if (r.has_put()) return s + RequestSummary("Put", &r.put());
  if (r.has_delete_range()) {
    return s + RequestSummary("DeleteRange", &r.delete_range());
  }
  if (r.has_txn()) return s + RequestSummary("Txn", &r.txn());
  if (r.has_compaction()) {
    absl::StrAppend(&s, "compaction:<revision:", r.compaction().revision(),
                    " ");
    if (r.compaction().physical()) s += "physical:true ";
    return s + ">";
  }
  if (r.has_lease_grant()) {
    return s + absl::StrFormat("lease_grant:<ttl:%d-second id:%016x>",
                               r.lease_grant().ttl(),
                               static_cast<uint64_t>(r.lease_grant().id()));
  }
  if (r.has_lease_revoke()) {
    return s + absl::StrFormat("lease_revoke:<id:%016x>",
                               static_cast<uint64_t>(r.lease_revoke().id()));
  }
  pb::InternalRaftRequest rest = r;
  rest.clear_header();
  return s + rest.ShortDebugString();
}

}  // namespace

CallFigures::CallFigures(GrpcTrafficMetrics::Families* f, TraceFile* trace,
                         std::string_view full_method, const char* type)
    : f_(f), trace_(trace), m_(&f->Method(full_method, type)) {
  if (m_->is_watch) f_->watch_streams.Inc();
}

CallFigures::~CallFigures() {
  if (defrag_running_) f_->defrag_inflight.Dec();
  if (lane_ >= 0) trace_->ReleaseLane(lane_);
  if (m_->is_watch) {
    f_->watch_streams.Dec();
    f_->watchers.Add(-static_cast<double>(open_watchers_));
  }
}

bool CallFigures::is_watch() const { return m_->is_watch; }

void CallFigures::Started(const std::string_view* client_api_version) {
  start_ = std::chrono::steady_clock::now();
  if (m_->timed == &f_->defrag_secs && !defrag_running_) {
    defrag_running_ = true;
    f_->defrag_inflight.Inc();
  }
  if (trace_ != nullptr) {
    lane_ = trace_->AcquireLane();
    trace_start_us_ = trace_->NowUs();
  }
  metrics::Counter* requests = m_->client_requests_unknown;
  if (client_api_version != nullptr) {
    requests = &f_->ClientRequests(m_->type, *client_api_version);
  }
  requests->Inc();
}

void CallFigures::Received(const google::protobuf::Message& msg) {
  m_->received->Inc();
  f_->grpc_received_bytes.Inc(static_cast<double>(msg.ByteSizeLong()));
  OnRequest(msg);
}

void CallFigures::ReceivedRaw(size_t bytes) {
  m_->received->Inc();
  f_->grpc_received_bytes.Inc(static_cast<double>(bytes));
}

void CallFigures::SummarizeRequestNow() {
  if (request_ == nullptr) return;
  summary_ = RequestSummary(m_->method, request_);
  request_ = nullptr;
}

const std::string& CallFigures::RequestSummaryText() {
  SummarizeRequestNow();
  return summary_;
}

void CallFigures::Sent(const google::protobuf::Message& msg) {
  m_->sent->Inc();
  f_->grpc_sent_bytes.Inc(static_cast<double>(msg.ByteSizeLong()));
  OnResponse(msg);
}

void CallFigures::SentWatch(const grpc::ByteBuffer& bb) {
  m_->sent->Inc();
  f_->grpc_sent_bytes.Inc(static_cast<double>(bb.Length()));
  OnWatchResponse(SummarizeWatchResponse(bb));
}

void CallFigures::SentWatch(const std::vector<grpc::Slice>& slices,
                            size_t bytes) {
  m_->sent->Inc();
  f_->grpc_sent_bytes.Inc(static_cast<double>(bytes));
  OnWatchResponse(SummarizeWatchResponse(slices));
}

void CallFigures::Finished(const grpc::Status& status) {
  const double secs = std::chrono::duration<double>(
                          std::chrono::steady_clock::now() - start_)
                          .count();
  if (m_->handling != nullptr) m_->handling->Observe(secs);
  if (warn_slow_call_) WarnIfSlow(secs, status);
  // etcd times these inside its backend and store; the shim sees the
  // whole call (a snapshot's stream until its last chunk).
  if (m_->timed != nullptr && status.ok()) m_->timed->Observe(secs);
  if (defrag_running_) {
    defrag_running_ = false;
    f_->defrag_inflight.Dec();
  }
  if (m_->is_promote) {
    // etcd counts on the member that runs the promotion; a member that
    // is not the leader forwards it, as etcd's does.
    if (status.ok()) {
      f_->promote_successes.Inc();
    } else if (status.error_message() != "etcdserver: not leader") {
      f_->promote_failures.WithLabels({status.error_message()}).Inc();
    }
  }
  if (lane_ >= 0) {
    std::string detail = RequestSummaryText();
    if (!status.ok()) {
      absl::StrAppend(&detail, detail.empty() ? "" : " ",
                      "error: ", status.error_message());
    }
    const size_t dot = m_->service.rfind('.');
    trace_->Span(TraceFile::kRequests + lane_, trace_start_us_,
                 absl::StrCat(m_->service.substr(dot + 1), "/", m_->method),
                 detail);
  }
}

void CallFigures::OnRequest(const google::protobuf::Message& msg) {
  if (m_->service == "etcdserverpb.KV") {
    if (m_->method == "Range") {
      f_->range.Inc();
      f_->dbg_range.Inc();
    } else if (m_->method == "Put") {
      f_->put.Inc();
      f_->dbg_put.Inc();
      const auto& p = static_cast<const pb::PutRequest&>(msg);
      f_->put_size.Add(
          static_cast<double>(p.key().size() + p.value().size()));
    } else if (m_->method == "DeleteRange") {
      f_->del.Inc();
      f_->dbg_del.Inc();
    } else if (m_->method == "Txn") {
      f_->txn.Inc();
      f_->dbg_txn.Inc();
    }
    if (m_->type == std::string_view("unary")) {
      request_ = &msg;
      is_kv_unary_ = true;
      // etcd times a read from its arrival, a write's apply only (that
      // warning comes from the engine: WarnSlowApply).
      warn_slow_call_ =
          m_->method == "Range" ||
          (m_->method == "Txn" &&
           IsReadOnlyTxn(static_cast<const pb::TxnRequest&>(msg)));
    }
  } else if (m_->service == "etcdserverpb.Lease" &&
             m_->method == "LeaseGrant") {
    grant_ttl_ = static_cast<const pb::LeaseGrantRequest&>(msg).ttl();
  }
}

// The flags and the event count, read from the response's top-level
// fields (the events themselves are skipped, not decoded).
void CallFigures::OnWatchResponse(const WatchWireSummary& w) {
  if (!w.ok) return;
  if (w.created && !w.canceled) {
    ++open_watchers_;
    f_->watchers.Inc();
  }
  if (w.canceled && !w.created && open_watchers_ > 0) {
    --open_watchers_;
    f_->watchers.Dec();
  }
  f_->events.Inc(w.events);
}

void CallFigures::OnResponse(const google::protobuf::Message& msg) {
  // Grants, revokes and renewals are counted by the engine's lessor
  // (shim/server.cc); the TTL histogram by the answers here.
  if (m_->service == "etcdserverpb.Lease" && m_->method == "LeaseGrant") {
    f_->lease_ttl.Observe(static_cast<double>(grant_ttl_));
  }
  if (is_kv_unary_) response_size_ = msg.ByteSizeLong();
  if (is_kv_unary_ && m_->method == "Range") {
    range_count_ = static_cast<const pb::RangeResponse&>(msg).kvs_size();
  }
}

// etcd's warnOfExpensiveReadOnlyRangeRequest (and its txn twin): a read
// is timed from its arrival to its answer, a linearizable one's wait for
// the read index included.
void CallFigures::WarnIfSlow(double secs, const grpc::Status& status) {
  const absl::Duration took = absl::Seconds(secs);
  if (took <= absl::Milliseconds(kWarnApplyDurationMs)) return;
  f_->slow_apply.Inc();
  std::string response =
      !status.ok() ? ""
      : m_->method == "Range"
          ? absl::StrCat("range_response_count:", range_count_,
                         " size:", response_size_)
          : absl::StrCat("size:", response_size_);
  const std::string& request = RequestSummaryText();
  const char* prefix = m_->method == "Range" ? "read-only range " : "";
  if (!status.ok()) {
    DLOG_WARN(
        "apply request took too long",
        {{"took", took},
         {"expected-duration", absl::Milliseconds(kWarnApplyDurationMs)},
         {"prefix", prefix},
         {"request", request},
         {"response", response},
         {"error", status.error_message()}});
    return;
  }
  DLOG_WARN("apply request took too long",
            {{"took", took},
             {"expected-duration", absl::Milliseconds(kWarnApplyDurationMs)},
             {"prefix", prefix},
             {"request", request},
             {"response", response}});
}

namespace {

// gRPC C++'s calls: the interceptor feeds their CallFigures.
class MetricsInterceptor final : public gx::Interceptor {
 public:
  MetricsInterceptor(GrpcTrafficMetrics::Families* f, TraceFile* trace,
                     gx::ServerRpcInfo* info)
      : call_(f, trace, info->method(), TypeName(info->type())),
        is_watch_(call_.is_watch()) {}

  void Intercept(gx::InterceptorBatchMethods* m) override {
    if (m->QueryInterceptionHookPoint(Hook::POST_RECV_INITIAL_METADATA)) {
      std::string_view version;
      const std::string_view* v = nullptr;
      if (auto* md = m->GetRecvInitialMetadata()) {
        auto it = md->find("client-api-version");
        if (it != md->end()) {
          version = std::string_view(it->second.data(), it->second.size());
          v = &version;
        }
      }
      call_.Started(v);
    }
    if (m->QueryInterceptionHookPoint(Hook::POST_RECV_MESSAGE)) {
      if (is_watch_) {
        // Watch is a raw method (shim/services.cc): its messages are the
        // encoded bytes.
        if (auto* bb = static_cast<grpc::ByteBuffer*>(m->GetRecvMessage())) {
          call_.ReceivedRaw(bb->Length());
        }
      } else if (auto* msg = static_cast<google::protobuf::Message*>(
                     m->GetRecvMessage())) {
        call_.Received(*msg);
        // gRPC C++ may free the request before the status hook.
        call_.SummarizeRequestNow();
      }
    }
    if (m->QueryInterceptionHookPoint(Hook::PRE_SEND_MESSAGE)) {
      if (is_watch_) {
        if (auto* bb =
                static_cast<const grpc::ByteBuffer*>(m->GetSendMessage())) {
          call_.SentWatch(*bb);
        }
      } else if (auto* msg = static_cast<const google::protobuf::Message*>(
                     m->GetSendMessage())) {
        call_.Sent(*msg);
      }
    }
    if (m->QueryInterceptionHookPoint(Hook::PRE_SEND_STATUS)) {
      call_.Finished(m->GetSendStatus());
    }
    m->Proceed();
  }

 private:
  CallFigures call_;
  const bool is_watch_;
};

class MetricsInterceptorFactory final
    : public gx::ServerInterceptorFactoryInterface {
 public:
  explicit MetricsInterceptorFactory(GrpcTrafficMetrics* m) : m_(m) {}
  gx::Interceptor* CreateServerInterceptor(gx::ServerRpcInfo* info) override {
    return new MetricsInterceptor(&m_->families(), m_->trace(), info);
  }

 private:
  GrpcTrafficMetrics* m_;
};

}  // namespace

GrpcTrafficMetrics::GrpcTrafficMetrics(metrics::Registry& r, bool extensive)
    : f_(std::make_unique<Families>(r, extensive)) {}

GrpcTrafficMetrics::~GrpcTrafficMetrics() = default;

std::vector<GrpcTrafficMetrics::Method> GrpcTrafficMetrics::EtcdMethods() {
  std::vector<Method> out;
  for (const char* name : {"etcdserverpb.KV", "etcdserverpb.Watch",
                           "etcdserverpb.Lease", "etcdserverpb.Cluster",
                           "etcdserverpb.Maintenance", "etcdserverpb.Auth"}) {
    const google::protobuf::ServiceDescriptor* sd =
        google::protobuf::DescriptorPool::generated_pool()->FindServiceByName(
            name);
    if (sd == nullptr) continue;
    for (int i = 0; i < sd->method_count(); ++i) {
      const google::protobuf::MethodDescriptor* md = sd->method(i);
      const char* type =
          md->client_streaming()
              ? (md->server_streaming() ? "bidi_stream" : "client_stream")
              : (md->server_streaming() ? "server_stream" : "unary");
      out.push_back({name, md->name(), type});
    }
  }
  return out;
}

void GrpcTrafficMetrics::PreRegister(const Method& m) {
  f_->msg_received.WithLabels({m.method, m.service, m.type});
  f_->msg_sent.WithLabels({m.method, m.service, m.type});
  if (f_->handling != nullptr) {
    f_->handling->WithLabels({m.method, m.service, m.type});
  }
}

std::unique_ptr<CallFigures> GrpcTrafficMetrics::NewCall(
    std::string_view full_method, const char* type) {
  return std::make_unique<CallFigures>(f_.get(), trace_, full_method, type);
}

std::unique_ptr<gx::ServerInterceptorFactoryInterface>
GrpcTrafficMetrics::InterceptorFactory() {
  return std::make_unique<MetricsInterceptorFactory>(this);
}

void GrpcTrafficMetrics::WarnSlowApply(
    const etcdserverpb::InternalRaftRequest& request, std::string_view result,
    int64_t took_ns) {
  f_->slow_apply.Inc();
  std::string_view response;
  const absl::Status status = server::DecodeResultBytes(result, &response);
  const absl::Duration took = absl::Nanoseconds(took_ns);
  const absl::Duration expected = absl::Milliseconds(kWarnApplyDurationMs);
  if (!status.ok()) {
    DLOG_WARN("apply request took too long",
              {{"took", took},
               {"expected-duration", expected},
               {"prefix", ""},
               {"request", ApplySummary(request)},
               {"response", ""},
               {"error", std::string(status.message())}});
    return;
  }
  DLOG_WARN("apply request took too long",
            {{"took", took},
             {"expected-duration", expected},
             {"prefix", ""},
             {"request", ApplySummary(request)},
             {"response", absl::StrCat("size:", response.size())}});
}

}  // namespace detcd::shim
