#include "shim/client_listener.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <grpcpp/server.h>
#include <grpcpp/server_posix.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <mutex>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "shim/go_format.h"
#include "shim/grpc_h2.h"
#include "shim/thread_name.h"

namespace detcd::shim {
namespace {

// What every HTTP/2 client sends first (RFC 9113 section 3.4).
constexpr std::string_view kH2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
// Reads from a TLS stream are at least one maximal TLS record, so a read
// never leaves decrypted bytes behind in OpenSSL (see ServeConn).
constexpr size_t kTlsReadBytes = 64 * 1024;
// Go's transport.NewKeepAliveListener period, used by etcd.
constexpr int kKeepAliveSeconds = 30;

std::string SockaddrString(const sockaddr_storage& ss) {
  // Go shows an unnamed unix socket peer as "@".
  if (ss.ss_family == AF_UNIX) return "@";
  char host[INET6_ADDRSTRLEN] = "?";
  int port = 0;
  if (ss.ss_family == AF_INET) {
    const auto* a = reinterpret_cast<const sockaddr_in*>(&ss);
    inet_ntop(AF_INET, &a->sin_addr, host, sizeof host);
    port = ntohs(a->sin_port);
    return absl::StrCat(host, ":", port);
  }
  if (ss.ss_family == AF_INET6) {
    const auto* a = reinterpret_cast<const sockaddr_in6*>(&ss);
    inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof host);
    port = ntohs(a->sin6_port);
    return absl::StrCat("[", host, "]:", port);
  }
  return "?";
}

struct ParsedUrl {
  bool tls = false;
  std::string host;  // without brackets
  std::string port;
  // unix / unixs: the socket's file name ("host:port" as written).
  std::string unix_path;
};

absl::StatusOr<ParsedUrl> ParseListenUrl(const std::string& url) {
  ParsedUrl p;
  std::string_view rest = url;
  if (rest.starts_with("http://")) {
    rest.remove_prefix(7);
    p.tls = false;
  } else if (rest.starts_with("https://")) {
    rest.remove_prefix(8);
    p.tls = true;
  } else if (rest.starts_with("unix://") || rest.starts_with("unixs://")) {
    // etcd listens on the file named by the URL's host:port (its u.Host +
    // u.Path, and a listen URL has no path).
    p.tls = rest.starts_with("unixs://");
    rest.remove_prefix(p.tls ? 8 : 7);
    rest = rest.substr(0, rest.find('/'));
    if (rest.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("listen URL must be host:port: ", url));
    }
    p.unix_path = std::string(rest);
    return p;
  } else {
    return absl::InvalidArgumentError(absl::StrCat(
        "URL scheme must be http, https, unix, or unixs: ", url));
  }
  // A trailing "/" (or path) is allowed and ignored, as etcd does.
  rest = rest.substr(0, rest.find('/'));
  size_t colon;
  if (rest.starts_with("[")) {
    size_t close = rest.find(']');
    if (close == std::string_view::npos || close + 1 >= rest.size() ||
        rest[close + 1] != ':') {
      return absl::InvalidArgumentError(
          absl::StrCat("listen URL must be host:port: ", url));
    }
    p.host = std::string(rest.substr(1, close - 1));
    colon = close + 1;
  } else {
    colon = rest.rfind(':');
    if (colon == std::string_view::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat("listen URL must be host:port: ", url));
    }
    p.host = std::string(rest.substr(0, colon));
  }
  p.port = std::string(rest.substr(colon + 1));
  int port_num;
  if (p.port.empty() || !absl::SimpleAtoi(p.port, &port_num) ||
      port_num < 0 || port_num > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("listen URL has a bad port: ", url));
  }
  return p;
}

// A unix socket at path, as Go's net.Listen("unix", path): an existing
// file is an error, not replaced.
absl::StatusOr<int> ListenUnix(const std::string& path) {
  const std::string where = absl::StrCat("listen unix ", path);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof(addr.sun_path)) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ": bind: invalid argument"));
  }
  std::memcpy(addr.sun_path, path.data(), path.size());
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    return absl::InternalError(absl::StrCat(where, ": socket: ", GoErrno(errno)));
  }
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    int err = errno;
    ::close(fd);
    return absl::FailedPreconditionError(
        absl::StrCat(where, ": bind: ", GoErrno(err)));
  }
  if (::listen(fd, SOMAXCONN) != 0) {
    int err = errno;
    ::close(fd);
    ::unlink(path.c_str());
    return absl::FailedPreconditionError(
        absl::StrCat(where, ": listen: ", GoErrno(err)));
  }
  return fd;
}

