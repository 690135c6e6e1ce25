// Coverage probes: named rare branches of the engine, counted when taken, so
// a simulation sweep can say which rare paths it reached (FoundationDB's
// CODE_PROBE). A fault model that silently stops reaching a path (a
// scenario change that no longer lets a snapshot transfer fail, say) shows
// up as a probe at zero, and the ctest sweep that requires every probe
// fails.
//
// A site is one line, `DETCD_PROBE(kName);`, on the branch it names. The
// one list below names each probe and says what reaching it means.
//
// The counters are the engine's one piece of global state, on purpose: a
// probe site needs no plumbing through options structs, and nothing in the
// engine ever reads a counter, so they cannot change what the engine does
// (the determinism hash does not see them). The simulator resets them
// before a run and reads them after it (one run at a time per process);
// the real server counts too and ignores them. Relaxed atomics: free of
// data races if several engines share a process on different threads, and
// as cheap as a plain increment on the rare paths they sit on.
#ifndef DETCD_UTIL_PROBES_H_
#define DETCD_UTIL_PROBES_H_

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace detcd::probes {

// X(enumerator, name, what reaching it means)
#define DETCD_PROBES(X)                                                    \
  X(kRaftSnapshotSent, "raft.snapshot-sent",                               \
    "a leader sent a snapshot: the follower was behind its log's start")   \
  X(kRaftSnapshotIgnored, "raft.snapshot-ignored",                         \
    "a follower ignored a snapshot it already had or that was stale")      \
  X(kRaftReadIndexHeld, "raft.readindex-held",                             \
    "a new leader held a ReadIndex until it committed an own-term entry")  \
  X(kRaftReadIndexRefused, "raft.readindex-refused",                       \
    "a ReadIndex was refused: no leader known")                            \
  X(kRaftVoteRejectedLog, "raft.vote-rejected-log",                        \
    "a (pre-)vote was refused because the candidate's log was behind")     \
  X(kRaftVoteIgnoredInLease, "raft.vote-ignored-in-lease",                 \
    "a higher-term campaign was ignored while a leader was alive")         \
  X(kRaftCheckQuorumStepDown, "raft.check-quorum-step-down",               \
    "a leader stepped down: no quorum heard within an election timeout")   \
  X(kRaftAppendRejected, "raft.append-rejected",                           \
    "a follower refused an append (logs differ) and the leader backed up") \
  X(kRaftStaleTermAnswered, "raft.stale-term-answered",                    \
    "a message from a stale leader was answered with the newer term")      \
  X(kRaftTransferAborted, "raft.transfer-aborted",                         \
    "a leadership transfer did not finish within an election timeout")     \
  X(kWalTornTailRepaired, "wal.torn-tail-repaired",                        \
    "WAL recovery cut a torn or lost write off the unsynced tail")         \
  X(kNodeAwaitingLeader, "node.proposal-awaiting-leader",                  \
    "a proposal waited for a leader instead of failing at once")           \
  X(kNodeRequestTimeout, "node.request-timeout",                           \
    "a request timed out inside the node (its outcome is unknown)")        \
  X(kNodeImageInSteps, "node.follower-image-in-steps",                     \
    "a follower's snapshot image was built in steps, work between them")   \
  X(kNodeImageDropped, "node.follower-image-dropped",                      \
    "a follower's image was dropped unsent (compaction, conf change...)")  \
  X(kNodeInstallUnderInput, "node.snapshot-install-under-input",           \
    "a message arrived while the worker installed a received snapshot")    \
  X(kNodeRequestedSnapshotRestarted, "node.requested-snapshot-restarted",  \
    "a requested (defragment) snapshot was dropped and begun again")       \
  X(kNodeCommittingSnapshotDropped, "node.committing-snapshot-dropped",    \
    "a snapshot was dropped while the file worker synced its file")        \
  X(kNodeDeltaSnapshot, "node.delta-snapshot",                             \
    "an automatic snapshot was a delta on the newest snapshot file")       \
  X(kNodeRestartThroughDeltas, "node.restart-through-deltas",              \
    "a restart restored a whole image, then applied delta snapshots")      \
  X(kLeasePromoteExtended, "lease.promote-extended",                       \
    "a new leader promoted its lessor with leases, extending their TTLs")  \
  X(kLeaseCheckpointApplied, "lease.checkpoint-applied",                   \
    "a lease's remaining TTL checkpoint was applied")                      \
  X(kLeaseExpired, "lease.expired",                                        \
    "the leader found a lease expired and proposes its revoke")            \
  X(kMvccWriteDuringCompaction, "mvcc.write-during-compaction",            \
    "a write committed while a compaction's revisions were being removed") \
  X(kMvccCompactionTakenOver, "mvcc.compaction-taken-over",                \
    "a compaction was applied while the previous one was being removed")   \
  X(kServerRangeInPieces, "server.range-in-pieces",                        \
    "a range was read in pieces, with other work between them")            \
  X(kWatchMovedToUnsynced, "watch.moved-to-unsynced",                      \
    "a synced watcher fell behind (slow stream or restore) to unsynced")   \
  X(kWatchCompactedCancel, "watch.compacted-cancel",                       \
    "a compaction cancelled a watcher whose next revision was compacted")  \
  X(kWatchFragmentSent, "watch.fragment-sent",                             \
    "one revision's events went out in fragments")                         \
  X(kWatchCatchUpLimited, "watch.catch-up-limited",                        \
    "a catch-up read stopped at its event limit, before the current rev")

enum class Probe : uint8_t {
#define DETCD_PROBE_ENUM(e, name, what) e,
  DETCD_PROBES(DETCD_PROBE_ENUM)
#undef DETCD_PROBE_ENUM
      kCount
};

struct ProbeInfo {
  Probe probe;
  std::string_view name;
  std::string_view what;
};

inline constexpr std::array<ProbeInfo, static_cast<size_t>(Probe::kCount)>
    kProbes{{
#define DETCD_PROBE_INFO(e, name, what) {Probe::e, name, what},
        DETCD_PROBES(DETCD_PROBE_INFO)
#undef DETCD_PROBE_INFO
    }};

// The counters (see the file comment for why global).
inline std::array<std::atomic<uint64_t>, static_cast<size_t>(Probe::kCount)>
    g_counts{};

inline void Hit(Probe p) {
  g_counts[static_cast<size_t>(p)].fetch_add(1, std::memory_order_relaxed);
}
inline uint64_t Count(Probe p) {
  return g_counts[static_cast<size_t>(p)].load(std::memory_order_relaxed);
}
// The simulator, before each run.
inline void ResetAll() {
  for (auto& c : g_counts) c.store(0, std::memory_order_relaxed);
}

}  // namespace detcd::probes

// One rare branch taken: DETCD_PROBE(kRaftSnapshotSent);
#define DETCD_PROBE(p) ::detcd::probes::Hit(::detcd::probes::Probe::p)

#endif  // DETCD_UTIL_PROBES_H_
