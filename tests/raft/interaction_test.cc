// Data-driven scenario tests with golden output (in the spirit of
// etcd-io/raft's interaction tests; our own interpreter and scripts).
//
// Every tests/raft/testdata/*.txt is a script of blocks:
//
//   # comment lines and blank lines are kept as they are
//   command arg key=value ...     (one or more command lines)
//   ----
//   expected output (no blank lines; every command prints something)
//
// Blocks are separated by a blank line. The commands drive a cluster of
// raft::Raft instances, each with its own MemoryStorage, over a scripted
// network that only moves messages when told to (deliver-msgs, stabilize).
// The owner side follows the Ready contract in raft.h: persist snapshot,
// entries and hard state, queue messages, apply committed entries (conf
// changes through ApplyConfChange), Advance.
//
// A node that must send a snapshot sends its application's state at its
// applied index (see AppStorage), as a real server would.
//
// Elections are deterministic: every node's Rng always yields 0, so its
// randomized election timeout is exactly election_tick, and tick-election
// ticks that many times (set-randomized-election-timeout overrides it until
// the node next resets its timer).
//
// Commands:
//   add-nodes N [voters=(1,2,3)] [learners=(4)] [index=I] [prevote=true]
//       [checkquorum=true] [election-tick=10] [heartbeat-tick=1]
//       [max-inflight=256] [max-size-per-msg=B] [max-learner-lag=L]
//       [max-uncommitted-size=B]
//     Adds N nodes with the next free ids. With voters/learners, they start
//     as founding members of that configuration; with index=I their storage
//     starts from a snapshot at index I (term 1). Without a configuration a
//     node starts empty (a member-to-be, added later by a conf change).
//     pre-vote and check-quorum are off unless asked for.
//   campaign ID | propose ID DATA | read-index ID CTX
//   propose-conf-change ID add|remove|add-learner NODE
//   transfer-leader FROM TO          (FROM asks for a transfer to TO)
//   tick-election ID | tick-heartbeat ID | tick ID N
//   set-randomized-election-timeout ID T
//   process-ready ID...
//   deliver-msgs [ID...] [drop=true] [type=MsgApp]
//     Delivers (or drops) the queued messages addressed to the IDs (all
//     nodes if none given), in the order they were sent; with type=, only
//     messages of that type.
//   stabilize [ID...]   handles Readies and delivers messages among the IDs
//                       (all nodes if none given) until nothing moves
//   status ID | raft-log ID | raft-state | state-machine [ID...]
//   partition 1 | 2 3   messages between groups are dropped on delivery;
//                       unlisted nodes form one more group
//   heal
//   compact ID INDEX    snapshot ID's state machine at INDEX (<= applied)
//                       and compact its storage up to it
//   report-unreachable ID PEER | report-snapshot ID PEER [failed=true]
//
// Safety is checked as the scripts run: at most one leader per term, and
// every node applies the same entry at the same index.
//
// REWRITE=1 in the environment regenerates the expected output in place.
// Read every regenerated file before committing it: a golden file that
// records a bug is worse than none.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "engine/env/env.h"
#include "tests/raft/describe.h"
#include "engine/raft/raft.h"
#include "engine/raft/storage.h"
#include "engine/raft/types.h"

