#include <cmath>

#include "engine/env/env.h"
#include "engine/util/check.h"
#include "engine/util/hash.h"

namespace detcd::env {
namespace {

uint64_t SplitMix64(uint64_t& x) {
  uint64_t z = (x += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

uint64_t Rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

}  // namespace

uint64_t Rng::Uniform(uint64_t n) {
  DETCD_CHECK(n > 0);
  // Rejection sampling removes modulo bias.
  const uint64_t limit = UINT64_MAX - UINT64_MAX % n;
  for (;;) {
    uint64_t v = Next();
    if (v < limit) return v % n;
  }
}

int64_t Rng::Range(int64_t lo, int64_t hi) {
  DETCD_CHECK(lo <= hi);
  // Unsigned arithmetic: hi - lo overflows int64_t (undefined behaviour)
  // once the span exceeds INT64_MAX, e.g. Range(INT64_MIN, INT64_MAX).
  uint64_t span = static_cast<uint64_t>(hi) - static_cast<uint64_t>(lo);
  if (span == UINT64_MAX) return static_cast<int64_t>(Next());
  return static_cast<int64_t>(static_cast<uint64_t>(lo) + Uniform(span + 1));
}

double Rng::UniformDouble() {
  return static_cast<double>(Next() >> 11) * 0x1.0p-53;
}

bool Rng::Chance(double p) {
  if (p <= 0) return false;
  if (p >= 1) return true;
  return UniformDouble() < p;
}

SeededRng::SeededRng(uint64_t seed) : seed_(seed) {
  uint64_t x = seed;
  for (auto& s : s_) s = SplitMix64(x);
}

uint64_t SeededRng::Next() {
  const uint64_t result = Rotl(s_[1] * 5, 7) * 9;
  const uint64_t t = s_[1] << 17;
  s_[2] ^= s_[0];
  s_[3] ^= s_[1];
  s_[1] ^= s_[2];
  s_[0] ^= s_[3];
  s_[2] ^= t;
  s_[3] = Rotl(s_[3], 45);
  return result;
}

SeededRng SeededRng::Derive(std::string_view stream) const {
  uint64_t x = seed_ ^ util::Fnv1a(stream);
  return SeededRng(SplitMix64(x));
}

}  // namespace detcd::env
