// Password hashes as etcd keeps them: bcrypt, through libxcrypt
// (crypt_gensalt_rn / crypt_rn with the "$2b$" prefix). Both functions are
// pure: the salt comes from the caller (the member's Rng), so hashing stays
// deterministic in the simulator.
#ifndef DETCD_ENGINE_AUTH_BCRYPT_H_
#define DETCD_ENGINE_AUTH_BCRYPT_H_

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace detcd::auth {

// etcd's --bcrypt-cost bounds and default (golang.org/x/crypto/bcrypt).
inline constexpr int kBcryptMinCost = 4;
inline constexpr int kBcryptMaxCost = 31;
inline constexpr int kBcryptDefaultCost = 10;

// The bcrypt hash of `password` at `cost` (kBcryptMinCost..kBcryptMaxCost)
// with the given 16 salt bytes. A password with a NUL byte is refused.
absl::StatusOr<std::string> BcryptHash(std::string_view password, int cost,
                                       const std::array<uint8_t, 16>& salt);
// True if `password` matches `hash` (a bcrypt hash; anything else: false).
bool BcryptMatches(std::string_view hash, std::string_view password);

}  // namespace detcd::auth

#endif  // DETCD_ENGINE_AUTH_BCRYPT_H_
