// Every client request through the engine's request path: validation,
// proposal, raft, the WAL, apply and the response, on a fresh one-member
// cluster (one_member.h), as the real server's gRPC services call it.
//
// Input: up to kMaxRequests records, each
//   byte(kind) varint(n) n bytes
// where the bytes are the request's protobuf encoding (etcdserverpb) and
// kind picks the method (kind % the number of methods in kRequests); a kind
// >= 0xf0 instead applies the bytes as a committed InternalRaftRequest
// straight to a scratch EtcdStateMachine (what a corrupt or hostile log
// entry would do; the state machine must refuse, not crash).
// Oracles: the member stays up, the safety checker finds nothing, the
// member still answers a linearizable read, and the scratch state
// machine's snapshot image restores to the same image.
#include <cstdlib>
#include <string>
#include <vector>

#include "engine/server/etcd_state_machine.h"
#include "engine/util/coding.h"
#include "etcdserverpb/rpc.pb.h"
#include "fuzz/fuzz_target.h"
#include "fuzz/quiet_protobuf.h"
#include "fuzz/one_member.h"

namespace detcd::fuzz {
namespace {

namespace pb = etcdserverpb;
using server::EtcdServer;

constexpr int kMaxRequests = 8;

// Parses the request and runs it; a request that does not parse is
// skipped (the gRPC layer would have refused it before the engine).
template <typename Req, typename Resp>
void Call(OneMember& m, std::string_view bytes,
          void (EtcdServer::*method)(const Req&, EtcdServer::Done<Resp>)) {
  Req r;
  if (!r.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) return;
  auto out = m.Do<Resp>([&](EtcdServer& s, EtcdServer::Done<Resp> done) {
    (s.*method)(r, std::move(done));
  });
  // DETCD_FUZZ_VERBOSE=1: what each request got (to see that seeds reach
  // the paths they were written for).
  static const bool verbose = std::getenv("DETCD_FUZZ_VERBOSE") != nullptr;
  if (verbose) {
    std::fprintf(stderr, "  %s -> %s\n", Req::descriptor()->name().c_str(),
                 !out ? "no answer"
                      : out->ok() ? out->value().ShortDebugString().c_str()
                                  : out->status().ToString().c_str());
  }
}

using Runner = void (*)(OneMember&, std::string_view);
#define DETCD_REQ(Method, Req, Resp)                        \
  +[](OneMember& m, std::string_view b) {                   \
    Call<pb::Req, pb::Resp>(m, b, &EtcdServer::Method);     \
  }
const Runner kRequests[] = {
    DETCD_REQ(Range, RangeRequest, RangeResponse),
    DETCD_REQ(Put, PutRequest, PutResponse),
    DETCD_REQ(DeleteRange, DeleteRangeRequest, DeleteRangeResponse),
    DETCD_REQ(Txn, TxnRequest, TxnResponse),
    DETCD_REQ(Compact, CompactionRequest, CompactionResponse),
    DETCD_REQ(LeaseGrant, LeaseGrantRequest, LeaseGrantResponse),
    DETCD_REQ(LeaseRevoke, LeaseRevokeRequest, LeaseRevokeResponse),
    DETCD_REQ(LeaseKeepAlive, LeaseKeepAliveRequest, LeaseKeepAliveResponse),
    DETCD_REQ(LeaseTimeToLive, LeaseTimeToLiveRequest,
              LeaseTimeToLiveResponse),
    DETCD_REQ(LeaseLeases, LeaseLeasesRequest, LeaseLeasesResponse),
    DETCD_REQ(MemberList, MemberListRequest, MemberListResponse),
    DETCD_REQ(MemberAdd, MemberAddRequest, MemberAddResponse),
    DETCD_REQ(MemberUpdate, MemberUpdateRequest, MemberUpdateResponse),
    DETCD_REQ(MemberPromote, MemberPromoteRequest, MemberPromoteResponse),
    DETCD_REQ(Alarm, AlarmRequest, AlarmResponse),
    DETCD_REQ(Status, StatusRequest, StatusResponse),
    DETCD_REQ(Hash, HashRequest, HashResponse),
    DETCD_REQ(HashKV, HashKVRequest, HashKVResponse),
    DETCD_REQ(Defragment, DefragmentRequest, DefragmentResponse),
    DETCD_REQ(MoveLeader, MoveLeaderRequest, MoveLeaderResponse),
    DETCD_REQ(AuthEnable, AuthEnableRequest, AuthEnableResponse),
    DETCD_REQ(AuthDisable, AuthDisableRequest, AuthDisableResponse),
    DETCD_REQ(AuthStatus, AuthStatusRequest, AuthStatusResponse),
    DETCD_REQ(Authenticate, AuthenticateRequest, AuthenticateResponse),
    DETCD_REQ(UserAdd, AuthUserAddRequest, AuthUserAddResponse),
    DETCD_REQ(UserGet, AuthUserGetRequest, AuthUserGetResponse),
    DETCD_REQ(UserList, AuthUserListRequest, AuthUserListResponse),
    DETCD_REQ(UserDelete, AuthUserDeleteRequest, AuthUserDeleteResponse),
    DETCD_REQ(UserChangePassword, AuthUserChangePasswordRequest,
              AuthUserChangePasswordResponse),
    DETCD_REQ(UserGrantRole, AuthUserGrantRoleRequest,
              AuthUserGrantRoleResponse),
    DETCD_REQ(UserRevokeRole, AuthUserRevokeRoleRequest,
              AuthUserRevokeRoleResponse),
    DETCD_REQ(RoleAdd, AuthRoleAddRequest, AuthRoleAddResponse),
    DETCD_REQ(RoleGet, AuthRoleGetRequest, AuthRoleGetResponse),
    DETCD_REQ(RoleList, AuthRoleListRequest, AuthRoleListResponse),
    DETCD_REQ(RoleDelete, AuthRoleDeleteRequest, AuthRoleDeleteResponse),
    DETCD_REQ(RoleGrantPermission, AuthRoleGrantPermissionRequest,
              AuthRoleGrantPermissionResponse),
    DETCD_REQ(RoleRevokePermission, AuthRoleRevokePermissionRequest,
              AuthRoleRevokePermissionResponse),
};
#undef DETCD_REQ
constexpr size_t kNumRequests = sizeof(kRequests) / sizeof(kRequests[0]);

struct Record {
  uint8_t kind;
  std::string_view bytes;
};

std::vector<Record> SplitRecords(std::string_view in) {
  std::vector<Record> out;
  coding::Reader r(in);
  while (out.size() < kMaxRequests) {
    uint8_t kind = 0;
    uint64_t n = 0;
    if (!r.GetByte(&kind) || !r.GetVarint64(&n)) break;
    std::string_view rest = r.rest();
    if (n > rest.size()) n = rest.size();
    out.push_back({kind, rest.substr(0, n)});
    r = coding::Reader(rest.substr(n));
  }
  return out;
}

void ApplyDirect(const std::vector<Record>& records) {
  server::EtcdStateMachine::Options o;
  o.now_ns = [] { return int64_t{0}; };
  server::EtcdStateMachine sm(o);
  uint64_t index = 0;
  for (const Record& rec : records) {
    if (rec.kind < 0xf0) continue;
    (void)sm.Apply(++index, rec.bytes);
  }
  if (index == 0) return;
  const std::string image = sm.Snapshot();
  server::EtcdStateMachine again(o);
  if (absl::Status s = again.Restore(image); !s.ok()) {
    std::fprintf(stderr, "restore: %s\n", s.ToString().c_str());
    Fail("a state machine's own snapshot image does not restore");
  }
  if (again.Snapshot() != image) {
    Fail("a restored snapshot image differs from the original");
  }
}

}  // namespace
}  // namespace detcd::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace detcd::fuzz;
  const std::vector<Record> records = SplitRecords(AsView(data, size));
  bool any_request = false;
  for (const Record& r : records) any_request |= r.kind < 0xf0;
  if (any_request) {
    OneMember m;
    for (const Record& r : records) {
      if (r.kind < 0xf0) kRequests[r.kind % kNumRequests](m, r.bytes);
    }
    m.CheckHealthy();
    // The member still serves: a linearizable read of every key answers.
    etcdserverpb::RangeRequest all;
    all.set_key(std::string(1, '\0'));
    all.set_range_end(std::string(1, '\0'));
    all.set_count_only(true);
    auto got = m.Do<etcdserverpb::RangeResponse>(
        [&](detcd::server::EtcdServer& s, auto done) {
          s.Range(all, std::move(done));
        });
    if (!got) Fail("the member no longer answers a read");
    m.CheckHealthy();
  }
  ApplyDirect(records);
  return 0;
}
