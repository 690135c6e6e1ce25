#include "shim/discovery.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "detcd/client.h"
#include "detcd/srv.h"
#include "nlohmann/json.hpp"
#include "shim/log.h"

namespace detcd::shim {
namespace {

// etcd's discovery errors (v2discovery / v3discovery), by text.
constexpr char kErrInvalidUrl[] = "discovery: invalid URL";
constexpr char kErrInvalidPeerUrl[] = "discovery: invalid peer URL";
constexpr char kErrBadSizeKey[] = "discovery: size key is bad";
constexpr char kErrSizeNotFound[] = "discovery: size key not found";
constexpr char kErrDuplicateId[] = "discovery: found duplicate id";
constexpr char kErrDuplicateName[] = "discovery: found duplicate name";
constexpr char kErrFullCluster[] = "discovery: cluster is full";
constexpr char kErrBadEndpoint[] = "discovery: bad discovery endpoint";
// Go's client.ErrInvalidJSON.
constexpr char kErrInvalidJson[] =
    "client: response is invalid json. The endpoint is probably not valid "
    "etcd cluster endpoint";

// Bounds on what a discovery service may send us.
constexpr size_t kMaxReplyBytes = 16 << 20;
constexpr uint64_t kMaxClusterSize = 1 << 16;
// Go's client.DefaultRequestTimeout and the v2 discovery transport's dial
// timeout.
constexpr int64_t kV2RequestTimeoutMs = 5000;
constexpr int64_t kV2DialTimeoutMs = 30000;

std::string IdHex(uint64_t id) { return absl::StrFormat("%x", id); }

absl::Status Err(absl::string_view text) {
  return absl::FailedPreconditionError(text);
}

// --------------------------------------------------------------------------
// While discovery waits (possibly for a long time), SIGTERM / SIGINT must
// still stop the process, as they stop etcd then. detcd_main blocks both
// signals for its own sigwait, which only starts once the server runs; this
// watch notices them pending and lets the default action (death by the
// signal) happen.

class StopSignalWatch {
 public:
  StopSignalWatch() : thread_([this] { Run(); }) {}
  ~StopSignalWatch() {
    done_.Notify();
    thread_.join();
  }
  StopSignalWatch(const StopSignalWatch&) = delete;
  StopSignalWatch& operator=(const StopSignalWatch&) = delete;

 private:
  void Run() {
    while (!done_.WaitForNotificationWithTimeout(absl::Milliseconds(100))) {
      sigset_t pending;
      sigemptyset(&pending);
      if (sigpending(&pending) != 0) continue;
      for (int sig : {SIGTERM, SIGINT}) {
        if (sigismember(&pending, sig) != 1) continue;
        DLOG_INFO("received signal; shutting down",
                  {{"signal",
                    std::string(sig == SIGINT ? "interrupt" : "terminated")}});
        signal(sig, SIG_DFL);
        sigset_t one;
        sigemptyset(&one);
        sigaddset(&one, sig);
        pthread_sigmask(SIG_UNBLOCK, &one, nullptr);  // delivered: we die
      }
    }
  }