// Binds and listens; the returned fd is non-blocking and close-on-exec.
absl::StatusOr<int> Listen(const ParsedUrl& u, int* bound_port) {
  if (!u.unix_path.empty()) {
    *bound_port = 0;
    return ListenUnix(u.unix_path);
  }
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* res = nullptr;
  const char* host = u.host.empty() ? "0.0.0.0" : u.host.c_str();
  int gai = getaddrinfo(host, u.port.c_str(), &hints, &res);
  if (gai != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "listen tcp ", u.host, ":", u.port, ": lookup ", u.host, ": ",
        gai_strerror(gai)));
  }
  // Like Go's net.Listen, a name that resolves to both families listens on
  // its first IPv4 address ("localhost" -> 127.0.0.1).
  const addrinfo* pick = res;
  for (const addrinfo* a = res; a != nullptr; a = a->ai_next) {
    if (a->ai_family == AF_INET) {
      pick = a;
      break;
    }
  }
  sockaddr_storage addr{};
  std::memcpy(&addr, pick->ai_addr, pick->ai_addrlen);
  socklen_t addr_len = pick->ai_addrlen;
  int family = pick->ai_family;
  freeaddrinfo(res);
  std::string where = absl::StrCat("listen tcp ", SockaddrString(addr));

  int fd = ::socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    return absl::InternalError(
        absl::StrCat(where, ": socket: ", GoErrno(errno)));
  }
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), addr_len) != 0) {
    int err = errno;
    ::close(fd);
    return absl::FailedPreconditionError(
        absl::StrCat(where, ": bind: ", GoErrno(err)));
  }
  if (::listen(fd, SOMAXCONN) != 0) {
    int err = errno;
    ::close(fd);
    return absl::FailedPreconditionError(
        absl::StrCat(where, ": listen: ", GoErrno(err)));
  }
  sockaddr_storage bound{};
  socklen_t bound_len = sizeof bound;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &bound_len);
  *bound_port = bound.ss_family == AF_INET6
                    ? ntohs(reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port)
                    : ntohs(reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
  return fd;
}

void TuneAccepted(int fd) {
  int one = 1;
  // gRPC frames and HTTP answers are small writes that must not wait for
  // Nagle's algorithm; gRPC's own listener sets this too.
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  // Dead peers of idle connections (watch streams) are found by keep-alive
  // probes, as etcd's keep-alive listener does.
  ::setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
  int secs = kKeepAliveSeconds;
  ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &secs, sizeof secs);
  ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &secs, sizeof secs);
}

