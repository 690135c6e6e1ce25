// ConfigWatcher against an in-process fake server, for the path a real
// server rarely shows on demand: its watch stream fails, the re-created
// watch starts below the compacted revision, and the watcher reads the
// prefix again and goes on from there.
#include "detcd/config_watcher.h"

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "etcdserverpb/rpc.grpc.pb.h"
#include "gtest/gtest.h"

namespace detcd::client {
namespace {

namespace pb = etcdserverpb;

// Range: the first read sees {a=1} at revision 4, later ones {a=3, b=1}
// at revision 7.
class FakeKv final : public pb::KV::Service {
 public:
  grpc::Status Range(grpc::ServerContext*, const pb::RangeRequest* req,
                     pb::RangeResponse* resp) override {
    int n = ++ranges;
    std::map<std::string, std::string> kvs =
        n == 1 ? std::map<std::string, std::string>{{"a", "1"}}
               : std::map<std::string, std::string>{{"a", "3"}, {"b", "1"}};
    resp->mutable_header()->set_revision(n == 1 ? 4 : 7);
    for (const auto& [k, v] : kvs) {
      auto* kv = resp->add_kvs();
      kv->set_key(req->key() + k);
      kv->set_value(v);
    }
    return grpc::Status::OK;
  }
  std::atomic<int> ranges{0};
};

// Watch: stream 1 delivers a=2 at revision 5 and fails; stream 2 is
// created and then cancelled for compaction at 6; stream 3 stays open.
class FakeWatch final : public pb::Watch::Service {
 public:
  grpc::Status Watch(grpc::ServerContext* ctx,
                     grpc::ServerReaderWriter<pb::WatchResponse,
                                              pb::WatchRequest>* s) override {
    int n = ++streams;
    pb::WatchRequest req;
    if (!s->Read(&req)) return grpc::Status::OK;
    {
      absl::MutexLock l(&mu);
      starts.push_back(req.create_request().start_revision());
    }
    pb::WatchResponse created;
    created.set_created(true);
    created.set_watch_id(0);
    created.mutable_header()->set_revision(n == 1 ? 4 : 7);
    s->Write(created);
    if (n == 1) {
      pb::WatchResponse ev;
      ev.set_watch_id(0);
      ev.mutable_header()->set_revision(5);
      auto* e = ev.add_events();
      e->mutable_kv()->set_key(req.create_request().key() + "a");
      e->mutable_kv()->set_value("2");
      e->mutable_kv()->set_mod_revision(5);
      s->Write(ev);
      return grpc::Status(grpc::StatusCode::UNAVAILABLE, "member went away");
    }
    if (n == 2) {
      pb::WatchResponse c;
      c.set_watch_id(0);
      c.set_canceled(true);
      c.set_compact_revision(6);
      c.mutable_header()->set_revision(7);
      s->Write(c);
    }
    while (!ctx->IsCancelled()) absl::SleepFor(absl::Milliseconds(10));
    return grpc::Status::OK;
  }
  std::atomic<int> streams{0};
  absl::Mutex mu;
  std::vector<int64_t> starts;
};

TEST(ConfigWatcher, RereadsThePrefixAfterFallingBehindACompaction) {
  FakeKv kv;
  FakeWatch watch;
  grpc::ServerBuilder b;
  int port = 0;
  b.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  b.RegisterService(&kv);
  b.RegisterService(&watch);
  auto server = b.BuildAndStart();
  Config cfg;
  cfg.endpoints = {"127.0.0.1:" + std::to_string(port)};
  auto c = Client::New(cfg);
  ASSERT_TRUE(c.ok());

  ConfigWatcher w(c->get(), "cfg/");
  absl::Mutex mu;
  std::vector<ConfigSnapshot> seen;
  ASSERT_TRUE(w.Start([&](const ConfigSnapshot& s) {
                 absl::MutexLock l(&mu);
                 seen.push_back(s);
               }).ok());
  ASSERT_TRUE(w.WaitForRevision(7, absl::Now() + absl::Seconds(10)));
  // The re-read view is followed by a new watch.
  {
    absl::MutexLock l(&watch.mu);
    auto three = [&]() { return watch.starts.size() >= 3; };
    watch.mu.AwaitWithTimeout(absl::Condition(&three), absl::Seconds(10));
  }
  w.Stop();
  server->Shutdown();
  using M = std::map<std::string, std::string>;
  absl::MutexLock l(&mu);
  ASSERT_EQ(seen.size(), 3u);
  EXPECT_EQ(seen[0].values, (M{{"a", "1"}}));
  EXPECT_EQ(seen[0].revision, 4);
  EXPECT_EQ(seen[1].values, (M{{"a", "2"}}));
  EXPECT_EQ(seen[1].revision, 5);
  EXPECT_EQ(seen[2].values, (M{{"a", "3"}, {"b", "1"}}));
  EXPECT_EQ(seen[2].revision, 7);
  absl::MutexLock wl(&watch.mu);
  // Resumed after the last event; after the re-read, from the revision
  // after it.
  EXPECT_EQ(watch.starts, (std::vector<int64_t>{5, 6, 8}));
  EXPECT_TRUE(w.status().ok()) << w.status();
}

}  // namespace
}  // namespace detcd::client
