#include "engine/lease/lessor.h"

#include <malloc.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <rapidcheck.h>
#include <rapidcheck/gtest.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "engine/util/coding.h"
#include "engine/util/hash.h"

namespace detcd::lease {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;
using CP = Lessor::CheckpointItem;

constexpr int64_t Sec(double s) {
  return static_cast<int64_t>(s * static_cast<double>(kNanosPerSecond));
}

LessorOptions TestOptions() {
  LessorOptions o;
  o.min_ttl_s = 5;
  o.max_ttl_s = 1000;
  o.checkpoint_interval_ns = Sec(60);
  o.expired_retry_ns = Sec(3);
  return o;
}

void ApplyAll(Lessor& l, const std::vector<CP>& cps, int64_t now) {
  for (const CP& c : cps) l.Checkpoint(c.id, c.remaining_ttl_s, now);
}

TEST(LessorOptionsTest, Validate) {
  EXPECT_TRUE(LessorOptions{}.Validate().ok());
  EXPECT_TRUE(TestOptions().Validate().ok());
  auto bad = [](auto mutate) {
    LessorOptions o;
    mutate(o);
    return o.Validate();
  };
  EXPECT_FALSE(bad([](LessorOptions& o) { o.min_ttl_s = 0; }).ok());
  EXPECT_FALSE(bad([](LessorOptions& o) { o.max_ttl_s = 1; }).ok());
  EXPECT_FALSE(
      bad([](LessorOptions& o) { o.max_ttl_s = kMaxLeaseTtlS + 1; }).ok());
  EXPECT_FALSE(
      bad([](LessorOptions& o) { o.checkpoint_interval_ns = 0; }).ok());
  EXPECT_FALSE(bad([](LessorOptions& o) { o.expired_retry_ns = -1; }).ok());
  EXPECT_FALSE(
      bad([](LessorOptions& o) { o.max_checkpoints_per_call = 0; }).ok());
  EXPECT_FALSE(bad([](LessorOptions& o) { o.max_expired_per_call = 0; }).ok());
}

TEST(LessorTest, GrantRaisesShortTtlToMinimum) {
  Lessor l(TestOptions());
  EXPECT_EQ(*l.Grant(1, 1, 0), 5);
  EXPECT_EQ(*l.Grant(2, 0, 0), 5);
  EXPECT_EQ(*l.Grant(3, -7, 0), 5);
  EXPECT_EQ(*l.Grant(4, 6, 0), 6);
  EXPECT_EQ(l.Get(1)->ttl_s, 5);
  EXPECT_EQ(l.Get(4)->ttl_s, 6);
  EXPECT_EQ(l.size(), 4u);
}

// A held lease is a few words of heap (the real server held a million
// at ~850 bytes each while every lease's empty checkpoint queue was a
// std::deque, whose empty state is a 512-byte block and its map).
TEST(LessorTest, HeldLeasesCostLittleHeap) {
  auto heap = [] {
    struct mallinfo2 mi = mallinfo2();
    return static_cast<int64_t>(mi.uordblks + mi.hblkhd);
  };
  constexpr int64_t kLeases = 20000;
  const int64_t before = heap();
  {
    Lessor l(TestOptions());
    l.Promote(0, 0);
    for (int64_t id = 1; id <= kLeases; ++id) {
      ASSERT_TRUE(l.Grant(id, 600, 0).ok());
    }
    const int64_t per_lease = (heap() - before) / kLeases;
    EXPECT_LT(per_lease, 300) << "heap bytes per held lease";
    EXPECT_EQ(l.size(), static_cast<size_t>(kLeases));
  }
}

// etcd's Promote spreads expiries that pile up: 3000 leases of one TTL
// granted together expire, on a new primary, at most 750 a second, none
// before its TTL, the first 750 at it, and all within 4 s of it.
TEST(LessorTest, PromoteSpreadsPiledUpExpiries) {
  LessorOptions o = TestOptions();
  o.max_expired_per_call = 100000;
  Lessor l(o);
  constexpr int64_t kLeases = 3000;
  for (int64_t id = 1; id <= kLeases; ++id) {
    ASSERT_TRUE(l.Grant(id, 10, 0).ok());
  }
  l.Promote(Sec(100), Sec(2));
  // Each lease's first report (a lease not revoked is reported again).
  std::vector<int64_t> per_second(20, 0);
  std::vector<bool> seen(kLeases + 1, false);
  for (int64_t t = Sec(100); t < Sec(120); t += Sec(0.01)) {
    for (int64_t id : l.Expired(t)) {
      if (seen[static_cast<size_t>(id)]) continue;
      seen[static_cast<size_t>(id)] = true;
      ++per_second[static_cast<size_t>((t - Sec(100)) / Sec(1))];
    }
  }
  EXPECT_EQ(std::count(seen.begin(), seen.end(), true), kLeases);
  for (size_t s = 0; s < 12; ++s) EXPECT_EQ(per_second[s], 0) << s;
  EXPECT_EQ(per_second[12], 750);  // at 100 + 10 + 2 s: the first 750
  for (size_t s = 13; s < 20; ++s) EXPECT_LE(per_second[s], 750) << s;
  EXPECT_EQ(per_second[12] + per_second[13] + per_second[14] +
                per_second[15] + per_second[16],
            kLeases);

  // Below kLeaseRevokeRate leases nothing moves.
  Lessor few(o);
  for (int64_t id = 1; id <= 999; ++id) ASSERT_TRUE(few.Grant(id, 10, 0).ok());
  few.Promote(Sec(100), Sec(2));
  EXPECT_THAT(few.Expired(Sec(111.99)), IsEmpty());
  EXPECT_EQ(few.Expired(Sec(112)).size(), 999u);
}

TEST(LessorTest, GrantTooLargeTtl) {
  Lessor l(TestOptions());
  absl::StatusOr<int64_t> r = l.Grant(1, 1001, 0);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(r.status().message(), "etcdserver: too large lease TTL");
  EXPECT_EQ(r.status(), ErrLeaseTTLTooLarge());
  EXPECT_EQ(*l.Grant(1, 1000, 0), 1000);
  EXPECT_EQ(l.size(), 1u);
}

TEST(LessorTest, GrantDuplicateIdAndZeroId) {
  Lessor l(TestOptions());
  ASSERT_TRUE(l.Grant(7, 10, 0).ok());
  absl::StatusOr<int64_t> r = l.Grant(7, 20, 0);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(r.status().message(), "etcdserver: lease already exists");
  EXPECT_EQ(l.Get(7)->ttl_s, 10);  // unchanged

  r = l.Grant(0, 10, 0);
  EXPECT_TRUE(IsErrLeaseNotFound(r.status()));
}

TEST(LessorTest, RevokeReturnsKeysSortedAndRemovesLease) {
  Lessor l(TestOptions());
  ASSERT_TRUE(l.Grant(1, 10, 0).ok());
  ASSERT_TRUE(l.Grant(2, 10, 0).ok());
  for (const char* k : {"b", "a", "c", "a", "\xff", "ab"}) {
    ASSERT_TRUE(l.Attach(1, k).ok());
  }
  ASSERT_TRUE(l.Attach(2, "z").ok());
  absl::StatusOr<std::vector<std::string>> keys = l.Revoke(1);
  ASSERT_TRUE(keys.ok());
  EXPECT_THAT(*keys, ElementsAre("a", "ab", "b", "c", "\xff"));
  EXPECT_TRUE(IsErrLeaseNotFound(l.Get(1).status()));
  EXPECT_TRUE(IsErrLeaseNotFound(l.Revoke(1).status()));
  EXPECT_THAT(l.Ids(), ElementsAre(2));
  EXPECT_THAT(*l.Revoke(2), ElementsAre("z"));
  EXPECT_EQ(l.size(), 0u);
}

TEST(LessorTest, AttachToMissingLeaseIsNotFound) {
  Lessor l(TestOptions());
  absl::Status s = l.Attach(42, "k");
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(s.message(), "etcdserver: requested lease not found");
  EXPECT_EQ(s, ErrLeaseNotFound());
}

TEST(LessorTest, Detach) {
  Lessor l(TestOptions());
  ASSERT_TRUE(l.Grant(1, 10, 0).ok());
  ASSERT_TRUE(l.Attach(1, "a").ok());
  ASSERT_TRUE(l.Attach(1, "b").ok());
  l.Detach(1, "a");
  l.Detach(1, "missing");
  l.Detach(99, "a");  // unknown lease: ignored
  EXPECT_THAT(l.Get(1)->keys, ElementsAre("b"));
  l.Detach(1, "b");
  EXPECT_THAT(*l.Revoke(1), IsEmpty());
}

TEST(LessorTest, IdsAreSorted) {
  Lessor l(TestOptions());
  for (int64_t id : {5, -3, 9, 1}) ASSERT_TRUE(l.Grant(id, 10, 0).ok());
  EXPECT_THAT(l.Ids(), ElementsAre(-3, 1, 5, 9));
}

TEST(LessorTest, FollowersNeverExpire) {
  Lessor l(TestOptions());
  ASSERT_TRUE(l.Grant(1, 5, 0).ok());
  l.Checkpoint(1, 3, 0);
  EXPECT_FALSE(l.is_primary());
  EXPECT_THAT(l.Expired(std::numeric_limits<int64_t>::max() - 1), IsEmpty());
  EXPECT_THAT(l.DueCheckpoints(Sec(1e6)), IsEmpty());
  EXPECT_EQ(*l.ExpiryNs(1), kNever);
  EXPECT_EQ(*l.RemainingTtlSeconds(1, Sec(1e6)), 3);  // checkpointed value
  l.Checkpoint(1, 0, 0);
  EXPECT_EQ(*l.RemainingTtlSeconds(1, Sec(1e6)), 5);  // ttl
}

TEST(LessorTest, RenewOnNonPrimaryIsNotPrimary) {
  Lessor l(TestOptions());
  ASSERT_TRUE(l.Grant(1, 10, 0).ok());
  absl::StatusOr<int64_t> r = l.Renew(1, 0);
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(IsErrNotPrimary(r.status()));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_FALSE(IsErrNotPrimary(ErrLeaseExists()));
}

TEST(LessorTest, PrimaryExpiresInOrderOfExpiryThenId) {
  Lessor l(TestOptions());
  l.Promote(0, 0);
  ASSERT_TRUE(l.Grant(5, 10, 0).ok());
  ASSERT_TRUE(l.Grant(3, 10, 0).ok());
  ASSERT_TRUE(l.Grant(7, 5, 0).ok());
  ASSERT_TRUE(l.Grant(1, 20, 0).ok());
  ASSERT_TRUE(l.Grant(2, 6, Sec(1)).ok());  // expires at 7 s
  EXPECT_EQ(*l.ExpiryNs(7), Sec(5));
  EXPECT_THAT(l.Expired(Sec(5) - 1), IsEmpty());
  EXPECT_EQ(*l.RemainingTtlSeconds(7, Sec(4.5)), 0);  // truncated, alive
  EXPECT_EQ(*l.RemainingTtlSeconds(7, Sec(5)), -1);
  // All of 7 (5 s), 2 (7 s), 3 and 5 (10 s) are due: earliest first.
  EXPECT_THAT(l.Expired(Sec(12)), ElementsAre(7, 2, 3, 5));
  EXPECT_THAT(l.Expired(Sec(15) - 1), IsEmpty());  // not before the retry
  // Revokes not applied: the retries (all due at 15 s, so by id) come
  // before lease 1, due at 20 s.
  EXPECT_THAT(l.Expired(Sec(20)), ElementsAre(2, 3, 5, 7, 1));
}

TEST(LessorTest, ExpiredHonoursLimitAndRetries) {
  LessorOptions o = TestOptions();
  o.max_expired_per_call = 2;
  Lessor l(o);
  l.Promote(0, 0);
  for (int64_t id = 1; id <= 5; ++id) {
    ASSERT_TRUE(l.Grant(id, 5 + id, 0).ok());  // expires at 5+id s
  }
  const int64_t t = Sec(100);
  EXPECT_THAT(l.Expired(t), ElementsAre(1, 2));
  EXPECT_THAT(l.Expired(t), ElementsAre(3, 4));
  ASSERT_TRUE(l.Revoke(4).ok());  // its revoke got applied
  EXPECT_THAT(l.Expired(t), ElementsAre(5));
  EXPECT_THAT(l.Expired(t), IsEmpty());
  EXPECT_THAT(l.Expired(t + Sec(3) - 1), IsEmpty());
  // The revokes of 1, 2, 3, 5 were lost: they come back after the retry
  // interval, still at most two per call.
  EXPECT_THAT(l.Expired(t + Sec(3)), ElementsAre(1, 2));
  EXPECT_THAT(l.Expired(t + Sec(3)), ElementsAre(3, 5));
}

TEST(LessorTest, RenewResetsExpiry) {
  Lessor l(TestOptions());
  l.Promote(0, 0);
  ASSERT_TRUE(l.Grant(1, 10, 0).ok());
  EXPECT_EQ(*l.Renew(1, Sec(8)), 10);
  EXPECT_EQ(*l.ExpiryNs(1), Sec(18));
  EXPECT_EQ(*l.RemainingTtlSeconds(1, Sec(9.5)), 8);
  EXPECT_THAT(l.Expired(Sec(18) - 1), IsEmpty());
  EXPECT_THAT(l.Expired(Sec(18)), ElementsAre(1));
  EXPECT_FALSE(l.AwaitingClear(1));  // nothing was checkpointed
}

TEST(LessorTest, RenewOfExpiredLeaseIsNotFound) {
  Lessor l(TestOptions());
  l.Promote(0, 0);
  ASSERT_TRUE(l.Grant(1, 10, 0).ok());
  ASSERT_TRUE(l.Grant(2, 10, 0).ok());
  EXPECT_TRUE(IsErrLeaseNotFound(l.Renew(1, Sec(10)).status()));
  EXPECT_TRUE(IsErrLeaseNotFound(l.Renew(99, Sec(1)).status()));
  // Once Expired() has named a lease, a keep-alive cannot revive it, even
  // if the clock steps back.
  EXPECT_THAT(l.Expired(Sec(11)), ElementsAre(1, 2));
  EXPECT_TRUE(IsErrLeaseNotFound(l.Renew(2, Sec(9)).status()));
  EXPECT_EQ(*l.RemainingTtlSeconds(2, Sec(9)), -1);
}

TEST(LessorTest, PromoteExtendsAndUsesCheckpointedRemaining) {
  Lessor l(TestOptions());
  ASSERT_TRUE(l.Grant(1, 100, 0).ok());
  ASSERT_TRUE(l.Grant(2, 100, 0).ok());
  l.Checkpoint(1, 30, 0);
  l.Promote(Sec(1000), Sec(2));
  EXPECT_TRUE(l.is_primary());
  EXPECT_EQ(*l.ExpiryNs(1), Sec(1032));
  EXPECT_EQ(*l.ExpiryNs(2), Sec(1102));
  EXPECT_EQ(*l.RemainingTtlSeconds(1, Sec(1000)), 32);
  EXPECT_THAT(l.Expired(Sec(1032) - 1), IsEmpty());
  EXPECT_THAT(l.Expired(Sec(1032)), ElementsAre(1));
}

TEST(LessorTest, CheckpointDoesNotMovePrimaryExpiry) {
  Lessor l(TestOptions());
  l.Promote(0, 0);
  ASSERT_TRUE(l.Grant(1, 100, 0).ok());
  ASSERT_TRUE(l.Renew(1, Sec(50)).ok());  // expiry 150 s
  // A value computed before the renew arrives late.
  l.Checkpoint(1, 40, Sec(51));
  EXPECT_EQ(l.Get(1)->remaining_ttl_s, 40);
  EXPECT_EQ(*l.ExpiryNs(1), Sec(150));
  l.Checkpoint(42, 5, 0);  // unknown: ignored
}

TEST(LessorTest, CheckpointSchedule) {
  LessorOptions o = TestOptions();
  o.max_checkpoints_per_call = 2;
  Lessor l(o);
  l.Promote(0, 0);
  ASSERT_TRUE(l.Grant(1, 1000, 0).ok());
  ASSERT_TRUE(l.Grant(2, 1000, 0).ok());
  ASSERT_TRUE(l.Grant(3, 1000, Sec(1)).ok());
  EXPECT_THAT(l.DueCheckpoints(Sec(60) - 1), IsEmpty());
  std::vector<CP> cps = l.DueCheckpoints(Sec(60));
  EXPECT_THAT(cps, ElementsAre(CP{1, 940}, CP{2, 940}));
  ApplyAll(l, cps, Sec(60));
  EXPECT_EQ(l.Get(1)->remaining_ttl_s, 940);
  EXPECT_EQ(*l.ExpiryNs(1), Sec(1000));  // checkpoint does not move expiry
  // Lease 3 was due at 61 s; the limit held nothing back at 60 s.
  EXPECT_THAT(l.DueCheckpoints(Sec(60.5)), IsEmpty());
  EXPECT_THAT(l.DueCheckpoints(Sec(61.5)), ElementsAre(CP{3, 940}));
  // Next ones are due an interval after the last; remaining is rounded up.
  EXPECT_THAT(l.DueCheckpoints(Sec(120) - 1), IsEmpty());
  EXPECT_THAT(l.DueCheckpoints(Sec(120.5)),
              ElementsAre(CP{1, 880}, CP{2, 880}));
}

TEST(LessorTest, CheckpointLimitCarriesOver) {
  LessorOptions o = TestOptions();
  o.max_checkpoints_per_call = 2;
  Lessor l(o);
  l.Promote(0, 0);
  for (int64_t id = 1; id <= 3; ++id) ASSERT_TRUE(l.Grant(id, 1000, 0).ok());
  EXPECT_THAT(l.DueCheckpoints(Sec(60)), ElementsAre(CP{1, 940}, CP{2, 940}));
  EXPECT_THAT(l.DueCheckpoints(Sec(60)), ElementsAre(CP{3, 940}));
  EXPECT_THAT(l.DueCheckpoints(Sec(60)), IsEmpty());
}

TEST(LessorTest, CheckpointSkippedWhileRemainingNotBelowTtl) {
  Lessor l(TestOptions());
  ASSERT_TRUE(l.Grant(1, 100, 0).ok());
  ASSERT_TRUE(l.Grant(2, 10, 0).ok());
  l.Promote(0, Sec(100));                             // expiry 200 s and 110 s
  EXPECT_THAT(l.DueCheckpoints(Sec(60)), IsEmpty());  // 140 >= 100
  EXPECT_THAT(l.DueCheckpoints(Sec(120)), ElementsAre(CP{1, 80}));
  // Lease 2 expired at 110 s: no checkpoint, and none scheduled again.
  EXPECT_THAT(l.DueCheckpoints(Sec(500)), IsEmpty());
}

TEST(LessorTest, RenewQueuesClearWhenRemainingSet) {
  Lessor l(TestOptions());
  ASSERT_TRUE(l.Grant(1, 100, 0).ok());
  ASSERT_TRUE(l.Grant(2, 100, 0).ok());
  l.Checkpoint(1, 50, 0);
  l.Promote(0, 0);
  EXPECT_EQ(*l.Renew(1, Sec(10)), 100);
  EXPECT_EQ(*l.ExpiryNs(1), Sec(110));
  EXPECT_TRUE(l.AwaitingClear(1));
  EXPECT_EQ(l.Get(1)->remaining_ttl_s, 50);  // only cleared when applied
  EXPECT_THAT(l.DueCheckpoints(Sec(10)), ElementsAre(CP{1, 0}));
  EXPECT_THAT(l.DueCheckpoints(Sec(10)), IsEmpty());  // handed out once
  EXPECT_TRUE(l.AwaitingClear(1));
  l.Checkpoint(1, 0, Sec(11));
  EXPECT_EQ(l.Get(1)->remaining_ttl_s, 0);
  EXPECT_FALSE(l.AwaitingClear(1));
  // Nothing stale any more: the next renew needs no clear.
  ASSERT_TRUE(l.Renew(1, Sec(12)).ok());
  EXPECT_FALSE(l.AwaitingClear(1));
  ASSERT_TRUE(l.Renew(2, Sec(12)).ok());
  EXPECT_FALSE(l.AwaitingClear(2));
  EXPECT_THAT(l.DueCheckpoints(Sec(12)), IsEmpty());
}

// etcd only clears when the applied remaining TTL is set; a checkpoint that
// is proposed but not yet applied when the renew arrives would otherwise
// land afterwards and shorten the renewed lease at the next leader.
TEST(LessorTest, RenewQueuesClearWhileCheckpointInFlight) {
  Lessor l(TestOptions());
  l.Promote(0, 0);
  ASSERT_TRUE(l.Grant(1, 100, 0).ok());
  std::vector<CP> inflight = l.DueCheckpoints(Sec(90));
  ASSERT_THAT(inflight, ElementsAre(CP{1, 10}));
  ASSERT_TRUE(l.Renew(1, Sec(91)).ok());
  EXPECT_TRUE(l.AwaitingClear(1));
  EXPECT_THAT(l.DueCheckpoints(Sec(91)), ElementsAre(CP{1, 0}));
  ApplyAll(l, inflight, Sec(92));  // the stale value lands first
  EXPECT_TRUE(l.AwaitingClear(1));
  l.Checkpoint(1, 0, Sec(92));
  EXPECT_FALSE(l.AwaitingClear(1));
  EXPECT_EQ(l.Get(1)->remaining_ttl_s, 0);
}

TEST(LessorTest, ClearIsHandedOutAgainWhenLost) {
  Lessor l(TestOptions());
  ASSERT_TRUE(l.Grant(1, 100, 0).ok());
  ASSERT_TRUE(l.Grant(2, 1000, 0).ok());
  l.Checkpoint(1, 70, 0);
  l.Promote(0, 0);
  ASSERT_TRUE(l.Renew(1, Sec(60)).ok());
  // Clears come before scheduled checkpoints (lease 1's own is skipped: a
  // full TTL is left).
  EXPECT_THAT(l.DueCheckpoints(Sec(60)), ElementsAre(CP{1, 0}, CP{2, 940}));
  EXPECT_THAT(l.DueCheckpoints(Sec(63) - 1), IsEmpty());
  EXPECT_THAT(l.DueCheckpoints(Sec(63)), ElementsAre(CP{1, 0}));
  // Only the retry gets applied; that is enough.
  l.Checkpoint(1, 0, Sec(64));
  EXPECT_FALSE(l.AwaitingClear(1));
  EXPECT_THAT(l.DueCheckpoints(Sec(70)), IsEmpty());
}

TEST(LessorTest, RenewAfterClearHandedOutNeedsAnotherClear) {
  LessorOptions o = TestOptions();
  o.expired_retry_ns = Sec(1000);  // no retries in this test
  Lessor l(o);
  l.Promote(0, 0);
  ASSERT_TRUE(l.Grant(1, 100, 0).ok());
  ApplyAll(l, l.DueCheckpoints(Sec(60)), Sec(60));  // remaining 40
  ASSERT_TRUE(l.Renew(1, Sec(61)).ok());
  std::vector<CP> first = l.DueCheckpoints(Sec(61));  // clear #1
  ASSERT_THAT(first, ElementsAre(CP{1, 0}));
  std::vector<CP> late = l.DueCheckpoints(Sec(121));  // 40 s left: stale
  ASSERT_THAT(late, ElementsAre(CP{1, 40}));
  ASSERT_TRUE(l.Renew(1, Sec(122)).ok());
  std::vector<CP> second = l.DueCheckpoints(Sec(122));  // clear #2
  ASSERT_THAT(second, ElementsAre(CP{1, 0}));
  ApplyAll(l, first, Sec(123));
  ApplyAll(l, late, Sec(123));
  EXPECT_TRUE(l.AwaitingClear(1));  // the 40 is in effect right now
  ApplyAll(l, second, Sec(123));
  EXPECT_FALSE(l.AwaitingClear(1));
}

// A primary remembers only so many outstanding checkpoints per lease; one
// it forgets still counts as possibly in flight.
TEST(LessorTest, ForgottenCheckpointStillCountsAsInFlight) {
  LessorOptions o = TestOptions();
  o.expired_retry_ns = Sec(0.5);
  Lessor l(o);
  l.Promote(0, 0);
  ASSERT_TRUE(l.Grant(1, 1000, 0).ok());
  std::vector<CP> n1 = l.DueCheckpoints(Sec(60));
  ASSERT_THAT(n1, ElementsAre(CP{1, 940}));
  ASSERT_TRUE(l.Renew(1, Sec(61)).ok());
  std::vector<CP> clears = l.DueCheckpoints(Sec(61));
  // None of the clears gets applied, so each is handed out again, until
  // n1 has been pushed out of the remembered ones.
  for (size_t k = 1; k <= kMaxInflightCheckpointsPerLease; ++k) {
    std::vector<CP> again = l.DueCheckpoints(Sec(61) + Sec(0.5) * k);
    ASSERT_THAT(again, ElementsAre(CP{1, 0}));
    clears.push_back(again[0]);
  }
  ASSERT_TRUE(l.Renew(1, Sec(100)).ok());
  EXPECT_TRUE(l.AwaitingClear(1));  // n1 may still land
  ApplyAll(l, n1, Sec(101));
  EXPECT_TRUE(l.AwaitingClear(1));
  l.Checkpoint(1, 0, Sec(101));  // a clear handed out after n1
  EXPECT_FALSE(l.AwaitingClear(1));
}

TEST(LessorTest, DemoteForgetsPrimaryState) {
  Lessor l(TestOptions());
  ASSERT_TRUE(l.Grant(1, 100, 0).ok());
  l.Checkpoint(1, 50, 0);
  l.Promote(0, 0);
  ASSERT_TRUE(l.Grant(2, 10, 0).ok());
  ASSERT_TRUE(l.Renew(1, Sec(1)).ok());
  ASSERT_TRUE(l.AwaitingClear(1));
  l.Demote();
  EXPECT_FALSE(l.is_primary());
  EXPECT_FALSE(l.AwaitingClear(1));
  EXPECT_EQ(*l.ExpiryNs(1), kNever);
  EXPECT_EQ(*l.ExpiryNs(2), kNever);
  EXPECT_THAT(l.Expired(Sec(1000)), IsEmpty());
  EXPECT_THAT(l.DueCheckpoints(Sec(1000)), IsEmpty());
  EXPECT_TRUE(IsErrNotPrimary(l.Renew(1, Sec(2)).status()));
  // Replicated state is untouched.
  EXPECT_EQ(l.Get(1)->remaining_ttl_s, 50);
  // A later reign starts afresh: nothing queued from the old one.
  l.Promote(Sec(2000), Sec(1));
  EXPECT_EQ(*l.ExpiryNs(1), Sec(2051));
  EXPECT_EQ(*l.ExpiryNs(2), Sec(2011));
  EXPECT_FALSE(l.AwaitingClear(1));
  EXPECT_THAT(l.DueCheckpoints(Sec(2000)), IsEmpty());
}

TEST(LessorTest, HugeTtlSaturatesInsteadOfWrapping) {
  LessorOptions o;
  Lessor l(o);
  const int64_t late = std::numeric_limits<int64_t>::max() / 2;
  l.Promote(late, Sec(10));
  ASSERT_TRUE(l.Grant(1, kMaxLeaseTtlS, late).ok());
  EXPECT_EQ(*l.ExpiryNs(1), kNever);
  EXPECT_THAT(l.Expired(std::numeric_limits<int64_t>::max() - 1), IsEmpty());
  EXPECT_GT(*l.RemainingTtlSeconds(1, late), 0);
  ASSERT_TRUE(l.Renew(1, late + 1).ok());
  EXPECT_THAT(l.DueCheckpoints(late + Sec(1e6)), IsEmpty());
}

// Rule 3 of the header: checkpoints bound how long leader changes can keep
// an abandoned lease alive; without them it would live forever.
TEST(LessorTest, RepeatedLeaderChangesCannotKeepLeaseAlive) {
  for (bool apply_checkpoints : {true, false}) {
    LessorOptions o;
    o.checkpoint_interval_ns = Sec(4);
    Lessor l(o);
    int64_t now = 0;
    l.Promote(now, Sec(1));
    ASSERT_TRUE(l.Grant(1, 20, now).ok());
    int reigns = 1;
    bool expired = false;
    while (!expired && reigns <= 50) {
      // Each reign lasts 7.5 s, well under the TTL.
      for (int step = 0; step < 15 && !expired; ++step) {
        now += Sec(0.5);
        expired = !l.Expired(now).empty();
        std::vector<CP> cps = l.DueCheckpoints(now);
        if (apply_checkpoints) ApplyAll(l, cps, now);
      }
      if (expired) break;
      l.Demote();
      l.Promote(now, Sec(1));
      ++reigns;
    }
    if (apply_checkpoints) {
      // Each reign uses up 7.5 s and gives back at most 1 s extend + 1 s
      // rounding + 3.5 s after its last checkpoint.
      EXPECT_TRUE(expired);
      EXPECT_LE(reigns, 10);
    } else {
      EXPECT_FALSE(expired) << "without checkpoints every leader restarts it";
    }
  }
}

// ---------------------------------------------------------------------------
// Snapshot.

std::string Seal(std::string body) {
  const uint64_t sum = util::Fnv1a(body);
  coding::PutFixed32(&body, static_cast<uint32_t>(sum));
  coding::PutFixed32(&body, static_cast<uint32_t>(sum >> 32));
  return body;
}

std::string Header(uint64_t version, uint64_t count) {
  std::string s;
  coding::PutFixed32(&s, 0x3153454C);
  coding::PutVarint64(&s, version);
  coding::PutVarint64(&s, count);
  return s;
}

void PutLease(std::string* s, int64_t id, uint64_t ttl, uint64_t remaining,
              std::vector<std::string> keys) {
  coding::PutVarint64(s, static_cast<uint64_t>(id));
  coding::PutVarint64(s, ttl);
  coding::PutVarint64(s, remaining);
  coding::PutVarint64(s, keys.size());
  for (const std::string& k : keys) coding::PutLengthPrefixed(s, k);
}

Lessor SampleLessor() {
  Lessor l(TestOptions());
  l.Promote(0, 0);
  EXPECT_TRUE(l.Grant(3, 10, 0).ok());
  EXPECT_TRUE(l.Grant(-8, 20, 0).ok());
  EXPECT_TRUE(l.Grant(int64_t{1} << 62, 1000, 0).ok());
  EXPECT_TRUE(l.Attach(3, "b").ok());
  EXPECT_TRUE(l.Attach(3, std::string("a\0z", 3)).ok());
  EXPECT_TRUE(l.Attach(-8, "k").ok());
  l.Checkpoint(int64_t{1} << 62, 700, 0);
  return l;
}

TEST(LessorSnapshotTest, RoundTrip) {
  Lessor a = SampleLessor();
  const std::string image = a.Snapshot();
  Lessor b(TestOptions());
  ASSERT_TRUE(b.Grant(99, 10, 0).ok());  // replaced by the image
  b.Promote(0, 0);
  ASSERT_TRUE(b.Restore(image).ok());
  EXPECT_FALSE(b.is_primary());
  EXPECT_EQ(b.Snapshot(), image);
  EXPECT_EQ(b.Ids(), a.Ids());
  for (int64_t id : a.Ids()) {
    Lessor::LeaseInfo x = *a.Get(id), y = *b.Get(id);
    EXPECT_EQ(x.ttl_s, y.ttl_s);
    EXPECT_EQ(x.remaining_ttl_s, y.remaining_ttl_s);
    EXPECT_EQ(x.keys, y.keys);
    EXPECT_EQ(*b.ExpiryNs(id), kNever);
  }
  // The restored member can be promoted and uses the checkpointed value.
  b.Promote(Sec(5), 0);
  EXPECT_EQ(*b.ExpiryNs(int64_t{1} << 62), Sec(705));

  // Primary-only state is not in the image: same replicated state, same
  // bytes.
  a.Demote();
  EXPECT_EQ(a.Snapshot(), image);
  Lessor empty(TestOptions());
  Lessor c(TestOptions());
  ASSERT_TRUE(c.Restore(empty.Snapshot()).ok());
  EXPECT_EQ(c.size(), 0u);
}

TEST(LessorSnapshotTest, RestoreRaisesTtlToMinimum) {
  std::string body = Header(1, 1);
  PutLease(&body, 1, 2, 0, {});
  Lessor l(TestOptions());
  ASSERT_TRUE(l.Restore(Seal(body)).ok());
  EXPECT_EQ(l.Get(1)->ttl_s, 5);
}

TEST(LessorSnapshotTest, CorruptImagesAreDataLossAndChangeNothing) {
  const std::string image = SampleLessor().Snapshot();
  Lessor l(TestOptions());
  ASSERT_TRUE(l.Grant(77, 10, 0).ok());
  const std::string before = l.Snapshot();
  auto expect_corrupt = [&](std::string_view bad) {
    absl::Status s = l.Restore(bad);
    EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << s;
    EXPECT_EQ(l.Snapshot(), before);
  };
  for (size_t n = 0; n < image.size(); ++n) {
    expect_corrupt(std::string_view(image).substr(0, n));
  }
  for (size_t i = 0; i < image.size(); ++i) {
    std::string bad = image;
    bad[i] ^= 0x01;
    expect_corrupt(bad);
  }
  expect_corrupt(image + "x");

  // Well-sealed images whose content is wrong.
  std::string s;
  s = Header(2, 0);
  expect_corrupt(Seal(s));  // unknown version
  s = Header(1, 0);
  s[0] ^= 1;
  expect_corrupt(Seal(s));  // magic
  s = Header(1, 1);
  expect_corrupt(Seal(s));  // count says one, none there
  s = Header(1, uint64_t{1} << 60);
  PutLease(&s, 1, 10, 0, {});
  expect_corrupt(Seal(s));  // absurd count
  s = Header(1, 1);
  PutLease(&s, 0, 10, 0, {});
  expect_corrupt(Seal(s));  // id 0
  s = Header(1, 2);
  PutLease(&s, 5, 10, 0, {});
  PutLease(&s, 5, 10, 0, {});
  expect_corrupt(Seal(s));  // duplicate id
  s = Header(1, 2);
  PutLease(&s, 5, 10, 0, {});
  PutLease(&s, 4, 10, 0, {});
  expect_corrupt(Seal(s));  // ids out of order
  s = Header(1, 1);
  PutLease(&s, 1, 0, 0, {});
  expect_corrupt(Seal(s));  // ttl 0
  s = Header(1, 1);
  PutLease(&s, 1, kMaxLeaseTtlS + 1, 0, {});
  expect_corrupt(Seal(s));  // ttl too large
  s = Header(1, 1);
  PutLease(&s, 1, 10, uint64_t{1} << 63, {});
  expect_corrupt(Seal(s));  // remaining too large
  s = Header(1, 1);
  PutLease(&s, 1, 10, 0, {"b", "a"});
  expect_corrupt(Seal(s));  // keys out of order
  s = Header(1, 1);
  PutLease(&s, 1, 10, 0, {"a", "a"});
  expect_corrupt(Seal(s));  // duplicate key
  s = Header(1, 1);
  coding::PutVarint64(&s, 1);
  coding::PutVarint64(&s, 10);
  coding::PutVarint64(&s, 0);
  coding::PutVarint64(&s, 1000);  // more keys than bytes
  coding::PutLengthPrefixed(&s, "a");
  expect_corrupt(Seal(s));
  s = Header(1, 1);
  PutLease(&s, 1, 10, 0, {"a"});
  s += '\0';
  expect_corrupt(Seal(s));  // trailing bytes inside the seal

  // And the valid version of those is accepted.
  s = Header(1, 2);
  PutLease(&s, 4, 10, 3, {"a", "b"});
  PutLease(&s, 5, 10, 0, {});
  EXPECT_TRUE(l.Restore(Seal(s)).ok());
  EXPECT_THAT(l.Ids(), ElementsAre(4, 5));
}

// ---------------------------------------------------------------------------
// Property: a cluster of members applying the same entries, leader changes,
// renews and time passing.
//
// Invariants checked:
//  (safety)      Expired() never names a lease before (latest acknowledged
//                renew, or grant) + TTL. A renew is acknowledged only when
//                AwaitingClear() is false while its leader still leads.
//  (liveness)    when the leader applies its checkpoints at once: for a
//                lease alive at time t, let P be the time since its last
//                grant/successful renew during which some member was
//                primary, and R the number of reigns overlapping that span.
//                Then P <= TTL + R * (extend + checkpoint interval +
//                longest time step + 1 s). (Each reign uses up its length
//                and gives back at most extend, the time after its last
//                checkpoint and 1 s of rounding; see the header, rule 3.)
//  (determinism) every member's Snapshot() is identical after every step.
//
// With delayed commits, checkpoints and revokes wait in a log; at a leader
// change a prefix of it commits (the new leader applies it before
// Promote(), per the contract) and the rest is dropped. Liveness is not
// checked there: dropped checkpoints are lost progress.

struct Op {
  int kind = 0;  // 0..99, mapped to an operation by weight
  int a = 0;
  int b = 0;
};

struct Entry {
  bool revoke = false;
  int64_t id = 0;
  int64_t remaining_ttl_s = 0;
};

struct Track {
  int64_t ttl_s = 0;
  int64_t ack_anchor_ns = 0;     // safety anchor
  int64_t primary_ns = 0;        // P since the liveness anchor
  int64_t reigns = 0;            // R since the liveness anchor
  std::vector<int64_t> unacked;  // renew times waiting for AwaitingClear
};

constexpr int kMembers = 3;
constexpr int64_t kExtendNs = Sec(0.5);
constexpr int64_t kIntervalNs = Sec(2);
constexpr int64_t kMaxStepNs = Sec(1);
constexpr int kMaxOps = 1000;

struct Stats {
  int expired = 0;
  int waited_for_clear = 0;
  int reigns = 0;
};

class Cluster {
 public:
  // One in `calm` of the leader-change draws changes the leader: runs
  // differ in how long reigns last (long reigns are what a Promote() that
  // forgets checkpoints would get wrong).
  Cluster(bool delayed, int calm) : delayed_(delayed), calm_(calm) {
    LessorOptions o;
    o.min_ttl_s = 2;
    o.checkpoint_interval_ns = kIntervalNs;
    o.expired_retry_ns = Sec(2);
    o.max_expired_per_call = 1000;
    o.max_checkpoints_per_call = 1000;
    for (int i = 0; i < kMembers; ++i) members_.emplace_back(o);
  }

