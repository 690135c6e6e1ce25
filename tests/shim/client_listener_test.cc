#include "shim/client_listener.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "etcdserverpb/rpc.grpc.pb.h"
#include "gtest/gtest.h"
#include "tests/shim/test_pki.h"

namespace detcd::shim {
namespace {

using etcdserverpb::RangeRequest;
using etcdserverpb::RangeResponse;

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// A KV service whose Range echoes the key, enough to prove a call went
// through the listener to gRPC and back.
class EchoKv : public etcdserverpb::KV::CallbackService {
 public:
  grpc::ServerUnaryReactor* Range(grpc::CallbackServerContext* ctx,
                                  const RangeRequest* req,
                                  RangeResponse* resp) override {
    resp->add_kvs()->set_key(req->key());
    resp->set_count(1);
    calls_.fetch_add(1);
    {
      absl::MutexLock lock(&mu_);
      last_peer_ = ctx->peer();
      if (listener_ != nullptr) last_cn_ = listener_->PeerCommonName(last_peer_);
    }
    grpc::ServerUnaryReactor* r = ctx->DefaultReactor();
    r->Finish(grpc::Status::OK);
    return r;
  }
  int calls() const { return calls_.load(); }
  void set_listener(ClientListener* l) {
    absl::MutexLock lock(&mu_);
    listener_ = l;
  }
  std::string last_cn() const {
    absl::MutexLock lock(&mu_);
    return last_cn_;
  }
  std::string last_peer() const {
    absl::MutexLock lock(&mu_);
    return last_peer_;
  }

 private:
  std::atomic<int> calls_{0};
  mutable absl::Mutex mu_;
  ClientListener* listener_ = nullptr;
  std::string last_peer_, last_cn_;
};

int ConnectTo(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

bool SendStr(int fd, const std::string& s) {
  return ::send(fd, s.data(), s.size(), MSG_NOSIGNAL) ==
         static_cast<ssize_t>(s.size());
}

// Reads until the peer closes or timeout_ms passes. *closed says which.
std::string ReadUntilClose(int fd, int timeout_ms, bool* closed) {
  std::string out;
  int64_t deadline = NowMs() + timeout_ms;
  *closed = false;
  char buf[4096];
  while (true) {
    int64_t left = deadline - NowMs();
    if (left <= 0) return out;
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left)) <= 0) return out;
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) {
      *closed = true;
      return out;
    }
    out.append(buf, static_cast<size_t>(n));
  }
}

// A byte source: a plain socket or an OpenSSL connection.
struct Conn {
  int fd = -1;
  SSL* ssl = nullptr;
  long Read(char* buf, size_t n) {
    if (ssl != nullptr) return SSL_read(ssl, buf, static_cast<int>(n));
    return ::recv(fd, buf, n, 0);
  }
  bool Write(const std::string& s) {
    if (ssl != nullptr) {
      return SSL_write(ssl, s.data(), static_cast<int>(s.size())) ==
             static_cast<int>(s.size());
    }
    return SendStr(fd, s);
  }
};

// Reads one HTTP/1.1 response (framed by Content-Length). Returns "" on
// timeout or early close; *rest gets bytes past the response.
std::string ReadHttpResponse(Conn& c, std::string* rest, int timeout_ms = 5000) {
  std::string buf = *rest;
  rest->clear();
  int64_t deadline = NowMs() + timeout_ms;
  char tmp[4096];
  while (true) {
    size_t end = buf.find("\r\n\r\n");
    if (end != std::string::npos) {
      size_t len = 0;
      size_t cl = buf.find("Content-Length: ");
      if (cl != std::string::npos && cl < end) {
        size_t eol = buf.find("\r\n", cl);
        if (!absl::SimpleAtoi(buf.substr(cl + 16, eol - cl - 16), &len)) {
          return "";
        }
      }
      if (buf.size() >= end + 4 + len) {
        *rest = buf.substr(end + 4 + len);
        return buf.substr(0, end + 4 + len);
      }
    }
    if (c.ssl == nullptr || SSL_pending(c.ssl) == 0) {
      int64_t left = deadline - NowMs();
      if (left <= 0) return "";
      pollfd p{c.fd, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left)) <= 0) return "";
    }
    long n = c.Read(tmp, sizeof tmp);
    if (n <= 0) return "";
    buf.append(tmp, static_cast<size_t>(n));
  }
}

