// The client library and its recipes against a real single-member detcd
// started by the test (free ports, temp data dir): KV and Txn builder,
// asynchronous calls, lease keep-alive, watch compaction, mutex fencing,
// election observation, queues, barriers, STM, service registry and
// configuration watcher. Each test works under its own key prefix.
#include "detcd/recipes.h"

#include <algorithm>
#include <atomic>
#include <future>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "detcd/client.h"
#include "detcd/concurrency.h"
#include "detcd/config_watcher.h"
#include "detcd/errors.h"
#include "detcd/kv.h"
#include "detcd/lease.h"
#include "detcd/registry.h"
#include "detcd/stm.h"
#include "detcd/watch.h"
#include "gtest/gtest.h"
#include "tests/client/detcd_process.h"

namespace detcd::client {
namespace {

namespace pb = etcdserverpb;

absl::Time In(absl::Duration d) { return absl::Now() + d; }

class RecipesTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    cluster_ = new testing::DetcdCluster(1);
    absl::Status s = cluster_->Start();
    ASSERT_TRUE(s.ok()) << s;
  }
  static void TearDownTestSuite() {
    delete cluster_;
    cluster_ = nullptr;
  }
  std::unique_ptr<Client> NewClient() {
    Config c;
    c.endpoints = cluster_->endpoints();
    auto cli = Client::New(c);
    EXPECT_TRUE(cli.ok()) << cli.status();
    return std::move(*cli);
  }
  // A prefix of this test's own.
  std::string P(const std::string& rest = "") {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    return absl::StrCat("/", info->name(), "/", rest);
  }
  static testing::DetcdCluster* cluster_;
};
testing::DetcdCluster* RecipesTest::cluster_ = nullptr;

TEST_F(RecipesTest, KvAndTxnBuilder) {
  auto c = NewClient();
  auto put = c->Put(P("a"), "1");
  ASSERT_TRUE(put.ok()) << put.status();
  int64_t rev = put->header().revision();
  // Then branch: the compare holds.
  auto r = Txn(c.get())
               .If(Compare(cmp::ModRevision(P("a")), CmpOp::kEqual, rev))
               .Then(OpPut(P("a"), "2"), OpGet(P("a")))
               .Else(OpGet(P("a")))
               .Commit();
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->succeeded());
  EXPECT_EQ(r->responses(1).response_range().kvs(0).value(), "2");
  // Else branch: the same compare is stale now.
  r = Txn(c.get())
          .If(Compare(cmp::ModRevision(P("a")), CmpOp::kEqual, rev))
          .Then(OpPut(P("a"), "3"))
          .Else(OpGet(P("a")))
          .Commit();
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_FALSE(r->succeeded());
  EXPECT_EQ(r->responses(0).response_range().kvs(0).value(), "2");
  // Prefix reads and deletes.
  ASSERT_TRUE(c->Put(P("b"), "x").ok());
  GetOptions g;
  g.prefix = true;
  g.count_only = true;
  auto cnt = c->Get(P(), g);
  ASSERT_TRUE(cnt.ok());
  EXPECT_EQ(cnt->count(), 2);
  DeleteOptions d;
  d.prefix = true;
  auto del = c->Delete(P(), d);
  ASSERT_TRUE(del.ok());
  EXPECT_EQ(del->deleted(), 2);
}

TEST_F(RecipesTest, CallsOfACancelledClientAreNotSent) {
  // As grpc-go with a done context: a request given up before it started
  // never takes effect (the Lock and Election services retry-race on it).
  auto c = NewClient();
  Canceller stop;
  stop.Cancel();
  c->set_canceller(&stop);
  auto put = c->Put(P("k"), "v");
  EXPECT_EQ(put.status().code(), absl::StatusCode::kCancelled) << put.status();
  EXPECT_EQ(put.status().message(), kContextCanceled);
  auto txn = Txn(c.get()).Then(OpPut(P("k"), "t")).Commit();
  EXPECT_EQ(txn.status().code(), absl::StatusCode::kCancelled);
  // A deadline that passed counts as a cancellation.
  Canceller late;
  late.set_deadline(absl::Now() - absl::Milliseconds(1));
  EXPECT_TRUE(late.cancelled());
  c->set_canceller(&late);
  put = c->Put(P("k"), "late");
  EXPECT_EQ(put.status().code(), absl::StatusCode::kCancelled) << put.status();
  c->set_canceller(nullptr);
  // Another client sees nothing written, also after a later write went
  // through the same member.
  auto other = NewClient();
  ASSERT_TRUE(other->Put(P("after"), "1").ok());
  auto got = other->Get(P("k"));
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->kvs_size(), 0);
}

