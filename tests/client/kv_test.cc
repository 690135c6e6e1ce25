// The KV helpers without a server: comparisons, ops, the Txn builder's
// misuse errors, PrefixEnd, and Async's refusals.
#include "detcd/kv.h"

#include <future>
#include <memory>
#include <string>
#include <vector>

#include "absl/synchronization/notification.h"
#include "gtest/gtest.h"

namespace detcd::client {
namespace {

namespace pb = etcdserverpb;

std::unique_ptr<Client> Offline(Config c = {}) {
  c.endpoints = {"127.0.0.1:1"};  // never dialed by these tests
  auto cli = Client::New(std::move(c));
  EXPECT_TRUE(cli.ok()) << cli.status();
  return std::move(*cli);
}

TEST(PrefixEnd, IncrementsTheLastByteBelow0xff) {
  EXPECT_EQ(PrefixEnd("abc"), "abd");
  EXPECT_EQ(PrefixEnd(std::string("a\xff", 2)), "b");
  EXPECT_EQ(PrefixEnd(""), std::string(1, '\0'));
  EXPECT_EQ(PrefixEnd(std::string("\xff\xff", 2)), std::string(1, '\0'));
}

TEST(Compare, SetsTheFieldOfItsTarget) {
  pb::Compare c = Compare(cmp::ModRevision("k"), CmpOp::kLess, 7);
  EXPECT_EQ(c.key(), "k");
  EXPECT_EQ(c.target(), pb::Compare::MOD);
  EXPECT_EQ(c.result(), pb::Compare::LESS);
  EXPECT_EQ(c.mod_revision(), 7);
  c = Compare(cmp::Value("k").WithPrefix(), CmpOp::kNotEqual, "v");
  EXPECT_EQ(c.value(), "v");
  EXPECT_EQ(c.range_end(), "l");
  EXPECT_EQ(c.result(), pb::Compare::NOT_EQUAL);
  EXPECT_EQ(Compare(cmp::Version("k"), CmpOp::kGreater, 0).version(), 0);
  EXPECT_EQ(Compare(cmp::Version("k"), CmpOp::kGreater, 0).target_union_case(),
            pb::Compare::kVersion);
  EXPECT_EQ(Compare(cmp::Lease("k"), CmpOp::kEqual, 5).lease(), 5);
  EXPECT_EQ(
      Compare(cmp::CreateRevision("k"), CmpOp::kEqual, 5).create_revision(), 5);
}

TEST(Ops, CarryTheirOptions) {
  GetOptions g;
  g.prefix = true;
  g.limit = 3;
  g.serializable = true;
  pb::RequestOp op = OpGet("p/", g);
  EXPECT_EQ(op.request_range().range_end(), "p0");
  EXPECT_EQ(op.request_range().limit(), 3);
  EXPECT_TRUE(op.request_range().serializable());
  g = {};
  g.from_key = true;
  EXPECT_EQ(OpGet("a", g).request_range().range_end(), std::string(1, '\0'));
  PutOptions p;
  p.lease = 9;
  p.prev_kv = true;
  op = OpPut("k", "v", p);
  EXPECT_EQ(op.request_put().lease(), 9);
  EXPECT_TRUE(op.request_put().prev_kv());
  DeleteOptions d;
  d.range_end = "z";
  EXPECT_EQ(OpDelete("a", d).request_delete_range().range_end(), "z");
}

TEST(Txn, BuildsIfThenElse) {
  auto c = Offline();
  Txn t(c.get());
  t.If(Compare(cmp::Value("a"), CmpOp::kEqual, "1"),
       Compare(cmp::Version("b"), CmpOp::kEqual, 0))
      .Then(OpPut("b", "2"))
      .Else(OpGet("a"), OpGet("b"));
  EXPECT_EQ(t.request().compare_size(), 2);
  EXPECT_EQ(t.request().success_size(), 1);
  EXPECT_EQ(t.request().failure_size(), 2);
}

TEST(Txn, MisuseFailsOnCommitWithClientv3sText) {
  auto c = Offline();
  {
    Txn t(c.get());
    t.Then(OpGet("a")).If(Compare(cmp::Version("a"), CmpOp::kEqual, 0));
    auto r = t.Commit();
    EXPECT_EQ(r.status().message(), "cannot call If after Then!");
  }
  {
    Txn t(c.get());
    t.Else(OpGet("a")).Else(OpGet("b"));
    EXPECT_EQ(t.Commit().status().message(), "cannot call Else twice!");
  }
  {
    Txn t(c.get());
    t.If(Compare(cmp::Version("a"), CmpOp::kEqual, "x"));
    auto r = t.CommitAsync().get();
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(r.status().message().find("bad compare value type"),
              std::string::npos);
  }
}

TEST(Async, RefusesPastTheQueueBoundAndCancelsQueuedOnDestruction) {
  Config cfg;
  cfg.async_threads = 1;
  cfg.max_async_queue = 2;
  auto c = Offline(cfg);
  absl::Notification started, release;
  auto blocker = c->Async([&](Client&) {
    started.Notify();
    release.WaitForNotification();
    return absl::OkStatus();
  });
  started.WaitForNotification();
  std::vector<std::future<absl::Status>> queued;
  for (int i = 0; i < 2; ++i) {
    queued.push_back(c->Async([](Client&) { return absl::OkStatus(); }));
  }
  auto refused = c->Async([](Client&) { return absl::OkStatus(); });
  EXPECT_EQ(refused.get().code(), absl::StatusCode::kResourceExhausted);
  // The callback form reports the same way.
  absl::Status via_cb;
  c->Async([](Client&) { return absl::OkStatus(); },
           [&](absl::Status s) { via_cb = s; });
  EXPECT_EQ(via_cb.code(), absl::StatusCode::kResourceExhausted);
  std::thread closer([&] {
    absl::SleepFor(absl::Milliseconds(100));
    release.Notify();
  });
  c.reset();  // queued calls are cancelled, the running one finishes
  closer.join();
  EXPECT_TRUE(blocker.get().ok());
  for (auto& f : queued) {
    absl::Status s = f.get();
    // Either ran before the destructor took the queue, or was cancelled.
    EXPECT_TRUE(s.ok() || s.code() == absl::StatusCode::kCancelled) << s;
  }
}

TEST(Async, TakesMoveOnlyFunctions) {
  auto c = Offline();
  auto owned = std::make_unique<int>(7);
  auto f = c->Async(
      [p = std::move(owned)](Client&) -> absl::StatusOr<int> { return *p; });
  auto r = f.get();
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r, 7);
}

}  // namespace
}  // namespace detcd::client
