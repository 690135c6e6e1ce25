// Scenario "partition-heal": random symmetric partitions (minority | majority) that heal.
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
  AddPartitions(ctx, /*asymmetric=*/false);
}

}  // namespace

Scenario PartitionHealScenario() {
  return {"partition-heal", "random symmetric partitions (minority | majority) that heal", Configure, Setup};
}

}  // namespace detcd::scenarios
