#include "shim/http.h"

#include <fcntl.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <deque>
#include <map>
#include <memory>
#include <thread>
#include <tuple>

#include "absl/base/thread_annotations.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace detcd::shim {
namespace {

// How long a blocked wait inside a library callback sleeps before it looks
// whether the client is still there (the library cannot notice while its
// connection thread is inside our callback).
constexpr absl::Duration kClientCheck = absl::Milliseconds(200);
// A streamed answer's writer waits while this much is still unsent, as a
// blocking socket write would.
constexpr size_t kMaxUnsentStreamBytes = 1 << 20;

// True once the client has shut down its sending side or the connection
// broke. POLLRDHUP alone does not report pending request bytes (a pipelined
// request), only the end of the stream.
bool PeerClosed(int fd) {
  pollfd p{fd, POLLRDHUP, 0};
  if (::poll(&p, 1, 0) <= 0) return false;
  return (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL)) != 0;
}

bool SendAll(int fd, const char* p, size_t n) {
  while (n > 0) {
    ssize_t w = ::send(fd, p, n, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    p += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

// One connection handed to the library; lives in ServeHttpConnection's
// frame until the library has closed it and its streams have ended.
struct Connection {
  const HttpHandler* handler = nullptr;
  size_t max_request_bytes = 0;
  size_t max_header_bytes = 0;
  unsigned idle_timeout_s = 0;
  std::string peer_cn;
  int fd = -1;  // the library's socket (for the client_gone poll)

  absl::Mutex mu;
  bool closed ABSL_GUARDED_BY(mu) = false;  // the library let go of it
  int served ABSL_GUARDED_BY(mu) = 0;
  std::vector<std::thread> streams ABSL_GUARDED_BY(mu);

  bool Gone() {
    {
      absl::MutexLock lock(&mu);
      if (closed) return true;
    }
    return PeerClosed(fd);
  }
};

// One request, from its request line (the library's URI log callback) to
// its end (the completion callback).
struct Request {
  std::string uri;  // the raw request target
  HttpRequest req;
  bool started = false;   // the header has been seen
  bool queued = false;    // an answer is queued
  int error_status = 0;   // answer this instead of calling the handler
  const char* error_detail = nullptr;  // Go's badRequestError text, if any
  int host_headers = 0;                // Host header lines seen
  size_t body_limit = 0;  // bytes of body allowed
  size_t discarded = 0;   // body bytes dropped after error_status
};

// A streamed body between the thread that runs HttpResponse::stream and the
// library's connection thread, which pulls it.
class StreamPipe : public HttpBodyWriter {
 public:
  StreamPipe(int status, int fd) : status_(status), fd_(fd) {}

  void SetStatus(int status) override {
    absl::MutexLock lock(&mu_);
    if (!started_) status_ = status;
  }
  bool started() const override {
    absl::MutexLock lock(&mu_);
    return started_;
  }
  bool Write(std::string_view data) override {
    absl::MutexLock lock(&mu_);
    if (closed_) return false;
    started_ = true;
    if (!data.empty()) {
      // Each Write stays one chunk on the wire, as a flush in Go.
      parts_.emplace_back(data.data(), data.size());
      unsent_ += data.size();
    }
    cv_.SignalAll();
    while (!closed_ && unsent_ > kMaxUnsentStreamBytes) {
      cv_.WaitWithTimeout(&mu_, kClientCheck);
    }
    return !closed_;
  }

  // The stream function returned.
  void Finish() {
    absl::MutexLock lock(&mu_);
    finished_ = true;
    started_ = true;
    cv_.SignalAll();
  }
  // The library dropped the answer (sent, or the connection ended).
  void Close() {
    absl::MutexLock lock(&mu_);
    closed_ = true;
    cv_.SignalAll();
  }

  // Waits for the head's status: the first Write, or the end of the
  // stream. False when the client left first.
  bool WaitForHead(int* status) {
    absl::MutexLock lock(&mu_);
    while (!started_) {
      if (cv_.WaitWithTimeout(&mu_, kClientCheck) && !started_ &&
          PeerClosed(fd_)) {
        closed_ = true;
        cv_.SignalAll();
        return false;
      }
    }
    *status = status_;
    return true;
  }

  // The library's content reader: blocks (the connection has its own
  // thread) until there are bytes, the end, or the client is gone.
  ssize_t Read(char* out, size_t max) {
    absl::MutexLock lock(&mu_);
    while (true) {
      if (!parts_.empty()) {
        const std::string& front = parts_.front();
        size_t n = std::min(max, front.size() - off_);
        std::memcpy(out, front.data() + off_, n);
        off_ += n;
        unsent_ -= n;
        if (off_ == front.size()) {
          parts_.pop_front();
          off_ = 0;
        }
        cv_.SignalAll();
        return static_cast<ssize_t>(n);
      }
      if (finished_) return MHD_CONTENT_READER_END_OF_STREAM;
      if (closed_) return MHD_CONTENT_READER_END_WITH_ERROR;
      if (cv_.WaitWithTimeout(&mu_, kClientCheck) && parts_.empty() &&
          !finished_ && PeerClosed(fd_)) {
        closed_ = true;
        cv_.SignalAll();
        return MHD_CONTENT_READER_END_WITH_ERROR;
      }
    }
  }

 private:
  mutable absl::Mutex mu_;
  absl::CondVar cv_;
  int status_ ABSL_GUARDED_BY(mu_);
  const int fd_;
  bool started_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  // Written, not yet sent: one entry per Write; off_ into the first.
  std::deque<std::string> parts_ ABSL_GUARDED_BY(mu_);
  size_t off_ ABSL_GUARDED_BY(mu_) = 0;
  size_t unsent_ ABSL_GUARDED_BY(mu_) = 0;
};

ssize_t ReadPipe(void* cls, uint64_t, char* buf, size_t max) {
  return (*static_cast<std::shared_ptr<StreamPipe>*>(cls))->Read(buf, max);
}
void FreePipe(void* cls) {
  auto* p = static_cast<std::shared_ptr<StreamPipe>*>(cls);
  (*p)->Close();
  delete p;
}

// A fixed body sent chunked, so that trailers can follow it.
struct ChunkedBody {
  std::string data;
  size_t off = 0;
};
ssize_t ReadChunked(void* cls, uint64_t, char* buf, size_t max) {
  auto* b = static_cast<ChunkedBody*>(cls);
  if (b->off >= b->data.size()) return MHD_CONTENT_READER_END_OF_STREAM;
  size_t n = std::min(max, b->data.size() - b->off);
  std::memcpy(buf, b->data.data() + b->off, n);
  b->off += n;
  return static_cast<ssize_t>(n);
}
void FreeChunked(void* cls) { delete static_cast<ChunkedBody*>(cls); }
void FreeString(void* cls) { delete static_cast<std::string*>(cls); }

MHD_Result CollectHeader(void* cls, MHD_ValueKind, const char* key,
                         const char* value) {
  auto* r = static_cast<Request*>(cls);
  std::string name = absl::AsciiStrToLower(key);
  const char* v = value == nullptr ? "" : value;
  if (name == "host") ++r->host_headers;
  auto [it, inserted] = r->req.headers.try_emplace(std::move(name), v);
  if (!inserted) absl::StrAppend(&it->second, ", ", v);
  return MHD_YES;
}

// Fills r->req from the request line and the header.
void ParseHead(Request* r, MHD_Connection* c, const char* method,
               const char* version, Connection* conn) {
  HttpRequest& req = r->req;
  req.method = method;
  req.http11 = std::strcmp(version, MHD_HTTP_VERSION_1_0) != 0;
  MHD_get_connection_values(c, MHD_HEADER_KIND, CollectHeader, r);
  // Targets in absolute form (proxies' style) name the host themselves.
  std::string_view target = r->uri;
  if (!target.empty() && target[0] != '/') {
    size_t scheme_end = target.find("://");
    if (scheme_end != std::string_view::npos) {
      size_t slash = target.find('/', scheme_end + 3);
      std::string_view authority =
          target.substr(scheme_end + 3, slash == std::string_view::npos
                                            ? std::string_view::npos
                                            : slash - scheme_end - 3);
      req.host = std::string(authority.substr(0, authority.find('?')));
      target = slash == std::string_view::npos ? std::string_view("/")
                                               : target.substr(slash);
    }
  }
  if (req.host.empty()) {
    auto it = req.headers.find("host");
    if (it != req.headers.end()) req.host = it->second;
  }
  size_t q = target.find('?');
  req.path = std::string(target.substr(0, q));
  req.query = q == std::string_view::npos ? std::string()
                                          : std::string(target.substr(q + 1));
  req.peer_common_name = conn->peer_cn;
  req.client_gone = [conn] { return conn->Gone(); };
  size_t header_bytes = r->uri.size() + req.method.size() + 12;
  for (const auto& [k, v] : req.headers)
    header_bytes += k.size() + v.size() + 4;
  r->body_limit = conn->max_request_bytes > header_bytes
                      ? conn->max_request_bytes - header_bytes
                      : 0;
  auto cl = req.headers.find("content-length");
  uint64_t length = 0;
  if (r->host_headers > 1) {
    // Go's net/http refuses these before any handler sees them.
    r->error_status = 400;
    r->error_detail = "too many Host headers";
  } else if (req.http11 && r->host_headers == 0) {
    r->error_status = 400;
    r->error_detail = "missing required Host header";
  } else if (header_bytes > conn->max_header_bytes) {
    // The pool only bounds it roughly (it also holds the buffers).
    r->error_status = 431;
  } else if (cl != req.headers.end() && absl::SimpleAtoi(cl->second, &length) &&
             length > r->body_limit) {
    r->error_status = 413;
  }
}

bool Bodyless(int status) {
  return status < 200 || status == 204 || status == 304;
}

void AddHeaders(MHD_Response* m, const HttpResponse& resp) {
  if (!resp.content_type.empty() && !Bodyless(resp.status)) {
    MHD_add_response_header(m, MHD_HTTP_HEADER_CONTENT_TYPE,
                            resp.content_type.c_str());
  }
  for (const auto& [name, value] : resp.headers) {
    MHD_add_response_header(m, name.c_str(), value.c_str());
  }
}

MHD_Result Queue(MHD_Connection* c, int status, MHD_Response* m) {
  if (m == nullptr) return MHD_NO;
  MHD_Result ret = MHD_queue_response(c, static_cast<unsigned>(status), m);
  MHD_destroy_response(m);
  return ret;
}

// Go's http.Error shape for the answers this file makes itself ("400 Bad
// Request: missing required Host header" with a detail, as Go's server).
MHD_Result QueueError(MHD_Connection* c, int status,
                      const char* detail = nullptr) {
  auto* body = new std::string(
      absl::StrCat(status, " ", std::string(HttpReason(status))));
  if (detail != nullptr) absl::StrAppend(body, ": ", detail);
  MHD_Response* m = MHD_create_response_from_buffer_with_free_callback_cls(
      body->size(), body->data(), FreeString, body);
  if (m == nullptr) {
    delete body;
    return MHD_NO;
  }
  MHD_add_response_header(m, MHD_HTTP_HEADER_CONTENT_TYPE,
                          "text/plain; charset=utf-8");
  MHD_add_response_header(m, MHD_HTTP_HEADER_CONNECTION, "close");
  return Queue(c, status, m);
}

// Runs the handler and queues its answer.
MHD_Result Respond(Connection* conn, MHD_Connection* c, Request* r) {
  HttpResponse resp = (*conn->handler)(r->req);
  {
    absl::MutexLock lock(&conn->mu);
    ++conn->served;
  }
  if (resp.stream) {
    auto pipe = std::make_shared<StreamPipe>(resp.status, conn->fd);
    std::thread t([pipe, fn = std::move(resp.stream)] {
      fn(*pipe);
      pipe->Finish();
    });
    {
      absl::MutexLock lock(&conn->mu);
      conn->streams.push_back(std::move(t));
    }
    int status = 0;
    if (!pipe->WaitForHead(&status)) return MHD_NO;
    auto* cls = new std::shared_ptr<StreamPipe>(pipe);
    // Unknown size: chunked for HTTP/1.1, the end of the connection ends the
    // body for HTTP/1.0.
    MHD_Response* m = MHD_create_response_from_callback(
        MHD_SIZE_UNKNOWN, 64 * 1024, ReadPipe, cls, FreePipe);
    if (m == nullptr) {
      FreePipe(cls);
      return MHD_NO;
    }
    resp.status = status;
    AddHeaders(m, resp);
    return Queue(c, status, m);
  }
  MHD_Response* m;
  if (!resp.trailers.empty() && r->req.http11 && !Bodyless(resp.status)) {
    auto* body = new ChunkedBody{std::move(resp.body)};
    m = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 64 * 1024,
                                          ReadChunked, body, FreeChunked);
    if (m == nullptr) {
      delete body;
      return MHD_NO;
    }
    for (const auto& [name, value] : resp.trailers) {
      MHD_add_response_footer(m, name.c_str(), value.c_str());
    }
  } else {
    auto* body = new std::string(std::move(resp.body));
    m = MHD_create_response_from_buffer_with_free_callback_cls(
        body->size(), body->data(), FreeString, body);
    if (m == nullptr) {
      delete body;
      return MHD_NO;
    }
  }
  AddHeaders(m, resp);
  return Queue(c, resp.status, m);
}

// One libmicrohttpd daemon: no listening socket, a thread per connection.
class Engine {
 public:
  // The daemon for these limits, started on first use and kept for the
  // life of the process (listeners come and go; a daemon without
  // connections only holds one idle thread).
  static Engine* For(const HttpLimits& limits) {
    static absl::Mutex mu(absl::kConstInit);
    static auto* engines = new std::map<std::pair<size_t, unsigned>, Engine*>;
    unsigned idle_s = static_cast<unsigned>(
        std::max(1, (limits.idle_timeout_ms + 999) / 1000));
    absl::MutexLock lock(&mu);
    Engine*& e = (*engines)[{limits.max_header_bytes, idle_s}];
    if (e == nullptr) e = new Engine(limits.max_header_bytes, idle_s);
    return e->daemon_ != nullptr ? e : nullptr;
  }

  // Hands `fd` to the daemon; the daemon closes it in any case.
  bool Add(int fd, Connection* conn, const sockaddr* addr, socklen_t len) {
    {
      absl::MutexLock lock(&mu_);
      pending_[fd] = conn;
    }
    if (MHD_add_connection(daemon_, fd, addr, len) == MHD_YES) return true;
    absl::MutexLock lock(&mu_);
    auto it = pending_.find(fd);
    if (it != pending_.end() && it->second == conn) pending_.erase(it);
    return false;
  }

  unsigned idle_timeout_s() const { return idle_s_; }

 private:
  Engine(size_t max_header_bytes, unsigned idle_s) : idle_s_(idle_s) {
    // The pool holds the header block and the connection's read and write
    // buffers. It is touched afresh by every connection: 1 MiB (Go's
    // header limit) cost ~1 ms of CPU per connection in page faults and
    // ~60 us per keep-alive request, so it is capped at 64 KiB, which holds
    // a header block of about 40 KiB; larger ones get the library's 431
    // even when max_header_bytes allows them.
    size_t pool = std::min<size_t>(max_header_bytes, 32 * 1024) + 32 * 1024;
    daemon_ = MHD_start_daemon(
        MHD_USE_THREAD_PER_CONNECTION | MHD_USE_POLL_INTERNAL_THREAD |
            MHD_USE_NO_LISTEN_SOCKET | MHD_USE_ITC,
        0, nullptr, nullptr, &Engine::Access, this,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, pool,
        MHD_OPTION_CONNECTION_MEMORY_INCREMENT, static_cast<size_t>(16 * 1024),
        MHD_OPTION_CONNECTION_TIMEOUT, idle_s, MHD_OPTION_CONNECTION_LIMIT,
        1u << 16, MHD_OPTION_URI_LOG_CALLBACK, &Engine::StartRequest, this,
        MHD_OPTION_NOTIFY_COMPLETED, &Engine::EndRequest, this,
        MHD_OPTION_NOTIFY_CONNECTION, &Engine::Notify, this, MHD_OPTION_END);
  }

  static void* StartRequest(void*, const char* uri, MHD_Connection*) {
    auto* r = new Request;
    r->uri = uri == nullptr ? "" : uri;
    return r;
  }

  static void EndRequest(void* cls, MHD_Connection* c, void** req_cls,
                         MHD_RequestTerminationCode) {
    delete static_cast<Request*>(*req_cls);
    *req_cls = nullptr;
    // Idle again: the inactivity timeout is back (Access lifted it).
    MHD_set_connection_option(c, MHD_CONNECTION_OPTION_TIMEOUT,
                              static_cast<Engine*>(cls)->idle_s_);
  }

  static void Notify(void* cls, MHD_Connection* c, void** socket_context,
                     MHD_ConnectionNotificationCode code) {
    auto* self = static_cast<Engine*>(cls);
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
      const MHD_ConnectionInfo* info =
          MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
      if (info == nullptr) return;
      absl::MutexLock lock(&self->mu_);
      auto it = self->pending_.find(info->connect_fd);
      if (it == self->pending_.end()) return;
      *socket_context = it->second;
      self->pending_.erase(it);
      return;
    }
    auto* conn = static_cast<Connection*>(*socket_context);
    if (conn == nullptr) return;
    absl::MutexLock lock(&conn->mu);
    conn->closed = true;
  }

  static MHD_Result Access(void*, MHD_Connection* c, const char*,
                           const char* method, const char* version,
                           const char* upload_data, size_t* upload_data_size,
                           void** req_cls) {
    auto* r = static_cast<Request*>(*req_cls);
    const MHD_ConnectionInfo* info =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    auto* conn = info == nullptr
                     ? nullptr
                     : static_cast<Connection*>(info->socket_context);
    if (r == nullptr || conn == nullptr) return MHD_NO;
    if (!r->started) {
      // The header is complete; the body (if any) comes in later calls.
      r->started = true;
      ParseHead(r, c, method, version, conn);
      // A handler or a streamed answer may take long: no inactivity
      // timeout until the request ends.
      MHD_set_connection_option(c, MHD_CONNECTION_OPTION_TIMEOUT, 0u);
      if (r->error_status != 0) {
        // Before any "100 Continue": the client need not send the body.
        r->queued = true;
        return QueueError(c, r->error_status, r->error_detail);
      }
      return MHD_YES;
    }
    if (*upload_data_size != 0) {
      size_t n = *upload_data_size;
      *upload_data_size = 0;
      if (r->error_status != 0) {
        // Dropping the rest of an oversized body; a client that goes on
        // and on is cut off.
        r->discarded += n;
        return r->discarded > 4 * r->body_limit + (1 << 20) ? MHD_NO : MHD_YES;
      }
      if (r->req.body.size() + n > r->body_limit) {
        r->error_status = 413;
        r->req.body.clear();
        return MHD_YES;
      }
      r->req.body.append(upload_data, n);
      return MHD_YES;
    }
    if (r->queued) return MHD_YES;
    r->queued = true;
    if (r->error_status != 0) return QueueError(c, r->error_status, r->error_detail);
    return Respond(conn, c, r);
  }

  MHD_Daemon* daemon_ = nullptr;
  const unsigned idle_s_;
  absl::Mutex mu_;
  // Connections added but not yet announced by the daemon, by descriptor.
  std::map<int, Connection*> pending_ ABSL_GUARDED_BY(mu_);
};

}  // namespace

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// Waits until the stream's socket is readable or `deadline_ms` passes.
// False on timeout or a poll error.
bool WaitReadable(int fd, int64_t deadline_ms) {
  while (true) {
    int64_t left = deadline_ms - NowMs();
    if (left <= 0) return false;
    pollfd p{fd, POLLIN, 0};
    int r = ::poll(&p, 1, static_cast<int>(std::min<int64_t>(left, 1 << 30)));
    if (r > 0) return true;
    if (r < 0 && errno != EINTR) return false;
  }
}

