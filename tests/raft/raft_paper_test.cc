// Tests tied to the rules of the Raft paper (Ongaro & Ousterhout, "In Search
// of an Understandable Consensus Algorithm", extended version): one test per
// rule of Figure 2 and §5–§8, plus the extensions of Ongaro's thesis that the
// engine implements (pre-vote §9.6, check-quorum §6.2, leader transfer §3.10,
// learners §4.2.1) and its flow-control limits. Each test names the rule it
// checks and cites the section. In the spirit of etcd-io/raft's
// raft_paper_test.go and raft_test.go; our own code.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/env/env.h"
#include "engine/raft/raft.h"
#include "engine/raft/storage.h"
#include "engine/raft/types.h"
#include "tests/raft/test_network.h"

namespace detcd::raft {
namespace {

using testing::Classic;
using testing::ConfigFn;
using testing::EntriesWithTerms;
using testing::Filter;
using testing::IndexTerms;
using testing::Network;
using testing::NetworkOptions;

using IT = std::vector<std::pair<uint64_t, uint64_t>>;  // (index, term)

// ---- helpers ----

NetworkOptions ClassicOptions(ConfigFn extra = nullptr, uint64_t seed = 1) {
  NetworkOptions o;
  o.seed = seed;
  o.configure = [extra](Config& c) {
    Classic(c);
    if (extra) extra(c);
  };
  return o;
}

NetworkOptions DefaultOptions(ConfigFn extra = nullptr, uint64_t seed = 1) {
  NetworkOptions o;
  o.seed = seed;
  o.configure = std::move(extra);
  return o;
}

ConfState Voters(std::vector<NodeId> v, std::vector<NodeId> l = {}) {
  ConfState cs;
  cs.voters = std::move(v);
  cs.learners = std::move(l);
  return cs;
}

Message Msg(MessageType t, NodeId from, NodeId to, uint64_t term) {
  Message m;
  m.type = t;
  m.from = from;
  m.to = to;
  m.term = term;
  return m;
}

Message App(NodeId from, NodeId to, uint64_t term, uint64_t log_term,
            uint64_t index, uint64_t commit, std::vector<Entry> ents = {}) {
  Message m = Msg(MessageType::kApp, from, to, term);
  m.log_term = log_term;
  m.index = index;
  m.commit = commit;
  m.entries = std::move(ents);
  return m;
}

[[maybe_unused]] Message AppResp(NodeId from, NodeId to, uint64_t term, uint64_t index) {
  Message m = Msg(MessageType::kAppResp, from, to, term);
  m.index = index;
  return m;
}

Message VoteReq(NodeId from, NodeId to, uint64_t term, uint64_t log_term,
                uint64_t index, MessageType t = MessageType::kVote) {
  Message m = Msg(t, from, to, term);
  m.log_term = log_term;
  m.index = index;
  return m;
}

Message VoteResp(NodeId from, NodeId to, uint64_t term, bool reject,
                 MessageType t = MessageType::kVoteResp) {
  Message m = Msg(t, from, to, term);
  m.reject = reject;
  return m;
}

Message Heartbeat(NodeId from, NodeId to, uint64_t term, uint64_t commit) {
  Message m = Msg(MessageType::kHeartbeat, from, to, term);
  m.commit = commit;
  return m;
}

[[maybe_unused]] Message HeartbeatResp(NodeId from, NodeId to, uint64_t term,
                      std::string ctx = "") {
  Message m = Msg(MessageType::kHeartbeatResp, from, to, term);
  m.context = std::move(ctx);
  return m;
}

Entry Ent(uint64_t term, uint64_t index, std::string data = "") {
  return Entry{term, index, EntryType::kNormal, std::move(data)};
}

// Storage setup: a log and a hard state.
std::function<void(MemoryStorage&)> WithLog(std::vector<Entry> ents,
                                            HardState hs = {}) {
  return [ents = std::move(ents), hs](MemoryStorage& s) {
    EXPECT_TRUE(s.Append(ents).ok());
    s.SetHardState(hs);
  };
}

// A network of `ids` where every peer starts from the given log and hard
// state (peers not in `logs` start empty).
Network NetworkWithLogs(
    const std::vector<NodeId>& ids,
    const std::map<NodeId, std::pair<std::vector<Entry>, HardState>>& logs,
    NetworkOptions opts) {
  Network nw(ids, opts);
  ConfState cs = Voters(ids);
  for (const auto& [id, lh] : logs) {
    nw.AddPeer(id, &cs, WithLog(lh.first, lh.second));
  }
  return nw;
}

std::set<NodeId> Recipients(const std::vector<Message>& msgs) {
  std::set<NodeId> out;
  for (const Message& m : msgs) out.insert(m.to);
  return out;
}

// Makes `id` leader of the next term by stepping granted (pre-)vote
// responses from the other voters directly, without delivering anything.
// Returns the messages the new leader sent once elected.
[[maybe_unused]] std::vector<Message> ElectAlone(Network& nw, NodeId id) {
  Raft& r = nw.raft(id);
  EXPECT_TRUE(r.Campaign().ok());
  (void)nw.Process(id);
  std::vector<NodeId> voters(r.tracker().voters().begin(),
                             r.tracker().voters().end());
  if (r.state() == StateType::kPreCandidate) {
    uint64_t t = r.term() + 1;
    for (NodeId v : voters) {
      if (v == id || r.state() != StateType::kPreCandidate) continue;
      (void)nw.Step(id, VoteResp(v, id, t, false, MessageType::kPreVoteResp));
    }
  }
  std::vector<Message> out;
  if (r.state() == StateType::kCandidate) {
    uint64_t t = r.term();
    for (NodeId v : voters) {
      if (v == id || r.state() != StateType::kCandidate) continue;
      out = nw.Step(id, VoteResp(v, id, t, false));
    }
  }
  EXPECT_EQ(r.state(), StateType::kLeader);
  std::vector<Message> more = nw.Process(id);
  out.insert(out.end(), more.begin(), more.end());
  return out;
}

[[maybe_unused]] std::vector<Message> Without(std::vector<Message> msgs, MessageType t) {
  msgs.erase(std::remove_if(msgs.begin(), msgs.end(),
                            [t](const Message& m) { return m.type == t; }),
             msgs.end());
  return msgs;
}

// ===================================================================
// §5.1 Raft basics: terms
// ===================================================================

// §5.1: "If one server's current term is smaller than the other's, then it
// updates its current term to the larger value. If a candidate or leader
// discovers that its term is out of date, it immediately reverts to follower
// state." Checked from every role, for a leader's message (kApp: the sender
// becomes the known leader) and a vote request (no leader known).
TEST(RaftPaper, FollowerUpdatesTermFromMessage_5_1) {
  for (StateType st : {StateType::kFollower, StateType::kPreCandidate,
                       StateType::kCandidate, StateType::kLeader}) {
    for (MessageType mt : {MessageType::kApp, MessageType::kVote}) {
      SCOPED_TRACE(absl::StrCat(StateTypeName(st), " ", MessageTypeName(mt)));
      Network nw({1, 2, 3}, ClassicOptions([](Config& c) {
                   c.pre_vote = true;  // to reach the pre-candidate state
                 }));
      Raft& r = nw.raft(1);
      if (st != StateType::kFollower) {
        ASSERT_TRUE(r.Campaign().ok());
        (void)nw.Process(1);
      }
      if (st == StateType::kCandidate || st == StateType::kLeader) {
        (void)nw.Step(1, VoteResp(2, 1, 1, false, MessageType::kPreVoteResp));
      }
      if (st == StateType::kLeader) (void)nw.Step(1, VoteResp(2, 1, 1, false));
      ASSERT_EQ(r.state(), st);

      Message m = mt == MessageType::kApp ? App(3, 1, 5, 0, 0, 0)
                                          : VoteReq(3, 1, 5, 0, 0);
      (void)nw.Step(1, m);
      EXPECT_EQ(r.term(), 5u);
      EXPECT_EQ(r.state(), StateType::kFollower);
      EXPECT_EQ(r.lead(), mt == MessageType::kApp ? 3u : kNone);
      EXPECT_EQ(nw.storage(1).InitialHardState().term, 5u)
          << "the new term must be persisted";
    }
  }
}

// §5.1: "If a server receives a request with a stale term number, it rejects
// the request." Without check-quorum/pre-vote the stale request is dropped
// outright: no state change, no log change, no answer.
TEST(RaftPaper, RejectsStaleTermMessage_5_1) {
  Network nw = NetworkWithLogs(
      {1, 2, 3}, {{1, {EntriesWithTerms(1, {1, 2}), HardState{2, kNone, 0}}}},
      ClassicOptions());
  Raft& r = nw.raft(1);
  auto out = nw.Step(1, App(2, 1, 1, 2, 2, 2, {Ent(1, 3, "stale")}));
  EXPECT_TRUE(out.empty());
  EXPECT_EQ(r.term(), 2u);
  EXPECT_EQ(r.lead(), kNone);
  EXPECT_EQ(r.log().LastIndex(), 2u);
  EXPECT_EQ(r.log().committed(), 0u);
  out = nw.Step(1, VoteReq(3, 1, 1, 5, 5));
  EXPECT_TRUE(out.empty()) << testing::Describe(out[0]);
  EXPECT_EQ(r.vote(), kNone);
}

// §5.1 (with check-quorum / pre-vote, thesis §9.6): a stale leader is told
// the newer term in the answer to its append or heartbeat, and steps down.
TEST(RaftPaper, StaleLeaderLearnsNewTermFromAnswer_5_1) {
  Network nw = NetworkWithLogs(
      {1, 2, 3}, {{1, {EntriesWithTerms(1, {1, 2}), HardState{3, kNone, 0}}}},
      DefaultOptions());
  auto out = nw.Step(1, Heartbeat(2, 1, 2, 0));
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].type, MessageType::kAppResp);
  EXPECT_EQ(out[0].to, 2u);
  EXPECT_EQ(out[0].term, 3u);
  EXPECT_EQ(nw.raft(1).term(), 3u);

