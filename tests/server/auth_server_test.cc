// Authorization in EtcdServer (etcd 3.4's rules), in a simulated 3-member
// cluster: the RBAC walk-through, tokens (simple, expiry, invalidation),
// the apply-time auth revision check, admin-only maintenance and member
// calls, lease revokes of expired leases under auth, and the auth store in
// snapshots.
#include <optional>
#include <string>
#include <vector>

#include "engine/server/errors.h"
#include "engine/server/etcd_server.h"
#include "gtest/gtest.h"
#include "harness/cluster.h"

namespace detcd::server {
namespace {

using harness::Cluster;
using harness::ClusterOptions;
namespace pb = etcdserverpb;

template <typename Resp>
struct Waiter {
  EtcdServer::Done<Resp> cb() {
    return [this](absl::StatusOr<Resp> r) { result = std::move(r); };
  }
  std::optional<absl::StatusOr<Resp>> result;
};

// The client's view of an error (code and etcd's text).
std::string Text(const absl::Status& s) {
  return std::string(ToClientError(s).message());
}

class AuthServerTest : public ::testing::Test {
 protected:
  void Start(int64_t token_ttl_ns = 0, bool client_cert_auth = false) {
    ClusterOptions o;
    o.server.client_cert_auth = client_cert_auth;
    o.nodes = 3;
    o.node.election_ticks = 10;
    o.node.heartbeat_ticks = 1;
    o.node.request_timeout_ticks = 100;
    o.server.bcrypt_cost = auth::kBcryptMinCost;  // keep the test quick
    if (token_ttl_ns > 0) o.server.auth_token_ttl_ns = token_ttl_ns;
    cluster_ = std::make_unique<Cluster>(7, o, nullptr);
    RunFor(2 * sim::kSecond);
    ASSERT_NE(cluster_->Leader(), 0u);
  }
  void RunFor(int64_t ns) {
    cluster_->world().RunUntil(cluster_->world().now() + ns);
  }
  uint64_t Any() { return cluster_->Leader(); }
  // Runs fn on member `id` as `who` (null: the member itself) until done.
  template <typename Resp, typename Fn>
  absl::StatusOr<Resp> Do(uint64_t id, const Caller* who, Fn fn) {
    Waiter<Resp> w;
    EXPECT_TRUE(cluster_->Call(id, [&](EtcdServer& s) {
      EtcdServer::CallerScope scope(&s, who);
      fn(s, w.cb());
    }));
    for (int i = 0; i < 400 && !w.result; ++i) RunFor(10 * sim::kMillisecond);
    if (!w.result) return absl::DeadlineExceededError("test: no answer");
    return *std::move(w.result);
  }
#define DETCD_CALL(Method, Resp, req, who) \
  Do<pb::Resp>(Any(), who, [&](EtcdServer& s, auto cb) { s.Method(req, cb); })