namespace detcd::raft {
namespace {

constexpr int kMaxStabilizeRounds = 1000;

// Every draw is 0, so every randomized election timeout is election_tick.
class ZeroRng final : public env::Rng {
 public:
  uint64_t Next() override { return 0; }
};

// ---- command lines ----

struct Command {
  std::string name;
  std::vector<std::string> args;            // positional
  std::map<std::string, std::string> opts;  // key=value
  std::string line;
};

// Splits on whitespace, keeping parenthesized lists ("(1, 2)") together.
std::vector<std::string> Tokenize(const std::string& line) {
  std::vector<std::string> out;
  std::string cur;
  int depth = 0;
  for (char c : line) {
    if (c == '(') ++depth;
    if (c == ')' && depth > 0) --depth;
    if ((c == ' ' || c == '\t') && depth == 0) {
      if (!cur.empty()) out.push_back(std::move(cur));
      cur.clear();
      continue;
    }
    cur.push_back(c);
  }
  if (!cur.empty()) out.push_back(std::move(cur));
  return out;
}

Command ParseCommand(const std::string& line) {
  Command c;
  c.line = line;
  std::vector<std::string> toks = Tokenize(line);
  if (toks.empty()) return c;
  c.name = toks[0];
  for (size_t i = 1; i < toks.size(); ++i) {
    const std::string& t = toks[i];
    size_t eq = t.find('=');
    if (eq != std::string::npos && eq > 0) {
      c.opts[t.substr(0, eq)] = t.substr(eq + 1);
    } else {
      c.args.push_back(t);
    }
  }
  return c;
}

// A command that cannot run as written; reported as the block's output.
struct ScriptError {
  std::string what;
};

uint64_t ParseUint(const std::string& s) {
  uint64_t v = 0;
  if (!absl::SimpleAtoi(s, &v)) throw ScriptError{"not a number: " + s};
  return v;
}

bool ParseBool(const std::string& s) {
  if (s == "true") return true;
  if (s == "false") return false;
  throw ScriptError{"not a bool: " + s};
}

// "(1,2,3)", "(1 2 3)" or "()" -> {1, 2, 3}.
std::vector<NodeId> ParseIdList(const std::string& s) {
  absl::string_view v = s;
  if (!absl::ConsumePrefix(&v, "(") || !absl::ConsumeSuffix(&v, ")")) {
    throw ScriptError{"not a list: " + s};
  }
  std::vector<NodeId> ids;
  for (absl::string_view part :
       absl::StrSplit(v, absl::ByAnyChar(", "), absl::SkipEmpty())) {
    ids.push_back(ParseUint(std::string(part)));
  }
  std::sort(ids.begin(), ids.end());
  return ids;
}

std::string StatusLine(const absl::Status& s) {
  return s.ok() ? std::string("ok") : absl::StrCat("error: ", s.ToString());
}

std::string Indent(const std::string& s) {
  std::string out;
  for (absl::string_view line : absl::StrSplit(s, '\n')) {
    if (!out.empty()) out += "\n";
    absl::StrAppend(&out, "  ", line);
  }
  return out;
}

void AppendLine(std::string* out, const std::string& line) {
  if (!out->empty()) out->push_back('\n');
  out->append(line);
}

// ---- the cluster ----

// A node's storage as Raft sees it: its MemoryStorage, except that the
// snapshot handed out (to send to a follower that is too far behind) is the
// application's current state at its applied index, as a real server's
// would be, rather than whatever snapshot the storage was last compacted
// to. That way a member added after the last compaction receives a
// snapshot whose configuration includes it.
class AppStorage final : public Storage {
 public:
  AppStorage(MemoryStorage* mem, std::function<Snapshot()> current)
      : mem_(mem), current_(std::move(current)) {}
  HardState InitialHardState() const override {
    return mem_->InitialHardState();
  }
  ConfState InitialConfState() const override {
    return mem_->InitialConfState();
  }
  absl::StatusOr<std::vector<Entry>> Entries(uint64_t lo, uint64_t hi,
                                             uint64_t max_bytes) const override {
    return mem_->Entries(lo, hi, max_bytes);
  }
  absl::StatusOr<uint64_t> Term(uint64_t i) const override {
    return mem_->Term(i);
  }
  uint64_t FirstIndex() const override { return mem_->FirstIndex(); }
  uint64_t LastIndex() const override { return mem_->LastIndex(); }
  absl::StatusOr<Snapshot> GetSnapshot() const override {
    Snapshot s = current_();
    if (s.metadata.index <= mem_->snapshot().metadata.index) {
      return mem_->GetSnapshot();
    }
    return s;
  }

