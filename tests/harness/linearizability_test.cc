#include "harness/linearizability.h"

#include <algorithm>
#include <cstdint>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "harness/history.h"
#include "harness/history_gen.h"
#include "rapidcheck.h"
#include "rapidcheck/gtest.h"

namespace detcd::harness {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::UnorderedElementsAre;

mvcc::KeyValue Kv(std::string key, std::string value, int64_t create,
                  int64_t mod, int64_t version) {
  mvcc::KeyValue kv;
  kv.key = std::move(key);
  kv.value = std::move(value);
  kv.create_revision = create;
  kv.mod_revision = mod;
  kv.version = version;
  return kv;
}

// Builds small histories; ids are assigned in order of addition.
class Builder {
 public:
  Operation& Add(int64_t invoke, int64_t ret, Request req,
                 Operation::Outcome outcome, int64_t rev) {
    Operation op;
    op.id = static_cast<int>(h_.ops.size());
    op.client = op.id;
    op.invoke_ns = invoke;
    op.return_ns = ret;
    op.outcome = outcome;
    op.req = std::move(req);
    op.resp.revision = rev;
    if (outcome == Operation::kOk) {
      op.resp.results.resize(op.req.success.size());
    }
    h_.ops.push_back(std::move(op));
    return h_.ops.back();
  }
  Operation& Put(int64_t invoke, int64_t ret, std::string key,
                 std::string value, int64_t rev,
                 Operation::Outcome outcome = Operation::kOk) {
    return Add(invoke, ret, PutRequest(std::move(key), std::move(value)),
               outcome, rev);
  }
  Operation& Get(int64_t invoke, int64_t ret, std::string key, int64_t rev,
                 std::vector<mvcc::KeyValue> kvs, bool serializable = false) {
    Operation& op =
        Add(invoke, ret, RangeRequest(std::move(key), "", serializable),
            Operation::kOk, rev);
    op.resp.results[0].count = static_cast<int64_t>(kvs.size());
    op.resp.results[0].kvs = std::move(kvs);
    return op;
  }
  Operation& Del(int64_t invoke, int64_t ret, std::string key, int64_t rev,
                 int64_t deleted) {
    Operation& op =
        Add(invoke, ret, DeleteRequest(std::move(key)), Operation::kOk, rev);
    op.resp.results[0].deleted = deleted;
    return op;
  }
  const History& h() const { return h_; }
  History& mutable_h() { return h_; }