  void Run(const Op& op) {
    if (op.kind < 40) {
      Advance(op.a % (kMaxStepNs / Sec(0.1) + 1) * Sec(0.1));
    } else if (op.kind < 52) {
      Grant(2 + op.a % 29);
    } else if (op.kind < 72) {
      Renew(op.a);
    } else if (op.kind < 80) {
      if (leader_ < 0 || op.b % calm_ == 0) ChangeLeader(op.a % kMembers, op.b);
    } else if (op.kind < 84) {
      if (op.b % calm_ == 0) StepDown();
    } else {
      Commit(static_cast<size_t>(op.a % 4));
    }
    CheckAcks();
    CheckDeterminism();
    if (!delayed_) CheckLiveness();
  }

  const Stats& stats() const { return stats_; }

 private:
  Lessor& leader() { return members_[static_cast<size_t>(leader_)]; }

  void Advance(int64_t dt) {
    now_ += dt;
    if (leader_ < 0) return;
    for (auto& [id, t] : tracks_) t.primary_ns += dt;
    for (int64_t id : leader().Expired(now_)) {
      const Track& t = tracks_.at(id);
      RC_ASSERT(now_ >= t.ack_anchor_ns + Sec(t.ttl_s));
      ++stats_.expired;
      log_.push_back(Entry{true, id, 0});
    }
    for (const Lessor::CheckpointItem& c : leader().DueCheckpoints(now_)) {
      log_.push_back(Entry{false, c.id, c.remaining_ttl_s});
    }
    if (!delayed_) Commit(log_.size());
  }

