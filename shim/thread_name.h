// Names the calling thread (what top -H, perf and gdb show; at most 15
// characters are kept), so a profile of a member says which of its
// threads spent the time, and sets its scheduling class.
//
// Threads a request or a commit waits on (the engine, the disk thread,
// the peer transport's, the gRPC loop, the accept loop, the encoder of
// large answers) keep the default class: woken, they preempt what runs,
// so on a machine busy with other processes a commit does not wait for
// their time slices. Background threads (bcrypt, freeing memory, removing
// files) run as SCHED_BATCH, which never preempts on wake-up but still
// gets its fair share and an idle CPU at once. Until 2026-12-07 every
// helper was SCHED_BATCH, so as not to preempt the engine when it woke
// one (a tenth or more of a 3-member put's server CPU); with two busy
// processes on this 2-core machine a put then took 12 ms instead of 0.2
// (docs/DESIGN.md, "Thread classes").
#ifndef DETCD_SHIM_THREAD_NAME_H_
#define DETCD_SHIM_THREAD_NAME_H_

#include <pthread.h>
#include <sched.h>

#include <string>

namespace detcd::shim {

enum class ThreadKind {
  kEngine,      // the engine thread
  kIo,          // a thread requests or commits wait on
  kBackground,  // work nobody waits on promptly: SCHED_BATCH
};

inline void NameThisThread(std::string name, ThreadKind kind) {
  if (name.size() > 15) name.resize(15);
  pthread_setname_np(pthread_self(), name.c_str());
  if (kind == ThreadKind::kBackground) {
    // Unprivileged and cannot fail for the calling thread; if it did, the
    // thread would only keep the default class.
    sched_param sp{};
    pthread_setschedparam(pthread_self(), SCHED_BATCH, &sp);
  }
}

}  // namespace detcd::shim

#endif  // DETCD_SHIM_THREAD_NAME_H_
