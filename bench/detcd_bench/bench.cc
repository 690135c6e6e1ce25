#include "bench.h"

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <latch>
#include <memory>
#include <optional>
#include <queue>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/notification.h"
#include "detcd/client.h"
#include "h2_unary.h"
#include "etcdserverpb/rpc.grpc.pb.h"
#include "grpcpp/alarm.h"
#include "grpcpp/grpcpp.h"

namespace detcd::bench {
namespace {

namespace pb = etcdserverpb;
using SteadyClock = std::chrono::steady_clock;

int64_t NowNanos() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             SteadyClock::now().time_since_epoch())
      .count();
}

double ProcessCpuSeconds() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  auto secs = [](const timeval& tv) {
    return static_cast<double>(tv.tv_sec) + tv.tv_usec / 1e6;
  };
  return secs(ru.ru_utime) + secs(ru.ru_stime);
}

// Key i of a key space: its decimal digits, zero-padded to `size` bytes,
// so keys sort as their indices and scripts can name them.
std::string KeyOf(int64_t i, int size) {
  std::string s = std::to_string(i);
  if (static_cast<int>(s.size()) < size) s.insert(0, size - s.size(), '0');
  return s;
}

std::string RandomValue(int size, std::mt19937_64& rng) {
  static constexpr char kChars[] =
      "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
  std::string v(size, 'v');
  for (char& c : v) c = kChars[rng() % (sizeof(kChars) - 1)];
  return v;
}

// Rewrites v with new random characters (ten per generator call): every
// put carries its own value, so a server that compresses its data (detcd's
// snapshots) is not flattered by one value repeated a million times.
void Refresh(std::string* v, std::mt19937_64& rng) {
  static constexpr char kChars[] =
      "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_";
  size_t i = 0;
  while (i < v->size()) {
    uint64_t bits = rng();
    for (int j = 0; j < 10 && i < v->size(); ++j, ++i, bits >>= 6) {
      (*v)[i] = kChars[bits & 63];
    }
  }
}

// etcd's GetPrefixRangeEnd: the first key after every key with the prefix.
std::string PrefixEnd(std::string key) {
  while (!key.empty()) {
    if (static_cast<unsigned char>(key.back()) < 0xff) {
      key.back() = static_cast<char>(key.back() + 1);
      return key;
    }
    key.pop_back();
  }
  return std::string(1, '\0');  // every key
}

// One client's state; each runs on its own thread.
struct Worker {
  int id = 0;
  client::Client* client = nullptr;
  std::mt19937_64 rng;
  std::vector<Section> sections;
  std::string value;
  pb::RangeRequest range;
  int64_t lease_id = 0;
  std::unique_ptr<client::KeepAliveStream> keepalive;
  std::unique_ptr<client::WatchStream> watch;
  std::string resume_key;
  int64_t resume_rev = 0;
  int64_t conflicts = 0;
};

struct LoopSpec {
  int64_t total = 0;
  absl::Duration duration = absl::ZeroDuration();
  double rate = 0;
  int clients = 1;
  std::vector<std::string> sections = {"requests"};
  bool progress = false;
  // Runs on the worker's thread before the clock starts.
  std::function<absl::Status(Worker&)> setup;
  // One operation (k: its index over all workers); sets *section when the
  // workload has more than one.
  std::function<absl::Status(Worker&, int64_t k, int* section)> op;
  // Runs on the worker's thread after the clock stopped.
  std::function<void(Worker&)> teardown;
};

struct LoopResult {
  std::vector<Section> sections;
  double seconds = 0;
  int64_t conflicts = 0;
};

// One unary KV call of the asynchronous loop, filled by AsyncSpec::build.
struct AsyncCall {
  enum Kind { kPut, kRange, kTxn } kind = kPut;
  int section = 0;
  pb::PutRequest put;
  pb::RangeRequest range;
  pb::TxnRequest txn;
};

// The put/range/txn workloads: --clients logical clients, each with one
// call in flight, driven through completion queues by a few threads. A
// thread per client blocking in gRPC's synchronous API cost 40-250 us of
// the bench's own CPU per request (wake-ups and thread hand-offs); this
// keeps the bench well below the server's cost on a 2-core machine.
struct AsyncSpec {
  int64_t total = 0;
  absl::Duration duration = absl::ZeroDuration();
  double rate = 0;
  int clients = 1;
  std::vector<std::string> sections = {"requests"};
  bool progress = false;
  // Fills the call for operation k (just before it is sent).
  std::function<void(Worker&, int64_t k, AsyncCall*)> build;
  // After a call succeeded (on the loop's thread).
  std::function<void(Worker&, const AsyncCall&)> on_success;
};

// "\r[=====>    ]  45%  9000/20000  12345 ops/s" on stderr, on a terminal.
class Progress {
 public:
  Progress(bool on, int64_t total, absl::Duration duration,
           const std::atomic<int64_t>* done)
      : on_(on), total_(total), duration_(duration), done_(done) {
    if (on_) thread_ = std::thread([this] { Loop(); });
  }
  ~Progress() { Stop(); }
  void Stop() {
    if (!thread_.joinable()) return;
    stop_.Notify();
    thread_.join();
    Draw();
    std::fputc('\n', stderr);
  }

 private:
  void Loop() {
    while (!stop_.WaitForNotificationWithTimeout(absl::Milliseconds(250))) {
      Draw();
    }
  }
  void Draw() {
    const int64_t done = done_->load(std::memory_order_relaxed);
    const double elapsed = absl::ToDoubleSeconds(absl::Now() - start_);
    double frac = duration_ > absl::ZeroDuration()
                      ? elapsed / absl::ToDoubleSeconds(duration_)
                      : static_cast<double>(done) / total_;
    frac = std::min(1.0, std::max(0.0, frac));
    constexpr int kWidth = 40;
    const int filled = static_cast<int>(frac * kWidth);
    std::string bar(filled, '=');
    if (filled < kWidth) bar += '>';
    bar.resize(kWidth, ' ');
    std::fprintf(stderr, "\r[%s] %3d%%  %lld ops  %.0f ops/s ", bar.c_str(),
                 static_cast<int>(frac * 100), static_cast<long long>(done),
                 elapsed > 0 ? done / elapsed : 0.0);
    std::fflush(stderr);
  }

