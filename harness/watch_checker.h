// The watch checker. It learns the committed history from the members'
// applied writes (every member must produce the same events for a
// revision) and checks what each simulated watcher received against it:
//
//  - exactly the committed events of the watcher's range from its start
//    revision, in order, without gaps or duplicates (a watcher that ends
//    early, because its member went down, must have received a prefix of
//    them; one still connected at the end must have received all);
//  - filters (no_put / no_delete) applied, prev_kv present and right when
//    asked for, absent when not;
//  - all events of one revision in one response (unless fragmented);
//  - a progress notification at revision R comes only after every event
//    of the range up to R;
//  - a compaction cancel only when the revision the watcher needs next has
//    been compacted.
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

namespace detcd::harness {

class WatchChecker {
 public:
  struct Spec {
    std::string key, range_end;
    bool prev_kv = false, no_put = false, no_delete = false;
  };

  // The committed feed: one write transaction's events, from a member.
  void OnCommitted(uint64_t node, const std::vector<mvcc::Event>& events);
  // A successful compaction at `rev` (cancels are legal at or below it).
  void OnCompacted(int64_t rev);

  // A new watcher segment on `node` asking for start_revision (0: now).
  int Begin(const Spec& spec, uint64_t node, int64_t start_revision);
  void OnResponse(int seg, const mvcc::WatchResponse& r);
  // A stream-wide progress response at revision rev for these segments.
  void OnStreamProgress(const std::vector<int>& segs, int64_t rev);
  // The segment's stream is gone (member down).
  void End(int seg);
  // The revision a resumed watcher needs next: one past its last event,
  // or its start if it saw none. 0 if it was never created.
  int64_t NextRevision(int seg) const;
  bool canceled(int seg) const { return segs_[seg].canceled; }
  bool created(int seg) const { return segs_[seg].created; }

  // End-of-run check. `live_upto`: every segment still connected to one of
  // `caught_up` (members that applied everything) must have received all
  // events up to this revision (0: skip completeness). Segments on other
  // nodes (e.g. one removed from the cluster but still running) must hold
  // a prefix.
  void Check(int64_t live_upto, const std::vector<uint64_t>& caught_up,
             std::vector<std::string>* violations) const;
  int64_t max_revision() const {
    return committed_.empty() ? 1 : committed_.rbegin()->first;
  }
  size_t segments() const { return segs_.size(); }
  uint64_t events_received() const { return events_received_; }

 private:
  struct Segment {
    Spec spec;
    uint64_t node = 0;
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
  };
  bool InRange(const Spec& s, const std::string& key) const;
  std::vector<mvcc::Event> Expected(const Segment& s, int64_t upto) const;

  std::map<int64_t, std::vector<mvcc::Event>> committed_;  // by revision
  std::vector<std::string> feed_problems_;
  int64_t compacted_ = 0;
  std::vector<Segment> segs_;
  uint64_t events_received_ = 0;
};

}  // namespace detcd::harness

#endif  // DETCD_HARNESS_WATCH_CHECKER_H_
