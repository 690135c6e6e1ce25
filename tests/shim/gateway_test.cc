// The JSON gateway (shim/gateway.h): Go's JSON texts, the JSON mapping, and
// whole calls through a gRPC server in this process with small fake KV,
// Watch and Lock services; the HTTP server's streamed and trailer answers
// (shim/http.h) over a socket pair. tests/integration/test_gateway.py
// compares the real thing with etcd 3.4 through curl.
#include "shim/gateway.h"

#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "etcdserverpb/rpc.grpc.pb.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "shim/grpc_h2.h"
#include "shim/http.h"
#include "shim/tls.h"
#include "v3lockpb/v3lock.grpc.pb.h"

namespace detcd::shim {
namespace {

namespace pb = etcdserverpb;

std::string Err(std::string_view body) {
  size_t pos = 0;
  std::string_view v;
  std::string e;
  JsonNext n = NextJsonValue(body, &pos, &v, &e);
  return n == JsonNext::kError ? e : "";
}

TEST(GoJsonSyntax, ScannerTexts) {
  EXPECT_EQ(Err("garbage"),
            "invalid character 'g' looking for beginning of value");
  EXPECT_EQ(Err("{\"key\":"), "unexpected EOF");
  EXPECT_EQ(Err("{key:1}"),
            "invalid character 'k' looking for beginning of object key string");
  EXPECT_EQ(Err("{\"a\" 1}"), "invalid character '1' after object key");
  EXPECT_EQ(Err("{\"a\":1 \"b\"}"),
            "invalid character '\"' after object key:value pair");
  EXPECT_EQ(Err("[1 2]"), "invalid character '2' after array element");
  EXPECT_EQ(Err("{\"a\":tru}"),
            "invalid character '}' in literal true (expecting 'e')");
  EXPECT_EQ(Err("{\"a\":-}"), "invalid character '}' in numeric literal");
  EXPECT_EQ(Err("{\"a\":1.}"),
            "invalid character '}' after decimal point in numeric literal");
  EXPECT_EQ(Err("{\"a\":1e}"),
            "invalid character '}' in exponent of numeric literal");
  EXPECT_EQ(Err("\"\\q\""), "invalid character 'q' in string escape code");
  EXPECT_EQ(Err("\"\\u00zz\""),
            "invalid character 'z' in \\u hexadecimal character escape");
  EXPECT_EQ(Err("\"a\nb\""), "invalid character '\\n' in string literal");
  EXPECT_EQ(Err("'x'"),
            "invalid character '\\'' looking for beginning of value");
  EXPECT_EQ(Err("{\"a\":[1,{}]} trailing"), "");
}

TEST(GoJsonSyntax, ValuesOneAfterAnother) {
  std::string body = " {\"a\":1}\n{\"b\":[2]}  null ";
  size_t pos = 0;
  std::string_view v;
  std::string e;
  ASSERT_EQ(NextJsonValue(body, &pos, &v, &e), JsonNext::kValue);
  EXPECT_EQ(v, "{\"a\":1}");
  ASSERT_EQ(NextJsonValue(body, &pos, &v, &e), JsonNext::kValue);
  EXPECT_EQ(v, "{\"b\":[2]}");
  ASSERT_EQ(NextJsonValue(body, &pos, &v, &e), JsonNext::kValue);
  EXPECT_EQ(v, "null");
  EXPECT_EQ(NextJsonValue(body, &pos, &v, &e), JsonNext::kEnd);
  pos = 0;
  EXPECT_EQ(NextJsonValue("   ", &pos, &v, &e), JsonNext::kEnd);
}

TEST(GoJsonSyntax, HostileInputNeverCrashes) {
  // Nesting far beyond Go's limit is refused, not recursed into.
  std::string deep(1 << 20, '[');
  EXPECT_EQ(Err(deep), "exceeded max depth");
  std::string deep_obj;
  for (int i = 0; i < 5000; ++i) deep_obj += "{\"x\":";
  deep_obj += "1";
  deep_obj += std::string(5000, '}');
  pb::RangeRequest r;
  EXPECT_EQ(JsonToProto(deep_obj, &r), absl::OkStatus());  // unknown: ignored
  // Bytes from a fixed generator: whatever they are, an answer.
  uint64_t x = 88172645463325252ull;
  const std::string alphabet = "{}[]\":,0123456789.eE+-tfnrul \\\"aZ\n\x01\xff";
  for (int round = 0; round < 2000; ++round) {
    std::string body;
    const int len = static_cast<int>(x % 64);
    for (int i = 0; i < len; ++i) {
      x ^= x << 13;
      x ^= x >> 7;
      x ^= x << 17;
      body += alphabet[x % alphabet.size()];
    }
    size_t pos = 0;
    std::string_view v;
    std::string e;
    while (NextJsonValue(body, &pos, &v, &e) == JsonNext::kValue) {
      (void)JsonToProto(v, &r);
    }
  }
}

std::string ProtoErr(std::string_view json) {
  pb::RangeRequest r;
  absl::Status s = JsonToProto(json, &r);
  return s.ok() ? "" : std::string(s.message());
}

TEST(JsonToProto, JsonpbTexts) {
  EXPECT_EQ(ProtoErr("{\"limit\":true}"),
            "json: cannot unmarshal bool into Go value of type int64");
  EXPECT_EQ(ProtoErr("{\"limit\":1.5}"),
            "json: cannot unmarshal number 1.5 into Go value of type int64");
  EXPECT_EQ(ProtoErr("{\"limit\":\"abc\"}"),
            "invalid character 'a' looking for beginning of value");
  EXPECT_EQ(ProtoErr("{\"keys_only\":\"yes\"}"),
            "json: cannot unmarshal string into Go value of type bool");
  EXPECT_EQ(ProtoErr("{\"sort_order\":\"NOPE\"}"),
            "unknown value \"NOPE\" for enum "
            "etcdserverpb.RangeRequest_SortOrder");
  EXPECT_EQ(ProtoErr("[1]"),
            "json: cannot unmarshal array into Go value of type "
            "map[string]json.RawMessage");
  EXPECT_EQ(ProtoErr("{\"key\":\"!!\"}"),
            "illegal base64 data at input byte 0");
  // Go reports a short last quantum at its start.
  EXPECT_EQ(ProtoErr("{\"key\":\"Zm9\"}"),
            "illegal base64 data at input byte 0");
  EXPECT_EQ(ProtoErr("{\"key\":\"AA<>\"}"),
            "illegal base64 data at input byte 2");
  EXPECT_EQ(ProtoErr("{\"key\":5}"),
            "json: cannot unmarshal number into Go value of type []uint8");
  pb::TxnRequest t;
  EXPECT_EQ(JsonToProto("{\"compare\":{}}", &t).message(),
            "json: cannot unmarshal object into Go value of type "
            "[]json.RawMessage");
}

TEST(JsonToProto, AcceptsWhatJsonpbAccepts) {
  pb::RangeRequest r;
  ASSERT_TRUE(JsonToProto("{\"key\":\"Zm9v\",\"rangeEnd\":\"Zm9w\",\"limit\":"
                          "\"7\",\"sort_order\":2,\"unknown\":[{}]}",
                          &r)
                  .ok());
  EXPECT_EQ(r.key(), "foo");
  EXPECT_EQ(r.range_end(), "fop");
  EXPECT_EQ(r.limit(), 7);
  EXPECT_EQ(r.sort_order(), pb::RangeRequest::DESCEND);
  ASSERT_TRUE(JsonToProto("null", &r).ok());
  EXPECT_EQ(r.key(), "");
  pb::TxnRequest t;
  ASSERT_TRUE(JsonToProto("{\"success\":[{\"request_put\":{\"key\":\"YQ==\","
                          "\"lease\":\"9223372036854775807\"}}]}",
                          &t)
                  .ok());
  EXPECT_EQ(t.success(0).request_put().lease(), INT64_MAX);
}

TEST(ProtoToJson, GatewayShape) {
  pb::RangeResponse r;
  r.mutable_header()->set_cluster_id(18446744073709551615ull);
  r.mutable_header()->set_revision(2);
  auto* kv = r.add_kvs();
  kv->set_key("foo");
  kv->set_value("");
  r.set_count(1);
  EXPECT_EQ(
      ProtoToJson(r),
      "{\"header\":{\"cluster_id\":\"18446744073709551615\","
      "\"revision\":\"2\"},\"kvs\":[{\"key\":\"Zm9v\"}],\"count\":\"1\"}");
  pb::AlarmMember a;
  a.set_alarm(pb::NOSPACE);
  EXPECT_EQ(ProtoToJson(a), "{\"alarm\":\"NOSPACE\"}");
}

TEST(GoJsonString, EscapesAsGo) {
  EXPECT_EQ(GoJsonString("a\"b\\c\n<&>\x01"),
            "\"a\\\"b\\\\c\\n\\u003c\\u0026\\u003e\\u0001\"");
  EXPECT_EQ(GoJsonString("\xe2\x80\xa8"), "\"\\u2028\"");
  EXPECT_EQ(HttpStatusFromGrpcCode(3), 400);
  EXPECT_EQ(HttpStatusFromGrpcCode(16), 401);
  EXPECT_EQ(HttpStatusFromGrpcCode(9), 412);
  EXPECT_EQ(HttpStatusFromGrpcCode(14), 503);
}

// ---- whole calls through an in-process gRPC server

class FakeKv final : public pb::KV::Service {
 public:
  grpc::Status Range(grpc::ServerContext* ctx, const pb::RangeRequest* req,
                     pb::RangeResponse* resp) override {
    auto md = ctx->client_metadata();
    auto it = md.find("authorization");
    if (it != md.end()) {
      token = std::string(it->second.data(), it->second.size());
    }
    if (req->key().empty()) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                          "etcdserver: key is not provided");
    }
    resp->mutable_header()->set_revision(5);
    auto* kv = resp->add_kvs();
    kv->set_key(req->key());
    kv->set_value("v<1>");
    resp->set_count(1);
    return grpc::Status::OK;
  }
  std::string token;
};