  absl::Status UserAdd(const std::string& name, const std::string& pw,
                       const Caller* who = nullptr) {
    pb::AuthUserAddRequest r;
    r.set_name(name);
    r.set_password(pw);
    return DETCD_CALL(UserAdd, AuthUserAddResponse, r, who).status();
  }
  absl::Status RoleAdd(const std::string& name, const Caller* who = nullptr) {
    pb::AuthRoleAddRequest r;
    r.set_name(name);
    return DETCD_CALL(RoleAdd, AuthRoleAddResponse, r, who).status();
  }
  absl::Status Grant(const std::string& user, const std::string& role,
                     const Caller* who = nullptr) {
    pb::AuthUserGrantRoleRequest r;
    r.set_user(user);
    r.set_role(role);
    return DETCD_CALL(UserGrantRole, AuthUserGrantRoleResponse, r, who)
        .status();
  }
  absl::Status GrantPerm(const std::string& role, authpb::Permission::Type t,
                         const std::string& key, const std::string& end,
                         const Caller* who) {
    pb::AuthRoleGrantPermissionRequest r;
    r.set_name(role);
    r.mutable_perm()->set_permtype(t);
    r.mutable_perm()->set_key(key);
    r.mutable_perm()->set_range_end(end);
    return DETCD_CALL(RoleGrantPermission, AuthRoleGrantPermissionResponse, r,
                      who)
        .status();
  }
  absl::Status Enable(const Caller* who = nullptr) {
    return DETCD_CALL(AuthEnable, AuthEnableResponse, pb::AuthEnableRequest(),
                      who)
        .status();
  }
  absl::StatusOr<Caller> Login(const std::string& name, const std::string& pw) {
    pb::AuthenticateRequest r;
    r.set_name(name);
    r.set_password(pw);
    Caller anon;
    auto resp = DETCD_CALL(Authenticate, AuthenticateResponse, r, &anon);
    if (!resp.ok()) return resp.status();
    Caller c;
    c.token = resp->token();
    return c;
  }
  absl::Status Put(const std::string& k, const Caller* who,
                   int64_t lease = 0) {
    pb::PutRequest r;
    r.set_key(k);
    r.set_value("v");
    r.set_lease(lease);
    return DETCD_CALL(Put, PutResponse, r, who).status();
  }
  absl::Status Get(const std::string& k, const std::string& end,
                   const Caller* who) {
    pb::RangeRequest r;
    r.set_key(k);
    r.set_range_end(end);
    return DETCD_CALL(Range, RangeResponse, r, who).status();
  }
  // root (root role), role "foo" with readwrite on prefix "foo/", user
  // "alice" with role foo, user "bob" with read-only role "ro" on "foo/";
  // auth enabled.
  void WalkThroughSetup() {
    ASSERT_TRUE(UserAdd("root", "rootpw").ok());
    ASSERT_TRUE(Grant("root", "root").ok());
    ASSERT_TRUE(RoleAdd("foo").ok());
    ASSERT_TRUE(GrantPerm("foo", authpb::Permission::READWRITE, "foo/", "foo0",
                          nullptr)
                    .ok());
    ASSERT_TRUE(RoleAdd("ro").ok());
    ASSERT_TRUE(
        GrantPerm("ro", authpb::Permission::READ, "foo/", "foo0", nullptr)
            .ok());
    ASSERT_TRUE(UserAdd("alice", "alicepw").ok());
    ASSERT_TRUE(Grant("alice", "foo").ok());
    ASSERT_TRUE(UserAdd("bob", "bobpw").ok());
    ASSERT_TRUE(Grant("bob", "ro").ok());
    ASSERT_TRUE(Enable().ok());
  }

