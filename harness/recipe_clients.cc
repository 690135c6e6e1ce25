#include "harness/recipe_clients.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "detcd/recipe_core.h"
#include "harness/recipe_driver.h"

namespace detcd::harness {
namespace {

namespace pb = etcdserverpb;

constexpr char kLockPrefix[] = "rcp/lock/";
constexpr char kResource[] = "rcp/resource";
constexpr char kElectionPrefix[] = "rcp/elect/";
constexpr char kQueuePrefix[] = "rcp/queue";
constexpr char kRegistryPrefix[] = "rcp/svc/web/";

}  // namespace

struct RecipeWorkload::Client {
  int id = 0;
  Kind kind = Kind::kLock;
  // Its draws, and its drivers', in a stream of its own ("recipes/cN").
  std::unique_ptr<sim::StreamRng> rng;
  std::unique_ptr<SimRecipeDriver> driver;  // the recipe's calls
  std::unique_ptr<SimRecipeDriver> keeper;  // the session's lease
  // The session.
  int64_t lease = 0;
  int64_t ttl_s = 0;
  bool session_alive = false;
  int64_t last_ack_ns = 0;
  int64_t last_sent_ns = 0;  // the last keep-alive sent
  uint64_t epoch = 0;        // keep-alive loops of older sessions / pauses stop
  bool paused = false;
  // What runs.
  std::unique_ptr<client::RecipeSteps> steps;
  client::MutexState mutex;
  client::ElectionState election;
  int64_t token = 0;
  int left = 0;     // writes or proclaims still to do
  int n = 0;        // sequence of this client's items / writes
  int record = -1;  // the dequeue or registration being recorded
};

RecipeWorkload::RecipeWorkload(Cluster* cluster, env::SeededRng rng,
                               RecipeWorkloadOptions opts)
    : cluster_(cluster),
      rng_(rng, cluster->options().decisions, "recipes"),
      opts_(opts),
      alive_(std::make_shared<bool>(true)) {
  rec_.lock_prefix = kLockPrefix;
  rec_.resource_key = kResource;
  rec_.election_prefix = kElectionPrefix;
  rec_.queue_prefix = kQueuePrefix;
  auto add = [&](Kind k, int count) {
    for (int i = 0; i < count; ++i) {
      auto c = std::make_unique<Client>();
      c->id = static_cast<int>(clients_.size());
      c->kind = k;
      c->rng = std::make_unique<sim::StreamRng>(
          &rng_, absl::StrCat("recipes/c", c->id));
      c->driver = std::make_unique<SimRecipeDriver>(cluster_, c->rng.get(),
                                                    SimRecipeDriver::Options());
      c->keeper = std::make_unique<SimRecipeDriver>(cluster_, c->rng.get(),
                                                    SimRecipeDriver::Options());
      clients_.push_back(std::move(c));
    }
  };
  add(Kind::kLock, opts_.lock_clients);
  add(Kind::kElection, opts_.election_clients);
  add(Kind::kObserver, opts_.observers);
  add(Kind::kProducer, opts_.producers);
  add(Kind::kConsumer, opts_.consumers);
  add(Kind::kRegistry, opts_.registry_clients);
}

RecipeWorkload::~RecipeWorkload() { *alive_ = false; }

void RecipeWorkload::Later(int64_t delay_ns, std::function<void()> fn) {
  cluster_->world().After(delay_ns, [alive = alive_, fn = std::move(fn)] {
    if (*alive) fn();
  });
}

int64_t RecipeWorkload::Think(Client& c) {
  return c.rng->Range(sim::kMillisecond, opts_.max_think_ns);
}

bool RecipeWorkload::Stopped() const {
  return cluster_->world().now() >= opts_.stop_ns;
}

void RecipeWorkload::Start() {
  for (auto& cp : clients_) {
    Client* c = cp.get();
    Later(Think(*c), [this, c] {
      switch (c->kind) {
        case Kind::kLock:
          LockLoop(*c);
          break;
        case Kind::kElection:
          ElectionLoop(*c);
          break;
        case Kind::kObserver:
          ObserveLoop(*c);
          break;
        case Kind::kProducer:
          ProduceLoop(*c);
          break;
        case Kind::kConsumer:
          ConsumeLoop(*c);
          break;
        case Kind::kRegistry:
          RegistryLoop(*c);
          break;
      }
    });
  }
  if (opts_.registry_clients > 0) {
    Later(0, [this] { WatchPrimaries(); });
    Later(500 * sim::kMillisecond, [this] { Audit(); });
  }
}

// ------------------------------------------------------------ sessions

void RecipeWorkload::NewSession(Client& c, std::function<void()> then) {
  c.session_alive = false;
  ++c.epoch;
  const int64_t ttl = c.rng->Range(1, 2);
  c.keeper->Grant(
      ttl, [this, &c, then](absl::StatusOr<pb::LeaseGrantResponse> g) {
        if (!g.ok()) {
          if (!Stopped())
            Later(Think(c), [this, &c, then] { NewSession(c, then); });
          return;
        }
        c.lease = g->id();
        c.ttl_s = g->ttl();
        c.session_alive = true;
        c.last_ack_ns = cluster_->world().now();
        const uint64_t epoch = ++c.epoch;
        ++coverage_["recipe.sessions"];
        Later(c.ttl_s * sim::kSecond / 3,
              [this, &c, epoch] { KeepAlive(c, epoch); });
        then();
      });
}

// clientv3's session keep-alive: a renewal every TTL/3; the session is over
// once the lease is gone or nothing was acknowledged for a whole TTL.
void RecipeWorkload::KeepAlive(Client& c, uint64_t epoch) {
  if (c.epoch != epoch || !c.session_alive || c.paused) return;
  const int64_t now = cluster_->world().now();
  if (now - c.last_ack_ns > c.ttl_s * sim::kSecond) {
    c.session_alive = false;
    return;
  }
  if (c.kind == Kind::kRegistry && Stopped()) {
    StopRegistration(c, /*revoke=*/false);
    return;
  }
  c.last_sent_ns = now;
  c.keeper->KeepAlive(c.lease, [this, &c, epoch](absl::StatusOr<int64_t> ttl) {
    if (c.epoch != epoch) return;
    if (ttl.ok() && *ttl > 0) {
      c.last_ack_ns = cluster_->world().now();
      if (c.kind == Kind::kRegistry && c.record >= 0) {
        rec_.registrations[c.record].last_alive_ns = c.last_ack_ns;
      }
    } else if (ttl.ok() || ttl.status().code() == absl::StatusCode::kNotFound) {
      c.session_alive = false;  // expired or revoked
      return;
    }
  });
  Later(c.ttl_s * sim::kSecond / 3, [this, &c, epoch] { KeepAlive(c, epoch); });
}

// A process pause (GC, VM stall): nothing is sent meanwhile, keep-alives
// included; requests already sent go on without the client.
void RecipeWorkload::PauseClient(Client& c, std::function<void()> then) {
  const int64_t ttl_ns = std::max<int64_t>(1, c.ttl_s) * sim::kSecond;
  const int64_t for_ns = c.rng->Range(ttl_ns * 6 / 5, ttl_ns * 3);
  c.paused = true;
  ++coverage_["recipe.client-pauses"];
  Later(for_ns, [this, &c, then] {
    c.paused = false;
    const uint64_t epoch = ++c.epoch;
    // It acts first and only then hears from its keep-alive (Jepsen's
    // finding: the lock may already be someone else's).
    then();
    Later(0, [this, &c, epoch] { KeepAlive(c, epoch); });
  });
}

// ------------------------------------------------------------ locks

void RecipeWorkload::LockLoop(Client& c) {
  if (Stopped()) return;
  if (!c.session_alive) {
    NewSession(c, [this, &c] { LockLoop(c); });
    return;
  }
  c.mutex = client::MutexState();
  c.mutex.prefix = kLockPrefix;
  c.mutex.lease = c.lease;
  c.steps = std::make_unique<client::LockSteps>(&c.mutex);
  c.driver->Run(c.steps.get(), [this, &c](absl::Status s) {
    if (!s.ok()) {
      ++coverage_["recipe.lock.failed"];
      Later(Think(c), [this, &c] { LockLoop(c); });
      return;
    }
    ++coverage_["recipe.lock.acquired"];
    c.token = c.mutex.rev;
    c.left = 1 + static_cast<int>(c.rng->Uniform(3));
    Critical(c);
  });
}

void RecipeWorkload::Critical(Client& c) {
  if (c.rng->Chance(opts_.pause_probability)) {
    PauseClient(c, [this, &c] { FencedWrite(c); });
  } else {
    Later(Think(c) / 4, [this, &c] { FencedWrite(c); });
  }
}

void RecipeWorkload::FencedWrite(Client& c) {
  pb::TxnRequest t;
  if (!opts_.unfenced) {
    // Only while the lock key still has our token as create revision.
    *t.add_compare() = client::CreateRevisionIs(c.mutex.key, c.token);
  }
  // PLANTED (unfenced-lock): without the compare above, a holder that
  // paused past its lease's TTL writes after the lock moved on.
  auto* put = t.add_success()->mutable_request_put();
  put->set_key(kResource);
  put->set_value(absl::StrCat("t", c.token, "/c", c.id, "/", ++c.n));
  c.driver->Txn(t, [this, &c](absl::StatusOr<pb::TxnResponse> r) {
    if (r.ok() && !r->succeeded()) {
      // The fence held: the lock is gone (its lease expired).
      ++coverage_["recipe.lock.fence-refused"];
      c.session_alive = false;
      Later(Think(c), [this, &c] { LockLoop(c); });
      return;
    }
    if (r.ok() && --c.left > 0) {
      Critical(c);
      return;
    }
    Unlock(c);
  });
}

void RecipeWorkload::Unlock(Client& c) {
  c.steps = std::make_unique<client::UnlockSteps>(&c.mutex);
  c.driver->Run(c.steps.get(), [this, &c](absl::Status) {
    Later(Think(c), [this, &c] { LockLoop(c); });
  });
}

// ------------------------------------------------------------ elections

void RecipeWorkload::ElectionLoop(Client& c) {
  if (Stopped()) return;
  if (!c.session_alive) {
    NewSession(c, [this, &c] { ElectionLoop(c); });
    return;
  }
  c.election = client::ElectionState();
  c.election.prefix = kElectionPrefix;
  c.election.lease = c.lease;
  c.steps = std::make_unique<client::CampaignSteps>(&c.election,
                                                    absl::StrCat("c", c.id));
  c.driver->Run(c.steps.get(), [this, &c](absl::Status s) {
    if (!s.ok()) {
      ++coverage_["recipe.election.campaign-failed"];
      Later(Think(c), [this, &c] { ElectionLoop(c); });
      return;
    }
    rec_.wins.push_back({c.id, c.election.leader_rev, c.election.won_revision});
    c.left = 1 + static_cast<int>(c.rng->Uniform(3));
    Lead(c);
  });
}

void RecipeWorkload::Lead(Client& c) {
  auto proclaim = [this, &c] {
    c.steps = std::make_unique<client::ProclaimSteps>(
        &c.election, absl::StrCat("c", c.id, "/", ++c.n));
    c.driver->Run(c.steps.get(), [this, &c](absl::Status s) {
      if (s.ok() && --c.left > 0) {
        Lead(c);
        return;
      }
      if (!s.ok()) ++coverage_["recipe.election.proclaim-refused"];
      if (!s.ok() || c.rng->Chance(0.3)) {
        // Walk away: the lease expires and takes the key with it.
        c.session_alive = false;
        ++c.epoch;
        Later(Think(c), [this, &c] { ElectionLoop(c); });
        return;
      }
      c.steps = std::make_unique<client::ResignSteps>(&c.election);
      c.driver->Run(c.steps.get(), [this, &c](absl::Status) {
        Later(Think(c), [this, &c] { ElectionLoop(c); });
      });
    });
  };
  if (c.rng->Chance(opts_.pause_probability / 2)) {
    PauseClient(c, proclaim);
  } else {
    Later(Think(c) / 2, proclaim);
  }
}

void RecipeWorkload::ObserveLoop(Client& c) {
  if (Stopped()) return;
  c.steps = std::make_unique<client::LeaderSteps>(kElectionPrefix);
  c.driver->Run(c.steps.get(), [this, &c](absl::Status s) {
    auto* steps = static_cast<client::LeaderSteps*>(c.steps.get());
    const pb::RangeResponse& r = steps->response();
    // A read that failed saw nothing; "no leader" is an observation.
    if (s.ok() || (steps->response().has_header() && r.kvs_size() == 0)) {
      RecipeRecords::Observation o;
      o.client = c.id;
      o.revision = r.header().revision();
      if (r.kvs_size() > 0) {
        o.term = r.kvs(0).create_revision();
        o.key = r.kvs(0).key();
      }
      rec_.observations.push_back(o);
    }
    Later(Think(c), [this, &c] { ObserveLoop(c); });
  });
}

// ------------------------------------------------------------ queue

void RecipeWorkload::ProduceLoop(Client& c) {
  if (Stopped()) return;
  const int index = static_cast<int>(rec_.enqueues.size());
  rec_.enqueues.push_back({absl::StrCat("v", c.id, "-", ++c.n), "", false});
  // Unique suffixes: world time and the client (etcd uses Unix nanos).
  const int64_t id = c.id;
  auto unique = [this, id] { return cluster_->world().now() * 64 + id; };
  c.steps = std::make_unique<client::EnqueueSteps>(
      kQueuePrefix, rec_.enqueues[index].value, 0, unique);
  c.driver->Run(c.steps.get(), [this, &c, index](absl::Status s) {
    auto* steps = static_cast<client::EnqueueSteps*>(c.steps.get());
    rec_.enqueues[index].key = steps->key();
    rec_.enqueues[index].acked = s.ok();
    ++coverage_[s.ok() ? "recipe.queue.enqueued"
                       : "recipe.queue.enqueue-failed"];
    Later(Think(c), [this, &c] { ProduceLoop(c); });
  });
}

void RecipeWorkload::ConsumeLoop(Client& c) {
  if (Stopped()) return;
  c.record = static_cast<int>(rec_.dequeues.size());
  rec_.dequeues.push_back({c.id, false, "", "", {}});
  c.steps = std::make_unique<client::DequeueSteps>(kQueuePrefix,
                                                   pb::RangeRequest::CREATE);
  c.driver->Run(c.steps.get(), [this, &c](absl::Status s) {
    auto* steps = static_cast<client::DequeueSteps*>(c.steps.get());
    RecipeRecords::Dequeue& d = rec_.dequeues[c.record];
    d.acked = s.ok();
    d.key = steps->key();
    d.value = steps->value();
    d.attempted = steps->attempted();
    c.record = -1;
    Later(Think(c), [this, &c] { ConsumeLoop(c); });
  });
}

// ------------------------------------------------------------ registry

void RecipeWorkload::RegistryLoop(Client& c) {
  if (Stopped()) return;
  const std::string key = absl::StrCat(kRegistryPrefix, "c", c.id, "-", ++c.n);
  c.steps = std::make_unique<client::RegisterSteps>(key, "10.0.0.1:80",
                                                    c.rng->Range(1, 2));
  c.driver->Run(c.steps.get(), [this, &c, key](absl::Status s) {
    auto* steps = static_cast<client::RegisterSteps*>(c.steps.get());
    const int64_t now = cluster_->world().now();
    if (steps->lease() != 0) {
      // Even a failed registration may have left the entry (a create whose
      // answer was lost) on a lease nobody keeps alive.
      rec_.registrations.push_back({key, steps->lease(),
                                    std::max<int64_t>(1, steps->ttl()), now,
                                    /*stopped=*/!s.ok()});
    }
    if (!s.ok()) {
      Later(Think(c), [this, &c] { RegistryLoop(c); });
      return;
    }
    ++coverage_["recipe.registry.registered"];
    c.record = static_cast<int>(rec_.registrations.size()) - 1;
    c.lease = steps->lease();
    c.ttl_s = std::max<int64_t>(1, steps->ttl());
    c.session_alive = true;
    c.last_ack_ns = now;
    const uint64_t epoch = ++c.epoch;
    Later(c.ttl_s * sim::kSecond / 3,
          [this, &c, epoch] { KeepAlive(c, epoch); });
    // Serve for a while, then leave cleanly or crash.
    Later(c.rng->Range(500, 4000) * sim::kMillisecond, [this, &c, epoch] {
      if (c.epoch != epoch || c.record < 0) return;
      StopRegistration(c, c.rng->Chance(0.5));
    });
  });
}

void RecipeWorkload::StopRegistration(Client& c, bool revoke) {
  if (c.record < 0) return;
  RecipeRecords::Registration& g = rec_.registrations[c.record];
  g.stopped = true;
  // A keep-alive still on its way may renew the lease after its sender
  // stopped listening: it renews at the latest when the client gives up on
  // it (the driver's timeout).
  g.last_alive_ns = std::max(
      c.last_ack_ns, c.last_sent_ns + SimRecipeDriver::Options().timeout_ns);
  c.record = -1;
  c.session_alive = false;
  ++c.epoch;
  auto next = [this, &c] { Later(Think(c), [this, &c] { RegistryLoop(c); }); };
  if (revoke) {
    c.keeper->Revoke(c.lease, [next](absl::Status) { next(); });
  } else {
    next();
  }
}

// A lease's expiry restarts when a member's lessor becomes primary (with the
// remaining TTL of the last checkpoint, rounded up to a second, or the
// whole TTL, plus an election timeout: engine/lease/lessor.h), so an
// entry's deadline counts from the last promotion too.
void RecipeWorkload::WatchPrimaries() {
  bool any = false;
  for (uint64_t id : cluster_->ids()) {
    server::EtcdServer* s = cluster_->server(id);
    const bool primary = s != nullptr && s->state().lessor().is_primary();
    bool& was = primary_[id];
    if (primary && !was) last_promotion_ns_ = cluster_->world().now();
    was = primary;
    any = any || primary;
  }
  any_primary_ = any;
  Later(20 * sim::kMillisecond, [this] { WatchPrimaries(); });
}

// Judged once the faults have stopped (the liveness phase heals the
// network and resumes every member): while a partition or a pause keeps the
// primary from committing, an expired lease may rightly wait for its
// revoke. An entry must be gone by its deadline plus the slack, and one
// whose deadline fell in the fault phase by the phase's end plus the slack
// (judged at the end itself, an entry whose revoke the faults had held up
// until then failed: seed 2456 with buggify).
void RecipeWorkload::Audit() {
  const int64_t now = cluster_->world().now();
  if (!Stopped()) {
    Later(500 * sim::kMillisecond, [this] { Audit(); });
    return;
  }
  const KvModel& model = cluster_->model();
  std::map<std::string, int64_t> live;  // registry key -> lease
  bool read = false;
  for (RecipeRecords::Registration& g : rec_.registrations) {
    if (!g.stopped || g.lease == 0) continue;
    const int64_t base = std::max(g.last_alive_ns, last_promotion_ns_);
    const int64_t due =
        std::max(base + g.ttl_s * sim::kSecond, opts_.stop_ns) +
        opts_.registry_slack_ns;
    if (now <= due || !any_primary_) continue;
    if (!read) {
      for (const mvcc::KeyValue& kv : model.LiveAt(model.rev())) {
        if (kv.key.rfind(kRegistryPrefix, 0) == 0) live[kv.key] = kv.lease;
      }
      read = true;
    }
    ++coverage_["recipe.registry.expiry-audits"];
    auto it = live.find(g.key);
    if (it != live.end() && it->second == g.lease) {
      audit_failures_.push_back(absl::StrCat(
          "registry: entry ", g.key, " (lease ", g.lease, ", ttl ", g.ttl_s,
          " s) still registered ", (now - due) / sim::kMillisecond,
          " ms after its lease must have expired"));
    }
    g.lease = 0;  // audited once
  }
  Later(500 * sim::kMillisecond, [this] { Audit(); });
}

void RecipeWorkload::Check(std::vector<std::string>* failures,
                           std::map<std::string, uint64_t>* coverage) {
  // Dequeues still running: whatever they tried may have been taken.
  for (auto& c : clients_) {
    if (c->kind == Kind::kConsumer && c->record >= 0 && c->steps) {
      auto* steps = static_cast<client::DequeueSteps*>(c->steps.get());
      rec_.dequeues[c->record].attempted = steps->attempted();
    }
  }
  RecipeCheckOptions o;
  o.end_ns = cluster_->world().now();
  // The registry was audited during the run (it needs the leader changes).
  RecipeRecords rec = rec_;
  rec.registrations.clear();
  CheckRecipes(cluster_->model(), rec, o, failures, coverage);
  const size_t max_audit = 3;
  for (size_t i = 0; i < audit_failures_.size() && i < max_audit; ++i) {
    failures->push_back(audit_failures_[i]);
  }
  if (audit_failures_.size() > max_audit) {
    failures->push_back(absl::StrCat(
        "registry: ", audit_failures_.size() - max_audit, " more violations"));
  }
  for (const auto& [k, v] : coverage_) (*coverage)[k] += v;
}

}  // namespace detcd::harness
