// The leader's bookkeeping: Inflights flow control, per-follower Progress,
// the quorum arithmetic of ProgressTracker and ReadOnly's pending reads
// (in the spirit of etcd raft's tracker/*_test.go; our own cases).
#include "engine/raft/progress.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <set>
#include <string>
#include <vector>

namespace detcd::raft {
namespace {

// ---- Inflights ----

TEST(InflightsTest, AddUntilFullByCount) {
  Inflights in(10, 0);
  for (uint64_t i = 0; i < 10; ++i) {
    EXPECT_FALSE(in.Full()) << i;
    in.Add(i, 100);
  }
  EXPECT_TRUE(in.Full());
  EXPECT_EQ(in.Count(), 10);
  EXPECT_EQ(in.bytes(), 1000u);  // bytes are counted even with no byte limit
}

TEST(InflightsTest, FreeLE) {
  Inflights in(10, 0);
  for (uint64_t i = 0; i < 10; ++i) in.Add(i, 1);
  in.FreeLE(0);
  EXPECT_EQ(in.Count(), 9);
  EXPECT_FALSE(in.Full());
  in.FreeLE(4);
  EXPECT_EQ(in.Count(), 5);
  EXPECT_EQ(in.bytes(), 5u);
  // Freeing below the window is a no-op (a stale acknowledgement).
  in.FreeLE(2);
  EXPECT_EQ(in.Count(), 5);
  in.FreeLE(8);
  EXPECT_EQ(in.Count(), 1);
  in.FreeLE(100);
  EXPECT_EQ(in.Count(), 0);
  EXPECT_EQ(in.bytes(), 0u);
}

TEST(InflightsTest, FreeLEBetweenIndexes) {
  // Messages are remembered by their last index; an ack in the middle of
  // a message's range does not free it.
  Inflights in(4, 0);
  in.Add(5, 1);
  in.Add(10, 1);
  in.Add(15, 1);
  in.FreeLE(9);
  EXPECT_EQ(in.Count(), 2);
  in.FreeLE(10);
  EXPECT_EQ(in.Count(), 1);
}

TEST(InflightsTest, WrapAroundManyTimes) {
  // Keep the window full while sliding it far past its capacity, as a
  // ring buffer would wrap many times.
  Inflights in(4, 0);
  uint64_t next = 1;
  for (int i = 0; i < 4; ++i) in.Add(next++, 10);
  for (int round = 0; round < 1000; ++round) {
    ASSERT_TRUE(in.Full());
    in.FreeLE(next - 4);  // frees the oldest one
    ASSERT_EQ(in.Count(), 3);
    ASSERT_FALSE(in.Full());
    in.Add(next++, 10);
  }
  EXPECT_EQ(in.Count(), 4);
  EXPECT_EQ(in.bytes(), 40u);
  in.FreeLE(next - 2);
  EXPECT_EQ(in.Count(), 1);
}

TEST(InflightsTest, FullByBytes) {
  Inflights in(10, 1000);
  in.Add(1, 400);
  EXPECT_FALSE(in.Full());
  in.Add(2, 500);
  EXPECT_FALSE(in.Full());
  in.Add(3, 100);  // exactly at the limit
  EXPECT_TRUE(in.Full());
  EXPECT_EQ(in.bytes(), 1000u);
  in.FreeLE(1);
  EXPECT_FALSE(in.Full());
  EXPECT_EQ(in.bytes(), 600u);
  // One message can overshoot the limit; the window is then full.
  in.Add(4, 5000);
  EXPECT_TRUE(in.Full());
  EXPECT_EQ(in.Count(), 3);
}

TEST(InflightsTest, Reset) {
  Inflights in(2, 100);
  in.Add(1, 60);
  in.Add(2, 60);
  EXPECT_TRUE(in.Full());
  in.Reset();
  EXPECT_EQ(in.Count(), 0);
  EXPECT_EQ(in.bytes(), 0u);
  EXPECT_FALSE(in.Full());
  in.Add(1, 1);  // indexes may restart after a reset
  EXPECT_EQ(in.Count(), 1);
}

TEST(InflightsTest, IndexesMustIncrease) {
  Inflights in(10, 0);
  in.Add(5, 1);
  EXPECT_DEATH(in.Add(5, 1), "inflight indexes must increase");
  EXPECT_DEATH(in.Add(4, 1), "inflight indexes must increase");
}

// ---- Progress ----

Progress MakeProgress(ProgressState s, uint64_t match, uint64_t next,
                      int max_inflight = 256) {
  Progress p(max_inflight, 0);
  p.state = s;
  p.match = match;
  p.next = next;
  return p;
}

TEST(ProgressTest, StateNames) {
  EXPECT_STREQ(ProgressStateName(ProgressState::kProbe), "StateProbe");
  EXPECT_STREQ(ProgressStateName(ProgressState::kReplicate), "StateReplicate");
  EXPECT_STREQ(ProgressStateName(ProgressState::kSnapshot), "StateSnapshot");
}

TEST(ProgressTest, BecomeProbe) {
  {
    Progress p = MakeProgress(ProgressState::kReplicate, 1, 5);
    p.BecomeProbe();
    EXPECT_EQ(p.state, ProgressState::kProbe);
    EXPECT_EQ(p.next, 2u);
  }
  {
    // From a snapshot: the follower has at least the snapshot.
    Progress p = MakeProgress(ProgressState::kSnapshot, 1, 5);
    p.pending_snapshot = 10;
    p.BecomeProbe();
    EXPECT_EQ(p.state, ProgressState::kProbe);
    EXPECT_EQ(p.next, 11u);
    EXPECT_EQ(p.pending_snapshot, 0u);
  }
  {
    // A failed snapshot (pending reset to 0): back to match + 1.
    Progress p = MakeProgress(ProgressState::kSnapshot, 1, 5);
    p.pending_snapshot = 0;
    p.BecomeProbe();
    EXPECT_EQ(p.next, 2u);
  }
  {
    // Match beyond the snapshot.
    Progress p = MakeProgress(ProgressState::kSnapshot, 20, 21);
    p.pending_snapshot = 10;
    p.BecomeProbe();
    EXPECT_EQ(p.next, 21u);
  }
}

TEST(ProgressTest, BecomeReplicateAndSnapshot) {
  Progress p = MakeProgress(ProgressState::kProbe, 1, 5);
  p.msg_app_flow_paused = true;
  p.BecomeReplicate();
  EXPECT_EQ(p.state, ProgressState::kReplicate);
  EXPECT_EQ(p.next, 2u);
  EXPECT_FALSE(p.msg_app_flow_paused);
  p.SentEntries(3, 30);
  EXPECT_EQ(p.inflights.Count(), 1);
  p.BecomeSnapshot(10);
  EXPECT_EQ(p.state, ProgressState::kSnapshot);
  EXPECT_EQ(p.pending_snapshot, 10u);
  EXPECT_EQ(p.match, 1u);
  EXPECT_EQ(p.inflights.Count(), 0);  // state changes drop the window
  EXPECT_TRUE(p.IsPaused());
}

TEST(ProgressTest, SentEntriesReplicate) {
  Progress p = MakeProgress(ProgressState::kReplicate, 5, 6, /*max=*/2);
  p.SentEntries(3, 30);  // entries 6..8
  EXPECT_EQ(p.next, 9u);
  EXPECT_EQ(p.inflights.Count(), 1);
  EXPECT_FALSE(p.IsPaused());
  p.SentEntries(0, 0);  // an empty append takes no slot
  EXPECT_EQ(p.next, 9u);
  EXPECT_EQ(p.inflights.Count(), 1);
  p.SentEntries(1, 10);  // entry 9: the window is full
  EXPECT_EQ(p.next, 10u);
  EXPECT_TRUE(p.IsPaused());
  // The ack of 8 frees the first message.
  EXPECT_TRUE(p.MaybeUpdate(8));
  p.inflights.FreeLE(8);
  EXPECT_EQ(p.inflights.Count(), 1);
}

TEST(ProgressTest, SentEntriesProbe) {
  Progress p = MakeProgress(ProgressState::kProbe, 0, 6);
  p.SentEntries(0, 0);  // an empty probe does not pause
  EXPECT_FALSE(p.IsPaused());
  p.SentEntries(2, 20);
  EXPECT_TRUE(p.IsPaused());
  EXPECT_EQ(p.next, 6u);  // probing is not optimistic
}

TEST(ProgressTest, SentEntriesInSnapshotStateDies) {
  Progress p = MakeProgress(ProgressState::kSnapshot, 0, 6);
  EXPECT_DEATH(p.SentEntries(1, 1), "sending entries in snapshot state");
}

TEST(ProgressTest, IsPaused) {
  struct Case {
    ProgressState state;
    bool paused_flag;
    bool want;
  };
  for (const Case& c : std::vector<Case>{
           {ProgressState::kProbe, false, false},
           {ProgressState::kProbe, true, true},
           {ProgressState::kReplicate, false, false},
           {ProgressState::kReplicate, true, true},
           {ProgressState::kSnapshot, false, true},
           {ProgressState::kSnapshot, true, true},
       }) {
    Progress p = MakeProgress(c.state, 0, 1);
    p.msg_app_flow_paused = c.paused_flag;
    EXPECT_EQ(p.IsPaused(), c.want)
        << ProgressStateName(c.state) << " " << c.paused_flag;
  }
}

TEST(ProgressTest, MaybeUpdate) {
  const uint64_t prev_m = 3, prev_n = 5;
  struct Case {
    uint64_t update;
    uint64_t wm, wn;
    bool wok;
  };
  for (const Case& c : std::vector<Case>{
           {prev_m - 1, prev_m, prev_n, false},  // stale ack
           {prev_m, prev_m, prev_n, false},      // repeated ack
           {prev_m + 1, prev_m + 1, prev_n, true},
           {prev_m + 2, prev_m + 2, prev_n + 1, true},  // next moves too
       }) {
    Progress p = MakeProgress(ProgressState::kProbe, prev_m, prev_n);
    p.msg_app_flow_paused = true;
    EXPECT_EQ(p.MaybeUpdate(c.update), c.wok) << c.update;
    EXPECT_EQ(p.match, c.wm) << c.update;
    EXPECT_EQ(p.next, c.wn) << c.update;
    // A real advance unpauses a probe.
    EXPECT_EQ(p.msg_app_flow_paused, !c.wok) << c.update;
  }
}

TEST(ProgressTest, MaybeDecrTo) {
  struct Case {
    ProgressState state;
    uint64_t match, next, rejected, hint;
    bool w;
    uint64_t wn;
  };
  std::vector<Case> cases = {
      // Replicate: a rejection at or below match is stale.
      {ProgressState::kReplicate, 5, 10, 5, 5, false, 10},
      {ProgressState::kReplicate, 5, 10, 4, 4, false, 10},
      // Replicate: a real rejection goes back to match + 1.
      {ProgressState::kReplicate, 5, 10, 9, 9, true, 6},
      // Probe: only the latest probe (next - 1) counts.
      {ProgressState::kProbe, 0, 0, 0, 0, false, 0},
      {ProgressState::kProbe, 0, 10, 5, 5, false, 10},
      // Probe: jump to the hint + 1, no further than the rejected index.
      {ProgressState::kProbe, 0, 10, 9, 9, true, 9},
      {ProgressState::kProbe, 0, 2, 1, 1, true, 1},
      {ProgressState::kProbe, 0, 1, 0, 0, true, 1},
      {ProgressState::kProbe, 0, 10, 9, 2, true, 3},
      {ProgressState::kProbe, 0, 10, 9, 0, true, 1},
      // ... and never below match + 1.
      {ProgressState::kProbe, 4, 10, 9, 1, true, 5},
  };
  for (size_t k = 0; k < cases.size(); ++k) {
    const Case& c = cases[k];
    Progress p = MakeProgress(c.state, c.match, c.next);
    if (c.state == ProgressState::kProbe) p.msg_app_flow_paused = true;
    EXPECT_EQ(p.MaybeDecrTo(c.rejected, c.hint), c.w) << "case " << k;
    EXPECT_EQ(p.match, c.match) << "case " << k;
    EXPECT_EQ(p.next, c.wn) << "case " << k;
    if (c.state == ProgressState::kProbe && c.w) {
      EXPECT_FALSE(p.msg_app_flow_paused) << "case " << k;
    }
  }
}

// ---- ProgressTracker ----

ProgressTracker MakeTracker(const std::vector<NodeId>& voters,
                            const std::vector<NodeId>& learners = {}) {
  ProgressTracker t(256, 0);
  for (NodeId id : voters) t.AddVoter(id, 1);
  for (NodeId id : learners) t.AddLearner(id, 1);
  return t;
}

uint64_t CommittedWith(const std::vector<NodeId>& voters,
                       const std::vector<uint64_t>& matches,
                       const std::vector<NodeId>& learners = {},
                       const std::vector<uint64_t>& learner_matches = {}) {
  ProgressTracker t = MakeTracker(voters, learners);
  for (size_t i = 0; i < voters.size(); ++i) {
    t.Get(voters[i])->match = matches[i];
  }
  for (size_t i = 0; i < learners.size(); ++i) {
    t.Get(learners[i])->match = learner_matches[i];
  }
  return t.Committed();
}

TEST(ProgressTrackerTest, Quorum) {
  EXPECT_EQ(MakeTracker({1}).Quorum(), 1);
  EXPECT_EQ(MakeTracker({1, 2}).Quorum(), 2);
  EXPECT_EQ(MakeTracker({1, 2, 3}).Quorum(), 2);
  EXPECT_EQ(MakeTracker({1, 2, 3, 4}).Quorum(), 3);
  EXPECT_EQ(MakeTracker({1, 2, 3, 4, 5}).Quorum(), 3);
  // Learners do not count.
  EXPECT_EQ(MakeTracker({1, 2, 3}, {4, 5, 6}).Quorum(), 2);
  EXPECT_TRUE(MakeTracker({1}, {2}).IsSingleton());
  EXPECT_FALSE(MakeTracker({1, 2}).IsSingleton());
}

TEST(ProgressTrackerTest, Committed) {
  // The largest index held by a quorum of voters.
  EXPECT_EQ(CommittedWith({1}, {7}), 7u);
  EXPECT_EQ(CommittedWith({1, 2}, {7, 5}), 5u);
  EXPECT_EQ(CommittedWith({1, 2, 3}, {5, 4, 3}), 4u);
  EXPECT_EQ(CommittedWith({1, 2, 3}, {3, 5, 4}), 4u);
  EXPECT_EQ(CommittedWith({1, 2, 3}, {5, 0, 0}), 0u);
  EXPECT_EQ(CommittedWith({1, 2, 3}, {5, 5, 0}), 5u);
  EXPECT_EQ(CommittedWith({1, 2, 3, 4}, {10, 20, 30, 40}), 20u);
  EXPECT_EQ(CommittedWith({1, 2, 3, 4, 5}, {1, 2, 3, 4, 5}), 3u);
  EXPECT_EQ(CommittedWith({1, 2, 3, 4, 5}, {9, 9, 1, 1, 1}), 1u);
  EXPECT_EQ(CommittedWith({1, 2, 3, 4, 5}, {9, 9, 9, 1, 1}), 9u);
}

TEST(ProgressTrackerTest, CommittedIgnoresLearners) {
  // Learners far ahead cannot make a minority of voters a quorum.
  EXPECT_EQ(CommittedWith({1, 2, 3}, {10, 1, 1}, {4, 5}, {10, 10}), 1u);
  // Learners far behind do not hold commit back.
  EXPECT_EQ(CommittedWith({1, 2, 3}, {10, 10, 1}, {4, 5}, {0, 0}), 10u);
}

TEST(ProgressTrackerTest, CommittedWithoutVoters) {
  ProgressTracker t(256, 0);
  EXPECT_EQ(t.Committed(), UINT64_MAX);
}

TEST(ProgressTrackerTest, Membership) {
  ProgressTracker t = MakeTracker({3, 1, 2}, {5, 4});
  EXPECT_EQ(t.GetConfState(), (ConfState{{1, 2, 3}, {4, 5}}));
  EXPECT_TRUE(t.IsVoter(1));
  EXPECT_FALSE(t.IsVoter(4));
  EXPECT_TRUE(t.IsMember(4));
  EXPECT_FALSE(t.IsMember(6));
  EXPECT_TRUE(t.Get(4)->is_learner);
  EXPECT_EQ(t.Get(6), nullptr);

  // Promote a learner: it keeps its progress.
  t.Get(4)->match = 7;
  t.AddVoter(4, 100);
  EXPECT_TRUE(t.IsVoter(4));
  EXPECT_FALSE(t.Get(4)->is_learner);
  EXPECT_EQ(t.Get(4)->match, 7u);
  EXPECT_EQ(t.Get(4)->next, 1u);
  EXPECT_EQ(t.GetConfState(), (ConfState{{1, 2, 3, 4}, {5}}));

  // A new member starts at `next`, counted as recently active.
  t.AddVoter(6, 42);
  EXPECT_EQ(t.Get(6)->next, 42u);
  EXPECT_EQ(t.Get(6)->match, 0u);
  EXPECT_TRUE(t.Get(6)->recent_active);

  t.Remove(2);
  t.Remove(5);
  EXPECT_EQ(t.GetConfState(), (ConfState{{1, 3, 4, 6}, {}}));
  EXPECT_FALSE(t.IsMember(2));
  EXPECT_EQ(t.progress().size(), 4u);
  t.Remove(99);  // unknown: no-op
  EXPECT_EQ(t.progress().size(), 4u);

  EXPECT_DEATH(t.AddLearner(1, 1), "cannot demote a voter to learner");
}

TEST(ProgressTrackerTest, ResetProgress) {
  ProgressTracker t = MakeTracker({1, 2, 3}, {4});
  t.Get(2)->match = 5;
  t.Get(2)->BecomeReplicate();
  t.Get(2)->recent_active = true;
  t.ResetProgress(10, 1);
  for (const auto& [id, pr] : t.progress()) {
    EXPECT_EQ(pr.next, 11u) << id;
    EXPECT_EQ(pr.state, ProgressState::kProbe) << id;
    EXPECT_EQ(pr.match, id == 1 ? 10u : 0u) << id;
    EXPECT_FALSE(pr.recent_active) << id;
    EXPECT_EQ(pr.is_learner, id == 4) << id;
  }
}

TEST(ProgressTrackerTest, QuorumActive) {
  ProgressTracker t = MakeTracker({1, 2, 3, 4, 5}, {6, 7, 8});
  t.ResetRecentActive(1);
  EXPECT_FALSE(t.QuorumActive());
  // Active learners do not make a quorum.
  for (NodeId id : {6, 7, 8}) t.Get(id)->recent_active = true;
  t.Get(2)->recent_active = true;
  EXPECT_FALSE(t.QuorumActive());
  t.Get(3)->recent_active = true;
  EXPECT_TRUE(t.QuorumActive());
  t.ResetRecentActive(1);
  EXPECT_TRUE(t.Get(1)->recent_active);
  EXPECT_FALSE(t.Get(2)->recent_active);
  EXPECT_FALSE(t.Get(6)->recent_active);
  EXPECT_FALSE(t.QuorumActive());
}

TEST(ProgressTrackerTest, TallyVotes) {
  using O = ProgressTracker::VoteOutcome;
  ProgressTracker t = MakeTracker({1, 2, 3, 4, 5}, {6});
  int g = -1, r = -1;
  EXPECT_EQ(t.TallyVotes(&g, &r), O::kPending);
  EXPECT_EQ(g, 0);
  EXPECT_EQ(r, 0);
  t.RecordVote(1, true);
  t.RecordVote(2, false);
  EXPECT_EQ(t.TallyVotes(&g, &r), O::kPending);
  EXPECT_EQ(g, 1);
  EXPECT_EQ(r, 1);
  // A learner's vote is not counted.
  t.RecordVote(6, true);
  EXPECT_EQ(t.TallyVotes(&g, &r), O::kPending);
  EXPECT_EQ(g, 1);
  // A repeated answer does not change the first one.
  t.RecordVote(2, true);
  EXPECT_EQ(t.TallyVotes(&g, &r), O::kPending);
  EXPECT_EQ(g, 1);
  EXPECT_EQ(r, 1);
  t.RecordVote(3, true);
  EXPECT_EQ(t.TallyVotes(&g, &r), O::kPending);
  t.RecordVote(4, true);
  EXPECT_EQ(t.TallyVotes(&g, &r), O::kWon);
  EXPECT_EQ(g, 3);
  EXPECT_EQ(t.TallyVotes(nullptr, nullptr), O::kWon);

  t.ResetVotes();
  EXPECT_EQ(t.TallyVotes(&g, &r), O::kPending);
  t.RecordVote(1, true);
  t.RecordVote(2, false);
  t.RecordVote(3, false);
  EXPECT_EQ(t.TallyVotes(&g, &r), O::kPending);  // 2 more could still win
  t.RecordVote(4, false);
  EXPECT_EQ(t.TallyVotes(&g, &r), O::kLost);
  EXPECT_EQ(r, 3);
}

TEST(ProgressTrackerTest, TallyVotesEvenAndSingleton) {
  using O = ProgressTracker::VoteOutcome;
  ProgressTracker one = MakeTracker({1});
  one.RecordVote(1, true);
  EXPECT_EQ(one.TallyVotes(nullptr, nullptr), O::kWon);

  ProgressTracker four = MakeTracker({1, 2, 3, 4});
  four.RecordVote(1, true);
  four.RecordVote(2, true);
  EXPECT_EQ(four.TallyVotes(nullptr, nullptr), O::kPending);
  four.RecordVote(3, false);
  four.RecordVote(4, false);
  // 2 of 4 is not a majority, and no quorum can be reached any more.
  EXPECT_EQ(four.TallyVotes(nullptr, nullptr), O::kLost);
}

TEST(ProgressTrackerTest, RemovedVoterVoteIsForgotten) {
  using O = ProgressTracker::VoteOutcome;
  ProgressTracker t = MakeTracker({1, 2, 3});
  t.RecordVote(2, true);
  t.Remove(2);
  int g = 0, r = 0;
  EXPECT_EQ(t.TallyVotes(&g, &r), O::kPending);
  EXPECT_EQ(g, 0);
  t.RecordVote(1, true);
  EXPECT_EQ(t.TallyVotes(&g, &r), O::kPending);  // 1 of 2: quorum is 2
  t.RecordVote(3, true);
  EXPECT_EQ(t.TallyVotes(&g, &r), O::kWon);
}

// ---- ReadOnly ----

Message ReadReq(NodeId from, const std::string& ctx) {
  Message m;
  m.type = MessageType::kReadIndex;
  m.from = from;
  m.entries.push_back(Entry{0, 0, EntryType::kNormal, ctx});
  return m;
}

TEST(ReadOnlyTest, AcksAndAdvanceInOrder) {
  ReadOnly ro;
  EXPECT_TRUE(ro.empty());
  EXPECT_EQ(ro.LastPendingRequestCtx(), "");
  ro.AddRequest(10, ReadReq(1, "a"));
  ro.AddRequest(11, ReadReq(2, "b"));
  ro.AddRequest(12, ReadReq(3, "c"));
  EXPECT_FALSE(ro.empty());
  EXPECT_EQ(ro.LastPendingRequestCtx(), "c");
  // A duplicate context is ignored (its first index stays).
  ro.AddRequest(99, ReadReq(1, "a"));
  EXPECT_EQ(ro.LastPendingRequestCtx(), "c");

  EXPECT_EQ(ro.RecvAck(2, "zzz"), nullptr);
  const std::set<NodeId>* acks = ro.RecvAck(1, "b");
  ASSERT_NE(acks, nullptr);
  EXPECT_EQ(*acks, (std::set<NodeId>{1}));
  acks = ro.RecvAck(2, "b");
  EXPECT_EQ(*acks, (std::set<NodeId>{1, 2}));
  acks = ro.RecvAck(2, "b");  // duplicate acks count once
  EXPECT_EQ(acks->size(), 2u);

  // Advancing to "b" releases "a" too: a later quorum proves the earlier.
  std::vector<ReadOnly::Status> out = ro.Advance("b");
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0].index, 10u);
  EXPECT_EQ(out[0].req.entries[0].data, "a");
  EXPECT_EQ(out[0].req.from, 1u);
  EXPECT_EQ(out[1].index, 11u);
  EXPECT_EQ(out[1].acks, (std::set<NodeId>{1, 2}));
  EXPECT_EQ(ro.LastPendingRequestCtx(), "c");
  EXPECT_EQ(ro.RecvAck(1, "a"), nullptr);  // released

  // Unknown contexts release nothing.
  EXPECT_TRUE(ro.Advance("b").empty());
  EXPECT_TRUE(ro.Advance("nope").empty());

  out = ro.Advance("c");
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].index, 12u);
  EXPECT_TRUE(ro.empty());
}

TEST(ReadOnlyTest, Clear) {
  ReadOnly ro;
  ro.AddRequest(1, ReadReq(1, "a"));
  ro.Clear();
  EXPECT_TRUE(ro.empty());
  EXPECT_EQ(ro.RecvAck(1, "a"), nullptr);
  EXPECT_TRUE(ro.Advance("a").empty());
  // The same context can be used again after a clear.
  ro.AddRequest(2, ReadReq(1, "a"));
  auto out = ro.Advance("a");
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].index, 2u);
}

}  // namespace
}  // namespace detcd::raft
