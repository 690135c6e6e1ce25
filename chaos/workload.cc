#include "chaos/workload.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <deque>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <thread>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "chaos/checks.h"
#include "detcd/client.h"
#include "harness/history.h"
#include "harness/history_proto.h"
#include "harness/kv_model.h"
#include "harness/lease_checker.h"
#include "harness/linearizability.h"
#include "harness/watch_checker.h"

namespace detcd::chaos {
namespace {

namespace pb = etcdserverpb;
using harness::Operation;
using harness::Request;
using harness::RequestOp;

etcdserverpb::RangeRequest SerializableRange(const RequestOp& op,
                                             bool serializable) {
  etcdserverpb::RangeRequest r = harness::RangeProto(op);
  r.set_serializable(serializable);
  return r;
}

const std::string kAllKeys(1, '\0');

// A write whose error proves it did not take effect: the server refused it
// when applying or validating it (lease not found, bad argument, ...).
// Anything else (deadline, unavailable, "leader changed", too many
// requests, a lost connection) may hide a write that happened.
bool DefiniteFailure(const absl::Status& s) {
  switch (s.code()) {
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kNotFound:
    case absl::StatusCode::kFailedPrecondition:
    case absl::StatusCode::kOutOfRange:
    case absl::StatusCode::kAlreadyExists:
    case absl::StatusCode::kPermissionDenied:
    case absl::StatusCode::kUnauthenticated:
      return true;
    default:
      return false;
  }
}

// The member did not answer: try another.
bool MemberTrouble(const absl::Status& s) {
  return s.code() == absl::StatusCode::kUnavailable ||
         s.code() == absl::StatusCode::kDeadlineExceeded ||
         s.code() == absl::StatusCode::kUnknown ||
         s.code() == absl::StatusCode::kInternal;
}

// A thread's connections: one client per member, made on first use, and
// the member it talks to now.
class Conns {
 public:
  Conns(const std::vector<std::string>& endpoints, size_t home)
      : endpoints_(endpoints), clients_(endpoints.size()), cur_(home) {}
  size_t member() const { return cur_; }
  void Next() { cur_ = (cur_ + 1) % endpoints_.size(); }
  void Set(size_t m) { cur_ = m % endpoints_.size(); }
  // nullptr if the client could not be made (bad endpoint).
  client::Client* Get() {
    if (!clients_[cur_]) {
      client::Config c;
      c.endpoints = {endpoints_[cur_]};
      c.dial_timeout = absl::Seconds(2);
      auto made = client::Client::New(c);
      if (!made.ok()) return nullptr;
      clients_[cur_] = std::move(*made);
    }
    return clients_[cur_].get();
  }

 private:
  std::vector<std::string> endpoints_;
  std::vector<std::unique_ptr<client::Client>> clients_;
  size_t cur_;
};

}  // namespace

struct Workload::Impl {
  explicit Impl(WorkloadOptions opts) : o(std::move(opts)) {}

  int64_t Now() const {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(
               std::chrono::steady_clock::now() - t0)
        .count();
  }
  client::CallOptions Call() const {
    return client::CallOptions::Timeout(absl::Milliseconds(o.op_timeout_ms));
  }
  // Sleeps up to ms; true if the workload is stopping.
  bool Sleep(absl::Notification& n, int64_t ms) {
    return n.WaitForNotificationWithTimeout(absl::Milliseconds(ms));
  }
  void Record(Operation op) {
    absl::MutexLock l(&mu);
    op.id = static_cast<int>(history.ops.size());
    history.ops.push_back(std::move(op));
  }
  // A response header's term: a term higher than any seen means some
  // member became leader no later than now (see checks.h).
  void NoteTerm(const pb::ResponseHeader& h, int64_t now) {
    absl::MutexLock l(&mu);
    NoteTermLocked(h.raft_term(), now);
  }
  void NoteTermLocked(uint64_t term, int64_t now)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    if (term <= max_term) return;
    max_term = term;
    LeaseEvent e;
    e.kind = LeaseEvent::kPrimary;
    e.return_ns = now;
    lease_events.push_back(e);
  }
  void Lease(LeaseEvent e) {
    absl::MutexLock l(&mu);
    lease_events.push_back(e);
  }
  void Count(const std::string& what) {
    absl::MutexLock l(&mu);
    ++counts[what];
  }

  void KvClient(int c);
  void LeaderMonitor();
  Request RandomRequest(std::mt19937_64& rng, int c, int64_t n);
  void LeaseClient(int l);
  void WatchClient(int w);

  WorkloadOptions o;
  std::chrono::steady_clock::time_point t0;
  absl::Notification stop_ops;      // KV and lease clients
  absl::Notification stop_watches;  // watch clients (after Check's wait)
  client::Canceller watch_cancel;   // ends every watch stream
  std::vector<std::thread> op_threads, watch_threads;
  bool started = false, stopped = false, watches_stopped = false;
  std::atomic<int64_t> last_revision{1};

  absl::Mutex mu;
  harness::History history ABSL_GUARDED_BY(mu);
  std::vector<LeaseEvent> lease_events ABSL_GUARDED_BY(mu);
  // Granted leases (for the end-of-run probes) and their TTLs.
  std::map<int64_t, int64_t> granted ABSL_GUARDED_BY(mu);
  uint64_t max_term ABSL_GUARDED_BY(mu) = 0;
  std::map<std::string, int64_t> counts ABSL_GUARDED_BY(mu);
  harness::WatchChecker watch ABSL_GUARDED_BY(mu);