bool SendAll(int fd, const char* p, size_t n) {
  while (n > 0) {
    ssize_t w = ::send(fd, p, n, MSG_NOSIGNAL);
    if (w < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    p += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}


}  // namespace

struct ClientListener::Endpoint {
  std::string url;
  bool tls = false;
  bool plain = false;  // both when an http and an https URL share host:port
  int fd = -1;
  int port = 0;
  std::string unix_path;  // removed with the listener, as Go does
  std::thread thread;
};

struct ClientListener::Conn {
  uint64_t id = 0;
  std::string peer;  // "ip:port"
  std::thread thread;
  absl::Mutex mu;
  // A duplicate of the connection's socket kept only so that Stop() can shut
  // the socket down, whoever owns the original descriptor; -1 once the
  // connection is gRPC's or over.
  int kill_fd ABSL_GUARDED_BY(mu) = -1;
};

ClientListener::ClientListener(const ClientListenerOptions& options,
                               grpc::Server* server, HttpHandler http)
    : options_(options), server_(server), http_(std::move(http)) {
  http_limits_.max_request_bytes = options.max_http_request_bytes;
  http_limits_.idle_timeout_ms = options.http_idle_timeout_ms;
  plain_http_ = HostWhitelistHandler(options.host_whitelist, http_,
                                     options.on_host_rejected);
}

absl::StatusOr<std::unique_ptr<ClientListener>> ClientListener::Create(
    const ClientListenerOptions& options, grpc::Server* server,
    HttpHandler http) {
  if (options.urls.empty()) {
    return absl::InvalidArgumentError("no listen URLs");
  }
  if (options.max_connections < 1 || options.sniff_timeout_ms < 1 ||
      options.http_idle_timeout_ms < 1 || options.max_http_request_bytes < 1) {
    return absl::InvalidArgumentError("client listener limits must be > 0");
  }
  // A peer that resets its connection must not kill the process with
  // SIGPIPE on our next write (TLS libraries write with plain write()); Go,
  // and so etcd, ignore it the same way. Only a default disposition is
  // replaced: a program that set its own keeps it.
  static std::once_flag sigpipe_once;
  std::call_once(sigpipe_once, [] {
    struct sigaction old_action {};
    if (::sigaction(SIGPIPE, nullptr, &old_action) == 0 &&
        old_action.sa_handler == SIG_DFL) {
      ::signal(SIGPIPE, SIG_IGN);
    }
  });
  std::unique_ptr<ClientListener> l(
      new ClientListener(options, server, std::move(http)));
  if (!l->http_) {
    l->http_ = [](const HttpRequest&) {
      HttpResponse r;
      r.status = 404;
      r.body = "404 page not found\n";
      return r;
    };
  }

  std::vector<ParsedUrl> parsed;
  bool any_tls = false;
  for (const std::string& url : options.urls) {
    absl::StatusOr<ParsedUrl> p = ParseListenUrl(url);
    if (!p.ok()) return p.status();
    if (p->tls && !options.tls.enabled()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "TLS key/cert (--cert-file, --key-file) must be provided for "
          "client url ",
          url, " with HTTPS scheme"));
    }
    any_tls = any_tls || p->tls;
    parsed.push_back(*std::move(p));
  }
  if (any_tls) {
    // Our preference, as the server chooses: HTTP/1.1 whenever the client
    // offers it, h2 otherwise. gRPC clients (Go, C core, Java) offer only
    // "h2", and so reach gRPC; curl and Go's net/http offer both, and so get
    // the HTTP/1.1 server (h2 would land them in gRPC, which answers no
    // /health or /metrics).
    std::vector<std::string> alpn = {"http/1.1"};
    if (server != nullptr) alpn.push_back("h2");
    absl::StatusOr<std::shared_ptr<TlsContext>> ctx =
        TlsContext::Server(options.tls, std::move(alpn));
    if (!ctx.ok()) return ctx.status();
    l->tls_ = *std::move(ctx);
  }

  // As etcd does, an http and an https URL with the same host:port share one
  // socket that serves both (a TLS ClientHello tells them apart).
  for (size_t i = 0; i < parsed.size(); ++i) {
    Endpoint* same = nullptr;
    for (size_t j = 0; j < i; ++j) {
      const bool same_unix = !parsed[i].unix_path.empty() &&
                             parsed[j].unix_path == parsed[i].unix_path;
      const bool same_tcp = parsed[i].unix_path.empty() &&
                            parsed[j].unix_path.empty() &&
                            parsed[j].host == parsed[i].host &&
                            parsed[j].port == parsed[i].port &&
                            parsed[i].port != "0";
      if (l->endpoints_[j]->fd >= 0 && (same_unix || same_tcp)) {
        same = l->endpoints_[j].get();
      }
    }
    auto ep = std::make_unique<Endpoint>();
    ep->url = options.urls[i];
    if (same != nullptr) {
      same->tls = same->tls || parsed[i].tls;
      same->plain = same->plain || !parsed[i].tls;
      ep->port = same->port;  // fd stays -1: no socket of its own
      l->endpoints_.push_back(std::move(ep));
      continue;
    }
    ep->tls = parsed[i].tls;
    ep->plain = !parsed[i].tls;
    absl::StatusOr<int> fd = Listen(parsed[i], &ep->port);
    if (!fd.ok()) return fd.status();  // ~ClientListener closes the others
    ep->fd = *fd;
    ep->unix_path = parsed[i].unix_path;
    l->endpoints_.push_back(std::move(ep));
  }
  if (::pipe2(l->wake_pipe_, O_CLOEXEC | O_NONBLOCK) != 0) {
    return absl::InternalError(
        absl::StrCat("pipe: ", GoErrno(errno)));
  }
  return l;
}

ClientListener::~ClientListener() {
  Stop();
  for (auto& ep : endpoints_) {
    if (ep->fd >= 0) ::close(ep->fd);
    if (ep->fd >= 0 && !ep->unix_path.empty()) ::unlink(ep->unix_path.c_str());
  }
  if (wake_pipe_[0] >= 0) ::close(wake_pipe_[0]);
  if (wake_pipe_[1] >= 0) ::close(wake_pipe_[1]);
}

