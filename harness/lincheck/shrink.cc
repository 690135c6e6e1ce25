#include "harness/lincheck/shrink.h"

#include <algorithm>
#include <cstdint>
#include <limits>
#include <optional>
#include <utility>
#include <vector>

namespace detcd::harness::lincheck {
namespace {

// Bounds on the work spent shrinking a violation to a small window: per
// sub-history check, in total, and in number of checks.
constexpr int64_t kShrinkCheckStates = 50'000;
constexpr int64_t kShrinkTotalStates = 20'000'000;
constexpr int kShrinkMaxChecks = 400;

}  // namespace

bool OpBefore(const History& h, int a, int b) {
  const Operation& x = h.ops[a];
  const Operation& y = h.ops[b];
  if (x.invoke_ns != y.invoke_ns) return x.invoke_ns < y.invoke_ns;
  return a < b;
}

Shrinker::Shrinker(const History& h, const CheckOptions& o, bool relaxed)
    : h_(h) {
  sub_opts_ = o;
  sub_opts_.max_states = std::min(o.max_states, kShrinkCheckStates);
  if (relaxed) sub_opts_.external_writes = true;
}

bool Shrinker::Fails(const std::vector<int>& w, CoreResult* out) {
  if (checks_ >= kShrinkMaxChecks || states_ >= kShrinkTotalStates) {
    return false;
  }
  ++checks_;
  std::vector<uint8_t> in(h_.ops.size(), 0);
  int64_t last_return = std::numeric_limits<int64_t>::min();
  for (int i : w) {
    in[i] = 1;
    last_return = std::max(last_return, h_.ops[i].return_ns);
  }
  // Ops outside the window become unknown. Those invoked after every
  // window op returned are left out: they could only come after all of
  // them, so they cannot change the verdict.
  History sub;
  for (size_t i = 0; i < h_.ops.size(); ++i) {
    if (!in[i] && h_.ops[i].invoke_ns > last_return) continue;
    sub.ops.push_back(h_.ops[i]);
    Operation& op = sub.ops.back();
    if (!in[i] && op.outcome == Operation::kOk) {
      op.outcome = Operation::kUnknown;
    }
  }
  CoreResult r = RunCore(sub, sub_opts_);
  states_ += static_cast<int64_t>(r.states) + 1;
  const bool fails = r.verdict == CoreResult::kFail;
  if (out != nullptr) *out = std::move(r);
  return fails;
}

std::vector<int> Shrinker::DeltaDebug(std::vector<int> w) {
  size_t n = 2;
  while (w.size() >= 2) {
    n = std::min(n, w.size());
    std::vector<std::vector<int>> chunks(n);
    for (size_t i = 0; i < w.size(); ++i) {
      chunks[i * n / w.size()].push_back(w[i]);
    }
    bool reduced = false;
    for (const auto& chunk : chunks) {
      if (Fails(chunk)) {
        w = chunk;
        n = 2;
        reduced = true;
        break;
      }
    }
    if (!reduced && n > 2) {
      for (size_t j = 0; j < n && !reduced; ++j) {
        std::vector<int> rest;
        for (size_t i = 0; i < n; ++i) {
          if (i != j)
            rest.insert(rest.end(), chunks[i].begin(), chunks[i].end());
        }
        std::sort(rest.begin(), rest.end(),
                  [&](int a, int b) { return Before(a, b); });
        if (Fails(rest)) {
          w = std::move(rest);
          n = std::max<size_t>(n - 1, 2);
          reduced = true;
        }
      }
    }
    if (!reduced) {
      if (n >= w.size()) break;
      n = std::min(2 * n, w.size());
    }
  }
  return w;
}

std::optional<std::vector<int>> Shrinker::Start(
    const std::vector<int>& culprits, const std::vector<int>& all,
    int64_t deepest_rev) {
  if (!culprits.empty() && Fails(culprits)) return culprits;
  for (int64_t width = 4; width < (int64_t{1} << 60); width *= 4) {
    std::vector<int> w;
    for (int i : all) {
      const int64_t r = h_.ops[i].resp.revision;
      if (r >= deepest_rev - width && r <= deepest_rev + 1) w.push_back(i);
    }
    if (w.size() == all.size()) break;
    if (!w.empty() && Fails(w)) return w;
  }
  if (Fails(all)) return all;
  return std::nullopt;
}

}  // namespace detcd::harness::lincheck
