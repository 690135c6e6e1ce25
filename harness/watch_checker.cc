#include "harness/watch_checker.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace detcd::harness {
namespace {

std::string Describe(const mvcc::Event& e) {
  return absl::StrCat(e.type == mvcc::Event::kPut ? "PUT " : "DELETE ",
                      e.kv.key, "@", e.kv.mod_revision,
                      e.type == mvcc::Event::kPut ? "=" + e.kv.value : "");
}

}  // namespace

void WatchChecker::OnCommitted(uint64_t node,
                               const std::vector<mvcc::Event>& events) {
  if (events.empty()) return;
  const int64_t rev = events.front().kv.mod_revision;
  auto [it, fresh] = committed_.emplace(rev, events);
  if (!fresh && it->second != events && feed_problems_.size() < 5) {
    feed_problems_.push_back(absl::StrCat(
        "watch feed: member ", node, " produced different events for revision ",
        rev));
  }
}

void WatchChecker::OnCompacted(int64_t rev) {
  compacted_ = std::max(compacted_, rev);
}

int WatchChecker::Begin(const Spec& spec, uint64_t node,
                        int64_t start_revision) {
  Segment s;
  s.spec = spec;
  s.node = node;
  s.asked_start = start_revision;
  segs_.push_back(std::move(s));
  return static_cast<int>(segs_.size()) - 1;
}

bool WatchChecker::InRange(const Spec& s, const std::string& key) const {
  if (s.range_end.empty()) return key == s.key;
  if (key < s.key) return false;
  if (s.range_end == std::string(1, '\0')) return true;
  return key < s.range_end;
}

void WatchChecker::OnResponse(int seg, const mvcc::WatchResponse& r) {
  Segment& s = segs_[seg];
  auto problem = [&](std::string p) {
    if (s.problems.size() < 5) s.problems.push_back(std::move(p));
  };
  if (r.created) {
    if (s.created) problem("created twice");
    s.created = true;
    if (r.canceled) {
      problem(absl::StrCat("create refused: ", r.cancel_reason));
      s.canceled = true;
      return;
    }
    // Start 0 means "after the member's current revision".
    s.start = s.asked_start > 0 ? s.asked_start : r.revision + 1;
  }
  if (r.canceled) {
    s.canceled = true;
    s.compact_revision = r.compact_revision;
    if (r.compact_revision == 0) {
      problem(absl::StrCat("canceled without a compaction: ", r.cancel_reason));
    }
    return;
  }
  if (!r.events.empty() && !s.created) problem("events before created");
  for (const mvcc::Event& e : r.events) s.received.push_back(e);
  events_received_ += r.events.size();
  if (r.events.empty() && !r.created) {
    s.progress.emplace_back(r.revision, s.received.size());  // progress
  }
  // A revision's events in one response: the next response must not start
  // with the revision this one ended with (fragments aside).
  if (!r.events.empty() && !r.fragment) {
    const int64_t last = r.events.back().kv.mod_revision;
    s.boundaries.emplace_back(last, s.received.size());
  }
}

void WatchChecker::OnStreamProgress(const std::vector<int>& segs, int64_t rev) {
  for (int seg : segs) {
    Segment& s = segs_[seg];
    if (s.created && !s.canceled) {
      s.progress.emplace_back(rev, s.received.size());
    }
  }
}

void WatchChecker::End(int seg) { segs_[seg].ended = true; }

int64_t WatchChecker::NextRevision(int seg) const {
  const Segment& s = segs_[seg];
  if (!s.created) return s.asked_start;
  if (s.received.empty()) return s.start;
  return s.received.back().kv.mod_revision + 1;
}

std::vector<mvcc::Event> WatchChecker::Expected(const Segment& s,
                                                int64_t upto) const {
  std::vector<mvcc::Event> out;
  for (auto it = committed_.lower_bound(s.start);
       it != committed_.end() && it->first <= upto; ++it) {
    for (const mvcc::Event& e : it->second) {
      if (!InRange(s.spec, e.kv.key)) continue;
      if (s.spec.no_put && e.type == mvcc::Event::kPut) continue;
      if (s.spec.no_delete && e.type == mvcc::Event::kDelete) continue;
      mvcc::Event x = e;
      if (!s.spec.prev_kv) {
        x.has_prev_kv = false;
        x.prev_kv = mvcc::KeyValue();
      }
      out.push_back(std::move(x));
    }
  }
  return out;
}