  absl::Notification done_;
  std::thread thread_;
};

// etcd's logAndBackoffForRetry: 2^n seconds, n capped at 8.
void BackoffForRetry(uint32_t* retries, absl::string_view url,
                     absl::string_view step) {
  ++*retries;
  const uint32_t n = std::min<uint32_t>(*retries, 8);
  const absl::Duration wait = absl::Seconds(int64_t{1} << n);
  DLOG_INFO("retry connecting to discovery service",
            {{"url", std::string(url)},
             {"reason", std::string(step)},
             {"backoff", wait}});
  absl::SleepFor(wait);
}

// types.URLsMap{name: urls}.String(): "name=url" pairs, sorted.
std::string SelfEntry(const std::string& name, const std::vector<Url>& urls) {
  std::vector<std::string> pairs;
  for (const Url& u : urls) pairs.push_back(absl::StrCat(name, "=", u.raw));
  std::sort(pairs.begin(), pairs.end());
  return absl::StrJoin(pairs, ",");
}

// types.URLsMap.String() of a whole cluster.
std::string ClusterText(const std::vector<ClusterMember>& members) {
  std::vector<std::string> pairs;
  for (const ClusterMember& m : members) {
    for (const Url& u : m.peer_urls) {
      pairs.push_back(absl::StrCat(m.name, "=", u.raw));
    }
  }
  std::sort(pairs.begin(), pairs.end());
  return absl::StrJoin(pairs, ",");
}

// etcdserver's checkDuplicateURL.
bool HasDuplicateUrl(const std::vector<ClusterMember>& members) {
  std::set<std::string> seen;
  for (const ClusterMember& m : members) {
    for (const Url& u : m.peer_urls) {
      if (!seen.insert(u.raw).second) return true;
    }
  }
  return false;
}

// Go's path.Join("/", parts...) for key paths: cleaned, rooted.
std::string JoinPath(std::initializer_list<absl::string_view> parts) {
  std::vector<std::string> out;
  for (absl::string_view p : parts) {
    for (absl::string_view seg : absl::StrSplit(p, '/')) {
      if (seg.empty() || seg == ".") continue;
      if (seg == "..") {
        if (!out.empty()) out.pop_back();
        continue;
      }
      out.emplace_back(seg);
    }
  }
  return absl::StrCat("/", absl::StrJoin(out, "/"));
}

absl::string_view BaseName(absl::string_view key) {
  while (key.size() > 1 && key.back() == '/') key.remove_suffix(1);
  const size_t slash = key.rfind('/');
  return slash == absl::string_view::npos ? key : key.substr(slash + 1);
}

// fmt's %q of a []string.
std::string QuoteList(const std::vector<std::string>& v) {
  std::vector<std::string> q;
  for (const std::string& s : v) q.push_back(absl::StrCat("\"", s, "\""));
  return absl::StrCat("[", absl::StrJoin(q, " "), "]");
}

std::string JoinHostPort(absl::string_view host, int port) {
  if (absl::StrContains(host, ':')) return absl::StrCat("[", host, "]:", port);
  return absl::StrCat(host, ":", port);
}

// net.ResolveTCPAddr("tcp", host:port).String(): the first IPv4 address if
// there is one (Go prefers IPv4 for "tcp"), else the first address.
absl::StatusOr<std::string> ResolveTcpAddr(absl::string_view host, int port) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  const std::string h(host);
  const int rc = getaddrinfo(h.c_str(), nullptr, &hints, &res);
  if (rc != 0) {
    const char* what = (rc == EAI_NONAME || rc == EAI_NODATA)
                           ? "no such host"
                           : gai_strerror(rc);
    return absl::NotFoundError(absl::StrCat("lookup ", host, ": ", what));
  }
  const addrinfo* pick = nullptr;
  for (const addrinfo* a = res; a != nullptr; a = a->ai_next) {
    if (a->ai_family == AF_INET) {
      pick = a;
      break;
    }
    if (pick == nullptr && a->ai_family == AF_INET6) pick = a;
  }
  std::string out;
  char buf[INET6_ADDRSTRLEN] = {0};
  if (pick != nullptr && pick->ai_family == AF_INET) {
    inet_ntop(AF_INET,
              &reinterpret_cast<const sockaddr_in*>(pick->ai_addr)->sin_addr,
              buf, sizeof buf);
    out = JoinHostPort(buf, port);
  } else if (pick != nullptr) {
    inet_ntop(AF_INET6,
              &reinterpret_cast<const sockaddr_in6*>(pick->ai_addr)->sin6_addr,
              buf, sizeof buf);
    out = JoinHostPort(buf, port);
  }
  freeaddrinfo(res);
  if (out.empty()) {
    return absl::NotFoundError(absl::StrCat("lookup ", host, ": no such host"));
  }
  return out;
}

// etcdmain's reaction to a failed discovery (URL or token): its warnings.
// `wrapped` is the DiscoveryError's text, `sentinel` the discovery error.
void LogDiscoveryFailure(const ServerConfig& c, const std::string& token,
                         const std::string& sentinel,
                         const std::string& wrapped) {
  if (sentinel != kErrFullCluster) {
    DLOG_WARN("failed to start etcd", {{"error", wrapped}});
  }
  if (sentinel == kErrDuplicateId) {
    DLOG_WARN(
        "member has been registered with discovery service",
        {{"name", c.name}, {"discovery-token", token}, {"error", sentinel}});
    DLOG_WARN("but could not find valid cluster configuration",
              {{"data-dir", c.data_dir}});
    DLOG_WARN("check data dir if previous bootstrap succeeded");
    DLOG_WARN("or use a new discovery token if previous bootstrap failed");
  } else if (sentinel == kErrDuplicateName) {
    DLOG_WARN("member with duplicated name has already been registered",
              {{"discovery-token", token}, {"error", sentinel}});
    DLOG_WARN("cURL the discovery token URL for details");
    DLOG_WARN(
        "do not reuse discovery token; generate a new one to bootstrap "
        "a cluster");
  } else {
    DLOG_WARN("failed to bootstrap; discovery token was already used",
              {{"discovery-token", token}, {"error", wrapped}});
    DLOG_WARN(
        "do not reuse discovery token; generate a new one to bootstrap "
        "a cluster");
  }
}

// --------------------------------------------------------------------------
// v2 discovery: etcd's v2 keys API over HTTP (libcurl).

void CurlGlobalInit() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

struct V2Node {
  std::string key, value;
  uint64_t created_index = 0, modified_index = 0;
};

V2Node NodeFromJson(const nlohmann::json& j) {
  V2Node n;
  if (!j.is_object()) return n;
  if (j.contains("key") && j["key"].is_string()) {
    n.key = j["key"].get<std::string>();
  }
  if (j.contains("value") && j["value"].is_string()) {
    n.value = j["value"].get<std::string>();
  }
  if (j.contains("createdIndex") && j["createdIndex"].is_number_unsigned()) {
    n.created_index = j["createdIndex"].get<uint64_t>();
  }
  if (j.contains("modifiedIndex") && j["modifiedIndex"].is_number_unsigned()) {
    n.modified_index = j["modifiedIndex"].get<uint64_t>();
  }
  return n;
}

// One answer of the keys API, classified as Go's client classifies it.
struct V2Reply {
  enum class Kind {
    kOk,           // 200/201 with a JSON body
    kUnavailable,  // no answer or 5xx: Go's ClusterError (retried)
    kEtcdError,    // a JSON client.Error (errorCode ...)
    kFailed,       // anything else (invalid JSON, timeout)
  };
  Kind kind = Kind::kFailed;
  nlohmann::json body;
  uint64_t index = 0;  // X-Etcd-Index
  int error_code = 0;
  std::string error;   // the error's text, as Go's error prints
  std::string detail;  // ClusterError.Detail()
};

class V2Keys {
 public:
  // durl: the discovery URL; its path is the token (etcd's newDiscovery).
  static absl::StatusOr<V2Keys> New(const std::string& durl,
                                    const std::string& dproxy) {
    V2Keys k;
    const size_t scheme_end = durl.find("://");
    if (scheme_end == std::string::npos || scheme_end == 0) {
      return Err(absl::StrCat("parse \"", durl, "\": missing protocol scheme"));
    }
    const size_t path_start = durl.find('/', scheme_end + 3);
    k.endpoint_ = durl.substr(0, path_start);
    k.token_ = path_start == std::string::npos ? "" : durl.substr(path_start);
    if (const size_t q = k.token_.find_first_of("?#"); q != std::string::npos) {
      k.token_.resize(q);
    }
    k.url_ = k.endpoint_;
    if (!dproxy.empty()) {
      // etcd's newProxyFunc: a proxy without an http(s) scheme gets http://.
      k.proxy_ =
          absl::StartsWith(dproxy, "http") && absl::StrContains(dproxy, "://")
              ? dproxy
              : absl::StrCat("http://", dproxy);
      DLOG_INFO("running proxy with discovery", {{"proxy-url", k.proxy_}});
    }
    return k;
  }

  const std::string& token() const { return token_; }
  const std::string& url() const { return url_; }

