#include "h2_unary.h"

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <nghttp2/nghttp2.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace detcd::client {
namespace {

// Windows large enough that flow control never holds an answer back.
constexpr int32_t kWindow = 16 << 20;

nghttp2_nv Nv(std::string_view name, std::string_view value) {
  return nghttp2_nv{reinterpret_cast<uint8_t*>(const_cast<char*>(name.data())),
                    reinterpret_cast<uint8_t*>(const_cast<char*>(value.data())),
                    name.size(), value.size(), NGHTTP2_NV_FLAG_NONE};
}

// gRPC's grpc-timeout: at most 8 digits and a unit.
std::string GrpcTimeout(absl::Duration d) {
  int64_t v = absl::ToInt64Milliseconds(d);
  if (v < 1) v = 1;
  if (v <= 99'999'999) return absl::StrCat(v, "m");
  return absl::StrCat(std::min<int64_t>(v / 1000, 99'999'999), "S");
}

absl::Status Errno(std::string_view what) {
  return absl::UnavailableError(
      absl::StrCat("h2: ", std::string(what), ": ", std::strerror(errno)));
}

}  // namespace

std::string PercentDecode(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    int hi, lo;
    auto hex = [](char c) {
      if (c >= '0' && c <= '9') return c - '0';
      if (c >= 'a' && c <= 'f') return c - 'a' + 10;
      if (c >= 'A' && c <= 'F') return c - 'A' + 10;
      return -1;
    };
    if (s[i] == '%' && i + 2 < s.size() && (hi = hex(s[i + 1])) >= 0 &&
        (lo = hex(s[i + 2])) >= 0) {
      out += static_cast<char>(hi * 16 + lo);
      i += 2;
    } else {
      out += s[i];
    }
  }
  return out;
}

struct H2UnaryConn::Impl {
  struct Call {
    std::string request;  // prefix + message
    size_t sent = 0;
    std::string body;  // the answer's DATA
    std::string http_status, grpc_status, grpc_message;
    Done done;
  };

  int fd = -1;
  nghttp2_session* session = nullptr;
  std::string authority;
  std::vector<std::pair<std::string, std::string>> metadata;
  absl::flat_hash_map<int32_t, std::unique_ptr<Call>> calls;
  std::string out;  // bytes nghttp2 produced that the socket did not take
  size_t out_off = 0;
  absl::Status failed;
  // Calls ended in a callback, finished once nghttp2 returned.
  std::vector<std::pair<std::unique_ptr<Call>, absl::Status>> ended;

  ~Impl() {
    if (session != nullptr) nghttp2_session_del(session);
    if (fd >= 0) ::close(fd);
  }

  static Impl* Of(void* p) { return static_cast<Impl*>(p); }

  static int OnHeader(nghttp2_session*, const nghttp2_frame* frame,
                      const uint8_t* name, size_t namelen, const uint8_t* value,
                      size_t valuelen, uint8_t, void* self) {
    if (frame->hd.type != NGHTTP2_HEADERS) return 0;
    auto it = Of(self)->calls.find(frame->hd.stream_id);
    if (it == Of(self)->calls.end()) return 0;
    std::string_view n(reinterpret_cast<const char*>(name), namelen);
    std::string_view v(reinterpret_cast<const char*>(value), valuelen);
    Call& c = *it->second;
    if (n == ":status") {
      c.http_status = std::string(v);
    } else if (n == "grpc-status") {
      c.grpc_status = std::string(v);
    } else if (n == "grpc-message") {
      c.grpc_message = PercentDecode(v);
    }
    return 0;
  }

