// etcd's space quota and alarms (etcdserver/quota.go, api/v3alarm, the
// alarm parts of apply.go).
//
// The quota: a write is let in only if the database would stay below
// --quota-backend-bytes after it. etcd compares its bolt file's size plus
// a request's cost (below) with the quota; we compare our estimate of that
// file's size (EtcdStateMachine::db_size, documented there). Refused
// writes fail with ErrNoSpace and the member raises a NOSPACE alarm for
// itself through raft.
//
// The alarms: a replicated set of (member, type) pairs. While a NOSPACE
// alarm is active anywhere in the cluster, applying a Put, a Txn whose
// success or failure branch puts, or a LeaseGrant fails with ErrNoSpace;
// deletes, compactions, ranges and revokes still work, so an operator can
// free space, compact, defragment and disarm. While a CORRUPT alarm is
// active, applying Put, DeleteRange, Txn, Compaction, LeaseGrant,
// LeaseRevoke or a proposed Range fails with ErrCorrupt.
//
// Where this differs from etcd 3.4/3.5 (both only matter at the quota):
//  - etcd also checks the quota when applying a write and then answers a
//    write it applied with ErrNoSpace; that check reads the member's own
//    file size, so it is not deterministic, and we leave it out: a write
//    that passed the member's check before proposing is applied and
//    acknowledged, and the next write meets the quota there.
//  - etcd's rules for CORRUPT and NOSPACE together depend on the order
//    they were raised and cleared in; ours are the rules etcd applies
//    after a restart: CORRUPT wins while it is active, else NOSPACE.
#ifndef DETCD_ENGINE_SERVER_QUOTA_H_
#define DETCD_ENGINE_SERVER_QUOTA_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/container/btree_set.h"
#include "absl/status/status.h"
#include "etcdserverpb/rpc.pb.h"

namespace detcd::server {

// etcd's DefaultQuotaBytes (2 GiB) and its recommended maximum (8 GiB).
inline constexpr int64_t kDefaultQuotaBytes = int64_t{2} << 30;
inline constexpr int64_t kMaxQuotaBytes = int64_t{8} << 30;

// The quota in effect for --quota-backend-bytes `configured`: 0 means
// etcd's default, a negative value no quota at all (returns 0).
int64_t EffectiveQuotaBytes(int64_t configured);

// etcd's request costs: a put costs 256 + len(key) + len(value); a txn
// the larger of its success and failure branches' top-level puts (puts
// in nested txns cost nothing, as in etcd); a lease grant 64. Everything
// else costs 0 and always fits.
int64_t QuotaCost(const etcdserverpb::PutRequest& r);
int64_t QuotaCost(const etcdserverpb::TxnRequest& r);
int64_t QuotaCost(const etcdserverpb::LeaseGrantRequest& r);
// etcd's backendQuota.Available: cost 0, no quota (quota_bytes 0), or
// db_size + cost < quota_bytes.
bool QuotaAvailable(int64_t quota_bytes, int64_t db_size, int64_t cost);

// The replicated alarm set (etcd's AlarmStore).
class AlarmSet {
 public:
  // Activate: etcd answers with the alarm, whether new or already raised.
  etcdserverpb::AlarmMember Activate(uint64_t member,
                                     etcdserverpb::AlarmType type);
  // Deactivate: false if there was no such alarm.
  bool Deactivate(uint64_t member, etcdserverpb::AlarmType type);
  // Alarms of `type` (NONE: all), ordered by type, then member.
  std::vector<etcdserverpb::AlarmMember> Get(
      etcdserverpb::AlarmType type) const;
  bool Has(etcdserverpb::AlarmType type) const;
  bool Has(uint64_t member, etcdserverpb::AlarmType type) const;
  size_t size() const { return alarms_.size(); }

  // Image: varint(n) then n x (varint(type) varint(member)), ascending.
  std::string Snapshot() const;
  absl::Status Restore(std::string_view image);  // nothing changes on error

 private:
  // (type, member); a type outside the enum is kept as its number.
  absl::btree_set<std::pair<int, uint64_t>> alarms_;
};

// Applies an AlarmRequest (etcd's applierV3backend.Alarm): GET lists the
// alarms of the type (NONE: all); ACTIVATE / DEACTIVATE answer with the
// alarm they raised or cleared (nothing when deactivating an absent one).
// An unknown action changes nothing and answers with no alarms.
etcdserverpb::AlarmResponse ApplyAlarm(AlarmSet& alarms,
                                       const etcdserverpb::AlarmRequest& r);

// An alarm as etcd's Status lists it in `errors`: Go's compact protobuf
// text, "memberID:9372538179322589801 alarm:NOSPACE " (decimal id, enum
// name, a space after each field); zero fields are left out, as Go's
// proto3 text format does, and an enum number without a name is printed
// as the number.
std::string AlarmText(const etcdserverpb::AlarmMember& a);

}  // namespace detcd::server

#endif  // DETCD_ENGINE_SERVER_QUOTA_H_
