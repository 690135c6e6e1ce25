// The real server's disk thread: env::DiskWorker over a thread of its own.
//
// The Node submits each Ready's WAL write + fdatasync here (Node::SubmitWrite)
// and goes on stepping raft on the engine thread; this thread runs the
// write and hands the completion back to the engine thread through a post
// function (EngineLoop::PostCompletion in the server), where the Node's
// callback runs as an event of its own. Work runs one item at a time in
// submission order, so completions are posted, and run, in that order.
//
// Thread-safety: the engine thread and this thread share only the queue
// below (under mu_). The work itself touches files the Node leaves alone
// until the completion (env::DiskWorker's contract); `done` never runs here,
// only on the thread the post function delivers to.
//
// Shutdown: Stop() lets the item that is running finish, runs what is still
// queued (a write the engine submitted before it stopped must not be half
// done), then joins; nothing runs after Stop returns. Completions whose
// post is refused (the engine loop stopped first) are dropped: their Node
// is going away. Submit after Stop drops the work and its completion.
#ifndef DETCD_SHIM_DISK_WORKER_H_
#define DETCD_SHIM_DISK_WORKER_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "engine/env/env.h"
#include "shim/work_thread.h"

namespace detcd::shim {

class DiskThread final : public env::DiskWorker {
 public:
  // Delivers a completion to the engine thread; false if it was refused
  // (the completion is then dropped). Called on the disk thread.
  using PostFn = std::function<bool(std::function<void()>)>;

  // `name` names the thread (Linux keeps 15 bytes; its freer adds
  // "-free") and `kind` sets its class: "disk" for the log's writes, which
  // commits wait on; "snap-disk", kBackground, for snapshot files
  // (env::Disk::file_worker).
  explicit DiskThread(PostFn post, std::string name = "disk",
                      ThreadKind kind = ThreadKind::kIo);
  ~DiskThread() override;  // Stop()
  DiskThread(const DiskThread&) = delete;
  DiskThread& operator=(const DiskThread&) = delete;

  void Start();
  // Finishes the running and queued work, then joins. Idempotent.
  void Stop();

  // env::DiskWorker. Submit from the engine thread; Drain from the engine
  // thread too (waits for queued and running work, not for completions).
  void Submit(std::function<absl::Status()> work,
              std::function<void(absl::Status)> done) override;
  void Drain() override;
  // Queued as an item without a completion, never run inline; when its
  // turn comes the garbage goes to a thread of its own ("disk-free"), so
  // the next write does not wait for the free (a replaced store of 1M
  // keys: ~0.1-0.2 s).
  void Free(std::shared_ptr<void> garbage) override;

  // Work items finished (for tests and metrics).
  uint64_t completed() const;
  // Work of the disk's own (PosixDisk::FillAheadStep) that this thread
  // runs, one call at a time, while its queue is empty: after each item,
  // and again while `idle` returns true (it did something; false: nothing
  // to do until the next item). It counts as running work for Drain; an
  // item submitted meanwhile waits for the call to return. Set before
  // Start.
  // `due` (optional, cheap) says whether idle work has anything to do
  // after an item run inline (below): if not, this thread is not woken
  // for it.
  void SetIdleWork(std::function<bool()> idle,
                   std::function<bool()> due = nullptr) {
    idle_ = std::move(idle);
    idle_is_due_ = std::move(due);
  }
  // An item submitted while this thread is idle (nothing queued or
  // running) runs at once on the submitting thread when `may` says so,
  // its completion still posted (an event of its own, as ever): on an
  // idle member a write then costs no wake-up of this thread and none of
  // the engine for the completion, two of the handful a commit crosses.
  // `may` runs on the submitting thread just before; false sends the item
  // here as usual. Set before Start.
  void SetRunInline(std::function<bool()> may) { inline_ = std::move(may); }
  // Items run on the submitting thread that way (for tests and metrics).
  uint64_t ran_inline() const;

 private:
  struct Item {
    std::function<absl::Status()> work;
    std::function<void(absl::Status)> done;
  };
  void Run();
  // Hands `done` and the work's status to the engine thread.
  void Post(std::function<void(absl::Status)> done, absl::Status s);

  const PostFn post_;
  const std::string name_;
  const ThreadKind kind_;
  std::function<bool()> idle_;
  std::function<bool()> idle_is_due_;
  std::function<bool()> inline_;
  mutable absl::Mutex mu_;
  std::deque<Item> queue_ ABSL_GUARDED_BY(mu_);
  bool running_ ABSL_GUARDED_BY(mu_) = false;  // an item or idle work runs
  bool idle_due_ ABSL_GUARDED_BY(mu_) = false;  // idle_ may have work
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool started_ ABSL_GUARDED_BY(mu_) = false;
  bool exited_ ABSL_GUARDED_BY(mu_) = false;  // Run returned
  uint64_t completed_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t ran_inline_ ABSL_GUARDED_BY(mu_) = 0;
  std::thread thread_;
  WorkThread freer_;
};

}  // namespace detcd::shim

#endif  // DETCD_SHIM_DISK_WORKER_H_