  V2Reply Get(const std::string& key) {
    return Do("GET", key, "quorum=false&recursive=false&sorted=false", "",
              false);
  }
  V2Reply Create(const std::string& key, const std::string& value) {
    return Do("PUT", key, "prevExist=false",
              absl::StrCat("value=", Escape(value)), false);
  }
  // A long poll for the first change at or after wait_index.
  V2Reply Watch(const std::string& key, uint64_t wait_index, bool recursive) {
    const std::string q = absl::StrCat(recursive ? "recursive=true&" : "",
                                       "wait=true&waitIndex=", wait_index);
    for (;;) {
      V2Reply r = Do("GET", key, q, "", true);
      // Go's watcher asks again after an empty body.
      if (r.kind == V2Reply::Kind::kFailed && r.error == "empty body") {
        continue;
      }
      return r;
    }
  }

 private:
  static std::string Escape(const std::string& s) {
    std::string out;
    for (unsigned char ch : s) {
      if (absl::ascii_isalnum(ch) || ch == '-' || ch == '_' || ch == '.' ||
          ch == '~') {
        out.push_back(static_cast<char>(ch));
      } else if (ch == ' ') {
        out.push_back('+');
      } else {
        absl::StrAppendFormat(&out, "%%%02X", ch);
      }
    }
    return out;
  }

  struct Sink {
    std::string body;
    std::string etcd_index;
    bool overflow = false;
  };
  static size_t OnBody(char* p, size_t size, size_t n, void* user) {
    auto* s = static_cast<Sink*>(user);
    if (s->body.size() + size * n > kMaxReplyBytes) {
      s->overflow = true;
      return 0;
    }
    s->body.append(p, size * n);
    return size * n;
  }
  static size_t OnHeader(char* p, size_t size, size_t n, void* user) {
    auto* s = static_cast<Sink*>(user);
    absl::string_view line(p, size * n);
    constexpr absl::string_view kName = "x-etcd-index:";
    if (line.size() > kName.size() &&
        absl::EqualsIgnoreCase(line.substr(0, kName.size()), kName)) {
      s->etcd_index =
          std::string(absl::StripAsciiWhitespace(line.substr(kName.size())));
    }
    return size * n;
  }

  V2Reply Do(const char* method, const std::string& key,
             const std::string& query, const std::string& form, bool wait) {
    CurlGlobalInit();
    V2Reply r;
    const std::string url = absl::StrCat(endpoint_, key, "?", query);
    std::unique_ptr<CURL, void (*)(CURL*)> h(curl_easy_init(),
                                             curl_easy_cleanup);
    if (h == nullptr) {
      r.kind = V2Reply::Kind::kFailed;
      r.error = "curl_easy_init failed";
      return r;
    }
    Sink sink;
    char errbuf[CURL_ERROR_SIZE] = {0};
    curl_slist* headers = nullptr;
    CURL* c = h.get();
    curl_easy_setopt(c, CURLOPT_URL, url.c_str());
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, &V2Keys::OnBody);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &sink);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, &V2Keys::OnHeader);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &sink);
    // etcd's discovery uses --discovery-proxy and nothing else (its
    // transport ignores HTTP_PROXY & co.): "" turns curl's off too.
    curl_easy_setopt(c, CURLOPT_PROXY, proxy_.c_str());
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, kV2DialTimeoutMs);
    if (!wait) curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, kV2RequestTimeoutMs);
    if (absl::string_view(method) == "PUT") {
      curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, "PUT");
      curl_easy_setopt(c, CURLOPT_POSTFIELDS, form.c_str());
      curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE,
                       static_cast<long>(form.size()));
      headers = curl_slist_append(
          headers, "Content-Type: application/x-www-form-urlencoded");
      curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
    }
    const CURLcode rc = curl_easy_perform(c);
    long code = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
    curl_slist_free_all(headers);
    const std::string go_method =
        absl::string_view(method) == "PUT" ? "Put" : "Get";
    if (rc == CURLE_OPERATION_TIMEDOUT) {
      r.kind = V2Reply::Kind::kFailed;
      r.error = "context deadline exceeded";
      return r;
    }
    if (rc != CURLE_OK || sink.overflow) {
      const std::string why =
          sink.overflow
              ? "reply too large"
              : (errbuf[0] != 0 ? std::string(errbuf) : curl_easy_strerror(rc));
      r.kind = V2Reply::Kind::kUnavailable;
      r.detail =
          absl::StrCat("error #0: ", go_method, " \"", url, "\": ", why, "\n");
      r.error = absl::StrCat(
          "client: etcd cluster is unavailable or misconfigured; ", r.detail);
      return r;
    }
    if (code / 100 == 5) {
      r.kind = V2Reply::Kind::kUnavailable;
      r.detail =
          absl::StrCat("error #0: ",
                       code == 500 || code == 503
                           ? absl::StrCat("client: etcd member ", endpoint_,
                                          " has no leader")
                           : absl::StrCat("client: etcd member ", endpoint_,
                                          " returns server error [", code, "]"),
                       "\n");
      r.error = absl::StrCat(
          "client: etcd cluster is unavailable or misconfigured; ", r.detail);
      return r;
    }
    if (!sink.etcd_index.empty()) {
      (void)absl::SimpleAtoi(sink.etcd_index, &r.index);
    }
    nlohmann::json j = nlohmann::json::parse(sink.body, nullptr, false);
    if (code == 200 || code == 201) {
      if (sink.body.empty()) {
        r.kind = V2Reply::Kind::kFailed;
        r.error = "empty body";
        return r;
      }
      if (j.is_discarded() || !j.is_object()) {
        r.kind = V2Reply::Kind::kFailed;
        r.error = kErrInvalidJson;
        return r;
      }
      r.kind = V2Reply::Kind::kOk;
      r.body = std::move(j);
      return r;
    }
    if (j.is_discarded() || !j.is_object() || !j.contains("errorCode") ||
        !j["errorCode"].is_number_integer()) {
      r.kind = V2Reply::Kind::kFailed;
      r.error = kErrInvalidJson;
      return r;
    }
    r.kind = V2Reply::Kind::kEtcdError;
    r.error_code = j["errorCode"].get<int>();
    const std::string message =
        j.contains("message") && j["message"].is_string()
            ? j["message"].get<std::string>()
            : "";
    const std::string cause = j.contains("cause") && j["cause"].is_string()
                                  ? j["cause"].get<std::string>()
                                  : "";
    const uint64_t index =
        j.contains("index") && j["index"].is_number_unsigned()
            ? j["index"].get<uint64_t>()
            : 0;
    r.error = absl::StrCat(r.error_code, ": ", message, " (", cause, ") [",
                           index, "]");
    return r;
  }

  std::string endpoint_;  // scheme://host[:port]
  std::string token_;     // the URL's path
  std::string url_;       // for logs: the URL without its path
  std::string proxy_;
};

