// The HTTP/1.1 side of the endpoints etcd serves next to gRPC on its client
// URLs (/health, /version, /metrics, the JSON gateway), on
// --listen-metrics-urls and on the peer URLs. The protocol is GNU
// libmicrohttpd's (Debian's libmicrohttpd-dev): request parsing, keep-alive,
// pipelining, chunked bodies both ways, "Expect: 100-continue", HEAD,
// trailers, the error answers for malformed requests (400), oversized header
// blocks (431), unsupported versions (505). This file adapts it to the
// handler interface below, which does not name the library.
//
// The listeners accept and sniff connections themselves (gRPC and HTTP share
// a port) and give each HTTP connection to ServeHttpConnection, which hands
// the socket to one process-wide libmicrohttpd daemon per set of limits
// (thread-per-connection mode, so that handlers may block, as Go's do) and
// waits until the library is done with it. TLS connections, and ones whose
// first bytes were already read, reach the library through a socketpair,
// with the calling thread copying bytes (the library's TLS would be GnuTLS,
// and the server's TLS is OpenSSL's, with its rotation and CN checks).
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
  // The host the request names, as Go's Request.Host: the authority of an
  // absolute-form target, else the Host header field ("" when neither).
  std::string host;
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
  // Request line + header fields (Go's http.DefaultMaxHeaderBytes): the
  // library's per-connection memory pool is sized from it, and a header
  // block that does not fit gets 431.
  size_t max_header_bytes = 1 << 20;
  // Whole request: header and body; more gets 413 (at once when
  // Content-Length says so, before any "100 Continue").
  size_t max_request_bytes = 4 << 20;
  // How long a connection may go without receiving or sending while no
  // request is being handled (whole seconds; at least 1 s). A handler or a
  // streamed answer may take as long as it needs.
  int idle_timeout_ms = 120'000;
  // Kept for callers; the library has one inactivity timeout, which
  // idle_timeout_ms sets, so a slow request is bounded by that instead.
  int request_timeout_ms = 30'000;
};

// The standard reason phrase ("OK", "Not Found", ...; "Unknown" otherwise).
std::string_view HttpReason(int status);

// Monotonic milliseconds, and a poll for readability until such a deadline
// (false on timeout or a poll error); shared by the listeners.
int64_t NowMs();
bool WaitReadable(int fd, int64_t deadline_ms);

// --host-whitelist (etcd's defence against DNS rebinding, CVE-2018-5702).
// The host name of a request's host as Go's httputil.GetHostname gives it:
// without the port ("[::1]:2379" -> "::1"), as is when it has none.
std::string HttpHostname(std::string_view host);
// True when `whitelist` accepts `hostname`: an empty list or one holding
// "*" accepts any, as etcd's AccessController.
bool HostWhitelisted(const std::vector<std::string>& whitelist,
                     std::string_view hostname);
// etcd's answer to a plain-HTTP request whose host is not whitelisted:
// 421 with Go's http.Error shape and etcd's text naming the host.
HttpResponse HostRejectedResponse(std::string_view hostname);
// Wraps `handler` so that requests whose host `whitelist` does not accept
// get HostRejectedResponse; `on_reject` (may be empty) hears the host name.
// Only for plain-HTTP connections: etcd accepts any host over TLS.
HttpHandler HostWhitelistHandler(
    std::vector<std::string> whitelist, HttpHandler handler,
    std::function<void(const std::string& hostname)> on_reject);

// Serves requests on `stream` until the client closes, asks to close, sends
// a malformed request, times out, or the stream is shut down from another
// thread; returns after every streamed answer's `stream` has returned.
// `initial` holds bytes already read from the stream. plain_socket: the
// stream is a PlainStream over a socket, so the library gets (a duplicate
// of) its descriptor instead of a pump. Returns the number of requests given
// to the handler (the library's own error answers are not counted).
int ServeHttpConnection(Stream& stream, std::string initial,
                        const HttpHandler& handler, const HttpLimits& limits,
                        bool plain_socket = false);

}  // namespace detcd::shim

#endif  // DETCD_SHIM_HTTP_H_
