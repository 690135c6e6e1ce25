// A throw-away certificate authority for TLS tests and benchmarks: a CA, a
// server certificate for localhost / 127.0.0.1 / ::1 and a client
// certificate, made with OpenSSL's API (EC P-256, so it takes milliseconds)
// and written as PEM files.
#ifndef DETCD_TESTS_SHIM_TEST_PKI_H_
#define DETCD_TESTS_SHIM_TEST_PKI_H_

#include <string>

#include "absl/status/statusor.h"

namespace detcd::shim::testing {

struct TestPki {
  std::string ca_file;  // the CA certificate
  std::string server_cert_file, server_key_file;
  std::string client_cert_file, client_key_file;
};

// Writes ca.pem, server.pem, server-key.pem, client.pem, client-key.pem into
// `dir` (which must exist). The client certificate's common name is
// `client_cn`.
absl::StatusOr<TestPki> MakeTestPki(const std::string& dir,
                                    const std::string& client_cn = "root");

// Reads a whole file (for grpc::SslCredentialsOptions); "" on error.
std::string ReadFileOrEmpty(const std::string& path);

}  // namespace detcd::shim::testing

#endif  // DETCD_TESTS_SHIM_TEST_PKI_H_
