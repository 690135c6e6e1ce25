// The Watch service's coalescing on a real server: a client that does not
// read while many puts go by, then reads slowly, receives every event of
// each watcher exactly once, in revision order, with the right values and
// prev_kv, in fewer responses than events (the responses queued behind a
// write in flight were merged, or the watcher caught up from history in
// multi-revision responses: both are etcd's shapes).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "etcdserverpb/rpc.grpc.pb.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "shim/config.h"
#include "shim/server.h"

namespace detcd::shim {
namespace {

namespace pb = etcdserverpb;

int FreePort() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
  socklen_t len = sizeof(a);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

std::chrono::system_clock::time_point In(int seconds) {
  return std::chrono::system_clock::now() + std::chrono::seconds(seconds);
}

// The parameter: the native transport (shim/grpc_h2) or gRPC C++ alone.
class WatchCoalesceTest : public ::testing::TestWithParam<bool> {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/detcd-watch-coalesce-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    const int cport = FreePort(), pport = FreePort();
    const std::string curl = absl::StrCat("http://127.0.0.1:", cport);
    const std::string purl = absl::StrCat("http://127.0.0.1:", pport);
    ParseOutcome p = ParseServerConfig(
        {"--data-dir=" + dir_ + "/data", "--listen-client-urls=" + curl,
         "--advertise-client-urls=" + curl, "--listen-peer-urls=" + purl,
         "--initial-advertise-peer-urls=" + purl,
         "--initial-cluster=default=" + purl, "--heartbeat-interval=20",
         "--election-timeout=200",
         absl::StrCat("--native-grpc=", GetParam() ? "true" : "false")},
        {});
    ASSERT_EQ(p.action, ParseOutcome::Action::kRun) << p.output;
    auto s = DetcdServer::Start(p.config);
    ASSERT_TRUE(s.ok()) << s.status();
    server_ = *std::move(s);
    // A small receive window that does not grow: a client that does not
    // read soon stops the server's writes (gRPC's defaults let megabytes
    // through first).
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_HTTP2_BDP_PROBE, 0);
    args.SetInt(GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES, 16 * 1024);
    channel_ =
        grpc::CreateCustomChannel(absl::StrCat("127.0.0.1:", cport),
                                  grpc::InsecureChannelCredentials(), args);
    kv_ = pb::KV::NewStub(channel_);
    watch_ = pb::Watch::NewStub(channel_);
    // Wait (bounded) for the member to elect itself.
    bool ok = false;
    for (int i = 0; i < 100 && !ok; ++i) {
      ok = Put("ready", "1") > 0;
      if (!ok) absl::SleepFor(absl::Milliseconds(50));
    }
    ASSERT_TRUE(ok);
  }
  void TearDown() override {
    kv_.reset();
    watch_.reset();
    channel_.reset();
    if (server_) server_->Stop();
    server_.reset();
    std::filesystem::remove_all(dir_);
  }

  // The put's revision, or 0.
  int64_t Put(const std::string& key, const std::string& value) {
    grpc::ClientContext ctx;
    ctx.set_deadline(In(5));
    pb::PutRequest req;
    req.set_key(key);
    req.set_value(value);
    pb::PutResponse resp;
    if (!kv_->Put(&ctx, req, &resp).ok()) return 0;
    return resp.header().revision();
  }

  std::string dir_;
  std::unique_ptr<DetcdServer> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<pb::KV::Stub> kv_;
  std::unique_ptr<pb::Watch::Stub> watch_;
};

std::string ValueOf(int i) {
  // 2 KiB values: the puts below pass the transport's windows and the
  // socket buffers, so the server's queue backs up behind its writes.
  return absl::StrCat("value-", i, "-", std::string(2048, 'a' + i % 26));
}

