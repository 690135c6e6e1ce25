#include "shim/lock_election.h"

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "detcd/concurrency.h"
#include "detcd/errors.h"
#include "detcd/recipe_core.h"
#include "engine/server/errors.h"
#include "shim/recipe_run.h"
#include "v3electionpb/v3election.grpc.pb.h"
#include "v3lockpb/v3lock.grpc.pb.h"

namespace detcd::shim {
namespace {

namespace el = v3electionpb;
namespace pb = etcdserverpb;
using client::RecipeCall;
using client::RecipeReply;
using client::RecipeSteps;

constexpr char kLockService[] = "v3lockpb.Lock";
constexpr char kElectionService[] = "v3electionpb.Election";
// Leader changes an Observe stream holds for a caller that does not read;
// past it the oldest one not being written is dropped (the caller still
// sees the latest leader; etcd's clientv3 buffers them without bound).
constexpr size_t kMaxObserveQueued = 256;

grpc::Status ToGrpc(const absl::Status& s) {
  if (s.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(s.code()),
                      std::string(s.message()));
}

// An error of the inner requests or the recipes. etcd's services get
// theirs from clientv3, which turns an etcd error text into a plain Go
// error (and a context error is one already); a handler returning a plain
// Go error answers with code Unknown and the text. Other errors keep their
// code.
grpc::Status FromInner(const absl::Status& s) {
  if (s.ok()) return grpc::Status::OK;
  const absl::Status c = server::ToClientError(s);
  if (client::IsEtcdErrorText(c.message()) || client::IsContextError(c) ||
      client::IsPlainError(c)) {
    return grpc::Status(grpc::StatusCode::UNKNOWN, std::string(c.message()));
  }
  return ToGrpc(c);
}

grpc::Status Stopped() {
  return ToGrpc(server::ToClientError(server::ErrStopped()));
}

grpc::Status TooMany() {
  return ToGrpc(server::ToClientError(server::ErrTooManyRequests()));
}

// The caller's credentials, as the other services pass them on.
server::Caller CallerOf(const grpc::CallbackServerContext* ctx,
                        const LockElection::Options& o) {
  return GrpcCaller(ctx, o.peer_common_name);
}

absl::Time DeadlineOf(const grpc::CallbackServerContext* ctx) {
  if (ctx->deadline() == std::chrono::system_clock::time_point::max()) {
    return absl::InfiniteFuture();
  }
  return absl::FromChrono(ctx->deadline());
}

// Runs `inner` on the caller's lease, or (lease 0) on a fresh one of
// etcd's default TTL granted first: etcd's services make a concurrency
// session WithLease(req.Lease) and orphan it at once, so nobody keeps the
// fresh lease alive. *lease is the session's lease once inner starts.
class OnSession : public RecipeSteps {
 public:
  OnSession(int64_t* lease, std::unique_ptr<RecipeSteps> inner)
      : lease_(lease), inner_(std::move(inner)) {}
  RecipeCall Start() override {
    if (*lease_ != 0) return inner_->Start();
    granting_ = true;
    RecipeCall c;
    c.kind = RecipeCall::kLeaseGrant;
    c.grant.set_ttl(client::Session::kDefaultTtlSeconds);
    return c;
  }
  RecipeCall Next(const RecipeReply& r) override {
    if (!granting_) return inner_->Next(r);
    granting_ = false;
    if (!r.status.ok()) return RecipeCall::Done(r.status);
    *lease_ = r.grant.id();
    return inner_->Start();
  }

 private:
  int64_t* lease_;
  std::unique_ptr<RecipeSteps> inner_;
  bool granting_ = false;
};

// A machine that fails at once (a request refused before any work).
class Fails : public RecipeSteps {
 public:
  explicit Fails(absl::Status s) : s_(std::move(s)) {}
  RecipeCall Start() override { return RecipeCall::Done(s_); }
  RecipeCall Next(const RecipeReply&) override { return Start(); }

