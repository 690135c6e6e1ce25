#include "shim/maintenance.h"

#include <cstdlib>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "shim/engine_loop.h"
#include "shim/go_format.h"
#include "shim/log.h"

namespace detcd::shim {
namespace {

using server::LogNanos;
using server::LogRecord;

LogField ToField(const std::string& key, const LogRecord::Value& v) {
  return std::visit(
      [&key](const auto& x) -> LogField {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<T, LogNanos>) {
          return LogField(key, absl::Nanoseconds(x.ns));
        } else {
          return LogField(key, x);
        }
      },
      v);
}

// Log() takes its fields as an initializer list; the engine's records have
// up to nine, so they are spelled out by count.
void LogWithFields(LogLevel lvl, std::string_view msg,
                   const std::vector<LogField>& f) {
  switch (f.size()) {
#define DETCD_LOG_CASE(n, ...) \
  case n:                      \
    return Log(lvl, __FILE__, __LINE__, msg, {__VA_ARGS__});
    DETCD_LOG_CASE(0, )
    DETCD_LOG_CASE(1, f[0])
    DETCD_LOG_CASE(2, f[0], f[1])
    DETCD_LOG_CASE(3, f[0], f[1], f[2])
    DETCD_LOG_CASE(4, f[0], f[1], f[2], f[3])
    DETCD_LOG_CASE(5, f[0], f[1], f[2], f[3], f[4])
    DETCD_LOG_CASE(6, f[0], f[1], f[2], f[3], f[4], f[5])
    DETCD_LOG_CASE(7, f[0], f[1], f[2], f[3], f[4], f[5], f[6])
    DETCD_LOG_CASE(8, f[0], f[1], f[2], f[3], f[4], f[5], f[6], f[7])
    DETCD_LOG_CASE(9, f[0], f[1], f[2], f[3], f[4], f[5], f[6], f[7], f[8])
#undef DETCD_LOG_CASE
    default:
      // More than the engine ever sends: keep the first nine.
      return Log(lvl, __FILE__, __LINE__, msg,
                 {f[0], f[1], f[2], f[3], f[4], f[5], f[6], f[7], f[8]});
  }
}

void WriteRecord(const LogRecord& r, bool capnslog) {
  const LogLevel lvl =
      r.level == LogRecord::Level::kWarn ? LogLevel::kWarn : LogLevel::kInfo;
  if (!LogEnabled(lvl)) return;
  if (capnslog) {
    std::string text;
    for (const LogRecord::Part& p : r.capnslog) {
      if (const auto* s = std::get_if<std::string>(&p)) {
        text += *s;
      } else {
        text += GoDurationString(std::get<LogNanos>(p).ns);
      }
    }
    for (absl::string_view line : absl::StrSplit(text, '\n')) {
      Log(lvl, __FILE__, __LINE__, std::string_view(line.data(), line.size()));
    }
    return;
  }
  std::vector<LogField> fields;
  fields.reserve(r.fields.size());
  for (const auto& [k, v] : r.fields) fields.push_back(ToField(k, v));
  LogWithFields(lvl, r.message, fields);
}

}  // namespace

absl::StatusOr<MaintenanceOptions> MaintenanceOptionsFromConfig(
    const ServerConfig& c) {
  MaintenanceOptions out;
  // etcd: an empty retention is "0".
  const std::string retention =
      c.auto_compaction_retention.empty() ? "0" : c.auto_compaction_retention;
  absl::StatusOr<int64_t> r =
      ParseCompactionRetention(c.auto_compaction_mode, retention);
  if (!r.ok()) return r.status();
  server::CompactorOptions& ac = out.auto_compaction;
  ac.mode = server::CompactorOptions::Mode::kOff;
  if (*r != 0) {
    ac.retention = *r;
    ac.mode = c.auto_compaction_mode == "revision"
                  ? server::CompactorOptions::Mode::kRevision
                  : server::CompactorOptions::Mode::kPeriodic;
    if (ac.mode == server::CompactorOptions::Mode::kPeriodic &&
        ac.retention < 10) {
      // etcd divides the period by 10 and would divide by zero next.
      return absl::InvalidArgumentError(
          absl::StrCat("error parsing CompactionRetention: retention ",
                       retention, " is shorter than 10ns"));
    }
    if (const char* v = std::getenv(kRevisionIntervalVariable);
        v != nullptr && ac.mode == server::CompactorOptions::Mode::kRevision) {
      absl::StatusOr<int64_t> ns = ParseCompactionRetention("periodic", v);
      if (!ns.ok() || *ns <= 0) {
        return absl::InvalidArgumentError(
            absl::StrCat(kRevisionIntervalVariable, ": bad duration ", v));
      }
      ac.revision_interval_ns = *ns;
      DLOG_WARN("test hook: auto compaction revision interval shortened",
                {{"variable", kRevisionIntervalVariable},
                 {"interval", absl::Nanoseconds(*ns)}});
    }
  }
  out.corrupt_check.initial = c.experimental_initial_corrupt_check;
  out.corrupt_check.interval_ns =
      c.experimental_corrupt_check_time_ms * 1'000'000;
  return out;
}

server::LogFn MaintenanceLogger(const ServerConfig& c) {
  const bool capnslog = c.logger == "capnslog";
  return [capnslog](const LogRecord& r) { WriteRecord(r, capnslog); };
}

absl::Status RunInitialCorruptCheck(EngineLoop& loop,
                                    server::EtcdServer& server) {
  struct Result {
    absl::Notification done;
    absl::Status status;
  };
  auto result = std::make_shared<Result>();
  const bool posted = loop.Post([&server, result] {
    server.CheckInitialHashKV([result](absl::Status s) {
      result->status = std::move(s);
      result->done.Notify();
    });
  });
  if (!posted) return absl::UnavailableError("detcd: engine stopped");
  // The engine answers within a request timeout (each peer's request
  // expires on its own); the loop stopping is the only other way out.
  while (!result->done.WaitForNotificationWithTimeout(absl::Seconds(1))) {
    bool alive = false;
    if (!loop.RunSync([&alive] { alive = true; }) || !alive) {
      return absl::UnavailableError("detcd: engine stopped");
    }
  }
  return result->status;
}

}  // namespace detcd::shim
