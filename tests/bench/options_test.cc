#include "options.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace detcd::bench {
namespace {

absl::StatusOr<Options> Parse(std::vector<std::string> args) {
  return ParseArgs(args);
}

TEST(OptionsTest, Defaults) {
  auto o = Parse({"put"});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->workload, Workload::kPut);
  EXPECT_EQ(o->endpoints, std::vector<std::string>{"127.0.0.1:2379"});
  EXPECT_EQ(o->conns, 1);
  EXPECT_EQ(o->clients, 1);
  EXPECT_EQ(o->total, 10000);
  EXPECT_EQ(o->key_size, 8);
  EXPECT_EQ(o->val_size, 8);
  EXPECT_FALSE(o->serializable);
  EXPECT_FALSE(o->json);
  EXPECT_EQ(o->threads, 2);
  // No per-request deadline unless asked, as etcd's benchmark.
  EXPECT_EQ(o->command_timeout, absl::ZeroDuration());
  auto t = Parse({"put", "--threads", "4", "--command-timeout", "5s"});
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->threads, 4);
  EXPECT_EQ(t->command_timeout, absl::Seconds(5));
  EXPECT_FALSE(Parse({"put", "--threads", "0"}).ok());
}

TEST(OptionsTest, GlobalAndWorkloadFlagsInAnyPositionAndForm) {
  auto o =
      Parse({"--endpoints=a:1,b:2", "--conns", "10", "put", "--clients=100",
             "--total", "5000", "--key-size", "16", "--val-size=256",
             "--key-space-size", "100000", "--sequential-keys", "--rate",
             "2500.5", "--json", "--target-leader"});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->endpoints, (std::vector<std::string>{"a:1", "b:2"}));
  EXPECT_EQ(o->conns, 10);
  EXPECT_EQ(o->clients, 100);
  EXPECT_EQ(o->total, 5000);
  EXPECT_EQ(o->key_size, 16);
  EXPECT_EQ(o->val_size, 256);
  EXPECT_EQ(o->key_space_size, 100000);
  EXPECT_TRUE(o->sequential_keys);
  EXPECT_DOUBLE_EQ(o->rate, 2500.5);
  EXPECT_TRUE(o->json);
  EXPECT_TRUE(o->target_leader);
}

TEST(OptionsTest, RangeKeyEndAndConsistency) {
  auto o = Parse({"range", "foo", "fop", "--consistency", "s"});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->workload, Workload::kRange);
  EXPECT_EQ(o->key, "foo");
  EXPECT_EQ(o->range_end, "fop");
  EXPECT_TRUE(o->serializable);
  EXPECT_FALSE(Parse({"range"}).ok());  // needs a key
  EXPECT_FALSE(Parse({"range", "a", "b", "c"}).ok());
  EXPECT_FALSE(Parse({"range", "a", "--consistency", "x"}).ok());
  EXPECT_FALSE(Parse({"range", "a", "b", "--prefix"}).ok());
  auto p = Parse({"range", "a", "--prefix"});
  ASSERT_TRUE(p.ok());
  EXPECT_TRUE(p->prefix);
}

TEST(OptionsTest, DurationReplacesTotal) {
  auto o = Parse({"put", "--duration", "1m30s"});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->duration, absl::Seconds(90));
  auto bare = Parse({"put", "--duration=2.5"});
  ASSERT_TRUE(bare.ok());
  EXPECT_EQ(bare->duration, absl::Milliseconds(2500));
  EXPECT_FALSE(Parse({"put", "--duration", "soon"}).ok());
}

TEST(OptionsTest, AuthForms) {
  auto a = Parse({"put", "--user", "root:secret"});
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->user, "root");
  EXPECT_EQ(a->password, "secret");
  auto b = Parse({"put", "--user", "root", "--password", "p:w"});
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(b->user, "root");
  EXPECT_EQ(b->password, "p:w");
  EXPECT_FALSE(Parse({"put", "--user", "root"}).ok());
  EXPECT_FALSE(Parse({"put", "--password", "x"}).ok());
}

TEST(OptionsTest, TlsFlags) {
  auto o = Parse({"put", "--cacert", "ca.pem", "--cert", "c.pem", "--key",
                  "k.pem", "--insecure-skip-tls-verify"});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->cacert, "ca.pem");
  EXPECT_EQ(o->cert, "c.pem");
  EXPECT_EQ(o->key_file, "k.pem");
  EXPECT_TRUE(o->insecure_skip_tls_verify);
}

TEST(OptionsTest, Rejections) {
  EXPECT_FALSE(Parse({}).ok());
  EXPECT_FALSE(Parse({"fly"}).ok());
  EXPECT_FALSE(Parse({"put", "extra"}).ok());
  EXPECT_FALSE(Parse({"put", "--bogus"}).ok());
  EXPECT_FALSE(Parse({"put", "--total"}).ok());       // missing value
  EXPECT_FALSE(Parse({"put", "--total", "0"}).ok());  // must be positive
  EXPECT_FALSE(Parse({"put", "--clients", "x"}).ok());
  EXPECT_FALSE(Parse({"put", "--rate", "-1"}).ok());
  EXPECT_FALSE(Parse({"put", "--conns", "5", "--clients", "2"}).ok());
  EXPECT_FALSE(Parse({"put", "--json=maybe"}).ok());
  // 10^3 keys do not fit in 2 digits.
  EXPECT_FALSE(
      Parse({"put", "--key-size", "2", "--key-space-size", "1000"}).ok());
  EXPECT_TRUE(
      Parse({"put", "--key-size", "3", "--key-space-size", "1000"}).ok());
  EXPECT_FALSE(Parse({"txn-put", "--txn-ops", "129"}).ok());
  EXPECT_FALSE(Parse({"txn-put", "--txn-ops", "4"}).ok());  // 1 key
  EXPECT_TRUE(
      Parse({"txn-put", "--txn-ops", "4", "--key-space-size", "4"}).ok());
  EXPECT_FALSE(Parse({"stm", "--isolation", "x"}).ok());
  EXPECT_FALSE(Parse({"stm", "--keys", "2", "--keys-per-txn", "3"}).ok());
  EXPECT_FALSE(Parse({"put", "--endpoints", ","}).ok());
}

TEST(OptionsTest, WorkloadsAndTheirDefaults) {
  for (const char* w : {"put", "txn-put", "txn-mixed", "watch", "watch-get",
                        "lease-keepalive", "stm"}) {
    auto o = Parse({w});
    ASSERT_TRUE(o.ok()) << w << ": " << o.status();
    EXPECT_STREQ(WorkloadName(o->workload), w);
  }
  auto m = Parse({"txn-mixed"});
  EXPECT_EQ(m->key, "foo");
  auto w = Parse({"watch", "--watchers", "4", "--streams", "10"});
  ASSERT_TRUE(w.ok());
  EXPECT_EQ(w->streams, 4);  // no more streams than watchers
  auto s = Parse(
      {"stm", "--isolation", "ss", "--keys", "10", "--keys-per-txn", "3"});
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->isolation, "ss");
}

}  // namespace
}  // namespace detcd::bench
