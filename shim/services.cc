#include "shim/services.h"

#include <openssl/evp.h>
#include <openssl/sha.h>

#include <atomic>
#include <deque>
#include <map>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "engine/server/errors.h"
#include "engine/server/node.h"
#include "shim/etcd_backend.h"
#include "shim/grpc_h2_proxy.h"
#include "shim/watch_wire.h"
#include "shim/work_thread.h"

namespace detcd::shim {
namespace {

using server::EtcdServer;
namespace pb = etcdserverpb;

grpc::Status ToGrpc(const absl::Status& s) {
  if (s.ok()) return grpc::Status::OK;
  const absl::Status c = server::ToClientError(s);
  return grpc::Status(static_cast<grpc::StatusCode>(c.code()),
                      std::string(c.message()));
}

grpc::Status Stopped() { return ToGrpc(server::ErrStopped()); }

// A message serialized after room for the transport's frame prefix
// (h2::Call::WriteFramed).
std::string Framed(const google::protobuf::MessageLite& m) {
  const size_t n = m.ByteSizeLong();
  std::string out(h2::Call::kFrameHeaderBytes + n, '\0');
  m.SerializeWithCachedSizesToArray(
      reinterpret_cast<uint8_t*>(out.data() + h2::Call::kFrameHeaderBytes));
  return out;
}

// An answer worth encoding off the engine thread (NativeUnaryCall::Send):
// a range of many key-values.
template <typename Resp>
bool Large(const Resp& r) {
  if constexpr (std::is_same_v<Resp, pb::RangeResponse>) {
    return r.kvs_size() >= 4096;
  }
  return false;
}

h2::Status ToH2(const grpc::Status& s) {
  return h2::Status{static_cast<int>(s.error_code()), s.error_message()};
}

// Anything open that must be answered when the server stops.
class OpenCall {
 public:
  virtual ~OpenCall() = default;
  virtual void Abort(const grpc::Status& s) = 0;

  // Links of Services::Impl's registry of open calls (under its mu): a
  // list threaded through the calls, so that opening and closing one costs
  // no allocation.
  OpenCall* open_prev = nullptr;
  OpenCall* open_next = nullptr;
  bool open_linked = false;
};

}  // namespace

server::Caller GrpcCaller(
    const grpc::CallbackServerContext* ctx,
    const std::function<std::string(const std::string&)>& peer_common_name) {
  server::Caller c;
  const auto& md = ctx->client_metadata();
  auto it = md.find("token");
  if (it == md.end()) it = md.find("authorization");
  if (it != md.end()) c.token.emplace(it->second.data(), it->second.size());
  // A call over an in-process channel: Debian's gRPC names its peer
  // "unknown" (later versions "inproc..."); clients outside have
  // "ipv4:...", "ipv6:..." or "fd:N".
  const std::string peer = ctx->peer();
  if (peer == "unknown" || peer.rfind("inproc", 0) == 0) {
    // Relayed by the native transport, which sets the CN it verified (and
    // drops the key from what its clients send; the gateway sets none).
    auto cn = md.find(h2::kProxiedCnKey);
    if (cn != md.end()) c.cert_cn.assign(cn->second.data(), cn->second.size());
  } else if (peer_common_name) {
    c.cert_cn = peer_common_name(peer);
  }
  return c;
}

server::Caller NativeCaller(const h2::Call& call) {
  server::Caller c;
  const std::string* t = call.Find("token");
  if (t == nullptr) t = call.Find("authorization");
  if (t != nullptr) c.token.emplace(*t);
  c.cert_cn = call.cert_cn();
  return c;
}

std::unique_ptr<CallFigures> StartNativeFigures(const NativeCallFigures& make,
                                                const h2::Call& call,
                                                const char* type) {
  if (!make) return nullptr;
  std::unique_ptr<CallFigures> f = make(call.method(), type);
  const std::string* v = call.Find("client-api-version");
  std::string_view version = v != nullptr ? *v : std::string_view();
  f->Started(v != nullptr ? &version : nullptr);
  return f;
}

struct Services::Impl {
  Impl(EngineLoop* l, EtcdServer* s, Options o, CallObserver* ob)
      : loop(l), server(s), opts(o), obs(ob ? ob : &null_observer) {}

  // Registry of open calls. Returns false once stopped.
  // Unary calls made and not answered yet (UnaryCall).
  std::atomic<int64_t> unary_open{0};
  bool Open(OpenCall* c) {
    absl::MutexLock l(&mu);
    if (stopped) return false;
    c->open_prev = nullptr;
    c->open_next = open;
    if (open != nullptr) open->open_prev = c;
    open = c;
    c->open_linked = true;
    return true;
  }
  // Idempotent (Shutdown may have taken the call out already).
  void Close(OpenCall* c) {
    absl::MutexLock l(&mu);
    Unlink(c);
  }
  void Unlink(OpenCall* c) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    if (!c->open_linked) return;
    if (c->open_prev != nullptr) c->open_prev->open_next = c->open_next;
    if (c->open_next != nullptr) c->open_next->open_prev = c->open_prev;
    if (open == c) open = c->open_next;
    c->open_prev = c->open_next = nullptr;
    c->open_linked = false;
  }
  bool Learner() const { return opts.is_learner && opts.is_learner(); }
  server::Caller CallerOf(const grpc::CallbackServerContext* ctx) const {
    return GrpcCaller(ctx, opts.peer_common_name);
  }

  server::Caller CallerOf(const h2::Call& call) const {
    return NativeCaller(call);
  }
  // A native call's traffic figures, started (null without
  // native_call_figures).
  std::unique_ptr<CallFigures> StartFigures(const h2::Call& call,
                                            const char* type) const {
    return StartNativeFigures(opts.native_call_figures, call, type);
  }

  template <typename Req, typename Resp>
  grpc::ServerUnaryReactor* Unary(
      const char* service, const char* method,
      grpc::CallbackServerContext* ctx, const Req* req, Resp* resp,
      void (EtcdServer::*fn)(const Req&, EtcdServer::Done<Resp>));

  void FillHeader(pb::ResponseHeader* h, int64_t revision) const {
    h->set_cluster_id(server->cluster_id());
    h->set_member_id(server->id());
    h->set_revision(revision);
    h->set_raft_term(server->node().raft().term());
  }

  EngineLoop* loop;
  EtcdServer* server;
  Options opts;
  CallObserver null_observer;
  CallObserver* obs;
  absl::Mutex mu;
  bool stopped ABSL_GUARDED_BY(mu) = false;
  OpenCall* open ABSL_GUARDED_BY(mu) = nullptr;  // first of the list
  // Events in every watch stream's send queue, not yet written (etcd's
  // etcd_debugging_mvcc_pending_events_total).
  std::atomic<int64_t> pending_events{0};
  // Each event of one watch hub call encoded once for all the streams it
  // goes to (engine thread only).
  WatchEventCache watch_events;
  // Encodes large answers (NativeUnaryCall::Send, and gRPC C++'s Finish
  // in UnaryCall::Send); stopped, after running what is queued, by
  // Services::Shutdown.
  WorkThread encoder{"encoder", ThreadKind::kIo};
};

namespace {

// One unary call, from its arrival to its answer; everything the engine
// needs travels in it, so the tasks and callbacks that carry it hold one
// pointer (they fit std::function's inline buffer: no allocation).
//
// The request and response messages belong to gRPC and are valid until
// Finish. The call is answered once, by the engine's completion or by
// Abort (shutdown, any thread), whichever comes first; while the engine
// reads the request (Serve), an answer is held back and given when it is
// done, so gRPC never frees a request the engine is reading. Three
// references keep the call: gRPC's answer (End), the engine's (Release),
// and one more while the engine runs the request with the call's
// credentials in scope.
class UnaryCall : public OpenCall {
 public:
  // reactor: gRPC C++'s, or null for a call whose Send answers it.
  UnaryCall(Services::Impl* impl, grpc::ServerUnaryReactor* reactor,
            const char* service, const char* method)
      : impl_(impl), reactor_(reactor), service_(service), method_(method) {
    impl_->unary_open.fetch_add(1, std::memory_order_relaxed);
  }

  // On the engine thread: serves the request.
  virtual void Run() = 0;
  // Registers the call and posts it to the engine (the caller's reference
  // is passed on).
  void Launch();

  // Runs fill (which writes the response) and answers with s, unless the
  // call was answered already.
  template <typename Fill>
  void Complete(Fill fill, const grpc::Status& s) {
    {
      absl::MutexLock l(&mu_);
      if (finished_) return;
      finished_ = true;
      impl_->unary_open.fetch_sub(1, std::memory_order_relaxed);
      fill();
      if (engine_reading_) {
        held_ = s;
        return;
      }
    }
    End(s);
  }
  void Abort(const grpc::Status& s) override {
    Complete([] {}, s);
  }
  void Ref() { refs_.fetch_add(1, std::memory_order_relaxed); }
  // Drops a reference: the engine's once its callback is done with the
  // call (or will never run), or the one taken by Ref.
  void Release() {
    if (refs_.fetch_sub(1, std::memory_order_acq_rel) == 1) delete this;
  }

  server::Caller who;  // the call's credentials (set before it is posted)

