#include "options.h"

#include <functional>
#include <map>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace detcd::bench {
namespace {

struct WorkloadEntry {
  const char* name;
  Workload workload;
};
constexpr WorkloadEntry kWorkloads[] = {
    {"put", Workload::kPut},
    {"range", Workload::kRange},
    {"txn-put", Workload::kTxnPut},
    {"txn-mixed", Workload::kTxnMixed},
    {"watch", Workload::kWatch},
    {"watch-get", Workload::kWatchGet},
    {"lease-keepalive", Workload::kLeaseKeepalive},
    {"stm", Workload::kStm},
    {"lock", Workload::kLock},
    {"watch-resume", Workload::kWatchResume},
};

// One flag: whether it takes a value, and how to store it.
struct Flag {
  bool takes_value;
  std::function<absl::Status(const std::string&)> set;
};

absl::Status Bad(const std::string& flag, const std::string& value,
                 const char* what) {
  return absl::InvalidArgumentError(
      absl::StrCat("invalid value \"", value, "\" for --", flag, ": ", what));
}

Flag Int(const std::string& name, int* out, int min) {
  return {true, [=](const std::string& v) {
            int x;
            if (!absl::SimpleAtoi(v, &x)) return Bad(name, v, "not an integer");
            if (x < min)
              return Bad(name, v,
                         min > 0 ? "must be positive" : "must not be negative");
            *out = x;
            return absl::OkStatus();
          }};
}

Flag Int64(const std::string& name, int64_t* out, int64_t min) {
  return {true, [=](const std::string& v) {
            int64_t x;
            if (!absl::SimpleAtoi(v, &x)) return Bad(name, v, "not an integer");
            if (x < min)
              return Bad(name, v,
                         min > 0 ? "must be positive" : "must not be negative");
            *out = x;
            return absl::OkStatus();
          }};
}

Flag Double(const std::string& name, double* out) {
  return {true, [=](const std::string& v) {
            double x;
            if (!absl::SimpleAtod(v, &x) || !(x >= 0)) {
              return Bad(name, v, "not a non-negative number");
            }
            *out = x;
            return absl::OkStatus();
          }};
}

Flag String(std::string* out) {
  return {true, [=](const std::string& v) {
            *out = v;
            return absl::OkStatus();
          }};
}

Flag Bool(const std::string& name, bool* out) {
  // Standing alone it means true; "--flag=false" turns it off.
  return {false, [=](const std::string& v) {
            if (v.empty() || v == "true" || v == "1") {
              *out = true;
            } else if (v == "false" || v == "0") {
              *out = false;
            } else {
              return Bad(name, v, "not a boolean");
            }
            return absl::OkStatus();
          }};
}

Flag Duration(const std::string& name, absl::Duration* out) {
  return {true, [=](const std::string& v) {
            absl::Duration d;
            double secs;
            // A bare number is seconds; else Go's syntax ("10s", "1m30s").
            if (absl::SimpleAtod(v, &secs)) {
              d = absl::Seconds(secs);
            } else if (!absl::ParseDuration(v, &d)) {
              return Bad(name, v, "not a duration (e.g. 10s, 500ms)");
            }
            if (d < absl::ZeroDuration()) {
              return Bad(name, v, "must not be negative");
            }
            *out = d;
            return absl::OkStatus();
          }};
}

}  // namespace

const char* WorkloadName(Workload w) {
  for (const auto& e : kWorkloads) {
    if (e.workload == w) return e.name;
  }
  return "?";
}

