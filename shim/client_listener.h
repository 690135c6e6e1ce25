// The client-side listeners of the real server: gRPC and HTTP/1.1 on the
// same port, with or without TLS, as etcd multiplexes them (curl, probes and
// Prometheus use the port etcdctl uses).
//
// The server owner builds a grpc::Server with no listening ports and hands
// it over; this class owns the sockets. One thread per URL accepts; each
// accepted connection gets a thread that looks at its first bytes:
//   - plain, HTTP/2 client preface -> handed to gRPC as is
//     (grpc::AddInsecureChannelFromFd); gRPC owns the fd from then on;
//   - plain, anything else -> HTTP/1.1 (ServeHttpConnection) on that thread;
//   - TLS: handshake with ALPN (HTTP/1.1 preferred when the client offers
//     it, as curl does; gRPC clients offer only h2); ALPN h2 or an h2 preface ->
//     gRPC over one end of a socketpair, with this connection's thread and
//     one more pumping bytes between the TLS stream and the other end;
//     otherwise HTTP/1.1 over the TLS stream.
// A connection that sends nothing is dropped after sniff_timeout_ms; one
// that fails the handshake or sends garbage is closed; neither holds up
// other connections.
#ifndef DETCD_SHIM_CLIENT_LISTENER_H_
#define DETCD_SHIM_CLIENT_LISTENER_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "shim/http.h"
#include "shim/tls.h"

namespace grpc {
class Server;
}
namespace detcd::shim::h2 {
class Server;
}

namespace detcd::shim {

struct ClientListenerOptions {
  // "http://127.0.0.1:2379", "https://localhost:2379", "http://[::1]:0",
  // "unix://localhost:2379", "unixs://x:1".
  // Host names are resolved once at Create (the first address is bound);
  // an empty host or 0.0.0.0 binds every IPv4 address. unix / unixs listen
  // on a unix socket whose file name is the URL's "host:port" text, relative
  // to the working directory, as etcd's (unixs: TLS over it). As with Go's
  // net.Listen, an existing file there is an error ("bind: address already
  // in use") and the file is removed when the listener goes.
  std::vector<std::string> urls;
  TlsFiles tls;  // used by https URLs
  // Connections we serve at once (HTTP/1.1, TLS pumps, connections still
  // being sniffed). Accepting pauses at the limit, as etcd's LimitListener
  // does. Plain gRPC connections leave the count once handed to gRPC.
  int max_connections = 4096;
  size_t max_http_request_bytes = 4 << 20;
  // How long a new connection may take to send its first bytes (and, with
  // TLS, to finish its handshake) before it is closed.
  int sniff_timeout_ms = 10'000;
  int http_idle_timeout_ms = 120'000;
  // --host-whitelist: host names accepted on plain-HTTP requests (TLS ones
  // are not checked, as etcd's); empty or holding "*" accepts any. Others
  // get etcd's 421, and on_host_rejected (may be empty) hears the name.
  std::vector<std::string> host_whitelist;
  std::function<void(const std::string& hostname)> on_host_rejected;
  // Called (from any thread) with one line about a rejected connection,
  // e.g. a failed TLS handshake. May be empty.
  std::function<void(const std::string&)> log_warning;
  // A refused TLS connection, with what etcd's "rejected connection"
  // warning carries (remote address, SNI, the certificate's SANs when it
  // got that far, the reason). When set, it replaces log_warning for these.
  std::function<void(const HandshakeInfo& info, const std::string& error)>
      on_rejected;
  // When set, gRPC connections (plain, and TLS through the pump) go to
  // this server (shim/grpc_h2) instead of the grpc::Server, with the
  // client's address and certificate CN. Must outlive this object.
  h2::Server* grpc_h2 = nullptr;
};

// Counters for tests and metrics.
struct ClientListenerStats {
  uint64_t accepted = 0;
  uint64_t grpc_connections = 0;  // handed to gRPC (plain or TLS)
  uint64_t http_connections = 0;
  // Closed before being served: silent past sniff_timeout_ms, or a failed
  // TLS handshake.
  uint64_t rejected = 0;
  int open = 0;           // connections this class serves now
};

class ClientListener {
 public:
  // Binds every URL now, so that bind errors come back at once, with etcd's
  // text ("listen tcp 127.0.0.1:2379: bind: address already in use").
  // server == nullptr: HTTP/1.1 only (--listen-metrics-urls). The server
  // must outlive this object; `http` must be thread-safe.
  static absl::StatusOr<std::unique_ptr<ClientListener>> Create(
      const ClientListenerOptions& options, grpc::Server* server,
      HttpHandler http);

