// TLS hardening (issue 12 parts 1-2): key pair rotation, CRLs, allowed CN /
// hostname on both sides, the peer listener's SAN check, cipher suites, TLS
// versions, self-signed validity, and Go's texts for refusals.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "shim/tls.h"

namespace detcd::shim {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

struct KeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
struct CertFree {
  void operator()(X509* c) const { X509_free(c); }
};
using Key = std::unique_ptr<EVP_PKEY, KeyFree>;
using Cert = std::unique_ptr<X509, CertFree>;

bool AddExt(X509* cert, X509* issuer, int nid, const std::string& value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str());
  if (ext == nullptr) return false;
  bool ok = X509_add_ext(cert, ext, -1) == 1;
  X509_EXTENSION_free(ext);
  return ok;
}

struct LeafSpec {
  std::string cn = "member";
  long serial = 2;
  std::string san = "DNS:localhost,IP:127.0.0.1";  // "" = none
  long not_before_s = -3600;                       // from now
  long not_after_s = 24 * 3600;
};

// A small CA writing PEM files into a directory.
class Ca {
 public:
  Ca(std::string dir, const std::string& name) : dir_(std::move(dir)) {
    key_.reset(EVP_EC_gen("P-256"));
    cert_.reset(X509_new());
    X509_set_version(cert_.get(), 2);
    ASN1_INTEGER_set(X509_get_serialNumber(cert_.get()), 1);
    X509_gmtime_adj(X509_getm_notBefore(cert_.get()), -3600);
    X509_gmtime_adj(X509_getm_notAfter(cert_.get()), 7L * 24 * 3600);
    X509_set_pubkey(cert_.get(), key_.get());
    X509_NAME_add_entry_by_txt(X509_get_subject_name(cert_.get()), "CN", MBSTRING_ASC,
                               reinterpret_cast<const unsigned char*>(name.c_str()),
                               -1, -1, 0);
    X509_set_issuer_name(cert_.get(), X509_get_subject_name(cert_.get()));
    AddExt(cert_.get(), cert_.get(), NID_basic_constraints, "critical,CA:TRUE");
    AddExt(cert_.get(), cert_.get(), NID_key_usage, "critical,keyCertSign,cRLSign");
    X509_sign(cert_.get(), key_.get(), EVP_sha256());
    ca_file_ = dir_ + "/" + name + ".pem";
    WriteCert(ca_file_, cert_.get());
  }

  const std::string& ca_file() const { return ca_file_; }

  // Writes <dir>/<name>.pem and <name>-key.pem; returns {cert, key}.
  std::pair<std::string, std::string> Issue(const std::string& name,
                                            const LeafSpec& s) {
    Key key(EVP_EC_gen("P-256"));
    Cert cert(X509_new());
    X509_set_version(cert.get(), 2);
    ASN1_INTEGER_set(X509_get_serialNumber(cert.get()), s.serial);
    X509_gmtime_adj(X509_getm_notBefore(cert.get()), s.not_before_s);
    X509_gmtime_adj(X509_getm_notAfter(cert.get()), s.not_after_s);
    X509_set_pubkey(cert.get(), key.get());
    X509_NAME_add_entry_by_txt(X509_get_subject_name(cert.get()), "CN", MBSTRING_ASC,
                               reinterpret_cast<const unsigned char*>(s.cn.c_str()),
                               -1, -1, 0);
    X509_set_issuer_name(cert.get(), X509_get_subject_name(cert_.get()));
    AddExt(cert.get(), cert_.get(), NID_basic_constraints, "CA:FALSE");
    AddExt(cert.get(), cert_.get(), NID_ext_key_usage, "serverAuth,clientAuth");
    if (!s.san.empty()) AddExt(cert.get(), cert_.get(), NID_subject_alt_name, s.san);
    X509_sign(cert.get(), key_.get(), EVP_sha256());
    std::string c = dir_ + "/" + name + ".pem", k = dir_ + "/" + name + "-key.pem";
    WriteCert(c, cert.get());
    FILE* f = std::fopen(k.c_str(), "w");
    PEM_write_PrivateKey(f, key.get(), nullptr, nullptr, 0, nullptr, nullptr);
    std::fclose(f);
    return {c, k};
  }

