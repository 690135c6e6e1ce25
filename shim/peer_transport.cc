#include "shim/peer_transport.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <deque>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "shim/log.h"
#include "shim/thread_name.h"

namespace detcd::shim {
namespace {

constexpr char kMagic[] = "detcd-peer1";
constexpr size_t kMagicLen = sizeof(kMagic) - 1;
constexpr size_t kHelloLen = kMagicLen + 24;
constexpr size_t kAnswerLen = kMagicLen + 1;

enum AnswerCode : uint8_t {
  kAccepted = 0,
  kClusterMismatch = 1,
  kUnknownSender = 2,
  kReceiverMismatch = 3,
  kCnNotAllowed = 4,
  kRemovedSender = 5,
};

// etcd's rafthttp writes with a 5 s deadline per write; a peer that takes
// longer is treated as gone and redialed.
constexpr int kWriteTimeoutMs = 5000;
// How often an idle sender checks that its connection is still open.
constexpr int kIdleCheckMs = 200;
// Most bytes of queued small messages one write takes (see SenderLoop), and
// the receiver's read buffer: a batch usually arrives in one read.
constexpr size_t kMaxBatchBytes = 256 << 10;

int64_t NowNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}
int64_t NowMs() { return NowNs() / 1'000'000; }
double SecondsSince(int64_t start_ns) {
  return static_cast<double>(NowNs() - start_ns) / 1e9;
}

constexpr char kProbingPath[] = "/raft/probing";

std::string Hex(uint64_t id) { return absl::StrFormat("%x", id); }

// The listener never writes after its answer, so a readable socket means
// it closed (or reset) the connection. Checked when idle and before every
// write: after a peer's restart the kernel still takes the first write on
// the old connection (the peer answers it with a reset), and what it
// carried would be lost; an answer to the restarted peer's own request,
// say (seen: both HashKV answers of its initial corruption check). Such a
// batch waits for the next connection instead.
bool PeerClosed(const Stream& s) {
  pollfd pfd{s.fd(), POLLIN, 0};
  return ::poll(&pfd, 1, 0) > 0;
}

void PutU64(char* p, uint64_t v) {
  for (int i = 7; i >= 0; --i) {
    p[i] = static_cast<char>(v & 0xff);
    v >>= 8;
  }
}
uint64_t GetU64(const char* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | static_cast<unsigned char>(p[i]);
  return v;
}
void PutU32(char* p, uint32_t v) {
  for (int i = 3; i >= 0; --i) {
    p[i] = static_cast<char>(v & 0xff);
    v >>= 8;
  }
}
uint32_t GetU32(const char* p) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v = (v << 8) | static_cast<unsigned char>(p[i]);
  return v;
}

bool ReadFull(Stream& s, char* buf, size_t n) {
  while (n > 0) {
    long r = s.Read(buf, n);
    if (r <= 0) return false;
    buf += r;
    n -= static_cast<size_t>(r);
  }
  return true;
}

void SetTimeouts(int fd, int ms) {
  timeval tv{ms / 1000, (ms % 1000) * 1000};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

void TuneSocket(int fd) {
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  // Finds peers that vanished without a FIN (power loss, partition) on
  // connections we only read from.
  ::setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
  int idle = 30, intvl = 10, cnt = 3;
  ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
  ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl));
  ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
}

// Go's error texts are lower case ("connection refused").
std::string GoErr(int err) {
  std::string s = strerror(err);
  if (!s.empty()) s[0] = static_cast<char>(std::tolower(s[0]));
  return s;
}

struct PeerUrl {
  bool tls = false;
  std::string host;  // without brackets
  std::string port;
  std::string hostport;  // as written, for messages
  // unix / unixs: the socket's file name, "host:port" as written (etcd's
  // semantics), relative to the working directory.
  bool unix_socket = false;
};

absl::StatusOr<PeerUrl> ParseUrl(const std::string& url) {
  PeerUrl u;
  std::string rest = url;
  if (absl::StartsWith(rest, "https://")) {
    u.tls = true;
    rest = rest.substr(8);
  } else if (absl::StartsWith(rest, "http://")) {
    rest = rest.substr(7);
  } else if (absl::StartsWith(rest, "unixs://")) {
    u.tls = true;
    u.unix_socket = true;
    rest = rest.substr(8);
  } else if (absl::StartsWith(rest, "unix://")) {
    u.unix_socket = true;
    rest = rest.substr(7);
  } else if (rest.find("://") != std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat(
        "URL scheme must be http, https, unix, or unixs: ", url));
  }
  rest = rest.substr(0, rest.find('/'));
  u.hostport = rest;
  size_t colon;
  if (!rest.empty() && rest[0] == '[') {
    size_t close = rest.find(']');
    if (close == std::string::npos || close + 1 >= rest.size() || rest[close + 1] != ':') {
      return absl::InvalidArgumentError(absl::StrCat("bad address in URL ", url));
    }
    u.host = rest.substr(1, close - 1);
    colon = close + 1;
  } else {
    colon = rest.rfind(':');
    if (colon == std::string::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat("address ", rest, ": missing port in address"));
    }
    u.host = rest.substr(0, colon);
  }
  u.port = rest.substr(colon + 1);
  int port;
  // A unix socket's "port" is only part of its file name.
  if (u.unix_socket) return u;
  if (!absl::SimpleAtoi(u.port, &port) || port < 0 || port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat("bad port in URL ", url));
  }
  return u;
}

std::string AddrString(const sockaddr* sa) {
  if (sa->sa_family == AF_UNIX) return "@";  // as Go shows an unnamed one
  char host[INET6_ADDRSTRLEN] = "?";
  int port = 0;
  if (sa->sa_family == AF_INET) {
    auto* in = reinterpret_cast<const sockaddr_in*>(sa);
    inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
    port = ntohs(in->sin_port);
    return absl::StrCat(host, ":", port);
  }
  if (sa->sa_family == AF_INET6) {
    auto* in6 = reinterpret_cast<const sockaddr_in6*>(sa);
    inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
    port = ntohs(in6->sin6_port);
    return absl::StrCat("[", host, "]:", port);
  }
  return "?";
}

// etcd's peer unix listener (transport.NewUnixListener): a stale socket
// file is removed first, then the socket is bound at path.
absl::StatusOr<int> ListenUnix(const std::string& path) {
  const std::string where = absl::StrCat("listen unix ", path);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof(addr.sun_path)) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": bind: invalid argument"));
  }
  memcpy(addr.sun_path, path.data(), path.size());
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
    return absl::UnavailableError(
        absl::StrCat("remove ", path, ": ", GoErr(errno)));
  }
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return absl::UnavailableError(absl::StrCat(where, ": socket: ", GoErr(errno)));
  const char* op = "bind";
  int err = 0;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    err = errno;
  } else if (::listen(fd, 128) != 0) {
    op = "listen";
    err = errno;
    ::unlink(path.c_str());
  }
  if (err != 0) {
    ::close(fd);
    return absl::UnavailableError(absl::StrCat(where, ": ", op, ": ", GoErr(err)));
  }
  return fd;
}

// An HTTP request line starts with a method token (RFC 9110: letters
// here) and a space; the peer hello starts with "detcd-peer1".
bool LooksLikeHttp(const char* p, size_t n) {
  size_t i = 0;
  while (i < n && std::isupper(static_cast<unsigned char>(p[i]))) ++i;
  return i > 0 && i < n && p[i] == ' ';
}

const char* AnswerText(uint8_t code) {
  switch (code) {
    case kClusterMismatch:
      return "request sent was ignored by remote peer due to cluster ID "
             "mismatch";
    case kUnknownSender:
      return "remote peer does not know the local member";
    case kReceiverMismatch:
      return "remote peer is not the member this URL was given for "
             "(member ID mismatch)";
    case kCnNotAllowed:
      return "remote peer rejected the local certificate's common name";
    case kRemovedSender:
      return "the member has been permanently removed from the cluster";
    default:
      return "remote peer rejected the stream";
  }
}

// The answer of etcd's probing handler (xiang90/probing): Go's JSON of
// Health{OK, Now}, a time in RFC 3339 with nanoseconds.
std::string ProbingAnswer() {
  const std::string body =
      absl::StrCat("{\"OK\":true,\"Now\":\"",
                   absl::FormatTime("%Y-%m-%dT%H:%M:%E*SZ", absl::Now(),
                                    absl::UTCTimeZone()),
                   "\"}\n");
  return absl::StrCat(
      "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
      "Content-Length: ",
      body.size(), "\r\nConnection: close\r\n\r\n", body);
}

}  // namespace

