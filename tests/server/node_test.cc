// Node: Raft + WAL + snapshots + a state machine, driven through env only.
// These tests move messages by hand over SimDisks, so each step is explicit;
// the simulator runs the same Node under faults.
#include "engine/server/node.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "engine/util/probes.h"
#include "engine/wal/wal.h"
#include "sim/sim_disk.h"
#include "tests/server/kv_state_machine.h"

namespace detcd::server {
namespace {

struct Envelope {
  uint64_t from, to;
  std::string payload;
};

class Bus;

class BusTransport final : public env::Transport {
 public:
  BusTransport(Bus* bus, uint64_t self) : bus_(bus), self_(self) {}
  void Send(uint64_t to, std::string payload) override;
  // With hold_snapshots set, a snapshot is neither delivered nor reported
  // until Release(): a transfer still under way.
  void SendSnapshot(uint64_t to, std::string payload,
                    SnapshotDone done) override;
  struct Held {
    uint64_t to;
    std::string payload;
    SnapshotDone done;
  };
  bool hold_snapshots = false;
  std::vector<Held> held;
  int snapshots_sent = 0;
  int sent = 0;  // Send calls
  // Finishes the held transfers: delivered (and reported so), or dropped.
  void Release(bool deliver);

 private:
  Bus* bus_;
  uint64_t self_;
};

class FixedClock final : public env::Clock {
 public:
  int64_t NowNanos() override { return 0; }
};

// Writes an image in slices of the step budget, as the etcd state
// machine's writer does, so the Node's incremental snapshot spans many
// inputs. While *fail > 0 a writer fails its second step (as a compaction
// under the etcd writer makes it do).
class SlicedImageWriter final : public ImageWriter {
 public:
  SlicedImageWriter(std::string image, int* fail)
      : image_(std::move(image)), fail_(fail) {}
  absl::StatusOr<bool> Step(size_t budget, std::string* out) override {
    if (++steps_ == 2 && *fail_ > 0) {
      --*fail_;
      return absl::FailedPreconditionError("compacted under the image");
    }
    const size_t n = std::min(budget, image_.size() - at_);
    out->append(image_, at_, n);
    at_ += n;
    return at_ == image_.size();
  }
  uint64_t size() const override { return image_.size(); }

 private:
  std::string image_;
  int* fail_;
  size_t at_ = 0;
  int steps_ = 0;
};

// The harness's key-value state machine, also recording every conf change
// it is told about (index, type, node, context, membership afterwards).
class RecordingSm final : public StateMachine {
 public:
  struct ConfChangeSeen {
    uint64_t index;
    raft::ConfChange cc;
    std::string context;
    raft::ConfState after;
  };
  std::string Apply(uint64_t index, std::string_view command) override {
    return kv.Apply(index, command);
  }
  absl::Status CheckConfChange(const raft::ConfChange& cc,
                               std::string_view context) const override {
    if (context == "refuse-me") return absl::FailedPreconditionError("no");
    return absl::OkStatus();
  }
  std::string ApplyConfChange(uint64_t index, const raft::ConfChange& cc,
                              std::string_view context,
                              const raft::ConfState& after) override {
    seen.push_back({index, cc, std::string(context), after});
    return "conf-result";
  }
  std::string Snapshot() const override { return kv.Snapshot(); }
  std::unique_ptr<ImageWriter> BeginSnapshot() const override {
    if (!sliced) return StateMachine::BeginSnapshot();
    ++images;
    return std::make_unique<SlicedImageWriter>(kv.Snapshot(), &fail_images);
  }
  absl::Status Restore(std::string_view image) override {
    ++restores;
    return kv.Restore(image);
  }
  // With `prepare`, a restore in two parts: the image checked into a
  // state machine of its own, swapped in later; what it replaced is handed
  // back to be freed, and says so when it is.
  struct Prepared final : StateMachine::Prepared {
    harness::KvStateMachine kv;
    bool* freed = nullptr;
    ~Prepared() override {
      if (freed != nullptr) *freed = true;
    }
  };
  absl::StatusOr<std::unique_ptr<StateMachine::Prepared>> PrepareRestore(
      std::string_view image, const env::ReadBehind& behind) const override {
    if (!prepare) return StateMachine::PrepareRestore(image, behind);
    ++prepares;
    auto p = std::make_unique<Prepared>();
    if (absl::Status s = p->kv.Restore(image); !s.ok()) return s;
    return p;
  }
  absl::Status RestorePrepared(
      std::string_view image,
      std::unique_ptr<StateMachine::Prepared>* p) override {
    auto* mine = dynamic_cast<Prepared*>(p->get());
    if (mine == nullptr) return StateMachine::RestorePrepared(image, p);
    ++restored_prepared;
    std::swap(kv, mine->kv);
    mine->freed = &old_freed;
    return absl::OkStatus();
  }

  harness::KvStateMachine kv;
  std::vector<ConfChangeSeen> seen;
  bool sliced = true;
  mutable int fail_images = 0;
  mutable int images = 0;
  bool prepare = false;
  int restores = 0;
  mutable int prepares = 0;
  int restored_prepared = 0;
  bool old_freed = false;
};

// A set of nodes, each with its own disk, and a FIFO of messages.
class Bus {
 public:
  struct Member {
    std::unique_ptr<sim::SimDisk> disk;
    std::unique_ptr<BusTransport> transport;
    std::unique_ptr<env::SeededRng> rng;
    std::unique_ptr<RecordingSm> sm;
    std::unique_ptr<Node> node;
    std::vector<uint64_t> voters;
    int incarnation = 0;
  };

  NodeOptions options;

  Bus() {
    options.snapshot_count = 1000;
    options.snapshot_catchup_entries = 10;
    // Automatic snapshots take many inputs (SlicedImageWriter).
    options.snapshot_step_bytes = 16;
  }

  void Add(uint64_t id, std::vector<uint64_t> voters) {
    Member& m = members_[id];
    m.disk = std::make_unique<sim::SimDisk>(env::SeededRng(id));
    m.transport = std::make_unique<BusTransport>(this, id);
    m.voters = std::move(voters);
  }

  absl::Status Start(uint64_t id) {
    Member& m = members_.at(id);
    ++m.incarnation;
    m.rng = std::make_unique<env::SeededRng>(id * 1000 + m.incarnation);
    m.sm = std::make_unique<RecordingSm>();
    NodeOptions o = options;
    o.id = id;
    o.initial_voters = m.voters;
    env::Env env{&clock_, m.disk.get(), m.transport.get(), m.rng.get()};
    m.node = std::make_unique<Node>(env, o, m.sm.get());
    absl::Status s = m.node->Start();
    if (!s.ok()) m.node.reset();
    return s;
  }

  void Crash(uint64_t id) {
    Member& m = members_.at(id);
    m.disk->ForgetOutstanding();  // the fsyncs in flight die with it
    m.node.reset();
    m.disk->Crash();
  }

  Node& node(uint64_t id) { return *members_.at(id).node; }
  BusTransport& transport(uint64_t id) { return *members_.at(id).transport; }
  harness::KvStateMachine& sm(uint64_t id) { return members_.at(id).sm->kv; }
  RecordingSm& recorder(uint64_t id) { return *members_.at(id).sm; }
  sim::SimDisk& disk(uint64_t id) { return *members_.at(id).disk; }
  bool up(uint64_t id) const { return members_.at(id).node != nullptr; }

  void Push(uint64_t from, uint64_t to, std::string payload) {
    queue_.push_back({from, to, std::move(payload)});
  }

  // Delivers messages until none are left (messages to down nodes vanish).
  void Deliver() {
    for (int guard = 0; !queue_.empty() && guard < 100000; ++guard) {
      Envelope e = std::move(queue_.front());
      queue_.pop_front();
      auto it = members_.find(e.to);
      if (it == members_.end() || !it->second.node) continue;
      it->second.node->OnMessage(e.payload);
    }
  }

  void Tick(int n = 1) {
    for (int i = 0; i < n; ++i) {
      for (auto& [id, m] : members_) {
        if (m.node) m.node->Tick();
      }
      Deliver();
    }
  }

  uint64_t Leader() {
    for (auto& [id, m] : members_) {
      if (m.node && m.node->is_leader()) return id;
    }
    return 0;
  }

  uint64_t ElectLeader() {
    for (int i = 0; i < 200 && Leader() == 0; ++i) Tick();
    return Leader();
  }