  // Watch clients' state shared with Check (under mu).
  struct WatchState {
    int stream = -1;  // checker stream of the current connection
    size_t member = 0;
    bool connected = false;
    int64_t progress = 0;       // last stream-wide progress revision
    int64_t last_event_ns = 0;  // when its last events arrived
    std::vector<int> active_segs;
    std::shared_ptr<client::WatchStream> live;
  };
  std::vector<WatchState> watch_state ABSL_GUARDED_BY(mu);
  // Check's final catch-up: no reconnection after this.
  bool freeze_watches ABSL_GUARDED_BY(mu) = false;
};

Request Workload::Impl::RandomRequest(std::mt19937_64& rng, int c, int64_t n) {
  auto uniform = [&](uint64_t k) { return rng() % k; };
  auto chance = [&](double p) {
    return std::uniform_real_distribution<double>(0, 1)(rng) < p;
  };
  Request req;
  auto key = [&] { return absl::StrCat("k", uniform(o.keys)); };
  int sub = 0;
  auto value = [&] { return absl::StrCat("c", c, "-", n, "-", sub++); };
  const uint64_t dice = uniform(100);
  if (dice < 30) {
    req.success.push_back(
        RequestOp{RequestOp::kPut, key(), "", value(), 0, chance(0.3)});
  } else if (dice < 38) {
    RequestOp op{RequestOp::kDelete, key(), "", "", 0, chance(0.3)};
    if (chance(0.3)) {
      op.key = "k";
      op.range_end = absl::StrCat("k", uniform(o.keys));
    }
    req.success.push_back(op);
  } else if (dice < 55) {
    const std::string k = key();
    harness::Compare cmp;
    cmp.key = k;
    cmp.target = static_cast<harness::Compare::Target>(uniform(4));
    cmp.result = static_cast<harness::Compare::Result>(uniform(4));
    cmp.number = static_cast<int64_t>(uniform(
        static_cast<uint64_t>(std::max<int64_t>(1, last_revision)) + 1));
    if (cmp.target == harness::Compare::kVersion) {
      cmp.number = static_cast<int64_t>(uniform(4));
    }
    cmp.value = value();
    req.compares.push_back(cmp);
    req.success.push_back(RequestOp{RequestOp::kPut, k, "", value(), 0, false});
    if (chance(0.5)) {
      req.success.push_back(
          RequestOp{RequestOp::kRange, "k", "l", "", 0, false});
    }
    req.failure.push_back(RequestOp{RequestOp::kRange, k, "", "", 0, false});
    if (chance(0.3)) {
      req.failure.push_back(
          RequestOp{RequestOp::kPut, key(), "", value(), 0, false});
    }
  } else {
    RequestOp op{RequestOp::kRange, key(), "", "", 0, false};
    if (chance(0.3)) {
      op.key = "k";
      op.range_end = "l";
    }
    req.success.push_back(op);
    req.serializable = dice >= 85;
  }
  return req;
}

static const char* KindName(const Request& r) {
  if (!r.compares.empty() || r.success.size() != 1 || !r.failure.empty()) {
    return "txn";
  }
  switch (r.success[0].kind) {
    case RequestOp::kPut:
      return "put";
    case RequestOp::kDelete:
      return "delete";
    case RequestOp::kRange:
      return r.serializable ? "get-serializable" : "get-linearizable";
  }
  return "?";
}

void Workload::Impl::KvClient(int c) {
  std::mt19937_64 rng(o.seed * 1000003 + static_cast<uint64_t>(c) * 7919 + 1);
  const size_t home = static_cast<size_t>(c) % o.endpoints.size();
  Conns conns(o.endpoints, home);
  int since_move = 0;
  for (int64_t n = 0; !stop_ops.HasBeenNotified(); ++n) {
    // Back home after a while, so reads keep going to every member.
    if (conns.member() != home && ++since_move > 20) {
      conns.Set(home);
      since_move = 0;
    }
    Operation op;
    op.client = c;
    op.req = RandomRequest(rng, c, n);
    const Request& req = op.req;
    const bool read_only = harness::IsReadOnly(req);
    client::Client* cl = conns.Get();
    op.invoke_ns = Now();
    absl::Status st;
    const pb::ResponseHeader* hdr = nullptr;
    // Keeps the answer alive for hdr.
    absl::StatusOr<pb::RangeResponse> range;
    absl::StatusOr<pb::PutResponse> put;
    absl::StatusOr<pb::DeleteRangeResponse> del;
    absl::StatusOr<pb::TxnResponse> txn;
    if (cl == nullptr) {
      st = absl::UnavailableError("no client for the endpoint");
    } else if (std::string(KindName(req)) == "txn") {
      txn = cl->Txn(harness::TxnProto(req), Call());
      st = txn.status();
      if (txn.ok()) {
        op.resp = harness::FromTxn(*txn);
        hdr = &txn->header();
      }
    } else {
      const RequestOp& ro = req.success[0];
      harness::OpResult res;
      switch (ro.kind) {
        case RequestOp::kRange:
          range = cl->Range(SerializableRange(ro, req.serializable), Call());
          st = range.status();
          if (range.ok()) {
            res = harness::FromRange(*range);
            hdr = &range->header();
          }
          break;
        case RequestOp::kPut:
          put = cl->Put(harness::PutProto(ro), Call());
          st = put.status();
          if (put.ok()) {
            res = harness::FromPut(*put);
            hdr = &put->header();
          }
          break;
        case RequestOp::kDelete:
          del = cl->DeleteRange(harness::DeleteProto(ro), Call());
          st = del.status();
          if (del.ok()) {
            res = harness::FromDelete(*del);
            hdr = &del->header();
          }
          break;
      }
      if (st.ok()) {
        op.resp.revision = hdr->revision();
        op.resp.results.push_back(std::move(res));
      }
    }
    op.return_ns = Now();
    if (st.ok()) {
      op.outcome = Operation::kOk;
      NoteTerm(*hdr, op.return_ns);
      int64_t seen = last_revision.load();
      while (seen < op.resp.revision &&
             !last_revision.compare_exchange_weak(seen, op.resp.revision)) {
      }
    } else {
      op.outcome = read_only || DefiniteFailure(st) ? Operation::kFail
                                                    : Operation::kUnknown;
      op.resp = harness::Response();
      if (MemberTrouble(st)) {
        conns.Next();
        since_move = 0;
      }
    }
    Count(absl::StrCat(KindName(req), op.outcome == Operation::kOk ? " ok"
                                      : op.outcome == Operation::kFail
                                          ? " fail"
                                          : " unknown"));
    Record(std::move(op));
    if (o.think_max_ms > 0 &&
        Sleep(stop_ops, static_cast<int64_t>(rng() % (o.think_max_ms + 1)))) {
      break;
    }
  }
}

