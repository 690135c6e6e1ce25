#include "tests/raft/describe.h"

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace detcd::raft {
namespace {

std::string DescribeId(NodeId id) {
  return id == kNone ? std::string("None") : absl::StrCat(id);
}

absl::string_view AbslView(std::string_view s) {
  return absl::string_view(s.data(), s.size());
}

std::string FormatData(std::string_view data, const DataFormatter& f) {
  return f ? f(data) : DescribeData(data);
}

}  // namespace

std::string DescribeData(std::string_view data) {
  if (data.size() <= kMaxDescribedData) {
    return absl::StrCat("\"", absl::CHexEscape(AbslView(data)), "\"");
  }
  return absl::StrCat("\"", absl::CHexEscape(AbslView(data.substr(0, kMaxDescribedData))),
                      "\"...(", data.size(), " bytes)");
}

const char* EntryTypeName(EntryType t) {
  switch (t) {
    case EntryType::kNormal:
      return "EntryNormal";
    case EntryType::kConfChange:
      return "EntryConfChange";
  }
  return "EntryUnknown";
}

const char* ConfChangeTypeName(ConfChangeType t) {
  switch (t) {
    case ConfChangeType::kAddNode:
      return "AddNode";
    case ConfChangeType::kRemoveNode:
      return "RemoveNode";
    case ConfChangeType::kAddLearnerNode:
      return "AddLearnerNode";
    case ConfChangeType::kUpdateNode:
      return "UpdateNode";
  }
  return "UnknownConfChange";
}

std::string DescribeConfChange(const ConfChange& cc) {
  std::string out = absl::StrCat(ConfChangeTypeName(cc.type), " ", cc.node_id);
  if (!cc.context.empty()) {
    absl::StrAppend(&out, " Context:", DescribeData(cc.context));
  }
  return out;
}

std::string DescribeEntry(const Entry& e, const DataFormatter& f) {
  std::string out =
      absl::StrCat(e.term, "/", e.index, " ", EntryTypeName(e.type), " ");
  if (e.type == EntryType::kConfChange) {
    ConfChange cc;
    if (DecodeConfChange(e.data, &cc)) {
      absl::StrAppend(&out, DescribeConfChange(cc));
    } else {
      absl::StrAppend(&out, "<malformed ", DescribeData(e.data), ">");
    }
  } else {
    absl::StrAppend(&out, FormatData(e.data, f));
  }
  return out;
}

std::string DescribeEntries(const std::vector<Entry>& es, std::string_view sep,
                            const DataFormatter& f) {
  std::string out;
  for (size_t i = 0; i < es.size(); ++i) {
    if (i > 0) out.append(sep);
    absl::StrAppend(&out, DescribeEntry(es[i], f));
  }
  return out;
}

std::string DescribeHardState(const HardState& hs) {
  return absl::StrCat("Term:", hs.term, " Vote:", hs.vote,
                      " Commit:", hs.commit);
}

std::string DescribeSoftState(const SoftState& ss) {
  return absl::StrCat("Lead:", ss.lead, " State:", StateTypeName(ss.state));
}

std::string DescribeConfState(const ConfState& cs) {
  return absl::StrCat("Voters:[", absl::StrJoin(cs.voters, " "),
                      "] Learners:[", absl::StrJoin(cs.learners, " "), "]");
}

std::string DescribeSnapshotMetadata(const SnapshotMetadata& m) {
  return absl::StrCat("Index:", m.index, " Term:", m.term, " ",
                      DescribeConfState(m.conf_state));
}

std::string DescribeSnapshot(const Snapshot& s, const DataFormatter& f) {
  std::string out = DescribeSnapshotMetadata(s.metadata);
  if (!s.data.empty()) absl::StrAppend(&out, " Data:", FormatData(s.data, f));
  return out;
}

std::string DescribeMessage(const Message& m, const DataFormatter& f) {
  std::string out = absl::StrCat(DescribeId(m.from), "->", DescribeId(m.to),
                                 " ", MessageTypeName(m.type), " Term:", m.term,
                                 " Log:", m.log_term, "/", m.index);
  if (m.reject) absl::StrAppend(&out, " Rejected (Hint: ", m.reject_hint, ")");
  if (m.commit != 0) absl::StrAppend(&out, " Commit:", m.commit);
  if (!m.context.empty()) {
    absl::StrAppend(&out, " Context:", DescribeData(m.context));
  }
  if (!m.entries.empty()) {
    absl::StrAppend(&out, " Entries:[", DescribeEntries(m.entries, ", ", f),
                    "]");
  }
  if (m.snapshot != nullptr) {
    absl::StrAppend(&out, " Snapshot: ", DescribeSnapshot(*m.snapshot, f));
  }
  return out;
}

std::string DescribeReadState(const ReadState& rs) {
  return absl::StrCat("Index:", rs.index,
                      " Context:", DescribeData(rs.context));
}

std::string DescribeProgress(const Progress& pr) {
  std::string out = absl::StrCat(ProgressStateName(pr.state),
                                 " match=", pr.match, " next=", pr.next);
  if (pr.is_learner) absl::StrAppend(&out, " learner");
  if (pr.state == ProgressState::kSnapshot) {
    absl::StrAppend(&out, " pendingSnap=", pr.pending_snapshot);
  } else if (pr.IsPaused()) {
    absl::StrAppend(&out, " paused");
  }
  if (!pr.recent_active) absl::StrAppend(&out, " inactive");
  if (pr.inflights.Count() > 0) {
    absl::StrAppend(&out, " inflight=", pr.inflights.Count());
    if (pr.inflights.Full()) absl::StrAppend(&out, "[full]");
  }
  return out;
}

std::string DescribeProgressMap(const std::map<NodeId, Progress>& prs) {
  std::string out;
  for (const auto& [id, pr] : prs) {
    if (!out.empty()) out += "\n";
    absl::StrAppend(&out, id, ": ", DescribeProgress(pr));
  }
  return out;
}

std::string DescribeStatus(const Status& st) {
  std::string out = absl::StrCat(
      "id:", st.id, " ", DescribeSoftState(st.soft_state), "\n",
      "HardState ", DescribeHardState(st.hard_state), " Applied:", st.applied,
      "\n", DescribeConfState(st.conf_state));
  if (st.lead_transferee != kNone) {
    absl::StrAppend(&out, "\nLeadTransferee:", st.lead_transferee);
  }
  if (!st.progress.empty()) {
    absl::StrAppend(&out, "\n", DescribeProgressMap(st.progress));
  }
  return out;
}

std::string DescribeReady(const Ready& rd, const DataFormatter& f) {
  const bool empty = !rd.soft_state && !rd.hard_state && !rd.snapshot &&
                     rd.entries.empty() && rd.committed_entries.empty() &&
                     rd.messages.empty() && rd.early_messages.empty() &&
                     rd.read_states.empty();
  if (empty) return "<empty Ready>";
  std::string out =
      absl::StrCat("Ready MustSync=", rd.must_sync ? "true" : "false", ":");
  if (rd.soft_state) {
    absl::StrAppend(&out, "\n", DescribeSoftState(*rd.soft_state));
  }
  if (rd.hard_state) {
    absl::StrAppend(&out, "\nHardState ", DescribeHardState(*rd.hard_state));
  }
  if (rd.snapshot) {
    absl::StrAppend(&out, "\nSnapshot ", DescribeSnapshot(*rd.snapshot, f));
  }
  if (!rd.entries.empty()) {
    absl::StrAppend(&out, "\nEntries:\n",
                    DescribeEntries(rd.entries, "\n", f));
  }
  if (!rd.committed_entries.empty()) {
    absl::StrAppend(&out, "\nCommittedEntries:\n",
                    DescribeEntries(rd.committed_entries, "\n", f));
  }
  if (!rd.early_messages.empty()) {
    absl::StrAppend(&out, "\nEarlyMessages:");
    for (const Message& m : rd.early_messages) {
      absl::StrAppend(&out, "\n", DescribeMessage(m, f));
    }
  }
  if (!rd.messages.empty()) {
    absl::StrAppend(&out, "\nMessages:");
    for (const Message& m : rd.messages) {
      absl::StrAppend(&out, "\n", DescribeMessage(m, f));
    }
  }
  if (!rd.read_states.empty()) {
    absl::StrAppend(&out, "\nReadStates:");
    for (const ReadState& rs : rd.read_states) {
      absl::StrAppend(&out, "\n", DescribeReadState(rs));
    }
  }
  return out;
}

}  // namespace detcd::raft
