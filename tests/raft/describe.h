// Human-readable, deterministic one-line (or, for a Ready, multi-line)
// descriptions of Raft's values, for golden-output scenario tests
// (tests/raft/testdata) and simulator traces. The output depends only on the
// values described: no addresses, no hash-map order, no clock. Maps are
// printed in key order.
//
// Formats (the scenario tests' golden files depend on them, so change them
// only together with a rewrite of those files):
//
//   Entry       1/11 EntryNormal "foo"
//               2/12 EntryConfChange AddNode 4
//   Message     1->2 MsgApp Term:1 Log:1/10 Commit:10 Entries:[1/11 EntryNormal "foo"]
//               2->1 MsgAppResp Term:1 Log:1/8 Rejected (Hint: 8)
//               1->3 MsgSnap Term:2 Log:0/0 Snapshot: Index:12 Term:2 Voters:[1 2 3] Learners:[]
//   HardState   Term:1 Vote:1 Commit:10
//   SoftState   Lead:1 State:StateLeader
//   ConfState   Voters:[1 2 3] Learners:[4]
//   Snapshot    Index:10 Term:1 Voters:[1 2 3] Learners:[]
//   Progress    StateReplicate match=11 next=12 inflight=1
//   ReadState   Index:11 Context:"ctx"
//
// Entry payloads are printed C-escaped and quoted; a payload longer than
// kMaxDescribedData bytes is cut, with its full size appended, so traces stay
// readable. Pass a DataFormatter to print payloads differently (e.g. decode
// an application's request encoding).
#ifndef DETCD_TESTS_RAFT_DESCRIBE_H_
#define DETCD_TESTS_RAFT_DESCRIBE_H_

#include <cstddef>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "engine/raft/progress.h"
#include "engine/raft/raft.h"
#include "engine/raft/types.h"

namespace detcd::raft {

inline constexpr size_t kMaxDescribedData = 64;

// Formats the data of a normal entry (conf change entries are decoded).
using DataFormatter = std::function<std::string(std::string_view data)>;

// The default payload format: "C-escaped", cut after kMaxDescribedData
// bytes as "first bytes"...(N bytes).
std::string DescribeData(std::string_view data);

const char* EntryTypeName(EntryType t);
const char* ConfChangeTypeName(ConfChangeType t);

std::string DescribeConfChange(const ConfChange& cc);
std::string DescribeEntry(const Entry& e, const DataFormatter& f = nullptr);
// Entries joined by sep.
std::string DescribeEntries(const std::vector<Entry>& es,
                            std::string_view sep = " ",
                            const DataFormatter& f = nullptr);
std::string DescribeHardState(const HardState& hs);
std::string DescribeSoftState(const SoftState& ss);
std::string DescribeConfState(const ConfState& cs);
std::string DescribeSnapshotMetadata(const SnapshotMetadata& m);
// The metadata, and the data through DescribeData (or f) when not empty.
std::string DescribeSnapshot(const Snapshot& s,
                             const DataFormatter& f = nullptr);
std::string DescribeMessage(const Message& m, const DataFormatter& f = nullptr);
std::string DescribeReadState(const ReadState& rs);
std::string DescribeProgress(const Progress& pr);
// One line per member, "id: <progress>", in id order.
std::string DescribeProgressMap(const std::map<NodeId, Progress>& prs);
// Several lines: id, soft and hard state, applied index, configuration,
// transferee, and the progress of every member when leader.
std::string DescribeStatus(const Status& st);
// Several lines, no trailing newline:
//   Ready MustSync=true:
//   Lead:1 State:StateLeader          (when soft_state is set)
//   HardState Term:1 Vote:1 Commit:10 (when hard_state is set)
//   Snapshot Index:...                (when snapshot is set)
//   Entries:            followed by one entry per line
//   CommittedEntries:   followed by one entry per line
//   Messages:           followed by one message per line
//   ReadStates:         followed by one read state per line
// Empty sections are left out. An empty Ready is "<empty Ready>".
std::string DescribeReady(const Ready& rd, const DataFormatter& f = nullptr);

}  // namespace detcd::raft

#endif  // DETCD_TESTS_RAFT_DESCRIBE_H_