  // Writes a CRL listing `serials` to path (through a rename, as tooling
  // that rotates it would).
  void WriteCrl(const std::string& path, const std::vector<long>& serials) {
    X509_CRL* crl = X509_CRL_new();
    X509_CRL_set_version(crl, 1);
    X509_CRL_set_issuer_name(crl, X509_get_subject_name(cert_.get()));
    ASN1_TIME* now = ASN1_TIME_adj(nullptr, time(nullptr), 0, 0);
    X509_CRL_set1_lastUpdate(crl, now);
    for (long serial : serials) {
      X509_REVOKED* r = X509_REVOKED_new();
      ASN1_INTEGER* sn = ASN1_INTEGER_new();
      ASN1_INTEGER_set(sn, serial);
      X509_REVOKED_set_serialNumber(r, sn);
      X509_REVOKED_set_revocationDate(r, now);
      X509_CRL_add0_revoked(crl, r);
      ASN1_INTEGER_free(sn);
    }
    X509_CRL_sort(crl);
    X509_CRL_sign(crl, key_.get(), EVP_sha256());
    ASN1_TIME_free(now);
    std::string tmp = path + ".tmp";
    FILE* f = std::fopen(tmp.c_str(), "w");
    PEM_write_X509_CRL(f, crl);
    std::fclose(f);
    X509_CRL_free(crl);
    std::filesystem::rename(tmp, path);
  }

 private:
  static void WriteCert(const std::string& path, X509* c) {
    FILE* f = std::fopen(path.c_str(), "w");
    PEM_write_X509(f, c);
    std::fclose(f);
  }
  std::string dir_;
  Key key_;
  Cert cert_;
  std::string ca_file_;
};

