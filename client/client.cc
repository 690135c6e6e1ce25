#include "absl/strings/string_view.h"
#include "detcd/client.h"

#include <grpcpp/grpcpp.h>
#include <grpcpp/security/tls_certificate_provider.h>
#include <grpcpp/security/tls_certificate_verifier.h>
#include <grpcpp/security/tls_credentials_options.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "detcd/errors.h"
#include "etcdserverpb/rpc.grpc.pb.h"
#include "v3electionpb/v3election.grpc.pb.h"
#include "v3lockpb/v3lock.grpc.pb.h"

namespace detcd::client {

// One endpoint: its channel and a stub per service.
struct Conn {
  std::string endpoint;  // as configured
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<etcdserverpb::KV::Stub> kv;
  std::unique_ptr<etcdserverpb::Watch::Stub> watch;
  std::unique_ptr<etcdserverpb::Lease::Stub> lease;
  std::unique_ptr<etcdserverpb::Cluster::Stub> cluster;
  std::unique_ptr<etcdserverpb::Maintenance::Stub> maintenance;
  std::unique_ptr<etcdserverpb::Auth::Stub> auth;
  std::unique_ptr<v3lockpb::Lock::Stub> lock;
  std::unique_ptr<v3electionpb::Election::Stub> election;
  // An in-process channel: no connectivity state to wait for.
  bool always_ready = false;

  bool Ready() const {
    return always_ready || channel->GetState(true) == GRPC_CHANNEL_READY;
  }
};

namespace {

// gRPC Go refuses client keepalive pings more often than this (and so do
// etcd servers, which allow one per 5 s by default).
constexpr absl::Duration kMinKeepaliveTime = absl::Seconds(10);
// clientv3's pause between retries of a repeatable call.
constexpr absl::Duration kRetryBackoff = absl::Milliseconds(25);
// How long one wait for a channel state change lasts before the next
// endpoint is looked at.
constexpr absl::Duration kConnectPoll = absl::Milliseconds(20);
// Retries of one unary call on Unavailable (clientv3's
// defaultUnaryMaxRetries): a call without a deadline against a cluster
// that stays unavailable ends with the last error instead of spinning.
constexpr int kMaxUnaryRetries = 100;
// Token refreshes per call (a token may expire again while refreshing).
constexpr int kMaxTokenRefreshes = 3;

struct ParsedEndpoint {
  std::string scheme;  // "", "http" or "https"
  std::string host_port;
};

ParsedEndpoint ParseEndpoint(absl::string_view ep) {
  ParsedEndpoint p;
  for (absl::string_view scheme : {"http", "https", "unix", "unixs"}) {
    std::string prefix = absl::StrCat(scheme, "://");
    if (absl::StartsWith(ep, prefix)) {
      p.scheme = std::string(scheme);
      ep.remove_prefix(prefix.size());
      break;
    }
  }
  if (p.scheme == "http" || p.scheme == "https") {
    size_t slash = ep.find('/');
    if (slash != absl::string_view::npos) ep = ep.substr(0, slash);
  }
  p.host_port = std::string(ep);
  return p;
}

// Go's os error text for a failed open ("open f: no such file or
// directory").
absl::Status ReadFile(const std::string& path, std::string* out) {
  std::ifstream f(path, std::ios::binary);
  if (!f) {
    std::string err = std::strerror(errno);
    if (!err.empty()) err[0] = absl::ascii_tolower(err[0]);
    return absl::InvalidArgumentError(absl::StrCat("open ", path, ": ", err));
  }
  std::ostringstream ss;
  ss << f.rdbuf();
  *out = ss.str();
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> TlsCreds(
    const TlsConfig& tls) {
  namespace gx = grpc::experimental;
  std::string root, cert, key;
  if (!tls.ca_file.empty()) {
    if (auto s = ReadFile(tls.ca_file, &root); !s.ok()) return s;
  }
  if (!tls.cert_file.empty()) {
    if (auto s = ReadFile(tls.cert_file, &cert); !s.ok()) return s;
  }
  if (!tls.key_file.empty()) {
    if (auto s = ReadFile(tls.key_file, &key); !s.ok()) return s;
  }
  gx::TlsChannelCredentialsOptions opts;
  std::vector<gx::IdentityKeyCertPair> pairs;
  if (!cert.empty() && !key.empty()) pairs.push_back({key, cert});
  if (!root.empty() || !pairs.empty()) {
    opts.set_certificate_provider(
        std::make_shared<gx::StaticDataCertificateProvider>(root, pairs));
    if (!root.empty()) opts.watch_root_certs();
    if (!pairs.empty()) opts.watch_identity_key_cert_pairs();
  }
  if (tls.insecure_skip_verify) {
    opts.set_verify_server_certs(false);
    opts.set_check_call_host(false);
    opts.set_certificate_verifier(
        std::make_shared<gx::NoOpCertificateVerifier>());
  }
  return gx::TlsCredentials(opts);
}

std::unique_ptr<Conn> NewConn(const std::string& endpoint,
                              std::shared_ptr<grpc::Channel> channel);

absl::StatusOr<std::unique_ptr<Conn>> Dial(const Config& cfg,
                                           const std::string& endpoint) {
  ParsedEndpoint p = ParseEndpoint(endpoint);
  std::shared_ptr<grpc::ChannelCredentials> creds;
  bool use_tls = p.scheme == "https" || p.scheme == "unixs" ||
                 (p.scheme.empty() && cfg.tls.has_value());
  if (use_tls) {
    auto c = TlsCreds(cfg.tls.value_or(TlsConfig{}));
    if (!c.ok()) return c.status();
    creds = *c;
  } else {
    creds = grpc::InsecureChannelCredentials();
  }
  grpc::ChannelArguments args;
  args.SetMaxSendMessageSize(cfg.max_send_bytes);
  args.SetMaxReceiveMessageSize(cfg.max_recv_bytes);
  absl::Duration ka = std::max(cfg.keepalive_time, kMinKeepaliveTime);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS,
              static_cast<int>(absl::ToInt64Milliseconds(ka)));
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS,
              static_cast<int>(
                  absl::ToInt64Milliseconds(cfg.keepalive_timeout)));
  args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 0);
  // Reconnect quickly: a caller waiting for a member that restarts should
  // not sit out gRPC's default 1 s .. 120 s backoff.
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
  // Each Client has its own channels (no sharing of subchannels between
  // clients, so closing one never disturbs another).
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  if (use_tls && cfg.tls.has_value() && !cfg.tls->server_name.empty()) {
    args.SetSslTargetNameOverride(cfg.tls->server_name);
  }
  std::string target = p.host_port;
  if (p.scheme == "unix" || p.scheme == "unixs") {
    target = absl::StrCat("unix:", p.host_port);
  }
  return NewConn(endpoint, grpc::CreateCustomChannel(target, creds, args));
}

