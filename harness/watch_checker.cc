#include "harness/watch_checker.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace detcd::harness {
namespace {

// Keys as text: the zero byte (the "all keys" bound) shown as \0.
std::string Printable(const std::string& k) {
  std::string out;
  for (char c : k) {
    if (c == '\0') {
      out += "\\0";
    } else {
      out += c;
    }
  }
  return out;
}

std::string Describe(const mvcc::Event& e) {
  std::string s = absl::StrCat(e.type == mvcc::Event::kPut ? "PUT " : "DELETE ",
                               Printable(e.kv.key), "@", e.kv.mod_revision);
  if (e.type == mvcc::Event::kPut) {
    absl::StrAppend(&s, "=", e.kv.value, " (c", e.kv.create_revision, " v",
                    e.kv.version, e.kv.lease != 0 ? absl::StrCat(" l", e.kv.lease) : "",
                    ")");
  }
  if (e.has_prev_kv) {
    absl::StrAppend(&s, " prev ", e.prev_kv.value, "@", e.prev_kv.mod_revision);
  }
  return s;
}

// Events of `want` (in revision order) with revision <= rev.
size_t CountUpTo(const std::vector<mvcc::Event>& want, int64_t rev) {
  return static_cast<size_t>(
      std::partition_point(want.begin(), want.end(),
                           [rev](const mvcc::Event& e) {
                             return e.kv.mod_revision <= rev;
                           }) -
      want.begin());
}

bool InRange(const WatchChecker::Spec& s, const std::string& key) {
  if (s.range_end.empty()) return key == s.key;
  if (key < s.key) return false;
  if (s.range_end == std::string(1, '\0')) return true;
  return key < s.range_end;
}

}  // namespace

void WatchChecker::Problem(Segment& s, std::string p) {
  if (s.problems.size() < 5) s.problems.push_back(std::move(p));
}

void WatchChecker::OnCommitted(uint64_t node,
                               const std::vector<mvcc::Event>& events) {
  if (events.empty()) return;
  const int64_t rev = events.front().kv.mod_revision;
  auto [it, fresh] = fed_.emplace(rev, events);
  if (!fresh && it->second != events && feed_problems_.size() < 5) {
    feed_problems_.push_back(absl::StrCat(
        "watch feed: member ", node, " produced different events for revision ",
        rev));
  }
}

void WatchChecker::OnCompactionAcked(int64_t rev) {
  acked_compactions_.push_back(rev);
}

int WatchChecker::NewStream() {
  streams_.emplace_back();
  return static_cast<int>(streams_.size()) - 1;
}

int WatchChecker::Begin(const Spec& spec, uint64_t node,
                        int64_t start_revision, int stream) {
  Segment s;
  s.spec = spec;
  s.node = node;
  s.stream = stream;
  s.asked_start = start_revision;
  segs_.push_back(std::move(s));
  return static_cast<int>(segs_.size()) - 1;
}

