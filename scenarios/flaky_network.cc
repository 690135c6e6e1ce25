// Scenario "flaky-network": message loss, duplication, reordering, latency spikes and clogged links.
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
  AddFlakyNetwork(ctx);
}

}  // namespace

Scenario FlakyNetworkScenario() {
  return {"flaky-network", "message loss, duplication, reordering, latency spikes and clogged links", Configure, Setup};
}

}  // namespace detcd::scenarios