std::unique_ptr<Conn> NewConn(const std::string& endpoint,
                              std::shared_ptr<grpc::Channel> channel) {
  auto conn = std::make_unique<Conn>();
  conn->endpoint = endpoint;
  conn->channel = std::move(channel);
  conn->kv = etcdserverpb::KV::NewStub(conn->channel);
  conn->watch = etcdserverpb::Watch::NewStub(conn->channel);
  conn->lease = etcdserverpb::Lease::NewStub(conn->channel);
  conn->cluster = etcdserverpb::Cluster::NewStub(conn->channel);
  conn->maintenance = etcdserverpb::Maintenance::NewStub(conn->channel);
  conn->auth = etcdserverpb::Auth::NewStub(conn->channel);
  conn->lock = v3lockpb::Lock::NewStub(conn->channel);
  conn->election = v3electionpb::Election::NewStub(conn->channel);
  return conn;
}

// A gRPC status as ours; deadlines and cancellations the client caused
// read as Go's context errors.
absl::Status FromGrpc(const grpc::Status& st, absl::Time deadline,
                      bool cancelled) {
  if (st.ok()) return absl::OkStatus();
  if (st.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED &&
      absl::Now() >= deadline) {
    return absl::DeadlineExceededError(kContextDeadlineExceeded);
  }
  if (st.error_code() == grpc::StatusCode::CANCELLED && cancelled) {
    return absl::CancelledError(kContextCanceled);
  }
  return absl::Status(static_cast<absl::StatusCode>(st.error_code()),
                      st.error_message());
}

// Unavailable errors gRPC raises before a request is written to any
// connection (nothing reached a server, so even a write may be retried).
bool NeverSent(const absl::Status& s) {
  if (s.code() != absl::StatusCode::kUnavailable) return false;
  absl::string_view m = s.message();
  return absl::StrContains(m, "failed to connect to all addresses") ||
         absl::StrContains(m, "Failed to pick subchannel") ||
         absl::StrContains(m, "there is no address available") ||
         absl::StrContains(m, "there is no connection available");
}

bool NeedsToken(const absl::Status& s) {
  return s.message() == kErrInvalidAuthToken ||
         s.message() == kErrAuthOldRevision || s.message() == kErrUserEmpty;
}

void SleepUntilOr(absl::Duration d, absl::Time deadline) {
  absl::Time until = std::min(absl::Now() + d, deadline);
  absl::Duration left = until - absl::Now();
  if (left > absl::ZeroDuration()) absl::SleepFor(left);
}

