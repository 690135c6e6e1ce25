#include "engine/mvcc/watchable_store.h"

#include <algorithm>
#include <cstdint>
#include <deque>
#include <limits>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/container/btree_map.h"
#include "absl/container/btree_set.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "engine/util/check.h"
#include "engine/util/probes.h"

namespace detcd::mvcc {

absl::Status WatchLimits::Validate() const {
  if (max_watchers_per_stream < 1) {
    return absl::InvalidArgumentError("max_watchers_per_stream must be >= 1");
  }
  if (max_events_per_sync < 1) {
    return absl::InvalidArgumentError("max_events_per_sync must be >= 1");
  }
  if (max_response_bytes < 1) {
    return absl::InvalidArgumentError("max_response_bytes must be >= 1");
  }
  if (progress_notify_interval_ns <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("progress_notify_interval_ns must be > 0, got ",
                     progress_notify_interval_ns));
  }
  if (max_pending_control_per_stream < 1) {
    return absl::InvalidArgumentError(
        "max_pending_control_per_stream must be >= 1");
  }
  return absl::OkStatus();
}

namespace {

// Size estimate of a response: what protobuf adds around each event
// (tags, lengths, revisions, version, lease) and around the response
// (header, ids, flags). Deliberately generous: only used to decide splits.
constexpr size_t kEventOverheadBytes = 48;
constexpr size_t kResponseOverheadBytes = 64;

// No watcher holds the stream; also "nobody" for Ready().
constexpr int64_t kNoWatch = std::numeric_limits<int64_t>::min();

using StreamId = WatchHub::StreamId;
using WatcherKey = std::pair<StreamId, int64_t>;  // (stream, watch id)
// Events of one delivery: pointers into the events Notify was handed or
// CatchUp read, shared by every watcher they go to.
using Events = absl::Span<const Event* const>;

int64_t RevOf(const Event& e) { return e.kv.mod_revision; }

struct Stream {
  StreamId id = 0;
  // Exactly one of the two is set (OpenStream / OpenRefStream).
  WatchHub::Sink sink;
  WatchHub::RefSink ref_sink;
  int64_t next_watch_id = 0;
  size_t watchers = 0;
  size_t unsynced = 0;
  // Control responses the sink refused, oldest first.
  std::deque<WatchResponse> pending;
  // The watcher in the middle of a fragmented response, or kNoWatch.
  int64_t frag_watch = kNoWatch;
  bool progress_requested = false;
  // The hub call in which the sink last refused: within one call nothing
  // drains the client's buffer, so the stream is not tried again (a slow
  // client with many watchers costs one refusal per call, not one each).
  uint64_t refused_in_call = 0;
};

enum class RangeKind { kKey, kRange, kFromKey };

struct Watcher {
  WatcherKey wk;
  Stream* stream = nullptr;
  std::string key;
  std::string end;  // kRange only
  RangeKind kind = RangeKind::kKey;
  bool prev_kv = false;
  bool no_put = false;
  bool no_delete = false;
  bool progress_notify = false;
  bool fragment = false;
  // The first revision not yet (fully) delivered. For synced watchers this
  // may lag behind: their real position is max(next_rev, notified + 1).
  int64_t next_rev = 0;
  // Events (after filtering) of next_rev already sent as fragments.
  size_t skip_events = 0;
  bool synced = false;
  // Events sent since the last progress round (etcd elides one round).
  bool sent_since_progress = false;
  // Index into SyncUnsynced's scratch arrays.
  size_t scratch = 0;

