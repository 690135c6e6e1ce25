// Writes the seed corpora under fuzz/corpus/<target>/seed-* from the real
// encoders (a WAL and snapshot files on a SimDisk, raft messages, request
// protobufs, state machine images), so the seeds follow the formats when
// they change: rerun `build/fuzz/fuzz_make_seeds fuzz/corpus` and commit.
// Files of other names (regress-*: crashes found and fixed) are kept.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "engine/raft/codec.h"
#include "engine/server/etcd_state_machine.h"
#include "engine/server/membership.h"
#include "engine/util/coding.h"
#include "engine/wal/file_names.h"
#include "engine/wal/wal.h"
#include "etcdserverpb/raft_internal.pb.h"
#include "etcdserverpb/rpc.pb.h"
#include "sim/sim_disk.h"

namespace detcd::fuzz {
namespace {

namespace pb = etcdserverpb;

std::filesystem::path g_root;

void Write(const std::string& target, const std::string& name,
           const std::string& bytes) {
  const auto dir = g_root / target;
  std::filesystem::create_directories(dir);
  std::ofstream f(dir / ("seed-" + name), std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!f) {
    std::fprintf(stderr, "cannot write %s/%s\n", target.c_str(), name.c_str());
    std::exit(1);
  }
}

std::string Byte(int b) { return std::string(1, static_cast<char>(b)); }
std::string Varint(uint64_t v) {
  std::string s;
  coding::PutVarint64(&s, v);
  return s;
}
std::string Lp(const std::string& s) { return Varint(s.size()) + s; }

void Must(const absl::Status& s, const char* what) {
  if (!s.ok()) {
    std::fprintf(stderr, "%s: %s\n", what, s.ToString().c_str());
    std::exit(1);
  }
}

std::vector<raft::Entry> Entries(uint64_t from, uint64_t to, uint64_t term) {
  std::vector<raft::Entry> out;
  for (uint64_t i = from; i <= to; ++i) {
    raft::Entry e;
    e.term = term;
    e.index = i;
    e.data = "entry-" + std::to_string(i);
    out.push_back(e);
  }
  return out;
}

raft::SnapshotMetadata Meta(uint64_t index, uint64_t term) {
  raft::SnapshotMetadata m;
  m.index = index;
  m.term = term;
  m.conf_state.voters = {1, 2, 3};
  return m;
}

// Each segment as fuzz/wal_record_fuzz.cc takes it: varint(seq)
// varint(first index) then its bytes (length-prefixed unless `last`).
std::vector<std::string> Segments(sim::SimDisk& disk) {
  std::vector<std::string> out;
  auto names = disk.List("wal");
  Must(names.status(), "list");
  for (const std::string& n : *names) {
    uint64_t seq = 0, first = 0;
    if (!wal::ParsePairName(n, ".wal", &seq, &first)) continue;
    auto b = disk.ReadAll(wal::Join("wal", n));
    Must(b.status(), "read");
    out.push_back(Varint(seq) + Varint(first) + *b);
  }
  return out;
}

std::string LpSegment(const std::string& seg) {
  // varint(seq) varint(first) bytes -> varint(seq) varint(first) lp(bytes)
  coding::Reader r(seg);
  uint64_t seq = 0, first = 0;
  r.GetVarint64(&seq);
  r.GetVarint64(&first);
  return Varint(seq) + Varint(first) + Lp(std::string(r.rest()));
}

void WalSeeds() {
  {
    sim::SimDisk disk(env::SeededRng(1));
    Must(disk.CreateDir("wal"), "mkdir");
    auto w = wal::Wal::Create(&disk, "wal");
    Must(w.status(), "create");
    Must((*w)->SaveSnapshotMarker(Meta(0, 0)), "marker");
    raft::HardState hs{.term = 2, .vote = 1, .commit = 3};
    Must((*w)->Save(&hs, Entries(1, 5, 2), true), "save");
    hs.commit = 5;
    Must((*w)->Save(&hs, {}, true), "save");
    Must((*w)->SaveSnapshotMarker(Meta(4, 2)), "marker");
    Must((*w)->Save(&hs, Entries(6, 7, 2), false), "save");
    const std::vector<std::string> seg = Segments(disk);
    Write("wal_record", "one-segment", Byte(0) + seg[0]);
    Write("wal_record", "one-segment-at-marker", Byte(2) + seg[0]);
    // A torn tail: the last record cut in half.
    Write("wal_record", "torn-tail", Byte(0) + seg[0].substr(0, seg[0].size() - 7));
  }
  {
    sim::SimDisk disk(env::SeededRng(2));
    Must(disk.CreateDir("wal"), "mkdir");
    wal::WalOptions o;
    o.segment_bytes = 256;
    auto w = wal::Wal::Create(&disk, "wal", o);
    Must(w.status(), "create");
    Must((*w)->SaveSnapshotMarker(Meta(0, 0)), "marker");
    raft::HardState hs{.term = 1, .vote = 1, .commit = 0};
    for (uint64_t i = 1; i <= 30; i += 3) {
      hs.commit = i;
      Must((*w)->Save(&hs, Entries(i, i + 2, 1), true), "save");
    }
    const std::vector<std::string> seg = Segments(disk);
    if (seg.size() < 2) {
      std::fprintf(stderr, "expected at least two segments\n");
      std::exit(1);
    }
    // The first two (the rest missing is a shorter log, still valid).
    Write("wal_record", "two-segments", Byte(1) + LpSegment(seg[0]) + seg[1]);
  }
}

server::EtcdStateMachine::Options SmOptions() {
  server::EtcdStateMachine::Options o;
  o.now_ns = [] { return int64_t{0}; };
  return o;
}

std::vector<pb::InternalRaftRequest> SampleCommands() {
  std::vector<pb::InternalRaftRequest> out;
  pb::InternalRaftRequest r;
  r.mutable_header()->set_id(1);
  r.mutable_lease_grant()->set_id(7);
  r.mutable_lease_grant()->set_ttl(60);
  out.push_back(r);
  for (int i = 0; i < 3; ++i) {
    r.Clear();
    r.mutable_header()->set_id(2 + i);
    r.mutable_put()->set_key("key" + std::to_string(i));
    r.mutable_put()->set_value("value" + std::to_string(i));
    if (i == 1) r.mutable_put()->set_lease(7);
    out.push_back(r);
  }
  r.Clear();
  r.mutable_header()->set_id(9);
  r.mutable_delete_range()->set_key("key0");
  out.push_back(r);
  r.Clear();
  r.mutable_header()->set_id(10);
  r.mutable_auth_user_add()->set_name("alice");
  r.mutable_auth_user_add()->mutable_options()->set_no_password(true);
  out.push_back(r);
  r.Clear();
  r.mutable_header()->set_id(11);
  r.mutable_auth_role_add()->set_name("reader");
  out.push_back(r);
  r.Clear();
  r.mutable_header()->set_id(12);
  auto* g = r.mutable_auth_role_grant_permission();
  g->set_name("reader");
  g->mutable_perm()->set_permtype(authpb::Permission::READ);
  g->mutable_perm()->set_key("key");
  g->mutable_perm()->set_range_end("kez");
  out.push_back(r);
  r.Clear();
  r.mutable_header()->set_id(13);
  r.mutable_auth_user_grant_role()->set_user("alice");
  r.mutable_auth_user_grant_role()->set_role("reader");
  out.push_back(r);
  r.Clear();
  r.mutable_header()->set_id(14);
  r.mutable_alarm()->set_action(pb::AlarmRequest::ACTIVATE);
  r.mutable_alarm()->set_memberid(1);
  r.mutable_alarm()->set_alarm(pb::NOSPACE);
  out.push_back(r);
  return out;
}

void SnapshotSeeds() {
  server::EtcdStateMachine sm(SmOptions());
  uint64_t index = 0;
  for (const auto& c : SampleCommands()) {
    (void)sm.Apply(++index, c.SerializeAsString());
  }
  const std::string image = sm.Snapshot();
  raft::Snapshot snap;
  snap.metadata = Meta(index, 3);
  snap.data = image;
  {
    sim::SimDisk disk(env::SeededRng(3));
    Must(disk.CreateDir("snap"), "mkdir");
    wal::Snapshotter s(&disk, "snap");
    Must(s.Save(snap), "save snapshot");
    auto bytes = disk.ReadAll(wal::Join("snap", wal::PairName(3, index, ".snap")));
    Must(bytes.status(), "read snapshot");
    Write("snapshot", "file", Byte(0) + Varint(3) + Varint(index) + *bytes);
  }
  std::string enc;
  raft::EncodeSnapshot(&enc, snap);
  Write("snapshot", "image", Byte(1) + "detcd-snapshot1" + enc);
  Write("snapshot", "state-machine", Byte(2) + image);
  server::EtcdStateMachine empty(SmOptions());
  Write("snapshot", "state-machine-empty", Byte(2) + empty.Snapshot());
  Write("snapshot", "kv", Byte(3) + sm.kv().Snapshot());
  Write("snapshot", "lessor", Byte(4) + sm.lessor().Snapshot());
  Write("snapshot", "membership", Byte(5) + sm.membership().Snapshot());
  Write("snapshot", "alarms", Byte(6) + sm.alarms().Snapshot());
  Write("snapshot", "auth", Byte(7) + sm.auth().Snapshot());
}

void PeerSeeds() {
  raft::Message m;
  m.type = raft::MessageType::kApp;
  m.to = 1;
  m.from = 2;
  m.term = 3;
  m.log_term = 3;
  m.index = 4;
  m.commit = 4;
  m.entries = Entries(5, 7, 3);
  Write("peer_message", "raft-app", Byte(0) + raft::EncodeMessage(m));
  raft::Message v;
  v.type = raft::MessageType::kVote;
  v.to = 1;
  v.from = 3;
  v.term = 9;
  v.log_term = 8;
  v.index = 20;
  v.context = "transfer";
  Write("peer_message", "raft-vote", Byte(0) + raft::EncodeMessage(v));
  raft::Message s;
  s.type = raft::MessageType::kSnap;
  s.to = 2;
  s.from = 1;
  s.term = 4;
  auto snap = std::make_shared<raft::Snapshot>();
  snap->metadata = Meta(10, 4);
  snap->data = "state";
  s.snapshot = snap;
  Write("peer_message", "raft-snap", Byte(0) + raft::EncodeMessage(s));

  raft::ConfChange cc;
  cc.type = raft::ConfChangeType::kAddNode;
  cc.node_id = 5;
  Write("peer_message", "conf-change", Byte(1) + raft::EncodeConfChange(cc));
  server::MemberInfo mi;
  mi.id = 5;
  mi.name = "m5";
  mi.peer_urls = {"http://127.0.0.1:2380"};
  mi.client_urls = {"http://127.0.0.1:2379"};
  Write("peer_message", "member-context",
        Byte(1) + server::EncodeMemberContext(mi));
  pb::PutResponse pr;
  pr.mutable_header()->set_revision(5);
  Write("peer_message", "result", Byte(1) + server::EncodeResult(absl::OkStatus(), &pr));

  // Live server channels (EtcdServer's peer payloads).
  pb::LeaseKeepAliveRequest ka;
  ka.set_id(7);
  const std::string forward =
      std::string("q") + Varint(2) + Varint(99) + Byte(1) + ka.SerializeAsString();
  pb::HashKVRequest hkv;
  const std::string hash =
      std::string("q") + Varint(3) + Varint(100) + Byte(4) + hkv.SerializeAsString();
  const std::string answer =
      std::string("a") + Varint(99) + server::EncodeResult(absl::OkStatus(), &pr);
  Write("peer_message", "live-channels",
        Byte(2) + Lp(forward) + Lp(hash) + Lp(answer) +
            Lp("r" + raft::EncodeMessage(m)));
}

std::string Rec(int kind, const google::protobuf::MessageLite& m) {
  return Byte(kind) + Lp(m.SerializeAsString());
}

void ClientSeeds() {
  // Kinds index fuzz/client_request_fuzz.cc's kRequests.
  enum {
    kRange = 0, kPut = 1, kDelete = 2, kTxn = 3, kCompact = 4,
    kLeaseGrant = 5, kLeaseRevoke = 6, kKeepAlive = 7, kTtl = 8,
    kMemberList = 10, kAlarm = 14, kStatus = 15, kHashKV = 17,
    kAuthEnable = 20, kUserAdd = 24, kUserGrantRole = 29, kRoleAdd = 31,
    kRoleGrant = 35,
  };
  pb::PutRequest put;
  put.set_key("foo");
  put.set_value("bar");
  pb::RangeRequest range;
  range.set_key("foo");
  range.set_range_end("fop");
  pb::DeleteRangeRequest del;
  del.set_key("foo");
  del.set_prev_kv(true);
  Write("client_request", "kv", Rec(kPut, put) + Rec(kRange, range) +
                                    Rec(kDelete, del) + Rec(kRange, range));
  pb::TxnRequest txn;
  auto* c = txn.add_compare();
  c->set_key("foo");
  c->set_target(pb::Compare::VERSION);
  c->set_result(pb::Compare::EQUAL);
  c->set_version(1);
  *txn.add_success()->mutable_request_put() = put;
  *txn.add_failure()->mutable_request_range() = range;
  pb::CompactionRequest compact;
  compact.set_revision(2);
  Write("client_request", "txn",
        Rec(kPut, put) + Rec(kTxn, txn) + Rec(kCompact, compact));
  pb::LeaseGrantRequest grant;
  grant.set_id(7);
  grant.set_ttl(30);
  pb::PutRequest leased = put;
  leased.set_lease(7);
  pb::LeaseKeepAliveRequest ka;
  ka.set_id(7);
  pb::LeaseTimeToLiveRequest ttl;
  ttl.set_id(7);
  ttl.set_keys(true);
  pb::LeaseRevokeRequest revoke;
  revoke.set_id(7);
  Write("client_request", "lease",
        Rec(kLeaseGrant, grant) + Rec(kPut, leased) + Rec(kKeepAlive, ka) +
            Rec(kTtl, ttl) + Rec(kLeaseRevoke, revoke));
  pb::AuthUserAddRequest root;
  root.set_name("root");
  root.set_password("pw");
  pb::AuthUserGrantRoleRequest grant_root;
  grant_root.set_user("root");
  grant_root.set_role("root");
  pb::AuthRoleAddRequest role;
  role.set_name("reader");
  pb::AuthRoleGrantPermissionRequest perm;
  perm.set_name("reader");
  perm.mutable_perm()->set_permtype(authpb::Permission::READWRITE);
  perm.mutable_perm()->set_key("foo");
  Write("client_request", "auth",
        Rec(kUserAdd, root) + Rec(kUserGrantRole, grant_root) +
            Rec(kRoleAdd, role) + Rec(kRoleGrant, perm) +
            Rec(kAuthEnable, pb::AuthEnableRequest()) + Rec(kPut, put));
  pb::AlarmRequest alarm;
  alarm.set_action(pb::AlarmRequest::ACTIVATE);
  alarm.set_memberid(1);
  alarm.set_alarm(pb::NOSPACE);
  Write("client_request", "maintenance",
        Rec(kMemberList, pb::MemberListRequest()) +
            Rec(kStatus, pb::StatusRequest()) +
            Rec(kHashKV, pb::HashKVRequest()) + Rec(kAlarm, alarm) +
            Rec(kPut, put));
  std::string direct;
  for (const auto& cmd : SampleCommands()) direct += Rec(0xf0, cmd);
  Write("client_request", "apply-direct", direct);
}

void TxnSeeds() {
  const std::string setup = Byte(3) + Lp("a") + Lp("1") + Lp("b") + Lp("2") +
                            Lp("c") + Lp("3");
  const pb::Compare::CompareTarget targets[] = {
      pb::Compare::VALUE, pb::Compare::CREATE, pb::Compare::MOD,
      pb::Compare::VERSION, pb::Compare::LEASE};
  int n = 0;
  for (auto target : targets) {
    pb::TxnRequest t;
    auto* c = t.add_compare();
    c->set_key("a");
    if (n % 2 == 1) c->set_range_end(std::string(1, '\0'));
    c->set_target(target);
    c->set_result(static_cast<pb::Compare::CompareResult>(n % 4));
    switch (target) {
      case pb::Compare::VALUE: c->set_value("1"); break;
      case pb::Compare::CREATE: c->set_create_revision(2); break;
      case pb::Compare::MOD: c->set_mod_revision(3); break;
      case pb::Compare::VERSION: c->set_version(1); break;
      default: c->set_lease(0); break;
    }
    t.add_success()->mutable_request_put()->set_key("d");
    t.add_failure()->mutable_request_range()->set_key("a");
    auto* nested = t.add_success()->mutable_request_txn();
    nested->add_compare()->set_key("zz");
    nested->add_success()->mutable_request_delete_range()->set_key("b");
    Write("txn_compare", "compare-" + std::to_string(n),
          setup + Byte(n) + t.SerializeAsString());
    ++n;
  }
  pb::TxnRequest ro;
  ro.add_compare()->set_key("b");
  auto* r = ro.add_success()->mutable_request_range();
  r->set_key("a");
  r->set_range_end("z");
  ro.add_failure()->mutable_request_range()->set_key("c");
  Write("txn_compare", "read-only", setup + Byte(1) + ro.SerializeAsString());
}

void ConfigSeeds() {
  Write("config", "yaml",
        Byte(0) +
            "name: 'm1'\n"
            "data-dir: /tmp/m1.etcd\n"
            "listen-client-urls: http://127.0.0.1:2379\n"
            "advertise-client-urls: http://127.0.0.1:2379\n"
            "listen-peer-urls: http://127.0.0.1:2380\n"
            "initial-advertise-peer-urls: http://127.0.0.1:2380\n"
            "initial-cluster: m1=http://127.0.0.1:2380,m2=http://127.0.0.2:2380\n"
            "initial-cluster-state: new\n"
            "heartbeat-interval: 100\n"
            "election-timeout: 1000\n"
            "max-request-bytes: 1572864\n"
            "auto-compaction-mode: periodic\n"
            "auto-compaction-retention: \"1h\"\n"
            "client-transport-security:\n"
            "  cert-file: /tmp/c.pem\n"
            "  key-file: /tmp/k.pem\n"
            "  client-cert-auth: true\n"
            "  trusted-ca-file: /tmp/ca.pem\n"
            "peer-transport-security:\n"
            "  auto-tls: true\n"
            "log-outputs: [stderr]\n"
            "cipher-suites: [TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256]\n");
  Write("config", "yaml-bad-type", Byte(0) + "heartbeat-interval: abc\n");
  Write("config", "flags",
        Byte(1) +
            "--name=m2\n--listen-client-urls=http://127.0.0.1:2379,"
            "unix://s:1\n--max-txn-ops=64\n--quota-backend-bytes=1000000\n"
            "--auth-token=jwt,pub-key=a,priv-key=b,sign-method=RS256\n"
            "--initial-cluster=m2=http://127.0.0.1:2380\n"
            "ETCD_SNAPSHOT_COUNT=100\nETCD_UNKNOWN=1\n--tls-min-version=TLS1.2\n");
  Write("config", "flags-help", Byte(1) + "--help\n");
  Write("config", "flags-bad", Byte(1) + "--max-concurrent-streams=abc\n-x\n");
}

void AuthTokenSeeds() {
  Write("auth_token", "simple", Byte(0) + "abcdefghijklmnop.7");
  Write("auth_token", "jwt-shaped",
        Byte(0) + "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJ1c2VybmFtZSI6ImIifQ.c2ln");
  Write("auth_token", "issue", Byte(1) + Varint(3) + "alice");
  Write("auth_token", "issue-odd-name",
        Byte(1) + Varint(uint64_t{1} << 62) + "r\xc3\xb6ot \"q\" \\ \x01");
  Write("auth_token", "claims",
        Byte(2) + "{\"alg\":\"HS256\",\"typ\":\"JWT\"}\n"
                  "{\"exp\":1800000000,\"revision\":5,\"username\":\"bob\"}");
}

}  // namespace
}  // namespace detcd::fuzz

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s fuzz/corpus\n", argv[0]);
    return 2;
  }
  detcd::fuzz::g_root = argv[1];
  detcd::fuzz::WalSeeds();
  detcd::fuzz::SnapshotSeeds();
  detcd::fuzz::PeerSeeds();
  detcd::fuzz::ClientSeeds();
  detcd::fuzz::TxnSeeds();
  detcd::fuzz::ConfigSeeds();
  detcd::fuzz::AuthTokenSeeds();
  std::printf("seed corpora written under %s\n", argv[1]);
  return 0;
}
