// The cost of one unary gRPC call through the client listener: a small KV
// Range (a trivial callback service, no engine) from an in-process client
// over loopback TCP, one channel, calls one after another.
//
//   mux_plain  ClientListener sniffs the preface and hands the fd to gRPC
//   mux_tls    ClientListener's TLS handshake (client certificate, ALPN h2)
//              and its socketpair pump in front of gRPC
//   grpc_plain gRPC's own listening port, for comparison
//   grpc_tls   gRPC's own TLS (SslServerCredentials), for comparison
//
// Reported per call: wall time ("Time", UseRealTime) and CPU time of the
// whole process, client and server together ("CPU", MeasureProcessCPUTime;
// the cpu_us_per_call counter is the same figure from getrusage).
#include <benchmark/benchmark.h>
#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>

#include <grpcpp/grpcpp.h>

#include "absl/strings/str_cat.h"
#include "etcdserverpb/rpc.grpc.pb.h"
#include "shim/client_listener.h"
#include "tests/shim/test_pki.h"

namespace detcd::shim {
namespace {

class SmallKv : public etcdserverpb::KV::CallbackService {
 public:
  grpc::ServerUnaryReactor* Range(
      grpc::CallbackServerContext* ctx,
      const etcdserverpb::RangeRequest* req,
      etcdserverpb::RangeResponse* resp) override {
    auto* kv = resp->add_kvs();
    kv->set_key(req->key());
    kv->set_value("value-of-a-small-key");
    kv->set_mod_revision(42);
    resp->set_count(1);
    resp->mutable_header()->set_revision(42);
    grpc::ServerUnaryReactor* r = ctx->DefaultReactor();
    r->Finish(grpc::Status::OK);
    return r;
  }
};

double ProcessCpuSeconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

enum class Mode { kMuxPlain, kMuxTls, kGrpcPlain, kGrpcTls };

struct Setup {
  std::string dir;
  testing::TestPki pki;
  SmallKv kv;
  std::unique_ptr<grpc::Server> server;
  std::unique_ptr<ClientListener> listener;
  std::shared_ptr<grpc::Channel> channel;

  ~Setup() {
    if (listener) listener->Stop();
    if (server) {
      server->Shutdown(std::chrono::system_clock::now() +
                       std::chrono::seconds(5));
    }
    if (!dir.empty()) std::filesystem::remove_all(dir);
  }

  bool Start(Mode mode) {
    char tmpl[] = "/tmp/grpc_mux_bench.XXXXXX";
    if (::mkdtemp(tmpl) == nullptr) return false;
    dir = tmpl;
    auto p = testing::MakeTestPki(dir);
    if (!p.ok()) return false;
    pki = *p;
    std::string ca = testing::ReadFileOrEmpty(pki.ca_file);
    grpc::SslCredentialsOptions client_tls;
    client_tls.pem_root_certs = ca;
    client_tls.pem_private_key = testing::ReadFileOrEmpty(pki.client_key_file);
    client_tls.pem_cert_chain = testing::ReadFileOrEmpty(pki.client_cert_file);

    grpc::ServerBuilder b;
    b.RegisterService(&kv);
    int port = 0;
    if (mode == Mode::kGrpcPlain) {
      b.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(),
                         &port);
    } else if (mode == Mode::kGrpcTls) {
      grpc::SslServerCredentialsOptions o(
          GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
      o.pem_root_certs = ca;
      o.pem_key_cert_pairs.push_back(
          {testing::ReadFileOrEmpty(pki.server_key_file),
           testing::ReadFileOrEmpty(pki.server_cert_file)});
      b.AddListeningPort("127.0.0.1:0", grpc::SslServerCredentials(o), &port);
    }
    server = b.BuildAndStart();
    if (!server) return false;
    if (mode == Mode::kMuxPlain || mode == Mode::kMuxTls) {
      ClientListenerOptions o;
      bool tls = mode == Mode::kMuxTls;
      o.urls = {tls ? "https://127.0.0.1:0" : "http://127.0.0.1:0"};
      o.tls.cert_file = pki.server_cert_file;
      o.tls.key_file = pki.server_key_file;
      o.tls.trusted_ca_file = pki.ca_file;
      o.tls.client_cert_auth = true;
      auto l = ClientListener::Create(o, server.get(), nullptr);
      if (!l.ok()) return false;
      listener = *std::move(l);
      listener->Start();
      port = listener->Ports()[0];
    }
    std::string target = absl::StrCat("127.0.0.1:", port);
    bool tls = mode == Mode::kMuxTls || mode == Mode::kGrpcTls;
    channel = grpc::CreateChannel(
        target, tls ? grpc::SslCredentials(client_tls)
                    : grpc::InsecureChannelCredentials());
    return channel->WaitForConnected(std::chrono::system_clock::now() +
                                     std::chrono::seconds(10));
  }
};

void BM_UnaryRange(benchmark::State& state, Mode mode) {
  Setup setup;
  if (!setup.Start(mode)) {
    state.SkipWithError("setup failed");
    return;
  }
  auto stub = etcdserverpb::KV::NewStub(setup.channel);
  etcdserverpb::RangeRequest req;
  req.set_key("some/small/key");
  // Warm up the connection (HTTP/2 settings, TLS session, allocations).
  for (int i = 0; i < 200; ++i) {
    grpc::ClientContext ctx;
    etcdserverpb::RangeResponse resp;
    if (!stub->Range(&ctx, req, &resp).ok()) {
      state.SkipWithError("warm-up call failed");
      return;
    }
  }
  double cpu0 = ProcessCpuSeconds();
  int64_t failures = 0;
  for (auto _ : state) {
    grpc::ClientContext ctx;
    etcdserverpb::RangeResponse resp;
    if (!stub->Range(&ctx, req, &resp).ok()) ++failures;
  }
  double cpu = ProcessCpuSeconds() - cpu0;
  state.counters["cpu_us_per_call"] =
      benchmark::Counter(cpu * 1e6 / static_cast<double>(state.iterations()));
  state.counters["failures"] = static_cast<double>(failures);
  state.SetItemsProcessed(state.iterations());
}

BENCHMARK_CAPTURE(BM_UnaryRange, mux_plain, Mode::kMuxPlain)
    ->Iterations(20000)->UseRealTime()->MeasureProcessCPUTime()
    ->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_UnaryRange, mux_tls, Mode::kMuxTls)
    ->Iterations(20000)->UseRealTime()->MeasureProcessCPUTime()
    ->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_UnaryRange, grpc_plain, Mode::kGrpcPlain)
    ->Iterations(20000)->UseRealTime()->MeasureProcessCPUTime()
    ->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_UnaryRange, grpc_tls, Mode::kGrpcTls)
    ->Iterations(20000)->UseRealTime()->MeasureProcessCPUTime()
    ->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace detcd::shim