 private:
  MemoryStorage* mem_;
  std::function<Snapshot()> current_;
};

class Cluster {
 public:
  std::string Run(const Command& c) {
    try {
      std::string out = Dispatch(c);
      CheckSafety(&out);
      return out;
    } catch (const ScriptError& e) {
      return "script error: " + e.what;
    }
  }

  // Safety violations found so far (each is also in a command's output).
  const std::vector<std::string>& violations() const { return violations_; }

 private:
  struct Node {
    NodeId id = kNone;
    std::unique_ptr<MemoryStorage> storage;
    std::unique_ptr<AppStorage> app_storage;
    std::unique_ptr<ZeroRng> rng;
    std::unique_ptr<Raft> raft;  // after storage and rng: destroyed first
    uint64_t applied = 0;
    // The state machine: the data of applied normal entries, joined by ','.
    // sm_history holds (index, state after that index), so a snapshot can
    // be taken at any applied index.
    std::vector<std::pair<uint64_t, std::string>> sm_history;
    // (index, configuration after applying that index).
    std::vector<std::pair<uint64_t, ConfState>> conf_history;
  };

  std::string Dispatch(const Command& c) {
    const std::string& n = c.name;
    if (n == "add-nodes") return AddNodes(c);
    if (n == "campaign") return StatusLine(Get(Arg(c, 0))->raft->Campaign());
    if (n == "propose") {
      return StatusLine(Get(Arg(c, 0))->raft->Propose(ArgStr(c, 1)));
    }
    if (n == "propose-conf-change") return ProposeConfChange(c);
    if (n == "read-index") {
      return StatusLine(Get(Arg(c, 0))->raft->ReadIndex(ArgStr(c, 1)));
    }
    if (n == "transfer-leader") {
      Node* from = Get(Arg(c, 0));
      from->raft->TransferLeader(Arg(c, 1));
      return "ok";
    }
    if (n == "tick-election") {
      Node* nd = Get(Arg(c, 0));
      return Tick(nd, nd->raft->config().election_tick);
    }
    if (n == "tick-heartbeat") {
      Node* nd = Get(Arg(c, 0));
      return Tick(nd, nd->raft->config().heartbeat_tick);
    }
    if (n == "tick") return Tick(Get(Arg(c, 0)), static_cast<int>(Arg(c, 1)));
    if (n == "set-randomized-election-timeout") {
      Get(Arg(c, 0))->raft->set_randomized_election_timeout(
          static_cast<int>(Arg(c, 1)));
      return "ok";
    }
    if (n == "process-ready") return ProcessReadyCmd(c);
    if (n == "deliver-msgs") return DeliverMsgsCmd(c);
    if (n == "stabilize") return Stabilize(c);
    if (n == "status") return DescribeStatus(Get(Arg(c, 0))->raft->GetStatus());
    if (n == "raft-log") return RaftLogCmd(Get(Arg(c, 0)));
    if (n == "raft-state") return RaftState();
    if (n == "state-machine") return StateMachine(c);
    if (n == "partition") return Partition(c);
    if (n == "heal") {
      group_.clear();
      return "ok";
    }
    if (n == "compact") return Compact(Get(Arg(c, 0)), Arg(c, 1));
    if (n == "report-unreachable") {
      Get(Arg(c, 0))->raft->ReportUnreachable(Arg(c, 1));
      return "ok";
    }
    if (n == "report-snapshot") {
      bool failed = c.opts.count("failed") && ParseBool(c.opts.at("failed"));
      Get(Arg(c, 0))->raft->ReportSnapshot(Arg(c, 1), failed);
      return "ok";
    }
    throw ScriptError{"unknown command: " + n};
  }

  static const std::string& ArgStr(const Command& c, size_t i) {
    if (i >= c.args.size()) {
      throw ScriptError{absl::StrCat(c.name, ": missing argument ", i + 1)};
    }
    return c.args[i];
  }
  static uint64_t Arg(const Command& c, size_t i) {
    return ParseUint(ArgStr(c, i));
  }

  Node* Get(NodeId id) {
    auto it = nodes_.find(id);
    if (it == nodes_.end()) throw ScriptError{absl::StrCat("no node ", id)};
    return &it->second;
  }

