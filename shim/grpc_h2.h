// gRPC over HTTP/2 without gRPC C++: the server side of the gRPC wire
// protocol on connections handed over by the client listener, with
// nghttp2 (Debian libnghttp2) doing HTTP/2 itself (frames, HPACK, flow
// control, SETTINGS, PING acks).
//
// Why: gRPC C++ 1.51 writes each answer with its own sendmsg from the
// thread that finishes the call, and hands every completion between its
// poller threads; at etcd's request sizes that costs more CPU than the
// engine's own work (docs/DESIGN.md, "Real server", threads). Here one
// event-loop thread owns every connection: answers finished anywhere are
// queued, the loop wakes once for all that queued meanwhile, and each
// connection gets one write for everything it has to send.
//
// The wire (gRPC's PROTOCOL-HTTP2): a request is HEADERS (:method POST,
// :path /service/Method, content-type application/grpc..., optional
// grpc-timeout and custom metadata) then DATA carrying messages, each
// prefixed by 1 byte compressed flag + 4 bytes big-endian length. The
// answer is HEADERS (:status 200, content-type application/grpc), DATA
// with the messages, and trailers (grpc-status, grpc-message
// percent-encoded); an answer with no message may be trailers only.
//
// What the server enforces, as gRPC's servers do:
//   - max_recv_message_bytes: a bigger request message ends the call with
//     RESOURCE_EXHAUSTED (grpc-go's text, as etcd answers);
//   - compressed messages (no grpc-encoding is supported): UNIMPLEMENTED;
//   - grpc-timeout: the call ends with DEADLINE_EXCEEDED when it passes;
//   - max_concurrent_streams: SETTINGS_MAX_CONCURRENT_STREAMS;
//   - keepalive: a client pinging more often than min_ping_interval_ms
//     with no call open (more than max_ping_strikes times) gets GOAWAY
//     ENHANCE_YOUR_CALM "too_many_pings"; the server pings an idle
//     connection every keepalive_ms and drops it when the ack does not
//     come within keepalive_timeout_ms;
//   - a request that is not gRPC (not POST, wrong content-type) gets
//     HTTP 405 / 415.
//
// Threads: the loop thread runs every Handler callback; Call's methods
// may be called from any thread.
#ifndef DETCD_SHIM_GRPC_H2_H_
#define DETCD_SHIM_GRPC_H2_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

namespace detcd::shim::h2 {

// gRPC status codes are absl's (the same numbers).
struct Status {
  int code = 0;
  std::string message;
};

// Request metadata: lower-case names, in arrival order, pseudo-headers
// and gRPC's reserved ones (content-type, te, grpc-timeout, ...) left out.
using Metadata = std::vector<std::pair<std::string, std::string>>;

class Server;
struct Bridge;  // grpc_h2.cc's nghttp2 callbacks

// One gRPC call (one HTTP/2 stream). Shared by the loop and the handler;
// outlives its stream while anyone holds it.
class Call {
 public:
  const std::string& method() const { return method_; }  // "/pkg.Svc/M"
  const Metadata& metadata() const { return metadata_; }
  // The first value of a metadata name, or nullptr.
  const std::string* Find(std::string_view name) const;
  // "ipv4:127.0.0.1:41234" as gRPC C++ names peers; the connection's.
  const std::string& peer() const { return peer_; }
  // The verified TLS client certificate's common name ("" if none).
  const std::string& cert_cn() const { return cert_cn_; }

  // Queues a message (any thread). False once the call is over.
  bool Write(std::string_view message) { return WriteParts(&message, 1); }
  // Queues one message made of n pieces, in order (a gather write).
  bool WriteParts(const std::string_view* parts, size_t n);
  // gRPC's message prefix: the compressed flag and the big-endian length.
  static constexpr size_t kFrameHeaderBytes = 5;
  // Queues the message that follows kFrameHeaderBytes of room at the start
  // of `framed` (the transport writes the prefix there): a message
  // serialized in place goes out without a copy.
  bool WriteFramed(std::string framed);
  // Ends the call with `s` after the queued messages (any thread; the
  // first Finish counts, later ones and those after a cancel are ignored).
  void Finish(Status s);
  // Finish with one message first: a unary answer.
  void Reply(std::string_view message) {
    if (Write(message)) Finish(Status{});
  }
  void ReplyFramed(std::string framed) {
    if (WriteFramed(std::move(framed))) Finish(Status{});
  }
  // Message bytes queued by Write and not yet handed to the socket.
  size_t pending_bytes() const {
    return pending_.load(std::memory_order_relaxed);
  }
  bool done() const { return done_.load(std::memory_order_acquire); }

 private:
  friend class Server;
  friend struct Bridge;
  Call(Server* server, uint64_t conn, int32_t stream) :
      server_(server), conn_(conn), stream_(stream) {}
  static std::shared_ptr<Call> Make(Server* server, uint64_t conn,
                                    int32_t stream);

