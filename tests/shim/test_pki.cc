#include "tests/shim/test_pki.h"

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <cstdio>
#include <fstream>
#include <memory>
#include <sstream>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace detcd::shim::testing {
namespace {

struct KeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
struct CertFree {
  void operator()(X509* c) const { X509_free(c); }
};
using Key = std::unique_ptr<EVP_PKEY, KeyFree>;
using Cert = std::unique_ptr<X509, CertFree>;

bool AddExt(X509* cert, X509* issuer, int nid, const char* value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value);
  if (ext == nullptr) return false;
  bool ok = X509_add_ext(cert, ext, -1) == 1;
  X509_EXTENSION_free(ext);
  return ok;
}

// issuer/issuer_key null: self-signed.
Cert MakeCert(EVP_PKEY* key, const std::string& cn, long serial,
              X509* issuer, EVP_PKEY* issuer_key, bool ca, const char* san,
              const char* eku) {
  Cert cert(X509_new());
  X509_set_version(cert.get(), 2);
  ASN1_INTEGER_set(X509_get_serialNumber(cert.get()), serial);
  // Valid from an hour ago (clock skew between test processes is zero, but
  // a freshly made certificate must not be "not yet valid").
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), -3600);
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), 7L * 24 * 3600);
  X509_set_pubkey(cert.get(), key);
  X509_NAME* name = X509_get_subject_name(cert.get());
  X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>("detcd"),
                             -1, -1, 0);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>(cn.c_str()),
                             -1, -1, 0);
  X509* iss = issuer != nullptr ? issuer : cert.get();
  X509_set_issuer_name(cert.get(), X509_get_subject_name(iss));
  bool ok = true;
  if (ca) {
    ok = ok && AddExt(cert.get(), iss, NID_basic_constraints,
                      "critical,CA:TRUE");
    ok = ok && AddExt(cert.get(), iss, NID_key_usage,
                      "critical,keyCertSign,cRLSign,digitalSignature");
  } else {
    ok = ok && AddExt(cert.get(), iss, NID_basic_constraints, "CA:FALSE");
    ok = ok && AddExt(cert.get(), iss, NID_key_usage,
                      "critical,digitalSignature,keyEncipherment");
  }
  ok = ok && AddExt(cert.get(), iss, NID_subject_key_identifier, "hash");
  if (san != nullptr) {
    ok = ok && AddExt(cert.get(), iss, NID_subject_alt_name, san);
  }
  if (eku != nullptr) {
    ok = ok && AddExt(cert.get(), iss, NID_ext_key_usage, eku);
  }
  EVP_PKEY* signer = issuer_key != nullptr ? issuer_key : key;
  ok = ok && X509_sign(cert.get(), signer, EVP_sha256()) > 0;
  if (!ok) cert.reset();
  return cert;
}

bool WriteCert(const std::string& path, X509* cert) {
  FILE* f = std::fopen(path.c_str(), "w");
  if (f == nullptr) return false;
  bool ok = PEM_write_X509(f, cert) == 1;
  return std::fclose(f) == 0 && ok;
}

bool WriteKey(const std::string& path, EVP_PKEY* key) {
  FILE* f = std::fopen(path.c_str(), "w");
  if (f == nullptr) return false;
  bool ok = PEM_write_PrivateKey(f, key, nullptr, nullptr, 0, nullptr,
                                 nullptr) == 1;
  return std::fclose(f) == 0 && ok;
}

}  // namespace

absl::StatusOr<TestPki> MakeTestPki(const std::string& dir,
                                    const std::string& client_cn) {
  Key ca_key(EVP_EC_gen("P-256"));
  Key server_key(EVP_EC_gen("P-256"));
  Key client_key(EVP_EC_gen("P-256"));
  if (!ca_key || !server_key || !client_key) {
    return absl::InternalError("EC key generation failed");
  }
  Cert ca = MakeCert(ca_key.get(), "detcd test CA", 1, nullptr, nullptr,
                     /*ca=*/true, nullptr, nullptr);
  if (!ca) return absl::InternalError("CA certificate failed");
  Cert server = MakeCert(server_key.get(), "detcd-server", 2, ca.get(),
                         ca_key.get(), false,
                         "DNS:localhost,IP:127.0.0.1,IP:::1",
                         "serverAuth,clientAuth");
  Cert client = MakeCert(client_key.get(), client_cn, 3, ca.get(),
                         ca_key.get(), false, nullptr, "clientAuth");
  if (!server || !client) {
    return absl::InternalError("leaf certificate failed");
  }
  TestPki p;
  p.ca_file = dir + "/ca.pem";
  p.server_cert_file = dir + "/server.pem";
  p.server_key_file = dir + "/server-key.pem";
  p.client_cert_file = dir + "/client.pem";
  p.client_key_file = dir + "/client-key.pem";
  if (!WriteCert(p.ca_file, ca.get()) ||
      !WriteCert(p.server_cert_file, server.get()) ||
      !WriteKey(p.server_key_file, server_key.get()) ||
      !WriteCert(p.client_cert_file, client.get()) ||
      !WriteKey(p.client_key_file, client_key.get())) {
    return absl::InternalError(absl::StrCat("cannot write PEM files in ", dir));
  }
  return p;
}

std::string ReadFileOrEmpty(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

}  // namespace detcd::shim::testing
