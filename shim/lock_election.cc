#include "shim/lock_election.h"

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <system_error>
#include <thread>
#include <utility>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "detcd/client.h"
#include "detcd/concurrency.h"
#include "detcd/errors.h"
#include "engine/server/errors.h"
#include "engine/server/node.h"
#include "v3electionpb/v3election.grpc.pb.h"
#include "v3lockpb/v3lock.grpc.pb.h"

namespace detcd::shim {
namespace {

namespace el = v3electionpb;
namespace pb = etcdserverpb;
using client::Client;
using client::Election;
using client::Mutex;
using client::Session;

constexpr char kLockService[] = "v3lockpb.Lock";
constexpr char kElectionService[] = "v3electionpb.Election";
// How long Shutdown waits for the calls' threads to see their
// cancellation (each only has to unwind a cancelled gRPC call).
constexpr absl::Duration kShutdownWait = absl::Seconds(5);

grpc::Status ToGrpc(const absl::Status& s) {
  if (s.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(s.code()),
                      std::string(s.message()));
}

// An error of the services' own client. etcd's services get theirs from
// clientv3, which turns an etcd error text into a plain Go error (and a
// context error is one already); a handler returning a plain Go error
// answers with code Unknown and the text. Other gRPC errors keep their
// code.
grpc::Status FromInner(const absl::Status& s) {
  if (s.ok()) return grpc::Status::OK;
  if (client::IsEtcdErrorText(s.message()) || client::IsContextError(s) ||
      client::IsPlainError(s)) {
    return grpc::Status(grpc::StatusCode::UNKNOWN, std::string(s.message()));
  }
  return ToGrpc(s);
}

grpc::Status Stopped() {
  return ToGrpc(server::ToClientError(server::ErrStopped()));
}

// etcd's Go error from a handler: gRPC code Unknown, the text as is.
grpc::Status Plain(const char* text) {
  return grpc::Status(grpc::StatusCode::UNKNOWN, text);
}

// The caller's auth token, passed on to the inner calls.
std::string TokenOf(const grpc::CallbackServerContext* ctx) {
  const auto& md = ctx->client_metadata();
  auto it = md.find("token");
  if (it == md.end()) return "";
  return std::string(it->second.data(), it->second.size());
}

// A session on the caller's lease, or (lease 0) on a fresh lease of
// etcd's default 60 s that is not kept alive: etcd's services create a
// concurrency session WithLease(req.Lease) and orphan it at once.
absl::StatusOr<std::unique_ptr<Session>> SessionFor(Client* c, int64_t lease) {
  if (lease != 0) return Session::Attach(c, lease);
  auto s = Session::New(c);
  if (!s.ok()) return s.status();
  (*s)->Orphan();
  return s;
}

// One open call, as Shutdown sees it: something to cancel.
class OpenCallBase {
 public:
  virtual ~OpenCallBase() = default;
  client::Canceller* canceller() { return &canceller_; }

 protected:
  client::Canceller canceller_;
};

}  // namespace

struct LockElection::Impl : std::enable_shared_from_this<LockElection::Impl> {
  Impl(Options o, CallObserver* ob)
      : opts(o), obs(ob != nullptr ? ob : &null_observer) {}

  // Admits a call; returns its refusal, or OK with the client to use.
  absl::StatusOr<std::unique_ptr<Client>> Enter(
      OpenCallBase* call, const grpc::CallbackServerContext* ctx) {
    std::shared_ptr<grpc::Channel> ch;
    {
      absl::MutexLock l(&mu);
      if (stopped) return server::ToClientError(server::ErrStopped());
      if (opts.is_learner && opts.is_learner()) {
        return server::ToClientError(server::ErrNotSupportedForLearner());
      }
      if (channel == nullptr) {
        return absl::UnavailableError("etcdserver: not capable");
      }
      if (open.size() >= opts.max_open_calls) {
        return server::ToClientError(server::ErrTooManyRequests());
      }
      open.insert(call);
      ch = channel;
    }
    // The caller's deadline bounds the work as a Go handler's context
    // does: once it passed, no inner call starts, even before gRPC's
    // OnCancel arrives (a Campaign retried at its deadline must not put
    // its key after the first attempt's clean-up removed it).
    if (ctx->deadline() != std::chrono::system_clock::time_point::max()) {
      call->canceller()->set_deadline(absl::FromChrono(ctx->deadline()));
    }
    client::Config cfg;
    cfg.endpoints = {"in-process"};
    cfg.token = TokenOf(ctx);
    auto c = Client::NewOnChannel(std::move(ch), std::move(cfg));
    if (!c.ok()) {
      Leave(call);
      return c.status();
    }
    (*c)->set_canceller(call->canceller());
    return c;
  }

