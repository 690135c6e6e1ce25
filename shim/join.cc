#include "shim/join.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <memory>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "engine/util/check.h"
#include "nlohmann/json.hpp"
#include "shim/discovery.h"
#include "shim/log.h"

namespace detcd::shim {
namespace {

// etcd 3.4.23's version.MinClusterVersion: the oldest cluster version it
// joins.
constexpr char kMinClusterVersion[] = "3.0.0";

std::string Hex(uint64_t id) { return absl::StrFormat("%x", id); }

int64_t MonoMs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1'000'000;
}

// Go's %q of a []string: ["a" "b"].
std::string GoQuoteList(const std::vector<std::string>& v) {
  std::vector<std::string> q;
  for (const std::string& s : v) q.push_back(absl::StrCat("\"", s, "\""));
  return absl::StrCat("[", absl::StrJoin(q, " "), "]");
}

// Go's %v of a []string: [a b].
std::string GoList(const std::vector<std::string>& v) {
  return absl::StrCat("[", absl::StrJoin(v, " "), "]");
}

// %+v of etcd's *membership.Member.
std::string GoMember(const server::MemberInfo& m) {
  return absl::StrCat("&{ID:", Hex(m.id),
                      " RaftAttributes:{PeerURLs:", GoList(m.peer_urls),
                      " IsLearner:", m.is_learner ? "true" : "false",
                      "} Attributes:{Name:", m.name,
                      " ClientURLs:", GoList(m.client_urls), "}}");
}

// etcd's RaftCluster.String() for a cluster read from a peer (no removed
// ids); members by id (Go prints its map in random order).
std::string GoCluster(uint64_t cluster_id,
                      const std::vector<server::MemberInfo>& members) {
  std::vector<std::string> ms;
  for (const server::MemberInfo& m : members) ms.push_back(GoMember(m));
  return absl::StrCat("{ClusterID:", Hex(cluster_id), " Members:[",
                      absl::StrJoin(ms, " "), "] RemovedMemberIDs:[]}");
}

// Host of a URL resolved to an address, as etcd's resolveTCPAddrs does
// before comparing URLs (an IP literal stays as it is).
std::string Resolved(const std::string& url) {
  absl::StatusOr<Url> u = ParseUrl(url);
  if (!u.ok() || u->scheme == "unix" || u->scheme == "unixs") return url;
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  if (::getaddrinfo(u->host.c_str(), nullptr, &hints, &res) != 0) return url;
  std::string ip;
  for (addrinfo* ai = res; ai != nullptr; ai = ai->ai_next) {
    char buf[INET6_ADDRSTRLEN] = {};
    if (ai->ai_family == AF_INET) {
      inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(ai->ai_addr)->sin_addr,
                buf, sizeof(buf));
      ip = buf;
      break;  // IPv4 first, as Go's resolver answers
    }
    if (ai->ai_family == AF_INET6 && ip.empty()) {
      inet_ntop(AF_INET6,
                &reinterpret_cast<sockaddr_in6*>(ai->ai_addr)->sin6_addr, buf,
                sizeof(buf));
      ip = absl::StrCat("[", buf, "]");
    }
  }
  ::freeaddrinfo(res);
  if (ip.empty()) return url;
  return absl::StrCat(u->scheme, "://", ip, ":", u->port);
}

// etcd's netutil.URLStringsEqual: equal as sorted lists, else equal once
// host names are resolved. *err is the reason they differ.
bool UrlsEqual(std::vector<std::string> a, std::vector<std::string> b,
               std::string* err) {
  if (a.size() != b.size()) {
    *err =
        absl::StrCat("len(", GoQuoteList(a), ") != len(", GoQuoteList(b), ")");
    return false;
  }
  std::sort(a.begin(), a.end());
  std::sort(b.begin(), b.end());
  *err = "<nil>";
  if (a == b) return true;
  for (std::string& u : a) u = Resolved(u);
  for (std::string& u : b) u = Resolved(u);
  std::sort(a.begin(), a.end());
  std::sort(b.begin(), b.end());
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i] != b[i]) {
      *err = absl::StrCat("resolved urls: \"", a[i], "\" != \"", b[i], "\"");
      return false;
    }
  }
  return true;
}

std::vector<std::string> Raws(const std::vector<Url>& urls) {
  std::vector<std::string> out;
  for (const Url& u : urls) out.push_back(u.raw);
  return out;
}

