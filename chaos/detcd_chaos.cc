// detcd-chaos: the simulator's fault scenarios against a real cluster.
//
// Starts a 3- or 5-member cluster of --server (detcd, or etcd 3.4: the same
// flags) on this machine, each member in its own network namespace
// (chaos/cluster.h); runs a seeded client workload over real gRPC
// (chaos/workload.h); replays the fault events of a catalog scenario, run in
// memory by the simulator with the same seed, or of a schedule file, as real
// faults (chaos/plan.h, chaos/faults.h); then heals everything and checks
// the history with the simulator's linearizability, watch and lease
// checkers. docs/chaos.md has the details.
//
// Exit: 0 every check green; 1 a check failed (which, and the story of
// faults, are printed); 2 setup error; 77 network namespaces cannot be
// created here (ctest: skipped); 130 interrupted (everything cleaned up).
// With --expect-caught KIND: 0 only if the run failed and KIND's checker
// was among those that caught it.
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <memory>
#include <mutex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "chaos/cluster.h"
#include "chaos/faults.h"
#include "chaos/plan.h"
#include "chaos/workload.h"
#include "engine/util/planted.h"
#include "nlohmann/json.hpp"
#include "sim/schedule.h"

namespace detcd::chaos {
namespace {

constexpr int kExitOk = 0, kExitFailed = 1, kExitSetup = 2, kExitSkip = 77,
              kExitInterrupted = 130;

constexpr char kUsage[] = R"(usage: detcd-chaos --server PATH [flags]

Runs a real cluster of PATH (detcd, or etcd 3.4) in network namespaces,
a client workload over gRPC, the faults of a simulator scenario for real,
and the simulator's checkers on the history.

