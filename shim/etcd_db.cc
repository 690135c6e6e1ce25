#include "shim/etcd_db.h"

#include <algorithm>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"
#include "authpb/auth.pb.h"
#include "engine/auth/auth_store.h"
#include "engine/lease/lessor.h"
#include "engine/mvcc/kv_store.h"
#include "engine/util/coding.h"
#include "mvccpb/kv.pb.h"
#include "shim/bolt.h"

namespace detcd::shim {

namespace {

constexpr size_t kRevBytes = 17;  // main, '_', sub

absl::Status Bad(absl::string_view what) {
  return absl::DataLossError(absl::StrCat("etcd db: ", what));
}

uint64_t BigEndian64(absl::string_view b) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | static_cast<unsigned char>(b[i]);
  return v;
}

struct Rev {
  int64_t main = 0;
  int64_t sub = 0;
};

bool ParseRev(absl::string_view b, Rev* r) {
  if (b.size() < kRevBytes || b[8] != '_') return false;
  const uint64_t main = BigEndian64(b.substr(0, 8));
  const uint64_t sub = BigEndian64(b.substr(9, 8));
  if (main > static_cast<uint64_t>(INT64_MAX) ||
      sub > static_cast<uint64_t>(INT64_MAX)) {
    return false;
  }
  r->main = static_cast<int64_t>(main);
  r->sub = static_cast<int64_t>(sub);
  return true;
}

// One record of the "key" bucket.
struct Record {
  Rev rev;
  bool tombstone = false;
  std::string key;
  std::string value;
  int64_t create_revision = 0;
  int64_t version = 0;
  int64_t lease = 0;
};

// leasepb.Lease {int64 ID = 1; int64 TTL = 2; int64 RemainingTTL = 3;}: a
// protobuf message of three varint fields (others skipped).
struct LeaseRecord {
  int64_t id = 0;
  int64_t ttl = 0;
  int64_t remaining_ttl = 0;
};

bool ParseLease(absl::string_view b, LeaseRecord* l) {
  coding::Reader r(std::string_view(b.data(), b.size()));
  while (!r.empty()) {
    uint64_t tag = 0;
    if (!r.GetVarint64(&tag)) return false;
    const uint64_t field = tag >> 3;
    uint64_t v = 0;
    std::string skipped;
    switch (tag & 7) {
      case 0:
        if (!r.GetVarint64(&v)) return false;
        if (field == 1) l->id = static_cast<int64_t>(v);
        if (field == 2) l->ttl = static_cast<int64_t>(v);
        if (field == 3) l->remaining_ttl = static_cast<int64_t>(v);
        break;
      case 2:
        if (!r.GetLengthPrefixed(&skipped)) return false;
        break;
      case 1:
      case 5:
        for (int i = 0; i < ((tag & 7) == 1 ? 8 : 4); ++i) {
          uint8_t byte;
          if (!r.GetByte(&byte)) return false;
        }
        break;
      default:
        return false;
    }
  }
  return true;
}

// The later of meta's finished and scheduled compaction revisions (0 if
// neither).
absl::StatusOr<int64_t> CompactRevision(const BoltReader& db) {
  int64_t finished = 0, scheduled = 0;
  bool bad = false;
  absl::Status s = db.ForEachIn(
      "meta", [&](absl::string_view k, absl::string_view v) {
        if (k != "finishedCompactRev" && k != "scheduledCompactRev") return;
        Rev r;
        if (!ParseRev(v, &r)) {
          bad = true;
          return;
        }
        (k == "finishedCompactRev" ? finished : scheduled) = r.main;
      });
  if (absl::IsNotFound(s)) return 0;  // a db that never compacted may lack it
  if (!s.ok()) return s;
  if (bad) return Bad("bad compaction revision in the meta bucket");
  return std::max(finished, scheduled);
}

// KvStore's image (the format documented in engine/mvcc/kv_store.cc
// and validated by KvStore::Restore: records in revision order, every
// revision above the compaction present, one put per key at or below it).
std::string EncodeKvImage(int64_t current, int64_t compact,
                          const std::vector<const Record*>& records) {
  std::string out = "dmvc";
  out.push_back(static_cast<char>(mvcc::KvStore::kImageFormatVersion));
  coding::PutVarint64(&out, static_cast<uint64_t>(current));
  coding::PutVarint64(&out, compact > 0 ? static_cast<uint64_t>(compact) + 1
                                        : 0);
  coding::PutVarint64(&out, records.size());
  for (const Record* r : records) {
    coding::PutVarint64(&out, static_cast<uint64_t>(r->rev.main));
    coding::PutVarint64(&out, static_cast<uint64_t>(r->rev.sub));
    out.push_back(r->tombstone ? 1 : 0);
    coding::PutLengthPrefixed(&out, r->key);
    if (r->tombstone) continue;
    coding::PutLengthPrefixed(&out, r->value);
    coding::PutVarint64(&out, static_cast<uint64_t>(r->create_revision));
    coding::PutVarint64(&out, static_cast<uint64_t>(r->version));
    coding::PutVarint64(&out, static_cast<uint64_t>(r->lease));
  }
  coding::PutFixed32(&out, mvcc::KvStore::ImageChecksum(out));
  return out;
}

// A user or role name in a message.
std::string Quoted(absl::string_view name) {
  return absl::StrCat("\"", absl::CHexEscape(name), "\"");
}

// The users (or roles) of an auth bucket: each value an M named by its key.
template <typename M>
absl::Status ReadAuthEntries(const BoltReader& db, absl::string_view bucket,
                             absl::string_view what, std::vector<M>* out) {
  absl::Status bad;
  absl::Status s =
      db.ForEachIn(bucket, [&](absl::string_view k, absl::string_view v) {
        if (!bad.ok()) return;
        M m;
        if (!m.ParseFromArray(v.data(), static_cast<int>(v.size())) ||
            m.name() != k) {
          bad = Bad(absl::StrCat("undecodable ", what, " ", Quoted(k),
                                 " in the ", bucket, " bucket"));
          return;
        }
        out->push_back(std::move(m));
      });
  if (!s.ok() && !absl::IsNotFound(s)) return s;
  return bad;
}

// The auth store's image (engine/auth/auth_store.h), built by the store
// itself (AuthStore::FromContents) from etcd's auth buckets.
absl::StatusOr<std::string> AuthImage(const BoltReader& db) {
  bool enabled = false;
  uint64_t revision = 0;
  absl::Status bad;
  absl::Status s =
      db.ForEachIn("auth", [&](absl::string_view k, absl::string_view v) {
        if (!bad.ok()) return;
        if (k == "authEnabled") {
          // etcd takes anything but {1} for disabled; a damaged flag is
          // refused here rather than opening the cluster to everyone.
          if (v.size() != 1 || static_cast<unsigned char>(v[0]) > 1) {
            bad = Bad("bad authEnabled flag in the auth bucket");
            return;
          }
          enabled = v[0] == 1;
        } else if (k == "authRevision") {
          if (v.size() != 8) {
            bad = Bad("bad authRevision in the auth bucket");
            return;
          }
          revision = BigEndian64(v);
        }
      });
  if (!s.ok() && !absl::IsNotFound(s)) return s;
  if (!bad.ok()) return bad;
  std::vector<authpb::User> users;
  if (absl::Status s = ReadAuthEntries(db, "authUsers", "user", &users);
      !s.ok()) {
    return s;
  }
  std::vector<authpb::Role> roles;
  if (absl::Status s = ReadAuthEntries(db, "authRoles", "role", &roles);
      !s.ok()) {
    return s;
  }
  // etcd starts a store it finds without a revision (or at 0) at 1.
  absl::StatusOr<auth::AuthStore> as =
      auth::AuthStore::FromContents(enabled, std::max<uint64_t>(revision, 1),
                                    std::move(users), std::move(roles));
  if (!as.ok()) return Bad(as.status().message());
  return as->Snapshot();
}

}  // namespace