  // The call is done; returns whether the server is stopping (the call's
  // outcome is then "server stopped"). Shutdown may return as soon as the
  // set is empty, so after this a call only finishes its reactor (the
  // Impl itself stays alive: the call's thread holds a reference).
  bool Leave(OpenCallBase* call) {
    absl::MutexLock l(&mu);
    open.erase(call);
    return stopped;
  }

  Options opts;
  CallObserver null_observer;
  CallObserver* obs;
  absl::Mutex mu;
  bool stopped ABSL_GUARDED_BY(mu) = false;
  std::shared_ptr<grpc::Channel> channel ABSL_GUARDED_BY(mu);
  std::set<OpenCallBase*> open ABSL_GUARDED_BY(mu);
};

namespace {

using Impl = LockElection::Impl;

// Runs body on a thread of its own; false when the system has no thread
// to give (the call is then refused as one too many).
template <typename Body>
bool Spawn(Body body) {
  try {
    std::thread(std::move(body)).detach();
    return true;
  } catch (const std::system_error&) {
    return false;
  }
}

grpc::Status TooMany() {
  return ToGrpc(server::ToClientError(server::ErrTooManyRequests()));
}

// A unary call whose work blocks: it runs on a thread of its own and
// finishes the reactor when done. The reactor is deleted by gRPC's OnDone,
// which comes only after Finish, and Finish is the thread's last touch.
class BlockingUnary final : public grpc::ServerUnaryReactor,
                            public OpenCallBase {
 public:
  using Work = std::function<grpc::Status(Client*)>;

  // Starts the call (or refuses it) and returns the reactor for gRPC.
  static grpc::ServerUnaryReactor* Run(Impl* impl,
                                       grpc::CallbackServerContext* ctx,
                                       const char* service, const char* method,
                                       Work work) {
    auto* call = new BlockingUnary(impl, service, method);
    impl->obs->OnStarted(service, method, "unary");
    auto c = impl->Enter(call, ctx);
    if (!c.ok()) {
      call->End(ToGrpc(c.status()));
      return call;
    }
    const bool started =
        Spawn([call, keep = impl->shared_from_this(), c = *std::move(c),
               work = std::move(work)]() mutable {
          grpc::Status st = work(c.get());
          c.reset();
          const bool stopping = call->impl_->Leave(call);
          if (stopping && !st.ok()) st = Stopped();
          call->End(st);
        });
    if (!started) {
      impl->Leave(call);
      call->End(TooMany());
    }
    return call;
  }

  void OnCancel() override { canceller_.Cancel(); }
  void OnDone() override { delete this; }

 private:
  BlockingUnary(Impl* impl, const char* service, const char* method)
      : impl_(impl), service_(service), method_(method) {}

  void End(const grpc::Status& st) {
    impl_->obs->OnHandled(service_, method_, "unary", st.error_code());
    Finish(st);
  }

  Impl* impl_;
  const char* service_;
  const char* method_;
};

// Observe: a server stream fed by the election's observer on a thread of
// its own, one write in flight at a time.
class ObserveCall final : public grpc::ServerWriteReactor<el::LeaderResponse>,
                          public OpenCallBase {
 public:
  static grpc::ServerWriteReactor<el::LeaderResponse>* Run(
      Impl* impl, grpc::CallbackServerContext* ctx,
      const el::LeaderRequest* req) {
    auto* call = new ObserveCall(impl);
    impl->obs->OnStarted(kElectionService, "Observe", "server_stream");
    auto c = impl->Enter(call, ctx);
    if (!c.ok()) {
      call->End(ToGrpc(c.status()));
      return call;
    }
    const bool started =
        Spawn([call, keep = impl->shared_from_this(), c = *std::move(c),
               name = req->name()]() mutable {
          grpc::Status st = call->Observe(c.get(), name);
          c.reset();
          const bool stopping = call->impl_->Leave(call);
          if (stopping && st.error_code() == grpc::StatusCode::CANCELLED) {
            st = Stopped();
          }
          call->End(st);
        });
    if (!started) {
      impl->Leave(call);
      call->End(TooMany());
    }
    return call;
  }

  void OnCancel() override { canceller_.Cancel(); }
  void OnWriteDone(bool ok) override {
    absl::MutexLock l(&mu_);
    writing_ = false;
    write_ok_ = ok;
  }
  void OnDone() override { delete this; }

 private:
  explicit ObserveCall(Impl* impl) : impl_(impl) {}

  grpc::Status Observe(Client* c, const std::string& name) {
    // etcd observes with a session on lease -1 that is never used.
    std::unique_ptr<Session> s = Session::Attach(c, -1);
    Election e(s.get(), name);
    // etcd ends the stream with OK whenever the observer stops (its watch
    // failed, the leader's key could not be read): the reason is dropped.
    // Only the caller's own cancellation is an error.
    e.Observe([this](const etcdserverpb::RangeResponse& r) {
       el::LeaderResponse out;
       *out.mutable_header() = r.header();
       if (r.kvs_size() > 0) *out.mutable_kv() = r.kvs(0);
       return Write(std::move(out));
     }).IgnoreError();
    if (canceller_.cancelled()) {
      return grpc::Status(grpc::StatusCode::CANCELLED,
                          client::kContextCanceled);
    }
    return grpc::Status::OK;
  }

  // Sends one response and waits until gRPC took it; false once the
  // stream is broken or cancelled.
  bool Write(el::LeaderResponse msg) {
    absl::MutexLock l(&mu_);
    if (!write_ok_) return false;
    msg_ = std::move(msg);
    writing_ = true;
    StartWrite(&msg_);
    auto settled = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return !writing_ || canceller_.cancelled();
    };
    // The canceller's flag is not signalled through mu_: look again now
    // and then.
    while (!mu_.AwaitWithTimeout(absl::Condition(&settled),
                                 absl::Milliseconds(100))) {
    }
    if (writing_) {
      // Cancelled with the write still pending: msg_ stays alive (it is a
      // member) until OnDone, and no further write is started.
      write_ok_ = false;
      return false;
    }
    return write_ok_;
  }