absl::StatusOr<Options> ParseArgs(const std::vector<std::string>& args) {
  Options o;
  std::string endpoints, consistency = "l";
  std::map<std::string, Flag> flags = {
      {"endpoints", String(&endpoints)},
      {"conns", Int("conns", &o.conns, 1)},
      {"clients", Int("clients", &o.clients, 1)},
      {"total", Int64("total", &o.total, 1)},
      {"duration", Duration("duration", &o.duration)},
      {"rate", Double("rate", &o.rate)},
      {"target-leader", Bool("target-leader", &o.target_leader)},
      {"dial-timeout", Duration("dial-timeout", &o.dial_timeout)},
      {"command-timeout", Duration("command-timeout", &o.command_timeout)},
      {"threads", Int("threads", &o.threads, 1)},
      {"grpc-client", Bool("grpc-client", &o.grpc_client)},
      {"json", Bool("json", &o.json)},
      {"no-progress", Bool("no-progress", &o.no_progress)},
      {"cacert", String(&o.cacert)},
      {"cert", String(&o.cert)},
      {"key", String(&o.key_file)},
      {"insecure-skip-tls-verify",
       Bool("insecure-skip-tls-verify", &o.insecure_skip_tls_verify)},
      {"user", String(&o.user)},
      {"password", String(&o.password)},
      {"key-size", Int("key-size", &o.key_size, 1)},
      {"val-size", Int("val-size", &o.val_size, 0)},
      {"key-space-size", Int64("key-space-size", &o.key_space_size, 1)},
      {"sequential-keys", Bool("sequential-keys", &o.sequential_keys)},
      {"prefix", Bool("prefix", &o.prefix)},
      {"consistency", String(&consistency)},
      {"txn-ops", Int("txn-ops", &o.txn_ops, 1)},
      {"rw-ratio", Double("rw-ratio", &o.rw_ratio)},
      {"watchers", Int("watchers", &o.watchers, 1)},
      {"streams", Int("streams", &o.streams, 1)},
      {"watched-key-total", Int64("watched-key-total", &o.watched_keys, 1)},
      {"put-total", Int64("put-total", &o.put_total, 1)},
      {"put-rate", Double("put-rate", &o.put_rate)},
      {"watch-events", Int64("watch-events", &o.watch_events, 0)},
      {"keys", Int64("keys", &o.stm_keys, 1)},
      {"keys-per-txn", Int("keys-per-txn", &o.keys_per_txn, 1)},
      {"isolation", String(&o.isolation)},
      {"lock-names", Int("lock-names", &o.lock_names, 1)},
  };

  std::vector<std::string> positional;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a.size() < 2 || a[0] != '-') {
      positional.push_back(a);
      continue;
    }
    if (a == "--") {
      positional.insert(positional.end(), args.begin() + i + 1, args.end());
      break;
    }
    std::string name(absl::StripPrefix(absl::StripPrefix(a, "-"), "-"));
    std::string value;
    bool has_value = false;
    if (size_t eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name.resize(eq);
      has_value = true;
    }
    auto it = flags.find(name);
    if (it == flags.end()) {
      return absl::InvalidArgumentError(absl::StrCat("unknown flag: --", name));
    }
    if (it->second.takes_value && !has_value) {
      if (i + 1 >= args.size()) {
        return absl::InvalidArgumentError(
            absl::StrCat("flag needs an argument: --", name));
      }
      value = args[++i];
    }
    if (absl::Status s = it->second.set(value); !s.ok()) return s;
  }

  if (positional.empty()) {
    return absl::InvalidArgumentError("no workload given");
  }
  bool found = false;
  for (const auto& e : kWorkloads) {
    if (positional[0] == e.name) {
      o.workload = e.workload;
      found = true;
    }
  }
  if (!found) {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown workload: ", positional[0]));
  }
  positional.erase(positional.begin());
  const bool takes_key = o.workload == Workload::kRange ||
                         o.workload == Workload::kTxnMixed ||
                         o.workload == Workload::kWatchGet;
  if (takes_key) {
    if (positional.size() > 2) {
      return absl::InvalidArgumentError(absl::StrCat(
          WorkloadName(o.workload), " takes at most a key and a range end"));
    }
    if (!positional.empty()) o.key = positional[0];
    if (positional.size() == 2) o.range_end = positional[1];
    if (o.key.empty()) {
      if (o.workload == Workload::kRange) {
        return absl::InvalidArgumentError("range needs a key");
      }
      o.key = "foo";  // etcd's benchmark: txn-mixed and watch-get default
    }
    if (o.prefix && !o.range_end.empty()) {
      return absl::InvalidArgumentError(
          "--prefix and a range end are exclusive");
    }
  } else if (!positional.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(WorkloadName(o.workload), " takes no arguments, got \"",
                     positional[0], "\""));
  }

  if (!endpoints.empty()) {
    o.endpoints = absl::StrSplit(endpoints, ',', absl::SkipWhitespace());
  }
  if (o.endpoints.empty()) {
    return absl::InvalidArgumentError("--endpoints is empty");
  }
  if (consistency == "l") {
    o.serializable = false;
  } else if (consistency == "s") {
    o.serializable = true;
  } else {
    return Bad("consistency", consistency, "must be l or s");
  }
  if (o.isolation != "c" && o.isolation != "r" && o.isolation != "s" &&
      o.isolation != "ss") {
    return Bad("isolation", o.isolation, "must be c, r, s or ss");
  }
  if (o.keys_per_txn > o.stm_keys) {
    return absl::InvalidArgumentError("--keys-per-txn exceeds --keys");
  }
  if (o.txn_ops > 128) {
    return absl::InvalidArgumentError(
        "--txn-ops above 128 (etcd's --max-txn-ops default)");
  }
  if (o.workload == Workload::kTxnPut && o.txn_ops > o.key_space_size) {
    return absl::InvalidArgumentError(
        "--txn-ops exceeds --key-space-size (a txn may not put a key twice)");
  }
  if (o.clients < o.conns) {
    return absl::InvalidArgumentError(
        "--clients must be at least --conns (each connection needs a "
        "client)");
  }
  if (!o.password.empty() && o.user.empty()) {
    return absl::InvalidArgumentError("--password needs --user");
  }
  if (!o.user.empty() && o.password.empty()) {
    // etcdctl's "name:password" form.
    const size_t colon = o.user.find(':');
    if (colon == std::string::npos) {
      return absl::InvalidArgumentError(
          "--user needs a password: --user name:password or --password");
    }
    o.password = o.user.substr(colon + 1);
    o.user.resize(colon);
  }
  // Keys are decimal indices padded to key_size bytes: the key space must
  // fit in the digits available.
  const bool keyed =
      o.workload == Workload::kPut || o.workload == Workload::kTxnPut ||
      o.workload == Workload::kTxnMixed || o.workload == Workload::kWatch;
  int64_t space =
      o.workload == Workload::kWatch ? o.watched_keys : o.key_space_size;
  if (keyed && o.key_size < 19) {
    int64_t limit = 1;
    for (int i = 0; i < o.key_size; ++i) limit *= 10;
    if (space > limit) {
      return absl::InvalidArgumentError(
          absl::StrCat("the key space (", space,
                       ") does not fit in --key-size ", o.key_size, " digits"));
    }
  }
  if (o.watchers < o.streams) o.streams = o.watchers;
  return o;
}

