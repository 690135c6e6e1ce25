#include "shim/server.h"

#include <grpcpp/grpcpp.h>
#include <malloc.h>
#include <openssl/sha.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <fstream>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <thread>
#include <tuple>
#include <utility>

#include "absl/container/node_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "engine/server/etcd_server.h"
#include "engine/util/planted.h"
#include "nlohmann/json.hpp"
#include "shim/auth_token.h"
#include "shim/client_listener.h"
#include "shim/discovery.h"
#include "shim/disk_worker.h"
#include "shim/engine_loop.h"
#include "shim/gateway.h"
#include "shim/go_format.h"
#include "shim/grpc_h2.h"
#include "shim/grpc_h2_proxy.h"
#include "shim/health.h"
#include "shim/join.h"
#include "shim/lock_election.h"
#include "shim/log.h"
#include "shim/maintenance.h"
#include "shim/metrics.h"
#include "shim/page_memory.h"
#include "shim/peer_transport.h"
#include "shim/posix_disk.h"
#include "shim/real_clock.h"
#include "shim/server_metrics.h"
#include "shim/services.h"
#include "shim/trace_file.h"
#include "shim/work_thread.h"

// gperftools' (see ReleaseFreeMemory below).
extern "C" void MallocExtension_ReleaseFreeMemory() __attribute__((weak));
extern "C" void MallocExtension_MarkThreadIdle() __attribute__((weak));

namespace detcd::shim {
namespace {

// The detcd binary links gperftools' tcmalloc (shim/CMakeLists.txt); tests
// and tools that link this library in process keep glibc's malloc. Either
// way, freed pages go back to the system here (the tcmalloc calls are
// weak references, declared above the namespace). tcmalloc keeps what the
// calling thread freed in its thread cache (up to several MiB: 9.4 MiB on
// the engine thread after a restart with 1M keys) unless the thread hands
// it back first.
void ReleaseFreeMemory() {
  if (MallocExtension_ReleaseFreeMemory != nullptr) {
    if (MallocExtension_MarkThreadIdle != nullptr) {
      MallocExtension_MarkThreadIdle();
    }
    MallocExtension_ReleaseFreeMemory();
  } else {
    malloc_trim(0);
  }
}

namespace pb = etcdserverpb;
constexpr int64_t kMs = 1'000'000;
// The largest WAL write (entries) an idle member runs on its engine thread
// (see DiskThread::SetRunInline where it is set).
constexpr size_t kInlineWriteMaxEntries = 4;
// A transport thread that hands the engine at most this many tasks at
// once (a gRPC loop turn's calls, a peer read's raft messages) runs them
// itself when the engine is idle (EngineLoop::ReleaseWakesRunningHere):
// so an idle member's request costs no wake-up of the engine thread, and
// on a follower neither does the leader's append. More go to the engine
// thread, so that under load the transports go on reading meanwhile.
constexpr size_t kRunHereMaxTasks = 4;

uint64_t First8BigEndian(const unsigned char* d) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | d[i];
  return v;
}

std::string Hex(uint64_t id) { return absl::StrFormat("%x", id); }

std::vector<std::string> Raw(const std::vector<Url>& urls) {
  std::vector<std::string> out;
  for (const Url& u : urls) out.push_back(u.raw);
  return out;
}

}  // namespace

absl::StatusOr<Identity> ReadIdentity(PosixDisk& disk) {
  auto text = disk.ReadAll(kIdentityFile);
  if (!text.ok()) return text.status();
  nlohmann::json j = nlohmann::json::parse(*text, nullptr, false);
  if (j.is_discarded() || !j.contains("member_id") ||
      !j.contains("cluster_id")) {
    return absl::DataLossError(
        absl::StrCat("detcd: cannot parse ", disk.Resolve(kIdentityFile)));
  }
  Identity id;
  id.member_id = j["member_id"].get<uint64_t>();
  id.cluster_id = j["cluster_id"].get<uint64_t>();
  return id;
}

absl::Status WriteIdentity(PosixDisk& disk, const Identity& id) {
  nlohmann::json j;
  j["member_id"] = id.member_id;
  j["cluster_id"] = id.cluster_id;
  const std::string tmp = std::string(kIdentityFile) + ".tmp";
  if (auto s = disk.CreateDir("member"); !s.ok()) return s;
  auto f = disk.Create(tmp);
  if (!f.ok()) return f.status();
  if (auto s = (*f)->Append(j.dump() + "\n"); !s.ok()) return s;
  if (auto s = (*f)->Sync(); !s.ok()) return s;
  if (auto s = (*f)->Close(); !s.ok()) return s;
  if (auto s = disk.Rename(tmp, kIdentityFile); !s.ok()) return s;
  return disk.SyncDir("member");
}

namespace {

// Times fsyncs for etcd's disk histograms: WAL files feed
// etcd_disk_wal_fsync_duration_seconds; snapshot files, our counterpart of
// etcd's backend commits, feed etcd_disk_backend_commit_duration_seconds.
// WAL appends also count etcd_disk_wal_write_bytes_total (a gauge in etcd);
// an fsync slower than etcd's warnSyncDuration (1 s) logs its "slow
// fdatasync" warning.
class TimedFile final : public env::WritableFile {
 public:
  TimedFile(std::unique_ptr<env::WritableFile> f, metrics::Histogram* h,
            metrics::Gauge* written, TraceFile* trace, std::string path)
      : f_(std::move(f)),
        h_(h),
        written_(written),
        trace_(trace),
        path_(std::move(path)) {}
  absl::Status Append(std::string_view d) override {
    if (written_ != nullptr) written_->Add(static_cast<double>(d.size()));
    return f_->Append(d);
  }
  absl::Status Sync() override {
    RealClock c;
    const int64_t t0 = c.NowNanos();
    const double trace_t0 = trace_ != nullptr ? trace_->NowUs() : 0;
    absl::Status s = f_->Sync();
    if (trace_ != nullptr) {
      trace_->Span(TraceFile::kWal, trace_t0, "fsync", path_);
    }
    const int64_t took = c.NowNanos() - t0;
    h_->Observe(static_cast<double>(took) / 1e9);
    if (took > 1'000'000'000) {
      DLOG_WARN("slow fdatasync", {{"took", absl::Nanoseconds(took)},
                                   {"expected-duration", absl::Seconds(1)}});
    }
    return s;
  }
  absl::Status Close() override { return f_->Close(); }

 private:
  std::unique_ptr<env::WritableFile> f_;
  metrics::Histogram* h_;
  metrics::Gauge* written_;
  TraceFile* trace_;  // --trace-file, or null
  const std::string path_;
};

class TimedDisk final : public env::DiskWrapper {
 public:
  TimedDisk(env::Disk* d, metrics::Histogram* wal, metrics::Histogram* snap,
            metrics::Gauge* wal_bytes, TraceFile* trace)
      : DiskWrapper(d),
        wal_(wal),
        snap_(snap),
        wal_bytes_(wal_bytes),
        trace_(trace) {}
  absl::StatusOr<std::unique_ptr<env::WritableFile>> OpenAppend(
      const std::string& p) override {
    return Wrap(p, target()->OpenAppend(p));
  }
  absl::StatusOr<std::unique_ptr<env::WritableFile>> Create(
      const std::string& p) override {
    return Wrap(p, target()->Create(p));
  }

 private:
  absl::StatusOr<std::unique_ptr<env::WritableFile>> Wrap(
      const std::string& p,
      absl::StatusOr<std::unique_ptr<env::WritableFile>> f) {
    if (!f.ok()) return f;
    const bool snap = p.find("/snap/") != std::string::npos;
    return std::unique_ptr<env::WritableFile>(
        new TimedFile(*std::move(f), snap ? snap_ : wal_,
                      snap ? nullptr : wal_bytes_, trace_, p));
  }
  metrics::Histogram* wal_;
  metrics::Histogram* snap_;
  metrics::Gauge* wal_bytes_;
  TraceFile* trace_;
};

// The engine's figures for /metrics and /health, published by the engine
// thread after every tick and read by scrapes from other threads.
struct EngineFigures {
  std::atomic<bool> has_leader{false};
  std::atomic<bool> is_leader{false};
  std::atomic<uint64_t> leader{0};
  std::atomic<uint64_t> leader_changes{0};
  std::atomic<uint64_t> committed{0};
  std::atomic<uint64_t> applied{0};
  std::atomic<uint64_t> pending{0};
  std::atomic<uint64_t> term{0};
  std::atomic<int64_t> db_size{0};
  std::atomic<int64_t> db_size_in_use{0};
  std::atomic<int64_t> revision{0};
  std::atomic<int64_t> keys{0};
  std::atomic<bool> failed{false};
  std::atomic<bool> learner{false};  // for etcd's learner RPC rule
  std::atomic<int64_t> compact_revision{0};
  std::atomic<uint64_t> heartbeat_send_failures{0};
  std::atomic<uint64_t> learner_promotions{0};
  // The engine's plain counters (Lessor::Counters, Node::ReadIndexCounters).
  std::atomic<uint64_t> leases_granted{0};
  std::atomic<uint64_t> leases_revoked{0};
  std::atomic<uint64_t> leases_renewed{0};
  std::atomic<uint64_t> leases_expired{0};
  std::atomic<uint64_t> read_indexes_failed{0};
  std::atomic<uint64_t> slow_read_indexes{0};
  std::atomic<uint64_t> auth_revision{0};
  std::atomic<uint64_t> slow_watchers{0};  // the watch hub's unsynced ones
  std::atomic<int64_t> compacted_revisions{0};  // KvStore's count
};

class GrpcMetrics final : public CallObserver {
 public:
  explicit GrpcMetrics(metrics::Registry& r)
      : started_(r.NewCounterFamily(
            "grpc_server_started_total",
            "Total number of RPCs started on the server.",
            {"grpc_method", "grpc_service", "grpc_type"})),
        handled_(r.NewCounterFamily(
            "grpc_server_handled_total",
            "Total number of RPCs completed on the server, regardless of "
            "success or failure.",
            {"grpc_code", "grpc_method", "grpc_service", "grpc_type"})),
        failed_(r.NewCounter("etcd_server_proposals_failed_total",
                             "The total number of failed proposals seen.")) {}
  // As go-grpc-prometheus's Register: started and handled (every code)
  // exist at zero for each method from the start.
  void PreRegister(const std::string& service, const std::string& method,
                   const std::string& type) {
    started_.WithLabels({method, service, type});
    for (int code = 0; code <= 16; ++code) {
      handled_.WithLabels({CodeName(code), method, service, type});
    }
  }
  void OnStarted(const char* service, const char* method,
                 const char* type) override {
    Of(service, method, type).started->Inc();
  }
  void OnHandled(const char* service, const char* method, const char* type,
                 int code) override {
    const Children& c = Of(service, method, type);
    if (code >= 0 && code <= 16) {
      c.handled[code]->Inc();
    } else {
      handled_.WithLabels({CodeName(code), method, service, type}).Inc();
    }
    if (code != 0 && c.counts_failures) failed_.Inc();
  }

