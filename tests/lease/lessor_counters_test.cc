// Lessor::Counters: what the real server reports as etcd's
// etcd_debugging_lease_{granted,revoked,renewed}_total and
// etcd_debugging_server_lease_expired_total.
#include <gtest/gtest.h>

#include <cstdint>

#include "engine/lease/lessor.h"

namespace detcd::lease {
namespace {

constexpr int64_t Sec(int64_t s) { return s * kNanosPerSecond; }

LessorOptions Options() {
  LessorOptions o;
  o.min_ttl_s = 5;
  o.max_ttl_s = 1000;
  return o;
}

TEST(LessorCountersTest, CountsWhereEtcdCounts) {
  Lessor l(Options());
  ASSERT_TRUE(l.Grant(1, 10, 0).ok());
  ASSERT_TRUE(l.Grant(2, 10, 0).ok());
  ASSERT_TRUE(l.Grant(3, 10, 0).ok());
  EXPECT_FALSE(l.Grant(3, 10, 0).ok());  // exists: not a grant
  // Not primary: renewals fail and nothing expires.
  EXPECT_FALSE(l.Renew(1, 0).ok());
  l.Promote(0, 0);
  ASSERT_TRUE(l.Renew(1, Sec(1)).ok());
  EXPECT_FALSE(l.Renew(9, Sec(1)).ok());
  // A client's revoke is a revoke, not an expiry.
  ASSERT_TRUE(l.Revoke(3).ok());
  EXPECT_FALSE(l.Revoke(3).ok());
  // Lease 2 expires at 10 s; lease 1 (renewed) at 11 s.
  ASSERT_EQ(l.Expired(Sec(10)).size(), 1u);
  ASSERT_TRUE(l.Revoke(2).ok());  // the leader's revoke of an expiry
  Lessor::Counters c = l.counters();
  EXPECT_EQ(c.granted, 3u);
  EXPECT_EQ(c.renewed, 1u);
  EXPECT_EQ(c.revoked, 2u);
  EXPECT_EQ(c.expired, 1u);
  // Restoring a snapshot keeps what was counted.
  const std::string image = l.Snapshot();
  ASSERT_TRUE(l.Restore(image).ok());
  EXPECT_EQ(l.counters().granted, 3u);
  // A follower applies the revoke of an expiry: a revoke only.
  Lessor f(Options());
  ASSERT_TRUE(f.Grant(4, 10, 0).ok());
  ASSERT_TRUE(f.Revoke(4).ok());
  EXPECT_EQ(f.counters().revoked, 1u);
  EXPECT_EQ(f.counters().expired, 0u);
}

}  // namespace
}  // namespace detcd::lease
