#include "engine/auth/auth_store.h"

#include <algorithm>
#include <array>
#include <string>

#include "engine/auth/bcrypt.h"
#include "engine/auth/token.h"
#include "gtest/gtest.h"

namespace detcd::auth {
namespace {

authpb::Permission Perm(authpb::Permission::Type t, std::string key,
                        std::string end) {
  authpb::Permission p;
  p.set_permtype(t);
  p.set_key(std::move(key));
  p.set_range_end(std::move(end));
  return p;
}

const std::string kFromKey("\0", 1);

// root with the root role, auth enabled, and a user "u" with role "r".
AuthStore RootAndUser() {
  AuthStore s;
  EXPECT_TRUE(s.UserAdd("root", "h", false).ok());
  EXPECT_TRUE(s.UserGrantRole("root", "root").ok());
  EXPECT_TRUE(s.UserAdd("u", "h", false).ok());
  EXPECT_TRUE(s.RoleAdd("r").ok());
  EXPECT_TRUE(s.UserGrantRole("u", "r").ok());
  EXPECT_TRUE(s.Enable().ok());
  return s;
}

TEST(AuthStoreTest, EnableNeedsRootUserWithRootRole) {
  AuthStore s;
  EXPECT_EQ(s.revision(), 1u);
  EXPECT_TRUE(s.pristine());
  EXPECT_EQ(s.Enable().message(), "auth: root user does not exist");
  ASSERT_TRUE(s.UserAdd("root", "h", false).ok());
  EXPECT_EQ(s.Enable().message(), "auth: root user does not have root role");
  // The root role needs no RoleAdd to be granted.
  ASSERT_TRUE(s.UserGrantRole("root", "root").ok());
  const uint64_t rev = s.revision();
  ASSERT_TRUE(s.Enable().ok());
  EXPECT_TRUE(s.enabled());
  EXPECT_EQ(s.revision(), rev);  // enabling does not move the revision
  EXPECT_TRUE(s.Enable().ok());  // twice: ignored
  s.Disable();
  EXPECT_FALSE(s.enabled());
  EXPECT_EQ(s.revision(), rev + 1);
}

TEST(AuthStoreTest, UserAndRoleErrorsAsEtcd) {
  AuthStore s;
  EXPECT_EQ(s.UserAdd("", "h", false).message(), "auth: user name is empty");
  ASSERT_TRUE(s.UserAdd("a", "h", false).ok());
  EXPECT_EQ(s.UserAdd("a", "h", false).message(), "auth: user already exists");
  EXPECT_EQ(s.UserDelete("b").message(), "auth: user not found");
  EXPECT_EQ(s.UserGrantRole("a", "x").message(), "auth: role not found");
  EXPECT_EQ(s.UserGrantRole("b", "x").message(), "auth: user not found");
  EXPECT_EQ(s.RoleAdd("").message(), "auth: role name is empty");
  ASSERT_TRUE(s.RoleAdd("x").ok());
  EXPECT_EQ(s.RoleAdd("x").message(), "auth: role already exists");
  EXPECT_EQ(s.UserRevokeRole("a", "x").message(),
            "auth: role is not granted to the user");
  ASSERT_TRUE(s.UserGrantRole("a", "x").ok());
  const uint64_t rev = s.revision();
  ASSERT_TRUE(s.UserGrantRole("a", "x").ok());  // repeated: no change
  EXPECT_EQ(s.revision(), rev);
  EXPECT_EQ(s.RoleRevokePermission("x", "k", "").message(),
            "auth: permission is not granted to the role");
  EXPECT_EQ(s.RoleGet("y").status().message(), "auth: role not found");
  // Deleting a role takes it from its users.
  ASSERT_TRUE(s.RoleDelete("x").ok());
  EXPECT_TRUE(s.UserGet("a")->empty());
}

TEST(AuthStoreTest, RootIsProtectedWhileEnabled) {
  AuthStore s = RootAndUser();
  EXPECT_EQ(s.UserDelete("root").message(), "auth: invalid auth management");
  EXPECT_EQ(s.UserRevokeRole("root", "root").message(),
            "auth: invalid auth management");
  EXPECT_EQ(s.RoleDelete("root").message(), "auth: invalid auth management");
  s.Disable();
  EXPECT_TRUE(s.UserRevokeRole("root", "root").ok());
}

TEST(AuthStoreTest, PermissionChecks) {
  AuthStore s = RootAndUser();
  const AuthInfo u{"u", s.revision()};
  EXPECT_EQ(s.IsRangePermitted(u, "foo", "").message(),
            "auth: permission denied");
  ASSERT_TRUE(s.RoleGrantPermission(
                   "r", Perm(authpb::Permission::READ, "foo", "fop"))
                  .ok());
  // The grant moved the revision: the old one is refused.
  EXPECT_EQ(s.IsRangePermitted(u, "foo", "").message(),
            "auth: revision in header is old");
  const AuthInfo u2{"u", s.revision()};
  EXPECT_TRUE(s.IsRangePermitted(u2, "foo", "").ok());
  EXPECT_TRUE(s.IsRangePermitted(u2, "foo/bar", "").ok());
  EXPECT_TRUE(s.IsRangePermitted(u2, "foo", "fop").ok());
  EXPECT_FALSE(s.IsRangePermitted(u2, "foo", "foq").ok());
  EXPECT_FALSE(s.IsRangePermitted(u2, "foo", kFromKey).ok());
  EXPECT_FALSE(s.IsPutPermitted(u2, "foo").ok());
  EXPECT_EQ(s.IsRangePermitted(AuthInfo{}, "foo", "").message(),
            "auth: user name is empty");
  EXPECT_EQ(s.IsRangePermitted(AuthInfo{"nobody", s.revision()}, "foo", "")
                .message(),
            "auth: permission denied");
  // Adjacent permissions join; from-key reaches the end.
  ASSERT_TRUE(s.RoleGrantPermission(
                   "r", Perm(authpb::Permission::READWRITE, "fop", kFromKey))
                  .ok());
  const AuthInfo u3{"u", s.revision()};
  EXPECT_TRUE(s.IsRangePermitted(u3, "foo", kFromKey).ok());
  EXPECT_TRUE(s.IsRangePermitted(u3, "foo", "zzz").ok());
  EXPECT_FALSE(s.IsRangePermitted(u3, "fon", "zzz").ok());
  EXPECT_TRUE(s.IsPutPermitted(u3, "zebra").ok());
  EXPECT_FALSE(s.IsPutPermitted(u3, "foo").ok());
  EXPECT_FALSE(s.IsDeleteRangePermitted(u3, "foo", "fop").ok());
  // A single-key permission.
  ASSERT_TRUE(
      s.RoleGrantPermission("r", Perm(authpb::Permission::WRITE, "a", "")).ok());
  const AuthInfo u4{"u", s.revision()};
  EXPECT_TRUE(s.IsPutPermitted(u4, "a").ok());
  EXPECT_FALSE(s.IsPutPermitted(u4, "a0").ok());
  // Root may do anything; admin checks.
  const AuthInfo root{"root", s.revision()};
  EXPECT_TRUE(s.IsPutPermitted(root, "anything").ok());
  EXPECT_TRUE(s.IsAdminPermitted(&root).ok());
  EXPECT_EQ(s.IsAdminPermitted(&u4).message(), "auth: permission denied");
  EXPECT_EQ(s.IsAdminPermitted(nullptr).message(), "auth: user name is empty");
  const AuthInfo ghost{"ghost", s.revision()};
  EXPECT_EQ(s.IsAdminPermitted(&ghost).message(), "auth: user not found");
  // Revoking takes exactly the matching permission.
  ASSERT_TRUE(s.RoleRevokePermission("r", "a", "").ok());
  EXPECT_FALSE(s.IsPutPermitted(AuthInfo{"u", s.revision()}, "a").ok());
  // Disabled: everything goes.
  s.Disable();
  EXPECT_TRUE(s.IsPutPermitted(AuthInfo{}, "a").ok());
  EXPECT_TRUE(s.IsAdminPermitted(nullptr).ok());
}

TEST(AuthStoreTest, GrantKeepsPermissionsSortedAndUpdatesInPlace) {
  AuthStore s;
  ASSERT_TRUE(s.RoleAdd("r").ok());
  ASSERT_TRUE(
      s.RoleGrantPermission("r", Perm(authpb::Permission::READ, "b", "")).ok());
  ASSERT_TRUE(
      s.RoleGrantPermission("r", Perm(authpb::Permission::READ, "a", "")).ok());
  ASSERT_TRUE(
      s.RoleGrantPermission("r", Perm(authpb::Permission::WRITE, "b", "")).ok());
  auto perms = s.RoleGet("r");
  ASSERT_TRUE(perms.ok());
  ASSERT_EQ(perms->size(), 2u);
  EXPECT_EQ((*perms)[0].key(), "a");
  EXPECT_EQ((*perms)[1].key(), "b");
  EXPECT_EQ((*perms)[1].permtype(), authpb::Permission::WRITE);
}

TEST(AuthStoreTest, PasswordLookups) {
  AuthStore s;
  EXPECT_EQ(s.PasswordHash("root").status().message(),
            "auth: authentication is not enabled");
  ASSERT_TRUE(s.UserAdd("root", "hash", false).ok());
  ASSERT_TRUE(s.UserGrantRole("root", "root").ok());
  ASSERT_TRUE(s.UserAdd("cert", "", true).ok());
  ASSERT_TRUE(s.Enable().ok());
  EXPECT_EQ(*s.PasswordHash("root"), "hash");
  EXPECT_EQ(s.PasswordHash("x").status().message(),
            "auth: authentication failed, invalid user ID or password");
  EXPECT_EQ(s.PasswordHash("cert").status().code(), absl::StatusCode::kUnknown);
  EXPECT_FALSE(s.CanAuthenticate("cert").ok());
  EXPECT_TRUE(s.CanAuthenticate("root").ok());
}

TEST(AuthStoreTest, SnapshotRoundTripAndRejectsGarbage) {
  AuthStore s = RootAndUser();
  ASSERT_TRUE(s.RoleGrantPermission(
                   "r", Perm(authpb::Permission::READ, "foo", kFromKey))
                  .ok());
  AuthStore t;
  ASSERT_TRUE(t.Restore(s.Snapshot()).ok());
  EXPECT_EQ(t.Snapshot(), s.Snapshot());
  EXPECT_TRUE(t.enabled());
  EXPECT_EQ(t.revision(), s.revision());
  EXPECT_EQ(t.UserList(), (std::vector<std::string>{"root", "u"}));
  std::string img = s.Snapshot();
  for (size_t cut = 0; cut < img.size(); ++cut) {
    AuthStore x;
    EXPECT_FALSE(x.Restore(img.substr(0, cut)).ok()) << cut;
  }
  EXPECT_FALSE(t.Restore(img + "x").ok());
  EXPECT_TRUE(t.enabled());  // a failed restore changes nothing
}

TEST(AuthStoreTest, FromContentsIsTheStoreThatHeldThem) {
  AuthStore s = RootAndUser();
  ASSERT_TRUE(
      s.RoleGrantPermission("r", Perm(authpb::Permission::READWRITE, "a", "b"))
          .ok());
  std::vector<authpb::User> users;
  for (const std::string& name : s.UserList())
    users.push_back(*s.FindUser(name));
  std::vector<authpb::Role> roles;
  for (const std::string& name : s.RoleList()) {
    authpb::Role r;
    r.set_name(name);
    auto perms = s.RoleGet(name);
    ASSERT_TRUE(perms.ok());
    for (const authpb::Permission& p : *perms) *r.add_keypermission() = p;
    roles.push_back(std::move(r));
  }
  // Given in any order: the image is the store's own.
  std::reverse(users.begin(), users.end());
  auto t = AuthStore::FromContents(true, s.revision(), users, roles);
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->Snapshot(), s.Snapshot());
  AuthStore u;
  ASSERT_TRUE(u.Restore(t->Snapshot()).ok());
  EXPECT_TRUE(u.enabled());
  EXPECT_TRUE(u.IsPutPermitted({"u", s.revision()}, "a").ok());
  EXPECT_FALSE(u.IsPutPermitted({"u", s.revision()}, "b").ok());

