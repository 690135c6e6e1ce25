// Leader election with observation: three candidates campaign; an
// observer follows the leader (its value) as leadership moves; each
// leader proclaims a new value once and resigns.
#include <atomic>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "detcd/concurrency.h"
#include "examples/example_util.h"

using namespace detcd::client;  // NOLINT: example brevity
using detcd::examples::Check;
using detcd::examples::Must;

int main(int argc, char** argv) {
  auto cfg = detcd::examples::ParseFlags(argc, argv);
  auto c = Must(Client::New(cfg), "connect");
  detcd::examples::Clean(c.get(), "/examples/election/");

  // The observer: prints every leader value it sees.
  auto oc = Must(Client::New(cfg), "connect");
  auto os = Must(Session::New(oc.get(), 10), "session");
  Election observed(os.get(), "/examples/election/e");
  absl::Mutex mu;
  std::vector<std::string> seen;
  std::thread observer([&] {
    observed
        .Observe([&](const etcdserverpb::RangeResponse& r) {
          std::printf("observer: leader is %s\n", r.kvs(0).value().c_str());
          absl::MutexLock l(&mu);
          seen.push_back(r.kvs(0).value());
          return seen.size() < 6;  // 3 leaders x (elected + proclaimed)
        })
        .IgnoreError();
  });

  std::atomic<int> leaders_at_once{0};
  std::atomic<bool> overlap{false};
  std::vector<std::thread> candidates;
  for (int i = 0; i < 3; ++i) {
    candidates.emplace_back([&, i] {
      auto cc = Must(Client::New(cfg), "connect");
      auto s = Must(Session::New(cc.get(), 10), "session");
      Election e(s.get(), "/examples/election/e");
      std::string me = "candidate-" + std::to_string(i);
      Check(e.Campaign(me), "campaign");
      if (++leaders_at_once > 1) overlap = true;
      std::printf("%s elected (key %s, revision %lld)\n", me.c_str(),
                  e.key().c_str(), static_cast<long long>(e.rev()));
      absl::SleepFor(absl::Milliseconds(200));
      Check(e.Proclaim(me + " (busy)"), "proclaim");
      absl::SleepFor(absl::Milliseconds(200));
      --leaders_at_once;
      Check(e.Resign(), "resign");
    });
  }
  for (auto& t : candidates) t.join();
  observer.join();
  Check(!overlap.load(), "one leader at a time");
  absl::MutexLock l(&mu);
  Check(seen.size() == 6, "the observer saw every leader and value");
  std::printf("OK\n");
  return 0;
}
