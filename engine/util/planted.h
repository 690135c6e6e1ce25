// Planted bugs: named switches that make the engine (or the simulator) wrong
// on purpose, so that a test can prove a checker catches that kind of wrong.
// Like FoundationDB's BUGGIFY sites, every site is a line of production code
// guarded by `bugs.on(Bug::kX)`; unlike BUGGIFY they are off unless a run
// names one (`detcd-sim --bug NAME`), and the real server never plants any.
//
// The one list below names each bug, what it breaks and which checker must
// catch it (a safety bug caught only by a liveness timeout does not count).
// A Bugs value is copied into every options struct that has a site (raft,
// node, server, lessor, watch hub, simulator); all copies hold the same set.
#ifndef DETCD_UTIL_PLANTED_H_
#define DETCD_UTIL_PLANTED_H_

#include <array>
#include <cstdint>
#include <optional>
#include <string_view>

namespace detcd::planted {

// The checker that must report a run with this bug planted.
enum class Catcher : uint8_t {
  kSafety,           // SafetyChecker: raft safety, Ready ordering, durability
  kLinearizability,  // the KV history checker
  kWatch,            // the watch checker
  kLease,            // the lease checker
  kDeterminism,      // the same seed giving two different trace hashes
  kRecipe,           // the recipe checkers (harness/recipe_checker.h)
  kAuth,             // the auth checker (harness/auth_checker.h)
};

inline constexpr std::string_view CatcherName(Catcher c) {
  switch (c) {
    case Catcher::kSafety: return "safety";
    case Catcher::kLinearizability: return "linearizability";
    case Catcher::kWatch: return "watch";
    case Catcher::kLease: return "lease";
    case Catcher::kDeterminism: return "determinism";
    case Catcher::kAuth: return "auth";
    case Catcher::kRecipe: return "recipe";
  }
  return "?";
}

// X(enumerator, name, catcher, what it breaks)
#define DETCD_PLANTED_BUGS(X)                                                 \
  X(kAckBeforeSync, "ack-before-sync", kSafety,                               \
    "a node sends its messages (append acks, votes) before the WAL fsync")    \
  X(kForgetVote, "forget-vote", kSafety,                                      \
    "a node forgets its vote when it restarts")                               \
  X(kCommitOldTerm, "commit-old-term", kSafety,                               \
    "a leader commits an old-term entry by counting replicas (Raft 5.4.2)")   \
  X(kFollowerLocalRead, "follower-local-read", kLinearizability,              \
    "a follower serves a linearizable read from its local state")             \
  X(kDuplicateApply, "duplicate-apply", kLinearizability,                     \
    "a member re-proposes its in-flight writes when the leader changes, so "  \
    "a write can be applied twice")                                           \
  X(kWatchSkipAfterRestart, "watch-skip-after-restart", kWatch,               \
    "a restarted member starts historical watches one revision late")         \
  X(kEarlyLeaseRevoke, "early-lease-revoke", kLease,                          \
    "the leader revokes a lease at half its TTL")                             \
  X(kLateRenew, "late-renew", kLease,                                         \
    "the leader renews a lease whose TTL has already run out")                \
  X(kWrongWatchEvent, "wrong-watch-event", kWatch,                            \
    "every member's watch hub reports a wrong value for some events")         \
  X(kSplitRevision, "split-revision", kWatch,                                 \
    "a watch response splits the events of one revision")                     \
  X(kNondeterministicIteration, "nondeterministic-iteration", kDeterminism,   \
    "a node sends a Ready's messages in the order of a pointer hash set")     \
  X(kWalTrustAfterTorn, "wal-trust-after-torn", kSafety,                      \
    "WAL recovery skips a torn or lost record and keeps the ones after it")   \
  X(kIgnoreFsyncError, "ignore-fsync-error", kSafety,                         \
    "a node treats a failed fsync as done and goes on")                       \
  X(kStaleMembershipSnapshot, "stale-membership-snapshot", kSafety,           \
    "a snapshot taken while a conf change applies carries the old members")   \
  X(kReadIndexWithoutQuorum, "readindex-without-quorum", kLinearizability,    \
    "a leader answers ReadIndex without a heartbeat quorum")                  \
  X(kUnfencedLock, "unfenced-lock", kRecipe,                                  \
    "a simulated lock holder writes the protected key without the fence")    \
  X(kAuthSkipOldRevision, "auth-skip-old-revision", kAuth,                    \
    "the apply-time permission check ignores the auth revision a request "    \
    "was stamped with: one authorized before an auth change is judged by "    \
    "the changed store instead of being refused as stale")                   \
  X(kLeaderCountsUnpersisted, "leader-counts-unpersisted", kSafety,          \
    "a leader counts its own entries toward a quorum before its fsync, "      \
    "while its appends leave before that fsync")

enum class Bug : uint8_t {
#define DETCD_PLANTED_ENUM(e, name, catcher, what) e,
  DETCD_PLANTED_BUGS(DETCD_PLANTED_ENUM)
#undef DETCD_PLANTED_ENUM
      kCount
};

struct BugInfo {
  Bug bug;
  std::string_view name;
  Catcher catcher;
  std::string_view what;
};

inline constexpr std::array<BugInfo, static_cast<size_t>(Bug::kCount)> kBugs{{
#define DETCD_PLANTED_INFO(e, name, catcher, what) \
  {Bug::e, name, Catcher::catcher, what},
    DETCD_PLANTED_BUGS(DETCD_PLANTED_INFO)
#undef DETCD_PLANTED_INFO
}};

inline constexpr const BugInfo& Info(Bug b) {
  return kBugs[static_cast<size_t>(b)];
}

inline std::optional<Bug> Find(std::string_view name) {
  for (const BugInfo& b : kBugs) {
    if (b.name == name) return b.bug;
  }
  return std::nullopt;
}

// The set of bugs planted in a run (empty in production).
class Bugs {
 public:
  constexpr Bugs() = default;
  static Bugs Of(Bug b) {
    Bugs s;
    s.Plant(b);
    return s;
  }
  void Plant(Bug b) { bits_ |= Bit(b); }
  bool on(Bug b) const { return (bits_ & Bit(b)) != 0; }
  bool any() const { return bits_ != 0; }
  bool operator==(const Bugs&) const = default;

 private:
  static constexpr uint32_t Bit(Bug b) {
    return uint32_t{1} << static_cast<uint32_t>(b);
  }
  static_assert(static_cast<size_t>(Bug::kCount) <= 32);
  uint32_t bits_ = 0;
};

}  // namespace detcd::planted

#endif  // DETCD_UTIL_PLANTED_H_
