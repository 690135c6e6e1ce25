// Auth token parsers: etcd's simple tokens (engine/auth/token.h) and JWTs
// (shim/auth_token.h, OpenSSL), as every request's "token" metadata reaches
// them.
//
// Input: byte(mode) then bytes:
//   mode 0: the bytes are a token presented to each provider (simple, JWT
//           ES256, JWT HS256), each holding one valid token of its own;
//   mode 1: varint(revision) then a user name: each provider issues a
//           token for it, which must name that user and revision, and the
//           token cut short or with a byte changed must not name anyone
//           else;
//   mode 2: "header JSON\nclaims JSON", signed with the HS256 provider's
//           secret: the claims parser after a good signature (what a
//           member holding the key could issue).
// Oracles: no crash; issued tokens verify to what was issued; tampered
// tokens never verify to another identity.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <string>

#include <openssl/hmac.h>

#include "absl/strings/escaping.h"
#include "nlohmann/json.hpp"
#include "engine/auth/token.h"
#include "engine/util/coding.h"
#include "fuzz/fuzz_target.h"
#include "shim/auth_token.h"

namespace detcd::fuzz {
namespace {

// Test keys, used only here.
constexpr char kEcPrivate[] =
    "-----BEGIN PRIVATE KEY-----\n"
    "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgq2/J5oYSwKz4028v\n"
    "5eDUTHjxkxJ9oMb32YI+ud95l12hRANCAARC79iQvV16fDz2kLOWrTCIu034Kaj1\n"
    "czzBYTf6bGuS+HJkcO+/i+pVZh62tAwoGxO5HcZUSq2WTImZATBceG40\n"
    "-----END PRIVATE KEY-----\n";
constexpr char kEcPublic[] =
    "-----BEGIN PUBLIC KEY-----\n"
    "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEQu/YkL1denw89pCzlq0wiLtN+Cmo\n"
    "9XM8wWE3+mxrkvhyZHDvv4vqVWYetrQMKBsTuR3GVEqtlkyJmQEwXHhuNA==\n"
    "-----END PUBLIC KEY-----\n";
constexpr char kHmacSecret[] = "detcd-fuzz-hmac-secret";
constexpr int64_t kNowS = 1'700'000'000;

std::string ScratchFile(const char* what, const char* contents) {
  const char* tmp = std::getenv("TMPDIR");
  std::string path = std::string(tmp && *tmp ? tmp : "/tmp") +
                     "/detcd-fuzz-" + what + "-" + std::to_string(getpid());
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f << contents;
  if (!f) Fail("cannot write a scratch key file");
  return path;
}

struct Providers {
  std::unique_ptr<auth::SimpleTokenProvider> simple;
  std::shared_ptr<auth::TokenProvider> es256;
  std::shared_ptr<auth::TokenProvider> hs256;
};

Providers& Get() {
  static Providers* p = [] {
    auto* out = new Providers;
    const std::string ec_priv = ScratchFile("ec.pem", kEcPrivate);
    const std::string ec_pub = ScratchFile("ec-pub.pem", kEcPublic);
    const std::string hmac = ScratchFile("hmac.key", kHmacSecret);
    auto now = [] { return kNowS; };
    auto es = shim::MakeTokenProvider(
        "jwt,pub-key=" + ec_pub + ",priv-key=" + ec_priv +
            ",sign-method=ES256,ttl=5m", now);
    auto hs = shim::MakeTokenProvider(
        "jwt,priv-key=" + hmac + ",sign-method=HS256,ttl=5m", now);
    std::remove(ec_priv.c_str());
    std::remove(ec_pub.c_str());
    std::remove(hmac.c_str());
    if (!es.ok() || !hs.ok() || *es == nullptr || *hs == nullptr) {
      std::fprintf(stderr, "jwt providers: %s / %s\n",
                   es.status().ToString().c_str(),
                   hs.status().ToString().c_str());
      Fail("cannot make the JWT providers");
    }
    out->es256 = *es;
    out->hs256 = *hs;
    return out;
  }();
  // The simple provider keeps issued tokens: a fresh one per input.
  uint64_t r = 1;
  p->simple = std::make_unique<auth::SimpleTokenProvider>(
      [] { return kNowS * 1'000'000'000; }, [r]() mutable { return r++; },
      auth::SimpleTokenProvider::kDefaultTtlNs);
  p->simple->Enable();
  return *p;
}

bool ValidUtf8(const std::string& s) {
  try {
    (void)nlohmann::json(s).dump();
    return true;
  } catch (const nlohmann::json::exception&) {
    return false;
  }
}

void CheckIssued(auth::TokenProvider& tp, const std::string& user,
                 uint64_t revision, bool simple) {
  auto token = tp.Assign(user, revision, /*index=*/7, tp.GenTokenPrefix());
  if (!token.ok()) return;  // e.g. a user name JSON cannot carry
  auto info = tp.Info(*token, revision);
  if (!info) Fail("an issued token does not verify");
  // A JWT carries the name as JSON, which (as Go's encoder) writes invalid
  // UTF-8 as U+FFFD: only a valid UTF-8 name comes back unchanged.
  if (info->user != user && (simple || ValidUtf8(user))) {
    Fail("an issued token does not name its user");
  }
  // A simple token speaks for the store's current revision.
  if (!simple && info->revision != revision) {
    Fail("an issued token does not carry its revision");
  }
  for (size_t cut : {size_t{1}, token->size() / 2}) {
    if (cut > token->size()) continue;
    auto short_info = tp.Info(token->substr(0, token->size() - cut), revision);
    if (short_info && short_info->user != info->user) {
      Fail("a cut token names another user");
    }
  }
  for (size_t i = 0; i < token->size(); i += 1 + token->size() / 8) {
    std::string t = *token;
    t[i] ^= 0x01;
    auto bad = tp.Info(t, revision);
    if (bad && bad->user != info->user) {
      Fail("a changed token names another user");
    }
  }
}

std::string B64Url(const std::string& s) {
  std::string out;
  absl::WebSafeBase64Escape(s, &out);
  return out;
}

}  // namespace
}  // namespace detcd::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace detcd;
  using namespace detcd::fuzz;
  std::string_view in = AsView(data, size);
  const uint8_t mode = TakeByte(&in);
  Providers& p = Get();
  switch (mode % 3) {
    case 0: {
      (void)p.simple->Assign("alice", 3, 7, p.simple->GenTokenPrefix());
      (void)p.simple->Info(in, 3);
      (void)p.es256->Info(in, 3);
      (void)p.hs256->Info(in, 3);
      break;
    }
    case 1: {
      coding::Reader r(in);
      uint64_t revision = 0;
      if (!r.GetVarint64(&revision)) break;
      const std::string user(r.rest());
      CheckIssued(*p.simple, user, revision, /*simple=*/true);
      CheckIssued(*p.es256, user, revision, /*simple=*/false);
      CheckIssued(*p.hs256, user, revision, /*simple=*/false);
      break;
    }
    case 2: {
      const size_t nl = in.find('\n');
      if (nl == std::string_view::npos) break;
      const std::string input = B64Url(std::string(in.substr(0, nl))) + "." +
                                B64Url(std::string(in.substr(nl + 1)));
      unsigned char mac[EVP_MAX_MD_SIZE];
      unsigned int n = 0;
      if (HMAC(EVP_sha256(), kHmacSecret, sizeof(kHmacSecret) - 1,
               reinterpret_cast<const unsigned char*>(input.data()),
               input.size(), mac, &n) == nullptr) {
        Fail("hmac");
      }
      const std::string token =
          input + "." + B64Url(std::string(reinterpret_cast<char*>(mac), n));
      (void)p.hs256->Info(token, 3);
      break;
    }
  }
  return 0;
}
