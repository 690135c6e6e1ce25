// Request expiry by tick: pending requests (proposals, reads, forwarded
// requests, leader moves) each carry a `deadline_tick` and a `done`
// callback. Deadlines are in ticks, so expiry is deterministic; the
// containers are small and bounded, so a scan per tick is cheap.
#ifndef DETCD_UTIL_DEADLINES_H_
#define DETCD_UTIL_DEADLINES_H_

#include <cstdint>
#include <utility>
#include <vector>

namespace detcd::util {

namespace internal {
// A map's element is (key, waiter); a sequence's element is the waiter.
template <typename T>
auto& WaiterOf(T& element) {
  if constexpr (requires { element.second.deadline_tick; }) {
    return element.second;
  } else {
    return element;
  }
}
}  // namespace internal

// Removes the waiters of `pending` whose deadline has passed at `tick` and
// appends their callbacks to `out`, to be called once the caller's state is
// consistent again (a callback may re-enter the caller).
template <typename Container, typename Done>
void TakeExpired(Container& pending, int64_t tick, std::vector<Done>* out) {
  for (auto it = pending.begin(); it != pending.end();) {
    auto& w = internal::WaiterOf(*it);
    if (w.deadline_tick <= tick) {
      out->push_back(std::move(w.done));
      it = pending.erase(it);
    } else {
      ++it;
    }
  }
}

}  // namespace detcd::util

#endif  // DETCD_UTIL_DEADLINES_H_
