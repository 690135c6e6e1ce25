#include "shim/tls.h"

#include <fcntl.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/shim/test_pki.h"

namespace detcd::shim {
namespace {

using ::detcd::shim::testing::MakeTestPki;
using ::detcd::shim::testing::TestPki;
using ::testing::HasSubstr;

struct Handshaken {
  absl::StatusOr<std::unique_ptr<Stream>> server;
  absl::StatusOr<std::unique_ptr<Stream>> client;
};

// Handshakes a server and a client context over a socketpair: the server
// side on a thread, the client side here.
Handshaken Handshake(TlsContext& server, TlsContext& client,
                     const std::string& server_name, int timeout_ms = 5000) {
  int fds[2];
  EXPECT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
  Handshaken h{absl::UnknownError("unset"), absl::UnknownError("unset")};
  std::thread t([&] { h.server = server.Accept(fds[0], timeout_ms); });
  h.client = client.Connect(fds[1], server_name, timeout_ms);
  t.join();
  return h;
}

// Exchanges a line each way; true if both arrive.
bool PingPong(Stream& a, Stream& b) {
  if (!a.WriteAll("ping", 4)) return false;
  char buf[4];
  size_t got = 0;
  while (got < 4) {
    long n = b.Read(buf + got, 4 - got);
    if (n <= 0) return false;
    got += static_cast<size_t>(n);
  }
  if (std::string(buf, 4) != "ping") return false;
  if (!b.WriteAll("pong", 4)) return false;
  got = 0;
  while (got < 4) {
    long n = a.Read(buf + got, 4 - got);
    if (n <= 0) return false;
    got += static_cast<size_t>(n);
  }
  return std::string(buf, 4) == "pong";
}

class TlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl =
        (std::filesystem::temp_directory_path() / "tls_test.XXXXXX").string();
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    std::filesystem::create_directories(dir_ + "/a");
    std::filesystem::create_directories(dir_ + "/b");
    auto a = MakeTestPki(dir_ + "/a", "member-1");
    ASSERT_TRUE(a.ok()) << a.status();
    pki_ = *a;
    auto b = MakeTestPki(dir_ + "/b", "intruder");
    ASSERT_TRUE(b.ok()) << b.status();
    other_ = *b;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  TlsFiles ServerFiles(bool client_cert_auth) const {
    TlsFiles f;
    f.cert_file = pki_.server_cert_file;
    f.key_file = pki_.server_key_file;
    f.trusted_ca_file = client_cert_auth ? pki_.ca_file : "";
    f.client_cert_auth = client_cert_auth;
    return f;
  }
  TlsFiles ClientFiles(const TestPki& p, bool with_cert) const {
    TlsFiles f;
    if (with_cert) {
      f.cert_file = p.client_cert_file;
      f.key_file = p.client_key_file;
    }
    f.trusted_ca_file = pki_.ca_file;  // trusts the server's CA
    return f;
  }

