#include "engine/server/membership.h"

#include <algorithm>
#include <utility>

#include "engine/server/errors.h"
#include "engine/util/coding.h"
#include "membershippb/membership.pb.h"

namespace detcd::server {
namespace {

constexpr char kContextFormat = 1;
constexpr uint64_t kImageFormat = 1;
// Bounds for decoding images: far above anything real, so a corrupt count
// cannot make us allocate without end.
constexpr uint64_t kMaxMembers = 1 << 16;
constexpr uint64_t kMaxUrls = 1 << 10;

bool Contains(const std::vector<uint64_t>& sorted, uint64_t id) {
  return std::binary_search(sorted.begin(), sorted.end(), id);
}

void PutStrings(std::string* out, const std::vector<std::string>& v) {
  coding::PutVarint64(out, v.size());
  for (const std::string& s : v) coding::PutLengthPrefixed(out, s);
}

bool GetStrings(coding::Reader* r, std::vector<std::string>* v) {
  uint64_t n = 0;
  if (!r->GetVarint64(&n) || n > kMaxUrls) return false;
  v->resize(n);
  for (std::string& s : *v) {
    if (!r->GetLengthPrefixed(&s)) return false;
  }
  return true;
}

}  // namespace

std::string EncodeMemberContext(const MemberInfo& m) {
  membershippb::Member pb;
  pb.set_id(m.id);
  for (const std::string& u : m.peer_urls) {
    pb.mutable_raft_attributes()->add_peer_urls(u);
  }
  pb.mutable_raft_attributes()->set_is_learner(m.is_learner);
  pb.mutable_member_attributes()->set_name(m.name);
  for (const std::string& u : m.client_urls) {
    pb.mutable_member_attributes()->add_client_urls(u);
  }
  std::string out(1, kContextFormat);
  pb.AppendToString(&out);
  return out;
}

bool DecodeMemberContext(std::string_view context, MemberInfo* m) {
  if (context.empty() || context[0] != kContextFormat) return false;
  context.remove_prefix(1);
  membershippb::Member pb;
  if (!pb.ParseFromArray(context.data(), static_cast<int>(context.size()))) {
    return false;
  }
  MemberInfo out;
  out.id = pb.id();
  out.name = pb.member_attributes().name();
  out.peer_urls.assign(pb.raft_attributes().peer_urls().begin(),
                       pb.raft_attributes().peer_urls().end());
  out.client_urls.assign(pb.member_attributes().client_urls().begin(),
                         pb.member_attributes().client_urls().end());
  out.is_learner = pb.raft_attributes().is_learner();
  *m = std::move(out);
  return true;
}

void ToProto(const MemberInfo& m, etcdserverpb::Member* out) {
  out->set_id(m.id);
  out->set_name(m.name);
  for (const std::string& u : m.peer_urls) out->add_peerurls(u);
  for (const std::string& u : m.client_urls) out->add_clienturls(u);
  out->set_islearner(m.is_learner);
}

void Membership::ApplyConfChange(const raft::ConfChange& cc,
                                 std::string_view context,
                                 const raft::ConfState& after) {
  MemberInfo given;
  const bool has_info = DecodeMemberContext(context, &given);
  if (cc.type == raft::ConfChangeType::kRemoveNode) {
    if (members_.erase(cc.node_id) > 0) removed_.insert(cc.node_id);
  } else if (has_info) {
    // The member may be known already: a promotion, a repeated add, or a
    // founder that raft's initial membership listed before its own
    // founding entry applied. Published attributes stay; the context
    // fills what is missing, and brings the peer URLs.
    MemberInfo& m = members_[cc.node_id];
    if (m.name.empty()) m.name = std::move(given.name);
    if (m.client_urls.empty()) m.client_urls = std::move(given.client_urls);
    if (!given.peer_urls.empty()) m.peer_urls = std::move(given.peer_urls);
  }
  // Raft's membership decides who is in and who is a learner (it may have
  // refused the change, and a member may be known only by id).
  for (auto it = members_.begin(); it != members_.end();) {
    if (!Contains(after.voters, it->first) &&
        !Contains(after.learners, it->first)) {
      removed_.insert(it->first);
      it = members_.erase(it);
    } else {
      ++it;
    }
  }
  for (uint64_t id : after.voters) members_[id].is_learner = false;
  for (uint64_t id : after.learners) members_[id].is_learner = true;
  for (auto& [id, m] : members_) {
    m.id = id;
    removed_.erase(id);
  }
}

absl::Status Membership::SetAttributes(uint64_t id, std::string name,
                                       std::vector<std::string> client_urls) {
  auto it = members_.find(id);
  if (it == members_.end()) return ErrMemberNotFound();
  it->second.name = std::move(name);
  it->second.client_urls = std::move(client_urls);
  return absl::OkStatus();
}

const MemberInfo* Membership::Find(uint64_t id) const {
  auto it = members_.find(id);
  return it == members_.end() ? nullptr : &it->second;
}

std::vector<MemberInfo> Membership::List() const {
  std::vector<MemberInfo> out;
  out.reserve(members_.size());
  for (const auto& [id, m] : members_) out.push_back(m);
  return out;
}

int64_t Membership::ApproxBytes() const {
  int64_t n = 0;
  for (const auto& [id, m] : members_) {
    n += 64 + static_cast<int64_t>(m.name.size());
    for (const std::string& u : m.peer_urls) n += u.size();
    for (const std::string& u : m.client_urls) n += u.size();
  }
  return n + 8 * static_cast<int64_t>(removed_.size());
}

std::string Membership::Snapshot() const {
  std::string out;
  coding::PutVarint64(&out, kImageFormat);
  coding::PutVarint64(&out, members_.size());
  for (const auto& [id, m] : members_) {
    coding::PutVarint64(&out, id);
    coding::PutLengthPrefixed(&out, m.name);
    PutStrings(&out, m.peer_urls);
    PutStrings(&out, m.client_urls);
    out.push_back(m.is_learner ? 1 : 0);
  }
  coding::PutVarint64(&out, removed_.size());
  for (uint64_t id : removed_) coding::PutVarint64(&out, id);
  return out;
}

absl::Status Membership::Restore(std::string_view image) {
  auto bad = [] {
    return absl::DataLossError("membership snapshot: corrupt");
  };
  coding::Reader r(image);
  uint64_t format = 0, n = 0;
  if (!r.GetVarint64(&format) || format != kImageFormat ||
      !r.GetVarint64(&n) || n > kMaxMembers) {
    return bad();
  }
  absl::btree_map<uint64_t, MemberInfo> members;
  for (uint64_t i = 0; i < n; ++i) {
    MemberInfo m;
    uint8_t learner = 0;
    if (!r.GetVarint64(&m.id) || m.id == 0 || !r.GetLengthPrefixed(&m.name) ||
        !GetStrings(&r, &m.peer_urls) || !GetStrings(&r, &m.client_urls) ||
        !r.GetByte(&learner) || learner > 1) {
      return bad();
    }
    m.is_learner = learner == 1;
    const uint64_t id = m.id;
    if (!members.empty() && members.rbegin()->first >= id) return bad();
    members.emplace(id, std::move(m));
  }
  uint64_t removed_n = 0;
  if (!r.GetVarint64(&removed_n)) return bad();
  absl::btree_set<uint64_t> removed;
  for (uint64_t i = 0; i < removed_n; ++i) {
    uint64_t id = 0;
    if (!r.GetVarint64(&id)) return bad();
    if (!removed.empty() && *removed.rbegin() >= id) return bad();
    removed.insert(id);
  }
  if (!r.empty()) return bad();
  members_ = std::move(members);
  removed_ = std::move(removed);
  return absl::OkStatus();
}

}  // namespace detcd::server
