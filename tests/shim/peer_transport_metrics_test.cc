// PeerTransport's event-driven etcd_network_* metrics: snapshot sends and
// receives (the marker frame), disconnections, receive failures, and the
// prober's round-trip time (with the /raft/probing answer it relies on).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "shim/metrics.h"
#include "shim/peer_transport.h"

namespace detcd::shim {
namespace {

constexpr uint64_t kCluster = 0xc1;

class Inbox {
 public:
  void Push(std::string p) {
    absl::MutexLock l(&mu_);
    got_.push_back(std::move(p));
  }
  bool WaitFor(size_t n) {
    absl::MutexLock l(&mu_);
    auto enough = [&]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
      return got_.size() >= n;
    };
    return mu_.AwaitWithTimeout(absl::Condition(&enough), absl::Seconds(20));
  }

 private:
  absl::Mutex mu_;
  std::vector<std::string> got_ ABSL_GUARDED_BY(mu_);
};

struct Node {
  metrics::Registry registry;
  Inbox inbox;
  std::unique_ptr<PeerTransport> t;
};

// probe_ms 0: no prober.
std::unique_ptr<Node> StartNode(uint64_t id, int probe_ms = 0) {
  auto n = std::make_unique<Node>();
  PeerTransportOptions o;
  o.cluster_id = kCluster;
  o.local_id = id;
  o.listen_urls = {"http://127.0.0.1:0"};
  o.backoff_min_ms = 20;
  o.backoff_max_ms = 200;
  o.probe_interval_ms = probe_ms;
  o.rtt_first_report_ms = 2 * probe_ms;
  o.rtt_report_ms = 2 * probe_ms;
  o.registry = &n->registry;
  Inbox* inbox = &n->inbox;
  o.on_message = [inbox](uint64_t, std::string p) {
    inbox->Push(std::move(p));
  };
  auto t = PeerTransport::Start(std::move(o));
  EXPECT_TRUE(t.ok()) << t.status();
  if (!t.ok()) return nullptr;
  n->t = *std::move(t);
  return n;
}

int Port(PeerTransport& t) { return t.ListenPorts()[0]; }
std::string Url(PeerTransport& t) {
  return "http://127.0.0.1:" + std::to_string(Port(t));
}

PeerStats StatsOf(PeerTransport& t, uint64_t id) {
  for (const PeerStats& s : t.Stats().peers) {
    if (s.id == id) return s;
  }
  return PeerStats{};
}

// Polls `cond` for up to 20 s (the transport's threads act on their own).
bool Eventually(const std::function<bool()>& cond) {
  const absl::Time deadline = absl::Now() + absl::Seconds(20);
  while (absl::Now() < deadline) {
    if (cond()) return true;
    absl::SleepFor(absl::Milliseconds(10));
  }
  return cond();
}

// A port on which nothing listens (bound, then closed).
int DeadPort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  socklen_t len = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return ntohs(addr.sin_port);
}

int ConnectTo(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return -1;
  }
  timeval tv{10, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  return fd;
}

void PutU64(std::string* out, uint64_t v) {
  for (int i = 7; i >= 0; --i) out->push_back(static_cast<char>(v >> (8 * i)));
}

