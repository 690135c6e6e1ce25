// `snapshot restore`'s data dirs (shim/restore.h): three members restored
// from the same data agree byte for byte, recover with the store, leases
// and the new membership, elect a leader and serve; refusals leave nothing
// behind.
#include "shim/restore.h"

#include <stdlib.h>

#include <algorithm>
#include <array>
#include <deque>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "engine/auth/auth_store.h"
#include "engine/auth/bcrypt.h"
#include "engine/lease/lessor.h"
#include "engine/mvcc/kv_store.h"
#include "engine/server/etcd_server.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "shim/posix_disk.h"

namespace detcd::shim {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

class TempDir {
 public:
  TempDir() {
    std::string t = (fs::temp_directory_path() / "restore_test.XXXXXX").string();
    path_ = ::mkdtemp(t.data());
  }
  ~TempDir() { fs::remove_all(path_); }
  std::string Sub(const std::string& name) const { return path_ + "/" + name; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

std::string ReadFile(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// Every file under dir (relative name -> bytes), the identity file aside.
std::map<std::string, std::string> Files(const std::string& dir) {
  std::map<std::string, std::string> out;
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    if (!e.is_regular_file()) continue;
    std::string rel = fs::relative(e.path(), dir).string();
    if (rel == kIdentityFile) continue;
    out[rel] = ReadFile(e.path());
  }
  return out;
}

// The source cluster's state: history, a deleted key, a compaction, leases
// with and without keys and a checkpointed remaining TTL.
struct Source {
  mvcc::KvStore kv;
  lease::Lessor lessor{[] {
    lease::LessorOptions o;
    o.min_ttl_s = 1;
    return o;
  }()};
  RestoredData data;

  Source() {
    auto put = [&](const char* k, const char* v, int64_t lease = 0) {
      auto t = kv.Write();
      t.Put(k, v, lease);
      t.End();
    };
    put("a", "1");                        // 2
    put("a", "2");                        // 3
    put("b", "x");                        // 4
    {
      auto t = kv.Write();                // 5
      t.DeleteRange("b", "");
      t.End();
    }
    EXPECT_TRUE(lessor.Grant(7, 60, 0).ok());
    EXPECT_TRUE(lessor.Grant(8, 30, 0).ok());
    lessor.Checkpoint(8, 12, 0);
    put("c", "leased", 7);                // 6
    EXPECT_TRUE(lessor.Attach(7, "c").ok());
    EXPECT_TRUE(kv.Compact(4).ok());
    put("d", "4");                        // 7
    put("a", "3");                        // 8
    data.kv_image = kv.Snapshot();
    data.lessor_image = lessor.Snapshot();
  }
};

struct Member {
  std::string name;
  std::string peer_url;
  std::string dir;
};

constexpr char kToken[] = "restore-test";

std::vector<Member> Members(const TempDir& tmp) {
  std::vector<Member> out;
  for (int i = 0; i < 3; ++i) {
    out.push_back({"m" + std::to_string(i),
                   "http://127.0.0.1:" + std::to_string(23800 + i),
                   tmp.Sub("m" + std::to_string(i) + ".etcd")});
  }
  return out;
}

RestoreSpec SpecFor(const std::vector<Member>& ms, const Member& m) {
  RestoreSpec s;
  s.name = m.name;
  s.data_dir = m.dir;
  s.peer_urls = {m.peer_url};
  s.initial_cluster.clear();
  for (const Member& o : ms) {
    if (!s.initial_cluster.empty()) s.initial_cluster += ",";
    s.initial_cluster += o.name + "=" + o.peer_url;
  }
  s.initial_cluster_token = kToken;
  return s;
}

// A virtual clock and a loopback network between in-process members.
class FakeClock final : public env::Clock {
 public:
  int64_t NowNanos() override { return now; }
  int64_t now = 1'000'000'000'000;
};

struct Net {
  std::deque<std::pair<uint64_t, std::string>> queue;
};

class LoopTransport final : public env::Transport {
 public:
  explicit LoopTransport(Net* net) : net_(net) {}
  void Send(uint64_t to, std::string payload) override {
    net_->queue.emplace_back(to, std::move(payload));
  }

 private:
  Net* net_;
};

// One restored member opened as the server opens it (no founders: the
// data dir decides).
struct Running {
  std::unique_ptr<PosixDisk> disk;
  std::unique_ptr<LoopTransport> transport;
  std::unique_ptr<env::SeededRng> rng;
  std::unique_ptr<server::EtcdServer> server;
};

Running Open(const Member& m, FakeClock* clock, Net* net) {
  Running r;
  r.disk = std::make_unique<PosixDisk>(m.dir);
  auto id = ReadIdentity(*r.disk);
  EXPECT_TRUE(id.ok()) << id.status();
  r.transport = std::make_unique<LoopTransport>(net);
  r.rng = std::make_unique<env::SeededRng>(id->member_id);
  server::EtcdServerOptions so;
  so.node.id = id->member_id;
  so.node.data_dir = "member";
  so.cluster_id = id->cluster_id;
  env::Env env{clock, r.disk.get(), r.transport.get(), r.rng.get()};
  r.server = std::make_unique<server::EtcdServer>(env, so);
  absl::Status s = r.server->Start();
  EXPECT_TRUE(s.ok()) << s;
  return r;
}

// The restored members running on one clock and loopback network.
struct RunningCluster {
  FakeClock clock;
  Net net;
  std::map<uint64_t, Running> members;

  explicit RunningCluster(const std::vector<Member>& ms) {
    for (const Member& m : ms) {
      Running r = Open(m, &clock, &net);
      const uint64_t id = r.server->id();
      members.emplace(id, std::move(r));
    }
  }
  void Step() {
    clock.now += 100'000'000;
    for (auto& [id, r] : members) r.server->Tick();
    for (int i = 0; i < 10000 && !net.queue.empty(); ++i) {
      auto [to, payload] = std::move(net.queue.front());
      net.queue.pop_front();
      auto it = members.find(to);
      if (it != members.end()) it->second.server->OnMessage(payload);
    }
  }
  // The leader once there is one (0 if none in 300 steps).
  server::EtcdServer* Leader() {
    for (int i = 0; i < 300; ++i) {
      for (auto& [id, r] : members) {
        if (r.server->node().is_leader()) return r.server.get();
      }
      Step();
    }
    return nullptr;
  }
  // Runs call(server, done) as `who` and steps until it is answered.
  template <typename Resp, typename Call>
  absl::StatusOr<Resp> Do(server::EtcdServer* s, const server::Caller* who,
                          Call call) {
    std::optional<absl::StatusOr<Resp>> out;
    {
      server::EtcdServer::CallerScope scope(s, who);
      call(*s, [&](absl::StatusOr<Resp> r) { out = std::move(r); });
    }
    for (int i = 0; i < 100 && !out; ++i) Step();
    if (!out) return absl::DeadlineExceededError("test: no answer");
    return *std::move(out);
  }
};

std::vector<mvcc::KeyValue> All(const mvcc::KvStore& kv, int64_t rev = 0) {
  mvcc::RangeOptions o;
  o.rev = rev;
  auto r = kv.Range(std::string_view("\0", 1), std::string_view("\0", 1), o);
  EXPECT_TRUE(r.ok()) << r.status();
  return r.ok() ? r->kvs : std::vector<mvcc::KeyValue>{};
}

void ExpectSameKvs(const std::vector<mvcc::KeyValue>& a,
                   const std::vector<mvcc::KeyValue>& b) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].key, b[i].key);
    EXPECT_EQ(a[i].value, b[i].value);
    EXPECT_EQ(a[i].create_revision, b[i].create_revision);
    EXPECT_EQ(a[i].mod_revision, b[i].mod_revision);
    EXPECT_EQ(a[i].version, b[i].version);
    EXPECT_EQ(a[i].lease, b[i].lease);
  }
}