  int64_t id() const { return wk.second; }
  bool Passes(const Event& e) const {
    return !(e.type == Event::kPut && no_put) &&
           !(e.type == Event::kDelete && no_delete);
  }
};

struct ByKey {
  bool operator()(const Watcher* a, const Watcher* b) const {
    return a->wk < b->wk;
  }
};
using WatcherSet = absl::btree_set<Watcher*, ByKey>;

// Watchers by what they watch: single keys in a map, ranges grouped by
// (start, end) and scanned in start order up to the looked-up key.
class WatcherIndex {
 public:
  void Add(Watcher* w) {
    if (w->kind == RangeKind::kKey) {
      keys_[w->key].insert(w);
    } else {
      ranges_[RangeOf(w)].insert(w);
    }
  }
  void Remove(Watcher* w) {
    if (w->kind == RangeKind::kKey) {
      auto it = keys_.find(w->key);
      DETCD_CHECK(it != keys_.end() && it->second.erase(w) == 1);
      if (it->second.empty()) keys_.erase(it);
    } else {
      auto it = ranges_.find(RangeOf(w));
      DETCD_CHECK(it != ranges_.end() && it->second.erase(w) == 1);
      if (it->second.empty()) ranges_.erase(it);
    }
  }
  // Calls fn(Watcher*) for every watcher whose range holds key (in no
  // particular order; callers sort).
  template <typename Fn>
  void ForEachMatch(const std::string& key, Fn&& fn) const {
    if (auto it = keys_.find(key); it != keys_.end()) {
      for (Watcher* w : it->second) fn(w);
    }
    for (const auto& [range, set] : ranges_) {
      if (range.first > key) break;
      // end "" stands for "every key >= start" here.
      if (!range.second.empty() && key >= range.second) continue;
      for (Watcher* w : set) fn(w);
    }
  }

 private:
  static std::pair<std::string, std::string> RangeOf(const Watcher* w) {
    return {w->key, w->kind == RangeKind::kFromKey ? std::string() : w->end};
  }
  absl::btree_map<std::string, WatcherSet> keys_;
  absl::btree_map<std::pair<std::string, std::string>, WatcherSet> ranges_;
};

size_t EventBytes(const Event& e, bool with_prev) {
  size_t n = kEventOverheadBytes + e.kv.key.size() + e.kv.value.size();
  if (with_prev && e.has_prev_kv) {
    n += kEventOverheadBytes + e.prev_kv.key.size() + e.prev_kv.value.size();
  }
  return n;
}

}  // namespace

struct WatchHub::Impl {
  const EventHistory* history;
  WatchLimits limits;
  StreamId next_stream_id = 1;
  absl::btree_map<StreamId, std::unique_ptr<Stream>> streams;
  absl::btree_map<WatcherKey, std::unique_ptr<Watcher>> watchers;
  WatcherIndex synced_index;
  absl::btree_set<WatcherKey> unsynced;
  absl::btree_set<WatcherKey> progress_watchers;
  // Streams with waiting control responses or a deferred progress request
  // (a superset; FlushAttention prunes it).
  absl::btree_set<StreamId> attention;
  // The revision of the last Notify (or the store's at start / restore).
  // Synced watchers have every event up to it.
  int64_t notified_rev = 0;
  bool progress_started = false;
  int64_t next_progress_ns = 0;
  // Counts public calls, for Stream::refused_in_call.
  uint64_t call = 1;
  // Where the next catch-up read starts looking for unsynced watchers.
  int64_t sync_cursor = 0;
  // Scratch space of Notify and Deliver (the sink never calls back in).
  std::vector<std::pair<Watcher*, size_t>> hits;
  std::vector<const Event*> hit_events;
  std::vector<const Event*> filtered;

  Impl(const EventHistory* h, WatchLimits l) : history(h), limits(l) {
    notified_rev = history->Rev();
  }

  Stream* FindStream(StreamId s) const {
    auto it = streams.find(s);
    return it == streams.end() ? nullptr : it->second.get();
  }
  Watcher* FindWatcher(const WatcherKey& wk) const {
    auto it = watchers.find(wk);
    return it == watchers.end() ? nullptr : it->second.get();
  }

  // --- sending ---