  // The server's answer ended (END_STREAM) before the whole request was
  // sent, as when it refuses a message over its limit: the rest is not
  // needed, so the stream is reset with NO_ERROR as grpc-go's client does
  // (RFC 7540 8.1); the call ends with the answer it got.
  static int OnFrameRecv(nghttp2_session* session, const nghttp2_frame* frame,
                         void* self) {
    if ((frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA) ||
        (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) == 0) {
      return 0;
    }
    auto it = Of(self)->calls.find(frame->hd.stream_id);
    if (it != Of(self)->calls.end() &&
        it->second->sent < it->second->request.size()) {
      nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, frame->hd.stream_id,
                                NGHTTP2_NO_ERROR);
    }
    return 0;
  }

  static int OnData(nghttp2_session*, uint8_t, int32_t stream_id,
                    const uint8_t* data, size_t len, void* self) {
    auto it = Of(self)->calls.find(stream_id);
    if (it != Of(self)->calls.end()) {
      it->second->body.append(reinterpret_cast<const char*>(data), len);
    }
    return 0;
  }

  static int OnClose(nghttp2_session*, int32_t stream_id, uint32_t error,
                     void* self) {
    Impl* impl = Of(self);
    auto it = impl->calls.find(stream_id);
    if (it == impl->calls.end()) return 0;
    std::unique_ptr<Call> c = std::move(it->second);
    impl->calls.erase(it);
    absl::Status st = StatusOf(c.get(), error);
    impl->ended.emplace_back(std::move(c), std::move(st));
    return 0;
  }

  static absl::Status StatusOf(const Call* c, uint32_t h2_error) {
    if (c == nullptr) return absl::OkStatus();
    if (!c->grpc_status.empty()) {
      int code = 0;
      if (!absl::SimpleAtoi(c->grpc_status, &code) || code < 0 || code > 16) {
        return absl::UnknownError("h2: bad grpc-status " + c->grpc_status);
      }
      if (code != 0) {
        return absl::Status(static_cast<absl::StatusCode>(code),
                            c->grpc_message);
      }
      if (c->body.size() < 5) {
        return absl::InternalError("h2: answer without a message");
      }
      return absl::OkStatus();
    }
    if (h2_error != NGHTTP2_NO_ERROR) {
      return absl::UnavailableError(
          absl::StrCat("h2: stream reset: ", nghttp2_http2_strerror(h2_error)));
    }
    return absl::UnknownError(absl::StrCat(
        "h2: answer without grpc-status (HTTP status ", c->http_status, ")"));
  }

  static ssize_t ReadBody(nghttp2_session*, int32_t, uint8_t* buf,
                          size_t length, uint32_t* flags,
                          nghttp2_data_source* source, void*) {
    auto* c = static_cast<Call*>(source->ptr);
    const size_t n = std::min(length, c->request.size() - c->sent);
    std::memcpy(buf, c->request.data() + c->sent, n);
    c->sent += n;
    if (c->sent == c->request.size()) *flags |= NGHTTP2_DATA_FLAG_EOF;
    return static_cast<ssize_t>(n);
  }

  // Runs the Done callbacks of the calls that ended (after nghttp2
  // returned, so a callback may start new calls).
  void FinishEnded() {
    while (!ended.empty()) {
      auto batch = std::move(ended);
      ended.clear();
      for (auto& [c, st] : batch) {
        std::string_view msg;
        if (st.ok()) {
          uint32_t len = 0;
          for (int i = 1; i < 5; ++i) {
            len = (len << 8) | static_cast<uint8_t>(c->body[i]);
          }
          if (c->body[0] != 0 || c->body.size() < 5 + size_t{len}) {
            st = absl::InternalError("h2: bad message prefix in the answer");
          } else {
            msg = std::string_view(c->body).substr(5, len);
          }
        }
        c->done(st, msg);
      }
    }
  }

  void Fail(absl::Status st) {
    if (!failed.ok()) return;
    failed = st;
    for (auto& [id, c] : calls) ended.emplace_back(std::move(c), st);
    calls.clear();
    FinishEnded();
  }

  // Moves nghttp2's output to the socket, as much as it takes, and runs
  // the Done callbacks of the calls that ended in it (a stream closes
  // when our END_STREAM or RST_STREAM goes out after the answer).
  void Send() {
    SendOut();
    FinishEnded();
  }

  void SendOut() {
    while (failed.ok()) {
      if (out_off == out.size()) {
        out.clear();
        out_off = 0;
        const uint8_t* data = nullptr;
        ssize_t n = nghttp2_session_mem_send(session, &data);
        if (n < 0) {
          return Fail(absl::InternalError(
              absl::StrCat("h2: ", nghttp2_strerror(static_cast<int>(n)))));
        }
        if (n == 0) return;
        // Gather everything nghttp2 has before the write.
        out.assign(reinterpret_cast<const char*>(data), n);
        while ((n = nghttp2_session_mem_send(session, &data)) > 0) {
          out.append(reinterpret_cast<const char*>(data), n);
        }
        if (n < 0) {
          return Fail(absl::InternalError(
              absl::StrCat("h2: ", nghttp2_strerror(static_cast<int>(n)))));
        }
      }
      ssize_t w =
          ::send(fd, out.data() + out_off, out.size() - out_off, MSG_NOSIGNAL);
      if (w < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) return;
        return Fail(Errno("send"));
      }
      out_off += static_cast<size_t>(w);
    }
  }

  void Receive() {
    char buf[64 << 10];
    while (failed.ok()) {
      ssize_t r = ::recv(fd, buf, sizeof buf, 0);
      if (r < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) break;
        return Fail(Errno("recv"));
      }
      if (r == 0) {
        return Fail(absl::UnavailableError("h2: connection closed"));
      }
      ssize_t n = nghttp2_session_mem_recv(
          session, reinterpret_cast<const uint8_t*>(buf),
          static_cast<size_t>(r));
      if (n < 0) {
        return Fail(absl::UnavailableError(
            absl::StrCat("h2: ", nghttp2_strerror(static_cast<int>(n)))));
      }
      FinishEnded();
      if (static_cast<size_t>(r) < sizeof buf) break;
    }
  }
};

