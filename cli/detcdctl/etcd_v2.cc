#include "cli/detcdctl/etcd_v2.h"

#include <dirent.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <functional>
#include <optional>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "engine/wal/crc32c.h"
#include "nlohmann/json.hpp"
#include "shim/etcd_wal.h"
#include "shim/go_format.h"

namespace detcd::ctl::etcdv2 {
namespace {

// ---------------------------------------------------------------- protobuf

using shim::GoErrno;
using shim::ParseHexPair;
using Field = shim::PbField;
bool Fields(absl::string_view in, std::vector<Field>* out) {
  return shim::PbFields(in, out);
}

// etcd's v2 Request (the fields the applier reads).
struct Request {
  std::string method, path, val, prev_value;
  bool dir = false, recursive = false;
  uint64_t prev_index = 0;
  std::optional<bool> prev_exist, refresh;
  int64_t expiration = 0, time = 0;
};

bool ParseRequest(absl::string_view data, Request* r) {
  std::vector<Field> fs;
  if (!Fields(data, &fs)) return false;
  for (const Field& f : fs) {
    bool len = f.wire == 2, var = f.wire == 0;
    switch (f.num) {
      case 1: if (!var) return false; break;
      case 2: if (!len) return false; r->method = std::string(f.bytes); break;
      case 3: if (!len) return false; r->path = std::string(f.bytes); break;
      case 4: if (!len) return false; r->val = std::string(f.bytes); break;
      case 5: if (!var) return false; r->dir = f.v != 0; break;
      case 6: if (!len) return false; r->prev_value = std::string(f.bytes); break;
      case 7: if (!var) return false; r->prev_index = f.v; break;
      case 8: if (!var) return false; r->prev_exist = f.v != 0; break;
      case 9: if (!var) return false; r->expiration = static_cast<int64_t>(f.v); break;
      case 12: if (!var) return false; r->recursive = f.v != 0; break;
      case 15: if (!var) return false; r->time = static_cast<int64_t>(f.v); break;
      case 17: if (!var) return false; r->refresh = f.v != 0; break;
      default: break;
    }
  }
  return true;
}

// ---------------------------------------------------------------- paths

// Go's path.Clean(path.Join("/", p)).
std::string CleanAbs(absl::string_view p) {
  std::vector<std::string> out;
  for (absl::string_view e : absl::StrSplit(p, '/')) {
    if (e.empty() || e == ".") continue;
    if (e == "..") {
      if (!out.empty()) out.pop_back();
      continue;
    }
    out.emplace_back(e);
  }
  return absl::StrCat("/", absl::StrJoin(out, "/"));
}

std::string HexId(uint64_t id) { return absl::StrCat(absl::Hex(id)); }

// ---------------------------------------------------------------- store

constexpr int64_t kMinExpireNs = 946684800LL * 1000000000LL;  // 2000-01-01

class Store {
 public:
  Store() : root_(std::make_unique<Node>()) {
    root_->path = "/";
    root_->dir = true;
  }

  std::unique_ptr<Node> TakeRoot() { return std::move(root_); }
  void SetRoot(std::unique_ptr<Node> r) { root_ = std::move(r); }
  Node* root() { return root_.get(); }
  uint64_t index = 0;

  static bool ReadOnly(const std::string& p) {
    return p == "/" || p == "/0" || p == "/1";
  }

  Node* Get(const std::string& raw) {
    std::string p = CleanAbs(raw);
    Node* cur = root_.get();
    for (absl::string_view c : absl::StrSplit(p.substr(1), '/')) {
      if (c.empty()) break;
      if (!cur->dir) return nullptr;
      auto it = cur->children.find(std::string(c));
      if (it == cur->children.end()) return nullptr;
      cur = it->second.get();
    }
    return cur;
  }

  bool Create(const std::string& p, bool dir, const std::string& value,
              bool unique, int64_t expire_ns) {
    return InternalCreate(p, dir, value, unique, false, expire_ns);
  }

  bool Set(const std::string& p, bool dir, std::string value,
           int64_t expire_ns, bool refresh) {
    Node* n = Get(p);
    if (refresh) {
      if (n == nullptr) return false;
      value = n->value;
    }
    return InternalCreate(p, dir, value, false, true, expire_ns);
  }