TEST_P(WatchCoalesceTest, SlowReaderGetsEveryEventInOrderMerged) {
  grpc::ClientContext ctx;
  ctx.set_deadline(In(50));
  auto stream = watch_->Watch(&ctx);
  ASSERT_NE(stream, nullptr);
  // Two watchers on the same key, one with prev_kv, and one on another
  // key that sees nothing: their responses interleave on the stream.
  for (const auto& [key, prev] : std::vector<std::pair<std::string, bool>>{
           {"c", false}, {"c", true}, {"other", false}}) {
    pb::WatchRequest req;
    req.mutable_create_request()->set_key(key);
    req.mutable_create_request()->set_prev_kv(prev);
    ASSERT_TRUE(stream->Write(req));
  }
  std::map<int64_t, bool> prev_of;  // watch id -> asked for prev_kv
  pb::WatchResponse resp;
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(stream->Read(&resp));
    ASSERT_TRUE(resp.created());
    prev_of[resp.watch_id()] = i == 1;
  }
  ASSERT_EQ(prev_of.size(), 3u);

  // Puts while the client reads nothing.
  constexpr int kPuts = 400;
  std::vector<int64_t> revs;
  for (int i = 0; i < kPuts; ++i) {
    const int64_t rev = Put("c", ValueOf(i));
    ASSERT_GT(rev, 0) << "put " << i;
    revs.push_back(rev);
  }
  for (int i = 1; i < kPuts; ++i) ASSERT_EQ(revs[i], revs[i - 1] + 1);

  // Then reads, slowly at first.
  std::map<int64_t, int> next;  // watch id -> index of its next event
  int responses = 0, events = 0;
  while (next[0] + next[1] < 2 * kPuts) {
    ASSERT_TRUE(stream->Read(&resp)) << "stream ended early";
    if (responses < 20) absl::SleepFor(absl::Milliseconds(5));
    ++responses;
    ASSERT_FALSE(resp.created() || resp.canceled() || resp.fragment());
    ASSERT_TRUE(prev_of.contains(resp.watch_id()));
    ASSERT_NE(resp.watch_id(), 2) << "the watcher of \"other\" got events";
    ASSERT_GT(resp.events_size(), 0);
    int& n = next[resp.watch_id()];
    for (const auto& e : resp.events()) {
      ASSERT_LT(n, kPuts);
      EXPECT_EQ(e.type(), mvccpb::Event::PUT);
      EXPECT_EQ(e.kv().key(), "c");
      EXPECT_EQ(e.kv().mod_revision(), revs[n]) << "watch " << resp.watch_id();
      EXPECT_EQ(e.kv().version(), n + 1);
      EXPECT_EQ(e.kv().value(), ValueOf(n));
      if (prev_of[resp.watch_id()] && n > 0) {
        ASSERT_TRUE(e.has_prev_kv());
        EXPECT_EQ(e.prev_kv().value(), ValueOf(n - 1));
      } else {
        EXPECT_FALSE(e.has_prev_kv());
      }
      ++n;
      ++events;
    }
    // The header's revision is the response's last event's (or later).
    EXPECT_GE(resp.header().revision(),
              resp.events(resp.events_size() - 1).kv().mod_revision());
  }
  EXPECT_EQ(events, 2 * kPuts);
  EXPECT_LT(responses, events) << "no response carried several events";
  RecordProperty("responses", responses);
  RecordProperty("events", events);

  // The stream still works: a new event arrives alone.
  const int64_t rev = Put("c", "after");
  ASSERT_GT(rev, 0);
  for (int got = 0; got < 2;) {
    ASSERT_TRUE(stream->Read(&resp));
    ASSERT_EQ(resp.events_size(), 1);
    EXPECT_EQ(resp.events(0).kv().mod_revision(), rev);
    ++got;
  }
  ctx.TryCancel();
}

// A client that writes its creates without waiting for their answers (as
// etcd's benchmark does): every one is answered, in order, and every
// watcher then sees the put.
TEST_P(WatchCoalesceTest, PipelinedCreatesAreAllAnswered) {
  grpc::ClientContext ctx;
  ctx.set_deadline(In(50));
  auto stream = watch_->Watch(&ctx);
  ASSERT_NE(stream, nullptr);
  constexpr int kWatchers = 3000;
  std::thread writer([&] {
    for (int i = 0; i < kWatchers; ++i) {
      pb::WatchRequest req;
      req.mutable_create_request()->set_key("p");
      if (!stream->Write(req)) return;
    }
  });
  pb::WatchResponse resp;
  int created = 0;
  for (; created < kWatchers; ++created) {
    if (!stream->Read(&resp)) break;
    if (!resp.created() || resp.watch_id() != created) break;
  }
  writer.join();
  ASSERT_EQ(created, kWatchers) << resp.ShortDebugString();
  const int64_t rev = Put("p", "v");
  ASSERT_GT(rev, 0);
  std::vector<bool> seen(kWatchers);
  for (int got = 0; got < kWatchers; ++got) {
    ASSERT_TRUE(stream->Read(&resp)) << got;
    ASSERT_EQ(resp.events_size(), 1);
    EXPECT_EQ(resp.events(0).kv().mod_revision(), rev);
    ASSERT_GE(resp.watch_id(), 0);
    ASSERT_LT(resp.watch_id(), kWatchers);
    EXPECT_FALSE(seen[resp.watch_id()]) << resp.watch_id();
    seen[resp.watch_id()] = true;
  }
  ctx.TryCancel();
}

// etcd's stream carries on after the client's half-close: its watchers
// still get their events.
TEST_P(WatchCoalesceTest, HalfClosedStreamStillDelivers) {
  grpc::ClientContext ctx;
  ctx.set_deadline(In(20));
  auto stream = watch_->Watch(&ctx);
  ASSERT_NE(stream, nullptr);
  pb::WatchRequest req;
  req.mutable_create_request()->set_key("h");
  ASSERT_TRUE(stream->Write(req));
  pb::WatchResponse resp;
  ASSERT_TRUE(stream->Read(&resp));
  ASSERT_TRUE(resp.created());
  ASSERT_TRUE(stream->WritesDone());
  const int64_t rev = Put("h", "after the half-close");
  ASSERT_GT(rev, 0);
  ASSERT_TRUE(stream->Read(&resp));
  ASSERT_EQ(resp.events_size(), 1);
  EXPECT_EQ(resp.events(0).kv().mod_revision(), rev);
  ctx.TryCancel();
}

INSTANTIATE_TEST_SUITE_P(Transports, WatchCoalesceTest, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& i) {
                           return i.param ? "Native" : "GrpcCpp";
                         });

}  // namespace
}  // namespace detcd::shim