// Opens a peer stream to `port` as member `from` (the handshake of
// peer_transport.h) and returns the socket, or -1.
int HandshakeAs(int port, uint64_t from, uint64_t to) {
  int fd = ConnectTo(port);
  if (fd < 0) return -1;
  std::string hello = "detcd-peer1";
  PutU64(&hello, kCluster);
  PutU64(&hello, from);
  PutU64(&hello, to);
  char answer[12];
  if (write(fd, hello.data(), hello.size()) !=
          static_cast<ssize_t>(hello.size()) ||
      recv(fd, answer, sizeof(answer), MSG_WAITALL) != sizeof(answer) ||
      answer[11] != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

std::string Frame(uint32_t len, const std::string& bytes) {
  std::string f;
  for (int i = 3; i >= 0; --i) f.push_back(static_cast<char>(len >> (8 * i)));
  return f + bytes;
}

TEST(PeerTransportMetrics, SnapshotSendAndReceiveAreCountedOnBothSides) {
  auto a = StartNode(1);
  auto b = StartNode(2);
  ASSERT_TRUE(a && b);
  a->t->SetPeer(2, {Url(*b->t)});
  b->t->SetPeer(1, {Url(*a->t)});
  // Both streams up first: a's first dial may reach b before b knows a,
  // and what was queued for it would be dropped.
  ASSERT_TRUE(
      Eventually([&] { return a->t->Connected(2) && b->t->Connected(1); }));
  a->t->Send(2, "plain");  // not a snapshot: counted nowhere below
  ASSERT_TRUE(b->inbox.WaitFor(1));
  bool reported = false;
  const std::string big(3 << 20, 's');  // written in many chunks
  a->t->SendSnapshot(2, big, [&reported](bool ok) { reported = ok; });
  EXPECT_TRUE(reported);  // no engine hook: reported at once
  ASSERT_TRUE(b->inbox.WaitFor(2));
  ASSERT_TRUE(Eventually([&] {
    return StatsOf(*a->t, 2).snapshots_sent == 1 &&
           StatsOf(*b->t, 1).snapshots_received == 1;
  }));
  EXPECT_EQ(StatsOf(*a->t, 2).snapshot_send_failures, 0u);
  EXPECT_EQ(StatsOf(*b->t, 1).snapshot_receive_failures, 0u);
  EXPECT_EQ(StatsOf(*b->t, 1).receive_failures, 0u);
  // The marker's 4 bytes count on both sides.
  EXPECT_EQ(StatsOf(*a->t, 2).sent_bytes, StatsOf(*b->t, 1).received_bytes);

  const std::string sent = a->registry.Render();
  EXPECT_TRUE(absl::StrContains(
      sent, "etcd_network_snapshot_send_success{To=\"2\"} 1\n"))
      << sent;
  EXPECT_TRUE(absl::StrContains(
      sent, "etcd_network_snapshot_send_inflights_total{To=\"2\"} 0\n"));
  EXPECT_TRUE(absl::StrContains(
      sent,
      "etcd_network_snapshot_send_total_duration_seconds_count{To=\"2\"} "
      "1\n"));
  EXPECT_TRUE(absl::StrContains(
      sent,
      "etcd_network_snapshot_send_total_duration_seconds_bucket{To=\"2\","
      "le=\"51.2\"} 1\n"));
  EXPECT_FALSE(absl::StrContains(sent, "etcd_network_snapshot_send_failures"));
  const std::string got = b->registry.Render();
  EXPECT_TRUE(absl::StrContains(
      got, "etcd_network_snapshot_receive_success{From=\"1\"} 1\n"))
      << got;
  EXPECT_TRUE(absl::StrContains(
      got, "etcd_network_snapshot_receive_inflights_total{From=\"1\"} 0\n"));
  EXPECT_TRUE(absl::StrContains(
      got,
      "etcd_network_snapshot_receive_total_duration_seconds_count{From="
      "\"1\"} 1\n"));
  EXPECT_FALSE(absl::StrContains(got, "etcd_network_peer_received_failures"));
}

TEST(PeerTransportMetrics, DroppedSnapshotIsASendFailure) {
  auto a = StartNode(1);
  ASSERT_TRUE(a);
  a->t->SendSnapshot(9, "snap", [](bool) {});  // an unknown peer
  const std::string text = a->registry.Render();
  EXPECT_TRUE(absl::StrContains(
      text, "etcd_network_snapshot_send_failures{To=\"9\"} 1\n"))
      << text;
  EXPECT_TRUE(absl::StrContains(
      text, "etcd_network_snapshot_send_inflights_total{To=\"9\"} 0\n"));
  EXPECT_FALSE(absl::StrContains(text, "etcd_network_snapshot_send_success"));
}

TEST(PeerTransportMetrics, BrokenIncomingStreamsAreReceiveFailures) {
  auto b = StartNode(2);
  ASSERT_TRUE(b);
  b->t->SetPeer(1, {"http://127.0.0.1:" + std::to_string(DeadPort())});
  // A frame cut short.
  int fd = HandshakeAs(Port(*b->t), 1, 2);
  ASSERT_GE(fd, 0);
  const std::string cut = Frame(100, "only ten b");
  ASSERT_EQ(write(fd, cut.data(), cut.size()),
            static_cast<ssize_t>(cut.size()));
  close(fd);
  ASSERT_TRUE(
      Eventually([&] { return StatsOf(*b->t, 1).receive_failures == 1; }));
  // A snapshot's marker, then the connection ends before the snapshot.
  fd = HandshakeAs(Port(*b->t), 1, 2);
  ASSERT_GE(fd, 0);
  const std::string marker = Frame(0, "");
  ASSERT_EQ(write(fd, marker.data(), marker.size()), 4);
  close(fd);
  ASSERT_TRUE(Eventually(
      [&] { return StatsOf(*b->t, 1).snapshot_receive_failures == 1; }));
  // A whole frame, then a clean close: no failure.
  fd = HandshakeAs(Port(*b->t), 1, 2);
  ASSERT_GE(fd, 0);
  const std::string whole = Frame(3, "abc");
  ASSERT_EQ(write(fd, whole.data(), whole.size()), 7);
  close(fd);
  ASSERT_TRUE(b->inbox.WaitFor(1));
  absl::SleepFor(absl::Milliseconds(100));  // a wrong count would show now
  EXPECT_EQ(StatsOf(*b->t, 1).receive_failures, 2u);
  const std::string text = b->registry.Render();
  EXPECT_TRUE(absl::StrContains(
      text, "etcd_network_peer_received_failures_total{From=\"1\"} 2\n"))
      << text;
  EXPECT_TRUE(absl::StrContains(
      text, "etcd_network_snapshot_receive_failures{From=\"1\"} 1\n"));
  EXPECT_TRUE(absl::StrContains(
      text, "etcd_network_snapshot_receive_inflights_total{From=\"1\"} 0\n"));
}

TEST(PeerTransportMetrics, LostStreamIsADisconnection) {
  auto a = StartNode(1);
  auto b = StartNode(2);
  ASSERT_TRUE(a && b);
  a->t->SetPeer(2, {Url(*b->t)});
  b->t->SetPeer(1, {Url(*a->t)});
  ASSERT_TRUE(Eventually([&] { return a->t->Connected(2); }));
  EXPECT_EQ(StatsOf(*a->t, 2).disconnects, 0u);
  b->t->Stop();
  ASSERT_TRUE(Eventually([&] { return StatsOf(*a->t, 2).disconnects >= 1; }));
  // The counter behind the stats moves just before the metric's (both on
  // the writer thread), so the metric is awaited too (it failed once).
  std::string text;
  EXPECT_TRUE(Eventually([&] {
    text = a->registry.Render();
    return absl::StrContains(
        text,
        "etcd_network_disconnected_peers_total{Local=\"1\",Remote=\"2\"} ");
  })) << text;
}

TEST(PeerTransportMetrics, PeerPortAnswersEtcdsProbe) {
  auto b = StartNode(2);
  ASSERT_TRUE(b);
  int fd = ConnectTo(Port(*b->t));
  ASSERT_GE(fd, 0);
  const std::string req =
      "GET /raft/probing HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
  ASSERT_EQ(write(fd, req.data(), req.size()),
            static_cast<ssize_t>(req.size()));
  std::string answer;
  char buf[512];
  for (ssize_t n; (n = read(fd, buf, sizeof(buf))) > 0;) answer.append(buf, n);
  close(fd);
  EXPECT_TRUE(absl::StartsWith(answer, "HTTP/1.1 200 OK\r\n")) << answer;
  EXPECT_TRUE(absl::StrContains(answer, "{\"OK\":true,\"Now\":\"")) << answer;
}

TEST(PeerTransportMetrics, ProberObservesTheSmoothedRoundTrip) {
  auto a = StartNode(1, /*probe_ms=*/50);
  auto b = StartNode(2);
  ASSERT_TRUE(a && b);
  a->t->SetPeer(2, {Url(*b->t)});
  a->t->SetPeer(3, {"http://127.0.0.1:" + std::to_string(DeadPort())});
  ASSERT_TRUE(Eventually([&] {
    return StatsOf(*a->t, 2).probes >= 3 &&
           absl::StrContains(a->registry.Render(),
                             "etcd_network_peer_round_trip_time_seconds_count{"
                             "To=\"3\"}");
  }));
  const PeerStats up = StatsOf(*a->t, 2);
  EXPECT_EQ(up.probe_failures, 0u);
  EXPECT_GT(up.srtt_ns, 0);
  EXPECT_LT(up.srtt_ns, 5'000'000'000);
  const PeerStats down = StatsOf(*a->t, 3);
  EXPECT_GE(down.probe_failures, 1u);
  EXPECT_EQ(down.probe_failures, down.probes);
  EXPECT_EQ(down.srtt_ns, 0);
  const std::string text = a->registry.Render();
  EXPECT_TRUE(absl::StrContains(
      text, "etcd_network_peer_round_trip_time_seconds_count{To=\"2\"} "))
      << text;
  // etcd's buckets: 0.1 ms x 2^0..15.
  EXPECT_TRUE(absl::StrContains(
      text,
      "etcd_network_peer_round_trip_time_seconds_bucket{To=\"2\","
      "le=\"0.0001\"} "));
  EXPECT_TRUE(absl::StrContains(
      text,
      "etcd_network_peer_round_trip_time_seconds_bucket{To=\"2\","
      "le=\"3.2768\"} "));
}

}  // namespace
}  // namespace detcd::shim
