#include "engine/auth/auth_store.h"

#include <algorithm>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "engine/util/coding.h"

namespace detcd::auth {
namespace {

constexpr std::string_view kImageMagic = "detcd-auth1";
// Bytes a stored user or role costs beyond its own (bolt's overhead).
constexpr int64_t kEntryDbBytes = 64;

// etcd's BytesAffineComparable: the empty string is +infinity.
int AffineCompare(std::string_view a, std::string_view b) {
  if (a.empty()) return b.empty() ? 0 : 1;
  if (b.empty()) return -1;
  const int c = a.compare(b);
  return c < 0 ? -1 : (c > 0 ? 1 : 0);
}

struct Interval {
  std::string begin;
  std::string end;  // "" = +infinity
};

// A permission's interval, as etcd's getMergedPerms builds it.
Interval PermInterval(const authpb::Permission& p) {
  if (p.range_end().empty()) {
    std::string end = p.key();
    end.push_back('\0');
    return {p.key(), std::move(end)};
  }
  if (p.range_end() == std::string_view("\0", 1)) return {p.key(), ""};
  return {p.key(), p.range_end()};
}

bool Grants(authpb::Permission::Type have, authpb::Permission::Type want) {
  return have == authpb::Permission::READWRITE || have == want;
}

std::vector<std::string> SortedRoles(const authpb::User& u) {
  return {u.roles().begin(), u.roles().end()};
}

}  // namespace

absl::Status ErrRootUserNotExist() {
  return absl::FailedPreconditionError("auth: root user does not exist");
}
absl::Status ErrRootRoleNotExist() {
  return absl::FailedPreconditionError(
      "auth: root user does not have root role");
}
absl::Status ErrUserAlreadyExist() {
  return absl::FailedPreconditionError("auth: user already exists");
}
absl::Status ErrUserEmpty() {
  return absl::InvalidArgumentError("auth: user name is empty");
}
absl::Status ErrUserNotFound() {
  return absl::FailedPreconditionError("auth: user not found");
}
absl::Status ErrRoleAlreadyExist() {
  return absl::FailedPreconditionError("auth: role already exists");
}
absl::Status ErrRoleNotFound() {
  return absl::FailedPreconditionError("auth: role not found");
}
absl::Status ErrRoleEmpty() {
  return absl::InvalidArgumentError("auth: role name is empty");
}
absl::Status ErrAuthFailed() {
  return absl::InvalidArgumentError(
      "auth: authentication failed, invalid user ID or password");
}
absl::Status ErrNoPasswordUser() {
  // etcd's gRPC layer has no entry for it: clients see Unknown.
  return absl::UnknownError(
      "auth: authentication failed, password was given for no password "
      "user");
}
absl::Status ErrPermissionDenied() {
  return absl::PermissionDeniedError("auth: permission denied");
}
absl::Status ErrRoleNotGranted() {
  return absl::FailedPreconditionError("auth: role is not granted to the user");
}
absl::Status ErrPermissionNotGranted() {
  return absl::FailedPreconditionError(
      "auth: permission is not granted to the role");
}
absl::Status ErrAuthNotEnabled() {
  return absl::FailedPreconditionError("auth: authentication is not enabled");
}
absl::Status ErrAuthOldRevision() {
  return absl::InvalidArgumentError("auth: revision in header is old");
}
absl::Status ErrInvalidAuthToken() {
  return absl::UnauthenticatedError("auth: invalid auth token");
}
absl::Status ErrInvalidAuthMgmt() {
  return absl::InvalidArgumentError("auth: invalid auth management");
}

absl::Status AuthStore::Enable() {
  if (enabled_) return absl::OkStatus();
  const authpb::User* root = FindUser(kRootUser);
  if (root == nullptr) return ErrRootUserNotExist();
  if (!HasRole(kRootUser, kRootRole)) return ErrRootRoleNotExist();
  enabled_ = true;
  return absl::OkStatus();
}

void AuthStore::Disable() {
  if (!enabled_) return;
  enabled_ = false;
  ++revision_;
}

const authpb::User* AuthStore::FindUser(std::string_view name) const {
  auto it = users_.find(name);
  return it == users_.end() ? nullptr : &it->second;
}

absl::Status AuthStore::UserAdd(std::string_view name,
                                std::string_view hashed_password,
                                bool no_password) {
  if (name.empty()) return ErrUserEmpty();
  if (FindUser(name) != nullptr) return ErrUserAlreadyExist();
  authpb::User u;
  u.set_name(std::string(name));
  if (!no_password) u.set_password(std::string(hashed_password));
  u.mutable_options()->set_no_password(no_password);
  users_.emplace(std::string(name), std::move(u));
  ++revision_;
  return absl::OkStatus();
}

absl::Status AuthStore::UserDelete(std::string_view name) {
  if (enabled_ && name == kRootUser) return ErrInvalidAuthMgmt();
  auto it = users_.find(name);
  if (it == users_.end()) return ErrUserNotFound();
  users_.erase(it);
  ++revision_;
  return absl::OkStatus();
}

absl::Status AuthStore::UserChangePassword(std::string_view name,
                                           std::string_view hashed_password) {
  auto it = users_.find(name);
  if (it == users_.end()) return ErrUserNotFound();
  it->second.set_password(std::string(hashed_password));
  ++revision_;
  return absl::OkStatus();
}

absl::Status AuthStore::UserGrantRole(std::string_view user,
                                      std::string_view role) {
  auto it = users_.find(user);
  if (it == users_.end()) return ErrUserNotFound();
  if (role != kRootRole && !roles_.contains(role)) return ErrRoleNotFound();
  std::vector<std::string> roles = SortedRoles(it->second);
  auto pos = std::lower_bound(roles.begin(), roles.end(), role);
  if (pos != roles.end() && *pos == role) {
    return absl::OkStatus();  // etcd ignores a repeated grant
  }
  roles.insert(pos, std::string(role));
  it->second.clear_roles();
  for (std::string& r : roles) it->second.add_roles(std::move(r));
  ++revision_;
  return absl::OkStatus();
}

absl::Status AuthStore::UserRevokeRole(std::string_view user,
                                       std::string_view role) {
  if (enabled_ && user == kRootUser && role == kRootRole) {
    return ErrInvalidAuthMgmt();
  }
  auto it = users_.find(user);
  if (it == users_.end()) return ErrUserNotFound();
  std::vector<std::string> kept;
  for (const std::string& r : it->second.roles()) {
    if (r != role) kept.push_back(r);
  }
  if (static_cast<int>(kept.size()) == it->second.roles_size()) {
    return ErrRoleNotGranted();
  }
  it->second.clear_roles();
  for (std::string& r : kept) it->second.add_roles(std::move(r));
  ++revision_;
  return absl::OkStatus();
}

absl::Status AuthStore::RoleAdd(std::string_view name) {
  if (name.empty()) return ErrRoleEmpty();
  if (roles_.contains(name)) return ErrRoleAlreadyExist();
  authpb::Role r;
  r.set_name(std::string(name));
  roles_.emplace(std::string(name), std::move(r));
  ++revision_;
  return absl::OkStatus();
}

absl::Status AuthStore::RoleDelete(std::string_view name) {
  if (enabled_ && name == kRootRole) return ErrInvalidAuthMgmt();
  auto it = roles_.find(name);
  if (it == roles_.end()) return ErrRoleNotFound();
  roles_.erase(it);
  // The role leaves every user that had it.
  for (auto& [unused, u] : users_) {
    std::vector<std::string> kept;
    for (const std::string& r : u.roles()) {
      if (r != name) kept.push_back(r);
    }
    if (static_cast<int>(kept.size()) == u.roles_size()) continue;
    u.clear_roles();
    for (std::string& r : kept) u.add_roles(std::move(r));
  }
  ++revision_;
  return absl::OkStatus();
}

absl::Status AuthStore::RoleGrantPermission(std::string_view role,
                                            const authpb::Permission& perm) {
  auto it = roles_.find(role);
  if (it == roles_.end()) return ErrRoleNotFound();
  auto* perms = it->second.mutable_keypermission();
  // etcd keeps them sorted by key and updates the first one with the same
  // key if its range end matches too.
  int idx = 0;
  while (idx < perms->size() && (*perms)[idx].key() < perm.key()) ++idx;
  if (idx < perms->size() && (*perms)[idx].key() == perm.key() &&
      (*perms)[idx].range_end() == perm.range_end()) {
    (*perms)[idx].set_permtype(perm.permtype());
  } else {
    authpb::Permission p;
    p.set_key(perm.key());
    p.set_range_end(perm.range_end());
    p.set_permtype(perm.permtype());
    std::vector<authpb::Permission> all(perms->begin(), perms->end());
    all.push_back(std::move(p));
    // sort.Sort is not stable; equal keys keep insertion order here.
    std::stable_sort(all.begin(), all.end(),
                     [](const authpb::Permission& a,
                        const authpb::Permission& b) {
                       return a.key() < b.key();
                     });
    perms->Clear();
    for (authpb::Permission& q : all) *perms->Add() = std::move(q);
  }
  ++revision_;
  return absl::OkStatus();
}

absl::Status AuthStore::RoleRevokePermission(std::string_view role,
                                             std::string_view key,
                                             std::string_view range_end) {
  auto it = roles_.find(role);
  if (it == roles_.end()) return ErrRoleNotFound();
  std::vector<authpb::Permission> kept;
  for (const authpb::Permission& p : it->second.keypermission()) {
    if (p.key() != key || p.range_end() != range_end) kept.push_back(p);
  }
  if (static_cast<int>(kept.size()) == it->second.keypermission_size()) {
    return ErrPermissionNotGranted();
  }
  it->second.clear_keypermission();
  for (authpb::Permission& p : kept) {
    *it->second.add_keypermission() = std::move(p);
  }
  ++revision_;
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::string>> AuthStore::UserGet(
    std::string_view name) const {
  const authpb::User* u = FindUser(name);
  if (u == nullptr) return ErrUserNotFound();
  return SortedRoles(*u);
}

std::vector<std::string> AuthStore::UserList() const {
  std::vector<std::string> out;
  for (const auto& [name, unused] : users_) out.push_back(name);
  return out;
}

absl::StatusOr<std::vector<authpb::Permission>> AuthStore::RoleGet(
    std::string_view name) const {
  auto it = roles_.find(name);
  if (it == roles_.end()) return ErrRoleNotFound();
  return std::vector<authpb::Permission>(it->second.keypermission().begin(),
                                         it->second.keypermission().end());
}

std::vector<std::string> AuthStore::RoleList() const {
  std::vector<std::string> out;
  for (const auto& [name, unused] : roles_) out.push_back(name);
  return out;
}

bool AuthStore::HasRole(std::string_view user, std::string_view role) const {
  const authpb::User* u = FindUser(user);
  if (u == nullptr) return false;
  for (const std::string& r : u->roles()) {
    if (r == role) return true;
  }
  return false;
}

absl::StatusOr<std::string> AuthStore::PasswordHash(
    std::string_view name) const {
  if (!enabled_) return ErrAuthNotEnabled();
  const authpb::User* u = FindUser(name);
  if (u == nullptr) return ErrAuthFailed();
  if (u->options().no_password()) return ErrNoPasswordUser();
  return u->password();
}

absl::Status AuthStore::CanAuthenticate(std::string_view name) const {
  if (!enabled_) return ErrAuthNotEnabled();
  const authpb::User* u = FindUser(name);
  if (u == nullptr || u->options().no_password()) return ErrAuthFailed();
  return absl::OkStatus();
}

bool AuthStore::RangeCovered(const authpb::User& u, std::string_view key,
                             std::string_view range_end,
                             authpb::Permission::Type type) const {
  std::vector<Interval> have;
  for (const std::string& rn : u.roles()) {
    auto it = roles_.find(rn);
    if (it == roles_.end()) continue;
    for (const authpb::Permission& p : it->second.keypermission()) {
      if (Grants(p.permtype(), type)) have.push_back(PermInterval(p));
    }
  }
  if (range_end.empty()) {
    // A single key: some permission's interval holds it.
    for (const Interval& iv : have) {
      if (AffineCompare(key, iv.begin) >= 0 && AffineCompare(key, iv.end) < 0) {
        return true;
      }
    }
    return false;
  }
  Interval q{std::string(key), range_end == std::string_view("\0", 1)
                                   ? std::string()
                                   : std::string(range_end)};
  // etcd's IntervalTree.Contains: the permissions that overlap the range,
  // by begin, must chain without a gap and span it.
  std::vector<const Interval*> over;
  for (const Interval& iv : have) {
    const bool left = AffineCompare(q.begin, iv.begin) < 0 &&
                      AffineCompare(q.end, iv.begin) <= 0;
    const bool right = AffineCompare(q.begin, iv.end) >= 0;
    if (!left && !right) over.push_back(&iv);
  }
  if (over.empty()) return false;
  std::stable_sort(over.begin(), over.end(),
                   [](const Interval* a, const Interval* b) {
                     return AffineCompare(a->begin, b->begin) < 0;
                   });
  std::string_view min_begin = over[0]->begin;
  std::string_view max_end = over[0]->end;
  for (size_t i = 1; i < over.size(); ++i) {
    if (AffineCompare(max_end, over[i]->begin) < 0) return false;
    if (AffineCompare(over[i]->end, max_end) > 0) max_end = over[i]->end;
  }
  return AffineCompare(max_end, q.end) >= 0 &&
         AffineCompare(min_begin, q.begin) <= 0;
}

absl::Status AuthStore::IsOpPermitted(const AuthInfo& ai, std::string_view key,
                                      std::string_view range_end,
                                      authpb::Permission::Type type) const {
  if (!enabled_) return absl::OkStatus();
  if (ai.revision == 0) return ErrUserEmpty();
  if (ai.revision < revision_) return ErrAuthOldRevision();
  const authpb::User* u = FindUser(ai.user);
  if (u == nullptr) return ErrPermissionDenied();
  if (HasRole(ai.user, kRootRole)) return absl::OkStatus();
  if (RangeCovered(*u, key, range_end, type)) return absl::OkStatus();
  return ErrPermissionDenied();
}

absl::Status AuthStore::IsPutPermitted(const AuthInfo& ai,
                                       std::string_view key) const {
  return IsOpPermitted(ai, key, "", authpb::Permission::WRITE);
}

absl::Status AuthStore::IsRangePermitted(const AuthInfo& ai,
                                         std::string_view key,
                                         std::string_view range_end) const {
  return IsOpPermitted(ai, key, range_end, authpb::Permission::READ);
}

absl::Status AuthStore::IsDeleteRangePermitted(
    const AuthInfo& ai, std::string_view key,
    std::string_view range_end) const {
  return IsOpPermitted(ai, key, range_end, authpb::Permission::WRITE);
}

absl::Status AuthStore::IsAdminPermitted(const AuthInfo* ai) const {
  if (!enabled_) return absl::OkStatus();
  if (ai == nullptr || ai->user.empty()) return ErrUserEmpty();
  if (FindUser(ai->user) == nullptr) return ErrUserNotFound();
  if (!HasRole(ai->user, kRootRole)) return ErrPermissionDenied();
  return absl::OkStatus();
}

std::string AuthStore::Snapshot() const {
  std::string out(kImageMagic);
  out.push_back(enabled_ ? 1 : 0);
  coding::PutVarint64(&out, revision_);
  coding::PutVarint64(&out, users_.size());
  for (const auto& [unused, u] : users_) {
    coding::PutLengthPrefixed(&out, u.SerializeAsString());
  }
  coding::PutVarint64(&out, roles_.size());
  for (const auto& [unused, r] : roles_) {
    coding::PutLengthPrefixed(&out, r.SerializeAsString());
  }
  return out;
}

absl::Status AuthStore::Restore(std::string_view image) {
  if (image.substr(0, kImageMagic.size()) != kImageMagic) {
    return absl::DataLossError("auth snapshot: bad magic");
  }
  coding::Reader r(image.substr(kImageMagic.size()));
  uint8_t enabled = 0;
  uint64_t revision = 0, n = 0;
  if (!r.GetByte(&enabled) || enabled > 1 || !r.GetVarint64(&revision) ||
      revision == 0 || !r.GetVarint64(&n) || n > r.remaining()) {
    return absl::DataLossError("auth snapshot: truncated");
  }
  std::map<std::string, authpb::User, std::less<>> users;
  for (uint64_t i = 0; i < n; ++i) {
    std::string bytes;
    authpb::User u;
    if (!r.GetLengthPrefixed(&bytes) || !u.ParseFromString(bytes) ||
        u.name().empty() || !users.emplace(u.name(), u).second) {
      return absl::DataLossError("auth snapshot: bad user");
    }
  }
  if (!r.GetVarint64(&n) || n > r.remaining()) {
    return absl::DataLossError("auth snapshot: truncated");
  }
  std::map<std::string, authpb::Role, std::less<>> roles;
  for (uint64_t i = 0; i < n; ++i) {
    std::string bytes;
    authpb::Role ro;
    if (!r.GetLengthPrefixed(&bytes) || !ro.ParseFromString(bytes) ||
        ro.name().empty() || !roles.emplace(ro.name(), ro).second) {
      return absl::DataLossError("auth snapshot: bad role");
    }
  }
  if (!r.empty()) return absl::DataLossError("auth snapshot: trailing bytes");
  enabled_ = enabled == 1;
  revision_ = revision;
  users_ = std::move(users);
  roles_ = std::move(roles);
  return absl::OkStatus();
}

absl::StatusOr<AuthStore> AuthStore::FromContents(
    bool enabled, uint64_t revision, std::vector<authpb::User> users,
    std::vector<authpb::Role> roles) {
  if (revision == 0) return absl::InvalidArgumentError("auth: revision 0");
  AuthStore as;
  as.enabled_ = enabled;
  as.revision_ = revision;
  for (authpb::User& u : users) {
    if (u.name().empty()) {
      return absl::InvalidArgumentError("auth: a user without a name");
    }
    std::string name = u.name();
    if (!as.users_.emplace(name, std::move(u)).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("auth: two users named ", absl::CHexEscape(name)));
    }
  }
  for (authpb::Role& r : roles) {
    if (r.name().empty()) {
      return absl::InvalidArgumentError("auth: a role without a name");
    }
    std::string name = r.name();
    if (!as.roles_.emplace(name, std::move(r)).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("auth: two roles named ", absl::CHexEscape(name)));
    }
  }
  return as;
}

int64_t AuthStore::ApproxBytes() const {
  if (pristine()) return 0;
  int64_t n = 0;
  for (const auto& [unused, u] : users_) {
    n += kEntryDbBytes + static_cast<int64_t>(u.ByteSizeLong());
  }
  for (const auto& [unused, r] : roles_) {
    n += kEntryDbBytes + static_cast<int64_t>(r.ByteSizeLong());
  }
  return n;
}

}  // namespace detcd::auth