 private:
  absl::Status s_;
};

}  // namespace

// One open call as Shutdown sees it. `finished` (under Impl::mu) says the
// call's reactor was finished: after that nobody touches the reactor (gRPC
// deletes it), only this shared state.
struct OpenCall {
  virtual ~OpenCall() = default;
  // Finishes the reactor with st (the call's last touch of it).
  virtual void FinishReactor(const grpc::Status& st) = 0;
  bool finished = false;
  std::shared_ptr<RecipeRun> run;
};

struct LockElection::Impl {
  Impl(Options o, EngineLoop* l, server::EtcdServer* s, CallObserver* ob)
      : opts(std::move(o)),
        loop(l),
        server(s),
        obs(ob != nullptr ? ob : &null_observer) {}

  // Admits a call: OK, or its refusal.
  absl::Status Enter(const std::shared_ptr<OpenCall>& call) {
    // etcd's interceptor refuses a learner's calls first.
    if (opts.is_learner && opts.is_learner()) {
      return server::ToClientError(server::ErrNotSupportedForLearner());
    }
    absl::MutexLock l(&mu);
    if (stopped) return server::ToClientError(server::ErrStopped());
    if (open.size() >= opts.max_open_calls) {
      return server::ToClientError(server::ErrTooManyRequests());
    }
    if (loop == nullptr) return server::ToClientError(server::ErrStopped());
    open.emplace(call.get(), call);
    return absl::OkStatus();
  }

  // Takes the call out of the open set; false if Shutdown finished it
  // already (its reactor must not be touched).
  bool Leave(OpenCall* call) {
    absl::MutexLock l(&mu);
    if (call->finished) return false;
    call->finished = true;
    open.erase(call);
    return true;
  }

  Options opts;
  EngineLoop* loop;
  server::EtcdServer* server;
  CallObserver null_observer;
  CallObserver* obs;
  mutable absl::Mutex mu;
  bool stopped ABSL_GUARDED_BY(mu) = false;
  absl::flat_hash_map<OpenCall*, std::shared_ptr<OpenCall>> open
      ABSL_GUARDED_BY(mu);
};

namespace {

using Impl = LockElection::Impl;

// A unary call: one machine run to its end. `answer` fills the response
// from the machine's state once it succeeded (on the engine thread,
// before the reactor finishes).
class RecipeUnary final : public grpc::ServerUnaryReactor {
 public:
  struct State : OpenCall {
    RecipeUnary* reactor = nullptr;
    void FinishReactor(const grpc::Status& st) override { reactor->End(st); }
  };

  static grpc::ServerUnaryReactor* Run(Impl* impl,
                                       grpc::CallbackServerContext* ctx,
                                       const char* service, const char* method,
                                       std::shared_ptr<RecipeSteps> steps,
                                       std::function<void()> answer) {
    auto* r = new RecipeUnary(impl, service, method);
    impl->obs->OnStarted(service, method, "unary");
    if (absl::Status s = impl->Enter(r->state_); !s.ok()) {
      r->End(ToGrpc(s));
      return r;
    }
    std::shared_ptr<State> st = r->state_;
    st->run = RecipeRun::New(impl->loop, impl->server,
                             CallerOf(ctx, impl->opts), DeadlineOf(ctx));
    const bool started = st->run->Start(
        steps, [impl, st, steps, answer = std::move(answer)](absl::Status s) {
          if (!impl->Leave(st.get())) return;  // Shutdown answered it
          if (s.ok()) answer();
          st->reactor->End(FromInner(s));
        });
    if (!started && impl->Leave(st.get())) r->End(TooMany());
    return r;
  }

  void OnCancel() override {
    // Only a started run is cancelled; the reactor outlives this call.
    if (state_->run != nullptr) state_->run->Cancel();
  }
  void OnDone() override { delete this; }