template <typename Req, typename Resp>
class GrpcBidi final : public BidiStream<Req, Resp> {
 public:
  GrpcBidi(std::unique_ptr<grpc::ClientContext> ctx, std::string endpoint,
           absl::Time deadline, Canceller* canceller,
           std::function<std::unique_ptr<grpc::ClientReaderWriter<Req, Resp>>(
               grpc::ClientContext*)>
               open)
      : BidiStream<Req, Resp>(std::move(ctx), std::move(endpoint), deadline,
                              canceller),
        rw_(open(this->ctx_.get())) {}
  ~GrpcBidi() override {
    // gRPC requires Finish before the stream object goes away.
    this->Cancel();
    this->Finish().IgnoreError();
  }
  bool Send(const Req& r) override {
    absl::MutexLock l(&write_mu_);
    return !closed_ && rw_->Write(r);
  }
  void CloseSend() override {
    absl::MutexLock l(&write_mu_);
    if (!closed_) rw_->WritesDone();
    closed_ = true;
  }
  bool Read(Resp* r) override { return rw_->Read(r); }

 protected:
  absl::Status FinishCall() override {
    grpc::Status st = rw_->Finish();
    return absl::Status(static_cast<absl::StatusCode>(st.error_code()),
                        st.error_message());
  }

 private:
  std::unique_ptr<grpc::ClientReaderWriter<Req, Resp>> rw_;
  absl::Mutex write_mu_;
  bool closed_ = false;
};

template <typename Resp>
class GrpcReader final : public ReadStream<Resp> {
 public:
  GrpcReader(std::unique_ptr<grpc::ClientContext> ctx, std::string endpoint,
             absl::Time deadline, Canceller* canceller,
             std::function<std::unique_ptr<grpc::ClientReader<Resp>>(
                 grpc::ClientContext*)>
                 open)
      : ReadStream<Resp>(std::move(ctx), std::move(endpoint), deadline,
                         canceller),
        r_(open(this->ctx_.get())) {}
  ~GrpcReader() override {
    this->Cancel();
    this->Finish().IgnoreError();
  }
  bool Read(Resp* r) override { return r_->Read(r); }

 protected:
  absl::Status FinishCall() override {
    grpc::Status st = r_->Finish();
    return absl::Status(static_cast<absl::StatusCode>(st.error_code()),
                        st.error_message());
  }

 private:
  std::unique_ptr<grpc::ClientReader<Resp>> r_;
};

}  // namespace

// ---------------------------------------------------------------- Canceller

void Canceller::Cancel() {
  absl::MutexLock l(&mu_);
  cancelled_.store(true);
  for (grpc::ClientContext* c : contexts_) c->TryCancel();
}

bool Canceller::WaitForCancel(absl::Duration d) {
  absl::Time until = absl::Now() + d;
  // The parent's cancellation does not signal our mutex: poll for it.
  while (!cancelled()) {
    absl::Duration left = until - absl::Now();
    if (left <= absl::ZeroDuration()) return false;
    absl::MutexLock l(&mu_);
    auto own = [this] { return cancelled_.load(); };
    mu_.AwaitWithTimeout(absl::Condition(&own),
                         std::min(left, absl::Milliseconds(50)));
  }
  return true;
}

void Canceller::Attach(grpc::ClientContext* ctx) {
  if (parent_ != nullptr) parent_->Attach(ctx);
  absl::MutexLock l(&mu_);
  contexts_.push_back(ctx);
  if (cancelled_.load()) ctx->TryCancel();
}

void Canceller::Detach(grpc::ClientContext* ctx) {
  if (parent_ != nullptr) parent_->Detach(ctx);
  absl::MutexLock l(&mu_);
  contexts_.erase(std::remove(contexts_.begin(), contexts_.end(), ctx),
                  contexts_.end());
}

// ---------------------------------------------------------------- streams

StreamBase::StreamBase(std::unique_ptr<grpc::ClientContext> ctx,
                       std::string endpoint, absl::Time deadline,
                       Canceller* canceller)
    : ctx_(std::move(ctx)),
      endpoint_(std::move(endpoint)),
      deadline_(deadline),
      canceller_(canceller) {
  if (canceller_ != nullptr) canceller_->Attach(ctx_.get());
}

StreamBase::~StreamBase() {
  if (canceller_ != nullptr) canceller_->Detach(ctx_.get());
}

void StreamBase::Cancel() {
  cancelled_.store(true);
  ctx_->TryCancel();
}

absl::Status StreamBase::Finish() {
  if (finished_) return status_;
  finished_ = true;
  absl::Status s = FinishCall();
  bool cancelled = cancelled_.load() ||
                   (canceller_ != nullptr && canceller_->cancelled());
  if (s.code() == absl::StatusCode::kDeadlineExceeded &&
      absl::Now() >= deadline_) {
    s = absl::DeadlineExceededError(kContextDeadlineExceeded);
  } else if (s.code() == absl::StatusCode::kCancelled && cancelled) {
    s = absl::CancelledError(kContextCanceled);
  }
  status_ = s;
  return status_;
}

