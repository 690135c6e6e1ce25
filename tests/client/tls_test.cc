// The client over TLS to a real detcd serving https with client
// certificate authentication: certificates made by the openssl command in
// a temp dir (a CA, a server certificate for 127.0.0.1, a client
// certificate). A client with the CA and its certificate works; one
// without a certificate, with another CA, or expecting another server
// name does not; skip-verify still sends the client certificate.
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "detcd/client.h"
#include "detcd/kv.h"
#include "gtest/gtest.h"
#include "tests/client/detcd_process.h"

namespace detcd::client {
namespace {

class Pki {
 public:
  Pki() {
    std::string tmpl =
        (std::filesystem::temp_directory_path() / "detcd-tls-test-XXXXXX")
            .string();
    if (mkdtemp(tmpl.data()) != nullptr) dir_ = tmpl;
    std::ofstream(Path("ext.cnf"))
        << "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
           "extendedKeyUsage=serverAuth,clientAuth\n";
    ok_ = MakeCa("ca") && MakeCa("other-ca") && Issue("server", "ca") &&
          Issue("client", "ca") && Issue("stranger", "other-ca");
  }
  ~Pki() {
    std::error_code ec;
    if (!dir_.empty()) std::filesystem::remove_all(dir_, ec);
  }
  bool ok() const { return ok_; }
  std::string Path(const std::string& f) const { return dir_ + "/" + f; }

 private:
  bool Run(const std::string& args) {
    std::string cmd =
        absl::StrCat("cd '", dir_, "' && openssl ", args, " >openssl.log 2>&1");
    return std::system(cmd.c_str()) == 0;
  }
  bool MakeCa(const std::string& name) {
    return Run(absl::StrCat("req -x509 -newkey rsa:2048 -nodes -days 2 ",
                            "-keyout ", name, ".key -out ", name,
                            ".crt -subj /CN=", name));
  }
  bool Issue(const std::string& name, const std::string& ca) {
    return Run(absl::StrCat("req -newkey rsa:2048 -nodes -keyout ", name,
                            ".key -out ", name, ".csr -subj /CN=", name)) &&
           Run(absl::StrCat("x509 -req -in ", name, ".csr -CA ", ca,
                            ".crt -CAkey ", ca, ".key -CAcreateserial ",
                            "-days 2 -extfile ext.cnf -out ", name, ".crt"));
  }
  std::string dir_;
  bool ok_ = false;
};

TEST(TlsClient, MutualTlsWithTheRightCertificatesOnly) {
  Pki pki;
  ASSERT_TRUE(pki.ok()) << "openssl failed; see " << pki.Path("openssl.log");
  TlsConfig good;
  good.ca_file = pki.Path("ca.crt");
  good.cert_file = pki.Path("client.crt");
  good.key_file = pki.Path("client.key");
  testing::DetcdCluster cluster(
      1,
      {"--cert-file", pki.Path("server.crt"), "--key-file",
       pki.Path("server.key"), "--trusted-ca-file", pki.Path("ca.crt"),
       "--client-cert-auth"},
      good);
  absl::Status st = cluster.Start();
  ASSERT_TRUE(st.ok()) << st;

  auto try_put = [&](std::optional<TlsConfig> tls) {
    Config cfg;
    cfg.endpoints = cluster.endpoints();  // https://...
    cfg.tls = std::move(tls);
    auto c = Client::New(cfg);
    if (!c.ok()) return c.status();
    return (*c)
        ->Put("tls", "v", {}, CallOptions::Timeout(absl::Seconds(3)))
        .status();
  };
  EXPECT_TRUE(try_put(good).ok());

  TlsConfig no_cert = good;
  no_cert.cert_file.clear();
  no_cert.key_file.clear();
  EXPECT_FALSE(try_put(no_cert).ok());

  TlsConfig stranger = good;
  stranger.cert_file = pki.Path("stranger.crt");
  stranger.key_file = pki.Path("stranger.key");
  EXPECT_FALSE(try_put(stranger).ok());

  TlsConfig other_ca = good;
  other_ca.ca_file = pki.Path("other-ca.crt");
  EXPECT_FALSE(try_put(other_ca).ok());

  TlsConfig wrong_name = good;
  wrong_name.server_name = "wrong.example";
  EXPECT_FALSE(try_put(wrong_name).ok());

  TlsConfig skip = other_ca;  // a CA that would not verify the server
  skip.insecure_skip_verify = true;
  EXPECT_TRUE(try_put(skip).ok());

  TlsConfig missing = good;
  missing.ca_file = pki.Path("nope.crt");
  absl::Status s = try_put(missing);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
}

}  // namespace
}  // namespace detcd::client
