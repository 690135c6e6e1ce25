// Unit tests for KvStore: one test (or a few) per rule of etcd's mvcc that
// the store promises in kv_store.h.
#include "engine/mvcc/kv_store.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/util/coding.h"
#include "engine/util/hash.h"

namespace detcd::mvcc {
namespace {

using std::string_literals::operator""s;

const std::string kAll = "\0"s;  // as a range end: every key >= key

KeyValue Kv(std::string key, int64_t create, int64_t mod, int64_t version,
            std::string value, int64_t lease = 0) {
  KeyValue kv;
  kv.key = std::move(key);
  kv.create_revision = create;
  kv.mod_revision = mod;
  kv.version = version;
  kv.value = std::move(value);
  kv.lease = lease;
  return kv;
}

KeyValue Tomb(std::string key, int64_t mod) {
  KeyValue kv;
  kv.key = std::move(key);
  kv.mod_revision = mod;
  return kv;
}

Event PutEv(KeyValue kv, std::optional<KeyValue> prev = std::nullopt) {
  Event e;
  e.type = Event::kPut;
  e.kv = std::move(kv);
  if (prev) {
    e.has_prev_kv = true;
    e.prev_kv = *prev;
  }
  return e;
}

Event DelEv(std::string key, int64_t rev, KeyValue prev) {
  Event e;
  e.type = Event::kDelete;
  e.kv = Tomb(std::move(key), rev);
  e.has_prev_kv = true;
  e.prev_kv = std::move(prev);
  return e;
}

std::vector<Event> Put(KvStore& s, std::string_view k, std::string_view v,
                       int64_t lease = 0) {
  auto t = s.Write();
  t.Put(k, v, lease);
  return t.End();
}

std::vector<Event> Del(KvStore& s, std::string_view k,
                       std::string_view end = {}) {
  auto t = s.Write();
  t.DeleteRange(k, end);
  return t.End();
}

std::vector<KeyValue> Get(const KvStore& s, std::string_view k,
                          std::string_view end = {}, int64_t rev = 0) {
  RangeOptions o;
  o.rev = rev;
  auto r = s.Range(k, end, o);
  EXPECT_TRUE(r.ok()) << r.status();
  return r.ok() ? r->kvs : std::vector<KeyValue>{};
}

std::vector<std::string> Keys(const std::vector<KeyValue>& kvs) {
  std::vector<std::string> out;
  for (const auto& kv : kvs) out.push_back(kv.key);
  return out;
}

TEST(KvStoreTest, EmptyStore) {
  KvStore s;
  EXPECT_EQ(s.Rev(), 1);
  EXPECT_EQ(s.CompactRev(), -1);
  auto r = s.Range("\0"s, kAll, {});
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->kvs.empty());
  EXPECT_EQ(r->count, 0);
  EXPECT_EQ(r->rev, 1);
  EXPECT_EQ(s.key_count(), 0u);
  EXPECT_EQ(s.revision_count(), 0u);
  EXPECT_EQ(s.size_bytes(), 0);
}

TEST(KvStoreTest, FirstPutGetsRevisionTwo) {
  KvStore s;
  auto t = s.Write();
  EXPECT_EQ(t.Rev(), 1);
  EXPECT_EQ(t.Put("foo", "bar", 7), std::nullopt);
  EXPECT_EQ(t.Rev(), 2);
  auto evs = t.End();
  EXPECT_EQ(evs, std::vector<Event>{PutEv(Kv("foo", 2, 2, 1, "bar", 7))});
  EXPECT_EQ(s.Rev(), 2);
  EXPECT_EQ(Get(s, "foo"), std::vector<KeyValue>{Kv("foo", 2, 2, 1, "bar", 7)});
  EXPECT_EQ(s.key_count(), 1u);
  EXPECT_EQ(s.revision_count(), 1u);
  EXPECT_GT(s.size_bytes(), 0);
}

TEST(KvStoreTest, UpdateKeepsCreateRevisionAndBumpsVersion) {
  KvStore s;
  Put(s, "k", "v1");
  auto t = s.Write();
  auto prev = t.Put("k", "v2", 3);
  ASSERT_TRUE(prev.has_value());
  EXPECT_EQ(*prev, Kv("k", 2, 2, 1, "v1"));
  auto evs = t.End();
  EXPECT_EQ(evs, std::vector<Event>{
                     PutEv(Kv("k", 2, 3, 2, "v2", 3), Kv("k", 2, 2, 1, "v1"))});
  Put(s, "k", "v3");
  EXPECT_EQ(Get(s, "k"), std::vector<KeyValue>{Kv("k", 2, 4, 3, "v3")});
  EXPECT_EQ(s.key_count(), 1u);
  EXPECT_EQ(s.revision_count(), 3u);
}

TEST(KvStoreTest, DeleteRangeWritesTombstonesInKeyOrder) {
  KvStore s;
  Put(s, "c", "3");  // rev 2
  Put(s, "a", "1");  // rev 3
  Put(s, "b", "2");  // rev 4
  Put(s, "d", "4");  // rev 5
  auto t = s.Write();
  auto deleted = t.DeleteRange("a", "d");
  EXPECT_EQ(deleted,
            (std::vector<KeyValue>{Kv("a", 3, 3, 1, "1"), Kv("b", 4, 4, 1, "2"),
                                   Kv("c", 2, 2, 1, "3")}));
  auto evs = t.End();
  EXPECT_EQ(evs, (std::vector<Event>{DelEv("a", 6, Kv("a", 3, 3, 1, "1")),
                                     DelEv("b", 6, Kv("b", 4, 4, 1, "2")),
                                     DelEv("c", 6, Kv("c", 2, 2, 1, "3"))}));
  EXPECT_EQ(s.Rev(), 6);
  EXPECT_EQ(Keys(Get(s, "\0"s, kAll)), std::vector<std::string>{"d"});
  EXPECT_EQ(s.key_count(), 1u);
  EXPECT_EQ(s.revision_count(), 7u);  // four puts, three tombstones
  // The deletes are sub revisions 0, 1, 2 of revision 6, in key order:
  // Changes reports them in that order.
  std::vector<Event> out;
  int64_t next = 0;
  ASSERT_TRUE(s.Changes(6, 6, 100, &out, &next).ok());
  EXPECT_EQ(out, evs);
  EXPECT_EQ(next, 7);
}

TEST(KvStoreTest, RecreateAfterDeleteRestartsVersion) {
  KvStore s;
  Put(s, "k", "a");  // 2
  Put(s, "k", "b");  // 3
  Del(s, "k");       // 4
  EXPECT_TRUE(Get(s, "k").empty());
  auto evs = Put(s, "k", "c");  // 5
  EXPECT_EQ(evs, std::vector<Event>{PutEv(Kv("k", 5, 5, 1, "c"))});
  Put(s, "k", "d");  // 6
  EXPECT_EQ(Get(s, "k"), std::vector<KeyValue>{Kv("k", 5, 6, 2, "d")});
  // History on both sides of the delete.
  EXPECT_EQ(Get(s, "k", {}, 3), std::vector<KeyValue>{Kv("k", 2, 3, 2, "b")});
  EXPECT_TRUE(Get(s, "k", {}, 4).empty());
  EXPECT_EQ(Get(s, "k", {}, 5), std::vector<KeyValue>{Kv("k", 5, 5, 1, "c")});
}

TEST(KvStoreTest, TxnThatChangesNothingDoesNotAdvance) {
  KvStore s;
  {
    auto t = s.Write();
    EXPECT_TRUE(t.End().empty());
  }
  EXPECT_EQ(s.Rev(), 1);
  {
    auto t = s.Write();
    EXPECT_TRUE(t.DeleteRange("missing", {}).empty());
    EXPECT_TRUE(t.DeleteRange("a", kAll).empty());
    auto r = t.Range("a", kAll, {});
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->rev, 1);
    EXPECT_EQ(t.Rev(), 1);
    EXPECT_TRUE(t.End().empty());
  }
  EXPECT_EQ(s.Rev(), 1);
  Put(s, "x", "1");
  Put(s, "x", "2");
  Del(s, "x");
  EXPECT_TRUE(Del(s, "x").empty());  // already deleted: no change
  EXPECT_EQ(s.Rev(), 4);
}

TEST(KvStoreTest, PutTwiceInOneTxn) {
  KvStore s;
  Put(s, "k", "v0");  // 2
  auto t = s.Write();
  auto p1 = t.Put("k", "v1", 0);
  auto p2 = t.Put("k", "v2", 5);
  ASSERT_TRUE(p1 && p2);
  EXPECT_EQ(*p1, Kv("k", 2, 2, 1, "v0"));
  EXPECT_EQ(*p2, Kv("k", 2, 3, 2, "v1"));
  auto r = t.Range("k", {}, {});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->rev, 3);
  EXPECT_EQ(r->kvs, std::vector<KeyValue>{Kv("k", 2, 3, 3, "v2", 5)});
  auto evs = t.End();
  EXPECT_EQ(evs,
            (std::vector<Event>{
                PutEv(Kv("k", 2, 3, 2, "v1"), Kv("k", 2, 2, 1, "v0")),
                PutEv(Kv("k", 2, 3, 3, "v2", 5), Kv("k", 2, 3, 2, "v1"))}));
  EXPECT_EQ(s.Rev(), 3);
  EXPECT_EQ(Get(s, "k"), std::vector<KeyValue>{Kv("k", 2, 3, 3, "v2", 5)});
  std::vector<Event> out;
  int64_t next = 0;
  ASSERT_TRUE(s.Changes(3, 3, 0, &out, &next).ok());
  EXPECT_EQ(out, evs);
}

