// The plan detcd-chaos takes from the simulator (chaos/plan.h): how an
// event's WHAT becomes a world state, and that a scenario's plan is a pure
// function of its seed. Needs no privileges (no cluster is started).
#include "chaos/plan.h"

#include <map>
#include <string>

#include "gtest/gtest.h"

namespace detcd::chaos {
namespace {

TEST(ParseWorldState, TakesTheStateAfterTheEvent) {
  WorldTarget t;
  std::map<std::string, int> na;
  ASSERT_TRUE(ParseWorldState("down:1 => down:2 paused:3 cut:1>3,3>1; crash +1",
                              3, &t, &na));
  EXPECT_EQ(t.down, (std::set<int>{1}));
  EXPECT_EQ(t.paused, (std::set<int>{2}));
  EXPECT_EQ(t.cuts, (std::set<std::pair<int, int>>{{0, 2}, {2, 0}}));
  EXPECT_TRUE(na.empty());  // crashes map through the state
  EXPECT_EQ(t.Describe(), "down:m1 paused:m2 cut:m0>m2,m2>m0");
}

TEST(ParseWorldState, AllWellClearsAndCountersWithoutStateChangeNothing) {
  WorldTarget t;
  t.down = {0};
  std::map<std::string, int> na;
  ASSERT_TRUE(ParseWorldState("down:1 => all well", 3, &t, &na));
  EXPECT_EQ(t, WorldTarget{});
  // Only counters: no state change; what has no counterpart is counted.
  EXPECT_FALSE(ParseWorldState("membership +1; disk +2", 3, &t, &na));
  EXPECT_EQ(na["membership"], 1);
  EXPECT_EQ(na["disk"], 1);
  EXPECT_FALSE(ParseWorldState("no visible change (settings, or nothing to do)",
                               3, &t, &na));
  EXPECT_EQ(na.size(), 3u);
}

TEST(ParseWorldState, SkewAndMembersPastTheClusterAreNotApplied) {
  WorldTarget t;
  std::map<std::string, int> na;
  ASSERT_TRUE(
      ParseWorldState("all well => down:4 skewed:1 cut:1>4", 3, &t, &na));
  EXPECT_TRUE(t.down.empty());
  EXPECT_TRUE(t.cuts.empty());
  EXPECT_EQ(na["clock skew"], 1);
  EXPECT_EQ(na["member added by a membership change"], 2);
}

TEST(PlanFromScenarios, SameSeedSamePlanAndMergedStates) {
  const int64_t fault_ns = 10'000'000'000;
  auto a = PlanFromScenarios("crash-restart-loop+partition-heal", 1, 3,
                             fault_ns, 1.0);
  auto b = PlanFromScenarios("crash-restart-loop+partition-heal", 1, 3,
                             fault_ns, 1.0);
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE(b.ok());
  ASSERT_FALSE(a->events.empty());
  ASSERT_EQ(a->events.size(), b->events.size());
  bool kill = false, cut = false, both = false;
  int64_t last = 0;
  for (size_t i = 0; i < a->events.size(); ++i) {
    const PlannedEvent& e = a->events[i];
    EXPECT_EQ(e.at_ns, b->events[i].at_ns);
    EXPECT_EQ(e.target, b->events[i].target);
    EXPECT_GE(e.at_ns, last);
    EXPECT_LT(e.at_ns, fault_ns);
    last = e.at_ns;
    kill |= !e.target.down.empty();
    cut |= !e.target.cuts.empty();
    both |= !e.target.down.empty() && !e.target.cuts.empty();
  }
  EXPECT_TRUE(kill);
  EXPECT_TRUE(cut);
  EXPECT_TRUE(both);  // the two scenarios' states are merged
}

TEST(PlanFromScenarios, TimeScaleStretchesAndUnknownScenarioFails) {
  auto one = PlanFromScenarios("partition-heal", 3, 3, 8'000'000'000, 1.0);
  auto two = PlanFromScenarios("partition-heal", 3, 3, 16'000'000'000, 2.0);
  ASSERT_TRUE(one.ok() && two.ok());
  ASSERT_EQ(one->events.size(), two->events.size());
  for (size_t i = 0; i < one->events.size(); ++i) {
    EXPECT_EQ(2 * one->events[i].at_ns, two->events[i].at_ns);
  }
  EXPECT_FALSE(PlanFromScenarios("no-such", 1, 3, 1'000'000'000, 1.0).ok());
}

TEST(PlanFromScenarios, DiskFullNamesTheMember) {
  auto p = PlanFromScenarios("disk-full", 6, 3, 10'000'000'000, 1.0);
  ASSERT_TRUE(p.ok());
  int fills = 0, frees = 0;
  WorldTarget prev;
  for (const PlannedEvent& e : p->events) {
    for (int m : e.target.disk_full) {
      EXPECT_LT(m, 3);
      fills += !prev.disk_full.count(m);
    }
    for (int m : prev.disk_full) frees += !e.target.disk_full.count(m);
    prev = e.target;
  }
  EXPECT_GT(fills, 0);
  EXPECT_GT(frees, 0);
}

}  // namespace
}  // namespace detcd::chaos
