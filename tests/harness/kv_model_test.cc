// The independent KV model: etcd's semantics on hand-written cases, and a
// differential test against the engine's state machine (the same random
// committed entries must give the same state, history, leases and events).
#include "harness/kv_model.h"

#include <string>
#include <vector>

#include "engine/env/env.h"
#include "engine/server/etcd_kv.h"
#include "engine/server/etcd_state_machine.h"
#include "engine/server/node.h"
#include "etcdserverpb/raft_internal.pb.h"
#include "gtest/gtest.h"

namespace detcd::harness {
namespace {

namespace pb = ::etcdserverpb;

class KvModelTest : public ::testing::Test {
 protected:
  KvModelTest() : sm_(SmOptions()) {
    sm_.set_on_events([this](const std::vector<mvcc::Event>& ev) {
      engine_events_.push_back(ev);
    });
  }
  static server::EtcdStateMachine::Options SmOptions() {
    server::EtcdStateMachine::Options o;
    o.lease.min_ttl_s = 1;
    o.now_ns = [] { return int64_t{0}; };
    return o;
  }
  // Commits r at the next index on both the model and the engine's state
  // machine; returns the engine's result status.
  absl::Status Commit(pb::InternalRaftRequest r, uint64_t id = 0) {
    r.mutable_header()->set_id(id != 0 ? id : ++next_id_);
    const std::string cmd = r.SerializeAsString();
    ++index_;
    raft::Entry e;
    e.index = index_;
    e.term = 1;
    e.data = server::Envelope(1, index_, cmd);
    model_.Apply(e);
    return server::DecodeResult(sm_.Apply(index_, cmd), nullptr);
  }
  void Skip() {  // an entry without a request (a leader's empty entry)
    raft::Entry e;
    e.index = ++index_;
    model_.Apply(e);
  }
  static pb::InternalRaftRequest Put(std::string k, std::string v,
                                     int64_t lease = 0) {
    pb::InternalRaftRequest r;
    r.mutable_put()->set_key(k);
    r.mutable_put()->set_value(v);
    r.mutable_put()->set_lease(lease);
    return r;
  }
  static pb::InternalRaftRequest Delete(std::string k, std::string end) {
    pb::InternalRaftRequest r;
    r.mutable_delete_range()->set_key(k);
    r.mutable_delete_range()->set_range_end(end);
    return r;
  }
  static pb::InternalRaftRequest Grant(int64_t id) {
    pb::InternalRaftRequest r;
    r.mutable_lease_grant()->set_id(id);
    r.mutable_lease_grant()->set_ttl(10);
    return r;
  }
  static pb::InternalRaftRequest Revoke(int64_t id) {
    pb::InternalRaftRequest r;
    r.mutable_lease_revoke()->set_id(id);
    return r;
  }
  static pb::InternalRaftRequest Compact(int64_t rev) {
    pb::InternalRaftRequest r;
    r.mutable_compaction()->set_revision(rev);
    return r;
  }
  std::string Diff() const { return model_.CompareAt(index_, sm_.kv(), sm_.lessor()); }

