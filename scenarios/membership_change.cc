// Scenario "membership-change": learners added and promoted, voters removed, wiped members replaced, leadership transferred.
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
  AddMembershipChanges(ctx);
  AddLeaderTransfers(ctx);
}

}  // namespace

Scenario MembershipChangeScenario() {
  return {"membership-change", "learners added and promoted, voters removed, wiped members replaced, leadership transferred", Configure, Setup};
}

}  // namespace detcd::scenarios