// Answers each create with "created", like etcd's watch server keeps the
// stream open after the client's half-close, until cancelled.
class FakeWatch final : public pb::Watch::Service {
 public:
  grpc::Status Watch(
      grpc::ServerContext* ctx,
      grpc::ServerReaderWriter<pb::WatchResponse, pb::WatchRequest>* stream)
      override {
    pb::WatchRequest req;
    int64_t id = 0;
    while (stream->Read(&req)) {
      if (req.create_request().key() == "fail") {
        return grpc::Status(grpc::StatusCode::PERMISSION_DENIED,
                            "etcdserver: permission denied");
      }
      pb::WatchResponse resp;
      resp.set_watch_id(id++);
      resp.set_created(true);
      stream->Write(resp);
    }
    while (!ctx->IsCancelled()) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    cancelled.Notify();
    return grpc::Status::CANCELLED;
  }
  absl::Notification cancelled;
};

// A lock that never comes: the call waits until cancelled.
class FakeLock final : public v3lockpb::Lock::Service {
 public:
  grpc::Status Lock(grpc::ServerContext* ctx, const v3lockpb::LockRequest*,
                    v3lockpb::LockResponse*) override {
    while (!ctx->IsCancelled()) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    cancelled.Notify();
    return grpc::Status::CANCELLED;
  }
  absl::Notification cancelled;
};

