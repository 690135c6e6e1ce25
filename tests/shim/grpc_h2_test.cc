// shim/grpc_h2 against gRPC C++'s own client (etcd's generated stubs):
// unary calls, metadata, status codes and messages, server and
// bidirectional streams, deadlines, cancellation, the message size limit,
// unknown methods, and answers given from other threads.
#include "shim/grpc_h2.h"

#include <arpa/inet.h>
#include <grpcpp/grpcpp.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "etcdserverpb/rpc.grpc.pb.h"
#include "gtest/gtest.h"
#include "tests/shim/grpc_h2_testing.h"

namespace detcd::shim::h2 {
namespace {

namespace pb = etcdserverpb;
using namespace std::chrono_literals;

// Range answers with the request's key, the "token" metadata as its value
// and the peer's address as a second key.
class RangeEcho : public Handler {
 public:
  explicit RangeEcho(CallPtr c) : call_(std::move(c)) {}
  void OnMessage(std::string m) override {
    pb::RangeRequest req;
    if (!req.ParseFromString(m)) {
      call_->Finish(Status{13, "bad request"});
      return;
    }
    if (req.key() == "fail") {
      call_->Finish(Status{9, "etcdserver: 100% failed \xe2\x9c\x97"});
      return;
    }
    pb::RangeResponse resp;
    auto* kv = resp.add_kvs();
    kv->set_key(req.key());
    if (const std::string* t = call_->Find("token")) kv->set_value(*t);
    resp.add_kvs()->set_key(call_->peer());
    resp.set_count(req.limit());
    call_->Reply(resp.SerializeAsString());
  }

 private:
  CallPtr call_;
};

// Watch echoes each request back as a response carrying its key, until
// the client half-closes (or right after a request for key "end").
class WatchEcho : public Handler {
 public:
  explicit WatchEcho(CallPtr c) : call_(std::move(c)) {}
  void OnMessage(std::string m) override {
    pb::WatchRequest req;
    req.ParseFromString(m);
    pb::WatchResponse resp;
    resp.set_watch_id(req.create_request().start_revision());
    resp.add_events()->mutable_kv()->set_key(req.create_request().key());
    call_->Write(resp.SerializeAsString());
    if (req.create_request().key() == "end") call_->Finish(Status{});
  }
  void OnHalfClose() override { call_->Finish(Status{}); }

 private:
  CallPtr call_;
};

// Never answers; notes its cancellation.
class Silent : public Handler {
 public:
  explicit Silent(absl::Notification* cancelled) : cancelled_(cancelled) {}
  void OnMessage(std::string) override {}
  void OnCancel() override {
    if (!cancelled_->HasBeenNotified()) cancelled_->Notify();
  }

 private:
  absl::Notification* cancelled_;
};

class GrpcH2Test : public ::testing::Test {
 protected:
  void StartServer(ServerOptions o = {}) {
    auto s = Server::Create(std::move(o));
    ASSERT_TRUE(s.ok()) << s.status();
    server_ = *std::move(s);
    server_->Register("/etcdserverpb.KV/Range", [](CallPtr c) {
      return std::make_unique<RangeEcho>(std::move(c));
    });
    server_->Register("/etcdserverpb.Watch/Watch", [](CallPtr c) {
      return std::make_unique<WatchEcho>(std::move(c));
    });
    server_->Register("/etcdserverpb.KV/Put", [this](CallPtr) {
      return std::make_unique<Silent>(&cancelled_);
    });
    // Snapshot: 100 pieces of 10 KiB, written from another thread.
    server_->Register(
        "/etcdserverpb.Maintenance/Snapshot", [this](CallPtr c) {
          struct Snap : Handler {
            explicit Snap(CallPtr c, std::vector<std::thread>* t)
                : call(std::move(c)), threads(t) {}
            void OnMessage(std::string) override {
              threads->emplace_back([c = call] {
                for (int i = 0; i < 100; ++i) {
                  pb::SnapshotResponse r;
                  r.set_remaining_bytes(99 - i);
                  r.set_blob(std::string(10 << 10, static_cast<char>('a' + i % 26)));
                  c->Write(r.SerializeAsString());
                }
                c->Finish(Status{});
              });
            }
            CallPtr call;
            std::vector<std::thread>* threads;
          };
          return std::make_unique<Snap>(std::move(c), &threads_);
        });
    server_->Start();

    acceptor_ = std::make_unique<testing::Acceptor>(server_.get());
    grpc::ChannelArguments args;
    args.SetMaxSendMessageSize(64 << 20);
    channel_ = grpc::CreateCustomChannel(
        acceptor_->target(), grpc::InsecureChannelCredentials(), args);
  }

