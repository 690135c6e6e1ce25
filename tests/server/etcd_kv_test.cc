#include "engine/server/etcd_kv.h"

#include <gmock/gmock.h>
#include <google/protobuf/text_format.h>
#include <gtest/gtest.h>
#include <rapidcheck.h>
#include <rapidcheck/gtest.h>

#include <algorithm>
#include <cstdint>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "engine/mvcc/kv_store.h"

namespace detcd::server {
namespace {

namespace pb = ::etcdserverpb;
using ::testing::ElementsAre;
using ::testing::IsEmpty;

template <typename T>
T Parse(std::string_view text) {
  T msg;
  if (!google::protobuf::TextFormat::ParseFromString(std::string(text), &msg)) {
    ADD_FAILURE() << "bad text proto: " << text;
  }
  return msg;
}

std::vector<std::string> Keys(const pb::RangeResponse& r) {
  std::vector<std::string> out;
  for (const auto& kv : r.kvs()) out.push_back(kv.key());
  return out;
}

class FakeLeases : public LeaseHooks {
 public:
  bool Exists(int64_t id) const override { return ids.contains(id); }
  void Attach(int64_t id, std::string_view key) override {
    log.push_back(absl::StrCat("attach ", id, " ", std::string(key)));
  }
  void Detach(int64_t id, std::string_view key) override {
    log.push_back(absl::StrCat("detach ", id, " ", std::string(key)));
  }
  std::set<int64_t> ids;
  std::vector<std::string> log;
};

class EtcdKvTest : public ::testing::Test {
 protected:
  absl::StatusOr<pb::PutResponse> TryPut(const pb::PutRequest& r) {
    mvcc::KvStore::WriteTxn t = kv_.Write();
    auto resp = ApplyPut(t, &leases_, r);
    last_events_ = t.End();
    return resp;
  }
  pb::PutResponse Put(std::string key, std::string value, int64_t lease = 0) {
    pb::PutRequest r;
    r.set_key(std::move(key));
    r.set_value(std::move(value));
    r.set_lease(lease);
    auto resp = TryPut(r);
    EXPECT_TRUE(resp.ok()) << resp.status();
    return resp.ok() ? *resp : pb::PutResponse();
  }
  absl::StatusOr<pb::DeleteRangeResponse> Delete(
      const pb::DeleteRangeRequest& r) {
    mvcc::KvStore::WriteTxn t = kv_.Write();
    auto resp = ApplyDeleteRange(t, &leases_, r);
    last_events_ = t.End();
    return resp;
  }
  absl::StatusOr<pb::TxnResponse> Txn(const pb::TxnRequest& r) {
    mvcc::KvStore::WriteTxn t = kv_.Write();
    auto resp = ApplyTxn(t, &leases_, r);
    last_events_ = t.End();
    return resp;
  }
  absl::StatusOr<pb::TxnResponse> Txn(std::string_view text) {
    return Txn(Parse<pb::TxnRequest>(text));
  }
  absl::StatusOr<pb::RangeResponse> Range(std::string_view text) {
    return ApplyRange(kv_, Parse<pb::RangeRequest>(text));
  }
  // The value of `key`, or "<none>".
  std::string Get(const std::string& key) {
    pb::RangeRequest r;
    r.set_key(key);
    auto resp = ApplyRange(kv_, r);
    EXPECT_TRUE(resp.ok()) << resp.status();
    if (!resp.ok() || resp->kvs().empty()) return "<none>";
    return resp->kvs(0).value();
  }

