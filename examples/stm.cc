// Software transactional memory: concurrent transfers between accounts,
// each a plain read-modify-write function that RunStm retries on
// conflict; the total never changes (etcd's example_stm_test, in C++).
#include "detcd/stm.h"

#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "examples/example_util.h"

using namespace detcd::client;  // NOLINT: example brevity
using detcd::examples::Check;
using detcd::examples::Must;

int main(int argc, char** argv) {
  auto cfg = detcd::examples::ParseFlags(argc, argv);
  auto c = Must(Client::New(cfg), "connect");
  const std::string p = "/examples/stm/accounts/";
  detcd::examples::Clean(c.get(), p);
  constexpr int kAccounts = 5;
  for (int i = 0; i < kAccounts; ++i) {
    Check(c->Put(absl::StrCat(p, i), "100").status(), "init");
  }
  std::vector<std::thread> ts;
  for (int t = 0; t < 4; ++t) {
    ts.emplace_back([&, t] {
      auto tc = Must(Client::New(cfg), "connect");
      for (int n = 0; n < 10; ++n) {
        std::string from = absl::StrCat(p, (t + n) % kAccounts);
        std::string to = absl::StrCat(p, (t + 2 * n + 1) % kAccounts);
        if (from == to) continue;
        auto r = RunStm(tc.get(), [&](Stm& s) {
          int a = 0, b = 0;
          if (!absl::SimpleAtoi(s.Get(from), &a) ||
              !absl::SimpleAtoi(s.Get(to), &b)) {
            return absl::InternalError("not a number");
          }
          int amount = a / 2;  // move half of it
          s.Put(from, std::to_string(a - amount));
          s.Put(to, std::to_string(b + amount));
          return absl::OkStatus();
        });
        Check(r.status(), "transfer");
      }
    });
  }
  for (auto& t : ts) t.join();
  int total = 0;
  for (int i = 0; i < kAccounts; ++i) {
    int v = 0;
    auto r = Must(c->Get(absl::StrCat(p, i)), "get");
    Check(absl::SimpleAtoi(r.kvs(0).value(), &v), "number");
    std::printf("account %d: %d\n", i, v);
    total += v;
  }
  std::printf("total: %d\n", total);
  Check(total == kAccounts * 100, "the total is conserved");
  std::printf("OK\n");
  return 0;
}