// Reads what the server sends until it closes (Connection: close), within
// the deadline.
absl::StatusOr<std::string> ReadAll(Stream& s, int64_t deadline_ms) {
  std::string out;
  char buf[16384];
  for (;;) {
    const int64_t left = deadline_ms - MonoMs();
    if (left <= 0) return absl::DeadlineExceededError("i/o timeout");
    pollfd pfd{s.fd(), POLLIN, 0};
    // TLS may hold decrypted bytes the socket no longer shows: try a read
    // whenever poll says so or times out in short slices.
    ::poll(&pfd, 1, static_cast<int>(std::min<int64_t>(left, 100)));
    const long n = s.Read(buf, sizeof(buf));
    if (n == 0) return out;
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) continue;
      if (!out.empty()) return out;
      return absl::UnavailableError("read: connection reset by peer");
    }
    out.append(buf, static_cast<size_t>(n));
    if (out.size() > (64u << 20)) {
      return absl::ResourceExhaustedError("response too large");
    }
  }
}

absl::Status ParseResponse(const std::string& raw, HttpGetResult* r) {
  const size_t head_end = raw.find("\r\n\r\n");
  if (head_end == std::string::npos) {
    return absl::DataLossError("malformed HTTP response");
  }
  std::string_view head(raw.data(), head_end);
  size_t line_end = head.find("\r\n");
  std::string_view status_line = head.substr(0, line_end);
  // "HTTP/1.1 200 OK"
  const size_t sp = status_line.find(' ');
  if (sp == std::string_view::npos ||
      !absl::SimpleAtoi(std::string(status_line.substr(sp + 1, 3)),
                        &r->status)) {
    return absl::DataLossError("malformed HTTP status line");
  }
  while (line_end != std::string_view::npos) {
    head.remove_prefix(line_end + 2);
    line_end = head.find("\r\n");
    std::string_view line = head.substr(0, line_end);
    const size_t colon = line.find(':');
    if (colon == std::string_view::npos) continue;
    std::string name =
        absl::AsciiStrToLower(std::string(line.substr(0, colon)));
    r->headers[name] = std::string(
        absl::StripAsciiWhitespace(std::string(line.substr(colon + 1))));
  }
  std::string body = raw.substr(head_end + 4);
  auto te = r->headers.find("transfer-encoding");
  if (te != r->headers.end() &&
      absl::AsciiStrToLower(te->second).find("chunked") != std::string::npos) {
    std::string out;
    size_t pos = 0;
    for (;;) {
      const size_t eol = body.find("\r\n", pos);
      if (eol == std::string::npos) break;
      size_t len = 0;
      std::string hex = body.substr(pos, eol - pos);
      hex = hex.substr(0, hex.find(';'));
      if (!absl::SimpleHexAtoi(hex, &len)) {
        return absl::DataLossError("malformed chunk");
      }
      if (len == 0) break;
      if (eol + 2 + len > body.size()) {
        return absl::DataLossError("truncated chunk");
      }
      out.append(body, eol + 2, len);
      pos = eol + 2 + len + 2;
    }
    body = std::move(out);
  } else if (auto cl = r->headers.find("content-length");
             cl != r->headers.end()) {
    size_t len = 0;
    if (absl::SimpleAtoi(cl->second, &len) && len < body.size()) {
      body.resize(len);
    }
  }
  r->body = std::move(body);
  return absl::OkStatus();
}

// go-semver's Version, enough to order cluster versions.
struct SemVer {
  int64_t major = 0, minor = 0, patch = 0;
  std::string pre;  // pre-release, "" for none
};

// go-semver's validateIdentifier: dot-separated non-empty [0-9A-Za-z-].
bool ValidIdentifier(absl::string_view id) {
  if (id.empty()) return true;
  for (absl::string_view part : absl::StrSplit(id, '.')) {
    if (part.empty()) return false;
    for (char ch : part) {
      if (!absl::ascii_isalnum(static_cast<unsigned char>(ch)) && ch != '-') {
        return false;
      }
    }
  }
  return true;
}

