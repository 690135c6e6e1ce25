// Scenario "steady": no faults: the baseline every other scenario is compared with.
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
  (void)ctx;
}

}  // namespace

Scenario SteadyScenario() {
  return {"steady", "no faults: the baseline every other scenario is compared with", Configure, Setup};
}

}  // namespace detcd::scenarios