  // Every response goes through here: r's own events, or (evs != null)
  // the events evs[b, e) of the hub's shared buffer, given to a RefSink as
  // they are and copied for a plain Sink (prev_kv dropped unless
  // with_prev_kv).
  bool Send(Stream& st, const WatchResponse& r, const Events* evs = nullptr,
            size_t b = 0, size_t e = 0, bool with_prev_kv = false) {
    if (st.refused_in_call == call) return false;
    bool ok;
    if (st.ref_sink) {
      WatchEventsRef ref;
      if (evs != nullptr) {
        ref.events = evs->subspan(b, e - b);
        ref.with_prev_kv = with_prev_kv;
      }
      ref.call = call;
      ok = st.ref_sink(r, ref);
    } else if (evs != nullptr) {
      WatchResponse copy = r;
      copy.events.reserve(e - b);
      for (size_t i = b; i < e; ++i) {
        copy.events.push_back(*(*evs)[i]);
        if (!with_prev_kv) {
          copy.events.back().has_prev_kv = false;
          copy.events.back().prev_kv = KeyValue();
        }
      }
      ok = st.sink(copy);
    } else {
      ok = st.sink(r);
    }
    if (ok) return true;
    st.refused_in_call = call;
    return false;
  }

  // Whether watcher `watch_id` (kNoWatch: nobody in particular) may send
  // on st now: the sink has not refused in this call, nobody else holds the
  // stream mid-fragment, and every waiting control response went out.
  bool Ready(Stream& st, int64_t watch_id) {
    if (st.refused_in_call == call) return false;
    if (st.frag_watch != kNoWatch) return st.frag_watch == watch_id;
    while (!st.pending.empty()) {
      if (!Send(st, st.pending.front())) return false;
      st.pending.pop_front();
    }
    return true;
  }

  void SendControl(Stream& st, WatchResponse r) {
    if (st.frag_watch == kNoWatch && st.pending.empty() && Send(st, r)) return;
    st.pending.push_back(std::move(r));
    attention.insert(st.id);
  }

  // The cancel of a watcher that was removed while holding its stream
  // mid-fragment: the client is still reassembling that watcher's
  // response, so this must reach it before anything queued meanwhile.
  void SendControlFirst(Stream& st, WatchResponse r) {
    DETCD_CHECK(st.frag_watch == kNoWatch);
    if (Send(st, r)) return;
    st.pending.push_front(std::move(r));
    attention.insert(st.id);
  }

  // Removes w and tells its client (cancel reply or compaction cancel).
  void RemoveAndReply(Watcher& w, WatchResponse r) {
    Stream& st = *w.stream;
    const bool held_stream = st.frag_watch == w.id();
    RemoveWatcher(w);
    if (held_stream) {
      SendControlFirst(st, std::move(r));
    } else {
      SendControl(st, std::move(r));
    }
  }

  // Sends w the events evs[b, e) in one response. The events are not
  // copied for a RefSink: every watcher that gets an event shares the one
  // the hub was handed (Notify) or read (CatchUp).
  bool SendEvents(Stream& st, const Watcher& w, const Events& evs, size_t b,
                  size_t e, bool fragment) {
    WatchResponse r;
    r.watch_id = w.id();
    r.revision = RevOf(*evs[e - 1]);
    r.fragment = fragment;
    return Send(st, r, &evs, b, e, w.prev_kv);
  }

  // A watcher without fragments that gets one revision in pieces anyway.
  bool SplitsRevisions(const Watcher& w) const {
    return !w.fragment &&
           limits.bugs.on(planted::Bug::kSplitRevision);  // PLANTED
  }

