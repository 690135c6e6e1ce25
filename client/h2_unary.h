// gRPC unary calls over one plain-text HTTP/2 connection with nghttp2
// (Debian libnghttp2, as the server's shim/grpc_h2), for callers that
// drive many calls from one thread and want little CPU per call: the
// load generator (detcd-bench). One thread owns a connection and all its
// calls: Start queues a call, PollAll does the socket I/O and runs the
// calls' Done callbacks. No TLS, no retries, no fail-over: the Client
// (client.h) is the client for everything else.
//
// The wire is gRPC's PROTOCOL-HTTP2: HEADERS (:method POST, :scheme http,
// :path /service/Method, content-type application/grpc, te trailers,
// optional grpc-timeout and metadata), one DATA message with its 5-byte
// prefix (uncompressed flag, big-endian length); the answer is HEADERS,
// the message, and trailers with grpc-status and a percent-encoded
// grpc-message (or trailers only).
#ifndef DETCD_CLIENT_H2_UNARY_H_
#define DETCD_CLIENT_H2_UNARY_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace detcd::client {

class H2UnaryConn {
 public:
  // The answer's message (without its prefix) when the status is OK.
  using Done = std::function<void(absl::Status, std::string_view message)>;

  // Connects to host:port (an "http://" prefix is allowed) within
  // timeout. metadata goes on every call (lower-case names).
  static absl::StatusOr<std::unique_ptr<H2UnaryConn>> Dial(
      std::string_view endpoint, absl::Duration timeout,
      std::vector<std::pair<std::string, std::string>> metadata = {});
  // Over a socket already connected to a gRPC server (taken over, closed
  // with the connection); `authority` goes in each call's :authority.
  static absl::StatusOr<std::unique_ptr<H2UnaryConn>> FromFd(
      int fd, std::string authority,
      std::vector<std::pair<std::string, std::string>> metadata = {});
  ~H2UnaryConn();
  H2UnaryConn(const H2UnaryConn&) = delete;
  H2UnaryConn& operator=(const H2UnaryConn&) = delete;

  // Queues a call of method path ("/etcdserverpb.KV/Put") with the
  // serialized request; timeout > 0 is sent as grpc-timeout; call_metadata
  // goes on this call only. done runs from a later PollAll (or from
  // Start, with an error, if the connection is already broken).
  void Start(std::string_view path, std::string request, absl::Duration timeout,
             Done done,
             const std::vector<std::pair<std::string, std::string>>&
                 call_metadata = {});

  // For every connection: sends what is queued; then waits up to
  // timeout until one of them can read (or write what the socket did not
  // take), reads and runs the Done callbacks of the calls that ended. A
  // connection that breaks ends each of its open calls with the error
  // (broken() from then on).
  static void PollAll(const std::vector<H2UnaryConn*>& conns,
                      absl::Duration timeout);

  // Calls started and not yet done.
  size_t open_calls() const;
  // The connection failed; its calls fail at once.
  bool broken() const;

 private:
  struct Impl;
  explicit H2UnaryConn(std::unique_ptr<Impl> impl);
  // Starts the HTTP/2 session on impl's connected socket.
  static absl::StatusOr<std::unique_ptr<H2UnaryConn>> Open(
      std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Decodes grpc-message's percent-encoding (%XX; anything else as is).
std::string PercentDecode(std::string_view s);

}  // namespace detcd::client

#endif  // DETCD_CLIENT_H2_UNARY_H_