// The event-driven etcd_network_* families (see the header). Children are
// looked up at each event: events are rare (snapshots, breaks, a report
// every few seconds), and etcd's children likewise appear at their first.
struct PeerTransport::Families {
  explicit Families(metrics::Registry& r)
      : disconnected(r.NewCounterFamily(
            "etcd_network_disconnected_peers_total",
            "The total number of disconnected peers.", {"Local", "Remote"})),
        recv_failures(r.NewCounterFamily(
            "etcd_network_peer_received_failures_total",
            "The total number of receive failures from peers.", {"From"})),
        snap_sent(r.NewCounterFamily("etcd_network_snapshot_send_success",
                                     "Total number of successful snapshot "
                                     "sends",
                                     {"To"})),
        snap_send_failures(r.NewCounterFamily(
            "etcd_network_snapshot_send_failures",
            "Total number of snapshot send failures", {"To"})),
        snap_send_inflight(r.NewGaugeFamily(
            "etcd_network_snapshot_send_inflights_total",
            "Total number of inflight snapshot sends", {"To"})),
        snap_send_secs(r.NewHistogramFamily(
            "etcd_network_snapshot_send_total_duration_seconds",
            "Total latency distributions of v3 snapshot sends", {"To"},
            metrics::ExponentialBuckets(0.1, 2, 10))),
        snap_received(r.NewCounterFamily(
            "etcd_network_snapshot_receive_success",
            "Total number of successful snapshot receives", {"From"})),
        snap_recv_failures(r.NewCounterFamily(
            "etcd_network_snapshot_receive_failures",
            "Total number of snapshot receive failures", {"From"})),
        snap_recv_inflight(r.NewGaugeFamily(
            "etcd_network_snapshot_receive_inflights_total",
            "Total number of inflight snapshot receives", {"From"})),
        snap_recv_secs(r.NewHistogramFamily(
            "etcd_network_snapshot_receive_total_duration_seconds",
            "Total latency distributions of v3 snapshot receives", {"From"},
            metrics::ExponentialBuckets(0.1, 2, 10))),
        rtt(r.NewHistogramFamily("etcd_network_peer_round_trip_time_seconds",
                                 "Round-Trip-Time histogram between peers",
                                 {"To"},
                                 metrics::ExponentialBuckets(0.0001, 2, 16))) {}
  metrics::Family<metrics::Counter>& disconnected;
  metrics::Family<metrics::Counter>& recv_failures;
  metrics::Family<metrics::Counter>& snap_sent;
  metrics::Family<metrics::Counter>& snap_send_failures;
  metrics::Family<metrics::Gauge>& snap_send_inflight;
  metrics::Family<metrics::Histogram>& snap_send_secs;
  metrics::Family<metrics::Counter>& snap_received;
  metrics::Family<metrics::Counter>& snap_recv_failures;
  metrics::Family<metrics::Gauge>& snap_recv_inflight;
  metrics::Family<metrics::Histogram>& snap_recv_secs;
  metrics::Family<metrics::Histogram>& rtt;
};

struct PeerTransport::Received {
  std::atomic<uint64_t> bytes{0};
  std::atomic<uint64_t> failures{0};
  std::atomic<uint64_t> snapshots{0};
  std::atomic<uint64_t> snapshot_failures{0};
};

struct PeerTransport::Peer {
  explicit Peer(uint64_t i) : id(i) {}
  const uint64_t id;
  absl::Mutex mu;
  absl::CondVar cv;
  std::vector<std::string> urls ABSL_GUARDED_BY(mu);
  uint64_t urls_version ABSL_GUARDED_BY(mu) = 0;
  // A queued payload and, for a snapshot, who waits for its outcome.
  struct Queued {
    std::string payload;
    env::Transport::SnapshotDone done;
    bool snapshot = false;  // preceded on the wire by a marker frame
    // Framed bytes a short FlushSends write left: they go first, as is.
    bool raw = false;
    // A snapshot's image, the payload's rest (SendSnapshotParts).
    std::shared_ptr<const std::string> tail;
    size_t size() const {
      return payload.size() + (tail != nullptr ? tail->size() : 0);
    }
    // Bytes counted against queue_max_bytes: a snapshot has a bound of its
    // own (max_snapshot_bytes), and raft sends one at a time.
    size_t budget() const { return snapshot ? 0 : payload.size(); }
  };
  std::deque<Queued> queue ABSL_GUARDED_BY(mu);
  size_t queued_bytes ABSL_GUARDED_BY(mu) = 0;
  bool stopping ABSL_GUARDED_BY(mu) = false;
  // The sender's connection while FlushSends may write to it too (a plain
  // socket: TryWrites), else null. Whoever writes sets `writing` first and
  // writes only if it was clear; the sender waits for it to clear before
  // it writes or closes the connection.
  Stream* stream ABSL_GUARDED_BY(mu) = nullptr;
  bool writing ABSL_GUARDED_BY(mu) = false;
  bool broken ABSL_GUARDED_BY(mu) = false;  // a FlushSends write failed
  std::string broken_reason ABSL_GUARDED_BY(mu);  // its error
  bool flush_pending ABSL_GUARDED_BY(mu) = false;  // in HeldSends::pending
  // From a failed dial to the next successful one (header comment).
  bool unreachable ABSL_GUARDED_BY(mu) = false;
  bool redial ABSL_GUARDED_BY(mu) = false;  // end the backoff now
  std::atomic<int64_t> last_unreachable_report_ms{-1'000'000};
  // A dup of the socket being dialed or used, so another thread can
  // shutdown(2) it to unblock the sender without racing its close().
  int kill_fd ABSL_GUARDED_BY(mu) = -1;
  uint64_t drops_unlogged ABSL_GUARDED_BY(mu) = 0;
  int64_t last_drop_log_ms ABSL_GUARDED_BY(mu) = -1'000'000;

  std::atomic<uint64_t> sent_bytes{0};
  std::atomic<uint64_t> writes{0};
  std::atomic<uint64_t> joined{0};
  std::atomic<uint64_t> send_failures{0};
  std::atomic<uint64_t> dial_failures{0};
  std::atomic<bool> connected{false};
  std::atomic<int64_t> connected_since_ns{0};  // CLOCK_MONOTONIC
  std::atomic<uint64_t> disconnects{0};
  std::atomic<uint64_t> snapshots_sent{0};
  std::atomic<uint64_t> snapshot_send_failures{0};
  // The prober's view (written by the prober thread only).
  std::atomic<uint64_t> probes{0};
  std::atomic<uint64_t> probe_failures{0};
  std::atomic<int64_t> srtt_ns{0};
  std::atomic<bool> probe_healthy{false};
  size_t probe_url = 0;            // pinned URL; prober thread only
  int64_t next_probe_ms = 0;       // prober thread only; 0: not seen yet
  int64_t next_rtt_report_ms = 0;  // prober thread only
  std::string last_probe_error;    // prober thread only
  std::atomic<bool> done{false};
  std::thread thread;

  // Registers fd as the current socket; false if the peer is stopping.
  bool SetKill(int fd) {
    absl::MutexLock l(&mu);
    if (stopping) return false;
    if (kill_fd >= 0) ::close(kill_fd);
    kill_fd = ::fcntl(fd, F_DUPFD_CLOEXEC, 0);
    return true;
  }
  void ClearKill() {
    absl::MutexLock l(&mu);
    if (kill_fd >= 0) ::close(kill_fd);
    kill_fd = -1;
  }
  void Halt() {
    std::deque<Queued> dropped;
    {
      absl::MutexLock l(&mu);
      stopping = true;
      dropped.swap(queue);
      queued_bytes = 0;
      if (kill_fd >= 0) ::shutdown(kill_fd, SHUT_RDWR);
      cv.SignalAll();
    }
    for (Queued& q : dropped) {
      if (q.done) q.done(false);
    }
  }
  bool Stopping() {
    absl::MutexLock l(&mu);
    return stopping;
  }
  // Moves what one write takes from the front of the queue into *batch:
  // small messages up to kMaxBatchBytes, or alone a snapshot, a message
  // larger than `chunk` or raw bytes (written in chunks, without a copy).
  void TakeBatchLocked(size_t chunk, std::vector<Queued>* batch)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    size_t bytes = 0;
    while (!queue.empty()) {
      Queued& q = queue.front();
      const bool alone = Alone(q, chunk);
      if (!batch->empty() && (alone || bytes + q.size() > kMaxBatchBytes)) {
        break;
      }
      bytes += q.size();
      queued_bytes -= q.budget();
      batch->push_back(std::move(q));
      queue.pop_front();
      if (alone) break;
    }
  }
  static bool Alone(const Queued& q, size_t chunk) {
    return q.snapshot || q.raw || q.size() > chunk;
  }
  // Frames a batch of small messages into *out (after `coalesce`, when
  // set, joined what it can); the batch's payloads are moved out.
  void Frame(const std::function<void(std::vector<std::string>*)>& coalesce,
             std::vector<Queued>* batch, std::string* out) {
    std::vector<std::string> payloads;
    payloads.reserve(batch->size());
    for (Queued& q : *batch) payloads.push_back(std::move(q.payload));
    if (coalesce && payloads.size() > 1) {
      const size_t before = payloads.size();
      coalesce(&payloads);
      joined.fetch_add(before - payloads.size(), std::memory_order_relaxed);
    }
    out->clear();
    for (const std::string& payload : payloads) {
      char header[4];
      PutU32(header, static_cast<uint32_t>(payload.size()));
      out->append(header, 4);
      out->append(payload);
    }
  }
  // Puts a batch that was not written back at the front of the queue.
  void RequeueLocked(std::vector<Queued>* batch)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    for (auto it = batch->rbegin(); it != batch->rend(); ++it) {
      queued_bytes += it->budget();
      queue.push_front(std::move(*it));
    }
    batch->clear();
  }
};

// The calling thread's held sends (HoldSends): the peers whose queues grew.
struct PeerTransport::HeldSends {
  const PeerTransport* transport = nullptr;
  std::vector<std::shared_ptr<Peer>> pending;
};

