// The lessor: etcd's lease.Lessor as a deterministic value type.
//
// A lease has an id, a granted TTL (seconds), a checkpointed remaining TTL
// (seconds; 0 = unset, use the TTL) and the keys attached to it. Those four
// are the *replicated* state: every member changes them only by applying
// committed raft entries (Grant, Revoke, Attach, Detach, Checkpoint), in log
// order, so they are identical everywhere and are what Snapshot() holds.
//
// Expiry is *primary-only* state. The raft leader is the primary: Promote()
// gives every lease an expiry on the leader's clock, Renew() (keep-alive,
// never replicated) pushes it out, Expired() names the leases the leader
// should propose to revoke and DueCheckpoints() names the remaining TTLs it
// should propose as checkpoints. Members that are not primary hold every
// lease "forever" (they never expire anything). Time is always passed in
// as `now_ns` (the member's injected clock); the lessor never reads a clock.
//
// Safety reasoning (the harness's lease checker relies on these):
//
//  1. Only the primary decides expiry, from its own clock, and a revoke is a
//     raft entry like any other. Because only durations are ever carried from
//     one leader to the next (checkpointed remaining TTLs, extend_ns), a
//     constant offset between members' clocks cancels out; extend_ns absorbs
//     drift and the window in which a deposed leader still acknowledges
//     keep-alives (it steps down within an election timeout).
//  2. A new primary extends every lease by extend_ns (the server passes the
//     election timeout): expiry = promote time + (remaining or TTL) + extend.
//     A checkpoint computed at time c from expiry D records ceil(D - c) >= D
//     - c, and D >= last acknowledged renew + TTL, so the new expiry is never
//     earlier than what any earlier primary promised.
//  3. Checkpoints go through raft so that remaining TTLs survive leader
//     changes: without them every new leader would restart each lease at
//     its full TTL, and leader changes more frequent than the TTL would keep
//     an abandoned lease alive forever. With them, for a lease that is not
//     renewed, the time spent under some primary before it is reported
//     expired is below TTL + reigns * (extend + checkpoint interval +
//     1 s rounding + the caller's polling delay) - see the property test.
//  4. A renew of an expired lease (now >= expiry) fails with NotFound, so
//     a keep-alive never revives a lease the primary has (or is about to
//     have) proposed to revoke.
//  5. A renew makes any earlier remaining TTL stale (it is lower than the
//     renewed lease deserves). If this primary's applied remaining TTL is
//     set, or it has handed out a non-zero checkpoint that may still be
//     applied, Renew() queues a "clear" checkpoint (id, 0) and
//     AwaitingClear(id) stays true until a clear handed out *after* the
//     renew has been applied. The server must acknowledge the keep-alive
//     only once AwaitingClear(id) is false (etcd proposes the clear
//     synchronously inside Renew for the same reason); a proposal is in the
//     log after every proposal handed out before it, so once it is applied no
//     stale value can follow it. If leadership is lost while waiting, the
//     server fails the keep-alive (the client retries at the new leader).
//
// Contract with the server (Node):
//  - Call Promote() only after this member, as leader, has applied an entry
//    of its own term (the empty entry raft appends on election): then every
//    entry proposed by an earlier leader that will ever be applied already
//    has been, and each checkpoint applied while primary is one this
//    primary handed out, in the order it handed them out (rule 5 depends on
//    it). Call Demote() as soon as leadership is lost.
//  - Propose the items of DueCheckpoints() in the order returned, and the ids
//    of Expired() as revokes.
//  - Grant ids are chosen by the server before proposing (never 0).
//
// Snapshot image (all integers are unsigned LEB128 varints unless noted;
// int64 values are stored as their two's-complement uint64):
//   fixed32 magic 0x3153454C ("LES1" read as bytes)
//   varint  format version (1)
//   varint  lease count N
//   N times, ids strictly increasing as signed int64, never 0:
//     varint id
//     varint ttl_s            1 .. kMaxLeaseTtlS
//     varint remaining_ttl_s  0 .. kMaxLeaseTtlS (0: unset)
//     varint key count K
//     K times, in strictly increasing bytewise order: length-prefixed key
//   fixed32 low 32 bits, fixed32 high 32 bits of Fnv1a-64 over every byte
//           above (magic included)
// Keys are included so a restored member needs nothing from the KV store.
// Expiries are not included: after Restore() the lessor is not primary.
#ifndef DETCD_ENGINE_LEASE_LESSOR_H_
#define DETCD_ENGINE_LEASE_LESSOR_H_

