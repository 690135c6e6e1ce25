// Runs a recipe step machine (recipe_core.h) over the blocking client: each
// step is one call on the Client, a watch step a Watcher. The recipes'
// blocking classes (Mutex, Election, Queue, PriorityQueue,
// ServiceRegistry::Register) are this plus their machine.
#ifndef DETCD_CLIENT_RECIPE_DRIVER_H_
#define DETCD_CLIENT_RECIPE_DRIVER_H_

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "detcd/client.h"
#include "detcd/recipe_core.h"

namespace detcd::client {

// Runs steps to its end and returns its outcome. Every call is bounded by
// deadline and by the canceller's own deadline (a watch that outlives
// them ends with DeadlineExceeded "context deadline exceeded", without
// waiting for anyone to cancel it) and stops when the client's canceller
// fires (Cancelled "context canceled"). Clean-up calls run without the
// canceller and are bounded by 5 s of their own.
absl::Status RunSteps(Client* c, RecipeSteps& steps,
                      absl::Time deadline = absl::InfiniteFuture());

}  // namespace detcd::client

#endif  // DETCD_CLIENT_RECIPE_DRIVER_H_
