// Binary encoding of Raft messages for the peer transport (simulated and
// real). detcd peers only talk to detcd peers, so this is our own compact
// format rather than etcd's rafthttp; it is versioned by its first byte.
//
// Message := version(1)=1 type(1) varint(to) varint(from) varint(term)
//            varint(log_term) varint(index) varint(commit) flags(1)
//            varint(reject_hint) lp(context) varint(n) Entry*n [Snapshot]
//   flags: bit0 reject, bit1 has snapshot
// Entry   := varint(term) varint(index) type(1) lp(data)
// Snapshot:= varint(index) varint(term) varint(#voters) varint* varint(#learners)
//            varint* lp(data)
// (varint = LEB128 unsigned; lp = varint length + bytes)
//
// Decoding validates everything: a malformed payload yields an error, never
// a crash or a partially filled message.
#ifndef DETCD_ENGINE_RAFT_CODEC_H_
#define DETCD_ENGINE_RAFT_CODEC_H_

#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "engine/raft/types.h"
#include "engine/util/coding.h"

namespace detcd::raft {

inline constexpr uint64_t kMaxEntriesPerMessage = 1 << 20;

std::string EncodeMessage(const Message& m);
absl::StatusOr<Message> DecodeMessage(std::string_view data);

void EncodeEntry(std::string* out, const Entry& e);
bool DecodeEntry(coding::Reader* r, Entry* e);
void EncodeSnapshot(std::string* out, const Snapshot& s);
bool DecodeSnapshot(coding::Reader* r, Snapshot* s);
void EncodeConfStateTo(std::string* out, const ConfState& cs);
bool DecodeConfStateFrom(coding::Reader* r, ConfState* cs);

}  // namespace detcd::raft

#endif  // DETCD_ENGINE_RAFT_CODEC_H_
