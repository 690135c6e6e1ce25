// Raft core throughput without I/O, on one core:
//   BM_ProposeCommitApply3  proposals a 3-node in-memory cluster commits
//                           and applies, batching proposals per Ready as a
//                           server would under load;
//   BM_LeaderPropose        the leader's append of one proposal (unstable
//                           log, a kApp per follower);
//   BM_LeaderAppResp        the leader's handling of one kAppResp (progress
//                           update, commit advance) with entries in flight;
//   BM_FollowerApp          a follower's handling of one kApp carrying N
//                           entries: Step, then the Ready (entries into
//                           MemoryStorage, hard state, committed entries,
//                           the response) and Advance.
#include <benchmark/benchmark.h>

#include <deque>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "engine/raft/raft.h"

namespace detcd::raft {
namespace {

struct BenchNode {
  MemoryStorage storage;
  env::SeededRng rng{0};
  std::unique_ptr<Raft> raft;
  uint64_t applied = 0;
};

class BenchCluster {
 public:
  explicit BenchCluster(int n) {
    ConfState cs;
    for (int i = 1; i <= n; ++i) cs.voters.push_back(i);
    for (int i = 1; i <= n; ++i) {
      auto node = std::make_unique<BenchNode>();
      node->rng = env::SeededRng(i);
      node->storage.SetInitialConfState(cs);
      Config c;
      c.id = i;
      c.storage = &node->storage;
      c.rng = &node->rng;
      c.max_inflight_msgs = 4096;
      node->raft = std::make_unique<Raft>(c);
      nodes_.emplace(i, std::move(node));
    }
    (void)nodes_[1]->raft->Campaign();
    Stabilize();
  }

  Raft& leader() { return *nodes_[1]->raft; }
  uint64_t applied(NodeId id) { return nodes_[id]->applied; }

  void Stabilize() {
    for (bool busy = true; busy;) {
      busy = false;
      for (auto& [id, n] : nodes_) {
        while (n->raft->HasReady()) {
          busy = true;
          Ready rd = n->raft->GetReady();
          if (rd.snapshot) (void)n->storage.ApplySnapshot(*rd.snapshot);
          (void)n->storage.Append(rd.entries);
          if (rd.hard_state) n->storage.SetHardState(*rd.hard_state);
          for (auto& m : rd.early_messages) net_.push_back(std::move(m));
          for (auto& m : rd.messages) net_.push_back(std::move(m));
          n->applied += rd.committed_entries.size();
          n->raft->Advance(rd);
        }
      }
      while (!net_.empty()) {
        busy = true;
        Message m = std::move(net_.front());
        net_.pop_front();
        (void)nodes_[m.to]->raft->Step(std::move(m));
      }
    }
  }

 private:
  std::map<NodeId, std::unique_ptr<BenchNode>> nodes_;
  std::deque<Message> net_;
};

void BM_ProposeCommitApply3(benchmark::State& state) {
  const int batch = static_cast<int>(state.range(0));
  BenchCluster c(3);
  const std::string payload(128, 'x');
  int64_t proposals = 0;
  for (auto _ : state) {
    for (int i = 0; i < batch; ++i) {
      if (!c.leader().Propose(payload).ok()) state.SkipWithError("dropped");
    }
    c.Stabilize();
    proposals += batch;
  }
  state.SetItemsProcessed(proposals);
}
BENCHMARK(BM_ProposeCommitApply3)->Arg(1)->Arg(16)->Arg(256);

// Persists a Ready in memory (what a server does with the WAL and its
// state machine, minus the I/O) and acknowledges it. Messages are dropped.
void DrainReady(Raft& r, MemoryStorage& storage) {
  while (r.HasReady()) {
    Ready rd = r.GetReady();
    if (rd.snapshot) (void)storage.ApplySnapshot(*rd.snapshot);
    (void)storage.Append(rd.entries);
    if (rd.hard_state) storage.SetHardState(*rd.hard_state);
    benchmark::DoNotOptimize(rd.committed_entries.data());
    r.Advance(rd);
  }
}

// Keeps the in-memory log short (as the server's snapshots do), so that a
// long run measures the same log shape throughout.
void CompactTo(Raft& r, MemoryStorage& storage, uint64_t keep) {
  const uint64_t applied = r.log().applied();
  if (applied > keep + storage.FirstIndex()) {
    (void)storage.Compact(applied - keep);
  }
}

// The leader of voters {1, 2, 3}, both followers in replicate state.
// Pre-vote and check-quorum off: the election is scripted here.
struct LeaderRig {
  MemoryStorage storage;
  env::SeededRng rng{1};
  std::unique_ptr<Raft> raft;

  LeaderRig() {
    storage.SetInitialConfState(ConfState{{1, 2, 3}, {}});
    Config c;
    c.id = 1;
    c.storage = &storage;
    c.rng = &rng;
    c.pre_vote = false;
    c.check_quorum = false;
    c.max_inflight_msgs = 1 << 16;
    c.max_uncommitted_entries_size = 0;
    raft = std::make_unique<Raft>(c);
    (void)raft->Campaign();
    Message v;
    v.type = MessageType::kVoteResp;
    v.from = 2;
    v.to = 1;
    v.term = raft->term();
    (void)raft->Step(v);
    DrainReady(*raft, storage);
    for (NodeId f : {NodeId{2}, NodeId{3}}) {
      (void)Ack(f, raft->log().LastIndex());
    }
    DrainReady(*raft, storage);
  }

