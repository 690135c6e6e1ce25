// Tests tied to the rules of the Raft paper (Ongaro & Ousterhout, "In Search
// of an Understandable Consensus Algorithm", extended version): one test per
// rule of Figure 2 and §5–§8, plus the extensions of Ongaro's thesis that the
// engine implements (pre-vote §9.6, check-quorum §6.2, leader transfer §3.10,
// learners §4.2.1) and its flow-control limits. Each test names the rule it
// checks and cites the section. In the spirit of etcd-io/raft's
// raft_paper_test.go and raft_test.go; our own code.
#include <gtest/gtest-spi.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <ostream>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "engine/env/env.h"
#include "engine/raft/raft.h"
#include "engine/raft/storage.h"
#include "engine/raft/types.h"
#include "tests/raft/test_network.h"

namespace detcd::raft {

// Readable ConfState in test failures.
void PrintTo(const ConfState& cs, std::ostream* os) {
  *os << "voters=[" << absl::StrJoin(cs.voters, " ") << "] learners=["
      << absl::StrJoin(cs.learners, " ") << "]";
}

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

Message AppResp(NodeId from, NodeId to, uint64_t term, uint64_t index) {
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

Message HeartbeatResp(NodeId from, NodeId to, uint64_t term,
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
std::vector<Message> ElectAlone(Network& nw, NodeId id) {
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

[[maybe_unused]] std::vector<Message> Without(std::vector<Message> msgs,
                                              MessageType t) {
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
  Network nw({1, 2, 3},
             ClassicOptions([](Config& c) { c.heartbeat_tick = 3; }));
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
        {1, 2, 3}, {{1, {EntriesWithTerms(1, {1, 1}), HardState{1, kNone, 0}}}},
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
      {5,
       {{2, false}, {3, false}, {4, false}, {5, false}},
       StateType::kFollower},
      {5,
       {{2, true}, {3, false}, {4, false}, {5, false}},
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
  Network nw({1, 2, 3},
             ClassicOptions([et](Config& c) { c.election_tick = et; }));
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
      SCOPED_TRACE(
          absl::StrCat(classic ? "classic" : "default", " seed ", seed));
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

// ===================================================================
// §5.3 Log replication
// ===================================================================

IT LogOf(const Raft& r) { return IndexTerms(r.log().AllEntries()); }

ConfChange CC(ConfChangeType t, NodeId id) {
  ConfChange cc;
  cc.type = t;
  cc.node_id = id;
  return cc;
}

// §5.3: "The leader appends the command to its log as a new entry, then
// issues AppendEntries RPCs in parallel to each of the other servers to
// replicate the entry." The entry is handed out for persisting in the same
// Ready as the appends (the leader counts itself once it is durable), and it
// is not committed before a majority holds it.
TEST(RaftPaper, LeaderAppendsProposalThenSendsAppend_5_3) {
  Network nw({1, 2, 3}, ClassicOptions());
  ASSERT_TRUE(nw.Campaign(1).ok());
  Raft& r = nw.raft(1);
  ASSERT_EQ(r.log().committed(), 1u);
  ASSERT_TRUE(r.Propose("x").ok());
  EXPECT_EQ(r.log().LastIndex(), 2u);
  EXPECT_EQ(r.log().LastTerm(), 1u);
  EXPECT_EQ(r.log().committed(), 1u);
  ASSERT_TRUE(r.HasReady());
  Ready rd = r.GetReady();
  ASSERT_EQ(rd.entries.size(), 1u);
  EXPECT_EQ(rd.entries[0], Ent(1, 2, "x"));
  EXPECT_TRUE(rd.must_sync);
  EXPECT_TRUE(rd.committed_entries.empty());
  // The appends may leave before the leader's own persist (thesis §10.2.1).
  EXPECT_TRUE(rd.messages.empty());
  ASSERT_EQ(rd.early_messages.size(), 2u);
  EXPECT_EQ(Recipients(rd.early_messages), (std::set<NodeId>{2, 3}));
  for (const Message& m : rd.early_messages) {
    EXPECT_EQ(m.type, MessageType::kApp) << testing::Describe(m);
    EXPECT_EQ(m.term, 1u);
    EXPECT_EQ(m.index, 1u);
    EXPECT_EQ(m.log_term, 1u);
    EXPECT_EQ(m.commit, 1u);
    EXPECT_EQ(m.entries, std::vector<Entry>{Ent(1, 2, "x")});
  }
  // The owner sends, then persists.
  nw.Send(rd.early_messages);
  ASSERT_TRUE(nw.storage(1).Append(rd.entries).ok());
  if (rd.hard_state) nw.storage(1).SetHardState(*rd.hard_state);
  r.Advance(rd);
  EXPECT_EQ(r.log().committed(), 2u);
  EXPECT_EQ(nw.peer(1).AppliedData(), std::vector<std::string>{"x"});
}

// §5.3: "A log entry is committed once the leader that created the entry has
// replicated it on a majority of the servers ... Once the leader has learned
// that a log entry is committed, it applies the entry to its state machine."
TEST(RaftPaper, LeaderCommitsAndAppliesOnMajority_5_3) {
  struct Case {
    int size;
    int acks;  // followers that acknowledge
    bool commit;
  };
  const std::vector<Case> cases = {
      {1, 0, true}, {3, 0, false}, {3, 1, true}, {3, 2, true}, {4, 1, false},
      {4, 2, true}, {5, 1, false}, {5, 2, true}, {5, 4, true},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(absl::StrCat("size=", c.size, " acks=", c.acks));
    std::vector<NodeId> ids;
    for (int k = 1; k <= c.size; ++k) ids.push_back(k);
    Network nw(ids, ClassicOptions());
    ASSERT_TRUE(nw.Campaign(1).ok());
    Raft& r = nw.raft(1);
    ASSERT_EQ(r.state(), StateType::kLeader);
    ASSERT_EQ(r.log().committed(), 1u);
    ASSERT_TRUE(r.Propose("x").ok());
    auto apps = Filter(nw.Process(1), MessageType::kApp);
    ASSERT_EQ(apps.size(), static_cast<size_t>(c.size - 1));
    for (int k = 0; k < c.acks; ++k) {
      for (const Message& resp : nw.Deliver(apps[k])) {
        (void)nw.Step(1, resp);
      }
    }
    EXPECT_EQ(r.log().committed(), c.commit ? 2u : 1u);
    EXPECT_EQ(nw.peer(1).AppliedData(), c.commit ? std::vector<std::string>{"x"}
                                                 : std::vector<std::string>{});
  }
}

// §5.3: "This also commits all preceding entries in the leader's log,
// including entries created by previous leaders." A leader of term 3 whose
// log holds uncommitted entries of terms 1 and 2 commits and applies them
// together with its own.
TEST(RaftPaper, LeaderCommitsPrecedingEntries_5_3) {
  std::map<NodeId, std::pair<std::vector<Entry>, HardState>> logs;
  for (NodeId id : {1, 2, 3}) {
    logs[id] = {EntriesWithTerms(1, {1, 2}), HardState{2, kNone, 0}};
  }
  Network nw = NetworkWithLogs({1, 2, 3}, logs, ClassicOptions());
  ASSERT_TRUE(nw.Campaign(1).ok());
  ASSERT_EQ(nw.raft(1).state(), StateType::kLeader);
  ASSERT_EQ(nw.raft(1).term(), 3u);
  ASSERT_TRUE(nw.Propose(1, "x").ok());
  const IT want = {{1, 1}, {2, 2}, {3, 3}, {4, 3}};
  for (NodeId id : {1, 2, 3}) {
    EXPECT_EQ(nw.raft(id).log().committed(), 4u) << "peer " << id;
    EXPECT_EQ(IndexTerms(nw.peer(id).applied), want) << "peer " << id;
    EXPECT_EQ(nw.peer(id).AppliedData(), std::vector<std::string>{"x"});
  }
}

// §5.3: "The leader keeps track of the highest index it knows to be
// committed, and it includes that index in future AppendEntries RPCs
// (including heartbeats) so that the other servers eventually find out. Once
// a follower learns that a log entry is committed, it applies the entry."
// A follower commits min(leaderCommit, index of last new entry) (Figure 2,
// AppendEntries rule 5).
TEST(RaftPaper, FollowerLearnsCommitFromLeaderAndApplies_5_3) {
  for (uint64_t commit : {0, 1, 2, 5}) {
    SCOPED_TRACE(absl::StrCat("leader commit ", commit));
    Network nw({1, 2, 3}, ClassicOptions());
    Raft& r = nw.raft(1);
    auto out = nw.Step(
        1, App(2, 1, 1, 0, 0, commit, {Ent(1, 1, "a"), Ent(1, 2, "b")}));
    ASSERT_EQ(out.size(), 1u);
    EXPECT_EQ(out[0].type, MessageType::kAppResp);
    EXPECT_FALSE(out[0].reject);
    EXPECT_EQ(out[0].index, 2u);
    const uint64_t want = std::min<uint64_t>(commit, 2);
    EXPECT_EQ(r.log().committed(), want);
    EXPECT_EQ(nw.storage(1).InitialHardState().commit, want);
    std::vector<std::string> applied = {"a", "b"};
    applied.resize(want);
    EXPECT_EQ(nw.peer(1).AppliedData(), applied);
    // A heartbeat carries the commit index too.
    (void)nw.Step(1, Heartbeat(2, 1, 1, 2));
    EXPECT_EQ(r.log().committed(), 2u);
    EXPECT_EQ(nw.peer(1).AppliedData(), (std::vector<std::string>{"a", "b"}));
  }
}

// §5.3 consistency check (Figure 2, AppendEntries rule 2): "If the follower
// does not find an entry in its log with the same index and term [as
// prevLogIndex/prevLogTerm], then it refuses the new entries." The refusal
// tells the leader where the logs can agree (the last index at or below the
// probe whose term is <= prevLogTerm) and leaves the log untouched.
TEST(RaftPaper, FollowerRejectsAppendOnPrevLogMismatch_5_3) {
  struct Case {
    uint64_t log_term, index;
    bool reject;
    uint64_t want_index, hint, hint_term;
  };
  const std::vector<Case> cases = {
      {0, 0, false, 1, 0, 0},  // the empty prefix always matches
      {1, 1, false, 2, 0, 0}, {2, 2, false, 3, 0, 0},
      {1, 2, true, 2, 1, 1},  // term mismatch at index 2
      {3, 3, true, 3, 2, 2},  // index 3 missing
      {2, 5, true, 5, 2, 2},  // far beyond the log
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(absl::StrCat("prev=", c.index, "/", c.log_term));
    Network nw = NetworkWithLogs(
        {1, 2, 3}, {{1, {EntriesWithTerms(1, {1, 2}), HardState{2, kNone, 0}}}},
        ClassicOptions());
    auto out =
        nw.Step(1, App(2, 1, 3, c.log_term, c.index, 0, {Ent(3, c.index + 1)}));
    ASSERT_EQ(out.size(), 1u);
    EXPECT_EQ(out[0].type, MessageType::kAppResp);
    EXPECT_EQ(out[0].reject, c.reject) << testing::Describe(out[0]);
    EXPECT_EQ(out[0].index, c.want_index);
    if (c.reject) {
      EXPECT_EQ(out[0].reject_hint, c.hint);
      EXPECT_EQ(out[0].log_term, c.hint_term);
      EXPECT_EQ(LogOf(nw.raft(1)), (IT{{1, 1}, {2, 2}}));
    } else {
      EXPECT_EQ(nw.raft(1).log().LastIndex(), c.index + 1);
    }
  }
}

// §5.3: "After a rejection, the leader decrements nextIndex and retries the
// AppendEntries RPC"; with the optimization the paper sketches ("the
// follower can include the term of the conflicting entry and the first index
// it stores for that term") the leader skips a whole term per round trip.
// Here one rejection suffices where one-at-a-time backing up would take four.
TEST(RaftPaper, LeaderBacksUpOnRejection_5_3) {
  const auto leader_log = EntriesWithTerms(1, {1, 1, 1, 4, 4, 4, 4});
  Network nw =
      NetworkWithLogs({1, 2, 3},
                      {{1, {leader_log, HardState{4, kNone, 0}}},
                       {2,
                        {EntriesWithTerms(1, {1, 1, 1, 2, 2, 2, 2, 2, 2}),
                         HardState{4, kNone, 0}}},
                       {3, {leader_log, HardState{4, kNone, 0}}}},
                      ClassicOptions());
  ASSERT_TRUE(nw.Campaign(1).ok());
  ASSERT_EQ(nw.raft(1).state(), StateType::kLeader);
  ASSERT_EQ(nw.raft(1).term(), 5u);
  std::vector<Message> to2, from2;
  for (const Message& m : nw.trace()) {
    if (m.type == MessageType::kApp && m.to == 2) to2.push_back(m);
    if (m.type == MessageType::kAppResp && m.from == 2) from2.push_back(m);
  }
  ASSERT_GE(to2.size(), 2u);
  ASSERT_GE(from2.size(), 2u);
  // Probe at the leader's last entry, refused: 2 has term 2 at index 7.
  EXPECT_EQ(to2[0].index, 7u);
  EXPECT_EQ(to2[0].log_term, 4u);
  EXPECT_TRUE(from2[0].reject);
  EXPECT_EQ(from2[0].reject_hint, 7u);
  EXPECT_EQ(from2[0].log_term, 2u);
  // The leader skips every entry of term > 2 and lands on index 3.
  EXPECT_EQ(to2[1].index, 3u);
  EXPECT_EQ(to2[1].log_term, 1u);
  EXPECT_EQ(to2[1].entries.size(), 5u);
  EXPECT_FALSE(from2[1].reject);
  int rejections = 0;
  for (const Message& m : from2) rejections += m.reject ? 1 : 0;
  EXPECT_EQ(rejections, 1);
  EXPECT_EQ(LogOf(nw.raft(2)), LogOf(nw.raft(1)));
  EXPECT_EQ(nw.raft(1).tracker().Get(2)->match, 8u);
}

// §5.3 / Figure 2, AppendEntries rules 3-4: "If an existing entry conflicts
// with a new one (same index but different terms), delete the existing entry
// and all that follow it. Append any new entries not already in the log."
// Entries that agree are kept, and so is whatever follows them.
TEST(RaftPaper, FollowerDeletesConflictsAndAppends_5_3) {
  struct Case {
    uint64_t log_term, index;
    std::vector<Entry> ents;
    IT want;
  };
  const std::vector<Case> cases = {
      {2, 2, {Ent(3, 3)}, {{1, 1}, {2, 2}, {3, 3}}},
      {1, 1, {Ent(3, 2), Ent(4, 3)}, {{1, 1}, {2, 3}, {3, 4}}},
      {0, 0, {Ent(1, 1)}, {{1, 1}, {2, 2}, {3, 2}}},
      {0, 0, {Ent(1, 1), Ent(2, 2)}, {{1, 1}, {2, 2}, {3, 2}}},
      {0, 0, {Ent(3, 1)}, {{1, 3}}},
      {2, 3, {Ent(4, 4), Ent(4, 5)}, {{1, 1}, {2, 2}, {3, 2}, {4, 4}, {5, 4}}},
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    const Case& c = cases[i];
    SCOPED_TRACE(i);
    Network nw = NetworkWithLogs(
        {1, 2, 3},
        {{1, {EntriesWithTerms(1, {1, 2, 2}), HardState{2, kNone, 0}}}},
        ClassicOptions());
    auto out = nw.Step(1, App(2, 1, 5, c.log_term, c.index, 0, c.ents));
    ASSERT_EQ(out.size(), 1u);
    EXPECT_FALSE(out[0].reject);
    EXPECT_EQ(out[0].index, c.index + c.ents.size());
    EXPECT_EQ(LogOf(nw.raft(1)), c.want);
    // What the owner persisted agrees with the log.
    EXPECT_EQ(nw.storage(1).LastIndex(), c.want.back().first);
    EXPECT_EQ(*nw.storage(1).Term(c.want.back().first), c.want.back().second);
  }
}

// §5.3 with a Ready: an append response leaves only once the Ready that
// persists what it acknowledges is persisted. If a newer leader replaces
// those entries before that Ready is taken, they are never persisted and
// the response would be false; it is dropped with the term change (the
// simulator's ready-ordering check caught one).
TEST(RaftPaper, StaleAppendResponseIsDroppedOnANewTerm_5_3) {
  Network nw = NetworkWithLogs(
      {1, 2, 3}, {{1, {EntriesWithTerms(1, {1}), HardState{1, kNone, 0}}}},
      ClassicOptions());
  Raft& r = nw.raft(1);
  // Leader 2 of term 2 sends index 2: its answer waits for the Ready.
  ASSERT_TRUE(r.Step(App(2, 1, 2, 1, 1, 0, {Ent(2, 2)})).ok());
  ASSERT_EQ(Filter(r.pending_messages(), MessageType::kAppResp).size(), 1u);
  // Before the Ready is taken, leader 3 of term 3 replaces index 2.
  ASSERT_TRUE(r.Step(App(3, 1, 3, 1, 1, 0, {Ent(3, 2)})).ok());
  Ready rd = r.GetReady();
  EXPECT_EQ(IndexTerms(rd.entries), (IT{{2, 3}}));
  const std::vector<Message> resps =
      Filter(rd.messages, MessageType::kAppResp);
  ASSERT_EQ(resps.size(), 1u);
  EXPECT_EQ(resps[0].to, 3u);
  EXPECT_EQ(resps[0].term, 3u);
  EXPECT_EQ(resps[0].index, 2u);
}

// §5.3 / Figure 3, Leader Append-Only: "a leader never overwrites or deletes
// entries in its log; it only appends new entries." A leader whose log
// conflicts with a follower's (which holds more entries, of a higher term)
// keeps its own and makes the follower agree.
TEST(RaftPaper, LeaderNeverOverwritesOwnEntries_5_3) {
  Network nw = NetworkWithLogs(
      {1, 2, 3},
      {{1, {EntriesWithTerms(1, {1, 1, 2}), HardState{3, kNone, 0}}},
       {2, {EntriesWithTerms(1, {1, 1, 3, 3, 3}), HardState{3, kNone, 0}}},
       {3, {EntriesWithTerms(1, {1, 1, 2}), HardState{3, kNone, 0}}}},
      ClassicOptions());
  const IT before = LogOf(nw.raft(1));
  ASSERT_TRUE(nw.Campaign(1).ok());
  ASSERT_EQ(nw.raft(1).state(), StateType::kLeader);
  ASSERT_EQ(nw.raft(1).term(), 4u);
  ASSERT_TRUE(nw.Propose(1, "x").ok());
  // A stale append of the old term carrying 2's entries is ignored, and so
  // is a delayed rejection (of an index 2 has since acknowledged): neither
  // touches the leader's log.
  (void)nw.Step(1, App(2, 1, 3, 2, 2, 0, EntriesWithTerms(3, {3, 3, 3})));
  Message rej = Msg(MessageType::kAppResp, 2, 1, 4);
  rej.reject = true;
  rej.index = 5;
  rej.reject_hint = 5;
  rej.log_term = 3;
  nw.Send(nw.Step(1, rej));
  IT want = before;
  want.push_back({4, 4});
  want.push_back({5, 4});
  EXPECT_EQ(LogOf(nw.raft(1)), want);
  for (const Message& m : nw.trace()) {
    if (m.from != 1 || m.type != MessageType::kApp) continue;
    for (const Entry& e : m.entries) {
      EXPECT_EQ(nw.raft(1).log().ZeroTermOnError(e.index), e.term)
          << "sent an entry that is not in the leader's log";
    }
  }
  EXPECT_EQ(LogOf(nw.raft(2)), want);
  nw.ExpectConsistent();
}

// §5.3, Figure 7: "the leader handles inconsistencies by forcing the
// followers' logs to duplicate its own." The leader of term 8 meets each of
// the followers (a)-(f): missing entries (a, b), extra uncommitted entries
// (c, d), and both (e, f); each ends with a log identical to the leader's.
TEST(RaftPaper, LeaderBringsFollowerIntoAgreement_Fig7) {
  const std::vector<uint64_t> leader = {1, 1, 1, 4, 4, 5, 5, 6, 6, 6};
  const std::vector<std::pair<const char*, std::vector<uint64_t>>> followers = {
      {"a", {1, 1, 1, 4, 4, 5, 5, 6, 6}},
      {"b", {1, 1, 1, 4}},
      {"c", {1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 6}},
      {"d", {1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 7, 7}},
      {"e", {1, 1, 1, 4, 4, 4, 4}},
      {"f", {1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3}},
  };
  for (const auto& [name, terms] : followers) {
    SCOPED_TRACE(name);
    // 3 shares the leader's log, so the leader wins term 8 with its vote
    // whatever the follower answers.
    Network nw = NetworkWithLogs(
        {1, 2, 3},
        {{1, {EntriesWithTerms(1, leader), HardState{7, kNone, 0}}},
         {2, {EntriesWithTerms(1, terms), HardState{7, kNone, 0}}},
         {3, {EntriesWithTerms(1, leader), HardState{7, kNone, 0}}}},
        ClassicOptions());
    ASSERT_TRUE(nw.Campaign(1).ok());
    ASSERT_EQ(nw.raft(1).state(), StateType::kLeader);
    ASSERT_EQ(nw.raft(1).term(), 8u);
    IT want = IndexTerms(EntriesWithTerms(1, leader));
    want.push_back({11, 8});
    EXPECT_EQ(LogOf(nw.raft(1)), want);
    EXPECT_EQ(LogOf(nw.raft(2)), want);
    EXPECT_EQ(nw.storage(2).LastIndex(), 11u);
    EXPECT_EQ(nw.raft(2).log().committed(), 11u);
    nw.ExpectConsistent();
  }
}

// ===================================================================
// §5.4 Safety
// ===================================================================

// §5.4.1 election restriction: "the voter denies its vote if its own log is
// more up-to-date than that of the candidate ... If the logs have last
// entries with different terms, then the log with the later term is more
// up-to-date. If the logs end with the same term, then whichever log is
// longer is more up-to-date." The same rule answers pre-votes.
TEST(RaftPaper, VoterRejectsLessUpToDateCandidate_5_4_1) {
  struct Case {
    uint64_t log_term, index;
    bool grant;
  };
  // The voter's log ends at index 3 with term 2.
  const std::vector<Case> cases = {
      {1, 1, false}, {1, 3, false}, {1, 4, false}, {2, 2, false},
      {2, 3, true},  {2, 4, true},  {3, 1, true},  {3, 3, true},
  };
  for (MessageType t : {MessageType::kVote, MessageType::kPreVote}) {
    for (const Case& c : cases) {
      SCOPED_TRACE(
          absl::StrCat(MessageTypeName(t), " last=", c.index, "/", c.log_term));
      Network nw = NetworkWithLogs(
          {1, 2, 3},
          {{1, {EntriesWithTerms(1, {1, 1, 2}), HardState{2, kNone, 0}}}},
          ClassicOptions());
      auto out = nw.Step(1, VoteReq(2, 1, 3, c.log_term, c.index, t));
      ASSERT_EQ(out.size(), 1u);
      EXPECT_EQ(out[0].type, t == MessageType::kVote
                                 ? MessageType::kVoteResp
                                 : MessageType::kPreVoteResp);
      EXPECT_EQ(out[0].reject, !c.grant);
      if (t == MessageType::kVote) {
        EXPECT_EQ(nw.raft(1).vote(), c.grant ? 2u : kNone);
        EXPECT_EQ(nw.raft(1).term(), 3u);
      } else {
        EXPECT_EQ(nw.raft(1).vote(), kNone) << "a pre-vote records no vote";
        EXPECT_EQ(nw.raft(1).term(), 2u) << "a pre-vote changes no term";
      }
    }
  }
}

// Figure 8 of the paper, replayed on five servers. (a)-(b) are set up
// directly: S1 holds entry 2 of term 2 from its term-2 leadership; S5 holds
// entry 2 of term 3 from its term-3 leadership (elected by S3, S4, S5).
// (c) S1 is elected for term 4 by S2 and S3 and replicates its old entry to
// them: the term-2 entry is now on a majority, but S1's term-4 entry
// (index 3) does not get through. The filter drops exactly the appends that
// would store index 3 on a follower; appends the follower would refuse still
// flow, so the leader can back up.
NetworkOptions Figure8Options(bool bug) {
  return ClassicOptions([bug](Config& c) {
    c.max_size_per_msg = 1;  // one entry per append
    if (bug) c.bugs.Plant(planted::Bug::kCommitOldTerm);
  });
}

Network Figure8Network(bool bug) {
  return NetworkWithLogs(
      {1, 2, 3, 4, 5},
      {{1, {EntriesWithTerms(1, {1, 2}), HardState{3, kNone, 1}}},
       {2, {EntriesWithTerms(1, {1}), HardState{2, kNone, 1}}},
       {3, {EntriesWithTerms(1, {1}), HardState{3, 5, 1}}},
       {4, {EntriesWithTerms(1, {1}), HardState{3, 5, 1}}},
       {5, {EntriesWithTerms(1, {1, 3}), HardState{3, 5, 1}}}},
      Figure8Options(bug));
}

void Figure8C(Network& nw) {
  nw.Isolate(4);
  nw.Isolate(5);
  nw.SetFilter([&nw](const Message& m) {
    if (m.type != MessageType::kApp) return true;
    bool carries_3 = false;
    for (const Entry& e : m.entries) carries_3 |= e.index >= 3;
    return !carries_3 || !nw.raft(m.to).log().MatchTerm(m.index, m.log_term);
  });
  ASSERT_TRUE(nw.Campaign(1).ok());
  ASSERT_EQ(nw.raft(1).state(), StateType::kLeader);
  ASSERT_EQ(nw.raft(1).term(), 4u);
  for (NodeId id : {1, 2, 3}) {
    ASSERT_EQ(LogOf(nw.raft(id)).size(), id == 1 ? 3u : 2u) << "peer " << id;
    ASSERT_EQ(nw.raft(id).log().ZeroTermOnError(2), 2u) << "peer " << id;
  }
}

// (d) S1 crashes; S5 is elected (term 5, by S2, S3, S4) and replicates its
// own entry 2 of term 3 over the copies of S2 and S3.
void Figure8D(Network& nw) {
  nw.Recover();
  nw.Isolate(1);
  for (int i = 0; i < 3 && nw.raft(5).state() != StateType::kLeader; ++i) {
    ASSERT_TRUE(nw.Campaign(5).ok());
  }
  ASSERT_EQ(nw.raft(5).state(), StateType::kLeader);
}

// State Machine Safety (Figure 3): no two servers apply different entries
// at the same index. Reports at most one failure.
void ExpectStateMachineSafety(Network& nw) {
  std::map<uint64_t, std::pair<NodeId, uint64_t>> first;  // index -> (id, term)
  for (NodeId id : nw.ids()) {
    for (const Entry& e : nw.peer(id).applied) {
      auto [it, fresh] = first.emplace(e.index, std::make_pair(id, e.term));
      if (!fresh && it->second.second != e.term) {
        ADD_FAILURE() << "State Machine Safety violated at index " << e.index
                      << ": peer " << it->second.first << " applied term "
                      << it->second.second << ", peer " << id
                      << " applied term " << e.term;
        return;
      }
    }
  }
}

// §5.4.2: "Raft never commits log entries from previous terms by counting
// replicas. Only log entries from the leader's current term are committed by
// counting replicas." In Figure 8 (c) the term-2 entry sits on a majority but
// must stay uncommitted, because (d) S5 can still be elected and overwrite
// it; nothing applied is ever lost.
TEST(RaftPaper, LeaderCommitsOnlyCurrentTermByCounting_Fig8_5_4_2) {
  Network nw = Figure8Network(false);
  Figure8C(nw);
  EXPECT_EQ(nw.raft(1).log().committed(), 1u)
      << "committed an entry of an older term by counting replicas";
  EXPECT_EQ(nw.peer(1).applied_index, 1u);
  // The coverage counter saw the situation the rule is about.
  EXPECT_GT(nw.raft(1).coverage().old_term_quorum, 0u);
  Figure8D(nw);
  // S5 (last term 3) won votes from servers already in term 4.
  uint64_t older_votes = 0;
  for (NodeId id : {2, 3, 4}) {
    older_votes += nw.raft(id).coverage().vote_for_older_last_term;
  }
  EXPECT_GT(older_votes, 0u);
  for (NodeId id : {2, 3, 4, 5}) {
    EXPECT_EQ(nw.raft(id).log().ZeroTermOnError(2), 3u) << "peer " << id;
    EXPECT_GE(nw.raft(id).log().committed(), 3u) << "peer " << id;
  }
  ExpectStateMachineSafety(nw);
}

// The planted bug planted::Bug::kCommitOldTerm commits any entry
// stored on a majority. In the same scenario S1 then commits and applies the
// term-2 entry, S5 overwrites it, and the safety check above fails: the test
// can catch the Figure 8 hazard.
TEST(RaftPaper, PlantedBugCommitOldTermByCountBreaksSafety_Fig8_5_4_2) {
  Network nw = Figure8Network(true);
  Figure8C(nw);
  EXPECT_EQ(nw.raft(1).log().committed(), 2u);
  ASSERT_FALSE(nw.peer(1).applied.empty());
  EXPECT_EQ(nw.peer(1).applied.back(), Ent(2, 2));
  Figure8D(nw);
  EXPECT_NONFATAL_FAILURE(ExpectStateMachineSafety(nw),
                          "State Machine Safety violated at index 2");
}

// §5.4.2, Figure 8 (e): "if S1 replicates an entry from its current term on a
// majority of the servers before crashing ... then this entry is committed
// (S5 cannot win an election). At this point all preceding entries in the
// log are committed as well." Old-term entries are committed indirectly.
TEST(RaftPaper, OldTermEntriesCommitIndirectly_Fig8_5_4_2) {
  Network nw = Figure8Network(false);
  Figure8C(nw);
  ASSERT_EQ(nw.raft(1).log().committed(), 1u);
  // The term-4 entry reaches S2 and S3.
  nw.Recover();
  nw.Isolate(4);
  nw.Isolate(5);
  nw.Heartbeat(1);
  EXPECT_EQ(nw.raft(1).log().committed(), 3u);
  EXPECT_EQ(IndexTerms(nw.peer(1).applied), (IT{{1, 1}, {2, 2}, {3, 4}}));
  // S1 crashes; S5 cannot gather a majority against S2 and S3's logs.
  nw.Recover();
  nw.Isolate(1);
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(nw.Campaign(5).ok());
    EXPECT_NE(nw.raft(5).state(), StateType::kLeader);
  }
  for (NodeId id : {2, 3}) {
    EXPECT_EQ(nw.raft(id).log().ZeroTermOnError(2), 2u) << "peer " << id;
  }
  ExpectStateMachineSafety(nw);
}

// ===================================================================
// §5.5 Follower and candidate crashes
// ===================================================================

// §5.5: "If a follower or candidate crashes, then future RequestVote and
// AppendEntries RPCs sent to it will fail. Raft handles these failures by
// retrying indefinitely; if the crashed server restarts, then the RPC will
// complete successfully." The leader keeps contacting the dead follower
// every heartbeat interval and re-sends what it missed once it answers.
TEST(RaftPaper, LeaderRetriesUnresponsiveFollower_5_5) {
  Network nw({1, 2, 3},
             ClassicOptions([](Config& c) { c.heartbeat_tick = 2; }));
  ASSERT_TRUE(nw.Campaign(1).ok());
  nw.Isolate(3);
  ASSERT_TRUE(nw.Propose(1, "x").ok());
  ASSERT_EQ(nw.raft(1).log().committed(), 2u);
  nw.Restart(3);  // crashes and restarts, still unreachable
  for (int round = 0; round < 5; ++round) {
    auto out = nw.Tick(1, 2);
    EXPECT_EQ(Filter(out, MessageType::kHeartbeat, 3).size(), 1u)
        << "round " << round;
    nw.Send(out);
  }
  EXPECT_EQ(nw.raft(3).log().LastIndex(), 1u);
  nw.Recover();
  nw.Send(nw.Tick(1, 2));
  EXPECT_EQ(LogOf(nw.raft(3)), LogOf(nw.raft(1)));
  EXPECT_EQ(nw.raft(3).log().committed(), 2u);
  EXPECT_EQ(nw.peer(3).AppliedData(), std::vector<std::string>{"x"});
}

// §5.5: "Raft RPCs are idempotent, so this causes no harm. For example, if a
// follower receives an AppendEntries request that includes log entries
// already present in its log, it ignores those entries in the new request."
// A repeated append changes nothing and needs nothing persisted; a delayed
// older append does not truncate newer entries; a repeated acknowledgement
// does not move the leader.
TEST(RaftPaper, AppendEntriesIsIdempotent_5_5) {
  Network nw({1, 2, 3}, ClassicOptions());
  Raft& r = nw.raft(1);
  const Message app = App(2, 1, 1, 0, 0, 1, {Ent(1, 1, "a"), Ent(1, 2, "b")});
  auto first = nw.Step(1, app);
  ASSERT_EQ(first.size(), 1u);
  const IT log = LogOf(r);
  ASSERT_EQ(log, (IT{{1, 1}, {2, 1}}));

  ASSERT_TRUE(r.Step(app).ok());
  Ready rd = r.GetReady();
  EXPECT_TRUE(rd.entries.empty());
  EXPECT_FALSE(rd.must_sync);
  EXPECT_TRUE(rd.committed_entries.empty()) << "applied twice";
  // Acknowledged again; the follower may answer with its commit index, as
  // everything up to it agrees with any leader's log.
  ASSERT_EQ(rd.messages.size(), 1u);
  EXPECT_EQ(rd.messages[0].type, MessageType::kAppResp);
  EXPECT_FALSE(rd.messages[0].reject);
  EXPECT_GE(rd.messages[0].index, r.log().committed());
  EXPECT_LE(rd.messages[0].index, first[0].index);
  r.Advance(rd);
  EXPECT_EQ(LogOf(r), log);

  // A delayed duplicate of an older, shorter append.
  auto out = nw.Step(1, App(2, 1, 1, 0, 0, 0, {Ent(1, 1, "a")}));
  ASSERT_EQ(out.size(), 1u);
  EXPECT_FALSE(out[0].reject);
  EXPECT_EQ(out[0].index, 1u);
  EXPECT_EQ(LogOf(r), log);
  EXPECT_EQ(nw.storage(1).LastIndex(), 2u);
  (void)nw.Step(1, Heartbeat(2, 1, 1, 2));
  (void)nw.Step(1, Heartbeat(2, 1, 1, 2));
  EXPECT_EQ(nw.peer(1).AppliedData(), (std::vector<std::string>{"a", "b"}));

  // Leader side: a duplicated acknowledgement is stale and ignored.
  Network n2({1, 2, 3}, ClassicOptions());
  ASSERT_TRUE(n2.Campaign(1).ok());
  ASSERT_TRUE(n2.Propose(1, "x").ok());
  const Progress before = *n2.raft(1).tracker().Get(2);
  EXPECT_TRUE(n2.Step(1, AppResp(2, 1, 1, 2)).empty());
  EXPECT_TRUE(n2.Step(1, AppResp(2, 1, 1, 1)).empty());
  const Progress* after = n2.raft(1).tracker().Get(2);
  EXPECT_EQ(after->match, before.match);
  EXPECT_EQ(after->next, before.next);
  EXPECT_EQ(n2.raft(1).log().committed(), 2u);
}

// ===================================================================
// Figure 2, Rules for Servers: all servers
// ===================================================================

// Figure 2: "If commitIndex > lastApplied: increment lastApplied, apply
// log[lastApplied] to state machine." Entries come out in order, each once,
// never beyond the commit index, possibly over several Readys when a Ready's
// byte budget is small; a restart with Config::applied resumes after it.
TEST(RaftPaper, AppliesCommittedEntriesInOrder_Fig2) {
  Network nw({1, 2, 3}, ClassicOptions([](Config& c) {
               c.max_committed_size_per_ready = 40;  // about two entries
             }));
  Raft& r = nw.raft(1);
  std::vector<Entry> ents;
  for (uint64_t i = 1; i <= 6; ++i) {
    ents.push_back(Ent(1, i, absl::StrCat("e", i)));
  }
  ASSERT_TRUE(r.Step(App(2, 1, 1, 0, 0, 5, ents)).ok());
  std::vector<uint64_t> applied;
  int readys = 0;
  while (r.HasReady()) {
    Ready rd = r.GetReady();
    ++readys;
    if (!rd.entries.empty()) {
      ASSERT_TRUE(nw.storage(1).Append(rd.entries).ok());
    }
    if (rd.hard_state) nw.storage(1).SetHardState(*rd.hard_state);
    for (const Entry& e : rd.committed_entries) {
      EXPECT_LE(e.index, r.log().committed());
      applied.push_back(e.index);
    }
    r.Advance(rd);
    EXPECT_EQ(r.log().applied(), applied.empty() ? 0 : applied.back());
  }
  EXPECT_EQ(applied, (std::vector<uint64_t>{1, 2, 3, 4, 5}));
  EXPECT_GE(readys, 3) << "the Ready byte budget was not honoured";

  // Restart: the state machine already holds up to 3.
  MemoryStorage s;
  s.SetInitialConfState(Voters({1, 2, 3}));
  ASSERT_TRUE(s.Append(ents).ok());
  s.SetHardState(HardState{1, kNone, 5});
  env::SeededRng rng(7);
  Config c;
  c.id = 1;
  c.storage = &s;
  c.rng = &rng;
  c.applied = 3;
  Raft restarted(c);
  ASSERT_TRUE(restarted.HasReady());
  Ready rd = restarted.GetReady();
  EXPECT_EQ(IndexTerms(rd.committed_entries), (IT{{4, 1}, {5, 1}}));
}

// Figure 2: "If RPC request or response contains term T > currentTerm: set
// currentTerm = T, convert to follower." Every kind of message, in a leader
// and a candidate; the new term is persisted.
TEST(RaftPaper, HigherTermInAnyRpcConvertsToFollower_Fig2) {
  struct Case {
    Message m;
    bool sets_leader;
  };
  Message vote_resp = VoteResp(3, 1, 5, true);
  Message app_resp = AppResp(3, 1, 5, 0);
  app_resp.reject = true;
  const std::vector<Case> cases = {
      {App(3, 1, 5, 0, 0, 0), true},   {Heartbeat(3, 1, 5, 0), true},
      {VoteReq(3, 1, 5, 0, 0), false}, {app_resp, false},
      {HeartbeatResp(3, 1, 5), false}, {vote_resp, false},
  };
  for (StateType st : {StateType::kCandidate, StateType::kLeader}) {
    for (const Case& c : cases) {
      SCOPED_TRACE(
          absl::StrCat(StateTypeName(st), " ", testing::Describe(c.m)));
      Network nw({1, 2, 3}, ClassicOptions());
      Raft& r = nw.raft(1);
      ASSERT_TRUE(r.Campaign().ok());
      (void)nw.Process(1);
      if (st == StateType::kLeader) (void)nw.Step(1, VoteResp(2, 1, 1, false));
      ASSERT_EQ(r.state(), st);
      (void)nw.Step(1, c.m);
      EXPECT_EQ(r.state(), StateType::kFollower);
      EXPECT_EQ(r.term(), 5u);
      EXPECT_EQ(r.lead(), c.sets_leader ? 3u : kNone);
      EXPECT_EQ(nw.storage(1).InitialHardState().term, 5u);
    }
  }
}

// ===================================================================
// §6 Cluster membership changes (single-server changes, thesis §4)
// ===================================================================

// Thesis §4.1: a new server is added through a configuration entry in the
// log. The change takes effect when applied; the new voter then counts
// towards the majority (3 of 4). Its log starts empty and outside any
// configuration, so the leader brings it up to date with a snapshot that
// carries the membership (as a compacted leader would; see the disabled
// test below for a joiner fed from index 1).
TEST(RaftPaper, AddVoterThroughLog_6) {
  Network nw({1, 2, 3}, ClassicOptions());
  ASSERT_TRUE(nw.Campaign(1).ok());
  nw.AddPeer(4, nullptr);  // a brand-new, empty server
  nw.Isolate(4);
  Raft& r = nw.raft(1);
  ASSERT_TRUE(r.ProposeConfChange(CC(ConfChangeType::kAddNode, 4)).ok());
  auto held = nw.Process(1);
  EXPECT_EQ(r.tracker().voters(), (std::set<NodeId>{1, 2, 3}))
      << "a conf change must not take effect before it is applied";
  nw.Send(held);
  for (NodeId id : {1, 2, 3}) {
    EXPECT_EQ(nw.peer(id).conf_state, Voters({1, 2, 3, 4})) << "peer " << id;
  }
  EXPECT_EQ(r.tracker().voters(), (std::set<NodeId>{1, 2, 3, 4}));
  nw.Compact(1, r.log().applied());
  nw.Recover();
  nw.Heartbeat(1);
  EXPECT_EQ(nw.peer(4).conf_state, Voters({1, 2, 3, 4}));
  EXPECT_EQ(nw.raft(4).tracker().voters(), (std::set<NodeId>{1, 2, 3, 4}));
  EXPECT_EQ(nw.raft(4).log().LastIndex(), r.log().LastIndex());
  // Quorum is now 3: the leader and 2 are not enough.
  nw.Isolate(3);
  nw.Isolate(4);
  const uint64_t committed = r.log().committed();
  ASSERT_TRUE(nw.Propose(1, "x").ok());
  EXPECT_EQ(r.log().committed(), committed);
  nw.Recover();
  nw.Cut(1, 3);
  nw.Heartbeat(1);  // 4 answers and catches up
  EXPECT_EQ(r.log().committed(), committed + 1);
  EXPECT_EQ(nw.peer(4).AppliedData(), std::vector<std::string>{"x"});
}

// Thesis §4.1: removing a voter through the log. Once applied, the removed
// server gets no more messages and the majority is computed over the
// remaining voters (here both of {1, 2}).
TEST(RaftPaper, RemoveVoterThroughLog_6) {
  Network nw({1, 2, 3}, ClassicOptions());
  ASSERT_TRUE(nw.Campaign(1).ok());
  ASSERT_TRUE(nw.ProposeConfChange(1, CC(ConfChangeType::kRemoveNode, 3)).ok());
  for (NodeId id : {1, 2}) {
    EXPECT_EQ(nw.peer(id).conf_state, Voters({1, 2})) << "peer " << id;
  }
  Raft& r = nw.raft(1);
  nw.ClearTrace();
  ASSERT_TRUE(nw.Propose(1, "a").ok());
  nw.Heartbeat(1);
  for (const Message& m : nw.trace()) {
    EXPECT_NE(m.to, 3u) << "message to a removed server: "
                        << testing::Describe(m);
  }
  EXPECT_EQ(nw.peer(1).AppliedData(), std::vector<std::string>{"a"});
  nw.Cut(1, 2);
  const uint64_t committed = r.log().committed();
  ASSERT_TRUE(nw.Propose(1, "b").ok());
  EXPECT_EQ(r.log().committed(), committed) << "committed without 2";
}

// Thesis §4.2.2: a leader that is removed from the configuration steps down
// once the change is committed (applied); the remaining servers elect a new
// leader among themselves, and the removed one never campaigns.
TEST(RaftPaper, RemovedLeaderStepsDown_6) {
  Network nw({1, 2, 3}, DefaultOptions());
  ASSERT_TRUE(nw.Campaign(1).ok());
  ASSERT_TRUE(nw.ProposeConfChange(1, CC(ConfChangeType::kRemoveNode, 1)).ok());
  Raft& r = nw.raft(1);
  EXPECT_EQ(r.state(), StateType::kFollower);
  EXPECT_EQ(r.lead(), kNone);
  EXPECT_TRUE(absl::IsUnavailable(r.Propose("x")));
  for (NodeId id : {2, 3}) {
    EXPECT_EQ(nw.peer(id).conf_state, Voters({2, 3})) << "peer " << id;
  }
  int ticks = 0;
  while ((nw.Leader() == kNone || nw.Leader() == 1) && ticks < 200) {
    nw.TickAll();
    ++ticks;
  }
  NodeId lead = nw.Leader();
  ASSERT_TRUE(lead == 2 || lead == 3) << lead;
  EXPECT_EQ(r.state(), StateType::kFollower);
  EXPECT_EQ(r.term(), 1u) << "the removed server campaigned";
  ASSERT_TRUE(nw.Propose(lead, "y").ok());
  EXPECT_EQ(nw.peer(lead).AppliedData(), std::vector<std::string>{"y"});
}

// Thesis §4.2.1: learners (non-voting members) receive the log but neither
// campaign, nor are asked for votes, nor count towards the commit majority.
TEST(RaftPaper, LearnerNeitherVotesNorCountsForCommit_6) {
  NetworkOptions o = ClassicOptions();
  o.learners = {3};
  Network nw({1, 2, 3}, o);
  Raft& l = nw.raft(3);
  EXPECT_TRUE(l.is_learner());
  EXPECT_TRUE(nw.Tick(3, 5 * l.config().election_tick).empty());
  ASSERT_TRUE(nw.Campaign(3).ok());
  EXPECT_EQ(l.state(), StateType::kFollower);
  EXPECT_EQ(l.term(), 0u);

  ASSERT_TRUE(nw.Campaign(1).ok());
  ASSERT_EQ(nw.raft(1).state(), StateType::kLeader);
  for (const Message& m : nw.trace()) {
    EXPECT_FALSE(m.type == MessageType::kVote && m.to == 3)
        << "asked a learner for its vote";
  }
  EXPECT_EQ(nw.peer(3).conf_state, Voters({1, 2}, {3}));
  nw.Isolate(2);
  const uint64_t committed = nw.raft(1).log().committed();
  ASSERT_TRUE(nw.Propose(1, "x").ok());
  EXPECT_EQ(l.log().LastIndex(), nw.raft(1).log().LastIndex())
      << "the learner did not receive the entry";
  EXPECT_EQ(nw.raft(1).log().committed(), committed)
      << "the learner's copy was counted";
}

// Thesis §4.2.1: a learner is promoted to voter by a conf change once it has
// caught up (a lagging learner is refused); then it counts for commit.
TEST(RaftPaper, PromoteLearnerToVoter_6) {
  NetworkOptions o = ClassicOptions([](Config& c) { c.max_learner_lag = 0; });
  o.learners = {3};
  Network nw({1, 2, 3}, o);
  ASSERT_TRUE(nw.Campaign(1).ok());
  nw.Isolate(3);
  ASSERT_TRUE(nw.Propose(1, "x").ok());
  absl::Status s = nw.ProposeConfChange(1, CC(ConfChangeType::kAddNode, 3));
  EXPECT_TRUE(absl::IsFailedPrecondition(s)) << s;
  nw.Recover();
  nw.Heartbeat(1);  // catches up
  ASSERT_TRUE(nw.ProposeConfChange(1, CC(ConfChangeType::kAddNode, 3)).ok());
  for (NodeId id : {1, 2, 3}) {
    EXPECT_EQ(nw.peer(id).conf_state, Voters({1, 2, 3})) << "peer " << id;
  }
  EXPECT_FALSE(nw.raft(3).is_learner());
  nw.Isolate(2);
  const uint64_t committed = nw.raft(1).log().committed();
  ASSERT_TRUE(nw.Propose(1, "y").ok());
  EXPECT_EQ(nw.raft(1).log().committed(), committed + 1);
}

// Thesis §4.1: "the leader ... will not begin a new configuration change
// until the previous one has committed" (here: applied). A second conf
// change is dropped while one is pending; ordinary proposals still flow.
TEST(RaftPaper, OneConfChangeAtATime_6) {
  Network nw({1, 2, 3}, ClassicOptions());
  ASSERT_TRUE(nw.Campaign(1).ok());
  nw.AddPeer(4, nullptr);
  nw.AddPeer(5, nullptr);
  Raft& r = nw.raft(1);
  ASSERT_TRUE(r.ProposeConfChange(CC(ConfChangeType::kAddNode, 4)).ok());
  auto held = nw.Process(1);  // not delivered: the change stays pending
  absl::Status s = r.ProposeConfChange(CC(ConfChangeType::kAddNode, 5));
  EXPECT_TRUE(absl::IsUnavailable(s)) << s;
  EXPECT_TRUE(r.Propose("x").ok());
  auto more = nw.Process(1);
  held.insert(held.end(), more.begin(), more.end());
  nw.Send(held);
  EXPECT_EQ(nw.peer(1).conf_state, Voters({1, 2, 3, 4}));
  EXPECT_EQ(nw.peer(1).AppliedData(), std::vector<std::string>{"x"});
  // Applied: the next change is accepted.
  ASSERT_TRUE(nw.ProposeConfChange(1, CC(ConfChangeType::kAddNode, 5)).ok());
  EXPECT_EQ(nw.peer(1).conf_state, Voters({1, 2, 3, 4, 5}));
}

// raft.h: a leader accepts a conf change "only after it has committed an
// entry of its own term (which closes the single-server-change hazard
// described on raft-dev in 2015)": a freshly elected leader drops conf
// changes until its term's first entry is applied, even when everything
// before it is already applied.
TEST(RaftPaper, NewLeaderDefersConfChangeUntilOwnTermEntryApplied_6) {
  Network nw({1, 2, 3}, ClassicOptions());
  ASSERT_TRUE(nw.Campaign(1).ok());
  ASSERT_TRUE(nw.Propose(1, "x").ok());
  ASSERT_EQ(nw.raft(2).log().applied(), 2u);
  // 2 takes over in term 2; its empty entry is not committed yet.
  auto out = ElectAlone(nw, 2);
  Raft& r = nw.raft(2);
  ASSERT_EQ(r.term(), 2u);
  ASSERT_EQ(r.log().applied(), 2u);
  absl::Status s = r.ProposeConfChange(CC(ConfChangeType::kRemoveNode, 3));
  EXPECT_TRUE(absl::IsUnavailable(s)) << s;
  nw.Send(out);
  ASSERT_EQ(r.log().applied(), 3u);
  EXPECT_TRUE(nw.ProposeConfChange(2, CC(ConfChangeType::kRemoveNode, 3)).ok());
  EXPECT_EQ(nw.peer(2).conf_state, Voters({1, 2}));
}

// §5.3: "If an existing entry conflicts with a new one ... delete the
// existing entry and all that follow it" -- and only then. A late, shorter
// append keeps the entries after it, and the follower acknowledges only
// what the append covered (the coverage counter marks the situation).
TEST(RaftPaper, StaleAppendKeepsTailAndAcksOnlyItsOwnEntries_5_3) {
  Network nw({1, 2, 3}, ClassicOptions());
  ASSERT_TRUE(nw.Campaign(1).ok());
  // Nothing past index 1 commits, so the late append is above the
  // follower's commit index and really goes through the append rule.
  nw.Ignore(MessageType::kAppResp);
  ASSERT_TRUE(nw.Propose(1, "x").ok());
  ASSERT_TRUE(nw.Propose(1, "y").ok());
  ASSERT_EQ(nw.raft(2).log().LastIndex(), 3u);
  ASSERT_EQ(nw.raft(2).log().committed(), 1u);
  auto ents = nw.raft(1).log().EntriesFrom(2, UINT64_MAX);
  ASSERT_TRUE(ents.ok());
  Message m;
  m.type = MessageType::kApp;
  m.from = 1;
  m.to = 2;
  m.term = 1;
  m.index = 1;
  m.log_term = 1;
  m.entries = {ents->at(0)};  // index 2 only
  const uint64_t before = nw.raft(2).coverage().follower_tail_beyond_append;
  auto out = nw.Step(2, m);
  auto resps = Filter(out, MessageType::kAppResp);
  ASSERT_EQ(resps.size(), 1u);
  EXPECT_FALSE(resps[0].reject);
  EXPECT_EQ(resps[0].index, 2u);
  EXPECT_EQ(nw.raft(2).log().LastIndex(), 3u);
  EXPECT_EQ(nw.raft(2).coverage().follower_tail_beyond_append, before + 1);
}

// A conf change refused because the leader holds too many uncommitted
// bytes never made it into the log, so it must not count as pending: once
// the log drains, the next conf change is accepted.
TEST(RaftPaper, RefusedConfChangeIsNotPending_6) {
  Network nw({1, 2, 3}, ClassicOptions([](Config& c) {
               c.max_uncommitted_entries_size = 300;
             }));
  ASSERT_TRUE(nw.Campaign(1).ok());
  nw.AddPeer(4, nullptr);
  nw.Isolate(1);
  const std::string v(100, 'v');
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(nw.Propose(1, v).ok()) << i;
  const uint64_t last = nw.raft(1).log().LastIndex();
  absl::Status s =
      nw.raft(1).ProposeConfChange(CC(ConfChangeType::kAddNode, 4));
  ASSERT_TRUE(absl::IsUnavailable(s)) << s;
  EXPECT_EQ(nw.raft(1).log().LastIndex(), last);
  nw.Recover();
  nw.Heartbeat(1);
  ASSERT_EQ(nw.raft(1).log().applied(), last);
  EXPECT_TRUE(nw.ProposeConfChange(1, CC(ConfChangeType::kAddNode, 4)).ok());
  EXPECT_EQ(nw.peer(1).conf_state, Voters({1, 2, 3, 4}));
}

// ===================================================================
// §7 Log compaction
// ===================================================================

// §7: "the leader must occasionally send snapshots to followers that lag
// behind ... when the leader has already discarded the next log entry that
// it needs to send to a follower." The follower installs it, then ordinary
// appends continue from the snapshot's index.
TEST(RaftPaper, LaggingFollowerGetsSnapshotThenAppends_7) {
  Network nw({1, 2, 3}, ClassicOptions());
  ASSERT_TRUE(nw.Campaign(1).ok());
  nw.Isolate(3);
  for (int i = 0; i < 10; ++i) {
    ASSERT_TRUE(nw.Propose(1, absl::StrCat("v", i)).ok());
  }
  const uint64_t ci = nw.raft(1).log().committed();
  ASSERT_EQ(ci, 11u);
  nw.Compact(1, ci, "image@11");
  // The entries covered by the snapshot are gone from the leader.
  EXPECT_EQ(nw.raft(1).log().FirstIndex(), ci + 1);
  EXPECT_FALSE(nw.raft(1).log().Term(ci - 1).ok());

  nw.Recover();
  nw.ClearTrace();
  nw.Heartbeat(1);
  auto snaps = Filter(nw.trace(), MessageType::kSnap, 3);
  ASSERT_EQ(snaps.size(), 1u);
  ASSERT_NE(snaps[0].snapshot, nullptr);
  EXPECT_EQ(snaps[0].snapshot->metadata.index, ci);
  EXPECT_EQ(snaps[0].snapshot->metadata.conf_state, Voters({1, 2, 3}));
  Raft& f = nw.raft(3);
  EXPECT_EQ(f.log().FirstIndex(), ci + 1);
  EXPECT_EQ(f.log().committed(), ci);
  EXPECT_EQ(nw.storage(3).snapshot().metadata.index, ci);
  EXPECT_EQ(nw.peer(3).snapshot_data, "image@11");
  EXPECT_EQ(nw.raft(1).tracker().Get(3)->match, ci);
  EXPECT_EQ(nw.raft(1).tracker().Get(3)->state, ProgressState::kReplicate);

  nw.ClearTrace();
  ASSERT_TRUE(nw.Propose(1, "after").ok());
  EXPECT_TRUE(Filter(nw.trace(), MessageType::kSnap).empty());
  EXPECT_FALSE(Filter(nw.trace(), MessageType::kApp, 3).empty());
  EXPECT_EQ(nw.peer(3).AppliedData(), std::vector<std::string>{"after"});
  EXPECT_EQ(f.log().LastIndex(), ci + 1);
  nw.ExpectConsistent();
}

// §7 / Figure 13, InstallSnapshot rules 6-7: "If existing log entry has same
// index and term as snapshot's last included entry, retain log entries
// following it and reply. Discard the entire log" otherwise.
TEST(RaftPaper, FollowerInstallsSnapshotDiscardingItsLog_7) {
  auto snap_msg = [](uint64_t index, uint64_t term) {
    auto s = std::make_shared<Snapshot>();
    s->data = "image";
    s->metadata.index = index;
    s->metadata.term = term;
    s->metadata.conf_state = Voters({1, 2, 3});
    Message m = Msg(MessageType::kSnap, 2, 1, 3);
    m.snapshot = std::move(s);
    return m;
  };
  {
    SCOPED_TRACE("conflicting log: discarded");
    Network nw = NetworkWithLogs(
        {1, 2, 3},
        {{1, {EntriesWithTerms(1, {1, 1, 2, 2}), HardState{2, kNone, 0}}}},
        ClassicOptions());
    auto out = nw.Step(1, snap_msg(5, 3));
    ASSERT_EQ(out.size(), 1u);
    EXPECT_EQ(out[0].type, MessageType::kAppResp);
    EXPECT_EQ(out[0].index, 5u);
    Raft& r = nw.raft(1);
    EXPECT_EQ(r.log().FirstIndex(), 6u);
    EXPECT_EQ(r.log().LastIndex(), 5u);
    EXPECT_EQ(r.log().committed(), 5u);
    EXPECT_EQ(nw.storage(1).snapshot().metadata.index, 5u);
    EXPECT_EQ(nw.peer(1).snapshot_data, "image");
    EXPECT_EQ(nw.peer(1).applied_index, 5u);
  }
  {
    SCOPED_TRACE("matching log: retained");
    Network nw = NetworkWithLogs(
        {1, 2, 3},
        {{1, {EntriesWithTerms(1, {1, 1, 2, 2, 2}), HardState{2, kNone, 0}}}},
        ClassicOptions());
    auto out = nw.Step(1, snap_msg(3, 2));
    ASSERT_EQ(out.size(), 1u);
    EXPECT_EQ(out[0].index, 3u);
    Raft& r = nw.raft(1);
    EXPECT_EQ(LogOf(r), (IT{{1, 1}, {2, 1}, {3, 2}, {4, 2}, {5, 2}}));
    EXPECT_EQ(r.log().committed(), 3u);
    EXPECT_EQ(nw.storage(1).snapshot().metadata.index, 0u)
        << "installed a snapshot the log already covers";
  }
}

// ===================================================================
// §8 Client interaction (linearizable reads, thesis §6.4)
// ===================================================================

// §8: a leader answers a read-only request only after it "exchange[s]
// heartbeat messages with a majority of the cluster" to check it has not
// been deposed. The read index is the commit index at the time of the
// request.
TEST(RaftPaper, ReadIndexWaitsForHeartbeatQuorum_8) {
  Network nw({1, 2, 3, 4, 5}, ClassicOptions());
  ASSERT_TRUE(nw.Campaign(1).ok());
  ASSERT_TRUE(nw.Propose(1, "x").ok());
  Raft& r = nw.raft(1);
  ASSERT_TRUE(r.ReadIndex("rd").ok());
  auto out = nw.Process(1);
  auto hbs = Filter(out, MessageType::kHeartbeat);
  ASSERT_EQ(hbs.size(), 4u);
  for (const Message& m : hbs) {
    EXPECT_EQ(m.context, "rd");
  }
  EXPECT_TRUE(nw.peer(1).read_states.empty());
  (void)nw.Step(1, HeartbeatResp(2, 1, 1, "rd"));
  (void)nw.Step(1, HeartbeatResp(2, 1, 1, "rd"));  // the same voter again
  EXPECT_TRUE(nw.peer(1).read_states.empty()) << "answered without a quorum";
  (void)nw.Step(1, HeartbeatResp(3, 1, 1, "rd"));
  EXPECT_EQ(nw.peer(1).read_states, (std::vector<ReadState>{{2, "rd"}}));
}

// §8: "a leader must have the latest information on which entries are
// committed ... Raft handles this by having each leader commit a blank
// no-op entry into the log at the start of its term." A new leader holds a
// read until an entry of its term commits.
TEST(RaftPaper, ReadIndexWaitsForCurrentTermCommit_8) {
  Network nw({1, 2, 3}, ClassicOptions());
  ASSERT_TRUE(nw.Campaign(1).ok());
  ASSERT_TRUE(nw.Propose(1, "x").ok());
  auto out = ElectAlone(nw, 2);  // term 2; its blank entry 3 is not committed
  Raft& r = nw.raft(2);
  ASSERT_EQ(r.log().committed(), 2u);
  ASSERT_TRUE(r.ReadIndex("rd").ok());
  auto held = nw.Process(2);
  for (const Message& m : held) {
    EXPECT_NE(m.type, MessageType::kHeartbeat) << testing::Describe(m);
  }
  EXPECT_TRUE(nw.peer(2).read_states.empty());
  out.insert(out.end(), held.begin(), held.end());
  nw.Send(out);
  EXPECT_EQ(r.log().committed(), 3u);
  EXPECT_EQ(nw.peer(2).read_states, (std::vector<ReadState>{{3, "rd"}}));
}

// The planted bug readindex-without-quorum answers at once: a leader cut
// off from every follower still hands out a read index (which is what
// makes a deposed leader serve stale reads).
TEST(RaftPaper, PlantedBugReadIndexWithoutQuorumAnswersAlone_8) {
  Network nw({1, 2, 3}, ClassicOptions([](Config& c) {
               c.bugs.Plant(planted::Bug::kReadIndexWithoutQuorum);
             }));
  ASSERT_TRUE(nw.Campaign(1).ok());
  ASSERT_TRUE(nw.Propose(1, "x").ok());
  nw.Isolate(1);
  ASSERT_TRUE(nw.ReadIndex(1, "rd").ok());
  EXPECT_EQ(nw.peer(1).read_states, (std::vector<ReadState>{{2, "rd"}}));
}

// §8 / thesis §6.4: a follower forwards a read request to the leader, which
// confirms its leadership and returns the read index; without a known
// leader the request is dropped.
TEST(RaftPaper, ReadIndexOnFollowerIsForwarded_8) {
  Network nw({1, 2, 3}, ClassicOptions());
  EXPECT_TRUE(absl::IsUnavailable(nw.raft(2).ReadIndex("early")));
  ASSERT_TRUE(nw.Campaign(1).ok());
  ASSERT_TRUE(nw.Propose(1, "x").ok());
  nw.ClearTrace();
  ASSERT_TRUE(nw.ReadIndex(2, "f").ok());
  auto fwd = Filter(nw.trace(), MessageType::kReadIndex, 1);
  ASSERT_EQ(fwd.size(), 1u);
  EXPECT_EQ(fwd[0].from, 2u);
  auto resp = Filter(nw.trace(), MessageType::kReadIndexResp, 2);
  ASSERT_EQ(resp.size(), 1u);
  EXPECT_EQ(resp[0].index, 2u);
  EXPECT_EQ(nw.peer(2).read_states, (std::vector<ReadState>{{2, "f"}}));
  EXPECT_TRUE(nw.peer(1).read_states.empty());
}

// ===================================================================
// Thesis extensions: pre-vote (§9.6), check-quorum (§6.2), leader transfer
// (§3.10), flow control
// ===================================================================

// Thesis §9.6: with pre-vote, a server cut off from the cluster cannot win
// a pre-election, so it never bumps its term, and when it rejoins it does
// not disrupt the stable leader. (Without pre-vote its term runs away and
// the leader is deposed.)
TEST(RaftPaper, PreVoteRejoiningNodeDoesNotDisrupt_9_6) {
  for (bool pre_vote : {true, false}) {
    SCOPED_TRACE(pre_vote ? "pre-vote" : "classic");
    Network nw({1, 2, 3}, pre_vote ? DefaultOptions() : ClassicOptions());
    ASSERT_TRUE(nw.Campaign(1).ok());
    ASSERT_EQ(nw.raft(1).term(), 1u);
    nw.Isolate(3);
    nw.TickAll(100);
    nw.Recover();
    nw.TickAll(50);
    if (pre_vote) {
      EXPECT_EQ(nw.raft(3).term(), 1u);
      EXPECT_EQ(nw.Leader(), 1u);
      for (NodeId id : {1, 2, 3}) {
        EXPECT_EQ(nw.raft(id).term(), 1u) << "peer " << id;
        EXPECT_EQ(nw.raft(id).lead(), 1u) << "peer " << id;
      }
    } else {
      EXPECT_GT(nw.raft(1).term(), 1u) << "expected the classic disruption";
    }
  }
}

// Thesis §9.6: answering a pre-vote changes neither the voter's term nor its
// vote; the answer carries the candidate's prospective term.
TEST(RaftPaper, PreVoteChangesNoState_9_6) {
  Network nw = NetworkWithLogs(
      {1, 2, 3}, {{1, {EntriesWithTerms(1, {1}), HardState{1, kNone, 1}}}},
      DefaultOptions());
  auto out = nw.Step(1, VoteReq(2, 1, 2, 1, 1, MessageType::kPreVote));
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].type, MessageType::kPreVoteResp);
  EXPECT_FALSE(out[0].reject);
  EXPECT_EQ(out[0].term, 2u);
  EXPECT_EQ(nw.raft(1).term(), 1u);
  EXPECT_EQ(nw.raft(1).vote(), kNone);
  EXPECT_EQ(nw.storage(1).InitialHardState(), (HardState{1, kNone, 1}));
  // A second pre-candidate of the same term is granted as well: nothing was
  // recorded.
  out = nw.Step(1, VoteReq(3, 1, 2, 1, 1, MessageType::kPreVote));
  ASSERT_EQ(out.size(), 1u);
  EXPECT_FALSE(out[0].reject);
}

// Thesis §6.2: "a leader steps down if an election timeout elapses without a
// successful round of heartbeats to a majority of its cluster."
TEST(RaftPaper, CheckQuorumLeaderStepsDown_6_2) {
  Network nw({1, 2, 3}, DefaultOptions());
  ASSERT_TRUE(nw.Campaign(1).ok());
  Raft& r = nw.raft(1);
  const int et = r.config().election_tick;
  nw.TickAll(5 * et);
  ASSERT_EQ(r.state(), StateType::kLeader) << "stepped down with a quorum";
  nw.Isolate(1);
  int ticks = 0;
  while (r.state() == StateType::kLeader && ticks < 3 * et) {
    (void)nw.Tick(1);
    ++ticks;
  }
  EXPECT_EQ(r.state(), StateType::kFollower);
  EXPECT_GT(ticks, et - 1);
  EXPECT_LE(ticks, 2 * et);
  EXPECT_EQ(r.term(), 1u);
}

// Thesis §4.2.3 / §6.2: with check-quorum, a server that heard from a leader
// within the minimum election timeout ignores vote requests (a leader
// transfer is the exception), so a disruptive server cannot depose it.
TEST(RaftPaper, CheckQuorumFollowerIgnoresVotesInLease_6_2) {
  Network nw({1, 2, 3}, DefaultOptions());
  ASSERT_TRUE(nw.Campaign(1).ok());
  Raft& f = nw.raft(2);
  f.set_randomized_election_timeout(1000);
  for (MessageType t : {MessageType::kVote, MessageType::kPreVote}) {
    auto out = nw.Step(2, VoteReq(3, 2, 2, 1, 1, t));
    EXPECT_TRUE(out.empty()) << MessageTypeName(t);
  }
  EXPECT_EQ(f.term(), 1u);
  EXPECT_EQ(f.lead(), 1u);
  // A transfer campaign is heard even in the lease.
  {
    Network n2({1, 2, 3}, DefaultOptions());
    ASSERT_TRUE(n2.Campaign(1).ok());
    Message m = VoteReq(3, 2, 2, 1, 1);
    m.context = "transfer";
    auto out = n2.Step(2, m);
    ASSERT_EQ(out.size(), 1u);
    EXPECT_FALSE(out[0].reject);
    EXPECT_EQ(n2.raft(2).term(), 2u);
  }
  // Once the lease has expired the request is considered.
  (void)nw.Tick(2, f.config().election_tick);
  ASSERT_EQ(f.state(), StateType::kFollower);
  auto out = nw.Step(2, VoteReq(3, 2, 2, 1, 1));
  ASSERT_EQ(out.size(), 1u);
  EXPECT_FALSE(out[0].reject);
  EXPECT_EQ(f.term(), 2u);
  EXPECT_EQ(f.vote(), 3u);
}

// Thesis §3.10: to transfer leadership, the leader brings the target up to
// date and sends it TimeoutNow; the target starts an election at once
// (skipping pre-vote and the voters' lease) and wins. A request made at a
// follower is forwarded to the leader; a transfer to the leader itself or to
// a non-member is ignored.
TEST(RaftPaper, LeaderTransferToUpToDateFollower_3_10) {
  Network nw({1, 2, 3}, DefaultOptions());
  ASSERT_TRUE(nw.Campaign(1).ok());
  nw.TransferLeader(1, 1);
  nw.TransferLeader(1, 9);
  EXPECT_EQ(nw.raft(1).lead_transferee(), kNone);
  EXPECT_EQ(nw.raft(1).state(), StateType::kLeader);

  nw.ClearTrace();
  nw.TransferLeader(1, 2);
  auto tn = Filter(nw.trace(), MessageType::kTimeoutNow, 2);
  ASSERT_EQ(tn.size(), 1u);
  EXPECT_EQ(tn[0].from, 1u);
  EXPECT_EQ(nw.raft(2).state(), StateType::kLeader);
  EXPECT_EQ(nw.raft(2).term(), 2u);
  EXPECT_EQ(nw.raft(1).state(), StateType::kFollower);
  EXPECT_EQ(nw.raft(1).lead(), 2u);

  // Asked at the transferee itself.
  nw.TransferLeader(3, 3);
  EXPECT_EQ(nw.raft(3).state(), StateType::kLeader);
  EXPECT_EQ(nw.raft(3).term(), 3u);
  EXPECT_EQ(nw.Leader(), 3u);
}

// Thesis §3.10: "the prior leader ... stops accepting new client requests"
// during a transfer; a lagging target is first brought up to date, then
// sent TimeoutNow.
TEST(RaftPaper, LeaderTransferToLaggingFollower_3_10) {
  Network nw({1, 2, 3}, DefaultOptions());
  ASSERT_TRUE(nw.Campaign(1).ok());
  nw.Isolate(3);
  ASSERT_TRUE(nw.Propose(1, "x").ok());
  nw.TransferLeader(1, 3);
  EXPECT_EQ(nw.raft(1).lead_transferee(), 3u);
  EXPECT_EQ(nw.raft(1).state(), StateType::kLeader);
  EXPECT_TRUE(absl::IsUnavailable(nw.Propose(1, "dropped")));
  nw.Recover();
  nw.Heartbeat(1);
  EXPECT_EQ(nw.raft(3).state(), StateType::kLeader);
  EXPECT_EQ(nw.raft(3).term(), 2u);
  EXPECT_EQ(nw.raft(1).state(), StateType::kFollower);
  ASSERT_TRUE(nw.Propose(3, "y").ok());
  EXPECT_EQ(nw.peer(3).AppliedData(), (std::vector<std::string>{"x", "y"}));
}

// Thesis §3.10: "If the transfer does not complete within an election
// timeout, the prior leader aborts the transfer and resumes accepting client
// requests."
TEST(RaftPaper, LeaderTransferAbortsAfterElectionTimeout_3_10) {
  Network nw({1, 2, 3}, DefaultOptions());
  ASSERT_TRUE(nw.Campaign(1).ok());
  nw.Isolate(3);
  nw.TransferLeader(1, 3);
  Raft& r = nw.raft(1);
  ASSERT_EQ(r.lead_transferee(), 3u);
  const int et = r.config().election_tick;
  for (int i = 0; i < et - 1; ++i) nw.Send(nw.Tick(1));
  EXPECT_EQ(r.lead_transferee(), 3u);
  EXPECT_TRUE(absl::IsUnavailable(nw.Propose(1, "dropped")));
  nw.Send(nw.Tick(1));
  EXPECT_EQ(r.lead_transferee(), kNone);
  EXPECT_EQ(r.state(), StateType::kLeader);
  EXPECT_TRUE(nw.Propose(1, "x").ok());
  EXPECT_EQ(nw.peer(1).AppliedData(), std::vector<std::string>{"x"});
}

// Flow control: at most max_inflight_msgs unacknowledged appends per
// follower; acknowledgements (or a heartbeat answer) open the window again.
TEST(RaftPaper, FlowControlMaxInflightMsgs) {
  Network nw({1, 2, 3},
             ClassicOptions([](Config& c) { c.max_inflight_msgs = 3; }));
  ASSERT_TRUE(nw.Campaign(1).ok());
  nw.Drop(2, 1, 1.0);  // 2's acknowledgements are lost
  nw.ClearTrace();
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(nw.Propose(1, "v").ok());
  size_t sent = 0;
  for (const Message& m : Filter(nw.trace(), MessageType::kApp, 2)) {
    sent += m.entries.empty() ? 0 : 1;
  }
  EXPECT_EQ(sent, 3u);
  const Progress* pr = nw.raft(1).tracker().Get(2);
  EXPECT_EQ(pr->inflights.Count(), 3);
  EXPECT_TRUE(pr->IsPaused());
  EXPECT_EQ(nw.raft(1).log().committed(), 11u) << "3 still acknowledges";
  nw.Recover();
  nw.Heartbeat(1);
  EXPECT_EQ(nw.raft(2).log().LastIndex(), 11u);
  EXPECT_EQ(nw.raft(1).tracker().Get(2)->match, 11u);
}

// Nagle's rule (Config::hold_small_appends): three members led by 1, and
// the appends of a first proposal to 2 and 3, not yet delivered.
class HoldSmallAppends : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(nw_.Campaign(1).ok());
    ASSERT_TRUE(r_.Propose("a").ok());
    auto out = nw_.Process(1);
    to2_ = Filter(out, MessageType::kApp, 2);
    to3_ = Filter(out, MessageType::kApp, 3);
    ASSERT_EQ(to2_.size(), 1u);  // nothing was in flight: they leave at once
    ASSERT_EQ(to3_.size(), 1u);
    a_ = r_.log().LastIndex();
  }
  // Delivers m (an append from 1), steps the answer into 1 and returns
  // what 1 sent then.
  std::vector<Message> Answer(const Message& m) {
    auto resp = Filter(nw_.Deliver(m), MessageType::kAppResp, 1);
    EXPECT_EQ(resp.size(), 1u);
    return resp.empty() ? std::vector<Message>{} : nw_.Step(1, resp[0]);
  }

  Network nw_{{1, 2, 3},
              ClassicOptions([](Config& c) { c.hold_small_appends = 256; })};
  Raft& r_ = nw_.raft(1);
  std::vector<Message> to2_, to3_;
  uint64_t a_ = 0;
};

// While an append to a follower is unacknowledged, new entries wait for
// its answer, which sends them in one append with the commit index.
TEST_F(HoldSmallAppends, UntilTheAppendInFlightIsAnswered) {
  ASSERT_TRUE(r_.Propose("b").ok());
  ASSERT_TRUE(nw_.Process(1).empty()) << "b is held";
  ASSERT_TRUE(r_.Propose("c").ok());
  ASSERT_TRUE(nw_.Process(1).empty()) << "c is held";
  // 2 answers a: a commits, and b and c leave for 2 in one append with the
  // commit index; 3 still has a in flight, so nothing goes to 3.
  auto out = Answer(to2_[0]);
  EXPECT_EQ(r_.log().committed(), a_);
  auto next2 = Filter(out, MessageType::kApp, 2);
  ASSERT_EQ(next2.size(), 1u);
  EXPECT_EQ(next2[0].entries.size(), 2u);
  EXPECT_EQ(next2[0].commit, a_);
  EXPECT_TRUE(Filter(out, MessageType::kApp, 3).empty());
  // 3's answer commits nothing new, and still sends b and c to 3.
  auto next3 = Filter(Answer(to3_[0]), MessageType::kApp, 3);
  ASSERT_EQ(next3.size(), 1u);
  EXPECT_EQ(next3[0].entries.size(), 2u);
  EXPECT_EQ(next3[0].commit, a_);
  nw_.Send(next2);
  nw_.Send(next3);
  EXPECT_EQ(r_.log().committed(), a_ + 2);
  nw_.ExpectConsistent();
}

// A commit index held back for a follower (its append was in flight when
// the entry committed) goes out with that follower's next answer, even
// when the answer commits nothing and no entry waits: otherwise the
// follower would learn of the commit only at the next heartbeat.
TEST_F(HoldSmallAppends, SendsAHeldCommitIndexOnTheNextAnswer) {
  auto out = Answer(to2_[0]);
  ASSERT_EQ(r_.log().committed(), a_);
  EXPECT_TRUE(Filter(out, MessageType::kApp, 3).empty());
  auto to3_commit = Filter(Answer(to3_[0]), MessageType::kApp, 3);
  ASSERT_EQ(to3_commit.size(), 1u);
  EXPECT_TRUE(to3_commit[0].entries.empty());
  EXPECT_EQ(to3_commit[0].commit, a_);
  nw_.Send(to3_commit);
  EXPECT_EQ(nw_.raft(3).log().committed(), a_);
}

// A lost append does not hold the rest for good: a heartbeat's answer
// sends what is held. A backlog of hold_small_appends entries or more is
// not held at all.
TEST(RaftPaper, HoldSmallAppendsHeartbeatAnswerAndBacklogSendThem) {
  Network nw({1, 2, 3},
             ClassicOptions([](Config& c) { c.hold_small_appends = 3; }));
  ASSERT_TRUE(nw.Campaign(1).ok());
  Raft& r = nw.raft(1);
  ASSERT_TRUE(r.Propose("a").ok());
  auto out = nw.Process(1);
  ASSERT_EQ(Filter(out, MessageType::kApp, 2).size(), 1u);  // lost
  nw.Send(Filter(out, MessageType::kApp, 3));
  ASSERT_TRUE(r.Propose("b").ok());
  EXPECT_TRUE(Filter(nw.Process(1), MessageType::kApp, 2).empty());
  nw.Cut(1, 3);  // 3 answers nothing from here on
  nw.Heartbeat(1);
  EXPECT_EQ(nw.raft(2).log().LastIndex(), r.log().LastIndex())
      << "the heartbeat's answer sent b, and the rejection a and b";
  nw.Recover();
  // 2 and 3 have nothing in flight now; one append to each leaves.
  ASSERT_TRUE(r.Propose("c").ok());
  out = nw.Process(1);
  ASSERT_EQ(Filter(out, MessageType::kApp, 2).size(), 1u);
  // Held: d and e (two entries, fewer than 3).
  ASSERT_TRUE(r.Propose("d").ok());
  ASSERT_TRUE(r.Propose("e").ok());
  EXPECT_TRUE(Filter(nw.Process(1), MessageType::kApp, 2).empty());
  // f makes three: they leave while c is still in flight.
  ASSERT_TRUE(r.Propose("f").ok());
  auto backlog = Filter(nw.Process(1), MessageType::kApp, 2);
  ASSERT_EQ(backlog.size(), 1u);
  EXPECT_EQ(backlog[0].entries.size(), 3u);
  nw.Send(out);
  nw.Send(backlog);
  nw.Heartbeat(1);
  EXPECT_EQ(r.log().committed(), r.log().LastIndex());
  nw.ExpectConsistent();
}

// Flow control: one append carries at most max_size_per_msg bytes of
// entries, but always at least one entry.
TEST(RaftPaper, FlowControlMaxSizePerMsg) {
  const uint64_t kMax = 3 * EntrySize(Ent(0, 0, std::string(10, 'a')));
  Network nw({1, 2, 3},
             ClassicOptions([kMax](Config& c) { c.max_size_per_msg = kMax; }));
  ASSERT_TRUE(nw.Campaign(1).ok());
  nw.Isolate(3);
  for (int i = 0; i < 10; ++i) {
    ASSERT_TRUE(nw.Propose(1, std::string(10, 'a' + i)).ok());
  }
  ASSERT_TRUE(nw.Propose(1, std::string(200, 'z')).ok());  // alone > kMax
  nw.Recover();
  nw.ClearTrace();
  nw.Heartbeat(1);
  int with_entries = 0;
  for (const Message& m : Filter(nw.trace(), MessageType::kApp, 3)) {
    if (m.entries.empty()) continue;
    ++with_entries;
    EXPECT_TRUE(m.entries.size() == 1 || EntriesSize(m.entries) <= kMax)
        << testing::Describe(m);
  }
  EXPECT_GE(with_entries, 5);  // 12 entries, at most 3 per message
  EXPECT_EQ(LogOf(nw.raft(3)), LogOf(nw.raft(1)));
}

// Flow control: a leader refuses proposals (ErrProposalDropped) while more
// than max_uncommitted_entries_size bytes of its log are uncommitted, and
// accepts them again once entries commit. A single entry is always admitted
// when nothing is outstanding, so one large proposal cannot wedge it.
TEST(RaftPaper, FlowControlMaxUncommittedEntriesSize) {
  Network nw({1, 2, 3}, ClassicOptions([](Config& c) {
               c.max_uncommitted_entries_size = 300;
             }));
  ASSERT_TRUE(nw.Campaign(1).ok());
  nw.Isolate(1);
  const std::string v(100, 'v');
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(nw.Propose(1, v).ok()) << i;
  absl::Status s = nw.Propose(1, v);
  EXPECT_TRUE(absl::IsUnavailable(s)) << s;
  EXPECT_EQ(nw.raft(1).log().LastIndex(), 4u);
  nw.Recover();
  nw.Heartbeat(1);
  ASSERT_EQ(nw.raft(1).log().committed(), 4u);
  EXPECT_TRUE(nw.Propose(1, v).ok());
  // One oversized entry alone is admitted; nothing after it.
  nw.Isolate(1);
  nw.Heartbeat(1);
  ASSERT_EQ(nw.raft(1).log().committed(), 5u);
  EXPECT_TRUE(nw.Propose(1, std::string(1000, 'x')).ok());
  EXPECT_TRUE(absl::IsUnavailable(nw.Propose(1, "y")));
}

// ---- the leader writes in parallel with replicating (thesis §10.2.1) ----

// The leader's appends leave before its own persist, so it must not count
// its own unsynced entry: one follower's ack is not a quorum of durable
// copies in a cluster of 3 until the leader's write is reported.
void LeaderCountsItselfOnlyOncePersisted(bool plant) {
  Network nw({1, 2, 3}, ClassicOptions([plant](Config& c) {
               if (plant) c.bugs.Plant(planted::Bug::kLeaderCountsUnpersisted);
             }));
  ASSERT_TRUE(nw.Campaign(1).ok());
  Raft& r = nw.raft(1);
  ASSERT_EQ(r.log().committed(), 1u);
  ASSERT_TRUE(r.Propose("x").ok());
  Ready rd = r.GetReady();
  ASSERT_EQ(rd.early_messages.size(), 2u);
  EXPECT_TRUE(rd.messages.empty());
  EXPECT_EQ(r.persisted_index(), 1u);
  // Only follower 2 gets the append (before the leader persisted it); its
  // ack comes back while the leader's write is still under way.
  std::vector<Message> acks =
      nw.Deliver(Filter(rd.early_messages, MessageType::kApp, 2)[0]);
  ASSERT_EQ(acks.size(), 1u);
  ASSERT_EQ(acks[0].type, MessageType::kAppResp);
  ASSERT_EQ(acks[0].index, 2u);
  ASSERT_TRUE(r.Step(acks[0]).ok());
  if (plant) {
    // The planted bug: a quorum of one durable copy commits.
    EXPECT_EQ(r.log().committed(), 2u);
    return;
  }
  EXPECT_EQ(r.log().committed(), 1u)
      << "a quorum counted the leader's unsynced entry";
  EXPECT_EQ(r.tracker().Get(1)->match, 1u);
  // Nothing the leader sends meanwhile carries the commit.
  for (const Message& m : r.pending_messages()) EXPECT_LE(m.commit, 1u);
  // The write ends: now the leader's copy counts, and with 2's, commits.
  ASSERT_TRUE(nw.storage(1).Append(rd.entries).ok());
  if (rd.hard_state) nw.storage(1).SetHardState(*rd.hard_state);
  r.Advance(rd);
  EXPECT_EQ(r.tracker().Get(1)->match, 2u);
  EXPECT_EQ(r.log().committed(), 2u);
  EXPECT_EQ(r.persisted_index(), 2u);
  // The new commit index goes out as early appends.
  Ready next = r.GetReady();
  ASSERT_EQ(next.committed_entries.size(), 1u);
  for (const Message& m : next.early_messages) {
    EXPECT_EQ(m.type, MessageType::kApp);
    EXPECT_EQ(m.commit, 2u);
  }
  r.Advance(next);
}

TEST(LeaderPersist, CountsItselfOnlyOncePersisted) {
  LeaderCountsItselfOnlyOncePersisted(false);
}

TEST(LeaderPersist, PlantedBugCountsItselfEarly) {
  LeaderCountsItselfOnlyOncePersisted(true);
}

// OnPersisted is the input: it counts what it names (and nothing replaced).
TEST(LeaderPersist, OnPersistedMovesSelfProgress) {
  Network nw({1, 2, 3}, ClassicOptions());
  ASSERT_TRUE(nw.Campaign(1).ok());
  nw.Isolate(2);
  nw.Isolate(3);
  Raft& r = nw.raft(1);
  ASSERT_TRUE(r.Propose("a").ok());
  ASSERT_TRUE(r.Propose("b").ok());
  Ready rd = r.GetReady();
  ASSERT_EQ(IndexTerms(rd.entries),
            (std::vector<std::pair<uint64_t, uint64_t>>{{2, 1}, {3, 1}}));
  ASSERT_TRUE(nw.storage(1).Append(rd.entries).ok());
  r.OnPersisted(3, 7);  // a term it does not have there: ignored
  EXPECT_EQ(r.tracker().Get(1)->match, 1u);
  r.OnPersisted(2, 1);
  EXPECT_EQ(r.tracker().Get(1)->match, 2u);
  EXPECT_EQ(r.persisted_index(), 2u);
  r.Advance(rd);
  EXPECT_EQ(r.tracker().Get(1)->match, 3u);
  EXPECT_EQ(r.log().committed(), 1u);  // no follower acked: no quorum
}

// A single voter wins at once, before its new term is durable: nothing of
// that term may leave before the persist (its learner must not get entries
// of a term the leader could forget and lead again with other entries),
// and its first entry commits only once persisted.
TEST(LeaderPersist, NoEarlyMessagesOfAnUnpersistedTerm) {
  NetworkOptions o = ClassicOptions();
  o.learners = {2};
  Network nw({1, 2}, o);
  Raft& r = nw.raft(1);
  ASSERT_TRUE(r.Campaign().ok());
  ASSERT_EQ(r.state(), StateType::kLeader);
  EXPECT_EQ(r.log().committed(), 0u);
  ASSERT_TRUE(r.Propose("w").ok());  // replicated to the learner at once
  Ready rd = r.GetReady();
  ASSERT_TRUE(rd.hard_state.has_value());
  EXPECT_EQ(rd.hard_state->term, 1u);
  EXPECT_TRUE(rd.early_messages.empty());
  EXPECT_EQ(Filter(rd.messages, MessageType::kApp, 2).size(), 1u);
  EXPECT_TRUE(rd.committed_entries.empty());
  ASSERT_TRUE(nw.storage(1).Append(rd.entries).ok());
  nw.storage(1).SetHardState(*rd.hard_state);
  r.Advance(rd);
  EXPECT_EQ(r.log().committed(), 2u);
  // Term 1 is durable now: the next heartbeat may leave early.
  r.Tick();
  Ready next = r.GetReady();
  EXPECT_EQ(Filter(next.early_messages, MessageType::kHeartbeat, 2).size(), 1u);
  EXPECT_TRUE(Filter(next.messages, MessageType::kHeartbeat).empty());
}

// Followers' acks and votes always wait for the persist.
TEST(LeaderPersist, AcksAndVotesAreNeverEarly) {
  Network nw({1, 2, 3}, ClassicOptions());
  ASSERT_TRUE(nw.Campaign(1).ok());
  Raft& f = nw.raft(2);
  Message app;
  app.type = MessageType::kApp;
  app.from = 1;
  app.to = 2;
  app.term = 1;
  app.index = 1;
  app.log_term = 1;
  app.commit = 1;
  app.entries = {Ent(1, 2, "x")};
  ASSERT_TRUE(f.Step(app).ok());
  Ready rd = f.GetReady();
  EXPECT_TRUE(rd.early_messages.empty());
  ASSERT_EQ(Filter(rd.messages, MessageType::kAppResp).size(), 1u);
  f.Advance(rd);
  Message vote = Msg(MessageType::kVote, 3, 2, 2);
  vote.index = 2;
  vote.log_term = 1;
  ASSERT_TRUE(f.Step(vote).ok());
  Ready vrd = f.GetReady();
  EXPECT_TRUE(vrd.early_messages.empty());
  EXPECT_EQ(Filter(vrd.messages, MessageType::kVoteResp).size(), 1u);
}

}  // namespace
}  // namespace detcd::raft
