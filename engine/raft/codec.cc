#include "engine/raft/codec.h"

#include <algorithm>
#include <memory>

#include "engine/util/check.h"

namespace detcd::raft {
namespace {

constexpr uint8_t kVersion = 1;
constexpr uint8_t kFlagReject = 1;
constexpr uint8_t kFlagSnapshot = 2;

void PutIds(std::string* out, const std::vector<NodeId>& ids) {
  coding::PutVarint64(out, ids.size());
  for (NodeId id : ids) coding::PutVarint64(out, id);
}

bool GetIds(coding::Reader* r, std::vector<NodeId>* ids) {
  uint64_t n = 0;
  if (!r->GetVarint64(&n) || n > r->remaining()) return false;
  ids->resize(n);
  for (auto& id : *ids) {
    if (!r->GetVarint64(&id) || id == kNone) return false;
  }
  return std::is_sorted(ids->begin(), ids->end()) &&
         std::adjacent_find(ids->begin(), ids->end()) == ids->end();
}

}  // namespace

void EncodeEntry(std::string* out, const Entry& e) {
  coding::PutVarint64(out, e.term);
  coding::PutVarint64(out, e.index);
  out->push_back(static_cast<char>(e.type));
  coding::PutLengthPrefixed(out, e.data);
}

bool DecodeEntry(coding::Reader* r, Entry* e) {
  uint8_t type = 0;
  if (!r->GetVarint64(&e->term) || !r->GetVarint64(&e->index) ||
      !r->GetByte(&type) || type > static_cast<uint8_t>(EntryType::kConfChange)) {
    return false;
  }
  e->type = static_cast<EntryType>(type);
  std::string data;
  if (!r->GetLengthPrefixed(&data)) return false;
  e->data = std::move(data);
  return true;
}

void EncodeConfStateTo(std::string* out, const ConfState& cs) {
  PutIds(out, cs.voters);
  PutIds(out, cs.learners);
}

bool DecodeConfStateFrom(coding::Reader* r, ConfState* cs) {
  return GetIds(r, &cs->voters) && GetIds(r, &cs->learners);
}

namespace {
void EncodeSnapshotMetadata(std::string* out, const SnapshotMetadata& m) {
  coding::PutVarint64(out, m.index);
  coding::PutVarint64(out, m.term);
  EncodeConfStateTo(out, m.conf_state);
}
}  // namespace

void EncodeSnapshot(std::string* out, const Snapshot& s) {
  EncodeSnapshotMetadata(out, s.metadata);
  coding::PutLengthPrefixed(out, s.data);
}

bool DecodeSnapshotView(coding::Reader* r, SnapshotMetadata* m,
                        std::string_view* data) {
  return r->GetVarint64(&m->index) && r->GetVarint64(&m->term) &&
         DecodeConfStateFrom(r, &m->conf_state) && r->GetLengthPrefixed(data);
}

bool DecodeSnapshot(coding::Reader* r, Snapshot* s) {
  std::string_view data;
  if (!DecodeSnapshotView(r, &s->metadata, &data)) return false;
  s->data.assign(data);
  return true;
}

bool DecodeWholeSnapshot(std::string* buf, Snapshot* s) {
  coding::Reader r(*buf);
  std::string_view data;
  if (!DecodeSnapshotView(&r, &s->metadata, &data) || !r.empty()) {
    return false;
  }
  // The data is the tail of *buf: shift it to the front, in place.
  buf->erase(0, static_cast<size_t>(data.data() - buf->data()));
  s->data = std::move(*buf);
  return true;
}

namespace {
// The message's encoding, without the snapshot's data bytes when
// `with_data` is false (its length prefix is there: the data follows).
std::string Encode(const Message& m, bool with_data) {
  std::string out;
  out.reserve(64 + EntriesSize(m.entries) +
              (m.snapshot && with_data ? m.snapshot->data.size() : 0));
  out.push_back(static_cast<char>(kVersion));
  out.push_back(static_cast<char>(m.type));
  coding::PutVarint64(&out, m.to);
  coding::PutVarint64(&out, m.from);
  coding::PutVarint64(&out, m.term);
  coding::PutVarint64(&out, m.log_term);
  coding::PutVarint64(&out, m.index);
  coding::PutVarint64(&out, m.commit);
  uint8_t flags = (m.reject ? kFlagReject : 0) |
                  (m.snapshot ? kFlagSnapshot : 0);
  out.push_back(static_cast<char>(flags));
  coding::PutVarint64(&out, m.reject_hint);
  coding::PutLengthPrefixed(&out, m.context);
  coding::PutVarint64(&out, m.entries.size());
  for (const Entry& e : m.entries) EncodeEntry(&out, e);
  if (m.snapshot == nullptr) return out;
  if (with_data) {
    EncodeSnapshot(&out, *m.snapshot);
  } else {
    EncodeSnapshotMetadata(&out, m.snapshot->metadata);
    coding::PutVarint64(&out, m.snapshot->data.size());
  }
  return out;
}
}  // namespace

std::string EncodeMessage(const Message& m) { return Encode(m, true); }

std::string EncodeMessageHead(const Message& m) {
  DETCD_CHECK(m.snapshot != nullptr);
  return Encode(m, false);
}

absl::StatusOr<Message> DecodeMessage(std::string_view data,
                                      std::string* own) {
  auto bad = [](const char* what) {
    return absl::InvalidArgumentError(
        std::string("malformed raft message: ") + what);
  };
  coding::Reader r(data);
  uint8_t version = 0, type = 0, flags = 0;
  if (!r.GetByte(&version) || version != kVersion) return bad("version");
  if (!r.GetByte(&type) ||
      type > static_cast<uint8_t>(MessageType::kPreVoteResp)) {
    return bad("type");
  }
  Message m;
  m.type = static_cast<MessageType>(type);
  if (IsLocalMessage(m.type)) return bad("local message type on the wire");
  if (!r.GetVarint64(&m.to) || !r.GetVarint64(&m.from) ||
      !r.GetVarint64(&m.term) || !r.GetVarint64(&m.log_term) ||
      !r.GetVarint64(&m.index) || !r.GetVarint64(&m.commit) ||
      !r.GetByte(&flags) || !r.GetVarint64(&m.reject_hint) ||
      !r.GetLengthPrefixed(&m.context)) {
    return bad("header");
  }
  if (flags & ~(kFlagReject | kFlagSnapshot)) return bad("flags");
  m.reject = flags & kFlagReject;
  uint64_t n = 0;
  if (!r.GetVarint64(&n) || n > kMaxEntriesPerMessage || n > r.remaining()) {
    return bad("entry count");
  }
  m.entries.resize(n);
  for (Entry& e : m.entries) {
    if (!DecodeEntry(&r, &e)) return bad("entry");
  }
  std::string_view snap_data;
  std::shared_ptr<Snapshot> s;
  if (flags & kFlagSnapshot) {
    s = std::make_shared<Snapshot>();
    if (!DecodeSnapshotView(&r, &s->metadata, &snap_data)) {
      return bad("snapshot");
    }
  }
  if (!r.empty()) return bad("trailing bytes");
  if (s != nullptr) {
    const bool tail_of_own =
        own != nullptr && !snap_data.empty() &&
        snap_data.data() >= own->data() &&
        snap_data.data() + snap_data.size() == own->data() + own->size();
    if (tail_of_own) {
      own->erase(0, static_cast<size_t>(snap_data.data() - own->data()));
      s->data = std::move(*own);
    } else {
      s->data.assign(snap_data);
    }
    m.snapshot = std::move(s);
  }
  return m;
}

std::optional<AppendFrame> ParseAppendFrame(std::string_view msg) {
  coding::Reader r(msg);
  uint8_t version = 0, type = 0, flags = 0;
  AppendFrame f;
  if (!r.GetByte(&version) || version != kVersion || !r.GetByte(&type) ||
      type != static_cast<uint8_t>(MessageType::kApp) ||
      !r.GetVarint64(&f.to) || !r.GetVarint64(&f.from) ||
      !r.GetVarint64(&f.term) || !r.GetVarint64(&f.log_term) ||
      !r.GetVarint64(&f.index)) {
    return std::nullopt;
  }
  f.head = msg.substr(0, msg.size() - r.remaining());
  uint64_t hint = 0;
  std::string_view context;
  if (!r.GetVarint64(&f.commit) || !r.GetByte(&flags) || flags != 0 ||
      !r.GetVarint64(&hint) || hint != 0 || !r.GetLengthPrefixed(&context) ||
      !context.empty() || !r.GetVarint64(&f.entries) ||
      f.entries > kMaxEntriesPerMessage) {
    return std::nullopt;
  }
  f.entries_data = r.rest();
  f.last_index = f.index;
  f.last_term = f.log_term;
  // Walk the entries: their count and indexes must hold, and the last
  // one's term is what a continuing append names.
  for (uint64_t i = 0; i < f.entries; ++i) {
    uint64_t term = 0, index = 0;
    uint8_t etype = 0;
    std::string_view data;
    if (!r.GetVarint64(&term) || !r.GetVarint64(&index) || !r.GetByte(&etype) ||
        !r.GetLengthPrefixed(&data) || index != f.index + 1 + i) {
      return std::nullopt;
    }
    f.last_index = index;
    f.last_term = term;
  }
  if (!r.empty()) return std::nullopt;
  return f;
}

bool ContinuesAppend(const AppendFrame& prev, const AppendFrame& next) {
  return next.to == prev.to && next.from == prev.from &&
         next.term == prev.term && next.index == prev.last_index &&
         next.log_term == prev.last_term &&
         prev.entries + next.entries <= kMaxEntriesPerMessage;
}

std::string JoinAppends(const std::vector<AppendFrame>& run) {
  DETCD_CHECK(!run.empty());
  uint64_t entries = 0;
  size_t bytes = 0;
  uint64_t commit = 0;
  for (size_t i = 0; i < run.size(); ++i) {
    if (i > 0) DETCD_CHECK(ContinuesAppend(run[i - 1], run[i]));
    entries += run[i].entries;
    bytes += run[i].entries_data.size();
    commit = std::max(commit, run[i].commit);
  }
  std::string out;
  out.reserve(run[0].head.size() + 32 + bytes);
  out.append(run[0].head);
  coding::PutVarint64(&out, commit);
  out.push_back(0);                     // flags
  coding::PutVarint64(&out, 0);         // reject hint
  coding::PutLengthPrefixed(&out, "");  // context
  coding::PutVarint64(&out, entries);
  for (const AppendFrame& f : run) out.append(f.entries_data);
  return out;
}

}  // namespace detcd::raft