  // Node ids from the positional args, or every node if there are none.
  std::vector<NodeId> IdsOrAll(const Command& c) {
    std::vector<NodeId> ids;
    for (size_t i = 0; i < c.args.size(); ++i) {
      ids.push_back(Arg(c, i));
      Get(ids.back());
    }
    if (ids.empty()) {
      for (const auto& [id, nd] : nodes_) ids.push_back(id);
    }
    return ids;
  }

  std::string AddNodes(const Command& c) {
    uint64_t count = Arg(c, 0);
    std::optional<ConfState> cs;
    uint64_t index = 0;
    Config base;
    base.election_tick = 10;
    base.heartbeat_tick = 1;
    base.pre_vote = false;
    base.check_quorum = false;
    for (const auto& [k, v] : c.opts) {
      if (k == "voters") {
        if (!cs) cs.emplace();
        cs->voters = ParseIdList(v);
      } else if (k == "learners") {
        if (!cs) cs.emplace();
        cs->learners = ParseIdList(v);
      } else if (k == "index") {
        index = ParseUint(v);
      } else if (k == "prevote") {
        base.pre_vote = ParseBool(v);
      } else if (k == "checkquorum") {
        base.check_quorum = ParseBool(v);
      } else if (k == "election-tick") {
        base.election_tick = static_cast<int>(ParseUint(v));
      } else if (k == "heartbeat-tick") {
        base.heartbeat_tick = static_cast<int>(ParseUint(v));
      } else if (k == "max-inflight") {
        base.max_inflight_msgs = static_cast<int>(ParseUint(v));
      } else if (k == "max-size-per-msg") {
        base.max_size_per_msg = ParseUint(v);
      } else if (k == "max-learner-lag") {
        base.max_learner_lag = ParseUint(v);
      } else if (k == "max-uncommitted-size") {
        base.max_uncommitted_entries_size = ParseUint(v);
      } else {
        throw ScriptError{"add-nodes: unknown option " + k};
      }
    }
    if (index > 0 && !cs) {
      throw ScriptError{"add-nodes: index= needs voters="};
    }
    std::string out;
    NodeId next_id = nodes_.empty() ? 1 : nodes_.rbegin()->first + 1;
    for (uint64_t k = 0; k < count; ++k) {
      Node nd;
      nd.id = next_id + k;
      nd.storage = std::make_unique<MemoryStorage>();
      nd.rng = std::make_unique<ZeroRng>();
      ConfState initial = cs.value_or(ConfState{});
      if (index > 0) {
        Snapshot snap;
        snap.metadata.index = index;
        snap.metadata.term = 1;
        snap.metadata.conf_state = initial;
        absl::Status s = nd.storage->ApplySnapshot(snap);
        if (!s.ok()) throw ScriptError{s.ToString()};
      } else if (cs) {
        nd.storage->SetInitialConfState(initial);
      }
      nd.applied = index;
      nd.sm_history.push_back({index, ""});
      nd.conf_history.push_back({index, initial});
      const NodeId id = nd.id;
      nd.app_storage = std::make_unique<AppStorage>(
          nd.storage.get(), [this, id] { return CurrentSnapshot(id); });
      Config cfg = base;
      cfg.id = nd.id;
      cfg.storage = nd.app_storage.get();
      cfg.rng = nd.rng.get();
      absl::Status valid = cfg.Validate();
      if (!valid.ok()) throw ScriptError{valid.ToString()};
      nd.raft = std::make_unique<Raft>(cfg);
      AppendLine(&out, absl::StrCat(nd.id, ": ", DescribeConfState(initial),
                                    " FirstIndex:", nd.storage->FirstIndex(),
                                    " LastIndex:", nd.storage->LastIndex()));
      nodes_.emplace(nd.id, std::move(nd));
    }
    return out;
  }

