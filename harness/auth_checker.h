// The auth checker: no client request succeeded without the permission in
// force at its apply point, and none was refused with an auth error unless
// the permission really was missing or its credentials were stale.
//
// It keeps its own model of etcd 3.4's auth store (users, roles, key
// permissions, the enabled flag and the auth revision) and of its RBAC
// rules, built from the committed log alone: every committed entry, in
// index order, as first applied anywhere (Cluster::set_commit_filter).
// Nothing here reads the engine's auth store; it shares no code with
// engine/auth. From the log it knows the auth state after every raft
// index, so it can say what etcd must answer:
//
//  - a write (put, delete, txn with a write) is judged where its entry
//    applies, with the user and auth revision the receiving member stamped
//    it with: no user -> "user name is empty"; a revision older than the
//    store's -> "revision of auth store is old" (etcd's rule that a request
//    authorized before an auth change cannot use a revoked permission);
//    an unknown user, or a key range not covered by the union of the
//    user's roles' permissions of that type -> "permission denied"; the
//    root role may do anything. Txns need read on every compare and every
//    range, write on every put and delete, and read too on a delete with
//    prev_kv, in both branches; a put with prev_kv needs read on its key,
//    a put with a lease write on the lease's keys, a lease revoke write on
//    its keys (etcd's checkLeasePuts).
//  - a read (range, read-only txn) is judged at the raft index its member
//    had applied when it served it, with that index's revision (a read is
//    checked after its ReadIndex with the caller's current identity).
//  - an admin request (user, role and permission changes) must come from
//    a user with the root role while auth is on; the checker also predicts
//    each one's own outcome (role not found, permission not granted, ...).
//
// Clients report each answer with the raft index it was decided at (the
// member's applied index when the answer was made: a proposal's waiter
// runs while its entry applies, a read is served at the applied index).
// Check() then compares every answer with the model's verdict at that
// index: a success the model refuses, a refusal the model allows, or a
// refusal with another auth error than the model's is a violation. An
// answer whose entry is not the request sent is a harness error, reported
// as a violation too. "invalid auth token" is always accepted: simple
// tokens are member-local (a member forgets them when it restarts or
// catches up from a snapshot, and knows a token only once it applied its
// Authenticate entry), so the log cannot say whether a member knew one.
// Answers with other errors (no leader, timeouts, alarms) say nothing
// about auth and are only counted.
//
// The same verdicts tell the KV model which committed writes auth refused
// (Refused), so its replay stays the store's.
#ifndef DETCD_HARNESS_AUTH_CHECKER_H_
#define DETCD_HARNESS_AUTH_CHECKER_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "engine/raft/types.h"
#include "etcdserverpb/raft_internal.pb.h"
#include "etcdserverpb/rpc.pb.h"

namespace detcd::harness {

class AuthChecker {
 public:
  // One key permission as etcd stores it: range_end "" is the single key,
  // "\0" every key from key on.
  struct Perm {
    std::string key, range_end;
    bool read = false, write = false;
  };
  // The auth store's state after some raft index.
  struct State {
    bool enabled = false;
    uint64_t revision = 1;
    std::map<std::string, std::set<std::string>> users;  // name -> roles
    std::map<std::string, std::vector<Perm>> roles;      // in etcd's order
  };

  AuthChecker();

  // The keys attached to a lease right now (before the entry being fed
  // applies), for etcd's lease checks; unset: leases have no keys.
  void set_lease_keys(std::function<std::vector<std::string>(int64_t)> f) {
    lease_keys_ = std::move(f);
  }

  // Feeds the committed entry at e.index (index order, each once). Returns
  // true if auth refused its request (it changed nothing).
  bool OnCommitted(const raft::Entry& e);

  // A client's answer, decided at raft index `index` (see above). `sent`
  // is the request as the client sent it (a client request in the
  // InternalRaftRequest field the member puts it in; passwords need not be
  // set); `user` the user the client authenticated as. `read` for a range
  // or a read-only txn, served locally at some index in [from, index]: the
  // member's applied index when it got the request and when it answered
  // (a large range is read in pieces, authorized at the first); a write's
  // `index` is its entry's.
  void OnAnswer(const std::string& user,
                const etcdserverpb::InternalRaftRequest& sent, bool read,
                uint64_t from, uint64_t index, const absl::Status& status);

  // Runs the checks over every answer reported; the violations (empty if
  // none).
  std::vector<std::string> Check() const;

  // What was checked, for the run's coverage counters ("auth.*").
  std::map<std::string, uint64_t> Counters() const;

  // The model's state after raft index i (i up to the last fed index).
  const State& StateAt(uint64_t i) const;
  uint64_t last_index() const { return last_index_; }

  // etcd's client-visible verdicts (the codes and texts etcd's gRPC layer
  // sends); OkStatus when permitted.
  static absl::Status UserEmpty();
  static absl::Status OldRevision();
  static absl::Status Denied();
  static absl::Status InvalidToken();

  // The checker's own RBAC rules (public for its unit test).
  // Whether `roles` grant `want` (read / write) on [key, range_end).
  static bool Covered(const State& st, const std::set<std::string>& roles,
                      std::string_view key, std::string_view range_end,
                      bool write);
  // etcd's isOpPermitted for one key range.
  static absl::Status OpPermitted(const State& st, const std::string& user,
                                  uint64_t revision, std::string_view key,
                                  std::string_view range_end, bool write);

 private:
  struct Stamped {
    std::string fingerprint;
    absl::Status expected;
  };
  struct Answer {
    std::string user;
    std::string fingerprint;
    bool read = false;
    uint64_t from = 0;  // reads: the first index they may have been at
    uint64_t index = 0;
    absl::Status status;
    etcdserverpb::InternalRaftRequest sent;
  };

  // The verdict for request `r` on state `st` as user/revision.
  absl::Status Verdict(const State& st,
                       const etcdserverpb::InternalRaftRequest& r,
                       const std::string& user, uint64_t revision) const;
  absl::Status TxnVerdict(const State& st, const etcdserverpb::TxnRequest& t,
                          const std::string& user, uint64_t revision) const;
  absl::Status LeaseVerdict(const State& st, int64_t lease,
                            const std::string& user, uint64_t revision) const;
  // Applies an admin request to `st`; its outcome.
  static absl::Status ApplyAdmin(State* st,
                                 const etcdserverpb::InternalRaftRequest& r);
  static bool IsAdmin(const etcdserverpb::InternalRaftRequest& r);

  std::function<std::vector<std::string>(int64_t)> lease_keys_;
  uint64_t last_index_ = 0;
  // The state after each index that changed it (index 0: the start).
  std::vector<std::pair<uint64_t, std::shared_ptr<const State>>> states_;
  // Entries whose answer a client may report, by index.
  std::map<uint64_t, Stamped> stamped_;
  // The state machine's duplicate filter (its kRecentRequestIds window).
  std::deque<uint64_t> recent_order_;
  std::set<uint64_t> recent_ids_;
  std::vector<Answer> answers_;
  uint64_t refused_entries_ = 0;
  uint64_t admin_changes_ = 0;
  uint64_t disables_ = 0;  // AuthDisable that turned auth off
};

// A request's identity in the log, independent of the member's additions
// (header, hashed passwords, token prefixes): its kind and contents.
std::string AuthFingerprint(const etcdserverpb::InternalRaftRequest& r);

}  // namespace detcd::harness

#endif  // DETCD_HARNESS_AUTH_CHECKER_H_