  mvcc::KvStore kv_;
  FakeLeases leases_;
  std::vector<mvcc::Event> last_events_;
};

// ------------------------------------------------------------------ errors

TEST(EtcdKvErrors, TextsAndCodesAreEtcds) {
  struct Case {
    absl::Status s;
    absl::StatusCode code;
    const char* text;
  };
  const Case cases[] = {
      {ErrEmptyKey(), absl::StatusCode::kInvalidArgument,
       "etcdserver: key is not provided"},
      {ErrKeyNotFound(), absl::StatusCode::kInvalidArgument,
       "etcdserver: key not found"},
      {ErrValueProvided(), absl::StatusCode::kInvalidArgument,
       "etcdserver: value is provided"},
      {ErrLeaseProvided(), absl::StatusCode::kInvalidArgument,
       "etcdserver: lease is provided"},
      {ErrTooManyOps(), absl::StatusCode::kInvalidArgument,
       "etcdserver: too many operations in txn request"},
      {ErrDuplicateKey(), absl::StatusCode::kInvalidArgument,
       "etcdserver: duplicate key given in txn request"},
      {ErrInvalidSortOption(), absl::StatusCode::kInvalidArgument,
       "etcdserver: invalid sort option"},
      {ErrLeaseNotFound(), absl::StatusCode::kNotFound,
       "etcdserver: requested lease not found"},
      {ErrRequestTooLarge(), absl::StatusCode::kInvalidArgument,
       "etcdserver: request is too large"},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(c.s.code(), c.code) << c.text;
    EXPECT_EQ(c.s.message(), c.text);
  }
}

TEST(EtcdKvLimits, Validate) {
  EXPECT_TRUE(KvLimits{}.Validate().ok());
  EXPECT_EQ(KvLimits{}.max_txn_ops, 128);
  EXPECT_EQ(KvLimits{}.max_request_bytes, 1536u * 1024u);
  EXPECT_FALSE((KvLimits{.max_txn_ops = 0}).Validate().ok());
  EXPECT_FALSE((KvLimits{.max_request_bytes = 0}).Validate().ok());
  EXPECT_FALSE((KvLimits{.max_request_bytes = kMaxRequestBytesCeiling + 1})
                   .Validate()
                   .ok());
  EXPECT_TRUE(
      (KvLimits{.max_txn_ops = 1, .max_request_bytes = 1}).Validate().ok());
}

TEST(EtcdKvCheck, RequestSize) {
  KvLimits l{.max_request_bytes = 10};
  EXPECT_TRUE(CheckRequestSize(10, l).ok());
  EXPECT_EQ(CheckRequestSize(11, l), ErrRequestTooLarge());
}

// -------------------------------------------------------------- validation

TEST(EtcdKvCheck, Range) {
  EXPECT_EQ(CheckRange(Parse<pb::RangeRequest>("")), ErrEmptyKey());
  EXPECT_TRUE(CheckRange(Parse<pb::RangeRequest>(
                             "key: 'a' sort_order: DESCEND sort_target: VALUE"))
                  .ok());
  pb::RangeRequest r;
  r.set_key("a");
  r.set_sort_order(static_cast<pb::RangeRequest::SortOrder>(99));
  EXPECT_EQ(CheckRange(r), ErrInvalidSortOption());
  r.set_sort_order(pb::RangeRequest::ASCEND);
  r.set_sort_target(static_cast<pb::RangeRequest::SortTarget>(5));
  EXPECT_EQ(CheckRange(r), ErrInvalidSortOption());
  // The empty key is reported first.
  r.clear_key();
  EXPECT_EQ(CheckRange(r), ErrEmptyKey());
}

TEST(EtcdKvCheck, Put) {
  EXPECT_TRUE(CheckPut(Parse<pb::PutRequest>("key: 'a' value: 'v'")).ok());
  EXPECT_EQ(CheckPut(Parse<pb::PutRequest>("value: 'v'")), ErrEmptyKey());
  EXPECT_EQ(
      CheckPut(Parse<pb::PutRequest>("key: 'a' value: 'v' ignore_value: true")),
      ErrValueProvided());
  EXPECT_EQ(
      CheckPut(Parse<pb::PutRequest>("key: 'a' lease: 5 ignore_lease: true")),
      ErrLeaseProvided());
  // ignore_value with a lease, and ignore_lease with a value, are fine.
  EXPECT_TRUE(
      CheckPut(Parse<pb::PutRequest>("key: 'a' lease: 5 ignore_value: true"))
          .ok());
  EXPECT_TRUE(
      CheckPut(Parse<pb::PutRequest>("key: 'a' value: 'v' ignore_lease: true"))
          .ok());
  // Order: key, then value, then lease.
  EXPECT_EQ(CheckPut(Parse<pb::PutRequest>(
                "value: 'v' lease: 5 ignore_value: true ignore_lease: true")),
            ErrEmptyKey());
  EXPECT_EQ(
      CheckPut(Parse<pb::PutRequest>("key: 'a' value: 'v' lease: 5 "
                                     "ignore_value: true ignore_lease: true")),
      ErrValueProvided());
}

TEST(EtcdKvCheck, DeleteRangeAndCompaction) {
  EXPECT_EQ(CheckDeleteRange(Parse<pb::DeleteRangeRequest>("range_end: 'z'")),
            ErrEmptyKey());
  EXPECT_TRUE(CheckDeleteRange(Parse<pb::DeleteRangeRequest>("key: 'a'")).ok());
  EXPECT_TRUE(
      CheckCompaction(Parse<pb::CompactionRequest>("revision: -3")).ok());
}

pb::TxnRequest TxnWithOps(int compares, int success, int failure) {
  pb::TxnRequest r;
  for (int i = 0; i < compares; ++i) r.add_compare()->set_key("c");
  for (int i = 0; i < success; ++i) {
    r.add_success()->mutable_request_range()->set_key(absl::StrCat("s", i));
  }
  for (int i = 0; i < failure; ++i) {
    r.add_failure()->mutable_request_range()->set_key(absl::StrCat("f", i));
  }
  return r;
}

TEST(EtcdKvCheck, TxnOpCounts) {
  const KvLimits l;
  EXPECT_TRUE(CheckTxn(TxnWithOps(128, 128, 128), l).ok());
  EXPECT_EQ(CheckTxn(TxnWithOps(129, 0, 0), l), ErrTooManyOps());
  EXPECT_EQ(CheckTxn(TxnWithOps(0, 129, 0), l), ErrTooManyOps());
  EXPECT_EQ(CheckTxn(TxnWithOps(0, 0, 129), l), ErrTooManyOps());
  // The limit applies per list, not to their sum.
  EXPECT_TRUE(CheckTxn(TxnWithOps(100, 100, 100), l).ok());
  const KvLimits small{.max_txn_ops = 3};
  EXPECT_TRUE(CheckTxn(TxnWithOps(3, 3, 3), small).ok());
  EXPECT_EQ(CheckTxn(TxnWithOps(0, 4, 0), small), ErrTooManyOps());

  // A nested txn gets max - (largest list of its parent).
  pb::TxnRequest outer = TxnWithOps(0, 100, 0);
  *outer.add_success()->mutable_request_txn() = TxnWithOps(27, 0, 0);
  // The outer success list has 101 ops, leaving 27.
  EXPECT_TRUE(CheckTxn(outer, l).ok());
  *outer.mutable_success(100)->mutable_request_txn() = TxnWithOps(28, 0, 0);
  EXPECT_EQ(CheckTxn(outer, l), ErrTooManyOps());
  // Also in the failure list, and two levels down.
  pb::TxnRequest deep = TxnWithOps(0, 0, 2);
  pb::TxnRequest mid = TxnWithOps(0, 1, 0);
  *mid.add_success()->mutable_request_txn() = TxnWithOps(0, 1, 0);
  *deep.add_failure()->mutable_request_txn() = mid;
  const KvLimits five{.max_txn_ops = 5};  // 5 - 3 = 2 for mid, 0 for inner
  EXPECT_EQ(CheckTxn(deep, five), ErrTooManyOps());
  *deep.mutable_failure(2)
       ->mutable_request_txn()
       ->mutable_success(1)
       ->mutable_request_txn() = pb::TxnRequest();
  EXPECT_TRUE(CheckTxn(deep, five).ok());
}

TEST(EtcdKvCheck, TxnPerOpChecks) {
  const KvLimits l;
  EXPECT_EQ(CheckTxn(Parse<pb::TxnRequest>("compare { key: '' }"), l),
            ErrEmptyKey());
  EXPECT_EQ(CheckTxn(Parse<pb::TxnRequest>("success { request_range { } }"), l),
            ErrEmptyKey());
  EXPECT_EQ(
      CheckTxn(Parse<pb::TxnRequest>("failure { request_put { value: 'x' } }"),
               l),
      ErrEmptyKey());
  EXPECT_EQ(CheckTxn(Parse<pb::TxnRequest>(
                         "success { request_delete_range { range_end: 'b' } }"),
                     l),
            ErrEmptyKey());
  EXPECT_EQ(CheckTxn(Parse<pb::TxnRequest>(
                         "success { request_put { key: 'a' value: 'x' "
                         "ignore_value: true } }"),
                     l),
            ErrValueProvided());
  EXPECT_EQ(CheckTxn(Parse<pb::TxnRequest>(
                         "success { request_put { key: 'a' lease: 1 "
                         "ignore_lease: true } }"),
                     l),
            ErrLeaseProvided());
  // An op with no request set is etcd's "key not found".
  EXPECT_EQ(CheckTxn(Parse<pb::TxnRequest>("success { }"), l),
            ErrKeyNotFound());
  pb::TxnRequest bad_sort = Parse<pb::TxnRequest>(
      "success { request_txn { failure { request_range { key: 'a' } } } }");
  bad_sort.mutable_success(0)
      ->mutable_request_txn()
      ->mutable_failure(0)
      ->mutable_request_range()
      ->set_sort_target(static_cast<pb::RangeRequest::SortTarget>(42));
  EXPECT_EQ(CheckTxn(bad_sort, l), ErrInvalidSortOption());
  // Compares are checked before ops.
  EXPECT_EQ(CheckTxn(Parse<pb::TxnRequest>(
                         "compare { } success { request_put { key: 'a' "
                         "value: 'x' ignore_value: true } }"),
                     l),
            ErrEmptyKey());
  // Op checks come before the duplicate check.
  EXPECT_EQ(
      CheckTxn(Parse<pb::TxnRequest>("success { request_put { key: 'a' } } "
                                     "success { request_put { key: 'a' } } "
                                     "failure { request_put { } }"),
               l),
      ErrEmptyKey());
}

TEST(EtcdKvCheck, TxnDuplicateKeys) {
  const KvLimits l;
  auto check = [&l](std::string_view text) {
    return CheckTxn(Parse<pb::TxnRequest>(text), l);
  };
  const absl::Status dup = ErrDuplicateKey();
  EXPECT_TRUE(check("success { request_put { key: 'a' } } "
                    "success { request_put { key: 'b' } }")
                  .ok());
  EXPECT_EQ(check("success { request_put { key: 'a' } } "
                  "success { request_put { key: 'a' } }"),
            dup);
  EXPECT_EQ(check("failure { request_put { key: 'a' } } "
                  "failure { request_put { key: 'a' } }"),
            dup);
  // success and failure are checked separately.
  EXPECT_TRUE(check("success { request_put { key: 'a' } } "
                    "failure { request_put { key: 'a' } }")
                  .ok());
  // Deletes against puts, in either order.
  EXPECT_EQ(check("success { request_delete_range { key: 'a' } } "
                  "success { request_put { key: 'a' } }"),
            dup);
  EXPECT_EQ(
      check("success { request_put { key: 'b' } } "
            "success { request_delete_range { key: 'a' range_end: 'c' } }"),
      dup);
  EXPECT_TRUE(
      check("success { request_put { key: 'c' } } "
            "success { request_delete_range { key: 'a' range_end: 'c' } }")
          .ok());
  EXPECT_TRUE(check("success { request_put { key: 'a0' } } "
                    "success { request_delete_range { key: 'a' } }")
                  .ok());
  // A from-key delete (range_end "\0") conflicts with no put, as in etcd
  // 3.4 (checked against etcd 3.4.23: `del b --from-key; put zzz 2` and
  // `del a --from-key; put a 2` succeed, `del b c; put bb 2` is refused).
  EXPECT_TRUE(
      check("success { request_put { key: 'zzz' } } "
            "success { request_delete_range { key: 'b' range_end: '\\000' } }")
          .ok());
  EXPECT_TRUE(
      check("success { request_delete_range { key: 'a' range_end: '\\000' } } "
            "success { request_put { key: 'a' } }")
          .ok());
  EXPECT_TRUE(
      check("success { request_put { key: 'a' } } "
            "success { request_delete_range { key: 'b' range_end: '\\000' } }")
          .ok());
  // An inverted range is empty.
  EXPECT_TRUE(
      check("success { request_put { key: 'b' } } "
            "success { request_delete_range { key: 'c' range_end: 'a' } }")
          .ok());
  // Deletes may overlap each other.
  EXPECT_TRUE(
      check("success { request_delete_range { key: 'a' range_end: 'c' } } "
            "success { request_delete_range { key: 'b' range_end: 'd' } }")
          .ok());
  // Nested: then/else of one txn exclude each other...
  EXPECT_TRUE(check("success { request_txn { "
                    "  success { request_put { key: 'a' } } "
                    "  failure { request_put { key: 'a' } } } }")
                  .ok());
  // ...but not the parent's own puts.
  EXPECT_EQ(
      check("success { request_put { key: 'a' } } "
            "success { request_txn { success { request_put { key: 'a' } } } }"),
      dup);
  EXPECT_EQ(
      check("success { request_put { key: 'a' } } "
            "success { request_txn { failure { request_put { key: 'a' } } } }"),
      dup);
  // Two sibling nested txns putting the same key.
  EXPECT_EQ(
      check("success { request_txn { success { request_put { key: 'a' } } } } "
            "success { request_txn { failure { request_put { key: 'a' } } } }"),
      dup);
  // A parent delete against a nested put, and a nested delete against a
  // parent put.
  EXPECT_EQ(
      check("success { request_txn { success { request_put { key: 'k' } } } } "
            "success { request_delete_range { key: 'a' range_end: 'z' } }"),
      dup);
  EXPECT_EQ(check("success { request_txn { failure { "
                  "  request_delete_range { key: 'k' } } } } "
                  "success { request_put { key: 'k' } }"),
            dup);
  // Deeper nesting propagates upward.
  EXPECT_EQ(check("success { request_put { key: 'k' } } "
                  "success { request_txn { success { request_txn { "
                  "  failure { request_put { key: 'k' } } } } } }"),
            dup);
  // A nested put and delete of different keys is fine.
  EXPECT_TRUE(
      check("success { request_txn { success { request_put { key: 'k' } } } } "
            "success { request_delete_range { key: 'l' } }")
          .ok());
}

// A model of the duplicate rule for flat txns: a key put twice, or put
// and inside any delete range.
RC_GTEST_PROP(EtcdKvCheckProp, FlatDuplicateRuleMatchesModel, ()) {
  const auto key_gen =
      rc::gen::elementOf(std::vector<std::string>{"a", "b", "ba", "c", "d"});
  const int n = *rc::gen::inRange(0, 7);
  pb::TxnRequest r;
  std::vector<std::string> puts;
  std::vector<std::pair<std::string, std::string>> dels;
  for (int i = 0; i < n; ++i) {
    pb::RequestOp* op = r.add_success();
    const std::string key = *key_gen;
    if (*rc::gen::arbitrary<bool>()) {
      op->mutable_request_put()->set_key(key);
      puts.push_back(key);
    } else {
      std::string end = *rc::gen::elementOf(std::vector<std::string>{
          "", std::string("\0", 1), "a", "b", "bb", "c", "e"});
      op->mutable_request_delete_range()->set_key(key);
      op->mutable_request_delete_range()->set_range_end(end);
      dels.emplace_back(key, end);
    }
  }
  bool want_dup = false;
  for (size_t i = 0; i < puts.size(); ++i) {
    for (size_t j = i + 1; j < puts.size(); ++j) {
      if (puts[i] == puts[j]) want_dup = true;
    }
    for (const auto& [b, e] : dels) {
      const bool in = e.empty() ? puts[i] == b
                      : e == std::string_view("\0", 1)
                          ? false  // etcd 3.4: from-key deletes never conflict
                          : b <= puts[i] && puts[i] < e;
      if (in) want_dup = true;
    }
  }
  const absl::Status got = CheckTxn(r, KvLimits{});
  RC_ASSERT(got.ok() == !want_dup);
  if (!got.ok()) RC_ASSERT(got == ErrDuplicateKey());
}

TEST(EtcdKvCheck, IsTxnReadOnly) {
  EXPECT_TRUE(IsTxnReadOnly(pb::TxnRequest()));
  EXPECT_TRUE(IsTxnReadOnly(Parse<pb::TxnRequest>(
      "compare { key: 'a' } success { request_range { key: 'a' } } "
      "failure { request_range { key: 'b' } }")));
  EXPECT_FALSE(IsTxnReadOnly(
      Parse<pb::TxnRequest>("failure { request_put { key: 'b' } }")));
  EXPECT_FALSE(IsTxnReadOnly(
      Parse<pb::TxnRequest>("success { request_delete_range { key: 'b' } }")));
  // etcd counts any nested txn as a write.
  EXPECT_FALSE(
      IsTxnReadOnly(Parse<pb::TxnRequest>("success { request_txn { } }")));
}

// ------------------------------------------------------------------- Range

// Keys with distinct orders per target:
//   key  create  mod  version  value
//   a    2       7    2        "3"
//   b    3       3    1        "1"
//   c    4       8    3        "0"
//   d    5       5    1        "2"
class RangeTest : public EtcdKvTest {
 protected:
  void SetUp() override {
    Put("a", "x");  // rev 2
    Put("b", "1");  // rev 3
    Put("c", "x");  // rev 4
    Put("d", "2");  // rev 5
    Put("c", "y");  // rev 6
    Put("a", "3");  // rev 7
    Put("c", "0");  // rev 8
    ASSERT_EQ(kv_.Rev(), 8);
  }
};

TEST_F(RangeTest, SingleKeyPrefixAndFromKey) {
  auto r = Range("key: 'b'");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_THAT(Keys(*r), ElementsAre("b"));
  EXPECT_EQ(r->count(), 1);
  EXPECT_FALSE(r->more());
  EXPECT_EQ(r->header().revision(), 8);
  const auto& kv = r->kvs(0);
  EXPECT_EQ(kv.value(), "1");
  EXPECT_EQ(kv.create_revision(), 3);
  EXPECT_EQ(kv.mod_revision(), 3);
  EXPECT_EQ(kv.version(), 1);
  EXPECT_EQ(kv.lease(), 0);

  r = Range("key: 'b' range_end: 'd'");
  ASSERT_TRUE(r.ok());
  EXPECT_THAT(Keys(*r), ElementsAre("b", "c"));
  r = Range("key: 'b' range_end: '\\000'");
  ASSERT_TRUE(r.ok());
  EXPECT_THAT(Keys(*r), ElementsAre("b", "c", "d"));
  r = Range("key: '\\000' range_end: '\\000'");
  ASSERT_TRUE(r.ok());
  EXPECT_THAT(Keys(*r), ElementsAre("a", "b", "c", "d"));
  r = Range("key: 'zz'");
  ASSERT_TRUE(r.ok());
  EXPECT_THAT(Keys(*r), IsEmpty());
  EXPECT_EQ(r->count(), 0);
}

TEST_F(RangeTest, LimitSetsMoreAndCountIgnoresIt) {
  auto r = Range("key: 'a' range_end: 'z' limit: 2");
  ASSERT_TRUE(r.ok());
  EXPECT_THAT(Keys(*r), ElementsAre("a", "b"));
  EXPECT_TRUE(r->more());
  EXPECT_EQ(r->count(), 4);
  r = Range("key: 'a' range_end: 'z' limit: 4");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->kvs_size(), 4);
  EXPECT_FALSE(r->more());
  r = Range("key: 'a' range_end: 'z' limit: 9223372036854775807");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->kvs_size(), 4);
  EXPECT_FALSE(r->more());
  // A negative limit is no limit.
  r = Range("key: 'a' range_end: 'z' limit: -1");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->kvs_size(), 4);
  EXPECT_FALSE(r->more());
}