// ---------------------------------------------------------------- Client

Client::Client(Config config) : config_(std::move(config)) {}
Client::~Client() {
  std::deque<AsyncTask> left;
  std::vector<std::thread> threads;
  {
    absl::MutexLock l(&async_mu_);
    async_stopping_ = true;
    left.swap(async_queue_);
    threads.swap(async_threads_);
  }
  for (AsyncTask& t : left) t.refuse(absl::CancelledError(kContextCanceled));
  for (std::thread& t : threads) t.join();
}

void Client::Submit(std::function<void()> run,
                    std::function<void(absl::Status)> refuse) {
  absl::Status why;
  {
    absl::MutexLock l(&async_mu_);
    if (async_stopping_) {
      why = absl::CancelledError(kContextCanceled);
    } else if (async_queue_.size() >=
               static_cast<size_t>(std::max(config_.max_async_queue, 1))) {
      why = absl::ResourceExhaustedError(absl::StrCat(
          "detcd client: too many asynchronous calls waiting (",
          async_queue_.size(), ")"));
    } else {
      async_queue_.push_back({std::move(run), std::move(refuse)});
      // Threads start on first use: most clients never call Async.
      int want = std::max(config_.async_threads, 1);
      while (static_cast<int>(async_threads_.size()) < want) {
        async_threads_.emplace_back([this] { AsyncLoop(); });
      }
      return;
    }
  }
  refuse(why);
}

void Client::AsyncLoop() {
  for (;;) {
    AsyncTask t;
    {
      absl::MutexLock l(&async_mu_);
      auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(async_mu_) {
        return async_stopping_ || !async_queue_.empty();
      };
      async_mu_.Await(absl::Condition(&ready));
      if (async_queue_.empty()) return;
      t = std::move(async_queue_.front());
      async_queue_.pop_front();
    }
    t.run();
  }
}

absl::StatusOr<std::unique_ptr<Client>> Client::New(Config config) {
  if (config.endpoints.empty()) {
    return absl::InvalidArgumentError(
        "at least one Endpoint must is required in client config");
  }
  std::unique_ptr<Client> c(new Client(std::move(config)));
  if (auto s = c->Init(); !s.ok()) return s;
  return c;
}

absl::StatusOr<std::unique_ptr<Client>> Client::NewOnChannel(
    std::shared_ptr<grpc::Channel> channel, Config config) {
  if (channel == nullptr) {
    return absl::InvalidArgumentError("no channel given");
  }
  if (config.endpoints.empty()) config.endpoints = {"in-process"};
  config.endpoints.resize(1);
  std::unique_ptr<Client> c(new Client(std::move(config)));
  auto conn = NewConn(c->config_.endpoints[0], std::move(channel));
  conn->always_ready = true;
  c->conns_.push_back(std::move(conn));
  if (auto s = c->InitAuth(); !s.ok()) return s;
  return c;
}

absl::Status Client::Init() {
  for (const std::string& ep : config_.endpoints) {
    auto conn = Dial(config_, ep);
    if (!conn.ok()) return conn.status();
    conns_.push_back(std::move(*conn));
  }
  return InitAuth();
}

absl::Status Client::InitAuth() {
  if (!config_.username.empty() && !config_.password.empty()) {
    use_token_ = true;
    absl::Status s = FetchToken(absl::Now() + config_.dial_timeout);
    if (s.message() == kErrAuthNotEnabled) {
      use_token_ = false;
      return absl::OkStatus();
    }
    return s;
  }
  return absl::OkStatus();
}

std::string Client::token() const {
  absl::MutexLock l(&mu_);
  return token_;
}

absl::Status Client::FetchToken(absl::Time deadline) {
  etcdserverpb::AuthenticateRequest req;
  req.set_name(config_.username);
  req.set_password(config_.password);
  absl::Status last = absl::DeadlineExceededError(kContextDeadlineExceeded);
  // Like clientv3's getToken: each endpoint in turn; a definite answer
  // (wrong password, auth not enabled) ends the search.
  for (auto& conn : conns_) {
    while (!conn->Ready()) {
      if (absl::Now() >= deadline) {
        return absl::DeadlineExceededError(kContextDeadlineExceeded);
      }
      conn->channel->WaitForStateChange(
          conn->channel->GetState(false),
          absl::ToChronoTime(std::min(deadline, absl::Now() + kConnectPoll)));
      if (conns_.size() > 1) break;
    }
    if (!conn->always_ready &&
        conn->channel->GetState(false) != GRPC_CHANNEL_READY) {
      continue;
    }
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(deadline));
    ctx.set_wait_for_ready(true);
    etcdserverpb::AuthenticateResponse resp;
    grpc::Status st = conn->auth->Authenticate(&ctx, req, &resp);
    if (st.ok()) {
      absl::MutexLock l(&mu_);
      token_ = resp.token();
      return absl::OkStatus();
    }
    last = FromGrpc(st, deadline, false);
    if (last.code() != absl::StatusCode::kUnavailable) return last;
  }
  // No endpoint answered yet: keep trying until the deadline.
  if (absl::Now() < deadline && last.code() == absl::StatusCode::kUnavailable) {
    SleepUntilOr(kRetryBackoff, deadline);
    return FetchToken(deadline);
  }
  return last;
}