  // Sends evs[b, e) (all of one revision R) as fragments, the last one
  // with fragment=false. On refusal leaves next_rev = R and skip_events =
  // events of R delivered so far, and returns false.
  bool SendFragments(Watcher& w, const Events& evs, size_t b, size_t e) {
    Stream& st = *w.stream;
    const int64_t rev = RevOf(*evs[b]);
    // PLANTED (split-revision): one event per piece, none marked fragment.
    const bool split = SplitsRevisions(w);
    const size_t piece_bytes = split ? 1 : limits.max_response_bytes;
    size_t i = b;
    while (i < e) {
      size_t j = i;
      size_t bytes = kResponseOverheadBytes;
      while (j < e) {
        size_t n = EventBytes(*evs[j], w.prev_kv);
        if (j > i && bytes + n > piece_bytes) break;
        bytes += n;
        ++j;
      }
      const bool last = j == e;
      if (!Ready(st, w.id())) {
        w.next_rev = rev;
        return false;
      }
      const bool fragment = !last && !split;
      if (fragment) DETCD_PROBE(kWatchFragmentSent);
      if (!SendEvents(st, w, evs, i, j, fragment)) {
        w.next_rev = rev;
        return false;
      }
      w.sent_since_progress = true;
      if (last) {
        st.frag_watch = kNoWatch;
        w.skip_events = 0;
      } else {
        st.frag_watch = w.id();
        w.skip_events += j - i;
      }
      i = j;
    }
    return true;
  }

  // Sends w the events `matched` (its range's events from w.next_rev on, in
  // order, whole revisions except that the first skip_events filtered
  // events of next_rev were already sent). Returns true if all went out;
  // else w.next_rev / skip_events say where to resume.
  bool Deliver(Watcher& w, Events matched) {
    Stream& st = *w.stream;
    Events evs = matched;
    if (w.no_put || w.no_delete) {
      filtered.clear();
      for (const Event* e : matched) {
        if (w.Passes(*e)) filtered.push_back(e);
      }
      evs = filtered;
    }
    size_t i = 0;
    if (w.skip_events > 0) {
      // Finish the revision whose fragments are half sent.
      size_t end_r = 0;
      while (end_r < evs.size() && RevOf(*evs[end_r]) == w.next_rev) ++end_r;
      DETCD_CHECK_MSG(end_r > w.skip_events,
                      "fragmented revision shrank in history");
      if (!SendFragments(w, evs, w.skip_events, end_r)) return false;
      i = end_r;
    }
    while (i < evs.size()) {
      // A chunk of whole revisions that fits max_response_bytes (at least
      // one revision).
      size_t j = i;
      size_t bytes = kResponseOverheadBytes;
      while (j < evs.size()) {
        const int64_t rev = RevOf(*evs[j]);
        size_t k = j;
        size_t rev_bytes = 0;
        while (k < evs.size() && RevOf(*evs[k]) == rev) {
          rev_bytes += EventBytes(*evs[k], w.prev_kv);
          ++k;
        }
        if (j > i && bytes + rev_bytes > limits.max_response_bytes) break;
        bytes += rev_bytes;
        j = k;
      }
      const bool one_rev = RevOf(*evs[i]) == RevOf(*evs[j - 1]);
      if ((w.fragment && one_rev && j - i >= 2 &&
           bytes > limits.max_response_bytes) ||
          (SplitsRevisions(w) && one_rev && j - i >= 2)) {  // PLANTED
        if (!SendFragments(w, evs, i, j)) return false;
      } else {
        if (!Ready(st, w.id()) || !SendEvents(st, w, evs, i, j, false)) {
          w.next_rev = RevOf(*evs[i]);
          return false;
        }
        w.sent_since_progress = true;
      }
      i = j;
    }
    return true;
  }

  // --- watcher sets ---

  void MoveToUnsynced(Watcher& w, int64_t next_rev) {
    DETCD_CHECK(w.synced);
    DETCD_PROBE(kWatchMovedToUnsynced);
    synced_index.Remove(&w);
    w.synced = false;
    w.next_rev = next_rev;
    unsynced.insert(w.wk);
    ++w.stream->unsynced;
  }

  void MoveToSynced(Watcher& w) {
    DETCD_CHECK(!w.synced && w.skip_events == 0);
    DETCD_CHECK(unsynced.erase(w.wk) == 1);
    --w.stream->unsynced;
    w.synced = true;
    synced_index.Add(&w);
  }

