// Barriers: workers wait at a barrier until a coordinator releases it;
// then a double barrier where three workers enter together, do a phase of
// work, and leave together.
#include <atomic>
#include <cstdio>
#include <thread>
#include <vector>

#include "absl/time/clock.h"
#include "detcd/recipes.h"
#include "examples/example_util.h"

using namespace detcd::client;  // NOLINT: example brevity
using detcd::examples::Check;
using detcd::examples::Must;

int main(int argc, char** argv) {
  auto cfg = detcd::examples::ParseFlags(argc, argv);
  auto c = Must(Client::New(cfg), "connect");
  detcd::examples::Clean(c.get(), "/examples/barrier/");

  Barrier gate(c.get(), "/examples/barrier/gate");
  Check(gate.Hold(), "hold");
  std::atomic<bool> released{false};
  std::atomic<int> through{0};
  std::vector<std::thread> ws;
  for (int i = 0; i < 3; ++i) {
    ws.emplace_back([&, i] {
      auto wc = Must(Client::New(cfg), "connect");
      Barrier b(wc.get(), "/examples/barrier/gate");
      Check(b.Wait(absl::Now() + absl::Seconds(30)), "wait");
      Check(released.load(), "passed only after the release");
      std::printf("worker %d through the gate\n", i);
      ++through;
    });
  }
  absl::SleepFor(absl::Milliseconds(500));
  Check(through.load() == 0, "nobody through before the release");
  released = true;
  Check(gate.Release(), "release");
  for (auto& t : ws) t.join();

  constexpr int kN = 3;
  std::atomic<int> inside{0};
  std::atomic<bool> bad{false};
  std::vector<std::thread> phase;
  for (int i = 0; i < kN; ++i) {
    phase.emplace_back([&, i] {
      auto wc = Must(Client::New(cfg), "connect");
      auto s = Must(Session::New(wc.get(), 10), "session");
      DoubleBarrier db(s.get(), "/examples/barrier/phase", kN);
      Check(db.Enter(absl::Now() + absl::Seconds(30)), "enter");
      if (++inside > kN) bad = true;
      std::printf("worker %d entered (all %d are in)\n", i, kN);
      Check(db.Leave(absl::Now() + absl::Seconds(30)), "leave");
      if (inside.load() != kN) bad = true;
      std::printf("worker %d left\n", i);
    });
    absl::SleepFor(absl::Milliseconds(100));
  }
  for (auto& t : phase) t.join();
  Check(!bad.load(), "entered together, left together");
  std::printf("OK\n");
  return 0;
}
