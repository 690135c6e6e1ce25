#include "harness/checker.h"

#include <algorithm>
#include <iterator>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "engine/util/hash.h"

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

void SafetyChecker::OnSend(uint64_t node, const raft::Message& m,
                           const wal::DurableState& d) {
  using raft::MessageType;
  // Pre-vote messages carry a term the sender has not entered; local
  // forwards carry none.
  if (m.type != MessageType::kPreVote && m.type != MessageType::kPreVoteResp &&
      m.term > d.hard_state.term) {
    Violation(absl::StrCat("ready ordering: node ", node, " sent ",
                           raft::MessageTypeName(m.type), " at term ", m.term,
                           " before persisting that term (durable term ",
                           d.hard_state.term, ")"));
  }
  if (m.type == MessageType::kVoteResp && !m.reject &&
      (d.hard_state.vote != m.to || d.hard_state.term != m.term)) {
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
  if (m.type == MessageType::kAppResp && !m.reject &&
      m.index > d.last_index) {
    Violation(absl::StrCat("ready ordering: node ", node,
                           " acknowledged index ", m.index,
                           " but only ", d.last_index, " is durable"));
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
    const uint64_t entry_term = r.log().ZeroTermOnError(commit);
    if (entry_term != term) {
      Violation(absl::StrCat(
          "commit rule: leader ", node.id(), " of term ", term,
          " advanced its commit index from ", v.commit, " to ", commit,
          ", an entry of term ", entry_term,
          " (only entries of the leader's own term commit by counting "
          "replicas, Raft 5.4.2)"));
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