std::shared_ptr<grpc::Channel> Client::channel(size_t i) const {
  return conns_.at(i)->channel;
}

std::unique_ptr<grpc::ClientContext> Client::NewCallContext(
    const CallOptions& o) {
  return NewContext(o);
}

std::unique_ptr<grpc::ClientContext> Client::NewContext(const CallOptions& o) {
  auto ctx = std::make_unique<grpc::ClientContext>();
  if (o.deadline != absl::InfiniteFuture()) {
    ctx->set_deadline(absl::ToChronoTime(o.deadline));
  }
  if (use_token_) {
    std::string t = token();
    if (!t.empty()) ctx->AddMetadata("token", t);
  } else if (!config_.token.empty()) {
    ctx->AddMetadata("token", config_.token);
  }
  if (o.require_leader) ctx->AddMetadata("hasleader", "true");
  return ctx;
}

absl::StatusOr<Conn*> Client::PickConn(absl::Time deadline,
                                       Canceller* canceller) {
  if (canceller == nullptr) canceller = canceller_.load();
  size_t n = conns_.size();
  for (size_t round = 0;; ++round) {
    size_t start = next_.fetch_add(1);
    for (size_t i = 0; i < n; ++i) {
      Conn* c = conns_[(start + i) % n].get();
      if (c->Ready()) return c;
    }
    if (canceller != nullptr && canceller->cancelled()) {
      return absl::CancelledError(kContextCanceled);
    }
    absl::Time now = absl::Now();
    if (now >= deadline) {
      return absl::DeadlineExceededError(kContextDeadlineExceeded);
    }
    Conn* c = conns_[round % n].get();
    c->channel->WaitForStateChange(
        c->channel->GetState(false),
        absl::ToChronoTime(std::min(deadline, now + kConnectPoll)));
  }
}

absl::StatusOr<Conn*> Client::ConnFor(absl::string_view endpoint) {
  for (auto& c : conns_) {
    if (c->endpoint == endpoint) return c.get();
  }
  absl::MutexLock l(&mu_);
  for (auto& c : extra_conns_) {
    if (c->endpoint == endpoint) return c.get();
  }
  auto conn = Dial(config_, std::string(endpoint));
  if (!conn.ok()) return conn.status();
  extra_conns_.push_back(std::move(*conn));
  return extra_conns_.back().get();
}

template <typename Resp, typename Call>
absl::StatusOr<Resp> Client::Unary(Retry retry, const CallOptions& o,
                                   size_t request_bytes, Call call,
                                   Conn* fixed) {
  if (request_bytes > static_cast<size_t>(config_.max_send_bytes)) {
    // grpc-go's text (the C++ library words it differently).
    return absl::ResourceExhaustedError(
        absl::StrFormat("trying to send message larger than max (%d vs. %d)",
                        request_bytes, config_.max_send_bytes));
  }
  int refreshes = 0;
  int retries = 0;
  Canceller* canceller = canceller_.load();
  for (;;) {
    // As grpc-go, a call whose context is already cancelled is not sent:
    // a request that was given up must not take effect (a Lock or Campaign
    // retried past its deadline would otherwise put its key after the first
    // attempt's clean-up deleted it).
    if (canceller != nullptr && canceller->cancelled()) {
      return absl::CancelledError(kContextCanceled);
    }
    Conn* c = fixed;
    if (c == nullptr) {
      auto p = PickConn(o.deadline);
      if (!p.ok()) return p.status();
      c = *p;
    } else {
      // A call to one endpoint waits for it alone.
      while (!c->Ready()) {
        if (canceller != nullptr && canceller->cancelled()) {
          return absl::CancelledError(kContextCanceled);
        }
        absl::Time now = absl::Now();
        if (now >= o.deadline) {
          return absl::DeadlineExceededError(kContextDeadlineExceeded);
        }
        c->channel->WaitForStateChange(
            c->channel->GetState(false),
            absl::ToChronoTime(std::min(o.deadline, now + kConnectPoll)));
      }
    }
    std::unique_ptr<grpc::ClientContext> ctx = NewContext(o);
    if (canceller != nullptr) canceller->Attach(ctx.get());
    Resp resp;
    grpc::Status st = call(c, ctx.get(), &resp);
    if (canceller != nullptr) canceller->Detach(ctx.get());
    if (st.ok()) return resp;
    absl::Status s = FromGrpc(st, o.deadline,
                              canceller != nullptr && canceller->cancelled());
    if (use_token_ && NeedsToken(s) && refreshes < kMaxTokenRefreshes) {
      ++refreshes;
      {
        absl::MutexLock l(&mu_);
        token_.clear();
      }
      absl::Status ts = FetchToken(o.deadline);
      if (!ts.ok()) return ts;
      continue;
    }
    if (s.code() == absl::StatusCode::kUnavailable &&
        (retry == Retry::kRepeatable || NeverSent(s))) {
      // As clientv3: a call retried until its deadline ends with the
      // deadline's error.
      if (absl::Now() >= o.deadline) {
        return absl::DeadlineExceededError(kContextDeadlineExceeded);
      }
      if (++retries > kMaxUnaryRetries) return s;
      SleepUntilOr(kRetryBackoff, o.deadline);
      continue;
    }
    return s;
  }
}

