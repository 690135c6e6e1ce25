// KV basics: put and get, a compare-and-swap with the Txn builder, many
// asynchronous puts in flight at once, and a key that lives as long as a
// lease kept alive in the background.
#include <cstdio>
#include <future>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "detcd/kv.h"
#include "detcd/lease.h"
#include "examples/example_util.h"

using namespace detcd::client;  // NOLINT: example brevity
using detcd::examples::Check;
using detcd::examples::Must;

int main(int argc, char** argv) {
  auto c = detcd::examples::Connect(argc, argv);
  const std::string p = "/examples/kv_txn/";
  detcd::examples::Clean(c.get(), p);

  auto put = Must(c->Put(p + "counter", "0"), "put");
  std::printf("put counter=0 at revision %lld\n",
              static_cast<long long>(put.header().revision()));

  // Compare-and-swap: increment only if nobody changed it since we read.
  for (int i = 0; i < 3; ++i) {
    auto cur = Must(c->Get(p + "counter"), "get");
    const auto& kv = cur.kvs(0);
    int n = std::stoi(kv.value());
    auto r = Must(Txn(c.get())
                      .If(Compare(cmp::ModRevision(p + "counter"),
                                  CmpOp::kEqual, kv.mod_revision()))
                      .Then(OpPut(p + "counter", std::to_string(n + 1)))
                      .Else(OpGet(p + "counter"))
                      .Commit(),
                  "txn");
    std::printf("cas %d -> %d: %s\n", n, n + 1,
                r.succeeded() ? "swapped" : "lost the race");
  }
  Check(Must(c->Get(p + "counter"), "get").kvs(0).value() == "3",
        "counter is 3");

  // Asynchronous calls: 20 puts in flight, then wait for all.
  std::vector<std::future<absl::StatusOr<etcdserverpb::PutResponse>>> fs;
  for (int i = 0; i < 20; ++i) {
    fs.push_back(c->PutAsync(absl::StrCat(p, "async/", i), "x"));
  }
  for (auto& f : fs) Check(f.get().status(), "async put");
  GetOptions g;
  g.prefix = true;
  g.count_only = true;
  int64_t n = Must(c->Get(p + "async/", g), "count").count();
  std::printf("async puts stored: %lld\n", static_cast<long long>(n));
  Check(n == 20, "20 async keys");

  // A key tied to a lease kept alive automatically.
  auto keeper = Must(LeaseKeeper::Grant(c.get(), 2), "grant");
  PutOptions po;
  po.lease = keeper->id();
  Check(c->Put(p + "alive", "yes", po).status(), "put with lease");
  absl::SleepFor(absl::Seconds(3));  // longer than the TTL
  Check(Must(c->Get(p + "alive"), "get").kvs_size() == 1,
        "key kept by keep-alives");
  Check(keeper->Revoke(), "revoke");
  Check(Must(c->Get(p + "alive"), "get").kvs_size() == 0,
        "key gone with its lease");
  std::printf(
      "leased key lived past its TTL while kept alive, went with "
      "the lease\n");
  std::printf("OK\n");
  return 0;
}
