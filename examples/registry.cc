// Service registry: two instances of "api" register with leases; a
// client discovers them and follows changes; one instance deregisters,
// the other "crashes" (stops its keep-alives) and disappears when its
// lease expires.
#include "detcd/registry.h"

#include <cstdio>
#include <map>
#include <string>
#include <thread>

#include "absl/strings/str_join.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "examples/example_util.h"

using namespace detcd::client;  // NOLINT: example brevity
using detcd::examples::Check;
using detcd::examples::Must;

int main(int argc, char** argv) {
  auto cfg = detcd::examples::ParseFlags(argc, argv);
  auto c = Must(Client::New(cfg), "connect");
  detcd::examples::Clean(c.get(), "/examples/services/");
  ServiceRegistry reg(c.get(), "/examples/services/");

  auto a = Must(reg.Register("api", "a", "10.0.0.1:8080", 2), "register a");
  auto b = Must(reg.Register("api", "b", "10.0.0.2:8080", 2), "register b");
  auto found = Must(reg.Discover("api"), "discover");
  std::printf("discovered %zu instances at revision %lld\n",
              found.instances.size(), static_cast<long long>(found.revision));
  Check(found.instances.size() == 2, "two instances");

  // A watcher that prints the instance set after every change and stops
  // once it is empty.
  absl::Notification empty;
  std::thread watcher([&] {
    auto wc = Must(Client::New(cfg), "connect");
    ServiceRegistry wr(wc.get(), "/examples/services/");
    Check(wr.Watch("api",
                   [&](const ServiceInstances& s) {
                     std::string ids = absl::StrJoin(s.instances, ",",
                                                     absl::PairFormatter("="));
                     std::printf("watch: api = {%s}\n", ids.c_str());
                     if (s.instances.empty()) {
                       empty.Notify();
                       return false;
                     }
                     return true;
                   }),
          "watch");
  });
  absl::SleepFor(absl::Milliseconds(200));
  Check(b->Deregister(), "deregister b");
  std::printf("a stops its keep-alives (as if it crashed)\n");
  a->Orphan();
  Check(empty.WaitForNotificationWithTimeout(absl::Seconds(15)),
        "a's entry expires with its lease");
  watcher.join();
  std::printf("OK\n");
  return 0;
}