// go-semver's NewVersion: "X.Y.Z[-pre][+meta]"; the error text is its.
absl::StatusOr<SemVer> ParseSemVer(absl::string_view text) {
  absl::string_view v = text;
  absl::string_view meta, pre;
  if (size_t plus = v.find('+'); plus != absl::string_view::npos) {
    meta = v.substr(plus + 1);
    v = v.substr(0, plus);
  }
  if (size_t dash = v.find('-'); dash != absl::string_view::npos) {
    pre = v.substr(dash + 1);
    v = v.substr(0, dash);
  }
  std::vector<absl::string_view> parts =
      absl::StrSplit(v, absl::MaxSplits('.', 2));
  if (parts.size() != 3) {
    return absl::InvalidArgumentError(
        absl::StrCat(v, " is not in dotted-tri format"));
  }
  if (!ValidIdentifier(pre)) {
    return absl::InvalidArgumentError(
        absl::StrCat("failed to validate pre-release: ", pre,
                     " is not a valid semver identifier"));
  }
  if (!ValidIdentifier(meta)) {
    return absl::InvalidArgumentError(
        absl::StrCat("failed to validate metadata: ", meta,
                     " is not a valid semver identifier"));
  }
  SemVer out;
  int64_t* fields[] = {&out.major, &out.minor, &out.patch};
  for (int i = 0; i < 3; ++i) {
    if (parts[i].empty() || !absl::SimpleAtoi(parts[i], fields[i])) {
      return absl::InvalidArgumentError(absl::StrCat(
          "strconv.ParseInt: parsing \"", parts[i], "\": invalid syntax"));
    }
  }
  out.pre = std::string(pre);
  return out;
}

std::string SemVerString(const SemVer& v) {
  std::string s = absl::StrCat(v.major, ".", v.minor, ".", v.patch);
  if (!v.pre.empty()) absl::StrAppend(&s, "-", v.pre);
  return s;
}

// go-semver's LessThan: numbers, then a pre-release sorts before none and
// pre-releases compare part by part (numeric parts as numbers, before
// alphanumeric ones).
bool SemVerLess(const SemVer& a, const SemVer& b) {
  if (a.major != b.major) return a.major < b.major;
  if (a.minor != b.minor) return a.minor < b.minor;
  if (a.patch != b.patch) return a.patch < b.patch;
  if (a.pre == b.pre) return false;
  if (a.pre.empty()) return false;
  if (b.pre.empty()) return true;
  std::vector<absl::string_view> pa = absl::StrSplit(a.pre, '.');
  std::vector<absl::string_view> pb = absl::StrSplit(b.pre, '.');
  for (size_t i = 0; i < std::min(pa.size(), pb.size()); ++i) {
    if (pa[i] == pb[i]) continue;
    int64_t na = 0, nb = 0;
    const bool a_num = absl::SimpleAtoi(pa[i], &na);
    const bool b_num = absl::SimpleAtoi(pb[i], &nb);
    if (a_num && b_num) return na < nb;
    if (a_num != b_num) return a_num;
    return pa[i] < pb[i];
  }
  return pa.size() < pb.size();
}

// etcd's getVersion: the first of the member's peer URLs whose /version
// answers with JSON.
RemoteVersion GetVersion(const server::MemberInfo& m, const TlsFiles& tls,
                         int timeout_ms) {
  RemoteVersion out;
  out.id = m.id;
  std::string last_error = "no peer URLs";
  for (const std::string& u : m.peer_urls) {
    const std::string addr = u + "/version";
    absl::StatusOr<HttpGetResult> r = HttpGet(addr, tls, timeout_ms);
    if (!r.ok()) {
      last_error = absl::StrCat("Get \"", addr, "\": ", r.status().message());
      DLOG_WARN("failed to reach the peer URL",
                {{"address", addr},
                 {"remote-member-id", Hex(m.id)},
                 {"error", last_error}});
      continue;
    }
    // As Go's http client: any status is an answer; the body decides.
    nlohmann::json j = nlohmann::json::parse(r->body, nullptr, false);
    if (j.is_discarded() || !j.is_object() ||
        (j.contains("etcdserver") && !j["etcdserver"].is_string()) ||
        (j.contains("etcdcluster") && !j["etcdcluster"].is_string())) {
      last_error = "invalid character in version response";
      DLOG_WARN("failed to unmarshal response",
                {{"address", addr},
                 {"remote-member-id", Hex(m.id)},
                 {"error", last_error}});
      continue;
    }
    out.answered = true;
    out.server = j.value("etcdserver", "");
    out.cluster = j.value("etcdcluster", "");
    return out;
  }
  DLOG_WARN("failed to get version",
            {{"remote-member-id", Hex(m.id)}, {"error", last_error}});
  return out;
}

}  // namespace

