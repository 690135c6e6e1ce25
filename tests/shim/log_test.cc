#include "shim/log.h"

#include <stdlib.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace detcd::shim {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using json = nlohmann::ordered_json;

class LogTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = ::testing::TempDir() + "/log_test.XXXXXX";
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    path_ = dir_ + "/etcd.log";
  }
  void TearDown() override {
    // Back to the default so later tests (and gtest's own output) are sane.
    EXPECT_TRUE(InitLogging(LogOptions{}).ok());
    std::filesystem::remove_all(dir_);
  }

  void Init(std::string level, std::string logger = "zap") {
    LogOptions o;
    o.level = std::move(level);
    o.logger = std::move(logger);
    o.outputs = {path_};
    absl::Status s = InitLogging(o);
    ASSERT_TRUE(s.ok()) << s;
  }

  std::vector<std::string> Lines() const {
    std::ifstream in(path_);
    std::vector<std::string> lines;
    for (std::string line; std::getline(in, line);) lines.push_back(line);
    return lines;
  }

  std::string dir_;
  std::string path_;
};

std::vector<std::string> Keys(const json& j) {
  std::vector<std::string> keys;
  for (auto it = j.begin(); it != j.end(); ++it) keys.push_back(it.key());
  return keys;
}

TEST_F(LogTest, ZapLineHasEtcdKeysInOrderAndTypedFields) {
  Init("info");
  const int line = __LINE__ + 1;
  DLOG_INFO(
      "configuring peer listeners",
      {{"listen-peer-urls", std::vector<std::string>{"http://localhost:2380"}},
       {"max-cpu-set", 2},
       {"quota-size-bytes", uint64_t{2147483648}},
       {"force-new-cluster", false},
       {"ratio", 0.25},
       {"took", absl::Milliseconds(3) + absl::Nanoseconds(129268)},
       {"name", "default"},
       {"data-dir", std::string("/tmp/x")}});
  std::vector<std::string> lines = Lines();
  ASSERT_EQ(lines.size(), 1u);
  json j = json::parse(lines[0]);
  EXPECT_THAT(Keys(j), ElementsAre("level", "ts", "caller", "msg",
                                   "listen-peer-urls", "max-cpu-set",
                                   "quota-size-bytes", "force-new-cluster",
                                   "ratio", "took", "name", "data-dir"));
  EXPECT_EQ(j["level"], "info");
  EXPECT_TRUE(std::regex_match(
      j["ts"].get<std::string>(),
      std::regex(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}(Z|[+-]\d{4}))")))
      << j["ts"];
  EXPECT_EQ(j["caller"], "shim/log_test.cc:" + std::to_string(line));
  EXPECT_EQ(j["msg"], "configuring peer listeners");
  EXPECT_EQ(j["listen-peer-urls"], json::array({"http://localhost:2380"}));
  EXPECT_TRUE(j["max-cpu-set"].is_number_integer());
  EXPECT_EQ(j["max-cpu-set"], 2);
  EXPECT_TRUE(j["quota-size-bytes"].is_number_unsigned());
  EXPECT_EQ(j["quota-size-bytes"], 2147483648u);
  EXPECT_EQ(j["force-new-cluster"], false);
  EXPECT_EQ(j["ratio"], 0.25);
  EXPECT_EQ(j["took"], "3.129268ms");
  EXPECT_EQ(j["name"], "default");
  EXPECT_EQ(j["data-dir"], "/tmp/x");
  // Exact bytes for the fixed part, as etcd prints it.
  EXPECT_THAT(lines[0], HasSubstr("{\"level\":\"info\",\"ts\":\""));
  EXPECT_THAT(lines[0],
              HasSubstr(",\"msg\":\"configuring peer listeners\","
                        "\"listen-peer-urls\":[\"http://localhost:2380\"],"
                        "\"max-cpu-set\":2,\"quota-size-bytes\":2147483648,"
                        "\"force-new-cluster\":false,\"ratio\":0.25,"
                        "\"took\":\"3.129268ms\""));
}

TEST_F(LogTest, TimestampIsTheCurrentTime) {
  Init("info");
  absl::Time before = absl::Now();
  DLOG_INFO("tick");
  absl::Time after = absl::Now();
  std::vector<std::string> lines = Lines();
  ASSERT_EQ(lines.size(), 1u);
  std::string ts = json::parse(lines[0])["ts"];
  absl::Time t;
  std::string err;
  ASSERT_TRUE(absl::ParseTime("%Y-%m-%dT%H:%M:%E3S%Ez", ts, &t, &err) ||
              absl::ParseTime("%Y-%m-%dT%H:%M:%E3S%z", ts, &t, &err))
      << ts << ": " << err;
  // Milliseconds are truncated, so allow one below `before`.
  EXPECT_GE(t, before - absl::Milliseconds(1));
  EXPECT_LE(t, after);
}

TEST_F(LogTest, LevelsFilterAndAreNamedLikeZap) {
  Init("warn");
  EXPECT_FALSE(LogEnabled(LogLevel::kDebug));
  EXPECT_FALSE(LogEnabled(LogLevel::kInfo));
  EXPECT_TRUE(LogEnabled(LogLevel::kWarn));
  EXPECT_TRUE(LogEnabled(LogLevel::kError));
  DLOG_DEBUG("d");
  DLOG_INFO("i");
  DLOG_WARN("w");
  DLOG_ERROR("e");
  std::vector<std::string> lines = Lines();
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(json::parse(lines[0])["level"], "warn");
  EXPECT_EQ(json::parse(lines[0])["msg"], "w");
  EXPECT_EQ(json::parse(lines[1])["level"], "error");

  Init("debug");
  EXPECT_TRUE(LogEnabled(LogLevel::kDebug));
  DLOG_DEBUG("d2");
  lines = Lines();
  ASSERT_EQ(lines.size(), 3u);  // appended to the same file
  EXPECT_EQ(json::parse(lines[2])["level"], "debug");
}

TEST_F(LogTest, StringsAreEscapedLikeZap) {
  Init("info");
  DLOG_INFO("a \"quoted\"\\ line\nwith\ttabs\r",
            {{"ctl", std::string("\x01\x1f\b\f", 4)},
             {"utf8", "h\xc3\xa9llo \xe2\x82\xac"},
             {"bad", "x\xff\xc3y"},
             {"k\"ey", "v"}});
  std::vector<std::string> lines = Lines();
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_THAT(
      lines[0],
      HasSubstr("\"msg\":\"a \\\"quoted\\\"\\\\ line\\nwith\\ttabs\\r\""));
  EXPECT_THAT(lines[0], HasSubstr("\"ctl\":\"\\u0001\\u001f\\u0008\\u000c\""));
  EXPECT_THAT(lines[0], HasSubstr("\"utf8\":\"h\xc3\xa9llo \xe2\x82\xac\""));
  EXPECT_THAT(lines[0], HasSubstr("\"bad\":\"x\\ufffd\\ufffdy\""));
  EXPECT_THAT(lines[0], HasSubstr("\"k\\\"ey\":\"v\""));
  json j = json::parse(lines[0]);  // still valid JSON
  EXPECT_EQ(j["bad"], "x\xef\xbf\xbd\xef\xbf\xbdy");
}

TEST_F(LogTest, NonFiniteDoublesAreStrings) {
  Init("info");
  DLOG_INFO("f", {{"nan", std::nan("")},
                  {"inf", 1.0 / 0.0},
                  {"big", 1e21},
                  {"small", 1e-7}});
  std::vector<std::string> lines = Lines();
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_THAT(lines[0],
              HasSubstr("\"nan\":\"NaN\",\"inf\":\"+Inf\","
                        "\"big\":1000000000000000000000,\"small\":0.0000001"));
}

TEST_F(LogTest, CapnslogShape) {
  Init("info", "capnslog");
  DLOG_INFO("ready to serve client requests");
  DLOG_WARN("started to purge file",
            {{"dir", "/d/member/snap"},
             {"max", 5},
             {"interval", absl::Seconds(30)},
             {"urls", std::vector<std::string>{"http://a:1", "http://b:2"}}});
  DLOG_ERROR("e");
  std::vector<std::string> lines = Lines();
  ASSERT_EQ(lines.size(), 3u);
  const std::string ts = R"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6})";
  EXPECT_TRUE(std::regex_match(
      lines[0],
      std::regex(ts + R"( I \| shim: ready to serve client requests)")))
      << lines[0];
  EXPECT_TRUE(std::regex_match(
      lines[1],
      std::regex(ts +
                 R"( W \| shim: started to purge file, dir: /d/member/snap, )"
                 R"(max: 5, interval: 30s, urls: \[http://a:1 http://b:2\])")))
      << lines[1];
  EXPECT_TRUE(std::regex_match(lines[2], std::regex(ts + R"( E \| shim: e)")))
      << lines[2];
}

TEST_F(LogTest, ConsoleFormatIsZapsConsoleEncoder) {
  LogOptions o;
  o.format = "console";
  o.outputs = {path_};
  ASSERT_TRUE(InitLogging(o).ok());
  DLOG_INFO("ready to serve client requests");
  DLOG_WARN("slow fdatasync", {{"took", absl::Milliseconds(1500)},
                               {"expected-duration", absl::Seconds(1)},
                               {"n", 3}});
  std::vector<std::string> lines = Lines();
  ASSERT_EQ(lines.size(), 2u);
  const std::string ts =
      R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}(Z|[+-]\d{4}))";
  EXPECT_TRUE(std::regex_match(
      lines[0], std::regex(ts + "\tinfo\tshim/log_test\\.cc:\\d+\t"
                                "ready to serve client requests")))
      << lines[0];
  EXPECT_TRUE(std::regex_match(
      lines[1],
      std::regex(ts + "\twarn\tshim/log_test\\.cc:\\d+\tslow fdatasync\t"
                      R"(\{"took":"1\.5s","expected-duration":"1s","n":3\})")))
      << lines[1];
}

