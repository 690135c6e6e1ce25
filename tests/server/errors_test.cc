// ToClientError against etcd's rpctypes table: every error the engine
// makes reaches the client with exactly etcd's gRPC code and message.
#include "engine/server/errors.h"

#include <string>
#include <vector>

#include "engine/lease/lessor.h"
#include "engine/mvcc/kv_store.h"
#include "engine/raft/raft.h"
#include "engine/server/etcd_kv.h"
#include "engine/server/node.h"
#include "gtest/gtest.h"

namespace detcd::server {
namespace {

using Code = absl::StatusCode;

struct Case {
  absl::Status engine;
  Code code;
  std::string message;
};

void ExpectClient(const Case& c) {
  absl::Status got = ToClientError(c.engine);
  EXPECT_EQ(got.code(), c.code) << c.engine;
  EXPECT_EQ(got.message(), c.message) << c.engine;
}

// Every error constructor the engine has, with what etcd's gRPC layer
// sends for it (api/v3rpc/rpctypes/error.go, v3rpc/util.go).
TEST(ToClientError, EveryEngineErrorGetsEtcdsCodeAndText) {
  const std::vector<Case> cases = {
      // node.h
      {ErrNoLeader(), Code::kUnavailable, "etcdserver: no leader"},
      {ErrTimeout(), Code::kUnavailable, "etcdserver: request timed out"},
      {ErrStopped(), Code::kUnavailable, "etcdserver: server stopped"},
      {ErrTooManyRequests(), Code::kResourceExhausted,
       "etcdserver: too many requests"},
      // etcd_kv.h
      {ErrEmptyKey(), Code::kInvalidArgument,
       "etcdserver: key is not provided"},
      {ErrKeyNotFound(), Code::kInvalidArgument, "etcdserver: key not found"},
      {ErrValueProvided(), Code::kInvalidArgument,
       "etcdserver: value is provided"},
      {ErrLeaseProvided(), Code::kInvalidArgument,
       "etcdserver: lease is provided"},
      {ErrTooManyOps(), Code::kInvalidArgument,
       "etcdserver: too many operations in txn request"},
      {ErrDuplicateKey(), Code::kInvalidArgument,
       "etcdserver: duplicate key given in txn request"},
      // Not in etcd 3.4's table (3.4 panics on a bad sort option); ours is
      // newer etcd's text, passed through.
      {ErrInvalidSortOption(), Code::kInvalidArgument,
       "etcdserver: invalid sort option"},
      {ErrLeaseNotFound(), Code::kNotFound,
       "etcdserver: requested lease not found"},
      {ErrRequestTooLarge(), Code::kInvalidArgument,
       "etcdserver: request is too large"},
      // mvcc
      {mvcc::ErrCompacted(), Code::kOutOfRange,
       "etcdserver: mvcc: required revision has been compacted"},
      {mvcc::ErrFutureRev(), Code::kOutOfRange,
       "etcdserver: mvcc: required revision is a future revision"},
      // lease
      {lease::ErrLeaseNotFound(), Code::kNotFound,
       "etcdserver: requested lease not found"},
      {lease::ErrLeaseExists(), Code::kFailedPrecondition,
       "etcdserver: lease already exists"},
      {lease::ErrLeaseTTLTooLarge(), Code::kOutOfRange,
       "etcdserver: too large lease TTL"},
      {lease::ErrNotPrimary(), Code::kFailedPrecondition,
       "etcdserver: not leader"},
      // errors.h
      {ErrNoSpace(), Code::kResourceExhausted,
       "etcdserver: mvcc: database space exceeded"},
      {ErrCorrupt(), Code::kDataLoss, "etcdserver: corrupt cluster"},
      {ErrNotLeader(), Code::kFailedPrecondition, "etcdserver: not leader"},
      {ErrBadLeaderTransferee(), Code::kFailedPrecondition,
       "etcdserver: bad leader transferee"},
      {ErrTimeoutLeaderTransfer(), Code::kUnknown,
       "etcdserver: request timed out, leader transfer took too long"},
      {ErrMemberNotFound(), Code::kNotFound, "etcdserver: member not found"},
      {ErrLeaderChanged(), Code::kUnavailable, "etcdserver: leader changed"},
      {ErrMemberExist(), Code::kFailedPrecondition,
       "etcdserver: member ID already exist"},
      {ErrPeerURLExist(), Code::kFailedPrecondition,
       "etcdserver: Peer URLs already exists"},
      {ErrMemberBadURLs(), Code::kInvalidArgument,
       "etcdserver: given member URLs are invalid"},
      {ErrMemberNotLearner(), Code::kFailedPrecondition,
       "etcdserver: can only promote a learner member"},
      {ErrTooManyLearners(), Code::kFailedPrecondition,
       "etcdserver: too many learner members in cluster"},
      {ErrNotEnoughStartedMembers(), Code::kFailedPrecondition,
       "etcdserver: re-configuration failed due to not enough started "
       "members"},
      {ErrLearnerNotReady(), Code::kFailedPrecondition,
       "etcdserver: can only promote a learner member which is in sync with "
       "leader"},
      // raft: etcd sends its ErrProposalDropped as Unknown, without our
      // reason.
      {raft::ErrProposalDropped(), Code::kUnknown, "raft proposal dropped"},
      {raft::ErrProposalDropped("leadership transfer in progress"),
       Code::kUnknown, "raft proposal dropped"},
      {absl::FailedPreconditionError(
           "can only promote a learner member which is in sync with leader"),
       Code::kFailedPrecondition,
       "etcdserver: can only promote a learner member which is in sync with "
       "leader"},
  };
  for (const Case& c : cases) ExpectClient(c);
}

// etcd's internal texts (what its packages return before togRPCError).
TEST(ToClientError, EtcdInternalTextsAreRewritten) {
  const std::vector<Case> cases = {
      {absl::UnknownError("etcdserver: no space"), Code::kResourceExhausted,
       "etcdserver: mvcc: database space exceeded"},
      {absl::UnknownError("lease not found"), Code::kNotFound,
       "etcdserver: requested lease not found"},
      {absl::UnknownError("lease already exists"), Code::kFailedPrecondition,
       "etcdserver: lease already exists"},
      {absl::UnknownError("too large lease TTL"), Code::kOutOfRange,
       "etcdserver: too large lease TTL"},
      {absl::UnknownError("membership: ID removed"), Code::kNotFound,
       "etcdserver: member not found"},
      {absl::UnknownError("membership: ID not found"), Code::kNotFound,
       "etcdserver: member not found"},
      {absl::UnknownError("membership: ID exists"), Code::kFailedPrecondition,
       "etcdserver: member ID already exist"},
      {absl::UnknownError("membership: peerURL exists"),
       Code::kFailedPrecondition, "etcdserver: Peer URLs already exists"},
      {absl::UnknownError("membership: can only promote a learner member"),
       Code::kFailedPrecondition,
       "etcdserver: can only promote a learner member"},
      {absl::UnknownError("membership: too many learner members in cluster"),
       Code::kFailedPrecondition,
       "etcdserver: too many learner members in cluster"},
      {absl::UnknownError("auth: user already exists"),
       Code::kFailedPrecondition, "etcdserver: user name already exists"},
      {absl::UnknownError("auth: user not found"), Code::kFailedPrecondition,
       "etcdserver: user name not found"},
      {absl::UnknownError("auth: permission denied"),
       Code::kPermissionDenied, "etcdserver: permission denied"},
      {absl::UnknownError("auth: invalid auth token"),
       Code::kUnauthenticated, "etcdserver: invalid auth token"},
      {absl::UnknownError("auth: revision in header is old"),
       Code::kInvalidArgument, "etcdserver: revision of auth store is old"},
      {absl::UnknownError(
           "auth: authentication failed, invalid user ID or password"),
       Code::kInvalidArgument,
       "etcdserver: authentication failed, invalid user ID or password"},
  };
  for (const Case& c : cases) ExpectClient(c);
}

// A table text keeps the table's code whatever code the engine gave it.
TEST(ToClientError, TableCodeWins) {
  ExpectClient({absl::InternalError("etcdserver: request timed out"),
                Code::kUnavailable, "etcdserver: request timed out"});
  ExpectClient({absl::UnknownError("etcdserver: corrupt cluster"),
                Code::kDataLoss, "etcdserver: corrupt cluster"});
  ExpectClient({absl::UnknownError("etcdserver: watch canceled"),
                Code::kCancelled, "etcdserver: watch canceled"});
}

TEST(ToClientError, OthersAsTogRPCErrorDoes) {
  EXPECT_TRUE(ToClientError(absl::OkStatus()).ok());
  // gRPC's own context errors pass through.
  ExpectClient({absl::DeadlineExceededError("context deadline exceeded"),
                Code::kDeadlineExceeded, "context deadline exceeded"});
  ExpectClient({absl::CancelledError("context canceled"), Code::kCancelled,
                "context canceled"});
  // Engine errors of our own keep code and text.
  ExpectClient({absl::InvalidArgumentError("etcdserver: malformed raft request"),
                Code::kInvalidArgument, "etcdserver: malformed raft request"});
  // Anything else is Unknown with its text.
  ExpectClient({absl::DataLossError("restoring snapshot 7: bad magic"),
                Code::kUnknown, "restoring snapshot 7: bad magic"});
  ExpectClient({absl::FailedPreconditionError("cannot remove the last voter"),
                Code::kUnknown, "cannot remove the last voter"});
}

}  // namespace
}  // namespace detcd::server
