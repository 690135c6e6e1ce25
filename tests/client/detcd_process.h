// Real detcd members for the client library's tests: a cluster of n
// members on 127.0.0.1 with free ports, in a temp dir removed afterwards.
// Members die with the test process (PR_SET_PDEATHSIG) even when ctest
// kills it. The server binary is DETCD_SERVER from the environment, else
// the path compiled in (DETCD_TEST_SERVER_PATH).
#ifndef DETCD_TESTS_CLIENT_DETCD_PROCESS_H_
#define DETCD_TESTS_CLIENT_DETCD_PROCESS_H_

#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "detcd/client.h"

namespace detcd::testing {

// A port free to bind at the time of the call.
int FreePort();

class DetcdCluster {
 public:
  // extra_flags go to every member. With client_tls the client URLs are
  // https (extra_flags must then name the server's certificate and key)
  // and readiness is checked over TLS with it.
  explicit DetcdCluster(int members = 1,
                        std::vector<std::string> extra_flags = {},
                        std::optional<client::TlsConfig> client_tls = {});
  ~DetcdCluster();
  DetcdCluster(const DetcdCluster&) = delete;
  DetcdCluster& operator=(const DetcdCluster&) = delete;

  // Starts every member and waits until each answers a linearizable read.
  absl::Status Start(absl::Duration timeout = absl::Seconds(30));
  // SIGKILLs member i.
  void Kill(int i);
  // Restarts a killed member (same data dir).
  absl::Status Restart(int i, absl::Duration timeout = absl::Seconds(30));

  int size() const { return static_cast<int>(members_.size()); }
  // "127.0.0.1:port" of member i, and of all (with "https://" when the
  // cluster serves clients over TLS).
  std::string endpoint(int i) const;
  std::vector<std::string> endpoints() const;
  // The index of the member with this endpoint, or -1.
  int IndexOf(const std::string& endpoint) const;
  // The tail of member i's log (for failure messages).
  std::string LogTail(int i) const;

 private:
  struct Member {
    std::string name;
    int client_port = 0;
    int peer_port = 0;
    pid_t pid = -1;
  };
  absl::Status Spawn(int i);
  absl::Status WaitReady(int i, absl::Time deadline);

  std::string binary_;
  std::string dir_;
  std::vector<std::string> extra_flags_;
  std::optional<client::TlsConfig> client_tls_;
  std::vector<Member> members_;
};

}  // namespace detcd::testing

#endif  // DETCD_TESTS_CLIENT_DETCD_PROCESS_H_