 private:
  // A method's children, found once: the services name their methods with
  // string literals, so the names' addresses identify a method (two copies
  // of one literal only make two entries for the same children).
  // WithLabels builds label vectors and takes the family's mutex per call.
  struct Children {
    metrics::Counter* started;
    metrics::Counter* handled[17];
    bool counts_failures;  // a write: etcd_server_proposals_failed_total
  };
  using Key = std::tuple<const char*, const char*, const char*>;
  const Children& Of(const char* service, const char* method,
                     const char* type) {
    const Key key{service, method, type};
    {
      absl::ReaderMutexLock l(&mu_);
      auto it = children_.find(key);
      if (it != children_.end()) return it->second;
    }
    Children c;
    c.started = &started_.WithLabels({method, service, type});
    for (int code = 0; code <= 16; ++code) {
      c.handled[code] =
          &handled_.WithLabels({CodeName(code), method, service, type});
    }
    const std::string_view m = method;
    c.counts_failures = m == "Put" || m == "Txn" || m == "DeleteRange" ||
                        m == "LeaseGrant" || m == "LeaseRevoke" ||
                        m == "Compact";
    absl::MutexLock l(&mu_);
    // node_hash_map: the entry's address stays put as others are added.
    return children_.emplace(key, c).first->second;
  }

  static const char* CodeName(int code) {
    static constexpr const char* kNames[] = {
        "OK",        "Canceled",          "Unknown",          "InvalidArgument",
        "DeadlineExceeded", "NotFound",   "AlreadyExists",    "PermissionDenied",
        "ResourceExhausted", "FailedPrecondition", "Aborted", "OutOfRange",
        "Unimplemented", "Internal",      "Unavailable",      "DataLoss",
        "Unauthenticated"};
    return code >= 0 && code <= 16 ? kNames[code] : "Unknown";
  }
  metrics::Family<metrics::Counter>& started_;
  metrics::Family<metrics::Counter>& handled_;
  metrics::Counter& failed_;
  absl::Mutex mu_;
  absl::node_hash_map<Key, Children> children_ ABSL_GUARDED_BY(mu_);
};

bool AnyHttps(const std::vector<Url>& urls) {
  for (const Url& u : urls) {
    if (u.scheme == "https" || u.scheme == "unixs") return true;
  }
  return false;
}

TlsFiles ToTlsFiles(const ServerConfig& c, const TlsConfig& t,
                    const std::string& auto_dir, const std::vector<Url>& urls) {
  TlsFiles f;
  f.cert_file = t.cert_file;
  f.key_file = t.key_file;
  f.trusted_ca_file = t.trusted_ca_file;
  f.crl_file = t.crl_file;
  f.client_cert_auth = t.client_cert_auth;
  f.auto_tls = t.auto_tls;
  f.auto_tls_dir = auto_dir;
  for (const Url& u : urls) f.hosts.push_back(u.host);
  f.self_signed_cert_validity_years = c.self_signed_cert_validity;
  f.cipher_suites = c.cipher_suites;
  f.min_version = c.tls_min_version;
  f.max_version = c.tls_max_version;
  f.allowed_cn = t.allowed_cn;
  f.allowed_hostname = t.allowed_hostname;
  return f;
}

}  // namespace

uint64_t ComputeMemberId(std::vector<std::string> peer_urls,
                         const std::string& token) {
  std::sort(peer_urls.begin(), peer_urls.end());
  std::string b = absl::StrJoin(peer_urls, "") + token;
  unsigned char d[SHA_DIGEST_LENGTH];
  SHA1(reinterpret_cast<const unsigned char*>(b.data()), b.size(), d);
  return First8BigEndian(d);
}

uint64_t ComputeClusterId(std::vector<uint64_t> ids) {
  std::sort(ids.begin(), ids.end());
  std::string b;
  for (uint64_t id : ids) {
    for (int i = 7; i >= 0; --i) b.push_back(static_cast<char>(id >> (8 * i)));
  }
  unsigned char d[SHA_DIGEST_LENGTH];
  SHA1(reinterpret_cast<const unsigned char*>(b.data()), b.size(), d);
  return First8BigEndian(d);
}

absl::StatusOr<Identity> IdentityFromConfig(const ServerConfig& c) {
  if (!c.initial_cluster_error.empty()) {
    return absl::InvalidArgumentError(c.initial_cluster_error);
  }
  Identity id;
  const ClusterMember* self = nullptr;
  for (const ClusterMember& m : c.initial_cluster) {
    std::vector<std::string> urls = Raw(m.peer_urls);
    Identity::Founder f{ComputeMemberId(urls, c.initial_cluster_token), m.name,
                        urls};
    for (const Identity::Founder& o : id.founders) {
      if (o.id == f.id) {
        return absl::InvalidArgumentError(absl::StrCat(
            "member count is unequal: duplicate member ", Hex(f.id),
            " in --initial-cluster"));
      }
    }
    id.founders.push_back(f);
    if (m.name == c.name) self = &m;
  }
  if (self == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(
        "couldn't find local name \"", c.name,
        "\" in the initial cluster configuration"));
  }
  // etcd: the advertised peer URLs must be exactly this member's URLs in
  // --initial-cluster.
  std::vector<std::string> adv = Raw(c.initial_advertise_peer_urls);
  std::vector<std::string> mine = Raw(self->peer_urls);
  std::sort(adv.begin(), adv.end());
  std::sort(mine.begin(), mine.end());
  if (adv != mine) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--initial-cluster has ", c.name, "=", absl::StrJoin(mine, ","),
        " but missing from --initial-advertise-peer-urls=",
        absl::StrJoin(adv, ",")));
  }
  std::vector<uint64_t> ids;
  for (const Identity::Founder& f : id.founders) {
    ids.push_back(f.id);
    if (f.name == c.name) id.member_id = f.id;
  }
  id.cluster_id = ComputeClusterId(ids);
  return id;
}

struct DetcdServer::Impl {
  ServerConfig cfg;
  // --trace-file's writer (null without the flag): declared first so it
  // outlives everything that writes to it; closed at the end of Teardown.
  std::unique_ptr<TraceFile> trace;
  uint64_t traced_applied = 0;  // engine thread
  Identity identity;
  std::unique_ptr<DataDirLock> lock;
  RealClock clock;
  std::unique_ptr<PosixDisk> disk;
  std::unique_ptr<TimedDisk> timed_disk;
  // The WAL's writes and fdatasyncs, off the engine thread; destroyed after
  // the server (its Node drains it), stopped in Teardown after the loop.
  std::unique_ptr<DiskThread> disk_thread;
  // A finished snapshot file's fsync, rename and directory sync
  // (env::Disk::file_worker), beside the log's writes.
  std::unique_ptr<DiskThread> snap_disk_thread;
  std::unique_ptr<env::SeededRng> rng;
  std::unique_ptr<PeerTransport> transport;
  // bcrypt off the engine thread (env::Offload); outlives the server,
  // stopped in Teardown after the loop.
  std::unique_ptr<OffloadThread> offload;
  // A restart's snapshot file and image go back page by page as they are
  // read (env::Memory).
  PageMemory memory;
  // The native transport once started, for the engine's batch hooks
  // (HoldAnswers / ReleaseAnswers); it outlives the engine loop.
  std::atomic<h2::Server*> h2_answers{nullptr};
  std::unique_ptr<server::EtcdServer> server;
  std::unique_ptr<EngineLoop> loop;
  std::unique_ptr<GrpcMetrics> grpc_metrics;
  std::unique_ptr<GrpcTrafficMetrics> traffic_metrics;
  // The last tick on the engine thread, for etcd's "leader failed to send
  // out heartbeat on time" warning.
  int64_t last_tick_ns = 0;
  std::unique_ptr<Services> services;
  std::unique_ptr<LockElection> lock_election;
  std::unique_ptr<grpc::Server> grpc_server;
  // --native-grpc: the client URLs' gRPC transport (relays to grpc_server
  // what it does not serve itself).
  std::unique_ptr<h2::Server> grpc_h2;
  std::vector<std::unique_ptr<ClientListener>> listeners;
  // The client listener whose TLS peers' certificate CNs calls carry (auth
  // with --client-cert-auth); set once it exists.
  std::atomic<ClientListener*> cert_listener{nullptr};
  EngineFigures figures;
  std::atomic<bool> engine_ready{false};
  std::unique_ptr<HealthEndpoints> health;
  metrics::Family<metrics::Counter>* metrics_requests = nullptr;
  metrics::Gauge* metrics_in_flight = nullptr;
  bool published = false;
  int publish_wait_ticks = 0;
  // Membership changes reach the peer transport (SyncPeers, engine
  // thread); the removed ids its handshake refuses are read by its threads.
  std::vector<server::MemberInfo> known_members;
  absl::Mutex removed_mu;
  std::set<uint64_t> removed_ids ABSL_GUARDED_BY(removed_mu);
  int64_t removed_since_ms = 0;  // when this member learned it was removed
  std::atomic<bool> removed{false};