PeerTransport::HeldSends& PeerTransport::Held() {
  thread_local HeldSends held;
  return held;
}

struct PeerTransport::Listener {
  std::string url;
  bool tls = false;
  int fd = -1;
  int port = 0;
  std::string unix_path;  // removed when the listener closes, as etcd's
  std::thread thread;
};

struct PeerTransport::Incoming {
  std::thread thread;
  int kill_fd = -1;   // dup of the socket (see Peer::kill_fd)
  uint64_t from = 0;  // sender, once the handshake passed
  bool done = false;
};

PeerTransport::PeerTransport(PeerTransportOptions options)
    : opts_(std::move(options)), cluster_id_(opts_.cluster_id) {
  if (opts_.registry != nullptr) {
    families_ = std::make_unique<Families>(*opts_.registry);
  }
}

PeerTransport::~PeerTransport() { Stop(); }

absl::StatusOr<std::unique_ptr<PeerTransport>> PeerTransport::Start(
    PeerTransportOptions options) {
  if (!options.on_message) {
    return absl::InvalidArgumentError("peer transport needs an on_message callback");
  }
  if (options.max_frame_bytes == 0 || options.max_frame_bytes > UINT32_MAX ||
      options.max_snapshot_bytes == 0 ||
      options.max_snapshot_bytes > UINT32_MAX ||
      options.queue_max_messages == 0 || options.write_chunk_bytes == 0 ||
      options.dial_timeout_ms <= 0 || options.accept_timeout_ms <= 0 ||
      options.backoff_min_ms <= 0 || options.backoff_max_ms < options.backoff_min_ms ||
      options.max_incoming_connections <= 0) {
    return absl::InvalidArgumentError("peer transport: invalid limits");
  }
  std::unique_ptr<PeerTransport> t(new PeerTransport(std::move(options)));
  const PeerTransportOptions& o = t->opts_;

  if (o.tls.enabled()) {
    // Bad certificate files are a start-up error, not a dial-time one.
    auto client = t->ClientTls();
    if (!client.ok()) return client.status();
  }

  for (const std::string& url : o.listen_urls) {
    auto u = ParseUrl(url);
    if (!u.ok()) return u.status();
    if (u->tls && !t->tls_server_) {
      if (!o.tls.enabled()) {
        return absl::InvalidArgumentError(absl::StrCat(
            "TLS key/cert (--peer-cert-file, --peer-key-file) must be provided "
            "for ", url, " (or --peer-auto-tls)"));
      }
      auto server = TlsContext::Server(o.tls, {});
      if (!server.ok()) return server.status();
      t->tls_server_ = *server;
    }
    if (u->unix_socket) {
      auto fd = ListenUnix(u->hostport);
      if (!fd.ok()) return fd.status();
      auto l = std::make_unique<Listener>();
      l->url = url;
      l->tls = u->tls;
      l->fd = *fd;
      l->unix_path = u->hostport;
      t->listeners_.push_back(std::move(l));
      continue;
    }
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE;
    addrinfo* res = nullptr;
    int gai = ::getaddrinfo(u->host.empty() ? nullptr : u->host.c_str(),
                            u->port.c_str(), &hints, &res);
    if (gai != 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "listen tcp ", u->hostport, ": lookup ", u->host, ": ", gai_strerror(gai)));
    }
    // Bind the first address (IPv4 first when the resolver lists it first).
    int fd = ::socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int err = fd < 0 ? errno : 0;
    const char* op = "socket";
    if (fd >= 0) {
      int one = 1;
      ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
      op = "bind";
      if (::bind(fd, res->ai_addr, res->ai_addrlen) != 0) {
        err = errno;
      } else if (::listen(fd, 128) != 0) {
        op = "listen";
        err = errno;
      }
    }
    ::freeaddrinfo(res);
    if (err != 0) {
      if (fd >= 0) ::close(fd);
      return absl::UnavailableError(
          absl::StrCat("listen tcp ", u->hostport, ": ", op, ": ", GoErr(err)));
    }
    sockaddr_storage ss{};
    socklen_t len = sizeof(ss);
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len);
    auto l = std::make_unique<Listener>();
    l->url = url;
    l->tls = u->tls;
    l->fd = fd;
    l->port = ss.ss_family == AF_INET6
                  ? ntohs(reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port)
                  : ntohs(reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
    t->listeners_.push_back(std::move(l));
  }
  if (::pipe2(t->wake_pipe_, O_CLOEXEC | O_NONBLOCK) != 0) {
    return absl::InternalError(absl::StrCat("pipe: ", strerror(errno)));
  }
  for (auto& l : t->listeners_) {
    Listener* raw = l.get();
    PeerTransport* self = t.get();
    l->thread = std::thread([self, raw] { self->AcceptLoop(raw); });
  }
  if (t->opts_.probe_interval_ms > 0) {
    PeerTransport* self = t.get();
    t->prober_ = std::thread([self] { self->ProbeLoop(); });
  }
  return t;
}

std::vector<int> PeerTransport::ListenPorts() const {
  std::vector<int> ports;
  for (const auto& l : listeners_) ports.push_back(l->port);
  return ports;
}

absl::StatusOr<std::shared_ptr<TlsContext>> PeerTransport::ClientTls() {
  absl::MutexLock l(&tls_mu_);
  if (tls_client_ == nullptr) {
    auto c = TlsContext::Client(opts_.tls, {});
    if (!c.ok()) return c.status();
    tls_client_ = *c;
  }
  return tls_client_;
}

void PeerTransport::SetClusterId(uint64_t cluster_id) { cluster_id_.store(cluster_id); }

// ---------------------------------------------------------------- sending

void PeerTransport::Send(uint64_t to, std::string payload) {
  Enqueue(to, std::move(payload), nullptr);
}

void PeerTransport::SendSnapshot(uint64_t to, std::string payload,
                                 SnapshotDone done) {
  SendSnapshotParts(to, std::move(payload), nullptr, std::move(done));
}

void PeerTransport::SendSnapshotParts(uint64_t to, std::string head,
                                      std::shared_ptr<const std::string> tail,
                                      SnapshotDone done) {
  // Every outcome (written, dropped, failed) passes through `counted`
  // exactly once: the snapshot metrics are kept there.
  const int64_t start_ns = NowNs();
  Families* f = families_.get();
  const std::string label = Hex(to);
  if (f != nullptr) f->snap_send_inflight.WithLabels({label}).Inc();
  auto counted = [this, to, f, label, start_ns](bool delivered) {
    if (f != nullptr) {
      f->snap_send_inflight.WithLabels({label}).Dec();
      (delivered ? f->snap_sent : f->snap_send_failures)
          .WithLabels({label})
          .Inc();
      if (delivered) {
        f->snap_send_secs.WithLabels({label}).Observe(SecondsSince(start_ns));
      }
    }
    absl::MutexLock l(&mu_);
    auto it = peers_.find(to);
    if (it != peers_.end()) {
      (delivered ? it->second->snapshots_sent
                 : it->second->snapshot_send_failures)
          .fetch_add(1, std::memory_order_relaxed);
    }
  };
  if (!opts_.post_to_engine) {
    // As env::Transport's default: reported at once.
    Enqueue(to, std::move(head), counted, /*snapshot=*/true, std::move(tail));
    done(true);
    return;
  }
  // The report crosses to the engine's thread; the engine never sees it
  // from a transport thread.
  auto post = opts_.post_to_engine;
  Enqueue(
      to, std::move(head),
      [post, counted, done = std::move(done)](bool delivered) {
        counted(delivered);
        post([done, delivered] { done(delivered); });
      },
      /*snapshot=*/true, std::move(tail));
}

