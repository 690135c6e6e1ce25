#include "shim/etcd_backend.h"

#include <map>
#include <memory>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "authpb/auth.pb.h"
#include "engine/auth/auth_store.h"
#include "engine/lease/lessor.h"
#include "engine/mvcc/kv_store.h"
#include "engine/server/etcd_server.h"
#include "engine/server/etcd_state_machine.h"
#include "engine/server/membership.h"
#include "engine/server/quota.h"
#include "engine/util/coding.h"
#include "etcdserverpb/rpc.pb.h"
#include "mvccpb/kv.pb.h"
#include "shim/config.h"
#include "shim/join.h"

namespace detcd::shim {
namespace {

std::string BigEndian64(uint64_t v) {
  std::string out(8, '\0');
  for (int i = 7; i >= 0; --i, v >>= 8) out[i] = static_cast<char>(v & 0xff);
  return out;
}

// etcd's revToBytes (+ markTombstone).
void RevisionKey(int64_t main, int64_t sub, bool tombstone, std::string* out) {
  *out = BigEndian64(static_cast<uint64_t>(main));
  out->push_back('_');
  out->append(BigEndian64(static_cast<uint64_t>(sub)));
  if (tombstone) out->push_back('t');
}

// The key bucket, decoded from the store's image record by record.
class KeyBucket : public BoltBucket {
 public:
  explicit KeyBucket(mvcc::KvStore::ImageReader r) : r_(std::move(r)) {}
  void Rewind() override { r_.Rewind(); }
  absl::StatusOr<bool> Next(absl::string_view* key,
                            absl::string_view* value) override {
    mvcc::KvStore::ImageRecord rec;
    absl::StatusOr<bool> more = r_.Next(&rec);
    if (!more.ok() || !*more) return more;
    RevisionKey(rec.main, rec.sub, rec.tombstone, &key_);
    kv_.Clear();
    kv_.set_key(rec.key.data(), rec.key.size());
    if (!rec.tombstone) {
      kv_.set_create_revision(rec.create_revision);
      kv_.set_mod_revision(rec.main);
      kv_.set_version(rec.version);
      kv_.set_value(rec.value.data(), rec.value.size());
      kv_.set_lease(rec.lease);
    }
    value_.clear();
    kv_.SerializeToString(&value_);
    *key = key_;
    *value = value_;
    return true;
  }

 private:
  mvcc::KvStore::ImageReader r_;
  mvccpb::KeyValue kv_;
  std::string key_, value_;
};

absl::Status Bad(const absl::Status& s) {
  return absl::DataLossError(
      absl::StrCat("snapshot image does not decode: ", s.message()));
}

}  // namespace

absl::StatusOr<BoltWriter> EtcdBackendFile(std::string_view image) {
  raft::SnapshotMetadata meta;
  std::string_view data;
  if (absl::Status s = server::DecodeSnapshotImageView(image, &meta, &data);
      !s.ok()) {
    return Bad(s);
  }
  absl::StatusOr<server::EtcdStateMachine::ImageSections> sec =
      server::EtcdStateMachine::SplitImage(data);
  if (!sec.ok()) return Bad(sec.status());
  absl::StatusOr<mvcc::KvStore::ImageReader> kv =
      mvcc::KvStore::ImageReader::Open(sec->kv);
  if (!kv.ok()) return Bad(kv.status());
  using Kvs = std::map<std::string, std::string>;
  Kvs meta_kvs, lease_kvs, members, removed, alarms, auth, users, roles;

  meta_kvs["consistent_index"] = BigEndian64(meta.index);
  if (kv->compact_revision() > 0) {
    std::string rev;
    RevisionKey(kv->compact_revision(), 0, false, &rev);
    meta_kvs["scheduledCompactRev"] = rev;
    meta_kvs["finishedCompactRev"] = rev;
  }

  lease::LessorOptions lo;
  lo.min_ttl_s = 1;  // the TTLs as they are
  lease::Lessor lessor(lo);
  if (absl::Status s = lessor.Restore(sec->lessor); !s.ok()) return Bad(s);
  for (int64_t id : lessor.Ids()) {
    absl::StatusOr<lease::Lessor::LeaseInfo> l = lessor.Get(id);
    if (!l.ok()) return Bad(l.status());
    // leasepb.Lease, fields in number order, zeros left out (gogo's).
    std::string pb;
    for (auto [tag, v] : {std::pair<char, int64_t>{0x08, l->id},
                          {0x10, l->ttl_s},
                          {0x18, l->remaining_ttl_s}}) {
      if (v == 0) continue;
      pb.push_back(tag);
      coding::PutVarint64(&pb, static_cast<uint64_t>(v));
    }
    lease_kvs[BigEndian64(static_cast<uint64_t>(id))] = std::move(pb);
  }

  server::Membership ms;
  if (absl::Status s = ms.Restore(sec->membership); !s.ok()) return Bad(s);
  for (const server::MemberInfo& m : ms.List()) {
    members[absl::StrCat(absl::Hex(m.id))] = PeerMemberJson(m);
  }
  for (uint64_t id : ms.removed_ids()) {
    removed[absl::StrCat(absl::Hex(id))] = "removed";
  }

  server::AlarmSet as;
  if (absl::Status s = as.Restore(sec->alarms); !s.ok()) return Bad(s);
  for (const etcdserverpb::AlarmMember& a : as.Get(etcdserverpb::NONE)) {
    alarms[a.SerializeAsString()] = "";
  }

  auth::AuthStore store;
  if (!sec->auth.empty()) {
    if (absl::Status s = store.Restore(sec->auth); !s.ok()) return Bad(s);
  }
  auth["authRevision"] = BigEndian64(store.revision());
  if (store.enabled()) auth["authEnabled"] = std::string(1, '\x01');
  for (const std::string& name : store.UserList()) {
    const authpb::User* u = store.FindUser(name);
    if (u != nullptr) users[name] = u->SerializeAsString();
  }
  for (const std::string& name : store.RoleList()) {
    absl::StatusOr<std::vector<authpb::Permission>> perms =
        store.RoleGet(name);
    if (!perms.ok()) return Bad(perms.status());
    authpb::Role r;
    r.set_name(name);
    for (const authpb::Permission& p : *perms) *r.add_keypermission() = p;
    roles[name] = r.SerializeAsString();
  }

  BoltWriter::Buckets b;
  auto add = [&](const char* name, Kvs kvs) {
    b.emplace_back(name, std::make_unique<BoltMapBucket>(std::move(kvs)));
  };
  add("alarm", std::move(alarms));
  add("auth", std::move(auth));
  add("authRoles", std::move(roles));
  add("authUsers", std::move(users));
  add("cluster", Kvs{{"clusterVersion", kClusterVersion}});
  b.emplace_back("key", std::make_unique<KeyBucket>(*std::move(kv)));
  add("lease", std::move(lease_kvs));
  add("members", std::move(members));
  add("members_removed", std::move(removed));
  add("meta", std::move(meta_kvs));
  // bbolt's txid: any after the file's creation (etcd's are large).
  return BoltWriter::Make(std::move(b), meta.index + 2);
}

}  // namespace detcd::shim