  void Grant(int64_t ttl_s) {
    if (leader_ < 0) return;  // nobody to propose it
    const int64_t id = ++next_id_;
    for (Lessor& m : members_) RC_ASSERT(*m.Grant(id, ttl_s, now_) == ttl_s);
    tracks_[id] = Track{ttl_s, now_, 0, 1, {}};
  }

  void Renew(int pick) {
    if (leader_ < 0 || tracks_.empty()) return;
    auto it = tracks_.begin();
    std::advance(it, pick % static_cast<int>(tracks_.size()));
    const auto id = it->first;
    const int64_t old_expiry = *leader().ExpiryNs(id);
    absl::StatusOr<int64_t> r = leader().Renew(id, now_);
    // A keep-alive succeeds exactly while the lease has not expired.
    RC_ASSERT(r.ok() == (now_ < old_expiry));
    if (!r.ok()) {
      RC_ASSERT(IsErrLeaseNotFound(r.status()));
      return;
    }
    RC_ASSERT(*r == it->second.ttl_s);
    RC_ASSERT(*leader().ExpiryNs(id) == now_ + Sec(*r));
    it->second.primary_ns = 0;
    it->second.reigns = 1;
    it->second.unacked.push_back(now_);
    if (leader().AwaitingClear(id)) ++stats_.waited_for_clear;
  }