void PeerTransport::Enqueue(uint64_t to, std::string payload, SnapshotDone done,
                            bool snapshot,
                            std::shared_ptr<const std::string> tail) {
  if (payload.empty()) {  // a zero-length frame means nothing
    if (done) done(false);
    return;
  }
  std::shared_ptr<Peer> p;
  {
    absl::MutexLock l(&mu_);
    auto it = peers_.find(to);
    if (it != peers_.end()) p = it->second;
  }
  if (p == nullptr) {
    dropped_unknown_.fetch_add(1, std::memory_order_relaxed);
    if (done) done(false);
    return;
  }
  const size_t limit =
      snapshot ? opts_.max_snapshot_bytes : opts_.max_frame_bytes;
  const size_t size = payload.size() + (tail != nullptr ? tail->size() : 0);
  if (size > limit) {
    p->send_failures.fetch_add(1, std::memory_order_relaxed);
    DLOG_WARN(
        "dropped internal Raft message since it is larger than the frame limit",
        {{"remote-peer-id", Hex(to)},
         {"message-size", size},
         {"snapshot", snapshot},
         {"max-frame-bytes", limit}});
    if (done) done(false);
    return;
  }
  const size_t budget = snapshot ? 0 : payload.size();
  uint64_t dropped_to_log = 0;
  std::vector<SnapshotDone> failed;  // told outside the lock
  bool unreachable = false;
  bool queued = false;
  HeldSends& held = Held();
  const bool hold = held.transport == this;
  bool newly_pending = false;
  {
    absl::MutexLock l(&p->mu);
    if (p->stopping) {
      if (done) failed.push_back(std::move(done));
    } else if (p->unreachable) {
      unreachable = true;
      p->send_failures.fetch_add(1, std::memory_order_relaxed);
      if (done) failed.push_back(std::move(done));
    } else {
      // Bounded: drop the oldest messages to make room.
      uint64_t dropped = 0;
      // Raw bytes (the rest of a frame) are never dropped: the stream
      // would lose its framing.
      while (!p->queue.empty() && !p->queue.front().raw &&
             (p->queue.size() >= opts_.queue_max_messages ||
              p->queued_bytes + budget > opts_.queue_max_bytes)) {
        p->queued_bytes -= p->queue.front().budget();
        if (p->queue.front().done) {
          failed.push_back(std::move(p->queue.front().done));
        }
        p->queue.pop_front();
        ++dropped;
      }
      p->queued_bytes += budget;
      p->queue.push_back(Peer::Queued{std::move(payload), std::move(done),
                                      snapshot, false, std::move(tail)});
      queued = true;
      newly_pending = hold && !std::exchange(p->flush_pending, true);
      if (dropped > 0) {
        p->send_failures.fetch_add(dropped, std::memory_order_relaxed);
        p->drops_unlogged += dropped;
        int64_t now = NowMs();
        // One line per second per peer at most.
        if (now - p->last_drop_log_ms >= 1000) {
          p->last_drop_log_ms = now;
          dropped_to_log = p->drops_unlogged;
          p->drops_unlogged = 0;
        }
      }
    }
  }
  // Outside the lock: the sender waits with a deadline, and absl wakes
  // such a waiter at once; woken under our lock, it would block on it and
  // need a second wake-up when we unlock. Held, FlushSends writes the
  // message or wakes the sender.
  if (queued && !hold) p->cv.Signal();
  if (newly_pending) held.pending.push_back(p);
  for (SnapshotDone& d : failed) d(false);
  if (unreachable) ReportUnreachable(*p, /*force=*/false);
  if (dropped_to_log > 0) {
    DLOG_WARN("dropped internal Raft message since sending buffer is full (overloaded network)",
              {{"local-member-id", Hex(opts_.local_id)},
               {"remote-peer-id", Hex(to)},
               {"dropped-messages", dropped_to_log},
               {"remote-peer-active", p->connected.load()}});
  }
}

void PeerTransport::HoldSends() { Held().transport = this; }

void PeerTransport::FlushSends() {
  HeldSends& held = Held();
  if (held.transport != this) return;
  held.transport = nullptr;
  for (const std::shared_ptr<Peer>& p : held.pending) {
    if (FlushPeer(*p)) p->cv.Signal();
  }
  held.pending.clear();
}

void PeerTransport::FlushHeldSends() {
  if (Held().transport != this) return;
  FlushSends();
  HoldSends();
}

bool PeerTransport::FlushPeer(Peer& p) {
  std::vector<Peer::Queued> batch;
  Stream* stream = nullptr;
  {
    absl::MutexLock l(&p.mu);
    p.flush_pending = false;
    if (p.queue.empty()) return false;
    if (p.stream == nullptr || p.writing || p.broken || p.stopping ||
        Peer::Alone(p.queue.front(), opts_.write_chunk_bytes)) {
      return true;
    }
    p.TakeBatchLocked(opts_.write_chunk_bytes, &batch);
    p.writing = true;
    stream = p.stream;
  }
  // The stream stays open while `writing` is set (the sender waits).
  const bool closed = PeerClosed(*stream);
  std::string out;
  long n = 0;
  int err = 0;
  if (!closed) {
    p.Frame(opts_.coalesce, &batch, &out);
    n = stream->TryWrite(out.data(), out.size());
    err = errno;
  }
  absl::MutexLock l(&p.mu);
  p.writing = false;
  if (closed) {  // the sender finds it closed too, and redials
    p.RequeueLocked(&batch);
    return true;
  }
  if (n < 0) {
    p.send_failures.fetch_add(batch.size(), std::memory_order_relaxed);
    p.broken = true;
    p.broken_reason = absl::StrCat("write: ", GoErr(err));
    return true;
  }
  if (n > 0) {
    p.sent_bytes.fetch_add(static_cast<uint64_t>(n), std::memory_order_relaxed);
    p.writes.fetch_add(1, std::memory_order_relaxed);
  }
  if (static_cast<size_t>(n) < out.size()) {
    // The socket is full: the rest goes first, as is, from the sender
    // thread, which can wait for room.
    Peer::Queued rest;
    rest.payload = out.substr(static_cast<size_t>(n));
    rest.raw = true;
    p.queued_bytes += rest.budget();
    p.queue.push_front(std::move(rest));
    return true;
  }
  // The sender may be waiting to close the connection (stream cleared).
  return !p.queue.empty() || p.stream == nullptr;
}

void PeerTransport::DropUnreachable(Peer& p) {
  std::deque<Peer::Queued> dropped;
  {
    absl::MutexLock l(&p.mu);
    p.unreachable = true;
    dropped.swap(p.queue);
    p.queued_bytes = 0;
  }
  p.send_failures.fetch_add(dropped.size(), std::memory_order_relaxed);
  for (Peer::Queued& q : dropped) {
    if (q.done) q.done(false);
  }
  ReportUnreachable(p, /*force=*/true);
}

void PeerTransport::PeerDialedIn(uint64_t id) {
  absl::MutexLock l(&mu_);
  auto it = peers_.find(id);
  if (it == peers_.end()) return;
  Peer& p = *it->second;
  absl::MutexLock pl(&p.mu);
  if (!p.unreachable) return;
  // It is up (etcd's writer would attach to the stream it dialed): what
  // is sent from now on waits for our dial, which starts at once; an
  // answer to what it sends first, say.
  p.unreachable = false;
  p.redial = true;
  p.cv.SignalAll();
}

void PeerTransport::ReportUnreachable(Peer& p, bool force) {
  if (!opts_.on_unreachable) return;
  const int64_t now = NowMs();
  int64_t last = p.last_unreachable_report_ms.load(std::memory_order_relaxed);
  if (!force && now - last < opts_.unreachable_report_ms) return;
  // One of racing callers reports.
  if (!p.last_unreachable_report_ms.compare_exchange_strong(last, now)) return;
  opts_.on_unreachable(p.id);
}

void PeerTransport::SetPeer(uint64_t id, std::vector<std::string> urls) {
  if (id == opts_.local_id) return;
  absl::MutexLock l(&mu_);
  if (stopping_) return;
  ReapLocked();
  auto it = peers_.find(id);
  if (it != peers_.end()) {
    Peer& p = *it->second;
    absl::MutexLock pl(&p.mu);
    if (p.urls != urls) {
      p.urls = std::move(urls);
      ++p.urls_version;  // the sender redials with the new URLs
      p.cv.SignalAll();
    }
    return;
  }
  auto p = std::make_shared<Peer>(id);
  {
    absl::MutexLock pl(&p->mu);
    p->urls = std::move(urls);
  }
  p->thread = std::thread([this, p] {
    NameThisThread("peer-send", ThreadKind::kIo);
    SenderLoop(p);
  });
  peers_[id] = std::move(p);
  RecvCounterLocked(id);
}

void PeerTransport::RemovePeer(uint64_t id) {
  std::shared_ptr<Peer> p;
  {
    absl::MutexLock l(&mu_);
    auto it = peers_.find(id);
    if (it != peers_.end()) {
      p = it->second;
      peers_.erase(it);
      retired_.push_back(p);
    }
    // Its incoming streams go too, as etcd closes a removed member's
    // streams.
    for (auto& [cid, in] : incoming_) {
      if (in->from == id && in->kill_fd >= 0) ::shutdown(in->kill_fd, SHUT_RDWR);
    }
    ReapLocked();
  }
  if (p != nullptr) p->Halt();
}