TEST_F(RangeTest, SortEveryTargetAndOrder) {
  struct Case {
    const char* target;
    std::vector<std::string> ascend;
  };
  const Case cases[] = {
      {"KEY", {"a", "b", "c", "d"}},
      {"CREATE", {"a", "b", "c", "d"}},
      {"MOD", {"b", "d", "a", "c"}},
      {"VERSION", {"b", "d", "a", "c"}},  // ties b/d keep key order
      {"VALUE", {"c", "b", "d", "a"}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.target);
    auto r =
        Range(absl::StrCat("key: 'a' range_end: 'z' sort_order: ASCEND "
                           "sort_target: ",
                           c.target));
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(Keys(*r), c.ascend);
    EXPECT_FALSE(r->more());

    std::vector<std::string> descend = c.ascend;
    std::reverse(descend.begin(), descend.end());
    if (std::string_view(c.target) == "VERSION") {
      descend = {"c", "a", "b", "d"};  // stable: ties stay in key order
    }
    r =
        Range(absl::StrCat("key: 'a' range_end: 'z' sort_order: DESCEND "
                           "sort_target: ",
                           c.target));
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(Keys(*r), descend);

    // With a limit, the whole range is sorted and then truncated.
    r =
        Range(absl::StrCat("key: 'a' range_end: 'z' limit: 2 "
                           "sort_order: DESCEND sort_target: ",
                           c.target));
    ASSERT_TRUE(r.ok());
    EXPECT_THAT(Keys(*r), ElementsAre(descend[0], descend[1]));
    EXPECT_TRUE(r->more());
    EXPECT_EQ(r->count(), 4);
    r =
        Range(absl::StrCat("key: 'a' range_end: 'z' limit: 3 "
                           "sort_order: ASCEND sort_target: ",
                           c.target));
    ASSERT_TRUE(r.ok());
    EXPECT_THAT(Keys(*r), ElementsAre(c.ascend[0], c.ascend[1], c.ascend[2]));
    EXPECT_TRUE(r->more());
  }
}