  // A synced watcher that must re-read history (store replaced, or a
  // revision went by without Notify).
  void Demote(Watcher& w) {
    MoveToUnsynced(w, std::max(w.next_rev, notified_rev + 1));
  }

  void RemoveWatcher(Watcher& w) {
    Stream& st = *w.stream;
    if (w.synced) {
      synced_index.Remove(&w);
    } else {
      DETCD_CHECK(unsynced.erase(w.wk) == 1);
      --st.unsynced;
    }
    if (st.frag_watch == w.id()) st.frag_watch = kNoWatch;
    progress_watchers.erase(w.wk);
    --st.watchers;
    watchers.erase(w.wk);  // destroys w
  }

  // --- progress ---

  void MaybeProgressAll(Stream& st) {
    if (!st.progress_requested) return;
    if (st.watchers == 0) {
      st.progress_requested = false;  // etcd: nobody to send it through
      return;
    }
    if (st.unsynced == 0 && Ready(st, kNoWatch)) {
      WatchResponse r;
      r.watch_id = kInvalidWatchId;
      r.revision = notified_rev;
      if (Send(st, r)) {
        st.progress_requested = false;
        return;
      }
    }
    attention.insert(st.id);
  }

  void FlushAttention() {
    std::vector<StreamId> ids(attention.begin(), attention.end());
    attention.clear();
    for (StreamId id : ids) {
      Stream* st = FindStream(id);
      if (st == nullptr) continue;
      Ready(*st, kNoWatch);
      MaybeProgressAll(*st);
      if (!st->pending.empty() || st->progress_requested) attention.insert(id);
    }
  }

  // --- operations ---

  void Create(StreamId s, const WatchCreate& req) {
    Stream* st = FindStream(s);
    if (st == nullptr) return;
    const int64_t cur = history->Rev();
    auto refuse = [&](const char* reason) {
      WatchResponse r;
      r.watch_id = kInvalidWatchId;
      r.created = true;
      r.canceled = true;
      r.cancel_reason = reason;
      r.revision = cur;
      SendControl(*st, std::move(r));
    };

    auto w = std::make_unique<Watcher>();
    w->key = req.key.empty() ? std::string(1, '\0') : req.key;
    if (req.range_end.empty()) {
      w->kind = RangeKind::kKey;
    } else if (req.range_end == std::string_view("\0", 1)) {
      w->kind = RangeKind::kFromKey;
    } else {
      w->kind = RangeKind::kRange;
      w->end = req.range_end;
      if (w->key >= w->end) return refuse(kReasonEmptyRange);
    }
    int64_t id = req.watch_id;
    if (id > 0) {
      if (watchers.contains({s, id})) return refuse(kReasonDuplicateId);
    }
    if (st->watchers >= limits.max_watchers_per_stream) {
      return refuse(kReasonTooManyWatchers);
    }
    if (id <= 0) {
      while (watchers.contains({s, st->next_watch_id})) ++st->next_watch_id;
      id = st->next_watch_id++;
    }

    w->wk = {s, id};
    w->stream = st;
    w->prev_kv = req.prev_kv;
    w->no_put = req.no_put;
    w->no_delete = req.no_delete;
    w->progress_notify = req.progress_notify;
    w->fragment = req.fragment;
    Watcher& ref = *w;
    watchers.emplace(ref.wk, std::move(w));
    ++st->watchers;
    if (ref.progress_notify) progress_watchers.insert(ref.wk);

    WatchResponse created;
    created.watch_id = id;
    created.created = true;
    created.revision = cur;
    SendControl(*st, std::move(created));

    // etcd 3.4 takes a negative start revision as "from the oldest history":
    // the watcher replays everything, or is canceled as compacted once
    // anything was compacted.
    const int64_t start = req.start_revision < 0 ? 1 : req.start_revision;
    if (start == 0 || start > cur) {
      // etcd: "from now" and future watchers are synced; Notify skips
      // revisions below next_rev.
      ref.next_rev = start == 0 ? cur + 1 : start;
      ref.synced = true;
      synced_index.Add(&ref);
    } else {
      ref.next_rev = start;
      ref.synced = false;
      unsynced.insert(ref.wk);
      ++st->unsynced;
      // A watcher only a little behind (a client resuming from the
      // revision it just read, as clientv3's lock and election recipes
      // and a list-then-watch do) gets its events now rather than at the
      // next SyncUnsynced (etcd: its 100 ms sync loop), from a read of at
      // most max_events_per_create events. One more revisions behind than
      // that has more events than that (each revision has one at least):
      // it is left to the syncs whole, at no cost here, so a storm of
      // creates from old revisions reads nothing more than before.
      const int64_t limit = static_cast<int64_t>(std::min<size_t>(
          limits.max_events_per_create, std::numeric_limits<int64_t>::max()));
      if (start > history->CompactRev() && cur - start < limit) {
        CatchUp({&ref}, cur, limits.max_events_per_create,
                /*sweep=*/false);
      }
    }
  }

