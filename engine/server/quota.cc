#include "engine/server/quota.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "engine/util/coding.h"

namespace detcd::server {
namespace {

namespace pb = ::etcdserverpb;

// etcd's kvOverhead and leaseOverhead.
constexpr int64_t kPutOverheadBytes = 256;
constexpr int64_t kLeaseOverheadBytes = 64;
// Bound for decoding images: a corrupt count must not allocate without end.
constexpr uint64_t kMaxAlarms = 1 << 20;

int64_t OpsCost(
    const google::protobuf::RepeatedPtrField<pb::RequestOp>& ops) {
  int64_t n = 0;
  for (const pb::RequestOp& op : ops) {
    if (op.request_case() == pb::RequestOp::kRequestPut) {
      n += QuotaCost(op.request_put());
    }
  }
  return n;
}

}  // namespace

int64_t EffectiveQuotaBytes(int64_t configured) {
  if (configured < 0) return 0;
  return configured == 0 ? kDefaultQuotaBytes : configured;
}

int64_t QuotaCost(const pb::PutRequest& r) {
  return kPutOverheadBytes + static_cast<int64_t>(r.key().size()) +
         static_cast<int64_t>(r.value().size());
}

int64_t QuotaCost(const pb::TxnRequest& r) {
  return std::max(OpsCost(r.success()), OpsCost(r.failure()));
}

int64_t QuotaCost(const pb::LeaseGrantRequest&) { return kLeaseOverheadBytes; }

bool QuotaAvailable(int64_t quota_bytes, int64_t db_size, int64_t cost) {
  return cost == 0 || quota_bytes <= 0 || db_size + cost < quota_bytes;
}

pb::AlarmMember AlarmSet::Activate(uint64_t member, pb::AlarmType type) {
  alarms_.emplace(static_cast<int>(type), member);
  pb::AlarmMember m;
  m.set_memberid(member);
  m.set_alarm(type);
  return m;
}

bool AlarmSet::Deactivate(uint64_t member, pb::AlarmType type) {
  return alarms_.erase({static_cast<int>(type), member}) > 0;
}

std::vector<pb::AlarmMember> AlarmSet::Get(pb::AlarmType type) const {
  std::vector<pb::AlarmMember> out;
  for (const auto& [t, member] : alarms_) {
    if (type != pb::NONE && t != static_cast<int>(type)) continue;
    pb::AlarmMember m;
    m.set_memberid(member);
    m.set_alarm(static_cast<pb::AlarmType>(t));
    out.push_back(std::move(m));
  }
  return out;
}

bool AlarmSet::Has(pb::AlarmType type) const {
  auto it = alarms_.lower_bound({static_cast<int>(type), 0});
  return it != alarms_.end() && it->first == static_cast<int>(type);
}

bool AlarmSet::Has(uint64_t member, pb::AlarmType type) const {
  return alarms_.contains({static_cast<int>(type), member});
}

std::string AlarmSet::Snapshot() const {
  std::string out;
  coding::PutVarint64(&out, alarms_.size());
  for (const auto& [t, member] : alarms_) {
    // Enum numbers are int32 on the wire; keep negative ones intact.
    coding::PutVarint64(&out, static_cast<uint32_t>(t));
    coding::PutVarint64(&out, member);
  }
  return out;
}

absl::Status AlarmSet::Restore(std::string_view image) {
  coding::Reader r(image);
  uint64_t n = 0;
  if (!r.GetVarint64(&n) || n > kMaxAlarms) {
    return absl::DataLossError("alarm snapshot: corrupt");
  }
  absl::btree_set<std::pair<int, uint64_t>> alarms;
  for (uint64_t i = 0; i < n; ++i) {
    uint64_t t = 0, member = 0;
    if (!r.GetVarint64(&t) || t > 0xffffffffu || !r.GetVarint64(&member)) {
      return absl::DataLossError("alarm snapshot: corrupt");
    }
    alarms.emplace(static_cast<int>(static_cast<uint32_t>(t)), member);
  }
  if (!r.empty()) return absl::DataLossError("alarm snapshot: trailing bytes");
  alarms_ = std::move(alarms);
  return absl::OkStatus();
}

pb::AlarmResponse ApplyAlarm(AlarmSet& alarms, const pb::AlarmRequest& r) {
  pb::AlarmResponse resp;
  switch (r.action()) {
    case pb::AlarmRequest::GET:
      for (pb::AlarmMember& m : alarms.Get(r.alarm())) {
        *resp.add_alarms() = std::move(m);
      }
      break;
    case pb::AlarmRequest::ACTIVATE:
      *resp.add_alarms() = alarms.Activate(r.memberid(), r.alarm());
      break;
    case pb::AlarmRequest::DEACTIVATE:
      if (alarms.Deactivate(r.memberid(), r.alarm())) {
        pb::AlarmMember* m = resp.add_alarms();
        m->set_memberid(r.memberid());
        m->set_alarm(r.alarm());
      }
      break;
    default:
      break;
  }
  return resp;
}

std::string AlarmText(const pb::AlarmMember& a) {
  std::string out;
  if (a.memberid() != 0) absl::StrAppend(&out, "memberID:", a.memberid(), " ");
  if (a.alarm() != pb::NONE) {
    const std::string& name = pb::AlarmType_Name(a.alarm());
    absl::StrAppend(&out, "alarm:",
                    name.empty() ? absl::StrCat(static_cast<int>(a.alarm()))
                                 : name,
                    " ");
  }
  return out;
}

}  // namespace detcd::server
