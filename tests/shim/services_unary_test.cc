// The unary calls of shim/services.cc on a real one-member EtcdServer behind
// an in-process gRPC server: answers and errors come back once each, the
// engine's command carries the client's request as a copy would (the
// request is lent to it, not copied), calls still waiting for the engine
// are answered "server stopped" by Shutdown and "too many requests" when
// the engine's backlog is full, and many calls in flight at once from
// several threads are all answered (the call's references).
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "engine/env/env.h"
#include "engine/server/etcd_server.h"
#include "etcdserverpb/raft_internal.pb.h"
#include "etcdserverpb/rpc.grpc.pb.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "shim/engine_loop.h"
#include "shim/posix_disk.h"
#include "shim/real_clock.h"
#include "shim/services.h"

namespace detcd::shim {
namespace {

namespace pb = etcdserverpb;

class NoPeers final : public env::Transport {
 public:
  void Send(uint64_t, std::string) override {}
};

std::chrono::system_clock::time_point In(int seconds) {
  return std::chrono::system_clock::now() + std::chrono::seconds(seconds);
}

class ServicesUnaryTest : public ::testing::Test {
 protected:
  void SetUp() override {}
  void TearDown() override { Stop(); }

  void Start(size_t max_client_backlog = 100000) {
    char tmpl[] = "/tmp/detcd-services-unary-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    disk_ = std::make_unique<PosixDisk>(dir_);
    server::EtcdServerOptions so;
    so.node.id = 1;
    so.node.data_dir = "member";
    so.node.initial_voters = {1};
    so.initial_members = {{1, "t", {"http://127.0.0.1:2380"}, {}, false}};
    so.cluster_id = 0x1234;
    so.tick_ns = 100'000'000;
    ASSERT_TRUE(so.Validate().ok());
    env::Env env{&clock_, disk_.get(), &peers_, &rng_};
    server_ = std::make_unique<server::EtcdServer>(env, so);
    EngineLoop::Options lo;
    lo.tick_ns = so.tick_ns;
    lo.max_client_backlog = max_client_backlog;
    loop_ = std::make_unique<EngineLoop>(lo, [this] { server_->Tick(); });
    loop_->Start();
    absl::Status started;
    loop_->RunSync([&] {
      started = server_->Start();
      for (int i = 0; started.ok() && i < 2 * so.node.election_ticks; ++i) {
        server_->Tick();
      }
      // The commands as the engine proposed them, in order.
      server_->set_on_ack([this](std::string_view cmd) {
        absl::MutexLock l(&mu_);
        acked_.emplace_back(cmd);
      });
    });
    ASSERT_TRUE(started.ok()) << started;
    services_ = std::make_unique<Services>(loop_.get(), server_.get(),
                                           Services::Options{}, nullptr);
    grpc::ServerBuilder b;
    for (grpc::Service* s : services_->services()) b.RegisterService(s);
    grpc_ = b.BuildAndStart();
    ASSERT_NE(grpc_, nullptr);
    grpc::ChannelArguments args;
    kv_ = pb::KV::NewStub(grpc_->InProcessChannel(args));
    bool ok = false;
    for (int i = 0; i < 100 && !ok; ++i) {
      grpc::ClientContext ctx;
      ctx.set_deadline(In(2));
      pb::PutRequest p;
      p.set_key("ready");
      pb::PutResponse r;
      ok = kv_->Put(&ctx, p, &r).ok();
      if (!ok) std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    ASSERT_TRUE(ok) << "the member never served a Put";
  }

  void Stop() {
    if (services_) services_->Shutdown();
    if (grpc_) grpc_->Shutdown(In(5));
    kv_.reset();
    if (loop_) loop_->Stop(nullptr);
    grpc_.reset();
    services_.reset();
    loop_.reset();
    server_.reset();
    disk_.reset();
    if (!dir_.empty()) {
      std::error_code ec;
      std::filesystem::remove_all(dir_, ec);
      dir_.clear();
    }
  }

  // Holds the engine thread until the returned notification is notified.
  std::shared_ptr<absl::Notification> BlockEngine() {
    auto release = std::make_shared<absl::Notification>();
    auto running = std::make_shared<absl::Notification>();
    EXPECT_TRUE(loop_->Post([release, running] {
      running->Notify();
      release->WaitForNotification();
    }));
    running->WaitForNotification();
    return release;
  }

  // Waits (bounded) until n tasks are queued for the engine.
  bool AwaitBacklog(size_t n) {
    for (int i = 0; i < 1000; ++i) {
      if (loop_->backlog() >= n) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return false;
  }

  std::vector<std::string> Acked() {
    absl::MutexLock l(&mu_);
    return acked_;
  }

  // Asynchronous puts; each records its one answer.
  struct Pending {
    grpc::ClientContext ctx;
    pb::PutRequest req;
    pb::PutResponse resp;
    std::atomic<int> answers{0};
    grpc::Status status;
    absl::Notification done;
  };
  std::vector<std::unique_ptr<Pending>> PutAsync(int n) {
    std::vector<std::unique_ptr<Pending>> v;
    for (int i = 0; i < n; ++i) {
      auto p = std::make_unique<Pending>();
      p->ctx.set_deadline(In(30));
      p->req.set_key(absl::StrCat("async", i));
      p->req.set_value("v");
      Pending* raw = p.get();
      kv_->async()->Put(&raw->ctx, &raw->req, &raw->resp,
                        [raw](grpc::Status s) {
                          raw->status = std::move(s);
                          raw->answers.fetch_add(1);
                          raw->done.Notify();
                        });
      v.push_back(std::move(p));
    }
    return v;
  }

  std::string dir_;
  RealClock clock_;
  env::SeededRng rng_{7};
  NoPeers peers_;
  std::unique_ptr<PosixDisk> disk_;
  std::unique_ptr<server::EtcdServer> server_;
  std::unique_ptr<EngineLoop> loop_;
  std::unique_ptr<Services> services_;
  std::unique_ptr<grpc::Server> grpc_;
  std::unique_ptr<pb::KV::Stub> kv_;
  absl::Mutex mu_;
  std::vector<std::string> acked_ ABSL_GUARDED_BY(mu_);
};

TEST_F(ServicesUnaryTest, KvCallsAnswerAndErrorsKeepEtcdText) {
  Start();
  {
    grpc::ClientContext ctx;
    pb::PutRequest p;
    p.set_key("k");
    p.set_value("v1");
    pb::PutResponse r;
    ASSERT_TRUE(kv_->Put(&ctx, p, &r).ok());
    EXPECT_EQ(r.header().cluster_id(), 0x1234u);
    EXPECT_EQ(r.header().member_id(), 1u);
  }
  {
    grpc::ClientContext ctx;
    pb::PutRequest p;
    p.set_key("k");
    p.set_value("v2");
    p.set_prev_kv(true);
    pb::PutResponse r;
    ASSERT_TRUE(kv_->Put(&ctx, p, &r).ok());
    EXPECT_EQ(r.prev_kv().value(), "v1");
  }
  {
    grpc::ClientContext ctx;
    pb::TxnRequest t;
    auto* c = t.add_compare();
    c->set_key("k");
    c->set_target(pb::Compare::VALUE);
    c->set_result(pb::Compare::EQUAL);
    c->set_value("v2");
    auto* put = t.add_success()->mutable_request_put();
    put->set_key("k");
    put->set_value("v3");
    pb::TxnResponse r;
    ASSERT_TRUE(kv_->Txn(&ctx, t, &r).ok());
    EXPECT_TRUE(r.succeeded());
  }
  for (bool serializable : {false, true}) {
    grpc::ClientContext ctx;
    pb::RangeRequest q;
    q.set_key("k");
    q.set_serializable(serializable);
    pb::RangeResponse r;
    ASSERT_TRUE(kv_->Range(&ctx, q, &r).ok());
    ASSERT_EQ(r.kvs_size(), 1);
    EXPECT_EQ(r.kvs(0).value(), "v3");
  }
  {
    grpc::ClientContext ctx;
    pb::DeleteRangeRequest d;
    d.set_key("k");
    pb::DeleteRangeResponse r;
    ASSERT_TRUE(kv_->DeleteRange(&ctx, d, &r).ok());
    EXPECT_EQ(r.deleted(), 1);
  }
  {
    grpc::ClientContext ctx;
    pb::PutRequest p;  // no key
    pb::PutResponse r;
    grpc::Status s = kv_->Put(&ctx, p, &r);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_EQ(s.error_message(), "etcdserver: key is not provided");
  }
}

// The request is lent to the raft command for its encoding: the command's
// bytes are those of a command holding a copy, and the caller's request
// is untouched.
TEST_F(ServicesUnaryTest, CommandHoldsTheRequestAsACopyWould) {
  Start();
  pb::PutRequest p;
  p.set_key("big");
  p.set_value(std::string(200'000, 'x'));
  p.set_lease(0);
  p.set_prev_kv(true);
  const size_t before = Acked().size();
  {
    grpc::ClientContext ctx;
    pb::PutResponse r;
    ASSERT_TRUE(kv_->Put(&ctx, p, &r).ok());
  }
  pb::TxnRequest t;
  t.add_success()->mutable_request_put()->set_key("t");
  t.mutable_success(0)->mutable_request_put()->set_value("tv");
  {
    grpc::ClientContext ctx;
    pb::TxnResponse r;
    ASSERT_TRUE(kv_->Txn(&ctx, t, &r).ok());
  }
  pb::DeleteRangeRequest d;
  d.set_key("big");
  {
    grpc::ClientContext ctx;
    pb::DeleteRangeResponse r;
    ASSERT_TRUE(kv_->DeleteRange(&ctx, d, &r).ok());
  }
  const std::vector<std::string> acked = Acked();
  ASSERT_EQ(acked.size(), before + 3);
  pb::InternalRaftRequest got;
  ASSERT_TRUE(got.ParseFromString(acked[before]));
  pb::InternalRaftRequest want;
  *want.mutable_header() = got.header();
  *want.mutable_put() = p;
  EXPECT_EQ(acked[before], want.SerializeAsString());
  EXPECT_NE(got.header().id(), 0u);

  ASSERT_TRUE(got.ParseFromString(acked[before + 1]));
  want.Clear();
  *want.mutable_header() = got.header();
  *want.mutable_txn() = t;
  EXPECT_EQ(acked[before + 1], want.SerializeAsString());

  ASSERT_TRUE(got.ParseFromString(acked[before + 2]));
  want.Clear();
  *want.mutable_header() = got.header();
  *want.mutable_delete_range() = d;
  EXPECT_EQ(acked[before + 2], want.SerializeAsString());
}

TEST_F(ServicesUnaryTest, ShutdownAnswersCallsWaitingForTheEngine) {
  Start();
  std::shared_ptr<absl::Notification> release = BlockEngine();
  std::vector<std::unique_ptr<Pending>> calls = PutAsync(5);
  ASSERT_TRUE(AwaitBacklog(5));
  services_->Shutdown();
  for (auto& c : calls) {
    ASSERT_TRUE(c->done.WaitForNotificationWithTimeout(absl::Seconds(10)));
    EXPECT_EQ(c->status.error_message(), "etcdserver: server stopped");
  }
  // The engine then runs the calls' tasks: they find them answered.
  release->Notify();
  ASSERT_TRUE(loop_->RunSync([] {}));
  for (auto& c : calls) EXPECT_EQ(c->answers.load(), 1);
}

TEST_F(ServicesUnaryTest, FullBacklogAnswersTooManyRequests) {
  Start(/*max_client_backlog=*/3);
  std::shared_ptr<absl::Notification> release = BlockEngine();
  std::vector<std::unique_ptr<Pending>> calls = PutAsync(6);
  int refused = 0;
  // The refused ones are answered at once; the queued ones once the engine
  // runs again.
  for (auto& c : calls) {
    if (c->done.WaitForNotificationWithTimeout(absl::Milliseconds(200))) {
      EXPECT_EQ(c->status.error_message(), "etcdserver: too many requests");
      ++refused;
    }
  }
  EXPECT_EQ(refused, 3);
  release->Notify();
  int ok = 0;
  for (auto& c : calls) {
    ASSERT_TRUE(c->done.WaitForNotificationWithTimeout(absl::Seconds(10)));
    EXPECT_EQ(c->answers.load(), 1);
    if (c->status.ok()) ++ok;
  }
  EXPECT_EQ(ok, 3);
}

TEST_F(ServicesUnaryTest, ManyCallsInFlightAreAllAnswered) {
  Start();
  constexpr int kThreads = 4, kCalls = 100;
  std::vector<std::thread> threads;
  std::atomic<int> ok{0};
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::vector<std::unique_ptr<Pending>> calls;
      for (int i = 0; i < kCalls; ++i) {
        auto p = std::make_unique<Pending>();
        p->ctx.set_deadline(In(30));
        p->req.set_key(absl::StrCat("t", t, "-", i % 10));
        p->req.set_value(std::string(100, 'a' + t));
        Pending* raw = p.get();
        kv_->async()->Put(&raw->ctx, &raw->req, &raw->resp,
                          [raw](grpc::Status s) {
                            raw->status = std::move(s);
                            raw->answers.fetch_add(1);
                            raw->done.Notify();
                          });
        calls.push_back(std::move(p));
      }
      for (auto& c : calls) {
        if (c->done.WaitForNotificationWithTimeout(absl::Seconds(30)) &&
            c->status.ok() && c->answers.load() == 1) {
          ok.fetch_add(1);
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(ok.load(), kThreads * kCalls);
  grpc::ClientContext ctx;
  pb::RangeRequest q;
  q.set_key("t");
  q.set_range_end("u");
  q.set_count_only(true);
  pb::RangeResponse r;
  ASSERT_TRUE(kv_->Range(&ctx, q, &r).ok());
  EXPECT_EQ(r.count(), kThreads * 10);
}

}  // namespace
}  // namespace detcd::shim