class CollectWriter : public HttpBodyWriter {
 public:
  void SetStatus(int s) override {
    if (!started_) status = s;
  }
  bool Write(std::string_view data) override {
    started_ = true;
    body.append(data.data(), data.size());
    return true;
  }
  bool started() const override { return started_; }
  int status = 200;
  std::string body;

 private:
  bool started_ = false;
};

class GatewayCalls : public ::testing::Test {
 protected:
  void SetUp() override {
    grpc::ServerBuilder b;
    b.RegisterService(&kv_);
    b.RegisterService(&watch_);
    b.RegisterService(&lock_);
    server_ = b.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    GatewayOptions o;
    o.poll_interval_ms = 10;
    gw_ = std::make_unique<Gateway>(
        server_->InProcessChannel(grpc::ChannelArguments()), o);
  }
  void TearDown() override {
    gw_.reset();
    server_->Shutdown();
  }

  static HttpRequest Post(std::string path, std::string body) {
    HttpRequest r;
    r.method = "POST";
    r.path = std::move(path);
    r.body = std::move(body);
    return r;
  }
  static std::string Header(const HttpResponse& r, const std::string& name) {
    for (const auto& [k, v] : r.headers) {
      if (k == name) return v;
    }
    return "";
  }

  FakeKv kv_;
  FakeWatch watch_;
  FakeLock lock_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<Gateway> gw_;
};

