#include "harness/checker.h"

#include <algorithm>
#include <iterator>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "engine/util/hash.h"
#include "engine/wal/wal.h"
#include "membershippb/membership.pb.h"

namespace detcd::harness {
void SafetyChecker::Violation(std::string what) {
  // Keep the first few: later ones are usually consequences.
  if (violations_.size() < 20) violations_.push_back(std::move(what));
}

void SafetyChecker::OnApply(uint64_t node, const raft::Entry& e) {
  Applied a{true, e.term, util::Fnv1a(e.data), hash_(node)};
  if (e.index >= global_.size()) global_.resize(e.index + 1);
  Applied& g = global_[e.index];
  if (!g.known) {
    TrackMembership(e);
    g = a;
    std::string_view payload;
    uint64_t proposer = 0, rid = 0;
    if (e.type == raft::EntryType::kNormal && !e.data.empty() &&
        server::OpenEnvelope(e.data, &proposer, &rid, &payload)) {
      index_of_command_.emplace(std::string(payload), e.index);
    }
    if (on_first_apply_) on_first_apply_(e);
    return;
  }
  if (g.term != a.term || g.data_hash != a.data_hash) {
    Violation(absl::StrCat("state-machine safety: node ", node,
                           " applied a different entry at index ", e.index,
                           " (term ", a.term, ", first applied with term ",
                           g.term, ")"));
  } else if (g.state_hash != a.state_hash) {
    Violation(absl::StrCat("state-machine safety: node ", node,
                           " reached a different state at index ", e.index));
  }
}

void SafetyChecker::OnRestore(uint64_t node, const raft::SnapshotMetadata& m) {
  CheckMembership(node, m.index, m.conf_state, "restored a snapshot");
  // The restored state itself, against the replay of the committed log
  // (the hash compared below comes from inside the snapshot).
  if (restore_check_) {
    if (std::string diff = restore_check_(node, m); !diff.empty()) {
      Violation(absl::StrCat("snapshot restore on node ", node, " at index ",
                             m.index, ": ", diff));
    }
  }
  if (m.index == 0 || m.index >= global_.size() || !global_[m.index].known) {
    return;  // nothing observed to compare with (e.g. after a restart)
  }
  const Applied& g = global_[m.index];
  if (g.term != m.term) {
    Violation(absl::StrCat("snapshot at index ", m.index, " on node ", node,
                           " has term ", m.term, ", applied entry has term ",
                           g.term));
  } else if (g.state_hash != hash_(node)) {
    Violation(absl::StrCat("snapshot restore on node ", node, " at index ",
                           m.index, " does not reproduce the applied state"));
  }
}

void SafetyChecker::UpdateDurable(const sim::SimDisk& disk,
                                  const std::string& dir, DurableWal* w) {
  if (w->version == disk.durable_version()) return;
  w->version = disk.durable_version();
  std::vector<sim::SimDisk::SyncedFile> files;
  for (sim::SimDisk::SyncedFile& f : disk.SyncedFiles(dir)) {
    const std::string& n = f.name;
    if (n.size() > 4 && n.compare(n.size() - 4, 4, ".wal") == 0) {
      files.push_back(std::move(f));
    }
  }
  // Only the last segment grows and new ones only follow it: then parsing
  // goes on where it stopped. Anything else (a crash, a repair, released
  // segments) starts over.
  bool incremental = files.size() >= w->segments.size();
  for (size_t i = 0; incremental && i < w->segments.size(); ++i) {
    const DurableWal::Segment& s = w->segments[i];
    incremental = files[i].name == s.name && files[i].inode == s.inode &&
                  files[i].rewrites == s.rewrites &&
                  files[i].bytes.size() >= s.parsed &&
                  (i + 1 == w->segments.size() ||
                   files[i].bytes.size() == s.size);
  }
  if (!incremental) {
    const uint64_t version = w->version;
    *w = DurableWal();
    w->version = version;
  }
  size_t i = w->segments.empty() ? 0 : w->segments.size() - 1;
  for (; i < files.size(); ++i) {
    if (i == w->segments.size()) {
      w->segments.push_back({files[i].name, files[i].inode,
                             files[i].rewrites, 0});
    }
    DurableWal::Segment& seg = w->segments[i];
    std::string_view bytes = files[i].bytes;
    while (seg.parsed < bytes.size()) {
      wal::WalRecord rec;
      const size_t n = wal::DecodeRecordAt(bytes, seg.parsed, &rec);
      if (n == 0 ||
          (rec.type == wal::WalRecord::Type::kSegmentHeader) !=
              (seg.parsed == 0)) {
        break;
      }
      switch (rec.type) {
        case wal::WalRecord::Type::kHardState:
          w->hard_state = rec.hard_state;
          break;
        case wal::WalRecord::Type::kEntries:
          // An entry at index i replaces every entry >= i (wal.h).
          for (const raft::Entry& e : rec.entries) {
            w->terms.resize(e.index, 0);
            w->terms.push_back(e.term);
          }
          break;
        case wal::WalRecord::Type::kSnapshotMarker:
          if (rec.marker.index >= w->snapshot_index) {
            w->snapshot_index = rec.marker.index;
            w->snapshot_term = rec.marker.term;
          }
          break;
        case wal::WalRecord::Type::kSegmentHeader:
        case wal::WalRecord::Type::kSyncMark:
          break;
      }
      seg.parsed += n;
    }
    seg.size = bytes.size();
    // Zeros where a record would start end a segment (a disk filled it
    // ahead of the writes: wal.h). Any other bad or unfinished record ends
    // the durable log (for now: a later sync may finish it); later
    // segments cannot be reached past it.
    const bool zeros = std::all_of(bytes.begin() + seg.parsed, bytes.end(),
                                   [](char c) { return c == '\0'; });
    if (seg.parsed == 0 || !zeros) break;
  }
}

const SafetyChecker::DurableWal* SafetyChecker::Durable(uint64_t node) {
  if (!disk_fn_) return nullptr;
  const sim::SimDisk* disk = disk_fn_(node);
  if (disk == nullptr) return nullptr;
  DurableWal& w = durable_[node];
  UpdateDurable(*disk, wal_dir_, &w);
  return &w;
}

void SafetyChecker::OnSend(uint64_t node, const raft::Message& m,
                           const wal::DurableState& reported) {
  using raft::MessageType;
  // What is durable comes from the disk, not from the WAL's own account
  // (a WAL that took a failed fsync for done would report it durable).
  const DurableWal* w = Durable(node);
  const raft::HardState& hs = w ? w->hard_state : reported.hard_state;
  // Pre-vote messages carry a term the sender has not entered; local
  // forwards carry none.
  if (m.type != MessageType::kPreVote && m.type != MessageType::kPreVoteResp &&
      m.term > hs.term) {
    Violation(absl::StrCat("ready ordering: node ", node, " sent ",
                           raft::MessageTypeName(m.type), " at term ", m.term,
                           " before persisting that term (durable term ",
                           hs.term, ")"));
  }
  if (m.type == MessageType::kVoteResp && !m.reject &&
      (hs.vote != m.to || hs.term != m.term)) {
    Violation(absl::StrCat("ready ordering: node ", node, " granted its vote",
                           " to ", m.to, " in term ", m.term,
                           " before persisting it"));
  }
  if (m.type == MessageType::kVoteResp && !m.reject) {
    // Figure 2: at most one vote per term, across restarts too.
    auto [it, fresh] = votes_.emplace(std::make_pair(node, m.term), m.to);
    if (!fresh && it->second != m.to) {
      Violation(absl::StrCat("vote safety: node ", node, " voted for ",
                             it->second, " and for ", m.to, " in term ",
                             m.term));
    }
  }
  if (m.type != MessageType::kAppResp || m.reject || m.index == 0) return;
  if (w == nullptr) {
    if (m.index > reported.last_index) {
      Violation(absl::StrCat("ready ordering: node ", node,
                             " acknowledged index ", m.index, " but only ",
                             reported.last_index, " is durable"));
    }
    return;
  }
  // The acknowledged entry must be durable with the term the node has
  // there: an index alone would pass an unsynced replacement of a synced
  // entry of another term.
  uint64_t term = 0;
  if (const server::Node* n = node_fn_ ? node_fn_(node) : nullptr) {
    term = n->raft().log().ZeroTermOnError(m.index);
  }
  if (m.index <= w->snapshot_index) {
    if (m.index == w->snapshot_index && term != 0 &&
        term != w->snapshot_term) {
      Violation(absl::StrCat("ready ordering: node ", node,
                             " acknowledged index ", m.index, " of term ",
                             term, " but its durable snapshot there has term ",
                             w->snapshot_term));
    }
    return;
  }
  const uint64_t durable_term = w->TermAt(m.index);
  if (durable_term == 0) {
    Violation(absl::StrCat("ready ordering: node ", node,
                           " acknowledged index ", m.index, " but only ",
                           w->LastIndex(), " is durable"));
  } else if (term > m.term) {
    // The acknowledgement was made in an older term, before a later
    // leader's entries replaced the node's log there (a Ready's messages
    // leave once it is persisted; the node may step newer messages while
    // the write is out). The entry it acknowledged had a term of at most
    // the message's, and that must be what is durable.
    if (durable_term > m.term) {
      Violation(absl::StrCat("ready ordering: node ", node,
                             " acknowledged index ", m.index, " in term ",
                             m.term, " but the durable entry there has term ",
                             durable_term));
    }
  } else if (term != 0 && durable_term != term) {
    Violation(absl::StrCat("ready ordering: node ", node,
                           " acknowledged index ", m.index, " of term ", term,
                           " but the durable entry there has term ",
                           durable_term));
  }
}

void SafetyChecker::AfterEvent(const server::Node& node) {
  if (node.failed()) return;
  NoteCoverage(node);
  // Membership changes only where the applied index moves (or a restore,
  // checked in OnRestore).
  if (node.id() >= membership_checked_.size()) {
    membership_checked_.resize(node.id() + 1, ~uint64_t{0});
  }
  if (membership_checked_[node.id()] != node.applied_index()) {
    membership_checked_[node.id()] = node.applied_index();
    CheckMembership(node.id(), node.applied_index(), node.conf_state(),
                    "holds");
  }
  if (!node.is_leader()) {
    leader_view_.erase(node.id());
    return;
  }
  CheckCommitRule(node);
  const uint64_t term = node.raft().term();
  auto [it, inserted] = leaders_.emplace(term, node.id());
  if (!inserted && it->second != node.id()) {
    Violation(absl::StrCat("election safety: nodes ", it->second, " and ",
                           node.id(), " both led term ", term));
    return;
  }
  uint64_t& last = last_leader_term_[node.id()];
  if (last != term) {
    last = term;
    CheckLeaderCompleteness(node);
  }
}

void SafetyChecker::CheckLeaderCompleteness(const server::Node& node) {
  const raft::RaftLog& log = node.raft().log();
  const uint64_t first = log.FirstIndex();
  const uint64_t last = log.LastIndex();
  for (uint64_t i = global_.size() - 1; i >= 1 && i + 1 > first; --i) {
    const Applied& g = global_[i];
    if (!g.known) continue;
    // Committed by a leader of this term or a later one: not owed. An entry
    // no leader was seen committing is owed if its own term is older (its
    // commit term is at least its entry term).
    const uint64_t ct = i < commit_term_.size() ? commit_term_[i] : 0;
    if ((ct != 0 ? ct : g.term) >= node.raft().term()) continue;
    if (i > last) {
      Violation(absl::StrCat("leader completeness: leader ", node.id(),
                             " of term ", node.raft().term(),
                             " lacks committed index ", i, " (last index ",
                             last, ")"));
      return;
    }
    auto t = log.Term(i);
    if (t.ok() && *t != g.term) {
      Violation(absl::StrCat("leader completeness: leader ", node.id(),
                             " of term ", node.raft().term(), " has term ",
                             *t, " at committed index ", i, ", expected ",
                             g.term));
      return;
    }
  }
}

void SafetyChecker::CheckLogMatching(
    const std::vector<const server::Node*>& nodes) {
  for (size_t a = 0; a < nodes.size(); ++a) {
    for (size_t b = a + 1; b < nodes.size(); ++b) {
      const raft::RaftLog& la = nodes[a]->raft().log();
      const raft::RaftLog& lb = nodes[b]->raft().log();
      uint64_t lo = std::max(la.FirstIndex(), lb.FirstIndex());
      uint64_t hi = std::min(la.LastIndex(), lb.LastIndex());
      bool matched_above = false;
      for (uint64_t i = hi; i >= lo && i >= 1; --i) {
        uint64_t ta = la.ZeroTermOnError(i), tb = lb.ZeroTermOnError(i);
        if (ta == tb) {
          matched_above = true;
        } else if (matched_above) {
          Violation(absl::StrCat("log matching: nodes ", nodes[a]->id(),
                                 " and ", nodes[b]->id(),
                                 " agree above index ", i,
                                 " but differ at it"));
          break;
        }
      }
    }
  }
}

void SafetyChecker::CheckDurability(
    const std::vector<const server::Node*>& live) {
  for (const std::string& cmd : acked_) {
    auto it = index_of_command_.find(cmd);
    if (it == index_of_command_.end()) {
      Violation(absl::StrCat("durability: acknowledged write '", cmd,
                             "' was never applied"));
      continue;
    }
    for (const server::Node* n : live) {
      if (n->applied_index() < it->second) {
        Violation(absl::StrCat("durability: node ", n->id(),
                               " has not applied acknowledged write '", cmd,
                               "' at index ", it->second));
      }
    }
  }
}

// ---- commit rule, coverage, membership ----

bool SafetyChecker::QuorumStores(const std::vector<uint64_t>& voters,
                                 uint64_t index, uint64_t term) {
  size_t stored = 0;
  for (uint64_t v : voters) {
    const DurableWal* w = Durable(v);
    // A voter whose disk holds no WAL (a wiped member not yet removed,
    // whose last answers may still be on their way) is not held against
    // the leader.
    if (w == nullptr || w->segments.empty()) {
      ++stored;
    } else if (index <= w->snapshot_index || w->TermAt(index) == term) {
      ++stored;
    }
  }
  return stored >= voters.size() / 2 + 1;
}

void SafetyChecker::CheckCommitRule(const server::Node& node) {
  const raft::Raft& r = node.raft();
  const uint64_t term = r.term();
  const uint64_t commit = r.log().committed();
  const std::set<uint64_t>& vs = r.tracker().voters();
  LeaderView& v = leader_view_[node.id()];
  if (v.term != term) {
    // Newly leading: the commit index it brings is a follower's.
    v.term = term;
    v.commit = commit;
    v.voters.assign(vs.begin(), vs.end());
    return;
  }
  if (commit > v.commit) {
    if (commit_term_.size() <= commit) commit_term_.resize(commit + 1, 0);
    for (uint64_t i = v.commit + 1; i <= commit; ++i) {
      if (commit_term_[i] == 0 || commit_term_[i] > term) {
        commit_term_[i] = term;
      }
    }
    const uint64_t entry_term = r.log().ZeroTermOnError(commit);
    if (entry_term != term) {
      Violation(absl::StrCat(
          "commit rule: leader ", node.id(), " of term ", term,
          " advanced its commit index from ", v.commit, " to ", commit,
          ", an entry of term ", entry_term,
          " (only entries of the leader's own term commit by counting "
          "replicas, Raft 5.4.2)"));
    } else if (disk_fn_) {
      const std::vector<uint64_t> now(vs.begin(), vs.end());
      if (!QuorumStores(now, commit, term) &&
          !QuorumStores(v.voters, commit, term)) {
        Violation(absl::StrCat("commit rule: leader ", node.id(),
                               " of term ", term, " committed index ", commit,
                               " before a quorum of its voters stored it "
                               "durably"));
      }
    }
  }
  v.commit = commit;
  if (!std::equal(vs.begin(), vs.end(), v.voters.begin(), v.voters.end())) {
    v.voters.assign(vs.begin(), vs.end());
  }
}

void SafetyChecker::NoteCoverage(const server::Node& node) {
  const raft::Coverage& now = node.raft().coverage();
  if (node.id() >= coverage_seen_.size()) coverage_seen_.resize(node.id() + 1);
  raft::Coverage& seen = coverage_seen_[node.id()];
  if (now.old_term_quorum == seen.old_term_quorum &&
      now.follower_tail_beyond_append == seen.follower_tail_beyond_append &&
      now.vote_for_older_last_term == seen.vote_for_older_last_term) {
    return;
  }
  // Counters only grow within an incarnation; smaller ones belong to a new
  // one (the node restarted since the last look).
  auto add = [](uint64_t now_v, uint64_t* seen_v, uint64_t* total) {
    *total += now_v >= *seen_v ? now_v - *seen_v : now_v;
    *seen_v = now_v;
  };
  add(now.old_term_quorum, &seen.old_term_quorum, &coverage_.old_term_quorum);
  add(now.follower_tail_beyond_append, &seen.follower_tail_beyond_append,
      &coverage_.follower_tail_beyond_append);
  add(now.vote_for_older_last_term, &seen.vote_for_older_last_term,
      &coverage_.vote_for_older_last_term);
}

void SafetyChecker::TrackMembership(const raft::Entry& e) {
  if (e.term > 1 && founding_end_ == 0) founding_end_ = e.index;
  if (e.type != raft::EntryType::kConfChange) return;
  raft::ConfChange cc;
  if (!raft::DecodeConfChange(e.data, &cc) || cc.node_id == raft::kNone) {
    return;
  }
  if (EtcdRefuses(cc)) return;  // applied as a change that changes nothing
  const bool founding = e.term == 1;
  raft::ConfState cs = founding ? membership_.begin()->second
                                : membership_.rbegin()->second;
  auto erase = [](std::vector<uint64_t>* v, uint64_t id) {
    v->erase(std::remove(v->begin(), v->end(), id), v->end());
  };
  auto insert = [](std::vector<uint64_t>* v, uint64_t id) {
    if (std::find(v->begin(), v->end(), id) == v->end()) {
      v->insert(std::upper_bound(v->begin(), v->end(), id), id);
    }
  };
  switch (cc.type) {
    case raft::ConfChangeType::kAddNode:
      erase(&cs.learners, cc.node_id);
      insert(&cs.voters, cc.node_id);
      break;
    case raft::ConfChangeType::kAddLearnerNode:
      if (std::find(cs.voters.begin(), cs.voters.end(), cc.node_id) ==
          cs.voters.end()) {
        insert(&cs.learners, cc.node_id);
      }
      break;
    case raft::ConfChangeType::kRemoveNode:
      erase(&cs.voters, cc.node_id);
      erase(&cs.learners, cc.node_id);
      break;
    case raft::ConfChangeType::kUpdateNode:
      return;
  }
  if (founding) {
    // Raft's initial membership already lists every founder.
    for (auto& [index, m] : membership_) m = cs;
  } else {
    membership_[e.index] = std::move(cs);
  }
}

bool SafetyChecker::EtcdRefuses(const raft::ConfChange& cc) {
  // The etcd layer's context inside the Node's envelope: byte(kind)
  // membershippb.Member, kinds 1 add, 2 promote, 3 update, 4 remove,
  // 5 founding (server/membership.h). Anything else is a raw change.
  std::string_view payload;
  uint64_t proposer = 0, rid = 0;
  membershippb::Member given;
  int kind = 0;
  if (server::OpenEnvelope(cc.context, &proposer, &rid, &payload) &&
      !payload.empty() && payload[0] >= 1 && payload[0] <= 5 &&
      given.ParseFromArray(payload.data() + 1,
                           static_cast<int>(payload.size() - 1))) {
    kind = payload[0];
  }
  const std::vector<std::string> urls(
      given.raft_attributes().peer_urls().begin(),
      given.raft_attributes().peer_urls().end());
  auto url_taken = [&](uint64_t except) {
    for (const auto& [id, m] : members_) {
      if (id == except) continue;
      for (const std::string& u : m.peer_urls) {
        if (std::find(urls.begin(), urls.end(), u) != urls.end()) return true;
      }
    }
    return false;
  };
  auto it = members_.find(cc.node_id);
  const bool checked = kind != 0 && kind != 5;
  if (checked && removed_.contains(cc.node_id)) return true;
  switch (cc.type) {
    case raft::ConfChangeType::kAddNode:
    case raft::ConfChangeType::kAddLearnerNode:
      if (checked && kind == 2) {  // promote
        if (it == members_.end() || !it->second.learner) return true;
      } else if (checked) {
        if (it != members_.end() || url_taken(0)) return true;
        if (cc.type == raft::ConfChangeType::kAddLearnerNode) {
          int learners = 0;
          for (const auto& [id, m] : members_) learners += m.learner;
          if (learners + 1 > 1) return true;  // etcd's maxLearners
        }
      }
      {
        MemberFacts& m = members_[cc.node_id];
        if (!urls.empty()) m.peer_urls = urls;
        // Raft ignores an AddLearnerNode of a voter.
        if (cc.type == raft::ConfChangeType::kAddNode) {
          m.learner = false;
        } else if (it == members_.end()) {
          m.learner = true;
        }
      }
      removed_.erase(cc.node_id);
      return false;
    case raft::ConfChangeType::kRemoveNode:
      if (checked && it == members_.end()) return true;
      if (it != members_.end()) {
        members_.erase(it);
        removed_.insert(cc.node_id);
      }
      return false;
    case raft::ConfChangeType::kUpdateNode:
      if (checked && (it == members_.end() || url_taken(cc.node_id))) {
        return true;
      }
      if (it != members_.end() && !urls.empty()) it->second.peer_urls = urls;
      return false;
  }
  return false;
}

const raft::ConfState& SafetyChecker::MembershipAt(uint64_t index) const {
  auto it = membership_.upper_bound(index);
  return std::prev(it)->second;
}

void SafetyChecker::CheckMembership(uint64_t node, uint64_t index,
                                    const raft::ConfState& cs,
                                    const char* what) {
  if (founding_end_ == 0 || index < founding_end_ ||
      index >= global_.size() || !global_[index].known) {
    return;  // the founding prefix, or nothing applied there yet
  }
  const raft::ConfState& want = MembershipAt(index);
  if (cs == want) return;  // the usual case: no copy, no sort
  raft::ConfState got = cs;
  std::sort(got.voters.begin(), got.voters.end());
  std::sort(got.learners.begin(), got.learners.end());
  if (got == want) return;
  Violation(absl::StrCat(
      "membership: node ", node, " ", what, " at index ", index,
      " with voters [", absl::StrJoin(got.voters, ","), "] learners [",
      absl::StrJoin(got.learners, ","),
      "], but the conf changes committed up to there give voters [",
      absl::StrJoin(want.voters, ","), "] learners [",
      absl::StrJoin(want.learners, ","), "]"));
}

}  // namespace detcd::harness
