// detcd-sim: runs seeded simulations of a detcd cluster.
//
//   detcd-sim --seed S [--scenario X] [--nodes N] [--ops K] [--trace FILE]
//   detcd-sim --seeds A..B [--jobs J] [--scenario X|all] ...
//   detcd-sim --list
//   detcd-sim --seed S ... --record FILE | --shrink [--shrink-out FILE]
//   detcd-sim --replay FILE [--bug NAME] [--record FILE]
//
// A single run prints its derived parameters, the outcome and always ends
// with `trace-hash: <hex>`. A sweep prints a progress line and a summary
// table, and for every failure the one command that replays it. Sweeps
// spread seeds over worker processes (fork); each run is single-threaded.
// A seed that crashes its worker (a failed DETCD_CHECK) is that seed's
// failure: the sweep reports it with the CHECK message and goes on in a
// new worker.
//
// --check-determinism runs each seed three times, twice in this process and
// once in a fresh one (fork + exec: new heap, new address layout), and
// compares the trace logs; a difference fails the seed (caught by
// "determinism") and names the first diverging observation.
#include <fcntl.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/match.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "cli/sweep_report.h"
#include "engine/util/buggify.h"
#include "engine/util/check.h"
#include "engine/util/planted.h"
#include "harness/trace.h"
#include "scenarios/run.h"
#include "scenarios/scenario.h"
#include "scenarios/shrink.h"
#include "sim/schedule.h"

