// Server configuration parsing that mirrors etcd 3.4's etcdmain/config.go,
// embed/config.go and pkg/flags: the same sources in the same order, Go's
// flag-package syntax, Go's number/bool/duration/URL rules and etcd's error
// and warning texts. See config.h for the contract and docs/flags.md for
// the list of flags.
#include "shim/config.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <utility>
#include <variant>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "engine/util/planted.h"
#include "yaml-cpp/yaml.h"

namespace detcd::shim {

bool TlsConfig::enabled() const {
  return (!cert_file.empty() && !key_file.empty()) || auto_tls;
}

namespace {

constexpr char kDefaultInitialCluster[] = "default=http://localhost:2380";
constexpr char kDefaultLogOutput[] = "default";

// ---------------------------------------------------------------------------
// Go's formatting and scalar parsing, as far as etcd's messages show them.

// strconv.Quote: printable text as is, the rest escaped.
std::string GoQuote(absl::string_view s) {
  std::string out = "\"";
  size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      switch (c) {
        case '"':
          out += "\\\"";
          break;
        case '\\':
          out += "\\\\";
          break;
        case '\a':
          out += "\\a";
          break;
        case '\b':
          out += "\\b";
          break;
        case '\f':
          out += "\\f";
          break;
        case '\n':
          out += "\\n";
          break;
        case '\r':
          out += "\\r";
          break;
        case '\t':
          out += "\\t";
          break;
        case '\v':
          out += "\\v";
          break;
        default:
          if (c < 0x20 || c == 0x7f) {
            absl::StrAppendFormat(&out, "\\x%02x", c);
          } else {
            out += static_cast<char>(c);
          }
      }
      ++i;
      continue;
    }
    // A valid UTF-8 sequence is copied; a stray byte is escaped.
    size_t len = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc0 ? 2 : 0;
    bool valid = len > 0 && c < 0xf8 && i + len <= s.size();
    for (size_t k = 1; valid && k < len; ++k) {
      valid = (static_cast<unsigned char>(s[i + k]) & 0xc0) == 0x80;
    }
    if (valid) {
      out.append(s.data() + i, len);
      i += len;
    } else {
      absl::StrAppendFormat(&out, "\\x%02x", c);
      ++i;
    }
  }
  out += "\"";
  return out;
}

// fmt's %q of a []string: ["a" "b"].
std::string GoQuoteList(const std::vector<std::string>& v) {
  std::vector<std::string> q;
  q.reserve(v.size());
  for (const auto& s : v) q.push_back(GoQuote(s));
  return absl::StrCat("[", absl::StrJoin(q, " "), "]");
}

enum class NumErr { kOk, kSyntax, kRange };

// strconv.ParseUint(s, 0, bits): 0x/0o/0b/0 prefixes and '_' separators.
NumErr GoParseUint(absl::string_view s, int bits, uint64_t* out) {
  if (s.empty()) return NumErr::kSyntax;
  const absl::string_view s0 = s;
  int base = 10;
  if (s[0] == '0') {
    if (s.size() >= 3 && (s[1] == 'x' || s[1] == 'X')) {
      base = 16;
      s.remove_prefix(2);
    } else if (s.size() >= 3 && (s[1] == 'o' || s[1] == 'O')) {
      base = 8;
      s.remove_prefix(2);
    } else if (s.size() >= 3 && (s[1] == 'b' || s[1] == 'B')) {
      base = 2;
      s.remove_prefix(2);
    } else {
      base = 8;
      s.remove_prefix(1);
    }
  }
  const uint64_t max_val =
      bits >= 64 ? std::numeric_limits<uint64_t>::max() : (1ull << bits) - 1;
  uint64_t n = 0;
  bool underscores = false;
  for (char ch : s) {
    int d;
    if (ch == '_') {
      underscores = true;
      continue;
    } else if (ch >= '0' && ch <= '9') {
      d = ch - '0';
    } else if (ch >= 'a' && ch <= 'z') {
      d = ch - 'a' + 10;
    } else if (ch >= 'A' && ch <= 'Z') {
      d = ch - 'A' + 10;
    } else {
      return NumErr::kSyntax;
    }
    if (d >= base) return NumErr::kSyntax;
    if (n >
        (max_val - static_cast<uint64_t>(d)) / static_cast<uint64_t>(base)) {
      return NumErr::kRange;
    }
    n = n * base + d;
  }
  if (underscores) {
    // Go's underscoreOK: '_' only between digits (or after the base prefix).
    absl::string_view t = s0;
    bool prefixed =
        t.size() >= 2 && t[0] == '0' &&
        absl::string_view("xXoObB").find(t[1]) != absl::string_view::npos;
    char saw = prefixed ? '0' : '^';
    if (prefixed) t.remove_prefix(2);
    for (char ch : t) {
      if (ch == '_') {
        if (saw != '0') return NumErr::kSyntax;
        saw = '_';
      } else {
        if (saw == '_') saw = '0';
        saw = '0';
      }
    }
    if (saw == '_') return NumErr::kSyntax;
  }
  *out = n;
  return NumErr::kOk;
}

// strconv.ParseInt(s, 0, 64).
NumErr GoParseInt(absl::string_view s, int64_t* out) {
  if (s.empty()) return NumErr::kSyntax;
  bool neg = false;
  if (s[0] == '+' || s[0] == '-') {
    neg = s[0] == '-';
    s.remove_prefix(1);
  }
  uint64_t u = 0;
  NumErr e = GoParseUint(s, 64, &u);
  if (e != NumErr::kOk) return e;
  const uint64_t cutoff = 1ull << 63;
  if (!neg && u >= cutoff) return NumErr::kRange;
  if (neg && u > cutoff) return NumErr::kRange;
  *out = neg ? static_cast<int64_t>(0 - u) : static_cast<int64_t>(u);
  return NumErr::kOk;
}

// strconv.ParseBool.
bool GoParseBool(absl::string_view s, bool* out) {
  static const char* const kTrue[] = {"1", "t", "T", "TRUE", "true", "True"};
  static const char* const kFalse[] = {"0",     "f",     "F",
                                       "FALSE", "false", "False"};
  for (const char* t : kTrue) {
    if (s == t) return *out = true, true;
  }
  for (const char* f : kFalse) {
    if (s == f) return *out = false, true;
  }
  return false;
}

// time.ParseDuration, into nanoseconds.
bool GoParseDuration(absl::string_view s, int64_t* out_ns) {
  bool neg = false;
  if (!s.empty() && (s[0] == '-' || s[0] == '+')) {
    neg = s[0] == '-';
    s.remove_prefix(1);
  }
  if (s == "0") return *out_ns = 0, true;
  if (s.empty()) return false;
  static const std::pair<const char*, uint64_t> kUnits[] = {
      {"ns", 1ull},
      {"us", 1000ull},
      {"\xc2\xb5s", 1000ull},  // U+00B5 micro sign
      {"\xce\xbcs", 1000ull},  // U+03BC Greek mu
      {"ms", 1000000ull},
      {"s", 1000000000ull},
      {"m", 60ull * 1000000000ull},
      {"h", 3600ull * 1000000000ull},
  };
  const uint64_t kLimit = 1ull << 63;
  uint64_t total = 0;
  while (!s.empty()) {
    if (!(s[0] == '.' || (s[0] >= '0' && s[0] <= '9'))) return false;
    uint64_t v = 0;
    size_t i = 0;
    for (; i < s.size() && s[i] >= '0' && s[i] <= '9'; ++i) {
      if (v > (kLimit - 1) / 10) return false;
      v = v * 10 + static_cast<uint64_t>(s[i] - '0');
      if (v > kLimit) return false;
    }
    const bool pre = i > 0;
    s.remove_prefix(i);
    long double frac = 0, scale = 1;
    bool post = false;
    if (!s.empty() && s[0] == '.') {
      s.remove_prefix(1);
      size_t j = 0;
      for (; j < s.size() && s[j] >= '0' && s[j] <= '9'; ++j) {
        if (scale < 1e30L) {
          frac = frac * 10 + (s[j] - '0');
          scale *= 10;
        }
      }
      post = j > 0;
      s.remove_prefix(j);
    }
    if (!pre && !post) return false;
    size_t u = 0;
    while (u < s.size() && s[u] != '.' && !(s[u] >= '0' && s[u] <= '9')) ++u;
    if (u == 0) return false;  // missing unit
    const absl::string_view unit_name = s.substr(0, u);
    s.remove_prefix(u);
    uint64_t unit = 0;
    for (const auto& [n, m] : kUnits) {
      if (unit_name == n) unit = m;
    }
    if (unit == 0) return false;  // unknown unit
    if (v > kLimit / unit) return false;
    v *= unit;
    if (frac > 0) {
      v += static_cast<uint64_t>(frac *
                                 (static_cast<long double>(unit) / scale));
      if (v > kLimit) return false;
    }
    total += v;
    if (total > kLimit) return false;
  }
  if (neg) {
    *out_ns = total == kLimit ? std::numeric_limits<int64_t>::min()
                              : -static_cast<int64_t>(total);
    return true;
  }
  if (total > kLimit - 1) return false;
  *out_ns = static_cast<int64_t>(total);
  return true;
}

// ---------------------------------------------------------------------------
// URLs: Go's url.Parse (the parts etcd's inputs reach), net.SplitHostPort
// and etcd's types.NewURLs.

struct GoUrl {
  std::string scheme, host, path, query, fragment;
  bool has_query = false;
};

bool ValidOptionalPort(absl::string_view port) {
  if (port.empty()) return true;
  if (port[0] != ':') return false;
  for (char c : port.substr(1)) {
    if (c < '0' || c > '9') return false;
  }
  return true;
}

absl::StatusOr<GoUrl> GoUrlParse(absl::string_view raw) {
  auto fail = [&](absl::string_view msg) {
    return absl::InvalidArgumentError(
        absl::StrCat("parse ", GoQuote(raw), ": ", msg));
  };
  GoUrl u;
  absl::string_view rest = raw;
  if (size_t h = rest.find('#'); h != absl::string_view::npos) {
    u.fragment = std::string(rest.substr(h + 1));
    rest = rest.substr(0, h);
  }
  for (char c : rest) {
    const auto b = static_cast<unsigned char>(c);
    if (b < 0x20 || b == 0x7f) {
      return fail("net/url: invalid control character in URL");
    }
  }
  if (rest.empty() || rest == "*") {
    u.path = std::string(rest);
    return u;
  }
  // Scheme: a letter, then letters, digits, '+', '-', '.', up to ':'.
  for (size_t i = 0; i < rest.size(); ++i) {
    const char c = rest[i];
    if (absl::ascii_isalpha(static_cast<unsigned char>(c))) continue;
    if (absl::ascii_isdigit(static_cast<unsigned char>(c)) || c == '+' ||
        c == '-' || c == '.') {
      if (i == 0) break;
      continue;
    }
    if (c == ':') {
      if (i == 0) return fail("missing protocol scheme");
      u.scheme = absl::AsciiStrToLower(rest.substr(0, i));
      rest.remove_prefix(i + 1);
    }
    break;
  }
  if (absl::EndsWith(rest, "?") &&
      std::count(rest.begin(), rest.end(), '?') == 1) {
    u.has_query = true;
    rest.remove_suffix(1);
  } else if (size_t q = rest.find('?'); q != absl::string_view::npos) {
    u.has_query = true;
    u.query = std::string(rest.substr(q + 1));
    rest = rest.substr(0, q);
  }
  if (!absl::StartsWith(rest, "/")) {
    if (!u.scheme.empty()) {
      u.path = "";  // opaque URL ("scheme:opaque"): no host, no path
      return u;
    }
    const absl::string_view segment = rest.substr(0, rest.find('/'));
    if (segment.find(':') != absl::string_view::npos) {
      return fail("first path segment in URL cannot contain colon");
    }
  }
  if ((!u.scheme.empty() || !absl::StartsWith(rest, "///")) &&
      absl::StartsWith(rest, "//")) {
    rest.remove_prefix(2);
    size_t slash = rest.find('/');
    absl::string_view authority = rest.substr(0, slash);
    rest = slash == absl::string_view::npos ? absl::string_view()
                                            : rest.substr(slash);
    if (size_t at = authority.rfind('@'); at != absl::string_view::npos) {
      authority.remove_prefix(at + 1);
    }
    if (absl::StartsWith(authority, "[")) {
      const size_t close = authority.rfind(']');
      if (close == absl::string_view::npos) return fail("missing ']' in host");
      const absl::string_view colon_port = authority.substr(close + 1);
      if (!ValidOptionalPort(colon_port)) {
        return fail(
            absl::StrCat("invalid port ", GoQuote(colon_port), " after host"));
      }
    } else if (size_t c = authority.rfind(':'); c != absl::string_view::npos) {
      const absl::string_view colon_port = authority.substr(c);
      if (!ValidOptionalPort(colon_port)) {
        return fail(
            absl::StrCat("invalid port ", GoQuote(colon_port), " after host"));
      }
    }
    u.host = std::string(authority);
  }
  u.path = std::string(rest);
  return u;
}

// net.SplitHostPort; host loses the brackets of an IPv6 literal.
bool SplitHostPort(absl::string_view hp, std::string* host, std::string* port) {
  const size_t i = hp.rfind(':');
  if (i == absl::string_view::npos) return false;  // missing port
  size_t j = 0, k = 0;
  absl::string_view h;
  if (!hp.empty() && hp[0] == '[') {
    const size_t end = hp.find(']');
    if (end == absl::string_view::npos) return false;
    if (end + 1 == hp.size()) return false;  // missing port
    if (end + 1 != i) return false;          // too many colons / missing
    h = hp.substr(1, end - 1);
    j = 1;
    k = end + 1;
  } else {
    h = hp.substr(0, i);
    if (h.find(':') != absl::string_view::npos) return false;  // too many
  }
  if (hp.substr(j).find('[') != absl::string_view::npos) return false;
  if (hp.substr(k).find(']') != absl::string_view::npos) return false;
  *host = std::string(h);
  *port = std::string(hp.substr(i + 1));
  return true;
}

