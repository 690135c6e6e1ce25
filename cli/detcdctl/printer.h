// etcdctl's output formats (-w simple|json|fields|protobuf|table), one
// method per kind of result, each writing exactly what etcdctl 3.4's
// printer of that format writes, including its refusals ("table not
// supported as output format", exit 4) and the few places where etcdctl
// crashes on a response (reproduced: same text, same exit code, so
// scripts see the same thing).
#ifndef DETCD_CLI_DETCDCTL_PRINTER_H_
#define DETCD_CLI_DETCDCTL_PRINTER_H_

#include <cstdint>
#include <string>
#include <vector>

#include "etcdserverpb/rpc.pb.h"

namespace detcd::ctl {

enum class OutFormat { kSimple, kFields, kJson, kProtobuf, kTable };

struct EpHealth {
  std::string ep;
  bool health = false;
  std::string took;
  std::string error;
};
struct EpStatus {
  std::string ep;
  etcdserverpb::StatusResponse resp;
};
struct EpHashKV {
  std::string ep;
  etcdserverpb::HashKVResponse resp;
};
// snapshot status: etcd's snapshot.Status.
struct DbStatus {
  uint32_t hash = 0;
  int64_t revision = 0;
  int64_t total_key = 0;
  int64_t total_size = 0;
};

class Printer {
 public:
  Printer(OutFormat format, bool hex) : format_(format), hex_(hex) {}
  OutFormat format() const { return format_; }
  // get --print-value-only (simple format only).
  void set_value_only(bool v) { value_only_ = v; }

  void Del(const etcdserverpb::DeleteRangeResponse& r);
  void Get(const etcdserverpb::RangeResponse& r);
  void Put(const etcdserverpb::PutResponse& r);
  void Txn(const etcdserverpb::TxnResponse& r);
  // clientv3's view of a watch response (events of fragments merged).
  void Watch(const etcdserverpb::WatchResponse& r);
  void Grant(const etcdserverpb::LeaseGrantResponse& r);
  void Revoke(int64_t id, const etcdserverpb::LeaseRevokeResponse& r);
  void KeepAlive(const etcdserverpb::LeaseKeepAliveResponse& r);
  void TimeToLive(const etcdserverpb::LeaseTimeToLiveResponse& r, bool keys);
  void Leases(const etcdserverpb::LeaseLeasesResponse& r);
  void MemberAdd(const etcdserverpb::MemberAddResponse& r);
  void MemberRemove(uint64_t id, const etcdserverpb::MemberRemoveResponse& r);
  void MemberUpdate(uint64_t id, const etcdserverpb::MemberUpdateResponse& r);
  void MemberPromote(uint64_t id,
                     const etcdserverpb::MemberPromoteResponse& r);
  void MemberList(const etcdserverpb::MemberListResponse& r);
  void EndpointHealth(const std::vector<EpHealth>& hs);
  void EndpointStatus(const std::vector<EpStatus>& ss);
  void EndpointHashKV(const std::vector<EpHashKV>& hs);
  void MoveLeader(uint64_t leader, uint64_t target,
                  const etcdserverpb::MoveLeaderResponse& r);
  void Alarm(const etcdserverpb::AlarmResponse& r);
  void DBStatus(const DbStatus& s);
  void RoleAdd(const std::string& role, const etcdserverpb::AuthRoleAddResponse& r);
  void RoleGet(const std::string& role, const etcdserverpb::AuthRoleGetResponse& r);
  void RoleDelete(const std::string& role,
                  const etcdserverpb::AuthRoleDeleteResponse& r);
  void RoleList(const etcdserverpb::AuthRoleListResponse& r);
  void RoleGrantPermission(const std::string& role,
                           const etcdserverpb::AuthRoleGrantPermissionResponse& r);
  void RoleRevokePermission(
      const std::string& role, const std::string& key, const std::string& end,
      const etcdserverpb::AuthRoleRevokePermissionResponse& r);
  void UserAdd(const std::string& user, const etcdserverpb::AuthUserAddResponse& r);
  void UserGet(const std::string& user, const etcdserverpb::AuthUserGetResponse& r);
  void UserList(const etcdserverpb::AuthUserListResponse& r);
  void UserChangePassword(const etcdserverpb::AuthUserChangePasswordResponse& r);
  void UserGrantRole(const std::string& user, const std::string& role,
                     const etcdserverpb::AuthUserGrantRoleResponse& r);
  void UserRevokeRole(const std::string& user, const std::string& role,
                      const etcdserverpb::AuthUserRevokeRoleResponse& r);
  void UserDelete(const std::string& user,
                  const etcdserverpb::AuthUserDeleteResponse& r);

 private:
  // printerUnsupported: "<format> not supported as output format", exit 4.
  [[noreturn]] void Unsupported();
  void Kv(const mvccpb::KeyValue& kv);  // simple printer's printKV

  OutFormat format_;
  bool hex_;
  bool value_only_ = false;
};

// clientv3.GetPrefixRangeEnd.
std::string PrefixRangeEnd(const std::string& key);

}  // namespace detcd::ctl

#endif  // DETCD_CLI_DETCDCTL_PRINTER_H_
