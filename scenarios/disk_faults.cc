// Scenario "disk-faults": EIO on writes and syncs, torn and lost unsynced writes at crashes.
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
  AddDiskFaults(ctx);
}

}  // namespace

Scenario DiskFaultsScenario() {
  return {"disk-faults", "EIO on writes and syncs, torn and lost unsynced writes at crashes", Configure, Setup};
}

}  // namespace detcd::scenarios