absl::StatusOr<Url> ParseOneUrl(absl::string_view in) {
  in = absl::StripAsciiWhitespace(in);
  absl::StatusOr<GoUrl> g = GoUrlParse(in);
  if (!g.ok()) return g.status();
  if (g->scheme != "http" && g->scheme != "https" && g->scheme != "unix" &&
      g->scheme != "unixs") {
    return absl::InvalidArgumentError(
        absl::StrCat("URL scheme must be http, https, unix, or unixs: ", in));
  }
  Url u;
  std::string port;
  if (!SplitHostPort(g->host, &u.host, &port)) {
    return absl::InvalidArgumentError(
        absl::StrCat("URL address does not have the form \"host:port\": ", in));
  }
  if (!g->path.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("URL must not contain a path: ", in));
  }
  u.scheme = g->scheme;
  u.port = 0;
  for (char c : port) {
    u.port = u.port > 100000000 ? u.port : u.port * 10 + (c - '0');
  }
  u.raw = absl::StrCat(g->scheme, "://", g->host);
  if (g->has_query) absl::StrAppend(&u.raw, "?", g->query);
  if (!g->fragment.empty()) absl::StrAppend(&u.raw, "#", g->fragment);
  return u;
}

// types.NewURLs: each element checked, the list sorted by its text.
absl::StatusOr<std::vector<Url>> NewUrls(absl::string_view list) {
  std::vector<Url> out;
  for (absl::string_view part : absl::StrSplit(list, ',')) {
    absl::StatusOr<Url> u = ParseOneUrl(part);
    if (!u.ok()) return u.status();
    out.push_back(*std::move(u));
  }
  std::stable_sort(out.begin(), out.end(),
                   [](const Url& a, const Url& b) { return a.raw < b.raw; });
  return out;
}

bool IsIp(const std::string& host) {
  unsigned char buf[16];
  return inet_pton(AF_INET, host.c_str(), buf) == 1 ||
         inet_pton(AF_INET6, host.c_str(), buf) == 1;
}

std::vector<std::string> SortedUnique(absl::string_view list) {
  std::set<std::string> s;
  for (absl::string_view p : absl::StrSplit(list, ',')) s.emplace(p);
  return {s.begin(), s.end()};
}

// ---------------------------------------------------------------------------
// The flag table.

// What ParseServerConfig fills: the config plus flags that are not config.
struct Fields {
  ServerConfig c;
  bool print_version = false;
};

using Target =
    std::variant<std::monostate, std::string*, bool*, uint64_t*, int64_t*,
                 uint32_t*, std::vector<Url>*, std::vector<std::string>*>;

// How the command line / ETCD_* value is parsed (Go's flag.Value kinds).
enum class Kind {
  kString,
  kBool,
  kUint,         // Go uint (64 bits): parse error / value out of range
  kInt,          // Go int / int64
  kUint32Value,  // etcd's flags.Uint32Value: strconv's own error text
  kDuration,     // time.Duration, stored in milliseconds
  kUrls,         // flags.UniqueURLs with exception ""
  kCors,         // flags.UniqueURLs with exception "*"
  kUniqueStrings,
  kStrings,  // flags.StringsValue
  kSelective,
  kIgnored,  // flags.IgnoredFlag: a bool flag that only warns
};

// How the config-file key is decoded (the Go field type behind its JSON
// tag), or kNone when the file cannot set the flag.
enum class Yaml {
  kNone,
  kString,
  kBool,
  kUint,
  kUint64,
  kUint32,
  kInt,
  kInt64,
  kDuration,
  kStringList,    // []string
  kStringOrList,  // later etcd's []string; a plain string accepted too
  kUrls,          // comma-separated string, types.NewURLs
  kCors,
  kUniqueStrings,
  kSelective,  // string, checked later (initial-cluster-state, proxy, ...)
};

struct FlagDef {
  const char* name;
  Kind kind;
  Target (*target)(Fields&);
  const char* help_default;  // nullptr: no default shown (etcd shows none)
  const char* section;
  const char* help;
  FlagStatus status;
  const char* note;
  Yaml yaml;
  const char* valids;  // kSelective: '|'-separated
};

#define DETCD_F(member) [](Fields& f) -> Target { return &f.c.member; }
#define DETCD_NONE [](Fields&) -> Target { return std::monostate{}; }

constexpr FlagStatus kImpl = FlagStatus::kImplemented;
constexpr FlagStatus kStore = FlagStatus::kStored;
constexpr FlagStatus kNoEff = FlagStatus::kNoEffect;
constexpr FlagStatus kRef = FlagStatus::kRefused;

constexpr char kMember[] = "Member";
constexpr char kClustering[] = "Clustering";
constexpr char kSecurity[] = "Security";
constexpr char kAuth[] = "Auth";
constexpr char kMonitoring[] = "Profiling and Monitoring";
constexpr char kLogging[] = "Logging";
constexpr char kProxy[] = "v2 Proxy (refused: detcd does not serve the v2 API)";
constexpr char kExperimental[] = "Experimental feature";
constexpr char kUnsafe[] = "Unsafe feature";
constexpr char kDeprecated[] = "TO BE DEPRECATED";
constexpr char kOther[] = "";
// etcd 3.6 reads the v3 discovery settings from a nested
// "discovery-config" block of its config file, which detcd does not.
constexpr char kV3DiscoveryNote[] =
    "etcd 3.6 flag (not read from a config file)";