TEST_F(GatewayCalls, UnaryAnswerAndToken) {
  HttpRequest req = Post("/v3/kv/range", "{\"key\":\"Zm9v\"}");
  req.headers["authorization"] = "tok.1";
  HttpResponse r = gw_->Handle(req);
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body,
            "{\"header\":{\"revision\":\"5\"},\"kvs\":[{\"key\":\"Zm9v\","
            "\"value\":\"djwxPg==\"}],\"count\":\"1\"}");
  EXPECT_EQ(Header(r, "Content-Type"), "application/json");
  EXPECT_EQ(Header(r, "Access-Control-Allow-Origin"), "*");
  EXPECT_EQ(kv_.token, "tok.1");
  // The same through the aliases.
  EXPECT_EQ(gw_->Handle(Post("/v3beta/kv/range", "{\"key\":\"Zm9v\"}")).body,
            r.body);
  EXPECT_EQ(gw_->Handle(Post("/v3alpha/kv/range", "{\"key\":\"Zm9v\"}")).body,
            r.body);
}

TEST_F(GatewayCalls, Errors) {
  HttpResponse r = gw_->Handle(Post("/v3/kv/range", ""));
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(r.body,
            "{\"error\":\"etcdserver: key is not provided\",\"message\":"
            "\"etcdserver: key is not provided\",\"code\":3}");
  ASSERT_EQ(r.trailers.size(), 1u);
  EXPECT_EQ(Header(r, "Trailer"), "Grpc-Trailer-Content-Type");
  r = gw_->Handle(Post("/v3/kv/range", "{\"key\":"));
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(r.body,
            "{\"error\":\"unexpected EOF\",\"message\":\"unexpected EOF\","
            "\"code\":3}");
  EXPECT_TRUE(r.trailers.empty());
  r = gw_->Handle(Post("/v3/kv/nothing", "{}"));
  EXPECT_EQ(r.status, 404);
  EXPECT_EQ(r.body, "Not Found\n");
  HttpRequest get = Post("/v3/kv/range", "");
  get.method = "GET";
  EXPECT_EQ(gw_->Handle(get).status, 405);
  get.method = "OPTIONS";
  r = gw_->Handle(get);
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "");
  EXPECT_FALSE(Gateway::Owns("/v3"));
  EXPECT_FALSE(Gateway::Owns("/health"));
  EXPECT_TRUE(Gateway::Owns("/v3/anything"));
  // A service this server does not have: gRPC's Unimplemented.
  r = gw_->Handle(Post("/v3/lease/grant", "{}"));
  EXPECT_EQ(r.status, 501);
  // A client stream whose first request does not decode: Unknown, 500.
  r = gw_->Handle(Post("/v3/watch", "garbage"));
  EXPECT_EQ(r.status, 500);
  EXPECT_TRUE(absl::StrContains(r.body, "\"code\":2"));
}

TEST_F(GatewayCalls, StreamAnswersEachResponseAndStopsWithTheClient) {
  std::atomic<bool> gone{false};
  HttpRequest req = Post("/v3/watch",
                         "{\"create_request\":{\"key\":\"YQ==\"}}\n"
                         "{\"create_request\":{\"key\":\"Yg==\"}} oops");
  req.client_gone = [&] { return gone.load(); };
  HttpResponse r = gw_->Handle(req);
  ASSERT_TRUE(r.stream);
  CollectWriter w;
  std::thread t([&] { r.stream(w); });
  // The server keeps the stream open after the body's end, as etcd's
  // watch; the client going away cancels it.
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  gone = true;
  ASSERT_TRUE(
      watch_.cancelled.WaitForNotificationWithTimeout(absl::Seconds(30)));
  t.join();
  EXPECT_EQ(w.status, 200);
  EXPECT_EQ(w.body,
            "{\"result\":{\"created\":true}}\n"
            "{\"result\":{\"watch_id\":\"1\",\"created\":true}}\n");
}

TEST_F(GatewayCalls, StreamErrorBeforeAnyAnswer) {
  HttpResponse r = gw_->Handle(
      Post("/v3/watch", "{\"create_request\":{\"key\":\"ZmFpbA==\"}}"));
  ASSERT_TRUE(r.stream);
  CollectWriter w;
  r.stream(w);
  EXPECT_EQ(w.status, 403);
  EXPECT_EQ(w.body,
            "{\"error\":{\"grpc_code\":7,\"http_code\":403,\"message\":"
            "\"etcdserver: permission denied\",\"http_status\":"
            "\"Forbidden\"}}");
}

TEST_F(GatewayCalls, WaitingUnaryCallEndsWithTheClient) {
  std::atomic<bool> gone{false};
  HttpRequest req = Post("/v3/lock/lock", "{\"name\":\"bA==\"}");
  req.client_gone = [&] { return gone.load(); };
  HttpResponse r;
  std::thread t([&] { r = gw_->Handle(req); });
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  gone = true;
  ASSERT_TRUE(
      lock_.cancelled.WaitForNotificationWithTimeout(absl::Seconds(30)));
  t.join();
  EXPECT_EQ(r.status, 408);  // Canceled, as grpc-gateway maps it
}

