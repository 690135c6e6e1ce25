#include "harness/recipe_driver.h"

#include <utility>

#include "absl/strings/str_cat.h"

namespace detcd::harness {
namespace {

namespace pb = etcdserverpb;
using client::FillReply;
using client::RecipeCall;
using client::RecipeReply;

mvccpb::Event ToProto(const mvcc::Event& e) {
  mvccpb::Event out;
  out.set_type(e.type == mvcc::Event::kDelete ? mvccpb::Event::DELETE
                                              : mvccpb::Event::PUT);
  mvccpb::KeyValue* kv = out.mutable_kv();
  kv->set_key(e.kv.key);
  kv->set_create_revision(e.kv.create_revision);
  kv->set_mod_revision(e.kv.mod_revision);
  kv->set_version(e.kv.version);
  kv->set_value(e.kv.value);
  kv->set_lease(e.kv.lease);
  return out;
}

}  // namespace

SimRecipeDriver::SimRecipeDriver(Cluster* cluster, env::Rng* rng, Options o)
    : cluster_(cluster),
      rng_(rng),
      opts_(o),
      alive_(std::make_shared<bool>(true)) {}

SimRecipeDriver::~SimRecipeDriver() { *alive_ = false; }

void SimRecipeDriver::Later(int64_t delay_ns, std::function<void()> fn) {
  cluster_->world().After(delay_ns, [alive = alive_, fn = std::move(fn)] {
    if (*alive) fn();
  });
}

uint64_t SimRecipeDriver::PickNode() {
  if (node_ != 0 && cluster_->IsUp(node_) && !cluster_->IsPaused(node_)) {
    return node_;
  }
  std::vector<uint64_t> up;
  for (uint64_t id : cluster_->UpNodes()) {
    if (!cluster_->IsPaused(id)) up.push_back(id);
  }
  node_ = up.empty() ? 0 : up[rng_->Uniform(up.size())];
  return node_;
}

void SimRecipeDriver::Request(Issue issue,
                              std::function<void(RecipeReply)> then) {
  auto answered = std::make_shared<bool>(false);
  auto finish = [this, answered, then](RecipeReply r) {
    if (*answered) return;
    *answered = true;
    if (!r.status.ok()) node_ = 0;  // the next request tries another member
    then(std::move(r));
  };
  const uint64_t target = PickNode();
  bool sent = false;
  if (target != 0) {
    sent = cluster_->Call(target, [&](server::EtcdServer& s) {
      // The answer may come inside this call (a refusal): it is handled in
      // an event of its own either way, never inside the server's call.
      issue(s, [this, alive = alive_, finish](RecipeReply r) {
        if (!*alive) return;
        Later(0,
              [finish, r = std::move(r)]() mutable { finish(std::move(r)); });
      });
    });
  }
  if (!sent) {
    // Nobody to send it to (all down or paused): fails after a moment, as
    // a connection attempt does.
    Later(rng_->Range(10, 50) * sim::kMillisecond, [finish] {
      RecipeReply r;
      r.status = absl::UnavailableError("no member reachable");
      finish(std::move(r));
    });
    return;
  }
  Later(opts_.timeout_ns, [this, finish, answered] {
    if (*answered) return;
    ++timeouts_;
    RecipeReply r;
    r.status = absl::DeadlineExceededError("context deadline exceeded");
    finish(std::move(r));
  });
}

void SimRecipeDriver::Run(client::RecipeSteps* steps, Done done) {
  steps_ = steps;
  done_ = std::move(done);
  ++gen_;
  Step(steps_->Start());
}

void SimRecipeDriver::Finish(absl::Status s) {
  CloseWatch();
  steps_ = nullptr;
  Done d = std::move(done_);
  done_ = nullptr;
  const uint64_t g = gen_;
  Later(0, [this, g, d = std::move(d), s = std::move(s)] {
    if (g == gen_ && d) d(s);
  });
}

void SimRecipeDriver::Step(RecipeCall call) {
  if (call.kind != RecipeCall::kKeepWatching &&
      call.kind != RecipeCall::kWatch) {
    CloseWatch();
  }
  const uint64_t g = gen_;
  auto next = [this, g](RecipeReply r) {
    if (g != gen_ || steps_ == nullptr) return;
    Step(steps_->Next(r));
  };
  switch (call.kind) {
    case RecipeCall::kDone:
      Finish(call.status);
      return;
    case RecipeCall::kRange:
      Request(
          [req = call.range](server::EtcdServer& s,
                             std::function<void(RecipeReply)> cb) {
            s.Range(req, FillReply<pb::RangeResponse>(std::move(cb),
                                                      &RecipeReply::range));
          },
          next);
      return;
    case RecipeCall::kTxn:
      Request(
          [req = call.txn](server::EtcdServer& s,
                           std::function<void(RecipeReply)> cb) {
            s.Txn(req,
                  FillReply<pb::TxnResponse>(std::move(cb), &RecipeReply::txn));
          },
          next);
      return;
    case RecipeCall::kDeleteRange:
      Request(
          [req = call.del](server::EtcdServer& s,
                           std::function<void(RecipeReply)> cb) {
            s.DeleteRange(req, FillReply<pb::DeleteRangeResponse>(
                                   std::move(cb), &RecipeReply::del));
          },
          next);
      return;
    case RecipeCall::kLeaseGrant:
      Request(
          [req = call.grant](server::EtcdServer& s,
                             std::function<void(RecipeReply)> cb) {
            s.LeaseGrant(req, FillReply<pb::LeaseGrantResponse>(
                                  std::move(cb), &RecipeReply::grant));
          },
          next);
      return;
    case RecipeCall::kLeaseRevoke:
      Request(
          [req = call.revoke](server::EtcdServer& s,
                              std::function<void(RecipeReply)> cb) {
            s.LeaseRevoke(req, FillReply<pb::LeaseRevokeResponse>(
                                   std::move(cb), &RecipeReply::revoke));
          },
          next);
      return;
    case RecipeCall::kWatch:
      CloseWatch();
      watch_.open = true;
      watch_.req = call.watch;
      watch_.next_start = call.watch.start_revision();
      watch_.pending.clear();
      watch_.delivering = false;
      OpenWatch();
      return;
    case RecipeCall::kKeepWatching:
      if (!watch_.open) {
        Finish(absl::InternalError("recipe: no watch open"));
        return;
      }
      watch_.delivering = false;
      if (!watch_.pending.empty()) {
        watch_.delivering = true;
        const uint64_t c = watch_.conn;
        Later(0, [this, c] { DeliverBatch(c); });
      }
      return;
  }
}

// ------------------------------------------------------------ watches

void SimRecipeDriver::OpenWatch() {
  const uint64_t conn = ++next_conn_;
  watch_.conn = conn;
  const uint64_t target = PickNode();
  bool ok = false;
  if (target != 0) {
    ok = cluster_->Call(target, [&](server::EtcdServer& s) {
      watch_.stream = s.watch_hub().OpenStream(
          [this, alive = alive_, conn](const mvcc::WatchResponse& r) {
            if (*alive) OnWatchResponse(conn, r);
            return true;
          });
      mvcc::WatchCreate c;
      c.key = watch_.req.key();
      c.range_end = watch_.req.range_end();
      c.start_revision = watch_.next_start;
      s.WatchCreate(watch_.stream, c);
    });
  }
  if (!ok) {
    node_ = 0;
    Later(50 * sim::kMillisecond, [this, conn] {
      if (watch_.open && watch_.conn == conn) OpenWatch();
    });
    return;
  }
  watch_.node = target;
  watch_.incarnation = cluster_->Incarnation(target);
  watch_.last_heard_ns = cluster_->world().now();
  Later(opts_.watch_check_ns, [this, conn] { CheckWatch(conn); });
}

void SimRecipeDriver::CheckWatch(uint64_t conn) {
  if (!watch_.open || watch_.conn != conn) return;
  const uint64_t n = watch_.node;
  const bool gone = !cluster_->IsUp(n) || cluster_->IsPaused(n) ||
                    cluster_->Incarnation(n) != watch_.incarnation;
  const bool silent =
      cluster_->world().now() - watch_.last_heard_ns > opts_.watch_silence_ns;
  if (!gone && !silent) {
    Later(opts_.watch_check_ns, [this, conn] { CheckWatch(conn); });
    return;
  }
  // Resume elsewhere (or on the same member, if it is the only one) from
  // the revision after the last event seen.
  ++watch_resumes_;
  if (!gone) {
    const mvcc::WatchHub::StreamId st = watch_.stream;
    cluster_->Call(
        n, [st](server::EtcdServer& s) { s.watch_hub().CloseStream(st); });
  }
  node_ = 0;
  OpenWatch();
}

void SimRecipeDriver::CloseWatch() {
  if (!watch_.open) return;
  watch_.open = false;
  watch_.pending.clear();
  watch_.delivering = false;
  const uint64_t n = watch_.node;
  // Only on the incarnation that opened it: a restarted member numbers
  // its streams afresh, and the id may now be another client's.
  if (cluster_->IsUp(n) && !cluster_->IsPaused(n) &&
      cluster_->Incarnation(n) == watch_.incarnation) {
    const mvcc::WatchHub::StreamId st = watch_.stream;
    cluster_->Call(
        n, [st](server::EtcdServer& s) { s.watch_hub().CloseStream(st); });
  }
  ++next_conn_;
  watch_.conn = next_conn_;
}

void SimRecipeDriver::OnWatchResponse(uint64_t conn,
                                      const mvcc::WatchResponse& r) {
  if (!watch_.open || watch_.conn != conn) return;
  watch_.last_heard_ns = cluster_->world().now();
  std::vector<mvccpb::Event> batch;
  for (const mvcc::Event& e : r.events) batch.push_back(ToProto(e));
  if (!batch.empty()) {
    watch_.next_start = r.events.back().kv.mod_revision + 1;
    watch_.pending.push_back(std::move(batch));
  }
  if (r.canceled) {
    // Compacted past the start, or refused: the watch is over. An empty
    // batch marks the end (see DeliverBatch).
    watch_.pending.emplace_back();
    watch_.conn = ++next_conn_;  // nothing more from this stream
  }
  if (!watch_.delivering && !watch_.pending.empty()) {
    watch_.delivering = true;
    const uint64_t c = watch_.conn;
    Later(0, [this, c] { DeliverBatch(c); });
  }
}

void SimRecipeDriver::DeliverBatch(uint64_t conn) {
  if (!watch_.open || watch_.pending.empty() || steps_ == nullptr) return;
  (void)conn;  // a resumed stream keeps the batches received before
  RecipeReply r;
  r.events = std::move(watch_.pending.front());
  watch_.pending.pop_front();
  if (!r.events.empty()) {
    r.header.set_revision(r.events.back().kv().mod_revision());
  }
  if (r.events.empty()) {
    r.status = absl::OutOfRangeError(
        "etcdserver: mvcc: required revision has been compacted");
    CloseWatch();
  }
  Step(steps_->Next(r));
}

// ------------------------------------------------------------ plain calls

void SimRecipeDriver::Abandon() {
  ++gen_;
  CloseWatch();
  steps_ = nullptr;
  done_ = nullptr;
}

void SimRecipeDriver::Txn(
    const pb::TxnRequest& t,
    std::function<void(absl::StatusOr<pb::TxnResponse>)> done) {
  const uint64_t g = ++gen_;
  Request(
      [t](server::EtcdServer& s, std::function<void(RecipeReply)> cb) {
        s.Txn(t, FillReply<pb::TxnResponse>(std::move(cb), &RecipeReply::txn));
      },
      [this, g, done](RecipeReply r) {
        if (g != gen_) return;
        if (r.status.ok()) {
          done(std::move(r.txn));
        } else {
          done(r.status);
        }
      });
}

void SimRecipeDriver::Grant(
    int64_t ttl_s,
    std::function<void(absl::StatusOr<pb::LeaseGrantResponse>)> done) {
  const uint64_t g = ++gen_;
  pb::LeaseGrantRequest req;
  req.set_ttl(ttl_s);
  Request(
      [req](server::EtcdServer& s, std::function<void(RecipeReply)> cb) {
        s.LeaseGrant(req, FillReply<pb::LeaseGrantResponse>(
                              std::move(cb), &RecipeReply::grant));
      },
      [this, g, done](RecipeReply r) {
        if (g != gen_) return;
        if (r.status.ok()) {
          done(std::move(r.grant));
        } else {
          done(r.status);
        }
      });
}

void SimRecipeDriver::KeepAlive(
    int64_t lease, std::function<void(absl::StatusOr<int64_t>)> done) {
  const uint64_t g = ++gen_;
  pb::LeaseKeepAliveRequest req;
  req.set_id(lease);
  Request(
      [req](server::EtcdServer& s, std::function<void(RecipeReply)> cb) {
        s.LeaseKeepAlive(req,
                         [cb = std::move(cb)](
                             absl::StatusOr<pb::LeaseKeepAliveResponse> resp) {
                           RecipeReply rep;
                           if (resp.ok()) {
                             // The TTL travels in the grant field's ttl.
                             rep.grant.set_ttl(resp->ttl());
                           } else {
                             rep.status = resp.status();
                           }
                           cb(std::move(rep));
                         });
      },
      [this, g, done](RecipeReply r) {
        if (g != gen_) return;
        if (r.status.ok()) {
          done(r.grant.ttl());
        } else {
          done(r.status);
        }
      });
}

void SimRecipeDriver::Revoke(int64_t lease,
                             std::function<void(absl::Status)> done) {
  const uint64_t g = ++gen_;
  pb::LeaseRevokeRequest req;
  req.set_id(lease);
  Request(
      [req](server::EtcdServer& s, std::function<void(RecipeReply)> cb) {
        s.LeaseRevoke(req, FillReply<pb::LeaseRevokeResponse>(
                               std::move(cb), &RecipeReply::revoke));
      },
      [this, g, done](RecipeReply r) {
        if (g == gen_) done(r.status);
      });
}

}  // namespace detcd::harness