const FlagDef kFlags[] = {
    {"config-file", Kind::kString, DETCD_F(config_file), "", kOther,
     "YAML configuration file; when given, other flags and ETCD_* variables "
     "are ignored.",
     kImpl, "", Yaml::kNone, nullptr},
    {"version", Kind::kBool,
     [](Fields& f) -> Target { return &f.print_version; }, "false", kOther,
     "Print the version and exit.", kImpl, "", Yaml::kNone, nullptr},

    // Member.
    {"name", Kind::kString, DETCD_F(name), "default", kMember,
     "Human-readable name of this member.", kImpl, "", Yaml::kString, nullptr},
    {"data-dir", Kind::kString, DETCD_F(data_dir), "${name}.etcd", kMember,
     "Directory holding this member's data.", kImpl, "", Yaml::kString,
     nullptr},
    {"wal-dir", Kind::kString, DETCD_F(wal_dir), "", kMember,
     "Separate directory for the write-ahead log.", kStore,
     "the server keeps the WAL under the data dir until this is wired",
     Yaml::kString, nullptr},
    {"snapshot-count", Kind::kUint, DETCD_F(snapshot_count), "100000", kMember,
     "Applied entries between two snapshots.", kImpl, "", Yaml::kUint64,
     nullptr},
    {"heartbeat-interval", Kind::kUint, DETCD_F(heartbeat_interval_ms), "100",
     kMember, "Heartbeat interval in milliseconds.", kImpl, "", Yaml::kUint,
     nullptr},
    {"election-timeout", Kind::kUint, DETCD_F(election_timeout_ms), "1000",
     kMember,
     "Election timeout in milliseconds (at least 5 heartbeats, at most "
     "50000).",
     kImpl, "", Yaml::kUint, nullptr},
    {"initial-election-tick-advance", Kind::kBool,
     DETCD_F(initial_election_tick_advance), "true", kMember,
     "Fast-forward election ticks at boot so the first election comes "
     "sooner.",
     kImpl, "", Yaml::kBool, nullptr},
    {"listen-peer-urls", Kind::kUrls, DETCD_F(listen_peer_urls),
     "http://localhost:2380", kMember, "URLs to listen on for peer traffic.",
     kImpl, "", Yaml::kUrls, nullptr},
    {"listen-client-urls", Kind::kUrls, DETCD_F(listen_client_urls),
     "http://localhost:2379", kMember,
     "URLs to listen on for client traffic (gRPC and HTTP).", kImpl, "",
     Yaml::kUrls, nullptr},
    {"listen-client-http-urls", Kind::kUrls, DETCD_F(listen_client_http_urls),
     "", kMember, "URLs to listen on for HTTP-only client traffic (etcd 3.5).",
     kStore, "etcd 3.5 flag; not yet served on separate listeners", Yaml::kUrls,
     nullptr},
    {"max-snapshots", Kind::kUint, DETCD_F(max_snapshots), "5", kMember,
     "Snapshot files to keep (0 is unlimited).", kStore,
     "file retention is later work", Yaml::kUint, nullptr},
    {"max-wals", Kind::kUint, DETCD_F(max_wals), "5", kMember,
     "WAL files to keep (0 is unlimited).", kStore,
     "file retention is later work", Yaml::kUint, nullptr},
    {"quota-backend-bytes", Kind::kInt, DETCD_F(quota_backend_bytes), "0",
     kMember, "Raise a NOSPACE alarm past this size (0: the default quota).",
     kImpl, "", Yaml::kInt64, nullptr},
    {"backend-batch-interval", Kind::kDuration,
     DETCD_F(backend_batch_interval_ms), "", kMember,
     "Longest time before a backend commit.", kNoEff,
     "tunes etcd's bbolt backend, which detcd does not have", Yaml::kDuration,
     nullptr},
    {"backend-batch-limit", Kind::kInt, DETCD_F(backend_batch_limit), "0",
     kMember, "Most operations before a backend commit.", kNoEff,
     "tunes etcd's bbolt backend, which detcd does not have", Yaml::kInt,
     nullptr},
    {"max-txn-ops", Kind::kUint, DETCD_F(max_txn_ops), "128", kMember,
     "Most operations in one transaction.", kImpl, "", Yaml::kUint, nullptr},
    {"max-request-bytes", Kind::kUint, DETCD_F(max_request_bytes), "1572864",
     kMember, "Largest client request the server accepts, in bytes.", kImpl, "",
     Yaml::kUint, nullptr},
    {"max-concurrent-streams", Kind::kUint32Value,
     DETCD_F(max_concurrent_streams), "math.MaxUint32", kMember,
     "Most concurrent gRPC streams per client connection.", kImpl, "",
     Yaml::kUint32, nullptr},
    {"grpc-keepalive-min-time", Kind::kDuration,
     DETCD_F(grpc_keepalive_min_time_ms), "5s", kMember,
     "Shortest interval a client may ping the server at.", kImpl, "",
     Yaml::kDuration, nullptr},
    {"grpc-keepalive-interval", Kind::kDuration,
     DETCD_F(grpc_keepalive_interval_ms), "2h", kMember,
     "Server-to-client ping interval (0 disables).", kImpl, "", Yaml::kDuration,
     nullptr},
    {"grpc-keepalive-timeout", Kind::kDuration,
     DETCD_F(grpc_keepalive_timeout_ms), "20s", kMember,
     "Wait for a ping answer before closing (0 disables).", kImpl, "",
     Yaml::kDuration, nullptr},
    {"native-grpc", Kind::kBool, DETCD_F(native_grpc), "true", kMember,
     "Serve gRPC on detcd's own HTTP/2 transport (false: gRPC C++'s).",
     kImpl,
     "detcd only: unary methods, Watch and LeaseKeepAlive natively, other "
     "methods relayed (shim/grpc_h2.h)",
     Yaml::kBool, nullptr},
    {"socket-reuse-port", Kind::kBool, DETCD_F(socket_reuse_port), "false",
     kMember, "Set SO_REUSEPORT on listeners (etcd 3.5).", kStore,
     "etcd 3.5 flag", Yaml::kBool, nullptr},
    {"socket-reuse-address", Kind::kBool, DETCD_F(socket_reuse_address),
     "false", kMember, "Set SO_REUSEADDR on listeners (etcd 3.5).", kStore,
     "etcd 3.5 flag", Yaml::kBool, nullptr},
    {"raft-read-timeout", Kind::kDuration, DETCD_F(raft_read_timeout_ms), "5s",
     kMember, "Read timeout on peer connections (etcd 3.5).", kStore,
     "etcd 3.5 flag", Yaml::kDuration, nullptr},
    {"raft-write-timeout", Kind::kDuration, DETCD_F(raft_write_timeout_ms),
     "5s", kMember, "Write timeout on peer connections (etcd 3.5).", kStore,
     "etcd 3.5 flag", Yaml::kDuration, nullptr},

    // Clustering.
    {"initial-advertise-peer-urls", Kind::kUrls,
     DETCD_F(initial_advertise_peer_urls), "http://localhost:2380", kClustering,
     "This member's peer URLs, as told to the rest of the cluster.", kImpl, "",
     Yaml::kUrls, nullptr},
    {"initial-cluster", Kind::kString, DETCD_F(initial_cluster_string),
     kDefaultInitialCluster, kClustering,
     "Members of the cluster to bootstrap: name=peerURL,... (a name may "
     "repeat).",
     kImpl, "", Yaml::kString, nullptr},
    {"initial-cluster-state", Kind::kSelective, DETCD_F(initial_cluster_state),
     "new", kClustering, "'new' to bootstrap, 'existing' to join.", kImpl, "",
     Yaml::kSelective, "new|existing"},
    {"initial-cluster-token", Kind::kString, DETCD_F(initial_cluster_token),
     "etcd-cluster", kClustering,
     "Token that keeps clusters bootstrapped side by side apart.", kImpl, "",
     Yaml::kString, nullptr},
    {"advertise-client-urls", Kind::kUrls, DETCD_F(advertise_client_urls),
     "http://localhost:2379", kClustering,
     "This member's client URLs, as told to clients.", kImpl, "", Yaml::kUrls,
     nullptr},
    {"discovery", Kind::kString, DETCD_F(discovery), "", kClustering,
     "Discovery service URL to bootstrap the cluster with (etcd's v2 "
     "discovery protocol).",
     kImpl, "", Yaml::kString, nullptr},
    {"discovery-fallback", Kind::kSelective, DETCD_F(discovery_fallback),
     "proxy", kClustering,
     "What to do when the discovery cluster is full: 'exit' or 'proxy' (v2 "
     "proxy: detcd exits).",
     kRef, "'proxy' is refused when the cluster is full: detcd has no v2 proxy",
     Yaml::kSelective, "exit|proxy"},
    {"discovery-proxy", Kind::kString, DETCD_F(discovery_proxy), "",
     kClustering, "HTTP proxy for the discovery service.", kImpl, "",
     Yaml::kString, nullptr},
    {"discovery-srv", Kind::kString, DETCD_F(discovery_srv), "", kClustering,
     "DNS domain whose SRV records list the cluster.", kImpl,
     "https and http records are combined, as in etcd 3.5", Yaml::kString,
     nullptr},
    {"discovery-srv-name", Kind::kString, DETCD_F(discovery_srv_name), "",
     kClustering, "Suffix of the SRV names queried.", kImpl, "", Yaml::kString,
     nullptr},
    // etcd 3.6's v3 discovery.
    {"discovery-endpoints", Kind::kUniqueStrings, DETCD_F(discovery_endpoints),
     "", kClustering,
     "V3 discovery: gRPC endpoints of the discovery service (etcd 3.6).", kImpl,
     kV3DiscoveryNote, Yaml::kNone, nullptr},
    {"discovery-token", Kind::kString, DETCD_F(discovery_token), "",
     kClustering, "V3 discovery: token of the cluster to bootstrap.", kImpl,
     kV3DiscoveryNote, Yaml::kNone, nullptr},
    {"discovery-dial-timeout", Kind::kDuration,
     DETCD_F(discovery_dial_timeout_ms), "2s", kClustering,
     "V3 discovery: dial timeout of the client.", kImpl, kV3DiscoveryNote,
     Yaml::kNone, nullptr},
    {"discovery-request-timeout", Kind::kDuration,
     DETCD_F(discovery_request_timeout_ms), "5s", kClustering,
     "V3 discovery: timeout of each discovery request.", kImpl,
     kV3DiscoveryNote, Yaml::kNone, nullptr},
    {"discovery-keepalive-time", Kind::kDuration,
     DETCD_F(discovery_keepalive_time_ms), "2s", kClustering,
     "V3 discovery: keepalive time of the client's connections.", kImpl,
     kV3DiscoveryNote, Yaml::kNone, nullptr},
    {"discovery-keepalive-timeout", Kind::kDuration,
     DETCD_F(discovery_keepalive_timeout_ms), "6s", kClustering,
     "V3 discovery: keepalive timeout of the client's connections.", kImpl,
     kV3DiscoveryNote, Yaml::kNone, nullptr},
    {"discovery-insecure-transport", Kind::kBool,
     DETCD_F(discovery_insecure_transport), "true", kClustering,
     "V3 discovery: no transport security.", kImpl, kV3DiscoveryNote,
     Yaml::kNone, nullptr},
    {"discovery-insecure-skip-tls-verify", Kind::kBool,
     DETCD_F(discovery_insecure_skip_tls_verify), "false", kClustering,
     "V3 discovery: skip the server certificate check (testing only).", kImpl,
     kV3DiscoveryNote, Yaml::kNone, nullptr},
    {"discovery-cert", Kind::kString, DETCD_F(discovery_cert), "", kClustering,
     "V3 discovery: client TLS certificate file.", kImpl, kV3DiscoveryNote,
     Yaml::kNone, nullptr},
    {"discovery-key", Kind::kString, DETCD_F(discovery_key), "", kClustering,
     "V3 discovery: client TLS key file.", kImpl, kV3DiscoveryNote, Yaml::kNone,
     nullptr},
    {"discovery-cacert", Kind::kString, DETCD_F(discovery_cacert), "",
     kClustering, "V3 discovery: CA bundle to verify the servers with.", kImpl,
     kV3DiscoveryNote, Yaml::kNone, nullptr},
    {"discovery-user", Kind::kString, DETCD_F(discovery_user), "", kClustering,
     "V3 discovery: username[:password] to authenticate with.", kImpl,
     kV3DiscoveryNote, Yaml::kNone, nullptr},
    {"discovery-password", Kind::kString, DETCD_F(discovery_password), "",
     kClustering, "V3 discovery: password (when not in --discovery-user).",
     kImpl, kV3DiscoveryNote, Yaml::kNone, nullptr},
    {"strict-reconfig-check", Kind::kBool, DETCD_F(strict_reconfig_check),
     "true", kClustering, "Reject membership changes that would lose quorum.",
     kImpl, "", Yaml::kBool, nullptr},
    {"pre-vote", Kind::kBool, DETCD_F(pre_vote), "false", kClustering,
     "Run raft's pre-vote phase before campaigning.", kImpl, "", Yaml::kBool,
     nullptr},
    {"auto-compaction-retention", Kind::kString,
     DETCD_F(auto_compaction_retention), "0", kClustering,
     "How much history auto compaction keeps (0 disables).", kImpl, "",
     Yaml::kString, nullptr},
    {"auto-compaction-mode", Kind::kString, DETCD_F(auto_compaction_mode),
     "periodic", kClustering,
     "'periodic' (retention is a duration, hours by default) or 'revision'.",
     kImpl, "", Yaml::kString, nullptr},
    {"enable-v2", Kind::kBool, DETCD_F(enable_v2), "false", kClustering,
     "Serve the v2 API: detcd refuses true.", kRef,
     "detcd serves only the v3 API; false is accepted", Yaml::kBool, nullptr},
    {"v2-deprecation", Kind::kSelective, DETCD_F(v2_deprecation), "not-yet",
     kClustering, "v2 store deprecation phase (etcd 3.5).", kNoEff,
     "detcd has no v2 store", Yaml::kSelective,
     "not-yet|write-only|write-only-drop-data|gone"},

    // Security.
    {"cert-file", Kind::kString, DETCD_F(client_tls.cert_file), "", kSecurity,
     "Client-side TLS certificate.", kImpl, "", Yaml::kNone, nullptr},
    {"key-file", Kind::kString, DETCD_F(client_tls.key_file), "", kSecurity,
     "Client-side TLS key.", kImpl, "", Yaml::kNone, nullptr},
    {"client-cert-auth", Kind::kBool, DETCD_F(client_tls.client_cert_auth),
     "false", kSecurity, "Require client certificates.", kImpl, "", Yaml::kNone,
     nullptr},
    {"client-crl-file", Kind::kString, DETCD_F(client_tls.crl_file), "",
     kSecurity, "Revocation list for client certificates.", kImpl,
     "", Yaml::kString, nullptr},
    {"client-cert-allowed-hostname", Kind::kStrings,
     DETCD_F(client_tls.allowed_hostname), "", kSecurity,
     "Hostname a client certificate must carry.", kImpl, "",
     Yaml::kStringOrList, nullptr},
    {"trusted-ca-file", Kind::kString, DETCD_F(client_tls.trusted_ca_file), "",
     kSecurity, "CA that signs client certificates.", kImpl, "", Yaml::kNone,
     nullptr},
    {"auto-tls", Kind::kBool, DETCD_F(client_tls.auto_tls), "false", kSecurity,
     "Client TLS with a generated self-signed certificate.", kImpl,
     "", Yaml::kNone, nullptr},
    {"client-cert-file", Kind::kString, DETCD_F(client_tls.client_cert_file),
     "", kSecurity, "Certificate used as a TLS client (etcd 3.5).", kStore,
     "etcd 3.5 flag", Yaml::kNone, nullptr},
    {"client-key-file", Kind::kString, DETCD_F(client_tls.client_key_file), "",
     kSecurity, "Key used as a TLS client (etcd 3.5).", kStore, "etcd 3.5 flag",
     Yaml::kNone, nullptr},
    {"peer-cert-file", Kind::kString, DETCD_F(peer_tls.cert_file), "",
     kSecurity, "Peer-side TLS certificate.", kImpl, "", Yaml::kNone, nullptr},
    {"peer-key-file", Kind::kString, DETCD_F(peer_tls.key_file), "", kSecurity,
     "Peer-side TLS key.", kImpl, "", Yaml::kNone, nullptr},
    {"peer-client-cert-auth", Kind::kBool, DETCD_F(peer_tls.client_cert_auth),
     "false", kSecurity, "Require peer certificates.", kImpl, "", Yaml::kNone,
     nullptr},
    {"peer-trusted-ca-file", Kind::kString, DETCD_F(peer_tls.trusted_ca_file),
     "", kSecurity, "CA that signs peer certificates.", kImpl, "", Yaml::kNone,
     nullptr},
    {"peer-cert-allowed-cn", Kind::kStrings, DETCD_F(peer_tls.allowed_cn), "",
     kSecurity, "Common name a peer certificate must carry.", kImpl,
     "", Yaml::kStringOrList, nullptr},
    {"peer-cert-allowed-hostname", Kind::kStrings,
     DETCD_F(peer_tls.allowed_hostname), "", kSecurity,
     "Hostname a peer certificate must carry.", kImpl, "",
     Yaml::kStringOrList, nullptr},
    {"peer-auto-tls", Kind::kBool, DETCD_F(peer_tls.auto_tls), "false",
     kSecurity, "Peer TLS with a generated self-signed certificate.", kImpl,
     "", Yaml::kNone, nullptr},
    {"peer-crl-file", Kind::kString, DETCD_F(peer_tls.crl_file), "", kSecurity,
     "Revocation list for peer certificates.", kImpl,
     "", Yaml::kString, nullptr},
    {"peer-client-cert-file", Kind::kString, DETCD_F(peer_tls.client_cert_file),
     "", kSecurity, "Certificate used to dial peers (etcd 3.5).", kStore,
     "etcd 3.5 flag", Yaml::kNone, nullptr},
    {"peer-client-key-file", Kind::kString, DETCD_F(peer_tls.client_key_file),
     "", kSecurity, "Key used to dial peers (etcd 3.5).", kStore,
     "etcd 3.5 flag", Yaml::kNone, nullptr},
    {"self-signed-cert-validity", Kind::kUint,
     DETCD_F(self_signed_cert_validity), "1", kSecurity,
     "Years generated certificates stay valid (etcd 3.5).", kImpl,
     "etcd 3.5 flag", Yaml::kUint, nullptr},
    {"cipher-suites", Kind::kStrings, DETCD_F(cipher_suites), "", kSecurity,
     "TLS cipher suites, comma-separated (empty: the library's list).", kImpl,
     "Go's names, mapped to OpenSSL's; TLS 1.3 suites are not configurable, as in Go",
     Yaml::kStringList, nullptr},
    {"cors", Kind::kCors, DETCD_F(cors), "*", kSecurity,
     "Origins allowed by CORS (empty or * allows all).", kNoEff,
     "detcd's HTTP endpoints send no CORS headers", Yaml::kCors, nullptr},
    {"host-whitelist", Kind::kUniqueStrings, DETCD_F(host_whitelist), "*",
     kSecurity,
     "Host headers accepted on plain-HTTP requests (empty or * allows all).",
     kImpl, "others get etcd's 421; TLS requests are not checked",
     Yaml::kUniqueStrings, nullptr},
    {"tls-min-version", Kind::kString, DETCD_F(tls_min_version), "", kSecurity,
     "Lowest TLS version (etcd 3.5: TLS1.2 or TLS1.3).", kImpl,
     "etcd 3.5 flag; empty means TLS1.2", Yaml::kString, nullptr},
    {"tls-max-version", Kind::kString, DETCD_F(tls_max_version), "", kSecurity,
     "Highest TLS version (etcd 3.5).", kImpl, "etcd 3.5 flag", Yaml::kString,
     nullptr},

    // Auth.
    {"auth-token", Kind::kString, DETCD_F(auth_token), "simple", kAuth,
     "Token type and options: 'simple' or 'jwt,...'.", kImpl,
     "simple, or jwt with pub-key, priv-key, sign-method, ttl",
     Yaml::kString, nullptr},
    {"bcrypt-cost", Kind::kUint, DETCD_F(bcrypt_cost), "10", kAuth,
     "bcrypt cost for password hashes (4 to 31).", kImpl,
     "libxcrypt's bcrypt ($2b$)", Yaml::kUint, nullptr},
    {"auth-token-ttl", Kind::kUint, DETCD_F(auth_token_ttl), "300", kAuth,
     "Lifetime of a simple token, in seconds.", kImpl,
     "idle time: each use restarts it, as etcd's", Yaml::kUint, nullptr},

    // Profiling and monitoring.
    {"enable-pprof", Kind::kBool, DETCD_F(enable_pprof), "false", kMonitoring,
     "Serve Go's pprof endpoints.", kNoEff,
     "Go runtime profiling; detcd is not a Go program", Yaml::kBool, nullptr},
    {"metrics", Kind::kString, DETCD_F(metrics), "basic", kMonitoring,
     "'basic' or 'extensive' (adds histograms).", kImpl,
     "extensive adds grpc_server_handling_seconds, as etcd's",
     Yaml::kString, nullptr},
    {"listen-metrics-urls", Kind::kUrls, DETCD_F(listen_metrics_urls), "",
     kMonitoring, "Extra URLs serving /metrics and /health only.", kImpl, "",
     Yaml::kUrls, nullptr},
    {"trace-file", Kind::kString, DETCD_F(trace_file), "", kMonitoring,
     "Write this member's raft, WAL, apply and request timeline to this "
     "file as Chrome trace JSON (Perfetto).",
     kImpl, "detcd only: the simulator's trace format (shim/trace_file.h)",
     Yaml::kString, nullptr},
    {"enable-grpc-gateway", Kind::kBool, DETCD_F(enable_grpc_gateway), "true",
     kMonitoring, "Serve the JSON gateway (/v3/...) on client URLs.", kStore,
     "the JSON gateway is later work", Yaml::kBool, nullptr},

    // Logging.
    {"logger", Kind::kString, DETCD_F(logger), "zap", kLogging,
     "'zap' (JSON lines) or 'capnslog' (deprecated).", kImpl,
     "etcd 3.4 defaults to capnslog; detcd to zap", Yaml::kString, nullptr},
    {"log-outputs", Kind::kUniqueStrings, DETCD_F(log_outputs), "default",
     kLogging,
     "Where logs go: default, stderr, stdout, systemd/journal or file "
     "paths, comma-separated.",
     kImpl, "", Yaml::kStringList, nullptr},
    {"log-level", Kind::kString, DETCD_F(log_level), "info", kLogging,
     "debug, info, warn, error, panic or fatal.", kImpl, "", Yaml::kString,
     nullptr},
    {"log-format", Kind::kString, DETCD_F(log_format), "json", kLogging,
     "Log format for zap: json or console.", kImpl, "etcd 3.5 flag",
     Yaml::kString, nullptr},
    {"enable-log-rotation", Kind::kBool, DETCD_F(enable_log_rotation), "false",
     kLogging, "Rotate a single file log output (etcd 3.5).", kStore,
     "etcd 3.5 flag", Yaml::kBool, nullptr},
    {"log-rotation-config-json", Kind::kString,
     DETCD_F(log_rotation_config_json),
     R"({"maxsize": 100, "maxage": 0, "maxbackups": 0, "localtime": false, "compress": false})",
     kLogging, "Log rotation settings (etcd 3.5).", kStore, "etcd 3.5 flag",
     Yaml::kString, nullptr},

    // v2 proxy.
    {"proxy", Kind::kSelective, DETCD_F(proxy), "off", kProxy,
     "'off', 'readonly' or 'on': detcd accepts only 'off'.", kRef,
     "the v2 proxy serves the v2 API, which detcd does not", Yaml::kSelective,
     "off|readonly|on"},
    {"proxy-failure-wait", Kind::kUint, DETCD_F(proxy_failure_wait_ms), "5000",
     kProxy, "v2 proxy: ms an endpoint stays failed.", kNoEff,
     "tunes the v2 proxy, which cannot be turned on", Yaml::kUint, nullptr},
    {"proxy-refresh-interval", Kind::kUint, DETCD_F(proxy_refresh_interval_ms),
     "30000", kProxy, "v2 proxy: ms between endpoint refreshes.", kNoEff,
     "tunes the v2 proxy, which cannot be turned on", Yaml::kUint, nullptr},
    {"proxy-dial-timeout", Kind::kUint, DETCD_F(proxy_dial_timeout_ms), "1000",
     kProxy, "v2 proxy: dial timeout in ms.", kNoEff,
     "tunes the v2 proxy, which cannot be turned on", Yaml::kUint, nullptr},
    {"proxy-write-timeout", Kind::kUint, DETCD_F(proxy_write_timeout_ms),
     "5000", kProxy, "v2 proxy: write timeout in ms.", kNoEff,
     "tunes the v2 proxy, which cannot be turned on", Yaml::kUint, nullptr},
    {"proxy-read-timeout", Kind::kUint, DETCD_F(proxy_read_timeout_ms), "0",
     kProxy, "v2 proxy: read timeout in ms.", kNoEff,
     "tunes the v2 proxy, which cannot be turned on", Yaml::kUint, nullptr},

    // Experimental.
    {"experimental-initial-corrupt-check", Kind::kBool,
     DETCD_F(experimental_initial_corrupt_check), "false", kExperimental,
     "Check data against peers before serving.", kImpl, "", Yaml::kBool,
     nullptr},
    {"experimental-corrupt-check-time", Kind::kDuration,
     DETCD_F(experimental_corrupt_check_time_ms), "0s", kExperimental,
     "Interval between cluster corruption checks.", kImpl, "",
     Yaml::kDuration, nullptr},
    {"experimental-enable-v2v3", Kind::kString,
     DETCD_F(experimental_enable_v2v3), "", kExperimental,
     "Serve v2 requests from the v3 store under a prefix: detcd refuses it.",
     kRef, "v2 API emulation; only the empty value is accepted", Yaml::kString,
     nullptr},
    {"experimental-backend-bbolt-freelist-type", Kind::kString,
     DETCD_F(experimental_backend_bbolt_freelist_type), "array", kExperimental,
     "bbolt freelist type.", kNoEff, "detcd has no bbolt backend",
     Yaml::kString, nullptr},
    {"experimental-enable-lease-checkpoint", Kind::kBool,
     DETCD_F(experimental_enable_lease_checkpoint), "false", kExperimental,
     "Leader checkpoints lease TTLs to followers.", kStore,
     "handed to the lessor when wired", Yaml::kBool, nullptr},
    {"experimental-enable-lease-checkpoint-persist", Kind::kBool,
     DETCD_F(experimental_enable_lease_checkpoint_persist), "false",
     kExperimental,
     "Persist checkpointed TTLs (needs --experimental-enable-lease-"
     "checkpoint).",
     kStore, "handed to the lessor when wired", Yaml::kBool, nullptr},
    {"experimental-compaction-batch-limit", Kind::kInt,
     DETCD_F(experimental_compaction_batch_limit), "1000", kExperimental,
     "Revisions deleted per compaction batch.", kStore, "later work",
     Yaml::kInt, nullptr},
    {"experimental-peer-skip-client-san-verification", Kind::kBool,
     DETCD_F(peer_tls.skip_client_san_verify), "false", kExperimental,
     "Skip the SAN check of peer client certificates.", kImpl, "",
     Yaml::kBool, nullptr},
    {"experimental-watch-progress-notify-interval", Kind::kDuration,
     DETCD_F(experimental_watch_progress_notify_interval_ms), "10m",
     kExperimental, "Interval of progress notifications to watchers.", kStore,
     "handed to the watch hub when wired", Yaml::kDuration, nullptr},
    {"experimental-warning-apply-duration", Kind::kDuration,
     DETCD_F(experimental_warning_apply_duration_ms), "100ms", kExperimental,
     "Warn when applying a request takes longer.", kStore, "later work",
     Yaml::kDuration, nullptr},
    {"experimental-compact-hash-check-enabled", Kind::kBool,
     DETCD_F(experimental_compact_hash_check_enabled), "false", kExperimental,
     "Leader compares compaction hashes (etcd 3.5).", kStore, "etcd 3.5 flag",
     Yaml::kBool, nullptr},
    {"experimental-compact-hash-check-time", Kind::kDuration,
     DETCD_F(experimental_compact_hash_check_time_ms), "1m", kExperimental,
     "Interval of compaction hash checks (etcd 3.5).", kStore, "etcd 3.5 flag",
     Yaml::kDuration, nullptr},
    {"experimental-compaction-sleep-interval", Kind::kDuration,
     DETCD_F(experimental_compaction_sleep_interval_ms), "10ms", kExperimental,
     "Pause between compaction batches (etcd 3.5).", kStore, "etcd 3.5 flag",
     Yaml::kDuration, nullptr},
    {"experimental-downgrade-check-time", Kind::kDuration,
     DETCD_F(experimental_downgrade_check_time_ms), "5s", kExperimental,
     "Interval of downgrade status checks (etcd 3.5).", kNoEff,
     "detcd has one version; nothing to downgrade", Yaml::kDuration, nullptr},
    {"experimental-memory-mlock", Kind::kBool,
     DETCD_F(experimental_memory_mlock), "false", kExperimental,
     "Lock backend pages in RAM (etcd 3.5).", kNoEff,
     "detcd has no bbolt backend", Yaml::kBool, nullptr},
    {"experimental-txn-mode-write-with-shared-buffer", Kind::kBool,
     DETCD_F(experimental_txn_mode_write_with_shared_buffer), "true",
     kExperimental, "bbolt read buffer sharing (etcd 3.5).", kNoEff,
     "detcd has no bbolt backend", Yaml::kBool, nullptr},
    {"experimental-bootstrap-defrag-threshold-megabytes", Kind::kUint,
     DETCD_F(experimental_bootstrap_defrag_threshold_megabytes), "0",
     kExperimental, "Defragment at boot past this gain (etcd 3.5).", kNoEff,
     "detcd has no bbolt backend", Yaml::kUint, nullptr},
    {"experimental-stop-grpc-service-on-defrag", Kind::kBool,
     DETCD_F(experimental_stop_grpc_service_on_defrag), "false", kExperimental,
     "Report not-serving during defrag (etcd 3.5).", kStore, "etcd 3.5 flag",
     Yaml::kBool, nullptr},
    {"experimental-snapshot-catchup-entries", Kind::kUint,
     DETCD_F(experimental_snapshot_catchup_entries), "5000", kExperimental,
     "Entries kept after a snapshot for slow followers (etcd 3.5).", kStore,
     "etcd 3.5 flag", Yaml::kUint64, nullptr},
    {"experimental-max-learners", Kind::kInt,
     DETCD_F(experimental_max_learners), "1", kExperimental,
     "Most learners in the cluster (etcd 3.5).", kStore, "etcd 3.5 flag",
     Yaml::kInt, nullptr},
    {"experimental-wait-cluster-ready-timeout", Kind::kDuration,
     DETCD_F(experimental_wait_cluster_ready_timeout_ms), "5s", kExperimental,
     "Wait for quorum before serving (etcd 3.5).", kStore, "etcd 3.5 flag",
     Yaml::kDuration, nullptr},
    {"experimental-warning-unary-request-duration", Kind::kDuration,
     DETCD_F(experimental_warning_unary_request_duration_ms), "300ms",
     kExperimental, "Warn when a unary request takes longer (etcd 3.5).",
     kStore, "etcd 3.5 flag", Yaml::kDuration, nullptr},
    {"experimental-enable-distributed-tracing", Kind::kBool,
     DETCD_F(experimental_enable_distributed_tracing), "false", kExperimental,
     "OpenTelemetry tracing (etcd 3.5).", kNoEff,
     "detcd has no OpenTelemetry exporter", Yaml::kBool, nullptr},
    {"experimental-distributed-tracing-address", Kind::kString,
     DETCD_F(experimental_distributed_tracing_address), "localhost:4317",
     kExperimental, "Tracing collector address (etcd 3.5).", kNoEff,
     "detcd has no OpenTelemetry exporter", Yaml::kString, nullptr},
    {"experimental-distributed-tracing-service-name", Kind::kString,
     DETCD_F(experimental_distributed_tracing_service_name), "etcd",
     kExperimental, "Tracing service name (etcd 3.5).", kNoEff,
     "detcd has no OpenTelemetry exporter", Yaml::kString, nullptr},
    {"experimental-distributed-tracing-instance-id", Kind::kString,
     DETCD_F(experimental_distributed_tracing_instance_id), "", kExperimental,
     "Tracing instance id (etcd 3.5).", kNoEff,
     "detcd has no OpenTelemetry exporter", Yaml::kString, nullptr},
    {"experimental-distributed-tracing-sampling-rate", Kind::kInt,
     DETCD_F(experimental_distributed_tracing_sampling_rate), "0",
     kExperimental, "Samples per million spans (etcd 3.5).", kNoEff,
     "detcd has no OpenTelemetry exporter", Yaml::kInt, nullptr},

    // Unsafe.
    {"force-new-cluster", Kind::kBool, DETCD_F(force_new_cluster), "false",
     kUnsafe, "Restart as a new one-member cluster keeping the data.", kImpl,
     "", Yaml::kBool, nullptr},
    {"unsafe-no-fsync", Kind::kBool, DETCD_F(unsafe_no_fsync), "false", kUnsafe,
     "Skip fsync: loses data on a crash.", kStore,
     "handed to the disk layer when wired", Yaml::kBool, nullptr},

    // Deprecated in 3.4.
    {"debug", Kind::kBool, DETCD_F(debug), "false", kDeprecated,
     "Debug-level logging; use --log-level=debug.", kImpl,
     "deprecated; warned about", Yaml::kBool, nullptr},
    {"log-package-levels", Kind::kString, DETCD_F(log_package_levels), "",
     kDeprecated, "Per-package capnslog levels.", kNoEff,
     "deprecated; detcd has no capnslog packages", Yaml::kString, nullptr},
    {"log-output", Kind::kUniqueStrings, DETCD_F(deprecated_log_output),
     "default", kDeprecated, "Deprecated spelling of --log-outputs.", kImpl,
     "deprecated; follows etcd 3.4's reconciliation with --log-outputs",
     Yaml::kStringList, nullptr},
};