  --server PATH         member binary (build/detcd or /usr/bin/etcd)
  --members N           3 or 5 (default 3)
  --seed N              seeds the scenario's faults and the workload (1)
  --duration S          seconds of faults (default 30)
  --scenario A[+B...]   catalog scenario(s), faults merged
                        (default crash-restart-loop+partition-heal)
  --schedule FILE       the fault events of a recorded schedule instead
  --time-scale X        real seconds per simulated second (default 1)
  --bug NAME            plant a server bug (detcd only; engine/util/planted.h)
  --expect-caught KIND  succeed only if KIND's checker catches the run
  --clients N           KV clients (default 6)
  --heartbeat-ms N      members' heartbeat interval (default 100)
  --election-ms N       members' election timeout (default 1000)
  --tmpfs-mb N          data dirs on tmpfs of N MiB (disk-full faults)
  --progress-requests on|off|auto
                        watch clients ask for progress notifications (auto:
                        on, off for etcd 3.4: etcd-io/etcd#15220)
  --keep-logs           keep the data dirs and member logs
  --json                print the result as one JSON object on stdout
Exit: 0 green, 1 a check failed, 2 setup error, 77 no network namespaces
(not root / no CAP_NET_ADMIN), 130 interrupted.
)";

struct Flags {
  std::string server;
  int members = 3;
  uint64_t seed = 1;
  double duration_s = 30;
  std::string scenario = "crash-restart-loop+partition-heal";
  std::string schedule;
  double time_scale = 1;
  std::vector<std::string> bugs;
  std::string expect_caught;
  int clients = 6;
  int64_t heartbeat_ms = 100, election_ms = 1000;
  int64_t tmpfs_mb = 0;
  std::string progress_requests = "auto";
  bool keep_logs = false;
  bool json = false;
};

// Set by the signal thread; the main loop polls it.
std::atomic<bool> g_stop{false};
std::mutex g_cluster_mu;
NetnsCluster* g_cluster = nullptr;  // for the signal thread's last resort

void Log(const std::string& s) {
  std::fprintf(stderr, "detcd-chaos: %s\n", s.c_str());
  std::fflush(stderr);
}

// SIGINT/SIGTERM/SIGHUP are blocked in every thread and taken here: the
// first asks the main thread to stop and clean up; if it has not finished
// 20 s later, or a second signal comes, the members are killed and the
// namespaces removed from here, and the process exits.
void SignalThread(sigset_t set) {
  int sig = 0;
  sigwait(&set, &sig);
  Log(absl::StrCat("signal ", sig, ": stopping and cleaning up"));
  g_stop.store(true);
  timespec ts{20, 0};
  siginfo_t info;
  sigtimedwait(&set, &info, &ts);
  Log("cleanup did not finish in time (or second signal): forcing");
  {
    std::lock_guard<std::mutex> l(g_cluster_mu);
    if (g_cluster != nullptr) {
      g_cluster->EmergencyKill();
      NetnsCluster::CleanupLeftovers(g_cluster->prefix());
    }
  }
  _exit(kExitInterrupted);
}

bool ParseFlags(int argc, char** argv, Flags* f, std::string* err) {
  std::vector<std::string> args(argv + 1, argv + argc);
  for (size_t i = 0; i < args.size(); ++i) {
    absl::string_view flag = args[i];
    std::string value;
    if (!absl::ConsumePrefix(&flag, "--")) {
      *err = absl::StrCat("unexpected argument ", args[i]);
      return false;
    }
    std::string name(flag);
    bool has_value = false;
    if (size_t eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name.resize(eq);
      has_value = true;
    }
    auto take = [&]() -> bool {
      if (has_value) return true;
      if (i + 1 >= args.size()) {
        *err = absl::StrCat("--", name, " needs a value");
        return false;
      }
      value = args[++i];
      return true;
    };
    auto num = [&](auto* out) -> bool {
      if (!take()) return false;
      bool ok;
      if constexpr (std::is_same_v<std::remove_pointer_t<decltype(out)>,
                                   double>) {
        ok = absl::SimpleAtod(value, out);
      } else {
        ok = absl::SimpleAtoi(value, out);
      }
      if (!ok) *err = absl::StrCat("--", name, ": not a number: ", value);
      return ok;
    };
    if (name == "help" || name == "h") {
      std::fputs(kUsage, stdout);
      std::exit(0);
    } else if (name == "keep-logs") {
      f->keep_logs = true;
    } else if (name == "json") {
      f->json = true;
    } else if (name == "server") {
      if (!take()) return false;
      f->server = value;
    } else if (name == "members") {
      if (!num(&f->members)) return false;
    } else if (name == "seed") {
      if (!num(&f->seed)) return false;
    } else if (name == "duration") {
      if (!take()) return false;
      absl::string_view v = value;
      absl::ConsumeSuffix(&v, "s");
      if (!absl::SimpleAtod(v, &f->duration_s) || f->duration_s <= 0) {
        *err = "--duration: seconds > 0";
        return false;
      }
    } else if (name == "scenario") {
      if (!take()) return false;
      f->scenario = value;
    } else if (name == "schedule") {
      if (!take()) return false;
      f->schedule = value;
    } else if (name == "time-scale") {
      if (!num(&f->time_scale)) return false;
    } else if (name == "bug") {
      if (!take()) return false;
      f->bugs.push_back(value);
    } else if (name == "expect-caught") {
      if (!take()) return false;
      f->expect_caught = value;
    } else if (name == "clients") {
      if (!num(&f->clients)) return false;
    } else if (name == "heartbeat-ms") {
      if (!num(&f->heartbeat_ms)) return false;
    } else if (name == "election-ms") {
      if (!num(&f->election_ms)) return false;
    } else if (name == "progress-requests") {
      if (!take()) return false;
      if (value != "on" && value != "off" && value != "auto") {
        *err = "--progress-requests: on, off or auto";
        return false;
      }
      f->progress_requests = value;
    } else if (name == "tmpfs-mb") {
      if (!num(&f->tmpfs_mb)) return false;
    } else {
      *err = absl::StrCat("unknown flag --", name);
      return false;
    }
  }
  if (f->server.empty()) {
    *err = "--server is required";
    return false;
  }
  if (f->members != 3 && f->members != 5) {
    *err = "--members must be 3 or 5";
    return false;
  }
  if (f->time_scale <= 0) {
    *err = "--time-scale must be > 0";
    return false;
  }
  for (const std::string& b : f->bugs) {
    if (!planted::Find(b).has_value()) {
      *err = absl::StrCat("unknown planted bug ", b);
      return false;
    }
  }
  return true;
}

bool IsEtcd(const std::string& server) {
  const std::string base = server.substr(server.rfind('/') + 1);
  return base == "etcd";
}

// Sleeps until `t` in short steps; false if asked to stop.
bool SleepUntil(absl::Time t) {
  while (absl::Now() < t) {
    if (g_stop.load()) return false;
    absl::SleepFor(std::min(absl::Milliseconds(50), t - absl::Now()));
  }
  return !g_stop.load();
}

int Run(const Flags& f) {
  const absl::Time t_begin = absl::Now();
  const int64_t fault_ns = static_cast<int64_t>(f.duration_s * 1e9);
  // 1. The plan: cheap, and a bad scenario name fails before any network
  // is made.
  absl::StatusOr<Plan> plan;
  std::string plan_source;
  if (!f.schedule.empty()) {
    std::ifstream in(f.schedule);
    std::stringstream ss;
    ss << in.rdbuf();
    if (!in) {
      Log(absl::StrCat("cannot read ", f.schedule));
      return kExitSetup;
    }
    absl::StatusOr<sim::Schedule> s = sim::Schedule::Parse(ss.str());
    if (!s.ok()) {
      Log(absl::StrCat(f.schedule, ": ", s.status().message()));
      return kExitSetup;
    }
    plan = PlanFromSchedule(*s, f.members, f.time_scale);
    plan_source = absl::StrCat("schedule ", f.schedule, " (scenario ",
                               s->scenario, ", seed ", s->seed, ")");
  } else {
    plan = PlanFromScenarios(f.scenario, f.seed, f.members, fault_ns,
                             f.time_scale);
    plan_source = absl::StrCat("scenario ", f.scenario, " seed ", f.seed);
  }
  if (!plan.ok()) {
    Log(std::string(plan.status().message()));
    return kExitSetup;
  }
  if (!f.bugs.empty() && IsEtcd(f.server)) {
    Log("--bug plants a detcd bug; etcd has none to plant");
    return kExitSetup;
  }
  Log(absl::StrCat("plan: ", plan_source, ": ", plan->events.size(),
                   " fault steps over ", f.duration_s, " s",
                   plan->loss > 0 ? absl::StrCat(", loss ", plan->loss) : ""));

  // A plan with full disks needs data dirs on tmpfs (small, so filling
  // one is quick and touches no real disk). etcd preallocates 64 MiB WAL
  // segments, the next one ahead of time: 64 MiB is too little for it.
  int64_t tmpfs_mb = f.tmpfs_mb;
  for (const PlannedEvent& e : plan->events) {
    if (!e.target.disk_full.empty() && tmpfs_mb == 0) {
      tmpfs_mb = 256;
      Log("the plan fills disks: data dirs on 256 MiB tmpfs mounts");
    }
  }

  // Cuts and loss need nft: without it the run would pass without them.
  bool needs_nft = plan->loss > 0;
  for (const PlannedEvent& e : plan->events)
    needs_nft |= !e.target.cuts.empty();
  if (needs_nft && RunCommand({"nft", "--version"}).exit_code != 0) {
    Log("the plan cuts links, which needs nft (apt-get install nftables)");
    return kExitSetup;
  }

  // 2. The cluster.
  ClusterOptions co;
  co.server = f.server;
  co.members = f.members;
  co.heartbeat_ms = f.heartbeat_ms;
  co.election_ms = f.election_ms;
  co.tmpfs_bytes = tmpfs_mb << 20;
  for (const std::string& b : f.bugs) {
    co.extra_flags.push_back("--experimental-planted-bug");
    co.extra_flags.push_back(b);
  }
  co.prefix = absl::StrCat("dc", getpid() % 10000);
  for (const std::string& r : NetnsCluster::CleanupLeftovers(co.prefix)) {
    Log(absl::StrCat("removed leftover ", r));
  }
  absl::StatusOr<std::unique_ptr<NetnsCluster>> made = NetnsCluster::Create(co);
  if (!made.ok()) {
    Log(std::string(made.status().message()));
    return made.status().code() == absl::StatusCode::kPermissionDenied
               ? kExitSkip
               : kExitSetup;
  }
  std::unique_ptr<NetnsCluster> cluster = *std::move(made);
  {
    std::lock_guard<std::mutex> l(g_cluster_mu);
    g_cluster = cluster.get();
  }
  // Logs stay for a failed run (or on request); an expected catch is a
  // pass.
  bool keep = f.keep_logs;
  auto finish = [&](int code) {
    if (code == kExitFailed || code == kExitSetup) keep = true;
    {
      std::lock_guard<std::mutex> l(g_cluster_mu);
      g_cluster = nullptr;
    }
    cluster->Destroy(keep);
    if (keep) Log(absl::StrCat("logs and data kept in ", cluster->dir()));
    return code;
  };
  Log(absl::StrCat("cluster ", cluster->prefix(), ": ", f.members, " x ",
                   f.server, " at ", absl::StrJoin(cluster->endpoints(), ",")));
  if (absl::Status s = cluster->StartAll(); !s.ok()) {
    Log(std::string(s.message()));
    return finish(kExitSetup);
  }
  std::vector<int> all;
  for (int i = 0; i < f.members; ++i) all.push_back(i);
  if (absl::Status s = cluster->WaitHealthy(all, absl::Seconds(60)); !s.ok()) {
    Log(absl::StrCat("cluster did not become healthy: ", s.message()));
    for (int i = 0; i < f.members; ++i) {
      Log(absl::StrCat("m", i, " log tail:\n", cluster->LogTail(i, 10)));
    }
    return finish(kExitSetup);
  }
  if (g_stop.load()) return finish(kExitInterrupted);
  Faults faults(cluster.get());
  const absl::Duration setup_time = absl::Now() - t_begin;
  Log(absl::StrCat("healthy after ", absl::FormatDuration(setup_time),
                   faults.has_netem() ? "" : " (no tc netem on this kernel)"));

  // 3. Workload and faults.
  WorkloadOptions wo;
  wo.endpoints = cluster->endpoints();
  wo.seed = f.seed;
  wo.clients = f.clients;
  wo.election_timeout_ms = f.election_ms;
  // etcd 3.4.23 may answer a requested progress notification of a watcher
  // that is still catching up with a revision past events it has not sent
  // yet (etcd-io/etcd#15220, fixed after 3.4.23): the watch checker
  // reports it. Off for etcd unless asked, so its runs check the rest.
  wo.progress_requests = f.progress_requests == "on" ||
                         (f.progress_requests == "auto" && !IsEtcd(f.server));
  if (!wo.progress_requests) {
    Log("watch progress requests off (etcd-io/etcd#15220 on etcd 3.4)");
  }
  Workload workload(wo);
  workload.Start();
  const absl::Time t0 = absl::Now();
  std::vector<std::string> story, problems, server_exits;
  if (plan->loss > 0 || plan->delay_ms > 0) {
    absl::Status s = faults.SetNetwork(plan->loss, plan->delay_ms);
    story.push_back(
        absl::StrFormat("  +%6.2fs  network: loss %.3f%s", 0.0, plan->loss,
                        s.ok() ? "" : absl::StrCat(" (", s.message(), ")")));
  }
  bool interrupted = false;
  // Members whose disk was full since the last look: their exit is the
  // expected fail-stop (etcd and detcd stop on a failed WAL write).
  std::set<int> disk_was_full;
  auto reap = [&] {
    for (const std::string& x : cluster->ReapExited()) {
      const std::string when = absl::StrFormat(
          "%s at +%.2fs", x, absl::ToDoubleSeconds(absl::Now() - t0));
      int m = -1;
      (void)absl::SimpleAtoi(x.substr(1, x.find(' ') - 1), &m);
      if (disk_was_full.count(m)) {
        story.push_back(
            absl::StrCat("          ", when, " (its disk was full: expected)"));
      } else {
        server_exits.push_back(when);
        Log(absl::StrCat("member exited by itself: ", when));
      }
    }
    disk_was_full = faults.current().disk_full;
  };
  for (const PlannedEvent& e : plan->events) {
    if (e.at_ns >= fault_ns) break;
    if (!SleepUntil(t0 + absl::Nanoseconds(e.at_ns))) {
      interrupted = true;
      break;
    }
    reap();
    if (e.target == faults.current()) continue;
    absl::Status s = faults.Apply(e.target);
    disk_was_full.insert(e.target.disk_full.begin(), e.target.disk_full.end());
    story.push_back(absl::StrFormat(
        "  +%6.2fs  %-28s %s%s", absl::ToDoubleSeconds(absl::Now() - t0),
        e.source, e.target.Describe(),
        s.ok() ? "" : absl::StrCat("  [", s.message(), "]")));
    if (!s.ok()) problems.push_back(std::string(s.message()));
  }
  if (!interrupted && !SleepUntil(t0 + absl::Nanoseconds(fault_ns))) {
    interrupted = true;
  }
  reap();
  // 4. Heal, let the cluster converge, stop the workload, check.
  absl::Status healed = faults.HealAll();
  story.push_back(absl::StrFormat("  +%6.2fs  %-28s %s",
                                  absl::ToDoubleSeconds(absl::Now() - t0),
                                  "heal", "all well"));
  if (interrupted) {
    workload.Stop();
    return finish(kExitInterrupted);
  }
  absl::Status health = cluster->WaitHealthy(all, absl::Seconds(60));
  if (!health.ok()) problems.push_back(std::string(health.message()));
  SleepUntil(absl::Now() + absl::Seconds(2));
  workload.Stop();
  if (g_stop.load()) return finish(kExitInterrupted);
  const absl::Time t_check = absl::Now();
  CheckReport rep = workload.Check();
  const absl::Duration check_time = absl::Now() - t_check;
  for (const std::string& x : cluster->ReapExited()) server_exits.push_back(x);

  std::vector<std::string> failures = rep.failures;
  std::set<std::string> caught(rep.caught_by.begin(), rep.caught_by.end());
  for (const std::string& x : server_exits) {
    failures.push_back(absl::StrCat("server-exit: ", x));
    caught.insert("server-exit");
  }
  if (!health.ok()) {
    failures.push_back(
        absl::StrCat("liveness: after healing: ", health.message()));
    caught.insert("liveness");
  }
  const bool ok = rep.ok && failures.empty();
  int code = ok ? kExitOk : kExitFailed;
  std::string verdict = ok ? "all checks green" : "FAILED";
  if (!f.expect_caught.empty()) {
    const bool hit = !ok && caught.count(f.expect_caught) > 0;
    verdict = hit ? absl::StrCat("caught by ", f.expect_caught, " as expected")
                  : absl::StrCat("NOT caught by ", f.expect_caught,
                                 ok ? " (the run passed)" : "");
    code = hit ? kExitOk : kExitFailed;
  }
  const absl::Duration total = absl::Now() - t_begin;
  if (code == kExitFailed) keep = true;

  std::vector<std::pair<std::string, int>> counts = faults.counts();
  std::vector<std::string> count_text;
  for (const auto& [k, n] : counts)
    count_text.push_back(absl::StrCat(k, "=", n));
  std::vector<std::string> na_text;
  for (const auto& [k, n] : plan->not_applied)
    na_text.push_back(absl::StrCat(k, " x", n));

  if (f.json) {
    nlohmann::json j;
    j["server"] = f.server;
    j["members"] = f.members;
    j["seed"] = f.seed;
    j["plan"] = plan_source;
    j["duration_s"] = f.duration_s;
    j["time_scale"] = f.time_scale;
    j["bugs"] = f.bugs;
    j["ok"] = ok;
    j["verdict"] = verdict;
    j["failures"] = failures;
    j["caught_by"] = std::vector<std::string>(caught.begin(), caught.end());
    j["summary"] = rep.summary;
    j["story"] = story;
    j["faults"] = nlohmann::json::object();
    for (const auto& [k, n] : counts) j["faults"][k] = n;
    j["not_applied"] = plan->not_applied;
    j["problems"] = problems;
    j["setup_s"] = absl::ToDoubleSeconds(setup_time);
    j["check_s"] = absl::ToDoubleSeconds(check_time);
    j["wall_s"] = absl::ToDoubleSeconds(total);
    j["logs"] = keep ? cluster->dir() : "";
    std::cout << j.dump() << std::endl;
  } else {
    std::cout << "detcd-chaos: " << f.server << ", " << f.members
              << " members, " << plan_source << ", " << f.duration_s
              << " s of faults" << (f.bugs.empty() ? "" : ", planted bug ")
              << absl::StrJoin(f.bugs, ",") << "\n";
    std::cout << "faults (real time, source, state after):\n"
              << absl::StrJoin(story, "\n") << "\n";
    std::cout << "faults done: " << absl::StrJoin(count_text, " ") << "\n";
    if (!na_text.empty()) {
      std::cout << "not applied (no real counterpart): "
                << absl::StrJoin(na_text, ", ") << "\n";
    }
    for (const std::string& p : problems) std::cout << "problem: " << p << "\n";
    std::cout << rep.summary
              << (rep.summary.empty() || rep.summary.back() == '\n' ? ""
                                                                    : "\n");
    for (const std::string& x : failures) std::cout << "FAIL " << x << "\n";
    std::cout << absl::StrFormat(
        "%s (setup %.1f s, check %.1f s, total %.1f s)\n", verdict,
        absl::ToDoubleSeconds(setup_time), absl::ToDoubleSeconds(check_time),
        absl::ToDoubleSeconds(total));
  }
  return finish(code);
}

}  // namespace
}  // namespace detcd::chaos

int main(int argc, char** argv) {
  using namespace detcd::chaos;
  Flags f;
  std::string err;
  if (!ParseFlags(argc, argv, &f, &err)) {
    std::fprintf(stderr, "detcd-chaos: %s\n\n%s", err.c_str(), kUsage);
    return kExitSetup;
  }
  // Before any thread exists: the mask is inherited by every thread
  // (gRPC's too), so only the signal thread takes these.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  signal(SIGPIPE, SIG_IGN);
  std::thread(SignalThread, set).detach();
  return Run(f);
}
