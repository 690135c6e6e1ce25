#include "shim/metrics.h"

#include <time.h>

#include <cmath>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace detcd::shim::metrics {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

TEST(MetricsTest, RendersPrometheusTextExactly) {
  Registry r;
  Counter& c = r.NewCounter("detcd_test_requests_total", "Total requests.");
  c.Inc();
  c.Inc(2);
  r.NewGauge("a_gauge", "A gauge with \\ and\nnewline.").Set(2147483648.0);
  Histogram& h =
      r.NewHistogram("b_latency_seconds", "Latency.", {0.25, 0.5, 1});
  for (double v : {0.125, 0.5, 0.75, 4.0}) h.Observe(v);
  // Labels declared in one order print sorted by name, as the Go client does.
  Family<Counter>& f =
      r.NewCounterFamily("grpc_server_handled_total", "Total RPCs.",
                         {"grpc_type", "grpc_method", "grpc_code"});
  f.WithLabels({"unary", "Range", "OK"}).Inc(3);
  f.WithLabels({"unary", "Put", "OK"}).Inc();
  f.WithLabels({"unary", "Put", "Unavailable"}).Inc(0.5);
  r.NewGaugeFamily("empty_family", "Never printed.", {"x"});
  r.NewGaugeFamily("label_escape", "esc", {"path"})
      .WithLabels({"a\"b\\c\nd"})
      .Set(-1);
  r.NewGaugeFunc("c_func", "From a function.", [] { return 1.5; });
  r.NewHistogramFamily("d_hist", "Hist fam.", {"op"}, {1, 2})
      .WithLabels({"get"})
      .Observe(1.5);

  const std::string want =
      "# HELP a_gauge A gauge with \\\\ and\\nnewline.\n"
      "# TYPE a_gauge gauge\n"
      "a_gauge 2.147483648e+09\n"
      "# HELP b_latency_seconds Latency.\n"
      "# TYPE b_latency_seconds histogram\n"
      "b_latency_seconds_bucket{le=\"0.25\"} 1\n"
      "b_latency_seconds_bucket{le=\"0.5\"} 2\n"
      "b_latency_seconds_bucket{le=\"1\"} 3\n"
      "b_latency_seconds_bucket{le=\"+Inf\"} 4\n"
      "b_latency_seconds_sum 5.375\n"
      "b_latency_seconds_count 4\n"
      "# HELP c_func From a function.\n"
      "# TYPE c_func gauge\n"
      "c_func 1.5\n"
      "# HELP d_hist Hist fam.\n"
      "# TYPE d_hist histogram\n"
      "d_hist_bucket{op=\"get\",le=\"1\"} 0\n"
      "d_hist_bucket{op=\"get\",le=\"2\"} 1\n"
      "d_hist_bucket{op=\"get\",le=\"+Inf\"} 1\n"
      "d_hist_sum{op=\"get\"} 1.5\n"
      "d_hist_count{op=\"get\"} 1\n"
      "# HELP detcd_test_requests_total Total requests.\n"
      "# TYPE detcd_test_requests_total counter\n"
      "detcd_test_requests_total 3\n"
      "# HELP grpc_server_handled_total Total RPCs.\n"
      "# TYPE grpc_server_handled_total counter\n"
      "grpc_server_handled_total{grpc_code=\"OK\",grpc_method=\"Put\","
      "grpc_type=\"unary\"} 1\n"
      "grpc_server_handled_total{grpc_code=\"OK\",grpc_method=\"Range\","
      "grpc_type=\"unary\"} 3\n"
      "grpc_server_handled_total{grpc_code=\"Unavailable\",grpc_method=\"Put\","
      "grpc_type=\"unary\"} 0.5\n"
      "# HELP label_escape esc\n"
      "# TYPE label_escape gauge\n"
      "label_escape{path=\"a\\\"b\\\\c\\nd\"} -1\n";
  EXPECT_EQ(r.Render(), want);
  // Rendering does not change anything: a second scrape is identical.
  EXPECT_EQ(r.Render(), want);
}