 protected:
  // The engine starts reading the request: false if the call was answered
  // already (its request may be gone).
  bool BeginReading() {
    absl::MutexLock l(&mu_);
    if (finished_) return false;
    engine_reading_ = true;
    return true;
  }
  // Gives the answer held back meanwhile, if any.
  void EndReading() {
    std::optional<grpc::Status> held;
    {
      absl::MutexLock l(&mu_);
      engine_reading_ = false;
      held.swap(held_);
    }
    if (held) End(*held);
  }

  Services::Impl* impl_;
  // Set while the response is filled: a large answer (Large()), which
  // gRPC C++'s Finish encodes, a few hundred ms for a range of a million
  // keys: the encoder thread calls it instead of the engine (the response
  // is gRPC's until OnDone, which comes after Finish).
  bool large_answer_ = false;
  // Gives the answer (the response is filled when s is OK).
  virtual void Send(const grpc::Status& s) {
    if (s.ok() && large_answer_) {
      grpc::ServerUnaryReactor* r = reactor_;
      if (impl_->encoder.Post([r] { r->Finish(grpc::Status::OK); })) return;
    }
    reactor_->Finish(s);
  }

 private:
  void End(const grpc::Status& s) {
    impl_->obs->OnHandled(service_, method_, "unary", s.error_code());
    Send(s);
    // The engine's callback may still hold a pointer: the call is deleted
    // by the last reference, i.e. it leaks only if the engine never
    // answers, which it always does (timeouts included).
    Release();
  }

  grpc::ServerUnaryReactor* reactor_;
  const char* service_;
  const char* method_;
  absl::Mutex mu_;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  bool engine_reading_ ABSL_GUARDED_BY(mu_) = false;
  std::optional<grpc::Status> held_ ABSL_GUARDED_BY(mu_);
  std::atomic<int> refs_{2};
};

template <typename Req, typename Resp>
class TypedUnaryCall : public UnaryCall {
 public:
  using Fn = void (EtcdServer::*)(const Req&, EtcdServer::Done<Resp>);
  TypedUnaryCall(Services::Impl* impl, grpc::ServerUnaryReactor* reactor,
                 const char* service, const char* method, const Req* req,
                 Resp* resp, Fn fn)
      : UnaryCall(impl, reactor, service, method),
        req_(req),
        resp_(resp),
        fn_(fn) {}

  // On the engine thread. A simple token from another member may wait
  // for its entry before the request is served.
  void Run() override {
    impl_->server->AwaitCaller(who, [this] { Serve(); });
  }

 private:
  void Serve() {
    if (!BeginReading()) {  // answered by Shutdown meanwhile
      impl_->Close(this);
      Release();
      return;
    }
    // The request may be answered before fn returns (an error, a local
    // read): the call, its credentials that the engine points at and its
    // request must outlive fn.
    Ref();
    EtcdServer* server = impl_->server;
    // etcd's learner rule (EtcdServer::CheckLearnerRpc).
    bool supported = false;
    if constexpr (std::is_same_v<Req, pb::StatusRequest>) supported = true;
    if constexpr (std::is_same_v<Req, pb::RangeRequest>) {
      supported = req_->serializable();
    }
    if (absl::Status s = server->CheckLearnerRpc(supported); !s.ok()) {
      Answer(s);
    } else {
      EtcdServer::CallerScope scope(server, &who);
      (server->*fn_)(*req_, [this](absl::StatusOr<Resp> r) {
        if (r.ok()) {
          impl_->Close(this);
          Complete(
              [&] {
                *resp_ = *std::move(r);
                large_answer_ = Large(*resp_);
              },
              grpc::Status::OK);
          Release();
        } else {
          Answer(r.status());
        }
      });
    }
    EndReading();
    Release();
  }
  void Answer(const absl::Status& s) {
    impl_->Close(this);
    Complete([] {}, ToGrpc(s));
    Release();
  }

  const Req* req_;
  Resp* resp_;
  Fn fn_;
};

}  // namespace

template <typename Req, typename Resp>
grpc::ServerUnaryReactor* Services::Impl::Unary(
    const char* service, const char* method, grpc::CallbackServerContext* ctx,
    const Req* req, Resp* resp,
    void (EtcdServer::*fn)(const Req&, EtcdServer::Done<Resp>)) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  obs->OnStarted(service, method, "unary");
  auto* call = new TypedUnaryCall<Req, Resp>(this, reactor, service, method,
                                             req, resp, fn);
  call->who = CallerOf(ctx);
  call->Launch();
  return reactor;
}

namespace {

void UnaryCall::Launch() {
  if (!impl_->Open(this)) {
    Abort(Stopped());
    Release();
    return;
  }
  if (!impl_->loop->Post([this] { Run(); })) {
    impl_->Close(this);
    Abort(ToGrpc(server::ErrTooManyRequests()));
    Release();
  }
}

// ---- Unary calls on the native transport (shim/grpc_h2) ----

// The request and response a native call owns (gRPC C++ owns them for
// its calls); a base so they are built before TypedUnaryCall points at
// them.
template <typename Req, typename Resp>
struct OwnMessages {
  Req req;
  Resp resp;
};

template <typename Req, typename Resp>
class NativeUnaryCall final : private OwnMessages<Req, Resp>,
                              public TypedUnaryCall<Req, Resp> {
 public:
  NativeUnaryCall(Services::Impl* impl, h2::CallPtr call, const char* service,
                  const char* method,
                  typename TypedUnaryCall<Req, Resp>::Fn fn)
      : TypedUnaryCall<Req, Resp>(impl, nullptr, service, method, &this->req,
                                  &this->resp, fn),
        call_(std::move(call)) {}
  Req& request() { return this->req; }
  std::unique_ptr<CallFigures> figures;  // null: not counted

 private:
  void Send(const grpc::Status& s) override {
    if (!s.ok()) {
      call_->Finish(h2::Status{static_cast<int>(s.error_code()),
                               s.error_message()});
      if (figures) figures->Finished(s);
      return;
    }
    if (!Large(this->resp)) return Reply(*call_, figures.get(), this->resp);
    // Encoding (and freeing) a large answer, a range of a million keys,
    // takes a few hundred ms: the encoder thread does it, not the engine.
    // The request goes with the call, maybe before the task runs: its
    // summary (for the slow-call warning) is made now.
    if (figures) figures->SummarizeRequestNow();
    auto owned =
        std::make_shared<std::pair<std::unique_ptr<CallFigures>, Resp>>(
            std::move(figures), std::move(this->resp));
    auto task = [call = call_, owned] {
      Reply(*call, owned->first.get(), owned->second);
    };
    if (!this->impl_->encoder.Post(task)) task();  // stopping: here, then
  }
  // The answer, with its traffic figures.
  static void Reply(h2::Call& call, CallFigures* figures, const Resp& resp) {
    if (figures) figures->Sent(resp);
    call.ReplyFramed(Framed(resp));
    if (figures) figures->Finished(grpc::Status::OK);
  }

  h2::CallPtr call_;
};

// The transport's side of one native unary call: takes the request
// message and launches the call.
template <typename Req, typename Resp>
class NativeUnary final : public h2::Handler {
 public:
  using Fn = typename TypedUnaryCall<Req, Resp>::Fn;
  NativeUnary(Services::Impl* impl, h2::CallPtr call, const char* service,
              const char* method, Fn fn)
      : impl_(impl), call_(std::move(call)), service_(service),
        method_(method), fn_(fn) {}

  void OnMessage(std::string m) override {
    if (got_) {
      call_->Finish(h2::Status{
          12, "grpc: unary call received more than one request"});
      return;
    }
    got_ = true;
    impl_->obs->OnStarted(service_, method_, "unary");
    auto* c = new NativeUnaryCall<Req, Resp>(impl_, call_, service_, method_,
                                             fn_);
    c->figures = impl_->StartFigures(*call_, "unary");
    if (!c->request().ParseFromString(m)) {
      c->Abort(grpc::Status(grpc::StatusCode::INTERNAL,
                            "grpc: error unmarshalling request"));
      c->Release();
      return;
    }
    if (c->figures) c->figures->Received(c->request());
    c->who = impl_->CallerOf(*call_);
    c->Launch();
  }
  void OnHalfClose() override {
    if (!got_) {
      call_->Finish(h2::Status{12, "grpc: unary call got no request"});
    }
  }