 private:
  RecipeUnary(Impl* impl, const char* service, const char* method)
      : impl_(impl),
        service_(service),
        method_(method),
        state_(std::make_shared<State>()) {
    state_->reactor = this;
  }

  void End(const grpc::Status& st) {
    impl_->obs->OnHandled(service_, method_, "unary", st.error_code());
    Finish(st);
  }

  Impl* impl_;
  const char* service_;
  const char* method_;
  std::shared_ptr<State> state_;
};

// Observe: a server stream fed by an ObserveSteps machine. Each leader
// (change) is queued and written one at a time; the stream ends once the
// queue drained.
class ObserveCall final : public grpc::ServerWriteReactor<el::LeaderResponse> {
 public:
  struct State : OpenCall {
    ObserveCall* reactor = nullptr;
    void FinishReactor(const grpc::Status& st) override {
      reactor->EndAfterWrites(st);
    }
  };

  static grpc::ServerWriteReactor<el::LeaderResponse>* Run(
      Impl* impl, grpc::CallbackServerContext* ctx,
      const el::LeaderRequest* req) {
    auto* r = new ObserveCall(impl);
    impl->obs->OnStarted(kElectionService, "Observe", "server_stream");
    if (absl::Status s = impl->Enter(r->state_); !s.ok()) {
      r->EndAfterWrites(ToGrpc(s));
      return r;
    }
    std::shared_ptr<State> st = r->state_;
    st->run = RecipeRun::New(impl->loop, impl->server,
                             CallerOf(ctx, impl->opts), DeadlineOf(ctx));
    // Emits run on the engine thread while the call is open: the reactor
    // is alive until Leave (below) or Shutdown finished it.
    auto emit = [impl, st](const pb::RangeResponse& r) {
      absl::MutexLock l(&impl->mu);
      if (st->finished) return false;
      el::LeaderResponse out;
      *out.mutable_header() = r.header();
      if (r.kvs_size() > 0) *out.mutable_kv() = r.kvs(0);
      return st->reactor->Queue(std::move(out));
    };
    auto steps =
        std::make_shared<client::ObserveSteps>(req->name() + "/", emit);
    const bool started = st->run->Start(steps, [impl, st](absl::Status s) {
      if (!impl->Leave(st.get())) return;
      // etcd ends the stream with OK whenever the observer stops (its
      // watch failed, the leader's key could not be read): the reason is
      // dropped. Only the caller's own cancellation is an error.
      st->reactor->EndAfterWrites(
          s.code() == absl::StatusCode::kCancelled
              ? grpc::Status(grpc::StatusCode::CANCELLED,
                             client::kContextCanceled)
              : grpc::Status::OK);
    });
    if (!started && impl->Leave(st.get())) r->EndAfterWrites(TooMany());
    return r;
  }

  void OnCancel() override {
    if (state_->run != nullptr) state_->run->Cancel();
  }
  void OnWriteDone(bool ok) override {
    bool finish;
    {
      absl::MutexLock l(&mu_);
      writing_ = false;
      queue_.pop_front();
      if (!ok) {
        // The stream broke: nothing more goes out; the run ends with the
        // cancellation gRPC reports.
        queue_.clear();
        broken_ = true;
      }
      finish = PumpLocked();
    }
    if (finish) FinishNow();
  }
  void OnDone() override { delete this; }

 private:
  explicit ObserveCall(Impl* impl)
      : impl_(impl), state_(std::make_shared<State>()) {
    state_->reactor = this;
  }

  // Queues a response; false once the stream broke or ends.
  bool Queue(el::LeaderResponse msg) {
    absl::MutexLock l(&mu_);
    if (broken_ || finishing_) return false;
    if (queue_.size() >= kMaxObserveQueued) queue_.erase(queue_.begin() + 1);
    queue_.push_back(std::move(msg));
    PumpLocked();
    return true;
  }