std::string Usage() {
  return R"(Usage: detcd-bench [flags] <workload> [key [range-end]] [flags]

A load generator for any etcd v3 endpoint (detcd or etcd), modelled on
etcd 3.4's tools/benchmark. At the end it prints QPS and a latency
histogram (p50/p90/p99/p99.9), and its own CPU per request.

Workloads:
  put                 puts of --key-size keys with --val-size values over
                      --key-space-size keys (random, or --sequential-keys)
  range KEY [END]     gets of KEY (or [KEY, END), or --prefix);
                      --consistency l (linearizable) or s (serializable)
  txn-put             txns of --txn-ops puts each
  txn-mixed [KEY]     txns that read (KEY, END or --prefix) or write a key,
                      --rw-ratio reads per write; reads and writes reported
                      apart
  watch               --watchers watchers on --streams streams over
                      --watched-key-total keys; --put-total puts at
                      --put-rate: event delivery latency (put sent to event
                      read) and put latency
  watch-get [KEY]     --watchers unsynced watchers (from revision 1) catch up
                      over --watch-events events while --total gets of KEY
                      are measured
  lease-keepalive     one lease per client, keep-alives on its stream
  stm                 read-modify-write transactions over --keys keys,
                      --keys-per-txn per txn, --isolation c|r|s|ss, retried
                      on conflict (latency includes retries)
  lock                Lock then Unlock (etcd's v3lock service) of one of
                      --lock-names names, each client under a lease of its
                      own: with fewer names than clients, the others wait
                      in the queue (latency includes the wait)
  watch-resume        each client puts a key of its own, then over and over
                      watches it from that put's revision (as a client
                      resuming a watch, or watching after a list), reads
                      the event and cancels: latency create to cancel

Global flags:
  --endpoints LIST    comma-separated (default 127.0.0.1:2379)
  --conns N           gRPC connections (default 1)
  --clients N         concurrent clients over the connections (default 1)
  --total N           requests (default 10000)
  --duration D        run for D (e.g. 30s) instead of --total
  --rate R            requests/s over all clients (default 0: unlimited)
  --target-leader     send everything to the leader's endpoint
  --dial-timeout D    (default 2s)
  --command-timeout D per request (default 0: no deadline, as etcd's)
  --cacert/--cert/--key FILE, --insecure-skip-tls-verify   TLS
  --user NAME[:PASSWORD] [--password P]                     auth
  --threads N         threads driving put/range/txn calls (default 2)
  --grpc-client       put/range/txn through gRPC C++, not the built-in
                      HTTP/2 client (TLS and --user always use gRPC C++)
  --json              print the result as JSON on stdout
  --no-progress       no progress bar (it only shows on a terminal anyway)
Workload flags: --key-size (8) --val-size (8) --key-space-size (1)
  --sequential-keys --consistency l|s --prefix --txn-ops (1) --rw-ratio (1)
  --watchers (100) --streams (10) --watched-key-total (10) --put-total (1000)
  --put-rate (0) --watch-events (1000) --keys (1) --keys-per-txn (1)
  --isolation (r) --lock-names (1)
)";
}

}  // namespace detcd::bench
