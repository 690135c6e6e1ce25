// The lessor's hot paths (engine/lease/lessor.h) on the primary, with
// range(0) leases granted (60 s TTL unless said otherwise):
//
//   BM_LeaseRenew/leases       one keep-alive (Renew) per iteration, ids
//                              in an order unrelated to grant order, the
//                              clock advancing 1 us per renew: moving the
//                              lease in the expiry index
//   BM_LeaseExpiredPoll/leases Expired() when nothing has expired yet (TTL
//                              10^6 s): what the server's periodic lease
//                              check costs in the common case
//   BM_LeaseExpireAll/leases   every lease expired: Expired() called until
//                              it returns nothing (at most
//                              max_expired_per_call = 500 per call, as
//                              the server polls), items = leases named; the
//                              lessor is rebuilt with the timer paused
//   BM_LeasePromote/leases     a new primary's Promote (expiries, checkpoint
//                              schedule, the pile-up spread), items = leases
#include <benchmark/benchmark.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "engine/lease/lessor.h"

namespace detcd::lease {
namespace {

constexpr int64_t kTtlS = 60;

std::unique_ptr<Lessor> MakePrimary(int64_t n, int64_t ttl_s = kTtlS) {
  auto l = std::make_unique<Lessor>(LessorOptions{});
  for (int64_t id = 1; id <= n; ++id) {
    if (!l->Grant(id, ttl_s, 0).ok()) return nullptr;
  }
  l->Promote(/*now_ns=*/0, /*extend_ns=*/0);
  return l;
}

void BM_LeaseRenew(benchmark::State& state) {
  const int64_t n = state.range(0);
  auto l = MakePrimary(n);
  if (l == nullptr) {
    state.SkipWithError("grant failed");
    return;
  }
  int64_t now = 0;
  int64_t i = 0;
  for (auto _ : state) {
    now += 1000;
    const int64_t id = 1 + (i * 7919) % n;
    auto r = l->Renew(id, now);
    if (!r.ok()) state.SkipWithError("renew failed");
    benchmark::DoNotOptimize(r);
    ++i;
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_LeaseRenew)->Arg(1000)->Arg(100000);

void BM_LeaseExpiredPoll(benchmark::State& state) {
  // A TTL far beyond the run: the clock moves 1 us per poll, and a long
  // run (10^8 polls) must not reach it.
  auto l = MakePrimary(state.range(0), /*ttl_s=*/1'000'000);
  if (l == nullptr) {
    state.SkipWithError("grant failed");
    return;
  }
  int64_t now = 0;
  for (auto _ : state) {
    now += 1000;
    std::vector<int64_t> e = l->Expired(now);
    if (!e.empty()) state.SkipWithError("expired early");
    benchmark::DoNotOptimize(e);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_LeaseExpiredPoll)->Arg(1000)->Arg(100000);

void BM_LeaseExpireAll(benchmark::State& state) {
  const int64_t n = state.range(0);
  // Past every expiry: Promote spreads leases of one TTL to at most 3/4 of
  // kLeaseRevokeRate expiring a second.
  const int64_t after_ttl =
      (kTtlS + 2 + n / (static_cast<int64_t>(kLeaseRevokeRate) * 3 / 4)) *
      kNanosPerSecond;
  int64_t named = 0;
  for (auto _ : state) {
    state.PauseTiming();
    auto l = MakePrimary(n);
    if (l == nullptr) {
      state.SkipWithError("grant failed");
      break;
    }
    state.ResumeTiming();
    int64_t got = 0;
    for (;;) {
      std::vector<int64_t> e = l->Expired(after_ttl);
      if (e.empty()) break;
      got += static_cast<int64_t>(e.size());
    }
    state.PauseTiming();
    if (got != n) state.SkipWithError("not every lease expired");
    named += got;
    l.reset();  // freeing is not part of the measurement
    state.ResumeTiming();
  }
  state.SetItemsProcessed(named);
}
BENCHMARK(BM_LeaseExpireAll)
    ->Arg(1000)
    ->Arg(100000)
    ->Unit(benchmark::kMicrosecond);

// A new leader's Promote with n leases of one TTL (so that Promote's
// pile-up spread moves most of them): the engine thread's pause at a
// leader change. items = leases.
void BM_LeasePromote(benchmark::State& state) {
  const int64_t n = state.range(0);
  int64_t done = 0;
  for (auto _ : state) {
    state.PauseTiming();
    auto l = std::make_unique<Lessor>(LessorOptions{});
    for (int64_t id = 1; id <= n; ++id) {
      if (!l->Grant(id, kTtlS, 0).ok()) state.SkipWithError("grant failed");
    }
    state.ResumeTiming();
    l->Promote(/*now_ns=*/0, /*extend_ns=*/kNanosPerSecond);
    state.PauseTiming();
    done += n;
    l.reset();
    state.ResumeTiming();
  }
  state.SetItemsProcessed(done);
}
BENCHMARK(BM_LeasePromote)
    ->Arg(1000)
    ->Arg(100000)
    ->Arg(1000000)
    ->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace detcd::lease