TEST_F(RecipesTest, AsyncCallsRunConcurrently) {
  auto c = NewClient();
  std::vector<std::future<absl::StatusOr<pb::PutResponse>>> puts;
  for (int i = 0; i < 50; ++i) {
    puts.push_back(c->PutAsync(P(absl::StrCat(i)), absl::StrCat(i)));
  }
  std::set<int64_t> revs;
  for (auto& f : puts) {
    auto r = f.get();
    ASSERT_TRUE(r.ok()) << r.status();
    revs.insert(r->header().revision());
  }
  EXPECT_EQ(revs.size(), 50u);  // each put its own revision
  GetOptions g;
  g.prefix = true;
  auto all = c->GetAsync(P(), g).get();
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(all->kvs_size(), 50);
  // Callback form, and a deadline that passes.
  std::promise<absl::Status> done;
  c->Async(
      [](Client& cl) {
        return cl.Get("x", {}, CallOptions::Timeout(absl::Seconds(5))).status();
      },
      [&](absl::Status s) { done.set_value(s); });
  EXPECT_TRUE(done.get_future().get().ok());
}

TEST_F(RecipesTest, LeaseKeeperKeepsALeaseAliveAndRevokes) {
  auto c = NewClient();
  std::atomic<int> answers{0};
  std::atomic<bool> lost{false};
  LeaseKeeper::Callbacks cb;
  cb.on_response = [&](const pb::LeaseKeepAliveResponse&) { ++answers; };
  cb.on_lost = [&] { lost = true; };
  auto k = LeaseKeeper::Grant(c.get(), 2, cb);
  ASSERT_TRUE(k.ok()) << k.status();
  PutOptions p;
  p.lease = (*k)->id();
  ASSERT_TRUE(c->Put(P("eph"), "v", p).ok());
  absl::SleepFor(absl::Seconds(4));  // twice the TTL: only keep-alives save it
  EXPECT_GE(answers.load(), 2);
  EXPECT_TRUE((*k)->alive());
  EXPECT_EQ(c->Get(P("eph"))->kvs_size(), 1);
  ASSERT_TRUE((*k)->Revoke().ok());
  EXPECT_EQ(c->Get(P("eph"))->kvs_size(), 0);
  EXPECT_FALSE(lost.load());  // revoked by us, not lost

  // Revoked behind the keeper's back: it notices and reports the loss.
  auto k2 = LeaseKeeper::Grant(c.get(), 1, cb);
  ASSERT_TRUE(k2.ok());
  pb::LeaseRevokeRequest rv;
  rv.set_id((*k2)->id());
  ASSERT_TRUE(c->LeaseRevoke(rv).ok());
  absl::Time until = In(absl::Seconds(10));
  while (!lost.load() && absl::Now() < until) {
    absl::SleepFor(absl::Milliseconds(50));
  }
  EXPECT_TRUE(lost.load());
  EXPECT_FALSE((*k2)->alive());
}

TEST_F(RecipesTest, WatchReportsCompaction) {
  auto c = NewClient();
  int64_t first = 0;
  for (int i = 0; i < 5; ++i) {
    auto r = c->Put(P("k"), absl::StrCat(i));
    ASSERT_TRUE(r.ok());
    if (i == 0) first = r->header().revision();
  }
  auto last = c->Get(P("k"));
  pb::CompactionRequest cr;
  cr.set_revision(last->header().revision());
  ASSERT_TRUE(c->Compact(cr).ok());
  Watcher w(c.get());
  pb::WatchCreateRequest req;
  req.set_key(P("k"));
  req.set_start_revision(first);
  w.Add(req);
  WatchEvent ev;
  ASSERT_TRUE(w.Next(&ev, In(absl::Seconds(10))));
  EXPECT_TRUE(ev.closing);
  EXPECT_EQ(ev.error, kErrCompacted);
  EXPECT_EQ(ev.response.compact_revision(), last->header().revision());
}