  void Cancel(StreamId s, int64_t watch_id) {
    Stream* st = FindStream(s);
    if (st == nullptr) return;
    Watcher* w = FindWatcher({s, watch_id});
    if (w == nullptr) return;
    WatchResponse r;
    r.watch_id = watch_id;
    r.canceled = true;
    r.revision = history->Rev();
    RemoveAndReply(*w, std::move(r));
    MaybeProgressAll(*st);
  }

  void CloseStream(StreamId s) {
    Stream* st = FindStream(s);
    if (st == nullptr) return;
    std::vector<Watcher*> ws;
    for (auto it =
             watchers.lower_bound({s, std::numeric_limits<int64_t>::min()});
         it != watchers.end() && it->first.first == s; ++it) {
      ws.push_back(it->second.get());
    }
    for (Watcher* w : ws) RemoveWatcher(*w);
    DETCD_CHECK(st->watchers == 0 && st->unsynced == 0);
    attention.erase(s);
    streams.erase(s);
  }

  void Notify(const std::vector<Event>& events) {
    if (events.empty()) return;
    const int64_t rev = RevOf(events.front());
    for (const Event& e : events) {
      DETCD_CHECK_MSG(RevOf(e) == rev, "Notify: events of several revisions");
    }
    DETCD_CHECK_MSG(rev > notified_rev, "Notify: revision went backwards");
    if (rev != notified_rev + 1) {
      // A revision went by unseen: synced watchers may have missed it, so
      // they all re-read history (which has this revision too).
      std::vector<Watcher*> synced_ws;
      for (auto& [wk, w] : watchers) {
        if (w->synced) synced_ws.push_back(w.get());
      }
      for (Watcher* w : synced_ws) Demote(*w);
      notified_rev = rev;
      return;
    }
    notified_rev = rev;

    // (watcher, event index) for every match, then sorted so that each
    // watcher's events are adjacent and in order, watchers in key order.
    // Scratch vectors are members: no allocation per Notify once warm.
    hits.clear();
    for (size_t i = 0; i < events.size(); ++i) {
      synced_index.ForEachMatch(events[i].kv.key, [&](Watcher* w) {
        if (w->next_rev <= rev) hits.emplace_back(w, i);
      });
    }
    std::sort(hits.begin(), hits.end(), [](const auto& a, const auto& b) {
      return a.first->wk != b.first->wk ? a.first->wk < b.first->wk
                                        : a.second < b.second;
    });
    hit_events.clear();
    for (const auto& [w, i] : hits) hit_events.push_back(&events[i]);
    for (size_t g = 0; g < hits.size();) {
      Watcher* w = hits[g].first;
      size_t h = g + 1;
      while (h < hits.size() && hits[h].first == w) ++h;
      DETCD_CHECK(w->skip_events == 0);
      if (Deliver(*w, Events(hit_events).subspan(g, h - g))) {
        w->next_rev = rev + 1;
      } else {
        // Deliver set next_rev (and skip_events) to where to resume.
        MoveToUnsynced(*w, w->next_rev);
      }
      g = h;
    }
  }