std::string_view HttpReason(int status) {
  switch (status) {
    case 100:
      return "Continue";
    case 200:
      return "OK";
    case 201:
      return "Created";
    case 202:
      return "Accepted";
    case 204:
      return "No Content";
    case 301:
      return "Moved Permanently";
    case 302:
      return "Found";
    case 304:
      return "Not Modified";
    case 307:
      return "Temporary Redirect";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 408:
      return "Request Timeout";
    case 409:
      return "Conflict";
    case 411:
      return "Length Required";
    case 412:
      return "Precondition Failed";
    case 413:
      return "Request Entity Too Large";
    case 415:
      return "Unsupported Media Type";
    case 421:
      return "Misdirected Request";
    case 429:
      return "Too Many Requests";
    case 431:
      return "Request Header Fields Too Large";
    case 500:
      return "Internal Server Error";
    case 501:
      return "Not Implemented";
    case 502:
      return "Bad Gateway";
    case 503:
      return "Service Unavailable";
    case 504:
      return "Gateway Timeout";
    case 505:
      return "HTTP Version Not Supported";
    default:
      return "Unknown";
  }
}

std::string HttpHostname(std::string_view host) {
  // net.SplitHostPort's accepted shapes: "[v6]:port" and "name:port" with
  // a single colon; anything else has no port to strip.
  if (!host.empty() && host[0] == '[') {
    size_t close = host.find(']');
    if (close != std::string_view::npos && close + 1 < host.size() &&
        host[close + 1] == ':' &&
        host.find(':', close + 2) == std::string_view::npos &&
        host.find('[', 1) == std::string_view::npos &&
        host.find(']', close + 1) == std::string_view::npos) {
      return std::string(host.substr(1, close - 1));
    }
    return std::string(host);
  }
  size_t colon = host.find(':');
  if (colon == std::string_view::npos ||
      host.find(':', colon + 1) != std::string_view::npos ||
      host.find_first_of("[]") != std::string_view::npos) {
    return std::string(host);
  }
  return std::string(host.substr(0, colon));
}