  // End to end: 1 leads term 1, is partitioned, 2 leads term 2; when the
  // partition heals, 1's heartbeat draws an answer in term 2 and 1 steps
  // down.
  Network n2({1, 2, 3}, DefaultOptions());
  ASSERT_TRUE(n2.Campaign(1).ok());
  ASSERT_EQ(n2.raft(1).state(), StateType::kLeader);
  ASSERT_EQ(n2.raft(1).term(), 1u);
  n2.Isolate(1);
  // 2 and 3 stop hearing from 1; once their leases expire they elect 2.
  for (NodeId id : {2, 3}) {
    n2.raft(id).set_randomized_election_timeout(1000);
    (void)n2.Tick(id, n2.raft(id).config().election_tick);
  }
  ASSERT_TRUE(n2.Campaign(2).ok());
  ASSERT_EQ(n2.raft(2).state(), StateType::kLeader);
  ASSERT_EQ(n2.raft(2).term(), 2u);
  EXPECT_EQ(n2.raft(1).state(), StateType::kLeader);  // does not know yet
  n2.Recover();
  n2.Heartbeat(1);
  EXPECT_EQ(n2.raft(1).state(), StateType::kFollower);
  EXPECT_EQ(n2.raft(1).term(), 2u);
  n2.Heartbeat(2);
  EXPECT_EQ(n2.raft(1).lead(), 2u);
}