  void SyncUnsynced() {
    FlushAttention();
    if (!unsynced.empty()) {
      const int64_t cur = history->Rev();
      const int64_t compact = history->CompactRev();
      std::vector<WatcherKey> keys(unsynced.begin(), unsynced.end());
      std::vector<Watcher*> cands;
      for (const WatcherKey& wk : keys) {
        Watcher* w = FindWatcher(wk);
        DETCD_CHECK(w != nullptr && !w->synced);
        if (w->next_rev <= compact) {
          // etcd 3.4's shape (mvcc/watcher_group.go chooseAll, v3rpc
          // watch.go): only the watch id and the compact revision, canceled
          // because compact_revision != 0; no cancel_reason and header
          // revision 0. Clients key on compact_revision.
          WatchResponse r;
          r.watch_id = w->id();
          r.canceled = true;
          r.compact_revision = compact;
          DETCD_PROBE(kWatchCompactedCancel);
          RemoveAndReply(*w, std::move(r));
        } else if (w->next_rev > cur) {
          MoveToSynced(*w);
        } else {
          cands.push_back(w);
        }
      }
      if (!cands.empty()) {
        CatchUp(cands, cur, limits.max_events_per_sync, /*sweep=*/true);
      }
    }
    FlushAttention();
  }

  // One history read serves every candidate whose next revision falls in
  // it. Successive reads sweep upward through the candidates' positions
  // from where the last one stopped, wrapping to the lowest: every
  // candidate is served once per sweep, so a watcher stuck on a refusing
  // sink cannot starve the others, and one holding its stream
  // mid-fragment gets its turn to finish.
  // sweep: the read is SyncUnsynced's, and moves the sweep's position
  // (Create's read of one watcher leaves it).
  void CatchUp(const std::vector<Watcher*>& cands, int64_t cur,
               size_t max_events, bool sweep) {
    constexpr int64_t kNone = std::numeric_limits<int64_t>::max();
    int64_t from = kNone;
    int64_t lowest = kNone;
    for (Watcher* w : cands) {
      lowest = std::min(lowest, w->next_rev);
      if (w->next_rev >= sync_cursor) from = std::min(from, w->next_rev);
    }
    if (from == kNone) from = lowest;
    std::vector<Event> evs;
    int64_t next_read = 0;
    absl::Status s =
        history->Changes(from, cur, max_events, &evs, &next_read);
    DETCD_CHECK_MSG(s.ok(), "EventHistory::Changes failed above CompactRev");
    DETCD_CHECK(next_read > from && next_read <= cur + 1);
    if (sweep) {
      sync_cursor = next_read;
      if (next_read <= cur) DETCD_PROBE(kWatchCatchUpLimited);
    }

    WatcherIndex index;
    std::vector<Watcher*> served;
    for (Watcher* w : cands) {
      if (w->next_rev >= from && w->next_rev < next_read) {
        w->scratch = served.size();
        served.push_back(w);
        index.Add(w);
      }
    }
    std::vector<std::vector<const Event*>> per(served.size());
    for (const Event& e : evs) {
      const int64_t rev = RevOf(e);
      DETCD_CHECK(rev >= from && rev < next_read);
      index.ForEachMatch(e.kv.key, [&](Watcher* w) {
        if (rev >= w->next_rev) per[w->scratch].push_back(&e);
      });
    }
    // Watchers holding their stream mid-fragment go first, freeing it.
    std::stable_partition(served.begin(), served.end(),
                          [](Watcher* w) { return w->skip_events > 0; });
    for (Watcher* w : served) {
      if (!Deliver(*w, per[w->scratch])) continue;
      w->next_rev = next_read;
      if (next_read > cur) MoveToSynced(*w);
    }
  }