#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/container/btree_map.h"
#include "absl/container/btree_set.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/util/planted.h"

namespace detcd::lease {

// etcd's lease.MaxLeaseTTL (seconds). Also keeps ttl * 1e9 within int64.
inline constexpr int64_t kMaxLeaseTtlS = 9'000'000'000;
inline constexpr int64_t kNanosPerSecond = 1'000'000'000;
// Expiry of a lease that a non-primary member holds: it never expires.
inline constexpr int64_t kNever = std::numeric_limits<int64_t>::max();
// Checkpoints of one lease a primary remembers as "handed out, maybe not
// applied yet". Past this the oldest is forgotten, and the lease counts as
// stale until something handed out after it is applied.
inline constexpr size_t kMaxInflightCheckpointsPerLease = 64;

// etcd's texts and gRPC codes (api/v3rpc/rpctypes/error.go):
// NotFound "etcdserver: requested lease not found",
// FailedPrecondition "etcdserver: lease already exists",
// OutOfRange "etcdserver: too large lease TTL".
absl::Status ErrLeaseNotFound();
absl::Status ErrLeaseExists();
absl::Status ErrLeaseTTLTooLarge();
// etcd's lessor says "not a primary lessor" and the server forwards the
// keep-alive to the leader; if it reaches a client it is etcd's
// ErrGRPCNotLeader: FailedPrecondition "etcdserver: not leader".
absl::Status ErrNotPrimary();
bool IsErrLeaseNotFound(const absl::Status& s);
bool IsErrNotPrimary(const absl::Status& s);

// etcd's leaseRevokeRate: expired leases revoked per second at most
// (max_expired_per_call's default is half of it per 500 ms poll) and the
// lease count from which Promote spreads piled-up expiries.
inline constexpr size_t kLeaseRevokeRate = 1000;

struct LessorOptions {
  // Shorter requested TTLs are raised to this (etcd derives it from the
  // election timeout: 3/2 election ticks * heartbeat, rounded up to 2 s by
  // default).
  int64_t min_ttl_s = 2;
  int64_t max_ttl_s = kMaxLeaseTtlS;
  int64_t checkpoint_interval_ns = int64_t{300} * kNanosPerSecond;  // 5 min
  size_t max_checkpoints_per_call = 1000;  // etcd's batch size
  // etcd revokes at most leaseRevokeRate/2 = 500 per 500 ms loop (1000 a
  // second); the server polls Expired() as often (lease_check_ticks), so
  // this is the same bound on revoke proposals per poll. (It was 16 until
  // 2026-12: 32 revokes a second, so 3000 leases expiring together took
  // a minute and a half to go where etcd takes three seconds.)
  size_t max_expired_per_call = kLeaseRevokeRate / 2;
  // A lease returned by Expired() is returned again after this long if it
  // is still there (its revoke proposal was lost).
  int64_t expired_retry_ns = int64_t{3} * kNanosPerSecond;
  // Planted bugs for the simulator's checker tests; all off in production.
  // Sites: early-lease-revoke (Expired() names a lease half its TTL before
  // its expiry), late-renew (Renew() accepts an expired lease).
  planted::Bugs bugs;  // engine/util/planted.h

  // 1 <= min_ttl_s <= max_ttl_s <= kMaxLeaseTtlS, positive interval/retry,
  // non-zero limits.
  absl::Status Validate() const;
};

class Lessor {
 public:
  struct CheckpointItem {
    int64_t id = 0;
    int64_t remaining_ttl_s = 0;  // 0 clears the checkpointed remaining TTL
    friend bool operator==(const CheckpointItem&,
                           const CheckpointItem&) = default;
  };
  struct LeaseInfo {
    int64_t id = 0;
    int64_t ttl_s = 0;
    int64_t remaining_ttl_s = 0;    // checkpointed; 0 = unset
    std::vector<std::string> keys;  // bytewise order
  };

  // CHECK-fails on invalid options: validate them at start-up.
  explicit Lessor(LessorOptions options);
  Lessor(const Lessor&) = delete;
  Lessor& operator=(const Lessor&) = delete;
  Lessor(Lessor&&) = default;
  Lessor& operator=(Lessor&&) = default;

  const LessorOptions& options() const { return options_; }

  // ---- Applied: every member, in log order. Deterministic; now_ns matters
  // only on the primary (it is the primary's own clock). ----

