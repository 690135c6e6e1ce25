// The native transport's relay (shim/grpc_h2_proxy) in front of a gRPC C++
// server: streams in both directions, slow readers (the relay pauses and
// resumes), clients that cancel mid-stream, over and over (a relay that
// started an operation after gRPC ended its call crashed detcd).
#include "shim/grpc_h2_proxy.h"


#include <atomic>
#include <chrono>
#include <thread>

#include <grpcpp/grpcpp.h>

#include "etcdserverpb/rpc.grpc.pb.h"
#include "gtest/gtest.h"
#include "tests/shim/grpc_h2_testing.h"

namespace detcd::shim::h2 {
namespace {

namespace pb = etcdserverpb;
using namespace std::chrono_literals;

constexpr int kChunks = 200;
constexpr size_t kChunkBytes = 8 << 10;

// Snapshot: kChunks pieces; Watch: echoes each request's key; Range:
// answers with the "token" metadata and the relayed CN.
class Backend : public pb::Maintenance::CallbackService {
 public:
  grpc::ServerWriteReactor<pb::SnapshotResponse>* Snapshot(
      grpc::CallbackServerContext*, const pb::SnapshotRequest*) override {
    class W : public grpc::ServerWriteReactor<pb::SnapshotResponse> {
     public:
      W() { Next(); }
      void OnWriteDone(bool ok) override {
        if (!ok) {
          Finish(grpc::Status::CANCELLED);
          return;
        }
        Next();
      }
      void OnDone() override { delete this; }

     private:
      void Next() {
        if (i_ == kChunks) {
          Finish(grpc::Status::OK);
          return;
        }
        r_.set_remaining_bytes(kChunks - 1 - i_);
        r_.set_blob(std::string(kChunkBytes, static_cast<char>('a' + i_ % 26)));
        ++i_;
        StartWrite(&r_);
      }
      int i_ = 0;
      pb::SnapshotResponse r_;
    };
    return new W();
  }
};

class WatchBackend : public pb::Watch::CallbackService {
 public:
  grpc::ServerBidiReactor<pb::WatchRequest, pb::WatchResponse>* Watch(
      grpc::CallbackServerContext*) override {
    class R : public grpc::ServerBidiReactor<pb::WatchRequest,
                                             pb::WatchResponse> {
     public:
      R() { StartRead(&req_); }
      void OnReadDone(bool ok) override {
        if (!ok) {
          Finish(grpc::Status::OK);
          return;
        }
        resp_.Clear();
        resp_.add_events()->mutable_kv()->set_key(
            req_.create_request().key());
        StartWrite(&resp_);
      }
      void OnWriteDone(bool ok) override {
        if (!ok) {
          Finish(grpc::Status::CANCELLED);
        } else if (req_.create_request().key() == "end") {
          Finish(grpc::Status::OK);  // ends right after its answer
        } else {
          StartRead(&req_);
        }
      }
      void OnDone() override { delete this; }

     private:
      pb::WatchRequest req_;
      pb::WatchResponse resp_;
    };
    return new R();
  }
};

class KvBackend : public pb::KV::CallbackService {
 public:
  grpc::ServerUnaryReactor* Range(grpc::CallbackServerContext* ctx,
                                  const pb::RangeRequest*,
                                  pb::RangeResponse* resp) override {
    const auto& md = ctx->client_metadata();
    for (const char* k : {"token", kProxiedCnKey}) {
      auto it = md.find(k);
      auto* kv = resp->add_kvs();
      kv->set_key(k);
      if (it != md.end()) {
        kv->set_value(std::string(it->second.data(), it->second.size()));
      }
    }
    auto* r = ctx->DefaultReactor();
    r->Finish(grpc::Status::OK);
    return r;
  }
};

class RelayTest : public ::testing::Test {
 protected:
  void SetUp() override {
    grpc::ServerBuilder b;
    b.RegisterService(&snap_);
    b.RegisterService(&watch_);
    b.RegisterService(&kv_);
    backend_ = b.BuildAndStart();
    ASSERT_NE(backend_, nullptr);
    ServerOptions o;
    o.fallback = ProxyTo(backend_->InProcessChannel(grpc::ChannelArguments()));
    auto s = Server::Create(std::move(o));
    ASSERT_TRUE(s.ok());
    server_ = *std::move(s);
    server_->Start();

    acceptor_ = std::make_unique<testing::Acceptor>(server_.get(),
                                                    "client-cn");
    channel_ = grpc::CreateChannel(acceptor_->target(),
                                   grpc::InsecureChannelCredentials());
  }

  void TearDown() override {
    channel_.reset();
    acceptor_->Stop();
    server_->Stop();
    backend_->Shutdown(std::chrono::system_clock::now() + 5s);
  }