#undef DETCD_F
#undef DETCD_NONE

// etcd's long-removed flags: accepted as bool flags that only warn.
const char* const kIgnoredFlags[] = {
    "cluster-active-size",
    "cluster-remove-delay",
    "cluster-sync-interval",
    "config",
    "force",
    "max-result-buffer",
    "max-retry-attempts",
    "peer-heartbeat-interval",
    "peer-election-timeout",
    "retry-interval",
    "snapshot",
    "v",
    "vv",
    "test.coverprofile",
    "test.outputdir",
};

const FlagDef kIgnoredDef = {"",
                             Kind::kIgnored,
                             [](Fields&) -> Target { return std::monostate{}; },
                             nullptr,
                             kOther,
                             "",
                             FlagStatus::kIgnored,
                             "",
                             Yaml::kNone,
                             nullptr};

const FlagDef* FindFlag(absl::string_view name) {
  for (const FlagDef& d : kFlags) {
    if (name == d.name) return &d;
  }
  for (const char* n : kIgnoredFlags) {
    if (name == n) return &kIgnoredDef;
  }
  return nullptr;
}

std::string EnvName(absl::string_view flag) {
  std::string s = absl::StrCat("ETCD_", flag);
  for (char& c : s) c = c == '-' ? '_' : absl::ascii_toupper(c);
  return s;
}