 private:
  History h_;
};

bool Linearizable(const History& h, CheckOptions o = {}) {
  CheckResult r = CheckLinearizable(h, o);
  EXPECT_FALSE(r.inconclusive);
  if (!r.ok) {
    EXPECT_FALSE(r.window.empty());
    EXPECT_THAT(r.explanation, HasSubstr("not linearizable"));
  }
  return r.ok;
}

TEST(LinearizabilityTest, EmptyHistory) {
  EXPECT_TRUE(Linearizable(History{}));
}

TEST(LinearizabilityTest, SequentialHistoryIsLinearizable) {
  Builder b;
  b.Put(0, 10, "k", "a", 2);
  b.Get(20, 30, "k", 2, {Kv("k", "a", 2, 2, 1)});
  b.Put(40, 50, "k", "b", 3);
  b.Get(60, 70, "k", 3, {Kv("k", "b", 2, 3, 2)});
  b.Del(80, 90, "k", 4, 1);
  b.Get(100, 110, "k", 4, {});
  b.Put(120, 130, "k", "c", 5);
  b.Get(140, 150, "k", 5, {Kv("k", "c", 5, 5, 1)});
  EXPECT_TRUE(Linearizable(b.h()));
}

TEST(LinearizabilityTest, StaleReadAfterCompletedWrite) {
  Builder b;
  b.Put(0, 10, "k", "a", 2);
  b.Put(20, 30, "k", "b", 3);
  // Returns the old value at the new header revision.
  b.Get(40, 50, "k", 3, {Kv("k", "a", 2, 2, 1)});
  CheckResult r = CheckLinearizable(b.h());
  EXPECT_FALSE(r.ok);
  EXPECT_THAT(r.window, UnorderedElementsAre(1, 2));

  // The same stale state with a consistent (old) header revision breaks
  // real-time order instead.
  Builder c;
  c.Put(0, 10, "k", "a", 2);
  c.Put(20, 30, "k", "b", 3);
  c.Get(40, 50, "k", 2, {Kv("k", "a", 2, 2, 1)});
  r = CheckLinearizable(c.h());
  EXPECT_FALSE(r.ok);
  EXPECT_THAT(r.window, UnorderedElementsAre(1, 2));
  EXPECT_THAT(r.explanation, HasSubstr("returned before"));
}

TEST(LinearizabilityTest, ConcurrentWriteAndReadEitherWay) {
  for (bool sees_write : {false, true}) {
    Builder b;
    b.Put(0, 100, "k", "a", 2);
    if (sees_write) {
      b.Get(10, 20, "k", 2, {Kv("k", "a", 2, 2, 1)});
    } else {
      b.Get(10, 20, "k", 1, {});
    }
    EXPECT_TRUE(Linearizable(b.h())) << sees_write;
  }
  // But not the old state after the new one was seen.
  Builder b;
  b.Put(0, 100, "k", "a", 2);
  b.Get(10, 20, "k", 2, {Kv("k", "a", 2, 2, 1)});
  b.Get(30, 40, "k", 1, {});
  EXPECT_FALSE(Linearizable(b.h()));
}

TEST(LinearizabilityTest, UnknownWriteObservedLater) {
  Builder b;
  b.Put(0, 10, "k", "a", 0, Operation::kUnknown);
  b.Get(50, 60, "k", 2, {Kv("k", "a", 2, 2, 1)});
  EXPECT_TRUE(Linearizable(b.h()));
}

TEST(LinearizabilityTest, UnknownWriteTakesEffectAfterClientGaveUp) {
  Builder b;
  b.Put(0, 10, "k", "a", 0, Operation::kUnknown);
  b.Get(20, 30, "k", 1, {});
  b.Get(40, 50, "k", 2, {Kv("k", "a", 2, 2, 1)});
  EXPECT_TRUE(Linearizable(b.h()));
}

TEST(LinearizabilityTest, UnknownWriteNeverObserved) {
  Builder b;
  b.Put(0, 10, "k", "a", 0, Operation::kUnknown);
  b.Get(50, 60, "k", 1, {});
  EXPECT_TRUE(Linearizable(b.h()));
}

TEST(LinearizabilityTest, UnknownWriteCannotPrecedeItsInvoke) {
  Builder b;
  b.Get(0, 10, "k", 2, {Kv("k", "a", 2, 2, 1)});
  b.Put(20, 30, "k", "a", 0, Operation::kUnknown);
  EXPECT_FALSE(Linearizable(b.h()));
}

TEST(LinearizabilityTest, FailedWriteMustNotBeObserved) {
  Builder b;
  b.Put(0, 10, "k", "a", 0, Operation::kFail);
  b.Get(50, 60, "k", 2, {Kv("k", "a", 2, 2, 1)});
  EXPECT_FALSE(Linearizable(b.h()));
}

TEST(LinearizabilityTest, DuplicatedWrite) {
  Builder b;
  b.Put(0, 10, "k", "a", 2);
  // The same put applied twice: a second revision and version.
  b.Get(20, 30, "k", 3, {Kv("k", "a", 2, 3, 2)});
  CheckResult r = CheckLinearizable(b.h());
  EXPECT_FALSE(r.ok);
  // The read alone proves it: the history has one put of k, and it needs
  // two. The put is listed as context.
  EXPECT_THAT(r.window, ElementsAre(1));
  EXPECT_THAT(r.explanation, HasSubstr("related writes"));
  EXPECT_THAT(r.explanation, HasSubstr(FormatOp(b.h().ops[0])));
}

TEST(LinearizabilityTest, LostAcknowledgedWrite) {
  Builder b;
  b.Put(0, 10, "k", "a", 2);
  b.Put(20, 30, "k", "b", 3);
  b.Get(40, 50, "j", 3, {});
  b.Get(60, 70, "k", 3, {Kv("k", "a", 2, 2, 1)});
  CheckResult r = CheckLinearizable(b.h());
  EXPECT_FALSE(r.ok);
  EXPECT_THAT(r.window, UnorderedElementsAre(1, 3));

  // Lost entirely: the key is missing at a revision after the write.
  Builder c;
  c.Put(0, 10, "k", "a", 2);
  c.Get(20, 30, "k", 2, {});
  EXPECT_FALSE(Linearizable(c.h()));
}

TEST(LinearizabilityTest, RevisionMismatch) {
  {
    // Nothing can have made revision 2.
    Builder b;
    b.Put(0, 10, "k", "a", 3);
    EXPECT_FALSE(Linearizable(b.h()));
  }
  {
    // An unknown write can.
    Builder b;
    b.Put(0, 10, "j", "x", 0, Operation::kUnknown);
    b.Put(0, 10, "k", "a", 3);
    EXPECT_TRUE(Linearizable(b.h()));
  }
  {
    // Two writes claim the same revision.
    Builder b;
    b.Put(0, 10, "k", "a", 2);
    b.Put(0, 10, "j", "b", 2);
    CheckResult r = CheckLinearizable(b.h());
    EXPECT_FALSE(r.ok);
    EXPECT_THAT(r.explanation, HasSubstr("both wrote revision 2"));
  }
  {
    // A read's header revision must be the revision it saw.
    Builder b;
    b.Put(0, 10, "k", "a", 2);
    b.Get(20, 30, "k", 3, {Kv("k", "a", 2, 2, 1)});
    EXPECT_FALSE(Linearizable(b.h()));
  }
  {
    // Concurrent writes may take revisions in either order...
    Builder b;
    b.Put(0, 100, "k", "a", 3);
    b.Put(0, 100, "j", "b", 2);
    b.Get(200, 210, "k", 3, {Kv("k", "a", 3, 3, 1)});
    EXPECT_TRUE(Linearizable(b.h()));
  }
  {
    // ...but not against real time.
    Builder b;
    b.Put(0, 10, "k", "a", 3);
    b.Put(20, 30, "j", "b", 2);
    EXPECT_FALSE(Linearizable(b.h()));
  }
}

TEST(LinearizabilityTest, ExternalWritesFillRevisionGaps) {
  Builder b;
  b.Put(0, 10, "k", "a", 5);
  b.Get(20, 30, "k", 7, {Kv("k", "a", 5, 5, 1)});
  CheckOptions o;
  EXPECT_FALSE(Linearizable(b.h(), o));
  o.external_writes = true;
  EXPECT_TRUE(Linearizable(b.h(), o));
  // They never change keys the history sees.
  Builder c;
  c.Put(0, 10, "k", "a", 5);
  c.Get(20, 30, "k", 7, {Kv("k", "b", 6, 6, 1)});
  EXPECT_FALSE(Linearizable(c.h(), o));
}

// Txn: if(cmp) then(put k=new) else(range k).
Request CasRequest(Compare cmp, std::string key, std::string value) {
  Request r;
  r.compares.push_back(std::move(cmp));
  r.success = PutRequest(key, std::move(value)).success;
  r.failure = RangeRequest(std::move(key)).success;
  return r;
}

Compare Cmp(Compare::Target t, Compare::Result res, std::string key,
            int64_t number, std::string value = "",
            std::string range_end = "") {
  Compare c;
  c.target = t;
  c.result = res;
  c.key = std::move(key);
  c.range_end = std::move(range_end);
  c.number = number;
  c.value = std::move(value);
  return c;
}

// Runs one txn on the state {k: "a"@c2/m2/v1} (or an empty store) and
// checks that the history claiming `succeeded` is accepted exactly when
// etcd would take that branch.
bool TxnBranch(const Compare& cmp, bool key_exists, bool succeeded) {
  Builder b;
  const int64_t base = key_exists ? 2 : 1;
  if (key_exists) b.Put(0, 10, "k", "a", 2);
  Operation& op = b.Add(20, 30, CasRequest(cmp, "k", "new"), Operation::kOk,
                        succeeded ? base + 1 : base);
  op.resp.succeeded = succeeded;
  if (!succeeded) {
    op.resp.results.resize(1);
    if (key_exists) {
      op.resp.results[0].kvs = {Kv("k", "a", 2, 2, 1)};
      op.resp.results[0].count = 1;
    }
  }
  CheckResult r = CheckLinearizable(b.h());
  EXPECT_FALSE(r.inconclusive);
  return r.ok;
}

// Expects the compare to take branch `expected` (and not the other one).
void ExpectBranch(const Compare& cmp, bool key_exists, bool expected) {
  EXPECT_TRUE(TxnBranch(cmp, key_exists, expected))
      << "exists=" << key_exists << " expected=" << expected;
  EXPECT_FALSE(TxnBranch(cmp, key_exists, !expected))
      << "exists=" << key_exists << " expected=" << expected;
}

TEST(LinearizabilityTest, TxnCompareOnMissingKey) {
  // A value compare on a missing key is false, whatever the operator.
  ExpectBranch(Cmp(Compare::kValue, Compare::kEqual, "k", 0, ""), false, false);
  ExpectBranch(Cmp(Compare::kValue, Compare::kNotEqual, "k", 0, "x"), false,
               false);
  ExpectBranch(Cmp(Compare::kValue, Compare::kLess, "k", 0, "zzz"), false,
               false);
  // Other targets see zeros.
  ExpectBranch(Cmp(Compare::kVersion, Compare::kEqual, "k", 0), false, true);
  ExpectBranch(Cmp(Compare::kCreate, Compare::kEqual, "k", 0), false, true);
  ExpectBranch(Cmp(Compare::kMod, Compare::kLess, "k", 5), false, true);
  ExpectBranch(Cmp(Compare::kLease, Compare::kEqual, "k", 0), false, true);
  ExpectBranch(Cmp(Compare::kVersion, Compare::kGreater, "k", 0), false, false);
}

TEST(LinearizabilityTest, TxnCompareOnExistingKey) {
  ExpectBranch(Cmp(Compare::kValue, Compare::kEqual, "k", 0, "a"), true, true);
  ExpectBranch(Cmp(Compare::kValue, Compare::kEqual, "k", 0, "b"), true, false);
  ExpectBranch(Cmp(Compare::kValue, Compare::kLess, "k", 0, "b"), true, true);
  ExpectBranch(Cmp(Compare::kValue, Compare::kGreater, "k", 0, "b"), true,
               false);
  ExpectBranch(Cmp(Compare::kVersion, Compare::kEqual, "k", 1), true, true);
  ExpectBranch(Cmp(Compare::kVersion, Compare::kEqual, "k", 0), true, false);
  ExpectBranch(Cmp(Compare::kCreate, Compare::kEqual, "k", 2), true, true);
  ExpectBranch(Cmp(Compare::kMod, Compare::kGreater, "k", 2), true, false);
  ExpectBranch(Cmp(Compare::kMod, Compare::kNotEqual, "k", 3), true, true);
}

TEST(LinearizabilityTest, TxnRangedCompareNeedsEveryExistingKey) {
  // State: a@v1, c@v2; b missing. The range [a, d) holds a and c only.
  auto run = [](const Compare& cmp, bool succeeded) {
    Builder b;
    b.Put(0, 10, "a", "x", 2);
    b.Put(20, 30, "c", "y", 3);
    b.Put(40, 50, "c", "z", 4);
    Request req;
    req.compares.push_back(cmp);
    req.success = PutRequest("b", "new").success;
    req.failure = RangeRequest("b").success;
    Operation& op = b.Add(60, 70, req, Operation::kOk, succeeded ? 5 : 4);
    op.resp.succeeded = succeeded;
    return CheckLinearizable(b.h()).ok;
  };
  const Compare gt0 =
      Cmp(Compare::kVersion, Compare::kGreater, "a", 0, "", "d");
  EXPECT_TRUE(run(gt0, true));
  EXPECT_FALSE(run(gt0, false));
  const Compare gt1 =
      Cmp(Compare::kVersion, Compare::kGreater, "a", 1, "", "d");
  EXPECT_TRUE(run(gt1, false));
  EXPECT_FALSE(run(gt1, true));
  // "\0" as range end: every key >= "b" (only c).
  const Compare from_b =
      Cmp(Compare::kVersion, Compare::kEqual, "b", 2, "", std::string(1, '\0'));
  EXPECT_TRUE(run(from_b, true));
  // An empty range behaves like a missing key.
  const Compare empty_value =
      Cmp(Compare::kValue, Compare::kEqual, "d", 0, "", "e");
  EXPECT_TRUE(run(empty_value, false));
  EXPECT_FALSE(run(empty_value, true));
}

TEST(LinearizabilityTest, TxnReadsSeeEarlierWritesOfTheSameTxn) {
  Builder b;
  Request req;
  req.success.push_back(PutRequest("a", "1").success[0]);
  req.success.push_back(RangeRequest("a", "z").success[0]);
  req.success.push_back(PutRequest("b", "2", /*prev_kv=*/true).success[0]);
  Operation& op = b.Add(0, 10, req, Operation::kOk, 2);
  op.resp.results.resize(3);
  op.resp.results[1].kvs = {Kv("a", "1", 2, 2, 1)};
  op.resp.results[1].count = 1;
  b.Get(20, 30, "b", 2, {Kv("b", "2", 2, 2, 1)});
  EXPECT_TRUE(Linearizable(b.h()));
  // A changed txn takes exactly one revision for all its writes.
  b.mutable_h().ops[1].resp.revision = 3;
  b.mutable_h().ops[1].resp.results[0].kvs = {Kv("b", "2", 3, 3, 1)};
  EXPECT_FALSE(Linearizable(b.h()));
}

TEST(LinearizabilityTest, TxnWithoutChangesKeepsTheRevision) {
  Builder b;
  b.Put(0, 10, "k", "a", 2);
  Request req;
  req.success = DeleteRequest("missing").success;
  Operation& op = b.Add(20, 30, req, Operation::kOk, 2);
  op.resp.results[0].deleted = 0;
  b.Put(40, 50, "k", "b", 3);
  EXPECT_TRUE(Linearizable(b.h()));
  b.mutable_h().ops[1].resp.revision = 3;
  EXPECT_FALSE(Linearizable(b.h()));
}

TEST(LinearizabilityTest, PrevKvAndDeleteResults) {
  Builder b;
  b.Put(0, 10, "k", "a", 2);
  Operation& put =
      b.Add(20, 30, PutRequest("k", "b", /*prev_kv=*/true), Operation::kOk, 3);
  put.resp.results[0].has_prev = true;
  put.resp.results[0].prev = Kv("k", "a", 2, 2, 1);
  Operation& del = b.Add(40, 50, DeleteRequest("a", "z", /*prev_kv=*/true),
                         Operation::kOk, 4);
  del.resp.results[0].deleted = 1;
  del.resp.results[0].prev_kvs = {Kv("k", "b", 2, 3, 2)};
  EXPECT_TRUE(Linearizable(b.h()));
  // Wrong prev.
  History h = b.h();
  h.ops[1].resp.results[0].prev = Kv("k", "x", 2, 2, 1);
  EXPECT_FALSE(Linearizable(h));
  // Wrong deleted count.
  h = b.h();
  h.ops[2].resp.results[0].deleted = 2;
  EXPECT_FALSE(Linearizable(h));
}

TEST(LinearizabilityTest, SerializableReadOfAStateThatNeverExisted) {
  Builder b;
  b.Put(0, 10, "k", "a", 2);
  b.Put(20, 30, "k", "b", 3);
  b.Get(40, 50, "k", 2, {Kv("k", "b", 2, 2, 1)}, /*serializable=*/true);
  EXPECT_FALSE(Linearizable(b.h()));
}

TEST(LinearizabilityTest, SerializableStaleReadIsAllowed) {
  Builder b;
  b.Put(0, 10, "k", "a", 2);
  b.Put(20, 30, "k", "b", 3);
  b.Get(40, 50, "k", 2, {Kv("k", "a", 2, 2, 1)}, /*serializable=*/true);
  b.Get(60, 70, "k", 1, {}, /*serializable=*/true);
  EXPECT_TRUE(Linearizable(b.h()));
}

TEST(LinearizabilityTest, SerializableReadCannotSeeTheFuture) {
  Builder b;
  b.Get(0, 10, "k", 2, {Kv("k", "a", 2, 2, 1)}, /*serializable=*/true);
  b.Put(20, 30, "k", "a", 2);
  CheckResult r = CheckLinearizable(b.h());
  EXPECT_FALSE(r.ok);
  // The read alone: nothing invoked before it returned wrote k.
  EXPECT_THAT(r.window, ElementsAre(0));
  // Same with an unknown write: found by the search.
  Builder c;
  c.Get(0, 10, "k", 2, {Kv("k", "a", 2, 2, 1)}, /*serializable=*/true);
  c.Put(20, 30, "k", "a", 0, Operation::kUnknown);
  EXPECT_FALSE(Linearizable(c.h()));
}

TEST(LinearizabilityTest, SerializableReadsAndUnknownWritesTogether) {
  // The serializable read fixes which unknown write made revision 2.
  Builder b;
  b.Put(0, 10, "k", "a", 0, Operation::kUnknown);
  b.Put(0, 10, "k", "b", 0, Operation::kUnknown);
  b.Put(20, 30, "j", "c", 3);
  b.Get(40, 50, "k", 2, {Kv("k", "b", 2, 2, 1)}, /*serializable=*/true);
  EXPECT_TRUE(Linearizable(b.h()));
  b.mutable_h().ops[3].resp.results[0].kvs = {Kv("k", "z", 2, 2, 1)};
  EXPECT_FALSE(Linearizable(b.h()));
}

TEST(LinearizabilityTest, SearchFindsViolationsThePrechecksMiss) {
  // The txn's compare saw version 2, but only one put happened before it.
  Builder b;
  b.Put(0, 10, "k", "a", 2);
  b.Put(0, 10, "j", "x", 0, Operation::kUnknown);
  Operation& op = b.Add(
      20, 30,
      CasRequest(Cmp(Compare::kVersion, Compare::kEqual, "k", 2), "k", "new"),
      Operation::kOk, 4);
  op.resp.succeeded = true;
  CheckResult r = CheckLinearizable(b.h());
  EXPECT_FALSE(r.ok);
  EXPECT_FALSE(r.inconclusive);
  // The txn alone: only one put of k exists anywhere.
  EXPECT_THAT(r.window, ElementsAre(2));
  EXPECT_THAT(r.explanation, HasSubstr("#2 "));
}

TEST(LinearizabilityTest, StateLimitIsInconclusive) {
  // Twelve keys, each with an unknown put and an unknown delete; revisions
  // 2..8 must be made by seven of them, but a range at revision 9 sees no
  // key but z. Every key put must be deleted again, two steps per key, so
  // seven steps cannot do it: refuting it means trying the orders (the
  // learned nogoods cut them down; a small limit leaves it undecided, and
  // a larger one refutes it).
  Builder b;
  for (int i = 0; i < 12; ++i) {
    b.Put(0, 10, "k" + std::to_string(i), "v", 0, Operation::kUnknown);
    b.Add(0, 10, DeleteRequest("k" + std::to_string(i)), Operation::kUnknown,
          0);
  }
  b.Put(20, 30, "z", "a", 9);
  Operation& all = b.Add(40, 50, RangeRequest("a", "zz"), Operation::kOk, 9);
  all.resp.results[0].kvs = {Kv("z", "a", 9, 9, 1)};
  all.resp.results[0].count = 1;
  CheckOptions o;
  o.max_states = 20;
  CheckResult r = CheckLinearizable(b.h(), o);
  EXPECT_TRUE(r.ok);
  EXPECT_TRUE(r.inconclusive);
  EXPECT_EQ(r.explanation, "inconclusive: state limit");
  o.max_states = 1'000'000;
  r = CheckLinearizable(b.h(), o);
  EXPECT_FALSE(r.ok) << r.explanation;
  EXPECT_FALSE(r.inconclusive);
  EXPECT_GT(r.states_explored, 20u);
}

TEST(LinearizabilityTest, FormatOp) {
  Builder b;
  Operation& op = b.Get(5, 9, "k", 3, {Kv("k", "a", 2, 3, 2)});
  EXPECT_EQ(FormatOp(op),
            "#0 c0 [5,9] ok rev=3: range(k) -> {k=\"a\"@c2/m3/v2} count=1");
  Operation& put = b.Put(1, 2, "k", "b", 0, Operation::kUnknown);
  EXPECT_EQ(FormatOp(put), "#1 c1 [1,2] unknown: put(k=\"b\")");
  Operation& txn = b.Add(
      3, 4,
      CasRequest(Cmp(Compare::kValue, Compare::kEqual, "k", 0, "a"), "k", "c"),
      Operation::kOk, 4);
  EXPECT_EQ(FormatOp(txn),
            "#2 c2 [3,4] ok rev=4: txn if(value(k)==\"a\") then(put(k=\"c\")) "
            "else(range(k)) -> then ok");
}

// --- Txns that change one key twice in one revision (etcd 3.4 accepts a
// delete over a from-key range and a put inside it in one txn: its
// duplicate-key check sees the from-key range as empty).

const std::string kFromKey(1, '\0');

Request DeleteThenPut(bool del_prev_kv, bool put_prev_kv) {
  Request r;
  r.success.push_back(DeleteRequest("a", kFromKey, del_prev_kv).success[0]);
  r.success.push_back(PutRequest("a", "2", put_prev_kv).success[0]);
  return r;
}

TEST(LinearizabilityTest, DeleteFromKeyThenPutInOneTxn) {
  for (bool del_prev : {false, true}) {
    for (bool put_prev : {false, true}) {
      Builder b;
      b.Put(0, 10, "a", "1", 2);
      Operation& txn =
          b.Add(20, 30, DeleteThenPut(del_prev, put_prev), Operation::kOk, 3);
      txn.resp.results[0].deleted = 1;
      if (del_prev) txn.resp.results[0].prev_kvs = {Kv("a", "1", 2, 2, 1)};
      b.Get(40, 50, "a", 3, {Kv("a", "2", 3, 3, 1)});
      EXPECT_TRUE(Linearizable(b.h())) << del_prev << put_prev;
      // The recreated key starts a new incarnation: claiming the old one
      // goes on is caught.
      History h = b.h();
      h.ops[2].resp.results[0].kvs = {Kv("a", "2", 2, 3, 2)};
      EXPECT_FALSE(Linearizable(h)) << del_prev << put_prev;
      // And so is a read of the value before the txn at its revision.
      h = b.h();
      h.ops[2].resp.results[0].kvs = {Kv("a", "1", 2, 2, 1)};
      EXPECT_FALSE(Linearizable(h)) << del_prev << put_prev;
      // The same txn as an unknown op fills revision 3.
      h = b.h();
      h.ops[1].outcome = Operation::kUnknown;
      EXPECT_TRUE(Linearizable(h)) << del_prev << put_prev;
    }
  }
}

TEST(LinearizabilityTest, DeleteFromKeyThenPutOnAMissingKey) {
  // Nothing to delete but b: the put creates a at the txn's revision.
  Builder b;
  b.Put(0, 10, "b", "x", 2);
  Operation& txn = b.Add(20, 30, DeleteThenPut(true, true), Operation::kOk, 3);
  txn.resp.results[0].deleted = 1;
  txn.resp.results[0].prev_kvs = {Kv("b", "x", 2, 2, 1)};
  Operation& all =
      b.Add(40, 50, RangeRequest("a", kFromKey), Operation::kOk, 3);
  all.resp.results[0].kvs = {Kv("a", "2", 3, 3, 1)};
  all.resp.results[0].count = 1;
  EXPECT_TRUE(Linearizable(b.h()));
  // b must be gone.
  History h = b.h();
  h.ops[2].resp.results[0].kvs.push_back(Kv("b", "x", 2, 2, 1));
  h.ops[2].resp.results[0].count = 2;
  EXPECT_FALSE(Linearizable(h));
}

TEST(LinearizabilityTest, PutThenDeleteFromKeyInOneTxn) {
  Builder b;
  b.Put(0, 10, "b", "x", 2);
  Request req;
  req.success.push_back(PutRequest("a", "2", /*prev_kv=*/true).success[0]);
  req.success.push_back(DeleteRequest("a", kFromKey, true).success[0]);
  Operation& txn = b.Add(20, 30, req, Operation::kOk, 3);
  // The delete sees the txn's own put.
  txn.resp.results[1].deleted = 2;
  txn.resp.results[1].prev_kvs = {Kv("a", "2", 3, 3, 1), Kv("b", "x", 2, 2, 1)};
  b.Get(40, 50, "a", 3, {});
  b.Get(60, 70, "b", 3, {});
  EXPECT_TRUE(Linearizable(b.h()));
  // The put does not survive its own txn.
  History h = b.h();
  h.ops[2].resp.results[0].kvs = {Kv("a", "2", 3, 3, 1)};
  h.ops[2].resp.results[0].count = 1;
  EXPECT_FALSE(Linearizable(h));
  // A later put creates a again, at version 1.
  Builder c = b;
  c.Put(80, 90, "a", "3", 4);
  c.Get(100, 110, "a", 4, {Kv("a", "3", 4, 4, 1)});
  EXPECT_TRUE(Linearizable(c.h()));
  History bad = c.h();
  bad.ops[5].resp.results[0].kvs = {Kv("a", "3", 3, 4, 2)};
  EXPECT_FALSE(Linearizable(bad));
}

TEST(LinearizabilityTest, DeleteThenPutWithUnknownWritesAround) {
  // An unknown put of a, then the txn recreates a: a read at the txn's
  // revision sees version 1 whether or not the unknown put happened.
  Builder b;
  b.Put(0, 10, "a", "0", 0, Operation::kUnknown);
  b.Put(20, 30, "b", "1", 3);
  Operation& txn =
      b.Add(40, 50, DeleteThenPut(false, false), Operation::kOk, 4);
  txn.resp.results[0].deleted = 2;
  b.Get(60, 70, "a", 4, {Kv("a", "2", 4, 4, 1)});
  EXPECT_TRUE(Linearizable(b.h()));
  // Deleting two keys needs the unknown put to have happened (at 2).
  History h = b.h();
  h.ops[0].outcome = Operation::kFail;
  EXPECT_FALSE(Linearizable(h));
}

// --- Leases: a put with a lease attaches the key, a LeaseRevoke deletes
// every attached key in one revision (none if nothing is attached).

Operation& PutWithLease(Builder& b, int64_t invoke, int64_t ret,
                        std::string key, std::string value, int64_t lease,
                        int64_t rev,
                        Operation::Outcome outcome = Operation::kOk) {
  Request req = PutRequest(std::move(key), std::move(value));
  req.success[0].lease = lease;
  return b.Add(invoke, ret, std::move(req), outcome, rev);
}

mvcc::KeyValue LeasedKv(std::string key, std::string value, int64_t create,
                        int64_t mod, int64_t version, int64_t lease) {
  mvcc::KeyValue kv =
      Kv(std::move(key), std::move(value), create, mod, version);
  kv.lease = lease;
  return kv;
}

Operation& RangeAll(Builder& b, int64_t invoke, int64_t ret, int64_t rev,
                    std::vector<mvcc::KeyValue> kvs) {
  Operation& op = b.Add(invoke, ret, RangeRequest("a", std::string(1, '\0')),
                        Operation::kOk, rev);
  op.resp.results[0].count = static_cast<int64_t>(kvs.size());
  op.resp.results[0].kvs = std::move(kvs);
  return op;
}

TEST(LinearizabilityTest, LeaseRevokeDeletesAttachedKeys) {
  Builder b;
  PutWithLease(b, 0, 10, "a", "1", 7, 2);
  PutWithLease(b, 20, 30, "b", "2", 7, 3);
  b.Put(40, 50, "c", "3", 4);
  b.Add(60, 70, RevokeRequest(7), Operation::kOk, 5);
  RangeAll(b, 80, 90, 5, {Kv("c", "3", 4, 4, 1)});
  EXPECT_TRUE(Linearizable(b.h()));
  // An attached key that survives the revoke.
  History h = b.h();
  h.ops[4].resp.results[0].kvs = {LeasedKv("a", "1", 2, 2, 1, 7),
                                  Kv("c", "3", 4, 4, 1)};
  h.ops[4].resp.results[0].count = 2;
  EXPECT_FALSE(Linearizable(h));
  // One revision for all the keys it deletes.
  h = b.h();
  h.ops[3].resp.revision = 6;
  h.ops[4].resp.revision = 6;
  EXPECT_FALSE(Linearizable(h));
  // A key attached to another lease stays.
  Builder c;
  PutWithLease(c, 0, 10, "a", "1", 8, 2);
  c.Add(20, 30, RevokeRequest(7), Operation::kOk, 2);
  RangeAll(c, 40, 50, 2, {LeasedKv("a", "1", 2, 2, 1, 8)});
  EXPECT_TRUE(Linearizable(c.h()));
}

TEST(LinearizabilityTest, LeaseRevokeWithoutKeysTakesNoRevision) {
  Builder b;
  b.Put(0, 10, "a", "1", 2);
  b.Add(20, 30, RevokeRequest(7), Operation::kOk, 2);
  b.Put(40, 50, "a", "2", 3);
  EXPECT_TRUE(Linearizable(b.h()));
  b.mutable_h().ops[1].resp.revision = 3;
  b.mutable_h().ops[2].resp.revision = 4;
  EXPECT_FALSE(Linearizable(b.h()));
}

TEST(LinearizabilityTest, PutWithoutLeaseDetachesTheKey) {
  Builder b;
  PutWithLease(b, 0, 10, "a", "1", 7, 2);
  b.Put(20, 30, "a", "2", 3);
  b.Add(40, 50, RevokeRequest(7), Operation::kOk, 3);
  b.Get(60, 70, "a", 3, {Kv("a", "2", 2, 3, 2)});
  EXPECT_TRUE(Linearizable(b.h()));
  // Still attached: the revoke would have deleted it.
  Builder c;
  PutWithLease(c, 0, 10, "a", "1", 7, 2);
  PutWithLease(c, 20, 30, "a", "2", 7, 3);
  c.Add(40, 50, RevokeRequest(7), Operation::kOk, 3);
  c.Get(60, 70, "a", 3, {LeasedKv("a", "2", 2, 3, 2, 7)});
  EXPECT_FALSE(Linearizable(c.h()));
}

TEST(LinearizabilityTest, ConcurrentRevokeEitherWay) {
  // The revoke is concurrent with the read: before it (revision 3, the
  // key gone) or after it (revision 2, the key there) are both fine.
  for (bool revoked_first : {false, true}) {
    Builder b;
    PutWithLease(b, 0, 10, "a", "1", 7, 2);
    b.Add(20, 100, RevokeRequest(7), Operation::kOk, 3);
    if (revoked_first) {
      b.Get(30, 40, "a", 3, {});
    } else {
      b.Get(30, 40, "a", 2, {LeasedKv("a", "1", 2, 2, 1, 7)});
    }
    EXPECT_TRUE(Linearizable(b.h())) << revoked_first;
  }
  // But not after the revoke returned.
  Builder b;
  PutWithLease(b, 0, 10, "a", "1", 7, 2);
  b.Add(20, 30, RevokeRequest(7), Operation::kOk, 3);
  b.Get(40, 50, "a", 2, {LeasedKv("a", "1", 2, 2, 1, 7)});
  EXPECT_FALSE(Linearizable(b.h()));
}

TEST(LinearizabilityTest, LeaseExpiryIsAnUnknownRevoke) {
  // Granted at 5; the leader revokes it at some time: revision 3 is its.
  Builder b;
  b.Add(5, 5, RevokeRequest(7), Operation::kUnknown, 0);
  PutWithLease(b, 10, 20, "a", "1", 7, 2);
  b.Get(30, 40, "a", 2, {LeasedKv("a", "1", 2, 2, 1, 7)});
  b.Put(50, 60, "b", "2", 4);
  RangeAll(b, 70, 80, 4, {Kv("b", "2", 4, 4, 1)});
  EXPECT_TRUE(Linearizable(b.h()));
  // Without the expiry nothing can make revision 3 and delete a.
  History h = b.h();
  h.ops[0].outcome = Operation::kFail;
  EXPECT_FALSE(Linearizable(h));
  // An expiry does not delete keys of other leases.
  h = b.h();
  h.ops[1].req.success[0].lease = 8;
  h.ops[2].resp.results[0].kvs[0].lease = 8;
  EXPECT_FALSE(Linearizable(h));
  // It may take effect any time after its invoke, also on a key attached
  // before it (here: after the put, before the read).
  Builder c;
  c.Add(50, 50, RevokeRequest(7), Operation::kUnknown, 0);
  PutWithLease(c, 0, 10, "a", "1", 7, 2);
  c.Get(60, 70, "a", 3, {});
  EXPECT_TRUE(Linearizable(c.h()));
  c.mutable_h().ops[2].resp.revision = 2;
  EXPECT_FALSE(Linearizable(c.h()));  // a is there at 2
  Builder d;
  d.Add(50, 50, RevokeRequest(7), Operation::kUnknown, 0);
  PutWithLease(d, 0, 10, "a", "1", 7, 2);
  d.Get(60, 70, "a", 2, {LeasedKv("a", "1", 2, 2, 1, 7)});
  d.Get(80, 90, "a", 3, {});
  EXPECT_TRUE(Linearizable(d.h()));
  // Not before its invoke: a read that returned before it was invoked
  // cannot miss the key.
  Builder e;
  PutWithLease(e, 0, 10, "a", "1", 7, 2);
  e.Get(20, 30, "a", 3, {});
  e.Add(50, 50, RevokeRequest(7), Operation::kUnknown, 0);
  EXPECT_FALSE(Linearizable(e.h()));
}

TEST(LinearizabilityTest, FormatRevoke) {
  Builder b;
  Operation& ok = b.Add(1, 2, RevokeRequest(7), Operation::kOk, 3);
  EXPECT_EQ(FormatOp(ok), "#0 c0 [1,2] ok rev=3: revoke(lease=7) -> ok");
  Operation& unk = b.Add(1, 2, RevokeRequest(7), Operation::kUnknown, 0);
  EXPECT_EQ(FormatOp(unk), "#1 c1 [1,2] unknown: revoke(lease=7)");
  EXPECT_FALSE(IsReadOnly(RevokeRequest(7)));
}

// --- Generated histories.

TEST(LinearizabilityTest, GeneratorIsDeterministic) {
  const History a = GenerateHistory(7, 300, 10, 5, 0.1);
  const History b = GenerateHistory(7, 300, 10, 5, 0.1);
  ASSERT_EQ(a.ops.size(), b.ops.size());
  for (size_t i = 0; i < a.ops.size(); ++i) {
    EXPECT_EQ(FormatOp(a.ops[i]), FormatOp(b.ops[i]));
  }
  const History c = GenerateHistory(8, 300, 10, 5, 0.1);
  int same = 0;
  for (size_t i = 0; i < a.ops.size(); ++i) {
    same += FormatOp(a.ops[i]) == FormatOp(c.ops[i]) ? 1 : 0;
  }
  EXPECT_LT(same, 100);
}

TEST(LinearizabilityTest, GeneratedHistoriesHaveTheRequestedShape) {
  const History h = GenerateHistory(3, 2000, 50, 20, 0.05);
  ASSERT_EQ(h.ops.size(), 2000u);
  int unknown = 0, serializable = 0, txns = 0;
  for (const Operation& op : h.ops) {
    unknown += op.outcome == Operation::kUnknown ? 1 : 0;
    serializable += op.req.serializable ? 1 : 0;
    txns += op.req.compares.empty() ? 0 : 1;
  }
  EXPECT_GT(unknown, 50);
  EXPECT_LT(unknown, 170);
  EXPECT_GT(serializable, 100);
  EXPECT_GT(txns, 200);
  // Clients overlap.
  int overlapping = 0;
  for (size_t i = 1; i < h.ops.size(); ++i) {
    overlapping += h.ops[i].invoke_ns < h.ops[i - 1].return_ns ? 1 : 0;
  }
  EXPECT_GT(overlapping, 1000);
}

// Indices of kOk linearizable single-key reads with a result.
std::vector<size_t> ReadsWithValues(const History& h) {
  std::vector<size_t> out;
  for (size_t i = 0; i < h.ops.size(); ++i) {
    const Operation& op = h.ops[i];
    if (op.outcome != Operation::kOk || !IsReadOnly(op.req) ||
        op.resp.results.empty() || op.resp.results[0].kvs.empty()) {
      continue;
    }
    out.push_back(i);
  }
  return out;
}

// Makes one read return a value that no op ever wrote.
History CorruptReadValue(History h, uint64_t pick) {
  const std::vector<size_t> reads = ReadsWithValues(h);
  if (reads.empty()) return h;
  Operation& op = h.ops[reads[pick % reads.size()]];
  OpResult& r = op.resp.results[0];
  r.kvs[pick % r.kvs.size()].value = "never-written";
  return h;
}

TEST(LinearizabilityTest, PlantedStaleReadHasASmallWindow) {
  History h = GenerateHistory(11, 2000, 50, 20, 0.05);
  ASSERT_TRUE(CheckLinearizable(h).ok);
  // A linearizable read of key k that saw a later write than an earlier
  // read of k: make it return what the earlier read saw.
  int planted = -1;
  for (size_t j : ReadsWithValues(h)) {
    const Operation& late = h.ops[j];
    if (late.req.serializable || late.req.success.size() != 1 ||
        !late.req.success[0].range_end.empty() || !late.req.compares.empty()) {
      continue;
    }
    const mvcc::KeyValue& now = late.resp.results[0].kvs[0];
    for (size_t i : ReadsWithValues(h)) {
      const Operation& early = h.ops[i];
      if (i >= j || early.req.serializable) continue;
      for (const OpResult& r : early.resp.results) {
        for (const mvcc::KeyValue& kv : r.kvs) {
          if (kv.key == now.key && kv.mod_revision < now.mod_revision &&
              now.mod_revision - kv.mod_revision < 50 && planted < 0) {
            h.ops[j].resp.results[0].kvs[0] = kv;
            planted = static_cast<int>(j);
          }
        }
      }
    }
    if (planted >= 0) break;
  }
  ASSERT_GE(planted, 0);
  CheckResult r = CheckLinearizable(h);
  ASSERT_FALSE(r.ok);
  EXPECT_FALSE(r.inconclusive);
  EXPECT_LE(r.window.size(), 4u);
  EXPECT_THAT(r.window, ::testing::Contains(h.ops[planted].id));
  EXPECT_THAT(r.explanation, HasSubstr(FormatOp(h.ops[planted])));
}

TEST(LinearizabilityTest, CorruptedValueInLargeHistoryHasASmallWindow) {
  const History h =
      CorruptReadValue(GenerateHistory(5, 2000, 50, 20, 0.05), 77);
  CheckResult r = CheckLinearizable(h);
  ASSERT_FALSE(r.ok);
  EXPECT_LE(r.window.size(), 4u);
}

// --- Big histories: decided (not inconclusive), and mutations caught.

TEST(LinearizabilityTest, BigHistoriesWithManyUnknownOutcomesAreDecided) {
  // 20,000 ops from 200 (and 50) clients with 20% (15%) unknown outcomes:
  // the pruning rules (facts.cc) keep this to well under a second each.
  for (const auto& [clients, unknown] :
       {std::pair{200, 0.20}, std::pair{50, 0.15}}) {
    for (uint64_t seed = 1; seed <= 5; ++seed) {
      const History h = GenerateHistory(seed, 20'000, clients, 20, unknown);
      CheckOptions o;
      o.max_states = 5'000'000;
      const CheckResult r = CheckLinearizable(h, o);
      EXPECT_TRUE(r.ok) << clients << " " << seed << "\n" << r.explanation;
      EXPECT_FALSE(r.inconclusive) << clients << " " << seed;
    }
  }
}

// One change to a generated history that makes it non-linearizable for
// sure: a read returns a value nobody wrote; a read returns an older
// version of a key that a kOk write (at the newer version's mod revision)
// had overwritten before the read's header revision; or a read's header
// revision is below the mod revision of a key it returned.
bool MutateSurely(History* h, uint64_t pick) {
  std::map<int64_t, size_t> ok_write_at;
  for (size_t i = 0; i < h->ops.size(); ++i) {
    const Operation& op = h->ops[i];
    if (op.outcome == Operation::kOk && !IsReadOnly(op.req)) {
      ok_write_at[op.resp.revision] = i;
    }
  }
  const std::vector<size_t> reads = ReadsWithValues(*h);
  if (reads.empty()) return false;
  const size_t at = reads[pick % reads.size()];
  OpResult& res = h->ops[at].resp.results[0];
  mvcc::KeyValue& kv = res.kvs[(pick / 7) % res.kvs.size()];
  switch ((pick / 3) % 3) {
    case 0:
      kv.value = "never-written";
      return true;
    case 1: {
      // An older kv of the same key, seen by an earlier op.
      if (!ok_write_at.contains(kv.mod_revision)) break;
      for (size_t j = 0; j < at; ++j) {
        for (const OpResult& r : h->ops[j].resp.results) {
          for (const mvcc::KeyValue& old : r.kvs) {
            if (h->ops[j].outcome == Operation::kOk && old.key == kv.key &&
                old.mod_revision < kv.mod_revision) {
              kv = old;
              return true;
            }
          }
        }
      }
      break;
    }
    default:
      if (kv.mod_revision < 2) break;
      h->ops[at].resp.revision = kv.mod_revision - 1;
      return true;
  }
  kv.value = "never-written";
  return true;
}

TEST(LinearizabilityTest, MutatedBigHistoriesAreCaught) {
  int caught = 0;
  for (uint64_t seed = 1; seed <= 30; ++seed) {
    History h = GenerateHistory(seed, 3000, seed % 2 ? 50 : 200, 20,
                                seed % 3 ? 0.15 : 0.20);
    ASSERT_TRUE(MutateSurely(&h, seed * 0x9e3779b97f4a7c15ULL >> 20));
    CheckOptions o;
    o.max_states = 5'000'000;
    o.minimize = seed % 5 == 0;  // shrinking is slow; sample it
    const CheckResult r = CheckLinearizable(h, o);
    EXPECT_FALSE(r.ok) << seed;
    EXPECT_FALSE(r.inconclusive) << seed;
    caught += r.ok ? 0 : 1;
  }
  EXPECT_EQ(caught, 30);
}

// --- A brute-force reference checker for tiny histories: tries every order
// of every subset of ops, with its own model of etcd's KV store.

struct BfStore {
  std::map<std::string, mvcc::KeyValue> kv;
  int64_t rev = 1;
};

bool InRange(const std::string& k, const std::string& key,
             const std::string& end) {
  if (end.empty()) return k == key;
  if (end == std::string(1, '\0')) return k >= key;
  return k >= key && k < end;
}

bool BfCompare(const Compare& c, const BfStore& s) {
  std::vector<mvcc::KeyValue> in;
  for (const auto& [k, kv] : s.kv) {
    if (InRange(k, c.key, c.range_end)) in.push_back(kv);
  }
  if (in.empty()) {
    if (c.target == Compare::kValue) return false;
    in.push_back(mvcc::KeyValue{});
  }
  for (const auto& kv : in) {
    int64_t a = 0, b = c.number;
    switch (c.target) {
      case Compare::kVersion:
        a = kv.version;
        break;
      case Compare::kCreate:
        a = kv.create_revision;
        break;
      case Compare::kMod:
        a = kv.mod_revision;
        break;
      case Compare::kLease:
        a = kv.lease;
        break;
      case Compare::kValue:
        a = kv.value.compare(c.value);
        a = a < 0 ? -1 : (a > 0 ? 1 : 0);
        b = 0;
        break;
    }
    const bool ok = c.result == Compare::kEqual     ? a == b
                    : c.result == Compare::kGreater ? a > b
                    : c.result == Compare::kLess    ? a < b
                                                    : a != b;
    if (!ok) return false;
  }
  return true;
}

// Runs req on s; returns the response (prev fields only where asked for).
Response BfApply(const Request& req, BfStore& s) {
  Response resp;
  if (req.revoke_lease != 0) {
    const size_t before = s.kv.size();
    std::erase_if(s.kv, [&](const auto& e) {
      return e.second.lease == req.revoke_lease;
    });
    if (s.kv.size() != before) ++s.rev;
    resp.revision = s.rev;
    return resp;
  }
  resp.succeeded = true;
  for (const Compare& c : req.compares) resp.succeeded &= BfCompare(c, s);
  bool changed = false;
  for (const RequestOp& op : resp.succeeded ? req.success : req.failure) {
    OpResult r;
    if (op.kind == RequestOp::kRange) {
      for (const auto& [k, kv] : s.kv) {
        if (InRange(k, op.key, op.range_end)) r.kvs.push_back(kv);
      }
      r.count = static_cast<int64_t>(r.kvs.size());
    } else if (op.kind == RequestOp::kPut) {
      auto it = s.kv.find(op.key);
      mvcc::KeyValue kv;
      kv.key = op.key;
      kv.value = op.value;
      kv.lease = op.lease;
      kv.mod_revision = s.rev + 1;
      kv.create_revision = s.rev + 1;
      kv.version = 1;
      if (it != s.kv.end()) {
        if (op.prev_kv) {
          r.has_prev = true;
          r.prev = it->second;
        }
        kv.create_revision = it->second.create_revision;
        kv.version = it->second.version + 1;
      }
      s.kv[op.key] = kv;
      changed = true;
    } else {
      for (auto it = s.kv.begin(); it != s.kv.end();) {
        if (!InRange(it->first, op.key, op.range_end)) {
          ++it;
          continue;
        }
        if (op.prev_kv) r.prev_kvs.push_back(it->second);
        ++r.deleted;
        it = s.kv.erase(it);
        changed = true;
      }
    }
    resp.results.push_back(r);
  }
  if (changed) ++s.rev;
  resp.revision = s.rev;
  return resp;
}

bool SameResponse(const Request& req, const Response& want,
                  const Response& got) {
  if (want.succeeded != got.succeeded || want.revision != got.revision ||
      want.results.size() != got.results.size()) {
    return false;
  }
  const auto& br = got.succeeded ? req.success : req.failure;
  for (size_t i = 0; i < br.size(); ++i) {
    const OpResult& a = want.results[i];
    const OpResult& b = got.results[i];
    switch (br[i].kind) {
      case RequestOp::kRange:
        if (a.kvs != b.kvs || a.count != b.count) return false;
        break;
      case RequestOp::kPut:
        if (br[i].prev_kv &&
            (a.has_prev != b.has_prev || (a.has_prev && a.prev != b.prev))) {
          return false;
        }
        break;
      case RequestOp::kDelete:
        if (a.deleted != b.deleted) return false;
        if (br[i].prev_kv && a.prev_kvs != b.prev_kvs) return false;
        break;
    }
  }
  return true;
}

class BruteForce {
 public:
  BruteForce(const History& h, bool external) : h_(h), external_(external) {
    for (size_t i = 0; i < h.ops.size(); ++i) {
      const Operation& op = h.ops[i];
      if (op.outcome == Operation::kOk) {
        max_rev_ = std::max(max_rev_, op.resp.revision);
        if (op.req.serializable && IsReadOnly(op.req)) {
          serial_.push_back(i);
        } else {
          must_.push_back(i);
        }
      } else if (op.outcome == Operation::kUnknown && !IsReadOnly(op.req)) {
        may_.push_back(i);
      }
    }
    done_.assign(h.ops.size(), false);
  }

  bool Run() {
    states_.push_back({BfStore{}, std::numeric_limits<int64_t>::min()});
    return Dfs(BfStore{}, std::numeric_limits<int64_t>::min(), 0);
  }

 private:
  struct Reached {
    BfStore store;
    int64_t maxinv;
  };

  bool SerialOk() {
    for (size_t y : serial_) {
      const Operation& op = h_.ops[y];
      bool ok = false;
      for (const Reached& r : states_) {
        if (r.store.rev != op.resp.revision || r.maxinv > op.return_ns) {
          continue;
        }
        BfStore copy = r.store;
        ok |= SameResponse(op.req, op.resp, BfApply(op.req, copy));
      }
      if (!ok) return false;
    }
    return true;
  }

  bool Dfs(const BfStore& s, int64_t maxinv, size_t n_must) {
    if (n_must == must_.size() && SerialOk()) return true;
    int64_t min_ret = std::numeric_limits<int64_t>::max();
    for (size_t i : must_) {
      if (!done_[i]) min_ret = std::min(min_ret, h_.ops[i].return_ns);
    }
    auto step = [&](size_t i, bool must) {
      const Operation& op = h_.ops[i];
      if (done_[i] || op.invoke_ns > min_ret) return false;
      BfStore next = s;
      Response got = BfApply(op.req, next);
      if (must && !SameResponse(op.req, op.resp, got)) return false;
      if (!must && next.rev == s.rev) return false;
      const int64_t mi = std::max(maxinv, op.invoke_ns);
      done_[i] = true;
      const bool grew = next.rev != s.rev;
      if (grew) states_.push_back({next, mi});
      const bool ok = Dfs(next, mi, n_must + (must ? 1 : 0));
      if (grew) states_.pop_back();
      done_[i] = false;
      return ok;
    };
    for (size_t i : must_) {
      if (step(i, true)) return true;
    }
    for (size_t i : may_) {
      if (step(i, false)) return true;
    }
    if (external_ && s.rev < max_rev_) {
      BfStore next = s;
      ++next.rev;
      states_.push_back({next, maxinv});
      const bool ok = Dfs(next, maxinv, n_must);
      states_.pop_back();
      if (ok) return true;
    }
    return false;
  }

  const History& h_;
  bool external_;
  std::vector<size_t> must_, may_, serial_;
  std::vector<bool> done_;
  std::vector<Reached> states_;
  int64_t max_rev_ = 1;
};

// Small random changes that often, but not always, break linearizability.
void Mutate(History* h, uint64_t r) {
  auto next = [&r]() {
    r = r * 6364136223846793005ULL + 1442695040888963407ULL;
    return r >> 33;
  };
  if (h->ops.empty()) return;
  Operation& op = h->ops[next() % h->ops.size()];
  switch (next() % 8) {
    case 0:
      op.resp.revision += next() % 2 ? 1 : -1;
      break;
    case 1:
    case 2:
      for (OpResult& res : op.resp.results) {
        std::vector<mvcc::KeyValue*> kvs;
        for (auto& kv : res.kvs) kvs.push_back(&kv);
        for (auto& kv : res.prev_kvs) kvs.push_back(&kv);
        if (res.has_prev) kvs.push_back(&res.prev);
        if (kvs.empty()) continue;
        mvcc::KeyValue* kv = kvs[next() % kvs.size()];
        switch (next() % 4) {
          case 0:
            kv->version += 1;
            break;
          case 1:
            kv->mod_revision -= 1;
            break;
          case 2:
            kv->create_revision += 1;
            break;
          default: {
            const Operation& from = h->ops[next() % h->ops.size()];
            kv->value =
                from.req.success.empty() ? "x" : from.req.success[0].value;
          }
        }
        break;
      }
      break;
    case 3: {
      Operation& other = h->ops[next() % h->ops.size()];
      std::swap(op.invoke_ns, other.invoke_ns);
      std::swap(op.return_ns, other.return_ns);
      if (op.invoke_ns > op.return_ns) std::swap(op.invoke_ns, op.return_ns);
      if (other.invoke_ns > other.return_ns) {
        std::swap(other.invoke_ns, other.return_ns);
      }
      break;
    }
    case 4:
      if (op.outcome == Operation::kOk) op.outcome = Operation::kUnknown;
      break;
    case 5:
      for (OpResult& res : op.resp.results) {
        if (!res.kvs.empty()) {
          res.kvs.pop_back();
          res.count = static_cast<int64_t>(res.kvs.size());
          break;
        }
        if (res.deleted > 0) {
          res.deleted = 0;
          res.prev_kvs.clear();
          break;
        }
      }
      break;
    case 6:
      if (IsReadOnly(op.req)) op.req.serializable = !op.req.serializable;
      break;
    default: {
      // Another op's response.
      const Operation& other = h->ops[next() % h->ops.size()];
      if (other.req.success.size() == op.req.success.size()) {
        op.resp.results = other.resp.results;
      }
      break;
    }
  }
}

// Checks one tiny (possibly mutated) history against the brute force.
// (max_ops bounds the client ops; the brute force is exponential in them.)
void CompareWithBruteForce(uint64_t seed, GenOptions gen = {},
                           int max_ops = 10) {
  uint64_t x = seed;
  auto next = [&x]() {
    x += 0x9e3779b97f4a7c15ULL;
    uint64_t z = x;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  };
  const int ops = 1 + static_cast<int>(next() % max_ops);
  const int clients = 1 + static_cast<int>(next() % 4);
  const int keys = 2 + static_cast<int>(next() % 3);
  const double unknown = static_cast<double>(next() % 41) / 100.0;
  gen.seed = next();
  gen.ops = ops;
  gen.clients = clients;
  gen.keys = keys;
  gen.unknown_fraction = unknown;
  History h = GenerateHistory(gen);
  const int mutations = static_cast<int>(next() % 4);
  for (int i = 0; i < mutations; ++i) Mutate(&h, next());
  const bool external = next() % 2 == 0;
  CheckOptions o;
  o.external_writes = external;
  const CheckResult r = CheckLinearizable(h, o);
  RC_ASSERT(!r.inconclusive);
  const bool expect = BruteForce(h, external).Run();
  if (r.ok != expect) {
    std::string dump;
    for (const Operation& op : h.ops) dump += FormatOp(op) + "\n";
    RC_FAIL(absl::StrCat("checker says ", r.ok, ", brute force says ", expect,
                         " (external_writes=", external, ")\n", dump,
                         r.explanation));
  }
  // A reported window fails on its own, by the checker's own rule.
  if (!r.ok) {
    History sub = h;
    for (Operation& op : sub.ops) {
      if (std::find(r.window.begin(), r.window.end(), op.id) ==
              r.window.end() &&
          op.outcome == Operation::kOk) {
        op.outcome = Operation::kUnknown;
      }
    }
    if (BruteForce(sub, external).Run()) {
      std::string dump;
      for (const Operation& op : h.ops) dump += FormatOp(op) + "\n";
      RC_FAIL(
          absl::StrCat("window does not fail alone\n", dump, r.explanation));
    }
  }
}

RC_GTEST_PROP(LinearizabilityProperty, AgreesWithBruteForceOnTinyHistories,
              ()) {
  // Ten histories per case, with sizes independent of RapidCheck's size.
  const auto seed = *rc::gen::arbitrary<uint64_t>();
  for (uint64_t i = 0; i < 10; ++i) CompareWithBruteForce(seed * 16 + i);
}

RC_GTEST_PROP(LinearizabilityProperty,
              AgreesWithBruteForceOnTxnsChangingAKeyTwice, ()) {
  const auto seed = *rc::gen::arbitrary<uint64_t>();
  GenOptions gen;
  gen.same_key_txns = true;
  for (uint64_t i = 0; i < 10; ++i) CompareWithBruteForce(seed * 16 + i, gen);
}

RC_GTEST_PROP(LinearizabilityProperty,
              GeneratedHistoriesWithTxnsChangingAKeyTwiceAreLinearizable, ()) {
  GenOptions gen;
  gen.seed = *rc::gen::arbitrary<uint64_t>();
  gen.ops = *rc::gen::inRange(1, 1500);
  gen.clients = *rc::gen::inRange(1, 60);
  gen.keys = *rc::gen::inRange(2, 24);
  gen.unknown_fraction = *rc::gen::inRange(0, 15) / 100.0;
  gen.same_key_txns = true;
  CheckResult r = CheckLinearizable(GenerateHistory(gen));
  RC_ASSERT(!r.inconclusive);
  if (!r.ok) RC_FAIL(r.explanation);
}

RC_GTEST_PROP(LinearizabilityProperty, AgreesWithBruteForceWithLeases, ()) {
  const auto seed = *rc::gen::arbitrary<uint64_t>();
  GenOptions gen;
  gen.leases = 2;
  for (uint64_t i = 0; i < 10; ++i) {
    CompareWithBruteForce(seed * 16 + i, gen, /*max_ops=*/7);
  }
}

RC_GTEST_PROP(LinearizabilityProperty,
              GeneratedHistoriesWithLeasesAreLinearizable, ()) {
  GenOptions gen;
  gen.seed = *rc::gen::arbitrary<uint64_t>();
  gen.ops = *rc::gen::inRange(1, 1500);
  gen.clients = *rc::gen::inRange(1, 60);
  gen.keys = *rc::gen::inRange(2, 24);
  gen.unknown_fraction = *rc::gen::inRange(0, 20) / 100.0;
  gen.leases = *rc::gen::inRange(1, 30);
  gen.same_key_txns = *rc::gen::arbitrary<bool>();
  const History h = GenerateHistory(gen);
  CheckResult r = CheckLinearizable(h);
  RC_ASSERT(!r.inconclusive);
  if (!r.ok) RC_FAIL(r.explanation);
}

RC_GTEST_PROP(LinearizabilityProperty, CorruptedReadWithLeasesIsNotLinearizable,
              ()) {
  GenOptions gen;
  gen.seed = *rc::gen::arbitrary<uint64_t>();
  gen.ops = *rc::gen::inRange(20, 400);
  gen.clients = *rc::gen::inRange(1, 30);
  gen.keys = *rc::gen::inRange(2, 12);
  gen.unknown_fraction = *rc::gen::inRange(0, 20) / 100.0;
  gen.leases = *rc::gen::inRange(1, 10);
  const History h = GenerateHistory(gen);
  RC_PRE(!ReadsWithValues(h).empty());
  const History bad = CorruptReadValue(h, *rc::gen::arbitrary<uint64_t>());
  CheckResult r = CheckLinearizable(bad);
  RC_ASSERT(!r.ok);
  RC_ASSERT(!r.inconclusive);
}

RC_GTEST_PROP(LinearizabilityProperty, GeneratedHistoriesAreLinearizable, ()) {
  const auto seed = *rc::gen::arbitrary<uint64_t>();
  const int ops = *rc::gen::inRange(1, 1500);
  const int clients = *rc::gen::inRange(1, 60);
  const int keys = *rc::gen::inRange(2, 24);
  const double unknown = *rc::gen::inRange(0, 15) / 100.0;
  const History h = GenerateHistory(seed, ops, clients, keys, unknown);
  CheckResult r = CheckLinearizable(h);
  RC_ASSERT(!r.inconclusive);
  if (!r.ok) RC_FAIL(r.explanation);
}

RC_GTEST_PROP(LinearizabilityProperty, CorruptedReadIsNotLinearizable, ()) {
  const auto seed = *rc::gen::arbitrary<uint64_t>();
  const int ops = *rc::gen::inRange(20, 400);
  const int clients = *rc::gen::inRange(1, 30);
  const int keys = *rc::gen::inRange(2, 12);
  const double unknown = *rc::gen::inRange(0, 20) / 100.0;
  const History h = GenerateHistory(seed, ops, clients, keys, unknown);
  RC_PRE(!ReadsWithValues(h).empty());
  const History bad = CorruptReadValue(h, *rc::gen::arbitrary<uint64_t>());
  CheckResult r = CheckLinearizable(bad);
  RC_ASSERT(!r.ok);
  RC_ASSERT(!r.inconclusive);
  RC_ASSERT(!r.window.empty());
  RC_ASSERT(r.window.size() <= 6u);
}

}  // namespace
}  // namespace detcd::harness
