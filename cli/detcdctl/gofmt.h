// Texts exactly as Go's standard library writes them. etcdctl is a Go
// program: its output quotes strings with strconv.Quote (%q), prints
// durations with time.Duration.String, sizes with go-humanize, and its
// errors carry strconv's and time's messages. A drop-in replacement must
// produce the same bytes, so these mirror Go's rules.
#ifndef DETCD_CLI_DETCDCTL_GOFMT_H_
#define DETCD_CLI_DETCDCTL_GOFMT_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/status/statusor.h"

namespace detcd::ctl {

// strconv.Quote (fmt's %q of a string): printable UTF-8 kept, \a \b \f \n
// \r \t \v \\ \" escaped, other control and invalid bytes as \xNN,
// non-printable runes as \uNNNN / \UNNNNNNNN.
std::string GoQuote(absl::string_view s);

// strconv.ParseInt(s, base, 64) / ParseUint: base 0 takes Go's prefixes
// (0x, 0o, 0b, leading 0) and underscores. Errors read
// `strconv.ParseInt: parsing "x": invalid syntax` (or "value out of
// range").
absl::StatusOr<int64_t> GoParseInt(absl::string_view s, int base);
absl::StatusOr<uint64_t> GoParseUint(absl::string_view s, int base);
// strconv.ParseBool: 1 t T TRUE true True 0 f F FALSE false False.
absl::StatusOr<bool> GoParseBool(absl::string_view s);
// time.ParseDuration, in nanoseconds; errors as Go's
// (`time: invalid duration "x"`).
absl::StatusOr<int64_t> GoParseDuration(absl::string_view s);
// time.Duration(ns).String(): "2s", "1.5ms", "1m0s".
std::string GoDuration(int64_t ns);

// go-humanize's Bytes: SI units ("20 kB", "1.5 MB", "9 B").
std::string HumanizeBytes(uint64_t n);

// fmt's %v of a []string: "[a b c]".
std::string GoStringSlice(const std::vector<std::string>& v);

// One record of encoding/csv (how pflag splits a string-slice flag).
absl::StatusOr<std::vector<std::string>> GoReadCsvRecord(absl::string_view s);
// pflag's String() of a string slice: "[" + CSV + "]".
std::string GoCsvSliceString(const std::vector<std::string>& v);

// %x of a uint64 (lower-case hex, no padding) and %016x.
std::string Hex(uint64_t v);
std::string Hex16(uint64_t v);

// Go's encoding/json string literal (with its HTML-safe escapes of < > &,
// \u2028 \u2029, and U+FFFD for invalid UTF-8).
std::string GoJsonString(absl::string_view s);

// encoding/base64 StdEncoding.
std::string Base64(absl::string_view s);

}  // namespace detcd::ctl

#endif  // DETCD_CLI_DETCDCTL_GOFMT_H_