bool IsBoolKind(Kind k) { return k == Kind::kBool || k == Kind::kIgnored; }

// Stores a parsed number into whatever integer field the flag targets,
// saturating where the field is narrower than Go's type.
void AssignUnsigned(const Target& t, uint64_t v) {
  if (auto* p = std::get_if<uint64_t*>(&t)) {
    **p = v;
  } else if (auto* p = std::get_if<int64_t*>(&t)) {
    **p = v > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())
              ? std::numeric_limits<int64_t>::max()
              : static_cast<int64_t>(v);
  } else if (auto* p = std::get_if<uint32_t*>(&t)) {
    **p = v > std::numeric_limits<uint32_t>::max()
              ? std::numeric_limits<uint32_t>::max()
              : static_cast<uint32_t>(v);
  }
}

void AssignSigned(const Target& t, int64_t v) {
  if (auto* p = std::get_if<int64_t*>(&t)) {
    **p = v;
  } else if (auto* p = std::get_if<uint64_t*>(&t)) {
    **p = v < 0 ? 0 : static_cast<uint64_t>(v);
  } else if (auto* p = std::get_if<uint32_t*>(&t)) {
    **p = v < 0 ? 0
          : v > static_cast<int64_t>(std::numeric_limits<uint32_t>::max())
              ? std::numeric_limits<uint32_t>::max()
              : static_cast<uint32_t>(v);
  }
}

int64_t NsToMs(int64_t ns) { return ns / 1000000; }

// Parsing state shared by the flag and ETCD_* stages.
struct State {
  Fields f;
  std::set<std::string> actual;  // flags set so far (Go's FlagSet.actual)
};

