// PeerTransport::SendSnapshot: the report that a snapshot transfer is over
// comes through post_to_engine once the frame is written (or dropped), and
// exactly once per snapshot.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "shim/peer_transport.h"

namespace detcd::shim {
namespace {

constexpr uint64_t kCluster = 0xc1;

// Stands in for the engine loop: posted functions wait here until the
// test (the "engine thread") runs them.
class FakeEngine {
 public:
  void Post(std::function<void()> fn) {
    absl::MutexLock l(&mu_);
    posted_.push_back(std::move(fn));
  }
  // Waits until at least n functions were posted, then runs them all.
  bool RunAtLeast(size_t n) {
    std::vector<std::function<void()>> run;
    {
      absl::MutexLock l(&mu_);
      auto enough = [&]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
        return posted_.size() >= n;
      };
      if (!mu_.AwaitWithTimeout(absl::Condition(&enough), absl::Seconds(15))) {
        return false;
      }
      run.swap(posted_);
    }
    for (auto& f : run) f();
    return true;
  }
  size_t pending() {
    absl::MutexLock l(&mu_);
    return posted_.size();
  }

 private:
  absl::Mutex mu_;
  std::vector<std::function<void()>> posted_ ABSL_GUARDED_BY(mu_);
};

class Received {
 public:
  void Push(std::string p) {
    absl::MutexLock l(&mu_);
    got_.push_back(std::move(p));
  }
  size_t size() {
    absl::MutexLock l(&mu_);
    return got_.size();
  }
  std::vector<std::string> payloads() {
    absl::MutexLock l(&mu_);
    return got_;
  }
  std::vector<size_t> sizes() {
    absl::MutexLock l(&mu_);
    std::vector<size_t> out;
    for (const std::string& p : got_) out.push_back(p.size());
    return out;
  }
  std::vector<size_t> capacities() {
    absl::MutexLock l(&mu_);
    std::vector<size_t> out;
    for (const std::string& p : got_) out.push_back(p.capacity());
    return out;
  }
  bool WaitFor(size_t n) {
    absl::MutexLock l(&mu_);
    auto enough = [&]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
      return got_.size() >= n;
    };
    return mu_.AwaitWithTimeout(absl::Condition(&enough), absl::Seconds(15));
  }

 private:
  absl::Mutex mu_;
  std::vector<std::string> got_ ABSL_GUARDED_BY(mu_);
};

std::unique_ptr<PeerTransport> Start(
    uint64_t id, Received* inbox, FakeEngine* engine,
    const std::function<void(PeerTransportOptions&)>& tweak = nullptr) {
  PeerTransportOptions o;
  o.cluster_id = kCluster;
  o.local_id = id;
  o.listen_urls = {"http://127.0.0.1:0"};
  o.backoff_min_ms = 20;
  o.backoff_max_ms = 200;
  o.on_message = [inbox](uint64_t, std::string p) { inbox->Push(std::move(p)); };
  if (engine != nullptr) {
    o.post_to_engine = [engine](std::function<void()> fn) {
      engine->Post(std::move(fn));
    };
  }
  if (tweak) tweak(o);
  auto t = PeerTransport::Start(std::move(o));
  EXPECT_TRUE(t.ok()) << t.status();
  return t.ok() ? *std::move(t) : nullptr;
}

std::string Url(PeerTransport& t) {
  return "http://127.0.0.1:" + std::to_string(t.ListenPorts()[0]);
}

// Each knows the other (b accepts only senders it knows), and both streams
// are up: a's first dial may reach b before b knows a, and a transport
// drops what it queued for a peer whose dial failed.
bool LinkUp(PeerTransport& a, PeerTransport& b) {
  a.SetPeer(2, {Url(b)});
  b.SetPeer(1, {Url(a)});
  const absl::Time until = absl::Now() + absl::Seconds(10);
  while (!(a.Connected(2) && b.Connected(1))) {
    if (absl::Now() > until) return false;
    absl::SleepFor(absl::Milliseconds(5));
  }
  return true;
}

TEST(PeerTransportSnapshot, WithoutEngineHookReportsAtOnce) {
  Received in_a, in_b;
  auto a = Start(1, &in_a, nullptr);
  auto b = Start(2, &in_b, nullptr);
  ASSERT_TRUE(a && b);
  ASSERT_TRUE(LinkUp(*a, *b));
  std::vector<bool> reports;
  a->SendSnapshot(2, "snap", [&reports](bool ok) { reports.push_back(ok); });
  EXPECT_EQ(reports, std::vector<bool>{true});
  EXPECT_TRUE(in_b.WaitFor(1));
}

