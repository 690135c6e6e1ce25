#include "shim/recipe_run.h"

#include <utility>

#include "absl/time/clock.h"
#include "detcd/errors.h"
#include "engine/mvcc/kv_store.h"
#include "engine/server/errors.h"
#include "engine/server/etcd_kv.h"

namespace detcd::shim {
namespace {

namespace pb = etcdserverpb;
using client::FillReply;
using client::RecipeCall;
using client::RecipeReply;
using server::EtcdServer;

RecipeReply Failed(absl::Status s) {
  RecipeReply r;
  r.status = std::move(s);
  return r;
}

}  // namespace

std::shared_ptr<RecipeRun> RecipeRun::New(EngineLoop* loop,
                                          server::EtcdServer* server,
                                          server::Caller caller,
                                          absl::Time deadline) {
  return std::shared_ptr<RecipeRun>(
      new RecipeRun(loop, server, std::move(caller), deadline));
}

RecipeRun::RecipeRun(EngineLoop* loop, server::EtcdServer* server,
                     server::Caller caller, absl::Time deadline)
    : loop_(loop),
      server_(server),
      caller_(std::move(caller)),
      deadline_(deadline) {}

bool RecipeRun::Start(std::shared_ptr<client::RecipeSteps> steps, Done done) {
  steps_ = std::move(steps);
  done_ = std::move(done);
  if (loop_->Post([self = shared_from_this()] {
        if (self->abandoned_.load(std::memory_order_acquire)) return;
        // A simple token from another member may wait for its entry.
        self->server_->AwaitCaller(self->caller_, [self] {
          if (self->abandoned_.load(std::memory_order_acquire)) return;
          self->Step(self->steps_->Start());
        });
      })) {
    return true;
  }
  // Refused: nothing runs (and done, which may hold its caller's state,
  // goes now).
  steps_.reset();
  done_ = nullptr;
  return false;
}

void RecipeRun::Cancel() {
  if (cancelled_.exchange(true, std::memory_order_acq_rel)) return;
  loop_->PostCompletion([self = shared_from_this()] { self->OnCancel(); });
}

void RecipeRun::Abandon() {
  if (abandoned_.exchange(true, std::memory_order_acq_rel)) return;
  loop_->PostCompletion([self = shared_from_this()] {
    self->CloseWatch();
    self->done_ = nullptr;
    self->steps_.reset();
  });
}

absl::Status RecipeRun::Stopped() const {
  if (absl::Now() >= deadline_) {
    return absl::DeadlineExceededError(client::kContextDeadlineExceeded);
  }
  if (cancelled_.load(std::memory_order_acquire)) {
    return absl::CancelledError(client::kContextCanceled);
  }
  return absl::OkStatus();
}

void RecipeRun::ReplyLater(uint64_t g, RecipeReply r) {
  loop_->PostCompletion(
      [self = shared_from_this(), g, r = std::move(r)]() mutable {
        self->OnReply(g, std::move(r));
      });
}

void RecipeRun::OnReply(uint64_t g, RecipeReply r) {
  if (g != gen_ || abandoned_.load(std::memory_order_acquire) ||
      steps_ == nullptr) {
    return;
  }
  watching_ = false;
  Step(steps_->Next(r));
}

void RecipeRun::OnCancel() {
  if (!watching_ || abandoned_.load(std::memory_order_acquire)) return;
  // The wait ends with the caller's error; the machine may clean up.
  CloseWatch();
  ReplyLater(++gen_, Failed(Stopped()));
}

void RecipeRun::MaybeDeliver() {
  if (!watching_ || pending_.empty() || delivering_) return;
  delivering_ = true;
  loop_->PostCompletion(
      [self = shared_from_this(), wg = watch_gen_] { self->Deliver(wg); });
}

void RecipeRun::Deliver(uint64_t wg) {
  if (wg != watch_gen_) return;  // closed meanwhile
  delivering_ = false;
  if (!watching_ || pending_.empty() ||
      abandoned_.load(std::memory_order_acquire)) {
    return;
  }
  RecipeReply r = std::move(pending_.front());
  pending_.pop_front();
  watching_ = false;
  Step(steps_->Next(r));
}

void RecipeRun::Step(RecipeCall call) {
  if (abandoned_.load(std::memory_order_acquire)) return;
  const uint64_t g = ++gen_;
  if (call.kind != RecipeCall::kKeepWatching) CloseWatch();
  switch (call.kind) {
    case RecipeCall::kDone: {
      Done d = std::move(done_);
      done_ = nullptr;
      steps_.reset();
      if (d) d(call.status);
      return;
    }
    case RecipeCall::kKeepWatching:
      if (!watch_open_) {
        ReplyLater(g, Failed(absl::InternalError("recipe: no watch open")));
        return;
      }
      watching_ = true;
      // A cancellation that came while the machine took the last batch.
      if (absl::Status s = Stopped(); !s.ok()) return OnCancel();
      MaybeDeliver();
      return;
    case RecipeCall::kWatch:
      OpenWatch(call.watch);
      return;
    default:
      Issue(call);
      return;
  }
}

void RecipeRun::Issue(const RecipeCall& call) {
  const uint64_t g = gen_;
  if (!call.cleanup) {
    // The caller gave up: no new call starts (clean-up still runs).
    if (absl::Status s = Stopped(); !s.ok()) {
      ReplyLater(g, Failed(std::move(s)));
      return;
    }
  }
  auto reply = [self = shared_from_this(), g](RecipeReply r) {
    self->ReplyLater(g, std::move(r));
  };
  EtcdServer::CallerScope scope(server_, &caller_);
  switch (call.kind) {
    case RecipeCall::kRange:
      server_->Range(call.range,
                     FillReply<pb::RangeResponse>(reply, &RecipeReply::range));
      return;
    case RecipeCall::kTxn:
      server_->Txn(call.txn,
                   FillReply<pb::TxnResponse>(reply, &RecipeReply::txn));
      return;
    case RecipeCall::kDeleteRange:
      server_->DeleteRange(call.del, FillReply<pb::DeleteRangeResponse>(
                                         reply, &RecipeReply::del));
      return;
    case RecipeCall::kLeaseGrant:
      server_->LeaseGrant(call.grant, FillReply<pb::LeaseGrantResponse>(
                                          reply, &RecipeReply::grant));
      return;
    case RecipeCall::kLeaseRevoke:
      server_->LeaseRevoke(call.revoke, FillReply<pb::LeaseRevokeResponse>(
                                            reply, &RecipeReply::revoke));
      return;
    default:
      reply(Failed(absl::InternalError("recipe: not a call")));
      return;
  }
}

void RecipeRun::OpenWatch(const pb::WatchCreateRequest& req) {
  const uint64_t g = gen_;
  if (absl::Status s = Stopped(); !s.ok()) {
    ReplyLater(g, Failed(std::move(s)));
    return;
  }
  {
    // The watch service's rule: read permission on the range.
    EtcdServer::CallerScope scope(server_, &caller_);
    if (absl::Status s =
            server_->CheckWatchPermitted(req.key(), req.range_end());
        !s.ok()) {
      ReplyLater(g, Failed(server::ToClientError(s)));
      return;
    }
  }
  watch_open_ = true;
  watching_ = true;
  // The hub calls the sink inside its own work: batches wait in pending_
  // and go to the machine in tasks of their own, one at a time.
  stream_ = server_->watch_hub().OpenStream(
      [weak = weak_from_this(), wg = watch_gen_](const mvcc::WatchResponse& r) {
        if (std::shared_ptr<RecipeRun> self = weak.lock()) {
          self->OnWatch(wg, r);
        }
        return true;
      });
  mvcc::WatchCreate c;
  c.key = req.key();
  c.range_end = req.range_end();
  c.start_revision = req.start_revision();
  EtcdServer::CallerScope scope(server_, &caller_);
  // A recipe watches from the revision it just read (clientv3's
  // waitDelete); the hub catches such a watcher up inside Create, so it is
  // synced before the delete it waits for (WatchLimits::
  // max_events_per_create).
  server_->WatchCreate(stream_, std::move(c));
}

void RecipeRun::CloseWatch() {
  if (!watch_open_) return;
  watch_open_ = false;
  watching_ = false;
  ++watch_gen_;
  pending_.clear();
  delivering_ = false;
  server_->watch_hub().CloseStream(stream_);
}

void RecipeRun::OnWatch(uint64_t wg, const mvcc::WatchResponse& r) {
  if (wg != watch_gen_) return;
  if (r.canceled) {
    // Compacted past the start, or refused: the watch is over (clientv3's
    // errors for it).
    absl::Status s =
        r.compact_revision != 0
            ? server::ToClientError(mvcc::ErrCompacted())
            : client::PlainError(r.cancel_reason.empty() ? "watch canceled"
                                                         : r.cancel_reason);
    // The end reaches the machine after the batches before it.
    pending_.push_back(Failed(std::move(s)));
    MaybeDeliver();
    return;
  }
  if (r.events.empty()) return;  // created, progress
  RecipeReply rep;
  rep.events.reserve(r.events.size());
  for (const mvcc::Event& e : r.events) {
    server::ToProto(e, &rep.events.emplace_back());
  }
  pb::ResponseHeader* h = &rep.header;
  h->set_cluster_id(server_->cluster_id());
  h->set_member_id(server_->id());
  h->set_revision(r.revision);
  h->set_raft_term(server_->node().raft().term());
  pending_.push_back(std::move(rep));
  MaybeDeliver();
}

}  // namespace detcd::shim
