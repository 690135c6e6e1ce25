// The lease checker. Lease clients report what they asked and what they
// were told; the cluster reports when members apply revokes, when a
// member's lessor becomes primary (promotion) and every clock jump. It
// checks leases in both directions, in true (simulated) time, within the
// clock bounds the scenario declares (harness::TimingModel):
//
//  - no lease dies early: a lease that no client revoked is not revoked,
//    refused as expired (keep-alive NotFound) or reported expired
//    (time-to-live -1) before
//        a + (ttl - J) / (1 + drift)
//    where a is the invoke time of its latest acknowledged grant or
//    keep-alive, drift the declared bound on clock rates and J the sum of
//    the forward clock jumps reported on any member after a;
//  - no lease lives too long: a keep-alive (or a time-to-live answer that
//    the lease is alive) invoked after the lease's deadline must fail:
//        max(r + ttl / (1 - drift), p + (ttl + extend) / (1 - drift))
//          + g * ttl / (1 - drift)
//    where r is the latest time a renew the client saw answered may have
//    happened (the answer's receipt; for a grant, the later of that and
//    the primary's apply of it), p the latest promotion of a primary
//    after the lease was granted, extend the new primary's extension (an
//    election timeout), and g the number of renews whose time the clients
//    cannot know (a keep-alive whose answer never came, or a forwarded one
//    the network delivered twice);
//  - no keep-alive revives a revoked lease: a keep-alive (or a time-to-live
//    answer "alive") invoked after any member applied the lease's revoke
//    must not succeed;
//  - no key outlives its lease (run.cc: EtcdStateMachine::CheckLeaseInvariant
//    on every member, and MustBeGone() at the end of the run).
//
// Why these bounds are exact (engine/lease/lessor.h has the lessor's side):
//
//  Only the primary (the leader's lessor) decides expiry, on its own clock,
//  and every expiry it holds was set by one of three events on that member:
//  a grant applied at t (expiry = its clock at t + ttl), a renew at t
//  (same), or its promotion at t (its clock + the checkpointed remaining
//  ttl or the ttl, + extend, an election timeout). Between members only
//  durations travel (checkpointed remaining ttls, rounded up to whole
//  seconds), so constant skew cancels out; a clock at rate 1 + d covers a
//  clock duration D in D / (1 + d) of true time, minus the size of any
//  forward jump it takes meanwhile.
//
//  Early: a renew that a client saw acknowledged happened after the client
//  invoked it. A promotion after it starts from a remaining ttl computed
//  after that renew (the server acknowledges a keep-alive only once a clear
//  of older checkpoints is applied) plus extend, so passing leadership on
//  never shortens what is left; each member's clock elapses at most
//  (t1 - t0)(1 + drift) + its jumps. Hence the revoke proposal, and so its
//  first apply, comes no earlier than a + (ttl - J) / (1 + drift). The
//  client's receive time is not a sound origin: the answer can be held
//  until the clear applies or relayed through a follower, so the renew may
//  precede the receipt by much more than the network's latency.
//
//  Late: a renew succeeds only while the renewing leader's clock is before
//  the expiry it holds, so it happens before (event + its duration) / (1 -
//  drift) in true time, for the last expiry-setting event on that member;
//  forward jumps only make clocks read later, so they never lengthen a
//  lease. An answered renew happened before its answer arrived. A grant
//  may apply on the leader after a follower answered the client (the
//  leader learns the commit first but its apply can lag, e.g. behind its
//  slow disk: 63 ms in seed 2440 of disk-faults), so the cluster reports a
//  primary's apply of a grant as it happens, as it does promotions (a
//  black-box run, chaos/, knows only the answer's receipt; its bound
//  assumes the leader applied the grant by then). A renew nobody saw
//  answered (the client gave up, or a copy of a forwarded request) may
//  happen at any time, however late the request reaches the leader
//  (messages held in clogged links, a paused member's socket buffers, a
//  stalled disk, slowed timers), but only while the lease is alive: at a
//  time before the deadline computed from everything else, so it moves the
//  deadline by one ttl at most. Bounding it by message delays instead
//  would hold only for the delays and pauses the checker was told about;
//  this bound holds for any, at the price of one ttl per unknown outcome.
//  A keep-alive that the leader itself received and answered after its
//  client gave up is settled by that answer (OnKeepAliveSettled).
#ifndef DETCD_HARNESS_LEASE_CHECKER_H_
#define DETCD_HARNESS_LEASE_CHECKER_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace detcd::harness {

class LeaseChecker {
 public:
  struct Bounds {
    // Every member's clock rate is within 1 +- max_drift_ppm / 1e6.
    int64_t max_drift_ppm = 0;
    // A new primary extends every lease by this much of its own clock
    // (EtcdServer: the election timeout).
    int64_t extend_ns = 0;
    // How long a leader may take to notice an expired lease and commit
    // its revoke (a liveness bound, used only at the end of the run).
    int64_t revoke_within_ns = 0;
    // Clock jumps beyond the drift bound were declared: the early-revoke
    // bound is lowered by the jumps reported (the wording says so).
    bool clock_jumps = false;
  };

