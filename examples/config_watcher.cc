// A configuration watcher: a service keeps a live view of the keys under
// /examples/config/ and reacts to each change; an operator changes two
// settings at once in a transaction (the view switches in one step) and
// deletes one.
#include "detcd/config_watcher.h"

#include <cstdio>
#include <string>

#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "detcd/kv.h"
#include "examples/example_util.h"

using namespace detcd::client;  // NOLINT: example brevity
using detcd::examples::Check;
using detcd::examples::Must;

int main(int argc, char** argv) {
  auto cfg = detcd::examples::ParseFlags(argc, argv);
  auto c = Must(Client::New(cfg), "connect");
  const std::string p = "/examples/config/";
  detcd::examples::Clean(c.get(), p);
  Check(c->Put(p + "log_level", "info").status(), "put");

  ConfigWatcher w(c.get(), p);
  Check(w.Start([](const ConfigSnapshot& s) {
    std::printf(
        "config @%lld: {%s}\n", static_cast<long long>(s.revision),
        absl::StrJoin(s.values, ", ", absl::PairFormatter("=")).c_str());
  }),
        "start");

  auto r = Must(
      Txn(c.get())
          .Then(OpPut(p + "log_level", "debug"), OpPut(p + "max_conns", "100"))
          .Commit(),
      "txn");
  Check(
      w.WaitForRevision(r.header().revision(), absl::Now() + absl::Seconds(10)),
      "saw the transaction");
  auto d = Must(c->Delete(p + "log_level"), "delete");
  Check(
      w.WaitForRevision(d.header().revision(), absl::Now() + absl::Seconds(10)),
      "saw the delete");
  ConfigSnapshot now = w.Current();
  Check(now.values.size() == 1 && now.values.at("max_conns") == "100",
        "final config");
  w.Stop();
  std::printf("OK\n");
  return 0;
}
