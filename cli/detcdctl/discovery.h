// DNS SRV discovery of client endpoints (etcdctl's --discovery-srv), as
// etcd's pkg/srv GetClient: _etcd-client-ssl._tcp.<domain> gives https://
// endpoints, _etcd-client._tcp.<domain> http:// ones (with
// --discovery-srv-name X the services are etcd-client-ssl-X and
// etcd-client-X). The look-up itself is the client library's
// (detcd/srv.h), which the server's --discovery-srv uses too.
#ifndef DETCD_CLI_DETCDCTL_DISCOVERY_H_
#define DETCD_CLI_DETCDCTL_DISCOVERY_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace detcd::ctl {

absl::StatusOr<std::vector<std::string>> DiscoverEndpoints(
    const std::string& domain, const std::string& service_name);

}  // namespace detcd::ctl

#endif  // DETCD_CLI_DETCDCTL_DISCOVERY_H_