H2UnaryConn::H2UnaryConn(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
H2UnaryConn::~H2UnaryConn() = default;

absl::StatusOr<std::unique_ptr<H2UnaryConn>> H2UnaryConn::Dial(
    std::string_view endpoint, absl::Duration timeout,
    std::vector<std::pair<std::string, std::string>> metadata) {
  if (endpoint.substr(0, 7) == "http://") endpoint.remove_prefix(7);
  const size_t colon = endpoint.rfind(':');
  if (colon == std::string_view::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("h2: endpoint without a port: ", std::string(endpoint)));
  }
  std::string host(endpoint.substr(0, colon));
  std::string port(endpoint.substr(colon + 1));
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  if (int rc = ::getaddrinfo(host.c_str(), port.c_str(), &hints, &res);
      rc != 0) {
    return absl::UnavailableError(
        absl::StrCat("h2: ", std::string(endpoint), ": ", gai_strerror(rc)));
  }
  auto impl = std::make_unique<Impl>();
  impl->authority = std::string(endpoint);
  impl->metadata = std::move(metadata);
  absl::Status last = absl::UnavailableError("h2: no address");
  for (addrinfo* a = res; a != nullptr && impl->fd < 0; a = a->ai_next) {
    int fd =
        ::socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                 a->ai_protocol);
    if (fd < 0) {
      last = Errno("socket");
      continue;
    }
    if (::connect(fd, a->ai_addr, a->ai_addrlen) != 0 && errno != EINPROGRESS) {
      last = Errno(absl::StrCat("connect ", std::string(endpoint)));
      ::close(fd);
      continue;
    }
    pollfd p{fd, POLLOUT, 0};
    int err = 0;
    socklen_t len = sizeof err;
    const int ms = static_cast<int>(
        std::max<int64_t>(1, absl::ToInt64Milliseconds(timeout)));
    if (::poll(&p, 1, ms) != 1 ||
        ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0) {
      errno = err != 0 ? err : ETIMEDOUT;
      last = Errno(absl::StrCat("connect ", std::string(endpoint)));
      ::close(fd);
      continue;
    }
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    impl->fd = fd;
  }
  ::freeaddrinfo(res);
  if (impl->fd < 0) return last;
  return Open(std::move(impl));
}

absl::StatusOr<std::unique_ptr<H2UnaryConn>> H2UnaryConn::FromFd(
    int fd, std::string authority,
    std::vector<std::pair<std::string, std::string>> metadata) {
  auto impl = std::make_unique<Impl>();
  impl->fd = fd;  // closed with the connection, even on failure
  impl->authority = std::move(authority);
  impl->metadata = std::move(metadata);
  const int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0 || ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0) {
    return Errno("fcntl");
  }
  return Open(std::move(impl));
}

