// Scenario "disk-full": a node's disk fills up (ENOSPC) in the middle of writes, then frees.
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
  AddDiskFull(ctx);
}

}  // namespace

Scenario DiskFullScenario() {
  return {"disk-full", "a node's disk fills up (ENOSPC) in the middle of writes, then frees", Configure, Setup};
}

}  // namespace detcd::scenarios
