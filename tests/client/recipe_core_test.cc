// The recipes' step machines (recipe_core.h) offline: each test plays the
// server's part by hand, checking every request a machine makes and
// feeding it answers, including the failure paths the live tests
// (recipes_test) rarely reach.
#include "detcd/recipe_core.h"

#include <gtest/gtest.h>

#include "detcd/errors.h"

namespace detcd::client {
namespace {

namespace pb = etcdserverpb;

pb::ResponseHeader Header(int64_t rev) {
  pb::ResponseHeader h;
  h.set_revision(rev);
  return h;
}

mvccpb::KeyValue Kv(const std::string& key, int64_t create, int64_t mod,
                    const std::string& value = "") {
  mvccpb::KeyValue kv;
  kv.set_key(key);
  kv.set_create_revision(create);
  kv.set_mod_revision(mod);
  kv.set_value(value);
  return kv;
}

RecipeReply RangeReply(int64_t rev, std::vector<mvccpb::KeyValue> kvs) {
  RecipeReply r;
  *r.range.mutable_header() = Header(rev);
  for (auto& kv : kvs) *r.range.add_kvs() = kv;
  return r;
}

RecipeReply Failed(absl::Status status) {
  RecipeReply r;
  r.status = std::move(status);
  return r;
}

RecipeReply Events(
    std::vector<std::pair<mvccpb::Event::EventType, mvccpb::KeyValue>> evs) {
  RecipeReply r;
  for (auto& [t, kv] : evs) {
    mvccpb::Event e;
    e.set_type(t);
    *e.mutable_kv() = kv;
    r.events.push_back(e);
  }
  return r;
}

// The lock txn's answer: succeeded (our key created at `rev`) or not (our
// key exists with `mine` create revision), and the owner's create revision.
RecipeReply LockTxnReply(bool succeeded, int64_t rev, int64_t mine,
                         int64_t owner) {
  RecipeReply r;
  r.txn.set_succeeded(succeeded);
  *r.txn.mutable_header() = Header(rev);
  auto* first = r.txn.add_responses();
  if (succeeded) {
    first->mutable_response_put();
  } else {
    *first->mutable_response_range()->add_kvs() = Kv("l/1", mine, mine);
  }
  *r.txn.add_responses()->mutable_response_range()->add_kvs() =
      Kv("l/owner", owner, owner);
  return r;
}

// The revision read a lock or campaign starts with, answered at rev.
RecipeCall AnswerRevisionRead(RecipeSteps* s, const std::string& key,
                              int64_t rev) {
  RecipeCall c = s->Start();
  EXPECT_EQ(c.kind, RecipeCall::kRange);
  EXPECT_EQ(c.range.key(), key);
  EXPECT_TRUE(c.range.count_only());
  EXPECT_FALSE(c.range.serializable()) << "a lagging member would answer "
                                          "below a key created before";
  return s->Next(RangeReply(rev, {}));
}

TEST(LockSteps, OwnerAtOnce) {
  MutexState m;
  m.prefix = "l/";
  m.lease = 0x1f;
  LockSteps s(&m);
  RecipeCall c = AnswerRevisionRead(&s, "l/1f", 4);
  ASSERT_EQ(c.kind, RecipeCall::kTxn);
  EXPECT_EQ(m.key, "l/1f");
  ASSERT_EQ(c.txn.compare_size(), 1);
  EXPECT_EQ(c.txn.compare(0).create_revision(), 0);
  EXPECT_EQ(c.txn.success(0).request_put().lease(), 0x1f);
  c = s.Next(LockTxnReply(true, 5, 0, 5));
  ASSERT_EQ(c.kind, RecipeCall::kDone);
  EXPECT_TRUE(c.status.ok());
  EXPECT_EQ(m.rev, 5);
  EXPECT_EQ(m.header.revision(), 5);
}

TEST(LockSteps, WaitsForEveryOlderKey) {
  MutexState m;
  m.prefix = "l/";
  m.lease = 1;
  LockSteps s(&m);
  AnswerRevisionRead(&s, "l/1", 8);
  // Our key existed already (a retry) with create revision 7; owner is 3.
  RecipeCall c = s.Next(LockTxnReply(false, 9, 7, 3));
  ASSERT_EQ(c.kind, RecipeCall::kRange);
  EXPECT_EQ(c.range.max_create_revision(), 6);
  EXPECT_EQ(c.range.sort_order(), pb::RangeRequest::DESCEND);
  c = s.Next(RangeReply(9, {Kv("l/b", 5, 5)}));
  ASSERT_EQ(c.kind, RecipeCall::kWatch);
  EXPECT_EQ(c.watch.key(), "l/b");
  EXPECT_EQ(c.watch.start_revision(), 9);
  // A put on the key is not its deletion.
  c = s.Next(Events({{mvccpb::Event::PUT, Kv("l/b", 5, 10)}}));
  EXPECT_EQ(c.kind, RecipeCall::kKeepWatching);
  c = s.Next(Events({{mvccpb::Event::DELETE, Kv("l/b", 0, 11)}}));
  ASSERT_EQ(c.kind, RecipeCall::kRange);  // then the next older one
  c = s.Next(RangeReply(12, {}));
  ASSERT_EQ(c.kind, RecipeCall::kDone);
  EXPECT_TRUE(c.status.ok());
  EXPECT_EQ(m.rev, 7);
  EXPECT_EQ(m.header.revision(), 12);
}

TEST(LockSteps, FailedWaitGivesThePlaceBack) {
  MutexState m;
  m.prefix = "l/";
  m.lease = 1;
  LockSteps s(&m);
  AnswerRevisionRead(&s, "l/1", 7);
  s.Next(LockTxnReply(true, 8, 0, 3));
  s.Next(RangeReply(8, {Kv("l/a", 3, 3)}));
  RecipeReply ended;
  ended.status = absl::CancelledError("context canceled");
  RecipeCall c = s.Next(ended);
  ASSERT_EQ(c.kind, RecipeCall::kDeleteRange);
  EXPECT_TRUE(c.cleanup);
  EXPECT_EQ(c.del.key(), "l/1");
  c = s.Next(RecipeReply());
  ASSERT_EQ(c.kind, RecipeCall::kDone);
  EXPECT_EQ(c.status.code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(m.rev, -1);
}

// A create txn whose answer never came (a deadline, a lost connection) may
// still apply: the key is deleted if it was created after the revision
// read first, so a key the session held before stays.
TEST(LockSteps, AFailedCreateIsUndoneIfItApplied) {
  MutexState m;
  m.prefix = "l/";
  m.lease = 1;
  LockSteps s(&m);
  AnswerRevisionRead(&s, "l/1", 6);
  RecipeCall c =
      s.Next(Failed(absl::DeadlineExceededError("context deadline exceeded")));
  ASSERT_EQ(c.kind, RecipeCall::kTxn);
  EXPECT_TRUE(c.cleanup);
  ASSERT_EQ(c.txn.compare_size(), 1);
  EXPECT_EQ(c.txn.compare(0).key(), "l/1");
  EXPECT_EQ(c.txn.compare(0).target(), pb::Compare::CREATE);
  EXPECT_EQ(c.txn.compare(0).result(), pb::Compare::GREATER);
  EXPECT_EQ(c.txn.compare(0).create_revision(), 6);
  ASSERT_EQ(c.txn.success_size(), 1);
  EXPECT_EQ(c.txn.success(0).request_delete_range().key(), "l/1");
  EXPECT_EQ(c.txn.failure_size(), 0);
  c = s.Next(RecipeReply());
  ASSERT_EQ(c.kind, RecipeCall::kDone);
  EXPECT_EQ(c.status.code(), absl::StatusCode::kDeadlineExceeded);
}

TEST(LockSteps, AFailedRevisionReadPutsNothing) {
  MutexState m;
  m.prefix = "l/";
  m.lease = 1;
  LockSteps s(&m);
  ASSERT_EQ(s.Start().kind, RecipeCall::kRange);
  RecipeCall c = s.Next(Failed(absl::UnavailableError("no leader")));
  ASSERT_EQ(c.kind, RecipeCall::kDone);
  EXPECT_EQ(c.status.code(), absl::StatusCode::kUnavailable);
}

TEST(CampaignSteps, ProclaimsOnAnOldKeyThenWins) {
  ElectionState e;
  e.prefix = "e/";
  e.lease = 2;
  CampaignSteps s(&e, "new");
  RecipeCall c = AnswerRevisionRead(&s, "e/2", 19);
  ASSERT_EQ(c.kind, RecipeCall::kTxn);
  RecipeReply r;
  r.txn.set_succeeded(false);
  *r.txn.mutable_header() = Header(20);
  *r.txn.add_responses()->mutable_response_range()->add_kvs() =
      Kv("e/2", 11, 15, "old");
  c = s.Next(r);
  ASSERT_EQ(c.kind, RecipeCall::kTxn);  // proclaim, fenced by revision 11
  EXPECT_EQ(c.txn.compare(0).create_revision(), 11);
  EXPECT_EQ(c.txn.success(0).request_put().value(), "new");
  RecipeReply p;
  p.txn.set_succeeded(true);
  *p.txn.mutable_header() = Header(21);
  c = s.Next(p);
  ASSERT_EQ(c.kind, RecipeCall::kRange);
  EXPECT_EQ(c.range.max_create_revision(), 10);
  c = s.Next(RangeReply(21, {}));
  ASSERT_EQ(c.kind, RecipeCall::kDone);
  EXPECT_TRUE(c.status.ok());
  EXPECT_TRUE(e.leader);
  EXPECT_EQ(e.leader_rev, 11);
  EXPECT_EQ(e.won_revision, 21);
  EXPECT_EQ(e.header.revision(), 20);  // the campaign txn's, as clientv3
}

// A campaign whose key was created at 30 while e/1 (4) is older: its
// wait for e/1's deletion ends with `end`; the machine's answer.
RecipeCall CampaignWaitEnds(ElectionState* e, CampaignSteps* s,
                            const absl::Status& end) {
  e->prefix = "e/";
  e->lease = 2;
  AnswerRevisionRead(s, "e/2", 29);
  RecipeReply r;
  r.txn.set_succeeded(true);
  *r.txn.mutable_header() = Header(30);
  s->Next(r);
  s->Next(RangeReply(30, {Kv("e/1", 4, 4)}));
  RecipeReply ended;
  ended.status = end;
  return s->Next(ended);
}

TEST(CampaignSteps, CancelledOrOutOfTimeWhileWaitingResigns) {
  for (const absl::Status& end :
       {absl::CancelledError("context canceled"),
        absl::DeadlineExceededError("context deadline exceeded")}) {
    SCOPED_TRACE(end.ToString());
    ElectionState e;
    CampaignSteps s(&e, "v");
    RecipeCall c = CampaignWaitEnds(&e, &s, end);
    ASSERT_EQ(c.kind, RecipeCall::kTxn);
    EXPECT_TRUE(c.cleanup);
    EXPECT_TRUE(c.txn.success(0).has_request_delete_range());
    c = s.Next(RecipeReply());
    ASSERT_EQ(c.kind, RecipeCall::kDone);
    EXPECT_EQ(c.status.code(), end.code());
    EXPECT_FALSE(e.leader);
  }
}

TEST(CampaignSteps, OtherWaitErrorsKeepTheCandidacy) {
  ElectionState e;
  CampaignSteps s(&e, "v");
  RecipeCall c =
      CampaignWaitEnds(&e, &s, absl::UnavailableError("watch ended"));
  ASSERT_EQ(c.kind, RecipeCall::kDone);
  EXPECT_EQ(c.status.code(), absl::StatusCode::kUnavailable);
}

TEST(CampaignSteps, AFailedCreateIsUndoneIfItApplied) {
  ElectionState e;
  e.prefix = "e/";
  e.lease = 2;
  CampaignSteps s(&e, "v");
  AnswerRevisionRead(&s, "e/2", 12);
  RecipeCall c = s.Next(Failed(absl::CancelledError("context canceled")));
  ASSERT_EQ(c.kind, RecipeCall::kTxn);
  EXPECT_TRUE(c.cleanup);
  EXPECT_EQ(c.txn.compare(0).result(), pb::Compare::GREATER);
  EXPECT_EQ(c.txn.compare(0).create_revision(), 12);
  EXPECT_EQ(c.txn.success(0).request_delete_range().key(), "e/2");
  c = s.Next(RecipeReply());
  ASSERT_EQ(c.kind, RecipeCall::kDone);
  EXPECT_EQ(c.status.code(), absl::StatusCode::kCancelled);
  EXPECT_FALSE(e.leader);
}

TEST(ProclaimSteps, NotLeaderIsAPlainError) {
  ElectionState e;
  ProclaimSteps s(&e, "v");
  RecipeCall c = s.Start();
  ASSERT_EQ(c.kind, RecipeCall::kDone);
  EXPECT_EQ(c.status.message(), kErrElectionNotLeader);
  EXPECT_TRUE(IsPlainError(c.status));
}

TEST(ObserveSteps, LeaderNowThenChangesThenTheNextLeader) {
  std::vector<pb::RangeResponse> seen;
  int budget = 4;  // emits before the observer stops
  ObserveSteps s("e/", [&](const pb::RangeResponse& r) {
    seen.push_back(r);
    return --budget > 0;
  });
  RecipeCall c = s.Start();
  ASSERT_EQ(c.kind, RecipeCall::kRange);
  EXPECT_EQ(c.range.key(), "e/");
  EXPECT_EQ(c.range.limit(), 1);
  // A leader now: emitted, then its key followed from the next revision.
  c = s.Next(RangeReply(10, {Kv("e/a", 5, 5, "v1")}));
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].kvs(0).value(), "v1");
  EXPECT_EQ(seen[0].header().revision(), 10);
  ASSERT_EQ(c.kind, RecipeCall::kWatch);
  EXPECT_EQ(c.watch.key(), "e/a");
  EXPECT_EQ(c.watch.range_end(), "");
  EXPECT_EQ(c.watch.start_revision(), 11);
  // A proclaim: the new value, with the watch batch's header.
  RecipeReply put = Events({{mvccpb::Event::PUT, Kv("e/a", 5, 12, "v2")}});
  put.header = Header(12);
  c = s.Next(put);
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[1].kvs(0).value(), "v2");
  EXPECT_EQ(seen[1].header().revision(), 12);
  EXPECT_EQ(c.kind, RecipeCall::kKeepWatching);
  // The leader resigns: whoever is first now is looked up afresh.
  c = s.Next(Events({{mvccpb::Event::DELETE, Kv("e/a", 0, 13)}}));
  EXPECT_EQ(seen.size(), 2u);
  ASSERT_EQ(c.kind, RecipeCall::kRange);
  // Nobody campaigns: the first candidate's put is awaited on the prefix.
  c = s.Next(RangeReply(13, {}));
  ASSERT_EQ(c.kind, RecipeCall::kWatch);
  EXPECT_EQ(c.watch.key(), "e/");
  EXPECT_EQ(c.watch.range_end(), "e0");
  EXPECT_EQ(c.watch.start_revision(), 13);
  c = s.Next(Events({{mvccpb::Event::DELETE, Kv("e/x", 0, 14)}}));
  EXPECT_EQ(c.kind, RecipeCall::kKeepWatching);
  RecipeReply first = Events({{mvccpb::Event::PUT, Kv("e/b", 15, 15, "w")}});
  first.header = Header(16);
  c = s.Next(first);
  ASSERT_EQ(seen.size(), 3u);
  EXPECT_EQ(seen[2].kvs(0).key(), "e/b");
  EXPECT_EQ(seen[2].header().revision(), 15);  // the put's own revision
  ASSERT_EQ(c.kind, RecipeCall::kWatch);
  EXPECT_EQ(c.watch.key(), "e/b");
  EXPECT_EQ(c.watch.start_revision(), 16);
  // The observer stops: done, OK.
  c = s.Next(Events({{mvccpb::Event::PUT, Kv("e/b", 15, 17, "w2")}}));
  ASSERT_EQ(c.kind, RecipeCall::kDone);
  EXPECT_TRUE(c.status.ok()) << c.status;
  EXPECT_EQ(seen.size(), 4u);
}

