// Names the calling thread (what top -H, perf and gdb show; at most 15
// characters are kept), so a profile of a member says which of its
// threads spent the time, and sets its scheduling class.
//
// The engine thread runs every request, raft step and apply in turn: it
// is a member's bottleneck. The helper threads (disk, peer transport,
// gRPC loop, accept) mostly sleep and are woken by it or for it; as
// ordinary threads, one woken on the engine's CPU preempted the engine at
// once (CFS favours a thread that slept), so the engine waited while the
// helper ran a few microseconds, and paid two context switches. Helpers
// run as SCHED_BATCH, which never preempts on wake-up (they still get
// their fair share, and an idle CPU at once): on 3 members under 100
// clients the engines had 0.23 involuntary switches per put. A/B of the
// same binary (docs/DESIGN.md, "Helper threads run as SCHED_BATCH").
#ifndef DETCD_SHIM_THREAD_NAME_H_
#define DETCD_SHIM_THREAD_NAME_H_

#include <pthread.h>
#include <sched.h>

#include <string>

namespace detcd::shim {

enum class ThreadKind { kEngine, kHelper };

inline void NameThisThread(std::string name,
                           ThreadKind kind = ThreadKind::kHelper) {
  if (name.size() > 15) name.resize(15);
  pthread_setname_np(pthread_self(), name.c_str());
  if (kind == ThreadKind::kHelper) {
    // Unprivileged and cannot fail for the calling thread; if it did, the
    // thread would only keep the default class.
    sched_param sp{};
    pthread_setschedparam(pthread_self(), SCHED_BATCH, &sp);
  }
}

}  // namespace detcd::shim

#endif  // DETCD_SHIM_THREAD_NAME_H_
