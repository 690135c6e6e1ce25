// etcd's auth store (auth/store.go, v3.4 semantics): users, roles, their
// key permissions, the enabled flag and the auth revision. It is part of
// the replicated state (EtcdStateMachine): every mutation is a committed
// raft entry, applied identically on every member, and it travels in
// snapshots (Snapshot / Restore below). Nothing here reads a clock or draws
// randomness; passwords arrive already hashed (bcrypt.h) and tokens are
// the token provider's business (token.h).
//
// Errors carry etcd's auth package texts ("auth: ..."); errors.h's
// ToClientError turns them into the "etcdserver: ..." gRPC errors.
//
// Revision: 1 for a fresh store (etcd's NewAuthStore commits revision 1);
// every successful change of users, roles, permissions and AuthDisable adds
// one; AuthEnable does not (as in etcd). A request carries the revision its
// caller's token was checked against; a permission check with an older one
// fails with ErrAuthOldRevision, so a token issued before a revoke cannot
// use the revoked permission.
//
// Permission checks follow etcd's unified range permissions: a permission
// with an empty range_end is the single key, range_end "\0" every key from
// key on, anything else [key, range_end); a key range is permitted when the
// union of the user's permissions of that type covers it. Byte strings
// compare as etcd's BytesAffineComparable: the empty string is greater than
// every other (so "" as a range end means "to the end").
//
// Snapshot image (integers varints, strings length-prefixed):
//   "detcd-auth1" byte(enabled) varint(revision)
//   varint(#users) lp(authpb.User)*   (by name)
//   varint(#roles) lp(authpb.Role)*   (by name)
#ifndef DETCD_ENGINE_AUTH_AUTH_STORE_H_
#define DETCD_ENGINE_AUTH_AUTH_STORE_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <map>
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "authpb/auth.pb.h"

namespace detcd::auth {

inline constexpr std::string_view kRootUser = "root";
inline constexpr std::string_view kRootRole = "root";

// Who a request runs as (etcd's AuthInfo): empty user and revision 0 is
// "no credentials".
struct AuthInfo {
  std::string user;
  uint64_t revision = 0;
};

// etcd's auth package errors (texts as etcd's auth/store.go).
absl::Status ErrRootUserNotExist();
absl::Status ErrRootRoleNotExist();
absl::Status ErrUserAlreadyExist();
absl::Status ErrUserEmpty();
absl::Status ErrUserNotFound();
absl::Status ErrRoleAlreadyExist();
absl::Status ErrRoleNotFound();
absl::Status ErrRoleEmpty();
absl::Status ErrAuthFailed();
absl::Status ErrNoPasswordUser();
absl::Status ErrPermissionDenied();
absl::Status ErrRoleNotGranted();
absl::Status ErrPermissionNotGranted();
absl::Status ErrAuthNotEnabled();
absl::Status ErrAuthOldRevision();
absl::Status ErrInvalidAuthToken();
absl::Status ErrInvalidAuthMgmt();

class AuthStore {
 public:
  AuthStore() = default;

  bool enabled() const { return enabled_; }
  uint64_t revision() const { return revision_; }
  // True for a store nobody changed (disabled, no users or roles,
  // revision 1): its snapshot section may be left out.
  bool pristine() const {
    return !enabled_ && revision_ == 1 && users_.empty() && roles_.empty();
  }

  // Mutations (apply path). Each returns etcd's error for the case.
  // ErrRootUserNotExist / ErrRootRoleNotExist; enabling twice is ok.
  absl::Status Enable();
  void Disable();
  // `hashed_password` is a bcrypt hash (empty for no_password users).
  absl::Status UserAdd(std::string_view name, std::string_view hashed_password,
                       bool no_password);
  absl::Status UserDelete(std::string_view name);
  absl::Status UserChangePassword(std::string_view name,
                                  std::string_view hashed_password);
  absl::Status UserGrantRole(std::string_view user, std::string_view role);
  absl::Status UserRevokeRole(std::string_view user, std::string_view role);
  absl::Status RoleAdd(std::string_view name);
  absl::Status RoleDelete(std::string_view name);
  absl::Status RoleGrantPermission(std::string_view role,
                                   const authpb::Permission& perm);
  absl::Status RoleRevokePermission(std::string_view role,
                                    std::string_view key,
                                    std::string_view range_end);

  // Reads.
  absl::StatusOr<std::vector<std::string>> UserGet(std::string_view name) const;
  std::vector<std::string> UserList() const;
  absl::StatusOr<std::vector<authpb::Permission>> RoleGet(
      std::string_view name) const;
  std::vector<std::string> RoleList() const;
  bool HasRole(std::string_view user, std::string_view role) const;
  const authpb::User* FindUser(std::string_view name) const;

  // etcd's CheckPassword without the hash comparison: the stored hash to
  // compare the password with, or ErrAuthNotEnabled / ErrAuthFailed /
  // ErrNoPasswordUser.
  absl::StatusOr<std::string> PasswordHash(std::string_view name) const;
  // etcd's Authenticate at apply time (before the token is assigned):
  // ErrAuthNotEnabled, or ErrAuthFailed for an unknown or no-password user.
  absl::Status CanAuthenticate(std::string_view name) const;

  // Permission checks (etcd's isOpPermitted): ok when auth is disabled;
  // ErrUserEmpty for revision 0; ErrAuthOldRevision for an older revision;
  // ErrPermissionDenied for an unknown user or a range not covered.
  absl::Status IsPutPermitted(const AuthInfo& ai, std::string_view key) const;
  absl::Status IsRangePermitted(const AuthInfo& ai, std::string_view key,
                                std::string_view range_end) const;
  absl::Status IsDeleteRangePermitted(const AuthInfo& ai, std::string_view key,
                                      std::string_view range_end) const;
  // ok when disabled; ErrUserEmpty without a user name, ErrUserNotFound,
  // ErrPermissionDenied without the root role.
  absl::Status IsAdminPermitted(const AuthInfo* ai) const;

  std::string Snapshot() const;
  absl::Status Restore(std::string_view image);
  // A store holding exactly these contents, read from elsewhere (etcd's
  // auth buckets: cli/detcdctl/etcd_db.h); its Snapshot() is the image to
  // restore. Checked as Restore checks an image: revision at least 1,
  // every user and role named, no name twice (InvalidArgument otherwise).
  // Users' roles and roles' permissions are kept as given, in their order.
  static absl::StatusOr<AuthStore> FromContents(
      bool enabled, uint64_t revision, std::vector<authpb::User> users,
      std::vector<authpb::Role> roles);
  // Bytes this state would take in etcd's bolt file (0 when pristine).
  int64_t ApproxBytes() const;

 private:
  absl::Status IsOpPermitted(const AuthInfo& ai, std::string_view key,
                             std::string_view range_end,
                             authpb::Permission::Type type) const;
  bool RangeCovered(const authpb::User& u, std::string_view key,
                    std::string_view range_end,
                    authpb::Permission::Type type) const;

  bool enabled_ = false;
  uint64_t revision_ = 1;
  std::map<std::string, authpb::User, std::less<>> users_;
  std::map<std::string, authpb::Role, std::less<>> roles_;
};

}  // namespace detcd::auth

#endif  // DETCD_ENGINE_AUTH_AUTH_STORE_H_