void WatchChecker::OnResponse(int seg, const mvcc::WatchResponse& r) {
  Segment& s = segs_[seg];
  Stream* st = s.stream >= 0 ? &streams_[s.stream] : nullptr;
  // Fragments: etcd's clients reassemble one response per stream, so the
  // pieces of one must follow each other.
  if (st != nullptr && st->frag_seg != -1 && st->frag_seg != seg) {
    Problem(segs_[st->frag_seg],
            "a response of another watcher on the stream came between the "
            "pieces of a fragmented response");
    st->frag_seg = -1;
  }
  const bool mid = st != nullptr && st->frag_seg == seg;
  if (r.fragment) {
    ++fragments_received_;
    if (!s.spec.fragment) {
      Problem(s, "a fragment sent to a watcher that did not ask for them");
    }
    if (r.created || r.canceled || r.events.empty()) {
      Problem(s, "the fragment flag on a response without events");
    }
  }
  if (mid && !r.canceled) {
    if (r.events.empty()) {
      Problem(s, "a response without events in the middle of a fragmented "
                 "response");
    } else if (r.revision != s.frag_revision) {
      Problem(s, absl::StrCat("pieces of one fragmented response carry ",
                              "header revisions ", s.frag_revision, " and ",
                              r.revision));
    }
  }
  if (r.created) {
    if (s.created) Problem(s, "created twice");
    s.created = true;
    if (r.canceled) {
      Problem(s, absl::StrCat("create refused: ", r.cancel_reason));
      s.canceled = true;
      return;
    }
    // Start 0 means "after the member's current revision".
    s.start = s.asked_start > 0 ? s.asked_start : r.revision + 1;
  }
  if (r.canceled) {
    // A cancel ends a half-received fragmented response (clients drop it).
    if (mid) st->frag_seg = -1;
    s.canceled = true;
    s.compact_revision = r.compact_revision;
    if (r.compact_revision == 0) {
      Problem(s, absl::StrCat("canceled without a compaction: ",
                              r.cancel_reason));
    } else if (r.revision != 0 || !r.cancel_reason.empty()) {
      // etcd 3.4 sends a compaction cancel with neither (clients that
      // compare answers with etcd's see the difference).
      Problem(s, absl::StrCat("compaction cancel not in etcd 3.4's shape: "
                              "header revision ",
                              r.revision, ", cancel_reason '", r.cancel_reason,
                              "'"));
    }
    return;
  }
  if (!r.events.empty() && !s.created) Problem(s, "events before created");
  if (!r.events.empty() && r.revision < r.events.back().kv.mod_revision) {
    Problem(s, absl::StrCat("header revision ", r.revision,
                            " below its last event's ",
                            r.events.back().kv.mod_revision));
  }
  for (const mvcc::Event& e : r.events) s.received.push_back(e);
  events_received_ += r.events.size();
  if (r.events.empty() && !r.created) {
    s.progress.emplace_back(r.revision, s.received.size());  // progress
  }
  if (r.fragment) {
    if (st != nullptr) st->frag_seg = seg;
    s.frag_revision = r.revision;
    return;
  }
  if (mid) st->frag_seg = -1;
  // A revision's events in one (reassembled) response: the next response
  // must not start with the revision this one ended with.
  if (!r.events.empty()) {
    const int64_t last = r.events.back().kv.mod_revision;
    s.boundaries.emplace_back(last, s.received.size());
  }
}

void WatchChecker::OnStreamProgress(int stream, const std::vector<int>& segs,
                                    int64_t rev) {
  if (stream >= 0 && streams_[stream].frag_seg != -1) {
    Problem(segs_[streams_[stream].frag_seg],
            "a stream-wide progress notification in the middle of a "
            "fragmented response");
    streams_[stream].frag_seg = -1;
  }
  for (int seg : segs) {
    Segment& s = segs_[seg];
    if (s.created && !s.canceled) {
      s.progress.emplace_back(rev, s.received.size());
    }
  }
}

void WatchChecker::End(int seg) {
  Segment& s = segs_[seg];
  s.ended = true;
  if (s.stream >= 0 && streams_[s.stream].frag_seg == seg) {
    streams_[s.stream].frag_seg = -1;
  }
}

int64_t WatchChecker::NextRevision(int seg) const {
  const Segment& s = segs_[seg];
  if (!s.created) return s.asked_start;
  if (s.received.empty()) return s.start;
  return s.received.back().kv.mod_revision + 1;
}

int64_t WatchChecker::NeededRevision(int seg) const {
  const Segment& s = segs_[seg];
  if (!s.created || s.received.empty()) return NextRevision(seg);
  // With fragment a revision's events may arrive in parts: a watcher that
  // has only some of its last revision's still needs that revision.
  const int64_t last = s.received.back().kv.mod_revision;
  size_t got = 0, want = 0;
  for (auto it = s.received.rbegin();
       it != s.received.rend() && it->kv.mod_revision == last; ++it) {
    ++got;
  }
  if (model_ != nullptr) {
    for (const mvcc::Event& e : model_->EventsAt(last)) {
      if (!InRange(s.spec, e.kv.key)) continue;
      if (s.spec.no_put && e.type == mvcc::Event::kPut) continue;
      if (s.spec.no_delete && e.type == mvcc::Event::kDelete) continue;
      ++want;
    }
  }
  return got < want ? last : last + 1;
}