namespace {

using detcd::harness::RunOne;
using detcd::harness::RunOptions;
using detcd::harness::RunResult;

void Usage(std::FILE* out) {
  std::fprintf(out,
               "usage: detcd-sim --seed S [--scenario NAME|all] [--nodes N] "
               "[--ops K] [--clients C] [--bug NAME] [--trace FILE] [-v]\n"
               "       detcd-sim --seeds A..B [--jobs J] [--scenario NAME|all] "
               "[--nodes N] [--ops K] [--bug NAME] [--expect-failure]\n"
               "         [--duration 10m] [--shard i/n] [--json FILE] "
               "[--junit FILE] [--probes|--require-probes]\n"
               "       detcd-sim --merge SUMMARY.json... [--json FILE] "
               "[--junit FILE] [--probes|--require-probes]\n"
               "       (either form) [--buggify] [--buggify-point NAME]\n"
               "       (either form) [--check-determinism] [--accept-inconclusive]\n"
               "       detcd-sim --seed S ... [--record FILE] [--shrink "
               "[--shrink-out FILE] [--shrink-runs N]]\n"
               "       detcd-sim --replay FILE [--bug NAME] [--record FILE]\n"
               "       detcd-sim --list\n");
}

void Help() {
  Usage(stdout);
  std::printf(
      "\n"
      "  --seed S               run one seed and print its result and replay line\n"
      "  --seeds A..B           sweep seeds A to B (inclusive); exit 1 if any fails\n"
      "  --jobs J               processes for a sweep (default 1)\n"
      "  --scenario NAME|all    a scenario of --list, or all of them by turns\n"
      "  --nodes N              cluster size (default 3)\n"
      "  --ops K                KV operations per run (default 500)\n"
      "  --clients C            KV clients (default 5)\n"
      "  --bug NAME             plant a bug of --list (with --expect-failure: the\n"
      "                         sweep succeeds only if the bug's checker caught it)\n"
      "  --trace FILE           write the run as a Chrome/Perfetto trace\n"
      "  -v                     print the run's parameters and counters\n"
      "  --buggify              turn the engine's BUGGIFY fault points on (each\n"
      "                         run enables about half of them, from its seed)\n"
      "  --buggify-point NAME   only this fault point (--list shows them)\n"
      "  --duration D           sweep until D is up (10m, 90s, 1h): seeds of\n"
      "                         --seeds A..B, or 1.. without it\n"
      "  --shard i/n            run shard i (0 <= i < n) of the seeds: a\n"
      "                         contiguous block (docs/sweeps.md)\n"
      "  --json FILE            write the sweep's summary (see --merge)\n"
      "  --junit FILE           write JUnit XML (each failing seed and its\n"
      "                         replay command)\n"
      "  --probes               print each coverage probe's count and those\n"
      "                         never reached\n"
      "  --require-probes       as --probes; a probe never reached fails\n"
      "  --merge F...           merge --json summaries (the arguments up to\n"
      "                         the next flag) and report them\n"
      "  --check-determinism    run each seed twice and in a fresh process; name\n"
      "                         the first diverging event on a mismatch\n"
      "  --accept-inconclusive  a linearizability check that hits its state limit\n"
      "                         passes (it fails the run by default)\n"
      "  --record FILE          write the world's decisions of the run (faults,\n"
      "                         deliveries, disk faults, client operations) to\n"
      "                         FILE (docs/schedule-format.md)\n"
      "  --replay FILE          run today's code against a recorded schedule\n"
      "                         (its seed, scenario and sizes; --bug is yours)\n"
      "  --shrink               on a failing run: delta debugging down to the\n"
      "                         smallest schedule failing the same way; writes it,\n"
      "                         prints its story and the command replaying it\n"
      "  --shrink-out FILE      where (default detcd-shrunk-<seed>.schedule)\n"
      "  --shrink-runs N        replays allowed (default 400)\n"
      "  --list                 scenarios and planted bugs\n");
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
  bool help = false;
  // Sweeps at scale (docs/sweeps.md).
  double duration_s = 0;    // --duration: 0 = until the range is done
  int64_t deadline_ns = 0;  // WallNs() at which a --duration sweep stops
  uint64_t shard_i = 0, shard_n = 1;
  std::string json, junit;
  bool probes = false, require_probes = false;
  std::vector<std::string> merge;  // --merge: summaries to merge
  // Internal: run once and write the trace log to this fd (the fresh
  // process of --check-determinism).
  int emit_trace_log_fd = -1;
  // Testing the sweep itself: this seed fails a DETCD_CHECK.
  uint64_t crash_seed = 0;
  // Record / replay / shrink (single runs).
  std::string record;
  std::string replay;
  bool shrink = false;
  std::string shrink_out;
  int shrink_runs = 400;
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
    } else if (f == "--check-determinism") {
      a->run.check_determinism = true;
    } else if (f == "--accept-inconclusive") {
      a->run.accept_inconclusive = true;
    } else if (f == "--duration") {
      if (!value(&v) || !detcd::cli::ParseDuration(v, &a->duration_s)) {
        return false;
      }
      if (!a->sweep) {  // no --seeds (yet): seeds 1.. until the time is up
        a->sweep = true;
        a->first = 1;
        a->last = uint64_t{1} << 62;
      }
    } else if (f == "--shard") {
      if (!value(&v)) return false;
      std::vector<std::string> parts = absl::StrSplit(v, '/');
      if (parts.size() != 2 || !absl::SimpleAtoi(parts[0], &a->shard_i) ||
          !absl::SimpleAtoi(parts[1], &a->shard_n) || a->shard_n == 0 ||
          a->shard_i >= a->shard_n) {
        return false;
      }
    } else if (f == "--json") {
      if (!value(&a->json)) return false;
    } else if (f == "--junit") {
      if (!value(&a->junit)) return false;
    } else if (f == "--probes") {
      a->probes = true;
    } else if (f == "--require-probes") {
      a->probes = a->require_probes = true;
    } else if (f == "--buggify") {
      a->run.buggify = true;
    } else if (f == "--buggify-point") {
      if (!value(&a->run.buggify_point)) return false;
      if (!detcd::buggify::Find(a->run.buggify_point)) {
        std::fprintf(stderr, "unknown buggify point %s\n",
                     a->run.buggify_point.c_str());
        return false;
      }
    } else if (f == "--merge") {
      while (i + 1 < argc && argv[i + 1][0] != '-') {
        a->merge.push_back(argv[++i]);
      }
      if (a->merge.empty()) return false;
      a->sweep = true;  // stands for the sweeps it merges
    } else if (f == "--emit-trace-log") {
      if (!value(&v) || !absl::SimpleAtoi(v, &a->emit_trace_log_fd)) {
        return false;
      }
    } else if (f == "--crash-seed") {
      if (!value(&v) || !absl::SimpleAtoi(v, &a->crash_seed)) return false;
    } else if (f == "--record") {
      if (!value(&a->record)) return false;
    } else if (f == "--replay") {
      if (!value(&a->replay)) return false;
      have_seed = true;  // the schedule names it
    } else if (f == "--shrink") {
      a->shrink = true;
    } else if (f == "--shrink-out") {
      if (!value(&a->shrink_out)) return false;
    } else if (f == "--shrink-runs") {
      if (!value(&v) || !absl::SimpleAtoi(v, &a->shrink_runs) ||
          a->shrink_runs < 1) {
        return false;
      }
    } else if (f == "--list") {
      a->list = true;
    } else if (f == "--help" || f == "-h") {
      a->help = true;
      return true;
    } else {
      std::fprintf(stderr, "unknown flag %s\n", f.c_str());
      return false;
    }
  }
  if (a->list) return true;
  if (a->sweep == have_seed) return false;  // exactly one of them
  if (a->sweep && (!a->record.empty() || !a->replay.empty() || a->shrink)) {
    std::fprintf(stderr, "--record, --replay and --shrink take one run\n");
    return false;
  }
  if (a->run.check_determinism &&
      (!a->record.empty() || !a->replay.empty() || a->shrink)) {
    std::fprintf(stderr, "--check-determinism runs without a schedule\n");
    return false;
  }
  if (a->shrink && (!a->replay.empty() || !a->record.empty())) {
    std::fprintf(stderr, "--shrink records its own run (use --seed)\n");
    return false;
  }
  if (a->run.scenario != "all" &&
      detcd::scenarios::Find(a->run.scenario) == nullptr) {
    std::fprintf(stderr, "unknown scenario %s (see --list)\n",
                 a->run.scenario.c_str());
    return false;
  }
  return true;
}

