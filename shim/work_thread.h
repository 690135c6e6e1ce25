// A thread (or a few) that runs the tasks other threads hand it, taken in
// the order they came: work the engine thread must not stop for (encoding
// and freeing a large answer, shim/services.cc; bcrypt). With one thread
// the tasks run one at a time in that order; with more, side by side.
// Tasks must not block for long and must not wait on the engine thread.
//
// Stop() runs what is queued, then joins; a Post after it (or before
// Start) is refused, and the caller does the work itself.
#ifndef DETCD_SHIM_WORK_THREAD_H_
#define DETCD_SHIM_WORK_THREAD_H_

#include <deque>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "engine/env/env.h"
#include "shim/thread_name.h"

namespace detcd::shim {

class WorkThread {
 public:
  // `name` names the threads (at most 15 bytes, as Linux keeps it);
  // `kind` sets their scheduling class (shim/thread_name.h).
  WorkThread(std::string name, ThreadKind kind, int threads = 1)
      : name_(std::move(name)),
        kind_(kind),
        threads_(threads < 1 ? 1 : threads) {}
  ~WorkThread() { Stop(); }
  WorkThread(const WorkThread&) = delete;
  WorkThread& operator=(const WorkThread&) = delete;

  void Start();
  // Queues `task` (any thread); false when the thread is not running.
  bool Post(std::function<void()> task);
  // Runs the queued tasks, then joins. Idempotent.
  void Stop();

 private:
  void Run();

  const std::string name_;
  const ThreadKind kind_;
  const int threads_;
  absl::Mutex mu_;
  std::deque<std::function<void()>> queue_ ABSL_GUARDED_BY(mu_);
  bool running_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> running_threads_;
};

// env::Offload over WorkThreads of its own (bcrypt: tens of ms per
// password; one per core, so that concurrent logins are checked side by
// side, as etcd's goroutines check them): `done` goes back through `post`
// (the engine loop's PostCompletion), dropped if refused; completions may
// come in another order than the work. Once stopped, work runs on the
// caller's thread.
class OffloadThread final : public env::Offload {
 public:
  using PostFn = std::function<bool(std::function<void()>)>;
  OffloadThread(std::string name, ThreadKind kind, int threads, PostFn post)
      : thread_(std::move(name), kind, threads), post_(std::move(post)) {}
  void Start() { thread_.Start(); }
  void Stop() { thread_.Stop(); }
  void Run(std::function<void()> work, std::function<void()> done) override {
    auto task = [post = post_, work, done]() mutable {
      work();
      post(std::move(done));
    };
    if (!thread_.Post(task)) task();
  }

 private:
  WorkThread thread_;
  const PostFn post_;
};

}  // namespace detcd::shim

#endif  // DETCD_SHIM_WORK_THREAD_H_
