// CheckLinearizable: one check (lincheck/search.h), then, for a violation,
// a small window (lincheck/shrink.h) and its explanation
// (lincheck/format.h).
#include "harness/linearizability.h"

#include <algorithm>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "harness/lincheck/format.h"
#include "harness/lincheck/search.h"
#include "harness/lincheck/shrink.h"

namespace detcd::harness {

using lincheck::CoreResult;
using lincheck::Explain;
using lincheck::OpBefore;
using lincheck::RelatedWrites;
using lincheck::RunCore;
using lincheck::Shrinker;

CheckResult CheckLinearizable(const History& h, const CheckOptions& o) {
  CheckResult out;
  CoreResult core = RunCore(h, o);
  out.states_explored = core.states;
  if (core.verdict == CoreResult::kOk) return out;
  if (core.verdict == CoreResult::kLimit) {
    out.inconclusive = true;
    out.explanation = "inconclusive: state limit";
    return out;
  }
  out.ok = false;
  auto by_invoke = [&](std::vector<int>* w) {
    std::sort(w->begin(), w->end(),
              [&](int a, int b) { return OpBefore(h, a, b); });
    w->erase(std::unique(w->begin(), w->end()), w->end());
  };
  std::vector<int> all;
  for (size_t i = 0; i < h.ops.size(); ++i) {
    if (h.ops[i].outcome == Operation::kOk) all.push_back(static_cast<int>(i));
  }
  by_invoke(&all);
  std::vector<int> window = core.culprits;
  by_invoke(&window);
  std::string reason = core.reason;
  if (o.minimize) {
    // Prefer the relaxed rule; a violation that is only about accounting
    // for revisions needs the caller's rule.
    bool found = false;
    for (bool relaxed : {true, false}) {
      Shrinker shrink(h, o, relaxed);
      std::optional<std::vector<int>> start =
          shrink.Start(window, all, core.deepest_rev);
      if (!start) continue;
      window = shrink.DeltaDebug(std::move(*start));
      CoreResult final_core;
      if (shrink.Fails(window, &final_core)) reason = final_core.reason;
      found = true;
      break;
    }
    if (!found) window = all;
  } else if (window.empty()) {
    window = all;
  }
  by_invoke(&window);
  for (int i : window) out.window.push_back(h.ops[i].id);
  std::vector<int> related = RelatedWrites(h, window);
  by_invoke(&related);
  out.explanation = Explain(h, reason, window, related);
  return out;
}

}  // namespace detcd::harness
