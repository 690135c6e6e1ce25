// Watch fan-out (engine/mvcc/watchable_store.h), single-threaded: one Put
// (256-byte value) committed to the store and handed to WatchHub::Notify,
// which delivers it to every synced watcher that matches.
//
//   BM_WatchFanOut/watchers/proto/ref
//                                    range(0) watchers on the put key,
//                                    1000 per stream; proto = 1: each
//                                    delivered response is also converted
//                                    to an etcdserverpb::WatchResponse,
//                                    proto = 0: the sink only counts;
//                                    ref = 0: a plain Sink (each watcher
//                                    gets its own copy of the events, as
//                                    the simulator's clients), ref = 1: a
//                                    RefSink, as the real server's streams
//                                    (the events shared; with proto, one
//                                    reused message refilled per response,
//                                    as shim/services.cc does)
//   BM_WatchNotifyMiss/watchers      range(0) watchers on other keys, none
//                                    matching: the cost a put pays for the
//                                    watchers it does not concern (index
//                                    lookup)
//   BM_WatchFanOutPrefix/watchers    range(0) prefix watchers covering the
//                                    put key
//   BM_WatchFanOutWire/watchers      as BM_WatchFanOut/proto:1/ref:1 with
//                                    the real server's wire path since
//                                    8db0c38 (shim/watch_wire.h): each
//                                    event encoded once per hub call into
//                                    a shared slice; per response a push
//                                    into a WatchSendQueue and the
//                                    ByteBuffer gRPC would write (prefix +
//                                    the shared slices), then popped
// Per iteration the store's put is included (about 1 us, see
// BM_WatchNotifyMiss/1); deliveries_per_put is the number of (watcher,
// event) deliveries, items = deliveries (puts for BM_WatchNotifyMiss).
#include <benchmark/benchmark.h>

#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/str_format.h"
#include "engine/mvcc/kv_store.h"
#include "engine/mvcc/watchable_store.h"
#include "engine/server/etcd_kv.h"
#include "etcdserverpb/rpc.pb.h"
#include "shim/watch_wire.h"

namespace detcd::mvcc {
namespace {

constexpr int kWatchersPerStream = 1000;

struct Rig {
  KvStore store;
  WatchHub hub{&store, WatchLimits{}};
  int64_t delivered = 0;
  bool to_proto = false;
  bool by_ref = false;
  bool wire = false;
  etcdserverpb::WatchResponse reused;
  shim::WatchEventCache cache;
  shim::WatchSendQueue queue{shim::WatchSendQueue::Limits{}};
  grpc::ByteBuffer written;

  // n watchers, each created by `make(i)`, spread over streams.
  template <typename Make>
  void AddWatchers(int n, Make make) {
    WatchHub::StreamId s = 0;
    for (int i = 0; i < n; ++i) {
      if (i % kWatchersPerStream == 0 && by_ref) {
        s = hub.OpenRefStream(
            [this](const WatchResponse& r, const WatchEventsRef& evs) {
              delivered += static_cast<int64_t>(evs.events.size());
              if (wire && !evs.events.empty()) {
                Wire(r, evs);
              } else if (to_proto && !evs.events.empty()) {
                Refill(r, evs);
              }
              return true;
            });
      } else if (i % kWatchersPerStream == 0) {
        s = hub.OpenStream([this](const WatchResponse& r) {
          delivered += static_cast<int64_t>(r.events.size());
          if (to_proto && !r.events.empty()) {
            etcdserverpb::WatchResponse out;
            out.set_watch_id(r.watch_id);
            out.mutable_header()->set_revision(r.revision);
            for (const Event& e : r.events) {
              server::ToProto(e, out.add_events());
            }
            benchmark::DoNotOptimize(out);
          }
          return true;
        });
      }
      hub.Create(s, make(i));
    }
    hub.SyncUnsynced();
    delivered = 0;
  }

  // What the server's sink does per response: overwrite every field of a
  // reused message from the shared events.
  void Refill(const WatchResponse& r, const WatchEventsRef& evs) {
    reused.set_watch_id(r.watch_id);
    reused.mutable_header()->set_revision(r.revision);
    auto* pevs = reused.mutable_events();
    const int n = static_cast<int>(evs.events.size());
    if (pevs->size() > n) pevs->DeleteSubrange(n, pevs->size() - n);
    for (int i = 0; i < n; ++i) {
      mvccpb::Event* pe = i < pevs->size() ? pevs->Mutable(i) : pevs->Add();
      const Event& e = *evs.events[static_cast<size_t>(i)];
      pe->set_type(e.type == Event::kDelete ? mvccpb::Event::DELETE
                                            : mvccpb::Event::PUT);
      server::ToProto(e.kv, pe->mutable_kv());
      if (evs.with_prev_kv && e.has_prev_kv) {
        server::ToProto(e.prev_kv, pe->mutable_prev_kv());
      } else if (pe->has_prev_kv()) {
        pe->clear_prev_kv();
      }
    }
    benchmark::DoNotOptimize(reused.ByteSizeLong());
  }