 private:
  Services::Impl* impl_;
  h2::CallPtr call_;
  const char* service_;
  const char* method_;
  Fn fn_;
  bool got_ = false;
};

// The answer to one keep-alive request, as etcd's: a lease that is gone
// gets TTL 0 (not an error); another error ends the stream.
absl::StatusOr<pb::LeaseKeepAliveResponse> KeepAliveAnswer(
    Services::Impl* impl, const pb::LeaseKeepAliveRequest& req,
    absl::StatusOr<pb::LeaseKeepAliveResponse> r) {
  if (r.ok() || !lease::IsErrLeaseNotFound(r.status())) return r;
  pb::LeaseKeepAliveResponse resp;
  impl->FillHeader(resp.mutable_header(), impl->server->state().kv().Rev());
  resp.set_id(req.id());
  resp.set_ttl(0);
  return resp;
}

// One LeaseKeepAlive stream on the native transport, with the gRPC C++
// stream's rules: requests are served one at a time in arrival order (the
// next goes to the engine once the last answer has left for the client, so
// a client that does not read holds its requests back), a half-close ends
// the stream with OK once every request before it is answered, an engine
// error ends it. Shared by the transport's handler and the engine's
// callbacks, which may outlive the stream.
class NativeKeepAlive final
    : public OpenCall,
      public std::enable_shared_from_this<NativeKeepAlive> {
 public:
  NativeKeepAlive(Services::Impl* impl, h2::CallPtr call)
      : impl_(impl), call_(std::move(call)) {}

  // False if the stream was refused (and answered).
  bool Start() {
    if (!impl_->Open(this)) {
      finished_ = true;
      call_->Finish(ToH2(Stopped()));
      return false;
    }
    if (impl_->Learner()) {
      finished_ = true;
      impl_->Close(this);
      call_->Finish(ToH2(ToGrpc(server::ErrNotSupportedForLearner())));
      return false;
    }
    impl_->obs->OnStarted(kService, kMethod, "bidi_stream");
    figures_ = impl_->StartFigures(*call_, "bidi_stream");
    return true;
  }

  void OnMessage(std::string m) {
    pb::LeaseKeepAliveRequest req;
    if (!req.ParseFromString(m)) {
      End(grpc::Status(grpc::StatusCode::INTERNAL,
                       "grpc: error unmarshalling request"));
      return;
    }
    absl::MutexLock l(&mu_);
    if (finished_) return;
    if (figures_) figures_->Received(req);
    if (queued_.size() >= kMaxQueued) {
      // A client that sends without reading: gRPC C++'s stream would
      // stop reading it; this one refuses it rather than grow.
      mu_.Unlock();
      End(ToGrpc(server::ErrTooManyRequests()));
      mu_.Lock();
      return;
    }
    queued_.push_back(std::move(req));
    NextLocked();
  }
  void OnHalfClose() {
    absl::MutexLock l(&mu_);
    half_closed_ = true;
    NextLocked();
  }
  void OnDrained() {
    absl::MutexLock l(&mu_);
    NextLocked();
  }
  // The stream is gone: nothing is owed.
  void OnCancel() { End(grpc::Status::CANCELLED); }

  // Shutdown (under the registry's lock, the call already out of it).
  void Abort(const grpc::Status& s) override { Finish(s); }

  // The transport dropped the stream (its handler is going away).
  void Detach() { impl_->Close(this); }

 private:
  static constexpr const char* kService = "etcdserverpb.Lease";
  static constexpr const char* kMethod = "LeaseKeepAlive";
  static constexpr size_t kMaxQueued = 1024;

  // Sends the next request to the engine when none is there and the last
  // answer has left; ends the stream after a half-close with nothing left.
  void NextLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (finished_ || busy_) return;
    if (queued_.empty()) {
      if (half_closed_) {
        mu_.Unlock();
        End(grpc::Status::OK);
        mu_.Lock();
      }
      return;
    }
    if (call_->pending_bytes() > 0) return;  // OnDrained comes back
    busy_ = true;
    pb::LeaseKeepAliveRequest req = std::move(queued_.front());
    queued_.pop_front();
    std::shared_ptr<NativeKeepAlive> self = shared_from_this();
    Services::Impl* im = impl_;
    if (!im->loop->Post([self, im, req] {
          im->server->LeaseKeepAlive(
              req, [self, req](absl::StatusOr<pb::LeaseKeepAliveResponse> r) {
                self->Answer(req, std::move(r));
              });
        })) {
      busy_ = false;
      mu_.Unlock();
      End(ToGrpc(server::ErrTooManyRequests()));
      mu_.Lock();
    }
  }

  // On the engine thread.
  void Answer(const pb::LeaseKeepAliveRequest& req,
              absl::StatusOr<pb::LeaseKeepAliveResponse> r) {
    r = KeepAliveAnswer(impl_, req, std::move(r));
    if (!r.ok()) {
      End(ToGrpc(r.status()));
      return;
    }
    absl::MutexLock l(&mu_);
    busy_ = false;
    if (finished_) return;
    if (figures_) figures_->Sent(*r);
    call_->WriteFramed(Framed(*r));
    NextLocked();
  }

  // Ends the stream (any thread but Shutdown's).
  void End(const grpc::Status& s) {
    impl_->Close(this);
    Finish(s);
  }
  void Finish(const grpc::Status& s) {
    {
      absl::MutexLock l(&mu_);
      if (finished_) return;
      finished_ = true;
      queued_.clear();
    }
    impl_->obs->OnHandled(kService, kMethod, "bidi_stream", s.error_code());
    if (figures_) figures_->Finished(s);
    call_->Finish(ToH2(s));
  }

  Services::Impl* const impl_;
  const h2::CallPtr call_;
  std::unique_ptr<CallFigures> figures_;  // set in Start, then read only
  absl::Mutex mu_;
  std::deque<pb::LeaseKeepAliveRequest> queued_ ABSL_GUARDED_BY(mu_);
  bool busy_ ABSL_GUARDED_BY(mu_) = false;  // a request is in the engine
  bool half_closed_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
};

// The transport's handler of a native keep-alive stream.
class NativeKeepAliveHandler final : public h2::Handler {
 public:
  explicit NativeKeepAliveHandler(std::shared_ptr<NativeKeepAlive> s)
      : s_(std::move(s)) {}
  ~NativeKeepAliveHandler() override { s_->Detach(); }
  void OnMessage(std::string m) override { s_->OnMessage(std::move(m)); }
  void OnHalfClose() override { s_->OnHalfClose(); }
  void OnCancel() override { s_->OnCancel(); }
  void OnDrained() override { s_->OnDrained(); }

 private:
  std::shared_ptr<NativeKeepAlive> s_;
};

// A stream refused when it opened (already answered): ignores the rest.
class RefusedHandler final : public h2::Handler {
 public:
  void OnMessage(std::string) override {}
};

template <typename Req, typename Resp>
void RegisterNativeUnary(h2::Server* s, Services::Impl* impl,
                         const char* service, const char* method,
                         void (EtcdServer::*fn)(const Req&,
                                                EtcdServer::Done<Resp>)) {
  s->Register(absl::StrCat("/", service, "/", method),
              [=](h2::CallPtr c) -> std::unique_ptr<h2::Handler> {
                return std::make_unique<NativeUnary<Req, Resp>>(
                    impl, std::move(c), service, method, fn);
              });
}

}  // namespace

namespace {

// ---- KV ----

class KvService final : public pb::KV::CallbackService {
 public:
  explicit KvService(Services::Impl* impl) : impl_(impl) {}
  grpc::ServerUnaryReactor* Range(grpc::CallbackServerContext* ctx,
                                  const pb::RangeRequest* req,
                                  pb::RangeResponse* resp) override {
    return impl_->Unary("etcdserverpb.KV", "Range", ctx, req, resp,
                        &EtcdServer::Range);
  }
  grpc::ServerUnaryReactor* Put(grpc::CallbackServerContext* ctx,
                                const pb::PutRequest* req,
                                pb::PutResponse* resp) override {
    return impl_->Unary("etcdserverpb.KV", "Put", ctx, req, resp,
                        &EtcdServer::Put);
  }
  grpc::ServerUnaryReactor* DeleteRange(grpc::CallbackServerContext* ctx,
                                        const pb::DeleteRangeRequest* req,
                                        pb::DeleteRangeResponse* resp) override {
    return impl_->Unary("etcdserverpb.KV", "DeleteRange", ctx, req, resp,
                        &EtcdServer::DeleteRange);
  }
  grpc::ServerUnaryReactor* Txn(grpc::CallbackServerContext* ctx,
                                const pb::TxnRequest* req,
                                pb::TxnResponse* resp) override {
    return impl_->Unary("etcdserverpb.KV", "Txn", ctx, req, resp,
                        &EtcdServer::Txn);
  }
  grpc::ServerUnaryReactor* Compact(grpc::CallbackServerContext* ctx,
                                    const pb::CompactionRequest* req,
                                    pb::CompactionResponse* resp) override {
    return impl_->Unary("etcdserverpb.KV", "Compact", ctx, req, resp,
                        &EtcdServer::Compact);
  }