int64_t WallNs() {
  return static_cast<int64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(
          std::chrono::steady_clock::now().time_since_epoch())
          .count());
}

// --crash-seed: the seed fails a CHECK, as an engine bug would, to test
// that a sweep reports it and goes on.
void MaybeCrash(const Args& a, uint64_t seed) {
  if (a.crash_seed != 0 && seed == a.crash_seed) {
    DETCD_CHECK_MSG(false, "--crash-seed: this seed fails a CHECK on purpose");
  }
}

std::string DescribeExit(int st) {
  if (WIFSIGNALED(st)) {
    return absl::StrCat("killed by signal ", WTERMSIG(st), " (",
                        strsignal(WTERMSIG(st)), ")");
  }
  return absl::StrCat("exited with status ", WEXITSTATUS(st));
}

bool WriteAll(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = write(fd, data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

// ---- the determinism check ----

// Runs `o` once in a fresh process (this binary, exec'd again: a new heap
// and, with ASLR, new addresses) and reads back its trace log.
bool RunFresh(const RunOptions& o, detcd::sim::TraceLog* log,
              std::string* err) {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) {
    *err = absl::StrCat("pipe: ", std::strerror(errno));
    return false;
  }
  RunOptions c = o;
  c.check_determinism = false;
  std::vector<std::string> args = detcd::harness::ReplayArgs(c);
  args.insert(args.begin(), "detcd-sim");
  args.push_back("--emit-trace-log");
  args.push_back(absl::StrCat(fds[1]));
  std::vector<char*> argv;
  for (std::string& s : args) argv.push_back(s.data());
  argv.push_back(nullptr);
  std::fflush(stdout);
  std::fflush(stderr);
  const pid_t pid = fork();
  if (pid < 0) {
    *err = absl::StrCat("fork: ", std::strerror(errno));
    close(fds[0]);
    close(fds[1]);
    return false;
  }
  if (pid == 0) {
    fcntl(fds[1], F_SETFD, 0);  // the write end survives exec
    const int null = open("/dev/null", O_WRONLY);
    if (null >= 0) dup2(null, 1);
    execv("/proc/self/exe", argv.data());
    _exit(127);
  }
  close(fds[1]);
  std::string data;
  char buf[1 << 16];
  for (;;) {
    ssize_t n = read(fds[0], buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    data.append(buf, static_cast<size_t>(n));
  }
  close(fds[0]);
  int st = 0;
  while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
    *err = DescribeExit(st);
    return false;
  }
  if (!detcd::harness::ParseTraceLog(data, log)) {
    *err = "its trace log could not be read";
    return false;
  }
  return true;
}

// The fresh process's side: run once, send the trace log, print nothing.
int EmitTraceLog(const Args& a) {
  MaybeCrash(a, a.run.seed);
  detcd::sim::TraceLog log;
  RunOptions o = a.run;
  o.trace_log = &log;
  (void)RunOne(o, nullptr);
  const bool ok =
      WriteAll(a.emit_trace_log_fd, detcd::harness::SerializeTraceLog(log));
  close(a.emit_trace_log_fd);
  return ok ? 0 : 3;
}

// Runs the seed twice here and once in a fresh process, and compares the
// three trace logs. The result is the first run's, with a "determinism"
// failure naming the first diverging observation if the logs differ.
// *summary says what was compared.
RunResult RunChecked(const RunOptions& base, detcd::harness::Trace* trace,
                     std::string* summary) {
  using detcd::harness::FirstDivergence;
  detcd::sim::TraceLog first, second, fresh;
  RunOptions o = base;
  o.trace_log = &first;
  RunResult r = RunOne(o, trace);
  o.trace_log = &second;
  o.wall_ns = nullptr;
  (void)RunOne(o, nullptr);
  std::vector<std::string> found;
  std::string d = FirstDivergence(first, "run 1", second, "run 2");
  if (!d.empty()) {
    found.push_back("run 2 (same process) differs from run 1: " + d);
  }
  std::string err;
  if (!RunFresh(base, &fresh, &err)) {
    found.push_back("the run in a fresh process failed: " + err);
  } else if (d = FirstDivergence(first, "run 1", fresh, "fresh process");
             !d.empty()) {
    found.push_back("the fresh process differs from run 1: " + d);
  }
  *summary = absl::StrFormat(
      "determinism: %s (2 runs in this process, 1 in a fresh process; %d "
      "observations, %d bytes kept)",
      found.empty() ? "the 3 runs agree" : "the runs DIFFER",
      first.records.size(), first.bytes.size());
  if (!found.empty()) {
    // First: a run that is not deterministic makes its other failures
    // unreliable too.
    for (std::string& f : found) f = "determinism: " + f;
    r.failures.insert(r.failures.begin(), found.begin(), found.end());
    r.caught_by.insert("determinism");
    r.ok = false;
  }
  return r;
}

// ---- record / replay / shrink ----

bool ReadFile(const std::string& path, std::string* out) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) return false;
  char buf[1 << 16];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), f)) > 0) out->append(buf, n);
  std::fclose(f);
  return true;
}

