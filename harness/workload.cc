#include "harness/workload.h"

#include "absl/strings/str_cat.h"

namespace detcd::harness {

Workload::Workload(Cluster* cluster, env::SeededRng rng, WorkloadOptions opts)
    : cluster_(cluster), rng_(rng), opts_(opts) {
  clients_.resize(opts_.clients);
  for (int i = 0; i < opts_.clients; ++i) clients_[i].id = i;
}

void Workload::Start() {
  for (int i = 0; i < opts_.clients; ++i) {
    cluster_->world().After(rng_.Range(0, opts_.max_think_ns),
                            [this, i] { Next(i); });
  }
}

void Workload::Next(int c) {
  Client& cl = clients_[c];
  if (cl.busy || issued_ >= opts_.ops) return;
  std::vector<uint64_t> up = cluster_->UpNodes();
  sim::World& world = cluster_->world();
  if (up.empty()) {
    world.After(100 * sim::kMillisecond, [this, c] { Next(c); });
    return;
  }
  ++issued_;
  cl.busy = true;
  const uint64_t seq = ++cl.op_seq;
  cl.started_ns = world.now();
  const uint64_t target = up[rng_.Uniform(up.size())];
  world.After(opts_.timeout_ns, [this, c, seq] {
    Finish(c, seq, "unknown", "timeout");
  });
  if (rng_.Chance(opts_.read_fraction)) {
    cluster_->ReadIndex(target, [this, c, seq](absl::Status s) {
      Finish(c, seq, s.ok() ? "ok" : "fail", "read");
    });
    return;
  }
  std::string cmd = absl::StrCat("put k", rng_.Uniform(opts_.keys), " c", c,
                                 "-", seq);
  cluster_->Propose(target, cmd,
                    [this, c, seq, cmd](absl::StatusOr<std::string> r) {
                      if (r.ok()) cluster_->checker().OnAcknowledged(cmd);
                      Finish(c, seq, r.ok() ? "ok" : "fail", cmd);
                    });
}

void Workload::Finish(int c, uint64_t seq, const char* outcome,
                      const std::string& what) {
  Client& cl = clients_[c];
  if (!cl.busy || cl.op_seq != seq) return;  // already finished
  cl.busy = false;
  ++completed_;
  std::string_view o = outcome;
  if (o == "ok") {
    ++stats_.ok;
  } else if (o == "fail") {
    ++stats_.failed;
  } else {
    ++stats_.unknown;
  }
  sim::World& world = cluster_->world();
  world.Mix(c);
  world.Mix(o);
  if (Trace* t = cluster_->trace()) {
    t->Span(cl.started_ns, world.now(), 1000 + c, what, outcome);
  }
  // Never call back into a node from its own callback: continue from a new
  // event.
  world.After(rng_.Range(1, opts_.max_think_ns), [this, c] { Next(c); });
}

}  // namespace detcd::harness