 private:
  Services::Impl* impl_;
};

// ---- Watch ----

mvcc::WatchCreate FromPb(const pb::WatchCreateRequest& c) {
  mvcc::WatchCreate w;
  w.key = c.key();
  w.range_end = c.range_end();
  w.start_revision = c.start_revision();
  w.progress_notify = c.progress_notify();
  for (int f : c.filters()) {
    if (f == pb::WatchCreateRequest::NOPUT) w.no_put = true;
    if (f == pb::WatchCreateRequest::NODELETE) w.no_delete = true;
  }
  w.prev_kv = c.prev_kv();
  w.watch_id = c.watch_id() > 0 ? c.watch_id() : mvcc::kAutoWatchId;
  w.fragment = c.fragment();
  return w;
}

// One Watch stream's state, shared by its transport (gRPC C++'s reactor,
// WatchStream, or the native transport's handler, NativeWatch) and by the
// engine's tasks and the hub's sink, which may outlive the transport.
//
// Requests are handed to the engine one at a time; responses the hub
// produces are queued here and written by the transport. The queue is
// bounded: when it is full the sink refuses, and the hub keeps the
// watcher's position and catches it up from history later, so a client
// that does not read costs no memory and never slows writes. While the
// hub holds control responses it could not deliver (Backlogged), the
// stream's requests are not taken.
//
// Responses go out as the slices of shim/watch_wire.h, each event encoded
// once per hub call however many streams it goes to, and while a write is
// in flight the event responses queued behind it coalesce per watch id
// (WatchSendQueue::Push), so a busy or slow reader gets fewer, bigger
// messages instead of one per event.
class WatchTransport;

// Merged responses stay far below the hub's max_response_bytes (see
// WatchSendQueue::Limits).
constexpr size_t kMaxMergedWatchBytes = 64 * 1024;

struct WatchState {
  explicit WatchState(const Services::Options& o)
      : queue(WatchSendQueue::Limits{o.max_watch_responses_queued,
                                     o.max_watch_bytes_queued,
                                     kMaxMergedWatchBytes}) {}
  absl::Mutex mu;
  WatchTransport* owner = nullptr;  // null once the stream is done
  bool dead = false;
  bool finished = false;
  bool read_paused = false;
  WatchSendQueue queue;
  mvcc::WatchHub::StreamId id = 0;  // engine thread only
  server::Caller caller;            // the stream's credentials
};

// What the shared watch logic asks of a stream's transport, with the
// state's lock held.
class WatchTransport {
 public:
  virtual ~WatchTransport() = default;
  // Responses were queued: write them unless a write is in flight.
  virtual void SendLocked(WatchState* st) = 0;
  // The engine may take the stream's next request: the transport returns
  // it if it has one, or arranges for NextWatchRequests to run when one
  // comes.
  virtual std::optional<pb::WatchRequest> NextRequestLocked() = 0;
};

// The hub's sink (engine thread). Control responses carry no events of
// their own (r.events is empty for a RefSink).
bool DeliverWatch(const std::shared_ptr<WatchState>& st, Services::Impl* im,
                  const mvcc::WatchResponse& r,
                  const mvcc::WatchEventsRef& evs) {
  std::vector<grpc::Slice> slices;
  size_t event_bytes = 0;
  slices.reserve(evs.events.size());
  for (const mvcc::Event* e : evs.events) {
    const grpc::Slice& s = im->watch_events.Get(e, evs.with_prev_kv, evs.call);
    event_bytes += s.size();
    slices.push_back(s);
  }
  const int n = static_cast<int>(slices.size());
  WireHeader h;
  h.cluster_id = im->server->cluster_id();
  h.member_id = im->server->id();
  h.revision = r.revision;
  h.raft_term = im->server->node().raft().term();
  absl::MutexLock l(&st->mu);
  if (st->dead) return true;  // the client is gone: drop
  if (st->queue.Push(h, r, std::move(slices), event_bytes) ==
      WatchSendQueue::PushResult::kRefused) {
    return false;
  }
  im->pending_events.fetch_add(n, std::memory_order_relaxed);
  st->owner->SendLocked(st.get());
  return true;
}

// Opens the stream in the hub (posted to the engine): false if the engine
// took no more tasks.
bool OpenWatchStream(const std::shared_ptr<WatchState>& st,
                     Services::Impl* im) {
  return im->loop->Post([st, im] {
    st->id = im->server->watch_hub().OpenRefStream(
        [st, im](const mvcc::WatchResponse& r,
                 const mvcc::WatchEventsRef& evs) {
          return DeliverWatch(st, im, r, evs);
        });
  });
}

// One request (engine thread).
void HandleWatchRequest(const std::shared_ptr<WatchState>& st,
                        Services::Impl* im, const pb::WatchRequest& req) {
  EtcdServer& s = *im->server;
  if (req.has_create_request()) {
    // etcd's isWatchPermitted: a refused create is answered created and
    // canceled with the reason.
    EtcdServer::CallerScope scope(&s, &st->caller);
    const pb::WatchCreateRequest& c = req.create_request();
    if (absl::Status p = s.CheckWatchPermitted(c.key(), c.range_end());
        !p.ok()) {
      mvcc::WatchResponse r;
      r.watch_id = mvcc::kInvalidWatchId;
      r.created = true;
      r.canceled = true;
      r.cancel_reason = EtcdServer::WatchCancelReason(p);
      r.revision = s.state().kv().Rev();
      DeliverWatch(st, im, r, mvcc::WatchEventsRef());
    } else {
      s.WatchCreate(st->id, FromPb(c));
    }
  } else if (req.has_cancel_request()) {
    s.watch_hub().Cancel(st->id, req.cancel_request().watch_id());
  } else if (req.has_progress_request()) {
    s.watch_hub().RequestProgress(st->id);
  }
}

// Engine thread: takes the stream's next requests while the hub is not
// backlogged on it (then taking pauses until a write drains). With
// only_if_paused it resumes a paused stream and does nothing otherwise.
void NextWatchRequests(const std::shared_ptr<WatchState>& st,
                       Services::Impl* im, bool only_if_paused) {
  for (;;) {
    const bool backlogged = im->server->watch_hub().Backlogged(st->id);
    std::optional<pb::WatchRequest> next;
    {
      absl::MutexLock l(&st->mu);
      if (st->dead || st->owner == nullptr) return;
      if (only_if_paused && !st->read_paused) return;
      if (backlogged) {
        st->read_paused = true;
        return;
      }
      st->read_paused = false;
      next = st->owner->NextRequestLocked();
    }
    if (!next) return;
    HandleWatchRequest(st, im, *next);
    only_if_paused = false;
  }
}

// The transport is done with the stream (call gone): what was never
// written is no longer pending, and the hub forgets the stream.
void CloseWatchStream(const std::shared_ptr<WatchState>& st,
                      Services::Impl* im, OpenCall* call,
                      int64_t written_not_sent) {
  {
    absl::MutexLock l(&st->mu);
    st->dead = true;
    st->owner = nullptr;
    im->pending_events.fetch_sub(st->queue.Clear() + written_not_sent,
                                 std::memory_order_relaxed);
  }
  im->Close(call);
  im->loop->Post([st, im] {
    if (st->id != 0) im->server->watch_hub().CloseStream(st->id);
  });
}

// A Watch stream on gRPC C++ (a raw, ByteBuffer method): requests are read
// one at a time, responses written one at a time.
class WatchStream final
    : public grpc::ServerBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer>,
      public OpenCall,
      public WatchTransport {
 public:
  WatchStream(Services::Impl* impl, server::Caller caller)
      : impl_(impl), state_(std::make_shared<WatchState>(impl->opts)) {
    state_->owner = this;
    state_->caller = std::move(caller);
    if (!impl_->Open(this)) {
      Finish(Stopped());
      return;
    }
    if (impl_->Learner()) {
      impl_->Close(this);
      Finish(ToGrpc(server::ErrNotSupportedForLearner()));
      return;
    }
    impl_->obs->OnStarted("etcdserverpb.Watch", "Watch", "bidi_stream");
    if (!OpenWatchStream(state_, impl_)) {
      Abort(Stopped());
      return;
    }
    StartRead(&req_);
  }

  void OnReadDone(bool ok) override {
    if (!ok) return;  // half-closed or cancelled: OnDone follows
    pb::WatchRequest req;
    if (!grpc::SerializationTraits<pb::WatchRequest>::Deserialize(&req_, &req)
             .ok()) {
      // What gRPC answers a request it cannot parse.
      Abort(grpc::Status(grpc::StatusCode::INTERNAL,
                         "Failed to parse the watch request"));
      return;
    }
    std::shared_ptr<WatchState> st = state_;
    Services::Impl* im = impl_;
    const bool posted = impl_->loop->Post([st, im, req = std::move(req)] {
      HandleWatchRequest(st, im, req);
      NextWatchRequests(st, im, /*only_if_paused=*/false);
    });
    if (!posted) Abort(ToGrpc(server::ErrTooManyRequests()));
  }

  void OnWriteDone(bool ok) override {
    bool resume = false;
    {
      absl::MutexLock l(&state_->mu);
      const int done = state_->queue.PopFront();
      impl_->pending_events.fetch_sub(done, std::memory_order_relaxed);
      if (ok && !state_->dead) SendLocked(state_.get());
      resume = state_->read_paused;
    }
    if (resume) {
      std::shared_ptr<WatchState> st = state_;
      Services::Impl* im = impl_;
      impl_->loop->Post(
          [st, im] { NextWatchRequests(st, im, /*only_if_paused=*/true); });
    }
  }

  void OnCancel() override { Abort(grpc::Status::CANCELLED); }

  void OnDone() override {
    CloseWatchStream(state_, impl_, this, 0);
    delete this;
  }

  void Abort(const grpc::Status& s) override {
    {
      absl::MutexLock l(&state_->mu);
      if (state_->finished) return;
      state_->finished = true;
      state_->dead = true;
    }
    impl_->obs->OnHandled("etcdserverpb.Watch", "Watch", "bidi_stream",
                          s.error_code());
    Finish(s);
  }

  // While more responses wait behind this one, gRPC may hold its bytes
  // and send them with the next write (one socket write for several
  // messages); the last one queued always goes out at once.
  void SendLocked(WatchState* st) override {
    if (st->queue.empty() || st->queue.writing()) return;
    st->queue.StartFront(&out_);
    grpc::WriteOptions o;
    if (st->queue.size() > 1) o.set_buffer_hint();
    StartWrite(&out_, o);
  }
  std::optional<pb::WatchRequest> NextRequestLocked() override {
    StartRead(&req_);  // OnReadDone hands it over
    return std::nullopt;
  }

 private:
  Services::Impl* impl_;
  std::shared_ptr<WatchState> state_;
  grpc::ByteBuffer req_;
  grpc::ByteBuffer out_;  // the queue's front while gRPC writes it
};

// A Watch stream on the native transport (shim/grpc_h2). The transport
// hands over every request as it arrives: they wait here until the engine
// takes them (bounded: a client that sends without end while its stream
// is paused is refused). Every response queued while nothing is in flight
// is written at once, and the next ones when those have left for the
// client (OnDrained), so the queue's coalescing works as with gRPC C++.
class NativeWatch final : public h2::Handler,
                          public OpenCall,
                          public WatchTransport {
 public:
  NativeWatch(Services::Impl* impl, h2::CallPtr call)
      : impl_(impl),
        call_(std::move(call)),
        state_(std::make_shared<WatchState>(impl->opts)) {}
  // The transport dropped the stream.
  ~NativeWatch() override {
    if (!started_) return;
    int64_t unsent = 0;
    {
      absl::MutexLock l(&state_->mu);
      state_->dead = true;  // nothing is written any more
      unsent = in_flight_events_;
    }
    CloseWatchStream(state_, impl_, this, unsent);
  }

  // False if the stream was refused (and answered).
  bool Start() {
    if (!impl_->Open(this)) {
      call_->Finish(ToH2(Stopped()));
      return false;
    }
    if (impl_->Learner()) {
      impl_->Close(this);
      call_->Finish(ToH2(ToGrpc(server::ErrNotSupportedForLearner())));
      return false;
    }
    impl_->obs->OnStarted(kService, kMethod, "bidi_stream");
    {
      absl::MutexLock l(&state_->mu);
      figures_ = impl_->StartFigures(*call_, "bidi_stream");
      state_->owner = this;
      state_->caller = impl_->CallerOf(*call_);
      waiting_ = true;
    }
    started_ = true;
    if (!OpenWatchStream(state_, impl_)) Abort(Stopped());
    return true;
  }

  void OnMessage(std::string m) override {
    pb::WatchRequest req;
    const bool parsed = req.ParseFromString(m);
    bool full = false, post = false;
    {
      absl::MutexLock l(&state_->mu);
      if (state_->finished) return;
      if (figures_) figures_->ReceivedRaw(m.size());
      if (parsed && requests_.size() >= kMaxWaiting) {
        full = true;
      } else if (parsed) {
        requests_.push_back(std::move(req));
        post = waiting_;
        waiting_ = false;
      }
    }
    if (!parsed) {
      Abort(grpc::Status(grpc::StatusCode::INTERNAL,
                         "Failed to parse the watch request"));
    } else if (full || (post && !PostNext(/*only_if_paused=*/false))) {
      Abort(ToGrpc(server::ErrTooManyRequests()));
    }
  }
  // etcd's watch stream carries on after the client's half-close.
  void OnHalfClose() override {}
  void OnCancel() override { Abort(grpc::Status::CANCELLED); }
  void OnDrained() override {
    bool resume = false;
    {
      absl::MutexLock l(&state_->mu);
      if (call_->pending_bytes() > 0) return;  // another OnDrained comes
      impl_->pending_events.fetch_sub(in_flight_events_,
                                      std::memory_order_relaxed);
      in_flight_events_ = 0;
      in_flight_ = false;
      if (!state_->dead) SendLocked(state_.get());
      resume = state_->read_paused;
    }
    if (resume) PostNext(/*only_if_paused=*/true);
  }

  // Any thread; Shutdown's under the registry's lock.
  void Abort(const grpc::Status& s) override {
    {
      absl::MutexLock l(&state_->mu);
      if (state_->finished) return;
      state_->finished = true;
      state_->dead = true;
      if (figures_) figures_->Finished(s);
    }
    impl_->obs->OnHandled(kService, kMethod, "bidi_stream", s.error_code());
    call_->Finish(ToH2(s));
  }

  void SendLocked(WatchState* st) override {
    if (in_flight_) return;
    std::vector<std::string_view> parts;
    while (!st->queue.empty()) {
      st->queue.StartFront(&slices_);
      parts.clear();
      size_t bytes = 0;
      for (const grpc::Slice& s : slices_) {
        parts.emplace_back(reinterpret_cast<const char*>(s.begin()),
                           s.size());
        bytes += s.size();
      }
      if (figures_) figures_->SentWatch(slices_, bytes);
      call_->WriteParts(parts.data(), parts.size());
      in_flight_events_ += st->queue.PopFront();
      in_flight_ = true;
    }
    slices_.clear();
  }
  std::optional<pb::WatchRequest> NextRequestLocked() override {
    if (requests_.empty()) {
      waiting_ = true;
      return std::nullopt;
    }
    pb::WatchRequest r = std::move(requests_.front());
    requests_.pop_front();
    return r;
  }

 private:
  static constexpr const char* kService = "etcdserverpb.Watch";
  static constexpr const char* kMethod = "Watch";
  // Requests waiting for the engine, at most (etcd's own server reads
  // a stream's requests as they come; a paused stream here holds them).
  static constexpr size_t kMaxWaiting = 4096;

  bool PostNext(bool only_if_paused) {
    std::shared_ptr<WatchState> st = state_;
    Services::Impl* im = impl_;
    return impl_->loop->Post([st, im, only_if_paused] {
      NextWatchRequests(st, im, only_if_paused);
    });
  }

  Services::Impl* const impl_;
  const h2::CallPtr call_;
  const std::shared_ptr<WatchState> state_;
  bool started_ = false;
  // Under state_->mu:
  std::unique_ptr<CallFigures> figures_;
  std::deque<pb::WatchRequest> requests_;
  bool waiting_ = false;  // the engine waits for the next request
  bool in_flight_ = false;  // written, not yet all sent
  int64_t in_flight_events_ = 0;
  std::vector<grpc::Slice> slices_;
};

// ---- Lease ----

// One LeaseKeepAlive stream. As etcd's server, requests are handled one at
// a time in order: the next request is read once the previous answer is
// queued for writing, so a client that stops reading stops being read.
// An unknown or expired lease is answered with TTL 0 (etcd's stream does
// not fail for it); any other error ends the stream with that error.
class KeepAliveStream final
    : public grpc::ServerBidiReactor<pb::LeaseKeepAliveRequest,
                                     pb::LeaseKeepAliveResponse>,
      public OpenCall {
 public:
  explicit KeepAliveStream(Services::Impl* impl) : impl_(impl) {
    if (!impl_->Open(this)) {
      finished_ = true;
      Finish(Stopped());
      return;
    }
    if (impl_->Learner()) {
      finished_ = true;
      impl_->Close(this);
      Finish(ToGrpc(server::ErrNotSupportedForLearner()));
      return;
    }
    impl_->obs->OnStarted("etcdserverpb.Lease", "LeaseKeepAlive",
                          "bidi_stream");
    StartRead(&req_);
  }

  void OnReadDone(bool ok) override {
    // The client half-closed (or the call broke). Reads start only after
    // the previous answer was written, so nothing is owed: end with OK, as
    // etcd's stream returns at io.EOF (a one-request gateway keep-alive
    // depends on it).
    if (!ok) {
      Abort(grpc::Status::OK);
      return;
    }
    const pb::LeaseKeepAliveRequest req = req_;
    Services::Impl* im = impl_;
    // The stream object lives until OnDone, which cannot come before the
    // answer below is written or the call finished: the engine callback
    // holds a reference through pending_.
    pending_.fetch_add(1);
    const bool posted = im->loop->Post([this, im, req] {
      im->server->LeaseKeepAlive(
          req, [this, req](absl::StatusOr<pb::LeaseKeepAliveResponse> r) {
            Answer(req, std::move(r));
          });
    });
    if (!posted) {
      pending_.fetch_sub(1);
      Abort(ToGrpc(server::ErrTooManyRequests()));
    }
  }

  void OnWriteDone(bool ok) override {
    if (ok) {
      absl::MutexLock l(&mu_);
      if (!finished_) StartRead(&req_);
    }
    Unref();
  }

  void OnCancel() override { Abort(grpc::Status::CANCELLED); }

  void OnDone() override {
    impl_->Close(this);
    {
      absl::MutexLock l(&mu_);
      done_ = true;
    }
    Unref();
  }

  void Abort(const grpc::Status& s) override {
    {
      absl::MutexLock l(&mu_);
      if (finished_) return;
      finished_ = true;
    }
    impl_->obs->OnHandled("etcdserverpb.Lease", "LeaseKeepAlive",
                          "bidi_stream", s.error_code());
    Finish(s);
  }

 private:
  void Answer(const pb::LeaseKeepAliveRequest& req,
              absl::StatusOr<pb::LeaseKeepAliveResponse> r) {
    r = KeepAliveAnswer(impl_, req, std::move(r));
    if (!r.ok()) {
      Abort(ToGrpc(r.status()));
      Unref();
      return;
    }
    {
      absl::MutexLock l(&mu_);
      if (finished_) {
        Unref();
        return;
      }
      resp_ = *std::move(r);
      // The write's completion drops the reference taken for this request.
      StartWrite(&resp_);
    }
  }

  // References: one for the stream itself (dropped in OnDone), one per
  // request in flight (dropped when its answer was written or dropped).
  void Unref() {
    if (pending_.fetch_sub(1) == 1) delete this;
  }

  Services::Impl* impl_;
  absl::Mutex mu_;
  bool finished_ = false;
  bool done_ = false;
  std::atomic<int> pending_{1};
  pb::LeaseKeepAliveRequest req_;
  pb::LeaseKeepAliveResponse resp_;
};

class LeaseService final : public pb::Lease::CallbackService {
 public:
  explicit LeaseService(Services::Impl* impl) : impl_(impl) {}
  grpc::ServerUnaryReactor* LeaseGrant(grpc::CallbackServerContext* ctx,
                                       const pb::LeaseGrantRequest* req,
                                       pb::LeaseGrantResponse* resp) override {
    return impl_->Unary("etcdserverpb.Lease", "LeaseGrant", ctx, req, resp,
                        &EtcdServer::LeaseGrant);
  }
  grpc::ServerUnaryReactor* LeaseRevoke(
      grpc::CallbackServerContext* ctx, const pb::LeaseRevokeRequest* req,
      pb::LeaseRevokeResponse* resp) override {
    return impl_->Unary("etcdserverpb.Lease", "LeaseRevoke", ctx, req, resp,
                        &EtcdServer::LeaseRevoke);
  }
  grpc::ServerUnaryReactor* LeaseTimeToLive(
      grpc::CallbackServerContext* ctx, const pb::LeaseTimeToLiveRequest* req,
      pb::LeaseTimeToLiveResponse* resp) override {
    return impl_->Unary("etcdserverpb.Lease", "LeaseTimeToLive", ctx, req,
                        resp, &EtcdServer::LeaseTimeToLive);
  }
  grpc::ServerUnaryReactor* LeaseLeases(
      grpc::CallbackServerContext* ctx, const pb::LeaseLeasesRequest* req,
      pb::LeaseLeasesResponse* resp) override {
    return impl_->Unary("etcdserverpb.Lease", "LeaseLeases", ctx, req, resp,
                        &EtcdServer::LeaseLeases);
  }
  grpc::ServerBidiReactor<pb::LeaseKeepAliveRequest,
                          pb::LeaseKeepAliveResponse>*
  LeaseKeepAlive(grpc::CallbackServerContext* ctx) override {
    return new KeepAliveStream(impl_);
  }