void PeerTransport::SenderLoop(std::shared_ptr<Peer> p) {
  int backoff_ms = opts_.backoff_min_ms;
  size_t next_url = 0;
  bool failing = false;  // log the first failure of a streak only
  for (;;) {
    std::vector<std::string> urls;
    uint64_t version;
    {
      absl::MutexLock l(&p->mu);
      while (!p->stopping && p->urls.empty()) p->cv.Wait(&p->mu);
      if (p->stopping) break;
      urls = p->urls;
      version = p->urls_version;
    }
    const std::string url = urls[next_url++ % urls.size()];
    auto s = Dial(*p, url);
    if (!s.ok()) {
      p->ClearKill();
      if (p->Stopping()) break;
      p->dial_failures.fetch_add(1, std::memory_order_relaxed);
      DropUnreachable(*p);
      if (!failing) {
        failing = true;
        DLOG_WARN("failed to dial remote peer",
                  {{"local-member-id", Hex(opts_.local_id)},
                   {"remote-peer-id", Hex(p->id)},
                   {"address", url},
                   {"error", std::string(s.status().message())}});
      }
      absl::MutexLock l(&p->mu);
      absl::Time deadline = absl::Now() + absl::Milliseconds(backoff_ms);
      while (!p->stopping && p->urls_version == version && !p->redial) {
        if (p->cv.WaitWithDeadline(&p->mu, deadline)) break;
      }
      if (p->urls_version != version || std::exchange(p->redial, false)) {
        backoff_ms = opts_.backoff_min_ms;
      } else {
        backoff_ms = std::min(backoff_ms * 2, opts_.backoff_max_ms);
      }
      continue;
    }
    failing = false;
    backoff_ms = opts_.backoff_min_ms;
    {
      absl::MutexLock l(&p->mu);
      p->unreachable = false;
    }
    Stream& stream = **s;
    if (stream.TryWrites()) {
      // Before the stream counts as connected: FlushSends may use it.
      absl::MutexLock l(&p->mu);
      p->stream = &stream;
    }
    p->connected_since_ns.store(NowMs() * 1'000'000);
    p->connected.store(true);
    DLOG_INFO("established TCP streaming connection with remote peer",
              {{"stream-writer-type", "detcd-peer1"},
               {"local-member-id", Hex(opts_.local_id)},
               {"remote-peer-id", Hex(p->id)},
               {"address", url}});
    std::string reason = "stopped";
    // What one wake-up writes: every message queued by then, framed into
    // one buffer and one write (etcd's stream writer likewise flushes once
    // when its queue runs dry). Under load the engine queues several
    // appends and acks per wake-up; a send(2) each cost more CPU (the
    // loopback receive path runs inside the sender's send) than the
    // messages themselves. Nothing waits for more: a lone message leaves
    // at once. On a plain connection FlushSends writes most small
    // messages from the engine thread itself (see the header).
    std::vector<Peer::Queued> batch;
    std::string out;  // reused: the framed batch
    for (;;) {
      batch.clear();
      {
        absl::MutexLock l(&p->mu);
        absl::Time deadline = absl::Now() + absl::Milliseconds(kIdleCheckMs);
        while (!p->stopping && p->urls_version == version && !p->broken &&
               (p->queue.empty() || p->writing)) {
          if (p->cv.WaitWithDeadline(&p->mu, deadline)) break;
        }
        if (p->stopping) break;
        if (p->urls_version != version) {
          reason = "peer URLs changed";
          break;
        }
        if (p->broken) {
          reason = std::exchange(p->broken_reason, "");
          break;
        }
        if (p->writing) continue;  // the idle check waits for the flush
        p->TakeBatchLocked(opts_.write_chunk_bytes, &batch);
        p->writing = true;
      }
      bool written = true;
      bool closed = PeerClosed(stream);
      if (closed) {
        // The batch waits for the next connection.
      } else if (batch.empty()) {
        // An idle check.
      } else if (batch.size() == 1 &&
                 Peer::Alone(batch[0], opts_.write_chunk_bytes)) {
        Peer::Queued& q = batch[0];
        // A snapshot's marker: an empty frame (see the header).
        static constexpr char kMarker[4] = {0, 0, 0, 0};
        if (q.raw) {
          written = stream.WriteAll(q.payload.data(), q.size());
          if (written) {
            p->sent_bytes.fetch_add(q.size(), std::memory_order_relaxed);
          }
        } else {
          if (q.snapshot) {
            written = stream.WriteAll(kMarker, sizeof(kMarker));
            if (written) p->sent_bytes.fetch_add(4, std::memory_order_relaxed);
          }
          written = written && WriteFrame(*p, stream, q.payload, q.tail.get());
        }
        // Written whole to the connection: as far as this side can know,
        // the transfer is over (etcd's snapshot sender reports at the same
        // point).
        if (q.done) q.done(written);
      } else {
        p->Frame(opts_.coalesce, &batch, &out);
        written = stream.WriteAll(out.data(), out.size());
        if (written) {
          p->sent_bytes.fetch_add(out.size(), std::memory_order_relaxed);
        }
        // A long message once makes the buffer large; do not keep it.
        if (out.capacity() > 2 * kMaxBatchBytes) std::string().swap(out);
      }
      {
        absl::MutexLock l(&p->mu);
        p->writing = false;
        if (closed) p->RequeueLocked(&batch);
      }
      if (closed) {
        reason = "closed by remote peer";
        break;
      }
      if (batch.empty()) continue;
      p->writes.fetch_add(1, std::memory_order_relaxed);
      if (!written) {
        // Everything in the failed write is lost (or half-delivered, which
        // the receiver discards with the broken stream).
        p->send_failures.fetch_add(batch.size(), std::memory_order_relaxed);
        reason = absl::StrCat("write: ", GoErr(errno));
        break;
      }
    }
    {
      // Nobody else writes to the connection once it is closed, and the
      // rest of a frame it was writing means nothing on the next one.
      absl::MutexLock l(&p->mu);
      p->stream = nullptr;
      p->broken = false;
      while (p->writing) p->cv.Wait(&p->mu);
      while (!p->queue.empty() && p->queue.front().raw) {
        p->queued_bytes -= p->queue.front().budget();
        p->queue.pop_front();
        p->send_failures.fetch_add(1, std::memory_order_relaxed);
      }
    }
    p->connected.store(false);
    stream.Shutdown();
    s->reset();
    p->ClearKill();
    if (p->Stopping()) break;
    // etcd counts a peer turning inactive after a failure; a change of its
    // URLs is not one.
    if (reason != "peer URLs changed") {
      p->disconnects.fetch_add(1, std::memory_order_relaxed);
      if (families_ != nullptr) {
        families_->disconnected.WithLabels({Hex(opts_.local_id), Hex(p->id)})
            .Inc();
      }
    }
    DLOG_WARN("lost TCP streaming connection with remote peer",
              {{"stream-writer-type", "detcd-peer1"},
               {"local-member-id", Hex(opts_.local_id)},
               {"remote-peer-id", Hex(p->id)},
               {"error", reason}});
  }
  p->connected.store(false);
  p->done.store(true);
}

absl::StatusOr<std::unique_ptr<Stream>> PeerTransport::Connect(
    const std::string& url, int64_t deadline,
    const std::function<bool(int fd)>& set_kill,
    const std::function<bool()>& stopping) {
  auto u = ParseUrl(url);
  if (!u.ok()) return u.status();
  const std::string what =
      absl::StrCat(u->unix_socket ? "dial unix " : "dial tcp ", u->hostport);

  // A unix socket: one address, the file named by the URL's host:port.
  sockaddr_un unix_addr{};
  addrinfo unix_ai{};
  if (u->unix_socket) {
    if (u->hostport.size() >= sizeof(unix_addr.sun_path)) {
      return absl::UnavailableError(absl::StrCat(what, ": invalid argument"));
    }
    unix_addr.sun_family = AF_UNIX;
    memcpy(unix_addr.sun_path, u->hostport.data(), u->hostport.size());
    unix_ai.ai_family = AF_UNIX;
    unix_ai.ai_socktype = SOCK_STREAM;
    unix_ai.ai_addr = reinterpret_cast<sockaddr*>(&unix_addr);
    unix_ai.ai_addrlen = sizeof(unix_addr);
  }
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  int gai = u->unix_socket
                ? 0
                : ::getaddrinfo(u->host.c_str(), u->port.c_str(), &hints, &res);
  if (u->unix_socket) res = &unix_ai;
  if (gai != 0) {
    return absl::UnavailableError(
        absl::StrCat(what, ": lookup ", u->host, ": ", gai_strerror(gai)));
  }
  int fd = -1;
  std::string last_error = "no addresses";
  for (addrinfo* ai = res; ai != nullptr && fd < 0; ai = ai->ai_next) {
    int s = ::socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (s < 0) {
      last_error = absl::StrCat("socket: ", GoErr(errno));
      continue;
    }
    if (!set_kill(s)) {
      ::close(s);
      if (!u->unix_socket) ::freeaddrinfo(res);
      return absl::CancelledError("stopping");
    }
    int err = 0;
    if (::connect(s, ai->ai_addr, ai->ai_addrlen) != 0) {
      err = errno;
      if (err == EINPROGRESS) {
        err = ETIMEDOUT;
        // Short slices so that Stop/RemovePeer are noticed promptly.
        while (NowMs() < deadline && !stopping()) {
          pollfd pfd{s, POLLOUT, 0};
          int wait = static_cast<int>(std::min<int64_t>(50, deadline - NowMs()));
          if (::poll(&pfd, 1, std::max(wait, 0)) > 0) {
            socklen_t len = sizeof(err);
            ::getsockopt(s, SOL_SOCKET, SO_ERROR, &err, &len);
            break;
          }
        }
      }
    }
    if (err == 0) {
      fd = s;
    } else {
      last_error = absl::StrCat("connect: ", GoErr(err));
      ::close(s);
    }
  }
  if (!u->unix_socket) ::freeaddrinfo(res);
  if (fd < 0) return absl::UnavailableError(absl::StrCat(what, ": ", last_error));

  ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) & ~O_NONBLOCK);
  TuneSocket(fd);
  int left = static_cast<int>(std::max<int64_t>(1, deadline - NowMs()));
  if (u->tls) {
    auto ctx = ClientTls();
    if (!ctx.ok()) {
      ::close(fd);
      return absl::UnavailableError(absl::StrCat(what, ": ", ctx.status().message()));
    }
    const std::string& name =
        opts_.tls.server_name.empty() ? u->host : opts_.tls.server_name;
    auto s = (*ctx)->Connect(fd, name, left);
    if (!s.ok()) return absl::UnavailableError(absl::StrCat(what, ": ", s.status().message()));
    return *std::move(s);
  }
  return PlainStream(fd);
}

