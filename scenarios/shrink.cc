#include "scenarios/shrink.h"

#include <algorithm>
#include <set>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "engine/util/planted.h"

namespace detcd::harness {

namespace {

// The invariant's name: a failure's text up to its first ':', digits
// masked ("lease safety on member #", "ready ordering", "linearizability").
// An inconclusive linearizability check is a class of its own.
std::string MessageClass(const std::string& failure) {
  std::string head = failure.substr(0, failure.find(':'));
  if (head.size() > 60) head = head.substr(0, 60);
  std::string c;
  for (char ch : head) {
    if (absl::ascii_isdigit(static_cast<unsigned char>(ch))) {
      if (c.empty() || c.back() != '#') c += '#';
    } else {
      c += ch;
    }
  }
  if (absl::StartsWith(failure, "linearizability: inconclusive")) {
    c += ": inconclusive";
  }
  return c;
}

}  // namespace

std::string FailureKind(const RunResult& r, std::string_view std_bug) {
  const std::string bug(std_bug);
  if (r.ok || r.failures.empty()) return "";
  std::string checker;
  if (!bug.empty()) {
    if (auto b = planted::Find(std_bug)) {
      const std::string own(planted::CatcherName(planted::Info(*b).catcher));
      if (r.caught_by.count(own) > 0) checker = own;
    }
  }
  if (checker.empty()) {
    for (const std::string& k : r.caught_by) {
      if (k != "liveness" || r.caught_by.size() == 1) {
        checker = k;
        break;
      }
    }
  }
  // The first failure that checker reported: failures are listed by
  // checker, and the class names its invariant.
  std::string cls = MessageClass(r.failures.front());
  for (const std::string& f : r.failures) {
    if (absl::StartsWith(absl::AsciiStrToLower(f), checker) ||
        (checker == "safety" && !absl::StartsWith(f, "linearizability") &&
         !absl::StartsWith(f, "lease") && !absl::StartsWith(f, "watch"))) {
      cls = MessageClass(f);
      break;
    }
  }
  return absl::StrCat(checker, ": ", cls);
}

RunResult Replay(const sim::Schedule& s, const RunOptions& o,
                 sim::Schedule* recorded) {
  RunOptions ro = o;
  ApplySchedule(s, &ro);
  sim::Decisions d(&s);
  ro.decisions = &d;
  ro.trace_log = nullptr;
  RunResult r = RunOne(ro, nullptr);
  if (recorded != nullptr) *recorded = d.output();
  return r;
}

namespace {

using Kind = sim::Schedule::UnitKind;

class Shrinker {
 public:
  Shrinker(const RunOptions& o, const ShrinkOptions& so, ShrinkResult* res)
      : o_(o), so_(so), res_(res) {}

  void Run() {
    sim::Decisions rec;
    RunOptions ro = o_;
    ro.decisions = &rec;
    ro.trace_log = nullptr;
    const RunResult first = RunOne(ro, nullptr);
    ++res_->runs;
    res_->original = rec.output();
    res_->events_before = res_->original.CountUnits(Kind::kEvent);
    res_->ops_before = res_->original.CountUnits(Kind::kOp);
    if (first.ok) return;
    res_->failed = true;
    kind_ = FailureKind(first, o_.bug);
    res_->kind = kind_;
    Log(absl::StrCat("failing run: ", kind_, " (", res_->events_before,
                     " fault events, ", res_->ops_before, " operations)"));
    best_ = res_->original;
    best_result_ = first;

    // A 5-node failure that 3 nodes show too is easier to read.
    if (best_.nodes > 3) {
      sim::Schedule c = best_;
      c.nodes = 3;
      if (Test(c)) Log("3 nodes suffice");
    }
    Minimize(Kind::kEvent);
    Minimize(Kind::kOp);
    Minimize(Kind::kEvent);
    ShortenFaultPhase();

    // The answer is the best candidate as its own replay recorded it: only
    // the units that happened and the draws used. Check that it fails too.
    sim::Schedule minimal;
    RunResult r = Replay(best_, o_, &minimal);
    ++res_->runs;
    if (!SameKind(r)) {
      // Cannot happen with unchanged code (a replay is exact); keep the
      // candidate as it was rather than a schedule that passes.
      Log("warning: the re-recorded schedule did not fail the same way");
      minimal = best_;
      r = best_result_;
    }
    minimal.failure = r.failures.empty() ? "" : r.failures.front();
    res_->minimal = std::move(minimal);
    res_->last = std::move(r);
    res_->events_after = res_->minimal.CountUnits(Kind::kEvent);
    res_->ops_after = res_->minimal.CountUnits(Kind::kOp);
  }