void Workload::Impl::LeaseClient(int l) {
  std::mt19937_64 rng(o.seed * 1000033 + static_cast<uint64_t>(l) * 104729 +
                      17);
  auto range = [&](int64_t lo, int64_t hi) {
    return lo +
           static_cast<int64_t>(rng() % static_cast<uint64_t>(hi - lo + 1));
  };
  const int hist_client = o.clients + l;
  Conns conns(o.endpoints, static_cast<size_t>(l + 1) % o.endpoints.size());
  auto trouble = [&](const absl::Status& s) {
    if (MemberTrouble(s)) conns.Next();
  };
  while (!stop_ops.HasBeenNotified()) {
    client::Client* cl = conns.Get();
    if (cl == nullptr) {
      conns.Next();
      if (Sleep(stop_ops, 100)) break;
      continue;
    }
    // Grant.
    pb::LeaseGrantRequest g;
    g.set_ttl(range(1, 3));
    const int64_t g_inv = Now();
    absl::StatusOr<pb::LeaseGrantResponse> gr = cl->LeaseGrant(g, Call());
    const int64_t g_ret = Now();
    if (!gr.ok() || !gr->error().empty()) {
      Count("lease-grant fail");
      trouble(gr.status());
      if (Sleep(stop_ops, 50)) break;
      continue;
    }
    Count("lease-grant ok");
    const int64_t id = gr->id();
    const int64_t ttl_s = gr->ttl();
    NoteTerm(gr->header(), g_ret);
    {
      LeaseEvent e;
      e.kind = LeaseEvent::kGranted;
      e.id = id;
      e.ttl_s = ttl_s;
      e.invoke_ns = g_inv;
      e.return_ns = g_ret;
      absl::MutexLock lock(&mu);
      lease_events.push_back(e);
      granted[id] = ttl_s;
      // Its expiry: a revoke nobody sees, possible any time from now on.
      Operation exp;
      exp.id = static_cast<int>(history.ops.size());
      exp.client = hist_client;
      exp.invoke_ns = g_ret;
      exp.return_ns = g_ret;
      exp.outcome = Operation::kUnknown;
      exp.req = harness::RevokeRequest(id);
      history.ops.push_back(std::move(exp));
    }
    // Two keys under it.
    bool gone = false;
    for (int k = 0; k < 2 && !gone && !stop_ops.HasBeenNotified(); ++k) {
      Operation op;
      op.client = hist_client;
      op.req = harness::PutRequest(absl::StrCat("lease/", id, "/", k),
                                   absl::StrCat("l", l, "-", id, "-", k));
      op.req.success[0].lease = id;
      cl = conns.Get();
      op.invoke_ns = Now();
      absl::StatusOr<pb::PutResponse> r =
          cl != nullptr ? cl->Put(harness::PutProto(op.req.success[0]), Call())
                        : absl::StatusOr<pb::PutResponse>(
                              absl::UnavailableError("no client"));
      op.return_ns = Now();
      if (r.ok()) {
        op.outcome = Operation::kOk;
        op.resp.revision = r->header().revision();
        op.resp.results.push_back(harness::FromPut(*r));
        NoteTerm(r->header(), op.return_ns);
        Count("lease-put ok");
      } else {
        op.outcome = DefiniteFailure(r.status()) ? Operation::kFail
                                                 : Operation::kUnknown;
        gone = r.status().code() == absl::StatusCode::kNotFound;
        trouble(r.status());
        Count(op.outcome == Operation::kFail ? "lease-put fail"
                                             : "lease-put unknown");
      }
      Record(std::move(op));
    }
    // Keep-alives: mostly well within the TTL; sometimes too late, and
    // sometimes right at its edge (as the simulator's lease clients).
    const int keepalives = static_cast<int>(rng() % 6);
    for (int k = 0; k < keepalives && !gone; ++k) {
      const int64_t ttl_ms = ttl_s * 1000;
      const int64_t dice = range(0, 99);
      const int64_t wait = dice < 10   ? ttl_ms + range(0, ttl_ms)
                           : dice < 35 ? ttl_ms + range(-20, 50)
                                       : range(ttl_ms / 10, ttl_ms / 3);
      if (Sleep(stop_ops, wait)) break;
      cl = conns.Get();
      if (cl == nullptr) break;
      LeaseEvent e;
      e.id = id;
      e.invoke_ns = Now();
      if (range(0, 4) == 0) {
        pb::LeaseTimeToLiveRequest t;
        t.set_id(id);
        absl::StatusOr<pb::LeaseTimeToLiveResponse> r =
            cl->LeaseTimeToLive(t, Call());
        e.return_ns = Now();
        e.kind = LeaseEvent::kTimeToLive;
        if (r.ok()) {
          e.ttl_s = r->ttl();
          NoteTerm(r->header(), e.return_ns);
        } else if (r.status().code() == absl::StatusCode::kNotFound) {
          e.ttl_s = -1;
        } else {
          trouble(r.status());
          Count("lease-ttl fail");
          continue;
        }
        Count("lease-ttl ok");
        gone = e.ttl_s < 0;
        // etcd truncates the remaining time to whole seconds and answers
        // an expired lease that its leader has not revoked yet with 0: an
        // answer of 0 does not say the lease is alive, so it is not
        // judged.
        if (e.ttl_s != 0) Lease(e);
        continue;
      }
      absl::StatusOr<pb::LeaseKeepAliveResponse> r =
          cl->LeaseKeepAliveOnce(id, Call());
      e.return_ns = Now();
      e.kind = LeaseEvent::kKeepAlive;
      if (r.ok() && r->ttl() > 0) {
        e.outcome = harness::LeaseChecker::KeepAlive::kOk;
        NoteTerm(r->header(), e.return_ns);
        Count("lease-keepalive ok");
      } else if (r.ok() || r.status().code() == absl::StatusCode::kNotFound) {
        // etcd answers a keep-alive of an unknown (or expired) lease with
        // TTL 0 on the stream.
        e.outcome = harness::LeaseChecker::KeepAlive::kNotFound;
        gone = true;
        Count("lease-keepalive notfound");
      } else {
        // The request may still reach the leader, or have reached it.
        e.outcome = harness::LeaseChecker::KeepAlive::kFailed;
        e.may_renew_later = true;
        trouble(r.status());
        Count("lease-keepalive fail");
      }
      Lease(e);
    }
    if (gone || stop_ops.HasBeenNotified() || range(0, 1) == 0) {
      continue;  // let it expire
    }
    // Revoke.
    cl = conns.Get();
    if (cl == nullptr) continue;
    Operation op;
    op.client = hist_client;
    op.req = harness::RevokeRequest(id);
    op.invoke_ns = Now();
    {
      LeaseEvent e;
      e.kind = LeaseEvent::kRevokeRequested;
      e.id = id;
      e.invoke_ns = op.invoke_ns;
      Lease(e);
    }
    pb::LeaseRevokeRequest rv;
    rv.set_id(id);
    absl::StatusOr<pb::LeaseRevokeResponse> r = cl->LeaseRevoke(rv, Call());
    op.return_ns = Now();
    if (r.ok()) {
      op.outcome = Operation::kOk;
      op.resp.revision = r->header().revision();
      NoteTerm(r->header(), op.return_ns);
      Count("lease-revoke ok");
    } else {
      // Not found: expired, or an earlier attempt of the client's retry
      // loop revoked it (the expiry op covers that effect).
      op.outcome =
          DefiniteFailure(r.status()) ? Operation::kFail : Operation::kUnknown;
      trouble(r.status());
      Count(op.outcome == Operation::kFail ? "lease-revoke fail"
                                           : "lease-revoke unknown");
    }
    Record(std::move(op));
  }
}

