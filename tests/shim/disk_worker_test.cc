#include "shim/disk_worker.h"

#include <sched.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "shim/engine_loop.h"

namespace detcd::shim {
namespace {

// An engine loop plus a disk thread posting completions into it, as the
// server wires them.
struct Rig {
  EngineLoop loop{{.tick_ns = 1'000'000'000}, [] {}};
  DiskThread disk{[this](std::function<void()> t) {
    return loop.PostCompletion(std::move(t));
  }};
  Rig() {
    loop.Start();
    disk.Start();
  }
  ~Rig() {
    loop.Stop(nullptr);
    disk.Stop();
  }
};

// The engine and the disk thread keep the default scheduling class (a
// commit waits on both, and on a busy machine a SCHED_BATCH disk thread
// waited out other processes' time slices: 12 ms a put); the thread
// freeing garbage, which nobody waits on, runs as SCHED_BATCH
// (shim/thread_name.h).
TEST(DiskThreadTest, TheEngineAndDiskThreadAreNormalTheFreerBatch) {
  Rig r;
  std::atomic<int> engine_policy{-1}, disk_policy{-1}, free_policy{-1};
  absl::Notification done, freed;
  ASSERT_TRUE(r.loop.RunSync([&] { engine_policy = sched_getscheduler(0); }));
  r.loop.Post([&] {
    r.disk.Submit(
        [&] {
          disk_policy = sched_getscheduler(0);
          return absl::OkStatus();
        },
        [&](absl::Status) { done.Notify(); });
  });
  ASSERT_TRUE(done.WaitForNotificationWithTimeout(absl::Seconds(10)));
  struct Garbage {
    Garbage(std::atomic<int>* p, absl::Notification* f)
        : policy(p), freed(f) {}
    ~Garbage() {
      *policy = sched_getscheduler(0);
      freed->Notify();
    }
    std::atomic<int>* policy;
    absl::Notification* freed;
  };
  r.disk.Free(std::make_shared<Garbage>(&free_policy, &freed));
  ASSERT_TRUE(freed.WaitForNotificationWithTimeout(absl::Seconds(10)));
  EXPECT_EQ(engine_policy.load(), SCHED_OTHER);
  EXPECT_EQ(disk_policy.load(), SCHED_OTHER);
  EXPECT_EQ(free_policy.load(), SCHED_BATCH);
}

// Free's garbage goes after the work submitted before it, and not on the
// disk thread: a write submitted after it completes while the free still
// runs (a replaced store of 1M keys took the disk thread 0.1-0.2 s).
TEST(DiskThreadTest, FreesGarbageAfterEarlierWorkOffTheDiskThread) {
  Rig r;
  absl::Notification first_ran, release, freed, second_done;
  std::atomic<bool> freed_after_first{false};
  std::atomic<bool> freed_on_disk_thread{true};
  std::thread::id disk_thread;
  struct Garbage {
    std::function<void()> on_free;
    ~Garbage() { on_free(); }
  };
  auto g = std::make_shared<Garbage>();
  g->on_free = [&] {
    freed_after_first = first_ran.HasBeenNotified();
    freed_on_disk_thread = std::this_thread::get_id() == disk_thread;
    // Bounded: the test lets go once the second write completed.
    release.WaitForNotificationWithTimeout(absl::Seconds(30));
    freed.Notify();
  };
  r.loop.Post([&, g = std::move(g)]() mutable {
    r.disk.Submit(
        [&] {
          disk_thread = std::this_thread::get_id();
          first_ran.Notify();
          return absl::OkStatus();
        },
        [](absl::Status) {});
    r.disk.Free(std::move(g));
    r.disk.Submit([] { return absl::OkStatus(); },
                  [&](absl::Status) { second_done.Notify(); });
  });
  EXPECT_TRUE(second_done.WaitForNotificationWithTimeout(absl::Seconds(10)));
  EXPECT_FALSE(freed.HasBeenNotified());
  release.Notify();
  ASSERT_TRUE(freed.WaitForNotificationWithTimeout(absl::Seconds(30)));
  EXPECT_TRUE(freed_after_first.load());
  EXPECT_FALSE(freed_on_disk_thread.load());
}

TEST(DiskThreadTest, CompletesInSubmissionOrderOnTheEngineThread) {
  Rig r;
  constexpr int kN = 500;
  std::vector<int> worked;  // disk thread only
  std::vector<int> done;    // engine thread only
  std::thread::id disk_tid, engine_tid;
  absl::Notification all;
  ASSERT_TRUE(r.loop.RunSync([&] {
    engine_tid = std::this_thread::get_id();
    for (int i = 0; i < kN; ++i) {
      r.disk.Submit(
          [&, i] {
            if (i == 0) disk_tid = std::this_thread::get_id();
            EXPECT_EQ(std::this_thread::get_id(), disk_tid);
            worked.push_back(i);
            return absl::OkStatus();
          },
          [&, i](absl::Status s) {
            EXPECT_TRUE(s.ok());
            EXPECT_TRUE(r.loop.OnEngineThread());
            done.push_back(i);
            if (i == kN - 1) all.Notify();
          });
    }
  }));
  ASSERT_TRUE(all.WaitForNotificationWithTimeout(absl::Seconds(30)));
  ASSERT_TRUE(r.loop.RunSync([] {}));
  ASSERT_EQ(done.size(), size_t{kN});
  ASSERT_EQ(worked.size(), size_t{kN});
  for (int i = 0; i < kN; ++i) {
    EXPECT_EQ(done[i], i);
    EXPECT_EQ(worked[i], i);
  }
  EXPECT_NE(disk_tid, engine_tid);
  EXPECT_EQ(r.disk.completed(), uint64_t{kN});
}

TEST(DiskThreadTest, ErrorReachesTheCompletion) {
  Rig r;
  absl::Notification got;
  absl::Status seen;
  r.loop.Post([&] {
    r.disk.Submit([] { return absl::InternalError("EIO: fsync: wal"); },
                  [&](absl::Status s) {
                    seen = s;
                    got.Notify();
                  });
  });
  ASSERT_TRUE(got.WaitForNotificationWithTimeout(absl::Seconds(30)));
  EXPECT_EQ(seen.code(), absl::StatusCode::kInternal);
  EXPECT_EQ(seen.message(), "EIO: fsync: wal");
}

// Drain returns only once the work that was submitted has run (the Node
// drains before it takes a snapshot or is destroyed), even while the
// completion has not run yet.
TEST(DiskThreadTest, DrainWaitsForRunningWork) {
  Rig r;
  absl::Notification started, release;
  std::atomic<bool> finished{false};
  std::atomic<bool> completed{false};
  ASSERT_TRUE(r.loop.RunSync([&] {
    r.disk.Submit(
        [&] {
          started.Notify();
          release.WaitForNotification();
          finished = true;
          return absl::OkStatus();
        },
        [&](absl::Status) { completed = true; });
  }));
  started.WaitForNotification();
  // The delay only makes a Drain that does not wait observable (finished
  // would still be false); the test passes whatever the timing.
  std::thread releaser([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    release.Notify();
  });
  // Drain from the engine thread, as the Node does: the completion cannot
  // run meanwhile, the engine thread being busy here.
  ASSERT_TRUE(r.loop.RunSync([&] {
    r.disk.Drain();
    EXPECT_TRUE(finished.load());
    EXPECT_FALSE(completed.load());
  }));
  releaser.join();
  ASSERT_TRUE(r.loop.RunSync([] {}));
  EXPECT_TRUE(completed.load());
}

// Idle work runs while the queue is empty, after each item, until it says
// it has nothing to do; Drain waits for a call in progress.
TEST(DiskThreadTest, IdleWorkRunsBetweenItems) {
  std::atomic<int> budget{3}, calls{0};
  absl::Notification in_idle, release;
  EngineLoop loop{{.tick_ns = 1'000'000'000}, [] {}};
  DiskThread disk{[&loop](std::function<void()> t) {
    return loop.PostCompletion(std::move(t));
  }};
  disk.SetIdleWork([&] {
    ++calls;
    if (budget.load() == 0) return false;
    if (--budget == 0) {
      in_idle.Notify();
      release.WaitForNotification();
    }
    return true;
  });
  loop.Start();
  disk.Start();
  // Nothing submitted yet: no idle work either.
  std::this_thread::sleep_for(std::chrono::milliseconds(5));
  EXPECT_EQ(calls.load(), 0);
  std::atomic<bool> ran{false};
  ASSERT_TRUE(loop.RunSync([&] {
    disk.Submit([&] { return absl::OkStatus(); }, [&](absl::Status) {});
  }));
  in_idle.WaitForNotification();  // the third call, held
  std::thread releaser([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    ran = true;
    release.Notify();
  });
  disk.Drain();
  EXPECT_TRUE(ran.load());
  releaser.join();
  // The fourth call finds nothing to do (it may start after Drain saw the
  // third return); then none comes until an item makes it due again.
  auto await_calls = [&calls](int n) {
    for (int i = 0; i < 10000 && calls.load() < n; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    return calls.load();
  };
  EXPECT_EQ(await_calls(4), 4);
  std::this_thread::sleep_for(std::chrono::milliseconds(5));
  EXPECT_EQ(calls.load(), 4);
  absl::Notification done;
  ASSERT_TRUE(loop.RunSync([&] {
    disk.Submit([&] { return absl::OkStatus(); },
                [&](absl::Status) { done.Notify(); });
  }));
  ASSERT_TRUE(done.WaitForNotificationWithTimeout(absl::Seconds(10)));
  EXPECT_EQ(await_calls(5), 5);
  disk.Drain();
  loop.Stop(nullptr);
  disk.Stop();
  EXPECT_EQ(calls.load(), 5);
}

// With SetRunInline, an item submitted while the thread is idle runs on
// the submitting thread when the hook agrees, and its completion still
// comes as an event of its own, after the submitting task; an item
// submitted while another runs, or refused by the hook, goes to the
// thread; idle work never runs beside an inline item, and is due after it.
TEST(DiskThreadTest, RunsInlineWhenIdleAndAllowed) {
  std::atomic<bool> allow{true};
  std::atomic<int> asked{0}, idle_calls{0};
  std::atomic<bool> in_inline{false}, idle_beside{false};
  EngineLoop loop{{.tick_ns = 1'000'000'000}, [] {}};
  DiskThread disk{[&loop](std::function<void()> t) {
    return loop.PostCompletion(std::move(t));
  }};
  disk.SetIdleWork([&] {
    if (in_inline.load()) idle_beside = true;
    ++idle_calls;
    return false;
  });
  disk.SetRunInline([&] {
    ++asked;
    return allow.load();
  });
  loop.Start();
  disk.Start();
  // Submits one item from an engine task; where it ran, and the order of
  // the rest of that task (1) and the item's completion (2).
  auto submit = [&](std::thread::id* ran_on, std::vector<int>* order) {
    absl::Notification done;
    ASSERT_TRUE(loop.RunSync([&] {
      disk.Submit(
          [&] {
            in_inline = true;
            *ran_on = std::this_thread::get_id();
            std::this_thread::sleep_for(std::chrono::milliseconds(2));
            in_inline = false;
            return absl::OkStatus();
          },
          [&](absl::Status) {
            order->push_back(2);
            done.Notify();
          });
      order->push_back(1);
    }));
    ASSERT_TRUE(done.WaitForNotificationWithTimeout(absl::Seconds(10)));
  };
  std::thread::id engine, ran_on;
  ASSERT_TRUE(loop.RunSync([&] { engine = std::this_thread::get_id(); }));
  std::vector<int> order;
  submit(&ran_on, &order);
  EXPECT_EQ(ran_on, engine);
  EXPECT_EQ(order, (std::vector<int>{1, 2}));
  EXPECT_EQ(disk.ran_inline(), 1u);
  for (int i = 0; i < 10000 && idle_calls.load() == 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  EXPECT_GE(idle_calls.load(), 1) << "idle work was not due after it";
  disk.Drain();
  allow = false;
  submit(&ran_on, &order);
  EXPECT_NE(ran_on, engine);
  EXPECT_EQ(disk.ran_inline(), 1u);
  // Two at once: the second finds the first running and queues.
  allow = true;
  absl::Notification hold, both;
  std::atomic<int> completions{0};
  std::thread::id second_on;
  ASSERT_TRUE(loop.RunSync([&] {
    allow = false;
    disk.Submit(
        [&] {
          hold.WaitForNotification();
          return absl::OkStatus();
        },
        [&](absl::Status) { ++completions; });
    allow = true;
    const int before = asked.load();
    disk.Submit(
        [&] {
          second_on = std::this_thread::get_id();
          return absl::OkStatus();
        },
        [&](absl::Status) {
          if (++completions == 2) both.Notify();
        });
    // (The first may not have started yet: queued or running, it is not
    // idle, so the hook is not even asked.)
    EXPECT_EQ(asked.load(), before);
    hold.Notify();
  }));
  ASSERT_TRUE(both.WaitForNotificationWithTimeout(absl::Seconds(10)));
  EXPECT_NE(second_on, engine);
  EXPECT_EQ(disk.ran_inline(), 1u);
  disk.Drain();
  loop.Stop(nullptr);
  disk.Stop();
  EXPECT_FALSE(idle_beside.load());
}

// Stop while a write is in flight: it finishes (and what was queued behind
// it runs), nothing runs after Stop returns, completions the stopped loop
// refuses are dropped, and later submissions are ignored.
TEST(DiskThreadTest, StopWithAWriteInFlight) {
  Rig r;
  absl::Notification started, release;
  std::atomic<int> ran{0};
  std::atomic<int> completions{0};
  ASSERT_TRUE(r.loop.RunSync([&] {
    r.disk.Submit(
        [&] {
          started.Notify();
          release.WaitForNotification();
          ++ran;
          return absl::OkStatus();
        },
        [&](absl::Status) { ++completions; });
    r.disk.Submit(
        [&] {
          ++ran;
          return absl::OkStatus();
        },
        [&](absl::Status) { ++completions; });
  }));
  started.WaitForNotification();
  r.loop.Stop(nullptr);  // as the server's Teardown: the loop first
  std::thread releaser([&] { release.Notify(); });
  r.disk.Stop();
  releaser.join();
  EXPECT_EQ(ran.load(), 2);
  EXPECT_EQ(completions.load(), 0);
  r.disk.Submit(
      [&] {
        ++ran;
        return absl::OkStatus();
      },
      [&](absl::Status) { ++completions; });
  r.disk.Drain();  // returns at once: the thread is gone
  EXPECT_EQ(ran.load(), 2);
  EXPECT_EQ(completions.load(), 0);
}

// A worker that never started runs nothing, and Drain does not hang.
TEST(DiskThreadTest, NeverStarted) {
  int posted = 0;
  DiskThread d([&](std::function<void()>) {
    ++posted;
    return true;
  });
  bool ran = false;
  d.Submit(
      [&] {
        ran = true;
        return absl::OkStatus();
      },
      [](absl::Status) {});
  d.Drain();
  d.Stop();
  EXPECT_FALSE(ran);
  EXPECT_EQ(posted, 0);
}

}  // namespace
}  // namespace detcd::shim