 private:
  void Log(std::string_view s) {
    if (so_.progress) so_.progress(s);
  }
  bool Exhausted() const { return res_->runs >= so_.max_runs; }
  bool SameKind(const RunResult& r) const {
    return !r.ok && FailureKind(r, o_.bug) == kind_;
  }
  // Replays a candidate; if it fails the same way it becomes the best.
  bool Test(const sim::Schedule& c) {
    if (Exhausted()) return false;
    RunResult r = Replay(c, o_);
    ++res_->runs;
    if (!SameKind(r)) return false;
    best_ = c;
    best_result_ = std::move(r);
    return true;
  }

  // best_ with only `keep` of the units of kind k (others unchanged).
  sim::Schedule With(Kind k, const std::vector<size_t>& keep) const {
    sim::Schedule c = best_;
    c.units.clear();
    const std::set<size_t> kept(keep.begin(), keep.end());
    for (size_t i = 0; i < best_.units.size(); ++i) {
      if (best_.units[i].kind != k || kept.count(i) > 0) {
        c.units.push_back(best_.units[i]);
      }
    }
    return c;
  }

  // ddmin over the units of kind k in best_. Indices refer to best_'s
  // units, so best_ is rebuilt (and the indices renumbered) on success.
  void Minimize(Kind k) {
    auto units_of = [&] {
      std::vector<size_t> v;
      for (size_t i = 0; i < best_.units.size(); ++i) {
        if (best_.units[i].kind == k) v.push_back(i);
      }
      return v;
    };
    std::vector<size_t> c = units_of();
    if (c.empty()) return;
    const char* what = k == Kind::kEvent ? "fault events" : "operations";
    const size_t before = c.size();
    if (Test(With(k, {}))) {
      Log(absl::StrCat(what, ": none needed"));
      return;
    }
    size_t n = 2;
    while (c.size() >= 2 && !Exhausted()) {
      const size_t chunk = (c.size() + n - 1) / n;
      std::vector<std::vector<size_t>> parts;
      for (size_t i = 0; i < c.size(); i += chunk) {
        parts.emplace_back(c.begin() + i,
                           c.begin() + std::min(c.size(), i + chunk));
      }
      bool reduced = false;
      for (const auto& p : parts) {
        if (Test(With(k, p))) {
          c = units_of();
          n = 2;
          reduced = true;
          break;
        }
      }
      if (!reduced && parts.size() > 2) {
        for (size_t j = 0; j < parts.size() && !reduced; ++j) {
          std::vector<size_t> rest;
          for (size_t q = 0; q < parts.size(); ++q) {
            if (q != j)
              rest.insert(rest.end(), parts[q].begin(), parts[q].end());
          }
          if (Test(With(k, rest))) {
            c = units_of();
            n = std::max<size_t>(n - 1, 2);
            reduced = true;
          }
        }
      }
      if (!reduced) {
        if (n >= c.size()) break;
        n = std::min(n * 2, c.size());
      }
    }
    Log(absl::StrCat(what, ": ", before, " -> ", c.size(), " (", res_->runs,
                     " runs so far)"));
  }

  // The fault phase ends soon after the last fault event left.
  void ShortenFaultPhase() {
    int64_t last = 0;
    for (const auto& u : best_.units) {
      if (u.kind == Kind::kEvent) last = std::max(last, u.time_ns);
    }
    constexpr int64_t kStep = 100 * sim::kMillisecond;
    const int64_t end = (last / kStep + 2) * kStep;
    if (end >= best_.fault_phase_ns) return;
    sim::Schedule c = best_;
    c.fault_phase_ns = end;
    if (Test(c)) {
      Log(absl::StrCat("fault phase: ", end / sim::kMillisecond, " ms"));
    }
  }

  const RunOptions& o_;
  const ShrinkOptions& so_;
  ShrinkResult* res_;
  std::string kind_;
  sim::Schedule best_;
  RunResult best_result_;
};

}  // namespace

ShrinkResult Shrink(const RunOptions& o, const ShrinkOptions& so) {
  ShrinkResult res;
  const int64_t t0 = so.wall_ns ? so.wall_ns() : 0;
  Shrinker(o, so, &res).Run();
  if (so.wall_ns) res.wall_ns = so.wall_ns() - t0;
  return res;
}

}  // namespace detcd::harness
