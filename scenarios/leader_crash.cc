// Scenario "leader-crash": the leader crashes every few seconds and restarts after a while.
#include "scenarios/scenario.h"

namespace detcd::scenarios {
namespace {

void Configure(harness::ClusterOptions& opts, env::Rng& rng,
               std::vector<std::string>* params) {
  (void)opts;
  (void)rng;
  (void)params;
}

void Setup(ScenarioContext& ctx) {
  AddLeaderCrashes(ctx);
}

}  // namespace

Scenario LeaderCrashScenario() {
  return {"leader-crash", "the leader crashes every few seconds and restarts after a while", Configure, Setup};
}

}  // namespace detcd::scenarios
