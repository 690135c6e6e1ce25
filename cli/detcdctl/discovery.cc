#include "cli/detcdctl/discovery.h"

#include <arpa/nameser.h>
#include <netinet/in.h>
#include <resolv.h>

#include <algorithm>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace detcd::ctl {
namespace {

struct Srv {
  std::string target;  // with the trailing dot, as Go's net.SRV
  int port = 0;
  int priority = 0;
  int weight = 0;
};

// net.LookupSRV("", "", name): the records of one SRV name, by priority.
absl::StatusOr<std::vector<Srv>> LookupSrv(const std::string& name) {
  unsigned char answer[NS_PACKETSZ * 8];
  int len = res_query(name.c_str(), ns_c_in, ns_t_srv, answer, sizeof answer);
  if (len < 0) {
    return absl::NotFoundError(absl::StrCat("lookup ", name, ": no such host"));
  }
  ns_msg msg;
  if (ns_initparse(answer, len, &msg) != 0) {
    return absl::InternalError(absl::StrCat("lookup ", name, ": bad reply"));
  }
  std::vector<Srv> out;
  int n = ns_msg_count(msg, ns_s_an);
  for (int i = 0; i < n; ++i) {
    ns_rr rr;
    if (ns_parserr(&msg, ns_s_an, i, &rr) != 0) continue;
    if (ns_rr_type(rr) != ns_t_srv) continue;
    const unsigned char* rd = ns_rr_rdata(rr);
    Srv s;
    s.priority = ns_get16(rd);
    s.weight = ns_get16(rd + 2);
    s.port = ns_get16(rd + 4);
    char target[NS_MAXDNAME];
    if (dn_expand(ns_msg_base(msg), ns_msg_end(msg), rd + 6, target,
                  sizeof target) < 0) {
      continue;
    }
    s.target = absl::StrCat(target, ".");
    out.push_back(s);
  }
  std::stable_sort(out.begin(), out.end(), [](const Srv& a, const Srv& b) {
    return a.priority < b.priority;
  });
  return out;
}

std::string Service(bool https, const std::string& service_name) {
  std::string s = https ? "etcd-client-ssl" : "etcd-client";
  if (!service_name.empty()) s = absl::StrCat(s, "-", service_name);
  return s;
}

}  // namespace

absl::StatusOr<std::vector<std::string>> DiscoverEndpoints(
    const std::string& domain, const std::string& service_name) {
  std::vector<std::string> eps;
  absl::Status errs[2];
  for (int https = 1; https >= 0; --https) {
    std::string name = absl::StrCat("_", Service(https == 1, service_name),
                                    "._tcp.", domain);
    auto srvs = LookupSrv(name);
    if (!srvs.ok()) {
      errs[https] = srvs.status();
      continue;
    }
    for (const Srv& s : *srvs) {
      eps.push_back(absl::StrCat(https == 1 ? "https://" : "http://", s.target,
                                 ":", s.port));
    }
  }
  if (!errs[0].ok() && !errs[1].ok()) {
    return absl::NotFoundError(absl::StrCat("dns lookup errors: ",
                                            errs[1].message(), " and ",
                                            errs[0].message()));
  }
  return eps;
}

}  // namespace detcd::ctl
