// detcd's C++ client for etcd's v3 gRPC API (works against detcd and etcd).
//
// A Client holds one gRPC channel per endpoint and sends each call to a
// connected one, round robin, as etcd's clientv3 (3.4) does:
//
//  - Calls wait (up to their deadline) until some endpoint is connected:
//    an unreachable cluster costs the caller its deadline, not an instant
//    "connection refused" (clientv3 dials with FailFast(false)).
//  - Retry policy (clientv3's retry.go): a call that only reads (Range,
//    LeaseTimeToLive, LeaseLeases, MemberList, Status, HashKV, Alarm
//    list, auth reads, ...) and the lease calls clientv3 repeats (grant,
//    revoke, keep-alive) are retried on the next endpoint while they fail
//    with Unavailable (a dead member, "etcdserver: no leader", "request
//    timed out", ...), 25 ms apart, until the deadline or for at most 100
//    retries (clientv3's defaultUnaryMaxRetries; then the last error is
//    returned). Any other code (compacted, permission denied, ...) is
//    returned at once. A call that writes (Put, DeleteRange, Txn,
//    Compact, member changes, ...) is retried only when the error proves
//    the request never left this client (no connected endpoint);
//    otherwise its Unavailable error is returned, because the write may
//    have been applied. (Alarm activate/deactivate and MoveLeader count
//    as writes here; clientv3 repeats them.)
//  - Auth: with a user name and password the client gets a token
//    (Authenticate) when created and sends it as the "token" metadata on
//    every call; on "etcdserver: invalid auth token" or "etcdserver:
//    revision of auth store is old" it fetches a new token and retries.
//  - TLS: an endpoint "https://host:port", or any endpoint when
//    Config::tls is set, is dialed over TLS (client certificate and key,
//    CA bundle, server name override, insecure skip-verify).
//  - Keepalive: HTTP/2 pings every keepalive_time (at least 10 s, as gRPC
//    Go clamps it, so a server enforcing etcd's 5 s minimum never sees a
//    ping flood), the connection dropped after keepalive_timeout.
//
// Errors are absl::Status values carrying the gRPC code and message the
// server sent (etcd's "etcdserver: ..." texts), or the client's own:
// DeadlineExceeded "context deadline exceeded" when the call's deadline
// passed, Cancelled "context canceled" when it was cancelled, and
// ResourceExhausted "trying to send message larger than max (N vs. M)"
// for a request over max_send_bytes. ErrorText (errors.h) renders any of
// them the way clientv3 does.
//
// Calls are blocking and thread-safe; Client::Async runs any of them on
// the client's own threads and returns a std::future (or calls a callback),
// so a caller can have many calls in flight without threads of its own.
// Streams (Watch, LeaseKeepAlive,
// Snapshot, Observe) are objects owned by the caller; watch.h and
// lease.h build resuming watches and automatic keep-alives on them, and
// concurrency.h builds etcd's session, mutex and election recipes.
#ifndef DETCD_CLIENT_CLIENT_H_
#define DETCD_CLIENT_CLIENT_H_

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <future>
#include <memory>
#include <thread>
#include <type_traits>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "etcdserverpb/rpc.pb.h"
#include "v3electionpb/v3election.pb.h"
#include "v3lockpb/v3lock.pb.h"

namespace grpc {
class Channel;
class ClientContext;
}  // namespace grpc

