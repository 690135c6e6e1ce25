#include "detcd/srv.h"

#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <netdb.h>
#include <netinet/in.h>
#include <resolv.h>

#include <algorithm>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace detcd::client {
namespace {

// The first configured name server as Go names it in errors ("ip:53").
std::string FirstServer(const struct __res_state& st) {
  if (st.nscount <= 0) return "";
  char buf[INET6_ADDRSTRLEN];
  const sockaddr_in& v4 = st.nsaddr_list[0];
  if (v4.sin_family == AF_INET &&
      inet_ntop(AF_INET, &v4.sin_addr, buf, sizeof buf) != nullptr) {
    return absl::StrCat(buf, ":", ntohs(v4.sin_port));
  }
  const sockaddr_in6* v6 = st._u._ext.nsaddrs[0];
  if (v6 != nullptr && v6->sin6_family == AF_INET6 &&
      inet_ntop(AF_INET6, &v6->sin6_addr, buf, sizeof buf) != nullptr) {
    return absl::StrCat("[", buf, "]:", ntohs(v6->sin6_port));
  }
  return "";
}

absl::Status DnsError(const std::string& name, const std::string& server,
                      const char* what) {
  std::string text = absl::StrCat("lookup ", name);
  if (!server.empty()) absl::StrAppend(&text, " on ", server);
  absl::StrAppend(&text, ": ", what);
  return absl::NotFoundError(text);
}

// Within one priority, RFC 2782's weighted order: each slot is drawn from
// the records left with probability proportional to their weight.
void ShuffleByWeight(std::vector<SrvRecord>::iterator first,
                     std::vector<SrvRecord>::iterator last) {
  thread_local std::mt19937 rng{std::random_device{}()};
  int sum = 0;
  for (auto it = first; it != last; ++it) sum += it->weight;
  while (sum > 0 && last - first > 1) {
    const int pick = std::uniform_int_distribution<int>(0, sum - 1)(rng);
    int acc = 0;
    for (auto it = first; it != last; ++it) {
      acc += it->weight;
      if (acc > pick) {
        std::iter_swap(first, it);
        break;
      }
    }
    sum -= first->weight;
    ++first;
  }
}

}  // namespace

absl::StatusOr<std::vector<SrvRecord>> LookupSrv(absl::string_view service,
                                                 absl::string_view proto,
                                                 absl::string_view domain) {
  const std::string name = absl::StrCat("_", service, "._", proto, ".", domain);
  struct __res_state st;
  std::memset(&st, 0, sizeof st);
  if (res_ninit(&st) != 0) {
    res_nclose(&st);  // frees what a partial init allocated
    return absl::UnavailableError(absl::StrCat("lookup ", name,
                                               ": cannot read the resolver "
                                               "configuration"));
  }
  const std::string server = FirstServer(st);
  std::vector<unsigned char> answer(NS_MAXMSG);
  const int len = res_nsearch(&st, name.c_str(), ns_c_in, ns_t_srv,
                              answer.data(), static_cast<int>(answer.size()));
  const int herr = st.res_h_errno;
  res_nclose(&st);
  if (len < 0) {
    switch (herr) {
      case HOST_NOT_FOUND:
      case NO_DATA:
        return DnsError(name, server, "no such host");
      case TRY_AGAIN:
        return DnsError(name, server, "server misbehaving");
      default:
        return DnsError(name, server, "i/o timeout");
    }
  }
  ns_msg msg;
  if (ns_initparse(answer.data(), len, &msg) != 0) {
    return DnsError(name, server, "cannot unmarshal DNS message");
  }
  std::vector<SrvRecord> out;
  const int n = ns_msg_count(msg, ns_s_an);
  for (int i = 0; i < n; ++i) {
    ns_rr rr;
    if (ns_parserr(&msg, ns_s_an, i, &rr) != 0) continue;
    if (ns_rr_type(rr) != ns_t_srv || ns_rr_rdlen(rr) < 7) continue;
    const unsigned char* rd = ns_rr_rdata(rr);
    SrvRecord s;
    s.priority = ns_get16(rd);
    s.weight = ns_get16(rd + 2);
    s.port = ns_get16(rd + 4);
    char target[NS_MAXDNAME];
    if (dn_expand(ns_msg_base(msg), ns_msg_end(msg), rd + 6, target,
                  sizeof target) < 0) {
      continue;
    }
    s.target = absl::StrCat(target, ".");
    out.push_back(std::move(s));
  }
  if (out.empty()) return DnsError(name, server, "no such host");
  std::sort(out.begin(), out.end(), [](const SrvRecord& a, const SrvRecord& b) {
    return a.priority != b.priority ? a.priority < b.priority
                                    : a.weight < b.weight;
  });
  for (auto it = out.begin(); it != out.end();) {
    auto end = std::find_if(it, out.end(), [&](const SrvRecord& r) {
      return r.priority != it->priority;
    });
    ShuffleByWeight(it, end);
    it = end;
  }
  return out;
}

std::string SrvServiceName(absl::string_view service,
                           absl::string_view service_name,
                           absl::string_view scheme) {
  std::string s(service);
  if (scheme == "https") s += "-ssl";
  if (!service_name.empty()) absl::StrAppend(&s, "-", service_name);
  return s;
}

absl::StatusOr<std::vector<std::string>> SrvClientEndpoints(
    absl::string_view domain, absl::string_view service_name) {
  std::vector<std::string> endpoints;
  absl::Status errs[2];
  const char* schemes[2] = {"https", "http"};
  for (int i = 0; i < 2; ++i) {
    auto records = LookupSrv(
        SrvServiceName("etcd-client", service_name, schemes[i]), "tcp", domain);
    if (!records.ok()) {
      errs[i] = records.status();
      continue;
    }
    for (const SrvRecord& r : *records) {
      endpoints.push_back(
          absl::StrCat(schemes[i], "://", r.target, ":", r.port));
    }
  }
  if (!errs[0].ok() && !errs[1].ok()) {
    return absl::NotFoundError(absl::StrCat(
        "dns lookup errors: ", errs[0].message(), " and ", errs[1].message()));
  }
  return endpoints;
}

}  // namespace detcd::client