TEST(KvStoreTest, DeleteThenPutAndPutThenDeleteInOneTxn) {
  KvStore s;
  Put(s, "k", "old");  // 2
  {
    auto t = s.Write();
    EXPECT_EQ(t.DeleteRange("k", {}).size(), 1u);
    EXPECT_EQ(t.Put("k", "new", 0), std::nullopt);  // key was gone
    auto evs = t.End();
    EXPECT_EQ(evs, (std::vector<Event>{DelEv("k", 3, Kv("k", 2, 2, 1, "old")),
                                       PutEv(Kv("k", 3, 3, 1, "new"))}));
  }
  EXPECT_EQ(Get(s, "k"), std::vector<KeyValue>{Kv("k", 3, 3, 1, "new")});
  {
    auto t = s.Write();
    t.Put("n", "x", 0);
    auto deleted = t.DeleteRange("k", "z");
    EXPECT_EQ(deleted, (std::vector<KeyValue>{Kv("k", 3, 3, 1, "new"),
                                              Kv("n", 4, 4, 1, "x")}));
    auto evs = t.End();
    ASSERT_EQ(evs.size(), 3u);
    EXPECT_EQ(evs[2], DelEv("n", 4, Kv("n", 4, 4, 1, "x")));
  }
  EXPECT_TRUE(Get(s, "\0"s, kAll).empty());
  EXPECT_EQ(s.key_count(), 0u);
}

TEST(KvStoreTest, WriteTxnRangeReadsItsOwnRevision) {
  KvStore s;
  Put(s, "a", "1");  // 2
  auto t = s.Write();
  auto r = t.Range("a", kAll, {});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->rev, 2);
  EXPECT_EQ(r->count, 1);
  t.Put("b", "2", 0);
  r = t.Range("a", kAll, {});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->rev, 3);
  EXPECT_EQ(Keys(r->kvs), (std::vector<std::string>{"a", "b"}));
  // The store itself does not see the open transaction.
  auto outside = s.Range("a", kAll, {});
  ASSERT_TRUE(outside.ok());
  EXPECT_EQ(outside->rev, 2);
  EXPECT_EQ(Keys(outside->kvs), std::vector<std::string>{"a"});
  RangeOptions o;
  o.rev = 4;
  EXPECT_TRUE(IsErrFutureRev(t.Range("a", kAll, o).status()));
  o.rev = 2;
  r = t.Range("a", kAll, o);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(Keys(r->kvs), std::vector<std::string>{"a"});
  EXPECT_EQ(r->rev, 3);
  o.rev = 3;
  r = t.Range("a", kAll, o);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->count, 2);
  t.End();
  EXPECT_EQ(s.Rev(), 3);
}

TEST(KvStoreTest, HistoricalReads) {
  KvStore s;
  Put(s, "a", "1");  // 2
  Put(s, "b", "1");  // 3
  Put(s, "a", "2");  // 4
  Del(s, "b");       // 5
  auto at = [&](int64_t rev) { return Get(s, "\0"s, kAll, rev); };
  EXPECT_TRUE(at(1).empty());
  EXPECT_EQ(at(2), std::vector<KeyValue>{Kv("a", 2, 2, 1, "1")});
  EXPECT_EQ(at(3), (std::vector<KeyValue>{Kv("a", 2, 2, 1, "1"),
                                          Kv("b", 3, 3, 1, "1")}));
  EXPECT_EQ(at(4), (std::vector<KeyValue>{Kv("a", 2, 4, 2, "2"),
                                          Kv("b", 3, 3, 1, "1")}));
  EXPECT_EQ(at(5), std::vector<KeyValue>{Kv("a", 2, 4, 2, "2")});
  EXPECT_EQ(at(0), at(5));
  EXPECT_EQ(at(-3), at(5));
  // As in etcd, the result carries the store's current revision.
  RangeOptions o;
  o.rev = 3;
  auto r = s.Range("a", {}, o);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->rev, 5);
}

TEST(KvStoreTest, RangeErrors) {
  KvStore s;
  for (int i = 0; i < 5; ++i) Put(s, "k", std::to_string(i));  // 2..6
  RangeOptions o;
  o.rev = 7;
  absl::Status st = s.Range("k", {}, o).status();
  EXPECT_EQ(st.code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(st.message(), "mvcc: required revision is a future revision");
  EXPECT_TRUE(IsErrFutureRev(st));
  EXPECT_FALSE(IsErrCompacted(st));
  EXPECT_EQ(ErrFutureRev(), st);

  ASSERT_TRUE(s.Compact(4).ok());
  EXPECT_EQ(s.CompactRev(), 4);
  o.rev = 3;
  st = s.Range("k", {}, o).status();
  EXPECT_EQ(st.code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(st.message(), "mvcc: required revision has been compacted");
  EXPECT_TRUE(IsErrCompacted(st));
  EXPECT_FALSE(IsErrFutureRev(st));
  EXPECT_EQ(ErrCompacted(), st);
  o.rev = 4;  // the compact revision itself is readable
  auto r = s.Range("k", {}, o);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->kvs, std::vector<KeyValue>{Kv("k", 2, 4, 3, "2")});
  o.rev = 6;
  r = s.Range("k", {}, o);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->kvs, std::vector<KeyValue>{Kv("k", 2, 6, 5, "4")});
  EXPECT_FALSE(IsErrCompacted(absl::OutOfRangeError("other")));
  EXPECT_FALSE(IsErrCompacted(absl::InvalidArgumentError(
      "mvcc: required revision has been compacted")));
}

TEST(KvStoreTest, RangeLimitCountKeysOnlyCountOnly) {
  KvStore s;
  for (char c = 'a'; c <= 'e'; ++c) Put(s, std::string(1, c), "v");
  Del(s, "c");
  RangeOptions o;
  o.limit = 2;
  auto r = s.Range("a", "z", o);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(Keys(r->kvs), (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(r->count, 4);
  o.limit = 10;
  r = s.Range("b", "e", o);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(Keys(r->kvs), (std::vector<std::string>{"b", "d"}));
  EXPECT_EQ(r->count, 2);
  o.limit = -1;  // non-positive: no limit
  r = s.Range("a", "z", o);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->kvs.size(), 4u);

  RangeOptions ko;
  ko.keys_only = true;
  r = s.Range("a", "c", ko);
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r->kvs.size(), 2u);
  EXPECT_EQ(r->kvs[0], Kv("a", 2, 2, 1, ""));
  EXPECT_EQ(r->kvs[1], Kv("b", 3, 3, 1, ""));

  RangeOptions co;
  co.count_only = true;
  co.limit = 1;
  r = s.Range("a", "z", co);
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->kvs.empty());
  EXPECT_EQ(r->count, 4);
  co.rev = 4;  // a, b, c
  r = s.Range("a", "z", co);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->count, 3);
}

TEST(KvStoreTest, ZeroByteRangeEnds) {
  KvStore s;
  for (std::string k : {"\0"s, "\0\0"s, "a"s, "a\0"s, "ab"s, "b"s, "\xff"s}) {
    Put(s, k, "v");
  }
  // ("\0", "\0") is every key.
  EXPECT_EQ(Keys(Get(s, "\0"s, kAll)),
            (std::vector<std::string>{"\0"s, "\0\0"s, "a"s, "a\0"s, "ab"s, "b"s,
                                      "\xff"s}));
  // (k, "\0") is every key >= k.
  EXPECT_EQ(Keys(Get(s, "ab", kAll)),
            (std::vector<std::string>{"ab", "b", "\xff"}));
  // An empty end is the single key, even one holding zero bytes.
  EXPECT_EQ(Keys(Get(s, "a\0"s)), std::vector<std::string>{"a\0"s});
  EXPECT_EQ(Keys(Get(s, "\0"s)), std::vector<std::string>{"\0"s});
  // [key, end) with bytes that sort around zero.
  EXPECT_EQ(Keys(Get(s, "a", "ab")), (std::vector<std::string>{"a", "a\0"s}));
  EXPECT_EQ(Keys(Get(s, "a", "a\0"s)), std::vector<std::string>{"a"});
  // end <= key is empty.
  EXPECT_TRUE(Get(s, "b", "a").empty());
  EXPECT_TRUE(Get(s, "b", "b").empty());
  // A prefix range as clients build it ("a" -> "b").
  EXPECT_EQ(Get(s, "a", "b").size(), 3u);
  // DeleteRange follows the same rules.
  EXPECT_EQ(Del(s, "a", "ab").size(), 2u);
  EXPECT_EQ(Del(s, "b", kAll).size(), 2u);
  EXPECT_EQ(Keys(Get(s, "\0"s, kAll)),
            (std::vector<std::string>{"\0"s, "\0\0"s, "ab"s}));
}

TEST(KvStoreTest, ChangesReportsEveryEventWithPrevKv) {
  KvStore s;
  Put(s, "a", "1");  // 2
  {
    auto t = s.Write();  // 3
    t.Put("a", "2", 0);
    t.Put("b", "1", 0);
    t.End();
  }
  Del(s, "a");       // 4
  Put(s, "a", "3");  // 5
  std::vector<Event> out;
  int64_t next = 0;
  ASSERT_TRUE(s.Changes(0, 100, 1000, &out, &next).ok());
  EXPECT_EQ(next, 6);  // clamped to the store's revision
  EXPECT_EQ(out, (std::vector<Event>{
                     PutEv(Kv("a", 2, 2, 1, "1")),
                     PutEv(Kv("a", 2, 3, 2, "2"), Kv("a", 2, 2, 1, "1")),
                     PutEv(Kv("b", 3, 3, 1, "1")),
                     DelEv("a", 4, Kv("a", 2, 3, 2, "2")),
                     PutEv(Kv("a", 5, 5, 1, "3")),
                 }));
  out.clear();
  ASSERT_TRUE(s.Changes(3, 4, 1000, &out, &next).ok());
  EXPECT_EQ(out.size(), 3u);
  EXPECT_EQ(next, 5);
  out.clear();
  ASSERT_TRUE(s.Changes(6, 10, 1000, &out, &next).ok());
  EXPECT_TRUE(out.empty());
  EXPECT_EQ(next, 6);
}

TEST(KvStoreTest, ChangesNeverSplitsARevision) {
  KvStore s;
  {
    auto t = s.Write();  // 2: three events
    t.Put("a", "1", 0);
    t.Put("b", "1", 0);
    t.Put("c", "1", 0);
    t.End();
  }
  Put(s, "d", "1");  // 3
  Put(s, "e", "1");  // 4
  std::vector<Event> out;
  int64_t next = 0;
  ASSERT_TRUE(s.Changes(2, 4, 1, &out, &next).ok());
  EXPECT_EQ(out.size(), 3u);  // all of revision 2, though max is 1
  EXPECT_EQ(next, 3);
  out.clear();
  ASSERT_TRUE(s.Changes(2, 4, 4, &out, &next).ok());
  EXPECT_EQ(out.size(), 4u);
  EXPECT_EQ(next, 4);
  out.clear();
  ASSERT_TRUE(s.Changes(3, 4, 2, &out, &next).ok());
  EXPECT_EQ(out.size(), 2u);
  EXPECT_EQ(next, 5);
  // Resuming from next walks everything exactly once.
  out.clear();
  int64_t from = 1;
  while (from <= s.Rev()) {
    ASSERT_TRUE(s.Changes(from, s.Rev(), 2, &out, &next).ok());
    ASSERT_GT(next, from);
    from = next;
  }
  EXPECT_EQ(out.size(), 5u);
}

