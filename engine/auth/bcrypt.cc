#include "engine/auth/bcrypt.h"

#include <crypt.h>

#include <cstring>
#include <memory>

namespace detcd::auth {

absl::StatusOr<std::string> BcryptHash(std::string_view password, int cost,
                                       const std::array<uint8_t, 16>& salt) {
  if (cost < kBcryptMinCost || cost > kBcryptMaxCost) {
    return absl::InvalidArgumentError("bcrypt: cost out of range");
  }
  if (password.find('\0') != std::string_view::npos) {
    return absl::InvalidArgumentError("bcrypt: password holds a NUL byte");
  }
  char setting[CRYPT_GENSALT_OUTPUT_SIZE];
  if (crypt_gensalt_rn("$2b$", static_cast<unsigned long>(cost),
                       reinterpret_cast<const char*>(salt.data()),
                       static_cast<int>(salt.size()), setting,
                       sizeof(setting)) == nullptr) {
    return absl::InternalError("bcrypt: crypt_gensalt_rn failed");
  }
  auto data = std::make_unique<crypt_data>();  // large; keep it off the stack
  std::memset(data.get(), 0, sizeof(crypt_data));
  const std::string phrase(password);
  const char* out = crypt_rn(phrase.c_str(), setting, data.get(),
                             static_cast<int>(sizeof(crypt_data)));
  if (out == nullptr || out[0] == '*') {
    return absl::InternalError("bcrypt: crypt_rn failed");
  }
  return std::string(out);
}

bool BcryptMatches(std::string_view hash, std::string_view password) {
  if (hash.size() < 7 || hash[0] != '$' || hash[1] != '2' ||
      password.find('\0') != std::string_view::npos) {
    return false;
  }
  auto data = std::make_unique<crypt_data>();
  std::memset(data.get(), 0, sizeof(crypt_data));
  const std::string phrase(password);
  const std::string setting(hash);
  const char* out = crypt_rn(phrase.c_str(), setting.c_str(), data.get(),
                             static_cast<int>(sizeof(crypt_data)));
  if (out == nullptr || out[0] == '*') return false;
  // Constant-time comparison of equal-length strings.
  const size_t n = std::strlen(out);
  if (n != hash.size()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < n; ++i) {
    diff |= static_cast<unsigned char>(out[i] ^ hash[i]);
  }
  return diff == 0;
}

}  // namespace detcd::auth
