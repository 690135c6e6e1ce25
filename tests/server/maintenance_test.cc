// Auto compaction's schedule (etcd 3.4's v3compactor, driven by a fake
// clock), the corruption checks' verdicts (fake peers), and both inside a
// simulated cluster on the members' simulated clocks; the database size
// figures before and after compaction and defragmentation.
#include <cstdio>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "engine/mvcc/kv_store.h"
#include "engine/server/compactor.h"
#include "engine/server/corruption_check.h"
#include "engine/server/errors.h"
#include "engine/server/etcd_server.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "harness/cluster.h"

namespace detcd::server {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr int64_t kSec = 1'000'000'000;
constexpr int64_t kMin = 60 * kSec;
constexpr int64_t kHour = 60 * kMin;

// The text of a record's capnslog line, durations in a simple spelling
// (the shim prints Go's; tested with go_format).
std::string Capnslog(const LogRecord& r) {
  std::string out;
  for (const LogRecord::Part& p : r.capnslog) {
    if (const auto* s = std::get_if<std::string>(&p)) {
      out += *s;
    } else {
      out += "<" + std::to_string(std::get<LogNanos>(p).ns) + "ns>";
    }
  }
  return out;
}

// A compactor on a fake clock and store. Compactions wait in `pending`
// until the test answers them.
class CompactorHarness {
 public:
  explicit CompactorHarness(CompactorOptions o)
      : c_(
            o, [this] { return now; }, [this] { return rev; },
            [this](int64_t r, std::function<void(absl::Status)> done) {
              pending.emplace_back(r, std::move(done));
            },
            [this](const LogRecord& r) { logs.push_back(r); }) {}

  // Ticks every `step` until `until`, as the member's tick would. Answers
  // each compaction at once with `answer` unless `hold`; returns the
  // revisions compacted at, with the time each was proposed.
  std::vector<std::pair<int64_t, int64_t>> RunUntil(
      int64_t until, int64_t step, bool leader = true,
      absl::Status answer = absl::OkStatus(), bool hold = false) {
    std::vector<std::pair<int64_t, int64_t>> out;
    for (; now <= until; now += step) {
      if (rev_per_tick > 0) rev += rev_per_tick;
      c_.Tick(leader);
      while (!pending.empty() && !hold) {
        auto [r, done] = std::move(pending.front());
        pending.erase(pending.begin());
        out.emplace_back(now, r);
        done(answer);
      }
    }
    return out;
  }

  int64_t now = 1000 * kSec;
  int64_t rev = 1;
  int64_t rev_per_tick = 0;
  std::vector<std::pair<int64_t, std::function<void(absl::Status)>>> pending;
  std::vector<LogRecord> logs;
  Compactor& compactor() { return c_; }