TEST(ObserveSteps, AFailedWatchEndsIt) {
  ObserveSteps s("e/", [](const pb::RangeResponse&) { return true; });
  s.Start();
  RecipeCall c = s.Next(RangeReply(3, {}));
  ASSERT_EQ(c.kind, RecipeCall::kWatch);
  c = s.Next(Failed(absl::CancelledError(kContextCanceled)));
  ASSERT_EQ(c.kind, RecipeCall::kDone);
  EXPECT_EQ(c.status.code(), absl::StatusCode::kCancelled);
}

TEST(DequeueSteps, WaitsForAPutAndRetriesALostRace) {
  DequeueSteps s("q", pb::RangeRequest::CREATE);
  RecipeCall c = s.Start();
  ASSERT_EQ(c.kind, RecipeCall::kRange);
  EXPECT_EQ(c.range.range_end(), "r");
  EXPECT_EQ(c.range.limit(), 1);
  c = s.Next(RangeReply(40, {}));
  ASSERT_EQ(c.kind, RecipeCall::kWatch);
  EXPECT_EQ(c.watch.start_revision(), 40);
  c = s.Next(Events({{mvccpb::Event::PUT, Kv("q/5", 41, 41, "x")}}));
  ASSERT_EQ(c.kind, RecipeCall::kTxn);
  EXPECT_EQ(c.txn.compare(0).mod_revision(), 41);
  RecipeReply lost;
  lost.txn.set_succeeded(false);
  c = s.Next(lost);  // someone else took it: look again
  ASSERT_EQ(c.kind, RecipeCall::kRange);
  c = s.Next(RangeReply(43, {Kv("q/6", 42, 42, "y")}));
  ASSERT_EQ(c.kind, RecipeCall::kTxn);
  RecipeReply won;
  won.txn.set_succeeded(true);
  c = s.Next(won);
  ASSERT_EQ(c.kind, RecipeCall::kDone);
  EXPECT_TRUE(c.status.ok());
  EXPECT_EQ(s.value(), "y");
  EXPECT_EQ(s.attempted(), (std::vector<std::string>{"q/5", "q/6"}));
}

