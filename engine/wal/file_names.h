// Paths and the "%016x-%016x<suffix>" file names shared by WAL segments
// (seq, first index) and snapshot files (term, index).
#ifndef DETCD_ENGINE_WAL_FILE_NAMES_H_
#define DETCD_ENGINE_WAL_FILE_NAMES_H_

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/strings/str_format.h"

namespace detcd::wal {

inline std::string Join(const std::string& dir, const std::string& name) {
  return dir.empty() ? name : dir + "/" + name;
}

// The directory holding dir: "" (the disk's root) for a top-level relative
// path, "/" for a top-level absolute one; the root is its own parent.
inline std::string Parent(const std::string& dir) {
  size_t slash = dir.rfind('/');
  if (slash == std::string::npos) return std::string();
  if (slash == 0) return "/";
  return dir.substr(0, slash);
}

inline std::string PairName(uint64_t a, uint64_t b, std::string_view suffix) {
  return absl::StrFormat("%016x-%016x%s", a, b, suffix);
}

// Parses exactly 16 lowercase hex digits.
inline bool ParseHex16(std::string_view s, uint64_t* v) {
  if (s.size() != 16) return false;
  uint64_t r = 0;
  for (char c : s) {
    int d;
    if (c >= '0' && c <= '9') {
      d = c - '0';
    } else if (c >= 'a' && c <= 'f') {
      d = c - 'a' + 10;
    } else {
      return false;
    }
    r = (r << 4) | static_cast<uint64_t>(d);
  }
  *v = r;
  return true;
}

// The inverse of PairName; false for any other name.
inline bool ParsePairName(std::string_view name, std::string_view suffix,
                          uint64_t* a, uint64_t* b) {
  if (name.size() != 33 + suffix.size() || name[16] != '-' ||
      name.substr(33) != suffix) {
    return false;
  }
  return ParseHex16(name.substr(0, 16), a) &&
         ParseHex16(name.substr(17, 16), b);
}

}  // namespace detcd::wal

#endif  // DETCD_ENGINE_WAL_FILE_NAMES_H_
