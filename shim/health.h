// The health endpoints of a member's client URLs (and --listen-metrics-urls),
// with etcd 3.5's semantics so load balancers and Kubernetes probes written
// for etcd work unchanged:
//
//   GET /health[?exclude=ALARM...][&serializable=true]
//     200 {"health":"true"}            (etcd 3.4's body, for a plain /health)
//     503 {"health":"false"}\n
//     With 3.5's exclude or serializable parameter (any value), 3.5's body:
//     200 {"health":"true","reason":""}
//     503 {"health":"false","reason":"ALARM NOSPACE"}\n   (or "ALARM CORRUPT",
//         "RAFT NO LEADER", "RANGE ERROR:<error>"; the log says it too)
//     Checks, in order: active alarms not excluded by name; a leader (unless
//     serializable=true: a member answering local reads is healthy even
//     while cut off from the leader); a keys-only read, linearizable unless
//     serializable=true. Counted in etcd_server_health_success / _failures.
//
//   GET /livez, /readyz [?verbose][&exclude=CHECK...]
//   GET /livez/<check>, /readyz/<check>
//     livez runs serializable_read; readyz runs data_corruption (no CORRUPT
//     alarm), serializable_read and linearizable_read. 200 "ok\n" (with
//     ?verbose first one "[+]<check> ok" line per check); 503 with one line
//     per check ("[+]<check> ok" or "[-]<check> failed: <error>") always.
//     Excluding an unknown check is not an error (a warning is logged), as
//     in etcd. Each check sets etcd_server_healthcheck{type,name} (1 ok,
//     0 failed) and counts etcd_server_healthchecks_total{type,name,status}.
//
// Unlike etcd (whose checks live in a Go map), checks run and print in a
// fixed order: the order above.
//
// Any other method than GET is answered 405 with "Allow: GET".
#ifndef DETCD_SHIM_HEALTH_H_
#define DETCD_SHIM_HEALTH_H_

#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "shim/http.h"
#include "shim/metrics.h"

namespace detcd::shim {

// What the checks ask the member. Called on HTTP connection threads; each
// must be thread-safe and return in bounded time.
struct HealthSource {
  // Active alarms by etcd's enum name ("NOSPACE", "CORRUPT").
  std::function<std::vector<std::string>()> alarms;
  // Whether this member currently knows a leader.
  std::function<bool()> has_leader;
  // A keys-only, limit-1 read; its error as the client would see it
  // ("etcdserver: request timed out", ...). Must give up by itself.
  std::function<absl::Status(bool serializable)> read;
};

class HealthEndpoints {
 public:
  // Registers etcd's health metric families in `r`.
  HealthEndpoints(HealthSource source, metrics::Registry& r);
  HealthEndpoints(const HealthEndpoints&) = delete;
  HealthEndpoints& operator=(const HealthEndpoints&) = delete;

  // The response for a health path; nullopt for any other path.
  std::optional<HttpResponse> Serve(const HttpRequest& req);

 private:
  struct Check {
    std::string name;
    std::function<absl::Status()> run;
  };
  HttpResponse Health(const HttpRequest& req);
  HttpResponse Probe(const std::string& type, const std::vector<Check>& checks,
                     const std::string& only, const HttpRequest& req);

  HealthSource src_;
  metrics::Counter& success_;
  metrics::Counter& failures_;
  metrics::Family<metrics::Gauge>& check_gauge_;
  metrics::Family<metrics::Counter>& check_total_;
  std::vector<Check> livez_;
  std::vector<Check> readyz_;
};

// The values of `key` in a URL query string ("a=1&b&a=2" -> {"1", "2"} for
// "a", {""} for "b"), percent-decoded as Go's url.ParseQuery ('+' is a
// space). Empty when the key is absent.
std::vector<std::string> QueryValues(std::string_view query,
                                     std::string_view key);
// Whether `key` appears in the query at all (with or without a value).
bool QueryHas(std::string_view query, std::string_view key);

}  // namespace detcd::shim

#endif  // DETCD_SHIM_HEALTH_H_