  LeaseChecker() = default;
  explicit LeaseChecker(const Bounds& b) : bounds_(b) {}
  void set_bounds(const Bounds& b) { bounds_ = b; }
  const Bounds& bounds() const { return bounds_; }

  // An acknowledged grant (ttl_s: the granted TTL the answer carried).
  void OnGranted(int64_t id, int64_t ttl_s, int64_t invoke_ns,
                 int64_t return_ns);
  // A member whose lessor is primary applied the lease's grant (before or
  // after its client had the answer): its expiry runs from now_ns.
  void OnGrantApplied(int64_t id, int64_t now_ns);
  // outcome: ok / not found (the leader refused: unknown or expired) /
  // anything else (timed out, no leader, ...). may_renew_later: the
  // request, or a copy of it, may still renew the lease after return_ns
  // (its client gave up while the leader may still hold it, or the
  // network delivered the forwarded request twice).
  enum class KeepAlive { kOk, kNotFound, kFailed };
  void OnKeepAlive(int64_t id, int64_t invoke_ns, int64_t return_ns,
                   KeepAlive outcome, bool may_renew_later = false);
  // A keep-alive reported with may_renew_later has been answered by the
  // leader it was sent to (which received no copy): any renew it caused
  // happened by now_ns.
  void OnKeepAliveSettled(int64_t id, int64_t now_ns);
  // A time-to-live answer (served by the leader): ttl_s -1 means "expired
  // or unknown", >= 0 that the lease is alive.
  void OnTimeToLive(int64_t id, int64_t invoke_ns, int64_t return_ns,
                    int64_t ttl_s);
  // A client asked to revoke the lease (any revoke applied after this is
  // not early).
  void OnRevokeRequested(int64_t id, int64_t invoke_ns);
  // The first member to apply the lease's revoke (later ones are ignored).
  void OnRevokeApplied(int64_t id, int64_t now_ns);
  // A member's lessor became primary: every lease's expiry restarts.
  void OnPrimary(int64_t now_ns);
  // A member's clock jumped forward.
  void OnClockJump(uint64_t node, int64_t now_ns, int64_t forward_ns);

  // The true time after which the lease must be dead, given what is known
  // (0 for an unknown lease).
  int64_t Deadline(int64_t id) const;
  // The earliest true time the lease may die if no client revokes it,
  // counting the clock jumps reported up to now_ns (-1: no lower bound).
  int64_t EarliestDeath(int64_t id, int64_t now_ns) const;
  // The latest deadline (plus revoke time) among live leases: the run
  // waits for it before the final check.
  int64_t SettleTime() const;
  // Leases that must be gone by now_ns.
  std::vector<int64_t> MustBeGone(int64_t now_ns) const;

  // Clock jumps reported so far (count, total size).
  int64_t jumps() const { return static_cast<int64_t>(jumps_.size()); }
  int64_t jumped_ns() const { return jumps_.empty() ? 0 : jumps_.back().sum; }
  // The guarantees this run checks only in part ("" if none), e.g. the
  // early-revoke bound lowered by reported clock jumps.
  std::string Waivers() const;

  const std::vector<std::string>& violations() const { return violations_; }
  void Violation(std::string v) {
    if (violations_.size() < 10) violations_.push_back(std::move(v));
  }

 private:
  struct Lease {
    int64_t ttl_ns = 0;  // 0: never acknowledged (no bounds)
    int64_t granted_invoke = -1;
    // Early: the latest invoke of an acknowledged grant or keep-alive.
    int64_t alive_lb = -1;
    // Late: the latest true time an answered renew may have happened, and
    // the renews whose time is unknown.
    int64_t renew_ub = -1;
    int64_t unknown_renews = 0;
    int64_t revoked_at = -1;        // first apply of its revoke
    int64_t revoke_requested = -1;  // first client revoke, invoke time
    bool early_reported = false;
  };
  // Clock durations to true time under the drift bound.
  int64_t FastTrue(int64_t clock_ns) const;  // shortest true time
  int64_t SlowTrue(int64_t clock_ns) const;  // longest true time
  int64_t JumpsBetween(int64_t from_ns, int64_t to_ns) const;
  int64_t DeadlineOf(const Lease& l) const;
  // The lease was seen dead at dead_ns (how: revoke applied, ...).
  void CheckNotEarly(int64_t id, Lease& l, int64_t dead_ns,
                     const char* how);

  Bounds bounds_;
  std::map<int64_t, Lease> leases_;
  int64_t last_primary_ = -1;  // latest promotion
  struct Jump {
    int64_t at_ns;
    int64_t sum;  // running total, this jump included
  };
  std::vector<Jump> jumps_;  // ascending time
  std::vector<std::string> violations_;
};

}  // namespace detcd::harness

#endif  // DETCD_HARNESS_LEASE_CHECKER_H_
