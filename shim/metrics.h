// Prometheus metrics for the real server, exposed on /metrics in the text
// format 0.0.4 exactly as etcd's Go client library prints it, so dashboards
// and alerts written for etcd work on detcd:
//
//   # HELP etcd_server_has_leader Whether or not a leader exists. ...
//   # TYPE etcd_server_has_leader gauge
//   etcd_server_has_leader 1
//   # HELP etcd_disk_wal_fsync_duration_seconds The latency ...
//   # TYPE etcd_disk_wal_fsync_duration_seconds histogram
//   etcd_disk_wal_fsync_duration_seconds_bucket{le="0.001"} 4
//   ...
//   etcd_disk_wal_fsync_duration_seconds_bucket{le="+Inf"} 4
//   etcd_disk_wal_fsync_duration_seconds_sum 0.0021
//   etcd_disk_wal_fsync_duration_seconds_count 4
//
// As in the Go client: families are sorted by name; a family's labels print
// sorted by label name, and its children sorted by those label values; a
// labelled family with no children yet prints nothing; numbers use Go's
// shortest %g ("2.147483648e+09", "0.005", "+Inf", "NaN"); HELP escapes \ and
// newline, label values also escape ".
//
// Hot paths are lock-free: Counter, Gauge and Histogram update atomics only.
// Family::WithLabels takes the family's mutex, so callers look a child up
// once and keep the reference (children live as long as the registry).
// Misuse (bad or duplicate names, wrong label count, a counter going down) is
// a programming error and aborts, as the Go client panics.
#ifndef DETCD_SHIM_METRICS_H_
#define DETCD_SHIM_METRICS_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace detcd::shim::metrics {

// A monotonically increasing value. Whole increments (the common case) add
// to an integer; fractional ones to a double; Value() is their sum.
class Counter {
 public:
  Counter() = default;
  Counter(const Counter&) = delete;
  Counter& operator=(const Counter&) = delete;

  // v must be >= 0.
  void Inc(double v = 1);
  double Value() const;

 private:
  std::atomic<uint64_t> whole_{0};
  std::atomic<double> fraction_{0};
};

class Gauge {
 public:
  Gauge() = default;
  Gauge(const Gauge&) = delete;
  Gauge& operator=(const Gauge&) = delete;

  void Set(double v) { value_.store(v, std::memory_order_relaxed); }
  void Add(double v) { value_.fetch_add(v, std::memory_order_relaxed); }
  void Inc() { Add(1); }
  void Dec() { Add(-1); }
  double Value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0};
};

// Counts observations into fixed buckets: an observation v lands in the
// first bucket whose upper bound b has v <= b, or in +Inf. The count is the
// sum of the bucket counts, so a scrape always shows _count equal to the
// +Inf bucket; _sum may lag a concurrent Observe by one value.
class Histogram {
 public:
  // `upper_bounds` must be strictly increasing; a trailing +Inf is dropped
  // (it is implicit). Empty means the Go client's DefBuckets.
  explicit Histogram(std::vector<double> upper_bounds);
  Histogram(const Histogram&) = delete;
  Histogram& operator=(const Histogram&) = delete;

  void Observe(double v);

  const std::vector<double>& upper_bounds() const { return bounds_; }
  // Cumulative counts, one per upper bound plus the final +Inf.
  std::vector<uint64_t> CumulativeCounts() const;
  uint64_t Count() const;
  double Sum() const { return sum_.load(std::memory_order_relaxed); }

 private:
  std::vector<double> bounds_;
  std::unique_ptr<std::atomic<uint64_t>[]> counts_;  // bounds_.size() + 1
  std::atomic<double> sum_{0};
};

namespace internal {
// One named entry of a registry: knows how to print itself.
class Collector {
 public:
  virtual ~Collector() = default;
  virtual void Render(std::string* out) const = 0;
};
}  // namespace internal

// Children of one metric name, one per combination of label values.
// T is Counter, Gauge or Histogram.
template <class T>
class Family final : public internal::Collector {
 public:
  Family(std::string name, std::string help, std::vector<std::string> labels,
         std::vector<double> buckets);
  Family(const Family&) = delete;
  Family& operator=(const Family&) = delete;

  // The child for these label values, given in the declared label order;
  // created on first use. The reference stays valid for the family's life.
  T& WithLabels(const std::vector<std::string>& values);

