#include "engine/server/errors.h"

#include "absl/strings/cord.h"
#include "absl/strings/match.h"
#include "absl/strings/string_view.h"

namespace detcd::server {
namespace {

using Code = absl::StatusCode;

struct ClientError {
  Code code;
  absl::string_view message;
};

// etcd's rpctypes: every error its gRPC layer sends by name, keyed by
// message (the client maps errors back by message the same way).
constexpr ClientError kClientErrors[] = {
    {Code::kInvalidArgument, "etcdserver: key is not provided"},
    {Code::kInvalidArgument, "etcdserver: key not found"},
    {Code::kInvalidArgument, "etcdserver: value is provided"},
    {Code::kInvalidArgument, "etcdserver: lease is provided"},
    {Code::kInvalidArgument, "etcdserver: too many operations in txn request"},
    {Code::kInvalidArgument, "etcdserver: duplicate key given in txn request"},
    {Code::kOutOfRange, "etcdserver: mvcc: required revision has been compacted"},
    {Code::kOutOfRange, "etcdserver: mvcc: required revision is a future revision"},
    {Code::kResourceExhausted, "etcdserver: mvcc: database space exceeded"},
    {Code::kNotFound, "etcdserver: requested lease not found"},
    {Code::kFailedPrecondition, "etcdserver: lease already exists"},
    {Code::kOutOfRange, "etcdserver: too large lease TTL"},
    {Code::kCancelled, "etcdserver: watch canceled"},
    {Code::kFailedPrecondition, "etcdserver: member ID already exist"},
    {Code::kFailedPrecondition, "etcdserver: Peer URLs already exists"},
    {Code::kFailedPrecondition,
     "etcdserver: re-configuration failed due to not enough started members"},
    {Code::kInvalidArgument, "etcdserver: given member URLs are invalid"},
    {Code::kNotFound, "etcdserver: member not found"},
    {Code::kFailedPrecondition, "etcdserver: can only promote a learner member"},
    {Code::kFailedPrecondition,
     "etcdserver: can only promote a learner member which is in sync with "
     "leader"},
    {Code::kFailedPrecondition,
     "etcdserver: too many learner members in cluster"},
    {Code::kInvalidArgument, "etcdserver: request is too large"},
    {Code::kResourceExhausted, "etcdserver: too many requests"},
    {Code::kFailedPrecondition, "etcdserver: root user does not exist"},
    {Code::kFailedPrecondition, "etcdserver: root user does not have root role"},
    {Code::kFailedPrecondition, "etcdserver: user name already exists"},
    {Code::kInvalidArgument, "etcdserver: user name is empty"},
    {Code::kFailedPrecondition, "etcdserver: user name not found"},
    {Code::kFailedPrecondition, "etcdserver: role name already exists"},
    {Code::kFailedPrecondition, "etcdserver: role name not found"},
    {Code::kInvalidArgument, "etcdserver: role name is empty"},
    {Code::kInvalidArgument,
     "etcdserver: authentication failed, invalid user ID or password"},
    {Code::kPermissionDenied, "etcdserver: permission denied"},
    {Code::kFailedPrecondition, "etcdserver: role is not granted to the user"},
    {Code::kFailedPrecondition,
     "etcdserver: permission is not granted to the role"},
    {Code::kFailedPrecondition, "etcdserver: authentication is not enabled"},
    {Code::kUnauthenticated, "etcdserver: invalid auth token"},
    {Code::kInvalidArgument, "etcdserver: invalid auth management"},
    {Code::kInvalidArgument, "etcdserver: revision of auth store is old"},
    {Code::kUnavailable, "etcdserver: no leader"},
    {Code::kFailedPrecondition, "etcdserver: not leader"},
    {Code::kUnavailable, "etcdserver: leader changed"},
    {Code::kUnavailable, "etcdserver: not capable"},
    {Code::kUnavailable, "etcdserver: server stopped"},
    {Code::kUnavailable, "etcdserver: request timed out"},
    {Code::kUnavailable,
     "etcdserver: request timed out, possibly due to previous leader "
     "failure"},
    {Code::kUnavailable,
     "etcdserver: request timed out, possibly due to connection lost"},
    {Code::kUnavailable,
     "etcdserver: request timed out, waiting for the applied index took too "
     "long"},
    {Code::kUnavailable, "etcdserver: unhealthy cluster"},
    {Code::kDataLoss, "etcdserver: corrupt cluster"},
    {Code::kUnavailable, "etcdserver: rpc not supported for learner"},
    {Code::kFailedPrecondition, "etcdserver: bad leader transferee"},
};

// etcd's internal texts that its gRPC layer (togRPCError) replaces with a
// table entry: engine message -> client message.
constexpr std::pair<absl::string_view, absl::string_view> kRewrites[] = {
    {"mvcc: required revision has been compacted",
     "etcdserver: mvcc: required revision has been compacted"},
    {"mvcc: required revision is a future revision",
     "etcdserver: mvcc: required revision is a future revision"},
    {"etcdserver: no space", "etcdserver: mvcc: database space exceeded"},
    {"lease not found", "etcdserver: requested lease not found"},
    {"lease already exists", "etcdserver: lease already exists"},
    {"too large lease TTL", "etcdserver: too large lease TTL"},
    {"membership: ID removed", "etcdserver: member not found"},
    {"membership: ID not found", "etcdserver: member not found"},
    {"membership: ID exists", "etcdserver: member ID already exist"},
    {"membership: peerURL exists", "etcdserver: Peer URLs already exists"},
    {"membership: can only promote a learner member",
     "etcdserver: can only promote a learner member"},
    {"membership: too many learner members in cluster",
     "etcdserver: too many learner members in cluster"},
    // Our raft's text for a promotion of a lagging learner.
    {"can only promote a learner member which is in sync with leader",
     "etcdserver: can only promote a learner member which is in sync with "
     "leader"},
    {"auth: root user does not exist", "etcdserver: root user does not exist"},
    {"auth: root user does not have root role",
     "etcdserver: root user does not have root role"},
    {"auth: user already exists", "etcdserver: user name already exists"},
    {"auth: user name is empty", "etcdserver: user name is empty"},
    {"auth: user not found", "etcdserver: user name not found"},
    {"auth: role already exists", "etcdserver: role name already exists"},
    {"auth: role not found", "etcdserver: role name not found"},
    {"auth: role name is empty", "etcdserver: role name is empty"},
    {"auth: authentication failed, invalid user ID or password",
     "etcdserver: authentication failed, invalid user ID or password"},
    {"auth: permission denied", "etcdserver: permission denied"},
    {"auth: role is not granted to the user",
     "etcdserver: role is not granted to the user"},
    {"auth: permission is not granted to the role",
     "etcdserver: permission is not granted to the role"},
    {"auth: authentication is not enabled",
     "etcdserver: authentication is not enabled"},
    {"auth: invalid auth token", "etcdserver: invalid auth token"},
    {"auth: invalid auth management", "etcdserver: invalid auth management"},
    {"auth: revision in header is old",
     "etcdserver: revision of auth store is old"},
};

constexpr absl::string_view kProposalDropped = "raft proposal dropped";

// Linear scans: the tables are small and errors are not a hot path.
const ClientError* FindClientError(absl::string_view msg) {
  for (const ClientError& e : kClientErrors) {
    if (e.message == msg) return &e;
  }
  return nullptr;
}

absl::string_view Rewrite(absl::string_view msg) {
  for (const auto& [from, to] : kRewrites) {
    if (from == msg) return to;
  }
  return msg;
}

}  // namespace

constexpr absl::string_view kUntranslatedPayload = "type.detcd/untranslated";

absl::Status Untranslated(absl::Status s) {
  if (!s.ok()) s.SetPayload(kUntranslatedPayload, absl::Cord("1"));
  return s;
}

absl::Status ToClientError(const absl::Status& s) {
  if (s.ok()) return s;
  if (s.GetPayload(kUntranslatedPayload).has_value()) {
    return absl::UnknownError(s.message());
  }
  if (s.code() == Code::kCancelled || s.code() == Code::kDeadlineExceeded) {
    return s;
  }
  const absl::string_view msg = Rewrite(s.message());
  if (const ClientError* e = FindClientError(msg)) {
    return absl::Status(e->code, e->message);
  }
  if (absl::StartsWith(msg, kProposalDropped)) {
    return absl::UnknownError(kProposalDropped);
  }
  if (absl::StartsWith(msg, "etcdserver: ")) return s;
  return absl::UnknownError(msg);
}

absl::Status ErrNoSpace() {
  return absl::ResourceExhaustedError(
      "etcdserver: mvcc: database space exceeded");
}
absl::Status ErrCorrupt() {
  return absl::DataLossError("etcdserver: corrupt cluster");
}
absl::Status ErrNotLeader() {
  return absl::FailedPreconditionError("etcdserver: not leader");
}
absl::Status ErrBadLeaderTransferee() {
  return absl::FailedPreconditionError("etcdserver: bad leader transferee");
}
absl::Status ErrTimeoutLeaderTransfer() {
  return absl::UnknownError(
      "etcdserver: request timed out, leader transfer took too long");
}
absl::Status ErrMemberNotFound() {
  return absl::NotFoundError("etcdserver: member not found");
}
absl::Status ErrLeaderChanged() {
  return absl::UnavailableError("etcdserver: leader changed");
}
absl::Status ErrMemberExist() {
  return absl::FailedPreconditionError("etcdserver: member ID already exist");
}
absl::Status ErrPeerURLExist() {
  return absl::FailedPreconditionError("etcdserver: Peer URLs already exists");
}
absl::Status ErrMemberBadURLs() {
  return absl::InvalidArgumentError(
      "etcdserver: given member URLs are invalid");
}
absl::Status ErrMemberNotLearner() {
  return absl::FailedPreconditionError(
      "etcdserver: can only promote a learner member");
}
absl::Status ErrTooManyLearners() {
  return absl::FailedPreconditionError(
      "etcdserver: too many learner members in cluster");
}
absl::Status ErrNotEnoughStartedMembers() {
  return absl::FailedPreconditionError(
      "etcdserver: re-configuration failed due to not enough started "
      "members");
}
absl::Status ErrNotSupportedForLearner() {
  return absl::UnavailableError("etcdserver: rpc not supported for learner");
}
absl::Status ErrUnhealthy() {
  return absl::UnavailableError("etcdserver: unhealthy cluster");
}

absl::Status ErrLearnerNotReady() {
  return absl::FailedPreconditionError(
      "etcdserver: can only promote a learner member which is in sync with "
      "leader");
}

}  // namespace detcd::server
