// etcd's membership store: who the members are (raft's ConfState) plus
// what etcd knows about each (name, peer URLs, client URLs, learner).
// Changed only by committed raft entries, so every member holds the same.
//
// How the attributes arrive, as in etcd:
//  - peer URLs (and the founders' names) travel in the context of the
//    AddNode / AddLearnerNode conf change that adds the member; the
//    founders write theirs into the founding AddNode entries at
//    bootstrap (NodeOptions::founding_contexts);
//  - a started member publishes its name and client URLs through raft
//    (ClusterMemberAttrSetRequest, etcd 3.5's "publish").
//
// Conf change context of the etcd layer (the payload inside the Node's
// proposal envelope, see node.h):
//   empty                          a raw conf change (the simulator's):
//                                  nothing known beyond the id, and no
//                                  checks beyond raft's
//   byte(kind) membershippb.Member ID, raft_attributes {peer_urls,
//                                  is_learner}, member_attributes {name,
//                                  client_urls}; kind (MemberChange):
//                                  1 add (AddNode / AddLearnerNode),
//                                  2 promote (AddNode of a learner),
//                                  3 update (UpdateNode: new peer URLs),
//                                  4 remove (RemoveNode),
//                                  5 founding (the founding AddNode
//                                  entries; not checked: raft's initial
//                                  membership lists every founder before
//                                  their entries apply)
// Any other first byte, or bytes that do not parse, count as a raw conf
// change, the same way on every member. etcd uses the member's JSON here
// (with an IsPromote flag); ours is etcd's 3.5 protobuf Member.
//
// Changes with a context of ours are checked before they take effect, as
// etcd's ValidateConfigurationChange does (Check): a removed id is never
// reused; an added member's id and peer URLs must be new; at most one
// learner; only a learner is promoted; a removed or updated member must
// exist. A refused change changes nothing anywhere.
//
// The membership always equals raft's ConfState after each applied conf
// change: the conf state decides who is a member and who is a learner;
// the contexts only add attributes.
//
// Image (all integers varints, strings length-prefixed):
//   varint(1)  format
//   varint(n)  members, by ascending id:
//     varint(id) lp(name) varint(#peer) lp(url)* varint(#client) lp(url)*
//     byte(is_learner)
//   varint(r)  removed ids, ascending: varint(id)*
#ifndef DETCD_ENGINE_SERVER_MEMBERSHIP_H_
#define DETCD_ENGINE_SERVER_MEMBERSHIP_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/btree_map.h"
#include "absl/container/btree_set.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/raft/types.h"
#include "etcdserverpb/rpc.pb.h"

namespace detcd::server {

struct MemberInfo {
  uint64_t id = 0;
  std::string name;  // empty until published (or given at founding)
  std::vector<std::string> peer_urls;
  std::vector<std::string> client_urls;
  bool is_learner = false;

  bool operator==(const MemberInfo&) const = default;
};

enum class MemberChange : uint8_t {
  kAdd = 1,
  kPromote = 2,
  kUpdate = 3,
  kRemove = 4,
  kFounding = 5,
};

// etcd's maxLearners.
inline constexpr size_t kMaxLearners = 1;

// The conf change context for `m` (see above).
std::string EncodeMemberContext(const MemberInfo& m,
                                MemberChange kind = MemberChange::kAdd);
// False (and *m, *kind untouched) if `context` is empty, of an unknown
// kind or malformed. kind may be null.
bool DecodeMemberContext(std::string_view context, MemberInfo* m,
                         MemberChange* kind = nullptr);

// etcd's types.NewURLs for member peer URLs: at least one; each, trimmed
// of spaces, is scheme://host:port with scheme http, https, unix or unixs
// and no path. Returns them sorted (as etcd stores them), or
// ErrMemberBadURLs.
absl::StatusOr<std::vector<std::string>> ParseMemberUrls(
    std::vector<std::string> urls);

// etcdserverpb.Member as etcd's Cluster service sends it.
void ToProto(const MemberInfo& m, etcdserverpb::Member* out);

class Membership {
 public:
  // etcd's ValidateConfigurationChange, for changes with a context of ours
  // (raw ones are always OK). Errors: ErrMemberNotFound (also for a
  // removed id), ErrMemberExist, ErrPeerURLExist, ErrTooManyLearners,
  // ErrMemberNotLearner.
  absl::Status Check(const raft::ConfChange& cc,
                     std::string_view context) const;
  // A committed conf change took effect; `context` is its etcd-layer
  // context (may be empty), `after` raft's membership afterwards.
  void ApplyConfChange(const raft::ConfChange& cc, std::string_view context,
                       const raft::ConfState& after);
  // etcd's publish: sets a current member's name and client URLs.
  // ErrMemberNotFound if `id` is not a member (removed or never added).
  absl::Status SetAttributes(uint64_t id, std::string name,
                             std::vector<std::string> client_urls);

  const MemberInfo* Find(uint64_t id) const;
  // etcd's strict reconfiguration checks: whether the started members
  // (those with a name: founders, or published) still make a quorum of
  // the voters after adding a voter / removing `id` / promoting a learner.
  bool IsReadyToAddVotingMember() const;
  bool IsReadyToRemoveVotingMember(uint64_t id) const;
  bool IsReadyToPromoteMember() const;
  bool IsRemoved(uint64_t id) const { return removed_.contains(id); }
  const absl::btree_set<uint64_t>& removed_ids() const { return removed_; }
  // By ascending id, as etcd lists them.
  std::vector<MemberInfo> List() const;
  size_t size() const { return members_.size(); }
  // Rough bytes held (for the database size estimate).
  int64_t ApproxBytes() const;

  std::string Snapshot() const;
  // Replaces everything; on error nothing changes.
  absl::Status Restore(std::string_view image);

 private:
  absl::btree_map<uint64_t, MemberInfo> members_;
  absl::btree_set<uint64_t> removed_;
};

}  // namespace detcd::server

#endif  // DETCD_ENGINE_SERVER_MEMBERSHIP_H_
