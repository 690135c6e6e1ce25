// Little helpers for compact binary encodings: varints and length-prefixed
// strings. Decoders never read past the end and report failure instead of
// trusting their input.
#ifndef DETCD_ENGINE_UTIL_CODING_H_
#define DETCD_ENGINE_UTIL_CODING_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace detcd::coding {

inline void PutVarint64(std::string* out, uint64_t v) {
  while (v >= 0x80) {
    out->push_back(static_cast<char>(v | 0x80));
    v >>= 7;
  }
  out->push_back(static_cast<char>(v));
}

// The bytes PutVarint64 appends for v (also protobuf's varint size).
inline size_t VarintLength(uint64_t v) {
  size_t n = 1;
  while (v >= 0x80) {
    v >>= 7;
    ++n;
  }
  return n;
}

inline void PutLengthPrefixed(std::string* out, std::string_view s) {
  PutVarint64(out, s.size());
  out->append(s.data(), s.size());
}

inline void PutFixed32(std::string* out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out->push_back(static_cast<char>(v >> (8 * i)));
}

inline uint32_t DecodeFixed32(const char* p) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i) {
    v |= static_cast<uint32_t>(static_cast<unsigned char>(p[i])) << (8 * i);
  }
  return v;
}

// Reads from a string_view, consuming it. Every getter returns false on
// truncated or malformed input.
class Reader {
 public:
  explicit Reader(std::string_view in) : in_(in) {}
  bool GetVarint64(uint64_t* v) {
    uint64_t result = 0;
    for (int shift = 0; shift <= 63 && !in_.empty(); shift += 7) {
      uint64_t byte = static_cast<unsigned char>(in_[0]);
      in_.remove_prefix(1);
      if (shift == 63 && byte > 1) return false;  // overflow
      result |= (byte & 0x7f) << shift;
      if (!(byte & 0x80)) {
        *v = result;
        return true;
      }
    }
    return false;
  }
  bool GetByte(uint8_t* b) {
    if (in_.empty()) return false;
    *b = static_cast<uint8_t>(in_[0]);
    in_.remove_prefix(1);
    return true;
  }
  bool GetLengthPrefixed(std::string* s) {
    uint64_t len = 0;
    if (!GetVarint64(&len) || len > in_.size()) return false;
    s->assign(in_.data(), len);
    in_.remove_prefix(len);
    return true;
  }
  // The same without a copy: *s views the input (it must outlive *s).
  bool GetLengthPrefixed(std::string_view* s) {
    uint64_t len = 0;
    if (!GetVarint64(&len) || len > in_.size()) return false;
    *s = in_.substr(0, len);
    in_.remove_prefix(len);
    return true;
  }
  bool empty() const { return in_.empty(); }
  // What is left to read.
  std::string_view rest() const { return in_; }
  size_t remaining() const { return in_.size(); }

 private:
  std::string_view in_;
};

}  // namespace detcd::coding

#endif  // DETCD_ENGINE_UTIL_CODING_H_
