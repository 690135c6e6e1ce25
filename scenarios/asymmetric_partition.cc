// Scenario "asymmetric-partition": one-way link cuts: a node hears but is not heard (or the reverse).
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
  AddPartitions(ctx, /*asymmetric=*/true);
}

}  // namespace

Scenario AsymmetricPartitionScenario() {
  return {"asymmetric-partition", "one-way link cuts: a node hears but is not heard (or the reverse)", Configure, Setup};
}

}  // namespace detcd::scenarios
