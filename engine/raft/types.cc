#include "engine/raft/types.h"

#include <cstring>

namespace detcd::raft {
namespace {

void PutVarint(std::string* out, uint64_t v) {
  while (v >= 0x80) {
    out->push_back(static_cast<char>(v | 0x80));
    v >>= 7;
  }
  out->push_back(static_cast<char>(v));
}

bool GetVarint(const std::string& in, size_t* pos, uint64_t* v) {
  uint64_t result = 0;
  for (int shift = 0; shift <= 63 && *pos < in.size(); shift += 7) {
    uint64_t byte = static_cast<unsigned char>(in[(*pos)++]);
    result |= (byte & 0x7f) << shift;
    if (!(byte & 0x80)) {
      *v = result;
      return true;
    }
  }
  return false;
}

}  // namespace

// ConfChange encoding: version byte 1, type byte, varint node_id,
// varint context length, context bytes.
std::string EncodeConfChange(const ConfChange& cc) {
  std::string out;
  out.push_back(1);
  out.push_back(static_cast<char>(cc.type));
  PutVarint(&out, cc.node_id);
  PutVarint(&out, cc.context.size());
  out.append(cc.context);
  return out;
}

bool DecodeConfChange(const std::string& data, ConfChange* cc) {
  if (data.size() < 2 || data[0] != 1) return false;
  auto type = static_cast<uint8_t>(data[1]);
  if (type > static_cast<uint8_t>(ConfChangeType::kAddLearnerNode)) {
    return false;
  }
  size_t pos = 2;
  uint64_t id = 0, len = 0;
  if (!GetVarint(data, &pos, &id) || !GetVarint(data, &pos, &len)) {
    return false;
  }
  if (len != data.size() - pos) return false;
  cc->type = static_cast<ConfChangeType>(type);
  cc->node_id = id;
  cc->context = data.substr(pos);
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
