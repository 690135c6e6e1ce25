#include "harness/auth_checker.h"

#include <string>
#include <vector>

#include "engine/auth/auth_store.h"
#include "engine/server/node.h"
#include "gtest/gtest.h"

namespace detcd::harness {
namespace {

namespace pb = etcdserverpb;

const std::string kFromKey(1, '\0');

// Feeds the checker a committed log, one request per index, as members
// propose them (enveloped, with a header).
class Log {
 public:
  explicit Log(AuthChecker* c) : c_(c) {}
  // Appends `r` stamped as `user` at auth revision `rev`; returns its index
  // and whether the checker says auth refused it.
  uint64_t Append(pb::InternalRaftRequest r, const std::string& user = "root",
                  uint64_t rev = 0, bool* refused = nullptr) {
    r.mutable_header()->set_id(++id_);
    r.mutable_header()->set_username(user);
    r.mutable_header()->set_auth_revision(rev);
    raft::Entry e;
    e.index = ++index_;
    e.term = 1;
    e.type = raft::EntryType::kNormal;
    e.data = server::Envelope(1, id_, r.SerializeAsString());
    const bool x = c_->OnCommitted(e);
    if (refused != nullptr) *refused = x;
    return index_;
  }
  uint64_t index() const { return index_; }

 private:
  AuthChecker* c_;
  uint64_t index_ = 0;
  uint64_t id_ = 0;
};

pb::InternalRaftRequest UserAdd(const std::string& name) {
  pb::InternalRaftRequest r;
  r.mutable_auth_user_add()->set_name(name);
  return r;
}
pb::InternalRaftRequest GrantRole(const std::string& u, const std::string& r) {
  pb::InternalRaftRequest q;
  q.mutable_auth_user_grant_role()->set_user(u);
  q.mutable_auth_user_grant_role()->set_role(r);
  return q;
}
pb::InternalRaftRequest RoleAdd(const std::string& name) {
  pb::InternalRaftRequest r;
  r.mutable_auth_role_add()->set_name(name);
  return r;
}
pb::InternalRaftRequest Grant(const std::string& role, const std::string& key,
                              const std::string& end,
                              authpb::Permission::Type t) {
  pb::InternalRaftRequest r;
  r.mutable_auth_role_grant_permission()->set_name(role);
  authpb::Permission* p =
      r.mutable_auth_role_grant_permission()->mutable_perm();
  p->set_key(key);
  p->set_range_end(end);
  p->set_permtype(t);
  return r;
}
pb::InternalRaftRequest Revoke(const std::string& role, const std::string& key,
                               const std::string& end) {
  pb::InternalRaftRequest r;
  r.mutable_auth_role_revoke_permission()->set_role(role);
  r.mutable_auth_role_revoke_permission()->set_key(key);
  r.mutable_auth_role_revoke_permission()->set_range_end(end);
  return r;
}
pb::InternalRaftRequest Enable() {
  pb::InternalRaftRequest r;
  r.mutable_auth_enable();
  return r;
}
pb::InternalRaftRequest Put(const std::string& key) {
  pb::InternalRaftRequest r;
  r.mutable_put()->set_key(key);
  r.mutable_put()->set_value("v");
  return r;
}
pb::InternalRaftRequest Range(const std::string& key, const std::string& end) {
  pb::InternalRaftRequest r;
  r.mutable_range()->set_key(key);
  r.mutable_range()->set_range_end(end);
  return r;
}

// root with the root role; role "rw" with readwrite on prefix a/; user
// "u" with it; auth on. Auth revision 7 afterwards.
void SetUpAuth(Log& log) {
  log.Append(UserAdd("root"));
  log.Append(GrantRole("root", "root"));
  log.Append(RoleAdd("rw"));
  log.Append(Grant("rw", "a/", "a0", authpb::Permission::READWRITE));
  log.Append(UserAdd("u"));
  log.Append(GrantRole("u", "rw"));
  log.Append(Enable());
}

TEST(AuthCheckerTest, CoveredFollowsEtcdsRangeRules) {
  AuthChecker::State st;
  st.roles["r"] = {
      {"a/", "a0", true, false},      // prefix a/ (read)
      {"b/1", "", true, true},        // one key
      {"b/2", "b/4", true, false},    // a range
      {"b/4", "b/6", true, false},    // chains with the one before
      {"c/", kFromKey, false, true},  // from c/ on (write)
  };
  const std::set<std::string> roles = {"r"};
  EXPECT_TRUE(AuthChecker::Covered(st, roles, "a/x", "", false));
  EXPECT_TRUE(AuthChecker::Covered(st, roles, "a/", "a0", false));
  EXPECT_FALSE(AuthChecker::Covered(st, roles, "a/", "a1", false));
  EXPECT_FALSE(AuthChecker::Covered(st, roles, "a/x", "", true));
  EXPECT_TRUE(AuthChecker::Covered(st, roles, "b/1", "", true));
  EXPECT_FALSE(AuthChecker::Covered(st, roles, "b/10", "", true));
  // A single-key permission covers exactly [key, key\0).
  EXPECT_TRUE(
      AuthChecker::Covered(st, roles, "b/1", std::string("b/1\0", 4), false));
  EXPECT_FALSE(AuthChecker::Covered(st, roles, "b/1", "b/2", false));
  EXPECT_TRUE(AuthChecker::Covered(st, roles, "b/2", "b/6", false));
  EXPECT_TRUE(AuthChecker::Covered(st, roles, "b/3", "b/5", false));
  EXPECT_FALSE(AuthChecker::Covered(st, roles, "b/2", "b/7", false));
  EXPECT_FALSE(AuthChecker::Covered(st, roles, "b/2", kFromKey, false));
  EXPECT_TRUE(AuthChecker::Covered(st, roles, "c/", kFromKey, true));
  EXPECT_TRUE(AuthChecker::Covered(st, roles, "zzz", kFromKey, true));
  EXPECT_FALSE(AuthChecker::Covered(st, roles, "b/", kFromKey, true));
  // A role the user has but that does not exist grants nothing.
  EXPECT_FALSE(AuthChecker::Covered(st, {"gone"}, "a/x", "", false));
}

TEST(AuthCheckerTest, OpPermittedOrder) {
  AuthChecker::State st;
  st.enabled = true;
  st.revision = 5;
  st.users["u"] = {"r"};
  st.users["root"] = {"root"};
  st.roles["r"] = {{"a", "", true, true}};
  EXPECT_EQ(AuthChecker::OpPermitted(st, "u", 0, "a", "", true),
            AuthChecker::UserEmpty());
  EXPECT_EQ(AuthChecker::OpPermitted(st, "u", 4, "a", "", true),
            AuthChecker::OldRevision());
  EXPECT_EQ(AuthChecker::OpPermitted(st, "root", 4, "zz", "", true),
            AuthChecker::OldRevision());  // root too
  EXPECT_TRUE(AuthChecker::OpPermitted(st, "root", 5, "zz", "", true).ok());
  EXPECT_TRUE(AuthChecker::OpPermitted(st, "u", 5, "a", "", true).ok());
  EXPECT_EQ(AuthChecker::OpPermitted(st, "u", 5, "b", "", true),
            AuthChecker::Denied());
  EXPECT_EQ(AuthChecker::OpPermitted(st, "nobody", 5, "a", "", true),
            AuthChecker::Denied());
  st.enabled = false;
  EXPECT_TRUE(AuthChecker::OpPermitted(st, "nobody", 0, "b", "", true).ok());
}

TEST(AuthCheckerTest, ModelFollowsTheCommittedAdminRequests) {
  AuthChecker c;
  Log log(&c);
  SetUpAuth(log);
  const AuthChecker::State& st = c.StateAt(log.index());
  EXPECT_TRUE(st.enabled);
  EXPECT_EQ(st.revision, 7u);  // six changes; AuthEnable adds none
  EXPECT_EQ(st.users.at("u"), std::set<std::string>{"rw"});
  // Earlier states stay as they were.
  EXPECT_FALSE(c.StateAt(3).enabled);
  EXPECT_EQ(c.StateAt(3).revision, 4u);
  // Deleting a role takes it from its users.
  pb::InternalRaftRequest del;
  del.mutable_auth_role_delete()->set_role("rw");
  log.Append(del, "root", 7);
  EXPECT_TRUE(c.StateAt(log.index()).users.at("u").empty());
  EXPECT_EQ(c.StateAt(log.index()).revision, 8u);
  // A non-root user's admin request changes nothing.
  log.Append(RoleAdd("x"), "u", 8);
  EXPECT_FALSE(c.StateAt(log.index()).roles.contains("x"));
}

TEST(AuthCheckerTest, WritesAreJudgedWithTheirStampedRevision) {
  AuthChecker c;
  Log log(&c);
  SetUpAuth(log);
  bool refused = true;
  const uint64_t ok_put = log.Append(Put("a/1"), "u", 7, &refused);
  EXPECT_FALSE(refused);
  const uint64_t denied_put = log.Append(Put("b/1"), "u", 7, &refused);
  EXPECT_TRUE(refused);
  // An unrelated change moves the revision: a put stamped before it is
  // stale.
  log.Append(RoleAdd("other"), "root", 7);
  const uint64_t stale_put = log.Append(Put("a/1"), "u", 7, &refused);
  EXPECT_TRUE(refused);

  // The engine's answers, as its statuses: all as etcd says.
  c.OnAnswer("u", Put("a/1"), false, ok_put, ok_put, absl::OkStatus());
  c.OnAnswer("u", Put("b/1"), false, denied_put, denied_put,
             auth::ErrPermissionDenied());
  c.OnAnswer("u", Put("a/1"), false, stale_put, stale_put,
             auth::ErrAuthOldRevision());
  EXPECT_TRUE(c.Check().empty());
  // A success where etcd refuses: the checker fails.
  c.OnAnswer("u", Put("a/1"), false, stale_put, stale_put, absl::OkStatus());
  std::vector<std::string> v = c.Check();
  ASSERT_EQ(v.size(), 1u);
  EXPECT_NE(v[0].find("succeeded, but etcd refuses it there with"),
            std::string::npos)
      << v[0];
  EXPECT_NE(v[0].find("revision of auth store is old"), std::string::npos);
}

TEST(AuthCheckerTest, RefusalsMustBeDeservedAndWithEtcdsError) {
  AuthChecker c;
  Log log(&c);
  SetUpAuth(log);
  const uint64_t put = log.Append(Put("a/1"), "u", 7);
  c.OnAnswer("u", Put("a/1"), false, put, put, auth::ErrPermissionDenied());
  std::vector<std::string> v = c.Check();
  ASSERT_EQ(v.size(), 1u);
  EXPECT_NE(v[0].find("but it is permitted there"), std::string::npos) << v[0];

  AuthChecker c2;
  Log log2(&c2);
  SetUpAuth(log2);
  const uint64_t denied = log2.Append(Put("b/1"), "u", 7);
  c2.OnAnswer("u", Put("b/1"), false, denied, denied,
              auth::ErrAuthOldRevision());
  v = c2.Check();
  ASSERT_EQ(v.size(), 1u);
  EXPECT_NE(v[0].find("but etcd says PERMISSION_DENIED"), std::string::npos)
      << v[0];
}

TEST(AuthCheckerTest, ReadsAreJudgedWhereServed) {
  AuthChecker c;
  Log log(&c);
  SetUpAuth(log);
  const uint64_t before = log.index();
  log.Append(Revoke("rw", "a/", "a0"), "root", 7);
  const uint64_t after = log.index();
  c.OnAnswer("u", Range("a/", "a0"), true, before, before, absl::OkStatus());
  c.OnAnswer("u", Range("a/", "a0"), true, after, after,
             auth::ErrPermissionDenied());
  EXPECT_TRUE(c.Check().empty());
  // A read in pieces was authorized where it reached the member and
  // answered later: any state in between will do, either way.
  c.OnAnswer("u", Range("a/", "a0"), true, before, after, absl::OkStatus());
  c.OnAnswer("u", Range("a/", "a0"), true, before, after,
             auth::ErrPermissionDenied());
  EXPECT_TRUE(c.Check().empty());
  c.OnAnswer("u", Range("a/", "a0"), true, after, after, absl::OkStatus());
  std::vector<std::string> v = c.Check();
  ASSERT_EQ(v.size(), 1u);
  EXPECT_NE(v[0].find("u's read"), std::string::npos) << v[0];
}

TEST(AuthCheckerTest, StaleTokensAndOtherErrorsAreNotAuthDecisions) {
  AuthChecker c;
  Log log(&c);
  SetUpAuth(log);
  const uint64_t put = log.Append(Put("a/1"), "u", 7);
  c.OnAnswer("u", Put("a/1"), false, put, put, auth::ErrInvalidAuthToken());
  c.OnAnswer("u", Put("a/1"), false, 0, 0, absl::DeadlineExceededError("late"));
  c.OnAnswer("u", Range("b/", "b0"), true, put, put,
             absl::UnavailableError("etcdserver: no leader"));
  EXPECT_TRUE(c.Check().empty());
  const std::map<std::string, uint64_t> n = c.Counters();
  EXPECT_EQ(n.at("auth.refused.invalid-token"), 1u);
  EXPECT_EQ(n.at("auth.not-auth-errors"), 2u);
}

TEST(AuthCheckerTest, AdminOutcomesArePredicted) {
  AuthChecker c;
  Log log(&c);
  SetUpAuth(log);
  // Revoking what was never granted, granting a missing role.
  const uint64_t revoke = log.Append(Revoke("rw", "b/", "b0"), "root", 7);
  const uint64_t grant = log.Append(GrantRole("u", "nope"), "root", 7);
  c.OnAnswer("root", Revoke("rw", "b/", "b0"), false, revoke, revoke,
             auth::ErrPermissionNotGranted());
  c.OnAnswer("root", GrantRole("u", "nope"), false, grant, grant,
             auth::ErrRoleNotFound());
  EXPECT_TRUE(c.Check().empty());
  c.OnAnswer("root", GrantRole("u", "nope"), false, grant, grant,
             absl::OkStatus());
  EXPECT_EQ(c.Check().size(), 1u);
}

TEST(AuthCheckerTest, AnAnswerForAnotherEntryIsAHarnessError) {
  AuthChecker c;
  Log log(&c);
  SetUpAuth(log);
  const uint64_t put = log.Append(Put("a/1"), "u", 7);
  c.OnAnswer("u", Put("a/2"), false, put, put, absl::OkStatus());
  std::vector<std::string> v = c.Check();
  ASSERT_EQ(v.size(), 1u);
  EXPECT_NE(v[0].find("harness"), std::string::npos) << v[0];
}

TEST(AuthCheckerTest, DisablingAuthPermitsEverythingAndMovesTheRevision) {
  AuthChecker c;
  Log log(&c);
  SetUpAuth(log);
  pb::InternalRaftRequest off;
  off.mutable_auth_disable();
  log.Append(off, "root", 7);
  bool refused = true;
  log.Append(Put("b/1"), "u", 7, &refused);  // stale and not permitted
  EXPECT_FALSE(refused);
  log.Append(Enable());  // as the root certificate's user
  EXPECT_EQ(c.StateAt(log.index()).revision, 8u);
  log.Append(Put("a/1"), "u", 7, &refused);
  EXPECT_TRUE(refused);  // stamped before the disable
  EXPECT_EQ(c.Counters().at("auth.disables"), 1u);
}

TEST(AuthCheckerTest, LeaseRevokeNeedsWriteOnTheLeaseKeys) {
  AuthChecker c;
  c.set_lease_keys([](int64_t lease) {
    return lease == 7 ? std::vector<std::string>{"b/1"}
                      : std::vector<std::string>{};
  });
  Log log(&c);
  SetUpAuth(log);
  pb::InternalRaftRequest r;
  r.mutable_lease_revoke()->set_id(7);
  bool refused = false;
  log.Append(r, "u", 7, &refused);
  EXPECT_TRUE(refused);
  r.mutable_lease_revoke()->set_id(8);  // no keys: nothing to check
  log.Append(r, "u", 7, &refused);
  EXPECT_FALSE(refused);
}

}  // namespace
}  // namespace detcd::harness
