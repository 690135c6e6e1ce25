// The lease checker. Lease clients report what they asked and what they
// were told; the cluster reports when members apply revokes and when
// members become leader. Checked:
//
//  - no keep-alive revives a revoked lease: a keep-alive invoked after any
//    member applied the lease's revoke must not succeed (keep-alives are
//    answered by the leader after a ReadIndex, so the revoke is applied
//    there first);
//  - no keep-alive revives an expired lease: a lease lives at most ttl
//    (plus the new leader's extension and clock drift) past the latest of
//    its grant, its last successful keep-alive and the last election; a
//    keep-alive invoked after that must fail;
//  - no key outlives its lease: in every member's applied state, keys with
//    a lease belong to a live lease (EtcdStateMachine::CheckLeaseInvariant),
//    and at the end every lease past its deadline (plus time to notice and
//    commit the revoke) is gone from every member.
#ifndef DETCD_HARNESS_LEASE_CHECKER_H_
#define DETCD_HARNESS_LEASE_CHECKER_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace detcd::harness {

class LeaseChecker {
 public:
  // Slack on top of ttl: the new leader's extension (an election timeout)
  // and clock drift; and the time a leader needs to notice an expired lease
  // and commit its revoke.
  LeaseChecker(int64_t extend_ns = 0, int64_t revoke_within_ns = 0)
      : extend_ns_(extend_ns), revoke_within_ns_(revoke_within_ns) {}
  // unknown_slack_ns: how long after a client gave up on a keep-alive the
  // leader may still renew (its own request timeout).
  void set_slack(int64_t extend_ns, int64_t revoke_within_ns,
                 int64_t unknown_slack_ns) {
    extend_ns_ = extend_ns;
    revoke_within_ns_ = revoke_within_ns;
    unknown_slack_ns_ = unknown_slack_ns;
  }

  void OnGranted(int64_t id, int64_t ttl_s, int64_t invoke_ns,
                 int64_t return_ns);
  // outcome: ok / not found / other failure (unknown or refused).
  enum class KeepAlive { kOk, kNotFound, kFailed };
  void OnKeepAlive(int64_t id, int64_t invoke_ns, int64_t return_ns,
                   KeepAlive outcome, int64_t ttl_s);
  // A time-to-live answer: ttl_s -1 means "expired or unknown".
  void OnTimeToLive(int64_t id, int64_t invoke_ns, int64_t ttl_s);
  void OnRevokeApplied(int64_t id, int64_t now_ns);
  void OnElected(int64_t now_ns) { elections_.push_back(now_ns); }

  // The time after which the lease must be dead, given what is known.
  int64_t Deadline(int64_t id) const;
  // The latest deadline (plus revoke time) among live leases: the run
  // waits for it before the final check.
  int64_t SettleTime() const;
  // Leases that must be gone by now_ns.
  std::vector<int64_t> MustBeGone(int64_t now_ns) const;

  const std::vector<std::string>& violations() const { return violations_; }
  void Violation(std::string v) {
    if (violations_.size() < 10) violations_.push_back(std::move(v));
  }

 private:
  struct Lease {
    int64_t ttl_ns = 0;
    int64_t alive_since = 0;  // latest grant / ok keep-alive return
    int64_t revoked_at = -1;  // first apply of its revoke
  };
  int64_t LastElectionBefore(int64_t t) const;

  int64_t extend_ns_;
  int64_t revoke_within_ns_;
  int64_t unknown_slack_ns_ = 0;
  std::map<int64_t, Lease> leases_;
  std::vector<int64_t> elections_;  // times, ascending
  std::vector<std::string> violations_;
};

}  // namespace detcd::harness

#endif  // DETCD_HARNESS_LEASE_CHECKER_H_
