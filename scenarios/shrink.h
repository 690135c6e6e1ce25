// Shrinking a failing run (issue 16 part 1): delta debugging (Zeller's
// ddmin) over what the world decided, keeping the failure's kind.
//
// The run is recorded (sim/schedule.h), then replayed with fewer units:
// fault events first, then client operations, then fault events again (an
// operation dropped can make an event unnecessary), then a shorter fault
// phase and, for 5 or more nodes, 3 nodes. A candidate counts only if it
// fails the same way: the same checker kind and the same class of message
// (its first words, numbers aside). The engine's own draws are not part of
// the schedule, so every candidate runs today's code against the shrunk
// world. The result is the smallest failing schedule, re-recorded from its
// own replay (only the units that happened and the draws that were used).
#ifndef DETCD_SCENARIOS_SHRINK_H_
#define DETCD_SCENARIOS_SHRINK_H_

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "scenarios/run.h"
#include "sim/schedule.h"

namespace detcd::harness {

struct ShrinkOptions {
  // Replays allowed (each is one simulated run); the best schedule so far
  // is the answer when they run out.
  int max_runs = 400;
  std::function<int64_t()> wall_ns;                // optional, for timing
  std::function<void(std::string_view)> progress;  // optional log lines
};

struct ShrinkResult {
  bool failed = false;     // the run failed (otherwise there is nothing to do)
  std::string kind;        // the failure kind kept (see FailureKind)
  sim::Schedule original;  // as recorded
  sim::Schedule minimal;   // the smallest that still fails that way
  RunResult last;          // the minimal schedule's replay
  int runs = 0;            // replays done
  int64_t wall_ns = 0;     // 0 unless ShrinkOptions::wall_ns
  size_t events_before = 0, ops_before = 0;
  size_t events_after = 0, ops_after = 0;
};

// "<checker>: <message class>": the checker kind that caught the run (the
// planted bug's own if it did) and the first words of its first failure
// with digits masked ("lease safety on member #: lease # outlived").
std::string FailureKind(const RunResult& r, std::string_view bug);

// Replays `s` with the options' planted bug (and the schedule's
// parameters). If `recorded` is set, the replay is recorded into it.
RunResult Replay(const sim::Schedule& s, const RunOptions& o,
                 sim::Schedule* recorded = nullptr);

ShrinkResult Shrink(const RunOptions& o, const ShrinkOptions& so);

}  // namespace detcd::harness

#endif  // DETCD_SCENARIOS_SHRINK_H_