std::vector<mvcc::Event> WatchChecker::Expected(const Segment& s,
                                                int64_t upto) const {
  std::vector<mvcc::Event> out;
  for (int64_t rev = std::max<int64_t>(s.start, 2); rev <= upto; ++rev) {
    for (const mvcc::Event& e : model_->EventsAt(rev)) {
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

void WatchChecker::Check(const std::map<uint64_t, int64_t>& applied_rev,
                         std::vector<std::string>* violations) const {
  if (model_ == nullptr) {
    violations->push_back("watch checker: no model of the committed log");
    return;
  }
  if (!model_->problem().empty()) violations->push_back(model_->problem());
  for (const std::string& p : feed_problems_) violations->push_back(p);
  const int64_t max_rev = model_->rev();
  // The members' apply-time events against the committed log's.
  for (int64_t rev = 2; rev <= max_rev; ++rev) {
    auto it = fed_.find(rev);
    const std::vector<mvcc::Event>& want = model_->EventsAt(rev);
    if (it == fed_.end()) {
      violations->push_back(
          absl::StrCat("watch feed: no member reported revision ", rev));
      break;
    }
    if (it->second != want) {
      std::string what;
      for (size_t k = 0; k < std::max(want.size(), it->second.size()); ++k) {
        if (k < want.size() && k < it->second.size() &&
            want[k] == it->second[k]) {
          continue;
        }
        what = absl::StrCat(
            "event #", k, " is ",
            k < it->second.size() ? Describe(it->second[k]) : "missing",
            ", the committed log gives ",
            k < want.size() ? Describe(want[k]) : "none");
        break;
      }
      violations->push_back(absl::StrCat(
          "watch feed: the members' events for revision ", rev,
          " are not the committed log's: ", what));
      break;
    }
  }
  if (!fed_.empty() && fed_.rbegin()->first > max_rev) {
    violations->push_back(absl::StrCat("watch feed: revision ",
                                       fed_.rbegin()->first,
                                       " was never committed"));
  }
  const std::vector<int64_t>& compactions = model_->compactions();
  auto took_effect = [&](int64_t rev) {
    return std::find(compactions.begin(), compactions.end(), rev) !=
           compactions.end();
  };
  for (int64_t rev : acked_compactions_) {
    if (!took_effect(rev)) {
      violations->push_back(absl::StrCat("compaction at ", rev,
                                         " was acknowledged but never took "
                                         "effect in the committed log"));
      break;
    }
  }
  int reported = 0;
  for (size_t i = 0; i < segs_.size() && reported < 5; ++i) {
    const Segment& s = segs_[i];
    const std::string who = absl::StrCat(
        "watch ", i, " (member ", s.node, ", range [", Printable(s.spec.key),
        ", ", Printable(s.spec.range_end),
        "), start ", s.asked_start, s.spec.prev_kv ? ", prev_kv" : "",
        s.spec.fragment ? ", fragment" : "", "): ");
    std::string bad;
    if (!s.problems.empty()) bad = s.problems.front();
    if (bad.empty() && s.created && s.canceled && s.compact_revision > 0) {
      const int64_t next = NeededRevision(static_cast<int>(i));
      if (next > s.compact_revision || !took_effect(s.compact_revision)) {
        bad = absl::StrCat("canceled for compaction at ", s.compact_revision,
                           " but it needed revision ", next,
                           took_effect(s.compact_revision)
                               ? ""
                               : " (no compaction took effect there)");
      }
    }
    if (bad.empty() && s.created && !(s.canceled && s.received.empty())) {
      std::vector<mvcc::Event> want = Expected(s, max_rev);
      size_t n = std::min(want.size(), s.received.size());
      for (size_t k = 0; k < n && bad.empty(); ++k) {
        if (!(s.received[k] == want[k])) {
          bad = absl::StrCat("event #", k, " is ", Describe(s.received[k]),
                             ", the committed log gives ", Describe(want[k]));
        }
      }
      if (bad.empty() && s.received.size() > want.size()) {
        bad = absl::StrCat("received ", s.received.size() - want.size(),
                           " events that were never committed, first ",
                           Describe(s.received[want.size()]));
      }
      auto up = applied_rev.find(s.node);
      if (bad.empty() && !s.ended && !s.canceled && up != applied_rev.end()) {
        const size_t need = CountUpTo(want, up->second);
        if (s.received.size() < need) {
          bad = absl::StrCat("still connected but missing ",
                             need - s.received.size(),
                             " events up to revision ", up->second,
                             " (its member's), first ",
                             Describe(want[s.received.size()]));
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
        const size_t need = CountUpTo(want, mark);
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
