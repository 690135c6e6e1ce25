#include "shim/watch_wire.h"

#include <cstdint>
#include <string>
#include <vector>

#include "etcdserverpb/rpc.pb.h"
#include "gtest/gtest.h"

namespace detcd::shim {
namespace {

namespace pb = etcdserverpb;

// The protobuf message the Watch service used to fill for the same
// response (the reference the wire bytes must equal).
void ToPb(const mvcc::KeyValue& kv, mvccpb::KeyValue* out) {
  out->set_key(kv.key);
  out->set_create_revision(kv.create_revision);
  out->set_mod_revision(kv.mod_revision);
  out->set_version(kv.version);
  out->set_value(kv.value);
  out->set_lease(kv.lease);
}

pb::WatchResponse Reference(const WireHeader& h, const mvcc::WatchResponse& r,
                            const std::vector<mvcc::Event>& evs,
                            bool with_prev_kv) {
  pb::WatchResponse out;
  out.mutable_header()->set_cluster_id(h.cluster_id);
  out.mutable_header()->set_member_id(h.member_id);
  out.mutable_header()->set_revision(h.revision);
  out.mutable_header()->set_raft_term(h.raft_term);
  out.set_watch_id(r.watch_id);
  out.set_created(r.created);
  out.set_canceled(r.canceled);
  out.set_compact_revision(r.compact_revision);
  out.set_cancel_reason(r.cancel_reason);
  out.set_fragment(r.fragment);
  for (const mvcc::Event& e : evs) {
    mvccpb::Event* pe = out.add_events();
    pe->set_type(e.type == mvcc::Event::kPut ? mvccpb::Event::PUT
                                             : mvccpb::Event::DELETE);
    ToPb(e.kv, pe->mutable_kv());
    if (with_prev_kv && e.has_prev_kv) ToPb(e.prev_kv, pe->mutable_prev_kv());
  }
  return out;
}

std::string Flatten(const grpc::ByteBuffer& bb) {
  std::vector<grpc::Slice> slices;
  EXPECT_TRUE(bb.Dump(&slices).ok());
  std::string out;
  for (const grpc::Slice& s : slices) {
    out.append(reinterpret_cast<const char*>(s.begin()), s.size());
  }
  return out;
}

grpc::ByteBuffer Wire(const WireHeader& h, const mvcc::WatchResponse& r,
                      const std::vector<mvcc::Event>& evs, bool with_prev_kv) {
  std::vector<grpc::Slice> slices{EncodeWatchPrefix(h, r)};
  for (const mvcc::Event& e : evs) {
    slices.push_back(EncodeWatchEvent(e, with_prev_kv));
  }
  return grpc::ByteBuffer(slices.data(), slices.size());
}

mvcc::Event Put(std::string key, std::string value, int64_t rev) {
  mvcc::Event e;
  e.type = mvcc::Event::kPut;
  e.kv.key = std::move(key);
  e.kv.value = std::move(value);
  e.kv.create_revision = rev;
  e.kv.mod_revision = rev;
  e.kv.version = 1;
  return e;
}

TEST(WatchWireTest, BytesEqualProtobufSerialization) {
  std::vector<mvcc::Event> evs;
  evs.push_back(Put("a", "v", 2));
  mvcc::Event with_prev = Put("key", std::string(300, 'x'), 9);
  with_prev.kv.create_revision = 3;
  with_prev.kv.version = 4;
  with_prev.kv.lease = 0x7fff0000aaaa;
  with_prev.has_prev_kv = true;
  with_prev.prev_kv = Put("key", "old", 3).kv;
  evs.push_back(with_prev);
  mvcc::Event del;
  del.type = mvcc::Event::kDelete;
  del.kv.key = "gone";
  del.kv.mod_revision = 10;
  del.has_prev_kv = true;
  del.prev_kv = Put("gone", "", 5).kv;  // an empty value
  evs.push_back(del);
  evs.push_back(Put("", "", 11));  // every field of kv zero or empty
  evs.push_back(Put("big", std::string(200000, 'b'), 12));

  WireHeader h{0x8e9e05c52164694d, 0xcd6c7d4cbb1d2e43, 12, 3};
  std::vector<mvcc::WatchResponse> rs(6);
  rs[0].watch_id = 7;
  rs[1].watch_id = mvcc::kInvalidWatchId;  // 10-byte varint
  rs[1].created = true;
  rs[1].canceled = true;
  rs[1].cancel_reason = "mvcc: watcher range is empty";
  rs[2].watch_id = 0;
  rs[2].created = true;
  rs[3].watch_id = 3;
  rs[3].canceled = true;
  rs[3].compact_revision = 8;
  rs[4].watch_id = 4;
  rs[4].fragment = true;
  rs[5].watch_id = 1LL << 40;
  for (const mvcc::WatchResponse& r : rs) {
    for (bool prev : {false, true}) {
      for (size_t n : {size_t{0}, size_t{1}, evs.size()}) {
        std::vector<mvcc::Event> sub(evs.begin(), evs.begin() + n);
        const pb::WatchResponse ref = Reference(h, r, sub, prev);
        const grpc::ByteBuffer bb = Wire(h, r, sub, prev);
        EXPECT_EQ(Flatten(bb), ref.SerializeAsString())
            << "watch_id " << r.watch_id << " prev " << prev << " n " << n;
        const WatchWireSummary s = SummarizeWatchResponse(bb);
        EXPECT_TRUE(s.ok);
        EXPECT_EQ(s.created, r.created);
        EXPECT_EQ(s.canceled, r.canceled);
        EXPECT_EQ(s.events, static_cast<int>(n));
      }
    }
  }
  // A zero header still sends the header field (as the protobuf path).
  const pb::WatchResponse ref = Reference(WireHeader{}, rs[0], {}, false);
  EXPECT_EQ(Flatten(Wire(WireHeader{}, rs[0], {}, false)),
            ref.SerializeAsString());
}

TEST(WatchWireTest, SummaryRejectsTruncatedBytes) {
  WireHeader h{1, 2, 3, 4};
  mvcc::WatchResponse r;
  r.watch_id = 1;
  const std::string bytes = Flatten(Wire(h, r, {Put("k", "v", 3)}, false));
  const std::string cut = bytes.substr(0, bytes.size() - 1);
  grpc::Slice s(cut.data(), cut.size());
  EXPECT_FALSE(SummarizeWatchResponse(grpc::ByteBuffer(&s, 1)).ok);
}

TEST(WatchWireTest, EventCacheEncodesOncePerCall) {
  mvcc::Event e = Put("k", "v", 5);
  e.has_prev_kv = true;
  e.prev_kv = Put("k", "u", 4).kv;
  WatchEventCache cache;
  const grpc::Slice& a = cache.Get(&e, false, 1);
  const uint8_t* a_bytes = a.begin();
  const grpc::Slice& b = cache.Get(&e, false, 1);
  EXPECT_EQ(b.begin(), a_bytes);  // the same slice, not a new encoding
  const grpc::Slice& c = cache.Get(&e, true, 1);
  EXPECT_GT(c.size(), b.size());  // with prev_kv: another encoding
  // A new call forgets the old pointers (the event may be another one).
  e.kv.value = "changed";
  const grpc::Slice& d = cache.Get(&e, false, 2);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(d.begin()), d.size()),
            std::string(reinterpret_cast<const char*>(
                            EncodeWatchEvent(e, false).begin()),
                        EncodeWatchEvent(e, false).size()));
}

