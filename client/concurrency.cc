#include "detcd/concurrency.h"

#include <utility>

#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "detcd/errors.h"
#include "detcd/lease.h"
#include "detcd/recipe_driver.h"

namespace detcd::client {
namespace pb = etcdserverpb;

// ---------------------------------------------------------------- Session

Session::Session(Client* client, int64_t lease, int ttl)
    : client_(client), lease_(lease), ttl_(ttl) {}

absl::StatusOr<std::unique_ptr<Session>> Session::New(Client* client,
                                                      int ttl_s) {
  if (ttl_s <= 0) ttl_s = kDefaultTtlSeconds;
  pb::LeaseGrantRequest g;
  g.set_ttl(ttl_s);
  auto resp = client->LeaseGrant(g);
  if (!resp.ok()) return resp.status();
  std::unique_ptr<Session> s(new Session(client, resp->id(), ttl_s));
  Session* raw = s.get();
  s->keeper_ = std::thread([raw] {
    KeepAliveLoop(
        raw->client_, raw->lease_, [](const pb::LeaseKeepAliveResponse&) {},
        &raw->stop_)
        .IgnoreError();
    raw->done_.store(true);
  });
  return s;
}

std::unique_ptr<Session> Session::Attach(Client* client, int64_t lease) {
  std::unique_ptr<Session> s(new Session(client, lease, kDefaultTtlSeconds));
  s->done_.store(true);
  return s;
}

Session::~Session() { Orphan(); }

bool Session::done() const { return done_.load(); }

bool Session::WaitDone(Canceller* stop) {
  while (!done_.load()) {
    if (stop != nullptr) {
      if (stop->WaitForCancel(absl::Milliseconds(50))) break;
    } else {
      absl::SleepFor(absl::Milliseconds(50));
    }
  }
  return done_.load();
}

void Session::Orphan() {
  stop_.Cancel();
  if (keeper_.joinable()) keeper_.join();
}

absl::Status Session::Close() {
  Orphan();
  pb::LeaseRevokeRequest r;
  r.set_id(lease_);
  return client_->LeaseRevoke(r, CallOptions::Timeout(absl::Seconds(ttl_)))
      .status();
}

// ---------------------------------------------------------------- Mutex

Mutex::Mutex(Session* s, std::string prefix) : s_(s) {
  st_.prefix = std::move(prefix) + "/";
}

absl::Status Mutex::Lock() {
  st_.lease = s_->lease();
  LockSteps steps(&st_);
  return RunSteps(s_->client(), steps);
}

pb::Compare Mutex::IsOwner() const {
  return CreateRevisionIs(st_.key, st_.rev);
}

absl::Status Mutex::Unlock() {
  UnlockSteps steps(&st_);
  return RunSteps(s_->client(), steps);
}

// ---------------------------------------------------------------- Election

Election::Election(Session* s, std::string prefix) : s_(s) {
  st_.prefix = std::move(prefix) + "/";
  st_.lease = s->lease();
}

Election Election::Resume(Session* s, std::string prefix,
                          std::string leader_key, int64_t leader_rev) {
  Election e(s, std::move(prefix));
  e.st_.leader_key = std::move(leader_key);
  e.st_.leader_rev = leader_rev;
  e.st_.leader = true;
  return e;
}

absl::Status Election::Campaign(const std::string& val) {
  CampaignSteps steps(&st_, val);
  return RunSteps(s_->client(), steps);
}

absl::Status Election::Proclaim(const std::string& val) {
  ProclaimSteps steps(&st_, val);
  return RunSteps(s_->client(), steps);
}

absl::Status Election::Resign() {
  ResignSteps steps(&st_);
  return RunSteps(s_->client(), steps);
}

absl::StatusOr<pb::RangeResponse> Election::Leader() {
  LeaderSteps steps(st_.prefix);
  if (absl::Status s = RunSteps(s_->client(), steps); !s.ok()) return s;
  return steps.response();
}

absl::Status Election::Observe(
    const std::function<bool(const pb::RangeResponse&)>& on_leader) {
  ObserveSteps steps(st_.prefix, on_leader);
  return RunSteps(s_->client(), steps);
}

}  // namespace detcd::client
