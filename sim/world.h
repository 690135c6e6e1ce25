// The simulated world's heart: virtual time and an event queue ordered by
// (time, seq). Time jumps straight to the next event, so a simulated minute
// of a quiet cluster costs microseconds. Single-threaded by construction.
//
// Every event that matters feeds a rolling trace hash; two runs of the same
// seed must end with the same hash (the determinism check), and the first
// diverging event can be found by comparing recorded traces.
#ifndef DETCD_SIM_WORLD_H_
#define DETCD_SIM_WORLD_H_

#include <cstdint>
#include <functional>
#include <queue>
#include <string>
#include <string_view>
#include <vector>

#include "engine/util/check.h"
#include "engine/util/hash.h"

namespace detcd::sim {

inline constexpr int64_t kMicrosecond = 1000;
inline constexpr int64_t kMillisecond = 1000 * kMicrosecond;
inline constexpr int64_t kSecond = 1000 * kMillisecond;

class World {
 public:
  using Fn = std::function<void()>;

  int64_t now() const { return now_; }
  uint64_t events_run() const { return events_run_; }

  void At(int64_t when, Fn fn) {
    DETCD_CHECK_MSG(when >= now_, "cannot schedule in the past");
    queue_.push(Event{when, next_seq_++, std::move(fn)});
  }
  void After(int64_t delay, Fn fn) { At(now_ + delay, std::move(fn)); }

  // Runs the next event; false if there is none or it lies beyond `limit`.
  bool RunNext(int64_t limit) {
    if (queue_.empty() || queue_.top().when > limit) return false;
    // Move out before popping: the event may schedule more events.
    Event ev = std::move(const_cast<Event&>(queue_.top()));
    queue_.pop();
    now_ = ev.when;
    ++events_run_;
    ev.fn();
    return true;
  }
  // Runs every event up to `limit`, then sets the time to `limit`.
  void RunUntil(int64_t limit) {
    while (RunNext(limit)) {
    }
    if (limit > now_) now_ = limit;
  }
  size_t pending() const { return queue_.size(); }

  // Trace hash: FNV-1a over the mixed words.
  void Mix(uint64_t v) {
    for (int i = 0; i < 8; ++i) {
      hash_ ^= (v >> (8 * i)) & 0xff;
      hash_ *= 0x100000001b3ULL;
    }
  }
  void Mix(std::string_view s) {
    hash_ = util::Fnv1a(s, hash_);
    Mix(s.size());
  }
  uint64_t trace_hash() const { return hash_; }

 private:
  struct Event {
    int64_t when;
    uint64_t seq;
    Fn fn;
  };
  struct Later {
    bool operator()(const Event& a, const Event& b) const {
      return a.when != b.when ? a.when > b.when : a.seq > b.seq;
    }
  };
  std::priority_queue<Event, std::vector<Event>, Later> queue_;
  int64_t now_ = 0;
  uint64_t next_seq_ = 0;
  uint64_t events_run_ = 0;
  uint64_t hash_ = util::kFnvOffset;
};

}  // namespace detcd::sim

#endif  // DETCD_SIM_WORLD_H_