  absl::Status Ack(NodeId from, uint64_t index) {
    Message m;
    m.type = MessageType::kAppResp;
    m.from = from;
    m.to = 1;
    m.term = raft->term();
    m.index = index;
    return raft->Step(std::move(m));
  }
};

// One kAppResp per iteration, the followers taking turns, each acking the
// next entry: every response moves a match index and the commit index.
// Entries are proposed and persisted in chunks with the timer paused.
void BM_LeaderAppResp(benchmark::State& state) {
  LeaderRig rig;
  if (rig.raft->state() != StateType::kLeader) {
    state.SkipWithError("no leader");
    return;
  }
  constexpr int kChunk = 512;
  const std::string payload(128, 'x');
  int left = 0;
  uint64_t next = rig.raft->log().LastIndex();
  for (auto _ : state) {
    if (left == 0) {
      state.PauseTiming();
      DrainReady(*rig.raft, rig.storage);
      CompactTo(*rig.raft, rig.storage, 64);
      (void)rig.raft->TakeMessages();
      next = rig.raft->log().LastIndex();
      for (int i = 0; i < kChunk; ++i) {
        if (!rig.raft->Propose(payload).ok()) state.SkipWithError("dropped");
      }
      DrainReady(*rig.raft, rig.storage);
      left = kChunk;
      state.ResumeTiming();
    }
    // Follower 2 acks even steps, 3 odd ones: the quorum's match index
    // (and with it the commit index) advances by one on each response.
    const NodeId from = (left & 1) ? 3 : 2;
    ++next;
    if (!rig.Ack(from, next).ok()) state.SkipWithError("step failed");
    --left;
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_LeaderAppResp);

// The leader's append: one Propose per iteration (the entry appended to
// the unstable log and a kApp built for each follower in replicate state).
// Every 512 proposals, with the timer paused, the Ready is persisted, both
// followers ack, and the log is compacted, so the in-flight window and the
// log stay small.
void BM_LeaderPropose(benchmark::State& state) {
  LeaderRig rig;
  if (rig.raft->state() != StateType::kLeader) {
    state.SkipWithError("no leader");
    return;
  }
  const std::string payload(128, 'x');
  int n = 0;
  for (auto _ : state) {
    if (!rig.raft->Propose(payload).ok()) state.SkipWithError("dropped");
    if (++n == 512) {
      state.PauseTiming();
      n = 0;
      DrainReady(*rig.raft, rig.storage);
      const uint64_t last = rig.raft->log().LastIndex();
      (void)rig.Ack(2, last);
      (void)rig.Ack(3, last);
      DrainReady(*rig.raft, rig.storage);
      (void)rig.raft->TakeMessages();
      CompactTo(*rig.raft, rig.storage, 64);
      state.ResumeTiming();
    }
  }
  if (rig.raft->pending_messages().empty() && n > 0) {
    state.SkipWithError("no kApp sent");
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_LeaderPropose);

// A follower (id 2) receiving kApp from leader 1, range(0) entries of
// 128 bytes each with the commit index at the last of them.
void BM_FollowerApp(benchmark::State& state) {
  const int n = static_cast<int>(state.range(0));
  MemoryStorage storage;
  storage.SetInitialConfState(ConfState{{1, 2, 3}, {}});
  env::SeededRng rng{2};
  Config c;
  c.id = 2;
  c.storage = &storage;
  c.rng = &rng;
  Raft raft(c);
  const std::string payload(128, 'x');
  constexpr uint64_t kTerm = 1;
  uint64_t last = 0;
  // Messages are built ahead in chunks with the timer paused (building one
  // is the transport's decoding, measured by proto_bench's BM_RaftMsgDecode).
  std::vector<Message> msgs;
  size_t at = 0;
  uint64_t stepped = 0;
  for (auto _ : state) {
    if (at == msgs.size()) {
      state.PauseTiming();
      CompactTo(raft, storage, 64);
      msgs.clear();
      at = 0;
      for (int k = 0; k < 64; ++k) {
        Message m;
        m.type = MessageType::kApp;
        m.from = 1;
        m.to = 2;
        m.term = kTerm;
        m.log_term = last == 0 ? 0 : kTerm;
        m.index = last;
        m.entries.resize(static_cast<size_t>(n));
        for (Entry& e : m.entries) {
          e.term = kTerm;
          e.index = ++last;
          e.data = payload;
        }
        m.commit = last;
        msgs.push_back(std::move(m));
      }
      state.ResumeTiming();
    }
    stepped = msgs[at].commit;
    if (!raft.Step(std::move(msgs[at++])).ok()) state.SkipWithError("step");
    while (raft.HasReady()) {
      Ready rd = raft.GetReady();
      (void)storage.Append(rd.entries);
      if (rd.hard_state) storage.SetHardState(*rd.hard_state);
      benchmark::DoNotOptimize(rd.messages.data());
      raft.Advance(rd);
    }
  }
  if (raft.log().committed() != stepped) state.SkipWithError("not committed");
  state.SetItemsProcessed(state.iterations() * n);
}
BENCHMARK(BM_FollowerApp)->Arg(1)->Arg(16)->Arg(256);

}  // namespace
}  // namespace detcd::raft
