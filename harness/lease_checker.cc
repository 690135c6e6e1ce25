#include "harness/lease_checker.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace detcd::harness {
namespace {

constexpr int64_t kMillion = 1'000'000;
constexpr int64_t kMs = 1'000'000;
// SimClock applies drift in whole nanoseconds per microsecond of virtual
// time; over any interval its reading is off the exact rate by a few ns.
constexpr int64_t kRoundingNs = 1'000;

int64_t Ms(int64_t ns) { return ns / kMs; }

}  // namespace

int64_t LeaseChecker::FastTrue(int64_t clock_ns) const {
  if (clock_ns <= 0) return clock_ns;
  // clock_ns / (1 + d), rounded down: the shortest true time in which a
  // clock running fast by the bound covers clock_ns.
  const __int128 v = static_cast<__int128>(clock_ns) * kMillion /
                     (kMillion + bounds_.max_drift_ppm);
  return static_cast<int64_t>(v);
}

int64_t LeaseChecker::SlowTrue(int64_t clock_ns) const {
  if (clock_ns <= 0) return clock_ns;
  // clock_ns / (1 - d), rounded up.
  const int64_t den = kMillion - bounds_.max_drift_ppm;
  const __int128 num = static_cast<__int128>(clock_ns) * kMillion;
  return static_cast<int64_t>((num + den - 1) / den);
}

int64_t LeaseChecker::JumpsBetween(int64_t from_ns, int64_t to_ns) const {
  // Jumps at times in (from_ns, to_ns].
  auto sum_upto = [this](int64_t t) -> int64_t {
    auto it = std::upper_bound(
        jumps_.begin(), jumps_.end(), t,
        [](int64_t v, const Jump& j) { return v < j.at_ns; });
    return it == jumps_.begin() ? 0 : (it - 1)->sum;
  };
  if (to_ns <= from_ns) return 0;
  return sum_upto(to_ns) - sum_upto(from_ns);
}

void LeaseChecker::OnClockJump(uint64_t /*node*/, int64_t now_ns,
                               int64_t forward_ns) {
  if (forward_ns <= 0) return;
  const int64_t before = jumps_.empty() ? 0 : jumps_.back().sum;
  jumps_.push_back(Jump{now_ns, before + forward_ns});
}

void LeaseChecker::OnPrimary(int64_t now_ns) {
  last_primary_ = std::max(last_primary_, now_ns);
}

int64_t LeaseChecker::DeadlineOf(const Lease& l) const {
  if (l.ttl_ns <= 0) return 0;
  const int64_t ttl = SlowTrue(l.ttl_ns);
  int64_t d = l.renew_ub + ttl;
  // A promotion before the grant was invoked cannot touch the lease.
  if (last_primary_ >= l.granted_invoke) {
    d = std::max(d, last_primary_ + SlowTrue(l.ttl_ns + bounds_.extend_ns));
  }
  // Each renew of unknown time happened while the lease was alive.
  return d + l.unknown_renews * ttl + kRoundingNs;
}

int64_t LeaseChecker::Deadline(int64_t id) const {
  auto it = leases_.find(id);
  return it == leases_.end() ? 0 : DeadlineOf(it->second);
}

int64_t LeaseChecker::EarliestDeath(int64_t id, int64_t now_ns) const {
  auto it = leases_.find(id);
  if (it == leases_.end() || it->second.ttl_ns <= 0) return -1;
  const Lease& l = it->second;
  const int64_t jumped = JumpsBetween(l.alive_lb, now_ns);
  return l.alive_lb + FastTrue(l.ttl_ns - jumped) - kRoundingNs;
}

void LeaseChecker::CheckNotEarly(int64_t id, Lease& l, int64_t dead_ns,
                                 const char* how) {
  if (l.ttl_ns <= 0 || l.early_reported) return;
  // A client asked for the revoke before the lease was seen dead.
  if (l.revoke_requested >= 0 && l.revoke_requested <= dead_ns) return;
  const int64_t earliest = EarliestDeath(id, dead_ns);
  if (dead_ns >= earliest) return;
  l.early_reported = true;
  const int64_t jumped = JumpsBetween(l.alive_lb, dead_ns);
  Violation(absl::StrCat(
      "lease ", id, ": ", how, " at ", dead_ns, " ns, ",
      Ms(earliest - dead_ns), " ms before its TTL could have run out (ttl ",
      Ms(l.ttl_ns), " ms from the acknowledged renew invoked at ", l.alive_lb,
      " ns; earliest death ", earliest, " ns with clock drift <= ",
      bounds_.max_drift_ppm, " ppm",
      jumped > 0 ? absl::StrCat(" and ", Ms(jumped),
                                " ms of reported clock jumps")
                 : "",
      ")"));
}

void LeaseChecker::OnGranted(int64_t id, int64_t ttl_s, int64_t invoke_ns,
                             int64_t return_ns) {
  Lease& l = leases_[id];
  l.ttl_ns = ttl_s * 1'000'000'000;
  if (l.granted_invoke < 0) l.granted_invoke = invoke_ns;
  l.alive_lb = std::max(l.alive_lb, invoke_ns);
  // The grant applied on the leader (setting the expiry there) before any
  // member answered.
  l.renew_ub = std::max(l.renew_ub, return_ns);
  if (l.revoked_at >= 0) CheckNotEarly(id, l, l.revoked_at, "revoke applied");
}

