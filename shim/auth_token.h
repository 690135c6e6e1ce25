// --auth-token: etcd's token provider choice. "simple" (etcd's default) is
// the engine's SimpleTokenProvider on the member's clock and Rng, so this
// returns null for it; "jwt,pub-key=F,priv-key=F,sign-method=M,ttl=D" is
// JwtTokenProvider: JSON Web Tokens signed with OpenSSL (RS256/384/512,
// PS256/384/512, ES256/384/512; HS256/384/512 with the private key file's
// bytes as the secret), claims {"username", "revision", "exp"} as etcd's
// (exp = now + ttl, Go duration, default 5m), verified by signature,
// algorithm and expiry. Only a public key: verify-only (Authenticate fails
// with "auth: token signing attempted with verify-only key").
// Errors are etcd's: "auth: invalid auth options" for a malformed option
// list or unknown type, "auth: invalid auth signature method", "auth:
// missing key data", "auth: public and private keys don't match".
#ifndef DETCD_SHIM_AUTH_TOKEN_H_
#define DETCD_SHIM_AUTH_TOKEN_H_

#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "engine/auth/token.h"

namespace detcd::shim {

// `now_s`: the wall clock in seconds (RealClock; tests pass their own).
absl::StatusOr<std::shared_ptr<auth::TokenProvider>> MakeTokenProvider(
    const std::string& auth_token, std::function<int64_t()> now_s);

}  // namespace detcd::shim

#endif  // DETCD_SHIM_AUTH_TOKEN_H_
