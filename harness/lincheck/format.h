// Text for people: requests and key-values in one line each (FormatOp of
// history.h is built from these), and the explanation of a violation.
#ifndef DETCD_HARNESS_LINCHECK_FORMAT_H_
#define DETCD_HARNESS_LINCHECK_FORMAT_H_

#include <string>
#include <vector>

#include "engine/mvcc/types.h"
#include "harness/history.h"

namespace detcd::harness::lincheck {

// A C-escaped string in double quotes.
std::string Quote(const std::string& s);
// k=\"v\"@c2/m3/v2 (and /l7 with a lease).
std::string FormatKv(const mvcc::KeyValue& kv);

// Writes outside window w (history indices) to keys that window ops name,
// closest in time: not needed for the proof, but usually what a reader
// looks for next.
std::vector<int> RelatedWrites(const History& h, const std::vector<int>& w);

// "not linearizable: <reason>", then the window's ops and the related
// writes, one FormatOp line each.
std::string Explain(const History& h, const std::string& reason,
                    const std::vector<int>& ops,
                    const std::vector<int>& related);

}  // namespace detcd::harness::lincheck

#endif  // DETCD_HARNESS_LINCHECK_FORMAT_H_