TEST_F(LogTest, UnknownFormatIsRefusedLikeEtcd35) {
  LogOptions o;
  o.format = "text";
  absl::Status s = InitLogging(o);
  EXPECT_EQ(s.message(),
            "unknown log format: text, supported values json, console");
  o.format = "";
  EXPECT_TRUE(InitLogging(o).ok());
}

TEST_F(LogTest, ConcurrentLinesStayWhole) {
  Init("info");
  constexpr int kThreads = 8;
  constexpr int kLines = 2000;
  // Long enough that a torn write would be likely to show.
  const std::string payload(300, 'x');
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([t, &payload] {
      for (int i = 0; i < kLines; ++i) {
        DLOG_INFO("concurrent", {{"thread", t}, {"i", i}, {"p", payload}});
      }
    });
  }
  for (std::thread& th : threads) th.join();
  std::vector<std::string> lines = Lines();
  ASSERT_EQ(lines.size(), static_cast<size_t>(kThreads * kLines));
  std::vector<int> next(kThreads, 0);
  for (const std::string& line : lines) {
    json j = json::parse(line, nullptr, /*allow_exceptions=*/false);
    ASSERT_FALSE(j.is_discarded()) << line;
    int t = j["thread"];
    // Each thread's lines appear in its own order.
    ASSERT_EQ(j["i"], next[t]);
    ++next[t];
    ASSERT_EQ(j["p"], payload);
  }
}

