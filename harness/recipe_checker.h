// Checkers for the simulated recipe clients (harness/recipe_clients.h).
// Each judges what the clients recorded against the committed history as
// the independent KvModel replays it (every revision's events), so a write
// whose answer was lost still counts.
//
//  - Locks with fencing: every write to the protected resource key carries
//    its writer's token (the lock key's create revision) in its value, and
//    at the revision it was applied the lock's owner (the live key under
//    the lock prefix with the lowest create revision) must have exactly
//    that create revision. So writes happen only under the lock and the
//    holders' writes never interleave (tokens never go down either).
//    Unfenced writes of a holder that paused past its lease's TTL break it.
//  - Elections: when a campaign returns leader at revision R with term T
//    (its key's create revision), no candidate created before T is alive
//    at R (so two clients never both lead at one revision), and each term
//    has one leader. An observer's read of the leader at revision R names
//    the oldest candidate alive at R, and one observer never sees an older
//    term after a newer one.
//  - Queues: no item delivered twice, every delivered item was enqueued,
//    and no acknowledged item lost: at the end it is still queued, or was
//    delivered, or a dequeue that failed without an answer tried to take it.
//  - Registry: an entry whose lease its owner stopped keeping alive (or
//    revoked) is gone once the lease's TTL and the cluster's slack have
//    passed.
#ifndef DETCD_HARNESS_RECIPE_CHECKER_H_
#define DETCD_HARNESS_RECIPE_CHECKER_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "harness/kv_model.h"

namespace detcd::harness {

struct RecipeRecords {
  std::string lock_prefix;      // with the trailing "/"
  std::string resource_key;     // values "t<token>/<writer>"
  std::string election_prefix;  // with the trailing "/"
  struct Win {
    int client = 0;
    int64_t term = 0;          // leader key's create revision
    int64_t won_revision = 0;  // revision of the campaign's last read
  };
  std::vector<Win> wins;
  // An observer's read of the leader (Election.Leader) at `revision`: the
  // leader key and its create revision (the term), term 0 for "no leader".
  struct Observation {
    int client = 0;
    int64_t revision = 0;
    int64_t term = 0;
    std::string key;
  };
  std::vector<Observation> observations;
  std::string queue_prefix;  // keys "<queue_prefix>/<unique>"
  struct Enqueue {
    std::string value;
    std::string key;  // as the enqueue last tried it
    bool acked = false;
  };
  std::vector<Enqueue> enqueues;
  struct Dequeue {
    int client = 0;
    bool acked = false;
    std::string key, value;              // if acked
    std::vector<std::string> attempted;  // keys it tried to delete
  };
  std::vector<Dequeue> dequeues;
  struct Registration {
    std::string key;
    int64_t lease = 0;
    int64_t ttl_s = 0;
    // World time of the last acknowledged grant or keep-alive (the lease
    // lives at most TTL past it), and whether its owner stopped keeping it
    // alive (orphaned or revoked) before the end.
    int64_t last_alive_ns = 0;
    bool stopped = false;
  };
  std::vector<Registration> registrations;
};

struct RecipeCheckOptions {
  int64_t end_ns = 0;  // world time of the check
  // How long after its TTL ran out (from the owner's last acknowledged
  // keep-alive) a lease may still be alive: lease extension on a leader
  // change plus the revoke's commit.
  int64_t registry_slack_ns = 0;
};

// Appends one line per violation to `failures` and counts what was checked
// into `coverage` ("recipe.lock.writes", ...).
void CheckRecipes(const KvModel& model, const RecipeRecords& rec,
                  const RecipeCheckOptions& o,
                  std::vector<std::string>* failures,
                  std::map<std::string, uint64_t>* coverage);

}  // namespace detcd::harness

#endif  // DETCD_HARNESS_RECIPE_CHECKER_H_
