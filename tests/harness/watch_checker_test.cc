// The watch checker against its oracle (the KvModel): what a correct hub
// sends passes; wrong events, split revisions, broken fragments, missing
// events and unjustified compaction cancels are reported.
#include "harness/watch_checker.h"

#include <string>
#include <vector>

#include "engine/server/node.h"
#include "etcdserverpb/raft_internal.pb.h"
#include "gtest/gtest.h"

namespace detcd::harness {
namespace {

namespace pb = ::etcdserverpb;

class WatchCheckerTest : public ::testing::Test {
 protected:
  WatchCheckerTest() { checker_.set_model(&model_); }

  void Commit(const pb::InternalRaftRequest& r) {
    raft::Entry e;
    e.index = model_.applied_index() + 1;
    e.data = server::Envelope(1, e.index, r.SerializeAsString());
    model_.Apply(e);
  }
  void Put(std::string k, std::string v) {
    pb::InternalRaftRequest r;
    r.mutable_put()->set_key(k);
    r.mutable_put()->set_value(v);
    Commit(r);
  }
  void DeleteAll() {
    pb::InternalRaftRequest r;
    r.mutable_delete_range()->set_key("a");
    r.mutable_delete_range()->set_range_end(std::string(1, '\0'));
    Commit(r);
  }
  // A watcher on every key >= "a", created at revision 1 (from now).
  int Watch(bool prev_kv = false, bool fragment = false) {
    WatchChecker::Spec spec;
    spec.key = "a";
    spec.range_end = std::string(1, '\0');
    spec.prev_kv = prev_kv;
    spec.fragment = fragment;
    if (stream_ < 0) stream_ = checker_.NewStream();
    const int seg = checker_.Begin(spec, 1, 0, stream_);
    mvcc::WatchResponse created;
    created.created = true;
    created.revision = 1;
    checker_.OnResponse(seg, created);
    return seg;
  }
  // The model's events of revisions [from, to] as one response (without
  // prev_kv unless asked).
  mvcc::WatchResponse Events(int64_t from, int64_t to, bool prev_kv = false) {
    mvcc::WatchResponse r;
    for (int64_t rev = from; rev <= to; ++rev) {
      for (mvcc::Event e : model_.EventsAt(rev)) {
        if (!prev_kv) {
          e.has_prev_kv = false;
          e.prev_kv = mvcc::KeyValue();
        }
        r.events.push_back(e);
      }
    }
    r.revision = to;
    return r;
  }
  std::vector<std::string> Check(int64_t upto = 0) {
    std::vector<std::string> v;
    std::map<uint64_t, int64_t> applied;
    if (upto > 0) applied[1] = upto;
    checker_.Check(applied, &v);
    return v;
  }
  void Feed() {
    for (int64_t r = 2; r <= model_.rev(); ++r) {
      checker_.OnCommitted(1, model_.EventsAt(r));
    }
  }

