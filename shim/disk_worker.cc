#include "shim/disk_worker.h"

#include <utility>

#include "shim/thread_name.h"

namespace detcd::shim {

DiskThread::DiskThread(PostFn post, std::string name, ThreadKind kind)
    : post_(std::move(post)),
      name_(std::move(name)),
      kind_(kind),
      freer_(name_ + "-free", ThreadKind::kBackground) {}

DiskThread::~DiskThread() { Stop(); }

void DiskThread::Start() {
  absl::MutexLock l(&mu_);
  if (started_ || stopping_) return;
  started_ = true;
  freer_.Start();
  thread_ = std::thread([this] {
    NameThisThread(name_, kind_);
    Run();
  });
}

void DiskThread::Stop() {
  {
    absl::MutexLock l(&mu_);
    stopping_ = true;
  }
  if (thread_.joinable()) thread_.join();
  freer_.Stop();  // after what the thread handed it
  // Never started: what was queued can no longer run anywhere.
  absl::MutexLock l(&mu_);
  queue_.clear();
}

void DiskThread::Submit(std::function<absl::Status()> work,
                        std::function<void(absl::Status)> done) {
  auto idle = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return started_ && !exited_ && queue_.empty() && !running_;
  };
  bool here = false;
  {
    absl::MutexLock l(&mu_);
    if (stopping_) return;  // the engine is going away with its Node
    here = inline_ != nullptr && idle();
  }
  // Asked outside the lock (it may take others); only the submitting
  // thread submits, and this thread only starts idle work meanwhile.
  here = here && inline_();
  {
    absl::MutexLock l(&mu_);
    if (stopping_) return;
    if (!here || !idle()) {
      queue_.push_back(Item{std::move(work), std::move(done)});
      return;
    }
    running_ = true;  // this thread starts no idle work meanwhile
  }
  Post(std::move(done), work());
  const bool due =
      idle_ != nullptr && (idle_is_due_ == nullptr || idle_is_due_());
  absl::MutexLock l(&mu_);
  running_ = false;
  idle_due_ = idle_due_ || due;
  ++completed_;
  ++ran_inline_;
}

void DiskThread::Free(std::shared_ptr<void> garbage) {
  absl::MutexLock l(&mu_);
  if (stopping_) return;  // freed here, as the engine goes away
  queue_.push_back(Item{[this, g = std::move(garbage)]() mutable {
                          // Freed there, or here if it has stopped.
                          std::shared_ptr<void> last = std::move(g);
                          freer_.Post([last]() mutable { last.reset(); });
                          return absl::OkStatus();
                        },
                        nullptr});
}

void DiskThread::Drain() {
  absl::MutexLock l(&mu_);
  // A worker that never started (or has stopped) runs nothing any more:
  // waiting for it would never end.
  if (!started_) return;
  mu_.Await(absl::Condition(
      +[](DiskThread* t) ABSL_EXCLUSIVE_LOCKS_REQUIRED(t->mu_) {
        return (t->queue_.empty() && !t->running_) || t->exited_;
      },
      this));
}

void DiskThread::Post(std::function<void(absl::Status)> done, absl::Status s) {
  if (done == nullptr) return;  // Free's item
  post_([done = std::move(done), s = std::move(s)]() mutable {
    done(std::move(s));
  });
}

uint64_t DiskThread::completed() const {
  absl::MutexLock l(&mu_);
  return completed_;
}

uint64_t DiskThread::ran_inline() const {
  absl::MutexLock l(&mu_);
  return ran_inline_;
}

void DiskThread::Run() {
  for (;;) {
    Item it;
    {
      absl::MutexLock l(&mu_);
      if (queue_.empty() && !stopping_ && idle_due_ && !running_) {
        running_ = true;
        mu_.Unlock();
        const bool more = idle_();
        mu_.Lock();
        running_ = false;
        idle_due_ = more;
        continue;
      }
      mu_.Await(absl::Condition(
          +[](DiskThread* t) ABSL_EXCLUSIVE_LOCKS_REQUIRED(t->mu_) {
            return !t->queue_.empty() || t->stopping_ ||
                   (t->idle_due_ && !t->running_);
          },
          this));
      if (queue_.empty() && !stopping_) continue;  // idle work is due
      if (queue_.empty()) {  // stopping, and nothing left to write
        exited_ = true;
        return;
      }
      it = std::move(queue_.front());
      queue_.pop_front();
      running_ = true;
    }
    absl::Status s = it.work();
    // Posted before the item counts as finished, so completions reach the
    // engine in submission order even if Drain lets it run on meanwhile.
    Post(std::move(it.done), std::move(s));
    absl::MutexLock l(&mu_);
    running_ = false;
    idle_due_ = idle_ != nullptr;
    ++completed_;
  }
}

}  // namespace detcd::shim