namespace detcd::client {

struct TlsConfig {
  std::string cert_file;  // client certificate (PEM), optional
  std::string key_file;   // its private key (PEM), optional
  std::string ca_file;    // CA bundle (PEM); empty: the system's roots
  // The name the server's certificate must carry; empty: the endpoint's
  // host.
  std::string server_name;
  // Accept any server certificate (testing only, as etcdctl's
  // --insecure-skip-tls-verify).
  bool insecure_skip_verify = false;
};

struct Config {
  // "host:port", "http://host:port" or "https://host:port".
  std::vector<std::string> endpoints = {"127.0.0.1:2379"};
  // Bounds getting the auth token when the client is created (dialing
  // itself does not block, as in clientv3 3.4).
  absl::Duration dial_timeout = absl::Seconds(2);
  absl::Duration keepalive_time = absl::Seconds(2);
  absl::Duration keepalive_timeout = absl::Seconds(6);
  // Set: every endpoint without a scheme, and https:// ones, use TLS.
  // Unset: plaintext, except https:// endpoints (system roots).
  std::optional<TlsConfig> tls;
  std::string username;  // empty: no auth
  std::string password;
  // An auth token sent as is on every call (no Authenticate, no refresh);
  // ignored when username and password are set. The server's own Lock and
  // Election services pass their caller's token on this way.
  std::string token;
  // clientv3's defaults: requests up to 2 MiB, responses unbounded.
  int max_send_bytes = 2 * 1024 * 1024;
  int max_recv_bytes = INT32_MAX;
  // Threads that run asynchronous calls (Client::Async), started on the
  // first one, and how many calls may wait for them; past that bound an
  // asynchronous call fails at once with ResourceExhausted.
  int async_threads = 4;
  int max_async_queue = 10000;
};

// Options of the KV conveniences (Client::Get / Put / Delete, and the
// OpGet / OpPut / OpDelete of kv.h), named after clientv3's OpOptions.
struct GetOptions {
  // The end of the range [key, range_end); set: prefix and from_key are
  // ignored. prefix: every key starting with key (WithPrefix); from_key:
  // every key >= key (WithFromKey).
  std::string range_end;
  bool prefix = false;
  bool from_key = false;
  int64_t revision = 0;  // 0: the latest
  int64_t limit = 0;     // 0: no limit
  bool serializable = false;  // served by the member alone (may be stale)
  bool keys_only = false;
  bool count_only = false;
  etcdserverpb::RangeRequest::SortTarget sort_target =
      etcdserverpb::RangeRequest::KEY;
  etcdserverpb::RangeRequest::SortOrder sort_order =
      etcdserverpb::RangeRequest::NONE;
  int64_t min_mod_revision = 0;
  int64_t max_mod_revision = 0;
  int64_t min_create_revision = 0;
  int64_t max_create_revision = 0;
};

struct PutOptions {
  int64_t lease = 0;  // 0: none
  bool prev_kv = false;
  bool ignore_value = false;
  bool ignore_lease = false;
};

struct DeleteOptions {
  std::string range_end;  // as GetOptions
  bool prefix = false;
  bool from_key = false;
  bool prev_kv = false;
};

// The request a convenience call sends (kv.cc).
etcdserverpb::RangeRequest MakeRangeRequest(absl::string_view key,
                                            const GetOptions& g = {});
etcdserverpb::PutRequest MakePutRequest(absl::string_view key,
                                        absl::string_view value,
                                        const PutOptions& p = {});
etcdserverpb::DeleteRangeRequest MakeDeleteRequest(absl::string_view key,
                                                   const DeleteOptions& d = {});

// Per call. A default CallOptions has no deadline (waits for ever).
struct CallOptions {
  absl::Time deadline = absl::InfiniteFuture();
  // Sends etcd's "hasleader" metadata: the server refuses the call (or
  // cancels the watch) while it has no leader.
  bool require_leader = false;

  static CallOptions Timeout(absl::Duration d) {
    CallOptions o;
    o.deadline = absl::Now() + d;
    return o;
  }
};

// Cancels blocking calls and streams from another thread (SIGINT
// handling, closing a watcher). A canceller with a parent is also
// cancelled by its parent.
class Canceller {
 public:
  explicit Canceller(Canceller* parent = nullptr) : parent_(parent) {}
  Canceller(const Canceller&) = delete;
  Canceller& operator=(const Canceller&) = delete;

  void Cancel();
  // From t on the canceller counts as cancelled, as a Go context past its
  // deadline: no new call starts (a server handler's work after its
  // caller's deadline). Set it before other threads use the canceller.
  void set_deadline(absl::Time t) { deadline_ = t; }
  // The earliest deadline of this canceller and its parents.
  absl::Time deadline() const {
    return parent_ != nullptr ? std::min(deadline_, parent_->deadline())
                              : deadline_;
  }
  bool cancelled() const {
    return cancelled_.load() ||
           (deadline_ != absl::InfiniteFuture() && absl::Now() >= deadline_) ||
           (parent_ != nullptr && parent_->cancelled());
  }
  // Sleeps up to d; returns early (true) once cancelled.
  bool WaitForCancel(absl::Duration d);

 private:
  friend class Client;
  friend class StreamBase;
  void Attach(grpc::ClientContext* ctx);
  void Detach(grpc::ClientContext* ctx);

