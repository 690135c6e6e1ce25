// The watch checker. What every watcher must receive comes from its own
// oracle: the KvModel's replay of the committed log (kv_model.h), never
// from the engine's events, so a wrong event that every member produces
// the same way is caught. It checks what each simulated watcher received
// against it:
//
//  - exactly the committed events of the watcher's range from its start
//    revision, in order, without gaps or duplicates (a watcher that ends
//    early, because its member went down, must have received a prefix of
//    them; one still connected at the end must have received all its
//    member has applied);
//  - filters (no_put / no_delete) applied, prev_kv present and right when
//    asked for, absent when not;
//  - all events of one revision in one response, except as fragments;
//  - fragments (etcd's WatchCreateRequest.fragment): only to a watcher
//    that asked, never empty or on a control response, all pieces with the
//    same header revision, nothing else on the stream between the first
//    piece and the last (fragment=false) one (clients reassemble per
//    stream); the reassembled response keeps revisions whole;
//  - a response's header revision is at least its last event's revision;
//  - a progress notification at revision R comes only after every event
//    of the range up to R;
//  - a compaction cancel only at a revision a committed compaction took
//    effect at, and only when the revision the watcher needs next is at or
//    below it; an acknowledged compaction must have taken effect.
//
// The engine's apply-time events (the members' feed) are checked against
// the model too: each member's events for a revision must be the
// committed log's.
//
// A "segment" is one watcher on one stream; a client that resumes after
// its member went down starts a new segment from the revision after the
// last event it saw.
#ifndef DETCD_HARNESS_WATCH_CHECKER_H_
#define DETCD_HARNESS_WATCH_CHECKER_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "engine/mvcc/types.h"
#include "engine/mvcc/watchable_store.h"
#include "harness/kv_model.h"

namespace detcd::harness {

class WatchChecker {
 public:
  struct Spec {
    std::string key, range_end;
    bool prev_kv = false, no_put = false, no_delete = false;
    bool fragment = false;
  };

  // The oracle (must outlive the checker; required before Check).
  void set_model(const KvModel* m) { model_ = m; }

  // A member's apply-time events of one write transaction (the engine's
  // feed; checked against the model, never used as the expectation).
  void OnCommitted(uint64_t node, const std::vector<mvcc::Event>& events);
  // A compaction at `rev` was acknowledged to its client.
  void OnCompactionAcked(int64_t rev);

  // A new client stream (a gRPC Watch call): segments on it share its
  // fragment reassembly.
  int NewStream();
  // A new watcher segment on `node` and `stream` asking for start_revision
  // (0: now).
  int Begin(const Spec& spec, uint64_t node, int64_t start_revision,
            int stream);
  void OnResponse(int seg, const mvcc::WatchResponse& r);
  // A stream-wide progress response at revision rev for these segments.
  void OnStreamProgress(int stream, const std::vector<int>& segs, int64_t rev);
  // The segment's stream is gone (member down).
  void End(int seg);
  // The revision a resumed watcher needs next: one past its last event,
  // or its start if it saw none. 0 if it was never created.
  int64_t NextRevision(int seg) const;
  // The revision the hub must still deliver from: NextRevision, or the
  // last one seen if only some of its events arrived (fragments). A
  // compaction cancel is right only at or above it.
  int64_t NeededRevision(int seg) const;
  bool canceled(int seg) const { return segs_[seg].canceled; }
  bool created(int seg) const { return segs_[seg].created; }

  // End-of-run check. `applied_rev`: for each member that is up, the
  // revision it has applied; every segment still connected to one of them
  // (created, not canceled, not ended) must have received all events up
  // to that revision. Other segments must hold a prefix.
  void Check(const std::map<uint64_t, int64_t>& applied_rev,
             std::vector<std::string>* violations) const;
  size_t segments() const { return segs_.size(); }
  uint64_t events_received() const { return events_received_; }
  uint64_t fragments_received() const { return fragments_received_; }

 private:
  struct Segment {
    Spec spec;
    uint64_t node = 0;
    int stream = -1;
    int64_t asked_start = 0;
    int64_t start = 0;  // effective start, once created
    bool created = false, canceled = false, ended = false;
    int64_t compact_revision = 0;
    std::vector<mvcc::Event> received;
    std::vector<std::string> problems;
    // (progress revision, events received when it arrived)
    std::vector<std::pair<int64_t, size_t>> progress;
    // (revision of a whole response's last event, events received after
    // it): the next response must not carry more of that revision.
    std::vector<std::pair<int64_t, size_t>> boundaries;
    // Header revision of the fragmented response being reassembled.
    int64_t frag_revision = 0;
  };
  struct Stream {
    int frag_seg = -1;  // the segment mid-fragmented-response, or -1
  };
  void Problem(Segment& s, std::string p);
  std::vector<mvcc::Event> Expected(const Segment& s, int64_t upto) const;

  const KvModel* model_ = nullptr;
  std::map<int64_t, std::vector<mvcc::Event>> fed_;  // by revision
  std::vector<std::string> feed_problems_;
  std::vector<int64_t> acked_compactions_;
  std::vector<Stream> streams_;
  std::vector<Segment> segs_;
  uint64_t events_received_ = 0;
  uint64_t fragments_received_ = 0;
};

}  // namespace detcd::harness

#endif  // DETCD_HARNESS_WATCH_CHECKER_H_
