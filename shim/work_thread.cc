#include "shim/work_thread.h"

#include <utility>

#include "shim/thread_name.h"

namespace detcd::shim {

void WorkThread::Start() {
  absl::MutexLock l(&mu_);
  if (running_ || stopping_) return;
  running_ = true;
  for (int i = 0; i < threads_; ++i) {
    running_threads_.emplace_back([this] { Run(); });
  }
}

bool WorkThread::Post(std::function<void()> task) {
  absl::MutexLock l(&mu_);
  if (!running_ || stopping_) return false;
  queue_.push_back(std::move(task));
  return true;
}

void WorkThread::Stop() {
  {
    absl::MutexLock l(&mu_);
    if (!running_ || stopping_) return;
    stopping_ = true;
  }
  for (std::thread& t : running_threads_) t.join();
}

void WorkThread::Run() {
  NameThisThread(name_, kind_);
  for (;;) {
    std::function<void()> task;
    {
      absl::MutexLock l(&mu_);
      mu_.Await(absl::Condition(
          +[](WorkThread* w) ABSL_EXCLUSIVE_LOCKS_REQUIRED(w->mu_) {
            return !w->queue_.empty() || w->stopping_;
          },
          this));
      if (queue_.empty()) return;  // stopping, nothing left
      task = std::move(queue_.front());
      queue_.pop_front();
    }
    task();
  }
}

}  // namespace detcd::shim
