#include "histogram.h"

#include <cstdint>
#include <limits>
#include <random>

#include "gtest/gtest.h"
#include "report.h"

namespace detcd::bench {
namespace {

TEST(HistogramTest, EmptyIsZero) {
  Histogram h;
  EXPECT_EQ(h.count(), 0);
  EXPECT_EQ(h.min(), 0);
  EXPECT_EQ(h.max(), 0);
  EXPECT_EQ(h.Percentile(0.5), 0);
  EXPECT_EQ(h.mean(), 0);
  EXPECT_TRUE(h.EqualBins(10).empty());
}

TEST(HistogramTest, BucketsCoverEveryValueContiguously) {
  // Each bucket starts right after the previous one ends, and a value
  // lands in the bucket whose bounds hold it.
  for (int b = 1; b < Histogram::BucketOf(std::numeric_limits<int64_t>::max());
       ++b) {
    ASSERT_EQ(Histogram::BucketLow(b), Histogram::BucketHigh(b - 1) + 1) << b;
  }
  std::mt19937_64 rng(7);
  for (int i = 0; i < 100000; ++i) {
    const int64_t v = static_cast<int64_t>(rng() >> (rng() % 63 + 1));
    const int b = Histogram::BucketOf(v);
    ASSERT_LE(Histogram::BucketLow(b), v);
    ASSERT_GE(Histogram::BucketHigh(b), v);
    // Relative width under 1%: the precision percentiles promise.
    ASSERT_LE(Histogram::BucketHigh(b) - Histogram::BucketLow(b),
              Histogram::BucketLow(b) / 100 + 1);
  }
}

TEST(HistogramTest, ExactForSmallValues) {
  Histogram h;
  for (int v = 1; v <= 100; ++v) h.Record(v);
  EXPECT_EQ(h.count(), 100);
  EXPECT_EQ(h.min(), 1);
  EXPECT_EQ(h.max(), 100);
  EXPECT_EQ(h.Percentile(0.5), 50);
  EXPECT_EQ(h.Percentile(0.9), 90);
  EXPECT_EQ(h.Percentile(0.99), 99);
  EXPECT_EQ(h.Percentile(1.0), 100);
  EXPECT_EQ(h.Percentile(0.0), 1);
  EXPECT_DOUBLE_EQ(h.mean(), 50.5);
  // Population stddev of 1..100.
  EXPECT_NEAR(h.stddev(), 28.866, 0.001);
}

TEST(HistogramTest, PercentilesWithinOnePercent) {
  // Latencies from 10 us to 10 s, log-uniform.
  std::mt19937_64 rng(42);
  std::vector<int64_t> all;
  Histogram h;
  std::uniform_real_distribution<double> u(4, 10);
  for (int i = 0; i < 200000; ++i) {
    const int64_t v = static_cast<int64_t>(std::pow(10.0, u(rng)));
    all.push_back(v);
    h.Record(v);
  }
  std::sort(all.begin(), all.end());
  for (double q : {0.1, 0.5, 0.9, 0.99, 0.999}) {
    const int64_t want =
        all[static_cast<size_t>(std::ceil(q * all.size())) - 1];
    EXPECT_NEAR(static_cast<double>(h.Percentile(q)), want, want * 0.01)
        << "q=" << q;
  }
  EXPECT_EQ(h.min(), all.front());
  EXPECT_EQ(h.max(), all.back());
}

TEST(HistogramTest, TailIsNotHiddenByTheBulk) {
  // 999 fast requests and one slow one: p99.9 is the fast one, p100 the
  // slow one; with one more slow request p99.9 becomes slow.
  Histogram h;
  for (int i = 0; i < 999; ++i) h.Record(1'000'000);
  h.Record(500'000'000);
  EXPECT_NEAR(h.Percentile(0.999), 1'000'000, 10'000);
  EXPECT_EQ(h.Percentile(1.0), 500'000'000);
  h.Record(500'000'000);
  EXPECT_NEAR(h.Percentile(0.999), 500'000'000, 5'000'000);
}

TEST(HistogramTest, MergeEqualsRecordingEverything) {
  Histogram a, b, both;
  for (int i = 0; i < 1000; ++i) {
    a.Record(i * 1000);
    both.Record(i * 1000);
    b.Record(i * 7919 + 13);
    both.Record(i * 7919 + 13);
  }
  a.Merge(b);
  EXPECT_EQ(a.count(), both.count());
  EXPECT_EQ(a.min(), both.min());
  EXPECT_EQ(a.max(), both.max());
  EXPECT_DOUBLE_EQ(a.mean(), both.mean());
  for (double q : {0.5, 0.9, 0.99}) {
    EXPECT_EQ(a.Percentile(q), both.Percentile(q));
  }
  Histogram empty;
  a.Merge(empty);
  EXPECT_EQ(a.count(), both.count());
  empty.Merge(b);
  EXPECT_EQ(empty.min(), b.min());
}

TEST(HistogramTest, NegativeIsZero) {
  Histogram h;
  h.Record(-5);
  EXPECT_EQ(h.min(), 0);
  EXPECT_EQ(h.count(), 1);
}

TEST(HistogramTest, EqualBinsCountEverySample) {
  Histogram h;
  for (int i = 0; i < 1000; ++i) h.Record(1000 + i * 1000);
  const auto bins = h.EqualBins(10);
  ASSERT_EQ(bins.size(), 11u);
  int64_t total = 0;
  for (const auto& b : bins) total += b.count;
  EXPECT_EQ(total, 1000);
  EXPECT_EQ(bins.front().upper_nanos, h.min());
  EXPECT_EQ(bins.front().count, 1);  // the fastest sample
  EXPECT_EQ(bins.back().upper_nanos, h.max());
  // Uniform samples: the 10 bins after the first hold about 100 each.
  for (size_t i = 1; i < bins.size(); ++i) {
    EXPECT_NEAR(bins[i].count, 100, 3) << i;
  }
}

TEST(ReportTest, TextAndJsonCarryThePercentiles) {
  Result r;
  r.workload = "put";
  Section s{"put"};
  for (int i = 1; i <= 1000; ++i) s.latency.Record(i * 1000);  // 1..1000 us
  s.seconds = 2;
  s.errors = 3;
  s.error_texts["etcdserver: request timed out"] = 3;
  r.sections.push_back(s);
  r.bench_cpu_seconds = 0.01;
  const std::string text = FormatText(r);
  EXPECT_NE(text.find("Requests/sec:\t500.0000"), std::string::npos) << text;
  EXPECT_NE(text.find("99.9% in 0.0010 secs."), std::string::npos) << text;
  EXPECT_NE(text.find("50% in 0.0005 secs."), std::string::npos) << text;
  EXPECT_NE(text.find("[3] etcdserver: request timed out"), std::string::npos);
  EXPECT_NE(text.find("(10.0 us per operation)"), std::string::npos) << text;
  const std::string json = FormatJson(r);
  // Within the histogram's 1% of 999 us.
  EXPECT_NE(json.find("\"p99.9\": 0.00099"), std::string::npos) << json;
  EXPECT_NE(json.find("\"qps\": 500.0"), std::string::npos) << json;
  EXPECT_NE(json.find("\"bench_cpu_us_per_op\": 10.0"), std::string::npos);
}

}  // namespace
}  // namespace detcd::bench