class V2Discovery {
 public:
  V2Discovery(V2Keys keys, uint64_t id)
      : keys_(std::move(keys)),
        self_key_(JoinPath({keys_.token(), IdHex(id)})) {}

  // etcd's joinCluster: the cluster string, or an error whose text is one
  // of the discovery errors (or a client error).
  absl::StatusOr<std::string> Join(const std::string& config) {
    Check fast;
    if (absl::Status s = CheckCluster(&fast); !s.ok()) return s;
    if (absl::Status s = CreateSelf(config); !s.ok()) return s;
    Check now;
    if (absl::Status s = CheckCluster(&now); !s.ok()) return s;
    auto all = WaitNodes(std::move(now));
    if (!all.ok()) return all.status();
    return NodesToCluster(*all, size_);
  }

 private:
  struct Check {
    std::vector<V2Node> nodes;
    uint64_t index = 0;
  };

  void WarnUnavailable(const std::string& path, const V2Reply& r) {
    DLOG_WARN("failed to get from discovery server",
              {{"discovery-url", keys_.url()},
               {"path", path},
               {"error", r.error},
               {"err-detail", r.detail}});
  }

  absl::Status CheckCluster(Check* out) {
    const std::string config_key = JoinPath({keys_.token(), "_config"});
    for (;;) {
      const std::string size_key = config_key + "/size";
      V2Reply r = keys_.Get(size_key);
      if (r.kind == V2Reply::Kind::kUnavailable) {
        WarnUnavailable(size_key, r);
        BackoffForRetry(&retries_, keys_.url(), "cluster status check");
        continue;
      }
      if (r.kind == V2Reply::Kind::kFailed && r.error == kErrInvalidJson) {
        return Err(kErrBadEndpoint);
      }
      // etcd 3.4 means to turn "key not found" into "size key not found",
      // but its check never matches the client's error type, so the
      // client's error text ("100: Key not found (...) [N]") is what it
      // reports; so do we.
      if (r.kind != V2Reply::Kind::kOk) return Err(r.error);
      const V2Node size_node =
          NodeFromJson(r.body.value("node", nlohmann::json()));
      uint64_t size = 0;
      if (size_node.value.empty() ||
          !std::all_of(size_node.value.begin(), size_node.value.end(),
                       absl::ascii_isdigit) ||
          !absl::SimpleAtoi(size_node.value, &size)) {
        return Err(kErrBadSizeKey);
      }
      if (size > kMaxClusterSize) return Err(kErrBadSizeKey);
      size_ = size;

      V2Reply dir = keys_.Get(keys_.token());
      if (dir.kind == V2Reply::Kind::kUnavailable) {
        WarnUnavailable(keys_.token(), dir);
        BackoffForRetry(&retries_, keys_.url(), "cluster status check");
        continue;
      }
      if (dir.kind != V2Reply::Kind::kOk) return Err(dir.error);
      out->nodes.clear();
      out->index = dir.index;
      const nlohmann::json node = dir.body.value("node", nlohmann::json());
      if (node.is_object() && node.contains("nodes") &&
          node["nodes"].is_array()) {
        for (const nlohmann::json& n : node["nodes"]) {
          V2Node v = NodeFromJson(n);
          if (BaseName(v.key) != BaseName(config_key)) {
            out->nodes.push_back(std::move(v));
          }
        }
      }
      std::stable_sort(out->nodes.begin(), out->nodes.end(),
                       [](const V2Node& a, const V2Node& b) {
                         return a.created_index < b.created_index;
                       });
      // Our position: beyond the first `size` registrations the cluster
      // is full (size - 1 wraps for 0, as in etcd).
      for (size_t i = 0; i < out->nodes.size(); ++i) {
        if (BaseName(out->nodes[i].key) == BaseName(self_key_)) break;
        if (i >= size - 1) {
          out->nodes.resize(size);
          return Err(kErrFullCluster);
        }
      }
      return absl::OkStatus();
    }
  }

  absl::Status CreateSelf(const std::string& config) {
    V2Reply r = keys_.Create(self_key_, config);
    if (r.kind == V2Reply::Kind::kEtcdError && r.error_code == 105) {
      return Err(kErrDuplicateId);
    }
    if (r.kind != V2Reply::Kind::kOk) return Err(r.error);
    // Wait until our key shows on the server we talk to.
    const V2Node created = NodeFromJson(r.body.value("node", nlohmann::json()));
    V2Reply w = keys_.Watch(self_key_, created.created_index, false);
    if (w.kind != V2Reply::Kind::kOk) return Err(w.error);
    return absl::OkStatus();
  }