  bool Update(const std::string& raw, std::string value, int64_t expire_ns,
              bool refresh) {
    std::string p = CleanAbs(raw);
    if (ReadOnly(p)) return false;
    Node* n = Get(p);
    if (n == nullptr) return false;
    if (n->dir && !value.empty()) return false;
    if (refresh) value = n->value;
    uint64_t next = index + 1;
    // node.Write refuses a directory, but the index moves on anyway.
    if (!n->dir) {
      n->value = value;
      n->modified = next;
    }
    n->expire_ns = expire_ns;
    index = next;
    return true;
  }

  bool CompareAndSwap(const std::string& raw, const std::string& prev_value,
                      uint64_t prev_index, std::string value,
                      int64_t expire_ns, bool refresh) {
    std::string p = CleanAbs(raw);
    if (ReadOnly(p)) return false;
    Node* n = Get(p);
    if (n == nullptr || n->dir || !Matches(n, prev_value, prev_index)) {
      return false;
    }
    if (refresh) value = n->value;
    ++index;
    n->value = value;
    n->modified = index;
    n->expire_ns = expire_ns;
    return true;
  }

  bool Delete(const std::string& raw, bool dir, bool recursive) {
    std::string p = CleanAbs(raw);
    if (ReadOnly(p)) return false;
    if (recursive) dir = true;
    Node* n = Get(p);
    if (n == nullptr) return false;
    if (n->dir) {
      if (!dir) return false;
      if (!n->children.empty() && !recursive) return false;
    }
    Remove(n);
    ++index;
    return true;
  }

  bool CompareAndDelete(const std::string& raw, const std::string& prev_value,
                        uint64_t prev_index) {
    std::string p = CleanAbs(raw);
    Node* n = Get(p);
    if (n == nullptr || n->dir || !Matches(n, prev_value, prev_index)) {
      return false;
    }
    ++index;
    Remove(n);
    return true;
  }

  // Expired nodes go one by one, earliest expiry first, each taking an
  // index (a directory takes its children with it).
  void DeleteExpired(int64_t cutoff_ns) {
    for (;;) {
      Node* first = nullptr;
      Visit(root_.get(), [&](Node* n) {
        if (n->expire_ns != 0 &&
            (first == nullptr || n->expire_ns < first->expire_ns)) {
          first = n;
        }
      });
      if (first == nullptr || first->expire_ns > cutoff_ns) return;
      ++index;
      Remove(first);
    }
  }

  template <typename F>
  static void Visit(Node* n, const F& f) {
    f(n);
    for (auto& [_, c] : n->children) Visit(c.get(), f);
  }

 private:
  static bool Matches(Node* n, const std::string& prev_value,
                      uint64_t prev_index) {
    return (prev_index == 0 || n->modified == prev_index) &&
           (prev_value.empty() || n->value == prev_value);
  }

  static void Remove(Node* n) {
    if (n->parent == nullptr) return;
    std::string name = n->path.substr(n->path.rfind('/') + 1);
    auto it = n->parent->children.find(name);
    if (it != n->parent->children.end() && it->second.get() == n) {
      n->parent->children.erase(it);
    }
  }

  bool InternalCreate(const std::string& raw, bool dir,
                      const std::string& value, bool unique, bool replace,
                      int64_t expire_ns) {
    uint64_t next = index + 1;
    std::string p = raw;
    if (unique) {
      std::string num = absl::StrCat(next);
      // Go's %020s pads a string with zeros.
      p += "/" + std::string(num.size() < 20 ? 20 - num.size() : 0, '0') + num;
    }
    p = CleanAbs(p);
    if (ReadOnly(p)) return false;
    if (expire_ns != 0 && expire_ns < kMinExpireNs) expire_ns = 0;
    size_t slash = p.rfind('/');
    std::string dir_name = p.substr(0, slash + 1);
    std::string name = p.substr(slash + 1);
    // Walk the parents, creating missing directories (they stay even if
    // the write then fails: it can only fail on an existing node).
    Node* d = root_.get();
    for (absl::string_view c : absl::StrSplit(dir_name.substr(1), '/')) {
      if (c.empty()) break;
      auto it = d->children.find(std::string(c));
      if (it != d->children.end()) {
        if (!it->second->dir) return false;
        d = it->second.get();
        continue;
      }
      auto nd = std::make_unique<Node>();
      nd->path = d->path == "/" ? absl::StrCat("/", c)
                                : absl::StrCat(d->path, "/", c);
      nd->dir = true;
      nd->created = nd->modified = next;
      nd->parent = d;
      Node* raw_nd = nd.get();
      d->children[std::string(c)] = std::move(nd);
      d = raw_nd;
    }
    auto it = d->children.find(name);
    if (it != d->children.end()) {
      if (!replace || it->second->dir) return false;
      d->children.erase(it);
    }
    auto n = std::make_unique<Node>();
    n->path = p;
    n->dir = dir;
    if (!dir) n->value = value;
    n->created = n->modified = next;
    n->expire_ns = expire_ns;
    n->parent = d;
    d->children[name] = std::move(n);
    index = next;
    return true;
  }