void ClientListener::Start() {
  absl::MutexLock lock(&mu_);
  if (started_ || stopping_) return;
  started_ = true;
  for (auto& ep : endpoints_) {
    if (ep->fd < 0) continue;
    Endpoint* e = ep.get();
    ep->thread = std::thread([this, e] {
      NameThisThread("client-accept", ThreadKind::kIo);
      AcceptLoop(e);
    });
  }
}

void ClientListener::Stop() {
  std::vector<std::unique_ptr<Conn>> finished;
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return;
    stopping_ = true;
    if (wake_pipe_[1] >= 0) {
      char c = 1;
      [[maybe_unused]] ssize_t w = ::write(wake_pipe_[1], &c, 1);
    }
    for (auto& [id, conn] : conns_) {
      absl::MutexLock conn_lock(&conn->mu);
      if (conn->kill_fd >= 0) ::shutdown(conn->kill_fd, SHUT_RDWR);
    }
  }
  for (auto& ep : endpoints_) {
    if (ep->thread.joinable()) ep->thread.join();
    // As Go's unix listener, the socket file goes with the listener.
    if (ep->fd >= 0 && !ep->unix_path.empty()) {
      ::unlink(ep->unix_path.c_str());
      ep->unix_path.clear();
    }
  }
  {
    absl::MutexLock lock(&mu_);
    // Every connection thread ends soon once its socket is shut down; each
    // moves itself to finished_ on the way out.
    mu_.Await(absl::Condition(
        +[](std::map<uint64_t, std::unique_ptr<Conn>>* c) {
          return c->empty();
        },
        &conns_));
    finished.swap(finished_);
  }
  for (auto& c : finished) {
    if (c->thread.joinable()) c->thread.join();
  }
}

std::vector<int> ClientListener::Ports() const {
  std::vector<int> ports;
  for (const auto& ep : endpoints_) ports.push_back(ep->port);
  return ports;
}

ClientListenerStats ClientListener::Stats() const {
  absl::MutexLock lock(&mu_);
  return stats_;
}

void ClientListener::Warn(const std::string& line) {
  if (options_.log_warning) options_.log_warning(line);
}

void ClientListener::ReapLocked() {
  for (auto& c : finished_) {
    // The thread has handed itself over and only returns now.
    if (c->thread.joinable()) c->thread.join();
  }
  finished_.clear();
}

void ClientListener::AcceptLoop(Endpoint* ep) {
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      ReapLocked();
      // At the limit, stop accepting (the kernel's backlog holds new
      // connections) until one of ours ends, as Go's LimitListener does.
      auto room = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return stopping_ || stats_.open < options_.max_connections;
      };
      mu_.Await(absl::Condition(&room));
      if (stopping_) return;
    }
    pollfd fds[2] = {{ep->fd, POLLIN, 0}, {wake_pipe_[0], POLLIN, 0}};
    // The timeout only bounds how long finished connection threads wait to
    // be joined.
    int r = ::poll(fds, 2, 1000);
    if (r < 0 && errno != EINTR) {
      Warn(absl::StrCat("poll on ", ep->url, ": ", GoErrno(errno)));
      return;
    }
    if (fds[1].revents != 0) return;  // Stop()
    if (r <= 0 || fds[0].revents == 0) continue;

    sockaddr_storage peer{};
    socklen_t peer_len = sizeof peer;
    int fd = ::accept4(ep->fd, reinterpret_cast<sockaddr*>(&peer), &peer_len,
                       SOCK_CLOEXEC);
    if (fd < 0) {
      int err = errno;
      if (err == EAGAIN || err == EWOULDBLOCK || err == EINTR ||
          err == ECONNABORTED || err == EPROTO) {
        continue;
      }
      // Out of descriptors or memory: back off instead of spinning, as Go's
      // http.Server does on temporary accept errors.
      Warn(absl::StrCat("accept on ", ep->url, ": ", GoErrno(err)));
      pollfd wake{wake_pipe_[0], POLLIN, 0};
      ::poll(&wake, 1, 100);
      continue;
    }
    TuneAccepted(fd);

    absl::MutexLock lock(&mu_);
    if (stopping_) {
      ::close(fd);
      return;
    }
    auto conn = std::make_unique<Conn>();
    conn->id = next_conn_id_++;
    conn->peer = SockaddrString(peer);
    int kill_fd = ::fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (kill_fd < 0) {
      ::close(fd);
      continue;
    }
    {
      absl::MutexLock conn_lock(&conn->mu);
      conn->kill_fd = kill_fd;
    }
    ++stats_.accepted;
    ++stats_.open;
    Conn* c = conn.get();
    bool tls = ep->tls, plain = ep->plain;
    conns_.emplace(c->id, std::move(conn));
    c->thread = std::thread([this, c, fd, tls, plain] {
      bool use_tls = tls;
      if (tls && plain) {
        // Both schemes on one port: a TLS record starts with 0x16
        // (handshake); anything else is plaintext.
        char first = 0;
        int64_t deadline = NowMs() + options_.sniff_timeout_ms;
        use_tls = WaitReadable(fd, deadline) &&
                  ::recv(fd, &first, 1, MSG_PEEK) == 1 && first == 0x16;
      }
      ServeConn(c, fd, use_tls);
      // Hand this thread over to be joined, and let go of the socket.
      absl::MutexLock lock(&mu_);
      {
        absl::MutexLock conn_lock(&c->mu);
        if (c->kill_fd >= 0) ::close(c->kill_fd);
        c->kill_fd = -1;
      }
      auto it = conns_.find(c->id);
      finished_.push_back(std::move(it->second));
      conns_.erase(it);
      --stats_.open;
    });
  }
}

