#include "shim/trace_file.h"

#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace detcd::shim {
namespace {

class TraceFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = ::testing::TempDir() + "/trace_test.XXXXXX";
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    path_ = dir_ + "/trace.json";
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::string Read() const {
    std::ifstream in(path_);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }

  std::string dir_;
  std::string path_;
};

TEST_F(TraceFileTest, ClosedFileIsTheSimulatorsEventShapes) {
  auto t = TraceFile::Open(path_);
  ASSERT_TRUE(t.ok()) << t.status();
  const double start = (*t)->NowUs();
  (*t)->Instant(TraceFile::kRaft, "became leader", "term 2");
  (*t)->Span(TraceFile::kWal, start, "fsync", "member/wal/x\n\"y\"");
  (*t)->Close();
  (*t)->Instant(TraceFile::kRaft, "dropped after close");
  nlohmann::json j = nlohmann::json::parse(Read());
  ASSERT_TRUE(j.is_array());
  std::vector<nlohmann::json> events;
  for (const auto& e : j) {
    if (e.contains("ph") && e["ph"] != "M") events.push_back(e);
  }
  ASSERT_EQ(events.size(), 2u) << j.dump();
  EXPECT_EQ(events[0]["ph"], "i");
  EXPECT_EQ(events[0]["s"], "t");
  EXPECT_EQ(events[0]["tid"], 1);
  EXPECT_EQ(events[0]["name"], "became leader");
  EXPECT_EQ(events[0]["args"]["detail"], "term 2");
  EXPECT_EQ(events[1]["ph"], "X");
  EXPECT_EQ(events[1]["tid"], 3);
  EXPECT_GE(events[1]["dur"].get<double>(), 0);
  EXPECT_LE(events[1]["ts"].get<double>(), events[0]["ts"].get<double>());
  EXPECT_EQ(events[1]["args"]["detail"], "member/wal/x\n\"y\"");
  // Track names, as the simulator's "thread_name" metadata.
  bool named_wal = false;
  for (const auto& e : j) {
    if (e.value("ph", "") == "M" && e["tid"] == 3) {
      named_wal = e["args"]["name"] == "wal";
    }
  }
  EXPECT_TRUE(named_wal);
}

TEST_F(TraceFileTest, ReadableWhileOpen) {
  auto t = TraceFile::Open(path_);
  ASSERT_TRUE(t.ok());
  (*t)->Instant(TraceFile::kApply, "applied", "index 7");
  // Viewers take the array without its "]": it ends with ",\n" until then.
  std::string text = Read();
  ASSERT_GE(text.size(), 2u);
  EXPECT_EQ(text.substr(text.size() - 2), ",\n");
  EXPECT_THAT(text, ::testing::HasSubstr("\"name\":\"applied\""));
}

TEST_F(TraceFileTest, LanesAreReusedLowestFirst) {
  auto t = TraceFile::Open(path_);
  ASSERT_TRUE(t.ok());
  EXPECT_EQ((*t)->AcquireLane(), 0);
  EXPECT_EQ((*t)->AcquireLane(), 1);
  (*t)->ReleaseLane(0);
  EXPECT_EQ((*t)->AcquireLane(), 0);
  for (int i = 2; i < TraceFile::kLanes; ++i) (*t)->AcquireLane();
  EXPECT_EQ((*t)->AcquireLane(), TraceFile::kLanes - 1);  // all busy
}

TEST_F(TraceFileTest, ConcurrentEventsStayWholeLines) {
  auto t = TraceFile::Open(path_);
  ASSERT_TRUE(t.ok());
  std::vector<std::thread> threads;
  for (int i = 0; i < 4; ++i) {
    threads.emplace_back([&, i] {
      for (int k = 0; k < 200; ++k) {
        (*t)->Instant(TraceFile::kRequests + i, "KV/Put", std::string(50, 'x'));
      }
    });
  }
  for (auto& th : threads) th.join();
  (*t)->Close();
  nlohmann::json j = nlohmann::json::parse(Read());
  int puts = 0;
  for (const auto& e : j) puts += e.value("name", "") == "KV/Put";
  EXPECT_EQ(puts, 800);
}

TEST(TraceFileOpen, UnwritablePathIsAnError) {
  auto t = TraceFile::Open("/nonexistent-dir/trace.json");
  ASSERT_FALSE(t.ok());
  EXPECT_THAT(std::string(t.status().message()),
              ::testing::HasSubstr("open /nonexistent-dir/trace.json"));
}

}  // namespace
}  // namespace detcd::shim
