// version, make-mirror, lock, elect, check.
#include <netdb.h>
#include <pthread.h>
#include <sys/socket.h>
#include <signal.h>
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/synchronization/mutex.h"
#include "cli/detcdctl/commands.h"
#include "cli/detcdctl/ctl.h"
#include "cli/detcdctl/gofmt.h"
#include "detcd/concurrency.h"
#include "detcd/errors.h"
#include "detcd/watch.h"

extern char** environ;

namespace detcd::ctl {
namespace {

namespace pb = etcdserverpb;

// SIGINT / SIGTERM turned into a cancellation (etcdctl's lock and elect
// stop cleanly on them): the signals are blocked in every thread and one
// thread waits for them.
class SignalCanceller {
 public:
  SignalCanceller() {
    sigemptyset(&set_);
    sigaddset(&set_, SIGINT);
    sigaddset(&set_, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set_, nullptr);
    std::thread([this] {
      int sig;
      if (sigwait(&set_, &sig) == 0) canceller_.Cancel();
    }).detach();
  }
  client::Canceller* canceller() { return &canceller_; }

 private:
  sigset_t set_;
  client::Canceller canceller_;
};

// Runs argv with extra environment variables placed before the process's
// own (as etcdctl's lock: the inherited ones win on a clash); returns Go's
// error text for a failed run, or "".
std::string RunCommand(const std::vector<std::string>& args,
                       const std::vector<std::string>& extra_env) {
  std::fflush(stdout);
  std::vector<std::string> env;
  for (const std::string& e : extra_env) {
    std::string key = e.substr(0, e.find('=') + 1);
    bool shadowed = false;
    for (char** p = environ; *p != nullptr; ++p) {
      if (absl::string_view(*p).substr(0, key.size()) == key) shadowed = true;
    }
    if (!shadowed) env.push_back(e);
  }
  for (char** p = environ; *p != nullptr; ++p) env.emplace_back(*p);
  std::vector<char*> argv, envp;
  for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  for (const std::string& e : env) envp.push_back(const_cast<char*>(e.c_str()));
  envp.push_back(nullptr);
  int pipefd[2];
  if (pipe2(pipefd, O_CLOEXEC) != 0) return "pipe failed";
  pid_t pid = fork();
  if (pid == 0) {
    sigset_t none;
    sigemptyset(&none);
    pthread_sigmask(SIG_SETMASK, &none, nullptr);
    execvpe(argv[0], argv.data(), envp.data());
    int e = errno;
    (void)!write(pipefd[1], &e, sizeof e);
    _exit(127);
  }
  close(pipefd[1]);
  int child_errno = 0;
  bool exec_failed = read(pipefd[0], &child_errno, sizeof child_errno) ==
                     static_cast<ssize_t>(sizeof child_errno);
  close(pipefd[0]);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (exec_failed) return ExecErrorText(args[0], child_errno);
  if (WIFEXITED(status) && WEXITSTATUS(status) != 0) {
    return absl::StrCat("exit status ", WEXITSTATUS(status));
  }
  if (WIFSIGNALED(status)) {
    return absl::StrCat("signal: ", strsignal(WTERMSIG(status)));
  }
  return "";
}

// ---------------------------------------------------------------- lock


absl::Status LockUntilSignal(client::Client* c, SignalCanceller* sig,
                             const std::string& name,
                             const std::vector<std::string>& cmd_args,
                             int ttl) {
  auto s = client::Session::New(c, ttl);
  if (!s.ok()) return s.status();
  client::Mutex m(s->get(), name);
  c->set_canceller(sig->canceller());
  absl::Status ls = m.Lock();
  if (!ls.ok()) return ls;
  if (!cmd_args.empty()) {
    std::string err = RunCommand(
        cmd_args, {absl::StrCat("ETCD_LOCK_KEY=", m.key()),
                   absl::StrCat("ETCD_LOCK_REV=", m.header().revision())});
    c->set_canceller(nullptr);
    absl::Status us = m.Unlock();
    if (!err.empty()) return client::PlainError(err);
    return us;
  }
  pb::RangeRequest g;
  g.set_key(m.key());
  auto k = c->Range(g);
  if (!k.ok()) return k.status();
  if (k->kvs_size() == 0) return client::PlainError("lock lost on init");
  display().Get(*k);
  std::fflush(stdout);
  (*s)->WaitDone(sig->canceller());
  if (sig->canceller()->cancelled()) {
    c->set_canceller(nullptr);
    return m.Unlock();
  }
  return client::PlainError("session expired");
}

// ---------------------------------------------------------------- elect

absl::Status Observe(client::Client* c, SignalCanceller* sig,
                     const std::string& name) {
  auto s = client::Session::New(c);
  if (!s.ok()) return s.status();
  client::Election e(s->get(), name);
  c->set_canceller(sig->canceller());
  absl::Status st = e.Observe([](const pb::RangeResponse& r) {
    display().Get(r);
    std::fflush(stdout);
    return true;
  });
  if (sig->canceller()->cancelled()) return absl::OkStatus();
  (void)st;
  return client::PlainError("elect: observer lost");
}

absl::Status Campaign(client::Client* c, SignalCanceller* sig,
                      const std::string& name, const std::string& prop) {
  auto s = client::Session::New(c);
  if (!s.ok()) return s.status();
  client::Election e(s->get(), name);
  c->set_canceller(sig->canceller());
  if (absl::Status cs = e.Campaign(prop); !cs.ok()) return cs;
  pb::RangeRequest g;
  g.set_key(e.key());
  auto resp = c->Range(g);
  if (!resp.ok()) return resp.status();
  display().Get(*resp);
  std::fflush(stdout);
  (*s)->WaitDone(sig->canceller());
  if (!sig->canceller()->cancelled()) {
    return client::PlainError("elect: session expired");
  }
  c->set_canceller(nullptr);
  return e.Resign();
}

// ---------------------------------------------------------------- mirror

absl::Status MakeMirror(Command& cmd, client::Client* c, client::Client* dc,
                        std::string prefix, std::string dest_prefix,
                        bool no_dest_prefix) {
  std::atomic<int64_t> total{0};
  std::thread([&total] {
    for (;;) {
      std::this_thread::sleep_for(std::chrono::seconds(30));
      Out(absl::StrCat(total.load(), "\n"));
      std::fflush(stdout);
    }
  }).detach();
  // mirror.Syncer.SyncBase: the revision to copy at.
  pb::RangeRequest probe;
  probe.set_key("foo");
  auto first = c->Range(probe);
  if (!first.ok()) return first.status();
  int64_t rev = first->header().revision();
  if (no_dest_prefix && !dest_prefix.empty()) {
    ExitWithError(kExitBadArgs,
                  "`--dest-prefix` and `--no-dest-prefix` cannot be set at "
                  "the same time, choose one");
  }
  if (!no_dest_prefix && dest_prefix.empty()) dest_prefix = prefix;
  auto modify = [&](const std::string& key) {
    size_t pos = key.find(prefix);
    if (pos == std::string::npos || prefix.empty()) {
      return prefix.empty() ? dest_prefix + key : key;
    }
    return key.substr(0, pos) + dest_prefix + key.substr(pos + prefix.size());
  };
  std::string key = prefix.empty() ? std::string(1, '\0') : prefix;
  for (;;) {
    pb::RangeRequest r;
    r.set_key(key);
    r.set_range_end(prefix.empty() ? std::string(1, '\0')
                                   : PrefixRangeEnd(prefix));
    r.set_limit(1000);
    r.set_revision(rev);
    auto resp = c->Range(r);
    if (!resp.ok()) return resp.status();
    for (const auto& kv : resp->kvs()) {
      pb::PutRequest p;
      p.set_key(modify(kv.key()));
      p.set_value(kv.value());
      auto pr = dc->Put(p);
      if (!pr.ok()) return pr.status();
      ++total;
    }
    if (!resp->more() || resp->kvs_size() == 0) break;
    key = resp->kvs(resp->kvs_size() - 1).key() + std::string(1, '\0');
  }
  client::Watcher w(c);
  pb::WatchCreateRequest wr;
  if (prefix.empty()) {
    wr.set_key(std::string(1, '\0'));
    wr.set_range_end(std::string(1, '\0'));
  } else {
    wr.set_key(prefix);
    wr.set_range_end(PrefixRangeEnd(prefix));
  }
  wr.set_start_revision(rev + 1);
  w.Add(wr);
  client::WatchEvent ev;
  while (w.Next(&ev)) {
    if (!ev.has_response) break;
    if (ev.response.compact_revision() != 0) {
      return absl::OutOfRangeError(client::kErrCompacted);
    }
    pb::TxnRequest txn;
    int64_t last = 0;
    auto flush = [&]() -> absl::Status {
      if (txn.success_size() == 0) return absl::OkStatus();
      auto tr = dc->Txn(txn);
      txn.Clear();
      return tr.status();
    };
    for (const auto& e : ev.response.events()) {
      int64_t next = e.kv().mod_revision();
      if (last != 0 && next > last) {
        if (absl::Status s = flush(); !s.ok()) return s;
      }
      last = next;
      pb::RequestOp* op = txn.add_success();
      if (e.type() == mvccpb::Event::PUT) {
        op->mutable_request_put()->set_key(modify(e.kv().key()));
        op->mutable_request_put()->set_value(e.kv().value());
      } else {
        op->mutable_request_delete_range()->set_key(modify(e.kv().key()));
      }
      ++total;
    }
    if (absl::Status s = flush(); !s.ok()) return s;
    if (ev.closing) break;
  }
  return w.status();
}

// ---------------------------------------------------------------- check

// The progress bar etcdctl's check prints (cheggaaa/pb.v1 with counters,
// percent and time left, redrawn every 200 ms with "\r"; no bar when
// stdout is not a terminal wide enough, which is how it is compared).
class ProgressBar {
 public:
  explicit ProgressBar(int64_t total) : total_(total) {
    start_ = std::chrono::steady_clock::now();
    changed_ = start_;
    Draw(false);
    thread_ = std::thread([this] {
      while (!done_.load()) {
        std::this_thread::sleep_for(std::chrono::milliseconds(200));
        if (!done_.load()) Draw(false);
      }
    });
  }
  void Set(int64_t v) {
    std::lock_guard<std::mutex> l(mu_);
    if (v != current_) changed_ = std::chrono::steady_clock::now();
    current_ = v;
  }
  void Add(int64_t n) {
    std::lock_guard<std::mutex> l(mu_);
    current_ += n;
    changed_ = std::chrono::steady_clock::now();
  }
  void Finish() {
    done_.store(true);
    if (thread_.joinable()) thread_.join();
    Draw(true);
    Out("\n");
    std::fflush(stdout);
  }

