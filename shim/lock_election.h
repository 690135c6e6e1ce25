// etcd's Lock (v3lockpb.Lock: Lock, Unlock) and Election
// (v3electionpb.Election: Campaign, Proclaim, Leader, Observe, Resign)
// services, served on the client port as etcd 3.4 serves them.
//
// etcd implements both with its own clientv3 talking to the member itself
// and the concurrency recipes (mutex, election) on top. Here each call
// runs the client library's recipe step machines (client/recipe_core.h,
// the code detcdctl's lock and elect run too) on the engine thread against
// this member's EtcdServer (shim/recipe_run.h), with the caller's
// credentials. The semantics are therefore the recipes' (keys
// "<name>/<lease id hex>", the holder is the lowest create revision under
// "<name>/", waiters watch their predecessor's deletion, the caller's
// lease bounds everything), and errors are etcd's:
//  - a call with lease 0 gets a fresh lease of 60 s that nobody keeps
//    alive (etcd's concurrency session default), otherwise the caller's
//    lease is used and not kept alive here;
//  - an error of the inner KV / Lease requests with one of etcd's texts
//    reaches the caller with code Unknown and that text (e.g. Unknown
//    "etcdserver: requested lease not found"), as etcd's clientv3 turns
//    such errors into plain Go errors; other errors keep their code;
//  - the recipes' own errors are code Unknown too: "election: not leader",
//    "election: no leader", "\"leader\" field must be provided".
//
// Lock and Campaign wait until the lock / leadership is won, Observe
// until the caller leaves; a waiting call holds no thread (its machine, a
// watcher and a gRPC reactor). When the caller goes away (cancel,
// deadline) the call is cancelled, and a Lock or Campaign still waiting
// deletes its queue key, as etcd does.
#ifndef DETCD_SHIM_LOCK_ELECTION_H_
#define DETCD_SHIM_LOCK_ELECTION_H_

#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "shim/services.h"

namespace grpc {
class Service;
}  // namespace grpc

namespace detcd::shim {

class LockElection {
 public:
  struct Options {
    // Calls open at once; more are refused with ResourceExhausted
    // "etcdserver: too many requests" (etcd sets no bound: this one only
    // keeps memory bounded, at a few KiB per waiting call).
    size_t max_open_calls = 1 << 20;
    // Whether this member is a learner now (any thread). etcd's
    // interceptors refuse every Lock and Election call on a learner with
    // Unavailable "etcdserver: rpc not supported for learner". Unset: never.
    std::function<bool()> is_learner;
    // The verified client certificate's common name behind a gRPC peer
    // (as Services::Options'); the inner requests carry it with the
    // caller's token. Unset: none.
    std::function<std::string(const std::string& grpc_peer)> peer_common_name;
    // A native call's traffic figures (as Services::Options'). Unset: none.
    NativeCallFigures native_call_figures;
  };
  // observer (may be null) counts the calls as the other services'. loop
  // and server may be null for a LockElection that only refuses (tests).
  LockElection(Options o, EngineLoop* loop, server::EtcdServer* server,
               CallObserver* observer);
  ~LockElection();
  LockElection(const LockElection&) = delete;
  LockElection& operator=(const LockElection&) = delete;

  // The services to register with the grpc::ServerBuilder.
  std::vector<grpc::Service*> services();
  // Serves the same methods on the native transport (before s->Start).
  void RegisterNative(h2::Server* s);
  // Answers every open call with Unavailable "etcdserver: server stopped"
  // and forgets their runs; new calls are refused the same way. Run before
  // Services::Shutdown and while the engine thread still runs (the runs
  // close their watches there). Idempotent.
  void Shutdown();
  // Calls open now (any thread).
  size_t open_calls() const;

  struct Impl;
  struct All;

 private:
  std::shared_ptr<Impl> impl_;
  std::unique_ptr<All> all_;
};

}  // namespace detcd::shim

#endif  // DETCD_SHIM_LOCK_ELECTION_H_
