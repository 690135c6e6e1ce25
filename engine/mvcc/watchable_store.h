// The watch hub: etcd's watchable store plus the per-stream logic of etcd's
// v3rpc watch server, without gRPC.
//
// A client stream (one gRPC Watch call) is a StreamId with a Sink that
// delivers responses in order. Watchers live on a stream, named by watch
// id. Each watcher is either
//   - synced: it has every event up to the store's current revision (or it
//     waits for a future start revision), and Notify hands it new events
//     directly; or
//   - unsynced: it is behind (historical start revision, a sink that
//     refused, a store restore) and SyncUnsynced catches it up from the
//     EventHistory, at most max_events_per_sync events per call. A
//     watcher created fewer than max_events_per_create revisions behind
//     is first caught up by Create itself, by a read of at most that many
//     events: one a few revisions behind is synced before Create returns.
// A watcher keeps no queue of events: only its next revision (plus, while
// a fragmented response is half sent, how many events of that revision
// went out). So memory per watcher is bounded, however slow its client.
//
// Guarantees (etcd's): a watcher receives exactly the committed events of
// its range from its start revision, in (revision, sub) order, without
// gaps or duplicates, filtered and with prev_kv only if asked; the events
// of one revision are never split over responses except as fragments
// (fragment=true on all but the last piece); or it is canceled because the
// revision it needs was compacted.
//
// Ordering on a stream: responses are sent in the order the hub produces
// them. Control responses (created, create errors, cancel replies) that
// the sink refuses wait in a per-stream FIFO that is flushed before
// anything else goes to that stream; while one watcher is in the middle of
// a fragmented response nothing else is sent on its stream (etcd's clients
// reassemble fragments per stream, not per watcher).
//
// Cost of Notify (E events, synced watchers indexed by key): for each event
// one map lookup among the P distinct watched single keys plus a scan of
// the distinct watched ranges whose start is <= the key (D of them; many
// watchers on the same range share one entry), then one response per
// matched watcher: O(E * (log P + D) + M log M) for M (watcher, event)
// matches. SyncUnsynced does one EventHistory::Changes read shared by the
// unsynced watchers and dispatches its events the same way.
//
// Deterministic: watchers are visited in (stream id, watch id) order,
// stream ids are 1, 2, ..., auto watch ids per stream count from 0 upward
// skipping ids in use (etcd 3.5's rule).
//
// The sink must not call back into the hub.
#ifndef DETCD_ENGINE_MVCC_WATCHABLE_STORE_H_
#define DETCD_ENGINE_MVCC_WATCHABLE_STORE_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "engine/mvcc/types.h"
#include "engine/util/planted.h"

namespace detcd::mvcc {

// WatchCreate::watch_id asking the hub to pick an id. etcd's wire value for
// "auto" is 0 (clientv3.AutoWatchID), so every id <= 0 means auto.
inline constexpr int64_t kAutoWatchId = -1;
// The watch id of responses that belong to no single watcher (failed
// creates, stream-wide progress notifications): clientv3.InvalidWatchID.
inline constexpr int64_t kInvalidWatchId = -1;

// Cancel reasons of refused creates. etcd's texts except
// kReasonTooManyWatchers (etcd has no per-stream limit; the text is ours,
// for a hub given one).
// A compaction cancel has none (etcd 3.4): see SyncUnsynced.
inline constexpr char kReasonEmptyRange[] = "mvcc: watcher range is empty";
inline constexpr char kReasonDuplicateId[] =
    "mvcc: duplicate watch ID provided on the WatchStream";
inline constexpr char kReasonTooManyWatchers[] =
    "etcdserver: too many watchers on this stream";

struct WatchLimits {
  // Watchers one stream may hold. etcd has no such limit (clientv3 puts
  // every watch of a client's context on one stream), and neither has the
  // default: a watcher costs its few hundred bytes wherever it is. Tests
  // set one to exercise the refusal.
  size_t max_watchers_per_stream = std::numeric_limits<size_t>::max();
  // Events read from history per SyncUnsynced call (a revision is never
  // split, so one call may read more if a single revision is bigger).
  size_t max_events_per_sync = 1000;
  // Events read from history when a watcher is created behind the store
  // (a start revision at or below the current one, by fewer revisions
  // than this), to catch it up at once; further behind, or 0: it waits
  // for the next SyncUnsynced, as in etcd.
  size_t max_events_per_create = 256;
  // Estimated encoded size above which a response is fragmented (for
  // watchers that asked for fragments) or a catch-up batch is split at a
  // revision boundary.
  size_t max_response_bytes = 1536 * 1024;
  int64_t progress_notify_interval_ns = 10LL * 60 * 1000 * 1000 * 1000;
  // Control responses (created / create error / cancel reply) waiting for
  // a refusing sink. Like etcd's 128-slot control channel, this is
  // backpressure: the server stops reading a stream's requests while
  // Backlogged(stream) is true. The hub itself never drops them.
  size_t max_pending_control_per_stream = 128;
  // Planted bugs for the simulator's checker tests; all off in production.
  // Site: split-revision (a watcher that did not ask for fragments gets
  // the events of one revision in several whole responses).
  planted::Bugs bugs;  // engine/util/planted.h

