#include "shim/auth_token.h"

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include <fstream>
#include <map>
#include <optional>
#include <sstream>
#include <utility>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "nlohmann/json.hpp"

namespace detcd::shim {
namespace {

absl::Status ErrInvalidAuthOpts() {
  return absl::InvalidArgumentError("auth: invalid auth options");
}
absl::Status ErrInvalidAuthMethod() {
  return absl::InvalidArgumentError("auth: invalid auth signature method");
}
absl::Status ErrMissingKey() {
  return absl::InvalidArgumentError("auth: missing key data");
}
absl::Status ErrKeyMismatch() {
  return absl::InvalidArgumentError("auth: public and private keys don't match");
}
absl::Status ErrVerifyOnly() {
  return absl::UnknownError("auth: token signing attempted with verify-only key");
}

struct PkeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
using Pkey = std::unique_ptr<EVP_PKEY, PkeyFree>;

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::NotFoundError("open " + path + ": no such file or directory");
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

Pkey ParsePrivate(const std::string& pem) {
  BIO* b = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  EVP_PKEY* k = PEM_read_bio_PrivateKey(b, nullptr, nullptr, nullptr);
  BIO_free(b);
  return Pkey(k);
}

Pkey ParsePublic(const std::string& pem) {
  BIO* b = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  EVP_PKEY* k = PEM_read_bio_PUBKEY(b, nullptr, nullptr, nullptr);
  BIO_free(b);
  if (k != nullptr) return Pkey(k);
  // A certificate holding the key, as Go's parsers accept.
  b = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  X509* x = PEM_read_bio_X509(b, nullptr, nullptr, nullptr);
  BIO_free(b);
  if (x == nullptr) return nullptr;
  k = X509_get_pubkey(x);
  X509_free(x);
  return Pkey(k);
}

std::string B64Url(std::string_view in) {
  std::string out;
  absl::WebSafeBase64Escape(absl::string_view(in.data(), in.size()), &out);
  return out;
}

enum class Family { kRsa, kPss, kEc, kHmac };

struct Method {
  Family family;
  const EVP_MD* (*md)();
  int ec_bytes;  // r and s size for ECDSA
};

std::optional<Method> MethodFor(const std::string& alg) {
  static const std::map<std::string, Method> kMethods = {
      {"RS256", {Family::kRsa, EVP_sha256, 0}},
      {"RS384", {Family::kRsa, EVP_sha384, 0}},
      {"RS512", {Family::kRsa, EVP_sha512, 0}},
      {"PS256", {Family::kPss, EVP_sha256, 0}},
      {"PS384", {Family::kPss, EVP_sha384, 0}},
      {"PS512", {Family::kPss, EVP_sha512, 0}},
      {"ES256", {Family::kEc, EVP_sha256, 32}},
      {"ES384", {Family::kEc, EVP_sha384, 48}},
      {"ES512", {Family::kEc, EVP_sha512, 66}},
      {"HS256", {Family::kHmac, EVP_sha256, 0}},
      {"HS384", {Family::kHmac, EVP_sha384, 0}},
      {"HS512", {Family::kHmac, EVP_sha512, 0}},
  };
  auto it = kMethods.find(alg);
  if (it == kMethods.end()) return std::nullopt;
  return it->second;
}

class JwtTokenProvider final : public auth::TokenProvider {
 public:
  JwtTokenProvider(std::string alg, Method m, Pkey priv, Pkey pub,
                   std::string secret, int64_t ttl_s,
                   std::function<int64_t()> now_s)
      : alg_(std::move(alg)),
        m_(m),
        priv_(std::move(priv)),
        pub_(std::move(pub)),
        secret_(std::move(secret)),
        ttl_s_(ttl_s),
        now_s_(std::move(now_s)) {}

  void Enable() override {}
  void Disable() override {}
  void InvalidateUser(std::string_view) override {}
  std::string GenTokenPrefix() override { return ""; }

