// Raft core throughput without I/O: how many proposals per second a
// 3-node in-memory cluster commits and applies on one core, batching
// proposals per Ready as a server would under load.
#include <benchmark/benchmark.h>

#include <deque>
#include <map>
#include <memory>

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

}  // namespace
}  // namespace detcd::raft