TEST(KvStoreTest, ChangesAfterCompaction) {
  KvStore s;
  Put(s, "a", "1");  // 2
  Put(s, "b", "1");  // 3
  Del(s, "b");       // 4
  Put(s, "c", "1");  // 5
  ASSERT_TRUE(s.Compact(4).ok());
  std::vector<Event> out;
  int64_t next = 0;
  absl::Status st = s.Changes(4, 10, 10, &out, &next);
  EXPECT_TRUE(IsErrCompacted(st));
  EXPECT_EQ(st.message(), "mvcc: required revision has been compacted");
  EXPECT_TRUE(IsErrCompacted(s.Changes(1, 10, 10, &out, &next)));
  Put(s, "a", "2");  // 6: prev is revision 2, kept below the compaction
  Put(s, "b", "2");  // 7: prev was a tombstone at 4, now dropped: none
  ASSERT_TRUE(s.Changes(5, 10, 10, &out, &next).ok());
  EXPECT_EQ(out, (std::vector<Event>{
                     PutEv(Kv("c", 5, 5, 1, "1")),
                     PutEv(Kv("a", 2, 6, 2, "2"), Kv("a", 2, 2, 1, "1")),
                     PutEv(Kv("b", 7, 7, 1, "2")),
                 }));
  EXPECT_EQ(next, 8);
}

TEST(KvStoreTest, CompactErrors) {
  KvStore s;
  Put(s, "a", "1");  // 2
  Put(s, "a", "2");  // 3
  absl::Status st = s.Compact(4);
  EXPECT_TRUE(IsErrFutureRev(st));
  EXPECT_EQ(st.message(), "mvcc: required revision is a future revision");
  EXPECT_EQ(s.CompactRev(), -1);
  ASSERT_TRUE(s.Compact(2).ok());
  st = s.Compact(2);
  EXPECT_TRUE(IsErrCompacted(st));
  EXPECT_EQ(st.code(), absl::StatusCode::kOutOfRange);
  EXPECT_TRUE(IsErrCompacted(s.Compact(1)));
  ASSERT_TRUE(s.Compact(3).ok());
  EXPECT_EQ(s.CompactRev(), 3);
}

TEST(KvStoreTest, CompactKeepsLatestRevisionUnlessTombstone) {
  KvStore s;
  Put(s, "a", "1");  // 2
  Put(s, "a", "2");  // 3
  Put(s, "b", "1");  // 4
  Del(s, "b");       // 5
  Put(s, "c", "1");  // 6
  Del(s, "c");       // 7
  Put(s, "a", "3");  // 8
  EXPECT_EQ(s.revision_count(), 7u);
  ASSERT_TRUE(s.Compact(5).ok());
  // a: 2 dropped, 3 kept (latest <= 5), 8 kept. b: both gone (tombstone at
  // the compact revision). c: untouched (newer than 5).
  EXPECT_EQ(s.revision_count(), 4u);
  EXPECT_EQ(s.key_count(), 1u);
  EXPECT_EQ(Get(s, "\0"s, kAll, 5),
            std::vector<KeyValue>{Kv("a", 2, 3, 2, "2")});
  EXPECT_EQ(
      Get(s, "\0"s, kAll, 6),
      (std::vector<KeyValue>{Kv("a", 2, 3, 2, "2"), Kv("c", 6, 6, 1, "1")}));
  EXPECT_EQ(Get(s, "\0"s, kAll, 8),
            std::vector<KeyValue>{Kv("a", 2, 8, 3, "3")});
  ASSERT_TRUE(s.Compact(7).ok());
  EXPECT_EQ(s.revision_count(), 2u);  // a@3 (latest <= 7) and a@8
  ASSERT_TRUE(s.Compact(8).ok());
  EXPECT_EQ(s.revision_count(), 1u);
  EXPECT_EQ(Get(s, "a", {}, 8), std::vector<KeyValue>{Kv("a", 2, 8, 3, "3")});
  // Versions and create revisions carry on after compaction.
  Put(s, "a", "4");
  EXPECT_EQ(Get(s, "a"), std::vector<KeyValue>{Kv("a", 2, 9, 4, "4")});
  EXPECT_EQ(s.Rev(), 9);
}

// etcd_debugging_mvcc_db_compaction_keys_total: every revision a compaction
// removes counts once (tombstones too), refused compactions count nothing,
// and a Restore or Swap does not take the count back.
TEST(KvStoreTest, CompactedRevisionsCount) {
  KvStore s;
  Put(s, "a", "1");  // 2
  Put(s, "a", "2");  // 3
  Put(s, "b", "1");  // 4
  Del(s, "b");       // 5
  Put(s, "a", "3");  // 6
  EXPECT_EQ(s.compacted_revisions(), 0);
  ASSERT_TRUE(s.Compact(5).ok());  // a@2, b@4, b@5 (tombstone)
  EXPECT_EQ(s.compacted_revisions(), 3);
  EXPECT_TRUE(IsErrCompacted(s.Compact(4)));
  EXPECT_TRUE(IsErrFutureRev(s.Compact(9)));
  EXPECT_EQ(s.compacted_revisions(), 3);
  ASSERT_TRUE(s.Compact(6).ok());  // a@3
  EXPECT_EQ(s.compacted_revisions(), 4);
  KvStore other;
  ASSERT_TRUE(other.Restore(s.Snapshot()).ok());
  EXPECT_EQ(other.compacted_revisions(), 0);
  s.Swap(other);
  EXPECT_EQ(s.compacted_revisions(), 4);
  ASSERT_TRUE(s.Restore(other.Snapshot()).ok());
  EXPECT_EQ(s.compacted_revisions(), 4);
}

// A compaction in steps (StartCompaction, then CompactStep) is the one
// Compact does: readers see it whole at once, the steps do bounded work
// each, writes may come between them, and the end state is the same.
TEST(KvStoreTest, CompactionInStepsEndsAsOneCompaction) {
  KvStore whole, steps;
  for (KvStore* s : {&whole, &steps}) {
    for (int round = 0; round < 3; ++round) {
      for (int k = 0; k < 300; ++k) {
        Put(*s, absl::StrCat("k", k), absl::StrCat(round, "-", k));
      }
    }
    for (int k = 0; k < 300; k += 3) Del(*s, absl::StrCat("k", k));
  }
  const int64_t rev = whole.Rev();
  ASSERT_TRUE(whole.Compact(rev).ok());
  const size_t revisions = steps.revision_count();
  ASSERT_TRUE(steps.StartCompaction(rev).ok());
  // Nothing removed yet, but reads and hashes are already the compacted
  // store's.
  EXPECT_TRUE(steps.compaction_pending());
  EXPECT_EQ(steps.revision_count(), revisions);
  EXPECT_EQ(steps.compacted_revisions(), 0);
  EXPECT_EQ(steps.CompactRev(), rev);
  EXPECT_EQ(steps.Hash(), whole.Hash());
  EXPECT_EQ(steps.HashByRev(0)->hash, whole.HashByRev(0)->hash);
  RangeOptions at;
  at.rev = rev - 1;
  EXPECT_TRUE(IsErrCompacted(steps.Range("k1", {}, at).status()));
  EXPECT_EQ(Get(steps, "\0"s, kAll), Get(whole, "\0"s, kAll));
  // Steps of 50 records: each removes at most that many revisions (every
  // key here has at most 4), with writes between them, also to keys whose
  // old revisions are still there.
  int step_count = 0;
  int k = 0;
  while (!steps.CompactStep(50)) {
    ++step_count;
    ASSERT_LE(revisions - steps.revision_count(),
              static_cast<size_t>(50 * step_count));
    for (KvStore* s : {&whole, &steps}) {
      Put(*s, absl::StrCat("k", k), "new");
      Del(*s, absl::StrCat("k", k + 1));
    }
    k += 7;
    ASSERT_EQ(steps.Hash(), whole.Hash());
  }
  EXPECT_GE(step_count, 5);
  EXPECT_FALSE(steps.compaction_pending());
  EXPECT_EQ(steps.revision_count(), whole.revision_count());
  EXPECT_EQ(steps.size_bytes(), whole.size_bytes());
  EXPECT_EQ(steps.compacted_revisions(), whole.compacted_revisions());
  EXPECT_EQ(steps.Snapshot(), whole.Snapshot());
  EXPECT_EQ(Get(steps, "\0"s, kAll), Get(whole, "\0"s, kAll));
}

// A compaction started while another is being removed takes its work
// over; an image (or Snapshot) first finishes what is left.
TEST(KvStoreTest, CompactionTakenOverAndFinishedByAnImage) {
  KvStore whole, steps;
  for (KvStore* s : {&whole, &steps}) {
    for (int i = 0; i < 200; ++i) Put(*s, absl::StrCat("k", i % 40), "v");
  }
  ASSERT_TRUE(whole.Compact(100).ok());
  ASSERT_TRUE(whole.Compact(150).ok());
  ASSERT_TRUE(steps.StartCompaction(100).ok());
  EXPECT_FALSE(steps.CompactStep(10));
  EXPECT_TRUE(IsErrCompacted(steps.StartCompaction(100)));
  ASSERT_TRUE(steps.StartCompaction(150).ok());
  EXPECT_TRUE(steps.compaction_pending());
  EXPECT_EQ(steps.Hash(), whole.Hash());
  const uint64_t size = steps.BeginImage().size();
  EXPECT_FALSE(steps.compaction_pending());
  EXPECT_EQ(size, whole.Snapshot().size());
  EXPECT_EQ(steps.Snapshot(), whole.Snapshot());
  EXPECT_EQ(steps.compacted_revisions(), whole.compacted_revisions());
  EXPECT_TRUE(steps.CompactStep(1));  // nothing left
}