TEST_F(RecipesTest, MutexFencingTokenGuardsWrites) {
  auto c = NewClient();
  auto s1 = Session::New(c.get(), 5);
  auto s2 = Session::New(c.get(), 5);
  ASSERT_TRUE(s1.ok() && s2.ok());
  Mutex m1(s1->get(), P("lock"));
  Mutex m2(s2->get(), P("lock"));
  ASSERT_TRUE(m1.Lock().ok());
  int64_t token1 = m1.rev();
  // A write fenced by m1's ownership goes through while it holds the lock.
  auto w = Txn(c.get()).If(m1.IsOwner()).Then(OpPut(P("data"), "1")).Commit();
  ASSERT_TRUE(w.ok());
  EXPECT_TRUE(w->succeeded());
  // m2 waits; m1's session dies (as a paused process whose lease expired).
  std::promise<absl::Status> locked;
  std::thread t([&] { locked.set_value(m2.Lock()); });
  absl::SleepFor(absl::Milliseconds(300));
  ASSERT_TRUE((*s1)->Close().ok());
  ASSERT_TRUE(locked.get_future().get().ok());
  t.join();
  EXPECT_GT(m2.rev(), token1);  // tokens only grow
  // m1's stale fenced write is refused by the store itself.
  w = Txn(c.get()).If(m1.IsOwner()).Then(OpPut(P("data"), "stale")).Commit();
  ASSERT_TRUE(w.ok());
  EXPECT_FALSE(w->succeeded());
  EXPECT_EQ(c->Get(P("data"))->kvs(0).value(), "1");
  ASSERT_TRUE(m2.Unlock().ok());
}

TEST_F(RecipesTest, MutexWaiterGivesUpAtItsCancellersDeadline) {
  // As the Lock service's call past its caller's deadline: nobody cancels
  // it, the deadline alone ends the wait and the waiter's key goes.
  auto c = NewClient();
  auto s1 = Session::New(c.get(), 30);
  ASSERT_TRUE(s1.ok());
  Mutex m1(s1->get(), P("dl"));
  ASSERT_TRUE(m1.Lock().ok());
  auto c2 = NewClient();
  auto s2 = Session::New(c2.get(), 30);
  ASSERT_TRUE(s2.ok());
  Canceller call;
  call.set_deadline(absl::Now() + absl::Milliseconds(300));
  c2->set_canceller(&call);
  Mutex m2(s2->get(), P("dl"));
  std::promise<absl::Status> locked;
  std::thread t([&] { locked.set_value(m2.Lock()); });
  auto f = locked.get_future();
  ASSERT_EQ(f.wait_for(std::chrono::seconds(20)), std::future_status::ready);
  t.join();
  const absl::Status st = f.get();
  // A canceller past its deadline counts as cancelled.
  EXPECT_EQ(st.code(), absl::StatusCode::kCancelled) << st;
  c2->set_canceller(nullptr);
  GetOptions g;
  g.prefix = true;
  auto left = c->Get(P("dl/"), g);
  ASSERT_TRUE(left.ok()) << left.status();
  EXPECT_EQ(left->kvs_size(), 1);  // the holder's only
  ASSERT_TRUE(m1.Unlock().ok());
}

TEST_F(RecipesTest, ElectionObserversSeeEachLeaderInTurn) {
  auto c = NewClient();
  auto s1 = Session::New(c.get(), 5);
  auto s2 = Session::New(c.get(), 5);
  ASSERT_TRUE(s1.ok() && s2.ok());
  Election e1(s1->get(), P("elect"));
  Election e2(s2->get(), P("elect"));
  ASSERT_TRUE(e1.Campaign("one").ok());
  std::promise<absl::Status> second;
  std::thread t([&] { second.set_value(e2.Campaign("two")); });

  auto oc = NewClient();
  auto os = Session::New(oc.get(), 5);
  ASSERT_TRUE(os.ok());
  Election obs(os->get(), P("elect"));
  std::vector<std::string> seen;
  std::atomic<int> n_seen{0};
  std::thread observer([&] {
    obs.Observe([&](const pb::RangeResponse& r) {
         seen.push_back(r.kvs(0).value());
         ++n_seen;
         return seen.size() < 3;
       })
        .IgnoreError();
  });
  auto wait_seen = [&](int n) {
    absl::Time until = In(absl::Seconds(10));
    while (n_seen.load() < n && absl::Now() < until) {
      absl::SleepFor(absl::Milliseconds(20));
    }
  };
  wait_seen(1);
  ASSERT_TRUE(e1.Proclaim("one'").ok());
  wait_seen(2);
  ASSERT_TRUE(e1.Resign().ok());
  ASSERT_TRUE(second.get_future().get().ok());
  t.join();
  observer.join();
  EXPECT_EQ(seen, (std::vector<std::string>{"one", "one'", "two"}));
  auto leader = e2.Leader();
  ASSERT_TRUE(leader.ok());
  EXPECT_EQ(leader->kvs(0).value(), "two");
  // A resigned leader cannot proclaim.
  EXPECT_EQ(e1.Proclaim("x").message(), kErrElectionNotLeader);
}

