#include "shim/health.h"

#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "shim/log.h"

namespace detcd::shim {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

// A member whose state each test sets.
struct FakeMember {
  std::vector<std::string> alarms;
  bool has_leader = true;
  absl::Status serializable_read;
  absl::Status linearizable_read;
  std::vector<bool> reads;  // serializable flag of each read, in order

  HealthSource Source() {
    HealthSource s;
    s.alarms = [this] { return alarms; };
    s.has_leader = [this] { return has_leader; };
    s.read = [this](bool serializable) {
      reads.push_back(serializable);
      return serializable ? serializable_read : linearizable_read;
    };
    return s;
  }
};

class HealthTest : public ::testing::Test {
 protected:
  void SetUp() override {
    LogOptions o;
    o.outputs = {"/dev/null"};
    ASSERT_TRUE(InitLogging(o).ok());
  }

  HttpResponse Get(const std::string& path, const std::string& query = "",
                   const std::string& method = "GET") {
    HttpRequest r;
    r.method = method;
    r.path = path;
    r.query = query;
    std::optional<HttpResponse> out = h_.Serve(r);
    EXPECT_TRUE(out.has_value()) << path;
    return out.value_or(HttpResponse{});
  }

  std::string Sample(const std::string& prefix) {
    for (const auto& line : absl::StrSplit(reg_.Render(), '\n')) {
      if (absl::StartsWith(line, prefix)) return std::string(line);
    }
    return "";
  }

  FakeMember m_;
  metrics::Registry reg_;
  HealthEndpoints h_{m_.Source(), reg_};
};

TEST_F(HealthTest, HealthyMember) {
  HttpResponse r = Get("/health");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, R"({"health":"true"})");  // etcd 3.4's
  EXPECT_THAT(m_.reads, ElementsAre(false));  // linearizable by default
  EXPECT_EQ(Sample("etcd_server_health_success "),
            "etcd_server_health_success 1");
  EXPECT_EQ(Sample("etcd_server_health_failures "),
            "etcd_server_health_failures 0");
  // A 3.5 parameter: 3.5's body.
  EXPECT_EQ(Get("/health", "serializable=false").body,
            R"({"health":"true","reason":""})");
}

TEST_F(HealthTest, AlarmsUnlessExcluded) {
  m_.alarms = {"NOSPACE"};
  HttpResponse r = Get("/health");
  EXPECT_EQ(r.status, 503);
  EXPECT_EQ(r.body, "{\"health\":\"false\"}\n");
  EXPECT_TRUE(m_.reads.empty());  // an alarm answers before any read
  EXPECT_EQ(Get("/health", "exclude=CORRUPT").body,
            "{\"health\":\"false\",\"reason\":\"ALARM NOSPACE\"}\n");
  EXPECT_EQ(Get("/health", "exclude=NOSPACE").status, 200);
  // Excluding another alarm does not hide this one.
  EXPECT_EQ(Get("/health", "exclude=CORRUPT").status, 503);
  m_.alarms = {"NOSPACE", "CORRUPT"};
  r = Get("/health", "exclude=NOSPACE");
  EXPECT_THAT(r.body, HasSubstr("ALARM CORRUPT"));
  EXPECT_EQ(Get("/health", "exclude=NOSPACE&exclude=CORRUPT").status, 200);
  EXPECT_EQ(Sample("etcd_server_health_failures "),
            "etcd_server_health_failures 4");
}

TEST_F(HealthTest, NoLeaderUnlessSerializable) {
  m_.has_leader = false;
  HttpResponse r = Get("/health", "serializable=false");
  EXPECT_EQ(r.status, 503);
  EXPECT_THAT(r.body, HasSubstr("\"reason\":\"RAFT NO LEADER\""));
  EXPECT_TRUE(m_.reads.empty());
  r = Get("/health", "serializable=true");
  EXPECT_EQ(r.status, 200);
  EXPECT_THAT(m_.reads, ElementsAre(true));
  // Only "true" counts (Go's Query().Get, the first value).
  EXPECT_EQ(Get("/health", "serializable=1").status, 503);
}

TEST_F(HealthTest, ReadErrorIsRangeError) {
  m_.linearizable_read =
      absl::UnavailableError("etcdserver: request timed out");
  HttpResponse r = Get("/health", "serializable=false");
  EXPECT_EQ(r.status, 503);
  EXPECT_EQ(r.body,
            "{\"health\":\"false\",\"reason\":\"RANGE ERROR:etcdserver: "
            "request timed out\"}\n");
  EXPECT_EQ(Get("/health", "serializable=true").status, 200);
}

