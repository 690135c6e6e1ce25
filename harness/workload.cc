#include "harness/workload.h"

#include <algorithm>
#include <cstdlib>
#include <deque>
#include <map>
#include <memory>
#include <utility>

#include "absl/strings/str_cat.h"
#include "harness/history_proto.h"

namespace detcd::harness {
namespace {

using etcdserverpb::Compare_CompareResult;
using etcdserverpb::Compare_CompareTarget;

const std::string kAllKeys(1, '\0');

// Whether a failed write certainly did not take effect. A member that
// refused it up front, synchronously (no leader, too many requests), never
// handed it to raft, and an apply error (invalid argument, lease not found,
// compacted, ...) changed nothing. Anything else leaves the outcome
// unknown: a timeout, or "server stopped" (the member may have forwarded the
// proposal before it failed, even within the same call).
bool Definite(const absl::Status& s, bool sync) {
  switch (s.code()) {
    case absl::StatusCode::kUnavailable:
      return sync && s.message() == "etcdserver: no leader";
    case absl::StatusCode::kResourceExhausted:
      return sync;
    case absl::StatusCode::kDeadlineExceeded:
      return false;
    default:
      return true;
  }
}

}  // namespace

struct Workload::KvClient {
  uint64_t seq = 0;  // identifies the in-flight attempt for late callbacks
  bool busy = false;
  int op_index = -1;
  // Scheduled runs: operations issued (the next one's number), the listed
  // ones when replaying, the current one's stream and unit.
  int issued = 0;
  std::vector<int> listed;
  size_t next_listed = 0;
  int stream = -1;
  size_t unit = 0;
};

// A request without FormatOp's attempt prefix ("#id c [times] outcome: ")
// and its (still empty) response.
static std::string RequestText(const Operation& op) {
  std::string f = FormatOp(op);
  const size_t at = f.find(": ");
  if (at != std::string::npos) f = f.substr(at + 2);
  const size_t resp = f.find(" -> ");
  if (resp != std::string::npos) f.resize(resp);
  return f;
}

// Makes a client's stream current for one entry point of the workload and
// puts back the one before (entry points nest: an engine callback may run
// inside another client's call).
class Workload::StreamScope {
 public:
  StreamScope(Workload* w, const char* kind, int i) : w_(w) {
    if (!w_->rng_.scheduled()) return;
    saved_ = w_->rng_.stream();
    w_->rng_.Use(absl::StrCat(kind, "/", i));
  }
  StreamScope(Workload* w, int handle) : w_(w) {
    if (!w_->rng_.scheduled()) return;
    saved_ = w_->rng_.stream();
    w_->rng_.UseHandle(handle);
  }
  ~StreamScope() {
    if (saved_ >= 0) w_->rng_.UseHandle(saved_);
  }
  StreamScope(const StreamScope&) = delete;
  StreamScope& operator=(const StreamScope&) = delete;