  std::unique_ptr<Cluster> cluster_;
};

TEST_F(AuthServerTest, EnableNeedsRoot) {
  Start();
  EXPECT_EQ(Text(Enable()), "etcdserver: root user does not exist");
  ASSERT_TRUE(UserAdd("root", "pw").ok());
  EXPECT_EQ(Text(Enable()), "etcdserver: root user does not have root role");
  EXPECT_EQ(ToClientError(Enable()).code(),
            absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE(Grant("root", "root").ok());
  EXPECT_TRUE(Enable().ok());
  // Every member applied it.
  for (uint64_t id : cluster_->UpNodes()) {
    EXPECT_TRUE(cluster_->server(id)->state().auth().enabled()) << id;
  }
  // Now anonymous admin calls are refused.
  EXPECT_EQ(Text(Enable()), "etcdserver: user name is empty");
}

TEST_F(AuthServerTest, RbacWalkThrough) {
  Start();
  WalkThroughSetup();
  auto root = Login("root", "rootpw");
  ASSERT_TRUE(root.ok()) << root.status();
  auto alice = Login("alice", "alicepw");
  ASSERT_TRUE(alice.ok()) << alice.status();
  auto bob = Login("bob", "bobpw");
  ASSERT_TRUE(bob.ok());
  EXPECT_EQ(Text(Login("alice", "wrong").status()),
            "etcdserver: authentication failed, invalid user ID or password");
  EXPECT_EQ(Text(Login("nobody", "x").status()),
            "etcdserver: authentication failed, invalid user ID or password");
  // alice writes and reads under foo/, not elsewhere.
  EXPECT_TRUE(Put("foo/1", &*alice).ok());
  EXPECT_TRUE(Get("foo/1", "", &*alice).ok());
  EXPECT_TRUE(Get("foo/", "foo0", &*alice).ok());
  EXPECT_EQ(Text(Put("bar", &*alice)), "etcdserver: permission denied");
  EXPECT_EQ(ToClientError(Put("bar", &*alice)).code(),
            absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(Text(Get("foo/", "foo1", &*alice)), "etcdserver: permission denied");
  // bob reads only.
  EXPECT_TRUE(Get("foo/1", "", &*bob).ok());
  EXPECT_EQ(Text(Put("foo/2", &*bob)), "etcdserver: permission denied");
  // Without a token: user name is empty; with a bad one: invalid token.
  Caller anon;
  EXPECT_EQ(Text(Get("foo/1", "", &anon)), "etcdserver: user name is empty");
  Caller bad;
  bad.token = "abc.99";
  EXPECT_EQ(Text(Put("foo/1", &bad)), "etcdserver: invalid auth token");
  EXPECT_EQ(ToClientError(Put("foo/1", &bad)).code(),
            absl::StatusCode::kUnauthenticated);
  // root does anything.
  EXPECT_TRUE(Put("bar", &*root).ok());
  // A txn needs every compare and op permitted.
  pb::TxnRequest t;
  pb::Compare* c = t.add_compare();
  c->set_key("bar");
  c->set_target(pb::Compare::VERSION);
  c->set_result(pb::Compare::GREATER);
  t.add_success()->mutable_request_put()->set_key("foo/3");
  auto txn = DETCD_CALL(Txn, TxnResponse, t, &*alice);
  EXPECT_EQ(Text(txn.status()), "etcdserver: permission denied");
  t.mutable_compare(0)->set_key("foo/1");
  txn = DETCD_CALL(Txn, TxnResponse, t, &*alice);
  EXPECT_TRUE(txn.ok()) << txn.status();
  // Admin calls: root only; one may read oneself and one's roles.
  EXPECT_EQ(Text(RoleAdd("x", &*alice)), "etcdserver: permission denied");
  EXPECT_TRUE(RoleAdd("x", &*root).ok());
  pb::AuthUserGetRequest ug;
  ug.set_name("alice");
  EXPECT_TRUE(DETCD_CALL(UserGet, AuthUserGetResponse, ug, &*alice).ok());
  ug.set_name("bob");
  EXPECT_EQ(Text(DETCD_CALL(UserGet, AuthUserGetResponse, ug, &*alice).status()),
            "etcdserver: permission denied");
  pb::AuthRoleGetRequest rg;
  rg.set_role("foo");
  auto role = DETCD_CALL(RoleGet, AuthRoleGetResponse, rg, &*alice);
  ASSERT_TRUE(role.ok());
  ASSERT_EQ(role->perm_size(), 1);
  EXPECT_EQ(role->perm(0).key(), "foo/");
  rg.set_role("ro");
  EXPECT_FALSE(DETCD_CALL(RoleGet, AuthRoleGetResponse, rg, &*alice).ok());
  // Maintenance and membership: root only.
  // (etcd's maintenance calls answer the auth error untranslated.)
  const absl::Status hash =
      DETCD_CALL(Hash, HashResponse, pb::HashRequest(), &*alice).status();
  EXPECT_EQ(Text(hash), "auth: permission denied");
  EXPECT_EQ(ToClientError(hash).code(), absl::StatusCode::kUnknown);
  EXPECT_TRUE(DETCD_CALL(Hash, HashResponse, pb::HashRequest(), &*root).ok());
  EXPECT_TRUE(
      DETCD_CALL(Status, StatusResponse, pb::StatusRequest(), &*alice).ok());
  pb::MemberRemoveRequest mr;
  mr.set_id(12345);
  EXPECT_EQ(Text(DETCD_CALL(MemberRemove, MemberRemoveResponse, mr, &*alice)
                     .status()),
            "etcdserver: permission denied");
  // Watch creates check read permission.
  cluster_->Call(Any(), [&](EtcdServer& s) {
    EtcdServer::CallerScope scope(&s, &*bob);
    EXPECT_TRUE(s.CheckWatchPermitted("foo/1", "").ok());
    absl::Status w = s.CheckWatchPermitted("bar", "");
    EXPECT_EQ(EtcdServer::WatchCancelReason(w),
              "rpc error: code = PermissionDenied desc = etcdserver: "
              "permission denied");
  });
  // Disabling (root) lets everyone in again.
  EXPECT_TRUE(
      DETCD_CALL(AuthDisable, AuthDisableResponse, pb::AuthDisableRequest(),
                 &*root)
          .ok());
  EXPECT_TRUE(Put("bar", &anon).ok());
}

TEST_F(AuthServerTest, RevokedPermissionEndsAtOnceAndOldRevisionIsRefused) {
  Start();
  WalkThroughSetup();
  auto root = Login("root", "rootpw");
  auto alice = Login("alice", "alicepw");
  ASSERT_TRUE(root.ok() && alice.ok());
  ASSERT_TRUE(Put("foo/1", &*alice).ok());
  // Revoke and write in the same instant: the write was stamped with the
  // auth revision before the revoke applied, so apply refuses it as old.
  pb::AuthRoleRevokePermissionRequest rv;
  rv.set_role("foo");
  rv.set_key("foo/");
  rv.set_range_end("foo0");
  Waiter<pb::AuthRoleRevokePermissionResponse> wr;
  Waiter<pb::PutResponse> wp;
  pb::PutRequest p;
  p.set_key("foo/2");
  const uint64_t lead = cluster_->Leader();
  ASSERT_TRUE(cluster_->Call(lead, [&](EtcdServer& s) {
    {
      EtcdServer::CallerScope scope(&s, &*root);
      s.RoleRevokePermission(rv, wr.cb());
    }
    EtcdServer::CallerScope scope(&s, &*alice);
    s.Put(p, wp.cb());
  }));
  for (int i = 0; i < 400 && !(wr.result && wp.result); ++i) {
    RunFor(10 * sim::kMillisecond);
  }
  ASSERT_TRUE(wr.result && wp.result);
  EXPECT_TRUE(wr.result->ok());
  EXPECT_EQ(Text(wp.result->status()),
            "etcdserver: revision of auth store is old");
  // The token still names alice, now without the permission.
  EXPECT_EQ(Text(Put("foo/2", &*alice)), "etcdserver: permission denied");
  EXPECT_EQ(Text(Get("foo/1", "", &*alice)), "etcdserver: permission denied");
}

TEST_F(AuthServerTest, TokensExpireAndEndWithPasswordChange) {
  Start(/*token_ttl_ns=*/3 * sim::kSecond);
  WalkThroughSetup();
  auto alice = Login("alice", "alicepw");
  ASSERT_TRUE(alice.ok());
  // Use keeps it alive.
  for (int i = 0; i < 3; ++i) {
    RunFor(2 * sim::kSecond);
    EXPECT_TRUE(Put("foo/1", &*alice).ok()) << i;
  }
  RunFor(5 * sim::kSecond);
  EXPECT_EQ(Text(Put("foo/1", &*alice)), "etcdserver: invalid auth token");
  // A new login works; a password change ends it.
  alice = Login("alice", "alicepw");
  ASSERT_TRUE(alice.ok());
  auto root = Login("root", "rootpw");
  pb::AuthUserChangePasswordRequest cp;
  cp.set_name("alice");
  cp.set_password("new");
  ASSERT_TRUE(
      DETCD_CALL(UserChangePassword, AuthUserChangePasswordResponse, cp, &*root)
          .ok());
  EXPECT_EQ(Text(Put("foo/1", &*alice)), "etcdserver: invalid auth token");
  EXPECT_FALSE(Login("alice", "alicepw").ok());
  EXPECT_TRUE(Login("alice", "new").ok());
  // The log holds hashes, never passwords.
  const auto* u = cluster_->server(Any())->state().auth().FindUser("alice");
  ASSERT_NE(u, nullptr);
  EXPECT_EQ(u->password().substr(0, 4), "$2b$");
}

TEST_F(AuthServerTest, ExpiredLeaseIsRevokedUnderAuthAndLeaseRevokeIsChecked) {
  Start();
  WalkThroughSetup();
  auto root = Login("root", "rootpw");
  auto alice = Login("alice", "alicepw");
  ASSERT_TRUE(root.ok() && alice.ok());
  pb::LeaseGrantRequest g;
  g.set_ttl(5);
  auto l1 = DETCD_CALL(LeaseGrant, LeaseGrantResponse, g, &*root);
  ASSERT_TRUE(l1.ok());
  ASSERT_TRUE(Put("secret", &*root, l1->id()).ok());
  // alice cannot revoke a lease holding a key she may not write, nor put
  // a key with it.
  pb::LeaseRevokeRequest rv;
  rv.set_id(l1->id());
  EXPECT_EQ(Text(DETCD_CALL(LeaseRevoke, LeaseRevokeResponse, rv, &*alice)
                     .status()),
            "etcdserver: permission denied");
  EXPECT_EQ(Text(Put("foo/x", &*alice, l1->id())),
            "etcdserver: permission denied");
  // Expiry revokes it anyway (as root, like etcd).
  RunFor(10 * sim::kSecond);
  pb::RangeRequest r;
  r.set_key("secret");
  auto get = DETCD_CALL(Range, RangeResponse, r, &*root);
  ASSERT_TRUE(get.ok());
  EXPECT_EQ(get->kvs_size(), 0);
}

TEST_F(AuthServerTest, TokenFromAnotherMemberWaitsForItsEntry) {
  Start();
  WalkThroughSetup();
  const uint64_t lead = cluster_->Leader();
  uint64_t f = 0;
  for (uint64_t id : cluster_->UpNodes()) {
    if (id != lead) f = id;
  }
  // Sign in on the leader while a follower is cut off, then use the token
  // on that follower: it has not applied the entry yet.
  std::vector<uint64_t> rest;
  for (uint64_t id : cluster_->ids()) {
    if (id != f) rest.push_back(id);
  }
  cluster_->network().Partition({f}, rest);
  pb::AuthenticateRequest ar;
  ar.set_name("alice");
  ar.set_password("alicepw");
  Caller anon;
  auto tok = Do<pb::AuthenticateResponse>(
      lead, &anon, [&](EtcdServer& s, auto cb) { s.Authenticate(ar, cb); });
  ASSERT_TRUE(tok.ok());
  Caller alice;
  alice.token = tok->token();
  Waiter<pb::PutResponse> w;
  pb::PutRequest p;
  p.set_key("foo/w");
  bool behind = false;
  ASSERT_TRUE(cluster_->Call(f, [&](EtcdServer& s) {
    uint64_t index = 0;
    ASSERT_TRUE(auth::SimpleTokenIndex(*alice.token, &index));
    behind = s.node().applied_index() < index;
    s.AwaitCaller(alice, [&] {
      EtcdServer::CallerScope scope(&s, &alice);
      s.Put(p, w.cb());
    });
  }));
  EXPECT_TRUE(behind);  // else this test shows nothing
  RunFor(50 * sim::kMillisecond);
  EXPECT_FALSE(w.result.has_value());  // still waiting for the entry
  cluster_->network().HealAll();
  for (int i = 0; i < 400 && !w.result; ++i) RunFor(10 * sim::kMillisecond);
  ASSERT_TRUE(w.result.has_value());
  EXPECT_TRUE(w.result->ok()) << w.result->status();
  // An unknown token ahead of everything gives up after the request
  // timeout with etcd's error.
  Caller ghost;
  ghost.token = "abcdefghijklmnop.999999";
  Waiter<pb::PutResponse> w2;
  ASSERT_TRUE(cluster_->Call(f, [&](EtcdServer& s) {
    s.AwaitCaller(ghost, [&] {
      EtcdServer::CallerScope scope(&s, &ghost);
      s.Put(p, w2.cb());
    });
  }));
  for (int i = 0; i < 400 && !w2.result; ++i) RunFor(10 * sim::kMillisecond);
  ASSERT_TRUE(w2.result.has_value());
  EXPECT_EQ(Text(w2.result->status()), "etcdserver: invalid auth token");
}

TEST_F(AuthServerTest, ClientCertificateNamesTheUserWithClientCertAuth) {
  Start(0, /*client_cert_auth=*/true);
  WalkThroughSetup();
  Caller cert;
  cert.cert_cn = "alice";
  EXPECT_TRUE(Put("foo/1", &cert).ok());
  EXPECT_EQ(Text(Put("bar", &cert)), "etcdserver: permission denied");
  // A token wins over the certificate.
  auto bob = Login("bob", "bobpw");
  ASSERT_TRUE(bob.ok());
  bob->cert_cn = "alice";
  EXPECT_EQ(Text(Put("foo/1", &*bob)), "etcdserver: permission denied");
}

TEST_F(AuthServerTest, ClientCertificateIsIgnoredWithoutClientCertAuth) {
  Start();
  WalkThroughSetup();
  Caller cert;
  cert.cert_cn = "root";
  EXPECT_EQ(Text(Put("foo/1", &cert)), "etcdserver: user name is empty");
}

TEST_F(AuthServerTest, AuthStoreTravelsInSnapshotsAndFreshImagesStayOld) {
  EtcdStateMachine::Options o;
  o.now_ns = [] { return int64_t{0}; };
  EtcdStateMachine a(o);
  EXPECT_EQ(a.Snapshot().substr(0, 9), "detcd-sm3");  // no auth: as before
  pb::InternalRaftRequest req;
  req.mutable_auth_role_add()->set_name("r");
  a.Apply(1, req.SerializeAsString());
  const std::string img = a.Snapshot();
  EXPECT_EQ(img.substr(0, 9), "detcd-sm4");
  EtcdStateMachine b(o);
  ASSERT_TRUE(b.Restore(img).ok());
  EXPECT_EQ(b.auth().RoleList(), std::vector<std::string>{"r"});
  EXPECT_EQ(b.auth().revision(), a.auth().revision());
  // An old image loads with a fresh store.
  EtcdStateMachine c(o);
  ASSERT_TRUE(c.Restore(EtcdStateMachine(o).Snapshot()).ok());
  ASSERT_TRUE(b.Restore(c.Snapshot()).ok());
  EXPECT_TRUE(b.auth().pristine());
  // A truncated auth section is refused.
  EXPECT_FALSE(b.Restore(img.substr(0, img.size() - 1)).ok());
}

}  // namespace
}  // namespace detcd::server