TEST(MetricsTest, HistogramBucketsAreUpperInclusiveAndCumulative) {
  Histogram h({1, 2, 4});
  for (double v : {-3.0, 1.0, 1.0000001, 2.0, 3.0, 4.0, 4.5, 100.0}) {
    h.Observe(v);
  }
  h.Observe(std::nan(""));  // lands in +Inf, as in the Go client
  EXPECT_THAT(h.CumulativeCounts(), ElementsAre(2u, 4u, 6u, 9u));
  EXPECT_EQ(h.Count(), 9u);
  EXPECT_TRUE(std::isnan(h.Sum()));

  Histogram g({0.5, 1});
  g.Observe(0.25);
  g.Observe(0.75);
  EXPECT_EQ(g.Sum(), 1.0);
  EXPECT_THAT(g.CumulativeCounts(), ElementsAre(1u, 2u, 2u));
}

TEST(MetricsTest, HistogramManyBucketsUsesTheSameRule) {
  // 40 bounds takes the binary-search path.
  std::vector<double> bounds = LinearBuckets(1, 1, 40);
  Histogram h(bounds);
  for (int i = 0; i <= 41; ++i) h.Observe(i);
  h.Observe(0.5);
  std::vector<uint64_t> c = h.CumulativeCounts();
  ASSERT_EQ(c.size(), 41u);
  EXPECT_EQ(c[0], 3u);    // 0, 0.5, 1
  EXPECT_EQ(c[1], 4u);    // + 2
  EXPECT_EQ(c[39], 42u);  // up to 40
  EXPECT_EQ(c[40], 43u);  // + 41
}

TEST(MetricsTest, DefaultAndTrailingInfBuckets) {
  Histogram def({});
  EXPECT_EQ(def.upper_bounds(), DefaultBuckets());
  Histogram inf({1, 2, std::numeric_limits<double>::infinity()});
  EXPECT_THAT(inf.upper_bounds(), ElementsAre(1.0, 2.0));
}

TEST(MetricsTest, BucketHelpers) {
  // etcd's WAL fsync histogram: ExponentialBuckets(0.001, 2, 14).
  std::vector<double> b = ExponentialBuckets(0.001, 2, 14);
  ASSERT_EQ(b.size(), 14u);
  EXPECT_EQ(b[0], 0.001);
  EXPECT_EQ(b[13], 8.192);
  Registry r;
  r.NewHistogram("wal_fsync", "h", b);
  std::string text = r.Render();
  EXPECT_THAT(text, HasSubstr("wal_fsync_bucket{le=\"0.001\"} 0\n"));
  EXPECT_THAT(text, HasSubstr("wal_fsync_bucket{le=\"0.512\"} 0\n"));
  EXPECT_THAT(text, HasSubstr("wal_fsync_bucket{le=\"8.192\"} 0\n"));
  EXPECT_THAT(LinearBuckets(1, 0.5, 3), ElementsAre(1.0, 1.5, 2.0));
}

TEST(MetricsTest, CounterAndGaugeValues) {
  Counter c;
  c.Inc();
  c.Inc(0.25);
  c.Inc(1e17);  // beyond 2^53: goes to the double part
  EXPECT_EQ(c.Value(), 1 + 0.25 + 1e17);
  Gauge g;
  g.Set(10);
  g.Add(-2.5);
  g.Inc();
  g.Dec();
  EXPECT_EQ(g.Value(), 7.5);
}

TEST(MetricsTest, ChildReferencesAreStable) {
  Registry r;
  Family<Gauge>& f = r.NewGaugeFamily("g", "h", {"a", "b"});
  Gauge& first = f.WithLabels({"1", "2"});
  for (int i = 0; i < 100; ++i) f.WithLabels({std::to_string(i), "x"});
  EXPECT_EQ(&f.WithLabels({"1", "2"}), &first);
  EXPECT_NE(&f.WithLabels({"2", "1"}), &first);
}