absl::StatusOr<std::unique_ptr<H2UnaryConn>> H2UnaryConn::Open(
    std::unique_ptr<Impl> impl) {
  nghttp2_session_callbacks* cbs = nullptr;
  nghttp2_session_callbacks_new(&cbs);
  nghttp2_session_callbacks_set_on_header_callback(cbs, &Impl::OnHeader);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, &Impl::OnData);
  nghttp2_session_callbacks_set_on_stream_close_callback(cbs, &Impl::OnClose);
  nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, &Impl::OnFrameRecv);
  const int rc = nghttp2_session_client_new(&impl->session, cbs, impl.get());
  nghttp2_session_callbacks_del(cbs);
  if (rc != 0) {
    return absl::InternalError(absl::StrCat("h2: ", nghttp2_strerror(rc)));
  }
  nghttp2_settings_entry iv[] = {
      {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, kWindow}};
  nghttp2_submit_settings(impl->session, NGHTTP2_FLAG_NONE, iv, 2);
  nghttp2_session_set_local_window_size(impl->session, NGHTTP2_FLAG_NONE, 0,
                                        kWindow);
  impl->Send();
  if (!impl->failed.ok()) return impl->failed;
  return std::unique_ptr<H2UnaryConn>(new H2UnaryConn(std::move(impl)));
}

void H2UnaryConn::Start(
    std::string_view path, std::string request, absl::Duration timeout,
    Done done,
    const std::vector<std::pair<std::string, std::string>>& call_metadata) {
  Impl& m = *impl_;
  if (!m.failed.ok()) {
    done(m.failed, {});
    return;
  }
  auto c = std::make_unique<Impl::Call>();
  const uint32_t len = static_cast<uint32_t>(request.size());
  c->request.reserve(5 + request.size());
  c->request.push_back('\0');
  for (int shift = 24; shift >= 0; shift -= 8) {
    c->request.push_back(static_cast<char>((len >> shift) & 0xff));
  }
  c->request.append(request);
  c->done = std::move(done);
  const std::string grpc_timeout =
      timeout > absl::ZeroDuration() ? GrpcTimeout(timeout) : "";
  std::vector<nghttp2_nv> nv = {Nv(":method", "POST"),
                                Nv(":scheme", "http"),
                                Nv(":path", path),
                                Nv(":authority", m.authority),
                                Nv("content-type", "application/grpc"),
                                Nv("te", "trailers")};
  if (!grpc_timeout.empty()) nv.push_back(Nv("grpc-timeout", grpc_timeout));
  for (const auto& [k, v] : m.metadata) nv.push_back(Nv(k, v));
  for (const auto& [k, v] : call_metadata) nv.push_back(Nv(k, v));
  nghttp2_data_provider prd;
  prd.source.ptr = c.get();
  prd.read_callback = &Impl::ReadBody;
  const int32_t id = nghttp2_submit_request(m.session, nullptr, nv.data(),
                                            nv.size(), &prd, nullptr);
  if (id < 0) {
    c->done(absl::UnavailableError(absl::StrCat("h2: ", nghttp2_strerror(id))),
            {});
    return;
  }
  m.calls.emplace(id, std::move(c));
}

void H2UnaryConn::PollAll(const std::vector<H2UnaryConn*>& conns,
                          absl::Duration timeout) {
  std::vector<pollfd> fds;
  std::vector<H2UnaryConn*> live;
  for (H2UnaryConn* c : conns) {
    Impl& m = *c->impl_;
    m.Send();
    if (!m.failed.ok()) continue;
    short ev = POLLIN;
    if (m.out_off < m.out.size()) ev |= POLLOUT;
    fds.push_back(pollfd{m.fd, ev, 0});
    live.push_back(c);
  }
  if (fds.empty()) return;
  if (timeout < absl::ZeroDuration()) timeout = absl::ZeroDuration();
  const timespec ts = absl::ToTimespec(timeout);
  const int n = ::ppoll(fds.data(), fds.size(), &ts, nullptr);
  if (n <= 0) return;
  for (size_t i = 0; i < fds.size(); ++i) {
    if (fds[i].revents == 0) continue;
    Impl& m = *live[i]->impl_;
    if (fds[i].revents & (POLLIN | POLLERR | POLLHUP)) m.Receive();
    m.Send();
  }
}

size_t H2UnaryConn::open_calls() const { return impl_->calls.size(); }
bool H2UnaryConn::broken() const { return !impl_->failed.ok(); }

}  // namespace detcd::client