  // Founds a cluster of nodes 1..n and returns its elected leader (0 if
  // none was elected or a node failed to start).
  uint64_t StartCluster(uint64_t n) {
    std::vector<uint64_t> voters;
    for (uint64_t id = 1; id <= n; ++id) voters.push_back(id);
    for (uint64_t id : voters) Add(id, voters);
    for (uint64_t id : voters) {
      if (!Start(id).ok()) return 0;
    }
    return ElectLeader();
  }

  // Adds voter `id` through the leader's log and, once that committed,
  // starts it as a joiner with an empty disk (after `before_start`, which
  // may set up its disk).
  absl::Status AddVoter(uint64_t leader, uint64_t id,
                        const std::function<void()>& before_start = nullptr) {
    std::optional<absl::Status> added;
    node(leader).ProposeConfChange(
        raft::ConfChange{raft::ConfChangeType::kAddNode, id, ""},
        [&added](absl::StatusOr<std::string> r) { added = r.status(); });
    for (int i = 0; i < 50 && !added; ++i) Tick();
    if (!added) return absl::DeadlineExceededError("conf change pending");
    if (!added->ok()) return *added;
    Add(id, {});  // joins; no founding membership of its own
    if (before_start) before_start();
    return Start(id);
  }

  // Proposes through `id` and runs the cluster until the proposal completes.
  absl::StatusOr<std::string> Put(uint64_t id, const std::string& key,
                                  const std::string& value) {
    std::optional<absl::StatusOr<std::string>> out;
    node(id).Propose(absl::StrCat("put ", key, " ", value),
                     [&out](absl::StatusOr<std::string> r) { out = r; });
    for (int i = 0; i < 200 && !out; ++i) {
      Deliver();
      if (!out) Tick();
    }
    if (!out) return absl::DeadlineExceededError("proposal did not complete");
    return *out;
  }

