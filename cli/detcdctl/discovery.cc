#include "cli/detcdctl/discovery.h"

#include "detcd/srv.h"

namespace detcd::ctl {

absl::StatusOr<std::vector<std::string>> DiscoverEndpoints(
    const std::string& domain, const std::string& service_name) {
  return client::SrvClientEndpoints(domain, service_name);
}

}  // namespace detcd::ctl
