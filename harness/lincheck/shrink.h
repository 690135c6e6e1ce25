// Shrinking a violation to a small window of ops.
//
// MINIMAL WINDOW. For a violation the checker shrinks (delta debugging, with
// bounded work) a set W of kOk ops such that the history in which every op
// outside W is made kUnknown (it may or may not have happened, at any time
// after its invoke) and revisions may also be taken by writes outside the
// history (external_writes) is still not linearizable. That relaxation can
// only add linearizations, so W alone proves the violation; ops whose
// revisions matter (e.g. the write a stale read missed) must be in W. The
// explanation gives a one-line reason, lists W with FormatOp in invoke order,
// then, as context only, a few writes by other ops to the keys W names.
// When the shrinking budget runs out, W may be larger than minimal; it is
// always a failing set.
#ifndef DETCD_HARNESS_LINCHECK_SHRINK_H_
#define DETCD_HARNESS_LINCHECK_SHRINK_H_

#include <cstdint>
#include <optional>
#include <vector>

#include "harness/history.h"
#include "harness/lincheck/search.h"
#include "harness/linearizability.h"

namespace detcd::harness::lincheck {

// Invoke order, ties by index.
bool OpBefore(const History& h, int a, int b);

// Delta debugging over the ops of a failing history: finds a small set W of
// ops such that the history with every other op made kUnknown still fails.
class Shrinker {
 public:
  // With `relaxed`, revisions of ops outside the window may also be taken
  // by invisible writes (external_writes): the window must then hold the
  // ops that pin revisions, which makes it a better explanation, and gaps
  // cost no search. Without it, the caller's rule applies.
  Shrinker(const History& h, const CheckOptions& o, bool relaxed);

  // Does the history restricted to `w` (history indices) fail?
  bool Fails(const std::vector<int>& w, CoreResult* out = nullptr);

  std::vector<int> DeltaDebug(std::vector<int> w);

  // A failing window to start shrinking from: the precheck's ops, or the
  // ops around the revision where the search got stuck, widening until the
  // window fails alone, or finally every kOk op.
  std::optional<std::vector<int>> Start(const std::vector<int>& culprits,
                                        const std::vector<int>& all,
                                        int64_t deepest_rev);

 private:
  bool Before(int a, int b) const { return OpBefore(h_, a, b); }

  const History& h_;
  CheckOptions sub_opts_;
  int checks_ = 0;
  int64_t states_ = 0;
};

}  // namespace detcd::harness::lincheck

#endif  // DETCD_HARNESS_LINCHECK_SHRINK_H_
