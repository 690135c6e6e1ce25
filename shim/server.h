// One running detcd member: the engine (EtcdServer) on its own thread, the
// real disk and clock under it, the peer transport, the gRPC services and
// the client / metrics listeners in front of it.
//
// Start-up follows etcd: resolve the member's identity (from the data dir
// if it has one, else from --initial-cluster, with etcd's checks and
// messages), open or bootstrap the data dir (`<data-dir>/member/{wal,snap}`),
// start the peer transport, start the engine, serve clients, then publish
// this member's name and client URLs through raft.
#ifndef DETCD_SHIM_SERVER_H_
#define DETCD_SHIM_SERVER_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "shim/config.h"

namespace detcd::shim {

// etcd's member id: the first 8 bytes (big-endian) of SHA-1 over the
// member's peer URLs (sorted, concatenated) followed by the cluster token.
uint64_t ComputeMemberId(std::vector<std::string> peer_urls,
                         const std::string& token);
// etcd's cluster id: the first 8 bytes of SHA-1 over the sorted member ids,
// each as 8 big-endian bytes.
uint64_t ComputeClusterId(std::vector<uint64_t> member_ids);

// Who this member is and who founded the cluster.
struct Identity {
  uint64_t member_id = 0;
  uint64_t cluster_id = 0;
  struct Founder {
    uint64_t id;
    std::string name;
    std::vector<std::string> peer_urls;
  };
  std::vector<Founder> founders;  // from --initial-cluster (new data dir)
};
// Applies etcd's rules to --initial-cluster and this member's flags.
absl::StatusOr<Identity> IdentityFromConfig(const ServerConfig& c);

class PosixDisk;
// Identity kept in the data dir: after the first start the member's ids
// come from here and --initial-* flags are ignored, as in etcd. JSON
// {"member_id":N,"cluster_id":N}, written once when the member is created
// (bootstrap, or `detcdctl snapshot restore`, restore.h): temp file,
// fsync, rename, directory fsync. Paths are relative to the data dir.
inline constexpr char kIdentityFile[] = "member/detcd-identity.json";
absl::StatusOr<Identity> ReadIdentity(PosixDisk& disk);
absl::Status WriteIdentity(PosixDisk& disk, const Identity& id);

class DetcdServer {
 public:
  ~DetcdServer();
  DetcdServer(const DetcdServer&) = delete;
  DetcdServer& operator=(const DetcdServer&) = delete;

  // Starts everything; returns once clients are being served.
  static absl::StatusOr<std::unique_ptr<DetcdServer>> Start(
      const ServerConfig& config);
  // Clean shutdown (SIGTERM / SIGINT): stop accepting, answer open calls
  // with "server stopped", stop the engine, close the data dir. Idempotent.
  void Stop();
  // Blocks until the engine failed (disk error) or Stop was called.
  // Returns the engine's failure, or ok.
  absl::Status Wait();
  // True once Wait returned because this member was removed from the
  // cluster (etcd's process then exits 0).
  bool removed() const;

  struct Impl;

 private:
  explicit DetcdServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace detcd::shim

#endif  // DETCD_SHIM_SERVER_H_