 private:
  Compactor c_;
};

CompactorOptions Periodic(int64_t retention) {
  CompactorOptions o;
  o.mode = CompactorOptions::Mode::kPeriodic;
  o.retention = retention;
  return o;
}

TEST(CompactorTest, OptionsFollowEtcdsLimits) {
  EXPECT_TRUE(CompactorOptions().Validate().ok());
  EXPECT_TRUE(Periodic(10).Validate().ok());
  EXPECT_FALSE(Periodic(9).Validate().ok());  // etcd would divide by zero
  CompactorOptions r;
  r.mode = CompactorOptions::Mode::kRevision;
  EXPECT_FALSE(r.Validate().ok());
  r.retention = 1;
  EXPECT_TRUE(r.Validate().ok());
  r.revision_interval_ns = 0;
  EXPECT_FALSE(r.Validate().ok());
}

// Retention 1h: samples every 6 minutes; nothing in the first hour; then
// one compaction an hour, each at the revision seen an hour before it.
TEST(CompactorTest, PeriodicHourCompactsHourlyAtTheRevisionAnHourOld) {
  CompactorHarness h(Periodic(kHour));
  EXPECT_EQ(h.compactor().retry_interval_ns(), 6 * kMin);
  const int64_t start = h.now;
  h.rev_per_tick = 1;  // one revision a minute
  auto got = h.RunUntil(start + 3 * kHour + 30 * kMin, kMin);
  ASSERT_EQ(got.size(), 3u);
  // The store's revision at the previous sample an hour (10 intervals)
  // before the compaction: rev = 1 + minutes since start + 1.
  EXPECT_EQ(got[0].first, start + kHour);
  EXPECT_EQ(got[0].second, 2);  // sampled at start
  EXPECT_EQ(got[1].first, start + 2 * kHour);
  EXPECT_EQ(got[2].first, start + 3 * kHour);
  for (const auto& [at, r] : got) {
    // At most one retry interval (plus the loop's own step) older than
    // the retention.
    const int64_t sampled_at_min = (r - 2);  // minutes after start
    const int64_t age = at - (start + sampled_at_min * kMin);
    EXPECT_GE(age, kHour);
    EXPECT_LE(age, kHour + 6 * kMin + kMin);
  }
  EXPECT_LE(h.compactor().samples(), 11u);  // period / interval + 1
}

// Retention 24h: the first compaction after a day, then one an hour, each
// keeping a day of history (etcd's 24h example).
TEST(CompactorTest, PeriodicDayCompactsHourlyAfterTheFirstDay) {
  CompactorHarness h(Periodic(24 * kHour));
  EXPECT_EQ(h.compactor().retry_interval_ns(), 6 * kMin);
  const int64_t start = h.now;
  h.rev_per_tick = 1;
  auto got = h.RunUntil(start + 27 * kHour, kMin);
  ASSERT_EQ(got.size(), 4u);
  EXPECT_EQ(got[0].first, start + 24 * kHour);
  for (size_t i = 1; i < got.size(); ++i) {
    EXPECT_EQ(got[i].first - got[i - 1].first, kHour);
  }
  for (const auto& [at, r] : got) {
    const int64_t age = at - (start + (r - 2) * kMin);
    EXPECT_GE(age, 24 * kHour);
    EXPECT_LE(age, 24 * kHour + 7 * kMin);
  }
  EXPECT_EQ(h.compactor().samples(), 241u);
}

// Under an hour the period is the retention itself: 30m compacts every 30
// minutes, sampling every 3.
TEST(CompactorTest, PeriodicUnderAnHourUsesTheRetentionAsPeriod) {
  CompactorHarness h(Periodic(30 * kMin));
  EXPECT_EQ(h.compactor().retry_interval_ns(), 3 * kMin);
  const int64_t start = h.now;
  auto got = h.RunUntil(start + 100 * kMin, kMin);
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(got[0].first, start + 30 * kMin);
  EXPECT_EQ(got[1].first, start + 60 * kMin);
  EXPECT_EQ(got[2].first, start + 90 * kMin);
}

// A follower's compactor is paused: it samples but never compacts; once
// it leads, it compacts at the revision it sampled a period ago.
TEST(CompactorTest, PausedFollowerSamplesAndCompactsOnlyOnceLeading) {
  CompactorHarness h(Periodic(10 * kSec));
  const int64_t start = h.now;
  h.rev_per_tick = 1;
  EXPECT_TRUE(
      h.RunUntil(start + 60 * kSec, 100'000'000, /*leader=*/false).empty());
  EXPECT_EQ(h.compactor().samples(), 11u);
  auto got = h.RunUntil(start + 61 * kSec, 100'000'000, /*leader=*/true);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].first, start + 61 * kSec);
  // As etcd's steady state: the oldest of 11 samples a second apart, the
  // newest taken a second before, so 11 s (110 revisions) ago.
  EXPECT_EQ(h.rev - got[0].second, 110);
}

// A failed compaction is retried at the next wake-up (one retry interval
// later); "already compacted" counts as success, as in etcd.
TEST(CompactorTest, FailedCompactionIsRetriedCompactedIsSuccess) {
  CompactorHarness h(Periodic(10 * kSec));
  const int64_t start = h.now;
  auto failed = h.RunUntil(start + 11 * kSec, 100'000'000, true, ErrTimeout());
  ASSERT_EQ(failed.size(), 2u);
  EXPECT_EQ(failed[1].first - failed[0].first, kSec);
  ASSERT_GE(h.logs.size(), 2u);
  EXPECT_EQ(h.logs[1].message, "failed auto periodic compaction");
  EXPECT_EQ(Capnslog(h.logs[1]),
            "Failed auto-compaction at revision 1 (etcdserver: request timed "
            "out)\nRetry after <1000000000ns>");
  h.logs.clear();
  auto compacted =
      h.RunUntil(start + 25 * kSec, 100'000'000, true, mvcc::ErrCompacted());
  // One more attempt (counted as a success), then the next a period later.
  ASSERT_EQ(compacted.size(), 2u);
  EXPECT_EQ(compacted[1].first - compacted[0].first, 10 * kSec);
  EXPECT_EQ(h.logs[1].message, "completed auto periodic compaction");
}