  std::string ProposeConfChange(const Command& c) {
    Node* nd = Get(Arg(c, 0));
    ConfChange cc;
    const std::string& type = ArgStr(c, 1);
    if (type == "add") {
      cc.type = ConfChangeType::kAddNode;
    } else if (type == "remove") {
      cc.type = ConfChangeType::kRemoveNode;
    } else if (type == "add-learner") {
      cc.type = ConfChangeType::kAddLearnerNode;
    } else {
      throw ScriptError{"unknown conf change type " + type};
    }
    cc.node_id = Arg(c, 2);
    return StatusLine(nd->raft->ProposeConfChange(cc));
  }

  std::string Tick(Node* nd, int n) {
    for (int i = 0; i < n; ++i) nd->raft->Tick();
    return "ok";
  }

  // ---- Ready handling (the owner's side of the contract) ----

  std::string ProcessReadyCmd(const Command& c) {
    std::vector<NodeId> ids = IdsOrAll(c);
    if (ids.size() == 1) return ProcessReady(Get(ids[0]));
    std::string out;
    for (NodeId id : ids) {
      AppendLine(&out, absl::StrCat("> ", id, " handling Ready"));
      AppendLine(&out, Indent(ProcessReady(Get(id))));
    }
    return out;
  }

  std::string ProcessReady(Node* nd) {
    Raft& r = *nd->raft;
    if (!r.HasReady()) return "<empty Ready>";
    Ready rd = r.GetReady();
    std::string out = DescribeReady(rd);
    // 1. The snapshot, then 2. entries and hard state.
    if (rd.snapshot) {
      absl::Status s = nd->storage->ApplySnapshot(*rd.snapshot);
      if (!s.ok()) {
        AppendLine(&out, "error: applying snapshot: " + s.ToString());
      }
      const SnapshotMetadata& md = rd.snapshot->metadata;
      nd->applied = md.index;
      nd->sm_history.assign(1, {md.index, rd.snapshot->data});
      nd->conf_history.assign(1, {md.index, md.conf_state});
    }
    if (!rd.entries.empty()) {
      absl::Status s = nd->storage->Append(rd.entries);
      if (!s.ok()) AppendLine(&out, "error: appending: " + s.ToString());
    }
    if (rd.hard_state) nd->storage->SetHardState(*rd.hard_state);
    // 3. Send (the early messages may leave before 2; after is fine too).
    for (Message& m : rd.early_messages) net_.push_back(std::move(m));
    for (Message& m : rd.messages) net_.push_back(std::move(m));
    // 4. Apply.
    for (const Entry& e : rd.committed_entries) {
      if (e.index != nd->applied + 1) {
        AppendLine(&out, absl::StrCat("error: applying index ", e.index,
                                      " after ", nd->applied));
      }
      RecordApplied(nd->id, e, &out);
      nd->applied = e.index;
      std::string state = nd->sm_history.back().second;
      if (e.type == EntryType::kNormal && !e.data.empty()) {
        if (!state.empty()) state += ",";
        state += e.data;
      }
      nd->sm_history.push_back({e.index, std::move(state)});
      if (e.type == EntryType::kConfChange) {
        ConfChange cc;
        if (!DecodeConfChange(e.data, &cc)) {
          AppendLine(&out, absl::StrCat("error: malformed conf change at ",
                                        e.index));
          continue;
        }
        ConfState now = r.ApplyConfChange(cc);
        nd->conf_history.push_back({e.index, now});
        AppendLine(&out, absl::StrCat("applied ", DescribeConfChange(cc),
                                      ": ", DescribeConfState(now)));
      }
    }
    // 5. Advance.
    r.Advance(rd);
    return out;
  }

  // ---- the network ----

  bool Connected(NodeId a, NodeId b) const {
    if (group_.empty()) return true;
    auto ga = group_.find(a);
    auto gb = group_.find(b);
    int x = ga == group_.end() ? -1 : ga->second;
    int y = gb == group_.end() ? -1 : gb->second;
    return x == y;
  }

