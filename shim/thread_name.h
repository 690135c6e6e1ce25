// Names the calling thread (what top -H, perf and gdb show; at most 15
// characters are kept), so a profile of a member says which of its
// threads spent the time.
#ifndef DETCD_SHIM_THREAD_NAME_H_
#define DETCD_SHIM_THREAD_NAME_H_

#include <pthread.h>

#include <string>

namespace detcd::shim {

inline void NameThisThread(std::string name) {
  if (name.size() > 15) name.resize(15);
  pthread_setname_np(pthread_self(), name.c_str());
}

}  // namespace detcd::shim

#endif  // DETCD_SHIM_THREAD_NAME_H_
