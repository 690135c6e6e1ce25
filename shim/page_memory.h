// env::Memory for the real server: the whole pages inside a range a reader
// is done with go back to the kernel (madvise MADV_DONTNEED), so a member
// restarting from a large snapshot does not hold the file, the image and
// the store at once (docs/DESIGN.md, "Memory per key").
//
// The pages stay mapped: the allocator that owns the buffer frees it as
// usual, and a page touched again reads as zeros. Only pages wholly inside
// [begin, end) are given back, so an allocator's header before the buffer
// or another block after it is never touched.
#ifndef DETCD_SHIM_PAGE_MEMORY_H_
#define DETCD_SHIM_PAGE_MEMORY_H_

#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>

#include "engine/env/env.h"

namespace detcd::shim {

class PageMemory final : public env::Memory {
 public:
  const char* ReleaseRead(const char* begin, const char* end) override {
    const auto page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
    const uintptr_t from =
        (reinterpret_cast<uintptr_t>(begin) + page - 1) & ~(page - 1);
    const uintptr_t to = reinterpret_cast<uintptr_t>(end) & ~(page - 1);
    if (to <= from) return begin;
    // Advice only: a refusal leaves the pages held, nothing else changes.
    if (madvise(reinterpret_cast<void*>(from), to - from, MADV_DONTNEED) != 0) {
      return begin;
    }
    released_.fetch_add(to - from, std::memory_order_relaxed);
    return reinterpret_cast<const char*>(to);
  }
  // A madvise per 4 MiB read: 64 calls for a 256 MiB image.
  size_t release_step() const override { return 4 << 20; }
  // Bytes given back so far (for tests).
  uint64_t released() const {
    return released_.load(std::memory_order_relaxed);
  }

 private:
  // The engine thread's restart and the disk worker's installs both give
  // back, never at once; atomic all the same.
  std::atomic<uint64_t> released_{0};
};

}  // namespace detcd::shim

#endif  // DETCD_SHIM_PAGE_MEMORY_H_