  bool on_;
  int64_t total_;
  absl::Duration duration_;
  const std::atomic<int64_t>* done_;
  absl::Time start_ = absl::Now();
  absl::Notification stop_;
  std::thread thread_;
};

class Bench {
 public:
  explicit Bench(const Options& o) : o_(o) {}

  absl::StatusOr<Result> Run() {
    if (absl::Status s = Connect(); !s.ok()) return s;
    Result r;
    r.workload = WorkloadName(o_.workload);
    const double cpu0 = ProcessCpuSeconds();
    absl::Status s;
    switch (o_.workload) {
      case Workload::kPut:
        s = RunPut(&r);
        break;
      case Workload::kRange:
        s = RunRange(&r);
        break;
      case Workload::kTxnPut:
        s = RunTxnPut(&r);
        break;
      case Workload::kTxnMixed:
        s = RunTxnMixed(&r);
        break;
      case Workload::kWatch:
        s = RunWatch(&r);
        break;
      case Workload::kWatchGet:
        s = RunWatchGet(&r);
        break;
      case Workload::kLeaseKeepalive:
        s = RunLeaseKeepalive(&r);
        break;
      case Workload::kStm:
        s = RunStm(&r);
        break;
      case Workload::kLock:
        s = RunLock(&r);
        break;
      case Workload::kWatchResume:
        s = RunWatchResume(&r);
        break;
    }
    if (!s.ok()) return s;
    // Workloads with a set-up phase subtract it through measured_cpu_.
    r.bench_cpu_seconds =
        measured_cpu_ >= 0 ? measured_cpu_ : ProcessCpuSeconds() - cpu0;
    return r;
  }

 private:
  // --command-timeout 0: no deadline.
  client::CallOptions Call() const {
    if (o_.command_timeout == absl::ZeroDuration()) return {};
    return client::CallOptions::Timeout(o_.command_timeout);
  }

  client::Config ConfigFor(std::vector<std::string> endpoints) const {
    client::Config c;
    c.endpoints = std::move(endpoints);
    c.dial_timeout = o_.dial_timeout;
    if (!o_.cacert.empty() || !o_.cert.empty() || !o_.key_file.empty() ||
        o_.insecure_skip_tls_verify) {
      client::TlsConfig t;
      t.ca_file = o_.cacert;
      t.cert_file = o_.cert;
      t.key_file = o_.key_file;
      t.insecure_skip_verify = o_.insecure_skip_tls_verify;
      c.tls = t;
    }
    c.username = o_.user;
    c.password = o_.password;
    return c;
  }

  // The endpoint of the member that is leader, asked of every endpoint.
  absl::StatusOr<std::string> FindLeader() {
    auto c = client::Client::New(ConfigFor(o_.endpoints));
    if (!c.ok()) return c.status();
    absl::Status last = absl::UnavailableError("no endpoint answered");
    for (const std::string& ep : o_.endpoints) {
      auto st = (*c)->Status(ep, client::CallOptions::Timeout(o_.dial_timeout));
      if (!st.ok()) {
        last = st.status();
        continue;
      }
      if (st->leader() != 0 && st->leader() == st->header().member_id()) {
        return ep;
      }
    }
    return absl::UnavailableError(absl::StrCat(
        "--target-leader: no endpoint is the leader (", last.message(), ")"));
  }

  absl::Status Connect() {
    std::vector<std::string> eps = o_.endpoints;
    if (o_.target_leader) {
      auto leader = FindLeader();
      if (!leader.ok()) return leader.status();
      eps = {*leader};
    }
    for (int i = 0; i < o_.conns; ++i) {
      auto c = client::Client::New(ConfigFor(eps));
      if (!c.ok()) return c.status();
      // Every connection answers once before the clock starts, so the
      // first requests do not measure dialing.
      pb::RangeRequest probe;
      probe.set_key("detcd-bench-probe");
      probe.set_serializable(true);
      for (size_t e = 0; e < eps.size(); ++e) {
        auto r =
            (*c)->Range(probe, client::CallOptions::Timeout(o_.dial_timeout));
        if (!r.ok()) {
          return absl::UnavailableError(
              absl::StrCat("cannot reach ", absl::StrJoin(eps, ","), ": ",
                           r.status().message()));
        }
      }
      clients_.push_back(std::move(*c));
    }
    return absl::OkStatus();
  }

  bool ShowProgress() const { return !o_.no_progress && isatty(STDERR_FILENO); }