  void EndAfterWrites(const grpc::Status& st) {
    bool finish;
    {
      absl::MutexLock l(&mu_);
      finishing_ = true;
      final_ = st;
      finish = PumpLocked();
    }
    if (finish) FinishNow();
  }

  // Starts writing the next queued response; true when the stream is to
  // finish now (ending, nothing left to write).
  bool PumpLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (writing_) return false;
    if (!queue_.empty()) {
      writing_ = true;
      StartWrite(&queue_.front());
      return false;
    }
    if (!finishing_ || finished_) return false;
    finished_ = true;
    return true;
  }

  // Outside mu_: OnDone (which deletes this) may follow Finish.
  void FinishNow() {
    grpc::Status st;
    {
      absl::MutexLock l(&mu_);
      st = final_;
    }
    impl_->obs->OnHandled(kElectionService, "Observe", "server_stream",
                          st.error_code());
    Finish(st);
  }

  Impl* impl_;
  std::shared_ptr<State> state_;
  absl::Mutex mu_;
  // The front one is being written (a deque keeps its address).
  std::deque<el::LeaderResponse> queue_ ABSL_GUARDED_BY(mu_);
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool broken_ ABSL_GUARDED_BY(mu_) = false;
  bool finishing_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  grpc::Status final_ ABSL_GUARDED_BY(mu_);
};

// A machine over an election's state for an existing leader key (etcd's
// ResumeElection).
struct ResumedElection {
  explicit ResumedElection(const el::LeaderKey& k) {
    e.prefix = k.name() + "/";
    e.lease = k.lease();
    e.leader_key = k.key();
    e.leader_rev = k.rev();
    e.leader = true;
  }
  client::ElectionState e;
};

class LockService final : public v3lockpb::Lock::CallbackService {
 public:
  explicit LockService(Impl* impl) : impl_(impl) {}

  grpc::ServerUnaryReactor* Lock(grpc::CallbackServerContext* ctx,
                                 const v3lockpb::LockRequest* req,
                                 v3lockpb::LockResponse* resp) override {
    auto m = std::make_shared<client::MutexState>();
    m->prefix = req->name() + "/";
    m->lease = req->lease();
    auto steps = std::make_shared<OnSession>(
        &m->lease, std::make_unique<client::LockSteps>(m.get()));
    return RecipeUnary::Run(impl_, ctx, kLockService, "Lock", std::move(steps),
                            [m, resp] {
                              *resp->mutable_header() = m->header;
                              resp->set_key(m->key);
                            });
  }

  grpc::ServerUnaryReactor* Unlock(grpc::CallbackServerContext* ctx,
                                   const v3lockpb::UnlockRequest* req,
                                   v3lockpb::UnlockResponse* resp) override {
    auto m = std::make_shared<client::MutexState>();
    m->key = req->key();
    return RecipeUnary::Run(impl_, ctx, kLockService, "Unlock",
                            std::make_shared<client::UnlockSteps>(m.get()),
                            [m, resp] { *resp->mutable_header() = m->header; });
  }

 private:
  Impl* impl_;
};

class ElectionService final : public el::Election::CallbackService {
 public:
  explicit ElectionService(Impl* impl) : impl_(impl) {}

  grpc::ServerUnaryReactor* Campaign(grpc::CallbackServerContext* ctx,
                                     const el::CampaignRequest* req,
                                     el::CampaignResponse* resp) override {
    auto e = std::make_shared<client::ElectionState>();
    e->prefix = req->name() + "/";
    e->lease = req->lease();
    auto steps = std::make_shared<OnSession>(
        &e->lease,
        std::make_unique<client::CampaignSteps>(e.get(), req->value()));
    return RecipeUnary::Run(impl_, ctx, kElectionService, "Campaign",
                            std::move(steps), [e, req, resp] {
                              *resp->mutable_header() = e->header;
                              el::LeaderKey* k = resp->mutable_leader();
                              k->set_name(req->name());
                              k->set_key(e->leader_key);
                              k->set_rev(e->leader_rev);
                              k->set_lease(e->lease);
                            });
  }

