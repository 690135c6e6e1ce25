// Keeping a lease alive, as etcd clientv3's Lease.KeepAlive: a keep-alive
// is sent, the answer's TTL tells when the next one is due (a third of
// it) and until when the lease is surely alive; a response with TTL <= 0
// means the lease is gone (expired or revoked). Transient errors are
// retried every 500 ms until the lease's last known deadline passes (then
// it is treated as expired, as clientv3's deadline loop does). Before the
// first answer the deadline is clientv3's default of 5 s.
#ifndef DETCD_CLIENT_LEASE_H_
#define DETCD_CLIENT_LEASE_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <thread>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "detcd/client.h"
#include "etcdserverpb/rpc.pb.h"

namespace detcd::client {

// Runs until the lease is gone (returns OK) or stop is cancelled (returns
// Cancelled "context canceled"). on_response sees every answer with a
// positive TTL.
absl::Status KeepAliveLoop(
    Client* client, int64_t lease_id,
    const std::function<void(const etcdserverpb::LeaseKeepAliveResponse&)>&
        on_response,
    Canceller* stop);

// A lease kept alive on a thread of its own (clientv3's Lease.KeepAlive,
// with callbacks instead of its channel). Destroying it stops the
// keep-alives; the lease then expires on its own unless revoked.
class LeaseKeeper {
 public:
  struct Callbacks {
    // Every answer with a positive TTL (on the keeper's thread).
    std::function<void(const etcdserverpb::LeaseKeepAliveResponse&)>
        on_response;
    // Once, when the lease is gone (expired, revoked, or unreachable past
    // its last known TTL); not called after Stop.
    std::function<void()> on_lost;
  };
  // Grants a lease of ttl_s seconds and keeps it alive.
  static absl::StatusOr<std::unique_ptr<LeaseKeeper>> Grant(
      Client* client, int64_t ttl_s, Callbacks cb = {},
      const CallOptions& o = {});
  // Keeps an existing lease alive.
  static std::unique_ptr<LeaseKeeper> Start(Client* client, int64_t lease_id,
                                            Callbacks cb = {});
  ~LeaseKeeper();
  LeaseKeeper(const LeaseKeeper&) = delete;
  LeaseKeeper& operator=(const LeaseKeeper&) = delete;

  int64_t id() const { return id_; }
  // The TTL of the last answer (the granted TTL before the first).
  int64_t ttl() const { return ttl_.load(); }
  // False once the lease is known to be gone.
  bool alive() const { return !lost_.load(); }
  // Stops keeping the lease alive; idempotent.
  void Stop();
  // Stop, then revoke the lease (its keys are deleted).
  absl::Status Revoke(const CallOptions& o = {});

 private:
  LeaseKeeper(Client* client, int64_t id, int64_t ttl, Callbacks cb);

  Client* client_;
  int64_t id_;
  std::atomic<int64_t> ttl_;
  Callbacks cb_;
  Canceller stop_;
  std::atomic<bool> lost_{false};
  std::thread thread_;
};

}  // namespace detcd::client

#endif  // DETCD_CLIENT_LEASE_H_
