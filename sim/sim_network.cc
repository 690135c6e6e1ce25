#include "sim/sim_network.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace detcd::sim {

void SimNetwork::Partition(const std::vector<uint64_t>& a,
                           const std::vector<uint64_t>& b) {
  for (uint64_t x : a) {
    for (uint64_t y : b) CutBoth(x, y);
  }
}

void SimNetwork::Send(uint64_t from, uint64_t to, std::string payload,
                      int64_t extra_delay_ns) {
  ++stats_.sent;
  if (rng_.scheduled()) {
    auto [it, fresh] = link_streams_.try_emplace({from, to}, 0);
    if (fresh) {
      it->second = rng_.decisions()->StreamHandle(
          absl::StrCat("net/", from, "-", to), "network");
    }
    rng_.UseHandle(it->second);
  }
  if (IsCut(from, to)) {
    ++stats_.cut;
    return;
  }
  if (rng_.Chance(opts_.loss)) {
    ++stats_.lost;
    return;
  }
  if (rng_.Chance(opts_.duplicate)) {
    ++stats_.duplicated;
    Schedule(from, to, payload, extra_delay_ns);
  }
  Schedule(from, to, std::move(payload), extra_delay_ns);
}

void SimNetwork::Schedule(uint64_t from, uint64_t to, std::string payload,
                          int64_t extra_delay_ns) {
  int64_t latency = extra_delay_ns + rng_.Range(opts_.min_latency_ns,
                               std::max(opts_.min_latency_ns,
                                        opts_.max_latency_ns));
  if (rng_.Chance(opts_.reorder)) {
    ++stats_.reordered;
    latency += rng_.Range(0, opts_.reorder_delay_ns);
  }
  int64_t when = world_->now() + latency;
  auto clog = clogged_.find({from, to});
  if (clog != clogged_.end() && clog->second > when) {
    ++stats_.clogged;
    when = clog->second;
  }
  uint32_t slot;
  if (free_.empty()) {
    slot = static_cast<uint32_t>(in_flight_.size());
    in_flight_.push_back(InFlight{from, to, std::move(payload)});
  } else {
    slot = free_.back();
    free_.pop_back();
    in_flight_[slot] = InFlight{from, to, std::move(payload)};
  }
  // [this, slot] fits in std::function's inline buffer: no allocation.
  world_->At(when, [this, slot] { Arrive(slot); });
}

void SimNetwork::Arrive(uint32_t slot) {
  InFlight m = std::move(in_flight_[slot]);
  free_.push_back(slot);
  auto it = inbox_.find(m.to);
  if (it == inbox_.end()) {
    ++stats_.to_down_node;
    return;
  }
  ++stats_.delivered;
  world_->Note(TraceKind::kDeliver, m.to, m.from, m.payload);
  it->second(m.from, std::move(m.payload));
}

}  // namespace detcd::sim