  absl::StatusOr<std::vector<V2Node>> WaitNodes(Check check) {
    for (;;) {
      std::vector<V2Node> all = std::move(check.nodes);
      if (all.size() > size_) all.resize(size_);
      for (const V2Node& n : all) {
        if (BaseName(n.key) == BaseName(self_key_)) {
          DLOG_INFO("found self from discovery server",
                    {{"discovery-url", keys_.url()},
                     {"self", std::string(BaseName(self_key_))}});
        } else {
          DLOG_INFO("found peer from discovery server",
                    {{"discovery-url", keys_.url()},
                     {"peer", std::string(BaseName(n.key))}});
        }
      }
      uint64_t wait_index = check.index + 1;
      bool retry = false;
      while (all.size() < size_) {
        DLOG_INFO("found peers from discovery server; waiting for more",
                  {{"discovery-url", keys_.url()},
                   {"found-peers", static_cast<int64_t>(all.size())},
                   {"needed-peers", static_cast<int64_t>(size_ - all.size())}});
        V2Reply r = keys_.Watch(keys_.token(), wait_index, true);
        if (r.kind == V2Reply::Kind::kUnavailable) {
          DLOG_ERROR(r.detail);
          retry = true;
          break;
        }
        if (r.kind != V2Reply::Kind::kOk) return Err(r.error);
        V2Node n = NodeFromJson(r.body.value("node", nlohmann::json()));
        wait_index = n.modified_index + 1;
        DLOG_INFO("found peer from discovery server",
                  {{"discovery-url", keys_.url()},
                   {"peer", std::string(BaseName(n.key))}});
        all.push_back(std::move(n));
      }
      if (!retry) {
        DLOG_INFO("found all needed peers from discovery server",
                  {{"discovery-url", keys_.url()},
                   {"found-peers", static_cast<int64_t>(all.size())}});
        return all;
      }
      // etcd's waitNodesRetry: back off, look again, wait again.
      BackoffForRetry(&retries_, keys_.url(), "waiting for other nodes");
      check = Check();
      if (absl::Status s = CheckCluster(&check); !s.ok()) return s;
    }
  }

  // etcd's nodesToCluster.
  static absl::StatusOr<std::string> NodesToCluster(
      const std::vector<V2Node>& nodes, uint64_t size) {
    std::vector<std::string> values;
    for (const V2Node& n : nodes) values.push_back(n.value);
    const std::string us = absl::StrJoin(values, ",");
    auto members = ParseClusterString(us);
    if (!members.ok()) return Err(kErrInvalidUrl);
    if (members->size() != size) return Err(kErrDuplicateName);
    return us;
  }

  V2Keys keys_;
  std::string self_key_;
  uint64_t size_ = 0;
  uint32_t retries_ = 0;
};

// --------------------------------------------------------------------------
// v3 discovery (etcd 3.6): the same protocol over the v3 API.

constexpr char kRegistryPrefix[] = "/_etcd/registry";

// clientv3.GetPrefixRangeEnd.
std::string PrefixEnd(const std::string& key) {
  std::string end = key;
  while (!end.empty()) {
    auto& last = reinterpret_cast<unsigned char&>(end.back());
    if (last < 0xff) {
      ++last;
      return end;
    }
    end.pop_back();
  }
  return std::string(1, '\0');
}

class V3Discovery {
 public:
  V3Discovery(const ServerConfig& c, uint64_t id)
      : cfg_(c),
        token_(c.discovery_token),
        size_key_(
            JoinPath({kRegistryPrefix, c.discovery_token, "_config/size"})),
        members_prefix_(
            JoinPath({kRegistryPrefix, c.discovery_token, "members"})),
        self_key_(JoinPath({members_prefix_, IdHex(id)})),
        request_timeout_(absl::Milliseconds(c.discovery_request_timeout_ms)) {}

  absl::StatusOr<std::string> Join(const std::string& config) {
    client::Config cc;
    cc.endpoints = cfg_.discovery_endpoints;
    cc.dial_timeout = absl::Milliseconds(cfg_.discovery_dial_timeout_ms);
    cc.keepalive_time = absl::Milliseconds(cfg_.discovery_keepalive_time_ms);
    cc.keepalive_timeout =
        absl::Milliseconds(cfg_.discovery_keepalive_timeout_ms);
    // clientv3's newTLSConfig: TLS when a file is given, when transport
    // security is asked for, or when verification is to be skipped.
    if (!cfg_.discovery_cert.empty() || !cfg_.discovery_key.empty() ||
        !cfg_.discovery_cacert.empty() || !cfg_.discovery_insecure_transport ||
        cfg_.discovery_insecure_skip_tls_verify) {
      client::TlsConfig tls;
      tls.cert_file = cfg_.discovery_cert;
      tls.key_file = cfg_.discovery_key;
      tls.ca_file = cfg_.discovery_cacert;
      tls.insecure_skip_verify = cfg_.discovery_insecure_skip_tls_verify;
      cc.tls = tls;
    }
    cc.username = cfg_.discovery_user;
    cc.password = cfg_.discovery_password;
    if (cc.password.empty()) {
      if (size_t colon = cc.username.find(':'); colon != std::string::npos) {
        cc.password = cc.username.substr(colon + 1);
        cc.username.resize(colon);
      }
    }
    auto cl = client::Client::New(cc);
    if (!cl.ok()) return cl.status();
    client_ = *std::move(cl);

    Members fast;
    if (absl::Status s = CheckCluster(&fast); !s.ok()) return s;
    RegisterSelf(config);
    Members now;
    if (absl::Status s = CheckCluster(&now); !s.ok()) return s;
    while (now.list.size() < size_) {
      if (absl::Status s = WaitPeers(&now); !s.ok()) return s;
    }
    DLOG_INFO("found all needed peers from discovery service",
              {{"clusterSize", static_cast<int64_t>(size_)},
               {"found-peers", static_cast<int64_t>(now.list.size())}});
    std::vector<std::string> values;
    for (const auto& m : now.list) {
      if (values.size() == size_) break;
      values.push_back(m.value);
    }
    const std::string us = absl::StrJoin(values, ",");
    auto members = ParseClusterString(us);
    if (!members.ok()) return Err(kErrInvalidPeerUrl);
    // etcd 3.6 would merge two registrations of one name into one member
    // with both URLs; refusing is safer and says why.
    if (members->size() != values.size()) return Err(kErrDuplicateName);
    return us;
  }

 private:
  struct Member {
    std::string key, value;
    int64_t create_revision = 0;
  };
  struct Members {
    std::vector<Member> list;  // by create revision
    int64_t revision = 0;

    // etcd's clusterInfo.add: the warning text, or "" when added.
    std::string Add(const std::string& prefix, std::string key,
                    std::string value, int64_t rev) {
      key = std::string(absl::StripAsciiWhitespace(key));
      value = std::string(absl::StripAsciiWhitespace(value));
      if (!absl::StartsWith(key, prefix)) return "invalid peer registry key";
      if (!absl::StrContains(value, '=')) {
        return "invalid peer info returned from discovery service";
      }
      for (const Member& m : list) {
        if (m.key == key) return "found duplicate peer from discovery service";
      }
      list.push_back(Member{std::move(key), std::move(value), rev});
      std::stable_sort(list.begin(), list.end(),
                       [](const Member& a, const Member& b) {
                         return a.create_revision < b.create_revision;
                       });
      return "";
    }
  };

