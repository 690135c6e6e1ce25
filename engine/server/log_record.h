// Log lines the engine hands to its owner. The engine has no logger (it
// runs in the simulator too); the parts that etcd logs from its own
// goroutines (the auto compactor, the corruption checks) describe each line
// here, in both of etcd 3.4's shapes, and the real server writes the one
// its --logger asks for (shim/maintenance.h). The simulator ignores them.
#ifndef DETCD_ENGINE_SERVER_LOG_RECORD_H_
#define DETCD_ENGINE_SERVER_LOG_RECORD_H_

#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "absl/strings/str_format.h"

namespace detcd::server {

// A duration, printed as Go prints a time.Duration ("1h0m0s", "500ms").
struct LogNanos {
  int64_t ns = 0;
};

struct LogRecord {
  enum class Level { kInfo, kWarn };
  using Value = std::variant<int64_t, uint64_t, std::string,
                             std::vector<std::string>, LogNanos>;
  using Part = std::variant<std::string, LogNanos>;

  Level level = Level::kInfo;
  // etcd 3.4 with --logger=zap: the message and its fields, in order.
  std::string message;
  std::vector<std::pair<std::string, Value>> fields;
  // etcd 3.4's default logger (capnslog): the text, as pieces so that
  // durations get Go's spelling where the line is written; a "\n" in a
  // piece starts another line (etcd wrote two lines there).
  std::vector<Part> capnslog;
};

using LogFn = std::function<void(const LogRecord&)>;

// etcd's types.ID.String(): lowercase hex without leading zeros.
inline std::string HexId(uint64_t id) { return absl::StrFormat("%x", id); }

}  // namespace detcd::server

#endif  // DETCD_ENGINE_SERVER_LOG_RECORD_H_
