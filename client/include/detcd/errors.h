// Errors as etcd's Go client (clientv3 3.4) reports them.
//
// A server error whose message is one of etcd's own ("etcdserver: ...",
// rpctypes' list) reads as that message alone; the client's own context
// errors read "context deadline exceeded" / "context canceled"; any other
// gRPC error reads as grpc-go prints a status: "rpc error: code =
// Unavailable desc = ...".
#ifndef DETCD_CLIENT_ERRORS_H_
#define DETCD_CLIENT_ERRORS_H_

#include <string>
#include <string_view>

#include "absl/strings/string_view.h"
#include "absl/status/status.h"

namespace detcd::client {

// The client's own messages for a call that ran out of time or was
// cancelled (Go's context errors).
inline constexpr char kContextDeadlineExceeded[] =
    "context deadline exceeded";
inline constexpr char kContextCanceled[] = "context canceled";

// etcd's error texts (the ones clientv3 turns into typed errors).
inline constexpr char kErrCompacted[] =
    "etcdserver: mvcc: required revision has been compacted";
inline constexpr char kErrLeaseNotFound[] =
    "etcdserver: requested lease not found";
inline constexpr char kErrInvalidAuthToken[] =
    "etcdserver: invalid auth token";
inline constexpr char kErrAuthOldRevision[] =
    "etcdserver: revision of auth store is old";
inline constexpr char kErrAuthNotEnabled[] =
    "etcdserver: authentication is not enabled";
inline constexpr char kErrRootRoleNotExist[] =
    "etcdserver: root user does not have root role";
inline constexpr char kErrPermissionDenied[] =
    "etcdserver: permission denied";
inline constexpr char kErrNoLeader[] = "etcdserver: no leader";
inline constexpr char kErrUserEmpty[] =
    "etcdserver: user name is empty";

// The concurrency recipes' errors (clientv3/concurrency), which etcd's
// Election service also returns as they are (gRPC code Unknown).
inline constexpr char kErrElectionNotLeader[] = "election: not leader";
inline constexpr char kErrElectionNoLeader[] = "election: no leader";
// etcd's Election service, for Proclaim / Resign without a LeaderKey.
inline constexpr char kErrMissingLeaderKey[] =
    "\"leader\" field must be provided";

// Whether msg is one of etcd's error texts (rpctypes' table).
bool IsEtcdErrorText(absl::string_view msg);

// Go's name of a gRPC code ("Unavailable", "DeadlineExceeded", ...).
std::string GrpcCodeName(absl::StatusCode code);

// The text clientv3 gives for s (see the file comment).
std::string ErrorText(const absl::Status& s);

// s is a client-side context error (deadline or cancellation).
bool IsContextError(const absl::Status& s);

// An error of the client's own (not a gRPC status), e.g. a recipe's
// "election: not leader" or a command's "exit status 1": ErrorText gives
// its text alone, as Go prints a plain error.
absl::Status PlainError(absl::string_view text);
bool IsPlainError(const absl::Status& s);

}  // namespace detcd::client

#endif  // DETCD_CLIENT_ERRORS_H_
