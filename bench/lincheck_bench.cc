// Linearizability checker throughput on generated histories: N ops from 50
// concurrent clients over 20 keys, 5% unknown outcomes, the generator's mix
// of puts, deletes, txns with compares, and linearizable and serializable
// ranges. The history is generated outside the timed loop.
#include <cstdint>

#include "benchmark/benchmark.h"
#include "harness/history_gen.h"
#include "harness/linearizability.h"

namespace detcd::harness {
namespace {

void RunCheck(benchmark::State& state, int ops) {
  const History h = GenerateHistory(/*seed=*/42, ops, /*clients=*/50,
                                    /*keys=*/20, /*unknown_fraction=*/0.05);
  uint64_t states = 0;
  for (auto _ : state) {
    CheckResult r = CheckLinearizable(h);
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

void BM_Check1kOps50Clients(benchmark::State& state) { RunCheck(state, 1000); }
void BM_Check10kOps50Clients(benchmark::State& state) {
  RunCheck(state, 10'000);
}
void BM_Check100kOps50Clients(benchmark::State& state) {
  RunCheck(state, 100'000);
}

BENCHMARK(BM_Check1kOps50Clients)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Check10kOps50Clients)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Check100kOps50Clients)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace detcd::harness
