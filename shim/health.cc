#include "shim/health.h"

#include <algorithm>
#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "nlohmann/json.hpp"
#include "shim/log.h"

namespace detcd::shim {
namespace {

int HexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Go's QueryUnescape; a malformed escape makes Go drop the pair, so it
// yields nullopt here.
std::optional<std::string> Unescape(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '+') {
      out.push_back(' ');
    } else if (s[i] == '%') {
      if (i + 2 >= s.size()) return std::nullopt;
      int hi = HexDigit(s[i + 1]), lo = HexDigit(s[i + 2]);
      if (hi < 0 || lo < 0) return std::nullopt;
      out.push_back(static_cast<char>(hi * 16 + lo));
      i += 2;
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

// Each decoded key=value pair of the query, in order.
std::vector<std::pair<std::string, std::string>> ParseQuery(
    std::string_view query) {
  std::vector<std::pair<std::string, std::string>> out;
  while (!query.empty()) {
    const size_t amp = query.find('&');
    std::string_view part = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view()
                                          : query.substr(amp + 1);
    if (part.empty()) continue;
    std::string_view k = part, v;
    if (size_t eq = part.find('='); eq != std::string_view::npos) {
      k = part.substr(0, eq);
      v = part.substr(eq + 1);
    }
    auto dk = Unescape(k), dv = Unescape(v);
    if (!dk || !dv) continue;
    out.emplace_back(*std::move(dk), *std::move(dv));
  }
  return out;
}

HttpResponse MethodNotAllowed() {
  HttpResponse out;
  out.status = 405;
  out.headers.push_back({"Allow", "GET"});
  out.headers.push_back({"X-Content-Type-Options", "nosniff"});
  out.body = "Method Not Allowed\n";
  return out;
}

// Go's http.Error: text/plain, nosniff, the text and a newline.
HttpResponse Error(int status, std::string text) {
  HttpResponse out;
  out.status = status;
  out.headers.push_back({"X-Content-Type-Options", "nosniff"});
  out.body = std::move(text) + "\n";
  return out;
}

}  // namespace

std::vector<std::string> QueryValues(std::string_view query,
                                     std::string_view key) {
  std::vector<std::string> out;
  for (auto& [k, v] : ParseQuery(query)) {
    if (k == key) out.push_back(std::move(v));
  }
  return out;
}

bool QueryHas(std::string_view query, std::string_view key) {
  for (const auto& kv : ParseQuery(query)) {
    if (kv.first == key) return true;
  }
  return false;
}

HealthEndpoints::HealthEndpoints(HealthSource source, metrics::Registry& r)
    : src_(std::move(source)),
      success_(r.NewCounter("etcd_server_health_success",
                            "The total number of successful health checks")),
      failures_(r.NewCounter("etcd_server_health_failures",
                             "The total number of failed health checks")),
      check_gauge_(r.NewGaugeFamily("etcd_server_healthcheck",
                                    "The result of each kind of healthcheck.",
                                    {"type", "name"})),
      check_total_(
          r.NewCounterFamily("etcd_server_healthchecks_total",
                             "The total number of each kind of healthcheck.",
                             {"type", "name", "status"})) {
  HealthSource* s = &src_;
  Check serializable{"serializable_read", [s] { return s->read(true); }};
  Check linearizable{"linearizable_read", [s] { return s->read(false); }};
  Check corruption{
      "data_corruption", [s] {
        for (const std::string& a : s->alarms()) {
          if (a == "CORRUPT") {
            return absl::FailedPreconditionError("alarm activated: CORRUPT");
          }
        }
        return absl::OkStatus();
      }};
  livez_ = {serializable};
  readyz_ = {corruption, serializable, linearizable};
}

std::optional<HttpResponse> HealthEndpoints::Serve(const HttpRequest& req) {
  if (req.path == "/health") {
    if (req.method != "GET") {
      DLOG_WARN("/health error", {{"status-code", 405}});
      return MethodNotAllowed();
    }
    return Health(req);
  }
  for (const auto* type : {"livez", "readyz"}) {
    const std::vector<Check>& checks =
        std::string_view(type) == "livez" ? livez_ : readyz_;
    const std::string root = absl::StrCat("/", type);
    std::string only;
    if (req.path != root) {
      // A sub path names one check: /readyz/linearizable_read.
      if (req.path.rfind(root + "/", 0) != 0) continue;
      only = req.path.substr(root.size() + 1);
      auto it = std::find_if(checks.begin(), checks.end(),
                             [&](const Check& c) { return c.name == only; });
      if (it == checks.end()) continue;  // Go's mux: 404
    }
    if (req.method != "GET") {
      DLOG_WARN("Health request error",
                {{"path", req.path}, {"status-code", 405}});
      return MethodNotAllowed();
    }
    return Probe(type, checks, only, req);
  }
  return std::nullopt;
}

HttpResponse HealthEndpoints::Health(const HttpRequest& req) {
  std::set<std::string> excluded;
  for (std::string& v : QueryValues(req.query, "exclude")) {
    if (!v.empty()) excluded.insert(std::move(v));
  }
  std::vector<std::string> serializable_values =
      QueryValues(req.query, "serializable");
  // Go's Query().Get: the first value.
  const bool serializable =
      !serializable_values.empty() && serializable_values[0] == "true";

  std::string reason;
  for (const std::string& a : src_.alarms()) {
    if (excluded.contains(a)) continue;
    reason = (a == "NOSPACE" || a == "CORRUPT") ? absl::StrCat("ALARM ", a)
                                                : "ALARM UNKNOWN";
    DLOG_WARN("serving /health false due to an alarm",
              {{"alarm", absl::StrCat("alarm:", a)}});
    break;
  }
  if (reason.empty() && !serializable && !src_.has_leader()) {
    reason = "RAFT NO LEADER";
    DLOG_WARN("serving /health false; no leader");
  }
  if (reason.empty()) {
    absl::Status s = src_.read(serializable);
    if (!s.ok()) {
      reason = absl::StrCat("RANGE ERROR:", s.message());
      DLOG_WARN("serving /health false; Range fails",
                {{"error", std::string(s.message())}});
    }
  }
  // etcd 3.4's body for a plain /health; 3.5's (with the reason) once a
  // 3.5 parameter is given.
  const bool with_reason =
      QueryHas(req.query, "exclude") || QueryHas(req.query, "serializable");
  nlohmann::json j;
  j["health"] = reason.empty() ? "true" : "false";
  if (with_reason) j["reason"] = reason;
  if (reason.empty()) {
    success_.Inc();
    HttpResponse out;
    // Go's sniffing of a JSON body without a declared type.
    out.body = j.dump();
    DLOG_DEBUG("/health OK", {{"status-code", 200}});
    return out;
  }
  failures_.Inc();
  DLOG_WARN("/health error", {{"output", j.dump()}, {"status-code", 503}});
  return Error(503, j.dump());
}

HttpResponse HealthEndpoints::Probe(const std::string& type,
                                    const std::vector<Check>& checks,
                                    const std::string& only,
                                    const HttpRequest& req) {
  std::vector<const Check*> run;
  if (!only.empty()) {
    for (const Check& c : checks) {
      if (c.name == only) run.push_back(&c);
    }
  } else {
    std::set<std::string> excluded;
    for (std::string& v : QueryValues(req.query, "exclude")) {
      if (!v.empty()) excluded.insert(std::move(v));
    }
    for (const Check& c : checks) {
      if (excluded.erase(c.name) == 0) run.push_back(&c);
    }
    if (!excluded.empty()) {
      std::vector<std::string> quoted;
      for (const std::string& e : excluded) {
        quoted.push_back(absl::StrCat("\"", e, "\""));
      }
      DLOG_WARN("some health checks cannot be excluded",
                {{"missing-health-checks", absl::StrJoin(quoted, ",")}});
    }
  }
  bool ok = true;
  std::string reason;
  for (const Check* c : run) {
    absl::Status s = c->run();
    const char* status = s.ok() ? "success" : "error";
    check_gauge_.WithLabels({type, c->name}).Set(s.ok() ? 1 : 0);
    check_total_.WithLabels({type, c->name, status}).Inc();
    if (s.ok()) {
      absl::StrAppend(&reason, "[+]", c->name, " ok\n");
    } else {
      ok = false;
      absl::StrAppend(&reason, "[-]", c->name, " failed: ", s.message(), "\n");
    }
  }
  const std::string path = req.path;
  if (!ok) {
    DLOG_ERROR("Health check error",
               {{"path", path}, {"reason", reason}, {"status-code", 503}});
    return Error(503, reason);
  }
  HttpResponse out;
  out.headers.push_back({"X-Content-Type-Options", "nosniff"});
  if (QueryHas(req.query, "verbose")) out.body = reason;
  out.body += "ok\n";
  DLOG_DEBUG("Health check OK",
             {{"path", path}, {"reason", reason}, {"status-code", 200}});
  return out;
}

}  // namespace detcd::shim
