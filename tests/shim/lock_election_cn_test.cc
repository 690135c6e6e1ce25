// etcd's Lock and Election services for a caller known only by its TLS
// client certificate (--client-cert-auth, auth enabled, no token): the
// inner requests run as the certificate's common name, as etcd's
// in-process clientv3 runs with the caller's context; so does a stream the
// native transport relays to gRPC C++ (Snapshot). A member of its own
// (one DetcdServer per process; lock_election_test has the other cases).

#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "detcd/client.h"
#include "detcd/errors.h"
#include "gtest/gtest.h"
#include "shim/config.h"
#include "shim/server.h"
#include "tests/client/detcd_process.h"
#include "tests/shim/test_pki.h"

namespace detcd::shim {
namespace {

namespace pb = etcdserverpb;
namespace el = v3electionpb;
using client::CallOptions;
using client::Client;

template <typename T>
void Must(const absl::StatusOr<T>& r, const char* what) {
  ASSERT_TRUE(r.ok()) << what << ": " << r.status();
}

// With the native transport (which relays these services to gRPC C++
// over an in-process channel, the CN in metadata) and without.
class LockElectionByCertificate : public ::testing::TestWithParam<bool> {};

TEST_P(LockElectionByCertificate, InnerRequestsRunAsTheCommonName) {
  char tmpl[] = "/tmp/detcd-lock-cn-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  const std::string dir = tmpl;
  auto pki = testing::MakeTestPki(dir, "alice");
  ASSERT_TRUE(pki.ok()) << pki.status();
  const int cport = ::detcd::testing::FreePort(),
            pport = ::detcd::testing::FreePort();
  const std::string curl = absl::StrCat("https://127.0.0.1:", cport);
  const std::string purl = absl::StrCat("http://127.0.0.1:", pport);
  ParseOutcome p = ParseServerConfig(
      {"--data-dir=" + dir + "/data", "--listen-client-urls=" + curl,
       "--advertise-client-urls=" + curl, "--listen-peer-urls=" + purl,
       "--initial-advertise-peer-urls=" + purl,
       "--initial-cluster=default=" + purl, "--heartbeat-interval=20",
       "--election-timeout=200", "--cert-file=" + pki->server_cert_file,
       "--key-file=" + pki->server_key_file,
       "--trusted-ca-file=" + pki->ca_file, "--client-cert-auth",
       GetParam() ? "--native-grpc=true" : "--native-grpc=false"},
      {});
  ASSERT_EQ(p.action, ParseOutcome::Action::kRun) << p.output;
  auto server = DetcdServer::Start(p.config);
  ASSERT_TRUE(server.ok()) << server.status();

  client::Config cc;
  cc.endpoints = {absl::StrCat("127.0.0.1:", cport)};
  cc.tls = client::TlsConfig{pki->client_cert_file, pki->client_key_file,
                             pki->ca_file, "", false};
  auto anon = Client::New(cc);  // alice's certificate, no token
  Must(anon, "client");
  // Auth: root (by password) and alice, who may use keys under "ga/".
  pb::PutRequest ready;
  ready.set_key("ready");
  absl::StatusOr<pb::PutResponse> up;
  for (int i = 0; i < 100; ++i) {
    up = (*anon)->Put(ready, CallOptions::Timeout(absl::Seconds(2)));
    if (up.ok()) break;
    absl::SleepFor(absl::Milliseconds(50));
  }
  Must(up, "first put");
  Client& c = **anon;
  pb::AuthUserAddRequest root;
  root.set_name("root");
  root.set_password("rootpw");
  Must(c.UserAdd(root), "root");
  pb::AuthUserGrantRoleRequest rg;
  rg.set_user("root");
  rg.set_role("root");
  Must(c.UserGrantRole(rg), "root role");
  pb::AuthRoleAddRequest ra;
  ra.set_name("locker");
  Must(c.RoleAdd(ra), "locker");
  pb::AuthRoleGrantPermissionRequest gp;
  gp.set_name("locker");
  gp.mutable_perm()->set_permtype(authpb::Permission::READWRITE);
  gp.mutable_perm()->set_key("ga/");
  gp.mutable_perm()->set_range_end("gb");
  Must(c.RoleGrantPermission(gp), "permission");
  pb::AuthUserAddRequest alice;
  alice.set_name("alice");
  alice.set_password("alicepw");
  Must(c.UserAdd(alice), "alice");
  rg.set_user("alice");
  rg.set_role("locker");
  Must(c.UserGrantRole(rg), "alice role");
  Must(c.AuthEnable(), "auth enable");

  // The KV service runs alice's put as alice.
  pb::PutRequest mine;
  mine.set_key("ga/x");
  Must(c.Put(mine), "alice's put");
  // A lease to lock with (lease calls need no permission).
  pb::LeaseGrantRequest g;
  g.set_ttl(30);
  auto lease = c.LeaseGrant(g);
  Must(lease, "grant");
  v3lockpb::LockRequest lr;
  lr.set_name("ga/lock");
  lr.set_lease(lease->id());
  auto locked = c.Lock(lr);
  ASSERT_TRUE(locked.ok()) << locked.status();
  EXPECT_EQ(locked->key().rfind("ga/lock/", 0), 0u) << locked->key();
  v3lockpb::UnlockRequest ul;
  ul.set_key(locked->key());
  EXPECT_TRUE(c.Unlock(ul).ok());
  // Outside alice's keys: etcd's permission error, code Unknown.
  lr.set_name("gb/lock");
  auto denied = c.Lock(lr);
  EXPECT_EQ(denied.status().code(), absl::StatusCode::kUnknown);
  EXPECT_EQ(denied.status().message(), "etcdserver: permission denied");

  el::CampaignRequest camp;
  camp.set_name("ga/elect");
  camp.set_lease(lease->id());
  camp.set_value("a");
  auto won = c.Campaign(camp);
  ASSERT_TRUE(won.ok()) << won.status();
  el::LeaderRequest leader;
  leader.set_name("ga/elect");
  auto l = c.Leader(leader);
  ASSERT_TRUE(l.ok()) << l.status();
  EXPECT_EQ(l->kv().value(), "a");
  el::ResignRequest rs;
  *rs.mutable_leader() = won->leader();
  EXPECT_TRUE(c.Resign(rs).ok());

  // A stream relayed to gRPC C++ (Maintenance.Snapshot, with the native
  // transport on) runs as the CN too: alice, made root, takes a snapshot.
  // (Debian's gRPC names an in-process peer "unknown", and the relayed CN
  // was dropped: "auth: user name is empty".)
  client::Config rc = cc;
  rc.username = "root";
  rc.password = "rootpw";
  auto as_root = Client::New(rc);
  Must(as_root, "root client");
  rg.set_user("alice");
  rg.set_role("root");
  Must((*as_root)->UserGrantRole(rg), "alice root");
  auto snap = c.OpenSnapshot(CallOptions::Timeout(absl::Seconds(20)));
  ASSERT_TRUE(snap.ok()) << snap.status();
  pb::SnapshotResponse piece;
  size_t bytes = 0;
  while ((*snap)->Read(&piece)) bytes += piece.blob().size();
  absl::Status done = (*snap)->Finish();
  EXPECT_TRUE(done.ok()) << done;
  EXPECT_GT(bytes, 0u);

  as_root->reset();
  anon->reset();
  (*server)->Stop();
  std::filesystem::remove_all(dir);
}

INSTANTIATE_TEST_SUITE_P(NativeTransport, LockElectionByCertificate,
                         ::testing::Bool());

}  // namespace
}  // namespace detcd::shim
