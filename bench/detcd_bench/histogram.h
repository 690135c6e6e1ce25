// A latency histogram for detcd-bench: log-linear buckets over
// nanoseconds (each power of two split into 128 sub-buckets, so any
// reported percentile is within 0.8% of the true sample), exact count,
// min, max, mean and standard deviation. Recording is one array
// increment; each client thread records into its own histogram and the
// runner merges them at the end, so the hot path takes no lock.
#ifndef DETCD_BENCH_DETCD_BENCH_HISTOGRAM_H_
#define DETCD_BENCH_DETCD_BENCH_HISTOGRAM_H_

#include <cstdint>
#include <string>
#include <vector>

namespace detcd::bench {

class Histogram {
 public:
  Histogram();

  void Record(int64_t nanos);
  void Merge(const Histogram& other);

  int64_t count() const { return count_; }
  // 0 when empty.
  int64_t min() const { return count_ == 0 ? 0 : min_; }
  int64_t max() const { return max_; }
  double mean() const;
  // Population standard deviation, as etcd's benchmark reports it.
  double stddev() const;

  // The smallest recorded value v such that at least q * count() samples
  // are <= v, up to the bucket's width (q in [0, 1]); 0 when empty.
  int64_t Percentile(double q) const;

  // etcd benchmark's "Response time histogram": `bars` equal-width bins
  // from min() to max() (in nanoseconds), each with the count of samples
  // up to its upper edge.
  struct Bin {
    int64_t upper_nanos;
    int64_t count;
  };
  std::vector<Bin> EqualBins(int bars) const;

  // Bucket layout (exposed for tests).
  static int BucketOf(int64_t nanos);
  static int64_t BucketLow(int bucket);
  static int64_t BucketHigh(int bucket);  // inclusive

 private:
  std::vector<int64_t> buckets_;
  int64_t count_ = 0;
  int64_t min_ = 0;
  int64_t max_ = 0;
  double sum_ = 0;
  double sum_sq_ = 0;
};

}  // namespace detcd::bench

#endif  // DETCD_BENCH_DETCD_BENCH_HISTOGRAM_H_
