// The engine thread of a real detcd member.
//
// The engine (EtcdServer and everything under it) is single-threaded and
// deterministic: it never runs two inputs at once and never reads the OS.
// In the real server one thread owns it. gRPC callbacks, the peer
// transport's reader threads and the HTTP handlers hand it work through
// Post(); the thread runs posted tasks in order and calls the tick function
// every tick_ns of real time. Completions run on this thread too and go
// back to gRPC through its thread-safe reactor calls, so no gRPC thread
// ever blocks on the engine.
//
// The thread takes every task queued when it wakes as one batch; while it
// runs one batch (and its fdatasync), the next one queues up, so under load
// the batches grow with the sync time (group commit, SetBatchHooks).
//
// Posted work is bounded: peer messages beyond max_peer_backlog are
// dropped (raft tolerates loss; a member that cannot keep up must not grow
// without bound), client tasks beyond max_client_backlog are refused so the
// caller can answer "too many requests".
#ifndef DETCD_SHIM_ENGINE_LOOP_H_
#define DETCD_SHIM_ENGINE_LOOP_H_

#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <thread>

#include "absl/synchronization/mutex.h"

namespace detcd::shim {

class EngineLoop {
 public:
  using Task = std::function<void()>;
  struct Options {
    int64_t tick_ns = 100'000'000;
    size_t max_peer_backlog = 10000;
    size_t max_client_backlog = 100000;
  };
  EngineLoop(Options o, Task on_tick);
  ~EngineLoop();
  EngineLoop(const EngineLoop&) = delete;
  EngineLoop& operator=(const EngineLoop&) = delete;

  // Group commit: `before` and `after` run on the engine thread around
  // each batch (every task queued when the thread woke, plus a due tick).
  // The server holds the Node's Ready between them (Node::HoldReady), so
  // the puts of one batch share one WAL write and one fdatasync and
  // complete together instead of paying a sync each. Call before Start.
  void SetBatchHooks(Task before, Task after);
  void Start();
  // Runs `last` on the engine thread after every task posted before, then
  // stops the thread and joins it. Tasks posted afterwards are dropped.
  void Stop(Task last);

  // From any thread. Returns false if refused (backlog full or stopped).
  bool Post(Task t);
  // Between HoldWakes and ReleaseWakes on one thread, that thread's posts
  // queue without waking the engine thread, and ReleaseWakes wakes it once
  // if any did: a transport that hands over many calls in one turn wakes
  // the engine once for them (a futex wake per call cost more than the
  // call's own handling). HoldWakes on a thread that holds them already
  // keeps what it holds; the engine still runs anything it finds queued
  // when it wakes for another reason.
  void HoldWakes();
  void ReleaseWakes();
  // As ReleaseWakes, but when at most `max_here` posts were held and no
  // batch runs (the engine thread waits), the calling thread runs the
  // queue itself as one batch, hooks and all, instead of waking the engine
  // thread for it: an idle member's request or raft message then costs no
  // thread wake-up on its way in. What such a batch posts (a disk write's
  // completion) runs there too, as the next batch (up to kMaxRoundsHere in
  // a row, each of at most `max_here` tasks). Batches still run one at a
  // time and in posting order; the engine thread waits while one runs
  // elsewhere and keeps the ticks. Only for a thread that holds no lock a
  // task may take and that no task waits for.
  void ReleaseWakesRunningHere(size_t max_here);
  bool PostPeer(Task t);
  // A completion of work the engine itself started (the disk thread's WAL
  // writes): never refused for backlog, since dropping it would leave the
  // engine waiting for it for good. False only once the loop stopped.
  bool PostCompletion(Task t);
  // Runs t on the engine thread and waits for it (never call from the
  // engine thread). Returns false if the loop stopped first.
  bool RunSync(Task t);

  // True on the engine thread and on a thread running a batch for it
  // (ReleaseWakesRunningHere).
  bool OnEngineThread() const;
  // Batches run by posting threads (ReleaseWakesRunningHere).
  uint64_t batches_run_here() const;
  // Tasks waiting right now (for metrics).
  size_t backlog() const;
  // Raft messages dropped because the backlog was full.
  uint64_t dropped_peer() const;

 private:
  void Run();
  // Runs the queue on the calling thread if no batch runs; true if the
  // engine thread need not be woken for what is queued.
  bool RunHere(size_t max_here);
  // Batches a posting thread runs in a row at most: its own, then what
  // each posted for the next (see RunHere).
  static constexpr int kMaxRoundsHere = 4;
  // Wakes the engine thread for a post from this thread, unless held.
  void Wake();
  struct Item {
    Task task;
    bool peer;
  };
  // Runs one batch (the hooks around the tasks, and the tick if due).
  void RunBatch(std::deque<Item>& batch, bool tick);

  const Options opts_;
  Task on_tick_;
  Task before_batch_;
  Task after_batch_;
  mutable absl::Mutex mu_;
  absl::CondVar cv_;
  std::deque<Item> queue_ ABSL_GUARDED_BY(mu_);
  size_t peer_queued_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t dropped_peer_ ABSL_GUARDED_BY(mu_) = 0;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  // A batch runs, on the engine thread or on a posting thread.
  bool running_ ABSL_GUARDED_BY(mu_) = false;
  // The engine thread waits for a batch running elsewhere to end.
  bool waits_for_runner_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t run_here_ ABSL_GUARDED_BY(mu_) = 0;
  Task last_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;
};

}  // namespace detcd::shim

#endif  // DETCD_SHIM_ENGINE_LOOP_H_
