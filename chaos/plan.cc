#include "chaos/plan.h"

#include <algorithm>
#include <cmath>
#include <set>
#include <tuple>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "harness/trace.h"
#include "nlohmann/json.hpp"
#include "scenarios/run.h"
#include "scenarios/scenario.h"

namespace detcd::chaos {
namespace {

// Counters of the simulator (Cluster::FaultsInjected) with no real
// counterpart here; the state-carrying ones (crash, fail-stop, pause) map
// through the state.
bool CounterApplies(absl::string_view name) {
  return name == "crash" || name == "fail-stop" || name == "pause";
}

// "1,3" -> member indexes {0, 2}; ids past the cluster are counted.
bool ParseIds(absl::string_view list, int members, std::set<int>* out,
              std::map<std::string, int>* not_applied) {
  for (absl::string_view w : absl::StrSplit(list, ',', absl::SkipEmpty())) {
    int id = 0;
    if (!absl::SimpleAtoi(w, &id)) return false;
    if (id < 1 || id > members) {
      ++(*not_applied)["member added by a membership change"];
      continue;
    }
    out->insert(id - 1);
  }
  return true;
}

// (sim time, member index) of each "disk full" event in a run's trace.
std::vector<std::pair<int64_t, int>> DiskFullEvents(const harness::Trace& t) {
  std::vector<std::pair<int64_t, int>> out;
  nlohmann::json j = nlohmann::json::parse(t.ToJson(), nullptr, false);
  if (j.is_discarded() || !j.contains("traceEvents")) return out;
  for (const nlohmann::json& e : j["traceEvents"]) {
    if (e.value("name", "") != "disk full" || !e.contains("ts")) continue;
    // Trace timestamps are microseconds with three decimals.
    const int64_t ns = std::llround(e["ts"].get<double>() * 1000.0);
    out.emplace_back(ns, e.value("tid", 0) - 1);
  }
  return out;
}

}  // namespace

bool ParseWorldState(const std::string& what, int members, WorldTarget* out,
                     std::map<std::string, int>* not_applied) {
  std::vector<std::string> parts = absl::StrSplit(what, "; ");
  bool changed = false;
  for (size_t p = 0; p < parts.size(); ++p) {
    absl::string_view part = parts[p];
    if (p == 0 && absl::StrContains(part, " => ")) {
      changed = true;
      absl::string_view after = part.substr(part.find(" => ") + 4);
      *out = WorldTarget{};
      if (after == "all well") continue;
      for (absl::string_view tok :
           absl::StrSplit(after, ' ', absl::SkipEmpty())) {
        if (absl::ConsumePrefix(&tok, "down:")) {
          ParseIds(tok, members, &out->down, not_applied);
        } else if (absl::ConsumePrefix(&tok, "paused:")) {
          ParseIds(tok, members, &out->paused, not_applied);
        } else if (absl::ConsumePrefix(&tok, "cut:")) {
          for (absl::string_view c :
               absl::StrSplit(tok, ',', absl::SkipEmpty())) {
            std::pair<absl::string_view, absl::string_view> ab =
                absl::StrSplit(c, '>');
            int a = 0, b = 0;
            if (!absl::SimpleAtoi(ab.first, &a) ||
                !absl::SimpleAtoi(ab.second, &b)) {
              continue;
            }
            if (a < 1 || b < 1 || a > members || b > members) {
              ++(*not_applied)["member added by a membership change"];
              continue;
            }
            out->cuts.insert({a - 1, b - 1});
          }
        } else if (absl::ConsumePrefix(&tok, "skewed:")) {
          ++(*not_applied)["clock skew"];
        }
      }
      continue;
    }
    // "crash +1", "disk +3", ...
    absl::string_view name = part.substr(0, part.find(' '));
    if (absl::StartsWith(part, "no visible change")) {
      ++(*not_applied)["setting change or clogged link (no state)"];
    } else if (!CounterApplies(name)) {
      ++(*not_applied)[std::string(name)];
    }
  }
  return changed;
}

absl::StatusOr<Plan> PlanFromSchedule(const sim::Schedule& s, int members,
                                      double time_scale) {
  Plan plan;
  plan.time_scale = time_scale;
  plan.sim_fault_phase_ns =
      s.fault_phase_ns > 0 ? s.fault_phase_ns : 10 * sim::kSecond;
  if (s.nodes != members) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the schedule is for ", s.nodes, " nodes, the cluster has ", members));
  }
  WorldTarget state;
  for (const sim::Schedule::Unit& u : s.units) {
    if (u.kind != sim::Schedule::UnitKind::kEvent) continue;
    if (!ParseWorldState(u.what, members, &state, &plan.not_applied)) continue;
    plan.events.push_back(
        {static_cast<int64_t>(static_cast<double>(u.time_ns) * time_scale),
         absl::StrCat(s.scenario, " ", u.id), u.what, state});
  }
  std::stable_sort(plan.events.begin(), plan.events.end(),
                   [](const PlannedEvent& a, const PlannedEvent& b) {
                     return a.at_ns < b.at_ns;
                   });
  return plan;
}