TEST(PeerTransportSnapshot, ReportsOnceTheFrameIsWritten) {
  FakeEngine engine;
  Received in_a, in_b;
  auto a = Start(1, &in_a, &engine);
  auto b = Start(2, &in_b, nullptr);
  ASSERT_TRUE(a && b);
  ASSERT_TRUE(LinkUp(*a, *b));
  std::vector<bool> reports;
  const std::string big(3 << 20, 's');  // written in many chunks
  a->SendSnapshot(2, big, [&reports](bool ok) { reports.push_back(ok); });
  EXPECT_TRUE(reports.empty()) << "reported before the transfer";
  ASSERT_TRUE(engine.RunAtLeast(1));
  EXPECT_EQ(reports, std::vector<bool>{true});
  EXPECT_TRUE(in_b.WaitFor(1));
  // Only the engine hook runs the report, and only once.
  EXPECT_EQ(engine.pending(), 0u);

  // In two parts (the head, the image where it lies): the one message they
  // make, written in chunks from both, and the image let go once written.
  std::string image(3 << 20, 'i');
  image[0] = 'f';
  image.back() = 'l';
  auto tail = std::make_shared<const std::string>(image);
  a->SendSnapshotParts(2, "head", tail,
                       [&reports](bool ok) { reports.push_back(ok); });
  ASSERT_TRUE(engine.RunAtLeast(1));
  EXPECT_EQ(reports, (std::vector<bool>{true, true}));
  ASSERT_TRUE(in_b.WaitFor(2));
  const std::vector<std::string> got = in_b.payloads();
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[1].size(), 4 + image.size());
  EXPECT_TRUE(got[1] == "head" + image);
  const absl::Time until = absl::Now() + absl::Seconds(10);
  while (tail.use_count() > 1 && absl::Now() < until) {
    absl::SleepFor(absl::Milliseconds(1));
  }
  EXPECT_EQ(tail.use_count(), 1);
}

// A snapshot has a bound of its own (max_snapshot_bytes): it may be
// larger than max_frame_bytes and than queue_max_bytes, on the sending and
// on the receiving side, where a plain message of that size is dropped
// (until 2026-12 every frame had the 64 MiB bound, and a member could not
// send a bigger store's snapshot at all).
TEST(PeerTransportSnapshot, SnapshotsHaveTheirOwnSizeBound) {
  auto small = [](PeerTransportOptions& o) {
    o.max_frame_bytes = 1 << 20;
    o.queue_max_bytes = 2 << 20;
    o.max_snapshot_bytes = 8 << 20;
  };
  FakeEngine engine;
  Received in_a, in_b;
  auto a = Start(1, &in_a, &engine, small);
  auto b = Start(2, &in_b, nullptr, small);
  ASSERT_TRUE(a && b);
  ASSERT_TRUE(LinkUp(*a, *b));
  const std::string five(5 << 20, 'm');
  a->Send(2, five);  // over max_frame_bytes: dropped by the sender
  std::vector<bool> reports;
  a->SendSnapshot(2, five, [&reports](bool ok) { reports.push_back(ok); });
  a->Send(2, "after");  // does not push the snapshot out of the queue
  ASSERT_TRUE(in_b.WaitFor(2));
  ASSERT_TRUE(engine.RunAtLeast(1));
  EXPECT_EQ(reports, std::vector<bool>{true});
  const std::string nine(9 << 20, 's');  // over max_snapshot_bytes
  a->SendSnapshot(2, nine, [&reports](bool ok) { reports.push_back(ok); });
  ASSERT_TRUE(engine.RunAtLeast(1));
  EXPECT_EQ(reports, (std::vector<bool>{true, false}));
  a->Send(2, "last");
  ASSERT_TRUE(in_b.WaitFor(3));
  EXPECT_EQ(in_b.sizes(), (std::vector<size_t>{5u << 20, 5, 4}));
  EXPECT_TRUE(b->Connected(1));
}

// A frame larger than the reader's buffer arrives in one buffer of its own
// size, allocated once: grown by doubling, a snapshot of hundreds of MiB
// was copied at every step and held two buffers at the last.
TEST(PeerTransportSnapshot, ALargeFrameArrivesInABufferOfItsSize) {
  FakeEngine engine;
  Received in_a, in_b;
  auto a = Start(1, &in_a, &engine);
  auto b = Start(2, &in_b, nullptr);
  ASSERT_TRUE(a && b);
  ASSERT_TRUE(LinkUp(*a, *b));
  const std::string image((5 << 20) + 12345, 'i');
  a->SendSnapshot(2, image, [](bool) {});
  ASSERT_TRUE(in_b.WaitFor(1));
  EXPECT_EQ(in_b.payloads()[0], image);
  EXPECT_EQ(in_b.capacities()[0], image.size());
}

TEST(PeerTransportSnapshot, DroppedSnapshotsReportFailure) {
  FakeEngine engine;
  Received in_a;
  auto a = Start(1, &in_a, &engine);
  ASSERT_TRUE(a);
  std::vector<bool> reports;
  auto report = [&reports](bool ok) { reports.push_back(ok); };
  // An unknown peer.
  a->SendSnapshot(9, "snap", report);
  ASSERT_TRUE(engine.RunAtLeast(1));
  EXPECT_EQ(reports, std::vector<bool>{false});
  // A peer nobody listens for: queued, then the peer is removed.
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  socklen_t len = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  a->SetPeer(3, {"http://127.0.0.1:" + std::to_string(ntohs(addr.sin_port))});
  a->SendSnapshot(3, "snap", report);
  a->RemovePeer(3);
  ASSERT_TRUE(engine.RunAtLeast(1));
  EXPECT_EQ(reports, (std::vector<bool>{false, false}));
  // Stopping drops whatever is queued, with a report each.
  a->SetPeer(4, {"http://127.0.0.1:" + std::to_string(ntohs(addr.sin_port))});
  a->SendSnapshot(4, "snap", report);
  a->Stop();
  ASSERT_TRUE(engine.RunAtLeast(1));
  EXPECT_EQ(reports, (std::vector<bool>{false, false, false}));
  a->SendSnapshot(4, "after stop", report);
  ASSERT_TRUE(engine.RunAtLeast(1));
  EXPECT_EQ(reports.size(), 4u);
}

}  // namespace
}  // namespace detcd::shim