 private:
  static std::string Duration(int64_t secs) {
    std::string r;
    if (secs > 24 * 3600) {
      r = absl::StrCat(secs / 86400, "d");
      secs %= 86400;
    }
    if (secs > 3600) {
      absl::StrAppend(&r, secs / 3600, "h");
      secs %= 3600;
    }
    return absl::StrFormat("%s%02dm%02ds", r, secs / 60, secs % 60);
  }
  void Draw(bool final) {
    std::lock_guard<std::mutex> l(mu_);
    auto now = std::chrono::steady_clock::now();
    double pct = 100.0 * static_cast<double>(current_) /
                 static_cast<double>(total_);
    std::string out = absl::StrFormat(" %d / %d  %6.02f%%", current_, total_,
                                      pct);
    if (final) {
      int64_t secs = std::chrono::duration_cast<std::chrono::seconds>(
                         now - start_)
                         .count();
      absl::StrAppend(&out, " ", GoDuration(secs * 1000000000));
    } else if (current_ > 0) {
      double per = std::chrono::duration<double>(changed_ - start_).count() /
                   static_cast<double>(current_);
      double left = static_cast<double>(total_ - current_) * per -
                    std::chrono::duration<double>(now - changed_).count();
      if (left >= 1) absl::StrAppend(&out, " ", Duration(static_cast<int64_t>(left)));
    }
    Out("\r" + out);
    std::fflush(stdout);
  }