// flag.Value.Set for one flag; the error is the Go error's text only.
absl::Status SetFlag(const FlagDef& d, absl::string_view name,
                     absl::string_view value, State& st) {
  const Target t = d.target(st.f);
  switch (d.kind) {
    case Kind::kString:
      *std::get<std::string*>(t) = std::string(value);
      break;
    case Kind::kBool: {
      bool b = false;
      if (!GoParseBool(value, &b))
        return absl::InvalidArgumentError("parse error");
      *std::get<bool*>(t) = b;
      break;
    }
    case Kind::kUint: {
      uint64_t v = 0;
      switch (GoParseUint(value, 64, &v)) {
        case NumErr::kSyntax:
          return absl::InvalidArgumentError("parse error");
        case NumErr::kRange:
          return absl::InvalidArgumentError("value out of range");
        case NumErr::kOk:
          break;
      }
      AssignUnsigned(t, v);
      break;
    }
    case Kind::kInt: {
      int64_t v = 0;
      switch (GoParseInt(value, &v)) {
        case NumErr::kSyntax:
          return absl::InvalidArgumentError("parse error");
        case NumErr::kRange:
          return absl::InvalidArgumentError("value out of range");
        case NumErr::kOk:
          break;
      }
      AssignSigned(t, v);
      break;
    }
    case Kind::kUint32Value: {
      uint64_t v = 0;
      switch (GoParseUint(value, 32, &v)) {
        case NumErr::kSyntax:
          return absl::InvalidArgumentError(
              absl::StrCat("strconv.ParseUint: parsing ", GoQuote(value),
                           ": invalid syntax"));
        case NumErr::kRange:
          return absl::InvalidArgumentError(
              absl::StrCat("strconv.ParseUint: parsing ", GoQuote(value),
                           ": value out of range"));
        case NumErr::kOk:
          break;
      }
      AssignUnsigned(t, v);
      break;
    }
    case Kind::kDuration: {
      int64_t ns = 0;
      if (!GoParseDuration(value, &ns)) {
        return absl::InvalidArgumentError("parse error");
      }
      *std::get<int64_t*>(t) = NsToMs(ns);
      break;
    }
    case Kind::kUrls: {
      // flags.UniqueURLs: "" is an allowed non-URL that changes nothing.
      if (value.empty()) break;
      absl::StatusOr<std::vector<Url>> urls = NewUrls(value);
      if (!urls.ok()) return urls.status();
      *std::get<std::vector<Url>*>(t) = *std::move(urls);
      break;
    }
    case Kind::kCors: {
      auto* v = std::get<std::vector<std::string>*>(t);
      if (value == "*") {
        std::set<std::string> s(v->begin(), v->end());
        s.insert("*");
        v->assign(s.begin(), s.end());
        break;
      }
      if (std::find(v->begin(), v->end(), value) != v->end()) break;
      absl::StatusOr<std::vector<Url>> urls = NewUrls(value);
      if (!urls.ok()) return urls.status();
      std::set<std::string> s;
      for (const Url& u : *urls) s.insert(u.raw);
      v->assign(s.begin(), s.end());
      break;
    }
    case Kind::kUniqueStrings:
      *std::get<std::vector<std::string>*>(t) = SortedUnique(value);
      break;
    case Kind::kStrings: {
      auto* v = std::get<std::vector<std::string>*>(t);
      *v = absl::StrSplit(value, ',');
      // etcd 3.4 holds these as plain strings, where "" means "none".
      if (v->size() == 1 && v->front().empty()) v->clear();
      break;
    }
    case Kind::kSelective: {
      bool ok = false;
      for (absl::string_view v : absl::StrSplit(d.valids, '|'))
        ok |= v == value;
      if (!ok) return absl::InvalidArgumentError("invalid value");
      *std::get<std::string*>(t) = std::string(value);
      break;
    }
    case Kind::kIgnored:
      st.f.c.warnings.push_back(absl::StrFormat(
          "flag \"-%s\" is no longer supported - ignoring.", name));
      break;
  }
  st.actual.insert(std::string(name));
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------
// Help.

constexpr char kUsageHeader[] =
    "Usage:\n"
    "\n"
    "  detcd [flags]\n"
    "    Start a detcd server (an etcd v3 API server).\n"
    "\n"
    "  detcd --version\n"
    "    Show the version of etcd that detcd answers as.\n"
    "\n"
    "  detcd -h | --help\n"
    "    Show this help.\n"
    "\n"
    "  detcd --config-file\n"
    "    Read the configuration from a YAML file; other command line flags "
    "and environment variables are then ignored.\n";

// ---------------------------------------------------------------------------
// Errors.

struct Failure {
  int exit_code;
  std::string output;
  std::string error;
};

// A Validate()-stage error: etcd logs "error verifying flags, ..." and
// exits 1.
Failure VerifyFailure(std::string err) {
  std::string out =
      absl::StrCat("error verifying flags, ", err, ". See 'detcd --help'.\n");
  return Failure{1, std::move(out), std::move(err)};
}

// An error etcd prints on its own line (log.Fatalf, plog.Fatalf, Fprintf).
Failure FatalFailure(std::string err) {
  return Failure{1, absl::StrCat(err, "\n"), std::move(err)};
}

Failure RefusedFailure(std::string err) { return FatalFailure(std::move(err)); }

constexpr char kErrUnsetAdvertise[] =
    "--advertise-client-urls is required when --listen-client-urls is set "
    "explicitly";

// ---------------------------------------------------------------------------
// Config file.

// A YAML scalar as sigs.k8s.io/yaml (go-yaml v2, YAML 1.1) would type it.
enum class ScalarType { kNull, kBool, kInt, kFloat, kString };

struct Scalar {
  ScalarType type = ScalarType::kNull;
  bool b = false;
  bool neg = false;
  uint64_t magnitude = 0;  // kInt; overflowing ints are kFloat
  std::string text;
};

bool ParseYamlInt(absl::string_view s, bool* neg, uint64_t* mag) {
  *neg = false;
  if (!s.empty() && (s[0] == '-' || s[0] == '+')) {
    *neg = s[0] == '-';
    s.remove_prefix(1);
  }
  if (s.empty()) return false;
  int base = 10;
  if (s.size() > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
    base = 16;
    s.remove_prefix(2);
  } else if (s.size() > 2 && s[0] == '0' && (s[1] == 'o' || s[1] == 'O')) {
    base = 8;
    s.remove_prefix(2);
  } else if (s.size() > 2 && s[0] == '0' && (s[1] == 'b' || s[1] == 'B')) {
    base = 2;
    s.remove_prefix(2);
  } else if (s.size() > 1 && s[0] == '0') {
    base = 8;
    s.remove_prefix(1);
  }
  uint64_t v = 0;
  bool any = false;
  for (char c : s) {
    if (c == '_') continue;
    int d = absl::ascii_isdigit(static_cast<unsigned char>(c)) ? c - '0'
            : absl::ascii_isxdigit(static_cast<unsigned char>(c))
                ? absl::ascii_tolower(c) - 'a' + 10
                : 99;
    if (d >= base) return false;
    if (v > (std::numeric_limits<uint64_t>::max() - d) / base) return false;
    v = v * base + d;
    any = true;
  }
  *mag = v;
  return any;
}

bool LooksLikeYamlFloat(absl::string_view s) {
  static const char* const kSpecial[] = {".inf",  ".Inf", ".INF", "+.inf",
                                         "-.inf", ".nan", ".NaN", ".NAN"};
  for (const char* k : kSpecial) {
    if (s == k) return true;
  }
  if (!s.empty() && (s[0] == '-' || s[0] == '+')) s.remove_prefix(1);
  bool digits = false, dot = false;
  size_t i = 0;
  for (;
       i < s.size() && (absl::ascii_isdigit(static_cast<unsigned char>(s[i])) ||
                        s[i] == '_' || (s[i] == '.' && !dot));
       ++i) {
    if (s[i] == '.') {
      dot = true;
    } else if (s[i] != '_') {
      digits = true;
    }
  }
  if (!digits) return false;
  if (i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
    ++i;
    if (i < s.size() && (s[i] == '+' || s[i] == '-')) ++i;
    const size_t exp_start = i;
    while (i < s.size() &&
           absl::ascii_isdigit(static_cast<unsigned char>(s[i])))
      ++i;
    if (i == exp_start) return false;
  }
  return i == s.size();
}

Scalar ClassifyScalar(const YAML::Node& n) {
  Scalar s;
  s.text = n.Scalar();
  if (n.Tag() != "?") {  // quoted, or an explicit tag: a string for us
    s.type = ScalarType::kString;
    return s;
  }
  static const char* const kNull[] = {"", "~", "null", "Null", "NULL"};
  for (const char* k : kNull) {
    if (s.text == k) return s.type = ScalarType::kNull, s;
  }
  static const char* const kTrue[] = {
      "y", "Y", "yes", "Yes", "YES", "true", "True", "TRUE", "on", "On", "ON"};
  static const char* const kFalse[] = {"n",   "N",     "no",    "No",
                                       "NO",  "false", "False", "FALSE",
                                       "off", "Off",   "OFF"};
  for (const char* k : kTrue) {
    if (s.text == k) return s.type = ScalarType::kBool, s.b = true, s;
  }
  for (const char* k : kFalse) {
    if (s.text == k) return s.type = ScalarType::kBool, s.b = false, s;
  }
  if (ParseYamlInt(s.text, &s.neg, &s.magnitude)) {
    s.type = ScalarType::kInt;
    return s;
  }
  if (LooksLikeYamlFloat(s.text)) {
    s.type = ScalarType::kFloat;
    return s;
  }
  s.type = ScalarType::kString;
  return s;
}

const char* GoTypeName(Yaml y) {
  switch (y) {
    case Yaml::kBool:
      return "bool";
    case Yaml::kUint:
      return "uint";
    case Yaml::kUint64:
      return "uint64";
    case Yaml::kUint32:
      return "uint32";
    case Yaml::kInt:
      return "int";
    case Yaml::kInt64:
      return "int64";
    case Yaml::kDuration:
      return "time.Duration";
    case Yaml::kStringList:
    case Yaml::kStringOrList:
      return "[]string";
    default:
      return "string";
  }
}

const char* JsonKind(const YAML::Node& n) {
  if (n.IsSequence()) return "array";
  if (n.IsMap()) return "object";
  Scalar s = ClassifyScalar(n);
  switch (s.type) {
    case ScalarType::kBool:
      return "bool";
    case ScalarType::kInt:
    case ScalarType::kFloat:
      return "number";
    default:
      return "string";
  }
}

std::string UnmarshalError(absl::string_view what, absl::string_view field,
                           absl::string_view type) {
  return absl::StrCat(
      "error unmarshaling JSON: while decoding JSON: json: cannot unmarshal ",
      what, " into Go struct field ", field, " of type ", type);
}

struct FileValues {
  // URL-ish keys are strings processed after decoding, in etcd's order.
  std::map<std::string, std::string> deferred;
  std::set<std::string> present;
};

// Decodes one value into a flag's field as encoding/json would.
std::optional<std::string> DecodeValue(const FlagDef& d, absl::string_view key,
                                       const YAML::Node& n, const Target& t,
                                       absl::string_view struct_name,
                                       FileValues& fv) {
  const std::string field = absl::StrCat(struct_name, ".", key);
  const Yaml y = d.yaml;
  auto mismatch = [&]() {
    return UnmarshalError(JsonKind(n), field, GoTypeName(y));
  };
  if (n.IsNull()) return std::nullopt;  // JSON null leaves the default
  if (y == Yaml::kStringList || y == Yaml::kStringOrList) {
    auto* v = std::get<std::vector<std::string>*>(t);
    if (n.IsScalar()) {
      if (y == Yaml::kStringList) return mismatch();
      *v = absl::StrSplit(n.Scalar(), ',');
      if (v->size() == 1 && v->front().empty()) v->clear();
      return std::nullopt;
    }
    if (!n.IsSequence()) return mismatch();
    v->clear();
    for (const YAML::Node& e : n) {
      if (!e.IsScalar()) {
        return UnmarshalError(JsonKind(e), field, "string");
      }
      v->push_back(e.Scalar());
    }
    return std::nullopt;
  }
  if (!n.IsScalar()) return mismatch();
  const Scalar s = ClassifyScalar(n);
  if (s.type == ScalarType::kNull) return std::nullopt;
  switch (y) {
    case Yaml::kString:
    case Yaml::kSelective:
      *std::get<std::string*>(t) = s.text;
      return std::nullopt;
    case Yaml::kUrls:
    case Yaml::kCors:
    case Yaml::kUniqueStrings:
      fv.deferred[std::string(key)] = s.text;
      return std::nullopt;
    case Yaml::kBool:
      if (s.type != ScalarType::kBool) return mismatch();
      *std::get<bool*>(t) = s.b;
      return std::nullopt;
    default:
      break;
  }
  // Integer kinds.
  if (s.type != ScalarType::kInt) {
    if (s.type == ScalarType::kFloat) {
      return UnmarshalError(absl::StrCat("number ", s.text), field,
                            GoTypeName(y));
    }
    return mismatch();
  }
  const std::string number =
      absl::StrCat("number ", s.neg && s.magnitude ? "-" : "", s.magnitude);
  const bool is_unsigned =
      y == Yaml::kUint || y == Yaml::kUint64 || y == Yaml::kUint32;
  if (is_unsigned) {
    if (s.neg && s.magnitude != 0) {
      return UnmarshalError(number, field, GoTypeName(y));
    }
    if (y == Yaml::kUint32 && s.magnitude > 0xffffffffull) {
      return UnmarshalError(number, field, GoTypeName(y));
    }
    AssignUnsigned(t, s.magnitude);
    return std::nullopt;
  }
  const uint64_t limit = 1ull << 63;
  if ((!s.neg && s.magnitude >= limit) || (s.neg && s.magnitude > limit)) {
    return UnmarshalError(number, field, GoTypeName(y));
  }
  const int64_t v = s.neg ? static_cast<int64_t>(0 - s.magnitude)
                          : static_cast<int64_t>(s.magnitude);
  if (y == Yaml::kDuration) {
    *std::get<int64_t*>(t) = NsToMs(v);
  } else {
    AssignSigned(t, v);
  }
  return std::nullopt;
}

// The client-/peer-transport-security blocks. etcd 3.4 reads cert-file,
// key-file, client-cert-auth, trusted-ca-file and auto-tls; later etcd adds
// the client-cert/key files, allowed CN/hostname and the SAN switch.
std::optional<std::string> DecodeSecurity(absl::string_view key,
                                          const YAML::Node& n, TlsConfig* tls) {
  const std::string field = absl::StrCat("configYAML.", key);
  if (n.IsNull()) return std::nullopt;
  if (!n.IsMap()) {
    return UnmarshalError(JsonKind(n), field, "embed.securityConfig");
  }
  // As in etcd, the block replaces these fields whole.
  TlsConfig out;
  out.crl_file = tls->crl_file;
  for (auto it = n.begin(); it != n.end(); ++it) {
    const std::string k = absl::AsciiStrToLower(it->first.as<std::string>());
    // A copy (a Node is a handle): yaml-cpp's operator-> returns a proxy
    // that dies with this statement, so a reference to it->second dangles
    // (fuzz_config: AddressSanitizer stack-use-after-scope).
    const YAML::Node v = it->second;
    const std::string sub = absl::StrCat(field, ".", k);
    if (v.IsNull()) continue;
    auto str = [&](std::string* dst) -> std::optional<std::string> {
      if (!v.IsScalar()) return UnmarshalError(JsonKind(v), sub, "string");
      *dst = v.Scalar();
      return std::nullopt;
    };
    auto boolean = [&](bool* dst) -> std::optional<std::string> {
      Scalar s;
      if (v.IsScalar()) s = ClassifyScalar(v);
      if (!v.IsScalar() || s.type != ScalarType::kBool) {
        return UnmarshalError(JsonKind(v), sub, "bool");
      }
      *dst = s.b;
      return std::nullopt;
    };
    auto list =
        [&](std::vector<std::string>* dst) -> std::optional<std::string> {
      if (v.IsScalar()) {
        *dst = absl::StrSplit(v.Scalar(), ',');
        return std::nullopt;
      }
      if (!v.IsSequence()) return UnmarshalError(JsonKind(v), sub, "[]string");
      for (const YAML::Node& e : v) {
        if (!e.IsScalar()) return UnmarshalError(JsonKind(e), sub, "string");
        dst->push_back(e.Scalar());
      }
      return std::nullopt;
    };
    std::optional<std::string> err;
    if (k == "cert-file") {
      err = str(&out.cert_file);
    } else if (k == "key-file") {
      err = str(&out.key_file);
    } else if (k == "client-cert-file") {
      err = str(&out.client_cert_file);
    } else if (k == "client-key-file") {
      err = str(&out.client_key_file);
    } else if (k == "client-cert-auth") {
      err = boolean(&out.client_cert_auth);
    } else if (k == "trusted-ca-file") {
      err = str(&out.trusted_ca_file);
    } else if (k == "auto-tls") {
      err = boolean(&out.auto_tls);
    } else if (k == "allowed-cn") {
      err = list(&out.allowed_cn);
    } else if (k == "allowed-hostname") {
      err = list(&out.allowed_hostname);
    } else if (k == "skip-client-san-verify") {
      err = boolean(&out.skip_client_san_verify);
    }
    if (err) return err;
  }
  // Flag-only settings that the file sets as top-level keys survive.
  if (out.allowed_cn.empty()) out.allowed_cn = tls->allowed_cn;
  if (out.allowed_hostname.empty())
    out.allowed_hostname = tls->allowed_hostname;
  out.skip_client_san_verify |= tls->skip_client_san_verify;
  *tls = std::move(out);
  return std::nullopt;
}

std::string ReadErrorText(const std::string& path, int err) {
  std::string msg = std::strerror(err);
  if (!msg.empty()) msg[0] = absl::ascii_tolower(msg[0]);
  return absl::StrCat("open ", path, ": ", msg);
}

std::optional<Failure> LoadConfigFile(const std::string& path, State& st) {
  ServerConfig& c = st.f.c;
  errno = 0;
  std::ifstream in(path, std::ios::binary);
  if (!in) return VerifyFailure(ReadErrorText(path, errno ? errno : ENOENT));
  std::stringstream buf;
  buf << in.rdbuf();
  YAML::Node root;
  try {
    root = YAML::Load(buf.str());
  } catch (const YAML::Exception& e) {
    return VerifyFailure(
        absl::StrFormat("error converting YAML to JSON: yaml: line %d: %s",
                        e.mark.line + 1, e.msg));
  }
  FileValues fv;
  if (!root.IsNull() && !root.IsMap()) {
    return VerifyFailure(absl::StrCat(
        "error unmarshaling JSON: while decoding JSON: json: cannot "
        "unmarshal ",
        JsonKind(root), " into Go value of type embed.configYAML"));
  }
  // Keys are matched case-insensitively, as encoding/json does.
  std::vector<std::pair<std::string, YAML::Node>> security;
  for (auto it = root.begin(); root.IsMap() && it != root.end(); ++it) {
    std::string key;
    try {
      key = absl::AsciiStrToLower(it->first.as<std::string>());
    } catch (const YAML::Exception&) {
      continue;
    }
    fv.present.insert(key);
    if (key == "client-transport-security" ||
        key == "peer-transport-security") {
      security.emplace_back(key, it->second);
      continue;
    }
    const FlagDef* d = FindFlag(key);
    if (d == nullptr || d->yaml == Yaml::kNone) {
      c.warnings.push_back(absl::StrFormat(
          "unknown key %s in config file %s ignored", GoQuote(key), path));
      continue;
    }
    const bool proxy_struct =
        absl::StartsWith(key, "proxy") || key == "discovery-fallback";
    if (auto err =
            DecodeValue(*d, key, it->second, d->target(st.f),
                        proxy_struct ? "configProxy" : "configYAML", fv)) {
      return VerifyFailure(*err);
    }
  }
  for (const auto& [key, node] : security) {
    if (auto err = DecodeSecurity(
            key, node,
            key == "client-transport-security" ? &c.client_tls : &c.peer_tls)) {
      return VerifyFailure(*err);
    }
  }
  // URL lists; a bad one ends etcd at once with this text.
  struct UrlKey {
    const char* key;
    std::vector<Url>* dst;
    const char* label;
  };
  const UrlKey url_keys[] = {
      {"listen-peer-urls", &c.listen_peer_urls, "listen-peer-urls"},
      {"listen-client-urls", &c.listen_client_urls, "listen-client-urls"},
      {"listen-client-http-urls", &c.listen_client_http_urls,
       "listen-client-http-urls"},
      {"initial-advertise-peer-urls", &c.initial_advertise_peer_urls,
       "initial-advertise-peer-urls"},
      // etcd's message really says advertise-peer-urls here.
      {"advertise-client-urls", &c.advertise_client_urls,
       "advertise-peer-urls"},
      {"listen-metrics-urls", &c.listen_metrics_urls, "listen-metrics-urls"},
  };
  for (const UrlKey& u : url_keys) {
    auto it = fv.deferred.find(u.key);
    if (it == fv.deferred.end() || it->second.empty()) continue;
    absl::StatusOr<std::vector<Url>> urls = NewUrls(it->second);
    if (!urls.ok()) {
      return FatalFailure(absl::StrCat("unexpected error setting up ", u.label,
                                       ": ", urls.status().message()));
    }
    *u.dst = *std::move(urls);
  }
  if (auto it = fv.deferred.find("cors");
      it != fv.deferred.end() && !it->second.empty()) {
    std::set<std::string> s;
    if (it->second == "*") {
      s.insert("*");
    } else {
      absl::StatusOr<std::vector<Url>> urls = NewUrls(it->second);
      if (!urls.ok()) {
        // etcd panics here ("new UniqueURLs should never fail").
        return FatalFailure(absl::StrCat("unexpected error setting up cors: ",
                                         urls.status().message()));
      }
      for (const Url& u : *urls) s.insert(u.raw);
    }
    c.cors.assign(s.begin(), s.end());
  }
  if (auto it = fv.deferred.find("host-whitelist");
      it != fv.deferred.end() && !it->second.empty()) {
    c.host_whitelist = SortedUnique(it->second);
  }
  // A discovery setting clears the default initial cluster.
  if ((!c.discovery.empty() || !c.discovery_srv.empty()) &&
      c.initial_cluster_string == kDefaultInitialCluster) {
    c.initial_cluster_string.clear();
  }
  if (c.initial_cluster_state.empty()) c.initial_cluster_state = "new";
  // etcdmain's second pass over the file: proxy settings.
  if (fv.present.count("discovery-fallback") &&
      c.discovery_fallback != "exit" && c.discovery_fallback != "proxy") {
    return FatalFailure(
        "unexpected error setting up discovery-fallback flag: invalid value");
  }
  if (fv.present.count("proxy") && c.proxy != "off" && c.proxy != "readonly" &&
      c.proxy != "on") {
    return FatalFailure("unexpected error setting up proxyFlag: invalid value");
  }
  for (const std::string& k : fv.present) {
    const FlagDef* d = FindFlag(k);
    if (d != nullptr && d->yaml != Yaml::kNone) st.actual.insert(k);
  }
  return std::nullopt;
}

// ---------------------------------------------------------------------------
// Validation (embed.Config.Validate and its setupLogging).

std::optional<std::string> CheckLogLevel(const std::string& level) {
  static const char* const kLevels[] = {"debug",  "info",  "warn", "error",
                                        "dpanic", "panic", "fatal"};
  for (const char* l : kLevels) {
    if (level == l) return std::nullopt;
  }
  // etcd panics on this; detcd reports it.
  return absl::StrCat("unknown level ", GoQuote(level));
}

std::optional<std::string> SetupLogging(ServerConfig& c) {
  std::vector<std::string>& dep = c.deprecated_log_output;
  std::vector<std::string>& outs = c.log_outputs;
  if (dep.size() != outs.size()) {
    if (dep.size() > outs.size()) {
      c.warnings.push_back(
          "'--log-output' flag has been deprecated! Please use "
          "'--log-outputs'!");
      outs = dep;
    } else {
      dep.clear();
    }
  } else {
    if (dep.size() > 1) {
      return "both '--log-output' and '--log-outputs' are set; only set "
             "'--log-outputs'";
    }
    if (dep.empty()) {
      return "either '--log-output' or '--log-outputs' flag must be set";
    }
    if (dep == outs && dep[0] != kDefaultLogOutput) {
      return absl::StrFormat(
          "'--log-output=%s' and '--log-outputs=%s' are incompatible; only "
          "set --log-outputs",
          GoQuoteList(dep), GoQuoteList(outs));
    }
    if (dep != std::vector<std::string>{kDefaultLogOutput}) {
      c.warnings.push_back(absl::StrFormat(
          "Deprecated '--log-output' flag is set to %s; please use "
          "'--log-outputs' flag",
          GoQuoteList(dep)));
    }
  }
  if (c.debug) {
    c.warnings.push_back(
        "Deprecated '--debug' flag is set to true (use '--log-level=debug' "
        "instead");
  }
  if (c.debug && c.log_level != "debug") {
    c.warnings.push_back(absl::StrFormat(
        "Deprecated '--debug' flag is set to true with inconsistent "
        "'--log-level=%s' flag",
        c.log_level));
  }
  if (c.logger == "capnslog") {
    c.warnings.push_back(
        "Deprecated '--logger=capnslog' flag is set; use '--logger=zap' flag "
        "instead");
  }
  if (!c.log_package_levels.empty()) {
    c.warnings.push_back(
        absl::StrFormat("Deprecated '--log-package-levels=%s' flag is set; use "
                        "'--logger=zap' flag instead",
                        c.log_package_levels));
  }
  if (c.logger == "capnslog") {
    if (auto e = CheckLogLevel(c.log_level)) return e;
    // capnslog's --debug is a global debug level.
    if (c.debug) c.log_level = "debug";
    if (outs.size() != 1) {
      return absl::StrFormat(
          "--logger=capnslog supports only 1 value in '--log-outputs', got %s",
          GoQuoteList(outs));
    }
    const std::string& o = outs[0];
    if (o != "stderr" && o != "stdout" && o != kDefaultLogOutput) {
      return absl::StrFormat(
          "unknown log-output %s (only supports \"default\", \"stderr\", "
          "\"stdout\")",
          GoQuote(o));
    }
    return std::nullopt;
  }
  if (c.logger == "zap") {
    if (outs.empty()) outs = {kDefaultLogOutput};
    bool journal = false;
    for (const std::string& o : outs) {
      if (outs.size() > 1 && o == kDefaultLogOutput) {
        return absl::StrFormat("multi logoutput for %s is not supported yet",
                               GoQuote(kDefaultLogOutput));
      }
      journal |= o == "systemd/journal";
    }
    if (journal && outs.size() > 1) {
      for (const std::string& o : outs) {
        if (o != kDefaultLogOutput) {
          return absl::StrFormat(
              "running with systemd/journal but other '--log-outputs' values "
              "(%s) are configured with 'default'; override 'default' value "
              "with something else",
              GoQuoteList(outs));
        }
      }
    }
    return CheckLogLevel(c.log_level);
  }
  return absl::StrCat("unknown logger option ", GoQuote(c.logger));
}

std::optional<std::string> CheckBindUrls(const std::vector<Url>& urls) {
  for (const Url& u : urls) {
    if (u.scheme == "unix" || u.scheme == "unixs") continue;
    if (u.host == "localhost") continue;
    if (!IsIp(u.host)) {
      return absl::StrCat("expected IP in URL for binding (", u.raw, ")");
    }
  }
  return std::nullopt;
}

std::optional<std::string> CheckHostUrls(const std::vector<Url>& urls,
                                         absl::string_view flag) {
  for (const Url& u : urls) {
    if (u.host.empty()) {
      std::vector<std::string> all;
      for (const Url& x : urls) all.push_back(x.raw);
      return absl::StrFormat(
          "--%s %s must be \"host:port\" (unexpected empty host (%s))", flag,
          GoQuote(absl::StrJoin(all, ",")), u.raw);
    }
  }
  return std::nullopt;
}

// etcd 3.5's checks of --tls-min-version / --tls-max-version (its
// tlsutil.GetTLSVersion and embed.Config.Validate texts). "" is the default:
// TLS1.2 as the minimum, no maximum.
std::optional<std::string> CheckTlsVersions(const ServerConfig& c) {
  auto version = [](const std::string& v) -> std::optional<int> {
    if (v.empty()) return 0;
    if (v == "TLS1.2") return 12;
    if (v == "TLS1.3") return 13;
    return std::nullopt;
  };
  std::optional<int> min = version(c.tls_min_version);
  if (!min) {
    return absl::StrFormat(
        "unexpected TLS version %s (must be one of: TLS1.2, TLS1.3)",
        GoQuote(c.tls_min_version));
  }
  std::optional<int> max = version(c.tls_max_version);
  if (!max) {
    return absl::StrFormat(
        "unexpected TLS version %s (must be one of: TLS1.2, TLS1.3)",
        GoQuote(c.tls_max_version));
  }
  if (*max != 0 && std::max(*min, 12) > *max) {
    return absl::StrFormat("min version (%s) is greater than max version (%s)",
                           c.tls_min_version, c.tls_max_version);
  }
  if (*min == 13 && !c.cipher_suites.empty()) {
    return "cipher suites cannot be configured when only TLS1.3 is enabled";
  }
  return std::nullopt;
}

std::optional<std::string> Validate(ServerConfig& c) {
  if (auto e = SetupLogging(c)) return e;
  if (auto e = CheckBindUrls(c.listen_peer_urls)) return e;
  if (auto e = CheckBindUrls(c.listen_client_urls)) return e;
  if (auto e = CheckBindUrls(c.listen_client_http_urls)) return e;
  if (auto e = CheckBindUrls(c.listen_metrics_urls)) return e;
  if (auto e = CheckHostUrls(c.initial_advertise_peer_urls,
                             "initial-advertise-peer-urls")) {
    return e;
  }
  if (auto e =
          CheckHostUrls(c.advertise_client_urls, "advertise-client-urls")) {
    return e;
  }
  const int bootstrap_sources = !c.discovery.empty() +
                                !c.initial_cluster_string.empty() +
                                !c.discovery_srv.empty();
  if (c.initial_cluster_state != "new" &&
      c.initial_cluster_state != "existing") {
    return absl::StrCat("unexpected clusterState ",
                        GoQuote(c.initial_cluster_state));
  }
  if (bootstrap_sources > 1) {
    return "multiple discovery or bootstrap flags are set. Choose one of "
           "\"initial-cluster\", \"discovery\" or \"discovery-srv\"";
  }
  // etcd 3.6's v3 discovery is one more source, with 3.6's texts.
  if (!c.discovery_endpoints.empty() && bootstrap_sources > 0) {
    return "multiple discovery or bootstrap flags are set. Choose one of "
           "\"initial-cluster\", \"discovery-endpoints\" or "
           "\"discovery-srv\"";
  }
  if (c.discovery_token.empty() != c.discovery_endpoints.empty()) {
    return "both --discovery-token and --discovery-endpoints must be set";
  }
  for (const std::string& ep : c.discovery_endpoints) {
    if (absl::StripAsciiWhitespace(ep).empty()) {
      return "--discovery-endpoints must not contain empty endpoints";
    }
  }
  if (c.heartbeat_interval_ms <= 0) {
    return absl::StrFormat("--heartbeat-interval must be >0 (set to %dms)",
                           c.heartbeat_interval_ms);
  }
  if (c.election_timeout_ms <= 0) {
    return absl::StrFormat("--election-timeout must be >0 (set to %dms)",
                           c.election_timeout_ms);
  }
  if (static_cast<__int128>(5) * c.heartbeat_interval_ms >
      c.election_timeout_ms) {
    return absl::StrFormat(
        "--election-timeout[%dms] should be at least as 5 times as "
        "--heartbeat-interval[%dms]",
        c.election_timeout_ms, c.heartbeat_interval_ms);
  }
  if (c.election_timeout_ms > 50000) {
    return absl::StrFormat(
        "--election-timeout[%dms] is too long, and should be set less than "
        "%dms",
        c.election_timeout_ms, 50000);
  }
  if (!c.listen_client_urls.empty() && c.advertise_client_urls.empty()) {
    return std::string(kErrUnsetAdvertise);
  }
  if (!c.auto_compaction_mode.empty() && c.auto_compaction_mode != "periodic" &&
      c.auto_compaction_mode != "revision") {
    return absl::StrCat("unknown auto-compaction-mode ",
                        GoQuote(c.auto_compaction_mode));
  }
  if (!c.experimental_enable_lease_checkpoint_persist &&
      c.experimental_enable_lease_checkpoint) {
    c.warnings.push_back(
        "Detected that checkpointing is enabled without persistence. Consider "
        "enabling experimental-enable-lease-checkpoint-persist");
  }
  if (c.experimental_enable_lease_checkpoint_persist &&
      !c.experimental_enable_lease_checkpoint) {
    return "setting experimental-enable-lease-checkpoint-persist requires "
           "experimental-enable-lease-checkpoint";
  }
  if (auto e = CheckTlsVersions(c)) return e;
  return std::nullopt;
}

// detcd serves etcd's v3 API only: settings that would serve v2 stop it.
std::optional<Failure> CheckRefused(const ServerConfig& c) {
  if (c.enable_v2) {
    return RefusedFailure(
        "detcd does not serve etcd's v2 API: --enable-v2=true is not "
        "supported (remove it or set --enable-v2=false)");
  }
  if (c.proxy != "off") {
    return RefusedFailure(absl::StrCat(
        "detcd does not serve etcd's v2 API: --proxy=", c.proxy,
        " (the v2 proxy) is not supported; only --proxy=off is accepted"));
  }
  if (!c.experimental_enable_v2v3.empty()) {
    return RefusedFailure(
        "detcd does not serve etcd's v2 API: --experimental-enable-v2v3 is "
        "not supported");
  }
  return std::nullopt;
}

// Initial cluster "n1=u1,n1=u2,n2=u3" (types.NewURLsMap).
absl::StatusOr<std::vector<ClusterMember>> ParseInitialCluster(
    absl::string_view s) {
  std::vector<std::pair<std::string, std::vector<std::string>>> groups;
  for (absl::string_view part : absl::StrSplit(s, ',')) {
    if (part.empty()) continue;
    absl::string_view name = part, value;
    if (size_t eq = part.find('='); eq != absl::string_view::npos) {
      name = part.substr(0, eq);
      value = part.substr(eq + 1);
    }
    auto it = std::find_if(groups.begin(), groups.end(),
                           [&](const auto& g) { return g.first == name; });
    if (it == groups.end()) {
      groups.emplace_back(std::string(name), std::vector<std::string>{});
      it = groups.end() - 1;
    }
    it->second.emplace_back(value);
  }
  std::vector<ClusterMember> out;
  for (const auto& [name, values] : groups) {
    ClusterMember m;
    m.name = name;
    for (const std::string& v : values) {
      absl::StatusOr<Url> u = ParseOneUrl(v);
      if (!u.ok()) return u.status();
      m.peer_urls.push_back(*std::move(u));
    }
    std::stable_sort(m.peer_urls.begin(), m.peer_urls.end(),
                     [](const Url& a, const Url& b) { return a.raw < b.raw; });
    out.push_back(std::move(m));
  }
  return out;
}

// What etcdmain does between a valid parse and starting the server.
void Finish(ServerConfig& c) {
  // etcd rewrites the default initial cluster for a renamed member (it also
  // swaps in the machine's address for 0.0.0.0 listeners; detcd does not).
  if (c.name != "default" &&
      c.initial_cluster_string == kDefaultInitialCluster) {
    std::vector<std::string> parts;
    for (const Url& u : c.initial_advertise_peer_urls) {
      parts.push_back(
          absl::StrCat(c.name.empty() ? "default" : c.name, "=", u.raw));
    }
    c.initial_cluster_string = absl::StrJoin(parts, ",");
  }
  if (c.data_dir.empty()) {
    c.data_dir = absl::StrCat(c.name, ".etcd");
    c.warnings.push_back(absl::StrFormat(
        "no data-dir provided, using default data-dir ./%s", c.data_dir));
  }
  c.initial_cluster.clear();
  c.initial_cluster_error.clear();
  if (!c.initial_cluster_string.empty()) {
    absl::StatusOr<std::vector<ClusterMember>> members =
        ParseInitialCluster(c.initial_cluster_string);
    if (members.ok()) {
      c.initial_cluster = *std::move(members);
    } else {
      c.initial_cluster_error = absl::StrCat(
          "error setting up initial cluster: ", members.status().message());
    }
  }
}

std::string VersionText() {
#if defined(__linux__)
  constexpr char kOs[] = "linux";
#else
  constexpr char kOs[] = "unknown";
#endif
#if defined(__x86_64__)
  constexpr char kArch[] = "amd64";
#elif defined(__aarch64__)
  constexpr char kArch[] = "arm64";
#else
  constexpr char kArch[] = "unknown";
#endif
#ifdef DETCD_GIT_SHA
  constexpr char kSha[] = DETCD_GIT_SHA;
#else
  constexpr char kSha[] = "Not provided (detcd)";
#endif
  return absl::StrFormat(
      "etcd Version: %s\nGit SHA: %s\nGo Version: detcd\nGo OS/Arch: %s/%s\n",
      kServerVersion, kSha, kOs, kArch);
}

ParseOutcome Exit(const Failure& f) {
  ParseOutcome o;
  o.action = ParseOutcome::Action::kPrintAndExit;
  o.exit_code = f.exit_code;
  o.output = f.output;
  o.error = f.error;
  o.output_to_stderr = true;
  return o;
}

ParseOutcome PrintAndExit(std::string text) {
  ParseOutcome o;
  o.action = ParseOutcome::Action::kPrintAndExit;
  o.output = std::move(text);
  return o;
}

// Go's flag.FlagSet.Parse with ContinueOnError. Returns the arguments left
// after the flags, or a Failure for the error / help exits.
std::variant<std::vector<std::string>, ParseOutcome> ParseCommandLine(
    const std::vector<std::string>& args, State& st) {
  auto flag_error = [](std::string msg) {
    Failure f{2, absl::StrCat(msg, "\n", kUsageHeader, "\n"), msg};
    return Exit(f);
  };
  size_t i = 0;
  while (i < args.size()) {
    const std::string& s = args[i];
    if (s.size() < 2 || s[0] != '-') break;
    size_t minuses = 1;
    if (s[1] == '-') {
      ++minuses;
      if (s.size() == 2) {  // "--" ends the flags
        ++i;
        break;
      }
    }
    std::string name = s.substr(minuses);
    if (name.empty() || name[0] == '-' || name[0] == '=') {
      return flag_error(absl::StrCat("bad flag syntax: ", s));
    }
    ++i;
    bool has_value = false;
    std::string value;
    if (size_t eq = name.find('=', 1); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name.resize(eq);
      has_value = true;
    }
    // Hidden, detcd only, for detcd-chaos: plants a named engine bug. Not
    // in kFlags, so neither --help, ETCD_* variables nor config files know
    // it; an unknown name is a usage error.
    if (name == "experimental-planted-bug") {
      if (!has_value && i < args.size()) {
        value = args[i++];
        has_value = true;
      }
      if (!has_value) {
        return flag_error(absl::StrCat("flag needs an argument: -", name));
      }
      if (!planted::Find(value).has_value()) {
        return flag_error(absl::StrFormat(
            "invalid value %s for flag -%s: unknown planted bug",
            GoQuote(value), name));
      }
      st.f.c.planted_bugs.push_back(value);
      continue;
    }
    const FlagDef* d = FindFlag(name);
    if (d == nullptr) {
      if (name == "help" || name == "h") {
        return PrintAndExit(UsageText());
      }
      return flag_error(absl::StrCat("flag provided but not defined: -", name));
    }
    if (IsBoolKind(d->kind)) {
      if (has_value) {
        if (absl::Status e = SetFlag(*d, name, value, st); !e.ok()) {
          return flag_error(
              absl::StrFormat("invalid boolean value %s for -%s: %s",
                              GoQuote(value), name, e.message()));
        }
      } else if (absl::Status e = SetFlag(*d, name, "true", st); !e.ok()) {
        return flag_error(
            absl::StrFormat("invalid boolean flag %s: %s", name, e.message()));
      }
      continue;
    }
    if (!has_value && i < args.size()) {
      value = args[i++];
      has_value = true;
    }
    if (!has_value) {
      return flag_error(absl::StrCat("flag needs an argument: -", name));
    }
    if (absl::Status e = SetFlag(*d, name, value, st); !e.ok()) {
      return flag_error(absl::StrFormat("invalid value %s for flag -%s: %s",
                                        GoQuote(value), name, e.message()));
    }
  }
  return std::vector<std::string>(args.begin() + static_cast<long>(i),
                                  args.end());
}

// flags.SetFlagsFromEnv + verifyEnv.
std::optional<Failure> ApplyEnv(
    const std::vector<std::pair<std::string, std::string>>& env, State& st) {
  auto getenv = [&](const std::string& key) -> std::string {
    for (const auto& [k, v] : env) {
      if (k == key) return v;  // Go keeps the first of duplicate keys
    }
    return "";
  };
  std::set<std::string> already_set;
  for (const std::string& n : st.actual) already_set.insert(EnvName(n));
  std::set<std::string> used;
  // Go visits flags in name order; the last failing one is reported.
  std::map<std::string, const FlagDef*> all;
  for (const FlagDef& d : kFlags) all[d.name] = &d;
  for (const char* n : kIgnoredFlags) all[n] = &kIgnoredDef;
  std::optional<std::string> err;
  for (const auto& [name, d] : all) {
    const std::string key = EnvName(name);
    if (already_set.count(key)) continue;
    const std::string val = getenv(key);
    if (val.empty()) continue;
    used.insert(key);
    if (absl::Status e = SetFlag(*d, name, val, st); !e.ok()) {
      err = absl::StrFormat("invalid value %s for %s: %s", GoQuote(val), key,
                            e.message());
      continue;
    }
    st.f.c.notices.push_back(absl::StrFormat(
        "recognized and used environment variable %s=%s", key, val));
  }
  for (const auto& [k, v] : env) {
    if (used.count(k)) continue;
    if (already_set.count(k)) {
      return FatalFailure(absl::StrFormat(
          "conflicting environment variable %s is shadowed by corresponding "
          "command-line flag (either unset environment variable or disable "
          "flag)",
          GoQuote(k)));
    }
    if (absl::StartsWith(k, "ETCD_")) {
      st.f.c.warnings.push_back(
          absl::StrFormat("unrecognized environment variable %s=%s", k, v));
    }
  }
  if (err) return VerifyFailure(*err);
  return std::nullopt;
}

}  // namespace

