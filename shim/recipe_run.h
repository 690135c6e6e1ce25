// Runs one of the client library's recipe step machines
// (client/include/detcd/recipe_core.h: Mutex lock, Election campaign,
// observe, ...) on the engine thread, against this member's EtcdServer:
// the driver behind etcd's Lock and Election services
// (shim/lock_election.h). The blocking client runs the same machines with
// a call per step (client/recipe_driver.cc), the simulator with a request
// to a simulated member per step (harness/recipe_driver.h).
//
// Each step is a request to the EtcdServer with the caller's credentials
// (CallerScope, after AwaitCaller), a watch step a stream on its watch
// hub; every answer and watch batch reaches the machine in an engine task
// of its own, never inside the server's call. A waiting run holds no
// thread: a Lock waiting for its turn is its machine, its watcher and this
// object.
//
// The caller's cancellation (Cancel, from its transport: a cancelled call
// or a passed deadline) ends a wait at once with "context canceled" or
// "context deadline exceeded" and keeps any further call from starting,
// as a Go handler's context does; the machine's clean-up calls (giving a
// queue place back) still run. A request already handed to the engine
// finishes and its answer goes to the machine.
#ifndef DETCD_SHIM_RECIPE_RUN_H_
#define DETCD_SHIM_RECIPE_RUN_H_

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "detcd/recipe_core.h"
#include "engine/server/etcd_server.h"
#include "shim/engine_loop.h"

namespace detcd::shim {

class RecipeRun : public std::enable_shared_from_this<RecipeRun> {
 public:
  using Done = std::function<void(absl::Status)>;

  // deadline: the caller's (absl::InfiniteFuture() for none).
  static std::shared_ptr<RecipeRun> New(EngineLoop* loop,
                                        server::EtcdServer* server,
                                        server::Caller caller,
                                        absl::Time deadline);
  RecipeRun(const RecipeRun&) = delete;
  RecipeRun& operator=(const RecipeRun&) = delete;

  // Any thread, once: runs the machine (only on the engine thread from
  // now on) to its end; done gets the outcome on the engine thread. False
  // when the engine refused the work (its backlog is full or it
  // stopped); nothing runs then.
  bool Start(std::shared_ptr<client::RecipeSteps> steps, Done done);
  // Any thread: the caller gave up (see above).
  void Cancel();
  // Any thread: forget the run (the server stops): done never runs, the
  // watch closes, no further call starts.
  void Abandon();

 private:
  RecipeRun(EngineLoop* loop, server::EtcdServer* server, server::Caller caller,
            absl::Time deadline);
  // On the engine thread from here on.
  void Step(client::RecipeCall call);
  // Hands a reply to the machine in a fresh engine task, if it still
  // belongs to the step in progress (generation g).
  void ReplyLater(uint64_t g, client::RecipeReply r);
  void OnReply(uint64_t g, client::RecipeReply r);
  // The caller's error once it gave up (OK while it waits).
  absl::Status Stopped() const;
  void Issue(const client::RecipeCall& call);
  void OpenWatch(const etcdserverpb::WatchCreateRequest& req);
  void CloseWatch();
  void OnWatch(uint64_t wg, const mvcc::WatchResponse& r);
  // Hands the next batch to a machine that waits for one, in a task of
  // its own.
  void MaybeDeliver();
  void Deliver(uint64_t wg);
  // A cancellation reached the engine thread.
  void OnCancel();

  EngineLoop* loop_;
  server::EtcdServer* server_;
  const server::Caller caller_;
  const absl::Time deadline_;
  std::atomic<bool> cancelled_{false};
  std::atomic<bool> abandoned_{false};
  std::shared_ptr<client::RecipeSteps> steps_;
  Done done_;
  // The step in progress; replies of older ones are dropped.
  uint64_t gen_ = 0;
  bool watch_open_ = false;
  // The machine waits for the watch's next batch (kWatch or
  // kKeepWatching); a cancellation then ends the wait.
  bool watching_ = false;
  mvcc::WatchHub::StreamId stream_ = 0;
  // The open watch's generation: a closed stream's batches are dropped.
  uint64_t watch_gen_ = 0;
  // Batches (or the watch's end, as an error) the machine has not seen.
  std::deque<client::RecipeReply> pending_;
  bool delivering_ = false;  // a Deliver task is queued
};

}  // namespace detcd::shim

#endif  // DETCD_SHIM_RECIPE_RUN_H_