void RestoreAll(const std::vector<Member>& ms, const RestoredData& data) {
  for (const Member& m : ms) {
    auto plan = PlanRestore(SpecFor(ms, m));
    ASSERT_TRUE(plan.ok()) << plan.status();
    absl::Status s = WriteRestoredMember(*plan, data);
    ASSERT_TRUE(s.ok()) << s;
  }
}

TEST(RestoreTest, MembersAgreeAndRecoverTheState) {
  TempDir tmp;
  Source src;
  std::vector<Member> ms = Members(tmp);
  RestoreAll(ms, src.data);

  // Nothing but the three data dirs (no temporary dir left).
  std::vector<std::string> entries;
  for (const auto& e : fs::directory_iterator(tmp.path())) {
    entries.push_back(e.path().filename().string());
  }
  std::sort(entries.begin(), entries.end());
  EXPECT_EQ(entries,
            (std::vector<std::string>{"m0.etcd", "m1.etcd", "m2.etcd"}));
  // The WAL and the snapshot do not depend on the member.
  auto files = Files(ms[0].dir);
  EXPECT_EQ(files.size(), 2u);
  EXPECT_EQ(files, Files(ms[1].dir));
  EXPECT_EQ(files, Files(ms[2].dir));

  // Ids as `detcd --initial-cluster ...` derives them.
  std::vector<uint64_t> ids;
  for (const Member& m : ms) ids.push_back(ComputeMemberId({m.peer_url}, kToken));
  const uint64_t cluster_id = ComputeClusterId(ids);

  FakeClock clock;
  Net net;
  for (size_t i = 0; i < ms.size(); ++i) {
    Running r = Open(ms[i], &clock, &net);
    const server::EtcdServer& s = *r.server;
    EXPECT_EQ(s.id(), ids[i]);
    EXPECT_EQ(s.cluster_id(), cluster_id);
    EXPECT_EQ(s.node().applied_index(), 3u);
    std::vector<uint64_t> voters = ids;
    std::sort(voters.begin(), voters.end());
    EXPECT_EQ(s.node().conf_state().voters, voters);
    std::vector<server::MemberInfo> members = s.state().membership().List();
    ASSERT_EQ(members.size(), 3u);
    for (const server::MemberInfo& mi : members) {
      auto it = std::find(ids.begin(), ids.end(), mi.id);
      ASSERT_NE(it, ids.end());
      const Member& m = ms[it - ids.begin()];
      EXPECT_EQ(mi.name, m.name);
      EXPECT_EQ(mi.peer_urls, std::vector<std::string>{m.peer_url});
    }
    const mvcc::KvStore& kv = s.state().kv();
    EXPECT_EQ(kv.Rev(), 8);
    EXPECT_EQ(kv.CompactRev(), 4);
    ExpectSameKvs(All(kv), All(src.kv));
    ExpectSameKvs(All(kv, 5), All(src.kv, 5));  // "b" deleted at 5
    auto h = kv.HashByRev(0);
    auto want = src.kv.HashByRev(0);
    ASSERT_TRUE(h.ok() && want.ok());
    EXPECT_EQ(h->hash, want->hash);
    EXPECT_EQ(kv.revision_count(), src.kv.revision_count());
    auto l7 = s.state().lessor().Get(7);
    ASSERT_TRUE(l7.ok()) << l7.status();
    EXPECT_EQ(l7->ttl_s, 60);
    EXPECT_EQ(l7->keys, std::vector<std::string>{"c"});
    auto l8 = s.state().lessor().Get(8);
    ASSERT_TRUE(l8.ok()) << l8.status();
    EXPECT_EQ(l8->remaining_ttl_s, 12);
    EXPECT_TRUE(s.state().CheckLeaseInvariant().empty());
  }
}

