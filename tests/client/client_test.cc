// detcd_client against in-process fake etcd servers: the retry policy
// (reads retried on Unavailable, writes not), fail-over past a dead
// endpoint, deadlines, auth token refresh, the request size limit, and a
// watch resuming on a new stream from the revision after its last event.
#include <grpcpp/grpcpp.h>

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "detcd/client.h"
#include "detcd/errors.h"
#include "detcd/watch.h"
#include "etcdserverpb/rpc.grpc.pb.h"
#include "gtest/gtest.h"

namespace detcd::client {
namespace {

namespace pb = etcdserverpb;

// A KV service whose answers the test scripts.
class FakeKv final : public pb::KV::Service {
 public:
  grpc::Status Range(grpc::ServerContext* ctx, const pb::RangeRequest*,
                     pb::RangeResponse* resp) override {
    ++ranges;
    last_token = Token(ctx);
    if (!required_token.empty() && last_token != required_token) {
      return grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                          "etcdserver: invalid auth token");
    }
    if (fail_reads) {
      return grpc::Status(grpc::StatusCode::UNAVAILABLE,
                          "etcdserver: no leader");
    }
    resp->mutable_header()->set_revision(7);
    return grpc::Status::OK;
  }
  grpc::Status Put(grpc::ServerContext*, const pb::PutRequest*,
                   pb::PutResponse* resp) override {
    ++puts;
    if (fail_writes) {
      return grpc::Status(grpc::StatusCode::UNAVAILABLE,
                          "etcdserver: request timed out");
    }
    resp->mutable_header()->set_revision(8);
    return grpc::Status::OK;
  }

  static std::string Token(grpc::ServerContext* ctx) {
    auto it = ctx->client_metadata().find("token");
    if (it == ctx->client_metadata().end()) return "";
    return std::string(it->second.data(), it->second.size());
  }

  std::atomic<int> ranges{0}, puts{0};
  std::atomic<bool> fail_reads{false}, fail_writes{false};
  std::string required_token;
  std::string last_token;
};

class FakeAuth final : public pb::Auth::Service {
 public:
  grpc::Status Authenticate(grpc::ServerContext*,
                            const pb::AuthenticateRequest* req,
                            pb::AuthenticateResponse* resp) override {
    int n = ++calls;
    if (req->password() != "pw") {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                          "etcdserver: authentication failed, invalid user "
                          "ID or password");
    }
    resp->set_token("t" + std::to_string(n));
    return grpc::Status::OK;
  }
  std::atomic<int> calls{0};
};

// Watch: on the first stream, a created response, one event at revision
// 5, then the stream fails; later streams record their create request.
class FakeWatch final : public pb::Watch::Service {
 public:
  grpc::Status Watch(
      grpc::ServerContext* ctx,
      grpc::ServerReaderWriter<pb::WatchResponse, pb::WatchRequest>* s)
      override {
    int n = ++streams;
    pb::WatchRequest req;
    if (!s->Read(&req)) return grpc::Status::OK;
    {
      absl::MutexLock l(&mu);
      creates.push_back(req.create_request());
    }
    pb::WatchResponse created;
    created.set_created(true);
    created.set_watch_id(0);
    created.mutable_header()->set_revision(4);
    s->Write(created);
    if (n == 1) {
      pb::WatchResponse ev;
      ev.set_watch_id(0);
      ev.mutable_header()->set_revision(5);
      auto* e = ev.add_events();
      e->mutable_kv()->set_key("k");
      e->mutable_kv()->set_mod_revision(5);
      s->Write(ev);
      return grpc::Status(grpc::StatusCode::UNAVAILABLE, "member went away");
    }
    pb::WatchResponse ev;
    ev.set_watch_id(0);
    ev.mutable_header()->set_revision(6);
    auto* e = ev.add_events();
    e->mutable_kv()->set_key("k");
    e->mutable_kv()->set_mod_revision(6);
    s->Write(ev);
    while (!ctx->IsCancelled()) absl::SleepFor(absl::Milliseconds(10));
    return grpc::Status::OK;
  }
  std::atomic<int> streams{0};
  absl::Mutex mu;
  std::vector<pb::WatchCreateRequest> creates;
};

struct Server {
  FakeKv kv;
  FakeAuth auth;
  FakeWatch watch;
  std::unique_ptr<grpc::Server> server;
  std::string endpoint;

  Server() {
    grpc::ServerBuilder b;
    int port = 0;
    b.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(),
                       &port);
    b.RegisterService(&kv);
    b.RegisterService(&auth);
    b.RegisterService(&watch);
    server = b.BuildAndStart();
    endpoint = "127.0.0.1:" + std::to_string(port);
  }
  ~Server() { server->Shutdown(); }
};

// A port nothing listens on.
std::string DeadEndpoint() {
  Server s;
  std::string ep = s.endpoint;
  return ep;  // the server shuts down with s
}

std::unique_ptr<Client> MustNew(Config c) {
  auto cli = Client::New(std::move(c));
  EXPECT_TRUE(cli.ok()) << cli.status();
  return std::move(*cli);
}