  void ChangeLeader(int next, int committed) {
    if (leader_ >= 0) {
      leader().Demote();
      next = (leader_ + 1 + next % (kMembers - 1)) % kMembers;
    }
    // The new leader's log holds some prefix of the old leader's entries;
    // it applies them before it promotes itself.
    Commit(static_cast<size_t>(committed) % (log_.size() + 1));
    log_.clear();
    for (auto& [id, t] : tracks_) {
      t.unacked.clear();  // the old leader can no longer acknowledge
      ++t.reigns;
    }
    leader_ = next;
    leader().Promote(now_, kExtendNs);
    ++stats_.reigns;
  }

  void StepDown() {
    if (leader_ < 0) return;
    leader().Demote();
    Commit(0);
    log_.clear();
    for (auto& [id, t] : tracks_) t.unacked.clear();
    leader_ = -1;
  }

  // Applies the first n log entries on every member.
  void Commit(size_t n) {
    n = std::min(n, log_.size());
    for (size_t i = 0; i < n; ++i) {
      const Entry& e = log_[i];
      if (e.revoke) {
        std::vector<absl::StatusOr<std::vector<std::string>>> results;
        for (Lessor& m : members_) results.push_back(m.Revoke(e.id));
        for (const auto& r : results) RC_ASSERT(r.ok() == results[0].ok());
        tracks_.erase(e.id);
      } else {
        for (Lessor& m : members_) {
          m.Checkpoint(e.id, e.remaining_ttl_s, now_);
        }
      }
    }
    log_.erase(log_.begin(), log_.begin() + static_cast<ptrdiff_t>(n));
  }