// Leader changes, for the lease checker's promotions: every member's
// (term, leader) every 100 ms. A new pair with a leader means a leader was
// elected before now; its lessor is promoted once it applied an entry of
// its term (detcd; etcd likewise on becoming leader), which a member may
// report before it happened. So the promotion is recorded one election
// timeout after the sighting: later than the real one (the "lives too
// long" bound only gets more lenient) unless the new leader took more
// than an election timeout to commit its first entry.
void Workload::Impl::LeaderMonitor() {
  client::Config cc;
  cc.endpoints = o.endpoints;
  absl::StatusOr<std::unique_ptr<client::Client>> made =
      client::Client::New(cc);
  if (!made.ok()) return;
  std::set<std::pair<uint64_t, uint64_t>> seen;  // (term, leader)
  while (!stop_ops.HasBeenNotified()) {
    for (const std::string& ep : o.endpoints) {
      absl::StatusOr<pb::StatusResponse> st = (*made)->Status(
          ep, client::CallOptions::Timeout(absl::Milliseconds(500)));
      if (!st.ok() || st->leader() == 0) continue;
      if (!seen.insert({st->raftterm(), st->leader()}).second) continue;
      LeaseEvent e;
      e.kind = LeaseEvent::kPrimary;
      e.return_ns = Now() + o.election_timeout_ms * 1'000'000;
      Lease(e);
      Count("leader-seen");
    }
    if (Sleep(stop_ops, 100)) break;
  }
}