TEST_F(RangeTest, TargetWithoutOrderSortsOnlyTheLimitedReadAsEtcd) {
  // No order and a non-key target: etcd sorts ascending, but reads only
  // limit + 1 keys (in key order) first: a, b, c by MOD is b, a, c.
  auto r = Range("key: 'a' range_end: 'z' limit: 2 sort_target: MOD");
  ASSERT_TRUE(r.ok());
  EXPECT_THAT(Keys(*r), ElementsAre("b", "a"));
  EXPECT_TRUE(r->more());
  r = Range("key: 'a' range_end: 'z' sort_target: MOD");
  ASSERT_TRUE(r.ok());
  EXPECT_THAT(Keys(*r), ElementsAre("b", "d", "a", "c"));
}

TEST_F(RangeTest, InvalidSortOptionIsRejected) {
  pb::RangeRequest r;
  r.set_key("a");
  r.set_sort_order(pb::RangeRequest::ASCEND);
  r.set_sort_target(static_cast<pb::RangeRequest::SortTarget>(9));
  EXPECT_EQ(ApplyRange(kv_, r).status(), ErrInvalidSortOption());
  r.set_sort_target(pb::RangeRequest::KEY);
  r.set_sort_order(static_cast<pb::RangeRequest::SortOrder>(3));
  EXPECT_EQ(ApplyRange(kv_, r).status(), ErrInvalidSortOption());
}

TEST_F(RangeTest, RevisionFilters) {
  auto r = Range("key: 'a' range_end: 'z' min_mod_revision: 5");
  ASSERT_TRUE(r.ok());
  EXPECT_THAT(Keys(*r), ElementsAre("a", "c", "d"));
  EXPECT_EQ(r->count(), 4);  // count ignores filters
  r = Range("key: 'a' range_end: 'z' max_mod_revision: 6");
  ASSERT_TRUE(r.ok());
  EXPECT_THAT(Keys(*r), ElementsAre("b", "d"));
  r = Range(
      "key: 'a' range_end: 'z' min_create_revision: 3 max_create_revision: 4");
  ASSERT_TRUE(r.ok());
  EXPECT_THAT(Keys(*r), ElementsAre("b", "c"));
  r = Range(
      "key: 'a' range_end: 'z' min_mod_revision: 5 max_mod_revision: 8 "
      "min_create_revision: 4");
  ASSERT_TRUE(r.ok());
  EXPECT_THAT(Keys(*r), ElementsAre("c", "d"));

  // With a limit, filtering happens on the whole range first.
  r = Range("key: 'a' range_end: 'z' limit: 1 min_mod_revision: 6");
  ASSERT_TRUE(r.ok());
  EXPECT_THAT(Keys(*r), ElementsAre("a"));
  EXPECT_TRUE(r->more());
  EXPECT_EQ(r->count(), 4);
  r = Range("key: 'a' range_end: 'z' limit: 2 min_mod_revision: 6");
  ASSERT_TRUE(r.ok());
  EXPECT_THAT(Keys(*r), ElementsAre("a", "c"));
  EXPECT_FALSE(r->more());
  r = Range("key: 'b' range_end: 'z' limit: 1 min_mod_revision: 9");
  ASSERT_TRUE(r.ok());
  EXPECT_THAT(Keys(*r), IsEmpty());
  EXPECT_FALSE(r->more());
  EXPECT_EQ(r->count(), 3);
}

TEST_F(RangeTest, KeysOnlyAndCountOnly) {
  auto r = Range("key: 'a' range_end: 'z' keys_only: true");
  ASSERT_TRUE(r.ok());
  EXPECT_THAT(Keys(*r), ElementsAre("a", "b", "c", "d"));
  for (const auto& kv : r->kvs()) {
    EXPECT_EQ(kv.value(), "");
    EXPECT_GT(kv.mod_revision(), 0);
    EXPECT_GT(kv.version(), 0);
  }
  // Sorting by value still uses the values.
  r = Range(
      "key: 'a' range_end: 'z' keys_only: true sort_order: DESCEND "
      "sort_target: VALUE");
  ASSERT_TRUE(r.ok());
  EXPECT_THAT(Keys(*r), ElementsAre("a", "d", "b", "c"));
  for (const auto& kv : r->kvs()) EXPECT_EQ(kv.value(), "");

  r = Range("key: 'a' range_end: 'z' count_only: true");
  ASSERT_TRUE(r.ok());
  EXPECT_THAT(Keys(*r), IsEmpty());
  EXPECT_EQ(r->count(), 4);
  EXPECT_FALSE(r->more());
  r = Range("key: 'a' range_end: 'z' count_only: true limit: 1");
  ASSERT_TRUE(r.ok());
  EXPECT_THAT(Keys(*r), IsEmpty());
  EXPECT_EQ(r->count(), 4);
  EXPECT_FALSE(r->more());
  // serializable makes no difference here.
  r = Range("key: 'a' range_end: 'z' serializable: true");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->kvs_size(), 4);
}

TEST_F(RangeTest, HistoricalRevisions) {
  auto r = Range("key: 'a' range_end: 'z' revision: 4");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_THAT(Keys(*r), ElementsAre("a", "b", "c"));
  EXPECT_EQ(r->kvs(0).value(), "x");
  EXPECT_EQ(r->kvs(2).value(), "x");
  EXPECT_EQ(r->count(), 3);
  // The header carries the current revision, as in etcd.
  EXPECT_EQ(r->header().revision(), 8);
  // revision <= 0 is the latest.
  r = Range("key: 'c' revision: -4");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->kvs(0).value(), "0");
  r = Range("key: 'c' revision: 8");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->kvs(0).value(), "0");

  r = Range("key: 'a' revision: 9");
  EXPECT_TRUE(mvcc::IsErrFutureRev(r.status())) << r.status();
  EXPECT_EQ(r.status().code(), absl::StatusCode::kOutOfRange);

  ASSERT_TRUE(
      ApplyCompaction(kv_, Parse<pb::CompactionRequest>("revision: 6")).ok());
  r = Range("key: 'a' revision: 5");
  EXPECT_TRUE(mvcc::IsErrCompacted(r.status())) << r.status();
  EXPECT_EQ(r.status().code(), absl::StatusCode::kOutOfRange);
  r = Range("key: 'a' range_end: 'z' revision: 6");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_THAT(Keys(*r), ElementsAre("a", "b", "c", "d"));
  EXPECT_EQ(r->kvs(0).value(), "x");
  EXPECT_EQ(r->kvs(2).value(), "y");
}

TEST_F(RangeTest, OverWriteTxnSeesItsWrites) {
  mvcc::KvStore::WriteTxn t = kv_.Write();
  ASSERT_TRUE(
      ApplyPut(t, &leases_, Parse<pb::PutRequest>("key: 'bb' value: 'n'"))
          .ok());
  auto r = ApplyRange(t, Parse<pb::RangeRequest>("key: 'b' range_end: 'c'"));
  ASSERT_TRUE(r.ok());
  EXPECT_THAT(Keys(*r), ElementsAre("b", "bb"));
  EXPECT_EQ(r->header().revision(), 9);
  t.End();
}