TEST_F(RecipesTest, QueueDeliversEveryItemOnceInOrder) {
  auto c = NewClient();
  Queue q(c.get(), P("q"));
  // One producer, one consumer: FIFO.
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(q.Enqueue(absl::StrCat(i)).ok());
  for (int i = 0; i < 5; ++i) {
    auto v = q.Dequeue(In(absl::Seconds(10)));
    ASSERT_TRUE(v.ok()) << v.status();
    EXPECT_EQ(*v, absl::StrCat(i));
  }
  // Empty: Dequeue waits until its deadline.
  auto none = q.Dequeue(In(absl::Milliseconds(300)));
  EXPECT_EQ(none.status().code(), absl::StatusCode::kDeadlineExceeded);
  // Three consumers waiting, two producers: each item taken exactly once.
  constexpr int kItems = 60;
  absl::Mutex mu;
  std::multiset<std::string> got;
  std::vector<std::thread> consumers;
  for (int i = 0; i < 3; ++i) {
    consumers.emplace_back([&] {
      auto cc = NewClient();
      Queue cq(cc.get(), P("q"));
      for (;;) {
        auto v = cq.Dequeue(In(absl::Seconds(3)));
        if (!v.ok()) return;
        absl::MutexLock l(&mu);
        got.insert(*v);
      }
    });
  }
  std::vector<std::thread> producers;
  for (int p = 0; p < 2; ++p) {
    producers.emplace_back([&, p] {
      for (int i = p; i < kItems; i += 2) {
        ASSERT_TRUE(q.Enqueue(absl::StrCat("item", i)).ok());
      }
    });
  }
  for (auto& t : producers) t.join();
  for (auto& t : consumers) t.join();
  EXPECT_EQ(got.size(), static_cast<size_t>(kItems));
  for (int i = 0; i < kItems; ++i) {
    EXPECT_EQ(got.count(absl::StrCat("item", i)), 1u) << i;
  }
}

TEST_F(RecipesTest, PriorityQueueOrdersByPriorityThenFifo) {
  auto c = NewClient();
  PriorityQueue q(c.get(), P("pq"));
  ASSERT_TRUE(q.Enqueue("low-1", 10).ok());
  ASSERT_TRUE(q.Enqueue("high-1", 1).ok());
  ASSERT_TRUE(q.Enqueue("low-2", 10).ok());
  ASSERT_TRUE(q.Enqueue("high-2", 1).ok());
  ASSERT_TRUE(q.Enqueue("mid", 5).ok());
  std::vector<std::string> out;
  for (int i = 0; i < 5; ++i) {
    auto v = q.Dequeue(In(absl::Seconds(10)));
    ASSERT_TRUE(v.ok()) << v.status();
    out.push_back(*v);
  }
  EXPECT_EQ(out, (std::vector<std::string>{"high-1", "high-2", "mid", "low-1",
                                           "low-2"}));
  // Keys as etcd's recipe names them.
  GetOptions g;
  g.prefix = true;
  ASSERT_TRUE(q.Enqueue("x", 7).ok());
  auto keys = c->Get(P("pq/"), g);
  ASSERT_EQ(keys->kvs_size(), 1);
  EXPECT_EQ(keys->kvs(0).key(), P("pq/00007/0000000000000000"));
}

TEST_F(RecipesTest, BarrierHoldsWaitersUntilReleased) {
  auto c = NewClient();
  Barrier b(c.get(), P("barrier"));
  ASSERT_TRUE(b.Hold().ok());
  EXPECT_EQ(b.Hold().message(), kErrKeyExists);
  std::atomic<bool> passed{false};
  std::thread waiter([&] {
    auto cc = NewClient();
    Barrier wb(cc.get(), P("barrier"));
    EXPECT_TRUE(wb.Wait(In(absl::Seconds(20))).ok());
    passed = true;
  });
  absl::SleepFor(absl::Milliseconds(300));
  // Unrelated writes between hold and wait do not matter.
  ASSERT_TRUE(c->Put(P("other"), "x").ok());
  EXPECT_FALSE(passed.load());
  ASSERT_TRUE(b.Release().ok());
  waiter.join();
  EXPECT_TRUE(passed.load());
  EXPECT_TRUE(b.Wait(In(absl::Seconds(1))).ok());  // released: no wait
}