TEST(MetricsTest, ConcurrentUpdatesAreNotLost) {
  Registry r;
  Counter& c = r.NewCounter("c_total", "c");
  Gauge& g = r.NewGauge("g", "g");
  Histogram& h = r.NewHistogram("h", "h", {1, 10});
  Family<Counter>& f = r.NewCounterFamily("f_total", "f", {"k"});
  constexpr int kThreads = 8;
  constexpr int kOps = 100'000;
  std::atomic<bool> done{false};
  // A scraper racing the writers must see whole, parseable output.
  std::thread scraper([&] {
    while (!done.load()) {
      std::string text = r.Render();
      ASSERT_THAT(text, HasSubstr("# TYPE h histogram\n"));
    }
  });
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      Counter& mine = f.WithLabels({t % 2 == 0 ? "even" : "odd"});
      for (int i = 0; i < kOps; ++i) {
        c.Inc();
        g.Add(1);
        h.Observe(i % 3 == 0 ? 0.5 : 5);
        mine.Inc(0.5);
      }
    });
  }
  for (std::thread& th : threads) th.join();
  done.store(true);
  scraper.join();
  EXPECT_EQ(c.Value(), kThreads * kOps);
  EXPECT_EQ(g.Value(), kThreads * kOps);
  EXPECT_EQ(h.Count(), static_cast<uint64_t>(kThreads * kOps));
  EXPECT_EQ(f.WithLabels({"even"}).Value(), kThreads / 2 * kOps * 0.5);
  EXPECT_EQ(f.WithLabels({"odd"}).Value(), kThreads / 2 * kOps * 0.5);
  // 0.5 and 5 sum exactly in doubles, so the total is exact.
  int small_per_thread = (kOps + 2) / 3;
  double want_sum =
      kThreads * (small_per_thread * 0.5 + (kOps - small_per_thread) * 5.0);
  EXPECT_EQ(h.Sum(), want_sum);
  EXPECT_EQ(h.CumulativeCounts()[0],
            static_cast<uint64_t>(kThreads * small_per_thread));
}

// name -> value for every unlabelled sample line.
std::map<std::string, double> ParseSamples(const std::string& text) {
  std::map<std::string, double> out;
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    if (line[0] == '#') continue;
    std::vector<std::string> parts = absl::StrSplit(line, ' ');
    EXPECT_EQ(parts.size(), 2u) << line;
    if (parts.size() != 2) continue;
    double v;
    EXPECT_TRUE(absl::SimpleAtod(parts[1], &v)) << line;
    out[parts[0]] = v;
  }
  return out;
}

TEST(MetricsTest, ProcessMetricsArePresentAndSane) {
  Registry r;
  RegisterProcessMetrics(r);
  std::string text = r.Render();
  EXPECT_THAT(text, HasSubstr("# HELP process_cpu_seconds_total Total user and "
                              "system CPU time spent in seconds.\n"
                              "# TYPE process_cpu_seconds_total counter\n"));
  EXPECT_THAT(text, HasSubstr("# TYPE process_resident_memory_bytes gauge\n"));
  std::map<std::string, double> s = ParseSamples(text);
  for (const char* name :
       {"process_cpu_seconds_total", "process_open_fds", "process_max_fds",
        "process_resident_memory_bytes", "process_virtual_memory_bytes",
        "process_virtual_memory_max_bytes", "process_start_time_seconds"}) {
    ASSERT_TRUE(s.count(name)) << name << " missing in\n" << text;
    EXPECT_FALSE(std::isnan(s[name])) << name;
  }
  EXPECT_GE(s["process_cpu_seconds_total"], 0);
  EXPECT_GE(s["process_open_fds"], 3);  // at least stdin/stdout/stderr
  EXPECT_GE(s["process_max_fds"], s["process_open_fds"]);
  EXPECT_GT(s["process_resident_memory_bytes"], 1 << 20);
  EXPECT_GE(s["process_virtual_memory_bytes"],
            s["process_resident_memory_bytes"]);
  double now = static_cast<double>(::time(nullptr));
  // Started within the last day and not in the future (1s of rounding).
  EXPECT_LE(s["process_start_time_seconds"], now + 1);
  EXPECT_GT(s["process_start_time_seconds"], now - 86400);

  // CPU time grows with work.
  double before = s["process_cpu_seconds_total"];
  volatile double sink = 0;
  struct timespec start, cur;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &start);
  do {
    for (int i = 0; i < 100000; ++i) sink = sink + std::sqrt(i);
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &cur);
  } while ((cur.tv_sec - start.tv_sec) * 1e9 + (cur.tv_nsec - start.tv_nsec) <
           5e7);
  EXPECT_GT(ParseSamples(r.Render())["process_cpu_seconds_total"], before);
}