TEST(RestoreTest, RestoredMembersElectALeaderAndServe) {
  TempDir tmp;
  Source src;
  std::vector<Member> ms = Members(tmp);
  RestoreAll(ms, src.data);
  RunningCluster c(ms);
  server::EtcdServer* leader = c.Leader();
  ASSERT_NE(leader, nullptr);
  EXPECT_GE(leader->node().raft().term(), 2u);

  etcdserverpb::PutRequest req;
  req.set_key("e");
  req.set_value("new");
  auto put = c.Do<etcdserverpb::PutResponse>(
      leader, nullptr,
      [&](server::EtcdServer& s, auto done) { s.Put(req, std::move(done)); });
  ASSERT_TRUE(put.ok()) << put.status();
  EXPECT_EQ(put->header().revision(), 9);
  for (int i = 0; i < 20; ++i) c.Step();
  for (auto& [id, r] : c.members) {
    const mvcc::KvStore& kv = r.server->state().kv();
    EXPECT_EQ(kv.Rev(), 9) << id;
    auto h = kv.HashByRev(0);
    auto want = leader->state().kv().HashByRev(0);
    ASSERT_TRUE(h.ok() && want.ok());
    EXPECT_EQ(h->hash, want->hash) << id;
  }
}

// The source cluster's auth: enabled, root, and "alice" (password
// "secret") whose role "prefix" may read and write [foo, fop).
std::string AuthImage() {
  auth::AuthStore as;
  std::array<uint8_t, 16> salt{};
  for (int i = 0; i < 16; ++i) salt[i] = static_cast<uint8_t>(3 * i + 1);
  auto root_hash = auth::BcryptHash("rootpw", auth::kBcryptMinCost, salt);
  auto alice_hash = auth::BcryptHash("secret", auth::kBcryptMinCost, salt);
  EXPECT_TRUE(root_hash.ok() && alice_hash.ok());
  EXPECT_TRUE(as.UserAdd("root", *root_hash, false).ok());    // 2
  EXPECT_TRUE(as.UserGrantRole("root", "root").ok());         // 3
  EXPECT_TRUE(as.UserAdd("alice", *alice_hash, false).ok());  // 4
  EXPECT_TRUE(as.RoleAdd("prefix").ok());                     // 5
  authpb::Permission p;
  p.set_permtype(authpb::Permission::READWRITE);
  p.set_key("foo");
  p.set_range_end("fop");
  EXPECT_TRUE(as.RoleGrantPermission("prefix", p).ok());  // 6
  EXPECT_TRUE(as.UserGrantRole("alice", "prefix").ok());  // 7
  EXPECT_TRUE(as.Enable().ok());
  EXPECT_EQ(as.revision(), 7u);
  return as.Snapshot();
}

