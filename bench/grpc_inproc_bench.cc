// The gRPC round trip in process, to the real services: a one-member
// EtcdServer on its engine thread (shim/engine_loop.h) behind the real
// etcdserverpb services (shim/services.h), called through
// grpc::Server::InProcessChannel (no socket), one call after another:
//
//   BM_GrpcPut           Put of a 256-byte value, keys cycling over 1000:
//                        proposal, raft, WAL write + fdatasync, apply,
//                        response
//   BM_GrpcRange/serial  point Range, linearizable (serial = 0: ReadIndex
//                        through raft) or serializable (1: served locally)
//
// The data dir is PosixDisk on /dev/shm when it exists (tmpfs: fdatasync
// costs next to nothing, so the figure is the CPU path, not the disk; the
// label says which), else $TMPDIR or /tmp. Reported per call: wall time
// ("Time", UseRealTime) and CPU time of the whole process, client, gRPC
// and engine threads together ("CPU", MeasureProcessCPUTime).
#include <benchmark/benchmark.h>
#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_format.h"
#include "engine/env/env.h"
#include "engine/server/etcd_server.h"
#include "etcdserverpb/rpc.grpc.pb.h"
#include "shim/engine_loop.h"
#include "shim/posix_disk.h"
#include "shim/real_clock.h"
#include "shim/services.h"

namespace detcd::shim {
namespace {

namespace pb = etcdserverpb;

// One member: nothing is ever sent to a peer.
class NoPeers final : public env::Transport {
 public:
  void Send(uint64_t, std::string) override {}
};

std::string TempBase(bool* tmpfs) {
  *tmpfs = std::filesystem::is_directory("/dev/shm") &&
           ::access("/dev/shm", W_OK) == 0;
  if (*tmpfs) return "/dev/shm";
  const char* t = std::getenv("TMPDIR");
  return t != nullptr && *t != '\0' ? t : "/tmp";
}

class Member {
 public:
  ~Member() { Stop(); }

