// The probabilistic network of the simulation (TigerBeetle's packet
// simulator, FoundationDB's sim2 network): every payload gets a latency
// drawn from a distribution, and may be lost, duplicated or delayed out of
// order; links can be cut one way or both ways (partitions) or clogged
// (held until a time). All randomness comes from the network's own stream.
#ifndef DETCD_SIM_SIM_NETWORK_H_
#define DETCD_SIM_SIM_NETWORK_H_

#include <cstdint>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "engine/env/env.h"
#include "sim/schedule.h"
#include "sim/world.h"

namespace detcd::sim {

struct NetworkOptions {
  int64_t min_latency_ns = 200 * kMicrosecond;
  int64_t max_latency_ns = 2 * kMillisecond;
  double loss = 0;       // probability a payload is dropped
  double duplicate = 0;  // probability a payload is delivered twice
  // Probability a payload gets an extra delay of up to reorder_delay_ns,
  // which lets later payloads overtake it.
  double reorder = 0;
  int64_t reorder_delay_ns = 20 * kMillisecond;
};

class SimNetwork {
 public:
  using Deliver = std::function<void(uint64_t from, std::string payload)>;

  // With `decisions`, every payload's fate is drawn from the stream of its
  // link ("net/FROM-TO"), recorded and replayable (sim/schedule.h).
  SimNetwork(World* world, env::SeededRng rng, Decisions* decisions = nullptr)
      : world_(world), rng_(rng, decisions, "network") {}

  void set_options(const NetworkOptions& o) { opts_ = o; }
  const NetworkOptions& options() const { return opts_; }

  // A node's inbox. While a node is down its inbox is gone and payloads to
  // it vanish.
  void Attach(uint64_t id, Deliver deliver) { inbox_[id] = std::move(deliver); }
  void Detach(uint64_t id) { inbox_.erase(id); }

  // extra_delay_ns: time the sender was busy before the payload left it
  // (e.g. the disk latency of the write the message waited for).
  void Send(uint64_t from, uint64_t to, std::string payload,
            int64_t extra_delay_ns = 0);

  // Faults.
  void Cut(uint64_t from, uint64_t to) { cut_.insert({from, to}); }
  void CutBoth(uint64_t a, uint64_t b) {
    Cut(a, b);
    Cut(b, a);
  }
  // Symmetric partition: no traffic between the groups.
  void Partition(const std::vector<uint64_t>& a,
                 const std::vector<uint64_t>& b);
  // Holds everything on from->to until `until` (then delivers it).
  void Clog(uint64_t from, uint64_t to, int64_t until) {
    clogged_[{from, to}] = until;
  }
  void HealAll() {
    cut_.clear();
    clogged_.clear();
  }
  bool IsCut(uint64_t from, uint64_t to) const {
    return cut_.count({from, to}) > 0;
  }

  struct Stats {
    uint64_t sent = 0, delivered = 0, lost = 0, cut = 0, duplicated = 0,
             to_down_node = 0;
    uint64_t reordered = 0;  // given an extra delay to be overtaken
    uint64_t clogged = 0;    // held back by a clogged link
    // Payloads a network fault touched (the run's "did a fault fire").
    uint64_t faults() const {
      return lost + cut + duplicated + reordered + clogged;
    }
  };
  const Stats& stats() const { return stats_; }

 private:
  void Schedule(uint64_t from, uint64_t to, std::string payload,
                int64_t extra_delay_ns);
  void Arrive(uint32_t slot);

  // Payloads on the wire, reused through free_ (each is delivered or
  // dropped exactly once, by its Arrive event).
  struct InFlight {
    uint64_t from = 0;
    uint64_t to = 0;
    std::string payload;
  };
  std::vector<InFlight> in_flight_;
  std::vector<uint32_t> free_;

  World* world_;
  ScheduledRng rng_;
  std::map<std::pair<uint64_t, uint64_t>, int> link_streams_;  // scheduled
  NetworkOptions opts_;
  std::map<uint64_t, Deliver> inbox_;
  std::set<std::pair<uint64_t, uint64_t>> cut_;
  std::map<std::pair<uint64_t, uint64_t>, int64_t> clogged_;
  Stats stats_;
};

// The env::Transport a simulated node sends through. Payloads leave after
// the disk latency the node has accumulated in the current event (its
// writes happen before its sends, per the Ready contract).
class SimTransport final : public env::Transport {
 public:
  SimTransport(SimNetwork* net, uint64_t self,
               std::function<int64_t()> busy_ns = nullptr)
      : net_(net), self_(self), busy_ns_(std::move(busy_ns)) {}
  void Send(uint64_t to, std::string payload) override {
    net_->Send(self_, to, std::move(payload), busy_ns_ ? busy_ns_() : 0);
  }

 private:
  SimNetwork* net_;
  uint64_t self_;
  std::function<int64_t()> busy_ns_;
};

}  // namespace detcd::sim

#endif  // DETCD_SIM_SIM_NETWORK_H_