  KvModel model_;
  WatchChecker checker_;
  int stream_ = -1;
};

TEST_F(WatchCheckerTest, WhatTheCommittedLogSaysPasses) {
  Put("a", "1");
  Put("b", "2");
  DeleteAll();  // revision 4: two events
  Feed();
  const int w = Watch(/*prev_kv=*/true);
  checker_.OnResponse(w, Events(2, 3, true));
  checker_.OnResponse(w, Events(4, 4, true));
  EXPECT_EQ(Check(4), std::vector<std::string>{});
}

TEST_F(WatchCheckerTest, AWrongPrevKvIsCaughtEvenIfEveryMemberFedIt) {
  Put("a", "1");
  Put("a", "2");
  const int w = Watch(/*prev_kv=*/true);
  mvcc::WatchResponse r = Events(2, 3, true);
  r.events[1].prev_kv.value = "2";  // the new value as prev_kv
  // Every member's feed carries the same wrong event.
  checker_.OnCommitted(1, {r.events[0]});
  checker_.OnCommitted(1, {r.events[1]});
  checker_.OnCommitted(2, {r.events[1]});
  checker_.OnResponse(w, r);
  std::vector<std::string> v = Check(3);
  ASSERT_EQ(v.size(), 2u);
  EXPECT_NE(v[0].find("watch feed"), std::string::npos) << v[0];
  EXPECT_NE(v[1].find("event #1"), std::string::npos) << v[1];
}

TEST_F(WatchCheckerTest, ASplitRevisionIsCaught) {
  Put("a", "1");
  DeleteAll();
  Feed();
  const int w = Watch();
  checker_.OnResponse(w, Events(2, 2));
  mvcc::WatchResponse del = Events(3, 3);
  ASSERT_EQ(del.events.size(), 1u);
  Put("b", "2");
  Put("c", "3");
  DeleteAll();  // revision 6: b and c
  Feed();
  mvcc::WatchResponse all = Events(3, 6);
  mvcc::WatchResponse first = all, second = all;
  first.events.resize(all.events.size() - 1);
  first.revision = 6;
  second.events.erase(second.events.begin(),
                      second.events.end() - 1);
  checker_.OnResponse(w, first);
  checker_.OnResponse(w, second);
  std::vector<std::string> v = Check(6);
  ASSERT_EQ(v.size(), 1u);
  EXPECT_NE(v[0].find("split over two responses"), std::string::npos) << v[0];
}

TEST_F(WatchCheckerTest, FragmentsFollowEtcdsRules) {
  Put("b", "2");
  Put("c", "3");
  DeleteAll();  // revision 4: b and c
  Feed();
  // Right: pieces of revision 4 with fragment=true but the last.
  {
    const int w = Watch(false, /*fragment=*/true);
    checker_.OnResponse(w, Events(2, 3));
    mvcc::WatchResponse all = Events(4, 4);
    mvcc::WatchResponse a = all, b = all;
    a.events.resize(1);
    a.fragment = true;
    b.events.erase(b.events.begin());
    checker_.OnResponse(w, a);
    checker_.OnResponse(w, b);
    EXPECT_EQ(Check(4), std::vector<std::string>{});
    EXPECT_EQ(checker_.fragments_received(), 1u);
  }
  // Wrong: to a watcher that did not ask, and interleaved with another
  // watcher's response on the same stream.
  const int x = Watch(false, /*fragment=*/false);
  const int y = Watch(false, /*fragment=*/true);
  mvcc::WatchResponse all = Events(4, 4);
  mvcc::WatchResponse a = all;
  a.events.resize(1);
  a.fragment = true;
  checker_.OnResponse(x, a);
  checker_.OnResponse(y, a);
  checker_.OnResponse(x, Events(2, 3));
  std::vector<std::string> v = Check();
  ASSERT_EQ(v.size(), 2u);
  EXPECT_NE(v[0].find("did not ask"), std::string::npos) << v[0];
  EXPECT_NE(v[1].find("came between the pieces"), std::string::npos) << v[1];
}

TEST_F(WatchCheckerTest, AConnectedWatcherMustHaveEverythingItsMemberApplied) {
  Put("a", "1");
  Put("b", "2");
  Feed();
  const int w = Watch();
  checker_.OnResponse(w, Events(2, 2));
  EXPECT_EQ(Check(2), std::vector<std::string>{});
  std::vector<std::string> v = Check(3);
  ASSERT_EQ(v.size(), 1u);
  EXPECT_NE(v[0].find("missing 1 events"), std::string::npos) << v[0];
  checker_.End(w);  // its member went down: a prefix is fine
  EXPECT_EQ(Check(3), std::vector<std::string>{});
}

TEST_F(WatchCheckerTest, CompactionCancelsNeedACommittedCompaction) {
  Put("a", "1");
  Put("a", "2");
  Put("a", "3");
  Feed();
  pb::InternalRaftRequest compact;
  compact.mutable_compaction()->set_revision(3);
  Commit(compact);
  WatchChecker::Spec spec;
  spec.key = "a";
  const int s = checker_.NewStream();
  auto canceled_at = [&](int64_t start, int64_t rev) {
    const int w = checker_.Begin(spec, 1, start, s);
    mvcc::WatchResponse c;
    c.created = true;
    c.revision = 4;
    checker_.OnResponse(w, c);
    mvcc::WatchResponse x;
    x.canceled = true;
    x.compact_revision = rev;
    checker_.OnResponse(w, x);
  };
  canceled_at(2, 3);  // right: revision 2 is gone
  EXPECT_EQ(Check(), std::vector<std::string>{});
  checker_.OnCompactionAcked(3);
  EXPECT_EQ(Check(), std::vector<std::string>{});
  canceled_at(2, 2);  // no compaction took effect at 2
  canceled_at(4, 3);  // revision 4 was never compacted
  checker_.OnCompactionAcked(2);
  std::vector<std::string> v = Check();
  ASSERT_EQ(v.size(), 3u);
  EXPECT_NE(v[0].find("acknowledged but never took effect"), std::string::npos)
      << v[0];
  EXPECT_NE(v[1].find("no compaction took effect"), std::string::npos) << v[1];
  EXPECT_NE(v[2].find("needed revision 4"), std::string::npos) << v[2];
}

}  // namespace
}  // namespace detcd::harness
