// --auth-token parsing and the JWT provider (shim/auth_token.h): every
// signing method signs and verifies, tokens carry user and revision, expire,
// and are refused when altered, signed by another key or with another
// method; etcd's option errors.
#include "shim/auth_token.h"

#include <openssl/evp.h>
#include <openssl/pem.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include "gtest/gtest.h"

namespace detcd::shim {
namespace {

namespace fs = std::filesystem;

class AuthTokenTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("detcd-auth-token-test-" + std::to_string(::getpid()));
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  // Writes a fresh key pair; returns "pub-key=..,priv-key=.." options.
  std::string KeyPair(const std::string& name, bool rsa, const char* curve) {
    EVP_PKEY* k = rsa ? EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", size_t{2048})
                      : EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", curve);
    EXPECT_NE(k, nullptr);
    const std::string priv = (dir_ / (name + ".key")).string();
    const std::string pub = (dir_ / (name + ".pub")).string();
    FILE* f = std::fopen(priv.c_str(), "w");
    PEM_write_PrivateKey(f, k, nullptr, nullptr, 0, nullptr, nullptr);
    std::fclose(f);
    f = std::fopen(pub.c_str(), "w");
    PEM_write_PUBKEY(f, k);
    std::fclose(f);
    EVP_PKEY_free(k);
    return "pub-key=" + pub + ",priv-key=" + priv;
  }

  std::shared_ptr<auth::TokenProvider> Make(const std::string& opts) {
    auto p = MakeTokenProvider(opts, [this] { return now_; });
    EXPECT_TRUE(p.ok()) << opts << ": " << p.status();
    return p.ok() ? *p : nullptr;
  }

  fs::path dir_;
  int64_t now_ = 1'000'000;
};

TEST_F(AuthTokenTest, SimpleIsTheEnginesAndOptionErrorsAreEtcds) {
  auto simple = MakeTokenProvider("simple", [] { return int64_t{0}; });
  ASSERT_TRUE(simple.ok());
  EXPECT_EQ(*simple, nullptr);
  EXPECT_EQ(MakeTokenProvider("nope", {}).status().message(),
            "auth: invalid auth options");
  EXPECT_EQ(MakeTokenProvider("jwt,ttl", {}).status().message(),
            "auth: invalid auth options");
  EXPECT_EQ(MakeTokenProvider("jwt,ttl=1m,ttl=2m", {}).status().message(),
            "auth: invalid auth options");
  EXPECT_EQ(MakeTokenProvider("jwt,sign-method=XX1", {}).status().message(),
            "auth: invalid auth signature method");
  EXPECT_EQ(MakeTokenProvider("jwt,sign-method=RS256", {}).status().message(),
            "auth: missing key data");
  const std::string a = KeyPair("a", true, nullptr);
  const std::string b = KeyPair("b", true, nullptr);
  const std::string mixed = a.substr(0, a.find(',')) + "," +
                            b.substr(b.find(',') + 1) + ",sign-method=RS256";
  EXPECT_EQ(MakeTokenProvider("jwt," + mixed, {}).status().message(),
            "auth: public and private keys don't match");
}

TEST_F(AuthTokenTest, EveryMethodSignsAndVerifies) {
  const std::string rsa = KeyPair("rsa", true, nullptr);
  const std::pair<const char*, std::string> cases[] = {
      {"RS256", rsa}, {"RS384", rsa}, {"RS512", rsa},
      {"PS256", rsa}, {"PS384", rsa}, {"PS512", rsa},
      {"ES256", KeyPair("p256", false, "P-256")},
      {"ES384", KeyPair("p384", false, "P-384")},
      {"ES512", KeyPair("p521", false, "P-521")},
  };
  for (const auto& [alg, keys] : cases) {
    auto p = Make("jwt," + keys + ",sign-method=" + alg + ",ttl=1m");
    ASSERT_NE(p, nullptr) << alg;
    auto tok = p->Assign("alice", 7, 3, "");
    ASSERT_TRUE(tok.ok()) << alg << tok.status();
    auto info = p->Info(*tok, 99);
    ASSERT_TRUE(info.has_value()) << alg;
    EXPECT_EQ(info->user, "alice");
    EXPECT_EQ(info->revision, 7u);  // the token's, not the store's
    // Altered claims fail the signature.
    std::string bad = *tok;
    bad[bad.find('.') + 3] ^= 1;
    EXPECT_FALSE(p->Info(bad, 99).has_value()) << alg;
  }
  // HMAC with the private key file's bytes as the secret.
  auto h = Make("jwt," + rsa + ",sign-method=HS256");
  auto tok = h->Assign("bob", 1, 1, "");
  ASSERT_TRUE(tok.ok());
  EXPECT_TRUE(h->Info(*tok, 1).has_value());
}

TEST_F(AuthTokenTest, ExpiryOtherKeysOtherMethodsAndVerifyOnly) {
  const std::string a = KeyPair("a", true, nullptr);
  auto p = Make("jwt," + a + ",sign-method=RS256,ttl=10s");
  auto tok = p->Assign("alice", 2, 1, "");
  ASSERT_TRUE(tok.ok());
  now_ += 10;
  EXPECT_TRUE(p->Info(*tok, 2).has_value());
  now_ += 1;
  EXPECT_FALSE(p->Info(*tok, 2).has_value());  // expired
  now_ -= 11;
  // Another key, another method: refused.
  auto other = Make("jwt," + KeyPair("b", true, nullptr) + ",sign-method=RS256");
  EXPECT_FALSE(other->Info(*tok, 2).has_value());
  auto ps = Make("jwt," + a + ",sign-method=PS256");
  EXPECT_FALSE(ps->Info(*tok, 2).has_value());
  EXPECT_FALSE(p->Info("a.b", 2).has_value());
  EXPECT_FALSE(p->Info("!!.??.**", 2).has_value());
  // Only the public key: verifies, cannot sign.
  auto verify = Make("jwt," + a.substr(0, a.find(',')) + ",sign-method=RS256");
  EXPECT_TRUE(verify->Info(*tok, 2).has_value());
  EXPECT_EQ(verify->Assign("x", 1, 1, "").status().message(),
            "auth: token signing attempted with verify-only key");
}

}  // namespace
}  // namespace detcd::shim