// A range read in pieces (RangeReader, a few keys a step) with writes to
// the same keys between the pieces answers exactly what one read answered
// when the first piece was read; a compaction past that revision between
// pieces fails the next one.
RC_GTEST_PROP(EtcdKvRangeProp, PiecesAnswerAsOneRead, ()) {
  mvcc::KvStore kv;
  auto write = [&kv] {
    const std::string key(1, static_cast<char>('a' + *rc::gen::inRange(0, 8)));
    mvcc::KvStore::WriteTxn t = kv.Write();
    if (*rc::gen::inRange(0, 4) == 0) {
      t.DeleteRange(key, "");
    } else {
      t.Put(key, std::string(1, static_cast<char>('0' + kv.Rev() % 10)), 0);
    }
    t.End();
  };
  const int writes = *rc::gen::inRange(0, 30);
  for (int i = 0; i < writes; ++i) write();
  pb::RangeRequest r;
  r.set_key(std::string(1, static_cast<char>('a' + *rc::gen::inRange(0, 3))));
  r.set_range_end(
      *rc::gen::element<std::string>("", "z", "f", std::string(1, '\0')));
  r.set_limit(*rc::gen::inRange(0, 6));
  if (*rc::gen::arbitrary<bool>()) {
    r.set_sort_order(*rc::gen::element(pb::RangeRequest::ASCEND,
                                       pb::RangeRequest::DESCEND));
    r.set_sort_target(*rc::gen::element(pb::RangeRequest::KEY,
                                        pb::RangeRequest::MOD,
                                        pb::RangeRequest::VALUE));
  }
  if (*rc::gen::inRange(0, 4) == 0) {
    r.set_min_mod_revision(*rc::gen::inRange<int64_t>(0, writes + 2));
  }
  if (*rc::gen::inRange(0, 4) == 0) {
    r.set_revision(*rc::gen::inRange<int64_t>(0, kv.Rev() + 1));
  }
  r.set_keys_only(*rc::gen::inRange(0, 4) == 0);
  r.set_count_only(*rc::gen::inRange(0, 5) == 0);
  const absl::StatusOr<pb::RangeResponse> want = ApplyRange(kv, r);

  const size_t piece = *rc::gen::inRange<size_t>(1, 5);
  const bool compact = *rc::gen::inRange(0, 5) == 0;
  absl::StatusOr<RangeReader> rd = RangeReader::Begin(r);
  RC_ASSERT(rd.ok());
  const int64_t read_at = r.revision() > 0 ? r.revision() : kv.Rev();
  absl::StatusOr<bool> done;
  bool compacted = false;
  for (int steps = 0;; ++steps) {
    done = rd->Step(kv, piece);
    if (!done.ok() || *done) break;
    RC_ASSERT(steps < 20);
    write();
    write();
    if (compact && !compacted) {
      RC_ASSERT(kv.StartCompaction(kv.Rev()).ok());
      compacted = true;
    }
  }
  if (compacted && kv.CompactRev() > read_at) {
    RC_ASSERT(mvcc::IsErrCompacted(done.status()));
    return;
  }
  RC_ASSERT(done.ok() && *done);
  const pb::RangeResponse got = std::move(*rd).Finish();
  RC_ASSERT(want.ok());
  RC_ASSERT(got.SerializeAsString() == want->SerializeAsString());
}

// Range against a model: sort (stable) and filter the whole range, then
// truncate.
RC_GTEST_PROP(EtcdKvRangeProp, SortFilterLimitMatchModel, ()) {
  mvcc::KvStore kv;
  const int writes = *rc::gen::inRange(0, 25);
  for (int i = 0; i < writes; ++i) {
    const std::string key(1, static_cast<char>('a' + *rc::gen::inRange(0, 6)));
    const std::string value(1,
                            static_cast<char>('0' + *rc::gen::inRange(0, 4)));
    mvcc::KvStore::WriteTxn t = kv.Write();
    if (*rc::gen::inRange(0, 5) == 0) {
      t.DeleteRange(key, "");
    } else {
      t.Put(key, value, 0);
    }
    t.End();
  }
  pb::RangeRequest r;
  r.set_key("a");
  r.set_range_end("z");
  r.set_limit(*rc::gen::inRange(0, 8));
  r.set_sort_order(
      *rc::gen::element(pb::RangeRequest::ASCEND, pb::RangeRequest::DESCEND));
  r.set_sort_target(
      *rc::gen::element(pb::RangeRequest::KEY, pb::RangeRequest::VERSION,
                        pb::RangeRequest::CREATE, pb::RangeRequest::MOD,
                        pb::RangeRequest::VALUE));
  if (*rc::gen::arbitrary<bool>()) {
    r.set_min_mod_revision(*rc::gen::inRange<int64_t>(0, writes + 2));
  }
  if (*rc::gen::arbitrary<bool>()) {
    r.set_max_create_revision(*rc::gen::inRange<int64_t>(0, writes + 2));
  }
  r.set_keys_only(*rc::gen::arbitrary<bool>());

  auto all = kv.Range("a", "z", {});
  RC_ASSERT(all.ok());
  std::vector<mvcc::KeyValue> want = all->kvs;
  std::erase_if(want, [&r](const mvcc::KeyValue& kv) {
    return (r.min_mod_revision() != 0 &&
            kv.mod_revision < r.min_mod_revision()) ||
           (r.max_create_revision() != 0 &&
            kv.create_revision > r.max_create_revision());
  });
  auto field = [&r](const mvcc::KeyValue& kv) -> std::string {
    switch (r.sort_target()) {
      case pb::RangeRequest::VERSION:
        return absl::StrCat(100000 + kv.version);
      case pb::RangeRequest::CREATE:
        return absl::StrCat(100000 + kv.create_revision);
      case pb::RangeRequest::MOD:
        return absl::StrCat(100000 + kv.mod_revision);
      case pb::RangeRequest::VALUE:
        return kv.value;
      default:
        return kv.key;
    }
  };
  std::stable_sort(want.begin(), want.end(),
                   [&](const mvcc::KeyValue& a, const mvcc::KeyValue& b) {
                     return r.sort_order() == pb::RangeRequest::ASCEND
                                ? field(a) < field(b)
                                : field(b) < field(a);
                   });
  bool more = false;
  if (r.limit() > 0 && want.size() > static_cast<size_t>(r.limit())) {
    want.resize(static_cast<size_t>(r.limit()));
    more = true;
  }
  auto got = ApplyRange(kv, r);
  RC_ASSERT(got.ok());
  RC_ASSERT(got->more() == more);
  RC_ASSERT(got->count() == static_cast<int64_t>(all->kvs.size()));
  RC_ASSERT(got->kvs_size() == static_cast<int>(want.size()));
  for (size_t i = 0; i < want.size(); ++i) {
    const auto& g = got->kvs(static_cast<int>(i));
    RC_ASSERT(g.key() == want[i].key);
    RC_ASSERT(g.mod_revision() == want[i].mod_revision);
    RC_ASSERT(g.value() == (r.keys_only() ? std::string() : want[i].value));
  }
}

// --------------------------------------------------------------------- Put

TEST_F(EtcdKvTest, PutHeaderAndPrevKv) {
  EXPECT_EQ(kv_.Rev(), 1);
  auto r = TryPut(Parse<pb::PutRequest>("key: 'a' value: '1' prev_kv: true"));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->header().revision(), 2);
  EXPECT_FALSE(r->has_prev_kv());  // the key did not exist
  ASSERT_EQ(last_events_.size(), 1u);

  r = TryPut(Parse<pb::PutRequest>("key: 'a' value: '2' prev_kv: true"));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->header().revision(), 3);
  ASSERT_TRUE(r->has_prev_kv());
  EXPECT_EQ(r->prev_kv().key(), "a");
  EXPECT_EQ(r->prev_kv().value(), "1");
  EXPECT_EQ(r->prev_kv().mod_revision(), 2);
  EXPECT_EQ(r->prev_kv().version(), 1);

  r = TryPut(Parse<pb::PutRequest>("key: 'a' value: '3'"));
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r->has_prev_kv());  // not asked for
  EXPECT_EQ(Get("a"), "3");
}

TEST_F(EtcdKvTest, PutIgnoreValueAndIgnoreLease) {
  leases_.ids = {5, 6};
  Put("a", "orig", 5);
  leases_.log.clear();

  // ignore_value keeps the value and takes the new lease.
  auto r =
      TryPut(Parse<pb::PutRequest>("key: 'a' ignore_value: true lease: 6"));
  ASSERT_TRUE(r.ok()) << r.status();
  auto got = Range("key: 'a'");
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->kvs(0).value(), "orig");
  EXPECT_EQ(got->kvs(0).lease(), 6);
  EXPECT_EQ(got->kvs(0).version(), 2);
  EXPECT_THAT(leases_.log, ElementsAre("detach 5 a", "attach 6 a"));
  leases_.log.clear();

  // ignore_lease keeps the lease and takes the new value.
  r = TryPut(Parse<pb::PutRequest>("key: 'a' value: 'new' ignore_lease: true"));
  ASSERT_TRUE(r.ok());
  got = Range("key: 'a'");
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->kvs(0).value(), "new");
  EXPECT_EQ(got->kvs(0).lease(), 6);
  EXPECT_THAT(leases_.log, IsEmpty());

  // Both at once rewrites the key as it is.
  r = TryPut(Parse<pb::PutRequest>(
      "key: 'a' ignore_value: true ignore_lease: true prev_kv: true"));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->prev_kv().value(), "new");
  got = Range("key: 'a'");
  EXPECT_EQ(got->kvs(0).value(), "new");
  EXPECT_EQ(got->kvs(0).lease(), 6);
  EXPECT_EQ(got->kvs(0).version(), 4);

  // On a missing key both fail and change nothing.
  const int64_t rev = kv_.Rev();
  EXPECT_EQ(
      TryPut(Parse<pb::PutRequest>("key: 'zz' ignore_value: true")).status(),
      ErrKeyNotFound());
  EXPECT_EQ(
      TryPut(Parse<pb::PutRequest>("key: 'zz' value: 'v' ignore_lease: true"))
          .status(),
      ErrKeyNotFound());
  EXPECT_EQ(kv_.Rev(), rev);
  EXPECT_THAT(last_events_, IsEmpty());
  EXPECT_EQ(Get("zz"), "<none>");
}