TEST_F(LogTest, OutputsAreValidatedLikeEtcd) {
  LogOptions o;
  o.level = "verbose";
  EXPECT_EQ(InitLogging(o).code(), absl::StatusCode::kInvalidArgument);
  o = LogOptions{};
  o.logger = "glog";
  EXPECT_EQ(InitLogging(o).code(), absl::StatusCode::kInvalidArgument);
  o = LogOptions{};
  o.outputs = {"default", path_};
  EXPECT_EQ(InitLogging(o).code(), absl::StatusCode::kInvalidArgument);
  o = LogOptions{};
  o.logger = "capnslog";
  o.outputs = {"stderr", "stdout"};
  EXPECT_EQ(InitLogging(o).code(), absl::StatusCode::kInvalidArgument);
  o = LogOptions{};
  o.outputs = {dir_ + "/missing/dir/etcd.log"};
  EXPECT_EQ(InitLogging(o).code(), absl::StatusCode::kInvalidArgument);
  o = LogOptions{};
  o.level = "dpanic";
  EXPECT_TRUE(InitLogging(o).ok());
  EXPECT_FALSE(LogEnabled(LogLevel::kError));
  EXPECT_TRUE(LogEnabled(LogLevel::kPanic));
}

TEST_F(LogTest, DuplicateOutputsWriteOnceAndDevNullSilences) {
  LogOptions o;
  o.outputs = {path_, path_};
  ASSERT_TRUE(InitLogging(o).ok());
  DLOG_INFO("once");
  EXPECT_EQ(Lines().size(), 1u);
  o.outputs = {path_, "/dev/null"};
  ASSERT_TRUE(InitLogging(o).ok());
  DLOG_INFO("dropped");
  EXPECT_EQ(Lines().size(), 1u);
}

TEST_F(LogTest, TwoFilesBothGetTheLine) {
  std::string second = dir_ + "/second.log";
  LogOptions o;
  o.outputs = {path_, second};
  ASSERT_TRUE(InitLogging(o).ok());
  DLOG_INFO("both");
  EXPECT_EQ(Lines().size(), 1u);
  std::ifstream in(second);
  std::string line;
  ASSERT_TRUE(std::getline(in, line));
  EXPECT_EQ(json::parse(line)["msg"], "both");
}

TEST_F(LogTest, FatalLogsThenExitsWithOne) {
  EXPECT_EXIT(
      {
        LogOptions o;
        o.outputs = {"stderr"};
        (void)InitLogging(o);
        DLOG_FATAL("cannot go on", {{"error", "disk full"}});
      },
      ::testing::ExitedWithCode(1),
      R"(\{"level":"fatal",.*"msg":"cannot go on","error":"disk full"\})");
}

TEST_F(LogTest, FatalExitsEvenWhenFiltered) {
  EXPECT_EXIT(
      {
        LogOptions o;
        o.level = "fatal";
        o.outputs = {"/dev/null"};
        (void)InitLogging(o);
        DLOG_FATAL("quiet");
      },
      ::testing::ExitedWithCode(1), "");
}

TEST_F(LogTest, PanicLogsThenAborts) {
  EXPECT_DEATH(
      {
        LogOptions o;
        o.outputs = {"stderr"};
        (void)InitLogging(o);
        DLOG_PANIC("broken invariant");
      },
      R"(\{"level":"panic",.*"msg":"broken invariant"\})");
}

TEST_F(LogTest, CallerIsTrimmedToLastDirectory) {
  Init("info");
  Log(LogLevel::kInfo, "/a/b/c/engine_loop.cc", 7, "x");
  Log(LogLevel::kInfo, "server.cc", 8, "y");
  std::vector<std::string> lines = Lines();
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(json::parse(lines[0])["caller"], "c/engine_loop.cc:7");
  EXPECT_EQ(json::parse(lines[1])["caller"], "server.cc:8");
}

}  // namespace
}  // namespace detcd::shim
