// FNV-1a: a stable hash (same value across processes, builds and platforms,
// unlike std::hash), for seeds, trace hashes and state fingerprints.
#ifndef DETCD_ENGINE_UTIL_HASH_H_
#define DETCD_ENGINE_UTIL_HASH_H_

#include <cstdint>
#include <string_view>

namespace detcd::util {

inline constexpr uint64_t kFnvOffset = 0xcbf29ce484222325ULL;

// Hashes s, continuing from h (so hashes can be chained).
inline uint64_t Fnv1a(std::string_view s, uint64_t h = kFnvOffset) {
  for (unsigned char c : s) {
    h ^= c;
    h *= 0x100000001b3ULL;
  }
  return h;
}

}  // namespace detcd::util

#endif  // DETCD_ENGINE_UTIL_HASH_H_
