// A thread that runs the tasks other threads hand it, one at a time in the
// order they came: work the engine thread must not stop for (encoding and
// freeing a large answer, shim/services.cc). Tasks must not block for long
// and must not wait on the engine thread.
//
// Stop() runs what is queued, then joins; a Post after it (or before
// Start) is refused, and the caller does the work itself.
#ifndef DETCD_SHIM_WORK_THREAD_H_
#define DETCD_SHIM_WORK_THREAD_H_

#include <deque>
#include <functional>
#include <string>
#include <thread>

#include "absl/synchronization/mutex.h"

namespace detcd::shim {

class WorkThread {
 public:
  // `name` names the thread (at most 15 bytes, as Linux keeps it).
  explicit WorkThread(std::string name) : name_(std::move(name)) {}
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
  absl::Mutex mu_;
  std::deque<std::function<void()>> queue_ ABSL_GUARDED_BY(mu_);
  bool running_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace detcd::shim

#endif  // DETCD_SHIM_WORK_THREAD_H_
