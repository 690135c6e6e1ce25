#include "shim/engine_loop.h"

#include <atomic>
#include <functional>
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
//
// Whether the engine thread sleeps when the held posts come cannot be seen
// from outside: after a batch it looks at its queue once more before it
// waits, and runs what it finds without any wake (on a loaded machine that
// look can come well after the batch's last task). So each step tries up
// to 20 times, each time after a pause, and passes when held posts stayed
// queued once; a loop that wakes for held posts fails all 20.
TEST(EngineLoopTest, HeldWakesWakeTheEngineOnceReleased) {
  EngineLoop loop({.tick_ns = 1'000'000'000'000}, [] {});
  loop.Start();
  ASSERT_TRUE(loop.RunSync([] {}));
  // Holds wakes, posts ten tasks and a marker, and checks that none ran
  // within 50 ms; then `wake` must make all of them run. True if they
  // stayed queued.
  auto held_posts_wait = [&](const std::function<void()>& wake) {
    absl::SleepFor(absl::Milliseconds(20));  // let the engine thread sleep
    std::atomic<int> ran{0};
    absl::Notification marker;
    loop.HoldWakes();
    for (int i = 0; i < 10; ++i) EXPECT_TRUE(loop.Post([&] { ++ran; }));
    EXPECT_TRUE(loop.Post([&] { marker.Notify(); }));
    absl::SleepFor(absl::Milliseconds(50));
    const bool stayed = !marker.HasBeenNotified() && ran.load() == 0;
    wake();
    EXPECT_TRUE(marker.WaitForNotificationWithTimeout(absl::Seconds(10)));
    EXPECT_EQ(ran.load(), 10);
    return stayed;
  };
  // Another thread is not held: its post wakes the engine, which runs
  // everything queued.
  bool stayed = false;
  for (int i = 0; i < 20 && !stayed; ++i) {
    stayed = held_posts_wait(
        [&] { std::thread([&] { loop.Post([] {}); }).join(); });
    loop.ReleaseWakes();
  }
  EXPECT_TRUE(stayed) << "held posts woke the engine";
  // Released, the wake comes.
  stayed = false;
  for (int i = 0; i < 20 && !stayed; ++i) {
    stayed = held_posts_wait([&] { loop.ReleaseWakes(); });
  }
  EXPECT_TRUE(stayed) << "held posts woke the engine";
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

// An idle engine's held posts run on the releasing thread, as one batch
// between the hooks, and count as the engine's; so does what that batch
// posts, as the next batch; the engine thread is not woken for them.
// (Right after a batch the engine thread may still be finishing it, and
// then it runs the posts itself: so the test tries up to 20 times, each
// after a pause, and a loop that never runs them here fails all 20.)
TEST(EngineLoopTest, AnIdleEnginesHeldPostsRunOnTheReleasingThread) {
  std::vector<std::string> events;  // touched only by batches
  EngineLoop loop({.tick_ns = 1'000'000'000'000}, [] {});
  loop.SetBatchHooks([&] { events.push_back("("); },
                     [&] { events.push_back(")"); });
  loop.Start();
  const std::thread::id me = std::this_thread::get_id();
  bool here = false;
  for (int attempt = 0; attempt < 20 && !here; ++attempt) {
    ASSERT_TRUE(loop.RunSync([] {}));
    absl::SleepFor(absl::Milliseconds(20));  // let the engine thread sleep
    size_t start = 0;
    ASSERT_TRUE(loop.RunSync([&] { start = events.size() + 1; }));  // its ")"
    absl::SleepFor(absl::Milliseconds(20));
    std::atomic<int> ran_here{0};
    loop.HoldWakes();
    for (int i = 0; i < 3; ++i) {
      ASSERT_TRUE(loop.PostPeer([&, i] {
        if (std::this_thread::get_id() == me) {
          EXPECT_TRUE(loop.OnEngineThread());
          ++ran_here;
        }
        events.push_back(std::to_string(i));
        // What a batch posts (a disk completion) runs next, here too.
        if (i == 2) {
          EXPECT_TRUE(loop.PostCompletion([&] {
            if (std::this_thread::get_id() == me) ++ran_here;
            events.push_back("c");
          }));
        }
      }));
    }
    loop.ReleaseWakesRunningHere(3);
    if (ran_here.load() == 0) continue;
    here = true;
    EXPECT_EQ(ran_here.load(), 4);
    EXPECT_EQ(
        std::vector<std::string>(events.begin() + start, events.end()),
        (std::vector<std::string>{"(", "0", "1", "2", ")", "(", "c", ")"}));
    EXPECT_EQ(loop.batches_run_here(), 2u);
  }
  EXPECT_TRUE(here) << "held posts never ran on the releasing thread";
  EXPECT_FALSE(loop.OnEngineThread());
  // More than max_here: the engine thread runs them.
  const uint64_t before = loop.batches_run_here();
  std::atomic<int> on_engine{0};
  absl::SleepFor(absl::Milliseconds(20));
  loop.HoldWakes();
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(loop.Post([&] {
      if (std::this_thread::get_id() != me) ++on_engine;
    }));
  }
  loop.ReleaseWakesRunningHere(2);
  ASSERT_TRUE(loop.RunSync([] {}));
  EXPECT_EQ(on_engine.load(), 3);
  EXPECT_EQ(loop.batches_run_here(), before);
  loop.Stop(nullptr);
}