  void Logged(const std::string& warning, const std::string& key,
              const std::string& value) {
    if (warning.empty()) {
      DLOG_INFO("found peer from discovery service",
                {{"memberKey", key}, {"memberInfo", value}});
    } else {
      DLOG_WARN(warning, {{"memberKey", key}, {"memberInfo", value}});
    }
  }

  void Retry(absl::string_view step) {
    BackoffForRetry(&retries_, absl::StrJoin(cfg_.discovery_endpoints, ","),
                    step);
  }

  absl::Status CheckCluster(Members* out) {
    for (;;) {
      etcdserverpb::RangeRequest size_req;
      size_req.set_key(size_key_);
      auto sr = client_->Range(size_req,
                               client::CallOptions::Timeout(request_timeout_));
      if (!sr.ok()) {
        DLOG_WARN("failed to get cluster size from discovery service",
                  {{"clusterSizeKey", size_key_},
                   {"error", std::string(sr.status().message())}});
        Retry("cluster status check");
        continue;
      }
      if (sr->kvs_size() == 0) return Err(kErrSizeNotFound);
      int64_t size = 0;
      if (!absl::SimpleAtoi(sr->kvs(0).value(), &size) || size <= 0 ||
          static_cast<uint64_t>(size) > kMaxClusterSize) {
        return Err(kErrBadSizeKey);
      }
      size_ = static_cast<uint64_t>(size);

      etcdserverpb::RangeRequest members_req;
      members_req.set_key(members_prefix_);
      members_req.set_range_end(PrefixEnd(members_prefix_));
      auto mr = client_->Range(members_req,
                               client::CallOptions::Timeout(request_timeout_));
      if (!mr.ok()) {
        DLOG_WARN("failed to get cluster members from discovery service",
                  {{"membersKeyPrefix", members_prefix_},
                   {"error", std::string(mr.status().message())}});
        Retry("cluster status check");
        continue;
      }
      *out = Members();
      out->revision = mr->header().revision();
      for (const auto& kv : mr->kvs()) {
        Logged(out->Add(members_prefix_, kv.key(), kv.value(),
                        kv.create_revision()),
               kv.key(), kv.value());
      }
      retries_ = 0;
      for (size_t i = 0; i < out->list.size(); ++i) {
        if (out->list[i].key == self_key_) break;
        if (i >= size_ - 1) return Err(kErrFullCluster);
      }
      return absl::OkStatus();
    }
  }

  void RegisterSelf(const std::string& config) {
    for (;;) {
      etcdserverpb::PutRequest put;
      put.set_key(self_key_);
      put.set_value(config);
      auto r =
          client_->Put(put, client::CallOptions::Timeout(request_timeout_));
      if (r.ok()) break;
      DLOG_WARN("failed to register members itself to the discovery service",
                {{"memberKey", self_key_},
                 {"error", std::string(r.status().message())}});
      Retry("register member itself");
    }
    retries_ = 0;
    DLOG_INFO("register member itself successfully",
              {{"memberKey", self_key_}, {"memberInfo", config}});
  }

  // etcd's waitPeers: watch the members' prefix after the revision read,
  // adding each registration, until there are enough. A watch that ends
  // early (the discovery service went away, or compacted) is followed by
  // a fresh read.
  absl::Status WaitPeers(Members* m) {
    DLOG_INFO("waiting for peers from discovery service",
              {{"clusterSize", static_cast<int64_t>(size_)},
               {"found-peers", static_cast<int64_t>(m->list.size())}});
    auto stream = client_->OpenWatch();
    bool progressed = false;
    if (stream.ok()) {
      etcdserverpb::WatchRequest req;
      auto* create = req.mutable_create_request();
      create->set_key(members_prefix_);
      create->set_range_end(PrefixEnd(members_prefix_));
      create->set_start_revision(m->revision + 1);
      if ((*stream)->Send(req)) {
        etcdserverpb::WatchResponse resp;
        while (m->list.size() < size_ && (*stream)->Read(&resp)) {
          if (resp.canceled() || resp.compact_revision() != 0) break;
          for (const auto& ev : resp.events()) {
            m->revision = std::max(m->revision, ev.kv().mod_revision());
            Logged(m->Add(members_prefix_, ev.kv().key(), ev.kv().value(),
                          ev.kv().create_revision()),
                   ev.kv().key(), ev.kv().value());
            progressed = true;
          }
        }
      }
      (*stream)->Cancel();
    }
    if (m->list.size() >= size_) return absl::OkStatus();
    if (!progressed) Retry("waiting for other nodes");
    Members fresh;
    if (absl::Status s = CheckCluster(&fresh); !s.ok()) return s;
    *m = std::move(fresh);
    return absl::OkStatus();
  }

  const ServerConfig& cfg_;
  std::string token_;
  std::string size_key_, members_prefix_, self_key_;
  absl::Duration request_timeout_;
  std::unique_ptr<client::Client> client_;
  uint64_t size_ = 0;
  uint32_t retries_ = 0;
};

// --------------------------------------------------------------------------
// DNS SRV.

