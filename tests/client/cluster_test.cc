// The client library against real detcd members started by the test:
// a watch resumes on another member when its member dies, with no event
// lost or repeated; reads and writes fail over; auth tokens are fetched and
// refreshed when the server's simple token expires.
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "detcd/client.h"
#include "detcd/errors.h"
#include "detcd/kv.h"
#include "detcd/watch.h"
#include "gtest/gtest.h"
#include "tests/client/detcd_process.h"

namespace detcd::client {
namespace {

namespace pb = etcdserverpb;

std::unique_ptr<Client> MustNew(Config c) {
  auto cli = Client::New(std::move(c));
  EXPECT_TRUE(cli.ok()) << cli.status();
  return std::move(*cli);
}

TEST(ClusterClient, WatchResumesOnAnotherMemberAfterItsMemberDies) {
  testing::DetcdCluster cluster(3);
  ASSERT_TRUE(cluster.Start().ok());
  Config cfg;
  cfg.endpoints = cluster.endpoints();
  auto c = MustNew(cfg);
  // The watch starts after the revision read here, not whenever its create
  // reaches a member: on a loaded machine the first put can get there first.
  pb::RangeRequest probe;
  probe.set_key("/w/");
  auto now = c->Range(probe, CallOptions::Timeout(absl::Seconds(10)));
  ASSERT_TRUE(now.ok()) << now.status();
  Watcher w(c.get());
  pb::WatchCreateRequest req;
  req.set_key("/w/");
  req.set_range_end(PrefixEnd("/w/"));
  req.set_start_revision(now->header().revision() + 1);
  w.Add(req);

  std::vector<int64_t> put_revs;
  // Creates /w/<i> once, retrying while the cluster elects a new leader:
  // a create-if-absent is safe to repeat (a write whose outcome is unknown
  // may have been applied), and its revision is read back either way.
  auto put = [&](int i) {
    std::string key = absl::StrCat("/w/", i);
    absl::Time until = absl::Now() + absl::Seconds(30);
    for (;;) {
      auto r = Txn(c.get())
                   .If(Compare(cmp::Version(key), CmpOp::kEqual, 0))
                   .Then(OpPut(key, absl::StrCat(i)))
                   .Else(OpGet(key))
                   .Commit(CallOptions::Timeout(absl::Seconds(10)));
      if (r.ok()) {
        put_revs.push_back(
            r->succeeded()
                ? r->header().revision()
                : r->responses(0).response_range().kvs(0).mod_revision());
        return;
      }
      ASSERT_EQ(r.status().code(), absl::StatusCode::kUnavailable)
          << r.status();
      ASSERT_LT(absl::Now(), until) << r.status();
      absl::SleepFor(absl::Milliseconds(100));
    }
  };
  std::vector<int64_t> seen;
  auto drain = [&](size_t want) {
    WatchEvent ev;
    absl::Time until = absl::Now() + absl::Seconds(30);
    while (seen.size() < want && w.Next(&ev, until)) {
      ASSERT_TRUE(ev.error.empty()) << ev.error;
      for (const auto& e : ev.response.events()) {
        seen.push_back(e.kv().mod_revision());
      }
    }
  };
  for (int i = 0; i < 5; ++i) put(i);
  drain(5);
  std::string ep = w.endpoint();
  int victim = cluster.IndexOf(ep);
  ASSERT_GE(victim, 0) << ep;
  cluster.Kill(victim);
  for (int i = 5; i < 15; ++i) put(i);
  drain(15);
  EXPECT_EQ(seen, put_revs);  // every event once, in order
  EXPECT_NE(w.endpoint(), ep);
}

TEST(ClusterClient, ReadsAndWritesFailOverToLiveMembers) {
  testing::DetcdCluster cluster(3);
  ASSERT_TRUE(cluster.Start().ok());
  Config cfg;
  cfg.endpoints = cluster.endpoints();
  auto c = MustNew(cfg);
  ASSERT_TRUE(c->Put("k", "v").ok());
  // Kill a follower: writes then need no new election (an election could
  // time out a write, which is not retried by design).
  int follower = -1;
  for (int i = 0; i < cluster.size() && follower < 0; ++i) {
    auto st = c->Status(cluster.endpoint(i));
    ASSERT_TRUE(st.ok()) << st.status();
    if (st->header().member_id() != st->leader()) follower = i;
  }
  ASSERT_GE(follower, 0);
  cluster.Kill(follower);
  // Round robin reaches the dead member too: every call must still work
  // (reads retried, writes never sent to a dead connection).
  for (int i = 0; i < 10; ++i) {
    auto g = c->Get("k", {}, CallOptions::Timeout(absl::Seconds(10)));
    ASSERT_TRUE(g.ok()) << g.status();
    EXPECT_EQ(g->kvs(0).value(), "v");
    auto p = c->Put("k", "v", {}, CallOptions::Timeout(absl::Seconds(10)));
    ASSERT_TRUE(p.ok()) << p.status();
  }
  // With every member down a call ends at its deadline.
  for (int i = 0; i < cluster.size(); ++i) cluster.Kill(i);
  auto g = c->Get("k", {}, CallOptions::Timeout(absl::Milliseconds(500)));
  EXPECT_EQ(g.status().code(), absl::StatusCode::kDeadlineExceeded);
}

TEST(ClusterClient, AuthTokenIsRefreshedAfterItExpires) {
  testing::DetcdCluster cluster(1, {"--auth-token-ttl", "1"});
  ASSERT_TRUE(cluster.Start().ok());
  Config admin_cfg;
  admin_cfg.endpoints = cluster.endpoints();
  auto admin = MustNew(admin_cfg);
  pb::AuthUserAddRequest u;
  u.set_name("root");
  u.set_password("pw");
  ASSERT_TRUE(admin->UserAdd(u).ok());
  pb::AuthUserGrantRoleRequest g;
  g.set_user("root");
  g.set_role("root");
  ASSERT_TRUE(admin->UserGrantRole(g).ok());
  ASSERT_TRUE(admin->AuthEnable().ok());

  // Without credentials: refused.
  auto anon = admin->Put("k", "v", {}, CallOptions::Timeout(absl::Seconds(5)));
  EXPECT_FALSE(anon.ok());
  Config cfg;
  cfg.endpoints = cluster.endpoints();
  cfg.username = "root";
  cfg.password = "pw";
  auto c = MustNew(cfg);
  ASSERT_TRUE(c->Put("k", "v1").ok());
  // Past the token's TTL the server answers "invalid auth token"; the
  // client authenticates again and the call succeeds.
  absl::SleepFor(absl::Seconds(3));
  auto p = c->Put("k", "v2", {}, CallOptions::Timeout(absl::Seconds(10)));
  ASSERT_TRUE(p.ok()) << p.status();
  auto r = c->Get("k");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->kvs(0).value(), "v2");
  // A wrong password fails creation with etcd's text.
  cfg.password = "wrong";
  auto bad = Client::New(cfg);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("authentication failed"),
            std::string::npos)
      << bad.status();
}

}  // namespace
}  // namespace detcd::client
