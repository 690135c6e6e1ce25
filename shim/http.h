// A small HTTP/1.1 server for the endpoints etcd serves next to gRPC on its
// client URLs (/health, /version, /metrics, the JSON gateway) and on
// --listen-metrics-urls. It serves one connection on the calling thread: the
// client listener decides which connections are HTTP/1.1 and gives each one
// a thread.
//
// What it accepts (RFC 9112, the parts curl, Prometheus, probes and Go's
// net/http client use): request line "METHOD target HTTP/1.x", header
// fields, a body framed by Content-Length or chunked Transfer-Encoding,
// keep-alive (HTTP/1.1 by default, HTTP/1.0 with "Connection: keep-alive"),
// pipelined requests, "Expect: 100-continue". Anything malformed gets a 400
// and the connection is closed; oversized headers get 431, oversized bodies
// 413, unknown transfer codings 501, other protocol versions 505.
#ifndef DETCD_SHIM_HTTP_H_
#define DETCD_SHIM_HTTP_H_

#include <cstddef>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "shim/tls.h"

namespace detcd::shim {

struct HttpRequest {
  std::string method;  // as sent, e.g. "GET"
  std::string path;    // the target before '?', not percent-decoded
  std::string query;   // after '?', without it; "" when none
  // Lower-case names; repeated fields are joined with ", ".
  std::map<std::string, std::string> headers;
  std::string body;  // de-chunked
  // The verified client certificate's common name on TLS connections ("" on
  // plain ones or without a client certificate).
  std::string peer_common_name;
  // False for HTTP/1.0 requests.
  bool http11 = true;
  // Set by ServeHttpConnection: true once the client has closed its side of
  // the connection (a handler that waits long, e.g. for a lock, gives up
  // then, as Go's request context is cancelled). Cheap, never blocks.
  std::function<bool()> client_gone;
};

// Writes a streamed response body (HttpResponse::stream).
class HttpBodyWriter {
 public:
  virtual ~HttpBodyWriter() = default;
  // The status sent with the head; only before the first Write.
  virtual void SetStatus(int status) = 0;
  // Sends the head first if not yet sent, then `data` at once (one chunk).
  // False once the client is gone; every later Write fails too.
  virtual bool Write(std::string_view data) = 0;
  // True once the head has been sent.
  virtual bool started() const = 0;
};

struct HttpResponse {
  int status = 200;
  // Sent as Content-Type unless empty.
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
  // Extra header fields, sent as given. Content-Length, Date and Connection
  // are always written by the server.
  std::vector<std::pair<std::string, std::string>> headers;
  // Trailer fields: when any, the body is sent chunked and these follow the
  // last chunk (HTTP/1.1 only; dropped for HTTP/1.0 clients). Announcing
  // them in a "Trailer" header field is up to the handler.
  std::vector<std::pair<std::string, std::string>> trailers;
  // A streamed body (server streams of the JSON gateway): when set, `body`
  // is ignored and the server calls `stream` on the connection thread. The
  // head (with "Transfer-Encoding: chunked" for HTTP/1.1; HTTP/1.0 clients
  // get the bytes as they come and the connection closes after them) goes
  // out with the first Write, or when `stream` returns without writing;
  // the body ends when `stream` returns.
  std::function<void(HttpBodyWriter&)> stream;
};

// Called on connection threads, concurrently: must be thread-safe.
using HttpHandler = std::function<HttpResponse(const HttpRequest&)>;

struct HttpLimits {
  // Request line + header fields (Go's http.DefaultMaxHeaderBytes).
  size_t max_header_bytes = 1 << 20;
  // Whole request: header and body.
  size_t max_request_bytes = 4 << 20;
  // How long a keep-alive connection may sit idle between requests, and how
  // long a started request may take to arrive in full.
  int idle_timeout_ms = 120'000;
  int request_timeout_ms = 30'000;
};

// Incremental request parsing, exposed for tests.
enum class HttpParse {
  kComplete,    // *req filled, *consumed bytes used
  kIncomplete,  // need more bytes
  kBad,         // *error_status says which error to answer (400, 413, ...)
};
// Parses one request from the front of `buf`. On kComplete, *keep_alive says
// whether the connection may carry another request; *expect_continue (set
// also on kIncomplete once the header is complete) says the client waits for
// "100 Continue" before sending its body.
HttpParse ParseHttpRequest(std::string_view buf, const HttpLimits& limits,
                           HttpRequest* req, size_t* consumed,
                           bool* keep_alive, bool* expect_continue,
                           int* error_status);

// The wire form of a response. head: omit the body (HEAD requests).
std::string SerializeHttpResponse(const HttpResponse& r, bool head,
                                  bool keep_alive);

// The standard reason phrase ("OK", "Not Found", ...; "Unknown" otherwise).
std::string_view HttpReason(int status);

// Monotonic milliseconds, and a poll for readability until such a deadline
// (false on timeout or a poll error); shared by the listeners.
int64_t NowMs();
bool WaitReadable(int fd, int64_t deadline_ms);

// Serves requests on `stream` until the client closes, asks to close, sends
// a malformed request, times out, or the stream is shut down from another
// thread. `initial` holds bytes already read from the stream. Returns the
// number of requests answered (with the handler or with an error status).
int ServeHttpConnection(Stream& stream, std::string initial,
                        const HttpHandler& handler, const HttpLimits& limits);

}  // namespace detcd::shim

#endif  // DETCD_SHIM_HTTP_H_
