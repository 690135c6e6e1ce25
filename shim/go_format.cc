#include "shim/go_format.h"

#include <charconv>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string_view>

#include "absl/strings/ascii.h"

namespace detcd::shim {
namespace {

// The shortest decimal digits that round-trip `v` (finite, nonzero or zero),
// and the position of the decimal point: v = 0.DIGITS * 10^point.
struct Decimal {
  bool negative = false;
  std::string digits;  // no leading or trailing zeros; "0" for zero
  int point = 0;
};

Decimal ShortestDecimal(double v) {
  // to_chars' scientific form is the shortest round-trip mantissa, which is
  // exactly what Go's shortest mode picks; only the layout differs.
  char buf[64];
  auto res =
      std::to_chars(buf, buf + sizeof(buf), v, std::chars_format::scientific);
  std::string_view s(buf, static_cast<size_t>(res.ptr - buf));
  Decimal d;
  if (!s.empty() && s.front() == '-') {
    d.negative = true;
    s.remove_prefix(1);
  }
  size_t e = s.find('e');
  std::string_view mantissa = s.substr(0, e);
  int exp10 = std::atoi(std::string(s.substr(e + 1)).c_str());
  for (char c : mantissa) {
    if (c != '.') d.digits.push_back(c);
  }
  while (d.digits.size() > 1 && d.digits.back() == '0') d.digits.pop_back();
  d.point = exp10 + 1;
  return d;
}

const char* NonFinite(double v) {
  if (std::isnan(v)) return "NaN";
  return v > 0 ? "+Inf" : "-Inf";
}

// %f layout of a Decimal with just enough fraction digits.
std::string FixedLayout(const Decimal& d) {
  std::string out = d.negative ? "-" : "";
  int nd = static_cast<int>(d.digits.size());
  if (d.point <= 0) {
    out += "0";
  } else {
    for (int i = 0; i < d.point; ++i) out += i < nd ? d.digits[i] : '0';
  }
  if (nd > d.point) {
    out += '.';
    for (int i = d.point; i < nd; ++i) out += i < 0 ? '0' : d.digits[i];
  }
  return out;
}

}  // namespace

std::string GoFormatFloatG(double v) {
  if (!std::isfinite(v)) return NonFinite(v);
  Decimal d = ShortestDecimal(v);
  int exp = d.point - 1;
  if (d.digits == "0") exp = 0;
  if (exp < -4 || exp >= 6) {
    std::string out = d.negative ? "-" : "";
    out += d.digits[0];
    if (d.digits.size() > 1) {
      out += '.';
      out.append(d.digits, 1);
    }
    out += 'e';
    out += exp < 0 ? '-' : '+';
    int a = std::abs(exp);
    if (a < 10) out += '0';
    out += std::to_string(a);
    return out;
  }
  return FixedLayout(d);
}

std::string GoFormatFloatF(double v) {
  if (!std::isfinite(v)) return NonFinite(v);
  Decimal d = ShortestDecimal(v);
  if (d.digits == "0") d.point = 1;
  return FixedLayout(d);
}

namespace {
// Go's fmtFrac: `v` split at `prec` decimal digits, the fraction printed
// without trailing zeros (and without the dot when it is all zeros).
std::string FracPart(uint64_t* v, int prec) {
  std::string frac;
  bool print = false;
  for (int i = 0; i < prec; ++i) {
    int digit = static_cast<int>(*v % 10);
    print = print || digit != 0;
    if (print) frac.insert(frac.begin(), static_cast<char>('0' + digit));
    *v /= 10;
  }
  if (print) frac.insert(frac.begin(), '.');
  return frac;
}
}  // namespace

std::string GoDurationString(int64_t ns) {
  if (ns == 0) return "0s";
  bool neg = ns < 0;
  // Negate in unsigned arithmetic so INT64_MIN does not overflow.
  uint64_t u = neg ? 0 - static_cast<uint64_t>(ns) : static_cast<uint64_t>(ns);
  std::string out;
  if (u < 1'000'000'000ULL) {
    if (u < 1'000ULL) {
      out = std::to_string(u) + "ns";
    } else if (u < 1'000'000ULL) {
      std::string frac = FracPart(&u, 3);
      out = std::to_string(u) + frac + "\u00b5s";
    } else {
      std::string frac = FracPart(&u, 6);
      out = std::to_string(u) + frac + "ms";
    }
  } else {
    std::string frac = FracPart(&u, 9);
    out = std::to_string(u % 60) + frac + "s";
    u /= 60;
    if (u > 0) {
      out = std::to_string(u % 60) + "m" + out;
      u /= 60;
      if (u > 0) out = std::to_string(u) + "h" + out;
    }
  }
  return neg ? "-" + out : out;
}

std::string GoErrno(int err) {
  std::string s = std::strerror(err);
  if (!s.empty()) s[0] = absl::ascii_tolower(s[0]);
  return s;
}

}  // namespace detcd::shim