std::string Body(const std::string& response) {
  size_t end = response.find("\r\n\r\n");
  return end == std::string::npos ? "" : response.substr(end + 4);
}

HttpResponse EchoHandler(const HttpRequest& r) {
  HttpResponse out;
  out.body = absl::StrCat(r.method, " ", r.path, "?", r.query, " cn=",
                          r.peer_common_name, " body=", r.body);
  return out;
}

class ClientListenerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    grpc::ServerBuilder b;
    b.RegisterService(&kv_);
    // No listening ports: the ClientListener owns the sockets.
    server_ = b.BuildAndStart();
    ASSERT_NE(server_, nullptr);
  }
  void TearDown() override {
    kv_.set_listener(nullptr);
    if (listener_) listener_->Stop();
    server_->Shutdown(std::chrono::system_clock::now() +
                      std::chrono::seconds(5));
    listener_.reset();
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }

  void Listen(ClientListenerOptions o, bool with_grpc = true) {
    auto l = ClientListener::Create(o, with_grpc ? server_.get() : nullptr,
                                    EchoHandler);
    ASSERT_TRUE(l.ok()) << l.status();
    listener_ = *std::move(l);
    kv_.set_listener(listener_.get());
    listener_->Start();
    port_ = listener_->Ports()[0];
    ASSERT_GT(port_, 0);
  }

  void ListenPlain(int sniff_timeout_ms = 10'000) {
    ClientListenerOptions o;
    o.urls = {"http://127.0.0.1:0"};
    o.sniff_timeout_ms = sniff_timeout_ms;
    Listen(o);
  }

  void MakePki() {
    char tmpl[] = "/tmp/client_listener_test.XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    auto p = testing::MakeTestPki(dir_, "alice");
    ASSERT_TRUE(p.ok()) << p.status();
    pki_ = *p;
  }

  void ListenTls(bool client_cert_auth, int sniff_timeout_ms = 10'000) {
    MakePki();
    ClientListenerOptions o;
    o.urls = {"https://127.0.0.1:0"};
    o.tls.cert_file = pki_.server_cert_file;
    o.tls.key_file = pki_.server_key_file;
    // As in etcd, a trusted CA alone already requires client certificates.
    if (client_cert_auth) o.tls.trusted_ca_file = pki_.ca_file;
    o.tls.client_cert_auth = client_cert_auth;
    o.sniff_timeout_ms = sniff_timeout_ms;
    o.log_warning = [this](const std::string& line) {
      warnings_.fetch_add(1);
      (void)line;
    };
    Listen(o);
  }

  grpc::Status CallRange(const std::shared_ptr<grpc::Channel>& ch,
                         const std::string& key) {
    auto stub = etcdserverpb::KV::NewStub(ch);
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() +
                     std::chrono::seconds(10));
    RangeRequest req;
    req.set_key(key);
    RangeResponse resp;
    grpc::Status s = stub->Range(&ctx, req, &resp);
    if (s.ok() && (resp.kvs_size() != 1 || resp.kvs(0).key() != key)) {
      return grpc::Status(grpc::StatusCode::INTERNAL, "wrong answer");
    }
    return s;
  }

  std::shared_ptr<grpc::Channel> PlainChannel() {
    return grpc::CreateChannel(absl::StrCat("127.0.0.1:", port_),
                               grpc::InsecureChannelCredentials());
  }

  std::shared_ptr<grpc::Channel> TlsChannel(bool with_client_cert) {
    grpc::SslCredentialsOptions o;
    o.pem_root_certs = testing::ReadFileOrEmpty(pki_.ca_file);
    if (with_client_cert) {
      o.pem_private_key = testing::ReadFileOrEmpty(pki_.client_key_file);
      o.pem_cert_chain = testing::ReadFileOrEmpty(pki_.client_cert_file);
    }
    return grpc::CreateChannel(absl::StrCat("127.0.0.1:", port_),
                               grpc::SslCredentials(o));
  }

  // Plain HTTP GET on a new connection; returns the whole response.
  std::string Get(const std::string& target) {
    int fd = ConnectTo(port_);
    if (fd < 0) return "";
    SendStr(fd, absl::StrCat("GET ", target,
                             " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"));
    bool closed;
    std::string r = ReadUntilClose(fd, 5000, &closed);
    ::close(fd);
    return r;
  }

  EchoKv kv_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<ClientListener> listener_;
  int port_ = 0;
  std::string dir_;
  testing::TestPki pki_;
  std::atomic<int> warnings_{0};
};