  absl::Mutex mu;
  bool stopped ABSL_GUARDED_BY(mu) = false;
  absl::Status failure ABSL_GUARDED_BY(mu);

  ~Impl() { Teardown(); }
  void Teardown();
  void TransferLeadershipBeforeStop();
  void FinishSnapshotBeforeStop();

  // Engine thread.
  void OnTick() {
    CheckHeartbeatDelay();
    MaybeAdvanceTicks();
    server->Tick();
    SyncPeers();
    Publish();
    PublishFigures();
    TrimAfterRecovery();
  }
  // Recovery reads the snapshot file and replays the WAL's tail through
  // buffers that are freed once the recovered entries are applied, but the
  // allocator keeps those pages: a member restarted with 1M keys stayed at
  // 552 MiB RSS against 517 MiB before its restart. Once the commit index
  // known at start is applied, they go back to the system, once (engine
  // thread; ReleaseFreeMemory).
  uint64_t recovered_commit = 0;
  bool recovery_trimmed = false;
  void TrimAfterRecovery() {
    if (recovery_trimmed) return;
    if (server->node().applied_index() < recovered_commit) return;
    recovery_trimmed = true;
    ReleaseFreeMemory();
  }
  // etcd's initial election tick advance with peers (engine thread):
  // ticks left to wait for connected peers, 0 when done or not asked.
  int advance_ticks_left = 0;
  int election_ticks = 0;
  absl::Duration Ticks(int n) const {
    return absl::Milliseconds(int64_t{n} * cfg.heartbeat_interval_ms);
  }
  void MaybeAdvanceTicks();
  void SyncPeers();
  bool StopIfRemoved();
  HttpResponse PeerHttp(const HttpRequest& r);
  void PublishFigures();
  // The store's O(1) figures (revision, compact revision, keys): after
  // every batch too, before its answers leave, so a client that saw its
  // write answered finds it in the metrics (etcd's gauges move with each
  // write). The db sizes stay with the tick (etcd's move with its
  // backend's commits, every 100 ms).
  void PublishStoreFigures();
  void Publish();
  HttpResponse Http(const HttpRequest& r);
  HealthSource MakeHealthSource();
  void CheckHeartbeatDelay();
  void RegisterMetrics();
};

void DetcdServer::Impl::MaybeAdvanceTicks() {
  if (advance_ticks_left <= 0) return;
  --advance_ticks_left;
  // etcd counts peers whose stream is up and advances once more than one
  // is (so a 2-member cluster never does, as etcd 3.4).
  const int active = transport->Stats().active_peers;
  if (active <= 1) return;
  advance_ticks_left = 0;
  const int ticks = election_ticks - 2;
  DLOG_INFO("initialized peer connections; fast-forwarding election ticks",
            {{"local-member-id", Hex(identity.member_id)},
             {"forward-ticks", ticks},
             {"forward-duration", Ticks(ticks)},
             {"election-ticks", election_ticks},
             {"election-timeout", Ticks(election_ticks)},
             {"active-remote-members", active}});
  server->AdvanceRaftTicks(ticks);
}

void DetcdServer::Impl::PublishFigures() {
  const server::Node& n = server->node();
  if (n.failed()) {
    absl::MutexLock l(&mu);
    if (failure.ok()) {
      failure = n.failure();
      DLOG_ERROR("the engine stopped after a disk error",
                 {{"error", std::string(n.failure().message())}});
    }
    figures.failed = true;
    return;
  }
  if (StopIfRemoved()) return;
  const uint64_t lead = n.leader();
  if (lead != figures.leader.load()) {
    if (trace) {
      trace->Instant(TraceFile::kRaft, lead != 0 ? "leader" : "lost leader",
                     absl::StrCat("leader ", Hex(lead), " term ",
                                  n.raft().term()));
    }
    if (lead != 0) {
      figures.leader_changes.fetch_add(1);
      DLOG_INFO("raft.node: elected leader",
                {{"local-member-id", Hex(server->id())},
                 {"leader-member-id", Hex(lead)},
                 {"term", n.raft().term()}});
    } else {
      DLOG_INFO("raft.node: lost leader",
                {{"local-member-id", Hex(server->id())},
                 {"term", n.raft().term()}});
    }
    figures.leader = lead;
  }
  figures.has_leader = lead != 0;
  figures.is_leader = n.is_leader();
  figures.learner = server->CheckLearnerRpc(false).ok() == false;
  figures.committed = n.raft().hard_state().commit;
  figures.applied = n.applied_index();
  if (trace && n.applied_index() != traced_applied) {
    trace->Instant(TraceFile::kApply, "applied",
                   absl::StrCat("index ", n.applied_index(), " (+",
                                n.applied_index() - traced_applied, ")"));
    traced_applied = n.applied_index();
  }
  figures.pending = n.pending_requests();
  figures.term = n.raft().term();
  PublishStoreFigures();
  figures.db_size = server->state().db_size();
  figures.db_size_in_use = server->state().db_size_in_use();
  const lease::Lessor::Counters& lc = server->state().lessor().counters();
  figures.leases_granted = lc.granted;
  figures.leases_revoked = lc.revoked;
  figures.leases_renewed = lc.renewed;
  figures.leases_expired = lc.expired;
  figures.read_indexes_failed = n.read_index_counters().failed;
  figures.slow_read_indexes = n.read_index_counters().slow;
  figures.auth_revision = server->state().auth().revision();
  figures.slow_watchers = server->watch_hub().unsynced();
  figures.compacted_revisions = server->state().kv().compacted_revisions();
}

void DetcdServer::Impl::PublishStoreFigures() {
  figures.revision = server->state().kv().Rev();
  figures.compact_revision = server->state().kv().CompactRev();
  figures.keys = static_cast<int64_t>(server->state().kv().key_count());
}

// As etcd's applyConfChange tells its transport: members added or moved
// become peers (SetPeer), removed ones are dropped, and their handshakes
// are refused from then on (the peer port's 410 Gone).
void DetcdServer::Impl::SyncPeers() {
  const server::Membership& ms = server->state().membership();
  std::vector<server::MemberInfo> now = ms.List();
  if (now == known_members) return;
  for (const server::MemberInfo& m : now) {
    if (m.id == identity.member_id) continue;
    auto old = std::find_if(known_members.begin(), known_members.end(),
                            [&](const auto& k) { return k.id == m.id; });
    if (old == known_members.end() || old->peer_urls != m.peer_urls) {
      transport->SetPeer(m.id, m.peer_urls);
    }
  }
  {
    absl::MutexLock l(&removed_mu);
    removed_ids.insert(ms.removed_ids().begin(), ms.removed_ids().end());
  }
  for (const server::MemberInfo& k : known_members) {
    if (ms.Find(k.id) == nullptr) transport->RemovePeer(k.id);
  }
  known_members = std::move(now);
}

// etcd stops a removed member a second after it learns of its removal
// (stopWithDelay), with these two lines, and its process exits 0.
bool DetcdServer::Impl::StopIfRemoved() {
  if (!server->removed()) return false;
  const int64_t now_ms = clock.NowNanos() / kMs;
  if (removed_since_ms == 0) removed_since_ms = now_ms;
  if (now_ms - removed_since_ms < 1000) return false;
  absl::MutexLock l(&mu);
  if (failure.ok()) {
    DLOG_WARN("server error",
              {{"error",
                "the member has been permanently removed from the cluster"}});
    DLOG_WARN("data-dir used by this member must be removed");
    removed = true;
    failure = absl::FailedPreconditionError(
        "the member has been permanently removed from the cluster");
  }
  return true;
}

// etcd's peer handler: GET /members (what joining members ask) and
// /version; anything else is not found.
HttpResponse DetcdServer::Impl::PeerHttp(const HttpRequest& req) {
  HttpResponse out;
  if (req.path != "/members" && req.path != "/version") {
    out.status = 404;
    out.body = "404 page not found\n";
    return out;
  }
  if (req.method != "GET") {
    out.status = 405;
    out.headers.push_back({"Allow", "GET"});
    out.body = "Method Not Allowed\n";
    return out;
  }
  out.content_type = "application/json";
  if (req.path == "/version") {
    nlohmann::json j;
    j["etcdserver"] = kServerVersion;
    j["etcdcluster"] = kClusterVersion;
    out.body = j.dump();
    return out;
  }
  std::vector<server::MemberInfo> members;
  bool got = false;
  if (engine_ready.load(std::memory_order_acquire)) {
    loop->RunSync([&] {
      members = server->state().membership().List();
      got = true;
    });
  }
  if (!got) {
    out.status = 503;
    out.content_type = "text/plain; charset=utf-8";
    out.body = "not ready\n";
    return out;
  }
  out.headers.push_back({"X-Etcd-Cluster-ID", Hex(identity.cluster_id)});
  out.body = PeerMembersJson(members);
  return out;
}

// etcd publishes the member's name and client URLs through raft once it
// has a leader, and retries until the entry is applied.
void DetcdServer::Impl::Publish() {
  if (published || server->node().leader() == 0) return;
  if (publish_wait_ticks > 0) {
    --publish_wait_ticks;
    return;
  }
  // Retry after the request timeout if no answer came.
  publish_wait_ticks = 1 << 30;
  server->Publish(
      cfg.name, Raw(cfg.advertise_client_urls), [this](absl::Status s) {
        if (s.ok()) {
          published = true;
          DLOG_INFO("published local member to cluster through raft",
                    {{"local-member-id", Hex(identity.member_id)},
                     {"local-member-attributes",
                      absl::StrCat("{Name:", cfg.name, " ClientURLs:[",
                                   absl::StrJoin(Raw(cfg.advertise_client_urls),
                                                 " "),
                                   "]}")},
                     {"cluster-id", Hex(identity.cluster_id)}});
          return;
        }
        DLOG_WARN("failed to publish local member to cluster through raft",
                  {{"error", std::string(s.message())}});
        publish_wait_ticks = 10;
      });
}

