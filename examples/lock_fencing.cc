// A distributed mutex with a fencing token (see README.md, "Fencing").
//
// Three workers take turns holding the lock "/examples/lock/job" and
// append to a shared "ledger" resource. The resource accepts a write only
// with a token at least as high as any it has seen, so a worker whose
// lock was lost (its lease expired while it was paused) cannot write
// after a newer holder did. The lock's token is its key's create
// revision: it only grows from one holder to the next.
//
// The same fencing also works inside etcd itself: a Txn whose If is
// mutex.IsOwner() writes only while the lock is still held.
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "detcd/concurrency.h"
#include "detcd/kv.h"
#include "examples/example_util.h"

using namespace detcd::client;  // NOLINT: example brevity
using detcd::examples::Check;
using detcd::examples::Must;

// A resource outside etcd that checks tokens (a storage service, a
// database row with a "last token" column, ...).
class FencedLedger {
 public:
  bool Append(int64_t token, const std::string& line) {
    absl::MutexLock l(&mu_);
    if (token < highest_) {
      std::printf("ledger: refused %s (token %lld < %lld)\n", line.c_str(),
                  static_cast<long long>(token),
                  static_cast<long long>(highest_));
      return false;
    }
    highest_ = token;
    lines_.push_back(line);
    return true;
  }
  size_t size() {
    absl::MutexLock l(&mu_);
    return lines_.size();
  }

 private:
  absl::Mutex mu_;
  int64_t highest_ = 0;
  std::vector<std::string> lines_;
};

int main(int argc, char** argv) {
  auto cfg = detcd::examples::ParseFlags(argc, argv);
  auto c = Must(Client::New(cfg), "connect");
  detcd::examples::Clean(c.get(), "/examples/lock/");
  FencedLedger ledger;

  std::vector<std::thread> workers;
  for (int w = 0; w < 3; ++w) {
    workers.emplace_back([&, w] {
      auto wc = Must(Client::New(cfg), "connect");
      auto session = Must(Session::New(wc.get(), 10), "session");
      Mutex m(session.get(), "/examples/lock/job");
      for (int i = 0; i < 2; ++i) {
        Check(m.Lock(), "lock");
        std::printf("worker %d holds the lock, token %lld\n", w,
                    static_cast<long long>(m.rev()));
        Check(ledger.Append(m.rev(), "worker " + std::to_string(w)),
              "append with a current token");
        Check(m.Unlock(), "unlock");
      }
    });
  }
  for (auto& t : workers) t.join();
  Check(ledger.size() == 6, "six appends");

  // A stale holder: A's lease is lost (Close stands in for a pause longer
  // than the TTL), B takes the lock and writes; A then wakes up and tries.
  auto sa = Must(Session::New(c.get(), 10), "session A");
  auto sb = Must(Session::New(c.get(), 10), "session B");
  Mutex a(sa.get(), "/examples/lock/job");
  Mutex b(sb.get(), "/examples/lock/job");
  Check(a.Lock(), "A locks");
  int64_t token_a = a.rev();
  Check(sa->Close(), "A's lease ends");
  Check(b.Lock(), "B locks");
  Check(ledger.Append(b.rev(), "B"), "B appends");
  bool stale = ledger.Append(token_a, "A (stale)");
  Check(!stale, "the ledger refuses A's stale token");
  // And etcd refuses A's write fenced by IsOwner.
  auto r = Must(Txn(c.get())
                    .If(a.IsOwner())
                    .Then(OpPut("/examples/lock/data", "from A"))
                    .Commit(),
                "fenced txn");
  Check(!r.succeeded(), "etcd refuses A's fenced write");
  std::printf("stale holder refused by the ledger and by etcd\nOK\n");
  Check(b.Unlock(), "unlock");
  return 0;
}
