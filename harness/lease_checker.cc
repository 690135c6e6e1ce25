#include "harness/lease_checker.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace detcd::harness {

void LeaseChecker::OnGranted(int64_t id, int64_t ttl_s, int64_t invoke_ns,
                             int64_t return_ns) {
  Lease& l = leases_[id];
  l.ttl_ns = ttl_s * 1'000'000'000;
  l.alive_since = std::max(l.alive_since, return_ns);
}

int64_t LeaseChecker::LastElectionBefore(int64_t t) const {
  auto it = std::upper_bound(elections_.begin(), elections_.end(), t);
  return it == elections_.begin() ? 0 : *(it - 1);
}

int64_t LeaseChecker::Deadline(int64_t id) const {
  auto it = leases_.find(id);
  if (it == leases_.end()) return 0;
  const Lease& l = it->second;
  // A leader elected after the last renewal may restart the countdown
  // from the full (or checkpointed) TTL: etcd's semantics.
  const int64_t from = std::max(l.alive_since, elections_.empty()
                                                   ? 0
                                                   : elections_.back());
  return from + l.ttl_ns + extend_ns_;
}

void LeaseChecker::OnKeepAlive(int64_t id, int64_t invoke_ns,
                               int64_t return_ns, KeepAlive outcome,
                               int64_t ttl_s) {
  auto it = leases_.find(id);
  if (it == leases_.end()) return;
  Lease& l = it->second;
  if (outcome == KeepAlive::kFailed) {
    // Timed out or cut off: the leader may still have renewed it, as late
    // as its own request timeout after the client gave up.
    l.alive_since = std::max(l.alive_since, return_ns + unknown_slack_ns_);
    return;
  }
  if (outcome != KeepAlive::kOk) return;
  if (l.revoked_at >= 0 && invoke_ns > l.revoked_at) {
    Violation(absl::StrCat("lease ", id, ": keep-alive invoked at ",
                           invoke_ns, " ns succeeded after its revoke was ",
                           "applied at ", l.revoked_at, " ns"));
  }
  const int64_t from =
      std::max(l.alive_since, LastElectionBefore(return_ns));
  const int64_t deadline = from + l.ttl_ns + extend_ns_;
  if (invoke_ns > deadline) {
    Violation(absl::StrCat("lease ", id, ": keep-alive invoked at ",
                           invoke_ns, " ns revived a lease that expired by ",
                           deadline, " ns (ttl ", l.ttl_ns / 1'000'000,
                           " ms, alive since ", l.alive_since, " ns)"));
  }
  l.alive_since = std::max(l.alive_since, return_ns);
  (void)ttl_s;
}

void LeaseChecker::OnTimeToLive(int64_t id, int64_t invoke_ns,
                                int64_t ttl_s) {
  auto it = leases_.find(id);
  if (it == leases_.end() || ttl_s < 0) return;
  // Answered by the leader after a ReadIndex, like a keep-alive: a lease
  // revoked before the request was made cannot be reported alive.
  if (it->second.revoked_at >= 0 && invoke_ns > it->second.revoked_at) {
    Violation(absl::StrCat("lease ", id, ": time-to-live invoked at ",
                           invoke_ns, " ns reported ", ttl_s,
                           " s left after its revoke was applied at ",
                           it->second.revoked_at, " ns"));
  }
}

void LeaseChecker::OnRevokeApplied(int64_t id, int64_t now_ns) {
  Lease& l = leases_[id];
  if (l.revoked_at < 0) l.revoked_at = now_ns;
}

int64_t LeaseChecker::SettleTime() const {
  int64_t t = 0;
  for (const auto& [id, l] : leases_) {
    if (l.revoked_at < 0 && l.ttl_ns > 0) {
      t = std::max(t, Deadline(id) + revoke_within_ns_);
    }
  }
  return t;
}

std::vector<int64_t> LeaseChecker::MustBeGone(int64_t now_ns) const {
  std::vector<int64_t> out;
  for (const auto& [id, l] : leases_) {
    if (l.ttl_ns > 0 && Deadline(id) + revoke_within_ns_ < now_ns) {
      out.push_back(id);
    }
  }
  return out;
}

}  // namespace detcd::harness