TEST(KvStoreTest, CompactEverythingThenWrite) {
  KvStore s;
  for (int i = 0; i < 10; ++i) Put(s, absl::StrCat("k", i % 3), "v");
  Del(s, "k0");
  ASSERT_TRUE(s.Compact(s.Rev()).ok());
  EXPECT_EQ(s.revision_count(), 2u);
  EXPECT_EQ(s.key_count(), 2u);
  std::vector<Event> out;
  int64_t next = 0;
  ASSERT_TRUE(s.Changes(s.Rev() + 1, s.Rev() + 5, 10, &out, &next).ok());
  EXPECT_TRUE(out.empty());
  Put(s, "k0", "again");
  EXPECT_EQ(Get(s, "k0"), std::vector<KeyValue>{Kv("k0", 13, 13, 1, "again")});
  ASSERT_TRUE(s.Changes(13, 13, 10, &out, &next).ok());
  EXPECT_EQ(out, std::vector<Event>{PutEv(Kv("k0", 13, 13, 1, "again"))});
}

TEST(KvStoreTest, CompactBeforeFirstWrite) {
  KvStore s;
  ASSERT_TRUE(s.Compact(1).ok());
  EXPECT_EQ(s.CompactRev(), 1);
  RangeOptions o;
  o.rev = 1;
  EXPECT_TRUE(s.Range("a", {}, o).ok());
  Put(s, "a", "1");
  EXPECT_EQ(Get(s, "a"), std::vector<KeyValue>{Kv("a", 2, 2, 1, "1")});
}

TEST(KvStoreTest, HashByRev) {
  KvStore a, b;
  for (KvStore* s : {&a, &b}) {
    Put(*s, "x", "1");
    Put(*s, "y", "2");
    Del(*s, "x");
  }
  auto ha = a.HashByRev(0);
  auto hb = b.HashByRev(0);
  ASSERT_TRUE(ha.ok() && hb.ok());
  EXPECT_EQ(ha->hash, hb->hash);
  EXPECT_EQ(ha->revision, 4);
  EXPECT_EQ(ha->compact_revision, -1);
  EXPECT_EQ(a.Hash(), b.Hash());
  auto h3 = a.HashByRev(3);
  ASSERT_TRUE(h3.ok());
  EXPECT_NE(h3->hash, ha->hash);
  EXPECT_EQ(h3->revision, 3);
  // A later write changes the latest hash but not the one at revision 3.
  Put(b, "z", "3");
  EXPECT_NE(a.Hash(), b.Hash());
  EXPECT_EQ(b.HashByRev(3)->hash, h3->hash);
  EXPECT_NE(b.HashByRev(0)->hash, ha->hash);
  EXPECT_TRUE(IsErrFutureRev(a.HashByRev(5).status()));
  ASSERT_TRUE(a.Compact(3).ok());
  EXPECT_TRUE(IsErrCompacted(a.HashByRev(2).status()));
  auto hc = a.HashByRev(3);
  ASSERT_TRUE(hc.ok());
  EXPECT_EQ(hc->compact_revision, 3);
  // Same contents, different value: different hash.
  KvStore c;
  Put(c, "x", "1");
  KvStore d;
  Put(d, "x", "2");
  EXPECT_NE(c.HashByRev(0)->hash, d.HashByRev(0)->hash);
  EXPECT_NE(c.Hash(), d.Hash());
}

KvStore* BuildSample(KvStore* s) {
  for (int i = 0; i < 30; ++i) {
    auto t = s->Write();
    t.Put(absl::StrCat("key", i % 7), absl::StrCat("value", i), i % 3);
    if (i % 5 == 4) t.DeleteRange(absl::StrCat("key", i % 4), {});
    t.End();
  }
  EXPECT_TRUE(s->Compact(12).ok());
  Del(*s, "key2", "key4");
  Put(*s, "zzz", std::string(1000, 'x'));
  return s;
}

void ExpectSameStore(const KvStore& a, const KvStore& b) {
  EXPECT_EQ(a.Rev(), b.Rev());
  EXPECT_EQ(a.CompactRev(), b.CompactRev());
  EXPECT_EQ(a.Hash(), b.Hash());
  EXPECT_EQ(a.key_count(), b.key_count());
  EXPECT_EQ(a.revision_count(), b.revision_count());
  EXPECT_EQ(a.size_bytes(), b.size_bytes());
  for (int64_t rev = std::max<int64_t>(a.CompactRev(), 1); rev <= a.Rev();
       ++rev) {
    RangeOptions o;
    o.rev = rev;
    auto ra = a.Range("\0"s, kAll, o);
    auto rb = b.Range("\0"s, kAll, o);
    ASSERT_TRUE(ra.ok() && rb.ok());
    EXPECT_EQ(ra->kvs, rb->kvs) << "at revision " << rev;
    EXPECT_EQ(a.HashByRev(rev)->hash, b.HashByRev(rev)->hash);
  }
  std::vector<Event> ea, eb;
  int64_t na = 0, nb = 0;
  ASSERT_TRUE(a.Changes(a.CompactRev() + 1, a.Rev(), 1 << 20, &ea, &na).ok());
  ASSERT_TRUE(b.Changes(b.CompactRev() + 1, b.Rev(), 1 << 20, &eb, &nb).ok());
  EXPECT_EQ(ea, eb);
  EXPECT_EQ(na, nb);
  EXPECT_EQ(a.Snapshot(), b.Snapshot());
}

TEST(KvStoreTest, SnapshotRestoreRoundTrip) {
  KvStore a;
  BuildSample(&a);
  std::string image = a.Snapshot();
  KvStore b;
  Put(b, "junk", "replaced by restore");
  ASSERT_TRUE(b.Restore(image).ok());
  ExpectSameStore(a, b);
  // Both go on the same way.
  for (KvStore* s : {&a, &b}) {
    Put(*s, "key1", "after");
    Del(*s, "key5");
    ASSERT_TRUE(s->Compact(s->Rev() - 1).ok());
  }
  ExpectSameStore(a, b);
}

// Restore tells the caller, as it goes, where in the image it reads nothing
// before any more (the real server gives those pages back): a restore whose
// image is overwritten behind each such point still gets the same store.
TEST(KvStoreTest, RestoreReadsTheImageOnceAndSaysHowFar) {
  KvStore a;
  for (int i = 0; i < 40000; ++i) {
    Put(a, absl::StrCat("key-", i % 20000), std::string(500, 'a' + i % 26));
    if (i % 7 == 0) Del(a, absl::StrCat("key-", (i * 13) % 20000));
  }
  ASSERT_TRUE(a.Compact(a.Rev() - 5000).ok());
  std::string image = a.Snapshot();
  ASSERT_GT(image.size(), 8u << 20);  // real images give back 4 MiB steps
  std::vector<const char*> points;
  const char* done = image.data();
  KvStore b;
  ASSERT_TRUE(b.Restore(image, [&](const char* upto) {
                 points.push_back(upto);
                 // What lies behind is never read again: scribble on it.
                 std::fill(const_cast<char*>(done), const_cast<char*>(upto),
                           '\xdb');
                 done = upto;
               }).ok());
  // (ExpectSameStore's range at every revision is too slow at this size;
  // the image written again holds every revision.)
  EXPECT_EQ(a.Hash(), b.Hash());
  EXPECT_EQ(a.key_count(), b.key_count());
  EXPECT_EQ(a.revision_count(), b.revision_count());
  EXPECT_TRUE(a.Snapshot() == b.Snapshot());
  // Before each record, and once after the last.
  EXPECT_EQ(points.size(), a.revision_count() + 1);
  for (size_t i = 0; i < points.size(); ++i) {
    EXPECT_GT(points[i], i == 0 ? image.data() : points[i - 1]);
    EXPECT_LE(points[i], image.data() + image.size());
  }
  // Up to the checksum at the end.
  EXPECT_EQ(points.back(), image.data() + image.size() - 4);
}

TEST(KvStoreTest, SnapshotOfEmptyAndUncompactedStores) {
  KvStore a;
  KvStore b;
  Put(b, "x", "y");
  ASSERT_TRUE(b.Restore(a.Snapshot()).ok());
  ExpectSameStore(a, b);
  Put(a, "p", "q");
  Put(a, "p", "r");
  ASSERT_TRUE(b.Restore(a.Snapshot()).ok());
  ExpectSameStore(a, b);
}

TEST(KvStoreTest, SnapshotLeavesOutOpenTransaction) {
  KvStore a;
  Put(a, "x", "1");
  std::string before = a.Snapshot();
  uint64_t hash_before = a.Hash();
  auto t = a.Write();
  t.Put("y", "2", 0);
  EXPECT_EQ(a.Snapshot(), before);
  EXPECT_EQ(a.Hash(), hash_before);
  t.End();
  EXPECT_NE(a.Snapshot(), before);
}

// Re-frames a body with a valid checksum, so structural validation (not
// the checksum) must catch what is wrong inside.
// Version 1 images end with FNV-1a-64 folded to 32 bits, later ones with
// crc32c.
std::string Frame(const std::string& body) {
  std::string out = body;
  if (out.size() > 4 && out[4] == 1) {
    uint64_t h = util::Fnv1a(out);
    coding::PutFixed32(&out, static_cast<uint32_t>(h ^ (h >> 32)));
  } else {
    coding::PutFixed32(&out, KvStore::ImageChecksum(out));
  }
  return out;
}

std::string Header(uint64_t cur, uint64_t compact_plus1, uint64_t n) {
  std::string b = "dmvc";
  b.push_back(static_cast<char>(KvStore::kImageFormatVersion));
  coding::PutVarint64(&b, cur);
  coding::PutVarint64(&b, compact_plus1);
  coding::PutVarint64(&b, n);
  return b;
}

void PutRec(std::string* b, uint64_t main, uint64_t sub, bool tomb,
            const std::string& key, uint64_t create = 0, uint64_t version = 0) {
  coding::PutVarint64(b, main);
  coding::PutVarint64(b, sub);
  b->push_back(tomb ? 1 : 0);
  coding::PutLengthPrefixed(b, key);
  if (tomb) return;
  coding::PutLengthPrefixed(b, "v");
  coding::PutVarint64(b, create);
  coding::PutVarint64(b, version);
  coding::PutVarint64(b, 0);
}