  Canceller* parent_;
  absl::Time deadline_ = absl::InfiniteFuture();
  std::atomic<bool> cancelled_{false};
  absl::Mutex mu_;
  std::vector<grpc::ClientContext*> contexts_ ABSL_GUARDED_BY(mu_);
};

class Client;
struct Conn;

// A bidirectional or server stream on one endpoint. Read blocks; Send and
// Read may be used from two different threads; Cancel from any thread.
class StreamBase {
 public:
  virtual ~StreamBase();
  // Ends the stream: a blocked Read returns false.
  void Cancel();
  // Why the stream ended (after Read returned false): the server's status,
  // or the client's "context canceled" / "context deadline exceeded".
  absl::Status Finish();
  // The endpoint this stream runs on.
  const std::string& endpoint() const { return endpoint_; }

 protected:
  StreamBase(std::unique_ptr<grpc::ClientContext> ctx, std::string endpoint,
             absl::Time deadline, Canceller* canceller);
  virtual absl::Status FinishCall() = 0;

  std::unique_ptr<grpc::ClientContext> ctx_;

 private:
  std::string endpoint_;
  absl::Time deadline_;
  Canceller* canceller_;
  std::atomic<bool> cancelled_{false};
  bool finished_ = false;
  absl::Status status_;
};

template <typename Req, typename Resp>
class BidiStream : public StreamBase {
 public:
  virtual bool Send(const Req& req) = 0;
  // Half-closes the sending side.
  virtual void CloseSend() = 0;
  virtual bool Read(Resp* resp) = 0;

 protected:
  using StreamBase::StreamBase;
};

template <typename Resp>
class ReadStream : public StreamBase {
 public:
  virtual bool Read(Resp* resp) = 0;

 protected:
  using StreamBase::StreamBase;
};

using WatchStream =
    BidiStream<etcdserverpb::WatchRequest, etcdserverpb::WatchResponse>;
using KeepAliveStream = BidiStream<etcdserverpb::LeaseKeepAliveRequest,
                                   etcdserverpb::LeaseKeepAliveResponse>;
using SnapshotStream = ReadStream<etcdserverpb::SnapshotResponse>;
using ObserveStream = ReadStream<v3electionpb::LeaderResponse>;

class Client {
 public:
  // Creates the channels (without waiting for them to connect) and, with a
  // user name and password, gets an auth token within dial_timeout. A
  // server without auth enabled is accepted (no token is used).
  static absl::StatusOr<std::unique_ptr<Client>> New(Config config);
  // A client over a channel made elsewhere (e.g. grpc::Server's
  // InProcessChannel, which reports no connectivity state: it counts as
  // always connected). config.endpoints[0], if any, names it; TLS and
  // dialing settings are not used. Clients may share one channel.
  static absl::StatusOr<std::unique_ptr<Client>> NewOnChannel(
      std::shared_ptr<grpc::Channel> channel, Config config = {});
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  const Config& config() const { return config_; }
  const std::vector<std::string>& endpoints() const {
    return config_.endpoints;
  }

  // KV.
  absl::StatusOr<etcdserverpb::RangeResponse> Range(
      const etcdserverpb::RangeRequest& r, const CallOptions& o = {});
  absl::StatusOr<etcdserverpb::PutResponse> Put(
      const etcdserverpb::PutRequest& r, const CallOptions& o = {});
  absl::StatusOr<etcdserverpb::DeleteRangeResponse> DeleteRange(
      const etcdserverpb::DeleteRangeRequest& r, const CallOptions& o = {});
  absl::StatusOr<etcdserverpb::TxnResponse> Txn(
      const etcdserverpb::TxnRequest& r, const CallOptions& o = {});
  absl::StatusOr<etcdserverpb::CompactionResponse> Compact(
      const etcdserverpb::CompactionRequest& r, const CallOptions& o = {});

  // KV conveniences over Range / Put / DeleteRange (kv.h has the Txn
  // builder).
  absl::StatusOr<etcdserverpb::RangeResponse> Get(absl::string_view key,
                                                  const GetOptions& g = {},
                                                  const CallOptions& o = {});
  absl::StatusOr<etcdserverpb::PutResponse> Put(absl::string_view key,
                                                absl::string_view value,
                                                const PutOptions& p = {},
                                                const CallOptions& o = {});
  absl::StatusOr<etcdserverpb::DeleteRangeResponse> Delete(
      absl::string_view key, const DeleteOptions& d = {},
      const CallOptions& o = {});
  // The same, asynchronously (see Async).
  std::future<absl::StatusOr<etcdserverpb::RangeResponse>> GetAsync(
      std::string key, GetOptions g = {}, CallOptions o = {});
  std::future<absl::StatusOr<etcdserverpb::PutResponse>> PutAsync(
      std::string key, std::string value, PutOptions p = {},
      CallOptions o = {});
  std::future<absl::StatusOr<etcdserverpb::DeleteRangeResponse>> DeleteAsync(
      std::string key, DeleteOptions d = {}, CallOptions o = {});