  void TearDown() override {
    channel_.reset();
    if (acceptor_) acceptor_->Stop();
    if (server_) server_->Stop();
    for (std::thread& t : threads_) t.join();
  }

  std::unique_ptr<Server> server_;
  std::unique_ptr<testing::Acceptor> acceptor_;
  std::shared_ptr<grpc::Channel> channel_;
  absl::Notification cancelled_;
  std::vector<std::thread> threads_;
};

TEST_F(GrpcH2Test, UnaryCallWithMetadata) {
  StartServer();
  auto kv = pb::KV::NewStub(channel_);
  grpc::ClientContext ctx;
  ctx.AddMetadata("token", "secret-token");
  // etcd's Go clients send the endpoint URL as the authority.
  ctx.set_authority("http://127.0.0.1:2379");
  pb::RangeRequest req;
  req.set_key("foo");
  req.set_limit(7);
  pb::RangeResponse resp;
  grpc::Status s = kv->Range(&ctx, req, &resp);
  ASSERT_TRUE(s.ok()) << s.error_message();
  ASSERT_EQ(resp.kvs_size(), 2);
  EXPECT_EQ(resp.kvs(0).key(), "foo");
  EXPECT_EQ(resp.kvs(0).value(), "secret-token");
  EXPECT_EQ(resp.kvs(1).key().substr(0, 15), "ipv4:127.0.0.1:");
  EXPECT_EQ(resp.count(), 7);
}

TEST_F(GrpcH2Test, ErrorStatusKeepsItsCodeAndMessage) {
  StartServer();
  auto kv = pb::KV::NewStub(channel_);
  grpc::ClientContext ctx;
  pb::RangeRequest req;
  req.set_key("fail");
  pb::RangeResponse resp;
  grpc::Status s = kv->Range(&ctx, req, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(s.error_message(), "etcdserver: 100% failed \xe2\x9c\x97");
}

TEST_F(GrpcH2Test, UnknownMethodIsUnimplemented) {
  StartServer();
  auto kv = pb::KV::NewStub(channel_);
  grpc::ClientContext ctx;
  pb::DeleteRangeRequest req;
  pb::DeleteRangeResponse resp;
  grpc::Status s = kv->DeleteRange(&ctx, req, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNIMPLEMENTED);
}

TEST_F(GrpcH2Test, ManyCallsAtOnceFromManyThreads) {
  StartServer();
  auto kv = pb::KV::NewStub(channel_);
  std::atomic<int> ok{0};
  std::vector<std::thread> clients;
  for (int t = 0; t < 8; ++t) {
    clients.emplace_back([&, t] {
      for (int i = 0; i < 200; ++i) {
        grpc::ClientContext ctx;
        pb::RangeRequest req;
        req.set_key("k" + std::to_string(t) + "-" + std::to_string(i));
        pb::RangeResponse resp;
        if (kv->Range(&ctx, req, &resp).ok() && resp.kvs_size() == 2 &&
            resp.kvs(0).key() == req.key()) {
          ok.fetch_add(1);
        }
      }
    });
  }
  for (std::thread& t : clients) t.join();
  EXPECT_EQ(ok.load(), 1600);
  ServerStats st = server_->Stats();
  EXPECT_EQ(st.calls, 1600u);
  EXPECT_EQ(st.connections, 1u);
}

TEST_F(GrpcH2Test, BidiStreamEchoesInOrder) {
  StartServer();
  auto w = pb::Watch::NewStub(channel_);
  grpc::ClientContext ctx;
  auto stream = w->Watch(&ctx);
  for (int i = 0; i < 300; ++i) {
    pb::WatchRequest req;
    req.mutable_create_request()->set_key("key" + std::to_string(i));
    req.mutable_create_request()->set_start_revision(i);
    ASSERT_TRUE(stream->Write(req));
  }
  stream->WritesDone();
  pb::WatchResponse resp;
  int n = 0;
  while (stream->Read(&resp)) {
    EXPECT_EQ(resp.watch_id(), n);
    EXPECT_EQ(resp.events(0).kv().key(), "key" + std::to_string(n));
    ++n;
  }
  EXPECT_EQ(n, 300);
  EXPECT_TRUE(stream->Finish().ok());
}

TEST_F(GrpcH2Test, ServerStreamWrittenFromAnotherThread) {
  StartServer();
  auto m = pb::Maintenance::NewStub(channel_);
  grpc::ClientContext ctx;
  auto reader = m->Snapshot(&ctx, pb::SnapshotRequest());
  pb::SnapshotResponse r;
  int n = 0;
  size_t bytes = 0;
  while (reader->Read(&r)) {
    EXPECT_EQ(r.remaining_bytes(), static_cast<uint64_t>(99 - n));
    EXPECT_EQ(r.blob(), std::string(10 << 10, static_cast<char>('a' + n % 26)));
    bytes += r.blob().size();
    ++n;
  }
  EXPECT_EQ(n, 100);
  EXPECT_EQ(bytes, 100u * (10 << 10));
  EXPECT_TRUE(reader->Finish().ok());
}

// Answers given between HoldAnswers and ReleaseAnswers on another thread
// (detcd's engine batches): sent by that thread when the loop sleeps,
// without waking it; past kMaxHeldOps the loop is woken for them. Every
// answer arrives either way.
TEST_F(GrpcH2Test, HeldAnswersAreSentByTheAnsweringThread) {
  absl::Mutex mu;
  std::vector<CallPtr> waiting;
  struct Queue : Handler {
    Queue(CallPtr c, absl::Mutex* mu, std::vector<CallPtr>* w)
        : call(std::move(c)), mu(mu), waiting(w) {}
    void OnMessage(std::string) override {
      absl::MutexLock l(mu);
      waiting->push_back(call);
    }
    CallPtr call;
    absl::Mutex* mu;
    std::vector<CallPtr>* waiting;
  };
  auto s = Server::Create({});
  ASSERT_TRUE(s.ok()) << s.status();
  server_ = *std::move(s);
  server_->Register("/etcdserverpb.KV/DeleteRange", [&](CallPtr c) {
    return std::make_unique<Queue>(std::move(c), &mu, &waiting);
  });
  server_->Start();
  acceptor_ = std::make_unique<testing::Acceptor>(server_.get());
  channel_ = grpc::CreateChannel(acceptor_->target(),
                                 grpc::InsecureChannelCredentials());
  // Answers `n` waiting calls in one hold, once the loop had time to sleep
  // (bounded waits).
  auto answer = [&](size_t n) {
    absl::MutexLock l(&mu);
    auto enough = [&] { return waiting.size() >= n; };
    EXPECT_TRUE(
        mu.AwaitWithTimeout(absl::Condition(&enough), absl::Seconds(30)));
    std::vector<CallPtr> calls;
    calls.swap(waiting);
    mu.Unlock();
    absl::SleepFor(absl::Milliseconds(20));
    server_->HoldAnswers();
    for (size_t i = 0; i < calls.size(); ++i) {
      pb::DeleteRangeResponse r;
      r.set_deleted(static_cast<int64_t>(i + 1));
      calls[i]->Reply(r.SerializeAsString());
    }
    server_->ReleaseAnswers();
    mu.Lock();
  };
  auto kv = pb::KV::NewStub(channel_);
  auto call = [&] {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() +
                     std::chrono::seconds(30));
    pb::DeleteRangeResponse r;
    return kv->DeleteRange(&ctx, pb::DeleteRangeRequest(), &r);
  };
  // One at a time: two ops each, sent by the answering thread.
  const ServerStats before = server_->Stats();
  for (int i = 0; i < 5; ++i) {
    std::thread engine([&] { answer(1); });
    EXPECT_TRUE(call().ok());
    engine.join();
  }
  const ServerStats after = server_->Stats();
  // (The loop may still be in its turn when a hold ends: then it is woken
  // as before; on a machine that busy the test cannot tell.)
  EXPECT_GE(after.sent_by_callers - before.sent_by_callers, 3u);
  EXPECT_LE(after.wakeups - before.wakeups, 2u);
  // Three at once: six ops, past the bound, so the loop is woken.
  std::thread engine([&] { answer(3); });
  std::vector<std::thread> clients;
  std::atomic<int> ok{0};
  for (int i = 0; i < 3; ++i) {
    clients.emplace_back([&] {
      if (call().ok()) ++ok;
    });
  }
  for (std::thread& t : clients) t.join();
  engine.join();
  EXPECT_EQ(ok.load(), 3);
  EXPECT_EQ(server_->Stats().sent_by_callers, after.sent_by_callers);
}

TEST_F(GrpcH2Test, DeadlineCancelsTheCall) {
  StartServer();
  auto kv = pb::KV::NewStub(channel_);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + 200ms);
  pb::PutResponse resp;
  grpc::Status s = kv->Put(&ctx, pb::PutRequest(), &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  EXPECT_TRUE(cancelled_.WaitForNotificationWithTimeout(absl::Seconds(10)));
}

TEST_F(GrpcH2Test, ClientCancelReachesTheHandler) {
  StartServer();
  auto kv = pb::KV::NewStub(channel_);
  grpc::ClientContext ctx;
  std::thread canceller([&] {
    std::this_thread::sleep_for(100ms);
    ctx.TryCancel();
  });
  pb::PutResponse resp;
  grpc::Status s = kv->Put(&ctx, pb::PutRequest(), &resp);
  canceller.join();
  EXPECT_EQ(s.error_code(), grpc::StatusCode::CANCELLED);
  EXPECT_TRUE(cancelled_.WaitForNotificationWithTimeout(absl::Seconds(10)));
}

TEST_F(GrpcH2Test, MessageOverTheLimitIsRefusedWithGrpcGoText) {
  ServerOptions o;
  o.max_recv_message_bytes = 1000;
  StartServer(std::move(o));
  auto kv = pb::KV::NewStub(channel_);
  grpc::ClientContext ctx;
  pb::RangeRequest req;
  req.set_key(std::string(2000, 'x'));
  pb::RangeResponse resp;
  grpc::Status s = kv->Range(&ctx, req, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(s.error_message(),
            "grpc: received message larger than max (2003 vs. 1000)");
  // The connection still serves calls.
  grpc::ClientContext ctx2;
  req.set_key("small");
  EXPECT_TRUE(kv->Range(&ctx2, req, &resp).ok());
}

TEST_F(GrpcH2Test, LargeMessagesBothWays) {
  ServerOptions o;
  o.max_recv_message_bytes = 8 << 20;
  StartServer(std::move(o));
  auto kv = pb::KV::NewStub(channel_);
  grpc::ClientContext ctx;
  pb::RangeRequest req;
  req.set_key(std::string(3 << 20, 'y'));
  pb::RangeResponse resp;
  grpc::Status s = kv->Range(&ctx, req, &resp);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(resp.kvs(0).key(), req.key());
}

TEST_F(GrpcH2Test, StopCancelsOpenCalls) {
  StartServer();
  auto kv = pb::KV::NewStub(channel_);
  grpc::ClientContext ctx;
  pb::PutResponse resp;
  grpc::Status s;
  std::thread caller([&] { s = kv->Put(&ctx, pb::PutRequest(), &resp); });
  std::this_thread::sleep_for(200ms);
  server_->Stop();
  caller.join();
  EXPECT_FALSE(s.ok());
  EXPECT_TRUE(cancelled_.HasBeenNotified());
}

// gRPC C++'s client resets each stream the server ends before it
// half-closed; 1200 of them on one connection once tripped nghttp2's
// rapid-reset guard (1000 at once), which tore the connection down with
// GOAWAY INTERNAL_ERROR.
TEST_F(GrpcH2Test, StreamsEndingBeforeTheClientHalfCloses) {
  StartServer();
  EXPECT_EQ(testing::StreamsEndedByTheServer(channel_, 4, 300), 1200);
}

TEST(GrpcH2Wire, Timeouts) {
  EXPECT_EQ(ParseGrpcTimeoutMs("100m"), 100);
  EXPECT_EQ(ParseGrpcTimeoutMs("5S"), 5000);
  EXPECT_EQ(ParseGrpcTimeoutMs("2M"), 120000);
  EXPECT_EQ(ParseGrpcTimeoutMs("1H"), 3600000);
  EXPECT_EQ(ParseGrpcTimeoutMs("1500u"), 2);
  EXPECT_EQ(ParseGrpcTimeoutMs("1n"), 1);
  EXPECT_EQ(ParseGrpcTimeoutMs("m"), -1);
  EXPECT_EQ(ParseGrpcTimeoutMs("123456789S"), -1);
  EXPECT_EQ(ParseGrpcTimeoutMs("12x"), -1);
}

TEST(GrpcH2Wire, PercentEncoding) {
  EXPECT_EQ(PercentEncode("plain text"), "plain text");
  EXPECT_EQ(PercentEncode("100%"), "100%25");
  EXPECT_EQ(PercentEncode("a\nb\xc3\xa9"), "a%0Ab%C3%A9");
}

}  // namespace
}  // namespace detcd::shim::h2
