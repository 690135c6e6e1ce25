// detcd-sim: runs seeded simulations of a detcd cluster.
//
//   detcd-sim --seed S [--scenario X] [--nodes N] [--ops K] [--trace FILE]
//   detcd-sim --seeds A..B [--jobs J] [--scenario X|all] ...
//   detcd-sim --list
//
// A single run prints its derived parameters, the outcome and always ends
// with `trace-hash: <hex>`. A sweep prints a progress line and a summary
// table, and for every failure the one command that replays it. Sweeps
// spread seeds over worker processes (fork); each run is single-threaded.
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/match.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "engine/util/planted.h"
#include "scenarios/run.h"
#include "scenarios/scenario.h"

namespace {

using detcd::harness::RunOne;
using detcd::harness::RunOptions;
using detcd::harness::RunResult;

void Usage() {
  std::fprintf(stderr,
               "usage: detcd-sim --seed S [--scenario NAME|all] [--nodes N] "
               "[--ops K] [--clients C] [--bug NAME] [--trace FILE] [-v]\n"
               "       detcd-sim --seeds A..B [--jobs J] [--scenario NAME|all] "
               "[--nodes N] [--ops K] [--bug NAME] [--expect-failure]\n"
               "       detcd-sim --list\n");
}

struct Args {
  RunOptions run;
  bool sweep = false;
  uint64_t first = 0, last = 0;
  int jobs = 1;
  std::string trace;
  bool verbose = false;
  bool expect_failure = false;
  bool list = false;
};

bool ParseArgs(int argc, char** argv, Args* a) {
  bool have_seed = false;
  for (int i = 1; i < argc; ++i) {
    std::string f = argv[i];
    auto value = [&](std::string* out) {
      if (i + 1 >= argc) return false;
      *out = argv[++i];
      return true;
    };
    std::string v;
    if (f == "--seed") {
      if (!value(&v) || !absl::SimpleAtoi(v, &a->run.seed)) return false;
      have_seed = true;
    } else if (f == "--seeds") {
      if (!value(&v)) return false;
      std::vector<std::string> parts = absl::StrSplit(v, "..");
      if (parts.size() != 2 || !absl::SimpleAtoi(parts[0], &a->first) ||
          !absl::SimpleAtoi(parts[1], &a->last) || a->first > a->last) {
        return false;
      }
      a->sweep = true;
    } else if (f == "--scenario") {
      if (!value(&a->run.scenario)) return false;
    } else if (f == "--nodes") {
      if (!value(&v) || !absl::SimpleAtoi(v, &a->run.nodes) ||
          a->run.nodes < 1 || a->run.nodes > 9) {
        return false;
      }
    } else if (f == "--ops") {
      if (!value(&v) || !absl::SimpleAtoi(v, &a->run.ops) || a->run.ops < 0 ||
          a->run.ops > 10000000) {
        return false;
      }
    } else if (f == "--clients") {
      if (!value(&v) || !absl::SimpleAtoi(v, &a->run.clients) ||
          a->run.clients < 1 || a->run.clients > 1000) {
        return false;
      }
    } else if (f == "--jobs") {
      if (!value(&v) || !absl::SimpleAtoi(v, &a->jobs) || a->jobs < 1 ||
          a->jobs > 256) {
        return false;
      }
    } else if (f == "--bug") {
      if (!value(&a->run.bug)) return false;
      if (!detcd::planted::Find(a->run.bug)) {
        std::fprintf(stderr, "unknown bug %s\n", a->run.bug.c_str());
        return false;
      }
    } else if (f == "--trace") {
      if (!value(&a->trace)) return false;
    } else if (f == "-v" || f == "--verbose") {
      a->verbose = true;
    } else if (f == "--expect-failure") {
      a->expect_failure = true;
    } else if (f == "--list") {
      a->list = true;
    } else {
      std::fprintf(stderr, "unknown flag %s\n", f.c_str());
      return false;
    }
  }
  if (a->list) return true;
  if (a->sweep == have_seed) return false;  // exactly one of them
  if (a->run.scenario != "all" &&
      detcd::scenarios::Find(a->run.scenario) == nullptr) {
    std::fprintf(stderr, "unknown scenario %s (see --list)\n",
                 a->run.scenario.c_str());
    return false;
  }
  return true;
}

int RunSingle(const Args& a) {
  detcd::harness::Trace trace;
  detcd::harness::Trace* t = a.trace.empty() ? nullptr : &trace;
  auto start = std::chrono::steady_clock::now();
  RunOptions o = a.run;
  o.wall_ns = [] {
    return static_cast<int64_t>(
        std::chrono::duration_cast<std::chrono::nanoseconds>(
            std::chrono::steady_clock::now().time_since_epoch())
            .count());
  };
  RunResult r = RunOne(o, t);
  double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() -
                                              start)
                    .count();
  std::printf("params: %s\n", absl::StrJoin(r.params, " ").c_str());
  std::printf(
      "ops: ok=%llu failed=%llu unknown=%llu  applied=%llu leaders=%llu  "
      "sim=%.1fs events=%llu wall=%.3fs\n",
      (unsigned long long)r.ops.ok, (unsigned long long)r.ops.failed,
      (unsigned long long)r.ops.unknown, (unsigned long long)r.applied,
      (unsigned long long)r.leaders, r.sim_seconds,
      (unsigned long long)r.events, wall);
  std::printf(
      "clients: history=%llu ops (lincheck states=%llu)  watch events=%llu "
      "resumes=%llu  lease grants=%llu keepalives=%llu  checkers=%.3fs\n",
      (unsigned long long)r.history_ops, (unsigned long long)r.lin_states,
      (unsigned long long)r.watch_events,
      (unsigned long long)r.ops.watch_resumes,
      (unsigned long long)r.ops.lease_grants,
      (unsigned long long)r.ops.keepalives, r.checker_wall_ns / 1e9);
  if (t != nullptr) {
    if (auto s = trace.WriteFile(a.trace); !s.ok()) {
      std::fprintf(stderr, "trace: %s\n", s.ToString().c_str());
    } else {
      std::printf("trace: %s (%zu events; open in ui.perfetto.dev)\n",
                  a.trace.c_str(), trace.size());
    }
  }
  if (r.ok) {
    std::printf("result: ok\n");
  } else {
    std::printf("result: FAILED (caught by: %s)\n",
                absl::StrJoin(r.caught_by, ", ").c_str());
    for (const std::string& f : r.failures) std::printf("  %s\n", f.c_str());
    std::printf("replay: %s\n",
                detcd::harness::ReplayCommand(a.run).c_str());
  }
  std::printf("trace-hash: %016llx\n", (unsigned long long)r.trace_hash);
  return r.ok ? 0 : 1;
}