// Figure 2, "Persistent state on all servers ... updated on stable storage
// before responding to RPCs": the granted vote and the new term come out in
// the same Ready as the answer, flagged for fsync, so the owner persists them
// before sending.
TEST(RaftPaper, VoteIsPersistedBeforeAnswer_Fig2) {
  Network nw({1, 2, 3}, ClassicOptions());
  Raft& r = nw.raft(1);
  ASSERT_TRUE(r.Step(VoteReq(2, 1, 1, 0, 0)).ok());
  ASSERT_TRUE(r.HasReady());
  Ready rd = r.GetReady();
  ASSERT_TRUE(rd.hard_state.has_value());
  EXPECT_EQ(rd.hard_state->term, 1u);
  EXPECT_EQ(rd.hard_state->vote, 2u);
  EXPECT_TRUE(rd.must_sync);
  ASSERT_EQ(rd.messages.size(), 1u);
  EXPECT_EQ(rd.messages[0].type, MessageType::kVoteResp);
  EXPECT_FALSE(rd.messages[0].reject);
  EXPECT_EQ(rd.messages[0].term, 1u);
  nw.storage(1).SetHardState(*rd.hard_state);
  r.Advance(rd);
  EXPECT_FALSE(r.HasReady());
}

// Figure 2: term and vote survive a restart, so a restarted voter cannot vote
// twice in one term.
TEST(RaftPaper, RestartKeepsTermAndVote_Fig2) {
  Network nw({1, 2, 3}, ClassicOptions());
  auto out = nw.Step(1, VoteReq(2, 1, 5, 0, 0));
  ASSERT_EQ(out.size(), 1u);
  EXPECT_FALSE(out[0].reject);
  nw.Restart(1);
  Raft& r = nw.raft(1);
  EXPECT_EQ(r.term(), 5u);
  EXPECT_EQ(r.vote(), 2u);
  EXPECT_EQ(r.state(), StateType::kFollower);
  out = nw.Step(1, VoteReq(3, 1, 5, 0, 0));
  ASSERT_EQ(out.size(), 1u);
  EXPECT_TRUE(out[0].reject) << "voted twice in term 5 across a restart";
  EXPECT_EQ(r.vote(), 2u);
}