TEST_F(RecipesTest, DoubleBarrierLetsAllInThenAllOut) {
  constexpr int kN = 3;
  std::atomic<int> entered{0}, left{0};
  std::atomic<bool> early_out{false};
  std::vector<std::thread> ts;
  for (int i = 0; i < kN; ++i) {
    ts.emplace_back([&] {
      auto c = NewClient();
      auto s = Session::New(c.get(), 5);
      ASSERT_TRUE(s.ok());
      DoubleBarrier b(s->get(), P("db"), kN);
      ASSERT_TRUE(b.Enter(In(absl::Seconds(20))).ok());
      if (entered.fetch_add(1) + 1 > kN) early_out = true;
      ASSERT_TRUE(b.Leave(In(absl::Seconds(20))).ok());
      // Nobody leaves before everyone entered.
      if (entered.load() != kN) early_out = true;
      ++left;
    });
    absl::SleepFor(absl::Milliseconds(100));
  }
  for (auto& t : ts) t.join();
  EXPECT_EQ(left.load(), kN);
  EXPECT_FALSE(early_out.load());
}

TEST_F(RecipesTest, StmTransfersKeepTheTotalUnderEveryIsolation) {
  for (Isolation iso :
       {Isolation::kSerializableSnapshot, Isolation::kSerializable,
        Isolation::kRepeatableReads}) {
    auto c = NewClient();
    const int kAccounts = 4, kStart = 100;
    std::string base = P(absl::StrCat("iso", static_cast<int>(iso), "/"));
    for (int i = 0; i < kAccounts; ++i) {
      ASSERT_TRUE(c->Put(base + absl::StrCat(i), absl::StrCat(kStart)).ok());
    }
    std::vector<std::thread> ts;
    for (int t = 0; t < 4; ++t) {
      ts.emplace_back([&, t] {
        auto cc = NewClient();
        for (int n = 0; n < 10; ++n) {
          std::string from = base + absl::StrCat((t + n) % kAccounts);
          std::string to = base + absl::StrCat((t + n + 1) % kAccounts);
          StmOptions o;
          o.isolation = iso;
          auto r = RunStm(
              cc.get(),
              [&](Stm& s) {
                int64_t a = 0, b = 0;
                if (!absl::SimpleAtoi(s.Get(from), &a) ||
                    !absl::SimpleAtoi(s.Get(to), &b)) {
                  return absl::InternalError("bad balance");
                }
                s.Put(from, absl::StrCat(a - 1));
                s.Put(to, absl::StrCat(b + 1));
                return absl::OkStatus();
              },
              o);
          ASSERT_TRUE(r.ok()) << r.status();
        }
      });
    }
    for (auto& t : ts) t.join();
    int64_t total = 0;
    for (int i = 0; i < kAccounts; ++i) {
      int64_t v = 0;
      ASSERT_TRUE(
          absl::SimpleAtoi(c->Get(base + absl::StrCat(i))->kvs(0).value(), &v));
      total += v;
    }
    EXPECT_EQ(total, kAccounts * kStart) << static_cast<int>(iso);
  }
}

TEST_F(RecipesTest, StmReadCommittedAndAborts) {
  auto c = NewClient();
  ASSERT_TRUE(c->Put(P("x"), "1").ok());
  StmOptions o;
  o.isolation = Isolation::kReadCommitted;
  auto r = RunStm(
      c.get(),
      [&](Stm& s) {
        EXPECT_EQ(s.Get(P("x")), "1");
        // Several keys read together: the first one's value.
        EXPECT_EQ(s.Get({P("x"), P("absent")}), "1");
        EXPECT_GT(s.Rev(P("x")), 0);
        s.Put(P("y"), s.Get(P("x")));
        EXPECT_EQ(s.Get(P("y")), "1");  // own write visible
        s.Del(P("x"));
        return absl::OkStatus();
      },
      o);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(c->Get(P("y"))->kvs(0).value(), "1");
  EXPECT_EQ(c->Get(P("x"))->kvs_size(), 0);
  // An error from apply aborts without writing.
  r = RunStm(c.get(), [&](Stm& s) {
    s.Put(P("z"), "1");
    return absl::FailedPreconditionError("no");
  });
  EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(c->Get(P("z"))->kvs_size(), 0);
}