bool HostWhitelisted(const std::vector<std::string>& whitelist,
                     std::string_view hostname) {
  if (whitelist.empty()) return true;
  for (const std::string& h : whitelist) {
    if (h == "*" || h == hostname) return true;
  }
  return false;
}

namespace {
// Go's %q for the host name in etcd's message.
std::string GoQuote(std::string_view s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20 || c == 0x7f) {
      static constexpr char kHex[] = "0123456789abcdef";
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 15];
    } else {
      out += static_cast<char>(c);
    }
  }
  return out + "\"";
}
}  // namespace

HttpResponse HostRejectedResponse(std::string_view hostname) {
  HttpResponse r;
  r.status = 421;
  r.headers.push_back({"X-Content-Type-Options", "nosniff"});
  // etcd's errCVE20185702 text; http.Error adds the final newline.
  r.body = absl::StrCat(
      "\netcd received your request, but the Host header was "
      "unrecognized.\n\nTo fix this, choose one of the following options:\n"
      "- Enable TLS, then any HTTPS request will be allowed.\n"
      "- Add the hostname you want to use to the whitelist in settings.\n"
      "  - e.g. etcd --host-whitelist ",
      GoQuote(hostname),
      "\n\nThis requirement has been added to help prevent \"DNS Rebinding\" "
      "attacks (CVE-2018-5702).\n\n");
  return r;
}

