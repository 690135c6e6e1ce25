// etcd's concurrency recipes over KV, Watch and Lease (clientv3's
// concurrency package, which etcdctl's lock and elect use):
//
//  - Session: a lease kept alive in the background; done() once it is
//    lost (expired, revoked, or unreachable past its TTL).
//  - Mutex: key "<prefix>/<lease id hex>" created with the session's
//    lease; the holder is the key with the lowest create revision under
//    the prefix; a waiter watches the key just before its own until it is
//    deleted. The holder's create revision (rev()) is a fencing token.
//  - Election: the same queue; the leader's value can be changed
//    (Proclaim) and followers can observe the leader.
//
// Blocking calls honour the client's canceller (Client::set_canceller),
// which a SIGINT handler can trigger. Their logic is recipe_core.h's step
// machines (LockSteps, CampaignSteps, ...), which the simulator's recipe
// clients run too.
#ifndef DETCD_CLIENT_CONCURRENCY_H_
#define DETCD_CLIENT_CONCURRENCY_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "detcd/client.h"
#include "detcd/recipe_core.h"
#include "etcdserverpb/rpc.pb.h"

namespace detcd::client {

class Session {
 public:
  static constexpr int kDefaultTtlSeconds = 60;
  // Grants a lease of ttl_s seconds (default 60 if <= 0) and keeps it
  // alive.
  static absl::StatusOr<std::unique_ptr<Session>> New(Client* client,
                                                      int ttl_s = 0);
  // A session on a lease someone else keeps alive (etcd's Lock and
  // Election services act for a caller who owns the lease): nothing is
  // granted or kept alive here, and done() is true from the start, as for
  // clientv3's session made WithLease and then orphaned.
  static std::unique_ptr<Session> Attach(Client* client, int64_t lease);
  ~Session();

  Client* client() const { return client_; }
  int64_t lease() const { return lease_; }
  int ttl() const { return ttl_; }
  // The keep-alive ended: the lease is gone.
  bool done() const;
  // Waits until done() or `stop` is cancelled; returns done().
  bool WaitDone(Canceller* stop);
  // Stops keeping the lease alive (it expires on its own).
  void Orphan();
  // Orphan, then revoke the lease (bounded by the TTL).
  absl::Status Close();

 private:
  Session(Client* client, int64_t lease, int ttl);

  Client* client_;
  int64_t lease_;
  int ttl_;
  Canceller stop_;
  std::atomic<bool> done_{false};
  std::thread keeper_;
};

class Mutex {
 public:
  Mutex(Session* s, std::string prefix);
  // Blocks until this session holds the lock.
  absl::Status Lock();
  absl::Status Unlock();
  // A comparison true while this session holds the lock (clientv3's
  // IsOwner): the lock key still has this create revision. Put it in a
  // Txn's If to make a write conditional on holding the lock (kv.h).
  etcdserverpb::Compare IsOwner() const;
  // The lock's key and its create revision (the fencing token).
  const std::string& key() const { return st_.key; }
  int64_t rev() const { return st_.rev; }
  const etcdserverpb::ResponseHeader& header() const { return st_.header; }

 private:
  Session* s_;
  MutexState st_;  // prefix with the trailing "/"
};

class Election {
 public:
  Election(Session* s, std::string prefix);
  // An election whose leadership was won earlier, possibly by another
  // process (clientv3's ResumeElection): Proclaim and Resign act on
  // leader_key if its create revision is still leader_rev.
  static Election Resume(Session* s, std::string prefix, std::string leader_key,
                         int64_t leader_rev);
  // Blocks until elected with value val.
  absl::Status Campaign(const std::string& val);
  absl::Status Proclaim(const std::string& val);
  absl::Status Resign();
  // The current leader's key (a one-key range response); Unknown
  // "election: no leader" when nobody is campaigning.
  absl::StatusOr<etcdserverpb::RangeResponse> Leader();
  // Calls on_leader with the current leader (as a one-key range
  // response) and with every change, until on_leader returns false, the
  // client's canceller fires (Cancelled) or a watch fails.
  absl::Status Observe(
      const std::function<bool(const etcdserverpb::RangeResponse&)>& on_leader);
  const std::string& key() const { return st_.leader_key; }
  int64_t rev() const { return st_.leader_rev; }
  const etcdserverpb::ResponseHeader& header() const { return st_.header; }

 private:
  Session* s_;
  ElectionState st_;  // prefix with the trailing "/"
};

}  // namespace detcd::client

#endif  // DETCD_CLIENT_CONCURRENCY_H_