TEST(MetricsTest, FuncFamiliesRenderSortedAtScrapeTime) {
  Registry r;
  int peers = 0;
  r.NewGaugeFuncFamily("etcd_network_active_peers", "Active peers.",
                       {"Local", "Remote"}, [&peers] {
                         Registry::LabelledValues out;
                         for (int i = peers; i > 0; --i) {
                           out.push_back({{"a", std::to_string(i)}, 1});
                         }
                         return out;
                       });
  r.NewCounterFuncFamily("x_total", "X.", {"to"}, [] {
    return Registry::LabelledValues{{{"b\"q"}, 2}, {{"a"}, 1.5}};
  });
  // No children yet: the gauge family prints nothing, as a labelled
  // family without children.
  EXPECT_EQ(r.Render(),
            "# HELP x_total X.\n"
            "# TYPE x_total counter\n"
            "x_total{to=\"a\"} 1.5\n"
            "x_total{to=\"b\\\"q\"} 2\n");
  peers = 2;
  EXPECT_THAT(r.Render(),
              HasSubstr("# TYPE etcd_network_active_peers gauge\n"
                        "etcd_network_active_peers{Local=\"a\",Remote=\"1\"} "
                        "1\n"
                        "etcd_network_active_peers{Local=\"a\",Remote=\"2\"} "
                        "1\n"));
}

TEST(MetricsTest, OsFdMetrics) {
  Registry r;
  RegisterOsFdMetrics(r);
  const std::string text = r.Render();
  EXPECT_THAT(text, HasSubstr("# TYPE os_fd_used gauge\nos_fd_used "));
  EXPECT_THAT(text, HasSubstr("# TYPE os_fd_limit gauge\nos_fd_limit "));
}

TEST(MetricsTest, DefaultRegistryIsOneObject) {
  EXPECT_EQ(&DefaultRegistry(), &DefaultRegistry());
}

TEST(MetricsDeathTest, MisuseAborts) {
  EXPECT_DEATH(
      {
        Registry r;
        r.NewCounter("x", "h");
        r.NewGauge("x", "h");
      },
      "duplicate metric name: x");
  EXPECT_DEATH({ Registry().NewCounter("1bad", "h"); }, "invalid metric name");
  EXPECT_DEATH(
      {
        Registry().NewCounterFamily("c", "h", {"a", "a"});
      },
      "duplicate label name");
  EXPECT_DEATH({ Registry().NewHistogramFamily("c", "h", {"le"}, {1}); },
               "reserved");
  EXPECT_DEATH(
      {
        Registry r;
        r.NewCounterFamily("c", "h", {"a", "b"}).WithLabels({"only-one"});
      },
      "wrong number of label values");
  EXPECT_DEATH({ Counter().Inc(-1); }, "counter cannot decrease");
  EXPECT_DEATH({ Histogram({2, 1}); }, "increasing order");
}

}  // namespace
}  // namespace detcd::shim::metrics
