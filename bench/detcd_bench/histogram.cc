#include "histogram.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <limits>

namespace detcd::bench {
namespace {

// Values below 2 * kSub are their own bucket; above, each power of two
// [2^e, 2^(e+1)) is kSub buckets wide, so the bucket width is at most
// 1/kSub of the value.
constexpr int kSubBits = 7;
constexpr int64_t kSub = int64_t{1} << kSubBits;
constexpr int kLinear = 2 * kSub;
// Shifts 1..(63 - kSubBits): the largest int64 has bit width 63.
constexpr int kBuckets = kLinear + (63 - kSubBits - 1) * kSub;

}  // namespace

Histogram::Histogram() : buckets_(kBuckets, 0) {}

int Histogram::BucketOf(int64_t nanos) {
  if (nanos < 0) nanos = 0;
  if (nanos < kLinear) return static_cast<int>(nanos);
  const int shift =
      std::bit_width(static_cast<uint64_t>(nanos)) - (kSubBits + 1);
  // nanos >> shift is in [kSub, 2 * kSub).
  return kLinear + (shift - 1) * static_cast<int>(kSub) +
         static_cast<int>((nanos >> shift) - kSub);
}

int64_t Histogram::BucketLow(int bucket) {
  if (bucket < kLinear) return bucket;
  const int shift = (bucket - kLinear) / static_cast<int>(kSub) + 1;
  const int64_t sub = (bucket - kLinear) % kSub + kSub;
  return sub << shift;
}

int64_t Histogram::BucketHigh(int bucket) {
  if (bucket < kLinear) return bucket;
  const int shift = (bucket - kLinear) / static_cast<int>(kSub) + 1;
  const int64_t low = BucketLow(bucket);
  const int64_t width = int64_t{1} << shift;
  if (low > std::numeric_limits<int64_t>::max() - width) {
    return std::numeric_limits<int64_t>::max();
  }
  return low + width - 1;
}

void Histogram::Record(int64_t nanos) {
  if (nanos < 0) nanos = 0;
  ++buckets_[BucketOf(nanos)];
  if (count_ == 0 || nanos < min_) min_ = nanos;
  if (nanos > max_) max_ = nanos;
  ++count_;
  const double v = static_cast<double>(nanos);
  sum_ += v;
  sum_sq_ += v * v;
}

void Histogram::Merge(const Histogram& other) {
  if (other.count_ == 0) return;
  for (size_t i = 0; i < buckets_.size(); ++i) buckets_[i] += other.buckets_[i];
  if (count_ == 0 || other.min_ < min_) min_ = other.min_;
  max_ = std::max(max_, other.max_);
  count_ += other.count_;
  sum_ += other.sum_;
  sum_sq_ += other.sum_sq_;
}

double Histogram::mean() const {
  return count_ == 0 ? 0 : sum_ / static_cast<double>(count_);
}

double Histogram::stddev() const {
  if (count_ == 0) return 0;
  const double m = mean();
  const double var = sum_sq_ / static_cast<double>(count_) - m * m;
  return var > 0 ? std::sqrt(var) : 0;
}

int64_t Histogram::Percentile(double q) const {
  if (count_ == 0) return 0;
  q = std::clamp(q, 0.0, 1.0);
  // The rank of the sample wanted (1-based): at least one sample.
  int64_t rank =
      static_cast<int64_t>(std::ceil(q * static_cast<double>(count_)));
  rank = std::clamp<int64_t>(rank, 1, count_);
  int64_t seen = 0;
  for (int b = 0; b < kBuckets; ++b) {
    seen += buckets_[b];
    if (seen >= rank) {
      // The bucket's middle, kept inside what was actually recorded.
      const int64_t low = BucketLow(b);
      const int64_t mid = low + (BucketHigh(b) - low) / 2;
      return std::clamp(mid, min_, max_);
    }
  }
  return max_;
}

std::vector<Histogram::Bin> Histogram::EqualBins(int bars) const {
  std::vector<Bin> bins;
  if (count_ == 0 || bars <= 0) return bins;
  const double lo = static_cast<double>(min_);
  const double step = static_cast<double>(max_ - min_) / bars;
  bins.reserve(bars + 1);
  for (int i = 0; i <= bars; ++i) {
    bins.push_back({static_cast<int64_t>(lo + step * i), 0});
  }
  bins.back().upper_nanos = max_;
  // Each bucket's samples go to the bin holding the bucket's middle: the
  // bins are at least as coarse as the buckets in any useful display.
  size_t bin = 0;
  for (int b = 0; b < kBuckets; ++b) {
    if (buckets_[b] == 0) continue;
    const int64_t low = BucketLow(b);
    // The bucket holding the fastest sample counts as the fastest.
    const int64_t v =
        low <= min_ ? min_
                    : std::clamp(low + (BucketHigh(b) - low) / 2, min_, max_);
    while (bin + 1 < bins.size() && v > bins[bin].upper_nanos) ++bin;
    bins[bin].count += buckets_[b];
  }
  return bins;
}

}  // namespace detcd::bench
