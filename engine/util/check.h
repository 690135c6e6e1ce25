// Always-on invariant checks. A broken invariant means the engine can no
// longer be trusted with data, so it stops the process instead of carrying
// on (Release builds keep these).
#ifndef DETCD_ENGINE_UTIL_CHECK_H_
#define DETCD_ENGINE_UTIL_CHECK_H_

#include <cstdio>
#include <cstdlib>

namespace detcd::internal {
[[noreturn]] inline void CheckFailed(const char* file, int line,
                                     const char* expr, const char* msg) {
  std::fprintf(stderr, "%s:%d: CHECK failed: %s%s%s\n", file, line, expr,
               msg[0] ? ": " : "", msg);
  std::fflush(stderr);
  std::abort();
}
}  // namespace detcd::internal

#define DETCD_CHECK(cond)                                                  \
  do {                                                                     \
    if (!(cond)) [[unlikely]]                                              \
      ::detcd::internal::CheckFailed(__FILE__, __LINE__, #cond, "");       \
  } while (0)

#define DETCD_CHECK_MSG(cond, msg)                                         \
  do {                                                                     \
    if (!(cond)) [[unlikely]]                                              \
      ::detcd::internal::CheckFailed(__FILE__, __LINE__, #cond, (msg));    \
  } while (0)

#endif  // DETCD_ENGINE_UTIL_CHECK_H_
