#include "engine/server/membership.h"

#include <algorithm>
#include <cctype>
#include <utility>

#include "engine/server/errors.h"
#include "engine/util/coding.h"
#include "membershippb/membership.pb.h"

namespace detcd::server {
namespace {

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

std::string EncodeMemberContext(const MemberInfo& m, MemberChange kind) {
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
  std::string out(1, static_cast<char>(kind));
  pb.AppendToString(&out);
  return out;
}

bool DecodeMemberContext(std::string_view context, MemberInfo* m,
                         MemberChange* kind) {
  if (context.empty() ||
      context[0] < static_cast<char>(MemberChange::kAdd) ||
      context[0] > static_cast<char>(MemberChange::kFounding)) {
    return false;
  }
  const auto k = static_cast<MemberChange>(context[0]);
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
  if (kind != nullptr) *kind = k;
  return true;
}

namespace {

std::string_view TrimSpace(std::string_view s) {
  const char* ws = " \t\n\v\f\r";
  const size_t b = s.find_first_not_of(ws);
  if (b == std::string_view::npos) return {};
  return s.substr(b, s.find_last_not_of(ws) - b + 1);
}

// Go's net.SplitHostPort accepting `hostport`.
bool IsHostPort(std::string_view hp) {
  if (!hp.empty() && hp[0] == '[') {
    const size_t close = hp.find(']');
    return close != std::string_view::npos && close + 1 < hp.size() &&
           hp[close + 1] == ':' &&
           hp.find_first_of("[]", close + 1) == std::string_view::npos;
  }
  return std::count(hp.begin(), hp.end(), ':') == 1 &&
         hp.find_first_of("[]") == std::string_view::npos;
}

bool IsMemberUrl(std::string_view u) {
  const size_t sep = u.find("://");
  if (sep == std::string_view::npos) return false;
  std::string scheme(u.substr(0, sep));
  for (char& c : scheme) c = static_cast<char>(std::tolower(c));
  if (scheme != "http" && scheme != "https" && scheme != "unix" &&
      scheme != "unixs") {
    return false;
  }
  std::string_view rest = u.substr(sep + 3);
  const size_t end = rest.find_first_of("/?#");
  std::string_view authority = rest.substr(0, end);
  if (end != std::string_view::npos && rest[end] == '/') return false;
  const size_t at = authority.rfind('@');
  if (at != std::string_view::npos) authority.remove_prefix(at + 1);
  return IsHostPort(authority);
}

}  // namespace

absl::StatusOr<std::vector<std::string>> ParseMemberUrls(
    std::vector<std::string> urls) {
  if (urls.empty()) return ErrMemberBadURLs();
  for (std::string& u : urls) {
    u = std::string(TrimSpace(u));
    if (!IsMemberUrl(u)) return ErrMemberBadURLs();
  }
  std::sort(urls.begin(), urls.end());
  return urls;
}

void ToProto(const MemberInfo& m, etcdserverpb::Member* out) {
  out->set_id(m.id);
  out->set_name(m.name);
  for (const std::string& u : m.peer_urls) out->add_peerurls(u);
  for (const std::string& u : m.client_urls) out->add_clienturls(u);
  out->set_islearner(m.is_learner);
}

absl::Status Membership::Check(const raft::ConfChange& cc,
                               std::string_view context) const {
  MemberInfo given;
  MemberChange kind;
  if (!DecodeMemberContext(context, &given, &kind) ||
      kind == MemberChange::kFounding) {
    return absl::OkStatus();
  }
  if (removed_.contains(cc.node_id)) return ErrMemberNotFound();
  const MemberInfo* m = Find(cc.node_id);
  // Peer URLs of every member but `except`.
  auto url_taken = [this](const std::vector<std::string>& urls,
                          uint64_t except) {
    for (const auto& [id, other] : members_) {
      if (id == except) continue;
      for (const std::string& u : other.peer_urls) {
        if (std::find(urls.begin(), urls.end(), u) != urls.end()) return true;
      }
    }
    return false;
  };
  switch (cc.type) {
    case raft::ConfChangeType::kAddNode:
    case raft::ConfChangeType::kAddLearnerNode:
      if (kind == MemberChange::kPromote) {
        if (m == nullptr) return ErrMemberNotFound();
        if (!m->is_learner) return ErrMemberNotLearner();
        return absl::OkStatus();
      }
      if (m != nullptr) return ErrMemberExist();
      if (url_taken(given.peer_urls, cc.node_id)) return ErrPeerURLExist();
      if (cc.type == raft::ConfChangeType::kAddLearnerNode) {
        size_t learners = 0;
        for (const auto& [id, other] : members_) learners += other.is_learner;
        if (learners + 1 > kMaxLearners) return ErrTooManyLearners();
      }
      return absl::OkStatus();
    case raft::ConfChangeType::kRemoveNode:
      return m == nullptr ? ErrMemberNotFound() : absl::OkStatus();
    case raft::ConfChangeType::kUpdateNode:
      if (m == nullptr) return ErrMemberNotFound();
      if (url_taken(given.peer_urls, cc.node_id)) return ErrPeerURLExist();
      return absl::OkStatus();
  }
  return absl::OkStatus();
}

void Membership::ApplyConfChange(const raft::ConfChange& cc,
                                 std::string_view context,
                                 const raft::ConfState& after) {
  MemberInfo given;
  const bool has_info = DecodeMemberContext(context, &given);
  if (cc.type == raft::ConfChangeType::kRemoveNode) {
    if (members_.erase(cc.node_id) > 0) removed_.insert(cc.node_id);
  } else if (cc.type == raft::ConfChangeType::kUpdateNode) {
    auto it = members_.find(cc.node_id);
    if (has_info && it != members_.end()) {
      it->second.peer_urls = std::move(given.peer_urls);
    }
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

// "Started" is etcd's Member.IsStarted: the member has a name.
bool Membership::IsReadyToAddVotingMember() const {
  int members = 1, started = 0;
  for (const auto& [id, m] : members_) {
    if (m.is_learner) continue;
    started += !m.name.empty();
    ++members;
  }
  // etcd: adding a member to a one-member cluster (to restore one) is fine.
  if (started == 1 && members == 2) return true;
  return started >= members / 2 + 1;
}

bool Membership::IsReadyToRemoveVotingMember(uint64_t id) const {
  int members = 0, started = 0;
  for (const auto& [mid, m] : members_) {
    if (m.is_learner || mid == id) continue;
    started += !m.name.empty();
    ++members;
  }
  return started >= members / 2 + 1;
}

bool Membership::IsReadyToPromoteMember() const {
  int members = 1, started = 1;  // the learner counts, as started
  for (const auto& [id, m] : members_) {
    if (m.is_learner) continue;
    started += !m.name.empty();
    ++members;
  }
  return started >= members / 2 + 1;
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
