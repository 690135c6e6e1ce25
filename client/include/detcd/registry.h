// Service registration and discovery on leases (the pattern of etcd's
// naming/endpoints packages, with plain values):
//
//  - an instance registers as key "<prefix><service>/<instance id>" with
//    its address (any string) as value, attached to a lease kept alive
//    while the Registration lives; if the process dies or loses the
//    cluster for longer than the TTL, the lease expires and the entry is
//    deleted by the cluster itself;
//  - a client discovers the instances of a service with one read, and
//    follows changes with a watch on the service's prefix from the
//    revision after that read (nothing missed, nothing seen twice). A
//    watch that falls behind a compaction reads the prefix again.
#ifndef DETCD_CLIENT_REGISTRY_H_
#define DETCD_CLIENT_REGISTRY_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "detcd/client.h"
#include "detcd/lease.h"

namespace detcd::client {

// The instances of one service: id -> value, and the revision they were
// read at.
struct ServiceInstances {
  std::map<std::string, std::string> instances;
  int64_t revision = 0;
};

class Registration {
 public:
  ~Registration();  // Deregister, errors ignored
  const std::string& key() const { return key_; }
  int64_t lease() const { return keeper_->id(); }
  // False once the lease was lost (the entry is gone; register again).
  bool alive() const { return keeper_->alive(); }
  // Changes the advertised value (same lease).
  absl::Status Update(const std::string& value);
  // Removes the entry now (revokes the lease).
  absl::Status Deregister();
  // Stops the keep-alives without removing anything: the entry goes when
  // the lease expires (what a crashed process leaves behind).
  void Orphan();

 private:
  friend class ServiceRegistry;
  Registration(Client* c, std::string key, std::unique_ptr<LeaseKeeper> k)
      : c_(c), key_(std::move(key)), keeper_(std::move(k)) {}
  Client* c_;
  std::string key_;
  std::unique_ptr<LeaseKeeper> keeper_;
  bool deregistered_ = false;
};

class ServiceRegistry {
 public:
  // prefix: where services live, e.g. "services/".
  ServiceRegistry(Client* c, std::string prefix)
      : c_(c), prefix_(std::move(prefix)) {}

  // Registers an instance with a lease of ttl_s seconds. Fails with
  // PlainError "key already exists" if the id is taken (by a live
  // registration).
  absl::StatusOr<std::unique_ptr<Registration>> Register(
      const std::string& service, const std::string& id,
      const std::string& value, int64_t ttl_s = 10);

  absl::StatusOr<ServiceInstances> Discover(const std::string& service,
                                            const CallOptions& o = {});

  // Calls on_change with the current instances, then after every watch
  // response (changes committed close together may come as one),
  // until on_change returns false (OK), `stop` (or the client's canceller)
  // is cancelled (Cancelled), or the watch fails for good.
  absl::Status Watch(
      const std::string& service,
      const std::function<bool(const ServiceInstances&)>& on_change,
      Canceller* stop = nullptr);

  std::string ServicePrefix(const std::string& service) const {
    return prefix_ + service + "/";
  }

 private:
  Client* c_;
  std::string prefix_;
};

}  // namespace detcd::client

#endif  // DETCD_CLIENT_REGISTRY_H_
