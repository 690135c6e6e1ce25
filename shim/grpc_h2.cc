#include "shim/grpc_h2.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <nghttp2/nghttp2.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/container/flat_hash_map.h"
#include "absl/container/inlined_vector.h"
#include "absl/strings/str_cat.h"
#include "shim/thread_name.h"

namespace detcd::shim::h2 {
namespace {

int64_t NowMs() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1'000'000;
}

constexpr size_t kPrefixBytes = Call::kFrameHeaderBytes;

// The big-endian length in a message's prefix (after the compressed flag).
size_t MessageLength(const uint8_t* prefix) {
  return (static_cast<size_t>(prefix[1]) << 24) |
         (static_cast<size_t>(prefix[2]) << 16) |
         (static_cast<size_t>(prefix[3]) << 8) | prefix[4];
}
// A connection's unsent bytes past which the loop stops pulling more
// frames out of its session (a slow reader keeps its answers queued in
// their calls, where pending_bytes shows them).
constexpr size_t kMaxUnsentBytes = 1 << 20;
constexpr size_t kReadChunkBytes = 64 << 10;
// Reads per connection per loop iteration before the others get a turn.
constexpr int kMaxReadsPerTurn = 8;
// RST_STREAMs a client may send at once, and per second after that.
constexpr uint64_t kResetBurst = 10'000;
constexpr uint64_t kResetRate = 1'000;

// Names are literals; values are copied by nghttp2 (they may be
// temporaries).
nghttp2_nv Nv(std::string_view name, std::string_view value) {
  return nghttp2_nv{
      reinterpret_cast<uint8_t*>(const_cast<char*>(name.data())),
      reinterpret_cast<uint8_t*>(const_cast<char*>(value.data())),
      name.size(), value.size(), NGHTTP2_NV_FLAG_NO_COPY_NAME};
}

// Metadata gRPC keeps to itself.
bool Reserved(std::string_view name) {
  return name == "content-type" || name == "te" || name == "grpc-timeout" ||
         name == "grpc-encoding" || name == "grpc-accept-encoding";
}

}  // namespace

std::string PercentEncode(std::string_view s) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(s.size());
  for (char ch : s) {
    auto c = static_cast<unsigned char>(ch);
    if (c < 0x20 || c > 0x7e || c == '%') {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    } else {
      out += ch;
    }
  }
  return out;
}

