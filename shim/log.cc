#include "shim/log.h"

#include <fcntl.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <set>

#include "absl/base/const_init.h"
#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "shim/go_format.h"

namespace detcd::shim {
namespace {

// Where lines go. Owned descriptors are closed when the logger is
// reconfigured; stderr and stdout are never closed.
struct Output {
  int fd;
  bool owned;
};

ABSL_CONST_INIT absl::Mutex g_mu(absl::kConstInit);
// Leaked on purpose: threads may still log while static destructors run.
std::vector<Output>* g_outputs ABSL_GUARDED_BY(g_mu) = nullptr;
std::atomic<int> g_min_level{static_cast<int>(LogLevel::kInfo)};
std::atomic<bool> g_capnslog{false};
std::atomic<bool> g_console{false};  // zap's console encoder

std::vector<Output>& OutputsLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(g_mu) {
  if (g_outputs == nullptr) {
    g_outputs = new std::vector<Output>{{STDERR_FILENO, false}};
  }
  return *g_outputs;
}

const char* ZapLevelName(LogLevel lvl) {
  switch (lvl) {
    case LogLevel::kDebug:
      return "debug";
    case LogLevel::kInfo:
      return "info";
    case LogLevel::kWarn:
      return "warn";
    case LogLevel::kError:
      return "error";
    case LogLevel::kPanic:
      return "panic";
    case LogLevel::kFatal:
      return "fatal";
  }
  return "info";
}

// capnslog's LogLevel.Char(); etcd maps panic and fatal to CRITICAL.
char CapnslogLevelChar(LogLevel lvl) {
  switch (lvl) {
    case LogLevel::kDebug:
      return 'D';
    case LogLevel::kInfo:
      return 'I';
    case LogLevel::kWarn:
      return 'W';
    case LogLevel::kError:
      return 'E';
    case LogLevel::kPanic:
    case LogLevel::kFatal:
      return 'C';
  }
  return 'I';
}

bool ParseLevel(std::string_view s, LogLevel* out) {
  if (s == "debug") {
    *out = LogLevel::kDebug;
  } else if (s == "info") {
    *out = LogLevel::kInfo;
  } else if (s == "warn") {
    *out = LogLevel::kWarn;
  } else if (s == "error") {
    *out = LogLevel::kError;
  } else if (s == "dpanic" || s == "panic") {
    // zap's dpanic sits between error and panic; nothing logs at dpanic
    // here, so as a threshold it equals panic.
    *out = LogLevel::kPanic;
  } else if (s == "fatal") {
    *out = LogLevel::kFatal;
  } else {
    return false;
  }
  return true;
}

// Length of the valid UTF-8 sequence at s[i], or 0 if it is invalid (Go's
// utf8.DecodeRuneInString rules: no overlongs, no surrogates, <= U+10FFFF).
size_t ValidUtf8Len(std::string_view s, size_t i) {
  auto byte = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  unsigned char c = byte(i);
  size_t n;
  unsigned char lo = 0x80, hi = 0xBF;
  if (c >= 0xC2 && c <= 0xDF) {
    n = 2;
  } else if (c >= 0xE0 && c <= 0xEF) {
    n = 3;
    if (c == 0xE0) lo = 0xA0;
    if (c == 0xED) hi = 0x9F;
  } else if (c >= 0xF0 && c <= 0xF4) {
    n = 4;
    if (c == 0xF0) lo = 0x90;
    if (c == 0xF4) hi = 0x8F;
  } else {
    return 0;
  }
  if (i + n > s.size()) return 0;
  if (byte(i + 1) < lo || byte(i + 1) > hi) return 0;
  for (size_t k = 2; k < n; ++k) {
    if (byte(i + k) < 0x80 || byte(i + k) > 0xBF) return 0;
  }
  return n;
}

// A JSON string literal escaped the way zap's encoder does it.
void AppendJsonString(std::string* out, std::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  out->push_back('"');
  for (size_t i = 0; i < s.size();) {
    unsigned char b = static_cast<unsigned char>(s[i]);
    if (b < 0x80) {
      if (b >= 0x20 && b != '\\' && b != '"') {
        out->push_back(static_cast<char>(b));
      } else if (b == '\\' || b == '"') {
        out->push_back('\\');
        out->push_back(static_cast<char>(b));
      } else if (b == '\n') {
        out->append("\\n");
      } else if (b == '\r') {
        out->append("\\r");
      } else if (b == '\t') {
        out->append("\\t");
      } else {
        out->append("\\u00");
        out->push_back(kHex[b >> 4]);
        out->push_back(kHex[b & 0xF]);
      }
      ++i;
      continue;
    }
    size_t n = ValidUtf8Len(s, i);
    if (n == 0) {
      out->append("\\ufffd");
      ++i;
    } else {
      out->append(s.substr(i, n));
      i += n;
    }
  }
  out->push_back('"');
}

void AppendJsonValue(std::string* out, const LogField::Value& v) {
  struct Visitor {
    std::string* out;
    void operator()(const std::string& s) { AppendJsonString(out, s); }
    void operator()(int64_t i) { absl::StrAppend(out, i); }
    void operator()(uint64_t u) { absl::StrAppend(out, u); }
    void operator()(double d) {
      if (std::isfinite(d)) {
        out->append(GoFormatFloatF(d));
      } else {
        AppendJsonString(out, GoFormatFloatF(d));  // "NaN", "+Inf", "-Inf"
      }
    }
    void operator()(bool b) { out->append(b ? "true" : "false"); }
    void operator()(const std::vector<std::string>& list) {
      out->push_back('[');
      for (size_t i = 0; i < list.size(); ++i) {
        if (i > 0) out->push_back(',');
        AppendJsonString(out, list[i]);
      }
      out->push_back(']');
    }
    void operator()(const LogDuration& d) {
      AppendJsonString(out, GoDurationString(absl::ToInt64Nanoseconds(d.d)));
    }
  };
  std::visit(Visitor{out}, v);
}

// Go's %v of the value, for capnslog lines.
void AppendTextValue(std::string* out, const LogField::Value& v) {
  struct Visitor {
    std::string* out;
    void operator()(const std::string& s) { out->append(s); }
    void operator()(int64_t i) { absl::StrAppend(out, i); }
    void operator()(uint64_t u) { absl::StrAppend(out, u); }
    void operator()(double d) { out->append(GoFormatFloatG(d)); }
    void operator()(bool b) { out->append(b ? "true" : "false"); }
    void operator()(const std::vector<std::string>& list) {
      out->push_back('[');
      for (size_t i = 0; i < list.size(); ++i) {
        if (i > 0) out->push_back(' ');
        out->append(list[i]);
      }
      out->push_back(']');
    }
    void operator()(const LogDuration& d) {
      out->append(GoDurationString(absl::ToInt64Nanoseconds(d.d)));
    }
  };
  std::visit(Visitor{out}, v);
}

// "dir/file.cc" from a full path, as zap's ShortCallerEncoder trims it (the
// whole path when it has fewer than two slashes).
std::string_view TrimmedPath(std::string_view file) {
  size_t last = file.rfind('/');
  if (last == std::string_view::npos || last == 0) return file;
  size_t prev = file.rfind('/', last - 1);
  if (prev == std::string_view::npos) return file;
  return file.substr(prev + 1);
}

// The caller's directory name, standing in for capnslog's Go package.
std::string_view CallerPackage(std::string_view file) {
  size_t last = file.rfind('/');
  if (last == std::string_view::npos) return {};
  std::string_view dir = file.substr(0, last);
  size_t prev = dir.rfind('/');
  return prev == std::string_view::npos ? dir : dir.substr(prev + 1);
}

struct LocalNow {
  struct tm tm;
  long nanos;
};

LocalNow Now() {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  LocalNow n;
  localtime_r(&ts.tv_sec, &n.tm);
  n.nanos = ts.tv_nsec;
  return n;
}

// zap's ISO8601TimeEncoder: "2006-01-02T15:04:05.000Z0700" in local time.
void AppendZapTime(std::string* out, const LocalNow& n) {
  absl::StrAppendFormat(out, "%04d-%02d-%02dT%02d:%02d:%02d.%03d",
                        n.tm.tm_year + 1900, n.tm.tm_mon + 1, n.tm.tm_mday,
                        n.tm.tm_hour, n.tm.tm_min, n.tm.tm_sec,
                        static_cast<int>(n.nanos / 1'000'000));
  long off = n.tm.tm_gmtoff;
  if (off == 0) {
    out->push_back('Z');
  } else {
    char sign = off < 0 ? '-' : '+';
    if (off < 0) off = -off;
    absl::StrAppendFormat(out, "%c%02d%02d", sign, static_cast<int>(off / 3600),
                          static_cast<int>(off / 60 % 60));
  }
}

std::string FormatZap(LogLevel lvl, const char* file, int line,
                      std::string_view msg,
                      std::initializer_list<LogField> fields) {
  std::string out;
  out.reserve(160 + msg.size());
  out.append("{\"level\":\"");
  out.append(ZapLevelName(lvl));
  out.append("\",\"ts\":\"");
  AppendZapTime(&out, Now());
  out.append("\",\"caller\":");
  std::string caller(TrimmedPath(file));
  absl::StrAppend(&caller, ":", line);
  AppendJsonString(&out, caller);
  out.append(",\"msg\":");
  AppendJsonString(&out, msg);
  for (const LogField& f : fields) {
    out.push_back(',');
    AppendJsonString(&out, f.key);
    out.push_back(':');
    AppendJsonValue(&out, f.value);
  }
  out.push_back('}');
  return out;
}

// zap's console encoder as etcd 3.5 configures it: ts, level, caller and
// message separated by tabs, then the fields as a JSON object.
std::string FormatZapConsole(LogLevel lvl, const char* file, int line,
                             std::string_view msg,
                             std::initializer_list<LogField> fields) {
  std::string out;
  out.reserve(120 + msg.size());
  AppendZapTime(&out, Now());
  out.push_back('\t');
  out.append(ZapLevelName(lvl));
  out.push_back('\t');
  out.append(TrimmedPath(file));
  absl::StrAppend(&out, ":", line, "\t");
  out.append(msg);
  if (fields.size() > 0) {
    char sep = '{';
    out.push_back('\t');
    for (const LogField& f : fields) {
      out.push_back(sep);
      sep = ',';
      AppendJsonString(&out, f.key);
      out.push_back(':');
      AppendJsonValue(&out, f.value);
    }
    out.push_back('}');
  }
  return out;
}

// capnslog's PrettyFormatter (non-debug): local "2006-01-02 15:04:05" plus
// microseconds, the level letter, " | ", "pkg: " and the message.
std::string FormatCapnslog(LogLevel lvl, const char* file, std::string_view msg,
                           std::initializer_list<LogField> fields) {
  LocalNow n = Now();
  std::string out = absl::StrFormat(
      "%04d-%02d-%02d %02d:%02d:%02d.%06d %c | ", n.tm.tm_year + 1900,
      n.tm.tm_mon + 1, n.tm.tm_mday, n.tm.tm_hour, n.tm.tm_min, n.tm.tm_sec,
      static_cast<int>(n.nanos / 1000), CapnslogLevelChar(lvl));
  std::string_view pkg = CallerPackage(file);
  if (!pkg.empty()) {
    out.append(pkg);
    out.append(": ");
  }
  out.append(msg);
  for (const LogField& f : fields) {
    absl::StrAppend(&out, ", ", f.key, ": ");
    AppendTextValue(&out, f.value);
  }
  // capnslog ends the entry with one newline unless it already has one.
  if (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

void WriteAll(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return;  // Nowhere left to report a failing log output.
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
}

}  // namespace

absl::Status InitLogging(const LogOptions& o) {
  LogLevel level;
  if (!ParseLevel(o.level, &level)) {
    return absl::InvalidArgumentError(
        absl::StrFormat("unknown level %q", o.level));
  }
  bool capnslog;
  if (o.logger == "zap") {
    capnslog = false;
  } else if (o.logger == "capnslog") {
    capnslog = true;
  } else {
    return absl::InvalidArgumentError(
        absl::StrFormat("unknown logger option %q", o.logger));
  }
  bool console;
  if (o.format == "json" || o.format.empty()) {
    console = false;
  } else if (o.format == "console") {
    console = true;
  } else {
    return absl::InvalidArgumentError(absl::StrFormat(
        "unknown log format: %s, supported values json, console", o.format));
  }
  std::vector<std::string> outputs = o.outputs;
  if (outputs.empty()) outputs = {"default"};
  if (capnslog && outputs.size() != 1) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "--logger=capnslog supports only 1 value in '--log-outputs', got "
        "[%s]",
        absl::StrJoin(outputs, " ")));
  }
  if (outputs.size() > 1) {
    for (const std::string& v : outputs) {
      if (v == "default") {
        return absl::InvalidArgumentError(
            "multi logoutput for \"default\" is not supported yet");
      }
    }
  }
  // As etcd's MergeOutputPaths: duplicates once, "/dev/null" silences all.
  std::set<std::string> unique(outputs.begin(), outputs.end());
  if (unique.count("/dev/null")) unique = {"/dev/null"};