  // Lease.
  absl::StatusOr<etcdserverpb::LeaseGrantResponse> LeaseGrant(
      const etcdserverpb::LeaseGrantRequest& r, const CallOptions& o = {});
  absl::StatusOr<etcdserverpb::LeaseRevokeResponse> LeaseRevoke(
      const etcdserverpb::LeaseRevokeRequest& r, const CallOptions& o = {});
  absl::StatusOr<etcdserverpb::LeaseTimeToLiveResponse> LeaseTimeToLive(
      const etcdserverpb::LeaseTimeToLiveRequest& r, const CallOptions& o = {});
  absl::StatusOr<etcdserverpb::LeaseLeasesResponse> LeaseLeases(
      const etcdserverpb::LeaseLeasesRequest& r, const CallOptions& o = {});
  // One keep-alive on a fresh stream (clientv3's KeepAliveOnce without the
  // TTL check), retried while the error is Unavailable. lease.h has the
  // loop. canceller: as for streams (default: the client's).
  absl::StatusOr<etcdserverpb::LeaseKeepAliveResponse> LeaseKeepAliveOnce(
      int64_t id, const CallOptions& o = {}, Canceller* canceller = nullptr);

  // Cluster.
  absl::StatusOr<etcdserverpb::MemberAddResponse> MemberAdd(
      const etcdserverpb::MemberAddRequest& r, const CallOptions& o = {});
  absl::StatusOr<etcdserverpb::MemberRemoveResponse> MemberRemove(
      const etcdserverpb::MemberRemoveRequest& r, const CallOptions& o = {});
  absl::StatusOr<etcdserverpb::MemberUpdateResponse> MemberUpdate(
      const etcdserverpb::MemberUpdateRequest& r, const CallOptions& o = {});
  absl::StatusOr<etcdserverpb::MemberListResponse> MemberList(
      const etcdserverpb::MemberListRequest& r, const CallOptions& o = {});
  absl::StatusOr<etcdserverpb::MemberPromoteResponse> MemberPromote(
      const etcdserverpb::MemberPromoteRequest& r, const CallOptions& o = {});

  // Maintenance. Alarm and MoveLeader go to any endpoint (MoveLeader must
  // reach the leader: use a Client of that one endpoint); Status, HashKV
  // and Defragment to the endpoint named (one of endpoints(), or any
  // other, which is then dialed for the call).
  absl::StatusOr<etcdserverpb::AlarmResponse> Alarm(
      const etcdserverpb::AlarmRequest& r, const CallOptions& o = {});
  absl::StatusOr<etcdserverpb::StatusResponse> Status(
      absl::string_view endpoint, const CallOptions& o = {});
  absl::StatusOr<etcdserverpb::HashKVResponse> HashKV(
      absl::string_view endpoint, int64_t revision, const CallOptions& o = {});
  absl::StatusOr<etcdserverpb::DefragmentResponse> Defragment(
      absl::string_view endpoint, const CallOptions& o = {});
  absl::StatusOr<etcdserverpb::MoveLeaderResponse> MoveLeader(
      const etcdserverpb::MoveLeaderRequest& r, const CallOptions& o = {});

