// KvStore against an obviously-correct model, as a RapidCheck property.
//
// The model keeps a full copy of the key space for every revision
// (snaps[r] is the store as of revision r) plus every revision's events,
// and the compact revision. Compaction in the model only moves the
// compact revision: the store must keep answering every read at or above
// it exactly as the uncompacted history would, and must have dropped what
// etcd drops (checked through revision_count()).
//
// Random sequences of: Range (latest or historical rev, limit, keys_only,
// count_only), Put, DeleteRange, Txn (a group of puts / deletes / ranges in
// one WriteTxn, plus reads of the store from outside it), Compact (also at
// invalid revisions; half of them only started, their revisions removed
// by later CompactStep steps of a few records, so every other operation
// also meets a compaction half removed), Changes (random windows and batch
// sizes) and Snapshot/Restore (the run continues on the restored copy;
// the hashes taken before it, maybe mid-compaction, must be the restored
// store's). Every result
// is compared: values, revisions, versions, counts, error statuses and
// events. Keys come from a small alphabet (with zero and 0xff bytes) so
// that keys collide, get deleted and come back.
#include <gtest/gtest.h>
#include <rapidcheck.h>
#include <rapidcheck/gtest.h>

#include <algorithm>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "engine/mvcc/kv_store.h"

namespace detcd::mvcc {
namespace {

using std::string_literals::operator""s;
using State = std::map<std::string, KeyValue>;

const std::vector<std::string>& KeyAlphabet() {
  static const auto* keys = new std::vector<std::string>{
      "\0"s, "a", "a\0"s, "ab", "b", "ba", "c", "\xff"s};
  return *keys;
}

// Range ends: "" (single key), "\0" (to the last key), or any key.
const std::vector<std::string>& EndAlphabet() {
  static const auto* ends = [] {
    auto* v = new std::vector<std::string>{""s, "\0"s};
    for (const auto& k : KeyAlphabet()) v->push_back(k);
    v->push_back("bb");
    return v;
  }();
  return *ends;
}

bool InRange(const std::string& k, std::string_view key, std::string_view end) {
  if (end.empty()) return k == key;
  if (end == "\0"s) return k >= key;
  return k >= key && k < end;
}

std::string Printable(std::string_view s) {
  std::string out;
  for (unsigned char c : s) {
    if (c >= 0x20 && c < 0x7f) {
      out.push_back(static_cast<char>(c));
    } else {
      absl::StrAppend(&out, "\\x", absl::Hex(c, absl::kZeroPad2));
    }
  }
  return out;
}

struct Model {
  // snaps[r] and events[r] for r in [0, Rev()]; revisions 0 and 1 are
  // empty (etcd's first write is revision 2).
  std::vector<State> snaps{State{}, State{}};
  std::vector<std::vector<Event>> events{{}, {}};
  int64_t compact = -1;

  int64_t Rev() const { return static_cast<int64_t>(snaps.size()) - 1; }

  // `pending` is the open transaction's state when reading at rev Rev()+1.
  absl::StatusOr<RangeResult> Range(std::string_view key, std::string_view end,
                                    const RangeOptions& o, int64_t cur,
                                    const State* pending) const {
    int64_t rev = o.rev;
    if (rev > cur) return ErrFutureRev();
    if (rev <= 0) rev = cur;
    if (rev < compact) return ErrCompacted();
    const State& st = rev == Rev() + 1 ? *pending : snaps[rev];
    RangeResult r;
    r.rev = cur;
    for (const auto& [k, kv] : st) {
      if (!InRange(k, key, end)) continue;
      ++r.count;
      if (o.count_only) continue;
      if (o.limit > 0 && static_cast<int64_t>(r.kvs.size()) >= o.limit) {
        continue;
      }
      r.kvs.push_back(kv);
      if (o.keys_only) r.kvs.back().value.clear();
    }
    return r;
  }