// --- WatchSendQueue ---

class QueueTest : public ::testing::Test {
 protected:
  WatchSendQueue::PushResult Events(WatchSendQueue& q, int64_t id, int64_t rev,
                                    size_t value_bytes = 10) {
    mvcc::WatchResponse r;
    r.watch_id = id;
    r.revision = rev;
    return PushEvents(q, r, rev, value_bytes);
  }
  WatchSendQueue::PushResult PushEvents(WatchSendQueue& q,
                                        const mvcc::WatchResponse& r,
                                        int64_t rev, size_t value_bytes) {
    std::vector<grpc::Slice> s{
        EncodeWatchEvent(Put("k" + std::to_string(r.watch_id),
                             std::string(value_bytes, 'v'), rev),
                         false)};
    const size_t n = s[0].size();
    return q.Push(WireHeader{1, 2, r.revision, 3}, r, std::move(s), n);
  }
  WatchSendQueue::PushResult Control(WatchSendQueue& q, mvcc::WatchResponse r) {
    return q.Push(WireHeader{1, 2, r.revision, 3}, r, {}, 0);
  }
  // Writes the front and returns it decoded.
  pb::WatchResponse Write(WatchSendQueue& q) {
    grpc::ByteBuffer bb;
    q.StartFront(&bb);
    pb::WatchResponse out;
    EXPECT_TRUE(out.ParseFromString(Flatten(bb)));
    q.PopFront();
    return out;
  }
  static std::vector<int64_t> Revs(const pb::WatchResponse& r) {
    std::vector<int64_t> out;
    for (const auto& e : r.events()) out.push_back(e.kv().mod_revision());
    return out;
  }
  using R = WatchSendQueue::PushResult;
};

