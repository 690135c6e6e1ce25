// Encoding and decoding of what crosses the wire and the log:
//   - etcd's protobuf requests as clients send them (PutRequest with a
//     16-byte key and 256-byte value, RangeRequest of one key,
//     TxnRequest compare-and-swap: one compare, a put on success, a range
//     on failure), the InternalRaftRequest that carries a Put into the
//     raft log (what EtcdServer proposes), and a RangeResponse with one
//     key-value;
//   - raft::Message with N 128-byte entries in detcd's own codec
//     (engine/raft/codec.h), as the peer transport sends kApp.
// Encode serializes into a reused string; decode parses into a reused
// message. bytes = encoded size.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <string>

#include "engine/raft/codec.h"
#include "engine/raft/types.h"
#include "etcdserverpb/raft_internal.pb.h"
#include "etcdserverpb/rpc.pb.h"

namespace detcd {
namespace {

namespace pb = etcdserverpb;

pb::PutRequest MakePut() {
  pb::PutRequest p;
  p.set_key("key0000000012345");
  p.set_value(std::string(256, 'v'));
  p.set_lease(7587869876);
  return p;
}

pb::RangeRequest MakeRange() {
  pb::RangeRequest r;
  r.set_key("key0000000012345");
  return r;
}

pb::TxnRequest MakeTxn() {
  pb::TxnRequest t;
  pb::Compare* c = t.add_compare();
  c->set_key("key0000000012345");
  c->set_target(pb::Compare::MOD);
  c->set_result(pb::Compare::EQUAL);
  c->set_mod_revision(123456);
  *t.add_success()->mutable_request_put() = MakePut();
  t.add_failure()->mutable_request_range()->set_key("key0000000012345");
  return t;
}

pb::InternalRaftRequest MakeInternalPut() {
  pb::InternalRaftRequest r;
  r.mutable_header()->set_id(0x1234567890ab);
  *r.mutable_put() = MakePut();
  return r;
}

pb::RangeResponse MakeRangeResponse() {
  pb::RangeResponse r;
  r.mutable_header()->set_cluster_id(0xcdef12345678);
  r.mutable_header()->set_member_id(0x8e9e05c52164694d);
  r.mutable_header()->set_revision(123456);
  r.mutable_header()->set_raft_term(5);
  auto* kv = r.add_kvs();
  kv->set_key("key0000000012345");
  kv->set_value(std::string(256, 'v'));
  kv->set_create_revision(1000);
  kv->set_mod_revision(123456);
  kv->set_version(17);
  r.set_count(1);
  return r;
}

template <typename Msg>
void Encode(benchmark::State& state, const Msg& m) {
  std::string out;
  for (auto _ : state) {
    out.clear();
    if (!m.SerializeToString(&out)) state.SkipWithError("serialize failed");
    benchmark::DoNotOptimize(out.data());
  }
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() *
                          static_cast<int64_t>(out.size()));
}

template <typename Msg>
void Decode(benchmark::State& state, const Msg& m) {
  const std::string wire = m.SerializeAsString();
  Msg out;
  for (auto _ : state) {
    if (!out.ParseFromString(wire)) state.SkipWithError("parse failed");
    benchmark::DoNotOptimize(out);
  }
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() *
                          static_cast<int64_t>(wire.size()));
}

BENCHMARK_CAPTURE(Encode, PutRequest, MakePut());
BENCHMARK_CAPTURE(Decode, PutRequest, MakePut());
BENCHMARK_CAPTURE(Encode, RangeRequest, MakeRange());
BENCHMARK_CAPTURE(Decode, RangeRequest, MakeRange());
BENCHMARK_CAPTURE(Encode, TxnRequest, MakeTxn());
BENCHMARK_CAPTURE(Decode, TxnRequest, MakeTxn());
BENCHMARK_CAPTURE(Encode, InternalRaftRequestPut, MakeInternalPut());
BENCHMARK_CAPTURE(Decode, InternalRaftRequestPut, MakeInternalPut());
BENCHMARK_CAPTURE(Encode, RangeResponse, MakeRangeResponse());
BENCHMARK_CAPTURE(Decode, RangeResponse, MakeRangeResponse());

raft::Message MakeApp(int n) {
  raft::Message m;
  m.type = raft::MessageType::kApp;
  m.from = 0x8e9e05c52164694d;
  m.to = 0x91bc3c398fb3c146;
  m.term = 7;
  m.log_term = 7;
  m.index = 1000000;
  m.commit = 999990;
  for (int i = 0; i < n; ++i) {
    raft::Entry e;
    e.term = 7;
    e.index = m.index + 1 + static_cast<uint64_t>(i);
    e.data = std::string(128, 'x');
    m.entries.push_back(std::move(e));
  }
  return m;
}

void BM_RaftMsgEncode(benchmark::State& state) {
  const raft::Message m = MakeApp(static_cast<int>(state.range(0)));
  size_t bytes = 0;
  for (auto _ : state) {
    std::string out = raft::EncodeMessage(m);
    bytes = out.size();
    benchmark::DoNotOptimize(out.data());
  }
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(bytes));
}
BENCHMARK(BM_RaftMsgEncode)->Arg(0)->Arg(1)->Arg(16)->Arg(256);

void BM_RaftMsgDecode(benchmark::State& state) {
  const std::string wire =
      raft::EncodeMessage(MakeApp(static_cast<int>(state.range(0))));
  for (auto _ : state) {
    auto m = raft::DecodeMessage(wire);
    if (!m.ok()) state.SkipWithError("decode failed");
    benchmark::DoNotOptimize(m);
  }
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() *
                          static_cast<int64_t>(wire.size()));
}
BENCHMARK(BM_RaftMsgDecode)->Arg(0)->Arg(1)->Arg(16)->Arg(256);

}  // namespace
}  // namespace detcd