absl::StatusOr<HttpGetResult> HttpGet(const std::string& url,
                                      const TlsFiles& tls, int timeout_ms) {
  absl::StatusOr<Url> u =
      ParseUrl(url.substr(0, url.find('/', url.find("://") + 3)));
  if (!u.ok()) return u.status();
  const size_t path_at = url.find('/', url.find("://") + 3);
  const std::string path =
      path_at == std::string::npos ? "/" : url.substr(path_at);
  const std::string hostport = u->host.find(':') != std::string::npos
                                   ? absl::StrCat("[", u->host, "]:", u->port)
                                   : absl::StrCat(u->host, ":", u->port);
  const int64_t deadline = MonoMs() + timeout_ms;
  const std::string what = absl::StrCat("dial tcp ", hostport);
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  const std::string port = absl::StrCat(u->port);
  if (int gai = ::getaddrinfo(u->host.c_str(), port.c_str(), &hints, &res);
      gai != 0) {
    return absl::UnavailableError(
        absl::StrCat(what, ": lookup ", u->host, ": ", gai_strerror(gai)));
  }
  int fd = -1;
  std::string last_error = "no addresses";
  for (addrinfo* ai = res; ai != nullptr && fd < 0; ai = ai->ai_next) {
    int s =
        ::socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (s < 0) continue;
    int err = 0;
    if (::connect(s, ai->ai_addr, ai->ai_addrlen) != 0) {
      err = errno;
      if (err == EINPROGRESS) {
        pollfd pfd{s, POLLOUT, 0};
        const int left =
            static_cast<int>(std::max<int64_t>(0, deadline - MonoMs()));
        err = ETIMEDOUT;
        if (::poll(&pfd, 1, left) > 0) {
          socklen_t len = sizeof(err);
          ::getsockopt(s, SOL_SOCKET, SO_ERROR, &err, &len);
        }
      }
    }
    if (err == 0) {
      fd = s;
    } else {
      last_error = err == ECONNREFUSED ? "connect: connection refused"
                   : err == ETIMEDOUT
                       ? "i/o timeout"
                       : absl::StrCat("connect: ", strerror(err));
      ::close(s);
    }
  }
  ::freeaddrinfo(res);
  if (fd < 0)
    return absl::UnavailableError(absl::StrCat(what, ": ", last_error));
  ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) & ~O_NONBLOCK);
  timeval tv{};
  const int64_t left = std::max<int64_t>(1, deadline - MonoMs());
  tv.tv_sec = left / 1000;
  tv.tv_usec = (left % 1000) * 1000;
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  std::unique_ptr<Stream> stream;
  if (u->scheme == "https") {
    auto ctx = TlsContext::Client(tls, {});
    if (!ctx.ok()) {
      ::close(fd);
      return ctx.status();
    }
    auto s = (*ctx)->Connect(
        fd, tls.server_name.empty() ? u->host : tls.server_name,
        static_cast<int>(left));
    if (!s.ok()) return s.status();
    stream = *std::move(s);
  } else {
    stream = PlainStream(fd);
  }
  const std::string req =
      absl::StrCat("GET ", path, " HTTP/1.1\r\nHost: ", hostport,
                   "\r\nUser-Agent: detcd\r\nAccept-Encoding: identity\r\n"
                   "Connection: close\r\n\r\n");
  if (!stream->WriteAll(req.data(), req.size())) {
    return absl::UnavailableError("write: broken pipe");
  }
  absl::StatusOr<std::string> raw = ReadAll(*stream, deadline);
  if (!raw.ok()) return raw.status();
  HttpGetResult r;
  if (absl::Status s = ParseResponse(*raw, &r); !s.ok()) return s;
  return r;
}

bool IsCompatibleWithVersions(const std::vector<RemoteVersion>& remotes,
                              std::string_view min_version,
                              std::string_view max_version) {
  const absl::StatusOr<SemVer> min_v =
      ParseSemVer(absl::string_view(min_version.data(), min_version.size()));
  const absl::StatusOr<SemVer> max_v =
      ParseSemVer(absl::string_view(max_version.data(), max_version.size()));
  DETCD_CHECK(min_v.ok() && max_v.ok());
  bool ok = false;
  for (const RemoteVersion& r : remotes) {
    if (!r.answered) continue;
    absl::StatusOr<SemVer> v = ParseSemVer(r.cluster);
    if (!v.ok()) {
      DLOG_WARN("failed to parse cluster version of remote member",
                {{"remote-member-id", Hex(r.id)},
                 {"remote-member-cluster-version", r.cluster},
                 {"error", std::string(v.status().message())}});
      continue;
    }
    // etcd logs the minimum in both cases (its text).
    if (SemVerLess(*v, *min_v) || SemVerLess(*max_v, *v)) {
      DLOG_WARN(SemVerLess(*v, *min_v)
                    ? "cluster version of remote member is not compatible; "
                      "too low"
                    : "cluster version of remote member is not compatible; "
                      "too high",
                {{"remote-member-id", Hex(r.id)},
                 {"remote-member-cluster-version", SemVerString(*v)},
                 {"minimum-cluster-version-supported", SemVerString(*min_v)}});
      return false;
    }
    ok = true;
  }
  return ok;
}