  absl::Status Start() {
    std::string tmpl = TempBase(&tmpfs_) + "/detcd-grpc-bench.XXXXXX";
    if (::mkdtemp(tmpl.data()) == nullptr) {
      return absl::InternalError("mkdtemp failed");
    }
    dir_ = tmpl;
    disk_ = std::make_unique<PosixDisk>(dir_);
    server::EtcdServerOptions so;
    so.node.id = 1;
    so.node.data_dir = "member";
    so.node.initial_voters = {1};
    so.initial_members = {{1, "bench", {"http://127.0.0.1:2380"}, {}, false}};
    so.cluster_id = 0x1234;
    so.tick_ns = 100'000'000;
    so.lease.min_ttl_s = 0;
    if (absl::Status s = so.Validate(); !s.ok()) return s;
    env::Env env{&clock_, disk_.get(), &peers_, &rng_};
    server_ = std::make_unique<server::EtcdServer>(env, so);
    EngineLoop::Options lo;
    lo.tick_ns = so.tick_ns;
    loop_ = std::make_unique<EngineLoop>(lo, [this] { server_->Tick(); });
    loop_->Start();
    absl::Status started;
    loop_->RunSync([&] {
      started = server_->Start();
      // Alone in its cluster: campaign now rather than after an election
      // timeout (etcd's initial election tick advance does the same).
      for (int i = 0; started.ok() && i < 2 * so.node.election_ticks; ++i) {
        server_->Tick();
      }
    });
    if (!started.ok()) return started;
    services_ = std::make_unique<Services>(loop_.get(), server_.get(),
                                           Services::Options{}, nullptr);
    grpc::ServerBuilder b;
    for (grpc::Service* s : services_->services()) b.RegisterService(s);
    grpc_ = b.BuildAndStart();
    if (!grpc_) return absl::InternalError("gRPC server failed");
    grpc::ChannelArguments args;
    stub_ = pb::KV::NewStub(grpc_->InProcessChannel(args));
    // Bounded wait for the member to lead and apply.
    for (int i = 0; i < 200; ++i) {
      grpc::ClientContext ctx;
      ctx.set_deadline(std::chrono::system_clock::now() +
                       std::chrono::seconds(2));
      pb::PutRequest p;
      p.set_key("ready");
      pb::PutResponse r;
      if (stub_->Put(&ctx, p, &r).ok()) return absl::OkStatus();
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return absl::DeadlineExceededError("the member never served a Put");
  }

  void Stop() {
    if (services_) services_->Shutdown();
    if (grpc_) {
      grpc_->Shutdown(std::chrono::system_clock::now() +
                      std::chrono::seconds(5));
    }
    stub_.reset();
    if (loop_) loop_->Stop(nullptr);
    grpc_.reset();
    services_.reset();
    loop_.reset();
    server_.reset();
    disk_.reset();
    if (!dir_.empty()) {
      std::error_code ec;
      std::filesystem::remove_all(dir_, ec);
      dir_.clear();
    }
  }

  pb::KV::Stub& kv() { return *stub_; }
  const char* label() const { return tmpfs_ ? "tmpfs" : "disk"; }

 private:
  std::string dir_;
  bool tmpfs_ = false;
  RealClock clock_;
  env::SeededRng rng_{42};
  NoPeers peers_;
  std::unique_ptr<PosixDisk> disk_;
  std::unique_ptr<server::EtcdServer> server_;
  std::unique_ptr<EngineLoop> loop_;
  std::unique_ptr<Services> services_;
  std::unique_ptr<grpc::Server> grpc_;
  std::unique_ptr<pb::KV::Stub> stub_;
};

std::vector<pb::PutRequest> Puts() {
  std::vector<pb::PutRequest> v(1000);
  for (size_t k = 0; k < v.size(); ++k) {
    v[k].set_key(absl::StrFormat("key%010d", k));
    v[k].set_value(std::string(256, 'v'));
  }
  return v;
}

void BM_GrpcPut(benchmark::State& state) {
  Member m;
  if (absl::Status s = m.Start(); !s.ok()) {
    state.SkipWithError(std::string(s.message()).c_str());
    return;
  }
  state.SetLabel(m.label());
  const std::vector<pb::PutRequest> puts = Puts();
  size_t i = 0;
  int64_t failures = 0;
  for (auto _ : state) {
    grpc::ClientContext ctx;
    pb::PutResponse r;
    if (!m.kv().Put(&ctx, puts[i], &r).ok()) ++failures;
    if (++i == puts.size()) i = 0;
  }
  state.counters["failures"] = static_cast<double>(failures);
  if (failures > 0) state.SkipWithError("some calls failed");
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_GrpcPut)
    ->UseRealTime()
    ->MeasureProcessCPUTime()
    ->Unit(benchmark::kMicrosecond);

void BM_GrpcRange(benchmark::State& state) {
  Member m;
  if (absl::Status s = m.Start(); !s.ok()) {
    state.SkipWithError(std::string(s.message()).c_str());
    return;
  }
  state.SetLabel(m.label());
  const std::vector<pb::PutRequest> puts = Puts();
  std::vector<pb::RangeRequest> gets(puts.size());
  for (size_t k = 0; k < puts.size(); ++k) {
    grpc::ClientContext ctx;
    pb::PutResponse r;
    if (!m.kv().Put(&ctx, puts[k], &r).ok()) {
      state.SkipWithError("setup put failed");
      return;
    }
    gets[k].set_key(puts[(k * 7919) % puts.size()].key());
    gets[k].set_serializable(state.range(0) != 0);
  }
  size_t i = 0;
  int64_t failures = 0;
  for (auto _ : state) {
    grpc::ClientContext ctx;
    pb::RangeResponse r;
    if (!m.kv().Range(&ctx, gets[i], &r).ok() || r.kvs_size() != 1) {
      ++failures;
    }
    if (++i == gets.size()) i = 0;
  }
  state.counters["failures"] = static_cast<double>(failures);
  if (failures > 0) state.SkipWithError("some calls failed");
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_GrpcRange)
    ->ArgName("serial")
    ->Arg(0)
    ->Arg(1)
    ->UseRealTime()
    ->MeasureProcessCPUTime()
    ->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace detcd::shim
