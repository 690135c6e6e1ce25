#include "shim/work_thread.h"

#include <sched.h>

#include <atomic>
#include <functional>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"

namespace detcd::shim {
namespace {

TEST(WorkThreadTest, OneThreadRunsTasksInOrder) {
  WorkThread w("work-test", ThreadKind::kIo);
  w.Start();
  absl::Mutex mu;
  std::vector<int> seen;
  for (int i = 0; i < 100; ++i) {
    ASSERT_TRUE(w.Post([&, i] {
      absl::MutexLock l(&mu);
      seen.push_back(i);
    }));
  }
  w.Stop();  // runs what is queued
  ASSERT_EQ(seen.size(), 100u);
  for (int i = 0; i < 100; ++i) EXPECT_EQ(seen[i], i);
  EXPECT_FALSE(w.Post([] {}));
}

// The kind sets the threads' scheduling class (shim/thread_name.h): a
// thread something waits on keeps the default, background work is batch.
TEST(WorkThreadTest, KindSetsTheSchedulingClass) {
  for (auto [kind, want] : {std::pair{ThreadKind::kIo, SCHED_OTHER},
                            std::pair{ThreadKind::kBackground, SCHED_BATCH}}) {
    WorkThread w("work-test", kind);
    w.Start();
    std::atomic<int> policy{-1};
    ASSERT_TRUE(w.Post([&] { policy = sched_getscheduler(0); }));
    w.Stop();
    EXPECT_EQ(policy.load(), want);
  }
}

// Two tasks that each wait for the other finish only if they run side by
// side (bounded: each gives up after 10 s, and then the test fails).
TEST(WorkThreadTest, SeveralThreadsRunTasksSideBySide) {
  WorkThread w("work-test", ThreadKind::kBackground, 2);
  w.Start();
  absl::Notification a, b;
  std::atomic<int> met{0};
  ASSERT_TRUE(w.Post([&] {
    a.Notify();
    if (b.WaitForNotificationWithTimeout(absl::Seconds(10))) ++met;
  }));
  ASSERT_TRUE(w.Post([&] {
    b.Notify();
    if (a.WaitForNotificationWithTimeout(absl::Seconds(10))) ++met;
  }));
  w.Stop();
  EXPECT_EQ(met.load(), 2);
}

// OffloadThread: work runs off the calling thread, `done` goes through the
// post function; once stopped, both run on the caller's thread.
TEST(WorkThreadTest, OffloadPostsCompletions) {
  std::atomic<int> posted{0};
  OffloadThread o("offload-test", ThreadKind::kBackground, 2,
                  [&](std::function<void()> done) {
                    ++posted;
                    done();
                    return true;
                  });
  o.Start();
  const std::thread::id me = std::this_thread::get_id();
  absl::Notification finished;
  std::thread::id worked_on;
  o.Run([&] { worked_on = std::this_thread::get_id(); },
        [&] { finished.Notify(); });
  ASSERT_TRUE(finished.WaitForNotificationWithTimeout(absl::Seconds(10)));
  EXPECT_NE(worked_on, me);
  o.Stop();
  bool ran = false;
  o.Run([&] { worked_on = std::this_thread::get_id(); }, [&] { ran = true; });
  EXPECT_TRUE(ran);
  EXPECT_EQ(worked_on, me);
  EXPECT_EQ(posted.load(), 2);
}

}  // namespace
}  // namespace detcd::shim
