// Joining a running cluster (--initial-cluster-state existing), as etcd
// 3.4 does it (etcdserver.NewServer, the "!haveWAL && !NewCluster" case):
//
//  1. VerifyJoinExisting: this member's --name must be in --initial-cluster
//     ("couldn't find local name %q in the initial cluster configuration"),
//     no URL listed twice ("initial cluster %s has duplicate url"), no
//     --discovery ("discovery URL should not be set when joining existing
//     initial cluster");
//  2. the local view: --initial-cluster with ids derived from URLs and
//     --initial-cluster-token (etcd's NewClusterFromURLsMap);
//  3. GetClusterFromRemotePeers: GET <peer URL>/members on every other
//     listed member's peer URLs (sorted) until one answers with the
//     members (JSON, etcd's membership.Member) and the X-Etcd-Cluster-ID
//     header; each failure logs "failed to get cluster response"; none:
//     "cannot fetch cluster info from peer urls: could not retrieve
//     cluster information from the given URLs";
//  4. ValidateClusterAndAssignIDs: the running cluster must have as many
//     members as --initial-cluster ("member count is unequal"), and each
//     of its members' peer URLs must equal some listed member's (compared
//     as sets, host names resolved as etcd's URLStringsEqual does;
//     otherwise "PeerURLs: no match found for existing member (ID, URLs),
//     last resolver error (<nil>)"), which gives the listed members the
//     running cluster's ids. Wrapped as "error validating peerURLs
//     {ClusterID:... Members:[...] RemovedMemberIDs:[]}: ...". A member
//     that was never added (MemberAdd) fails here: the counts or the URLs
//     differ.
//
// The member then starts with the running cluster's id and the id the
// cluster gave it, knows the running members as peers, and waits for the
// leader's log or snapshot (server::NodeOptions with no initial voters).
//
// The peer-port side: a member answers GET /members (and /version) on its
// peer URLs, as etcd's peer handler does (PeerMembersJson).
#ifndef DETCD_SHIM_JOIN_H_
#define DETCD_SHIM_JOIN_H_

#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/server/membership.h"
#include "shim/config.h"
#include "shim/server.h"
#include "shim/tls.h"

namespace detcd::shim {

struct JoinedCluster {
  uint64_t member_id = 0;
  uint64_t cluster_id = 0;
  std::vector<server::MemberInfo> members;  // the running cluster's
};

// Steps 1-4 above. `tls`: the peer TLS files for https peer URLs.
// `timeout_ms` bounds each request (etcd: 10 s).
absl::StatusOr<JoinedCluster> JoinExistingCluster(const ServerConfig& c,
                                                  const TlsFiles& tls,
                                                  int timeout_ms = 10'000);

// etcd's GET /members body: a JSON array of membership.Member
// ({"id":N,"peerURLs":[...],"isLearner":true,"name":"...","clientURLs":
// [...]}, the last three omitted when empty), by ascending id.
std::string PeerMembersJson(const std::vector<server::MemberInfo>& members);
absl::StatusOr<std::vector<server::MemberInfo>> ParsePeerMembersJson(
    std::string_view body);

// A plain HTTP/1.1 GET (https through `tls`), Connection: close; the body
// de-chunked. Enough for etcd's peer endpoints.
struct HttpGetResult {
  int status = 0;
  std::map<std::string, std::string> headers;  // lower-case names
  std::string body;
};
absl::StatusOr<HttpGetResult> HttpGet(const std::string& url,
                                      const TlsFiles& tls, int timeout_ms);

}  // namespace detcd::shim

#endif  // DETCD_SHIM_JOIN_H_
