// env::Clock over CLOCK_MONOTONIC: never jumps with wall-clock changes, which
// is what election timeouts and lease expiry need on one node.
#ifndef DETCD_SHIM_REAL_CLOCK_H_
#define DETCD_SHIM_REAL_CLOCK_H_

#include <time.h>

#include <cstdint>

#include "engine/env/env.h"

namespace detcd::shim {

class RealClock final : public env::Clock {
 public:
  int64_t NowNanos() override {
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
  }
};

}  // namespace detcd::shim

#endif  // DETCD_SHIM_REAL_CLOCK_H_
