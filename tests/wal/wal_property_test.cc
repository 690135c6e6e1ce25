// Random histories of WAL writes, snapshot markers, releases, crashes (with
// random loss and tearing of unsynced data) and reopens against a model.
//
// The model keeps every record written since the last open as a list of
// small steps (one per entry, hard state or marker), and how many of them a
// sync has made durable. A crash may lose any of the unsynced pages, in any
// order, and tear them; a failed fsync may drop pages for good (Linux). The
// WAL cuts its log at the first lost or torn record past the synced prefix,
// so after reopening, the recovered state must equal the model replayed up
// to some step k with synced <= k <= all:
//   - nothing synced is lost (k >= synced): the hard state is the newest
//     one up to k, every entry written up to k and not since overwritten
//     is there;
//   - nothing is invented or corrupted: every recovered entry and the hard
//     state are exactly what was written, in the order of a prefix.
// A clean reopen (no crash) must recover everything written.
#include <gtest/gtest.h>
#include <rapidcheck.h>
#include <rapidcheck/gtest.h>

#include <algorithm>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/wal/wal.h"
#include "sim/sim_disk.h"

namespace detcd::wal {
namespace {

constexpr char kDir[] = "n/wal";

struct Step {
  enum Kind { kEntry, kHardState, kMarker } kind = kEntry;
  raft::Entry entry;
  raft::HardState hs;
  raft::SnapshotMetadata marker;
};

// The Raft state the WAL describes, as seen by Open(snap.index).
struct State {
  raft::HardState hs;
  raft::SnapshotMetadata snap;              // the newest marker
  std::map<uint64_t, raft::Entry> entries;  // may hold entries <= snap.index
  uint64_t last_index = 0;                  // the WAL's idea of the last index

  void Apply(const Step& s) {
    switch (s.kind) {
      case Step::kEntry:
        entries.erase(entries.lower_bound(s.entry.index), entries.end());
        entries.emplace(s.entry.index, s.entry);
        last_index = s.entry.index;
        break;
      case Step::kHardState:
        hs = s.hs;
        break;
      case Step::kMarker:
        snap = s.marker;
        last_index = std::max(last_index, s.marker.index);
        break;
    }
  }

  std::vector<raft::Entry> After(uint64_t index) const {
    std::vector<raft::Entry> out;
    for (auto it = entries.upper_bound(index); it != entries.end(); ++it) {
      out.push_back(it->second);
    }
    return out;
  }
};

std::string Describe(const std::vector<raft::Entry>& es) {
  std::string out;
  for (const raft::Entry& e : es)
    absl::StrAppend(&out, e.index, "/", e.term, " ");
  return out;
}

class Harness {
 public:
  // fill: the disk's fill-ahead (SimDisk::set_fill_ahead_bytes).
  Harness(uint64_t seed, uint64_t segment_bytes, uint64_t fill)
      : disk_(env::SeededRng(seed)) {
    opts_.segment_bytes = segment_bytes;
    disk_.set_fill_ahead_bytes(fill);
    RC_ASSERT(disk_.CreateDir("n").ok());
    RC_ASSERT(disk_.SyncDir("").ok());
    auto w = Wal::Create(&disk_, kDir, opts_);
    RC_ASSERT(w.ok());
    wal_ = *std::move(w);
    Step boot;
    boot.kind = Step::kMarker;
    boot.marker.conf_state.voters = {1};
    RC_ASSERT(wal_->SaveSnapshotMarker(boot.marker).ok());
    base_.Apply(boot);
    markers_.push_back(boot.marker);
    cur_ = base_;
  }

