// Simulated clients that run the client library's recipes (the step
// machines of client/include/detcd/recipe_core.h, through SimRecipeDriver)
// on the simulated cluster, and record what they did for the recipe
// checkers (harness/recipe_checker.h):
//
//  - lock clients: a session (a lease kept alive), Lock, then a few writes
//    to the protected resource key, each fenced by the lock's revision (a
//    Txn If(create_revision(lock key) == token)); now and then the client
//    stops (a GC pause: no keep-alives, nothing sent) for longer than its
//    lease's TTL in the middle of its critical section, as in Jepsen's test
//    of etcd's locks. Then Unlock. With the planted bug "unfenced-lock" the
//    writes go without the If;
//  - election clients: Campaign, a few Proclaims as leader, then Resign or
//    walk away (the lease expires); an observer reads the leader now and
//    then (Election.Leader);
//  - queue producers and consumers: Enqueue unique items, Dequeue them;
//  - registry clients: Register with a lease, keep it alive for a while,
//    then revoke it or stop keeping it alive (a crashed instance); once the
//    faults stop, the workload audits that such entries are gone after
//    their lease expired.
//
// Clients start no new work once the fault phase ends (stop_ns).
#ifndef DETCD_HARNESS_RECIPE_CLIENTS_H_
#define DETCD_HARNESS_RECIPE_CLIENTS_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "engine/env/env.h"
#include "harness/cluster.h"
#include "harness/recipe_checker.h"

namespace detcd::harness {

struct RecipeWorkloadOptions {
  int lock_clients = 3;
  int election_clients = 3;
  int observers = 1;
  int producers = 2;
  int consumers = 2;
  int registry_clients = 2;
  int64_t stop_ns = 10 * sim::kSecond;
  // A client pauses in its critical section (or as leader) with this
  // probability, for 1.2 to 3 times its lease's TTL.
  double pause_probability = 0.3;
  int64_t max_think_ns = 300 * sim::kMillisecond;
  // Planted bug "unfenced-lock": lock holders write without the fence.
  bool unfenced = false;
  // Registry audits: an entry must be gone this long after its lease's TTL
  // ran out (counted from the owner's last keep-alive, or from the last
  // lessor promotion, when leases restart their TTL): the new primary's
  // extension, the checkpoint's rounding up to a second, the revoke's
  // commit.
  int64_t registry_slack_ns = 2 * sim::kSecond;
};

class RecipeWorkload {
 public:
  RecipeWorkload(Cluster* cluster, env::SeededRng rng,
                 RecipeWorkloadOptions opts);
  ~RecipeWorkload();
  RecipeWorkload(const RecipeWorkload&) = delete;
  RecipeWorkload& operator=(const RecipeWorkload&) = delete;

  void Start();
  const RecipeRecords& records() const { return rec_; }
  // The end-of-run check: the recipe checkers over the records and the
  // cluster's KvModel, plus the registry audits made during the run.
  void Check(std::vector<std::string>* failures,
             std::map<std::string, uint64_t>* coverage);

 private:
  struct Client;
  enum class Kind {
    kLock,
    kElection,
    kObserver,
    kProducer,
    kConsumer,
    kRegistry
  };

  void Later(int64_t delay_ns, std::function<void()> fn);
  int64_t Think(Client& c);
  bool Stopped() const;
  // Sessions.
  void NewSession(Client& c, std::function<void()> then);
  void KeepAlive(Client& c, uint64_t epoch);
  void PauseClient(Client& c, std::function<void()> then);
  // Lock clients.
  void LockLoop(Client& c);
  void Critical(Client& c);
  void FencedWrite(Client& c);
  void Unlock(Client& c);
  // Election clients.
  void ElectionLoop(Client& c);
  void Lead(Client& c);
  void ObserveLoop(Client& c);
  // Queue.
  void ProduceLoop(Client& c);
  void ConsumeLoop(Client& c);
  // Registry.
  void RegistryLoop(Client& c);
  void StopRegistration(Client& c, bool revoke);
  void WatchPrimaries();
  void Audit();

  Cluster* cluster_;
  sim::ScheduledRng rng_;
  RecipeWorkloadOptions opts_;
  std::shared_ptr<bool> alive_;
  std::vector<std::unique_ptr<Client>> clients_;
  RecipeRecords rec_;
  std::map<std::string, uint64_t> coverage_;
  std::vector<std::string> audit_failures_;
  std::map<uint64_t, bool> primary_;  // member -> its lessor is primary
  bool any_primary_ = false;
  int64_t last_promotion_ns_ = 0;
};

}  // namespace detcd::harness

#endif  // DETCD_HARNESS_RECIPE_CLIENTS_H_
