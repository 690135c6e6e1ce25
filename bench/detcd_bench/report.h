// detcd-bench's results and how they are printed: etcd benchmark's text
// report (summary, response time histogram, latency distribution) per
// section, or one JSON document (--json) for scripts such as
// bench/compare.
#ifndef DETCD_BENCH_DETCD_BENCH_REPORT_H_
#define DETCD_BENCH_DETCD_BENCH_REPORT_H_

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "histogram.h"

namespace detcd::bench {

// One kind of operation measured (a workload has one or two: txn-mixed's
// reads and writes, watch's event deliveries and puts).
struct Section {
  Section() = default;
  explicit Section(std::string n) : name(std::move(n)) {}

  std::string name;
  Histogram latency;  // successful operations only
  int64_t errors = 0;
  std::map<std::string, int64_t> error_texts;  // error text -> count
  // Seconds over which the section's operations ran (its QPS divisor).
  double seconds = 0;
};

struct Result {
  std::string workload;
  std::vector<Section> sections;  // the first is the headline figure
  // CPU (user + system) this process used over the measured phase, and
  // the operations it is divided by (all sections' successes).
  double bench_cpu_seconds = 0;
  // Extra counters (stm conflicts, watch events expected, ...).
  std::map<std::string, int64_t> counters;
  // Set when the run could not finish as asked (e.g. events missing).
  std::string failure;

  int64_t operations() const;
  double bench_cpu_micros_per_op() const;
};

std::string FormatText(const Result& r);
std::string FormatJson(const Result& r);

}  // namespace detcd::bench

#endif  // DETCD_BENCH_DETCD_BENCH_REPORT_H_