  std::unique_ptr<Node> root_;
};

// ---------------------------------------------------------------- logs

std::string ZapString(absl::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      absl::StrAppend(&out, "\\u00", absl::Hex(static_cast<unsigned char>(c),
                                               absl::kZeroPad2));
    } else {
      out += c;
    }
  }
  return out + "\"";
}

class Log {
 public:
  explicit Log(std::vector<std::string>* out) : out_(out) {}
  // fields: key, then a string or a list of strings.
  void Line(const char* level, absl::string_view msg,
            const std::vector<std::pair<std::string,
                                        std::vector<std::string>>>& fields,
            const std::set<std::string>& lists = {}) {
    std::string s = absl::StrCat("{\"level\":\"", level, "\",\"msg\":",
                                 ZapString(msg));
    for (const auto& [k, v] : fields) {
      absl::StrAppend(&s, ",", ZapString(k), ":");
      if (lists.count(k)) {
        std::vector<std::string> q;
        for (const auto& x : v) q.push_back(ZapString(x));
        absl::StrAppend(&s, "[", absl::StrJoin(q, ","), "]");
      } else {
        absl::StrAppend(&s, ZapString(v.empty() ? "" : v[0]));
      }
    }
    out_->push_back(s + "}");
  }

 private:
  std::vector<std::string>* out_;
};

// ---------------------------------------------------------------- cluster

struct Member {
  uint64_t id = 0;
  std::vector<std::string> peer_urls;
  bool learner = false;
};

struct Version {
  int major = 0, minor = 0, patch = 0;
  bool operator<(const Version& o) const {
    return std::tie(major, minor, patch) < std::tie(o.major, o.minor, o.patch);
  }
  std::string Cluster() const { return absl::StrCat(major, ".", minor); }
};

std::optional<Version> ParseVersion(absl::string_view s) {
  std::vector<std::string> p = absl::StrSplit(s, '.');
  Version v;
  if (p.size() != 3 || !absl::SimpleAtoi(p[0], &v.major) ||
      !absl::SimpleAtoi(p[1], &v.minor)) {
    return std::nullopt;
  }
  std::string patch = p[2].substr(0, p[2].find_first_of("-+"));
  if (!absl::SimpleAtoi(patch, &v.patch)) return std::nullopt;
  return v;
}

class Cluster {
 public:
  Cluster(Store* st, Log* log) : st_(st), log_(log) {}

  // RaftCluster.Recover over a store recovered from a snapshot.
  void Recover() {
    Node* members = st_->Get("/0/members");
    if (members != nullptr) {
      for (auto& [name, n] : members->children) {
        Member m;
        uint64_t id;
        if (!absl::SimpleHexAtoi(name, &id)) continue;
        m.id = id;
        auto it = n->children.find("raftAttributes");
        if (it != n->children.end()) {
          auto j = nlohmann::json::parse(it->second->value, nullptr, false);
          ReadRaftAttributes(j, &m);
        }
        members_[id] = m;
      }
    }
    if (Node* removed = st_->Get("/0/removed_members")) {
      for (auto& [name, _] : removed->children) {
        uint64_t id;
        if (absl::SimpleHexAtoi(name, &id)) removed_.insert(id);
      }
    }
    if (Node* v = st_->Get("/0/version")) version_ = ParseVersion(v->value);
    if (version_) UpdateCapability(*version_);
    for (auto& [id, m] : members_) {
      log_->Line("info", "recovered/added member from store",
                 {{"cluster-id", {"0"}},
                  {"local-member-id", {"0"}},
                  {"recovered-remote-peer-id", {HexId(id)}},
                  {"recovered-remote-peer-urls", m.peer_urls}},
                 {"recovered-remote-peer-urls"});
    }
    if (version_) {
      log_->Line("info", "set cluster version from store",
                 {{"cluster-version", {version_->Cluster()}}});
    }
  }