  void End(const grpc::Status& st) {
    impl_->obs->OnHandled(kElectionService, "Observe", "server_stream",
                          st.error_code());
    Finish(st);
  }

  Impl* impl_;
  absl::Mutex mu_;
  el::LeaderResponse msg_ ABSL_GUARDED_BY(mu_);
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool write_ok_ ABSL_GUARDED_BY(mu_) = true;
};

class LockService final : public v3lockpb::Lock::CallbackService {
 public:
  explicit LockService(Impl* impl) : impl_(impl) {}

  grpc::ServerUnaryReactor* Lock(grpc::CallbackServerContext* ctx,
                                 const v3lockpb::LockRequest* req,
                                 v3lockpb::LockResponse* resp) override {
    return BlockingUnary::Run(impl_, ctx, kLockService, "Lock",
                              [req, resp](Client* c) {
                                auto s = SessionFor(c, req->lease());
                                if (!s.ok()) return FromInner(s.status());
                                Mutex m(s->get(), req->name());
                                if (absl::Status st = m.Lock(); !st.ok()) {
                                  return FromInner(st);
                                }
                                *resp->mutable_header() = m.header();
                                resp->set_key(m.key());
                                return grpc::Status::OK;
                              });
  }

  grpc::ServerUnaryReactor* Unlock(grpc::CallbackServerContext* ctx,
                                   const v3lockpb::UnlockRequest* req,
                                   v3lockpb::UnlockResponse* resp) override {
    return BlockingUnary::Run(impl_, ctx, kLockService, "Unlock",
                              [req, resp](Client* c) {
                                etcdserverpb::DeleteRangeRequest d;
                                d.set_key(req->key());
                                auto r = c->DeleteRange(d);
                                if (!r.ok()) return FromInner(r.status());
                                *resp->mutable_header() = r->header();
                                return grpc::Status::OK;
                              });
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
    return BlockingUnary::Run(
        impl_, ctx, kElectionService, "Campaign", [req, resp](Client* c) {
          auto s = SessionFor(c, req->lease());
          if (!s.ok()) return FromInner(s.status());
          Election e(s->get(), req->name());
          if (absl::Status st = e.Campaign(req->value()); !st.ok()) {
            return FromInner(st);
          }
          *resp->mutable_header() = e.header();
          el::LeaderKey* k = resp->mutable_leader();
          k->set_name(req->name());
          k->set_key(e.key());
          k->set_rev(e.rev());
          k->set_lease((*s)->lease());
          return grpc::Status::OK;
        });
  }

