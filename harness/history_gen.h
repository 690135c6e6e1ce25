// Generates linearizable client histories of an etcd-like store, for tests
// and benchmarks of the linearizability checker.
//
// The generator simulates a correct store shared by `clients` sequential
// clients. Each op gets an interval [invoke, return] and a linearization
// point inside it; the store applies ops in linearization-point order, so
// responses (including header revisions) are those of a real linearizable
// execution. Unknown ops are applied (at a point after their invoke, possibly
// after the client gave up) or not, at random. Failed ops are never applied.
// Serializable reads return the state at some recent revision that the store
// had already reached when they returned. Values are unique per put.
//
// The op mix: puts (some with prev_kv), single-key and ranged deletes (some
// with prev_kv), single-key and ranged linearizable reads, serializable
// reads, and txns with compares (value / version / create / mod compares on
// single keys or ranges, with writes in either branch). Keys are "k00".."kNN".
// Options add more kinds of ops (GenOptions); with them off, a seed gives the
// same history as before they existed.
//
// Deterministic: the same arguments give the same history (own splitmix64
// PRNG; no global state).
#ifndef DETCD_HARNESS_HISTORY_GEN_H_
#define DETCD_HARNESS_HISTORY_GEN_H_

#include <cstdint>

#include "harness/history.h"

namespace detcd::harness {

struct GenOptions {
  uint64_t seed = 0;
  int ops = 1000;
  int clients = 10;
  int keys = 10;  // at least 2
  double unknown_fraction = 0.05;
  // Also txns that change one key twice in one revision, as etcd 3.4
  // accepts: a delete over a from-key range (range_end "\0") and then a
  // put inside it, or a put and then such a delete over it.
  bool same_key_txns = false;
  // Up to this many leases (ids 1..leases), granted as the history goes
  // (grants are not KV ops). Then some plain puts attach their key to a
  // granted lease, some ops are LeaseRevokes (ok or unknown), and a lease
  // may expire: a kUnknown revoke invoked when its grant was answered,
  // taking effect later (or never). A revoke or a put with a lease that is
  // already gone fails, as etcd's "lease not found".
  int leases = 0;
};

History GenerateHistory(const GenOptions& o);

// The default mix (GenOptions' flags off).
History GenerateHistory(uint64_t seed, int ops, int clients, int keys,
                        double unknown_fraction);

}  // namespace detcd::harness

#endif  // DETCD_HARNESS_HISTORY_GEN_H_