  // migrate's applyConf: validated as etcd validates, then applied (an
  // invalid change is skipped; learner additions are not applied).
  absl::Status ApplyConfChange(int type, uint64_t node_id,
                               const std::string& context) {
    if (removed_.count(node_id)) return absl::OkStatus();
    auto ctx = nlohmann::json::parse(context, nullptr, false);
    Member cm;
    ReadRaftAttributes(ctx, &cm);
    if (ctx.is_object() && ctx.contains("id") && ctx["id"].is_number()) {
      cm.id = ctx["id"].get<uint64_t>();
    }
    auto urls_of_others = [&](uint64_t except) {
      std::set<std::string> urls;
      for (auto& [id, m] : members_) {
        if (id == except) continue;
        urls.insert(m.peer_urls.begin(), m.peer_urls.end());
      }
      return urls;
    };
    auto clash = [&](const std::set<std::string>& urls) {
      for (const auto& u : cm.peer_urls) {
        if (urls.count(u)) return true;
      }
      return false;
    };
    switch (type) {
      case 0:    // AddNode
      case 3: {  // AddLearnerNode
        bool promote = ctx.is_object() && ctx.value("isPromote", false);
        if (promote) {
          auto it = members_.find(node_id);
          if (it == members_.end() || !it->second.learner) {
            return absl::OkStatus();
          }
        } else {
          if (members_.count(node_id)) return absl::OkStatus();
          if (clash(urls_of_others(0))) return absl::OkStatus();
          if (cm.learner) {
            int learners = 0;
            for (auto& [_, m] : members_) learners += m.learner ? 1 : 0;
            if (learners + 1 > 1) return absl::OkStatus();
          }
        }
        if (type == 3) return absl::OkStatus();
        std::string key = absl::StrCat("/0/members/", HexId(cm.id),
                                       "/raftAttributes");
        if (!st_->Create(key, false, RaftAttributesJson(cm), false, 0)) {
          return absl::FailedPreconditionError(absl::StrCat(
              "migrate: etcdctl 3.4 crashes on this WAL (adding member ",
              HexId(cm.id), ", which the v2 store already has)"));
        }
        members_[cm.id] = cm;
        log_->Line("info", "added member",
                   {{"cluster-id", {"0"}},
                    {"local-member-id", {"0"}},
                    {"added-peer-id", {HexId(cm.id)}},
                    {"added-peer-peer-urls", cm.peer_urls}},
                   {"added-peer-peer-urls"});
        return absl::OkStatus();
      }
      case 1: {  // RemoveNode
        auto it = members_.find(node_id);
        if (it == members_.end()) return absl::OkStatus();
        std::string key = absl::StrCat("/0/members/", HexId(node_id));
        st_->Delete(key, true, true);
        st_->Create(absl::StrCat("/0/removed_members/", HexId(node_id)), false,
                    "", false, 0);
        std::vector<std::string> urls = it->second.peer_urls;
        members_.erase(it);
        removed_.insert(node_id);
        log_->Line("info", "removed member",
                   {{"cluster-id", {"0"}},
                    {"local-member-id", {"0"}},
                    {"removed-remote-peer-id", {HexId(node_id)}},
                    {"removed-remote-peer-urls", urls}},
                   {"removed-remote-peer-urls"});
        return absl::OkStatus();
      }
      case 2: {  // UpdateNode
        auto it = members_.find(node_id);
        if (it == members_.end()) return absl::OkStatus();
        if (clash(urls_of_others(node_id))) return absl::OkStatus();
        Member& m = members_[cm.id];
        m.id = cm.id;
        m.peer_urls = cm.peer_urls;
        m.learner = cm.learner;
        st_->Update(absl::StrCat("/0/members/", HexId(cm.id), "/raftAttributes"),
                    RaftAttributesJson(m), 0, false);
        log_->Line("info", "updated member",
                   {{"cluster-id", {"0"}},
                    {"local-member-id", {"0"}},
                    {"updated-remote-peer-id", {HexId(cm.id)}},
                    {"updated-remote-peer-urls", cm.peer_urls}},
                   {"updated-remote-peer-urls"});
        return absl::OkStatus();
      }
      default:
        return absl::OkStatus();
    }
  }