// ===================================================================
// §5.2 Leader election
// ===================================================================

// §5.2: "When servers start up, they begin as followers."
TEST(RaftPaper, StartAsFollower_5_2) {
  Network nw({1, 2, 3}, DefaultOptions());
  for (NodeId id : {1, 2, 3}) {
    EXPECT_EQ(nw.raft(id).state(), StateType::kFollower);
    EXPECT_EQ(nw.raft(id).term(), 0u);
    EXPECT_EQ(nw.raft(id).lead(), kNone);
    EXPECT_FALSE(nw.raft(id).HasReady());
  }
}

// §5.2: "Leaders send periodic heartbeats (AppendEntries RPCs that carry no
// log entries) to all followers in order to maintain their authority."
TEST(RaftPaper, LeaderBroadcastsHeartbeat_5_2) {
  Network nw({1, 2, 3}, ClassicOptions([](Config& c) {
               c.heartbeat_tick = 3;
             }));
  ASSERT_TRUE(nw.Campaign(1).ok());
  ASSERT_EQ(nw.raft(1).state(), StateType::kLeader);
  EXPECT_TRUE(nw.Tick(1, 2).empty()) << "heartbeat before heartbeat_tick";
  auto out = nw.Tick(1, 1);
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(Recipients(out), (std::set<NodeId>{2, 3}));
  for (const Message& m : out) {
    EXPECT_EQ(m.type, MessageType::kHeartbeat) << testing::Describe(m);
    EXPECT_EQ(m.term, 1u);
    EXPECT_TRUE(m.entries.empty());
    EXPECT_EQ(m.commit, 1u);
  }
}

// §5.2: "If a follower receives no communication over a period of time called
// the election timeout, then it ... begins an election": it increments its
// term, votes for itself and sends RequestVote (with its last log index and
// term, §5.4.1) to every other server. A candidate whose election times out
// starts a new one in the next term.
TEST(RaftPaper, NonLeaderStartsElectionOnTimeout_5_2) {
  for (bool from_candidate : {false, true}) {
    SCOPED_TRACE(from_candidate ? "candidate" : "follower");
    Network nw = NetworkWithLogs(
        {1, 2, 3},
        {{1, {EntriesWithTerms(1, {1, 1}), HardState{1, kNone, 0}}}},
        ClassicOptions());
    Raft& r = nw.raft(1);
    uint64_t want_term = 2;
    if (from_candidate) {
      ASSERT_TRUE(r.Campaign().ok());
      (void)nw.Process(1);
      ASSERT_EQ(r.state(), StateType::kCandidate);
      want_term = 3;
    }
    int timeout = r.randomized_election_timeout();
    EXPECT_TRUE(nw.Tick(1, timeout - 1).empty());
    EXPECT_EQ(r.term(), want_term - 1);
    auto out = nw.Tick(1, 1);
    EXPECT_EQ(r.state(), StateType::kCandidate);
    EXPECT_EQ(r.term(), want_term);
    EXPECT_EQ(r.vote(), 1u);
    EXPECT_EQ(nw.storage(1).InitialHardState().vote, 1u);
    ASSERT_EQ(out.size(), 2u);
    EXPECT_EQ(Recipients(out), (std::set<NodeId>{2, 3}));
    for (const Message& m : out) {
      EXPECT_EQ(m.type, MessageType::kVote);
      EXPECT_EQ(m.term, want_term);
      EXPECT_EQ(m.index, 2u);
      EXPECT_EQ(m.log_term, 1u);
    }
  }
}