 private:
  Services::Impl* impl_;
};

// Watch as a raw method: the stream writes its own encoded responses.
class WatchService final
    : public pb::Watch::WithRawCallbackMethod_Watch<pb::Watch::Service> {
 public:
  explicit WatchService(Services::Impl* impl) : impl_(impl) {}
  grpc::ServerBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer>* Watch(
      grpc::CallbackServerContext* ctx) override {
    return new WatchStream(impl_, impl_->CallerOf(ctx));
  }

 private:
  Services::Impl* impl_;
};

// ---- Cluster ----

grpc::ServerUnaryReactor* Unimplemented(grpc::CallbackServerContext* ctx,
                                        const char* what) {
  grpc::ServerUnaryReactor* r = ctx->DefaultReactor();
  r->Finish(grpc::Status(grpc::StatusCode::UNIMPLEMENTED,
                         std::string("detcd does not serve ") + what +
                             " yet"));
  return r;
}

class ClusterService final : public pb::Cluster::CallbackService {
 public:
  explicit ClusterService(Services::Impl* impl) : impl_(impl) {}
  grpc::ServerUnaryReactor* MemberList(grpc::CallbackServerContext* ctx,
                                       const pb::MemberListRequest* req,
                                       pb::MemberListResponse* resp) override {
    return impl_->Unary("etcdserverpb.Cluster", "MemberList", ctx, req, resp,
                        &EtcdServer::MemberList);
  }
  grpc::ServerUnaryReactor* MemberAdd(grpc::CallbackServerContext* ctx,
                                 const pb::MemberAddRequest* req,
                                 pb::MemberAddResponse* resp) override {
    return impl_->Unary("etcdserverpb.Cluster", "MemberAdd", ctx, req, resp,
                        &EtcdServer::MemberAdd);
  }
  grpc::ServerUnaryReactor* MemberRemove(grpc::CallbackServerContext* ctx,
                                 const pb::MemberRemoveRequest* req,
                                 pb::MemberRemoveResponse* resp) override {
    return impl_->Unary("etcdserverpb.Cluster", "MemberRemove", ctx, req, resp,
                        &EtcdServer::MemberRemove);
  }
  grpc::ServerUnaryReactor* MemberUpdate(grpc::CallbackServerContext* ctx,
                                 const pb::MemberUpdateRequest* req,
                                 pb::MemberUpdateResponse* resp) override {
    return impl_->Unary("etcdserverpb.Cluster", "MemberUpdate", ctx, req, resp,
                        &EtcdServer::MemberUpdate);
  }
  grpc::ServerUnaryReactor* MemberPromote(grpc::CallbackServerContext* ctx,
                                 const pb::MemberPromoteRequest* req,
                                 pb::MemberPromoteResponse* resp) override {
    return impl_->Unary("etcdserverpb.Cluster", "MemberPromote", ctx, req, resp,
                        &EtcdServer::MemberPromote);
  }

