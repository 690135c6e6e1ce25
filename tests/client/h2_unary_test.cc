// client/h2_unary.h against a real detcd member: calls answer with the
// message, etcd's errors keep their code and text (grpc-message
// percent-decoded), many calls share one connection, a dead endpoint
// fails the dial, and a connection that goes away fails its open calls.
#include "h2_unary.h"

#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "etcdserverpb/rpc.pb.h"
#include "gtest/gtest.h"
#include "tests/client/detcd_process.h"

namespace detcd::client {
namespace {

namespace pb = etcdserverpb;

// Runs one call to its end.
absl::Status Call(H2UnaryConn* c, std::string_view path,
                  const google::protobuf::Message& req,
                  google::protobuf::Message* resp) {
  bool done = false;
  absl::Status st;
  c->Start(path, req.SerializeAsString(), absl::Seconds(10),
           [&](absl::Status s, std::string_view msg) {
             done = true;
             st = s;
             if (s.ok() && !resp->ParseFromArray(msg.data(), msg.size())) {
               st = absl::DataLossError("unparsable answer");
             }
           });
  for (int i = 0; i < 1000 && !done; ++i) {
    H2UnaryConn::PollAll({c}, absl::Milliseconds(20));
  }
  EXPECT_TRUE(done);
  return st;
}

TEST(H2Unary, PercentDecode) {
  EXPECT_EQ(PercentDecode("a%20b%25c"), "a b%c");
  EXPECT_EQ(PercentDecode("%e2%9C%93"), "\xe2\x9c\x93");
  EXPECT_EQ(PercentDecode("50%"), "50%");
  EXPECT_EQ(PercentDecode("%zz%4"), "%zz%4");
}

TEST(H2Unary, CallsErrorsAndManyStreamsOnOneConnection) {
  testing::DetcdCluster cluster(1);
  ASSERT_TRUE(cluster.Start().ok());
  auto c = H2UnaryConn::Dial("http://" + cluster.endpoint(0), absl::Seconds(5));
  ASSERT_TRUE(c.ok()) << c.status();

  pb::PutRequest put;
  put.set_key("h2/k");
  put.set_value(std::string(100000, 'v'));  // several DATA frames
  pb::PutResponse put_resp;
  ASSERT_TRUE(Call(c->get(), "/etcdserverpb.KV/Put", put, &put_resp).ok());
  EXPECT_GT(put_resp.header().revision(), 1);

  pb::RangeRequest range;
  range.set_key("h2/k");
  pb::RangeResponse range_resp;
  ASSERT_TRUE(
      Call(c->get(), "/etcdserverpb.KV/Range", range, &range_resp).ok());
  ASSERT_EQ(range_resp.kvs_size(), 1);
  EXPECT_EQ(range_resp.kvs(0).value(), put.value());

  // etcd's error: code OUT_OF_RANGE and its text.
  range.set_revision(1000000);
  absl::Status st =
      Call(c->get(), "/etcdserverpb.KV/Range", range, &range_resp);
  EXPECT_EQ(st.code(), absl::StatusCode::kOutOfRange) << st;
  EXPECT_EQ(st.message(),
            "etcdserver: mvcc: required revision is a future revision");
  // A method nobody serves.
  st = Call(c->get(), "/etcdserverpb.KV/NoSuchMethod", range, &range_resp);
  EXPECT_EQ(st.code(), absl::StatusCode::kUnimplemented) << st;

  // 500 calls in flight on the connection at once, all answered.
  int ok = 0, ended = 0;
  for (int i = 0; i < 500; ++i) {
    pb::PutRequest p;
    p.set_key("h2/many/" + std::to_string(i));
    p.set_value("x");
    (*c)->Start("/etcdserverpb.KV/Put", p.SerializeAsString(),
                absl::ZeroDuration(), [&](absl::Status s, std::string_view) {
                  ++ended;
                  if (s.ok()) ++ok;
                });
  }
  EXPECT_EQ((*c)->open_calls(), 500u);
  for (int i = 0; i < 2000 && ended < 500; ++i) {
    H2UnaryConn::PollAll({c->get()}, absl::Milliseconds(20));
  }
  EXPECT_EQ(ok, 500);
  range.Clear();
  range.set_key("h2/many/");
  range.set_range_end("h2/many0");
  range.set_count_only(true);
  ASSERT_TRUE(
      Call(c->get(), "/etcdserverpb.KV/Range", range, &range_resp).ok());
  EXPECT_EQ(range_resp.count(), 500);

  // The member dies with a call open: the call fails, and so do later ones.
  pb::PutRequest last;
  last.set_key("h2/last");
  bool failed = false;
  cluster.Kill(0);
  (*c)->Start("/etcdserverpb.KV/Put", last.SerializeAsString(),
              absl::ZeroDuration(),
              [&](absl::Status s, std::string_view) { failed = !s.ok(); });
  for (int i = 0; i < 500 && !failed; ++i) {
    H2UnaryConn::PollAll({c->get()}, absl::Milliseconds(20));
  }
  EXPECT_TRUE(failed);
  EXPECT_TRUE((*c)->broken());
  bool at_once = false;
  (*c)->Start("/etcdserverpb.KV/Put", last.SerializeAsString(),
              absl::ZeroDuration(),
              [&](absl::Status s, std::string_view) { at_once = !s.ok(); });
  EXPECT_TRUE(at_once);
}

TEST(H2Unary, AnAnswerBeforeTheWholeRequestEndsTheCall) {
  // The member refuses a message over its limit as soon as the prefix
  // arrives, before the rest of the request was sent: the call ends
  // with that answer, and the connection goes on serving.
  testing::DetcdCluster cluster(1);
  ASSERT_TRUE(cluster.Start().ok());
  auto c = H2UnaryConn::Dial("http://" + cluster.endpoint(0), absl::Seconds(5));
  ASSERT_TRUE(c.ok()) << c.status();
  pb::PutRequest big;
  big.set_key("h2/big");
  big.set_value(std::string(3 << 20, 'v'));
  pb::PutResponse resp;
  for (int i = 0; i < 10; ++i) {
    absl::Status st = Call(c->get(), "/etcdserverpb.KV/Put", big, &resp);
    EXPECT_EQ(st.code(), absl::StatusCode::kResourceExhausted) << st;
    EXPECT_TRUE(absl::StartsWith(st.message(),
                                 "grpc: received message larger than max"))
        << st;
  }
  pb::PutRequest small;
  small.set_key("h2/small");
  small.set_value(std::string(1 << 20, 's'));
  EXPECT_TRUE(Call(c->get(), "/etcdserverpb.KV/Put", small, &resp).ok());
  EXPECT_FALSE((*c)->broken());
}

TEST(H2Unary, DeadEndpointFailsTheDial) {
  const int port = testing::FreePort();
  auto c =
      H2UnaryConn::Dial("127.0.0.1:" + std::to_string(port), absl::Seconds(2));
  EXPECT_EQ(c.status().code(), absl::StatusCode::kUnavailable) << c.status();
  EXPECT_FALSE(H2UnaryConn::Dial("no-port", absl::Seconds(1)).ok());
}

}  // namespace
}  // namespace detcd::client
