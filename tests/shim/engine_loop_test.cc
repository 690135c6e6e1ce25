#include "shim/engine_loop.h"

#include <atomic>
#include <thread>
#include <vector>

#include "absl/synchronization/notification.h"
#include "gtest/gtest.h"

namespace detcd::shim {
namespace {

TEST(EngineLoopTest, RunsTasksInOrderOnOneThread) {
  std::atomic<int> ticks{0};
  EngineLoop loop({.tick_ns = 1'000'000}, [&] { ++ticks; });
  loop.Start();
  std::vector<int> seen;  // touched only on the engine thread
  std::thread::id engine_thread;
  for (int i = 0; i < 1000; ++i) {
    ASSERT_TRUE(loop.Post([&, i] {
      if (i == 0) engine_thread = std::this_thread::get_id();
      EXPECT_EQ(std::this_thread::get_id(), engine_thread);
      seen.push_back(i);
    }));
  }
  ASSERT_TRUE(loop.RunSync([] {}));
  ASSERT_EQ(seen.size(), 1000u);
  for (int i = 0; i < 1000; ++i) EXPECT_EQ(seen[i], i);
  EXPECT_NE(engine_thread, std::this_thread::get_id());
  loop.Stop(nullptr);
}

TEST(EngineLoopTest, TicksWhileIdle) {
  std::atomic<int> ticks{0};
  absl::Notification five;
  EngineLoop loop({.tick_ns = 1'000'000}, [&] {
    if (++ticks == 5) five.Notify();
  });
  loop.Start();
  // Bounded wait: five 1 ms ticks must come well within 10 s.
  EXPECT_TRUE(five.WaitForNotificationWithTimeout(absl::Seconds(10)));
  loop.Stop(nullptr);
}

TEST(EngineLoopTest, StopRunsEverythingPostedThenTheLastTask) {
  EngineLoop loop({.tick_ns = 1'000'000'000}, [] {});
  loop.Start();
  std::vector<int> order;
  for (int i = 0; i < 100; ++i) loop.Post([&, i] { order.push_back(i); });
  loop.Stop([&] { order.push_back(-1); });
  ASSERT_EQ(order.size(), 101u);
  EXPECT_EQ(order.back(), -1);
  EXPECT_FALSE(loop.Post([] {}));
  EXPECT_FALSE(loop.RunSync([] {}));
}

TEST(EngineLoopTest, PeerBacklogIsBounded) {
  EngineLoop loop({.tick_ns = 1'000'000'000, .max_peer_backlog = 10},
                  [] {});
  // Not started: nothing drains, so the eleventh peer task is dropped while
  // client tasks are still taken.
  for (int i = 0; i < 10; ++i) EXPECT_TRUE(loop.PostPeer([] {}));
  EXPECT_FALSE(loop.PostPeer([] {}));
  EXPECT_EQ(loop.dropped_peer(), 1u);
  EXPECT_TRUE(loop.Post([] {}));
  loop.Start();
  loop.Stop(nullptr);
}

}  // namespace
}  // namespace detcd::shim
