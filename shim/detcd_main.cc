// detcd: an etcd-compatible member. Takes etcd's flags, ETCD_* variables
// and --config-file (shim/config.h), then runs until SIGTERM or SIGINT.
#include <pthread.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "shim/config.h"
#include "shim/etcd_data_dir.h"
#include "shim/log.h"
#include "shim/posix_disk.h"
#include "shim/server.h"

extern char** environ;

int main(int argc, char** argv) {
  // Signals are taken by one thread (below); every thread started from
  // here on inherits the blocked mask.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  signal(SIGPIPE, SIG_IGN);
  // Debian's abseil checks every Mutex acquisition against a lock-order
  // graph (a debugging aid: 2-4% of a put's CPU in a perf profile of the
  // put path). Lock order is kept by design and by the tests' builds.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);

  std::vector<std::string> args(argv + 1, argv + argc);
  std::vector<std::string> env;
  for (char** e = environ; *e != nullptr; ++e) env.emplace_back(*e);
  detcd::shim::ParseOutcome p = detcd::shim::ParseServerConfig(args, env);
  if (p.action == detcd::shim::ParseOutcome::Action::kPrintAndExit) {
    std::fputs(p.output.c_str(), p.output_to_stderr ? stderr : stdout);
    return p.exit_code;
  }
  const detcd::shim::ServerConfig& c = p.config;
  detcd::shim::LogOptions lo;
  lo.level = c.log_level;
  lo.logger = c.logger;
  lo.format = c.log_format;
  lo.outputs = c.log_outputs;
  if (absl::Status s = detcd::shim::InitLogging(lo); !s.ok()) {
    std::fprintf(stderr, "detcd: %s\n", std::string(s.message()).c_str());
    return 1;
  }
  for (const std::string& w : c.warnings) DLOG_WARN(w);

  if (struct stat sb;
      ::stat((c.data_dir.empty() ? "." : c.data_dir).c_str(), &sb) == 0) {
    // A data dir etcdctl's `snapshot restore` made becomes detcd's first
    // (shim/etcd_data_dir.h), under the data dir's lock. (A data dir that
    // is not there is left alone: bad flags must not create it.)
    auto lock = detcd::shim::DataDirLock::Acquire(c.data_dir);
    if (!lock.ok()) {
      DLOG_FATAL("discovery failed",
                 {{"error", std::string(lock.status().message())}});
    }
    auto converted = detcd::shim::ConvertEtcdRestoredDataDir(c.data_dir);
    if (!converted.ok()) {
      DLOG_FATAL("discovery failed",
                 {{"error", std::string(converted.status().message())}});
    }
  }
  auto server = detcd::shim::DetcdServer::Start(c);
  if (!server.ok()) {
    DLOG_FATAL("discovery failed",
               {{"error", std::string(server.status().message())}});
  }
  // Wait for a stop signal, or for the engine to fail.
  std::thread waiter([&] {
    absl::Status s = (*server)->Wait();
    if (!s.ok()) kill(getpid(), SIGTERM);
  });
  int sig = 0;
  sigwait(&stop_signals, &sig);
  const bool removed = (*server)->removed();
  if (!removed) {
    DLOG_INFO("received signal; shutting down",
              {{"signal",
                std::string(sig == SIGINT ? "interrupt" : "terminated")}});
  }
  (*server)->Stop();
  waiter.join();
  // A member removed from its cluster stops by itself and exits 0, as
  // etcd's does.
  if (removed) return 0;
  // As etcd: after a clean shutdown the process dies by the signal it got,
  // so supervisors see "terminated by SIGTERM", not a plain exit.
  signal(sig, SIG_DFL);
  pthread_sigmask(SIG_UNBLOCK, &stop_signals, nullptr);
  raise(sig);
  return 128 + sig;
}