 private:
  FixedClock clock_;
  std::map<uint64_t, Member> members_;
  std::deque<Envelope> queue_;
};

void BusTransport::Send(uint64_t to, std::string payload) {
  ++sent;
  bus_->Push(self_, to, std::move(payload));
}

void BusTransport::SendSnapshot(uint64_t to, std::string payload,
                                SnapshotDone done) {
  ++snapshots_sent;
  if (!hold_snapshots) {
    Send(to, std::move(payload));
    done(true);
    return;
  }
  held.push_back({to, std::move(payload), std::move(done)});
}

void BusTransport::Release(bool deliver) {
  std::vector<Held> h = std::move(held);
  held.clear();
  for (Held& x : h) {
    if (deliver) Send(x.to, std::move(x.payload));
    x.done(deliver);
  }
}

// The in-place envelope is the same bytes as Envelope's, and a payload with
// kEnvelopeMaxBytes spare keeps its memory (a large value is not copied).
TEST(Node, PrependEnvelopeMatchesEnvelopeInPlace) {
  for (uint64_t proposer : {0ull, 1ull, 0xffffffffffffffffull}) {
    for (uint64_t rid : {0ull, 300ull, 0xffffffffffffffffull}) {
      const std::string payload(1 << 20, 'v');
      std::string p;
      p.reserve(payload.size() + kEnvelopeMaxBytes);
      p = payload;
      const char* before = p.data();
      PrependEnvelope(proposer, rid, &p);
      EXPECT_EQ(p, server::Envelope(proposer, rid, payload));
      EXPECT_EQ(p.data(), before);
      uint64_t got_proposer = 0, got_rid = 0;
      std::string_view got;
      ASSERT_TRUE(OpenEnvelope(p, &got_proposer, &got_rid, &got));
      EXPECT_EQ(got_proposer, proposer);
      EXPECT_EQ(got_rid, rid);
      EXPECT_EQ(got, payload);
    }
  }
}

TEST(Node, SingleNodeCommitsAndRecoversAfterCrash) {
  Bus bus;
  bus.Add(1, {1});
  ASSERT_TRUE(bus.Start(1).ok());
  ASSERT_EQ(bus.ElectLeader(), 1u);
  for (int i = 0; i < 20; ++i) {
    ASSERT_TRUE(bus.Put(1, absl::StrCat("k", i), absl::StrCat("v", i)).ok());
  }
  const uint64_t applied = bus.node(1).applied_index();
  const uint64_t hash = bus.sm(1).hash();
  bus.Crash(1);
  ASSERT_TRUE(bus.Start(1).ok());
  // The leader counts its own entries once they are durable, so the commit
  // index reaches the disk one (unsynced) write after them and a crash may
  // lose it: the acknowledged entries are durable, and commit again when
  // the member leads again.
  ASSERT_EQ(bus.ElectLeader(), 1u);
  EXPECT_GE(bus.node(1).applied_index(), applied);
  EXPECT_EQ(bus.sm(1).data().at("k19"), "v19");
  EXPECT_EQ(bus.sm(1).data().size(), 20u);
  // The state is the same, replayed from the WAL.
  EXPECT_EQ(bus.sm(1).hash(), hash);
}

// A member alone in its configuration need not wait out a randomized
// election timeout (fresh or restarted); with other voters it must.
TEST(Node, OnlyVoterCampaignsAtOnce) {
  Bus bus;
  bus.Add(1, {1});
  ASSERT_TRUE(bus.Start(1).ok());
  bus.node(1).CampaignIfOnlyVoter();
  EXPECT_TRUE(bus.node(1).is_leader());
  ASSERT_TRUE(bus.Put(1, "k", "v").ok());
  bus.Crash(1);
  ASSERT_TRUE(bus.Start(1).ok());
  EXPECT_FALSE(bus.node(1).is_leader());
  bus.node(1).CampaignIfOnlyVoter();
  EXPECT_TRUE(bus.node(1).is_leader());
  EXPECT_EQ(bus.sm(1).data().at("k"), "v");

  Bus three;
  for (uint64_t id = 1; id <= 3; ++id) three.Add(id, {1, 2, 3});
  for (uint64_t id = 1; id <= 3; ++id) ASSERT_TRUE(three.Start(id).ok());
  three.node(1).CampaignIfOnlyVoter();
  three.Deliver();
  EXPECT_EQ(three.Leader(), 0u);
}

// The counts behind etcd_server_read_indexes_failed_total and
// etcd_server_slow_read_indexes_total.
TEST(Node, CountsFailedAndSlowReadIndexes) {
  Bus bus;
  ASSERT_NE(bus.StartCluster(3), 0u);
  const uint64_t leader = bus.Leader();
  const uint64_t follower = leader == 1 ? 2 : 1;
  std::optional<absl::Status> read;
  bus.node(follower).ReadIndex([&read](absl::Status s) { read = s; });
  bus.Tick();
  ASSERT_TRUE(read.has_value());
  EXPECT_TRUE(read->ok()) << *read;
  EXPECT_EQ(bus.node(follower).read_index_counters().failed, 0u);
  EXPECT_EQ(bus.node(follower).read_index_counters().slow, 0u);
  // The leader is gone but the follower does not know yet: its request
  // waits for a read index that never comes, until the deadline.
  bus.Crash(leader);
  read.reset();
  bus.node(follower).ReadIndex([&read](absl::Status s) { read = s; });
  for (int i = 0; i < 100 && !read; ++i) bus.node(follower).Tick();
  ASSERT_TRUE(read.has_value());
  EXPECT_FALSE(read->ok());
  EXPECT_EQ(bus.node(follower).read_index_counters().slow, 1u);
  // A member that knows no leader: raft refuses the request at once.
  Bus alone;
  alone.Add(1, {1, 2, 3});
  ASSERT_TRUE(alone.Start(1).ok());
  read.reset();
  alone.node(1).ReadIndex([&read](absl::Status s) { read = s; });
  ASSERT_TRUE(read.has_value());
  EXPECT_FALSE(read->ok());
  EXPECT_EQ(alone.node(1).read_index_counters().failed, 1u);
  EXPECT_EQ(alone.node(1).read_index_counters().slow, 0u);
}

// Reads that arrive while the Ready is held share one ReadIndex, issued at
// the release: one heartbeat round for the batch, every read completed by
// it; unheld, each read costs a round of its own.
TEST(Node, HeldReadsShareOneReadIndex) {
  Bus bus;
  ASSERT_NE(bus.StartCluster(3), 0u);
  const uint64_t leader = bus.Leader();
  const uint64_t follower = leader == 1 ? 2 : 1;
  ASSERT_TRUE(bus.Put(leader, "k", "v").ok());
  for (uint64_t at : {leader, follower}) {
    Node& n = bus.node(at);
    BusTransport& t = bus.transport(at);
    int done = 0;
    int sent = t.sent;
    for (int i = 0; i < 5; ++i) {
      n.ReadIndex([&done](absl::Status s) { done += s.ok(); });
    }
    bus.Deliver();
    EXPECT_EQ(done, 5) << at;
    const int unheld = t.sent - sent;
    // Per round, a leader heartbeats both followers; a follower asks the
    // leader and answers the heartbeat that confirms it. Unheld, the
    // first read goes at once and the four that came while its round was
    // out share the next (one round at a time).
    EXPECT_EQ(unheld, 4) << at;
    done = 0;
    sent = t.sent;
    n.HoldReady();
    for (int i = 0; i < 5; ++i) {
      n.ReadIndex([&done](absl::Status s) { done += s.ok(); });
    }
    EXPECT_EQ(t.sent, sent) << "nothing leaves while held";
    EXPECT_EQ(n.pending_requests(), 5u);
    n.ReleaseReady();
    bus.Deliver();
    EXPECT_EQ(done, 5) << at;
    EXPECT_EQ(t.sent - sent, 2) << at;
    EXPECT_EQ(n.pending_requests(), 0u);
  }
  // Held reads fail together when raft refuses them (no leader known).
  Bus alone;
  alone.Add(1, {1, 2, 3});
  ASSERT_TRUE(alone.Start(1).ok());
  int failed = 0;
  alone.node(1).HoldReady();
  for (int i = 0; i < 3; ++i) {
    alone.node(1).ReadIndex([&failed](absl::Status s) { failed += !s.ok(); });
  }
  EXPECT_EQ(failed, 0);
  alone.node(1).ReleaseReady();
  EXPECT_EQ(failed, 3);
  EXPECT_EQ(alone.node(1).read_index_counters().failed, 3u);
}

// One read index round at a time, as etcd's read loop: reads that come
// while a round is out wait for it and share the next; a round that gets
// no answer (its followers are gone) holds them back only
// read_round_patience_ticks (1) ticks.
TEST(Node, ReadsWhileARoundIsOutShareTheNext) {
  Bus bus;
  ASSERT_NE(bus.StartCluster(3), 0u);
  const uint64_t leader = bus.Leader();
  ASSERT_TRUE(bus.Put(leader, "k", "v").ok());
  Node& n = bus.node(leader);
  const uint64_t rounds = n.read_index_counters().rounds;
  int done = 0;
  for (int i = 0; i < 4; ++i) {
    n.ReadIndex([&done](absl::Status s) { done += s.ok(); });
  }
  EXPECT_EQ(n.read_index_counters().rounds, rounds + 1);
  bus.Deliver();
  EXPECT_EQ(done, 4);
  EXPECT_EQ(n.read_index_counters().rounds, rounds + 2);
  // The followers are gone: the next round is never answered.
  for (uint64_t id : {1, 2, 3}) {
    if (id != leader) bus.Crash(id);
  }
  n.ReadIndex([&done](absl::Status s) { done += s.ok(); });
  n.ReadIndex([&done](absl::Status s) { done += s.ok(); });
  EXPECT_EQ(n.read_index_counters().rounds, rounds + 3);
  n.Tick();
  EXPECT_EQ(n.read_index_counters().rounds, rounds + 3) << "within patience";
  n.Tick();
  EXPECT_EQ(n.read_index_counters().rounds, rounds + 4) << "patience over";
  EXPECT_EQ(done, 4);
  EXPECT_EQ(n.pending_requests(), 2u);
}

// Group commit: proposals made while the Ready is held share one WAL write
// and sync, and complete together when it is released.
TEST(Node, HeldReadyGroupsProposalsIntoOneSync) {
  Bus bus;
  bus.Add(1, {1});
  ASSERT_TRUE(bus.Start(1).ok());
  ASSERT_EQ(bus.ElectLeader(), 1u);
  Node& n = bus.node(1);
  // Unheld, each proposal is persisted (and synced) on its own.
  uint64_t before = bus.disk(1).syncs();
  int done = 0;
  for (int i = 0; i < 10; ++i) {
    n.Propose(absl::StrCat("put a", i, " v"),
              [&done](absl::StatusOr<std::string> r) { done += r.ok(); });
  }
  EXPECT_EQ(done, 10);
  EXPECT_GE(bus.disk(1).syncs() - before, 10u);
  // Held: nothing is written or completed until the release.
  before = bus.disk(1).syncs();
  done = 0;
  n.HoldReady();
  n.HoldReady();  // holds nest
  for (int i = 0; i < 10; ++i) {
    n.Propose(absl::StrCat("put b", i, " v"),
              [&done](absl::StatusOr<std::string> r) { done += r.ok(); });
  }
  n.ReleaseReady();
  EXPECT_EQ(done, 0);
  EXPECT_EQ(bus.disk(1).syncs(), before);
  n.ReleaseReady();
  EXPECT_EQ(done, 10);
  EXPECT_EQ(bus.disk(1).syncs() - before, 1u);
  EXPECT_EQ(bus.sm(1).data().at("b9"), "v");
  // What the held batch wrote survives a crash.
  bus.Crash(1);
  ASSERT_TRUE(bus.Start(1).ok());
  ASSERT_EQ(bus.ElectLeader(), 1u);  // commits them again (see above)
  EXPECT_EQ(bus.sm(1).data().size(), 20u);
}

// With a disk worker: the Ready that writes B also carries A, committed
// by the write before; A is applied and answered while B is written, not
// after (one fsync of latency under load, not two).
TEST(Node, AppliesDurableEntriesWhileTheNextWriteIsUnderWay) {
  Bus bus;
  bus.Add(1, {1});
  std::deque<std::function<void()>> writes;  // completions, held
  bus.disk(1).set_scheduler([&writes](int64_t, std::function<void()> ev) {
    writes.push_back(std::move(ev));
  });
  auto complete_one = [&writes] {
    std::function<void()> ev = std::move(writes.front());
    writes.pop_front();
    ev();
  };
  auto complete_all = [&] {
    for (int i = 0; i < 100 && !writes.empty(); ++i) complete_one();
  };
  ASSERT_TRUE(bus.Start(1).ok());
  for (int i = 0; i < 200 && bus.Leader() == 0; ++i) {
    bus.Tick();
    complete_all();
  }
  ASSERT_EQ(bus.Leader(), 1u);
  complete_all();
  Node& n = bus.node(1);
  std::optional<absl::StatusOr<std::string>> a, b;
  n.Propose("put a 1", [&a](absl::StatusOr<std::string> r) { a = r; });
  ASSERT_EQ(writes.size(), 1u);  // A's entry is being written
  n.Propose("put b 2", [&b](absl::StatusOr<std::string> r) { b = r; });
  complete_one();  // A is durable and so committed; B's write starts
  ASSERT_EQ(writes.size(), 1u);
  ASSERT_TRUE(a.has_value());
  EXPECT_TRUE(a->ok()) << a->status();
  EXPECT_EQ(bus.sm(1).data().at("a"), "1");
  EXPECT_FALSE(b.has_value());
  EXPECT_EQ(bus.sm(1).data().count("b"), 0u);
  complete_all();
  ASSERT_TRUE(b.has_value());
  EXPECT_TRUE(b->ok()) << b->status();
  // Both survive a crash (A before B's write ended, too).
  bus.Crash(1);
  ASSERT_TRUE(bus.Start(1).ok());
  for (int i = 0; i < 200 && bus.Leader() == 0; ++i) {
    bus.Tick();
    complete_all();
  }
  complete_all();
  EXPECT_EQ(bus.sm(1).data().at("a"), "1");
  EXPECT_EQ(bus.sm(1).data().at("b"), "2");
}

TEST(Node, RecoversFromSnapshotPlusLogTail) {
  Bus bus;
  bus.options.snapshot_count = 8;
  bus.options.snapshot_catchup_entries = 2;
  bus.Add(1, {1});
  ASSERT_TRUE(bus.Start(1).ok());
  ASSERT_EQ(bus.ElectLeader(), 1u);
  for (int i = 0; i < 30; ++i) {
    ASSERT_TRUE(bus.Put(1, absl::StrCat("k", i), absl::StrCat("v", i)).ok());
  }
  auto files = bus.disk(1).List("data/snap");
  ASSERT_TRUE(files.ok());
  // (Besides, the temporary file of a snapshot being written.)
  const auto snaps = std::count_if(
      files->begin(), files->end(),
      [](const std::string& f) { return absl::EndsWith(f, ".snap"); });
  EXPECT_GT(snaps, 0) << "no snapshot was taken";
  EXPECT_LE(snaps, 2) << "old snapshots are pruned";
  bus.Crash(1);
  ASSERT_TRUE(bus.Start(1).ok());
  // The last put's commit reaches the WAL with the next write: it applies
  // once the member is leader again (unless a snapshot covered it).
  ASSERT_EQ(bus.ElectLeader(), 1u);
  bus.Tick();
  EXPECT_EQ(bus.sm(1).data().size(), 30u);
  EXPECT_EQ(bus.sm(1).data().at("k29"), "v29");
  ASSERT_TRUE(bus.Put(1, "after", "restart").ok());
}

TEST(Node, ThreeNodesReplicateAndSurviveFollowerCrash) {
  Bus bus;
  uint64_t lead = bus.StartCluster(3);
  ASSERT_NE(lead, 0u);
  ASSERT_TRUE(bus.Put(lead, "a", "1").ok());
  uint64_t follower = lead == 1 ? 2 : 1;
  bus.Crash(follower);
  ASSERT_TRUE(bus.Put(lead, "b", "2").ok()) << "a majority is still up";
  ASSERT_TRUE(bus.Start(follower).ok());
  bus.Tick(5);
  EXPECT_EQ(bus.sm(follower).data().at("b"), "2");
  EXPECT_EQ(bus.sm(follower).hash(), bus.sm(lead).hash());
}

// A member added later and caught up from index 1 (no snapshot yet) must
// learn the founding membership from the log: the founders write it there
// as committed AddNode entries when they bootstrap.
TEST(Node, JoinerFedFromIndexOneLearnsFoundingMembers) {
  Bus bus;
  uint64_t lead = bus.StartCluster(3);
  ASSERT_NE(lead, 0u);
  ASSERT_TRUE(bus.Put(lead, "a", "1").ok());
  ASSERT_TRUE(bus.AddVoter(lead, 4).ok());
  bus.Tick(10);
  EXPECT_EQ(bus.node(4).conf_state().voters,
            (std::vector<uint64_t>{1, 2, 3, 4}));
  EXPECT_EQ(bus.sm(4).data().at("a"), "1");
}

// Three members that put k0..k19 and compacted their logs (a snapshot every
// 5 entries); *lead is the leader.
void StartCompactedCluster(Bus& bus, uint64_t* lead) {
  bus.options.snapshot_count = 5;
  bus.options.snapshot_catchup_entries = 1;
  *lead = bus.StartCluster(3);
  ASSERT_NE(*lead, 0u);
  for (int i = 0; i < 20; ++i) {
    ASSERT_TRUE(bus.Put(*lead, absl::StrCat("k", i), "v").ok());
  }
  ASSERT_GT(bus.node(*lead).raft().log().FirstIndex(), 2u) << "not compacted";
}

// The leader compacted its log before the new member was added, so the
// member must be caught up by a snapshot; the snapshot must carry a
// membership that includes the member (a fresh one at the leader's applied
// index), or the member would ignore it and never catch up.
TEST(Node, JoinerAfterCompactionCatchesUpFromFreshSnapshot) {
  Bus bus;
  uint64_t lead = 0;
  ASSERT_NO_FATAL_FAILURE(StartCompactedCluster(bus, &lead));
  ASSERT_TRUE(bus.AddVoter(lead, 4).ok());
  bus.Tick(20);
  EXPECT_EQ(bus.node(4).conf_state().voters,
            (std::vector<uint64_t>{1, 2, 3, 4}));
  EXPECT_EQ(bus.sm(4).data().size(), 20u);
  EXPECT_EQ(bus.node(4).applied_index(), bus.node(lead).applied_index());
}

// A received snapshot is installed by the disk worker, not the engine: its
// file, its WAL marker and the costly part of the restore (PrepareRestore)
// are the worker's work; the completion only swaps the prepared state in,
// and the worker frees what it replaced. Until then the member goes on
// taking input, on its old state.
TEST(Node, AReceivedSnapshotIsInstalledByTheWorker) {
  Bus bus;
  uint64_t lead = 0;
  ASSERT_NO_FATAL_FAILURE(StartCompactedCluster(bus, &lead));
  // Member 4's writes complete when the test says.
  std::vector<std::function<void()>> completions;
  ASSERT_TRUE(
      bus.AddVoter(lead, 4,
                   [&] {
                     bus.disk(4).set_scheduler(
                         [&completions](int64_t, std::function<void()> event) {
                           completions.push_back(std::move(event));
                         });
                   })
          .ok());
  bus.recorder(4).prepare = true;
  for (int i = 0; i < 40 && !bus.node(4).snapshot_being_written(); ++i) {
    bus.Tick();
    // Its other writes (terms, votes, entries) complete at once.
    if (bus.node(4).snapshot_being_written()) break;
    std::vector<std::function<void()>> done = std::move(completions);
    completions.clear();
    for (auto& f : done) f();
  }
  ASSERT_TRUE(bus.node(4).snapshot_being_written());
  EXPECT_EQ(bus.recorder(4).prepares, 1);
  EXPECT_EQ(bus.recorder(4).restored_prepared, 0);
  EXPECT_TRUE(bus.sm(4).data().empty());
  const uint64_t applied = bus.node(4).applied_index();
  bus.Tick(3);  // input goes on meanwhile; nothing is applied
  EXPECT_EQ(bus.node(4).applied_index(), applied);
  EXPECT_TRUE(bus.node(4).snapshot_being_written());
  for (int i = 0; i < 40 && !completions.empty(); ++i) {
    std::vector<std::function<void()>> done = std::move(completions);
    completions.clear();
    for (auto& f : done) f();
    bus.Tick();
  }
  EXPECT_EQ(bus.recorder(4).restored_prepared, 1);
  EXPECT_EQ(bus.recorder(4).restores, 0);
  EXPECT_TRUE(bus.recorder(4).old_freed);
  EXPECT_FALSE(bus.node(4).failed());
  EXPECT_EQ(bus.sm(4).data().size(), 20u);
  // A restart loads the snapshot the worker wrote.
  bus.Crash(4);
  bus.disk(4).set_scheduler(nullptr);
  ASSERT_TRUE(bus.Start(4).ok());
  EXPECT_EQ(bus.recorder(4).restores, 1);
  EXPECT_EQ(bus.sm(4).data().size(), 20u);
}

// Fail-stop: a disk error stops the node and fails its pending requests;
// it never goes on with state it could not persist.
TEST(Node, DiskErrorStopsTheNode) {
  Bus bus;
  bus.Add(1, {1});
  ASSERT_TRUE(bus.Start(1).ok());
  ASSERT_EQ(bus.ElectLeader(), 1u);
  ASSERT_TRUE(bus.Put(1, "a", "1").ok());
  sim::DiskFaults f;
  f.eio_probability = 1;
  bus.disk(1).set_faults(f);
  std::optional<absl::StatusOr<std::string>> out;
  bus.node(1).Propose("put b 2",
                      [&out](absl::StatusOr<std::string> r) { out = r; });
  EXPECT_TRUE(bus.node(1).failed());
  ASSERT_TRUE(out.has_value());
  EXPECT_FALSE(out->ok());
  // After the fault clears, a restart recovers what was durable.
  bus.disk(1).set_faults(sim::DiskFaults());
  bus.Crash(1);
  ASSERT_TRUE(bus.Start(1).ok());
  ASSERT_EQ(bus.ElectLeader(), 1u);
  EXPECT_EQ(bus.sm(1).data().at("a"), "1");
}

// The founding entries carry each founder's context; the state machine
// sees it (without the Node's envelope) on founders and on a joiner fed
// from index 1, and a proposed conf change's context and result travel
// the same way.
TEST(Node, ConfChangeContextsReachTheStateMachine) {
  Bus bus;
  bus.options.founding_contexts = {{1, "ctx-one"}, {3, "ctx-three"}};
  uint64_t lead = bus.StartCluster(3);
  ASSERT_NE(lead, 0u);
  std::optional<absl::StatusOr<std::string>> added;
  bus.node(lead).ProposeConfChange(
      raft::ConfChange{raft::ConfChangeType::kAddLearnerNode, 4, "ctx-four"},
      [&added](absl::StatusOr<std::string> r) { added = r; });
  for (int i = 0; i < 50 && !added; ++i) bus.Tick();
  ASSERT_TRUE(added && added->ok());
  EXPECT_EQ(**added, "conf-result");
  bus.Add(4, {});
  ASSERT_TRUE(bus.Start(4).ok());
  bus.Tick(20);
  for (uint64_t id : {1, 2, 3, 4}) {
    const auto& seen = bus.recorder(id).seen;
    ASSERT_EQ(seen.size(), 4u) << "member " << id;
    EXPECT_EQ(seen[0].index, 1u);
    EXPECT_EQ(seen[0].cc.node_id, 1u);
    EXPECT_EQ(seen[0].context, "ctx-one");
    EXPECT_EQ(seen[1].context, "");
    EXPECT_EQ(seen[2].context, "ctx-three");
    EXPECT_EQ(seen[3].cc.type, raft::ConfChangeType::kAddLearnerNode);
    EXPECT_EQ(seen[3].context, "ctx-four");
    EXPECT_EQ(seen[3].after.voters, (std::vector<uint64_t>{1, 2, 3}));
    EXPECT_EQ(seen[3].after.learners, (std::vector<uint64_t>{4}));
  }
  EXPECT_TRUE(bus.node(4).is_learner());
  EXPECT_FALSE(bus.node(1).is_learner());
  // A restart replays them again from the log.
  bus.Crash(2);
  ASSERT_TRUE(bus.Start(2).ok());
  bus.Tick(5);
  ASSERT_EQ(bus.recorder(2).seen.size(), 4u);
  EXPECT_EQ(bus.recorder(2).seen[2].context, "ctx-three");
}

// A change the state machine refuses changes nothing anywhere, and its
// proposer hears why; an UpdateNode change leaves raft's membership alone.
TEST(Node, RefusedAndUpdateConfChanges) {
  Bus bus;
  uint64_t lead = bus.StartCluster(3);
  ASSERT_NE(lead, 0u);
  auto propose = [&](raft::ConfChange cc) {
    std::optional<absl::StatusOr<std::string>> out;
    bus.node(lead).ProposeConfChange(
        cc, [&out](absl::StatusOr<std::string> r) { out = r; });
    for (int i = 0; i < 50 && !out; ++i) bus.Tick();
    return out.value_or(absl::DeadlineExceededError("pending"));
  };
  auto refused =
      propose({raft::ConfChangeType::kAddNode, 4, "refuse-me"});
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition);
  auto updated = propose({raft::ConfChangeType::kUpdateNode, 2, "new-urls"});
  ASSERT_TRUE(updated.ok()) << updated.status();
  bus.Tick(5);
  for (uint64_t id : {1, 2, 3}) {
    EXPECT_EQ(bus.node(id).conf_state().voters,
              (std::vector<uint64_t>{1, 2, 3}));
    const auto& seen = bus.recorder(id).seen;
    ASSERT_EQ(seen.size(), 4u);  // 3 founding + the update
    EXPECT_EQ(seen[3].cc.type, raft::ConfChangeType::kUpdateNode);
    EXPECT_EQ(seen[3].context, "new-urls");
  }
  // Membership changes go on afterwards.
  EXPECT_TRUE(bus.AddVoter(lead, 4).ok());
}

// A follower that needs a snapshot while the leader's transport is still
// writing the last one gets no second one: the leader holds it in the
// snapshot state until the transport reports the transfer over. A dropped
// transfer is retried; a finished one lets replication resume.
TEST(Node, SnapshotHeldUntilTheTransportReportsIt) {
  Bus bus;
  bus.options.snapshot_count = 5;
  bus.options.snapshot_catchup_entries = 1;
  uint64_t lead = bus.StartCluster(3);
  ASSERT_NE(lead, 0u);
  const uint64_t lag = lead == 3 ? 2 : 3;
  bus.Crash(lag);
  for (int i = 0; i < 20; ++i) {
    ASSERT_TRUE(bus.Put(lead, absl::StrCat("k", i), "v").ok());
  }
  ASSERT_GT(bus.node(lead).raft().log().FirstIndex(), 2u) << "not compacted";
  BusTransport& t = bus.transport(lead);
  t.hold_snapshots = true;
  ASSERT_TRUE(bus.Start(lag).ok());
  bus.Tick(30);
  EXPECT_EQ(t.snapshots_sent, 1) << "a second snapshot behind the first";
  ASSERT_EQ(t.held.size(), 1u);
  EXPECT_EQ(bus.node(lead).raft().tracker().Get(lag)->state,
            raft::ProgressState::kSnapshot);
  // Dropped on the way: the leader tries again.
  t.Release(/*deliver=*/false);
  bus.Tick(10);
  EXPECT_EQ(t.snapshots_sent, 2);
  ASSERT_EQ(t.held.size(), 1u);
  // Delivered: the follower catches up.
  t.hold_snapshots = false;
  t.Release(/*deliver=*/true);
  bus.Tick(20);
  EXPECT_EQ(t.snapshots_sent, 2);
  EXPECT_EQ(bus.sm(lag).data().size(), 20u);
  EXPECT_EQ(bus.node(lag).applied_index(), bus.node(lead).applied_index());
}

// The image for a follower that needs a snapshot is built a step at a
// time between the leader's other work: writes commit while it is built,
// and the follower gets the state of the image's index, then the writes
// since by appends: one image each (the leader's log keeps the entries
// after an image until its follower has it, although applied entries
// leave the log's memory meanwhile). A membership change while an image is
// built drops it: the follower gets one with the new membership.
TEST(Node, AFollowersImageIsBuiltInSteps) {
  for (bool conf_change : {false, true}) {
    SCOPED_TRACE(conf_change);
    Bus bus;  // 16-byte steps
    bus.options.snapshot_count = 5;
    bus.options.snapshot_catchup_entries = 1;
    bus.options.log_cache_bytes = 500;  // applied entries leave memory soon
    const uint64_t lead = bus.StartCluster(3);
    ASSERT_NE(lead, 0u);
    const uint64_t lag = lead == 3 ? 2 : 3;
    bus.Crash(lag);
    const std::string value(100, 'v');
    for (int i = 0; i < 40; ++i) {
      ASSERT_TRUE(bus.Put(lead, absl::StrCat("k", i), value).ok());
    }
    Node& leader = bus.node(lead);
    ASSERT_GT(leader.raft().log().FirstIndex(), 2u) << "not compacted";
    ASSERT_TRUE(bus.Start(lag).ok());
    for (int i = 0; i < 50 && !leader.image_in_progress(); ++i) bus.Tick();
    ASSERT_TRUE(leader.image_in_progress());
    if (conf_change) {  // a learner: the writes need no image to commit
      std::optional<absl::Status> added;
      leader.ProposeConfChange(
          raft::ConfChange{raft::ConfChangeType::kAddLearnerNode, 4, ""},
          [&added](absl::StatusOr<std::string> r) { added = r.status(); });
      for (int i = 0; i < 50 && !added; ++i) bus.Tick();
      ASSERT_TRUE(added.has_value() && added->ok());
      bus.Add(4, {});
      ASSERT_TRUE(bus.Start(4).ok());
    }
    size_t during = 0;
    while (leader.image_in_progress() && during < 200) {
      ASSERT_TRUE(bus.Put(lead, absl::StrCat("d", during++), "x").ok());
    }
    EXPECT_GT(during, 10u) << "the image was not built in steps";
    auto behind = [&](uint64_t id) {
      return bus.node(id).applied_index() < leader.applied_index();
    };
    for (int i = 0; i < 500 && (behind(lag) || (conf_change && behind(4)));
         ++i) {
      bus.Tick();
    }
    EXPECT_FALSE(behind(lag));
    EXPECT_EQ(bus.sm(lag).data().size(), 40u + during);
    EXPECT_EQ(bus.sm(lag).data(), bus.sm(lead).data());
    const Node::SnapshotStats& st = leader.snapshot_stats();
    if (!conf_change) {
      EXPECT_EQ(st.follower_images, 1u);
      EXPECT_EQ(st.follower_images_dropped, 0u);
      continue;
    }
    // One for each follower, and the one begun before the change dropped.
    EXPECT_EQ(st.follower_images, 2u);
    EXPECT_EQ(st.follower_images_dropped, 1u);
    EXPECT_EQ(bus.sm(4).data(), bus.sm(lead).data());
    EXPECT_EQ(bus.node(lag).raft().tracker().GetConfState().learners,
              std::vector<uint64_t>{4});
  }
}

// A snapshot taken after a conf change carries the new membership, and a
// member restarting from it keeps that membership.
TEST(Node, SnapshotAfterConfChangeKeepsTheMembership) {
  Bus bus;
  uint64_t lead = bus.StartCluster(3);
  ASSERT_NE(lead, 0u);
  ASSERT_TRUE(bus.AddVoter(lead, 4).ok());
  bus.Tick(10);
  const std::vector<uint64_t> four = {1, 2, 3, 4};
  for (uint64_t id : {1, 2, 3}) {
    ASSERT_TRUE(bus.node(id).TakeSnapshot().ok());
    bus.Crash(id);
    ASSERT_TRUE(bus.Start(id).ok());
    EXPECT_EQ(bus.node(id).conf_state().voters, four) << "member " << id;
    EXPECT_EQ(bus.node(id).raft().tracker().GetConfState().voters, four);
  }
}

// The planted bug stale-membership-snapshot: the snapshot taken while the
// change applies carries the old members, and a restart from it forgets
// the change (the simulator's restore check must see this).
TEST(Node, PlantedStaleMembershipSnapshotForgetsTheChange) {
  Bus bus;
  bus.options.bugs.Plant(planted::Bug::kStaleMembershipSnapshot);
  uint64_t lead = bus.StartCluster(3);
  ASSERT_NE(lead, 0u);
  ASSERT_TRUE(bus.AddVoter(lead, 4).ok());
  bus.Tick(10);
  const uint64_t other = lead == 1 ? 2 : 1;
  ASSERT_EQ(bus.node(other).conf_state().voters,
            (std::vector<uint64_t>{1, 2, 3, 4}));
  bus.Crash(other);
  ASSERT_TRUE(bus.Start(other).ok());
  EXPECT_EQ(bus.node(other).conf_state().voters,
            (std::vector<uint64_t>{1, 2, 3}));
}

TEST(Node, RejectsFoundingContextOfANonVoter) {
  Bus bus;
  bus.options.founding_contexts = {{2, "x"}};
  bus.Add(1, {1});
  EXPECT_TRUE(absl::IsInvalidArgument(bus.Start(1)));
}

TEST(Node, RejectsBadOptions) {
  Bus bus;
  bus.options.snapshot_count = 0;
  bus.Add(1, {1});
  absl::Status s = bus.Start(1);
  EXPECT_TRUE(absl::IsInvalidArgument(s)) << s;
}

}  // namespace
}  // namespace detcd::server

