// A timeline of a simulated run, written as Chrome trace-event JSON so it
// opens in Perfetto (ui.perfetto.dev) or chrome://tracing: one track per
// node, instant events for faults, role changes and client operations.
//
// Also the determinism trace's helpers: the hash of a client's answer, and
// the comparison of two runs' trace logs (sim::TraceLog) that names the
// first observation on which they differ.
#ifndef DETCD_HARNESS_TRACE_H_
#define DETCD_HARNESS_TRACE_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "harness/history.h"
#include "sim/world.h"

namespace detcd::harness {

class Trace {
 public:
  // Records an instant event at virtual time t_ns on a node's track
  // (node 0 = the cluster / clients).
  void Event(int64_t t_ns, uint64_t node, std::string_view name,
             std::string_view detail = "");
  // A span, e.g. a client operation from invoke to completion.
  void Span(int64_t start_ns, int64_t end_ns, uint64_t track,
            std::string_view name, std::string_view detail = "");
  size_t size() const { return events_.size(); }
  std::string ToJson() const;
  absl::Status WriteFile(const std::string& path) const;

 private:
  struct Ev {
    int64_t t_ns;
    int64_t dur_ns;  // < 0: instant
    uint64_t track;
    std::string name;
    std::string detail;
  };
  std::vector<Ev> events_;
};

// The hash of what a client got back: the status, and for an answer every
// field of the Response (revisions, keys, values, versions, leases).
uint64_t TraceHashResponse(const absl::Status& s, const Response& r);

// The first observation on which two trace logs of the same seed differ,
// described with both sides and the records before it that agree; "" if
// the logs are the same. `a_name` and `b_name` name the runs ("run 1",
// "fresh process"). The first line is a one-line summary.
std::string FirstDivergence(const sim::TraceLog& a, std::string_view a_name,
                            const sim::TraceLog& b, std::string_view b_name);
// One record, e.g. "#1234 t=1.204500123s event 5012 deliver to 2 from 1:
// 120 bytes hash 1f2e...".
std::string DescribeRecord(const sim::TraceRecord& r, size_t index);

// A trace log as bytes (to carry it out of a fresh process) and back.
std::string SerializeTraceLog(const sim::TraceLog& log);
bool ParseTraceLog(std::string_view data, sim::TraceLog* log);

}  // namespace detcd::harness

#endif  // DETCD_HARNESS_TRACE_H_
