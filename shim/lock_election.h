// etcd's Lock (v3lockpb.Lock: Lock, Unlock) and Election
// (v3electionpb.Election: Campaign, Proclaim, Leader, Observe, Resign)
// services, served on the client port as etcd 3.4 serves them.
//
// etcd implements both with its own clientv3 talking to the member itself
// and the concurrency recipes (mutex, election) on top; so do we: each call
// gets a detcd client (client/) over an in-process channel to this
// server's own KV, Watch and Lease services, and runs client/concurrency's
// Mutex and Election, the same code detcdctl's lock and elect use. The
// semantics are therefore the recipes' (keys "<name>/<lease id hex>", the
// holder is the lowest create revision under "<name>/", waiters watch
// their predecessor's deletion, the caller's lease bounds everything), and
// errors are etcd's:
//  - a call with lease 0 gets a fresh lease of 60 s that nobody keeps
//    alive (etcd's concurrency session default), otherwise the caller's
//    lease is used and not kept alive here;
//  - an error of the inner KV / Lease calls with one of etcd's texts
//    reaches the caller with code Unknown and that text (e.g. Unknown
//    "etcdserver: requested lease not found"), as etcd's clientv3 turns
//    such errors into plain Go errors; other gRPC errors keep their code;
//  - the recipes' own errors are code Unknown too: "election: not leader",
//    "election: no leader", "\"leader\" field must be provided".
//
// Lock and Campaign block until the lock / leadership is won. Each open
// call runs on a thread of its own (a gRPC thread never blocks); when the
// caller goes away (cancel, deadline) the call is cancelled, and a Lock or
// Campaign still waiting deletes its queue key, as etcd does.
#ifndef DETCD_SHIM_LOCK_ELECTION_H_
#define DETCD_SHIM_LOCK_ELECTION_H_

#include <cstddef>
#include <functional>
#include <memory>
#include <vector>

#include "shim/services.h"

namespace grpc {
class Channel;
class Service;
}  // namespace grpc

namespace detcd::shim {

class LockElection {
 public:
  struct Options {
    // Calls open at once (each holds a thread while it waits); more are
    // refused with ResourceExhausted "etcdserver: too many requests".
    size_t max_open_calls = 4096;
    // Whether this member is a learner now (any thread). etcd's
    // interceptors refuse every Lock and Election call on a learner with
    // Unavailable "etcdserver: rpc not supported for learner". Unset: never.
    std::function<bool()> is_learner;
  };
  // observer (may be null) counts the calls as the other services'.
  LockElection(Options o, CallObserver* observer);
  ~LockElection();
  LockElection(const LockElection&) = delete;
  LockElection& operator=(const LockElection&) = delete;

  // The services to register with the grpc::ServerBuilder.
  std::vector<grpc::Service*> services();
  // The channel to this server that the services' client uses
  // (grpc::Server::InProcessChannel once the server is built). Calls
  // arriving before it is set are refused with Unavailable "etcdserver:
  // server stopped"... which cannot happen when it is set before the
  // client listeners start.
  void Start(std::shared_ptr<grpc::Channel> self);
  // Cancels every open call, answers it with Unavailable "etcdserver:
  // server stopped", and waits (bounded) for their threads; new calls are
  // refused the same way. Run before Services::Shutdown (the calls' own
  // KV / Watch calls still have a server to end against). Idempotent.
  void Shutdown();

  struct Impl;
  struct All;

 private:
  // Shared with the calls' threads, so that one still unwinding after a
  // timed-out Shutdown never touches freed state.
  std::shared_ptr<Impl> impl_;
  std::unique_ptr<All> all_;
};

}  // namespace detcd::shim

#endif  // DETCD_SHIM_LOCK_ELECTION_H_