void Workload::Impl::WatchClient(int w) {
  std::mt19937_64 rng(o.seed * 1000037 + static_cast<uint64_t>(w) * 15485863 +
                      29);
  struct W {
    harness::WatchChecker::Spec spec;
    int64_t next_start = 0;
    int seg = -1;
    bool active = false;
  };
  std::vector<W> ws(1 + rng() % 3);
  for (W& x : ws) {
    switch (rng() % 3) {
      case 0:
        x.spec.key = kAllKeys;
        x.spec.range_end = kAllKeys;
        break;
      case 1:
        x.spec.key = "k";
        x.spec.range_end = "l";
        break;
      default:
        x.spec.key = absl::StrCat("k", rng() % o.keys);
        break;
    }
    x.spec.prev_kv = rng() % 3 == 0;
    // From now, or from a past revision (no compaction in this workload).
    if (rng() % 2 == 0) {
      x.next_start = std::max<int64_t>(1, last_revision.load() - (rng() % 10));
    }
  }
  Conns conns(o.endpoints, static_cast<size_t>(w) % o.endpoints.size());
  while (!stop_watches.HasBeenNotified()) {
    {
      absl::MutexLock l(&mu);
      if (freeze_watches) break;
    }
    client::Client* cl = conns.Get();
    // A stream waits for its member without bound: probe it first (a
    // killed member fails the probe and the client moves on); the shared
    // canceller ends every stream when the run is over.
    absl::StatusOr<std::unique_ptr<client::WatchStream>> opened =
        absl::UnavailableError("no client");
    if (cl != nullptr) {
      absl::StatusOr<pb::StatusResponse> probe =
          cl->Status(o.endpoints[conns.member()], Call());
      if (probe.ok()) {
        opened = cl->OpenWatch(client::CallOptions::Timeout(absl::Hours(24)),
                               &watch_cancel);
      } else {
        opened = probe.status();
      }
    }
    if (!opened.ok()) {
      conns.Next();
      if (Sleep(stop_watches, 100)) break;
      continue;
    }
    std::shared_ptr<client::WatchStream> stream = std::move(*opened);
    const size_t member = conns.member();
    std::deque<int> pending;       // watchers awaiting their created reply
    std::map<int64_t, int> by_id;  // server watch id -> watcher
    int cstream = -1;
    {
      absl::MutexLock l(&mu);
      if (freeze_watches) break;
      cstream = watch.NewStream();
      WatchState& s = watch_state[w];
      s.stream = cstream;
      s.member = member;
      s.connected = true;
      s.progress = 0;
      s.live = stream;
      s.active_segs.clear();
      for (size_t j = 0; j < ws.size(); ++j) {
        ws[j].seg =
            watch.Begin(ws[j].spec, member + 1, ws[j].next_start, cstream);
        ws[j].active = true;
        s.active_segs.push_back(ws[j].seg);
        pending.push_back(static_cast<int>(j));
      }
    }
    Count("watch-connect");
    bool sent = true;
    for (const W& x : ws) {
      pb::WatchRequest req;
      pb::WatchCreateRequest* cr = req.mutable_create_request();
      cr->set_key(x.spec.key);
      cr->set_range_end(x.spec.range_end);
      cr->set_start_revision(x.next_start);
      cr->set_prev_kv(x.spec.prev_kv);
      sent = sent && stream->Send(req);
    }
    // The reader: everything the stream delivers goes to the checker.
    std::atomic<bool> dead{!sent};
    std::thread reader([&] {
      pb::WatchResponse resp;
      while (stream->Read(&resp)) {
        const mvcc::WatchResponse r = FromWatch(resp);
        absl::MutexLock l(&mu);
        if (watch_state[w].stream != cstream) break;  // frozen or replaced
        NoteTermLocked(resp.header().raft_term(), Now());
        if (r.watch_id == mvcc::kInvalidWatchId && !r.created) {
          std::vector<int> segs;
          for (const W& x : ws) {
            if (x.active) segs.push_back(x.seg);
          }
          watch.OnStreamProgress(cstream, segs, r.revision);
          watch_state[w].progress =
              std::max(watch_state[w].progress, r.revision);
          continue;
        }
        int j = -1;
        if (r.created) {
          if (pending.empty()) continue;
          j = pending.front();
          pending.pop_front();
          if (!r.canceled) by_id[r.watch_id] = j;
        } else {
          auto it = by_id.find(r.watch_id);
          if (it == by_id.end()) continue;
          j = it->second;
        }
        watch.OnResponse(ws[j].seg, r);
        if (!r.events.empty()) watch_state[w].last_event_ns = Now();
        ++counts["watch-events"];
        counts["watch-events"] += static_cast<int64_t>(r.events.size()) - 1;
        if (r.canceled) ws[j].active = false;
      }
      dead = true;
    });
    // Progress requests now and then, until the stream dies or the run
    // ends.
    while (!dead && !stop_watches.HasBeenNotified()) {
      if (Sleep(stop_watches, 200 + static_cast<int64_t>(rng() % 1300))) {
        break;
      }
      if (o.progress_requests && !dead) {
        pb::WatchRequest req;
        req.mutable_progress_request();
        if (!stream->Send(req)) break;
      }
    }
    bool frozen = false;
    {
      absl::MutexLock l(&mu);
      frozen = freeze_watches;
      if (!frozen) {
        // The connection is gone: its segments end; resume after the last
        // event each watcher saw, on the next member.
        watch_state[w].stream = -1;
        watch_state[w].connected = false;
        for (W& x : ws) {
          if (!x.active) continue;
          x.active = false;
          watch.End(x.seg);
          if (watch.created(x.seg)) x.next_start = watch.NextRevision(x.seg);
        }
      }
    }
    stream->Cancel();
    reader.join();
    {
      absl::MutexLock l(&mu);
      watch_state[w].live.reset();
    }
    if (frozen) break;
    Count("watch-broken");
    conns.Next();
    if (Sleep(stop_watches, 10 + static_cast<int64_t>(rng() % 290))) break;
  }
}