void LeaseChecker::OnGrantApplied(int64_t id, int64_t now_ns) {
  Lease& l = leases_[id];
  l.renew_ub = std::max(l.renew_ub, now_ns);
}

void LeaseChecker::OnKeepAlive(int64_t id, int64_t invoke_ns,
                               int64_t return_ns, KeepAlive outcome,
                               bool may_renew_later) {
  auto it = leases_.find(id);
  if (it == leases_.end()) return;
  Lease& l = it->second;
  if (outcome == KeepAlive::kOk) {
    if (l.revoked_at >= 0 && invoke_ns > l.revoked_at) {
      Violation(absl::StrCat("lease ", id, ": keep-alive invoked at ",
                             invoke_ns, " ns succeeded after its revoke was ",
                             "applied at ", l.revoked_at, " ns"));
    }
    const int64_t deadline = DeadlineOf(l);
    if (l.ttl_ns > 0 && invoke_ns > deadline) {
      Violation(absl::StrCat(
          "lease ", id, ": keep-alive invoked at ", invoke_ns,
          " ns renewed a lease that had expired by ", deadline, " ns (",
          Ms(invoke_ns - deadline), " ms late; ttl ", Ms(l.ttl_ns),
          " ms, last answered renew by ", l.renew_ub, " ns, ",
          l.unknown_renews, " renews of unknown time, last promotion at ",
          last_primary_, " ns, clock drift <= ", bounds_.max_drift_ppm,
          " ppm)"));
    }
    l.alive_lb = std::max(l.alive_lb, invoke_ns);
    l.renew_ub = std::max(l.renew_ub, return_ns);
    if (l.revoked_at >= 0) {
      CheckNotEarly(id, l, l.revoked_at, "revoke applied");
    }
  } else if (outcome == KeepAlive::kNotFound) {
    // The leader refused it as unknown or expired, before it answered.
    CheckNotEarly(id, l, return_ns, "keep-alive refused as expired");
  } else if (!may_renew_later) {
    // Failed, and finished: whatever it did happened before the answer.
    l.renew_ub = std::max(l.renew_ub, return_ns);
  }
  if (may_renew_later) ++l.unknown_renews;
}

void LeaseChecker::OnKeepAliveSettled(int64_t id, int64_t now_ns) {
  auto it = leases_.find(id);
  if (it == leases_.end() || it->second.unknown_renews == 0) return;
  --it->second.unknown_renews;
  it->second.renew_ub = std::max(it->second.renew_ub, now_ns);
}

void LeaseChecker::OnTimeToLive(int64_t id, int64_t invoke_ns,
                                int64_t return_ns, int64_t ttl_s) {
  auto it = leases_.find(id);
  if (it == leases_.end()) return;
  Lease& l = it->second;
  if (ttl_s < 0) {
    CheckNotEarly(id, l, return_ns, "time-to-live reported it expired");
    return;
  }
  // Answered by the leader after a ReadIndex, like a keep-alive: a lease
  // revoked before the request was made cannot be reported alive.
  if (l.revoked_at >= 0 && invoke_ns > l.revoked_at) {
    Violation(absl::StrCat("lease ", id, ": time-to-live invoked at ",
                           invoke_ns, " ns reported ", ttl_s,
                           " s left after its revoke was applied at ",
                           l.revoked_at, " ns"));
  }
  // Nor alive past its deadline: the leader's expiry lies before it.
  const int64_t deadline = DeadlineOf(l);
  if (l.ttl_ns > 0 && invoke_ns > deadline) {
    Violation(absl::StrCat("lease ", id, ": time-to-live invoked at ",
                           invoke_ns, " ns reported ", ttl_s,
                           " s left, but it had expired by ", deadline,
                           " ns"));
  }
}

void LeaseChecker::OnRevokeRequested(int64_t id, int64_t invoke_ns) {
  Lease& l = leases_[id];
  if (l.revoke_requested < 0) l.revoke_requested = invoke_ns;
}

void LeaseChecker::OnRevokeApplied(int64_t id, int64_t now_ns) {
  Lease& l = leases_[id];
  if (l.revoked_at >= 0) return;
  l.revoked_at = now_ns;
  CheckNotEarly(id, l, now_ns, "revoke applied");
}

int64_t LeaseChecker::SettleTime() const {
  int64_t t = 0;
  for (const auto& [id, l] : leases_) {
    if (l.revoked_at < 0 && l.ttl_ns > 0) {
      t = std::max(t, DeadlineOf(l) + bounds_.revoke_within_ns);
    }
  }
  return t;
}

std::vector<int64_t> LeaseChecker::MustBeGone(int64_t now_ns) const {
  std::vector<int64_t> out;
  for (const auto& [id, l] : leases_) {
    if (l.ttl_ns > 0 && DeadlineOf(l) + bounds_.revoke_within_ns < now_ns) {
      out.push_back(id);
    }
  }
  return out;
}

std::string LeaseChecker::Waivers() const {
  if (!bounds_.clock_jumps) return "";
  return absl::StrCat(
      "lease: early-revoke bound lowered by each clock jump beyond the "
      "declared drift bound (",
      jumps_.size(), " reported, ", Ms(jumped_ns()), " ms in all)");
}

}  // namespace detcd::harness