// With the native transport (GatewayOptions::native_*), the unary calls
// of the methods it serves go there, token and errors included; the
// others still take the channel.
TEST_F(GatewayCalls, UnaryCallsOfNativeMethodsTakeTheNativeTransport) {
  h2::ServerOptions ho;
  ho.max_recv_message_bytes = 2 << 20;  // over its 1 MiB stream window
  auto made = h2::Server::Create(ho);
  ASSERT_TRUE(made.ok()) << made.status();
  std::unique_ptr<h2::Server> native = *std::move(made);
  absl::Mutex mu;
  std::string token;  // under mu
  struct Range : h2::Handler {
    Range(h2::CallPtr c, absl::Mutex* mu, std::string* token)
        : call(std::move(c)), mu(mu), token(token) {}
    void OnMessage(std::string m) override {
      if (const std::string* t = call->Find("authorization")) {
        absl::MutexLock l(mu);
        *token = *t;
      }
      pb::RangeRequest req;
      req.ParseFromString(m);
      if (req.key().empty()) {
        call->Finish(h2::Status{3, "etcdserver: key is not provided"});
        return;
      }
      pb::RangeResponse resp;
      resp.mutable_header()->set_revision(7);
      resp.set_count(2);
      call->Reply(resp.SerializeAsString());
    }
    h2::CallPtr call;
    absl::Mutex* mu;
    std::string* token;
  };
  native->Register("/etcdserverpb.KV/Range", [&](h2::CallPtr c) {
    return std::make_unique<Range>(std::move(c), &mu, &token);
  });
  native->Start();
  GatewayOptions o;
  o.poll_interval_ms = 10;
  o.native_serves = [&](std::string_view m) { return native->Serves(m); };
  o.native_connect = [&] {
    int sv[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
      return -1;
    }
    native->AddConnection(sv[0], "unix:test", "");
    return sv[1];
  };
  Gateway gw(server_->InProcessChannel(grpc::ChannelArguments()), o);
  HttpRequest req = Post("/v3/kv/range", "{\"key\":\"Zm9v\"}");
  req.headers["authorization"] = "tok.2";
  for (int i = 0; i < 3; ++i) {  // one connection serves them all
    HttpResponse r = gw.Handle(req);
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(r.body, "{\"header\":{\"revision\":\"7\"},\"count\":\"2\"}");
  }
  {
    absl::MutexLock l(&mu);
    EXPECT_EQ(token, "tok.2");
  }
  EXPECT_EQ(kv_.token, "");  // the channel's server saw none of them
  EXPECT_EQ(native->Stats().connections, 1u);
  HttpResponse err = gw.Handle(Post("/v3/kv/range", "{}"));
  EXPECT_EQ(err.status, 400);
  EXPECT_NE(err.body.find("etcdserver: key is not provided"), std::string::npos)
      << err.body;
  // A request larger than the transport's stream window goes there too.
  auto key_of = [](size_t bytes) {
    return "{\"key\":\"" + std::string((bytes + 2) / 3 * 4, 'A') + "\"}";
  };
  HttpResponse big = gw.Handle(Post("/v3/kv/range", key_of(3 << 19)));
  EXPECT_EQ(big.status, 200);
  EXPECT_TRUE(absl::StrContains(big.body, "\"revision\":\"7\""));
  // One over its limit is refused before the transport read all of it:
  // that answer ends the call, and the connection serves the next one.
  HttpResponse huge = gw.Handle(Post("/v3/kv/range", key_of(3 << 20)));
  EXPECT_EQ(huge.status, 429);
  EXPECT_TRUE(
      absl::StrContains(huge.body, "grpc: received message larger than max"))
      << huge.body;
  EXPECT_EQ(gw.Handle(req).status, 200);
  EXPECT_EQ(native->Stats().connections, 1u);
  // Put is not served natively: the channel's server has no Put.
  EXPECT_EQ(gw.Handle(Post("/v3/kv/put", "{\"key\":\"Zm9v\"}")).status, 501);
  native->Stop();
}

