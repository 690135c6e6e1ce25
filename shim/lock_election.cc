#include "shim/lock_election.h"

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "detcd/concurrency.h"
#include "detcd/errors.h"
#include "detcd/recipe_core.h"
#include "engine/server/errors.h"
#include "shim/grpc_h2.h"
#include "shim/recipe_run.h"
#include "shim/server_metrics.h"
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

// One open call, whatever its transport. `end` answers the transport's
// call (its last touch of it); `finished` (under Impl::mu) says it was
// called or is about to be: Shutdown and the run's end race for it, the
// first one wins.
struct OpenCall {
  std::function<void(const grpc::Status&)> end;
  bool finished = false;
  std::shared_ptr<RecipeRun> run;
};

struct LockElection::Impl : std::enable_shared_from_this<LockElection::Impl> {
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

  // Takes the call out of the open set; false if Shutdown ended it
  // already.
  bool Leave(OpenCall* call) {
    absl::MutexLock l(&mu);
    if (call->finished) return false;
    call->finished = true;
    open.erase(call);
    return true;
  }

  // Admits the call and runs its machine with the caller's credentials
  // and deadline; `answer` (may be null) fills the response once the
  // machine succeeded, and `outcome` turns the machine's outcome into the
  // call's status. The call ends through call->end, once: with its
  // refusal, its outcome, or "server stopped".
  void Run(std::shared_ptr<OpenCall> call, server::Caller who,
           absl::Time deadline, std::shared_ptr<RecipeSteps> steps,
           std::function<void()> answer,
           grpc::Status (*outcome)(const absl::Status&) = FromInner) {
    if (absl::Status s = Enter(call); !s.ok()) {
      call->end(ToGrpc(s));
      return;
    }
    call->run = RecipeRun::New(loop, server, std::move(who), deadline);
    const bool started = call->run->Start(
        steps, [self = shared_from_this(), call, answer = std::move(answer),
                outcome](absl::Status s) {
          if (!self->Leave(call.get())) return;  // Shutdown answered it
          if (s.ok() && answer) answer();
          call->end(outcome(s));
        });
    if (!started && Leave(call.get())) call->end(TooMany());
  }