// etcd 3.4's server, mvcc and network families from the engine's published
// figures and the peer transport (docs/metrics.md lists every etcd family).
void DetcdServer::Impl::RegisterMetrics() {
  metrics::Registry& r = metrics::DefaultRegistry();
  EngineFigures* f = &figures;
  auto figure = [](const auto& a) {
    return [&a] { return static_cast<double>(a.load()); };
  };
  r.NewGaugeFunc("etcd_server_has_leader",
                 "Whether or not a leader exists. 1 is existence, 0 is not.",
                 [f] { return f->has_leader ? 1.0 : 0.0; });
  r.NewGaugeFunc("etcd_server_is_leader",
                 "Whether or not this member is a leader. 1 if is, 0 "
                 "otherwise.",
                 [f] { return f->is_leader ? 1.0 : 0.0; });
  r.NewGaugeFunc("etcd_server_is_learner",
                 "Whether or not this member is a learner. 1 if is, 0 "
                 "otherwise.",
                 [f] { return f->learner ? 1.0 : 0.0; });
  r.NewCounterFunc("etcd_server_leader_changes_seen_total",
                   "The number of leader changes seen.",
                   figure(f->leader_changes));
  r.NewCounterFunc("etcd_server_heartbeat_send_failures_total",
                   "The total number of leader heartbeat send failures "
                   "(likely overloaded from slow disk).",
                   figure(f->heartbeat_send_failures));
  // Gauges in etcd 3.4, though named _total.
  r.NewGaugeFunc("etcd_server_proposals_committed_total",
                 "The total number of consensus proposals committed.",
                 figure(f->committed));
  r.NewGaugeFunc("etcd_server_proposals_applied_total",
                 "The total number of consensus proposals applied.",
                 figure(f->applied));
  r.NewGaugeFunc("etcd_server_proposals_pending",
                 "The current number of pending proposals to commit.",
                 figure(f->pending));
  // Snapshots are applied within one engine step and the figures are
  // published between steps, so a scrape never sees one in progress.
  r.NewGaugeFunc("etcd_server_snapshot_apply_in_progress_total",
                 "1 if the server is applying the incoming snapshot. 0 if "
                 "none.",
                 [] { return 0.0; });
  r.NewGaugeFunc("etcd_server_quota_backend_bytes",
                 "Current backend storage quota size in bytes.",
                 [q = static_cast<double>(cfg.quota_backend_bytes > 0
                                              ? cfg.quota_backend_bytes
                                              : int64_t{2} << 30)] {
                   return q;
                 });
  r.NewGaugeFamily("etcd_server_version",
                   "Which version is running. 1 for 'server_version' label "
                   "with current version.",
                   {"server_version"})
      .WithLabels({kServerVersion})
      .Set(1);
  r.NewGaugeFamily("etcd_cluster_version",
                   "Which version is running. 1 for 'cluster_version' label "
                   "with current cluster version",
                   {"cluster_version"})
      .WithLabels({std::string(kClusterVersion, 3)})
      .Set(1);
  r.NewGaugeFamily("etcd_server_id",
                   "Server or member ID in hexadecimal format. 1 for "
                   "'server_id' label with current ID.",
                   {"server_id"})
      .WithLabels({Hex(identity.member_id)})
      .Set(1);
  r.NewGaugeFunc("etcd_mvcc_db_total_size_in_bytes",
                 "Total size of the underlying database physically allocated "
                 "in bytes.",
                 figure(f->db_size));
  r.NewGaugeFunc("etcd_debugging_mvcc_db_total_size_in_bytes",
                 "Total size of the underlying database physically allocated "
                 "in bytes.",
                 figure(f->db_size));
  r.NewGaugeFunc("etcd_mvcc_db_total_size_in_use_in_bytes",
                 "Total size of the underlying database logically in use in "
                 "bytes.",
                 figure(f->db_size_in_use));
  r.NewGaugeFunc("etcd_debugging_mvcc_current_revision",
                 "The current revision of store.", figure(f->revision));
  r.NewGaugeFunc("etcd_debugging_mvcc_compact_revision",
                 "The revision of the last compaction in store.",
                 figure(f->compact_revision));
  r.NewGaugeFunc("etcd_debugging_mvcc_keys_total",
                 "Total number of keys.", figure(f->keys));
  // Counted by the engine where etcd counts them (the lessor's apply and
  // renew, the leader's revoke of an expired lease, the ReadIndex path).
  r.NewCounterFunc("etcd_debugging_lease_granted_total",
                   "The total number of granted leases.",
                   figure(f->leases_granted));
  r.NewCounterFunc("etcd_debugging_lease_revoked_total",
                   "The total number of revoked leases.",
                   figure(f->leases_revoked));
  r.NewCounterFunc("etcd_debugging_lease_renewed_total",
                   "The number of renewed leases seen by the leader.",
                   figure(f->leases_renewed));
  r.NewCounterFunc("etcd_debugging_server_lease_expired_total",
                   "The total number of expired leases.",
                   figure(f->leases_expired));
  r.NewCounterFunc("etcd_server_read_indexes_failed_total",
                   "The total number of failed read indexes seen.",
                   figure(f->read_indexes_failed));
  r.NewCounterFunc("etcd_server_slow_read_indexes_total",
                   "The total number of pending read indexes not in sync with "
                   "leader's or timed out read index requests.",
                   figure(f->slow_read_indexes));
  r.NewGaugeFunc("etcd_debugging_auth_revision",
                 "The current revision of auth store.",
                 figure(f->auth_revision));
  // As etcd's gauge: watchers behind the store (catching up from history,
  // or refused by a full stream).
  r.NewGaugeFunc("etcd_debugging_mvcc_slow_watcher_total",
                 "Total number of unsynced slow watchers.",
                 figure(f->slow_watchers));
  // Events the Watch service has queued for its streams and not written.
  r.NewGaugeFunc("etcd_debugging_mvcc_pending_events_total",
                 "Total number of pending events to be sent.",
                 [s = services.get()] {
                   return static_cast<double>(s->pending_watch_events());
                 });
  // etcd's compaction families. The engine's KvStore counts the removed
  // revisions. detcd compacts its in-memory index and store in one step
  // (nothing runs in the background, nothing is batched): the index pause
  // and the total time that same step, the compaction request's apply;
  // the db pause, which etcd observes between two batches of 1000 keys,
  // is never observed, as in etcd for a compaction of one batch.
  r.NewCounterFunc("etcd_debugging_mvcc_db_compaction_keys_total",
                   "Total number of db keys compacted.",
                   figure(f->compacted_revisions));
  metrics::Histogram* index_pause = &r.NewHistogram(
      "etcd_debugging_mvcc_index_compaction_pause_duration_milliseconds",
      "Bucketed histogram of index compaction pause duration.",
      metrics::ExponentialBuckets(0.5, 2, 14));
  r.NewHistogram(
      "etcd_debugging_mvcc_db_compaction_pause_duration_milliseconds",
      "Bucketed histogram of db compaction pause duration.",
      metrics::ExponentialBuckets(1, 2, 13));
  metrics::Histogram* db_total = &r.NewHistogram(
      "etcd_debugging_mvcc_db_compaction_total_duration_milliseconds",
      "Bucketed histogram of db compaction total duration.",
      metrics::ExponentialBuckets(100, 2, 14));
  // Installed on the engine thread, which is already running.
  loop->RunSync([&] {
    using P = server::EtcdStateMachine::CompactionPhase;
    server->set_on_compaction(
        [index_pause, db_total,
         start = std::chrono::steady_clock::time_point()](P p) mutable {
          const auto now = std::chrono::steady_clock::now();
          if (p == P::kStart) {
            start = now;
            return;
          }
          const double ms =
              std::chrono::duration<double, std::milli>(now - start).count();
          // The apply is the pause (etcd's index compaction); the removal
          // after it, in steps, ends the total.
          (p == P::kApplied ? index_pause : db_total)->Observe(ms);
        });
  });
  PeerTransport* t = transport.get();
  const std::string local = Hex(identity.member_id);
  using LV = metrics::Registry::LabelledValues;
  r.NewGaugeFuncFamily(
      "etcd_network_active_peers",
      "The current number of active peer connections.", {"Local", "Remote"},
      [t, local] {
        LV out;
        for (const PeerStats& p : t->Stats().peers) {
          if (p.connected) out.push_back({{local, Hex(p.id)}, 1});
        }
        return out;
      });
  auto per_peer = [t](uint64_t PeerStats::*field) {
    return [t, field] {
      LV out;
      for (const PeerStats& p : t->Stats().peers) {
        if (p.*field > 0) {
          out.push_back({{Hex(p.id)}, static_cast<double>(p.*field)});
        }
      }
      return out;
    };
  };
  r.NewCounterFuncFamily("etcd_network_peer_sent_bytes_total",
                         "The total number of bytes sent to peers.", {"To"},
                         per_peer(&PeerStats::sent_bytes));
  r.NewCounterFuncFamily("etcd_network_peer_received_bytes_total",
                         "The total number of bytes received from peers.",
                         {"From"}, per_peer(&PeerStats::received_bytes));
  r.NewCounterFuncFamily("etcd_network_peer_sent_failures_total",
                         "The total number of send failures from peers.",
                         {"To"}, per_peer(&PeerStats::send_failures));
  health = std::make_unique<HealthEndpoints>(MakeHealthSource(), r);
  metrics_requests = &r.NewCounterFamily(
      "promhttp_metric_handler_requests_total",
      "Total number of scrapes by HTTP status code.", {"code"});
  // Go's promhttp starts these three at 0.
  for (const char* code : {"200", "500", "503"}) {
    metrics_requests->WithLabels({code});
  }
  metrics_in_flight = &r.NewGauge(
      "promhttp_metric_handler_requests_in_flight",
      "Current number of scrapes being served.");
  RegisterProcessMetrics(r);
  RegisterOsFdMetrics(r);
}