TEST(GatewayCors, OnlyListedOrigins) {
  grpc::ServerBuilder b;
  FakeKv kv;
  b.RegisterService(&kv);
  std::unique_ptr<grpc::Server> server = b.BuildAndStart();
  ASSERT_NE(server, nullptr);
  GatewayOptions o;
  o.cors = {"http://a.example"};
  Gateway gw(server->InProcessChannel(grpc::ChannelArguments()), o);
  HttpRequest req;
  req.method = "POST";
  req.path = "/v3/kv/range";
  req.body = "{\"key\":\"YQ==\"}";
  auto origin = [](const HttpResponse& r) {
    for (const auto& [k, v] : r.headers) {
      if (k == "Access-Control-Allow-Origin") return v;
    }
    return std::string();
  };
  EXPECT_EQ(origin(gw.Handle(req)), "");
  req.headers["origin"] = "http://b.example";
  EXPECT_EQ(origin(gw.Handle(req)), "");
  req.headers["origin"] = "http://a.example";
  EXPECT_EQ(origin(gw.Handle(req)), "http://a.example");
  // An empty list allows any origin, as etcd's.
  Gateway open(server->InProcessChannel(grpc::ChannelArguments()),
               GatewayOptions{.cors = {},
                              .poll_interval_ms = 100,
                              .native_serves = nullptr,
                              .native_connect = nullptr});
  EXPECT_EQ(origin(open.Handle(req)), "*");
  server->Shutdown();
}

// ---- the HTTP server's streamed and trailer answers

std::string ReadAll(int fd) {
  std::string out;
  char buf[4096];
  while (true) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

std::string Serve(const std::string& requests, const HttpHandler& h) {
  int sv[2];
  EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
  std::unique_ptr<Stream> s = PlainStream(sv[0]);
  std::thread t([&] {
    ServeHttpConnection(*s, "", h, HttpLimits());
    s->Shutdown();  // our end of the pair reads its end of stream
  });
  EXPECT_EQ(::write(sv[1], requests.data(), requests.size()),
            static_cast<ssize_t>(requests.size()));
  ::shutdown(sv[1], SHUT_WR);
  std::string out = ReadAll(sv[1]);
  t.join();
  ::close(sv[1]);
  return out;
}

TEST(HttpStreaming, ChunkedThenKeepAlive) {
  HttpHandler h = [](const HttpRequest& r) {
    HttpResponse resp;
    if (r.path == "/s") {
      resp.stream = [](HttpBodyWriter& w) {
        w.Write("one\n");
        w.Write("two\n");
      };
    } else {
      resp.body = "plain";
    }
    return resp;
  };
  std::string out = Serve(
      "POST /s HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
      "GET /p HTTP/1.1\r\nHost: x\r\n\r\n",
      h);
  EXPECT_TRUE(absl::StrContains(out, "Transfer-Encoding: chunked\r\n"));
  EXPECT_TRUE(absl::StrContains(out,
                                "\r\n\r\n4\r\none\n\r\n4\r\ntwo\n\r\n0"
                                "\r\n\r\nHTTP/1.1 200 OK"));
  EXPECT_TRUE(absl::EndsWith(out, "\r\n\r\nplain"));
}

TEST(HttpStreaming, Http10GetsRawBodyAndClose) {
  HttpHandler h = [](const HttpRequest&) {
    HttpResponse resp;
    resp.stream = [](HttpBodyWriter& w) { w.Write("raw"); };
    return resp;
  };
  std::string out = Serve("GET / HTTP/1.0\r\n\r\n", h);
  EXPECT_FALSE(absl::StrContains(out, "chunked"));
  EXPECT_TRUE(absl::StrContains(out, "Connection: close\r\n"));
  EXPECT_TRUE(absl::EndsWith(out, "\r\n\r\nraw"));
}

TEST(HttpStreaming, StatusBeforeFirstWriteAndTrailers) {
  HttpHandler h = [](const HttpRequest& r) {
    HttpResponse resp;
    if (r.path == "/s") {
      resp.stream = [](HttpBodyWriter& w) { w.SetStatus(403); };
    } else {
      resp.status = 400;
      resp.body = "err";
      resp.trailers.push_back({"X-T", "v"});
    }
    return resp;
  };
  std::string out = Serve(
      "POST /s HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
      "POST /t HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
      h);
  EXPECT_TRUE(absl::StartsWith(out, "HTTP/1.1 403 Forbidden\r\n"));
  EXPECT_TRUE(absl::StrContains(out, "HTTP/1.1 400 Bad Request\r\n"));
  EXPECT_TRUE(absl::EndsWith(out, "\r\n\r\n3\r\nerr\r\n0\r\nX-T: v\r\n\r\n"));
}

}  // namespace
}  // namespace detcd::shim
