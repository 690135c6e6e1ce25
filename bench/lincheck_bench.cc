// Linearizability checker throughput on generated histories (the
// generator's mix of puts, deletes, txns with compares, and linearizable
// and serializable ranges over 20 keys). The history is generated outside
// the timed loop.
//
// BM_Check*Ops50Clients: 5% unknown outcomes, the lead's usual shape.
// BM_CheckHard100kOps/clients/unknown%/seed: 100,000 ops from 50 or 200
// clients with 15% or 20% unknown outcomes, generator seeds 1..5, which hit
// the 50M-state limit before the pruning of harness/lincheck/facts.cc
// (symmetry classes, pins, servable gaps, conflict nogoods) and took up to
// 34 s of CPU (200 clients, 20%, seeds 2 and 4) before the learned nogoods
// of search.cc; each must be decided within 10 s of CPU.
// BM_CheckHard100kOpsExternalWrites: the same, with external writes
// allowed. 200 clients, 20%, seeds 1..5: 0.40-1.01 s of CPU and 129k-538k
// states while learned nogoods were off with external writes, 0.40-0.49 s
// and 106k-145k states since (2026-12-07).
#include <cstdint>

#include "benchmark/benchmark.h"
#include "harness/history_gen.h"
#include "harness/linearizability.h"

namespace detcd::harness {
namespace {

void RunCheck(benchmark::State& state, uint64_t seed, int ops, int clients,
              double unknown, bool external_writes = false) {
  const History h = GenerateHistory(seed, ops, clients, /*keys=*/20, unknown);
  CheckOptions o;
  o.external_writes = external_writes;
  uint64_t states = 0;
  for (auto _ : state) {
    CheckResult r = CheckLinearizable(h, o);
    if (!r.ok || r.inconclusive) {
      state.SkipWithError("generated history was not accepted");
      return;
    }
    states = r.states_explored;
    benchmark::DoNotOptimize(r);
  }
  state.counters["ops"] = ops;
  state.counters["states"] = static_cast<double>(states);
  state.SetItemsProcessed(state.iterations() * ops);
}

void BM_Check1kOps50Clients(benchmark::State& state) {
  RunCheck(state, 42, 1000, 50, 0.05);
}
void BM_Check10kOps50Clients(benchmark::State& state) {
  RunCheck(state, 42, 10'000, 50, 0.05);
}
void BM_Check100kOps50Clients(benchmark::State& state) {
  RunCheck(state, 42, 100'000, 50, 0.05);
}
// Args: clients, unknown outcomes in percent, generator seed.
void CheckHard(benchmark::State& state, bool external_writes) {
  RunCheck(state, static_cast<uint64_t>(state.range(2)), 100'000,
           static_cast<int>(state.range(0)),
           static_cast<double>(state.range(1)) / 100.0, external_writes);
}
void BM_CheckHard100kOps(benchmark::State& state) { CheckHard(state, false); }
// The same histories, checked as the recipes and auth scenarios check
// theirs: any revision may also be a write outside the history (a lease
// expiry, another client's keys), which widens every gap's choices.
void BM_CheckHard100kOpsExternalWrites(benchmark::State& state) {
  CheckHard(state, true);
}
void HardArgs(benchmark::internal::Benchmark* b) {
  b->ArgsProduct({{50, 200}, {15, 20}, {1, 2, 3, 4, 5}})
      ->ArgNames({"clients", "unknown%", "seed"})
      ->Iterations(1)
      ->Unit(benchmark::kSecond)
      ->MeasureProcessCPUTime();
}

BENCHMARK(BM_Check1kOps50Clients)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Check10kOps50Clients)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Check100kOps50Clients)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_CheckHard100kOps)->Apply(HardArgs);
BENCHMARK(BM_CheckHard100kOpsExternalWrites)->Apply(HardArgs);

}  // namespace
}  // namespace detcd::harness