namespace detcd::server {
namespace {

// etcd's --force-new-cluster (restartAsStandaloneNode): the last member of
// a dead cluster restarts alone with its committed data; its uncommitted
// tail is gone; the other members are removed through conf change entries
// committed by fiat, so a later plain restart stays a one-member cluster.
TEST(Node, ForceNewClusterRestartsAloneWithCommittedData) {
  Bus bus;
  const uint64_t l = bus.StartCluster(3);
  ASSERT_NE(l, 0u);
  for (int i = 0; i < 10; ++i) {
    ASSERT_TRUE(bus.Put(l, absl::StrCat("k", i), "v").ok());
  }
  bus.Tick(5);  // every member applied everything
  // The leader alone appends an entry nobody else gets: uncommitted.
  for (uint64_t id = 1; id <= 3; ++id) {
    if (id != l) bus.Crash(id);
  }
  bool answered = false;
  bus.node(l).Propose("put lost x",
                      [&](absl::StatusOr<std::string>) { answered = true; });
  bus.Deliver();
  EXPECT_FALSE(answered);
  const uint64_t last = bus.node(l).raft().log().LastIndex();
  const uint64_t commit = bus.node(l).committed_index();
  ASSERT_GT(last, commit);
  bus.Crash(l);

  bus.options.force_new_cluster = true;
  ASSERT_TRUE(bus.Start(l).ok());
  const Node::ForcedRestart& f = bus.node(l).forced_restart();
  EXPECT_TRUE(f.done);
  EXPECT_EQ(f.wal_commit, commit);
  EXPECT_EQ(f.first_discarded, commit + 1);
  EXPECT_EQ(f.discarded, last - commit);
  EXPECT_EQ(f.removed.size(), 2u);
  EXPECT_EQ(f.commit, commit + 2);  // two removals, committed by fiat
  EXPECT_EQ(bus.node(l).conf_state().voters, std::vector<uint64_t>{l});
  ASSERT_EQ(bus.ElectLeader(), l);
  EXPECT_EQ(bus.sm(l).data().size(), 10u);
  EXPECT_FALSE(bus.sm(l).data().contains("lost"));
  ASSERT_TRUE(bus.Put(l, "after", "force").ok());

  bus.options.force_new_cluster = false;
  bus.Crash(l);
  ASSERT_TRUE(bus.Start(l).ok());
  EXPECT_FALSE(bus.node(l).forced_restart().done);
  EXPECT_EQ(bus.node(l).conf_state().voters, std::vector<uint64_t>{l});
  ASSERT_EQ(bus.ElectLeader(), l);
  EXPECT_EQ(bus.sm(l).data().at("after"), "force");
  EXPECT_EQ(bus.sm(l).data().size(), 11u);
}

// An automatic snapshot is written a slice per input while writes go on;
// a crash in the middle of one restarts from the previous one (and the
// log since), and the next one removes the half-written file.
TEST(Node, CrashInTheMiddleOfAnIncrementalSnapshot) {
  Bus bus;
  bus.options.snapshot_count = 8;
  bus.options.snapshot_catchup_entries = 2;
  bus.options.snapshot_step_bytes = 8;
  bus.Add(1, {1});
  ASSERT_TRUE(bus.Start(1).ok());
  ASSERT_EQ(bus.ElectLeader(), 1u);
  int puts = 0;
  auto snapshot_half_done = [&] {
    return bus.node(1).snapshot_stats().completed >= 1 &&
           bus.node(1).snapshot_in_progress();
  };
  while (puts < 300 && !snapshot_half_done()) {
    ASSERT_TRUE(bus.Put(1, absl::StrCat("k", puts), "v").ok());
    ++puts;
  }
  ASSERT_TRUE(snapshot_half_done());
  // Puts completed while it was being written (many inputs per image).
  ASSERT_TRUE(bus.Put(1, "while-writing", "v").ok());
  ASSERT_TRUE(bus.node(1).snapshot_in_progress());
  auto files = bus.disk(1).List("data/snap");
  ASSERT_TRUE(files.ok());
  EXPECT_TRUE(std::any_of(files->begin(), files->end(), [](const auto& n) {
    return absl::EndsWith(n, ".snap.tmp");
  })) << "the image goes to a temporary file";
  bus.Crash(1);
  ASSERT_TRUE(bus.Start(1).ok());
  // Recovered from the previous snapshot: the half-written one is not
  // read, so everything after the previous one comes from the log.
  ASSERT_EQ(bus.ElectLeader(), 1u);
  bus.Tick();
  EXPECT_EQ(bus.sm(1).data().size(), static_cast<size_t>(puts) + 1);
  EXPECT_EQ(bus.sm(1).data().at("while-writing"), "v");
  // The next snapshot completes and prunes the leftover temporary.
  for (int i = 0; i < 300 && bus.node(1).snapshot_stats().completed == 0;
       ++i) {
    ASSERT_TRUE(bus.Put(1, absl::StrCat("after", i), "v").ok());
  }
  ASSERT_GE(bus.node(1).snapshot_stats().completed, 1u);
  files = bus.disk(1).List("data/snap");
  ASSERT_TRUE(files.ok());
  for (const std::string& n : *files) {
    if (bus.node(1).snapshot_in_progress()) break;  // its own temporary
    EXPECT_FALSE(absl::EndsWith(n, ".tmp")) << n;
  }
  const size_t want = bus.sm(1).data().size();
  bus.Crash(1);
  ASSERT_TRUE(bus.Start(1).ok());
  ASSERT_EQ(bus.ElectLeader(), 1u);
  bus.Tick();
  EXPECT_EQ(bus.sm(1).data().size(), want);
}

// A writer that fails (a compaction came under it) is dropped and another
// started later; after two in a row, one is written whole at once.
TEST(Node, AbandonedIncrementalSnapshotsAreRetried) {
  Bus bus;
  bus.options.snapshot_count = 8;
  bus.options.snapshot_catchup_entries = 2;
  bus.Add(1, {1});
  ASSERT_TRUE(bus.Start(1).ok());
  bus.recorder(1).fail_images = 2;
  ASSERT_EQ(bus.ElectLeader(), 1u);
  for (int i = 0; i < 300 && bus.node(1).snapshot_stats().completed == 0;
       ++i) {
    ASSERT_TRUE(bus.Put(1, absl::StrCat("k", i), "v").ok());
  }
  EXPECT_EQ(bus.node(1).snapshot_stats().abandoned, 2u);
  EXPECT_EQ(bus.node(1).snapshot_stats().completed, 1u);
  EXPECT_EQ(bus.recorder(1).images, 3);
  EXPECT_FALSE(bus.node(1).snapshot_in_progress())
      << "the third was written in one step";
}

// A lone member (snapshots every 8 entries, written 4 bytes a step) that
// put keys k0, k1, ... until an automatic snapshot is under way; *puts
// says how many.
void StartWritingASnapshot(Bus& bus, int* puts) {
  bus.options.snapshot_count = 8;
  bus.options.snapshot_step_bytes = 4;
  bus.Add(1, {1});
  ASSERT_TRUE(bus.Start(1).ok());
  ASSERT_EQ(bus.ElectLeader(), 1u);
  while (*puts < 100 && !bus.node(1).snapshot_in_progress()) {
    ASSERT_TRUE(bus.Put(1, absl::StrCat("k", (*puts)++), "v").ok());
  }
  ASSERT_TRUE(bus.node(1).snapshot_in_progress());
}

// TakeSnapshot (defragmentation, tests) supersedes one being written.
TEST(Node, TakeSnapshotDropsTheIncrementalOne) {
  Bus bus;
  int puts = 0;
  ASSERT_NO_FATAL_FAILURE(StartWritingASnapshot(bus, &puts));
  ASSERT_TRUE(bus.node(1).TakeSnapshot().ok());
  EXPECT_FALSE(bus.node(1).snapshot_in_progress());
  auto files = bus.disk(1).List("data/snap");
  ASSERT_TRUE(files.ok());
  for (const std::string& n : *files) EXPECT_FALSE(absl::EndsWith(n, ".tmp"));
  bus.Crash(1);
  ASSERT_TRUE(bus.Start(1).ok());
  ASSERT_EQ(bus.ElectLeader(), 1u);
  bus.Tick();
  EXPECT_EQ(bus.sm(1).data().size(), static_cast<size_t>(puts));
}

// A lone member whose disk holds every completion (the log's writes and
// the file worker's) until the test runs it, put keys until an automatic
// snapshot's file is written and handed to the file worker: the Node has
// not finished it (no marker, nothing compacted) until that completion.
struct HeldDisk {
  std::deque<std::function<void()>> events;
  void RunOne() {
    std::function<void()> ev = std::move(events.front());
    events.pop_front();
    ev();
  }
};

void StartCommittingASnapshot(Bus& bus, HeldDisk& held, int* puts) {
  bus.options.snapshot_count = 8;
  bus.options.snapshot_step_bytes = 1 << 20;  // written in one step
  bus.Add(1, {1});
  bus.disk(1).set_scheduler([&held](int64_t, std::function<void()> ev) {
    held.events.push_back(std::move(ev));
  });
  ASSERT_TRUE(bus.Start(1).ok());
  for (int i = 0; i < 200 && bus.Leader() == 0; ++i) {
    bus.Tick();
    while (!held.events.empty()) held.RunOne();
  }
  ASSERT_EQ(bus.Leader(), 1u);
  Node& n = bus.node(1);
  while (*puts < 100 && !n.snapshot_pending()) {
    // (Shared: the last put may complete after this returns.)
    auto done = std::make_shared<bool>(false);
    n.Propose(absl::StrCat("put k", (*puts)++, " v"),
              [done](absl::StatusOr<std::string> r) { *done = r.ok(); });
    // One event at a time, so the test sees the commit under way.
    for (int i = 0; i < 100 && !*done && !n.snapshot_pending(); ++i) {
      if (held.events.empty()) {
        bus.Tick();
      } else {
        held.RunOne();
      }
    }
  }
  ASSERT_TRUE(n.snapshot_pending());
  ASSERT_FALSE(n.snapshot_in_progress()) << "its one step wrote it all";
}

// Runs what is held, crashes the member and restarts it (completions no
// longer held): it has the `puts` keys.
void RestartHolding(Bus& bus, HeldDisk& held, int puts) {
  while (!held.events.empty()) held.RunOne();
  bus.Crash(1);
  bus.disk(1).set_scheduler(nullptr);
  ASSERT_TRUE(bus.Start(1).ok());
  ASSERT_EQ(bus.ElectLeader(), 1u);
  bus.Tick();
  EXPECT_EQ(bus.sm(1).data().size(), static_cast<size_t>(puts));
}

TEST(Node, TheFileWorkerSyncsAndRenamesTheSnapshotFile) {
  Bus bus;
  HeldDisk held;
  int puts = 0;
  ASSERT_NO_FATAL_FAILURE(StartCommittingASnapshot(bus, held, &puts));
  Node& n = bus.node(1);
  EXPECT_EQ(n.snapshot_stats().completed, 0u);
  // The file worker's work ran (the simulated disk runs it when
  // submitted): the file has its name; its completion is held.
  auto files = bus.disk(1).List("data/snap");
  ASSERT_TRUE(files.ok());
  ASSERT_EQ(files->size(), 1u);
  EXPECT_TRUE(absl::EndsWith(files->front(), ".snap")) << files->front();
  for (int i = 0; i < 100 && n.snapshot_pending(); ++i) held.RunOne();
  EXPECT_FALSE(n.snapshot_pending());
  EXPECT_EQ(n.snapshot_stats().completed, 1u);
  // Restarted from it.
  ASSERT_NO_FATAL_FAILURE(RestartHolding(bus, held, puts));
}

// Whether the WAL (page cache included) has a marker at `index`.
bool HasMarker(sim::SimDisk& disk, uint64_t index) {
  auto markers = wal::Wal::ReadMarkers(&disk, "data/wal");
  if (!markers.ok()) return false;
  for (const raft::SnapshotMetadata& m : *markers) {
    if (m.index == index) return true;
  }
  return false;
}

// Once the snapshot file is durable, its WAL marker is the log worker's
// work, not the engine's: the marker is written, and the snapshot is done
// only at that work's completion; a write of the log that comes meanwhile
// waits for the worker (the WAL is the worker's until then). A crash
// before the completion restarts with every acknowledged put.
TEST(Node, TheLogWorkerWritesTheSnapshotMarker) {
  for (bool crash : {false, true}) {
    SCOPED_TRACE(crash ? "crash before the marker's completion" : "");
    Bus bus;
    HeldDisk held;
    int puts = 0;
    ASSERT_NO_FATAL_FAILURE(StartCommittingASnapshot(bus, held, &puts));
    Node& n = bus.node(1);
    const uint64_t index = n.applied_index();
    EXPECT_FALSE(HasMarker(bus.disk(1), index));
    // The file's commit completes, and the marker goes to the log worker.
    for (int i = 0; i < 100 && !HasMarker(bus.disk(1), index); ++i) {
      ASSERT_FALSE(held.events.empty());
      held.RunOne();
    }
    ASSERT_TRUE(HasMarker(bus.disk(1), index));
    EXPECT_TRUE(n.snapshot_pending()) << "done before the marker's completion";
    EXPECT_EQ(n.snapshot_stats().completed, 0u);
    int acked = 0;
    for (int i = 0; i < puts; ++i) {
      acked += bus.sm(1).data().count(absl::StrCat("k", i));
    }
    auto done = std::make_shared<bool>(false);
    n.Propose(absl::StrCat("put k", puts++, " v"),
              [done](absl::StatusOr<std::string> r) { *done = r.ok(); });
    EXPECT_EQ(n.entries_being_written(), 0u) << "a write beside the marker";
    if (crash) {
      bus.Crash(1);
      held.events.clear();
      bus.disk(1).set_scheduler(nullptr);
      ASSERT_TRUE(bus.Start(1).ok());
      ASSERT_EQ(bus.ElectLeader(), 1u);
      bus.Tick();
      EXPECT_GE(bus.sm(1).data().size(), static_cast<size_t>(acked));
      continue;
    }
    for (int i = 0; i < 100 && !*done; ++i) {
      if (held.events.empty()) {
        bus.Tick();
      } else {
        held.RunOne();
      }
    }
    EXPECT_TRUE(*done);
    EXPECT_FALSE(n.snapshot_pending());
    EXPECT_EQ(n.snapshot_stats().completed, 1u);
    EXPECT_EQ(n.snapshot_index(), index);
    EXPECT_FALSE(n.failed());
    ASSERT_NO_FATAL_FAILURE(RestartHolding(bus, held, puts));
  }
}

// TakeSnapshot while the file worker commits an automatic one: that one
// is dropped (its late completion finishes nothing) and the new one
// stands.
TEST(Node, TakeSnapshotDropsTheOneBeingCommitted) {
  Bus bus;
  HeldDisk held;
  int puts = 0;
  ASSERT_NO_FATAL_FAILURE(StartCommittingASnapshot(bus, held, &puts));
  Node& n = bus.node(1);
  const uint64_t dropped =
      probes::Count(probes::Probe::kNodeCommittingSnapshotDropped);
  ASSERT_TRUE(n.TakeSnapshot().ok());
  EXPECT_EQ(probes::Count(probes::Probe::kNodeCommittingSnapshotDropped),
            dropped + 1);
  EXPECT_FALSE(n.snapshot_pending());
  while (!held.events.empty()) held.RunOne();
  EXPECT_EQ(n.snapshot_stats().completed, 0u)
      << "the dropped one's completion did nothing";
  EXPECT_FALSE(n.failed());
  ASSERT_NO_FATAL_FAILURE(RestartHolding(bus, held, puts));
}

// SnapshotInSteps (defragmentation): the snapshot is written a step at a
// time while the member goes on committing, and answered once its file,
// marker and compaction are done; an automatic one begun before the
// request gives way to it, requests meanwhile share it, and the smallest
// keep counts. With nothing applied since, the answer is at once.
TEST(Node, SnapshotInStepsAnswersOnceWritten) {
  Bus bus;
  int puts = 0;
  ASSERT_NO_FATAL_FAILURE(StartWritingASnapshot(bus, &puts));
  ASSERT_TRUE(bus.Put(1, absl::StrCat("k", puts++), "v").ok());
  std::vector<absl::Status> answers;
  bus.node(1).SnapshotInSteps(1, [&](absl::Status s) { answers.push_back(s); });
  bus.node(1).SnapshotInSteps(2, [&](absl::Status s) { answers.push_back(s); });
  EXPECT_TRUE(answers.empty()) << "answered before it was written";
  EXPECT_EQ(bus.node(1).snapshot_stats().completed, 0u);
  const uint64_t requested_at = bus.node(1).applied_index();
  // The member commits meanwhile, many inputs before the answer.
  int while_writing = 0;
  for (; while_writing < 100 && answers.empty(); ++while_writing) {
    ASSERT_TRUE(bus.Put(1, absl::StrCat("w", while_writing), "v").ok());
  }
  ASSERT_EQ(answers.size(), 2u);
  EXPECT_GT(while_writing, 3);
  EXPECT_TRUE(answers[0].ok() && answers[1].ok());
  // The one automatic snapshot begun before the request was dropped: the
  // first completed is at or after the request.
  EXPECT_EQ(bus.node(1).snapshot_stats().completed, 1u);
  EXPECT_GE(bus.node(1).snapshot_index(), requested_at);
  auto files = bus.disk(1).List("data/snap");
  ASSERT_TRUE(files.ok());
  int snaps = 0;
  for (const std::string& n : *files) snaps += absl::EndsWith(n, ".snap");
  EXPECT_EQ(snaps, 1) << "keep_snapshots 1";
  // Written while nothing is applied: answered after ticks alone; a
  // request right after it, with nothing applied since, at once.
  bool later = false, now = false;
  bus.node(1).SnapshotInSteps(1, [&](absl::Status s) { later = s.ok(); });
  for (int i = 0; i < 1000 && !later; ++i) bus.Tick();
  ASSERT_TRUE(later);
  EXPECT_EQ(bus.node(1).snapshot_index(), bus.node(1).applied_index());
  bus.node(1).SnapshotInSteps(1, [&](absl::Status s) { now = s.ok(); });
  EXPECT_TRUE(now);
  bus.Crash(1);
  ASSERT_TRUE(bus.Start(1).ok());
  ASSERT_EQ(bus.ElectLeader(), 1u);
  bus.Tick();
  EXPECT_EQ(bus.sm(1).data().size(), static_cast<size_t>(puts + while_writing));
}

// NodeOptions::log_cache_bytes_alone: a member alone in its configuration
// keeps at most that budget of applied entries (plus its quarter of
// slack); with other voters the log keeps log_cache_bytes of them, and a
// member that later joins the lone one still catches up (by snapshot).
TEST(Node, ALoneMemberKeepsFewAppliedEntries) {
  const std::string value(1000, 'v');
  for (uint64_t members : {1u, 3u}) {
    SCOPED_TRACE(members);
    Bus bus;
    bus.options.snapshot_count = 1000;  // no snapshot compacts the log here
    bus.options.log_cache_bytes_alone = 4000;
    bus.options.snapshot_step_bytes = 1 << 20;  // the joiner's image at once
    const uint64_t lead = bus.StartCluster(members);
    ASSERT_NE(lead, 0u);
    for (int i = 0; i < 40; ++i) {
      ASSERT_TRUE(bus.Put(lead, absl::StrCat("k", i), value).ok());
    }
    if (members == 1) {
      EXPECT_LE(bus.node(lead).log_bytes(), 5000u);
      // A joiner gets the data although the log lost its start.
      ASSERT_TRUE(bus.AddVoter(lead, 2).ok());
      bus.Tick(20);
      ASSERT_TRUE(bus.Put(lead, "after", "join").ok());
      bus.Tick(5);
      EXPECT_EQ(bus.sm(2).data().at("k0"), value);
      EXPECT_EQ(bus.sm(2).data().at("after"), "join");
    } else {
      EXPECT_GE(bus.node(lead).log_bytes(), 40000u);
    }
  }
}

// NodeOptions::snapshot_log_ratio: a store much larger than the writes
// since its last snapshot is not imaged again every snapshot_count
// entries; once the log has grown to the image's size it is; recovery
// replays the longer log.
TEST(Node, SnapshotWaitsForTheLogToGrowPastTheRatio) {
  for (double ratio : {0.0, 1.0}) {
    SCOPED_TRACE(ratio);
    Bus bus;
    bus.options.snapshot_count = 8;
    bus.options.snapshot_catchup_entries = 2;
    bus.options.snapshot_log_ratio = ratio;
    bus.options.snapshot_step_bytes = 1 << 20;  // a snapshot in one step
    bus.Add(1, {1});
    ASSERT_TRUE(bus.Start(1).ok());
    ASSERT_EQ(bus.ElectLeader(), 1u);
    auto completed = [&] { return bus.node(1).snapshot_stats().completed; };
    const std::string big(1000, 'b');
    int bigs = 0;
    while (completed() == 0 && bigs < 50) {
      ASSERT_TRUE(bus.Put(1, absl::StrCat("big", bigs++), big).ok());
    }
    ASSERT_EQ(completed(), 1u);
    // Eight snapshot_counts of small overwrites of one key: a fraction of
    // the image's bytes.
    for (int i = 0; i < 64; ++i) {
      ASSERT_TRUE(bus.Put(1, "small", absl::StrCat(i)).ok());
    }
    if (ratio == 0) {
      EXPECT_GE(completed(), 7u);
      EXPECT_EQ(bus.node(1).snapshot_stats().deferred, 0u);
    } else {
      EXPECT_EQ(completed(), 1u);
      EXPECT_EQ(bus.node(1).snapshot_stats().deferred, 1u);
      // Large writes bring the log past the image: a snapshot again.
      const uint64_t before = completed();
      for (int i = 0; i < 3 * bigs && completed() == before; ++i) {
        ASSERT_TRUE(bus.Put(1, absl::StrCat("more", i), big).ok());
      }
      EXPECT_EQ(completed(), before + 1);
      for (int i = 0; i < 64; ++i) {
        ASSERT_TRUE(bus.Put(1, "small", absl::StrCat(100 + i)).ok());
      }
    }
    bus.Crash(1);
    ASSERT_TRUE(bus.Start(1).ok());
    ASSERT_EQ(bus.ElectLeader(), 1u);
    bus.Tick();
    EXPECT_EQ(bus.sm(1).data().at("small"), ratio == 0 ? "63" : "163");
    EXPECT_EQ(bus.sm(1).data().at("big0"), big);
  }
}

}  // namespace
}  // namespace detcd::server