  absl::StatusOr<LoopResult> Loop(const LoopSpec& spec) {
    const int n = spec.clients;
    std::vector<std::unique_ptr<Worker>> workers;
    for (int i = 0; i < n; ++i) {
      auto w = std::make_unique<Worker>();
      w->id = i;
      w->client = clients_[i % clients_.size()].get();
      w->rng.seed(0x9E3779B97F4A7C15ULL * (i + 1));
      for (const auto& name : spec.sections) w->sections.emplace_back(name);
      w->value = RandomValue(o_.val_size, w->rng);
      workers.push_back(std::move(w));
    }
    std::atomic<int64_t> next{0}, done{0};
    std::vector<absl::Status> setup(n);
    std::latch ready(n);
    absl::Notification start;
    std::atomic<bool> abort{false};
    SteadyClock::time_point t0;
    const bool timed = spec.duration > absl::ZeroDuration();
    const auto run_for = absl::ToChronoNanoseconds(spec.duration);

    auto body = [&](Worker& w) {
      if (spec.setup) setup[w.id] = spec.setup(w);
      ready.count_down();
      start.WaitForNotification();
      if (abort.load()) return;
      const auto end = t0 + run_for;
      for (;;) {
        const int64_t k = next.fetch_add(1, std::memory_order_relaxed);
        if (!timed && k >= spec.total) break;
        if (spec.rate > 0) {
          const auto slot = t0 + std::chrono::nanoseconds(static_cast<int64_t>(
                                     static_cast<double>(k) * 1e9 / spec.rate));
          if (timed && slot >= end) break;
          std::this_thread::sleep_until(slot);
        }
        const auto a = SteadyClock::now();
        if (timed && a >= end) break;
        int section = 0;
        absl::Status s = spec.op(w, k, &section);
        const auto b = SteadyClock::now();
        Section& sec = w.sections[section];
        if (s.ok()) {
          sec.latency.Record(
              std::chrono::duration_cast<std::chrono::nanoseconds>(b - a)
                  .count());
        } else {
          ++sec.errors;
          ++sec.error_texts[std::string(s.message())];
        }
        done.fetch_add(1, std::memory_order_relaxed);
      }
    };

    std::vector<std::thread> threads;
    threads.reserve(n);
    for (auto& w : workers) threads.emplace_back(body, std::ref(*w));
    ready.wait();
    absl::Status setup_status;
    for (const auto& s : setup) {
      if (!s.ok()) {
        setup_status = s;
        abort.store(true);
        break;
      }
    }
    t0 = SteadyClock::now();
    start.Notify();
    std::optional<Progress> progress;
    if (!abort.load()) {
      progress.emplace(spec.progress && ShowProgress(), spec.total,
                       spec.duration, &done);
    }
    for (auto& t : threads) t.join();
    const auto t1 = SteadyClock::now();
    if (progress) progress->Stop();

    LoopResult out;
    out.seconds = std::chrono::duration<double>(t1 - t0).count();
    for (const auto& name : spec.sections) out.sections.emplace_back(name);
    for (auto& w : workers) {
      if (spec.teardown) spec.teardown(*w);
      for (size_t i = 0; i < w->sections.size(); ++i) {
        Section& dst = out.sections[i];
        dst.latency.Merge(w->sections[i].latency);
        dst.errors += w->sections[i].errors;
        for (const auto& [text, c] : w->sections[i].error_texts) {
          dst.error_texts[text] += c;
        }
      }
      out.conflicts += w->conflicts;
    }
    for (auto& s : out.sections) s.seconds = out.seconds;
    if (!setup_status.ok()) return setup_status;
    return out;
  }

  // State of one logical client of AsyncLoop.
  struct Slot {
    Worker w;
    AsyncCall call;
    pb::KV::Stub* stub = nullptr;
    client::Client* client = nullptr;
    std::unique_ptr<grpc::ClientContext> ctx;
    std::unique_ptr<grpc::ClientAsyncResponseReader<pb::PutResponse>>
        put_reader;
    std::unique_ptr<grpc::ClientAsyncResponseReader<pb::RangeResponse>>
        range_reader;
    std::unique_ptr<grpc::ClientAsyncResponseReader<pb::TxnResponse>>
        txn_reader;
    pb::PutResponse put_resp;
    pb::RangeResponse range_resp;
    pb::TxnResponse txn_resp;
    grpc::Status status;
    grpc::Alarm alarm;
    bool waiting_alarm = false;
    int64_t k = 0;
    SteadyClock::time_point sent;
  };

  // Put/range/txn calls go over detcd's own HTTP/2 client (h2_unary.h)
  // unless TLS or auth is asked for, or --grpc-client.
  bool UseH2() const {
    return !o_.grpc_client && o_.cacert.empty() && o_.cert.empty() &&
           o_.key_file.empty() && !o_.insecure_skip_tls_verify &&
           o_.user.empty();
  }

  // Merges the slots' sections into the loop's result.
  static LoopResult Collect(const AsyncSpec& spec,
                            const std::vector<std::unique_ptr<Slot>>& slots,
                            double seconds) {
    LoopResult out;
    out.seconds = seconds;
    for (const auto& name : spec.sections) out.sections.emplace_back(name);
    for (auto& s : slots) {
      for (size_t i = 0; i < s->w.sections.size(); ++i) {
        Section& dst = out.sections[i];
        dst.latency.Merge(s->w.sections[i].latency);
        dst.errors += s->w.sections[i].errors;
        for (const auto& [text, c] : s->w.sections[i].error_texts) {
          dst.error_texts[text] += c;
        }
      }
    }
    for (auto& s : out.sections) s.seconds = out.seconds;
    return out;
  }

