// MVCC store microbenchmarks, single-threaded: the apply path's write
// transactions (one Put per txn, events included, as the watch hub gets
// them), point and prefix reads, compaction, snapshot/restore.
//
// Targets (Release): BM_Put and BM_PutSameKeys >= 1,000,000 items/s,
// BM_PointRange >= 2,000,000 items/s. Random-order variants (keys that
// land anywhere in a store of 10^5..10^6 keys) are memory-latency bound:
// each dependent cache miss costs what the machine's DRAM latency is, so
// compare them across machines with care.
#include <benchmark/benchmark.h>
#include <malloc.h>

#include <algorithm>
#include <charconv>
#include <cstdint>
#include <memory>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

#include "engine/mvcc/kv_store.h"

namespace detcd::mvcc {
namespace {

// "key" + zero-padded decimal, 13 bytes (short enough to stay inline in
// std::string, as typical etcd keys in benchmarks are small).
class KeyMaker {
 public:
  std::string_view Make(uint64_t i) {
    std::fill(buf_ + 3, buf_ + kLen, '0');
    char tmp[20];
    auto [p, ec] = std::to_chars(tmp, tmp + sizeof(tmp), i);
    size_t n = static_cast<size_t>(p - tmp);
    std::copy(tmp, p, buf_ + kLen - n);
    return std::string_view(buf_, kLen);
  }

