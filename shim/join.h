// Joining a running cluster (--initial-cluster-state existing), as etcd
// 3.4 does it (etcdserver.NewServer, the "!haveWAL && !NewCluster" case):
//
//  0. the initial cluster as etcd's PeerURLsMapAndToken builds it:
//     --initial-cluster and --initial-cluster-token; with --discovery (or
//     etcd 3.6's --discovery-endpoints) only this member with its
//     --initial-advertise-peer-urls, the discovery URL (token) as cluster
//     token; with --discovery-srv the members the SRV records name
//     (discovery.h, JoinViewFromDiscovery);
//  1. VerifyJoinExisting: this member's --name must be in that cluster
//     ("couldn't find local name %q in the initial cluster configuration"),
//     no URL listed twice ("initial cluster %s has duplicate url"), no
//     --discovery ("discovery URL should not be set when joining existing
//     initial cluster"; etcd 3.4 and 3.6 check the v2 URL only: with
//     --discovery-endpoints the lone local member finds no peer to ask,
//     step 3);
//  2. the local view: that cluster with ids derived from URLs and the
//     cluster token (etcd's NewClusterFromURLsMap);
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
//     differ;
//  5. isCompatibleWithCluster: GET <peer URL>/version of every other member
//     of the local view (its URLs sorted, the first that answers
//     decides; "failed to reach the peer URL" / "failed to unmarshal
//     response" / "failed to get version" warnings); the cluster versions
//     that answered and parse as semver must lie in [3.0.0, 3.4.0] (etcd
//     3.4.23's MinClusterVersion and its own major.minor), else "cluster
//     version of remote member is not compatible; too low" / "too high"; at
//     least one must have answered. Otherwise "incompatible with current
//     running cluster".
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

// A remote member's GET /version answer (etcd's version.Versions JSON:
// {"etcdserver":"3.4.23","etcdcluster":"3.4.0"}), for step 5.
struct RemoteVersion {
  uint64_t id = 0;
  bool answered = false;  // false: no peer URL gave a parsable answer
  std::string server;     // "etcdserver"
  std::string cluster;    // "etcdcluster" (etcd: "not_decided" early on)
};

// etcd's isCompatibleWithVers: true when at least one remote answered and
// every answered cluster version that parses (go-semver's dotted-tri
// syntax) is within [min_version, max_version]. Logs etcd's warnings.
bool IsCompatibleWithVersions(const std::vector<RemoteVersion>& remotes,
                              std::string_view min_version,
                              std::string_view max_version);

// etcd's GET /members body: a JSON array of membership.Member
// ({"id":N,"peerURLs":[...],"isLearner":true,"name":"...","clientURLs":
// [...]}, the last three omitted when empty), by ascending id.
std::string PeerMembersJson(const std::vector<server::MemberInfo>& members);
// One of them (etcd also keeps this JSON in its backend's "members" bucket).
std::string PeerMemberJson(const server::MemberInfo& m);
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