  absl::Status UpdateAttributes(uint64_t id, const std::string& value) {
    if (members_.count(id)) {
      st_->Set(absl::StrCat("/0/members/", HexId(id), "/attributes"), false,
               value, 0, false);
      return absl::OkStatus();
    }
    if (!removed_.count(id)) {
      return absl::FailedPreconditionError(absl::StrCat(
          "migrate: etcdctl 3.4 crashes on this WAL (attributes of unknown "
          "member ",
          HexId(id), ")"));
    }
    log_->Line("warn", "skipped attributes update of removed member",
               {{"cluster-id", {"0"}},
                {"local-member-id", {"0"}},
                {"updated-peer-id", {HexId(id)}}});
    return absl::OkStatus();
  }

  absl::Status SetVersion(const std::string& value) {
    std::optional<Version> v = ParseVersion(value);
    if (!v) {
      return absl::FailedPreconditionError(absl::StrCat(
          "migrate: etcdctl 3.4 crashes on this WAL (cluster version ",
          value, ")"));
    }
    if (version_) {
      // etcd names both fields "from".
      std::string line =
          absl::StrCat("{\"level\":\"info\",\"msg\":\"updated cluster version\","
                       "\"cluster-id\":\"0\",\"local-member-id\":\"0\","
                       "\"from\":",
                       ZapString(version_->Cluster()), ",\"from\":",
                       ZapString(v->Cluster()), "}");
      log_raw_(line);
    } else {
      log_->Line("info", "set initial cluster version",
                 {{"cluster-id", {"0"}},
                  {"local-member-id", {"0"}},
                  {"cluster-version", {v->Cluster()}}});
    }
    version_ = v;
    st_->Set("/0/version", false, value, 0, false);
    UpdateCapability(*v);
    return absl::OkStatus();
  }

  std::function<void(const std::string&)> log_raw_;

 private:
  void UpdateCapability(const Version& v) {
    if (capability_ && !(*capability_ < v)) return;
    capability_ = v;
    log_->Line("info", "enabled capabilities for version",
               {{"cluster-version", {v.Cluster()}}});
  }

  static void ReadRaftAttributes(const nlohmann::json& j, Member* m) {
    if (!j.is_object()) return;
    if (j.contains("peerURLs") && j["peerURLs"].is_array()) {
      for (const auto& u : j["peerURLs"]) {
        if (u.is_string()) m->peer_urls.push_back(u.get<std::string>());
      }
    }
    if (j.contains("isLearner") && j["isLearner"].is_boolean()) {
      m->learner = j["isLearner"].get<bool>();
    }
  }

  static std::string RaftAttributesJson(const Member& m) {
    nlohmann::json j;
    j["peerURLs"] = m.peer_urls;
    if (m.learner) j["isLearner"] = true;
    return j.dump();
  }

  Store* st_;
  Log* log_;
  std::map<uint64_t, Member> members_;
  std::set<uint64_t> removed_;
  std::optional<Version> version_;
  std::optional<Version> capability_;
};

// ---------------------------------------------------------------- files

absl::StatusOr<std::vector<std::string>> ListDir(const std::string& dir) {
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) {
    return absl::NotFoundError(
        absl::StrCat("open ", dir, ": ", GoErrno(errno)));
  }
  std::vector<std::string> names;
  while (dirent* e = ::readdir(d)) {
    std::string n = e->d_name;
    if (n != "." && n != "..") names.push_back(n);
  }
  ::closedir(d);
  std::sort(names.begin(), names.end());
  return names;
}

bool ReadFile(const std::string& path, std::string* out) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return false;
  std::ostringstream ss;
  ss << f.rdbuf();
  *out = ss.str();
  return true;
}