  Server* const server_;
  const uint64_t conn_;
  const int32_t stream_;
  std::string method_;
  Metadata metadata_;
  std::string peer_;
  std::string cert_cn_;
  std::atomic<size_t> pending_{0};
  // Set by the first Finish or by the end of the stream.
  std::atomic<bool> done_{false};
};
using CallPtr = std::shared_ptr<Call>;

// What a method does with its calls; one per call, made and used on the
// loop thread.
class Handler {
 public:
  virtual ~Handler() = default;
  // Each request message, whole.
  virtual void OnMessage(std::string message) = 0;
  // The client sent its last message.
  virtual void OnHalfClose() {}
  // The call can no longer be answered: the client reset it, its deadline
  // passed, its connection closed or the server stops. Not called after
  // the call finished normally.
  virtual void OnCancel() {}
  // Everything written so far has been handed to the socket.
  virtual void OnDrained() {}
};
using HandlerFactory = std::function<std::unique_ptr<Handler>(CallPtr)>;

struct ServerOptions {
  size_t max_recv_message_bytes = 4 << 20;
  uint32_t max_concurrent_streams = UINT32_MAX;
  // HTTP/2 flow-control windows we grant the client.
  uint32_t stream_window_bytes = 1 << 20;
  uint32_t connection_window_bytes = 16 << 20;
  int64_t keepalive_ms = 2 * 3600 * 1000;  // 0: the server never pings
  int64_t keepalive_timeout_ms = 20 * 1000;
  int64_t min_ping_interval_ms = 5 * 1000;
  int max_ping_strikes = 2;
  // Calls to methods with no handler; unset: UNIMPLEMENTED.
  HandlerFactory fallback;
  // Run on the loop thread around the part of each turn that reads the
  // connections and hands over the calls (before the answers are
  // written): detcd holds the engine thread's wake-ups over it, so the
  // calls of one turn wake the engine once (EngineLoop::HoldWakes), or,
  // an idle engine, are run by this thread in after_reads
  // (EngineLoop::ReleaseWakesRunningHere): answers given meanwhile are
  // written in the same turn.
  std::function<void()> before_turn;
  std::function<void()> after_reads;
};

struct ServerStats {
  uint64_t connections = 0;  // ever added
  int open_connections = 0;
  uint64_t calls = 0;
  uint64_t writes = 0;      // socket writes (each may carry many answers)
  uint64_t wakeups = 0;     // loop wake-ups from Call methods
  uint64_t sent_by_callers = 0;  // turns taken by ReleaseAnswers
};

class Server {
 public:
  static absl::StatusOr<std::unique_ptr<Server>> Create(ServerOptions o);
  ~Server();  // Stop()
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Before Start. "/etcdserverpb.KV/Put" -> factory.
  void Register(std::string method, HandlerFactory factory);
  // Whether a method has a handler of its own (not the fallback); any
  // thread once started.
  bool Serves(std::string_view method) const {
    return methods_.find(method) != methods_.end();
  }
  void Start();
  // Takes a connected socket whose next bytes are the client's HTTP/2
  // preface (any thread). `initial` holds bytes already read from it.
  void AddConnection(int fd, std::string peer, std::string cert_cn,
                     std::string initial = "");
  // GOAWAY to every connection, cancels every call, closes the sockets and
  // joins the loop. Idempotent.
  void Stop();
  ServerStats Stats() const;

  // Between HoldAnswers and ReleaseAnswers on one thread (detcd's engine
  // batch hooks), that thread's Call writes and finishes queue without
  // waking the loop, up to kMaxHeldOps of them (more wake it as usual);
  // ReleaseAnswers then sends them itself if the loop sleeps (taking the
  // loop's turn: the answer of an idle member leaves without a thread
  // wake-up), and wakes the loop otherwise. Not nested.
  static constexpr int kMaxHeldOps = 4;
  void HoldAnswers();
  void ReleaseAnswers();

 private:
  struct Conn;
  struct Stream;
  struct Op {
    uint64_t conn = 0;
    int32_t stream = 0;
    std::string message;  // a Write's, framed
    bool finish = false;
    Status status;
  };
  explicit Server(ServerOptions o);
  friend class Call;
  friend struct Bridge;
  bool Enqueue(Op op);
  void Loop();
  void Wake();
  void RunOps(std::vector<Op>& ops);
  // Takes what Calls queued so far and runs it (the turn's holder).
  void RunQueuedOps();
  // Writes what the turn made ready on each connection marked dirty and
  // closes the broken ones.
  void FlushDirty();
  void ReadConn(Conn& c);
  void Flush(Conn& c);
  void CloseConn(uint64_t id);
  void Timers(int64_t now_ms);
  int64_t NextTimerMs(int64_t now_ms) const;

  const ServerOptions opts_;
  std::map<std::string, HandlerFactory, std::less<>> methods_;
  int epoll_fd_ = -1;
  int event_fd_ = -1;
  std::thread thread_;

  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool started_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<Op> ops_ ABSL_GUARDED_BY(mu_);
  // Connections handed over and not yet taken by the loop.
  struct NewConn {
    int fd;
    std::string peer, cert_cn, initial;
  };
  std::vector<NewConn> new_conns_ ABSL_GUARDED_BY(mu_);
  bool woken_ ABSL_GUARDED_BY(mu_) = false;

  // Held by the loop thread for its turns (all but its epoll_wait), and by
  // a thread that sends held answers in its place (ReleaseAnswers): the
  // state below is the holder's.
  absl::Mutex turn_mu_;
  uint64_t next_conn_id_ = 1;
  std::map<uint64_t, std::unique_ptr<Conn>> conns_;
  std::vector<Conn*> dirty_;
  // Calls' deadlines: when -> (connection, stream).
  std::multimap<int64_t, std::pair<uint64_t, int32_t>> deadlines_;

  mutable absl::Mutex stats_mu_;
  ServerStats stats_ ABSL_GUARDED_BY(stats_mu_);
};

// gRPC's percent-encoding of grpc-message (bytes outside 0x20..0x7e and
// '%' become %XX).
std::string PercentEncode(std::string_view s);
// grpc-timeout ("100m", "5S", ...) in ms, rounded up; -1 if malformed.
int64_t ParseGrpcTimeoutMs(std::string_view v);

}  // namespace detcd::shim::h2

#endif  // DETCD_SHIM_GRPC_H2_H_
