#include "report.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "nlohmann/json.hpp"

namespace detcd::bench {
namespace {

constexpr double kNs = 1e9;
constexpr int kBars = 10;
constexpr int kBarWidth = 40;
constexpr double kQuantiles[] = {0.10, 0.25, 0.50, 0.75,
                                 0.90, 0.95, 0.99, 0.999};

double Secs(int64_t nanos) { return static_cast<double>(nanos) / kNs; }

double Qps(const Section& s) {
  return s.seconds > 0 ? static_cast<double>(s.latency.count()) / s.seconds : 0;
}

std::string QuantileName(double q) {
  return absl::StrFormat("%g", q * 100);  // 50, 99, 99.9
}

void AppendSection(const Section& s, bool titled, std::string* out) {
  const Histogram& h = s.latency;
  if (titled) absl::StrAppend(out, "\n", s.name, ":\n");
  absl::StrAppendFormat(out, "Summary:\n");
  absl::StrAppendFormat(out, "  Total:\t%.4f secs.\n", s.seconds);
  absl::StrAppendFormat(out, "  Slowest:\t%.4f secs.\n", Secs(h.max()));
  absl::StrAppendFormat(out, "  Fastest:\t%.4f secs.\n", Secs(h.min()));
  absl::StrAppendFormat(out, "  Average:\t%.4f secs.\n", h.mean() / kNs);
  absl::StrAppendFormat(out, "  Stddev:\t%.4f secs.\n", h.stddev() / kNs);
  absl::StrAppendFormat(out, "  Requests/sec:\t%.4f\n", Qps(s));
  if (h.count() > 0) {
    absl::StrAppend(out, "\nResponse time histogram:\n");
    const auto bins = h.EqualBins(kBars);
    int64_t most = 1;
    for (const auto& b : bins) most = std::max(most, b.count);
    for (const auto& b : bins) {
      absl::StrAppendFormat(
          out, "  %.4f [%d]\t|%s\n", Secs(b.upper_nanos), b.count,
          std::string(static_cast<size_t>(b.count * kBarWidth / most), '*'));
    }
    absl::StrAppend(out, "\nLatency distribution:\n");
    for (double q : kQuantiles) {
      absl::StrAppendFormat(out, "  %s%% in %.4f secs.\n", QuantileName(q),
                            Secs(h.Percentile(q)));
    }
  }
  if (s.errors > 0) {
    absl::StrAppendFormat(out, "\nErrors: %d\n", s.errors);
    for (const auto& [text, n] : s.error_texts) {
      absl::StrAppendFormat(out, "  [%d] %s\n", n, text);
    }
  }
}

}  // namespace

int64_t Result::operations() const {
  int64_t n = 0;
  for (const auto& s : sections) n += s.latency.count();
  return n;
}

double Result::bench_cpu_micros_per_op() const {
  const int64_t n = operations();
  return n > 0 ? bench_cpu_seconds * 1e6 / static_cast<double>(n) : 0;
}

std::string FormatText(const Result& r) {
  std::string out;
  const bool titled = r.sections.size() > 1;
  for (const auto& s : r.sections) AppendSection(s, titled, &out);
  if (!r.counters.empty()) {
    absl::StrAppend(&out, "\n");
    for (const auto& [name, v] : r.counters) {
      absl::StrAppendFormat(&out, "%s: %d\n", name, v);
    }
  }
  absl::StrAppendFormat(&out,
                        "\nBench CPU: %.3f secs. (%.1f us per operation)\n",
                        r.bench_cpu_seconds, r.bench_cpu_micros_per_op());
  if (!r.failure.empty()) absl::StrAppend(&out, "\nFAILED: ", r.failure, "\n");
  return out;
}

std::string FormatJson(const Result& r) {
  nlohmann::ordered_json j;
  j["workload"] = r.workload;
  j["sections"] = nlohmann::ordered_json::array();
  for (const auto& s : r.sections) {
    const Histogram& h = s.latency;
    nlohmann::ordered_json js;
    js["name"] = s.name;
    js["count"] = h.count();
    js["errors"] = s.errors;
    js["seconds"] = s.seconds;
    js["qps"] = Qps(s);
    nlohmann::ordered_json lat;
    lat["min"] = Secs(h.min());
    lat["max"] = Secs(h.max());
    lat["mean"] = h.mean() / kNs;
    lat["stddev"] = h.stddev() / kNs;
    for (double q : kQuantiles) {
      lat["p" + QuantileName(q)] = Secs(h.Percentile(q));
    }
    js["latency_s"] = lat;
    nlohmann::ordered_json bins = nlohmann::ordered_json::array();
    for (const auto& b : h.EqualBins(kBars)) {
      bins.push_back({{"le_s", Secs(b.upper_nanos)}, {"count", b.count}});
    }
    js["histogram"] = bins;
    if (!s.error_texts.empty()) js["error_texts"] = s.error_texts;
    j["sections"].push_back(js);
  }
  j["counters"] = r.counters;
  j["bench_cpu_s"] = r.bench_cpu_seconds;
  j["bench_cpu_us_per_op"] = r.bench_cpu_micros_per_op();
  j["failure"] = r.failure;
  return j.dump(2) + "\n";
}

}  // namespace detcd::bench