 private:
  Services::Impl* impl_;
};

// ---- Maintenance ----

// The Snapshot stream: the engine's consistent full-state image, sent as
// etcd's backend database (a bbolt file, shim/etcd_backend.h) followed by
// its SHA-256, as etcd sends its own db: etcdctl's snapshot save, status
// and restore take it as they take etcd's.
class SnapshotStream final
    : public grpc::ServerWriteReactor<pb::SnapshotResponse>,
      public OpenCall {
 public:
  SnapshotStream(Services::Impl* impl, server::Caller caller) : impl_(impl) {
    if (!impl_->Open(this)) {
      finished_ = true;
      Finish(Stopped());
      return;
    }
    if (impl_->Learner()) {
      finished_ = true;
      impl_->Close(this);
      Finish(ToGrpc(server::ErrNotSupportedForLearner()));
      return;
    }
    impl_->obs->OnStarted("etcdserverpb.Maintenance", "Snapshot",
                          "server_stream");
    Services::Impl* im = impl_;
    outstanding_ = 1;  // the engine's image, then the layout
    if (!im->loop->Post([this, im, who = std::move(caller)] {
          EtcdServer::CallerScope scope(im->server, &who);
          im->server->SnapshotImage(
              [this](absl::StatusOr<std::string> image) {
                Begin(std::move(image));
              });
        })) {
      Abort(ToGrpc(server::ErrTooManyRequests()));
      Release();
    }
  }

  void OnWriteDone(bool ok) override {
    if (!ok) return;  // cancelled: OnCancel / OnDone follow
    WriteNext();
  }
  void OnCancel() override { Abort(grpc::Status::CANCELLED); }
  void OnDone() override {
    impl_->Close(this);
    bool del;
    {
      absl::MutexLock l(&mu_);
      done_ = true;
      del = outstanding_ == 0;
    }
    if (del) delete this;
  }
  void Abort(const grpc::Status& s) override {
    {
      absl::MutexLock l(&mu_);
      if (finished_) return;
      finished_ = true;
    }
    impl_->obs->OnHandled("etcdserverpb.Maintenance", "Snapshot",
                          "server_stream", s.error_code());
    Finish(s);
  }

 private:
  // The image or the layout came (or will not): deletes the stream if
  // gRPC is done with it and nothing else is on the way.
  void Release() {
    bool del;
    {
      absl::MutexLock l(&mu_);
      --outstanding_;
      del = done_ && outstanding_ == 0;
    }
    if (del) delete this;
  }
  bool Gone() {
    absl::MutexLock l(&mu_);
    return done_ || finished_;
  }

  // On the engine thread: nothing here reads the image's bytes.
  void Begin(absl::StatusOr<std::string> image) {
    if (Gone()) return Release();
    if (!image.ok()) {
      Abort(ToGrpc(image.status()));
      return Release();
    }
    data_ = *std::move(image);
    // The layout reads the whole image once (a second or so for 1M keys):
    // the encoder thread does it.
    auto task = [this] { Prepare(); };
    if (!impl_->encoder.Post(task)) task();  // stopping: here, then
  }

  void Prepare() {
    if (Gone()) return Release();
    absl::StatusOr<BoltWriter> w = EtcdBackendFile(data_);
    if (!w.ok()) {
      Abort(grpc::Status(grpc::StatusCode::INTERNAL,
                         std::string(w.status().message())));
      return Release();
    }
    writer_.emplace(*std::move(w));
    file_bytes_ = writer_->size();
    total_ = file_bytes_ + SHA256_DIGEST_LENGTH;
    sha_.reset(EVP_MD_CTX_new());
    if (sha_ == nullptr ||
        EVP_DigestInit_ex(sha_.get(), EVP_sha256(), nullptr) != 1) {
      Abort(grpc::Status(grpc::StatusCode::INTERNAL, "sha256 init failed"));
      return Release();
    }
    WriteNext();
    Release();
  }

  void WriteNext() {
    absl::ReleasableMutexLock l(&mu_);
    if (finished_) return;
    if (sent_ >= total_) {
      finished_ = true;
      l.Release();
      impl_->obs->OnHandled("etcdserverpb.Maintenance", "Snapshot",
                            "server_stream", 0);
      Finish(grpc::Status::OK);
      return;
    }
    resp_.Clear();
    impl_->FillHeader(resp_.mutable_header(), 0);
    const size_t chunk = std::max<size_t>(impl_->opts.snapshot_chunk_bytes, 1);
    if (sent_ < file_bytes_) {
      if (pos_ == buf_.size()) {
        buf_.clear();
        pos_ = 0;
        absl::StatusOr<bool> out = writer_->Next(chunk, &buf_);
        if (!out.ok() || buf_.empty()) {
          l.Release();
          Abort(grpc::Status(grpc::StatusCode::INTERNAL,
                             out.ok() ? "snapshot file ended early"
                                      : std::string(out.status().message())));
          return;
        }
      }
      const size_t n = std::min(chunk, buf_.size() - pos_);
      resp_.set_blob(buf_.data() + pos_, n);
      EVP_DigestUpdate(sha_.get(), buf_.data() + pos_, n);
      pos_ += n;
      sent_ += n;
    } else {
      unsigned char digest[SHA256_DIGEST_LENGTH];
      unsigned int len = 0;
      EVP_DigestFinal_ex(sha_.get(), digest, &len);
      resp_.set_blob(reinterpret_cast<const char*>(digest), sizeof digest);
      sent_ = total_;
      writer_.reset();
      std::string().swap(buf_);
      std::string().swap(data_);
    }
    resp_.set_remaining_bytes(total_ - sent_);
    StartWrite(&resp_);
  }

  struct FreeMd {
    void operator()(EVP_MD_CTX* c) const { EVP_MD_CTX_free(c); }
  };

  Services::Impl* impl_;
  absl::Mutex mu_;
  bool finished_ = false;
  bool done_ = false;
  int outstanding_ = 0;  // the image or its layout still to come
  std::string data_;     // the image (the writer reads it)
  std::optional<BoltWriter> writer_;
  std::string buf_;  // the writer's pages not yet sent
  size_t pos_ = 0;   // how far into buf_ they went
  uint64_t file_bytes_ = 0;
  uint64_t total_ = 0;  // the file and the digest
  uint64_t sent_ = 0;
  std::unique_ptr<EVP_MD_CTX, FreeMd> sha_;
  pb::SnapshotResponse resp_;
};

class MaintenanceService final : public pb::Maintenance::CallbackService {
 public:
  explicit MaintenanceService(Services::Impl* impl) : impl_(impl) {}
  grpc::ServerUnaryReactor* Alarm(grpc::CallbackServerContext* ctx,
                                  const pb::AlarmRequest* req,
                                  pb::AlarmResponse* resp) override {
    return impl_->Unary("etcdserverpb.Maintenance", "Alarm", ctx, req, resp,
                        &EtcdServer::Alarm);
  }
  grpc::ServerUnaryReactor* Status(grpc::CallbackServerContext* ctx,
                                   const pb::StatusRequest* req,
                                   pb::StatusResponse* resp) override {
    return impl_->Unary("etcdserverpb.Maintenance", "Status", ctx, req, resp,
                        &EtcdServer::Status);
  }
  grpc::ServerUnaryReactor* Defragment(grpc::CallbackServerContext* ctx,
                                       const pb::DefragmentRequest* req,
                                       pb::DefragmentResponse* resp) override {
    return impl_->Unary("etcdserverpb.Maintenance", "Defragment", ctx, req,
                        resp, &EtcdServer::Defragment);
  }
  grpc::ServerUnaryReactor* Hash(grpc::CallbackServerContext* ctx,
                                 const pb::HashRequest* req,
                                 pb::HashResponse* resp) override {
    return impl_->Unary("etcdserverpb.Maintenance", "Hash", ctx, req, resp,
                        &EtcdServer::Hash);
  }
  grpc::ServerUnaryReactor* HashKV(grpc::CallbackServerContext* ctx,
                                   const pb::HashKVRequest* req,
                                   pb::HashKVResponse* resp) override {
    return impl_->Unary("etcdserverpb.Maintenance", "HashKV", ctx, req, resp,
                        &EtcdServer::HashKV);
  }
  grpc::ServerUnaryReactor* MoveLeader(grpc::CallbackServerContext* ctx,
                                       const pb::MoveLeaderRequest* req,
                                       pb::MoveLeaderResponse* resp) override {
    return impl_->Unary("etcdserverpb.Maintenance", "MoveLeader", ctx, req,
                        resp, &EtcdServer::MoveLeader);
  }
  grpc::ServerUnaryReactor* Downgrade(grpc::CallbackServerContext* ctx,
                                      const pb::DowngradeRequest*,
                                      pb::DowngradeResponse*) override {
    return Unimplemented(ctx, "Downgrade (etcd 3.5 cluster downgrades)");
  }
  grpc::ServerWriteReactor<pb::SnapshotResponse>* Snapshot(
      grpc::CallbackServerContext* ctx, const pb::SnapshotRequest*) override {
    return new SnapshotStream(impl_, impl_->CallerOf(ctx));
  }

