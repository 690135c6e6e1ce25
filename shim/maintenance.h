// The real server's side of the engine's maintenance duties (auto
// compaction, corruption checks; engine/server/compactor.h and
// corruption_check.h): etcd's flags into EtcdServerOptions, the engine's
// log records into etcd's log lines, and the initial corruption check run
// before clients are served.
//
// Test hook: etcd 3.4 looks at the revision every 5 minutes in revision
// mode and has no flag for it (its tests use a fake clock). The variable
// DETCD_TEST_AUTO_COMPACTION_REVISION_INTERVAL (a Go duration, e.g. "2s")
// shortens it, so integration tests can watch revision mode in seconds; the
// server logs a warning when it is set. Not a flag, so `detcd --help` and
// the config file stay etcd's.
#ifndef DETCD_SHIM_MAINTENANCE_H_
#define DETCD_SHIM_MAINTENANCE_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/server/etcd_server.h"
#include "shim/config.h"

namespace detcd::shim {

class EngineLoop;

inline constexpr char kRevisionIntervalVariable[] =
    "DETCD_TEST_AUTO_COMPACTION_REVISION_INTERVAL";

// --auto-compaction-mode / --auto-compaction-retention (etcd's parsing,
// ParseCompactionRetention) and --experimental-initial-corrupt-check /
// --experimental-corrupt-check-time, for EtcdServerOptions. Errors are
// etcd's ("error parsing CompactionRetention: ..."); the server checks
// them before it touches the data dir, as etcd does.
struct MaintenanceOptions {
  server::CompactorOptions auto_compaction;
  server::CorruptCheckOptions corrupt_check;
};
absl::StatusOr<MaintenanceOptions> MaintenanceOptionsFromConfig(
    const ServerConfig& c);

// Writes the engine's records as etcd 3.4 would: zap's message and fields,
// or capnslog's text (--logger=capnslog).
server::LogFn MaintenanceLogger(const ServerConfig& c);

// etcd's CheckInitialHashKV, on the engine thread; blocks until it is done
// (every peer answered or timed out). An error means the member must not
// serve ("<id> found data inconsistency with peers").
absl::Status RunInitialCorruptCheck(EngineLoop& loop,
                                    server::EtcdServer& server);

}  // namespace detcd::shim

#endif  // DETCD_SHIM_MAINTENANCE_H_
