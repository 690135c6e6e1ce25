// What every fuzz target defines: libFuzzer's entry points. A target must
// not keep state between inputs that changes what a later input does, so
// that a crash found by libFuzzer replays from its one input file.
#ifndef DETCD_FUZZ_FUZZ_TARGET_H_
#define DETCD_FUZZ_FUZZ_TARGET_H_

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace detcd::fuzz {

inline std::string_view AsView(const uint8_t* data, size_t size) {
  return std::string_view(reinterpret_cast<const char*>(data), size);
}

// Takes one byte off the front of *in (0 if empty): a target's cheap way to
// let the fuzzer choose among modes.
inline uint8_t TakeByte(std::string_view* in) {
  if (in->empty()) return 0;
  const uint8_t b = static_cast<uint8_t>((*in)[0]);
  in->remove_prefix(1);
  return b;
}

// A property the target checks failed: abort, so libFuzzer (or the replay
// driver) reports the input. Targets use it for oracles, not for input
// errors.
[[noreturn]] inline void Fail(const char* what) {
  std::fprintf(stderr, "fuzz: property failed: %s\n", what);
  std::abort();
}

}  // namespace detcd::fuzz

#endif  // DETCD_FUZZ_FUZZ_TARGET_H_