TEST_F(HealthTest, OnlyGet) {
  HttpResponse r = Get("/health", "", "POST");
  EXPECT_EQ(r.status, 405);
  EXPECT_EQ(r.body, "Method Not Allowed\n");
  EXPECT_EQ(Get("/readyz", "", "PUT").status, 405);
  EXPECT_EQ(Sample("etcd_server_health_success "),
            "etcd_server_health_success 0");
}

TEST_F(HealthTest, LivezAndReadyzOk) {
  HttpResponse r = Get("/livez");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "ok\n");
  EXPECT_THAT(m_.reads, ElementsAre(true));
  r = Get("/readyz", "verbose");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body,
            "[+]data_corruption ok\n[+]serializable_read ok\n"
            "[+]linearizable_read ok\nok\n");
  r = Get("/livez", "verbose=1");
  EXPECT_EQ(r.body, "[+]serializable_read ok\nok\n");
  EXPECT_EQ(Sample("etcd_server_healthcheck{name=\"linearizable_read\""),
            "etcd_server_healthcheck{name=\"linearizable_read\","
            "type=\"readyz\"} 1");
  EXPECT_EQ(Sample("etcd_server_healthchecks_total{name=\"serializable_read\","
                   "status=\"success\",type=\"livez\"}"),
            "etcd_server_healthchecks_total{name=\"serializable_read\","
            "status=\"success\",type=\"livez\"} 2");
}

TEST_F(HealthTest, ReadyzFailureListsEveryCheck) {
  m_.alarms = {"CORRUPT"};
  m_.linearizable_read = absl::UnavailableError("etcdserver: no leader");
  HttpResponse r = Get("/readyz");
  EXPECT_EQ(r.status, 503);
  EXPECT_EQ(r.body,
            "[-]data_corruption failed: alarm activated: CORRUPT\n"
            "[+]serializable_read ok\n"
            "[-]linearizable_read failed: etcdserver: no leader\n\n");
  // Livez does not need the cluster.
  EXPECT_EQ(Get("/livez").status, 200);
  // Excluded checks do not run; unknown names are ignored.
  r = Get("/readyz",
          "exclude=data_corruption&exclude=linearizable_read&exclude=nope");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(Sample("etcd_server_healthcheck{name=\"data_corruption\""),
            "etcd_server_healthcheck{name=\"data_corruption\","
            "type=\"readyz\"} 0");
  EXPECT_EQ(Sample("etcd_server_healthchecks_total{name=\"data_corruption\","
                   "status=\"error\""),
            "etcd_server_healthchecks_total{name=\"data_corruption\","
            "status=\"error\",type=\"readyz\"} 1");
}

TEST_F(HealthTest, OneCheckSubPath) {
  m_.linearizable_read = absl::UnavailableError("etcdserver: no leader");
  HttpResponse r = Get("/readyz/serializable_read");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "ok\n");
  r = Get("/readyz/linearizable_read");
  EXPECT_EQ(r.status, 503);
  EXPECT_EQ(r.body, "[-]linearizable_read failed: etcdserver: no leader\n\n");
  HttpRequest unknown;
  unknown.method = "GET";
  unknown.path = "/livez/linearizable_read";
  EXPECT_FALSE(h_.Serve(unknown).has_value());
  unknown.path = "/metrics";
  EXPECT_FALSE(h_.Serve(unknown).has_value());
}

TEST(QueryTest, GoParseQuery) {
  EXPECT_THAT(QueryValues("a=1&b&a=2", "a"), ElementsAre("1", "2"));
  EXPECT_THAT(QueryValues("a=1&b&a=2", "b"), ElementsAre(""));
  EXPECT_THAT(QueryValues("x=%41+b&x=%zz", "x"), ElementsAre("A b"));
  EXPECT_TRUE(QueryValues("", "a").empty());
  EXPECT_TRUE(QueryHas("verbose", "verbose"));
  EXPECT_TRUE(QueryHas("a=1&verbose=", "verbose"));
  EXPECT_FALSE(QueryHas("verbosex=1", "verbose"));
}

}  // namespace
}  // namespace detcd::shim