int64_t ParseGrpcTimeoutMs(std::string_view v) {
  // At most 8 digits then one unit letter (gRPC's PROTOCOL-HTTP2).
  if (v.size() < 2 || v.size() > 9) return -1;
  int64_t n = 0;
  for (char c : v.substr(0, v.size() - 1)) {
    if (c < '0' || c > '9') return -1;
    n = n * 10 + (c - '0');
  }
  switch (v.back()) {
    case 'H': return n * 3600 * 1000;
    case 'M': return n * 60 * 1000;
    case 'S': return n * 1000;
    case 'm': return n;
    case 'u': return (n + 999) / 1000;
    case 'n': return (n + 999'999) / 1'000'000;
    default: return -1;
  }
}

const std::string* Call::Find(std::string_view name) const {
  for (const auto& [k, v] : metadata_) {
    if (k == name) return &v;
  }
  return nullptr;
}

CallPtr Call::Make(Server* server, uint64_t conn, int32_t stream) {
  // One allocation for the call and its count (the constructor is ours).
  struct Made : Call {
    Made(Server* s, uint64_t c, int32_t i) : Call(s, c, i) {}
  };
  return std::make_shared<Made>(server, conn, stream);
}

bool Call::WriteParts(const std::string_view* parts, size_t n) {
  if (done()) return false;
  size_t bytes = 0;
  for (size_t i = 0; i < n; ++i) bytes += parts[i].size();
  std::string framed;
  framed.resize(kPrefixBytes + bytes);
  char* at = framed.data() + kPrefixBytes;
  for (size_t i = 0; i < n; ++i) {
    std::memcpy(at, parts[i].data(), parts[i].size());
    at += parts[i].size();
  }
  return WriteFramed(std::move(framed));
}

bool Call::WriteFramed(std::string framed) {
  if (done()) return false;
  auto len = static_cast<uint32_t>(framed.size() - kPrefixBytes);
  framed[0] = 0;
  framed[1] = static_cast<char>(len >> 24);
  framed[2] = static_cast<char>(len >> 16);
  framed[3] = static_cast<char>(len >> 8);
  framed[4] = static_cast<char>(len);
  pending_.fetch_add(framed.size(), std::memory_order_relaxed);
  return server_->Enqueue(
      Server::Op{conn_, stream_, std::move(framed), false, Status{}});
}

void Call::Finish(Status s) {
  if (done_.exchange(true, std::memory_order_acq_rel)) return;
  server_->Enqueue(Server::Op{conn_, stream_, std::string(), true,
                              std::move(s)});
}

// ---------------------------------------------------------------------------

struct Server::Stream {
  int32_t id = 0;
  CallPtr call;
  std::unique_ptr<Handler> handler;
  bool post = false;        // :method POST
  bool grpc_content = false;  // content-type application/grpc[+...|;...]
  int64_t timeout_ms = -1;
  bool started = false;     // headers checked, handler made (or refused)
  bool rejected = false;    // answered by the transport; ignore its data
  std::string in;           // request bytes not yet cut into messages
  // Framed answer messages: out[out_head] is the next to send, from
  // out_offset on (a unary answer needs no allocation for the queue).
  absl::InlinedVector<std::string, 1> out;
  size_t out_head = 0;
  size_t out_offset = 0;
  bool OutEmpty() const { return out_head == out.size(); }
  void PopOut() {
    out[out_head++] = std::string();
    out_offset = 0;
    if (out_head == out.size()) {
      out.clear();
      out_head = 0;
    }
  }
  bool headers_sent = false;
  bool finishing = false;       // Finish queued behind `out`
  Status final;
  bool deferred = false;        // the data source said "nothing yet"
  bool ended = false;           // trailers submitted (or stream closed)
  bool drained_note = false;    // tell the handler OnDrained after send
};

struct Server::Conn {
  Server* server = nullptr;
  uint64_t id = 0;
  int fd = -1;
  nghttp2_session* session = nullptr;
  std::string peer, cert_cn;
  absl::flat_hash_map<int32_t, std::unique_ptr<Stream>> streams;
  std::string unsent;
  size_t unsent_offset = 0;
  bool want_out = false;  // EPOLLOUT registered
  bool dirty = false;
  bool broken = false;    // close at the end of this turn
  int64_t last_read_ms = 0;
  int64_t ping_sent_ms = 0;  // our keepalive ping awaiting its ack
  int64_t last_client_ping_ms = 0;
  int ping_strikes = 0;
  std::vector<Stream*> drained;
};

// nghttp2's callbacks and what they share, with access to the server's
// and the calls' insides.
struct Bridge {
  static Server::Stream* StreamOf(Server::Conn* c, int32_t id) {
    auto it = c->streams.find(id);
    return it == c->streams.end() ? nullptr : it->second.get();
  }

  static void MarkDirty(Server::Conn* c) {
    if (!c->dirty) {
      c->dirty = true;
      c->server->dirty_.push_back(c);
    }
  }

  // Answers with trailers only (no handler yet, or none will come).
  static void TrailersOnly(Server::Conn* c, Server::Stream* s,
                           const Status& st) {
    s->ended = true;
    s->rejected = true;
    if (s->call) s->call->done_.store(true, std::memory_order_release);
    std::string code = std::to_string(st.code);
    std::string msg = PercentEncode(st.message);
    std::vector<nghttp2_nv> nv = {Nv(":status", "200"),
                                  Nv("content-type", "application/grpc"),
                                  Nv("grpc-status", code)};
    if (!msg.empty()) nv.push_back(Nv("grpc-message", msg));
    nghttp2_submit_response(c->session, s->id, nv.data(), nv.size(), nullptr);
    MarkDirty(c);
  }

  static void HttpError(Server::Conn* c, Server::Stream* s,
                        std::string_view status) {
    s->ended = true;
    s->rejected = true;
    if (s->call) s->call->done_.store(true, std::memory_order_release);
    nghttp2_nv nv[] = {Nv(":status", status)};
    nghttp2_submit_response(c->session, s->id, nv, 1, nullptr);
    MarkDirty(c);
  }

  // Ends a call the transport gives up on (bad message, deadline): the
  // handler hears OnCancel, the client gets `st`.
  static void Abort(Server::Conn* c, Server::Stream* s, const Status& st) {
    if (s->ended) return;
    bool was_done = s->call->done_.exchange(true, std::memory_order_acq_rel);
    s->out.clear();
    s->out_head = 0;
    s->out_offset = 0;
    s->call->pending_.store(0, std::memory_order_relaxed);
    if (!s->headers_sent) {
      TrailersOnly(c, s, st);
    } else {
      s->finishing = true;
      s->final = st;
      s->rejected = true;
      if (s->deferred) {
        s->deferred = false;
        nghttp2_session_resume_data(c->session, s->id);
      }
      MarkDirty(c);
    }
    if (!was_done && s->handler) s->handler->OnCancel();
  }

  static ssize_t ReadData(nghttp2_session* session, int32_t stream_id,
                          uint8_t* buf, size_t length, uint32_t* flags,
                          nghttp2_data_source* source, void* user_data) {
    auto* c = static_cast<Server::Conn*>(user_data);
    auto* s = static_cast<Server::Stream*>(source->ptr);
    size_t n = 0;
    while (n < length && !s->OutEmpty()) {
      const std::string& m = s->out[s->out_head];
      size_t k = std::min(length - n, m.size() - s->out_offset);
      std::memcpy(buf + n, m.data() + s->out_offset, k);
      n += k;
      s->out_offset += k;
      if (s->out_offset == m.size()) s->PopOut();
    }
    if (s->call) s->call->pending_.fetch_sub(n, std::memory_order_relaxed);
    if (!s->OutEmpty()) return static_cast<ssize_t>(n);
    if (s->finishing) {
      *flags |= NGHTTP2_DATA_FLAG_EOF | NGHTTP2_DATA_FLAG_NO_END_STREAM;
      std::string code = std::to_string(s->final.code);
      std::string msg = PercentEncode(s->final.message);
      std::vector<nghttp2_nv> nv = {Nv("grpc-status", code)};
      if (!msg.empty()) nv.push_back(Nv("grpc-message", msg));
      nghttp2_submit_trailer(session, stream_id, nv.data(), nv.size());
      s->ended = true;
      return static_cast<ssize_t>(n);
    }
    if (n > 0) {
      if (!s->drained_note) {
        s->drained_note = true;
        c->drained.push_back(s);
      }
      return static_cast<ssize_t>(n);
    }
    s->deferred = true;
    return NGHTTP2_ERR_DEFERRED;
  }

  static void StartResponse(Server::Conn* c, Server::Stream* s) {
    s->headers_sent = true;
    nghttp2_nv nv[] = {Nv(":status", "200"),
                       Nv("content-type", "application/grpc")};
    nghttp2_data_provider dp;
    dp.source.ptr = s;
    dp.read_callback = &Bridge::ReadData;
    nghttp2_submit_response(c->session, s->id, nv, 2, &dp);
  }

  static int OnBeginHeaders(nghttp2_session*, const nghttp2_frame* frame,
                            void* user_data) {
    auto* c = static_cast<Server::Conn*>(user_data);
    if (frame->hd.type != NGHTTP2_HEADERS ||
        frame->headers.cat != NGHTTP2_HCAT_REQUEST) {
      return 0;
    }
    auto s = std::make_unique<Server::Stream>();
    s->id = frame->hd.stream_id;
    s->call = Call::Make(c->server, c->id, s->id);
    s->call->metadata_.reserve(4);
    s->call->peer_ = c->peer;
    s->call->cert_cn_ = c->cert_cn;
    c->streams[s->id] = std::move(s);
    return 0;
  }

  static int OnHeader(nghttp2_session*, const nghttp2_frame* frame,
                      const uint8_t* name, size_t namelen,
                      const uint8_t* value, size_t valuelen, uint8_t,
                      void* user_data) {
    auto* c = static_cast<Server::Conn*>(user_data);
    if (frame->hd.type != NGHTTP2_HEADERS ||
        frame->headers.cat != NGHTTP2_HCAT_REQUEST) {
      return 0;  // trailers from the client carry nothing we use
    }
    Server::Stream* s = StreamOf(c, frame->hd.stream_id);
    if (s == nullptr) return 0;
    std::string_view n(reinterpret_cast<const char*>(name), namelen);
    std::string_view v(reinterpret_cast<const char*>(value), valuelen);
    if (n == ":method") {
      s->post = v == "POST";
    } else if (n == ":path") {
      s->call->method_ = v;
    } else if (n == "content-type") {
      constexpr std::string_view kGrpc = "application/grpc";
      s->grpc_content = v.substr(0, kGrpc.size()) == kGrpc &&
                        (v.size() == kGrpc.size() || v[kGrpc.size()] == '+' ||
                         v[kGrpc.size()] == ';');
    } else if (n == "grpc-timeout") {
      s->timeout_ms = ParseGrpcTimeoutMs(v);
    } else if (!n.empty() && n[0] != ':' && !Reserved(n)) {
      s->call->metadata_.emplace_back(n, v);
    }
    return 0;
  }

  static void StartCall(Server::Conn* c, Server::Stream* s) {
    s->started = true;
    Server* srv = c->server;
    {
      absl::MutexLock l(&srv->stats_mu_);
      ++srv->stats_.calls;
    }
    if (!s->post) return HttpError(c, s, "405");
    if (!s->grpc_content) return HttpError(c, s, "415");
    auto it = srv->methods_.find(s->call->method_);
    const HandlerFactory* f = nullptr;
    if (it != srv->methods_.end()) {
      f = &it->second;
    } else if (srv->opts_.fallback) {
      f = &srv->opts_.fallback;
    }
    if (f == nullptr) {
      return TrailersOnly(
          c, s, Status{12, absl::StrCat("unknown method ", s->call->method_)});
    }
    if (s->timeout_ms >= 0) {
      srv->deadlines_.emplace(NowMs() + s->timeout_ms,
                              std::make_pair(c->id, s->id));
    }
    s->handler = (*f)(s->call);
    if (s->handler == nullptr) {
      TrailersOnly(c, s, Status{12, "unimplemented"});
    }
  }

  static void HalfClose(Server::Conn* c, Server::Stream* s) {
    if (s->rejected || s->handler == nullptr) return;
    if (!s->in.empty()) {
      return Abort(c, s, Status{13, "grpc: incomplete message at stream end"});
    }
    s->handler->OnHalfClose();
  }

  static int OnFrameRecv(nghttp2_session*, const nghttp2_frame* frame,
                         void* user_data) {
    auto* c = static_cast<Server::Conn*>(user_data);
    Server* srv = c->server;
    switch (frame->hd.type) {
      case NGHTTP2_HEADERS: {
        Server::Stream* s = StreamOf(c, frame->hd.stream_id);
        if (s == nullptr) return 0;
        if (frame->headers.cat == NGHTTP2_HCAT_REQUEST && !s->started) {
          StartCall(c, s);
        }
        if (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) HalfClose(c, s);
        return 0;
      }
      case NGHTTP2_DATA: {
        if (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) {
          Server::Stream* s = StreamOf(c, frame->hd.stream_id);
          if (s != nullptr) HalfClose(c, s);
        }
        return 0;
      }
      case NGHTTP2_PING: {
        if (frame->hd.flags & NGHTTP2_FLAG_ACK) {
          c->ping_sent_ms = 0;
          return 0;
        }
        // gRPC's enforcement: with no call open, pings closer together
        // than min_ping_interval_ms are strikes.
        int64_t now = NowMs();
        if (c->streams.empty() && c->last_client_ping_ms != 0 &&
            now - c->last_client_ping_ms < srv->opts_.min_ping_interval_ms) {
          if (++c->ping_strikes > srv->opts_.max_ping_strikes) {
            static constexpr std::string_view kWhy = "too_many_pings";
            nghttp2_submit_goaway(
                c->session, NGHTTP2_FLAG_NONE,
                nghttp2_session_get_last_proc_stream_id(c->session),
                NGHTTP2_ENHANCE_YOUR_CALM,
                reinterpret_cast<const uint8_t*>(kWhy.data()), kWhy.size());
            nghttp2_session_terminate_session(c->session,
                                              NGHTTP2_ENHANCE_YOUR_CALM);
          }
        }
        c->last_client_ping_ms = now;
        return 0;
      }
      default:
        return 0;
    }
  }

  static int OnData(nghttp2_session*, uint8_t, int32_t stream_id,
                    const uint8_t* data, size_t len, void* user_data) {
    auto* c = static_cast<Server::Conn*>(user_data);
    Server::Stream* s = StreamOf(c, stream_id);
    if (s == nullptr || s->rejected || s->handler == nullptr) return 0;
    if (s->in.empty() && len >= kPrefixBytes && data[0] == 0) {
      // The usual case, one whole message in the chunk: no staging copy.
      const size_t n = MessageLength(data);
      if (len == kPrefixBytes + n &&
          n <= c->server->opts_.max_recv_message_bytes) {
        s->handler->OnMessage(std::string(
            reinterpret_cast<const char*>(data) + kPrefixBytes, n));
        return 0;
      }
    }
    s->in.append(reinterpret_cast<const char*>(data), len);
    size_t pos = 0;
    const size_t max = c->server->opts_.max_recv_message_bytes;
    while (s->in.size() - pos >= kPrefixBytes) {
      auto* p = reinterpret_cast<const unsigned char*>(s->in.data() + pos);
      const size_t n = MessageLength(p);
      if (p[0] != 0) {
        s->in.clear();
        Abort(c, s,
              Status{12, "grpc: compressed messages are not supported"});
        return 0;
      }
      if (n > max) {
        s->in.clear();
        // grpc-go's words, as etcd answers.
        Abort(c, s,
              Status{8, absl::StrCat("grpc: received message larger than "
                                     "max (", n, " vs. ", max, ")")});
        return 0;
      }
      if (s->in.size() - pos - kPrefixBytes < n) {
        // The rest is on its way: make room for it once.
        if (pos == 0) s->in.reserve(kPrefixBytes + n);
        break;
      }
      std::string msg = s->in.substr(pos + kPrefixBytes, n);
      pos += kPrefixBytes + n;
      s->handler->OnMessage(std::move(msg));
      if (s->rejected) return 0;
    }
    s->in.erase(0, pos);
    return 0;
  }

  static int OnStreamClose(nghttp2_session*, int32_t stream_id, uint32_t,
                           void* user_data) {
    auto* c = static_cast<Server::Conn*>(user_data);
    auto it = c->streams.find(stream_id);
    if (it == c->streams.end()) return 0;
    std::unique_ptr<Server::Stream> s = std::move(it->second);
    c->streams.erase(it);
    std::erase(c->drained, s.get());
    s->ended = true;
    if (s->call != nullptr &&
        !s->call->done_.exchange(true, std::memory_order_acq_rel) &&
        s->handler != nullptr) {
      s->handler->OnCancel();
    }
    return 0;
  }
};

// ---------------------------------------------------------------------------

Server::Server(ServerOptions o) : opts_(std::move(o)) {}

absl::StatusOr<std::unique_ptr<Server>> Server::Create(ServerOptions o) {
  std::unique_ptr<Server> s(new Server(std::move(o)));
  s->epoll_fd_ = epoll_create1(EPOLL_CLOEXEC);
  s->event_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (s->epoll_fd_ < 0 || s->event_fd_ < 0) {
    return absl::InternalError(
        absl::StrCat("grpc_h2: epoll/eventfd: ", std::strerror(errno)));
  }
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = 0;  // the event fd; connections are 1, 2, ...
  epoll_ctl(s->epoll_fd_, EPOLL_CTL_ADD, s->event_fd_, &ev);
  return s;
}

Server::~Server() {
  Stop();
  if (epoll_fd_ >= 0) ::close(epoll_fd_);
  if (event_fd_ >= 0) ::close(event_fd_);
}

void Server::Register(std::string method, HandlerFactory factory) {
  methods_[std::move(method)] = std::move(factory);
}

void Server::Start() {
  absl::MutexLock l(&mu_);
  if (started_ || stopping_) return;
  started_ = true;
  thread_ = std::thread([this] {
    NameThisThread("grpc-h2", ThreadKind::kIo);
    Loop();
  });
}

void Server::AddConnection(int fd, std::string peer, std::string cert_cn,
                           std::string initial) {
  {
    absl::MutexLock l(&mu_);
    if (!stopping_) {
      new_conns_.push_back(NewConn{fd, std::move(peer), std::move(cert_cn),
                                   std::move(initial)});
      fd = -1;
    }
  }
  if (fd >= 0) {
    ::close(fd);
    return;
  }
  Wake();
}

void Server::Stop() {
  {
    absl::MutexLock l(&mu_);
    if (stopping_ && !thread_.joinable()) return;
    stopping_ = true;
  }
  Wake();
  if (thread_.joinable()) thread_.join();
  absl::MutexLock l(&mu_);
  for (NewConn& n : new_conns_) ::close(n.fd);
  new_conns_.clear();
  ops_.clear();
}

ServerStats Server::Stats() const {
  absl::MutexLock l(&stats_mu_);
  return stats_;
}

namespace {

// The calling thread's held answers (Server::HoldAnswers).
struct HeldAnswers {
  const Server* server = nullptr;
  int ops = 0;
  bool woke = false;  // past the bound: the loop was woken for them
};
thread_local HeldAnswers held_answers;
// The server whose loop runs on this thread.
thread_local const Server* loop_of_this_thread = nullptr;

}  // namespace

void Server::HoldAnswers() { held_answers = HeldAnswers{this, 0, false}; }

void Server::ReleaseAnswers() {
  const HeldAnswers h = held_answers;
  held_answers = HeldAnswers{};
  if (h.server != this || h.ops == 0 || h.woke) return;
  // On the loop's own thread (an engine batch run from after_reads), the
  // turn goes on to run them.
  if (loop_of_this_thread == this) return;
  if (!turn_mu_.TryLock()) {
    Wake();  // the loop is in its turn: it runs them now or next
    return;
  }
  RunQueuedOps();
  FlushDirty();
  turn_mu_.Unlock();
  absl::MutexLock l(&stats_mu_);
  ++stats_.sent_by_callers;
}

bool Server::Enqueue(Op op) {
  bool wake = false;
  HeldAnswers& h = held_answers;
  const bool held = h.server == this && !h.woke;
  {
    absl::MutexLock l(&mu_);
    if (stopping_) return false;
    ops_.push_back(std::move(op));
    if (held && h.ops < kMaxHeldOps) {
      ++h.ops;
      return true;
    }
    if (held) h.woke = true;
    if (!woken_) {
      woken_ = true;
      wake = true;
    }
  }
  if (wake) {
    uint64_t one = 1;
    (void)!::write(event_fd_, &one, sizeof one);
  }
  return true;
}

void Server::Wake() {
  {
    absl::MutexLock l(&mu_);
    if (woken_) return;
    woken_ = true;
  }
  uint64_t one = 1;
  (void)!::write(event_fd_, &one, sizeof one);
}

// ---------------------------------------------------------------------------
// The loop.

namespace {

nghttp2_session_callbacks* Callbacks() {
  static nghttp2_session_callbacks* cb = [] {
    nghttp2_session_callbacks* c = nullptr;
    nghttp2_session_callbacks_new(&c);
    nghttp2_session_callbacks_set_on_begin_headers_callback(
        c, &Bridge::OnBeginHeaders);
    nghttp2_session_callbacks_set_on_header_callback(c, &Bridge::OnHeader);
    nghttp2_session_callbacks_set_on_frame_recv_callback(c,
                                                         &Bridge::OnFrameRecv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(c,
                                                              &Bridge::OnData);
    nghttp2_session_callbacks_set_on_stream_close_callback(
        c, &Bridge::OnStreamClose);
    return c;
  }();
  return cb;
}

// nghttp2 leaves HTTP semantics to us: gRPC needs none of its checks, and
// one of them refuses what etcd's Go clients send (clientv3 makes the
// endpoint "http://host:port" the :authority).
nghttp2_option* Options() {
  static nghttp2_option* o = [] {
    nghttp2_option* opt = nullptr;
    nghttp2_option_new(&opt);
    nghttp2_option_set_no_http_messaging(opt, 1);
    // gRPC clients reset every stream the server ends before they
    // half-close (watch and keep-alive streams, relayed calls): nghttp2's
    // rapid-reset guard (1000 at once, 33 a second) would tear a busy
    // client's connection down. A reset costs us a cancelled handler, and
    // the engine's queue is bounded, so the bucket is larger here.
    nghttp2_option_set_stream_reset_rate_limit(opt, kResetBurst, kResetRate);
    return opt;
  }();
  return o;
}

}  // namespace

void Server::Loop() {
  epoll_event events[64];
  int64_t next_keepalive_scan_ms = 0;
  loop_of_this_thread = this;
  turn_mu_.Lock();
  while (true) {
    int64_t now = NowMs();
    int timeout = static_cast<int>(NextTimerMs(now));
    turn_mu_.Unlock();
    int n = epoll_wait(epoll_fd_, events, 64, timeout);
    turn_mu_.Lock();
    std::vector<NewConn> fresh;
    std::vector<Op> ops;
    bool stop;
    bool woke = false;
    for (int i = 0; i < n; ++i) {
      if (events[i].data.u64 == 0) {
        uint64_t v;
        (void)!::read(event_fd_, &v, sizeof v);
        woke = true;
      }
    }
    {
      absl::MutexLock l(&mu_);
      fresh.swap(new_conns_);
      ops.swap(ops_);
      woken_ = false;
      stop = stopping_;
    }
    if (opts_.before_turn) opts_.before_turn();
    if (woke) {
      absl::MutexLock l(&stats_mu_);
      ++stats_.wakeups;
    }
    now = NowMs();
    for (NewConn& nc : fresh) {
      auto c = std::make_unique<Conn>();
      c->server = this;
      c->id = next_conn_id_++;
      c->fd = nc.fd;
      c->peer = std::move(nc.peer);
      c->cert_cn = std::move(nc.cert_cn);
      c->last_read_ms = now;
      int flags = ::fcntl(c->fd, F_GETFL);
      ::fcntl(c->fd, F_SETFL, flags | O_NONBLOCK);
      int one = 1;
      ::setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      nghttp2_session_server_new2(&c->session, Callbacks(), c.get(),
                                  Options());
      nghttp2_settings_entry iv[] = {
          {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS,
           opts_.max_concurrent_streams},
          {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, opts_.stream_window_bytes}};
      nghttp2_submit_settings(c->session, NGHTTP2_FLAG_NONE, iv, 2);
      nghttp2_session_set_local_window_size(
          c->session, NGHTTP2_FLAG_NONE, 0,
          static_cast<int32_t>(opts_.connection_window_bytes));
      epoll_event ev{};
      ev.events = EPOLLIN;
      ev.data.u64 = c->id;
      epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, c->fd, &ev);
      Conn* raw = c.get();
      conns_[c->id] = std::move(c);
      {
        absl::MutexLock l(&stats_mu_);
        ++stats_.connections;
        stats_.open_connections = static_cast<int>(conns_.size());
      }
      if (!nc.initial.empty() &&
          nghttp2_session_mem_recv(
              raw->session, reinterpret_cast<const uint8_t*>(nc.initial.data()),
              nc.initial.size()) < 0) {
        raw->broken = true;
      }
      Bridge::MarkDirty(raw);
    }
    for (int i = 0; i < n; ++i) {
      uint64_t id = events[i].data.u64;
      if (id == 0) continue;
      auto it = conns_.find(id);
      if (it == conns_.end()) continue;
      Conn& c = *it->second;
      if (events[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) ReadConn(c);
      if (events[i].events & EPOLLOUT) Bridge::MarkDirty(&c);
    }
    RunOps(ops);
    Timers(now);
    if (opts_.keepalive_ms > 0 && now >= next_keepalive_scan_ms) {
      next_keepalive_scan_ms = now + 1000;
      for (auto& [id, c] : conns_) {
        if (c->ping_sent_ms != 0) {
          if (now - c->ping_sent_ms > opts_.keepalive_timeout_ms) {
            c->broken = true;
            Bridge::MarkDirty(c.get());
          }
        } else if (now - c->last_read_ms >= opts_.keepalive_ms) {
          c->ping_sent_ms = now;
          nghttp2_submit_ping(c->session, NGHTTP2_FLAG_NONE, nullptr);
          Bridge::MarkDirty(c.get());
        }
      }
    }
    if (stop) {
      for (auto& [id, c] : conns_) {
        for (auto& [sid, s] : c->streams) {
          Bridge::Abort(c.get(), s.get(),
                        Status{14, "grpc: the server is stopping"});
        }
        nghttp2_submit_goaway(
            c->session, NGHTTP2_FLAG_NONE,
            nghttp2_session_get_last_proc_stream_id(c->session),
            NGHTTP2_NO_ERROR, nullptr, 0);
        Bridge::MarkDirty(c.get());
      }
    }
    if (opts_.after_reads) {
      opts_.after_reads();
      // Answers given meanwhile (by after_reads running the engine here).
      RunQueuedOps();
    }
    FlushDirty();
    if (stop) {
      std::vector<uint64_t> all;
      for (auto& [id, c] : conns_) all.push_back(id);
      for (uint64_t id : all) CloseConn(id);
      turn_mu_.Unlock();
      return;
    }
  }
}

void Server::FlushDirty() {
  std::vector<Conn*> dirty;
  dirty.swap(dirty_);
  std::vector<uint64_t> closing;
  for (Conn* c : dirty) {
    c->dirty = false;
    Flush(*c);
    std::vector<Stream*> drained;
    drained.swap(c->drained);
    for (Stream* s : drained) {
      s->drained_note = false;
      if (s->handler != nullptr && !s->call->done()) s->handler->OnDrained();
    }
    if (c->broken) closing.push_back(c->id);
  }
  for (uint64_t id : closing) CloseConn(id);
}

void Server::ReadConn(Conn& c) {
  char buf[kReadChunkBytes];
  for (int i = 0; i < kMaxReadsPerTurn && !c.broken; ++i) {
    ssize_t n = ::read(c.fd, buf, sizeof buf);
    if (n > 0) {
      c.last_read_ms = NowMs();
      c.ping_sent_ms = 0;  // anything from the client shows it is there
      if (nghttp2_session_mem_recv(c.session,
                                   reinterpret_cast<const uint8_t*>(buf),
                                   static_cast<size_t>(n)) < 0) {
        c.broken = true;
      }
      if (static_cast<size_t>(n) < sizeof buf) break;
    } else if (n == 0) {
      c.broken = true;
    } else if (errno == EINTR) {
      continue;
    } else {
      if (errno != EAGAIN && errno != EWOULDBLOCK) c.broken = true;
      break;
    }
  }
  Bridge::MarkDirty(&c);
}

void Server::RunQueuedOps() {
  std::vector<Op> ops;
  {
    absl::MutexLock l(&mu_);
    ops.swap(ops_);
  }
  RunOps(ops);
}

void Server::RunOps(std::vector<Op>& ops) {
  for (Op& op : ops) {
    auto ci = conns_.find(op.conn);
    if (ci == conns_.end()) continue;
    Conn* c = ci->second.get();
    Stream* s = Bridge::StreamOf(c, op.stream);
    if (s == nullptr || s->ended || s->rejected) continue;
    c->ping_strikes = 0;  // we send: the client's pings are welcome
    if (op.finish) {
      s->finishing = true;
      s->final = std::move(op.status);
      if (!s->headers_sent && s->OutEmpty()) {
        Bridge::TrailersOnly(c, s, s->final);
        continue;
      }
    } else {
      s->out.push_back(std::move(op.message));
    }
    if (!s->headers_sent) {
      Bridge::StartResponse(c, s);
    } else if (s->deferred) {
      s->deferred = false;
      nghttp2_session_resume_data(c->session, s->id);
    }
    Bridge::MarkDirty(c);
  }
}

void Server::Flush(Conn& c) {
  if (c.broken) return;
  uint64_t writes = 0;
  // Frames are pulled from the session up to kMaxUnsentBytes at a time;
  // when a batch went out whole, the next one is pulled.
  bool more = true;
  while (more && !c.broken) {
    if (c.unsent_offset > 0) {
      c.unsent.erase(0, c.unsent_offset);
      c.unsent_offset = 0;
    }
    more = false;
    while (!c.broken) {
      if (c.unsent.size() >= kMaxUnsentBytes) {
        more = true;
        break;
      }
      const uint8_t* data = nullptr;
      ssize_t n = nghttp2_session_mem_send(c.session, &data);
      if (n < 0) c.broken = true;
      if (n <= 0) break;
      c.unsent.append(reinterpret_cast<const char*>(data),
                      static_cast<size_t>(n));
    }
    while (!c.broken && c.unsent_offset < c.unsent.size()) {
      ssize_t w = ::send(c.fd, c.unsent.data() + c.unsent_offset,
                         c.unsent.size() - c.unsent_offset, MSG_NOSIGNAL);
      ++writes;
      if (w > 0) {
        c.unsent_offset += static_cast<size_t>(w);
      } else if (w < 0 && errno == EINTR) {
        continue;
      } else {
        if (w == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) {
          c.broken = true;
        }
        more = false;  // the socket is full: EPOLLOUT brings us back
        break;
      }
    }
    if (c.unsent_offset == c.unsent.size()) {
      c.unsent.clear();
      c.unsent_offset = 0;
    }
  }
  if (writes > 0) {
    absl::MutexLock l(&stats_mu_);
    stats_.writes += writes;
  }
  bool want_out = !c.unsent.empty();
  if (want_out != c.want_out && !c.broken) {
    c.want_out = want_out;
    epoll_event ev{};
    ev.events = EPOLLIN | (want_out ? uint32_t{EPOLLOUT} : 0u);
    ev.data.u64 = c.id;
    epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, c.fd, &ev);
  }
  if (c.unsent.empty() && !nghttp2_session_want_read(c.session) &&
      !nghttp2_session_want_write(c.session)) {
    c.broken = true;  // the session is over (GOAWAY both ways)
  }
}

void Server::CloseConn(uint64_t id) {
  auto it = conns_.find(id);
  if (it == conns_.end()) return;
  std::unique_ptr<Conn> c = std::move(it->second);
  conns_.erase(it);
  std::erase(dirty_, c.get());
  for (auto& [sid, s] : c->streams) {
    if (s->call != nullptr &&
        !s->call->done_.exchange(true, std::memory_order_acq_rel) &&
        s->handler != nullptr) {
      s->handler->OnCancel();
    }
  }
  c->streams.clear();
  nghttp2_session_del(c->session);
  epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, c->fd, nullptr);
  ::close(c->fd);
  absl::MutexLock l(&stats_mu_);
  stats_.open_connections = static_cast<int>(conns_.size());
}

void Server::Timers(int64_t now_ms) {
  while (!deadlines_.empty() && deadlines_.begin()->first <= now_ms) {
    auto [conn, stream] = deadlines_.begin()->second;
    deadlines_.erase(deadlines_.begin());
    auto ci = conns_.find(conn);
    if (ci == conns_.end()) continue;
    Stream* s = Bridge::StreamOf(ci->second.get(), stream);
    if (s == nullptr || s->ended || s->call->done()) continue;
    Bridge::Abort(ci->second.get(), s, Status{4, "Deadline Exceeded"});
  }
}

int64_t Server::NextTimerMs(int64_t now_ms) const {
  int64_t t = -1;
  if (!deadlines_.empty()) {
    t = std::max<int64_t>(0, deadlines_.begin()->first - now_ms);
  }
  if (opts_.keepalive_ms > 0 && !conns_.empty()) {
    t = t < 0 ? 1000 : std::min<int64_t>(t, 1000);
  }
  return t;
}

}  // namespace detcd::shim::h2
