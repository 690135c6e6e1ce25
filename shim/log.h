// Logging for the real server in etcd 3.4's shapes, so tooling that reads
// etcd's logs (log shippers, scripts grepping for "ready to serve client
// requests") reads detcd's unchanged.
//
// --logger=zap (the default here, as in etcd 3.5) writes one JSON object per
// line, with the keys and encoders of etcd's pkg/logutil zap config:
//
//   {"level":"info","ts":"2026-12-02T22:04:29.123Z",
//    "caller":"shim/server.cc:131","msg":"configuring peer listeners",
//    "listen-peer-urls":["http://localhost:2380"]}
//
// (one line in the output).
//
//   level   lowercase: debug, info, warn, error, panic, fatal
//   ts      local time, zap's ISO8601 encoder: 2006-01-02T15:04:05.000Z0700,
//           i.e. milliseconds and "Z" at UTC, otherwise "+0100" style
//   caller  last directory + file name + line (zap's short caller)
//   msg     the message; then the fields in the order given. Strings are
//           escaped as zap does (\n \r \t \" \\, other control bytes as
//           \u00XX, invalid UTF-8 as \ufffd); integers and bools are JSON
//           numbers/literals; doubles use Go's 'f' shortest form (NaN and
//           +/-Inf become strings); durations use Go's Duration.String().
//
// --log-format=console (etcd 3.5; zap's console encoder) writes the same
// entries as tab-separated text, the fields as one JSON object at the end
// (nothing when there are none):
//
//   2026-12-02T22:04:29.123Z<TAB>info<TAB>shim/server.cc:131<TAB>configuring
//   peer listeners<TAB>{"listen-peer-urls":["http://localhost:2380"]}
//
// (one line in the output).
//
// --logger=capnslog writes etcd 3.4's default text lines (capnslog's
// PrettyFormatter), local time with microseconds and a level letter
// (D, I, W, E, C):
//
//   2026-12-02 22:04:29.123456 I | shim: ready to serve client requests
//
// The package is the caller's directory (etcd printed its Go package). Fields
// follow the message as ", key: value" (lists as Go prints them: [a b]),
// the shape etcd's own capnslog messages used.
//
// Every line is built in full and then written with one write(2) per output
// under a mutex, so concurrent callers never interleave within a line. The
// level check is a relaxed atomic load, so disabled levels cost almost
// nothing. Unlike zap, there is no sampling and no "stacktrace" key.
#ifndef DETCD_SHIM_LOG_H_
#define DETCD_SHIM_LOG_H_

#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>
#include <type_traits>
#include <variant>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"

namespace detcd::shim {

enum class LogLevel { kDebug, kInfo, kWarn, kError, kPanic, kFatal };

// A Go-style duration value ("1.5s", "100ms", "3.129268ms", "0s"), as zap's
// StringDurationEncoder prints time.Duration fields.
struct LogDuration {
  absl::Duration d;
};

// One structured field of a log line. The value keeps its type so the JSON
// encoder can print numbers as numbers, as zap does.
struct LogField {
  using Value = std::variant<std::string, int64_t, uint64_t, double, bool,
                             std::vector<std::string>, LogDuration>;

  LogField(std::string k, std::string v)
      : key(std::move(k)), value(std::move(v)) {}
  LogField(std::string k, std::string_view v)
      : key(std::move(k)), value(std::string(v)) {}
  LogField(std::string k, const char* v)
      : key(std::move(k)), value(std::string(v)) {}
  LogField(std::string k, bool v) : key(std::move(k)), value(v) {}
  LogField(std::string k, double v) : key(std::move(k)), value(v) {}
  // Any integer type: signed ones print as int64, unsigned ones as uint64
  // (one template so int, long, uint32_t, size_t are all unambiguous).
  template <class T,
            std::enable_if_t<std::is_integral_v<T> && !std::is_same_v<T, bool>,
                             int> = 0>
  LogField(std::string k, T v) : key(std::move(k)) {
    if constexpr (std::is_signed_v<T>) {
      value = static_cast<int64_t>(v);
    } else {
      value = static_cast<uint64_t>(v);
    }
  }
  LogField(std::string k, std::vector<std::string> v)
      : key(std::move(k)), value(std::move(v)) {}
  LogField(std::string k, absl::Duration d)
      : key(std::move(k)), value(LogDuration{d}) {}

