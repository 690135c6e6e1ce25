#include "detcd/lease.h"

#include <algorithm>

#include "absl/time/clock.h"
#include "detcd/errors.h"

namespace detcd::client {
namespace {

constexpr absl::Duration kDefaultTtl = absl::Seconds(5);  // clientv3
constexpr absl::Duration kRetryConnWait = absl::Milliseconds(500);

}  // namespace

absl::Status KeepAliveLoop(
    Client* client, int64_t lease_id,
    const std::function<void(const etcdserverpb::LeaseKeepAliveResponse&)>&
        on_response,
    Canceller* stop) {
  absl::Time lease_deadline = absl::Now() + kDefaultTtl;
  // clientv3 looks for due keep-alives every 500 ms from its start: a
  // keep-alive goes out at the first such tick after TTL/3.
  const absl::Time start = absl::Now();
  for (;;) {
    if (stop != nullptr && stop->cancelled()) {
      return absl::CancelledError(kContextCanceled);
    }
    if (absl::Now() >= lease_deadline) return absl::OkStatus();
    CallOptions o;
    o.deadline = lease_deadline;
    auto r = client->LeaseKeepAliveOnce(lease_id, o, stop);
    if (!r.ok()) {
      if (stop != nullptr && stop->cancelled()) {
        return absl::CancelledError(kContextCanceled);
      }
      if (stop != nullptr) {
        stop->WaitForCancel(kRetryConnWait);
      } else {
        absl::SleepFor(kRetryConnWait);
      }
      continue;
    }
    if (r->ttl() <= 0) return absl::OkStatus();
    on_response(*r);
    absl::Time now = absl::Now();
    lease_deadline = now + absl::Seconds(r->ttl());
    absl::Time due = now + absl::Seconds(r->ttl()) / 3;
    int64_t ticks = absl::Ceil(due - start, kRetryConnWait) / kRetryConnWait;
    absl::Duration wait = start + ticks * kRetryConnWait - now;
    if (stop != nullptr) {
      if (stop->WaitForCancel(wait)) {
        return absl::CancelledError(kContextCanceled);
      }
    } else {
      absl::SleepFor(wait);
    }
  }
}

}  // namespace detcd::client