  // Auth.
  absl::StatusOr<etcdserverpb::AuthEnableResponse> AuthEnable(
      const CallOptions& o = {});
  absl::StatusOr<etcdserverpb::AuthDisableResponse> AuthDisable(
      const CallOptions& o = {});
  absl::StatusOr<etcdserverpb::AuthenticateResponse> Authenticate(
      const etcdserverpb::AuthenticateRequest& r, const CallOptions& o = {});
  absl::StatusOr<etcdserverpb::AuthUserAddResponse> UserAdd(
      const etcdserverpb::AuthUserAddRequest& r, const CallOptions& o = {});
  absl::StatusOr<etcdserverpb::AuthUserGetResponse> UserGet(
      const etcdserverpb::AuthUserGetRequest& r, const CallOptions& o = {});
  absl::StatusOr<etcdserverpb::AuthUserListResponse> UserList(
      const etcdserverpb::AuthUserListRequest& r, const CallOptions& o = {});
  absl::StatusOr<etcdserverpb::AuthUserDeleteResponse> UserDelete(
      const etcdserverpb::AuthUserDeleteRequest& r, const CallOptions& o = {});
  absl::StatusOr<etcdserverpb::AuthUserChangePasswordResponse>
  UserChangePassword(const etcdserverpb::AuthUserChangePasswordRequest& r,
                     const CallOptions& o = {});
  absl::StatusOr<etcdserverpb::AuthUserGrantRoleResponse> UserGrantRole(
      const etcdserverpb::AuthUserGrantRoleRequest& r,
      const CallOptions& o = {});
  absl::StatusOr<etcdserverpb::AuthUserRevokeRoleResponse> UserRevokeRole(
      const etcdserverpb::AuthUserRevokeRoleRequest& r,
      const CallOptions& o = {});
  absl::StatusOr<etcdserverpb::AuthRoleAddResponse> RoleAdd(
      const etcdserverpb::AuthRoleAddRequest& r, const CallOptions& o = {});
  absl::StatusOr<etcdserverpb::AuthRoleGetResponse> RoleGet(
      const etcdserverpb::AuthRoleGetRequest& r, const CallOptions& o = {});
  absl::StatusOr<etcdserverpb::AuthRoleListResponse> RoleList(
      const etcdserverpb::AuthRoleListRequest& r, const CallOptions& o = {});
  absl::StatusOr<etcdserverpb::AuthRoleDeleteResponse> RoleDelete(
      const etcdserverpb::AuthRoleDeleteRequest& r, const CallOptions& o = {});
  absl::StatusOr<etcdserverpb::AuthRoleGrantPermissionResponse>
  RoleGrantPermission(const etcdserverpb::AuthRoleGrantPermissionRequest& r,
                      const CallOptions& o = {});
  absl::StatusOr<etcdserverpb::AuthRoleRevokePermissionResponse>
  RoleRevokePermission(const etcdserverpb::AuthRoleRevokePermissionRequest& r,
                       const CallOptions& o = {});

  // Lock and Election services (v3lockpb, v3electionpb).
  absl::StatusOr<v3lockpb::LockResponse> Lock(const v3lockpb::LockRequest& r,
                                              const CallOptions& o = {});
  absl::StatusOr<v3lockpb::UnlockResponse> Unlock(
      const v3lockpb::UnlockRequest& r, const CallOptions& o = {});
  absl::StatusOr<v3electionpb::CampaignResponse> Campaign(
      const v3electionpb::CampaignRequest& r, const CallOptions& o = {});
  absl::StatusOr<v3electionpb::ProclaimResponse> Proclaim(
      const v3electionpb::ProclaimRequest& r, const CallOptions& o = {});
  absl::StatusOr<v3electionpb::LeaderResponse> Leader(
      const v3electionpb::LeaderRequest& r, const CallOptions& o = {});
  absl::StatusOr<v3electionpb::ResignResponse> Resign(
      const v3electionpb::ResignRequest& r, const CallOptions& o = {});

  // Streams, opened on a connected endpoint (waiting up to o.deadline for
  // one). The deadline also bounds the stream's life; the canceller, if
  // given, ends it from another thread.
  absl::StatusOr<std::unique_ptr<WatchStream>> OpenWatch(
      const CallOptions& o = {}, Canceller* canceller = nullptr);
  absl::StatusOr<std::unique_ptr<KeepAliveStream>> OpenKeepAlive(
      const CallOptions& o = {}, Canceller* canceller = nullptr);
  absl::StatusOr<std::unique_ptr<SnapshotStream>> OpenSnapshot(
      const CallOptions& o = {}, Canceller* canceller = nullptr);
  absl::StatusOr<std::unique_ptr<ObserveStream>> OpenObserve(
      const v3electionpb::LeaderRequest& r, const CallOptions& o = {},
      Canceller* canceller = nullptr);