// etcd's srv.GetCluster: "name=scheme://target:port" for each SRV record of
// _<service>._tcp.<domain>; the record whose address is one of this
// member's advertised peer URLs' gets our name, the others "0", "1", ...
absl::StatusOr<std::vector<std::string>> SrvGetCluster(
    absl::string_view scheme, const std::string& service,
    const std::string& name, const std::string& domain,
    const std::vector<Url>& apurls) {
  std::map<std::string, const Url*> tcp2ap;
  for (const Url& u : apurls) {
    auto addr = ResolveTcpAddr(u.host, u.port);
    if (!addr.ok()) return addr.status();
    tcp2ap[*addr] = &u;
  }
  auto wrap = [&](const absl::Status& s) {
    return Err(absl::StrCat("error querying DNS SRV records for _", service,
                            " ", s.message()));
  };
  auto records = client::LookupSrv(service, "tcp", domain);
  if (!records.ok()) return wrap(records.status());
  std::vector<std::string> parts;
  absl::Status err;
  int temp_name = 0;
  for (const client::SrvRecord& r : *records) {
    auto addr = ResolveTcpAddr(r.target, r.port);
    if (!addr.ok()) {
      err = addr.status();
      continue;
    }
    auto it = tcp2ap.find(*addr);
    const std::string n = it != tcp2ap.end() ? name : absl::StrCat(temp_name++);
    absl::string_view short_host = r.target;
    if (absl::EndsWith(short_host, ".")) short_host.remove_suffix(1);
    const std::string url_host = JoinHostPort(short_host, r.port);
    if (it != tcp2ap.end() && it->second->scheme != scheme) {
      err = Err(absl::StrCat(
          "bootstrap at ", scheme, "://", url_host, " from DNS for ", service,
          " has scheme mismatch with expected peer ", it->second->raw));
    } else {
      parts.push_back(absl::StrCat(n, "=", scheme, "://", url_host));
    }
  }
  if (parts.empty() && !err.ok()) return wrap(err);
  return parts;
}

// etcd's netutil.URLStringsEqual: equal as text, or once every host that is
// not localhost or an IP is resolved.
absl::Status UrlsEqual(std::vector<std::string> a, std::vector<std::string> b) {
  if (a.size() != b.size()) {
    return Err(
        absl::StrCat("len(", QuoteList(a), ") != len(", QuoteList(b), ")"));
  }
  std::sort(a.begin(), a.end());
  std::sort(b.begin(), b.end());
  if (a == b) return absl::OkStatus();
  for (auto* list : {&a, &b}) {
    for (std::string& s : *list) {
      auto u = ParseUrl(s);
      if (!u.ok()) {
        return Err(absl::StrCat("failed to parse \"", s, "\" (",
                                u.status().message(), ")"));
      }
      if (u->scheme == "unix" || u->scheme == "unixs") continue;
      in6_addr ip;
      if (u->host == "localhost" ||
          inet_pton(AF_INET, u->host.c_str(), &ip) == 1 ||
          inet_pton(AF_INET6, u->host.c_str(), &ip) == 1) {
        continue;
      }
      auto addr = ResolveTcpAddr(u->host, u->port);
      if (!addr.ok()) {
        return Err(absl::StrCat("failed to resolve \"", s, "\" (",
                                addr.status().message(), ")"));
      }
      s = absl::StrCat(u->scheme, "://", *addr);
    }
  }
  std::sort(a.begin(), a.end());
  std::sort(b.begin(), b.end());
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i] != b[i]) {
      return Err(
          absl::StrCat("resolved urls: \"", a[i], "\" != \"", b[i], "\""));
    }
  }
  return absl::OkStatus();
}

// etcdserver's advertiseMatchesCluster, for a cluster found by SRV.
absl::Status AdvertiseMatchesCluster(const ServerConfig& c,
                                     const ClusterMember& self) {
  std::vector<std::string> urls, apurls;
  for (const Url& u : self.peer_urls) urls.push_back(u.raw);
  for (const Url& u : c.initial_advertise_peer_urls) apurls.push_back(u.raw);
  std::sort(urls.begin(), urls.end());
  std::sort(apurls.begin(), apurls.end());
  const absl::Status eq = UrlsEqual(apurls, urls);
  if (eq.ok()) return eq;
  const std::set<std::string> init(urls.begin(), urls.end());
  const std::set<std::string> ap(apurls.begin(), apurls.end());
  std::vector<std::string> missing;
  for (const std::string& u : init) {
    if (!ap.count(u)) missing.push_back(absl::StrCat(c.name, "=", u));
  }
  if (!missing.empty()) {
    return Err(
        absl::StrCat("--initial-cluster has ", absl::StrJoin(missing, ","),
                     " but missing from --initial-advertise-peer-urls=",
                     absl::StrJoin(apurls, ","), " (", eq.message(), ")"));
  }
  for (const std::string& u : ap) {
    if (!init.count(u)) missing.push_back(u);
  }
  const std::string umap = SelfEntry(c.name, c.initial_advertise_peer_urls);
  if (!missing.empty()) {
    return Err(absl::StrCat("--initial-advertise-peer-urls has ",
                            absl::StrJoin(missing, ","),
                            " but missing from --initial-cluster=", umap));
  }
  return Err(absl::StrCat("failed to resolve ", absl::StrJoin(apurls, ","),
                          " to match --initial-cluster=", umap, " (",
                          eq.message(), ")"));
}