// Images of format version 1 (data dirs and snapshot files of earlier
// versions) still restore; each version's checksum is its own.
TEST(KvStoreTest, RestoresVersionOneImages) {
  KvStore a;
  BuildSample(&a);
  const std::string image = a.Snapshot();
  ASSERT_EQ(image[4], static_cast<char>(KvStore::kImageFormatVersion));
  ASSERT_EQ(KvStore::kImageFormatVersion, 2);
  std::string body = image.substr(0, image.size() - 4);
  body[4] = 1;
  KvStore b;
  ASSERT_TRUE(b.Restore(Frame(body)).ok());
  EXPECT_EQ(b.Hash(), a.Hash());
  std::string crossed = body;
  coding::PutFixed32(&crossed, KvStore::ImageChecksum(body));
  EXPECT_EQ(b.Restore(crossed).code(), absl::StatusCode::kDataLoss);
  body[4] = 3;
  absl::Status st = b.Restore(Frame(body));
  EXPECT_EQ(st.code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(st.message().find("unknown format version"), std::string::npos);
  EXPECT_EQ(b.Hash(), a.Hash());
}

TEST(KvStoreTest, RestoreRejectsCorruptImages) {
  KvStore a;
  BuildSample(&a);
  const std::string image = a.Snapshot();
  KvStore b;
  Put(b, "mine", "1");
  const uint64_t hash = b.Hash();
  auto expect_rejected = [&](std::string_view img, const std::string& what) {
    absl::Status st = b.Restore(img);
    EXPECT_EQ(st.code(), absl::StatusCode::kDataLoss) << what << ": " << st;
    EXPECT_EQ(b.Hash(), hash) << what;  // state untouched
  };
  for (size_t n = 0; n < image.size(); ++n) {
    expect_rejected(std::string_view(image).substr(0, n),
                    absl::StrCat("truncated to ", n));
  }
  for (size_t i = 0; i < image.size(); ++i) {
    std::string bad = image;
    bad[i] ^= 0x20;
    expect_rejected(bad, absl::StrCat("flipped byte ", i));
  }
  expect_rejected(image + "x", "trailing byte");
  expect_rejected(std::string(100, '\xff'), "garbage");
  expect_rejected(Frame(std::string(64, '\x80')), "framed garbage");
  expect_rejected(Frame(image.substr(0, image.size() - 4) + "x"),
                  "framed trailing byte");

  // Structurally wrong images with valid checksums.
  std::string body;
  body = Header(3, 0, 2);
  PutRec(&body, 2, 0, false, "a", 2, 1);
  PutRec(&body, 2, 0, false, "b", 2, 1);
  expect_rejected(Frame(body), "duplicate revision");
  body = Header(3, 0, 1);
  PutRec(&body, 3, 0, false, "a", 3, 1);
  expect_rejected(Frame(body), "missing revision 2");
  body = Header(2, 0, 1);
  PutRec(&body, 2, 1, false, "a", 2, 1);
  expect_rejected(Frame(body), "sub revision gap");
  body = Header(2, 0, 1);
  PutRec(&body, 2, 0, true, "a");
  expect_rejected(Frame(body), "tombstone of missing key");
  body = Header(3, 0, 2);
  PutRec(&body, 2, 0, false, "a", 2, 1);
  PutRec(&body, 3, 0, false, "a", 3, 1);
  expect_rejected(Frame(body), "broken create revision");
  body = Header(3, 0, 2);
  PutRec(&body, 2, 0, false, "a", 2, 1);
  PutRec(&body, 3, 0, false, "a", 2, 5);
  expect_rejected(Frame(body), "broken version");
  body = Header(2, 0, 1);
  PutRec(&body, 2, 0, false, "a", 2, 1);
  body.push_back(0);
  expect_rejected(Frame(body), "trailing byte in body");
  body = Header(5, 5, 1);  // compacted at 4: a@3 kept below it
  PutRec(&body, 3, 0, true, "a");
  expect_rejected(Frame(body), "tombstone below compaction");
  body = Header(5, 5, 2);
  PutRec(&body, 2, 0, false, "a", 2, 1);
  PutRec(&body, 3, 0, false, "a", 2, 2);
  expect_rejected(Frame(body), "two kept revisions of one key");
  body = Header(1, 3, 0);
  expect_rejected(Frame(body), "compact past current");
  body = Header(0, 0, 0);
  expect_rejected(Frame(body), "revision 0");
  body = Header(2, 0, 1000000);
  expect_rejected(Frame(body), "record count beyond image");

  // And a hand-built valid one is accepted: compacted at 4, a@3 kept, b@5.
  body = Header(5, 5, 2);
  PutRec(&body, 3, 0, false, "a", 2, 2);
  PutRec(&body, 5, 0, false, "b", 5, 1);
  ASSERT_TRUE(b.Restore(Frame(body)).ok());
  EXPECT_EQ(b.Rev(), 5);
  EXPECT_EQ(b.CompactRev(), 4);
  EXPECT_EQ(
      Get(b, "\0"s, kAll),
      (std::vector<KeyValue>{Kv("a", 2, 3, 2, "v"), Kv("b", 5, 5, 1, "v")}));
  Put(b, "a", "w");
  EXPECT_EQ(Get(b, "a"), std::vector<KeyValue>{Kv("a", 2, 6, 3, "w")});
}

TEST(KvStoreTest, Statistics) {
  KvStore s;
  Put(s, "a", "12345");
  int64_t one = s.size_bytes();
  EXPECT_GE(one, 6);
  Put(s, "b", "12345");
  EXPECT_EQ(s.size_bytes(), 2 * one);
  Put(s, "a", "12345");
  EXPECT_EQ(s.key_count(), 2u);
  EXPECT_EQ(s.revision_count(), 3u);
  ASSERT_TRUE(s.Compact(s.Rev()).ok());
  EXPECT_EQ(s.revision_count(), 2u);
  EXPECT_EQ(s.size_bytes(), 2 * one);
  Del(s, "a", "c");
  EXPECT_EQ(s.key_count(), 0u);
  ASSERT_TRUE(s.Compact(s.Rev()).ok());
  EXPECT_EQ(s.revision_count(), 0u);
  EXPECT_EQ(s.size_bytes(), 0);
}

// Enough keys that the point-lookup hash table grows and keys collide,
// and compaction then forgets many of them (exercising removal from it).
TEST(KvStoreTest, ManyKeysSurviveDeletesAndCompaction) {
  KvStore s;
  constexpr int kKeys = 3000;
  auto key = [](int i) { return absl::StrCat("k", i); };
  for (int i = 0; i < kKeys; ++i) Put(s, key(i), absl::StrCat("v", i));
  for (int i = 0; i < kKeys; i += 3) Del(s, key(i));
  ASSERT_TRUE(s.Compact(s.Rev()).ok());
  EXPECT_EQ(s.key_count(), static_cast<size_t>(kKeys - kKeys / 3));
  EXPECT_EQ(s.revision_count(), s.key_count());
  for (int i = 0; i < kKeys; ++i) {
    auto got = Get(s, key(i));
    if (i % 3 == 0) {
      EXPECT_TRUE(got.empty()) << i;
    } else {
      ASSERT_EQ(got.size(), 1u) << i;
      EXPECT_EQ(got[0], Kv(key(i), i + 2, i + 2, 1, absl::StrCat("v", i)));
    }
  }
  const int64_t rev = s.Rev();
  for (int i = 0; i < kKeys; i += 3) Put(s, key(i), "again");
  for (int i = 0; i < kKeys; ++i) {
    auto got = Get(s, key(i));
    ASSERT_EQ(got.size(), 1u) << i;
    if (i % 3 == 0) {
      EXPECT_EQ(got[0].create_revision, rev + 1 + i / 3) << i;
      EXPECT_EQ(got[0].version, 1);
    }
  }
  auto all = Get(s, "\0"s, kAll);
  ASSERT_EQ(all.size(), static_cast<size_t>(kKeys));
  for (size_t i = 1; i < all.size(); ++i) EXPECT_LT(all[i - 1].key, all[i].key);
  Del(s, "\0"s, kAll);
  ASSERT_TRUE(s.Compact(s.Rev()).ok());
  EXPECT_EQ(s.key_count(), 0u);
  EXPECT_EQ(s.revision_count(), 0u);
  EXPECT_EQ(s.size_bytes(), 0);
  Put(s, key(7), "back");
  EXPECT_EQ(Get(s, key(7)).size(), 1u);
}

// The store keeps a live key's latest revision in the key's node (values up
// to 32 bytes inline, longer ones on the heap) and moves it back into the
// revision log when a newer revision or a delete replaces it. These tests
// walk values across that size boundary through every path that moves it.
const std::vector<std::string>& BoundaryValues() {
  static const std::vector<std::string> kValues = {"",
                                                   std::string(15, 'a'),
                                                   std::string(16, 'b'),
                                                   std::string(31, 'c'),
                                                   std::string(32, 'd'),
                                                   std::string(33, 'e'),
                                                   std::string(1 << 20, 'f'),
                                                   std::string(32, 'g'),
                                                   "h"};
  return kValues;
}

TEST(KvStoreTest, ReplacingTheLatestRevisionKeepsHistory) {
  KvStore s;
  const auto& vals = BoundaryValues();
  for (size_t i = 0; i < vals.size(); ++i) {
    const int64_t rev = static_cast<int64_t>(i) + 2;
    auto evs = Put(s, "k", vals[i], static_cast<int64_t>(i));
    ASSERT_EQ(evs.size(), 1u);
    EXPECT_EQ(evs[0].kv, Kv("k", 2, rev, rev - 1, vals[i], rev - 2));
    if (i == 0) {
      EXPECT_FALSE(evs[0].has_prev_kv);
    } else {
      EXPECT_EQ(evs[0].prev_kv,
                Kv("k", 2, rev - 1, rev - 2, vals[i - 1], rev - 3));
    }
    EXPECT_EQ(Get(s, "k"), std::vector<KeyValue>{evs[0].kv});
  }
  // Every older revision, read back from the revision log.
  for (size_t i = 0; i < vals.size(); ++i) {
    const int64_t rev = static_cast<int64_t>(i) + 2;
    EXPECT_EQ(Get(s, "k", {}, rev),
              std::vector<KeyValue>{Kv("k", 2, rev, rev - 1, vals[i], rev - 2)})
        << "value " << i;
  }
  std::vector<Event> evs;
  int64_t next = 0;
  ASSERT_TRUE(s.Changes(2, s.Rev(), 1000, &evs, &next).ok());
  ASSERT_EQ(evs.size(), vals.size());
  for (size_t i = 0; i < vals.size(); ++i) {
    EXPECT_EQ(evs[i].kv.value, vals[i]);
    if (i > 0) {
      EXPECT_EQ(evs[i].prev_kv.value, vals[i - 1]);
    }
  }
  // keys_only and count_only on the latest revision.
  RangeOptions o;
  o.keys_only = true;
  auto r = s.Range("k", {}, o);
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r->kvs.size(), 1u);
  EXPECT_EQ(r->kvs[0], Kv("k", 2, s.Rev(), s.Rev() - 1, "", s.Rev() - 2));
  o = RangeOptions{};
  o.count_only = true;
  r = s.Range("k", {}, o);
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->kvs.empty());
  EXPECT_EQ(r->count, 1);
}

