// A one-member cluster in the simulator (harness::Cluster), for targets that
// drive the engine's request path as the real server's gRPC services do:
// EtcdServer's request methods, raft, the WAL on a SimDisk, apply, and the
// harness's safety checker watching every step. Made fresh for every input
// (about a millisecond of CPU), so an input's outcome never depends on the
// inputs before it.
#ifndef DETCD_FUZZ_ONE_MEMBER_H_
#define DETCD_FUZZ_ONE_MEMBER_H_

#include <memory>
#include <optional>
#include <utility>

#include "absl/status/statusor.h"
#include "engine/server/etcd_server.h"
#include "fuzz/fuzz_target.h"
#include "harness/cluster.h"

namespace detcd::fuzz {

class OneMember {
 public:
  static constexpr uint64_t kId = 1;

  OneMember() {
    harness::ClusterOptions o;
    o.nodes = 1;
    o.node.election_ticks = 3;
    o.node.heartbeat_ticks = 1;
    o.node.request_timeout_ticks = 50;
    // The cheapest bcrypt etcd allows: UserAdd and Authenticate hash.
    o.server.bcrypt_cost = 4;
    cluster_ = std::make_unique<harness::Cluster>(/*seed=*/1, o, nullptr);
    for (int i = 0; i < 100 && cluster_->Leader() != kId; ++i) Run(sim::kMillisecond * 10);
    if (cluster_->Leader() != kId) Fail("one-member cluster elected no leader");
  }

  harness::Cluster& cluster() { return *cluster_; }

  void Run(int64_t ns) {
    cluster_->world().RunUntil(cluster_->world().now() + ns);
  }

  // Calls fn(server, done) and runs the world until done was called (or a
  // bounded virtual time passed: a request that never answers is a bug the
  // caller's oracle may report; here it returns nullopt).
  template <typename Resp, typename Fn>
  std::optional<absl::StatusOr<Resp>> Do(Fn fn) {
    std::optional<absl::StatusOr<Resp>> out;
    const bool up = cluster_->Call(kId, [&](server::EtcdServer& s) {
      fn(s, [&out](absl::StatusOr<Resp> r) { out = std::move(r); });
    });
    if (!up) Fail("the member went down");
    for (int i = 0; i < 200 && !out; ++i) Run(sim::kMillisecond * 10);
    return out;
  }

  // The member stayed up and the checkers saw nothing wrong.
  void CheckHealthy() {
    if (!cluster_->IsUp(kId)) Fail("the member is down");
    if (!cluster_->checker().ok()) {
      for (const auto& v : cluster_->checker().violations()) {
        std::fprintf(stderr, "violation: %s\n", v.c_str());
      }
      Fail("safety checker violation");
    }
  }

 private:
  std::unique_ptr<harness::Cluster> cluster_;
};

}  // namespace detcd::fuzz

#endif  // DETCD_FUZZ_ONE_MEMBER_H_
