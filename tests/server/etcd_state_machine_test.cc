// EtcdStateMachine's incremental image (BeginSnapshot): the bytes of
// Snapshot() at the writer's start, written in bounded steps while entries
// go on being applied between them; and the slow-apply hook (etcd's "apply
// request took too long"), which times the apply alone; and AdoptData
// (disaster recovery) taking the auth store.
#include "engine/server/etcd_state_machine.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"

namespace detcd::server {
namespace {

std::string PutCmd(uint64_t id, const std::string& key,
                   const std::string& value) {
  etcdserverpb::InternalRaftRequest r;
  r.mutable_header()->set_id(id);
  r.mutable_put()->set_key(key);
  r.mutable_put()->set_value(value);
  return r.SerializeAsString();
}

std::string CompactCmd(uint64_t id, int64_t rev) {
  etcdserverpb::InternalRaftRequest r;
  r.mutable_header()->set_id(id);
  r.mutable_compaction()->set_revision(rev);
  return r.SerializeAsString();
}

class EtcdImageTest : public ::testing::Test {
 protected:
  void Put(const std::string& key, const std::string& value) {
    ++index_;
    sm_.ApplyFrom(index_, 1, PutCmd(index_, key, value));
  }
  void Fill(int n) {
    for (int i = 0; i < n; ++i) {
      Put(absl::StrCat("k", i % 50), std::string(i % 30, 'v'));
    }
  }
  EtcdStateMachine sm_{EtcdStateMachine::Options{}};
  uint64_t index_ = 0;
};

TEST_F(EtcdImageTest, StepsWriteTheSnapshotOfTheirStartWhileApplying) {
  Fill(500);
  const std::string want = sm_.Snapshot();
  std::unique_ptr<ImageWriter> w = sm_.BeginSnapshot();
  std::string out;
  int steps = 0;
  const uint64_t size = w->size();
  for (;;) {
    absl::StatusOr<bool> done = w->Step(256, &out);
    ASSERT_TRUE(done.ok()) << done.status();
    ++steps;
    if (*done) break;
    Put(absl::StrCat("k", steps % 60), std::string(100, 'n'));
  }
  EXPECT_EQ(out, want);
  EXPECT_EQ(out.size(), size);
  EXPECT_GT(steps, 10);
  EtcdStateMachine restored{EtcdStateMachine::Options{}};
  ASSERT_TRUE(restored.Restore(out).ok());
  EXPECT_EQ(restored.Snapshot(), want);
  EXPECT_NE(sm_.Snapshot(), want) << "the writes between went on";
}

TEST_F(EtcdImageTest, ACompactionUnderTheImageFailsIt) {
  Fill(100);
  std::unique_ptr<ImageWriter> w = sm_.BeginSnapshot();
  std::string out;
  ASSERT_TRUE(w->Step(64, &out).ok());
  ++index_;
  sm_.ApplyFrom(index_, 1, CompactCmd(index_, sm_.kv().Rev() - 10));
  ASSERT_EQ(sm_.kv().CompactRev(), sm_.kv().Rev() - 10);
  EXPECT_FALSE(w->Step(64, &out).ok());
}

TEST_F(EtcdImageTest, ARestoreUnderTheImageFailsIt) {
  Fill(100);
  const std::string image = sm_.Snapshot();
  std::unique_ptr<ImageWriter> w = sm_.BeginSnapshot();
  std::string out;
  ASSERT_TRUE(w->Step(64, &out).ok());
  ASSERT_TRUE(sm_.Restore(image).ok());
  EXPECT_FALSE(w->Step(64, &out).ok());
}

// Disaster recovery's AdoptData takes the auth store with the store and
// leases: the token provider follows its enabled flag, the image carries
// it ("detcd-sm4"), and a bad image changes nothing.
TEST(EtcdAdoptDataTest, TakesTheAuthStoreAndSyncsTheTokens) {
  int64_t now = 0;
  auth::SimpleTokenProvider tokens([&] { return now; }, [] { return 7; },
                                   auth::SimpleTokenProvider::kDefaultTtlNs);
  EtcdStateMachine::Options o;
  o.now_ns = [&] { return now; };
  o.tokens = &tokens;
  EtcdStateMachine sm(o);
  mvcc::KvStore kv;
  {
    auto t = kv.Write();
    t.Put("k", "v", 0);
    t.End();
  }
  const std::string lessor = lease::Lessor(lease::LessorOptions{}).Snapshot();
  auth::AuthStore as;
  ASSERT_TRUE(as.UserAdd("root", "h", false).ok());
  ASSERT_TRUE(as.UserGrantRole("root", "root").ok());
  ASSERT_TRUE(as.Enable().ok());

  const std::string before = sm.Snapshot();
  std::string bad = as.Snapshot();
  bad.pop_back();
  EXPECT_EQ(sm.AdoptData(kv.Snapshot(), lessor, bad).code(),
            absl::StatusCode::kDataLoss);
  EXPECT_EQ(sm.Snapshot(), before);
  EXPECT_EQ(sm.kv().Rev(), 1);

  ASSERT_TRUE(sm.AdoptData(kv.Snapshot(), lessor, as.Snapshot()).ok());
  EXPECT_EQ(sm.kv().Rev(), 2);
  EXPECT_TRUE(sm.auth().enabled());
  EXPECT_EQ(sm.auth().Snapshot(), as.Snapshot());
  ASSERT_TRUE(tokens.Assign("root", 3, 1, "p").ok());
  EXPECT_EQ(tokens.size(), 1u);  // kept only while enabled
  const std::string image = sm.Snapshot();
  EXPECT_EQ(image.substr(0, 9), "detcd-sm4");
  EtcdStateMachine copy{EtcdStateMachine::Options{}};
  ASSERT_TRUE(copy.Restore(image).ok());
  EXPECT_EQ(copy.auth().Snapshot(), as.Snapshot());

  // "" is a fresh auth store: off, and the image as before auth.
  ASSERT_TRUE(sm.AdoptData(kv.Snapshot(), lessor, "").ok());
  EXPECT_TRUE(sm.auth().pristine());
  EXPECT_EQ(tokens.size(), 0u);
  EXPECT_EQ(sm.Snapshot().substr(0, 9), "detcd-sm3");
}

// The member's clock moves 30 ms per reading; a request's apply reads it
// twice (before and after), so it "takes" 30 ms: slow past a 20 ms
// threshold, not past 50 ms. Requests that fail are reported with their
// error result.
TEST(EtcdSlowApplyTest, ReportsAppliesSlowerThanTheThreshold) {
  int64_t now = 0;
  EtcdStateMachine::Options o;
  o.now_ns = [&now] { return now += 30'000'000; };
  EtcdStateMachine sm(o);
  struct Seen {
    uint64_t id;
    bool has_put;
    absl::Status status;
    int64_t took_ns;
  };
  std::vector<Seen> seen;
  sm.set_on_slow_apply(
      [&seen](const etcdserverpb::InternalRaftRequest& r,
              std::string_view result, int64_t took_ns) {
        seen.push_back(
            {r.header().id(), r.has_put(), DecodeResult(result, nullptr),
             took_ns});
      },
      20'000'000);
  sm.ApplyFrom(1, 1, PutCmd(1, "a", "x"));
  sm.ApplyFrom(2, 1, CompactCmd(2, 100));  // a future revision: refused
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[0].id, 1u);
  EXPECT_TRUE(seen[0].has_put);
  EXPECT_TRUE(seen[0].status.ok());
  EXPECT_EQ(seen[0].took_ns, 30'000'000);
  EXPECT_EQ(seen[1].id, 2u);
  EXPECT_FALSE(seen[1].status.ok());
  EXPECT_EQ(seen[1].status.message(),
            "mvcc: required revision is a future revision");

  seen.clear();
  sm.set_on_slow_apply(
      [&seen](const etcdserverpb::InternalRaftRequest& r, std::string_view,
              int64_t took_ns) {
        seen.push_back({r.header().id(), r.has_put(), {}, took_ns});
      },
      50'000'000);
  sm.ApplyFrom(3, 1, PutCmd(3, "b", "y"));
  EXPECT_TRUE(seen.empty());
  EXPECT_EQ(sm.kv().Rev(), 3);  // both puts applied
}

}  // namespace
}  // namespace detcd::server
