// Scenario "crash-restart-loop": random nodes crash (losing unsynced data) and restart, over and over.
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
  AddCrashRestarts(ctx);
}

}  // namespace

Scenario CrashRestartLoopScenario() {
  return {"crash-restart-loop", "random nodes crash (losing unsynced data) and restart, over and over", Configure, Setup};
}

}  // namespace detcd::scenarios