  // Runs fn(*this) on one of the client's threads and returns its result
  // through a future; fn returns absl::Status or absl::StatusOr<T> (any
  // blocking call, or several in a row), e.g.
  //   auto f = client->Async([req](Client& c) { return c.Range(req); });
  // Each call keeps its own CallOptions deadline and retry policy. When
  // max_async_queue calls already wait, the future holds ResourceExhausted
  // at once. Calls still queued when the client is destroyed end with
  // Cancelled "context canceled"; running ones are waited for (give them
  // deadlines).
  template <typename F>
  auto Async(F fn) -> std::future<std::invoke_result_t<F&, Client&>> {
    using R = std::invoke_result_t<F&, Client&>;
    static_assert(std::is_constructible_v<R, absl::Status>,
                  "Async: fn must return absl::Status or absl::StatusOr<T>");
    auto p = std::make_shared<std::promise<R>>();
    std::future<R> f = p->get_future();
    Async(std::move(fn), [p](R r) { p->set_value(std::move(r)); });
    return f;
  }
  // The same with a callback, called on the client's thread with fn's
  // result (or, when refused or cancelled as above, with that error, maybe
  // on the caller's thread). done must not block for long: it holds up
  // the client's other asynchronous calls.
  template <typename F, typename Done>
  void Async(F fn, Done done) {
    using R = std::invoke_result_t<F&, Client&>;
    static_assert(std::is_constructible_v<R, absl::Status>,
                  "Async: fn must return absl::Status or absl::StatusOr<T>");
    // Shared, so fn and done need only be movable (std::function copies).
    auto shared_fn = std::make_shared<F>(std::move(fn));
    auto shared_done = std::make_shared<Done>(std::move(done));
    Submit(
        [this, shared_fn, shared_done] {
          (*shared_done)((*shared_fn)(*this));
        },
        [shared_done](absl::Status why) { (*shared_done)(R(why)); });
  }

  // Cancels calls made with it (see Canceller). Unary calls take one
  // through this setter, which applies to calls started afterwards by any
  // thread until it is reset to nullptr.
  void set_canceller(Canceller* c) { canceller_.store(c); }
  Canceller* canceller() const { return canceller_.load(); }

  // For callers that drive gRPC's asynchronous API themselves (detcd-bench
  // keeps many calls in flight on a few threads): the channel of
  // endpoints()[i], and a context carrying the client's auth token and
  // o's deadline and metadata, as the blocking calls send them. Such calls
  // get no retries and no token refresh.
  std::shared_ptr<grpc::Channel> channel(size_t i) const;
  std::unique_ptr<grpc::ClientContext> NewCallContext(
      const CallOptions& o = {});

 private:
  enum class Retry { kRepeatable, kNonRepeatable };
  explicit Client(Config config);
  absl::Status Init();
  // Gets the first token when a user name and password are configured.
  absl::Status InitAuth();
  absl::Status FetchToken(absl::Time deadline);
  std::string token() const;

  // Waits until some endpoint is connected; returns it (round robin).
  // canceller: the call's, else the client's.
  absl::StatusOr<Conn*> PickConn(absl::Time deadline,
                                 Canceller* canceller = nullptr);
  // The connection for one endpoint (one of ours, or dialed for the call).
  absl::StatusOr<Conn*> ConnFor(absl::string_view endpoint);
  std::unique_ptr<grpc::ClientContext> NewContext(const CallOptions& o);

  // Queues run on the async threads; calls refuse(status) instead when the
  // queue is full or the client is going away.
  void Submit(std::function<void()> run,
              std::function<void(absl::Status)> refuse);
  void AsyncLoop();

  template <typename Resp, typename Call>
  absl::StatusOr<Resp> Unary(Retry retry, const CallOptions& o,
                             size_t request_bytes, Call call,
                             Conn* fixed = nullptr);

  Config config_;
  std::vector<std::unique_ptr<Conn>> conns_;
  std::atomic<size_t> next_{0};
  std::atomic<Canceller*> canceller_{nullptr};
  mutable absl::Mutex mu_;
  std::string token_ ABSL_GUARDED_BY(mu_);
  bool use_token_ = false;
  // Connections to endpoints outside config_.endpoints (Status(ep) etc.).
  std::vector<std::unique_ptr<Conn>> extra_conns_ ABSL_GUARDED_BY(mu_);

  struct AsyncTask {
    std::function<void()> run;
    std::function<void(absl::Status)> refuse;
  };
  absl::Mutex async_mu_;
  std::deque<AsyncTask> async_queue_ ABSL_GUARDED_BY(async_mu_);
  bool async_stopping_ ABSL_GUARDED_BY(async_mu_) = false;
  std::vector<std::thread> async_threads_ ABSL_GUARDED_BY(async_mu_);
};

}  // namespace detcd::client

#endif  // DETCD_CLIENT_CLIENT_H_