  std::string DeliverMsgsCmd(const Command& c) {
    bool drop = c.opts.count("drop") && ParseBool(c.opts.at("drop"));
    std::optional<std::string> type;
    if (c.opts.count("type")) type = c.opts.at("type");
    for (const auto& [k, v] : c.opts) {
      if (k != "drop" && k != "type") {
        throw ScriptError{"deliver-msgs: unknown option " + k};
      }
    }
    std::string out;
    for (NodeId id : IdsOrAll(c)) {
      std::string o = Deliver(id, drop, type);
      if (!o.empty()) AppendLine(&out, o);
    }
    return out.empty() ? "no messages" : out;
  }

  bool HasMessagesFor(NodeId id) const {
    for (const Message& m : net_) {
      if (m.to == id) return true;
    }
    return false;
  }

  // Delivers (or drops) the queued messages to `to`, in order.
  std::string Deliver(NodeId to, bool drop,
                      const std::optional<std::string>& type) {
    std::vector<Message> mine;
    std::vector<Message> rest;
    for (Message& m : net_) {
      if (m.to == to && (!type || *type == MessageTypeName(m.type))) {
        mine.push_back(std::move(m));
      } else {
        rest.push_back(std::move(m));
      }
    }
    net_ = std::move(rest);
    std::string out;
    Node* nd = Get(to);
    for (Message& m : mine) {
      std::string desc = DescribeMessage(m);
      if (drop) {
        AppendLine(&out, "dropped: " + desc);
        continue;
      }
      if (!Connected(m.from, m.to)) {
        AppendLine(&out, "dropped (partition): " + desc);
        continue;
      }
      AppendLine(&out, desc);
      absl::Status s = nd->raft->Step(std::move(m));
      if (!s.ok()) AppendLine(&out, "  error: " + s.ToString());
    }
    return out;
  }

  std::string Stabilize(const Command& c) {
    std::vector<NodeId> ids = IdsOrAll(c);
    std::string out;
    for (int round = 0; round < kMaxStabilizeRounds; ++round) {
      bool moved = false;
      for (NodeId id : ids) {
        Node* nd = Get(id);
        if (!nd->raft->HasReady()) continue;
        moved = true;
        AppendLine(&out, absl::StrCat("> ", id, " handling Ready"));
        AppendLine(&out, Indent(ProcessReady(nd)));
      }
      for (NodeId id : ids) {
        if (!HasMessagesFor(id)) continue;
        moved = true;
        AppendLine(&out, absl::StrCat("> ", id, " receiving messages"));
        AppendLine(&out, Indent(Deliver(id, false, std::nullopt)));
      }
      if (!moved) return out.empty() ? "ok (nothing to do)" : out;
    }
    AppendLine(&out, absl::StrCat("error: not stable after ",
                                  kMaxStabilizeRounds, " rounds"));
    return out;
  }

  std::string Partition(const Command& c) {
    group_.clear();
    int g = 0;
    std::vector<std::string> groups(1);
    for (const std::string& a : c.args) {
      if (a == "|") {
        ++g;
        groups.emplace_back();
        continue;
      }
      NodeId id = ParseUint(a);
      Get(id);
      if (group_.count(id)) throw ScriptError{"node listed twice: " + a};
      group_[id] = g;
      if (!groups.back().empty()) groups.back() += " ";
      groups.back() += a;
    }
    std::string rest;
    for (const auto& [id, nd] : nodes_) {
      if (!group_.count(id)) absl::StrAppend(&rest, rest.empty() ? "" : " ", id);
    }
    if (!rest.empty()) groups.push_back(rest);
    std::string out = "partitioned:";
    for (const std::string& grp : groups) absl::StrAppend(&out, " [", grp, "]");
    return out;
  }

  // ---- storage and introspection ----

  // The state machine and configuration of a node as of index (<= applied).
  static std::pair<std::string, ConfState> StateAt(const Node& nd,
                                                   uint64_t index) {
    std::string data;
    for (const auto& [i, s] : nd.sm_history) {
      if (i <= index) data = s;
    }
    ConfState cs;
    for (const auto& [i, c] : nd.conf_history) {
      if (i <= index) cs = c;
    }
    return {data, cs};
  }