absl::StatusOr<Plan> PlanFromScenarios(const std::string& names, uint64_t seed,
                                       int members, int64_t real_fault_ns,
                                       double time_scale) {
  Plan plan;
  plan.time_scale = time_scale;
  plan.sim_fault_phase_ns =
      static_cast<int64_t>(static_cast<double>(real_fault_ns) / time_scale);
  struct Step {
    int64_t at;
    size_t scenario;
    std::string id, what;
    WorldTarget state;
  };
  std::vector<Step> steps;
  std::vector<std::string> list = absl::StrSplit(names, '+', absl::SkipEmpty());
  if (list.empty()) return absl::InvalidArgumentError("no scenario");
  for (size_t k = 0; k < list.size(); ++k) {
    if (scenarios::Find(list[k]) == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat("unknown scenario ", list[k], " (detcd-sim --list)"));
    }
    harness::RunOptions ro;
    ro.seed = seed;
    ro.scenario = list[k];
    ro.nodes = members;
    // The faults are what is wanted; a short workload keeps this quick.
    ro.ops = 50;
    ro.fault_phase_ns = plan.sim_fault_phase_ns;
    ro.accept_inconclusive = true;
    sim::Decisions d;
    ro.decisions = &d;
    // The trace names the member of each "disk full" event (the event's
    // WHAT does not: a disk's capacity is not part of the world state).
    harness::Trace trace;
    harness::RunResult r = harness::RunOne(ro, &trace);
    std::vector<std::pair<int64_t, int>> fills = DiskFullEvents(trace);
    for (const std::string& p : r.params) {
      plan.params.push_back(absl::StrCat(list[k], ".", p));
      absl::string_view v = p;
      double x = 0;
      if (absl::ConsumePrefix(&v, "net.loss=") && absl::SimpleAtod(v, &x)) {
        plan.loss = std::max(plan.loss, x);
      }
      if (absl::ConsumePrefix(&v, "net.max_latency_ms=") &&
          absl::SimpleAtod(v, &x)) {
        plan.delay_ms =
            std::max<int64_t>(plan.delay_ms, static_cast<int64_t>(x));
      }
      if (absl::StartsWith(p, "net.duplicate=") ||
          absl::StartsWith(p, "net.reorder=")) {
        ++plan.not_applied[p.substr(0, p.find('='))];
      }
    }
    WorldTarget state;
    std::map<std::string, int> frees;  // unit id -> member whose disk frees
    for (const sim::Schedule::Unit& u : d.output().units) {
      if (u.kind != sim::Schedule::UnitKind::kEvent) continue;
      if (u.time_ns >= plan.sim_fault_phase_ns) continue;
      std::set<int> full = state.disk_full;
      bool disk = false;
      for (const auto& [t, member] : fills) {
        // AddDiskFull's firing; its first child (After) frees the disk.
        if (t == u.time_ns && member < members && !frees.count(u.id + ".0")) {
          full.insert(member);
          frees[u.id + ".0"] = member;
          disk = true;
          break;
        }
      }
      if (auto it = frees.find(u.id); it != frees.end()) {
        full.erase(it->second);
        frees.erase(it);
        disk = true;
      }
      const bool changed =
          ParseWorldState(u.what, members, &state, &plan.not_applied);
      state.disk_full = full;
      if (!changed && !disk) continue;
      steps.push_back({u.time_ns, k, u.id, u.what, state});
    }
  }
  std::stable_sort(
      steps.begin(), steps.end(), [](const Step& a, const Step& b) {
        return std::tie(a.at, a.scenario) < std::tie(b.at, b.scenario);
      });
  std::vector<WorldTarget> cur(list.size());
  for (const Step& s : steps) {
    cur[s.scenario] = s.state;
    WorldTarget u;
    for (const WorldTarget& t : cur) {
      u.down.insert(t.down.begin(), t.down.end());
      u.paused.insert(t.paused.begin(), t.paused.end());
      u.cuts.insert(t.cuts.begin(), t.cuts.end());
      u.disk_full.insert(t.disk_full.begin(), t.disk_full.end());
    }
    plan.events.push_back(
        {static_cast<int64_t>(static_cast<double>(s.at) * time_scale),
         absl::StrCat(list[s.scenario], " ", s.id), s.what, u});
  }
  return plan;
}

}  // namespace detcd::chaos