// Go's time.Time from JSON (RFC 3339); the zero time is 0.
int64_t ParseGoTime(const nlohmann::json& j) {
  if (!j.is_string()) return 0;
  std::string s = j.get<std::string>();
  if (absl::StartsWith(s, "0001-01-01T00:00:00")) return 0;
  absl::Time t;
  std::string err;
  if (!absl::ParseTime(absl::RFC3339_full, s, &t, &err)) return 0;
  return absl::ToUnixNanos(t);
}

std::unique_ptr<Node> NodeFromJson(const nlohmann::json& j, Node* parent) {
  auto n = std::make_unique<Node>();
  n->parent = parent;
  n->path = j.value("Path", "");
  n->created = j.value("CreatedIndex", uint64_t{0});
  n->modified = j.value("ModifiedIndex", uint64_t{0});
  n->expire_ns = j.contains("ExpireTime") ? ParseGoTime(j["ExpireTime"]) : 0;
  n->value = j.value("Value", "");
  if (j.contains("Children") && j["Children"].is_object()) {
    n->dir = true;
    for (const auto& [name, c] : j["Children"].items()) {
      if (c.is_object()) n->children[name] = NodeFromJson(c, n.get());
    }
  }
  return n;
}

// The newest snapshot that reads (etcd's snap.Load; etcd also renames a
// broken one to *.broken, detcdctl leaves it alone).
absl::Status LoadSnapshot(const std::string& dir, Log* log, Store* st,
                          uint64_t* index, uint64_t* term, bool* found) {
  auto names = ListDir(dir);
  if (!names.ok()) return names.status();
  std::vector<std::string> snaps;
  for (const std::string& n : *names) {
    if (absl::EndsWith(n, ".snap")) {
      snaps.push_back(n);
    } else if (n != "db") {
      log->Line("warn", "found unexpected non-snap file; skipping",
                {{"path", {n}}});
    }
  }
  std::reverse(snaps.begin(), snaps.end());
  *found = false;
  for (const std::string& n : snaps) {
    std::string data;
    if (!ReadFile(GoJoin({dir, n}), &data)) continue;
    std::vector<Field> outer;
    if (!Fields(data, &outer)) continue;
    uint32_t crc = 0;
    absl::string_view body;
    for (const Field& f : outer) {
      if (f.num == 1) crc = static_cast<uint32_t>(f.v);
      if (f.num == 2) body = f.bytes;
    }
    if (body.empty() ||
        crc32c::Extend(0, body.data(), body.size()) != crc) {
      continue;
    }
    std::vector<Field> snap;
    if (!Fields(body, &snap)) continue;
    absl::string_view store_json;
    uint64_t idx = 0, tm = 0;
    for (const Field& f : snap) {
      if (f.num == 1) store_json = f.bytes;
      if (f.num == 2) {
        std::vector<Field> meta;
        if (!Fields(f.bytes, &meta)) continue;
        for (const Field& m : meta) {
          if (m.num == 2) idx = m.v;
          if (m.num == 3) tm = m.v;
        }
      }
    }
    auto j = nlohmann::json::parse(store_json, nullptr, false);
    if (!j.is_object() || !j.contains("Root") || !j["Root"].is_object()) {
      return absl::DataLossError(
          absl::StrCat("migrate: cannot read the v2 store in ", n));
    }
    auto root = NodeFromJson(j["Root"], nullptr);
    root->path = "/";
    root->dir = true;
    st->SetRoot(std::move(root));
    st->index = j.value("CurrentIndex", uint64_t{0});
    *index = idx;
    *term = tm;
    *found = true;
    return absl::OkStatus();
  }
  return absl::OkStatus();
}

struct Entry {
  uint64_t term = 0, index = 0;
  int type = 0;
  std::string data;
};