absl::StatusOr<std::unique_ptr<Stream>> PeerTransport::Dial(
    Peer& p, const std::string& url) {
  const int64_t deadline = NowMs() + opts_.dial_timeout_ms;
  auto connected = Connect(
      url, deadline, [&p](int fd) { return p.SetKill(fd); },
      [&p] { return p.Stopping(); });
  if (!connected.ok()) return connected.status();
  std::unique_ptr<Stream> stream = *std::move(connected);
  auto u = ParseUrl(url);
  const std::string what =
      absl::StrCat(u->unix_socket ? "dial unix " : "dial tcp ", u->hostport);
  int left = static_cast<int>(std::max<int64_t>(1, deadline - NowMs()));
  SetTimeouts(stream->fd(), left);
  char hello[kHelloLen];
  memcpy(hello, kMagic, kMagicLen);
  PutU64(hello + kMagicLen, cluster_id_.load());
  PutU64(hello + kMagicLen + 8, opts_.local_id);
  PutU64(hello + kMagicLen + 16, p.id);
  char answer[kAnswerLen];
  if (!stream->WriteAll(hello, sizeof(hello)) || !ReadFull(*stream, answer, sizeof(answer))) {
    // A TLS 1.3 listener refuses our certificate only after our side of
    // the handshake ended: its alert arrives here.
    const std::string tls_error = stream->error();
    return absl::UnavailableError(absl::StrCat(
        what, ": ", tls_error.empty() ? "handshake: connection closed or timed out"
                                      : tls_error));
  }
  if (memcmp(answer, kMagic, kMagicLen) != 0) {
    return absl::UnavailableError(absl::StrCat(what, ": not a detcd peer port"));
  }
  uint8_t code = static_cast<uint8_t>(answer[kMagicLen]);
  if (code == kRemovedSender && opts_.on_removed) opts_.on_removed(p.id);
  if (code != kAccepted) {
    if (code == kClusterMismatch) {
      DLOG_ERROR("request sent was ignored by remote peer due to cluster ID mismatch",
                 {{"remote-peer-id", Hex(p.id)},
                  {"local-member-id", Hex(opts_.local_id)},
                  {"local-member-cluster-id", Hex(cluster_id_.load())}});
    }
    return absl::PermissionDeniedError(absl::StrCat(what, ": ", AnswerText(code)));
  }
  SetTimeouts(stream->fd(), kWriteTimeoutMs);
  return stream;
}

bool PeerTransport::WriteFrame(Peer& p, Stream& s, const std::string& payload,
                               const std::string* tail) {
  char header[4];
  const size_t size = payload.size() + (tail != nullptr ? tail->size() : 0);
  PutU32(header, static_cast<uint32_t>(size));
  const size_t chunk = opts_.write_chunk_bytes;
  if (tail == nullptr && payload.size() <= chunk) {
    // One write for the common small message.
    std::string frame;
    frame.reserve(4 + payload.size());
    frame.append(header, 4);
    frame.append(payload);
    if (!s.WriteAll(frame.data(), frame.size())) return false;
    p.sent_bytes.fetch_add(frame.size(), std::memory_order_relaxed);
    return true;
  }
  if (!s.WriteAll(header, 4)) return false;
  p.sent_bytes.fetch_add(4, std::memory_order_relaxed);
  for (const std::string* part : {&payload, tail}) {
    if (part == nullptr) continue;
    for (size_t off = 0; off < part->size(); off += chunk) {
      size_t n = std::min(chunk, part->size() - off);
      if (!s.WriteAll(part->data() + off, n)) return false;
      p.sent_bytes.fetch_add(n, std::memory_order_relaxed);
    }
  }
  return true;
}

// -------------------------------------------------------------- receiving

void PeerTransport::AcceptLoop(Listener* l) {
  for (;;) {
    pollfd fds[2] = {{l->fd, POLLIN, 0}, {wake_pipe_[0], POLLIN, 0}};
    int r = ::poll(fds, 2, 1000);
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) return;
      ReapLocked();
    }
    if (r <= 0 || (fds[0].revents & POLLIN) == 0) continue;
    sockaddr_storage ss{};
    socklen_t len = sizeof(ss);
    int fd = ::accept4(l->fd, reinterpret_cast<sockaddr*>(&ss), &len, SOCK_CLOEXEC);
    if (fd < 0) {
      // Out of descriptors: back off rather than spin.
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
        ::poll(nullptr, 0, 100);
      }
      continue;
    }
    std::string remote = AddrString(reinterpret_cast<sockaddr*>(&ss));
    absl::MutexLock lock(&mu_);
    if (stopping_) {
      ::close(fd);
      return;
    }
    if (incoming_.size() >= static_cast<size_t>(opts_.max_incoming_connections)) {
      ::close(fd);
      rejected_.fetch_add(1, std::memory_order_relaxed);
      continue;
    }
    uint64_t id = next_conn_id_++;
    auto in = std::make_unique<Incoming>();
    in->kill_fd = ::fcntl(fd, F_DUPFD_CLOEXEC, 0);
    bool tls = l->tls;
    // The thread's first act needing mu_ waits until we insert below.
    in->thread = std::thread([this, id, fd, tls, remote] {
      NameThisThread("peer-recv", ThreadKind::kIo);
      ServeIncoming(id, fd, tls, remote);
    });
    incoming_[id] = std::move(in);
  }
}

