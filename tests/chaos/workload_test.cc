// The chaos workload's checks (chaos/checks.h) on hand-made inputs, and
// the workload itself against a live cluster when one is named:
//   DETCD_CHAOS_ENDPOINTS=127.0.0.1:2379,127.0.0.1:22379,127.0.0.1:32379
//   DETCD_CHAOS_SECONDS=10 (default)  DETCD_CHAOS_EXPECT=linearizability
//   (the checker that must fail; unset: every check must pass)
//   DETCD_CHAOS_PROGRESS=0 (no watch progress requests)
#include "chaos/workload.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_split.h"
#include "chaos/checks.h"
#include "gtest/gtest.h"
#include "harness/kv_model.h"
#include "harness/lease_checker.h"
#include "harness/watch_checker.h"

namespace detcd::chaos {
namespace {

mvcc::Event Put(const std::string& k, const std::string& v, int64_t rev,
                int64_t create, int64_t version, int64_t lease = 0) {
  mvcc::Event e;
  e.type = mvcc::Event::kPut;
  e.kv.key = k;
  e.kv.value = v;
  e.kv.mod_revision = rev;
  e.kv.create_revision = create;
  e.kv.version = version;
  e.kv.lease = lease;
  return e;
}

mvcc::Event Del(const std::string& k, int64_t rev) {
  mvcc::Event e;
  e.type = mvcc::Event::kDelete;
  e.kv.key = k;
  e.kv.mod_revision = rev;
  return e;
}

// A consistent history: k0 created, updated, a lease key, k0 deleted.
std::vector<mvcc::Event> Good() {
  mvcc::Event p3 = Put("k0", "b", 3, 2, 2);
  p3.has_prev_kv = true;
  p3.prev_kv = Put("k0", "a", 2, 2, 1).kv;
  mvcc::Event d5 = Del("k0", 5);
  d5.has_prev_kv = true;
  d5.prev_kv = p3.kv;
  return {Put("k0", "a", 2, 2, 1), p3, Put("lease/7/0", "x", 4, 4, 1, 7), d5};
}

TEST(ChaosChecks, ConsistentEventHistoryBuildsTheModel) {
  harness::KvModel model;
  EXPECT_EQ(BuildModel(Good(), &model), "");
  EXPECT_EQ(model.rev(), 5);
  EXPECT_EQ(model.EventsAt(3).size(), 1u);
}

TEST(ChaosChecks, WrongVersionIsCaught) {
  std::vector<mvcc::Event> ev = Good();
  ev[1].kv.version = 1;  // a second put of k0 must be version 2
  harness::KvModel model;
  EXPECT_NE(BuildModel(ev, &model), "");
}

TEST(ChaosChecks, GapIsCaught) {
  std::vector<mvcc::Event> ev = Good();
  ev.erase(ev.begin() + 1);  // revision 3 missing
  harness::KvModel model;
  EXPECT_NE(BuildModel(ev, &model).find("gap"), std::string::npos);
}

TEST(ChaosChecks, AcknowledgedPutMustBeInTheOracle) {
  harness::KvModel model;
  ASSERT_EQ(BuildModel(Good(), &model), "");
  harness::History h;
  harness::Operation op;
  op.req = harness::PutRequest("k0", "b");
  op.resp.revision = 3;
  op.resp.results.emplace_back();
  h.ops.push_back(op);
  EXPECT_TRUE(CheckHistoryAgainstModel(h, model).empty());
  h.ops[0].req = harness::PutRequest("k0", "zzz");  // never written
  EXPECT_EQ(CheckHistoryAgainstModel(h, model).size(), 1u);
}

// The watch path as Check runs it: gRPC answers converted by FromWatch,
// judged by the simulator's WatchChecker against the rebuilt oracle.
TEST(ChaosChecks, WatcherMissingEventsIsCaught) {
  harness::KvModel model;
  ASSERT_EQ(BuildModel(Good(), &model), "");
  auto answer = [](int64_t rev, std::vector<mvcc::Event> evs, bool created) {
    etcdserverpb::WatchResponse r;
    r.set_watch_id(0);
    r.set_created(created);
    r.mutable_header()->set_revision(rev);
    for (const mvcc::Event& e : evs) {
      mvccpb::Event* pe = r.add_events();
      pe->set_type(e.type == mvcc::Event::kPut ? mvccpb::Event::PUT
                                               : mvccpb::Event::DELETE);
      pe->mutable_kv()->set_key(e.kv.key);
      pe->mutable_kv()->set_value(e.kv.value);
      pe->mutable_kv()->set_mod_revision(e.kv.mod_revision);
      pe->mutable_kv()->set_create_revision(e.kv.create_revision);
      pe->mutable_kv()->set_version(e.kv.version);
      pe->mutable_kv()->set_lease(e.kv.lease);
    }
    return FromWatch(r);
  };
  std::vector<mvcc::Event> all = Good();
  for (mvcc::Event& e : all) {
    e.has_prev_kv = false;  // the watcher did not ask for prev_kv
    e.prev_kv = mvcc::KeyValue();
  }
  for (bool complete : {true, false}) {
    harness::WatchChecker w;
    w.set_model(&model);
    for (const auto& [rev, evs] : ByRevision(Good())) w.OnCommitted(1, evs);
    harness::WatchChecker::Spec spec;
    spec.key = std::string(1, '\0');
    spec.range_end = spec.key;
    const int seg = w.Begin(spec, 1, 2, w.NewStream());
    w.OnResponse(seg, answer(1, {}, true));
    w.OnResponse(seg, answer(3, {all[0], all[1]}, false));
    if (complete) w.OnResponse(seg, answer(5, {all[2], all[3]}, false));
    std::vector<std::string> v;
    w.Check({{1, 5}}, &v);
    EXPECT_EQ(v.empty(), complete) << (v.empty() ? "" : v[0]);
  }
}

TEST(ChaosChecks, PromotionSeenLateOnlyExtendsTheLease) {
  harness::LeaseChecker::Bounds b;
  b.extend_ns = 1'000'000'000;
  const int64_t s = 1'000'000'000;
  // Granted at 0 (ttl 2 s); a keep-alive invoked at 3 s succeeds. That is
  // too late unless a new leader restored the lease: the answer's header
  // showed a new term, recorded as a promotion when it was seen.
  std::vector<LeaseEvent> ev(2);
  ev[0].kind = LeaseEvent::kGranted;
  ev[0].id = 7;
  ev[0].ttl_s = 2;
  ev[0].invoke_ns = 0;
  ev[0].return_ns = s / 100;
  ev[1].kind = LeaseEvent::kKeepAlive;
  ev[1].id = 7;
  ev[1].invoke_ns = 3 * s;
  ev[1].return_ns = 3 * s + s / 100;
  {
    harness::LeaseChecker c(b);
    ReplayLeaseEvents(ev, &c);
    EXPECT_EQ(c.violations().size(), 1u);
  }
  LeaseEvent p;
  p.kind = LeaseEvent::kPrimary;
  p.return_ns = ev[1].return_ns;  // seen in the keep-alive's own answer
  ev.push_back(p);
  {
    harness::LeaseChecker c(b);
    ReplayLeaseEvents(ev, &c);
    EXPECT_TRUE(c.violations().empty());
  }
}

TEST(ChaosChecks, EarlyExpiryIsCaught) {
  const int64_t s = 1'000'000'000;
  std::vector<LeaseEvent> ev(2);
  ev[0].kind = LeaseEvent::kGranted;
  ev[0].id = 9;
  ev[0].ttl_s = 3;
  ev[0].invoke_ns = 0;
  ev[0].return_ns = s / 100;
  ev[1].kind = LeaseEvent::kTimeToLive;  // "expired" after 1 s of 3
  ev[1].id = 9;
  ev[1].ttl_s = -1;
  ev[1].invoke_ns = s;
  ev[1].return_ns = s + s / 100;
  harness::LeaseChecker c;
  ReplayLeaseEvents(ev, &c);
  EXPECT_EQ(c.violations().size(), 1u);
}

// The workload against a live cluster (skipped unless one is named).
TEST(ChaosWorkload, LiveCluster) {
  const char* eps = std::getenv("DETCD_CHAOS_ENDPOINTS");
  if (eps == nullptr || *eps == '\0') {
    GTEST_SKIP() << "DETCD_CHAOS_ENDPOINTS not set";
  }
  WorkloadOptions o;
  o.endpoints = absl::StrSplit(eps, ',');
  const char* secs = std::getenv("DETCD_CHAOS_SECONDS");
  const int seconds = secs != nullptr ? std::atoi(secs) : 10;
  if (const char* seed = std::getenv("DETCD_CHAOS_SEED")) {
    o.seed = std::strtoull(seed, nullptr, 10);
  }
  if (const char* p = std::getenv("DETCD_CHAOS_PROGRESS")) {
    o.progress_requests = std::string(p) != "0";
  }
  Workload w(o);
  w.Start();
  std::this_thread::sleep_for(std::chrono::seconds(seconds));
  w.Stop();
  const CheckReport r = w.Check();
  std::printf("%s\n", r.summary.c_str());
  for (const std::string& f : r.failures)
    std::printf("FAILURE %s\n", f.c_str());
  const char* expect = std::getenv("DETCD_CHAOS_EXPECT");
  if (expect == nullptr || *expect == '\0') {
    EXPECT_TRUE(r.ok);
  } else {
    EXPECT_FALSE(r.ok);
    EXPECT_NE(std::find(r.caught_by.begin(), r.caught_by.end(), expect),
              r.caught_by.end());
  }
}

}  // namespace
}  // namespace detcd::chaos
