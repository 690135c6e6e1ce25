// Number and duration texts as Go prints them. etcd's logs (zap) and metrics
// (Prometheus' Go client) are produced by Go's strconv and time packages;
// tools that parse or diff them expect those exact spellings, which differ
// from printf's (1e+06 vs 1000000, "1m0s", "µs").
#ifndef DETCD_SHIM_GO_FORMAT_H_
#define DETCD_SHIM_GO_FORMAT_H_

#include <cstdint>
#include <string>

namespace detcd::shim {

// strconv.FormatFloat(v, 'g', -1, 64): shortest round-trip digits; the
// exponent form ("2.147483648e+09") when the decimal exponent is < -4 or
// >= 6, else plain ("0.005", "123456"). Also fmt's %v for float64.
// NaN -> "NaN", infinities -> "+Inf" / "-Inf".
std::string GoFormatFloatG(double v);

// strconv.FormatFloat(v, 'f', -1, 64): shortest round-trip digits, never an
// exponent ("1e21" -> "1000000000000000000000"). Infinities and NaN as above.
std::string GoFormatFloatF(double v);

// Go's text of a syscall error ("no such file or directory": strerror,
// lower case first letter), as etcd's and etcdctl's messages show it.
std::string GoErrno(int err);

// time.Duration(ns).String(): "0s", "10ns", "1.5µs", "100ms", "1m0s",
// "1h2m3.5s".
std::string GoDurationString(int64_t ns);

}  // namespace detcd::shim

#endif  // DETCD_SHIM_GO_FORMAT_H_