// etcd's raft node warns when a heartbeat leaves more than twice the
// heartbeat interval after the previous one (its TimeoutDetector, per
// peer); heartbeats leave on ticks here, so a late tick on the leader is
// a late heartbeat to every peer.
void DetcdServer::Impl::CheckHeartbeatDelay() {
  const int64_t now = clock.NowNanos();
  const int64_t prev = last_tick_ns;
  last_tick_ns = now;
  if (prev == 0 || !server->node().is_leader()) return;
  const absl::Duration interval = absl::Milliseconds(cfg.heartbeat_interval_ms);
  const absl::Duration gap = absl::Nanoseconds(now - prev);
  if (gap <= 2 * interval) return;
  if (trace) {
    trace->Instant(TraceFile::kRaft, "late heartbeat",
                   absl::StrCat("tick gap ", absl::FormatDuration(gap)));
  }
  for (const server::MemberInfo& m : known_members) {
    if (m.id == identity.member_id) continue;
    figures.heartbeat_send_failures.fetch_add(1);
    DLOG_WARN(
        "leader failed to send out heartbeat on time; took too long, leader "
        "is overloaded likely from slow disk",
        {{"to", Hex(m.id)},
         {"heartbeat-interval", interval},
         {"expected-duration", 2 * interval},
         {"exceeded-duration", gap - 2 * interval}});
  }
}

// The health endpoints' view of this member (shim/health.h): alarms and
// reads go through the engine thread; a read gives up after etcd's request
// timeout (5 s + 2 x election timeout) if the engine has not answered.
HealthSource DetcdServer::Impl::MakeHealthSource() {
  HealthSource src;
  src.alarms = [this] {
    std::vector<std::string> names;
    loop->RunSync([&] {
      for (const auto& a : server->state().alarms().Get(pb::AlarmType::NONE)) {
        names.push_back(pb::AlarmType_Name(a.alarm()));
      }
    });
    return names;
  };
  src.has_leader = [this] { return figures.has_leader.load(); };
  src.read = [this](bool serializable) {
    auto done = std::make_shared<absl::Notification>();
    auto result = std::make_shared<absl::Status>();
    pb::RangeRequest r;
    r.set_key(std::string(1, '\0'));
    r.set_range_end(std::string(1, '\0'));
    r.set_keys_only(true);
    r.set_limit(1);
    r.set_serializable(serializable);
    const bool posted = loop->Post([this, r, done, result] {
      server->Range(r, [done, result](absl::StatusOr<pb::RangeResponse> x) {
        *result = x.status();
        done->Notify();
      });
    });
    if (!posted) return absl::UnavailableError("etcdserver: server stopped");
    if (!done->WaitForNotificationWithTimeout(absl::Milliseconds(
            5000 + 2 * static_cast<int64_t>(cfg.election_timeout_ms)))) {
      return absl::DeadlineExceededError("context deadline exceeded");
    }
    return *result;
  };
  return src;
}

HttpResponse DetcdServer::Impl::Http(const HttpRequest& req) {
  HttpResponse out;
  if (std::optional<HttpResponse> h = health->Serve(req)) return *std::move(h);
  if (req.path == "/version") {
    out.content_type = "application/json";
    nlohmann::json j;
    j["etcdserver"] = kServerVersion;
    j["etcdcluster"] = kClusterVersion;
    out.body = j.dump();
    return out;
  }
  if (req.path == "/metrics") {
    metrics_in_flight->Inc();
    out.content_type = metrics::kTextContentType;
    out.body = metrics::DefaultRegistry().Render();
    metrics_in_flight->Dec();
    metrics_requests->WithLabels({"200"}).Inc();
    return out;
  }
  out.status = 404;
  out.body = "404 page not found\n";
  return out;
}

DetcdServer::DetcdServer(std::unique_ptr<Impl> impl)
    : impl_(std::move(impl)) {}

DetcdServer::~DetcdServer() { Stop(); }

namespace {

// --initial-cluster-state existing on an empty data dir (join.h): the
// running cluster's ids, its members as this member's first peers.
absl::Status JoinRunningCluster(DetcdServer::Impl& m) {
  const ServerConfig& c = m.cfg;
  TlsFiles tls;
  if (AnyHttps(c.listen_peer_urls) || c.peer_tls.enabled()) {
    tls = ToTlsFiles(c, c.peer_tls, c.data_dir + "/fixtures/peer",
                     c.listen_peer_urls);
  }
  absl::StatusOr<JoinedCluster> joined = JoinExistingCluster(c, tls);
  if (!joined.ok()) return joined.status();
  m.identity.member_id = joined->member_id;
  m.identity.cluster_id = joined->cluster_id;
  for (const server::MemberInfo& mi : joined->members) {
    m.identity.founders.push_back({mi.id, mi.name, mi.peer_urls});
  }
  if (auto s = WriteIdentity(*m.disk, m.identity); !s.ok()) return s;
  DLOG_INFO("starting local member",
            {{"local-member-id", Hex(m.identity.member_id)},
             {"cluster-id", Hex(m.identity.cluster_id)}});
  return absl::OkStatus();
}

// The transport's side of membership: the peer port's HTTP, refusing
// removed members' streams, and learning this member's own removal.
void SetPeerHooks(DetcdServer::Impl* im, PeerTransportOptions* po) {
  po->serve_http = [im](std::unique_ptr<Stream> stream, std::string initial) {
    ServeHttpConnection(
        *stream, std::move(initial),
        [im](const HttpRequest& r) { return im->PeerHttp(r); }, HttpLimits());
  };
  po->is_removed = [im](uint64_t id) {
    absl::MutexLock l(&im->removed_mu);
    return im->removed_ids.contains(id);
  };
  po->on_removed = [im](uint64_t by) {
    if (!im->engine_ready.load(std::memory_order_acquire)) return;
    im->loop->Post([im, by] { im->server->OnRemovedByPeer(by); });
  };
  po->on_unreachable = [im](uint64_t id) {
    if (!im->engine_ready.load(std::memory_order_acquire)) return;
    im->loop->Post([im, id] { im->server->ReportUnreachable(id); });
  };
}

// etcd's restartAsStandaloneNode lines (--force-new-cluster).
void LogForcedRestart(DetcdServer::Impl& m) {
  if (!m.cfg.force_new_cluster) return;
  server::Node::ForcedRestart f;
  m.loop->RunSync([&] { f = m.server->node().forced_restart(); });
  if (!f.done) return;  // a new data dir: nothing to force
  if (f.discarded > 0) {
    DLOG_INFO("discarding uncommitted WAL entries",
              {{"entry-index", f.first_discarded},
               {"commit-index-from-wal", f.wal_commit},
               {"number-of-discarded-entries", f.discarded}});
  }
  DLOG_INFO("forcing restart member",
            {{"cluster-id", Hex(m.identity.cluster_id)},
             {"local-member-id", Hex(m.identity.member_id)},
             {"commit-index", f.commit}});
}

}  // namespace

