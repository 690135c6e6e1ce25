// Work queues: a FIFO queue with two producers and three consumers (each
// item taken exactly once), then a priority queue (lower numbers first,
// FIFO within a priority). Keys follow etcd's contrib/recipes, so Go
// programs using etcd's recipe package can share these queues.
#include <cstdio>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "detcd/recipes.h"
#include "examples/example_util.h"

using namespace detcd::client;  // NOLINT: example brevity
using detcd::examples::Check;
using detcd::examples::Must;

int main(int argc, char** argv) {
  auto cfg = detcd::examples::ParseFlags(argc, argv);
  auto c = Must(Client::New(cfg), "connect");
  detcd::examples::Clean(c.get(), "/examples/queue/");

  constexpr int kItems = 30;
  absl::Mutex mu;
  std::multiset<std::string> taken;
  std::vector<std::thread> consumers;
  for (int i = 0; i < 3; ++i) {
    consumers.emplace_back([&] {
      auto cc = Must(Client::New(cfg), "connect");
      Queue q(cc.get(), "/examples/queue/jobs");
      for (;;) {
        // An idle second ends the consumer.
        auto v = q.Dequeue(absl::Now() + absl::Seconds(2));
        if (!v.ok()) return;
        absl::MutexLock l(&mu);
        taken.insert(*v);
      }
    });
  }
  std::vector<std::thread> producers;
  for (int p = 0; p < 2; ++p) {
    producers.emplace_back([&, p] {
      auto pc = Must(Client::New(cfg), "connect");
      Queue q(pc.get(), "/examples/queue/jobs");
      for (int i = p; i < kItems; i += 2) {
        Check(q.Enqueue(absl::StrCat("job-", i)), "enqueue");
      }
    });
  }
  for (auto& t : producers) t.join();
  for (auto& t : consumers) t.join();
  std::printf("fifo: %zu items taken by 3 consumers\n", taken.size());
  Check(taken.size() == kItems, "every item taken");
  for (int i = 0; i < kItems; ++i) {
    Check(taken.count(absl::StrCat("job-", i)) == 1, "taken exactly once");
  }

  PriorityQueue pq(c.get(), "/examples/queue/prio");
  Check(pq.Enqueue("routine report", 10), "enqueue");
  Check(pq.Enqueue("page the on-call", 0), "enqueue");
  Check(pq.Enqueue("rotate logs", 10), "enqueue");
  Check(pq.Enqueue("restart service", 1), "enqueue");
  std::vector<std::string> order;
  for (int i = 0; i < 4; ++i) {
    order.push_back(Must(pq.Dequeue(absl::Now() + absl::Seconds(5)), "deq"));
    std::printf("priority: %s\n", order.back().c_str());
  }
  Check(order == std::vector<std::string>{"page the on-call", "restart service",
                                          "routine report", "rotate logs"},
        "priority order");
  std::printf("OK\n");
  return 0;
}