  std::string key;
  Value value;
};

struct LogOptions {
  // etcd's --log-level: debug, info, warn, error, dpanic, panic, fatal.
  std::string level = "info";
  // etcd's --logger: "zap" (JSON lines) or "capnslog" (text lines).
  std::string logger = "zap";
  // etcd 3.5's --log-format for zap: "json" (or "") or "console".
  std::string format = "json";
  // etcd's --log-outputs: "default" or "stderr" -> stderr, "stdout", or file
  // paths (created if missing, appended to). "/dev/null" discards all, as in
  // etcd. Duplicates are written once.
  std::vector<std::string> outputs = {"default"};
};

// Configures the process-wide logger; may be called again (later lines go to
// the new outputs). Rejects what etcd 3.4 rejects: unknown levels or loggers,
// "default" mixed with other outputs, more than one output for capnslog, and
// "journal" (detcd does not write to journald), and (as etcd 3.5) log formats
// other than json and console. Files that cannot be opened
// are an error and leave the previous configuration in place.
// Before the first call, lines go to stderr as zap JSON at level info.
absl::Status InitLogging(const LogOptions& o);

// True if a line at `lvl` would be written (use it to skip building costly
// fields).
bool LogEnabled(LogLevel lvl);

// Writes one line if `lvl` is enabled. `file` is __FILE__; only its last
// directory and name are printed. kPanic aborts and kFatal exits with status
// 1 after writing, like zap's Panic and Fatal (whether or not the level is
// enabled).
void Log(LogLevel lvl, const char* file, int line, std::string_view msg,
         std::initializer_list<LogField> fields = {});

// Builds the line Log would write for the current logger, without the
// trailing newline (for tests and for callers that need the text).
std::string FormatLogLine(LogLevel lvl, const char* file, int line,
                          std::string_view msg,
                          std::initializer_list<LogField> fields);

}  // namespace detcd::shim

// The usual entry points. Fields follow the message:
//   DLOG_INFO("added member", {{"member-id", id_hex}, {"peer-urls", urls}});
#define DLOG_DEBUG(msg, ...)                                                   \
  ::detcd::shim::Log(::detcd::shim::LogLevel::kDebug, __FILE__, __LINE__, msg, \
                     ##__VA_ARGS__)
#define DLOG_INFO(msg, ...)                                                   \
  ::detcd::shim::Log(::detcd::shim::LogLevel::kInfo, __FILE__, __LINE__, msg, \
                     ##__VA_ARGS__)
#define DLOG_WARN(msg, ...)                                                   \
  ::detcd::shim::Log(::detcd::shim::LogLevel::kWarn, __FILE__, __LINE__, msg, \
                     ##__VA_ARGS__)
#define DLOG_ERROR(msg, ...)                                                   \
  ::detcd::shim::Log(::detcd::shim::LogLevel::kError, __FILE__, __LINE__, msg, \
                     ##__VA_ARGS__)
#define DLOG_PANIC(msg, ...)                                                   \
  ::detcd::shim::Log(::detcd::shim::LogLevel::kPanic, __FILE__, __LINE__, msg, \
                     ##__VA_ARGS__)
#define DLOG_FATAL(msg, ...)                                                   \
  ::detcd::shim::Log(::detcd::shim::LogLevel::kFatal, __FILE__, __LINE__, msg, \
                     ##__VA_ARGS__)

#endif  // DETCD_SHIM_LOG_H_