TEST(RestoreTest, AuthIsCarriedOver) {
  TempDir tmp;
  Source src;
  src.data.auth_image = AuthImage();
  std::vector<Member> ms = Members(tmp);
  RestoreAll(ms, src.data);
  auto files = Files(ms[0].dir);
  EXPECT_EQ(files.size(), 2u);
  EXPECT_EQ(files, Files(ms[1].dir));
  EXPECT_EQ(files, Files(ms[2].dir));

  RunningCluster c(ms);
  for (auto& [id, r] : c.members) {
    const auth::AuthStore& as = r.server->state().auth();
    EXPECT_TRUE(as.enabled()) << id;
    EXPECT_EQ(as.revision(), 7u) << id;
    EXPECT_EQ(as.UserList(), (std::vector<std::string>{"alice", "root"}));
    EXPECT_EQ(as.RoleList(), std::vector<std::string>{"prefix"});
    EXPECT_TRUE(as.HasRole("root", "root"));
    EXPECT_EQ(*as.UserGet("alice"), std::vector<std::string>{"prefix"});
    auto perms = as.RoleGet("prefix");
    ASSERT_TRUE(perms.ok()) << perms.status();
    ASSERT_EQ(perms->size(), 1u);
    EXPECT_EQ((*perms)[0].permtype(), authpb::Permission::READWRITE);
    EXPECT_EQ((*perms)[0].key(), "foo");
    EXPECT_EQ((*perms)[0].range_end(), "fop");
    auto hash = as.PasswordHash("alice");
    ASSERT_TRUE(hash.ok()) << hash.status();
    EXPECT_TRUE(auth::BcryptMatches(*hash, "secret"));
    EXPECT_FALSE(auth::BcryptMatches(*hash, "wrong"));
    // The store's data came along too.
    EXPECT_EQ(r.server->state().kv().Rev(), 8);
  }

  // The restored cluster enforces it.
  server::EtcdServer* leader = c.Leader();
  ASSERT_NE(leader, nullptr);
  server::Caller anon;
  auto login = [&](const std::string& pw) {
    etcdserverpb::AuthenticateRequest r;
    r.set_name("alice");
    r.set_password(pw);
    return c.Do<etcdserverpb::AuthenticateResponse>(
        leader, &anon, [&](server::EtcdServer& s, auto done) {
          s.Authenticate(r, std::move(done));
        });
  };
  EXPECT_EQ(login("wrong").status().message(),
            "auth: authentication failed, invalid user ID or password");
  auto token = login("secret");
  ASSERT_TRUE(token.ok()) << token.status();
  server::Caller alice;
  alice.token = token->token();
  auto put = [&](const std::string& key, const server::Caller* who) {
    etcdserverpb::PutRequest r;
    r.set_key(key);
    r.set_value("v");
    return c.Do<etcdserverpb::PutResponse>(
        leader, who,
        [&](server::EtcdServer& s, auto done) { s.Put(r, std::move(done)); });
  };
  auto in_prefix = put("foo1", &alice);
  ASSERT_TRUE(in_prefix.ok()) << in_prefix.status();
  EXPECT_EQ(in_prefix->header().revision(), 9);
  EXPECT_EQ(put("zzz", &alice).status().message(), "auth: permission denied");
  EXPECT_EQ(put("foo2", &anon).status().message(), "auth: user name is empty");
}