  // Reads a Snapshot stream; after `pause_after` pieces sleeps `pause`;
  // cancels after `cancel_after` (-1: reads to the end). Returns the pieces
  // read and the status.
  std::pair<int, grpc::Status> ReadSnapshot(int pause_after,
                                            std::chrono::milliseconds pause,
                                            int cancel_after) {
    auto m = pb::Maintenance::NewStub(channel_);
    grpc::ClientContext ctx;
    auto reader = m->Snapshot(&ctx, pb::SnapshotRequest());
    pb::SnapshotResponse r;
    int n = 0;
    while (reader->Read(&r)) {
      EXPECT_EQ(r.blob(),
                std::string(kChunkBytes, static_cast<char>('a' + n % 26)));
      ++n;
      if (n == pause_after) std::this_thread::sleep_for(pause);
      if (n == cancel_after) ctx.TryCancel();
    }
    return {n, reader->Finish()};
  }

  Backend snap_;
  WatchBackend watch_;
  KvBackend kv_;
  std::unique_ptr<grpc::Server> backend_;
  std::unique_ptr<Server> server_;
  std::unique_ptr<testing::Acceptor> acceptor_;
  std::shared_ptr<grpc::Channel> channel_;
};

TEST_F(RelayTest, UnaryCarriesMetadataAndTheVerifiedCn) {
  auto kv = pb::KV::NewStub(channel_);
  grpc::ClientContext ctx;
  ctx.AddMetadata("token", "tok");
  ctx.AddMetadata(kProxiedCnKey, "forged");  // the client's is dropped
  pb::RangeResponse resp;
  ASSERT_TRUE(kv->Range(&ctx, pb::RangeRequest(), &resp).ok());
  ASSERT_EQ(resp.kvs_size(), 2);
  EXPECT_EQ(resp.kvs(0).value(), "tok");
  EXPECT_EQ(resp.kvs(1).value(), "client-cn");
}

TEST_F(RelayTest, ServerStreamToAFastAndASlowReader) {
  auto [n, s] = ReadSnapshot(-1, 0ms, -1);
  EXPECT_EQ(n, kChunks);
  EXPECT_TRUE(s.ok()) << s.error_message();
  auto [n2, s2] = ReadSnapshot(3, 300ms, -1);
  EXPECT_EQ(n2, kChunks);
  EXPECT_TRUE(s2.ok()) << s2.error_message();
}

TEST_F(RelayTest, CancelsMidStreamAgainAndAgain) {
  for (int i = 0; i < 30; ++i) {
    auto [n, s] = ReadSnapshot(-1, 0ms, 1 + i * 5);
    EXPECT_LE(n, kChunks);
  }
  // Many at once, some slow, some cancelling.
  std::vector<std::thread> ts;
  for (int t = 0; t < 6; ++t) {
    ts.emplace_back([this, t] {
      for (int i = 0; i < 5; ++i) {
        ReadSnapshot(t % 2 == 0 ? 2 : -1, 20ms, t % 3 == 0 ? -1 : 7 * i + t);
      }
    });
  }
  for (std::thread& t : ts) t.join();
  auto [n, s] = ReadSnapshot(-1, 0ms, -1);
  EXPECT_EQ(n, kChunks);
  EXPECT_TRUE(s.ok());
}

TEST_F(RelayTest, BidiStreamThroughTheRelay) {
  auto w = pb::Watch::NewStub(channel_);
  for (int round = 0; round < 20; ++round) {
    grpc::ClientContext ctx;
    auto stream = w->Watch(&ctx);
    for (int i = 0; i < 50; ++i) {
      pb::WatchRequest req;
      req.mutable_create_request()->set_key("k" + std::to_string(i));
      ASSERT_TRUE(stream->Write(req));
    }
    pb::WatchResponse resp;
    int n = 0;
    if (round % 2 == 0) {
      stream->WritesDone();
      while (stream->Read(&resp)) {
        EXPECT_EQ(resp.events(0).kv().key(), "k" + std::to_string(n));
        ++n;
      }
      EXPECT_EQ(n, 50);
      EXPECT_TRUE(stream->Finish().ok());
    } else {
      // Reads a few, then drops the call.
      for (int i = 0; i < round && stream->Read(&resp); ++i) ++n;
      ctx.TryCancel();
      stream->Finish();
    }
  }
}

// The server ends each stream right after its one answer: the relay has
// just paused for that answer when gRPC ends the call, while the transport
// is draining it (and may ask the relay to resume).
TEST_F(RelayTest, StreamsThatEndWhileTheRelayIsPaused) {
  EXPECT_EQ(testing::StreamsEndedByTheServer(channel_, 4, 300), 1200);
}

}  // namespace
}  // namespace detcd::shim::h2