// §5.2: "A candidate wins an election if it receives votes from a majority
// of the servers in the full cluster for the same term"; it loses once a
// majority rejects it; otherwise it waits. Duplicate votes and votes of
// non-members do not count.
TEST(RaftPaper, LeaderElectionRequiresMajority_5_2) {
  struct Case {
    int size;
    std::vector<std::pair<NodeId, bool>> votes;
    StateType want;
  };
  const std::vector<Case> cases = {
      {1, {}, StateType::kLeader},
      {3, {{2, true}, {3, true}}, StateType::kLeader},
      {3, {{2, true}}, StateType::kLeader},
      {5, {{2, true}, {3, true}, {4, true}, {5, true}}, StateType::kLeader},
      {5, {{2, true}, {3, true}, {4, true}}, StateType::kLeader},
      {5, {{2, true}, {3, true}}, StateType::kLeader},
      {3, {{2, false}, {3, false}}, StateType::kFollower},
      {5, {{2, false}, {3, false}, {4, false}, {5, false}},
       StateType::kFollower},
      {5, {{2, true}, {3, false}, {4, false}, {5, false}},
       StateType::kFollower},
      {3, {}, StateType::kCandidate},
      {5, {{2, true}}, StateType::kCandidate},
      {5, {{2, false}, {3, false}}, StateType::kCandidate},
      {5, {}, StateType::kCandidate},
      // The same voter counted once.
      {5, {{2, true}, {2, true}, {2, true}}, StateType::kCandidate},
      // The first answer of a voter counts.
      {3, {{2, false}, {2, true}}, StateType::kCandidate},
      // A non-member's vote does not count.
      {3, {{9, true}}, StateType::kCandidate},
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    const Case& c = cases[i];
    SCOPED_TRACE(i);
    std::vector<NodeId> ids;
    for (int k = 1; k <= c.size; ++k) ids.push_back(k);
    Network nw(ids, ClassicOptions());
    Raft& r = nw.raft(1);
    ASSERT_TRUE(r.Campaign().ok());
    (void)nw.Process(1);
    for (auto [from, granted] : c.votes) {
      (void)nw.Step(1, VoteResp(from, 1, 1, !granted));
    }
    EXPECT_EQ(r.state(), c.want);
    EXPECT_EQ(r.term(), 1u);
  }
}

// §5.2: "Each server will vote for at most one candidate in a given term, on
// a first-come-first-served basis." A repeated request from the candidate it
// already voted for is granted again (the answer may have been lost).
TEST(RaftPaper, VoterGrantsAtMostOneVotePerTerm_5_2) {
  struct Case {
    NodeId voted;
    NodeId from;
    bool reject;
  };
  const std::vector<Case> cases = {
      {kNone, 2, false}, {kNone, 3, false}, {2, 2, false},
      {3, 3, false},     {2, 3, true},      {3, 2, true},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(absl::StrCat("voted=", c.voted, " from=", c.from));
    Network nw = NetworkWithLogs(
        {1, 2, 3}, {{1, {{}, HardState{1, c.voted, 0}}}}, ClassicOptions());
    auto out = nw.Step(1, VoteReq(c.from, 1, 1, 0, 0));
    ASSERT_EQ(out.size(), 1u);
    EXPECT_EQ(out[0].type, MessageType::kVoteResp);
    EXPECT_EQ(out[0].to, c.from);
    EXPECT_EQ(out[0].term, 1u);
    EXPECT_EQ(out[0].reject, c.reject);
    EXPECT_EQ(nw.raft(1).vote(), c.voted == kNone ? c.from : c.voted);
  }
  // Two candidates in one term, first come first served.
  Network nw({1, 2, 3}, ClassicOptions());
  auto a = nw.Step(1, VoteReq(2, 1, 4, 0, 0));
  auto b = nw.Step(1, VoteReq(3, 1, 4, 0, 0));
  ASSERT_EQ(a.size(), 1u);
  ASSERT_EQ(b.size(), 1u);
  EXPECT_FALSE(a[0].reject);
  EXPECT_TRUE(b[0].reject);
}