std::string PeerMemberJson(const server::MemberInfo& m) {
  // etcd's membership.Member: field order and omitempty rules.
  nlohmann::ordered_json j;
  j["id"] = m.id;
  j["peerURLs"] = m.peer_urls;
  if (m.is_learner) j["isLearner"] = true;
  if (!m.name.empty()) j["name"] = m.name;
  if (!m.client_urls.empty()) j["clientURLs"] = m.client_urls;
  return j.dump();
}

std::string PeerMembersJson(const std::vector<server::MemberInfo>& members) {
  std::string out = "[";
  for (size_t i = 0; i < members.size(); ++i) {
    if (i > 0) out += ",";
    out += PeerMemberJson(members[i]);
  }
  return out + "]\n";  // json.Encoder ends with a newline
}

absl::StatusOr<std::vector<server::MemberInfo>> ParsePeerMembersJson(
    std::string_view body) {
  nlohmann::json j = nlohmann::json::parse(body, nullptr, false);
  if (j.is_discarded() || !j.is_array()) {
    return absl::DataLossError("invalid character in members response");
  }
  std::vector<server::MemberInfo> out;
  try {
    for (const nlohmann::json& e : j) {
      server::MemberInfo m;
      m.id = e.at("id").get<uint64_t>();
      if (e.contains("peerURLs") && !e["peerURLs"].is_null()) {
        m.peer_urls = e["peerURLs"].get<std::vector<std::string>>();
      }
      m.is_learner = e.value("isLearner", false);
      m.name = e.value("name", "");
      if (e.contains("clientURLs") && !e["clientURLs"].is_null()) {
        m.client_urls = e["clientURLs"].get<std::vector<std::string>>();
      }
      out.push_back(std::move(m));
    }
  } catch (const nlohmann::json::exception& e) {
    return absl::DataLossError(e.what());
  }
  std::sort(out.begin(), out.end(),
            [](const auto& a, const auto& b) { return a.id < b.id; });
  return out;
}