 private:
  Workload* w_;
  int saved_ = -1;
};

// One watch on a client's stream.
struct Workload::Watcher {
  WatchChecker::Spec spec;
  bool progress_notify = false;
  int64_t next_start = 0;
  int seg = -1;
  bool active = false;  // has a segment on the current stream
};

// A client with one stream and a few watchers on it, as clientv3 shares
// one gRPC stream between the watches of a client.
struct Workload::WatchClient {
  std::vector<Watcher> watchers;
  double refuse_probability = 0;
  uint64_t node = 0;
  mvcc::WatchHub::StreamId stream = 0;
  int checker_stream = -1;  // the WatchChecker's name for the stream
  uint64_t conn = 0;  // connection generation, for late responses
  bool connected = false;
  std::deque<int> pending_creates;  // watchers awaiting their created reply
  std::map<int64_t, int> by_id;     // watch id -> watcher
};

struct Workload::LeaseClient {
  int64_t lease = 0;
  int64_t ttl_s = 0;
  int phase = 0;
  int keys = 0;
  int keepalives_left = 0;
  uint64_t seq = 0;
};

namespace {

// The lease checker's bounds, from the cluster's options and the timing
// model its scenario declared.
LeaseChecker::Bounds LeaseBoundsFor(Cluster& cluster) {
  const ClusterOptions& co = cluster.options();
  const TimingModel& tm = cluster.timing();
  // The scenario has set up its clocks by now: they must be within what it
  // declared, or the checker's bounds would not hold.
  for (uint64_t id : cluster.ids()) {
    const sim::SimClock& c = cluster.clock(id);
    DETCD_CHECK_MSG(std::abs(c.drift_ppm()) <= tm.max_drift_ppm &&
                        std::abs(c.skew_ns()) <= tm.max_skew_ns,
                    "a clock is outside the scenario's declared TimingModel");
  }
  LeaseChecker::Bounds b;
  b.max_drift_ppm = tm.max_drift_ppm;
  b.clock_jumps = tm.clock_jumps;
  // EtcdServer promotes with an election timeout of extension.
  b.extend_ns = co.node.election_ticks * co.tick_ns;
  // A leader notices an expired lease within lease_check_ticks and commits
  // the revoke within a few round trips (liveness only).
  b.revoke_within_ns = 2 * sim::kSecond;
  return b;
}

}  // namespace

Workload::Workload(Cluster* cluster, env::SeededRng rng, WorkloadOptions opts,
                   sim::Decisions* decisions)
    : cluster_(cluster),
      rng_(rng, decisions, "workload"),
      opts_(opts),
      target_ops_(opts.ops) {
  for (int i = 0; i < opts_.clients; ++i) {
    kv_.push_back(std::make_unique<KvClient>());
  }
  if (decisions != nullptr && decisions->replaying()) {
    target_ops_ = 0;
    for (int i = 0; i < opts_.clients; ++i) {
      kv_[i]->listed = decisions->ListedOps(i);
      target_ops_ += static_cast<int>(kv_[i]->listed.size());
    }
  }
  for (int i = 0; i < opts_.watchers; ++i) {
    watch_.push_back(std::make_unique<WatchClient>());
  }
  for (int i = 0; i < opts_.lease_clients; ++i) {
    lease_.push_back(std::make_unique<LeaseClient>());
  }
  watch_checker_.set_model(&cluster_->model());
  cluster_->set_on_events(
      [this](uint64_t node, const std::vector<mvcc::Event>& ev) {
        watch_checker_.OnCommitted(node, ev);
      });
  cluster_->set_on_down([this](uint64_t node) { OnWatchDown(node); });
  cluster_->set_on_lease_revoked([this](uint64_t, int64_t id) {
    lease_checker_.OnRevokeApplied(id, cluster_->world().now());
  });
  cluster_->set_on_lease_primary(
      [this](uint64_t) { lease_checker_.OnPrimary(cluster_->world().now()); });
  cluster_->set_on_lease_granted([this](uint64_t, int64_t id) {
    lease_checker_.OnGrantApplied(id, cluster_->world().now());
  });
  cluster_->set_on_clock_jump([this](uint64_t node, int64_t forward_ns) {
    lease_checker_.OnClockJump(node, cluster_->world().now(), forward_ns);
  });
  lease_checker_.set_bounds(LeaseBoundsFor(*cluster_));
}

Workload::~Workload() {
  cluster_->set_on_events(nullptr);
  cluster_->set_on_down(nullptr);
  cluster_->set_on_lease_revoked(nullptr);
  cluster_->set_on_lease_primary(nullptr);
  cluster_->set_on_lease_granted(nullptr);
  cluster_->set_on_clock_jump(nullptr);
}

void Workload::Later(int64_t delay_ns, std::function<void()> fn) {
  cluster_->world().After(delay_ns, std::move(fn));
}

uint64_t Workload::RandomUpNode() {
  std::vector<uint64_t> up = cluster_->UpNodes();
  if (up.empty()) return 0;
  return up[rng_.Uniform(up.size())];
}

void Workload::Start() {
  StreamScope scope(this, "workload", 0);
  for (int i = 0; i < opts_.clients; ++i) {
    Later(rng_.Range(0, opts_.max_think_ns), [this, i] { NextKv(i); });
  }
  for (int i = 0; i < opts_.watchers; ++i) {
    WatchClient& c = *watch_[i];
    c.refuse_probability = rng_.Chance(0.3) ? 0.3 : 0;
    c.watchers.resize(1 + rng_.Uniform(3));
    for (Watcher& w : c.watchers) {
      // All keys, the k prefix, or one key.
      static const std::string kPrefix = "k", kPrefixEnd = "l";
      const uint64_t shape = rng_.Uniform(3);
      w.spec.key = shape == 0   ? kAllKeys
                   : shape == 1 ? kPrefix
                                : absl::StrCat("k", rng_.Uniform(opts_.keys));
      w.spec.range_end = shape == 0 ? kAllKeys : shape == 1 ? kPrefixEnd : "";
      w.spec.prev_kv = rng_.Chance(0.5);
      w.spec.no_put = rng_.Chance(0.1);
      w.spec.no_delete = !w.spec.no_put && rng_.Chance(0.1);
      w.progress_notify = rng_.Chance(0.3);
      w.spec.fragment = rng_.Chance(0.5);
      // From now, or replaying from the beginning of history.
      w.next_start = rng_.Chance(0.5) ? 0 : 1;
    }
    Later(rng_.Range(0, 200 * sim::kMillisecond), [this, i] { ConnectWatch(i); });
  }
  for (int i = 0; i < opts_.lease_clients; ++i) {
    Later(rng_.Range(0, 100 * sim::kMillisecond), [this, i] { NextLease(i); });
  }
}

// ---- KV clients ----

Request Workload::RandomRequest(int c) {
  Request req;
  auto key = [&] { return absl::StrCat("k", rng_.Uniform(opts_.keys)); };
  auto value = [&] {
    return absl::StrCat("c", c, "-", kv_[c]->seq, "-", history_.ops.size());
  };
  const uint64_t dice = rng_.Uniform(100);
  if (dice < 30) {
    RequestOp op{RequestOp::kPut, key(), "", value(), 0, rng_.Chance(0.3)};
    req.success.push_back(op);
  } else if (dice < 38) {
    RequestOp op{RequestOp::kDelete, key(), "", "", 0, rng_.Chance(0.3)};
    if (rng_.Chance(0.3)) {
      op.key = "k";
      op.range_end = absl::StrCat("k", rng_.Uniform(opts_.keys));
    }
    req.success.push_back(op);
  } else if (dice < 55) {
    const std::string k = key();
    Compare cmp;
    cmp.key = k;
    cmp.target = static_cast<Compare::Target>(rng_.Uniform(4));  // no lease
    cmp.result = static_cast<Compare::Result>(rng_.Uniform(4));
    cmp.number = rng_.Range(0, std::max<int64_t>(1, last_revision_));
    if (cmp.target == Compare::kVersion) cmp.number = rng_.Range(0, 3);
    cmp.value = value();
    req.compares.push_back(cmp);
    req.success.push_back(RequestOp{RequestOp::kPut, k, "", value(), 0, false});
    if (rng_.Chance(0.5)) {
      req.success.push_back(
          RequestOp{RequestOp::kRange, "k", "l", "", 0, false});
    }
    req.failure.push_back(RequestOp{RequestOp::kRange, k, "", "", 0, false});
    if (rng_.Chance(0.3)) {
      req.failure.push_back(
          RequestOp{RequestOp::kPut, key(), "", value(), 0, false});
    }
  } else {
    RequestOp op{RequestOp::kRange, key(), "", "", 0, false};
    if (rng_.Chance(0.3)) {
      op.key = "k";
      op.range_end = "l";
    }
    req.success.push_back(op);
    req.serializable = dice >= 85;
  }
  return req;
}

int Workload::NextOpNumber(int c) {
  KvClient& cl = *kv_[c];
  sim::Decisions* d = rng_.decisions();
  if (!d->replaying()) return issued_ >= opts_.ops ? -1 : cl.issued++;
  if (cl.next_listed >= cl.listed.size()) return -1;
  const int n = cl.listed[cl.next_listed];
  const int64_t now = cluster_->world().now();
  const int64_t at = d->RecordedTime(sim::Schedule::UnitKind::kOp,
                                     absl::StrCat("c", c, ".", n))
                         .value_or(now);
  if (at > now) {
    Later(at - now, [this, c] { NextKv(c); });
    return -2;  // not yet
  }
  ++cl.next_listed;
  return n;
}

void Workload::NextKv(int c) {
  KvClient& cl = *kv_[c];
  if (cl.busy) return;
  int n = -1;
  if (rng_.scheduled()) {
    n = NextOpNumber(c);
    if (n < 0) return;
    cl.stream = rng_.decisions()->StreamHandle(absl::StrCat("kv/c", c, ".", n),
                                               "workload");
  } else if (issued_ >= opts_.ops) {
    return;
  }
  StreamScope scope(this, cl.stream);
  if (rng_.Chance(opts_.compact_probability) && last_revision_ > 3) {
    // Compactions are not part of the KV history (latest-revision reads
    // do not see them); the watch checker learns which ones took effect
    // from the committed log and checks the acknowledged ones did.
    const int64_t rev = rng_.Range(2, last_revision_ - 1);
    etcdserverpb::CompactionRequest r;
    r.set_revision(rev);
    const uint64_t target = RandomUpNode();
    if (target != 0) {
      cluster_->Call(target, [&](server::EtcdServer& s) {
        s.Compact(r, [this, rev](
                         absl::StatusOr<etcdserverpb::CompactionResponse> c) {
          if (c.ok()) watch_checker_.OnCompactionAcked(rev);
        });
      });
    }
  }
  ++issued_;
  cl.busy = true;
  Operation op;
  op.id = static_cast<int>(history_.ops.size());
  op.client = c;
  op.req = RandomRequest(c);
  if (rng_.scheduled()) {
    cl.unit = rng_.decisions()->Note(sim::Schedule::UnitKind::kOp,
                                     absl::StrCat("c", c, ".", n),
                                     cluster_->world().now(), RequestText(op));
  }
  history_.ops.push_back(std::move(op));
  SendKv(c, static_cast<int>(history_.ops.size()) - 1, 0);
}

void Workload::SendKv(int c, int op_index, int attempt) {
  KvClient& cl = *kv_[c];
  StreamScope scope(this, cl.stream);
  const uint64_t seq = ++cl.seq;
  cl.op_index = op_index;
  sim::World& world = cluster_->world();
  history_.ops[op_index].invoke_ns = world.now();
  history_.ops[op_index].return_ns = world.now();
  const uint64_t target = RandomUpNode();
  if (target == 0) {
    FinishKv(c, seq, op_index, Operation::kFail,
             absl::UnavailableError("no member up"), {}, attempt);
    return;
  }
  Later(opts_.timeout_ns, [this, c, seq, op_index, attempt] {
    FinishKv(c, seq, op_index, Operation::kUnknown,
             absl::DeadlineExceededError("client timeout"), {}, attempt);
  });
  // A callback that runs before Call returns was refused synchronously:
  // it never reached raft, so it did not happen.
  const Request req = history_.ops[op_index].req;
  auto sync = std::make_shared<bool>(true);
  auto done = [this, c, seq, op_index, attempt, sync](
                  absl::Status s, Response resp, bool is_read) {
    Operation::Outcome o = Operation::kOk;
    if (!s.ok()) {
      o = (is_read || Definite(s, *sync)) ? Operation::kFail
                                          : Operation::kUnknown;
    }
    FinishKv(c, seq, op_index, o, s, std::move(resp), attempt);
  };
  const bool single = req.compares.empty() && req.success.size() == 1 &&
                      req.failure.empty();
  // A plain request's answer as a one-op Response.
  auto plain = [done](bool is_read, auto to_result) {
    return [done, is_read, to_result](auto r) {
      if (!r.ok()) return done(r.status(), {}, is_read);
      Response resp;
      resp.revision = r->header().revision();
      resp.results.push_back(to_result(*r));
      done(absl::OkStatus(), std::move(resp), is_read);
    };
  };
  bool up = cluster_->Call(target, [&](server::EtcdServer& s) {
    if (!single) {
      const bool read_only = std::none_of(
          req.success.begin(), req.success.end(),
          [](const RequestOp& o) { return o.kind != RequestOp::kRange; });
      s.Txn(TxnProto(req),
            [done, read_only](absl::StatusOr<etcdserverpb::TxnResponse> r) {
              if (!r.ok()) return done(r.status(), {}, read_only);
              done(absl::OkStatus(), FromTxn(*r), read_only);
            });
      return;
    }
    const RequestOp& op = req.success[0];
    switch (op.kind) {
      case RequestOp::kRange: {
        etcdserverpb::RangeRequest r = RangeProto(op);
        r.set_serializable(req.serializable);
        s.Range(r, plain(true, FromRange));
        break;
      }
      case RequestOp::kPut:
        s.Put(PutProto(op), plain(false, FromPut));
        break;
      case RequestOp::kDelete:
        s.DeleteRange(DeleteProto(op), plain(false, FromDelete));
        break;
    }
  });
  *sync = false;
  if (!up) {
    FinishKv(c, seq, op_index, Operation::kFail,
             absl::UnavailableError("member down"), {}, attempt);
  }
}

void Workload::FinishKv(int c, uint64_t seq, int op_index,
                        Operation::Outcome o, const absl::Status& s,
                        Response resp, int attempt) {
  KvClient& cl = *kv_[c];
  if (!cl.busy || cl.seq != seq) return;  // already finished
  StreamScope scope(this, cl.stream);
  sim::World& world = cluster_->world();
  Operation& op = history_.ops[op_index];
  op.outcome = o;
  op.return_ns = world.now();
  if (o == Operation::kOk) {
    op.resp = std::move(resp);
    last_revision_ = std::max(last_revision_, op.resp.revision);
  }
  world.NoteHash(sim::TraceKind::kResponse, c, o,
                 TraceHashResponse(s, op.resp));  // the determinism trace
  if (Trace* t = cluster_->trace()) {
    t->Span(op.invoke_ns, world.now(), 1000 + c, FormatOp(op),
            o == Operation::kOk     ? "ok"
            : o == Operation::kFail ? std::string(s.message())
                                    : "unknown");
  }
  // Continue from a new event: never call back into a member from its own
  // callback.
  if (o == Operation::kFail && attempt < opts_.max_retries &&
      !(s.code() == absl::StatusCode::kInvalidArgument ||
        s.code() == absl::StatusCode::kNotFound ||
        s.code() == absl::StatusCode::kOutOfRange)) {
    ++cl.seq;  // the retry is a new attempt (and a new operation)
    ++stats_.failed;
    Operation retry;
    retry.id = static_cast<int>(history_.ops.size());
    retry.client = c;
    retry.req = op.req;
    history_.ops.push_back(std::move(retry));
    const int next = static_cast<int>(history_.ops.size()) - 1;
    Later(rng_.Range(sim::kMillisecond, 50 * sim::kMillisecond),
          [this, c, next, attempt] { SendKv(c, next, attempt + 1); });
    return;
  }
  cl.busy = false;
  ++completed_;
  if (rng_.scheduled()) {
    rng_.decisions()->SetResult(
        cl.unit, o == Operation::kOk     ? "ok"
                 : o == Operation::kFail ? absl::StrCat("fail: ", s.message())
                                         : "unknown");
  }
  if (o == Operation::kOk) {
    ++stats_.ok;
  } else if (o == Operation::kFail) {
    ++stats_.failed;
  } else {
    ++stats_.unknown;
  }
  Later(rng_.Range(1, opts_.max_think_ns), [this, c] { NextKv(c); });
}

// ---- watch clients ----

void Workload::ConnectWatch(int wi) {
  StreamScope scope(this, "watch", wi);
  WatchClient& c = *watch_[wi];
  if (c.connected) return;
  const uint64_t node = RandomUpNode();
  if (node == 0) {
    Later(100 * sim::kMillisecond, [this, wi] { ConnectWatch(wi); });
    return;
  }
  c.node = node;
  c.checker_stream = watch_checker_.NewStream();
  const uint64_t conn = ++c.conn;
  c.pending_creates.clear();
  c.by_id.clear();
  const bool up = cluster_->Call(node, [&](server::EtcdServer& s) {
    c.stream = s.watch_hub().OpenStream(
        [this, wi, conn](const mvcc::WatchResponse& r) {
          return OnWatchResponse(wi, conn, r);
        });
    c.connected = true;
    for (size_t j = 0; j < c.watchers.size(); ++j) {
      CreateWatcher(wi, static_cast<int>(j), s);
    }
  });
  if (!up) {
    Later(100 * sim::kMillisecond, [this, wi] { ConnectWatch(wi); });
    return;
  }
  ++stats_.watch_resumes;
  // Now and then, ask for progress on the stream.
  Later(rng_.Range(200, 1500) * sim::kMillisecond,
        [this, wi, conn] { AskProgress(wi, conn); });
}

void Workload::CreateWatcher(int wi, int j, server::EtcdServer& s) {
  WatchClient& c = *watch_[wi];
  Watcher& w = c.watchers[j];
  w.seg = watch_checker_.Begin(w.spec, c.node, w.next_start, c.checker_stream);
  w.active = true;
  c.pending_creates.push_back(j);
  mvcc::WatchCreate req;
  req.key = w.spec.key;
  req.range_end = w.spec.range_end;
  req.start_revision = w.next_start;
  req.prev_kv = w.spec.prev_kv;
  req.no_put = w.spec.no_put;
  req.no_delete = w.spec.no_delete;
  req.progress_notify = w.progress_notify;
  req.fragment = w.spec.fragment;
  s.WatchCreate(c.stream, req);
}

bool Workload::OnWatchResponse(int wi, uint64_t conn,
                               const mvcc::WatchResponse& r) {
  StreamScope scope(this, "watch", wi);
  WatchClient& c = *watch_[wi];
  if (c.conn != conn || !c.connected) return true;  // an old stream
  if (c.refuse_probability > 0 && rng_.Chance(c.refuse_probability)) {
    return false;  // a slow reader: the buffer is full
  }
  if (r.watch_id == mvcc::kInvalidWatchId && !r.created) {
    std::vector<int> segs;
    for (const Watcher& w : c.watchers) {
      if (w.active) segs.push_back(w.seg);
    }
    watch_checker_.OnStreamProgress(c.checker_stream, segs, r.revision);
    return true;
  }
  int j = -1;
  if (r.created) {
    // Created replies come in the order of the creates on the stream.
    if (c.pending_creates.empty()) return true;
    j = c.pending_creates.front();
    c.pending_creates.pop_front();
    if (!r.canceled) c.by_id[r.watch_id] = j;
  } else {
    auto it = c.by_id.find(r.watch_id);
    if (it == c.by_id.end()) return true;
    j = it->second;
  }
  Watcher& w = c.watchers[j];
  watch_checker_.OnResponse(w.seg, r);
  stats_.watch_events += r.events.size();
  if (r.canceled) {
    w.active = false;
    c.by_id.erase(r.watch_id);
    if (r.created) return true;  // a refused create: the checker reports it
    // Compacted: carry on from the oldest revision still there, on the
    // same stream.
    const int64_t from = r.compact_revision + 1;
    Later(rng_.Range(sim::kMillisecond, 100 * sim::kMillisecond),
          [this, wi, conn, j, from] {
            WatchClient& c = *watch_[wi];
            if (c.conn != conn || !c.connected) return;
            c.watchers[j].next_start = from;
            cluster_->Call(c.node, [&](server::EtcdServer& s) {
              CreateWatcher(wi, j, s);
            });
          });
  }
  return true;
}

void Workload::AskProgress(int wi, uint64_t conn) {
  StreamScope scope(this, "watch", wi);
  WatchClient& c = *watch_[wi];
  if (c.conn != conn || !c.connected || done()) return;
  cluster_->Call(c.node, [&](server::EtcdServer& s) {
    s.watch_hub().RequestProgress(c.stream);
  });
  Later(rng_.Range(200, 1500) * sim::kMillisecond,
        [this, wi, conn] { AskProgress(wi, conn); });
}

void Workload::OnWatchDown(uint64_t node) {
  for (size_t i = 0; i < watch_.size(); ++i) {
    WatchClient& c = *watch_[i];
    if (!c.connected || c.node != node) continue;
    c.connected = false;
    for (Watcher& w : c.watchers) {
      if (!w.active) continue;
      w.active = false;
      watch_checker_.End(w.seg);
      // Resume after the last event seen, as clientv3 does.
      if (watch_checker_.created(w.seg)) {
        w.next_start = watch_checker_.NextRevision(w.seg);
      }
    }
    const int wi = static_cast<int>(i);
    Later(rng_.Range(10, 300) * sim::kMillisecond,
          [this, wi] { ConnectWatch(wi); });
  }
}

// ---- lease clients ----

// Lease clients' writes go into the KV history like any other client's:
// every revision of the run is then explained by a recorded operation (the
// checker runs without external writes). An operation stays kUnknown
// unless an answer settles it before the step's timeout.
int Workload::StartLeaseOp(int l, Request req) {
  Operation op;
  op.id = static_cast<int>(history_.ops.size());
  op.client = opts_.clients + l;  // after the KV clients
  op.invoke_ns = cluster_->world().now();
  op.return_ns = op.invoke_ns;
  op.outcome = Operation::kUnknown;
  op.req = std::move(req);
  history_.ops.push_back(std::move(op));
  return static_cast<int>(history_.ops.size()) - 1;
}

void Workload::FinishLeaseOp(int op_index, const absl::Status& s, bool sync,
                             absl::FunctionRef<Response()> ok_response) {
  sim::World& world = cluster_->world();
  Operation& op = history_.ops[op_index];
  op.return_ns = world.now();
  if (s.ok()) {
    op.outcome = Operation::kOk;
    op.resp = ok_response();
    last_revision_ = std::max(last_revision_, op.resp.revision);
  } else {
    op.outcome = Definite(s, sync) ? Operation::kFail : Operation::kUnknown;
  }
  world.NoteHash(sim::TraceKind::kResponse, op.client, op.outcome,
                 TraceHashResponse(s, op.resp));
  if (Trace* t = cluster_->trace()) {
    t->Span(op.invoke_ns, world.now(), 1000 + op.client, FormatOp(op),
            op.outcome == Operation::kOk     ? "ok"
            : op.outcome == Operation::kFail ? std::string(s.message())
                                             : "unknown");
  }
}

void Workload::NextLease(int l) {
  if (done()) return;
  LeaseClient& lc = *lease_[l];
  lc.phase = 0;
  lc.lease = 0;
  lc.keys = 0;
  LeaseStep(l);
}

void Workload::LeaseStep(int l) {
  StreamScope scope(this, "lease", l);
  LeaseClient& lc = *lease_[l];
  const uint64_t seq = ++lc.seq;
  const uint64_t node = RandomUpNode();
  sim::World& world = cluster_->world();
  const int64_t invoke = world.now();
  auto again = [this, l](int64_t delay) {
    Later(delay, [this, l] { LeaseStep(l); });
  };
  if (node == 0 || done()) {
    if (!done()) again(100 * sim::kMillisecond);
    return;
  }
  // Each step has its own timeout: a step that never answers moves on.
  auto current = [this, l, seq] { return lease_[l]->seq == seq; };
  Later(opts_.timeout_ns, [this, l, seq, current] {
    if (!current()) return;
    ++lease_[l]->seq;
    Later(sim::kMillisecond, [this, l] { NextLease(l); });
  });
  switch (lc.phase) {
    case 0: {  // grant
      etcdserverpb::LeaseGrantRequest r;
      lc.ttl_s = 1 + static_cast<int64_t>(rng_.Uniform(3));
      r.set_ttl(lc.ttl_s);
      cluster_->Call(node, [&](server::EtcdServer& s) {
        s.LeaseGrant(r, [this, l, invoke, current, again](
                            absl::StatusOr<etcdserverpb::LeaseGrantResponse>
                                resp) {
          if (!current()) return;
          LeaseClient& lc = *lease_[l];
          ++lc.seq;
          if (!resp.ok()) return again(50 * sim::kMillisecond);
          lc.lease = resp->id();
          lc.ttl_s = resp->ttl();
          ++stats_.lease_grants;
          lease_checker_.OnGranted(lc.lease, lc.ttl_s, invoke,
                                   cluster_->world().now());
          // Its expiry: the leader revokes it (and its keys) once its TTL
          // ran out, at a time no client sees: a revoke that may happen any
          // time from now on.
          const int expiry = StartLeaseOp(l, RevokeRequest(lc.lease));
          (void)expiry;  // stays kUnknown
          lc.phase = 1;
          lc.keepalives_left = static_cast<int>(rng_.Uniform(6));
          again(sim::kMillisecond);
        });
      });
      return;
    }
    case 1: {  // attach keys
      Request req = PutRequest(absl::StrCat("lease/", lc.lease, "/", lc.keys),
                               absl::StrCat("l", l, "-", world.now()));
      req.success[0].lease = lc.lease;
      const etcdserverpb::PutRequest r = PutProto(req.success[0]);
      const int op = StartLeaseOp(l, std::move(req));
      auto sync = std::make_shared<bool>(true);
      const bool up = cluster_->Call(node, [&](server::EtcdServer& s) {
        s.Put(r, [this, l, op, sync, current, again](
                     absl::StatusOr<etcdserverpb::PutResponse> resp) {
          if (!current()) return;  // timed out: stays unknown
          FinishLeaseOp(op, resp.status(), *sync, [&] {
            Response out;
            out.revision = resp->header().revision();
            out.results.push_back(FromPut(*resp));
            return out;
          });
          LeaseClient& lc = *lease_[l];
          ++lc.seq;
          if (!resp.ok() && resp.status().code() == absl::StatusCode::kNotFound) {
            return Later(sim::kMillisecond, [this, l] { NextLease(l); });
          }
          if (++lc.keys >= 2) lc.phase = 2;
          again(sim::kMillisecond);
        });
      });
      *sync = false;
      if (!up) {
        FinishLeaseOp(op, absl::UnavailableError("member down"), true,
                      [] { return Response(); });
      }
      return;
    }
    case 2: {  // keep alive, then revoke or abandon
      if (lc.keepalives_left-- <= 0) {
        if (rng_.Chance(0.5)) {
          Later(sim::kMillisecond, [this, l] { NextLease(l); });  // abandon
          return;
        }
        etcdserverpb::LeaseRevokeRequest r;
        r.set_id(lc.lease);
        lease_checker_.OnRevokeRequested(lc.lease, invoke);
        const int op = StartLeaseOp(l, RevokeRequest(lc.lease));
        auto sync = std::make_shared<bool>(true);
        const bool up = cluster_->Call(node, [&](server::EtcdServer& s) {
          s.LeaseRevoke(r, [this, l, op, sync, current](
                               absl::StatusOr<
                                   etcdserverpb::LeaseRevokeResponse>
                                   resp) {
            if (!current()) return;  // timed out: stays unknown
            FinishLeaseOp(op, resp.status(), *sync, [&] {
              Response out;
              out.revision = resp->header().revision();
              return out;
            });
            ++lease_[l]->seq;
            Later(sim::kMillisecond, [this, l] { NextLease(l); });
          });
        });
        *sync = false;
        if (!up) {
          FinishLeaseOp(op, absl::UnavailableError("member down"), true,
                      [] { return Response(); });
        }
        return;
      }
      // Mostly well within the TTL; sometimes too late, and sometimes right
      // at its edge, where a leader that renews expired leases (or revokes
      // early) is caught in the act.
      const int64_t ttl_ns = lc.ttl_s * sim::kSecond;
      const uint64_t dice = rng_.Uniform(100);
      const int64_t wait =
          dice < 10   ? ttl_ns + rng_.Range(0, ttl_ns)
          : dice < 35 ? ttl_ns + rng_.Range(-20, 50) * sim::kMillisecond
                      : rng_.Range(ttl_ns / 10, ttl_ns / 3);
      ++lc.seq;  // the wait is not a request
      Later(wait, [this, l] {
        LeaseClient& lc = *lease_[l];
        const uint64_t node = RandomUpNode();
        if (node == 0 || done()) return NextLease(l);
        const uint64_t seq = ++lc.seq;
        const int64_t invoke = cluster_->world().now();
        const int64_t id = lc.lease;
        // What the lease checker needs to know of when the leader may
        // renew: a member that does not lead forwards the keep-alive to the
        // leader as a message, which the network may copy, and after the
        // client gives up the leader may still hold it.
        struct Call {
          bool ran = false;       // the member took the request
          bool in_call = false;   // still inside Cluster::Call
          bool direct = false;    // the member asked leads: no forward
          bool duplicated = false;  // a message copied during the call
          bool gave_up = false;   // the client timed out first
        };
        auto call = std::make_shared<Call>();
        const bool ask_ttl = rng_.Chance(0.2);
        Later(opts_.timeout_ns, [this, l, seq, invoke, id, ask_ttl, call] {
          if (lease_[l]->seq != seq) return;
          ++lease_[l]->seq;
          if (!ask_ttl) {
            // No answer: the leader may have renewed it all the same, or
            // may still.
            call->gave_up = true;
            lease_checker_.OnKeepAlive(id, invoke, cluster_->world().now(),
                                       LeaseChecker::KeepAlive::kFailed,
                                       /*may_renew_later=*/call->ran);
          }
          Later(sim::kMillisecond, [this, l] { LeaseStep(l); });
        });
        if (ask_ttl) {
          // Now and then ask how long it has left instead (no renewal).
          etcdserverpb::LeaseTimeToLiveRequest t;
          t.set_id(id);
          t.set_keys(true);
          cluster_->Call(node, [&](server::EtcdServer& s) {
            s.LeaseTimeToLive(t, [this, l, seq, invoke, id](
                                     absl::StatusOr<
                                         etcdserverpb::LeaseTimeToLiveResponse>
                                         resp) {
              LeaseClient& lc = *lease_[l];
              if (lc.seq != seq) return;
              ++lc.seq;
              if (resp.ok()) {
                lease_checker_.OnTimeToLive(id, invoke,
                                            cluster_->world().now(),
                                            resp->ttl());
              }
              Later(sim::kMillisecond, [this, l] { LeaseStep(l); });
            });
          });
          return;
        }
        etcdserverpb::LeaseKeepAliveRequest r;
        r.set_id(id);
        const uint64_t dups = cluster_->network().stats().duplicated;
        call->in_call = true;
        call->ran = cluster_->Call(node, [&](server::EtcdServer& s) {
          call->direct = s.node().is_leader();
          s.LeaseKeepAlive(r, [this, l, seq, invoke, id, call](
                                  absl::StatusOr<
                                      etcdserverpb::LeaseKeepAliveResponse>
                                      resp) {
            LeaseClient& lc = *lease_[l];
            if (lc.seq != seq) {
              // The leader itself answers after its client gave up: what
              // it did, it did by now.
              if (call->gave_up && call->direct) {
                lease_checker_.OnKeepAliveSettled(id, cluster_->world().now());
              }
              return;
            }
            ++lc.seq;
            ++stats_.keepalives;
            LeaseChecker::KeepAlive k =
                resp.ok() ? LeaseChecker::KeepAlive::kOk
                : resp.status().code() == absl::StatusCode::kNotFound
                    ? LeaseChecker::KeepAlive::kNotFound
                    : LeaseChecker::KeepAlive::kFailed;
            // A forwarded request that failed after it left may still be
            // on its way to, or held by, the leader; a copy of it may renew
            // whatever this one answered.
            const bool later =
                !call->direct &&
                ((k == LeaseChecker::KeepAlive::kFailed && !call->in_call) ||
                 call->duplicated);
            lease_checker_.OnKeepAlive(id, invoke, cluster_->world().now(), k,
                                       later);
            if (k == LeaseChecker::KeepAlive::kNotFound) {
              return Later(sim::kMillisecond, [this, l] { NextLease(l); });
            }
            Later(sim::kMillisecond, [this, l] { LeaseStep(l); });
          });
        });
        call->in_call = false;
        // Known before any answer the network could have copied arrives
        // (one given within the call sent nothing).
        call->duplicated = cluster_->network().stats().duplicated != dups;
      });
      return;
    }
  }
}

}  // namespace detcd::harness
