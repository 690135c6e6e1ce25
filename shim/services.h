// etcd's v3 gRPC services (etcdserverpb KV, Watch, Lease, Cluster,
// Maintenance, Auth) over one EtcdServer, with gRPC's callback API. Each
// call's credentials (the "token" metadata, the client certificate's CN)
// go to the engine with it (EtcdServer::CallerScope); authorization is the
// engine's.
//
// Thin by design: every handler posts the request to the engine thread
// (EngineLoop) and answers from the completion callback; request checks,
// limits, errors and their texts are the engine's (EtcdServer and
// engine/server/errors.h). What lives here is only what belongs to the
// transport: stream bookkeeping, flow control on streams, converting the
// watch hub's responses to protobuf, and chunking the snapshot stream.
//
// No gRPC thread ever waits for the engine. A call still open when the
// server stops is answered with etcd's "server stopped" error.
#ifndef DETCD_SHIM_SERVICES_H_
#define DETCD_SHIM_SERVICES_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "engine/server/etcd_server.h"
#include "etcdserverpb/rpc.grpc.pb.h"
#include "shim/engine_loop.h"
#include "shim/grpc_h2.h"
#include "shim/server_metrics.h"

namespace detcd::shim {

// Counts handled calls (grpc_server_handled_total and friends).
struct CallObserver {
  virtual ~CallObserver() = default;
  virtual void OnStarted(const char* service, const char* method,
                         const char* type) {}
  virtual void OnHandled(const char* service, const char* method,
                         const char* type, int code) {}
};

// A gRPC C++ call's credentials (gRPC thread): etcd's "token" metadata
// (or the gateway's "authorization") and the TLS client certificate's CN
// (peer_common_name, ClientListener::PeerCommonName; for a call relayed
// by the native transport, the CN it verified).
server::Caller GrpcCaller(
    const grpc::CallbackServerContext* ctx,
    const std::function<std::string(const std::string&)>& peer_common_name);

// The same for a call on the native transport (shim/grpc_h2).
server::Caller NativeCaller(const h2::Call& call);

// A native call's traffic figures (GrpcTrafficMetrics::NewCall; type:
// grpc_type, "unary", "bidi_stream", ...).
using NativeCallFigures = std::function<std::unique_ptr<CallFigures>(
    std::string_view full_method, const char* type)>;
// make's figures for the call, started with its client-api-version (null
// without make).
std::unique_ptr<CallFigures> StartNativeFigures(const NativeCallFigures& make,
                                                const h2::Call& call,
                                                const char* type);

class Services {
 public:
  struct Options {
    // Responses a watch stream may have queued for a slow reader before
    // the hub is told to hold back (it then catches up from history).
    size_t max_watch_responses_queued = 1024;
    // And their encoded bytes: a response that would pass this is refused
    // the same way, unless the queue is empty (one response always fits).
    // So a client that opens watch streams and never reads holds at most
    // about this much (plus the one response gRPC is writing) per stream,
    // however much traffic its watchers match.
    size_t max_watch_bytes_queued = 2 << 20;
    // Pieces of the Snapshot stream (etcd sends 32 KiB pieces).
    size_t snapshot_chunk_bytes = 32 * 1024;
    // Whether this member is a learner now (any thread; etcd refuses every
    // stream on a learner). Unset: never.
    std::function<bool()> is_learner;
    // The verified client certificate's common name behind a gRPC peer
    // (ClientListener::PeerCommonName; any thread). Unset: none. Calls
    // carry it with their "token" metadata to the engine (server::Caller).
    std::function<std::string(const std::string& grpc_peer)> peer_common_name;
    // A call's traffic figures on the native transport
    // (GrpcTrafficMetrics::NewCall; gRPC C++'s calls get theirs from the
    // interceptor). type: grpc_type ("unary", "bidi_stream"). Unset: none.
    NativeCallFigures native_call_figures;
  };
  Services(EngineLoop* loop, server::EtcdServer* server, Options o,
           CallObserver* observer);
  ~Services();

  // The services to register with a grpc::ServerBuilder.
  std::vector<grpc::Service*> services();
  // The methods served natively on shim/grpc_h2 (every unary one and
  // LeaseKeepAlive; the other streams reach the grpc::Server through the
  // transport's fallback).
  // Before s->Start.
  void RegisterNative(h2::Server* s);
  // Answers every call still open with "server stopped" and closes the
  // streams; run before grpc::Server::Shutdown.
  void Shutdown();
  // Events queued in watch streams' send buffers and not yet written (any
  // thread).
  int64_t pending_watch_events() const;
  // Unary calls (gRPC C++'s and native) not answered yet (any thread).
  int64_t unary_calls_open() const;

  struct Impl;
  struct All;

 private:
  std::unique_ptr<Impl> impl_;
  std::unique_ptr<All> all_;
};

}  // namespace detcd::shim

#endif  // DETCD_SHIM_SERVICES_H_