  grpc::ServerUnaryReactor* Proclaim(grpc::CallbackServerContext* ctx,
                                     const el::ProclaimRequest* req,
                                     el::ProclaimResponse* resp) override {
    return BlockingUnary::Run(
        impl_, ctx, kElectionService, "Proclaim", [req, resp](Client* c) {
          if (!req->has_leader()) return Plain(client::kErrMissingLeaderKey);
          const el::LeaderKey& k = req->leader();
          auto s = SessionFor(c, k.lease());
          if (!s.ok()) return FromInner(s.status());
          Election e = Election::Resume(s->get(), k.name(), k.key(), k.rev());
          if (absl::Status st = e.Proclaim(req->value()); !st.ok()) {
            return FromInner(st);
          }
          *resp->mutable_header() = e.header();
          return grpc::Status::OK;
        });
  }

  grpc::ServerUnaryReactor* Leader(grpc::CallbackServerContext* ctx,
                                   const el::LeaderRequest* req,
                                   el::LeaderResponse* resp) override {
    return BlockingUnary::Run(
        impl_, ctx, kElectionService, "Leader", [req, resp](Client* c) {
          std::unique_ptr<Session> s = Session::Attach(c, -1);
          Election e(s.get(), req->name());
          auto r = e.Leader();
          if (!r.ok()) return FromInner(r.status());
          *resp->mutable_header() = r->header();
          *resp->mutable_kv() = r->kvs(0);
          return grpc::Status::OK;
        });
  }

  grpc::ServerWriteReactor<el::LeaderResponse>* Observe(
      grpc::CallbackServerContext* ctx, const el::LeaderRequest* req) override {
    return ObserveCall::Run(impl_, ctx, req);
  }

  grpc::ServerUnaryReactor* Resign(grpc::CallbackServerContext* ctx,
                                   const el::ResignRequest* req,
                                   el::ResignResponse* resp) override {
    return BlockingUnary::Run(
        impl_, ctx, kElectionService, "Resign", [req, resp](Client* c) {
          if (!req->has_leader()) return Plain(client::kErrMissingLeaderKey);
          const el::LeaderKey& k = req->leader();
          auto s = SessionFor(c, k.lease());
          if (!s.ok()) return FromInner(s.status());
          Election e = Election::Resume(s->get(), k.name(), k.key(), k.rev());
          if (absl::Status st = e.Resign(); !st.ok()) return FromInner(st);
          *resp->mutable_header() = e.header();
          return grpc::Status::OK;
        });
  }

 private:
  Impl* impl_;
};

}  // namespace

struct LockElection::All {
  explicit All(Impl* impl) : lock(impl), election(impl) {}
  LockService lock;
  ElectionService election;
};

LockElection::LockElection(Options o, CallObserver* observer)
    : impl_(std::make_shared<Impl>(o, observer)),
      all_(std::make_unique<All>(impl_.get())) {}

LockElection::~LockElection() { Shutdown(); }

std::vector<grpc::Service*> LockElection::services() {
  return {&all_->lock, &all_->election};
}

void LockElection::Start(std::shared_ptr<grpc::Channel> self) {
  absl::MutexLock l(&impl_->mu);
  impl_->channel = std::move(self);
}

void LockElection::Shutdown() {
  absl::MutexLock l(&impl_->mu);
  impl_->stopped = true;
  for (OpenCallBase* c : impl_->open) c->canceller()->Cancel();
  auto drained = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(impl_->mu) {
    return impl_->open.empty();
  };
  impl_->mu.AwaitWithTimeout(absl::Condition(&drained), kShutdownWait);
  // The in-process channel goes with the server; drop our reference.
  impl_->channel.reset();
}

}  // namespace detcd::shim