absl::StatusOr<std::unique_ptr<DetcdServer>> DetcdServer::Start(
    const ServerConfig& config) {
  auto impl = std::make_unique<Impl>();
  Impl& m = *impl;
  m.cfg = config;
  const ServerConfig& c = m.cfg;

  DLOG_INFO("starting detcd",
            {{"etcd-version", kServerVersion},
             {"name", c.name},
             {"data-dir", c.data_dir},
             {"initial-cluster-state", c.initial_cluster_state}});

  // Auto compaction and corruption checks (shim/maintenance.h): bad values
  // stop the start before the data dir is touched, as in etcd.
  auto maintenance = MaintenanceOptionsFromConfig(c);
  if (!maintenance.ok()) return maintenance.status();
  auto lock = DataDirLock::Acquire(c.data_dir);
  if (!lock.ok()) return lock.status();
  m.lock = *std::move(lock);
  m.disk = std::make_unique<PosixDisk>(c.data_dir);

  // Identity: from the data dir after the first start (--initial-* are
  // ignored then, as in etcd), else from --initial-cluster.
  std::vector<uint64_t> voters;
  std::vector<server::MemberInfo> founders;
  const bool existing = m.disk->Exists(kIdentityFile);
  if (existing) {
    auto id = ReadIdentity(*m.disk);
    if (!id.ok()) return id.status();
    m.identity = *id;
    // With --force-new-cluster etcd logs "forcing restart member" instead
    // (once the log is rewritten, below).
    if (!c.force_new_cluster) {
      DLOG_INFO("restarting local member",
                {{"local-member-id", Hex(m.identity.member_id)},
                 {"cluster-id", Hex(m.identity.cluster_id)}});
    }
  } else if (c.initial_cluster_state == "existing") {
    if (auto s = JoinRunningCluster(m); !s.ok()) return s;
  } else {
    // Discovery (URL, token or DNS SRV) stands in for --initial-cluster.
    auto id = UsesDiscovery(c) ? IdentityFromDiscovery(c)
                               : IdentityFromConfig(c);
    if (!id.ok()) return id.status();
    m.identity = *id;
    for (const Identity::Founder& f : m.identity.founders) {
      voters.push_back(f.id);
      server::MemberInfo mi;
      mi.id = f.id;
      mi.name = f.name;
      mi.peer_urls = f.peer_urls;
      founders.push_back(mi);
    }
    if (auto s = WriteIdentity(*m.disk, m.identity); !s.ok()) return s;
    DLOG_INFO("starting local member",
              {{"local-member-id", Hex(m.identity.member_id)},
               {"cluster-id", Hex(m.identity.cluster_id)}});
  }

  metrics::Registry& reg = metrics::DefaultRegistry();
  auto& wal_fsync = reg.NewHistogram(
      "etcd_disk_wal_fsync_duration_seconds",
      "The latency distributions of fsync called by WAL.",
      metrics::ExponentialBuckets(0.001, 2, 14));
  auto& backend_commit = reg.NewHistogram(
      "etcd_disk_backend_commit_duration_seconds",
      "The latency distributions of commit called by backend.",
      metrics::ExponentialBuckets(0.001, 2, 14));
  auto& wal_bytes = reg.NewGauge("etcd_disk_wal_write_bytes_total",
                                 "Total number of bytes written in WAL.");
  // --trace-file: the member's timeline (shim/trace_file.h).
  if (!c.trace_file.empty()) {
    auto trace = TraceFile::Open(c.trace_file);
    if (!trace.ok()) return trace.status();
    m.trace = *std::move(trace);
  }
  m.timed_disk =
      std::make_unique<TimedDisk>(m.disk.get(), &wal_fsync, &backend_commit,
                                  &wal_bytes, m.trace.get());
  m.rng = std::make_unique<env::SeededRng>(std::random_device{}() ^
                                           m.identity.member_id);

  // Peer transport. It delivers from the moment it binds; payloads that
  // arrive before the engine runs are dropped (raft retries).
  PeerTransportOptions po;
  po.cluster_id = m.identity.cluster_id;
  po.local_id = m.identity.member_id;
  for (const Url& u : c.listen_peer_urls) po.listen_urls.push_back(u.raw);
  if (AnyHttps(c.listen_peer_urls) || c.peer_tls.enabled()) {
    po.tls = ToTlsFiles(c, c.peer_tls, c.data_dir + "/fixtures/peer",
                        c.listen_peer_urls);
    // etcd's peer listeners check a client certificate's SANs against the
    // connecting address.
    po.tls.check_client_san = !c.peer_tls.skip_client_san_verify;
    // DNS SRV discovery with https peers and no CA file: certificates are
    // checked against the SRV domain, on the start that read the records
    // only, as etcd's (discovery.h).
    if (!existing) {
      std::vector<std::string> urls;
      for (const Identity::Founder& f : m.identity.founders) {
        urls.insert(urls.end(), f.peer_urls.begin(), f.peer_urls.end());
      }
      po.tls.server_name = SrvPeerServerName(c, urls);
    }
  }
  Impl* im = &m;
  // The messages of one read are handed to the engine together: an idle
  // engine's batch runs on the reader's thread (see kRunHereMaxTasks).
  po.on_message = [im](uint64_t from, std::string payload) {
    if (!im->engine_ready.load(std::memory_order_acquire)) return;
    server::EtcdServer* s = im->server.get();
    im->loop->HoldWakes();
    im->loop->PostPeer(
        [s, p = std::move(payload)]() mutable { s->OnMessage(p, &p); });
  };
  po.after_messages = [im] {
    im->loop->ReleaseWakesRunningHere(kRunHereMaxTasks);
  };
  // A snapshot counts as delivered once the transport finished writing it;
  // that report runs on the engine thread, like every engine input.
  po.post_to_engine = [im](std::function<void()> f) {
    if (im->loop) im->loop->Post(std::move(f));
  };
  SetPeerHooks(im, &po);
  // Appends queued together for one peer leave as one (fewer messages for
  // the followers to decode, step and acknowledge).
  po.coalesce = &server::EtcdServer::CoalescePeerPayloads;
  // Snapshot transfers, breaks and the prober's round trips
  // (etcd_network_*, docs/metrics.md).
  po.registry = &reg;
  auto transport = PeerTransport::Start(po);
  if (!transport.ok()) return transport.status();
  m.transport = *std::move(transport);
  for (const Identity::Founder& f : m.identity.founders) {
    if (f.id != m.identity.member_id) m.transport->SetPeer(f.id, f.peer_urls);
  }

  // The engine.
  server::EtcdServerOptions so;
  so.node.id = m.identity.member_id;
  so.node.data_dir = "member";
  // The disk thread writes the WAL; a commit-only hard state goes inline
  // (NodeOptions::inline_unsynced_writes).
  so.node.inline_unsynced_writes = true;
  so.node.initial_voters = voters;
  so.node.snapshot_count = c.snapshot_count;
  // A snapshot costs its whole image; with a large store and small writes
  // (a compacted key space being overwritten) one every --snapshot-count
  // entries would cost far more than the writes: wait until the log since
  // the last one is half the size of its image (NodeOptions).
  so.node.snapshot_log_ratio = 0.5;
  so.node.log_cache_bytes_alone = 1 << 20;
  so.node.snapshot_catchup_entries =
      std::min<uint64_t>(5000, std::max<uint64_t>(1, c.snapshot_count / 2));
  so.node.max_request_bytes = c.max_request_bytes;
  so.node.election_ticks = static_cast<int>(
      std::max<int64_t>(1, c.election_timeout_ms / c.heartbeat_interval_ms));
  so.node.heartbeat_ticks = 1;
  // etcd: requests time out after 5 s + 2 x election timeout.
  so.node.request_timeout_ticks = static_cast<int>(
      (5000 + 2 * c.election_timeout_ms) / c.heartbeat_interval_ms);
  so.node.raft.pre_vote = c.pre_vote;
  so.node.raft.check_quorum = true;
  so.initial_members = founders;
  so.cluster_id = m.identity.cluster_id;
  so.tick_ns = c.heartbeat_interval_ms * kMs;
  so.kv.max_txn_ops = c.max_txn_ops;
  so.kv.max_request_bytes = c.max_request_bytes;
  so.quota_backend_bytes = c.quota_backend_bytes;
  so.strict_reconfig_check = c.strict_reconfig_check;
  so.node.force_new_cluster = c.force_new_cluster;
  // --experimental-planted-bug: the same set in every options struct with a
  // site, as the simulator's run driver does (scenarios/run.cc).
  for (const std::string& name : c.planted_bugs) {
    if (std::optional<planted::Bug> b = planted::Find(name)) {
      so.bugs.Plant(*b);
      DLOG_WARN("PLANTED BUG: this member is wrong on purpose (testing only)",
                {{"bug", name},
                 {"what", std::string(planted::Info(*b).what)}});
    }
  }
  so.node.bugs = so.bugs;
  so.node.raft.bugs = so.bugs;
  so.lease.min_ttl_s = 0;  // etcd's rule: 1.5 x election timeout
  so.version = kServerVersion;
  so.auto_compaction = maintenance->auto_compaction;
  so.corrupt_check = maintenance->corrupt_check;
  // Auth: --bcrypt-cost (out of range: etcd's default, in the engine),
  // --auth-token and --auth-token-ttl, --client-cert-auth.
  so.bcrypt_cost = static_cast<int>(std::min<uint64_t>(c.bcrypt_cost, 1000));
  so.auth_token_ttl_ns =
      static_cast<int64_t>(std::min<uint64_t>(c.auth_token_ttl, 1u << 30)) *
      1'000'000'000;
  so.client_cert_auth = c.client_tls.client_cert_auth;
  {
    auto tokens = MakeTokenProvider(
        c.auth_token, [] { return absl::ToUnixSeconds(absl::Now()); });
    if (!tokens.ok()) return tokens.status();
    so.token_provider = *std::move(tokens);
    if (so.token_provider == nullptr) {
      DLOG_WARN("simple token is not cryptographically signed");
    }
  }
  if (absl::Status s = so.Validate(); !s.ok()) return s;
  // Its completions reach the loop (made below, and started before any
  // request comes) through `m`.
  m.offload = std::make_unique<OffloadThread>(
      "bcrypt", ThreadKind::kBackground,
      static_cast<int>(std::max(1u, std::thread::hardware_concurrency())),
      [im](std::function<void()> done) {
        return im->loop != nullptr && im->loop->PostCompletion(std::move(done));
      });
  env::Env env{&m.clock,    m.timed_disk.get(), m.transport.get(),
               m.rng.get(), m.offload.get(),    &m.memory};
  m.server = std::make_unique<server::EtcdServer>(env, so);
  m.server->set_peer_link_age([t = m.transport.get()](uint64_t peer) {
    return t->LinkAgeNanos(peer);
  });
  m.server->set_log(MaintenanceLogger(c));

  EngineLoop::Options lo;
  lo.tick_ns = so.tick_ns;
  // Group commit: the requests of one batch share one Ready (one WAL write
  // and fdatasync); see Node::HoldReady.
  m.loop = std::make_unique<EngineLoop>(lo, [im] { im->OnTick(); });
  // After each batch, an automatic snapshot being written gets one more
  // step as a task of its own, so it goes on while the member is idle and
  // takes turns with the requests while it is busy (Node::ContinueSnapshot);
  // so do the image of a Maintenance snapshot and a compaction's removal
  // (EtcdServer::ContinueBackground).
  // A leader change is published after the batch that saw it, not at the
  // next tick: /health, the metrics and the status read the published
  // figures, and a member that answered a linearizable read must not call
  // itself leaderless for up to a heartbeat afterwards (as it did right
  // after an election: integration_host_whitelist saw /health's "RAFT NO
  // LEADER" after `etcdctl endpoint health` had passed).
  // The batch's peer messages leave from this thread at its end
  // (PeerTransport::FlushSends), after the Ready that sends them.
  // So do the batch's answers on the native gRPC transport when its loop
  // sleeps (h2::Server::ReleaseAnswers).
  m.loop->SetBatchHooks(
      [s = m.server.get(), t = m.transport.get(), im] {
        s->node().HoldReady();
        t->HoldSends();
        if (h2::Server* h = im->h2_answers.load(std::memory_order_acquire)) {
          h->HoldAnswers();
        }
      },
      [s = m.server.get(), t = m.transport.get(), l = m.loop.get(), im,
       posted = std::make_shared<bool>(false)] {
        s->node().ReleaseReady();
        im->PublishStoreFigures();
        t->FlushSends();
        if (h2::Server* h = im->h2_answers.load(std::memory_order_acquire)) {
          h->ReleaseAnswers();
        }
        if (s->node().leader() != im->figures.leader.load()) {
          im->PublishFigures();
        }
        if (*posted) return;
        if (!s->background_in_progress()) return;
        *posted = l->Post([s, posted] {
          *posted = false;
          s->ContinueBackground();
        });
      });
  // The disk thread (before the engine starts: recovery's Ready may go to
  // it). Its completions come back as engine events, never refused for
  // backlog (EngineLoop::PostCompletion).
  m.disk_thread =
      std::make_unique<DiskThread>([l = m.loop.get()](std::function<void()> t) {
        return l->PostCompletion(std::move(t));
      });
  m.disk->set_worker(m.disk_thread.get());
  m.snap_disk_thread = std::make_unique<DiskThread>(
      [l = m.loop.get()](std::function<void()> t) {
        return l->PostCompletion(std::move(t));
      },
      "snap-disk", ThreadKind::kBackground);
  m.disk->set_file_worker(m.snap_disk_thread.get());
  // WAL segments are filled ahead with zeros while the thread is idle, so
  // a commit's fdatasync writes no metadata (PosixDisk::FillAheadStep).
  m.disk_thread->SetIdleWork([d = m.disk.get()] { return d->FillAheadStep(); },
                             [d = m.disk.get()] { return d->FillAheadDue(); });
  // A write of a few entries submitted while no other task waits (an
  // idle member: one or a few clients, each waiting for this write) runs
  // on the engine thread (DiskThread::SetRunInline): its commit then wakes
  // neither the disk thread nor, for the completion, the engine. Under
  // load (more entries, or tasks queued) the writes go to the disk thread,
  // which leaves the engine free to take in the next batch meanwhile (so
  // does a received snapshot's install, file and restore). The
  // peer messages queued before it (a leader's appends) leave first, so
  // followers write in parallel. A snapshot's WAL marker (its fdatasync,
  // the release of segments) never runs here: nobody waits on it soon.
  m.disk_thread->SetRunInline(
      [l = m.loop.get(), t = m.transport.get(), s = m.server.get()] {
        if (l->backlog() != 0 ||
            s->node().entries_being_written() > kInlineWriteMaxEntries ||
            s->node().snapshot_being_written() ||
            s->node().marker_being_written()) {
          return false;
        }
        t->FlushHeldSends();
        return true;
      });
  m.disk_thread->Start();
  m.snap_disk_thread->Start();
  m.offload->Start();

  // Start the engine (recovery or bootstrap) on its own thread.
  absl::Status started;
  m.loop->Start();
  m.loop->RunSync([&] {
    started = m.server->Start();
    if (started.ok()) m.recovered_commit = m.server->node().committed_index();
  });
  if (!started.ok()) {
    m.loop->Stop(nullptr);
    return started;
  }
  LogForcedRestart(m);
  // etcd's adjustTicks: a member alone in its cluster fast-forwards its
  // election clock at once (whatever --initial-election-tick-advance says),
  // and, if it is the cluster's only voter, campaigns at once; with peers,
  // and the flag on, the engine thread's ticks watch the peer transport for
  // up to 5 s (rafthttp's ConnReadTimeout) and fast-forward once more than
  // one peer is connected (MaybeAdvanceTicks).
  m.election_ticks = so.node.election_ticks;
  m.loop->RunSync([&] {
    if (m.server->state().membership().size() <= 1) {
      const int ticks = m.election_ticks - 1;
      DLOG_INFO("started as single-node; fast-forwarding election ticks",
                {{"local-member-id", Hex(m.identity.member_id)},
                 {"forward-ticks", ticks},
                 {"forward-duration", m.Ticks(ticks)},
                 {"election-ticks", m.election_ticks},
                 {"election-timeout", m.Ticks(m.election_ticks)}});
      m.server->AdvanceRaftTicks(ticks);
      // Beyond etcd: the randomized timeout left 1 to election-ticks more
      // ticks before the only possible outcome (up to a second at etcd's
      // defaults, on every restart of a single-member cluster).
      m.server->CampaignIfOnlyVoter();
    } else if (!c.initial_election_tick_advance) {
      DLOG_INFO("skipping initial election tick advance",
                {{"election-ticks", m.election_ticks}});
    } else {
      DLOG_INFO("starting initial election tick advance",
                {{"election-ticks", m.election_ticks}});
      m.advance_ticks_left = static_cast<int>(
          std::max<int64_t>(1, 5000 / c.heartbeat_interval_ms));
    }
  });
  // etcd's data dir shape: member/snap exists from the start (the engine
  // writes snapshot files there once it takes one).
  if (auto s = m.disk->CreateDir("member/snap"); !s.ok()) return s;
  // Peers known from the replicated membership (a restart: the founders
  // are not passed again).
  m.loop->RunSync([&] { m.SyncPeers(); });
  m.engine_ready.store(true, std::memory_order_release);
  DLOG_INFO("started peer transport",
            {{"local-member-id", Hex(m.identity.member_id)},
             {"listen-peer-urls", Raw(c.listen_peer_urls)}});
  // etcd's initial corruption check, before any client is served.
  if (absl::Status s = RunInitialCorruptCheck(*m.loop, *m.server); !s.ok()) {
    return s;
  }

  // gRPC.
  m.grpc_metrics = std::make_unique<GrpcMetrics>(reg);
  Services::Options svo;
  svo.is_learner = [im] { return im->figures.learner.load(); };
  svo.peer_common_name = [im](const std::string& peer) {
    ClientListener* l = im->cert_listener.load();
    return l != nullptr ? l->PeerCommonName(peer) : std::string();
  };
  // Native KV calls (--native-grpc) count in the same traffic figures as
  // the interceptor's (made below, before any call).
  svo.native_call_figures = [im](std::string_view full_method,
                                 const char* type) {
    return im->traffic_metrics->NewCall(full_method, type);
  };
  m.services = std::make_unique<Services>(m.loop.get(), m.server.get(), svo,
                                          m.grpc_metrics.get());
  // etcd's Lock and Election services: the client library's recipes run
  // on the engine thread.
  LockElection::Options leo;
  leo.is_learner = svo.is_learner;
  leo.peer_common_name = svo.peer_common_name;
  leo.native_call_figures = svo.native_call_figures;
  m.lock_election = std::make_unique<LockElection>(
      leo, m.loop.get(), m.server.get(), m.grpc_metrics.get());
  grpc::ServerBuilder b;
  // etcd's gRPC traffic families (shim/server_metrics.h).
  m.traffic_metrics =
      std::make_unique<GrpcTrafficMetrics>(reg, c.metrics == "extensive");
  m.traffic_metrics->set_trace(m.trace.get());
  m.loop->RunSync([tm = m.traffic_metrics.get(), s = m.server.get()] {
    s->set_on_slow_apply(
        [tm](const etcdserverpb::InternalRaftRequest& request,
             std::string_view result, int64_t took_ns) {
          tm->WarnSlowApply(request, result, took_ns);
        },
        kWarnApplyDurationMs * 1000 * 1000);
  });
  {
    std::vector<
        std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>>
        interceptors;
    interceptors.push_back(m.traffic_metrics->InterceptorFactory());
    b.experimental().SetInterceptorCreators(std::move(interceptors));
    for (const GrpcTrafficMetrics::Method& gm :
         GrpcTrafficMetrics::EtcdMethods()) {
      m.grpc_metrics->PreRegister(gm.service, gm.method, gm.type);
      m.traffic_metrics->PreRegister(gm);
    }
  }
  for (grpc::Service* s : m.services->services()) b.RegisterService(s);
  for (grpc::Service* s : m.lock_election->services()) b.RegisterService(s);
  // etcd: requests up to --max-request-bytes plus gRPC's framing overhead.
  b.SetMaxReceiveMessageSize(static_cast<int>(c.max_request_bytes + 512 * 1024));
  b.SetMaxSendMessageSize(INT32_MAX);
  // etcd's --max-concurrent-streams: streams per client connection
  // (gRPC's argument is an int; etcd's default, MaxUint32, means no limit).
  b.AddChannelArgument(
      GRPC_ARG_MAX_CONCURRENT_STREAMS,
      static_cast<int>(std::min<uint64_t>(c.max_concurrent_streams, INT32_MAX)));
  b.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS,
                       static_cast<int>(c.grpc_keepalive_interval_ms));
  b.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS,
                       static_cast<int>(c.grpc_keepalive_timeout_ms));
  b.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS,
                       static_cast<int>(c.grpc_keepalive_min_time_ms));
  b.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PING_STRIKES, 2);
  m.grpc_server = b.BuildAndStart();
  if (!m.grpc_server) return absl::InternalError("detcd: gRPC server failed");

  // Client and metrics listeners.
  ClientListenerOptions clo;
  clo.urls = Raw(c.listen_client_urls);
  if (AnyHttps(c.listen_client_urls) || c.client_tls.enabled()) {
    clo.tls = ToTlsFiles(c, c.client_tls, c.data_dir + "/fixtures/client",
                         c.listen_client_urls);
  }
  clo.log_warning = [](const std::string& line) {
    DLOG_WARN("rejected connection", {{"error", line}});
  };
  // --host-whitelist: plain-HTTP requests on the client URLs only (not the
  // metrics URLs), as etcd's accessController.
  clo.host_whitelist = c.host_whitelist;
  clo.on_host_rejected = [](const std::string& host) {
    DLOG_WARN("rejecting HTTP request to prevent DNS rebinding attacks",
              {{"host", host}});
  };
  // etcd's HandshakeFailure line: the SANs only when a certificate was seen.
  clo.on_rejected = [](const HandshakeInfo& i, const std::string& error) {
    if (i.have_certificate) {
      DLOG_WARN("rejected connection", {{"remote-addr", i.remote_addr},
                                        {"server-name", i.server_name},
                                        {"ip-addresses", i.ip_addresses},
                                        {"dns-names", i.dns_names},
                                        {"error", error}});
    } else {
      DLOG_WARN("rejected connection", {{"remote-addr", i.remote_addr},
                                        {"server-name", i.server_name},
                                        {"error", error}});
    }
  };
  auto http = [im](const HttpRequest& r) { return im->Http(r); };
  // etcd's JSON gateway (/v3/, /v3beta/, /v3alpha/) on the client URLs
  // only, not on --listen-metrics-urls; it calls this server's own gRPC
  // services. The listeners' handler keeps it alive.
  std::shared_ptr<Gateway> gateway;
  if (c.enable_grpc_gateway) {
    grpc::ChannelArguments gw_args;
    gw_args.SetMaxReceiveMessageSize(INT32_MAX);
    gw_args.SetMaxSendMessageSize(INT32_MAX);
    GatewayOptions gwo;
    gwo.cors = c.cors;
    // Unary calls over the native transport once it runs: a socketpair per
    // HTTP connection thread (gRPC C++'s in-process channel cost 220-370
    // µs of server CPU per request).
    gwo.native_serves = [im](std::string_view method) {
      h2::Server* h = im->h2_answers.load(std::memory_order_acquire);
      return h != nullptr && h->Serves(method);
    };
    gwo.native_connect = [im] {
      h2::Server* h = im->h2_answers.load(std::memory_order_acquire);
      int sv[2];
      if (h == nullptr ||
          ::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
        return -1;
      }
      h->AddConnection(sv[0], "unix:gateway", "");
      return sv[1];
    };
    gateway = std::make_shared<Gateway>(
        m.grpc_server->InProcessChannel(gw_args), std::move(gwo));
  }
  auto client_http = [im, gateway](const HttpRequest& r) {
    if (gateway != nullptr && Gateway::Owns(r.path)) {
      return gateway->Handle(r);
    }
    return im->Http(r);
  };
  if (c.native_grpc) {
    h2::ServerOptions ho;
    ho.max_recv_message_bytes = c.max_request_bytes + 512 * 1024;
    ho.max_concurrent_streams = c.max_concurrent_streams;
    ho.keepalive_ms = c.grpc_keepalive_interval_ms;
    ho.keepalive_timeout_ms = c.grpc_keepalive_timeout_ms;
    ho.min_ping_interval_ms = c.grpc_keepalive_min_time_ms;
    grpc::ChannelArguments relay_args;
    relay_args.SetMaxReceiveMessageSize(INT32_MAX);
    relay_args.SetMaxSendMessageSize(INT32_MAX);
    ho.fallback = h2::ProxyTo(m.grpc_server->InProcessChannel(relay_args));
    ho.before_turn = [l = m.loop.get()] { l->HoldWakes(); };
    // Only while no other unary call waits: with several clients this
    // thread goes on reading while the engine thread serves the calls
    // (run here, their WAL write would keep it from the other connections:
    // 10 clients' puts on 1 member, 28k -> 23k a second).
    ho.after_reads = [l = m.loop.get(), sv = m.services.get()] {
      l->ReleaseWakesRunningHere(sv->unary_calls_open() <= 1 ? kRunHereMaxTasks
                                                             : 0);
    };
    auto hs = h2::Server::Create(std::move(ho));
    if (!hs.ok()) return hs.status();
    m.grpc_h2 = *std::move(hs);
    m.services->RegisterNative(m.grpc_h2.get());
    m.lock_election->RegisterNative(m.grpc_h2.get());
    m.grpc_h2->Start();
    m.h2_answers.store(m.grpc_h2.get(), std::memory_order_release);
    clo.grpc_h2 = m.grpc_h2.get();
  }
  auto cl = ClientListener::Create(clo, m.grpc_server.get(), client_http);
  if (!cl.ok()) return cl.status();
  m.listeners.push_back(*std::move(cl));
  m.cert_listener.store(m.listeners.back().get());
  if (!c.listen_metrics_urls.empty()) {
    ClientListenerOptions mo;
    mo.urls = Raw(c.listen_metrics_urls);
    auto ml = ClientListener::Create(mo, nullptr, http);
    if (!ml.ok()) return ml.status();
    m.listeners.push_back(*std::move(ml));
  }
  m.RegisterMetrics();
  for (auto& l : m.listeners) l->Start();
  DLOG_INFO("enabled capabilities for version",
            {{"cluster-version", std::string(kClusterVersion, 3)}});
  DLOG_INFO("ready to serve client requests");
  for (const Url& u : c.listen_client_urls) {
    if (u.scheme == "http") {
      DLOG_WARN("serving client traffic insecurely; this is strongly "
                "discouraged!",
                {{"address", absl::StrCat(u.host, ":", u.port)}});
    } else {
      DLOG_INFO("serving client traffic securely",
                {{"address", absl::StrCat(u.host, ":", u.port)}});
    }
  }
  return std::unique_ptr<DetcdServer>(new DetcdServer(std::move(impl)));
}