// While a batch runs (here the engine thread's), held posts are left to
// it: the releasing thread neither runs nor waits, and order holds.
TEST(EngineLoopTest, ABusyEngineKeepsHeldPostsInOrder) {
  EngineLoop loop({.tick_ns = 1'000'000'000'000}, [] {});
  loop.Start();
  absl::Notification busy, go;
  std::vector<int> order;  // touched only by batches
  ASSERT_TRUE(loop.Post([&] {
    busy.Notify();
    EXPECT_TRUE(go.WaitForNotificationWithTimeout(absl::Seconds(30)));
    order.push_back(0);
  }));
  ASSERT_TRUE(busy.WaitForNotificationWithTimeout(absl::Seconds(30)));
  loop.HoldWakes();
  ASSERT_TRUE(loop.Post([&] { order.push_back(1); }));
  loop.ReleaseWakesRunningHere(4);  // returns at once
  ASSERT_TRUE(loop.Post([&] { order.push_back(2); }));
  go.Notify();
  ASSERT_TRUE(loop.RunSync([] {}));
  EXPECT_EQ(order, (std::vector<int>{0, 1, 2}));
  EXPECT_EQ(loop.batches_run_here(), 0u);
  loop.Stop(nullptr);
}

// Many threads releasing into the loop at once, with fast ticks and a
// Stop at the end: batches never overlap, each thread's tasks run in its
// order, every task runs, and some batches ran on posting threads.
TEST(EngineLoopTest, BatchesRunOneAtATimeWhereverTheyRun) {
  std::atomic<int> inside{0};
  std::atomic<int> overlaps{0};
  EngineLoop loop({.tick_ns = 100'000}, [] {});
  loop.SetBatchHooks(
      [&] {
        if (inside.fetch_add(1) != 0) ++overlaps;
      },
      [&] { inside.fetch_sub(1); });
  loop.Start();
  constexpr int kThreads = 4, kPosts = 3000;
  std::vector<std::vector<int>> seen(kThreads);  // touched only by batches
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPosts; i += 2) {
        loop.HoldWakes();
        for (int j = i; j < i + 2; ++j) {
          EXPECT_TRUE(loop.PostPeer([&, t, j] {
            if (inside.load() != 1) ++overlaps;
            seen[t].push_back(j);
          }));
        }
        loop.ReleaseWakesRunningHere(2);
      }
    });
  }
  for (std::thread& th : threads) th.join();
  loop.Stop(nullptr);
  EXPECT_EQ(overlaps.load(), 0);
  for (int t = 0; t < kThreads; ++t) {
    ASSERT_EQ(seen[t].size(), static_cast<size_t>(kPosts)) << t;
    for (int i = 0; i < kPosts; ++i) EXPECT_EQ(seen[t][i], i);
  }
  EXPECT_GT(loop.batches_run_here(), 0u);
}

}  // namespace
}  // namespace detcd::shim