 private:
  Services::Impl* impl_;
};

// ---- Auth ----

// etcd's Auth service: every call goes to the engine (EtcdServer's Auth
// methods), which checks, proposes and answers.
class AuthService final : public pb::Auth::CallbackService {
 public:
  explicit AuthService(Services::Impl* impl) : impl_(impl) {}
  grpc::ServerUnaryReactor* AuthEnable(grpc::CallbackServerContext* ctx,
                                 const pb::AuthEnableRequest* req,
                                 pb::AuthEnableResponse* resp) override {
    return impl_->Unary("etcdserverpb.Auth", "AuthEnable", ctx, req, resp,
                        &EtcdServer::AuthEnable);
  }
  grpc::ServerUnaryReactor* AuthDisable(grpc::CallbackServerContext* ctx,
                                 const pb::AuthDisableRequest* req,
                                 pb::AuthDisableResponse* resp) override {
    return impl_->Unary("etcdserverpb.Auth", "AuthDisable", ctx, req, resp,
                        &EtcdServer::AuthDisable);
  }
  grpc::ServerUnaryReactor* AuthStatus(grpc::CallbackServerContext* ctx,
                                 const pb::AuthStatusRequest* req,
                                 pb::AuthStatusResponse* resp) override {
    return impl_->Unary("etcdserverpb.Auth", "AuthStatus", ctx, req, resp,
                        &EtcdServer::AuthStatus);
  }
  grpc::ServerUnaryReactor* Authenticate(grpc::CallbackServerContext* ctx,
                                 const pb::AuthenticateRequest* req,
                                 pb::AuthenticateResponse* resp) override {
    return impl_->Unary("etcdserverpb.Auth", "Authenticate", ctx, req, resp,
                        &EtcdServer::Authenticate);
  }
  grpc::ServerUnaryReactor* UserAdd(grpc::CallbackServerContext* ctx,
                                 const pb::AuthUserAddRequest* req,
                                 pb::AuthUserAddResponse* resp) override {
    return impl_->Unary("etcdserverpb.Auth", "UserAdd", ctx, req, resp,
                        &EtcdServer::UserAdd);
  }
  grpc::ServerUnaryReactor* UserGet(grpc::CallbackServerContext* ctx,
                                 const pb::AuthUserGetRequest* req,
                                 pb::AuthUserGetResponse* resp) override {
    return impl_->Unary("etcdserverpb.Auth", "UserGet", ctx, req, resp,
                        &EtcdServer::UserGet);
  }
  grpc::ServerUnaryReactor* UserList(grpc::CallbackServerContext* ctx,
                                 const pb::AuthUserListRequest* req,
                                 pb::AuthUserListResponse* resp) override {
    return impl_->Unary("etcdserverpb.Auth", "UserList", ctx, req, resp,
                        &EtcdServer::UserList);
  }
  grpc::ServerUnaryReactor* UserDelete(grpc::CallbackServerContext* ctx,
                                 const pb::AuthUserDeleteRequest* req,
                                 pb::AuthUserDeleteResponse* resp) override {
    return impl_->Unary("etcdserverpb.Auth", "UserDelete", ctx, req, resp,
                        &EtcdServer::UserDelete);
  }
  grpc::ServerUnaryReactor* UserChangePassword(grpc::CallbackServerContext* ctx,
                                 const pb::AuthUserChangePasswordRequest* req,
                                 pb::AuthUserChangePasswordResponse* resp) override {
    return impl_->Unary("etcdserverpb.Auth", "UserChangePassword", ctx, req, resp,
                        &EtcdServer::UserChangePassword);
  }
  grpc::ServerUnaryReactor* UserGrantRole(grpc::CallbackServerContext* ctx,
                                 const pb::AuthUserGrantRoleRequest* req,
                                 pb::AuthUserGrantRoleResponse* resp) override {
    return impl_->Unary("etcdserverpb.Auth", "UserGrantRole", ctx, req, resp,
                        &EtcdServer::UserGrantRole);
  }
  grpc::ServerUnaryReactor* UserRevokeRole(grpc::CallbackServerContext* ctx,
                                 const pb::AuthUserRevokeRoleRequest* req,
                                 pb::AuthUserRevokeRoleResponse* resp) override {
    return impl_->Unary("etcdserverpb.Auth", "UserRevokeRole", ctx, req, resp,
                        &EtcdServer::UserRevokeRole);
  }
  grpc::ServerUnaryReactor* RoleAdd(grpc::CallbackServerContext* ctx,
                                 const pb::AuthRoleAddRequest* req,
                                 pb::AuthRoleAddResponse* resp) override {
    return impl_->Unary("etcdserverpb.Auth", "RoleAdd", ctx, req, resp,
                        &EtcdServer::RoleAdd);
  }
  grpc::ServerUnaryReactor* RoleGet(grpc::CallbackServerContext* ctx,
                                 const pb::AuthRoleGetRequest* req,
                                 pb::AuthRoleGetResponse* resp) override {
    return impl_->Unary("etcdserverpb.Auth", "RoleGet", ctx, req, resp,
                        &EtcdServer::RoleGet);
  }
  grpc::ServerUnaryReactor* RoleList(grpc::CallbackServerContext* ctx,
                                 const pb::AuthRoleListRequest* req,
                                 pb::AuthRoleListResponse* resp) override {
    return impl_->Unary("etcdserverpb.Auth", "RoleList", ctx, req, resp,
                        &EtcdServer::RoleList);
  }
  grpc::ServerUnaryReactor* RoleDelete(grpc::CallbackServerContext* ctx,
                                 const pb::AuthRoleDeleteRequest* req,
                                 pb::AuthRoleDeleteResponse* resp) override {
    return impl_->Unary("etcdserverpb.Auth", "RoleDelete", ctx, req, resp,
                        &EtcdServer::RoleDelete);
  }
  grpc::ServerUnaryReactor* RoleGrantPermission(grpc::CallbackServerContext* ctx,
                                 const pb::AuthRoleGrantPermissionRequest* req,
                                 pb::AuthRoleGrantPermissionResponse* resp) override {
    return impl_->Unary("etcdserverpb.Auth", "RoleGrantPermission", ctx, req, resp,
                        &EtcdServer::RoleGrantPermission);
  }
  grpc::ServerUnaryReactor* RoleRevokePermission(grpc::CallbackServerContext* ctx,
                                 const pb::AuthRoleRevokePermissionRequest* req,
                                 pb::AuthRoleRevokePermissionResponse* resp) override {
    return impl_->Unary("etcdserverpb.Auth", "RoleRevokePermission", ctx, req, resp,
                        &EtcdServer::RoleRevokePermission);
  }