TEST(KvStoreTest, DeleteThenRecreateAcrossValueSizes) {
  for (const std::string& before : BoundaryValues()) {
    for (const std::string& after : {std::string("x"), std::string(40, 'y')}) {
      KvStore s;
      Put(s, "k", before, 7);  // 2
      auto evs = Del(s, "k");  // 3
      ASSERT_EQ(evs.size(), 1u);
      EXPECT_EQ(evs[0], DelEv("k", 3, Kv("k", 2, 2, 1, before, 7)));
      EXPECT_TRUE(Get(s, "k").empty());
      EXPECT_EQ(s.key_count(), 0u);
      evs = Put(s, "k", after);  // 4
      EXPECT_EQ(evs, std::vector<Event>{PutEv(Kv("k", 4, 4, 1, after))});
      EXPECT_EQ(Get(s, "k"), std::vector<KeyValue>{Kv("k", 4, 4, 1, after)});
      EXPECT_EQ(Get(s, "k", {}, 2),
                std::vector<KeyValue>{Kv("k", 2, 2, 1, before, 7)});
      EXPECT_TRUE(Get(s, "k", {}, 3).empty());
      // Deleting the re-created key (by range) moves its data back too.
      evs = Del(s, "a", kAll);  // 5
      EXPECT_EQ(evs,
                std::vector<Event>{DelEv("k", 5, Kv("k", 4, 4, 1, after))});
      EXPECT_EQ(Get(s, "k", {}, 4),
                std::vector<KeyValue>{Kv("k", 4, 4, 1, after)});
    }
  }
}

TEST(KvStoreTest, ReadersOutsideATxnSeeTheReplacedRevision) {
  KvStore s;
  Put(s, "k", std::string(20, 'o'));  // 2
  Put(s, "j", "j");                   // 3
  auto t = s.Write();
  t.Put("k", std::string(40, 'n'), 0);  // 4, not committed yet
  t.DeleteRange("j", {});
  // Outside: the committed revision, now in the revision log.
  EXPECT_EQ(Get(s, "k"),
            std::vector<KeyValue>{Kv("k", 2, 2, 1, std::string(20, 'o'))});
  EXPECT_EQ(Get(s, "j"), std::vector<KeyValue>{Kv("j", 3, 3, 1, "j")});
  EXPECT_EQ(Keys(Get(s, "a", kAll)), (std::vector<std::string>{"j", "k"}));
  // Inside: its own write, from the node.
  auto r = t.Range("k", {}, RangeOptions{});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->kvs,
            std::vector<KeyValue>{Kv("k", 2, 4, 2, std::string(40, 'n'))});
  t.End();
  EXPECT_EQ(Get(s, "k"),
            std::vector<KeyValue>{Kv("k", 2, 4, 2, std::string(40, 'n'))});
  EXPECT_TRUE(Get(s, "j").empty());
}

TEST(KvStoreTest, CompactionKeepsTheLatestRevisionReadable) {
  KvStore s;
  Put(s, "k", "v1");                  // 2
  Put(s, "k", std::string(33, '2'));  // 3
  Put(s, "k", std::string(32, '3'));  // 4
  Put(s, "other", "o");               // 5
  ASSERT_TRUE(s.Compact(5).ok());
  // The kept revision now lives below the revision log.
  EXPECT_EQ(Get(s, "k"),
            std::vector<KeyValue>{Kv("k", 2, 4, 3, std::string(32, '3'))});
  EXPECT_EQ(s.revision_count(), 2u);
  // A new revision moves the kept one's data back into its record.
  auto evs = Put(s, "k", std::string(50, '4'));  // 6
  ASSERT_EQ(evs.size(), 1u);
  EXPECT_EQ(evs[0].prev_kv, Kv("k", 2, 4, 3, std::string(32, '3')));
  EXPECT_EQ(Get(s, "k", {}, 5),
            std::vector<KeyValue>{Kv("k", 2, 4, 3, std::string(32, '3'))});
  std::vector<Event> ch;
  int64_t next = 0;
  ASSERT_TRUE(s.Changes(6, 6, 10, &ch, &next).ok());
  ASSERT_EQ(ch.size(), 1u);
  EXPECT_EQ(ch[0].prev_kv.value, std::string(32, '3'));
  // Compacting again drops it; the latest stays.
  ASSERT_TRUE(s.Compact(6).ok());
  EXPECT_EQ(Get(s, "k"),
            std::vector<KeyValue>{Kv("k", 2, 6, 4, std::string(50, '4'))});
  // Delete after compaction, compact the tombstone away, re-create.
  Del(s, "k");  // 7
  EXPECT_EQ(Get(s, "k", {}, 6),
            std::vector<KeyValue>{Kv("k", 2, 6, 4, std::string(50, '4'))});
  ASSERT_TRUE(s.Compact(7).ok());
  EXPECT_EQ(s.key_count(), 1u);
  EXPECT_EQ(s.revision_count(), 1u);
  Put(s, "k", "again");  // 8
  EXPECT_EQ(Get(s, "k"), std::vector<KeyValue>{Kv("k", 8, 8, 1, "again")});
  // Sizes follow the data wherever it lives.
  KvStore fresh;
  Put(fresh, "other", "o");
  Put(fresh, "k", "again");
  EXPECT_EQ(s.size_bytes(), fresh.size_bytes());
}

TEST(KvStoreTest, RestoredStoreKeepsLatestRevisionsInNodes) {
  KvStore a;
  BuildSample(&a);
  Put(a, "key5", std::string(33, 'z'));
  ASSERT_TRUE(a.Compact(a.Rev() - 3).ok());
  KvStore b;
  ASSERT_TRUE(b.Restore(a.Snapshot()).ok());
  ExpectSameStore(a, b);
  // The same writes on both, replacing and deleting restored latest
  // revisions (kept ones below the compaction included), stay identical.
  for (KvStore* s : {&a, &b}) {
    for (int i = 0; i < 7; ++i) {
      Put(*s, absl::StrCat("key", i),
          std::string(static_cast<size_t>(i) * 9, 'r'));
    }
    Del(*s, "key1", "key3");
    Put(*s, "zzz", "short");
  }
  ExpectSameStore(a, b);
}

// Keys and values around the sizes where the store changes how it keeps
// them (values up to 16 bytes inside the node, longer ones on the heap;
// keys stored once after the node), through updates, deletes, compaction
// and a snapshot round trip, against a plain map.
TEST(KvStoreTest, KeyAndValueSizesAroundStorageLimits) {
  KvStore s;
  std::map<std::string, std::string> model;
  const std::vector<size_t> value_sizes = {0, 1, 15, 16, 17, 31, 32, 33, 300};
  int64_t compact_at = 0;
  for (int round = 0; round < 4; ++round) {
    for (size_t klen = 1; klen <= 40; klen += 3) {
      std::string key(klen, static_cast<char>('a' + klen % 26));
      key.back() = static_cast<char>('0' + round % 2);
      const size_t vlen = value_sizes[(klen + round) % value_sizes.size()];
      const std::string value(vlen, static_cast<char>('A' + round));
      Put(s, key, value);
      model[key] = value;
    }
    // Delete a range of them, every round a different one.
    const std::string from(1 + round * 9, static_cast<char>('b' + round));
    Del(s, from, from + "~");
    for (auto it = model.lower_bound(from);
         it != model.end() && it->first < from + "~";) {
      it = model.erase(it);
    }
    if (round == 1) compact_at = s.Rev();
  }
  auto check = [&model](const KvStore& st) {
    auto r = st.Range("\0"s, kAll, {});
    ASSERT_TRUE(r.ok());
    ASSERT_EQ(r->kvs.size(), model.size());
    size_t i = 0;
    for (const auto& [k, v] : model) {
      EXPECT_EQ(r->kvs[i].key, k);
      EXPECT_EQ(r->kvs[i].value, v) << k;
      ++i;
    }
  };
  check(s);
  const uint64_t before = s.Hash();
  ASSERT_TRUE(s.Compact(compact_at).ok());
  check(s);
  KvStore t;
  ASSERT_TRUE(t.Restore(s.Snapshot()).ok());
  ExpectSameStore(s, t);
  check(t);
  EXPECT_NE(before, t.Hash());  // the compaction dropped revisions
}

