// Scenario "recipes": the client library's recipes (locks with fencing,
// elections, a queue, a service registry; the step machines of
// client/include/detcd/recipe_core.h run by harness/recipe_clients.h) next
// to the usual workload, under member pauses or partitions and a random mix
// of other faults, while the recipe clients themselves stop now and then
// for longer than their leases' TTL (a GC pause). The recipe checkers
// (harness/recipe_checker.h) then hold the committed history to mutual
// exclusion of fenced writes, one leader per term, queue items delivered
// once and registry entries gone after their lease.
//
// The planted bug "unfenced-lock" drops the fence from the lock holders'
// writes: a holder that paused past its TTL writes after the lock moved on
// (what Jepsen showed of etcd's locks used without fencing), and the lock
// checker reports it.
#include <memory>

#include "engine/util/planted.h"
#include "harness/recipe_clients.h"
#include "scenarios/scenario.h"

namespace detcd::scenarios {
namespace {

void Setup(ScenarioContext& ctx) {
  struct Fault {
    const char* name;
    void (*add)(ScenarioContext&);
  };
  // Pauses or partitions always (leases expire behind a holder's back);
  // the rest as the swarm picks them.
  static const Fault kAlways[] = {
      {"pause", AddPauses},
      {"partition", [](ScenarioContext& c) { AddPartitions(c, false); }},
  };
  static const Fault kFaults[] = {
      {"leader-crash", AddLeaderCrashes},
      {"one-way", [](ScenarioContext& c) { AddPartitions(c, true); }},
      {"flaky-network", AddFlakyNetwork},
      {"crash-restart", AddCrashRestarts},
      {"isolation", AddIsolation},
  };
  const Fault& first = kAlways[ctx.rng().Uniform(2)];
  first.add(ctx);
  std::string chosen = first.name;
  for (const Fault& f : kFaults) {
    if (!ctx.rng().Chance(0.25)) continue;
    f.add(ctx);
    absl::StrAppend(&chosen, ",", f.name);
  }
  ctx.Param("recipes.faults", chosen);

  // The recipe clients write keys the KV workload never reads.
  ctx.set_external_writes();
  harness::RecipeWorkloadOptions o;
  o.stop_ns = ctx.fault_end_ns();
  o.unfenced =
      ctx.cluster().options().server.bugs.on(planted::Bug::kUnfencedLock);
  auto w = std::make_shared<harness::RecipeWorkload>(
      &ctx.cluster(), ctx.cluster().DeriveRng("recipes"), o);
  w->Start();
  ctx.AddFinalCheck([w](std::vector<std::string>* failures,
                        std::set<std::string>* caught_by,
                        std::map<std::string, uint64_t>* coverage) {
    std::vector<std::string> v;
    w->Check(&v, coverage);
    if (!v.empty()) {
      caught_by->insert(
          std::string(planted::CatcherName(planted::Catcher::kRecipe)));
    }
    for (std::string& s : v) failures->push_back(std::move(s));
  });
}

}  // namespace

Scenario RecipesScenario() {
  return {"recipes",
          "lock (fenced writes), election, queue and registry clients run "
          "the client library's recipes under pauses, partitions and more, "
          "pausing themselves past their leases' TTL",
          nullptr, Setup};
}

}  // namespace detcd::scenarios