  ~ClientListener();  // Stop()
  ClientListener(const ClientListener&) = delete;
  ClientListener& operator=(const ClientListener&) = delete;

  // Starts accepting on every URL.
  void Start();
  // Closes the listening sockets and every connection this class serves,
  // and joins its threads. Connections handed to gRPC stay with gRPC: they
  // end with the owner's server->Shutdown(), which should come after Stop()
  // (so that no connection is handed to a server that is shutting down).
  // Idempotent.
  void Stop();

  // The verified client certificate's common name of the TLS connection
  // behind a gRPC call, from its grpc::ServerContext::peer() ("fd:N" for
  // connections handed over by this class); "" when there is none. Valid
  // while the call runs. (HTTP handlers get it in HttpRequest.)
  std::string PeerCommonName(const std::string& grpc_peer) const;

  // Bound ports, in URL order (resolves port 0; 0 for unix sockets).
  std::vector<int> Ports() const;
  ClientListenerStats Stats() const;

 private:
  struct Endpoint;
  struct Conn;

  ClientListener(const ClientListenerOptions& options, grpc::Server* server,
                 HttpHandler http);
  void AcceptLoop(Endpoint* ep);
  // Owns fd.
  void ServeConn(Conn* conn, int fd, bool tls);
  // The HTTP/2 preface check on a plain socket: returns 1 = h2, 0 = other,
  // -1 = nothing arrived in time / closed.
  int SniffPlain(int fd);
  // peer: the client's address; cn: its certificate's common name.
  void HandToGrpc(int fd, const std::string& peer, const std::string& cn);
  // gRPC over TLS: hands one end of a socketpair to gRPC and copies bytes
  // between the stream and the other end until either side ends.
  void PumpTls(std::unique_ptr<Stream> stream, std::string initial,
               const std::string& peer);
  // tls: the stream is a TLS stream (no host whitelist; pumped into the
  // HTTP library rather than handed over as a socket).
  void ServeHttp(std::unique_ptr<Stream> stream, std::string initial, bool tls);
  void Warn(const std::string& line);
  // Joins connection threads that have finished.
  void ReapLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const ClientListenerOptions options_;
  grpc::Server* const server_;
  HttpHandler http_;
  // http_ behind the host whitelist, for plain-HTTP connections.
  HttpHandler plain_http_;
  HttpLimits http_limits_;
  std::shared_ptr<TlsContext> tls_;
  std::vector<std::unique_ptr<Endpoint>> endpoints_;
  // Stop() writes to it to wake the accept loops.
  int wake_pipe_[2] = {-1, -1};

  mutable absl::Mutex mu_;
  bool started_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t next_conn_id_ ABSL_GUARDED_BY(mu_) = 1;
  std::map<uint64_t, std::unique_ptr<Conn>> conns_ ABSL_GUARDED_BY(mu_);
  std::vector<std::unique_ptr<Conn>> finished_ ABSL_GUARDED_BY(mu_);
  ClientListenerStats stats_ ABSL_GUARDED_BY(mu_);

  // gRPC peer ("fd:N") -> (pump id, client certificate CN). The id keeps a
  // finished pump from erasing the entry of a newer connection that got
  // the same descriptor number.
  mutable absl::Mutex peers_mu_;
  uint64_t next_pump_id_ ABSL_GUARDED_BY(peers_mu_) = 1;
  std::map<std::string, std::pair<uint64_t, std::string>> peer_cn_
      ABSL_GUARDED_BY(peers_mu_);
};

}  // namespace detcd::shim

#endif  // DETCD_SHIM_CLIENT_LISTENER_H_