int ClientListener::SniffPlain(int fd) {
  int64_t deadline = NowMs() + options_.sniff_timeout_ms;
  char buf[kH2Preface.size()];
  while (true) {
    if (!WaitReadable(fd, deadline)) return -1;
    ssize_t n = ::recv(fd, buf, sizeof buf, MSG_PEEK);
    if (n == 0) return -1;
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      return -1;
    }
    if (std::memcmp(buf, kH2Preface.data(), static_cast<size_t>(n)) != 0) {
      return 0;
    }
    if (static_cast<size_t>(n) == kH2Preface.size()) return 1;
    // A prefix of the preface: the rest is on its way. The socket stays
    // readable, so wait a little instead of polling in a busy loop.
    if (NowMs() >= deadline) return -1;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
}

void ClientListener::HandToGrpc(int fd, const std::string& peer,
                                const std::string& cn) {
  if (options_.grpc_h2 != nullptr) {
    // gRPC C++ names peers "ipv4:1.2.3.4:5" / "ipv6:[::1]:5".
    options_.grpc_h2->AddConnection(
        fd, absl::StrCat(peer.empty() || peer[0] != '[' ? "ipv4:" : "ipv6:",
                         peer),
        cn);
    return;
  }
  // gRPC's endpoint expects a non-blocking socket.
  int flags = ::fcntl(fd, F_GETFL);
  ::fcntl(fd, F_SETFL, flags | O_NONBLOCK);
  grpc::AddInsecureChannelFromFd(server_, fd);
}

void ClientListener::ServeConn(Conn* conn, int fd, bool tls) {
  if (!tls) {
    if (server_ != nullptr) {
      int kind = SniffPlain(fd);
      if (kind < 0) {
        ::close(fd);
        absl::MutexLock lock(&mu_);
        ++stats_.rejected;
        return;
      }
      if (kind == 1) {
        {
          absl::MutexLock lock(&conn->mu);
          ::close(conn->kill_fd);
          conn->kill_fd = -1;
        }
        {
          absl::MutexLock lock(&mu_);
          if (stopping_) {
            ::close(fd);
            return;
          }
          ++stats_.grpc_connections;
        }
        HandToGrpc(fd, conn->peer, "");
        return;
      }
    } else if (!WaitReadable(fd, NowMs() + options_.sniff_timeout_ms)) {
      ::close(fd);
      absl::MutexLock lock(&mu_);
      ++stats_.rejected;
      return;
    }
    ServeHttp(PlainStream(fd), "", /*tls=*/false);
    return;
  }

  HandshakeInfo info;
  absl::StatusOr<std::unique_ptr<Stream>> stream =
      tls_->Accept(fd, options_.sniff_timeout_ms, &info);
  if (!stream.ok()) {
    // etcd logs rejected TLS connections the same way.
    if (options_.on_rejected) {
      if (info.remote_addr.empty()) info.remote_addr = conn->peer;
      options_.on_rejected(info, std::string(stream.status().message()));
    } else {
      Warn(absl::StrFormat("rejected connection from %s (error %s)",
                           absl::StrCat("\"", conn->peer, "\""),
                           absl::StrCat("\"", stream.status().message(), "\"")));
    }
    absl::MutexLock lock(&mu_);
    ++stats_.rejected;
    return;
  }
  std::string alpn = (*stream)->alpn();
  if (server_ == nullptr || alpn == "http/1.1") {
    ServeHttp(*std::move(stream), "", /*tls=*/true);
    return;
  }
  if (alpn == "h2") {
    PumpTls(*std::move(stream), "", conn->peer);
    return;
  }
  // No ALPN: decide by the first decrypted bytes. Each read takes a whole
  // TLS record (at most 16 KiB), so that nothing stays buffered inside the
  // TLS stream where poll() on the socket cannot see it; all bytes read go
  // on to whichever side gets the connection.
  std::string initial;
  int64_t deadline = NowMs() + options_.sniff_timeout_ms;
  auto buf = std::make_unique<char[]>(kTlsReadBytes);
  while (initial.size() < kH2Preface.size() &&
         kH2Preface.substr(0, initial.size()) == initial) {
    if (!WaitReadable((*stream)->fd(), deadline)) break;
    long n = (*stream)->Read(buf.get(), kTlsReadBytes);
    if (n <= 0) break;
    initial.append(buf.get(), static_cast<size_t>(n));
  }
  std::string_view head =
      std::string_view(initial).substr(0, kH2Preface.size());
  if (head == kH2Preface) {
    PumpTls(*std::move(stream), std::move(initial), conn->peer);
  } else if (!initial.empty()) {
    ServeHttp(*std::move(stream), std::move(initial), /*tls=*/true);
  } else {
    absl::MutexLock lock(&mu_);
    ++stats_.rejected;
  }
}