// A compaction in flight holds the loop, as etcd's blocking Compact call.
TEST(CompactorTest, CompactionInFlightHoldsTheSchedule) {
  CompactorHarness h(Periodic(10 * kSec));
  const int64_t start = h.now;
  h.RunUntil(start + 30 * kSec, 100'000'000, true, absl::OkStatus(),
             /*hold=*/true);
  EXPECT_EQ(h.pending.size(), 1u);
  EXPECT_TRUE(h.compactor().busy());
}

TEST(CompactorTest, PeriodicLogLinesAreEtcds) {
  CompactorHarness h(Periodic(kHour));
  h.rev = 42;
  h.RunUntil(h.now + kHour, kMin);
  ASSERT_EQ(h.logs.size(), 2u);
  EXPECT_EQ(h.logs[0].message, "starting auto periodic compaction");
  EXPECT_EQ(Capnslog(h.logs[0]),
            "Starting auto-compaction at revision 42 (retention: <" +
                std::to_string(kHour) + "ns>)");
  ASSERT_EQ(h.logs[0].fields.size(), 2u);
  EXPECT_EQ(h.logs[0].fields[0].first, "revision");
  EXPECT_EQ(std::get<int64_t>(h.logs[0].fields[0].second), 42);
  EXPECT_EQ(h.logs[0].fields[1].first, "compact-period");
  EXPECT_EQ(h.logs[1].message, "completed auto periodic compaction");
  EXPECT_EQ(Capnslog(h.logs[1]), "Finished auto-compaction at revision 42");
  EXPECT_EQ(h.logs[1].fields.back().first, "took");
}

// Revision mode: every interval (etcd: 5 minutes) the leader compacts at
// revision - N, unless that is <= 0 or where it compacted last time.
TEST(CompactorTest, RevisionModeKeepsTheLastNRevisions) {
  CompactorOptions o;
  o.mode = CompactorOptions::Mode::kRevision;
  o.retention = 100;
  CompactorHarness h(o);
  EXPECT_EQ(h.compactor().retry_interval_ns(), 5 * kMin);
  const int64_t start = h.now;
  h.rev = 50;
  // Nothing at or below 0: no compaction while rev <= 100.
  EXPECT_TRUE(h.RunUntil(start + 11 * kMin, kMin).empty());
  h.rev = 1000;
  auto got = h.RunUntil(start + 16 * kMin, kMin);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].first, start + 15 * kMin);
  EXPECT_EQ(got[0].second, 900);
  // Nothing written since: the same revision is not compacted again.
  EXPECT_TRUE(h.RunUntil(start + 31 * kMin, kMin).empty());
  h.rev = 1500;
  // A follower never compacts.
  EXPECT_TRUE(h.RunUntil(start + 41 * kMin, kMin, false).empty());
  got = h.RunUntil(start + 46 * kMin, kMin);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].second, 1400);
  ASSERT_EQ(h.logs.size(), 4u);
  EXPECT_EQ(h.logs[0].message, "starting auto revision compaction");
  EXPECT_EQ(Capnslog(h.logs[0]),
            "Starting auto-compaction at revision 900 (retention: 100 "
            "revisions)");
  EXPECT_EQ(h.logs[0].fields[1].first, "revision-compaction-retention");
  EXPECT_EQ(h.logs[1].message, "completed auto revision compaction");
}

// ---- Corruption checks with fake peers ----