TEST(Client, ReadsAreRetriedOnUnavailableAcrossEndpoints) {
  Server a, b;
  a.kv.fail_reads = true;
  Config c;
  c.endpoints = {a.endpoint, b.endpoint};
  auto cli = MustNew(c);
  for (int i = 0; i < 4; ++i) {
    auto r = cli->Range(pb::RangeRequest(), CallOptions::Timeout(absl::Seconds(5)));
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->header().revision(), 7);
  }
  EXPECT_GE(b.kv.ranges.load(), 4);
}

TEST(Client, ReadsRetryUntilTheDeadline) {
  Server a;
  a.kv.fail_reads = true;
  Config c;
  c.endpoints = {a.endpoint};
  auto cli = MustNew(c);
  auto r = cli->Range(pb::RangeRequest(),
                      CallOptions::Timeout(absl::Milliseconds(400)));
  ASSERT_FALSE(r.ok());
  // As clientv3: retried until the deadline, which is the error.
  EXPECT_EQ(ErrorText(r.status()), "context deadline exceeded");
  EXPECT_GT(a.kv.ranges.load(), 2);
}

TEST(Client, ReadsWithoutADeadlineStopAfterClientv3sRetryLimit) {
  Server a;
  a.kv.fail_reads = true;
  Config c;
  c.endpoints = {a.endpoint};
  auto cli = MustNew(c);
  auto r = cli->Range(pb::RangeRequest());  // no deadline
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(r.status().message(), "etcdserver: no leader");
  EXPECT_EQ(a.kv.ranges.load(), 101);  // the call and 100 retries
}

TEST(Client, WritesAreNotRetriedOnceSent) {
  Server a;
  a.kv.fail_writes = true;
  Config c;
  c.endpoints = {a.endpoint};
  auto cli = MustNew(c);
  auto r = cli->Put(pb::PutRequest(), CallOptions::Timeout(absl::Seconds(5)));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(ErrorText(r.status()), "etcdserver: request timed out");
  EXPECT_EQ(a.kv.puts.load(), 1);
}

TEST(Client, DeadEndpointIsSkipped) {
  Server b;
  Config c;
  c.endpoints = {DeadEndpoint(), b.endpoint};
  auto cli = MustNew(c);
  for (int i = 0; i < 3; ++i) {
    auto r = cli->Put(pb::PutRequest(), CallOptions::Timeout(absl::Seconds(5)));
    ASSERT_TRUE(r.ok()) << r.status();
  }
  EXPECT_EQ(b.kv.puts.load(), 3);
}

TEST(Client, NoReachableEndpointEndsAtTheDeadline) {
  Config c;
  c.endpoints = {DeadEndpoint()};
  auto cli = MustNew(c);
  absl::Time start = absl::Now();
  auto r = cli->Range(pb::RangeRequest(),
                      CallOptions::Timeout(absl::Milliseconds(300)));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(ErrorText(r.status()), "context deadline exceeded");
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(290));
}

TEST(Client, RequestsOverTheSendLimitAreRefusedLocally) {
  Server a;
  Config c;
  c.endpoints = {a.endpoint};
  c.max_send_bytes = 100;
  auto cli = MustNew(c);
  pb::PutRequest p;
  p.set_value(std::string(200, 'x'));
  auto r = cli->Put(p, CallOptions::Timeout(absl::Seconds(5)));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(ErrorText(r.status()),
            "rpc error: code = ResourceExhausted desc = trying to send "
            "message larger than max (203 vs. 100)");
  EXPECT_EQ(a.kv.puts.load(), 0);
}

TEST(Client, AuthTokenIsSentAndRefreshed) {
  Server a;
  a.kv.required_token = "t2";  // the first token is "expired"
  Config c;
  c.endpoints = {a.endpoint};
  c.username = "u";
  c.password = "pw";
  auto cli = MustNew(c);
  EXPECT_EQ(a.auth.calls.load(), 1);
  auto r = cli->Range(pb::RangeRequest(), CallOptions::Timeout(absl::Seconds(5)));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(a.auth.calls.load(), 2);
  EXPECT_EQ(a.kv.last_token, "t2");
}

TEST(Client, WrongPasswordFailsCreation) {
  Server a;
  Config c;
  c.endpoints = {a.endpoint};
  c.username = "u";
  c.password = "bad";
  auto cli = Client::New(c);
  ASSERT_FALSE(cli.ok());
  EXPECT_EQ(ErrorText(cli.status()),
            "etcdserver: authentication failed, invalid user ID or password");
}

TEST(Watcher, ResumesAfterItsLastEventOnANewStream) {
  Server a;
  Config c;
  c.endpoints = {a.endpoint};
  auto cli = MustNew(c);
  Watcher w(cli.get());
  pb::WatchCreateRequest req;
  req.set_key("k");
  w.Add(req);
  std::vector<int64_t> revs;
  WatchEvent ev;
  while (revs.size() < 2 && w.Next(&ev)) {
    ASSERT_TRUE(ev.has_response);
    for (const auto& e : ev.response.events()) {
      revs.push_back(e.kv().mod_revision());
    }
  }
  EXPECT_EQ(revs, (std::vector<int64_t>{5, 6}));
  absl::MutexLock l(&a.watch.mu);
  ASSERT_EQ(a.watch.creates.size(), 2u);
  EXPECT_EQ(a.watch.creates[0].start_revision(), 0);
  EXPECT_EQ(a.watch.creates[1].start_revision(), 6);
}

}  // namespace
}  // namespace detcd::client
