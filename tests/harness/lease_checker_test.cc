#include "harness/lease_checker.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <string>

namespace detcd::harness {
namespace {

constexpr int64_t kMs = 1'000'000;
constexpr int64_t kSec = 1000 * kMs;
using KA = LeaseChecker::KeepAlive;

LeaseChecker::Bounds Tight() {
  LeaseChecker::Bounds b;
  b.extend_ns = 100 * kMs;
  b.revoke_within_ns = 2 * kSec;
  return b;
}

// ---- early: a lease that no client revoked dies no earlier than its TTL
// after the invoke of its latest acknowledged renew ----

TEST(LeaseCheckerEarlyTest, RevokeBeforeTtlIsCaught) {
  LeaseChecker c(Tight());
  c.OnGranted(7, /*ttl_s=*/2, /*invoke_ns=*/1 * kSec,
              /*return_ns=*/1 * kSec + 5 * kMs);
  c.OnRevokeApplied(7, 2 * kSec);  // half its TTL
  ASSERT_EQ(c.violations().size(), 1u);
  EXPECT_NE(c.violations()[0].find("lease 7: revoke applied"),
            std::string::npos)
      << c.violations()[0];
}

TEST(LeaseCheckerEarlyTest, RevokeRightAtTheBoundIsNot) {
  LeaseChecker c(Tight());
  c.OnGranted(7, 2, 1 * kSec, 1 * kSec + 5 * kMs);
  // TTL counts from the invoke: the leader may have renewed right then.
  // (The bound allows the simulated clock's rounding, 1 us.)
  c.OnRevokeApplied(7, 3 * kSec - 1000);
  EXPECT_TRUE(c.violations().empty()) << c.violations()[0];
  LeaseChecker d(Tight());
  d.OnGranted(7, 2, 1 * kSec, 1 * kSec + 5 * kMs);
  d.OnRevokeApplied(7, 3 * kSec - 1001);
  EXPECT_EQ(d.violations().size(), 1u);
}

TEST(LeaseCheckerEarlyTest, CountsFromTheLatestAcknowledgedKeepAlive) {
  LeaseChecker c(Tight());
  c.OnGranted(7, 2, 1 * kSec, 1 * kSec);
  c.OnKeepAlive(7, 2 * kSec, 2 * kSec + 3 * kMs, KA::kOk);
  // Failed keep-alives promise nothing.
  c.OnKeepAlive(7, 3 * kSec, 5 * kSec, KA::kFailed);
  c.OnRevokeApplied(7, 4 * kSec - 10 * kMs);
  EXPECT_EQ(c.violations().size(), 1u);
  LeaseChecker ok(Tight());
  ok.OnGranted(7, 2, 1 * kSec, 1 * kSec);
  ok.OnKeepAlive(7, 2 * kSec, 2 * kSec + 3 * kMs, KA::kOk);
  ok.OnKeepAlive(7, 3 * kSec, 5 * kSec, KA::kFailed);
  ok.OnRevokeApplied(7, 4 * kSec);
  EXPECT_TRUE(ok.violations().empty()) << ok.violations()[0];
}

TEST(LeaseCheckerEarlyTest, AClientRevokeIsNeverEarly) {
  LeaseChecker c(Tight());
  c.OnGranted(7, 2, 1 * kSec, 1 * kSec);
  c.OnRevokeRequested(7, 1500 * kMs);
  c.OnRevokeApplied(7, 1510 * kMs);
  EXPECT_TRUE(c.violations().empty());
}

TEST(LeaseCheckerEarlyTest, RefusalsAndExpiredAnswersAreDeathsToo) {
  LeaseChecker c(Tight());
  c.OnGranted(7, 2, 1 * kSec, 1 * kSec);
  c.OnKeepAlive(7, 2 * kSec, 2 * kSec + kMs, KA::kNotFound);
  EXPECT_EQ(c.violations().size(), 1u);
  LeaseChecker t(Tight());
  t.OnGranted(8, 2, 1 * kSec, 1 * kSec);
  t.OnTimeToLive(8, 2 * kSec, 2 * kSec + kMs, -1);
  EXPECT_EQ(t.violations().size(), 1u);
  t.OnTimeToLive(8, 3 * kSec, 3 * kSec + kMs, -1);  // reported once
  EXPECT_EQ(t.violations().size(), 1u);
}

TEST(LeaseCheckerEarlyTest, ARevokeSeenBeforeTheGrantAnswerIsCheckedOnIt) {
  LeaseChecker c(Tight());
  c.OnRevokeApplied(7, 1500 * kMs);
  EXPECT_TRUE(c.violations().empty());
  c.OnGranted(7, 2, 1 * kSec, 1600 * kMs);
  EXPECT_EQ(c.violations().size(), 1u);
}

TEST(LeaseCheckerEarlyTest, DriftBoundShortensTheTtl) {
  LeaseChecker::Bounds b = Tight();
  b.max_drift_ppm = 5000;  // a leader's clock may run 0.5% fast
  // 2 s / 1.005 = 1990.049751 ms, less the 1 us of clock rounding.
  LeaseChecker c(b);
  c.OnGranted(7, 2, 0, 0);
  c.OnRevokeApplied(7, 1990048751);
  EXPECT_TRUE(c.violations().empty()) << c.violations()[0];
  LeaseChecker d(b);
  d.OnGranted(7, 2, 0, 0);
  d.OnRevokeApplied(7, 1990048750);
  EXPECT_EQ(d.violations().size(), 1u);
}

TEST(LeaseCheckerEarlyTest, ReportedJumpsLowerTheBound) {
  LeaseChecker::Bounds b = Tight();
  b.clock_jumps = true;
  LeaseChecker c(b);
  c.OnClockJump(2, 500 * kMs, 5 * kSec);  // before the grant: irrelevant
  c.OnGranted(7, 2, 1 * kSec, 1 * kSec);
  c.OnClockJump(3, 1200 * kMs, 700 * kMs);
  c.OnRevokeApplied(7, 2300 * kMs);  // 2 s - 700 ms after the invoke
  EXPECT_TRUE(c.violations().empty()) << c.violations()[0];
  c.OnGranted(8, 2, 1 * kSec, 1 * kSec);
  c.OnRevokeApplied(8, 2200 * kMs);
  ASSERT_EQ(c.violations().size(), 1u);
  EXPECT_NE(c.violations()[0].find("700 ms of reported clock jumps"),
            std::string::npos)
      << c.violations()[0];
  EXPECT_NE(c.Waivers().find("early-revoke bound lowered"), std::string::npos);
  EXPECT_EQ(LeaseChecker(Tight()).Waivers(), "");
}

// ---- late: a keep-alive after the lease's deadline must fail ----

TEST(LeaseCheckerLateTest, RenewAfterTheTtlIsCaught) {
  LeaseChecker c(Tight());
  c.OnGranted(7, 1, 0, 10 * kMs);
  c.OnKeepAlive(7, 500 * kMs, 505 * kMs, KA::kOk);
  // Renewed by 505 ms: dead by 1505 ms.
  EXPECT_EQ(c.Deadline(7), 1505 * kMs + 1000);
  c.OnKeepAlive(7, 1506 * kMs, 1508 * kMs, KA::kOk);
  ASSERT_EQ(c.violations().size(), 1u);
  EXPECT_NE(c.violations()[0].find("had expired"), std::string::npos);
}

TEST(LeaseCheckerLateTest, RenewRightAtTheDeadlineIsNot) {
  LeaseChecker c(Tight());
  c.OnGranted(7, 1, 0, 10 * kMs);
  c.OnKeepAlive(7, 500 * kMs, 505 * kMs, KA::kOk);
  c.OnKeepAlive(7, 1505 * kMs, 1508 * kMs, KA::kOk);
  EXPECT_TRUE(c.violations().empty()) << c.violations()[0];
}

// A follower answered the grant at 10 ms; the leader applied it only at
// 70 ms (its apply lagged): the ttl runs from 70 ms, before or after the
// answer was reported (seed 2440 of disk-faults).
TEST(LeaseCheckerLateTest, ALeaderApplyingTheGrantLateSetsTheDeadline) {
  for (bool applied_first : {false, true}) {
    LeaseChecker c(Tight());
    if (applied_first) c.OnGrantApplied(7, 70 * kMs);
    c.OnGranted(7, 1, 0, 10 * kMs);
    if (!applied_first) c.OnGrantApplied(7, 70 * kMs);
    EXPECT_EQ(c.Deadline(7), 1070 * kMs + 1000);
    c.OnKeepAlive(7, 1050 * kMs, 1052 * kMs, KA::kOk);
    EXPECT_TRUE(c.violations().empty()) << c.violations()[0];
    // Alone, the answer bounds nothing later than 10 ms + ttl.
    LeaseChecker d(Tight());
    d.OnGranted(7, 1, 0, 10 * kMs);
    d.OnKeepAlive(7, 1050 * kMs, 1052 * kMs, KA::kOk);
    EXPECT_EQ(d.violations().size(), 1u);
  }
}

TEST(LeaseCheckerLateTest, PromotionExtendsByTheElectionTimeout) {
  LeaseChecker c(Tight());
  c.OnGranted(7, 1, 0, 10 * kMs);
  c.OnPrimary(800 * kMs);  // a new leader: ttl + 100 ms from here
  c.OnKeepAlive(7, 1850 * kMs, 1860 * kMs, KA::kOk);
  EXPECT_TRUE(c.violations().empty()) << c.violations()[0];
  c.OnKeepAlive(7, 2861 * kMs, 2862 * kMs, KA::kOk);  // 1 s after 1860
  EXPECT_EQ(c.violations().size(), 1u);
}

TEST(LeaseCheckerLateTest, APromotionBeforeTheGrantDoesNotCount) {
  LeaseChecker c(Tight());
  c.OnPrimary(100 * kMs);
  c.OnGranted(7, 1, 150 * kMs, 160 * kMs);
  EXPECT_EQ(c.Deadline(7), 1160 * kMs + 1000);
}

TEST(LeaseCheckerLateTest, ARenewOfUnknownTimeAddsOneTtl) {
  LeaseChecker c(Tight());
  c.OnGranted(7, 1, 0, 10 * kMs);
  // A failed keep-alive that is over: whatever it did, it did by then.
  c.OnKeepAlive(7, 200 * kMs, 300 * kMs, KA::kFailed);
  EXPECT_EQ(c.Deadline(7), 1300 * kMs + 1000);
  // One whose client gave up: it may renew at any time the lease is
  // still alive, so at most one TTL past the deadline.
  c.OnKeepAlive(7, 400 * kMs, 2400 * kMs, KA::kFailed,
                /*may_renew_later=*/true);
  EXPECT_EQ(c.Deadline(7), 2300 * kMs + 1000);
  c.OnKeepAlive(7, 2300 * kMs, 2301 * kMs, KA::kOk);
  EXPECT_TRUE(c.violations().empty()) << c.violations()[0];
  EXPECT_EQ(c.Deadline(7), 3301 * kMs + 1000 + 1 * kSec);
  // The leader answers it at last: settled, by then.
  c.OnKeepAliveSettled(7, 2500 * kMs);
  EXPECT_EQ(c.Deadline(7), 3500 * kMs + 1000);
  c.OnKeepAliveSettled(7, 9000 * kMs);  // nothing left to settle
  EXPECT_EQ(c.Deadline(7), 3500 * kMs + 1000);
}

TEST(LeaseCheckerLateTest, ACopiedForwardMayRenewAgain) {
  LeaseChecker c(Tight());
  c.OnGranted(7, 1, 0, 10 * kMs);
  c.OnKeepAlive(7, 200 * kMs, 210 * kMs, KA::kOk);
  EXPECT_EQ(c.Deadline(7), 1210 * kMs + 1000);
  c.OnKeepAlive(7, 300 * kMs, 310 * kMs, KA::kOk, /*may_renew_later=*/true);
  EXPECT_EQ(c.Deadline(7), 2310 * kMs + 1000);
  c.OnKeepAlive(7, 2311 * kMs, 2312 * kMs, KA::kOk);
  EXPECT_EQ(c.violations().size(), 1u);
}

TEST(LeaseCheckerLateTest, DriftBoundLengthensTheTtl) {
  LeaseChecker::Bounds b = Tight();
  b.max_drift_ppm = 5000;  // a leader's clock may run 0.5% slow
  LeaseChecker c(b);
  c.OnGranted(7, 2, 0, 0);
  // 2 s / 0.995 = 2010.050251 ms, rounded up, plus 1 us.
  EXPECT_EQ(c.Deadline(7), 2010050252 + 1000);
  c.OnKeepAlive(7, 2010 * kMs, 2011 * kMs, KA::kOk);
  EXPECT_TRUE(c.violations().empty());
  c.OnKeepAlive(7, 4022 * kMs, 4023 * kMs, KA::kOk);
  EXPECT_EQ(c.violations().size(), 1u);
}

TEST(LeaseCheckerLateTest, AliveAnswerAfterTheDeadlineIsCaught) {
  LeaseChecker c(Tight());
  c.OnGranted(7, 1, 0, 10 * kMs);
  c.OnTimeToLive(7, 900 * kMs, 901 * kMs, 0);
  EXPECT_TRUE(c.violations().empty());
  c.OnTimeToLive(7, 1100 * kMs, 1101 * kMs, 0);
  EXPECT_EQ(c.violations().size(), 1u);
}

// ---- revoked leases stay dead ----

TEST(LeaseCheckerRevokedTest, KeepAliveAfterTheRevokeIsCaught) {
  LeaseChecker c(Tight());
  c.OnGranted(7, 5, 0, 10 * kMs);
  c.OnRevokeRequested(7, 100 * kMs);
  c.OnRevokeApplied(7, 120 * kMs);
  c.OnKeepAlive(7, 130 * kMs, 135 * kMs, KA::kOk);
  ASSERT_EQ(c.violations().size(), 1u);
  EXPECT_NE(c.violations()[0].find("after its revoke"), std::string::npos);
}

TEST(LeaseCheckerSettleTest, MustBeGoneAfterDeadlinePlusRevokeTime) {
  LeaseChecker c(Tight());
  c.OnGranted(7, 1, 0, 10 * kMs);
  const int64_t gone = c.Deadline(7) + 2 * kSec;
  EXPECT_EQ(c.SettleTime(), gone);
  EXPECT_TRUE(c.MustBeGone(gone).empty());
  EXPECT_EQ(c.MustBeGone(gone + 1).size(), 1u);
  c.OnRevokeApplied(7, 1100 * kMs);
  EXPECT_EQ(c.SettleTime(), 0);
}

}  // namespace
}  // namespace detcd::harness
