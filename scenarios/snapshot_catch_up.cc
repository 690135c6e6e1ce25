// Scenario "snapshot-catch-up": small snapshot interval; nodes isolated for long catch up by snapshot.
#include "scenarios/scenario.h"

namespace detcd::scenarios {
namespace {

void Configure(harness::ClusterOptions& opts, env::Rng& rng,
               std::vector<std::string>* params) {
  opts.node.snapshot_count = 20 + rng.Uniform(80);
  opts.node.snapshot_catchup_entries = 5 + rng.Uniform(20);
  params->push_back(absl::StrCat("snapshot_count=", opts.node.snapshot_count));
  params->push_back(absl::StrCat("snapshot_catchup_entries=", opts.node.snapshot_catchup_entries));
}

void Setup(ScenarioContext& ctx) {
  AddIsolation(ctx);
  AddCrashRestarts(ctx);
}

}  // namespace

Scenario SnapshotCatchUpScenario() {
  return {"snapshot-catch-up", "small snapshot interval; nodes isolated for long catch up by snapshot", Configure, Setup};
}

}  // namespace detcd::scenarios