  absl::Status Changes(int64_t from, int64_t to, size_t max_events,
                       std::vector<Event>* out, int64_t* next) const {
    if (from <= compact) return ErrCompacted();
    const int64_t last = std::min(to, Rev());
    for (int64_t m = std::max<int64_t>(from, 2); m <= last; ++m) {
      out->insert(out->end(), events[m].begin(), events[m].end());
      if (out->size() >= max_events) {
        *next = m + 1;
        return absl::OkStatus();
      }
    }
    *next = std::max(from, last + 1);
    return absl::OkStatus();
  }

  // What compaction at `compact` keeps: every revision above it, and each
  // key's latest revision at or below it unless that is a delete.
  size_t KeptRevisions() const {
    std::map<std::string, const Event*> latest_old;
    size_t n = 0;
    for (int64_t m = 2; m <= Rev(); ++m) {
      for (const Event& e : events[m]) {
        if (m > compact) {
          ++n;
        } else {
          latest_old[e.kv.key] = &e;
        }
      }
    }
    for (const auto& [k, e] : latest_old) {
      if (e->type == Event::kPut) ++n;
    }
    return n;
  }
};

class ModelTxn {
 public:
  explicit ModelTxn(Model* m) : m_(m), state_(m->snaps.back()) {}

  int64_t Rev() const { return m_->Rev() + (evs_.empty() ? 0 : 1); }

  absl::StatusOr<RangeResult> Range(std::string_view key, std::string_view end,
                                    const RangeOptions& o) const {
    return m_->Range(key, end, o, Rev(), &state_);
  }

  std::optional<KeyValue> Put(const std::string& key, const std::string& value,
                              int64_t lease) {
    const int64_t main = m_->Rev() + 1;
    Event e;
    e.type = Event::kPut;
    KeyValue kv;
    kv.key = key;
    kv.mod_revision = main;
    kv.value = value;
    kv.lease = lease;
    std::optional<KeyValue> prev;
    auto it = state_.find(key);
    if (it != state_.end()) {
      prev = it->second;
      kv.create_revision = prev->create_revision;
      kv.version = prev->version + 1;
      e.has_prev_kv = true;
      e.prev_kv = *prev;
    } else {
      kv.create_revision = main;
      kv.version = 1;
    }
    e.kv = kv;
    state_[key] = kv;
    evs_.push_back(e);
    return prev;
  }

  std::vector<KeyValue> DeleteRange(std::string_view key,
                                    std::string_view end) {
    const int64_t main = m_->Rev() + 1;
    std::vector<KeyValue> deleted;
    for (auto it = state_.begin(); it != state_.end();) {
      if (!InRange(it->first, key, end)) {
        ++it;
        continue;
      }
      Event e;
      e.type = Event::kDelete;
      e.kv.key = it->first;
      e.kv.mod_revision = main;
      e.has_prev_kv = true;
      e.prev_kv = it->second;
      evs_.push_back(e);
      deleted.push_back(it->second);
      it = state_.erase(it);
    }
    return deleted;
  }

  std::vector<Event> End() {
    if (!evs_.empty()) {
      m_->snaps.push_back(state_);
      m_->events.push_back(evs_);
    }
    return evs_;
  }

