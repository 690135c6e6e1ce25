// env::Memory for the simulator: a range given back is overwritten with a
// fixed byte, so a reader that reads behind the point it said it was done
// with (a snapshot file being decompressed, an image being restored) reads
// garbage and fails its checks, in every run that restarts a member from a
// snapshot. Deterministic: the bytes are always the same.
#ifndef DETCD_SIM_SIM_MEMORY_H_
#define DETCD_SIM_SIM_MEMORY_H_

#include <cstring>

#include "engine/env/env.h"

namespace detcd::sim {

class SimMemory final : public env::Memory {
 public:
  static constexpr char kScribble = '\xdb';

  const char* ReleaseRead(const char* begin, const char* end) override {
    if (end <= begin) return begin;
    // The reader owns the buffer and never reads these bytes again: the
    // simulator takes the real server's "contents lost" literally.
    std::memset(const_cast<char*>(begin), kScribble,
                static_cast<size_t>(end - begin));
    return end;
  }
};

}  // namespace detcd::sim

#endif  // DETCD_SIM_SIM_MEMORY_H_