  std::string dir_;
  TestPki pki_;
  TestPki other_;
};

TEST_F(TlsTest, MutualTlsWithClientCert) {
  auto server = TlsContext::Server(ServerFiles(true), {"h2", "http/1.1"});
  ASSERT_TRUE(server.ok()) << server.status();
  auto client = TlsContext::Client(ClientFiles(pki_, true), {"h2", "http/1.1"});
  ASSERT_TRUE(client.ok()) << client.status();
  EXPECT_TRUE((*server)->is_server());
  EXPECT_FALSE((*client)->is_server());

  Handshaken h = Handshake(**server, **client, "127.0.0.1");
  ASSERT_TRUE(h.server.ok()) << h.server.status();
  ASSERT_TRUE(h.client.ok()) << h.client.status();
  EXPECT_EQ((*h.server)->alpn(), "h2");
  EXPECT_EQ((*h.client)->alpn(), "h2");
  EXPECT_EQ((*h.server)->peer_common_name(), "member-1");
  EXPECT_TRUE(PingPong(**h.client, **h.server));
  EXPECT_TRUE(PingPong(**h.server, **h.client));

  // A closed peer reads as end of stream.
  h.client->reset();
  char c;
  EXPECT_EQ((*h.server)->Read(&c, 1), 0);
}

TEST_F(TlsTest, AlpnFollowsServerPreference) {
  auto server = TlsContext::Server(ServerFiles(false), {"http/1.1", "h2"});
  auto client = TlsContext::Client(ClientFiles(pki_, false), {"h2", "http/1.1"});
  ASSERT_TRUE(server.ok() && client.ok());
  Handshaken h = Handshake(**server, **client, "localhost");
  ASSERT_TRUE(h.server.ok() && h.client.ok()) << h.server.status();
  EXPECT_EQ((*h.server)->alpn(), "http/1.1");
  EXPECT_EQ((*h.client)->alpn(), "http/1.1");

  // No common protocol: the handshake still succeeds, without ALPN.
  auto odd = TlsContext::Client(ClientFiles(pki_, false), {"spdy/1"});
  ASSERT_TRUE(odd.ok());
  h = Handshake(**server, **odd, "localhost");
  ASSERT_TRUE(h.server.ok() && h.client.ok()) << h.server.status();
  EXPECT_EQ((*h.server)->alpn(), "");
  // Without client auth there is no verified client name.
  EXPECT_EQ((*h.server)->peer_common_name(), "");
}

TEST_F(TlsTest, ClientCertAuthRejectsMissingCert) {
  auto server = TlsContext::Server(ServerFiles(true), {});
  auto client = TlsContext::Client(ClientFiles(pki_, false), {});
  ASSERT_TRUE(server.ok() && client.ok());
  Handshaken h = Handshake(**server, **client, "127.0.0.1");
  ASSERT_FALSE(h.server.ok());
  EXPECT_THAT(std::string(h.server.status().message()),
              HasSubstr("tls: client didn't provide a certificate"));
  // With TLS 1.3 the client may finish first; its stream is then dead.
  if (h.client.ok()) {
    char c;
    EXPECT_LE((*h.client)->Read(&c, 1), 0);
  }
}

TEST_F(TlsTest, ClientCertAuthRejectsCertFromAnotherCa) {
  auto server = TlsContext::Server(ServerFiles(true), {});
  auto client = TlsContext::Client(ClientFiles(other_, true), {});
  ASSERT_TRUE(server.ok() && client.ok());
  Handshaken h = Handshake(**server, **client, "127.0.0.1");
  ASSERT_FALSE(h.server.ok());
  // Go's words, as etcd logs them.
  EXPECT_EQ(std::string(h.server.status().message()),
            "tls: failed to verify client certificate: x509: certificate "
            "signed by unknown authority");
}

TEST_F(TlsTest, ClientRejectsServerFromAnotherCa) {
  TlsFiles sf;
  sf.cert_file = other_.server_cert_file;
  sf.key_file = other_.server_key_file;
  auto server = TlsContext::Server(sf, {});
  auto client = TlsContext::Client(ClientFiles(pki_, true), {});
  ASSERT_TRUE(server.ok() && client.ok());
  Handshaken h = Handshake(**server, **client, "127.0.0.1");
  ASSERT_FALSE(h.client.ok());
  EXPECT_EQ(std::string(h.client.status().message()),
            "x509: certificate signed by unknown authority");
}

TEST_F(TlsTest, ClientChecksServerName) {
  auto server = TlsContext::Server(ServerFiles(false), {});
  auto client = TlsContext::Client(ClientFiles(pki_, false), {});
  ASSERT_TRUE(server.ok() && client.ok());
  EXPECT_TRUE(Handshake(**server, **client, "localhost").client.ok());
  EXPECT_TRUE(Handshake(**server, **client, "127.0.0.1").client.ok());
  EXPECT_FALSE(Handshake(**server, **client, "example.com").client.ok());
  EXPECT_FALSE(Handshake(**server, **client, "10.1.2.3").client.ok());
}

TEST_F(TlsTest, BadFilesAreErrors) {
  TlsFiles f = ServerFiles(false);
  f.key_file = other_.server_key_file;  // does not match the cert
  EXPECT_FALSE(TlsContext::Server(f, {}).ok());
  f = ServerFiles(false);
  f.cert_file = dir_ + "/missing.pem";
  EXPECT_FALSE(TlsContext::Server(f, {}).ok());
  f = ServerFiles(true);
  f.trusted_ca_file = dir_ + "/missing-ca.pem";
  EXPECT_FALSE(TlsContext::Server(f, {}).ok());
  EXPECT_FALSE(TlsContext::Server(TlsFiles{}, {}).ok());  // nothing to serve
  f = ServerFiles(false);
  f.key_file.clear();
  EXPECT_FALSE(TlsContext::Server(f, {}).ok());
}

TEST_F(TlsTest, AutoTlsBetweenPeers) {
  TlsFiles sf;
  sf.auto_tls = true;
  sf.auto_tls_dir = dir_ + "/fixtures/peer-a";
  sf.hosts = {"127.0.0.1:2380", "localhost:2380", "[::1]:2380"};
  sf.client_cert_auth = true;  // ignored with auto TLS, as in etcd
  TlsFiles cf;
  cf.auto_tls = true;
  cf.auto_tls_dir = dir_ + "/fixtures/peer-b";
  auto server = TlsContext::Server(sf, {"h2"});
  ASSERT_TRUE(server.ok()) << server.status();
  auto client = TlsContext::Client(cf, {"h2"});
  ASSERT_TRUE(client.ok()) << client.status();
  EXPECT_TRUE(std::filesystem::exists(sf.auto_tls_dir + "/cert.pem"));
  EXPECT_TRUE(std::filesystem::exists(sf.auto_tls_dir + "/key.pem"));
  EXPECT_EQ(std::filesystem::status(sf.auto_tls_dir + "/key.pem").permissions() &
                std::filesystem::perms::all,
            std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);

  Handshaken h = Handshake(**server, **client, "127.0.0.1");
  ASSERT_TRUE(h.server.ok()) << h.server.status();
  ASSERT_TRUE(h.client.ok()) << h.client.status();
  EXPECT_EQ((*h.client)->alpn(), "h2");
  EXPECT_TRUE(PingPong(**h.client, **h.server));

  // A second start reuses the generated certificate.
  std::ifstream in(sf.auto_tls_dir + "/cert.pem");
  std::string before((std::istreambuf_iterator<char>(in)), {});
  ASSERT_TRUE(TlsContext::Server(sf, {}).ok());
  std::ifstream again(sf.auto_tls_dir + "/cert.pem");
  EXPECT_EQ(before, std::string((std::istreambuf_iterator<char>(again)), {}));

  // A client that verifies rejects the self-signed certificate.
  auto strict = TlsContext::Client(ClientFiles(pki_, false), {});
  ASSERT_TRUE(strict.ok());
  EXPECT_FALSE(Handshake(**server, **strict, "127.0.0.1").client.ok());
}

TEST_F(TlsTest, FullDuplexOnTwoThreads) {
  auto server = TlsContext::Server(ServerFiles(true), {});
  auto client = TlsContext::Client(ClientFiles(pki_, true), {});
  ASSERT_TRUE(server.ok() && client.ok());
  Handshaken h = Handshake(**server, **client, "127.0.0.1");
  ASSERT_TRUE(h.server.ok() && h.client.ok());
  // Both sides write 8 MiB while reading the other's 8 MiB: with a blocking
  // shared SSL object this would deadlock or corrupt state.
  const size_t kBytes = 8 << 20;
  std::string data(kBytes, '\0');
  for (size_t i = 0; i < kBytes; ++i) data[i] = static_cast<char>(i * 7 + (i >> 13));
  auto run = [&](Stream* s, bool* write_ok, std::string* got) {
    std::thread writer([&] { *write_ok = s->WriteAll(data.data(), data.size()); });
    std::vector<char> buf(100000);
    while (got->size() < kBytes) {
      long n = s->Read(buf.data(), buf.size());
      if (n <= 0) break;
      got->append(buf.data(), static_cast<size_t>(n));
    }
    writer.join();
  };
  bool ok1 = false, ok2 = false;
  std::string got1, got2;
  std::thread t1(run, h.server->get(), &ok1, &got1);
  std::thread t2(run, h.client->get(), &ok2, &got2);
  t1.join();
  t2.join();
  EXPECT_TRUE(ok1);
  EXPECT_TRUE(ok2);
  EXPECT_TRUE(got1 == data);
  EXPECT_TRUE(got2 == data);
}

TEST_F(TlsTest, ShutdownUnblocksRead) {
  auto server = TlsContext::Server(ServerFiles(false), {});
  auto client = TlsContext::Client(ClientFiles(pki_, false), {});
  ASSERT_TRUE(server.ok() && client.ok());
  Handshaken h = Handshake(**server, **client, "127.0.0.1");
  ASSERT_TRUE(h.server.ok() && h.client.ok());
  long result = 1;
  std::thread reader([&] {
    char c;
    result = (*h.server)->Read(&c, 1);
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  (*h.server)->Shutdown();
  reader.join();  // would hang forever if Shutdown did not wake it
  EXPECT_LE(result, 0);
  EXPECT_FALSE((*h.server)->WriteAll("x", 1));
}

TEST_F(TlsTest, ReadHonoursSocketTimeout) {
  auto server = TlsContext::Server(ServerFiles(false), {});
  auto client = TlsContext::Client(ClientFiles(pki_, false), {});
  ASSERT_TRUE(server.ok() && client.ok());
  Handshaken h = Handshake(**server, **client, "127.0.0.1");
  ASSERT_TRUE(h.server.ok() && h.client.ok());
  timeval tv{0, 100'000};
  ASSERT_EQ(setsockopt((*h.server)->fd(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)), 0);
  auto start = std::chrono::steady_clock::now();
  char c;
  EXPECT_LT((*h.server)->Read(&c, 1), 0);
  auto took = std::chrono::steady_clock::now() - start;
  EXPECT_GE(took, std::chrono::milliseconds(90));
  EXPECT_LT(took, std::chrono::seconds(5));
}

TEST_F(TlsTest, HandshakeTimesOutOnSilentPeer) {
  auto server = TlsContext::Server(ServerFiles(false), {});
  ASSERT_TRUE(server.ok());
  int fds[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
  auto start = std::chrono::steady_clock::now();
  auto s = (*server)->Accept(fds[0], 150);
  auto took = std::chrono::steady_clock::now() - start;
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_GE(took, std::chrono::milliseconds(140));
  // Garbage instead of a ClientHello fails at once.
  int g[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, g), 0);
  ASSERT_EQ(write(g[1], "GET / HTTP/1.1\r\n\r\n", 18), 18);
  auto bad = (*server)->Accept(g[0], 5000);
  EXPECT_FALSE(bad.ok());
  EXPECT_NE(bad.status().code(), absl::StatusCode::kDeadlineExceeded);
  close(fds[1]);
  close(g[1]);
}

TEST(PlainStreamTest, ReadWriteShutdown) {
  int fds[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
  auto a = PlainStream(fds[0]);
  auto b = PlainStream(fds[1]);
  EXPECT_EQ(a->fd(), fds[0]);
  EXPECT_TRUE(PingPong(*a, *b));
  EXPECT_EQ(a->alpn(), "");
  EXPECT_EQ(a->peer_common_name(), "");
  b->Shutdown();
  char c;
  EXPECT_EQ(a->Read(&c, 1), 0);
  // Writing to a closed peer fails instead of raising SIGPIPE.
  b.reset();
  bool ok = true;
  for (int i = 0; i < 10 && ok; ++i) ok = a->WriteAll("xxxx", 4);
  EXPECT_FALSE(ok);
}

}  // namespace
}  // namespace detcd::shim