// Sweep worker output, one line per seed:
//   seed \t ok(0|1) \t scenario \t hash \t sim_s \t wall_s \t
//   inconclusive(0|1) \t caught_by (comma-separated) \t first failure
void Worker(const Args& a, int k, int fd) {
  for (uint64_t seed = a.first + k; seed <= a.last; seed += a.jobs) {
    RunOptions o = a.run;
    o.seed = seed;
    auto start = std::chrono::steady_clock::now();
    RunResult r = RunOne(o, nullptr);
    double wall = std::chrono::duration<double>(
                      std::chrono::steady_clock::now() - start)
                      .count();
    std::string first = r.failures.empty() ? "" : r.failures[0];
    for (char& c : first) {
      if (c == '\t' || c == '\n') c = ' ';
    }
    std::string line = absl::StrFormat(
        "%d\t%d\t%s\t%016x\t%.3f\t%.4f\t%d\t%s\t%s\n", seed, r.ok ? 1 : 0,
        r.scenario, r.trace_hash, r.sim_seconds, wall,
        r.lin_inconclusive ? 1 : 0, absl::StrJoin(r.caught_by, ","), first);
    const char* p = line.data();
    size_t left = line.size();
    while (left > 0) {
      ssize_t n = write(fd, p, left);
      if (n <= 0) _exit(3);
      p += n;
      left -= static_cast<size_t>(n);
    }
  }
}