namespace {

// Ends the watch clients (their streams through the shared canceller).
void StopWatches(Workload::Impl& m) {
  if (m.watches_stopped) return;
  m.watches_stopped = true;
  m.stop_watches.Notify();
  m.watch_cancel.Cancel();
  for (std::thread& t : m.watch_threads) t.join();
  m.watch_threads.clear();
}

// A member's whole event history, revisions 2..upto, as a watch from
// revision 1 over all keys with prev_kv delivers it.
absl::StatusOr<std::vector<mvcc::Event>> ReadEvents(client::Client& cl,
                                                    int64_t upto,
                                                    absl::Duration timeout) {
  std::vector<mvcc::Event> out;
  if (upto <= 1) return out;
  client::Canceller cancel;
  absl::StatusOr<std::unique_ptr<client::WatchStream>> st =
      cl.OpenWatch(client::CallOptions::Timeout(timeout), &cancel);
  if (!st.ok()) return st.status();
  client::WatchStream& s = **st;
  pb::WatchRequest req;
  pb::WatchCreateRequest* cr = req.mutable_create_request();
  cr->set_key(kAllKeys);
  cr->set_range_end(kAllKeys);
  cr->set_start_revision(1);
  cr->set_prev_kv(true);
  if (!s.Send(req)) return absl::UnavailableError("watch stream closed");
  pb::WatchResponse resp;
  while (s.Read(&resp)) {
    if (resp.canceled()) {
      s.Cancel();
      return absl::FailedPreconditionError(
          absl::StrCat("watch from revision 1 canceled (compact revision ",
                       resp.compact_revision(), "): ", resp.cancel_reason()));
    }
    for (const mvccpb::Event& e : resp.events()) out.push_back(FromEvent(e));
    if (!out.empty() && out.back().kv.mod_revision >= upto) break;
  }
  s.Cancel();
  if (out.empty() || out.back().kv.mod_revision < upto) {
    return absl::DeadlineExceededError(absl::StrCat(
        "event history read up to revision ",
        out.empty() ? 1 : out.back().kv.mod_revision, " of ", upto));
  }
  // Whatever came after `upto` in the same response is not compared.
  while (!out.empty() && out.back().kv.mod_revision > upto) out.pop_back();
  return out;
}

std::string Seconds(int64_t ns) {
  return absl::StrCat(static_cast<double>(ns / 1'000'000) / 1000.0, " s");
}

}  // namespace