bool WriteFile(const std::string& path, const std::string& data) {
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) return false;
  const bool ok = std::fwrite(data.data(), 1, data.size(), f) == data.size();
  return std::fclose(f) == 0 && ok;
}

std::string ReplayLine(const std::string& file, const std::string& bug) {
  return absl::StrCat("detcd-sim --replay ", file,
                      bug.empty() ? "" : " --bug ", bug);
}

int RunShrink(const Args& a) {
  detcd::harness::ShrinkOptions so;
  so.max_runs = a.shrink_runs;
  so.wall_ns = WallNs;
  so.progress = [](std::string_view s) {
    std::printf("shrink: %.*s\n", static_cast<int>(s.size()), s.data());
    std::fflush(stdout);
  };
  detcd::harness::ShrinkResult r = detcd::harness::Shrink(a.run, so);
  if (!r.failed) {
    std::printf("result: ok (nothing to shrink: the run passes)\n");
    return 1;
  }
  const std::string out =
      a.shrink_out.empty()
          ? absl::StrCat("detcd-shrunk-", a.run.seed, ".schedule")
          : a.shrink_out;
  if (!WriteFile(out, r.minimal.Serialize())) {
    std::fprintf(stderr, "cannot write %s\n", out.c_str());
    return 2;
  }
  const size_t before = r.events_before + r.ops_before;
  const size_t after = r.events_after + r.ops_after;
  std::printf("shrink: kept failure: %s\n", r.kind.c_str());
  std::printf(
      "shrink: fault events %zu -> %zu, operations %zu -> %zu, units %zu -> "
      "%zu (%.1fx smaller), %d runs, %.1f s\n",
      r.events_before, r.events_after, r.ops_before, r.ops_after, before,
      after, after == 0 ? static_cast<double>(before)
                        : static_cast<double>(before) / after,
      r.runs, r.wall_ns / 1e9);
  std::printf("story (fault events and operations that remain, in order):\n%s",
              r.minimal.Story().c_str());
  std::printf("result: FAILED (caught by: %s)\n",
              absl::StrJoin(r.last.caught_by, ", ").c_str());
  for (const std::string& f : r.last.failures) {
    std::printf("  %s\n", f.c_str());
  }
  std::printf("schedule: %s\n", out.c_str());
  std::printf("replay: %s\n", ReplayLine(out, a.run.bug).c_str());
  return 0;
}

int RunSingle(const Args& a) {
  if (a.emit_trace_log_fd >= 0) return EmitTraceLog(a);
  if (a.shrink) return RunShrink(a);
  MaybeCrash(a, a.run.seed);
  detcd::harness::Trace trace;
  detcd::harness::Trace* t = a.trace.empty() ? nullptr : &trace;
  auto start = std::chrono::steady_clock::now();
  RunOptions o = a.run;
  o.wall_ns = WallNs;
  // Record and replay: the run's world decisions come from / go to a
  // schedule.
  std::optional<detcd::sim::Schedule> replayed;
  std::optional<detcd::sim::Decisions> decisions;
  if (!a.replay.empty()) {
    std::string text;
    if (!ReadFile(a.replay, &text)) {
      std::fprintf(stderr, "cannot read %s\n", a.replay.c_str());
      return 2;
    }
    auto s = detcd::sim::Schedule::Parse(text);
    if (!s.ok()) {
      std::fprintf(stderr, "%s: %s\n", a.replay.c_str(),
                   std::string(s.status().message()).c_str());
      return 2;
    }
    replayed = std::move(*s);
    detcd::harness::ApplySchedule(*replayed, &o);
    std::printf("replaying %s (%zu fault events, %zu operations)\n",
                a.replay.c_str(),
                replayed->CountUnits(detcd::sim::Schedule::UnitKind::kEvent),
                replayed->CountUnits(detcd::sim::Schedule::UnitKind::kOp));
  }
  if (replayed || !a.record.empty()) {
    decisions.emplace(replayed ? &*replayed : nullptr);
    o.decisions = &*decisions;
  }
  std::string determinism;
  RunResult r =
      o.check_determinism ? RunChecked(o, t, &determinism) : RunOne(o, t);
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
  std::vector<std::string> cov;
  for (const auto& [name, n] : r.coverage) cov.push_back(absl::StrCat(name, "=", n));
  std::printf("coverage: %s\n", absl::StrJoin(cov, " ").c_str());
  for (const std::string& n : r.notes) std::printf("note: %s\n", n.c_str());
  if (!determinism.empty()) std::printf("%s\n", determinism.c_str());
  if (!a.record.empty()) {
    if (!WriteFile(a.record, decisions->output().Serialize())) {
      std::fprintf(stderr, "cannot write %s\n", a.record.c_str());
      return 2;
    }
    std::printf("recorded: %s\n", a.record.c_str());
  }
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
                a.replay.empty()
                    ? detcd::harness::ReplayCommand(a.run).c_str()
                    : ReplayLine(a.replay, a.run.bug).c_str());
  }
  std::printf("trace-hash: %016llx\n", (unsigned long long)r.trace_hash);
  return r.ok ? 0 : 1;
}

