// EtcdStateMachine's incremental image (BeginSnapshot): the bytes of
// Snapshot() at the writer's start, written in bounded steps while entries
// go on being applied between them.
#include "engine/server/etcd_state_machine.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <memory>
#include <string>

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
  for (;;) {
    const bool sized = w->sized();
    absl::StatusOr<bool> done = w->Step(256, &out);
    ASSERT_TRUE(done.ok()) << done.status();
    ++steps;
    if (!sized) {
      EXPECT_TRUE(out.empty()) << "sizing writes nothing";
    }
    if (*done) break;
    Put(absl::StrCat("k", steps % 60), std::string(100, 'n'));
  }
  EXPECT_EQ(out, want);
  EXPECT_EQ(out.size(), w->size());
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

}  // namespace
}  // namespace detcd::server