TEST_F(EtcdKvTest, PutLeaseNotFound) {
  auto r = TryPut(Parse<pb::PutRequest>("key: 'a' value: 'v' lease: 9"));
  EXPECT_EQ(r.status(), ErrLeaseNotFound());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(kv_.Rev(), 1);
  EXPECT_THAT(leases_.log, IsEmpty());
  // The lease is checked before the key (etcd's order for a lone put).
  r = TryPut(Parse<pb::PutRequest>("key: 'a' lease: 9 ignore_value: true"));
  EXPECT_EQ(r.status(), ErrLeaseNotFound());
  // No lessor: no lease exists.
  mvcc::KvStore::WriteTxn t = kv_.Write();
  EXPECT_EQ(
      ApplyPut(t, nullptr, Parse<pb::PutRequest>("key: 'a' lease: 9")).status(),
      ErrLeaseNotFound());
  EXPECT_TRUE(
      ApplyPut(t, nullptr, Parse<pb::PutRequest>("key: 'a' value: 'v'")).ok());
  t.End();
  EXPECT_EQ(Get("a"), "v");
}

TEST_F(EtcdKvTest, PutMovesKeyBetweenLeases) {
  leases_.ids = {5, 6};
  Put("k", "1", 5);
  EXPECT_THAT(leases_.log, ElementsAre("attach 5 k"));
  leases_.log.clear();
  Put("k", "2", 5);  // same lease: nothing to do
  EXPECT_THAT(leases_.log, IsEmpty());
  Put("k", "3", 6);
  EXPECT_THAT(leases_.log, ElementsAre("detach 5 k", "attach 6 k"));
  leases_.log.clear();
  Put("k", "4");
  EXPECT_THAT(leases_.log, ElementsAre("detach 6 k"));
  leases_.log.clear();
  Put("k", "5");
  EXPECT_THAT(leases_.log, IsEmpty());
  auto got = Range("key: 'k'");
  EXPECT_EQ(got->kvs(0).lease(), 0);
}

// ------------------------------------------------------------- DeleteRange

TEST_F(EtcdKvTest, DeleteRangePrevKvsCountAndLeases) {
  leases_.ids = {5};
  Put("a", "1", 5);
  Put("b", "2");
  Put("c", "3", 5);
  Put("d", "4");
  leases_.log.clear();

  auto r = Delete(
      Parse<pb::DeleteRangeRequest>("key: 'a' range_end: 'd' prev_kv: true"));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->deleted(), 3);
  EXPECT_EQ(r->header().revision(), 6);
  ASSERT_EQ(r->prev_kvs_size(), 3);
  EXPECT_EQ(r->prev_kvs(0).key(), "a");
  EXPECT_EQ(r->prev_kvs(0).value(), "1");
  EXPECT_EQ(r->prev_kvs(0).lease(), 5);
  EXPECT_EQ(r->prev_kvs(1).key(), "b");
  EXPECT_EQ(r->prev_kvs(2).value(), "3");
  EXPECT_THAT(leases_.log, ElementsAre("detach 5 a", "detach 5 c"));
  EXPECT_EQ(last_events_.size(), 3u);
  EXPECT_EQ(Get("a"), "<none>");
  EXPECT_EQ(Get("d"), "4");

  // Without prev_kv: only the count.
  r = Delete(Parse<pb::DeleteRangeRequest>("key: 'd'"));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->deleted(), 1);
  EXPECT_EQ(r->prev_kvs_size(), 0);
  EXPECT_EQ(r->header().revision(), 7);

  // Nothing to delete: the revision stays.
  r = Delete(Parse<pb::DeleteRangeRequest>(
      "key: 'a' range_end: '\\000' prev_kv: true"));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->deleted(), 0);
  EXPECT_EQ(r->header().revision(), 7);
  EXPECT_THAT(last_events_, IsEmpty());
  EXPECT_EQ(kv_.Rev(), 7);
}

// --------------------------------------------------------------------- Txn

// One key "k": create 2, mod 3, version 2, value "v", lease 7.
class TxnTest : public EtcdKvTest {
 protected:
  void SetUp() override {
    leases_.ids = {7, 8};
    Put("k", "u", 7);  // rev 2
    Put("k", "v", 7);  // rev 3
    leases_.log.clear();
  }
  bool Succeeds(std::string_view compare) {
    auto r = Txn(absl::StrCat("compare { ", std::string(compare), " }"));
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() && r->succeeded();
  }
};

TEST_F(TxnTest, CompareEveryTargetAndResult) {
  struct Target {
    const char* name;
    const char* field;
    std::string below, equal, above;
  };
  const Target targets[] = {
      {"VERSION", "version", "1", "2", "3"},
      {"CREATE", "create_revision", "1", "2", "3"},
      {"MOD", "mod_revision", "2", "3", "4"},
      {"LEASE", "lease", "6", "7", "8"},
      {"VALUE", "value", "'u'", "'v'", "'w'"},
  };
  for (const Target& t : targets) {
    SCOPED_TRACE(t.name);
    auto cmp = [&t](const char* result, const std::string& operand) {
      return absl::StrCat("key: 'k' target: ", t.name, " result: ", result, " ",
                          t.field, ": ", operand);
    };
    // The key's field compared with the operand.
    EXPECT_TRUE(Succeeds(cmp("EQUAL", t.equal)));
    EXPECT_FALSE(Succeeds(cmp("EQUAL", t.below)));
    EXPECT_FALSE(Succeeds(cmp("EQUAL", t.above)));
    EXPECT_TRUE(Succeeds(cmp("NOT_EQUAL", t.below)));
    EXPECT_TRUE(Succeeds(cmp("NOT_EQUAL", t.above)));
    EXPECT_FALSE(Succeeds(cmp("NOT_EQUAL", t.equal)));
    EXPECT_TRUE(Succeeds(cmp("GREATER", t.below)));
    EXPECT_FALSE(Succeeds(cmp("GREATER", t.equal)));
    EXPECT_FALSE(Succeeds(cmp("GREATER", t.above)));
    EXPECT_TRUE(Succeeds(cmp("LESS", t.above)));
    EXPECT_FALSE(Succeeds(cmp("LESS", t.equal)));
    EXPECT_FALSE(Succeeds(cmp("LESS", t.below)));
  }
  // None of this changed anything.
  EXPECT_EQ(kv_.Rev(), 3);
}

TEST_F(TxnTest, CompareMissingKey) {
  // A missing key compares as zeros...
  EXPECT_TRUE(Succeeds("key: 'x' target: VERSION result: EQUAL version: 0"));
  EXPECT_TRUE(
      Succeeds("key: 'x' target: CREATE result: EQUAL create_revision: 0"));
  EXPECT_TRUE(Succeeds("key: 'x' target: MOD result: LESS mod_revision: 1"));
  EXPECT_TRUE(Succeeds("key: 'x' target: LEASE result: EQUAL lease: 0"));
  EXPECT_FALSE(Succeeds("key: 'x' target: VERSION result: GREATER version: 0"));
  // ...but a value compare on a missing key always fails.
  EXPECT_FALSE(Succeeds("key: 'x' target: VALUE result: EQUAL value: ''"));
  EXPECT_FALSE(Succeeds("key: 'x' target: VALUE result: NOT_EQUAL value: 'a'"));
  EXPECT_FALSE(Succeeds("key: 'x' target: VALUE result: LESS value: 'a'"));
  // A deleted key is missing too.
  ASSERT_TRUE(Delete(Parse<pb::DeleteRangeRequest>("key: 'k'")).ok());
  EXPECT_TRUE(Succeeds("key: 'k' target: VERSION result: EQUAL version: 0"));
  EXPECT_TRUE(
      Succeeds("key: 'k' target: CREATE result: EQUAL create_revision: 0"));
}

TEST_F(TxnTest, CompareOperandOfAnotherKindReadsAsZero) {
  // target VERSION with a value operand: compared against version 0.
  EXPECT_TRUE(
      Succeeds("key: 'k' target: VERSION result: GREATER value: 'zzz'"));
  EXPECT_FALSE(Succeeds("key: 'k' target: VERSION result: EQUAL value: 'v'"));
  // target VALUE with no value operand: compared against "".
  EXPECT_TRUE(Succeeds("key: 'k' target: VALUE result: GREATER version: 9"));
  // Operand set, but target left at its default (VERSION).
  EXPECT_TRUE(Succeeds("key: 'k' version: 2"));
  EXPECT_FALSE(Succeeds("key: 'k' version: 1"));
}

