#include "detcd/lease.h"

#include <algorithm>
#include <utility>

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

// ---------------------------------------------------------------- LeaseKeeper

LeaseKeeper::LeaseKeeper(Client* client, int64_t id, int64_t ttl, Callbacks cb)
    : client_(client), id_(id), ttl_(ttl), cb_(std::move(cb)) {}

absl::StatusOr<std::unique_ptr<LeaseKeeper>> LeaseKeeper::Grant(
    Client* client, int64_t ttl_s, Callbacks cb, const CallOptions& o) {
  etcdserverpb::LeaseGrantRequest g;
  g.set_ttl(ttl_s);
  auto r = client->LeaseGrant(g, o);
  if (!r.ok()) return r.status();
  if (!r->error().empty()) return absl::UnknownError(r->error());
  std::unique_ptr<LeaseKeeper> k = Start(client, r->id(), std::move(cb));
  // The keeper's first answer replaces this; 0 would read as "unknown".
  int64_t zero = 0;
  k->ttl_.compare_exchange_strong(zero, r->ttl());
  return k;
}

std::unique_ptr<LeaseKeeper> LeaseKeeper::Start(Client* client,
                                                int64_t lease_id,
                                                Callbacks cb) {
  std::unique_ptr<LeaseKeeper> k(
      new LeaseKeeper(client, lease_id, 0, std::move(cb)));
  LeaseKeeper* raw = k.get();
  k->thread_ = std::thread([raw] {
    absl::Status s = KeepAliveLoop(
        raw->client_, raw->id_,
        [raw](const etcdserverpb::LeaseKeepAliveResponse& resp) {
          raw->ttl_.store(resp.ttl());
          if (raw->cb_.on_response) raw->cb_.on_response(resp);
        },
        &raw->stop_);
    if (s.ok()) {
      raw->lost_.store(true);
      if (raw->cb_.on_lost) raw->cb_.on_lost();
    }
  });
  return k;
}

LeaseKeeper::~LeaseKeeper() { Stop(); }

void LeaseKeeper::Stop() {
  stop_.Cancel();
  if (thread_.joinable() && thread_.get_id() != std::this_thread::get_id()) {
    thread_.join();
  }
}

absl::Status LeaseKeeper::Revoke(const CallOptions& o) {
  Stop();
  etcdserverpb::LeaseRevokeRequest r;
  r.set_id(id_);
  absl::Status s = client_->LeaseRevoke(r, o).status();
  if (s.ok()) lost_.store(true);
  return s;
}

}  // namespace detcd::client