// §5.2: "While waiting for votes, a candidate may receive an AppendEntries
// RPC from another server claiming to be leader. If the leader's term ... is
// at least as large as the candidate's current term, then the candidate
// recognizes the leader as legitimate and returns to follower state." A
// higher term in any answer also sends it back (§5.1).
TEST(RaftPaper, CandidateFallsBackToFollowerOnHigherTerm_5_2) {
  struct Case {
    const char* name;
    Message m;
    uint64_t want_term;
    NodeId want_lead;
  };
  const std::vector<Case> cases = {
      {"app same term", App(2, 1, 1, 0, 0, 0), 1, 2},
      {"heartbeat same term", Heartbeat(2, 1, 1, 0), 1, 2},
      {"app higher term", App(2, 1, 2, 0, 0, 0), 2, 2},
      {"vote rejection higher term", VoteResp(3, 1, 7, true), 7, kNone},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    Network nw({1, 2, 3}, ClassicOptions());
    Raft& r = nw.raft(1);
    ASSERT_TRUE(r.Campaign().ok());
    (void)nw.Process(1);
    ASSERT_EQ(r.state(), StateType::kCandidate);
    ASSERT_EQ(r.term(), 1u);
    (void)nw.Step(1, c.m);
    EXPECT_EQ(r.state(), StateType::kFollower);
    EXPECT_EQ(r.term(), c.want_term);
    EXPECT_EQ(r.lead(), c.want_lead);
  }
}

// §5.2: "Raft uses randomized election timeouts ... chosen randomly from a
// fixed interval"; here [election_tick, 2*election_tick), drawn anew each
// time the timer is reset. Checked by counting the ticks a follower (and a
// candidate) really waits.
void CheckElectionTimeoutRandomized(bool candidate) {
  const int et = 10;
  Network nw({1, 2, 3}, ClassicOptions([et](Config& c) {
               c.election_tick = et;
             }));
  Raft& r = nw.raft(1);
  std::map<int, int> seen;
  for (int round = 0; round < 200; ++round) {
    if (!candidate) {
      // A heartbeat of a new term: follower with a fresh timer.
      (void)nw.Step(1, Heartbeat(2, 1, r.term() + 1, 0));
      ASSERT_EQ(r.state(), StateType::kFollower);
    } else if (r.state() != StateType::kCandidate) {
      ASSERT_TRUE(r.Campaign().ok());
      (void)nw.Process(1);
    }
    const uint64_t term = r.term();
    const int announced = r.randomized_election_timeout();
    int ticks = 0;
    while (r.term() == term && ticks < 10 * et) {
      (void)nw.Tick(1);
      ++ticks;
    }
    ASSERT_EQ(r.term(), term + 1) << "never timed out";
    EXPECT_EQ(ticks, announced);
    EXPECT_GE(ticks, et);
    EXPECT_LT(ticks, 2 * et);
    ++seen[ticks];
  }
  // Every value of the interval shows up in 200 draws (each has p = 0.1;
  // missing one has probability < 1e-8 for a fair draw).
  EXPECT_EQ(seen.size(), static_cast<size_t>(et));
}

TEST(RaftPaper, FollowerElectionTimeoutRandomized_5_2) {
  CheckElectionTimeoutRandomized(false);
}

TEST(RaftPaper, CandidateElectionTimeoutRandomized_5_2) {
  CheckElectionTimeoutRandomized(true);
}