  absl::Status Validate() const;
};

struct WatchCreate {
  // Empty key means "\0", the smallest key (etcd).
  std::string key;
  // Empty: the single key. "\0": every key >= key. Else [key, range_end).
  std::string range_end;
  // 0: from now. <= current revision: replay history from it, then live.
  // > current: wait for that revision. < 0: from the oldest history
  // (etcd 3.4: replays all, or canceled as compacted after a compaction).
  int64_t start_revision = 0;
  bool prev_kv = false;
  bool no_put = false;
  bool no_delete = false;
  bool progress_notify = false;
  bool fragment = false;
  int64_t watch_id = kAutoWatchId;  // <= 0: auto
};

struct WatchResponse {
  int64_t watch_id = 0;
  bool created = false;
  bool canceled = false;
  int64_t compact_revision = 0;
  std::string cancel_reason;
  bool fragment = false;
  // Header revision. For events: the revision of the last event in the
  // response; for progress notifications: every event up to it has been
  // delivered; for created / cancel replies: the store's revision; for
  // compaction cancels: 0 (etcd 3.4).
  int64_t revision = 0;
  std::vector<Event> events;
};

// The events of a response as a RefSink gets them: pointers to the hub's
// one copy of each event, shared by every watcher that receives it (no
// per-watcher copies of keys and values). Valid only during the sink call.
// Each event carries its prev_kv if the store has one; the sink drops it
// unless with_prev_kv. Within one hub call (`call`, which grows with every
// public call) an Event pointer always names the same event, so a sink may
// encode an event once and reuse the bytes for every watcher of that call.
struct WatchEventsRef {
  absl::Span<const Event* const> events;
  bool with_prev_kv = false;
  uint64_t call = 0;
};

class WatchHub {
 public:
  using StreamId = int64_t;
  // Delivers one response to the client's stream. Returns false if the
  // stream's send buffer is full right now; the response was then not
  // delivered, and the hub retries later (from history for events).
  using Sink = std::function<bool(const WatchResponse&)>;
  // The same, for the real server's streams: r carries no events of its
  // own; they come as evs (empty for created / cancel / progress replies).
  using RefSink =
      std::function<bool(const WatchResponse& r, const WatchEventsRef& evs)>;

  // history must outlive the hub. limits must be valid (CHECKed).
  WatchHub(const EventHistory* history, WatchLimits limits);
  ~WatchHub();
  WatchHub(const WatchHub&) = delete;
  WatchHub& operator=(const WatchHub&) = delete;

  StreamId OpenStream(Sink sink);
  // A stream whose sink takes the events by reference (see RefSink). The
  // responses, their order and the refusals are as for OpenStream.
  StreamId OpenRefStream(RefSink sink);
  // Drops the stream's watchers and anything still owed to it. No response.
  void CloseStream(StreamId s);

  // Replies through the sink with a created response (watch id, header
  // revision = current revision), after which the watcher's events follow.
  // Refused creates get watch_id kInvalidWatchId, created and canceled set
  // and a cancel_reason (see kReason*). Unknown streams are ignored.
  void Create(StreamId s, const WatchCreate& req);
  // Replies canceled=true if the watcher exists; nothing otherwise (etcd).
  void Cancel(StreamId s, int64_t watch_id);
  // Sends {watch_id = kInvalidWatchId, revision = current revision, no
  // events} once every watcher of the stream is synced (deferred until
  // then; repeated requests while deferred coalesce). A stream without
  // watchers gets nothing (etcd).
  void RequestProgress(StreamId s);

  // Called after each committed write transaction with its events (one
  // main revision, in sub order; may be empty). Revisions must increase
  // (CHECKed: a repeated revision would duplicate events); a skipped
  // revision makes every synced watcher catch up from history instead.
  void Notify(const std::vector<Event>& events);
  // Called periodically: flushes waiting control responses, cancels
  // watchers whose next revision is compacted (as etcd 3.4: {watch_id,
  // canceled, compact_revision = CompactRev()}, header revision 0 and no
  // cancel_reason), catches unsynced
  // watchers up from history and moves caught-up ones to synced, answers
  // deferred progress requests.
  void SyncUnsynced();
  // Called periodically with the clock: every progress_notify_interval_ns
  // (counted from the first call), each synced watcher that asked for
  // progress_notify and got no events since the previous round gets
  // {watch_id, revision = current revision, no events}. Dropped if the
  // stream is busy (as etcd drops them when its channel is full).
  void ProgressNotify(int64_t now_ns);
  // After the store behind history was replaced (snapshot install,
  // recovery): every watcher becomes unsynced and resumes from its next
  // revision at the next SyncUnsynced.
  void OnRestore();

  // True while the stream's waiting control responses reached
  // max_pending_control_per_stream: stop reading its requests.
  bool Backlogged(StreamId s) const;

  size_t watchers() const;
  size_t synced() const;
  size_t unsynced() const;
  size_t streams() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace detcd::mvcc

#endif  // DETCD_ENGINE_MVCC_WATCHABLE_STORE_H_