  std::shared_ptr<CallFigures> StartFigures(const h2::Call& call,
                                            const char* type) const {
    return StartNativeFigures(opts.native_call_figures, call, type);
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

// ------------------------------------------------------------ the methods

// What a unary call runs: its machine, and how the response is filled
// once the machine succeeded (on the engine thread). Made from the
// request, which the machine does not keep.
struct Job {
  std::shared_ptr<RecipeSteps> steps;
  std::function<void()> answer;
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

// etcd's answer to a Proclaim or Resign without a leader key (after the
// learner check, as its interceptor runs first).
Job MissingLeader() {
  return Job{std::make_shared<Fails>(
                 client::RecipeError(client::kErrMissingLeaderKey)),
             nullptr};
}

Job LockJob(const v3lockpb::LockRequest& req, v3lockpb::LockResponse* resp) {
  auto m = std::make_shared<client::MutexState>();
  m->prefix = req.name() + "/";
  m->lease = req.lease();
  return Job{std::make_shared<OnSession>(
                 &m->lease, std::make_unique<client::LockSteps>(m.get())),
             [m, resp] {
               *resp->mutable_header() = m->header;
               resp->set_key(m->key);
             }};
}

Job UnlockJob(const v3lockpb::UnlockRequest& req,
              v3lockpb::UnlockResponse* resp) {
  auto m = std::make_shared<client::MutexState>();
  m->key = req.key();
  return Job{std::make_shared<client::UnlockSteps>(m.get()),
             [m, resp] { *resp->mutable_header() = m->header; }};
}

Job CampaignJob(const el::CampaignRequest& req, el::CampaignResponse* resp) {
  auto e = std::make_shared<client::ElectionState>();
  e->prefix = req.name() + "/";
  e->lease = req.lease();
  return Job{std::make_shared<OnSession>(
                 &e->lease,
                 std::make_unique<client::CampaignSteps>(e.get(), req.value())),
             [e, name = req.name(), resp] {
               *resp->mutable_header() = e->header;
               el::LeaderKey* k = resp->mutable_leader();
               k->set_name(name);
               k->set_key(e->leader_key);
               k->set_rev(e->leader_rev);
               k->set_lease(e->lease);
             }};
}

Job ProclaimJob(const el::ProclaimRequest& req, el::ProclaimResponse* resp) {
  if (!req.has_leader()) return MissingLeader();
  auto r = std::make_shared<ResumedElection>(req.leader());
  return Job{std::make_shared<OnSession>(
                 &r->e.lease,
                 std::make_unique<client::ProclaimSteps>(&r->e, req.value())),
             [r, resp] { *resp->mutable_header() = r->e.header; }};
}

Job LeaderJob(const el::LeaderRequest& req, el::LeaderResponse* resp) {
  auto steps = std::make_shared<client::LeaderSteps>(req.name() + "/");
  return Job{steps, [steps, resp] {
               *resp->mutable_header() = steps->response().header();
               *resp->mutable_kv() = steps->response().kvs(0);
             }};
}

Job ResignJob(const el::ResignRequest& req, el::ResignResponse* resp) {
  if (!req.has_leader()) return MissingLeader();
  auto r = std::make_shared<ResumedElection>(req.leader());
  return Job{std::make_shared<OnSession>(
                 &r->e.lease, std::make_unique<client::ResignSteps>(&r->e)),
             [r, resp] { *resp->mutable_header() = r->e.header; }};
}

// etcd ends Observe with OK whenever the observer stops (its watch failed,
// the leader's key could not be read): the reason is dropped. Only the
// caller's own cancellation is an error.
grpc::Status ObserveOutcome(const absl::Status& s) {
  if (s.code() == absl::StatusCode::kCancelled) {
    return grpc::Status(grpc::StatusCode::CANCELLED, client::kContextCanceled);
  }
  return grpc::Status::OK;
}

// Observe's stream, whatever the transport: each leader (change) is
// queued and written one at a time; the stream finishes once the queue
// drained.
class ObserveQueue {
 public:
  virtual ~ObserveQueue() = default;

  // Queues a response (engine thread); false once the stream broke or
  // ends.
  bool Queue(el::LeaderResponse msg) {
    absl::MutexLock l(&mu_);
    if (broken_ || finishing_) return false;
    if (queue_.size() >= kMaxObserveQueued) queue_.erase(queue_.begin() + 1);
    queue_.push_back(std::move(msg));
    PumpLocked();
    return true;
  }

  // The transport took the front response (ok), or the stream broke
  // (with or without a write in flight).
  void WriteDone(bool ok) {
    bool finish;
    {
      absl::MutexLock l(&mu_);
      if (!writing_ && ok) return;
      if (writing_) {
        writing_ = false;
        queue_.pop_front();
      }
      if (!ok) {
        // Nothing more goes out; the run ends with the cancellation the
        // transport reports.
        queue_.clear();
        broken_ = true;
      }
      finish = PumpLocked();
    }
    if (finish) FinishNow();
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

  // The emit function of the stream's ObserveSteps: the call's open state
  // says whether the stream may still be touched.
  static client::ObserveSteps::Emit EmitTo(Impl* impl,
                                           std::shared_ptr<OpenCall> call,
                                           ObserveQueue* q) {
    return [impl, call, q](const pb::RangeResponse& r) {
      absl::MutexLock l(&impl->mu);
      if (call->finished) return false;
      el::LeaderResponse out;
      *out.mutable_header() = r.header();
      if (r.kvs_size() > 0) *out.mutable_kv() = r.kvs(0);
      return q->Queue(std::move(out));
    };
  }

 protected:
  // Hands msg to the transport (under mu_; it stays valid until
  // WriteDone).
  virtual void Write(const el::LeaderResponse& msg) = 0;
  // Ends the transport's stream (not under mu_: the stream may be
  // deleted right after).
  virtual void FinishStream(const grpc::Status& st) = 0;

 private:
  // Starts writing the next queued response; true when the stream is to
  // finish now (ending, nothing left to write).
  bool PumpLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (writing_) return false;
    if (!queue_.empty()) {
      writing_ = true;
      Write(queue_.front());
      return false;
    }
    if (!finishing_ || finished_) return false;
    finished_ = true;
    return true;
  }

  void FinishNow() {
    grpc::Status st;
    {
      absl::MutexLock l(&mu_);
      st = final_;
    }
    FinishStream(st);
  }

  absl::Mutex mu_;
  // The front one is being written (a deque keeps its address).
  std::deque<el::LeaderResponse> queue_ ABSL_GUARDED_BY(mu_);
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool broken_ ABSL_GUARDED_BY(mu_) = false;
  bool finishing_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  grpc::Status final_ ABSL_GUARDED_BY(mu_);
};

// ------------------------------------------------------------ gRPC C++

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

// A unary call on gRPC C++. The reactor is deleted by gRPC's OnDone,
// which comes only after Finish, the call's end.
class GrpcUnary final : public grpc::ServerUnaryReactor {
 public:
  static grpc::ServerUnaryReactor* Run(Impl* impl,
                                       grpc::CallbackServerContext* ctx,
                                       const char* service, const char* method,
                                       Job job) {
    auto* r = new GrpcUnary;
    impl->obs->OnStarted(service, method, "unary");
    r->call_->end = [r, impl, service, method](const grpc::Status& st) {
      impl->obs->OnHandled(service, method, "unary", st.error_code());
      r->Finish(st);
    };
    impl->Run(r->call_, CallerOf(ctx, impl->opts), DeadlineOf(ctx),
              std::move(job.steps), std::move(job.answer));
    return r;
  }

  void OnCancel() override {
    if (call_->run != nullptr) call_->run->Cancel();
  }
  void OnDone() override { delete this; }

 private:
  GrpcUnary() : call_(std::make_shared<OpenCall>()) {}
  std::shared_ptr<OpenCall> call_;
};

class GrpcObserve final : public grpc::ServerWriteReactor<el::LeaderResponse>,
                          public ObserveQueue {
 public:
  static grpc::ServerWriteReactor<el::LeaderResponse>* Run(
      Impl* impl, grpc::CallbackServerContext* ctx,
      const el::LeaderRequest* req) {
    auto* r = new GrpcObserve(impl);
    impl->obs->OnStarted(kElectionService, "Observe", "server_stream");
    r->call_->end = [r](const grpc::Status& st) { r->EndAfterWrites(st); };
    impl->Run(r->call_, CallerOf(ctx, impl->opts), DeadlineOf(ctx),
              std::make_shared<client::ObserveSteps>(req->name() + "/",
                                                     EmitTo(impl, r->call_, r)),
              nullptr, ObserveOutcome);
    return r;
  }

  void OnCancel() override {
    if (call_->run != nullptr) call_->run->Cancel();
  }
  void OnWriteDone(bool ok) override { WriteDone(ok); }
  void OnDone() override { delete this; }

 private:
  explicit GrpcObserve(Impl* impl)
      : impl_(impl), call_(std::make_shared<OpenCall>()) {}
  void Write(const el::LeaderResponse& msg) override { StartWrite(&msg); }
  void FinishStream(const grpc::Status& st) override {
    impl_->obs->OnHandled(kElectionService, "Observe", "server_stream",
                          st.error_code());
    Finish(st);
  }

  Impl* impl_;
  std::shared_ptr<OpenCall> call_;
};

class LockService final : public v3lockpb::Lock::CallbackService {
 public:
  explicit LockService(Impl* impl) : impl_(impl) {}

  grpc::ServerUnaryReactor* Lock(grpc::CallbackServerContext* ctx,
                                 const v3lockpb::LockRequest* req,
                                 v3lockpb::LockResponse* resp) override {
    return GrpcUnary::Run(impl_, ctx, kLockService, "Lock",
                          LockJob(*req, resp));
  }
  grpc::ServerUnaryReactor* Unlock(grpc::CallbackServerContext* ctx,
                                   const v3lockpb::UnlockRequest* req,
                                   v3lockpb::UnlockResponse* resp) override {
    return GrpcUnary::Run(impl_, ctx, kLockService, "Unlock",
                          UnlockJob(*req, resp));
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
    return GrpcUnary::Run(impl_, ctx, kElectionService, "Campaign",
                          CampaignJob(*req, resp));
  }
  grpc::ServerUnaryReactor* Proclaim(grpc::CallbackServerContext* ctx,
                                     const el::ProclaimRequest* req,
                                     el::ProclaimResponse* resp) override {
    return GrpcUnary::Run(impl_, ctx, kElectionService, "Proclaim",
                          ProclaimJob(*req, resp));
  }
  grpc::ServerUnaryReactor* Leader(grpc::CallbackServerContext* ctx,
                                   const el::LeaderRequest* req,
                                   el::LeaderResponse* resp) override {
    return GrpcUnary::Run(impl_, ctx, kElectionService, "Leader",
                          LeaderJob(*req, resp));
  }
  grpc::ServerWriteReactor<el::LeaderResponse>* Observe(
      grpc::CallbackServerContext* ctx, const el::LeaderRequest* req) override {
    return GrpcObserve::Run(impl_, ctx, req);
  }
  grpc::ServerUnaryReactor* Resign(grpc::CallbackServerContext* ctx,
                                   const el::ResignRequest* req,
                                   el::ResignResponse* resp) override {
    return GrpcUnary::Run(impl_, ctx, kElectionService, "Resign",
                          ResignJob(*req, resp));
  }

 private:
  Impl* impl_;
};

// ------------------------------------------------------------ native

h2::Status ToH2(const grpc::Status& s) {
  return h2::Status{static_cast<int>(s.error_code()), s.error_message()};
}

// A unary call on the native transport (shim/grpc_h2), served as the
// gRPC C++ one is. The transport's deadline ends it with OnCancel.
template <typename Req, typename Resp>
class NativeUnary final : public h2::Handler {
 public:
  using Make = Job (*)(const Req&, Resp*);
  NativeUnary(Impl* impl, h2::CallPtr call, const char* service,
              const char* method, Make make)
      : impl_(impl),
        h2_(std::move(call)),
        service_(service),
        method_(method),
        make_(make) {}

  void OnMessage(std::string m) override {
    if (call_ != nullptr) {
      h2_->Finish(
          h2::Status{12, "grpc: unary call received more than one request"});
      return;
    }
    call_ = std::make_shared<OpenCall>();
    impl_->obs->OnStarted(service_, method_, "unary");
    auto req = std::make_shared<Req>();
    auto resp = std::make_shared<Resp>();
    std::shared_ptr<CallFigures> figures = impl_->StartFigures(*h2_, "unary");
    call_->end = [impl = impl_, h2 = h2_, service = service_, method = method_,
                  req, resp, figures](const grpc::Status& st) {
      impl->obs->OnHandled(service, method, "unary", st.error_code());
      if (st.ok()) {
        if (figures) figures->Sent(*resp);
        h2->Reply(resp->SerializeAsString());
      } else {
        h2->Finish(ToH2(st));
      }
      if (figures) figures->Finished(st);
    };
    if (!req->ParseFromString(m)) {
      call_->end(grpc::Status(grpc::StatusCode::INTERNAL,
                              "grpc: error unmarshalling request"));
      return;
    }
    if (figures) figures->Received(*req);
    Job job = make_(*req, resp.get());
    impl_->Run(call_, NativeCaller(*h2_), absl::InfiniteFuture(),
               std::move(job.steps), std::move(job.answer));
  }
  void OnHalfClose() override {
    if (call_ == nullptr) {
      h2_->Finish(h2::Status{12, "grpc: unary call got no request"});
    }
  }
  void OnCancel() override {
    if (call_ != nullptr && call_->run != nullptr) call_->run->Cancel();
  }

 private:
  Impl* impl_;
  h2::CallPtr h2_;
  const char* service_;
  const char* method_;
  Make make_;
  std::shared_ptr<OpenCall> call_;  // once the request came
};

// Observe on the native transport: a write is done when the transport
// drained the stream (OnDrained).
class NativeObserveStream final : public ObserveQueue {
 public:
  NativeObserveStream(Impl* impl, h2::CallPtr call,
                      std::shared_ptr<CallFigures> figures)
      : impl_(impl), h2_(std::move(call)), figures_(std::move(figures)) {}

 private:
  // A call already over (cancelled) takes nothing; its OnCancel ends
  // the write.
  void Write(const el::LeaderResponse& msg) override {
    if (figures_) figures_->Sent(msg);
    h2_->Write(msg.SerializeAsString());
  }
  void FinishStream(const grpc::Status& st) override {
    impl_->obs->OnHandled(kElectionService, "Observe", "server_stream",
                          st.error_code());
    h2_->Finish(ToH2(st));
    if (figures_) figures_->Finished(st);
  }

  Impl* impl_;
  h2::CallPtr h2_;
  std::shared_ptr<CallFigures> figures_;
};

class NativeObserve final : public h2::Handler {
 public:
  NativeObserve(Impl* impl, h2::CallPtr call)
      : impl_(impl), h2_(std::move(call)) {}

  void OnMessage(std::string m) override {
    if (call_ != nullptr) {
      h2_->Finish(h2::Status{
          12, "grpc: server streaming call received more than one request"});
      return;
    }
    call_ = std::make_shared<OpenCall>();
    impl_->obs->OnStarted(kElectionService, "Observe", "server_stream");
    std::shared_ptr<CallFigures> figures =
        impl_->StartFigures(*h2_, "server_stream");
    stream_ = std::make_shared<NativeObserveStream>(impl_, h2_, figures);
    call_->end = [s = stream_](const grpc::Status& st) {
      s->EndAfterWrites(st);
    };
    el::LeaderRequest req;
    if (!req.ParseFromString(m)) {
      call_->end(grpc::Status(grpc::StatusCode::INTERNAL,
                              "grpc: error unmarshalling request"));
      return;
    }
    if (figures) figures->Received(req);
    // The stream lives as long as the machine that writes to it.
    auto steps = std::make_shared<client::ObserveSteps>(
        req.name() + "/",
        [emit = ObserveQueue::EmitTo(impl_, call_, stream_.get()),
         keep = stream_](const pb::RangeResponse& r) { return emit(r); });
    impl_->Run(call_, NativeCaller(*h2_), absl::InfiniteFuture(), steps,
               nullptr, ObserveOutcome);
  }
  void OnHalfClose() override {
    if (call_ == nullptr) {
      h2_->Finish(h2::Status{12, "grpc: server streaming call got no request"});
    }
  }
  void OnDrained() override {
    if (stream_ != nullptr) stream_->WriteDone(true);
  }
  void OnCancel() override {
    if (call_ == nullptr) return;
    if (call_->run != nullptr) call_->run->Cancel();
    stream_->WriteDone(false);
  }

 private:
  Impl* impl_;
  h2::CallPtr h2_;
  std::shared_ptr<OpenCall> call_;  // once the request came
  std::shared_ptr<NativeObserveStream> stream_;
};

template <typename Req, typename Resp>
void RegisterUnary(h2::Server* s, Impl* impl, const char* service,
                   const char* method, Job (*make)(const Req&, Resp*)) {
  s->Register(absl::StrCat("/", service, "/", method),
              [=](h2::CallPtr c) -> std::unique_ptr<h2::Handler> {
                return std::make_unique<NativeUnary<Req, Resp>>(
                    impl, std::move(c), service, method, make);
              });
}

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

void LockElection::RegisterNative(h2::Server* s) {
  Impl* im = impl_.get();
  RegisterUnary(s, im, kLockService, "Lock", &LockJob);
  RegisterUnary(s, im, kLockService, "Unlock", &UnlockJob);
  RegisterUnary(s, im, kElectionService, "Campaign", &CampaignJob);
  RegisterUnary(s, im, kElectionService, "Proclaim", &ProclaimJob);
  RegisterUnary(s, im, kElectionService, "Leader", &LeaderJob);
  RegisterUnary(s, im, kElectionService, "Resign", &ResignJob);
  s->Register(absl::StrCat("/", kElectionService, "/Observe"),
              [im](h2::CallPtr c) -> std::unique_ptr<h2::Handler> {
                return std::make_unique<NativeObserve>(im, std::move(c));
              });
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
    keep->end(Stopped());
  }
}

size_t LockElection::open_calls() const {
  absl::MutexLock l(&impl_->mu);
  return impl_->open.size();
}

}  // namespace detcd::shim
