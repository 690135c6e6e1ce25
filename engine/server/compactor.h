// etcd 3.4's auto compaction (etcdserver/api/v3compactor), as a state
// machine driven by the member's Clock and ticks instead of a goroutine and
// timers, so the simulator runs exactly the schedule the real server runs.
//
// Every member runs a compactor; a member that does not lead is paused (as
// etcd pauses it on every leadership change): a paused periodic compactor
// keeps sampling revisions but compacts nothing, so only the leader ever
// proposes a compaction.
//
// Periodic mode, retention R (a duration): etcd's loop, one wake-up per
// retry interval I = min(R, 1h) / 10:
//   at start:   sample the revision; last_success = now; wait = R
//   each wake:  (paused, or less than `wait` since last_success) -> sample
//               the revision, sleep I; otherwise wait = min(R, 1h) from now
//               on, compact at the oldest kept sample (the revision seen R
//               ago: at most R/I + 1 samples are kept), and once the
//               compaction is answered (ok, or "already compacted": success,
//               last_success = now; any other error: failure, retried at the
//               next due wake-up) sample and sleep I.
// So with R <= 1h the first compaction comes R after start, then one every
// R; with R = 24h, the first after a day, then one an hour, each keeping a
// day of history. etcd's "1h" retention is the default unit: a bare number
// is hours (shim/maintenance.h parses the flag).
//
// Revision mode, retention N (revisions): every interval (etcd's revInterval,
// a constant 5 minutes) the leader compacts at current revision - N, unless
// that is <= 0 or the revision it compacted at last time.
//
// A compaction in flight blocks the next wake-up until it is answered, as
// etcd's loop waits for its Compact call. Log lines are etcd's, in both of
// its logger shapes (log_record.h).
#ifndef DETCD_ENGINE_SERVER_COMPACTOR_H_
#define DETCD_ENGINE_SERVER_COMPACTOR_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>

#include "absl/status/status.h"
#include "engine/server/log_record.h"

namespace detcd::server {

struct CompactorOptions {
  enum class Mode { kOff, kPeriodic, kRevision };
  Mode mode = Mode::kOff;
  // kPeriodic: history to keep, in ns (>= 10 ns: etcd divides it by 10).
  // kRevision: revisions to keep (> 0).
  int64_t retention = 0;
  // kRevision: how often the revision is looked at. etcd's revInterval is a
  // constant (no flag); tests shorten it (shim/maintenance.h).
  int64_t revision_interval_ns = int64_t{5} * 60 * 1'000'000'000;

  absl::Status Validate() const;
};

class Compactor {
 public:
  // Proposes a compaction at `revision` and calls `done` with the outcome
  // once it is applied (or failed).
  using CompactFn = std::function<void(int64_t revision,
                                       std::function<void(absl::Status)> done)>;

  // now: the member's clock (ns); rev: the store's current revision.
  Compactor(CompactorOptions opts, std::function<int64_t()> now,
            std::function<int64_t()> rev, CompactFn compact, LogFn log);
  ~Compactor();
  Compactor(const Compactor&) = delete;
  Compactor& operator=(const Compactor&) = delete;

  // Called on every tick of the member; `leader`: whether it leads now
  // (a compactor that does not lead is paused). The first call starts the
  // schedule.
  void Tick(bool leader);

  // For tests: the period between wake-ups, and the samples kept (periodic).
  int64_t retry_interval_ns() const;
  size_t samples() const { return revs_.size(); }
  bool busy() const { return busy_; }

 private:
  void Start(int64_t now);
  void WakePeriodic(int64_t now, bool leader);
  void WakeRevision(int64_t now, bool leader);
  void Sample();
  void Compact(int64_t now, int64_t revision);
  enum class Step { kStarting, kCompleted, kFailed };
  void Log(Step step, int64_t revision, int64_t took_ns,
           const absl::Status& error);

  CompactorOptions opts_;
  std::function<int64_t()> now_;
  std::function<int64_t()> rev_;
  CompactFn compact_;
  LogFn log_;
  bool started_ = false;
  bool busy_ = false;  // a compaction is in flight
  int64_t next_wake_ns_ = 0;
  // Periodic.
  int64_t last_success_ns_ = 0;
  int64_t wait_ns_ = 0;       // etcd's baseInterval
  std::deque<int64_t> revs_;  // samples, oldest first
  // Revision.
  int64_t prev_ = 0;  // the last revision compacted at
  // Expires with the compactor: a compaction answered after it is gone
  // must not touch it.
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace detcd::server

#endif  // DETCD_ENGINE_SERVER_COMPACTOR_H_
