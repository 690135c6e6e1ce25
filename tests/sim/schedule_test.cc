#include "sim/schedule.h"

#include <map>
#include <string>
#include <vector>

#include "engine/util/buggify.h"
#include "gtest/gtest.h"
#include "sim/sim_network.h"
#include "sim/world.h"

namespace detcd::sim {
namespace {

TEST(ScheduledRngTest, PlainPathIsTheSeededRngDrawForDraw) {
  env::SeededRng a(42);
  ScheduledRng b(env::SeededRng(42));
  for (int i = 0; i < 100; ++i) ASSERT_EQ(a.Next(), b.Next());
}

TEST(ScheduledRngTest, RecordingDoesNotChangeTheDraws) {
  env::SeededRng a(7);
  Decisions d;
  ScheduledRng b(env::SeededRng(7), &d, "base");
  for (int i = 0; i < 50; ++i) {
    b.Use(i % 3 == 0 ? "x" : "y");
    ASSERT_EQ(a.Next(), b.Next());
  }
  EXPECT_EQ(d.output().streams.at("x").indices.size(), 17u);
  EXPECT_EQ(d.output().streams.at("y").indices.size(), 33u);
}

TEST(ScheduledRngTest, ReplayServesEachStreamItsValuesWhateverTheOrder) {
  Decisions rec;
  ScheduledRng r(env::SeededRng(9), &rec, "base");
  std::vector<uint64_t> xs, ys;
  for (int i = 0; i < 20; ++i) {
    r.Use(i % 2 ? "x" : "y");
    (i % 2 ? xs : ys).push_back(r.Next());
  }
  const Schedule s = rec.output();
  // Replay draws the streams in another order (changed code): each stream
  // still gets its own values, in its own order.
  Decisions rep(&s);
  ScheduledRng p(env::SeededRng(9), &rep, "base");
  p.Use("y");
  for (uint64_t v : ys) ASSERT_EQ(p.Next(), v);
  p.Use("x");
  for (uint64_t v : xs) ASSERT_EQ(p.Next(), v);
  // Beyond what was recorded: fresh values of the base, not a repeat.
  const uint64_t fresh = p.Next();
  for (uint64_t v : xs) EXPECT_NE(fresh, v);
  for (uint64_t v : ys) EXPECT_NE(fresh, v);
  // A stream that was never recorded gets fresh values too.
  p.Use("z");
  EXPECT_NE(p.Next(), fresh);
}

TEST(ScheduleTest, SerializeParseRoundTrip) {
  Schedule s;
  s.seed = 123;
  s.scenario = "partition-heal";
  s.nodes = 5;
  s.ops = 77;
  s.fault_phase_ns = 4 * kSecond;
  s.buggify = "all";
  s.recorded_bug = "forget-vote";
  s.failure = "election safety: nodes 1 and 2\tboth lead";
  s.units.push_back({Schedule::UnitKind::kEvent, "e0#1", 1500, "crash +1", ""});
  s.units.push_back(
      {Schedule::UnitKind::kOp, "c2.7", 1700, "put(k1, v a b)", "fail: x"});
  // Indices that go down as well as up (a base drawn by two instances),
  // and more than one line's worth.
  std::vector<uint64_t> idx;
  for (int i = 0; i < 150; ++i) idx.push_back(i % 7 == 0 ? i / 2 : i * 3);
  s.streams["net/1-2"] = {"network", idx};
  auto p = Schedule::Parse(s.Serialize());
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->seed, 123u);
  EXPECT_EQ(p->scenario, "partition-heal");
  EXPECT_EQ(p->nodes, 5);
  EXPECT_EQ(p->ops, 77);
  EXPECT_EQ(p->fault_phase_ns, 4 * kSecond);
  EXPECT_EQ(p->buggify, "all");
  EXPECT_EQ(p->recorded_bug, "forget-vote");
  EXPECT_EQ(p->failure, "election safety: nodes 1 and 2 both lead");
  ASSERT_EQ(p->units.size(), 2u);
  EXPECT_EQ(p->units[1].id, "c2.7");
  EXPECT_EQ(p->units[1].time_ns, 1700);
  EXPECT_EQ(p->units[1].what, "put(k1, v a b)");
  EXPECT_EQ(p->units[1].result, "fail: x");
  EXPECT_EQ(p->streams.at("net/1-2").base, "network");
  EXPECT_EQ(p->streams.at("net/1-2").indices, idx);
  EXPECT_EQ(p->Serialize(), s.Serialize());
}

TEST(ScheduleTest, ParseRefusesWhatItDoesNotKnow) {
  EXPECT_FALSE(Schedule::Parse("").ok());
  EXPECT_FALSE(Schedule::Parse("hello\n").ok());
  EXPECT_FALSE(Schedule::Parse("detcd-schedule 2\nscenario x\n").ok());
  EXPECT_FALSE(Schedule::Parse("detcd-schedule 1\nscenario x\nfoo 1\n").ok());
  EXPECT_FALSE(Schedule::Parse("detcd-schedule 1\nscenario x\nseed z\n").ok());
  EXPECT_FALSE(
      Schedule::Parse("detcd-schedule 1\nscenario x\nstream a b q\n").ok());
  EXPECT_FALSE(Schedule::Parse("detcd-schedule 1\nseed 1\n").ok());
  EXPECT_TRUE(Schedule::Parse("detcd-schedule 1\n# c\nscenario x\n").ok());
  // BUGGIFY: everything, or one fault point the engine knows.
  EXPECT_FALSE(
      Schedule::Parse("detcd-schedule 1\nscenario x\nbuggify nope\n").ok());
  const std::string point(buggify::kPoints[0].name);
  auto one =
      Schedule::Parse("detcd-schedule 1\nscenario x\nbuggify " + point + "\n");
  ASSERT_TRUE(one.ok()) << one.status();
  EXPECT_EQ(one->buggify, point);
}

TEST(ScheduleTest, UnitsListedAndOperationsPerClient) {
  Schedule s;
  s.scenario = "steady";
  s.units.push_back({Schedule::UnitKind::kOp, "c1.4", 10, "", ""});
  s.units.push_back({Schedule::UnitKind::kOp, "c1.2", 5, "", ""});
  s.units.push_back({Schedule::UnitKind::kOp, "c11.0", 5, "", ""});
  s.units.push_back({Schedule::UnitKind::kEvent, "e3#0", 7, "", ""});
  Decisions d(&s);
  EXPECT_TRUE(d.Listed(Schedule::UnitKind::kEvent, "e3#0"));
  EXPECT_FALSE(d.Listed(Schedule::UnitKind::kEvent, "e3#1"));
  EXPECT_FALSE(d.Listed(Schedule::UnitKind::kOp, "e3#0"));
  EXPECT_EQ(d.RecordedTime(Schedule::UnitKind::kOp, "c1.4"), 10);
  EXPECT_EQ(d.ListedOps(1), (std::vector<int>{2, 4}));
  EXPECT_EQ(d.ListedOps(11), (std::vector<int>{0}));
  EXPECT_TRUE(d.ListedOps(2).empty());
}

// The network draws each payload's fate from its link's stream: replayed
// with the links' traffic interleaved differently, every link's payloads
// arrive with the latencies they had.
TEST(ScheduleTest, NetworkLatenciesFollowTheLinkNotTheGlobalOrder) {
  auto run = [](Decisions* d, bool interleave) {
    World w;
    SimNetwork net(&w, env::SeededRng(5), d);
    NetworkOptions o;
    o.reorder = 0.3;
    net.set_options(o);
    std::vector<std::pair<std::string, int64_t>> arrivals;
    for (uint64_t id : {1, 2, 3}) {
      net.Attach(id, [&arrivals, &w](uint64_t, std::string p) {
        arrivals.push_back({p, w.now()});
      });
    }
    for (int i = 0; i < 20; ++i) {
      if (interleave) {
        net.Send(1, 2, "a" + std::to_string(i));
        net.Send(3, 2, "b" + std::to_string(i));
      } else {
        net.Send(3, 2, "b" + std::to_string(i));
        net.Send(1, 2, "a" + std::to_string(i));
      }
    }
    w.RunUntil(kSecond);
    std::map<std::string, int64_t> at(arrivals.begin(), arrivals.end());
    return at;
  };
  Decisions rec;
  const auto first = run(&rec, true);
  const Schedule s = rec.output();
  Decisions rep(&s);
  const auto again = run(&rep, false);
  EXPECT_EQ(first, again);
  // Without the schedule the other order gives other latencies.
  EXPECT_NE(run(nullptr, false), first);
}

}  // namespace
}  // namespace detcd::sim