// Unary call boilerplate: one method per RPC, each naming its stub, its
// retry policy and its response type.
#define DETCD_UNARY(Name, Stub, Method, Req, Resp, Policy)                   \
  absl::StatusOr<Resp> Client::Name(const Req& r, const CallOptions& o) {   \
    return Unary<Resp>(Retry::Policy, o, r.ByteSizeLong(),                  \
                       [&r](Conn* c, grpc::ClientContext* ctx, Resp* out) { \
                         return c->Stub->Method(ctx, r, out);               \
                       });                                                  \
  }

namespace pb = etcdserverpb;
DETCD_UNARY(Range, kv, Range, pb::RangeRequest, pb::RangeResponse, kRepeatable)
DETCD_UNARY(Put, kv, Put, pb::PutRequest, pb::PutResponse, kNonRepeatable)
DETCD_UNARY(DeleteRange, kv, DeleteRange, pb::DeleteRangeRequest,
            pb::DeleteRangeResponse, kNonRepeatable)
DETCD_UNARY(Txn, kv, Txn, pb::TxnRequest, pb::TxnResponse, kNonRepeatable)
DETCD_UNARY(Compact, kv, Compact, pb::CompactionRequest,
            pb::CompactionResponse, kNonRepeatable)
// clientv3 retries lease grant and revoke as repeatable (a retried grant
// at worst leaves an unused lease that expires).
DETCD_UNARY(LeaseGrant, lease, LeaseGrant, pb::LeaseGrantRequest,
            pb::LeaseGrantResponse, kRepeatable)
DETCD_UNARY(LeaseRevoke, lease, LeaseRevoke, pb::LeaseRevokeRequest,
            pb::LeaseRevokeResponse, kRepeatable)
DETCD_UNARY(LeaseTimeToLive, lease, LeaseTimeToLive,
            pb::LeaseTimeToLiveRequest, pb::LeaseTimeToLiveResponse,
            kRepeatable)
DETCD_UNARY(LeaseLeases, lease, LeaseLeases, pb::LeaseLeasesRequest,
            pb::LeaseLeasesResponse, kRepeatable)
DETCD_UNARY(MemberAdd, cluster, MemberAdd, pb::MemberAddRequest,
            pb::MemberAddResponse, kNonRepeatable)
DETCD_UNARY(MemberRemove, cluster, MemberRemove, pb::MemberRemoveRequest,
            pb::MemberRemoveResponse, kNonRepeatable)
DETCD_UNARY(MemberUpdate, cluster, MemberUpdate, pb::MemberUpdateRequest,
            pb::MemberUpdateResponse, kNonRepeatable)
DETCD_UNARY(MemberList, cluster, MemberList, pb::MemberListRequest,
            pb::MemberListResponse, kRepeatable)
DETCD_UNARY(MemberPromote, cluster, MemberPromote, pb::MemberPromoteRequest,
            pb::MemberPromoteResponse, kNonRepeatable)
DETCD_UNARY(MoveLeader, maintenance, MoveLeader, pb::MoveLeaderRequest,
            pb::MoveLeaderResponse, kNonRepeatable)
DETCD_UNARY(Authenticate, auth, Authenticate, pb::AuthenticateRequest,
            pb::AuthenticateResponse, kRepeatable)
DETCD_UNARY(UserAdd, auth, UserAdd, pb::AuthUserAddRequest,
            pb::AuthUserAddResponse, kNonRepeatable)
DETCD_UNARY(UserGet, auth, UserGet, pb::AuthUserGetRequest,
            pb::AuthUserGetResponse, kRepeatable)
DETCD_UNARY(UserList, auth, UserList, pb::AuthUserListRequest,
            pb::AuthUserListResponse, kRepeatable)