// etcd's PeerURLsMapAndToken for --discovery-srv (with etcd 3.5's merge of
// both schemes) and, when bootstrapping, VerifyBootstrap's checks; fills b's
// initial cluster.
absl::Status ClusterFromSrv(ServerConfig& b, bool bootstrap = true) {
  const std::string suffix =
      b.discovery_srv_name.empty() ? "" : "-" + b.discovery_srv_name;
  std::vector<std::string> apurls;
  for (const Url& u : b.initial_advertise_peer_urls) apurls.push_back(u.raw);
  std::vector<std::string> found;
  std::vector<std::string> errors;
  for (const char* scheme : {"https", "http"}) {
    const std::string service =
        absl::StrCat(absl::string_view(scheme) == "https" ? "etcd-server-ssl"
                                                          : "etcd-server",
                     suffix);
    auto got = SrvGetCluster(scheme, service, b.name, b.discovery_srv,
                             b.initial_advertise_peer_urls);
    if (got.ok()) {
      found.insert(found.end(), got->begin(), got->end());
    } else {
      errors.emplace_back(got.status().message());
    }
    DLOG_INFO(absl::StrCat("get cluster for ", service, " SRV"),
              {{"service-scheme", scheme},
               {"service-name", service},
               {"server-name", b.name},
               {"discovery-srv", b.discovery_srv},
               {"advertise-peer-urls", apurls},
               {"found-cluster", found},
               {"error", got.ok() ? std::string("")
                                  : std::string(got.status().message())}});
  }
  const std::string cerr = absl::StrJoin(errors, "; ");
  if (!errors.empty()) {
    DLOG_WARN("failed to resolve during SRV discovery", {{"error", cerr}});
  }
  auto setup_error = [](absl::string_view why) {
    return Err(absl::StrCat("error setting up initial cluster: ", why));
  };
  if (found.empty()) return setup_error(cerr);
  for (const std::string& s : found) {
    DLOG_INFO("got bootstrap from DNS for etcd-server", {{"node", s}});
  }
  const std::string cluster = absl::StrJoin(found, ",");
  auto members = ParseClusterString(cluster);
  if (!members.ok()) return setup_error(members.status().message());
  const ClusterMember* self = nullptr;
  for (const ClusterMember& m : *members) {
    if (m.name == b.name) self = &m;
  }
  if (self == nullptr) {
    return setup_error(absl::StrCat("cannot find local etcd member \"", b.name,
                                    "\" in SRV records"));
  }
  if (!bootstrap) {
    // Joining: VerifyJoinExisting (join.cc) takes it from here.
    b.initial_cluster = *std::move(members);
    b.initial_cluster_string = cluster;
    b.initial_cluster_error.clear();
    return absl::OkStatus();
  }
  if (absl::Status s = AdvertiseMatchesCluster(b, *self); !s.ok()) return s;
  if (HasDuplicateUrl(*members)) {
    return Err(absl::StrCat("initial cluster ", ClusterText(*members),
                            " has duplicate url"));
  }
  // The member's URLs are the records' (all members derive the same ids
  // from them); they matched the advertised ones above.
  b.initial_advertise_peer_urls = self->peer_urls;
  b.initial_cluster = *std::move(members);
  b.initial_cluster_string = cluster;
  b.initial_cluster_error.clear();
  return absl::OkStatus();
}

// URL or token discovery: joins, then fills b's initial cluster and token.
absl::Status ClusterFromService(ServerConfig& b) {
  const bool v3 = b.discovery.empty();
  const std::string token = v3 ? b.discovery_token : b.discovery;
  std::vector<std::string> self_urls;
  for (const Url& u : b.initial_advertise_peer_urls) self_urls.push_back(u.raw);
  const uint64_t id = ComputeMemberId(self_urls, token);
  const std::string self = SelfEntry(b.name, b.initial_advertise_peer_urls);

  absl::StatusOr<std::string> joined;
  if (v3) {
    DLOG_INFO(
        "Bootstrapping cluster using v3 discovery.",
        {{"discovery-token", token},
         {"discovery-endpoints", absl::StrJoin(b.discovery_endpoints, ",")}});
    joined = V3Discovery(b, id).Join(self);
  } else {
    auto keys = V2Keys::New(b.discovery, b.discovery_proxy);
    joined = keys.ok() ? V2Discovery(*std::move(keys), id).Join(self)
                       : absl::StatusOr<std::string>(keys.status());
  }
  if (!joined.ok()) {
    const std::string sentinel(joined.status().message());
    const std::string wrapped =
        absl::StrCat("failed to join discovery cluster (", sentinel, ")");
    if (v3) {
      DLOG_ERROR("discovery failed to join cluster", {{"error", sentinel}});
    }
    if (sentinel == kErrFullCluster && !v3 && b.discovery_fallback == "proxy") {
      DLOG_WARN("discovery cluster is full, falling back to proxy",
                {{"fallback-proxy", "proxy"}, {"error", wrapped}});
      return Err(
          "detcd does not serve etcd's v2 API: the discovery cluster is full "
          "and --discovery-fallback=proxy would start a v2 proxy; detcd "
          "exits instead (set --discovery-fallback=exit to say so)");
    }
    LogDiscoveryFailure(b, token, sentinel, wrapped);
    return Err(wrapped);
  }
  if (v3) {
    DLOG_INFO("discovery joined cluster successfully", {{"cluster", *joined}});
  }
  auto members = ParseClusterString(*joined);
  if (!members.ok()) return Err(members.status().message());
  if (HasDuplicateUrl(*members)) {
    return Err(absl::StrCat("discovery cluster ", ClusterText(*members),
                            " has duplicate url"));
  }
  b.initial_cluster = *std::move(members);
  b.initial_cluster_string = *joined;
  b.initial_cluster_error.clear();
  b.initial_cluster_token = token;
  return absl::OkStatus();
}

}  // namespace

bool UsesDiscovery(const ServerConfig& c) {
  return !c.discovery.empty() || !c.discovery_endpoints.empty() ||
         !c.discovery_srv.empty();
}

absl::Status JoinViewFromDiscovery(ServerConfig& c) {
  if (!c.discovery.empty() || !c.discovery_endpoints.empty()) {
    ClusterMember self;
    self.name = c.name;
    self.peer_urls = c.initial_advertise_peer_urls;
    std::sort(self.peer_urls.begin(), self.peer_urls.end(),
              [](const Url& a, const Url& b) { return a.raw < b.raw; });
    c.initial_cluster = {self};
    c.initial_cluster_string = SelfEntry(c.name, c.initial_advertise_peer_urls);
    c.initial_cluster_error.clear();
    c.initial_cluster_token =
        c.discovery.empty() ? c.discovery_token : c.discovery;
    return absl::OkStatus();
  }
  if (!c.discovery_srv.empty()) return ClusterFromSrv(c, /*bootstrap=*/false);
  return absl::OkStatus();
}

std::string SrvPeerServerName(const ServerConfig& c,
                              const std::vector<std::string>& peer_urls) {
  if (c.discovery_srv.empty() || !c.peer_tls.trusted_ca_file.empty()) {
    return "";
  }
  for (const std::string& u : peer_urls) {
    if (absl::StartsWith(u, "https://")) return c.discovery_srv;
  }
  return "";
}

absl::StatusOr<Identity> IdentityFromDiscovery(const ServerConfig& c) {
  StopSignalWatch stop_signals;
  ServerConfig b = c;
  absl::Status s =
      c.discovery_srv.empty() ? ClusterFromService(b) : ClusterFromSrv(b);
  if (!s.ok()) return s;
  return IdentityFromConfig(b);
}

}  // namespace detcd::shim