TEST(EnqueueSteps, TakenKeyIsRetriedWithAFreshOne) {
  int64_t n = 100;
  EnqueueSteps s("q", "v", 0, [&n] { return n++; });
  RecipeCall c = s.Start();
  ASSERT_EQ(c.kind, RecipeCall::kTxn);
  EXPECT_EQ(c.txn.success(0).request_put().key(), "q/100");
  RecipeReply taken;
  taken.txn.set_succeeded(false);
  c = s.Next(taken);
  ASSERT_EQ(c.kind, RecipeCall::kTxn);
  EXPECT_EQ(c.txn.success(0).request_put().key(), "q/101");
  RecipeReply ok;
  ok.txn.set_succeeded(true);
  *ok.txn.mutable_header() = Header(9);
  c = s.Next(ok);
  ASSERT_EQ(c.kind, RecipeCall::kDone);
  EXPECT_EQ(s.key(), "q/101");
  EXPECT_EQ(s.revision(), 9);
}

TEST(PriorityEnqueueSteps, NextSequenceUnderTheGuard) {
  PriorityEnqueueSteps s("pq/", "v", 3);
  RecipeCall c = s.Start();
  ASSERT_EQ(c.kind, RecipeCall::kRange);
  EXPECT_EQ(c.range.key(), "pq/00003");
  c = s.Next(RangeReply(50, {Kv("pq/00003/0000000000000007", 1, 1)}));
  ASSERT_EQ(c.kind, RecipeCall::kTxn);
  EXPECT_EQ(c.txn.compare(0).key(), "__pq/00003");
  EXPECT_EQ(c.txn.compare(0).mod_revision(), 51);
  EXPECT_EQ(c.txn.success(1).request_put().key(), "pq/00003/0000000000000008");
}

TEST(RegisterSteps, TakenIdRevokesTheLease) {
  RegisterSteps s("svc/a/1", "addr", 5);
  RecipeCall c = s.Start();
  ASSERT_EQ(c.kind, RecipeCall::kLeaseGrant);
  EXPECT_EQ(c.grant.ttl(), 5);
  RecipeReply g;
  g.grant.set_id(77);
  g.grant.set_ttl(5);
  c = s.Next(g);
  ASSERT_EQ(c.kind, RecipeCall::kTxn);
  EXPECT_EQ(c.txn.success(0).request_put().lease(), 77);
  RecipeReply taken;
  taken.txn.set_succeeded(false);
  c = s.Next(taken);
  ASSERT_EQ(c.kind, RecipeCall::kLeaseRevoke);
  EXPECT_TRUE(c.cleanup);
  EXPECT_EQ(c.revoke.id(), 77);
  c = s.Next(RecipeReply());
  ASSERT_EQ(c.kind, RecipeCall::kDone);
  EXPECT_EQ(c.status.message(), kRecipeErrKeyExists);
  EXPECT_TRUE(IsPlainError(c.status));
}

}  // namespace
}  // namespace detcd::client