void DetcdServer::Stop() {
  Impl& m = *impl_;
  {
    absl::MutexLock l(&m.mu);
    if (m.stopped) return;
    m.stopped = true;
  }
  DLOG_INFO("stopping detcd", {{"name", m.cfg.name}});
  m.TransferLeadershipBeforeStop();
  m.Teardown();
  DLOG_INFO("stopped detcd", {{"name", m.cfg.name}});
}

// As etcd's Stop: a leader that is shut down cleanly first hands
// leadership to the most caught-up voter (bounded by the election timeout),
// so clients see no election window and writes forwarded to it are not lost.
void DetcdServer::Impl::TransferLeadershipBeforeStop() {
  if (!loop || !engine_ready.load()) return;
  auto done = std::make_shared<absl::Notification>();
  auto chosen = std::make_shared<std::atomic<uint64_t>>(0);
  const bool posted = loop->Post([this, done, chosen] {
    uint64_t target = 0;
    const server::Node& n = server->node();
    if (!n.is_leader()) return done->Notify();
    uint64_t best_match = 0;
    for (const auto& [id, pr] : n.raft().tracker().progress()) {
      const auto& voters = n.conf_state().voters;
      if (id == server->id() ||
          !std::binary_search(voters.begin(), voters.end(), id)) {
        continue;
      }
      if (target == 0 || pr.match > best_match) {
        target = id;
        best_match = pr.match;
      }
    }
    if (target == 0) return done->Notify();
    chosen->store(target);
    pb::MoveLeaderRequest r;
    r.set_targetid(target);
    server->MoveLeader(r, [done](absl::StatusOr<pb::MoveLeaderResponse>) {
      done->Notify();
    });
  });
  if (!posted) return;
  const bool moved = done->WaitForNotificationWithTimeout(
      absl::Milliseconds(2 * cfg.election_timeout_ms));
  if (const uint64_t target = chosen->load(); target != 0) {
    DLOG_INFO(moved ? "leadership transferred before stopping"
                    : "leadership transfer before stopping timed out",
              {{"local-member-id", Hex(identity.member_id)},
               {"transferee", Hex(target)}});
  }
}

