// etcd's KV requests applied to the MVCC store (engine/server/etcd_kv.h),
// single-threaded: what the engine thread spends per Put / Range / Txn
// once the request is committed (writes) or served (reads), protobuf
// response included. mvcc_bench.cc measures the store beneath it.
//
//   BM_ApplyPut         Put of a 256-byte value, keys cycling over
//                       range(0) keys (one WriteTxn per request, its events
//                       collected as for the watch hub)
//   BM_ApplyRange       point Range of an existing key in a store of
//                       range(0) keys (256-byte values), keys probed in an
//                       order unrelated to key order
//   BM_ApplyRangePrefix a prefix Range returning 100 keys
//   BM_ApplyRangeTopByCreate  a lock waiter's range: range(0) keys sorted
//                       by create revision, filtered, limit 1
//   BM_ApplyTxnCas      Txn: compare mod_revision(k) == what the caller
//                       last saw, then Put k, else Range k (the
//                       compare-and-swap every lock and STM does); always
//                       succeeds here
//   BM_ApplyTxnPut      Txn with no compares and one Put (etcd benchmark's
//                       txn-put)
//   BM_ApplyReadOnlyTxn Txn of two point Ranges (served without a WriteTxn)
#include <benchmark/benchmark.h>

#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/str_format.h"
#include "engine/mvcc/kv_store.h"
#include "engine/server/etcd_kv.h"
#include "etcdserverpb/rpc.pb.h"