TEST_F(TxnTest, RangedCompares) {
  Put("k1", "a");  // rev 4
  Put("k2", "b");  // rev 5
  // [k, l): k, k1, k2 all must satisfy.
  EXPECT_TRUE(Succeeds(
      "key: 'k' range_end: 'l' target: MOD result: GREATER mod_revision: 2"));
  EXPECT_FALSE(Succeeds(
      "key: 'k' range_end: 'l' target: MOD result: GREATER mod_revision: 3"));
  EXPECT_TRUE(Succeeds(
      "key: 'k' range_end: 'l' target: MOD result: LESS mod_revision: 6"));
  EXPECT_FALSE(Succeeds(
      "key: 'k' range_end: 'l' target: MOD result: LESS mod_revision: 5"));
  EXPECT_TRUE(Succeeds(
      "key: 'k' range_end: 'l' target: VALUE result: NOT_EQUAL value: 'c'"));
  EXPECT_FALSE(Succeeds(
      "key: 'k' range_end: 'l' target: VALUE result: NOT_EQUAL value: 'a'"));
  EXPECT_TRUE(Succeeds(
      "key: 'k1' range_end: '\\000' target: VERSION result: EQUAL version: 1"));
  EXPECT_FALSE(Succeeds(
      "key: 'k' range_end: '\\000' target: VERSION result: EQUAL version: 1"));
  // An empty range compares as one missing key.
  EXPECT_TRUE(Succeeds(
      "key: 'm' range_end: 'n' target: VERSION result: EQUAL version: 0"));
  EXPECT_TRUE(
      Succeeds("key: 'm' range_end: 'n' target: CREATE result: LESS "
               "create_revision: 1"));
  EXPECT_FALSE(Succeeds(
      "key: 'm' range_end: 'n' target: VALUE result: EQUAL value: ''"));
}

TEST_F(TxnTest, ComparesAreAConjunction) {
  auto r =
      Txn("compare { key: 'k' target: VALUE value: 'v' } "
          "compare { key: 'k' target: VERSION result: EQUAL version: 2 } "
          "success { request_range { key: 'k' } } "
          "failure { request_put { key: 'f' value: '1' } }");
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->succeeded());
  r =
      Txn("compare { key: 'k' target: VALUE value: 'v' } "
          "compare { key: 'k' target: VERSION result: EQUAL version: 3 } "
          "success { request_range { key: 'k' } } "
          "failure { request_put { key: 'f' value: '1' } }");
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r->succeeded());
  ASSERT_EQ(r->responses_size(), 1);
  EXPECT_TRUE(r->responses(0).has_response_put());
  EXPECT_EQ(Get("f"), "1");
}

TEST_F(TxnTest, OpsRunInOrderAndSeeEarlierWrites) {
  auto r =
      Txn("compare { key: 'k' target: VALUE value: 'v' } "
          "success { request_put { key: 'a' value: '1' } } "
          "success { request_range { key: 'a' range_end: 'z' } } "
          "success { request_delete_range { key: 'k' prev_kv: true } } "
          "success { request_range { key: 'a' range_end: 'z' } } "
          "success { request_put { key: 'b' value: '2' prev_kv: true } } "
          "success { request_range { key: 'b' count_only: true } } "
          "failure { request_put { key: 'no' value: '1' } }");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->succeeded());
  EXPECT_EQ(r->header().revision(), 4);
  ASSERT_EQ(r->responses_size(), 6);
  ASSERT_TRUE(r->responses(0).has_response_put());
  EXPECT_EQ(r->responses(0).response_put().header().revision(), 4);
  ASSERT_TRUE(r->responses(1).has_response_range());
  EXPECT_THAT(Keys(r->responses(1).response_range()), ElementsAre("a", "k"));
  EXPECT_EQ(r->responses(1).response_range().header().revision(), 4);
  EXPECT_EQ(r->responses(1).response_range().kvs(0).mod_revision(), 4);
  ASSERT_TRUE(r->responses(2).has_response_delete_range());
  EXPECT_EQ(r->responses(2).response_delete_range().deleted(), 1);
  EXPECT_EQ(r->responses(2).response_delete_range().prev_kvs(0).value(), "v");
  EXPECT_THAT(Keys(r->responses(3).response_range()), ElementsAre("a"));
  EXPECT_FALSE(r->responses(4).response_put().has_prev_kv());
  EXPECT_EQ(r->responses(5).response_range().count(), 1);
  // One revision for the whole txn, with the deleted key's lease released.
  EXPECT_EQ(kv_.Rev(), 4);
  EXPECT_EQ(last_events_.size(), 3u);
  EXPECT_THAT(leases_.log, ElementsAre("detach 7 k"));
  EXPECT_EQ(Get("no"), "<none>");
}

TEST_F(TxnTest, HeaderRevisions) {
  // Read-only: the current revision.
  auto r = Txn("success { request_range { key: 'k' } }");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->header().revision(), 3);
  EXPECT_EQ(r->responses(0).response_range().header().revision(), 3);
  // An empty txn.
  r = Txn("");
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->succeeded());
  EXPECT_EQ(r->header().revision(), 3);
  EXPECT_EQ(r->responses_size(), 0);
  // A write op that changes nothing.
  r = Txn("success { request_delete_range { key: 'nope' } }");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->header().revision(), 3);
  EXPECT_EQ(r->responses(0).response_delete_range().header().revision(), 3);
  EXPECT_EQ(kv_.Rev(), 3);
  // A write: the new revision; a range before the write sees the old one.
  r =
      Txn("success { request_range { key: 'k' } } "
          "success { request_put { key: 'k' value: 'w' } }");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->header().revision(), 4);
  EXPECT_EQ(r->responses(0).response_range().header().revision(), 3);
  EXPECT_EQ(r->responses(1).response_put().header().revision(), 4);
}

TEST_F(TxnTest, NestedTxns) {
  auto r =
      Txn("compare { key: 'k' target: VALUE value: 'v' } "
          "success { request_put { key: 'k' value: 'w' } } "
          "success { request_txn { "
          // Compares of nested txns see the state before the txn, as etcd
          // evaluates every compare first.
          "  compare { key: 'k' target: VALUE value: 'v' } "
          "  success { request_range { key: 'k' } } "
          "  success { request_txn { "
          "    compare { key: 'k' target: VERSION result: EQUAL version: 9 } "
          "    success { request_put { key: 's' value: '1' } } "
          "    failure { request_put { key: 'f' value: '1' } } "
          "    failure { request_range { key: 'f' } } } } "
          "  failure { request_put { key: 'no' value: '1' } } } } "
          "success { request_range { key: 'a' range_end: 'z' } }");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->succeeded());
  EXPECT_EQ(r->header().revision(), 4);
  ASSERT_EQ(r->responses_size(), 3);
  const pb::TxnResponse& n1 = r->responses(1).response_txn();
  EXPECT_TRUE(n1.succeeded());
  EXPECT_TRUE(n1.has_header());
  EXPECT_EQ(n1.header().revision(), 0);  // etcd leaves nested headers empty
  ASSERT_EQ(n1.responses_size(), 2);
  // The nested range sees the outer put.
  EXPECT_EQ(n1.responses(0).response_range().kvs(0).value(), "w");
  const pb::TxnResponse& n2 = n1.responses(1).response_txn();
  EXPECT_FALSE(n2.succeeded());
  ASSERT_EQ(n2.responses_size(), 2);
  EXPECT_EQ(n2.responses(0).response_put().header().revision(), 4);
  EXPECT_EQ(n2.responses(1).response_range().kvs(0).value(), "1");
  EXPECT_THAT(Keys(r->responses(2).response_range()), ElementsAre("f", "k"));
  EXPECT_EQ(Get("no"), "<none>");
  EXPECT_EQ(Get("s"), "<none>");
}