TEST_F(QueueTest, MergesBehindTheWriteInFlightPerWatchId) {
  WatchSendQueue q(WatchSendQueue::Limits{});
  EXPECT_EQ(Events(q, 1, 2), R::kQueued);
  grpc::ByteBuffer in_flight;
  q.StartFront(&in_flight);  // rev 2 of watcher 1 is being written
  EXPECT_EQ(Events(q, 1, 3), R::kQueued);  // never into the in-flight one
  EXPECT_EQ(Events(q, 2, 3), R::kQueued);
  EXPECT_EQ(Events(q, 1, 4), R::kMerged);
  EXPECT_EQ(Events(q, 2, 4), R::kMerged);
  EXPECT_EQ(Events(q, 1, 5), R::kMerged);
  EXPECT_EQ(q.size(), 3u);
  EXPECT_EQ(q.events(), 6);
  EXPECT_EQ(q.PopFront(), 1);
  pb::WatchResponse a = Write(q);
  EXPECT_EQ(a.watch_id(), 1);
  EXPECT_EQ(Revs(a), (std::vector<int64_t>{3, 4, 5}));
  EXPECT_EQ(a.header().revision(), 5);  // the latest
  pb::WatchResponse b = Write(q);
  EXPECT_EQ(b.watch_id(), 2);
  EXPECT_EQ(Revs(b), (std::vector<int64_t>{3, 4}));
  EXPECT_EQ(b.header().revision(), 4);
  EXPECT_TRUE(q.empty());
  EXPECT_EQ(q.events(), 0);
  EXPECT_EQ(q.bytes(), 0u);
}

TEST_F(QueueTest, NeverMergesAcrossControlResponses) {
  WatchSendQueue q(WatchSendQueue::Limits{});
  mvcc::WatchResponse created;
  created.watch_id = 1;
  created.created = true;
  EXPECT_EQ(Control(q, created), R::kQueued);
  grpc::ByteBuffer bb;
  q.StartFront(&bb);
  // Events right after a created response get their own response.
  EXPECT_EQ(Events(q, 1, 2), R::kQueued);
  // A stream-wide progress reply: nothing passes it.
  mvcc::WatchResponse progress;
  progress.watch_id = mvcc::kInvalidWatchId;
  progress.revision = 2;
  EXPECT_EQ(Control(q, progress), R::kQueued);
  EXPECT_EQ(Events(q, 1, 3), R::kQueued);
  EXPECT_EQ(Events(q, 1, 4), R::kMerged);
  // A cancel reply for the watcher: its later events (a new watcher of the
  // same id) follow it.
  mvcc::WatchResponse cancel;
  cancel.watch_id = 1;
  cancel.canceled = true;
  EXPECT_EQ(Control(q, cancel), R::kQueued);
  EXPECT_EQ(Events(q, 1, 5), R::kQueued);
  // A per-watcher progress notification (no events) is not merged into.
  mvcc::WatchResponse wp;
  wp.watch_id = 1;
  wp.revision = 5;
  EXPECT_EQ(Control(q, wp), R::kQueued);
  EXPECT_EQ(Events(q, 1, 6), R::kQueued);
  // A compaction cancel neither.
  mvcc::WatchResponse compacted;
  compacted.watch_id = 9;
  compacted.canceled = true;
  compacted.compact_revision = 3;
  EXPECT_EQ(Control(q, compacted), R::kQueued);
  EXPECT_EQ(q.size(), 9u);
  q.PopFront();
  std::vector<std::vector<int64_t>> revs;
  while (!q.empty()) revs.push_back(Revs(Write(q)));
  EXPECT_EQ(revs, (std::vector<std::vector<int64_t>>{
                      {2}, {}, {3, 4}, {}, {5}, {}, {6}, {}}));
}

