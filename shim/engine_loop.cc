#include "shim/engine_loop.h"

#include <time.h>

#include <memory>
#include <utility>

#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "shim/thread_name.h"

namespace detcd::shim {
namespace {

int64_t MonoNanos() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

// The calling thread's held wakes (HoldWakes).
struct HeldWakes {
  const EngineLoop* loop = nullptr;
  size_t posted = 0;
};
thread_local HeldWakes held_wakes;
// The loop whose batch the calling thread runs (ReleaseWakesRunningHere).
thread_local const EngineLoop* running_here = nullptr;

}  // namespace

EngineLoop::EngineLoop(Options o, Task on_tick)
    : opts_(o), on_tick_(std::move(on_tick)) {}

EngineLoop::~EngineLoop() {
  if (thread_.joinable()) Stop(nullptr);
}

void EngineLoop::SetBatchHooks(Task before, Task after) {
  before_batch_ = std::move(before);
  after_batch_ = std::move(after);
}

void EngineLoop::Start() {
  thread_ = std::thread([this] {
    NameThisThread("engine", ThreadKind::kEngine);
    Run();
  });
}

void EngineLoop::Stop(Task last) {
  {
    absl::MutexLock l(&mu_);
    if (stopping_) return;
    stopping_ = true;
    last_ = std::move(last);
    cv_.Signal();
  }
  if (thread_.joinable()) thread_.join();
}

bool EngineLoop::Post(Task t) {
  {
    absl::MutexLock l(&mu_);
    if (stopping_ ||
        queue_.size() - peer_queued_ >= opts_.max_client_backlog) {
      return false;
    }
    queue_.push_back(Item{std::move(t), false});
  }
  Wake();
  return true;
}

void EngineLoop::Wake() {
  // Outside mu_: the engine waits with a timeout (its tick), and absl
  // wakes such a waiter at once; woken under the poster's lock, it would
  // block on mu_ and need a second wake-up when the poster unlocks.
  if (held_wakes.loop == this) {
    ++held_wakes.posted;
  } else if (running_here == this) {
    // Posted from a batch this thread runs (a disk write's completion):
    // RunHere looks at the queue when the batch ends.
  } else {
    cv_.Signal();
  }
}

void EngineLoop::HoldWakes() {
  if (held_wakes.loop != this) held_wakes = HeldWakes{this, 0};
}

void EngineLoop::ReleaseWakes() { ReleaseWakesRunningHere(0); }

void EngineLoop::ReleaseWakesRunningHere(size_t max_here) {
  const size_t posted = held_wakes.loop == this ? held_wakes.posted : 0;
  held_wakes = HeldWakes{};
  if (posted == 0) return;
  if (posted <= max_here && running_here == nullptr && RunHere(max_here))
    return;
  cv_.Signal();
}

bool EngineLoop::RunHere(size_t max_here) {
  std::deque<Item> batch;
  {
    absl::MutexLock l(&mu_);
    // Taken already, or the running batch's owner takes it next (the
    // engine thread looks at the queue after each batch; a posting thread
    // wakes it when it ends with tasks queued).
    if (queue_.empty() || running_) return true;
    if (stopping_) return false;
    running_ = true;
    ++run_here_;
    batch.swap(queue_);
    peer_queued_ = 0;
  }
  // What the batch posts (a disk write's completion, which sends a
  // follower's acknowledgement or answers the client) runs here as the
  // next batch, as the engine thread would run it, for a few rounds.
  running_here = this;
  bool wake = false;
  for (int round = 1;; ++round) {
    RunBatch(batch, false);
    absl::MutexLock l(&mu_);
    if (!queue_.empty() && !stopping_ && round < kMaxRoundsHere &&
        queue_.size() <= max_here) {
      ++run_here_;
      batch.swap(queue_);
      peer_queued_ = 0;
      continue;
    }
    running_ = false;
    wake = waits_for_runner_ || !queue_.empty();
    break;
  }
  running_here = nullptr;
  if (wake) cv_.Signal();
  return true;
}

void EngineLoop::RunBatch(std::deque<Item>& batch, bool tick) {
  if (before_batch_) before_batch_();
  for (Item& it : batch) it.task();
  batch.clear();
  if (tick) on_tick_();
  if (after_batch_) after_batch_();
}

bool EngineLoop::PostPeer(Task t) {
  {
    absl::MutexLock l(&mu_);
    if (stopping_) return false;
    if (peer_queued_ >= opts_.max_peer_backlog) {
      ++dropped_peer_;
      return false;
    }
    ++peer_queued_;
    queue_.push_back(Item{std::move(t), true});
  }
  Wake();
  return true;
}

bool EngineLoop::PostCompletion(Task t) {
  {
    absl::MutexLock l(&mu_);
    if (stopping_) return false;
    queue_.push_back(Item{std::move(t), false});
  }
  Wake();
  return true;
}

bool EngineLoop::RunSync(Task t) {
  auto done = std::make_shared<absl::Notification>();
  if (!Post([t = std::move(t), done] {
        t();
        done->Notify();
      })) {
    return false;
  }
  // The loop runs every task posted before Stop, so this returns.
  done->WaitForNotification();
  return true;
}

bool EngineLoop::OnEngineThread() const {
  return running_here == this ||
         std::this_thread::get_id() == thread_.get_id();
}

uint64_t EngineLoop::batches_run_here() const {
  absl::MutexLock l(&mu_);
  return run_here_;
}

size_t EngineLoop::backlog() const {
  absl::MutexLock l(&mu_);
  return queue_.size();
}

uint64_t EngineLoop::dropped_peer() const {
  absl::MutexLock l(&mu_);
  return dropped_peer_;
}

void EngineLoop::Run() {
  int64_t next_tick = MonoNanos() + opts_.tick_ns;
  std::deque<Item> batch;
  for (;;) {
    bool stop = false;
    {
      absl::MutexLock l(&mu_);
      for (;;) {
        const int64_t wait = next_tick - MonoNanos();
        const bool due = !queue_.empty() || stopping_ || wait <= 0;
        if (due && !running_) break;
        if (running_) {
          // A posting thread runs a batch (RunHere); it wakes us at its end.
          waits_for_runner_ = true;
          cv_.Wait(&mu_);
          waits_for_runner_ = false;
        } else {
          cv_.WaitWithTimeout(&mu_, absl::Nanoseconds(wait));
        }
      }
      running_ = true;
      batch.swap(queue_);
      peer_queued_ = 0;
      stop = stopping_;
    }
    const int64_t now = MonoNanos();
    const bool tick = now >= next_tick;
    if (!batch.empty() || tick) RunBatch(batch, tick);
    if (tick) {
      next_tick += opts_.tick_ns;
      // After a long stall (a paused process, a slow disk), tick once and
      // resynchronize rather than firing a burst of ticks.
      if (next_tick <= now) next_tick = now + opts_.tick_ns;
    }
    if (stop) {
      // No batch runs elsewhere any more: RunHere refuses once stopping.
      Task last;
      {
        absl::MutexLock l(&mu_);
        batch.swap(queue_);
        last = std::move(last_);
      }
      RunBatch(batch, false);
      if (last) last();
      return;
    }
    absl::MutexLock l(&mu_);
    running_ = false;
  }
}

}  // namespace detcd::shim