// §5.2: randomization makes split votes rare: "in most cases only a single
// server will time out". Five followers reset together; count the rounds in
// which the earliest timeout is shared.
TEST(RaftPaper, ElectionTimeoutsRarelyConflict_5_2) {
  const std::vector<NodeId> ids = {1, 2, 3, 4, 5};
  Network nw(ids, ClassicOptions());
  int conflicts = 0;
  const int rounds = 1000;
  for (int round = 0; round < rounds; ++round) {
    std::map<int, int> first_at;  // tick -> how many time out then
    for (NodeId id : ids) {
      Raft& r = nw.raft(id);
      (void)nw.Step(id, Heartbeat(9, id, r.term() + 1, 0));
      const uint64_t term = r.term();
      int ticks = 0;
      while (r.term() == term) {
        (void)nw.Tick(id);
        ++ticks;
      }
      ++first_at[ticks];
    }
    if (first_at.begin()->second > 1) ++conflicts;
  }
  EXPECT_LE(conflicts, rounds * 3 / 10)
      << "too many rounds where two servers time out first together";
}

// §5.2 liveness: with randomized timeouts a cluster that only ticks elects a
// leader, and everyone follows it.
TEST(RaftPaper, ClusterElectsLeaderByTicking_5_2) {
  for (bool classic : {true, false}) {
    for (uint64_t seed = 1; seed <= 5; ++seed) {
      SCOPED_TRACE(absl::StrCat(classic ? "classic" : "default", " seed ",
                                seed));
      Network nw({1, 2, 3, 4, 5}, classic ? ClassicOptions(nullptr, seed)
                                          : DefaultOptions(nullptr, seed));
      int ticks = 0;
      while (nw.Leader() == kNone && ticks < 500) {
        nw.TickAll();
        ++ticks;
      }
      NodeId lead = nw.Leader();
      ASSERT_NE(lead, kNone);
      nw.Heartbeat(lead);
      for (NodeId id : nw.ids()) {
        EXPECT_EQ(nw.raft(id).lead(), lead) << "peer " << id;
        EXPECT_EQ(nw.raft(id).term(), nw.raft(lead).term()) << "peer " << id;
      }
    }
  }
}

// §5.2 Election Safety (Figure 3): "at most one leader can be elected in a
// given term", observed over a long run with message loss and partitions.
TEST(RaftPaper, AtMostOneLeaderPerTerm_5_2) {
  for (uint64_t seed = 1; seed <= 4; ++seed) {
    SCOPED_TRACE(absl::StrCat("seed ", seed));
    const std::vector<NodeId> ids = {1, 2, 3, 4, 5};
    Network nw(ids, seed % 2 ? ClassicOptions(nullptr, seed)
                             : DefaultOptions(nullptr, seed));
    env::SeededRng rng(seed * 7919);
    std::map<uint64_t, NodeId> leader_of_term;
    for (int tick = 0; tick < 3000; ++tick) {
      if (tick % 100 == 0) {
        nw.Recover();
        for (NodeId a : ids) {
          for (NodeId b : ids) {
            if (a != b) nw.Drop(a, b, rng.UniformDouble() * 0.5);
          }
        }
        if (rng.Chance(0.3)) nw.Isolate(ids[rng.Uniform(ids.size())]);
        // Every fifth epoch cuts the leader off so leadership must move.
        if (tick % 500 == 0 && nw.Leader() != kNone) nw.Isolate(nw.Leader());
      }
      nw.TickAll();
      if (tick % 7 == 0) {
        NodeId l = nw.Leader();
        if (l != kNone) (void)nw.Propose(l, absl::StrCat("v", tick));
      }
      for (NodeId id : ids) {
        const Raft& r = nw.raft(id);
        if (r.state() != StateType::kLeader) continue;
        auto [it, fresh] = leader_of_term.emplace(r.term(), id);
        EXPECT_EQ(it->second, id) << "two leaders in term " << r.term();
      }
    }
    nw.ExpectConsistent();
    EXPECT_GT(leader_of_term.size(), 1u) << "the run never changed leader";
  }
}


}  // namespace
}  // namespace detcd::raft