// A key's node has a value area sized for the value it was created with:
// later values that do not fit, and values of 4 KiB or more, live in
// blocks of their own. Every revision must read back the same wherever
// its value lived, through replacement, deletion, compaction and restore.
TEST(KvStoreTest, ValuesInsideAndOutsideTheKeysNode) {
  const std::vector<std::string> values = {"ab",
                                           std::string(300, 'p'),
                                           "cdefg",
                                           std::string(5000, 'q'),
                                           "",
                                           std::string(9, 'r'),
                                           std::string(4096, 's'),
                                           "t"};
  // A lease rides in the node's area before the value: keys gain, keep
  // and lose one, with IDs of every width.
  auto lease_at = [](size_t i) -> int64_t {
    switch (i % 3) {
      case 0:
        return static_cast<int64_t>(i);  // 0 first: created without one
      case 1:
        return 0x7edcba9876543210 - static_cast<int64_t>(i);
      default:
        return 0;
    }
  };
  for (size_t first = 0; first < values.size(); ++first) {
    KvStore s;
    std::vector<std::string> seq;  // the value at revision 2 + i
    for (size_t i = 0; i < values.size(); ++i) {
      seq.push_back(values[(first + i) % values.size()]);
      Put(s, "k", seq.back(), lease_at(i));
    }
    auto check_history = [&](const KvStore& st, int64_t from_rev) {
      for (size_t i = 0; i < seq.size(); ++i) {
        const int64_t rev = 2 + static_cast<int64_t>(i);
        if (rev < from_rev) continue;
        EXPECT_EQ(
            Get(st, "k", {}, rev),
            std::vector<KeyValue>{Kv("k", 2, rev, static_cast<int64_t>(i) + 1,
                                     seq[i], lease_at(i))})
            << "first " << first << " rev " << rev;
      }
    };
    check_history(s, 0);
    // The events carry each replaced value as prev_kv.
    std::vector<Event> evs;
    int64_t next = 0;
    ASSERT_TRUE(s.Changes(3, s.Rev(), 100, &evs, &next).ok());
    ASSERT_EQ(evs.size(), seq.size() - 1);
    for (size_t i = 1; i < seq.size(); ++i) {
      EXPECT_EQ(evs[i - 1].prev_kv.value, seq[i - 1]);
      EXPECT_EQ(evs[i - 1].prev_kv.lease, lease_at(i - 1));
      EXPECT_EQ(evs[i - 1].kv.lease, lease_at(i));
    }
    // Deleted, the latest value moves out of the node too; re-created
    // with a longer value, the old node's area is too small.
    Del(s, "k");
    const std::string again(700, 'z');
    Put(s, "k", again);
    check_history(s, 0);
    const int64_t deleted_at = 2 + static_cast<int64_t>(seq.size());
    EXPECT_TRUE(Get(s, "k", {}, deleted_at).empty());
    EXPECT_EQ(Get(s, "k")[0].value, again);
    ASSERT_TRUE(s.Compact(5).ok());
    check_history(s, 5);
    KvStore t;
    ASSERT_TRUE(t.Restore(s.Snapshot()).ok());
    ExpectSameStore(s, t);
    check_history(t, 5);
    EXPECT_EQ(Get(t, "k")[0].value, again);
    // Overwrites in the restored store, whose nodes were sized from the
    // image.
    Put(t, "k", "u");
    Put(t, "k", std::string(900, 'w'));
    EXPECT_EQ(Get(t, "k")[0].value, std::string(900, 'w'));
    EXPECT_EQ(Get(t, "k", {}, t.Rev() - 1)[0].value, "u");
    EXPECT_EQ(Get(t, "k", {}, t.Rev() - 2)[0].value, again);
  }
}

// A key's revisions are packed into one word when main < 2^46 and sub <
// 2^16; others go to a block. Both kinds behave the same.
TEST(KvStoreTest, RevisionsTooWideToPackIntoTheKeyIndex) {
  // Subs past 2^16: one transaction of 70000 puts, then updates.
  constexpr int kKeys = 70000;
  auto key = [](int i) { return absl::StrCat("k", 100000 + i); };
  KvStore s;
  {
    auto t = s.Write();
    for (int i = 0; i < kKeys; ++i) t.Put(key(i), absl::StrCat("v", i), 0);
    t.End();
  }
  Put(s, key(kKeys - 1), "w", 7);  // rev 3, replaces sub 69999
  Put(s, key(5), "w");             // rev 4, replaces sub 5
  Del(s, key(kKeys - 2));          // rev 5, deletes sub 69998
  EXPECT_EQ(Get(s, key(kKeys - 1)),
            std::vector<KeyValue>{Kv(key(kKeys - 1), 2, 3, 2, "w", 7)});
  EXPECT_EQ(Get(s, key(kKeys - 1), {}, 2),
            std::vector<KeyValue>{
                Kv(key(kKeys - 1), 2, 2, 1, absl::StrCat("v", kKeys - 1))});
  EXPECT_TRUE(Get(s, key(kKeys - 2)).empty());
  std::vector<Event> evs;
  int64_t next = 0;
  ASSERT_TRUE(s.Changes(3, 5, 100, &evs, &next).ok());
  ASSERT_EQ(evs.size(), 3u);
  EXPECT_EQ(evs[0].prev_kv,
            Kv(key(kKeys - 1), 2, 2, 1, absl::StrCat("v", kKeys - 1)));
  EXPECT_EQ(evs[2].prev_kv,
            Kv(key(kKeys - 2), 2, 2, 1, absl::StrCat("v", kKeys - 2)));
  KvStore t;
  ASSERT_TRUE(t.Restore(s.Snapshot()).ok());
  ExpectSameStore(s, t);
  // The updated keys drop their first revision; the deleted one keeps it
  // (its latest at 4) and its tombstone.
  ASSERT_TRUE(s.Compact(4).ok());
  EXPECT_EQ(s.revision_count(), static_cast<size_t>(kKeys + 1));
  EXPECT_EQ(Get(s, key(kKeys - 1), {}, 4),
            std::vector<KeyValue>{Kv(key(kKeys - 1), 2, 3, 2, "w", 7)});
  EXPECT_EQ(Get(s, key(kKeys - 3), {}, 4),
            std::vector<KeyValue>{
                Kv(key(kKeys - 3), 2, 2, 1, absl::StrCat("v", kKeys - 3))});
  KvStore u;
  ASSERT_TRUE(u.Restore(s.Snapshot()).ok());
  ExpectSameStore(s, u);
  ASSERT_TRUE(s.Compact(5).ok());  // the tombstone goes, and its key
  EXPECT_EQ(s.key_count(), static_cast<size_t>(kKeys - 1));
  EXPECT_EQ(s.revision_count(), static_cast<size_t>(kKeys - 1));

  // Mains past 2^46, from an image (revisions only ever grow by one, so a
  // store gets there by restoring one): compacted at 2^47, a kept below.
  constexpr uint64_t kBig = uint64_t{1} << 47;
  std::string body = Header(kBig + 2, kBig + 1, 3);
  PutRec(&body, kBig - 9, 0, false, "a", kBig - 20, 4);
  PutRec(&body, kBig + 1, 0, false, "b", kBig + 1, 1);
  PutRec(&body, kBig + 2, 0, false, "a", kBig - 20, 5);
  KvStore big;
  ASSERT_TRUE(big.Restore(Frame(body)).ok());
  const int64_t b0 = static_cast<int64_t>(kBig);
  EXPECT_EQ(Get(big, "a", {}, b0),
            std::vector<KeyValue>{Kv("a", b0 - 20, b0 - 9, 4, "v")});
  EXPECT_EQ(Get(big, "a"),
            std::vector<KeyValue>{Kv("a", b0 - 20, b0 + 2, 5, "v")});
  Put(big, "b", "x");  // rev 2^47 + 3
  Del(big, "a");       // rev 2^47 + 4
  EXPECT_EQ(Get(big, "\0"s, kAll),
            std::vector<KeyValue>{Kv("b", b0 + 1, b0 + 3, 2, "x")});
  EXPECT_EQ(Get(big, "a", {}, b0 + 3),
            std::vector<KeyValue>{Kv("a", b0 - 20, b0 + 2, 5, "v")});
  KvStore big2;
  ASSERT_TRUE(big2.Restore(big.Snapshot()).ok());
  ExpectSameStore(big, big2);
  ASSERT_TRUE(big.Compact(b0 + 4).ok());
  EXPECT_EQ(big.key_count(), 1u);
  EXPECT_EQ(big.revision_count(), 1u);
  EXPECT_EQ(Get(big, "\0"s, kAll),
            std::vector<KeyValue>{Kv("b", b0 + 1, b0 + 3, 2, "x")});
}

TEST(KvStoreTest, SwapExchangesContents) {
  KvStore a, b;
  BuildSample(&a);
  const uint64_t ha = a.Hash(), hb = b.Hash();
  const int64_t rev = a.Rev();
  a.Swap(b);
  EXPECT_EQ(b.Hash(), ha);
  EXPECT_EQ(b.Rev(), rev);
  EXPECT_EQ(a.Hash(), hb);
  EXPECT_EQ(a.Rev(), 1);
  EXPECT_TRUE(Get(a, "key1").empty());
  // Both stay usable.
  Put(a, "x", "1");
  Put(b, "x", "2");
  EXPECT_EQ(Get(a, "x").at(0).value, "1");
  EXPECT_EQ(Get(b, "x").at(0).value, "2");
}

TEST(KvStoreDeathTest, SecondWriteTxnWhileOneIsOpen) {
  KvStore s;
  auto t = s.Write();
  EXPECT_DEATH(s.Write(), "one write transaction at a time");
  t.End();
}

// The incremental image writer (snapshots without stalling the engine).

void PutOne(KvStore* s, const std::string& k, const std::string& v) {
  KvStore::WriteTxn t = s->Write();
  t.Put(k, v, 0);
  t.End();
}

// Runs a writer to the end in steps of `budget`, calling `between` after
// every step; returns the bytes, or the first error.
template <typename F>
absl::StatusOr<std::string> RunImage(KvStore::ImageWriter w, size_t budget,
                                     F between, int* steps = nullptr) {
  std::string out;
  int n = 0;
  for (;;) {
    absl::StatusOr<bool> done = w.Step(budget, &out);
    ++n;
    if (!done.ok()) return done.status();
    if (*done) break;
    between();
  }
  if (steps != nullptr) *steps = n;
  return out;
}

void Fill(KvStore* s) {
  for (int i = 0; i < 300; ++i) {
    PutOne(s, absl::StrCat("key", i % 97), std::string(i % 40, 'v'));
    if (i % 13 == 0) {
      KvStore::WriteTxn t = s->Write();
      t.DeleteRange(absl::StrCat("key", i % 7), "");
      t.End();
    }
  }
}