 private:
  Model* m_;
  State state_;
  std::vector<Event> evs_;
};

void AssertSameRange(const absl::StatusOr<RangeResult>& got,
                     const absl::StatusOr<RangeResult>& want) {
  RC_ASSERT(got.status() == want.status());
  if (!got.ok()) return;
  RC_ASSERT(got->rev == want->rev);
  RC_ASSERT(got->count == want->count);
  RC_ASSERT(got->kvs == want->kvs);
}

// Reads of every kept revision and the whole change history, plus the
// bookkeeping the model can predict.
void AssertWholeStore(const KvStore& s, const Model& m) {
  RC_ASSERT(s.Rev() == m.Rev());
  RC_ASSERT(s.CompactRev() == m.compact);
  RC_ASSERT(s.key_count() == m.snaps.back().size());
  // What a compaction drops counts until its steps removed it.
  if (s.compaction_pending()) {
    RC_ASSERT(s.revision_count() >= m.KeptRevisions());
  } else {
    RC_ASSERT(s.revision_count() == m.KeptRevisions());
  }
  for (int64_t rev = std::max<int64_t>(m.compact, 1); rev <= m.Rev(); ++rev) {
    RangeOptions o;
    o.rev = rev;
    AssertSameRange(s.Range("\0"s, "\0"s, o),
                    m.Range("\0"s, "\0"s, o, m.Rev(), nullptr));
  }
  std::vector<Event> got, want;
  int64_t next_got = 0, next_want = 0;
  RC_ASSERT(s.Changes(m.compact + 1, m.Rev(), SIZE_MAX, &got, &next_got).ok());
  RC_ASSERT(
      m.Changes(m.compact + 1, m.Rev(), SIZE_MAX, &want, &next_want).ok());
  RC_ASSERT(got == want);
  RC_ASSERT(next_got == next_want);
}

struct Picker {
  const Model& m;

