#include "detcd/errors.h"

#include "gtest/gtest.h"

namespace detcd::client {
namespace {

TEST(ErrorText, EtcdErrorsReadAsTheirMessage) {
  EXPECT_EQ(ErrorText(absl::OutOfRangeError(
                "etcdserver: mvcc: required revision has been compacted")),
            "etcdserver: mvcc: required revision has been compacted");
  EXPECT_EQ(ErrorText(absl::UnavailableError("etcdserver: no leader")),
            "etcdserver: no leader");
}

TEST(ErrorText, OtherGrpcErrorsReadAsGrpcGo) {
  EXPECT_EQ(ErrorText(absl::ResourceExhaustedError(
                "trying to send message larger than max (3 vs. 2)")),
            "rpc error: code = ResourceExhausted desc = trying to send "
            "message larger than max (3 vs. 2)");
  EXPECT_EQ(ErrorText(absl::UnavailableError("connection refused")),
            "rpc error: code = Unavailable desc = connection refused");
  EXPECT_EQ(ErrorText(absl::CancelledError("x")),
            "rpc error: code = Canceled desc = x");
}

TEST(ErrorText, ContextErrors) {
  EXPECT_EQ(ErrorText(absl::DeadlineExceededError(kContextDeadlineExceeded)),
            "context deadline exceeded");
  EXPECT_EQ(ErrorText(absl::CancelledError(kContextCanceled)),
            "context canceled");
  EXPECT_TRUE(
      IsContextError(absl::DeadlineExceededError(kContextDeadlineExceeded)));
  EXPECT_FALSE(IsContextError(absl::DeadlineExceededError("Deadline Exceeded")));
}

}  // namespace
}  // namespace detcd::client