DETCD_UNARY(UserDelete, auth, UserDelete, pb::AuthUserDeleteRequest,
            pb::AuthUserDeleteResponse, kNonRepeatable)
DETCD_UNARY(UserChangePassword, auth, UserChangePassword,
            pb::AuthUserChangePasswordRequest,
            pb::AuthUserChangePasswordResponse, kNonRepeatable)
DETCD_UNARY(UserGrantRole, auth, UserGrantRole, pb::AuthUserGrantRoleRequest,
            pb::AuthUserGrantRoleResponse, kNonRepeatable)
DETCD_UNARY(UserRevokeRole, auth, UserRevokeRole,
            pb::AuthUserRevokeRoleRequest, pb::AuthUserRevokeRoleResponse,
            kNonRepeatable)
DETCD_UNARY(RoleAdd, auth, RoleAdd, pb::AuthRoleAddRequest,
            pb::AuthRoleAddResponse, kNonRepeatable)
DETCD_UNARY(RoleGet, auth, RoleGet, pb::AuthRoleGetRequest,
            pb::AuthRoleGetResponse, kRepeatable)
DETCD_UNARY(RoleList, auth, RoleList, pb::AuthRoleListRequest,
            pb::AuthRoleListResponse, kRepeatable)
DETCD_UNARY(RoleDelete, auth, RoleDelete, pb::AuthRoleDeleteRequest,
            pb::AuthRoleDeleteResponse, kNonRepeatable)
DETCD_UNARY(RoleGrantPermission, auth, RoleGrantPermission,
            pb::AuthRoleGrantPermissionRequest,
            pb::AuthRoleGrantPermissionResponse, kNonRepeatable)
DETCD_UNARY(RoleRevokePermission, auth, RoleRevokePermission,
            pb::AuthRoleRevokePermissionRequest,
            pb::AuthRoleRevokePermissionResponse, kNonRepeatable)
DETCD_UNARY(Lock, lock, Lock, v3lockpb::LockRequest, v3lockpb::LockResponse,
            kNonRepeatable)
DETCD_UNARY(Unlock, lock, Unlock, v3lockpb::UnlockRequest,
            v3lockpb::UnlockResponse, kNonRepeatable)
DETCD_UNARY(Campaign, election, Campaign, v3electionpb::CampaignRequest,
            v3electionpb::CampaignResponse, kNonRepeatable)
DETCD_UNARY(Proclaim, election, Proclaim, v3electionpb::ProclaimRequest,
            v3electionpb::ProclaimResponse, kNonRepeatable)
DETCD_UNARY(Leader, election, Leader, v3electionpb::LeaderRequest,
            v3electionpb::LeaderResponse, kRepeatable)
DETCD_UNARY(Resign, election, Resign, v3electionpb::ResignRequest,
            v3electionpb::ResignResponse, kNonRepeatable)
#undef DETCD_UNARY

absl::StatusOr<pb::AlarmResponse> Client::Alarm(const pb::AlarmRequest& r,
                                                const CallOptions& o) {
  // Listing is a read; activating or deactivating is a write.
  Retry retry = r.action() == pb::AlarmRequest::GET ? Retry::kRepeatable
                                                    : Retry::kNonRepeatable;
  return Unary<pb::AlarmResponse>(
      retry, o, r.ByteSizeLong(),
      [&r](Conn* c, grpc::ClientContext* ctx, pb::AlarmResponse* out) {
        return c->maintenance->Alarm(ctx, r, out);
      });
}

absl::StatusOr<pb::StatusResponse> Client::Status(absl::string_view endpoint,
                                                  const CallOptions& o) {
  auto conn = ConnFor(endpoint);
  if (!conn.ok()) return conn.status();
  pb::StatusRequest r;
  return Unary<pb::StatusResponse>(
      Retry::kRepeatable, o, 0,
      [&r](Conn* c, grpc::ClientContext* ctx, pb::StatusResponse* out) {
        return c->maintenance->Status(ctx, r, out);
      },
      *conn);
}

absl::StatusOr<pb::HashKVResponse> Client::HashKV(absl::string_view endpoint,
                                                  int64_t revision,
                                                  const CallOptions& o) {
  auto conn = ConnFor(endpoint);
  if (!conn.ok()) return conn.status();
  pb::HashKVRequest r;
  r.set_revision(revision);
  return Unary<pb::HashKVResponse>(
      Retry::kRepeatable, o, 0,
      [&r](Conn* c, grpc::ClientContext* ctx, pb::HashKVResponse* out) {
        return c->maintenance->HashKV(ctx, r, out);
      },
      *conn);
}

