#include "shim/watch_wire.h"

#include <grpc/slice.h>

#include <cstring>
#include <utility>

#include "engine/util/check.h"
#include "engine/util/coding.h"

namespace detcd::shim {
namespace {

// protobuf wire types.
constexpr uint32_t kVarint = 0;
constexpr uint32_t kLen = 2;

constexpr uint32_t Tag(uint32_t field, uint32_t type) {
  return (field << 3) | type;
}

uint8_t* PutVarint(uint8_t* p, uint64_t v) {
  while (v >= 0x80) {
    *p++ = static_cast<uint8_t>(v | 0x80);
    v >>= 7;
  }
  *p++ = static_cast<uint8_t>(v);
  return p;
}

// proto3 scalars: zero is not written. int64 goes as its two's
// complement (10 bytes when negative), as protobuf does.
size_t IntFieldSize(uint64_t v) {
  return v == 0 ? 0 : 1 + coding::VarintLength(v);
}
uint8_t* PutIntField(uint8_t* p, uint32_t field, uint64_t v) {
  if (v == 0) return p;
  p = PutVarint(p, Tag(field, kVarint));
  return PutVarint(p, v);
}
size_t BytesFieldSize(size_t len) {
  return len == 0 ? 0 : 1 + coding::VarintLength(len) + len;
}
uint8_t* PutBytesField(uint8_t* p, uint32_t field, const std::string& s) {
  if (s.empty()) return p;
  p = PutVarint(p, Tag(field, kLen));
  p = PutVarint(p, s.size());
  std::memcpy(p, s.data(), s.size());
  return p + s.size();
}
// A sub-message field, written even when empty (protobuf writes a set
// sub-message whatever its content).
size_t MessageFieldSize(size_t len) {
  return 1 + coding::VarintLength(len) + len;
}

size_t KvSize(const mvcc::KeyValue& kv) {
  return BytesFieldSize(kv.key.size()) +
         IntFieldSize(static_cast<uint64_t>(kv.create_revision)) +
         IntFieldSize(static_cast<uint64_t>(kv.mod_revision)) +
         IntFieldSize(static_cast<uint64_t>(kv.version)) +
         BytesFieldSize(kv.value.size()) +
         IntFieldSize(static_cast<uint64_t>(kv.lease));
}

uint8_t* PutKv(uint8_t* p, uint32_t field, const mvcc::KeyValue& kv,
               size_t size) {
  p = PutVarint(p, Tag(field, kLen));
  p = PutVarint(p, size);
  p = PutBytesField(p, 1, kv.key);
  p = PutIntField(p, 2, static_cast<uint64_t>(kv.create_revision));
  p = PutIntField(p, 3, static_cast<uint64_t>(kv.mod_revision));
  p = PutIntField(p, 4, static_cast<uint64_t>(kv.version));
  p = PutBytesField(p, 5, kv.value);
  return PutIntField(p, 6, static_cast<uint64_t>(kv.lease));
}

grpc::Slice Steal(grpc_slice s) {
  return grpc::Slice(s, grpc::Slice::STEAL_REF);
}

// Reads the bytes of a ByteBuffer's slices in order.
class SliceReader {
 public:
  explicit SliceReader(const std::vector<grpc::Slice>& slices)
      : slices_(slices) {}
  bool Byte(uint8_t* b) {
    while (i_ < slices_.size() && off_ == slices_[i_].size()) {
      ++i_;
      off_ = 0;
    }
    if (i_ == slices_.size()) return false;
    *b = slices_[i_].begin()[off_++];
    return true;
  }
  bool Varint(uint64_t* v) {
    *v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      uint8_t b;
      if (!Byte(&b)) return false;
      *v |= static_cast<uint64_t>(b & 0x7f) << shift;
      if ((b & 0x80) == 0) return true;
    }
    return false;
  }
  bool Skip(uint64_t n) {
    while (n > 0) {
      if (i_ == slices_.size()) return false;
      const size_t left = slices_[i_].size() - off_;
      if (n < left) {
        off_ += n;
        return true;
      }
      n -= left;
      ++i_;
      off_ = 0;
    }
    return true;
  }
  bool AtEnd() {
    while (i_ < slices_.size() && off_ == slices_[i_].size()) {
      ++i_;
      off_ = 0;
    }
    return i_ == slices_.size();
  }

 private:
  const std::vector<grpc::Slice>& slices_;
  size_t i_ = 0;
  size_t off_ = 0;
};

}  // namespace