 private:
  Services::Impl* impl_;
};

}  // namespace

struct Services::All {
  explicit All(Services::Impl* impl)
      : kv(impl),
        watch(impl),
        lease(impl),
        cluster(impl),
        maintenance(impl),
        auth(impl) {}
  KvService kv;
  WatchService watch;
  LeaseService lease;
  ClusterService cluster;
  MaintenanceService maintenance;
  AuthService auth;
};

Services::Services(EngineLoop* loop, server::EtcdServer* server, Options o,
                   CallObserver* observer)
    : impl_(std::make_unique<Impl>(loop, server, o, observer)),
      all_(std::make_unique<All>(impl_.get())) {
  impl_->encoder.Start();
}

Services::~Services() = default;

int64_t Services::pending_watch_events() const {
  return impl_->pending_events.load(std::memory_order_relaxed);
}

int64_t Services::unary_calls_open() const {
  return impl_->unary_open.load(std::memory_order_relaxed);
}

void Services::RegisterNative(h2::Server* s) {
  // Every unary method the gRPC C++ services answer through
  // Impl::Unary, Watch and LeaseKeepAlive; the other streams are
  // relayed.
  Impl* im = impl_.get();
  auto add = [&](const char* service, const char* method, auto fn) {
    RegisterNativeUnary(s, im, service, method, fn);
  };
  add("etcdserverpb.KV", "Range", &EtcdServer::Range);
  add("etcdserverpb.KV", "Put", &EtcdServer::Put);
  add("etcdserverpb.KV", "DeleteRange", &EtcdServer::DeleteRange);
  add("etcdserverpb.KV", "Txn", &EtcdServer::Txn);
  add("etcdserverpb.KV", "Compact", &EtcdServer::Compact);
  add("etcdserverpb.Lease", "LeaseGrant", &EtcdServer::LeaseGrant);
  add("etcdserverpb.Lease", "LeaseRevoke", &EtcdServer::LeaseRevoke);
  add("etcdserverpb.Lease", "LeaseTimeToLive", &EtcdServer::LeaseTimeToLive);
  add("etcdserverpb.Lease", "LeaseLeases", &EtcdServer::LeaseLeases);
  s->Register("/etcdserverpb.Watch/Watch",
              [im](h2::CallPtr c) -> std::unique_ptr<h2::Handler> {
                auto w = std::make_unique<NativeWatch>(im, std::move(c));
                if (!w->Start()) return std::make_unique<RefusedHandler>();
                return w;
              });
  s->Register("/etcdserverpb.Lease/LeaseKeepAlive",
              [im](h2::CallPtr c) -> std::unique_ptr<h2::Handler> {
                auto ka = std::make_shared<NativeKeepAlive>(im, std::move(c));
                if (!ka->Start()) return std::make_unique<RefusedHandler>();
                return std::make_unique<NativeKeepAliveHandler>(
                    std::move(ka));
              });
  add("etcdserverpb.Cluster", "MemberList", &EtcdServer::MemberList);
  add("etcdserverpb.Cluster", "MemberAdd", &EtcdServer::MemberAdd);
  add("etcdserverpb.Cluster", "MemberRemove", &EtcdServer::MemberRemove);
  add("etcdserverpb.Cluster", "MemberUpdate", &EtcdServer::MemberUpdate);
  add("etcdserverpb.Cluster", "MemberPromote", &EtcdServer::MemberPromote);
  add("etcdserverpb.Maintenance", "Alarm", &EtcdServer::Alarm);
  add("etcdserverpb.Maintenance", "Status", &EtcdServer::Status);
  add("etcdserverpb.Maintenance", "Defragment", &EtcdServer::Defragment);
  add("etcdserverpb.Maintenance", "Hash", &EtcdServer::Hash);
  add("etcdserverpb.Maintenance", "HashKV", &EtcdServer::HashKV);
  add("etcdserverpb.Maintenance", "MoveLeader", &EtcdServer::MoveLeader);
  add("etcdserverpb.Auth", "AuthEnable", &EtcdServer::AuthEnable);
  add("etcdserverpb.Auth", "AuthDisable", &EtcdServer::AuthDisable);
  add("etcdserverpb.Auth", "AuthStatus", &EtcdServer::AuthStatus);
  add("etcdserverpb.Auth", "Authenticate", &EtcdServer::Authenticate);
  add("etcdserverpb.Auth", "UserAdd", &EtcdServer::UserAdd);
  add("etcdserverpb.Auth", "UserGet", &EtcdServer::UserGet);
  add("etcdserverpb.Auth", "UserList", &EtcdServer::UserList);
  add("etcdserverpb.Auth", "UserDelete", &EtcdServer::UserDelete);
  add("etcdserverpb.Auth", "UserChangePassword",
      &EtcdServer::UserChangePassword);
  add("etcdserverpb.Auth", "UserGrantRole", &EtcdServer::UserGrantRole);
  add("etcdserverpb.Auth", "UserRevokeRole", &EtcdServer::UserRevokeRole);
  add("etcdserverpb.Auth", "RoleAdd", &EtcdServer::RoleAdd);
  add("etcdserverpb.Auth", "RoleGet", &EtcdServer::RoleGet);
  add("etcdserverpb.Auth", "RoleList", &EtcdServer::RoleList);
  add("etcdserverpb.Auth", "RoleDelete", &EtcdServer::RoleDelete);
  add("etcdserverpb.Auth", "RoleGrantPermission",
      &EtcdServer::RoleGrantPermission);
  add("etcdserverpb.Auth", "RoleRevokePermission",
      &EtcdServer::RoleRevokePermission);
}

std::vector<grpc::Service*> Services::services() {
  return {&all_->kv, &all_->watch, &all_->lease, &all_->cluster,
          &all_->maintenance, &all_->auth};
}

void Services::Shutdown() {
  // Under the lock: a call leaves the set (Close) before it can be deleted,
  // so every call still in the set is alive while it is aborted.
  {
    absl::MutexLock l(&impl_->mu);
    impl_->stopped = true;
    while (OpenCall* c = impl_->open) {
      impl_->Unlink(c);
      c->Abort(Stopped());
    }
  }
  // The answers being encoded go out before the transport stops.
  impl_->encoder.Stop();
}

}  // namespace detcd::shim
