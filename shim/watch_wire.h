// The Watch service's responses on the wire, without protobuf messages.
//
// A WatchResponse is a small per-response part (header, watch id, flags)
// followed by its events (field 11, one length-delimited field each).
// protobuf writes fields in number order, so the response's bytes are the
// concatenation of an encoded prefix and the encoded event fields: an
// event matched by many watchers is encoded once into a reference-counted
// grpc::Slice and the same slice goes into every stream's message (a
// grpc::ByteBuffer of slices), instead of a protobuf copy and a
// serialization per watcher. The bytes equal protobuf's serialization of
// the same message (tests/shim/watch_wire_test.cc).
//
// WatchSendQueue is one stream's queue of responses waiting for gRPC, with
// the coalescing that makes a slow reader cheap: while a write is in
// flight, an event response joins the queued event response of the same
// watch id (see Push).
#ifndef DETCD_SHIM_WATCH_WIRE_H_
#define DETCD_SHIM_WATCH_WIRE_H_

#include <grpcpp/support/byte_buffer.h>
#include <grpcpp/support/slice.h>

#include <cstddef>
#include <cstdint>
#include <deque>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "engine/mvcc/types.h"
#include "engine/mvcc/watchable_store.h"

namespace detcd::shim {

// etcdserverpb.ResponseHeader's fields.
struct WireHeader {
  uint64_t cluster_id = 0;
  uint64_t member_id = 0;
  int64_t revision = 0;
  uint64_t raft_term = 0;
};

// One event as a WatchResponse.events field (tag, length, mvccpb.Event):
// type, kv, and prev_kv if with_prev_kv and the event has one.
grpc::Slice EncodeWatchEvent(const mvcc::Event& e, bool with_prev_kv);

// The fields of a WatchResponse before its events: the header (always
// present, as the protobuf path sets it) and r's watch id, flags, compact
// revision and cancel reason (r.events and r.revision are not used).
grpc::Slice EncodeWatchPrefix(const WireHeader& h,
                              const mvcc::WatchResponse& r);

// What the metrics need of a sent WatchResponse, read from its top-level
// fields without decoding the events.
struct WatchWireSummary {
  bool created = false;
  bool canceled = false;
  int events = 0;
  bool ok = false;  // false: not a well-formed WatchResponse
};
WatchWireSummary SummarizeWatchResponse(const grpc::ByteBuffer& bb);
// The same of a response given as its slices, in order.
WatchWireSummary SummarizeWatchResponse(const std::vector<grpc::Slice>& s);

// Encodes each event of one hub call once. The hub promises that within
// one call (WatchEventsRef::call) an Event pointer names one event; a new
// call forgets the previous call's slices. Engine thread only.
class WatchEventCache {
 public:
  const grpc::Slice& Get(const mvcc::Event* e, bool with_prev_kv,
                         uint64_t call);

 private:
  uint64_t call_ = 0;
  // Keyed by the pointer with its low bit set for the prev_kv form
  // (Event is aligned, so the low bit is free).
  absl::flat_hash_map<uintptr_t, grpc::Slice> slices_;
};

// One stream's responses waiting to be written, oldest first; the front is
// the one gRPC is writing while writing() is true. Not thread-safe: the
// Watch service holds the stream's lock around every call.
class WatchSendQueue {
 public:
  struct Limits {
    size_t max_responses = 1024;
    size_t max_bytes = 2 << 20;
    // A response grows by merging only while its events stay within this
    // (far below the hub's max_response_bytes, which fragments and splits
    // catch-up batches: a merged response never passes what the hub
    // would have sent as one).
    size_t max_merged_bytes = 64 * 1024;
  };
  explicit WatchSendQueue(Limits limits) : limits_(limits) {}

  enum class PushResult { kQueued, kMerged, kRefused };
  // Queues r (its header h) with the events' encoded slices. An event
  // response (events, no created / canceled / compact / fragment flag)
  // merges into the newest queued, not yet writing response of the same
  // watch id if that one is an event response too, no stream-wide response
  // (watch id -1: failed creates, progress replies) was queued after it,
  // and the merged events fit max_merged_bytes: its events follow, the
  // header becomes h (the latest revision). Responses of one watch id stay
  // in order; those of different ids may pass each other, as etcd's own
  // do (its watchers send independently). Refused (nothing queued) when
  // the queue holds max_responses, or max_bytes would be passed and the
  // queue is not empty.
  PushResult Push(const WireHeader& h, const mvcc::WatchResponse& r,
                  std::vector<grpc::Slice>&& events, size_t event_bytes);

  bool empty() const { return entries_.empty(); }
  size_t size() const { return entries_.size(); }
  size_t bytes() const { return bytes_; }
  int64_t events() const { return events_; }
  bool writing() const { return writing_; }

  // Marks the front as being written and fills *out with its bytes.
  // Requires !empty() && !writing().
  void StartFront(grpc::ByteBuffer* out);
  // The same with the bytes as slices (the encoded prefix, then the
  // events'), replacing *out's.
  void StartFront(std::vector<grpc::Slice>* out);
  // The front's write finished: drops it; returns its event count.
  int PopFront();
  // Nothing is written any more (the stream is done): returns the number
  // of events dropped.
  int64_t Clear();

 private:
  struct Entry {
    uint64_t seq = 0;
    WireHeader header;
    mvcc::WatchResponse control;  // no events: r's other fields
    std::vector<grpc::Slice> events;
    size_t event_bytes = 0;
    size_t bytes = 0;
    // The last piece of a fragmented response: never merged into (the
    // client reassembles the pieces; nothing joins them).
    bool sealed = false;
    bool Mergeable() const;
  };
  static size_t EstimatePrefix(const mvcc::WatchResponse& r);

  Limits limits_;
  std::deque<Entry> entries_;
  uint64_t front_seq_ = 0;  // seq of entries_.front()
  uint64_t next_seq_ = 0;
  // The newest entry of each watch id with a queued entry.
  absl::flat_hash_map<int64_t, uint64_t> newest_;
  // seq of the newest stream-wide entry, or 0 with none queued (seqs
  // start at 1).
  uint64_t barrier_seq_ = 0;
  size_t bytes_ = 0;
  int64_t events_ = 0;
  bool writing_ = false;
};

}  // namespace detcd::shim

#endif  // DETCD_SHIM_WATCH_WIRE_H_
