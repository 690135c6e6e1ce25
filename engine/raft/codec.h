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

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/raft/types.h"
#include "engine/util/coding.h"

namespace detcd::raft {

inline constexpr uint64_t kMaxEntriesPerMessage = 1 << 20;

std::string EncodeMessage(const Message& m);
// The encoding of a message that carries a snapshot, up to the snapshot's
// data: the head, then the data's bytes, are EncodeMessage(m). A transport
// sends a large image from where it lies instead of a copy of it.
std::string EncodeMessageHead(const Message& m);
// own, when given, is the string `data` views (data may skip a prefix of
// it): a snapshot's data, the message's tail, is then moved out of *own
// instead of copied (a snapshot from the leader can be most of memory),
// and *own is left unspecified.
absl::StatusOr<Message> DecodeMessage(std::string_view data,
                                      std::string* own = nullptr);

void EncodeEntry(std::string* out, const Entry& e);
bool DecodeEntry(coding::Reader* r, Entry* e);
void EncodeSnapshot(std::string* out, const Snapshot& s);
bool DecodeSnapshot(coding::Reader* r, Snapshot* s);
// The metadata, and a view of the data in the reader's input.
bool DecodeSnapshotView(coding::Reader* r, SnapshotMetadata* m,
                        std::string_view* data);
// Decodes a snapshot that is the whole of *buf, moving its data out of
// *buf rather than copying it (a restart's image can be most of memory).
// *buf is left unspecified.
bool DecodeWholeSnapshot(std::string* buf, Snapshot* s);
void EncodeConfStateTo(std::string* out, const ConfState& cs);
bool DecodeConfStateFrom(coding::Reader* r, ConfState* cs);

// Joining appends without decoding their entries. Under load a leader
// sends a follower one MsgApp per proposal and one per commit advance; the
// real transport joins those queued together for one peer into one MsgApp
// (fewer messages to decode, step and acknowledge). The format does not
// change: a joined message is an ordinary MsgApp.
//
// The header of an encoded MsgApp that carries neither reject, snapshot,
// reject hint nor context, and whose entries have consecutive indexes from
// index + 1 (every append raft sends in normal replication).
struct AppendFrame {
  uint64_t to = 0, from = 0, term = 0, log_term = 0, index = 0, commit = 0;
  uint64_t entries = 0;  // how many
  // (index, term) of the last entry; (index, log_term) when there is none.
  uint64_t last_index = 0, last_term = 0;
  std::string_view head;          // the bytes from the version to index
  std::string_view entries_data;  // the encoded entries
};
// nullopt for any other message (or malformed bytes). Views `msg`.
std::optional<AppendFrame> ParseAppendFrame(std::string_view msg);
// Whether `next` continues `prev`: same sender, receiver and term, and
// next's (index, log_term) names prev's last entry. Delivering the joined
// message has the same effect on a follower as delivering both in order:
// the same entries after the same check of the entry before them, and
// next's commit (the larger: a leader's commit index only grows).
bool ContinuesAppend(const AppendFrame& prev, const AppendFrame& next);
// One MsgApp for run[0], run[1], ... where each continues the one before
// (checked: DETCD_CHECK). The frames' bytes must still be alive.
std::string JoinAppends(const std::vector<AppendFrame>& run);

}  // namespace detcd::raft

#endif  // DETCD_ENGINE_RAFT_CODEC_H_