class CheckerHarness {
 public:
  explicit CheckerHarness(CorruptCheckOptions o) {
    CorruptionChecker::Hooks hooks;
    hooks.self = 0xa1;
    hooks.now = [this] { return now; };
    hooks.local = [this](std::function<void(absl::StatusOr<KvHash>)> done) {
      if (defer_local) {
        deferred.push_back(std::move(done));
        return;
      }
      KvHash h = local;
      if (!local_seq.empty()) {
        h = local_seq.front();
        local_seq.erase(local_seq.begin());
      }
      done(h);
    };
    hooks.ask_peers = [this](int64_t rev,
                             std::function<void(std::vector<PeerHash>)> d) {
      asked.push_back(rev);
      d(peers);
    };
    hooks.linearizable_read = [](std::function<void(absl::Status)> d) {
      d(absl::OkStatus());
    };
    hooks.raise_corrupt = [this] { ++raised; };
    hooks.log = [this](const LogRecord& r) { logs.push_back(r); };
    checker = std::make_unique<CorruptionChecker>(o, std::move(hooks));
  }
  static PeerHash Peer(uint64_t id, uint32_t hash, int64_t rev, int64_t crev) {
    PeerHash p;
    p.id = id;
    p.endpoints = {"http://127.0.0.1:" + std::to_string(2380 + id)};
    p.hash = KvHash{hash, rev, crev};
    return p;
  }
  std::vector<std::string> Messages() const {
    std::vector<std::string> out;
    for (const LogRecord& r : logs) out.push_back(r.message);
    return out;
  }
  absl::Status Initial() {
    std::optional<absl::Status> out;
    checker->CheckInitial(7 * kSec, [&](absl::Status s) { out = s; });
    return out.value_or(absl::InternalError("no answer"));
  }

  int64_t now = 1000 * kSec;
  KvHash local{111, 20, 5};
  std::vector<KvHash> local_seq;
  // Local hashes answered later, by the test (a large store's steps).
  bool defer_local = false;
  std::vector<std::function<void(absl::StatusOr<KvHash>)>> deferred;
  std::vector<PeerHash> peers;
  std::vector<int64_t> asked;
  int raised = 0;
  std::vector<LogRecord> logs;
  std::unique_ptr<CorruptionChecker> checker;
};

// The leader's own hashes may come later (computed in steps): the check
// waits for each, runs once at a time, and finds a mismatch as before.
TEST(CorruptionCheckTest, PeriodicCheckWaitsForItsLocalHashes) {
  CheckerHarness h(CorruptCheckOptions{false, kSec});
  h.defer_local = true;
  h.peers = {CheckerHarness::Peer(2, 999, 20, 5)};  // differs from 111
  h.checker->Tick(true);
  h.now += kSec;
  h.checker->Tick(true);
  ASSERT_EQ(h.deferred.size(), 1u);
  EXPECT_TRUE(h.checker->busy());
  EXPECT_TRUE(h.asked.empty());
  h.now += 5 * kSec;
  h.checker->Tick(true);  // busy: no second check
  EXPECT_EQ(h.deferred.size(), 1u);
  auto first = std::move(h.deferred[0]);
  h.deferred.clear();
  first(KvHash{111, 20, 5});
  EXPECT_EQ(h.asked, std::vector<int64_t>{20});
  ASSERT_EQ(h.deferred.size(), 1u);  // the second, after the read
  EXPECT_EQ(h.checker->checks(), 0);
  auto second = std::move(h.deferred[0]);
  h.deferred.clear();
  second(KvHash{111, 20, 5});
  EXPECT_FALSE(h.checker->busy());
  EXPECT_EQ(h.checker->checks(), 1);
  EXPECT_EQ(h.raised, 1);
  // A failed local hash ends the check without asking anyone.
  h.now += 2 * kSec;
  h.checker->Tick(true);
  ASSERT_EQ(h.deferred.size(), 1u);
  h.deferred[0](absl::UnavailableError("stopped"));
  EXPECT_FALSE(h.checker->busy());
  EXPECT_EQ(h.asked.size(), 1u);
  EXPECT_THAT(h.Messages(), ::testing::Contains("failed to check hash KV"));
}

TEST(CorruptionCheckTest, InitialCheckOffPassesAtOnce) {
  CheckerHarness h(CorruptCheckOptions{});
  EXPECT_TRUE(h.Initial().ok());
  EXPECT_TRUE(h.asked.empty());
  EXPECT_TRUE(h.logs.empty());
}

TEST(CorruptionCheckTest, InitialCheckPassesWhenPeersAgree) {
  CheckerHarness h(CorruptCheckOptions{true, 0});
  h.peers = {CheckerHarness::Peer(2, 111, 20, 5),
             CheckerHarness::Peer(3, 111, 25, 5)};
  EXPECT_TRUE(h.Initial().ok());
  EXPECT_THAT(h.asked, ElementsAre(20));
  EXPECT_THAT(h.Messages(),
              ElementsAre("starting initial corruption check",
                          "initial corruption checking passed; no corruption"));
  EXPECT_EQ(Capnslog(h.logs[1]),
            "a1 succeeded on initial corruption checking: no corruption");
}