// A connected TCP pair on 127.0.0.1 (the SAN check needs an address).
std::pair<int, int> TcpPair() {
  int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(a);
  EXPECT_EQ(bind(l, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
  EXPECT_EQ(listen(l, 1), 0);
  getsockname(l, reinterpret_cast<sockaddr*>(&a), &len);
  int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  EXPECT_EQ(connect(c, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
  int s = accept4(l, nullptr, nullptr, SOCK_CLOEXEC);
  close(l);
  return {s, c};
}

struct Outcome {
  absl::StatusOr<std::unique_ptr<Stream>> server{absl::UnknownError("unset")};
  absl::StatusOr<std::unique_ptr<Stream>> client{absl::UnknownError("unset")};
  HandshakeInfo info;
  // Whether a byte written by the server reached the client (a TLS 1.3
  // server refuses a client certificate after the client finished).
  bool works = false;
};

Outcome Exchange(TlsContext& server, TlsContext& client) {
  auto [s, c] = TcpPair();
  Outcome o;
  std::thread t([&] { o.server = server.Accept(s, 5000, &o.info); });
  o.client = client.Connect(c, "127.0.0.1", 5000);
  t.join();
  if (o.server.ok() && o.client.ok()) {
    char b = 0;
    o.works = (*o.server)->WriteAll("x", 1) && (*o.client)->Read(&b, 1) == 1 && b == 'x';
  }
  return o;
}

std::string ServerError(const Outcome& o) {
  return o.server.ok() ? "" : std::string(o.server.status().message());
}

class TlsHardeningTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl =
        (std::filesystem::temp_directory_path() / "tls_hardening.XXXXXX").string();
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    ca_ = std::make_unique<Ca>(dir_, "ca");
    other_ = std::make_unique<Ca>(dir_, "other");
    LeafSpec server;
    server.cn = "server";
    server.serial = 10;
    server_ = ca_->Issue("server", server);
    client_ = ca_->Issue("client", LeafSpec{});
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  TlsFiles ServerFiles() const {
    TlsFiles f;
    f.cert_file = server_.first;
    f.key_file = server_.second;
    f.trusted_ca_file = ca_->ca_file();
    f.client_cert_auth = true;
    return f;
  }
  TlsFiles ClientFiles(const std::pair<std::string, std::string>& leaf) const {
    TlsFiles f;
    f.cert_file = leaf.first;
    f.key_file = leaf.second;
    f.trusted_ca_file = ca_->ca_file();
    return f;
  }
  std::shared_ptr<TlsContext> MakeServer(const TlsFiles& f) {
    auto s = TlsContext::Server(f, {});
    EXPECT_TRUE(s.ok()) << s.status();
    return s.ok() ? *s : nullptr;
  }
  std::shared_ptr<TlsContext> MakeClient(const TlsFiles& f) {
    auto c = TlsContext::Client(f, {});
    EXPECT_TRUE(c.ok()) << c.status();
    return c.ok() ? *c : nullptr;
  }

  std::string dir_;
  std::unique_ptr<Ca> ca_, other_;
  std::pair<std::string, std::string> server_, client_;
};

TEST_F(TlsHardeningTest, RotatedKeyPairIsServedWithoutRestart) {
  TlsFiles sf = ServerFiles();
  sf.cert_file = dir_ + "/live.pem";
  sf.key_file = dir_ + "/live-key.pem";
  std::filesystem::copy_file(server_.first, sf.cert_file);
  std::filesystem::copy_file(server_.second, sf.key_file);
  auto server = MakeServer(sf);
  auto client = MakeClient(ClientFiles(client_));
  ASSERT_TRUE(server && client);
  EXPECT_TRUE(Exchange(*server, *client).works);
  EXPECT_TRUE(Exchange(*server, *client).works);
  EXPECT_EQ(server->key_pair_loads(), 1u);  // unchanged files: no reload

  // A new pair (new key too) replaces both files by rename.
  LeafSpec renewed;
  renewed.cn = "server-renewed";
  renewed.serial = 11;
  auto next = ca_->Issue("renewed", renewed);
  std::filesystem::copy_file(next.second, sf.key_file + ".tmp");
  std::filesystem::rename(sf.key_file + ".tmp", sf.key_file);
  std::filesystem::copy_file(next.first, sf.cert_file + ".tmp");
  std::filesystem::rename(sf.cert_file + ".tmp", sf.cert_file);
  Outcome o = Exchange(*server, *client);
  ASSERT_TRUE(o.works) << ServerError(o);
  EXPECT_EQ(server->key_pair_loads(), 2u);
  // The client (which verifies) now talks to the renewed certificate; its
  // stream names the server's CN only on the server side, so look at the
  // client's peer certificate through a client with allowed CN.
  TlsFiles strict = ClientFiles(client_);
  strict.allowed_cn = {"server-renewed"};
  auto strict_client = MakeClient(strict);
  EXPECT_TRUE(Exchange(*server, *strict_client).works);

  // A pair that stops loading fails handshakes with the reason; the
  // listener goes on and recovers when the files are good again.
  std::filesystem::remove(sf.key_file);
  o = Exchange(*server, *client);
  EXPECT_FALSE(o.server.ok());
  EXPECT_THAT(ServerError(o), HasSubstr("no such file or directory"));
  std::filesystem::copy_file(next.second, sf.key_file);
  EXPECT_TRUE(Exchange(*server, *client).works);
}

TEST_F(TlsHardeningTest, CrlIsReadAgainWhenItChanges) {
  TlsFiles sf = ServerFiles();
  sf.crl_file = dir_ + "/crl.pem";
  ca_->WriteCrl(sf.crl_file, {});
  auto server = MakeServer(sf);
  auto client = MakeClient(ClientFiles(client_));
  ASSERT_TRUE(server && client);
  EXPECT_TRUE(Exchange(*server, *client).works);

  ca_->WriteCrl(sf.crl_file, {7, 2});  // the client's serial is 2
  Outcome o = Exchange(*server, *client);
  EXPECT_FALSE(o.works);
  EXPECT_EQ(ServerError(o), "transport: certificate serial 02 revoked");
  // etcd logs the SANs of such a certificate.
  EXPECT_TRUE(o.info.have_certificate);
  EXPECT_THAT(o.info.ip_addresses, ::testing::ElementsAre("127.0.0.1"));
  EXPECT_THAT(o.info.dns_names, ::testing::ElementsAre("localhost"));

  ca_->WriteCrl(sf.crl_file, {7});
  EXPECT_TRUE(Exchange(*server, *client).works);

  // An unreadable CRL refuses everyone, with the reason (as etcd).
  std::filesystem::remove(sf.crl_file);
  o = Exchange(*server, *client);
  EXPECT_FALSE(o.works);
  EXPECT_THAT(ServerError(o), StartsWith("open " + sf.crl_file));
}

TEST_F(TlsHardeningTest, GoTextsForRefusedClients) {
  auto server = MakeServer(ServerFiles());
  ASSERT_TRUE(server);
  LeafSpec expired;
  expired.serial = 20;
  expired.not_before_s = -3 * 24 * 3600;
  expired.not_after_s = -2 * 24 * 3600;
  auto old = ca_->Issue("expired", expired);
  Outcome o = Exchange(*server, *MakeClient(ClientFiles(old)));
  EXPECT_THAT(ServerError(o),
              StartsWith("tls: failed to verify client certificate: x509: "
                         "certificate has expired or is not yet valid: current "
                         "time "));
  EXPECT_THAT(ServerError(o), HasSubstr(" is after "));
  EXPECT_FALSE(o.info.have_certificate);

  auto stranger = other_->Issue("stranger", LeafSpec{});
  o = Exchange(*server, *MakeClient(ClientFiles(stranger)));
  EXPECT_EQ(ServerError(o),
            "tls: failed to verify client certificate: x509: certificate "
            "signed by unknown authority");

  TlsFiles none;
  none.trusted_ca_file = ca_->ca_file();
  o = Exchange(*server, *MakeClient(none));
  EXPECT_EQ(ServerError(o), "tls: client didn't provide a certificate");
}

TEST_F(TlsHardeningTest, AllowedCommonNameOnBothSides) {
  TlsFiles sf = ServerFiles();
  sf.allowed_cn = {"member"};
  auto server = MakeServer(sf);
  LeafSpec intruder;
  intruder.cn = "intruder";
  intruder.serial = 30;
  auto bad = ca_->Issue("intruder", intruder);
  Outcome o = Exchange(*server, *MakeClient(ClientFiles(bad)));
  EXPECT_FALSE(o.works);
  EXPECT_EQ(ServerError(o), "client certificate authentication failed");
  EXPECT_TRUE(Exchange(*server, *MakeClient(ClientFiles(client_))).works);

  // A dialer with allowed CN refuses a server with another CN.
  TlsFiles cf = ClientFiles(client_);
  cf.allowed_cn = {"member"};
  o = Exchange(*MakeServer(ServerFiles()), *MakeClient(cf));
  ASSERT_FALSE(o.client.ok());
  EXPECT_EQ(o.client.status().message(), "client certificate authentication failed");
  // With the alert Go sends for a refused certificate (bad_certificate, not
  // handshake_failure): etcd's e2e TestEtcdPeerCNAuth waits for this line.
  EXPECT_EQ(ServerError(o), "remote error: tls: bad certificate");

  // etcd: CN and hostname are mutually exclusive.
  sf.allowed_hostname = {"h"};
  auto both = TlsContext::Server(sf, {});
  ASSERT_FALSE(both.ok());
  EXPECT_THAT(both.status().message(),
              HasSubstr("AllowedCN and AllowedHostname are mutually exclusive"));
}

TEST_F(TlsHardeningTest, AllowedHostnameMatchesSans) {
  LeafSpec named;
  named.san = "DNS:m1.example.com,IP:10.0.0.7";
  named.serial = 40;
  auto leaf = ca_->Issue("named", named);
  for (const auto& [host, ok] : std::vector<std::pair<std::string, bool>>{
           {"m1.example.com", true}, {"10.0.0.7", true}, {"m2.example.com", false},
           {"member", false}}) {
    TlsFiles sf = ServerFiles();
    sf.allowed_hostname = {host};
    Outcome o = Exchange(*MakeServer(sf), *MakeClient(ClientFiles(leaf)));
    EXPECT_EQ(o.works, ok) << host << ": " << ServerError(o);
  }
}

TEST_F(TlsHardeningTest, PeerListenerChecksClientSansAgainstTheAddress) {
  TlsFiles sf = ServerFiles();
  sf.check_client_san = true;
  auto server = MakeServer(sf);
  LeafSpec elsewhere;
  elsewhere.san = "IP:10.9.9.9";
  elsewhere.serial = 50;
  Outcome o = Exchange(*server, *MakeClient(ClientFiles(ca_->Issue("elsewhere", elsewhere))));
  EXPECT_FALSE(o.works);
  EXPECT_EQ(ServerError(o), "x509: certificate is valid for 10.9.9.9, not 127.0.0.1");
  LeafSpec no_sans;
  no_sans.san = "";
  no_sans.serial = 51;
  EXPECT_TRUE(Exchange(*server, *MakeClient(ClientFiles(ca_->Issue("nosan", no_sans)))).works);
  EXPECT_TRUE(Exchange(*server, *MakeClient(ClientFiles(client_))).works);
  // localhost resolves to 127.0.0.1: a DNS SAN that names us passes.
  LeafSpec dns_only;
  dns_only.san = "DNS:localhost";
  dns_only.serial = 52;
  EXPECT_TRUE(Exchange(*server, *MakeClient(ClientFiles(ca_->Issue("dns", dns_only)))).works);
}

TEST_F(TlsHardeningTest, CipherSuitesByGoNames) {
  auto names = OpenSslCipherNames({"TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
                                   "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305",
                                   "TLS_AES_128_GCM_SHA256"});
  ASSERT_TRUE(names.ok()) << names.status();
  EXPECT_THAT(*names, ::testing::ElementsAre("ECDHE-ECDSA-AES128-GCM-SHA256",
                                             "ECDHE-RSA-CHACHA20-POLY1305", ""));
  auto bad = OpenSslCipherNames({"TLS_FOO"});
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().message(), "unexpected TLS cipher suite \"TLS_FOO\"");

  TlsFiles sf = ServerFiles();
  sf.cipher_suites = {"TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"};
  auto server = MakeServer(sf);
  TlsFiles cf = ClientFiles(client_);
  cf.max_version = "TLS1.2";
  cf.cipher_suites = {"TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384"};
  Outcome o = Exchange(*server, *MakeClient(cf));
  EXPECT_EQ(ServerError(o), "tls: no cipher suite supported by both client and server");
  cf.cipher_suites = {"TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"};
  EXPECT_TRUE(Exchange(*server, *MakeClient(cf)).works);
  // TLS 1.3 keeps its suites whatever the list says, as in Go.
  EXPECT_TRUE(Exchange(*server, *MakeClient(ClientFiles(client_))).works);
}

TEST_F(TlsHardeningTest, TlsVersions) {
  TlsFiles sf = ServerFiles();
  sf.min_version = "TLS1.3";
  auto server = MakeServer(sf);
  TlsFiles cf = ClientFiles(client_);
  cf.max_version = "TLS1.2";
  EXPECT_FALSE(Exchange(*server, *MakeClient(cf)).works);
  EXPECT_TRUE(Exchange(*server, *MakeClient(ClientFiles(client_))).works);

  sf.min_version = "TLS1.1";
  auto bad = TlsContext::Server(sf, {});
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().message(),
            "unexpected TLS version \"TLS1.1\" (must be one of: TLS1.2, TLS1.3)");
  sf.min_version = "TLS1.3";
  sf.max_version = "TLS1.2";
  bad = TlsContext::Server(sf, {});
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().message(),
            "min version (TLS1.3) is greater than max version (TLS1.2)");
}

TEST_F(TlsHardeningTest, SelfSignedValidityInYears) {
  std::string cert, key;
  ASSERT_TRUE(EnsureSelfCert(dir_ + "/auto", {"127.0.0.1:2379"}, &cert, &key, 3).ok());
  FILE* f = std::fopen(cert.c_str(), "r");
  ASSERT_NE(f, nullptr);
  X509* x = PEM_read_X509(f, nullptr, nullptr, nullptr);
  std::fclose(f);
  ASSERT_NE(x, nullptr);
  int days = 0, secs = 0;
  ASN1_TIME_diff(&days, &secs, X509_get0_notBefore(x), X509_get0_notAfter(x));
  EXPECT_EQ(days, 3 * 365);
  X509_free(x);
  absl::Status zero = EnsureSelfCert(dir_ + "/auto0", {}, &cert, &key, 0);
  EXPECT_EQ(zero.message(), "selfSignedCertValidity is invalid,it should be greater than 0");
}

}  // namespace
}  // namespace detcd::shim