  // Creates lease `id` (0 is NotFound, as in etcd). A TTL below min_ttl_s is
  // raised to it; above max_ttl_s is ErrLeaseTTLTooLarge; an existing id is
  // ErrLeaseExists. Returns the granted TTL. On the primary the lease
  // expires at now + ttl; elsewhere never.
  absl::StatusOr<int64_t> Grant(int64_t id, int64_t ttl_s, int64_t now_ns);
  // Removes the lease and returns its keys in bytewise order (the caller
  // deletes them in the same revision, in that order).
  absl::StatusOr<std::vector<std::string>> Revoke(int64_t id);
  // Idempotent. ErrLeaseNotFound if there is no such lease.
  absl::Status Attach(int64_t id, std::string_view key);
  // No-op for an unknown lease or key.
  void Detach(int64_t id, std::string_view key);
  // Records the lease's remaining TTL (0 clears it); unknown ids are
  // ignored. As in etcd this does not move the primary's expiry: the
  // primary's own expiry is exact, and a value computed before a later
  // renew would shorten the renewed lease. now_ns is unused; it is taken so
  // that every applied call has the same shape.
  void Checkpoint(int64_t id, int64_t remaining_ttl_s, int64_t now_ns);

  // ---- Leader only. ----

  // Becomes primary (see the contract above). Every lease expires at
  // now + (remaining_ttl if set, else ttl) + extend_ns; checkpoint
  // schedules restart at now + interval. extend_ns >= 0. With at least
  // kLeaseRevokeRate leases, expiries that pile up are then spread as
  // etcd's Promote spreads them: in expiry order, past 3/4 of
  // kLeaseRevokeRate within a second of a window's first expiry, a lease
  // is pushed later, so that at most that many expire per second (a new
  // leader that extended every lease by the same amount would otherwise
  // meet them all at once). Leases are only ever extended.
  void Promote(int64_t now_ns, int64_t extend_ns);
  // Not primary any more: every expiry becomes never; checkpoint schedules,
  // queued clears and expiry retries are dropped.
  void Demote();
  bool is_primary() const { return primary_; }

  // Keep-alive. ErrNotPrimary if not primary; ErrLeaseNotFound if unknown,
  // already expired (now >= expiry) or already named by Expired() in this
  // reign (even if the clock stepped back since). Otherwise expiry =
  // now + ttl and returns ttl. May queue a clear checkpoint; see
  // AwaitingClear().
  absl::StatusOr<int64_t> Renew(int64_t id, int64_t now_ns);
  // True while a keep-alive of `id` renewed on this primary must not be
  // acknowledged yet: the clear checkpoint queued by Renew() has not been
  // applied. False for unknown leases and when not primary (after Demote()
  // the server fails the keep-alives that were still waiting).
  bool AwaitingClear(int64_t id) const;

  // Leases whose expiry <= now, earliest first (ties by id), at most
  // max_expired_per_call. A lease returned is not returned again until
  // expired_retry_ns later. Empty if not primary.
  std::vector<int64_t> Expired(int64_t now_ns);

  // Checkpoints to propose now (empty if not primary), at most
  // max_checkpoints_per_call: first the clears queued by Renew() (by id;
  // a clear handed out expired_retry_ns ago and still not applied is handed
  // out again), then leases whose checkpoint is due (by due time, then id):
  // a checkpoint is due checkpoint_interval_ns after promote, grant or the
  // lease's previous one; it carries ceil((expiry - now) / 1 s) and is
  // skipped (rescheduled) if that is not below the TTL, as in etcd. Expired
  // leases get no checkpoint.
  std::vector<CheckpointItem> DueCheckpoints(int64_t now_ns);

  // ---- Queries. ----

  absl::StatusOr<LeaseInfo> Get(int64_t id) const;
  // etcd's TimeToLive TTL field. Primary: whole seconds left until expiry,
  // truncated as etcd does, -1 once expired (or named by Expired()). Not
  // primary: the checkpointed remaining TTL if set, else the TTL.
  absl::StatusOr<int64_t> RemainingTtlSeconds(int64_t id, int64_t now_ns) const;
  // The primary's expiry of the lease (kNever when not primary).
  absl::StatusOr<int64_t> ExpiryNs(int64_t id) const;
  std::vector<int64_t> Ids() const;  // ascending
  size_t size() const { return leases_.size(); }

  // What this lessor did since it was made (not replicated, not in
  // snapshots; Restore keeps them): the real server's etcd_debugging_lease_*
  // and etcd_debugging_server_lease_expired_total, counted where etcd's
  // lessor and server count them.
  struct Counters {
    uint64_t granted = 0;  // Grant applied
    uint64_t revoked = 0;  // Revoke applied, expiries included
    uint64_t renewed = 0;  // Renew succeeded (primary only)
    // Revoke applied on the primary of a lease that Expired() named in
    // this reign: etcd's leader counts a successful revoke of an expired
    // lease.
    uint64_t expired = 0;
  };
  const Counters& counters() const { return counters_; }