void WatchChecker::Check(int64_t live_upto,
                         const std::vector<uint64_t>& caught_up,
                         std::vector<std::string>* violations) const {
  for (const std::string& p : feed_problems_) violations->push_back(p);
  // The committed history must have every revision: each one was applied
  // by some member that reported it.
  int64_t prev = 1;
  for (const auto& [rev, ev] : committed_) {
    if (rev != prev + 1) {
      violations->push_back(absl::StrCat(
          "watch feed: no member reported revision ", prev + 1));
      break;
    }
    prev = rev;
  }
  const int64_t max_rev = max_revision();
  int reported = 0;
  for (size_t i = 0; i < segs_.size() && reported < 5; ++i) {
    const Segment& s = segs_[i];
    const std::string who = absl::StrCat(
        "watch ", i, " (member ", s.node, ", range [", s.spec.key, ", ",
        s.spec.range_end == std::string(1, '\0') ? "\\0" : s.spec.range_end,
        "), start ", s.asked_start, "): ");
    std::string bad;
    for (const std::string& p : s.problems) bad = p;
    if (bad.empty() && s.created && s.canceled && s.compact_revision > 0) {
      const int64_t next = NextRevision(static_cast<int>(i));
      if (next > s.compact_revision || s.compact_revision > compacted_) {
        bad = absl::StrCat("canceled for compaction at ", s.compact_revision,
                           " but it needed revision ", next,
                           " (compacted up to ", compacted_, ")");
      }
    }
    if (bad.empty() && s.created && !(s.canceled && s.received.empty())) {
      std::vector<mvcc::Event> want = Expected(s, max_rev);
      size_t n = std::min(want.size(), s.received.size());
      for (size_t k = 0; k < n && bad.empty(); ++k) {
        if (!(s.received[k] == want[k])) {
          bad = absl::StrCat("event #", k, " is ", Describe(s.received[k]),
                             ", expected ", Describe(want[k]),
                             s.received[k].kv == want[k].kv
                                 ? " (prev_kv differs)"
                                 : "");
        }
      }
      if (bad.empty() && s.received.size() > want.size()) {
        bad = absl::StrCat("received ", s.received.size() - want.size(),
                           " events that were never committed, first ",
                           Describe(s.received[want.size()]));
      }
      const bool live =
          !s.ended && !s.canceled &&
          std::find(caught_up.begin(), caught_up.end(), s.node) !=
              caught_up.end();
      if (bad.empty() && live && live_upto > 0) {
        size_t need = 0;
        for (const mvcc::Event& e : want) {
          if (e.kv.mod_revision <= live_upto) ++need;
        }
        if (s.received.size() < need) {
          bad = absl::StrCat("still connected but missing ",
                             need - s.received.size(),
                             " events up to revision ", live_upto,
                             ", first ", Describe(want[s.received.size()]));
        }
      }
      // Revision boundaries and progress notifications.
      for (const auto& [rev, count] : s.boundaries) {
        if (!bad.empty()) break;
        if (count < s.received.size() &&
            s.received[count].kv.mod_revision == rev) {
          bad = absl::StrCat("events of revision ", rev,
                             " split over two responses");
        }
      }
      for (const auto& [mark, count] : s.progress) {
        if (!bad.empty()) break;
        size_t need = 0;
        for (const mvcc::Event& e : want) {
          if (e.kv.mod_revision <= mark) ++need;
        }
        if (count < need) {
          bad = absl::StrCat("progress at revision ", mark, " after only ",
                             count, " of its ", need, " events");
        }
      }
    }
    if (!bad.empty()) {
      violations->push_back(who + bad);
      ++reported;
    }
  }
}

}  // namespace detcd::harness
