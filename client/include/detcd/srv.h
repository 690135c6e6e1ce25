// DNS SRV look-ups as etcd does them (its pkg/srv over Go's net.LookupSRV),
// shared by detcdctl (--discovery-srv: client endpoints) and the detcd
// server (--discovery-srv: the initial cluster).
//
// Resolution goes through the system resolver configuration
// (/etc/resolv.conf: name servers, search list, ndots) with glibc's
// libresolv (res_nsearch on a per-call resolver state, so it is
// thread-safe); there is no DNS client of our own.
//
// Errors read as Go's *net.DNSError:
//   "lookup _etcd-server._tcp.example.com on 10.0.0.2:53: no such host"
// ("no such host" for NXDOMAIN and for a name without SRV records,
// "server misbehaving" for SERVFAIL / refused, "i/o timeout" when no
// server answered).
#ifndef DETCD_CLIENT_SRV_H_
#define DETCD_CLIENT_SRV_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace detcd::client {

struct SrvRecord {
  std::string target;  // with its trailing dot, as Go's net.SRV
  uint16_t port = 0;
  uint16_t priority = 0;
  uint16_t weight = 0;
};

// net.LookupSRV(service, proto, domain): the records of
// "_<service>._<proto>.<domain>", ordered by priority and, within one
// priority, shuffled by weight (RFC 2782), as Go orders them.
absl::StatusOr<std::vector<SrvRecord>> LookupSrv(absl::string_view service,
                                                 absl::string_view proto,
                                                 absl::string_view domain);

// etcd's srv.GetSRVService: "<service>[-ssl][-<service_name>]" (the "-ssl"
// for scheme https).
std::string SrvServiceName(absl::string_view service,
                           absl::string_view service_name,
                           absl::string_view scheme);

// etcd's srv.GetClient("etcd-client", domain, service_name): the https
// endpoints of _etcd-client-ssl._tcp.<domain>, then the http ones of
// _etcd-client._tcp.<domain>, as "scheme://target.:port". Fails only when
// both look-ups fail: "dns lookup errors: <https error> and <http error>".
absl::StatusOr<std::vector<std::string>> SrvClientEndpoints(
    absl::string_view domain, absl::string_view service_name);

}  // namespace detcd::client

#endif  // DETCD_CLIENT_SRV_H_