  void Save() {
    std::optional<raft::HardState> hs;
    if (*rc::gen::inRange(0, 3) != 0) {
      raft::HardState h;
      term_ += *rc::gen::inRange<uint64_t>(0, 2);
      h.term = term_;
      h.vote = *rc::gen::inRange<uint64_t>(0, 4);
      h.commit = *rc::gen::inRange<uint64_t>(0, cur_.last_index + 1);
      hs = h;
    }
    // Entries start anywhere after the snapshot, up to the next index.
    const uint64_t lo = cur_.snap.index + 1;
    const uint64_t start =
        *rc::gen::inRange<uint64_t>(lo, std::max(lo, cur_.last_index + 1) + 1);
    const int n = *rc::gen::inRange(0, 6);
    term_ += *rc::gen::inRange<uint64_t>(0, 2);
    std::vector<raft::Entry> entries;
    for (int i = 0; i < n; ++i) {
      raft::Entry e;
      e.index = start + i;
      e.term = term_;
      e.type = *rc::gen::inRange(0, 5) == 0 ? raft::EntryType::kConfChange
                                            : raft::EntryType::kNormal;
      const int size = *rc::gen::element(0, 1, 8, 30, 200, 3000);
      std::string d =
          absl::StrCat("i", e.index, "t", e.term, "#", ++serial_, ":");
      d.resize(d.size() + size, static_cast<char>('a' + serial_ % 26));
      e.data = std::move(d);
      entries.push_back(std::move(e));
    }
    const bool sync = *rc::gen::arbitrary<bool>();
    RC_LOG() << "Save hs="
             << (hs ? absl::StrCat(hs->term, "/", hs->vote, "/", hs->commit)
                    : "-")
             << " entries=" << Describe(entries) << " sync=" << sync << "\n";
    const DurableState before = wal_->durable();
    RC_ASSERT(wal_->Save(hs ? &*hs : nullptr, entries, sync).ok());
    for (const raft::Entry& e : entries) {
      Step st;
      st.kind = Step::kEntry;
      st.entry = e;
      Add(st);
    }
    if (hs) {
      Step st;
      st.kind = Step::kHardState;
      st.hs = *hs;
      Add(st);
    }
    const DurableState after = wal_->durable();
    if (sync) {
      synced_ = steps_.size();
      RC_ASSERT(after.hard_state == cur_.hs);
      RC_ASSERT(after.last_index == cur_.last_index);
    } else {
      // Unchanged, unless a segment cut synced everything.
      RC_ASSERT(
          (after.hard_state == before.hard_state &&
           after.last_index == before.last_index) ||
          (after.hard_state == cur_.hs && after.last_index == cur_.last_index));
    }
  }

  void Marker() {
    // A snapshot of the node's own log (index within it, its term) or one
    // received from a leader (anywhere, any term).
    const uint64_t index =
        *rc::gen::inRange<uint64_t>(cur_.snap.index, cur_.last_index + 4);
    raft::SnapshotMetadata m;
    m.index = index;
    m.conf_state.voters = {1, *rc::gen::inRange<uint64_t>(2, 5)};
    auto it = cur_.entries.find(index);
    if (index == cur_.snap.index) {
      m = cur_.snap;  // the same snapshot again
    } else if (it != cur_.entries.end() && *rc::gen::arbitrary<bool>()) {
      m.term = it->second.term;
    } else {
      m.term = term_ + *rc::gen::inRange<uint64_t>(0, 2);
      term_ = m.term;
    }
    RC_LOG() << "Marker " << m.index << "/" << m.term << "\n";
    RC_ASSERT(wal_->SaveSnapshotMarker(m).ok());
    Step st;
    st.kind = Step::kMarker;
    st.marker = m;
    Add(st);
    markers_.push_back(m);
    synced_ = steps_.size();
    RC_ASSERT(wal_->durable().hard_state == cur_.hs);
    RC_ASSERT(wal_->durable().last_index == cur_.last_index);
  }

  void Release() {
    const uint64_t index = *rc::gen::inRange<uint64_t>(0, cur_.snap.index + 3);
    RC_LOG() << "ReleaseBefore " << index << "\n";
    RC_ASSERT(wal_->ReleaseBefore(index).ok());
    // The newest marker at or below index stays readable (an earlier call
    // with a larger index may have released more).
    released_ = std::max(released_, index);
    const raft::SnapshotMetadata* keep = nullptr;
    for (const raft::SnapshotMetadata& m : markers_) {
      if (m.index <= released_) keep = &m;
    }
    auto markers = Wal::ReadMarkers(&disk_, kDir);
    RC_ASSERT(markers.ok());
    if (keep != nullptr) {
      RC_ASSERT(std::find(markers->begin(), markers->end(), *keep) !=
                markers->end());
    }
  }

  void Crash() {
    sim::DiskFaults f;
    f.crash_keep_unsynced_probability = *rc::gen::element(0.0, 0.3, 1.0);
    f.crash_tear_probability = *rc::gen::element(0.0, 0.5, 1.0);
    f.crash_zero_fill_probability = *rc::gen::element(0.0, 0.5);
    RC_LOG() << "Crash keep=" << f.crash_keep_unsynced_probability
             << " tear=" << f.crash_tear_probability << "\n";
    disk_.set_faults(f);
    if (*rc::gen::inRange(0, 4) == 0) {
      disk_.CrashRandomly();
    } else {
      disk_.Crash();
    }
    Reopen(synced_);
  }

  // A sync that fails (the WAL is done for: it fails every later call) and
  // the crash that follows; the failed sync may have written any of the
  // dirty pages, and the rest are lost whatever happens next.
  void FailedSync() {
    sim::DiskFaults f;
    f.eio_probability = 1;
    f.failed_sync_write_probability = *rc::gen::element(0.0, 0.5, 1.0);
    RC_LOG() << "FailedSync write=" << f.failed_sync_write_probability << "\n";
    disk_.set_faults(f);
    RC_ASSERT(!wal_->Save(nullptr, {}, true).ok());
    disk_.set_faults(sim::DiskFaults{});
    RC_ASSERT(!wal_->Save(nullptr, {}, true).ok());
    Crash();
  }