// ---- sweeps ----

// Tabs and newlines would break the line format.
std::string OneLine(std::string s, size_t max) {
  if (size_t nl = s.find('\n'); nl != std::string::npos) s.resize(nl);
  if (s.size() > max) s.resize(max);
  for (char& c : s) {
    if (c == '\t' || c == '\r') c = ' ';
  }
  return s;
}

// Sweep worker output, one line per seed, tab-separated:
//   seed, ok (0|1), scenario, hash, sim_s, wall_s, inconclusive (0|1),
//   caught_by (comma-separated), notes ("; "-separated), coverage
//   (name=value,...), the first failure's first line, events run
enum Field {
  kSeed, kOk, kScenario, kHash, kSim, kWall, kInconclusive, kCaughtBy,
  kNotes, kCoverage, kFirstFailure, kEvents, kFields
};

std::string ResultLine(uint64_t seed, const RunResult& r, double wall) {
  std::vector<std::string> cov;
  for (const auto& [name, n] : r.coverage) {
    cov.push_back(absl::StrCat(OneLine(name, 100), "=", n));
  }
  return absl::StrFormat(
      "%d\t%d\t%s\t%016x\t%.3f\t%.4f\t%d\t%s\t%s\t%s\t%s\t%d\n", seed,
      r.ok ? 1 : 0, r.scenario, r.trace_hash, r.sim_seconds, wall,
      r.lin_inconclusive ? 1 : 0, absl::StrJoin(r.caught_by, ","),
      OneLine(absl::StrJoin(r.notes, "; "), 1000), absl::StrJoin(cov, ","),
      OneLine(r.failures.empty() ? "" : r.failures[0], 2000), r.events);
}

// Runs seeds from, from + jobs, ... up to last. stderr is a file of its
// own that the sweep reads if the worker dies: it is emptied before each
// seed so that what it holds is that seed's (a CHECK message).
void Worker(const Args& a, uint64_t from, int fd) {
  for (uint64_t seed = from; seed <= a.last; seed += a.jobs) {
    // --duration: the seed under way finishes, no new one starts.
    if (a.deadline_ns != 0 && WallNs() >= a.deadline_ns) break;
    if (ftruncate(2, 0) == 0) lseek(2, 0, SEEK_SET);
    MaybeCrash(a, seed);
    RunOptions o = a.run;
    o.seed = seed;
    auto start = std::chrono::steady_clock::now();
    std::string unused;
    RunResult r = o.check_determinism ? RunChecked(o, nullptr, &unused)
                                      : RunOne(o, nullptr);
    double wall = std::chrono::duration<double>(
                      std::chrono::steady_clock::now() - start)
                      .count();
    if (!WriteAll(fd, ResultLine(seed, r, wall))) _exit(3);
  }
}

struct WorkerSlot {
  pid_t pid = -1;
  int fd = -1;      // its result lines
  int err_fd = -1;  // its stderr (a memfd)
  uint64_t next = 0;  // the seed it runs now (or next)
  std::string buf;
};

bool StartWorker(const Args& wa, uint64_t from, WorkerSlot* w) {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) {
    std::perror("pipe");
    return false;
  }
  if (w->err_fd < 0) {
    w->err_fd = memfd_create("detcd-sim-worker-stderr", MFD_CLOEXEC);
    if (w->err_fd < 0) {
      std::perror("memfd_create");
      return false;
    }
  }
  std::fflush(stdout);
  std::fflush(stderr);
  const pid_t pid = fork();
  if (pid < 0) {
    std::perror("fork");
    return false;
  }
  if (pid == 0) {
    close(fds[0]);
    dup2(w->err_fd, 2);
    Worker(wa, from, fds[1]);
    _exit(0);
  }
  close(fds[1]);
  w->pid = pid;
  w->fd = fds[0];
  w->next = from;
  w->buf.clear();
  return true;
}

// The last lines a dead worker wrote to stderr (its CHECK message).
std::string CrashOutput(int err_fd) {
  std::string out(4096, '\0');
  const off_t size = lseek(err_fd, 0, SEEK_END);
  const off_t at = size > 4096 ? size - 4096 : 0;
  const ssize_t n = pread(err_fd, out.data(), out.size(), at);
  out.resize(n > 0 ? static_cast<size_t>(n) : 0);
  std::vector<std::string> lines;
  for (absl::string_view l : absl::StrSplit(out, '\n', absl::SkipEmpty())) {
    lines.emplace_back(l);
  }
  if (lines.size() > 3) lines.erase(lines.begin(), lines.end() - 3);
  return absl::StrJoin(lines, " | ");
}