  auto fresh = AuthStore::FromContents(false, 1, {}, {});
  ASSERT_TRUE(fresh.ok());
  EXPECT_TRUE(fresh->pristine());
  EXPECT_EQ(fresh->Snapshot(), AuthStore().Snapshot());

  // What Restore would refuse in an image.
  EXPECT_EQ(AuthStore::FromContents(false, 0, {}, {}).status().code(),
            absl::StatusCode::kInvalidArgument);
  std::vector<authpb::User> twice = {users[0], users[0]};
  EXPECT_EQ(AuthStore::FromContents(false, 2, twice, {}).status().message(),
            "auth: two users named " + users[0].name());
  std::vector<authpb::User> unnamed(1);
  EXPECT_FALSE(AuthStore::FromContents(false, 2, unnamed, {}).ok());
  std::vector<authpb::Role> unnamed_role(1);
  EXPECT_FALSE(AuthStore::FromContents(false, 2, {}, unnamed_role).ok());
  std::vector<authpb::Role> roles_twice = {roles[0], roles[0]};
  EXPECT_FALSE(AuthStore::FromContents(false, 2, {}, roles_twice).ok());
}

TEST(BcryptTest, HashesAndChecks) {
  std::array<uint8_t, 16> salt{};
  for (int i = 0; i < 16; ++i) salt[i] = static_cast<uint8_t>(i * 7);
  auto h = BcryptHash("secret", kBcryptMinCost, salt);
  ASSERT_TRUE(h.ok()) << h.status();
  EXPECT_EQ(h->substr(0, 7), "$2b$04$");
  EXPECT_EQ(*h, *BcryptHash("secret", kBcryptMinCost, salt));  // pure
  EXPECT_TRUE(BcryptMatches(*h, "secret"));
  EXPECT_FALSE(BcryptMatches(*h, "secreT"));
  EXPECT_FALSE(BcryptMatches("", "secret"));
  EXPECT_FALSE(BcryptMatches("plain", "plain"));
  EXPECT_FALSE(BcryptHash("x", 3, salt).ok());
}

TEST(SimpleTokenTest, AssignInfoExpiryInvalidate) {
  int64_t now = 0;
  uint64_t r = 0;
  SimpleTokenProvider p([&] { return now; }, [&] { return r++; }, 1000);
  const std::string prefix = p.GenTokenPrefix();
  EXPECT_EQ(prefix.size(), 16u);
  p.Enable();
  auto tok = p.Assign("u", 5, 42, prefix);
  ASSERT_TRUE(tok.ok());
  EXPECT_EQ(*tok, prefix + ".42");
  auto info = p.Info(*tok, 9);
  ASSERT_TRUE(info.has_value());
  EXPECT_EQ(info->user, "u");
  EXPECT_EQ(info->revision, 9u);  // simple tokens speak for the current one
  EXPECT_FALSE(p.Info("nodot", 9).has_value());
  EXPECT_FALSE(p.Info(prefix + ".x", 9).has_value());
  // Each use restarts the TTL.
  now = 900;
  EXPECT_TRUE(p.Info(*tok, 9).has_value());
  now = 1800;
  EXPECT_TRUE(p.Info(*tok, 9).has_value());
  now = 2801;
  p.Sweep();
  EXPECT_EQ(p.size(), 0u);
  EXPECT_FALSE(p.Info(*tok, 9).has_value());
  tok = p.Assign("u", 5, 43, prefix);
  p.InvalidateUser("u");
  EXPECT_FALSE(p.Info(*tok, 9).has_value());
  tok = p.Assign("u", 5, 44, prefix);
  p.Disable();
  EXPECT_FALSE(p.Info(*tok, 9).has_value());
}

}  // namespace
}  // namespace detcd::auth