  std::vector<Output> opened;
  auto close_opened = [&opened] {
    for (const Output& out : opened) {
      if (out.owned) ::close(out.fd);
    }
  };
  bool have_stderr = false;
  for (const std::string& v : unique) {
    if (v == "journal") {
      close_opened();
      return absl::InvalidArgumentError(
          "log output \"journal\" is not supported by detcd");
    }
    if (v == "default" || v == "stderr") {
      // "default" and "stderr" are the same stream; write it once.
      if (!have_stderr) opened.push_back({STDERR_FILENO, false});
      have_stderr = true;
    } else if (v == "stdout") {
      opened.push_back({STDOUT_FILENO, false});
    } else if (v == "/dev/null") {
      // Discard: no outputs at all.
    } else {
      int fd =
          ::open(v.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0666);
      if (fd < 0) {
        int err = errno;
        close_opened();
        return absl::InvalidArgumentError(
            absl::StrFormat("open %s: %s", v, std::strerror(err)));
      }
      opened.push_back({fd, true});
    }
  }

  absl::MutexLock lock(&g_mu);
  std::vector<Output>& current = OutputsLocked();
  for (const Output& out : current) {
    if (out.owned) ::close(out.fd);
  }
  current = std::move(opened);
  g_capnslog.store(capnslog, std::memory_order_relaxed);
  g_console.store(console, std::memory_order_relaxed);
  g_min_level.store(static_cast<int>(level), std::memory_order_relaxed);
  return absl::OkStatus();
}