int RunSweep(const Args& a) {
  const uint64_t total = a.last - a.first + 1;
  const int jobs = static_cast<int>(std::min<uint64_t>(a.jobs, total));
  Args wa = a;
  wa.jobs = jobs;
  int fds[2];
  if (pipe(fds) != 0) {
    std::perror("pipe");
    return 2;
  }
  std::fflush(stdout);
  std::vector<pid_t> kids;
  for (int k = 0; k < jobs; ++k) {
    pid_t pid = fork();
    if (pid < 0) {
      std::perror("fork");
      return 2;
    }
    if (pid == 0) {
      close(fds[0]);
      Worker(wa, k, fds[1]);
      _exit(0);
    }
    kids.push_back(pid);
  }
  close(fds[1]);
  auto start = std::chrono::steady_clock::now();
  struct Row {
    uint64_t runs = 0, failed = 0;
    double sim = 0, wall = 0;
  };
  std::map<std::string, Row> rows;
  std::vector<std::string> failures;
  std::vector<std::string> inconclusive;  // seeds
  // With a planted bug: the failing seeds its own checker reported.
  std::string catcher = "-";
  if (auto b = detcd::planted::Find(a.run.bug)) {
    catcher = std::string(CatcherName(detcd::planted::Info(*b).catcher));
  }
  uint64_t caught = 0;
  std::string first_caught, caught_replay;
  uint64_t done = 0;
  std::string buf;
  char chunk[4096];
  const bool tty = isatty(fileno(stdout));
  for (;;) {
    ssize_t n = read(fds[0], chunk, sizeof(chunk));
    if (n <= 0) break;
    buf.append(chunk, static_cast<size_t>(n));
    size_t nl;
    while ((nl = buf.find('\n')) != std::string::npos) {
      std::string line = buf.substr(0, nl);
      buf.erase(0, nl + 1);
      std::vector<std::string> f = absl::StrSplit(line, '\t');
      if (f.size() < 9) continue;
      if (f[6] == "1") inconclusive.push_back(f[0]);
      ++done;
      Row& row = rows[f[2]];
      ++row.runs;
      double sim = 0, wall = 0;
      (void)absl::SimpleAtod(f[4], &sim);
      (void)absl::SimpleAtod(f[5], &wall);
      row.sim += sim;
      row.wall += wall;
      if (f[1] != "1") {
        ++row.failed;
        RunOptions o = a.run;
        (void)absl::SimpleAtoi(f[0], &o.seed);
        o.scenario = f[2];
        if (absl::StrContains(f[7], catcher)) {
          ++caught;
          if (first_caught.empty()) {
            first_caught = f[0];
            caught_replay = detcd::harness::ReplayCommand(o);
          }
        }
        failures.push_back(absl::StrCat("  seed ", f[0], " (", f[2], ", ",
                                        f[7], "): ",
                                        f[8], "\n    replay: ",
                                        detcd::harness::ReplayCommand(o)));
      }
      double elapsed = std::chrono::duration<double>(
                           std::chrono::steady_clock::now() - start)
                           .count();
      if (tty || done % 50 == 0 || done == total) {
        std::printf("%sprogress: %llu/%llu seeds, %zu failed, %.1f s%s",
                    tty ? "\r" : "", (unsigned long long)done,
                    (unsigned long long)total, failures.size(), elapsed,
                    tty ? "" : "\n");
        std::fflush(stdout);
      }
    }
  }
  close(fds[0]);
  bool worker_failed = false;
  for (pid_t pid : kids) {
    int st = 0;
    waitpid(pid, &st, 0);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) worker_failed = true;
  }
  double elapsed =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
          .count();
  if (tty) std::printf("\n");
  std::printf("\n%-22s %6s %7s %10s %10s\n", "scenario", "runs", "failed",
              "sim s/run", "wall s/run");
  Row all;
  for (const auto& [name, row] : rows) {
    std::printf("%-22s %6llu %7llu %10.2f %10.4f\n", name.c_str(),
                (unsigned long long)row.runs, (unsigned long long)row.failed,
                row.sim / row.runs, row.wall / row.runs);
    all.runs += row.runs;
    all.failed += row.failed;
    all.sim += row.sim;
    all.wall += row.wall;
  }
  if (all.runs > 0) {
    std::printf("%-22s %6llu %7llu %10.2f %10.4f\n", "total",
                (unsigned long long)all.runs, (unsigned long long)all.failed,
                all.sim / all.runs, all.wall / all.runs);
    std::printf(
        "throughput: %.0f seeds/min (%d jobs), %.0f simulated s per wall s "
        "per core\n",
        all.runs / elapsed * 60.0, jobs, all.wall > 0 ? all.sim / all.wall : 0);
  }
  if (!inconclusive.empty()) {
    std::printf("\nlinearizability inconclusive (state limit) for %zu seeds: %s\n",
                inconclusive.size(), absl::StrJoin(inconclusive, " ").c_str());
  }
  if (!failures.empty()) {
    std::printf("\nfailures:\n");
    for (const std::string& f : failures) std::printf("%s\n", f.c_str());
  }
  if (worker_failed || done != total) {
    std::printf("error: a worker died (%llu of %llu seeds reported)\n",
                (unsigned long long)done, (unsigned long long)total);
    return 2;
  }
  std::printf("%llu passed, %llu failed\n",
              (unsigned long long)(all.runs - all.failed),
              (unsigned long long)all.failed);
  if (!a.run.bug.empty()) {
    std::printf("planted bug %s: caught by the %s checker in %llu of %llu "
                "seeds (first: %s)\n",
                a.run.bug.c_str(), catcher.c_str(), (unsigned long long)caught,
                (unsigned long long)all.runs,
                first_caught.empty() ? "none" : first_caught.c_str());
    if (!caught_replay.empty()) {
      std::printf("caught-replay: %s\n", caught_replay.c_str());
    }
  }
  if (a.expect_failure) {
    // A planted bug counts as caught only by the checker it targets (a
    // safety bug noticed only as a liveness timeout does not count).
    if (!a.run.bug.empty()) return caught > 0 ? 0 : 1;
    return failures.empty() ? 1 : 0;
  }
  return failures.empty() ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  Args a;
  if (!ParseArgs(argc, argv, &a)) {
    Usage();
    return 2;
  }
  if (a.list) {
    std::printf("scenarios:\n");
    for (const auto& s : detcd::scenarios::Catalog()) {
      std::printf("  %-22s %s\n", s.name, s.description);
    }
    std::printf("planted bugs (--bug):\n");
    for (const detcd::planted::BugInfo& b : detcd::planted::kBugs) {
      std::printf("  %-27s %s (caught by the %s checker)\n",
                  std::string(b.name).c_str(), std::string(b.what).c_str(),
                  std::string(CatcherName(b.catcher)).c_str());
    }
    return 0;
  }
  return a.sweep ? RunSweep(a) : RunSingle(a);
}