  int64_t total_;
  int64_t current_ = 0;
  std::chrono::steady_clock::time_point start_, changed_;
  std::mutex mu_;
  std::atomic<bool> done_{false};
  std::thread thread_;
};

struct Stats {
  std::vector<double> lat_s;
  std::map<std::string, int> errors;
  double total_s = 0;
};

void Report(const Stats& st, double* rps, double* slowest, double* stddev) {
  double sum = 0;
  *slowest = 0;
  for (double l : st.lat_s) {
    sum += l;
    *slowest = std::max(*slowest, l);
  }
  size_t n = st.lat_s.size();
  double mean = n ? sum / static_cast<double>(n) : 0;
  double var = 0;
  for (double l : st.lat_s) var += (l - mean) * (l - mean);
  *stddev = n ? std::sqrt(var / static_cast<double>(n)) : 0;
  *rps = st.total_s > 0 ? static_cast<double>(n) / st.total_s : 0;
}

struct PerfModel {
  int limit, clients, duration;
};
struct ScaleModel {
  int limit, kv_size, clients;
};

std::string LoadAlias(const std::string& load) {
  if (load == "s" || load == "small") return "s";
  if (load == "m" || load == "medium") return "m";
  if (load == "l" || load == "large") return "l";
  if (load == "xl" || load == "xLarge") return "xl";
  return "";
}

void CompactAndDefrag(Command& cmd, client::Client* c, int64_t rev) {
  if (cmd.Lookup("auto-compact")->b()) {
    Out(absl::StrFormat("Compacting with revision %d\n", rev));
    pb::CompactionRequest r;
    r.set_revision(rev);
    r.set_physical(true);
    auto resp = c->Compact(r, client::CallOptions::Timeout(absl::Seconds(30)));
    if (!resp.ok()) ExitWithStatus(kExitError, resp.status());
    Out(absl::StrFormat("Compacted with revision %d\n", rev));
  }
  if (cmd.Lookup("auto-defrag")->b()) {
    for (const std::string& ep : c->endpoints()) {
      Out(absl::StrCat("Defragmenting ", GoQuote(ep), "\n"));
      auto resp = c->Defragment(ep, client::CallOptions::Timeout(absl::Seconds(30)));
      if (!resp.ok()) ExitWithStatus(kExitError, resp.status());
      Out(absl::StrCat("Defragmented ", GoQuote(ep), "\n"));
    }
  }
}

// Puts `count` keys (or for `duration_s`) from `clients` threads at up to
// `rate` per second; returns the latency statistics.
Stats PutLoad(client::Client* c, const std::string& prefix, int clients,
              int rate, int duration_s, int count, int key_size,
              int value_size, ProgressBar* bar = nullptr) {
  Stats st;
  std::mutex mu;
  std::atomic<int> issued{0};
  auto start = std::chrono::steady_clock::now();
  auto end = start + std::chrono::seconds(duration_s);
  std::vector<std::thread> threads;
  std::string value(value_size, '\0');
  for (int i = 0; i < clients; ++i) {
    threads.emplace_back([&, i] {
      std::mt19937_64 rng(std::random_device{}() + i);
      for (;;) {
        int n = issued.fetch_add(1);
        if (count > 0 && n >= count) return;
        if (rate > 0) {
          auto due = start + std::chrono::microseconds(
                                 static_cast<int64_t>(1e6 * n / rate));
          if (due >= end) return;
          std::this_thread::sleep_until(due);
        }
        std::string key(key_size, '\0');
        // binary.PutVarint of a random int63, as etcdctl.
        uint64_t v = (rng() >> 1) << 1;
        size_t k = 0;
        while (v >= 0x80 && k < key.size()) {
          key[k++] = static_cast<char>(v | 0x80);
          v >>= 7;
        }
        if (k < key.size()) key[k] = static_cast<char>(v);
        pb::PutRequest p;
        p.set_key(prefix + key);
        p.set_value(value);
        auto t0 = std::chrono::steady_clock::now();
        auto r = c->Put(p);
        double lat = std::chrono::duration<double>(
                         std::chrono::steady_clock::now() - t0)
                         .count();
        std::lock_guard<std::mutex> l(mu);
        st.lat_s.push_back(lat);
        if (!r.ok()) st.errors[client::ErrorText(r.status())]++;
        if (bar != nullptr) bar->Add(1);
      }
    });
  }
  for (auto& t : threads) t.join();
  st.total_s = std::chrono::duration<double>(std::chrono::steady_clock::now() -
                                             start)
                   .count();
  return st;
}

void EnsureEmptyPrefix(client::Client* c, const std::string& prefix) {
  pb::RangeRequest g;
  g.set_key(prefix);
  g.set_range_end(PrefixRangeEnd(prefix));
  g.set_limit(1);
  auto resp = c->Range(g, client::CallOptions::Timeout(absl::Seconds(60)));
  if (!resp.ok()) ExitWithStatus(kExitError, resp.status());
  if (resp->kvs_size() > 0) {
    ExitWithError(kExitInvalidInput,
                  absl::StrCat("prefix ", GoQuote(prefix),
                               " has keys. Delete with etcdctl del --prefix ",
                               prefix, " first"));
  }
}

int64_t DeletePrefix(client::Client* c, const std::string& prefix) {
  pb::DeleteRangeRequest d;
  d.set_key(prefix);
  d.set_range_end(PrefixRangeEnd(prefix));
  auto resp = c->DeleteRange(d, client::CallOptions::Timeout(absl::Seconds(30)));
  if (!resp.ok()) ExitWithStatus(kExitError, resp.status());
  return resp->header().revision();
}

void CheckPerf(Command& cmd) {
  std::string model = LoadAlias(cmd.Lookup("load")->s());
  if (model.empty()) {
    ExitWithError(kExitBadFeature, absl::StrCat("unknown load option ",
                                                cmd.Lookup("load")->s()));
  }
  PerfModel m = model == "s"   ? PerfModel{150, 50, 60}
                : model == "m" ? PerfModel{1000, 200, 60}
                : model == "l" ? PerfModel{8000, 500, 60}
                               : PerfModel{15000, 1000, 60};
  std::string prefix = cmd.Lookup("prefix")->s();
  auto c = MustClientFromCmd(cmd);
  EnsureEmptyPrefix(c.get(), prefix);
  ProgressBar bar(m.duration);
  std::atomic<bool> stop{false};
  std::thread ticker([&] {
    for (int i = 0; i < m.duration && !stop.load(); ++i) {
      std::this_thread::sleep_for(std::chrono::seconds(1));
      bar.Add(1);
    }
  });
  Stats st = PutLoad(c.get(), prefix, m.clients, m.limit, m.duration, 0, 256,
                     1024);
  stop.store(true);
  ticker.join();
  bar.Set(m.duration);
  bar.Finish();
  int64_t rev = DeletePrefix(c.get(), prefix);
  CompactAndDefrag(cmd, c.get(), rev);
  double rps, slowest, stddev;
  Report(st, &rps, &slowest, &stddev);
  bool ok = true;
  if (!st.errors.empty()) {
    Out("FAIL: too many errors\n");
    for (const auto& [k, v] : st.errors) {
      Out(absl::StrFormat("FAIL: ERROR(%s) -> %d\n", k, v));
    }
    ok = false;
  }
  if (rps / m.limit <= 0.9) {
    Out(absl::StrFormat("FAIL: Throughput too low: %d writes/s\n",
                        static_cast<int>(rps) + 1));
    ok = false;
  } else {
    Out(absl::StrFormat("PASS: Throughput is %d writes/s\n",
                        static_cast<int>(rps) + 1));
  }
  if (slowest > 0.5) {
    Out(absl::StrFormat("Slowest request took too long: %fs\n", slowest));
    ok = false;
  } else {
    Out(absl::StrFormat("PASS: Slowest request took %fs\n", slowest));
  }
  if (stddev > 0.1) {
    Out(absl::StrFormat("Stddev too high: %fs\n", stddev));
    ok = false;
  } else {
    Out(absl::StrFormat("PASS: Stddev is %fs\n", stddev));
  }
  if (ok) {
    Out("PASS\n");
  } else {
    Out("FAIL\n");
    Exit(kExitError);
  }
}

// etcdctl's endpointMemoryMetrics: process_resident_memory_bytes from the
// endpoint's /metrics (plain HTTP; problems are printed and read as 0).
double ResidentMemory(const std::string& endpoint) {
  std::string host = endpoint;
  if (absl::StartsWith(host, "http://")) host = host.substr(7);
  if (absl::StartsWith(host, "https://")) {
    Out("fetch error: https metrics are not supported by detcdctl\n");
    return 0;
  }
  size_t colon = host.rfind(':');
  std::string name = host.substr(0, colon);
  std::string port = colon == std::string::npos ? "80" : host.substr(colon + 1);
  struct addrinfo hints = {}, *res = nullptr;
  hints.ai_socktype = SOCK_STREAM;
  if (getaddrinfo(name.c_str(), port.c_str(), &hints, &res) != 0 ||
      res == nullptr) {
    Out(absl::StrCat("fetch error: Get \"http://", host,
                     "/metrics\": dial tcp: lookup ", name, ": no such host\n"));
    return 0;
  }
  int fd = socket(res->ai_family, res->ai_socktype, res->ai_protocol);
  bool ok = fd >= 0 && connect(fd, res->ai_addr, res->ai_addrlen) == 0;
  freeaddrinfo(res);
  if (!ok) {
    if (fd >= 0) close(fd);
    Out(absl::StrCat("fetch error: Get \"http://", host,
                     "/metrics\": dial tcp ", host, ": connect: connection "
                     "refused\n"));
    return 0;
  }
  std::string req = absl::StrCat("GET /metrics HTTP/1.0\r\nHost: ", host,
                                 "\r\n\r\n");
  (void)!write(fd, req.data(), req.size());
  std::string body;
  char buf[65536];
  ssize_t n;
  while ((n = read(fd, buf, sizeof buf)) > 0) body.append(buf, n);
  close(fd);
  const std::string key = "process_resident_memory_bytes";
  for (absl::string_view line : absl::StrSplit(body, '\n')) {
    if (absl::StartsWith(line, key) && !absl::StartsWith(line, key + "_")) {
      std::string v(absl::StripAsciiWhitespace(line.substr(key.size())));
      return std::strtod(v.c_str(), nullptr);
    }
  }
  Out(absl::StrCat("could not find: ", key, "\n"));
  return 0;
}

void CheckDatascale(Command& cmd) {
  std::string model = LoadAlias(cmd.Lookup("load")->s());
  if (model.empty()) {
    ExitWithError(kExitBadFeature, absl::StrCat("unknown load option ",
                                                cmd.Lookup("load")->s()));
  }
  ScaleModel m = model == "s"   ? ScaleModel{10000, 1024, 50}
                 : model == "m" ? ScaleModel{100000, 1024, 200}
                 : model == "l" ? ScaleModel{1000000, 1024, 500}
                                : ScaleModel{3000000, 1024, 1000};
  std::string prefix = cmd.Lookup("prefix")->s();
  ClientSetup setup = ClientConfigFromCmd(cmd);
  auto c = MustClient(setup);
  EnsureEmptyPrefix(c.get(), prefix);
  double before = ResidentMemory(setup.endpoints[0]);
  if (before == 0) {
    Out("FAIL: Could not read process_resident_memory_bytes before the put "
        "operations.\n");
    Exit(kExitError);
  }
  Out(absl::StrFormat(
      "Start data scale check for work load [%d key-value pairs, %d bytes per "
      "key-value, %d concurrent clients].\n",
      m.limit, m.kv_size, m.clients));
  ProgressBar bar(m.limit);
  Stats st = PutLoad(c.get(), prefix, m.clients, 0, 1 << 30, m.limit, 512, 512,
                     &bar);
  bar.Finish();
  double after = ResidentMemory(setup.endpoints[0]);
  if (after == 0) {
    Out("FAIL: Could not read process_resident_memory_bytes after the put "
        "operations.\n");
    Exit(kExitError);
  }
  int64_t rev = DeletePrefix(c.get(), prefix);
  CompactAndDefrag(cmd, c.get(), rev);
  double mb = (after - before) / (1024 * 1024);
  if (!st.errors.empty()) {
    Out("FAIL: too many errors\n");
    for (const auto& [k, v] : st.errors) {
      Out(absl::StrFormat("FAIL: ERROR(%s) -> %d\n", k, v));
    }
    Exit(kExitError);
  }
  Out(absl::StrFormat("PASS: Approximate system memory used : %.2f MB.\n", mb));
}

}  // namespace

std::unique_ptr<Command> NewVersionCommand() {
  return std::make_unique<Command>(
      "version", "Prints the version of etcdctl", "",
      [](Command&, const std::vector<std::string>&) {
        Out("etcdctl version: 3.4.23\nAPI version: 3.4\n");
      });
}

std::unique_ptr<Command> NewMakeMirrorCommand() {
  auto c = std::make_unique<Command>(
      "make-mirror [options] <destination>",
      "Makes a mirror at the destination etcd cluster", "",
      [](Command& cmd, const std::vector<std::string>& args) {
        if (args.size() != 1) {
          ExitWithError(kExitBadArgs, "make-mirror takes one destination argument");
        }
        client::Config dcfg;
        dcfg.endpoints = {args[0]};
        dcfg.dial_timeout = absl::Nanoseconds(cmd.Lookup("dial-timeout")->ns());
        dcfg.keepalive_time =
            absl::Nanoseconds(cmd.Lookup("keepalive-time")->ns());
        dcfg.keepalive_timeout =
            absl::Nanoseconds(cmd.Lookup("keepalive-timeout")->ns());
        client::TlsConfig tls;
        tls.cert_file = cmd.Lookup("dest-cert")->s();
        tls.key_file = cmd.Lookup("dest-key")->s();
        tls.ca_file = cmd.Lookup("dest-cacert")->s();
        if (!tls.cert_file.empty() || !tls.key_file.empty() ||
            !tls.ca_file.empty() || !cmd.Lookup("dest-insecure-transport")->b()) {
          dcfg.tls = tls;
        }
        ClientSetup dsetup;
        dsetup.config = dcfg;
        auto dc = MustClient(dsetup);
        auto c = MustClientFromCmd(cmd);
        absl::Status s = MakeMirror(cmd, c.get(), dc.get(),
                                    cmd.Lookup("prefix")->s(),
                                    cmd.Lookup("dest-prefix")->s(),
                                    cmd.Lookup("no-dest-prefix")->b());
        ExitWithError(kExitError, s.ok() ? "<nil>" : client::ErrorText(s));
      });
  c->String("prefix", 0, "", "Key-value prefix to mirror");
  c->String("dest-prefix", 0, "",
            "destination prefix to mirror a prefix to a different prefix in "
            "the destination cluster");
  c->Bool("no-dest-prefix", 0, false,
          "mirror key-values to the root of the destination cluster");
  c->String("dest-cert", 0, "",
            "Identify secure client using this TLS certificate file for the "
            "destination cluster");
  c->String("dest-key", 0, "", "Identify secure client using this TLS key file");
  c->String("dest-cacert", 0, "",
            "Verify certificates of TLS enabled secure servers using this CA "
            "bundle");
  c->Bool("dest-insecure-transport", 0, true,
          "Disable transport security for client connections");
  return c;
}

std::unique_ptr<Command> NewLockCommand() {
  auto c = std::make_unique<Command>(
      "lock <lockname> [exec-command arg1 arg2 ...]", "Acquires a named lock",
      "", [](Command& cmd, const std::vector<std::string>& args) {
        if (args.empty()) {
          ExitWithError(kExitBadArgs,
                        "lock takes a lock name argument and an optional "
                        "command to execute");
        }
        SignalCanceller sig;
        auto cli = MustClientFromCmd(cmd);
        absl::Status s = LockUntilSignal(
            cli.get(), &sig, args[0],
            std::vector<std::string>(args.begin() + 1, args.end()),
            static_cast<int>(cmd.Lookup("ttl")->i()));
        if (!s.ok()) ExitWithStatus(kExitError, s);
      });
  c->Int("ttl", 0, 10, "timeout for session");
  return c;
}

std::unique_ptr<Command> NewElectCommand() {
  auto c = std::make_unique<Command>(
      "elect <election-name> [proposal]",
      "Observes and participates in leader election", "",
      [](Command& cmd, const std::vector<std::string>& args) {
        if (args.size() != 1 && args.size() != 2) {
          ExitWithError(kExitBadArgs,
                        "elect takes one election name argument and an "
                        "optional proposal argument");
        }
        SignalCanceller sig;
        auto cli = MustClientFromCmd(cmd);
        bool listen = cmd.Lookup("listen")->b();
        absl::Status s;
        if (args.size() == 1) {
          if (!listen) {
            ExitWithError(kExitBadArgs, "no proposal argument but -l not set");
          }
          s = Observe(cli.get(), &sig, args[0]);
        } else {
          if (listen) ExitWithError(kExitBadArgs, "proposal given but -l is set");
          s = Campaign(cli.get(), &sig, args[0], args[1]);
        }
        if (!s.ok()) ExitWithStatus(kExitError, s);
      });
  c->Bool("listen", 'l', false, "observation mode");
  return c;
}

std::unique_ptr<Command> NewCheckCommand() {
  auto cc = std::make_unique<Command>(
      "check <subcommand>", "commands for checking properties of the etcd cluster");
  Command* perf = cc->Add("perf [options]", "Check the performance of the etcd cluster",
                          "", [](Command& cmd, const std::vector<std::string>&) {
                            CheckPerf(cmd);
                          });
  perf->String("load", 0, "s",
               "The performance check's workload model. Accepted workloads: "
               "s(small), m(medium), l(large), xl(xLarge)");
  perf->String("prefix", 0, "/etcdctl-check-perf/",
               "The prefix for writing the performance check's keys.");
  perf->Bool("auto-compact", 0, false,
             "Compact storage with last revision after test is finished.");
  perf->Bool("auto-defrag", 0, false, "Defragment storage after test is finished.");
  Command* ds = cc->Add(
      "datascale [options]",
      "Check the memory usage of holding data for different workloads on a "
      "given server endpoint.",
      "If no endpoint is provided, localhost will be used. If multiple "
      "endpoints are provided, first endpoint will be used.",
      [](Command& cmd, const std::vector<std::string>&) { CheckDatascale(cmd); });
  ds->String("load", 0, "s",
             "The datascale check's workload model. Accepted workloads: "
             "s(small), m(medium), l(large), xl(xLarge)");
  ds->String("prefix", 0, "/etcdctl-check-datascale/",
             "The prefix for writing the datascale check's keys.");
  ds->Bool("auto-compact", 0, false,
           "Compact storage with last revision after test is finished.");
  ds->Bool("auto-defrag", 0, false, "Defragment storage after test is finished.");
  return cc;
}

}  // namespace detcd::ctl
