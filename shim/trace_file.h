// --trace-file: the real server's timeline as Chrome trace-event JSON, the
// format the simulator writes (harness/trace.h), so a slow request on a
// real member and a simulated run open side by side in Perfetto
// (ui.perfetto.dev) or chrome://tracing.
//
// The file is the trace-event "JSON array" form, written as events happen
// (one event per line, flushed per event), so it can be read while the
// member runs and survives a crash: viewers accept the array without its
// closing "]", which Close() writes on a clean stop.
//
//   [
//   {"ph":"M","name":"thread_name","pid":1,"tid":1,"args":{"name":"raft"}},
//   {"pid":1,"tid":3,"ts":1523.125,"ph":"X","dur":812.000,"name":"fsync",
//    "args":{"detail":"member/wal/0000000000000000-0000000000000000.wal"}},
//   {"pid":1,"tid":1,"ts":2010.000,"ph":"i","s":"t","name":"became leader",
//    "args":{"detail":"term 2"}},
//   ...
//
// ts/dur are microseconds since the writer was opened (the simulator's are
// virtual time since the run's start). Tracks (tid): 1 raft (leader
// changes, late ticks), 2 apply (applied index advancing), 3 wal (fsyncs),
// 100+ requests (gRPC calls from arrival to answer, on lanes so
// concurrent calls do not overlap on one track).
//
// Thread-safe; an event costs one formatted line and one write(2) under a
// mutex. Nothing is recorded when no file was asked for.
#ifndef DETCD_SHIM_TRACE_FILE_H_
#define DETCD_SHIM_TRACE_FILE_H_

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

namespace detcd::shim {

class TraceFile {
 public:
  enum Track : uint64_t { kRaft = 1, kApply = 2, kWal = 3, kRequests = 100 };
  // Lanes for concurrent requests: tid kRequests .. kRequests+kLanes-1.
  static constexpr int kLanes = 16;

  // Creates (truncates) `path` and writes the track names.
  static absl::StatusOr<std::unique_ptr<TraceFile>> Open(
      const std::string& path);
  ~TraceFile();  // Close()
  TraceFile(const TraceFile&) = delete;
  TraceFile& operator=(const TraceFile&) = delete;

  // Microseconds since Open, from the monotonic clock.
  double NowUs() const;

  void Instant(uint64_t track, std::string_view name,
               std::string_view detail = "");
  // A span that started at start_us (a NowUs() value) and ends now.
  void Span(uint64_t track, double start_us, std::string_view name,
            std::string_view detail = "");

  // A request lane: the lowest lane not in use, held until ReleaseLane.
  int AcquireLane();
  void ReleaseLane(int lane);

  // Writes the closing "]" and closes the file; later events are dropped.
  void Close();

 private:
  TraceFile(int fd, int64_t start_ns) : fd_(fd), start_ns_(start_ns) {}
  void Write(std::string line);

  absl::Mutex mu_;
  int fd_ ABSL_GUARDED_BY(mu_);
  const int64_t start_ns_;
  uint32_t lanes_in_use_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace detcd::shim

#endif  // DETCD_SHIM_TRACE_FILE_H_