  absl::StatusOr<std::string> Assign(std::string_view user, uint64_t revision,
                                     uint64_t, std::string_view) override {
    if (m_.family != Family::kHmac && priv_ == nullptr) return ErrVerifyOnly();
    // Go's jwt: header then claims, each JSON with sorted keys.
    nlohmann::json header = {{"alg", alg_}, {"typ", "JWT"}};
    nlohmann::json claims = {{"username", std::string(user)},
                             {"revision", revision},
                             {"exp", now_s_() + ttl_s_}};
    // Go's encoding/json writes invalid UTF-8 as U+FFFD; nlohmann would
    // throw (fuzz_auth_token: a user name with a 0xff byte ended the process).
    const auto replace = nlohmann::json::error_handler_t::replace;
    const std::string input = B64Url(header.dump(-1, ' ', false, replace)) +
                              "." + B64Url(claims.dump(-1, ' ', false, replace));
    absl::StatusOr<std::string> sig = Sign(input);
    if (!sig.ok()) return sig.status();
    return input + "." + B64Url(*sig);
  }

  std::optional<auth::AuthInfo> Info(std::string_view token,
                                     uint64_t) override {
    std::vector<std::string> parts =
        absl::StrSplit(absl::string_view(token.data(), token.size()), '.');
    if (parts.size() != 3) return std::nullopt;
    std::string header_json, claims_json, sig;
    if (!absl::WebSafeBase64Unescape(parts[0], &header_json) ||
        !absl::WebSafeBase64Unescape(parts[1], &claims_json) ||
        !absl::WebSafeBase64Unescape(parts[2], &sig)) {
      return std::nullopt;
    }
    nlohmann::json header =
        nlohmann::json::parse(header_json, nullptr, /*allow_exceptions=*/false);
    nlohmann::json claims =
        nlohmann::json::parse(claims_json, nullptr, /*allow_exceptions=*/false);
    if (!header.is_object() || !claims.is_object()) return std::nullopt;
    auto alg = header.find("alg");
    if (alg == header.end() || !alg->is_string() || *alg != alg_) {
      return std::nullopt;  // "invalid signing method"
    }
    const std::string input = parts[0] + "." + parts[1];
    if (!Verify(input, sig)) return std::nullopt;
    auto exp = claims.find("exp");
    if (exp != claims.end()) {
      if (!exp->is_number() || now_s_() > exp->get<double>()) {
        return std::nullopt;  // expired
      }
    }
    auto user = claims.find("username");
    auto rev = claims.find("revision");
    if (user == claims.end() || !user->is_string() || rev == claims.end() ||
        !rev->is_number()) {
      return std::nullopt;
    }
    // Exact for the unsigned integers we write (etcd reads a float64,
    // which agrees up to 2^53); other numbers go through a double, and
    // one no uint64 can hold is refused rather than cast (undefined).
    uint64_t revision = 0;
    if (rev->is_number_unsigned()) {
      revision = rev->get<uint64_t>();
    } else {
      const double d = rev->get<double>();
      if (!(d >= 0 && d < 18446744073709551616.0)) return std::nullopt;
      revision = static_cast<uint64_t>(d);
    }
    return auth::AuthInfo{user->get<std::string>(), revision};
  }

