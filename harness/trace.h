// A timeline of a simulated run, written as Chrome trace-event JSON so it
// opens in Perfetto (ui.perfetto.dev) or chrome://tracing: one track per
// node, instant events for faults, role changes and client operations.
#ifndef DETCD_HARNESS_TRACE_H_
#define DETCD_HARNESS_TRACE_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"

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

}  // namespace detcd::harness

#endif  // DETCD_HARNESS_TRACE_H_