absl::StatusOr<Url> ParseUrl(std::string_view s) {
  return ParseOneUrl(absl::string_view(s.data(), s.size()));
}

absl::StatusOr<std::vector<ClusterMember>> ParseClusterString(
    std::string_view s) {
  return ParseInitialCluster(absl::string_view(s.data(), s.size()));
}

std::string UsageText() {
  std::string out = kUsageHeader;
  std::string section = "-";
  for (const FlagDef& d : kFlags) {
    if (d.section[0] == '\0') continue;
    if (section != d.section) {
      section = d.section;
      absl::StrAppend(&out, "\n", section, ":\n");
    }
    absl::StrAppend(&out, "  --", d.name);
    if (d.help_default != nullptr) {
      absl::StrAppend(&out, " '", d.help_default, "'");
    }
    absl::StrAppend(&out, "\n    ", d.help);
    if (d.status == FlagStatus::kNoEffect) {
      absl::StrAppend(&out, " [no effect in detcd: ", d.note, "]");
    }
    absl::StrAppend(&out, "\n");
  }
  absl::StrAppend(&out,
                  "\nCAUTIOUS with unsafe flag! It may break the guarantees "
                  "given by the consensus protocol!\n");
  return out;
}

std::vector<FlagInfo> ListFlags() {
  std::vector<FlagInfo> out;
  for (const FlagDef& d : kFlags) {
    out.push_back(FlagInfo{d.name, d.help_default ? d.help_default : "",
                           EnvName(d.name), d.yaml == Yaml::kNone ? "" : d.name,
                           d.status, d.note, d.section});
  }
  for (const char* n : kIgnoredFlags) {
    out.push_back(FlagInfo{n, "", EnvName(n), "", FlagStatus::kIgnored,
                           "removed from etcd long ago; etcd warns and ignores",
                           "ignored"});
  }
  return out;
}