namespace detcd::server {
namespace {

namespace pb = etcdserverpb;

std::string Key(uint64_t i) { return absl::StrFormat("key%010d", i); }

// Scatters consecutive numbers over [0, n) (n a power of two or not: a
// multiplicative step coprime with common sizes).
uint64_t Probe(uint64_t i, uint64_t n) { return i * 7919 % n; }

void Fill(mvcc::KvStore& s, uint64_t n, const std::string& value) {
  for (uint64_t k = 0; k < n; ++k) {
    auto t = s.Write();
    t.Put(Key(k), value, 0);
    auto evs = t.End();
    benchmark::DoNotOptimize(evs);
  }
}

void BM_ApplyPut(benchmark::State& state) {
  mvcc::KvStore s;
  const uint64_t n = static_cast<uint64_t>(state.range(0));
  std::vector<pb::PutRequest> reqs(n);
  for (uint64_t k = 0; k < n; ++k) {
    reqs[k].set_key(Key(k));
    reqs[k].set_value(std::string(256, 'v'));
  }
  uint64_t i = 0;
  for (auto _ : state) {
    auto t = s.Write();
    auto r = ApplyPut(t, nullptr, reqs[i]);
    if (!r.ok()) state.SkipWithError("put failed");
    auto evs = t.End();
    benchmark::DoNotOptimize(evs);
    benchmark::DoNotOptimize(r);
    if (++i == n) i = 0;
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_ApplyPut)->Arg(1000)->Arg(100000);

void BM_ApplyRange(benchmark::State& state) {
  mvcc::KvStore s;
  const uint64_t n = static_cast<uint64_t>(state.range(0));
  Fill(s, n, std::string(256, 'v'));
  std::vector<pb::RangeRequest> reqs(n);
  for (uint64_t k = 0; k < n; ++k) reqs[k].set_key(Key(Probe(k, n)));
  uint64_t i = 0;
  for (auto _ : state) {
    auto r = ApplyRange(s, reqs[i]);
    if (!r.ok() || r->kvs_size() != 1) state.SkipWithError("bad range");
    benchmark::DoNotOptimize(r);
    if (++i == n) i = 0;
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_ApplyRange)->Arg(1000)->Arg(100000);

void BM_ApplyRangePrefix(benchmark::State& state) {
  mvcc::KvStore s;
  Fill(s, 10000, std::string(256, 'v'));
  pb::RangeRequest req;
  req.set_key(Key(1200));  // key0000001200 .. key0000001299
  req.set_range_end(Key(1300));
  for (auto _ : state) {
    auto r = ApplyRange(s, req);
    if (!r.ok() || r->kvs_size() != 100) state.SkipWithError("bad range");
    benchmark::DoNotOptimize(r);
  }
  state.SetItemsProcessed(state.iterations() * 100);
}
BENCHMARK(BM_ApplyRangePrefix);

// A lock waiter's read (clientv3's Mutex, detcd's LockSteps): the newest
// key under the prefix created before its own, by a range of all range(0)
// keys sorted by create revision, filtered by max_create_revision,
// limit 1.
void BM_ApplyRangeTopByCreate(benchmark::State& state) {
  const int64_t n = state.range(0);
  mvcc::KvStore s;
  Fill(s, static_cast<uint64_t>(n), std::string(256, 'v'));
  pb::RangeRequest req;
  req.set_key("key");
  req.set_range_end("kez");
  req.set_sort_order(pb::RangeRequest::DESCEND);
  req.set_sort_target(pb::RangeRequest::CREATE);
  req.set_limit(1);
  req.set_max_create_revision(s.Rev() / 2);
  for (auto _ : state) {
    auto r = ApplyRange(s, req);
    if (!r.ok() || r->kvs_size() != 1) state.SkipWithError("bad range");
    benchmark::DoNotOptimize(r);
  }
  state.SetItemsProcessed(state.iterations() * n);
}
BENCHMARK(BM_ApplyRangeTopByCreate)->Arg(1000)->Arg(100000);

void BM_ApplyTxnCas(benchmark::State& state) {
  mvcc::KvStore s;
  constexpr uint64_t kKeys = 1000;
  Fill(s, kKeys, std::string(256, 'v'));
  std::vector<pb::TxnRequest> reqs(kKeys);
  for (uint64_t k = 0; k < kKeys; ++k) {
    pb::TxnRequest& t = reqs[k];
    pb::Compare* c = t.add_compare();
    c->set_key(Key(k));
    c->set_target(pb::Compare::MOD);
    c->set_result(pb::Compare::EQUAL);
    pb::RangeRequest get;
    get.set_key(Key(k));
    auto cur = ApplyRange(s, get);
    if (!cur.ok() || cur->kvs_size() != 1) {
      state.SkipWithError("setup failed");
      return;
    }
    c->set_mod_revision(cur->kvs(0).mod_revision());
    pb::PutRequest* p = t.add_success()->mutable_request_put();
    p->set_key(Key(k));
    p->set_value(std::string(256, 'w'));
    t.add_failure()->mutable_request_range()->set_key(Key(k));
  }
  uint64_t i = 0;
  int64_t failed = 0;
  for (auto _ : state) {
    pb::TxnRequest& req = reqs[i];
    auto t = s.Write();
    auto r = ApplyTxn(t, nullptr, req);
    auto evs = t.End();
    if (!r.ok()) {
      state.SkipWithError("txn failed");
      break;
    }
    if (!r->succeeded()) ++failed;
    // The next compare expects this write's revision, as a client doing
    // compare-and-swap in a loop would.
    req.mutable_compare(0)->set_mod_revision(r->header().revision());
    benchmark::DoNotOptimize(evs);
    if (++i == kKeys) i = 0;
  }
  state.counters["compare_failed"] = static_cast<double>(failed);
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_ApplyTxnCas);

void BM_ApplyTxnPut(benchmark::State& state) {
  mvcc::KvStore s;
  constexpr uint64_t kKeys = 1000;
  std::vector<pb::TxnRequest> reqs(kKeys);
  for (uint64_t k = 0; k < kKeys; ++k) {
    pb::PutRequest* p = reqs[k].add_success()->mutable_request_put();
    p->set_key(Key(k));
    p->set_value(std::string(256, 'v'));
  }
  uint64_t i = 0;
  for (auto _ : state) {
    auto t = s.Write();
    auto r = ApplyTxn(t, nullptr, reqs[i]);
    auto evs = t.End();
    if (!r.ok()) state.SkipWithError("txn failed");
    benchmark::DoNotOptimize(evs);
    benchmark::DoNotOptimize(r);
    if (++i == kKeys) i = 0;
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_ApplyTxnPut);

void BM_ApplyReadOnlyTxn(benchmark::State& state) {
  mvcc::KvStore s;
  constexpr uint64_t kKeys = 1000;
  Fill(s, kKeys, std::string(256, 'v'));
  std::vector<pb::TxnRequest> reqs(kKeys);
  for (uint64_t k = 0; k < kKeys; ++k) {
    reqs[k].add_success()->mutable_request_range()->set_key(Key(k));
    reqs[k].add_success()->mutable_request_range()->set_key(
        Key(Probe(k, kKeys)));
  }
  uint64_t i = 0;
  for (auto _ : state) {
    auto r = ApplyReadOnlyTxn(s, reqs[i]);
    if (!r.ok()) state.SkipWithError("txn failed");
    benchmark::DoNotOptimize(r);
    if (++i == kKeys) i = 0;
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_ApplyReadOnlyTxn);

}  // namespace
}  // namespace detcd::server