TEST_F(TxnTest, FailedChecksLeaveTheStoreUnchanged) {
  struct Case {
    const char* txn;
    absl::Status want;
  };
  const Case cases[] = {
      // A later op's lease is missing.
      {"success { request_put { key: 'a' value: '1' } } "
       "success { request_put { key: 'b' value: '2' lease: 99 } }",
       ErrLeaseNotFound()},
      // In a nested txn.
      {"success { request_delete_range { key: 'k' } } "
       "success { request_txn { failure { request_put { key: 'b' lease: 99 } } "
       "  compare { key: 'k' version: 5 } } }",
       ErrLeaseNotFound()},
      // ignore_value on a missing key.
      {"success { request_put { key: 'a' value: '1' } } "
       "success { request_put { key: 'zz' ignore_value: true } }",
       ErrKeyNotFound()},
      // ignore_lease on a missing key (checked before the lease).
      {"success { request_put { key: 'zz' ignore_lease: true lease: 99 } }",
       ErrKeyNotFound()},
      // A range of a future revision, after a put.
      {"success { request_put { key: 'a' value: '1' } } "
       "success { request_range { key: 'a' revision: 4 } }",
       mvcc::ErrFutureRev()},
      // Duplicate keys, even if the caller skipped CheckTxn.
      {"success { request_put { key: 'a' value: '1' } } "
       "success { request_delete_range { key: 'a' range_end: 'b' } }",
       ErrDuplicateKey()},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.txn);
    auto r = Txn(c.txn);
    EXPECT_EQ(r.status().code(), c.want.code());
    EXPECT_EQ(r.status().message(), c.want.message());
    EXPECT_EQ(kv_.Rev(), 3);
    EXPECT_THAT(last_events_, IsEmpty());
    EXPECT_EQ(Get("k"), "v");
    EXPECT_EQ(Get("a"), "<none>");
    EXPECT_THAT(leases_.log, IsEmpty());
  }
  // Put errors come before range errors, whatever their order.
  auto r =
      Txn("success { request_range { key: 'a' revision: 100 } } "
          "success { request_put { key: 'b' lease: 99 } }");
  EXPECT_EQ(r.status(), ErrLeaseNotFound());
  // Ops of the branch not taken are not checked.
  r =
      Txn("compare { key: 'k' version: 1 } "
          "success { request_put { key: 'b' lease: 99 } } "
          "failure { request_put { key: 'c' value: '1' } }");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_FALSE(r->succeeded());
  EXPECT_EQ(Get("c"), "1");
}

TEST_F(TxnTest, CompactedRevisionInTxn) {
  Put("a", "1");  // rev 4
  Put("a", "2");  // rev 5
  ASSERT_TRUE(
      ApplyCompaction(kv_, Parse<pb::CompactionRequest>("revision: 4")).ok());
  auto r =
      Txn("success { request_put { key: 'b' value: '1' } } "
          "success { request_range { key: 'a' revision: 3 } }");
  EXPECT_TRUE(mvcc::IsErrCompacted(r.status())) << r.status();
  EXPECT_EQ(kv_.Rev(), 5);
  r =
      Txn("success { request_put { key: 'b' value: '1' } } "
          "success { request_range { key: 'a' revision: 4 } }");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->responses(1).response_range().kvs(0).value(), "1");
  EXPECT_EQ(r->responses(1).response_range().header().revision(), 6);
}

TEST_F(TxnTest, LeasesInTxn) {
  auto r =
      Txn("success { request_put { key: 'a' value: '1' lease: 8 } } "
          "success { request_put { key: 'k' value: 'x' lease: 8 } } "
          "success { request_put { key: 'b' value: '1' lease: 8 } } "
          "success { request_delete_range { key: 'b0' range_end: 'c' } }");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_THAT(leases_.log, ElementsAre("attach 8 a", "detach 7 k", "attach 8 k",
                                       "attach 8 b"));
  leases_.log.clear();
  r =
      Txn("success { request_delete_range { key: 'a' range_end: 'c' } } "
          "success { request_put { key: 'k' ignore_value: true } }");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_THAT(leases_.log,
              ElementsAre("detach 8 a", "detach 8 b", "detach 8 k"));
}

TEST_F(TxnTest, EmptyOpGetsEmptyResponse) {
  // CheckTxn rejects it; applied anyway it answers with an empty op.
  auto r = Txn("success { } success { request_range { key: 'k' } }");
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r->responses_size(), 2);
  EXPECT_EQ(r->responses(0).response_case(), pb::ResponseOp::RESPONSE_NOT_SET);
  EXPECT_TRUE(r->responses(1).has_response_range());
}

TEST_F(TxnTest, ReadOnlyTxnWithoutWriteTxn) {
  auto r = ApplyReadOnlyTxn(
      kv_, Parse<pb::TxnRequest>(
               "compare { key: 'k' target: MOD result: EQUAL mod_revision: 3 } "
               "success { request_range { key: 'k' } } "
               "failure { request_range { key: 'x' } }"));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->succeeded());
  EXPECT_EQ(r->header().revision(), 3);
  EXPECT_EQ(r->responses(0).response_range().kvs(0).value(), "v");
  r = ApplyReadOnlyTxn(
      kv_, Parse<pb::TxnRequest>(
               "success { request_range { key: 'k' revision: 4 } }"));
  EXPECT_TRUE(mvcc::IsErrFutureRev(r.status()));
  r = ApplyReadOnlyTxn(
      kv_, Parse<pb::TxnRequest>("failure { request_put { key: 'k' } }"));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(kv_.Rev(), 3);
}

// -------------------------------------------------------------- Compaction

TEST_F(EtcdKvTest, Compaction) {
  Put("a", "1");
  Put("a", "2");
  Put("a", "3");  // rev 4
  auto r = ApplyCompaction(kv_, Parse<pb::CompactionRequest>("revision: 3"));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->header().revision(), 4);
  r = ApplyCompaction(kv_, Parse<pb::CompactionRequest>("revision: 3"));
  EXPECT_TRUE(mvcc::IsErrCompacted(r.status())) << r.status();
  r = ApplyCompaction(kv_, Parse<pb::CompactionRequest>("revision: 5"));
  EXPECT_TRUE(mvcc::IsErrFutureRev(r.status())) << r.status();
  EXPECT_EQ(Get("a"), "3");
}

// ------------------------------------------------------------- conversions

TEST(EtcdKvProto, Events) {
  mvcc::Event e;
  e.type = mvcc::Event::kDelete;
  e.kv = mvcc::KeyValue();
  e.kv.key = "k";
  e.kv.mod_revision = 9;
  mvccpb::Event out;
  ToProto(e, &out);
  EXPECT_EQ(out.type(), mvccpb::Event::DELETE);
  EXPECT_EQ(out.kv().key(), "k");
  EXPECT_EQ(out.kv().mod_revision(), 9);
  EXPECT_FALSE(out.has_prev_kv());
  e.type = mvcc::Event::kPut;
  e.has_prev_kv = true;
  e.prev_kv = {.key = "k",
               .create_revision = 2,
               .mod_revision = 3,
               .version = 1,
               .value = "v",
               .lease = 4};
  out.Clear();
  ToProto(e, &out);
  EXPECT_EQ(out.type(), mvccpb::Event::PUT);
  EXPECT_EQ(out.prev_kv().create_revision(), 2);
  EXPECT_EQ(out.prev_kv().version(), 1);
  EXPECT_EQ(out.prev_kv().value(), "v");
  EXPECT_EQ(out.prev_kv().lease(), 4);
}

// The wire format is etcd's: a few bytes from etcd's field numbers.
TEST(EtcdKvProto, WireNumbersAreEtcds) {
  pb::Compare c;
  c.set_range_end("e");  // field 64, bytes: tag 0x82 0x04
  std::string bytes;
  ASSERT_TRUE(c.SerializeToString(&bytes));
  EXPECT_EQ(bytes, std::string("\x82\x04\x01"
                               "e",
                               4));
  pb::RangeRequest r;
  r.set_max_create_revision(1);  // field 13, varint
  ASSERT_TRUE(r.SerializeToString(&bytes));
  EXPECT_EQ(bytes, std::string("\x68\x01", 2));
  mvccpb::KeyValue kv;
  kv.set_lease(1);  // field 6
  ASSERT_TRUE(kv.SerializeToString(&bytes));
  EXPECT_EQ(bytes, std::string("\x30\x01", 2));
}

// etcd 3.4 accepts a txn that deletes from a key (range_end "\0") and then
// puts that key; the put lands after the delete in the same revision, so
// the key is new again: create = mod = the txn's revision, version 1.
TEST_F(EtcdKvTest, FromKeyDeleteThenPutInOneTxn) {
  Put("a", "1");  // revision 2
  auto t = Txn(
      "success { request_delete_range { key: 'a' range_end: '\\000' } } "
      "success { request_put { key: 'a' value: '2' } }");
  ASSERT_TRUE(t.ok()) << t.status();
  auto r = Range("key: 'a'");
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r->kvs_size(), 1);
  EXPECT_EQ(r->kvs(0).value(), "2");
  EXPECT_EQ(r->kvs(0).create_revision(), 3);
  EXPECT_EQ(r->kvs(0).mod_revision(), 3);
  EXPECT_EQ(r->kvs(0).version(), 1);
  ASSERT_EQ(last_events_.size(), 2u);
  EXPECT_EQ(last_events_[0].type, mvcc::Event::kDelete);
  EXPECT_EQ(last_events_[1].type, mvcc::Event::kPut);
}

}  // namespace
}  // namespace detcd::server
