#include "sim/sim_network.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace detcd::sim {
namespace {

struct Got {
  uint64_t from;
  std::string payload;
  int64_t at;
};

class NetworkTest : public ::testing::Test {
 protected:
  NetworkTest() : net_(&world_, env::SeededRng(7)) {
    for (uint64_t id = 1; id <= 3; ++id) {
      net_.Attach(id, [this, id](uint64_t from, std::string p) {
        got_[id].push_back({from, std::move(p), world_.now()});
      });
    }
  }
  World world_;
  SimNetwork net_;
  std::map<uint64_t, std::vector<Got>> got_;
};

TEST(WorldTest, RunsEventsInTimeThenSequenceOrder) {
  World w;
  std::vector<int> order;
  w.At(20, [&] { order.push_back(3); });
  w.At(10, [&] { order.push_back(1); });
  w.At(10, [&] { order.push_back(2); });
  w.At(10, [&] { w.After(0, [&] { order.push_back(4); }); });
  w.RunUntil(100);
  EXPECT_EQ(order, (std::vector<int>{1, 2, 4, 3}));
  EXPECT_EQ(w.now(), 100);
}

TEST(WorldTest, StopsAtTheLimit) {
  World w;
  bool ran = false;
  w.At(50, [&] { ran = true; });
  w.RunUntil(49);
  EXPECT_FALSE(ran);
  EXPECT_EQ(w.pending(), 1u);
  w.RunUntil(50);
  EXPECT_TRUE(ran);
}

TEST_F(NetworkTest, DeliversWithinTheLatencyBounds) {
  NetworkOptions o;
  o.min_latency_ns = 5 * kMillisecond;
  o.max_latency_ns = 9 * kMillisecond;
  net_.set_options(o);
  for (int i = 0; i < 100; ++i) net_.Send(1, 2, "m");
  world_.RunUntil(kSecond);
  ASSERT_EQ(got_[2].size(), 100u);
  for (const Got& g : got_[2]) {
    EXPECT_GE(g.at, 5 * kMillisecond);
    EXPECT_LE(g.at, 9 * kMillisecond);
    EXPECT_EQ(g.from, 1u);
  }
}

TEST_F(NetworkTest, PartitionsAreSymmetricAndOneWayCutsAreNot) {
  net_.Partition({1}, {2, 3});
  net_.Send(1, 2, "a");
  net_.Send(3, 1, "b");
  net_.Send(2, 3, "c");
  world_.RunUntil(kSecond);
  EXPECT_TRUE(got_[2].empty());
  EXPECT_TRUE(got_[1].empty());
  EXPECT_EQ(got_[3].size(), 1u);
  net_.HealAll();
  net_.Cut(1, 2);
  net_.Send(1, 2, "x");
  net_.Send(2, 1, "y");
  world_.RunUntil(2 * kSecond);
  EXPECT_TRUE(got_[2].empty());
  EXPECT_EQ(got_[1].size(), 1u);
}

TEST_F(NetworkTest, LossAndDuplicationFollowTheirRates) {
  NetworkOptions o;
  o.loss = 0.3;
  o.duplicate = 0.2;
  net_.set_options(o);
  for (int i = 0; i < 10000; ++i) net_.Send(1, 2, "m");
  world_.RunUntil(kSecond);
  // Expected deliveries: 10000 * 0.7 * 1.2 = 8400.
  EXPECT_NEAR(static_cast<double>(got_[2].size()), 8400, 300);
  EXPECT_NEAR(static_cast<double>(net_.stats().lost), 3000, 200);
}

TEST_F(NetworkTest, ClogHoldsMessagesUntilItLifts) {
  net_.Clog(1, 2, 500 * kMillisecond);
  net_.Send(1, 2, "m");
  world_.RunUntil(499 * kMillisecond);
  EXPECT_TRUE(got_[2].empty());
  world_.RunUntil(501 * kMillisecond);
  EXPECT_EQ(got_[2].size(), 1u);
}

TEST_F(NetworkTest, DetachedNodesLoseTheirMail) {
  net_.Send(1, 2, "m");
  net_.Detach(2);
  world_.RunUntil(kSecond);
  EXPECT_TRUE(got_[2].empty());
  EXPECT_EQ(net_.stats().to_down_node, 1u);
}

TEST(NetworkDeterminism, SameSeedSameSchedule) {
  auto run = [](uint64_t seed) {
    World w;
    SimNetwork net(&w, env::SeededRng(seed));
    NetworkOptions o;
    o.loss = 0.1;
    o.duplicate = 0.1;
    o.reorder = 0.3;
    net.set_options(o);
    std::vector<std::pair<int64_t, std::string>> log;
    net.Attach(2, [&](uint64_t, std::string p) {
      log.push_back({w.now(), std::move(p)});
    });
    for (int i = 0; i < 200; ++i) net.Send(1, 2, std::to_string(i));
    w.RunUntil(10 * kSecond);
    return std::make_pair(log, w.trace_hash());
  };
  EXPECT_EQ(run(42), run(42));
  EXPECT_NE(run(42).second, run(43).second);
}

}  // namespace
}  // namespace detcd::sim