bool LogEnabled(LogLevel lvl) {
  return static_cast<int>(lvl) >= g_min_level.load(std::memory_order_relaxed);
}

std::string FormatLogLine(LogLevel lvl, const char* file, int line,
                          std::string_view msg,
                          std::initializer_list<LogField> fields) {
  if (g_capnslog.load(std::memory_order_relaxed)) {
    return FormatCapnslog(lvl, file, msg, fields);
  }
  if (g_console.load(std::memory_order_relaxed)) {
    return FormatZapConsole(lvl, file, line, msg, fields);
  }
  return FormatZap(lvl, file, line, msg, fields);
}

void Log(LogLevel lvl, const char* file, int line, std::string_view msg,
         std::initializer_list<LogField> fields) {
  if (LogEnabled(lvl)) {
    std::string text = FormatLogLine(lvl, file, line, msg, fields);
    text.push_back('\n');
    absl::MutexLock lock(&g_mu);
    for (const Output& out : OutputsLocked()) WriteAll(out.fd, text);
  }
  if (lvl == LogLevel::kPanic) {
    std::abort();
  }
  if (lvl == LogLevel::kFatal) {
    // zap's Fatal is os.Exit(1): no destructors run. Flush stdio for any
    // other text the process printed, then leave without unwinding, so
    // threads still running cannot trip over destroyed statics.
    std::fflush(nullptr);
    ::_exit(1);
  }
}

}  // namespace detcd::shim