  Snapshot CurrentSnapshot(NodeId id) {
    const Node& nd = nodes_.at(id);
    Snapshot s;
    s.metadata.index = nd.applied;
    auto t = nd.storage->Term(nd.applied);
    s.metadata.term = t.ok() ? *t : 0;
    std::tie(s.data, s.metadata.conf_state) = StateAt(nd, nd.applied);
    return s;
  }

  std::string Compact(Node* nd, uint64_t index) {
    if (index > nd->applied) {
      throw ScriptError{absl::StrCat("compact: index ", index,
                                     " is beyond applied index ",
                                     nd->applied)};
    }
    auto [data, cs] = StateAt(*nd, index);
    auto snap = nd->storage->CreateSnapshot(index, &cs, data);
    if (!snap.ok()) return StatusLine(snap.status());
    absl::Status s = nd->storage->Compact(index);
    if (!s.ok()) return StatusLine(s);
    return absl::StrCat("snapshot ", DescribeSnapshot(*snap), "\n",
                        RaftLogCmd(nd));
  }

  std::string RaftLogCmd(Node* nd) {
    const MemoryStorage& st = *nd->storage;
    uint64_t first = st.FirstIndex();
    uint64_t last = st.LastIndex();
    if (last < first) {
      return absl::StrCat("log is empty: first index=", first,
                          ", last index=", last);
    }
    auto ents = st.Entries(first, last + 1, UINT64_MAX);
    if (!ents.ok()) return StatusLine(ents.status());
    return DescribeEntries(*ents, "\n");
  }

  std::string RaftState() {
    std::string out;
    for (const auto& [id, nd] : nodes_) {
      const Raft& r = *nd.raft;
      const char* role = r.tracker().IsVoter(id)           ? "Voter"
                         : r.tracker().learners().count(id) ? "Learner"
                                                             : "Non-Member";
      AppendLine(&out, absl::StrCat(id, ": ", StateTypeName(r.state()), " (",
                                    role, ") Term:", r.term(),
                                    " Lead:", r.lead()));
    }
    return out;
  }

  std::string StateMachine(const Command& c) {
    std::string out;
    for (NodeId id : IdsOrAll(c)) {
      Node* nd = Get(id);
      AppendLine(&out, absl::StrCat(id, ": applied=", nd->applied, " data=[",
                                    nd->sm_history.back().second, "]"));
    }
    return out;
  }

  // ---- safety ----

  void RecordApplied(NodeId id, const Entry& e, std::string* out) {
    auto [it, inserted] = applied_.emplace(e.index, e);
    if (!inserted && !(it->second == e)) {
      Violation(absl::StrCat("node ", id, " applied ", DescribeEntry(e),
                             " but another node applied ",
                             DescribeEntry(it->second)),
                out);
    }
  }

  void CheckSafety(std::string* out) {
    for (const auto& [id, nd] : nodes_) {
      if (nd.raft->state() != StateType::kLeader) continue;
      auto [it, inserted] = leaders_.emplace(nd.raft->term(), id);
      if (!inserted && it->second != id) {
        Violation(absl::StrCat("two leaders in term ", nd.raft->term(), ": ",
                               it->second, " and ", id),
                  out);
      }
    }
  }

  void Violation(const std::string& what, std::string* out) {
    violations_.push_back(what);
    AppendLine(out, "SAFETY VIOLATION: " + what);
  }

