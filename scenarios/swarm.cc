// Scenario "swarm": every seed picks its own random mix of faults
// (swarm testing: a run with fewer fault kinds explores each one deeper).
#include "scenarios/scenario.h"

namespace detcd::scenarios {
namespace {

void Configure(harness::ClusterOptions& opts, env::Rng& rng,
               std::vector<std::string>* params) {
  if (rng.Chance(0.5)) {
    opts.node.snapshot_count = 20 + rng.Uniform(200);
    opts.node.snapshot_catchup_entries = 5 + rng.Uniform(50);
    params->push_back(absl::StrCat("snapshot_count=", opts.node.snapshot_count));
  }
  if (rng.Chance(0.5)) {
    // Ranges read a few keys at a time, their pieces ticks apart, with
    // writes and compactions between them (the real server reads 10000
    // keys a piece, which these runs' key spaces never reach).
    opts.server.range_step_keys = 1 + rng.Uniform(4);
    params->push_back(
        absl::StrCat("range_step_keys=", opts.server.range_step_keys));
  }
  if (rng.Chance(0.5)) {
    // Snapshot images, a follower's and the automatic ones, built over
    // many steps (these runs' images are a few KiB; the real server's
    // 512 KiB steps would build them in one).
    opts.node.snapshot_step_bytes = size_t{128} << rng.Uniform(4);
    params->push_back(
        absl::StrCat("snapshot_step_bytes=", opts.node.snapshot_step_bytes));
  }
}

void Setup(ScenarioContext& ctx) {
  struct Fault {
    const char* name;
    void (*add)(ScenarioContext&);
  };
  static const Fault kFaults[] = {
      {"leader-crash", AddLeaderCrashes},
      {"partition", [](ScenarioContext& c) { AddPartitions(c, false); }},
      {"one-way", [](ScenarioContext& c) { AddPartitions(c, true); }},
      {"flaky-network", AddFlakyNetwork},
      {"crash-restart", AddCrashRestarts},
      {"disk-faults", AddDiskFaults},
      {"disk-full", AddDiskFull},
      {"clock-skew", AddClockSkew},
      {"isolation", AddIsolation},
      {"membership", AddMembershipChanges},
      {"transfer", AddLeaderTransfers},
      {"election-churn", AddElectionChurn},
      {"pause", AddPauses},
  };
  std::string chosen;
  for (const Fault& f : kFaults) {
    if (!ctx.rng().Chance(0.4)) continue;
    f.add(ctx);
    absl::StrAppend(&chosen, chosen.empty() ? "" : ",", f.name);
  }
  ctx.Param("swarm", chosen.empty() ? "none" : chosen);
}

}  // namespace

Scenario SwarmScenario() {
  return {"swarm", "a random mix of faults chosen per seed", Configure, Setup};
}

}  // namespace detcd::scenarios