// Why a sweep with many idle seeds fails: a seed counts as idle when fewer
// than 10% of its client operations succeeded or when no fault fired in a
// scenario that injects faults (RunResult::idle). A few such seeds are
// luck (a fault schedule whose first fault falls after the phase ends, a
// partition that cut no message); `--scenario all` sweeps stay far below
// one in five. When more than 20% of a sweep's seeds are idle, the sweep is
// mostly testing the happy path or nothing at all (every client timing
// out, a fault schedule that never fires), so its passes mean little.
constexpr uint64_t kMaxIdlePercent = 20;

// The seeds this process runs: --seeds A..B (or 1.. with only --duration),
// narrowed to --shard i/n's contiguous block (contiguous, so that every
// shard of a `--scenario all` sweep gets every scenario). False if the
// shard has no seeds.
bool ShardRange(const Args& a, uint64_t* first, uint64_t* last) {
  const unsigned __int128 len =
      static_cast<unsigned __int128>(a.last - a.first) + 1;
  const uint64_t from =
      a.first + static_cast<uint64_t>(len * a.shard_i / a.shard_n);
  const uint64_t to =
      a.first + static_cast<uint64_t>(len * (a.shard_i + 1) / a.shard_n);
  if (to == from) return false;
  *first = from;
  *last = to - 1;
  return true;
}

// Prints the probes (--probes) and writes --json and --junit. Returns 2 if a
// file could not be written, 1 if --require-probes found a probe never
// reached, else 0.
int Report(const Args& a, const detcd::cli::Summary& summary) {
  int rc = 0;
  if (a.probes) summary.PrintProbes(stdout);
  if (a.require_probes && !summary.Unreached().empty()) {
    std::printf("error: --require-probes: %zu probes never reached (the "
                "fault model no longer reaches those paths)\n",
                summary.Unreached().size());
    rc = 1;
  }
  if (!a.json.empty()) {
    if (auto s = detcd::cli::WriteFile(a.json, summary.ToJson()); !s.ok()) {
      std::fprintf(stderr, "--json: %s\n", s.ToString().c_str());
      rc = 2;
    }
  }
  if (!a.junit.empty()) {
    if (auto s = detcd::cli::WriteFile(a.junit, summary.ToJUnit()); !s.ok()) {
      std::fprintf(stderr, "--junit: %s\n", s.ToString().c_str());
      rc = 2;
    }
  }
  return rc;
}

std::string CommandLine(int argc, char** argv) {
  std::vector<std::string> args(argv, argv + argc);
  return absl::StrJoin(args, " ");
}

