// etcd's client-facing errors in one place: the engine's statuses turned
// into exactly the gRPC code and message etcd's v3 API sends (etcd's
// api/v3rpc/rpctypes table and v3rpc's togRPCError). absl status codes
// equal gRPC codes numerically, so the gRPC layer passes code and message
// through unchanged.
//
// Most engine errors already carry etcd's client text and code (they are
// made by the Err* functions in node.h, etcd_kv.h, lease/lessor.h and
// below); ToClientError then only fixes the code to the table's. The
// others are etcd's internal texts that its gRPC layer rewrites:
//
//   engine message (code ignored)            client code, message
//   "mvcc: required revision has been compacted"
//                             OutOfRange "etcdserver: mvcc: required revision has been compacted"
//   "mvcc: required revision is a future revision"
//                             OutOfRange "etcdserver: mvcc: required revision is a future revision"
//   "etcdserver: no space"    ResourceExhausted "etcdserver: mvcc: database space exceeded"
//   "lease not found"         NotFound "etcdserver: requested lease not found"
//   "lease already exists"    FailedPrecondition "etcdserver: lease already exists"
//   "too large lease TTL"     OutOfRange "etcdserver: too large lease TTL"
//   "membership: ID removed" / "membership: ID not found"
//                             NotFound "etcdserver: member not found"
//   "membership: ID exists"   FailedPrecondition "etcdserver: member ID already exist"
//   "membership: peerURL exists"
//                             FailedPrecondition "etcdserver: Peer URLs already exists"
//   "membership: can only promote a learner member"
//                             FailedPrecondition "etcdserver: can only promote a learner member"
//   "membership: too many learner members in cluster"
//                             FailedPrecondition "etcdserver: too many learner members in cluster"
//   raft's "can only promote a learner member which is in sync with leader"
//                             FailedPrecondition "etcdserver: can only promote ... with leader"
//   "auth: ..." (etcd's auth package texts)  the matching "etcdserver: ..." entry
//   "raft proposal dropped[: why]"  Unknown "raft proposal dropped"
//
// Cancelled and DeadlineExceeded pass through unchanged (gRPC's own
// context errors). Any other status whose message is not in the table:
// a message starting with "etcdserver: " keeps its code and message (the
// engine's own deliberate errors, e.g. "etcdserver: invalid sort option");
// anything else becomes Unknown with the message, as togRPCError does for
// errors it has no entry for.
#ifndef DETCD_ENGINE_SERVER_ERRORS_H_
#define DETCD_ENGINE_SERVER_ERRORS_H_

#include "absl/status/status.h"

namespace detcd::server {

absl::Status ToClientError(const absl::Status& s);

// Marks an error to reach the client untranslated: code Unknown with its
// own text, as etcd's maintenance auth checks (authMaintenanceServer)
// return the auth package's errors ("auth: permission denied") without
// togRPCError. ToClientError honours the mark.
absl::Status Untranslated(absl::Status s);

// Errors of the Cluster and Maintenance services and the quota, with
// etcd's client texts and codes.
//   ErrNoSpace               ResourceExhausted
//                            "etcdserver: mvcc: database space exceeded"
//   ErrCorrupt               DataLoss "etcdserver: corrupt cluster"
//   ErrNotLeader             FailedPrecondition "etcdserver: not leader"
//   ErrBadLeaderTransferee   FailedPrecondition
//                            "etcdserver: bad leader transferee"
//   ErrTimeoutLeaderTransfer Unknown "etcdserver: request timed out, leader
//                            transfer took too long" (etcd has no gRPC
//                            entry for it, so clients see Unknown)
//   ErrMemberNotFound        NotFound "etcdserver: member not found"
//   ErrLeaderChanged         Unavailable "etcdserver: leader changed"
//   ErrMemberExist           FailedPrecondition
//                            "etcdserver: member ID already exist"
//   ErrPeerURLExist          FailedPrecondition
//                            "etcdserver: Peer URLs already exists"
//   ErrMemberBadURLs         InvalidArgument
//                            "etcdserver: given member URLs are invalid"
//   ErrMemberNotLearner      FailedPrecondition
//                            "etcdserver: can only promote a learner member"
//   ErrTooManyLearners       FailedPrecondition
//                            "etcdserver: too many learner members in cluster"
//   ErrNotEnoughStartedMembers FailedPrecondition "etcdserver:
//                            re-configuration failed due to not enough
//                            started members"
//   ErrUnhealthy             Unavailable "etcdserver: unhealthy cluster"
absl::Status ErrNoSpace();
absl::Status ErrCorrupt();
absl::Status ErrNotLeader();
absl::Status ErrBadLeaderTransferee();
absl::Status ErrTimeoutLeaderTransfer();
absl::Status ErrMemberNotFound();
absl::Status ErrLeaderChanged();
absl::Status ErrMemberExist();
absl::Status ErrPeerURLExist();
absl::Status ErrMemberBadURLs();
absl::Status ErrMemberNotLearner();
absl::Status ErrTooManyLearners();
absl::Status ErrNotEnoughStartedMembers();
absl::Status ErrUnhealthy();
// Unavailable "etcdserver: rpc not supported for learner"
absl::Status ErrNotSupportedForLearner();
// FailedPrecondition "etcdserver: can only promote a learner member which
// is in sync with leader"
absl::Status ErrLearnerNotReady();

}  // namespace detcd::server

#endif  // DETCD_ENGINE_SERVER_ERRORS_H_
