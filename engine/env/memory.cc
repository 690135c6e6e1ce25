#include <algorithm>

#include "engine/env/env.h"

namespace detcd::env {

ReadBehind ReleaseBehind(Memory* memory, const char* begin) {
  if (memory == nullptr) return nullptr;
  const size_t step = std::max<size_t>(1, memory->release_step());
  return [memory, step, from = begin](const char* upto) mutable {
    if (upto > from && static_cast<size_t>(upto - from) >= step) {
      from = memory->ReleaseRead(from, upto);
    }
  };
}

}  // namespace detcd::env