grpc::Slice EncodeWatchEvent(const mvcc::Event& e, bool with_prev_kv) {
  const bool prev = with_prev_kv && e.has_prev_kv;
  const size_t kv = KvSize(e.kv);
  const size_t pkv = prev ? KvSize(e.prev_kv) : 0;
  const size_t body = IntFieldSize(static_cast<uint64_t>(e.type)) +
                      MessageFieldSize(kv) + (prev ? MessageFieldSize(pkv) : 0);
  const size_t total = MessageFieldSize(body);
  grpc_slice s = grpc_slice_malloc(total);
  uint8_t* p = GRPC_SLICE_START_PTR(s);
  p = PutVarint(p, Tag(11, kLen));
  p = PutVarint(p, body);
  p = PutIntField(p, 1, static_cast<uint64_t>(e.type));
  p = PutKv(p, 2, e.kv, kv);
  if (prev) p = PutKv(p, 3, e.prev_kv, pkv);
  DETCD_CHECK(p == GRPC_SLICE_START_PTR(s) + total);
  return Steal(s);
}

grpc::Slice EncodeWatchPrefix(const WireHeader& h,
                              const mvcc::WatchResponse& r) {
  const size_t header = IntFieldSize(h.cluster_id) + IntFieldSize(h.member_id) +
                        IntFieldSize(static_cast<uint64_t>(h.revision)) +
                        IntFieldSize(h.raft_term);
  const size_t total = MessageFieldSize(header) +
                       IntFieldSize(static_cast<uint64_t>(r.watch_id)) +
                       (r.created ? 2 : 0) + (r.canceled ? 2 : 0) +
                       IntFieldSize(static_cast<uint64_t>(r.compact_revision)) +
                       BytesFieldSize(r.cancel_reason.size()) +
                       (r.fragment ? 2 : 0);
  grpc_slice s = grpc_slice_malloc(total);
  uint8_t* p = GRPC_SLICE_START_PTR(s);
  p = PutVarint(p, Tag(1, kLen));
  p = PutVarint(p, header);
  p = PutIntField(p, 1, h.cluster_id);
  p = PutIntField(p, 2, h.member_id);
  p = PutIntField(p, 3, static_cast<uint64_t>(h.revision));
  p = PutIntField(p, 4, h.raft_term);
  p = PutIntField(p, 2, static_cast<uint64_t>(r.watch_id));
  p = PutIntField(p, 3, r.created ? 1 : 0);
  p = PutIntField(p, 4, r.canceled ? 1 : 0);
  p = PutIntField(p, 5, static_cast<uint64_t>(r.compact_revision));
  p = PutBytesField(p, 6, r.cancel_reason);
  p = PutIntField(p, 7, r.fragment ? 1 : 0);
  DETCD_CHECK(p == GRPC_SLICE_START_PTR(s) + total);
  return Steal(s);
}

WatchWireSummary SummarizeWatchResponse(const grpc::ByteBuffer& bb) {
  std::vector<grpc::Slice> slices;
  if (!bb.Dump(&slices).ok()) return WatchWireSummary();
  return SummarizeWatchResponse(slices);
}

WatchWireSummary SummarizeWatchResponse(const std::vector<grpc::Slice>& s) {
  WatchWireSummary out;
  SliceReader in(s);
  while (!in.AtEnd()) {
    uint64_t tag = 0, v = 0;
    if (!in.Varint(&tag)) return out;
    const uint32_t field = static_cast<uint32_t>(tag >> 3);
    switch (tag & 7) {
      case kVarint:
        if (!in.Varint(&v)) return out;
        if (field == 3) out.created = v != 0;
        if (field == 4) out.canceled = v != 0;
        break;
      case kLen:
        if (!in.Varint(&v) || !in.Skip(v)) return out;
        if (field == 11) ++out.events;
        break;
      case 1:  // fixed64
        if (!in.Skip(8)) return out;
        break;
      case 5:  // fixed32
        if (!in.Skip(4)) return out;
        break;
      default:
        return out;
    }
  }
  out.ok = true;
  return out;
}

const grpc::Slice& WatchEventCache::Get(const mvcc::Event* e, bool with_prev_kv,
                                        uint64_t call) {
  if (call != call_) {
    slices_.clear();
    call_ = call;
  }
  const bool prev = with_prev_kv && e->has_prev_kv;
  const uintptr_t key = reinterpret_cast<uintptr_t>(e) | (prev ? 1 : 0);
  auto [it, inserted] = slices_.try_emplace(key);
  if (inserted) it->second = EncodeWatchEvent(*e, prev);
  return it->second;
}