 private:
  absl::StatusOr<std::string> Sign(const std::string& input) const {
    if (m_.family == Family::kHmac) {
      unsigned char out[EVP_MAX_MD_SIZE];
      unsigned int n = 0;
      if (HMAC(m_.md(), secret_.data(), static_cast<int>(secret_.size()),
               reinterpret_cast<const unsigned char*>(input.data()),
               input.size(), out, &n) == nullptr) {
        return absl::InternalError("jwt: hmac failed");
      }
      return std::string(reinterpret_cast<char*>(out), n);
    }
    EVP_MD_CTX* ctx = EVP_MD_CTX_new();
    EVP_PKEY_CTX* pctx = nullptr;
    std::string sig;
    bool ok = EVP_DigestSignInit(ctx, &pctx, m_.md(), nullptr, priv_.get()) == 1;
    if (ok && m_.family == Family::kPss) {
      // Go's jwt signs PSS with a salt as long as the hash.
      ok = EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) == 1 &&
           EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST) == 1;
    }
    size_t n = 0;
    ok = ok &&
         EVP_DigestSign(ctx, nullptr, &n,
                        reinterpret_cast<const unsigned char*>(input.data()),
                        input.size()) == 1;
    if (ok) {
      sig.resize(n);
      ok = EVP_DigestSign(ctx, reinterpret_cast<unsigned char*>(sig.data()), &n,
                          reinterpret_cast<const unsigned char*>(input.data()),
                          input.size()) == 1;
      sig.resize(n);
    }
    EVP_MD_CTX_free(ctx);
    if (!ok) return absl::InternalError("jwt: signing failed");
    if (m_.family == Family::kEc) return DerToRaw(sig);
    return sig;
  }

  bool Verify(const std::string& input, const std::string& sig) const {
    if (m_.family == Family::kHmac) {
      absl::StatusOr<std::string> want = Sign(input);
      return want.ok() && want->size() == sig.size() &&
             CRYPTO_memcmp(want->data(), sig.data(), sig.size()) == 0;
    }
    EVP_PKEY* key = pub_ != nullptr ? pub_.get() : priv_.get();
    std::string der = sig;
    if (m_.family == Family::kEc) {
      std::optional<std::string> d = RawToDer(sig);
      if (!d.has_value()) return false;
      der = *std::move(d);
    }
    EVP_MD_CTX* ctx = EVP_MD_CTX_new();
    EVP_PKEY_CTX* pctx = nullptr;
    bool ok = EVP_DigestVerifyInit(ctx, &pctx, m_.md(), nullptr, key) == 1;
    if (ok && m_.family == Family::kPss) {
      ok = EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) == 1 &&
           EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_AUTO) == 1;
    }
    ok = ok &&
         EVP_DigestVerify(ctx, reinterpret_cast<const unsigned char*>(der.data()),
                          der.size(),
                          reinterpret_cast<const unsigned char*>(input.data()),
                          input.size()) == 1;
    EVP_MD_CTX_free(ctx);
    return ok;
  }

  // JWS ECDSA signatures are r || s, each padded to the curve's size.
  absl::StatusOr<std::string> DerToRaw(const std::string& der) const {
    const unsigned char* p = reinterpret_cast<const unsigned char*>(der.data());
    ECDSA_SIG* s = d2i_ECDSA_SIG(nullptr, &p, static_cast<long>(der.size()));
    if (s == nullptr) return absl::InternalError("jwt: bad ECDSA signature");
    std::string out(2 * m_.ec_bytes, '\0');
    const bool ok =
        BN_bn2binpad(ECDSA_SIG_get0_r(s),
                     reinterpret_cast<unsigned char*>(out.data()),
                     m_.ec_bytes) == m_.ec_bytes &&
        BN_bn2binpad(ECDSA_SIG_get0_s(s),
                     reinterpret_cast<unsigned char*>(out.data()) + m_.ec_bytes,
                     m_.ec_bytes) == m_.ec_bytes;
    ECDSA_SIG_free(s);
    if (!ok) return absl::InternalError("jwt: ECDSA key does not fit the method");
    return out;
  }

  std::optional<std::string> RawToDer(const std::string& raw) const {
    if (static_cast<int>(raw.size()) != 2 * m_.ec_bytes) return std::nullopt;
    const auto* p = reinterpret_cast<const unsigned char*>(raw.data());
    BIGNUM* r = BN_bin2bn(p, m_.ec_bytes, nullptr);
    BIGNUM* s = BN_bin2bn(p + m_.ec_bytes, m_.ec_bytes, nullptr);
    ECDSA_SIG* sig = ECDSA_SIG_new();
    ECDSA_SIG_set0(sig, r, s);
    unsigned char* der = nullptr;
    const int n = i2d_ECDSA_SIG(sig, &der);
    ECDSA_SIG_free(sig);
    if (n <= 0) return std::nullopt;
    std::string out(reinterpret_cast<char*>(der), n);
    OPENSSL_free(der);
    return out;
  }

  std::string alg_;
  Method m_;
  Pkey priv_;
  Pkey pub_;
  std::string secret_;
  int64_t ttl_s_;
  std::function<int64_t()> now_s_;
};

}  // namespace