int RunSweep(Args a, const std::string& command) {
  detcd::cli::Summary summary;
  summary.command = command;
  if (!ShardRange(a, &a.first, &a.last)) {
    std::printf("shard %llu/%llu has no seeds\n",
                (unsigned long long)a.shard_i, (unsigned long long)a.shard_n);
    return Report(a, summary) == 2 ? 2 : 0;
  }
  const bool timed = a.duration_s > 0;
  // Seeds to run, or 0 when a --duration sweep decides (see below).
  const uint64_t range = a.last - a.first + 1;
  const int jobs = static_cast<int>(std::min<uint64_t>(a.jobs, range));
  Args wa = a;
  wa.jobs = jobs;
  const int64_t start_ns = WallNs();
  if (timed) {
    wa.deadline_ns =
        start_ns + static_cast<int64_t>(a.duration_s * 1e9);
  }
  std::vector<WorkerSlot> slots(jobs);
  for (int k = 0; k < jobs; ++k) {
    if (!StartWorker(wa, a.first + k, &slots[k])) return 2;
  }
  uint64_t crashed = 0;
  // With a planted bug: the failing seeds its own checker reported.
  std::string catcher = "-";
  if (auto b = detcd::planted::Find(a.run.bug)) {
    catcher = std::string(CatcherName(detcd::planted::Info(*b).catcher));
  }
  uint64_t caught = 0;
  uint64_t first_caught = 0;
  std::string caught_replay;
  uint64_t done = 0;
  const bool tty = isatty(fileno(stdout));
  int64_t last_draw_ns = 0;
  auto elapsed = [&] { return (WallNs() - start_ns) / 1e9; };
  auto handle = [&](const std::string& line) {
    std::vector<std::string> f = absl::StrSplit(line, '\t');
    if (f.size() < kFields) return;
    ++done;
    detcd::cli::SeedResult r;
    (void)absl::SimpleAtoi(f[kSeed], &r.seed);
    r.ok = f[kOk] == "1";
    r.scenario = f[kScenario];
    r.inconclusive = f[kInconclusive] == "1";
    r.idle = !f[kNotes].empty();
    r.notes = f[kNotes];
    (void)absl::SimpleAtod(f[kSim], &r.sim_s);
    (void)absl::SimpleAtod(f[kWall], &r.wall_s);
    (void)absl::SimpleAtoi(f[kEvents], &r.events);
    r.caught_by = f[kCaughtBy];
    r.first_failure = f[kFirstFailure];
    for (absl::string_view kv :
         absl::StrSplit(f[kCoverage], ',', absl::SkipEmpty())) {
      std::pair<std::string, std::string> p = absl::StrSplit(kv, '=');
      uint64_t n = 0;
      if (absl::SimpleAtoi(p.second, &n)) r.coverage[p.first] += n;
    }
    if (!r.ok) {
      RunOptions o = a.run;
      o.seed = r.seed;
      o.scenario = r.scenario;
      r.replay = detcd::harness::ReplayCommand(o);
      if (absl::StrContains(r.caught_by, catcher)) {
        ++caught;
        // Workers finish out of order: the first is the lowest seed.
        if (first_caught == 0 || o.seed < first_caught) {
          first_caught = o.seed;
          caught_replay = r.replay;
        }
      }
    }
    summary.Add(r);
    // A terminal's bar is redrawn at most 10 times a second; a log gets a
    // line every 50 seeds.
    const int64_t now = WallNs();
    const bool last = !timed && done == range;
    if ((tty && (now - last_draw_ns >= 100'000'000 || last)) ||
        (!tty && (done % 50 == 0 || last))) {
      last_draw_ns = now;
      std::printf("%s", detcd::cli::ProgressLine(tty, done, timed ? 0 : range,
                                                 summary.failed(), elapsed(),
                                                 a.duration_s)
                            .c_str());
      std::fflush(stdout);
    }
  };
  bool sweep_error = false;
  for (;;) {
    std::vector<pollfd> pfds;
    std::vector<WorkerSlot*> polled;
    for (WorkerSlot& w : slots) {
      if (w.fd < 0) continue;
      pfds.push_back(pollfd{w.fd, POLLIN, 0});
      polled.push_back(&w);
    }
    if (pfds.empty()) break;
    if (poll(pfds.data(), pfds.size(), -1) < 0) {
      if (errno == EINTR) continue;
      std::perror("poll");
      return 2;
    }
    for (size_t i = 0; i < pfds.size(); ++i) {
      if (pfds[i].revents == 0) continue;
      WorkerSlot& w = *polled[i];
      char chunk[4096];
      ssize_t n = read(w.fd, chunk, sizeof(chunk));
      if (n < 0 && errno == EINTR) continue;
      if (n > 0) {
        w.buf.append(chunk, static_cast<size_t>(n));
        size_t nl;
        while ((nl = w.buf.find('\n')) != std::string::npos) {
          std::string line = w.buf.substr(0, nl);
          w.buf.erase(0, nl + 1);
          uint64_t seed = 0;
          if (absl::SimpleAtoi(line.substr(0, line.find('\t')), &seed)) {
            w.next = seed + jobs;
          }
          handle(line);
        }
        continue;
      }
      // The worker is gone: done, or died in the middle of w.next.
      close(w.fd);
      w.fd = -1;
      int st = 0;
      while (waitpid(w.pid, &st, 0) < 0 && errno == EINTR) {
      }
      if (w.next > a.last) continue;  // all its seeds reported
      // A --duration worker ends by itself (exit 0) when the time is up.
      if (timed && WIFEXITED(st) && WEXITSTATUS(st) == 0) continue;
      ++crashed;
      RunOptions o = a.run;
      o.seed = w.next;
      RunResult r;
      r.scenario = detcd::harness::ResolveScenario(o);
      r.caught_by.insert("crash");
      r.failures.push_back(absl::StrCat("crash: ", DescribeExit(st),
                                        ": ", CrashOutput(w.err_fd)));
      std::string line = ResultLine(w.next, r, 0);
      line.pop_back();  // the newline
      handle(line);
      const uint64_t from = w.next + jobs;
      if (from <= a.last && !StartWorker(wa, from, &w)) sweep_error = true;
    }
    if (sweep_error) break;
  }
  for (WorkerSlot& w : slots) {
    if (w.err_fd >= 0) close(w.err_fd);
  }
  summary.elapsed_s = elapsed();
  summary.jobs = jobs;
  summary.seeds_per_min =
      summary.elapsed_s > 0 ? done / summary.elapsed_s * 60.0 : 0;
  if (tty) std::printf("\n");
  summary.PrintTable(stdout);
  summary.PrintCoverage(stdout);
  const uint64_t runs = summary.seeds();
  const uint64_t idle = summary.idle();
  const bool too_idle = idle * 100 > kMaxIdlePercent * runs;
  if (idle > 0) {
    std::printf("\nidle seeds (tested little): %llu of %llu (%.1f%%; a sweep "
                "fails above %llu%%)\n",
                (unsigned long long)idle, (unsigned long long)runs,
                runs ? 100.0 * idle / runs : 0.0,
                (unsigned long long)kMaxIdlePercent);
    const auto& listed = summary.idle_seeds();
    for (size_t i = 0; i < listed.size() && i < 10; ++i) {
      std::printf("  seed %s\n", listed[i].c_str());
    }
    if (idle > 10) std::printf("  ...\n");
  }
  if (!summary.inconclusive_seeds().empty()) {
    std::printf(
        "\nlinearizability inconclusive (state limit) for %zu seeds: %s\n",
        summary.inconclusive_seeds().size(),
        absl::StrJoin(summary.inconclusive_seeds(), " ").c_str());
  }
  if (!summary.failures().empty()) {
    std::printf("\nfailures:\n");
    for (const detcd::cli::FailedSeed& f : summary.failures()) {
      std::printf("  seed %llu (%s, %s): %s\n    replay: %s\n",
                  (unsigned long long)f.seed, f.scenario.c_str(),
                  f.caught_by.c_str(), f.failure.c_str(), f.replay.c_str());
    }
  }
  const int report = Report(a, summary);
  if (sweep_error || (!timed && done != range)) {
    std::printf("error: the sweep could not run every seed (%llu of %llu "
                "reported)\n",
                (unsigned long long)done, (unsigned long long)range);
    return 2;
  }
  if (report == 2) return 2;
  const std::string crashes =
      crashed ? absl::StrCat(" (", crashed, " crashed)") : "";
  std::printf("%llu passed, %llu failed%s\n",
              (unsigned long long)(runs - summary.failed()),
              (unsigned long long)summary.failed(), crashes.c_str());
  if (!a.run.bug.empty()) {
    std::printf("planted bug %s: caught by the %s checker in %llu of %llu "
                "seeds (first: %s)\n",
                a.run.bug.c_str(), catcher.c_str(), (unsigned long long)caught,
                (unsigned long long)runs,
                first_caught == 0 ? "none"
                                  : absl::StrCat(first_caught).c_str());
    if (!caught_replay.empty()) {
      std::printf("caught-replay: %s\n", caught_replay.c_str());
    }
  }
  if (a.expect_failure) {
    // A planted bug counts as caught only by the checker it targets (a
    // safety bug noticed only as a liveness timeout does not count).
    if (!a.run.bug.empty()) return caught > 0 ? 0 : 1;
    return summary.failures().empty() ? 1 : 0;
  }
  if (too_idle) {
    std::printf("error: more than %llu%% of the seeds were idle: the sweep "
                "tested little (see above)\n",
                (unsigned long long)kMaxIdlePercent);
    return 1;
  }
  if (report != 0) return report;
  return summary.failures().empty() ? 0 : 1;
}

