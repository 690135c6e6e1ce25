// Importing an etcd 3.4 backend database (shim/etcd_db.h) for
// `snapshot restore`: bolt files written with WriteBolt in etcd's bucket
// layout; the auth buckets become the restored member's auth store.
#include "shim/etcd_db.h"

#include <array>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "authpb/auth.pb.h"
#include "engine/auth/auth_store.h"
#include "engine/auth/bcrypt.h"
#include "engine/mvcc/kv_store.h"
#include "gtest/gtest.h"
#include "mvccpb/kv.pb.h"
#include "shim/bolt.h"

namespace detcd::shim {
namespace {

using Buckets = std::map<std::string, std::map<std::string, std::string>>;

std::string BigEndian(uint64_t v) {
  std::string out(8, '\0');
  for (int i = 7; i >= 0; --i, v >>= 8) out[i] = static_cast<char>(v & 0xff);
  return out;
}

std::string RevKey(int64_t main, int64_t sub) {
  return BigEndian(static_cast<uint64_t>(main)) + "_" +
         BigEndian(static_cast<uint64_t>(sub));
}

// etcd's buckets for one put of "a" at revision 2, no auth.
Buckets KeysOnly() {
  mvccpb::KeyValue kv;
  kv.set_key("a");
  kv.set_value("1");
  kv.set_create_revision(2);
  kv.set_mod_revision(2);
  kv.set_version(1);
  return {{"key", {{RevKey(2, 0), kv.SerializeAsString()}}},
          {"meta", {}},
          {"lease", {}}};
}

std::string Hash(const std::string& password) {
  std::array<uint8_t, 16> salt{};
  for (int i = 0; i < 16; ++i) salt[i] = static_cast<uint8_t>(5 * i + 2);
  absl::StatusOr<std::string> h =
      auth::BcryptHash(password, auth::kBcryptMinCost, salt);
  EXPECT_TRUE(h.ok()) << h.status();
  // Go's bcrypt (etcd's) writes "$2a$"; for such passwords the same hash.
  return "$2a$" + h->substr(4);
}

// What etcd 3.4 keeps after `auth enable` with root, and a user "alice"
// (password "secret") whose role "prefix" may read and write [foo, fop).
Buckets WithAuth(uint64_t revision = 7) {
  Buckets b = KeysOnly();
  b["auth"] = {{"authEnabled", std::string(1, '\1')},
               {"authRevision", BigEndian(revision)}};
  authpb::User root;
  root.set_name("root");
  root.set_password(Hash("rootpw"));
  root.add_roles("root");
  authpb::User alice;
  alice.set_name("alice");
  alice.set_password(Hash("secret"));
  alice.add_roles("prefix");
  b["authUsers"] = {{"root", root.SerializeAsString()},
                    {"alice", alice.SerializeAsString()}};
  authpb::Role prefix;
  prefix.set_name("prefix");
  authpb::Permission* p = prefix.add_keypermission();
  p->set_permtype(authpb::Permission::READWRITE);
  p->set_key("foo");
  p->set_range_end("fop");
  b["authRoles"] = {{"prefix", prefix.SerializeAsString()}};
  return b;
}

absl::StatusOr<auth::AuthStore> ImportedAuth(const Buckets& b) {
  absl::StatusOr<EtcdDbImport> db = ImportEtcdDb(WriteBolt(b, 5));
  if (!db.ok()) return db.status();
  auth::AuthStore as;
  if (absl::Status s = as.Restore(db->data.auth_image); !s.ok()) return s;
  return as;
}

TEST(EtcdDbTest, ImportsTheAuthBuckets) {
  absl::StatusOr<EtcdDbImport> db = ImportEtcdDb(WriteBolt(WithAuth(), 5));
  ASSERT_TRUE(db.ok()) << db.status();
  EXPECT_EQ(db->revision, 2);
  auth::AuthStore as;
  ASSERT_TRUE(as.Restore(db->data.auth_image).ok());
  EXPECT_TRUE(as.enabled());
  EXPECT_EQ(as.revision(), 7u);
  EXPECT_EQ(as.UserList(), (std::vector<std::string>{"alice", "root"}));
  EXPECT_EQ(as.RoleList(), std::vector<std::string>{"prefix"});
  EXPECT_TRUE(as.HasRole("root", "root"));
  EXPECT_TRUE(as.HasRole("alice", "prefix"));
  absl::StatusOr<std::vector<authpb::Permission>> perms = as.RoleGet("prefix");
  ASSERT_TRUE(perms.ok());
  ASSERT_EQ(perms->size(), 1u);
  EXPECT_EQ((*perms)[0].permtype(), authpb::Permission::READWRITE);
  EXPECT_EQ((*perms)[0].key(), "foo");
  EXPECT_EQ((*perms)[0].range_end(), "fop");
  absl::StatusOr<std::string> hash = as.PasswordHash("alice");
  ASSERT_TRUE(hash.ok()) << hash.status();
  EXPECT_TRUE(auth::BcryptMatches(*hash, "secret"));
  EXPECT_FALSE(auth::BcryptMatches(*hash, "wrong"));
  EXPECT_TRUE(as.IsPutPermitted({"alice", 7}, "foo1").ok());
  EXPECT_FALSE(as.IsPutPermitted({"alice", 7}, "zzz").ok());
  EXPECT_FALSE(as.IsRangePermitted({}, "foo1", "").ok());  // no user
}

TEST(EtcdDbTest, MissingAuthBucketsAreAFreshStore) {
  absl::StatusOr<auth::AuthStore> as = ImportedAuth(KeysOnly());
  ASSERT_TRUE(as.ok()) << as.status();
  EXPECT_TRUE(as->pristine());
  // Users but no flag or revision: disabled, revision 1 (as etcd starts
  // such a store); a stored 0 is 1 too.
  Buckets b = WithAuth();
  b.erase("auth");
  as = ImportedAuth(b);
  ASSERT_TRUE(as.ok()) << as.status();
  EXPECT_FALSE(as->enabled());
  EXPECT_EQ(as->revision(), 1u);
  EXPECT_EQ(as->UserList().size(), 2u);
  as = ImportedAuth(WithAuth(0));
  ASSERT_TRUE(as.ok()) << as.status();
  EXPECT_TRUE(as->enabled());
  EXPECT_EQ(as->revision(), 1u);
  // Disabled explicitly.
  b = WithAuth();
  b["auth"]["authEnabled"] = std::string(1, '\0');
  as = ImportedAuth(b);
  ASSERT_TRUE(as.ok()) << as.status();
  EXPECT_FALSE(as->enabled());
  EXPECT_EQ(as->revision(), 7u);
}

TEST(EtcdDbTest, UndecodableAuthContentsAreRefused) {
  auto error = [](const Buckets& b) {
    absl::StatusOr<EtcdDbImport> db = ImportEtcdDb(WriteBolt(b, 5));
    EXPECT_FALSE(db.ok());
    EXPECT_EQ(db.status().code(), absl::StatusCode::kDataLoss);
    return std::string(db.status().message());
  };
  Buckets b = WithAuth();
  b["auth"]["authEnabled"] = std::string(1, '\2');
  EXPECT_EQ(error(b), "etcd db: bad authEnabled flag in the auth bucket");
  b["auth"]["authEnabled"] = "";
  EXPECT_EQ(error(b), "etcd db: bad authEnabled flag in the auth bucket");
  b = WithAuth();
  b["auth"]["authRevision"] = std::string("\0\0\0\7", 4);
  EXPECT_EQ(error(b), "etcd db: bad authRevision in the auth bucket");
  b = WithAuth();
  b["authUsers"]["alice"] = "\xff\xff\xff";
  EXPECT_EQ(error(b),
            "etcd db: undecodable user \"alice\" in the authUsers bucket");
  b = WithAuth();
  b["authUsers"]["bob"] = b["authUsers"]["alice"];  // named alice
  EXPECT_EQ(error(b),
            "etcd db: undecodable user \"bob\" in the authUsers bucket");
  b = WithAuth();
  b["authRoles"]["x"] = "\x0a";  // a name without its bytes
  EXPECT_EQ(error(b),
            "etcd db: undecodable role \"x\" in the authRoles bucket");
  // (bbolt keeps no empty key, so no role sits under an empty name.)
}

}  // namespace
}  // namespace detcd::shim