  // Runs body(t) for t < threads on threads of their own, with the
  // progress bar, and merges the slots' figures.
  template <typename Body>
  LoopResult RunThreads(const AsyncSpec& spec, int threads, Body& body,
                               const std::atomic<int64_t>& done,
                               const std::vector<std::unique_ptr<Slot>>& slots,
                               SteadyClock::time_point t0) {
    std::optional<Progress> progress;
    progress.emplace(spec.progress && ShowProgress(), spec.total, spec.duration,
                     &done);
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t) pool.emplace_back(body, t);
    for (auto& t : pool) t.join();
    const auto t1 = SteadyClock::now();
    progress->Stop();
    return Collect(spec, slots,
                   std::chrono::duration<double>(t1 - t0).count());
  }

  // A call of s ended (s->status) at now: its latency or its error.
  static void Record(const AsyncSpec& spec, Slot* s,
                     SteadyClock::time_point now) {
    Section& sec = s->w.sections[s->call.section];
    if (s->status.ok()) {
      sec.latency.Record(
          std::chrono::duration_cast<std::chrono::nanoseconds>(now - s->sent)
              .count());
      if (spec.on_success) spec.on_success(s->w, s->call);
    } else {
      ++sec.errors;
      ++sec.error_texts[s->status.error_message()];
    }
  }

  // Client i of an asynchronous loop, without its transport.
  std::unique_ptr<Slot> NewSlot(const AsyncSpec& spec, int i) const {
    auto s = std::make_unique<Slot>();
    s->w.id = i;
    s->client = clients_[i % clients_.size()].get();
    s->w.client = s->client;
    s->w.rng.seed(0x9E3779B97F4A7C15ULL * (i + 1));
    for (const auto& name : spec.sections) s->w.sections.emplace_back(name);
    s->w.value = RandomValue(o_.val_size, s->w.rng);
    return s;
  }

  // Takes the next operation for s (s->k): none when the run is over,
  // else when it is due (a time not after now: at once).
  static std::optional<SteadyClock::time_point> NextDue(
      const AsyncSpec& spec, Slot* s, std::atomic<int64_t>& next,
      SteadyClock::time_point t0) {
    const bool timed = spec.duration > absl::ZeroDuration();
    const auto end = t0 + absl::ToChronoNanoseconds(spec.duration);
    s->k = next.fetch_add(1, std::memory_order_relaxed);
    if (!timed && s->k >= spec.total) return std::nullopt;
    const auto now = SteadyClock::now();
    if (spec.rate > 0) {
      const auto slot =
          t0 + std::chrono::nanoseconds(static_cast<int64_t>(
                   static_cast<double>(s->k) * 1e9 / spec.rate));
      if (timed && slot >= end) return std::nullopt;
      if (slot > now) return slot;
    }
    if (timed && now >= end) return std::nullopt;
    return now;
  }

  // AsyncLoop over H2UnaryConn: --conns connections to the endpoints in
  // turn, each owned by one of the threads (a thread gets every
  // threads-th one); the thread's clients share its connections. A call
  // that ends queues its client for the next operation, which the loop
  // starts after the poll (so a broken connection's instant failures do
  // not recurse).
  absl::StatusOr<LoopResult> AsyncLoopH2(const AsyncSpec& spec) {
    const std::vector<std::string> eps = clients_[0]->endpoints();
    const int conns = std::max<int>(1, static_cast<int>(clients_.size()));
    const int threads = std::max(1, std::min({o_.threads, spec.clients,
                                              conns}));
    std::vector<std::unique_ptr<Slot>> slots;
    for (int i = 0; i < spec.clients; ++i) slots.push_back(NewSlot(spec, i));
    std::vector<std::vector<std::unique_ptr<client::H2UnaryConn>>> owned(
        threads);
    for (int j = 0; j < conns; ++j) {
      auto c = client::H2UnaryConn::Dial(eps[j % eps.size()],
                                         o_.dial_timeout);
      if (!c.ok()) return c.status();
      owned[j % threads].push_back(std::move(*c));
    }
    std::atomic<int64_t> next{0}, done{0};
    const auto t0 = SteadyClock::now();
    auto body = [&](int t) {
      std::vector<client::H2UnaryConn*> conns_t;
      for (auto& c : owned[t]) conns_t.push_back(c.get());
      using Due = std::pair<SteadyClock::time_point, Slot*>;
      std::priority_queue<Due, std::vector<Due>, std::greater<Due>> waiting;
      std::vector<Slot*> ended;
      int active = 0;
      auto start = [&](Slot* s, client::H2UnaryConn* conn) {
        spec.build(s->w, s->k, &s->call);
        std::string req;
        const char* path = "";
        switch (s->call.kind) {
          case AsyncCall::kPut:
            path = "/etcdserverpb.KV/Put";
            s->call.put.SerializeToString(&req);
            break;
          case AsyncCall::kRange:
            path = "/etcdserverpb.KV/Range";
            s->call.range.SerializeToString(&req);
            break;
          case AsyncCall::kTxn:
            path = "/etcdserverpb.KV/Txn";
            s->call.txn.SerializeToString(&req);
            break;
        }
        s->sent = SteadyClock::now();
        conn->Start(path, std::move(req), o_.command_timeout,
                    [&, s](absl::Status st, std::string_view) {
                      s->status = st.ok() ? grpc::Status::OK
                                          : grpc::Status(grpc::UNKNOWN,
                                                         std::string(
                                                             st.message()));
                      ended.push_back(s);
                    });
      };
      // Takes the next operation for s: false when there is none left.
      auto issue = [&](Slot* s, client::H2UnaryConn* conn) {
        const auto due = NextDue(spec, s, next, t0);
        if (!due) return false;
        if (*due > SteadyClock::now()) {
          waiting.emplace(*due, s);
        } else {
          start(s, conn);
        }
        return true;
      };
      std::vector<Slot*> mine;
      for (size_t i = t; i < slots.size(); i += threads) {
        mine.push_back(slots[i].get());
      }
      auto conn_of = [&](Slot* s) {
        return conns_t[(s->w.id / threads) % conns_t.size()];
      };
      for (Slot* s : mine) {
        if (issue(s, conn_of(s))) ++active;
      }
      while (active > 0) {
        absl::Duration wait = absl::Milliseconds(100);
        if (!waiting.empty()) {
          wait = absl::FromChrono(std::max(
              SteadyClock::duration::zero(),
              waiting.top().first - SteadyClock::now()));
        }
        if (ended.empty()) client::H2UnaryConn::PollAll(conns_t, wait);
        const auto now = SteadyClock::now();
        while (!waiting.empty() && waiting.top().first <= now) {
          Slot* s = waiting.top().second;
          waiting.pop();
          start(s, conn_of(s));
        }
        std::vector<Slot*> batch;
        batch.swap(ended);
        for (Slot* s : batch) {
          Record(spec, s, now);
          done.fetch_add(1, std::memory_order_relaxed);
          if (!issue(s, conn_of(s))) --active;
        }
      }
    };
    return RunThreads(spec, threads, body, done, slots, t0);
  }

  absl::StatusOr<LoopResult> AsyncLoop(const AsyncSpec& spec) {
    if (UseH2()) return AsyncLoopH2(spec);
    const int threads = std::min(o_.threads, spec.clients);
    // A KV stub per channel: client c, endpoint e.
    std::vector<std::vector<std::unique_ptr<pb::KV::Stub>>> stubs;
    for (auto& c : clients_) {
      stubs.emplace_back();
      for (size_t e = 0; e < c->endpoints().size(); ++e) {
        stubs.back().push_back(pb::KV::NewStub(c->channel(e)));
      }
    }
    std::vector<std::unique_ptr<Slot>> slots;
    for (int i = 0; i < spec.clients; ++i) {
      auto s = NewSlot(spec, i);
      auto& eps = stubs[i % clients_.size()];
      s->stub = eps[(i / clients_.size()) % eps.size()].get();
      slots.push_back(std::move(s));
    }
    std::atomic<int64_t> next{0}, done{0};
    const auto t0 = SteadyClock::now();

    auto start_call = [&](Slot* s, grpc::CompletionQueue* cq) {
      s->waiting_alarm = false;
      spec.build(s->w, s->k, &s->call);
      s->ctx = s->client->NewCallContext(Call());
      s->sent = SteadyClock::now();
      switch (s->call.kind) {
        case AsyncCall::kPut:
          s->put_reader = s->stub->AsyncPut(s->ctx.get(), s->call.put, cq);
          s->put_reader->Finish(&s->put_resp, &s->status, s);
          break;
        case AsyncCall::kRange:
          s->range_reader =
              s->stub->AsyncRange(s->ctx.get(), s->call.range, cq);
          s->range_reader->Finish(&s->range_resp, &s->status, s);
          break;
        case AsyncCall::kTxn:
          s->txn_reader = s->stub->AsyncTxn(s->ctx.get(), s->call.txn, cq);
          s->txn_reader->Finish(&s->txn_resp, &s->status, s);
          break;
      }
    };
    // Takes the next operation for s: false when there is none left.
    auto issue = [&](Slot* s, grpc::CompletionQueue* cq) {
      const auto due = NextDue(spec, s, next, t0);
      if (!due) return false;
      const auto now = SteadyClock::now();
      if (*due > now) {
        s->waiting_alarm = true;
        // gRPC's alarms take the system clock.
        s->alarm.Set(cq, std::chrono::system_clock::now() + (*due - now), s);
      } else {
        start_call(s, cq);
      }
      return true;
    };
    auto body = [&](int t) {
      grpc::CompletionQueue cq;
      int active = 0;
      for (size_t i = t; i < slots.size(); i += threads) {
        if (issue(slots[i].get(), &cq)) ++active;
      }
      void* tag;
      bool ok;
      while (active > 0 && cq.Next(&tag, &ok)) {
        Slot* s = static_cast<Slot*>(tag);
        if (s->waiting_alarm) {
          start_call(s, &cq);
          continue;
        }
        Record(spec, s, SteadyClock::now());
        done.fetch_add(1, std::memory_order_relaxed);
        if (!issue(s, &cq)) --active;
      }
      cq.Shutdown();
      while (cq.Next(&tag, &ok)) {
      }
    };
    return RunThreads(spec, threads, body, done, slots, t0);
  }

  AsyncSpec MainAsyncSpec() const {
    AsyncSpec spec;
    spec.total = o_.total;
    spec.duration = o_.duration;
    spec.rate = o_.rate;
    spec.clients = o_.clients;
    spec.progress = true;
    return spec;
  }

  // A LoopSpec with the global --total/--duration/--rate/--clients.
  LoopSpec MainSpec() const {
    LoopSpec spec;
    spec.total = o_.total;
    spec.duration = o_.duration;
    spec.rate = o_.rate;
    spec.clients = o_.clients;
    spec.progress = true;
    return spec;
  }

  int64_t PickKey(Worker& w, int64_t k) const {
    if (o_.sequential_keys) return k % o_.key_space_size;
    return static_cast<int64_t>(w.rng() % o_.key_space_size);
  }

  void Append(LoopResult lr, Result* r) {
    for (auto& s : lr.sections) r->sections.push_back(std::move(s));
  }

  absl::Status RunPut(Result* r) {
    AsyncSpec spec = MainAsyncSpec();
    spec.sections = {"put"};
    spec.build = [this](Worker& w, int64_t k, AsyncCall* c) {
      c->kind = AsyncCall::kPut;
      c->put.set_key(KeyOf(PickKey(w, k), o_.key_size));
      if (c->put.value().size() != w.value.size()) c->put.set_value(w.value);
      Refresh(c->put.mutable_value(), w.rng);
    };
    auto lr = AsyncLoop(spec);
    if (!lr.ok()) return lr.status();
    Append(std::move(*lr), r);
    return absl::OkStatus();
  }

  pb::RangeRequest RangeOf() const {
    pb::RangeRequest req;
    req.set_key(o_.key);
    if (o_.prefix) {
      req.set_range_end(PrefixEnd(o_.key));
    } else if (!o_.range_end.empty()) {
      req.set_range_end(o_.range_end);
    }
    req.set_serializable(o_.serializable);
    return req;
  }

  absl::Status RunRange(Result* r) {
    AsyncSpec spec = MainAsyncSpec();
    spec.sections = {"range"};
    const pb::RangeRequest req = RangeOf();
    spec.build = [&req](Worker&, int64_t, AsyncCall* c) {
      c->kind = AsyncCall::kRange;
      if (c->range.key().empty()) c->range = req;
    };
    auto lr = AsyncLoop(spec);
    if (!lr.ok()) return lr.status();
    Append(std::move(*lr), r);
    return absl::OkStatus();
  }

  absl::Status RunTxnPut(Result* r) {
    AsyncSpec spec = MainAsyncSpec();
    spec.sections = {"txn-put"};
    spec.build = [this](Worker& w, int64_t k, AsyncCall* c) {
      c->kind = AsyncCall::kTxn;
      pb::TxnRequest& txn = c->txn;
      txn.Clear();
      // The txn's ops take consecutive keys (etcd refuses a txn that
      // puts one key twice), from a random or the next sequential start.
      const int64_t first = o_.sequential_keys ? k * o_.txn_ops : PickKey(w, k);
      for (int i = 0; i < o_.txn_ops; ++i) {
        pb::PutRequest* put = txn.add_success()->mutable_request_put();
        put->set_key(KeyOf((first + i) % o_.key_space_size, o_.key_size));
        Refresh(&w.value, w.rng);
        put->set_value(w.value);
      }
    };
    auto lr = AsyncLoop(spec);
    if (!lr.ok()) return lr.status();
    Append(std::move(*lr), r);
    return absl::OkStatus();
  }

  absl::Status RunTxnMixed(Result* r) {
    AsyncSpec spec = MainAsyncSpec();
    spec.sections = {"read", "write"};
    const pb::RangeRequest read = RangeOf();
    const double read_share = o_.rw_ratio / (o_.rw_ratio + 1);
    spec.build = [this, &read, read_share](Worker& w, int64_t k, AsyncCall* c) {
      c->kind = AsyncCall::kTxn;
      pb::TxnRequest& txn = c->txn;
      txn.Clear();
      const bool is_read =
          std::uniform_real_distribution<double>(0, 1)(w.rng) < read_share;
      if (is_read) {
        *txn.add_success()->mutable_request_range() = read;
        c->section = 0;
      } else {
        pb::PutRequest* put = txn.add_success()->mutable_request_put();
        put->set_key(KeyOf(PickKey(w, k), o_.key_size));
        Refresh(&w.value, w.rng);
        put->set_value(w.value);
        c->section = 1;
      }
    };
    auto lr = AsyncLoop(spec);
    if (!lr.ok()) return lr.status();
    Append(std::move(*lr), r);
    return absl::OkStatus();
  }

  // Watch streams and their readers, shared by watch and watch-get.
  struct Watchers {
    struct Stream {
      std::unique_ptr<client::WatchStream> stream;
      Section delivery{"watch"};
      std::thread reader;
    };
    std::vector<std::unique_ptr<Stream>> streams;
    std::atomic<int64_t> created{0};
    std::atomic<int64_t> events{0};
    std::atomic<int64_t> last_event_nanos{0};
  };

  // Opens o_.streams streams carrying o_.watchers watchers; watcher j
  // watches key_of(j) from start_revision (0: now). With timestamps set,
  // each event's value starts with the put's send time (8 bytes) and the
  // delivery latency is recorded.
  absl::Status OpenWatchers(Watchers* ws,
                            const std::function<std::string(int)>& key_of,
                            int64_t start_revision, bool timestamps) {
    for (int i = 0; i < o_.streams; ++i) {
      auto st = clients_[i % clients_.size()]->OpenWatch(
          client::CallOptions::Timeout(absl::Hours(24 * 365)));
      if (!st.ok()) return st.status();
      auto s = std::make_unique<Watchers::Stream>();
      s->stream = std::move(*st);
      Watchers::Stream* raw = s.get();
      s->reader = std::thread([ws, raw, timestamps] {
        pb::WatchResponse resp;
        while (raw->stream->Read(&resp)) {
          if (resp.created()) ws->created.fetch_add(1);
          const int64_t now = NowNanos();
          for (const auto& ev : resp.events()) {
            if (timestamps && ev.kv().value().size() >= sizeof(int64_t)) {
              int64_t sent;
              std::memcpy(&sent, ev.kv().value().data(), sizeof(sent));
              raw->delivery.latency.Record(now - sent);
            }
          }
          if (resp.events_size() > 0) {
            ws->last_event_nanos.store(now);
            ws->events.fetch_add(resp.events_size());
          }
        }
      });
      ws->streams.push_back(std::move(s));
    }
    for (int j = 0; j < o_.watchers; ++j) {
      pb::WatchRequest req;
      pb::WatchCreateRequest* c = req.mutable_create_request();
      c->set_key(key_of(j));
      c->set_start_revision(start_revision);
      if (!ws->streams[j % ws->streams.size()]->stream->Send(req)) {
        return absl::UnavailableError("watch stream closed while creating");
      }
    }
    const absl::Time deadline =
        absl::Now() + std::max(absl::Seconds(30), o_.command_timeout);
    while (ws->created.load() < o_.watchers) {
      if (absl::Now() > deadline) {
        return absl::DeadlineExceededError(absl::StrFormat(
            "only %d of %d watchers created", ws->created.load(), o_.watchers));
      }
      absl::SleepFor(absl::Milliseconds(1));
    }
    return absl::OkStatus();
  }

  // Waits until `want` events arrived or `limit` passed; true when all did.
  static bool AwaitEvents(Watchers* ws, int64_t want, absl::Duration limit) {
    const absl::Time deadline = absl::Now() + limit;
    while (ws->events.load() < want) {
      if (absl::Now() > deadline) return false;
      absl::SleepFor(absl::Milliseconds(1));
    }
    return true;
  }

  static void CloseWatchers(Watchers* ws) {
    for (auto& s : ws->streams) s->stream->Cancel();
    for (auto& s : ws->streams) s->reader.join();
  }

  absl::Status RunWatch(Result* r) {
    Watchers ws;
    std::vector<int64_t> per_key(o_.watched_keys, 0);
    for (int j = 0; j < o_.watchers; ++j) ++per_key[j % o_.watched_keys];
    if (absl::Status s = OpenWatchers(
            &ws,
            [this](int j) { return KeyOf(j % o_.watched_keys, o_.key_size); },
            0, true);
        !s.ok()) {
      CloseWatchers(&ws);
      return s;
    }
    const double cpu0 = ProcessCpuSeconds();
    const int64_t t0 = NowNanos();
    std::atomic<int64_t> expected{0};
    AsyncSpec spec;
    spec.total = o_.put_total;
    spec.rate = o_.put_rate;
    spec.clients = o_.clients;
    spec.progress = true;
    spec.sections = {"put"};
    spec.build = [this](Worker& w, int64_t k, AsyncCall* c) {
      c->kind = AsyncCall::kPut;
      c->put.set_key(KeyOf(k % o_.watched_keys, o_.key_size));
      std::string* value = c->put.mutable_value();
      if (value->empty()) {
        *value = w.value;
        if (value->size() < sizeof(int64_t)) value->resize(sizeof(int64_t));
      }
      Refresh(value, w.rng);
      // The send time, read back by the watchers.
      const int64_t now = NowNanos();
      std::memcpy(value->data(), &now, sizeof(now));
    };
    spec.on_success = [this, &per_key, &expected](Worker&, const AsyncCall& c) {
      int64_t key = 0;
      (void)absl::SimpleAtoi(c.put.key(), &key);
      expected.fetch_add(per_key[key % o_.watched_keys]);
    };
    auto lr = AsyncLoop(spec);
    if (!lr.ok()) {
      CloseWatchers(&ws);
      return lr.status();
    }
    const bool all = AwaitEvents(
        &ws, expected.load(), std::max(absl::Seconds(10), o_.command_timeout));
    measured_cpu_ = ProcessCpuSeconds() - cpu0;
    CloseWatchers(&ws);
    Section delivery{"watch"};
    for (auto& s : ws.streams) delivery.latency.Merge(s->delivery.latency);
    delivery.seconds =
        static_cast<double>(ws.last_event_nanos.load() - t0) / 1e9;
    r->sections.push_back(std::move(delivery));
    Append(std::move(*lr), r);
    r->counters["events expected"] = expected.load();
    r->counters["events delivered"] = ws.events.load();
    if (!all) {
      r->failure =
          absl::StrFormat("%d of %d watch events not delivered",
                          expected.load() - ws.events.load(), expected.load());
    }
    return absl::OkStatus();
  }

  absl::Status RunWatchGet(Result* r) {
    // Events for the watchers to catch up on (not measured).
    LoopSpec fill;
    fill.total = o_.watch_events;
    fill.clients = o_.clients;
    fill.op = [this](Worker& w, int64_t, int*) {
      pb::PutRequest req;
      req.set_key(o_.key);
      req.set_value(w.value);
      return w.client->Put(req, Call()).status();
    };
    if (o_.watch_events > 0) {
      auto lr = Loop(fill);
      if (!lr.ok()) return lr.status();
      if (lr->sections[0].errors > 0) {
        return absl::UnavailableError(
            absl::StrCat("watch-get: filling failed: ",
                         lr->sections[0].error_texts.begin()->first));
      }
    }
    const double cpu0 = ProcessCpuSeconds();
    const int64_t t_watch = NowNanos();
    Watchers ws;
    // From revision 1: every watcher starts unsynced.
    if (absl::Status s = OpenWatchers(
            &ws, [this](int) { return o_.key; }, 1, false);
        !s.ok()) {
      CloseWatchers(&ws);
      return s;
    }
    AsyncSpec spec = MainAsyncSpec();
    spec.sections = {"get"};
    const pb::RangeRequest req = RangeOf();
    spec.build = [&req](Worker&, int64_t, AsyncCall* c) {
      c->kind = AsyncCall::kRange;
      if (c->range.key().empty()) c->range = req;
    };
    auto lr = AsyncLoop(spec);
    const int64_t during = ws.events.load();
    // Then the rest of the catch-up (each watcher gets every fill event,
    // and any older ones of the key).
    const int64_t want = o_.watchers * o_.watch_events;
    const bool all = AwaitEvents(&ws, want, absl::Seconds(60));
    const int64_t caught_up = ws.last_event_nanos.load() - t_watch;
    measured_cpu_ = ProcessCpuSeconds() - cpu0;
    CloseWatchers(&ws);
    if (!lr.ok()) return lr.status();
    Append(std::move(*lr), r);
    r->counters["watchers"] = o_.watchers;
    r->counters["watch events delivered during the gets"] = during;
    r->counters["watch events delivered"] = ws.events.load();
    r->counters["watch catch-up ms"] = caught_up / 1000000;
    if (!all) {
      r->failure = absl::StrFormat("watchers got %d of %d events",
                                   ws.events.load(), want);
    }
    return absl::OkStatus();
  }

  absl::Status RunLeaseKeepalive(Result* r) {
    LoopSpec spec = MainSpec();
    spec.sections = {"keepalive"};
    spec.setup = [this](Worker& w) -> absl::Status {
      if (absl::Status s = GrantLease(w, 60); !s.ok()) return s;
      auto st = w.client->OpenKeepAlive(
          client::CallOptions::Timeout(absl::Hours(24 * 365)));
      if (!st.ok()) return st.status();
      w.keepalive = std::move(*st);
      return absl::OkStatus();
    };
    // A keep-alive stream per client, as clientv3's KeepAlive keeps one:
    // this measures the server's renewals, not stream set-up.
    spec.op = [](Worker& w, int64_t, int*) -> absl::Status {
      pb::LeaseKeepAliveRequest req;
      req.set_id(w.lease_id);
      pb::LeaseKeepAliveResponse resp;
      if (!w.keepalive->Send(req) || !w.keepalive->Read(&resp)) {
        return w.keepalive->Finish();
      }
      if (resp.ttl() <= 0) {
        return absl::NotFoundError("etcdserver: requested lease not found");
      }
      return absl::OkStatus();
    };
    spec.teardown = [this](Worker& w) {
      if (w.keepalive) w.keepalive->Cancel();
      RevokeLease(w);
    };
    auto lr = Loop(spec);
    if (!lr.ok()) return lr.status();
    Append(std::move(*lr), r);
    return absl::OkStatus();
  }

  absl::Status StmOnce(Worker& w) {
    constexpr int kMaxAttempts = 1000;
    std::vector<int64_t> keys;
    while (static_cast<int>(keys.size()) < o_.keys_per_txn) {
      const int64_t k = static_cast<int64_t>(w.rng() % o_.stm_keys);
      if (std::find(keys.begin(), keys.end(), k) == keys.end()) {
        keys.push_back(k);
      }
    }
    const bool snapshot = o_.isolation == "s" || o_.isolation == "ss";
    for (int attempt = 0; attempt < kMaxAttempts; ++attempt) {
      int64_t rev = 0;
      pb::TxnRequest txn;
      for (int64_t k : keys) {
        const std::string key = absl::StrCat("stm/", KeyOf(k, 8));
        pb::RangeRequest rr;
        rr.set_key(key);
        if (snapshot && rev != 0) rr.set_revision(rev);
        auto got = w.client->Range(rr, Call());
        if (!got.ok()) return got.status();
        if (rev == 0) rev = got->header().revision();
        int64_t mod = 0, n = 0;
        if (got->kvs_size() > 0) {
          mod = got->kvs(0).mod_revision();
          (void)absl::SimpleAtoi(got->kvs(0).value(), &n);
        }
        if (o_.isolation != "c") {
          pb::Compare* c = txn.add_compare();
          c->set_key(key);
          c->set_target(pb::Compare::MOD);
          c->set_result(pb::Compare::EQUAL);
          c->set_mod_revision(mod);
        }
        pb::PutRequest* put = txn.add_success()->mutable_request_put();
        put->set_key(key);
        put->set_value(absl::StrCat(n + 1));
      }
      auto res = w.client->Txn(txn, Call());
      if (!res.ok()) return res.status();
      if (res->succeeded()) return absl::OkStatus();
      ++w.conflicts;
    }
    return absl::AbortedError("stm: too many conflicts");
  }

  absl::Status RunStm(Result* r) {
    LoopSpec spec = MainSpec();
    spec.sections = {"stm"};
    spec.op = [this](Worker& w, int64_t, int*) { return StmOnce(w); };
    auto lr = Loop(spec);
    if (!lr.ok()) return lr.status();
    r->counters["stm conflicts (retried)"] = lr->conflicts;
    Append(std::move(*lr), r);
    return absl::OkStatus();
  }

  // Reads the worker's watch stream until a response satisfying `want`.
  static absl::Status ReadUntil(
      Worker& w, pb::WatchResponse* resp,
      const std::function<bool(const pb::WatchResponse&)>& want) {
    while (w.watch->Read(resp)) {
      if (resp->canceled() && !resp->cancel_reason().empty()) {
        return absl::FailedPreconditionError(resp->cancel_reason());
      }
      if (want(*resp)) return absl::OkStatus();
    }
    absl::Status s = w.watch->Finish();
    return s.ok() ? absl::UnavailableError("watch stream ended") : s;
  }

  absl::Status RunWatchResume(Result* r) {
    LoopSpec spec = MainSpec();
    spec.sections = {"resume"};
    spec.setup = [this](Worker& w) -> absl::Status {
      w.resume_key = absl::StrCat("resume/", w.id);
      pb::PutRequest put;
      put.set_key(w.resume_key);
      put.set_value(w.value);
      auto resp = w.client->Put(put, Call());
      if (!resp.ok()) return resp.status();
      w.resume_rev = resp->header().revision();
      auto st = w.client->OpenWatch(
          client::CallOptions::Timeout(absl::Hours(24 * 365)));
      if (!st.ok()) return st.status();
      w.watch = std::move(*st);
      return absl::OkStatus();
    };
    // Create from the put's revision (behind the store once anything else
    // was written), its one event, cancel.
    spec.op = [](Worker& w, int64_t, int*) -> absl::Status {
      pb::WatchRequest req;
      pb::WatchCreateRequest* c = req.mutable_create_request();
      c->set_key(w.resume_key);
      c->set_start_revision(w.resume_rev);
      if (!w.watch->Send(req)) return w.watch->Finish();
      pb::WatchResponse resp;
      absl::Status s = ReadUntil(
          w, &resp, [](const pb::WatchResponse& x) { return x.created(); });
      if (!s.ok()) return s;
      const int64_t id = resp.watch_id();
      s = ReadUntil(w, &resp, [id](const pb::WatchResponse& x) {
        return x.watch_id() == id && x.events_size() > 0;
      });
      if (!s.ok()) return s;
      if (resp.events(0).kv().mod_revision() != w.resume_rev) {
        return absl::InternalError(absl::StrCat(
            "watch-resume: event of revision ",
            resp.events(0).kv().mod_revision(), ", not ", w.resume_rev));
      }
      pb::WatchRequest cancel;
      cancel.mutable_cancel_request()->set_watch_id(id);
      if (!w.watch->Send(cancel)) return w.watch->Finish();
      return ReadUntil(w, &resp, [id](const pb::WatchResponse& x) {
        return x.watch_id() == id && x.canceled();
      });
    };
    spec.teardown = [this](Worker& w) {
      if (w.watch) w.watch->Cancel();
      if (w.resume_key.empty()) return;
      pb::DeleteRangeRequest del;
      del.set_key(w.resume_key);
      (void)w.client->DeleteRange(del, Call());
    };
    auto lr = Loop(spec);
    if (!lr.ok()) return lr.status();
    Append(std::move(*lr), r);
    return absl::OkStatus();
  }

  absl::Status RunLock(Result* r) {
    LoopSpec spec = MainSpec();
    spec.sections = {"lock"};
    spec.setup = [this](Worker& w) {
      return GrantLease(w, 3600);  // outlives any run; revoked at the end
    };
    spec.op = [this](Worker& w, int64_t, int*) -> absl::Status {
      v3lockpb::LockRequest lr;
      lr.set_name(absl::StrCat(
          "lock/", w.rng() % static_cast<uint64_t>(o_.lock_names)));
      lr.set_lease(w.lease_id);
      auto held = w.client->Lock(lr, Call());
      if (!held.ok()) return held.status();
      v3lockpb::UnlockRequest ur;
      ur.set_key(held->key());
      return w.client->Unlock(ur, Call()).status();
    };
    spec.teardown = [this](Worker& w) { RevokeLease(w); };
    auto lr = Loop(spec);
    if (!lr.ok()) return lr.status();
    Append(std::move(*lr), r);
    return absl::OkStatus();
  }

  // A lease of the worker's own (lease-keepalive, lock), revoked at the end.
  absl::Status GrantLease(Worker& w, int64_t ttl_s) {
    pb::LeaseGrantRequest g;
    g.set_ttl(ttl_s);
    auto lease = w.client->LeaseGrant(g, Call());
    if (!lease.ok()) return lease.status();
    w.lease_id = lease->id();
    return absl::OkStatus();
  }
  void RevokeLease(Worker& w) {
    if (w.lease_id == 0) return;
    pb::LeaseRevokeRequest rv;
    rv.set_id(w.lease_id);
    (void)w.client->LeaseRevoke(rv, Call());
  }

  const Options& o_;
  std::vector<std::unique_ptr<client::Client>> clients_;
  double measured_cpu_ = -1;
};

}  // namespace

absl::StatusOr<Result> Run(const Options& options) {
  Bench b(options);
  return b.Run();
}

}  // namespace detcd::bench
