// A node's view of time in the simulation: the world's virtual time plus a
// fixed skew, a drift rate and forward jumps (a monotonic clock never runs
// backwards, but it can run fast or slow and leap after a VM pause).
//
// Readings start at kEpochNs (plus the skew), not at 0: a monotonic clock's
// origin is arbitrary, and an origin far from 0 lets a negative skew be a
// plain offset instead of a clock that stands still until the world's time
// catches up with it (a stopped clock is an unbounded slow drift, which the
// lease checker's bounds would not cover).
//
// Skew and drift describe the clock for the whole run: they are set before
// the run starts (world time 0). Anything that moves a clock later is a
// jump, and every jump is reported to the on_jump callback (the cluster
// passes it to the lease checker, harness/lease_checker.h).
#ifndef DETCD_SIM_SIM_CLOCK_H_
#define DETCD_SIM_SIM_CLOCK_H_

#include <cstdint>
#include <functional>
#include <utility>

#include "engine/env/env.h"
#include "engine/util/check.h"
#include "sim/world.h"

namespace detcd::sim {

class SimClock final : public env::Clock {
 public:
  static constexpr int64_t kEpochNs = 1000 * kSecond;
  // Drift and skew bounds the clock accepts (well beyond what scenarios use).
  static constexpr int64_t kMaxDriftPpm = 100'000;
  static constexpr int64_t kMaxSkewNs = 100 * kSecond;

  explicit SimClock(const World* world) : world_(world) {}
  int64_t NowNanos() override {
    const int64_t t = world_->now();
    // drift in parts per million, applied to elapsed virtual time. With a
    // fixed rate above -1e6 ppm this never decreases; the clamp only keeps
    // the reading monotonic across the start-of-run settings below.
    const int64_t drifted = t + (t / 1000) * drift_ppm_ / 1000;
    int64_t v = kEpochNs + drifted + skew_ns_ + jumped_ns_;
    if (v < last_) v = last_;
    last_ = v;
    return v;
  }
  // Before the run starts only. Readings taken during the cluster's own
  // start (time 0) may step back once; nothing at time 0 depends on them
  // as a duration.
  void set_skew_ns(int64_t s) {
    DETCD_CHECK_MSG(world_->now() == 0, "clock skew is set before the run");
    DETCD_CHECK(s > -kMaxSkewNs && s < kMaxSkewNs);
    skew_ns_ = s;
    last_ = 0;
  }
  void set_drift_ppm(int64_t d) {
    DETCD_CHECK_MSG(world_->now() == 0, "clock drift is set before the run");
    DETCD_CHECK(d > -kMaxDriftPpm && d < kMaxDriftPpm);
    drift_ppm_ = d;
    last_ = 0;
  }
  // A forward leap of the reading (a VM pause, an NTP step on a clock that
  // should not have one). Reported to on_jump with its size.
  void Jump(int64_t forward_ns) {
    if (forward_ns <= 0) return;
    jumped_ns_ += forward_ns;
    if (on_jump_) on_jump_(forward_ns);
  }
  void set_on_jump(std::function<void(int64_t forward_ns)> f) {
    on_jump_ = std::move(f);
  }
  int64_t skew_ns() const { return skew_ns_; }
  int64_t drift_ppm() const { return drift_ppm_; }
  int64_t jumped_ns() const { return jumped_ns_; }

 private:
  const World* world_;
  int64_t skew_ns_ = 0;
  int64_t drift_ppm_ = 0;
  int64_t jumped_ns_ = 0;
  int64_t last_ = 0;
  std::function<void(int64_t)> on_jump_;
};

}  // namespace detcd::sim

#endif  // DETCD_SIM_SIM_CLOCK_H_