absl::StatusOr<JoinedCluster> JoinExistingCluster(const ServerConfig& config,
                                                  const TlsFiles& peer_tls,
                                                  int timeout_ms) {
  // 0. The initial cluster (and token) as etcd's PeerURLsMapAndToken.
  ServerConfig c = config;
  if (absl::Status s = JoinViewFromDiscovery(c); !s.ok()) return s;
  TlsFiles tls = peer_tls;
  if (tls.server_name.empty()) {
    std::vector<std::string> urls;
    for (const ClusterMember& m : c.initial_cluster) {
      for (const Url& u : m.peer_urls) urls.push_back(u.raw);
    }
    tls.server_name = SrvPeerServerName(c, urls);
  }
  if (!c.initial_cluster_error.empty()) {
    return absl::InvalidArgumentError(c.initial_cluster_error);
  }
  // 1. VerifyJoinExisting.
  const ClusterMember* self = nullptr;
  for (const ClusterMember& m : c.initial_cluster) {
    if (m.name == c.name) self = &m;
  }
  if (self == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("couldn't find local name \"", c.name,
                     "\" in the initial cluster configuration"));
  }
  std::vector<std::string> pairs, all_urls;
  for (const ClusterMember& m : c.initial_cluster) {
    for (const Url& u : m.peer_urls) {
      pairs.push_back(absl::StrCat(m.name, "=", u.raw));
      all_urls.push_back(u.raw);
    }
  }
  std::sort(pairs.begin(), pairs.end());
  std::sort(all_urls.begin(), all_urls.end());
  if (std::adjacent_find(all_urls.begin(), all_urls.end()) != all_urls.end()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "initial cluster ", absl::StrJoin(pairs, ","), " has duplicate url"));
  }
  if (!c.discovery.empty()) {
    return absl::InvalidArgumentError(
        "discovery URL should not be set when joining existing initial "
        "cluster");
  }
  // 2. The local view, ids from URLs and token, by ascending id.
  std::vector<server::MemberInfo> local;
  for (const ClusterMember& m : c.initial_cluster) {
    server::MemberInfo mi;
    mi.name = m.name;
    mi.peer_urls = Raws(m.peer_urls);
    mi.id = ComputeMemberId(mi.peer_urls, c.initial_cluster_token);
    for (const server::MemberInfo& o : local) {
      if (o.id == mi.id) {
        return absl::InvalidArgumentError(
            absl::StrCat("member exists with identical ID ", GoMember(mi)));
      }
    }
    local.push_back(std::move(mi));
  }
  std::sort(local.begin(), local.end(),
            [](const auto& a, const auto& b) { return a.id < b.id; });
  // 3. GetClusterFromRemotePeers.
  std::vector<std::string> remote_urls;
  for (const server::MemberInfo& m : local) {
    if (m.name == c.name) continue;
    remote_urls.insert(remote_urls.end(), m.peer_urls.begin(),
                       m.peer_urls.end());
  }
  std::sort(remote_urls.begin(), remote_urls.end());
  JoinedCluster existing;
  bool found = false;
  std::string fetch_error =
      "could not retrieve cluster information from the given URLs";
  for (const std::string& u : remote_urls) {
    const std::string addr = u + "/members";
    absl::StatusOr<HttpGetResult> r = HttpGet(addr, tls, timeout_ms);
    if (!r.ok()) {
      DLOG_WARN("failed to get cluster response",
                {{"address", addr},
                 {"error",
                  absl::StrCat("Get \"", addr, "\": ", r.status().message())}});
      continue;
    }
    absl::StatusOr<std::vector<server::MemberInfo>> members =
        ParsePeerMembersJson(r->body);
    if (r->status != 200 || !members.ok()) {
      DLOG_WARN(
          "failed to unmarshal cluster response",
          {{"address", addr},
           {"error", members.ok() ? absl::StrCat("status ", r->status)
                                  : std::string(members.status().message())}});
      continue;
    }
    uint64_t cid = 0;
    auto h = r->headers.find("x-etcd-cluster-id");
    if (h == r->headers.end() || !absl::SimpleHexAtoi(h->second, &cid)) {
      DLOG_WARN("failed to parse cluster ID",
                {{"address", addr},
                 {"header", h == r->headers.end() ? "" : h->second}});
      continue;
    }
    if (members->empty()) {
      fetch_error = "failed to get raft cluster member(s) from the given URLs";
      break;
    }
    existing.cluster_id = cid;
    existing.members = *std::move(members);
    found = true;
    break;
  }
  if (!found) {
    return absl::UnavailableError(absl::StrCat(
        "cannot fetch cluster info from peer urls: ", fetch_error));
  }
  // 4. ValidateClusterAndAssignIDs.
  auto invalid = [&](const std::string& why) {
    return absl::FailedPreconditionError(absl::StrCat(
        "error validating peerURLs ",
        GoCluster(existing.cluster_id, existing.members), ": ", why));
  };
  if (existing.members.size() != local.size()) {
    return invalid("member count is unequal");
  }
  for (const server::MemberInfo& em : existing.members) {
    std::string err;
    bool ok = false;
    for (server::MemberInfo& lm : local) {
      if ((ok = UrlsEqual(em.peer_urls, lm.peer_urls, &err))) {
        lm.id = em.id;
        break;
      }
    }
    if (!ok) {
      return invalid(
          absl::StrCat("PeerURLs: no match found for existing "
                       "member (",
                       Hex(em.id), ", ", GoList(em.peer_urls),
                       "), last resolver error (", err, ")"));
    }
  }
  for (const server::MemberInfo& lm : local) {
    if (lm.name == c.name) existing.member_id = lm.id;
  }
  // 5. isCompatibleWithCluster, over the local view (now with the running
  // cluster's ids).
  std::vector<RemoteVersion> versions;
  for (const server::MemberInfo& lm : local) {
    if (lm.name == c.name) continue;
    versions.push_back(GetVersion(lm, tls, timeout_ms));
  }
  const std::string server_version(kServerVersion);
  const std::vector<absl::string_view> mm =
      absl::StrSplit(server_version, absl::MaxSplits('.', 2));
  DETCD_CHECK(mm.size() == 3);
  if (!IsCompatibleWithVersions(versions, kMinClusterVersion,
                                absl::StrCat(mm[0], ".", mm[1], ".0"))) {
    return absl::FailedPreconditionError(
        "incompatible with current running cluster");
  }
  return existing;
}

}  // namespace detcd::shim
