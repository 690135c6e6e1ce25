// EtcdServer end to end inside a simulated cluster: requests to followers,
// response headers, lease forwarding, expiry and checkpoints across leader
// changes, snapshots carrying the whole state, watches, and errors.
#include "engine/server/etcd_server.h"

#include <optional>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "harness/cluster.h"

namespace detcd::server {
namespace {

using harness::Cluster;
using harness::ClusterOptions;

// Runs a request against a member and the world until it answers.
template <typename Resp>
class Waiter {
 public:
  EtcdServer::Done<Resp> cb() {
    return [this](absl::StatusOr<Resp> r) { result = std::move(r); };
  }
  std::optional<absl::StatusOr<Resp>> result;
};

class EtcdServerTest : public ::testing::Test {
 protected:
  void Start(ClusterOptions o = {}) {
    o.nodes = 3;
    o.node.election_ticks = 10;
    o.node.heartbeat_ticks = 1;
    o.node.request_timeout_ticks = 100;
    o.server.lease.checkpoint_interval_ns = sim::kSecond;
    cluster_ = std::make_unique<Cluster>(42, o, nullptr);
    RunFor(2 * sim::kSecond);
    ASSERT_NE(cluster_->Leader(), 0u);
  }
  void RunFor(int64_t ns) {
    cluster_->world().RunUntil(cluster_->world().now() + ns);
  }
  uint64_t Follower() {
    for (uint64_t id : cluster_->UpNodes()) {
      if (id != cluster_->Leader()) return id;
    }
    return 0;
  }
  // Issues a request on member `id` and runs until it completes.
  template <typename Resp, typename Fn>
  absl::StatusOr<Resp> Do(uint64_t id, Fn fn) {
    Waiter<Resp> w;
    EXPECT_TRUE(cluster_->Call(id, [&](EtcdServer& s) { fn(s, w.cb()); }));
    for (int i = 0; i < 400 && !w.result; ++i) RunFor(10 * sim::kMillisecond);
    if (!w.result) return absl::DeadlineExceededError("test: no answer");
    return *std::move(w.result);
  }
  absl::StatusOr<etcdserverpb::PutResponse> Put(uint64_t id, std::string k,
                                                std::string v,
                                                int64_t lease = 0) {
    etcdserverpb::PutRequest r;
    r.set_key(k);
    r.set_value(v);
    r.set_lease(lease);
    return Do<etcdserverpb::PutResponse>(
        id, [&](EtcdServer& s, auto cb) { s.Put(r, cb); });
  }
  absl::StatusOr<etcdserverpb::RangeResponse> Get(uint64_t id, std::string k,
                                                  bool serializable = false) {
    etcdserverpb::RangeRequest r;
    r.set_key(k);
    r.set_serializable(serializable);
    return Do<etcdserverpb::RangeResponse>(
        id, [&](EtcdServer& s, auto cb) { s.Range(r, cb); });
  }
  absl::StatusOr<etcdserverpb::LeaseKeepAliveResponse> KeepAlive(uint64_t id,
                                                                 int64_t l) {
    etcdserverpb::LeaseKeepAliveRequest r;
    r.set_id(l);
    return Do<etcdserverpb::LeaseKeepAliveResponse>(
        id, [&](EtcdServer& s, auto cb) { s.LeaseKeepAlive(r, cb); });
  }
  absl::StatusOr<etcdserverpb::LeaseTimeToLiveResponse> TimeToLive(
      uint64_t id, int64_t l) {
    etcdserverpb::LeaseTimeToLiveRequest r;
    r.set_id(l);
    r.set_keys(true);
    return Do<etcdserverpb::LeaseTimeToLiveResponse>(
        id, [&](EtcdServer& s, auto cb) { s.LeaseTimeToLive(r, cb); });
  }
  int64_t Grant(uint64_t id, int64_t ttl) {
    etcdserverpb::LeaseGrantRequest r;
    r.set_ttl(ttl);
    auto resp = Do<etcdserverpb::LeaseGrantResponse>(
        id, [&](EtcdServer& s, auto cb) { s.LeaseGrant(r, cb); });
    EXPECT_TRUE(resp.ok()) << resp.status();
    return resp.ok() ? resp->id() : 0;
  }

