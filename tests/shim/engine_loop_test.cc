#include "shim/engine_loop.h"

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
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

// Posts made while a thread holds its wakes wait for ReleaseWakes (the
// engine sleeps until its next tick, 1000 s away); another thread's posts
// wake it as before.
TEST(EngineLoopTest, HeldWakesWakeTheEngineOnceReleased) {
  EngineLoop loop({.tick_ns = 1'000'000'000'000}, [] {});
  loop.Start();
  ASSERT_TRUE(loop.RunSync([] {}));
  // RunSync returns as its task ends; the engine thread then looks at its
  // queue once more before it sleeps, and would run what comes meanwhile
  // without any wake (1 run in 10 failed on that).
  absl::SleepFor(absl::Milliseconds(20));  // the engine thread now sleeps
  std::atomic<int> ran{0};
  loop.HoldWakes();
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(loop.Post([&] { ++ran; }));
  absl::SleepFor(absl::Milliseconds(50));
  EXPECT_EQ(ran.load(), 0) << "a held post woke the engine";
  // Another thread is not held: its post wakes the engine, which runs
  // everything queued.
  absl::Notification other;
  std::thread([&] { loop.Post([&] { other.Notify(); }); }).join();
  ASSERT_TRUE(other.WaitForNotificationWithTimeout(absl::Seconds(10)));
  EXPECT_EQ(ran.load(), 10);
  // Held again: released, the wake comes.
  absl::Notification released;
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(loop.Post([&] { ++ran; }));
  ASSERT_TRUE(loop.Post([&] { released.Notify(); }));
  absl::SleepFor(absl::Milliseconds(50));
  EXPECT_FALSE(released.HasBeenNotified());
  loop.ReleaseWakes();
  ASSERT_TRUE(released.WaitForNotificationWithTimeout(absl::Seconds(10)));
  EXPECT_EQ(ran.load(), 20);
  // No longer held: a post wakes it at once.
  absl::Notification after;
  ASSERT_TRUE(loop.Post([&] { after.Notify(); }));
  EXPECT_TRUE(after.WaitForNotificationWithTimeout(absl::Seconds(10)));
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
  EngineLoop loop({.tick_ns = 1'000'000'000, .max_peer_backlog = 10}, [] {});
  // Not started: nothing drains, so the eleventh peer task is dropped while
  // client tasks are still taken.
  for (int i = 0; i < 10; ++i) EXPECT_TRUE(loop.PostPeer([] {}));
  EXPECT_FALSE(loop.PostPeer([] {}));
  EXPECT_EQ(loop.dropped_peer(), 1u);
  EXPECT_TRUE(loop.Post([] {}));
  loop.Start();
  loop.Stop(nullptr);
}

// Group commit: the tasks queued while the engine was busy run as one batch
// between one before_batch and one after_batch (the server holds raft's
// Ready there, so they share one WAL sync).
TEST(EngineLoopTest, TasksQueuedWhileBusyRunAsOneBatch) {
  std::vector<std::string> events;  // touched only on the engine thread
  EngineLoop loop({.tick_ns = 1'000'000'000}, [] {});
  loop.SetBatchHooks([&] { events.push_back("("); },
                     [&] { events.push_back(")"); });
  loop.Start();
  absl::Notification busy, go;
  ASSERT_TRUE(loop.Post([&] {
    events.push_back("first");
    busy.Notify();
    // Bounded: the test thread posts 50 tasks and lets go at once.
    EXPECT_TRUE(go.WaitForNotificationWithTimeout(absl::Seconds(30)));
  }));
  ASSERT_TRUE(busy.WaitForNotificationWithTimeout(absl::Seconds(30)));
  for (int i = 0; i < 50; ++i) {
    ASSERT_TRUE(loop.Post([&, i] { events.push_back(std::to_string(i)); }));
  }
  go.Notify();
  ASSERT_TRUE(loop.RunSync([] {}));
  loop.Stop(nullptr);
  // ( first ) ( 0 .. 49 ) ...: the 50 tasks between one pair of hooks.
  ASSERT_GE(events.size(), 56u);
  EXPECT_EQ(events[0], "(");
  EXPECT_EQ(events[1], "first");
  EXPECT_EQ(events[2], ")");
  EXPECT_EQ(events[3], "(");
  for (int i = 0; i < 50; ++i) EXPECT_EQ(events[4 + i], std::to_string(i));
  EXPECT_EQ(events[54], ")");
  // Every task anywhere ran inside a pair.
  int depth = 0;
  for (const std::string& e : events) {
    if (e == "(") {
      EXPECT_EQ(++depth, 1);
    } else if (e == ")") {
      EXPECT_EQ(--depth, 0);
    } else {
      EXPECT_EQ(depth, 1) << e;
    }
  }
  EXPECT_EQ(depth, 0);
}

}  // namespace
}  // namespace detcd::shim