// wal.OpenForRead + ReadAll: the entries after the snapshot.
absl::Status ReadWal(const std::string& dir, uint64_t snap_index,
                     uint64_t snap_term, Log* log,
                     std::vector<Entry>* ents) {
  auto names = ListDir(dir);
  if (!names.ok()) return names.status();
  struct Seg {
    std::string name;
    uint64_t seq, index;
  };
  std::vector<Seg> segs;
  for (const std::string& n : *names) {
    uint64_t seq, idx;
    if (!ParseHexPair(n, ".wal", &seq, &idx)) {
      if (!absl::EndsWith(n, ".tmp")) {
        log->Line("warn", "ignored file in WAL directory", {{"path", {n}}});
      }
      continue;
    }
    segs.push_back({n, seq, idx});
  }
  if (segs.empty()) return absl::NotFoundError("wal: file not found");
  int start = -1;
  for (int i = static_cast<int>(segs.size()) - 1; i >= 0; --i) {
    if (segs[i].index <= snap_index) {
      start = i;
      break;
    }
  }
  if (start < 0) return absl::NotFoundError("wal: file not found");
  for (size_t i = start + 1; i < segs.size(); ++i) {
    if (segs[i].seq != segs[i - 1].seq + 1) {
      return absl::NotFoundError("wal: file not found");
    }
  }
  bool matched = false;
  std::vector<std::string> paths;
  for (size_t i = start; i < segs.size(); ++i) {
    paths.push_back(GoJoin({dir, segs[i].name}));
  }
  absl::Status read = shim::ReadEtcdWalRecords(
      paths, [&](int64_t type, absl::string_view rdata) -> absl::Status {
        if (type == 2) {
          std::vector<Field> ef;
          if (!Fields(rdata, &ef)) {
            return absl::DataLossError("wal: bad entry");
          }
          Entry e;
          for (const Field& f : ef) {
            if (f.num == 1) e.type = static_cast<int>(f.v);
            if (f.num == 2) e.term = f.v;
            if (f.num == 3) e.index = f.v;
            if (f.num == 4) e.data = std::string(f.bytes);
          }
          if (e.index > snap_index) {
            size_t keep = e.index - snap_index - 1;
            if (keep > ents->size()) {
              return absl::DataLossError("wal: entries out of order");
            }
            ents->resize(keep);
            ents->push_back(std::move(e));
          }
        } else if (type == 5) {
          std::vector<Field> sf;
          if (!Fields(rdata, &sf)) {
            return absl::DataLossError("wal: bad record");
          }
          uint64_t idx = 0, tm = 0;
          for (const Field& f : sf) {
            if (f.num == 1) idx = f.v;
            if (f.num == 2) tm = f.v;
          }
          if (idx == snap_index) {
            if (tm != snap_term) {
              return absl::DataLossError("wal: snapshot mismatch");
            }
            matched = true;
          }
        }
        return absl::OkStatus();
      });
  if (!read.ok()) return read;
  if (!matched) return absl::NotFoundError("wal: snapshot not found");
  return absl::OkStatus();
}

// The applier's view of a request (etcdserver's applierV2store).
absl::Status Apply(const Request& r, Store* st, Cluster* cl) {
  int64_t expire = r.expiration;  // 0: no expiry
  bool refresh = r.refresh.value_or(false);
  if (r.method == "POST") {
    st->Create(r.path, r.dir, r.val, true, expire);
  } else if (r.method == "PUT") {
    if (r.prev_exist.has_value()) {
      if (*r.prev_exist) {
        if (r.prev_index == 0 && r.prev_value.empty()) {
          st->Update(r.path, r.val, expire, refresh);
        } else {
          st->CompareAndSwap(r.path, r.prev_value, r.prev_index, r.val, expire,
                             refresh);
        }
      } else {
        st->Create(r.path, r.dir, r.val, false, expire);
      }
    } else if (r.prev_index > 0 || !r.prev_value.empty()) {
      st->CompareAndSwap(r.path, r.prev_value, r.prev_index, r.val, expire,
                         refresh);
    } else {
      static const std::regex kAttr("/0/members/[0-9A-Fa-f]{1,16}/attributes");
      if (std::regex_search(r.path, kAttr)) {
        std::string d = r.path.substr(0, r.path.rfind('/'));
        uint64_t id;
        if (!absl::SimpleHexAtoi(d.substr(d.rfind('/') + 1), &id)) {
          return absl::FailedPreconditionError(absl::StrCat(
              "migrate: etcdctl 3.4 crashes on this WAL (member path ",
              r.path, ")"));
        }
        return cl->UpdateAttributes(id, r.val);
      }
      if (r.path == "/0/version") return cl->SetVersion(r.val);
      st->Set(r.path, r.dir, r.val, expire, refresh);
    }
  } else if (r.method == "DELETE") {
    if (r.prev_index > 0 || !r.prev_value.empty()) {
      st->CompareAndDelete(r.path, r.prev_value, r.prev_index);
    } else {
      st->Delete(r.path, r.dir, r.recursive);
    }
  } else if (r.method == "QGET") {
    // A read.
  } else if (r.method == "SYNC") {
    st->DeleteExpired(r.time);
  } else {
    return absl::FailedPreconditionError(absl::StrCat(
        "migrate: etcdctl 3.4 crashes on this WAL (unknown v2 method ",
        r.method, ")"));
  }
  return absl::OkStatus();
}

}  // namespace