TEST(KvStoreImage, StepsWriteTheImageOfTheirStartWhileWritesGoOn) {
  for (const bool compacted : {false, true}) {
    KvStore s;
    Fill(&s);
    if (compacted) {
      ASSERT_TRUE(s.Compact(s.Rev() - 50).ok());
    }
    const std::string want = s.Snapshot();
    int i = 0;
    int steps = 0;
    auto got = RunImage(
        s.BeginImage(), 200,
        [&] {
          // Every kind of write between steps: new keys, overwrites (the
          // latest value moves out of its node), deletes.
          PutOne(&s, absl::StrCat("new", i), "x");
          PutOne(&s, absl::StrCat("key", i % 97), std::string(300, 'w'));
          KvStore::WriteTxn t = s.Write();
          t.DeleteRange(absl::StrCat("key", (i + 3) % 97), "");
          t.End();
          ++i;
        },
        &steps);
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_EQ(*got, want) << "compacted=" << compacted;
    EXPECT_GT(steps, 10) << "the budget must cut the work";
    KvStore r;
    ASSERT_TRUE(r.Restore(*got).ok());
  }
}

// A delta image carries what the store gained since an image: restoring
// that image and applying the delta (made in steps while writes go on)
// gives the store as it was when the delta began, byte for byte.
TEST(KvStoreImage, ADeltaOnItsImageIsTheStoreAtTheDelta) {
  for (const bool compacted_before : {false, true}) {
    KvStore s;
    Fill(&s);
    if (compacted_before) {
      ASSERT_TRUE(s.Compact(s.Rev() - 50).ok());
    }
    KvStore::ImageWriter base_writer = s.BeginImage();
    const KvStore::ImageMark base_mark = base_writer.mark();
    auto base = RunImage(std::move(base_writer), 1 << 20, [] {});
    ASSERT_TRUE(base.ok());
    // Overwrites, deletes, new keys, a lease, a transaction of several.
    for (int i = 0; i < 120; ++i) {
      PutOne(&s, absl::StrCat("key", i % 31), std::string(i % 50, 'd'));
      if (i % 9 == 0) {
        KvStore::WriteTxn t = s.Write();
        t.DeleteRange(absl::StrCat("key", i % 5), "");
        t.Put(absl::StrCat("fresh", i), "f", 7);
        t.End();
      }
    }
    const std::string want = s.Snapshot();
    std::optional<KvStore::ImageWriter> dw = s.BeginDelta(base_mark);
    ASSERT_TRUE(dw.has_value());
    const uint64_t size = dw->size();
    const KvStore::ImageMark delta_mark = dw->mark();
    int i = 0;
    auto delta = RunImage(*std::move(dw), 150, [&] {
      PutOne(&s, absl::StrCat("during", i++), "x");
    });
    ASSERT_TRUE(delta.ok()) << delta.status();
    EXPECT_EQ(delta->size(), size);
    EXPECT_LT(delta->size(), want.size());
    KvStore r;
    ASSERT_TRUE(r.Restore(*base).ok());
    ASSERT_TRUE(r.ApplyDelta(*delta).ok());
    EXPECT_EQ(r.Snapshot(), want) << "compacted_before=" << compacted_before;
    // A second delta continues the first (from its mark), and the store
    // restored so far takes it.
    std::optional<KvStore::ImageWriter> dw2 = s.BeginDelta(delta_mark);
    ASSERT_TRUE(dw2.has_value());
    auto delta2 = RunImage(*std::move(dw2), 1 << 20, [] {});
    ASSERT_TRUE(delta2.ok());
    ASSERT_TRUE(r.ApplyDelta(*delta2).ok());
    EXPECT_EQ(r.Snapshot(), s.Snapshot());
    // r can make deltas of its own from where it stands.
    const KvStore::ImageMark r_mark = r.mark_now();
    PutOne(&r, "after", "a");
    std::optional<KvStore::ImageWriter> rw = r.BeginDelta(r_mark);
    ASSERT_TRUE(rw.has_value());
  }
}

TEST(KvStoreImage, NoDeltaAcrossACompactionAndNoneOnTheWrongBase) {
  KvStore s;
  Fill(&s);
  const KvStore::ImageMark mark = s.mark_now();
  const std::string base = s.Snapshot();
  PutOne(&s, "one", "1");
  auto delta = RunImage(*s.BeginDelta(mark), 1 << 20, [] {});
  ASSERT_TRUE(delta.ok());
  // A compaction, restore or swap since: a whole image is needed.
  KvStore c;
  ASSERT_TRUE(c.Restore(s.Snapshot()).ok());
  const KvStore::ImageMark cm = c.mark_now();
  ASSERT_TRUE(c.Compact(c.Rev() - 10).ok());
  EXPECT_FALSE(c.BeginDelta(cm).has_value());
  KvStore swapped;
  const KvStore::ImageMark sm = swapped.mark_now();
  swapped.Swap(c);
  EXPECT_FALSE(swapped.BeginDelta(sm).has_value());
  // A delta applied where it does not continue the store is refused.
  KvStore fresh;
  EXPECT_EQ(fresh.ApplyDelta(*delta).code(), absl::StatusCode::kDataLoss);
  KvStore r;
  ASSERT_TRUE(r.Restore(base).ok());
  ASSERT_TRUE(r.ApplyDelta(*delta).ok());
  EXPECT_EQ(r.ApplyDelta(*delta).code(), absl::StatusCode::kDataLoss);
  // A whole image is not a delta, nor the reverse; damage is caught.
  KvStore q;
  ASSERT_TRUE(q.Restore(base).ok());
  EXPECT_EQ(q.ApplyDelta(base).code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(q.Restore(*delta).code(), absl::StatusCode::kDataLoss);
  std::string bad = *delta;
  bad[bad.size() / 2] ^= 1;
  EXPECT_EQ(q.ApplyDelta(bad).code(), absl::StatusCode::kDataLoss);
}

TEST(KvStoreImage, TheWriterKnowsItsExactSizeBeforeTheFirstByte) {
  KvStore s;
  Fill(&s);
  // A write transaction open when the writer is made: its records are not
  // in the image, nor in its size.
  KvStore::WriteTxn open = s.Write();
  open.Put("in-the-open-txn", std::string(50, 'o'), 7);
  KvStore::ImageWriter w = s.BeginImage();
  const uint64_t size = w.size();
  open.End();
  std::string out;
  for (;;) {
    absl::StatusOr<bool> done = w.Step(100, &out);
    ASSERT_TRUE(done.ok());
    PutOne(&s, "during-the-image", "y");
    if (*done) break;
  }
  EXPECT_EQ(out.size(), size);
  // The sums follow compactions (records dropped and kept) and restores.
  ASSERT_TRUE(s.Compact(s.Rev() - 20).ok());
  EXPECT_EQ(s.BeginImage().size(), s.Snapshot().size());
  KvStore r;
  ASSERT_TRUE(r.Restore(out).ok());
  EXPECT_EQ(r.BeginImage().size(), out.size());
  ASSERT_TRUE(r.Restore(s.Snapshot()).ok());
  EXPECT_EQ(r.BeginImage().size(), s.Snapshot().size());
}

TEST(KvStoreImage, CompactRestoreOrSwapInvalidatesTheWriter) {
  {
    KvStore s;
    Fill(&s);
    KvStore::ImageWriter w = s.BeginImage();
    std::string out;
    ASSERT_TRUE(w.Step(10, &out).ok());
    ASSERT_TRUE(s.Compact(s.Rev() - 1).ok());
    absl::StatusOr<bool> done = w.Step(10, &out);
    EXPECT_EQ(done.status().code(), absl::StatusCode::kFailedPrecondition);
  }
  {
    KvStore s;
    Fill(&s);
    KvStore other;
    KvStore::ImageWriter w = s.BeginImage();
    std::string out;
    ASSERT_TRUE(w.Step(10, &out).ok());
    s.Swap(other);
    EXPECT_FALSE(w.Step(10, &out).ok());
  }
  {
    KvStore s;
    Fill(&s);
    const std::string image = s.Snapshot();
    KvStore::ImageWriter w = s.BeginImage();
    std::string out;
    ASSERT_TRUE(w.Step(10, &out).ok());
    ASSERT_TRUE(s.Restore(image).ok());
    EXPECT_FALSE(w.Step(10, &out).ok());
  }
}

// HashKV in steps: the hash of the store as it was at BeginHash, whatever
// is written between the steps; a compaction under it makes it fail, and
// none begins while a compaction is being removed.
TEST(KvStoreHash, StepsHashTheStoreOfTheirStartWhileWritesGoOn) {
  for (const int64_t at : {int64_t{0}, int64_t{150}}) {
    KvStore s;
    Fill(&s);
    ASSERT_TRUE(s.Compact(100).ok());
    const absl::StatusOr<KeyValueHash> want = s.HashByRev(at);
    ASSERT_TRUE(want.ok());
    absl::StatusOr<KvStore::HashWriter> w = s.BeginHash(at);
    ASSERT_TRUE(w.ok());
    int steps = 0;
    for (;;) {
      absl::StatusOr<bool> done = w->Step(200);
      ASSERT_TRUE(done.ok());
      if (*done) break;
      ++steps;
      PutOne(&s, absl::StrCat("key", steps % 97), "later");
    }
    EXPECT_GT(steps, 10);
    EXPECT_EQ(w->result().hash, want->hash);
    EXPECT_EQ(w->result().revision, want->revision);
    EXPECT_EQ(w->result().compact_revision, 100);
    EXPECT_NE(s.HashByRev(0)->hash, want->hash);  // the writes since
  }
  KvStore s;
  Fill(&s);
  absl::StatusOr<KvStore::HashWriter> w = s.BeginHash(0);
  ASSERT_TRUE(w.ok());
  ASSERT_TRUE(w->Step(100).ok());
  ASSERT_TRUE(s.StartCompaction(s.Rev()).ok());
  EXPECT_EQ(w->Step(100).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(s.BeginHash(0).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(IsErrCompacted(s.BeginHash(s.Rev() - 1).status()));
  EXPECT_TRUE(IsErrFutureRev(s.BeginHash(s.Rev() + 1).status()));
  s.FinishCompaction();
  EXPECT_TRUE(s.BeginHash(0).ok());
}

TEST(KvStoreImage, EmptyStore) {
  KvStore s;
  auto got = RunImage(s.BeginImage(), 1, [] {});
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(*got, s.Snapshot());
}

}  // namespace
}  // namespace detcd::mvcc