  std::string Key() const { return *rc::gen::elementOf(KeyAlphabet()); }
  std::string End() const { return *rc::gen::elementOf(EndAlphabet()); }
  std::string Value() const {
    // Values of many sizes, so that a key's later values are longer and
    // shorter than the value area its node got at creation (8 bytes at
    // least), and some of 4 KiB or more, which always get a block of
    // their own.
    return *rc::gen::element("v"s, "w"s, ""s, std::string(40, 'x'),
                             std::string(32, 'y'), std::string(33, 'z'),
                             std::string(9, 'n'), std::string(4100, 'q'));
  }
  // Mostly the latest revision; otherwise anything from before the
  // compaction to past the current revision (so both errors happen).
  int64_t Rev(int64_t cur) const {
    if (*rc::gen::inRange(0, 3) != 0) return 0;
    return *rc::gen::inRange<int64_t>(-1, cur + 3);
  }
  RangeOptions Options(int64_t cur) const {
    RangeOptions o;
    o.rev = Rev(cur);
    o.limit = *rc::gen::element<int64_t>(0, 0, 1, 2, 3, -1);
    o.keys_only = *rc::gen::inRange(0, 5) == 0;
    o.count_only = *rc::gen::inRange(0, 5) == 0;
    return o;
  }
};

void RunSequence(int steps) {
  Model m;
  auto s = std::make_unique<KvStore>();
  Picker pick{m};

  for (int step = 0; step < steps; ++step) {
    const int kind = *rc::gen::weightedElement<int>({{3, 0},    // Range
                                                     {6, 1},    // Put
                                                     {2, 2},    // Delete
                                                     {4, 3},    // Txn
                                                     {2, 4},    // Compact
                                                     {2, 5},    // Changes
                                                     {1, 6},    // Snapshot
                                                     {3, 7}});  // Step
    switch (kind) {
      case 0: {
        std::string key = pick.Key(), end = pick.End();
        RangeOptions o = pick.Options(m.Rev());
        RC_LOG() << "Range " << Printable(key) << " " << Printable(end)
                 << " rev=" << o.rev << " limit=" << o.limit << "\n";
        AssertSameRange(s->Range(key, end, o),
                        m.Range(key, end, o, m.Rev(), nullptr));
        break;
      }
      case 1:
      case 2:
      case 3: {
        // A one-op txn for Put and Delete; a group for Txn.
        const int ops = kind == 3 ? *rc::gen::inRange(0, 6) : 1;
        RC_LOG() << "Txn of " << ops << "\n";
        auto t = s->Write();
        ModelTxn mt(&m);
        for (int i = 0; i < ops; ++i) {
          const int op = kind == 1   ? 0
                         : kind == 2 ? 1
                                     : *rc::gen::inRange(0, 4);
          if (op == 0) {
            std::string key = pick.Key(), value = pick.Value();
            int64_t lease = *rc::gen::inRange<int64_t>(0, 3);
            RC_LOG() << "  Put " << Printable(key) << " " << value.size()
                     << "b lease " << lease << "\n";
            RC_ASSERT(t.Put(key, value, lease) == mt.Put(key, value, lease));
          } else if (op == 1) {
            std::string key = pick.Key(), end = pick.End();
            RC_LOG() << "  DeleteRange " << Printable(key) << " "
                     << Printable(end) << "\n";
            RC_ASSERT(t.DeleteRange(key, end) == mt.DeleteRange(key, end));
          } else if (op == 2) {
            std::string key = pick.Key(), end = pick.End();
            RangeOptions o = pick.Options(mt.Rev());
            RC_LOG() << "  Range " << Printable(key) << " " << Printable(end)
                     << " rev=" << o.rev << " limit=" << o.limit << "\n";
            AssertSameRange(t.Range(key, end, o), mt.Range(key, end, o));
          } else {
            // The store read from outside the open transaction.
            std::string key = pick.Key(), end = pick.End();
            RangeOptions o = pick.Options(m.Rev());
            RC_LOG() << "  outside Range " << Printable(key) << " "
                     << Printable(end) << " rev=" << o.rev << "\n";
            AssertSameRange(s->Range(key, end, o),
                            m.Range(key, end, o, m.Rev(), nullptr));
          }
          RC_ASSERT(t.Rev() == mt.Rev());
        }
        RC_ASSERT(t.End() == mt.End());
        break;
      }
      case 4: {
        const int64_t rev = *rc::gen::inRange<int64_t>(
            std::max<int64_t>(m.compact - 1, -1), m.Rev() + 2);
        const bool in_steps = *rc::gen::arbitrary<bool>();
        RC_LOG() << (in_steps ? "StartCompaction " : "Compact ") << rev
                 << "\n";
        absl::Status want = absl::OkStatus();
        if (rev <= m.compact) {
          want = ErrCompacted();
        } else if (rev > m.Rev()) {
          want = ErrFutureRev();
        } else {
          m.compact = rev;
        }
        RC_ASSERT((in_steps ? s->StartCompaction(rev) : s->Compact(rev)) ==
                  want);
        if (!in_steps && want.ok()) RC_ASSERT(!s->compaction_pending());
        AssertWholeStore(*s, m);
        break;
      }
      case 7: {
        const size_t budget = *rc::gen::inRange<size_t>(0, 5);
        RC_LOG() << "CompactStep " << budget << "\n";
        const size_t before = s->revision_count();
        const int64_t removed_before = s->compacted_revisions();
        const bool done = s->CompactStep(budget);
        RC_ASSERT(done == !s->compaction_pending());
        RC_ASSERT(before - s->revision_count() ==
                  static_cast<size_t>(s->compacted_revisions() -
                                      removed_before));
        if (done) RC_ASSERT(s->revision_count() == m.KeptRevisions());
        break;
      }
      case 5: {
        const int64_t from = *rc::gen::inRange<int64_t>(0, m.Rev() + 2);
        const int64_t to = *rc::gen::inRange<int64_t>(from - 1, m.Rev() + 3);
        const size_t max = *rc::gen::inRange<size_t>(0, 6);
        RC_LOG() << "Changes " << from << ".." << to << " max " << max << "\n";
        std::vector<Event> got, want;
        int64_t next_got = -7, next_want = -7;
        absl::Status sg = s->Changes(from, to, max, &got, &next_got);
        absl::Status sw = m.Changes(from, to, max, &want, &next_want);
        RC_ASSERT(sg == sw);
        if (sg.ok()) {
          RC_ASSERT(got == want);
          RC_ASSERT(next_got == next_want);
        }
        break;
      }
      case 6: {
        RC_LOG() << "Snapshot/Restore\n";
        // Hashes before the image (which finishes a pending compaction).
        const uint64_t hash = s->Hash();
        std::vector<uint32_t> by_rev;
        for (int64_t rev = std::max<int64_t>(m.compact, 1); rev <= m.Rev();
             ++rev) {
          auto h = s->HashByRev(rev);
          RC_ASSERT(h.ok());
          by_rev.push_back(h->hash);
        }
        const std::string image = s->Snapshot();
        RC_ASSERT(!s->compaction_pending());
        RC_ASSERT(s->Hash() == hash);
        // The size a writer promises comes from running sums.
        RC_ASSERT(s->BeginImage().size() == image.size());
        auto restored = std::make_unique<KvStore>();
        {
          // Restoring over a non-empty store replaces it.
          auto t = restored->Write();
          t.Put("junk", "junk", 0);
          t.End();
        }
        RC_ASSERT(restored->Restore(image).ok());
        RC_ASSERT(restored->Hash() == s->Hash());
        RC_ASSERT(restored->Snapshot() == image);
        RC_ASSERT(restored->BeginImage().size() == image.size());
        RC_ASSERT(restored->size_bytes() == s->size_bytes());
        for (int64_t rev = std::max<int64_t>(m.compact, 1); rev <= m.Rev();
             ++rev) {
          auto a = s->HashByRev(rev), b = restored->HashByRev(rev);
          RC_ASSERT(a.ok() && b.ok());
          RC_ASSERT(a->hash == b->hash);
          RC_ASSERT(a->hash ==
                    by_rev[static_cast<size_t>(
                        rev - std::max<int64_t>(m.compact, 1))]);
          RC_ASSERT(a->revision == rev);
          RC_ASSERT(a->compact_revision == m.compact);
        }
        // A cut image is refused and leaves the store as it was.
        const size_t cut = *rc::gen::inRange<size_t>(0, image.size());
        RC_ASSERT(restored->Restore(image.substr(0, cut)).code() ==
                  absl::StatusCode::kDataLoss);
        RC_ASSERT(restored->Hash() == s->Hash());
        s = std::move(restored);
        AssertWholeStore(*s, m);
        break;
      }
    }
    // Cheap checks after every step.
    RC_ASSERT(s->Rev() == m.Rev());
    RC_ASSERT(s->key_count() == m.snaps.back().size());
    RangeOptions all;
    AssertSameRange(s->Range("\0"s, "\0"s, all),
                    m.Range("\0"s, "\0"s, all, m.Rev(), nullptr));
  }
  AssertWholeStore(*s, m);
}

RC_GTEST_PROP(KvStoreProperty, MatchesModel, ()) {
  RunSequence(*rc::gen::inRange(1, 60));
}

// Longer runs, so that compaction meets keys with long histories.
RC_GTEST_PROP(KvStoreProperty, MatchesModelLongRuns, ()) {
  RunSequence(*rc::gen::inRange(100, 250));
}

// The model itself must be able to disagree: a store that reports a wrong
// version is caught (guards against a vacuous comparison).
TEST(KvStorePropertyTest, ModelCatchesAWrongVersion) {
  Model m;
  ModelTxn mt(&m);
  mt.Put("a", "1", 0);
  mt.End();
  ModelTxn mt2(&m);
  auto prev = mt2.Put("a", "2", 0);
  ASSERT_TRUE(prev.has_value());
  EXPECT_EQ(prev->version, 1);
  mt2.End();
  KvStore s;
  for (int i = 0; i < 3; ++i) {  // one put too many
    auto t = s.Write();
    t.Put("a", "x", 0);
    t.End();
  }
  auto got = s.Range("a", "", {});
  auto want = m.Range("a", "", {}, m.Rev(), nullptr);
  ASSERT_TRUE(got.ok() && want.ok());
  EXPECT_NE(got->kvs, want->kvs);
}

}  // namespace
}  // namespace detcd::mvcc
