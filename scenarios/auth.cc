// Scenario "auth": etcd's authentication and role-based access under
// faults. Every client connection presents a client certificate naming
// root (etcd's --client-cert-auth), so the usual workload and the
// operator's member changes run as root; next to them an admin and three
// users with their own tokens (harness/auth_workload.h) race permission,
// role, password and user changes against puts, deletes, ranges and txns,
// across leader changes and a random mix of the usual faults. The auth
// checker (harness/auth_checker.h) then holds every answer to etcd's rules
// at its apply point, from its own model of the committed auth changes.
// bcrypt runs at its minimum cost so the runs stay fast.
#include <memory>

#include "engine/auth/bcrypt.h"
#include "harness/auth_workload.h"
#include "scenarios/scenario.h"

namespace detcd::scenarios {
namespace {

void Configure(harness::ClusterOptions& opts, env::Rng& rng,
               std::vector<std::string>* params) {
  opts.server.client_cert_auth = true;
  opts.client_caller = server::Caller{std::nullopt, "root"};
  opts.server.bcrypt_cost = auth::kBcryptMinCost;
  // Snapshots now and then: members that catch up from one forget the
  // simple tokens issued before it, as etcd's do.
  if (rng.Chance(0.5)) {
    opts.node.snapshot_count = 50 + rng.Uniform(300);
    opts.node.snapshot_catchup_entries = 5 + rng.Uniform(50);
    params->push_back(
        absl::StrCat("snapshot_count=", opts.node.snapshot_count));
  }
}

void Setup(ScenarioContext& ctx) {
  struct Fault {
    const char* name;
    void (*add)(ScenarioContext&);
  };
  // Leader changes always; the rest as the swarm picks them.
  static const Fault kAlways[] = {
      {"leader-crash", AddLeaderCrashes},
      {"transfer", AddLeaderTransfers},
  };
  static const Fault kFaults[] = {
      {"partition", [](ScenarioContext& c) { AddPartitions(c, false); }},
      {"one-way", [](ScenarioContext& c) { AddPartitions(c, true); }},
      {"flaky-network", AddFlakyNetwork},
      {"crash-restart", AddCrashRestarts},
      {"isolation", AddIsolation},
      {"election-churn", AddElectionChurn},
      {"pause", AddPauses},
  };
  const Fault& first = kAlways[ctx.rng().Uniform(2)];
  first.add(ctx);
  std::string chosen = first.name;
  for (const Fault& f : kFaults) {
    if (!ctx.rng().Chance(0.3)) continue;
    f.add(ctx);
    absl::StrAppend(&chosen, ",", f.name);
  }
  ctx.Param("auth.faults", chosen);

  harness::AuthWorkloadOptions o;
  o.end_ns = ctx.fault_end_ns();
  auto w = std::make_shared<harness::AuthWorkload>(
      &ctx.cluster(), ctx.cluster().DeriveRng("auth-workload"), o);
  w->Start();
  ctx.set_external_writes();  // the users' a/, b/ and z/ keys
  ctx.AddFinalCheck([w](std::vector<std::string>* failures,
                        std::set<std::string>* caught_by,
                        std::map<std::string, uint64_t>* coverage) {
    for (const auto& [name, n] : w->checker().Counters()) {
      (*coverage)[name] += n;
    }
    if (!w->enabled()) {
      // Not a failure of auth: the run just never got to test it.
      (*coverage)["auth.setup-unfinished"] += 1;
    }
    std::vector<std::string> v = w->checker().Check();
    if (!v.empty()) caught_by->insert("auth");
    for (std::string& s : v) failures->push_back(std::move(s));
  });
}

}  // namespace

Scenario AuthScenario() {
  return {"auth",
          "auth on: an admin changes users, roles and permissions while "
          "users with tokens read and write, across leader changes and "
          "faults; every answer is held to etcd's RBAC rules",
          Configure, Setup};
}

}  // namespace detcd::scenarios