TEST_F(QueueTest, FragmentsAreNeverMerged) {
  WatchSendQueue q(WatchSendQueue::Limits{});
  EXPECT_EQ(Events(q, 5, 1), R::kQueued);
  grpc::ByteBuffer bb;
  q.StartFront(&bb);
  mvcc::WatchResponse frag;
  frag.watch_id = 1;
  frag.fragment = true;
  frag.revision = 2;
  EXPECT_EQ(PushEvents(q, frag, 2, 10), R::kQueued);
  EXPECT_EQ(PushEvents(q, frag, 2, 10), R::kQueued);  // the next piece
  mvcc::WatchResponse last;
  last.watch_id = 1;
  last.revision = 2;
  EXPECT_EQ(PushEvents(q, last, 2, 10), R::kQueued);  // the last piece
  // The next revision does not join the last piece.
  EXPECT_EQ(Events(q, 1, 3), R::kQueued);
  EXPECT_EQ(Events(q, 1, 4), R::kMerged);
  EXPECT_EQ(q.size(), 5u);
  q.PopFront();
  pb::WatchResponse f1 = Write(q), f2 = Write(q), f3 = Write(q);
  EXPECT_TRUE(f1.fragment());
  EXPECT_TRUE(f2.fragment());
  EXPECT_FALSE(f3.fragment());
  EXPECT_EQ(f3.events_size(), 1);
  EXPECT_EQ(Revs(Write(q)), (std::vector<int64_t>{3, 4}));
}

TEST_F(QueueTest, BoundsAndMergeSize) {
  WatchSendQueue::Limits l;
  l.max_responses = 3;
  l.max_bytes = 5000;
  l.max_merged_bytes = 2500;
  WatchSendQueue q(l);
  EXPECT_EQ(Events(q, 1, 1, 1000), R::kQueued);  // one always fits
  grpc::ByteBuffer bb;
  q.StartFront(&bb);
  EXPECT_EQ(Events(q, 1, 2, 1000), R::kQueued);
  EXPECT_EQ(Events(q, 1, 3, 1000), R::kMerged);  // ~2040 bytes of events
  EXPECT_EQ(Events(q, 1, 4, 1000), R::kQueued);  // would pass 2500
  EXPECT_EQ(q.size(), 3u);
  // Full by count: a merge still fits (no new response), a new one not.
  EXPECT_EQ(Events(q, 2, 4, 10), R::kRefused);
  // Full by bytes (~4270 queued + 1020 > 5000): refused, nothing changed.
  const size_t bytes = q.bytes();
  const int64_t events = q.events();
  EXPECT_EQ(Events(q, 1, 5, 1000), R::kRefused);
  EXPECT_EQ(q.bytes(), bytes);
  EXPECT_EQ(q.events(), events);
  EXPECT_EQ(q.PopFront(), 1);
  EXPECT_EQ(Events(q, 1, 5, 10), R::kMerged);
  EXPECT_EQ(q.Clear(), 4);
  EXPECT_TRUE(q.empty());
  EXPECT_EQ(Events(q, 1, 6), R::kQueued);  // usable after Clear
  EXPECT_EQ(Revs(Write(q)), (std::vector<int64_t>{6}));
}

}  // namespace
}  // namespace detcd::shim