  grpc::ServerUnaryReactor* Proclaim(grpc::CallbackServerContext* ctx,
                                     const el::ProclaimRequest* req,
                                     el::ProclaimResponse* resp) override {
    if (!req->has_leader()) return Refuse(ctx, "Proclaim");
    auto r = std::make_shared<ResumedElection>(req->leader());
    auto steps = std::make_shared<OnSession>(
        &r->e.lease,
        std::make_unique<client::ProclaimSteps>(&r->e, req->value()));
    return RecipeUnary::Run(
        impl_, ctx, kElectionService, "Proclaim", std::move(steps),
        [r, resp] { *resp->mutable_header() = r->e.header; });
  }

  grpc::ServerUnaryReactor* Leader(grpc::CallbackServerContext* ctx,
                                   const el::LeaderRequest* req,
                                   el::LeaderResponse* resp) override {
    auto steps = std::make_shared<client::LeaderSteps>(req->name() + "/");
    return RecipeUnary::Run(
        impl_, ctx, kElectionService, "Leader", steps, [steps, resp] {
          *resp->mutable_header() = steps->response().header();
          *resp->mutable_kv() = steps->response().kvs(0);
        });
  }

  grpc::ServerWriteReactor<el::LeaderResponse>* Observe(
      grpc::CallbackServerContext* ctx, const el::LeaderRequest* req) override {
    return ObserveCall::Run(impl_, ctx, req);
  }

  grpc::ServerUnaryReactor* Resign(grpc::CallbackServerContext* ctx,
                                   const el::ResignRequest* req,
                                   el::ResignResponse* resp) override {
    if (!req->has_leader()) return Refuse(ctx, "Resign");
    auto r = std::make_shared<ResumedElection>(req->leader());
    auto steps = std::make_shared<OnSession>(
        &r->e.lease, std::make_unique<client::ResignSteps>(&r->e));
    return RecipeUnary::Run(
        impl_, ctx, kElectionService, "Resign", std::move(steps),
        [r, resp] { *resp->mutable_header() = r->e.header; });
  }

 private:
  // etcd's answer to a Proclaim or Resign without a leader key (after
  // the learner check, as its interceptor runs first).
  grpc::ServerUnaryReactor* Refuse(grpc::CallbackServerContext* ctx,
                                   const char* method) {
    return RecipeUnary::Run(impl_, ctx, kElectionService, method,
                            std::make_shared<Fails>(client::RecipeError(
                                client::kErrMissingLeaderKey)),
                            [] {});
  }

  Impl* impl_;
};

}  // namespace

struct LockElection::All {
  explicit All(Impl* impl) : lock(impl), election(impl) {}
  LockService lock;
  ElectionService election;
};

LockElection::LockElection(Options o, EngineLoop* loop,
                           server::EtcdServer* server, CallObserver* observer)
    : impl_(std::make_shared<Impl>(std::move(o), loop, server, observer)),
      all_(std::make_unique<All>(impl_.get())) {}

LockElection::~LockElection() { Shutdown(); }

std::vector<grpc::Service*> LockElection::services() {
  return {&all_->lock, &all_->election};
}

void LockElection::Shutdown() {
  absl::flat_hash_map<OpenCall*, std::shared_ptr<OpenCall>> open;
  {
    absl::MutexLock l(&impl_->mu);
    impl_->stopped = true;
    open.swap(impl_->open);
    for (auto& [c, keep] : open) c->finished = true;
  }
  for (auto& [c, keep] : open) {
    if (keep->run != nullptr) keep->run->Abandon();
    keep->FinishReactor(Stopped());
  }
}

size_t LockElection::open_calls() const {
  absl::MutexLock l(&impl_->mu);
  return impl_->open.size();
}

}  // namespace detcd::shim