void ClientListener::ServeHttp(std::unique_ptr<Stream> stream,
                               std::string initial, bool tls) {
  {
    absl::MutexLock lock(&mu_);
    ++stats_.http_connections;
  }
  // A plain socket goes to the HTTP library as is; TLS through a pump.
  ServeHttpConnection(*stream, std::move(initial), tls ? http_ : plain_http_,
                      http_limits_, /*plain_socket=*/!tls);
  // The destructor closes the socket (a TLS stream says close_notify).
}

void ClientListener::PumpTls(std::unique_ptr<Stream> stream,
                             std::string initial, const std::string& peer) {
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
    Warn(absl::StrCat("socketpair: ", GoErrno(errno)));
    return;
  }
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) {
      ::close(sv[0]);
      ::close(sv[1]);
      return;
    }
    ++stats_.grpc_connections;
  }
  // Registered before gRPC sees the connection, so that its first call
  // can already look the name up.
  const std::string grpc_peer = absl::StrCat("fd:", sv[0]);
  const std::string cn = stream->peer_common_name();
  uint64_t pump_id = 0;
  if (!cn.empty() && options_.grpc_h2 == nullptr) {
    absl::MutexLock lock(&peers_mu_);
    pump_id = next_pump_id_++;
    peer_cn_[grpc_peer] = {pump_id, cn};
  }
  HandToGrpc(sv[0], peer, cn);
  const int ours = sv[1];
  Stream* s = stream.get();
  auto end_both = [s, ours] {
    ::shutdown(ours, SHUT_RDWR);
    s->Shutdown();
  };
  // gRPC -> client.
  std::thread down([s, ours, end_both] {
    auto buf = std::make_unique<char[]>(64 * 1024);
    while (true) {
      ssize_t n = ::read(ours, buf.get(), 64 * 1024);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      if (!s->WriteAll(buf.get(), static_cast<size_t>(n))) break;
    }
    end_both();
  });
  // Client -> gRPC, on this thread.
  bool ok = initial.empty() || SendAll(ours, initial.data(), initial.size());
  auto buf = std::make_unique<char[]>(64 * 1024);
  while (ok) {
    long n = s->Read(buf.get(), 64 * 1024);
    if (n <= 0) break;
    ok = SendAll(ours, buf.get(), static_cast<size_t>(n));
  }
  end_both();
  down.join();
  ::close(ours);
  if (pump_id != 0) {
    absl::MutexLock lock(&peers_mu_);
    auto it = peer_cn_.find(grpc_peer);
    if (it != peer_cn_.end() && it->second.first == pump_id) {
      peer_cn_.erase(it);
    }
  }
}

std::string ClientListener::PeerCommonName(
    const std::string& grpc_peer) const {
  absl::MutexLock lock(&peers_mu_);
  auto it = peer_cn_.find(grpc_peer);
  return it == peer_cn_.end() ? "" : it->second.second;
}

}  // namespace detcd::shim