TEST(RestoreTest, RefusesAsEtcdDoesAndLeavesNothing) {
  TempDir tmp;
  Source src;
  std::vector<Member> ms = Members(tmp);

  RestoreSpec spec = SpecFor(ms, ms[0]);
  spec.name = "nobody";
  EXPECT_THAT(PlanRestore(spec).status().message(),
              HasSubstr("couldn't find local name \"nobody\" in the initial "
                        "cluster configuration"));
  spec = SpecFor(ms, ms[0]);
  spec.peer_urls = {"http://127.0.0.1:1"};
  EXPECT_THAT(PlanRestore(spec).status().message(),
              HasSubstr("missing from --initial-advertise-peer-urls"));
  spec = SpecFor(ms, ms[0]);
  spec.peer_urls = {"ftp://127.0.0.1:1"};
  EXPECT_THAT(PlanRestore(spec).status().message(),
              HasSubstr("URL scheme must be http, https, unix, or unixs"));
  spec = SpecFor(ms, ms[0]);
  spec.wal_dir = tmp.Sub("elsewhere");
  EXPECT_EQ(PlanRestore(spec).status().code(),
            absl::StatusCode::kInvalidArgument);
  spec.wal_dir = ms[0].dir + "/member/wal";  // the default is fine
  EXPECT_TRUE(PlanRestore(spec).ok());

  // Corrupt images: refused, nothing left.
  spec = SpecFor(ms, ms[0]);
  auto plan = PlanRestore(spec);
  ASSERT_TRUE(plan.ok()) << plan.status();
  RestoredData bad = src.data;
  bad.kv_image[bad.kv_image.size() / 2] ^= 0x40;
  EXPECT_EQ(WriteRestoredMember(*plan, bad).code(), absl::StatusCode::kDataLoss);
  bad = src.data;
  bad.lessor_image.resize(bad.lessor_image.size() - 3);
  EXPECT_EQ(WriteRestoredMember(*plan, bad).code(), absl::StatusCode::kDataLoss);
  // A key attached to a lease the lessor does not have.
  bad = src.data;
  bad.lessor_image = lease::Lessor(lease::LessorOptions{}).Snapshot();
  EXPECT_EQ(WriteRestoredMember(*plan, bad).code(), absl::StatusCode::kDataLoss);
  // An auth image that does not decode.
  bad = src.data;
  bad.auth_image = AuthImage();
  bad.auth_image.pop_back();
  EXPECT_EQ(WriteRestoredMember(*plan, bad).code(),
            absl::StatusCode::kDataLoss);
  EXPECT_TRUE(fs::is_empty(tmp.path()));

  // An existing data dir, empty or not.
  fs::create_directory(ms[0].dir);
  EXPECT_EQ(PlanRestore(spec).status().message(),
            "data-dir \"" + ms[0].dir + "\" exists");
  EXPECT_EQ(WriteRestoredMember(*plan, src.data).code(),
            absl::StatusCode::kAlreadyExists);
  EXPECT_TRUE(fs::is_empty(ms[0].dir));
}

TEST(RestoreTest, AdoptDataOnlyRightAfterFounding) {
  TempDir tmp;
  Source src;
  PosixDisk disk(tmp.path());
  FakeClock clock;
  Net net;
  LoopTransport transport(&net);
  env::SeededRng rng(1);
  server::EtcdServerOptions so;
  so.node.id = 1;
  so.node.data_dir = "member";
  so.node.initial_voters = {1};
  so.cluster_id = 9;
  server::EtcdServer s(env::Env{&clock, &disk, &transport, &rng}, so);
  ASSERT_TRUE(s.Start().ok());
  for (int i = 0; i < 30 && !s.node().is_leader(); ++i) {
    clock.now += 100'000'000;
    s.Tick();
  }
  ASSERT_TRUE(s.node().is_leader());
  EXPECT_EQ(
      s.AdoptData(src.data.kv_image, src.data.lessor_image, src.data.auth_image)
          .code(),
      absl::StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace detcd::shim