TEST_F(RecipesTest, RegistryDiscoversWatchesAndExpires) {
  auto c = NewClient();
  ServiceRegistry reg(c.get(), P("svc/"));
  auto a = reg.Register("api", "a", "10.0.0.1:80", 2);
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(reg.Register("api", "a", "dup", 2).status().message(),
            kErrKeyExists);
  auto d = reg.Discover("api");
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->instances,
            (std::map<std::string, std::string>{{"a", "10.0.0.1:80"}}));

  absl::Mutex mu;
  std::vector<std::map<std::string, std::string>> views;
  Canceller stop;
  std::thread watcher([&] {
    auto wc = NewClient();
    ServiceRegistry wr(wc.get(), P("svc/"));
    wr.Watch(
          "api",
          [&](const ServiceInstances& s) {
            absl::MutexLock l(&mu);
            views.push_back(s.instances);
            return true;
          },
          &stop)
        .IgnoreError();
  });
  // Changes start once the watcher has its first view.
  for (absl::Time until = In(absl::Seconds(10)); absl::Now() < until;) {
    {
      absl::MutexLock l(&mu);
      if (!views.empty()) break;
    }
    absl::SleepFor(absl::Milliseconds(10));
  }
  auto b = reg.Register("api", "b", "10.0.0.2:80", 2);
  ASSERT_TRUE(b.ok());
  ASSERT_TRUE((*a)->Update("10.0.0.1:81").ok());
  ASSERT_TRUE((*b)->Deregister().ok());
  // a's process "crashes": its entry goes when the lease expires.
  (*a)->Orphan();
  auto gone = [&] {
    absl::MutexLock l(&mu);
    return !views.empty() && views.back().empty();
  };
  absl::Time until = In(absl::Seconds(15));
  while (!gone() && absl::Now() < until) absl::SleepFor(absl::Milliseconds(50));
  stop.Cancel();
  watcher.join();
  using M = std::map<std::string, std::string>;
  // Changes that reach the watcher in one response (e.g. caught up when
  // its watch starts) make one view, so the views are these states in
  // order, possibly with some skipped, from the first to the last.
  const std::vector<M> states = {{{"a", "10.0.0.1:80"}},
                                 {{"a", "10.0.0.1:80"}, {"b", "10.0.0.2:80"}},
                                 {{"a", "10.0.0.1:81"}, {"b", "10.0.0.2:80"}},
                                 {{"a", "10.0.0.1:81"}},
                                 {}};
  absl::MutexLock l(&mu);
  ASSERT_GE(views.size(), 2u);
  EXPECT_EQ(views.front(), states.front());
  EXPECT_EQ(views.back(), states.back());
  size_t next = 0;
  for (const M& v : views) {
    while (next < states.size() && states[next] != v) ++next;
    ASSERT_LT(next, states.size()) << "a view out of order or unknown";
    ++next;
  }
}

TEST_F(RecipesTest, ConfigWatcherSeesWholeRevisions) {
  auto c = NewClient();
  ASSERT_TRUE(c->Put(P("cfg/a"), "1").ok());
  ConfigWatcher w(c.get(), P("cfg/"));
  absl::Mutex mu;
  std::vector<ConfigSnapshot> seen;
  ASSERT_TRUE(w.Start([&](const ConfigSnapshot& s) {
                 absl::MutexLock l(&mu);
                 seen.push_back(s);
               }).ok());
  EXPECT_EQ(w.Current().values.at("a"), "1");
  // Two keys changed in one transaction arrive together.
  auto r = Txn(c.get())
               .Then(OpPut(P("cfg/a"), "2"), OpPut(P("cfg/b"), "2"))
               .Commit();
  ASSERT_TRUE(r.ok());
  ASSERT_TRUE(w.WaitForRevision(r->header().revision(), In(absl::Seconds(10))));
  auto del = c->Delete(P("cfg/a"));
  ASSERT_TRUE(del.ok());
  ASSERT_TRUE(
      w.WaitForRevision(del->header().revision(), In(absl::Seconds(10))));
  w.Stop();
  EXPECT_TRUE(w.status().ok()) << w.status();
  absl::MutexLock l(&mu);
  ASSERT_EQ(seen.size(), 3u);
  EXPECT_EQ(seen[1].values,
            (std::map<std::string, std::string>{{"a", "2"}, {"b", "2"}}));
  EXPECT_EQ(seen[1].revision, r->header().revision());
  EXPECT_EQ(seen[2].values, (std::map<std::string, std::string>{{"b", "2"}}));
}

}  // namespace
}  // namespace detcd::client