bool WatchSendQueue::Entry::Mergeable() const {
  return !sealed && !events.empty() && !control.created && !control.canceled &&
         !control.fragment && control.compact_revision == 0;
}

size_t WatchSendQueue::EstimatePrefix(const mvcc::WatchResponse& r) {
  // Header (4 varints) and flags: generous, as the byte bound only needs
  // to be approximate.
  return 64 + r.cancel_reason.size();
}

WatchSendQueue::PushResult WatchSendQueue::Push(
    const WireHeader& h, const mvcc::WatchResponse& r,
    std::vector<grpc::Slice>&& events, size_t event_bytes) {
  const bool plain = !events.empty() && !r.created && !r.canceled &&
                     !r.fragment && r.compact_revision == 0;
  auto newest = newest_.find(r.watch_id);
  bool after_fragment = false;
  if (newest != newest_.end()) {
    Entry& last = entries_[newest->second - front_seq_];
    after_fragment = last.control.fragment;
    const bool in_flight = writing_ && newest->second == front_seq_;
    if (plain && !in_flight && newest->second > barrier_seq_ &&
        last.Mergeable() &&
        last.event_bytes + event_bytes <= limits_.max_merged_bytes) {
      if (bytes_ + event_bytes > limits_.max_bytes) {
        return PushResult::kRefused;
      }
      last.header = h;
      for (grpc::Slice& s : events) last.events.push_back(std::move(s));
      last.event_bytes += event_bytes;
      last.bytes += event_bytes;
      bytes_ += event_bytes;
      events_ += static_cast<int64_t>(events.size());
      return PushResult::kMerged;
    }
  }
  if (entries_.size() >= limits_.max_responses) return PushResult::kRefused;
  const size_t bytes = EstimatePrefix(r) + event_bytes;
  if (!entries_.empty() && bytes_ + bytes > limits_.max_bytes) {
    return PushResult::kRefused;
  }
  Entry e;
  e.seq = ++next_seq_;
  if (entries_.empty()) front_seq_ = e.seq;
  e.header = h;
  e.control.watch_id = r.watch_id;
  e.control.created = r.created;
  e.control.canceled = r.canceled;
  e.control.compact_revision = r.compact_revision;
  e.control.cancel_reason = r.cancel_reason;
  e.control.fragment = r.fragment;
  e.event_bytes = event_bytes;
  e.bytes = bytes;
  e.sealed = after_fragment && !r.fragment;
  events_ += static_cast<int64_t>(events.size());
  e.events = std::move(events);
  bytes_ += bytes;
  if (r.watch_id == mvcc::kInvalidWatchId) barrier_seq_ = e.seq;
  newest_[r.watch_id] = e.seq;
  entries_.push_back(std::move(e));
  return PushResult::kQueued;
}

void WatchSendQueue::StartFront(grpc::ByteBuffer* out) {
  std::vector<grpc::Slice> slices;
  StartFront(&slices);
  grpc::ByteBuffer bb(slices.data(), slices.size());
  out->Swap(&bb);
}

void WatchSendQueue::StartFront(std::vector<grpc::Slice>* out) {
  DETCD_CHECK(!entries_.empty() && !writing_);
  writing_ = true;
  Entry& e = entries_.front();
  out->clear();
  out->reserve(1 + e.events.size());
  out->push_back(EncodeWatchPrefix(e.header, e.control));
  for (const grpc::Slice& s : e.events) out->push_back(s);
}

int WatchSendQueue::PopFront() {
  DETCD_CHECK(!entries_.empty() && writing_);
  writing_ = false;
  Entry& e = entries_.front();
  const int n = static_cast<int>(e.events.size());
  auto it = newest_.find(e.control.watch_id);
  if (it != newest_.end() && it->second == e.seq) newest_.erase(it);
  if (barrier_seq_ == e.seq) barrier_seq_ = 0;
  bytes_ -= e.bytes;
  events_ -= n;
  entries_.pop_front();
  ++front_seq_;
  return n;
}

int64_t WatchSendQueue::Clear() {
  const int64_t n = events_;
  entries_.clear();
  newest_.clear();
  barrier_seq_ = 0;
  bytes_ = 0;
  events_ = 0;
  writing_ = false;
  return n;
}

}  // namespace detcd::shim