void PeerTransport::ServeIncoming(uint64_t conn_id, int fd, bool tls, std::string remote) {
  // Everything that owns the connection lives in this block, so the socket
  // is closed before the connection is marked done.
  [&] {
    TuneSocket(fd);
    SetTimeouts(fd, opts_.accept_timeout_ms);
    std::unique_ptr<Stream> stream;
    if (tls) {
      HandshakeInfo info;
      auto s = tls_server_->Accept(fd, opts_.accept_timeout_ms, &info);
      if (!s.ok()) {
        rejected_.fetch_add(1, std::memory_order_relaxed);
        // etcd's HandshakeFailure log line, with its fields.
        if (info.have_certificate) {
          DLOG_WARN("rejected connection",
                    {{"remote-addr", remote},
                     {"server-name", info.server_name},
                     {"ip-addresses", info.ip_addresses},
                     {"dns-names", info.dns_names},
                     {"error", std::string(s.status().message())}});
        } else {
          DLOG_WARN("rejected connection",
                    {{"remote-addr", remote},
                     {"server-name", info.server_name},
                     {"error", std::string(s.status().message())}});
        }
        return;
      }
      stream = *std::move(s);
    } else {
      stream = PlainStream(fd);
    }
    char hello[kHelloLen];
    const bool magic = ReadFull(*stream, hello, kMagicLen) &&
                       memcmp(hello, kMagic, kMagicLen) == 0;
    if (!magic && LooksLikeHttp(hello, kMagicLen) &&
        absl::StartsWith(absl::string_view(hello, kMagicLen), "GET /raft/p")) {
      // etcd's prober (ours and etcd's own) asks "GET /raft/probing".
      std::string head(hello, kMagicLen);
      char c;
      while (head.find("\r\n\r\n") == std::string::npos && head.size() < 8192 &&
             stream->Read(&c, 1) == 1) {
        head.push_back(c);
      }
      if (absl::StartsWith(head, absl::StrCat("GET ", kProbingPath, " ")) ||
          absl::StartsWith(head, absl::StrCat("GET ", kProbingPath, "?"))) {
        const std::string answer = ProbingAnswer();
        stream->WriteAll(answer.data(), answer.size());
      }
      return;
    }
    if (!magic && opts_.serve_http && LooksLikeHttp(hello, kMagicLen)) {
      // A TLS stream keeps the rest of the record it decrypted (the rest of
      // the request) to itself, where the HTTP server's poll() on the socket
      // cannot see it: take the request head now. Reads of 64 KiB (more than
      // a TLS record) leave nothing behind; bounded by the accept timeouts.
      std::string initial(hello, kMagicLen);
      std::string more(64 * 1024, '\0');
      while (initial.find("\r\n\r\n") == std::string::npos &&
             initial.size() < 64 * 1024) {
        const long n = stream->Read(more.data(), more.size());
        if (n <= 0) break;
        initial.append(more.data(), static_cast<size_t>(n));
      }
      opts_.serve_http(std::move(stream), std::move(initial));
      return;
    }
    if (!magic || !ReadFull(*stream, hello + kMagicLen, kHelloLen - kMagicLen)) {
      rejected_.fetch_add(1, std::memory_order_relaxed);
      DLOG_WARN("rejected connection on peer port: not a detcd peer handshake",
                {{"remote-addr", remote}});
      return;
    }
    const uint64_t cid = GetU64(hello + kMagicLen);
    const uint64_t from = GetU64(hello + kMagicLen + 8);
    const uint64_t to = GetU64(hello + kMagicLen + 16);
    const uint64_t local_cid = cluster_id_.load();
    uint8_t code = kAccepted;
    std::shared_ptr<Received> received;
    if (cid != local_cid) {
      code = kClusterMismatch;
      DLOG_WARN("request cluster ID mismatch",
                {{"local-member-id", Hex(opts_.local_id)},
                 {"local-member-cluster-id", Hex(local_cid)},
                 {"remote-peer-id", Hex(from)},
                 {"remote-peer-cluster-id", Hex(cid)},
                 {"remote-addr", remote}});
    } else if (to != opts_.local_id) {
      code = kReceiverMismatch;
      DLOG_WARN("ignored streaming request; ID mismatch",
                {{"local-member-id", Hex(opts_.local_id)},
                 {"remote-peer-id-stream-handler", Hex(to)},
                 {"remote-peer-id-from", Hex(from)},
                 {"remote-addr", remote}});
    } else if (!opts_.allowed_cn.empty() && stream->peer_common_name() != opts_.allowed_cn) {
      code = kCnNotAllowed;
      DLOG_WARN("rejected peer connection: certificate common name not allowed",
                {{"remote-peer-id", Hex(from)},
                 {"common-name", stream->peer_common_name()},
                 {"allowed-cn", opts_.allowed_cn},
                 {"remote-addr", remote}});
    } else {
      absl::MutexLock l(&mu_);
      if (stopping_) return;
      if (!peers_.contains(from)) {
        code = opts_.is_removed && opts_.is_removed(from) ? kRemovedSender
                                                         : kUnknownSender;
      } else {
        incoming_[conn_id]->from = from;
        received = RecvCounterLocked(from);
      }
    }
    if (code == kRemovedSender) {
      DLOG_WARN("rejected stream from remote peer because it was removed",
                {{"local-member-id", Hex(opts_.local_id)},
                 {"remote-peer-id-from", Hex(from)},
                 {"remote-addr", remote}});
    }
    if (code == kUnknownSender) {
      DLOG_WARN("failed to find remote peer in cluster",
                {{"local-member-id", Hex(opts_.local_id)},
                 {"remote-peer-id-stream-handler", Hex(opts_.local_id)},
                 {"remote-peer-id-from", Hex(from)},
                 {"cluster-id", Hex(local_cid)},
                 {"remote-addr", remote}});
    }
    // Before the answer: once the dialer sees its stream up, we already
    // count it as up too.
    if (code == kAccepted) PeerDialedIn(from);
    char answer[kAnswerLen];
    memcpy(answer, kMagic, kMagicLen);
    answer[kMagicLen] = static_cast<char>(code);
    bool answered = stream->WriteAll(answer, sizeof(answer));
    if (code != kAccepted || !answered) {
      rejected_.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    SetTimeouts(stream->fd(), 0);  // an idle peer may stay silent for long
    DLOG_INFO("established TCP streaming connection with remote peer",
              {{"stream-reader-type", "detcd-peer1"},
               {"local-member-id", Hex(opts_.local_id)},
               {"remote-peer-id", Hex(from)}});
    std::string error = "closed by remote peer";
    const std::string from_label = Hex(from);
    Families* f = families_.get();
    // A snapshot being received: since its marker frame (0 when none).
    int64_t snapshot_start_ns = 0;
    auto snapshot_over = [&](bool ok) {
      if (snapshot_start_ns == 0) return;
      (ok ? received->snapshots : received->snapshot_failures)
          .fetch_add(1, std::memory_order_relaxed);
      if (f != nullptr) {
        f->snap_recv_inflight.WithLabels({from_label}).Dec();
        (ok ? f->snap_received : f->snap_recv_failures)
            .WithLabels({from_label})
            .Inc();
        if (ok) {
          f->snap_recv_secs.WithLabels({from_label})
              .Observe(SecondsSince(snapshot_start_ns));
        }
      }
      snapshot_start_ns = 0;
    };
    auto receive_failed = [&] {
      received->failures.fetch_add(1, std::memory_order_relaxed);
      if (f != nullptr) f->recv_failures.WithLabels({from_label}).Inc();
      snapshot_over(false);
    };
    // Frames are parsed out of one buffer filled by reads of whatever has
    // arrived, so a batch of small messages (see SenderLoop) costs one read
    // instead of two per message. A frame larger than the buffer is read
    // into its own string, grown as bytes arrive, so a peer announcing a
    // huge frame and sending nothing does not make us allocate it.
    std::string buf(kMaxBatchBytes, '\0');
    size_t begin = 0, end = 0;  // unparsed bytes: buf[begin, end)
    bool delivered = false;     // on_message ran since the last read
    auto hand_over = [&] {
      if (!delivered) return;
      delivered = false;
      if (opts_.after_messages) opts_.after_messages();
    };
    // Until `n` unparsed bytes are buffered (n <= buf.size()); false when
    // the stream ends first.
    auto fill = [&](size_t n) {
      if (end - begin >= n) return true;
      if (begin > 0) {
        memmove(buf.data(), buf.data() + begin, end - begin);
        end -= begin;
        begin = 0;
      }
      while (end < n) {
        hand_over();
        const long r = stream->Read(buf.data() + end, buf.size() - end);
        if (r <= 0) return false;
        end += static_cast<size_t>(r);
      }
      return true;
    };
    for (;;) {
      if (!fill(4)) {
        // Between frames a close is the normal end, except after a
        // snapshot's marker.
        if (snapshot_start_ns != 0 || end > begin) receive_failed();
        if (end > begin) error = "connection closed inside a frame";
        break;
      }
      const uint32_t len = GetU32(buf.data() + begin);
      begin += 4;
      if (len == 0) {
        // The marker of a snapshot frame (a second one in a row restarts
        // the clock of the first, which never came).
        received->bytes.fetch_add(4, std::memory_order_relaxed);
        if (snapshot_start_ns == 0 && f != nullptr) {
          f->snap_recv_inflight.WithLabels({from_label}).Inc();
        }
        snapshot_start_ns = NowNs();
        continue;
      }
      // The frame after a marker is a snapshot, with a bound of its own.
      const size_t limit = snapshot_start_ns != 0 ? opts_.max_snapshot_bytes
                                                  : opts_.max_frame_bytes;
      if (len > limit) {
        rejected_.fetch_add(1, std::memory_order_relaxed);
        receive_failed();
        error = absl::StrCat("frame of ", len, " bytes exceeds the limit of ",
                             limit);
        break;
      }
      std::string payload;
      bool ok = true;
      if (len <= buf.size()) {
        ok = fill(len);
        if (ok) {
          payload.assign(buf.data() + begin, len);
          begin += len;
        }
      } else {
        // Its whole size at once (the bound above holds it): a snapshot
        // grown by doubling had been copied at every step and held two
        // buffers at the last (a 251 MiB image: 128 + 256 MiB).
        payload.reserve(len);
        payload.assign(buf.data() + begin, end - begin);
        begin = end = 0;
        hand_over();
        while (payload.size() < len) {
          size_t have = payload.size();
          size_t step = std::min<size_t>(len - have, 1 << 20);
          payload.resize(have + step);
          if (!ReadFull(*stream, payload.data() + have, step)) {
            ok = false;
            break;
          }
        }
      }
      if (!ok) {
        receive_failed();
        error = "connection closed inside a frame";
        break;
      }
      if (begin == end) begin = end = 0;
      received->bytes.fetch_add(4 + len, std::memory_order_relaxed);
      opts_.on_message(from, std::move(payload));
      delivered = true;
      snapshot_over(true);
    }
    hand_over();
    DLOG_INFO("lost TCP streaming connection with remote peer",
              {{"stream-reader-type", "detcd-peer1"},
               {"local-member-id", Hex(opts_.local_id)},
               {"remote-peer-id", Hex(from)},
               {"error", error}});
  }();
  absl::MutexLock l(&mu_);
  auto it = incoming_.find(conn_id);
  if (it != incoming_.end()) {
    it->second->done = true;
    if (it->second->kill_fd >= 0) ::close(it->second->kill_fd);
    it->second->kill_fd = -1;
  }
}

std::shared_ptr<PeerTransport::Received> PeerTransport::RecvCounterLocked(
    uint64_t id) {
  auto& c = recv_bytes_[id];
  if (c == nullptr) c = std::make_shared<Received>();
  return c;
}

// ---------------------------------------------------------------- prober

absl::StatusOr<int64_t> PeerTransport::Probe(const std::string& url) {
  auto u = ParseUrl(url);
  if (!u.ok()) return u.status();
  auto set_kill = [this](int fd) {
    absl::MutexLock l(&probe_mu_);
    if (probe_stop_) return false;
    if (probe_kill_fd_ >= 0) ::close(probe_kill_fd_);
    probe_kill_fd_ = ::fcntl(fd, F_DUPFD_CLOEXEC, 0);
    return true;
  };
  auto stopping = [this] {
    absl::MutexLock l(&probe_mu_);
    return probe_stop_;
  };
  auto s = Connect(url, NowMs() + opts_.dial_timeout_ms, set_kill, stopping);
  absl::StatusOr<int64_t> result =
      absl::UnavailableError("probe: connection closed");
  if (!s.ok()) {
    result = s.status();
  } else {
    Stream& stream = **s;
    SetTimeouts(stream.fd(), opts_.dial_timeout_ms);
    const std::string request =
        absl::StrCat("GET ", kProbingPath, " HTTP/1.1\r\nHost: ", u->hostport,
                     "\r\nUser-Agent: detcd\r\nConnection: close\r\n\r\n");
    const int64_t start = NowNs();
    std::string answer;
    if (stream.WriteAll(request.data(), request.size())) {
      // The answer is short and ends with the connection.
      char buf[1024];
      for (;;) {
        const long n = stream.Read(buf, sizeof(buf));
        if (n <= 0) break;
        answer.append(buf, static_cast<size_t>(n));
        if (answer.size() > 64 * 1024) break;
      }
    }
    const int64_t rtt = NowNs() - start;
    if (!absl::StartsWith(answer, "HTTP/1.1 200") &&
        !absl::StartsWith(answer, "HTTP/1.0 200")) {
      const size_t eol = answer.find("\r\n");
      result = absl::UnavailableError(
          answer.empty()
              ? "probe: no answer"
              : absl::StrCat("got unexpected HTTP status code ",
                             answer.substr(9, eol == std::string::npos
                                                  ? std::string::npos
                                                  : eol - 9),
                             " from ", url, kProbingPath));
    } else if (answer.find("\"OK\":true") == std::string::npos) {
      result = absl::UnavailableError("probe: answer without OK");
    } else {
      result = rtt;
    }
    stream.Shutdown();
  }
  absl::MutexLock l(&probe_mu_);
  if (probe_kill_fd_ >= 0) ::close(probe_kill_fd_);
  probe_kill_fd_ = -1;
  return result;
}

void PeerTransport::ProbeLoop() {
  // Each peer has its own probe and report times, counted from when the
  // prober first saw it (etcd adds a peer to its prober with the peer).
  int64_t wake_ms = NowMs();
  for (;;) {
    {
      absl::MutexLock l(&probe_mu_);
      const absl::Time until =
          absl::Now() +
          absl::Milliseconds(std::max<int64_t>(0, wake_ms - NowMs()));
      while (!probe_stop_) {
        if (probe_cv_.WaitWithDeadline(&probe_mu_, until)) break;
      }
      if (probe_stop_) return;
    }
    std::vector<std::pair<std::shared_ptr<Peer>, std::vector<std::string>>>
        targets;
    {
      absl::MutexLock l(&mu_);
      if (stopping_) return;
      for (const auto& [id, p] : peers_) {
        absl::MutexLock pl(&p->mu);
        if (!p->urls.empty()) targets.push_back({p, p->urls});
      }
    }
    // New peers are looked for at least this often.
    wake_ms = NowMs() + std::min(opts_.probe_interval_ms, 1000);
    for (auto& [p, urls] : targets) {
      Peer& peer = *p;
      if (peer.next_probe_ms == 0) {
        peer.next_probe_ms = NowMs() + opts_.probe_interval_ms;
        peer.next_rtt_report_ms = NowMs() + opts_.rtt_first_report_ms;
      }
      if (NowMs() >= peer.next_probe_ms) {
        peer.next_probe_ms = NowMs() + opts_.probe_interval_ms;
        auto rtt = Probe(urls[peer.probe_url % urls.size()]);
        peer.probes.fetch_add(1, std::memory_order_relaxed);
        if (rtt.ok()) {
          // xiang90/probing's status.record.
          const double srtt = static_cast<double>(peer.srtt_ns.load());
          peer.srtt_ns.store(static_cast<int64_t>(
              0.875 * srtt + 0.125 * static_cast<double>(*rtt)));
          peer.probe_healthy.store(true);
          peer.last_probe_error.clear();
        } else {
          if (rtt.status().code() == absl::StatusCode::kCancelled) return;
          peer.probe_failures.fetch_add(1, std::memory_order_relaxed);
          peer.probe_healthy.store(false);
          peer.last_probe_error = std::string(rtt.status().message());
          ++peer.probe_url;  // etcd's prober moves to the next endpoint
        }
      }
      if (NowMs() >= peer.next_rtt_report_ms) {
        // etcd's monitorProbingStatus: the smoothed RTT is observed
        // whether or not the peer answers.
        const bool healthy = peer.probe_healthy.load();
        const double srtt_s = static_cast<double>(peer.srtt_ns.load()) / 1e9;
        if (!healthy) {
          DLOG_WARN("prober detected unhealthy status",
                    {{"round-tripper-name", "ROUND_TRIPPER_RAFT_MESSAGE"},
                     {"remote-peer-id", Hex(peer.id)},
                     {"rtt", absl::Seconds(srtt_s)},
                     {"error", peer.last_probe_error}});
        }
        if (families_ != nullptr) {
          families_->rtt.WithLabels({Hex(peer.id)}).Observe(srtt_s);
        }
        peer.next_rtt_report_ms =
            NowMs() +
            (healthy ? opts_.rtt_report_ms : opts_.rtt_first_report_ms);
      }
      wake_ms =
          std::min({wake_ms, peer.next_probe_ms, peer.next_rtt_report_ms});
    }
  }
}

void PeerTransport::ReapLocked() {
  // Finished threads hold no lock after marking themselves done, so joining
  // them here is quick.
  for (auto it = incoming_.begin(); it != incoming_.end();) {
    if (it->second->done) {
      if (it->second->thread.joinable()) it->second->thread.join();
      it = incoming_.erase(it);
    } else {
      ++it;
    }
  }
  for (auto it = retired_.begin(); it != retired_.end();) {
    if ((*it)->done.load()) {
      if ((*it)->thread.joinable()) (*it)->thread.join();
      it = retired_.erase(it);
    } else {
      ++it;
    }
  }
}

// ------------------------------------------------------------ lifecycle

void PeerTransport::Stop() {
  std::vector<std::shared_ptr<Peer>> peers;
  {
    absl::MutexLock l(&mu_);
    if (stopping_) return;
    stopping_ = true;
    for (auto& [id, p] : peers_) peers.push_back(p);
    peers_.clear();
    for (auto& p : retired_) peers.push_back(p);
    retired_.clear();
    for (auto& [id, in] : incoming_) {
      if (in->kill_fd >= 0) ::shutdown(in->kill_fd, SHUT_RDWR);
    }
  }
  for (auto& p : peers) p->Halt();
  {
    absl::MutexLock l(&probe_mu_);
    probe_stop_ = true;
    if (probe_kill_fd_ >= 0) ::shutdown(probe_kill_fd_, SHUT_RDWR);
    probe_cv_.SignalAll();
  }
  if (prober_.joinable()) prober_.join();
  if (wake_pipe_[1] >= 0) {
    [[maybe_unused]] ssize_t n = ::write(wake_pipe_[1], "x", 1);
  }
  for (auto& l : listeners_) {
    if (l->thread.joinable()) l->thread.join();
    if (l->fd >= 0) ::close(l->fd);
    if (l->fd >= 0 && !l->unix_path.empty()) ::unlink(l->unix_path.c_str());
    l->fd = -1;
  }
  // No listener runs now, so no connection can appear. Join the readers
  // outside mu_: they take it to mark themselves done.
  std::vector<std::thread> readers;
  {
    absl::MutexLock l(&mu_);
    for (auto& [id, in] : incoming_) {
      if (in->kill_fd >= 0) ::shutdown(in->kill_fd, SHUT_RDWR);
      readers.push_back(std::move(in->thread));
    }
  }
  for (auto& t : readers) {
    if (t.joinable()) t.join();
  }
  {
    absl::MutexLock l(&mu_);
    for (auto& [id, in] : incoming_) {
      if (in->kill_fd >= 0) ::close(in->kill_fd);
    }
    incoming_.clear();
  }
  for (auto& p : peers) {
    if (p->thread.joinable()) p->thread.join();
  }
  for (int& fd : wake_pipe_) {
    if (fd >= 0) ::close(fd);
    fd = -1;
  }
}

// ---------------------------------------------------------------- stats

bool PeerTransport::Connected(uint64_t id) const {
  absl::MutexLock l(&mu_);
  auto it = peers_.find(id);
  return it != peers_.end() && it->second->connected.load();
}

int64_t PeerTransport::LinkAgeNanos(uint64_t id) const {
  absl::MutexLock l(&mu_);
  auto it = peers_.find(id);
  if (it == peers_.end() || !it->second->connected.load()) return 0;
  return std::max<int64_t>(
      1, NowMs() * 1'000'000 - it->second->connected_since_ns.load());
}

PeerTransportStats PeerTransport::Stats() const {
  PeerTransportStats out;
  absl::MutexLock l(&mu_);
  std::map<uint64_t, PeerStats> by_id;
  for (const auto& [id, c] : recv_bytes_) {
    PeerStats& s = by_id[id];
    s.id = id;
    s.received_bytes = c->bytes.load();
    s.receive_failures = c->failures.load();
    s.snapshots_received = c->snapshots.load();
    s.snapshot_receive_failures = c->snapshot_failures.load();
  }
  for (const auto& [id, p] : peers_) {
    PeerStats& s = by_id[id];
    s.id = id;
    s.sent_bytes = p->sent_bytes.load();
    s.writes = p->writes.load();
    s.joined = p->joined.load();
    s.send_failures = p->send_failures.load();
    s.dial_failures = p->dial_failures.load();
    s.connected = p->connected.load();
    s.disconnects = p->disconnects.load();
    s.snapshots_sent = p->snapshots_sent.load();
    s.snapshot_send_failures = p->snapshot_send_failures.load();
    s.probes = p->probes.load();
    s.probe_failures = p->probe_failures.load();
    s.srtt_ns = p->srtt_ns.load();
    {
      absl::MutexLock pl(&p->mu);
      s.queued_messages = p->queue.size();
      s.unreachable = p->unreachable;
    }
    if (s.connected) ++out.active_peers;
  }
  for (auto& [id, s] : by_id) out.peers.push_back(s);
  out.dropped_unknown = dropped_unknown_.load();
  out.rejected_connections = rejected_.load();
  return out;
}

}  // namespace detcd::shim
