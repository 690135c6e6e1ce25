// Simulated clients of a cluster with auth on (scenario "auth"), feeding
// the AuthChecker (auth_checker.h).
//
//  - An admin client sets auth up as etcd's documentation does (root user
//    with the root role, roles with key permissions, users holding them,
//    AuthEnable), each step retried until it took, then authenticates as
//    root and, until the fault phase ends, changes things at random:
//    grants and revokes permissions (read, write, readwrite on a key, a
//    range, a prefix, from a key) and roles, changes passwords, deletes
//    users and roles and adds them back, and now and then turns auth off
//    and on again (with the root certificate: no token is valid then).
//  - One client per user (alice, bob, carol: read-only, read-write and
//    mixed roles at the start) authenticates with the engine's Authenticate
//    (a simple token; the newest password it knows first), then sends puts,
//    deletes, ranges (linearizable and serializable) and txns on the a/,
//    b/ and z/ keys to random members with its token. A refused token
//    ("invalid auth token": its member restarted, or the user was deleted
//    or changed password) makes it authenticate again, as clientv3 does.
//
// Every answer goes to the checker with the raft index it was decided at.
// The checker's model also tells the cluster's KV model which committed
// writes auth refused (Cluster::set_commit_filter). Everything random
// comes from the workload's own stream.
#ifndef DETCD_HARNESS_AUTH_WORKLOAD_H_
#define DETCD_HARNESS_AUTH_WORKLOAD_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "engine/env/env.h"
#include "harness/auth_checker.h"
#include "harness/cluster.h"
#include "sim/schedule.h"

namespace detcd::harness {

struct AuthWorkloadOptions {
  // No new request starts after this world time (the fault phase's end).
  int64_t end_ns = 10 * sim::kSecond;
  int64_t timeout_ns = 2 * sim::kSecond;
  int64_t admin_think_min_ns = 20 * sim::kMillisecond;
  int64_t admin_think_max_ns = 150 * sim::kMillisecond;
  int64_t user_think_max_ns = 30 * sim::kMillisecond;
};

class AuthWorkload {
 public:
  AuthWorkload(Cluster* cluster, env::SeededRng rng, AuthWorkloadOptions opts);
  ~AuthWorkload();
  AuthWorkload(const AuthWorkload&) = delete;
  AuthWorkload& operator=(const AuthWorkload&) = delete;

  void Start();
  const AuthChecker& checker() const { return checker_; }
  // Auth was enabled (the admin's setup finished).
  bool enabled() const { return enabled_; }

  static constexpr const char* kRootPassword = "root-secret";

 private:
  struct UserClient {
    std::string user;
    std::optional<std::string> token;
    size_t password_try = 0;  // tries from the newest password back
    uint64_t seq = 0;         // the attempt in flight (late answers)
    bool busy = false;
    uint64_t steps = 0;  // steps taken (names its draw streams)
  };
  using Request = etcdserverpb::InternalRaftRequest;
  // (status, raft index the member had applied when the request reached
  // it, raft index the answer was decided at, token if any)
  using Answer = std::function<void(const absl::Status&, uint64_t, uint64_t,
                                    const std::string&)>;

  // Sends `r` (an auth request, or a KV request for a user client) to
  // member `id` as `caller` (nullopt: the cluster's client certificate).
  // `answer` runs once, from a fresh event, with the outcome; a timeout
  // answers DeadlineExceeded.
  void Send(uint64_t id, const std::optional<server::Caller>& caller,
            const Request& r, Answer answer);

  // Admin.
  void SetupStep(size_t step);
  void AdminNext();
  void AdminAuthenticate();
  Request RandomAdminRequest();
  // User clients.
  void UserNext(int c);
  Request RandomUserRequest();
  void Later(int64_t delay_ns, std::function<void()> fn);
  uint64_t RandomUpNode();
  std::string NewPassword(const std::string& user);
  bool Ended() const;
  // Each step of an actor (the admin, user client c) draws from a stream of
  // its own, "auth/admin.N" / "auth/uC.N", recorded and replayed by --record
  // / --replay (sim/schedule.h) as the KV clients' "kv/cC.N": a change in
  // how many draws one step takes leaves the other steps' draws alone. An
  // answer's callback draws in its step's stream again (Use).
  std::string AdminStep();
  std::string UserStep(int c);
  void Use(const std::string& stream) { rng_.Use(stream); }

  Cluster* cluster_;
  sim::ScheduledRng rng_;
  AuthWorkloadOptions opts_;
  uint64_t admin_steps_ = 0;
  AuthChecker checker_;
  std::vector<Request> setup_;
  bool enabled_ = false;
  std::optional<std::string> admin_token_;
  std::deque<Request> admin_queue_;  // follow-ups (re-adding what it deleted)
  std::map<std::string, std::vector<std::string>> passwords_;  // oldest first
  std::vector<UserClient> users_;
  uint64_t next_call_ = 0;
  // Calls whose answer has not come yet, by call id (so a late answer after
  // the timeout is dropped).
  std::map<uint64_t, Answer> pending_;
};

}  // namespace detcd::harness

#endif  // DETCD_HARNESS_AUTH_WORKLOAD_H_
