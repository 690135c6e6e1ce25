// Scenario "election-churn": the leader is cut off or crashes every few
// hundred milliseconds, soon after it was elected, with small append
// messages so logs diverge in many small steps. This is where the subtle
// election and commit rules (Raft §5.4.1, §5.4.2 / Figure 8, persisted
// votes) matter most.
#include "scenarios/scenario.h"

namespace detcd::scenarios {
namespace {

void Configure(harness::ClusterOptions& opts, env::Rng& rng,
               std::vector<std::string>* params) {
  opts.node.raft.max_size_per_msg = 32 + rng.Uniform(480);
  opts.node.raft.max_inflight_msgs = 1 + static_cast<int>(rng.Uniform(4));
  opts.crash_after_sync_probability = 0.002 + rng.UniformDouble() * 0.03;
  opts.crash_after_election_probability = rng.UniformDouble() * 0.5;
  params->push_back(absl::StrCat("crash_after_election=",
                                 opts.crash_after_election_probability));
  params->push_back(absl::StrCat("crash_after_sync=",
                                 opts.crash_after_sync_probability));
  params->push_back(
      absl::StrCat("raft.max_size_per_msg=", opts.node.raft.max_size_per_msg));
  params->push_back(absl::StrCat("raft.max_inflight_msgs=",
                                 opts.node.raft.max_inflight_msgs));
}

void Setup(ScenarioContext& ctx) {
  // Latencies near the election timeout, and late messages: candidates
  // split votes and vote requests arrive after a voter restarted.
  sim::NetworkOptions o = ctx.cluster().network().options();
  o.max_latency_ns = ctx.rng().Range(2, 60) * sim::kMillisecond;
  o.reorder = ctx.rng().UniformDouble() * 0.3;
  o.reorder_delay_ns = ctx.rng().Range(10, 200) * sim::kMillisecond;
  ctx.Param("net.max_latency_ms", o.max_latency_ns / sim::kMillisecond);
  ctx.Param("net.reorder", o.reorder);
  ctx.Param("net.reorder_delay_ms", o.reorder_delay_ns / sim::kMillisecond);
  ctx.cluster().network().set_options(o);
  AddElectionChurn(ctx);
}

}  // namespace

Scenario ElectionChurnScenario() {
  return {"election-churn",
          "the leader is cut off or crashes soon after each election, with "
          "small append messages",
          Configure, Setup};
}

}  // namespace detcd::scenarios