// --merge: the summaries of a sweep's shards (or of several sweeps) as one.
int RunMerge(const Args& a) {
  detcd::cli::Summary merged;
  for (const std::string& path : a.merge) {
    std::FILE* f = std::fopen(path.c_str(), "rb");
    if (f == nullptr) {
      std::fprintf(stderr, "%s: %s\n", path.c_str(), std::strerror(errno));
      return 2;
    }
    std::string text;
    char buf[1 << 16];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof(buf), f)) > 0) text.append(buf, n);
    std::fclose(f);
    absl::StatusOr<detcd::cli::Summary> s = detcd::cli::Summary::FromJson(text);
    if (!s.ok()) {
      std::fprintf(stderr, "%s: %s\n", path.c_str(),
                   s.status().ToString().c_str());
      return 2;
    }
    merged.Merge(*s);
  }
  merged.command = absl::StrCat("merge of ", absl::StrJoin(a.merge, " "));
  std::printf("merged %zu summaries: %llu seeds in %.1f s (longest shard)\n",
              a.merge.size(), (unsigned long long)merged.seeds(),
              merged.elapsed_s);
  merged.PrintTable(stdout);
  merged.PrintCoverage(stdout);
  if (!merged.failures().empty()) {
    std::printf("\nfailures:\n");
    for (const detcd::cli::FailedSeed& f : merged.failures()) {
      std::printf("  seed %llu (%s, %s): %s\n    replay: %s\n",
                  (unsigned long long)f.seed, f.scenario.c_str(),
                  f.caught_by.c_str(), f.failure.c_str(), f.replay.c_str());
    }
  }
  const int report = Report(a, merged);
  if (report != 0) return report;
  std::printf("%llu passed, %llu failed\n",
              (unsigned long long)(merged.seeds() - merged.failed()),
              (unsigned long long)merged.failed());
  return merged.failures().empty() ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  Args a;
  if (!ParseArgs(argc, argv, &a)) {
    Usage(stderr);
    return 2;
  }
  if (a.help) {
    Help();
    return 0;
  }
  if (!a.merge.empty()) return RunMerge(a);
  if (!a.sweep && (a.shard_n > 1 || a.probes || !a.json.empty() ||
                   !a.junit.empty())) {
    std::fprintf(stderr, "--shard, --json, --junit and --probes are for "
                         "sweeps (--seeds A..B or --duration D)\n");
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
    std::printf("fault points (--buggify, --buggify-point):\n");
    for (const detcd::buggify::PointInfo& p : detcd::buggify::kPoints) {
      std::printf("  %-27s %s\n", std::string(p.name).c_str(),
                  std::string(p.what).c_str());
    }
    return 0;
  }
  return a.sweep ? RunSweep(a, CommandLine(argc, argv)) : RunSingle(a);
}