TEST_F(ClientListenerTest, GrpcServerStartsWithoutListeningPorts) {
  // SetUp built it; a call through an fd handed over later must work.
  ListenPlain();
  EXPECT_TRUE(CallRange(PlainChannel(), "k").ok());
}

TEST_F(ClientListenerTest, HttpAndGrpcShareThePort) {
  ListenPlain();
  auto ch = PlainChannel();
  grpc::Status s = CallRange(ch, "foo");
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(kv_.last_cn(), "");
  std::string r = Get("/health?x=1");
  EXPECT_TRUE(absl::StartsWith(r, "HTTP/1.1 200 OK\r\n")) << r;
  EXPECT_EQ(Body(r), "GET /health?x=1 cn= body=");
  EXPECT_TRUE(absl::StrContains(r, "Connection: close\r\n"));
  // The gRPC channel still works after the HTTP request.
  EXPECT_TRUE(CallRange(ch, "bar").ok());
  EXPECT_EQ(kv_.calls(), 2);
  ClientListenerStats st = listener_->Stats();
  EXPECT_GE(st.grpc_connections, 1u);
  EXPECT_GE(st.http_connections, 1u);
}

TEST_F(ClientListenerTest, KeepAliveServesTwoRequestsOnOneConnection) {
  ListenPlain();
  Conn c{ConnectTo(port_)};
  ASSERT_GE(c.fd, 0);
  std::string rest;
  ASSERT_TRUE(c.Write("GET /a HTTP/1.1\r\nHost: x\r\n\r\n"));
  std::string r1 = ReadHttpResponse(c, &rest);
  EXPECT_EQ(Body(r1), "GET /a? cn= body=");
  EXPECT_FALSE(absl::StrContains(r1, "Connection: close"));
  ASSERT_TRUE(c.Write(
      "POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"));
  std::string r2 = ReadHttpResponse(c, &rest);
  EXPECT_EQ(Body(r2), "POST /b? cn= body=hello");
  // Pipelined: two requests in one write, two answers in order.
  ASSERT_TRUE(c.Write("GET /c HTTP/1.1\r\nHost: x\r\n\r\n"
                      "GET /d HTTP/1.1\r\nHost: x\r\n\r\n"));
  EXPECT_EQ(Body(ReadHttpResponse(c, &rest)), "GET /c? cn= body=");
  EXPECT_EQ(Body(ReadHttpResponse(c, &rest)), "GET /d? cn= body=");
  ::close(c.fd);
}

TEST_F(ClientListenerTest, MalformedRequestGets400AndClose) {
  ListenPlain();
  int fd = ConnectTo(port_);
  ASSERT_TRUE(SendStr(fd, "GET /x HTTP/1.1\r\nbad header line\r\n\r\n"));
  bool closed;
  std::string r = ReadUntilClose(fd, 5000, &closed);
  EXPECT_TRUE(closed);
  EXPECT_TRUE(absl::StartsWith(r, "HTTP/1.1 400 Bad Request\r\n")) << r;
  ::close(fd);
  EXPECT_TRUE(absl::StartsWith(Get("/ok"), "HTTP/1.1 200"));
}