 private:
  static constexpr size_t kLen = 13;
  char buf_[kLen] = {'k', 'e', 'y'};
};

void PutOne(KvStore& s, std::string_view key, std::string_view value) {
  auto t = s.Write();
  t.Put(key, value, 0);
  auto evs = t.End();
  benchmark::DoNotOptimize(evs);
}

// Heap bytes in use (glibc), for memory-per-key figures.
int64_t HeapBytes() {
  struct mallinfo2 mi = mallinfo2();
  return static_cast<int64_t>(mi.uordblks + mi.hblkhd);
}

// A bijection on 32-bit numbers that scatters consecutive inputs, so that
// "distinct keys" arrive in random key order (as etcd's benchmark tool
// sends them), not appended at the end of the index.
uint64_t Scatter(uint64_t i) { return (i * 2654435761u) & 0xffffffffu; }

// One-put transactions, each on a new key (the store grows by one key per
// iteration); range(0) is the value size. heap_per_key is the heap the
// store holds per key (one revision each) as malloc counts it.
void PutDistinct(benchmark::State& state, bool random_order) {
  const int64_t heap0 = HeapBytes();
  auto s = std::make_unique<KvStore>();
  KeyMaker km;
  const std::string value(static_cast<size_t>(state.range(0)), 'v');
  uint64_t i = 0;
  for (auto _ : state) {
    PutOne(*s, km.Make(random_order ? Scatter(i) : i), value);
    ++i;
  }
  state.SetItemsProcessed(state.iterations());
  state.counters["keys"] = static_cast<double>(s->key_count());
  state.counters["heap_per_key"] =
      static_cast<double>(HeapBytes() - heap0) / static_cast<double>(i);
  state.counters["size_bytes_per_key"] =
      static_cast<double>(s->size_bytes()) / static_cast<double>(i);
}

// Keys in increasing order (etcd benchmark's --sequential-keys).
void BM_Put(benchmark::State& state) { PutDistinct(state, false); }
BENCHMARK(BM_Put)->Arg(16)->Arg(64);

// Keys in random order: every insert lands somewhere new in the ordered
// index, so on a large store this measures cache misses.
void BM_PutRandomKeys(benchmark::State& state) { PutDistinct(state, true); }
BENCHMARK(BM_PutRandomKeys)->Arg(16)->Arg(64);

// One-put transactions cycling over range(0) keys (history grows, no
// compaction), 32-byte values.
void BM_PutSameKeys(benchmark::State& state) {
  KvStore s;
  KeyMaker km;
  const std::string value(32, 'v');
  const uint64_t n = static_cast<uint64_t>(state.range(0));
  std::vector<std::string> keys;
  for (uint64_t k = 0; k < n; ++k) keys.emplace_back(km.Make(k));
  uint64_t i = 0;
  for (auto _ : state) {
    PutOne(s, keys[i], value);
    if (++i == n) i = 0;
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_PutSameKeys)->Arg(1)->Arg(1000);

// Range of one existing key in a store of range(0) keys, 32-byte values.
// range(1): see below.
// Keys are probed in an order unrelated to key order and insertion order,
// so a large store is read the way random client reads hit it.
void BM_PointRange(benchmark::State& state) {
  KvStore s;
  KeyMaker km;
  const std::string value(32, 'v');
  const uint64_t n = static_cast<uint64_t>(state.range(0));
  std::vector<std::string> keys;
  for (uint64_t k = 0; k < n; ++k) {
    keys.emplace_back(km.Make(Scatter(k)));
    PutOne(s, keys.back(), value);
  }
  // range(1) = 1: compacted at the latest revision first, as a long-running
  // server's store is (kept records then live outside the revision log).
  if (state.range(1) == 1 && !s.Compact(s.Rev()).ok()) {
    state.SkipWithError("compact failed");
  }
  // The probe keys, precomputed back to back in one buffer (all keys have
  // the same length) and read sequentially, so that fetching the next key
  // costs the benchmark loop nothing noticeable and what is measured is
  // the store's lookup.
  const size_t key_len = keys[0].size();
  std::string probes;
  probes.reserve(n * key_len);
  for (uint64_t k = 0; k < n; ++k) probes.append(keys[k * 7919 % n]);
  keys.clear();
  keys.shrink_to_fit();
  RangeOptions o;
  uint64_t i = 0;
  for (auto _ : state) {
    auto r =
        s.Range(std::string_view(probes).substr(i * key_len, key_len), {}, o);
    benchmark::DoNotOptimize(r);
    if (++i == n) i = 0;
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_PointRange)
    ->Args({1000, 0})
    ->Args({100000, 0})
    ->Args({100000, 1})
    ->Args({1000000, 0});

// A prefix range returning 100 keys out of 100,000.
void BM_RangePrefix100(benchmark::State& state) {
  KvStore s;
  KeyMaker km;
  const std::string value(32, 'v');
  constexpr uint64_t kKeys = 100000;
  for (uint64_t k = 0; k < kKeys; ++k) PutOne(s, km.Make(k), value);
  // key0000012300 .. key0000012399
  const std::string from(km.Make(12300));
  const std::string to(km.Make(12400));
  RangeOptions o;
  for (auto _ : state) {
    auto r = s.Range(from, to, o);
    if (!r.ok() || r->kvs.size() != 100) state.SkipWithError("bad range");
    benchmark::DoNotOptimize(r);
  }
  state.SetItemsProcessed(state.iterations() * 100);
}
BENCHMARK(BM_RangePrefix100);

// Compacting range(0) revisions (10 per key over range(0)/10 keys) up to
// the latest revision. items = revisions examined.
void BM_Compact(benchmark::State& state) {
  KeyMaker km;
  const std::string value(32, 'v');
  const uint64_t revs = static_cast<uint64_t>(state.range(0));
  const uint64_t keys = revs / 10;
  for (auto _ : state) {
    state.PauseTiming();
    auto s = std::make_unique<KvStore>();
    for (uint64_t i = 0; i < revs; ++i) PutOne(*s, km.Make(i % keys), value);
    state.ResumeTiming();
    if (!s->Compact(s->Rev()).ok()) state.SkipWithError("compact failed");
    state.PauseTiming();
    if (s->revision_count() != keys) state.SkipWithError("bad count");
    s.reset();  // freeing the store is not part of the measurement
    state.ResumeTiming();
  }
  state.SetItemsProcessed(state.iterations() * static_cast<int64_t>(revs));
}
BENCHMARK(BM_Compact)->Arg(100000)->Unit(benchmark::kMillisecond);

// Fills s with n keys (KeyMaker's, in order) of value_bytes-byte values.
void Fill(KvStore& s, uint64_t n, size_t value_bytes) {
  KeyMaker km;
  const std::string value(value_bytes, 'v');
  for (uint64_t k = 0; k < n; ++k) PutOne(s, km.Make(k), value);
}

// Snapshot of a store of range(0) keys with range(1)-byte values.
void BM_Snapshot(benchmark::State& state) {
  KvStore s;
  const uint64_t n = static_cast<uint64_t>(state.range(0));
  Fill(s, n, static_cast<size_t>(state.range(1)));
  size_t bytes = 0;
  for (auto _ : state) {
    std::string image = s.Snapshot();
    bytes = image.size();
    benchmark::DoNotOptimize(image);
  }
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(bytes));
  state.SetItemsProcessed(state.iterations() * static_cast<int64_t>(n));
  state.counters["image_bytes"] = static_cast<double>(bytes);
}
BENCHMARK(BM_Snapshot)
    ->Args({100000, 32})
    ->Args({100000, 256})
    ->Unit(benchmark::kMillisecond);

// The snapshot writer as a member runs it: 512 KiB steps into one reused
// buffer, over the history a random-key put load leaves (range(0) puts on
// range(0)/2 keys in scattered order, so half the records hold a replaced
// value and the walk in revision order jumps around the heap).
void BM_ImageSteps(benchmark::State& state) {
  KvStore s;
  const uint64_t n = static_cast<uint64_t>(state.range(0));
  KeyMaker km;
  const std::string value(static_cast<size_t>(state.range(1)), 'v');
  for (uint64_t i = 0; i < n; ++i) {
    PutOne(s, km.Make(Scatter(i % (n / 2))), value);
  }
  std::string buf;
  uint64_t bytes = 0;
  for (auto _ : state) {
    KvStore::ImageWriter w = s.BeginImage();
    bytes = w.size();
    for (;;) {
      buf.clear();
      absl::StatusOr<bool> done = w.Step(512 << 10, &buf);
      if (!done.ok()) {
        state.SkipWithError("step failed");
        break;
      }
      benchmark::DoNotOptimize(buf.data());
      if (*done) break;
    }
  }
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(bytes));
  state.SetItemsProcessed(state.iterations() * static_cast<int64_t>(n));
}
BENCHMARK(BM_ImageSteps)
    ->Args({400000, 256})
    ->Unit(benchmark::kMillisecond);

// Restore (decode + validate + rebuild) of the same image.
void BM_Restore(benchmark::State& state) {
  KvStore s;
  const uint64_t n = static_cast<uint64_t>(state.range(0));
  Fill(s, n, 32);
  const std::string image = s.Snapshot();
  KvStore t;
  for (auto _ : state) {
    if (!t.Restore(image).ok()) state.SkipWithError("restore failed");
  }
  state.SetBytesProcessed(state.iterations() *
                          static_cast<int64_t>(image.size()));
  state.SetItemsProcessed(state.iterations() * static_cast<int64_t>(n));
}
BENCHMARK(BM_Restore)->Arg(100000)->Unit(benchmark::kMillisecond);

// Memory per key as the real server holds it after bench/compare's and
// bench/scale's fill: range(0) keys of 8 bytes (decimal, zero-padded, as
// detcd-bench --key-size 8 makes them) with 256-byte values, written in
// transactions of 100 puts, no compaction. Reports the heap per key after
// the load (heap_per_key), after a Snapshot + Restore into a fresh store
// with the loaded one freed (restored_heap_per_key: what a restarted
// member holds), the image bytes per key and the restore time
// (restore_ms). One iteration; the load is not timed. range(1) = 1:
// compacted at the latest revision after the load, as a server that
// compacts (Kubernetes' API server does every five minutes) holds its
// keys: each key's record is then kept below the revision log.
void BM_HeapPerKeyServerLoad(benchmark::State& state) {
  const uint64_t n = static_cast<uint64_t>(state.range(0));
  const bool compacted = state.range(1) == 1;
  const std::string value(256, 'v');
  char key[8];
  auto make_key = [&key](uint64_t i) {
    for (int d = 7; d >= 0; --d, i /= 10)
      key[d] = static_cast<char>('0' + i % 10);
    return std::string_view(key, sizeof(key));
  };
  for (auto _ : state) {
    state.PauseTiming();
    const int64_t heap0 = HeapBytes();
    auto s = std::make_unique<KvStore>();
    for (uint64_t i = 0; i < n;) {
      auto t = s->Write();
      for (int j = 0; j < 100 && i < n; ++j, ++i) t.Put(make_key(i), value, 0);
      auto evs = t.End();
      benchmark::DoNotOptimize(evs);
    }
    if (compacted && !s->Compact(s->Rev()).ok()) {
      state.SkipWithError("compact failed");
    }
    const int64_t loaded = HeapBytes() - heap0;
    std::string image = s->Snapshot();
    s.reset();
    auto t = std::make_unique<KvStore>();
    state.ResumeTiming();
    if (!t->Restore(image).ok()) state.SkipWithError("restore failed");
    state.PauseTiming();
    const size_t image_bytes = image.size();
    image.clear();
    image.shrink_to_fit();
    const int64_t restored = HeapBytes() - heap0;
    if (t->key_count() != n) state.SkipWithError("bad key count");
    state.counters["heap_per_key"] =
        static_cast<double>(loaded) / static_cast<double>(n);
    state.counters["restored_heap_per_key"] =
        static_cast<double>(restored) / static_cast<double>(n);
    state.counters["image_bytes_per_key"] =
        static_cast<double>(image_bytes) / static_cast<double>(n);
    t.reset();
    state.ResumeTiming();
  }
}
BENCHMARK(BM_HeapPerKeyServerLoad)
    ->Args({100000, 0})
    ->Args({1000000, 0})
    ->Args({1000000, 1})
    ->Iterations(1)
    ->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace detcd::mvcc