TEST(CorruptionCheckTest, InitialCheckFailsOnAHashMismatch) {
  CheckerHarness h(CorruptCheckOptions{true, 0});
  PeerHash slow = CheckerHarness::Peer(4, 0, 0, 0);
  slow.status = mvcc::ErrFutureRev();
  h.peers = {CheckerHarness::Peer(2, 999, 20, 5),  // mismatch
             CheckerHarness::Peer(3, 777, 20, 9),  // other compaction: skip
             slow};
  absl::Status s = h.Initial();
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(s.message(), "a1 found data inconsistency with peers");
  EXPECT_THAT(h.Messages(),
              ElementsAre("starting initial corruption check",
                          "found different hash values from remote peer",
                          "found different compact revision values from "
                          "remote peer",
                          "failed hash kv request",
                          "cannot fetch hash from slow remote peer"));
  EXPECT_EQ(Capnslog(h.logs[1]),
            "a1's hash 111 != 2's hash 999 (revision 20, peer revision 20, "
            "compact revision 5)");
  EXPECT_EQ(Capnslog(h.logs[4]),
            "a1 cannot check the hash of peer([\"http://127.0.0.1:2384\"]) at "
            "revision 20: peer is lagging behind(\"etcdserver: mvcc: required "
            "revision is a future revision\")");
}

TEST(CorruptionCheckTest, PeriodicCheckRunsOnTheLeaderEveryInterval) {
  CheckerHarness h(CorruptCheckOptions{false, 10 * kSec});
  h.peers = {CheckerHarness::Peer(2, 111, 20, 5)};
  h.checker->Tick(true);  // starts the schedule
  EXPECT_THAT(h.Messages(), ElementsAre("enabled corruption checking"));
  for (int i = 0; i < 300; ++i) {
    h.now += 100'000'000;
    h.checker->Tick(/*leader=*/i >= 150);
  }
  // 30 s: the first 15 as a follower (no check), then checks at 20 s and
  // 30 s.
  EXPECT_EQ(h.checker->checks(), 2);
  EXPECT_EQ(h.raised, 0);
  EXPECT_EQ(h.logs.back().message, "finished peer corruption check");
  EXPECT_EQ(std::get<int64_t>(h.logs.back().fields[0].second), 1);
}