// As etcd's Stop waits for its snapshot goroutine: an automatic snapshot
// still being written when a member is stopped cleanly is finished first
// (a step per engine task, so the disk thread's completions still come
// in between; bounded), so the next start loads it instead of replaying
// the whole log since the one before. (Seen: a member stopped 1 s after a
// 1M-key fill left its snapshot at 11 of its MB and replayed 263 MiB of
// WAL at the restart, 5 s.)
void DetcdServer::Impl::FinishSnapshotBeforeStop() {
  constexpr absl::Duration kMaxWait = absl::Seconds(60);
  const absl::Time start = absl::Now();
  auto waited = [start] {
    return GoDurationString(absl::ToInt64Nanoseconds(absl::Now() - start));
  };
  bool logged = false;
  for (;;) {
    bool in_progress = false;
    bool stepping = false;
    const bool ran = loop->RunSync([&] {
      server::Node& n = server->node();
      n.ContinueSnapshot();
      in_progress = n.snapshot_pending() && !n.failed();
      stepping = n.snapshot_in_progress();
    });
    if (!ran) return;
    if (!in_progress) break;
    // Waiting for the snapshot disk thread (its completions come to the
    // loop as tasks of their own).
    if (!stepping) absl::SleepFor(absl::Milliseconds(1));
    if (!logged) {
      logged = true;
      DLOG_INFO("finishing snapshot before stopping",
                {{"local-member-id", Hex(identity.member_id)}});
    }
    if (absl::Now() - start > kMaxWait) {
      DLOG_WARN("gave up finishing snapshot before stopping",
                {{"local-member-id", Hex(identity.member_id)},
                 {"waited", waited()}});
      return;
    }
  }
  if (logged) {
    DLOG_INFO("finished snapshot before stopping",
              {{"local-member-id", Hex(identity.member_id)},
               {"took", waited()}});
  }
}

// Stops what was started, in order: no new connections, open calls
// answered, gRPC down, no more peer input, the engine thread last (it may
// still be finishing a task). Safe on a half-started server.
void DetcdServer::Impl::Teardown() {
  for (auto& l : listeners) l->Stop();
  if (lock_election) lock_election->Shutdown();
  if (services) services->Shutdown();
  if (grpc_h2) grpc_h2->Stop();
  if (grpc_server) {
    grpc_server->Shutdown(std::chrono::system_clock::now() +
                          std::chrono::seconds(1));
  }
  const bool was_ready =
      engine_ready.exchange(false, std::memory_order_acq_rel);
  if (transport) transport->Stop();
  if (was_ready) FinishSnapshotBeforeStop();
  if (loop) loop->Stop(nullptr);
  // After the loop: the last write the engine submitted finishes (its
  // completion is dropped), and nothing writes once Stop returns.
  if (disk_thread) disk_thread->Stop();
  if (snap_disk_thread) snap_disk_thread->Stop();
  if (offload) offload->Stop();
  // The WAL segments a last snapshot released go too: the process may end
  // by its signal right after Stop, without destructors.
  if (disk) disk->WaitForRemovals();
  if (trace) trace->Close();
}

bool DetcdServer::removed() const { return impl_->removed.load(); }

absl::Status DetcdServer::Wait() {
  Impl& m = *impl_;
  absl::MutexLock l(&m.mu);
  m.mu.Await(absl::Condition(
      +[](Impl* i) ABSL_EXCLUSIVE_LOCKS_REQUIRED(i->mu) {
        return i->stopped || !i->failure.ok();
      },
      &m));
  return m.failure;
}

}  // namespace detcd::shim