  void CheckAcks() {
    if (leader_ < 0) return;
    for (auto& [id, t] : tracks_) {
      if (t.unacked.empty() || leader().AwaitingClear(id)) continue;
      t.ack_anchor_ns = std::max(t.ack_anchor_ns, t.unacked.back());
      t.unacked.clear();
    }
  }

  void CheckDeterminism() {
    const std::string first = members_[0].Snapshot();
    for (const Lessor& m : members_) RC_ASSERT(m.Snapshot() == first);
    RC_ASSERT(members_[0].size() == tracks_.size());
  }

  void CheckLiveness() {
    const int64_t per_reign = kExtendNs + kIntervalNs + kMaxStepNs + Sec(1);
    for (const auto& [id, t] : tracks_) {
      RC_ASSERT(t.primary_ns <= Sec(t.ttl_s) + t.reigns * per_reign);
    }
  }

  const bool delayed_;
  const int calm_;
  std::vector<Lessor> members_;
  int leader_ = -1;
  int64_t now_ = Sec(1000);
  int64_t next_id_ = 0;
  std::vector<Entry> log_;
  absl::btree_map<int64_t, Track> tracks_;
  Stats stats_;
};

rc::Gen<Op> GenOp() {
  return rc::gen::construct<Op>(rc::gen::inRange(0, 100),
                                rc::gen::inRange(0, 1000),
                                rc::gen::inRange(0, 1000));
}

void RunCluster(bool delayed) {
  Cluster c(delayed, *rc::gen::inRange(1, 9));
  c.Run(Op{72, 0, 0});  // elect a first leader
  const auto ops =
      *rc::gen::resize(kMaxOps, rc::gen::container<std::vector<Op>>(GenOp()));
  for (const Op& op : ops) c.Run(op);
  // Shows that runs reach the interesting cases.
  RC_CLASSIFY(c.stats().expired > 0, "a lease expired");
  RC_CLASSIFY(c.stats().waited_for_clear > 0,
              "a keep-alive waited for a clear");
  RC_CLASSIFY(c.stats().reigns > 3, "more than 3 reigns");
}

RC_GTEST_PROP(LessorPropertyTest, ImmediateCommitsSafeLiveDeterministic, ()) {
  RunCluster(/*delayed=*/false);
}

RC_GTEST_PROP(LessorPropertyTest, DelayedCommitsNeverExpireEarly, ()) {
  RunCluster(/*delayed=*/true);
}

}  // namespace
}  // namespace detcd::lease
