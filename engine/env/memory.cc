#include "engine/env/env.h"

namespace detcd::env {

ReadBehind ReleaseBehind(Memory* memory, const char* begin) {
  if (memory == nullptr) return nullptr;
  return [memory, from = begin](const char* upto) mutable {
    if (upto > from) from = memory->ReleaseRead(from, upto);
  };
}

}  // namespace detcd::env
