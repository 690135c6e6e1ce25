// Keeping a lease alive, as etcd clientv3's Lease.KeepAlive: a keep-alive
// is sent, the answer's TTL tells when the next one is due (a third of
// it) and until when the lease is surely alive; a response with TTL <= 0
// means the lease is gone (expired or revoked). Transient errors are
// retried every 500 ms until the lease's last known deadline passes (then
// it is treated as expired, as clientv3's deadline loop does). Before the
// first answer the deadline is clientv3's default of 5 s.
#ifndef DETCD_CLIENT_LEASE_H_
#define DETCD_CLIENT_LEASE_H_

#include <cstdint>
#include <functional>

#include "absl/status/status.h"
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

}  // namespace detcd::client

#endif  // DETCD_CLIENT_LEASE_H_
