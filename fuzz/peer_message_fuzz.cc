// What arrives on the peer port after the transport's framing: raft
// messages (engine/raft/codec.h) and the EtcdServer's other peer channels
// (forwarded requests, their answers, "you were removed"), plus the small
// codecs raft entries carry (conf changes, member contexts, apply results).
//
// Input: byte(mode) then bytes:
//   mode 0: one encoded raft message: DecodeMessage; a message that
//           decodes encodes to bytes that decode to the same encoding;
//   mode 1: a conf change, a member context and an apply result decoder
//           on the same bytes (each must refuse or round-trip);
//   mode 2: up to 8 records varint(n) n bytes, each handed to a live
//           one-member server's OnMessage as a peer payload (channel tag
//           first), then the world runs; the member must stay up, pass the
//           safety checker and still answer a linearizable read. Raft
//           messages ('r') are decoded and checked but not stepped: raft
//           trusts its peers' messages (a forged message from the leader's
//           term can make any raft accept a bogus log, in etcd too), so
//           peers are authenticated by peer TLS, not by raft.
#include <string>
#include <vector>

#include "engine/raft/codec.h"
#include "engine/server/etcd_state_machine.h"
#include "engine/server/membership.h"
#include "engine/util/coding.h"
#include "etcdserverpb/rpc.pb.h"
#include "fuzz/fuzz_target.h"
#include "fuzz/quiet_protobuf.h"
#include "fuzz/one_member.h"

namespace detcd::fuzz {
namespace {

void RaftMessage(std::string_view in) {
  auto m = raft::DecodeMessage(in);
  if (!m.ok()) return;
  const std::string once = raft::EncodeMessage(*m);
  auto again = raft::DecodeMessage(once);
  if (!again.ok()) Fail("an encoded raft message does not decode");
  if (raft::EncodeMessage(*again) != once) {
    Fail("a raft message changed through encode and decode");
  }
}

void SmallCodecs(std::string_view in) {
  raft::ConfChange cc;
  if (raft::DecodeConfChange(std::string(in), &cc)) {
    raft::ConfChange back;
    if (!raft::DecodeConfChange(raft::EncodeConfChange(cc), &back) ||
        !(back == cc)) {
      Fail("a conf change changed through encode and decode");
    }
  }
  server::MemberInfo mi;
  server::MemberChange kind;
  if (server::DecodeMemberContext(in, &mi, &kind)) {
    server::MemberInfo back;
    server::MemberChange back_kind;
    if (!server::DecodeMemberContext(server::EncodeMemberContext(mi, kind),
                                     &back, &back_kind) ||
        back_kind != kind ||
        server::EncodeMemberContext(back, back_kind) !=
            server::EncodeMemberContext(mi, kind)) {
      Fail("a member context changed through encode and decode");
    }
  }
  etcdserverpb::PutResponse resp;
  (void)server::DecodeResult(in, &resp);
}

void LiveServer(std::string_view in) {
  std::vector<std::string_view> payloads;
  coding::Reader r(in);
  while (payloads.size() < 8) {
    uint64_t n = 0;
    if (!r.GetVarint64(&n)) break;
    std::string_view rest = r.rest();
    if (n > rest.size()) n = rest.size();
    payloads.push_back(rest.substr(0, n));
    r = coding::Reader(rest.substr(n));
  }
  if (payloads.empty()) return;
  OneMember m;
  for (std::string_view p : payloads) {
    if (!p.empty() && p[0] == 'r') {
      RaftMessage(p.substr(1));
      continue;
    }
    if (!m.cluster().Call(OneMember::kId, [&](server::EtcdServer& s) {
          s.OnMessage(p);
        })) {
      Fail("the member went down");
    }
    m.Run(sim::kMillisecond * 20);
  }
  m.Run(sim::kMillisecond * 200);
  m.CheckHealthy();
  etcdserverpb::RangeRequest all;
  all.set_key(std::string(1, '\0'));
  all.set_range_end(std::string(1, '\0'));
  all.set_count_only(true);
  auto got = m.Do<etcdserverpb::RangeResponse>(
      [&](server::EtcdServer& s, auto done) { s.Range(all, std::move(done)); });
  if (!got || !got->ok()) Fail("the member no longer serves a read");
  m.CheckHealthy();
}

}  // namespace
}  // namespace detcd::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace detcd::fuzz;
  std::string_view in = AsView(data, size);
  switch (TakeByte(&in) % 3) {
    case 0:
      RaftMessage(in);
      break;
    case 1:
      SmallCodecs(in);
      break;
    case 2:
      LiveServer(in);
      break;
  }
  return 0;
}