  void Render(std::string* out) const override;

 private:
  const std::string name_;
  const std::string help_;
  std::vector<std::string> sorted_labels_;  // label names, sorted
  std::vector<size_t> order_;          // declared index of each sorted label
  const std::vector<double> buckets_;  // for Histogram children
  mutable absl::Mutex mu_;
  // Keyed by label values in sorted-label-name order, which is also the
  // order children print in.
  std::map<std::vector<std::string>, std::unique_ptr<T>> children_
      ABSL_GUARDED_BY(mu_);
};

extern template class Family<Counter>;
extern template class Family<Gauge>;
extern template class Family<Histogram>;

class Registry {
 public:
  Registry() = default;
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;

  Counter& NewCounter(std::string name, std::string help);
  Gauge& NewGauge(std::string name, std::string help);
  Histogram& NewHistogram(std::string name, std::string help,
                          std::vector<double> buckets);

  Family<Counter>& NewCounterFamily(std::string name, std::string help,
                                    std::vector<std::string> labels);
  Family<Gauge>& NewGaugeFamily(std::string name, std::string help,
                                std::vector<std::string> labels);
  Family<Histogram>& NewHistogramFamily(std::string name, std::string help,
                                        std::vector<std::string> labels,
                                        std::vector<double> buckets);

  // Values computed at scrape time (e.g. from the engine's last published
  // stats, or /proc). `f` runs inside Render without registry locks held,
  // so it may take its own locks; it must be thread-safe.
  void NewGaugeFunc(std::string name, std::string help,
                    std::function<double()> f);
  void NewCounterFunc(std::string name, std::string help,
                      std::function<double()> f);

  // Labelled values computed at scrape time: `f` returns (label values in
  // the declared label order, value) pairs; they print sorted as a
  // family's children do, and nothing when `f` returns none.
  using LabelledValues =
      std::vector<std::pair<std::vector<std::string>, double>>;
  void NewGaugeFuncFamily(std::string name, std::string help,
                          std::vector<std::string> labels,
                          std::function<LabelledValues()> f);
  void NewCounterFuncFamily(std::string name, std::string help,
                            std::vector<std::string> labels,
                            std::function<LabelledValues()> f);

  // The whole registry in text format 0.0.4 (Content-Type
  // "text/plain; version=0.0.4; charset=utf-8"). Deterministic for equal
  // values.
  std::string Render() const;

 private:
  template <class T>
  Family<T>& AddFamily(std::string name, std::string help,
                       std::vector<std::string> labels,
                       std::vector<double> buckets);
  void Add(const std::string& name, std::unique_ptr<internal::Collector> c);

  mutable absl::Mutex mu_;
  // Entries are never removed, so pointers taken under mu_ stay valid.
  std::map<std::string, std::unique_ptr<internal::Collector>> entries_
      ABSL_GUARDED_BY(mu_);
};

// The process-wide registry that /metrics serves. Never destroyed.
Registry& DefaultRegistry();

// The Go client's bucket helpers: `count` bounds start, start*factor, ...
// (ExponentialBuckets) or start, start+width, ... (LinearBuckets).
// Abort on count < 1, start <= 0 or factor <= 1 (exponential).
std::vector<double> ExponentialBuckets(double start, double factor, int count);
std::vector<double> LinearBuckets(double start, double width, int count);

// The Go client's default histogram buckets (.005 ... 10 seconds).
std::vector<double> DefaultBuckets();

// The process_* families etcd exposes through the Go client's process
// collector, read from /proc at scrape time: process_cpu_seconds_total,
// process_open_fds, process_max_fds, process_resident_memory_bytes,
// process_virtual_memory_bytes, process_virtual_memory_max_bytes,
// process_start_time_seconds.
void RegisterProcessMetrics(Registry& r);

// etcd's own file descriptor gauges (os_fd_used, os_fd_limit), read from
// /proc at scrape time as etcd's monitorFileDescriptor reads them.
void RegisterOsFdMetrics(Registry& r);

// Content-Type of Render()'s output.
inline constexpr char kTextContentType[] =
    "text/plain; version=0.0.4; charset=utf-8";

}  // namespace detcd::shim::metrics

#endif  // DETCD_SHIM_METRICS_H_
