// How detcd-chaos checks a real cluster with the simulator's checkers.
//
// The simulator's checkers read three things: a History (harness/history.h)
// for the linearizability checker, the watchers' responses and a KvModel of
// the committed log (the watch checker's oracle), and lease events with
// their true times (the lease checker). A real cluster has no inspectable
// log and no global clock, so chaos/ supplies them this way:
//
//  - Times: one steady clock in the workload process, nanoseconds since
//    the workload started (the history's unit); invoke is taken before the
//    request is sent, return after its answer arrived, so each real
//    interval contains the request's effect.
//  - History: gRPC answers converted to harness::Response exactly as the
//    simulated clients convert the engine's (a plain put / delete / range
//    is a one-op request, a txn keeps both branches), a lease's expiry is
//    a kUnknown revoke invoked when its grant was answered, as in the
//    simulator. The linearizability checker runs with the simulator's
//    options (no external writes: every revision must be explained).
//  - Watch oracle: after the run each member's whole event history is read
//    with a watch from revision 1 (all keys, prev_kv). One member's
//    history is turned into raft entries (a lease grant before a lease's
//    first use, then one txn of puts and deletes per revision) and
//    replayed into a KvModel, which recomputes versions, create revisions
//    and prev_kv itself: a history that is not internally consistent fails
//    here. Every member's history is fed to the checker as the members'
//    feed (so members that disagree are reported), and every acknowledged
//    write of the History must appear in the oracle at its revision (so
//    the oracle is tied to what clients were told). The watch clients'
//    segments are then checked against the KvModel by WatchChecker
//    unchanged.
//  - Lease events: grants, keep-alives, time-to-live answers and revoke
//    requests with their client times, plus promotions, which a real
//    cluster does not report: a monitor polls every member's Status
//    (term, leader) every 100 ms and records a promotion one election
//    timeout after each new (term, leader) pair is first seen (a new
//    leader's lessor is promoted once it applied an entry of its term,
//    which a member may report before it happened); and a response header
//    whose raft_term is higher than any seen counts as a promotion at its
//    arrival. Both only ever add promotions (so the "lives too long" bound
//    gets more lenient); the header rule alone misses a leader elected in
//    a term a candidate had already shown (a serializable read served by
//    an isolated candidate), which the monitor covers. The "dies early"
//    bound does not use promotions. Events are replayed in time order into
//    LeaseChecker.
//    Keep-alives that failed are counted as renews of unknown time. Clock
//    drift: 0 ppm (one machine, one monotonic clock) — no clock faults.
#ifndef DETCD_CHAOS_CHECKS_H_
#define DETCD_CHAOS_CHECKS_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "engine/mvcc/types.h"
#include "engine/mvcc/watchable_store.h"
#include "etcdserverpb/rpc.pb.h"
#include "harness/history.h"
#include "harness/kv_model.h"
#include "harness/lease_checker.h"

namespace detcd::chaos {

// ---- watch answers, as the simulated watch clients see them (requests and
// the other answers convert as the simulated clients' do:
// harness/history_proto.h) ----
mvcc::Event FromEvent(const mvccpb::Event& e);
mvcc::WatchResponse FromWatch(const etcdserverpb::WatchResponse& r);

// ---- the watch oracle ----

// Replays a member's complete event history (revisions 2.. in order, as a
// watch from revision 1 delivers it) into `model` as synthetic committed
// entries. Returns "" or why the history cannot be a committed log (a gap
// in revisions, events the model computes differently: version, create
// revision, prev_kv).
std::string BuildModel(const std::vector<mvcc::Event>& events,
                       harness::KvModel* model);

// The events grouped by revision (the members' feed).
std::map<int64_t, std::vector<mvcc::Event>> ByRevision(
    const std::vector<mvcc::Event>& events);

// Every acknowledged write of the history must show in the oracle at the
// revision its answer carried: a put as a PUT event of its key and value
// (lease included), a delete that reported n deletions as n DELETE events.
// Returns at most `limit` problems.
std::vector<std::string> CheckHistoryAgainstModel(const harness::History& h,
                                                  const harness::KvModel& m,
                                                  size_t limit = 5);

// ---- lease events ----
struct LeaseEvent {
  enum Kind { kPrimary, kGranted, kKeepAlive, kTimeToLive, kRevokeRequested };
  Kind kind = kPrimary;
  int64_t id = 0;
  int64_t invoke_ns = 0;
  int64_t return_ns = 0;  // kPrimary: when the new term was seen
  int64_t ttl_s = 0;      // kGranted, kTimeToLive
  harness::LeaseChecker::KeepAlive outcome =
      harness::LeaseChecker::KeepAlive::kOk;
  bool may_renew_later = false;  // kKeepAlive
};

// Feeds the events to the checker in the order their outcomes became known
// (return time; a promotion before anything known at the same instant).
void ReplayLeaseEvents(std::vector<LeaseEvent> events,
                       harness::LeaseChecker* checker);

}  // namespace detcd::chaos

#endif  // DETCD_CHAOS_CHECKS_H_