  std::map<NodeId, Node> nodes_;
  std::vector<Message> net_;  // in flight, in send order
  std::map<NodeId, int> group_;  // partition groups; empty = connected
  std::map<uint64_t, Entry> applied_;  // index -> entry applied there
  std::map<uint64_t, NodeId> leaders_;  // term -> its leader
  std::vector<std::string> violations_;
};

// ---- script files ----

struct Block {
  int line = 0;  // 1-based line of the first command
  std::vector<std::string> commands;
  std::vector<std::string> expected;
};

// A script is a sequence of verbatim lines (comments, blank lines) and
// blocks, kept in order so a rewrite reproduces everything but the output.
struct Item {
  std::optional<std::string> verbatim;
  std::optional<Block> block;
};

std::vector<Item> ParseScript(const std::string& text, std::string* err) {
  std::vector<std::string> lines = absl::StrSplit(text, '\n');
  if (!lines.empty() && lines.back().empty()) lines.pop_back();
  std::vector<Item> items;
  size_t i = 0;
  while (i < lines.size()) {
    const std::string& l = lines[i];
    if (l.empty() || l[0] == '#') {
      items.push_back({l, std::nullopt});
      ++i;
      continue;
    }
    Block b;
    b.line = static_cast<int>(i) + 1;
    while (i < lines.size() && lines[i] != "----") {
      if (lines[i].empty()) {
        *err = absl::StrCat("line ", i + 1, ": blank line before ----");
        return {};
      }
      b.commands.push_back(lines[i]);
      ++i;
    }
    if (i == lines.size()) {
      *err = absl::StrCat("line ", b.line, ": block without ----");
      return {};
    }
    ++i;  // ----
    while (i < lines.size() && !lines[i].empty()) {
      b.expected.push_back(lines[i]);
      ++i;
    }
    items.push_back({std::nullopt, std::move(b)});
  }
  return items;
}

std::filesystem::path TestdataDir() {
  std::filesystem::path rel = "tests/raft/testdata";
  if (std::filesystem::is_directory(rel)) return rel;
  // Run from elsewhere than the repo root: fall back to the source tree.
  return std::filesystem::path(__FILE__).parent_path() / "testdata";
}

std::vector<std::string> ListScripts() {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(TestdataDir(), ec)) {
    if (e.is_regular_file() && e.path().extension() == ".txt") {
      out.push_back(e.path().filename().string());
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::string ReadFile(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

class InteractionTest : public testing::TestWithParam<std::string> {};

TEST_P(InteractionTest, Script) {
  const std::filesystem::path path = TestdataDir() / GetParam();
  const bool rewrite = std::getenv("REWRITE") != nullptr &&
                       std::string(std::getenv("REWRITE")) == "1";
  std::string err;
  std::vector<Item> items = ParseScript(ReadFile(path), &err);
  ASSERT_TRUE(err.empty()) << path << ": " << err;

  Cluster cluster;
  std::string rewritten;
  for (Item& item : items) {
    if (item.verbatim) {
      rewritten += *item.verbatim + "\n";
      continue;
    }
    Block& b = *item.block;
    std::string actual;
    for (const std::string& cmd : b.commands) {
      AppendLine(&actual, cluster.Run(ParseCommand(cmd)));
    }
    std::vector<std::string> lines = absl::StrSplit(actual, '\n');
    for (std::string& l : lines) {
      // A blank line would end the block; none is ever produced.
      EXPECT_FALSE(l.empty()) << path << ":" << b.line << ": blank line in "
                              << "the output of " << b.commands[0];
      if (l.empty()) l = ".";
    }
    actual = absl::StrJoin(lines, "\n");
    if (rewrite) {
      rewritten += absl::StrJoin(b.commands, "\n") + "\n----\n" + actual +
                   "\n";
      continue;
    }
    EXPECT_EQ(absl::StrJoin(b.expected, "\n"), actual)
        << path.string() << ":" << b.line << ": " << b.commands[0];
  }
  EXPECT_TRUE(cluster.violations().empty())
      << path << ": " << absl::StrJoin(cluster.violations(), "\n");
  if (rewrite) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << rewritten;
    ASSERT_TRUE(out.good()) << "cannot rewrite " << path;
  }
}

INSTANTIATE_TEST_SUITE_P(
    Scripts, InteractionTest, testing::ValuesIn(ListScripts()),
    [](const testing::TestParamInfo<std::string>& info) {
      std::string name = std::filesystem::path(info.param).stem().string();
      for (char& ch : name) {
        if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
      }
      return name;
    });

}  // namespace
}  // namespace detcd::raft