HttpHandler HostWhitelistHandler(
    std::vector<std::string> whitelist, HttpHandler handler,
    std::function<void(const std::string& hostname)> on_reject) {
  if (whitelist.empty() ||
      std::find(whitelist.begin(), whitelist.end(), "*") != whitelist.end()) {
    return handler;
  }
  return [whitelist = std::move(whitelist), handler = std::move(handler),
          on_reject = std::move(on_reject)](const HttpRequest& r) {
    std::string hostname = HttpHostname(r.host);
    if (HostWhitelisted(whitelist, hostname)) return handler(r);
    if (on_reject) on_reject(hostname);
    return HostRejectedResponse(hostname);
  };
}

int ServeHttpConnection(Stream& stream, std::string initial,
                        const HttpHandler& handler, const HttpLimits& limits,
                        bool plain_socket) {
  Engine* engine = Engine::For(limits);
  if (engine == nullptr) return 0;
  Connection conn;
  conn.handler = &handler;
  conn.max_request_bytes = limits.max_request_bytes;
  conn.max_header_bytes = limits.max_header_bytes;
  conn.idle_timeout_s = engine->idle_timeout_s();
  conn.peer_cn = stream.peer_common_name();

  if (plain_socket && initial.empty()) {
    // The library gets its own descriptor of the socket and closes it when
    // done; the stream's stays open until the caller drops the stream.
    sockaddr_storage peer{};
    socklen_t len = sizeof peer;
    if (::getpeername(stream.fd(), reinterpret_cast<sockaddr*>(&peer), &len) !=
        0) {
      len = 0;
    }
    int fd = ::fcntl(stream.fd(), F_DUPFD_CLOEXEC, 0);
    if (fd < 0) return 0;
    conn.fd = fd;
    if (len == 0 || peer.ss_family == AF_UNIX) {
      // A unix socket: the library wants an address, any will do.
      auto* in = reinterpret_cast<sockaddr_in*>(&peer);
      *in = sockaddr_in{};
      in->sin_family = AF_INET;
      in->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      len = sizeof(sockaddr_in);
    }
    if (!engine->Add(fd, &conn, reinterpret_cast<sockaddr*>(&peer), len)) {
      return 0;
    }
    conn.mu.LockWhen(absl::Condition(&conn.closed));
    conn.mu.Unlock();
  } else {
    // TLS (or bytes already read): the library reads and writes plaintext
    // on one end of a socketpair; this thread and one more copy between the
    // other end and the stream.
    int sv[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
      return 0;
    }
    conn.fd = sv[0];
    sockaddr_in in{};
    in.sin_family = AF_INET;
    in.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (!engine->Add(sv[0], &conn, reinterpret_cast<sockaddr*>(&in),
                     sizeof in)) {
      ::close(sv[1]);
      return 0;
    }
    const int ours = sv[1];
    std::thread up([&stream, &initial, ours] {
      bool ok =
          initial.empty() || SendAll(ours, initial.data(), initial.size());
      auto buf = std::make_unique<char[]>(64 * 1024);
      while (ok) {
        long n = stream.Read(buf.get(), 64 * 1024);
        if (n <= 0) break;
        ok = SendAll(ours, buf.get(), static_cast<size_t>(n));
      }
      // The library sees the client's end of stream.
      ::shutdown(ours, SHUT_WR);
    });
    auto buf = std::make_unique<char[]>(64 * 1024);
    while (true) {
      ssize_t n = ::read(ours, buf.get(), 64 * 1024);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      if (!stream.WriteAll(buf.get(), static_cast<size_t>(n))) {
        ::shutdown(ours, SHUT_RDWR);
        break;
      }
    }
    // The library is done (or the client cannot take more): stop reading
    // from the client; the write side stays for the stream's close_notify.
    ::shutdown(stream.fd(), SHUT_RD);
    up.join();
    ::close(ours);
    conn.mu.LockWhen(absl::Condition(&conn.closed));
    conn.mu.Unlock();
  }

  std::vector<std::thread> streams;
  int served;
  {
    absl::MutexLock lock(&conn.mu);
    streams.swap(conn.streams);
    served = conn.served;
  }
  for (std::thread& t : streams) t.join();
  return served;
}

}  // namespace detcd::shim