  void ProgressNotify(int64_t now_ns) {
    if (!progress_started) {
      progress_started = true;
      next_progress_ns = now_ns + limits.progress_notify_interval_ns;
      return;
    }
    if (now_ns < next_progress_ns) return;
    next_progress_ns = now_ns + limits.progress_notify_interval_ns;
    for (const WatcherKey& wk : progress_watchers) {
      Watcher* w = FindWatcher(wk);
      DETCD_CHECK(w != nullptr);
      if (w->sent_since_progress) {
        w->sent_since_progress = false;
        continue;
      }
      if (!w->synced || !Ready(*w->stream, kNoWatch)) continue;
      WatchResponse r;
      r.watch_id = w->id();
      r.revision = notified_rev;
      Send(*w->stream, r);  // a refused progress notification is dropped
    }
  }

  void OnRestore() {
    std::vector<Watcher*> synced_ws;
    for (auto& [wk, w] : watchers) {
      if (w->synced) synced_ws.push_back(w.get());
    }
    for (Watcher* w : synced_ws) Demote(*w);
    notified_rev = history->Rev();
  }
};

WatchHub::WatchHub(const EventHistory* history, WatchLimits limits) {
  DETCD_CHECK(history != nullptr);
  DETCD_CHECK_MSG(limits.Validate().ok(), "invalid WatchLimits");
  impl_ = std::make_unique<Impl>(history, limits);
}

WatchHub::~WatchHub() = default;

WatchHub::StreamId WatchHub::OpenStream(Sink sink) {
  DETCD_CHECK(sink != nullptr);
  auto st = std::make_unique<Stream>();
  st->id = impl_->next_stream_id++;
  st->sink = std::move(sink);
  StreamId id = st->id;
  impl_->streams.emplace(id, std::move(st));
  return id;
}

WatchHub::StreamId WatchHub::OpenRefStream(RefSink sink) {
  DETCD_CHECK(sink != nullptr);
  auto st = std::make_unique<Stream>();
  st->id = impl_->next_stream_id++;
  st->ref_sink = std::move(sink);
  StreamId id = st->id;
  impl_->streams.emplace(id, std::move(st));
  return id;
}

void WatchHub::CloseStream(StreamId s) { impl_->CloseStream(s); }
void WatchHub::Create(StreamId s, const WatchCreate& req) {
  ++impl_->call;
  impl_->Create(s, req);
}
void WatchHub::Cancel(StreamId s, int64_t watch_id) {
  ++impl_->call;
  impl_->Cancel(s, watch_id);
}
void WatchHub::RequestProgress(StreamId s) {
  ++impl_->call;
  Stream* st = impl_->FindStream(s);
  if (st == nullptr) return;
  st->progress_requested = true;
  impl_->MaybeProgressAll(*st);
}
void WatchHub::Notify(const std::vector<Event>& events) {
  ++impl_->call;
  impl_->Notify(events);
}
void WatchHub::SyncUnsynced() {
  ++impl_->call;
  impl_->SyncUnsynced();
}
void WatchHub::ProgressNotify(int64_t now_ns) {
  ++impl_->call;
  impl_->ProgressNotify(now_ns);
}
void WatchHub::OnRestore() { impl_->OnRestore(); }

bool WatchHub::Backlogged(StreamId s) const {
  Stream* st = impl_->FindStream(s);
  return st != nullptr &&
         st->pending.size() >= impl_->limits.max_pending_control_per_stream;
}

size_t WatchHub::watchers() const { return impl_->watchers.size(); }
size_t WatchHub::synced() const {
  return impl_->watchers.size() - impl_->unsynced.size();
}
size_t WatchHub::unsynced() const { return impl_->unsynced.size(); }
size_t WatchHub::streams() const { return impl_->streams.size(); }

}  // namespace detcd::mvcc