absl::StatusOr<pb::DefragmentResponse> Client::Defragment(
    absl::string_view endpoint, const CallOptions& o) {
  auto conn = ConnFor(endpoint);
  if (!conn.ok()) return conn.status();
  pb::DefragmentRequest r;
  return Unary<pb::DefragmentResponse>(
      Retry::kNonRepeatable, o, 0,
      [&r](Conn* c, grpc::ClientContext* ctx, pb::DefragmentResponse* out) {
        return c->maintenance->Defragment(ctx, r, out);
      },
      *conn);
}

absl::StatusOr<pb::AuthEnableResponse> Client::AuthEnable(
    const CallOptions& o) {
  pb::AuthEnableRequest r;
  return Unary<pb::AuthEnableResponse>(
      Retry::kNonRepeatable, o, 0,
      [&r](Conn* c, grpc::ClientContext* ctx, pb::AuthEnableResponse* out) {
        return c->auth->AuthEnable(ctx, r, out);
      });
}

absl::StatusOr<pb::AuthDisableResponse> Client::AuthDisable(
    const CallOptions& o) {
  pb::AuthDisableRequest r;
  return Unary<pb::AuthDisableResponse>(
      Retry::kNonRepeatable, o, 0,
      [&r](Conn* c, grpc::ClientContext* ctx, pb::AuthDisableResponse* out) {
        return c->auth->AuthDisable(ctx, r, out);
      });
}

absl::StatusOr<pb::LeaseKeepAliveResponse> Client::LeaseKeepAliveOnce(
    int64_t id, const CallOptions& o, Canceller* canceller) {
  if (canceller == nullptr) canceller = canceller_.load();
  for (;;) {
    auto s = OpenKeepAlive(o, canceller);
    if (!s.ok()) return s.status();
    pb::LeaseKeepAliveRequest req;
    req.set_id(id);
    pb::LeaseKeepAliveResponse resp;
    if ((*s)->Send(req) && (*s)->Read(&resp)) return resp;
    absl::Status st = (*s)->Finish();
    if (st.ok()) st = absl::UnavailableError("keep-alive stream closed");
    // clientv3 retries until the error is final (anything but
    // Unavailable) or the deadline passes.
    if (st.code() != absl::StatusCode::kUnavailable ||
        absl::Now() >= o.deadline) {
      return st;
    }
    if (canceller != nullptr && canceller->cancelled()) {
      return absl::CancelledError(kContextCanceled);
    }
    SleepUntilOr(kRetryBackoff, o.deadline);
  }
}

// ---------------------------------------------------------------- streams

absl::StatusOr<std::unique_ptr<WatchStream>> Client::OpenWatch(
    const CallOptions& o, Canceller* canceller) {
  auto conn = PickConn(o.deadline, canceller);
  if (!conn.ok()) return conn.status();
  Conn* c = *conn;
  using S = GrpcBidi<pb::WatchRequest, pb::WatchResponse>;
  return std::unique_ptr<WatchStream>(
      new S(NewContext(o), c->endpoint, o.deadline, canceller,
            [c](grpc::ClientContext* ctx) { return c->watch->Watch(ctx); }));
}

absl::StatusOr<std::unique_ptr<KeepAliveStream>> Client::OpenKeepAlive(
    const CallOptions& o, Canceller* canceller) {
  auto conn = PickConn(o.deadline, canceller);
  if (!conn.ok()) return conn.status();
  Conn* c = *conn;
  using S = GrpcBidi<pb::LeaseKeepAliveRequest, pb::LeaseKeepAliveResponse>;
  return std::unique_ptr<KeepAliveStream>(new S(
      NewContext(o), c->endpoint, o.deadline, canceller,
      [c](grpc::ClientContext* ctx) { return c->lease->LeaseKeepAlive(ctx); }));
}

absl::StatusOr<std::unique_ptr<SnapshotStream>> Client::OpenSnapshot(
    const CallOptions& o, Canceller* canceller) {
  auto conn = PickConn(o.deadline, canceller);
  if (!conn.ok()) return conn.status();
  Conn* c = *conn;
  using S = GrpcReader<pb::SnapshotResponse>;
  return std::unique_ptr<SnapshotStream>(
      new S(NewContext(o), c->endpoint, o.deadline, canceller,
            [c](grpc::ClientContext* ctx) {
              return c->maintenance->Snapshot(ctx, pb::SnapshotRequest());
            }));
}

absl::StatusOr<std::unique_ptr<ObserveStream>> Client::OpenObserve(
    const v3electionpb::LeaderRequest& r, const CallOptions& o,
    Canceller* canceller) {
  auto conn = PickConn(o.deadline, canceller);
  if (!conn.ok()) return conn.status();
  Conn* c = *conn;
  using S = GrpcReader<v3electionpb::LeaderResponse>;
  return std::unique_ptr<ObserveStream>(
      new S(NewContext(o), c->endpoint, o.deadline, canceller,
            [c, r](grpc::ClientContext* ctx) {
              return c->election->Observe(ctx, r);
            }));
}

}  // namespace detcd::client