absl::StatusOr<std::shared_ptr<auth::TokenProvider>> MakeTokenProvider(
    const std::string& auth_token, std::function<int64_t()> now_s) {
  // etcd's decomposeOpts: "type,k=v,k=v"; a repeated or malformed option
  // is an error.
  std::vector<std::string> opts = absl::StrSplit(auth_token, ',');
  const std::string type = opts[0];
  std::map<std::string, std::string> kv;
  for (size_t i = 1; i < opts.size(); ++i) {
    std::vector<std::string> pair = absl::StrSplit(opts[i], '=');
    if (pair.size() != 2 || kv.contains(pair[0])) return ErrInvalidAuthOpts();
    kv[pair[0]] = pair[1];
  }
  if (type == "simple") return std::shared_ptr<auth::TokenProvider>();
  if (type != "jwt") return ErrInvalidAuthOpts();
  int64_t ttl_s = 300;  // etcd's jwt DefaultTTL: 5 minutes
  if (!kv["ttl"].empty()) {
    absl::Duration d;
    if (!absl::ParseDuration(kv["ttl"], &d)) return ErrInvalidAuthOpts();
    ttl_s = absl::ToInt64Seconds(d);
  }
  std::string pub_pem, priv_pem;
  for (auto [name, out] : {std::pair{"pub-key", &pub_pem},
                           std::pair{"priv-key", &priv_pem}}) {
    if (kv[name].empty()) continue;
    absl::StatusOr<std::string> f = ReadFile(kv[name]);
    if (!f.ok()) return f.status();
    *out = *std::move(f);
  }
  const std::string alg = kv["sign-method"];
  std::optional<Method> m = MethodFor(alg);
  if (!m.has_value()) return ErrInvalidAuthMethod();
  if (m->family == Family::kHmac) {
    if (priv_pem.empty()) return ErrMissingKey();
    return std::shared_ptr<auth::TokenProvider>(
        std::make_shared<JwtTokenProvider>(alg, *m, nullptr, nullptr, priv_pem,
                                           ttl_s, std::move(now_s)));
  }
  Pkey priv, pub;
  if (!priv_pem.empty()) {
    priv = ParsePrivate(priv_pem);
    if (priv == nullptr) return absl::InvalidArgumentError("jwt: bad private key");
  }
  if (!pub_pem.empty()) {
    pub = ParsePublic(pub_pem);
    if (pub == nullptr) return absl::InvalidArgumentError("jwt: bad public key");
  }
  if (priv == nullptr && pub == nullptr) return ErrMissingKey();
  const int want = m->family == Family::kEc ? EVP_PKEY_EC : EVP_PKEY_RSA;
  for (EVP_PKEY* k : {priv.get(), pub.get()}) {
    if (k != nullptr && EVP_PKEY_get_base_id(k) != want) {
      return absl::InvalidArgumentError("jwt: key type does not fit " + alg);
    }
  }
  if (priv != nullptr && pub != nullptr &&
      EVP_PKEY_eq(priv.get(), pub.get()) != 1) {
    return ErrKeyMismatch();
  }
  return std::shared_ptr<auth::TokenProvider>(std::make_shared<JwtTokenProvider>(
      alg, *m, std::move(priv), std::move(pub), "", ttl_s, std::move(now_s)));
}

}  // namespace detcd::shim