TEST(CorruptionCheckTest, PeriodicCheckRaisesCorruptOnMismatches) {
  struct Case {
    std::string name;
    PeerHash peer;
    std::string message;
  };
  const std::vector<Case> cases = {
      {"hash", CheckerHarness::Peer(2, 999, 20, 5),
       "same compact revision then hashes must match"},
      {"revision", CheckerHarness::Peer(2, 111, 21, 5),
       "revision from follower must be less than or equal to leader's"},
      {"compaction", CheckerHarness::Peer(2, 555, 20, 6),
       "compact revision from follower must be less than or equal to "
       "leader's"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    CheckerHarness h(CorruptCheckOptions{false, kSec});
    h.peers = {c.peer};
    h.checker->Tick(true);
    h.now += kSec;
    h.checker->Tick(true);
    EXPECT_EQ(h.raised, 1);
    EXPECT_EQ(h.checker->mismatches(), 1);
    EXPECT_THAT(h.Messages(), ::testing::Contains(c.message));
  }
  // The leader's own hash changing under it at the same revisions.
  CheckerHarness h(CorruptCheckOptions{false, kSec});
  h.local_seq = {KvHash{1, 20, 5}, KvHash{2, 20, 5}};
  h.checker->Tick(true);
  h.now += kSec;
  h.checker->Tick(true);
  EXPECT_EQ(h.raised, 1);
  EXPECT_THAT(h.Messages(), ::testing::Contains("found hash mismatch"));
  EXPECT_EQ(Capnslog(h.logs[1]), "mismatched hashes 1 and 2 for revision 20");
}

// ---- In a simulated cluster ----

class MaintenanceClusterTest : public ::testing::Test {
 protected:
  void Start(harness::ClusterOptions o) {
    o.nodes = 3;
    o.node.election_ticks = 10;
    o.node.heartbeat_ticks = 1;
    o.node.request_timeout_ticks = 100;
    cluster_ = std::make_unique<harness::Cluster>(7, o, nullptr);
    RunFor(2 * sim::kSecond);
    ASSERT_NE(cluster_->Leader(), 0u);
    for (uint64_t id : cluster_->UpNodes()) {
      cluster_->server(id)->set_log([this, id](const LogRecord& r) {
        logs_[id].push_back(r.message);
        records_[id].push_back(r);
      });
    }
  }
  void RunFor(int64_t ns) {
    cluster_->world().RunUntil(cluster_->world().now() + ns);
  }
  template <typename Resp, typename Fn>
  absl::StatusOr<Resp> Do(uint64_t id, Fn fn) {
    std::optional<absl::StatusOr<Resp>> out;
    EXPECT_TRUE(cluster_->Call(id, [&](EtcdServer& s) {
      fn(s, [&out](absl::StatusOr<Resp> r) { out = std::move(r); });
    }));
    for (int i = 0; i < 400 && !out; ++i) RunFor(10 * sim::kMillisecond);
    if (!out) return absl::DeadlineExceededError("test: no answer");
    return *std::move(out);
  }
  absl::Status Put(uint64_t id, const std::string& k, const std::string& v) {
    etcdserverpb::PutRequest r;
    r.set_key(k);
    r.set_value(v);
    return Do<etcdserverpb::PutResponse>(
               id, [&](EtcdServer& s, auto cb) { s.Put(r, cb); })
        .status();
  }
  absl::StatusOr<etcdserverpb::StatusResponse> Status(uint64_t id) {
    return Do<etcdserverpb::StatusResponse>(id, [&](EtcdServer& s, auto cb) {
      s.Status(etcdserverpb::StatusRequest(), cb);
    });
  }
  // Bytes of the member's snapshot files (its persisted image).
  int64_t SnapBytes(uint64_t id) {
    sim::SimDisk& d = cluster_->disk(id);
    const std::string dir = cluster_->options().node.data_dir + "/snap";
    auto names = d.List(dir);
    int64_t n = 0;
    if (!names.ok()) return 0;
    for (const std::string& f : *names) {
      auto data = d.ReadAll(dir + "/" + f);
      if (data.ok()) n += static_cast<int64_t>(data->size());
    }
    return n;
  }

  std::unique_ptr<harness::Cluster> cluster_;
  std::map<uint64_t, std::vector<std::string>> logs_;
  std::map<uint64_t, std::vector<LogRecord>> records_;
};

// Revision mode on the members' simulated clocks: only the leader
// compacts, every member's compact revision follows.
TEST_F(MaintenanceClusterTest, RevisionAutoCompactionOnlyOnTheLeader) {
  harness::ClusterOptions o;
  o.server.auto_compaction.mode = CompactorOptions::Mode::kRevision;
  o.server.auto_compaction.retention = 5;
  o.server.auto_compaction.revision_interval_ns = sim::kSecond;
  Start(o);
  const uint64_t leader = cluster_->Leader();
  for (int i = 0; i < 30; ++i) {
    ASSERT_TRUE(Put(leader, "k" + std::to_string(i % 4), "v").ok());
  }
  RunFor(3 * sim::kSecond);
  for (uint64_t id : cluster_->UpNodes()) {
    const mvcc::KvStore& kv = cluster_->server(id)->state().kv();
    EXPECT_EQ(kv.CompactRev(), kv.Rev() - 5) << "member " << id;
    if (id == leader) {
      EXPECT_THAT(logs_[id],
                  ::testing::Contains("completed auto revision compaction"));
    } else {
      EXPECT_THAT(logs_[id], ::testing::Not(::testing::Contains(
                                 "starting auto revision compaction")));
    }
  }
}

TEST_F(MaintenanceClusterTest, PeriodicAutoCompactionKeepsTheRetention) {
  harness::ClusterOptions o;
  o.server.auto_compaction = Periodic(2 * sim::kSecond);
  Start(o);
  const uint64_t leader = cluster_->Leader();
  // One write every 100 ms for 6 s: the compact revision trails the
  // revision by about 2 s (20 writes), give or take a sampling interval.
  for (int i = 0; i < 60; ++i) {
    ASSERT_TRUE(Put(leader, "k", std::to_string(i)).ok());
    RunFor(100 * sim::kMillisecond);
  }
  const mvcc::KvStore& kv = cluster_->server(leader)->state().kv();
  EXPECT_GT(kv.CompactRev(), 1);
  const int64_t kept = kv.Rev() - kv.CompactRev();
  EXPECT_GE(kept, 15);
  EXPECT_LE(kept, 50);
  EXPECT_THAT(logs_[leader],
              ::testing::Contains("completed auto periodic compaction"));
}

// The leader's periodic check over the peer channel: a healthy cluster
// under writes and compactions never raises CORRUPT.
TEST_F(MaintenanceClusterTest, PeriodicCorruptCheckFindsNothingWhenHealthy) {
  harness::ClusterOptions o;
  o.server.corrupt_check.interval_ns = 500 * sim::kMillisecond;
  o.server.auto_compaction = Periodic(sim::kSecond);
  Start(o);
  const uint64_t leader = cluster_->Leader();
  for (int i = 0; i < 40; ++i) {
    ASSERT_TRUE(Put(leader, "k" + std::to_string(i % 7), "v").ok());
    RunFor(50 * sim::kMillisecond);
  }
  RunFor(2 * sim::kSecond);
  EXPECT_GE(cluster_->server(leader)->corruption_checker().checks(), 4);
  EXPECT_EQ(cluster_->server(leader)->corruption_checker().mismatches(), 0);
  int checked_both = 0;
  for (const LogRecord& r : records_[leader]) {
    if (r.message == "finished peer corruption check" &&
        std::get<int64_t>(r.fields[0].second) == 2) {
      ++checked_both;
    }
  }
  EXPECT_GE(checked_both, 4) << "the checks did not reach both peers";
  for (uint64_t id : cluster_->UpNodes()) {
    EXPECT_EQ(cluster_->server(id)->state().alarms().size(), 0u);
    if (id != leader) {
      EXPECT_EQ(cluster_->server(id)->corruption_checker().checks(), 0);
    }
  }
}

// The initial check over the peer channel: members that agree pass.
TEST_F(MaintenanceClusterTest, InitialCorruptCheckPassesOnAgreeingMembers) {
  harness::ClusterOptions o;
  o.server.corrupt_check.initial = true;
  Start(o);
  ASSERT_TRUE(Put(cluster_->Leader(), "a", "1").ok());
  RunFor(500 * sim::kMillisecond);
  const uint64_t f = cluster_->UpNodes().back();
  std::optional<absl::Status> out;
  ASSERT_TRUE(cluster_->Call(f, [&](EtcdServer& s) {
    s.CheckInitialHashKV([&](absl::Status st) { out = st; });
  }));
  for (int i = 0; i < 400 && !out; ++i) RunFor(10 * sim::kMillisecond);
  ASSERT_TRUE(out.has_value());
  EXPECT_TRUE(out->ok()) << *out;
  EXPECT_THAT(logs_[f],
              ::testing::Contains("initial corruption checking passed; no "
                                  "corruption"));
}

// Status's db_size (bolt's file: the high-water mark of the data) and
// db_size_in_use (the live data): compaction lowers what is in use,
// defragmentation gives the rest back, in the figures, in the quota's view
// and in the persisted snapshot.
TEST_F(MaintenanceClusterTest, DbSizeFallsAfterCompactionAndDefrag) {
  harness::ClusterOptions o;
  Start(o);
  const uint64_t leader = cluster_->Leader();
  // Values that do not compress, so the snapshot files' sizes mean
  // something.
  uint64_t x = 88172645463325252ULL;
  auto value = [&x] {
    std::string v(1024, ' ');
    for (char& c : v) {
      x ^= x << 13;
      x ^= x >> 7;
      x ^= x << 17;
      c = static_cast<char>('!' + x % 90);
    }
    return v;
  };
  for (int round = 0; round < 5; ++round) {
    for (int k = 0; k < 40; ++k) {
      ASSERT_TRUE(Put(leader, "key" + std::to_string(k), value()).ok());
    }
  }
  RunFor(200 * sim::kMillisecond);
  // A snapshot of the whole history, as the periodic ones would make.
  ASSERT_TRUE(cluster_->Call(leader, [](EtcdServer& s) {
    ASSERT_TRUE(s.node().TakeSnapshot().ok());
  }));
  auto before = Status(leader);
  ASSERT_TRUE(before.ok());
  const int64_t snap_before = SnapBytes(leader);
  etcdserverpb::CompactionRequest c;
  c.set_revision(before->header().revision());
  ASSERT_TRUE((Do<etcdserverpb::CompactionResponse>(leader, [&](EtcdServer& s,
                                                                auto cb) {
                s.Compact(c, cb);
              })).ok());
  auto compacted = Status(leader);
  ASSERT_TRUE(compacted.ok());
  auto d =
      Do<etcdserverpb::DefragmentResponse>(leader, [&](EtcdServer& s, auto cb) {
        s.Defragment(etcdserverpb::DefragmentRequest(), cb);
      });
  ASSERT_TRUE(d.ok()) << d.status();
  auto defragged = Status(leader);
  ASSERT_TRUE(defragged.ok());
  const int64_t snap_after = SnapBytes(leader);
  std::printf(
      "db size (bytes)          db_size  db_size_in_use  snapshot files\n"
      "  before                 %7lld  %14lld  %14lld\n"
      "  after compaction       %7lld  %14lld\n"
      "  after defragmentation  %7lld  %14lld  %14lld\n",
      static_cast<long long>(before->dbsize()),
      static_cast<long long>(before->dbsizeinuse()),
      static_cast<long long>(snap_before),
      static_cast<long long>(compacted->dbsize()),
      static_cast<long long>(compacted->dbsizeinuse()),
      static_cast<long long>(defragged->dbsize()),
      static_cast<long long>(defragged->dbsizeinuse()),
      static_cast<long long>(snap_after));
  // 200 revisions of 1 KiB values, 40 kept.
  EXPECT_GT(before->dbsizeinuse(), 200 * 1024);
  EXPECT_EQ(compacted->dbsize(), before->dbsize());  // bolt keeps its pages
  EXPECT_LT(compacted->dbsizeinuse(), before->dbsizeinuse() / 3);
  EXPECT_EQ(defragged->dbsize(), defragged->dbsizeinuse());
  EXPECT_LT(defragged->dbsize(), before->dbsize() / 3);
  EXPECT_LT(snap_after, snap_before / 3);
  // The quota sees the smaller figure: a quota between the two sizes
  // refused writes before the defragmentation and admits them after.
  EXPECT_GT(before->dbsize(), defragged->dbsize() + 64 * 1024);
}

// The quota reads db_size, so only defragmentation (not compaction alone)
// lets writes back in under a quota, as with etcd's bolt file.
TEST_F(MaintenanceClusterTest, QuotaSeesDefragmentation) {
  harness::ClusterOptions o;
  o.server.quota_backend_bytes = 150 * 1024;
  Start(o);
  const uint64_t leader = cluster_->Leader();
  const std::string value(1024, 'v');
  int puts = 0;
  absl::Status refused;
  for (; puts < 400; ++puts) {
    refused = Put(leader, "key" + std::to_string(puts % 10), value);
    if (!refused.ok()) break;
  }
  ASSERT_LT(puts, 400);
  EXPECT_EQ(refused.message(), "etcdserver: mvcc: database space exceeded");
  RunFor(200 * sim::kMillisecond);
  auto st = Status(leader);
  ASSERT_TRUE(st.ok());
  etcdserverpb::CompactionRequest c;
  c.set_revision(st->header().revision());
  ASSERT_TRUE((Do<etcdserverpb::CompactionResponse>(leader, [&](EtcdServer& s,
                                                                auto cb) {
                s.Compact(c, cb);
              })).ok());
  etcdserverpb::AlarmRequest disarm;
  disarm.set_action(etcdserverpb::AlarmRequest::DEACTIVATE);
  disarm.set_memberid(leader);
  disarm.set_alarm(etcdserverpb::NOSPACE);
  ASSERT_TRUE(
      (Do<etcdserverpb::AlarmResponse>(leader, [&](EtcdServer& s, auto cb) {
        s.Alarm(disarm, cb);
      })).ok());
  // Compacted but not defragmented: db_size is still at the quota.
  EXPECT_EQ(Put(leader, "x", value).message(),
            "etcdserver: mvcc: database space exceeded");
  RunFor(200 * sim::kMillisecond);
  for (uint64_t id : cluster_->UpNodes()) {
    ASSERT_TRUE(
        (Do<etcdserverpb::DefragmentResponse>(id, [&](EtcdServer& s, auto cb) {
          s.Defragment(etcdserverpb::DefragmentRequest(), cb);
        })).ok());
  }
  ASSERT_TRUE(
      (Do<etcdserverpb::AlarmResponse>(leader, [&](EtcdServer& s, auto cb) {
        s.Alarm(disarm, cb);
      })).ok());
  EXPECT_TRUE(Put(leader, "x", value).ok());
  EXPECT_THAT(logs_[leader], ::testing::Contains("alarm raised"));
  EXPECT_THAT(logs_[leader], ::testing::Contains("alarm disarmed"));
}

}  // namespace
}  // namespace detcd::server