CheckReport Workload::Check() {
  Impl& m = *impl_;
  CheckReport rep;
  std::set<std::string> caught;
  auto fail = [&](const std::string& kind, std::string what) {
    caught.insert(kind);
    rep.failures.push_back(absl::StrCat(kind, ": ", what));
  };
  std::vector<std::string> lines;
  if (!m.started) {
    fail("setup", "the workload was never started");
    rep.ok = false;
    return rep;
  }
  Stop();
  const int64_t t_check = m.Now();
  const int64_t deadline =
      t_check + static_cast<int64_t>(m.o.settle_timeout_s) * 1'000'000'000;
  const size_t n = m.o.endpoints.size();
  client::Config cc;
  cc.endpoints = m.o.endpoints;
  absl::StatusOr<std::unique_ptr<client::Client>> made =
      client::Client::New(cc);
  if (!made.ok()) {
    fail("setup", "client: " + made.status().ToString());
    StopWatches(m);
    rep.ok = false;
    return rep;
  }
  client::Client& cl = **made;
  auto call = [&] { return m.Call(); };

  // Leases: the checker from what the clients saw; wait for the last
  // lease's deadline (plus the time to revoke it) before judging.
  harness::LeaseChecker::Bounds lb;
  lb.max_drift_ppm = 0;  // one machine, one monotonic clock
  lb.extend_ns = m.o.election_timeout_ms * 1'000'000;
  lb.revoke_within_ns = 3'000'000'000;
  harness::LeaseChecker leases(lb);
  std::vector<LeaseEvent> lease_events;
  std::map<int64_t, int64_t> granted;
  {
    absl::MutexLock l(&m.mu);
    lease_events = m.lease_events;
    granted = m.granted;
  }
  ReplayLeaseEvents(lease_events, &leases);
  while (m.Now() < std::min(deadline, leases.SettleTime())) {
    absl::SleepFor(absl::Milliseconds(100));
  }

  // Convergence: every member answers with the same revision twice.
  std::vector<int64_t> revs(n, -1);
  bool converged = false;
  std::string why_not;
  for (int64_t prev = -1; m.Now() < deadline;) {
    bool same = true;
    why_not.clear();
    for (size_t i = 0; i < n; ++i) {
      absl::StatusOr<pb::StatusResponse> s =
          cl.Status(m.o.endpoints[i], call());
      revs[i] = s.ok() ? s->header().revision() : -1;
      same = same && revs[i] >= 0 && revs[i] == revs[0];
      absl::StrAppend(&why_not, why_not.empty() ? "" : ", ", "member ", i + 1,
                      s.ok() ? absl::StrCat(" at revision ", revs[i])
                             : absl::StrCat(" ", s.status().message()));
    }
    if (same && revs[0] == prev) {
      converged = true;
      break;
    }
    prev = same ? revs[0] : -1;
    absl::SleepFor(absl::Milliseconds(300));
  }
  if (!converged) {
    fail("liveness",
         absl::StrCat("members did not converge on one revision within ",
                      m.o.settle_timeout_s, " s (", why_not, ")"));
  }
  const int64_t final_rev = revs[0];

  // Watch clients catch up with their members (progress at or beyond the
  // final revision), then freeze: a stream still connected must then hold
  // every event up to it.
  std::map<uint64_t, int64_t> applied_rev;
  if (converged) {
    for (size_t i = 0; i < n; ++i) applied_rev[i + 1] = final_rev;
    // Without progress requests (etcd 3.4.23 answers them before a
    // lagging watcher has its events: etcd issue 15220), caught up means
    // quiet: no event for 1.5 s on a converged cluster that takes no
    // writes.
    const int64_t quiet_ns = 1'500'000'000;
    const int64_t since = m.Now();
    const int64_t until = std::max(deadline, m.Now() + 10'000'000'000);
    while (m.Now() < until) {
      bool all = true;
      const int64_t now = m.Now();
      {
        absl::MutexLock l(&m.mu);
        for (const Impl::WatchState& w : m.watch_state) {
          if (!w.connected) continue;
          all =
              all && (m.o.progress_requests
                          ? w.progress >= final_rev
                          : now - std::max(w.last_event_ns, since) >= quiet_ns);
        }
      }
      if (all) break;
      absl::SleepFor(absl::Milliseconds(100));
    }
    absl::SleepFor(absl::Milliseconds(300));
  }
  {
    absl::MutexLock l(&m.mu);
    m.freeze_watches = true;
    for (Impl::WatchState& w : m.watch_state) {
      w.stream = -2;  // readers stop delivering
    }
  }
  StopWatches(m);

  harness::History history;
  std::map<std::string, int64_t> counts;
  {
    absl::MutexLock l(&m.mu);
    history = m.history;
    counts = m.counts;
  }
  int64_t ok = 0, failed = 0, unknown = 0;
  for (const Operation& op : history.ops) {
    (op.outcome == Operation::kOk     ? ok
     : op.outcome == Operation::kFail ? failed
                                      : unknown)++;
  }
  lines.push_back(absl::StrCat(
      "history: ", history.ops.size(), " ops (ok ", ok, ", failed ", failed,
      ", unknown ", unknown, ") over ", Seconds(t_check), "; ", m.o.clients,
      " kv clients, ", m.o.leases ? m.o.lease_clients : 0, " lease clients, ",
      m.o.watches ? m.o.watch_clients : 0, " watch clients, ", n,
      " members; final revision ", final_rev));
  {
    std::vector<std::string> kinds;
    for (const auto& [k, v] : counts) kinds.push_back(absl::StrCat(k, "=", v));
    lines.push_back("counts: " + absl::StrJoin(kinds, " "));
  }

  // A coverage floor, as the simulator's: a run in which fewer than 10%
  // of the KV operations succeeded passes without having tested much.
  {
    int64_t kv = 0, kv_ok = 0;
    for (const Operation& op : history.ops) {
      if (op.client >= m.o.clients) continue;
      ++kv;
      kv_ok += op.outcome == Operation::kOk;
    }
    if (kv_ok * 10 < kv || kv == 0) {
      fail("liveness", absl::StrCat("idle: only ", kv_ok, " of ", kv,
                                    " KV operations succeeded (floor: 10%)"));
    }
  }
  // Linearizability: the simulator's checker and options.
  {
    const int64_t t = m.Now();
    harness::CheckOptions copts;
    copts.max_states = m.o.max_states;
    harness::CheckResult lin = harness::CheckLinearizable(history, copts);
    if (!lin.ok) fail("linearizability", lin.explanation);
    if (lin.inconclusive) {
      fail("linearizability",
           absl::StrCat("inconclusive: the search hit its state limit after ",
                        lin.states_explored, " states (nothing proven)"));
    }
    lines.push_back(absl::StrCat("linearizability: ",
                                 !lin.ok            ? "VIOLATION"
                                 : lin.inconclusive ? "INCONCLUSIVE"
                                                    : "ok",
                                 " (", lin.states_explored, " states, ",
                                 Seconds(m.Now() - t), ")"));
  }

  // Watches: the oracle from the members' event histories.
  if (converged && final_rev >= 1) {
    harness::KvModel model;
    std::vector<std::string> wv;
    std::vector<std::vector<mvcc::Event>> member_events(n);
    bool have_oracle = false;
    for (size_t i = 0; i < n; ++i) {
      client::Config one;
      one.endpoints = {m.o.endpoints[i]};
      absl::StatusOr<std::unique_ptr<client::Client>> c =
          client::Client::New(one);
      absl::StatusOr<std::vector<mvcc::Event>> ev =
          c.ok() ? ReadEvents(**c, final_rev, absl::Seconds(20))
                 : absl::StatusOr<std::vector<mvcc::Event>>(c.status());
      if (!ev.ok()) {
        wv.push_back(absl::StrCat("event history of member ", i + 1, ": ",
                                  ev.status().message()));
        continue;
      }
      member_events[i] = std::move(*ev);
      if (!have_oracle) {
        have_oracle = true;
        if (std::string p = BuildModel(member_events[i], &model); !p.empty()) {
          wv.push_back(absl::StrCat("member ", i + 1, ": ", p));
        }
      }
    }
    absl::MutexLock l(&m.mu);
    if (have_oracle && wv.empty()) {
      for (size_t i = 0; i < n; ++i) {
        for (const auto& [rev, evs] : ByRevision(member_events[i])) {
          m.watch.OnCommitted(i + 1, evs);
        }
      }
      for (std::string& p : CheckHistoryAgainstModel(history, model)) {
        wv.push_back(std::move(p));
      }
      m.watch.set_model(&model);
      m.watch.Check(applied_rev, &wv);
      m.watch.set_model(nullptr);
    }
    for (std::string& v : wv) fail("watch", std::move(v));
    lines.push_back(absl::StrCat("watch: ", wv.empty() ? "ok" : "VIOLATION",
                                 " (", m.watch.segments(), " segments, ",
                                 m.watch.events_received(),
                                 " events received; oracle: revisions 2..",
                                 final_rev, " read from ", n, " members)"));
  } else {
    lines.push_back("watch: not checked (members did not converge)");
  }

  // Leases: what clients saw, then the leases that must be gone by now.
  {
    std::vector<std::string> lv = leases.violations();
    const int64_t now = m.Now();
    for (int64_t id : leases.MustBeGone(now)) {
      pb::LeaseTimeToLiveRequest t;
      t.set_id(id);
      absl::StatusOr<pb::LeaseTimeToLiveResponse> r =
          cl.LeaseTimeToLive(t, call());
      if (r.ok() && r->ttl() >= 0) {
        lv.push_back(absl::StrCat(
            "lease ", id, " still alive (ttl ", r->ttl(), " s) ",
            (now - leases.Deadline(id)) / 1'000'000, " ms after its deadline"));
      }
      client::GetOptions prefix;
      prefix.prefix = true;
      absl::StatusOr<pb::RangeResponse> keys =
          cl.Get(absl::StrCat("lease/", id, "/"), prefix, call());
      if (keys.ok() && keys->count() > 0) {
        lv.push_back(absl::StrCat("lease ", id, ": ", keys->count(),
                                  " keys outlived it"));
      }
    }
    for (std::string& v : lv) fail("lease", std::move(v));
    int64_t keepalives = 0;
    for (const LeaseEvent& e : lease_events) {
      keepalives += e.kind == LeaseEvent::kKeepAlive;
    }
    lines.push_back(absl::StrCat("lease: ", lv.empty() ? "ok" : "VIOLATION",
                                 " (", granted.size(), " leases granted, ",
                                 keepalives,
                                 " keep-alives; bounds: drift 0 ppm, "
                                 "extend ",
                                 m.o.election_timeout_ms, " ms)"));
  }
  rep.caught_by.assign(caught.begin(), caught.end());
  rep.ok = rep.failures.empty();
  lines.push_back(rep.ok
                      ? "verdict: all checks green"
                      : absl::StrCat("verdict: FAILED (",
                                     absl::StrJoin(rep.caught_by, ", "), ")"));
  rep.summary = absl::StrJoin(lines, "\n");
  return rep;
}

Workload::Workload(WorkloadOptions o)
    : impl_(std::make_unique<Impl>(std::move(o))) {}

Workload::~Workload() {
  Stop();
  StopWatches(*impl_);
}

void Workload::Start() {
  Impl& m = *impl_;
  if (m.started || m.o.endpoints.empty()) return;
  m.started = true;
  m.t0 = std::chrono::steady_clock::now();
  {
    absl::MutexLock l(&m.mu);
    m.watch_state.resize(m.o.watches ? m.o.watch_clients : 0);
  }
  for (int c = 0; c < m.o.clients; ++c) {
    m.op_threads.emplace_back([&m, c] { m.KvClient(c); });
  }
  if (m.o.leases) {
    for (int l = 0; l < m.o.lease_clients; ++l) {
      m.op_threads.emplace_back([&m, l] { m.LeaseClient(l); });
    }
    m.op_threads.emplace_back([&m] { m.LeaderMonitor(); });
  }
  if (m.o.watches) {
    for (int w = 0; w < m.o.watch_clients; ++w) {
      m.watch_threads.emplace_back([&m, w] { m.WatchClient(w); });
    }
  }
}

void Workload::Stop() {
  Impl& m = *impl_;
  if (!m.started || m.stopped) return;
  m.stopped = true;
  m.stop_ops.Notify();
  // Every call has a deadline (op_timeout_ms; a lease step is one call at
  // a time), so the joins are bounded.
  for (std::thread& t : m.op_threads) t.join();
  m.op_threads.clear();
}

}  // namespace detcd::chaos