TEST_F(ClientListenerTest, GarbageIsClosedAndTheListenerKeepsServing) {
  ListenPlain();
  std::string garbage;
  for (int i = 0; i < 3000; ++i) garbage.push_back(static_cast<char>(i * 7));
  for (int round = 0; round < 3; ++round) {
    int fd = ConnectTo(port_);
    ASSERT_GE(fd, 0);
    SendStr(fd, garbage);
    bool closed;
    std::string r = ReadUntilClose(fd, 5000, &closed);
    EXPECT_TRUE(closed);
    ::close(fd);
  }
  // Half an h2 preface, then garbage: not gRPC's, not valid HTTP.
  int fd = ConnectTo(port_);
  SendStr(fd, std::string("PRI * HTTP/2.0\r\n\r\nXX\x01\x02\r\n\r\n", 26));
  bool closed;
  ReadUntilClose(fd, 5000, &closed);
  EXPECT_TRUE(closed);
  ::close(fd);
  EXPECT_TRUE(absl::StartsWith(Get("/ok"), "HTTP/1.1 200"));
  EXPECT_TRUE(CallRange(PlainChannel(), "k").ok());
}

TEST_F(ClientListenerTest, SilentClientsDoNotBlockOthersAndAreDropped) {
  ListenPlain(/*sniff_timeout_ms=*/2000);
  std::vector<int> silent;
  for (int i = 0; i < 20; ++i) silent.push_back(ConnectTo(port_));
  // A partial preface also waits for the rest, without blocking others.
  int partial = ConnectTo(port_);
  SendStr(partial, "PRI * HTTP/2.0\r\n");
  int64_t start = NowMs();
  EXPECT_TRUE(absl::StartsWith(Get("/ok"), "HTTP/1.1 200"));
  EXPECT_TRUE(CallRange(PlainChannel(), "k").ok());
  // Served before any silent one timed out.
  EXPECT_LT(NowMs() - start, 1800);
  silent.push_back(partial);
  for (int fd : silent) {
    bool closed;
    ReadUntilClose(fd, 5000, &closed);
    EXPECT_TRUE(closed);
    ::close(fd);
  }
  EXPECT_GE(listener_->Stats().rejected, 21u);
}