std::string GoJoin(const std::vector<std::string>& parts) {
  std::vector<std::string> nonempty;
  for (const std::string& p : parts) {
    if (!p.empty()) nonempty.push_back(p);
  }
  std::string path = absl::StrJoin(nonempty, "/");
  if (path.empty()) return "";
  bool rooted = path[0] == '/';
  std::vector<std::string> out;
  for (absl::string_view e : absl::StrSplit(path, '/')) {
    if (e.empty() || e == ".") continue;
    if (e == "..") {
      if (!out.empty() && out.back() != "..") {
        out.pop_back();
      } else if (!rooted) {
        out.push_back("..");
      }
      continue;
    }
    out.emplace_back(e);
  }
  std::string clean = absl::StrCat(rooted ? "/" : "", absl::StrJoin(out, "/"));
  return clean.empty() ? "." : clean;
}

absl::StatusOr<Rebuilt> RebuildStore(const std::string& snap_dir,
                                     const std::string& wal_dir,
                                     std::vector<std::string>* lines) {
  Rebuilt out;
  Log log(lines);
  Store st;
  uint64_t snap_index = 0, snap_term = 0;
  bool have_snap = false;
  if (absl::Status s =
          LoadSnapshot(snap_dir, &log, &st, &snap_index, &snap_term, &have_snap);
      !s.ok()) {
    return s;
  }
  out.raft_index = snap_index;
  std::vector<Entry> ents;
  if (absl::Status s = ReadWal(wal_dir, snap_index, snap_term, &log, &ents);
      !s.ok()) {
    return s;
  }
  Cluster cl(&st, &log);
  cl.log_raw_ = [lines](const std::string& line) { lines->push_back(line); };
  if (have_snap) {
    // Parents for the recovered tree.
    Store::Visit(st.root(), [](Node* n) {
      for (auto& [_, c] : n->children) c->parent = n;
    });
  }
  cl.Recover();
  for (const Entry& e : ents) {
    if (e.type == 1) {
      std::vector<Field> fs;
      if (!Fields(e.data, &fs)) {
        return absl::DataLossError("migrate: bad conf change in the WAL");
      }
      int type = 0;
      uint64_t node = 0;
      std::string context;
      for (const Field& f : fs) {
        if (f.num == 2) type = static_cast<int>(f.v);
        if (f.num == 3) node = f.v;
        if (f.num == 4) context = std::string(f.bytes);
      }
      if (absl::Status s = cl.ApplyConfChange(type, node, context); !s.ok()) {
        return s;
      }
    } else if (e.type == 0) {
      // An InternalRaftRequest whose field 2 is the v2 request; a log
      // from etcd 2.x holds bare requests.
      std::vector<Field> fs;
      Request r;
      bool internal = Fields(e.data, &fs);
      const Field* v2 = nullptr;
      for (const Field& f : fs) {
        if (f.num == 2 && f.wire != 2) internal = false;
        if (f.num == 2 && f.wire == 2) v2 = &f;
      }
      if (internal && v2 != nullptr && !ParseRequest(v2->bytes, &r)) {
        internal = false;
      }
      if (!internal) {
        r = Request();
        if (!ParseRequest(e.data, &r)) {
          return absl::DataLossError("migrate: bad request in the WAL");
        }
        if (absl::Status s = Apply(r, &st, &cl); !s.ok()) return s;
      } else if (v2 != nullptr) {
        if (absl::Status s = Apply(r, &st, &cl); !s.ok()) return s;
      }
    }
    out.raft_index = std::max(out.raft_index, e.index);
  }
  out.store_index = st.index;
  out.root = st.TakeRoot();
  return out;
}

}  // namespace detcd::ctl::etcdv2