  std::unique_ptr<Cluster> cluster_;
};

TEST_F(EtcdServerTest, WritesAndReadsThroughFollowersCarryHeaders) {
  Start();
  const uint64_t f = Follower();
  auto put = Put(f, "a", "1");
  ASSERT_TRUE(put.ok()) << put.status();
  EXPECT_EQ(put->header().revision(), 2);  // a fresh store is at 1
  EXPECT_EQ(put->header().member_id(), f);
  EXPECT_EQ(put->header().cluster_id(), cluster_->cluster_id());
  EXPECT_EQ(put->header().raft_term(),
            cluster_->node(cluster_->Leader())->raft().term());
  // A linearizable read on another member sees it at once.
  for (uint64_t id : cluster_->UpNodes()) {
    auto get = Get(id, "a");
    ASSERT_TRUE(get.ok()) << get.status();
    ASSERT_EQ(get->kvs_size(), 1);
    EXPECT_EQ(get->kvs(0).value(), "1");
    EXPECT_EQ(get->kvs(0).mod_revision(), 2);
    EXPECT_EQ(get->header().revision(), 2);
    EXPECT_EQ(get->header().member_id(), id);
  }
}

TEST_F(EtcdServerTest, IsolatedFollowerServesOnlySerializableReads) {
  Start();
  ASSERT_TRUE(Put(cluster_->Leader(), "k", "v1").ok());
  RunFor(100 * sim::kMillisecond);
  const uint64_t f = Follower();
  std::vector<uint64_t> rest;
  for (uint64_t id : cluster_->ids()) {
    if (id != f) rest.push_back(id);
  }
  cluster_->network().Partition({f}, rest);
  ASSERT_TRUE(Put(rest[0] == cluster_->Leader() ? rest[0] : rest[1], "k", "v2")
                  .ok());
  // Stale but served locally.
  auto ser = Get(f, "k", /*serializable=*/true);
  ASSERT_TRUE(ser.ok()) << ser.status();
  EXPECT_EQ(ser->kvs(0).value(), "v1");
  // A linearizable read cannot be answered from the minority side.
  auto lin = Get(f, "k");
  EXPECT_FALSE(lin.ok());
  EXPECT_THAT(std::string(lin.status().message()),
              ::testing::AnyOf("etcdserver: request timed out",
                               "etcdserver: no leader"));
}

TEST_F(EtcdServerTest, ErrorsReachTheClientWithEtcdTexts) {
  Start();
  auto empty = Put(cluster_->Leader(), "", "x");
  EXPECT_EQ(empty.status().message(), "etcdserver: key is not provided");
  auto no_lease = Put(Follower(), "k", "v", /*lease=*/12345);
  EXPECT_EQ(no_lease.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(no_lease.status().message(),
            "etcdserver: requested lease not found");
  etcdserverpb::RangeRequest future;
  future.set_key("k");
  future.set_revision(1000);
  auto r = Do<etcdserverpb::RangeResponse>(
      Follower(), [&](EtcdServer& s, auto cb) { s.Range(future, cb); });
  EXPECT_EQ(r.status().message(),
            "mvcc: required revision is a future revision");
  // Without a quorum, writes fail with etcd's errors.
  const uint64_t f = Follower();
  for (uint64_t id : cluster_->ids()) {
    if (id != f) cluster_->Crash(id);
  }
  RunFor(3 * sim::kSecond);
  auto lost = Put(f, "k", "v");
  EXPECT_THAT(std::string(lost.status().message()),
              ::testing::AnyOf("etcdserver: request timed out",
                               "etcdserver: no leader"));
}

TEST_F(EtcdServerTest, LeaseLifecycleThroughAFollower) {
  Start();
  const uint64_t f = Follower();
  const int64_t lease = Grant(f, 30);
  ASSERT_NE(lease, 0);
  ASSERT_TRUE(Put(f, "owned", "x", lease).ok());
  // Keep-alive and time-to-live are answered by the leader, relayed by f.
  auto ka = KeepAlive(f, lease);
  ASSERT_TRUE(ka.ok()) << ka.status();
  EXPECT_EQ(ka->ttl(), 30);
  EXPECT_EQ(ka->header().member_id(), f);
  auto ttl = TimeToLive(f, lease);
  ASSERT_TRUE(ttl.ok()) << ttl.status();
  EXPECT_EQ(ttl->grantedttl(), 30);
  EXPECT_GT(ttl->ttl(), 25);
  EXPECT_THAT(ttl->keys(), ::testing::ElementsAre("owned"));
  // Revoke deletes the key in one revision on every member.
  etcdserverpb::LeaseRevokeRequest rv;
  rv.set_id(lease);
  auto revoked = Do<etcdserverpb::LeaseRevokeResponse>(
      f, [&](EtcdServer& s, auto cb) { s.LeaseRevoke(rv, cb); });
  ASSERT_TRUE(revoked.ok()) << revoked.status();
  for (uint64_t id : cluster_->UpNodes()) {
    auto get = Get(id, "owned");
    ASSERT_TRUE(get.ok());
    EXPECT_EQ(get->kvs_size(), 0) << "member " << id;
  }
  auto late = KeepAlive(f, lease);
  EXPECT_EQ(late.status().code(), absl::StatusCode::kNotFound);
  auto gone = TimeToLive(f, lease);
  ASSERT_TRUE(gone.ok());
  EXPECT_EQ(gone->ttl(), -1);
}

TEST_F(EtcdServerTest, ExpiredLeaseIsRevokedByTheLeaderOnly) {
  Start();
  const int64_t lease = Grant(Follower(), 1);  // the minimum here is 1 s
  ASSERT_TRUE(Put(Follower(), "tmp", "x", lease).ok());
  RunFor(4 * sim::kSecond);
  for (uint64_t id : cluster_->UpNodes()) {
    EXPECT_FALSE(cluster_->server(id)->state().lessor().Get(lease).ok());
    auto get = Get(id, "tmp", /*serializable=*/true);
    ASSERT_TRUE(get.ok());
    EXPECT_EQ(get->kvs_size(), 0) << "member " << id;
    EXPECT_EQ(cluster_->server(id)->state().CheckLeaseInvariant(), "");
  }
  EXPECT_EQ(KeepAlive(Follower(), lease).status().code(),
            absl::StatusCode::kNotFound);
}

TEST_F(EtcdServerTest, CheckpointsKeepLeaderChangesFromExtendingLeases) {
  Start();
  const int64_t lease = Grant(Follower(), 6);
  RunFor(4 * sim::kSecond);  // checkpoints every second record ~2 s left
  // Hand leadership around: each new leader starts from the checkpointed
  // remaining TTL, not from the full 6 s.
  for (int i = 0; i < 2; ++i) {
    cluster_->TransferLeader(Follower());
    RunFor(500 * sim::kMillisecond);
  }
  RunFor(3 * sim::kSecond);  // 7.x s after the grant, > 6 s + extensions
  for (uint64_t id : cluster_->UpNodes()) {
    EXPECT_FALSE(cluster_->server(id)->state().lessor().Get(lease).ok())
        << "member " << id << " still has the lease";
  }
}

TEST_F(EtcdServerTest, SnapshotsCarryMvccAndLeasesToRestartedMembers) {
  ClusterOptions o;
  o.node.snapshot_count = 20;
  o.node.snapshot_catchup_entries = 5;
  Start(o);
  const uint64_t f = Follower();
  cluster_->Crash(f);
  const int64_t lease = Grant(cluster_->Leader(), 60);
  for (int i = 0; i < 60; ++i) {
    ASSERT_TRUE(Put(cluster_->Leader(), "key" + std::to_string(i % 7),
                    std::to_string(i), i % 3 == 0 ? lease : 0)
                    .ok());
  }
  etcdserverpb::CompactionRequest c;
  c.set_revision(30);
  ASSERT_TRUE((Do<etcdserverpb::CompactionResponse>(
                   cluster_->Leader(),
                   [&](EtcdServer& s, auto cb) { s.Compact(c, cb); }))
                  .ok());
  cluster_->Restart(f);  // too far behind: it gets a snapshot
  RunFor(2 * sim::kSecond);
  const EtcdServer& leader = *cluster_->server(cluster_->Leader());
  const EtcdServer& back = *cluster_->server(f);
  EXPECT_EQ(back.state().kv().Hash(), leader.state().kv().Hash());
  EXPECT_EQ(back.state().kv().CompactRev(), 30);
  EXPECT_EQ(back.state().lessor().Ids(), leader.state().lessor().Ids());
  EXPECT_EQ(back.state().CheckLeaseInvariant(), "");
  // And again from its own disk.
  cluster_->Crash(f);
  cluster_->Restart(f);
  RunFor(sim::kSecond);
  EXPECT_EQ(cluster_->server(f)->state().kv().Hash(),
            leader.state().kv().Hash());
}

TEST_F(EtcdServerTest, WatchOnAFollowerSeesCommittedEvents) {
  Start();
  const uint64_t f = Follower();
  std::vector<mvcc::WatchResponse> got;
  ASSERT_TRUE(cluster_->Call(f, [&](EtcdServer& s) {
    auto stream = s.watch_hub().OpenStream([&](const mvcc::WatchResponse& r) {
      got.push_back(r);
      return true;
    });
    mvcc::WatchCreate w;
    w.key = "w/";
    w.range_end = "w0";
    w.prev_kv = true;
    s.WatchCreate(stream, w);
  }));
  ASSERT_TRUE(Put(cluster_->Leader(), "w/a", "1").ok());
  ASSERT_TRUE(Put(cluster_->Leader(), "w/a", "2").ok());
  ASSERT_TRUE(Put(cluster_->Leader(), "x", "ignored").ok());
  RunFor(500 * sim::kMillisecond);
  std::vector<mvcc::Event> events;
  for (const auto& r : got) {
    events.insert(events.end(), r.events.begin(), r.events.end());
  }
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].kv.value, "1");
  EXPECT_FALSE(events[0].has_prev_kv);
  EXPECT_EQ(events[1].kv.value, "2");
  ASSERT_TRUE(events[1].has_prev_kv);
  EXPECT_EQ(events[1].prev_kv.value, "1");
}

TEST(EtcdStateMachineTest, DuplicateRequestTakesEffectOnce) {
  EtcdStateMachine sm({KvLimits{}, lease::LessorOptions{}, [] { return 0; }});
  etcdserverpb::InternalRaftRequest req;
  req.mutable_header()->set_id(77);
  req.mutable_put()->set_key("k");
  req.mutable_put()->set_value("v");
  const std::string cmd = req.SerializeAsString();
  etcdserverpb::PutResponse resp;
  EXPECT_TRUE(DecodeResult(sm.Apply(1, cmd), &resp).ok());
  EXPECT_EQ(resp.header().revision(), 2);
  EXPECT_EQ(DecodeResult(sm.Apply(2, cmd), &resp).code(),
            absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(sm.kv().Rev(), 2);
  // The memory of recent ids travels with the snapshot.
  EtcdStateMachine copy({KvLimits{}, lease::LessorOptions{}, [] { return 0; }});
  ASSERT_TRUE(copy.Restore(sm.Snapshot()).ok());
  EXPECT_EQ(DecodeResult(copy.Apply(3, cmd), &resp).code(),
            absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(copy.kv().Hash(), sm.kv().Hash());
}

TEST(EtcdStateMachineTest, CorruptSnapshotIsRefusedAndChangesNothing) {
  EtcdStateMachine sm({KvLimits{}, lease::LessorOptions{}, [] { return 0; }});
  etcdserverpb::InternalRaftRequest req;
  req.mutable_put()->set_key("k");
  req.mutable_put()->set_value("v");
  sm.Apply(1, req.SerializeAsString());
  const uint64_t before = sm.kv().Hash();
  std::string image = sm.Snapshot();
  for (size_t cut = 0; cut < image.size(); cut += 3) {
    EXPECT_FALSE(sm.Restore(image.substr(0, cut)).ok()) << cut;
  }
  EXPECT_FALSE(sm.Restore("garbage").ok());
  EXPECT_EQ(sm.kv().Hash(), before);
  EXPECT_EQ(DecodeResult(sm.Apply(2, "\xff\xff"), nullptr).message(),
            "etcdserver: malformed raft request");
}

}  // namespace
}  // namespace detcd::server