  // What the server's sink does per response since 8db0c38.
  void Wire(const WatchResponse& r, const WatchEventsRef& evs) {
    std::vector<grpc::Slice> slices;
    slices.reserve(evs.events.size());
    size_t bytes = 0;
    for (const Event* e : evs.events) {
      const grpc::Slice& s = cache.Get(e, evs.with_prev_kv, evs.call);
      bytes += s.size();
      slices.push_back(s);
    }
    queue.Push(shim::WireHeader{1, 2, r.revision, 3}, r, std::move(slices),
               bytes);
    queue.StartFront(&written);
    benchmark::DoNotOptimize(written.Length());
    queue.PopFront();
  }

  void PutAndNotify(const std::string& key, const std::string& value) {
    auto t = store.Write();
    t.Put(key, value, 0);
    std::vector<Event> evs = t.End();
    hub.Notify(evs);
  }
};

// Runs puts of `key`; compacts the history every 64k puts (timer paused)
// so that memory stays bounded on long runs.
void RunPuts(benchmark::State& state, Rig& rig, const std::string& key) {
  const std::string value(256, 'v');
  int64_t since = 0;
  for (auto _ : state) {
    rig.PutAndNotify(key, value);
    if (++since == 65536) {
      state.PauseTiming();
      since = 0;
      if (!rig.store.Compact(rig.store.Rev()).ok()) {
        state.SkipWithError("compact failed");
      }
      state.ResumeTiming();
    }
  }
  state.SetItemsProcessed(rig.delivered);
  state.counters["deliveries_per_put"] =
      static_cast<double>(rig.delivered) /
      static_cast<double>(state.iterations());
}

// n watchers on "watched/key", then puts to it.
void FanOutToOneKey(benchmark::State& state, Rig& rig) {
  const int n = static_cast<int>(state.range(0));
  rig.AddWatchers(n, [](int) {
    WatchCreate c;
    c.key = "watched/key";
    return c;
  });
  RunPuts(state, rig, "watched/key");
}

void BM_WatchFanOut(benchmark::State& state) {
  Rig rig;
  rig.to_proto = state.range(1) != 0;
  rig.by_ref = state.range(2) != 0;
  FanOutToOneKey(state, rig);
}
BENCHMARK(BM_WatchFanOut)
    ->ArgsProduct({{1, 10, 100, 1000, 10000}, {0, 1}, {0, 1}})
    ->ArgNames({"watchers", "proto", "ref"});

void BM_WatchFanOutWire(benchmark::State& state) {
  Rig rig;
  rig.by_ref = true;
  rig.wire = true;
  FanOutToOneKey(state, rig);
}
BENCHMARK(BM_WatchFanOutWire)
    ->Arg(1)
    ->Arg(10)
    ->Arg(100)
    ->Arg(1000)
    ->Arg(10000)
    ->ArgName("watchers");

void BM_WatchNotifyMiss(benchmark::State& state) {
  Rig rig;
  const int n = static_cast<int>(state.range(0));
  rig.AddWatchers(n, [](int i) {
    WatchCreate c;
    c.key = absl::StrFormat("other/%08d", i);
    return c;
  });
  RunPuts(state, rig, "watched/key");
  if (rig.delivered != 0) state.SkipWithError("unexpected delivery");
  state.SetItemsProcessed(state.iterations());  // puts: nothing delivered
}
BENCHMARK(BM_WatchNotifyMiss)->Arg(1)->Arg(1000)->Arg(100000);

void BM_WatchFanOutPrefix(benchmark::State& state) {
  Rig rig;
  const int n = static_cast<int>(state.range(0));
  rig.AddWatchers(n, [](int i) {
    WatchCreate c;
    // Distinct prefixes of "watched/key" would be too few; distinct
    // ranges that all cover it: [watched/, watched/~<i>).
    c.key = "watched/";
    c.range_end = absl::StrFormat("watched/~%08d", i);
    return c;
  });
  RunPuts(state, rig, "watched/key");
}
BENCHMARK(BM_WatchFanOutPrefix)->Arg(10)->Arg(1000);

}  // namespace
}  // namespace detcd::mvcc
