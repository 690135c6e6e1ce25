// The simulator's driver for the client library's recipe step machines
// (client/include/detcd/recipe_core.h): the adapter that lets a simulated
// client run the very Mutex / Election / Queue / Register logic the blocking
// client runs, over the simulated cluster.
//
// Each step becomes a request to one member's EtcdServer (Cluster::Call),
// answered in a later event; a call with no answer within the timeout ends
// with DeadlineExceeded (its outcome unknown, as for a real client). The
// driver sticks to one member and moves to another after any error, as
// clientv3's balancer does. A watch step opens a stream on the member's
// watch hub; if the member goes down, is paused or the stream stays silent
// too long, the watch is opened again elsewhere from the revision after the
// last event seen (clientv3's resume), so a machine sees every event once.
//
// Single-threaded and deterministic: every choice comes from the Rng given,
// every delay is world time.
#ifndef DETCD_HARNESS_RECIPE_DRIVER_H_
#define DETCD_HARNESS_RECIPE_DRIVER_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "detcd/recipe_core.h"
#include "engine/env/env.h"
#include "harness/cluster.h"

namespace detcd::harness {

class SimRecipeDriver {
 public:
  struct Options {
    int64_t timeout_ns = 2 * sim::kSecond;
    // How often a watch checks that its member is still there, and how
    // long it may stay silent before it is opened again.
    int64_t watch_check_ns = 300 * sim::kMillisecond;
    int64_t watch_silence_ns = 2 * sim::kSecond;
  };
  using Done = std::function<void(absl::Status)>;

  SimRecipeDriver(Cluster* cluster, env::Rng* rng, Options o);
  ~SimRecipeDriver();
  SimRecipeDriver(const SimRecipeDriver&) = delete;
  SimRecipeDriver& operator=(const SimRecipeDriver&) = delete;

  // Runs steps (the caller keeps it alive until done) to its end; done gets
  // the outcome in a later event. One machine or call at a time.
  void Run(client::RecipeSteps* steps, Done done);
  // A plain request of the client's own (not a recipe step), with the same
  // member choice and timeout.
  void Txn(const etcdserverpb::TxnRequest& t,
           std::function<void(absl::StatusOr<etcdserverpb::TxnResponse>)> done);
  void KeepAlive(int64_t lease,
                 std::function<void(absl::StatusOr<int64_t>)> done);  // ttl
  void Revoke(int64_t lease, std::function<void(absl::Status)> done);
  void Grant(
      int64_t ttl_s,
      std::function<void(absl::StatusOr<etcdserverpb::LeaseGrantResponse>)>
          done);
  // Forgets whatever runs (the client stopped): late answers are dropped
  // and no callback runs.
  void Abandon();

  // Requests whose answer never came (timed out): their effect is unknown.
  uint64_t timeouts() const { return timeouts_; }
  uint64_t watch_resumes() const { return watch_resumes_; }

 private:
  // One request: fn issues it on a server with a completion that takes the
  // answer; the answer reaches `then` in a fresh event, or a timeout does.
  using Issue = std::function<void(server::EtcdServer&,
                                   std::function<void(client::RecipeReply)>)>;
  void Request(Issue issue, std::function<void(client::RecipeReply)> then);
  void Step(client::RecipeCall call);
  void Finish(absl::Status s);
  uint64_t PickNode();
  void Later(int64_t delay_ns, std::function<void()> fn);
  // Watches.
  void OpenWatch();
  void CheckWatch(uint64_t conn);
  void CloseWatch();
  void DeliverBatch(uint64_t conn);
  void OnWatchResponse(uint64_t conn, const mvcc::WatchResponse& r);

  Cluster* cluster_;
  env::Rng* rng_;
  Options opts_;
  // Cleared by the destructor: events and completions still queued in the
  // world or in servers check it before touching the driver.
  std::shared_ptr<bool> alive_;
  uint64_t node_ = 0;  // the member requests go to (0: choose)
  uint64_t gen_ = 0;   // the current request; older answers are dropped
  client::RecipeSteps* steps_ = nullptr;
  Done done_;
  // The open watch, if any.
  struct WatchState {
    bool open = false;
    etcdserverpb::WatchCreateRequest req;
    int64_t next_start = 0;  // resume from here
    uint64_t conn = 0;       // this stream's generation
    uint64_t node = 0;
    uint64_t incarnation = 0;  // of the member: a restart loses the stream
    mvcc::WatchHub::StreamId stream = 0;
    int64_t last_heard_ns = 0;
    // Batches received, waiting for the machine (it sees one at a time).
    std::deque<std::vector<mvccpb::Event>> pending;
    bool delivering = false;
  } watch_;
  uint64_t next_conn_ = 0;
  uint64_t timeouts_ = 0, watch_resumes_ = 0;
};

}  // namespace detcd::harness

#endif  // DETCD_HARNESS_RECIPE_DRIVER_H_
