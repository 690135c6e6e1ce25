// BUGGIFY fault points (FoundationDB's flow/Buggify.h): lines of production
// code that, in a simulated run with `detcd-sim --buggify`, sometimes do
// something legal but unusual (leave a Ready for later as a slow disk
// would, campaign early, shrink a window, snapshot early, drop a request)
// so that rare interleavings become common. Unlike a planted bug, a fault
// point never makes the engine wrong: a run with buggify on must pass
// every checker, and a failure it provokes is a real bug.
//
// Deterministic: a run's Buggify is seeded from the run's seed (its own
// stream: the engine's Rng draws are never consumed by it), decides once
// per run which points are enabled (each with probability 1/2, so runs
// differ in which faults combine), and draws whether an enabled point fires
// each time a site is reached. Off (the default, a null pointer in the
// options structs) nothing is drawn, so runs without --buggify keep their
// seeds, trace hashes and planted-bug windows, and the real server never
// fires one.
//
// A site:  if (buggify::Fires(opts_.buggify, buggify::Point::kX, 0.05)) {
//            ...  // BUGGIFY: why this is legal
//          }
#ifndef DETCD_UTIL_BUGGIFY_H_
#define DETCD_UTIL_BUGGIFY_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "engine/env/env.h"

namespace detcd::buggify {

// X(enumerator, name, what it does when it fires)
#define DETCD_BUGGIFY_POINTS(X)                                          \
  X(kDeferReady, "defer-ready",                                          \
    "a node leaves a Ready for its next input, as a slow fsync would "   \
    "(persisting, acks, applies and reads all wait)")                    \
  X(kSpuriousCampaign, "spurious-campaign",                              \
    "a follower's election timer runs out early")                        \
  X(kTinyInflightWindow, "tiny-inflight-window",                         \
    "raft's inflight window is 1-3 appends of a few hundred bytes each") \
  X(kEarlySnapshot, "early-snapshot",                                    \
    "a node snapshots and compacts its log long before snapshot_count")  \
  X(kDropKeepAlive, "drop-keepalive",                                    \
    "the leader answers a lease keep-alive with an error, not renewing it")

enum class Point : uint8_t {
#define DETCD_BUGGIFY_ENUM(e, name, what) e,
  DETCD_BUGGIFY_POINTS(DETCD_BUGGIFY_ENUM)
#undef DETCD_BUGGIFY_ENUM
      kCount
};

struct PointInfo {
  Point point;
  std::string_view name;
  std::string_view what;
};

inline constexpr std::array<PointInfo, static_cast<size_t>(Point::kCount)>
    kPoints{{
#define DETCD_BUGGIFY_INFO(e, name, what) {Point::e, name, what},
        DETCD_BUGGIFY_POINTS(DETCD_BUGGIFY_INFO)
#undef DETCD_BUGGIFY_INFO
    }};

inline constexpr const PointInfo& Info(Point p) {
  return kPoints[static_cast<size_t>(p)];
}

inline std::optional<Point> Find(std::string_view name) {
  for (const PointInfo& p : kPoints) {
    if (p.name == name) return p.point;
  }
  return std::nullopt;
}

// One run's fault points. Shared by every member of a simulated cluster
// (the simulator is single-threaded); not thread-safe.
class Buggify {
 public:
  // Points enabled for this run: each with probability 1/2 from `seed`, or
  // exactly `only` if given.
  explicit Buggify(uint64_t seed, std::optional<Point> only = std::nullopt)
      : rng_(seed) {
    for (const PointInfo& p : kPoints) {
      const bool on = rng_.Chance(0.5);
      if (only ? p.point == *only : on) enabled_ |= Bit(p.point);
    }
  }

  bool enabled(Point p) const { return (enabled_ & Bit(p)) != 0; }
  // At a site: true with probability `chance` if `p` is enabled in this
  // run. Draws only for an enabled point.
  bool Fire(Point p, double chance) {
    if (!enabled(p) || !rng_.Chance(chance)) return false;
    ++fired_[static_cast<size_t>(p)];
    return true;
  }
  // A site's own parameter (e.g. how small a window), in [lo, hi].
  int64_t Range(int64_t lo, int64_t hi) { return rng_.Range(lo, hi); }
  uint64_t fired(Point p) const { return fired_[static_cast<size_t>(p)]; }
  // "defer-ready,early-snapshot" (the enabled points), or "none".
  std::string Describe() const {
    std::string out;
    for (const PointInfo& p : kPoints) {
      if (!enabled(p.point)) continue;
      if (!out.empty()) out += ',';
      out += p.name;
    }
    return out.empty() ? "none" : out;
  }

 private:
  static constexpr uint32_t Bit(Point p) {
    return uint32_t{1} << static_cast<uint32_t>(p);
  }
  static_assert(static_cast<size_t>(Point::kCount) <= 32);
  env::SeededRng rng_;
  uint32_t enabled_ = 0;
  std::array<uint64_t, static_cast<size_t>(Point::kCount)> fired_{};
};

// The site's test: `b` is the options' pointer, null when buggify is off.
inline bool Fires(Buggify* b, Point p, double chance) {
  return b != nullptr && b->Fire(p, chance);
}

}  // namespace detcd::buggify

#endif  // DETCD_UTIL_BUGGIFY_H_
