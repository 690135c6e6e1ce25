#include "engine/raft/types.h"

#include "engine/util/coding.h"

namespace detcd::raft {

// ConfChange encoding: version byte 1, type byte, varint node_id,
// varint context length, context bytes.
std::string EncodeConfChange(const ConfChange& cc) {
  std::string out;
  out.push_back(1);
  out.push_back(static_cast<char>(cc.type));
  coding::PutVarint64(&out, cc.node_id);
  coding::PutLengthPrefixed(&out, cc.context);
  return out;
}

bool DecodeConfChange(std::string_view data, ConfChange* cc) {
  coding::Reader r(data);
  uint8_t version = 0, type = 0;
  uint64_t id = 0;
  std::string context;
  if (!r.GetByte(&version) || version != 1 || !r.GetByte(&type) ||
      type > static_cast<uint8_t>(ConfChangeType::kUpdateNode) ||
      !r.GetVarint64(&id) || !r.GetLengthPrefixed(&context) || !r.empty()) {
    return false;
  }
  cc->type = static_cast<ConfChangeType>(type);
  cc->node_id = id;
  cc->context = std::move(context);
  return true;
}

const char* MessageTypeName(MessageType t) {
  switch (t) {
    case MessageType::kHup: return "MsgHup";
    case MessageType::kBeat: return "MsgBeat";
    case MessageType::kProp: return "MsgProp";
    case MessageType::kApp: return "MsgApp";
    case MessageType::kAppResp: return "MsgAppResp";
    case MessageType::kVote: return "MsgVote";
    case MessageType::kVoteResp: return "MsgVoteResp";
    case MessageType::kSnap: return "MsgSnap";
    case MessageType::kHeartbeat: return "MsgHeartbeat";
    case MessageType::kHeartbeatResp: return "MsgHeartbeatResp";
    case MessageType::kUnreachable: return "MsgUnreachable";
    case MessageType::kSnapStatus: return "MsgSnapStatus";
    case MessageType::kCheckQuorum: return "MsgCheckQuorum";
    case MessageType::kTransferLeader: return "MsgTransferLeader";
    case MessageType::kTimeoutNow: return "MsgTimeoutNow";
    case MessageType::kReadIndex: return "MsgReadIndex";
    case MessageType::kReadIndexResp: return "MsgReadIndexResp";
    case MessageType::kPreVote: return "MsgPreVote";
    case MessageType::kPreVoteResp: return "MsgPreVoteResp";
  }
  return "MsgUnknown";
}

bool IsLocalMessage(MessageType t) {
  return t == MessageType::kHup || t == MessageType::kBeat ||
         t == MessageType::kUnreachable || t == MessageType::kSnapStatus ||
         t == MessageType::kCheckQuorum;
}

bool IsResponseMessage(MessageType t) {
  return t == MessageType::kAppResp || t == MessageType::kVoteResp ||
         t == MessageType::kHeartbeatResp || t == MessageType::kUnreachable ||
         t == MessageType::kPreVoteResp;
}

uint64_t EntriesSize(const std::vector<Entry>& entries) {
  uint64_t n = 0;
  for (const auto& e : entries) n += EntrySize(e);
  return n;
}

}  // namespace detcd::raft
