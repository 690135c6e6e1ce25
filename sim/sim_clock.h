// A node's view of time in the simulation: the world's virtual time plus a
// fixed skew, a drift rate and forward jumps (a monotonic clock never runs
// backwards, but it can run fast or slow and leap after a VM pause).
#ifndef DETCD_SIM_SIM_CLOCK_H_
#define DETCD_SIM_SIM_CLOCK_H_

#include "engine/env/env.h"
#include "sim/world.h"

namespace detcd::sim {

class SimClock final : public env::Clock {
 public:
  explicit SimClock(const World* world) : world_(world) {}
  int64_t NowNanos() override {
    const int64_t t = world_->now();
    // drift in parts per million, applied to elapsed virtual time.
    const int64_t drifted = t + (t / 1000) * drift_ppm_ / 1000;
    int64_t v = drifted + skew_ns_ + jumped_ns_;
    // Monotonic: never go back, even if drift changes.
    if (v < last_) v = last_;
    last_ = v;
    return v;
  }
  void set_skew_ns(int64_t s) { skew_ns_ = s; }
  void set_drift_ppm(int64_t d) { drift_ppm_ = d; }
  void Jump(int64_t forward_ns) {
    if (forward_ns > 0) jumped_ns_ += forward_ns;
  }
  int64_t skew_ns() const { return skew_ns_; }
  int64_t drift_ppm() const { return drift_ppm_; }

 private:
  const World* world_;
  int64_t skew_ns_ = 0;
  int64_t drift_ppm_ = 0;
  int64_t jumped_ns_ = 0;
  int64_t last_ = 0;
};

}  // namespace detcd::sim

#endif  // DETCD_SIM_SIM_CLOCK_H_