ParseOutcome ParseServerConfig(const std::vector<std::string>& args,
                               const std::vector<std::string>& env_list) {
  if (!args.empty() && (args[0] == "gateway" || args[0] == "grpc-proxy")) {
    return Exit(
        FatalFailure(absl::StrCat("detcd does not include etcd's '", args[0],
                                  "' command; run etcd's for that")));
  }
  State st;
  // A failed parse still hands back what it would have logged before the
  // error (warnings about variables, ignored flags, ...).
  auto fail = [&st](ParseOutcome o) {
    o.config.warnings = st.f.c.warnings;
    o.config.notices = st.f.c.notices;
    return o;
  };
  auto parsed = ParseCommandLine(args, st);
  if (auto* done = std::get_if<ParseOutcome>(&parsed)) {
    return done->exit_code == 0 ? *done : fail(*done);
  }
  const auto& rest = std::get<std::vector<std::string>>(parsed);
  if (!rest.empty()) {
    return fail(Exit(
        VerifyFailure(absl::StrCat("'", rest[0], "' is not a valid flag"))));
  }
  if (st.f.print_version) return PrintAndExit(VersionText());

  std::vector<std::pair<std::string, std::string>> env;
  for (const std::string& kv : env_list) {
    const size_t eq = kv.find('=');
    if (eq == std::string::npos) {
      st.f.c.warnings.push_back(absl::StrCat("found invalid env ", kv));
      env.emplace_back(kv, "");
    } else {
      env.emplace_back(kv.substr(0, eq), kv.substr(eq + 1));
    }
  }

  ServerConfig& c = st.f.c;
  std::string config_file = c.config_file;
  if (config_file.empty()) {
    for (const auto& [k, v] : env) {
      if (k == "ETCD_CONFIG_FILE") {
        config_file = v;
        break;
      }
    }
  }
  bool may_be_proxy = false;
  if (!config_file.empty()) {
    // The file replaces flags and variables: start again from defaults,
    // keeping only what the flag stage already warned about.
    std::vector<std::string> ignored_flags;
    for (const std::string& n : st.actual) {
      if (n != "config-file") ignored_flags.push_back("--" + n);
    }
    State file_state;
    file_state.f.c.warnings = std::move(c.warnings);
    file_state.f.c.config_file = config_file;
    st = std::move(file_state);
    st.f.c.notices.push_back(absl::StrFormat(
        "Loading server configuration from %s. Other configuration command "
        "line flags and environment variables will be ignored if provided.",
        GoQuote(config_file)));
    if (!ignored_flags.empty()) {
      st.f.c.warnings.push_back(absl::StrCat(
          "ignoring command-line flags because a configuration file is used: ",
          absl::StrJoin(ignored_flags, " ")));
    }
    if (auto f = LoadConfigFile(config_file, st)) return fail(Exit(*f));
  } else {
    if (auto f = ApplyEnv(env, st)) return fail(Exit(*f));
    // etcd keeps the default advertise URL only when the listen URL is
    // default too (or when it may become a v2 proxy after discovery).
    may_be_proxy = !c.discovery.empty() && c.discovery_fallback == "proxy";
    if (st.actual.count("listen-client-urls") &&
        !st.actual.count("advertise-client-urls") && !may_be_proxy) {
      c.advertise_client_urls.clear();
    }
    if ((!c.discovery.empty() || !c.discovery_srv.empty() ||
         !c.discovery_srv_name.empty() || !c.discovery_endpoints.empty()) &&
        !st.actual.count("initial-cluster")) {
      c.initial_cluster_string.clear();
    }
  }
  ServerConfig& cfg = st.f.c;
  if (auto f = CheckRefused(cfg)) return fail(Exit(*f));
  if (auto err = Validate(cfg)) {
    if (!(*err == kErrUnsetAdvertise && may_be_proxy)) {
      Failure f = VerifyFailure(*err);
      if (*err == kErrUnsetAdvertise) {
        f.output +=
            "When listening on specific address(es), this detcd process must "
            "advertise accessible url(s) to each connected client.\n";
      }
      return fail(Exit(f));
    }
  }
  Finish(cfg);
  cfg.explicitly_set.assign(st.actual.begin(), st.actual.end());
  ParseOutcome o;
  o.config = std::move(cfg);
  return o;
}

absl::StatusOr<int64_t> ParseCompactionRetention(std::string_view mode,
                                                 std::string_view retention_sv) {
  const absl::string_view retention(retention_sv.data(), retention_sv.size());
  // strconv.Atoi: an optional sign, then decimal digits.
  absl::string_view digits = retention;
  const bool neg = absl::ConsumePrefix(&digits, "-");
  if (!neg) absl::ConsumePrefix(&digits, "+");
  const bool integer =
      !digits.empty() && digits.size() <= 18 &&
      std::all_of(digits.begin(), digits.end(), absl::ascii_isdigit);
  if (integer && (!neg || digits.find_first_not_of('0') == digits.npos)) {
    int64_t n = 0;
    for (char d : digits) n = n * 10 + (d - '0');
    if (mode == "revision") return n;
    constexpr int64_t kHourNs = int64_t{3600} * 1'000'000'000;
    if (n > std::numeric_limits<int64_t>::max() / kHourNs) {
      return absl::InvalidArgumentError(absl::StrCat(
          "error parsing CompactionRetention: ", n, " hours is too long"));
    }
    return n * kHourNs;
  }
  auto fail = [](const std::string& why) {
    return absl::InvalidArgumentError(
        absl::StrCat("error parsing CompactionRetention: ", why));
  };
  int64_t ns = 0;
  if (!GoParseDuration(retention, &ns)) {
    // Go's three texts: a number without a unit, a unit it does not know,
    // anything else.
    absl::string_view rest = retention;
    if (!absl::ConsumePrefix(&rest, "-")) absl::ConsumePrefix(&rest, "+");
    const size_t num = rest.find_first_not_of("0123456789.");
    if (!rest.empty() && num == rest.npos) {
      return fail("time: missing unit in duration " + GoQuote(retention));
    }
    if (num > 0 && num != rest.npos) {
      const size_t end = rest.find_first_of("0123456789.", num);
      const absl::string_view unit = rest.substr(num, end - num);
      static constexpr absl::string_view kUnits[] = {
          "ns", "us", "\xc2\xb5s", "\xce\xbcs", "ms", "s", "m", "h"};
      if (std::find(std::begin(kUnits), std::end(kUnits), unit) ==
          std::end(kUnits)) {
        return fail("time: unknown unit " + GoQuote(unit) + " in duration " +
                    GoQuote(retention));
      }
    }
    return fail("time: invalid duration " + GoQuote(retention));
  }
  if (ns < 0) return fail("negative retention " + GoQuote(retention));
  return ns;
}

}  // namespace detcd::shim
