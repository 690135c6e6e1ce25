// CRC32C (Castagnoli, polynomial 0x1EDC6F41, reflected 0x82F63B78), the
// checksum of every WAL record and snapshot file. SSE4.2's crc32
// instruction where the CPU has it, else a table loop (slicing-by-8); both
// compute the same values (crc32c_test checks them against each other).
#ifndef DETCD_ENGINE_WAL_CRC32C_H_
#define DETCD_ENGINE_WAL_CRC32C_H_

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace detcd::crc32c {

// Returns the CRC32C of concat(A, data[0,n)) where crc is the CRC32C of A.
// Extend(0, ...) starts a new checksum.
uint32_t Extend(uint32_t crc, const char* data, size_t n);

// The table loop alone (what Extend uses without SSE4.2); for tests.
uint32_t ExtendPortable(uint32_t crc, const char* data, size_t n);

inline uint32_t Value(const char* data, size_t n) { return Extend(0, data, n); }
inline uint32_t Value(std::string_view data) {
  return Extend(0, data.data(), data.size());
}

// A stored CRC is masked so that the CRC of a string holding its own
// (unmasked) CRC is not trivially predictable, and an all-zero region never
// carries a valid checksum (as in LevelDB's log format).
inline constexpr uint32_t kMaskDelta = 0xa282ead8u;

inline uint32_t Mask(uint32_t crc) {
  return ((crc >> 15) | (crc << 17)) + kMaskDelta;
}

inline uint32_t Unmask(uint32_t masked) {
  uint32_t rot = masked - kMaskDelta;
  return (rot >> 17) | (rot << 15);
}

}  // namespace detcd::crc32c

#endif  // DETCD_ENGINE_WAL_CRC32C_H_