  // ---- Snapshot (replicated state only; format above). ----

  std::string Snapshot() const;
  // Replaces all state with the image's; the lessor is not primary
  // afterwards. A TTL below min_ttl_s is raised to it (etcd does the same
  // on recovery). A corrupt image is DataLossError and leaves the lessor
  // unchanged.
  absl::Status Restore(std::string_view image);
  // Restore in two parts, for a caller that decodes the image elsewhere
  // (EtcdStateMachine::PrepareRestore, on the disk worker): Decode reads
  // only the image and the options (its errors are Restore's); Install
  // puts the leases in place and leaves the replaced ones in *d, for the
  // caller to free where it likes.
  class Decoded;
  absl::StatusOr<Decoded> Decode(std::string_view image) const;
  void Install(Decoded* d);

 private:
  struct Issued {
    uint64_t seq = 0;  // hand-out order (issue_seq_ never goes back)
    int64_t remaining_ttl_s = 0;
  };
  struct Lease {
    int64_t ttl_s = 0;
    int64_t remaining_ttl_s = 0;
    absl::btree_set<std::string> keys;
    // Primary-only state below; reset by Promote()/Demote().
    int64_t expiry_ns = kNever;
    // When Expired() may report the lease: expiry, or a retry time.
    int64_t notify_ns = kNever;
    bool reported_expired = false;       // Expired() named it in this reign
    int64_t checkpoint_due_ns = kNever;  // kNever: not scheduled
    // Checkpoints handed out and not yet known to be applied or lost, at
    // most kMaxInflightCheckpointsPerLease. A vector: empty, it holds no
    // heap block (libstdc++'s empty deque holds 576 bytes, which made a
    // held lease cost ~800 bytes).
    std::vector<Issued> inflight;
    // Highest seq of a non-zero checkpoint dropped from `inflight` while it
    // might still be applied; 0: none.
    uint64_t forgotten_seq = 0;
    // A clear handed out with seq > clear_after_seq must be applied before
    // a keep-alive may be acknowledged; -1: nothing to wait for.
    int64_t clear_after_seq = -1;
    int64_t clear_retry_ns = kNever;  // when to hand out the clear again
  };

 public:
  class Decoded {
   private:
    friend class Lessor;
    absl::btree_map<int64_t, Lease> leases;
  };

 private:
  static bool Stale(const Lease& l);
  void ResetPrimaryState(Lease& l);
  void ClearPrimaryIndexes();
  void SetExpiry(int64_t id, Lease& l, int64_t expiry_ns);
  // When Expired() may first name a lease expiring at expiry_ns.
  int64_t NotifyAt(const Lease& l, int64_t expiry_ns) const;
  void SetNotify(int64_t id, Lease& l, int64_t notify_ns);
  void SetCheckpointDue(int64_t id, Lease& l, int64_t due_ns);
  void SetClearRetry(int64_t id, Lease& l, int64_t retry_ns);
  void EraseIndexes(int64_t id, const Lease& l);
  struct Expiry {  // Promote's work list
    int64_t ns;
    int64_t id;
    Lease* lease;
    bool operator<(const Expiry& o) const {
      return ns != o.ns ? ns < o.ns : id < o.id;
    }
  };
  void SpreadPiledUpExpiries(int64_t now_ns, std::vector<Expiry>& sorted);
  void StopAwaiting(int64_t id, Lease& l);
  void NoteApplied(int64_t id, Lease& l, int64_t remaining_ttl_s);
  CheckpointItem HandOut(Lease& l, int64_t id, int64_t remaining_ttl_s);

  LessorOptions options_;
  Counters counters_;
  absl::btree_map<int64_t, Lease> leases_;
  bool primary_ = false;
  uint64_t issue_seq_ = 0;
  // Primary-only indexes, all ordered so that every output is deterministic.
  absl::btree_set<std::pair<int64_t, int64_t>> notify_index_;  // (ns, id)
  absl::btree_set<std::pair<int64_t, int64_t>> checkpoint_index_;
  absl::btree_set<int64_t> clear_queue_;  // clears to hand out, by id
  absl::btree_set<std::pair<int64_t, int64_t>> clear_retry_index_;
};

}  // namespace detcd::lease

#endif  // DETCD_ENGINE_LEASE_LESSOR_H_
