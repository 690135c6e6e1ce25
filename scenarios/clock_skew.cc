// Scenario "clock-skew": per-node clock skew, drift (tick rates differ) and forward jumps.
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
  AddClockSkew(ctx);
}

}  // namespace

Scenario ClockSkewScenario() {
  return {"clock-skew", "per-node clock skew, drift (tick rates differ) and forward jumps", Configure, Setup};
}

}  // namespace detcd::scenarios
