#include "harness/auth_checker.h"

#include <algorithm>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "engine/server/errors.h"
#include "engine/server/node.h"

namespace detcd::harness {
namespace {

namespace pb = etcdserverpb;

constexpr std::string_view kRoot = "root";  // etcd's root user and role
// As the state machine's duplicate filter (EtcdStateMachine).
constexpr size_t kRecentRequestIds = 4096;

// etcd's auth errors as its gRPC layer sends them (rpctypes).
absl::Status FailedPrecondition(std::string_view text) {
  return absl::FailedPreconditionError(
      absl::StrCat("etcdserver: ", std::string(text)));
}
absl::Status InvalidArgument(std::string_view text) {
  return absl::InvalidArgumentError(
      absl::StrCat("etcdserver: ", std::string(text)));
}
absl::Status RootUserNotExist() {
  return FailedPrecondition("root user does not exist");
}
absl::Status RootRoleNotExist() {
  return FailedPrecondition("root user does not have root role");
}
absl::Status UserAlreadyExist() {
  return FailedPrecondition("user name already exists");
}
absl::Status UserNotFound() {
  return FailedPrecondition("user name not found");
}
absl::Status RoleAlreadyExist() {
  return FailedPrecondition("role name already exists");
}
absl::Status RoleNotFound() {
  return FailedPrecondition("role name not found");
}
absl::Status RoleEmpty() { return InvalidArgument("role name is empty"); }
absl::Status RoleNotGranted() {
  return FailedPrecondition("role is not granted to the user");
}
absl::Status PermissionNotGranted() {
  return FailedPrecondition("permission is not granted to the role");
}
absl::Status InvalidAuthMgmt() {
  return InvalidArgument("invalid auth management");
}

// Every error above (and the four public ones): an answer with one of
// these is an auth decision; any other error is not.
bool IsAuthError(const absl::Status& s) {
  static const std::vector<absl::Status>* all =
      new std::vector<absl::Status>{AuthChecker::UserEmpty(),
                                    AuthChecker::OldRevision(),
                                    AuthChecker::Denied(),
                                    AuthChecker::InvalidToken(),
                                    RootUserNotExist(),
                                    RootRoleNotExist(),
                                    UserAlreadyExist(),
                                    UserNotFound(),
                                    RoleAlreadyExist(),
                                    RoleNotFound(),
                                    RoleEmpty(),
                                    RoleNotGranted(),
                                    PermissionNotGranted(),
                                    InvalidAuthMgmt()};
  return std::any_of(all->begin(), all->end(),
                     [&](const absl::Status& a) { return a == s; });
}

// A permission's key interval: [begin, end), end "" standing for "no
// end" (etcd's range_end "\0", from-key).
struct Interval {
  std::string begin, end;
  bool open_end = false;
};

Interval PermInterval(const AuthChecker::Perm& p) {
  if (p.range_end.empty()) return {p.key, p.key + std::string(1, '\0'), false};
  if (p.range_end == std::string_view("\0", 1)) return {p.key, "", true};
  return {p.key, p.range_end, false};
}

bool Contains(const Interval& iv, std::string_view k) {
  return iv.begin <= k && (iv.open_end || k < iv.end);
}

AuthChecker::Perm FromProto(const authpb::Permission& p) {
  AuthChecker::Perm out;
  out.key = p.key();
  out.range_end = p.range_end();
  out.read = p.permtype() != authpb::Permission::WRITE;
  out.write = p.permtype() != authpb::Permission::READ;
  return out;
}

std::string DescribeRoles(const AuthChecker::State& st,
                          const std::string& user) {
  auto u = st.users.find(user);
  if (u == st.users.end())
    return absl::StrCat("user ", user, " does not exist");
  std::vector<std::string> parts;
  for (const std::string& r : u->second) {
    std::string d = r + "{";
    auto it = st.roles.find(r);
    if (it == st.roles.end()) {
      d += r == kRoot ? "root" : "missing";
    } else {
      std::vector<std::string> ps;
      for (const AuthChecker::Perm& p : it->second) {
        ps.push_back(absl::StrCat(p.read && p.write ? "rw"
                                  : p.read          ? "r"
                                                    : "w",
                                  ":", absl::CEscape(p.key), "..",
                                  absl::CEscape(p.range_end)));
      }
      d += absl::StrJoin(ps, " ");
    }
    parts.push_back(d + "}");
  }
  return absl::StrCat("user ", user, " has [", absl::StrJoin(parts, ", "), "]");
}

std::string StatusText(const absl::Status& s) {
  if (s.ok()) return "ok";
  return absl::StrCat(absl::StatusCodeToString(s.code()), " \"", s.message(),
                      "\"");
}

}  // namespace

absl::Status AuthChecker::UserEmpty() {
  return InvalidArgument("user name is empty");
}
absl::Status AuthChecker::OldRevision() {
  return InvalidArgument("revision of auth store is old");
}
absl::Status AuthChecker::Denied() {
  return absl::PermissionDeniedError("etcdserver: permission denied");
}
absl::Status AuthChecker::InvalidToken() {
  return absl::UnauthenticatedError("etcdserver: invalid auth token");
}

std::string AuthFingerprint(const pb::InternalRaftRequest& r) {
  if (r.has_put()) return "put:" + r.put().SerializeAsString();
  if (r.has_delete_range()) {
    return "delete:" + r.delete_range().SerializeAsString();
  }
  if (r.has_txn()) return "txn:" + r.txn().SerializeAsString();
  if (r.has_range()) return "range:" + r.range().SerializeAsString();
  if (r.has_auth_enable()) return "auth-enable";
  if (r.has_auth_disable()) return "auth-disable";
  if (r.has_auth_user_add()) return "user-add:" + r.auth_user_add().name();
  if (r.has_auth_user_delete()) {
    return "user-delete:" + r.auth_user_delete().name();
  }
  if (r.has_auth_user_change_password()) {
    return "user-passwd:" + r.auth_user_change_password().name();
  }
  if (r.has_auth_user_grant_role()) {
    return absl::StrCat("user-grant:", r.auth_user_grant_role().user(), "/",
                        r.auth_user_grant_role().role());
  }
  if (r.has_auth_user_revoke_role()) {
    return absl::StrCat("user-revoke:", r.auth_user_revoke_role().name(), "/",
                        r.auth_user_revoke_role().role());
  }
  if (r.has_auth_role_add()) return "role-add:" + r.auth_role_add().name();
  if (r.has_auth_role_delete()) {
    return "role-delete:" + r.auth_role_delete().role();
  }
  if (r.has_auth_role_grant_permission()) {
    return absl::StrCat(
        "role-grant:", r.auth_role_grant_permission().name(), "/",
        r.auth_role_grant_permission().perm().SerializeAsString());
  }
  if (r.has_auth_role_revoke_permission()) {
    const auto& v = r.auth_role_revoke_permission();
    return absl::StrCat("role-revoke:", v.role(), "/", v.key().size(), ":",
                        v.key(), v.range_end());
  }
  return "other";
}

AuthChecker::AuthChecker() {
  states_.emplace_back(0, std::make_shared<const State>());
}

const AuthChecker::State& AuthChecker::StateAt(uint64_t i) const {
  auto it =
      std::upper_bound(states_.begin(), states_.end(), i,
                       [](uint64_t x, const auto& s) { return x < s.first; });
  return *std::prev(it)->second;  // states_[0] is at index 0
}

bool AuthChecker::Covered(const State& st, const std::set<std::string>& roles,
                          std::string_view key, std::string_view range_end,
                          bool write) {
  std::vector<Interval> have;
  for (const std::string& r : roles) {
    auto it = st.roles.find(r);
    if (it == st.roles.end()) continue;
    for (const Perm& p : it->second) {
      if (write ? p.write : p.read) have.push_back(PermInterval(p));
    }
  }
  if (range_end.empty()) {
    return std::any_of(have.begin(), have.end(),
                       [&](const Interval& iv) { return Contains(iv, key); });
  }
  const bool open_query = range_end == std::string_view("\0", 1);
  // Walk from the range's start: each step jumps to the farthest end of
  // the permissions holding the current point; a point none holds is a
  // gap.
  std::string cur(key);
  while (true) {
    bool found = false, open = false;
    std::string far;
    for (const Interval& iv : have) {
      if (!Contains(iv, cur)) continue;
      if (iv.open_end) {
        open = true;
      } else if (!found || iv.end > far) {
        far = iv.end;
      }
      found = true;
    }
    if (!found) return false;
    if (open) return true;
    if (!open_query && far >= range_end) return true;
    cur = far;
  }
}

absl::Status AuthChecker::OpPermitted(const State& st, const std::string& user,
                                      uint64_t revision, std::string_view key,
                                      std::string_view range_end, bool write) {
  if (!st.enabled) return absl::OkStatus();
  if (revision == 0) return UserEmpty();
  if (revision < st.revision) return OldRevision();
  auto u = st.users.find(user);
  if (u == st.users.end()) return Denied();
  if (u->second.contains(std::string(kRoot))) return absl::OkStatus();
  if (Covered(st, u->second, key, range_end, write)) return absl::OkStatus();
  return Denied();
}

absl::Status AuthChecker::LeaseVerdict(const State& st, int64_t lease,
                                       const std::string& user,
                                       uint64_t revision) const {
  if (lease == 0 || !st.enabled || !lease_keys_) return absl::OkStatus();
  for (const std::string& k : lease_keys_(lease)) {
    if (absl::Status s = OpPermitted(st, user, revision, k, "", true);
        !s.ok()) {
      return s;
    }
  }
  return absl::OkStatus();
}

absl::Status AuthChecker::TxnVerdict(const State& st, const pb::TxnRequest& t,
                                     const std::string& user,
                                     uint64_t revision) const {
  for (const pb::Compare& c : t.compare()) {
    if (absl::Status s =
            OpPermitted(st, user, revision, c.key(), c.range_end(), false);
        !s.ok()) {
      return s;
    }
  }
  for (const auto* ops : {&t.success(), &t.failure()}) {
    for (const pb::RequestOp& op : *ops) {
      absl::Status s;
      if (op.has_request_range()) {
        s = OpPermitted(st, user, revision, op.request_range().key(),
                        op.request_range().range_end(), false);
      } else if (op.has_request_put()) {
        // etcd checks no read for a txn put's prev_kv, and not its lease.
        s = OpPermitted(st, user, revision, op.request_put().key(), "", true);
      } else if (op.has_request_delete_range()) {
        const pb::DeleteRangeRequest& d = op.request_delete_range();
        if (d.prev_kv()) {
          s = OpPermitted(st, user, revision, d.key(), d.range_end(), false);
        }
        if (s.ok()) {
          s = OpPermitted(st, user, revision, d.key(), d.range_end(), true);
        }
      }
      if (!s.ok()) return s;
    }
  }
  return absl::OkStatus();
}

absl::Status AuthChecker::Verdict(const State& st,
                                  const pb::InternalRaftRequest& r,
                                  const std::string& user,
                                  uint64_t revision) const {
  if (!st.enabled) return absl::OkStatus();
  if (r.has_put()) {
    const pb::PutRequest& p = r.put();
    if (absl::Status s = OpPermitted(st, user, revision, p.key(), "", true);
        !s.ok()) {
      return s;
    }
    if (absl::Status s = LeaseVerdict(st, p.lease(), user, revision); !s.ok()) {
      return s;
    }
    if (p.prev_kv()) return OpPermitted(st, user, revision, p.key(), "", false);
    return absl::OkStatus();
  }
  if (r.has_delete_range()) {
    const pb::DeleteRangeRequest& d = r.delete_range();
    if (absl::Status s =
            OpPermitted(st, user, revision, d.key(), d.range_end(), true);
        !s.ok()) {
      return s;
    }
    if (d.prev_kv()) {
      return OpPermitted(st, user, revision, d.key(), d.range_end(), false);
    }
    return absl::OkStatus();
  }
  if (r.has_txn()) return TxnVerdict(st, r.txn(), user, revision);
  if (r.has_range()) {
    return OpPermitted(st, user, revision, r.range().key(),
                       r.range().range_end(), false);
  }
  if (r.has_lease_revoke()) {
    return LeaseVerdict(st, r.lease_revoke().id(), user, revision);
  }
  return absl::OkStatus();
}

bool AuthChecker::IsAdmin(const pb::InternalRaftRequest& r) {
  return r.has_auth_enable() || r.has_auth_disable() || r.has_auth_user_add() ||
         r.has_auth_user_delete() || r.has_auth_user_change_password() ||
         r.has_auth_user_grant_role() || r.has_auth_user_revoke_role() ||
         r.has_auth_role_add() || r.has_auth_role_grant_permission() ||
         r.has_auth_role_revoke_permission() || r.has_auth_role_delete() ||
         r.has_auth_user_list() || r.has_auth_role_list();
}

absl::Status AuthChecker::ApplyAdmin(State* st,
                                     const pb::InternalRaftRequest& r) {
  const std::string root(kRoot);
  if (r.has_auth_enable()) {
    if (st->enabled) return absl::OkStatus();
    auto u = st->users.find(root);
    if (u == st->users.end()) return RootUserNotExist();
    if (!u->second.contains(root)) return RootRoleNotExist();
    st->enabled = true;
    return absl::OkStatus();
  }
  if (r.has_auth_disable()) {
    if (st->enabled) {
      st->enabled = false;
      ++st->revision;
    }
    return absl::OkStatus();
  }
  if (r.has_auth_user_add()) {
    const std::string& name = r.auth_user_add().name();
    if (name.empty()) return UserEmpty();
    if (!st->users.emplace(name, std::set<std::string>()).second) {
      return UserAlreadyExist();
    }
    ++st->revision;
    return absl::OkStatus();
  }
  if (r.has_auth_user_delete()) {
    const std::string& name = r.auth_user_delete().name();
    if (st->enabled && name == root) return InvalidAuthMgmt();
    if (st->users.erase(name) == 0) return UserNotFound();
    ++st->revision;
    return absl::OkStatus();
  }
  if (r.has_auth_user_change_password()) {
    if (!st->users.contains(r.auth_user_change_password().name())) {
      return UserNotFound();
    }
    ++st->revision;
    return absl::OkStatus();
  }
  if (r.has_auth_user_grant_role()) {
    const auto& g = r.auth_user_grant_role();
    auto u = st->users.find(g.user());
    if (u == st->users.end()) return UserNotFound();
    if (g.role() != root && !st->roles.contains(g.role())) {
      return RoleNotFound();
    }
    if (u->second.insert(g.role()).second) ++st->revision;
    return absl::OkStatus();  // a repeated grant changes nothing
  }
  if (r.has_auth_user_revoke_role()) {
    const auto& g = r.auth_user_revoke_role();
    if (st->enabled && g.name() == root && g.role() == root) {
      return InvalidAuthMgmt();
    }
    auto u = st->users.find(g.name());
    if (u == st->users.end()) return UserNotFound();
    if (u->second.erase(g.role()) == 0) return RoleNotGranted();
    ++st->revision;
    return absl::OkStatus();
  }
  if (r.has_auth_role_add()) {
    const std::string& name = r.auth_role_add().name();
    if (name.empty()) return RoleEmpty();
    if (!st->roles.emplace(name, std::vector<Perm>()).second) {
      return RoleAlreadyExist();
    }
    ++st->revision;
    return absl::OkStatus();
  }
  if (r.has_auth_role_delete()) {
    const std::string& name = r.auth_role_delete().role();
    if (st->enabled && name == root) return InvalidAuthMgmt();
    if (st->roles.erase(name) == 0) return RoleNotFound();
    for (auto& [unused, roles] : st->users) roles.erase(name);
    ++st->revision;
    return absl::OkStatus();
  }
  if (r.has_auth_role_grant_permission()) {
    const auto& g = r.auth_role_grant_permission();
    auto it = st->roles.find(g.name());
    if (it == st->roles.end()) return RoleNotFound();
    std::vector<Perm>& perms = it->second;
    const Perm p = FromProto(g.perm());
    // etcd looks only at the first permission with a key not below the new
    // one: the same key and range end is updated in place, anything else
    // is added and the list sorted by key again.
    auto first = std::find_if(perms.begin(), perms.end(),
                              [&](const Perm& q) { return q.key >= p.key; });
    if (first != perms.end() && first->key == p.key &&
        first->range_end == p.range_end) {
      first->read = p.read;
      first->write = p.write;
    } else {
      perms.push_back(p);
      std::stable_sort(
          perms.begin(), perms.end(),
          [](const Perm& a, const Perm& b) { return a.key < b.key; });
    }
    ++st->revision;
    return absl::OkStatus();
  }
  if (r.has_auth_role_revoke_permission()) {
    const auto& g = r.auth_role_revoke_permission();
    auto it = st->roles.find(g.role());
    if (it == st->roles.end()) return RoleNotFound();
    std::vector<Perm>& perms = it->second;
    const size_t before = perms.size();
    std::erase_if(perms, [&](const Perm& q) {
      return q.key == g.key() && q.range_end == g.range_end();
    });
    if (perms.size() == before) return PermissionNotGranted();
    ++st->revision;
    return absl::OkStatus();
  }
  return absl::OkStatus();  // lists: nothing changes
}

bool AuthChecker::OnCommitted(const raft::Entry& e) {
  if (e.index <= last_index_) return false;
  last_index_ = e.index;
  uint64_t proposer = 0, request = 0;
  std::string_view payload;
  pb::InternalRaftRequest r;
  if (e.type != raft::EntryType::kNormal || e.data.empty() ||
      !server::OpenEnvelope(e.data, &proposer, &request, &payload) ||
      !r.ParseFromArray(payload.data(), static_cast<int>(payload.size()))) {
    return false;
  }
  const uint64_t id = r.header().id();
  if (id != 0) {
    if (recent_ids_.contains(id)) return false;  // skipped as a repeat
    recent_ids_.insert(id);
    recent_order_.push_back(id);
    if (recent_order_.size() > kRecentRequestIds) {
      recent_ids_.erase(recent_order_.front());
      recent_order_.pop_front();
    }
  }
  const State& st = *states_.back().second;
  const std::string& user = r.header().username();
  const uint64_t revision = r.header().auth_revision();
  if (IsAdmin(r)) {
    absl::Status expected;
    if (st.enabled) {
      // etcd's IsAdminPermitted (no revision check for admin requests).
      auto u = st.users.find(user);
      if (user.empty()) {
        expected = UserEmpty();
      } else if (u == st.users.end()) {
        expected = UserNotFound();
      } else if (!u->second.contains(std::string(kRoot))) {
        expected = Denied();
      }
    }
    if (expected.ok()) {
      auto next = std::make_shared<State>(st);
      expected = ApplyAdmin(next.get(), r);
      if (expected.ok() && !r.has_auth_user_list() && !r.has_auth_role_list()) {
        if (st.enabled && !next->enabled) ++disables_;
        states_.emplace_back(e.index, std::move(next));
        ++admin_changes_;
      }
    }
    stamped_[e.index] = Stamped{AuthFingerprint(r), expected};
    return false;  // the KV model ignores auth requests anyway
  }
  if (!(r.has_put() || r.has_delete_range() || r.has_txn() || r.has_range() ||
        r.has_lease_revoke())) {
    return false;
  }
  absl::Status expected = Verdict(st, r, user, revision);
  if (!user.empty()) stamped_[e.index] = Stamped{AuthFingerprint(r), expected};
  if (!expected.ok()) ++refused_entries_;
  return !expected.ok();
}

void AuthChecker::OnAnswer(const std::string& user,
                           const pb::InternalRaftRequest& sent, bool read,
                           uint64_t from, uint64_t index,
                           const absl::Status& status) {
  Answer a;
  a.user = user;
  a.fingerprint = AuthFingerprint(sent);
  a.read = read;
  a.from = std::min(from, index);
  a.index = index;
  a.status = status.ok() ? status : server::ToClientError(status);
  a.sent = sent;
  answers_.push_back(std::move(a));
}

std::vector<std::string> AuthChecker::Check() const {
  std::vector<std::string> out;
  for (const Answer& a : answers_) {
    if (!a.status.ok() && !IsAuthError(a.status)) continue;  // not auth's
    if (a.status == InvalidToken()) continue;  // member-local, see above
    absl::Status expected;
    // A read sees the state after its index, a write the one before.
    const uint64_t at = std::min(a.index, last_index_);
    const State& st = StateAt(a.read || at == 0 ? at : at - 1);
    if (a.read) {
      if (a.index > last_index_) {
        out.push_back(absl::StrCat("auth: harness: a read served at index ",
                                   a.index, " beyond the committed log (",
                                   last_index_, ")"));
        continue;
      }
      expected = Verdict(st, a.sent, a.user, st.revision);
      // Served somewhere in [from, index]: any state there will do.
      for (uint64_t i = a.from; i < at && expected != a.status; ++i) {
        const State& earlier = StateAt(i);
        if (Verdict(earlier, a.sent, a.user, earlier.revision) == a.status) {
          expected = a.status;
        }
      }
    } else {
      auto it = stamped_.find(a.index);
      if (it == stamped_.end() || it->second.fingerprint != a.fingerprint) {
        out.push_back(absl::StrCat(
            "auth: harness: ", a.user, "'s answer (", StatusText(a.status),
            ") at index ", a.index,
            " is not for the entry there: ", a.sent.ShortDebugString()));
        continue;
      }
      expected = it->second.expected;
    }
    if (expected == a.status) continue;
    const std::string what = absl::StrCat(
        a.user, "'s ", a.read ? "read" : "request", " ",
        a.sent.ShortDebugString(), " at raft index ", a.index,
        " (auth revision ", st.revision, st.enabled ? "" : ", auth disabled",
        "; ", DescribeRoles(st, a.user), ")");
    if (a.status.ok()) {
      out.push_back(absl::StrCat("auth: ", what,
                                 " succeeded, but etcd refuses it there with ",
                                 StatusText(expected)));
    } else if (expected.ok()) {
      out.push_back(absl::StrCat("auth: ", what, " was refused with ",
                                 StatusText(a.status),
                                 ", but it is permitted there"));
    } else {
      out.push_back(absl::StrCat("auth: ", what, " was refused with ",
                                 StatusText(a.status), ", but etcd says ",
                                 StatusText(expected)));
    }
  }
  return out;
}

std::map<std::string, uint64_t> AuthChecker::Counters() const {
  std::map<std::string, uint64_t> c;
  c["auth.admin-changes"] = admin_changes_;
  c["auth.disables"] = disables_;
  c["auth.refused-entries"] = refused_entries_;
  for (const Answer& a : answers_) {
    std::string k;
    if (a.status.ok()) {
      k = a.read ? "auth.reads-ok" : "auth.requests-ok";
    } else if (a.status == Denied()) {
      k = "auth.refused.permission-denied";
    } else if (a.status == OldRevision()) {
      k = "auth.refused.old-revision";
    } else if (a.status == InvalidToken()) {
      k = "auth.refused.invalid-token";
    } else if (IsAuthError(a.status)) {
      k = "auth.refused.other";
    } else {
      k = "auth.not-auth-errors";
    }
    ++c[k];
  }
  return c;
}

}  // namespace detcd::harness
