// Bootstrapping a new cluster by discovery instead of --initial-cluster,
// the three ways etcd offers:
//
//  - --discovery URL: etcd 3.4's v2 discovery protocol
//    (Documentation/dev-internal/discovery_protocol.md) against an etcd v2
//    keys API, e.g. http://disc:2379/v2/keys/discovery/<token>. The member
//    reads <token>/_config/size, registers "name=peerURLs" under
//    <token>/<member id hex> (create-only), then watches <token> until
//    `size` members are registered; the first `size` by creation index form
//    the cluster. HTTP through libcurl; --discovery-proxy is curl's proxy.
//  - --discovery-token + --discovery-endpoints: etcd 3.6's v3 discovery, the
//    same steps over the v3 API with the keys
//    /_etcd/registry/<token>/_config/size and
//    /_etcd/registry/<token>/members/<member id hex> (ordered by create
//    revision), through detcd's client library.
//  - --discovery-srv domain: DNS SRV records _etcd-server-ssl._tcp.<domain>
//    (https) and _etcd-server._tcp.<domain> (http), "-<name>" appended to
//    the service with --discovery-srv-name; each target is resolved and
//    matched against this member's --initial-advertise-peer-urls by address
//    (etcd's srv.GetCluster and URLStringsEqual).
//
// With URL or token discovery the cluster token (which seeds member and
// cluster ids) is the discovery URL / token, as in etcd, so every member
// derives the same ids. Texts of errors and log lines are etcd's: a full
// cluster is "discovery: cluster is full" (wrapped as "failed to join
// discovery cluster (...)"), a name used twice "discovery: found duplicate
// name", a member key already present "discovery: found duplicate id".
// --discovery-fallback=proxy (etcd's default) would make etcd 3.4 a v2
// proxy when the cluster is full; detcd has no v2 proxy and refuses.
//
// Differences kept on purpose (docs/flags.md): SRV records of both schemes
// are combined as etcd 3.5 does (etcd 3.4 drops the http ones, etcd issue
// #11321); v3 discovery also refuses a name registered twice.
#ifndef DETCD_SHIM_DISCOVERY_H_
#define DETCD_SHIM_DISCOVERY_H_

#include "absl/status/statusor.h"
#include "shim/config.h"
#include "shim/server.h"

namespace detcd::shim {

// True when the configuration bootstraps by discovery rather than by
// --initial-cluster.
bool UsesDiscovery(const ServerConfig& c);

// For a member bootstrapping a new cluster (no data dir yet): runs the
// configured discovery, blocking until the cluster is complete (SIGTERM or
// SIGINT meanwhile end the process, as they end etcd), then applies etcd's
// bootstrap checks to the cluster found (IdentityFromConfig). Failures log
// etcd's warnings and return etcd's error text.
absl::StatusOr<Identity> IdentityFromDiscovery(const ServerConfig& c);

// For a member joining a running cluster (--initial-cluster-state
// existing, join.h): the initial cluster and token etcd's
// PeerURLsMapAndToken gives it when discovery flags are set. With
// --discovery (or etcd 3.6's --discovery-endpoints) the cluster is this
// member alone with its --initial-advertise-peer-urls and the token is the
// discovery URL (token); with --discovery-srv it is the one the SRV records
// describe (as for bootstrap, without VerifyBootstrap's advertised-URL
// check, which etcd does not make when joining). Without discovery flags c
// is left as it is. SRV failures return etcd's "error setting up initial
// cluster: ..." text.
absl::Status JoinViewFromDiscovery(ServerConfig& c);

// etcd's PeerTLSInfo.ServerName rule for --discovery-srv: when the cluster
// the SRV records gave (`peer_urls`, every member's) has https peer URLs
// and no --peer-trusted-ca-file is set, a peer's certificate is checked
// against the SRV domain rather than the host dialed, so one certificate
// for the domain serves every member. etcd applies it on the start that
// reads the records (a new data dir) only. "" when the rule does not apply.
std::string SrvPeerServerName(const ServerConfig& c,
                              const std::vector<std::string>& peer_urls);

}  // namespace detcd::shim

#endif  // DETCD_SHIM_DISCOVERY_H_
