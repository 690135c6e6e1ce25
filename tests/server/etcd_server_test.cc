// EtcdServer end to end inside a simulated cluster: requests to followers,
// response headers, lease forwarding, expiry and checkpoints across leader
// changes, snapshots carrying the whole state, watches, and errors.
#include "engine/server/etcd_server.h"

#include <algorithm>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "engine/raft/codec.h"
#include "engine/server/errors.h"
#include "engine/util/probes.h"
#include "engine/wal/wal.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "harness/cluster.h"

namespace detcd::server {
namespace {

using harness::Cluster;
using harness::ClusterOptions;

// A state machine outside any cluster, on a clock stopped at 0.
EtcdStateMachine::Options ScratchOptions() {
  EtcdStateMachine::Options o;
  o.now_ns = [] { return 0; };
  return o;
}

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
  absl::Status Publish(uint64_t id, std::string name,
                       std::vector<std::string> urls) {
    std::optional<absl::Status> out;
    EXPECT_TRUE(cluster_->Call(id, [&](EtcdServer& s) {
      s.Publish(name, urls, [&out](absl::Status st) { out = st; });
    }));
    for (int i = 0; i < 400 && !out; ++i) RunFor(10 * sim::kMillisecond);
    return out.value_or(absl::DeadlineExceededError("test: no answer"));
  }
  absl::StatusOr<etcdserverpb::MemberListResponse> Members(
      uint64_t id, bool linearizable) {
    etcdserverpb::MemberListRequest r;
    r.set_linearizable(linearizable);
    return Do<etcdserverpb::MemberListResponse>(
        id, [&](EtcdServer& s, auto cb) { s.MemberList(r, cb); });
  }
  absl::StatusOr<etcdserverpb::AlarmResponse> Alarm(
      uint64_t id, etcdserverpb::AlarmRequest::AlarmAction action,
      uint64_t member, etcdserverpb::AlarmType type) {
    etcdserverpb::AlarmRequest r;
    r.set_action(action);
    r.set_memberid(member);
    r.set_alarm(type);
    return Do<etcdserverpb::AlarmResponse>(
        id, [&](EtcdServer& s, auto cb) { s.Alarm(r, cb); });
  }
  absl::StatusOr<etcdserverpb::StatusResponse> Status(uint64_t id) {
    return Do<etcdserverpb::StatusResponse>(id, [&](EtcdServer& s, auto cb) {
      s.Status(etcdserverpb::StatusRequest(), cb);
    });
  }
  absl::StatusOr<etcdserverpb::MoveLeaderResponse> MoveLeader(uint64_t id,
                                                              uint64_t to) {
    etcdserverpb::MoveLeaderRequest r;
    r.set_targetid(to);
    return Do<etcdserverpb::MoveLeaderResponse>(
        id, [&](EtcdServer& s, auto cb) { s.MoveLeader(r, cb); });
  }
  absl::StatusOr<etcdserverpb::CompactionResponse> Compact(uint64_t id,
                                                           int64_t rev) {
    etcdserverpb::CompactionRequest c;
    c.set_revision(rev);
    return Do<etcdserverpb::CompactionResponse>(
        id, [&](EtcdServer& s, auto cb) { s.Compact(c, cb); });
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

// The snapshot files of a member, oldest first: ".snap" whole, ".delta".
std::vector<std::string> SnapFiles(sim::SimDisk& disk) {
  auto names = disk.List("data/snap");
  std::vector<std::string> out;
  if (!names.ok()) return out;
  for (const std::string& n : *names) {
    if (absl::EndsWith(n, ".snap") || absl::EndsWith(n, ".delta")) {
      out.push_back(n);
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

// Automatic snapshots are deltas on the newest file (only what changed
// since); a restart restores the whole image and applies the deltas; a
// compaction makes the next one whole (a delta cannot express it), and
// TakeSnapshot always leaves a whole image newest.
TEST_F(EtcdServerTest, SnapshotsAreDeltasAndRestartsReadTheirChain) {
  ClusterOptions o;
  o.node.snapshot_count = 10;
  o.node.snapshot_catchup_entries = 2;
  Start(o);
  const uint64_t f = Follower();
  int64_t lease = Grant(cluster_->Leader(), 600);
  auto put_some = [&](int n, int from) {
    for (int i = from; i < from + n; ++i) {
      ASSERT_TRUE(Put(cluster_->Leader(), "key" + std::to_string(i % 13),
                      std::to_string(i), i % 4 == 0 ? lease : 0)
                      .ok());
    }
    RunFor(sim::kSecond);
  };
  put_some(65, 0);
  const Node& fn = cluster_->server(f)->node();
  EXPECT_GE(fn.snapshot_stats().deltas, 3u);
  std::vector<std::string> files = SnapFiles(cluster_->disk(f));
  ASSERT_FALSE(files.empty());
  EXPECT_TRUE(absl::EndsWith(files.back(), ".delta")) << files.back();
  const EtcdServer& leader = *cluster_->server(cluster_->Leader());
  auto same_as_leader = [&](uint64_t id) {
    const EtcdServer& m = *cluster_->server(id);
    EXPECT_EQ(m.state().kv().Hash(), leader.state().kv().Hash());
    EXPECT_EQ(m.state().kv().Rev(), leader.state().kv().Rev());
    EXPECT_EQ(m.state().lessor().Ids(), leader.state().lessor().Ids());
    EXPECT_EQ(m.state().CheckLeaseInvariant(), "");
  };
  // Restarted, the member holds what it had at once: through the chain,
  // and the entries after it from the WAL.
  auto restart = [&] {
    const uint64_t hash = cluster_->server(f)->state().kv().Hash();
    const int64_t rev = cluster_->server(f)->state().kv().Rev();
    const uint64_t restarts =
        probes::Count(probes::Probe::kNodeRestartThroughDeltas);
    cluster_->Crash(f);
    cluster_->Restart(f);
    EXPECT_EQ(cluster_->server(f)->state().kv().Hash(), hash);
    EXPECT_EQ(cluster_->server(f)->state().kv().Rev(), rev);
    return probes::Count(probes::Probe::kNodeRestartThroughDeltas) - restarts;
  };
  EXPECT_EQ(restart(), 1u);
  RunFor(sim::kSecond);
  same_as_leader(f);
  put_some(25, 65);
  same_as_leader(f);
  // A compaction: the next file is whole (and starts a chain of its own).
  const std::string before = SnapFiles(cluster_->disk(f)).back();
  etcdserverpb::CompactionRequest c;
  c.set_revision(leader.state().kv().Rev() - 5);
  ASSERT_TRUE((Do<etcdserverpb::CompactionResponse>(
                   cluster_->Leader(),
                   [&](EtcdServer& s, auto cb) { s.Compact(c, cb); }))
                  .ok());
  put_some(12, 90);
  files = SnapFiles(cluster_->disk(f));
  auto first_after = std::upper_bound(files.begin(), files.end(), before);
  ASSERT_NE(first_after, files.end());
  EXPECT_TRUE(absl::EndsWith(*first_after, ".snap")) << *first_after;
  put_some(12, 102);
  files = SnapFiles(cluster_->disk(f));
  EXPECT_TRUE(absl::EndsWith(files.back(), ".delta")) << files.back();
  EXPECT_EQ(restart(), 1u);
  RunFor(sim::kSecond);
  same_as_leader(f);
  EXPECT_EQ(cluster_->server(f)->state().kv().CompactRev(), c.revision());
  // TakeSnapshot on a member whose newest file is a delta, nothing applied
  // since (as offline defragmentation opens one, never ticked): a whole
  // image at that index, which LoadNewest (defragmentation's) finds.
  etcdserverpb::LeaseRevokeRequest rv;  // (its checkpoints are entries too)
  rv.set_id(lease);
  ASSERT_TRUE((Do<etcdserverpb::LeaseRevokeResponse>(
                   cluster_->Leader(),
                   [&](EtcdServer& s, auto cb) { s.LeaseRevoke(rv, cb); }))
                  .ok());
  lease = 0;
  const Node& fnode = cluster_->server(f)->node();
  for (int i = 0;
       i < 30 &&
       !(fnode.applied_index() == fnode.snapshot_index() &&
         absl::EndsWith(SnapFiles(cluster_->disk(f)).back(), ".delta"));
       ++i) {
    ASSERT_TRUE(Put(cluster_->Leader(), "solo", std::to_string(i)).ok());
    RunFor(sim::kSecond);
  }
  ASSERT_EQ(fnode.applied_index(), fnode.snapshot_index());
  ASSERT_TRUE(absl::EndsWith(SnapFiles(cluster_->disk(f)).back(), ".delta"));
  const uint64_t at = fnode.snapshot_index();
  ASSERT_TRUE(cluster_->server(f)->node().TakeSnapshot().ok());
  files = SnapFiles(cluster_->disk(f));
  EXPECT_EQ(fnode.snapshot_index(), at);
  EXPECT_TRUE(absl::EndsWith(files.back(), ".snap")) << files.back();
  auto markers = wal::Wal::ReadMarkers(&cluster_->disk(f), "data/wal");
  ASSERT_TRUE(markers.ok());
  wal::Snapshotter snapshotter(&cluster_->disk(f), "data/snap");
  auto newest = snapshotter.LoadNewest(*markers);
  ASSERT_TRUE(newest.ok()) << newest.status();
  EXPECT_EQ(newest->metadata.index, at);
  RunFor(sim::kSecond);
  same_as_leader(f);
  ASSERT_TRUE(cluster_->server(f)->node().TakeSnapshot(1).ok());
  files = SnapFiles(cluster_->disk(f));
  EXPECT_TRUE(absl::EndsWith(files.back(), ".snap")) << files.back();
  cluster_->Crash(f);
  cluster_->Restart(f);
  RunFor(sim::kSecond);
  same_as_leader(f);
  // A defragment's snapshot is whole, and the chain before it goes.
  put_some(24, 400);
  ASSERT_TRUE(absl::EndsWith(SnapFiles(cluster_->disk(f)).back(), ".delta"));
  ASSERT_TRUE(
      (Do<etcdserverpb::DefragmentResponse>(f, [&](EtcdServer& s, auto cb) {
        s.Defragment(etcdserverpb::DefragmentRequest(), cb);
      })).ok());
  files = SnapFiles(cluster_->disk(f));
  ASSERT_FALSE(files.empty());
  EXPECT_TRUE(absl::EndsWith(files.back(), ".snap")) << files.back();
  EXPECT_LE(files.size(), 2u);  // (a delta at its index may stay)
  EXPECT_EQ(restart(), 0u);
  same_as_leader(f);
}

// A snapshot file no WAL marker names (a crash came between the file and
// its marker) is removed at the restart: a chain begun after it must not
// take it for the base of its deltas. (Before, a member whose restart
// found no usable snapshot kept such a file, took it into its next chain
// and could not start again: seed 8006784 of a disk-faults hunt.)
TEST_F(EtcdServerTest, ASnapshotFileWithoutAMarkerIsRemovedAtRestart) {
  ClusterOptions o;
  o.node.snapshot_count = 10;
  o.node.snapshot_catchup_entries = 2;
  Start(o);
  const uint64_t f = Follower();
  cluster_->Crash(f);
  cluster_->Restart(f);
  RunFor(sim::kSecond);
  ASSERT_TRUE(SnapFiles(cluster_->disk(f)).empty());
  // What a crash before the marker leaves: a real file, under its name.
  sim::SimDisk& disk = cluster_->disk(f);
  cluster_->Crash(f);
  const std::string orphan = "0000000000000002-000000000000000f.snap";
  ASSERT_TRUE(disk.CreateDir("data/snap").ok());
  auto file = disk.Create("data/snap/" + orphan);
  ASSERT_TRUE(file.ok());
  ASSERT_TRUE((*file)->Append("not a snapshot the log knows").ok());
  ASSERT_TRUE((*file)->Sync().ok());
  ASSERT_TRUE((*file)->Close().ok());
  ASSERT_TRUE(disk.SyncDir("data/snap").ok());
  ASSERT_TRUE(disk.SyncDir("data").ok());
  cluster_->Restart(f);
  EXPECT_TRUE(SnapFiles(cluster_->disk(f)).empty());
  // A whole snapshot below the orphan's index, deltas above it: the member
  // restarts through its chain.
  for (int i = 0; i < 40; ++i) {
    ASSERT_TRUE(
        Put(cluster_->Leader(), "k" + std::to_string(i % 7), "v").ok());
  }
  RunFor(sim::kSecond);
  std::vector<std::string> files = SnapFiles(cluster_->disk(f));
  ASSERT_FALSE(files.empty());
  EXPECT_LT(files.front(), orphan);
  EXPECT_TRUE(absl::EndsWith(files.back(), ".delta")) << files.back();
  cluster_->Crash(f);
  cluster_->Restart(f);
  RunFor(sim::kSecond);
  const EtcdServer& leader = *cluster_->server(cluster_->Leader());
  ASSERT_TRUE(cluster_->IsUp(f));
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

// ---- Cluster ----

ClusterOptions NamedMembers() {
  ClusterOptions o;
  for (uint64_t id = 1; id <= 3; ++id) {
    MemberInfo m;
    m.id = id;
    m.name = "infra" + std::to_string(id);
    m.peer_urls = {"http://10.0.0." + std::to_string(id) + ":2380"};
    o.server.initial_members.push_back(m);
  }
  return o;
}

TEST_F(EtcdServerTest, MembersCarryFoundingNamesAndPublishedClientUrls) {
  Start(NamedMembers());
  const uint64_t f = Follower();
  auto list = Members(f, /*linearizable=*/false);
  ASSERT_TRUE(list.ok()) << list.status();
  ASSERT_EQ(list->members_size(), 3);
  for (int i = 0; i < 3; ++i) {
    const etcdserverpb::Member& m = list->members(i);
    EXPECT_EQ(m.id(), static_cast<uint64_t>(i + 1));  // sorted by id
    EXPECT_EQ(m.name(), "infra" + std::to_string(i + 1));
    ASSERT_EQ(m.peerurls_size(), 1);
    EXPECT_EQ(m.peerurls(0), "http://10.0.0." + std::to_string(i + 1) + ":2380");
    EXPECT_EQ(m.clienturls_size(), 0);  // not published yet
    EXPECT_FALSE(m.islearner());
  }
  // etcd's Cluster header: ids and term, no revision.
  EXPECT_EQ(list->header().member_id(), f);
  EXPECT_EQ(list->header().cluster_id(), cluster_->cluster_id());
  EXPECT_EQ(list->header().raft_term(), cluster_->node(f)->raft().term());
  EXPECT_EQ(list->header().revision(), 0);

  ASSERT_TRUE(Publish(f, "renamed", {"http://10.0.0.9:2379"}).ok());
  // A linearizable list anywhere sees the publish at once.
  for (uint64_t id : cluster_->UpNodes()) {
    auto after = Members(id, /*linearizable=*/true);
    ASSERT_TRUE(after.ok()) << after.status();
    const etcdserverpb::Member& m = after->members(static_cast<int>(f - 1));
    EXPECT_EQ(m.name(), "renamed");
    ASSERT_EQ(m.clienturls_size(), 1);
    EXPECT_EQ(m.clienturls(0), "http://10.0.0.9:2379");
  }
}

TEST_F(EtcdServerTest, MembershipFollowsConfChangesAndSnapshots) {
  ClusterOptions o = NamedMembers();
  o.node.snapshot_count = 20;
  o.node.snapshot_catchup_entries = 5;
  Start(o);
  bool added = false;
  cluster_->AddMember(/*learner=*/true, [&](bool ok) { added = ok; });
  RunFor(sim::kSecond);
  ASSERT_TRUE(added);
  auto list = Members(cluster_->Leader(), true);
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->members_size(), 4);
  EXPECT_EQ(list->members(3).id(), 4u);
  EXPECT_TRUE(list->members(3).islearner());
  // Added through MemberAdd with the id the harness hands out; the new
  // member published its name once it ran, as the real server does.
  EXPECT_EQ(list->members(3).name(), "m4");
  ASSERT_EQ(list->members(3).peerurls_size(), 1);
  ASSERT_TRUE(Publish(4, "learner4", {"http://l4:2379"}).ok());
  // Learners report themselves in Status.
  auto st = Status(4);
  ASSERT_TRUE(st.ok());
  EXPECT_TRUE(st->islearner());
  // A member restarted far behind gets everything from a snapshot.
  const uint64_t f = Follower();
  cluster_->Crash(f);
  for (int i = 0; i < 40; ++i) {
    ASSERT_TRUE(Put(cluster_->Leader(), "k" + std::to_string(i), "v").ok());
  }
  cluster_->RemoveMember(4);
  RunFor(sim::kSecond);
  cluster_->Restart(f);
  RunFor(2 * sim::kSecond);
  const std::vector<MemberInfo> want =
      cluster_->server(cluster_->Leader())->state().membership().List();
  ASSERT_EQ(want.size(), 3u);
  EXPECT_TRUE(cluster_->server(cluster_->Leader())
                  ->state()
                  .membership()
                  .IsRemoved(4));
  for (uint64_t id : cluster_->UpNodes()) {
    EXPECT_EQ(cluster_->server(id)->state().membership().List(), want)
        << "member " << id;
  }
  for (uint64_t id : cluster_->UpNodes()) {
    EXPECT_FALSE(cluster_->server(id)->removed());
  }
  // The restarted member's image holds the same, and a late publish of the
  // removed member is refused.
  EtcdStateMachine sm(ScratchOptions());
  ASSERT_TRUE(sm.Restore(cluster_->server(f)->state().Snapshot()).ok());
  EXPECT_TRUE(sm.membership().IsRemoved(4));
  EXPECT_EQ(sm.membership().Find(f)->name, "infra" + std::to_string(f));
  etcdserverpb::InternalRaftRequest late;
  late.mutable_cluster_member_attr_set()->set_member_id(4);
  EXPECT_EQ(DecodeResult(sm.Apply(1000, late.SerializeAsString()), nullptr)
                .code(),
            absl::StatusCode::kNotFound);
}

TEST_F(EtcdServerTest, MemberChangesFollowEtcdsRules) {
  Start(NamedMembers());
  const uint64_t f = Follower();
  auto add = [&](std::vector<std::string> urls, bool learner) {
    etcdserverpb::MemberAddRequest r;
    for (auto& u : urls) r.add_peerurls(u);
    r.set_islearner(learner);
    return Do<etcdserverpb::MemberAddResponse>(
        f, [&](EtcdServer& s, auto cb) { s.MemberAdd(r, cb); });
  };
  EXPECT_EQ(add({"10.0.0.4:2380"}, false).status().message(),
            "etcdserver: given member URLs are invalid");
  EXPECT_EQ(add({"http://10.0.0.4:2380/path"}, false).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(add({}, false).ok());
  // Checked when applied: a peer URL in use.
  EXPECT_EQ(add({"http://10.0.0.1:2380"}, false).status().message(),
            "etcdserver: Peer URLs already exists");

  auto learner = add({" https://10.0.0.4:2380 ", "http://[::1]:2380"}, true);
  ASSERT_TRUE(learner.ok()) << learner.status();
  const uint64_t lid = learner->member().id();
  EXPECT_NE(lid, 0u);
  EXPECT_TRUE(learner->member().islearner());
  EXPECT_THAT(learner->member().peerurls(),
              ::testing::ElementsAre("http://[::1]:2380",
                                     "https://10.0.0.4:2380"));
  EXPECT_EQ(learner->members_size(), 4);
  EXPECT_EQ(learner->header().revision(), 0);
  EXPECT_EQ(learner->header().member_id(), f);
  RunFor(100 * sim::kMillisecond);
  for (uint64_t id : cluster_->UpNodes()) {
    const MemberInfo* m = cluster_->server(id)->state().membership().Find(lid);
    ASSERT_NE(m, nullptr) << "member " << id;
    EXPECT_TRUE(m->is_learner);
  }
  // etcd allows one learner.
  EXPECT_EQ(add({"http://10.0.0.5:2380"}, true).status().message(),
            "etcdserver: too many learner members in cluster");

  etcdserverpb::MemberUpdateRequest up;
  up.set_id(lid);
  up.add_peerurls("http://10.0.0.44:2380");
  auto updated = Do<etcdserverpb::MemberUpdateResponse>(
      cluster_->Leader(), [&](EtcdServer& s, auto cb) { s.MemberUpdate(up, cb); });
  ASSERT_TRUE(updated.ok()) << updated.status();
  EXPECT_EQ(cluster_->server(cluster_->Leader())
                ->state().membership().Find(lid)->peer_urls,
            std::vector<std::string>{"http://10.0.0.44:2380"});
  up.set_id(77);
  EXPECT_EQ((Do<etcdserverpb::MemberUpdateResponse>(
                 f, [&](EtcdServer& s, auto cb) { s.MemberUpdate(up, cb); }))
                .status()
                .message(),
            "etcdserver: member not found");

  // The learner never started, so it is not in sync: the leader refuses,
  // also when a follower forwards the request.
  etcdserverpb::MemberPromoteRequest promote;
  promote.set_id(lid);
  auto early = Do<etcdserverpb::MemberPromoteResponse>(
      f, [&](EtcdServer& s, auto cb) { s.MemberPromote(promote, cb); });
  EXPECT_EQ(ToClientError(early.status()).message(),
            "etcdserver: can only promote a learner member which is in sync "
            "with leader");
  promote.set_id(cluster_->Leader());
  EXPECT_EQ((Do<etcdserverpb::MemberPromoteResponse>(
                 f, [&](EtcdServer& s, auto cb) {
                   s.MemberPromote(promote, cb);
                 }))
                .status()
                .message(),
            "etcdserver: can only promote a learner member");

  etcdserverpb::MemberRemoveRequest rm;
  rm.set_id(lid);
  auto removed = Do<etcdserverpb::MemberRemoveResponse>(
      f, [&](EtcdServer& s, auto cb) { s.MemberRemove(rm, cb); });
  ASSERT_TRUE(removed.ok()) << removed.status();
  EXPECT_EQ(removed->members_size(), 3);
  EXPECT_FALSE(cluster_->server(f)->removed());
  auto again = Do<etcdserverpb::MemberRemoveResponse>(
      f, [&](EtcdServer& s, auto cb) { s.MemberRemove(rm, cb); });
  EXPECT_EQ(again.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(cluster_->Members().voters, (std::vector<uint64_t>{1, 2, 3}));
}

TEST_F(EtcdServerTest, RunningLearnerIsPromotedThroughAFollower) {
  Start(NamedMembers());
  bool added = false;
  cluster_->AddMember(/*learner=*/true, [&](bool ok) { added = ok; });
  RunFor(sim::kSecond);
  ASSERT_TRUE(added);
  ASSERT_TRUE(Publish(4, "infra4", {"http://10.0.0.4:2379"}).ok());
  etcdserverpb::MemberPromoteRequest promote;
  promote.set_id(4);
  auto promoted = Do<etcdserverpb::MemberPromoteResponse>(
      Follower(), [&](EtcdServer& s, auto cb) { s.MemberPromote(promote, cb); });
  ASSERT_TRUE(promoted.ok()) << promoted.status();
  EXPECT_EQ(promoted->header().member_id(), Follower());
  EXPECT_EQ(promoted->header().revision(), 0);
  ASSERT_EQ(promoted->members_size(), 4);
  EXPECT_FALSE(promoted->members(3).islearner());
  EXPECT_EQ(promoted->members(3).name(), "infra4");
  RunFor(100 * sim::kMillisecond);
  EXPECT_EQ(cluster_->Members().voters, (std::vector<uint64_t>{1, 2, 3, 4}));
}

TEST_F(EtcdServerTest, StrictReconfigNeedsStartedMembers) {
  ClusterOptions o;
  o.named_members = false;  // members without names: none counts as started
  Start(o);
  etcdserverpb::MemberAddRequest r;
  r.add_peerurls("http://10.0.0.4:2380");
  auto voter = Do<etcdserverpb::MemberAddResponse>(
      Follower(), [&](EtcdServer& s, auto cb) { s.MemberAdd(r, cb); });
  EXPECT_EQ(voter.status().message(),
            "etcdserver: re-configuration failed due to not enough started "
            "members");
  r.set_islearner(true);  // learners do not change the quorum
  EXPECT_TRUE((Do<etcdserverpb::MemberAddResponse>(
                   Follower(), [&](EtcdServer& s, auto cb) { s.MemberAdd(r, cb); }))
                  .ok());
  etcdserverpb::MemberRemoveRequest rm;
  rm.set_id(Follower());
  EXPECT_EQ((Do<etcdserverpb::MemberRemoveResponse>(
                 Follower(),
                 [&](EtcdServer& s, auto cb) { s.MemberRemove(rm, cb); }))
                .status()
                .code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST_F(EtcdServerTest, StrictReconfigNeedsLinksUpForTheHealthInterval) {
  Start(NamedMembers());
  // Every link has been up since the start (2 s, the interval is 0.5 s).
  const uint64_t l = cluster_->Leader(), f = Follower();
  uint64_t other = 0;
  for (uint64_t id : cluster_->UpNodes()) {
    if (id != l && id != f) other = id;
  }
  auto add = [&](uint64_t at, const std::string& url, bool learner) {
    etcdserverpb::MemberAddRequest r;
    r.add_peerurls(url);
    r.set_islearner(learner);
    return Do<etcdserverpb::MemberAddResponse>(
        at, [&](EtcdServer& s, auto cb) { s.MemberAdd(r, cb); });
  };
  auto remove = [&](uint64_t at, uint64_t id) {
    etcdserverpb::MemberRemoveRequest r;
    r.set_id(id);
    return Do<etcdserverpb::MemberRemoveResponse>(
        at, [&](EtcdServer& s, auto cb) { s.MemberRemove(r, cb); });
  };
  // A voter down: no add (learners too, as etcd's isConnectedFullySince),
  // and no removal of a live voter; the member that is down may go.
  cluster_->Crash(other);
  RunFor(100 * sim::kMillisecond);
  EXPECT_EQ(add(f, "http://10.0.0.5:2380", true).status().message(),
            "etcdserver: unhealthy cluster");
  EXPECT_EQ(ToClientError(add(l, "http://10.0.0.5:2380", false).status())
                .code(),
            absl::StatusCode::kUnavailable);
  EXPECT_EQ(remove(l, f).status().message(), "etcdserver: unhealthy cluster");
  ASSERT_TRUE(remove(f, other).ok());
  // Two voters left, linked long enough: changes go through again.
  EXPECT_TRUE(add(f, "http://10.0.0.6:2380", true).ok());
}

TEST_F(EtcdServerTest, RemovedMemberIsRefusedAndLearnsIt) {
  Start(NamedMembers());
  const uint64_t l = cluster_->Leader(), f = Follower();
  // f is cut off, then removed: it never applies its own removal.
  std::vector<uint64_t> rest;
  for (uint64_t id : cluster_->UpNodes()) {
    if (id != f) rest.push_back(id);
  }
  cluster_->network().Partition({f}, rest);
  RunFor(200 * sim::kMillisecond);
  etcdserverpb::MemberRemoveRequest r;
  r.set_id(f);
  ASSERT_TRUE((Do<etcdserverpb::MemberRemoveResponse>(
                   l, [&](EtcdServer& s, auto cb) { s.MemberRemove(r, cb); }))
                  .ok());
  ASSERT_NE(cluster_->server(f), nullptr);
  EXPECT_FALSE(cluster_->server(f)->removed());
  EXPECT_FALSE(
      cluster_->server(f)->state().membership().IsRemoved(f));
  // Healed: its messages are refused and it is told; the harness then
  // stops it, as etcd stops a removed member.
  cluster_->network().HealAll();
  RunFor(3 * sim::kSecond);
  EXPECT_TRUE(cluster_->IsRemoved(f));
  EXPECT_EQ(cluster_->server(f), nullptr);
  EXPECT_EQ(cluster_->Members().voters.size(), 2u);
  // A removed id cannot be removed (or promoted) again.
  EXPECT_EQ((Do<etcdserverpb::MemberRemoveResponse>(
                 l, [&](EtcdServer& s, auto cb) { s.MemberRemove(r, cb); }))
                .status()
                .message(),
            "etcdserver: member not found");
}

TEST_F(EtcdServerTest, LearnerServesOnlyStatusAndSerializableReads) {
  Start(NamedMembers());
  bool added = false;
  cluster_->AddMember(/*learner=*/true, [&](bool ok) { added = ok; });
  RunFor(sim::kSecond);
  ASSERT_TRUE(added);
  EtcdServer* learner = cluster_->server(4);
  ASSERT_NE(learner, nullptr);
  EXPECT_TRUE(learner->CheckLearnerRpc(true).ok());
  EXPECT_EQ(learner->CheckLearnerRpc(false).message(),
            "etcdserver: rpc not supported for learner");
  EXPECT_EQ(ToClientError(learner->CheckLearnerRpc(false)).code(),
            absl::StatusCode::kUnavailable);
  EXPECT_TRUE(cluster_->server(cluster_->Leader())->CheckLearnerRpc(false).ok());
}

// ---- Maintenance ----

TEST_F(EtcdServerTest, QuotaRefusesWritesRaisesNoSpaceAndRecovers) {
  ClusterOptions o;
  o.server.quota_backend_bytes = 48 * 1024;
  Start(o);
  const uint64_t f = Follower();
  const std::string big(1000, 'x');
  absl::Status refused;
  int puts = 0;
  for (; puts < 200; ++puts) {
    auto put = Put(f, "big" + std::to_string(puts), big);
    if (!put.ok()) {
      refused = put.status();
      break;
    }
  }
  ASSERT_LT(puts, 200) << "the quota never refused a write";
  EXPECT_GT(puts, 5);
  EXPECT_EQ(refused.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(refused.message(), "etcdserver: mvcc: database space exceeded");
  RunFor(200 * sim::kMillisecond);
  // f raised NOSPACE for itself, through raft: every member has it.
  auto alarms = Alarm(cluster_->Leader(), etcdserverpb::AlarmRequest::GET, 0,
                      etcdserverpb::NONE);
  ASSERT_TRUE(alarms.ok()) << alarms.status();
  ASSERT_EQ(alarms->alarms_size(), 1);
  EXPECT_EQ(alarms->alarms(0).memberid(), f);
  EXPECT_EQ(alarms->alarms(0).alarm(), etcdserverpb::NOSPACE);
  // etcd's Alarm answer carries no header (etcdctl -w json prints {}).
  EXPECT_FALSE(alarms->has_header());
  for (uint64_t id : cluster_->UpNodes()) {
    auto st = Status(id);
    ASSERT_TRUE(st.ok());
    EXPECT_THAT(st->errors(),
                ::testing::Contains("memberID:" + std::to_string(f) +
                                    " alarm:NOSPACE "));
    // Even a small write is refused while the alarm is active, whichever
    // member takes it.
    auto small = Put(id, "s", "1");
    EXPECT_EQ(small.status().message(),
              "etcdserver: mvcc: database space exceeded");
  }
  etcdserverpb::LeaseGrantRequest grant;
  grant.set_ttl(60);
  EXPECT_EQ((Do<etcdserverpb::LeaseGrantResponse>(
                 f, [&](EtcdServer& s, auto cb) { s.LeaseGrant(grant, cb); }))
                .status()
                .code(),
            absl::StatusCode::kResourceExhausted);
  etcdserverpb::TxnRequest txn;
  txn.add_success()->mutable_request_put()->set_key("t");
  EXPECT_EQ((Do<etcdserverpb::TxnResponse>(
                 f, [&](EtcdServer& s, auto cb) { s.Txn(txn, cb); }))
                .status()
                .code(),
            absl::StatusCode::kResourceExhausted);
  // Reads, deletes and compactions still work: the way out.
  ASSERT_TRUE(Get(f, "big0").ok());
  etcdserverpb::TxnRequest read_only;
  read_only.add_success()->mutable_request_range()->set_key("big0");
  ASSERT_TRUE((Do<etcdserverpb::TxnResponse>(
                   f, [&](EtcdServer& s, auto cb) { s.Txn(read_only, cb); }))
                  .ok());
  etcdserverpb::DeleteRangeRequest del;
  del.set_key("big");
  del.set_range_end("bih");
  auto deleted = Do<etcdserverpb::DeleteRangeResponse>(
      f, [&](EtcdServer& s, auto cb) { s.DeleteRange(del, cb); });
  ASSERT_TRUE(deleted.ok()) << deleted.status();
  EXPECT_EQ(deleted->deleted(), puts);
  ASSERT_TRUE(Compact(f, deleted->header().revision()).ok());
  RunFor(100 * sim::kMillisecond);
  for (uint64_t id : cluster_->UpNodes()) {
    const EtcdStateMachine& sm = cluster_->server(id)->state();
    const int64_t before = sm.db_size();
    EXPECT_LT(sm.db_size_in_use(), before) << "compaction freed nothing";
    auto d = Do<etcdserverpb::DefragmentResponse>(
        id, [&](EtcdServer& s, auto cb) {
          s.Defragment(etcdserverpb::DefragmentRequest(), cb);
        });
    ASSERT_TRUE(d.ok());
    EXPECT_EQ(d->header().member_id(), id);
    auto st = Status(id);
    ASSERT_TRUE(st.ok());
    EXPECT_EQ(st->dbsize(), st->dbsizeinuse());
    EXPECT_LT(st->dbsize(), before);
  }
  // The small writes above met the quota on every member, so each raised
  // its own alarm; disarm them all, as etcdctl alarm disarm does.
  auto all = Alarm(f, etcdserverpb::AlarmRequest::GET, 0, etcdserverpb::NONE);
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(all->alarms_size(), 3);
  for (const etcdserverpb::AlarmMember& a : all->alarms()) {
    auto disarm = Alarm(f, etcdserverpb::AlarmRequest::DEACTIVATE,
                        a.memberid(), a.alarm());
    ASSERT_TRUE(disarm.ok());
    ASSERT_EQ(disarm->alarms_size(), 1);
  }
  auto after = Put(f, "after", "1");
  ASSERT_TRUE(after.ok()) << after.status();
  auto st = Status(f);
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->errors_size(), 0);
}

TEST_F(EtcdServerTest, NegativeQuotaMeansNone) {
  ClusterOptions o;
  o.server.quota_backend_bytes = -1;
  Start(o);
  for (int i = 0; i < 60; ++i) {
    ASSERT_TRUE(Put(Follower(), "k" + std::to_string(i),
                    std::string(1000, 'v')).ok());
  }
}

TEST_F(EtcdServerTest, CorruptAlarmStopsWritesNotReads) {
  Start();
  ASSERT_TRUE(Put(Follower(), "k", "v").ok());
  auto raised = Alarm(Follower(), etcdserverpb::AlarmRequest::ACTIVATE, 3,
                      etcdserverpb::CORRUPT);
  ASSERT_TRUE(raised.ok());
  ASSERT_EQ(raised->alarms_size(), 1);
  EXPECT_EQ(raised->alarms(0).alarm(), etcdserverpb::CORRUPT);
  auto put = Put(Follower(), "k", "w");
  EXPECT_EQ(put.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(put.status().message(), "etcdserver: corrupt cluster");
  auto get = Get(Follower(), "k");
  ASSERT_TRUE(get.ok());
  EXPECT_EQ(get->kvs(0).value(), "v");
  ASSERT_TRUE(Alarm(Follower(), etcdserverpb::AlarmRequest::DEACTIVATE, 3,
                    etcdserverpb::CORRUPT)
                  .ok());
  EXPECT_TRUE(Put(Follower(), "k", "w").ok());
}

TEST_F(EtcdServerTest, StatusReportsRaftStateAndLostLeader) {
  ClusterOptions o;
  o.server.version = "3.5.9";
  Start(o);
  ASSERT_TRUE(Put(Follower(), "a", "1").ok());
  RunFor(100 * sim::kMillisecond);
  const uint64_t leader = cluster_->Leader();
  for (uint64_t id : cluster_->UpNodes()) {
    auto st = Status(id);
    ASSERT_TRUE(st.ok());
    const Node& n = *cluster_->node(id);
    EXPECT_EQ(st->version(), "3.5.9");
    EXPECT_EQ(st->leader(), leader);
    EXPECT_EQ(st->raftterm(), n.raft().term());
    EXPECT_EQ(st->raftindex(), n.raft().log().committed());
    EXPECT_EQ(st->raftappliedindex(), n.applied_index());
    EXPECT_GE(st->raftindex(), st->raftappliedindex());
    EXPECT_GE(st->dbsize(), st->dbsizeinuse());
    EXPECT_GT(st->dbsizeinuse(), 20 * 1024);
    EXPECT_FALSE(st->islearner());
    EXPECT_EQ(st->errors_size(), 0);
    EXPECT_EQ(st->header().member_id(), id);
    EXPECT_EQ(st->header().revision(), 2);
  }
  const uint64_t f = Follower();
  std::vector<uint64_t> rest;
  for (uint64_t id : cluster_->ids()) {
    if (id != f) rest.push_back(id);
  }
  cluster_->network().Partition({f}, rest);
  RunFor(3 * sim::kSecond);
  auto lost = Status(f);
  ASSERT_TRUE(lost.ok());
  EXPECT_EQ(lost->leader(), 0u);
  EXPECT_THAT(lost->errors(), ::testing::ElementsAre("etcdserver: no leader"));
}

TEST_F(EtcdServerTest, HashesAgreeAcrossMembers) {
  Start();
  for (int i = 0; i < 10; ++i) {
    ASSERT_TRUE(Put(Follower(), "k" + std::to_string(i % 4), "v").ok());
  }
  RunFor(100 * sim::kMillisecond);
  std::vector<uint32_t> hashes, kv_hashes;
  for (uint64_t id : cluster_->UpNodes()) {
    auto h = Do<etcdserverpb::HashResponse>(id, [&](EtcdServer& s, auto cb) {
      s.Hash(etcdserverpb::HashRequest(), cb);
    });
    ASSERT_TRUE(h.ok());
    EXPECT_EQ(h->header().revision(), 11);
    hashes.push_back(h->hash());
    etcdserverpb::HashKVRequest r;
    r.set_revision(8);
    auto kv = Do<etcdserverpb::HashKVResponse>(
        id, [&](EtcdServer& s, auto cb) { s.HashKV(r, cb); });
    ASSERT_TRUE(kv.ok());
    EXPECT_EQ(kv->header().revision(), 11);  // the current revision
    EXPECT_EQ(kv->hash_revision(), 8);
    EXPECT_EQ(kv->compact_revision(), -1);
    kv_hashes.push_back(kv->hash());
  }
  EXPECT_THAT(hashes, ::testing::Each(hashes[0]));
  EXPECT_THAT(kv_hashes, ::testing::Each(kv_hashes[0]));
  ASSERT_TRUE(Compact(Follower(), 9).ok());
  etcdserverpb::HashKVRequest old;
  old.set_revision(5);
  auto gone = Do<etcdserverpb::HashKVResponse>(
      Follower(), [&](EtcdServer& s, auto cb) { s.HashKV(old, cb); });
  absl::Status client = ToClientError(gone.status());
  EXPECT_EQ(client.code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(client.message(),
            "etcdserver: mvcc: required revision has been compacted");
}

TEST_F(EtcdServerTest, MoveLeaderFollowsEtcdsRules) {
  Start();
  const uint64_t leader = cluster_->Leader();
  const uint64_t f = Follower();
  auto from_follower = MoveLeader(f, leader);
  EXPECT_EQ(from_follower.status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(from_follower.status().message(), "etcdserver: not leader");
  auto unknown = MoveLeader(leader, 99);
  EXPECT_EQ(unknown.status().message(), "etcdserver: bad leader transferee");
  ASSERT_TRUE(MoveLeader(leader, leader).ok());  // already there
  auto moved = MoveLeader(leader, f);
  ASSERT_TRUE(moved.ok()) << moved.status();
  EXPECT_EQ(moved->header().member_id(), leader);
  EXPECT_EQ(cluster_->node(leader)->leader(), f);
  RunFor(100 * sim::kMillisecond);
  EXPECT_EQ(cluster_->Leader(), f);
  // A transferee that cannot be reached: the move times out.
  const uint64_t target = Follower();
  std::vector<uint64_t> rest;
  for (uint64_t id : cluster_->ids()) {
    if (id != target) rest.push_back(id);
  }
  cluster_->network().Partition({target}, rest);
  auto stuck = MoveLeader(f, target);
  EXPECT_EQ(stuck.status().message(),
            "etcdserver: request timed out, leader transfer took too long");
  EXPECT_EQ(ToClientError(stuck.status()).code(), absl::StatusCode::kUnknown);
}

TEST_F(EtcdServerTest, SnapshotImageHoldsTheWholeState) {
  Start(NamedMembers());
  ASSERT_TRUE(Put(Follower(), "a", "1").ok());
  ASSERT_TRUE(Publish(Follower(), "pub", {"http://c:2379"}).ok());
  const int64_t lease = Grant(Follower(), 60);
  const uint64_t f = Follower();
  std::optional<absl::StatusOr<std::string>> image;
  ASSERT_TRUE(cluster_->Call(f, [&](EtcdServer& s) {
    s.SnapshotImage([&](absl::StatusOr<std::string> r) { image = r; });
  }));
  ASSERT_TRUE(image && image->ok());
  auto snap = DecodeSnapshotImage(**image);
  ASSERT_TRUE(snap.ok()) << snap.status();
  const EtcdServer& src = *cluster_->server(f);
  EXPECT_EQ(snap->metadata.index, src.node().applied_index());
  EXPECT_EQ(snap->metadata.term, src.node().raft().term());
  EXPECT_EQ(snap->metadata.conf_state.voters,
            (std::vector<uint64_t>{1, 2, 3}));
  EtcdStateMachine sm(ScratchOptions());
  ASSERT_TRUE(sm.Restore(snap->data).ok());
  EXPECT_EQ(sm.kv().Hash(), src.state().kv().Hash());
  EXPECT_EQ(sm.membership().List(), src.state().membership().List());
  EXPECT_EQ(sm.membership().Find(f)->name, "pub");
  EXPECT_TRUE(sm.lessor().Get(lease).ok());
  EXPECT_FALSE(DecodeSnapshotImage("nonsense").ok());
  EXPECT_FALSE(DecodeSnapshotImage(image->value().substr(0, 40)).ok());
}

// A large image is built in steps between other work, and holds the state
// at the index it began at; a compaction under it starts it over.
// A compaction is applied at once and its revisions are removed after, a
// few records per step between the member's other work; a physical
// compaction is answered only once they are gone (etcd's Compact with
// physical waits for the same), a plain one at once.
TEST_F(EtcdServerTest, CompactionIsRemovedInStepsAndPhysicalWaitsForIt) {
  ClusterOptions o;
  o.server.compact_step_records = 16;
  Start(o);
  const uint64_t f = Follower();
  int64_t rev = 0;
  for (int round = 0; round < 2; ++round) {
    for (int i = 0; i < 200; ++i) {
      auto r = Put(f, absl::StrCat("k", i), absl::StrCat(round));
      ASSERT_TRUE(r.ok()) << r.status();
      rev = r->header().revision();
    }
  }
  for (bool physical : {false, true}) {
    SCOPED_TRACE(physical ? "physical" : "not physical");
    struct Seen {
      bool answered = false;
      bool ok = false;
      bool pending = false;
      size_t revisions = 0;
    } seen;
    size_t revisions_before = 0;
    ASSERT_TRUE(cluster_->Call(f, [&](EtcdServer& s) {
      revisions_before = s.state().kv().revision_count();
      etcdserverpb::CompactionRequest c;
      c.set_revision(rev);
      c.set_physical(physical);
      s.Compact(c, [&seen, &s](
                       absl::StatusOr<etcdserverpb::CompactionResponse> r) {
        seen.answered = true;
        seen.ok = r.ok();
        seen.pending = s.state().kv().compaction_pending();
        seen.revisions = s.state().kv().revision_count();
      });
    }));
    for (int i = 0; i < 400 && !seen.answered; ++i) {
      RunFor(sim::kMillisecond);
    }
    ASSERT_TRUE(seen.answered);
    EXPECT_TRUE(seen.ok);
    if (physical) {
      EXPECT_FALSE(seen.pending);
      EXPECT_EQ(seen.revisions, 200u);
    } else {
      // Answered from the apply: the 200 dropped revisions are still there.
      EXPECT_TRUE(seen.pending);
      EXPECT_EQ(seen.revisions, revisions_before);
    }
    // Every member removes them, in steps, whether asked or not.
    RunFor(sim::kSecond);
    for (uint64_t id : cluster_->UpNodes()) {
      ASSERT_TRUE(cluster_->Call(id, [&](EtcdServer& s) {
        EXPECT_FALSE(s.state().kv().compaction_pending());
        EXPECT_EQ(s.state().kv().revision_count(), 200u);
      }));
    }
    for (int i = 0; i < 200; ++i) {
      auto r = Put(f, absl::StrCat("k", i), "again");
      ASSERT_TRUE(r.ok()) << r.status();
      rev = r->header().revision();
    }
  }
}

TEST_F(EtcdServerTest, SnapshotImageIsBuiltInStepsAtItsIndex) {
  Start(NamedMembers());
  const uint64_t f = Follower();
  const std::string big(1024, 'v');
  int64_t rev = 0;
  for (int i = 0; i < 3000; ++i) {
    auto r = Put(f, absl::StrCat("k", i % 1500), big);
    ASSERT_TRUE(r.ok()) << r.status();
    rev = r->header().revision();
  }
  for (bool compact : {false, true}) {
    SCOPED_TRACE(compact ? "compacted under it" : "writes under it");
    std::optional<absl::StatusOr<std::string>> image;
    uint64_t begin_index = 0;
    std::optional<uint64_t> begin_hash;
    ASSERT_TRUE(cluster_->Call(f, [&](EtcdServer& s) {
      s.SnapshotImage([&](absl::StatusOr<std::string> r) { image = r; });
      begin_index = s.node().applied_index();
      begin_hash = s.state().kv().Hash();
      EXPECT_TRUE(s.image_in_progress());
    }));
    EXPECT_FALSE(image.has_value());
    auto after = Put(f, "after", compact ? "c" : "w");
    ASSERT_TRUE(after.ok());
    if (compact) {
      ASSERT_TRUE(Compact(f, rev).ok());
      rev = after->header().revision();
    }
    for (int i = 0; i < 1000 && !image; ++i) RunFor(10 * sim::kMillisecond);
    ASSERT_TRUE(image && image->ok());
    auto snap = DecodeSnapshotImage(**image);
    ASSERT_TRUE(snap.ok()) << snap.status();
    EtcdStateMachine sm(ScratchOptions());
    ASSERT_TRUE(sm.Restore(snap->data).ok());
    if (!compact) {
      EXPECT_EQ(snap->metadata.index, begin_index);
      EXPECT_EQ(sm.kv().Hash(), *begin_hash);
    } else {
      // Begun again after the compaction: the state as of then.
      EXPECT_GT(snap->metadata.index, begin_index);
    }
    EXPECT_EQ(sm.kv().key_count(), compact ? 1501u : 1500u);  // + "after"
  }
}

TEST(EtcdStateMachineTest, DuplicateRequestTakesEffectOnce) {
  EtcdStateMachine sm(ScratchOptions());
  etcdserverpb::InternalRaftRequest req;
  req.mutable_header()->set_id(77);
  req.mutable_put()->set_key("k");
  req.mutable_put()->set_value("v");
  const std::string cmd = req.SerializeAsString();
  etcdserverpb::PutResponse resp;
  EXPECT_TRUE(DecodeResult(sm.Apply(1, cmd), &resp).ok());
  EXPECT_EQ(resp.header().revision(), 2);
  // Whoever still waits for the request (its member skipped the first
  // entry by a snapshot) hears that its outcome is unknown, not that it
  // did not happen: gRPC Unavailable, as etcd's request timeouts.
  EXPECT_EQ(DecodeResult(sm.Apply(2, cmd), &resp).code(),
            absl::StatusCode::kUnavailable);
  EXPECT_EQ(sm.kv().Rev(), 2);
  // The memory of recent ids travels with the snapshot.
  EtcdStateMachine copy(ScratchOptions());
  ASSERT_TRUE(copy.Restore(sm.Snapshot()).ok());
  EXPECT_EQ(DecodeResult(copy.Apply(3, cmd), &resp).code(),
            absl::StatusCode::kUnavailable);
  EXPECT_EQ(copy.kv().Hash(), sm.kv().Hash());
}

TEST(EtcdStateMachineTest, DuplicatesAreKnownByProposerAndId) {
  // Two members whose ids share their low 16 bits make the same header ids
  // (etcd's scheme: those bits, then a counter): neither drops the other's.
  const uint64_t a = 0x1234'0000'0000'abcdULL;
  const uint64_t b = 0x9876'0000'0000'abcdULL;
  EtcdStateMachine sm(ScratchOptions());
  etcdserverpb::InternalRaftRequest req;
  req.mutable_header()->set_id((uint64_t{0xabcd} << 48) | 5);
  req.mutable_put()->set_key("k");
  req.mutable_put()->set_value("v");
  const std::string cmd = req.SerializeAsString();
  etcdserverpb::PutResponse resp;
  EXPECT_TRUE(DecodeResult(sm.ApplyFrom(1, a, cmd), &resp).ok());
  EXPECT_TRUE(DecodeResult(sm.ApplyFrom(2, b, cmd), &resp).ok());
  EXPECT_EQ(sm.kv().Rev(), 3);
  // A repeat from the same proposer is still one.
  EXPECT_EQ(DecodeResult(sm.ApplyFrom(3, b, cmd), &resp).code(),
            absl::StatusCode::kUnavailable);
  EXPECT_EQ(sm.kv().Rev(), 3);
  EXPECT_NE(EtcdStateMachine::RequestKey(a, 5),
            EtcdStateMachine::RequestKey(b, 5));
  EXPECT_EQ(EtcdStateMachine::RequestKey(a, 0), 0u);
}

TEST(EtcdStateMachineTest, CorruptSnapshotIsRefusedAndChangesNothing) {
  EtcdStateMachine sm(ScratchOptions());
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

TEST(EtcdStateMachineTest, AlarmsGateWritesAndTravelInTheImage) {
  EtcdStateMachine sm(ScratchOptions());
  auto apply = [&sm, index = uint64_t{0}](
                   const etcdserverpb::InternalRaftRequest& r) mutable {
    return DecodeResult(sm.Apply(++index, r.SerializeAsString()), nullptr);
  };
  sm.ApplyConfChange(1, {raft::ConfChangeType::kAddNode, 1, ""}, "",
                     {{1}, {}});
  etcdserverpb::InternalRaftRequest alarm;
  alarm.mutable_alarm()->set_action(etcdserverpb::AlarmRequest::ACTIVATE);
  alarm.mutable_alarm()->set_memberid(1);
  alarm.mutable_alarm()->set_alarm(etcdserverpb::NOSPACE);
  ASSERT_TRUE(apply(alarm).ok());
  etcdserverpb::InternalRaftRequest put;
  put.mutable_put()->set_key("k");
  EXPECT_EQ(apply(put).code(), absl::StatusCode::kResourceExhausted);
  // A txn that only puts in a nested txn costs nothing in etcd: it passes.
  etcdserverpb::InternalRaftRequest nested;
  nested.mutable_txn()->add_success()->mutable_request_txn()->add_success()
      ->mutable_request_put()->set_key("n");
  EXPECT_TRUE(apply(nested).ok());
  etcdserverpb::InternalRaftRequest del;
  del.mutable_delete_range()->set_key("n");
  EXPECT_TRUE(apply(del).ok());
  etcdserverpb::InternalRaftRequest publish;
  publish.mutable_cluster_member_attr_set()->set_member_id(1);
  publish.mutable_cluster_member_attr_set()->mutable_member_attributes()
      ->set_name("one");
  EXPECT_TRUE(apply(publish).ok());
  publish.mutable_cluster_member_attr_set()->set_member_id(2);
  EXPECT_EQ(apply(publish).message(), "etcdserver: member not found");

  EtcdStateMachine copy(ScratchOptions());
  ASSERT_TRUE(copy.Restore(sm.Snapshot()).ok());
  EXPECT_TRUE(copy.alarms().Has(1, etcdserverpb::NOSPACE));
  EXPECT_EQ(copy.membership().Find(1)->name, "one");
  EXPECT_EQ(copy.db_size(), copy.db_size_in_use());
  EXPECT_EQ(DecodeResult(copy.Apply(99, put.SerializeAsString()), nullptr)
                .message(),
            "etcdserver: mvcc: database space exceeded");
}

// The real transport's batch joining: consecutive continuing raft appends
// become one, everything else passes in order.
TEST(EtcdServerCoalesceTest, JoinsConsecutiveAppendsOnly) {
  auto app = [](uint64_t index, uint64_t log_term, int n, uint64_t commit) {
    raft::Message m;
    m.type = raft::MessageType::kApp;
    m.to = 2;
    m.from = 1;
    m.term = 3;
    m.index = index;
    m.log_term = log_term;
    m.commit = commit;
    for (int i = 0; i < n; ++i) {
      m.entries.push_back(raft::Entry{3, index + 1 + i,
                                      raft::EntryType::kNormal, "put"});
    }
    return "r" + raft::EncodeMessage(m);  // 'r': the raft payload tag
  };
  raft::Message beat;
  beat.type = raft::MessageType::kHeartbeat;
  beat.to = 2;
  beat.from = 1;
  beat.term = 3;
  const std::string heartbeat = "r" + raft::EncodeMessage(beat);
  const std::string other = "q-not-raft";
  std::vector<std::string> batch = {
      app(10, 3, 2, 9), app(12, 3, 1, 11), app(13, 3, 0, 13),  // joined
      other,
      app(13, 3, 1, 13),  // continues, but after another payload
      app(20, 3, 1, 13),  // a gap
      heartbeat};
  const std::vector<std::string> original = batch;
  EtcdServer::CoalescePeerPayloads(&batch);
  ASSERT_EQ(batch.size(), 5u);
  EXPECT_EQ(batch[1], other);
  EXPECT_EQ(batch[2], original[4]);
  EXPECT_EQ(batch[3], original[5]);
  EXPECT_EQ(batch[4], heartbeat);
  ASSERT_EQ(batch[0][0], 'r');
  auto joined = raft::DecodeMessage(std::string_view(batch[0]).substr(1));
  ASSERT_TRUE(joined.ok()) << joined.status();
  EXPECT_EQ(joined->index, 10u);
  EXPECT_EQ(joined->log_term, 3u);
  EXPECT_EQ(joined->commit, 13u);
  ASSERT_EQ(joined->entries.size(), 3u);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(joined->entries[i].index, 11u + i);

  // Nothing to join: unchanged.
  std::vector<std::string> plain = {other, heartbeat, app(5, 3, 1, 4)};
  const std::vector<std::string> plain_before = plain;
  EtcdServer::CoalescePeerPayloads(&plain);
  EXPECT_EQ(plain, plain_before);
}

}  // namespace
}  // namespace detcd::server