  KvModel model_;
  server::EtcdStateMachine sm_;
  std::vector<std::vector<mvcc::Event>> engine_events_;
  uint64_t index_ = 0;
  uint64_t next_id_ = 1000;
};

TEST_F(KvModelTest, PutsDeletesAndPrevKv) {
  ASSERT_TRUE(Commit(Put("a", "1")).ok());
  ASSERT_TRUE(Commit(Put("a", "2")).ok());
  ASSERT_TRUE(Commit(Put("b", "3")).ok());
  ASSERT_TRUE(Commit(Delete("a", "c")).ok());
  ASSERT_TRUE(Commit(Delete("zz", "")).ok());  // nothing: no revision
  Skip();
  EXPECT_EQ(model_.rev(), 5);
  EXPECT_EQ(model_.applied_index(), 6u);
  EXPECT_EQ(model_.RevAt(2), 3);
  const std::vector<mvcc::Event>& create = model_.EventsAt(2);
  ASSERT_EQ(create.size(), 1u);
  EXPECT_EQ(create[0].kv, (mvcc::KeyValue{"a", 2, 2, 1, "1", 0}));
  EXPECT_FALSE(create[0].has_prev_kv);
  const std::vector<mvcc::Event>& update = model_.EventsAt(3);
  ASSERT_EQ(update.size(), 1u);
  EXPECT_EQ(update[0].kv, (mvcc::KeyValue{"a", 2, 3, 2, "2", 0}));
  EXPECT_TRUE(update[0].has_prev_kv);
  EXPECT_EQ(update[0].prev_kv, (mvcc::KeyValue{"a", 2, 2, 1, "1", 0}));
  const std::vector<mvcc::Event>& del = model_.EventsAt(5);
  ASSERT_EQ(del.size(), 2u);
  EXPECT_EQ(del[0].type, mvcc::Event::kDelete);
  EXPECT_EQ(del[0].kv, (mvcc::KeyValue{"a", 0, 5, 0, "", 0}));
  EXPECT_EQ(del[0].prev_kv.value, "2");
  EXPECT_EQ(del[1].kv.key, "b");
  EXPECT_TRUE(model_.LiveAt(5).empty());
  EXPECT_EQ(model_.LiveAt(3).size(), 1u);
  EXPECT_EQ(Diff(), "");
}

TEST_F(KvModelTest, TxnComparesOnStateBeforeTheTxn) {
  ASSERT_TRUE(Commit(Put("a", "1")).ok());
  pb::InternalRaftRequest r;
  pb::TxnRequest* t = r.mutable_txn();
  pb::Compare* c = t->add_compare();
  c->set_key("a");
  c->set_target(pb::Compare::VALUE);
  c->set_result(pb::Compare::EQUAL);
  c->set_value("1");
  t->add_success()->mutable_request_put()->set_key("b");
  t->add_success()->mutable_request_delete_range()->set_key("a");
  // A nested txn: its compare sees "a" before the outer txn deleted it.
  pb::TxnRequest* nested = t->add_success()->mutable_request_txn();
  pb::Compare* nc = nested->add_compare();
  nc->set_key("a");
  nc->set_target(pb::Compare::VERSION);
  nc->set_result(pb::Compare::EQUAL);
  nc->set_version(1);
  nested->add_success()->mutable_request_put()->set_key("c");
  nested->add_failure()->mutable_request_put()->set_key("d");
  ASSERT_TRUE(Commit(r).ok());
  const std::vector<mvcc::Event>& ev = model_.EventsAt(3);
  ASSERT_EQ(ev.size(), 3u);
  EXPECT_EQ(ev[0].kv.key, "b");
  EXPECT_EQ(ev[1].kv.key, "a");
  EXPECT_EQ(ev[2].kv.key, "c");
  EXPECT_EQ(ev[2].kv.mod_revision, 3);
  EXPECT_EQ(engine_events_.back(), ev);
  EXPECT_EQ(Diff(), "");
  // A failed compare on a missing key's value takes the failure branch.
  pb::InternalRaftRequest f;
  pb::Compare* fc = f.mutable_txn()->add_compare();
  fc->set_key("missing");
  fc->set_target(pb::Compare::VALUE);
  fc->set_result(pb::Compare::NOT_EQUAL);
  fc->set_value("x");
  f.mutable_txn()->add_failure()->mutable_request_put()->set_key("e");
  ASSERT_TRUE(Commit(f).ok());
  EXPECT_EQ(model_.EventsAt(4).at(0).kv.key, "e");
  EXPECT_EQ(Diff(), "");
}

TEST_F(KvModelTest, LeasesAttachAndRevokeDeletesInOneRevision) {
  ASSERT_TRUE(Commit(Grant(7)).ok());
  EXPECT_FALSE(Commit(Grant(7)).ok());  // exists: no change either side
  EXPECT_FALSE(Commit(Put("x", "1", 8)).ok());  // no such lease
  ASSERT_TRUE(Commit(Put("y", "1", 7)).ok());
  ASSERT_TRUE(Commit(Put("x", "1", 7)).ok());
  ASSERT_TRUE(Commit(Put("z", "1", 7)).ok());
  ASSERT_TRUE(Commit(Put("z", "2")).ok());  // moves off the lease
  EXPECT_EQ(Diff(), "");
  EXPECT_EQ(model_.LeasesAt(index_), std::vector<int64_t>{7});
  ASSERT_TRUE(Commit(Revoke(7)).ok());
  const std::vector<mvcc::Event>& ev = model_.EventsAt(model_.rev());
  ASSERT_EQ(ev.size(), 2u);
  EXPECT_EQ(ev[0].kv.key, "x");
  EXPECT_EQ(ev[1].kv.key, "y");
  EXPECT_TRUE(model_.LeasesAt(index_).empty());
  EXPECT_EQ(model_.LeasesAt(1), std::vector<int64_t>{7});
  EXPECT_EQ(Diff(), "");
  EXPECT_FALSE(Commit(Revoke(7)).ok());
  EXPECT_EQ(Diff(), "");
}

TEST_F(KvModelTest, CompactionsAndRepeatedRequestIds) {
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(Commit(Put("k", "v")).ok());
  EXPECT_FALSE(Commit(Compact(9)).ok());  // future
  ASSERT_TRUE(Commit(Compact(3)).ok());
  EXPECT_FALSE(Commit(Compact(3)).ok());  // already compacted
  EXPECT_EQ(model_.compact_rev(), 3);
  EXPECT_EQ(model_.compactions(), std::vector<int64_t>{3});
  EXPECT_EQ(Diff(), "");
  // The same request id again (a duplicated proposal) is skipped.
  ASSERT_TRUE(Commit(Put("k", "dup"), 77).ok());
  EXPECT_FALSE(Commit(Put("k", "dup"), 77).ok());
  EXPECT_EQ(model_.rev(), 7);
  EXPECT_EQ(Diff(), "");
}

TEST_F(KvModelTest, AnIndexGapStopsTheModel) {
  raft::Entry e;
  e.index = 3;
  model_.Apply(e);
  EXPECT_NE(model_.problem(), "");
  EXPECT_EQ(model_.applied_index(), 0u);
}

// A member whose state is not the committed log's is told apart.
TEST_F(KvModelTest, CompareAtFindsADifferentState) {
  ASSERT_TRUE(Commit(Grant(5)).ok());
  ASSERT_TRUE(Commit(Put("a", "1", 5)).ok());
  const std::string image = sm_.Snapshot();
  ASSERT_TRUE(Commit(Put("a", "2", 5)).ok());
  EXPECT_EQ(Diff(), "");
  server::EtcdStateMachine old(SmOptions());
  ASSERT_TRUE(old.Restore(image).ok());
  EXPECT_NE(model_.CompareAt(index_, old.kv(), old.lessor()), "");
  EXPECT_EQ(model_.CompareAt(index_ - 1, old.kv(), old.lessor()), "");
  // Same revision, different value.
  server::EtcdStateMachine other(SmOptions());
  ASSERT_TRUE(other.Apply(1, Grant(5).SerializeAsString()).size() > 0);
  other.Apply(2, Put("a", "1", 5).SerializeAsString());
  other.Apply(3, Put("a", "X", 5).SerializeAsString());
  EXPECT_NE(model_.CompareAt(index_, other.kv(), other.lessor()), "");
}

// Random committed entries: the model and the state machine agree on the
// state after every entry and on every revision's events.
TEST_F(KvModelTest, AgreesWithTheStateMachineOnRandomEntries) {
  env::SeededRng rng(99);
  auto key = [&] { return std::string(1, static_cast<char>('a' + rng.Uniform(6))); };
  for (int step = 0; step < 3000; ++step) {
    pb::InternalRaftRequest r;
    const uint64_t dice = rng.Uniform(100);
    if (dice < 30) {
      r = Put(key(), std::to_string(step), rng.Chance(0.3) ? 1 + rng.Uniform(3) : 0);
      r.mutable_put()->set_ignore_value(rng.Chance(0.1));
      r.mutable_put()->set_ignore_lease(rng.Chance(0.1));
    } else if (dice < 40) {
      std::string k = key();
      r = Delete(k, rng.Chance(0.5) ? "" : (rng.Chance(0.3) ? std::string(1, '\0') : key()));
    } else if (dice < 75) {
      pb::TxnRequest* t = r.mutable_txn();
      for (int c = 0, n = rng.Uniform(3); c < n; ++c) {
        pb::Compare* cmp = t->add_compare();
        cmp->set_key(key());
        if (rng.Chance(0.2)) cmp->set_range_end(key());
        cmp->set_result(static_cast<pb::Compare::CompareResult>(rng.Uniform(4)));
        switch (rng.Uniform(5)) {
          case 0: cmp->set_target(pb::Compare::VALUE); cmp->set_value(std::to_string(rng.Uniform(step + 1))); break;
          case 1: cmp->set_target(pb::Compare::CREATE); cmp->set_create_revision(rng.Uniform(model_.rev() + 1)); break;
          case 2: cmp->set_target(pb::Compare::MOD); cmp->set_mod_revision(rng.Uniform(model_.rev() + 1)); break;
          case 3: cmp->set_target(pb::Compare::VERSION); cmp->set_version(rng.Uniform(4)); break;
          default: cmp->set_target(pb::Compare::LEASE); cmp->set_lease(rng.Uniform(3)); break;
        }
      }
      auto fill = [&](auto* ops, int depth, auto&& self) -> void {
        for (int o = 0, n = rng.Uniform(4); o < n; ++o) {
          pb::RequestOp* op = ops->Add();
          const uint64_t kind = rng.Uniform(depth < 1 ? 4 : 3);
          if (kind == 0) {
            op->mutable_request_put()->set_key(key());
            op->mutable_request_put()->set_value(std::to_string(step));
            if (rng.Chance(0.2)) op->mutable_request_put()->set_lease(1 + rng.Uniform(3));
          } else if (kind == 1) {
            op->mutable_request_delete_range()->set_key(key());
            if (rng.Chance(0.4)) op->mutable_request_delete_range()->set_range_end(key());
          } else if (kind == 2) {
            op->mutable_request_range()->set_key(key());
            if (rng.Chance(0.2)) op->mutable_request_range()->set_revision(rng.Uniform(model_.rev() + 3));
          } else {
            pb::TxnRequest* nt = op->mutable_request_txn();
            pb::Compare* cmp = nt->add_compare();
            cmp->set_key(key());
            cmp->set_target(pb::Compare::VERSION);
            cmp->set_result(pb::Compare::GREATER);
            nt->mutable_success();
            self(nt->mutable_success(), depth + 1, self);
            self(nt->mutable_failure(), depth + 1, self);
          }
        }
      };
      fill(t->mutable_success(), 0, fill);
      fill(t->mutable_failure(), 0, fill);
      // As the server: only txns that pass the checks before proposing
      // reach the log.
      if (!server::CheckTxn(*t, server::KvLimits()).ok()) continue;
    } else if (dice < 82) {
      r = Grant(1 + rng.Uniform(3));
    } else if (dice < 88) {
      r = Revoke(1 + rng.Uniform(3));
    } else if (dice < 92) {
      r = Compact(rng.Uniform(model_.rev() + 2));
    } else {
      Skip();
      continue;
    }
    const size_t before = engine_events_.size();
    (void)Commit(r);
    ASSERT_EQ(Diff(), "") << "step " << step << ": " << r.ShortDebugString();
    if (engine_events_.size() > before) {
      ASSERT_EQ(engine_events_.back(), model_.EventsAt(model_.rev()))
          << "step " << step;
    } else {
      ASSERT_EQ(model_.RevAt(index_), model_.RevAt(index_ - 1));
    }
  }
  EXPECT_GT(model_.rev(), 500);
}

}  // namespace
}  // namespace detcd::harness