absl::StatusOr<EtcdDbImport> ImportEtcdDb(std::string data) {
  absl::StatusOr<BoltReader> db = BoltReader::Open(std::move(data));
  if (!db.ok()) return db.status();
  EtcdDbImport out;
  absl::StatusOr<int64_t> compact = CompactRevision(*db);
  if (!compact.ok()) return compact.status();

  std::vector<Record> records;
  absl::Status parse;
  absl::Status s = db->ForEachIn(
      "key", [&](absl::string_view k, absl::string_view v) {
        if (!parse.ok()) return;
        Record r;
        if (!ParseRev(k, &r.rev) ||
            !(k.size() == kRevBytes ||
              (k.size() == kRevBytes + 1 && k[kRevBytes] == 't'))) {
          parse = Bad(absl::StrCat("bad revision key of ", k.size(),
                                   " bytes in the key bucket"));
          return;
        }
        r.tombstone = k.size() == kRevBytes + 1;
        mvccpb::KeyValue kv;
        if (!kv.ParseFromArray(v.data(), static_cast<int>(v.size()))) {
          parse = Bad(absl::StrFormat("undecodable key-value at revision %d",
                                      r.rev.main));
          return;
        }
        if (r.rev.main < 2 || r.rev.sub >= UINT32_MAX ||
            (!r.tombstone && kv.mod_revision() != r.rev.main)) {
          parse = Bad(absl::StrFormat("bad revision %d_%d", r.rev.main,
                                      r.rev.sub));
          return;
        }
        r.key = kv.key();
        if (!r.tombstone) {
          r.value = kv.value();
          r.create_revision = kv.create_revision();
          r.version = kv.version();
          r.lease = kv.lease();
        }
        records.push_back(std::move(r));
      });
  if (absl::IsNotFound(s)) return Bad("no key bucket (not an etcd v3 db)");
  if (!s.ok()) return s;
  if (!parse.ok()) return parse;

  // At or below the compaction: each key's latest revision, if a put.
  std::map<std::string, size_t> latest_old;
  for (size_t i = 0; i < records.size(); ++i) {
    if (records[i].rev.main <= *compact) latest_old[records[i].key] = i;
  }
  std::vector<const Record*> kept;
  std::map<std::string, Record*> last;  // each key's newest kept record
  for (size_t i = 0; i < records.size(); ++i) {
    Record& r = records[i];
    if (r.rev.main <= *compact &&
        (r.tombstone || latest_old[r.key] != i)) {
      continue;
    }
    kept.push_back(&r);
    last[r.key] = &r;
  }
  out.compact_revision = *compact;
  out.revision = std::max<int64_t>(
      {int64_t{1}, *compact, records.empty() ? 0 : records.back().rev.main});
  out.revisions = static_cast<int64_t>(kept.size());

  lease::LessorOptions lo;
  lo.min_ttl_s = 1;  // keep etcd's TTLs; the server applies its own minimum
  lease::Lessor lessor(lo);
  absl::Status lease_error;
  s = db->ForEachIn("lease", [&](absl::string_view k, absl::string_view v) {
    if (!lease_error.ok()) return;
    LeaseRecord l;
    if (k.size() != 8 || !ParseLease(v, &l) ||
        l.id != static_cast<int64_t>(BigEndian64(k))) {
      lease_error = Bad("undecodable lease");
      return;
    }
    absl::StatusOr<int64_t> granted =
        lessor.Grant(l.id, std::max<int64_t>(1, l.ttl), 0);
    if (!granted.ok()) {
      lease_error = Bad(absl::StrFormat("lease %016x: %s", l.id,
                                        granted.status().message()));
      return;
    }
    if (l.remaining_ttl > 0 && l.remaining_ttl <= lease::kMaxLeaseTtlS) {
      lessor.Checkpoint(l.id, l.remaining_ttl, 0);
    }
    ++out.leases;
  });
  if (!s.ok() && !absl::IsNotFound(s)) return s;
  if (!lease_error.ok()) return lease_error;
  for (auto& [key, r] : last) {
    if (r->tombstone || r->lease == 0) continue;
    if (!lessor.Attach(r->lease, key).ok()) {
      out.warnings.push_back(absl::StrFormat(
          "key %s: its lease %016x is not in the snapshot; imported without "
          "a lease",
          key, r->lease));
      r->lease = 0;
    }
  }
  out.data.kv_image = EncodeKvImage(out.revision, *compact, kept);
  out.data.lessor_image = lessor.Snapshot();
  absl::StatusOr<std::string> auth_image = AuthImage(*db);
  if (!auth_image.ok()) return auth_image.status();
  out.data.auth_image = *std::move(auth_image);
  return out;
}

}  // namespace detcd::shim
