#include "detcd/registry.h"

#include <utility>

#include "detcd/errors.h"
#include "detcd/kv.h"
#include "detcd/recipe_driver.h"
#include "detcd/recipes.h"
#include "detcd/watch.h"

namespace detcd::client {
namespace {

namespace pb = etcdserverpb;

bool Cancelled(Canceller* a, Canceller* b) {
  return (a != nullptr && a->cancelled()) || (b != nullptr && b->cancelled());
}

}  // namespace

Registration::~Registration() { Deregister().IgnoreError(); }

absl::Status Registration::Update(const std::string& value) {
  PutOptions p;
  p.lease = keeper_->id();
  return c_->Put(key_, value, p).status();
}

void Registration::Orphan() {
  deregistered_ = true;
  keeper_->Stop();
}

absl::Status Registration::Deregister() {
  if (deregistered_) return absl::OkStatus();
  deregistered_ = true;
  // Revoking deletes the key with the lease; bounded so a dead cluster
  // does not hold up a shutting-down process (the lease expires anyway).
  return keeper_->Revoke(CallOptions::Timeout(absl::Seconds(5)));
}

absl::StatusOr<std::unique_ptr<Registration>> ServiceRegistry::Register(
    const std::string& service, const std::string& id, const std::string& value,
    int64_t ttl_s) {
  std::string key = ServicePrefix(service) + id;
  RegisterSteps steps(key, value, ttl_s);
  if (absl::Status s = RunSteps(c_, steps); !s.ok()) return s;
  return std::unique_ptr<Registration>(new Registration(
      c_, std::move(key), LeaseKeeper::Start(c_, steps.lease())));
}

absl::StatusOr<ServiceInstances> ServiceRegistry::Discover(
    const std::string& service, const CallOptions& o) {
  const std::string prefix = ServicePrefix(service);
  GetOptions g;
  g.prefix = true;
  auto r = c_->Get(prefix, g, o);
  if (!r.ok()) return r.status();
  ServiceInstances out;
  out.revision = r->header().revision();
  for (const auto& kv : r->kvs()) {
    out.instances[kv.key().substr(prefix.size())] = kv.value();
  }
  return out;
}

absl::Status ServiceRegistry::Watch(
    const std::string& service,
    const std::function<bool(const ServiceInstances&)>& on_change,
    Canceller* stop) {
  const std::string prefix = ServicePrefix(service);
  Canceller* parent = stop != nullptr ? stop : c_->canceller();
  for (;;) {
    if (Cancelled(stop, c_->canceller())) {
      return absl::CancelledError(kContextCanceled);
    }
    auto cur = Discover(service);
    if (!cur.ok()) return cur.status();
    if (!on_change(*cur)) return absl::OkStatus();
    Watcher w(c_, {}, parent);
    pb::WatchCreateRequest req;
    req.set_key(prefix);
    req.set_range_end(PrefixEnd(prefix));
    req.set_start_revision(cur->revision + 1);
    w.Add(req);
    WatchEvent ev;
    bool reload = false;
    while (!reload) {
      if (!w.Next(&ev)) {
        if (Cancelled(stop, c_->canceller())) {
          return absl::CancelledError(kContextCanceled);
        }
        return w.status().ok() ? PlainError("registry watch ended")
                               : w.status();
      }
      if (ev.closing) {
        // Compacted past our revision: read the prefix again.
        if (ev.response.compact_revision() != 0) {
          reload = true;
          continue;
        }
        if (Cancelled(stop, c_->canceller())) {
          return absl::CancelledError(kContextCanceled);
        }
        return ev.error.empty() ? PlainError("registry watch ended")
                                : PlainError(ev.error);
      }
      if (ev.response.events_size() == 0) continue;  // progress
      for (const auto& e : ev.response.events()) {
        std::string id = e.kv().key().substr(prefix.size());
        if (e.type() == mvccpb::Event::PUT) {
          cur->instances[id] = e.kv().value();
        } else {
          cur->instances.erase(id);
        }
      }
      cur->revision = ev.response.header().revision();
      if (!on_change(*cur)) return absl::OkStatus();
    }
  }
}

}  // namespace detcd::client