TEST_F(ClientListenerTest, MaxConnectionsPausesAcceptingUntilOneEnds) {
  ClientListenerOptions o;
  o.urls = {"http://127.0.0.1:0"};
  o.max_connections = 1;
  o.sniff_timeout_ms = 300;
  Listen(o);
  int silent = ConnectTo(port_);
  // Let the listener take the silent one first.
  int64_t deadline = NowMs() + 5000;
  while (listener_->Stats().accepted < 1 && NowMs() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  int64_t start = NowMs();
  std::string r = Get("/later");  // waits in the backlog
  EXPECT_TRUE(absl::StartsWith(r, "HTTP/1.1 200")) << r;
  EXPECT_GE(NowMs() - start, 150);
  ::close(silent);
}

TEST_F(ClientListenerTest, StopEndsOpenConnectionsPromptly) {
  ListenPlain();
  int silent = ConnectTo(port_);
  Conn keep{ConnectTo(port_)};
  std::string rest;
  keep.Write("GET /a HTTP/1.1\r\nHost: x\r\n\r\n");
  ASSERT_FALSE(ReadHttpResponse(keep, &rest).empty());
  int64_t start = NowMs();
  listener_->Stop();
  EXPECT_LT(NowMs() - start, 2000);
  bool closed;
  ReadUntilClose(keep.fd, 2000, &closed);
  EXPECT_TRUE(closed);
  ReadUntilClose(silent, 2000, &closed);
  EXPECT_TRUE(closed);
  ::close(keep.fd);
  ::close(silent);
  EXPECT_EQ(listener_->Stats().open, 0);
}

TEST_F(ClientListenerTest, BindErrorReadsLikeEtcds) {
  ListenPlain();
  ClientListenerOptions o;
  o.urls = {absl::StrCat("http://127.0.0.1:", port_)};
  auto l = ClientListener::Create(o, server_.get(), EchoHandler);
  ASSERT_FALSE(l.ok());
  EXPECT_EQ(l.status().message(),
            absl::StrCat("listen tcp 127.0.0.1:", port_,
                         ": bind: address already in use"));
  o.urls = {"ftp://127.0.0.1:1"};
  EXPECT_FALSE(ClientListener::Create(o, nullptr, EchoHandler).ok());
  o.urls = {"https://127.0.0.1:0"};  // no certificate
  auto t = ClientListener::Create(o, nullptr, EchoHandler);
  ASSERT_FALSE(t.ok());
  EXPECT_TRUE(absl::StrContains(t.status().message(),
                                "must be provided for client url"));
}

TEST_F(ClientListenerTest, LocalhostAndSeveralUrls) {
  ClientListenerOptions o;
  o.urls = {"http://localhost:0", "http://127.0.0.1:0/"};
  Listen(o);
  std::vector<int> ports = listener_->Ports();
  ASSERT_EQ(ports.size(), 2u);
  for (int p : ports) {
    port_ = p;
    EXPECT_TRUE(absl::StartsWith(Get("/x"), "HTTP/1.1 200"));
    EXPECT_TRUE(CallRange(PlainChannel(), "k").ok());
  }
}

TEST_F(ClientListenerTest, HttpOnlyListenerRefusesTheH2Preface) {
  ClientListenerOptions o;
  o.urls = {"http://127.0.0.1:0"};
  Listen(o, /*with_grpc=*/false);
  EXPECT_TRUE(absl::StartsWith(Get("/metrics"), "HTTP/1.1 200"));
  int fd = ConnectTo(port_);
  SendStr(fd, std::string(
                  "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0", 33));
  bool closed;
  std::string r = ReadUntilClose(fd, 5000, &closed);
  EXPECT_TRUE(closed);
  EXPECT_TRUE(absl::StartsWith(r, "HTTP/1.1 505")) << r;
  ::close(fd);
}

// ---- TLS ----

struct SslCtxFree {
  void operator()(SSL_CTX* c) const { SSL_CTX_free(c); }
};

// An OpenSSL client connection for HTTPS and raw-h2 tests.
class TlsClient {
 public:
  TlsClient(const testing::TestPki& pki, bool client_cert,
            const std::vector<std::string>& alpn) {
    ctx_.reset(SSL_CTX_new(TLS_client_method()));
    SSL_CTX_load_verify_locations(ctx_.get(), pki.ca_file.c_str(), nullptr);
    SSL_CTX_set_verify(ctx_.get(), SSL_VERIFY_PEER, nullptr);
    if (client_cert) {
      SSL_CTX_use_certificate_file(ctx_.get(), pki.client_cert_file.c_str(),
                                   SSL_FILETYPE_PEM);
      SSL_CTX_use_PrivateKey_file(ctx_.get(), pki.client_key_file.c_str(),
                                  SSL_FILETYPE_PEM);
    }
    std::string wire;
    for (const std::string& p : alpn) {
      wire.push_back(static_cast<char>(p.size()));
      wire += p;
    }
    if (!wire.empty()) {
      SSL_CTX_set_alpn_protos(
          ctx_.get(), reinterpret_cast<const unsigned char*>(wire.data()),
          static_cast<unsigned>(wire.size()));
    }
  }
  ~TlsClient() {
    if (conn_.ssl != nullptr) SSL_free(conn_.ssl);
    if (conn_.fd >= 0) ::close(conn_.fd);
  }
  // Connects and handshakes; true when the handshake succeeded.
  bool Connect(int port) {
    conn_.fd = ConnectTo(port);
    if (conn_.fd < 0) return false;
    conn_.ssl = SSL_new(ctx_.get());
    SSL_set_fd(conn_.ssl, conn_.fd);
    SSL_set_tlsext_host_name(conn_.ssl, "localhost");
    SSL_set1_host(conn_.ssl, "localhost");
    return SSL_connect(conn_.ssl) == 1;
  }
  Conn& conn() { return conn_; }

 private:
  std::unique_ptr<SSL_CTX, SslCtxFree> ctx_;
  Conn conn_;
};

TEST_F(ClientListenerTest, TlsGrpcWithClientCertAndHttpsOnTheSamePort) {
  ListenTls(/*client_cert_auth=*/true);
  auto ch = TlsChannel(/*with_client_cert=*/true);
  grpc::Status s = CallRange(ch, "secure");
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(kv_.last_cn(), "alice") << kv_.last_peer();

  for (bool with_alpn : {true, false}) {
    SCOPED_TRACE(with_alpn);
    TlsClient c(pki_, true,
                with_alpn ? std::vector<std::string>{"http/1.1"}
                          : std::vector<std::string>{});
    ASSERT_TRUE(c.Connect(port_));
    std::string rest;
    ASSERT_TRUE(c.conn().Write("GET /health HTTP/1.1\r\nHost: x\r\n\r\n"));
    std::string r = ReadHttpResponse(c.conn(), &rest);
    EXPECT_TRUE(absl::StartsWith(r, "HTTP/1.1 200 OK")) << r;
    EXPECT_EQ(Body(r), "GET /health? cn=alice body=");
    // Keep-alive over TLS.
    ASSERT_TRUE(c.conn().Write("GET /again HTTP/1.1\r\nHost: x\r\n\r\n"));
    EXPECT_EQ(Body(ReadHttpResponse(c.conn(), &rest)),
              "GET /again? cn=alice body=");
  }
  EXPECT_TRUE(CallRange(ch, "secure2").ok());
  EXPECT_EQ(kv_.calls(), 2);
}

TEST_F(ClientListenerTest, TlsClientOfferingBothProtocolsGetsHttp11) {
  // curl and Go's net/http offer h2 and http/1.1; they must reach the
  // HTTP/1.1 server, not gRPC.
  ListenTls(/*client_cert_auth=*/true);
  TlsClient c(pki_, true, {"h2", "http/1.1"});
  ASSERT_TRUE(c.Connect(port_));
  std::string rest;
  ASSERT_TRUE(c.conn().Write("GET /health HTTP/1.1\r\nHost: x\r\n\r\n"));
  EXPECT_EQ(Body(ReadHttpResponse(c.conn(), &rest)),
            "GET /health? cn=alice body=");
}

std::string RunCommand(const std::string& cmd, int* exit_code) {
  std::string out;
  FILE* p = ::popen((cmd + " 2>&1").c_str(), "r");
  if (p == nullptr) {
    *exit_code = -1;
    return out;
  }
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  int status = ::pclose(p);
  *exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return out;
}

// The clients detcd must serve unchanged, when this machine has them:
// etcdctl 3.4 (Go gRPC, ALPN h2 over TLS) and curl (HTTP/1.1; over TLS it
// offers h2 too).
TEST_F(ClientListenerTest, RealEtcdctlAndCurl) {
  if (::access("/usr/bin/etcdctl", X_OK) != 0 ||
      ::access("/usr/bin/curl", X_OK) != 0) {
    GTEST_SKIP() << "etcdctl or curl not installed";
  }
  ListenTls(/*client_cert_auth=*/true);
  std::string endpoint = absl::StrCat("https://127.0.0.1:", port_);
  std::string tls_flags =
      absl::StrCat(" --cacert=", pki_.ca_file, " --cert=", pki_.client_cert_file,
                   " --key=", pki_.client_key_file);
  int rc;
  std::string out = RunCommand(
      absl::StrCat("ETCDCTL_API=3 timeout 20 /usr/bin/etcdctl --endpoints=",
                   endpoint, tls_flags,
                   " --dial-timeout=5s --command-timeout=5s get some-key"),
      &rc);
  EXPECT_EQ(rc, 0) << out;
  EXPECT_TRUE(absl::StartsWith(out, "some-key\n")) << out;
  out = RunCommand(
      absl::StrCat("timeout 20 /usr/bin/curl -sS --max-time 5 --cacert ",
                   pki_.ca_file, " --cert ", pki_.client_cert_file, " --key ",
                   pki_.client_key_file, " ", endpoint, "/health?curl"),
      &rc);
  EXPECT_EQ(rc, 0) << out;
  EXPECT_EQ(out, "GET /health?curl cn=alice body=");
}

TEST_F(ClientListenerTest, TlsWithoutAlpnSniffsTheH2Preface) {
  ListenTls(/*client_cert_auth=*/false);
  TlsClient c(pki_, false, {});
  ASSERT_TRUE(c.Connect(port_));
  ASSERT_TRUE(c.conn().Write(std::string(
      "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0", 33)));
  // gRPC answers with its own SETTINGS frame: 9-byte header, type 4.
  std::string got;
  char buf[256];
  int64_t deadline = NowMs() + 5000;
  while (got.size() < 9 && NowMs() < deadline) {
    long n = c.conn().Read(buf, sizeof buf);
    if (n <= 0) break;
    got.append(buf, static_cast<size_t>(n));
  }
  ASSERT_GE(got.size(), 9u);
  EXPECT_EQ(got[3], '\x04');
}

TEST_F(ClientListenerTest, TlsWithoutClientCertIsRefusedAndListenerServes) {
  ListenTls(/*client_cert_auth=*/true, /*sniff_timeout_ms=*/2000);
  {
    // TLS 1.3 clients finish their side of the handshake before the server
    // checks the certificate; the refusal shows on the first read.
    TlsClient c(pki_, false, {"http/1.1"});
    bool connected = c.Connect(port_);
    if (connected) {
      c.conn().Write("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
      char buf[64];
      EXPECT_LE(c.conn().Read(buf, sizeof buf), 0);
    }
  }
  {
    grpc::Status s = CallRange(TlsChannel(/*with_client_cert=*/false), "no");
    EXPECT_FALSE(s.ok());
  }
  // Plain bytes on a TLS port are refused too.
  int fd = ConnectTo(port_);
  SendStr(fd, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
  bool closed;
  ReadUntilClose(fd, 5000, &closed);
  EXPECT_TRUE(closed);
  ::close(fd);
  // A silent TCP client waits out its handshake timeout alone.
  int silent = ConnectTo(port_);
  EXPECT_TRUE(CallRange(TlsChannel(true), "yes").ok());
  TlsClient ok(pki_, true, {"http/1.1"});
  ASSERT_TRUE(ok.Connect(port_));
  std::string rest;
  ok.conn().Write("GET /fine HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_EQ(Body(ReadHttpResponse(ok.conn(), &rest)),
            "GET /fine? cn=alice body=");
  ::close(silent);
  EXPECT_GE(warnings_.load(), 2);
}

TEST_F(ClientListenerTest, StopEndsTlsGrpcConnections) {
  ListenTls(/*client_cert_auth=*/true);
  auto ch = TlsChannel(true);
  ASSERT_TRUE(CallRange(ch, "a").ok());
  EXPECT_EQ(listener_->Stats().open, 1);  // the pump
  int64_t start = NowMs();
  listener_->Stop();
  EXPECT_LT(NowMs() - start, 2000);
  EXPECT_EQ(listener_->Stats().open, 0);
}

TEST_F(ClientListenerTest, HttpAndHttpsUrlsOnOneHostPortShareASocket) {
  MakePki();
  // Find a free port, then name it twice.
  int probe = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(probe, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  socklen_t len = sizeof a;
  ::getsockname(probe, reinterpret_cast<sockaddr*>(&a), &len);
  int port = ntohs(a.sin_port);
  ::close(probe);
  ClientListenerOptions o;
  o.urls = {absl::StrCat("http://127.0.0.1:", port),
            absl::StrCat("https://127.0.0.1:", port)};
  o.tls.cert_file = pki_.server_cert_file;
  o.tls.key_file = pki_.server_key_file;
  Listen(o);
  EXPECT_EQ(listener_->Ports(), (std::vector<int>{port, port}));
  EXPECT_TRUE(absl::StartsWith(Get("/plain"), "HTTP/1.1 200"));
  EXPECT_TRUE(CallRange(PlainChannel(), "plain").ok());
  EXPECT_TRUE(CallRange(TlsChannel(false), "tls").ok());
}

}  // namespace
}  // namespace detcd::shim