  void CleanReopen() {
    RC_LOG() << "Reopen\n";
    Reopen(steps_.size());
  }

 private:
  void Add(const Step& s) {
    steps_.push_back(s);
    cur_.Apply(s);
  }

  // Reopens and checks the result is the model after some step k >= min_k.
  void Reopen(size_t min_k) {
    wal_.reset();
    const uint64_t snap_index = cur_.snap.index;
    auto r = Wal::Open(&disk_, kDir, snap_index, opts_);
    RC_ASSERT(r.ok());
    RC_LOG() << "  recovered hs=" << r->hard_state.term << "/"
             << r->hard_state.vote << "/" << r->hard_state.commit
             << " entries=" << Describe(r->entries) << "\n";
    RC_ASSERT(r->snapshot == cur_.snap);
    State s = base_;
    std::optional<size_t> match;
    for (size_t k = 0; k <= steps_.size(); ++k) {
      if (k > 0) s.Apply(steps_[k - 1]);
      if (k < min_k) continue;
      if (s.hs == r->hard_state && s.After(snap_index) == r->entries &&
          s.last_index == r->wal->durable().last_index) {
        match = k;
        break;
      }
    }
    RC_ASSERT(match.has_value());
    RC_ASSERT(r->wal->durable().hard_state == r->hard_state);
    // Start over from what was recovered.
    wal_ = std::move(r->wal);
    base_ = State();
    base_.hs = r->hard_state;
    base_.snap = r->snapshot;
    base_.last_index = wal_->durable().last_index;
    for (const raft::Entry& e : r->entries) base_.entries.emplace(e.index, e);
    cur_ = base_;
    steps_.clear();
    synced_ = 0;
    disk_.set_faults(sim::DiskFaults{});
    // Markers never get lost and come out oldest first.
    auto markers = Wal::ReadMarkers(&disk_, kDir);
    RC_ASSERT(markers.ok());
    RC_ASSERT(!markers->empty());
    RC_ASSERT(markers->back() == cur_.snap);
  }

  sim::SimDisk disk_;
  WalOptions opts_;
  std::unique_ptr<Wal> wal_;
  State base_;  // the state at the last open
  State cur_;   // base_ with every step applied
  std::vector<Step> steps_;
  size_t synced_ = 0;
  // Every marker written, oldest first (markers are synced, so a crash
  // never loses one).
  std::vector<raft::SnapshotMetadata> markers_;
  uint64_t released_ = 0;  // the largest index passed to ReleaseBefore
  uint64_t term_ = 1;
  uint64_t serial_ = 0;
};

// One random history. weights: Save, Marker, Release, Crash, CleanReopen,
// FailedSync.
void RunHistory(uint64_t segment_bytes, const std::vector<int>& weights) {
  const uint64_t seed = *rc::gen::arbitrary<uint64_t>();
  const uint64_t fill = *rc::gen::element<uint64_t>(0, 0, 100, 5000);
  RC_LOG() << "fill-ahead " << fill << "\n";
  Harness h(seed, segment_bytes, fill);
  const int ops = *rc::gen::inRange(1, 100);
  int total = 0;
  for (int w : weights) total += w;
  for (int i = 0; i < ops; ++i) {
    int pick = *rc::gen::inRange(0, total);
    int op = 0;
    while (pick >= weights[op]) pick -= weights[op++];
    switch (op) {
      case 0:
        h.Save();
        break;
      case 1:
        h.Marker();
        break;
      case 2:
        h.Release();
        break;
      case 3:
        h.Crash();
        break;
      case 4:
        h.CleanReopen();
        break;
      case 5:
        h.FailedSync();
        break;
    }
  }
  h.Crash();
}

RC_GTEST_PROP(WalProperty, MixedHistories, ()) {
  RunHistory(*rc::gen::element<uint64_t>(128, 600, 4096),
             {12, 2, 2, 3, 1, 1});
}

// Tiny segments: every few records a cut; frequent snapshots and releases.
RC_GTEST_PROP(WalProperty, SegmentChurn, ()) {
  RunHistory(*rc::gen::element<uint64_t>(64, 200), {10, 4, 4, 2, 1, 1});
}

// Long runs of unsynced writes between crashes.
RC_GTEST_PROP(WalProperty, CrashHeavy, ()) {
  RunHistory(*rc::gen::element<uint64_t>(300, 1 << 20), {8, 1, 1, 4, 0, 2});
}

}  // namespace
}  // namespace detcd::wal
